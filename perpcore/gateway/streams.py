"""Binance USDⓈ-M WebSocket streams: market streams and the user-data stream.

Market streams (`<symbol>@depth`, `@trade`, `@aggTrade`, `@markPrice`, `@forceOrder`) are
reached as Binance serves them to ccxt.pro: `/public/ws/...` or `/market/ws/...` (also `/ws`),
with SUBSCRIBE / UNSUBSCRIBE requests, or `/stream?streams=a/b` for the combined form. Depth
diffs are computed on the engine thread right after each commit, from the book itself: U, u and
pu are engine sequence numbers (`pu` the previous diff's `u`), so a client keeps a local book from
a REST snapshot (`lastUpdateId`, also a sequence number) exactly as Binance documents.

The user-data stream (`/private/ws?listenKey=...`, or `/ws/<listenKey>`) carries an account's
ORDER_TRADE_UPDATE, ACCOUNT_UPDATE and MARGIN_CALL, from the read model's observers: each order
update shows the order as the event that caused it left it.
"""
from __future__ import annotations

import asyncio
import secrets
from collections import deque
from decimal import Decimal

import msgspec
from aiohttp import WSMsgType, web

from perpcore import messages as m
from perpcore.config import DECIMAL, rate_to_decimal

_encode = msgspec.json.encode
DEPTH_LEVELS = 1000          # the levels a diff covers, per side (Binance's REST maximum)
BOOK_EVENTS = (m.OrderAccepted, m.OrderFilled, m.OrderCancelled, m.OrderAmended)
SEND_QUEUE = 10_000          # messages a connection may lag behind before it is dropped


def _text(d: Decimal) -> str:
    return format(d, "f")


class Connection:
    """One WebSocket client: the streams it takes and a bounded queue its sender drains."""

    def __init__(self, ws: web.WebSocketResponse, combined: bool):
        self.ws = ws
        self.combined = combined
        self.streams: set[str] = set()
        self.queue: asyncio.Queue = asyncio.Queue(SEND_QUEUE)

    def send(self, stream: str, data: dict) -> None:
        """Queues a message of `stream` (wrapped with its name on a combined connection)."""
        if self.queue is None:
            return
        payload = {"stream": stream, "data": data} if self.combined else data
        try:
            self.queue.put_nowait(_encode(payload))
        except asyncio.QueueFull:
            # a client this far behind has lost its book anyway: drop it, it resubscribes
            self.queue = None
            asyncio.ensure_future(self.ws.close(message=b"too slow"))

    async def pump(self) -> None:
        """Sends the queued messages, in order, until the connection is dropped."""
        while True:
            queue = self.queue
            if queue is None:
                return
            await self.ws.send_str((await queue.get()).decode())   # text frames, as Binance


