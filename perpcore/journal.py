"""The command journal: every command is written here before its events are released.

A journal file is a header (magic, the venue config's digest, the first sequence number it holds)
followed by records, one per command:

    u32 body length | u32 CRC32 of the body | body = u64 sequence number + msgpack command

all little-endian. The command is the msgpack encoding of the object the live run applied (or the
bytes a gateway gave submit_bytes()); a replay decodes it back to an equal object, rebuilding it
field by field where a field had the wrong type live, so the exchange refuses it the same way, and
bytes that did not decode live are refused as MALFORMED again (see decode_command).

Durability (`sync`):
- "always": each record is written and fsynced before its events are released;
- "group": a C thread that never takes the GIL writes and fsyncs records in groups, once
  `group_records` are waiting or the oldest has waited `group_ms` milliseconds; the events of a
  command are released only after its group's fsync, so an acknowledged command is always on disk,
  and the engine thread never waits for the disk. The wait is measured on the monotonic clock; it
  decides only when bytes reach the disk, never anything in the engine's state or events;
- "none": records are written in groups but never fsynced (research replays, benchmarks).

On open, the records are checked in order (length, CRC, consecutive sequence numbers); the first
one that fails and everything after it is a torn or corrupt tail: it is reported in
`Journal.recovery`, truncated when the journal is opened for writing, and never replayed.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Iterator

import msgspec

from perpcore import _jscan
from perpcore._journaled import JournaledCore
from perpcore import messages as m
from perpcore.exchange import Exchange, config_digest

MAGIC = b"PCJRNL01"
_HEADER = struct.Struct("<8s16sQ")          # magic, config digest, first sequence number
HEADER_SIZE = _HEADER.size
_PREFIX = struct.Struct("<II")              # body length, CRC32 of the body
_SEQ = struct.Struct("<Q")
MAX_BODY = 1 << 24                          # no command comes near 16 MiB: a longer length is corruption

SYNC_MODES = ("always", "group", "none")


class JournalError(Exception):
    """A journal that cannot be used: wrong magic or config, or acknowledged records missing."""


class TailReport(msgspec.Struct, frozen=True):
    """What opening a journal found."""
    path: str
    records: int                # valid records
    first_seq: int              # the sequence number the file starts at
    last_seq: int               # of the last valid record (first_seq - 1 when there is none)
    valid_bytes: int            # header + valid records
    dropped_bytes: int          # the torn or corrupt tail after them
    reason: str = ""            # why the tail was dropped ("" when there was none)

    @property
    def clean(self) -> bool:
        return self.dropped_bytes == 0


def encode_header(digest: str, first_seq: int) -> bytes:
    return _HEADER.pack(MAGIC, bytes.fromhex(digest), first_seq)


def encode_record(seq: int, payload: bytes) -> bytes:
    body = _SEQ.pack(seq) + payload
    return _PREFIX.pack(len(body), zlib.crc32(body)) + body


def _read_header(data: bytes, path: str) -> tuple[str, int]:
    if len(data) < HEADER_SIZE:
        raise JournalError(f"{path}: shorter than a journal header")
    magic, digest, first_seq = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise JournalError(f"{path}: not a perpcore journal")
    return digest.hex(), first_seq


_WHY = {_jscan.TORN_HEADER: "torn record header", _jscan.BAD_LENGTH: "impossible record length",
        _jscan.TORN_RECORD: "torn record", _jscan.BAD_CRC: "CRC mismatch",
        _jscan.BAD_SEQ: "sequence number out of order"}


def _spans(data: bytes, path: str):
    """(config digest, first seq, int64 array of (payload start, end) per valid record, report)."""
    digest, first_seq = _read_header(data, path)
    spans, end, why = _jscan.scan(data, HEADER_SIZE, first_seq, MAX_BODY)
    report = TailReport(path=path, records=len(spans), first_seq=first_seq,
                        last_seq=first_seq + len(spans) - 1, valid_bytes=end,
                        dropped_bytes=len(data) - end, reason=_WHY.get(why, ""))
    return digest, first_seq, spans, report


def scan(data: bytes, path: str = "<journal>") -> tuple[str, list[tuple[int, memoryview]], TailReport]:
    """Checks a journal's bytes: (config digest, [(seq, payload)] of the valid records, report).
    The payloads are views into `data`."""
    digest, first_seq, spans, report = _spans(data, path)
    view = memoryview(data)
    return (digest, [(first_seq + i, view[a:b]) for i, (a, b) in enumerate(spans.tolist())],
            report)


def read(path: str | os.PathLike) -> tuple[str, list[tuple[int, memoryview]], TailReport]:
    """scan() of a journal file, read-only: a bad tail is reported, not truncated."""
    return scan(Path(path).read_bytes(), str(path))


# Every message class by its tag, to rebuild a journaled command whose fields the typed decoder
# refuses (an object given to submit() with a field of the wrong type).
_MESSAGE_TYPES = {cls.__name__: cls for cls in m._all_subclasses(m.Message)}


def decode_command(payload) -> m.Message | bytes:
    """The command a record holds, as the live run applied it: the typed decoding when the
    fields check out; otherwise the object rebuilt field by field without validation (the exchange
    refuses it as it did live); or, for a payload that came in as bytes and did not decode, those
    bytes (to be refused as MALFORMED by Exchange.submit_bytes, as live)."""
    try:
        return _decode(payload)
    except msgspec.DecodeError:
        pass
    try:
        raw = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError:
        return bytes(payload)
    if type(raw) is bytes:
        return raw
    if type(raw) is list and raw and type(raw[0]) is str and raw[0] in _MESSAGE_TYPES:
        try:
            return _MESSAGE_TYPES[raw[0]](*raw[1:])
        except TypeError:
            pass
    return bytes(payload)


_decode = m.command_decoder.decode


def submit(ex: Exchange, seq: int, cmd: m.Message | bytes) -> list[m.Event]:
    """Applies one decoded journal record (decode_command) to the exchange, as the live run did."""
    if type(cmd) is bytes:
        return ex.submit_bytes(cmd, seq)
    return ex.submit(cmd, seq)


def apply(ex: Exchange, seq: int, payload) -> list[m.Event]:
    """Applies one journal record's payload to the exchange, as the live run did."""
    return submit(ex, seq, decode_command(payload))


