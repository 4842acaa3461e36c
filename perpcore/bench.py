"""The benchmark runner behind `perpcore bench`.

Every case replays one seeded workload (perpcore.workloads) through one implementation in one of two
modes:

- closed loop: commands back to back, as fast as possible. Throughput is the median of several runs
  without per-command timing; the latency percentiles come from a separate pass that times each call
  (service time, timer overhead included and reported).
- open loop: commands offered at a fixed rate. Command i is due at start + i / rate and its latency is
  measured from that intended send time, not from when the loop got round to it, so a stall delays
  every command queued behind it and shows in the high percentiles (no coordinated omission). A rate
  the implementation cannot sustain is flagged as saturated: its latencies then grow with the run.

Percentiles come from an HDR histogram (3 significant digits). The pure-Python ReferenceBook runs the
same workloads in the same run, and the report gives the ratios. Results are plain data (JSON) with the
machine, versions, commit and date, so runs on different commits can be compared.
"""
from __future__ import annotations

import datetime
import gc
import os
import platform
import statistics
import subprocess
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
from perpcore.exchange import Exchange
from perpcore.config import default_config
from perpcore.refbook import ReferenceBook

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
    reference: int              # commands through the pure-Python reference book
    repeats: int                # closed-loop throughput: median of this many runs
    open_seconds: float         # length of each open-loop run at its offered rate
    deep_resting: int           # resting orders of the deep book
    deep: int                   # mix commands on the deep book
    wide: int                   # commands of the wide-range workload
    ref_memory_orders: int      # reference orders whose memory tracemalloc measures


QUICK = Sizes(standard=200_000, exchange=100_000, reference=100_000, repeats=3, open_seconds=0.2,
              deep_resting=1_000_000, deep=50_000, wide=50_000, ref_memory_orders=50_000)
FULL = Sizes(standard=1_000_000, exchange=300_000, reference=300_000, repeats=5, open_seconds=1.0,
             deep_resting=1_000_000, deep=200_000, wide=200_000, ref_memory_orders=200_000)
BOOK_RATES = (50_000, 100_000, 200_000, 500_000, 1_000_000)
EXCHANGE_RATES = (50_000, 100_000, 200_000, 500_000)


# ---- timing primitives --------------------------------------------------------------------------

@contextmanager
def quiet_gc():
    """Collects, then freezes the objects that exist (the workload itself: millions of tuples), so the
    cyclic collector does not rescan them inside a timed loop. Collection stays on for new objects."""
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


def open_loop(calls: list[tuple], rate: float) -> tuple[list[int], int]:
    """Offers call i at start + i / rate (busy-waiting while early); returns each call's latency from
    its intended send time, in ns, and the elapsed ns of the whole run."""
    clock = time.perf_counter_ns
    interval = 1e9 / rate
    out = [0] * len(calls)
    with quiet_gc():
        start = clock() + 10_000
        for i, (f, args) in enumerate(calls):
            due = start + int(i * interval)
            while clock() < due:
                pass
            f(*args)
            out[i] = clock() - due
        return out, clock() - start


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
    }


# ---- cases ---------------------------------------------------------------------------------------

def _case(case: str, workload: wls.Workload | str, impl: str, mode: str, commands: int, **fields) -> dict:
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
    book = fresh_book(_book.OrderBook, wl)
    latencies, elapsed = open_loop(wls.call_list(book, wl.cmds[:n]), rate)
    return _open_case("book.call", wl, n, rate, latencies, elapsed)


def _open_case(case: str, wl: wls.Workload, n: int, rate: int, latencies, elapsed_ns: int) -> dict:
    achieved = n / (elapsed_ns / 1e9)
    return _case(case, wl, "cython", "open", n, offered=rate, achieved=achieved,
                 saturated=achieved < 0.95 * rate, latency_ns=latency_summary(latencies))


def fresh_exchange(xw: wls.ExchangeWorkload) -> Exchange:
    ex = Exchange(default_config())
    for cmd in xw.setup:
        for event in ex.submit(cmd):
            if type(event) is m.OrderRejected:
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
    ex = fresh_exchange(xw)
    latencies, elapsed = open_loop(_submit_calls(ex, xw.cmds[:n]), rate)
    return _open_case("exchange.submit", xw.book, n, rate, latencies, elapsed)


def book_memory(wl: wls.Workload) -> dict:
    """C allocations per resting order of a book holding the workload's prefill."""
    book = fresh_book(_book.OrderBook, wl)
    total = book.memory_bytes()
    return {"resting": len(book), "bytes": total, "bytes_per_order": total / len(book)}


def reference_memory(wl: wls.Workload, orders: int) -> dict:
    """Python heap per resting order of the reference book (tracemalloc), on a prefix of the same
    prefill: the baseline for the Cython figure."""
    setup = wl.setup[:orders]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        book = ReferenceBook()
        book.process_batch(setup, keep_fills=False)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return {"resting": len(book), "bytes": used, "bytes_per_order": used / len(book)}


# ---- the run -------------------------------------------------------------------------------------

