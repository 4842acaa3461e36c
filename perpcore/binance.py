"""Binance captures through perpcore's valuation: the USDⓈ-M book as the perpetual, spot trades as
the index source.

The captures (../shared/data/binance, one message a line: local receive time in ns, a space, the
JSON) hold the perpetual's depth diffs, bookTicker and trades, one REST depth snapshot, and the spot
market's trades for the same minutes. replay() rebuilds the perpetual's book in perpcore's Cython
order book (one resting order per price level, set in C from the diffs' text by perpcore._binance)
following Binance's rules for a local book (drop diffs older than the snapshot; the first applied
one spans it; each next one's `pu` is the last one's `u`), feeds the spot trades to perpcore.pricing
as SetIndexPrice would, and runs the pricing layer on the capture's clock: the premium index every
5 s at the impact notional, the mark every second, the predicted funding rate. It also checks the
rebuilt book: every bookTicker whose update id is that of an applied diff must show the rebuilt best
bid and ask, prices and quantities.

Time is the local receive time (one clock for both captures). Prices leave the capture as Decimal
strings and enter perpcore as ticks of the perpetual (a spot price between two ticks is rounded half
to even: the index is a reference, not a fill).
"""
from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from operator import itemgetter
from pathlib import Path
from typing import Generic, TypeVar

import msgspec
import numpy as np

from perpcore import _book
from perpcore._binance import LevelSetter, Step
from perpcore.config import (BTC_TIERS, ETH_TIERS, RATE_SCALE, AssetSpec, InstrumentSpec,
                             VenueConfig)
from perpcore.exchange import Market
from perpcore.pricing import Pricing

SECOND = 1_000_000_000
SOURCE = "binance-spot"
_MAKER = 1          # the one account that "owns" every rebuilt level


def binance_config() -> VenueConfig:
    """BTCUSDT and ETHUSDT as Binance lists them (tick 0.1 / 0.01 USDT, lot 0.001), settled in
    USDT, with the default pricing spec (Binance's constants) and margin tiers."""
    def perp(symbol, base, tick, tiers):
        return InstrumentSpec(symbol=symbol, base=base, settle="USDT", tick_size=Decimal(tick),
                              lot_size=Decimal("0.001"), min_notional=Decimal("5"),
                              max_qty=10**9, max_price=10**10, tiers=tiers)
    return VenueConfig(
        settlement_asset="USDT",
        assets={"USDT": AssetSpec("USDT", 6), "BTC": AssetSpec("BTC", 8),
                "ETH": AssetSpec("ETH", 8)},
        instruments={"BTCUSDT": perp("BTCUSDT", "BTC", "0.1", BTC_TIERS),
                     "ETHUSDT": perp("ETHUSDT", "ETH", "0.01", ETH_TIERS)})


# The decoded lines stay until the replay ends: as Structs without GC tracking (gc=False) and the
# diffs' level lists left raw until applied, the cyclic GC has next to nothing to traverse (it took
# a third of the replay). A line is decoded once, straight to what its stream carries.

T = TypeVar("T")


class _Message(msgspec.Struct, Generic[T], gc=False):
    """A combined-stream message ({"stream": name, "data": T}) whose stream carries T."""
    data: T


class _Stream(msgspec.Struct, gc=False):
    """A line's stream name ("" for a line with no stream: the REST snapshot)."""
    stream: str = ""


class _Snapshot(msgspec.Struct, gc=False):
    """A line with no stream: the REST depth snapshot when it has an update id."""
    lastUpdateId: int | None = None
    bids: msgspec.Raw = msgspec.Raw(b"[]")      # [[price, qty], ...] as text
    asks: msgspec.Raw = msgspec.Raw(b"[]")


class _Depth(msgspec.Struct, gc=False):
    U: int
    u: int
    pu: int
    b: msgspec.Raw      # [[price, qty], ...] as text
    a: msgspec.Raw


class _UpdateId(msgspec.Struct, gc=False):
    u: int


class _Ticker(msgspec.Struct, gc=False):
    u: int
    b: str
    B: str
    a: str
    A: str


class _Trade(msgspec.Struct, gc=False):
    p: str
    X: str = "MARKET"


