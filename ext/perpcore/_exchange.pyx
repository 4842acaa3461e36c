# Order entry: validation, the pre-trade check, matching and settlement of the order commands. See
# perpcore._exchange.pxd for the contract.
from libc.stdint cimport int64_t

from perpcore._book cimport (EV_TRADE, ST_EXPIRED, ST_FOK_UNFILLABLE, ST_POST_ONLY_WOULD_TAKE,
                             ST_DUPLICATE_CLIENT_ID, ST_RESTING, ST_STP_EXPIRED, TIF_IOC, Fill,
                             Order, OrderBook)
from perpcore._margin cimport Account, MarginCore, int128_t
from perpcore._validate cimport echo, refusal as schema_refusal

import msgspec

from perpcore import messages as m
from perpcore.config import RATE_SCALE
from perpcore.errors import Halt, RejectCode, Rejection, reject
from perpcore.messages import CancelReason

cdef object PlaceOrder = m.PlaceOrder
cdef object CancelOrder = m.CancelOrder
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
# the book's time-in-force codes are the messages' values
assert [int(t) for t in m.TimeInForce] == [0, 1, 2, 3] and TIF_IOC == int(IOC)

cdef dict MATCHING_REJECTS = {
    ST_POST_ONLY_WOULD_TAKE: (RejectCode.POST_ONLY_WOULD_TAKE,
                              "post-only order would take liquidity"),
    ST_FOK_UNFILLABLE: (RejectCode.FOK_UNFILLABLE, "fill-or-kill order cannot be filled completely"),
    ST_DUPLICATE_CLIENT_ID: (RejectCode.DUPLICATE_CLIENT_ORDER_ID, "client order id already open"),
}
cdef object astuple = msgspec.structs.astuple
_PLACE_FIELDS = {name: i for i, name in enumerate(m.PlaceOrder.__struct_fields__)}
cdef Py_ssize_t P_ACCOUNT = _PLACE_FIELDS["account"], P_SYMBOL = _PLACE_FIELDS["symbol"]
cdef Py_ssize_t P_SIDE = _PLACE_FIELDS["side"], P_QTY = _PLACE_FIELDS["qty"]
cdef Py_ssize_t P_PRICE = _PLACE_FIELDS["price"], P_ORDER_TYPE = _PLACE_FIELDS["order_type"]
cdef Py_ssize_t P_TIF = _PLACE_FIELDS["tif"], P_STP = _PLACE_FIELDS["stp"]
cdef Py_ssize_t P_CLIENT_ID = _PLACE_FIELDS["client_order_id"]
cdef Py_ssize_t P_REDUCE_ONLY = _PLACE_FIELDS["reduce_only"], P_TS = _PLACE_FIELDS["ts"]
cdef Py_ssize_t P_TRIGGER = _PLACE_FIELDS["trigger"]
_CANCEL_FIELDS = {name: i for i, name in enumerate(m.CancelOrder.__struct_fields__)}
cdef Py_ssize_t C_ACCOUNT = _CANCEL_FIELDS["account"], C_SYMBOL = _CANCEL_FIELDS["symbol"]
cdef Py_ssize_t C_ORDER_ID = _CANCEL_FIELDS["order_id"], C_TS = _CANCEL_FIELDS["ts"]
cdef Py_ssize_t C_CLIENT_ID = _CANCEL_FIELDS["client_order_id"]
cdef inline void refuse_status(int status) except *:
    code, reason = MATCHING_REJECTS[status]
    reject(code, reason)


cdef object OrderRejected = m.OrderRejected
cdef object STALE_TIMESTAMP = RejectCode.STALE_TIMESTAMP
cdef object TIME_STEP_TOO_LARGE = RejectCode.TIME_STEP_TOO_LARGE
cdef object ENGINE_HALTED = RejectCode.ENGINE_HALTED
cdef object CONCURRENT_SUBMIT = RejectCode.CONCURRENT_SUBMIT


