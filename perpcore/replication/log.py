"""The replicated command log: a NATS JetStream stream per venue, its entries, its one writer.

An entry is one JetStream message holding consecutive journaled commands (packed: the commands
of one or more batches of the engine runner, up to `pack`), as `u32 CRC32 | msgpack Entry`:

    Entry(first_seq, commands, state_hash, writer)

`first_seq` is the engine sequence number of its first command (the others follow one by one);
`state_hash`, when not empty, is the sequencer's Exchange.state_hash() after the entry's last
command (a checkpoint every `checkpoint_every` commands, and on every claim), which a replica must
reach at that point or halt; `writer` names the writer's session. An entry without commands is a
claim: a new writer's first entry (below).

A position in the log is `LogPosition(entry_seq, offset)`: the stream sequence of the entry that
holds the last applied command and how many of its commands are applied. Snapshots carry it
(perpcore.snapshot) beside the engine's own `seq`.

The writer (`SequencerLog`) appends each entry with
- `Nats-Msg-Id` `<session>:<first_seq>`: a retry after a lost acknowledgement is answered
  `duplicate` with the entry's original sequence number, and is taken as success only when that
  is the number this entry was meant to have; a duplicate on an entry's first attempt (a stream
  left over from another run, or another writer's id) is an error;
- `Nats-Expected-Last-Sequence`: the stream sequence of its predecessor. The writer is the only
  one: it predicts every entry's sequence and keeps many entries in flight (pipelined); an entry
  refused with "wrong last sequence" is sent again once its predecessor is confirmed (the refusal
  may come from a predecessor lost in a leader change), and refused again it means another writer
  has appended: the writer is fenced, stops at once and says why. It never re-reads the log to
  carry on.

A new writer (`open_sequencer`) first applies the entries after its store's position (a promoted
replica's missing tail), then claims the log: an empty entry expecting the last sequence it read.
From then on the old writer's appends are refused (fenced). Acknowledgements: the engine runner
answers a caller only once the entry holding its command is acknowledged by the stream, which
with three replicas means stored (fsynced, with `sync_interval: always`) on a majority of nodes.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import secrets
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Sequence

import msgspec

from perpcore import messages as m
from perpcore.snapshot import LogPosition

DEFAULT_STREAM = "perpcore"
MAX_IN_FLIGHT = 1024            # entries sent and not yet confirmed (one command each at most)
_CRC = struct.Struct("<I")


class LogError(Exception):
    """The replicated log cannot be used or written: acknowledgements stop."""


class Fenced(LogError):
    """Another writer has appended to the log: this one must stop (it never carries on)."""


class CorruptEntry(LogError):
    """An entry that fails its CRC or does not decode, or does not continue the engine."""


class Entry(msgspec.Struct, array_like=True, frozen=True):
    first_seq: int
    commands: list[m.Commands]
    state_hash: str = ""
    writer: str = ""


_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(Entry)


def encode_entry(entry: Entry) -> bytes:
    body = _encoder.encode(entry)
    return _CRC.pack(zlib.crc32(body)) + body


def decode_entry(data: bytes, stream_seq: int = 0) -> Entry:
    """The entry in a message's bytes; CorruptEntry when its CRC or its decoding fails (every
    command is checked against its schema, as the journal's decoder does)."""
    if len(data) < _CRC.size or zlib.crc32(memoryview(data)[_CRC.size:]) != \
            _CRC.unpack_from(data)[0]:
        raise CorruptEntry(f"log entry {stream_seq} is damaged (CRC mismatch, {len(data)} bytes)")
    try:
        return _entry_decoder.decode(memoryview(data)[_CRC.size:])
    except msgspec.DecodeError as e:
        raise CorruptEntry(f"log entry {stream_seq} does not decode: {e}") from e


def subject_of(stream: str) -> str:
    return f"{stream}.log"


def checkpoint_subject(stream: str) -> str:
    """Where replicas (and the sequencer) publish their (seq, state_hash) checkpoints."""
    return f"{stream}.checkpoints"


def servers_of(url: str | Sequence[str]) -> list[str]:
    """nats://a:4222,nats://b:4222 (or a list) as the list nats-py takes."""
    return [u.strip() for u in url.split(",")] if isinstance(url, str) else list(url)


