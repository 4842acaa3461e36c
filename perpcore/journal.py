"""The command journal: every command is written here before its events are released.

A journal segment is a header followed by records, one per command, all little-endian:

    header  = magic "PCJRNL02" | config digest (16) | u64 first seq | u32 chain it continues
              | u32 CRC32 of the 36 bytes before it
    record  = u32 body length | u32 CRC | body = u64 sequence number + msgpack command

Records are chained: a record's CRC is the CRC32 of its length field and body continuing from
its predecessor's CRC (zlib.crc32(body, zlib.crc32(length, previous CRC))), the first record's
predecessor being the header's CRC, and a header continues the CRC of the previous segment's last
record (or, for the store's first, 0). So no record can be dropped, reordered, or copied in from
another place unnoticed: each one vouches for everything before it. The CRCs are filled in by
whoever writes the bytes (the group-commit flusher in "group" mode), never on the engine thread.

The command is the msgpack encoding of a command that passed the exchange's boundary (every field
within its schema; a command refused there is never journaled), so a replay decodes every record
with the typed decoder, to an equal command; one that does not decode is a JournalError.

Durability (`sync`):
- "always": each record is written and fsynced before its events are released;
- "group": a C thread that never takes the GIL writes and fsyncs records in groups, once
  `group_records` are waiting or the oldest has waited `group_ms` milliseconds; the events of a
  command are released only after its group's fsync, so an acknowledged command is always on disk,
  and the engine thread never waits for the disk. The wait is measured on the monotonic clock; it
  decides only when bytes reach the disk, never anything in the engine's state or events;
- "none": records are written in groups but never fsynced (research replays, benchmarks).

Checking a segment (torn write or corruption): the records are checked in order (length, chained
CRC, consecutive sequence numbers). At the first one that fails, the rest of the file is searched
for an intact record of that sequence number or a later one (one whose CRC continues a CRC stored in
the damaged stretch or the bad record's own, or is continued by the record after it). A torn write
can only be the tail of the last group, which was never acknowledged, with nothing intact after it:
such a tail is reported (`TailReport`), never replayed, and, when the segment is opened for writing,
moved aside (its bytes copied to `<segment>.torn-<offset>`, then the segment truncated). Damage
followed by intact records is corruption of acknowledged data: JournalError naming the file, the
offset and the commands at risk, and nothing is changed. A header that does not parse or check out
is a JournalError too.

What a segment alone cannot tell: damage confined to its last record, or a cut at a record boundary,
looks like a crash before those bytes were written. The store's manifest (perpcore.snapshot) closes
that gap up to the end the store last saw (at its last open or clean close), and names the newest
segment so that a missing, emptied or replaced one is found. The other way round, a crash whose disk
persisted a later page of the last group but not an earlier one (no fsync had returned, so nothing
in that group was acknowledged) looks like corruption and is refused: the operator cuts it off with
`perpcore store repair` (which keeps it).
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Iterator

import msgspec

from perpcore import _journal
from perpcore._journal import JournaledCore
from perpcore import messages as m
from perpcore.exchange import Exchange, config_digest

MAGIC = b"PCJRNL02"
_HEADER = struct.Struct("<8s16sQII")        # magic, config digest, first seq, chain, header CRC
HEADER_SIZE = _HEADER.size
_CHECKED = HEADER_SIZE - 4                  # the header bytes its CRC covers
_PREFIX = struct.Struct("<II")              # body length, chained CRC
_SEQ = struct.Struct("<Q")
MAX_BODY = 1 << 24                  # no command comes near 16 MiB: a longer length is corruption
MAX_SEQ = 1 << 62                           # beyond any real journal: a larger first seq is damage

SYNC_MODES = ("always", "group", "none")


class JournalError(Exception):
    """A journal that cannot be used: wrong magic or config, a damaged header, acknowledged
    records damaged or missing. `path`, `offset` and `seqs` (first, last command at risk; last
    None when open-ended) say where, when known."""

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 offset: int | None = None, seqs: tuple[int, int | None] | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.offset = offset
        self.seqs = seqs


class Header(msgspec.Struct, frozen=True):
    digest: str                 # the venue config's
    first_seq: int
    prev_chain: int             # the CRC of the record before this segment's first (0: none)
    crc: int                    # the header's own CRC: its first record continues it


class TailReport(msgspec.Struct, frozen=True):
    """What checking a segment found."""
    path: str
    records: int                # valid records
    first_seq: int              # the sequence number the file starts at
    last_seq: int               # of the last valid record (first_seq - 1 when there is none)
    valid_bytes: int            # header + valid records
    dropped_bytes: int          # the torn tail after them
    reason: str = ""            # why the tail was dropped ("" when there was none)
    prev_chain: int = 0         # the chain the header continues
    header_crc: int = 0
    chain: int = 0              # the chain value at last_seq: its record's CRC (prev_chain if none)
    kept: str = ""              # where the dropped bytes were kept, once moved aside

    @property
    def clean(self) -> bool:
        return self.dropped_bytes == 0


def encode_header(digest: str, first_seq: int, prev_chain: int = 0) -> bytes:
    head = _HEADER.pack(MAGIC, bytes.fromhex(digest), first_seq, prev_chain, 0)[:_CHECKED]
    return head + struct.pack("<I", zlib.crc32(head))


def encode_record(seq: int, payload: bytes, prev_chain: int) -> bytes:
    """A record continuing the chain value `prev_chain` (its CRC, the next record's, is [4:8])."""
    body = _SEQ.pack(seq) + payload
    length = struct.pack("<I", len(body))
    return length + struct.pack("<I", zlib.crc32(body, zlib.crc32(length, prev_chain))) + body


def encode_segment(digest: str, first_seq: int, payloads, prev_chain: int = 0) -> bytes:
    """A whole segment holding `payloads` from first_seq on (tools and tests; the journal writes
    through its GroupWriter)."""
    out = [encode_header(digest, first_seq, prev_chain)]
    chain = zlib.crc32(out[0][:_CHECKED])
    for seq, payload in enumerate(payloads, start=first_seq):
        out.append(encode_record(seq, payload, chain))
        chain = int.from_bytes(out[-1][4:8], "little")
    return b"".join(out)


def read_header(data: bytes, path: str | os.PathLike = "<journal>") -> Header:
    """The header of a segment's bytes; JournalError (never struct.error or OverflowError) when it
    is short, of another format, or fails its CRC."""
    if len(data) < HEADER_SIZE:
        raise JournalError(f"{path}: {len(data)} bytes, shorter than a journal header (emptied or "
                           f"cut)", path, 0)
    magic, digest, first_seq, prev_chain, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise JournalError(f"{path}: not a perpcore journal segment of this format (magic "
                           f"{magic!r})", path, 0)
    if zlib.crc32(data[:_CHECKED]) != crc:
        raise JournalError(f"{path}: the segment header is damaged (CRC mismatch at offset 0); the "
                           f"commands it holds cannot be trusted", path, 0)
    if not 1 <= first_seq < MAX_SEQ:
        raise JournalError(f"{path}: the segment header's first sequence number {first_seq} is "
                           f"impossible", path, 0)
    return Header(digest.hex(), first_seq, prev_chain, crc)


_WHY = {_journal.TORN_HEADER: "torn record header", _journal.BAD_LENGTH: "impossible record length",
        _journal.TORN_RECORD: "torn record", _journal.BAD_CRC: "CRC mismatch",
        _journal.BAD_SEQ: "sequence number out of order"}


class Segment:
    """A segment's bytes, checked: its header, the spans of its valid records (an int64 array of
    payload (start, end)) and the report. Raises JournalError on a bad header or, when `strict`,
    on corruption (a bad record with intact records after it); a torn tail is only reported
    (without `strict`, so is corruption: what a repair keeps is the intact prefix)."""

    def __init__(self, data: bytes, path: str | os.PathLike = "<journal>", strict: bool = True):
        self.data, self.path = data, str(path)
        self.header = h = read_header(data, path)
        # `register`: what the next record continues (the header's CRC before the first record)
        self.spans, end, why, self.register = _journal.scan(data, HEADER_SIZE, h.first_seq,
                                                          MAX_BODY, h.crc)
        last = h.first_seq + len(self.spans) - 1
        if why != _journal.OK and strict:
            at, later = _journal.find_intact(data, end, last + 1, MAX_BODY, self.register)
            if at >= 0:
                raise JournalError(
                    f"{path}: the record at offset {end} (command {last + 1}) is damaged "
                    f"({_WHY[why]}) but intact records follow (command {later} at offset {at}): "
                    f"acknowledged commands from {last + 1} on are at risk; nothing was changed",
                    path, end, (last + 1, None))
        self.report = TailReport(path=self.path, records=len(self.spans), first_seq=h.first_seq,
                                 last_seq=last, valid_bytes=end, dropped_bytes=len(data) - end,
                                 reason=_WHY.get(why, ""), prev_chain=h.prev_chain,
                                 header_crc=h.crc,
                                 chain=self.register if len(self.spans) else h.prev_chain)

    @classmethod
    def open(cls, path: str | os.PathLike, strict: bool = True) -> "Segment":
        return cls(Path(path).read_bytes(), path, strict)

    def crc_of(self, seq: int) -> int | None:
        """The chain value at command `seq`: its record's CRC (the header's prev_chain for
        first_seq - 1), or None when `seq` is not among the valid records."""
        i = seq - self.header.first_seq
        if i == -1:
            return self.header.prev_chain
        if not 0 <= i < len(self.spans):
            return None
        start = int(self.spans[i, 0]) - 12
        return int.from_bytes(self.data[start:start + 4], "little")

    def end_of(self, seq: int) -> int:
        """The offset just after command `seq`'s record (HEADER_SIZE for first_seq - 1)."""
        i = seq - self.header.first_seq
        return HEADER_SIZE if i == -1 else int(self.spans[i, 1])

    def commands(self, keep: bool = True):
        """The records' commands, in order (or, without keep, how many decoded)."""
        return _journal.decode_spans(self.data, self.spans, _decode, self._undecodable, keep=keep)

    def _undecodable(self, payload):
        raise JournalError(f"{self.path}: a record holds no command this build decodes "
                           f"({bytes(payload[:32])!r}...)", self.path)


def scan(data: bytes,
         path: str = "<journal>") -> tuple[str, list[tuple[int, memoryview]], TailReport]:
    """Checks a journal's bytes: (config digest, [(seq, payload)] of the valid records, report).
    The payloads are views into `data`."""
    seg = Segment(data, path)
    view = memoryview(data)
    return (seg.header.digest,
            [(seg.header.first_seq + i, view[a:b]) for i, (a, b) in enumerate(seg.spans.tolist())],
            seg.report)


def read(path: str | os.PathLike) -> tuple[str, list[tuple[int, memoryview]], TailReport]:
    """scan() of a journal file, read-only: a torn tail is reported, not truncated."""
    return scan(Path(path).read_bytes(), str(path))


_decode = m.command_decoder.decode


def apply(ex: Exchange, seq: int, payload) -> list[m.Event]:
    """Applies one journal record's payload to the exchange, as the live run did."""
    return ex.submit(_decode(payload), seq)


def load(path: str | os.PathLike) -> tuple[str, int, list, TailReport]:
    """A journal file read-only and decoded: (config digest, first seq, the commands of the
    valid records in order, report)."""
    seg = Segment.open(path)
    return seg.header.digest, seg.header.first_seq, seg.commands(), seg.report


def decode_all(path: str | os.PathLike) -> int:
    """Reads a journal as fast as it can: checks every record and decodes every command (the
    replay path without the exchange). Returns how many records it decoded."""
    return Segment.open(path).commands(keep=False)


def replay(path: str | os.PathLike, ex: Exchange,
           on_events=None) -> TailReport:
    """Applies a journal's records to `ex` in order, each with its sequence number. Records the
    exchange has already applied (seq <= ex.seq) are skipped; the first record must otherwise be
    the exchange's next, or JournalError is raised (commands would be missing). `on_events(events)`
    receives each command's events."""
    digest, first_seq, cmds, report = load(path)
    if digest != config_digest(ex.config):
        raise JournalError(f"{path}: written under a different venue config")
    skip = max(0, ex.seq + 1 - first_seq)
    if cmds[skip:] and first_seq + skip != ex.seq + 1:
        raise JournalError(f"{path}: starts at {first_seq} but the exchange expects {ex.seq + 1}")
    for seq, cmd in enumerate(cmds[skip:], start=first_seq + skip):
        events = ex.submit(cmd, seq)
        if on_events is not None:
            on_events(events)
    return report


class Journal:
    """One journal segment open for appending. A missing file (or one shorter than a header: its
    creation was interrupted) is created with its header, continuing `prev_chain`. An existing
    one is checked (Segment): it must be the segment of `first_seq` continuing `prev_chain`;
    corruption raises JournalError and changes nothing; a torn tail is moved aside (kept as
    `<segment>.torn-<offset>`, then cut off) and reported in `recovery`.

    Records go through a perpcore._journal.GroupWriter: with sync "group" its C flusher thread
    (which never takes the GIL) seals (chained CRCs), writes and fsyncs a group once
    `group_records` are waiting, once the oldest has waited `group_ms` (on the monotonic clock), or
    when commit() asks, so the engine thread never waits for the disk; `committed_seq` is the last
    durable record and `chain` its CRC. Appends wait (back-pressure) while `max_pending` records
    are uncommitted. If a write or fsync fails, every later append and commit raises JournalError:
    nothing after a failed commit is ever reported durable, and the engine must be recovered from
    its store."""

    def __init__(self, path: str | os.PathLike, digest: str, first_seq: int = 1,
                 prev_chain: int = 0, sync: str = "group", group_records: int = 1024,
                 group_ms: float = 5.0, max_pending: int = 1 << 16):
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}")
        self.path = Path(path)
        self.sync = sync
        existing = self.path.exists() and self.path.stat().st_size >= HEADER_SIZE
        if existing:
            seg = Segment.open(self.path)
            h, self.recovery, register = seg.header, seg.report, seg.register
            if h.digest != digest:
                raise JournalError(f"{self.path}: written under a different venue config",
                                   self.path, 0)
            if (h.first_seq, h.prev_chain) != (first_seq, prev_chain):
                raise JournalError(f"{self.path}: starts at command {h.first_seq} continuing chain "
                                   f"{h.prev_chain:08x}, not at {first_seq} continuing "
                                   f"{prev_chain:08x}", self.path, 0, (h.first_seq, None))
            self.fd = os.open(self.path, os.O_WRONLY)
            if not self.recovery.clean:
                self.recovery = msgspec.structs.replace(
                    self.recovery, kept=keep_aside(self.path, seg.data, self.recovery.valid_bytes))
                os.ftruncate(self.fd, self.recovery.valid_bytes)
                os.fsync(self.fd)
            os.lseek(self.fd, self.recovery.valid_bytes, os.SEEK_SET)
            last_seq = self.recovery.last_seq
        else:
            header = encode_header(digest, first_seq, prev_chain)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(self.fd, header)
            os.fsync(self.fd)
            fsync_dir(self.path.parent)
            last_seq = first_seq - 1
            register = read_header(header).crc
            self.recovery = TailReport(str(self.path), 0, first_seq, last_seq, HEADER_SIZE, 0,
                                       prev_chain=prev_chain, header_crc=register,
                                       chain=prev_chain)
        self.first_seq, self.prev_chain = first_seq, prev_chain
        self.header_crc = self.recovery.header_crc
        try:
            self._writer = _journal.GroupWriter(self.fd, sync, last_seq, register, group_records,
                                              group_ms, max_pending)
        except BaseException:
            os.close(self.fd)
            raise

    @property
    def last_seq(self) -> int:
        """The last record appended."""
        return self._writer.last_seq

    @property
    def committed_seq(self) -> int:
        """The last record known durable (written, and fsynced unless sync is "none")."""
        return self._writer.committed_seq

    @property
    def chain(self) -> int:
        """The chain value at committed_seq: its record's CRC, or prev_chain while the segment
        has none (what a snapshot records and the next segment's header continues)."""
        if self._writer.committed_seq < self.first_seq:
            return self.prev_chain
        return self._writer.chain

    def append(self, seq: int, payload: bytes) -> None:
        """Adds the record of command `seq`; it is durable once committed_seq >= seq."""
        if seq != self._writer.last_seq + 1:
            raise JournalError(f"append of {seq} after {self._writer.last_seq}")
        try:
            self._writer.append(seq, payload)
        except OSError as e:
            raise self.failure(e) from e

    def commit(self) -> None:
        """Returns once everything appended so far is committed."""
        try:
            self._writer.commit()
        except OSError as e:
            raise self.failure(e) from e

    def failure(self, error: OSError) -> JournalError:
        """What an append or commit that met `error` raises."""
        return JournalError(f"{self.path}: a commit failed ({error})")

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            self._writer.close()
        except OSError as e:
            raise JournalError(f"{self.path}: the last commit failed ({e})") from e
        finally:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def keep_aside(path: Path, data: bytes, offset: int) -> str:
    """Copies data[offset:] (bytes about to be cut off `path`) durably to a new file beside it,
    `<name>.torn-<offset>` (with a counter if that exists); returns its name."""
    base = f"{path.name}.torn-{offset}"
    name, n = base, 1
    while (path.parent / name).exists():
        name, n = f"{base}.{n}", n + 1
    write_new(path.parent / name, memoryview(data)[offset:])
    return name


