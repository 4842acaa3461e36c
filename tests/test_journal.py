"""The journal: records round-trip every command type, replay reproduces every event and the state
hash, a torn or corrupt tail is found, reported, truncated and never replayed, and sequenced
commands are applied exactly once."""
import os
import zlib
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpcore import Exchange, _journal
from perpcore import journal as jr
from perpcore import messages as m
from perpcore import simulate as sim
from perpcore.config import default_config
from perpcore.exchange import config_digest
from perpcore.messages import RejectCode

CONFIG = default_config()
DIGEST = config_digest(CONFIG)


def session_commands(seed: int, steps: int, config=CONFIG) -> list:
    """The simulator's seeded session: its set-up (accounts, funding, the insurance fund, index
    prices) and `steps` of its flow (makers, takers, index moves, leveraged punters)."""
    session = sim.Session(config, seed)
    return session.setup() + [session.step() for _ in range(steps)]


def run_plain(cmds, config=CONFIG):
    ex = Exchange(config)
    events = []
    for cmd in cmds:
        events += ex.submit(cmd)
    return ex, events


def journaled(path, cmds, **options):
    """Submits cmds through a JournaledExchange on a new journal at path; returns it (closed)
    and every event it released."""
    je = jr.JournaledExchange(Exchange(CONFIG), jr.Journal(path, DIGEST, **options))
    released = []
    for cmd in cmds:
        released += je.submit(cmd)
    released += je.close()
    return je, released


def replayed(path):
    ex = Exchange(CONFIG)
    events = []
    report = jr.replay(path, ex, events.extend)
    return ex, events, report


# ---- every command type ------------------------------------------------------------------------

def _sample(tp):
    """A value of a field's type (an instance of every command type can then be built)."""
    if isinstance(tp, msgspec.inspect.EnumType):
        return list(tp.cls)[-1]
    return {msgspec.inspect.IntType: 7, msgspec.inspect.StrType: "BTC-PERP",
            msgspec.inspect.BoolType: True}[type(tp)]


def every_command_type():
    out = []
    for cls in sorted(m._all_subclasses(m.Command), key=lambda c: c.__name__):
        info = msgspec.inspect.type_info(cls)
        out.append(cls(**{f.name: _sample(f.type) for f in info.fields}))
    return out


def test_every_command_type_round_trips(tmp_path):
    """Each command class that exists (now or added later) is journaled and comes back equal,
    and its replay gives the live run's events."""
    cmds = [m.CreateAccount(account=7)] + every_command_type()
    assert {type(c) for c in cmds} >= set(m._all_subclasses(m.Command))
    je, live = journaled(tmp_path / "j.pcj", cmds, sync="always")
    assert [c for _, c in jr.iter_commands(tmp_path / "j.pcj")] == cmds
    ex, events, report = replayed(tmp_path / "j.pcj")
    assert events == live and report.clean and report.records == len(cmds)
    assert ex.state_hash() == je.ex.state_hash()


# ---- replay reproduces the live run ------------------------------------------------------------

@pytest.mark.parametrize("sync", ["always", "group", "none"])
def test_replay_reproduces_events_and_state(tmp_path, sync):
    cmds = session_commands(seed=11, steps=600)
    plain, plain_events = run_plain(cmds)
    je, released = journaled(tmp_path / "j.pcj", cmds, sync=sync, group_records=16, group_ms=1)
    # journaling changes nothing the exchange does: the same events, released in order
    assert released == plain_events
    assert je.ex.state_hash() == plain.state_hash()
    ex, events, report = replayed(tmp_path / "j.pcj")
    assert events == plain_events
    assert ex.state_hash() == plain.state_hash() and ex.seq == plain.seq == len(cmds)
    assert report.clean and report.first_seq == 1 and report.last_seq == len(cmds)
    assert jr.decode_all(tmp_path / "j.pcj") == len(cmds)


def test_group_commit_holds_events_until_durable(tmp_path):
    """With group commit nothing is released before its record is durable; flush() releases
    the rest, each event carrying its command's seq."""
    cmds = [m.CreateAccount(account=a) for a in range(1, 6)]
    journal = jr.Journal(tmp_path / "j.pcj", DIGEST, sync="group", group_records=1000,
                         group_ms=60_000)
    je = jr.JournaledExchange(Exchange(CONFIG), journal)
    for cmd in cmds:
        assert je.submit(cmd) == []             # neither N records nor T ms: nothing durable yet
    assert je.acknowledged_seq == 0 and je.ex.seq == 5
    released = je.flush()
    assert [e.seq for e in released] == [1, 2, 3, 4, 5] and je.acknowledged_seq == 5
    assert je.poll() == []
    je.close()


