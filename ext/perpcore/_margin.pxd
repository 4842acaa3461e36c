# The contract of ext/perpcore/_margin.pyx (the extension perpcore._margin): the per-account risk arithmetic of the
# margin layer over C integers, the hot path of every order (pre-trade check) and every fill
# (settlement).
#
# Units as in perpcore.risk: prices in ticks, sizes in lots, money in minor units of the settlement
# asset, rates at RATE_SCALE (1e-8). Positions and open-order aggregates are int64 (the risk limits
# bound them far below 2**63); products of money and rates are computed in 128-bit integers and come
# out as Python ints, so no figure overflows or loses a unit. Balances (cash, collateral) are the
# ledger's int64 cells (perpcore._ledger.CashTable), moved only through the ledger.
#
# An account is its slot: its row in the ledger's CashTable, whose record for the account holds,
# after its balances, the margin layer's area (Slots): the account's flags and its position in
# every symbol. The C entries take slots; Account is a view made for Python code.
#
# Rounding as perpcore.risk states it: requirements round up, values credited round down.

from libc.stdint cimport INT64_MAX, INT64_MIN, int32_t, int64_t, uint8_t

from perpcore._clock cimport Clocked
from perpcore._ledger cimport Accrual, Cash, CashTable

cdef extern from *:
    ctypedef long long int128_t "__int128"


cdef inline object py_int(int128_t v):
    """A 128-bit result as a Python int (the common 64-bit case without a byte array)."""
    if INT64_MIN <= v <= INT64_MAX:
        return <int64_t>v
    return v


cdef enum:
    MAX_TIERS = 16     # tiers an instrument may have


ctypedef struct Sums:
    # an account's positions: unrealised PnL at mark, initial margin (open orders included) and
    # maintenance margin, in minor units
    int128_t upnl
    int128_t im
    int128_t mm


cdef class TierTable:
    """An instrument's margin tiers in engine units (see perpcore.risk for the tier arithmetic)."""
    cdef readonly tuple caps, leverages, rates, amounts
    cdef readonly object cap0, rate0
    cdef int n
    cdef int128_t c_caps[MAX_TIERS]
    cdef int128_t c_rates[MAX_TIERS]
    cdef int128_t c_amounts[MAX_TIERS]
    cdef int64_t c_leverages[MAX_TIERS]

    cdef int128_t mm(self, int128_t notional)
    cdef int128_t cap_for(self, int64_t leverage)
    # liquidation_price over 128-bit integers: 1 with the tick in *tick, 0 for None
    cdef int liquidation_tick(self, int64_t size, int64_t upt, int128_t base,
                              int128_t* tick) except -1


cdef class Interval:
    """A symbol's funding interval in transit (perpcore.funding's model): its amount per lot fixed
    at its funding time, its payments settled over the following commands."""
    cdef readonly int64_t number       # SymbolRisk.intervals when it began
    cdef readonly object ts            # its funding time (ns)
    cdef readonly int64_t mark, rate   # ticks; RATE_SCALE (FundingPaid's figures)
    cdef int128_t per_lot              # mark x units per tick-lot x |rate| (> 0)
    cdef readonly bint payer_long      # longs pay (rate > 0)
    cdef readonly bint receiving       # the sweep is past the payers: it pays the receivers now
    cdef readonly object cursor        # the last account the sweep visited (None: none yet)
    cdef int128_t paid, received       # so far, minor units
    cdef readonly int64_t positions    # positions settled so far

    cdef int128_t amount(self, int64_t size)


ctypedef struct PosC:
    # one account's net position in one symbol and the aggregate of its open orders there, at the
    # account's slot in its SymbolRisk's array (its reduce-only order ids are MarginCore's)
    int64_t funded          # the last funding interval (SymbolRisk.intervals) it paid
    int64_t size            # signed lots
    int64_t cost            # entry value, ticks x lots, >= 0 (0 iff flat)
    int64_t leverage
    int64_t buy_qty, buy_value, sell_qty, sell_value    # open orders: lots, sum(price x lots)
    int32_t reduce_only     # open reduce-only orders (their ids: MarginCore.reduce_only_ids)
    int32_t held            # made (MarginCore.position_of): the account trades or quotes here


ctypedef struct Step:
    # one side of a fill as settlement made it (its PositionChanged's figures), kept for stage 6
    # to read without the event (perpcore._liquidation's read)
    int128_t cash            # realised PnL - fee, minor units
    int64_t account
    int64_t size, cost       # the position after it
    int32_t k                # its symbol's number (SymbolRisk.number)


cdef class SymbolRisk


cdef class Prices:
    """The prices of a symbol the margin and liquidation layers read, in ticks (None: none yet):
    perpcore.pricing.SymbolPricing is one, the only writer. Fields of a C struct, so the hot path
    reads them without an attribute lookup."""
    cdef public object index, mark, last_trade
    cdef public bint index_stale       # the index has not been updated within its window


