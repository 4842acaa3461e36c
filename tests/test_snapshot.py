"""Snapshots: the whole state round-trips (whatever components the exchange has), behaviour after a
restore is the same as without one, files are written atomically and checked, and a store recovers
snapshot + journal tail to the state of the run that never stopped."""
import errno
import os

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpcore import Exchange, _book
from perpcore import exchange as exchange_module
from perpcore import journal as jr
from perpcore import messages as m
from perpcore import snapshot as sn
from test_journal import CONFIG, run_plain, session_commands

BTC = "BTC-PERP"


def _funded(ex, *accounts):
    for a in accounts:
        ex.submit(m.CreateAccount(account=a))
        if hasattr(m, "Deposit"):
            ex.submit(m.Deposit(account=a, asset="USD", amount=10**13))


def test_round_trip_of_every_component():
    """state_hash survives snapshot/restore for whatever components exist, and each component's
    own state comes back equal."""
    cmds = session_commands(seed=21, steps=800)
    ex, _ = run_plain(cmds)
    assert any(o[5] for o in ex.markets[BTC].book.resting()), "want partly filled resting orders"
    restored = Exchange.restore(CONFIG, ex.snapshot())
    assert restored.state_hash() == ex.state_hash()
    assert restored.seq == ex.seq and restored.clock == ex.clock
    assert list(restored.components) == list(ex.components)
    for name, component in ex.components.items():
        assert m.encoder.encode(restored.components[name].to_state()) == \
            m.encoder.encode(component.to_state()), name


def test_a_restored_exchange_behaves_as_the_original():
    """Same commands after the snapshot give the same events on the original and on the copy:
    queue positions, filled quantities, client ids, post-only and STP modes all came back."""
    cmds = session_commands(seed=8, steps=1200)
    half = len(cmds) // 2
    ex, _ = run_plain(cmds[:half])
    copy = Exchange.restore(CONFIG, ex.snapshot())
    for cmd in cmds[half:]:
        assert copy.submit(cmd) == ex.submit(cmd)
    assert copy.state_hash() == ex.state_hash()


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(0, 400))
def test_snapshot_anywhere_then_carry_on(seed, cut):
    """Property: snapshot after any command of any seeded session, restore, run the rest on both:
    the same events and the same final state hash."""
    cmds = session_commands(seed=seed, steps=300)
    cut = min(cut, len(cmds))
    ex, _ = run_plain(cmds[:cut])
    copy = Exchange.restore(CONFIG, ex.snapshot())
    assert copy.state_hash() == ex.state_hash()
    assert [copy.submit(c) for c in cmds[cut:]] == [ex.submit(c) for c in cmds[cut:]]
    assert copy.state_hash() == ex.state_hash()


def test_stp_mode_of_resting_orders_survives():
    """A resting order's STP mode is not in the state hash, but an amend that crosses uses it."""
    def scenario(ex):
        _funded(ex, 1, 2)
        ex.submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.SELL, qty=10, price=650_010))
        ex.submit(m.PlaceOrder(account=2, symbol=BTC, side=m.Side.SELL, qty=10, price=650_020))
        ex.submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.BUY, qty=10, price=650_000,
                               stp=m.SelfTradePrevention.EXPIRE_TAKER))
    ex = Exchange(CONFIG)
    scenario(ex)
    copy = Exchange.restore(CONFIG, ex.snapshot())
    amend = m.AmendOrder(account=1, symbol=BTC, order_id=3, price=650_020, qty=10)
    live = ex.submit(amend)
    assert live == copy.submit(amend)
    assert any(type(e) is m.OrderCancelled and e.reason == m.CancelReason.SELF_TRADE
               for e in live)


def test_restore_refuses_what_does_not_belong():
    ex, _ = run_plain(session_commands(seed=2, steps=50))
    data = ex.snapshot()
    other = msgspec.structs.replace(CONFIG, instruments={
        **CONFIG.instruments, BTC: msgspec.structs.replace(CONFIG.instruments[BTC], max_qty=5)})
    with pytest.raises(ValueError, match="different venue config"):
        Exchange.restore(other, data)
    with pytest.raises(ValueError, match="known format"):
        Exchange.restore(CONFIG, m.encoder.encode({"format": 99}))
    snap = msgspec.msgpack.decode(data)
    state = msgspec.msgpack.decode(snap["state"])
    state["a layer this build lacks"] = {}
    snap["state"] = m.encoder.encode(state)
    snap["checksum"] = exchange_module._checksum(snap["state"])
    with pytest.raises(ValueError, match="do not match"):
        Exchange.restore(CONFIG, m.encoder.encode(snap))