def test_group_commit_by_count_and_by_time(tmp_path):
    # by count: the flusher commits once group_records are waiting
    je = jr.JournaledExchange(Exchange(CONFIG), jr.Journal(
        tmp_path / "a.pcj", DIGEST, sync="group", group_records=3, group_ms=60_000))
    for a in range(1, 4):
        je.submit(m.CreateAccount(account=a))
    _wait_for(lambda: je.journal.committed_seq == 3)
    assert [e.seq for e in je.poll()] == [1, 2, 3]
    je.close()
    # by time: one record, far below the count, is committed once it has waited group_ms
    je = jr.JournaledExchange(Exchange(CONFIG), jr.Journal(
        tmp_path / "b.pcj", DIGEST, sync="group", group_records=1000, group_ms=5))
    assert je.submit(m.CreateAccount(account=1)) == []
    _wait_for(lambda: je.journal.committed_seq == 1)
    assert [e.seq for e in je.poll()] == [1]
    je.close()


def _wait_for(condition, timeout=5.0):
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the flusher did not commit in time"
        time.sleep(0.001)


def test_failed_commit_is_never_acknowledged(tmp_path):
    """If the disk refuses a write, nothing after it is acknowledged and the engine stops."""
    journal = jr.Journal(tmp_path / "j.pcj", DIGEST, sync="group", group_records=1000,
                         group_ms=60_000)
    je = jr.JournaledExchange(Exchange(CONFIG), journal)
    je.submit(m.CreateAccount(account=1))
    full = os.open("/dev/full", os.O_WRONLY)         # every write: ENOSPC
    os.dup2(full, journal.fd)
    os.close(full)
    with pytest.raises(jr.JournalError, match="No space"):
        je.flush()
    assert je.acknowledged_seq == 0 and journal.committed_seq == 0
    # fail-stop: the command is refused, not applied, and so is every later one
    for account in (2, 3):
        (event,) = je.submit(m.CreateAccount(account=account))
        assert event.code == RejectCode.ENGINE_HALTED and "No space" in event.reason
    assert je.ex.seq == 1 and je.ex.halted.seq == 2 and je.ex.halted.command == "CreateAccount"
    with pytest.raises(jr.JournalError):
        je.close()


# ---- malformed commands are never journaled -----------------------------------------------------

def test_malformed_and_ill_typed_commands_are_refused_unsequenced_and_not_journaled(tmp_path):
    cmds_and_bytes = [
        m.CreateAccount(account=1),
        m.PlaceOrder(account=1, symbol="BTC-PERP", side=m.Side.BUY, qty=100, price=65000.5),
        m.PlaceOrder(account=1, symbol="BTC-PERP", side=m.Side.BUY, qty=True, price=650000),
        m.CreateAccount(account=-4),
        b"\x93\xa3not a command",                   # bytes from a gateway that do not decode
        m.encoder.encode(m.CreateAccount(account=2)),  # bytes that do
        m.OrderRejected(0, 0, RejectCode.MALFORMED, "an event is not a command"),
    ]
    je = jr.JournaledExchange(Exchange(CONFIG), jr.Journal(tmp_path / "j.pcj", DIGEST,
                                                            sync="always"))
    live = []
    for item in cmds_and_bytes:
        live += je.submit_bytes(item) if type(item) is bytes else je.submit(item)
    je.close()
    refused = [e for e in live if type(e) is m.OrderRejected]
    assert len(refused) == 5 and {e.code for e in refused} == {RejectCode.MALFORMED,
                                                              RejectCode.UNKNOWN_COMMAND}
    assert [e.seq for e in refused] == [1, 1, 1, 1, 2]     # none of them took a sequence number
    ex, events, report = replayed(tmp_path / "j.pcj")
    assert report.records == 2 and events == [e for e in live if type(e) is not m.OrderRejected]
    assert ex.state_hash() == je.ex.state_hash() and ex.accounts() == [1, 2]


def test_what_cannot_be_journaled_is_refused_before_it_is_sequenced(tmp_path):
    je = jr.JournaledExchange(Exchange(CONFIG), jr.Journal(tmp_path / "j.pcj", DIGEST,
                                                            sync="always"))
    for bad, code in (({"account": 1}, RejectCode.UNKNOWN_COMMAND),
                      (m.CreateAccount(account=2**70), RejectCode.MALFORMED)):
        (event,) = je.submit(bad)
        assert event.code == code
    assert je.ex.seq == 0 and je.journal.last_seq == 0
    je.close()


