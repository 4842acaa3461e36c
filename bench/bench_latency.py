"""Closed-loop latency of Exchange.submit (issue 13: p99 under 5 µs on the standard mix at 10,000
accounts), beside the book alone fed the same commands in the same run, and the pause of a full
garbage collection at the same size (the collector tracks nothing per account or position, so it
does not grow with them).

Each command is timed on its own (perf_counter_ns around one call, back to back: the closed loop),
with the collector on, as an embedding venue runs. The timer's own cost is measured and reported
(it is inside every figure). Run:

    pytest bench/bench_latency.py --benchmark-only -s
"""
import gc
import statistics
import time

import numpy as np
import pytest

from perpcore import bench, workloads

ACCOUNTS = 10_000
COMMANDS = 200_000


def service_ns(calls) -> np.ndarray:
    """Each call's own time, in ns, one after the other."""
    out = np.empty(len(calls), dtype=np.int64)
    clock = time.perf_counter_ns
    for i, (f, args) in enumerate(calls):
        t = clock()
        f(*args)
        out[i] = clock() - t
    return out


def percentiles(ns: np.ndarray) -> dict:
    p50, p99, p999 = np.percentile(ns, [50, 99, 99.9])
    return {"p50_us": p50 / 1e3, "p99_us": p99 / 1e3, "p99.9_us": p999 / 1e3,
            "max_us": ns.max() / 1e3}


def full_collection_ms(repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


@pytest.fixture(scope="module")
def case(scaled):
    n, accounts = scaled(COMMANDS), scaled(ACCOUNTS, floor=10)
    wl = workloads.standard(n, accounts=accounts)
    setup = workloads.account_setup(accounts, deposit="1000000")
    setup += workloads.to_messages(wl.setup, symbol=workloads.SYMBOL, ts0=1_000_000, ts_step=0)
    xw = workloads.ExchangeWorkload(wl, setup, workloads.to_messages(wl.cmds, wl.kinds,
                                                                      symbol=workloads.SYMBOL))
    return wl, xw, accounts


def test_submit_closed_loop_latency(benchmark, case):
    from perpcore._book import OrderBook
    wl, xw, accounts = case
    timer = statistics.median(service_ns([(int, ())] * 100_000).tolist())
    book = bench.fresh_book(OrderBook, wl)
    book_ns = service_ns(workloads.call_list(book, wl.cmds))
    ex = bench.fresh_exchange(xw)
    submit = ex.submit
    submit_ns = service_ns([(submit, (cmd,)) for cmd in xw.cmds])
    pause = full_collection_ms()
    figures = {"accounts": accounts, "commands": len(xw.cmds), "timer_ns": timer,
               "submit": percentiles(submit_ns), "book": percentiles(book_ns),
               "full_collection_ms": round(pause, 2)}
    benchmark.extra_info.update(figures)
    print(f"\n{accounts:,} accounts, {len(xw.cmds):,} commands, timer {timer:.0f} ns, "
          f"full collection {pause:.1f} ms")
    for name in ("submit", "book"):
        print(f"  {name:7s}" + "  ".join(f"{k} {v:8.2f}" for k, v in figures[name].items()))
    benchmark.pedantic(lambda: None, rounds=1)
