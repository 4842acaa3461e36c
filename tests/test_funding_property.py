"""Property tests: funding is zero-sum to the minor unit, payers never pay less and receivers never
get more than the exact size x mark x rate, and the insurance fund only ever receives the rounding
remainder; first on the pure payment function against an exact Fraction model, then on whole
venues with random books, index prices and positions settled on the clock: the built-in venue and
every preset of perpcore.venues (the commands written on the built-in venue, re-expressed on the
preset's grid by perpcore.compare.Translator)."""
import math
from fractions import Fraction

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore.compare import Translator
from perpcore.config import HOUR_NS, RATE_SCALE
from perpcore.funding import payments
from perpcore.venues import VENUES, venue

S = 1_000_000_000
BTC = "BTC-PERP"

sizes = st.integers(-10**7, 10**7)
positions_st = st.lists(st.tuples(st.integers(1, 10**6), sizes), max_size=40,
                        unique_by=lambda p: p[0]).map(sorted)


def exact_due(size: int, mark: int, rate: int, upt: int) -> Fraction:
    """What a position owes (< 0) or is owed (> 0), exactly."""
    return Fraction(-size * mark * upt * rate, RATE_SCALE)


@given(positions_st, st.integers(1, 10**9), st.integers(-10**7, 10**7), st.integers(1, 10**4))
def test_payments_are_zero_sum_and_round_against_nobody_but_the_venue(positions, mark, rate, upt):
    pays, remainder = payments(positions, mark, rate, upt)
    assert sum(a for _, a in pays) + remainder == 0
    assert remainder >= 0
    assert [acc for acc, _ in pays] == [acc for acc, s in positions if s and rate]
    size_of = dict(positions)
    for account, amount in pays:
        due = exact_due(size_of[account], mark, rate, upt)
        if due < 0:     # a payer pays its due rounded up to the minor unit, no more
            assert due - 1 < amount <= due
        else:           # a receiver never gets more than its due
            assert 0 <= amount <= due


@given(st.lists(st.tuples(st.integers(1, 10**6), st.integers(1, 10**7)), min_size=1, max_size=20,
                unique_by=lambda p: p[0]),
       st.integers(1, 10**9), st.integers(-10**7, 10**7), st.integers(1, 10**4), st.randoms())
def test_with_open_interest_netting_to_zero_every_receiver_gets_its_floor(
        longs, mark, rate, upt, rnd):
    # split the longs' total into shorts of random sizes: open interest nets to zero, as a venue's
    total = sum(s for _, s in longs)
    cuts = sorted(rnd.sample(range(1, total), min(total - 1, 5))) if total > 1 else []
    shorts = [(10**6 + i + 1, -(b - a)) for i, (a, b) in enumerate(zip([0] + cuts, cuts + [total]))]
    positions = sorted(longs + shorts)
    pays, remainder = payments(positions, mark, rate, upt)
    size_of = dict(positions)
    for account, amount in pays:
        due = exact_due(size_of[account], mark, rate, upt)
        assert amount == math.floor(due)        # payers round up what they pay, receivers down
    # each position rounds by less than one minor unit
    assert 0 <= remainder < len(pays) or not pays


# ---- whole venues --------------------------------------------------------------------------------

def hourly(name: str):
    """The venue `name` with its BTC perpetual settling every hour on an index fresh all along."""
    cfg = venue(name)
    symbol = cfg.collateral_symbol("BTC")       # the venue's BTC perpetual
    spec = cfg.instruments[symbol]
    pricing = msgspec.structs.replace(spec.pricing, index_stale_ns=10**6 * S,
                                      funding_interval_ns=HOUR_NS)
    return msgspec.structs.replace(cfg, instruments={
        **cfg.instruments, symbol: msgspec.structs.replace(spec, pricing=pricing)})


order_st = st.tuples(st.integers(1, 8), st.sampled_from([m.Side.BUY, m.Side.SELL]),
                     st.integers(-300, 300), st.integers(1, 400))


# the built-in venue as many examples as ever; each preset a quarter of them
@pytest.mark.parametrize("name", list(VENUES))
def test_settlements_on_a_random_venue_are_zero_sum(name):
    cfg = hourly(name)
    check = settings(max_examples=40 if name == "default" else 10, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])(
        given(st.integers(600_000, 700_000), st.lists(order_st, min_size=2, max_size=40),
              st.lists(st.tuples(st.integers(1, 3 * 3600), st.integers(-2000, 2000)),
                       max_size=6))(settle_a_random_venue))
    check(cfg)


def settle_a_random_venue(cfg, index, orders, index_moves):
    ex = Exchange(cfg)
    settle = cfg.settlement_asset
    btc = cfg.collateral_symbol("BTC")
    translated = Translator(default_config(), cfg)

    def submit(cmd):
        return ex.submit(translated(cmd))
    for a in range(1, 9):
        submit(m.CreateAccount(account=a))
        submit(m.Deposit(account=a, asset="USD", amount=10**12))
    submit(m.SetIndexPrice(source="a", symbol=BTC, price=index, ts=S))
    # random resting and crossing orders around the index make the book and the positions
    for account, side, offset, qty in orders:
        submit(m.PlaceOrder(account=account, symbol=BTC, side=side, price=index + offset,
                            qty=qty, ts=S))
    cash = {a: ex.account(a).balances[settle] for a in range(1, 9)}
    fund = ex.insurance_fund(settle)
    events = []
    for t, move in sorted(index_moves):
        events += submit(m.SetIndexPrice(source="a", symbol=BTC, price=index + move,
                                         ts=S + t * S))
    events += submit(m.AdvanceClock(ts=3 * HOUR_NS))
    settled = [e for e in events if type(e) is m.FundingSettled]
    paid = [e for e in events if type(e) is m.FundingPaid]
    # a settlement reports when somebody holds a position (positions do not change on the clock)
    assert [e.ts for e in settled] == \
        ([HOUR_NS, 2 * HOUR_NS, 3 * HOUR_NS] if ex.margin.open_positions(btc) else [])
    assert not [e for e in events if type(e) is m.OrderFilled]     # no liquidation interfered
    # every account's cash moved by exactly its FundingPaid amounts
    for a in range(1, 9):
        assert ex.account(a).balances[settle] - cash[a] == \
            sum(e.amount for e in paid if e.account == a)
    # zero-sum: what accounts lost is what accounts gained plus the fund's remainder
    assert sum(e.amount for e in paid) + sum(e.insurance for e in settled) == 0
    assert all(e.insurance >= 0 and e.paid == e.received + e.insurance for e in settled)
    assert ex.insurance_fund(settle) - fund == sum(e.insurance for e in settled)
    for e in paid:
        assert (e.amount < 0) == ((e.position > 0) == (e.rate > 0))
    ex.audit().check()
