"""Snapshots of the whole exchange state, and the store that recovers from snapshot + journal.

A snapshot file holds Exchange.snapshot() (books, accounts, every component's state, clock and
sequence number; its state bytes carry their own checksum and the state hash, which
Exchange.restore() checks) behind a small header: magic, CRC32, length, the sequence number it
covers, the state hash it must restore to, and the journal's chain value at that sequence number
(the CRC of its record, which the journal after it continues), and the position in a replicated
log (perpcore.replication) that state is at, `LogPosition` (the older format without it still
loads, at position (0, 0)). It is written to a temporary file,
fsynced, renamed over its final name and the directory fsynced, so a crash leaves either the whole
snapshot or none; a full disk is a SnapshotError and leaves no temporary file behind.

A store is one directory:

    snapshot-<seq>.pcs          the state after command <seq>
    journal-<first seq>.pcj     journal segments (perpcore.journal); a new one starts at each
                                checkpoint, its header continuing the previous one's chain
    MANIFEST.pcm                where the journal ends (below)
    *.torn-<offset>             torn tails moved aside by recovery (never deleted)
    repaired-<time>/            what `perpcore store repair` cut off

The manifest ("PCMANI01", CRC32, msgpack) names the newest segment, its first sequence number and
its header's CRC, and the last command that segment is known to hold, with its record's CRC: the
end recovery found when the store was last opened, or the end at a clean close. It is replaced
atomically (temporary file, fsync, rename, directory fsync) when a segment is created (after the
segment's header is durable), when the store is opened and at a clean close. It is what lets
recovery find a newest segment that is missing, emptied or replaced (its header differs), or that
lost records the store had already seen (cut, or replaced by an older copy of itself).

Recovery checks every segment in the store (header, chained records, each segment continuing the
one before it), loads the newest snapshot that checks out and applies the journal records after
it, having checked that the journal continues that snapshot's chain; the result has the same
state_hash() as a run that never stopped. Only the newest segment may end in a torn tail (a write
the crash interrupted: reported, not replayed, and moved aside when the store is opened); any other
damage (a bad record with intact ones after it, a damaged or missing segment, a broken chain, a
newest segment shorter than the manifest's clean-close end) raises JournalError naming the file,
the offset and the commands at risk, and nothing is changed: `perpcore store verify` shows the
store's state and `perpcore store repair --truncate-after SEQ` cuts the journal back, keeping what
it cuts. What cannot be detected: past the manifest's known end (the commands journaled since
the store was last opened, or since the newest segment began), a newest segment cut at a record
boundary or replaced by an older copy of itself looks like a crash before those bytes were
written, and one damaged only in its last record like a torn write (reported); a run with sync
"none" promises nothing after a machine crash.

A checkpoint commits the journal, writes a snapshot, starts a new segment and deletes the
snapshots and segments no longer needed to recover from the `keep` newest snapshots.
"""
from __future__ import annotations

import errno
import os
import re
import struct
import time
import zlib
from pathlib import Path

import msgspec

from perpcore import journal as jr
from perpcore.config import VenueConfig
from perpcore.errors import Halt
from perpcore.exchange import Exchange, config_digest

MAGIC = b"PCSNAP03"
# magic, CRC32 of the rest, length, seq, state hash, the journal's chain value at seq, the
# replicated log's position (entry, offset)
_HEADER = struct.Struct("<8sIQQ32sIQQ")
_MAGIC_V2 = b"PCSNAP02"                     # before the log position: still read
_HEADER_V2 = struct.Struct("<8sIQQ32sI")
_SNAPSHOT = re.compile(r"snapshot-(\d{20})\.pcs")
_SEGMENT = re.compile(r"journal-(\d{20})\.pcj")
MANIFEST = "MANIFEST.pcm"
_MANIFEST_MAGIC = b"PCMANI01"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class SnapshotError(Exception):
    """A snapshot file that is damaged or belongs elsewhere, or one that could not be written."""


def snapshot_name(seq: int) -> str:
    return f"snapshot-{seq:020d}.pcs"


def segment_name(first_seq: int) -> str:
    return f"journal-{first_seq:020d}.pcj"