# what a capture line is to replay(); _CLOCK: nothing but its time
_CLOCK, _TICKER, _SNAPSHOT, _DEPTH, _TRADE, _SPOT_TRADE = range(6)
_PREFIX = b'{"stream":"'      # how a combined-stream message starts, its stream's name next
_NAME_AT = len(_PREFIX)


def read_capture(path: Path, spot: bool = False) -> list[tuple[int, int, object]]:
    """(local receive time ns, kind, message) per line, a message decoded only as far as replay()
    reads it: typed Structs for depth diffs, trades and the REST snapshot, a bookTicker's line
    left as JSON text (replay() reads the update ids of all and the prices of a few); of a spot
    capture only the trades (the rest: _CLOCK, None)."""
    decoders = {_DEPTH: msgspec.json.Decoder(_Message[_Depth]).decode,
                _TRADE: msgspec.json.Decoder(_Message[_Trade]).decode}
    decoders[_SPOT_TRADE] = decoders[_TRADE]
    stream_of = msgspec.json.Decoder(_Stream).decode
    # '{"stream":"<name>' -> kind, worked out once per stream: the stream's name leads the message
    kinds: dict[bytes, int] = {}
    out = []
    append = out.append
    try:
        text = gzip.decompress(path.read_bytes())
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:     # e.g. a capture cut short
        raise ValueError(f"{path}: not a complete gzip file ({e})") from e
    try:
        # line by line (not a list of all lines first: each line's copy reuses the last one's
        # memory)
        for line in io.BytesIO(text):
            ts, _, payload = line.partition(b" ")
            head = payload[:payload.find(b'"', _NAME_AT)]
            kind = kinds.get(head)
            if kind is None:
                kind = _kind(stream_of(payload).stream, spot)
                if head.startswith(_PREFIX):
                    kinds[head] = kind
            if kind == _CLOCK:
                append((int(ts), _CLOCK, None))
            elif kind == _TICKER:
                append((int(ts), _TICKER, payload))
            elif kind == _SNAPSHOT:
                append((int(ts), _SNAPSHOT, msgspec.json.decode(payload, type=_Snapshot)))
            else:
                append((int(ts), kind, decoders[kind](payload).data))
    except ValueError as e:     # msgspec's DecodeError is one; neither names the file
        raise ValueError(f"{path}: not a Binance capture ({e})") from e
    return out


def _kind(stream: str, spot: bool) -> int:
    if spot:
        return _SPOT_TRADE if stream.endswith("@trade") else _CLOCK
    if not stream:
        return _SNAPSHOT
    if stream.endswith("@bookTicker"):
        return _TICKER
    if "@depth" in stream:
        return _DEPTH
    return _TRADE if stream.endswith("@trade") else _CLOCK


class _Units(dict):
    """text -> integer units, each distinct text converted once (a capture repeats its prices)."""
    __slots__ = ("convert",)

    def __init__(self, convert):
        super().__init__()
        self.convert = convert

    def __missing__(self, text: str) -> int:
        n = self[text] = self.convert(text)
        return n


def _json(levels):
    """A level list as JSON text: encoded if a list ([[price, qty], ...]), else as it came (bytes,
    msgspec.Raw or another buffer of the text)."""
    return msgspec.json.encode(levels) if isinstance(levels, (list, tuple)) else levels


