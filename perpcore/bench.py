"""The benchmark runner behind `perpcore bench`.

Every case replays one seeded workload (perpcore.workloads) through one implementation in one of two
modes:

- closed loop: commands back to back, as fast as possible. Throughput is the median of several runs
  without per-command timing; the latency percentiles come from a separate pass that times each call
  (service time, timer overhead included and reported).
- open loop: commands offered at a fixed rate. Command i is due at start + i / rate and its latency
  is measured from that intended send time, not from when the loop got round to it, so a stall
  delays every command queued behind it and shows in the high percentiles (no coordinated omission).
  A rate the implementation cannot sustain is flagged as saturated: its latencies then grow with the
  run.

Percentiles come from an HDR histogram (3 significant digits). Given a reference book (the
pure-Python one of the tests, which bench/figures.py passes in), it runs the same workloads in the
same run and the report gives the ratios. Results are plain data (JSON) with the machine,
versions, commit and date, so runs on different commits can be compared. The issues' targets and
the README's Figures section are the development tool's, bench/figures.py.
"""
from __future__ import annotations

import datetime
import gc
import os
import platform
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

import perpcore
from perpcore import _book
from perpcore import messages as m
from perpcore import workloads as wls
from perpcore.exchange import Exchange, config_digest
from perpcore.config import default_config

SCHEMA = 1
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
# the points of the percentile plot: 0, 50, 75, 90, 95, 99, 99.5, ... up to 99.999
CURVE = (0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0)
HIGHEST_NS = 3_600_000_000_000      # an hour: anything longer is a hung run, not a latency


@dataclass(frozen=True)
class Sizes:
    """How much of each workload a run measures."""
    standard: int               # commands of the standard mix (book cases)
    exchange: int               # commands through Exchange.submit
    journal: int                # commands journaled, replayed and group-committed
    margin: int                 # commands of the two-perp mix on accounts holding positions
    margin_accounts: int        # accounts holding positions in both perps
    population: int             # accounts holding positions for mark, funding and liquidation
    mark_moves: int             # quiet mark moves timed one by one
    reference: int              # commands through the pure-Python reference book
    repeats: int                # closed-loop throughput of the book: median of this many runs
    exchange_repeats: int       # the same for the (slower) Exchange and journal cases
    open_seconds: float         # length of each open-loop run at its offered rate
    deep_resting: int           # resting orders of the deep book
    deep: int                   # mix commands on the deep book
    wide: int                   # commands of the wide-range workload
    ref_memory_orders: int      # reference orders whose memory tracemalloc measures


QUICK = Sizes(standard=100_000, exchange=30_000, journal=20_000, margin=20_000,
              margin_accounts=5_000, population=10_000, mark_moves=2_000, reference=50_000,
              repeats=3,
              exchange_repeats=1, open_seconds=0.1, deep_resting=1_000_000, deep=20_000,
              wide=30_000, ref_memory_orders=20_000)
FULL = Sizes(standard=1_000_000, exchange=300_000, journal=200_000, margin=200_000,
             margin_accounts=10_000, population=100_000, mark_moves=10_000, reference=300_000,
             repeats=5,
             exchange_repeats=3, open_seconds=1.0, deep_resting=1_000_000, deep=200_000,
             wide=200_000, ref_memory_orders=200_000)
BOOK_RATES = (50_000, 100_000, 200_000, 500_000, 1_000_000)
EXCHANGE_RATES = (50_000, 100_000, 200_000, 500_000)


# ---- timing primitives --------------------------------------------------------------------------

