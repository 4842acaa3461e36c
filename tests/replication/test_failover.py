"""kill -9 against the replicated venue: of the stream's leader node, of a replica (which resumes
from its snapshot) and of the sequencer (a replica is promoted and clients go on there). No
acknowledged command is lost, none is applied twice, and every copy reaches the same state hash.
"""
import asyncio
import json
import threading
import time

import pytest

requests = pytest.importorskip("requests")

from perpcore import messages as m  # noqa: E402
from perpcore.exchange import Exchange  # noqa: E402
from perpcore.replication.log import checkpoint_subject, connect  # noqa: E402
from perpcore.replication.replica import Replica  # noqa: E402
from perpcore.snapshot import list_segments, recover  # noqa: E402

from .conftest import (CONFIG, CliProcess, Sequencer, claim_by_another_writer,  # noqa: E402
                       deposits, logged_commands, run)

ADMIN = "admin-token-for-replication-tests"


def stream_leader(cluster, stream) -> int:
    async def go():
        nc = await connect(cluster.url)
        try:
            info = await nc.jetstream().stream_info(stream)
            return info.cluster.leader
        finally:
            await nc.close()
    return cluster.index_of(run(go()))


def applied_deposits(url, stream) -> tuple[Exchange, dict[int, int]]:
    """The log replayed into a fresh exchange, and how many times each transfer id was
    applied (a Deposited event)."""
    ex = Exchange(CONFIG)
    applied: dict[int, int] = {}
    for seq, cmd in logged_commands(url, stream):
        for ev in ex.submit(cmd, seq):
            if isinstance(ev, m.Deposited):
                applied[ev.transfer_id] = applied.get(ev.transfer_id, 0) + 1
    return ex, applied


class Following:
    """A replica following the log on a thread of its own until stopped."""

    def __init__(self, directory, url, stream):
        self.replica = Replica(directory, CONFIG, url, stream, name=directory.name,
                               snapshot_every=500)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete,
                                       args=(self.replica.run(idle_timeout=0.2),), daemon=True)
        self.thread.start()

    def stop(self):
        """Stops it; its (seq, state hash)."""
        try:
            self.loop.call_soon_threadsafe(self.replica.stop)
            self.thread.join(60)
            return self.replica.ex.seq, self.replica.ex.state_hash()
        finally:
            self.loop.run_until_complete(self.replica.close())
            self.loop.close()


def test_kill_9_of_the_stream_leader_loses_nothing(cluster, stream, tmp_path):
    seq = Sequencer(tmp_path / "s", cluster.url, stream, pack=16, ack_timeout=2.0)
    acked: list[int] = []
    following = Following(tmp_path / "r", cluster.url, stream)      # through the leaderless time
    try:
        seq.submit_all([m.CreateAccount(account=1)])
        next_id = 1
        for round_ in range(5):
            cmds = deposits(next_id, 3000 if round_ == 2 else 300)
            next_id += len(cmds)

            async def go(cmds=cmds):
                return await asyncio.gather(*(seq.runner.submit(c) for c in cmds),
                                            return_exceptions=True)
            pending = asyncio.run_coroutine_threadsafe(go(), seq.loop)
            if round_ == 2:         # while entries are in flight
                killed = stream_leader(cluster, stream)
                cluster.kill(killed)
            results = pending.result(120)
            acked += [c.transfer_id for c, r in zip(cmds, results)
                      if not isinstance(r, Exception)]
        cluster.start_node(killed)
        final, resent = seq.state(), seq.log.resent
        _wait(lambda: following.replica.ex.seq >= final[0])
    finally:
        replica_state = following.stop()
        seq.close()
    assert replica_state == final
    assert len(acked) == 4200           # the writer waited the election out
    assert resent > 0                   # (entries were in flight when the leader died)
    ex, applied = applied_deposits(cluster.url, stream)
    assert all(applied.get(i) == 1 for i in acked) and set(applied) == set(acked)
    assert (ex.seq, ex.state_hash()) == final


def test_kill_9_of_a_replica_resumes_from_its_snapshot(cluster, stream, tmp_path):
    seen: list[dict] = []
    seq = Sequencer(tmp_path / "s", cluster.url, stream)
    replica_args = ("replica", "--nats", cluster.url, "--store", tmp_path / "r", "--stream",
                    stream, "--snapshot-every", 100)

    async def listen():
        nc = await connect(cluster.url)

        async def on(msg):
            seen.append(json.loads(msg.data))
        await nc.subscribe(checkpoint_subject(stream), cb=on)
        await nc.flush()
        return nc
    listener = seq.call(listen())
    replica = CliProcess(*replica_args, ready="replica r following")
    try:
        seq.submit_all([m.CreateAccount(account=1)])
        for first in range(1, 1000, 100):
            seq.submit_all(deposits(first, 100))
        _wait(lambda: any(c.get("node") == "r" and c.get("seq", 0) >= 500 for c in seen))
        replica.kill()                                  # kill -9, mid-stream
        for first in range(1000, 1500, 100):
            seq.submit_all(deposits(first, 100))
        final_seq, final_hash = seq.state()
        replica = CliProcess(*replica_args, ready="replica r following")
        entry = int(replica.first_line.split("from entry ")[1].split()[0])
        assert entry > 1                                # from its snapshot, not the start
        _wait(lambda: any(c.get("node") == "r" and c.get("seq") == final_seq
                          and c.get("verified") for c in seen))
        code, err = replica.stop()
        assert code == 0, err
    finally:
        replica.kill()
        seq.call(listener.close())
        seq.close()
    ex, report = recover(tmp_path / "r", CONFIG)
    assert (ex.seq, ex.state_hash()) == (final_seq, final_hash)
    assert report.snapshot_seq > 0
    # its verified checkpoints carried the sequencer's hashes; none said it halted
    assert not any("halted" in c for c in seen)


