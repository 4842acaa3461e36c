# Order entry: validation, the pre-trade check, matching and settlement of the order commands. See
# perpcore._exchange.pxd for the contract.
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.stdint cimport int64_t

from perpcore._book cimport (EV_TRADE, ST_EXPIRED, ST_FOK_UNFILLABLE, ST_POST_ONLY_WOULD_TAKE,
                             ST_DUPLICATE_CLIENT_ID, ST_RESTING, ST_STP_EXPIRED, TIF_IOC, Fill,
                             Order, OrderBook)
from perpcore._ledger cimport id_of
from perpcore._margin cimport PROFESSIONAL, MarginCore, flags_of, int128_t
from perpcore._validate cimport echo, fields_of, refusal as schema_refusal, slot_offset

from perpcore import messages as m
from perpcore.config import RATE_SCALE
from perpcore.errors import Halt, RejectCode, Rejection, reject
from perpcore.messages import CancelReason

cdef object PlaceOrder = m.PlaceOrder
cdef object CancelOrder = m.CancelOrder
cdef Py_ssize_t PLACE_ACCOUNT_AT = slot_offset(PlaceOrder, "account")
cdef Py_ssize_t CANCEL_ACCOUNT_AT = slot_offset(CancelOrder, "account")
cdef Py_ssize_t PLACE_SYMBOL_AT = slot_offset(PlaceOrder, "symbol")
cdef Py_ssize_t CANCEL_SYMBOL_AT = slot_offset(CancelOrder, "symbol")
cdef Py_ssize_t CANCEL_ORDER_ID_AT = slot_offset(CancelOrder, "order_id")
cdef object AmendOrder = m.AmendOrder
cdef object OrderAccepted = m.OrderAccepted
cdef object OrderFilled = m.OrderFilled
cdef object OrderCancelled = m.OrderCancelled
cdef object OrderAmended = m.OrderAmended
cdef object Side = m.Side
cdef object LIMIT = m.OrderType.LIMIT
cdef object MARKET = m.OrderType.MARKET
cdef object IOC = m.TimeInForce.IOC
cdef object FOK = m.TimeInForce.FOK
cdef object USER = CancelReason.USER
cdef object EXPIRED = CancelReason.EXPIRED
cdef object SELF_TRADE = CancelReason.SELF_TRADE
cdef object REDUCE_ONLY = CancelReason.REDUCE_ONLY
# the book's time-in-force codes are the messages' values
assert [int(t) for t in m.TimeInForce] == [0, 1, 2, 3] and TIF_IOC == int(IOC)

cdef inline PyObject* slot_at(cmd, Py_ssize_t at) noexcept:
    """A command's field at its slot's offset (NULL: unset), read without a lookup."""
    return (<PyObject**>(<char*><PyObject*>cmd + at))[0]


