"""`perpcore bench replication` (and bench/bench_replication.py): what the replicated log costs,
beside the local journal alone, in one run on a local 3-node JetStream cluster (every node
fsyncing every write, `sync_interval: always`).

- append: commands/s written to the stream by the sequencer's log writer, one command per entry
  and packed, against the same commands into the local journal (group commit);
- pipeline: commands/s through the engine runner (engine, local journal, and the log) with many
  callers, against the runner on the local journal only;
- latency at a paced rate (2,000 orders/s by default): the client's acknowledgement (durable in
  the replicated log) p50/p99, and submit -> applied on a replica in another process, against
  the acknowledgement of the runner on the local journal only;
- catch-up: commands/s a new replica applies from the log, against a store's recovery from its
  own journal.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np

import perpcore
from perpcore import messages as m
from perpcore import workloads
from perpcore.exchange import Exchange, config_digest
from perpcore.journal import Journal
from perpcore.replication.cluster import LocalCluster
from perpcore.replication.log import (SequencerLog, connect, decode_entry, ensure_stream,
                                      open_sequencer)
from perpcore.replication.replica import Replica
from perpcore.runner import EngineRunner
from perpcore.snapshot import Store, recover

GOAL_APPEND = 200_000           # commands/s replicated, packed
GOAL_ACK_P99_MS = 20.0          # a client's durable acknowledgement at GOAL_RATE
GOAL_RATE = 2_000               # orders/s


def _workload(n: int) -> tuple[list, list]:
    xw = workloads.cross_margin(n, accounts=1_000, prefill=2_000)
    return xw.setup, xw.cmds


def _records(cmds: list) -> list[tuple[int, m.Command]]:
    return list(enumerate(cmds, start=1))


def _new_stream(url: str, name: str) -> None:
    async def go():
        nc = await connect(url)
        try:
            await ensure_stream(nc.jetstream(), name, new=True)
        finally:
            await nc.close()
    asyncio.run(go())


def append_rate(url: str, stream: str, cmds: list, pack: int, batch: int = 4096) -> float:
    """Commands/s appended (acknowledged by the stream) in batches of `batch`, `pack` a entry."""
    _new_stream(url, stream)
    log = SequencerLog(url, stream, pack=pack, checkpoint_every=1 << 62)
    try:
        log.catch_up(Exchange(perpcore.default_config()), log.position, new=True)
        records = _records(cmds)
        started = time.perf_counter()
        tickets = [log.append(records[i:i + batch], None) for i in range(0, len(records), batch)]
        for ticket in tickets:
            ticket.result()
        return len(records) / (time.perf_counter() - started)
    finally:
        log.close()


def journal_rate(directory: Path, cmds: list, batch: int = 4096) -> float:
    """Commands/s into the local journal alone (encode, group commit per batch)."""
    cfg = perpcore.default_config()
    journal = Journal(directory / "bench.pcj", config_digest(cfg), sync="group")
    try:
        encode = m.encoder.encode
        started = time.perf_counter()
        for seq, cmd in _records(cmds):
            journal.append(seq, encode(cmd))
            if seq % batch == 0:
                journal.commit()
        journal.commit()
        return len(cmds) / (time.perf_counter() - started)
    finally:
        journal.close()


async def _closed_loop(runner: EngineRunner, cmds: list, callers: int) -> float:
    chunks = [cmds[i::callers] for i in range(callers)]

    async def caller(chunk):
        for cmd in chunk:
            await runner.submit(cmd)
    started = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in chunks))
    return len(cmds) / (time.perf_counter() - started)


def pipeline_rate(directory: Path, setup: list, cmds: list, url: str | None,
                  stream: str, callers: int = 1024) -> float:
    """Commands/s through an EngineRunner on a store (and the log, with `url`)."""
    store = Store(directory, perpcore.default_config(), sync="group")
    log = None
    if url:
        _new_stream(url, stream)
        log = open_sequencer(store, url, stream)

    async def go():
        async with EngineRunner(store.engine, durable_log=log) as runner:
            await runner.submit_many(setup)
            return await _closed_loop(runner, cmds, callers)
    try:
        return asyncio.run(go())
    finally:
        if log is not None:
            log.close()
        store.close()


async def _paced(runner: EngineRunner, cmds: list, rate: int) -> np.ndarray:
    """Submits `cmds` at `rate` a second (open loop), each stamped with the wall clock as it is
    submitted; the acknowledgement latencies in ms."""
    latencies = np.zeros(len(cmds))
    pending = []

    def done(i, t0, fut):
        latencies[i] = (time.perf_counter() - t0) * 1e3
    start = time.perf_counter()
    for i, cmd in enumerate(cmds):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        fut = runner.submit(msgspec.structs.replace(cmd, ts=time.time_ns()))
        fut.add_done_callback(lambda f, i=i, t0=t0: done(i, t0, f))
        pending.append(fut)
    await asyncio.gather(*pending)
    return latencies


def paced_latency(directory: Path, setup: list, cmds: list, rate: int, url: str | None,
                  stream: str) -> dict:
    """Acknowledgement p50/p99 (ms) at `rate`, and with `url` submit -> applied on a replica
    process (p50/p99 ms, from the commands' submit time to their application there)."""
    store = Store(directory / "sequencer", perpcore.default_config(), sync="group")
    log = replica = None
    if url:
        _new_stream(url, stream)
        log = open_sequencer(store, url, stream)
        out = directory / "replica-latency.json"
        replica = subprocess.Popen(
            [sys.executable, "-c", "import sys; from perpcore.replication.bench import "
             "replica_latency as f; f(*sys.argv[1:])", url, stream, str(directory / "replica"),
             str(len(setup)), str(len(setup) + len(cmds)), str(out)], stdout=subprocess.PIPE,
            text=True)
        assert "following" in replica.stdout.readline()

    async def go():
        async with EngineRunner(store.engine, durable_log=log) as runner:
            await runner.submit_many(setup)
            if replica is not None:         # the replica has applied the set-up: measure
                assert "ready" in await asyncio.to_thread(replica.stdout.readline)
            return await _paced(runner, cmds, rate)
    try:
        acks = asyncio.run(go())
        result = {"ack_p50_ms": float(np.percentile(acks, 50)),
                  "ack_p99_ms": float(np.percentile(acks, 99))}
        if replica is not None:
            replica.wait(120)
            applied = np.array(json.loads(out.read_text()))
            result.update(applied_p50_ms=float(np.percentile(applied, 50)),
                          applied_p99_ms=float(np.percentile(applied, 99)))
        return result
    finally:
        if replica is not None and replica.poll() is None:
            replica.kill()
            replica.wait()
        if log is not None:
            log.close()
        store.close()


def replica_latency(url: str, stream: str, directory: str, after: str, until: str,
                    out: str) -> None:
    """(In the replica's process) follows the log to command `until`, recording for every
    command after `after` how long after its time (its submission) its application ended (ms);
    writes them to `out`."""
    latencies: list[float] = []

    class Timed(Replica):
        def _apply(self, stream_seq, data):
            ready = self.ex.seq >= int(after)
            super()._apply(stream_seq, data)
            now = time.time_ns()
            if not ready and self.ex.seq >= int(after):
                print("ready", flush=True)
            entry = decode_entry(data)
            latencies.extend((now - cmd.ts) / 1e6 for seq, cmd in
                             enumerate(entry.commands, start=entry.first_seq)
                             if seq > int(after))

    async def go():
        replica = Timed(directory, perpcore.default_config(), url, stream, name="bench")
        print("following", flush=True)
        try:
            await replica.run(until_seq=int(until), idle_timeout=0.05)
        finally:
            await replica.close()
    asyncio.run(go())
    Path(out).write_text(json.dumps(latencies))


def stream_latency(url: str, stream: str, rate: int, n: int, size: int = 600) -> dict:
    """What the cluster alone costs: publish -> acknowledgement p50/p99 (ms) of `size`-byte
    messages at `rate` a second (open loop), no perpcore in the way."""
    _new_stream(url, stream)

    async def go():
        nc = await connect(url)
        latencies = np.zeros(n)

        async def one(i):
            t0 = time.perf_counter()
            await nc.request(f"{stream}.log", bytes(size), timeout=30)
            latencies[i] = (time.perf_counter() - t0) * 1e3
        try:
            tasks, start = [], time.perf_counter()
            for i in range(n):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(one(i)))
            await asyncio.gather(*tasks)
        finally:
            await nc.close()
        return {"p50_ms": float(np.percentile(latencies, 50)),
                "p99_ms": float(np.percentile(latencies, 99))}
    return asyncio.run(go())


