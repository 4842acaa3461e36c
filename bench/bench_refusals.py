"""What a refusal costs next to the work it stands in for (issue 13): a cancel of an order that is
no longer open (UNKNOWN_ORDER, routine for a gateway whose client raced a fill) against an accepted
cancel, each through Exchange.submit on the same venue. Both groups cancel the same ids: first
while the orders rest (accepted), then again once they are gone (refused)."""
import pytest

from perpcore import Exchange, default_config
from perpcore import messages as m

ACCOUNT = 1


def _venue(orders: int) -> tuple[Exchange, list[m.CancelOrder]]:
    cfg = default_config()
    spec = cfg.instruments["BTC-PERP"]
    ex = Exchange(cfg)
    ex.submit(m.CreateAccount(account=ACCOUNT))
    ex.submit(m.Deposit(account=ACCOUNT, asset="USD",
                        amount=cfg.assets["USD"].to_units("1000000000")))
    base = spec.to_ticks("60000")
    cancels = []
    for i in range(orders):
        placed = ex.submit(m.PlaceOrder(account=ACCOUNT, symbol="BTC-PERP", side=m.Side.BUY,
                                        price=base - (i % 500) * spec.price_step,
                                        qty=spec.to_lots("0.001")))
        assert type(placed[-1]) is m.OrderAccepted, placed
        cancels.append(m.CancelOrder(account=ACCOUNT, symbol="BTC-PERP",
                                     order_id=placed[-1].order_id))
    return ex, cancels


def _submit_all(submit, cmds):
    for cmd in cmds:
        submit(cmd)


@pytest.fixture(scope="module")
def orders(scaled):
    return scaled(20_000)


def test_accepted_cancel(benchmark, orders):
    def setup():
        ex, cancels = _venue(orders)
        return (ex.submit, cancels), {}
    benchmark.group = "refusals"
    benchmark.pedantic(_submit_all, setup=setup, rounds=5)


def test_unknown_order_cancel(benchmark, orders):
    def setup():
        ex, cancels = _venue(orders)
        _submit_all(ex.submit, cancels)
        refused = ex.submit(cancels[0])
        assert refused[0].code == m.RejectCode.UNKNOWN_ORDER
        return (ex.submit, cancels), {}
    benchmark.group = "refusals"
    benchmark.pedantic(_submit_all, setup=setup, rounds=5)