@contextmanager
def quiet_gc():
    """Collects, then freezes the objects that exist (the workload itself: millions of tuples), so
    the cyclic collector does not rescan them inside a timed loop. Collection stays on for new
    objects."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_closed(calls: list[tuple]) -> float:
    """Seconds to make every call back to back."""
    clock = time.perf_counter
    with quiet_gc():
        start = clock()
        for f, args in calls:
            f(*args)
        return clock() - start


def service_times(calls: list[tuple]) -> list[int]:
    """Nanoseconds each call took, back to back (closed loop: what a stall hides)."""
    clock = time.perf_counter_ns
    out = [0] * len(calls)
    with quiet_gc():
        for i, (f, args) in enumerate(calls):
            t0 = clock()
            f(*args)
            out[i] = clock() - t0
    return out


def open_loop(calls: list[tuple], rate: float, overrun: float = 2.0) -> tuple[list[int], int]:
    """Offers call i at start + i / rate (busy-waiting while early); returns each call's latency
    from its intended send time, in ns, and the elapsed ns of the run.

    A rate the handler cannot sustain only makes the queue (and every later latency) grow, so the
    run stops once it has taken `overrun` times its planned length: the latencies returned are
    those of the calls made by then."""
    clock = time.perf_counter_ns
    interval = 1e9 / rate
    out = [0] * len(calls)
    n = len(calls)
    with quiet_gc():
        start = clock() + 10_000
        deadline = start + int(overrun * n * interval)
        for i, (f, args) in enumerate(calls):
            due = start + int(i * interval)
            now = clock()
            while now < due:
                now = clock()
            if now > deadline:
                n = i
                break
            f(*args)
            out[i] = clock() - due
        return out[:n], clock() - start


def timer_overhead_ns(samples: int = 100_000) -> int:
    """Median ns that timing an empty call adds (it is inside every measured latency)."""
    calls = [(int, ())] * samples
    return int(np.median(service_times(calls)))


def latency_summary(latencies_ns) -> dict:
    """p50 ... p99.99 and max (ns) from an HDR histogram, plus the curve for the plot."""
    hist = HdrHistogram(1, HIGHEST_NS, 3)
    values, counts = np.unique(np.clip(np.asarray(latencies_ns, dtype=np.int64), 1, HIGHEST_NS),
                               return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist()):
        hist.record_value(value, count)
    out = {f"p{p:g}": hist.get_value_at_percentile(p) for p in PERCENTILES}
    out["max"] = hist.get_max_value()
    out["count"] = hist.get_total_count()
    out["curve"] = [[p, hist.get_value_at_percentile(p)] for p in CURVE]
    return out


# ---- the machine ---------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    root = Path(perpcore.__file__).resolve().parents[1]
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def machine_info() -> dict:
    try:
        import Cython
        cython = Cython.__version__
    except ImportError:
        cython = "not installed"
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "perpcore", "ext"))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "perpcore": perpcore.__version__,
        "cython": cython,
        "numpy": np.__version__,
        "commit": commit,
        "dirty": dirty,
        # other work on the machine inflates the tails: the 1-minute load average says how much
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


# ---- cases ---------------------------------------------------------------------------------------

def _case(case: str, workload: wls.Workload | str, impl: str, mode: str, commands: int,
          **fields) -> dict:
    name = workload if isinstance(workload, str) else workload.name
    return {"case": case, "workload": name, "impl": impl, "mode": mode, "commands": commands,
            **fields}


def fresh_book(cls, wl: wls.Workload):
    book = cls()
    book.process_batch(wl.setup, keep_fills=False)
    return book


def book_calls(cls, wl: wls.Workload, n: int, repeats: int, label: str = "cython") -> dict:
    """Closed loop, one Python call per command: median throughput and service-time percentiles."""
    cmds = wl.cmds[:n]
    runs = []
    for _ in range(repeats):
        book = fresh_book(cls, wl)
        runs.append(len(cmds) / run_closed(wls.call_list(book, cmds)))
    book = fresh_book(cls, wl)
    latency = latency_summary(service_times(wls.call_list(book, cmds)))
    return _case("book.call", wl, label, "closed", len(cmds), repeats=repeats,
                 throughput=statistics.median(runs), throughput_runs=runs, latency_ns=latency)


def book_batch(cls, wl: wls.Workload, n: int, repeats: int, keep_fills: bool,
               label: str = "cython") -> dict:
    """Closed loop through the batch entry point: the whole array in one call."""
    cmds = np.ascontiguousarray(wl.cmds[:n])
    runs = []
    for _ in range(repeats):
        book = fresh_book(cls, wl)
        with quiet_gc():
            start = time.perf_counter()
            book.process_batch(cmds, keep_fills=keep_fills)
            runs.append(len(cmds) / (time.perf_counter() - start))
    return _case("book.batch" if keep_fills else "book.batch(no fills)", wl, label, "closed",
                 len(cmds), repeats=repeats, throughput=statistics.median(runs),
                 throughput_runs=runs)


def book_open_loop(wl: wls.Workload, rate: int, seconds: float) -> dict:
    n = min(len(wl.cmds), max(1, int(rate * seconds)))
    calls = wls.call_list(fresh_book(_book.OrderBook, wl), wl.cmds[:n])
    share = {}
    with cpu_share(share):
        latencies, elapsed = open_loop(calls, rate)
    return _open_case("book.call", wl, n, rate, latencies, elapsed, share["cpu_share"])


@contextmanager
def cpu_share(out: dict):
    """Measures the share of the wall time this process had a CPU for (into out["cpu_share"]): on
    a shared machine, a busy-waiting open loop below 100% was descheduled, and every command due
    meanwhile waited."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    out["cpu_share"] = (time.process_time() - cpu) / (time.perf_counter() - wall)


