"""Snapshots of the whole exchange state, and the store that recovers from snapshot + journal.

A snapshot file holds Exchange.snapshot() (books, accounts, every component's state, clock and
sequence number) behind a small header: magic, CRC32, length, the sequence number it covers and
the state hash it must restore to. It is written to a temporary file, fsynced, renamed over its
final name and the directory fsynced, so a crash leaves either the whole snapshot or none.

A store is one directory:

    snapshot-<seq>.pcs          the state after command <seq>
    journal-<first seq>.pcj     journal segments; a new one starts at each checkpoint

Recovery loads the newest snapshot that checks out and applies the journal records after it; the
result has the same state_hash() as a run that never stopped. A checkpoint commits the journal,
writes a snapshot, starts a new segment and deletes the snapshots and segments no longer needed to
recover from the `keep` newest snapshots.
"""
from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import msgspec

from perpcore import journal as jr
from perpcore.config import VenueConfig
from perpcore.exchange import Exchange, config_digest

MAGIC = b"PCSNAP01"
_HEADER = struct.Struct("<8sIQQ32s")        # magic, CRC32 of the rest, length, seq, state hash
_SNAPSHOT = re.compile(r"snapshot-(\d{20})\.pcs")
_SEGMENT = re.compile(r"journal-(\d{20})\.pcj")


class SnapshotError(Exception):
    """A snapshot file that is damaged or belongs elsewhere."""


def snapshot_name(seq: int) -> str:
    return f"snapshot-{seq:020d}.pcs"


def segment_name(first_seq: int) -> str:
    return f"journal-{first_seq:020d}.pcj"


