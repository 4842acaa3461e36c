"""A restart mid-session: `perpcore serve` killed (SIGKILL) and started again on its store keeps
every acknowledged order, position, balance and client order id; the journal replays to the live
state hash."""
import signal
import subprocess
import sys

import pytest

from .conftest import ADMIN, ServedVenue, ServeProcess, ccxt

BTC = "BTC/USD:USD"


class Process(ServedVenue):
    """`perpcore serve` in a subprocess (reuses ServedVenue's admin and client helpers)."""

    def __init__(self, directory):
        self.server = ServeProcess(directory, "--admin-token", ADMIN)
        self.base = self.server.base

    def stop(self, sig=signal.SIGTERM):
        assert self.server.stop(sig) in (0, -signal.SIGKILL)


def open_session(venue):
    """An index, a maker and a taker, and the maker's resting sell with a client order id:
    ((maker key, secret), (taker key, secret)), the two clients and the order."""
    venue.admin("indexPrice", {"symbol": "BTCUSD", "price": "65000"})
    _, mk, ms = venue.trader()
    _, tk, ts = venue.trader()
    maker, taker = venue.client(mk, ms), venue.client(tk, ts)
    order = maker.create_order(BTC, "limit", "sell", 0.05, 65000,
                               {"newClientOrderId": "keep-me"})
    return ((mk, ms), (tk, ts)), maker, taker, order


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
        keys, maker, taker, order = open_session(venue)
        taker.set_leverage(10, BTC)
        taker.create_order(BTC, "market", "buy", 0.02)
        before = snapshot_of(venue, maker, taker, order["id"])
    finally:
        venue.stop(signal.SIGKILL)              # no clean close: recovery from the journal

    venue = Process(store)
    try:
        maker, taker = (venue.client(*key) for key in keys)
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
        keys, maker, taker, order = open_session(venue)
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
        maker, taker = (venue.client(*key) for key in keys)
        assert snapshot_of(venue, maker, taker, order["id"]) == before
        assert len(taker.fetch_open_orders(BTC)) == 30
    finally:
        venue.stop()
