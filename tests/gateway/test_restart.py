"""A restart mid-session: `perpcore serve` killed (SIGKILL) and started again on its store keeps
every acknowledged order, position, balance and client order id; the journal replays to the live
state hash."""
import os
import signal
import subprocess
import sys

import pytest

from .conftest import ADMIN, ServedVenue, ccxt

BTC = "BTC/USD:USD"


class Process(ServedVenue):
    """`perpcore serve` in a subprocess (reuses ServedVenue's admin and client helpers)."""

    def __init__(self, directory):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from perpcore.cli import main; main()", "serve",
             str(directory), "--port", "0", "--admin-token", ADMIN],
            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        line = self.proc.stdout.readline()
        assert "serving" in line, line
        self.base = line.split(" on ")[1].strip()

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        assert self.proc.wait(60) in (0, -signal.SIGKILL)
        self.proc.stdout.close()


def snapshot_of(venue, maker, taker, order_id):
    return {"order": maker.fetch_order(None, BTC, {"origClientOrderId": "keep-me"}),
            "by_id": maker.fetch_order(order_id, BTC),
            "open": maker.fetch_open_orders(),
            "positions": [{k: p[k] for k in ("symbol", "contracts", "side", "entryPrice",
                                             "leverage")} for p in taker.fetch_positions()],
            "balances": [c.fetch_balance()["USD"] for c in (maker, taker)],
            "fills": taker.fetch_my_trades(BTC),
            "hash": venue.admin_get("stateHash")}


def test_kill_and_restart_keeps_everything(tmp_path):
    store = tmp_path / "store"
    venue = Process(store)
    try:
        venue.admin("indexPrice", {"symbol": "BTCUSD", "price": "65000"})
        _, mk, ms = venue.trader()
        _, tk, ts = venue.trader()
        maker, taker = venue.client(mk, ms), venue.client(tk, ts)
        order = maker.create_order(BTC, "limit", "sell", 0.05, 65000,
                                   {"newClientOrderId": "keep-me"})
        taker.set_leverage(10, BTC)
        taker.create_order(BTC, "market", "buy", 0.02)
        before = snapshot_of(venue, maker, taker, order["id"])
    finally:
        venue.stop(signal.SIGKILL)              # no clean close: recovery from the journal

    venue = Process(store)
    try:
        maker, taker = venue.client(mk, ms), venue.client(tk, ts)
        assert snapshot_of(venue, maker, taker, order["id"]) == before
        assert before["order"]["filled"] == 0.02 and before["positions"][0]["leverage"] == 10
        # the client order id is still the open order's
        with pytest.raises(ccxt.ExchangeError, match="-4116"):
            maker.create_order(BTC, "limit", "sell", 0.01, 65100, {"newClientOrderId": "keep-me"})
        taker.create_order(BTC, "market", "buy", 0.01)
        live = venue.admin_get("stateHash")["stateHash"]
    finally:
        venue.stop()
    replay = subprocess.run([sys.executable, "-c", "from perpcore.cli import main; main()",
                             "replay", "journal", str(store), "--verify", "--expect-hash", live],
                            capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_checkpoints_bound_the_replay_at_start(tmp_path):
    """With checkpoints, old journal segments are pruned; a restart rebuilds the read models
    from the read-model snapshot paired with the store's, and loses nothing."""
    from perpcore.gateway.readmodel import model_snapshots
    from perpcore.snapshot import list_segments, list_snapshots

    store = tmp_path / "store"
    venue = ServedVenue(store, checkpoint_every=8)
    try:
        venue.admin("indexPrice", {"symbol": "BTCUSD", "price": "65000"})
        _, mk, ms = venue.trader()
        _, tk, ts = venue.trader()
        maker, taker = venue.client(mk, ms), venue.client(tk, ts)
        order = maker.create_order(BTC, "limit", "sell", 0.05, 65000,
                                   {"newClientOrderId": "keep-me"})
        for _ in range(30):                     # four or more checkpoints
            taker.create_order(BTC, "limit", "buy", 0.001, 60000)
        taker.create_order(BTC, "market", "buy", 0.02)
        before = snapshot_of(venue, maker, taker, order["id"])
    finally:
        venue.stop()
    assert list_segments(store)[0][0] > 1                   # the first commands are pruned
    assert set(model_snapshots(store)) <= {seq for seq, _ in list_snapshots(store)}
    venue = ServedVenue(store, checkpoint_every=8)
    try:
        maker, taker = venue.client(mk, ms), venue.client(tk, ts)
        assert snapshot_of(venue, maker, taker, order["id"]) == before
        assert len(taker.fetch_open_orders(BTC)) == 30
    finally:
        venue.stop()