class LevelBook:
    """A depth-diff book kept in a Cython OrderBook: one order per (side, price), quantity = the
    level's, set in C from the messages' JSON text (perpcore._binance)."""

    def __init__(self, spec: InstrumentSpec, book: _book.OrderBook):
        self.spec = spec
        self.book = book
        self.last_update = None         # `u` of the last applied diff (or the snapshot's id)
        self.gaps = 0                   # diffs whose `pu` did not continue the chain
        self.ticks = Step(spec.tick_size, spec.to_ticks)
        self.lots = Step(spec.lot_size, spec.to_lots)
        self._set = LevelSetter(book, self.ticks, self.lots, _MAKER).set_levels

    def load_snapshot(self, snap: dict) -> None:
        """A REST depth snapshot ({"lastUpdateId", "bids", "asks"}): its levels set as one diff."""
        self._set(_json(snap["bids"]), _json(snap["asks"]))
        self.last_update = snap["lastUpdateId"]

    def apply(self, diff: dict) -> bool:
        """Applies a depth diff (a dict with Binance's keys) if it follows the book (Binance's
        USDⓈ-M rules); False if it is older than the book."""
        return self.update(diff["U"], diff["u"], diff["pu"], _json(diff["b"]), _json(diff["a"]))

    def update(self, first: int, last: int, prev: int, bids, asks) -> bool:
        """apply() of a diff's first and last update ids, the previous diff's last, and its
        [[price, qty], ...] lists as JSON text. Removals go first so a level moving across the
        spread never crosses (LevelSetter.set_levels)."""
        if last < self.last_update:
            return False
        if prev != self.last_update and not first <= self.last_update <= last:
            self.gaps += 1
        self._set(bids, asks)
        self.last_update = last
        return True

    def top(self) -> tuple:
        """(bid price, bid lots, ask price, ask lots) in ticks and lots; None for an empty side."""
        (bids, asks) = self.book.depth(1)
        bid = bids[0][:2] if bids else (None, None)
        ask = asks[0][:2] if asks else (None, None)
        return (*bid, *ask)


class _Venue:
    """What Pricing reads of an exchange: the config, each market's book and units per tick x lot,
    the clock and sequence number, and the components (no margin ledger here: nothing to fund)."""

    def __init__(self, config: VenueConfig, symbol: str):
        self.config = config
        self.markets = {symbol: Market(config, symbol)}
        self.clock = 0
        self.seq = 0
        self.components: dict[str, object] = {}

    def _move_clock(self, t: int) -> None:
        """Pricing moves time to each of its instants of work (as ExchangeCore._move_clock)."""
        self.clock = t


@dataclass
class Agreement:
    """The rebuilt book against Binance's own best bid and offer."""
    tickers: int = 0            # bookTicker messages after the snapshot
    compared: int = 0           # ... whose update id is that of an applied diff
    prices_agree: int = 0       # best bid and ask prices equal
    agree: int = 0              # prices and quantities equal

    @property
    def price_ratio(self) -> float:
        return self.prices_agree / self.compared if self.compared else 0.0

    @property
    def ratio(self) -> float:
        return self.agree / self.compared if self.compared else 0.0


@dataclass
class BinanceReplay:
    """Per second of the window (numpy arrays, NaN where undefined): prices in the quote currency,
    rates as fractions (0.0001 = 0.01%)."""
    symbol: str
    time_ns: np.ndarray
    index: np.ndarray
    mark: np.ndarray
    mid: np.ndarray
    last_trade: np.ndarray
    premium: np.ndarray             # the last premium index sample
    funding_rate: np.ndarray        # predicted for the next settlement
    agreement: Agreement
    average_premium: float = 0.0    # time-weighted over the window's samples, at its end
    diffs_applied: int = 0
    gaps: int = 0
    spot_trades: int = 0
    perp_trades: int = 0
    next_funding_ns: int = 0
    figures: dict[str, object] = field(default_factory=dict)


def capture_paths(data_dir: Path, symbol: str) -> tuple[Path, Path]:
    """(USDⓈ-M, spot) capture files of a symbol such as "BTCUSDT" under data/binance, named
    <symbol>_<date>.gz (the earliest date with both)."""
    data_dir = Path(data_dir)
    for usdm in sorted((data_dir / "usdm").glob(f"{symbol.lower()}_*.gz")):
        spot = data_dir / "spot" / usdm.name
        if spot.exists():
            return usdm, spot
    raise FileNotFoundError(f"no USDⓈ-M and spot captures of {symbol} under {data_dir}")


