"""The engine runner: one thread owns the engine, asyncio callers hand it commands.

A gateway's request handlers run on an event loop; the engine must be driven by exactly one
thread (README, "A total state machine"). EngineRunner is that thread:

    runner = EngineRunner(store.engine)          # a JournaledExchange, or a plain Exchange
    async with runner:
        events = await runner.submit(m.PlaceOrder(...))   # this command's events, durable
        view = await runner.query(lambda ex: ex.account(1))  # on the engine thread
        async for batch in runner.subscribe():     # every durable event, in sequence order
            ...

The engine thread takes whatever is queued (up to `max_batch` items), submits the commands one
after the other, commits the journal once (the group commit is the batch: with one caller it is
one command, with many it is as many as arrived while the last commit ran, and no fixed wait is
ever added) and then acknowledges each caller with the events of its own command. Queries in the
queue run after the commands queued before them are committed, so a query never sees a state a
crash could lose. The runner stamps the wall clock into commands that carry no time (ts 0), on
the engine thread just before they are sequenced: the journal holds the stamped command, so a
replay needs no clock.

With a `durable_log` (the sequencer of a replicated venue, perpcore.replication.log.SequencerLog)
each batch's sequenced commands, as stamped, are handed to it after the local journal's commit,
and nobody hears of the batch (callers, listeners, queries) until the log has acknowledged it; a
log that fails (fenced by another writer, or unavailable) fails those callers and every later
command, like a failed journal.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from perpcore import messages as m

_COMMAND, _QUERY, _STOP, _BARRIER = 0, 1, 2, 3
_replace = msgspec.structs.replace


class RunnerError(Exception):
    """The runner cannot acknowledge a command: its journal (or durable log) failed, or it is
    stopped."""


class Subscription:
    """An async iterator over the lists of durable events the engine publishes, one list per
    commit, in sequence order. A subscriber that falls `maxsize` lists behind is cut off (its
    iteration ends and `overflowed` is set): a slow reader must not hold the engine back or grow
    memory without bound; it resynchronises from a query."""

    def __init__(self, runner: "EngineRunner", maxsize: int):
        self._runner = runner
        self._queue: asyncio.Queue = asyncio.Queue(maxsize)
        self.overflowed = False
        self.closed = False

    def _put(self, events: list) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(events)
        except asyncio.QueueFull:
            self.overflowed = True
            self.close()

    def close(self) -> None:
        """Stops the subscription; a waiting iteration ends."""
        if not self.closed:
            self.closed = True
            self._runner._subscribers.discard(self)
            # wakes a reader blocked on an empty queue (a full one has items to drain first)
            if self._queue.empty():
                self._queue.put_nowait(None)

    def __aiter__(self):
        return self

    async def __anext__(self) -> list:
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        events = await self._queue.get()
        if events is None:
            raise StopAsyncIteration
        return events


class EngineRunner:
    """Owns an engine on a thread of its own and serves asyncio callers (see the module doc).

    `engine` is a perpcore.journal.JournaledExchange (a Store's `engine`) or a plain Exchange.
    submit(), query() and subscribe() are called from the event loop the runner was started on
    (other threads hand their work to that loop).
    `stamp_time` stamps `clock()` (ns, never behind the exchange clock) into commands with ts 0.
    `commit_hooks` are called on the engine thread after a batch's commands are applied and
    before its journal commit is awaited: whatever they make durable is durable before any
    command of the batch is acknowledged (a gateway's client order ids, for instance).
    `listeners` are called on the event loop with each list of durable events before the callers
    whose commands made them are answered (read models that a caller's next request reads);
    `engine_listeners` are called on the engine thread as fn(exchange, events) right after the
    commit, the state still exactly the one those events leave (book diffs, say).
    `durable_log`: an object whose append(records, exchange) takes the batch's [(seq, command)]
    on the engine thread and returns a concurrent Future resolved once they are durable there
    (see the module doc)."""

    def __init__(self, engine, *, stamp_time: bool = True, max_batch: int = 4096,
                 clock: Callable[[], int] = time.time_ns, durable_log=None):
        self.engine = engine
        self.journaled = hasattr(engine, "flush")
        self.exchange = engine.ex if self.journaled else engine
        self.stamp_time = stamp_time
        self.max_batch = max_batch
        self.clock = clock
        self._max_step = self.exchange.config.limits.max_time_step_ns
        self.commit_hooks: list[Callable[[], None]] = []
        self.listeners: list[Callable[[list], None]] = []
        self.engine_listeners: list[Callable[[Any, list], None]] = []
        self.durable_log = durable_log
        self._sequenced: list = []          # this batch's (seq, command), for the durable log
        self._logged: concurrent.futures.Future | None = None   # its last append
        self._stop_future: asyncio.Future | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()    # lists of items
        self._outbox: list = []             # this turn of the event loop's items
        self._subscribers: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._failed_in = "journal"         # or "replicated log"
        # counters for benchmarks (where the time goes): written by the engine thread only
        self.batches = 0
        self.commands = 0

    # ---- life cycle ------------------------------------------------------------------------

    async def start(self) -> "EngineRunner":
        """Starts the engine thread; results are delivered to the running event loop."""
        if self._thread is not None:
            raise RuntimeError("the runner is already started")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="perpcore-engine", daemon=True)
        self._thread.start()
        return self

    async def stop(self) -> None:
        """Lets the engine thread finish what is queued, then joins it; subscriptions end. The
        engine then belongs to the caller's thread again (e.g. to close its store)."""
        if self._thread is None:
            return
        done = self._loop.create_future()
        self._post((_STOP, None, done))
        await done
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        for sub in list(self._subscribers):
            sub.close()

    async def __aenter__(self) -> "EngineRunner":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ---- the callers' side -----------------------------------------------------------------

    def submit(self, cmd: m.Command) -> asyncio.Future:
        """The events of `cmd` once they are durable (an awaitable). A command refused before it
        is sequenced gets its OrderRejected, which is never journaled nor published."""
        fut = self._loop.create_future()
        self._post((_COMMAND, cmd, fut))
        return fut

    async def submit_many(self, cmds) -> list[list[m.Event]]:
        """Submits commands in order (queued together: one commit for all); each one's events."""
        futures = [self.submit(cmd) for cmd in cmds]
        return [await f for f in futures]

    def query(self, fn: Callable[..., Any], *args) -> asyncio.Future:
        """fn(exchange, *args) run on the engine thread after the commands queued before it are
        durable; its result (or exception) as an awaitable."""
        fut = self._loop.create_future()
        self._post((_QUERY, (fn, args), fut))
        return fut

    def barrier(self, on_engine: Callable[[Any], Any], on_loop: Callable[[Any], None]) -> None:
        """on_engine(exchange) on the engine thread once the commands queued before are
        durable, then on_loop(its result) on the event loop exactly between the listeners' calls
        for the events before and after that point: what a listener-fed read model holds then is
        the state on_engine saw (a checkpoint of both, say). If on_engine raises, on_loop gets
        the exception."""
        self._post((_BARRIER, (on_engine, on_loop), None))

    def _post(self, item: tuple) -> None:
        """Queues an item for the engine thread. The items of one turn of the event loop go
        over together: waking the engine thread once per item would hand the GIL back and forth
        for each (tens of µs apiece under load), and they make one batch anyway."""
        outbox = self._outbox
        outbox.append(item)
        if len(outbox) == 1:
            self._loop.call_soon(self._send_outbox)

    def _send_outbox(self) -> None:
        items, self._outbox = self._outbox, []
        self._queue.put(items)

    def subscribe(self, maxsize: int = 10_000) -> Subscription:
        """A Subscription to every durable event from now on."""
        sub = Subscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    # ---- the engine thread -----------------------------------------------------------------

    def _run(self) -> None:
        get, get_nowait, max_batch = self._queue.get, self._queue.get_nowait, self.max_batch
        running = True
        while running:
            batch = get()                   # block only while there is nothing to do
            while len(batch) < max_batch:
                try:
                    batch += get_nowait()
                except queue.Empty:
                    break
            try:
                running = self._process(batch)
            except Exception as e:      # a bug here must not strand the callers: fail them all
                self._failure = e
                self._loop.call_soon_threadsafe(self._deliver, [
                    (fut, RunnerError(f"runner failed: {e!r}"), True) for _, _, fut in batch
                    if fut is not None])

    def _process(self, batch: list) -> bool:
        """Applies a batch: commands until a query or a stop, commit, answer; then the query."""
        pending: list = []              # (future, seq or own events) of the uncommitted commands
        released: list = []
        answers: list = []              # (future, result, is_error) for the event loop
        running = True
        for kind, payload, fut in batch:
            if kind == _COMMAND:
                if self._failure is not None:
                    answers.append((fut, RunnerError(f"{self._failed_in} failed: "
                                                     f"{self._failure}"), True))
                else:
                    self._apply(payload, fut, pending, released)
                continue
            self._commit(pending, released, answers)
            pending, released = [], []
            if kind == _QUERY:
                fn, args = payload
                try:
                    answers.append((fut, fn(self.exchange, *args), False))
                except Exception as e:      # the query's own error, handed to its caller
                    answers.append((fut, e, True))
            elif kind == _BARRIER:
                on_engine, on_loop = payload
                try:
                    result = on_engine(self.exchange)
                except Exception as e:      # on_loop is told, as a query's caller would be
                    result = e
                answers.append((on_loop, result, None))
            else:
                self._stop_future = fut
                answers.append((fut, None, False))
                running = False
        self._commit(pending, released, answers)
        if self._logged is None:
            self._loop.call_soon_threadsafe(self._deliver, answers)
        else:       # (appends complete in order: so are the batches answered)
            self._logged.add_done_callback(lambda logged: self._deliver_logged(logged, answers))
        return running

    def _apply(self, cmd, fut, pending: list, released: list) -> None:
        ex = self.exchange
        # (a malformed ts, say a bool, is left for the engine to refuse)
        if self.stamp_time and isinstance(cmd, m.Command) and type(cmd.ts) is int \
                and cmd.ts == 0:
            now = self.clock()
            if ex.clock and now - ex.clock > self._max_step:
                self._catch_up(now, released)
            cmd = _replace(cmd, ts=now if now > ex.clock else max(ex.clock, 1))
        before = ex.seq
        out = self.engine.submit(cmd)
        self.commands += 1
        if ex.seq == before:                    # refused before sequencing: its answer is `out`
            pending.append((fut, out))
            return
        if self.durable_log is not None:
            self._sequenced.append((ex.seq, cmd))
        if self.journaled:                      # `out` is whatever became durable meanwhile
            released.extend(out)
            pending.append((fut, ex.seq))
        else:
            released.extend(out)
            pending.append((fut, out))

    def _catch_up(self, now: int, released: list) -> None:
        """After a long stop the wall clock may be further ahead than one command may move
        exchange time (limits.max_time_step_ns): the runner walks the clock there in allowed
        steps, journaled AdvanceClock commands whose events (the funding and interest of the
        time that passed) go to the subscribers like any others."""
        ex = self.exchange
        while now - ex.clock > self._max_step:
            before = ex.seq
            cmd = m.AdvanceClock(ts=ex.clock + self._max_step)
            out = self.engine.submit(cmd)
            if ex.seq == before:        # refused unsequenced (a halted engine): stop trying
                return
            if self.durable_log is not None:
                self._sequenced.append((ex.seq, cmd))
            released.extend(out)

    def _commit(self, pending: list, released: list, answers: list) -> None:
        if not pending:
            return
        self.batches += 1
        try:
            for hook in self.commit_hooks:
                hook()
            if self.journaled:
                released.extend(self.engine.flush())
            if self._sequenced:
                self._logged = self.durable_log.append(self._sequenced, self.exchange)
                self._sequenced = []
        except Exception as e:          # a failed journal: nothing in this batch is acknowledged
            self._failure = e
            for fut, _ in pending:
                answers.append((fut, RunnerError(f"journal failed: {e}"), True))
            return
        if released:
            for listener in self.engine_listeners:
                listener(self.exchange, released)
            # for the listeners and subscribers, before the callers hear of their commands
            answers.append((None, released, False))
        by_seq: dict[int, list] = {}
        if self.journaled:
            for ev in released:
                by_seq.setdefault(ev.seq, []).append(ev)
        for fut, own in pending:
            answers.append((fut, by_seq.get(own, []) if type(own) is int else own, False))

    def _deliver_logged(self, logged: concurrent.futures.Future, answers: list) -> None:
        """Hands a batch's answers to the event loop once the durable log holds its commands;
        if it failed, the batch's callers (and every later one) get the failure instead and its
        events go to nobody: they are not durable where it matters."""
        error = logged.exception()
        if error is not None:
            self._failed_in = "replicated log"
            self._failure = error
            failure = RunnerError(f"replicated log failed: {error}")
            answers = [(fut, result, is_error) if fut is self._stop_future
                       else (fut, error, None) if is_error is None
                       else (fut, failure, True) for fut, result, is_error in answers
                       if fut is not None]
        self._loop.call_soon_threadsafe(self._deliver, answers)

    def _deliver(self, answers: list) -> None:
        """On the event loop: resolves the futures and feeds the subscribers."""
        for fut, result, is_error in answers:
            if is_error is None:                # a barrier's second half
                fut(result)
            elif fut is None:
                for listener in self.listeners:
                    listener(result)
                for sub in list(self._subscribers):
                    sub._put(result)
            elif not fut.done():            # a caller may have given up (cancelled)
                if is_error:
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    # ---- state -----------------------------------------------------------------------------

    @property
    def failed(self) -> BaseException | None:
        """The journal (or durable log) failure that stopped acknowledgements, if any."""
        return self._failure