cdef enum:
    OPENED = 1          # an account's flags: the margin layer opened it
    PROFESSIONAL = 2    # a professional investor (perpcore.config's leverage caps, markets)


cdef class Slots:
    """The margin layer's area of every account's record in the ledger's CashTable (the record's
    row is the account's slot): its flags, then its position in every SymbolRisk, in symbol order.
    A PosC* is only held while no account opens (the records may move as they grow)."""
    cdef readonly CashTable table   # the register: account <-> slot, the balances, the records
    cdef readonly Py_ssize_t n      # slots covered (their areas zeroed as covered)
    cdef readonly Py_ssize_t count  # accounts opened
    cdef Py_ssize_t offset          # the area's place in a record: the flags byte, then the PosCs
    cdef int64_t caps[2]            # the leverage cap of a retail account, of a professional one
    cdef tuple risks                # the SymbolRisks whose positions the area holds

    cdef int cover(self, Py_ssize_t slot) except -1
    cdef int clear(self) except -1
    cdef Py_ssize_t find(self, int64_t account) noexcept     # an opened account's slot, -1: none
    cdef Py_ssize_t lookup(self, account) noexcept           # any object; -1: no account
    cdef Py_ssize_t slot_of(self, account) except -1         # KeyError: no such account
    cdef int64_t leverage_cap(self, Py_ssize_t slot) noexcept


cdef inline uint8_t* flags_of(Slots slots, Py_ssize_t slot) noexcept:
    """A slot's flags (OPENED | PROFESSIONAL)."""
    return <uint8_t*>(slots.table.records + slot * slots.table.stride + slots.offset)


cdef class Position:
    """A view of one account's position in one symbol (its PosC), made on demand for Python code:
    reads and writes go to the array."""
    cdef readonly SymbolRisk risk
    cdef readonly Py_ssize_t slot
    cdef PosC* c(self) noexcept


cdef class Account:
    """A view of one account for Python code (made on each lookup): its id, flags, balances and
    positions are read from its slot."""
    cdef readonly Slots slots
    cdef readonly Py_ssize_t slot


cdef class Accounts:
    """Every account the margin layer opened, as a mapping account -> Account, in the order they
    opened (MarginCore.accounts)."""
    cdef readonly Slots slots

    cdef list opened(self)          # their slots


cdef class SymbolRisk:
    """Per instrument: its margin parameters and the positions held in it."""
    cdef readonly str symbol
    cdef readonly int number           # its index in symbol order (MarginCore.__init__)
    cdef readonly int64_t upt
    cdef readonly TierTable tiers
    cdef readonly int64_t maker_fee, taker_fee, default_leverage, max_leverage
    # sell orders' pre-trade margin at Binance's assuming price (InstrumentSpec.sell_order_margin)
    cdef readonly bint assuming_price
    cdef readonly int64_t assuming_buffer
    cdef Slots slots
    cdef CashTable table               # the records (slots.table, held here too: one hop less on
    #                                    every position read), its PosC at `offset` in each
    cdef Py_ssize_t offset
    cdef readonly Prices prices        # pricing's state of the symbol (perpcore.pricing)
    cdef readonly int64_t intervals    # funding intervals begun
    cdef readonly Interval transit     # the one whose payments are being settled (None: none)
    cdef int128_t long_lots, short_lots     # open interest: the longs' lots, the shorts'


cdef inline PosC* pos_at(SymbolRisk sr, Py_ssize_t slot) noexcept:
    """An account's position in the symbol, by its slot."""
    return <PosC*>(sr.table.records + slot * sr.table.stride + sr.offset)