def _write_atomically(final: Path, blob: bytes) -> None:
    """blob as `final`, whole or not at all: tmp file, fsync, rename, directory fsync. The tmp file
    is removed if anything fails."""
    tmp = final.with_name(final.name + ".tmp")
    try:
        jr.write_durably(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), blob)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    jr.fsync_dir(final.parent)


class _Recorded(msgspec.Struct):
    state_hash: str


class LogPosition(msgspec.Struct, frozen=True):
    """A position in the replicated command log (perpcore.replication.log): the stream sequence
    of the entry holding the last applied command, and how many of that entry's commands are
    applied. (0, 0): before the first entry (or a store that never followed a log)."""
    entry_seq: int = 0
    offset: int = 0


def write_snapshot(directory: str | os.PathLike, ex: Exchange, chain: int = 0,
                   log_position: LogPosition | None = None) -> Path:
    """Writes ex's state as the snapshot of its current sequence number, atomically; `chain` is
    the journal's chain value at that sequence number, `log_position` the replicated log's
    position of that state. A full disk raises SnapshotError and leaves nothing behind."""
    directory = Path(directory)
    data = ex.snapshot()
    state_hash = msgspec.msgpack.decode(data, type=_Recorded).state_hash
    log = log_position or LogPosition()
    rest = struct.pack("<QQ32sIQQ", len(data), ex.seq, bytes.fromhex(state_hash), chain,
                       log.entry_seq, log.offset) + data
    final = directory / snapshot_name(ex.seq)
    try:
        _write_atomically(final, MAGIC + struct.pack("<I", zlib.crc32(rest)) + rest)
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise SnapshotError(f"{final}: the disk is full ({e.strerror}); no snapshot was "
                                f"written and nothing was left behind") from e
        raise
    return final


class SnapshotInfo(msgspec.Struct, frozen=True):
    path: str
    seq: int
    state_hash: str
    chain: int = 0              # the journal's chain value at seq
    log_position: LogPosition = msgspec.field(default_factory=LogPosition)


def read_snapshot(path: str | os.PathLike) -> tuple[SnapshotInfo, bytes]:
    """(info, Exchange.snapshot() bytes) of a snapshot file, after checking its CRC and length."""
    blob = Path(path).read_bytes()
    header = {MAGIC: _HEADER, _MAGIC_V2: _HEADER_V2}.get(blob[:8])
    if header is None or len(blob) < header.size:
        raise SnapshotError(f"{path}: not a perpcore snapshot (of this format)")
    magic, crc, length, seq, digest, chain, *log = header.unpack_from(blob)
    if zlib.crc32(memoryview(blob)[12:]) != crc or len(blob) != header.size + length:
        raise SnapshotError(f"{path}: damaged (CRC or length mismatch)")
    return (SnapshotInfo(str(path), seq, digest.hex(), chain, LogPosition(*log)),
            blob[header.size:])


def load_snapshot(path: str | os.PathLike, config: VenueConfig) -> Exchange:
    """The exchange a snapshot file holds, checked against the state hash it recorded."""
    return _load_snapshot(path, config)[0]


def _load_snapshot(path, config: VenueConfig) -> tuple[Exchange, SnapshotInfo]:
    info, data = read_snapshot(path)
    try:
        ex = Exchange.restore(config, data)
    except (ValueError, KeyError, TypeError) as e:   # damaged inside, or does not fit this build
        raise SnapshotError(f"{path}: {e}") from e
    # restore() has checked the state against the hash it embeds: the header must name the same
    recorded = msgspec.msgpack.decode(data, type=_Recorded).state_hash
    if ex.seq != info.seq or recorded != info.state_hash:
        raise SnapshotError(f"{path}: restores to a different state than it recorded")
    return ex, info


# ---- the manifest ------------------------------------------------------------------------------

class Manifest(msgspec.Struct, frozen=True):
    """Where a store's journal ends (see the module's docstring)."""
    segment: str                # the newest segment's file name
    first_seq: int
    header_crc: int             # its header's CRC: a replaced segment has another
    end_seq: int = -1           # the last command the segment is known to hold (-1: none yet)
    end_chain: int = 0          # and its record's CRC