def _with_ratio(case: dict, reference: dict) -> dict:
    case["vs_reference"] = case["throughput"] / reference["throughput"]
    return case


def run(quick: bool = False, seed: int = 1, sizes: Sizes | None = None,
        book_rates=BOOK_RATES, exchange_rates=EXCHANGE_RATES, progress=None) -> dict:
    """Runs every case and returns the report (plain data, JSON-ready)."""
    sizes = sizes or (QUICK if quick else FULL)
    step = progress or (lambda text: None)
    report = {"schema": SCHEMA, "quick": quick, "seed": seed, "sizes": asdict(sizes),
              "machine": machine_info(), "timer_overhead_ns": timer_overhead_ns(),
              "workloads": {}, "cases": [], "memory": {}}
    cases = report["cases"]

    step("standard mix: generating")
    n_std = max(sizes.standard, sizes.reference, int(max(book_rates, default=0) * sizes.open_seconds))
    std = wls.standard(n_std, seed)
    report["workloads"]["standard"] = std.describe()
    step("standard mix: one call per command")
    ref_call = book_calls(ReferenceBook, std, sizes.reference, 1, label="reference")
    cases.append(_with_ratio(book_calls(_book.OrderBook, std, sizes.standard, sizes.repeats),
                             ref_call))
    cases.append(ref_call)
    step("standard mix: batch entry point")
    ref_batch = book_batch(ReferenceBook, std, sizes.reference, 1, True, label="reference")
    for keep in (True, False):
        cases.append(_with_ratio(book_batch(_book.OrderBook, std, sizes.standard, sizes.repeats,
                                            keep), ref_batch))
    cases.append(ref_batch)
    for rate in book_rates:
        step(f"standard mix: open loop at {rate:,}/s")
        cases.append(book_open_loop(std, rate, sizes.open_seconds))

    step("standard mix: Exchange.submit")
    n_ex = max(sizes.exchange, int(max(exchange_rates, default=0) * sizes.open_seconds))
    xw = wls.exchange_workload(wls.standard(n_ex, seed))
    cases.append(exchange_calls(xw, sizes.repeats))
    for rate in exchange_rates:
        step(f"Exchange.submit: open loop at {rate:,}/s")
        cases.append(exchange_open_loop(xw, rate, sizes.open_seconds))
    del xw

    step(f"deep book: {sizes.deep_resting:,} resting orders")
    deep = wls.deep_book(sizes.deep, seed, resting=sizes.deep_resting)
    report["workloads"]["deep_book"] = deep.describe()
    report["memory"]["cython"] = book_memory(deep)
    step("deep book: reference memory")
    report["memory"]["reference"] = reference_memory(deep, sizes.ref_memory_orders)
    step("deep book: mix")
    cases.append(book_calls(_book.OrderBook, deep, sizes.deep, 1))
    cases.append(book_batch(_book.OrderBook, deep, sizes.deep, 1, True))
    del deep

    step("wide price range")
    wide = wls.wide_range(sizes.wide, seed)
    report["workloads"]["wide_range"] = {**wide.describe(), "levels_after_prefill": _levels_after(wide)}
    ref_wide = book_calls(ReferenceBook, wide, sizes.wide, 1, label="reference")
    cases.append(_with_ratio(book_calls(_book.OrderBook, wide, sizes.wide, sizes.repeats), ref_wide))
    cases.append(ref_wide)
    cases.append(book_batch(_book.OrderBook, wide, sizes.wide, sizes.repeats, True))
    report["targets"] = targets(report)
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


def targets(report: dict) -> list[dict]:
    """The matching-core targets (issue 2) beside what this run reached."""
    out = []
    call = find(report, "book.call")
    batch = find(report, "book.batch")
    submit = find(report, "exchange.submit")
    memory = report["memory"].get("cython")
    if call:
        out.append({"issue": 2, "what": "book, one Python call per command", "target": "≥ 2,000,000 commands/s",
                    "reached": f"{call['throughput']:,.0f} commands/s",
                    "met": call["throughput"] >= 2_000_000})
        p99 = call["latency_ns"]["p99"]
        out.append({"issue": 2, "what": "book, one Python call per command: p99", "target": "< 2 µs",
                    "reached": f"{p99 / 1000:.2f} µs", "met": p99 < 2000})
    if batch:
        out.append({"issue": 2, "what": "book, batch entry point", "target": "≥ 4,000,000 commands/s",
                    "reached": f"{batch['throughput']:,.0f} commands/s",
                    "met": batch["throughput"] >= 4_000_000})
    if submit:
        out.append({"issue": 2, "what": "Exchange.submit with message objects",
                    "target": "≥ 300,000 commands/s",
                    "reached": f"{submit['throughput']:,.0f} commands/s",
                    "met": submit["throughput"] >= 300_000})
    if memory:
        out.append({"issue": 2, "what": f"memory per resting order ({memory['resting']:,} resting)",
                    "target": "< 200 bytes", "reached": f"{memory['bytes_per_order']:.1f} bytes",
                    "met": memory["bytes_per_order"] < 200})
    return out