def replay(usdm_path: Path, spot_path: Path, symbol: str,
           config: VenueConfig | None = None) -> BinanceReplay:
    """Runs one symbol's captures through the book and the pricing layer (see the module doc)."""
    config = config or binance_config()
    spec = config.instruments[symbol]
    venue = _Venue(config, symbol)
    pricing = Pricing(venue)
    state = pricing.symbols[symbol]
    levels = LevelBook(spec, venue.markets[symbol].book)
    agreement = Agreement()
    tops: dict[int, tuple] = {}             # update id of an applied diff -> rebuilt top
    pending: list[_Depth] = []              # diffs received before the snapshot
    rows = []
    events: list = []
    spot_trades = perp_trades = diffs = 0
    book, ticks, lots = levels.book, _Units(levels.ticks), _Units(levels.lots)
    # a spot price between two ticks rounds half to even: the index is a reference, not a fill
    index_ticks = _Units(lambda p: int((Decimal(p) / spec.tick_size)
                                       .to_integral_value(ROUND_HALF_EVEN)))

    def record(t: int) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        mid = (bid + ask) / 2 if bid is not None and ask is not None else None
        rows.append((t, state.index, state.mark, mid, state.last_trade, state.last_premium,
                     state.predicted if state.index is not None else None))

    def apply(diff: _Depth) -> bool:
        if not levels.update(diff.U, diff.u, diff.pu, diff.b, diff.a):
            return False
        tops[diff.u] = levels.top()
        return True

    # A perpetual trade's mark is published lazily, at the trade's time when anything else is
    # about to touch the valuation: the mark reads the last trade, the clock, the index and the
    # samples (and, hyperliquid's, the book), so a trade followed by another before any of those
    # moves is overwritten unseen. Trades come in bursts: this saves most of the mark computations.
    trade = None                            # (ts, price) of the trade not yet published
    publish_by = 0                          # ... which must be before the clock reaches this
    book_moves_mark = state.spec.mark_method == "hyperliquid"

    def publish_trade() -> None:
        nonlocal trade
        now, (venue.clock, price) = venue.clock, trade
        pricing.market_moved(symbol, price, events)
        venue.clock, trade = now, None

    def clock_to(ts: int) -> None:
        """Everything due on the clock up to ts, with a row at every whole second."""
        nonlocal next_second
        if trade is not None and ts >= publish_by:
            publish_trade()
        while next_second <= ts:
            pricing.advance(next_second, events)
            venue.clock = next_second
            record(next_second)
            next_second += SECOND
        if ts >= pricing.due:           # before then the clock moves without pricing's work
            pricing.advance(ts, events)
        venue.clock = ts

    usdm = read_capture(usdm_path)
    # the bookTickers after the snapshot, compared once the book is rebuilt
    start = next((i for i, (_, kind, msg) in enumerate(usdm)
                  if kind == _SNAPSHOT and msg.lastUpdateId is not None), len(usdm))
    tickers = [msg for _, kind, msg in usdm[start:] if kind == _TICKER]
    # both captures in time order, the USDⓈ-M line first at an equal time (each file is in
    # receive order, so the stable sort is a linear merge)
    lines = usdm + read_capture(spot_path, spot=True)
    lines.sort(key=itemgetter(0))
    if not lines:
        raise ValueError(f"no messages in {usdm_path} and {spot_path}")
    venue.clock = lines[0][0]               # the window starts with its first message
    next_second = (venue.clock // SECOND + 1) * SECOND
    end = lines[-1][0]
    # A line that moves nothing but the clock (bookTickers too, once taken out above) changes
    # nothing when every sample falls on a whole second: clock_to() walks those first, and a
    # staleness expiry or settlement is processed at its own time. Skipped then, 70% of the lines.
    if not (state.spec.premium_sample_ns % SECOND or state.spec.mark_sample_ns % SECOND):
        lines = [line for line in lines if line[1] > _TICKER]
    for ts, kind, msg in lines:
        clock_to(ts)
        if kind == _DEPTH:
            if levels.last_update is None:
                pending.append(msg)
            elif apply(msg):
                diffs += 1
                if trade is not None and book_moves_mark:
                    publish_trade()
                pricing.market_moved(symbol, None, events)
        elif kind == _TRADE:
            if msg.X == "MARKET":
                perp_trades += 1
                if trade is None:   # the next row, sample, staleness expiry or settlement
                    publish_by = min(next_second, state.next_due(ts))
                trade = (ts, ticks[msg.p])
        elif kind == _SPOT_TRADE:
            spot_trades += 1
            if trade is not None:
                publish_trade()
            pricing.set_index(symbol, SOURCE, index_ticks[msg.p], events)
        elif kind == _SNAPSHOT and msg.lastUpdateId is not None:
            levels.load_snapshot(msgspec.structs.asdict(msg))
            diffs += sum(apply(diff) for diff in pending)
            pending.clear()
        events.clear()      # the series are read from the state; nothing downstream listens
    clock_to(end)
    if trade is not None:
        publish_trade()
    agreement.tickers = len(tickers)
    # their update ids in one decoder call (a line each), the prices of the comparable ones after
    update_ids = msgspec.json.Decoder(_Message[_UpdateId]).decode_lines(b"\n".join(tickers))
    ticker = msgspec.json.Decoder(_Message[_Ticker]).decode
    for payload, update_id in zip(tickers, update_ids, strict=True):
        rebuilt = tops.get(update_id.data.u)
        if rebuilt is not None:
            msg = ticker(payload).data
            top = (ticks[msg.b], lots[msg.B], ticks[msg.a], lots[msg.A])
            agreement.compared += 1
            agreement.prices_agree += (rebuilt[0], rebuilt[2]) == (top[0], top[2])
            agreement.agree += rebuilt == top

    tick = float(spec.tick_size)
    cols = list(zip(*rows))

    def prices(i):
        return np.array([np.nan if v is None else float(v) * tick for v in cols[i]])

    def rates(i):
        return np.array([np.nan if v is None else v / RATE_SCALE for v in cols[i]])

    result = BinanceReplay(
        symbol=symbol, time_ns=np.array(cols[0], dtype=np.int64), index=prices(1),
        mark=prices(2), mid=prices(3), last_trade=prices(4), premium=rates(5),
        funding_rate=rates(6), agreement=agreement, diffs_applied=diffs, gaps=levels.gaps,
        spot_trades=spot_trades, perp_trades=perp_trades, next_funding_ns=state.next_funding,
        average_premium=state.premium.value() / RATE_SCALE)
    result.figures = figures(result)
    return result


def figures(r: BinanceReplay) -> dict[str, object]:
    """The headline figures of a replay, label -> value (text, for a table or JSON)."""
    a = r.agreement
    basis = (r.mark - r.index) / r.index
    return {
        "window (s)": f"{(r.time_ns[-1] - r.time_ns[0]) / SECOND:.0f}",
        "depth diffs applied": r.diffs_applied,
        "update id gaps": r.gaps,
        "bookTicker compared": f"{a.compared} of {a.tickers}",
        "top of book agreement": f"{a.ratio:.4%}",
        "top price agreement": f"{a.price_ratio:.4%}",
        "spot trades (index)": r.spot_trades,
        "perp trades": r.perp_trades,
        "index (last)": f"{r.index[-1]:.2f}",
        "mark (last)": f"{r.mark[-1]:.2f}",
        "mark - index, mean (bp)": f"{np.nanmean(basis) * 1e4:.2f}",
        "premium index mean (%)": f"{np.nanmean(r.premium) * 100:.4f}",
        "premium index range (%)": f"{np.nanmin(r.premium) * 100:.4f} .. "
                                   f"{np.nanmax(r.premium) * 100:.4f}",
        "average premium, time-weighted (%)": f"{r.average_premium * 100:.4f}",
        "predicted funding (last, %)": f"{r.funding_rate[-1] * 100:.4f}",
    }


def plot(r: BinanceReplay, path: Path) -> Path:
    """Index, mark and mid; the premium index and the predicted funding rate, over the window."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = (r.time_ns - r.time_ns[0]) / SECOND
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    top.plot(t, r.index, label="index (spot trades)")
    top.plot(t, r.mark, label="mark")
    top.plot(t, r.mid, label="perp mid", alpha=0.6)
    top.set_ylabel("price")
    top.legend()
    top.set_title(f"{r.symbol}: perpcore valuation of the Binance capture")
    bottom.plot(t, r.premium * 100, label="premium index")
    bottom.plot(t, r.funding_rate * 100, label="predicted funding rate")
    bottom.set_ylabel("%")
    bottom.set_xlabel("seconds into the window")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
