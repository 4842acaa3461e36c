"""LOBSTER order-by-order flow (NASDAQ, lobsterdata.com) replayed through the matching engine.

The replay drives one perpcore._book.OrderBook directly rather than the Exchange: LOBSTER orders
come with their own ids (the book takes caller-chosen ids, so "the same resting order" is the
file's own id and needs no mapping), they carry no accounts, balances or instrument limits for the
Exchange's account and risk stages to act on, and the file's partial view of the book needs
queue surgery (seeding an order at the front of its level) that no venue command offers.

How each message becomes book operations (the file shows only the top `level` price levels, so
an order can first appear in a cancel or an execution, and its end can go unseen):
- 1 add: a GTC limit of the file's id. Resting orders on the other side that it would cross were
  already gone in the real book (their end went unseen): they are removed first.
- 2 partial cancel: the order's open quantity shrinks, keeping its queue place.
- 3 delete: the order is cancelled.
- 4 visible execution: an order not in the book rested before the file saw it, so it is seeded at
  the front of its level with the executed size; resting orders on its side priced better than the
  execution were already gone, so they are removed; then an IOC from the replay taker account
  meets it at the executed price and the engine's own matching makes the trade. It is reproduced
  if the engine traded exactly once, against that order, for that size. If not, the book is put
  back in line with the file (the makers traded instead were not there; the order loses what the
  file says it lost).
- 5 hidden execution, 6 cross trade: trades that touch no visible order; counted.
- 7 trading halt: counted.

LOBSTER has no accounts, and self-trade prevention is off, so the account field is free: each
order rests under an account that names its price level and side. cancel_account() then lifts one
whole level, oldest first, which is what seeding at the front of a level and removing stale levels
need; the replay taker has account 1, which names no level.
"""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from perpcore import _book

ADD, PARTIAL_CANCEL, DELETE, EXECUTE, HIDDEN, CROSS, HALT = 1, 2, 3, 4, 5, 6, 7
TYPE_NAMES = {ADD: "add", PARTIAL_CANCEL: "partial cancel", DELETE: "delete",
              EXECUTE: "visible execution", HIDDEN: "hidden execution", CROSS: "cross trade",
              HALT: "halt"}
TAKER_ACCOUNT = 1
TAKER_IDS = 1 << 62                 # above any LOBSTER order id
EMPTY_ASK, EMPTY_BID = 9999999999, -9999999999     # the orderbook file's "no level" prices
_LEVEL = re.compile(r"_message_(\d+)\.csv$")


def _level_account(side: int, price: int) -> int:
    return 2 * price + side + 2


def parse_time(text: str) -> int:
    """Seconds after midnight with up to nine decimals -> integer nanoseconds, exactly."""
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def _has_header(path: str | Path) -> bool:
    with open(path) as f:
        return not f.read(1).lstrip("-").isdigit()


def read_messages(path: str | Path) -> np.ndarray:
    """The message file as an int64 array of (time ns, type, order id, size, price, direction);
    a header row, if present, and a 7th column (market participant id) are skipped.

    numpy's parser reads the columns as float64: every integer here is far below 2**53, and a time
    of at most nine decimals below 86,400 s is within 0.02 ns of its float, so rounding the float
    times 1e9 gives the exact nanosecond (parse_time() is the exact reference the tests hold
    this to)."""
    raw = _load(path, "message", 6, np.float64)
    out = raw.astype(np.int64)
    out[:, 0] = np.rint(raw[:, 0] * 1e9).astype(np.int64)
    return out


def read_orderbook(path: str | Path) -> np.ndarray:
    """The orderbook file's first four columns (ask, ask size, bid, bid size) per message."""
    return _load(path, "orderbook", 4, np.int64)


def _load(path: str | Path, kind: str, columns: int, dtype) -> np.ndarray:
    """The file's first `columns` columns; numpy's error alone does not say which file is wrong."""
    try:
        return np.loadtxt(path, delimiter=",", usecols=range(columns),
                          skiprows=int(_has_header(path)), dtype=dtype, ndmin=2)
    except ValueError as e:         # includes a binary file's UnicodeDecodeError
        raise ValueError(f"{path}: not a LOBSTER {kind} file ({e})") from e


def orderbook_for(message_path: str | Path) -> Path | None:
    path = Path(str(message_path).replace("_message_", "_orderbook_"))
    return path if path != Path(message_path) and path.exists() else None


