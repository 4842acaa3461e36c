"""Replay at scale (issue 15): the same independent inputs replayed one after another in this
process and fanned out over a local Dask cluster of two worker processes (perpcore.fanout), wall
time. Every round checks that both give the same state hashes.

    python bench/bench_fanout.py                 # the report: date, machine, load, per case the
                                                 # median and range of each way, their ratio
    python bench/bench_fanout.py --accounts 100000 --rounds 5 --json
    pytest bench/bench_fanout.py --benchmark-only        # the suite's cases (a warm cluster)

Cases: the stress shocks on a generated population (17 shocks from the same state: the snapshot
goes to each worker once), the LOBSTER samples (each file 4 times: 8 inputs) and the Binance
symbols, when ../shared/data holds them. The cluster's start (about a second) is measured apart:
a command pays it once per run. On a shared 2-core machine a speed-up is not guaranteed: two
worker processes compete with everything else running, and with each other for the parent's
core.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from perpcore import fanout
from perpcore import replay as rp
from perpcore import stress as st

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LOBSTER_COPIES = 4


def stress_case(accounts: int):
    """(label, inputs, run(pool) -> the hashes) of the shocks on a population."""
    ex = st.population(accounts=accounts, seed=1)
    paths = st.shock_paths()

    def run(pool) -> list[str]:
        return [r.state_hash for r in st.run(ex, "bench", paths, pool=pool).shocks]
    return f"stress shocks, {accounts:,} accounts", len(paths), run


def lobster_case():
    files = sorted((DATA / "lobster").glob("*_message_*.csv")) * LOBSTER_COPIES
    if not files:
        return None

    def run(pool) -> list[str]:
        return [f["book_hash"] for f in rp.replay_lobster(files, pool=pool).files]
    return f"LOBSTER files ({len(files) // LOBSTER_COPIES} samples × {LOBSTER_COPIES})", \
        len(files), run


def binance_case():
    if not rp.binance_symbols(DATA / "binance"):
        return None

    def run(pool) -> list[str]:
        return [f["state_hash"] for f in rp.replay_binance(DATA / "binance", pool=pool).files]
    return "Binance symbols", len(rp.binance_symbols(DATA / "binance")), run


def cases(accounts: int) -> list:
    return [c for c in (stress_case(accounts), lobster_case(), binance_case()) if c]


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    import dask
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu,
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "dask": dask.__version__, "commit": commit}


def measure(accounts: int, rounds: int, workers: int) -> dict:
    """Interleaved rounds (sequential, fanned out, ...) on a warm cluster: the machine's load
    drifts, and both ways see the same drift."""
    report = machine()
    report.update(accounts=accounts, rounds=rounds, workers=workers, load_before=os.getloadavg())
    started = time.perf_counter()
    with fanout.pool(workers=workers) as cluster:
        report["cluster_start_s"] = time.perf_counter() - started
        sequential = fanout.Sequential()
        report["cases"] = []
        for label, inputs, run in cases(accounts):
            times: dict[str, list[float]] = {"sequential": [], "fanned out": []}
            for _ in range(rounds):
                hashes = []
                for name, pool in (("sequential", sequential), ("fanned out", cluster)):
                    t = time.perf_counter()
                    hashes.append(run(pool))
                    times[name].append(time.perf_counter() - t)
                assert hashes[0] == hashes[1], f"{label}: the fanned-out hashes differ"
            seq, fan = (statistics.median(times[k]) for k in ("sequential", "fanned out"))
            report["cases"].append({"case": label, "inputs": inputs, "times": times,
                                    "sequential_s": seq, "fanned_out_s": fan,
                                    "speed_up": seq / fan})
    report["load_after"] = os.getloadavg()
    return report


def render(report: dict) -> str:
    lines = [f"{report['date']} · {report['cpu']} ({report['cpus']} CPUs) · Python "
             f"{report['python']} · dask {report['dask']} · perpcore @ {report['commit']} · "
             f"load {report['load_before'][0]:.2f} before, {report['load_after'][0]:.2f} after",
             f"{report['workers']} local worker processes (one thread each); cluster start "
             f"{report['cluster_start_s']:.2f} s, paid once per command, not in the times below; "
             f"median of {report['rounds']} interleaved rounds [min–max]", "",
             "| case | inputs | sequential | fanned out | speed-up |", "|---|---:|---:|---:|---:|"]
    for c in report["cases"]:
        seq, fan = c["times"]["sequential"], c["times"]["fanned out"]
        lines.append(f"| {c['case']} | {c['inputs']} | {c['sequential_s']:.2f} s "
                     f"[{min(seq):.2f}–{max(seq):.2f}] | {c['fanned_out_s']:.2f} s "
                     f"[{min(fan):.2f}–{max(fan):.2f}] | {c['speed_up']:.2f}× |")
    return "\n".join(lines)


# ---- the suite's cases ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    with fanout.pool(workers=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def shocks(scaled):
    return stress_case(scaled(20_000, floor=50))


@pytest.mark.parametrize("way", ["sequential", "workers2"])
def test_stress_shocks(benchmark, cluster, shocks, way):
    _, inputs, run = shocks
    pool = cluster if way == "workers2" else fanout.Sequential()
    benchmark.group = "fan-out: stress shocks"
    benchmark.extra_info["inputs"] = inputs
    hashes = benchmark.pedantic(run, args=(pool,), rounds=3, iterations=1)
    assert len(hashes) == inputs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    result = measure(args.accounts, args.rounds, args.workers)
    print(json.dumps(result) if args.json else render(result))
