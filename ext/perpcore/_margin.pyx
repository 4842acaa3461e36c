# The margin layer's hot arithmetic. See perpcore._margin.pxd for the contract; perpcore.risk and
# perpcore.margin state the definitions this implements.
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.string cimport memset

from collections.abc import Mapping

from perpcore._ledger cimport id_at, move_cells, realise_cell, row_cells

from perpcore import messages as m
from perpcore.config import RATE_SCALE
from perpcore.errors import RejectCode

cdef int64_t RS = RATE_SCALE
cdef object _PositionChanged = m.PositionChanged
cdef object _FundingPaid = m.FundingPaid
cdef int REDUCE_ONLY_WOULD_INCREASE = RejectCode.REDUCE_ONLY_WOULD_INCREASE
cdef int RISK_LIMIT_EXCEEDED = RejectCode.RISK_LIMIT_EXCEEDED
cdef int INSUFFICIENT_MARGIN = RejectCode.INSUFFICIENT_MARGIN


cdef inline int128_t floor_div(int128_t a, int128_t b):
    """a / b rounded down (b > 0); C division truncates toward zero."""
    cdef int128_t q = a / b
    if a % b != 0 and a < 0:
        q -= 1
    return q


cdef inline int128_t ceil_div(int128_t a, int128_t b):
    """a / b rounded up (b > 0)."""
    return -floor_div(-a, b)