def load(path: str | os.PathLike) -> tuple[str, int, list, TailReport]:
    """A journal file read-only and decoded: (config digest, first seq, the commands of the
    valid records in order, report)."""
    data = Path(path).read_bytes()
    digest, first_seq, spans, report = _spans(data, str(path))
    return digest, first_seq, _jscan.decode_spans(data, spans, _decode, decode_command), report


def decode_all(path: str | os.PathLike) -> int:
    """Reads a journal as fast as it can: checks every record and decodes every command (the
    replay path without the exchange). Returns how many records it decoded."""
    data = Path(path).read_bytes()
    _, _, spans, _ = _spans(data, str(path))
    return _jscan.decode_spans(data, spans, _decode, decode_command, keep=False)


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
        events = submit(ex, seq, cmd)
        if on_events is not None:
            on_events(events)
    return report


class Journal:
    """One journal file open for appending. Opening an existing file checks it and truncates a
    torn or corrupt tail (reported in `recovery`); a missing file is created with its header.

    Records go through a perpcore._jscan.GroupWriter: with sync "group" its C flusher thread
    (which never takes the GIL) writes and fsyncs a group once `group_records` are waiting, once
    the oldest has waited `group_ms` (on the monotonic clock), or when commit() asks, so the
    engine thread never waits for the disk; `committed_seq` is the last durable record. Appends
    wait (back-pressure) while `max_pending` records are uncommitted. If a write or fsync fails,
    every later append and commit raises JournalError: nothing after a failed commit is ever
    reported durable, and the engine must be recovered from its store."""

    def __init__(self, path: str | os.PathLike, digest: str, first_seq: int = 1,
                 sync: str = "group", group_records: int = 1024, group_ms: float = 5.0,
                 max_pending: int = 1 << 16):
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}")
        self.path = Path(path)
        self.sync = sync
        existing = self.path.exists() and self.path.stat().st_size >= HEADER_SIZE
        if existing:
            found, _, self.recovery = read(self.path)
            if found != digest:
                raise JournalError(f"{self.path}: written under a different venue config")
            self.fd = os.open(self.path, os.O_WRONLY)
            if not self.recovery.clean:
                os.ftruncate(self.fd, self.recovery.valid_bytes)
                os.fsync(self.fd)
            os.lseek(self.fd, self.recovery.valid_bytes, os.SEEK_SET)
            last_seq = self.recovery.last_seq
        else:
            # a file shorter than its header is one whose creation was interrupted: start it over
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(self.fd, encode_header(digest, first_seq))
            os.fsync(self.fd)
            fsync_dir(self.path.parent)
            last_seq = first_seq - 1
            self.recovery = TailReport(str(self.path), 0, first_seq, last_seq, HEADER_SIZE, 0)
        try:
            self._writer = _jscan.GroupWriter(self.fd, sync, last_seq, group_records, group_ms,
                                              max_pending)
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

    submit(), submit_bytes() and poll() are perpcore._journaled.JournaledCore's (the hot path in
    C); `journal` may be swapped for a new one (a store does at checkpoints)."""

    def __init__(self, ex: Exchange, journal: Journal):
        if journal.last_seq != ex.seq:
            raise JournalError(f"journal ends at {journal.last_seq}, exchange is at {ex.seq}")

    def flush(self) -> list[m.Event]:
        self.journal.commit()
        return self.poll()

    def close(self) -> list[m.Event]:
        events = self.flush()
        self.journal.close()
        return events


def iter_commands(path: str | os.PathLike) -> Iterator[tuple[int, m.Message | bytes]]:
    """(seq, command) of each valid record, as decode_command() gives it."""
    _, first_seq, cmds, _ = load(path)
    return enumerate(cmds, start=first_seq)
