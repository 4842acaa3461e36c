"""The engine runner without HTTP: PlaceOrders from concurrent asyncio callers, each awaited
until durable (journal with group commit), so the figures show what the runner and the journal
cost apart from a gateway's request handling."""
import asyncio
import tempfile
import time

import pytest

import perpcore
from perpcore import messages as m
from perpcore.runner import EngineRunner
from perpcore.snapshot import Store

CFG = perpcore.default_config()
SPEC = CFG.instruments["BTC-PERP"]


async def _orders(clients: int, per_client: int, directory: str) -> dict:
    store = Store(directory, CFG, sync="group")
    try:
        async with EngineRunner(store.engine) as runner:
            await runner.submit_many(
                [m.SetIndexPrice(source="b", symbol="BTC-PERP", price=SPEC.to_ticks("65000"))]
                + [c for a in range(1, clients + 1) for c in (
                    m.CreateAccount(account=a),
                    m.Deposit(account=a, asset="USD", amount=10**14))])
            latencies = []

            async def client(account: int):
                for i in range(per_client):     # resting: buys below, sells above the index
                    sell = i % 2
                    price = SPEC.to_ticks(66000 + i % 400 if sell else 64000 - i % 400)
                    started = time.perf_counter_ns()
                    await runner.submit(m.PlaceOrder(account=account, symbol="BTC-PERP",
                                                     side=m.Side(sell), qty=1, price=price))
                    latencies.append(time.perf_counter_ns() - started)
            batches, started = runner.batches, time.perf_counter()
            await asyncio.gather(*(client(a) for a in range(1, clients + 1)))
            elapsed = time.perf_counter() - started
            latencies.sort()
            n = len(latencies)
            return {"commands_per_s": n / elapsed, "p50_us": latencies[n // 2] / 1000,
                    "p99_us": latencies[n * 99 // 100] / 1000,
                    "mean_batch": n / (runner.batches - batches)}
    finally:
        store.close()


@pytest.mark.parametrize("clients", [1, 16, 64])
def test_runner_orders(benchmark, scaled, clients):
    orders = scaled(20_000)
    result = {}

    def run():
        with tempfile.TemporaryDirectory() as d:
            result.update(asyncio.run(_orders(clients, max(1, orders // clients), d)))
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