def test_restore_checks_the_snapshot_itself():
    """Exchange.restore() refuses damaged state bytes before building anything, and a snapshot
    whose state rebuilds to another hash than it recorded."""
    ex, _ = run_plain(session_commands(seed=2, steps=50))
    data = ex.snapshot()
    assert Exchange.restore(CONFIG, data).state_hash() == ex.state_hash()
    snap = msgspec.msgpack.decode(data)
    state = bytearray(snap["state"])
    state[len(state) // 2] ^= 0x01
    with pytest.raises(ValueError, match="checksum"):
        Exchange.restore(CONFIG, m.encoder.encode({**snap, "state": bytes(state)}))
    with pytest.raises(ValueError, match="different state"):
        Exchange.restore(CONFIG, m.encoder.encode({**snap, "state_hash": "00" * 32}))
    with pytest.raises(ValueError, match="not a perpcore snapshot"):
        Exchange.restore(CONFIG, data[:len(data) // 2])


def test_a_full_disk_during_a_snapshot_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    cmds = session_commands(seed=3, steps=200)
    store, _ = _store_run(tmp_path, cmds[:100], sync="always")
    before = sorted(os.listdir(tmp_path))
    real_write = os.write

    def full(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(sn.SnapshotError, match="disk is full") as err:
        store.checkpoint()
    assert sn.snapshot_name(store.engine.ex.seq) in str(err.value)
    assert sorted(os.listdir(tmp_path)) == before          # no .tmp, no new segment
    # the snapshot written, the manifest naming the new segment not: journaling goes on in the
    # old segment, and the new one (holding nothing) is gone
    monkeypatch.setattr(os, "write", lambda fd, data: (
        full(fd, data) if "MANIFEST" in os.readlink(f"/proc/self/fd/{fd}")
        else real_write(fd, data)))
    with pytest.raises(OSError):
        store.checkpoint()
    assert sorted(os.listdir(tmp_path)) == sorted(before + [sn.snapshot_name(store.engine.ex.seq)])
    monkeypatch.undo()
    for cmd in cmds[100:]:                                   # the store goes on
        store.engine.submit(cmd)
    store.checkpoint()
    store.close()
    again = sn.Store(tmp_path, CONFIG)
    assert again.engine.ex.state_hash() == run_plain(cmds)[0].state_hash()
    again.close()


# ---- the book's own part -----------------------------------------------------------------------

def test_book_load_refuses_bad_lists_and_leaves_the_book_empty():
    good = (1, 7, _book.BUY, 100, 5, 2, 0, False, 0)
    for bad in ([good, good],                                           # duplicate id
                [good, (2, 7, _book.SELL, 100, 5, 0, 0, False, 0)],     # crossed
                [good, (2, 7, _book.BUY, 99, 0, 0, 0, False, 0)],       # empty order
                [(1, 7, _book.BUY, 100, 5, 0, 9, False, 0),
                 (2, 7, _book.BUY, 99, 5, 0, 9, False, 0)]):            # duplicate client id
        book = _book.OrderBook()
        with pytest.raises(ValueError):
            book.load(bad)
        assert len(book) == 0
    book = _book.OrderBook()
    book.load([good])
    with pytest.raises(ValueError, match="empty book"):
        book.load([good])


def test_book_dump_load_keeps_queue_order():
    book = _book.OrderBook()
    for i, (side, price) in enumerate([(0, 100), (0, 101), (0, 100), (1, 105), (1, 104),
                                       (1, 105)], start=1):
        book.place(i, i, side, price, 10, _book.GTC, i % 4, 100 + i)
    book.place(99, 50, _book.SELL, 100, 4)                  # partly fills order 2 (best bid)
    copy = _book.OrderBook()
    copy.load(book.dump())
    assert copy.dump() == book.dump()
    assert copy.resting() == book.resting()
    assert [o[0] for o in copy.resting()] == [2, 1, 3, 5, 4, 6]


# ---- files and the store -----------------------------------------------------------------------

def test_snapshot_file_is_checked(tmp_path):
    ex, _ = run_plain(session_commands(seed=4, steps=100))
    path = sn.write_snapshot(tmp_path, ex)
    assert path.name == sn.snapshot_name(ex.seq) and not list(tmp_path.glob("*.tmp"))
    assert sn.load_snapshot(path, CONFIG).state_hash() == ex.state_hash()
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(sn.SnapshotError, match="damaged"):
        sn.load_snapshot(path, CONFIG)


def _store_run(directory, cmds, checkpoints=(), **options):
    store = sn.Store(directory, CONFIG, **options)
    released = []
    for i, cmd in enumerate(cmds):
        released += store.engine.submit(cmd)
        if i in checkpoints:
            released += store.checkpoint()[1]
    return store, released


def test_store_recovers_snapshot_plus_tail(tmp_path):
    cmds = session_commands(seed=9, steps=900)
    plain, plain_events = run_plain(cmds)
    store, released = _store_run(tmp_path, cmds, checkpoints={300, 700}, sync="group",
                                 group_records=32)
    released += store.close()
    assert released == plain_events
    again = sn.Store(tmp_path, CONFIG)
    r = again.recovery
    assert r.snapshot == sn.snapshot_name(701) and r.replayed == len(cmds) - 701
    assert again.engine.ex.state_hash() == plain.state_hash() and r.last_seq == len(cmds)
    again.close()


def test_store_survives_interrupted_snapshot_and_damaged_newest(tmp_path):
    cmds = session_commands(seed=10, steps=400)
    plain, _ = run_plain(cmds)
    store, _ = _store_run(tmp_path, cmds, checkpoints={100, 250}, sync="always")
    store.close()
    (tmp_path / (sn.snapshot_name(999) + ".tmp")).write_bytes(b"half a snap")  # crash mid-write
    newest = tmp_path / sn.snapshot_name(251)
    newest.write_bytes(newest.read_bytes()[:-10])                               # and media damage
    again = sn.Store(tmp_path, CONFIG)
    r = again.recovery
    assert r.removed_temp_files == [sn.snapshot_name(999) + ".tmp"]
    assert len(r.skipped_snapshots) == 1 and r.snapshot == sn.snapshot_name(101)
    assert again.engine.ex.state_hash() == plain.state_hash()
    again.close()


def crash(store):
    """Leaves a store as a crash after its last commit would: everything durable, no clean
    close recorded in the manifest."""
    store.engine.flush()
    store.engine.journal.close()


def test_store_truncates_a_torn_tail_and_carries_on(tmp_path):
    cmds = session_commands(seed=12, steps=300)
    store, _ = _store_run(tmp_path, cmds[:-20], checkpoints={100}, sync="always")
    crash(store)
    segment = store.segments()[-1][1]
    data = segment.read_bytes()
    segment.write_bytes(data[:-5])                           # the last record is torn
    again = sn.Store(tmp_path, CONFIG, sync="always")
    torn = again.recovery.torn_tail
    assert torn is not None and torn.reason == "torn record"
    assert (tmp_path / torn.kept).read_bytes() == data[torn.valid_bytes:-5]
    assert again.engine.ex.seq == len(cmds) - 21
    for cmd in cmds[-21:]:                                   # the client resends what was unacked
        again.engine.submit(cmd)
    again.close()
    final = sn.Store(tmp_path, CONFIG)
    assert final.recovery.torn_tail is None
    assert final.engine.ex.state_hash() == run_plain(cmds)[0].state_hash()
    final.close()


def test_checkpoints_prune_to_what_recovery_needs(tmp_path):
    cmds = session_commands(seed=13, steps=500)
    store, _ = _store_run(tmp_path, cmds, checkpoints={100, 200, 300, 400}, keep=2, sync="none")
    store.close()
    assert [s for s, _ in store.snapshots()] == [301, 401]
    # the oldest kept snapshot covers up to 301: the segments before 302 are gone
    assert [s for s, _ in store.segments()] == [302, 402]
    again = sn.Store(tmp_path, CONFIG)
    assert again.engine.ex.state_hash() == run_plain(cmds)[0].state_hash()
    again.close()
    # and from the oldest kept snapshot too
    ex = sn.load_snapshot(tmp_path / sn.snapshot_name(301), CONFIG)
    for _, path in store.segments():
        jr.replay(path, ex)
    assert ex.state_hash() == run_plain(cmds)[0].state_hash()


def test_an_interrupted_checkpoint_or_a_second_one_in_a_row_carries_on(tmp_path):
    """A record-less segment after the manifest's newest (a checkpoint interrupted between the
    segment's creation and the manifest's update) is where journaling goes on; two checkpoints
    with no command between them keep one segment."""
    cmds = session_commands(seed=14, steps=100)
    store, _ = _store_run(tmp_path, cmds[:81], checkpoints={80}, sync="always")
    store.checkpoint()
    assert [s for s, _ in store.segments()] == [1, 82]
    crash(store)
    # the checkpoint before the crash had not named its segment yet
    sn.write_manifest(tmp_path, sn.Manifest(sn.segment_name(1), 1, jr.read_header(
        (tmp_path / sn.segment_name(1)).read_bytes()).crc))
    again = sn.Store(tmp_path, CONFIG, sync="always")
    assert again.engine.ex.seq == 81 and again.engine.journal.path.name == sn.segment_name(82)
    assert sn.read_manifest(tmp_path).segment == sn.segment_name(82)
    for cmd in cmds[81:]:
        again.engine.submit(cmd)
    again.close()
    final = sn.Store(tmp_path, CONFIG)
    assert final.engine.ex.state_hash() == run_plain(cmds)[0].state_hash()
    final.close()
