"""Issue 3's funding target: a settlement over 100,000 open positions (< 200 ms), measured as the
whole AdvanceClock that crosses the funding time (premium samples of 8 h in closed form, the
payments, the ledger's transfers, a FundingPaid per account, and the liquidation engine re-keying
every account whose cash moved). For the breakdown: the settlement through pricing and the ledger
alone (perpcore._funding's C pass), the liquidation engine's pass over its events alone (stage 6:
the payers' reserves), and the plain payment rule (perpcore.funding.payments, which the C pass
stands for). The venue: one maker short against n takers long one lot each."""
import msgspec
import pytest

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore.funding import payments

BTC = "BTC-PERP"
PRICE = 650000


def positions_venue(n: int) -> Exchange:
    """BTC-PERP at index PRICE (a source that never goes stale), one maker (account 1) short n
    lots against n taker accounts (2 .. n + 1) long one lot each: n + 1 open positions."""
    cfg = default_config()
    spec = cfg.instruments[BTC]
    pricing = msgspec.structs.replace(spec.pricing, index_stale_ns=10**18)
    ex = Exchange(msgspec.structs.replace(cfg, instruments={
        **cfg.instruments, BTC: msgspec.structs.replace(spec, pricing=pricing)}))
    submit = ex.submit
    submit(m.SetIndexPrice(source="i", symbol=BTC, price=PRICE))
    submit(m.CreateAccount(account=1))
    submit(m.Deposit(account=1, asset="USD", amount=10**13))
    submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.SELL, price=PRICE + 10, qty=n))
    for a in range(2, n + 2):
        submit(m.CreateAccount(account=a))
        submit(m.Deposit(account=a, asset="USD", amount=100 * 10**6))
        submit(m.PlaceOrder(account=a, symbol=BTC, side=m.Side.BUY, price=PRICE + 10, qty=1,
                            tif=m.TimeInForce.IOC))
    return ex


@pytest.fixture(scope="module")
def venue(scaled):
    n = scaled(100_000)
    ex = positions_venue(n)
    assert len(ex.margin.open_positions(BTC)) == n + 1
    return ex, n


def test_funding_settlement(benchmark, target, venue):
    ex, n = venue
    target("funding.settlement")
    pricing = ex.components["pricing"]

    def settle():
        return ex.submit(m.AdvanceClock(ts=pricing.next_funding_time(BTC)))
    events = benchmark.pedantic(settle, rounds=5, iterations=1, warmup_rounds=1)
    [settled] = [e for e in events if type(e) is m.FundingSettled]
    assert settled.positions == n + 1 and settled.rate == 10_000
    assert sum(type(e) is m.FundingPaid for e in events) == n + 1
    ex.audit().check()


def test_funding_settlement_pricing_and_ledger(benchmark, venue):
    ex, n = venue
    state = ex.components["pricing"].symbols[BTC]

    def settle():
        events = []
        state.settle(ex.seq, state.next_funding, ex.margin, events)
        return events
    events = benchmark.pedantic(settle, rounds=5, iterations=1, warmup_rounds=1)
    assert len(events) == n + 2
    ex.audit().check()


def test_funding_settlement_stage6(benchmark, venue):
    ex, n = venue
    state = ex.components["pricing"].symbols[BTC]
    liquidation = ex.components["liquidation"]
    last = []

    def settled():
        last[:] = [[]]
        state.settle(ex.seq, state.next_funding, ex.margin, last[0])
        return (last[0],), {}
    benchmark.pedantic(liquidation.after_command, setup=settled, rounds=5, warmup_rounds=1)
    assert len(last[0]) == n + 2        # nobody liquidated: no event added
    ex.audit().check()


def test_funding_payments_alone(benchmark, venue):
    ex, n = venue
    positions = ex.margin.open_positions(BTC)
    pays, remainder = benchmark(payments, positions, PRICE, 10_000, 100)
    assert len(pays) == n + 1 and sum(a for _, a in pays) + remainder == 0