# ---- sequenced input: never applied twice ------------------------------------------------------

def test_sequenced_commands_are_applied_exactly_once():
    ex = Exchange(CONFIG)
    assert type(ex.submit(m.CreateAccount(account=1), seq=1)[0]) is m.AccountCreated
    before = ex.state_hash()
    (replay_event,) = ex.submit(m.CreateAccount(account=2), seq=1)
    assert replay_event.code == RejectCode.SEQUENCE_REPLAYED
    (gap_event,) = ex.submit(m.CreateAccount(account=2), seq=3)
    assert gap_event.code == RejectCode.SEQUENCE_GAP
    (bytes_gap,) = ex.submit_bytes(m.encoder.encode(m.CreateAccount(account=2)), seq=5)
    assert bytes_gap.code == RejectCode.SEQUENCE_GAP
    (garbage,) = ex.submit_bytes(b"\xc1", seq=2)   # refused before any sequence check
    assert garbage.code == RejectCode.MALFORMED
    assert ex.seq == 1 and ex.state_hash() == before and ex.accounts() == [1]
    assert type(ex.submit(m.CreateAccount(account=2), seq=2)[0]) is m.AccountCreated


def test_replaying_a_journal_twice_applies_it_once(tmp_path):
    cmds = session_commands(seed=3, steps=200)
    je, _ = journaled(tmp_path / "j.pcj", cmds, sync="none")
    ex, events, _ = replayed(tmp_path / "j.pcj")
    again = []
    jr.replay(tmp_path / "j.pcj", ex, again.extend)     # every record is at or below ex.seq
    assert again == [] and ex.seq == len(cmds) and ex.state_hash() == je.ex.state_hash()
    # one record pushed at an exchange that already has it is refused as replayed
    seq, payload = jr.read(tmp_path / "j.pcj")[1][10]
    (event,) = jr.apply(ex, seq, payload)
    assert event.code == RejectCode.SEQUENCE_REPLAYED and ex.seq == len(cmds)


def test_journaled_exchange_refuses_out_of_order_input_without_journaling(tmp_path):
    je = jr.JournaledExchange(Exchange(CONFIG), jr.Journal(tmp_path / "j.pcj", DIGEST,
                                                            sync="always"))
    je.submit(m.CreateAccount(account=1), seq=1)
    (event,) = je.submit(m.CreateAccount(account=2), seq=1)
    assert event.code == RejectCode.SEQUENCE_REPLAYED
    (event,) = je.submit_bytes(m.encoder.encode(m.CreateAccount(account=2)), seq=4)
    assert event.code == RejectCode.SEQUENCE_GAP
    je.close()
    assert jr.read(tmp_path / "j.pcj")[2].records == 1


def test_a_journal_from_another_venue_config_is_refused(tmp_path):
    je, _ = journaled(tmp_path / "j.pcj", [m.CreateAccount(account=1)], sync="always")
    other = msgspec.structs.replace(CONFIG, instruments={
        **CONFIG.instruments,
        "BTC-PERP": msgspec.structs.replace(CONFIG.instruments["BTC-PERP"], max_qty=5)})
    with pytest.raises(jr.JournalError):
        jr.replay(tmp_path / "j.pcj", Exchange(other))
    with pytest.raises(jr.JournalError):
        jr.Journal(tmp_path / "j.pcj", config_digest(other))


def test_a_replay_with_missing_commands_is_refused(tmp_path):
    # a journal that starts at 5 cannot be applied to an exchange at 0
    path = tmp_path / "j.pcj"
    with jr.Journal(path, DIGEST, first_seq=5, sync="always") as journal:
        journal.append(5, m.encoder.encode(m.CreateAccount(account=1)))
    with pytest.raises(jr.JournalError):
        jr.replay(path, Exchange(CONFIG))


# ---- torn and corrupt tails --------------------------------------------------------------------

def _written(tmp_path, n=40):
    cmds = session_commands(seed=5, steps=n)[:n]
    path = tmp_path / "j.pcj"
    journaled(path, cmds, sync="none")
    data = path.read_bytes()
    return cmds, path, data, _record_ends(data)


def _record_ends(data):
    ends, off = [], jr.HEADER_SIZE
    while off < len(data):
        off += 8 + int.from_bytes(data[off:off + 4], "little")
        ends.append(off)
    return ends