cdef list rejected(ExchangeCore ex, cmd, code, str reason):
    """A command's one OrderRejected, repeating the fields that identify it."""
    return [OrderRejected(ex.seq, ex.clock, code, reason, echo(cmd, "account", 0),
                          echo(cmd, "symbol", ""), echo(cmd, "order_id", 0),
                          echo(cmd, "client_order_id", 0))]


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
            margin.lending.start(ts)
        self.clock = ts
        if ts >= margin.lending.due:
            margin.on_clock(ts, events)     # loan interest, then the loans' checks

    def __init__(self, config):
        self.max_time_step = config.limits.max_time_step_ns

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
            refused = self.refusal(cmd)
            return refused if refused is not None else self.apply(cmd, seq)
        finally:
            self.busy = False

    cdef list concurrent(self, cmd):
        return rejected(self, cmd, CONCURRENT_SUBMIT,
                        "another thread's submit is in progress: one thread owns an engine")

    cdef list refusal(self, cmd):
        if self.halted is not None:
            return rejected(self, cmd, ENGINE_HALTED,
                            f"engine halted at seq {self.halted.seq}: {self.halted.cause}")
        why = schema_refusal(cmd)
        return None if why is None else rejected(self, cmd, why[0], why[1])

    cdef list halt(self, int64_t seq, cmd, error):
        self.halted = Halt.of(seq, cmd, error)
        return rejected(self, cmd, ENGINE_HALTED,
                        f"engine halted at seq {seq}: {self.halted.cause}")

    cdef list apply(self, cmd, seq):
        if seq is not None and seq != self.seq + 1:
            code = RejectCode.SEQUENCE_REPLAYED if seq <= self.seq else RejectCode.SEQUENCE_GAP
            return [OrderRejected(self.seq, self.clock, code,
                                  f"sequence {seq} is not the next ({self.seq + 1})")]
        self.seq += 1
        kind = type(cmd)
        cdef list events = []
        cdef MarginCore margin = self.margin
        cdef int64_t ts = cmd.ts
        try:
            if ts:
                if ts < self.clock:
                    reject(STALE_TIMESTAMP, f"command time {ts} is before exchange time {self.clock}")
                # the first command that carries a time starts the clock wherever it is
                if self.clock and ts - self.clock > self.max_time_step:
                    reject(TIME_STEP_TOO_LARGE, f"command time {ts} is more than "
                           f"{self.max_time_step} ns after exchange time {self.clock}")
            # the order commands go straight to OrderEntry's C entries; the table has the others
            if kind is PlaceOrder:
                self._entry.place(cmd, events)
            elif kind is CancelOrder:
                self._entry.cancel(cmd, events)
            elif kind is AmendOrder:
                self._entry.amend(cmd, events)
            else:
                self._handlers[kind](cmd, events)
            if margin.in_transit:       # funding in transit: this command's share of its payments
                self._pricing.carry(events)
            if margin.reduce_only_dirty:
                self._trim_reduce_only(events)
            # stage 5: the last trade or the book moved the mark (a fill always follows the
            # OrderAccepted or OrderAmended of its taker: a lone event is never one)
            if len(events) > 1 or self._pricing.book_moves:
                self._pricing.after_command(events)
            triggers = self.triggers
            if triggers.live:
                triggers.after_command(events)      # conditional orders the prices crossed
            if margin.debts:
                margin.after_command(events)        # loans against collateral whose index moved
            self.liquidation.after(events)          # stage 6: accounts under maintenance
            return events
        except Rejection as r:
            return rejected(self, cmd, r.code, r.reason)
        except Exception as e:      # a bug, not a refusal: the state may be half-applied
            return self.halt(self.seq, cmd, e)


