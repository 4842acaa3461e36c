# The contract of ext/perpcore/_funding.pyx (the extension perpcore._funding): a funding settlement's
# per-position work (perpcore.funding's module docstring states the model).
#
# An interval in transit (the rule): begin(margin, sr, ts, mark, rate, per_lot) fixes it at its
# funding time in O(1) (perpcore._margin.Interval on sr.transit); sweep(margin, sr, ids, budget,
# events, seq, ts) settles it from its cursor, at most `budget` accounts a call, payers' positions
# before receivers', each in account order, each with its FundingPaid (MarginCore.pay), and once
# past the last receiver completes it: the remainder to the insurance fund and FundingSettled.
#
# All at once (where an interval cannot be spread exactly: open interest that does not net, a
# product past 128 bits): settle(margin, symbol, mark, rate, units_per_ticklot, seq, ts, events)
# does what the plain path does in four steps (perpcore.margin.Margin.open_positions,
# perpcore.funding.payments, Margin.settle_funding, one FundingPaid per payment): the same
# transfers, the same remainder to the insurance fund, the same events in the same order (payers,
# then receivers, each by account). It returns (positions, paid, remainder) as FundingSettled
# reports them, or None, having changed nothing, when a figure does not fit its 128-bit integers
# or a balance would leave the ledger's int64 range (the plain path then settles).
#
# Units as in perpcore.funding: prices in ticks, sizes in lots (int64, perpcore._margin.PosC),
# rates at RATE_SCALE, money in minor units of the settlement asset. Every product and sum is
# computed in 128 bits with an overflow check; amounts come out as Python ints; accounts' balances
# are int64 (perpcore._ledger.CashTable).

from libc.stdint cimport int64_t

from perpcore._margin cimport MarginCore, SymbolRisk, int128_t


cdef struct Row:
    # one open position
    int64_t account        # its account id
    int64_t size           # signed lots, != 0
    int128_t amount        # its funding: < 0 paid, > 0 received


# The open positions of a symbol into rows (room for sr.slots.n), by account; returns how many.
cdef Py_ssize_t gather(SymbolRisk sr, Row* rows) except -1

# Each row's amount at per_lot = mark x units per tick-lot x |rate| (> 0), payers being longs when
# payer_long: perpcore.funding.payments' rule. The remainder for the insurance fund into
# *remainder and what payers pay into *paid; False when a figure does not fit 128 bits.
cdef bint amounts(Row* rows, Py_ssize_t n, int128_t per_lot, bint payer_long, int128_t* paid,
                  int128_t* remainder) except -1

# The interval complete: its remainder to the insurance fund, FundingSettled, sr.transit None.
cdef int complete(MarginCore margin, SymbolRisk sr, list events, seq, ts) except -1
