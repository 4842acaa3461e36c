"""The corruption matrix: a store is damaged every way a disk or an operator can damage it, and
each case has its documented outcome (perpcore/snapshot.py's docstring):

- it opens, reporting a torn tail when there was one (kept beside the segment), in exactly the
  state of an uninterrupted run over the commands it recovered; or
- it refuses with a JournalError naming the file, the offset and the commands at risk, and every
  file is left byte-identical.

Two stores are damaged: one closed cleanly (the manifest records where the journal ended) and one
that crashed after its last commit (its newest segment began at a checkpoint, so the manifest
records no end for it). Every command in them was acknowledged, so a
recovery that opens with fewer commands must say so (a torn tail), except for the cases the
docstring names as undetectable after a crash (a cut at a record boundary, an older copy of the
newest segment, damage confined to its last record), which are asserted as such."""
import random
import shutil
import zlib
from pathlib import Path

import msgspec
import pytest

from perpcore import Exchange
from perpcore import journal as jr
from perpcore import snapshot as sn
from test_journal import CONFIG, session_commands

STEPS = 600
CHECKPOINTS = {150, 400}        # command indexes after which the store checkpoints
SEGMENTS = 3


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(commands, state hash after each prefix, {"closed"|"crashed": template store dir}, the
    crashed store's newest segment as it was halfway through, a foreign store's newest segment)."""
    cmds = session_commands(seed=31, steps=STEPS)
    ex, hashes = Exchange(CONFIG), []
    hashes.append(ex.state_hash())
    for cmd in cmds:
        ex.submit(cmd)
        hashes.append(ex.state_hash())
    base = tmp_path_factory.mktemp("stores")
    templates, older = {}, None
    for kind in ("closed", "crashed"):
        store = sn.Store(base / kind, CONFIG, sync="group", group_records=16)
        for i, cmd in enumerate(cmds):
            store.engine.submit(cmd)
            if i in CHECKPOINTS:
                store.checkpoint()
            if i == len(cmds) - 60 and kind == "crashed":
                store.engine.flush()
                older = store.engine.journal.path.read_bytes()
        if kind == "closed":
            store.close()
        else:
            store.engine.flush()                # a crash after the last commit
            store.engine.journal.close()
        templates[kind] = base / kind
    other = sn.Store(base / "other", CONFIG, sync="none")
    for cmd in session_commands(seed=32, steps=STEPS // 3):
        other.engine.submit(cmd)
    other.close()
    assert len(store.segments()) == SEGMENTS and len(store.snapshots()) == 2
    return cmds, hashes, templates, older, other.segments()[-1][1].read_bytes()


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _store(tmp_path, world, kind) -> Path:
    d = tmp_path / kind
    shutil.copytree(world[2][kind], d)
    return d


def _segment(d: Path, i: int) -> Path:
    return sn.list_segments(d)[i][1]


def _record_starts(data: bytes) -> list[int]:
    """The offset of each record, and the end."""
    seg = jr.Segment(data)
    return [jr.HEADER_SIZE] + [end for _, end in seg.spans.tolist()]


def refused(d: Path, name: str | None = None, offset: int | None = None,
            first_at_risk: int | None = None) -> jr.JournalError:
    """Opening the store raises JournalError naming the file (`name`), the offset and the first
    command at risk, and changes no file."""
    before = _files(d)
    with pytest.raises(jr.JournalError) as err:
        sn.Store(d, CONFIG, sync="none")
    e = err.value
    assert _files(d) == before
    if name is not None:
        assert e.path is not None and Path(e.path).name == name and name in str(e)
    if offset is not None:
        assert e.offset == offset and str(offset) in str(e)
    if first_at_risk is not None:
        assert e.seqs[0] == first_at_risk and str(first_at_risk) in str(e)
    return e


def opens(d: Path, world, seq: int, torn: bool = False) -> sn.RecoveryReport:
    """Opening the store recovers exactly `seq` commands, in the uninterrupted run's state, with
    a torn tail reported (and its bytes kept) exactly when `torn`."""
    store = sn.Store(d, CONFIG, sync="none")
    r = store.recovery
    assert store.engine.ex.seq == seq and store.engine.ex.state_hash() == world[1][seq]
    assert (r.torn_tail is not None) == torn
    if torn:
        assert (d / r.torn_tail.kept).stat().st_size == r.torn_tail.dropped_bytes
    store.close()
    return r


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


# ---- truncation --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["closed", "crashed"])
def test_truncating_the_newest_segment_at_random_offsets(tmp_path, world, kind):
    """Closed cleanly: any cut is refused (the manifest knows the end). Crashed: a cut inside the
    header is refused (the segment is emptied); a cut elsewhere is what a crash before those
    bytes were written leaves: it opens with the records before the cut, and a cut inside a
    record is reported as a torn tail."""
    n = len(world[0])
    rng = random.Random(f"truncate {kind}")
    template = _store(tmp_path, world, kind)
    newest = _segment(template, -1)
    data = newest.read_bytes()
    starts = _record_starts(data)
    first_seq = jr.read_header(data).first_seq
    offsets = sorted({rng.randrange(0, len(data)) for _ in range(14)} | {0, 20, jr.HEADER_SIZE,
                                                                        starts[-2], len(data) - 1})
    for cut in offsets:
        d = tmp_path / f"cut-{cut}"
        shutil.copytree(template, d)
        _segment(d, -1).write_bytes(data[:cut])
        whole = sum(end <= cut for end in starts[1:])       # records wholly before the cut
        if cut < jr.HEADER_SIZE:
            refused(d, newest.name, 0, first_seq)
        elif kind == "closed":
            refused(d, newest.name, starts[whole], first_seq + whole)
        else:
            opens(d, world, first_seq - 1 + whole, torn=cut not in starts)
    assert first_seq - 1 + len(starts) - 1 == n


def test_a_cut_below_what_the_last_open_saw_is_refused(tmp_path, world):
    """Opening the store records the end it found in the manifest: a crash after that and a cut
    at a record boundary below it (which the segment alone cannot tell from a crash) is found."""
    d = _store(tmp_path, world, "crashed")
    store = sn.Store(d, CONFIG, sync="always")
    store.engine.journal.close()                # then a crash
    newest = _segment(d, -1)
    data = newest.read_bytes()
    starts = _record_starts(data)
    first_seq = jr.read_header(data).first_seq
    newest.write_bytes(data[:starts[-5]])
    refused(d, newest.name, starts[-5], first_seq + len(starts) - 5)


@pytest.mark.parametrize("kind", ["closed", "crashed"])
def test_truncating_an_older_segment_is_refused(tmp_path, world, kind):
    template = _store(tmp_path, world, kind)
    older = _segment(template, 1)
    data = older.read_bytes()
    starts = _record_starts(data)
    first_seq = jr.read_header(data).first_seq
    rng = random.Random(f"older {kind}")
    for cut in sorted({rng.randrange(jr.HEADER_SIZE, len(data)) for _ in range(5)} | {starts[-2]}):
        d = tmp_path / f"cut-{cut}"
        shutil.copytree(template, d)
        _segment(d, 1).write_bytes(data[:cut])
        whole = sum(end <= cut for end in starts[1:])
        e = refused(d, first_at_risk=first_seq + whole)
        # a cut inside a record names it in that segment; one at a record boundary is found
        # where the next segment no longer continues it
        assert Path(e.path).name == (older.name if cut not in starts else
                                     _segment(template, 2).name)


# ---- bit flips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["closed", "crashed"])
@pytest.mark.parametrize("which", [-1, 0, 1])
def test_a_flipped_bit_inside_a_segment(tmp_path, world, kind, which):
    """A flip in any record but the newest segment's last is refused at that record's offset,
    naming its command, whichever of its bytes it hits. A flip in the newest segment's last
    record is refused after a clean close and, after a crash, is a torn tail (documented: it
    cannot be told from a torn write)."""
    template = _store(tmp_path, world, kind)
    seg = _segment(template, which)
    data = seg.read_bytes()
    starts = _record_starts(data)
    first_seq = jr.read_header(data).first_seq
    rng = random.Random(f"flip {kind} {which}")
    middle = len(starts) // 2
    positions = {starts[middle] + k for k in (0, 5, 9, 17)}                 # each field
    positions |= {rng.randrange(jr.HEADER_SIZE, starts[-2]) for _ in range(6)}
    positions |= {starts[-2] + 3, len(data) - 1}                           # the last record
    for pos in sorted(positions):
        d = tmp_path / f"flip-{pos}"
        shutil.copytree(template, d)
        _flip(_segment(d, which), pos, rng.randrange(8))
        record = sum(start <= pos for start in starts[:-1]) - 1
        if record == len(starts) - 2 and which == -1 and kind == "crashed":
            opens(d, world, first_seq + record - 1, torn=True)
        else:
            refused(d, seg.name, starts[record], first_seq + record)


@pytest.mark.parametrize("which", [-1, 1])
@pytest.mark.parametrize("field, at", [("magic", 2), ("config digest", 15), ("first seq", 24),
                                       ("chain", 33), ("header CRC", 37)])
def test_a_flipped_header_field_is_refused(tmp_path, world, which, field, at):
    d = _store(tmp_path, world, "crashed")
    seg = _segment(d, which)
    _flip(seg, at, 3)
    refused(d, seg.name, 0)


# ---- the newest segment gone, emptied or replaced ----------------------------------------------

@pytest.mark.parametrize("kind", ["closed", "crashed"])
@pytest.mark.parametrize("how", ["deleted", "emptied", "foreign", "older copy", "older segment"])
def test_the_newest_segment_missing_emptied_or_replaced(tmp_path, world, kind, how):
    """Deleted, emptied, or replaced by a segment of another store or by the previous segment:
    refused. Replaced by an older copy of itself (fewer records): refused after a clean close; after
    a crash it is a cut at a record boundary (documented as undetectable) and opens with the
    commands the copy holds."""
    d = _store(tmp_path, world, kind)
    newest = _segment(d, -1)
    first_seq = jr.read_header(newest.read_bytes()).first_seq
    if how == "deleted":
        newest.unlink()
    elif how == "emptied":
        newest.write_bytes(b"")
    elif how == "foreign":
        newest.write_bytes(world[4])
    elif how == "older segment":
        newest.write_bytes(_segment(d, 1).read_bytes())
    else:
        newest.write_bytes(world[3])
    kept = first_seq - 1 + len(_record_starts(world[3])) - 1      # the commands the copy holds
    if how == "older copy" and kind == "crashed":
        opens(d, world, kept)
    else:
        refused(d, newest.name, first_at_risk=kept + 1 if how == "older copy" else first_seq)


def test_a_segment_from_another_history_breaks_the_chain(tmp_path, world):
    """The middle segment replaced by one holding the same commands, every record intact, but
    continuing another history's chain: refused where it no longer continues its predecessor."""
    d = _store(tmp_path, world, "closed")
    middle = _segment(d, 1)
    header = jr.read_header(middle.read_bytes())
    middle.write_bytes(jr.encode_segment(header.digest, header.first_seq,
                                         [bytes(p) for _, p in jr.read(middle)[1]],
                                         prev_chain=header.prev_chain ^ 1))
    refused(d, middle.name, 0, header.first_seq)