cdef dict MATCHING_REJECTS = {
    ST_POST_ONLY_WOULD_TAKE: (RejectCode.POST_ONLY_WOULD_TAKE,
                              "post-only order would take liquidity"),
    ST_FOK_UNFILLABLE: (RejectCode.FOK_UNFILLABLE, "fill-or-kill order cannot be filled completely"),
    ST_DUPLICATE_CLIENT_ID: (RejectCode.DUPLICATE_CLIENT_ORDER_ID, "client order id already open"),
}
_PLACE_FIELDS = {name: i for i, name in enumerate(m.PlaceOrder.__struct_fields__)}
cdef Py_ssize_t P_ACCOUNT = _PLACE_FIELDS["account"], P_SYMBOL = _PLACE_FIELDS["symbol"]
cdef Py_ssize_t P_SIDE = _PLACE_FIELDS["side"], P_QTY = _PLACE_FIELDS["qty"]
cdef Py_ssize_t P_PRICE = _PLACE_FIELDS["price"], P_ORDER_TYPE = _PLACE_FIELDS["order_type"]
cdef Py_ssize_t P_TIF = _PLACE_FIELDS["tif"], P_STP = _PLACE_FIELDS["stp"]
cdef Py_ssize_t P_CLIENT_ID = _PLACE_FIELDS["client_order_id"]
cdef Py_ssize_t P_REDUCE_ONLY = _PLACE_FIELDS["reduce_only"], P_TS = _PLACE_FIELDS["ts"]
cdef Py_ssize_t P_TRIGGER = _PLACE_FIELDS["trigger"]
cdef Py_ssize_t P_TRIGGER_PRICE = _PLACE_FIELDS["trigger_price"]
_CANCEL_FIELDS = {name: i for i, name in enumerate(m.CancelOrder.__struct_fields__)}
cdef Py_ssize_t C_ACCOUNT = _CANCEL_FIELDS["account"], C_SYMBOL = _CANCEL_FIELDS["symbol"]
cdef Py_ssize_t C_ORDER_ID = _CANCEL_FIELDS["order_id"], C_TS = _CANCEL_FIELDS["ts"]
cdef Py_ssize_t C_CLIENT_ID = _CANCEL_FIELDS["client_order_id"]
# a refusal's code as the RejectCode member its event carries
cdef dict CODES = {int(code): code for code in RejectCode}
# the codes order entry refuses with, as C ints
cdef int UNKNOWN_SYMBOL = RejectCode.UNKNOWN_SYMBOL, UNKNOWN_ACCOUNT = RejectCode.UNKNOWN_ACCOUNT
cdef int INVALID_PRICE = RejectCode.INVALID_PRICE, PRICE_OUT_OF_RANGE = RejectCode.PRICE_OUT_OF_RANGE
cdef int PRICE_NOT_TICK_MULTIPLE = RejectCode.PRICE_NOT_TICK_MULTIPLE
cdef int INVALID_QTY = RejectCode.INVALID_QTY, QTY_TOO_LARGE = RejectCode.QTY_TOO_LARGE
cdef int QTY_NOT_LOT_MULTIPLE = RejectCode.QTY_NOT_LOT_MULTIPLE
cdef int BELOW_MIN_NOTIONAL = RejectCode.BELOW_MIN_NOTIONAL, NOT_ELIGIBLE = RejectCode.NOT_ELIGIBLE
cdef int DUPLICATE_CLIENT_ORDER_ID = RejectCode.DUPLICATE_CLIENT_ORDER_ID
cdef int UNKNOWN_ORDER = RejectCode.UNKNOWN_ORDER, NO_LIQUIDITY = RejectCode.NO_LIQUIDITY
cdef str NO_SUCH_ORDER = "no such open order for this account"
cdef int64_t RS = RATE_SCALE


