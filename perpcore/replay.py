"""`perpcore replay`: a perpcore journal, LOBSTER order flow, or Binance USDⓈ-M captures through
the engine, with a progress bar, a summary table (or JSON) and an optional event file.

- journal: a store directory (snapshots + journal segments) or one journal file, replayed from
  the earliest point it can be (an empty exchange, or the oldest snapshot the segments continue
  from) so that every event is reproduced; `verify` checks the replayed state hash at every
  snapshot on the way, against the store's own recovery (newest snapshot + tail) at the end, and
  against an expected hash if one is given.
- lobster: message files (perpcore.lobster); the reproduction figure per file.
- binance: USDⓈ-M captures with spot as the index source (perpcore.binance, which rebuilds the
  book and runs the pricing layer); agreement with bookTicker per symbol, and a PNG per symbol
  (mid, mark, index; premium index and predicted funding).

LOBSTER files and Binance symbols are independent inputs (each its own book): each is one task
(lobster_file, binance_symbol) that a pool (perpcore.fanout) runs here in order or fans out over
a Dask cluster, the results merged in input order. A journal is one ordered log: never split.

The event file is JSON lines, one event per line as msgspec encodes it (an array, the event's
type first), decodable with msgspec.json.Decoder(perpcore.messages.Events).
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import msgspec

from perpcore import fanout
from perpcore import journal as jr
from perpcore import messages as m
from perpcore import snapshot as sn
from perpcore.config import VenueConfig, default_config
from perpcore.exchange import Exchange, config_digest

Progress = Callable[[int, int], None]       # (done, total)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Summary:
    kind: str
    source: str
    messages: int = 0
    trades: int = 0
    elapsed_s: float = 0.0
    state_hash: str = ""        # several inputs: fanout.combined_hash of theirs, in input order
    figures: dict[str, object] = field(default_factory=dict)   # label -> value, in table order
    checks: list[Check] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)            # per input file, where several
    ran_on: str = "sequential (this process)"
    wall_s: float = 0.0         # the whole run, reading included; elapsed_s sums the inputs'

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def throughput(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s else 0.0

    def as_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "messages": self.messages,
                "trades": self.trades, "elapsed_s": self.elapsed_s,
                "messages_per_s": self.throughput, "state_hash": self.state_hash,
                "figures": self.figures, "files": self.files,
                "checks": [vars(c) for c in self.checks], "ok": self.ok,
                "ran_on": self.ran_on, "wall_s": self.wall_s}


_encode_json = msgspec.json.Encoder().encode


def json_lines(events) -> bytes:
    """Events as the event file holds them: one JSON array a line."""
    return b"".join(_encode_json(e) + b"\n" for e in events)


class EventWriter:
    """Events to a JSON-lines file (or nowhere, for path None)."""

    def __init__(self, path: str | Path | None):
        self._file = open(path, "wb") if path else None

    def write(self, events) -> None:
        if self._file is not None and events:
            self._file.write(json_lines(events))

    def write_lines(self, lines: bytes) -> None:
        if self._file is not None:
            self._file.write(lines)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- journal -----------------------------------------------------------------------------------

def _journal_start(snapshots, first_seq: int, config: VenueConfig) -> tuple[Exchange, str]:
    """The earliest exchange the journal continues: empty, or the oldest snapshot that loads and
    covers the commands before the first segment."""
    if first_seq == 1:
        return Exchange(config), "an empty exchange"
    for seq, path in snapshots:
        if seq >= first_seq - 1:
            try:
                return sn.load_snapshot(path, config), path.name
            except sn.SnapshotError:
                continue
    raise jr.JournalError(f"the journal starts at command {first_seq} and no snapshot covers "
                          f"the commands before it")


def replay_journal(path: str | Path, config: VenueConfig | None = None, verify: bool = False,
                   expect_hash: str | None = None, events_path: str | Path | None = None,
                   progress: Progress | None = None) -> Summary:
    config = config or default_config()
    path = Path(path)
    snapshots = sn.list_snapshots(path) if path.is_dir() else []
    digest = config_digest(config)
    # every segment is checked first (headers, chained records, each continuing the one before,
    # the manifest's end): the progress bar needs the total, and damage anywhere but a torn tail
    # at the very end is an error before anything is replayed
    segments = sn.check_segments(path, digest) if path.is_dir() else [jr.Segment.open(path)]
    if not segments:
        raise jr.JournalError(f"{path}: no journal segments")
    if segments[0].header.digest != digest:
        raise jr.JournalError(f"{path}: written under a different venue config")
    loaded = [(seg.header.first_seq, seg.commands(), seg.report) for seg in segments]
    ex, started_from = _journal_start(snapshots, loaded[0][0], config)
    summary = Summary("journal", str(path))
    total = sum(len(cmds) for _, cmds, _ in loaded)
    checkpoints = {seq: p for seq, p in snapshots if seq > ex.seq}
    types: Counter[str] = Counter()
    done = replayed = 0
    with EventWriter(events_path) as writer:
        started = time.perf_counter()
        for first_seq, cmds, _ in loaded:
            for seq, cmd in enumerate(cmds, start=first_seq):
                done += 1
                if seq <= ex.seq:
                    continue
                if seq != ex.seq + 1:
                    raise jr.JournalError(f"command {ex.seq + 1} is missing from the journal")
                events = ex.submit(cmd, seq)
                replayed += 1
                writer.write(events)
                for event in events:
                    types[type(event).__name__] += 1
                if verify and seq in checkpoints:
                    try:
                        info, _ = sn.read_snapshot(checkpoints[seq])
                        ok, detail = (ex.state_hash() == info.state_hash,
                                      f"replayed state at {seq} vs {checkpoints[seq].name}")
                    except sn.SnapshotError as e:   # a damaged snapshot is a failed check
                        ok, detail = False, f"the snapshot cannot be read: {e}"
                    summary.checks.append(Check(f"snapshot {seq}", ok, detail))
                if progress is not None and done % 4096 == 0:
                    progress(done, total)
        summary.elapsed_s = time.perf_counter() - started
    if progress is not None:
        progress(total, total)
    summary.messages = replayed
    summary.trades = types["OrderFilled"]
    summary.state_hash = ex.state_hash()
    tail = loaded[-1][2]
    summary.figures = {
        "started from": started_from,
        "commands replayed": replayed,
        "last sequence number": ex.seq,
        "events": sum(types.values()),
        "rejections": types["OrderRejected"],
        "torn tail": (f"{tail.dropped_bytes} bytes after command {tail.last_seq} "
                      f"({tail.reason}), not replayed") if not tail.clean else "none",
        "exchange clock (ns)": ex.clock,
        "events by type": dict(types.most_common()),
    }
    if verify and path.is_dir():
        try:
            recovered, _ = sn.recover(path, config)
            ok, detail = recovered.state_hash() == summary.state_hash, ""
        except jr.JournalError as e:         # e.g. a snapshot that the journal does not continue
            ok, detail = False, f": {e}"
        summary.checks.append(Check("recovery", ok, "newest snapshot + journal tail vs the full "
                                                    "replay" + detail))
    if expect_hash:
        summary.checks.append(Check("expected hash", expect_hash == summary.state_hash,
                                    f"expected {expect_hash}"))
    return summary


# ---- LOBSTER -----------------------------------------------------------------------------------

def lobster_inputs(paths) -> list[Path]:
    """Message files named directly, or found in the directories named."""
    out = []
    for p in map(Path, paths):
        out += sorted(p.glob("*_message_*.csv")) if p.is_dir() else [p]
    return out


class Replayed(msgspec.Struct, frozen=True):
    """One independent input's replay, as its task returns it: what the replay found (no wall
    clock in it), the input's state hash and, when asked for, its events as JSON lines."""
    source: str
    state_hash: str
    figures: dict
    events: bytes = b""
    detail: object = None           # binance: the replay's series, for its plot