def test_torn_tail_is_reported_truncated_and_not_replayed(tmp_path):
    cmds, path, data, ends = _written(tmp_path)
    cut = ends[-2] + 11                     # the last record stops 11 bytes in
    path.write_bytes(data[:cut])
    ex, events, report = replayed(path)
    assert report.records == len(cmds) - 1 and report.dropped_bytes == 11
    assert report.reason == "torn record" and ex.seq == len(cmds) - 1
    assert ex.state_hash() == run_plain(cmds[:-1])[0].state_hash()
    # opening it for writing moves the tail aside, and appending carries on from the last good seq
    je = jr.JournaledExchange(ex, jr.Journal(path, DIGEST, sync="always"))
    kept = je.journal.recovery.kept
    assert msgspec.structs.replace(je.journal.recovery, kept="") == report
    assert path.stat().st_size == ends[-2] and (tmp_path / kept).read_bytes() == data[ends[-2]:cut]
    je.submit(cmds[-1])
    je.close()
    ex2, _, report2 = replayed(path)
    assert report2.clean and ex2.state_hash() == run_plain(cmds)[0].state_hash()


@pytest.mark.parametrize("damage, reason", [
    ("flip", "CRC mismatch"), ("zeros", "impossible record length"),
    ("length", "torn record"), ("header", "torn record header")])
def test_a_damaged_tail_with_nothing_intact_after_it_is_torn(tmp_path, damage, reason):
    cmds, path, data, ends = _written(tmp_path)
    bad = 25                                         # records 0..24 stay good
    start = ends[bad - 1]
    buf = bytearray(data[:ends[bad]])                # the damaged record is the last one
    if damage == "flip":
        buf[start + 20] ^= 0x40
    elif damage == "zeros":
        buf[start:] = bytes(4096)
    elif damage == "length":
        buf[start:start + 4] = (1 << 20).to_bytes(4, "little")
    else:
        del buf[start + 5:]
    path.write_bytes(bytes(buf))
    _, records, report = jr.read(path)
    assert report.reason == reason and len(records) == bad
    assert report.valid_bytes == start and report.last_seq == bad
    ex, _, _ = replayed(path)
    assert ex.state_hash() == run_plain(cmds[:bad])[0].state_hash()


@pytest.mark.parametrize("where", ["body", "crc", "length", "seq", "zeros"])
def test_damage_followed_by_intact_records_is_corruption(tmp_path, where):
    """Whichever field of a record is hit, the intact records after it are found: the journal
    is refused (naming file, offset and commands), never cut, and opening it changes nothing."""
    cmds, path, data, ends = _written(tmp_path)
    start = ends[9]                                  # the record of command 11
    buf = bytearray(data)
    if where == "zeros":
        buf[start:start + 30] = bytes(30)
    else:
        buf[start + {"length": 1, "crc": 6, "seq": 9, "body": 30}[where]] ^= 0x10
    path.write_bytes(bytes(buf))
    for attempt in (lambda: jr.read(path), lambda: jr.Journal(path, DIGEST, sync="always")):
        with pytest.raises(jr.JournalError, match="intact records follow") as err:
            attempt()
        assert err.value.path == str(path) and err.value.offset == start
        assert err.value.seqs == (11, None) and "command 11" in str(err.value)
        assert path.read_bytes() == bytes(buf) and os.listdir(tmp_path) == ["j.pcj"]


def test_records_are_chained(tmp_path):
    """A record dropped, two swapped, or one copied from another journal: each is refused even
    though every record's own bytes are intact."""
    payloads = [m.encoder.encode(m.AdvanceClock(ts=t)) for t in range(1, 8)]
    blob = jr.encode_segment(DIGEST, 1, payloads)
    ends = _record_ends(blob)
    recs = [blob[a:b] for a, b in zip([jr.HEADER_SIZE] + ends, ends)]
    other = jr.encode_segment(DIGEST, 1, payloads, prev_chain=99)
    other_recs = [other[a:b] for a, b in zip([jr.HEADER_SIZE] + ends, ends)]
    head = blob[:jr.HEADER_SIZE]
    for damaged in (head + b"".join(recs[:3] + recs[4:]),              # one dropped
                    head + b"".join(recs[:4] + recs[3:]),              # one written twice
                    head + b"".join(recs[:3] + [recs[4], recs[3]] + recs[5:]),   # swapped
                    head + b"".join(recs[:3] + [other_recs[3]] + recs[4:])):     # spliced in
        with pytest.raises(jr.JournalError, match="intact records follow"):
            jr.scan(damaged)
    assert jr.scan(head + b"".join(recs))[2].clean
    # a record rebuilt from its CRC backwards names its predecessor's CRC
    assert _journal.unchained(int.from_bytes(recs[4][4:8], "little"), recs[4]) == \
        int.from_bytes(recs[3][4:8], "little")


