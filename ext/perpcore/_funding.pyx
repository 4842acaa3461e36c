# A funding settlement's per-position work: the sweep of an interval in transit, and the pass that
# settles one all at once. See perpcore._funding.pxd for the contract, perpcore.funding for the
# model and perpcore.funding.payments for the rule (the plain reference both must equal).

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t
from libc.stdlib cimport qsort

from perpcore._ledger cimport id_at, move, move_cells
from perpcore._margin cimport Interval, MarginCore, PosC, Slots, SymbolRisk, int128_t, pos_at, py_int

from perpcore import messages as m
from perpcore.config import RATE_SCALE

cdef int128_t RS = RATE_SCALE
cdef object FUNDING_PAID = m.FundingPaid
cdef object FUNDING_SETTLED = m.FundingSettled

cdef extern from *:
    # GCC/Clang builtins: the exact result into *r, True when it does not fit
    bint mul_overflow "__builtin_mul_overflow"(int128_t a, int128_t b, int128_t* r)
    bint add_overflow "__builtin_add_overflow"(int128_t a, int128_t b, int128_t* r)


cdef int by_account(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const Row*>a).account, y = (<const Row*>b).account
    return (x > y) - (x < y)


cdef Py_ssize_t gather(SymbolRisk sr, Row* rows) except -1:
    cdef Py_ssize_t i, n = 0
    cdef int64_t size
    cdef bint ordered = True
    for i in range(sr.slots.n):
        size = pos_at(sr, i).size
        if size:
            rows[n].account, rows[n].size = id_at(sr.slots.table, i), size
            if n and ordered and rows[n - 1].account > rows[n].account:
                ordered = False
            n += 1
    if not ordered:         # accounts mostly open in id order: usually no sort at all
        qsort(rows, n, sizeof(Row), by_account)
    return n


cdef bint amounts(Row* rows, Py_ssize_t n, int128_t per_lot, bint payer_long, int128_t* paid,
                  int128_t* remainder) except -1:
    cdef Py_ssize_t i
    cdef int128_t lots, due, pool = 0, owed = 0, receivers = 0
    for i in range(n):
        lots = rows[i].size
        if lots < 0:
            lots = -lots
        if mul_overflow(lots, per_lot, &due):
            return False
        if (rows[i].size > 0) == payer_long:
            due = due / RS + (due % RS != 0)        # a payer pays its due rounded up
            rows[i].amount = -due
            if add_overflow(pool, due, &pool):
                return False
        else:
            due = due / RS                          # a receiver gets its due rounded down
            rows[i].amount = due
            if add_overflow(owed, due, &owed):
                return False
            receivers += lots                       # < n x 2**63: fits
    if owed > pool:
        # open interest does not net to zero: receivers share the pool pro rata, rounded down
        owed = 0
        for i in range(n):
            if (rows[i].size > 0) != payer_long:
                lots = rows[i].size
                if lots < 0:
                    lots = -lots
                if mul_overflow(pool, lots, &due):
                    return False
                rows[i].amount = due / receivers
                owed += rows[i].amount              # at most the pool in all
    paid[0] = pool
    remainder[0] = pool - owed
    return True


def open_positions(SymbolRisk sr):
    """[(account, signed lots)] of every open position of sr, by account."""
    cdef Py_ssize_t i, n
    cdef Row* rows = <Row*>PyMem_Malloc(max(sr.slots.n, 1) * sizeof(Row))
    if rows is NULL:
        raise MemoryError()
    try:
        n = gather(sr, rows)
        return [(rows[i].account, rows[i].size) for i in range(n)]
    finally:
        PyMem_Free(rows)


