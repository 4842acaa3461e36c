"""`perpcore bench gateway`: signed orders acknowledged per second by `perpcore serve`.

The server runs as `perpcore serve` in a process of its own on a fresh store (journal with group
commit: every acknowledgement comes after its command is durable); this process is the load:
closed-loop clients, each its own account and API key, each sending one signed POST
/fapi/v1/order at a time (HMAC over the exact body, as Binance clients do) and timing it until
the answer. Either a light generator (aiohttp, a few µs of client work per order) or unmodified
ccxt binanceusdm clients. Orders rest (buys below, sells above the index), so every one is
accepted and none trades: what is measured is the path from request to durable acknowledgement.

Where the time goes: the server process's CPU seconds per order (its event loop and engine thread
share one GIL), the load generator's, and the runner's mean batch (commands per journal commit).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlencode

import msgspec
import numpy as np

ADMIN = "bench-admin-token"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """`perpcore serve` on a fresh store in a subprocess."""

    def __init__(self, sync: str = "group"):
        self.dir = tempfile.TemporaryDirectory(prefix="perpcore-bench-gw-")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from perpcore.cli import main; main()", "serve",
             f"{self.dir.name}/store", "--port", "0", "--admin-token", ADMIN, "--sync", sync,
             "--weight-per-minute", str(10**9)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if " on " not in line:
            self.close()
            raise RuntimeError(f"perpcore serve did not start: {line!r}")
        self.base = line.split(" on ")[1].strip()

    def close(self) -> None:
        """Stops the server and removes its store."""
        self.proc.terminate()
        self.proc.wait(60)
        self.proc.stdout.close()
        self.dir.cleanup()


async def _admin(session, base: str, path: str, body=None, method: str = "POST"):
    async with session.request(method, f"{base}/admin/v1/{path}", json=body,
                               headers={"X-PERPCORE-ADMIN": ADMIN}) as r:
        return await r.json()


async def _accounts(base: str, n: int) -> list[tuple[str, str]]:
    """n funded accounts with API keys: [(key, secret)]."""
    import aiohttp
    async with aiohttp.ClientSession() as s:
        await _admin(s, base, "indexPrice", {"symbol": "BTCUSD", "price": "65000"})
        keys = []
        for _ in range(n):
            account = (await _admin(s, base, "account", {}))["account"]
            await _admin(s, base, "deposit", {"account": account, "asset": "USD",
                                              "amount": "100000000"})
            key = await _admin(s, base, "apiKey", {"account": account})
            keys.append((key["apiKey"], key["secretKey"]))
        return keys


def _order_params(i: int) -> dict:
    """The i-th order of a client: resting, alternately a buy below and a sell above 65000."""
    step = i % 400
    if i % 2:
        return {"symbol": "BTCUSD", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
                "quantity": "0.001", "price": f"{66000 + step}.0"}
    return {"symbol": "BTCUSD", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.001", "price": f"{64000 - step}.0"}


async def _light_client(session, base: str, key: str, secret: str, n: int, out: list) -> None:
    url = f"{base}/fapi/v1/order"
    headers = {"X-MBX-APIKEY": key, "Content-Type": "application/x-www-form-urlencoded"}
    secret_b = secret.encode()
    for i in range(n):
        query = urlencode({**_order_params(i), "timestamp": time.time_ns() // 1_000_000})
        sig = hmac.new(secret_b, query.encode(), hashlib.sha256).hexdigest()
        started = time.perf_counter_ns()
        async with session.post(url, data=f"{query}&signature={sig}", headers=headers) as r:
            body = await r.read()
        if r.status != 200:
            raise RuntimeError(f"order refused: {body!r}")
        out.append(time.perf_counter_ns() - started)


async def _ccxt_client(base: str, key: str, secret: str, n: int, out: list) -> None:
    import ccxt.async_support as ccxt
    ex = ccxt.binanceusdm({"apiKey": key, "secret": secret, "enableRateLimit": False,
                           "options": {"fetchCurrencies": False}})
    for name, url in list(ex.urls["api"].items()):
        if isinstance(url, str):
            ex.urls["api"][name] = url.replace("https://fapi.binance.com", base) \
                if url.startswith("https://fapi.binance.com") else "http://127.0.0.1:9"
    try:
        await ex.load_markets()
        for i in range(n):
            p = _order_params(i)
            started = time.perf_counter_ns()
            await ex.create_order("BTC/USD:USD", "limit", p["side"].lower(), 0.001,
                                  float(p["price"]))
            out.append(time.perf_counter_ns() - started)
    finally:
        await ex.close()


async def _run(base: str, keys, orders_per_client: int, use_ccxt: bool) -> tuple[list, float]:
    import aiohttp
    latencies: list[int] = []
    started = time.perf_counter()
    if use_ccxt:
        await asyncio.gather(*(_ccxt_client(base, k, s, orders_per_client, latencies)
                               for k, s in keys))
    else:
        connector = aiohttp.TCPConnector(limit=len(keys))
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(_light_client(session, base, k, s, orders_per_client,
                                                 latencies) for k, s in keys))
    return latencies, time.perf_counter() - started


def measure(concurrency: int, orders: int, use_ccxt: bool = False,
            sync: str = "group") -> dict:
    """One run on a fresh server: `orders` signed orders from `concurrency` closed-loop
    clients; throughput, latency percentiles (µs) and where the time went."""
    server = Server(sync)
    try:
        keys = asyncio.run(_accounts(server.base, concurrency))
        before = asyncio.run(_stats(server.base))
        server_cpu, client_cpu = _cpu_seconds(server.proc.pid), time.process_time()
        per_client = max(1, orders // concurrency)
        latencies, elapsed = asyncio.run(_run(server.base, keys, per_client, use_ccxt))
        server_cpu = _cpu_seconds(server.proc.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
        after = asyncio.run(_stats(server.base))
    finally:
        server.close()
    n = len(latencies)
    lat = np.array(latencies) / 1000
    batches = after["batches"] - before["batches"]
    return {"clients": concurrency, "generator": "ccxt" if use_ccxt else "light", "orders": n,
            "sync": sync, "orders_per_s": n / elapsed,
            "p50_us": float(np.percentile(lat, 50)), "p99_us": float(np.percentile(lat, 99)),
            "max_us": float(lat.max()),
            "server_cpu_us_per_order": server_cpu / n * 1e6,
            "client_cpu_us_per_order": client_cpu / n * 1e6,
            "mean_batch": (after["commands"] - before["commands"]) / max(batches, 1)}


async def _stats(base: str) -> dict:
    import aiohttp
    async with aiohttp.ClientSession() as s:
        return await _admin(s, base, "stats", method="GET")


def report(orders: int = 20_000, concurrencies=(1, 16, 64), ccxt_orders: int = 2_000,
           ccxt_concurrencies=(16,), progress=lambda text: None) -> dict:
    """The light generator at each concurrency, then ccxt clients; with the machine's load."""
    runs = []
    for c in concurrencies:
        progress(f"{c} light clients")
        runs.append(measure(c, orders))
    for c in ccxt_concurrencies:
        progress(f"{c} ccxt clients")
        runs.append(measure(c, ccxt_orders, use_ccxt=True))
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
            "load": os.getloadavg(), "runs": runs}


def main_table(rep: dict) -> str:
    """The report as a Markdown table."""
    lines = ["| generator | clients | orders | orders/s | p50 | p99 | max | server CPU/order "
             "| client CPU/order | mean batch |", "|---|" + "---:|" * 9]
    for r in rep["runs"]:
        lines.append(f"| {r['generator']} | {r['clients']} | {r['orders']:,} | "
                     f"{r['orders_per_s']:,.0f} | {r['p50_us'] / 1000:.2f} ms | "
                     f"{r['p99_us'] / 1000:.2f} ms | {r['max_us'] / 1000:.2f} ms | "
                     f"{r['server_cpu_us_per_order']:.0f} µs | "
                     f"{r['client_cpu_us_per_order']:.0f} µs | {r['mean_batch']:.1f} |")
    return "\n".join(lines)


def as_json(rep: dict) -> bytes:
    """The report as JSON."""
    return msgspec.json.encode(rep)