async def connect(url: str | Sequence[str], name: str = "perpcore"):
    """A NATS connection that keeps reconnecting (a node restarting is routine)."""
    import nats
    return await nats.connect(servers_of(url), name=name, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.25, connect_timeout=5)


async def retry(what: str, fn: Callable, deadline_s: float = 60.0, first_wait: float = 0.1):
    """fn() retried with backoff while JetStream is unavailable (a stream without a leader for
    the seconds after a node died answers with timeouts or 503s); LogError past the deadline."""
    from nats import errors
    from nats.js import errors as js_errors
    loop = asyncio.get_running_loop()
    deadline, wait = loop.time() + deadline_s, first_wait
    while True:
        try:
            return await fn()
        except (errors.TimeoutError, errors.NoRespondersError, asyncio.TimeoutError,
                js_errors.ServiceUnavailableError, errors.ConnectionReconnectingError) as e:
            if loop.time() + wait > deadline:
                raise LogError(f"{what}: JetStream unavailable for {deadline_s:.0f} s "
                               f"({e!r})") from e
        except js_errors.APIError as e:
            # a leader election in progress answers 503 or 500 ("no suitable peers", ...)
            if e.code not in (500, 503) or loop.time() + wait > deadline:
                raise LogError(f"{what}: {e}") from e
        await asyncio.sleep(wait)
        wait = min(wait * 2, 2.0)


async def ensure_stream(js, stream: str = DEFAULT_STREAM, replicas: int = 3,
                        duplicate_window_s: float = 120.0, new: bool = False):
    """The venue's stream (file storage, `replicas` copies, a duplicate window), created if
    missing; `new` requires it to be empty (a fresh venue must not inherit an old run's log,
    whose message ids would turn every fresh append into a duplicate). Its StreamInfo."""
    from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import NotFoundError
    config = StreamConfig(name=stream, subjects=[subject_of(stream)], storage=StorageType.FILE,
                          num_replicas=replicas, retention=RetentionPolicy.LIMITS,
                          discard=DiscardPolicy.NEW, duplicate_window=duplicate_window_s,
                          allow_direct=True)

    async def create():
        try:
            return await js.stream_info(stream)
        except NotFoundError:
            return await js.add_stream(config)

    info = await retry(f"stream {stream}", create)
    if info.config.num_replicas != replicas:
        raise LogError(f"stream {stream} has {info.config.num_replicas} replicas, not {replicas}")
    if new and info.state.messages:
        raise LogError(f"stream {stream} already holds {info.state.messages} entries (up to "
                       f"{info.state.last_seq}): a new venue needs an empty stream")
    return info


class Follower:
    """Reads a stream's entries in order from a stream sequence on, through an ephemeral pull
    consumer that is made again (with backoff) whenever it fails or stalls: a leader change
    loses it, and creating one right after a node died times out for seconds. Every message's
    stream sequence is checked to be the next one: a gap is LogError, never a silent skip."""

    def __init__(self, js, stream: str, next_seq: int, batch: int = 256):
        self.js, self.stream, self.next_seq, self.batch = js, stream, max(next_seq, 1), batch
        self._sub = None
        self._caught_up = False

    async def _subscribe(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        await self.close()
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=self.next_seq, ack_policy=AckPolicy.NONE,
                                inactive_threshold=30.0, max_waiting=4)
        self._sub = await self.js.pull_subscribe(subject_of(self.stream), durable=None,
                                                 stream=self.stream, config=config)

    async def fetch(self, timeout: float = 1.0) -> list[tuple[int, bytes]]:
        """The next entries as (stream seq, data), at most `batch`; [] when none came in time
        (or the consumer had to be made again)."""
        from nats import errors
        if self._sub is None:
            await retry(f"consumer on {self.stream}", self._subscribe)
        # nats-py's fetch returns at once what is there, but when nothing is it waits for a
        # whole batch or the timeout: caught up, the reader waits for one entry, then takes
        # what followed it without waiting long
        size = 1 if self._caught_up else self.batch
        try:
            msgs = await self._sub.fetch(size, timeout=timeout if self._caught_up
                                         else min(timeout, 0.005))
        except (errors.TimeoutError, asyncio.TimeoutError):
            if not self._caught_up:
                self._caught_up = True
                return []
            try:        # a consumer that still answers is idle: nothing new in the log
                await self._sub.consumer_info()
                return []
            except (errors.Error, asyncio.TimeoutError):    # it is gone (its node died, a
                msgs = []                                   # leader change)
        except errors.Error:            # the consumer or its node is gone: make another
            msgs = []
        if not msgs:
            self._sub = None
            return []
        self._caught_up = size > 1 and len(msgs) < size
        out = []
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            if seq != self.next_seq:
                if seq < self.next_seq:         # a re-made consumer's overlap
                    continue
                raise LogError(f"stream {self.stream}: entry {seq} came after "
                               f"{self.next_seq - 1}: entries {self.next_seq}-{seq - 1} are "
                               f"missing from the log")
            out.append((seq, msg.data))
            self.next_seq = seq + 1
        return out

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:           # a connection being closed: nothing to undo
                pass