def _open_case(case: str, wl: wls.Workload, n: int, rate: int, latencies, elapsed_ns: int,
               share: float) -> dict:
    achieved = len(latencies) / (elapsed_ns / 1e9)
    return _case(case, wl, "cython", "open", len(latencies), offered=rate, achieved=achieved,
                 saturated=achieved < 0.95 * rate or len(latencies) < n, cpu_share=share,
                 latency_ns=latency_summary(latencies))


def fresh_exchange(xw: wls.ExchangeWorkload) -> Exchange:
    """An Exchange that has applied the set-up. A layer that is not wired in yet may refuse its
    own commands as unknown (a Deposit before margin lands); anything else refused is an error."""
    ex = Exchange(default_config())
    for cmd in xw.setup:
        for event in ex.submit(cmd):
            if type(event) is m.OrderRejected and event.code != m.RejectCode.UNKNOWN_COMMAND:
                raise RuntimeError(f"benchmark set-up refused: {event}")
    return ex


def _submit_calls(ex: Exchange, cmds: list) -> list[tuple]:
    submit = ex.submit
    return [(submit, (cmd,)) for cmd in cmds]


def exchange_calls(xw: wls.ExchangeWorkload, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        ex = fresh_exchange(xw)
        runs.append(len(xw.cmds) / run_closed(_submit_calls(ex, xw.cmds)))
    latencies = service_times(_submit_calls(fresh_exchange(xw), xw.cmds))
    # an untimed pass checks the stream is what it claims: every command accepted
    submit = fresh_exchange(xw).submit
    events = [e for cmd in xw.cmds for e in submit(cmd)]
    rejected = sum(type(e) is m.OrderRejected for e in events)
    return _case("exchange.submit", xw.book, "cython", "closed", len(xw.cmds), repeats=repeats,
                 throughput=statistics.median(runs), throughput_runs=runs,
                 latency_ns=latency_summary(latencies), rejected=rejected, events=len(events))


def exchange_open_loop(xw: wls.ExchangeWorkload, rate: int, seconds: float) -> dict:
    n = min(len(xw.cmds), max(1, int(rate * seconds)))
    calls = _submit_calls(fresh_exchange(xw), xw.cmds[:n])
    share = {}
    with cpu_share(share):
        latencies, elapsed = open_loop(calls, rate)
    return _open_case("exchange.submit", xw.book, n, rate, latencies, elapsed, share["cpu_share"])


def journal_cases(xw: wls.ExchangeWorkload, repeats: int) -> list[dict]:
    """The journal layer on the standard mix: replay of a journal file into a fresh Exchange
    (read, check, decode, apply), the reading and decoding alone (the journal's own replay target),
    and what group commit costs the live path."""
    journal = wls.layer("perpcore.journal")
    with tempfile.TemporaryDirectory(prefix="perpcore-bench-") as tmp:
        path = Path(tmp) / "standard.journal"
        records = wls.write_journal(xw, path)
        replay, decode = [], []
        for _ in range(repeats):
            ex = Exchange(default_config())
            with quiet_gc():
                start = time.perf_counter()
                journal.replay(path, ex)
                replay.append(records / (time.perf_counter() - start))
            with quiet_gc():
                start = time.perf_counter()
                journal.decode_all(path)
                decode.append(records / (time.perf_counter() - start))
        plain, grouped = [], []
        for i in range(repeats):
            plain.append(len(xw.cmds) / run_closed(_submit_calls(fresh_exchange(xw), xw.cmds)))
            ex = fresh_exchange(xw)
            jx = journal.JournaledExchange(ex, journal.Journal(
                Path(tmp) / f"group{i}.journal", config_digest(ex.config), first_seq=ex.seq + 1,
                sync="group"))
            with quiet_gc():
                start = time.perf_counter()
                for cmd in xw.cmds:
                    jx.submit(cmd)
                jx.flush()                      # everything durable: the last group's fsync counts
                grouped.append(len(xw.cmds) / (time.perf_counter() - start))
            jx.close()
    cost = 1 - statistics.median(grouped) / statistics.median(plain)
    return [
        _case("journal.replay(apply)", xw.book, "cython", "closed", records, repeats=repeats,
              throughput=statistics.median(replay), throughput_runs=replay),
        _case("journal.decode", xw.book, "cython", "closed", records, repeats=repeats,
              throughput=statistics.median(decode), throughput_runs=decode),
        _case("exchange.submit+journal(group)", xw.book, "cython", "closed", len(xw.cmds),
              repeats=repeats, throughput=statistics.median(grouped), throughput_runs=grouped,
              journal_cost=cost, without_journal=statistics.median(plain)),
    ]


def margin_cases(sizes: Sizes, seed: int) -> list[dict]:
    """The margin layer: Exchange.submit on the two-perp mix of accounts holding positions in
    both perps (every order through the pre-trade margin check, every fill settled), and
    ex.account() on those accounts."""
    if not hasattr(Exchange, "account") or not hasattr(m, "Deposit"):
        raise wls.LayerMissing("the margin layer (Exchange.account, Deposit) is not in this build")
    xw = wls.cross_margin(sizes.margin, seed, accounts=sizes.margin_accounts,
                          prefill=min(20_000, sizes.margin_accounts))
    submit = exchange_calls(xw, sizes.exchange_repeats)
    ex = fresh_exchange(xw)
    for cmd in xw.cmds:
        ex.submit(cmd)
    accounts = np.random.default_rng(seed).integers(1, sizes.margin_accounts + 1,
                                                    min(10_000, 4 * sizes.margin_accounts))
    calls = [(ex.account, (a,)) for a in accounts.tolist()]
    latency = latency_summary(service_times(calls))
    rate = len(calls) / run_closed(calls)
    account = _case("exchange.account", xw.book, "cython", "closed", len(calls), repeats=1,
                    throughput=rate, throughput_runs=[rate], latency_ns=latency)
    return [submit, account]


def population_cases(sizes: Sizes, seed: int) -> list[dict]:
    """The valuation and liquidation layers on a population of accounts holding positions: a mark
    move that liquidates nobody, a funding settlement over every position, and a fall that
    liquidates the hot 1% in one cascade. Each is the whole submit of the command that causes it.
    A restored state is warmed with one quiet move first, so the figures are of the steady state,
    not of re-indexing every account the first time the mark moves."""
    if not hasattr(m, "LiquidationStarted") or not hasattr(m, "SetLeverage"):
        raise wls.LayerMissing("the margin and liquidation layers are not in this build")
    n, hot = sizes.population, max(10, sizes.population // 100)
    config = wls.population_config()
    ex = Exchange(config)
    for cmd in wls.population(n, hot, seed):
        ex.submit(cmd)
    snapshot = ex.snapshot()
    price = wls.START_MIDS[wls.SYMBOL]

    def move(delta: int) -> m.SetIndexPrice:
        return m.SetIndexPrice(source="bench", symbol=wls.SYMBOL, price=price + delta)

    def warm() -> Exchange:
        restored = Exchange.restore(config, snapshot)
        restored.submit(move(-50))
        return restored

    ex.submit(move(-50))
    calls = [(ex.submit, (move(50 if i % 2 else -50),)) for i in range(sizes.mark_moves)]
    quiet = latency_summary(service_times(calls))
    funding, longest, cascade, liquidated = [], [], [], set()
    clock = time.perf_counter
    for _ in range(sizes.exchange_repeats):
        restored = warm()
        due = m.AdvanceClock(ts=restored.components["pricing"].next_funding_time(wls.SYMBOL))
        # the whole settlement: the commands after the funding time until it is complete
        # (perpcore.funding), and the longest of them
        events, new, slowest = [], [], 0.0
        with quiet_gc():
            start = clock()
            while not any(type(e) is m.FundingSettled for e in new):
                at = clock()
                new = restored.submit(due)
                slowest = max(slowest, clock() - at)
                events += new
            funding.append(clock() - start)
        longest.append(slowest)
        paid = sum(type(e) is m.FundingPaid for e in events)
        restored = warm()
        with quiet_gc():
            start = clock()
            events = restored.submit(move(-price * wls.CASCADE_FALL // 1000))
            cascade.append(clock() - start)
        liquidated.add(sum(type(e) is m.LiquidationStarted for e in events))
    per = {"accounts": n, "positions": n}
    return [
        _case("mark move, nobody liquidated", "population", "cython", "closed", len(calls),
              repeats=1, latency_ns=quiet, **per),
        _case("funding settlement", "population", "cython", "closed", 1,
              repeats=len(funding), seconds=statistics.median(funding), seconds_runs=funding,
              payments=paid, longest_command=statistics.median(longest), **per),
        _case("liquidation cascade", "population", "cython", "closed", 1,
              repeats=len(cascade), seconds=statistics.median(cascade), seconds_runs=cascade,
              liquidated=sorted(liquidated), **per),
    ]


def _layer(report: dict, name: str, make) -> None:
    """Adds a layer's cases, or records why they were skipped (the layer is not in this build)."""
    try:
        report["cases"].extend(make())
    except wls.LayerMissing as e:
        report["skipped"].append({"case": name, "reason": str(e)})


def book_memory(wl: wls.Workload) -> dict:
    """C allocations per resting order of a book holding the workload's prefill."""
    book = fresh_book(_book.OrderBook, wl)
    total = book.memory_bytes()
    return {"resting": len(book), "bytes": total, "bytes_per_order": total / len(book)}


def reference_memory(reference, wl: wls.Workload, orders: int) -> dict:
    """Python heap per resting order of the reference book (tracemalloc), on a prefix of the same
    prefill: the baseline for the Cython figure."""
    setup = wl.setup[:orders]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        book = reference()
        book.process_batch(setup, keep_fills=False)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return {"resting": len(book), "bytes": used, "bytes_per_order": used / len(book)}


# ---- the run -------------------------------------------------------------------------------------

def _with_ratio(case: dict, reference: dict | None) -> dict:
    if reference:
        case["vs_reference"] = case["throughput"] / reference["throughput"]
    return case


def run(quick: bool = False, seed: int = 1, sizes: Sizes | None = None,
        book_rates=None, exchange_rates=None, progress=None, reference=None) -> dict:
    """Runs every case and returns the report (plain data, JSON-ready). `reference`, a book class
    with OrderBook's API, adds its cases and the Cython book's ratios to it."""
    started = time.perf_counter()
    sizes = sizes or (QUICK if quick else FULL)
    book_rates = BOOK_RATES if book_rates is None else book_rates
    exchange_rates = EXCHANGE_RATES if exchange_rates is None else exchange_rates
    step = progress or (lambda text: None)
    report = {"schema": SCHEMA, "quick": quick, "seed": seed, "sizes": asdict(sizes),
              "rates": {"book": list(book_rates), "exchange": list(exchange_rates)},
              "machine": machine_info(), "timer_overhead_ns": timer_overhead_ns(),
              "workloads": {}, "cases": [], "memory": {}, "skipped": []}
    cases = report["cases"]

    step("standard mix: generating")
    n_std = max(sizes.standard, sizes.reference if reference else 0,
                int(max(book_rates, default=0) * sizes.open_seconds))
    std = wls.standard(n_std, seed)
    report["workloads"]["standard"] = std.describe()
    step("standard mix: one call per command")
    ref_call = reference and book_calls(reference, std, sizes.reference, 1, label="reference")
    cases.append(_with_ratio(book_calls(_book.OrderBook, std, sizes.standard, sizes.repeats),
                             ref_call))
    cases += [ref_call] if ref_call else []
    step("standard mix: batch entry point")
    ref_batch = reference and book_batch(reference, std, sizes.reference, 1, True,
                                         label="reference")
    for keep in (True, False):
        cases.append(_with_ratio(book_batch(_book.OrderBook, std, sizes.standard, sizes.repeats,
                                            keep), ref_batch))
    cases += [ref_batch] if ref_batch else []
    for rate in book_rates:
        step(f"standard mix: open loop at {rate:,}/s")
        cases.append(book_open_loop(std, rate, sizes.open_seconds))

    step("standard mix: Exchange.submit")
    n_ex = max(sizes.exchange, int(max(exchange_rates, default=0) * sizes.open_seconds))
    xw = wls.exchange_workload(wls.standard(n_ex, seed))
    cases.append(exchange_calls(xw.head(sizes.exchange), sizes.exchange_repeats))
    for rate in exchange_rates:
        step(f"Exchange.submit: open loop at {rate:,}/s")
        cases.append(exchange_open_loop(xw, rate, sizes.open_seconds))
    step("journal: replay and group commit")
    journal_workload = xw.head(sizes.journal)
    del xw
    _layer(report, "journal", lambda: journal_cases(journal_workload, sizes.exchange_repeats))

    step("cross margin: positions in both perps")
    _layer(report, "margin", lambda: margin_cases(sizes, seed))

    step(f"population: {sizes.population:,} accounts holding positions")
    _layer(report, "population", lambda: population_cases(sizes, seed))

    step(f"deep book: {sizes.deep_resting:,} resting orders")
    deep = wls.deep_book(sizes.deep, seed, resting=sizes.deep_resting)
    report["workloads"]["deep_book"] = deep.describe()
    report["memory"]["cython"] = book_memory(deep)
    if reference is not None:
        step("deep book: reference memory")
        report["memory"]["reference"] = reference_memory(reference, deep,
                                                         sizes.ref_memory_orders)
    step("deep book: mix")
    cases.append(book_calls(_book.OrderBook, deep, sizes.deep, 1))
    cases.append(book_batch(_book.OrderBook, deep, sizes.deep, 1, True))
    del deep

    step("wide price range")
    wide = wls.wide_range(sizes.wide, seed)
    report["workloads"]["wide_range"] = {**wide.describe(),
                                         "levels_after_prefill": _levels_after(wide)}
    ref_wide = reference and book_calls(reference, wide, sizes.wide, 1, label="reference")
    cases.append(_with_ratio(book_calls(_book.OrderBook, wide, sizes.wide, sizes.repeats),
                             ref_wide))
    cases += [ref_wide] if ref_wide else []
    cases.append(book_batch(_book.OrderBook, wide, sizes.wide, sizes.repeats, True))
    report["elapsed_s"] = time.perf_counter() - started
    return report


def _levels_after(wl: wls.Workload) -> int:
    book = fresh_book(_book.OrderBook, wl)
    return book.level_count(_book.BUY) + book.level_count(_book.SELL)


def find(report: dict, case: str, workload: str = "standard", impl: str = "cython",
         mode: str = "closed") -> dict | None:
    for c in report["cases"]:
        if (c["case"], c["workload"], c["impl"], c["mode"]) == (case, workload, impl, mode):
            return c
    return None


# ---- output --------------------------------------------------------------------------------------

def fmt_ns(ns: float) -> str:
    """A latency in the unit that reads best: ns, µs, ms or s."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.2f} µs" if ns < 10_000 else f"{ns / 1e3:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def _latency_cells(case: dict) -> list[str]:
    lat = case.get("latency_ns")
    if not lat:
        return ["—"] * (len(PERCENTILES) + 1)
    return [fmt_ns(lat[f"p{p:g}"]) for p in PERCENTILES] + [fmt_ns(lat["max"])]


def _rate_cell(case: dict) -> str:
    return f"{case['throughput']:,.0f}" if "throughput" in case else ""


def _outcome(case: dict) -> str:
    if "payments" in case:
        return f"{case['payments']:,} payments"
    if "liquidated" in case:
        return "liquidated " + " / ".join(f"{n:,}" for n in case["liquidated"])
    return ""


def machine_line(report: dict) -> str:
    mi = report["machine"]
    return (f"{mi['date']} · {mi['cpu']} ({mi['cores']} cores) · {mi['python']} · "
            f"perpcore {mi['perpcore']} @ {mi['commit']}{' (modified)' if mi['dirty'] else ''} · "
            f"Cython {mi['cython']} · numpy {mi['numpy']} · load {mi.get('load_average')}")


def render(report: dict, console) -> None:
    """The report as rich tables on a console."""
    from rich.table import Table

    console.print(f"[bold]perpcore bench[/bold]{' --quick' if report['quick'] else ''} · seed "
                  f"{report['seed']} · {machine_line(report)}")
    heads = [f"p{p:g}" for p in PERCENTILES] + ["max"]

    closed = Table(title="Closed loop: throughput (median of runs) and service time per command")
    for col in ("case", "workload", "impl", "commands", "commands/s", "× reference", *heads):
        closed.add_column(col, justify="left" if col in ("case", "workload", "impl") else "right")
    for c in report["cases"]:
        if c["mode"] == "closed" and "seconds" not in c:
            ratio = c.get("vs_reference")
            closed.add_row(c["case"], c["workload"], c["impl"], f"{c['commands']:,}",
                           _rate_cell(c), f"{ratio:.1f}×" if ratio else "", *_latency_cells(c))
    console.print(closed)

    single = [c for c in report["cases"] if "seconds" in c]
    if single:
        once = Table(title="One command on a population of accounts holding positions")
        for col in ("case", "accounts", "median", "runs", "outcome"):
            once.add_column(col, justify="left" if col in ("case", "outcome") else "right")
        for c in single:
            once.add_row(c["case"], f"{c['accounts']:,}", fmt_ns(c["seconds"] * 1e9),
                         ", ".join(fmt_ns(t * 1e9) for t in c["seconds_runs"]), _outcome(c))
        console.print(once)

    opened = Table(title="Open loop: latency from each command's intended send time")
    for col in ("case", "offered/s", "achieved/s", "commands", *heads, "CPU", "note"):
        opened.add_column(col, justify="left" if col in ("case", "note") else "right")
    for c in report["cases"]:
        if c["mode"] == "open":
            opened.add_row(c["case"], f"{c['offered']:,}", f"{c['achieved']:,.0f}",
                           f"{c['commands']:,}", *_latency_cells(c), f"{c['cpu_share']:.0%}",
                           "[red]saturated[/red]" if c["saturated"] else "")
    console.print(opened)

    memory = Table(title="Memory per resting order (deep book)")
    for col in ("impl", "resting orders", "bytes", "bytes per order"):
        memory.add_column(col, justify="left" if col == "impl" else "right")
    for impl, mem in report["memory"].items():
        memory.add_row(impl, f"{mem['resting']:,}", f"{mem['bytes']:,}",
                       f"{mem['bytes_per_order']:.1f}")
    console.print(memory)

    for skipped in report["skipped"]:
        console.print(f"skipped {skipped['case']}: {skipped['reason']}")
    std = report["workloads"]["standard"]
    console.print(f"standard mix: {std['counts']} of {std['commands']:,} commands after "
                  f"{std['prefill']:,} resting, {std['accounts']:,} accounts; timer overhead "
                  f"{report['timer_overhead_ns']} ns is inside every service time")


def plot(report: dict, path: Path) -> Path:
    """A PNG percentile plot (latency against percentile, HDR style) of every latency curve."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("book.call", "book, one call per command (standard mix)"),
              ("exchange.submit", "Exchange.submit (standard mix)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 5), sharey=True)
    ticks = [0, 90, 99, 99.9, 99.99, 99.999]
    for ax, (case, title) in zip(axes, panels):
        for c in report["cases"]:
            if c["case"] != case or c["workload"] != "standard" or "latency_ns" not in c:
                continue
            points = [(p, v) for p, v in c["latency_ns"]["curve"] if p < 100]
            xs = [-np.log10(1 - p / 100) for p, _ in points]
            ys = [v / 1e3 for _, v in points]
            if c["mode"] == "open":
                label = f"open loop {c['offered']:,}/s" + (" (saturated)" if c["saturated"] else "")
                ax.plot(xs, ys, marker=".", label=label)
            else:
                style = "k--" if c["impl"] == "cython" else "k:"
                ax.plot(xs, ys, style, marker=".", label=f"closed loop ({c['impl']}, service time)")
        ax.set_xticks([-np.log10(1 - p / 100) for p in ticks], [f"{p:g}" for p in ticks])
        ax.set_yscale("log")
        ax.set_xlabel("percentile")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("latency (µs)")
    fig.suptitle(f"perpcore bench · {machine_line(report)}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def result_stem(report: dict) -> str:
    """<date>-<commit>[-dirty][-quick]: results of different commits sort by date, and a quick run
    never overwrites the full run of the same commit."""
    mi = report["machine"]
    return (f"{mi['date'][:10]}-{mi['commit']}{'-dirty' if mi['dirty'] else ''}"
            f"{'-quick' if report['quick'] else ''}")