@dataclass
class LobsterReport:
    path: str
    level: int
    messages: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    visible_executions: int = 0
    reproduced: int = 0                 # same resting order, same size, one trade
    executions_of_seen_orders: int = 0  # of those, orders the file had shown being added
    reproduced_seen: int = 0
    seeded: int = 0                     # orders first seen in an execution, seeded at the front
    stale_removed: int = 0              # resting orders the file shows were already gone
    unknown_cancels: int = 0            # cancels of orders never seen (nothing to do)
    repaired: int = 0                   # executions after which the book was put back in line
    hidden_executions: int = 0
    hidden_volume: int = 0
    engine_trades: int = 0
    engine_volume: int = 0
    top_compared: int = 0               # rows of the orderbook file compared (level-1 files)
    top_price_agreed: int = 0           # best bid and ask prices both equal the file's
    top_size_agreed: int = 0            # ... and their sizes too
    resting_orders: int = 0
    best_bid: int | None = None
    best_ask: int | None = None
    book_hash: str = ""
    elapsed_s: float = 0.0

    @property
    def reproduction(self) -> float:
        return self.reproduced / self.visible_executions if self.visible_executions else 0.0

    @property
    def reproduction_seen(self) -> float:
        return (self.reproduced_seen / self.executions_of_seen_orders
                if self.executions_of_seen_orders else 0.0)

    @property
    def top_price_agreement(self) -> float:
        return self.top_price_agreed / self.top_compared if self.top_compared else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s else 0.0

    def as_dict(self) -> dict:
        out = dict(vars(self))
        out.update(reproduction=self.reproduction, reproduction_seen=self.reproduction_seen,
                   top_price_agreement=self.top_price_agreement,
                   messages_per_s=self.messages_per_s)
        return out


