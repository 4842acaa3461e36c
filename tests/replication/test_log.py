"""The replicated log against a real 3-node JetStream cluster: replicas reach the sequencer's
state hash, entries are packed and positioned, a second writer is fenced, a stream left over from
another run is refused, and a replica fed a damaged or altered entry halts instead of
diverging."""
import asyncio

import pytest

from perpcore import workloads
from perpcore.replication.log import (Entry, Fenced, LogError, apply_entry, connect, encode_entry,
                                      open_sequencer, subject_of)
from perpcore.replication.replica import Replica, ReplicaHalted
from perpcore.runner import RunnerError
from perpcore.snapshot import LogPosition, Store, list_snapshots, read_snapshot
from perpcore.exchange import Exchange

from .conftest import (CONFIG, Sequencer, claim_by_another_writer, deposits, logged_commands,
                       read_log, run)


def follow(directory, url, stream, until_seq, **options):
    """A replica run in-process until it reaches until_seq; (seq, state hash, replica info)."""
    async def go():
        replica = Replica(directory, CONFIG, url, stream, name=directory.name, **options)
        try:
            seq = await asyncio.wait_for(replica.run(until_seq=until_seq), 120)
            return seq, replica.ex.state_hash(), replica.started_from, replica.verified_seq
        finally:
            await replica.close()
    return run(go())


def test_replicas_reach_the_sequencers_state_hash(cluster, stream, tmp_path):
    xw = workloads.cross_margin(3_000, accounts=60, prefill=300)
    seq = Sequencer(tmp_path / "sequencer", cluster.url, stream, pack=64, checkpoint_every=500)
    try:
        # the set-up in one go (packed: up to 64 commands an entry), the orders in batches
        seq.submit_all(xw.setup)
        for i in range(0, len(xw.cmds), 500):
            seq.submit_all(xw.cmds[i:i + 500])
        final_seq, final_hash = seq.state()
        assert final_seq == len(xw.setup) + len(xw.cmds)
        entries = read_log(cluster.url, stream)
        assert max(len(e.commands) for _, e in entries) == 64       # packed
        assert sum(len(e.commands) for _, e in entries) == final_seq
        assert sum(1 for _, e in entries if e.state_hash) >= final_seq // 500
    finally:
        seq.close()
    for name in ("r1", "r2"):
        got, digest, _, verified = follow(tmp_path / name, cluster.url, stream, final_seq,
                                          snapshot_every=700)
        assert (got, digest) == (final_seq, final_hash)
        assert verified > 0                 # the sequencer's checkpoints were checked
    # a replica restarts from its newest snapshot's log position, past the first entry
    snaps = list_snapshots(tmp_path / "r1")
    info, _ = read_snapshot(snaps[-1][1])
    assert info.log_position.entry_seq > 1
    got, digest, started, _ = follow(tmp_path / "r1", cluster.url, stream, final_seq)
    assert started == info.log_position and (got, digest) == (final_seq, final_hash)


def test_a_snapshot_mid_entry_resumes_at_its_offset(cluster, stream, tmp_path):
    seq = Sequencer(tmp_path / "sequencer", cluster.url, stream, pack=100)
    try:
        seq.submit_all([workloads.m.CreateAccount(account=1)] + deposits(1, 299))
        final = seq.state()
    finally:
        seq.close()
    # a replica that stops 50 commands into the 2nd entry (commands 101-200) and snapshots there
    follower_entries = read_log(cluster.url, stream)

    async def part():
        replica = Replica(tmp_path / "r", CONFIG, cluster.url, stream, name="r")
        replica.nc = await connect(cluster.url)
        try:
            for stream_seq, entry in follower_entries[:2]:
                apply_entry(replica.engine, stream_seq, entry)
            second_seq, second = follower_entries[2]
            cut = Entry(second.first_seq, second.commands[:50])
            replica.position = apply_entry(replica.engine, second_seq, cut)
            replica.checkpoint()
            return replica.position, replica.ex.seq
        finally:
            await replica.close()
    position, at = run(part())
    assert position == LogPosition(3, 50) and at == 150      # (entry 1 is the claim)
    got, digest, started, _ = follow(tmp_path / "r", cluster.url, stream, final[0])
    assert started == position and (got, digest) == final


def test_a_second_writer_is_fenced(cluster, stream, tmp_path):
    first = Sequencer(tmp_path / "a", cluster.url, stream)
    try:
        first.submit_all(deposits(1, 0) + [workloads.m.CreateAccount(account=1)])
        assert not any(isinstance(r, Exception) for r in first.submit_all(deposits(1, 20)))
        # another writer catches up and claims the log
        claim_by_another_writer(cluster.url, stream)
        results = first.submit_all(deposits(100, 5))
        assert all(isinstance(r, RunnerError) and "fenced" in str(r) for r in results)
        assert isinstance(first.log.failed.exception(), Fenced)
        # and it stays stopped: it never re-reads the log to carry on
        later = first.submit_all(deposits(200, 1))
        assert isinstance(later[0], RunnerError)
    finally:
        first.close()
    ids = [c.transfer_id for _, c in logged_commands(cluster.url, stream)
           if isinstance(c, workloads.m.Deposit)]
    assert ids == list(range(1, 21))        # none of the fenced writer's commands got in


