"""The liquidation targets (issue 5) on 100,000 accounts holding positions (pairs of a long and a
short in BTC-PERP, 2-16x leverage): a mark move that liquidates nobody (the whole SetIndexPrice
submit: index, mark, the breach index's look-up) and a move that liquidates 1,000 highly levered
longs in one cascade (a 2.2% fall), their closing trades absorbed by a maker's bids."""
import random

import pytest

from perpcore import Exchange, default_config
from perpcore import messages as m

BTC = "BTC-PERP"
PRICE = 650000


def population(accounts: int, hot: int) -> Exchange:
    """accounts / 2 pairs; the first `hot` longs at 50x with 150-160 USD on 0.1 BTC (liquidated
    1.8-2% down), the others 2-16x (5.7% or more); a maker bids for all the hot longs 1.5-1.7%
    down."""
    rng = random.Random(5)
    ex = Exchange(default_config())
    submit = ex.submit
    submit(m.SetIndexPrice(source="i", symbol=BTC, price=PRICE))
    for a in range(1, accounts + 1, 2):
        is_hot = a < 2 * hot
        for acc in (a, a + 1):
            submit(m.CreateAccount(account=acc))
            usd = rng.randint(150, 160) if is_hot and acc == a else rng.randint(400, 3000)
            submit(m.Deposit(account=acc, asset="USD", amount=usd * 10**6))
        if is_hot:
            submit(m.SetLeverage(account=a, symbol=BTC, leverage=50))
        submit(m.PlaceOrder(account=a + 1, symbol=BTC, side=m.Side.SELL, qty=100, price=PRICE))
        submit(m.PlaceOrder(account=a, symbol=BTC, side=m.Side.BUY, qty=100, price=PRICE,
                            tif=m.TimeInForce.IOC))
    maker = accounts + 1
    submit(m.CreateAccount(account=maker))
    submit(m.Deposit(account=maker, asset="USD", amount=10**13))
    for k in range(20):
        submit(m.PlaceOrder(account=maker, symbol=BTC, side=m.Side.BUY, qty=hot * 5 + 100,
                            price=PRICE * (10_000 - 150 - k) // 10_000))
    return ex


@pytest.fixture(scope="module")
def venue(scaled):
    n = scaled(100_000)
    hot = max(10, n // 100)                 # 1,000 at full size
    ex = population(n, hot)
    return ex, ex.snapshot(), hot


def test_quiet_mark_move(benchmark, target, venue):
    ex, _, _ = venue
    target("liquidation.quiet")
    prices = iter(range(10**9))

    def move():
        price = PRICE + (50 if next(prices) % 2 else -50)
        return ex.submit(m.SetIndexPrice(source="i", symbol=BTC, price=price))
    events = benchmark(move)
    assert not any(type(e) is m.LiquidationStarted for e in events)
    assert len(ex.liquidation.index) >= len(ex.accounts()) - 1


def test_cascade(benchmark, target, venue):
    ex, snapshot, hot = venue
    target("liquidation.cascade")

    def setup():
        return (Exchange.restore(ex.config, snapshot),), {}

    def crash(restored):
        return restored.submit(m.SetIndexPrice(source="i", symbol=BTC,
                                               price=PRICE * 978 // 1000))
    events = benchmark.pedantic(crash, setup=setup, rounds=3)
    liquidated = sum(type(e) is m.LiquidationStarted for e in events)
    assert liquidated == hot
    benchmark.extra_info["liquidated"] = liquidated