def write_snapshot(directory: str | os.PathLike, ex: Exchange) -> Path:
    """Writes ex's state as the snapshot of its current sequence number, atomically."""
    directory = Path(directory)
    data = ex.snapshot()
    rest = struct.pack("<QQ32s", len(data), ex.seq, bytes.fromhex(ex.state_hash())) + data
    blob = MAGIC + struct.pack("<I", zlib.crc32(rest)) + rest
    final = directory / snapshot_name(ex.seq)
    tmp = final.with_name(final.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    jr.fsync_dir(directory)
    return final


class SnapshotInfo(msgspec.Struct, frozen=True):
    path: str
    seq: int
    state_hash: str


def read_snapshot(path: str | os.PathLike) -> tuple[SnapshotInfo, bytes]:
    """(info, Exchange.snapshot() bytes) of a snapshot file, after checking its CRC and length."""
    blob = Path(path).read_bytes()
    if len(blob) < _HEADER.size or blob[:8] != MAGIC:
        raise SnapshotError(f"{path}: not a perpcore snapshot")
    magic, crc, length, seq, digest = _HEADER.unpack_from(blob)
    if zlib.crc32(memoryview(blob)[12:]) != crc or len(blob) != _HEADER.size + length:
        raise SnapshotError(f"{path}: damaged (CRC or length mismatch)")
    return SnapshotInfo(str(path), seq, digest.hex()), blob[_HEADER.size:]


def load_snapshot(path: str | os.PathLike, config: VenueConfig) -> Exchange:
    """The exchange a snapshot file holds, checked against the state hash it recorded."""
    info, data = read_snapshot(path)
    try:
        ex = Exchange.restore(config, data)
    except (ValueError, KeyError, TypeError) as e:   # a part that does not fit this build
        raise SnapshotError(f"{path}: {e!r}") from e
    if ex.seq != info.seq or ex.state_hash() != info.state_hash:
        raise SnapshotError(f"{path}: restores to a different state than it recorded")
    return ex


class RecoveryReport(msgspec.Struct):
    snapshot: str = ""              # the snapshot recovery started from ("" = an empty exchange)
    snapshot_seq: int = 0
    skipped_snapshots: list[str] = []   # newer snapshots that did not check out, and why
    replayed: int = 0               # journal records applied after the snapshot
    last_seq: int = 0
    torn_tail: jr.TailReport | None = None  # the last segment's dropped tail, if it had one
    removed_temp_files: list[str] = []


def list_snapshots(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(seq, path) of a store's snapshot files, oldest first."""
    return sorted((int(mt.group(1)), p) for p in Path(directory).iterdir()
                  if (mt := _SNAPSHOT.fullmatch(p.name)))


def list_segments(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(first seq, path) of a store's journal segments, oldest first."""
    return sorted((int(mt.group(1)), p) for p in Path(directory).iterdir()
                  if (mt := _SEGMENT.fullmatch(p.name)))


def recover(directory: str | os.PathLike, config: VenueConfig,
            cleanup: bool = False) -> tuple[Exchange, RecoveryReport]:
    """The state a store holds: its newest snapshot that checks out plus the journal records
    after it. Read-only unless `cleanup` (then the temporary file of an interrupted snapshot
    write is deleted); a torn tail of the newest segment is reported, not replayed."""
    directory = Path(directory)
    report = RecoveryReport()
    if cleanup:
        for tmp in sorted(directory.glob("*.tmp")):     # a snapshot whose write was interrupted
            tmp.unlink()
            report.removed_temp_files.append(tmp.name)
    ex = None
    for seq, path in reversed(list_snapshots(directory)):
        try:
            ex = load_snapshot(path, config)
        except SnapshotError as e:
            report.skipped_snapshots.append(str(e))
            continue
        report.snapshot, report.snapshot_seq = path.name, seq
        break
    if ex is None:
        ex = Exchange(config)
    segments = list_segments(directory)
    for i, (first_seq, path) in enumerate(segments):
        last = i == len(segments) - 1
        if not last and segments[i + 1][0] <= ex.seq + 1:
            continue                                    # wholly covered by the snapshot
        if last and path.stat().st_size < jr.HEADER_SIZE:
            continue                                    # its creation was interrupted: empty
        before = ex.seq
        tail = jr.replay(path, ex)
        report.replayed += ex.seq - before
        if not tail.clean:
            if not last:
                raise jr.JournalError(f"{path}: damaged before the newest segment "
                                      f"({tail.reason}); acknowledged commands may be lost")
            report.torn_tail = tail
    report.last_seq = ex.seq
    return ex, report


class Store:
    """A directory of snapshots and journal segments, open for one engine.

    Store(directory, config, sync=..., group_records=..., group_ms=...) recovers (see
    `recovery`) and leaves `engine`, a JournaledExchange on the newest segment, ready to take
    commands."""

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
        ex, self.recovery = recover(self.dir, config, cleanup=True)
        journal = None
        segments = self.segments()
        if segments and segments[-1][0] <= ex.seq + 1:
            # Journal() itself truncates the bad tail that _recover() found and did not replay
            journal = jr.Journal(segments[-1][1], self.digest, segments[-1][0], **journal_options)
            if journal.last_seq != ex.seq:
                # the snapshot is newer than the segment's end (its unsynced tail was lost with
                # the machine): the next command starts a segment of its own
                journal.close()
                journal = None
        if journal is None:
            journal = jr.Journal(self.dir / segment_name(ex.seq + 1), self.digest, ex.seq + 1,
                                 **journal_options)
        self.engine = jr.JournaledExchange(ex, journal)

    # ---- the directory -------------------------------------------------------------------------

    def snapshots(self) -> list[tuple[int, Path]]:
        return list_snapshots(self.dir)

    def segments(self) -> list[tuple[int, Path]]:
        return list_segments(self.dir)

    # ---- checkpoints ---------------------------------------------------------------------------

    def checkpoint(self) -> tuple[Path, list]:
        """Commits the journal, snapshots the state, starts a new journal segment and prunes what
        the `keep` newest snapshots no longer need. Returns (snapshot path, events released by
        the commit)."""
        engine = self.engine
        released = engine.flush()
        path = write_snapshot(self.dir, engine.ex)
        engine.journal.close()
        engine.journal = jr.Journal(self.dir / segment_name(engine.ex.seq + 1), self.digest,
                                    engine.ex.seq + 1, **self.journal_options)
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
        for i, (first_seq, path) in enumerate(segments[:-1]):
            # a segment whose successor starts at or before the oldest kept snapshot's next
            # command holds nothing recovery will apply
            if segments[i + 1][0] <= oldest_kept + 1:
                path.unlink()
        jr.fsync_dir(self.dir)

    def close(self) -> list:
        return self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
