"""A venue as `perpcore serve` runs it: a store, the engine runner, the read models rebuilt from
the journal, the trading keys, and the aiohttp server on top."""
from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from aiohttp import web

import perpcore
from perpcore.config import VenueConfig
from perpcore.gateway.app import Gateway
from perpcore.gateway.auth import KeyStore
from perpcore.exchange import Exchange
from perpcore.gateway.readmodel import (ClientIds, ReadModel, rebuild, replay_into,
                                        write_model_snapshot)
from perpcore.runner import EngineRunner
from perpcore.snapshot import Store

KEYS_FILE = "gateway-keys.json"
CLIENT_IDS_FILE = "gateway-client-ids.jsonl"
ADMIN_TOKEN_FILE = "gateway-admin-token"


class Venue:
    """A served venue on the store in `directory` (created if new).

    `admin_token` authorises the admin routes; without one the token kept in the store
    (`gateway-admin-token`, created at the first start) is used. `sync` is the journal's
    ("group": the runner commits once per batch; "always": an fsync per command; "none": no fsync,
    for tests and benchmarks on throwaway stores). `replicate`: the NATS URL(s) of the JetStream
    cluster whose `stream` is the venue's replicated log; the venue is then its sequencer
    (perpcore.replication.log.open_sequencer) and acknowledges a command only once the log
    holds it; `log` is then its SequencerLog, whose `failed` Future is set when the log stops
    it (fenced, or unavailable)."""

    def __init__(self, directory: str | os.PathLike, config: VenueConfig | None = None, *,
                 sync: str = "group", admin_token: str | None = None,
                 weight_per_minute: int = 2400, checkpoint_every: int = 100_000,
                 replicate: str | None = None, stream: str = "perpcore"):
        self.dir = Path(directory)
        self.config = config or perpcore.default_config()
        self.sync = sync
        self.admin_token = admin_token or self._stored_token()
        self.weight_per_minute = weight_per_minute
        self.checkpoint_every = checkpoint_every
        self.replicate, self.stream = replicate, stream
        self.log = None
        self._checkpointed = 0          # seq of the last checkpoint (or of the start)
        self._checkpointing = False
        self.port: int | None = None
        self.store = self.runner = self.gateway = self._site_runner = None

    def _stored_token(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / ADMIN_TOKEN_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return path.read_text().strip()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Recovers the store, rebuilds the read models, starts the engine thread and listens;
        returns the port (0 asks for a free one)."""
        self.store = Store(self.dir, self.config, sync=self.sync)
        if self.replicate:
            from perpcore.replication.log import open_sequencer
            try:        # (the log's missing tail is applied first: the read models see it)
                self.log = await asyncio.to_thread(open_sequencer, self.store, self.replicate,
                                                   self.stream)
            except BaseException:
                self.store.close()
                raise
        client_ids = ClientIds(self.dir / CLIENT_IDS_FILE)
        model = ReadModel(client_ids)
        self.runner = EngineRunner(self.store.engine, durable_log=self.log)
        self.gateway = Gateway(self.runner, self.config, KeyStore(self.dir / KEYS_FILE), model,
                               self.admin_token, self.weight_per_minute)
        try:
            self._checkpointed = rebuild(self.dir, self.config, model)
        except ValueError:
            if self.log is None:
                raise
            # a promoted replica's journal no longer reaches back to the first command (nor
            # has it the gateway's read-model snapshots): the log does
            self._checkpointed = await asyncio.to_thread(
                replay_into, Exchange(self.config), model,
                self.log.commands(self.store.engine.ex.seq))
        if self.checkpoint_every:
            self.runner.listeners.append(self._maybe_checkpoint)
        await self.runner.start()
        self._site_runner = web.AppRunner(self.gateway.app(), access_log=None)
        await self._site_runner.setup()
        site = web.TCPSite(self._site_runner, host, port)
        await site.start()
        self.port = self._site_runner.addresses[0][1]
        return self.port

    def _maybe_checkpoint(self, events: list) -> None:
        """Every `checkpoint_every` commands: a store checkpoint (snapshot, new journal
        segment, old files pruned) and a read-model snapshot of the same seq, so that a restart
        replays only the journal after them."""
        if self._checkpointing or events[-1].seq - self._checkpointed < self.checkpoint_every:
            return
        self._checkpointing = True
        self.runner.barrier(self._checkpoint_engine, self._checkpoint_model)

    def _checkpoint_engine(self, ex) -> int:
        # the runner has released everything committed, and appended it to the log
        self.store.checkpoint(self.log.position if self.log else None)
        return ex.seq

    def _checkpoint_model(self, seq) -> None:
        # (a halted engine or a full disk: no checkpoint; the journal goes on, and so do we)
        if isinstance(seq, int):
            write_model_snapshot(self.dir, seq, self.gateway.model)
            self._checkpointed = seq
        self._checkpointing = False

    async def stop(self) -> None:
        """Stops listening, lets the engine thread finish, and closes the store cleanly."""
        if self._site_runner is not None:
            await self._site_runner.cleanup()
            self._site_runner = None
        if self.runner is not None:
            await self.runner.stop()
            self.gateway.model.client_ids.close()
            if self.log is not None:
                await asyncio.to_thread(self.log.close)
            self.store.close()
            self.runner = None