cdef class TierTable:
    """Tier k covers notionals in (caps[k-1], caps[k]] (the first from 0, the last without an upper
    bound for valuation, though no order may take a position past caps[-1]). Maintenance of a
    position of notional n in tier k is ceil((n * rates[k] - amounts[k]) / RATE_SCALE) where
    amounts[k] = caps[k-1] * (rates[k] - rates[k-1]) + amounts[k-1] (minor units x RATE_SCALE):
    the requirement is continuous across tier boundaries, Binance's maintenance amount."""

    def __init__(self, spec, config):
        settle = config.assets[spec.settle]
        caps = tuple(settle.to_units(t.max_notional) for t in spec.tiers)
        if not 0 < len(caps) <= MAX_TIERS:
            raise ValueError(f"{spec.symbol}: 1 to {MAX_TIERS} margin tiers, not {len(caps)}")
        self.caps = caps
        self.leverages = tuple(t.max_leverage for t in spec.tiers)
        self.rates = tuple(t.maintenance_rate for t in spec.tiers)
        amount = 0
        amounts = [amount]
        for k in range(1, len(caps)):
            amount += caps[k - 1] * (self.rates[k] - self.rates[k - 1])
            amounts.append(amount)
        self.amounts = tuple(amounts)
        self.cap0, self.rate0 = caps[0], self.rates[0]
        self.n = len(caps)
        for k in range(self.n):
            self.c_caps[k] = caps[k]
            self.c_rates[k] = self.rates[k]
            self.c_amounts[k] = self.amounts[k]
            self.c_leverages[k] = self.leverages[k]

    cdef int128_t mm(self, int128_t notional):
        cdef int k = 0
        if notional <= self.c_caps[0]:
            return ceil_div(notional * self.c_rates[0], RS)
        while k < self.n - 1 and notional > self.c_caps[k]:
            k += 1
        return -floor_div(self.c_amounts[k] - notional * self.c_rates[k], RS)

    cdef int128_t cap_for(self, int64_t leverage):
        cdef int128_t cap = 0
        cdef int k
        for k in range(self.n):
            if self.c_leverages[k] >= leverage:
                cap = self.c_caps[k]
        return cap

    def tier(self, notional) -> int:
        caps = self.caps
        k = 0
        last = len(caps) - 1
        while k < last and notional > caps[k]:
            k += 1
        return k

    def maintenance(self, int128_t notional):
        """Maintenance margin of a position of that notional (minor units), rounded up."""
        return py_int(self.mm(notional))

    def max_notional(self, int64_t leverage):
        """The largest position notional that may use this leverage: the top of the last tier whose
        maximum leverage allows it (0 if no tier does)."""
        return py_int(self.cap_for(leverage))

    def _price_range(self, k: int, per_tick: int) -> tuple:
        """Prices (ticks) at which a position worth per_tick minor units a tick is in tier k."""
        lo = self.caps[k - 1] // per_tick + 1 if k else 1
        hi = self.caps[k] // per_tick if k < len(self.caps) - 1 else None
        return lo, hi

    def liquidation_price(self, size: int, upt: int, base: int):
        """The tick at which a position of `size` lots gets liquidated, all else held fixed.

        `base` is the account's equity less its other positions' maintenance, less this
        position's value at price 0: at price p the equity less other maintenance is
        base + size * upt * p, and the account is liquidatable when that is <= this position's
        maintenance at p. That set of prices is a half-line; the answer is its end nearest the
        mark: for a long the HIGHEST tick at or below which it is liquidatable (mark <= price),
        for a short the LOWEST tick at or above which it is (mark >= price). None: a long that no
        positive price liquidates. A short liquidatable at every price gives 1.

        Per tier k (rate r, amount A): base + s*u*p <= ceil((a*u*p*r - A) / RS) holds, for whole
        L = base + s*u*p, iff RS * (L - 1) < a*u*p*r - A; that is linear in p and solved exactly."""
        a = abs(size)
        per_tick = a * upt
        best = None
        for k in range(len(self.caps)):
            r, amount = self.rates[k], self.amounts[k]
            lo, hi = self._price_range(k, per_tick)
            if size > 0:
                # p * a*u*(RS - r) < RS - RS*base - A
                c = RATE_SCALE - RATE_SCALE * base - amount
                p = (c - 1) // (per_tick * (RATE_SCALE - r))
                if hi is not None:
                    p = min(p, hi)
                if p >= lo and (best is None or p > best):
                    best = p
            else:
                # p * a*u*(RS + r) > RS*(base - 1) + A
                c = RATE_SCALE * (base - 1) + amount
                p = max(c // (per_tick * (RATE_SCALE + r)) + 1, lo)
                if (hi is None or p <= hi) and (best is None or p < best):
                    best = p
        return best

    cdef int liquidation_tick(self, int64_t size, int64_t upt, int128_t base,
                              int128_t* tick) except -1:
        """liquidation_price(size, upt, base) over 128-bit integers (the same tier by tier solve):
        1 with the tick in *tick, 0 for None. A position's value a tick and a base within the
        venue's limits keep every product inside 128 bits; beyond (|base| >= 2**96, a position
        worth 2**64 a tick, a long's rate of 100% or more), the Python figure."""
        cdef int128_t a = size if size > 0 else -size
        cdef int128_t per_tick = a * upt, lo, hi, c, p, best = 0, bound = (<int128_t>1) << 96
        cdef bint found = False, top, plain = 0 < per_tick < (<int128_t>1) << 64
        cdef int k
        for k in range(self.n):
            plain = plain and not (size > 0 and self.c_rates[k] >= RS)
        if not (plain and -bound < base < bound):
            price = self.liquidation_price(size, upt, py_int(base))
            if price is None:
                return 0
            tick[0] = price
            return 1
        for k in range(self.n):
            top = k == self.n - 1
            lo = self.c_caps[k - 1] // per_tick + 1 if k else 1
            hi = self.c_caps[k] // per_tick
            if size > 0:
                c = RS - RS * base - self.c_amounts[k]
                p = floor_div(c - 1, per_tick * (RS - self.c_rates[k]))
                if not top and p > hi:
                    p = hi
                if p >= lo and (not found or p > best):
                    best, found = p, True
            else:
                c = RS * (base - 1) + self.c_amounts[k]
                p = floor_div(c, per_tick * (RS + self.c_rates[k])) + 1
                if p < lo:
                    p = lo
                if (top or p <= hi) and (not found or p < best):
                    best, found = p, True
        tick[0] = best
        return found


cdef inline int128_t side_margin(int64_t position, int64_t lots, int64_t value, int64_t mark,
                                 bint has_mark, bint buy, int64_t upt, int64_t leverage,
                                 int128_t premium=0):
    """Initial margin one side of an account's open orders in a symbol reserves (see order_margin).
    premium (ticks x lots x RATE_SCALE) is added to the side's value for its initial margin only,
    not for its open loss: an order charged at an assuming price above its own (MarginCore.check)."""
    cdef int64_t reducing, increasing
    cdef int128_t im = 0, loss
    if lots == 0:
        return 0
    reducing = -position if buy else position
    increasing = lots - reducing if reducing > 0 else lots
    if increasing > 0:
        if premium:
            im = ceil_div((<int128_t>value * RS + premium) * upt * increasing,
                          <int128_t>lots * leverage * RS)
        else:
            im = ceil_div(<int128_t>value * upt * increasing, <int128_t>lots * leverage)
    if has_mark:
        loss = <int128_t>value - <int128_t>lots * mark if buy else <int128_t>lots * mark - value
        if loss > 0:
            im += loss * upt
    return im


def order_margin(int64_t position, int64_t lots, int64_t value, mark, bint buy, int64_t upt,
                 int64_t leverage):
    """Initial margin one side of an account's open orders in a symbol reserves.

    lots / value: the side's open quantity and sum(price x qty) in ticks x lots. The first
    lots that would reduce the position (a buy against a short) are free; the rest pay
    notional / leverage, pro rata to the side's value and rounded up. Orders priced worse than
    the mark add their immediate loss, netted over the side: max(0, value - lots * mark) for bids,
    max(0, lots * mark - value) for offers (BitMEX and Binance charge it the same way)."""
    return py_int(side_margin(position, lots, value, 0 if mark is None else mark, mark is not None,
                              buy, upt, leverage))


cdef inline int128_t worst_notional(int64_t size, int64_t cost, int64_t upt, int64_t price,
                                    bint has_price, bint buy, int128_t value):
    """The notional of a position (size lots, entry value cost) if every order on one side filled:
    the position at `price` (the mark; its entry value without one) plus the side's orders (value)
    at their prices."""
    cdef int128_t held
    if has_price:
        held = <int128_t>size * price
    else:
        held = cost if size >= 0 else -cost
    held = held + value if buy else held - value
    return (held if held >= 0 else -held) * upt


cdef class Interval:
    """See perpcore.funding's module docstring for the model; the sweep is perpcore._funding's."""

    def __init__(self, int64_t number, ts, int64_t mark, int64_t rate, int128_t per_lot,
                 bint receiving=False, cursor=None, int128_t paid=0, int128_t received=0,
                 int64_t positions=0):
        self.number, self.ts, self.mark, self.rate, self.per_lot = number, ts, mark, rate, per_lot
        self.payer_long = rate > 0
        self.receiving, self.cursor = receiving, cursor
        self.paid, self.received, self.positions = paid, received, positions

    cdef int128_t amount(self, int64_t size):
        """A position's funding (size != 0): a payer pays its due rounded up (< 0), a receiver gets
        its due rounded down (perpcore.funding.payments' rule; the interval only begins when every
        product fits 128 bits)."""
        cdef int128_t due = (<int128_t>size if size > 0 else -<int128_t>size) * self.per_lot
        if (size > 0) == self.payer_long:
            return -(due / RS + (due % RS != 0))
        return due / RS

    def to_state(self) -> list:
        """Everything but `number` (relative to the positions', see perpcore.margin.to_state)."""
        return [self.ts, self.mark, self.rate, py_int(self.per_lot), self.receiving, self.cursor,
                py_int(self.paid), py_int(self.received), self.positions]

    def totals(self) -> tuple:
        """(positions, paid, received) so far: FundingSettled's figures once the sweep is done."""
        return self.positions, py_int(self.paid), py_int(self.received)


cdef class Prices:
    pass       # its fields (the .pxd) start as None and False


cdef class Slots:

    def __init__(self, tuple risks, CashTable table, int64_t retail_cap, int64_t professional_cap):
        cdef SymbolRisk sr
        cdef Py_ssize_t k
        self.risks, self.table = risks, table
        self.caps[0], self.caps[1] = retail_cap, professional_cap
        # the flags byte, padded to 8, then one PosC per symbol
        self.offset = table.reserve(8 + len(risks) * sizeof(PosC))
        for k, sr in enumerate(risks):
            sr.slots, sr.table, sr.offset = self, table, self.offset + 8 + k * sizeof(PosC)

    cdef int cover(self, Py_ssize_t slot) except -1:
        cdef Py_ssize_t s
        if slot < self.n:
            return 0
        if slot >= self.table.rows:
            raise IndexError(f"no record for slot {slot}")
        for s in range(self.n, slot + 1):
            memset(flags_of(self, s), 0, 8 + len(self.risks) * sizeof(PosC))
        self.n = slot + 1
        return 0

    cdef int clear(self) except -1:
        self.n = self.count = 0     # each slot is zeroed as it is covered again
        return 0

    cdef Py_ssize_t find(self, int64_t account) noexcept:
        cdef Py_ssize_t slot = self.table.find(account)
        return slot if 0 <= slot < self.n and flags_of(self, slot)[0] & OPENED else -1

    cdef Py_ssize_t lookup(self, account) noexcept:
        cdef Py_ssize_t slot = self.table.lookup(account)
        return slot if 0 <= slot < self.n and flags_of(self, slot)[0] & OPENED else -1

    cdef Py_ssize_t slot_of(self, account) except -1:
        cdef Py_ssize_t slot = self.lookup(account)
        if slot < 0:
            raise KeyError(account)
        return slot

    cdef int64_t leverage_cap(self, Py_ssize_t slot) noexcept:
        return self.caps[1 if flags_of(self, slot)[0] & PROFESSIONAL else 0]


# a view refers to its SymbolRisk, which never refers to a view: no cycle through it
@cython.no_gc
cdef class Position:

    def __init__(self, SymbolRisk risk, Py_ssize_t slot):
        if not 0 <= slot < risk.slots.n:
            raise IndexError(f"no account slot {slot}")
        self.risk, self.slot = risk, slot

    cdef PosC* c(self) noexcept:
        return pos_at(self.risk, self.slot)

    @property
    def funded(self):
        return self.c().funded

    @funded.setter
    def funded(self, int64_t value):
        self.c().funded = value

    @property
    def size(self):
        return self.c().size

    @size.setter
    def size(self, int64_t value):
        self.c().size = value

    @property
    def cost(self):
        return self.c().cost

    @cost.setter
    def cost(self, int64_t value):
        self.c().cost = value

    @property
    def leverage(self):
        return self.c().leverage

    @leverage.setter
    def leverage(self, int64_t value):
        self.c().leverage = value

    @property
    def buy_qty(self):
        return self.c().buy_qty

    @buy_qty.setter
    def buy_qty(self, int64_t value):
        self.c().buy_qty = value

    @property
    def buy_value(self):
        return self.c().buy_value

    @buy_value.setter
    def buy_value(self, int64_t value):
        self.c().buy_value = value

    @property
    def sell_qty(self):
        return self.c().sell_qty

    @sell_qty.setter
    def sell_qty(self, int64_t value):
        self.c().sell_qty = value

    @property
    def sell_value(self):
        return self.c().sell_value

    @sell_value.setter
    def sell_value(self, int64_t value):
        self.c().sell_value = value

    @property
    def reduce_only(self):
        return self.c().reduce_only

    @reduce_only.setter
    def reduce_only(self, int32_t value):
        self.c().reduce_only = value

    def signed_cost(self):
        return self.c().cost if self.c().size >= 0 else -self.c().cost

    def idle(self, int64_t default_leverage) -> bool:
        cdef PosC* pos = self.c()
        return not (pos.size or pos.buy_qty or pos.sell_qty) and pos.leverage == default_leverage


# It refers to no object that could refer back to it (the slots, which hold no view): the
# collector need not visit it
@cython.no_gc
@cython.freelist(8)
cdef class Account:

    def __init__(self, Slots slots, Py_ssize_t slot):
        if not 0 <= slot < slots.n:
            raise IndexError(f"no account slot {slot}")
        self.slots, self.slot = slots, slot

    @property
    def id(self):
        return id_at(self.slots.table, self.slot)

    @property
    def professional(self):
        return bool(flags_of(self.slots, self.slot)[0] & PROFESSIONAL)

    @property
    def leverage_cap(self):
        return self.slots.leverage_cap(self.slot)

    @property
    def cash(self) -> Cash:
        """The account's balances (a view of its row in the ledger's CashTable)."""
        return Cash(self.slots.table, self.slot)

    @property
    def positions(self) -> dict:
        """symbol -> Position, in symbol order: the symbols the account has traded or quoted."""
        cdef SymbolRisk sr
        out = {}
        for sr in self.slots.risks:
            if pos_at(sr, self.slot).held:
                out[sr.symbol] = Position(sr, self.slot)
        return out

    def __eq__(self, other):
        if isinstance(other, Account):
            return self.slots is (<Account>other).slots and self.slot == (<Account>other).slot
        return NotImplemented

    def __hash__(self):
        return hash((id(self.slots), self.slot))

    def __repr__(self):
        return f"Account({self.id}, professional={self.professional})"


@cython.no_gc
cdef class Accounts:

    def __init__(self, Slots slots):
        self.slots = slots

    def __getitem__(self, account):
        return Account(self.slots, self.slots.slot_of(account))

    def get(self, account, default=None):
        cdef Py_ssize_t slot = self.slots.lookup(account)
        return Account(self.slots, slot) if slot >= 0 else default

    def __contains__(self, account):
        return self.slots.lookup(account) >= 0

    cdef list opened(self):
        cdef Py_ssize_t i
        return [i for i in range(self.slots.n) if flags_of(self.slots, i)[0] & OPENED]

    def __len__(self):
        return self.slots.count

    def __iter__(self):
        return iter(self.keys())

    def keys(self):
        cdef Py_ssize_t i
        return [id_at(self.slots.table, i) for i in self.opened()]

    def values(self):
        return [Account(self.slots, i) for i in self.opened()]

    def items(self):
        return [(id_at(self.slots.table, i), Account(self.slots, i)) for i in self.opened()]


Mapping.register(Accounts)


cdef class SymbolRisk:

    def __init__(self, config, str symbol):
        spec = config.instruments[symbol]
        self.symbol = symbol
        self.upt = config.units_per_ticklot(symbol)
        self.tiers = TierTable(spec, config)
        self.maker_fee = spec.maker_fee
        self.taker_fee = spec.taker_fee
        self.default_leverage = spec.default_leverage
        self.max_leverage = spec.tiers[0].max_leverage
        self.assuming_price = spec.sell_order_margin == "assuming_price"
        self.assuming_buffer = spec.assuming_price_buffer

    @property
    def positions(self) -> dict:
        """account -> Position, in the order accounts opened: those that traded or quoted here."""
        cdef Py_ssize_t i
        out = {}
        if self.slots is not None:
            for i in range(self.slots.n):
                if pos_at(self, i).held:
                    out[id_at(self.slots.table, i)] = Position(self, i)
        return out

    def open_entry(self):
        """The open positions' signed entry value (ticks x lots): the ledger's counterpart of
        realised PnL (perpcore.ledger's open_entry_value) is it x upt."""
        cdef int128_t total = 0
        cdef Py_ssize_t i
        cdef PosC* pos
        if self.slots is not None:
            for i in range(self.slots.n):
                pos = pos_at(self, i)
                total += pos.cost if pos.size >= 0 else -pos.cost
        return py_int(total)

    def open_interest(self) -> tuple:
        """(lots held long, lots held short); equal in a venue where every change is a trade."""
        return py_int(self.long_lots), py_int(self.short_lots)

    def count_open_interest(self):
        """open_interest() counted afresh from the positions (after a restore)."""
        cdef Py_ssize_t i
        cdef int64_t size
        self.long_lots = self.short_lots = 0
        for i in range(self.slots.n):
            size = pos_at(self, i).size
            if size > 0:
                self.long_lots += size
            else:
                self.short_lots -= size


cdef class MarginCore:

    def __cinit__(self, *args, **kwargs):
        # the reduce-only bookkeeping (the .pxd says what each holds), kept by the C entries
        self.reduce_only_orders, self.reduce_only_ids = {}, {}
        self.reduce_only_dirty = set()

    def __init__(self, exchange, ledger, lending, list collateral):
        """Over the exchange's config and prices, the ledger's register and buckets, the lending
        pool and the collateral assets' prices (perpcore.risk.CollateralPrice, by asset), all of
        which the Python layer builds; each symbol's positions get their area in the ledger's
        records here, once, before any account opens."""
        config = exchange.config
        pricing = exchange.components["pricing"]
        self.exchange = exchange
        self.settle = config.settlement_asset
        # the one place prices come in: mark for positions, index for collateral
        self._mark, self._index = pricing.mark_price, pricing.index_price
        self.lending, self.debts = lending, lending.debts
        self.fees = ledger.venue["fee_account"]
        self.funding = ledger.venue["funding_transit"]
        self.symbols = {s: SymbolRisk(config, s) for s in sorted(config.instruments)}
        cdef SymbolRisk sr
        for symbol, sr in self.symbols.items():
            sr.prices = pricing.symbols[symbol]     # the hot path reads its mark directly
        self.risks = tuple(self.symbols.values())
        for k, sr in enumerate(self.risks):
            sr.number = k
        cdef CashTable table = ledger.cash
        self.cash = table
        caps = config.margin.leverage_caps
        self.slots = Slots(self.risks, table, caps["retail"], caps["professional"])
        self.accounts = Accounts(self.slots)
        self.collateral = collateral
        self.collateral_assets = tuple(c.asset for c in collateral)
        self.collateral_columns = tuple(table.column_of(a) for a in self.collateral_assets)
        self.settle_column = table.column_of(self.settle)
        self.fee_income = Accrual(self.fees, self.settle)
        spec = config.margin
        self.maintenance_shift = 1 if spec.maintenance_trigger_at == "passing" else 0
        self.auto_exchange = spec.multi_assets

    def __dealloc__(self):
        PyMem_Free(self.steps)

    # ---- the exchange's hooks (see the .pxd; perpcore.margin.Margin defines them) -------------

    cpdef on_clock(self, t_end, list events):
        raise NotImplementedError(f"{type(self).__name__} defines no on_clock")

    cpdef after_command(self, list events):
        raise NotImplementedError(f"{type(self).__name__} defines no after_command")

    cpdef after_liquidation(self, list events):
        raise NotImplementedError(f"{type(self).__name__} defines no after_liquidation")

    # ---- accounts and positions ----------------------------------------------------------------

    def new_account(self, account, bint professional) -> Account:
        """Opens the account in its slot, the ledger's row of it (which the ledger has given)."""
        cdef Py_ssize_t slot = self.cash.row_of(account)
        self.slots.cover(slot)
        if flags_of(self.slots, slot)[0] & OPENED:
            raise ValueError(f"account {account} is already open")
        flags_of(self.slots, slot)[0] = OPENED | (PROFESSIONAL if professional else 0)
        self.slots.count += 1
        return Account(self.slots, slot)

    def clear_accounts(self):
        """No account and no position (a restore's start, the ledger's rows given afresh)."""
        self.slots.clear()

    def _leverage_default(self, Account acc, SymbolRisk sr):
        return min(sr.default_leverage, self.slots.leverage_cap(acc.slot))

    cdef PosC* position_of(self, Py_ssize_t slot, SymbolRisk sr) noexcept:
        cdef PosC* pos = pos_at(sr, slot)
        if not pos.held:
            pos.held = 1
            pos.leverage = min(sr.default_leverage, self.slots.leverage_cap(slot))
        return pos

    cdef int64_t* cash_of(self, Py_ssize_t slot) noexcept:
        return row_cells(self.cash, slot)

    def _position(self, Account acc, SymbolRisk sr) -> Position:
        self.position_of(acc.slot, sr)
        return Position(sr, acc.slot)

    # ---- valuation -----------------------------------------------------------------------------

    cdef tuple figures_of(self, Py_ssize_t slot):
        cdef Sums sums
        self.sums_of(slot, &sums)
        coll = self.collateral_of(slot)
        upnl = py_int(sums.upnl)
        return self.equity_of(slot, upnl, coll), upnl, py_int(sums.im), py_int(sums.mm), coll

    cdef object collateral_of(self, Py_ssize_t slot):
        cdef int64_t* cash = self.cash_of(slot)
        cdef Py_ssize_t j
        cdef int64_t amount
        coll = 0
        for j in range(len(self.collateral_assets)):
            amount = cash[<Py_ssize_t>self.collateral_columns[j]]
            if amount > 0:
                c = self.collateral[j]
                coll += c.value(amount, self._index(c.symbol))
        return coll

    cdef object equity_of(self, Py_ssize_t slot, upnl, coll):
        equity = self.cash_of(slot)[self.settle_column] + coll + upnl
        if self.in_transit:     # every decision sees the account as if funding were settled
            equity += self.pending_of(slot)
        if not self.debts:
            return equity
        debt = self.debts.get(id_at(self.cash, slot))
        return equity if debt is None else equity - debt

    # ---- funding in transit (perpcore.funding) -------------------------------------------------

    cdef PosC* due(self, SymbolRisk sr, Py_ssize_t slot) noexcept:
        """The account's position in sr that owes sr's interval in transit, or NULL."""
        if sr.transit is None:
            return NULL
        cdef PosC* pos = pos_at(sr, slot)
        return pos if pos.size and pos.funded != sr.transit.number else NULL

    cdef object pending_of(self, Py_ssize_t slot):
        cdef int128_t total = 0
        cdef SymbolRisk sr
        cdef PosC* pos
        for sr in self.risks:
            pos = self.due(sr, slot)
            if pos is not NULL:
                total += sr.transit.amount(pos.size)
        return py_int(total)

    cdef int pay(self, SymbolRisk sr, Py_ssize_t slot, PosC* pos, list events, seq, ts) except -1:
        """Settles the position's funding of sr's interval in transit (size != 0, not yet paid):
        its cash against the ledger's funding in transit, and its FundingPaid."""
        cdef Interval iv = sr.transit
        cdef int128_t amount = iv.amount(pos.size)
        pos.funded = iv.number
        if amount < 0:
            iv.paid -= amount
        else:
            iv.received += amount
        iv.positions += 1
        settle = self.settle
        value = py_int(amount)
        move_cells(self.funding, NULL, None, &self.cash_of(slot)[self.settle_column], settle, value)
        events.append(_FundingPaid(seq, ts, sr.symbol, id_at(self.cash, slot), pos.size, iv.mark,
                                   iv.rate, value))
        return 0

    cdef int settle_account(self, Py_ssize_t slot, list events, seq, ts) except -1:
        """Pays the account's funding still in transit, symbol by symbol (in order)."""
        cdef SymbolRisk sr
        cdef PosC* pos
        for sr in self.risks:
            pos = self.due(sr, slot)
            if pos is not NULL:
                self.pay(sr, slot, pos, events, seq, ts)
        return 0

    def pending(self, Account acc):
        """The account's funding in transit, as pending_of: > 0 it will receive, < 0 pay."""
        return self.pending_of(acc.slot) if self.in_transit else 0

    def touch(self, Account acc, list events):
        """An account a command touches pays or receives its funding in transit first, in that
        command (perpcore.funding: a transfer, a loan's conversion, interest)."""
        if self.in_transit:
            ex = self.exchange
            self.settle_account(acc.slot, events, ex.seq, ex.clock)

    cdef int sums_of(self, Py_ssize_t slot, Sums* sums) except -1:
        cdef PosC* pos
        cdef SymbolRisk sr
        cdef int128_t upnl = 0, im = 0, mm = 0, notional, bids, offers
        cdef int64_t size, mark, upt
        cdef bint has_mark
        for sr in self.risks:
            pos = pos_at(sr, slot)
            if not pos.held:
                continue
            upt = sr.upt
            size = pos.size
            mark_obj = sr.prices.mark
            has_mark = mark_obj is not None
            mark = mark_obj if has_mark else 0
            if size:
                if not has_mark:
                    notional = <int128_t>pos.cost * upt
                else:
                    notional = <int128_t>(size if size > 0 else -size) * mark * upt
                    upnl += (<int128_t>size * mark - (pos.cost if size > 0 else -pos.cost)) * upt
                im += ceil_div(notional, pos.leverage)
                mm += sr.tiers.mm(notional)
            if pos.buy_qty or pos.sell_qty:
                bids = side_margin(size, pos.buy_qty, pos.buy_value, mark, has_mark, True, upt,
                                   pos.leverage)
                offers = side_margin(size, pos.sell_qty, pos.sell_value, mark, has_mark, False, upt,
                                     pos.leverage)
                im += bids if bids > offers else offers
        sums.upnl, sums.im, sums.mm = upnl, im, mm
        return 0

    def _figures(self, Account acc) -> tuple:
        """(equity, unrealised PnL, initial margin, maintenance margin, collateral value)."""
        return self.figures_of(acc.slot)

    @staticmethod
    def _worst_notional(Position pos, SymbolRisk sr, price, bint buy, int64_t lots,
                        int128_t value):
        """The position's notional if every order on one side filled: the position at `price`
        (the mark; its entry value without one) plus the side's orders at their prices."""
        return py_int(worst_notional(pos.c().size, pos.c().cost, sr.upt,
                                     0 if price is None else price, price is not None, buy, value))

    # ---- pre-trade -----------------------------------------------------------------------------

    cdef int check(self, Py_ssize_t slot, SymbolRisk sr, int side, int64_t price, int64_t qty,
                   bint reduce_only, amended, int64_t old_price, int64_t old_qty) except -1:
        """Refuses an order (or, with `amended`, the new price and open quantity of that resting
        order, now at old_price for old_qty open lots) the account could not carry: a reduce-only
        order that could increase the position (with the account's other orders on that side), a
        position past its leverage's notional cap, or initial margin above equity. An order that
        adds no initial margin (netted by the other side, or reducing the position at a price no
        worse than the mark) always passes, and a reduce-only order is never refused for margin:
        it is the way out of a position. Returns 0, or the refusal's code with its reason in
        `reason`."""
        # a position yet to be made is all zeros: flat, no orders (none is made here)
        cdef PosC* pos = pos_at(sr, slot)
        cdef int64_t bq = pos.buy_qty, bv = pos.buy_value, sq = pos.sell_qty, sv = pos.sell_value
        cdef int64_t size = pos.size, cost = pos.cost, lots, value, now_lots
        cdef int64_t now_value, other_lots, other_value, mark, upt, room
        cdef int64_t lev = (pos.leverage if pos.held
                            else min(sr.default_leverage, self.slots.leverage_cap(slot)))
        cdef int128_t worst, cap, other, new, current
        cdef bint buy = side == 0, has_mark
        # the order's side as it stands now (with the amended order's old terms)
        if buy:
            now_lots, now_value = bq, bv
        else:
            now_lots, now_value = sq, sv
        if amended:
            reduce_only = amended in self.reduce_only_orders
            if buy:
                bq, bv = bq - old_qty, bv - old_price * old_qty
            else:
                sq, sv = sq - old_qty, sv - old_price * old_qty
        if reduce_only:
            room = (-size if buy else size) - (bq if buy else sq)
            if qty > room:
                return self.refuse(REDUCE_ONLY_WOULD_INCREASE,
                                   f"reduce-only order of {qty} lots could increase the position "
                                   f"(it and the other {'bids' if buy else 'offers'} may reduce "
                                   f"{max(room, 0)} more)")
            return 0
        # the order's side after it, and the other side (unchanged)
        if buy:
            lots, value, other_lots, other_value = bq + qty, bv + price * qty, sq, sv
        else:
            lots, value, other_lots, other_value = sq + qty, sv + price * qty, bq, bv
        mark_obj = sr.prices.mark
        has_mark = mark_obj is not None
        mark = mark_obj if has_mark else 0
        upt = sr.upt
        if (-size if buy else size) < lots:
            # the side could increase the position (a side that only reduces it never breaks
            # the risk limit, though its price may still add margin: its loss against the mark)
            worst = worst_notional(size, cost, upt, mark, has_mark, buy, value)
            cap = sr.tiers.cap_for(lev)
            if worst > cap:
                return self.refuse(RISK_LIMIT_EXCEEDED,
                                   f"position and orders would reach {py_int(worst)}, above the "
                                   f"{py_int(cap)} allowed at {lev}x")
        other = side_margin(size, other_lots, other_value, mark, has_mark, not buy, upt, lev)
        new = side_margin(size, lots, value, mark, has_mark, buy, upt, lev,
                          0 if buy or not sr.assuming_price else self.assuming_premium(
                              sr, price, qty - old_qty if amended and price == old_price else qty,
                              mark, has_mark))
        if new <= other:
            return 0                            # netted by the other side: the max is unchanged
        current = side_margin(size, now_lots, now_value, mark, has_mark, buy, upt, lev)
        if other > current:
            current = other
        if new <= current:
            return 0
        cdef Sums sums
        self.sums_of(slot, &sums)
        equity = self.equity_of(slot, py_int(sums.upnl), self.collateral_of(slot))
        need = py_int(sums.im - current + new)
        if equity < need:
            return self.refuse(INSUFFICIENT_MARGIN,
                               f"initial margin would be {need} with equity {equity}")
        return 0

    cdef int128_t assuming_premium(self, SymbolRisk sr, int64_t price, int64_t qty, int64_t mark,
                                   bint has_mark) except? -1:
        """What a sell order of qty at price adds to its side's value (ticks x lots x RATE_SCALE)
        when charged at Binance's assuming price, max(last trade x (1 + buffer), mark, price),
        rather than at its price (InstrumentSpec.sell_order_margin "assuming_price"); exact, the
        buffered last price not rounded to a tick. An amend at the same price is charged on the
        lots it adds only (qty <= 0: none), so a size decrease is never refused for it; once
        resting, an order reserves margin at its own price, as every order does."""
        cdef int128_t assumed = <int128_t>price * RS
        if qty <= 0:
            return 0
        last = sr.prices.last_trade
        if last is not None and <int128_t>last * (RS + sr.assuming_buffer) > assumed:
            assumed = <int128_t>last * (RS + sr.assuming_buffer)
        if has_mark and <int128_t>mark * RS > assumed:
            assumed = <int128_t>mark * RS
        return (assumed - <int128_t>price * RS) * qty

    cdef int refuse(self, int code, str reason) except -1:
        self.reason = reason
        return code

    # ---- orders (the exchange reports what rests and what leaves the book) --------------------

    cdef PosC* held_position(self, account, symbol) except NULL:
        """The position of an account that has an order or a trade in the symbol (made)."""
        return pos_at(<SymbolRisk>self.symbols[symbol], self.slots.slot_of(account))

    cdef void add_order(self, PosC* pos, int side, int64_t price, int64_t qty) noexcept:
        if side == 0:
            pos.buy_qty += qty
            pos.buy_value += price * qty
        else:
            pos.sell_qty += qty
            pos.sell_value += price * qty

    cdef void forget(self, object order_id, PosC* pos) except *:
        """A reduce-only order left the book."""
        order = self.reduce_only_orders.pop(order_id)
        key = (order[0], order[1])
        ids = self.reduce_only_ids[key]
        ids.remove(order_id)
        if not ids:
            del self.reduce_only_ids[key]
        pos.reduce_only -= 1

    cdef rested(self, order_id, Py_ssize_t slot, SymbolRisk sr, int side, int64_t price,
                int64_t qty, bint reduce_only):
        cdef PosC* pos = self.position_of(slot, sr)
        symbol = sr.symbol
        self.add_order(pos, side, price, qty)
        if reduce_only:         # its pre-trade check left it room
            account = id_at(self.cash, slot)
            self.reduce_only_orders[order_id] = [account, symbol, side, price, qty]
            self.reduce_only_ids.setdefault((account, symbol), []).append(order_id)
            pos.reduce_only += 1
        elif pos.reduce_only:
            self.reduce_only_dirty.add((id_at(self.cash, slot), symbol))

    def order_changed(self, order_id, account, symbol, int side, int64_t old_price,
                      int64_t old_qty, state):
        """After an amend of an order that rested at old_price for old_qty open lots: `state` is
        the book's order() tuple, or None if it left the book."""
        cdef PosC* pos = self.held_position(account, symbol)
        self.add_order(pos, side, old_price, -old_qty)
        order = self.reduce_only_orders.get(order_id) if pos.reduce_only else None
        if state is None:
            if order is not None:
                self.forget(order_id, pos)
            return
        self.add_order(pos, side, state[3], state[4])
        if order is not None:
            order[3], order[4] = state[3], state[4]
        if pos.reduce_only:
            self.reduce_only_dirty.add((account, symbol))

    def order_closed(self, order_id, account, symbol, int side, int64_t price, int64_t qty):
        """The order left the book (cancel, expiry, self-trade prevention, liquidation) with qty
        lots open at price."""
        self.closed(order_id, self.slots.slot_of(account), self.symbols[symbol], side, price, qty)

    cdef closed(self, order_id, Py_ssize_t slot, SymbolRisk sr, int side, int64_t price,
                int64_t qty):
        cdef PosC* pos = pos_at(sr, slot)      # made when the order rested
        self.add_order(pos, side, price, -qty)
        if pos.reduce_only and order_id in self.reduce_only_orders:
            self.forget(order_id, pos)

    cdef list reduce_only_excess(self):
        """Reduce-only orders that could now increase a position, as (symbol, order_id, lots to
        take off), newest first: all of them when the position is flat or on their side, else
        as many lots as the account's orders on the reducing side exceed the position by."""
        cdef PosC* pos
        cdef int64_t size, excess, cut
        cdef bint reduces
        out = []
        for account, symbol in sorted(self.reduce_only_dirty):
            pos = self.held_position(account, symbol)
            size = pos.size
            excess = (pos.sell_qty - size) if size > 0 else (pos.buy_qty + size if size else 0)
            for order_id in reversed(self.reduce_only_ids.get((account, symbol), ())):
                order = self.reduce_only_orders[order_id]
                reduces = (order[2] == 1) == (size > 0) and size != 0
                cut = order[4] if not reduces else min(order[4], excess)
                if cut > 0:
                    out.append((symbol, order_id, cut))
                    if reduces:
                        excess -= cut
        self.reduce_only_dirty.clear()
        return out

    # ---- settlement ----------------------------------------------------------------------------

    cdef settle_trade(self, SymbolRisk sr, int64_t price, int64_t qty, int taker_side, maker_id,
                      taker_id, maker_account, taker_account, Py_ssize_t taker,
                      int64_t maker_remaining, list events, taker_fee, seq, ts):
        """Settles one trade for both sides (maker first) and takes it off the maker's order sums.
        taker_fee overrides the instrument's taker rate (a liquidation order pays none)."""
        cdef Py_ssize_t maker = self.slots.find(maker_account)
        cdef PosC* maker_pos = pos_at(sr, maker)     # made when its order rested
        # a trade is at the maker's price, on the side opposite the taker's
        self.add_order(maker_pos, 1 - taker_side, price, -qty)
        if maker_pos.reduce_only:
            order = self.reduce_only_orders.get(maker_id)
            if order is not None:
                if maker_remaining:
                    order[4] = maker_remaining
                else:
                    self.forget(maker_id, maker_pos)
        self.trade_side(sr, maker_account, maker, maker_pos, taker_side == 1, price, qty,
                        sr.maker_fee, maker_id, events, seq, ts)
        self.trade_side(sr, taker_account, taker, self.position_of(taker, sr), taker_side == 0,
                        price, qty, sr.taker_fee if taker_fee is None else taker_fee, taker_id,
                        events, seq, ts)

    def trade(self, SymbolRisk sr, account, bint buy, int64_t price, int64_t qty,
              int64_t fee_rate, order_id, list events):
        """One side of a trade: the position, realised PnL and the fee, settled in cash. Also the
        way the liquidation engine transfers positions outside the book (fee_rate 0)."""
        ex = self.exchange
        cdef Py_ssize_t slot = self.slots.slot_of(account)
        self.trade_side(sr, account, slot, self.position_of(slot, sr), buy, price, qty, fee_rate,
                        order_id, events, ex.seq, ex.clock)
        self.fee_income.flush()

    cdef trade_side(self, SymbolRisk sr, account, Py_ssize_t slot, PosC* pos, bint buy,
                    int64_t price, int64_t qty, int64_t fee_rate, order_id, list events, seq, ts):
        if self.in_transit:     # its funding first: PositionChanged's balance is as if settled
            self.settle_account(slot, events, seq, ts)
        cdef int64_t size = pos.size, held, removed
        cdef int128_t realised = 0, fee
        if size == 0 or (size > 0) == buy:
            pos.cost += price * qty
        else:
            held = size if size > 0 else -size
            if qty >= held:
                realised = (<int128_t>price * held - pos.cost if size > 0
                            else pos.cost - <int128_t>price * held)
                pos.cost = price * (qty - held)
            elif size > 0:
                removed = <int64_t>ceil_div(<int128_t>pos.cost * qty, held)  # up: realised rounds down
                realised = <int128_t>price * qty - removed
                pos.cost -= removed
            else:
                removed = <int64_t>floor_div(<int128_t>pos.cost * qty, held)  # down: realised rounds down
                realised = removed - <int128_t>price * qty
                pos.cost -= removed
            realised *= sr.upt
            if pos.reduce_only:
                self.reduce_only_dirty.add((account, sr.symbol))
        pos.size = size + qty if buy else size - qty
        if sr.transit is not None:
            pos.funded = sr.transit.number      # opened or changed since: nothing due
        # open interest: what the new size holds on each side less what the old one held
        sr.long_lots += (pos.size if pos.size > 0 else 0) - (size if size > 0 else 0)
        sr.short_lots += (-pos.size if pos.size < 0 else 0) - (-size if size < 0 else 0)
        fee = ceil_div(<int128_t>price * qty * sr.upt * fee_rate, RS)
        cdef int64_t* cash = &self.cash_of(slot)[self.settle_column]
        cdef Step* step
        if self.n_steps == self.cap_steps:
            self.cap_steps = self.cap_steps * 2 if self.cap_steps else 64
            step = <Step*>PyMem_Realloc(self.steps, self.cap_steps * sizeof(Step))
            if step is NULL:
                raise MemoryError()
            self.steps = step
        step = &self.steps[self.n_steps]
        step.cash, step.account, step.size, step.cost, step.k = (realised - fee, id_at(self.cash, slot),
                                                                 pos.size, pos.cost, sr.number)
        self.n_steps += 1
        fee_py = py_int(fee)
        realised_py = py_int(realised)
        if realised:
            realise_cell(cash, realised_py)
        self.fee_income.take(cash, fee_py)        # OverflowError: a fee past int64 (a bug)
        balance = cash[0]
        events.append(_PositionChanged(seq, ts, account, sr.symbol, order_id, pos.size,
                                       pos.cost, realised_py, fee_py, balance))