def apply_entry(engine, stream_seq: int, entry: Entry) -> LogPosition:
    """Applies an entry's commands that the engine has not applied yet (seq > engine.ex.seq;
    a store's journal may already hold the first ones), each with its sequence number, and checks
    the entry's state hash. CorruptEntry when the entry does not continue the engine (a gap), a
    command is refused unsequenced (the engine would diverge), or the hash differs."""
    ex = engine.ex if hasattr(engine, "ex") else engine
    if entry.first_seq > ex.seq + 1:
        raise CorruptEntry(f"log entry {stream_seq} starts at command {entry.first_seq} but the "
                           f"engine is at {ex.seq}: commands {ex.seq + 1}-{entry.first_seq - 1} "
                           f"are missing")
    for seq, cmd in enumerate(entry.commands, start=entry.first_seq):
        if seq <= ex.seq:
            continue
        events = engine.submit(cmd, seq)
        if ex.seq != seq:
            raise CorruptEntry(f"log entry {stream_seq}: command {seq} ({type(cmd).__name__}) "
                               f"was refused unsequenced: {events[-1] if events else ''}")
    end = entry.first_seq + len(entry.commands) - 1
    if entry.state_hash and end == ex.seq:
        mine = ex.state_hash()
        if mine != entry.state_hash:
            raise CorruptEntry(f"state hash mismatch at command {end} (log entry {stream_seq}): "
                               f"the sequencer had {entry.state_hash}, this engine {mine}")
    return LogPosition(stream_seq, len(entry.commands))


class _Pending:
    """An entry on its way: its payload, predicted stream sequence, attempts, and the appends'
    tickets that its acknowledgement completes."""
    __slots__ = ("payload", "msg_id", "seq", "attempts", "after_confirmed", "task", "tickets")

    def __init__(self, payload: bytes, msg_id: str, seq: int, tickets: list):
        self.payload, self.msg_id, self.seq, self.tickets = payload, msg_id, seq, tickets
        self.attempts = 0
        self.after_confirmed = False        # sent once its predecessor was confirmed
        self.task: asyncio.Task | None = None