def write_manifest(directory: str | os.PathLike, manifest: Manifest) -> None:
    body = msgspec.msgpack.encode(manifest)
    _write_atomically(Path(directory) / MANIFEST,
                      _MANIFEST_MAGIC + struct.pack("<I", zlib.crc32(body)) + body)


def read_manifest(directory: str | os.PathLike) -> Manifest | None:
    """The store's manifest, None when there is none; JournalError when it is damaged."""
    path = Path(directory) / MANIFEST
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    if (len(blob) < 12 or blob[:8] != _MANIFEST_MAGIC
            or zlib.crc32(blob[12:]) != int.from_bytes(blob[8:12], "little")):
        raise jr.JournalError(f"{path}: the store's manifest is damaged; where the journal ends "
                              f"cannot be checked", path, 0)
    try:
        return msgspec.msgpack.decode(blob[12:], type=Manifest)
    except msgspec.DecodeError as e:
        raise jr.JournalError(f"{path}: the store's manifest does not parse ({e})", path, 0) from e


# ---- recovery ----------------------------------------------------------------------------------

class RecoveryReport(msgspec.Struct):
    snapshot: str = ""              # the snapshot recovery started from ("" = an empty exchange)
    snapshot_seq: int = 0
    skipped_snapshots: list[str] = []   # newer snapshots that did not check out, and why
    replayed: int = 0               # journal records applied after the snapshot
    last_seq: int = 0
    torn_tail: jr.TailReport | None = None  # the newest segment's torn tail, if it had one
    removed_temp_files: list[str] = []
    halted: Halt | None = None      # the engine's fail-stop after replay (Exchange.halted), if any
    # the replicated log's position of the snapshot recovery started from
    log_position: LogPosition = msgspec.field(default_factory=LogPosition)