def _wait(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Clients:
    """Threads posting admin deposits of one unit (each its own transfer id) to a venue until
    stopped or until a request fails; each records what was acknowledged and what was in flight
    when its venue died."""

    def __init__(self, base, ids, threads=4):
        self.base, self.ids, self.lock = base, ids, threading.Lock()
        self.acked: list[int] = []
        self.unknown: list[int] = []
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        session = requests.Session()
        while not self.stopped.is_set():
            with self.lock:
                i = next(self.ids)
            try:
                r = session.post(f"{self.base}/admin/v1/deposit", timeout=30,
                                 json={"account": 1, "asset": "USD", "amount": "1",
                                       "transferId": i}, headers={"X-PERPCORE-ADMIN": ADMIN})
            except requests.RequestException:
                self.unknown.append(i)
                return
            assert r.status_code == 200, r.text
            self.acked.append(i)

    def join(self):
        self.stopped.set()
        for t in self.threads:
            t.join(60)


def _post(base, path, body):
    r = requests.post(f"{base}/admin/v1/{path}", json=body, timeout=30,
                      headers={"X-PERPCORE-ADMIN": ADMIN})
    assert r.status_code == 200, r.text
    return r.json()


def test_kill_9_of_the_sequencer_and_a_replica_promoted(cluster, stream, tmp_path):
    import itertools
    serve = ("serve", "--port", 0, "--admin-token", ADMIN, "--replicate", cluster.url,
             "--stream", stream, "--checkpoint-every", 300)
    old = CliProcess(serve[0], tmp_path / "a", *serve[1:], ready="serving")
    replica = CliProcess("replica", "--nats", cluster.url, "--store", tmp_path / "b",
                         "--stream", stream, "--snapshot-every", 200, ready="following")
    promoted = None
    try:
        base = old.first_line.split(" on ")[1].strip()
        _post(base, "account", {})
        ids = itertools.count(1)
        clients = Clients(base, ids)
        _wait(lambda: len(clients.acked) >= 800)       # the replica has pruned its journal
        old.kill()                                      # kill -9 of the sequencer
        clients.join()
        before, in_flight = set(clients.acked), list(clients.unknown)
        code, err = replica.stop()                      # the replica stops where it is
        assert code == 0, err
        # its journal no longer starts at the first command: the promoted venue's read models
        # come from the log
        assert list_segments(tmp_path / "b")[0][0] > 1
        promoted = CliProcess(serve[0], tmp_path / "b", *serve[1:], ready="serving")
        base = promoted.first_line.split(" on ")[1].strip()
        # the clients reconnect: what was in flight is sent again (same transfer id: applied
        # now, or refused as already applied), then more
        for i in in_flight:
            r = requests.post(f"{base}/admin/v1/deposit", timeout=30, json={
                "account": 1, "asset": "USD", "amount": "1", "transferId": i},
                headers={"X-PERPCORE-ADMIN": ADMIN})
            assert r.status_code == 200 or "DUPLICATE_TRANSFER" in r.text, r.text
        clients = Clients(base, ids)
        _wait(lambda: len(clients.acked) >= 200)
        clients.join()
        assert not clients.unknown
        acked = before | set(clients.acked) | set(in_flight)
        served = requests.get(f"{base}/admin/v1/stateHash", timeout=30,
                              headers={"X-PERPCORE-ADMIN": ADMIN}).json()
        code, err = promoted.stop()
        assert code == 0, err
    finally:
        for proc in (old, replica, promoted):
            if proc is not None:
                proc.kill()
    ex, applied = applied_deposits(cluster.url, stream)
    assert all(applied.get(i) == 1 for i in acked)      # none lost, none applied twice
    assert set(applied) == acked
    assert ex.account(1).balances["USD"] == CONFIG.assets["USD"].to_units("1") * len(acked)
    assert (ex.seq, ex.state_hash()) == (served["seq"], served["stateHash"])


def test_a_fenced_sequencer_stops_and_says_why(cluster, stream, tmp_path):
    served = CliProcess("serve", tmp_path / "a", "--port", 0, "--admin-token", ADMIN,
                        "--replicate", cluster.url, "--stream", stream, ready="serving")
    try:
        base = served.first_line.split(" on ")[1].strip()
        _post(base, "account", {})
        claim_by_another_writer(cluster.url, stream)
        r = requests.post(f"{base}/admin/v1/deposit", timeout=30, headers={
            "X-PERPCORE-ADMIN": ADMIN}, json={"account": 1, "asset": "USD", "amount": "1",
                                              "transferId": 1})
        assert r.status_code != 200                     # not acknowledged
        assert served.proc.wait(60) == 3
        assert "fenced" in served.proc.stderr.read()
    finally:
        served.kill()
    _, applied = applied_deposits(cluster.url, stream)
    assert applied == {}