def lobster_file(path: str, use_orderbook: bool = True, events: bool = False) -> Replayed:
    """The task of one LOBSTER message file: its own book from empty; the state hash is the
    final book's."""
    # market data replays read their files with numpy (the cli extra); a journal replay does not
    from perpcore import lobster as lb

    symbol = Path(path).name.split("_", 1)[0]
    trades: list[m.OrderFilled] = []

    def on_trade(ts, index, taker_side, fill):
        # one event per engine trade; its seq is the message's place in the file
        trades.append(m.OrderFilled(index + 1, ts, symbol, fill[5], fill[6], m.Side(taker_side),
                                    fill[1], fill[2], fill[3], fill[4], fill[7], fill[8]))

    report = lb.replay_file(path, on_trade if events else None, compare_orderbook=use_orderbook)
    figures = report.as_dict()
    del figures["elapsed_s"], figures["messages_per_s"]     # timed by the pool, beside it
    return Replayed(str(path), report.book_hash, figures, json_lines(trades))


def _merged_hash(done: list[fanout.Done]) -> str:
    hashes = [d.result.state_hash for d in done]
    return hashes[0] if len(hashes) == 1 else fanout.combined_hash(hashes)


def replay_lobster(paths, events_path: str | Path | None = None, progress: Progress | None = None,
                   use_orderbook: bool = True, pool=None) -> Summary:
    """Every message file through its own book (a task each, on `pool`: fanout.Sequential by
    default), merged in input order."""
    files = lobster_inputs(paths)
    if not files:
        raise FileNotFoundError(f"no LOBSTER message files (*_message_*.csv) in "
                                f"{', '.join(map(str, paths))}")
    pool = pool or fanout.Sequential()
    summary = Summary("lobster", ", ".join(str(f) for f in files), ran_on=pool.description)
    started = time.perf_counter()
    done = pool.map(lobster_file, [(str(f),) for f in files], progress=progress,
                    use_orderbook=use_orderbook, events=events_path is not None)
    summary.wall_s = time.perf_counter() - started
    with EventWriter(events_path) as writer:
        for d in done:
            writer.write_lines(d.result.events)
            entry = {**d.result.figures, "elapsed_s": d.elapsed_s,
                     "messages_per_s": d.result.figures["messages"] / d.elapsed_s
                     if d.elapsed_s else 0.0}
            summary.files.append(entry)
            summary.messages += entry["messages"]
            summary.trades += entry["engine_trades"]
            summary.elapsed_s += d.elapsed_s
    visible = sum(r["visible_executions"] for r in summary.files)
    reproduced = sum(r["reproduced"] for r in summary.files)
    summary.state_hash = _merged_hash(done)
    summary.figures = {
        "visible executions": visible,
        "reproduced (same order, same size)": f"{reproduced:,} ({reproduced / visible:.2%})"
        if visible else "-",
        "hidden executions": sum(r["hidden_executions"] for r in summary.files),
        "engine trades": sum(r["engine_trades"] for r in summary.files),
    }
    return summary


