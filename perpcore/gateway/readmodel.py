"""Read models the gateway keeps from the engine's durable events: orders (open and recently
closed, by id and by client order id), fills per account, public trades and funding history.

They are a pure function of the event stream, so after a restart they are rebuilt by replaying
the store's journal (rebuild()); client order ids, which Binance allows as strings while the
engine keys them as integers, are kept in a small append-only file beside the journal
(ClientIds), made durable before the command that uses one is acknowledged.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import deque
from pathlib import Path

import msgspec

from perpcore import messages as m
from perpcore import journal as jr
from perpcore.exchange import Exchange
from perpcore.snapshot import list_segments, list_snapshots, load_snapshot

CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")       # what Binance allows
OPEN, PARTIAL, FILLED, CANCELED, EXPIRED = "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", \
    "EXPIRED"


class ClientIds:
    """Client order id strings and the 63-bit numbers the engine keys them by (a hash of the
    string, so the engine's duplicate check among open orders holds for the strings)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self._names: dict[tuple[int, int], str] = {}
        self._fd = -1
        self._written = self._synced = 0
        if path is None:
            return
        path = Path(path)
        if path.exists():
            for line in path.read_bytes().splitlines():
                try:
                    account, number, name = msgspec.json.decode(line)
                except (msgspec.DecodeError, ValueError):
                    continue            # a line a crash cut short: its command was never acked
                self._names[(account, number)] = name
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    @staticmethod
    def number(name: str) -> int:
        """The engine's client_order_id for a client order id string (never 0: 0 is none)."""
        n = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1
        return n or 1

    def remember(self, account: int, name: str) -> int:
        """Records the name for the account (durable at the next sync()); its number."""
        number = self.number(name)
        if self._names.get((account, number)) != name:
            self._names[(account, number)] = name
            if self._fd >= 0:
                os.write(self._fd, msgspec.json.encode([account, number, name]) + b"\n")
                self._written += 1
        return number

    def name(self, account: int, number: int) -> str | None:
        """The string the account's order was given, None if it had none."""
        return self._names.get((account, number))

    def sync(self) -> None:
        """Makes what remember() wrote durable (a runner commit hook, on the engine thread)."""
        written = self._written
        if written != self._synced and self._fd >= 0:
            os.fsync(self._fd)
            self._synced = written

    def close(self) -> None:
        """Closes the file (what was written is kept)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# Binance's order type of an order, by (trigger kind, order type)
KIND_NAMES = {(m.TriggerKind.NONE, m.OrderType.LIMIT): "LIMIT",
              (m.TriggerKind.NONE, m.OrderType.MARKET): "MARKET",
              (m.TriggerKind.STOP, m.OrderType.LIMIT): "STOP",
              (m.TriggerKind.STOP, m.OrderType.MARKET): "STOP_MARKET",
              (m.TriggerKind.TAKE_PROFIT, m.OrderType.LIMIT): "TAKE_PROFIT",
              (m.TriggerKind.TAKE_PROFIT, m.OrderType.MARKET): "TAKE_PROFIT_MARKET"}


class Order(msgspec.Struct):
    """An order as a client sees it (quantities in lots, prices in ticks, times in ns)."""
    order_id: int
    account: int
    symbol: str
    side: m.Side
    order_type: m.OrderType
    tif: m.TimeInForce
    price: int
    qty: int                            # total: filled + open
    client_id: str
    time: int
    update_time: int
    filled: int = 0
    value: int = 0                      # sum of price x qty of the fills (ticks x lots)
    status: str = OPEN
    reduce_only: bool = False
    kind: str = "LIMIT"                 # Binance's type: LIMIT, MARKET, STOP_MARKET...
    stop_price: int = 0                 # a conditional order's trigger price (ticks)
    trigger_by: m.TriggerSource = m.TriggerSource.LAST
    triggered: bool = False             # a conditional order whose trigger fired

    @property
    def waiting(self) -> bool:
        """A conditional order still waiting for its trigger (Binance's open algo order)."""
        return self.stop_price != 0 and not self.triggered


class Fill(msgspec.Struct):
    """One side of a trade, for its account."""
    id: int
    symbol: str
    order_id: int
    side: m.Side
    price: int
    qty: int
    maker: bool
    time: int
    fee: int = 0                        # minor units of the settlement asset
    realised_pnl: int = 0


class Trade(msgspec.Struct, frozen=True):
    """One public trade of a symbol."""
    id: int
    symbol: str
    price: int
    qty: int
    buyer_maker: bool
    time: int


class _State(msgspec.Struct):
    """A ReadModel's content, for a read-model snapshot."""
    orders: list[Order]
    closed: list[int]
    next_trade: int
    fills: dict[int, list[Fill]]
    trades: dict[str, list[Trade]]
    funding: dict[str, list[tuple[int, int, int]]]
    updated: dict[int, int]
    next_funding: dict[str, int]
    funding_rates: dict[str, int]


class ReadModel:
    """Orders, fills, trades and funding history, updated by apply(events) in sequence order."""

    def __init__(self, client_ids: ClientIds | None = None, closed_kept: int = 100_000,
                 fills_kept: int = 1000, trades_kept: int = 1000):
        self.client_ids = client_ids or ClientIds()
        self.orders: dict[int, Order] = {}
        self.open: dict[int, dict[int, Order]] = {}         # account -> order id -> order
        self.by_client: dict[tuple[int, str], int] = {}     # (account, client id) -> order id
        self.fills: dict[int, deque] = {}
        self.trades: dict[str, deque] = {}
        self.funding: dict[str, deque] = {}
        self.updated: dict[int, int] = {}                   # account -> time of its last change
        self.next_funding: dict[str, int] = {}              # symbol -> next funding time
        self.funding_rates: dict[str, int] = {}             # symbol -> predicted rate
        self._closed: deque = deque()
        self._closed_kept, self._fills_kept, self._trades_kept = closed_kept, fills_kept, \
            trades_kept
        self._next_trade = 1
        self.observers: list = []
        self._last_fill: dict[tuple[int, int], Fill] = {}   # (account, order id) -> its newest

    def apply(self, events) -> None:
        """Applies durable events, in order; after each, the observers see it and the state it
        leaves (observer(event, fill): the fill a PositionChanged completed with its fee, or
        None)."""
        observers = self.observers
        for ev in events:
            handler = self._handlers.get(type(ev))
            if handler is not None:
                fill = handler(self, ev)
                for observer in observers:
                    observer(ev, fill)

    def _accepted(self, ev) -> None:
        """OrderAccepted, or TriggerOrderAccepted: a conditional order waiting, which keeps
        its record (and its type) when it triggers and is accepted under the same id."""
        order = self.orders.get(ev.order_id)
        if order is not None:                       # a conditional order, triggered
            order.price, order.tif, order.update_time = ev.price, ev.tif, ev.ts
            order.triggered = True
            return
        name = (self.client_ids.name(ev.account, ev.client_order_id)
                if ev.client_order_id else None) or f"perpcore-{ev.order_id}"
        order = Order(ev.order_id, ev.account, ev.symbol, ev.side, ev.order_type, ev.tif,
                      ev.price, ev.qty, name, ev.ts, ev.ts)
        if type(ev) is m.TriggerOrderAccepted:
            order.kind = KIND_NAMES[(ev.trigger, ev.order_type)]
            order.stop_price, order.trigger_by = ev.trigger_price, ev.trigger_by
            order.reduce_only = ev.reduce_only
        else:
            order.kind = KIND_NAMES[(m.TriggerKind.NONE, ev.order_type)]
        self.orders[ev.order_id] = order
        self.open.setdefault(ev.account, {})[ev.order_id] = order
        self.by_client[(ev.account, name)] = ev.order_id
        self.updated[ev.account] = ev.ts

    def _filled(self, ev: m.OrderFilled) -> None:
        trade_id = self._next_trade
        self._next_trade += 1
        trades = self.trades.get(ev.symbol)
        if trades is None:
            trades = self.trades[ev.symbol] = deque(maxlen=self._trades_kept)
        trades.append(Trade(trade_id, ev.symbol, ev.price, ev.qty,
                            ev.taker_side == m.Side.SELL, ev.ts))
        maker_side = m.Side.BUY if ev.taker_side == m.Side.SELL else m.Side.SELL
        for account, order_id, remaining, side, maker in (
                (ev.maker_account, ev.maker_order_id, ev.maker_remaining, maker_side, True),
                (ev.taker_account, ev.taker_order_id, ev.taker_remaining, ev.taker_side, False)):
            order = self.orders.get(order_id)
            if order is not None:
                order.filled += ev.qty
                order.value += ev.price * ev.qty
                order.update_time = ev.ts
                if remaining == 0:
                    self._close(order, FILLED, ev.ts)
                else:
                    order.status = PARTIAL
            fill = Fill(trade_id, ev.symbol, order_id, side, ev.price, ev.qty, maker, ev.ts)
            fills = self.fills.get(account)
            if fills is None:
                fills = self.fills[account] = deque(maxlen=self._fills_kept)
            fills.append(fill)
            self._last_fill[(account, order_id)] = fill
            self.updated[account] = ev.ts

    def _position(self, ev: m.PositionChanged) -> None:
        fill = self._last_fill.pop((ev.account, ev.order_id), None)
        if fill is not None:
            fill.fee, fill.realised_pnl = ev.fee, ev.realised_pnl
        self.updated[ev.account] = ev.ts
        return fill

    def _cancelled(self, ev: m.OrderCancelled) -> None:
        order = self.orders.get(ev.order_id)
        if order is not None:
            self._close(order, EXPIRED if ev.reason == m.CancelReason.EXPIRED else CANCELED, ev.ts)
        self.updated[ev.account] = ev.ts

    def _amended(self, ev: m.OrderAmended) -> None:
        order = self.orders.get(ev.order_id)
        if order is not None:
            order.price, order.qty, order.update_time = ev.price, ev.qty, ev.ts

    def _funding(self, ev: m.FundingSettled) -> None:
        history = self.funding.get(ev.symbol)
        if history is None:
            history = self.funding[ev.symbol] = deque(maxlen=self._trades_kept)
        history.append((ev.ts, ev.rate, ev.mark_price))

    def _funding_rate(self, ev: m.FundingRateUpdated) -> None:
        self.next_funding[ev.symbol], self.funding_rates[ev.symbol] = \
            ev.next_funding_ts, ev.rate

    def _account_event(self, ev) -> None:
        self.updated[ev.account] = ev.ts

    def _close(self, order: Order, status: str, ts: int) -> None:
        order.status, order.update_time = status, ts
        open_orders = self.open.get(order.account)
        if open_orders is not None and open_orders.pop(order.order_id, None) is not None:
            self._closed.append(order.order_id)
            while len(self._closed) > self._closed_kept:
                old = self.orders.pop(self._closed.popleft(), None)
                if old is not None:
                    self.by_client.pop((old.account, old.client_id), None)

    _handlers = {m.OrderAccepted: _accepted, m.TriggerOrderAccepted: _accepted,
                 m.OrderFilled: _filled,
                 m.PositionChanged: _position, m.OrderCancelled: _cancelled,
                 m.OrderAmended: _amended, m.FundingSettled: _funding,
                 m.FundingRateUpdated: _funding_rate,
                 m.Deposited: _account_event, m.Withdrawn: _account_event,
                 m.LeverageSet: _account_event, m.FundingPaid: _account_event,
                 m.MarginCall: _account_event, m.PositionLiquidated: _account_event}

    def to_state(self) -> bytes:
        """The whole model as msgpack (from_state() rebuilds it)."""
        return msgspec.msgpack.encode(_State(
            list(self.orders.values()), list(self._closed), self._next_trade,
            {a: list(f) for a, f in self.fills.items()},
            {s: list(t) for s, t in self.trades.items()},
            {s: list(h) for s, h in self.funding.items()},
            self.updated, self.next_funding, self.funding_rates))

    def from_state(self, data: bytes) -> None:
        """Replaces the model's content with a to_state() of another."""
        state = msgspec.msgpack.decode(data, type=_State)
        self.orders = {o.order_id: o for o in state.orders}
        self.open, self.by_client = {}, {}
        for o in state.orders:
            self.by_client[(o.account, o.client_id)] = o.order_id
            if o.status in (OPEN, PARTIAL):
                self.open.setdefault(o.account, {})[o.order_id] = o
        self._closed = deque(state.closed)
        self._next_trade = state.next_trade
        self.fills = {a: deque(f, maxlen=self._fills_kept) for a, f in state.fills.items()}
        self.trades = {s: deque(t, maxlen=self._trades_kept) for s, t in state.trades.items()}
        self.funding = {s: deque(map(tuple, h), maxlen=self._trades_kept)
                        for s, h in state.funding.items()}
        self.updated, self.next_funding, self.funding_rates = \
            state.updated, state.next_funding, state.funding_rates
        self._last_fill = {}

    def find(self, account: int, order_id: int | None = None,
             client_id: str | None = None) -> Order | None:
        """The account's order by id or client id; None for another account's (never revealed)."""
        if order_id is None:
            order_id = self.by_client.get((account, client_id or ""))
        order = self.orders.get(order_id) if order_id is not None else None
        return order if order is not None and order.account == account else None

    def note_reduce_only(self, events, cmd: m.PlaceOrder) -> None:
        """Marks the order a reduce-only PlaceOrder made (its events do not say)."""
        for ev in events:
            if isinstance(ev, m.OrderAccepted) and ev.order_id in self.orders:
                self.orders[ev.order_id].reduce_only = cmd.reduce_only


MODEL_SNAPSHOT = "gateway-readmodel-{:020d}.msgpack"


def model_snapshots(directory: str | os.PathLike) -> dict[int, Path]:
    """The read-model snapshots in a store, by the sequence number they hold."""
    return {int(p.name.split("-")[2].split(".")[0]): p
            for p in Path(directory).glob("gateway-readmodel-*.msgpack")}


def write_model_snapshot(directory: str | os.PathLike, seq: int, model: ReadModel) -> Path:
    """The model at `seq` (the store's snapshot of the same seq beside it), written atomically;
    read-model snapshots without an engine snapshot left are removed."""
    directory = Path(directory)
    path = directory / MODEL_SNAPSHOT.format(seq)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(model.to_state())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    kept = {s for s, _ in list_snapshots(directory)}
    for old_seq, old in model_snapshots(directory).items():
        if old_seq not in kept:
            old.unlink()
    return path


def rebuild(directory: str | os.PathLike, config, model: ReadModel) -> int:
    """Rebuilds `model` from a store: from the newest read-model snapshot that has the store's
    snapshot of the same seq beside it, or else from the first command, replaying the journal
    after it; returns the seq reached. A store whose journal no longer starts at the first
    command and has no such pair cannot be rebuilt (ValueError)."""
    snaps = dict(list_snapshots(directory))
    paired = sorted(set(model_snapshots(directory)) & set(snaps))
    segments = list_segments(directory)
    if paired:
        model.from_state(model_snapshots(directory)[paired[-1]].read_bytes())
        ex = load_snapshot(snaps[paired[-1]], config)
    elif not segments or segments[0][0] == 1:
        ex = Exchange(config)
    else:
        raise ValueError(f"{directory}: the journal starts at command {segments[0][0]} and no "
                         "read-model snapshot pairs with a store snapshot: orders and fills "
                         "before it are unknown")
    return replay_into(ex, model, (rec for _, path in segments
                                   for rec in jr.iter_commands(path)))


def replay_into(ex: Exchange, model: ReadModel, commands) -> int:
    """Applies the (seq, command) pairs after ex.seq to `ex`, feeding `model` their events;
    returns the seq reached (a store's journal, or a replicated venue's log)."""
    for seq, cmd in commands:
        if seq <= ex.seq:
            continue
        events = ex.submit(cmd, seq)
        model.apply(events)
        if isinstance(cmd, m.PlaceOrder) and cmd.reduce_only:
            model.note_reduce_only(events, cmd)
    return ex.seq