class SequencerLog:
    """The log's one writer, with a NATS connection on an event loop thread of its own; the
    engine runner's durable log (EngineRunner(durable_log=...)).

    append(records, exchange) is called on the engine thread with the (seq, command) pairs a
    batch sequenced, in order, once they are in the local journal; it returns a concurrent Future
    resolved once the stream has acknowledged them (or failed: Fenced, LogError). Records are
    packed into entries of up to `pack` commands: at once while fewer than `window` entries await
    their acknowledgement, else together with whatever arrives until one is acknowledged (a
    group commit over the log: each entry costs the stream an fsync on a majority of nodes, so
    fewer, fuller entries under load keep the latency down). Entries are pipelined and
    acknowledged in order. `position` is the position after the last appended record (what a
    snapshot of the engine's state records). `failed` is a Future set with the first fatal
    error: the writer then refuses every append."""

    def __init__(self, url: str | Sequence[str], stream: str = DEFAULT_STREAM, *,
                 pack: int = 1024, window: int = 2, checkpoint_every: int = 10_000,
                 ack_timeout: float = 5.0, unavailable_s: float = 30.0, replicas: int = 3,
                 connect_name: str = "perpcore-sequencer"):
        self.url, self.stream, self.subject = url, stream, subject_of(stream)
        self.pack, self.window = pack, window
        self.checkpoint_every = checkpoint_every
        self.ack_timeout, self.unavailable_s = ack_timeout, unavailable_s
        self.replicas = replicas
        self.session = secrets.token_hex(8)     # message ids unique to this writer's session
        self.failed: concurrent.futures.Future = concurrent.futures.Future()
        self.appended = 0                       # entries appended (counters for benchmarks)
        self.resent = 0                         # and sent again (timeouts, leader changes)
        self._last_hash_seq = 0
        # shared by the engine thread (append, position) and the log thread (confirmations)
        self._lock = threading.Lock()
        self._buffer: list = []                 # records waiting to be packed into an entry
        self._buffer_tickets: list = []
        self._unconfirmed = 0                   # entries formed and not yet acknowledged
        self._next_seq = 0                      # the stream sequence the next entry gets
        self._position = LogPosition()
        self._queue: deque[_Pending] = deque()
        self._wake: asyncio.Event | None = None
        self._closing = False
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="perpcore-log",
                                        daemon=True)
        self._thread.start()
        try:
            self.nc = self.call(connect(url, connect_name))
            self.js = self.nc.jetstream()
            self._pump = self.call(self._start_pump())
        except BaseException:
            self._stop_loop()
            raise

    def call(self, coro, timeout: float | None = None):
        """Runs a coroutine on the log's loop and waits for its result (from another thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start_pump(self) -> asyncio.Task:
        self._wake = asyncio.Event()
        return asyncio.ensure_future(self._run())

    # ---- opening: catch up, claim ----------------------------------------------------------

    def catch_up(self, engine, start: LogPosition, new: bool = False) -> LogPosition:
        """Applies (on the calling thread, the engine's owner) the log's entries after `start`
        until the end of the stream; returns the position reached. `new`: the stream must be
        empty. LogError if the engine holds commands beyond the log (they were never
        acknowledged: the store belonged to a writer that lost the log)."""
        info = self.call(ensure_stream(self.js, self.stream, self.replicas, new=new))
        last = info.state.last_seq
        if start.entry_seq > last:
            raise LogError(f"the store's log position is entry {start.entry_seq}, but stream "
                           f"{self.stream} ends at {last}: not this store's log")
        follower = Follower(self.js, self.stream, start.entry_seq or 1)
        position, end_seq = start, 0
        try:
            while follower.next_seq <= last:
                for seq, data in self.call(follower.fetch()):
                    entry = decode_entry(data, seq)
                    position = apply_entry(engine, seq, entry)
                    end_seq = entry.first_seq + len(entry.commands) - 1
        finally:
            self.call(follower.close())
        ex = engine.ex if hasattr(engine, "ex") else engine
        if last and ex.seq > end_seq:
            raise LogError(f"the store holds commands {end_seq + 1}-{ex.seq} that are not in "
                           f"the log (never acknowledged by it): seed this store again from a "
                           f"replica's")
        self._next_seq = last + 1
        self._position = position if last else LogPosition()
        return self._position

    def commands(self, until: int):
        """(seq, command) of every command in the log up to engine seq `until`, from the first
        entry (a promoted replica's gateway rebuilds its read models from them: its own journal
        no longer reaches back to the first command)."""
        follower = Follower(self.js, self.stream, 1)
        try:
            while True:
                for seq, data in self.call(follower.fetch()):
                    entry = decode_entry(data, seq)
                    for number, cmd in enumerate(entry.commands, start=entry.first_seq):
                        if number > until:
                            return
                        yield number, cmd
                    if entry.first_seq + len(entry.commands) > until:
                        return
        finally:
            self.call(follower.close())

    def claim(self, exchange) -> LogPosition:
        """Appends this writer's first entry (no commands, the state hash) expecting the last
        entry catch_up() read: from here on the log is this writer's and an older one is fenced.
        Fenced if someone appended since."""
        entry = Entry(exchange.seq + 1, [], exchange.state_hash(), self.session)
        self._last_hash_seq = exchange.seq
        ticket: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            claim = _Pending(encode_entry(entry), f"{self.session}:claim", self._next_seq,
                             [ticket])
            self._next_seq += 1
            self._unconfirmed += 1
            self._position = LogPosition(claim.seq, 0)
            self._queue.append(claim)
        self.loop.call_soon_threadsafe(self._wake.set)
        ticket.result()
        return self._position

    # ---- appending (engine thread) ---------------------------------------------------------

    def append(self, records: list, exchange) -> concurrent.futures.Future:
        """See the class doc. `records`: [(seq, command)] in sequence order."""
        ticket: concurrent.futures.Future = concurrent.futures.Future()
        last_seq = records[-1][0]
        checkpoint = ""
        if last_seq // self.checkpoint_every > self._last_hash_seq // self.checkpoint_every:
            checkpoint = exchange.state_hash()      # the state after the batch's last command
            self._last_hash_seq = last_seq
        with self._lock:
            if self.failed.done():
                ticket.set_exception(self.failed.exception())
                return ticket
            self._buffer += records
            self._buffer_tickets.append(ticket)
            # a checkpoint's entry must end at its command
            formed = self._take(force=bool(checkpoint), checkpoint=checkpoint)
        if formed:
            self.loop.call_soon_threadsafe(self._wake.set)
        return ticket

    @property
    def position(self) -> LogPosition:
        """The position after the last appended record (packing any that wait)."""
        with self._lock:
            formed = self._take(force=True)
            position = self._position
        if formed:
            self.loop.call_soon_threadsafe(self._wake.set)
        return position

    def _take(self, force: bool = False, checkpoint: str = "") -> bool:
        """(Under the lock) packs the waiting records into entries, each given its stream
        sequence, and queues them in that order for the pump, unless `window` entries are
        unacknowledged and nothing forces them out. Whether it did."""
        if not self._buffer or (not force and self._unconfirmed >= self.window):
            return False
        records, tickets = self._buffer, self._buffer_tickets
        self._buffer, self._buffer_tickets = [], []
        chunks = [records[i:i + self.pack] for i in range(0, len(records), self.pack)]
        entries = []
        for k, chunk in enumerate(chunks):
            last = k == len(chunks) - 1
            first = chunk[0][0]
            payload = encode_entry(Entry(first, [cmd for _, cmd in chunk],
                                         checkpoint if last else "", self.session))
            entries.append(_Pending(payload, f"{self.session}:{first}", self._next_seq + k,
                                    tickets if last else []))
        self._next_seq += len(entries)
        self._unconfirmed += len(entries)
        self.appended += len(entries)
        self._position = LogPosition(self._next_seq - 1, len(chunks[-1]))
        self._queue.extend(entries)
        return True

    # ---- the pump (log thread) -------------------------------------------------------------

    async def _run(self) -> None:
        """Sends queued entries (in the order of their sequence numbers: they are queued under
        the lock that numbers them) and confirms them in order."""
        inflight: deque[_Pending] = deque()
        while True:
            with self._lock:
                sending = [self._queue.popleft() for _ in
                           range(min(len(self._queue), MAX_IN_FLIGHT - len(inflight)))]
            for p in sending:
                p.after_confirmed = not inflight
                p.task = asyncio.ensure_future(self._send(p))
                inflight.append(p)
            if not inflight:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            head = inflight[0]
            try:
                await self._confirm(head)
            except LogError as e:
                self._fail(e, list(inflight))
                inflight.clear()
                continue
            inflight.popleft()
            self._resolve(head.tickets, None)
            with self._lock:
                self._unconfirmed -= 1
                self._take()

    async def _confirm(self, p: _Pending) -> None:
        """Waits for an entry's acknowledgement, sending it again while that is what is right
        (a timeout, a leaderless stream, a refusal its unconfirmed predecessor may have caused);
        LogError (Fenced) when it cannot be written."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.unavailable_s
        wait = 0.05
        while True:
            outcome, detail = await p.task
            if outcome == "ok":
                return
            if outcome == "wrong-last" and p.after_confirmed:
                raise Fenced(f"fenced: stream {self.stream} moved past entry {p.seq - 1} "
                             f"({detail}): another writer holds the log; this sequencer stops")
            if outcome == "error":
                raise LogError(f"stream {self.stream}, entry {p.seq}: {detail}")
            if outcome == "retry":
                if loop.time() > deadline:
                    raise LogError(f"stream {self.stream}: entry {p.seq} not acknowledged for "
                                   f"{self.unavailable_s:.0f} s ({detail})")
                await asyncio.sleep(wait)
                wait = min(wait * 2, 1.0)
            p.after_confirmed = True            # its predecessor is confirmed by now
            self.resent += 1
            p.task = asyncio.ensure_future(self._send(p))

    async def _send(self, p: _Pending) -> tuple[str, str]:
        """One attempt: ("ok", ""), ("retry", why), ("wrong-last", why) or ("error", why)."""
        from nats import errors
        p.attempts += 1
        headers = {"Nats-Msg-Id": p.msg_id, "Nats-Expected-Last-Sequence": str(p.seq - 1)}
        try:
            # nats-py's own publish futures never time out: a request with a timeout does
            reply = await self.nc.request(self.subject, p.payload, timeout=self.ack_timeout,
                                          headers=headers)
        except (errors.TimeoutError, errors.NoRespondersError, asyncio.TimeoutError,
                errors.ConnectionReconnectingError, errors.ConnectionClosedError) as e:
            return "retry", repr(e)
        try:
            ack = json.loads(reply.data)
        except ValueError:
            return "error", f"unreadable acknowledgement {reply.data[:100]!r}"
        error = ack.get("error")
        if error:
            if error.get("err_code") == 10071:          # wrong last sequence
                return "wrong-last", error.get("description", "")
            if error.get("code") in (500, 503):         # no leader, no quorum yet
                return "retry", error.get("description", "")
            return "error", error.get("description", str(error))
        seq = ack.get("seq")
        if ack.get("duplicate"):
            if p.attempts == 1:
                return "error", (f"a fresh entry id {p.msg_id} was already in the stream "
                                 f"(at {seq}): a stream left over from another run?")
            if seq != p.seq:
                return "error", (f"retried entry {p.msg_id} was stored at {seq}, not at "
                                 f"{p.seq}")
            return "ok", ""
        if seq != p.seq:
            return "error", f"entry stored at {seq}, expected {p.seq}"
        return "ok", ""

    def _fail(self, error: LogError, entries: list[_Pending]) -> None:
        with self._lock:
            if not self.failed.done():
                self.failed.set_exception(error)
            waiting, self._buffer_tickets, self._buffer = self._buffer_tickets, [], []
            entries += self._queue
            self._queue.clear()
        self._resolve(waiting, error)
        for p in entries:
            if p.task is not None:
                p.task.cancel()
            self._resolve(p.tickets, error)

    @staticmethod
    def _resolve(tickets: list, error: BaseException | None) -> None:
        for ticket in tickets:
            if not ticket.done():
                if error is None:
                    ticket.set_result(None)
                else:
                    ticket.set_exception(error)

    # ---- closing -----------------------------------------------------------------------------

    def publish_checkpoint(self, name: str, seq: int, state_hash: str) -> None:
        """Publishes (seq, state_hash) on the checkpoint subject (from any thread)."""
        body = json.dumps({"node": name, "seq": seq, "state_hash": state_hash}).encode()
        asyncio.run_coroutine_threadsafe(
            self.nc.publish(checkpoint_subject(self.stream), body), self.loop)

    def close(self, timeout: float = 60.0) -> None:
        """Waits for the entries in flight, then closes the connection and the thread."""
        async def finish():
            self._closing = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._pump), timeout)
            finally:
                self._pump.cancel()
                await self.nc.close()
        try:
            self.call(finish())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


def open_sequencer(store, url: str | Sequence[str], stream: str = DEFAULT_STREAM,
                   **options) -> SequencerLog:
    """The writer of a store's venue: catches the store up with the log (applying, on the calling
    thread, the entries after its snapshot's position: a promoted replica's missing tail), then
    claims the log. A store that has never seen a log (no position, no command) needs an empty
    stream. Close the SequencerLog when done."""
    log = SequencerLog(url, stream, **options)
    try:
        start = store.recovery.log_position
        fresh = start == LogPosition() and store.engine.ex.seq == 0
        log.catch_up(store.engine, start, new=fresh)
        store.engine.flush()
        log.claim(store.engine.ex)
    except BaseException:
        log.close()
        raise
    return log
