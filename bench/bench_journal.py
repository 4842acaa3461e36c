"""The journal and replay targets (issue 6): journal replay rate (read, check every record's
length, CRC and sequence, decode every command), the throughput cost of journaling with group
commit, and the slowest real data file's replay time."""
import resource
import statistics
import time
from pathlib import Path

import pytest

from perpcore import bench, workloads
from perpcore import messages as m
from perpcore.config import default_config
from perpcore.exchange import config_digest

jr = workloads.layer("perpcore.journal")
lb = workloads.layer("perpcore.lobster")
rp = workloads.layer("perpcore.replay")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def journal_file(tmp_path_factory, scaled):
    """The standard mix as journal records (no exchange needed to write them)."""
    wl = workloads.standard(scaled(500_000))
    cmds = workloads.to_messages(wl.cmds, wl.kinds)
    path = tmp_path_factory.mktemp("journal") / "standard.pcj"
    encode = m.encoder.encode
    with jr.Journal(path, config_digest(default_config()), sync="none",
                    group_records=4096) as journal:
        for seq, cmd in enumerate(cmds, start=1):
            journal.append(seq, encode(cmd))
    return path, len(cmds)


def test_journal_replay(benchmark, target, journal_file):
    path, n = journal_file
    target("journal.replay", commands=n)
    assert benchmark.pedantic(jr.decode_all, args=(path,), rounds=5) == n


def test_group_commit_cost(benchmark, target, scaled, tmp_path):
    """Exchange.submit alone against a JournaledExchange with group commit (the journal's
    defaults: fsync on the flusher thread every 1,024 records or 5 ms) on the same commands; the
    cost is 1 - journaled throughput / plain throughput, from the medians. The engine thread's
    own CPU time is recorded beside it: on a machine with no core to spare for the flusher (and
    the disk's kernel work) the wall-clock cost exceeds what journaling costs the engine. So are
    the CPU time the other threads (the flusher) used, as a share of the journaled wall time, and
    how often the engine thread was preempted per round (a busy machine's other work, or the
    flusher waking on the engine's core)."""
    xw = workloads.exchange_workload(workloads.standard(scaled(20_000)))
    plain_wall, plain_cpu, journaled_cpu, other_share = [], [], [], []
    preempted = {"plain": [], "journaled": []}
    runs = iter(range(1_000_000))

    def plain():
        ex = bench.fresh_exchange(xw)
        switches = _preemptions()
        wall, cpu = time.perf_counter(), time.thread_time()
        for cmd in xw.cmds:
            ex.submit(cmd)
        plain_cpu.append(time.thread_time() - cpu)
        plain_wall.append(time.perf_counter() - wall)
        preempted["plain"].append(_preemptions() - switches)

    def setup():
        plain()         # interleaved, so both see the same machine
        ex = bench.fresh_exchange(xw)
        journal = jr.Journal(tmp_path / f"run{next(runs)}.pcj", config_digest(ex.config),
                             first_seq=ex.seq + 1, sync="group")
        return (jr.JournaledExchange(ex, journal), xw.cmds), {}

    def journaled(engine, cmds):
        switches = _preemptions()
        wall, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
        for cmd in cmds:
            engine.submit(cmd)
        engine.close()                  # the last group's fsync is part of the cost
        cpu = time.thread_time() - cpu
        journaled_cpu.append(cpu)
        other_share.append((time.process_time() - process - cpu)
                             / (time.perf_counter() - wall))
        preempted["journaled"].append(_preemptions() - switches)

    benchmark.pedantic(journaled, setup=setup, rounds=5)
    cost = 1 - statistics.median(plain_wall) / benchmark.stats.stats.median
    benchmark.extra_info["plain_median_s"] = statistics.median(plain_wall)
    benchmark.extra_info["engine_thread_cpu_cost"] = 1 - min(plain_cpu) / min(journaled_cpu)
    benchmark.extra_info["engine_thread_cpu_cost_median"] = (
        1 - statistics.median(plain_cpu) / statistics.median(journaled_cpu))
    benchmark.extra_info["other_threads_cpu_share"] = statistics.median(other_share)
    benchmark.extra_info["engine_preemptions_per_round"] = {
        name: statistics.median(counts) for name, counts in preempted.items()}
    target("journal.group_commit", value=cost)


def _preemptions() -> int:
    """The calling thread's involuntary context switches so far (0 where the OS does not say)."""
    who = getattr(resource, "RUSAGE_THREAD", None)
    return resource.getrusage(who).ru_nivcsw if who is not None else 0


def _real_files():
    """name -> a call that replays it: each LOBSTER message file, and each Binance symbol's
    captures (USDⓈ-M with its spot index source) once perpcore.binance is there."""
    files = {}
    lobster = DATA / "lobster"
    if lobster.is_dir():
        for path in sorted(lobster.glob("*_message_*.csv")):
            files[path.name] = (lambda path=path: lb.replay_file(path))
    binance = DATA / "binance"
    try:
        bn = workloads.layer("perpcore.binance")
    except workloads.LayerMissing:
        bn = None
    if bn is not None and binance.is_dir():
        for symbol in rp.binance_symbols(binance):
            files[f"binance {symbol}"] = (
                lambda symbol=symbol: bn.replay(*bn.capture_paths(binance, symbol), symbol))
    return files


def test_real_files(benchmark, target):
    """Each real data file replayed once per round; the target is the slowest file's median."""
    files = _real_files()
    if not files:
        pytest.skip("../shared/data is absent")
    times = {name: [] for name in files}

    def replay_all():
        for name, run in files.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)

    benchmark.pedantic(replay_all, rounds=3)
    medians = {name: statistics.median(t) for name, t in times.items()}
    benchmark.extra_info["files"] = medians
    target("journal.real_files", value=max(medians.values()))