def list_snapshots(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(seq, path) of a store's snapshot files, oldest first."""
    return sorted((int(mt.group(1)), p) for p in Path(directory).iterdir()
                  if (mt := _SNAPSHOT.fullmatch(p.name)))


def list_segments(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(first seq, path) of a store's journal segments, oldest first."""
    return sorted((int(mt.group(1)), p) for p in Path(directory).iterdir()
                  if (mt := _SEGMENT.fullmatch(p.name)))


def _record_less(path: Path) -> bool:
    """A segment file holding no record (its creation may have been interrupted)."""
    return path.stat().st_size <= jr.HEADER_SIZE


def check_segments(directory: str | os.PathLike, digest: str | None = None) -> list[jr.Segment]:
    """Every segment the store's journal holds, checked against each other and the manifest:
    oldest first, up to the manifest's newest (later record-less files, left by an interrupted
    checkpoint, are not included). JournalError on any damage but a torn tail of the newest."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    files = list_segments(directory)
    if manifest is None:
        if all(_record_less(p) for _, p in files) and not list_snapshots(directory):
            return []                               # a new store whose creation was interrupted
        raise jr.JournalError(f"{directory / MANIFEST} is missing: where the journal ends cannot "
                              f"be checked", directory / MANIFEST)
    newest = directory / manifest.segment
    at_risk = (manifest.first_seq, None)
    if not newest.exists():
        raise jr.JournalError(f"{newest}: the newest segment is missing; commands from "
                              f"{manifest.first_seq} on are at risk", newest, 0, at_risk)
    if newest.stat().st_size < jr.HEADER_SIZE:
        raise jr.JournalError(f"{newest}: the newest segment is emptied or cut inside its header "
                              f"({newest.stat().st_size} bytes); commands from "
                              f"{manifest.first_seq} on are at risk", newest, 0, at_risk)
    for _, path in files:
        if path.name > manifest.segment and not _record_less(path):
            raise jr.JournalError(f"{path}: a segment after the newest one the manifest names "
                                  f"({manifest.segment})", path, 0)
    segments: list[jr.Segment] = []
    for _, path in files:
        if path.name > manifest.segment:
            break
        seg = jr.Segment.open(path)
        if digest is not None and seg.header.digest != digest:
            raise jr.JournalError(f"{path}: written under a different venue config", path, 0)
        if segments:
            _check_continues(segments[-1], seg)
        segments.append(seg)
    seg = segments[-1]
    if seg.header.crc != manifest.header_crc or seg.header.first_seq != manifest.first_seq:
        raise jr.JournalError(f"{newest}: not the newest segment the manifest recorded (its header "
                              f"differs: replaced); commands from {manifest.first_seq} on are at "
                              f"risk", newest, 0, at_risk)
    if manifest.end_seq >= 0 and seg.crc_of(manifest.end_seq) != manifest.end_chain:
        last = seg.report.last_seq
        raise jr.JournalError(
            f"{newest}: the manifest records that it held command {manifest.end_seq} (when the "
            f"store was last opened or closed), but its intact records end at {last} (offset "
            f"{seg.report.valid_bytes}) or differ: "
            f"commands {min(last, manifest.end_seq) + 1}-{manifest.end_seq} are at risk",
            newest, seg.report.valid_bytes, (min(last, manifest.end_seq) + 1, manifest.end_seq))
    return segments


def _check_continues(prev: jr.Segment, seg: jr.Segment) -> None:
    r = prev.report
    if not r.clean:
        raise jr.JournalError(f"{r.path}: damaged at offset {r.valid_bytes} ({r.reason}) before "
                              f"the newest segment: commands from {r.last_seq + 1} to "
                              f"{seg.header.first_seq - 1} are at risk", r.path, r.valid_bytes,
                              (r.last_seq + 1, seg.header.first_seq - 1))
    if (seg.header.first_seq, seg.header.prev_chain) != (r.last_seq + 1, r.chain):
        raise jr.JournalError(f"{seg.path}: does not continue {Path(r.path).name} (which ends at "
                              f"command {r.last_seq}): the chain is broken, commands from "
                              f"{r.last_seq + 1} on are at risk", seg.path, 0,
                              (r.last_seq + 1, None))


def _start(directory: Path, config: VenueConfig, report: RecoveryReport
           ) -> tuple[Exchange, int]:
    """The newest snapshot that checks out (or an empty exchange), and its chain value."""
    for seq, path in reversed(list_snapshots(directory)):
        try:
            ex, info = _load_snapshot(path, config)
        except SnapshotError as e:
            report.skipped_snapshots.append(str(e))
            continue
        report.snapshot, report.snapshot_seq = path.name, seq
        report.log_position = info.log_position
        return ex, info.chain
    return Exchange(config), 0


def _replay(segments: list[jr.Segment], ex: Exchange, chain: int) -> int:
    """Applies the records of `segments` (at least one) after ex.seq, having checked that the
    journal continues `chain` (the chain value at ex.seq); returns the chain value at the end."""
    start = ex.seq
    usable = [s for s in segments if s.header.first_seq <= start + 1]
    if not usable:
        oldest = segments[0]
        first_seq = oldest.header.first_seq
        raise jr.JournalError(f"{oldest.path}: the journal starts at command {first_seq} but the "
                              f"state recovered covers only {start}: commands "
                              f"{start + 1}-{first_seq - 1} are missing", oldest.path, 0,
                              (start + 1, first_seq - 1))
    first = usable[-1]
    if first.crc_of(start) != chain:
        raise jr.JournalError(f"{first.path}: does not continue the state recovered at command "
                              f"{start} (the chain differs or the segment ends before it): "
                              f"commands from {start + 1} on are at risk", first.path, 0,
                              (start + 1, None))
    for seg in segments[segments.index(first):]:
        for seq, cmd in enumerate(seg.commands(), start=seg.header.first_seq):
            if seq > ex.seq:
                ex.submit(cmd, seq)
        chain = seg.report.chain
    return chain


def _recover(directory: Path, config: VenueConfig, cleanup: bool
             ) -> tuple[Exchange, RecoveryReport, list[jr.Segment], int]:
    report = RecoveryReport()
    segments = check_segments(directory, config_digest(config))
    ex, chain = _start(directory, config, report)
    before = ex.seq
    if segments:
        chain = _replay(segments, ex, chain)
        if not segments[-1].report.clean:
            report.torn_tail = segments[-1].report
    report.replayed = ex.seq - before
    report.last_seq = ex.seq
    report.halted = ex.halted
    if cleanup:     # only once the store checks out: a refusal changes nothing
        for tmp in sorted(directory.glob("*.tmp")):     # a write of a snapshot or the manifest
            tmp.unlink()                                # that was interrupted
            report.removed_temp_files.append(tmp.name)
    return ex, report, segments, chain


def recover(directory: str | os.PathLike, config: VenueConfig,
            cleanup: bool = False) -> tuple[Exchange, RecoveryReport]:
    """The state a store holds: its newest snapshot that checks out plus the journal records
    after it (see the module's docstring for what is checked). Read-only unless `cleanup` (then
    the temporary file of an interrupted snapshot or manifest write is deleted); a torn tail of
    the newest segment is reported, not replayed."""
    ex, report, _, _ = _recover(Path(directory), config, cleanup)
    return ex, report


# ---- operator tools: verify and repair ---------------------------------------------------------

class Problem(msgspec.Struct):
    message: str
    file: str | None = None
    offset: int | None = None
    seqs: tuple[int, int | None] | None = None      # first, last command at risk (None: on)


class SnapshotCheck(msgspec.Struct):
    file: str
    seq: int
    error: str = ""


class SegmentCheck(msgspec.Struct):
    file: str
    first_seq: int
    last_seq: int | None = None     # of its intact records (None: unreadable)
    bytes: int = 0
    torn_tail: str = ""             # what follows the intact records, when it is only torn
    error: str = ""


class StoreCheck(msgspec.Struct):
    """What `perpcore store verify` found."""
    directory: str
    manifest: Manifest | None = None
    snapshots: list[SnapshotCheck] = []
    segments: list[SegmentCheck] = []
    opens: bool = False             # the store recovers (Store() would open it)
    recovered_from: str = ""        # the snapshot recovery starts from ("": an empty exchange)
    last_seq: int | None = None     # the state recovery reaches
    halted: Halt | None = None      # the engine's fail-stop after replay, if any
    set_aside: list[str] = []       # torn tails and repairs kept in the directory
    problems: list[Problem] = []

    @property
    def healthy(self) -> bool:
        return not self.problems


def _problem(error: Exception) -> Problem:
    return Problem(str(error), getattr(error, "path", None), getattr(error, "offset", None),
                   getattr(error, "seqs", None))


def verify_store(directory: str | os.PathLike, config: VenueConfig) -> StoreCheck:
    """Checks every snapshot and segment of a store, the manifest and the chain between them, and
    whether (and to what) the store recovers; read-only."""
    d = Path(directory)
    out = StoreCheck(str(d))
    try:
        out.manifest = read_manifest(d)
    except jr.JournalError as e:
        out.problems.append(_problem(e))
    for seq, path in list_snapshots(d):
        try:
            _load_snapshot(path, config)
            out.snapshots.append(SnapshotCheck(path.name, seq))
        except SnapshotError as e:
            out.snapshots.append(SnapshotCheck(path.name, seq, str(e)))
            out.problems.append(Problem(str(e), str(path)))
    for first_seq, path in list_segments(d):
        check = SegmentCheck(path.name, first_seq, bytes=path.stat().st_size)
        try:
            r = jr.Segment.open(path).report
            check.last_seq = r.last_seq
            if not r.clean:
                check.torn_tail = (f"{r.dropped_bytes} bytes at offset {r.valid_bytes} "
                                   f"({r.reason}) after command {r.last_seq}")
        except jr.JournalError as e:
            check.error = str(e)
            if not (_record_less(path) and path.name > getattr(out.manifest, "segment", "")):
                out.problems.append(_problem(e))
        out.segments.append(check)
    out.set_aside = sorted(p.name for p in d.iterdir()
                           if ".torn-" in p.name or p.name.startswith("repaired-"))
    try:
        ex, report = recover(d, config)
    except (jr.JournalError, SnapshotError) as e:
        if str(e) not in {p.message for p in out.problems}:
            out.problems.append(_problem(e))
    else:
        out.opens, out.recovered_from = True, report.snapshot
        out.last_seq, out.halted = report.last_seq, report.halted
        if report.halted is not None:       # stored intact, but the engine refuses commands
            out.problems.append(Problem(f"the engine halted at command "
                                        f"{report.halted.seq}: {report.halted.cause}"))
    return out


class RepairRefused(Exception):
    """A repair that would not leave a store that opens, or would drop state unasked."""


class RepairReport(msgspec.Struct):
    directory: str
    truncate_after: int
    segment: str                    # the segment that now ends the journal
    kept_in: str                    # the folder holding everything cut or moved
    cut_bytes: int = 0              # cut off the end of `segment` (kept as <segment>.after-<seq>)
    moved: list[str] = []           # later segments and snapshots moved into kept_in


def repair_store(directory: str | os.PathLike, truncate_after: int,
                 move_snapshots: bool = False) -> RepairReport:
    """Cuts the journal after command `truncate_after`: the rest of its segment is copied into a
    new `repaired-<UTC time>/` folder of the store and cut off, later segments are moved there,
    and the manifest records the journal as closed at that command. Refused (RepairRefused,
    nothing changed) if that command is not among its segment's intact records, or if snapshots
    after it exist and `move_snapshots` is not given (then they are moved there too: they hold
    state the cut removes)."""
    d = Path(directory)
    # the segment holding the command; else one starting right after it (its older ones pruned)
    segments = ([(f, p) for f, p in list_segments(d) if f <= truncate_after]
                or [(f, p) for f, p in list_segments(d) if f == truncate_after + 1])
    if not segments:
        raise RepairRefused(f"{d}: no journal segment holds command {truncate_after}")
    first_seq, path = segments[-1]
    try:
        seg = jr.Segment.open(path, strict=False)
    except jr.JournalError as e:
        raise RepairRefused(f"{e}: it cannot be cut") from e
    last = seg.report.last_seq
    if truncate_after > last:
        raise RepairRefused(f"{path}: command {truncate_after} is not among its intact records "
                            f"(they end at {last})")
    snapshots = [p for s, p in list_snapshots(d) if s > truncate_after]
    if snapshots and not move_snapshots:
        raise RepairRefused(f"snapshots after command {truncate_after} exist "
                            f"({', '.join(p.name for p in snapshots)}): they hold state the cut "
                            f"removes; move them aside too (--move-snapshots) or cut later")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept, n = d / f"repaired-{stamp}", 1
    while kept.exists():
        kept, n = d / f"repaired-{stamp}-{n}", n + 1
    kept.mkdir()
    report = RepairReport(str(d), truncate_after, path.name, kept.name)
    offset = seg.end_of(truncate_after)
    if offset < len(seg.data):
        jr.write_new(kept / f"{path.name}.after-{truncate_after}", memoryview(seg.data)[offset:])
        with open(path, "rb+") as f:
            f.truncate(offset)
            os.fsync(f.fileno())
        report.cut_bytes = len(seg.data) - offset
    for later in [p for f, p in list_segments(d) if f > first_seq] + snapshots:
        os.replace(later, kept / later.name)
        report.moved.append(later.name)
    jr.fsync_dir(kept)
    chain = seg.crc_of(truncate_after)
    if chain is None:       # ruled out above (an intact record); said for the type checker
        raise RepairRefused(f"{path}: command {truncate_after} is not among its intact records")
    write_manifest(d, Manifest(path.name, first_seq, seg.header.crc, truncate_after, chain))
    return report


class Store:
    """A directory of snapshots and journal segments, open for one engine.

    Store(directory, config, sync=..., group_records=..., group_ms=...) recovers (see
    `recovery`; JournalError when the store is damaged beyond a torn tail, having changed
    nothing) and leaves `engine`, a JournaledExchange on the newest segment, ready to take
    commands. A torn tail is moved aside (`<segment>.torn-<offset>`) before journaling goes on."""

    def __init__(self, directory: str | os.PathLike, config: VenueConfig, keep: int = 2,
                 **journal_options):
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.digest = config_digest(config)
        self.keep = keep
        self.journal_options = journal_options
        ex, self.recovery, segments, chain = _recover(self.dir, config, cleanup=True)
        files = self.segments()
        # the newest file is the manifest's segment, or a record-less one an interrupted
        # checkpoint (or store creation) left after it, which must start at the next command
        path = files[-1][1] if files else self.dir / segment_name(ex.seq + 1)
        newest = segments[-1] if segments else None
        if newest is not None and path.name == Path(newest.path).name:
            first_seq, prev_chain = newest.header.first_seq, newest.header.prev_chain
        else:
            first_seq, prev_chain = ex.seq + 1, chain
        journal = jr.Journal(path, self.digest, first_seq, prev_chain, **journal_options)
        # a halted engine (recovery.halted) stopped inside its journal and takes no command more
        if journal.last_seq != ex.seq and ex.halted is None:
            journal.close()
            raise jr.JournalError(f"{path}: ends at command {journal.last_seq} but the store's "
                                  f"state is at {ex.seq}", path)
        if not journal.recovery.clean:
            self.recovery.torn_tail = journal.recovery
        # what the segment is now known to hold: a later cut below it is found
        write_manifest(self.dir, Manifest(path.name, first_seq, journal.header_crc,
                                          journal.last_seq, journal.chain))
        self.engine = jr.JournaledExchange(ex, journal)

    @classmethod
    def seeded(cls, directory: str | os.PathLike, ex: Exchange, keep: int = 2,
               **journal_options) -> "Store":
        """A new store, in an empty directory, whose history starts at `ex`'s state: its
        snapshot, and an empty segment after it (a venue moved onto a store, a benchmark)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise ValueError(f"{directory} is not empty")
        write_snapshot(directory, ex)
        journal = jr.Journal(directory / segment_name(ex.seq + 1), config_digest(ex.config),
                             ex.seq + 1, 0)
        journal.close()
        write_manifest(directory, Manifest(journal.path.name, journal.first_seq,
                                          journal.header_crc, ex.seq, journal.chain))
        return cls(directory, ex.config, keep, **journal_options)

    # ---- the directory -------------------------------------------------------------------------

    def snapshots(self) -> list[tuple[int, Path]]:
        return list_snapshots(self.dir)

    def segments(self) -> list[tuple[int, Path]]:
        return list_segments(self.dir)

    # ---- checkpoints ---------------------------------------------------------------------------

    def checkpoint(self, log_position: LogPosition | None = None) -> tuple[Path, list]:
        """Commits the journal, snapshots the state (at `log_position` in a replicated log),
        starts a new journal segment and prunes what the `keep` newest snapshots no longer need.
        Returns (snapshot path, events released by the commit)."""
        engine = self.engine
        if engine.ex.halted is not None:
            raise SnapshotError(f"no checkpoint of a halted engine (its state may be "
                                f"half-applied): {engine.ex.halted.cause}")
        released = engine.flush()
        old = engine.journal
        path = write_snapshot(self.dir, engine.ex, old.chain, log_position)
        if old.last_seq >= old.first_seq:           # else the segment starts here already
            journal = jr.Journal(self.dir / segment_name(engine.ex.seq + 1), self.digest,
                                 engine.ex.seq + 1, old.chain, **self.journal_options)
            try:
                write_manifest(self.dir, Manifest(journal.path.name, journal.first_seq,
                                                  journal.header_crc))
            except BaseException:
                # (a full disk) journaling goes on in the old segment; the new one holds nothing
                journal.close()
                journal.path.unlink()
                raise
            engine.journal = journal
            old.close()
        self._prune()
        return path, released

    def _prune(self) -> None:
        snapshots = self.snapshots()
        if len(snapshots) <= self.keep:
            return
        for _, path in snapshots[:-self.keep]:
            path.unlink()
        oldest_kept = snapshots[-self.keep][0]
        segments = self.segments()
        for i, (_, path) in enumerate(segments[:-1]):
            # a segment whose successor starts at or before the oldest kept snapshot's next
            # command holds nothing recovery will apply
            if segments[i + 1][0] <= oldest_kept + 1:
                path.unlink()
        jr.fsync_dir(self.dir)

    def close(self) -> list:
        """Commits and closes the journal, recording its end in the manifest (a clean close)."""
        events = self.engine.close()
        journal = self.engine.journal
        write_manifest(self.dir, Manifest(journal.path.name, journal.first_seq, journal.header_crc,
                                          journal.last_seq, journal.chain))
        return events

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