cdef class MarginCore:
    """The hot half of perpcore.margin.Margin (its base class): valuation, the pre-trade check,
    open-order bookkeeping and fill settlement."""
    cdef readonly object exchange
    cdef readonly str settle
    cdef readonly Accounts accounts    # account -> Account (views over slots)
    cdef readonly Slots slots
    cdef CashTable cash                # the ledger's register and balances
    cdef tuple risks                   # symbols' SymbolRisk, in symbol order
    cdef readonly dict symbols         # symbol -> SymbolRisk
    cdef readonly list collateral      # perpcore.risk.CollateralPrice, by asset
    cdef tuple collateral_assets       # their assets
    cdef tuple collateral_columns      # their columns in the ledger's CashTable
    cdef Py_ssize_t settle_column      # the settlement asset's
    # open reduce-only order id -> [account, symbol, side, price, open qty] (the book holds every
    # order's account, side, price and open quantity; only this flag is the margin layer's own)
    cdef readonly dict reduce_only_orders
    cdef readonly dict reduce_only_ids # (account, symbol) -> its open reduce-only order ids, oldest first
    cdef readonly set reduce_only_dirty # (account, symbol) whose reduce-only orders may now exceed the position
    cdef readonly dict fees            # the fee account's balances
    cdef readonly Accrual fee_income   # fees taken from accounts, into `fees` once an order's
    #                                    fills are settled (its flush)
    cdef readonly Clocked lending      # perpcore.lending.Lending
    cdef readonly dict debts           # the lending pool's account -> debt (its own dict)
    cdef readonly object _mark, _index # pricing's mark_price / index_price
    cdef readonly dict funding         # the ledger's funding in transit (perpcore.funding)
    cdef readonly int64_t in_transit   # symbols with a funding interval in transit
    # the maintenance breach is equity + maintenance_shift <= maintenance: 0 on reaching it, 1 on
    # passing it (MarginSpec.maintenance_trigger_at; equity and maintenance are whole units)
    cdef readonly int64_t maintenance_shift
    cdef readonly bint auto_exchange   # multi-assets mode (MarginSpec.multi_assets): after_command
    #                                    converts collateral of balances below the threshold
    # every PositionChanged of the command so far, in order, as a Step: the exchange empties it
    # as a command begins, trade_side appends, stage 6 reads
    cdef Step* steps
    cdef readonly Py_ssize_t n_steps
    cdef Py_ssize_t cap_steps

    # the hooks the exchange calls, perpcore.margin.Margin's: on_clock once the clock reaches
    # lending.due (loan interest, then the loans' checks); after_command after stage 5 while
    # anyone borrows or multi-assets mode is on (each does its work, then returns the loans'
    # checks as a plan, perpcore.messages.Plan, or None: the exchange runs it); after_liquidation
    # after stage 6 in that mode
    cpdef on_clock(self, t_end, list events)
    cpdef after_command(self, list events)
    cpdef after_liquidation(self, list events)

    # (equity, unrealised PnL, initial margin, maintenance margin, collateral value), from:
    cdef tuple figures_of(self, Py_ssize_t slot)
    cdef int sums_of(self, Py_ssize_t slot, Sums* sums) except -1      # the positions' part
    cdef object collateral_of(self, Py_ssize_t slot)                   # collateral after haircuts
    cdef object equity_of(self, Py_ssize_t slot, upnl, coll)           # cash + coll + upnl - debt
    #                                                                + funding due, see pending_of
    # funding in transit (perpcore.funding): what the account's positions not yet settled will
    # receive (> 0) or pay (< 0); pay() settles one position, settle_account() all of an account's
    cdef PosC* due(self, SymbolRisk sr, Py_ssize_t slot) noexcept      # owing sr's transit, or NULL
    cdef object pending_of(self, Py_ssize_t slot)
    cdef int pay(self, SymbolRisk sr, Py_ssize_t slot, PosC* pos, list events, seq, ts) except -1
    cdef int settle_account(self, Py_ssize_t slot, list events, seq, ts) except -1
    cdef PosC* position_of(self, Py_ssize_t slot, SymbolRisk sr) noexcept     # made if new
    cdef void add_order(self, PosC* pos, int side, int64_t price, int64_t qty) noexcept
    cdef PosC* held_position(self, account, symbol) except NULL    # one that is made
    cdef int64_t* cash_of(self, Py_ssize_t slot) noexcept          # its row of balances
    cdef void forget(self, object order_id, PosC* pos) except *
    # order entry's calls (perpcore._exchange; it has found the account and the symbol's
    # SymbolRisk once), and the C entries of order_closed and trade. check() returns 0, or a
    # refusal's code with its reason in `reason` (no exception: order entry makes it the
    # OrderRejected)
    cdef readonly str reason
    cdef int check(self, Py_ssize_t slot, SymbolRisk sr, int side, int64_t price, int64_t qty,
                   bint reduce_only, amended, int64_t old_price, int64_t old_qty) except -1
    cdef int128_t assuming_premium(self, SymbolRisk sr, int64_t price, int64_t qty, int64_t mark,
                                   bint has_mark) except? -1
    cdef int refuse(self, int code, str reason) except -1
    cdef rested(self, order_id, Py_ssize_t slot, SymbolRisk sr, int side, int64_t price, int64_t qty,
                bint reduce_only)
    cdef closed(self, order_id, Py_ssize_t slot, SymbolRisk sr, int side, int64_t price, int64_t qty)
    # the reduce-only orders the positions in reduce_only_dirty no longer allow, as (symbol,
    # order id, lots to take off), newest first; empties reduce_only_dirty
    cdef list reduce_only_excess(self)
    # seq, ts: the command's, for the events; the accounts as their ids (objects, for the events)
    # and the taker's slot (order entry has found it)
    cdef settle_trade(self, SymbolRisk sr, int64_t price, int64_t qty, int taker_side, maker_id,
                      taker_id, maker_account, taker_account, Py_ssize_t taker,
                      int64_t maker_remaining, list events, taker_fee, seq, ts)
    cdef trade_side(self, SymbolRisk sr, account, Py_ssize_t slot, PosC* pos, bint buy,
                    int64_t price, int64_t qty, int64_t fee_rate, order_id, list events, seq, ts)