cdef inline int64_t c_protection_price(int side, int64_t touch, int64_t band, int64_t max_price,
                                       int64_t step) noexcept:
    """The worst price a market order accepts: the touch moved by the band against the taker
    (up for a buy, down for a sell; RATE_SCALE), kept within 1..max_price, then rounded down to
    the step."""
    cdef int128_t price
    if side == 0:
        price = <int128_t>touch * (RS + band) // RS
        if price > max_price:
            price = max_price
    else:
        price = -(-<int128_t>touch * (RS - band) // RS)
        if price < 1:
            price = 1
    return <int64_t>(price - price % step)


def protection_price(int side, int64_t touch, int64_t band, int64_t max_price, int64_t step):
    """The worst price (ticks) a market order without a price accepts, from the touch (the best
    opposite price), the market protection band (RATE_SCALE), the top price and the price step."""
    return c_protection_price(side, touch, band, max_price, step)


cdef object OrderRejected = m.OrderRejected
cdef object STALE_TIMESTAMP = RejectCode.STALE_TIMESTAMP
cdef object TIME_STEP_TOO_LARGE = RejectCode.TIME_STEP_TOO_LARGE
cdef object ENGINE_HALTED = RejectCode.ENGINE_HALTED
cdef object CONCURRENT_SUBMIT = RejectCode.CONCURRENT_SUBMIT


cdef list rejected(ExchangeCore ex, cmd, code, str reason):
    """A command's one OrderRejected, repeating the fields that identify it (those within their
    schema: the command may be outside it)."""
    return [OrderRejected(ex.seq, ex.clock, code, reason, echo(cmd, "account", 0),
                          echo(cmd, "symbol", ""), echo(cmd, "order_id", 0),
                          echo(cmd, "client_order_id", 0))]


cdef list refused(ExchangeCore ex, cmd, code, str reason):
    """The OrderRejected of a command within its schema (one that passed the boundary), which
    every field it has may be repeated from as it is."""
    return [OrderRejected(ex.seq, ex.clock, code, reason, getattr(cmd, "account", 0),
                          getattr(cmd, "symbol", ""), getattr(cmd, "order_id", 0),
                          getattr(cmd, "client_order_id", 0))]


cdef class Market:

    def __init__(self, config, str symbol):
        spec = self.spec = config.instruments[symbol]
        self.book = OrderBook()
        self.symbol = symbol
        self.units_per_ticklot = config.units_per_ticklot(symbol)
        self.min_notional_units = config.assets[spec.settle].to_units(spec.min_notional)
        self.max_price, self.price_step = spec.max_price, spec.price_step
        self.max_qty, self.qty_step = spec.max_qty, spec.qty_step
        self.market_protection = spec.market_protection
        self.professional_only = spec.professional_only


cdef class Waiting:
    pass       # its count (the .pxd) starts at 0


cdef class ExchangeCore:

    def _advance_to(self, ts, list events):
        """Moves exchange time forward; time-driven processes hook in here."""
        self.advance(ts, events)

    cdef advance(self, ts, list events):
        if ts <= self.clock:
            return
        margin = self.margin
        if self.clock or ts <= self.max_time_step:
            if ts >= self._pricing.due:
                # index staleness, premium and mark samples, funding settlements crossed, in order
                self._pricing.advance(ts, events)
        else:
            # the first time beyond one step starts the clock (a replay from an epoch time):
            # nothing is due for the time before it
            self._pricing.start(ts, events)
            margin.lending.start(ts, events)
        self.clock = ts
        if ts >= margin.lending.due:
            # loan interest, then the loans' checks (a plan: the loans to liquidate)
            self.run_internal(margin.on_clock(ts, events), events)

    def __init__(self, config):
        self.max_time_step = config.limits.max_time_step_ns
        self.next_order_id = 1

    def _compose(self, PricingCore pricing, MarginCore margin, LiquidationCore liquidation,
                 triggers, OrderEntry entry, dict handlers):
        """Wires the layers the Exchange built (once, in its constructor)."""
        self._pricing, self.margin, self.liquidation = pricing, margin, liquidation
        self.triggers, self._entry, self._handlers = triggers, entry, handlers
        self.waiting = triggers

    def _liquidate(self, list events):
        """Stage 6 over `events` (liquidate(), for a test that hands it events itself)."""
        self.liquidate(events)

    def _move_clock(self, int64_t t):
        """Moves exchange time forward to t, inside the clock stage of a command (to each of the
        instants of work pricing passes on its way to the command's time); never back."""
        if t < self.clock:
            raise ValueError(f"exchange time cannot go back from {self.clock} to {t}")
        self.clock = t

    def _restore_counters(self, int64_t seq, int64_t clock, int64_t next_order_id):
        """Sets the sequence, the clock and the next order id a snapshot recorded."""
        self.seq, self.clock, self.next_order_id = seq, clock, next_order_id

    def _take_order_id(self):
        """The next order id, now taken (the trigger layer's, for a conditional order)."""
        return self.take_order_id()

    cdef int64_t take_order_id(self):
        self.next_order_id += 1
        return self.next_order_id - 1

    def submit(self, cmd, seq=None):
        """Applies one command and returns its events, in order; never raises.

        A command outside its schema (perpcore._validate) is refused before it is sequenced: its
        OrderRejected carries the last seq, and nothing changed. `seq`, when given, is the sequence
        number the command already carries (a journal, a replicated log): it must be the next one,
        or the command is refused as replayed or out of order and nothing is applied.

        One writer: a call while another thread's submit is in progress is refused
        (CONCURRENT_SUBMIT) and changes nothing. A command that raises inside the engine stops it
        (fail-stop, see perpcore.errors): its rejection and every later one is ENGINE_HALTED."""
        if self.busy:
            return self.concurrent(cmd)
        self.busy = True
        try:
            self.expect_account(cmd)
            fields = fields_of(cmd)
            refused = self.refusal(cmd, fields)
            return refused if refused is not None else self.apply(cmd, seq, fields)
        finally:
            self.busy = False

    cdef void expect_account(self, cmd) noexcept:
        """What an order or a cancel will look up is asked for once the command is read (a
        prefetch each), so that the memory's answers come while stage 1 reads the command rather
        than one after another: the account's record (a miss, among a million accounts), and in
        the symbol's book the index cells of the order (a cancel's, or the id a new order will
        get) and of the account's orders."""
        cdef Py_ssize_t at
        cdef bint place = type(cmd) is PlaceOrder
        if place:
            at = PLACE_ACCOUNT_AT
        elif type(cmd) is CancelOrder:
            at = CANCEL_ACCOUNT_AT
        else:
            return
        cdef PyObject* account = slot_at(cmd, at)
        if account == NULL:
            return
        self.margin.cash.expect(<object>account)
        cdef PyObject* symbol = slot_at(cmd, PLACE_SYMBOL_AT if place else CANCEL_SYMBOL_AT)
        if symbol == NULL or type(<object>symbol) is not str:
            return
        cdef PyObject* market = PyDict_GetItem(self._entry.markets, <object>symbol)
        cdef int64_t key
        if market == NULL:
            return
        cdef OrderBook book = (<Market>market).book
        if id_of(<object>account, &key):
            book._expect_account(key)
        if place:
            book._expect_order(self.next_order_id)
            return
        cdef PyObject* order_id = slot_at(cmd, CANCEL_ORDER_ID_AT)
        if order_id != NULL and id_of(<object>order_id, &key):
            book._expect_order(key)

    cdef post_trade(self, list events, Py_ssize_t start):
        """What follows the trades among events[start:]: reduce-only orders the positions no
        longer allow are trimmed, then stage 5 (prices) reads those events."""
        if self.margin.reduce_only_dirty:
            self._entry.trim_reduce_only(events)
        # the last trade or the book moved the mark (a fill always follows the OrderAccepted or
        # OrderAmended of its taker: a lone event is never one)
        if len(events) - start > 1 or self._pricing.book_moves:
            if start == 0:
                self._pricing.after_command(events)
            else:
                new = events[start:]
                n = len(new)
                self._pricing.after_command(new)
                events.extend(new[n:])

    cdef fire_triggers(self, list events):
        """Stage 5's conditional orders: each order the prices crossed fires as a new order of the
        pipeline (order entry, then what follows its trades), until a round fires nothing."""
        triggers = self.triggers
        cdef OrderEntry entry = self._entry
        cdef Py_ssize_t start
        cdef int code
        while True:
            fired = triggers.take_crossed()
            if not fired:
                return
            start = len(events)
            for order_id, ref in fired:
                live = triggers.fire(order_id, ref, events)
                code = entry.place(live, fields_of(live), events, order_id)
                if code:
                    events.append(OrderRejected(self.seq, self.clock, CODES[code], entry.reason,
                                                live.account, live.symbol, order_id,
                                                live.client_order_id))
            self.post_trade(events, start)

    cdef liquidate(self, list events):
        """Stage 6: rounds of liquidations until no account is left in breach. The liquidation
        engine decides (who is in breach, what to close, in which steps) and hands each order and
        cancel it needs back as an internal command, which runs here through its handler like any
        other command; a round's trades then pass post_trade (reduce-only, prices) and the next
        round reads what they did."""
        cdef LiquidationCore liquidation = self.liquidation
        cdef list breached = liquidation.first_round(events)
        cdef Py_ssize_t start
        while breached:
            start = len(events)
            self.run_internal(liquidation.liquidate(breached, events), events)
            self.post_trade(events, start)
            breached = liquidation.next_round(events, start)
        liquidation.end_rounds()

    cdef run_internal(self, plan, list events):
        """Runs each internal command the generator `plan` yields (None: no plan) through its
        handler, sending the plan the handler's result."""
        if plan is None:
            return
        cdef dict handlers = self._handlers
        try:
            cmd = next(plan)
            while True:
                cmd = plan.send(handlers[type(cmd)](cmd, events))
        except StopIteration:
            return

    cdef list concurrent(self, cmd):
        return rejected(self, cmd, CONCURRENT_SUBMIT,
                        "another thread's submit is in progress: one thread owns an engine")

    cdef list refusal(self, cmd, tuple fields):
        """`fields`: cmd's fields_of (None: outside its schema)."""
        if self.halted is not None:
            return rejected(self, cmd, ENGINE_HALTED,
                            f"engine halted at seq {self.halted.seq}: {self.halted.cause}")
        if fields is not None:
            return None
        why = schema_refusal(cmd)
        return rejected(self, cmd, why[0], why[1])

    cdef list order_refused(self, cmd, tuple f, code, str reason):
        """refused() of an order or a cancel, its fields read from `f` (its fields_of) rather than
        looked up: a cancel that lost its race with a fill is routine for a gateway."""
        kind = type(cmd)
        if kind is CancelOrder:
            return [OrderRejected(self.seq, self.clock, code, reason, f[C_ACCOUNT], f[C_SYMBOL],
                                  f[C_ORDER_ID], f[C_CLIENT_ID])]
        if kind is PlaceOrder:
            return [OrderRejected(self.seq, self.clock, code, reason, f[P_ACCOUNT], f[P_SYMBOL], 0,
                                  f[P_CLIENT_ID])]
        return refused(self, cmd, code, reason)

    cdef list halt(self, int64_t seq, cmd, error):
        self.halted = Halt.of(seq, cmd, error)
        return rejected(self, cmd, ENGINE_HALTED,
                        f"engine halted at seq {seq}: {self.halted.cause}")

    cdef list apply(self, cmd, seq, tuple fields):
        if seq is not None and seq != self.seq + 1:
            why = RejectCode.SEQUENCE_REPLAYED if seq <= self.seq else RejectCode.SEQUENCE_GAP
            return [OrderRejected(self.seq, self.clock, why,
                                  f"sequence {seq} is not the next ({self.seq + 1})")]
        self.seq += 1
        kind = type(cmd)
        cdef list events = []
        cdef MarginCore margin = self.margin
        margin.n_steps = 0
        cdef int64_t ts = cmd.ts
        cdef int code = 0
        if ts:
            if ts < self.clock:
                return refused(self, cmd, STALE_TIMESTAMP,
                               f"command time {ts} is before exchange time {self.clock}")
            # the first command that carries a time starts the clock wherever it is
            if self.clock and ts - self.clock > self.max_time_step:
                return refused(self, cmd, TIME_STEP_TOO_LARGE, f"command time {ts} is more than "
                               f"{self.max_time_step} ns after exchange time {self.clock}")
        try:
            # the order commands go straight to OrderEntry's C entries, which refuse with a code
            # (no exception); the table has the others, which raise Rejection
            if kind is PlaceOrder:
                code = self._entry.place(cmd, fields, events, 0)
            elif kind is CancelOrder:
                code = self._entry.cancel(cmd, fields, events)
            elif kind is AmendOrder:
                code = self._entry.amend(cmd, events)
            else:
                # a handler's plan (Repay's loan check) runs before the later stages
                self.run_internal(self._handlers[kind](cmd, events), events)
            if code:
                return self.order_refused(cmd, fields, CODES[code], self._entry.reason)
            if margin.in_transit:       # funding in transit: this command's share of its payments
                self._pricing.carry(events)
            self.post_trade(events, 0)
            if self.waiting.live:
                self.fire_triggers(events)          # conditional orders the prices crossed
            if margin.debts or margin.auto_exchange:
                # loans against collateral whose index moved; multi-assets mode's auto-exchange
                self.run_internal(margin.after_command(events), events)
            self.liquidate(events)                  # stage 6: accounts under maintenance
            if margin.auto_exchange:
                margin.after_liquidation(events)    # balances its fills left to auto-exchange
            return events
        except Rejection as r:
            return refused(self, cmd, r.code, r.reason)
        except Exception as e:      # a bug, not a refusal: the state may be half-applied
            return self.halt(self.seq, cmd, e)


cdef class OrderEntry:

    def __init__(self, ExchangeCore exchange, dict markets, MarginCore margin, triggers):
        self.ex = exchange
        self.markets = markets
        self.slots = margin.slots
        self.margin = margin
        cdef Market market
        for symbol, market in markets.items():
            market.risk = margin.symbols[symbol]
        self.triggers = self.waiting = triggers

    # ---- validation shared by the commands: each returns 0, or the code of its refusal with
    # ---- the reason in self.reason

    cdef int refuse(self, int code, str reason) except -1:
        self.reason = reason
        return code

    cdef int unknown_symbol(self, symbol) except -1:
        return self.refuse(UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")

    cdef int unknown_account(self, account) except -1:
        return self.refuse(UNKNOWN_ACCOUNT, f"unknown account {account}")

    cdef int price_refusal(self, Market market, int64_t price, str what) except -1:
        if price <= 0:
            return self.refuse(INVALID_PRICE, f"{what} {price} must be positive")
        if price > market.max_price:
            return self.refuse(PRICE_OUT_OF_RANGE,
                               f"{what} {price} above {market.max_price} ticks")
        if price % market.price_step:
            return self.refuse(PRICE_NOT_TICK_MULTIPLE,
                               f"{what} {price} is not a multiple of {market.price_step} ticks")
        return 0

    cdef int price_qty_refusal(self, Market market, int64_t price, int64_t qty) except -1:
        cdef int code = self.price_refusal(market, price, "price")
        if code:
            return code
        if qty <= 0:
            return self.refuse(INVALID_QTY, f"quantity {qty} must be positive")
        if qty > market.max_qty:
            return self.refuse(QTY_TOO_LARGE, f"quantity {qty} above {market.max_qty} lots")
        if qty % market.qty_step:
            return self.refuse(QTY_NOT_LOT_MULTIPLE,
                               f"quantity {qty} is not a multiple of {market.qty_step} lots")
        return 0

    cdef int order_refusal(self, Market market, account, bint professional, int64_t price,
                           int64_t qty, int64_t notional_price, client_id) except -1:
        """What every order is checked for, live or conditional: its price and quantity, its
        notional (at notional_price), the instrument's eligibility, and a client order id
        already open (in the book or waiting to fire)."""
        cdef int code = self.price_qty_refusal(market, price, qty)
        if code:
            return code
        if <int128_t>notional_price * qty * market.units_per_ticklot < market.min_notional_units:
            return self.refuse(BELOW_MIN_NOTIONAL,
                               f"notional below {market.spec.min_notional} {market.spec.settle}")
        if market.professional_only and not professional:
            return self.refuse(NOT_ELIGIBLE,
                               f"{market.symbol} is offered to professional investors only")
        triggers = self.triggers
        if client_id and (market.book.find_client(account, client_id) is not None
                          or self.waiting.live and triggers.has_client(account, client_id)):
            return self.refuse(DUPLICATE_CLIENT_ORDER_ID,
                               f"client order id {client_id} is already open")
        return 0

    cdef int book_refusal(self, int status) except -1:
        code, reason = MATCHING_REJECTS[status]
        return self.refuse(code, reason)

    cdef int margin_refusal(self, int code) except -1:
        return self.refuse(code, self.margin.reason)

    def _raise(self, int code):
        if code:
            raise Rejection(CODES[code], self.reason)

    def require_market(self, symbol):
        """The Market of a symbol, or UNKNOWN_SYMBOL (raised: for the handlers in Python)."""
        market = self.markets.get(symbol)
        if market is None:
            self._raise(self.unknown_symbol(symbol))
        return market

    def require_account(self, account):
        """Refuses an account that does not exist (UNKNOWN_ACCOUNT, raised)."""
        if account not in self.margin.accounts:
            self._raise(self.unknown_account(account))

    cdef Order* owned_order(self, Market market, account, order_id, client_id):
        """The book's record of the open order a cancel or amend names (by id, or by client id
        when the id is 0), if it is the account's (read it before the book changes); NULL: none."""
        cdef OrderBook book = market.book
        if not order_id and client_id:
            order_id = book.find_client(account, client_id) or 0
        cdef Order* order = book._order_of(order_id) if order_id else NULL
        if order != NULL and order.account != <int64_t>account:
            return NULL
        return order

    # ---- the commands: each returns 0 once applied, or the code of its refusal (nothing changed)

    cdef int place(self, cmd, tuple f, list events, order_id) except -1:
        """PlaceOrder, whose fields are `f` (read once for every stage, not one lookup each).
        `order_id`: a conditional order's, given when it was accepted, as it fires (0: a fresh
        order)."""
        symbol = f[P_SYMBOL]
        market_obj = self.markets.get(symbol)
        if market_obj is None:
            return self.unknown_symbol(symbol)
        cdef Market market = <Market>market_obj
        account = f[P_ACCOUNT]
        cdef Py_ssize_t slot = self.slots.find(account)
        if slot < 0:
            return self.unknown_account(account)
        cdef bint professional = flags_of(self.slots, slot)[0] & PROFESSIONAL
        side, qty, price, order_type = f[P_SIDE], f[P_QTY], f[P_PRICE], f[P_ORDER_TYPE]
        tif, stp, client_id, reduce_only = f[P_TIF], f[P_STP], f[P_CLIENT_ID], f[P_REDUCE_ONLY]
        cdef int code
        if f[P_TRIGGER]:
            # a conditional order: its trigger, then the checks of any order (a market one's
            # notional at its trigger, its protection price worked out when it fires if 0),
            # then the trigger layer's own (its reference price) before it waits
            trigger = f[P_TRIGGER_PRICE]
            code = self.price_refusal(market, trigger, "trigger price")
            if not code:
                limit = order_type == LIMIT
                code = self.order_refusal(market, account, professional,
                                          price if limit or price else trigger, qty,
                                          price if limit else trigger, client_id)
            if code:
                return code
            self.triggers.place(market, cmd, events)
            return 0
        cdef OrderBook book = market.book
        if order_type == MARKET:
            # a market order is an IOC (or FOK) limited at its protection price
            if tif != FOK:
                tif = IOC
            touch = book.best_ask() if side == 0 else book.best_bid()
            if touch is None:
                return self.refuse(NO_LIQUIDITY, "no opposite side for a market order")
            if price == 0:
                price = c_protection_price(side, touch, market.market_protection,
                                           market.max_price, market.price_step)
            notional_price = touch
        else:
            notional_price = price
        code = self.order_refusal(market, account, professional, price, qty, notional_price,
                                  client_id)
        if code:
            return code
        cdef MarginCore margin = self.margin
        code = margin.check(slot, market.risk, side, notional_price, qty, reduce_only, 0, 0, 0)
        if code:
            return self.margin_refusal(code)
        cdef ExchangeCore ex = self.ex
        fresh = not order_id
        if fresh:
            order_id = ex.next_order_id
        # the book's refusals (post-only that would take, unfillable FOK) before time moves: the
        # clock's work never touches a book, so they need no second look
        cdef int status = book._precheck_place(order_id, account, side, price, qty, tif, stp,
                                               client_id)
        if status < 0:
            return self.book_refusal(status)
        ex.advance(f[P_TS], events)

        book.n_fills = 0
        status = book._place_prechecked(order_id, account, side, price, qty, tif, stp, client_id, 0)
        if fresh:
            ex.next_order_id = order_id + 1
        events.append(OrderAccepted(ex.seq, ex.clock, account, symbol, order_id, client_id,
                                    side, price, qty, order_type, tif))
        remaining = self.fill_events(market, book, side, qty, slot, events, None)
        if status == ST_RESTING:
            margin.rested(order_id, slot, market.risk, side, price, remaining, reduce_only)
        elif remaining and (status == ST_EXPIRED or status == ST_STP_EXPIRED):
            events.append(OrderCancelled(ex.seq, ex.clock, account, symbol, order_id, remaining,
                                         EXPIRED if status == ST_EXPIRED else SELF_TRADE))
        return 0

    cdef int cancel(self, cmd, tuple f, list events) except -1:
        """CancelOrder (fields `f`): a resting order, or a conditional one still waiting."""
        account, symbol, ts = f[C_ACCOUNT], f[C_SYMBOL], f[C_TS]
        market_obj = self.markets.get(symbol)
        if market_obj is None:
            return self.unknown_symbol(symbol)
        cdef Py_ssize_t slot = self.slots.find(account)
        if slot < 0:
            return self.unknown_account(account)
        triggers = self.triggers
        cdef ExchangeCore ex = self.ex
        if self.waiting.live:
            waiting = triggers.find(account, symbol, f[C_ORDER_ID], f[C_CLIENT_ID])
            if waiting:
                ex.advance(ts, events)
                triggers.cancel(waiting, USER, events)
                return 0
        cdef Market market = <Market>market_obj
        cdef Order* order = self.owned_order(market, account, f[C_ORDER_ID], f[C_CLIENT_ID])
        if order == NULL:
            return self.refuse(UNKNOWN_ORDER, NO_SUCH_ORDER)
        order_id, side, price = order.id, order.side, order.price
        ex.advance(ts, events)
        cdef OrderBook book = market.book
        book.n_fills = 0
        open_qty = book._cancel(order_id)
        self.margin.closed(order_id, slot, market.risk, side, price, open_qty)
        events.append(OrderCancelled(ex.seq, ex.clock, account, symbol, order_id, open_qty, USER))
        return 0

    cdef int amend(self, cmd, list events) except -1:
        """AmendOrder: new price and total quantity (see the book's amend rules)."""
        account, symbol = cmd.account, cmd.symbol
        market_obj = self.markets.get(symbol)
        if market_obj is None:
            return self.unknown_symbol(symbol)
        cdef Py_ssize_t slot = self.slots.find(account)
        if slot < 0:
            return self.unknown_account(account)
        cdef Market market = <Market>market_obj
        cdef Order* order = self.owned_order(market, account, cmd.order_id, 0)
        if order == NULL:
            return self.refuse(UNKNOWN_ORDER, NO_SUCH_ORDER)
        order_id, side, old_price, open_qty, filled = (order.id, order.side, order.price, order.qty,
                                                       order.filled)
        price, qty = cmd.price, cmd.qty
        cdef int code = self.price_qty_refusal(market, price, qty)
        if code:
            return code
        if qty <= filled:
            return self.refuse(INVALID_QTY,
                               f"new quantity {qty} must exceed the {filled} already filled")
        if <int128_t><int64_t>price * <int64_t>qty * market.units_per_ticklot \
                < market.min_notional_units:
            return self.refuse(BELOW_MIN_NOTIONAL,
                               f"notional below {market.spec.min_notional} {market.spec.settle}")
        code = self.margin.check(slot, market.risk, side, price,
                                 qty - filled, False, order_id, old_price, open_qty)
        if code:
            return self.margin_refusal(code)
        cdef ExchangeCore ex = self.ex
        cdef OrderBook book = market.book
        cdef int status = book._precheck_amend(order_id, price, qty)     # as in place()
        if status < 0:
            return self.book_refusal(status)
        ex.advance(cmd.ts, events)
        book.n_fills = 0
        status = book._amend(order_id, price, qty)
        kept = price == old_price and qty <= filled + open_qty
        events.append(OrderAmended(ex.seq, ex.clock, account, symbol, order_id, price, qty, kept))
        remaining = self.fill_events(market, book, Side(side), qty - filled, slot, events, None)
        self.margin.order_changed(order_id, account, symbol, side, old_price, open_qty,
                                  book.order(order_id))
        if remaining and status == ST_STP_EXPIRED:
            events.append(OrderCancelled(ex.seq, ex.clock, account, symbol, order_id, remaining,
                                         SELF_TRADE))
        return 0

    def place_liquidation(self, cmd, list events):
        """A PlaceLiquidationOrder (stage 6's, run by ExchangeCore.liquidate): an IOC limit order
        with no pre-trade check and no trading fee, settled like any other; its fills, as
        [(price, qty)]."""
        cdef str symbol = cmd.symbol
        cdef Market market = self.markets[symbol]
        cdef OrderBook book = market.book
        cdef ExchangeCore ex = self.ex
        account, side, qty = cmd.account, cmd.side, cmd.qty
        cdef int64_t order_id = ex.take_order_id()
        book.n_fills = 0
        cdef int status = book._place(order_id, account, side, cmd.price, qty, TIF_IOC, 0, 0, 0)
        events.append(OrderAccepted(ex.seq, ex.clock, account, symbol, order_id, 0, side,
                                    cmd.price, qty, LIMIT, IOC))
        cdef Py_ssize_t start = len(events)
        remaining = self.fill_events(market, book, side, qty, self.slots.slot_of(account), events,
                                     0)
        fills = [(e.price, e.qty) for e in events[start:] if type(e) is OrderFilled]
        if remaining:
            events.append(OrderCancelled(ex.seq, ex.clock, account, symbol, order_id, remaining,
                                         EXPIRED if status == ST_EXPIRED else SELF_TRADE))
        return fills

    cdef trim_reduce_only(self, list events):
        """Shrinks (keeping priority) or cancels the reduce-only orders the positions no longer
        allow: a reduce-only order never increases a position."""
        cdef ExchangeCore ex = self.ex
        cdef MarginCore margin = self.margin
        cdef Market market
        for symbol, order_id, cut in margin.reduce_only_excess():
            market = <Market>self.markets[symbol]
            book = market.book
            _, account, side, price, open_qty, filled, _, _ = book.order(order_id)
            if cut >= open_qty:
                book.cancel(order_id)
                margin.closed(order_id, self.slots.find(account), market.risk, side, price,
                              open_qty)
                events.append(OrderCancelled(ex.seq, ex.clock, account, symbol, order_id, open_qty,
                                             REDUCE_ONLY))
            else:
                book.amend(order_id, price, filled + open_qty - cut)
                margin.order_changed(order_id, account, symbol, side, price, open_qty,
                                     book.order(order_id))
                events.append(OrderAmended(ex.seq, ex.clock, account, symbol, order_id, price,
                                           filled + open_qty - cut, True))

    # ---- settlement ----------------------------------------------------------------------------

    cdef int64_t fill_events(self, Market market, OrderBook book, taker_side, int64_t taker_qty,
                             Py_ssize_t taker, list events, taker_fee) except? -1:
        """Turns the book's records of the last call into events and settles each trade; returns
        the taker's open quantity. taker_fee overrides the instrument's taker rate."""
        cdef int64_t i, n = book.n_fills, remaining = taker_qty
        cdef Fill f
        if not n:
            return remaining
        symbol = market.symbol
        cdef ExchangeCore ex = self.ex
        seq, ts = ex.seq, ex.clock
        cdef MarginCore margin = self.margin
        # one taker order: its ids made objects once for every fill's events
        taker_id, taker_account = book.fills_buf[0].taker_id, book.fills_buf[0].taker_account
        for i in range(n):
            f = book.fills_buf[i]
            if f.kind == EV_TRADE:
                maker_id, maker_account = f.maker_id, f.maker_account
                events.append(OrderFilled(seq, ts, symbol, f.price, f.qty, taker_side, maker_id,
                                          taker_id, maker_account, taker_account,
                                          f.maker_remaining, f.taker_remaining))
                # stage 4: positions, realised PnL and fees of both sides
                margin.settle_trade(market.risk, f.price, f.qty, taker_side, maker_id, taker_id,
                                    maker_account, taker_account, taker, f.maker_remaining,
                                    events, taker_fee, seq, ts)
            else:
                events.append(OrderCancelled(seq, ts, f.maker_account, symbol, f.maker_id, f.qty,
                                             SELF_TRADE))
                margin.closed(f.maker_id, self.slots.find(f.maker_account), market.risk,
                              1 - taker_side, f.price, f.qty)
            remaining = f.taker_remaining
        margin.fee_income.flush()
        return remaining