def write_new(path: Path, data) -> None:
    """Writes a new file (never over an existing one) and makes it and its name durable."""
    write_durably(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), data)
    fsync_dir(path.parent)


def write_durably(fd: int, data) -> None:
    """Writes all of data to fd, fsyncs and closes it."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Makes a directory's entries (a created or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournaledExchange(JournaledCore):
    """An Exchange whose every command is journaled before its events are released.

    submit() and submit_bytes() return the events released by that call: those of every command
    whose record has become durable since the last release, in sequence order (each event carries
    its seq). With sync "always" that is the command's own events; with "group" they come in
    groups, as the flusher commits. flush() waits for everything to be durable and releases it;
    poll() releases what has become durable without waiting (a gateway calls it when idle, so a
    quiet market does not hold an acknowledgement back). `acknowledged_seq` is the last seq whose
    events have all been released.

    submit(), submit_bytes() and poll() are perpcore._journal.JournaledCore's (the hot path in
    C); `journal` may be swapped for a new one (a store does at checkpoints)."""

    def __init__(self, ex: Exchange, journal: Journal):
        if journal.last_seq != ex.seq and ex.halted is None:
            raise JournalError(f"journal ends at {journal.last_seq}, exchange is at {ex.seq}")

    def flush(self) -> list[m.Event]:
        self.journal.commit()
        return self.poll()

    def close(self) -> list[m.Event]:
        events = self.flush()
        self.journal.close()
        return events


def iter_commands(path: str | os.PathLike) -> Iterator[tuple[int, m.Message]]:
    """(seq, command) of each valid record."""
    _, first_seq, cmds, _ = load(path)
    return enumerate(cmds, start=first_seq)
