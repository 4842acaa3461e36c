"""Snapshots carry the replicated log's position (format 03) and the older format still loads."""
import struct
import zlib

import msgspec

from perpcore import messages as m
from perpcore.exchange import Exchange
from perpcore.snapshot import (LogPosition, Store, load_snapshot, read_snapshot, snapshot_name,
                               write_snapshot)

from .conftest import CONFIG


def _exchange() -> Exchange:
    ex = Exchange(CONFIG)
    ex.submit(m.CreateAccount(account=1))
    ex.submit(m.Deposit(account=1, asset="USD", amount=5, transfer_id=1))
    return ex


def test_a_snapshot_records_its_log_position(tmp_path):
    ex = _exchange()
    path = write_snapshot(tmp_path, ex, chain=7, log_position=LogPosition(41, 3))
    info, _ = read_snapshot(path)
    assert (info.seq, info.chain, info.log_position) == (2, 7, LogPosition(41, 3))
    assert load_snapshot(path, CONFIG).state_hash() == ex.state_hash()


def test_a_snapshot_of_the_format_before_loads_at_position_zero(tmp_path):
    ex = _exchange()
    data = ex.snapshot()
    digest = msgspec.msgpack.decode(data)["state_hash"]
    rest = struct.pack("<QQ32sI", len(data), ex.seq, bytes.fromhex(digest), 0) + data
    (tmp_path / snapshot_name(ex.seq)).write_bytes(
        b"PCSNAP02" + struct.pack("<I", zlib.crc32(rest)) + rest)
    info, _ = read_snapshot(tmp_path / snapshot_name(ex.seq))
    assert info.log_position == LogPosition() and info.seq == ex.seq
    assert load_snapshot(tmp_path / snapshot_name(ex.seq), CONFIG).state_hash() == \
        ex.state_hash()


def test_a_store_checkpoint_carries_the_position_to_recovery(tmp_path):
    store = Store(tmp_path, CONFIG, sync="none")
    store.engine.submit(m.CreateAccount(account=1))
    store.checkpoint(LogPosition(5, 1))
    store.engine.submit(m.CreateAccount(account=2))
    store.close()
    store = Store(tmp_path, CONFIG, sync="none")
    try:
        # the position of the snapshot recovery started from; the journal after it replayed
        assert store.recovery.log_position == LogPosition(5, 1)
        assert store.engine.ex.seq == 2
    finally:
        store.close()
