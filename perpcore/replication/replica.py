"""A replica: a store that follows the venue's replicated log and applies it, command by command.

    replica = Replica("replica-data", cfg, "nats://n1:4222,nats://n2:4222", name="r1")
    await replica.run()             # until stop() or a halt (ReplicaHalted)

It opens its store (perpcore.snapshot.Store: the newest snapshot plus its own journal), reads the
log from the entry its snapshot's position names (the commands its journal already holds are
recognised by their sequence numbers and not applied again), applies every entry in order (each
command with its sequence number: a gap, a command the engine refuses unsequenced, a damaged
entry or a state hash that differs from the sequencer's checkpoint stops it), checkpoints its
store every `snapshot_every` commands with the log position, and publishes its (seq, state_hash)
checkpoints on `<stream>.checkpoints`. A stream without a leader for a while (a node died) is
waited out with backoff; nothing is skipped and nothing applied twice.

A replica is promoted by stopping it and serving its store as the sequencer
(`perpcore serve DIR --replicate URL`): it applies whatever of the log it had not, then claims
the log, which fences the old sequencer (docs/replication.md).
"""
from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence

from nats import errors as nats_errors

from perpcore.config import VenueConfig
from perpcore.replication.log import (DEFAULT_STREAM, CorruptEntry, Follower, LogError,
                                      apply_entry, checkpoint_subject, connect, decode_entry)
from perpcore.snapshot import LogPosition, Store


class ReplicaHalted(Exception):
    """The replica stopped rather than diverge: the log is damaged or does not continue its
    state, or its state hash differs from the sequencer's."""


class Replica:
    """See the module doc. `snapshot_every`: commands between store checkpoints (each a snapshot
    carrying the log position: where a restart resumes)."""

    def __init__(self, directory: str | os.PathLike, config: VenueConfig,
                 url: str | Sequence[str], stream: str = DEFAULT_STREAM, name: str = "replica",
                 snapshot_every: int = 100_000, sync: str = "group"):
        self.store = Store(directory, config, sync=sync)
        self.engine = self.store.engine
        self.ex = self.engine.ex
        self.url, self.stream, self.name = url, stream, name
        self.snapshot_every = snapshot_every
        self.position: LogPosition = self.store.recovery.log_position
        self.started_from = self.position
        self.verified_seq = 0               # the last seq whose hash matched the sequencer's
        self.applied = 0                    # commands applied since start
        self._snapshot_seq = self.ex.seq
        self._stop = asyncio.Event()
        self.nc = None

    def stop(self) -> None:
        """Asks run() to return after the entries in hand (then close())."""
        self._stop.set()

    async def run(self, until_seq: int | None = None, idle_timeout: float = 0.5) -> int:
        """Follows the log until stop() (or until the engine reaches `until_seq`); returns the
        engine's seq. ReplicaHalted when it must not go on (published on the checkpoint subject
        too)."""
        self.nc = await connect(self.url, f"perpcore-replica-{self.name}")
        follower = Follower(self.nc.jetstream(), self.stream, self.position.entry_seq or 1)
        try:
            while not self._stop.is_set():
                if until_seq is not None and self.ex.seq >= until_seq:
                    break
                try:
                    entries = await follower.fetch(idle_timeout)
                except LogError as e:
                    raise self._halt(str(e)) from e
                for seq, data in entries:
                    self._apply(seq, data)
            self.engine.flush()
            return self.ex.seq
        finally:
            await follower.close()
            try:        # the last checkpoint (or the halt) out; best effort, as they all are
                await asyncio.wait_for(self.nc.flush(), 2)
            except (nats_errors.Error, asyncio.TimeoutError):
                pass

    def _apply(self, stream_seq: int, data: bytes) -> None:
        before = self.ex.seq
        try:
            entry = decode_entry(data, stream_seq)
            self.position = apply_entry(self.engine, stream_seq, entry)
        except CorruptEntry as e:
            raise self._halt(str(e)) from e
        self.applied += self.ex.seq - before
        if entry.state_hash and self.ex.seq == entry.first_seq + len(entry.commands) - 1:
            self.verified_seq = self.ex.seq
            self._publish({"seq": self.ex.seq, "state_hash": entry.state_hash,
                           "entry": stream_seq, "verified": True})
        if self.ex.seq - self._snapshot_seq >= self.snapshot_every:
            self.checkpoint()

    def checkpoint(self) -> None:
        """A store checkpoint at the current log position (a restart resumes from it)."""
        self.store.checkpoint(self.position)
        self._snapshot_seq = self.ex.seq
        self._publish({"seq": self.ex.seq, "state_hash": self.ex.state_hash(),
                       "entry": self.position.entry_seq, "verified": False})

    def _halt(self, why: str) -> ReplicaHalted:
        self._publish({"seq": self.ex.seq, "halted": why})
        return ReplicaHalted(f"replica {self.name} halted at command {self.ex.seq}: {why}")

    def _publish(self, body: dict) -> None:
        body["node"] = self.name
        asyncio.ensure_future(self.nc.publish(checkpoint_subject(self.stream),
                                              json.dumps(body).encode()))

    async def close(self) -> None:
        """Closes the store cleanly and the connection."""
        self.store.close()
        if self.nc is not None:
            await self.nc.close()
