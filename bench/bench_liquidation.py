"""The liquidation targets (issue 5) on 100,000 accounts holding BTC-PERP positions
(perpcore.workloads.population: pairs of a long and a short, 2-16x): a mark move that liquidates
nobody (the whole SetIndexPrice submit: index, mark, the margin layer's loan check, the breach
index's look-up) and a fall of CASCADE_FALL per mille that liquidates 1,000 highly levered longs in
one cascade, their closing sales absorbed by a maker's bids."""
import pytest

from perpcore import Exchange, workloads
from perpcore import messages as m

BTC = workloads.SYMBOL
PRICE = workloads.START_MIDS[BTC]


@pytest.fixture(scope="module")
def venue(scaled):
    n = scaled(100_000)
    hot = max(10, n // 100)                 # 1,000 at full size
    ex = Exchange(workloads.population_config())
    for cmd in workloads.population(n, hot):
        ex.submit(cmd)
    return ex, ex.snapshot(), hot


def test_quiet_mark_move(benchmark, target, venue):
    ex, _, _ = venue
    target("liquidation.quiet")
    rounds = iter(range(10**9))

    def move():
        price = PRICE + (50 if next(rounds) % 2 else -50)
        return ex.submit(m.SetIndexPrice(source="bench", symbol=BTC, price=price))
    events = benchmark.pedantic(move, rounds=5000, iterations=1, warmup_rounds=100)
    assert any(type(e) is m.MarkPriceUpdated for e in events)
    assert not any(type(e) is m.LiquidationStarted for e in events)
    assert len(ex.liquidation.index) >= len(ex.accounts()) - 1


def test_cascade(benchmark, target, venue):
    ex, snapshot, hot = venue
    target("liquidation.cascade")

    def setup():
        return (Exchange.restore(ex.config, snapshot),), {}

    def crash(restored):
        price = PRICE * (1000 - workloads.CASCADE_FALL) // 1000
        return restored.submit(m.SetIndexPrice(source="bench", symbol=BTC, price=price))
    events = benchmark.pedantic(crash, setup=setup, rounds=3)
    liquidated = sum(type(e) is m.LiquidationStarted for e in events)
    assert liquidated == hot
    benchmark.extra_info["liquidated"] = liquidated