def test_the_manifest_missing_or_damaged_is_refused(tmp_path, world):
    d = _store(tmp_path, world, "closed")
    manifest = d / sn.MANIFEST
    _flip(manifest, len(manifest.read_bytes()) - 2)
    refused(d, sn.MANIFEST, 0)
    manifest.unlink()
    refused(d, sn.MANIFEST)


# ---- snapshots ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["closed", "crashed"])
def test_damaged_snapshots_are_skipped_and_recovery_goes_further_back(tmp_path, world, kind):
    """A damaged newest snapshot (its file, or its state with the file's CRC fixed up, which only
    Exchange.restore() catches) is skipped and reported; recovery starts from the older one, or
    from an empty exchange when both are damaged, and reaches the same state."""
    n = len(world[0])
    rng = random.Random(f"snapshots {kind}")
    d = _store(tmp_path, world, kind)
    (old_seq, old), (new_seq, new) = sn.list_snapshots(d)
    _flip(new, rng.randrange(60, new.stat().st_size))
    r = opens(d, world, n)
    assert r.snapshot == old.name and len(r.skipped_snapshots) == 1
    # the older one damaged inside its state, its file header still consistent
    info, data = sn.read_snapshot(old)
    snap = msgspec.msgpack.decode(data)
    state = bytearray(snap["state"])
    state[len(state) // 3] ^= 0x20
    snap["state"] = bytes(state)
    data = msgspec.msgpack.encode(snap)
    rest = (len(data).to_bytes(8, "little") + old_seq.to_bytes(8, "little")
            + bytes.fromhex(info.state_hash) + info.chain.to_bytes(4, "little")
            + info.log_position.entry_seq.to_bytes(8, "little")
            + info.log_position.offset.to_bytes(8, "little") + data)
    old.write_bytes(sn.MAGIC + zlib.crc32(rest).to_bytes(4, "little") + rest)
    with pytest.raises(sn.SnapshotError, match="checksum"):
        sn.load_snapshot(old, CONFIG)
    r = opens(d, world, n)
    assert r.snapshot == "" and len(r.skipped_snapshots) == 2


def test_a_snapshot_the_journal_does_not_continue_is_refused(tmp_path, world):
    """A snapshot of another history at the same sequence number (valid in itself): the journal
    after it does not continue its chain."""
    d = _store(tmp_path, world, "closed")
    seq, path = sn.list_snapshots(d)[-1]
    ex = Exchange(CONFIG)
    for cmd in world[0][:seq]:
        ex.submit(cmd)
    path.unlink()
    sn.write_snapshot(d, ex, chain=7)
    refused(d, _segment(d, -1).name, first_at_risk=seq + 1)