cdef class OrderEntry:

    def __init__(self, ExchangeCore exchange, dict markets, dict professional, MarginCore margin,
                 triggers):
        self.ex = exchange
        self.markets = markets
        self.professional = professional
        self.margin = margin
        self.triggers = triggers

    # ---- validation shared by the commands -----------------------------------------------------

    cdef Market market_of(self, symbol):
        market = self.markets.get(symbol)
        if market is None:
            reject(RejectCode.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        return <Market>market

    cdef bint known_account(self, account) except -1:
        professional = self.professional.get(account)
        if professional is None:
            reject(RejectCode.UNKNOWN_ACCOUNT, f"unknown account {account}")
        return professional

    cdef void check_price_qty(self, Market market, int64_t price, int64_t qty) except *:
        if price <= 0:
            reject(RejectCode.INVALID_PRICE, f"price {price} must be positive")
        if price > market.max_price:
            reject(RejectCode.PRICE_OUT_OF_RANGE, f"price {price} above {market.max_price} ticks")
        if price % market.price_step:
            reject(RejectCode.PRICE_NOT_TICK_MULTIPLE,
                   f"price {price} is not a multiple of {market.price_step} ticks")
        if qty <= 0:
            reject(RejectCode.INVALID_QTY, f"quantity {qty} must be positive")
        if qty > market.max_qty:
            reject(RejectCode.QTY_TOO_LARGE, f"quantity {qty} above {market.max_qty} lots")
        if qty % market.qty_step:
            reject(RejectCode.QTY_NOT_LOT_MULTIPLE,
                   f"quantity {qty} is not a multiple of {market.qty_step} lots")

    def require_market(self, symbol):
        """The Market of a symbol, or UNKNOWN_SYMBOL."""
        return self.market_of(symbol)

    def require_account(self, account):
        """Refuses an account that does not exist (UNKNOWN_ACCOUNT)."""
        self.known_account(account)

    def require_price_qty(self, Market market, price, qty):
        """Refuses a price or quantity outside the instrument's range or steps."""
        self.check_price_qty(market, price, qty)

    cdef Order* owned_order(self, Market market, account, order_id, client_id) except NULL:
        """The book's record of the open order a cancel or amend names (by id, or by client id
        when the id is 0), if it is the account's (read it before the book changes)."""
        cdef OrderBook book = market.book
        self.known_account(account)
        if not order_id and client_id:
            order_id = book.find_client(account, client_id) or 0
        cdef Order* order = book._order_of(order_id) if order_id else NULL
        if order == NULL or order.account != <int64_t>account:
            reject(RejectCode.UNKNOWN_ORDER, "no such open order for this account")
        return order

    # ---- the commands --------------------------------------------------------------------------

    cpdef place(self, cmd, list events, order_id=0):
        """PlaceOrder. `order_id`: a conditional order's, given when it was accepted, as it fires."""
        cdef tuple f = astuple(cmd)        # one call for every field, not one lookup each
        symbol = f[P_SYMBOL]
        cdef Market market = self.market_of(symbol)
        account = f[P_ACCOUNT]
        cdef bint professional = self.known_account(account)
        side, qty, price, order_type = f[P_SIDE], f[P_QTY], f[P_PRICE], f[P_ORDER_TYPE]
        tif, stp, client_id, reduce_only = f[P_TIF], f[P_STP], f[P_CLIENT_ID], f[P_REDUCE_ONLY]
        if f[P_TRIGGER]:
            return self.triggers.place(market, cmd, events)
        cdef OrderBook book = market.book
        if order_type == MARKET:
            # a market order is an IOC (or FOK) limited at its protection price
            if tif != FOK:
                tif = IOC
            touch = book.best_ask() if side == 0 else book.best_bid()
            if touch is None:
                reject(RejectCode.NO_LIQUIDITY, "no opposite side for a market order")
            if price == 0:
                band = market.market_protection
                if side == 0:
                    price = min(touch * (RATE_SCALE + band) // RATE_SCALE, market.max_price)
                else:
                    price = max(-(-touch * (RATE_SCALE - band) // RATE_SCALE), 1)
                price -= price % market.price_step
            notional_price = touch
        else:
            notional_price = price
        self.check_price_qty(market, price, qty)
        if <int128_t><int64_t>notional_price * <int64_t>qty * market.units_per_ticklot \
                < market.min_notional_units:
            reject(RejectCode.BELOW_MIN_NOTIONAL,
                   f"notional below {market.spec.min_notional} {market.spec.settle}")
        if market.professional_only and not professional:
            reject(RejectCode.NOT_ELIGIBLE, f"{symbol} is offered to professional investors only")
        triggers = self.triggers
        if client_id and (book.find_client(account, client_id) is not None
                          or triggers.live and triggers.has_client(account, client_id)):
            reject(RejectCode.DUPLICATE_CLIENT_ORDER_ID,
                   f"client order id {client_id} is already open")
        cdef Account acc = self.margin.check(account, symbol, side, notional_price, qty,
                                             reduce_only, 0, 0, 0)
        cdef ExchangeCore ex = self.ex
        fresh = not order_id
        if fresh:
            order_id = ex._next_order_id
        # the book's refusals (post-only that would take, unfillable FOK) before time moves: the
        # clock's work never touches a book, so they need no second look
        cdef int status = book._precheck_place(order_id, account, side, price, qty, tif, stp,
                                               client_id)
        if status < 0:
            refuse_status(status)
        ex.advance(f[P_TS], events)

        book.n_fills = 0
        status = book._place_prechecked(order_id, account, side, price, qty, tif, stp, client_id, 0)
        if fresh:
            ex._next_order_id = order_id + 1
        events.append(OrderAccepted(ex.seq, ex.clock, account, symbol, order_id, client_id,
                                    side, price, qty, order_type, tif))
        remaining = self.fill_events(market, book, side, qty, events, None)
        if status == ST_RESTING:
            self.margin.rested(order_id, acc, symbol, side, price, remaining, reduce_only)
        elif remaining and (status == ST_EXPIRED or status == ST_STP_EXPIRED):
            events.append(OrderCancelled(ex.seq, ex.clock, account, symbol, order_id, remaining,
                                         EXPIRED if status == ST_EXPIRED else SELF_TRADE))

    cpdef cancel(self, cmd, list events):
        """CancelOrder: a resting order, or a conditional one still waiting."""
        cdef tuple f = astuple(cmd)
        account, symbol, ts = f[C_ACCOUNT], f[C_SYMBOL], f[C_TS]
        cdef Market market = self.market_of(symbol)
        triggers = self.triggers
        cdef ExchangeCore ex = self.ex
        if triggers.live:
            self.known_account(account)
            waiting = triggers.find(account, symbol, f[C_ORDER_ID], f[C_CLIENT_ID])
            if waiting:
                ex.advance(ts, events)
                triggers.cancel(waiting, USER, events)
                return
        cdef Order* order = self.owned_order(market, account, f[C_ORDER_ID], f[C_CLIENT_ID])
        order_id, side, price = order.id, order.side, order.price
        ex.advance(ts, events)
        cdef OrderBook book = market.book
        book.n_fills = 0
        open_qty = book._cancel(order_id)
        self.margin.closed(order_id, account, symbol, side, price, open_qty)
        events.append(OrderCancelled(ex.seq, ex.clock, account, symbol, order_id, open_qty, USER))

    cpdef amend(self, cmd, list events):
        """AmendOrder: new price and total quantity (see the book's amend rules)."""
        cdef Market market = self.market_of(cmd.symbol)
        cdef Order* order = self.owned_order(market, cmd.account, cmd.order_id, 0)
        order_id, side, old_price, open_qty, filled = (order.id, order.side, order.price, order.qty,
                                                       order.filled)
        price, qty = cmd.price, cmd.qty
        self.check_price_qty(market, price, qty)
        if qty <= filled:
            reject(RejectCode.INVALID_QTY,
                   f"new quantity {qty} must exceed the {filled} already filled")
        if <int128_t><int64_t>price * <int64_t>qty * market.units_per_ticklot \
                < market.min_notional_units:
            reject(RejectCode.BELOW_MIN_NOTIONAL,
                   f"notional below {market.spec.min_notional} {market.spec.settle}")
        self.margin.check(cmd.account, cmd.symbol, side, price, qty - filled, False, order_id,
                          old_price, open_qty)
        cdef ExchangeCore ex = self.ex
        cdef OrderBook book = market.book
        cdef int status = book._precheck_amend(order_id, price, qty)     # as in place()
        if status < 0:
            refuse_status(status)
        ex.advance(cmd.ts, events)
        book.n_fills = 0
        status = book._amend(order_id, price, qty)
        kept = price == old_price and qty <= filled + open_qty
        events.append(OrderAmended(ex.seq, ex.clock, cmd.account, cmd.symbol, order_id, price, qty,
                                   kept))
        remaining = self.fill_events(market, book, Side(side), qty - filled, events, None)
        self.margin.order_changed(order_id, cmd.account, cmd.symbol, side, old_price, open_qty,
                                  book.order(order_id))
        if remaining and status == ST_STP_EXPIRED:
            events.append(OrderCancelled(ex.seq, ex.clock, cmd.account, cmd.symbol, order_id,
                                         remaining, SELF_TRADE))

    def place_internal(self, account, str symbol, side, int64_t price, int64_t qty, list events,
                       taker_fee=None):
        """An IOC limit order the venue places for an account (the liquidation engine): no
        pre-trade checks, settled like any other; returns its order id."""
        cdef Market market = self.markets[symbol]
        cdef OrderBook book = market.book
        cdef ExchangeCore ex = self.ex
        order_id = ex._next_order_id
        ex._next_order_id = order_id + 1
        book.n_fills = 0
        cdef int status = book._place(order_id, account, side, price, qty, TIF_IOC, 0, 0, 0)
        events.append(OrderAccepted(ex.seq, ex.clock, account, symbol, order_id, 0, side, price,
                                    qty, LIMIT, IOC))
        remaining = self.fill_events(market, book, side, qty, events, taker_fee)
        if remaining:
            events.append(OrderCancelled(ex.seq, ex.clock, account, symbol, order_id, remaining,
                                         EXPIRED if status == ST_EXPIRED else SELF_TRADE))
        return order_id

    # ---- settlement ----------------------------------------------------------------------------

    cdef int64_t fill_events(self, Market market, OrderBook book, taker_side, int64_t taker_qty,
                             list events, taker_fee) except? -1:
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
        for i in range(n):
            f = book.fills_buf[i]
            if f.kind == EV_TRADE:
                events.append(OrderFilled(seq, ts, symbol, f.price, f.qty, taker_side, f.maker_id,
                                          f.taker_id, f.maker_account, f.taker_account,
                                          f.maker_remaining, f.taker_remaining))
                # stage 4: positions, realised PnL and fees of both sides
                margin.settle_trade(symbol, f.price, f.qty, taker_side, f.maker_id, f.taker_id,
                                    f.maker_account, f.taker_account, f.maker_remaining, events,
                                    taker_fee, seq, ts)
            else:
                events.append(OrderCancelled(seq, ts, f.maker_account, symbol, f.maker_id, f.qty,
                                             SELF_TRADE))
                margin.closed(f.maker_id, f.maker_account, symbol, 1 - taker_side, f.price, f.qty)
            remaining = f.taker_remaining
        return remaining