def test_a_retried_append_answered_duplicate_counts_once(cluster, stream, tmp_path):
    from nats import errors
    seq = Sequencer(tmp_path / "s", cluster.url, stream)
    lost = []
    try:
        request = seq.log.nc.request

        async def ack_lost_once(subject, payload, timeout, headers):
            reply = await request(subject, payload, timeout=timeout, headers=headers)
            if not lost:            # stored, but the writer does not hear of it
                lost.append(reply.data)
                raise errors.TimeoutError
            return reply
        seq.log.nc.request = ack_lost_once
        results = seq.submit_all([workloads.m.CreateAccount(account=1)] + deposits(1, 30))
        assert not any(isinstance(r, Exception) for r in results)
        assert seq.log.resent >= 1 and b"duplicate" not in lost[0]
        final = seq.state()
    finally:
        seq.close()
    logged = logged_commands(cluster.url, stream)       # each command once, in order
    assert len(logged) == final[0] == 31


def test_a_fresh_venue_refuses_a_leftover_stream(cluster, stream, tmp_path):
    seq = Sequencer(tmp_path / "old", cluster.url, stream)
    seq.submit_all([workloads.m.CreateAccount(account=1)])
    seq.close()
    _refused(tmp_path / "new", cluster.url, stream, "already holds")


def _refused(directory, url, stream, why):
    """Opening the store in `directory` as the stream's sequencer is refused, saying `why`."""
    store = Store(directory, CONFIG)
    try:
        with pytest.raises(LogError, match=why):
            open_sequencer(store, url, stream)
    finally:
        store.close()


def test_a_duplicate_on_a_fresh_entry_id_is_an_error(cluster, stream, tmp_path):
    seq = Sequencer(tmp_path / "s", cluster.url, stream)
    try:
        seq.submit_all([workloads.m.CreateAccount(account=1)])
        at, _ = seq.state()
        # an entry already holding the id the writer's next entry will use (the id of a run
        # that left its stream behind)
        _publish_raw(cluster.url, stream, b"x", {"Nats-Msg-Id": f"{seq.log.session}:{at + 1}"})
        result = seq.submit_all(deposits(1, 1))[0]
        assert isinstance(result, RunnerError) and "already in the stream" in str(result)
    finally:
        seq.close()


def test_a_store_ahead_of_the_log_is_refused(cluster, stream, tmp_path):
    seq = Sequencer(tmp_path / "s", cluster.url, stream)
    seq.submit_all([workloads.m.CreateAccount(account=1)] + deposits(1, 5))
    seq.close()
    # commands journaled locally that never reached the log (a writer that lost it)
    store = Store(tmp_path / "s", CONFIG)
    store.engine.submit(deposits(50, 1)[0])
    store.close()
    _refused(tmp_path / "s", cluster.url, stream, "not in the log")


def _publish_raw(url, stream, payload, headers):
    """A message published to the stream by a client that is not the writer."""
    async def go():
        nc = await connect(url)
        try:
            reply = await nc.request(subject_of(stream), payload, timeout=10, headers=headers)
            assert b"error" not in reply.data, reply.data
        finally:
            await nc.close()
    run(go())


@pytest.mark.parametrize("damage", ["crc", "altered", "gap"])
def test_a_replica_fed_a_bad_entry_halts(cluster, stream, tmp_path, damage):
    seq = Sequencer(tmp_path / "s", cluster.url, stream)
    try:
        seq.submit_all([workloads.m.CreateAccount(account=1)] + deposits(1, 10))
        at, digest = seq.state()
        last = seq.log.position.entry_seq
    finally:
        seq.close()          # the writer is gone; a damaged entry follows its last one
    honest = Entry(at + 1, deposits(11, 1), "", "x")
    if damage == "crc":
        payload = bytearray(encode_entry(honest))
        payload[-1] ^= 0xFF
    elif damage == "altered":
        # another amount than the sequencer applied, under the sequencer's state hash
        ex = Exchange(CONFIG)
        for _, cmd in logged_commands(cluster.url, stream):
            ex.submit(cmd)
        ex.submit(honest.commands[0])
        payload = encode_entry(Entry(at + 1, [workloads.m.Deposit(
            account=1, asset="USD", amount=2, transfer_id=11)], ex.state_hash(), "x"))
    else:
        payload = encode_entry(Entry(at + 2, deposits(11, 1), "", "x"))
    _publish_raw(cluster.url, stream, bytes(payload), {"Nats-Expected-Last-Sequence": str(last)})
    with pytest.raises(ReplicaHalted) as halted:
        follow(tmp_path / "r", cluster.url, stream, at + 1)
    why = {"crc": "damaged", "altered": "state hash mismatch", "gap": "missing"}[damage]
    assert why in str(halted.value)
    # it stopped where the log went wrong: everything before was applied, nothing after
    state = Store(tmp_path / "r", CONFIG)
    try:
        reached = state.engine.ex.seq
        assert reached == (at + 1 if damage == "altered" else at)
        if damage != "altered":
            assert state.engine.ex.state_hash() == digest
    finally:
        state.close()
