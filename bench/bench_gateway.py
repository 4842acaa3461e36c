"""`perpcore serve` under load: signed orders acknowledged per second (journal with group commit
before every acknowledgement), by closed-loop clients from this process (perpcore.gateway.loadgen;
`perpcore bench gateway` runs the full table: 1, 16 and 64 clients, and ccxt clients)."""
import pytest

pytest.importorskip("aiohttp")

from perpcore.gateway import loadgen  # noqa: E402


@pytest.mark.parametrize("clients", [1, 16, 64])
def test_signed_orders(benchmark, scaled, clients):
    orders = scaled(10_000)
    result = {}

    def run():
        result.update(loadgen.measure(clients, orders))
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