def settle(MarginCore margin, str symbol, mark, rate, units_per_ticklot, seq, ts, list events):
    """Settles funding of every open position in `symbol` at `mark` and `rate` (see the contract
    in perpcore._funding.pxd): (positions, paid, remainder), or None having changed nothing."""
    cdef SymbolRisk sr = margin.symbols[symbol]
    cdef int128_t per_lot, paid = 0, remainder = 0
    cdef Py_ssize_t i, n = 0
    cdef dict transit = margin.funding
    cdef str asset = margin.settle
    try:
        if (mul_overflow(<int128_t>mark, <int128_t>units_per_ticklot, &per_lot)
                or mul_overflow(per_lot, <int128_t>abs(rate), &per_lot) or per_lot < 0):
            return None
    except OverflowError:
        return None
    cdef Row* rows = <Row*>PyMem_Malloc(max(sr.slots.n, 1) * sizeof(Row))
    cdef Slots slots = margin.slots
    cdef Py_ssize_t column = slots.table.column_of(asset)
    if rows is NULL:
        raise MemoryError()
    try:
        if per_lot:             # no mark or no rate: nobody pays (and no position is reported)
            n = gather(sr, rows)
            if not amounts(rows, n, per_lot, rate > 0, &paid, &remainder):
                return None
            for i in range(n):      # every balance stays in the ledger's range, or none moves
                if not INT64_MIN <= margin.cash_of(slots.find(rows[i].account))[column] \
                        + py_int(rows[i].amount) <= INT64_MAX:
                    return None
        for pays in (True, False):      # payers first, as the sweep of an interval in transit
            for i in range(n):
                if (rows[i].amount < 0) != pays:
                    continue
                account = rows[i].account
                amount = py_int(rows[i].amount)
                # through the funding in transit, as a sweep's payments: it is back where it was
                # once the remainder has gone to the fund
                move_cells(transit, NULL, None,
                           &margin.cash_of(slots.find(rows[i].account))[column], asset, amount)
                events.append(FUNDING_PAID(seq, ts, symbol, account, rows[i].size, mark, rate,
                                           amount))
        move(transit, margin.insurance, asset, py_int(remainder))
        return n, py_int(paid), py_int(remainder)
    finally:
        PyMem_Free(rows)


# ---- an interval in transit --------------------------------------------------------------------

def begin(MarginCore margin, SymbolRisk sr, ts, int64_t mark, int64_t rate, int128_t per_lot):
    """Begins sr's funding interval at `ts`: every position open now owes (or is owed) its
    amount at per_lot (> 0), paid as the sweep or a touch reaches it. The caller checked that
    open interest nets to zero and every product fits 128 bits."""
    sr.intervals += 1
    sr.transit = Interval(sr.intervals, ts, mark, rate, per_lot)
    margin.in_transit += 1


def restore(MarginCore margin, list transit):
    """The intervals in transit of a restored state (perpcore.margin.Margin.from_state), the
    positions being in place: [(sr, Interval.to_state(), accounts whose position is still due)].
    Interval numbers are relative: each symbol's is 1, its due positions' 0, the others' 1."""
    cdef SymbolRisk sr
    cdef Py_ssize_t i
    for s in margin.symbols.values():
        (<SymbolRisk>s).transit = None
    margin.in_transit = 0
    for s, interval, due in transit:
        sr = <SymbolRisk>s
        sr.intervals = 1
        sr.transit = Interval(1, *interval)
        for i in range(sr.slots.n):
            if pos_at(sr, i).held:
                pos_at(sr, i).funded = 1
        for account in due:
            pos_at(sr, margin.slots.slot_of(account)).funded = 0
        margin.in_transit += 1


def sweep(MarginCore margin, SymbolRisk sr, ids, Py_ssize_t budget, list events, seq, ts):
    """Settles sr's interval in transit account by account in `ids` (every account, ascending, a
    SortedList), the payers' positions in one pass and then the receivers' in another, from the
    cursor on: at most `budget` accounts visited (< 0: no limit). Past the last receiver, the
    interval is complete: the rounding remainder goes to the insurance fund, with FundingSettled.
    Returns the accounts visited."""
    cdef Interval iv = sr.transit
    cdef Py_ssize_t used = 0
    cdef Slots slots = margin.slots
    cdef Py_ssize_t slot
    cdef PosC* pos
    while True:
        after = iter(ids) if iv.cursor is None else ids.irange(iv.cursor, None, (False, True))
        for account in after:
            if used == budget:
                return used
            used += 1
            iv.cursor = account
            slot = slots.find(account)
            pos = pos_at(sr, slot)
            # a position opened, changed or touched since the funding time has been settled
            if pos.size and pos.funded != iv.number and (iv.receiving
                                                         or (pos.size > 0) == iv.payer_long):
                margin.pay(sr, slot, pos, events, seq, ts)
        if not iv.receiving:
            iv.receiving, iv.cursor = True, None
            continue
        complete(margin, sr, events, seq, ts)
        return used


cdef int complete(MarginCore margin, SymbolRisk sr, list events, seq, ts) except -1:
    """Every position of the interval settled: the remainder (what payers paid beyond what receivers
    got) from the funding in transit to the insurance fund, and FundingSettled."""
    cdef Interval iv = sr.transit
    positions, paid, received = iv.totals()
    remainder = paid - received
    if remainder < 0:   # floors above ceilings: open interest did not net (a bug, fail-stop)
        raise AssertionError(f"{sr.symbol} funding paid out {-remainder} more than it took in")
    asset = margin.settle
    move(margin.funding, margin.insurance, asset, remainder)
    events.append(FUNDING_SETTLED(seq, ts, sr.symbol, iv.rate, iv.mark, positions, paid, received,
                                  remainder))
    sr.transit = None
    margin.in_transit -= 1
    return 0