def catch_up_rate(directory: Path, url: str, stream: str, until: int) -> float:
    """Commands/s a new replica applies from the log (to command `until`)."""
    async def go():
        replica = Replica(directory, perpcore.default_config(), url, stream, name="catch-up",
                          snapshot_every=1 << 62)
        try:
            started = time.perf_counter()
            await replica.run(until_seq=until)
            return replica.applied / (time.perf_counter() - started)
        finally:
            await replica.close()
    return asyncio.run(go())


def recovery_rate(store_dir: Path) -> float:
    """Commands/s a store recovers from its own journal (no snapshot after the start)."""
    started = time.perf_counter()
    ex, report = recover(store_dir, perpcore.default_config())
    return report.replayed / (time.perf_counter() - started)


def run(quick: bool = False, rate: int = GOAL_RATE, progress=lambda what: None) -> dict:
    """Every figure of the module doc, in one run."""
    n = 20_000 if quick else 200_000
    paced = 2_000 if quick else 10_000
    setup, cmds = _workload(n)
    report: dict = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_before": os.getloadavg(), "commands": n, "rate": rate, "paced_commands": paced,
    }
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp) / "nats") as cluster:
        tmp_path, url = Path(tmp), cluster.url
        progress("local journal")
        report["journal_rate"] = journal_rate(tmp_path, cmds)
        progress("appends, one command an entry")
        report["append_rate_single"] = append_rate(url, "single", cmds[:n // 10], pack=1)
        progress("appends, packed")
        report["append_rate_packed"] = append_rate(url, "packed", cmds, pack=1024)
        progress("runner, local journal only")
        report["pipeline_local"] = pipeline_rate(tmp_path / "local", setup, cmds, None, "")
        progress("runner, replicated")
        report["pipeline_replicated"] = pipeline_rate(tmp_path / "repl", setup, cmds, url,
                                                      "pipeline")
        progress("catch-up")
        report["catch_up_rate"] = catch_up_rate(tmp_path / "catch-up", url, "pipeline",
                                                len(setup) + n)
        report["recovery_rate"] = recovery_rate(tmp_path / "local")
        progress(f"latency at {rate}/s, local journal only")
        report["paced_local"] = paced_latency(tmp_path / "paced-local", setup, cmds[:paced],
                                              rate, None, "")
        progress(f"latency at {rate}/s, replicated")
        report["paced_replicated"] = paced_latency(tmp_path / "paced-repl", setup,
                                                   cmds[:paced], rate, url, "paced")
        progress("the stream alone")
        report["stream_alone"] = [[r, stream_latency(url, f"raw{r}", r, paced // 2)]
                                  for r in (500, rate)]
    report["load_after"] = os.getloadavg()
    report["goals"] = {
        "append_packed": [GOAL_APPEND, report["append_rate_packed"] >= GOAL_APPEND],
        "ack_p99_ms": [GOAL_ACK_P99_MS,
                       report["paced_replicated"]["ack_p99_ms"] < GOAL_ACK_P99_MS],
    }
    return report


def table(report: dict) -> str:
    p_l, p_r = report["paced_local"], report["paced_replicated"]
    rows = [
        ("appended, one command an entry", f"{report['append_rate_single']:,.0f} commands/s",
         f"{report['journal_rate']:,.0f} commands/s (local journal)"),
        ("appended, packed (≤1,024 an entry)", f"{report['append_rate_packed']:,.0f} commands/s",
         f"{report['journal_rate']:,.0f} commands/s (local journal)"),
        ("engine runner, 1,024 callers", f"{report['pipeline_replicated']:,.0f} commands/s",
         f"{report['pipeline_local']:,.0f} commands/s"),
        (f"durable ack at {report['rate']:,}/s, p50 / p99",
         f"{p_r['ack_p50_ms']:.2f} / {p_r['ack_p99_ms']:.2f} ms",
         f"{p_l['ack_p50_ms']:.2f} / {p_l['ack_p99_ms']:.2f} ms"),
        (f"submit → applied on a replica at {report['rate']:,}/s, p50 / p99",
         f"{p_r['applied_p50_ms']:.2f} / {p_r['applied_p99_ms']:.2f} ms", "—"),
        ("replica catch-up", f"{report['catch_up_rate']:,.0f} commands/s",
         f"{report['recovery_rate']:,.0f} commands/s (store recovery)"),
    ]
    rows += [(f"the stream alone: publish → ack at {r:,} messages/s, p50 / p99",
              f"{a['p50_ms']:.2f} / {a['p99_ms']:.2f} ms", "—")
             for r, a in report["stream_alone"]]
    out = [f"{report['date']} · {report['machine']} · load {report['load_before'][0]:.2f} → "
           f"{report['load_after'][0]:.2f} · {report['commands']:,} commands",
           "| what | replicated (3 nodes, fsync always) | local journal only |",
           "|---|---:|---:|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    goals = report["goals"]
    out.append(f"goal ≥ {GOAL_APPEND:,} commands/s packed: "
               f"{'met' if goals['append_packed'][1] else 'MISSED'}; durable ack p99 < "
               f"{GOAL_ACK_P99_MS:.0f} ms at {report['rate']:,}/s: "
               f"{'met' if goals['ack_p99_ms'][1] else 'MISSED'}")
    return "\n".join(out)
