"""Fixtures of the gateway tests: a venue served on an ephemeral 127.0.0.1 port from a thread of
its own (always stopped), and unmodified ccxt binanceusdm clients pointed at it and nowhere else."""
import asyncio
import os
import signal
import subprocess
import sys
import threading

import pytest

ccxt = pytest.importorskip("ccxt")
requests = pytest.importorskip("requests")
pytest.importorskip("aiohttp")

from perpcore.gateway import Venue  # noqa: E402

ADMIN = "admin-token-for-tests"
NOWHERE = "http://127.0.0.1:9"      # the discard port: a call ccxt should not make fails here


class ServedVenue:
    """A Venue running on its own event loop thread."""

    def __init__(self, directory, **options):
        self.venue = Venue(directory, admin_token=ADMIN, **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        try:
            self.port = self.call(self.venue.start("127.0.0.1", 0))
        except BaseException:
            self.stop()
            raise
        self.base = f"http://127.0.0.1:{self.port}"

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stop(self):
        try:
            self.call(self.venue.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            self.loop.close()

    def admin(self, path, body=None, token=ADMIN, **kw):
        return requests.post(f"{self.base}/admin/v1/{path}", json=body,
                             headers={"X-PERPCORE-ADMIN": token}, timeout=30, **kw)

    def admin_get(self, path):
        return requests.get(f"{self.base}/admin/v1/{path}", headers={"X-PERPCORE-ADMIN": ADMIN},
                            timeout=30).json()

    def trader(self, usd="100000", btc=None):
        """A new account with money and an API key: (account, key, secret)."""
        account = self.admin("account", {}).json()["account"]
        self.admin("deposit", {"account": account, "asset": "USD", "amount": usd})
        if btc:
            self.admin("deposit", {"account": account, "asset": "BTC", "amount": btc})
        key = self.admin("apiKey", {"account": account}).json()
        return account, key["apiKey"], key["secretKey"]

    def client(self, key=None, secret=None, **options):
        """An unmodified ccxt binanceusdm whose every URL is this venue (or a dead local port)."""
        ex = ccxt.binanceusdm({"apiKey": key, "secret": secret, "enableRateLimit": False,
                               "options": {"fetchCurrencies": False, "warnOnFetchOpenOrders"
                                           "WithoutSymbol": False, **options}})
        for name, url in list(ex.urls["api"].items()):
            if isinstance(url, str):
                ex.urls["api"][name] = (url.replace("https://fapi.binance.com", self.base)
                                        if url.startswith("https://fapi.binance.com")
                                        else NOWHERE)
        # ccxt keys Binance's futures error codes by hostname; a local host needs them merged
        ex.exceptions["exact"].update(ex.exceptions["linear"]["exact"])
        return ex


class ServeProcess:
    """`perpcore serve DIRECTORY ARGS...` in a subprocess on an ephemeral 127.0.0.1 port, stopped
    on every path: a server that does not come up, or does not stop when asked, is killed."""

    def __init__(self, directory, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from perpcore.cli import main; main()", "serve",
             str(directory), "--port", "0", *args],
            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        try:
            line = self.proc.stdout.readline()
            assert "serving" in line, line
            self.base = line.split(" on ")[1].strip()
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def stop(self, sig=signal.SIGTERM) -> int:
        """Sends `sig` and returns the exit code (killed if it has not exited within 60 s)."""
        try:
            self.proc.send_signal(sig)
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()


def pro_client(served, key=None, secret=None):
    """An unmodified ccxt.pro binanceusdm on this venue's REST and WebSocket endpoints."""
    import ccxt.pro
    ex = ccxt.pro.binanceusdm({"apiKey": key, "secret": secret, "enableRateLimit": False,
                               "options": {"fetchCurrencies": False}})
    for name, url in list(ex.urls["api"].items()):
        if isinstance(url, str):
            ex.urls["api"][name] = (url.replace("https://fapi.binance.com", served.base)
                                    if url.startswith("https://fapi.binance.com") else NOWHERE)
    ws = served.base.replace("http://", "ws://")
    ex.urls["api"]["ws"] = {"linear": f"{ws}/ws", "ws-api": {"linear": f"{ws}/nowhere"}}
    ex.exceptions["exact"].update(ex.exceptions["linear"]["exact"])
    return ex


@pytest.fixture
def served(tmp_path):
    venue = ServedVenue(tmp_path / "store")
    try:
        venue.admin("indexPrice", {"symbol": "BTCUSD", "price": "65000"})
        venue.admin("indexPrice", {"symbol": "ETHUSD", "price": "3000"})
        yield venue
    finally:
        venue.stop()