# ---- Binance -----------------------------------------------------------------------------------

def binance_symbols(data_dir: str | Path) -> list[str]:
    """The symbols with a USDⓈ-M capture (and its spot capture) under data/binance."""
    data_dir = Path(data_dir)
    return sorted(p.name.split("_", 1)[0].upper() for p in (data_dir / "usdm").glob("*.gz")
                  if (data_dir / "spot" / p.name).exists())


def _series_hash(r) -> str:
    """The digest of a Binance replay: its per-second series and its counts (the capture drives
    a book and the pricing layer, not an Exchange, so this stands for its state hash)."""
    h = hashlib.blake2b(digest_size=32)
    for series in (r.time_ns, r.index, r.mark, r.mid, r.last_trade, r.premium, r.funding_rate):
        h.update(series.tobytes())
    a = r.agreement
    h.update(msgspec.msgpack.encode([a.tickers, a.compared, a.prices_agree, a.agree,
                                     r.diffs_applied, r.gaps, r.spot_trades, r.perp_trades,
                                     r.next_funding_ns]))
    return h.hexdigest()


def binance_symbol(data_dir: str, symbol: str) -> Replayed:
    """The task of one symbol's USDⓈ-M and spot captures: its own book and pricing layer."""
    from perpcore import binance as bn

    usdm, spot = bn.capture_paths(Path(data_dir), symbol)
    r = bn.replay(usdm, spot, symbol)
    used = r.diffs_applied + r.agreement.tickers + r.spot_trades + r.perp_trades
    figures = {"symbol": symbol, "messages used": used, "agreement": r.agreement.ratio,
               "price_agreement": r.agreement.price_ratio, **r.figures}
    return Replayed(str(usdm), _series_hash(r), figures, detail=r)


