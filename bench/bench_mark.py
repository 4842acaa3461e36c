"""Issue 3's mark target: a mark update that liquidates nobody (< 100 µs) on a venue with 100,000
open positions: the whole SetIndexPrice submit (index, mark, MarkPriceUpdated, and the margin and
liquidation layers' reaction to it), the index moving 500 ticks (0.08%) either way each
round, which moves the mark each time (the last trade, 650010, is no longer the median)."""
import pytest

from bench_funding import BTC, PRICE, positions_venue
from perpcore import messages as m


@pytest.fixture(scope="module")
def venue(scaled):
    return positions_venue(scaled(100_000))


def test_mark_update(benchmark, target, venue):
    ex = venue
    target("mark.update")
    rounds = iter(range(10**9))

    def move():
        price = PRICE + (500 if next(rounds) % 2 else -500)
        return ex.submit(m.SetIndexPrice(source="i", symbol=BTC, price=price))
    events = benchmark.pedantic(move, rounds=5000, iterations=1, warmup_rounds=100)
    assert [type(e) for e in events][:2] == [m.IndexPriceUpdated, m.MarkPriceUpdated]
    assert events[1].price in (649565, 650500)
    assert not any(type(e) in (m.OrderFilled, m.OrderCancelled) for e in events)