@pytest.mark.parametrize("sync", ["always", "group", "none"])
def test_the_writer_carries_the_chain_across_groups_and_reopens(tmp_path, sync):
    """Whoever seals (the flusher in "group" mode, the engine thread otherwise) continues the
    chain from group to group and from a reopened segment's last record: the file is exactly the
    reference encoding, and `chain` is the last record's CRC."""
    path = tmp_path / "j.pcj"
    payloads = [bytes([i % 256]) * (i % 29 + 1) for i in range(300)]
    for part in (payloads[:170], payloads[170:]):
        journal = jr.Journal(path, DIGEST, prev_chain=0xC0FFEE, sync=sync, group_records=7)
        assert journal.chain == jr.read(path)[2].chain
        for payload in part:
            journal.append(journal.last_seq + 1, payload)
            if journal.last_seq % 50 == 0:
                journal.commit()
        journal.close()
    expected = jr.encode_segment(DIGEST, 1, payloads, prev_chain=0xC0FFEE)
    assert path.read_bytes() == expected
    assert journal.chain == int.from_bytes(expected[-len(payloads[-1]) - 12:][:4], "little")


def test_a_record_out_of_sequence_ends_the_valid_journal():
    payload = m.encoder.encode(m.AdvanceClock(ts=1))
    first = jr.encode_segment(DIGEST, 1, [payload])
    chain = jr.scan(first)[2].chain
    _, records, report = jr.scan(first + jr.encode_record(3, payload, chain))
    assert len(records) == 1 and report.reason == "sequence number out of order"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=12), st.data())
def test_scan_keeps_the_intact_prefix_or_refuses(payloads, data):
    """Against a plain model: cut the bytes anywhere and scan keeps exactly the records that end
    before the cut; flip any bit and it keeps those before the damaged record if that record is
    the last, and otherwise refuses at the damaged record."""
    blob = jr.encode_segment(DIGEST, 1, payloads)
    ends = _record_ends(blob)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(jr.HEADER_SIZE, len(blob)))
        damaged, first_bad = blob[:cut], cut
    else:
        pos = data.draw(st.integers(jr.HEADER_SIZE, len(blob) - 1))
        damaged = bytearray(blob)
        damaged[pos] ^= 1 << data.draw(st.integers(0, 7))
        damaged, first_bad = bytes(damaged), pos
    intact = [i for i, end in enumerate(ends) if end <= first_bad]
    start = ends[len(intact) - 1] if intact else jr.HEADER_SIZE
    if len(damaged) == len(blob) and len(intact) < len(payloads) - 1:
        with pytest.raises(jr.JournalError) as err:
            jr.scan(damaged)
        assert err.value.offset == start and err.value.seqs == (len(intact) + 1, None)
        return
    _, records, report = jr.scan(damaged)
    assert len(records) == len(intact)
    assert [bytes(p) for _, p in records] == payloads[:len(intact)]
    assert report.valid_bytes == start


@given(st.binary(max_size=300))
def test_crc32_is_zlibs(data):
    assert _journal.crc32(data) == zlib.crc32(data)


def test_not_a_journal(tmp_path):
    path = tmp_path / "x.pcj"
    path.write_bytes(b"something else entirely, long enough for a header")
    with pytest.raises(jr.JournalError):
        jr.read(path)


@pytest.mark.parametrize("field, at", [("magic", 3), ("digest", 12), ("first seq", 25),
                                       ("first seq top byte", 31), ("chain", 34), ("crc", 38)])
def test_a_header_that_does_not_check_out_is_a_journal_error(tmp_path, field, at):
    """Any flipped header bit is a JournalError at offset 0 (never OverflowError or
    struct.error), read-only or opened for writing, and the file is left as it was."""
    path = tmp_path / "j.pcj"
    blob = bytearray(jr.encode_segment(DIGEST, 1, [b"\x91\x01"] * 3))
    blob[at] ^= 0x80
    path.write_bytes(bytes(blob))
    for attempt in (lambda: jr.read(path), lambda: jr.Journal(path, DIGEST, sync="always")):
        with pytest.raises(jr.JournalError) as err:
            attempt()
        assert err.value.offset == 0 and path.read_bytes() == bytes(blob)


def test_a_header_with_an_impossible_first_seq_is_a_journal_error():
    with pytest.raises(jr.JournalError, match="impossible"):
        jr.read_header(jr.encode_header(DIGEST, 1 << 63))