def replay_binance(data_dir: str | Path, symbols=None, plots_dir: str | Path | None = None,
                   progress: Progress | None = None, pool=None) -> Summary:
    """Each symbol's USDⓈ-M capture through the rebuilt book and the pricing layer, with the spot
    capture as the index source (perpcore.binance; a task each, on `pool`); a PNG per symbol in
    plots_dir."""
    from perpcore import binance as bn

    data_dir = Path(data_dir)
    symbols = list(symbols or binance_symbols(data_dir))
    if not symbols:
        raise FileNotFoundError(f"no Binance captures under {data_dir} (expected "
                                f"usdm/<symbol>_<date>.gz, each with the same file in spot/)")
    pool = pool or fanout.Sequential()
    summary = Summary("binance", str(data_dir), ran_on=pool.description)
    if plots_dir is not None:
        Path(plots_dir).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done = pool.map(binance_symbol, [(str(data_dir), symbol) for symbol in symbols],
                    progress=progress)
    summary.wall_s = time.perf_counter() - started
    for d in done:
        figures = dict(d.result.figures)
        entry = {"symbol": figures.pop("symbol"), "messages used": figures.pop("messages used"),
                 "elapsed_s": d.elapsed_s, **figures, "state_hash": d.result.state_hash}
        if plots_dir is not None:
            # named after the capture: another day's capture of the symbol keeps its own plot
            stem = Path(d.result.source).name.split(".")[0]
            entry["plot"] = str(bn.plot(d.result.detail, Path(plots_dir) / f"{stem}.png"))
        summary.files.append(entry)
        summary.messages += entry["messages used"]
        summary.trades += d.result.detail.perp_trades
        summary.elapsed_s += d.elapsed_s
    summary.state_hash = _merged_hash(done)
    compared = sum(int(f["bookTicker compared"].split()[0]) for f in summary.files)
    summary.figures = {
        "bookTicker messages compared": compared,
        "top of book agreement (prices and sizes)": ", ".join(
            f"{f['symbol']} {f['agreement']:.2%}" for f in summary.files),
    }
    if plots_dir is not None:
        summary.figures["plots"] = ", ".join(f["plot"] for f in summary.files)
    return summary


# ---- rendering ---------------------------------------------------------------------------------

def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)


LOBSTER_COLUMNS = (
    ("level", "levels in the file"), ("messages", "messages"),
    ("visible_executions", "visible executions"),
    ("reproduction", "reproduced: same order, same size"),
    ("reproduction_seen", "  of orders the file showed added"),
    ("seeded", "orders seeded at the front of their level"),
    ("stale_removed", "stale orders removed"), ("repaired", "book repaired after a miss"),
    ("hidden_executions", "hidden executions"), ("engine_trades", "engine trades"),
    ("top_price_agreement", "top of book agrees with the file (price)"),
    ("messages_per_s", "messages/s"), ("elapsed_s", "seconds"), ("book_hash", "final book hash"),
)


_HASH_LABELS = {"journal": "final state hash", "lobster": "final state hash (book)",
                "binance": "replay digest (series and counts)"}


def render(summary: Summary, console) -> None:
    """The summary as rich tables on `console`."""
    from rich.table import Table
    if summary.files and summary.kind == "lobster":
        table = Table(title="LOBSTER replay, per file")
        table.add_column("")
        for f in summary.files:
            table.add_column(Path(f["path"]).name.replace("_34200000_57600000", ""),
                             justify="right")
        for key, label in LOBSTER_COLUMNS:
            cells = []
            for f in summary.files:
                v = f[key]
                if key == "top_price_agreement" and not f["top_compared"]:
                    cells.append("-")
                elif key in ("reproduction", "reproduction_seen", "top_price_agreement"):
                    cells.append(f"{v:.2%}")
                elif key == "book_hash":
                    cells.append(v[:16] + "…")
                else:
                    cells.append(_fmt(v))
            table.add_row(label, *cells)
        console.print(table)
    if summary.files and summary.kind == "binance":
        table = Table(title="Binance USDⓈ-M replay, per symbol")
        table.add_column("")
        for f in summary.files:
            table.add_column(f["symbol"], justify="right")
        for label in summary.files[0]:
            if label not in ("symbol", "agreement", "price_agreement", "plot"):
                table.add_row(label, *(_fmt(f[label]) for f in summary.files))
        console.print(table)
    table = Table(title=f"perpcore replay {summary.kind}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_row("input", summary.source)
    table.add_row("messages", _fmt(summary.messages))
    table.add_row("trades", _fmt(summary.trades))
    table.add_row("throughput", f"{summary.throughput:,.0f} messages/s")
    table.add_row("elapsed", f"{summary.elapsed_s:.3f} s")
    if summary.kind != "journal":
        table.add_row("ran on", summary.ran_on)
        table.add_row("wall time", f"{summary.wall_s:.3f} s")
    for label, value in summary.figures.items():
        table.add_row(label, _fmt(value))
    if summary.state_hash:
        table.add_row(_HASH_LABELS[summary.kind] if len(summary.files) < 2 else
                      f"state hash (of the {len(summary.files)} inputs' hashes, in order)",
                      summary.state_hash)
    for check in summary.checks:
        table.add_row(f"verify: {check.name}", ("[green]agrees[/]" if check.ok else
                                                "[red]DIFFERS[/]") + f" ({check.detail})")
    console.print(table)