class Streams:
    """The WebSocket side of a Gateway."""

    def __init__(self, gateway):
        self.gw = gateway
        self.by_stream: dict[str, set[Connection]] = {}
        self.listen_keys: dict[str, int] = {}           # listenKey -> account
        self.by_account: dict[int, set[Connection]] = {}
        self.pending_diffs: deque = deque()             # filled by the engine thread
        # the books whose diffs are computed (those with depth subscribers): their levels at
        # the last diff and its u; engine-thread state, changed by queries
        self._depth: dict[str, tuple[dict, dict]] = {}  # symbol -> (bids, asks) price -> qty
        self._last_u: dict[str, int] = {}
        self._depth_subscribers: dict[str, int] = {}    # symbol -> connections (event loop)
        gateway.runner.engine_listeners.append(self.book_diffs)
        gateway.runner.listeners.append(self.market_events)
        gateway.model.observers.append(self.user_event)

    def routes(self, app: web.Application) -> None:
        """Adds the WebSocket paths to an application."""
        r = app.router
        for path in ("/ws", "/ws/{path:.*}", "/public/ws", "/public/ws/{path:.*}",
                     "/market/ws", "/market/ws/{path:.*}", "/private/ws",
                     "/private/ws/{path:.*}", "/stream"):
            r.add_get(path, self.connect)

    # ---- connections ---------------------------------------------------------------------------

    async def connect(self, request: web.Request) -> web.WebSocketResponse:
        """One WebSocket connection: market streams, or a listen key's user-data stream."""
        ws = web.WebSocketResponse(heartbeat=60)
        conn = Connection(ws, combined=request.path == "/stream")
        account = None
        # registered before the handshake completes: whatever happens once the client knows it
        # is connected reaches it
        tail = request.match_info.get("path", "")
        key = request.query.get("listenKey") or tail
        if key in self.listen_keys:
            account = self.listen_keys[key]
            self.by_account.setdefault(account, set()).add(conn)
        else:
            names = request.query.get("streams", "").split("/") if conn.combined else \
                tail.split("/")
            self._subscribe(conn, [n for n in names if "@" in n])
        sender = None
        try:
            await ws.prepare(request)
            sender = asyncio.ensure_future(conn.pump())
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._request(conn, msg.data)
        finally:
            if sender is not None:
                sender.cancel()
            for name in list(conn.streams):
                self._unsubscribe(conn, name)
            if account is not None:
                self.by_account[account].discard(conn)
        return ws

    def _subscribe(self, conn: Connection, names) -> None:
        for name in names:
            if name not in conn.streams:
                conn.streams.add(name)
                self.by_stream.setdefault(name, set()).add(conn)
                self._count_depth(name, 1)

    def _unsubscribe(self, conn: Connection, name: str) -> None:
        if name in conn.streams:
            conn.streams.discard(name)
            self.by_stream.get(name, set()).discard(conn)
            self._count_depth(name, -1)

    def _count_depth(self, name: str, delta: int) -> None:
        """Starts a book's diffs with its first depth subscriber and stops them after its last.
        Diffs cost a depth walk per commit, so only watched books pay it. The change runs on
        the engine thread as a query, in order with the REST depth a new subscriber asks next
        (whose lastUpdateId is then at or after the first diff's U - 1)."""
        base, _, stream = name.partition("@")
        if not stream.startswith("depth"):
            return
        symbol = next((s for s, sid in self.gw.ids.items() if sid.lower() == base), None)
        if symbol is None:
            return
        count = self._depth_subscribers.get(symbol, 0) + delta
        self._depth_subscribers[symbol] = count
        if count == 1 and delta == 1:
            self.gw.runner.query(self._track, symbol)
        elif count == 0:
            self.gw.runner.query(self._untrack, symbol)

    def _track(self, ex, symbol: str) -> None:
        bids, asks = ex.book(symbol).depth(DEPTH_LEVELS)
        self._depth[symbol] = ({p: q for p, q, _ in bids}, {p: q for p, q, _ in asks})
        self._last_u[symbol] = ex.seq

    def _untrack(self, ex, symbol: str) -> None:
        self._depth.pop(symbol, None)

    def _request(self, conn: Connection, text: str) -> None:
        try:
            req = msgspec.json.decode(text)
            method, params, rid = req["method"], req.get("params", []), req.get("id")
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                raise TypeError("params must be a list of stream names")
        except (msgspec.DecodeError, KeyError, TypeError):
            conn.queue.put_nowait(_encode({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        if method == "SUBSCRIBE":
            self._subscribe(conn, params)
            result = None
        elif method == "UNSUBSCRIBE":
            for name in params:
                self._unsubscribe(conn, name)
            result = None
        elif method == "LIST_SUBSCRIPTIONS":
            result = sorted(conn.streams)
        else:
            conn.queue.put_nowait(_encode({"error": {"code": 2, "msg": "Invalid request"},
                                           "id": rid}))
            return
        conn.queue.put_nowait(_encode({"result": result, "id": rid}))

    def new_listen_key(self, account: int) -> str:
        """A listen key for the account's user-data stream (one per request, as Binance's)."""
        key = secrets.token_hex(32)
        self.listen_keys[key] = account
        return key

    def _publish(self, base: str, suffixes, data: dict) -> None:
        for suffix in suffixes:
            name = base + suffix
            for conn in self.by_stream.get(name, ()):
                conn.send(name, data)

    # ---- depth diffs (engine thread, then the loop) -------------------------------------------

    def book_diffs(self, ex, events: list) -> None:
        """On the engine thread after a commit: the level changes of every book the events
        touched, since that book's last diff."""
        if not self._depth:
            return
        touched = {ev.symbol for ev in events if type(ev) in BOOK_EVENTS}
        for symbol in sorted(touched & self._depth.keys()):
            old_bids, old_asks = self._depth[symbol]
            bids, asks = ex.book(symbol).depth(DEPTH_LEVELS)
            new_bids = {p: q for p, q, _ in bids}
            new_asks = {p: q for p, q, _ in asks}
            db = [(p, new_bids.get(p, 0)) for p in old_bids.keys() | new_bids.keys()
                  if old_bids.get(p) != new_bids.get(p)]
            da = [(p, new_asks.get(p, 0)) for p in old_asks.keys() | new_asks.keys()
                  if old_asks.get(p) != new_asks.get(p)]
            self._depth[symbol] = (new_bids, new_asks)
            pu = self._last_u[symbol]
            self._last_u[symbol] = ex.seq
            self.pending_diffs.append((symbol, pu, ex.seq, ex.clock, sorted(db, reverse=True),
                                       sorted(da)))

    def market_events(self, events: list) -> None:
        """On the loop: depth diffs, mark prices and liquidations to their streams."""
        gw = self.gw
        while self.pending_diffs:
            symbol, pu, u, clock, bids, asks = self.pending_diffs.popleft()
            sid, spec = gw.ids[symbol], gw.config.instruments[symbol]
            ms = clock // 1_000_000
            data = {"e": "depthUpdate", "E": ms, "T": ms, "s": sid, "U": pu + 1, "u": u,
                    "pu": pu,
                    "b": [[_text(spec.from_ticks(p)), _text(spec.from_lots(q))] for p, q in bids],
                    "a": [[_text(spec.from_ticks(p)), _text(spec.from_lots(q))] for p, q in asks]}
            self._publish(sid.lower(), ("@depth", "@depth@100ms", "@depth@250ms",
                                        "@depth@500ms"), data)
        for ev in events:
            kind = type(ev)
            if kind is m.MarkPriceUpdated:
                self._mark(ev)
            elif kind is m.PositionLiquidated:
                self._force_order(ev)

    def _mark(self, ev: m.MarkPriceUpdated) -> None:
        gw = self.gw
        sid, spec = gw.ids[ev.symbol], gw.config.instruments[ev.symbol]
        data = {"e": "markPriceUpdate", "E": ev.ts // 1_000_000, "s": sid,
                "p": _text(spec.from_ticks(ev.price)), "i": _text(spec.from_ticks(ev.index_price)),
                "P": _text(spec.from_ticks(ev.price)),
                "r": _text(rate_to_decimal(gw.model.funding_rates.get(ev.symbol, 0))),
                "T": gw.model.next_funding.get(ev.symbol, 0) // 1_000_000}
        self._publish(sid.lower(), ("@markPrice", "@markPrice@1s"), data)

    def _force_order(self, ev: m.PositionLiquidated) -> None:
        gw = self.gw
        sid, spec = gw.ids[ev.symbol], gw.config.instruments[ev.symbol]
        price = spec.from_ticks(ev.bankruptcy_price)
        data = {"e": "forceOrder", "E": ev.ts // 1_000_000,
                "o": {"s": sid, "S": "BUY" if ev.side == m.Side.BUY else "SELL", "o": "LIMIT",
                      "f": "IOC", "q": _text(spec.from_lots(ev.qty)), "p": _text(price),
                      "ap": _text(price), "X": "FILLED", "l": _text(spec.from_lots(ev.qty)),
                      "z": _text(spec.from_lots(ev.qty)), "T": ev.ts // 1_000_000}}
        self._publish(sid.lower(), ("@forceOrder",), data)
        self._publish("!forceOrder@arr", ("",), data)

    # ---- trades and the user-data stream (read-model observers) --------------------------------

    def user_event(self, ev, fill) -> None:
        """After the read model applied `ev`: public trades and the accounts' own streams."""
        kind = type(ev)
        if kind is m.OrderFilled:
            self._trade(ev)
            return
        if kind is m.OrderAccepted:
            self._order_update(ev.account, ev.order_id, "NEW", None, ev.ts)
        elif kind is m.OrderCancelled:
            order = self.gw.model.orders.get(ev.order_id)
            self._order_update(ev.account, ev.order_id,
                               order.status if order is not None else "CANCELED", None, ev.ts)
        elif kind is m.OrderAmended:
            self._order_update(ev.account, ev.order_id, "AMENDMENT", None, ev.ts)
        elif kind is m.PositionChanged:
            if fill is not None:
                self._order_update(ev.account, ev.order_id, "TRADE", fill, ev.ts)
            self._account_update(ev.account, "ORDER", ev, ev.ts)
        elif kind in (m.Deposited, m.Withdrawn):
            self._account_update(ev.account, "DEPOSIT" if kind is m.Deposited else "WITHDRAW",
                                 None, ev.ts, balance=(ev.asset, ev.balance))
        elif kind is m.FundingPaid:
            self._account_update(ev.account, "FUNDING_FEE", None, ev.ts)
        elif kind is m.MarginCall:
            self._send_user(ev.account, {"e": "MARGIN_CALL", "E": ev.ts // 1_000_000,
                                         "cw": "0", "p": []})

    def _trade(self, ev: m.OrderFilled) -> None:
        gw = self.gw
        sid, spec = gw.ids[ev.symbol], gw.config.instruments[ev.symbol]
        trade = gw.model.trades[ev.symbol][-1]
        ms = ev.ts // 1_000_000
        price, qty = _text(spec.from_ticks(ev.price)), _text(spec.from_lots(ev.qty))
        buyer_maker = ev.taker_side == m.Side.SELL
        self._publish(sid.lower(), ("@trade",), {
            "e": "trade", "E": ms, "T": ms, "s": sid, "t": trade.id, "p": price, "q": qty,
            "X": "MARKET", "m": buyer_maker})
        self._publish(sid.lower(), ("@aggTrade",), {
            "e": "aggTrade", "E": ms, "s": sid, "a": trade.id, "p": price, "q": qty,
            "f": trade.id, "l": trade.id, "T": ms, "m": buyer_maker})

    def _send_user(self, account: int, data: dict) -> None:
        for conn in self.by_account.get(account, ()):
            conn.send("", data)

    def _order_update(self, account: int, order_id: int, execution: str, fill, ts: int) -> None:
        if not self.by_account.get(account):
            return
        gw = self.gw
        order = gw.model.orders.get(order_id)
        if order is None:
            return
        spec = gw.config.instruments[order.symbol]
        settle = gw.config.assets[spec.settle]
        o = gw._order_json(order)
        ms = ts // 1_000_000
        data = {"s": o["symbol"], "c": o["clientOrderId"], "S": o["side"], "o": o["type"],
                "f": o["timeInForce"], "q": o["origQty"], "p": o["price"],
                "ap": o["avgPrice"], "sp": "0", "x": execution, "X": o["status"],
                "i": order_id, "l": "0", "z": o["executedQty"], "L": "0", "n": "0",
                "N": spec.settle, "T": ms, "t": 0, "b": "0", "a": "0", "m": False,
                "R": o["reduceOnly"], "wt": "CONTRACT_PRICE", "ot": o["type"], "ps": "BOTH",
                "cp": False, "rp": "0", "pP": False, "si": 0, "ss": 0, "V": "NONE",
                "pm": "NONE", "gtd": 0}
        if fill is not None:
            data.update({"l": _text(spec.from_lots(fill.qty)),
                         "L": _text(spec.from_ticks(fill.price)),
                         "n": _text(settle.from_units(fill.fee)), "t": fill.id,
                         "m": fill.maker, "rp": _text(settle.from_units(fill.realised_pnl))})
        self._send_user(account, {"e": "ORDER_TRADE_UPDATE", "E": ms, "T": ms, "o": data})

    def _account_update(self, account: int, reason: str, position, ts: int,
                        balance=None) -> None:
        if not self.by_account.get(account):
            return
        gw = self.gw
        settle_name = gw.config.settlement_asset
        balances, positions = [], []
        if balance is not None:
            name, units = balance
            wb = _text(gw.config.assets[name].from_units(units))
            balances.append({"a": name, "wb": wb, "cw": wb, "bc": "0"})
        if position is not None:
            spec = gw.config.instruments[position.symbol]
            wb = _text(gw.config.assets[settle_name].from_units(position.balance))
            balances.append({"a": settle_name, "wb": wb, "cw": wb, "bc": "0"})
            entry = (DECIMAL.divide(spec.from_ticks(position.entry_value), abs(position.size))
                     if position.size else Decimal(0))
            positions.append({"s": gw.ids[position.symbol],
                              "pa": _text(spec.from_lots(position.size)), "ep": _text(entry),
                              "bep": _text(entry), "cr": "0", "up": "0", "mt": "cross",
                              "iw": "0", "ps": "BOTH"})
        ms = ts // 1_000_000
        self._send_user(account, {"e": "ACCOUNT_UPDATE", "E": ms, "T": ms,
                                  "a": {"m": reason, "B": balances, "P": positions}})