class LobsterReplay:
    """One message file through one book. `on_trade(ts, index, taker_side, fill)` receives each
    engine trade: the message's time and index, the taker's side (0 buy, 1 sell) and the fill as
    OrderBook.fills() gives it."""

    def __init__(self, on_trade=None):
        self.book = _book.OrderBook()
        self.on_trade = on_trade
        self._next_taker = TAKER_IDS
        self._seen: set[int] = set()        # ids the file has shown being added

    def _lift_level(self, side: int, price: int) -> list[tuple[int, int]]:
        """Takes a whole level out of the book: [(order id, open qty)], oldest first."""
        return [(order_id, qty) for order_id, _, _, qty
                in self.book.cancel_account(_level_account(side, price))]

    def _rest(self, order_id: int, side: int, price: int, qty: int) -> None:
        self.book.place(order_id, _level_account(side, price), side, price, qty)

    def _remove_better(self, side: int, price: int) -> int:
        """Removes the levels of `side` priced better than `price`; returns how many orders."""
        removed = 0
        book = self.book
        best = book.best_bid if side == _book.BUY else book.best_ask
        while True:
            top = best()
            if top is None or (top <= price if side == _book.BUY else top >= price):
                return removed
            removed += len(self._lift_level(side, top))

    def _remove_crossing(self, side: int, price: int) -> int:
        """Removes the orders of the other side that an order of `side` at `price` would meet
        (the real book is never crossed); returns how many."""
        if side == _book.BUY:
            return self._remove_better(_book.SELL, price + 1)
        return self._remove_better(_book.BUY, price - 1)

    def _seed_front(self, order_id: int, side: int, price: int, qty: int) -> None:
        queue = self._lift_level(side, price)
        self._rest(order_id, side, price, qty)
        for other, open_qty in queue:
            self._rest(other, side, price, open_qty)

    def _reduce(self, order_id: int, by: int) -> None:
        state = self.book.order(order_id)
        if state is None:
            return
        _, _, _, price, open_qty, filled, _, _ = state
        if by >= open_qty:
            self.book.cancel(order_id)
        elif by > 0:
            self.book.amend(order_id, price, filled + open_qty - by)

    def run(self, messages: np.ndarray, report: LobsterReport, orderbook: np.ndarray | None = None,
            progress=None) -> LobsterReport:
        book = self.book
        counts = dict.fromkeys(TYPE_NAMES, 0)
        compare = orderbook is not None and len(orderbook) == len(messages)
        started = time.perf_counter()
        for i, (ts, kind, order_id, size, price, direction) in enumerate(messages.tolist()):
            counts[kind] = counts.get(kind, 0) + 1
            side = _book.BUY if direction == 1 else _book.SELL
            if kind == ADD:
                # the other side's orders this would cross were gone before it came
                report.stale_removed += self._remove_crossing(side, price)
                book.place(order_id, _level_account(side, price), side, price, size)
                self._seen.add(order_id)
            elif kind == PARTIAL_CANCEL:
                if book.order(order_id) is None:
                    report.unknown_cancels += 1
                else:
                    self._reduce(order_id, size)
            elif kind == DELETE:
                if book.cancel(order_id) < 0:
                    report.unknown_cancels += 1
            elif kind == EXECUTE:
                self._execute(ts, i, order_id, side, price, size, report)
            elif kind == HIDDEN:
                report.hidden_executions += 1
                report.hidden_volume += size
            if compare:
                self._check_top(orderbook[i], report)
            if progress is not None and i % 4096 == 0:
                progress(i)
        report.elapsed_s = time.perf_counter() - started
        report.messages = len(messages)
        report.by_type = {TYPE_NAMES.get(k, str(k)): v for k, v in counts.items() if v}
        report.resting_orders = len(book)
        report.best_bid, report.best_ask = book.best_bid(), book.best_ask()
        report.book_hash = book_hash(book)
        return report

    def _execute(self, ts: int, index: int, order_id: int, side: int, price: int, size: int,
                 report: LobsterReport) -> None:
        book = self.book
        report.visible_executions += 1
        seen = order_id in self._seen
        report.executions_of_seen_orders += seen
        state = book.order(order_id)
        # anything priced better on its side, and anything on the other side it would meet,
        # had gone before this execution
        report.stale_removed += self._remove_better(side, price)
        report.stale_removed += self._remove_crossing(side, price)
        if state is None or state[3] != price or state[4] < size:
            if state is not None:
                book.cancel(order_id)
            self._seed_front(order_id, side, price, size)
            report.seeded += 1
        taker = self._next_taker
        self._next_taker += 1
        book.place(taker, TAKER_ACCOUNT, 1 - side, price, size, _book.IOC)
        fills = book.fills()
        for fill in fills:
            report.engine_trades += 1
            report.engine_volume += fill[6]
            if self.on_trade is not None:
                self.on_trade(ts, index, 1 - side, fill)
        if len(fills) == 1 and fills[0][1] == order_id and fills[0][6] == size:
            report.reproduced += 1
            report.reproduced_seen += seen
            return
        # put the book back in line with the file: the makers that traded instead were not
        # there, and the order lost what the file says it lost
        report.repaired += 1
        got = 0
        for fill in fills:
            if fill[1] == order_id:
                got += fill[6]
            elif fill[7] > 0:
                book.cancel(fill[1])
        self._reduce(order_id, size - got)

    def _check_top(self, row, report: LobsterReport) -> None:
        """Compares the top of the book with the orderbook file's after a message, then brings
        it in line: levels better than the file's best were gone, and at the best level the
        oldest orders that the file's size leaves no room for were gone (they rested while the
        level was away from the top, where their cancels went unseen)."""
        ask, ask_size, bid, bid_size = row
        bids, asks = self.book.depth(1)
        ours_ask = asks[0][:2] if asks else (EMPTY_ASK, 0)
        ours_bid = bids[0][:2] if bids else (EMPTY_BID, 0)
        report.top_compared += 1
        if ours_ask[0] == ask and ours_bid[0] == bid:
            report.top_price_agreed += 1
            if ours_ask[1] == ask_size and ours_bid[1] == bid_size:
                report.top_size_agreed += 1
                return
        for side, (price, size), (our_price, our_size) in (
                (_book.BUY, (bid, bid_size), ours_bid), (_book.SELL, (ask, ask_size), ours_ask)):
            if price in (EMPTY_ASK, EMPTY_BID) or (our_price == price and our_size <= size):
                continue
            report.stale_removed += self._remove_better(side, price)
            level = self.book.depth(1)[side]
            if level and level[0][0] == price and level[0][1] > size:
                report.stale_removed += self._trim_front(side, price, level[0][1] - size)

    def _trim_front(self, side: int, price: int, excess: int) -> int:
        """Removes the oldest orders of a level while they fit in `excess`; returns how many."""
        queue = self._lift_level(side, price)
        removed = 0
        while removed < len(queue) and queue[removed][1] <= excess:
            excess -= queue[removed][1]
            removed += 1
        for order_id, open_qty in queue[removed:]:
            self._rest(order_id, side, price, open_qty)
        return removed


def book_hash(book: _book.OrderBook) -> str:
    return hashlib.blake2b(msgspec.msgpack.encode(book.dump()), digest_size=32).hexdigest()


def level_of(path: str | Path) -> int:
    match = _LEVEL.search(str(path))
    return int(match.group(1)) if match else 0


def replay_file(path: str | Path, on_trade=None, progress=None,
                compare_orderbook: bool = True) -> LobsterReport:
    """Replays one message file (and checks the top of book against its orderbook file when
    there is one and compare_orderbook is set)."""
    messages = read_messages(path)
    orderbook = None
    if compare_orderbook and (ob_path := orderbook_for(path)) is not None:
        orderbook = read_orderbook(ob_path)
    report = LobsterReport(path=str(path), level=level_of(path))
    return LobsterReplay(on_trade).run(messages, report, orderbook, progress)
