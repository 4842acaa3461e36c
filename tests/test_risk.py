"""perpcore.risk: tiers, maintenance, order margin, collateral value and the liquidation and
bankruptcy prices, against brute force and plain reference formulas."""
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpcore.config import RATE_SCALE, default_config
from perpcore.risk import (CollateralPrice, TierTable, bankruptcy_price, ceil_div, ltv,
                           order_margin)

from margin_venue import amount_for_proceeds

CFG = default_config()
TIERS = {s: TierTable(CFG.instruments[s], CFG) for s in CFG.instruments}
UPT = 100                       # minor units per tick x lot in both default perps


def marginal(tiers: TierTable, notional: int) -> int:
    """Maintenance as the sum of each notional slice times its own tier's rate."""
    total, floor = Fraction(0), 0
    for k, cap in enumerate(tiers.caps):
        top = notional if k == len(tiers.caps) - 1 else min(notional, cap)
        total += max(0, top - floor) * Fraction(tiers.rates[k], RATE_SCALE)
        floor = cap
    return math.ceil(total)


def test_maintenance_amounts_follow_binance():
    t = TIERS["BTC-PERP"]
    # amount_n = floor_n x (MMR_n - MMR_n-1) + amount_n-1, in USD: 0, 50, 3,050, 48,050, 348,050
    assert [a // RATE_SCALE // 10**6 for a in t.amounts] == [0, 50, 3050, 48050, 348050]
    assert all(a % (RATE_SCALE * 10**6) == 0 for a in t.amounts)


@pytest.mark.parametrize("symbol", sorted(TIERS))
def test_maintenance_is_continuous_at_every_tier_boundary(symbol):
    t = TIERS[symbol]
    for k, cap in enumerate(t.caps[:-1]):
        below = -((t.amounts[k] - cap * t.rates[k]) // RATE_SCALE)
        above = -((t.amounts[k + 1] - cap * t.rates[k + 1]) // RATE_SCALE)
        assert below == above == t.maintenance(cap)
        assert t.maintenance(cap + 1) - t.maintenance(cap) <= 1      # one minor unit more at most


@settings(max_examples=300)
@given(st.sampled_from(sorted(TIERS)), st.integers(0, 10**14))
def test_maintenance_equals_the_marginal_rate_reference(symbol, notional):
    assert TIERS[symbol].maintenance(notional) == marginal(TIERS[symbol], notional)


@settings(max_examples=300)
@given(st.sampled_from(sorted(TIERS)), st.integers(0, 10**30))
def test_maintenance_is_exact_past_64_bits(symbol, notional):
    # notional x rate leaves 64 bits far behind: the Cython tiers compute in 128
    assert TIERS[symbol].maintenance(notional) == marginal(TIERS[symbol], notional)


@settings(max_examples=500)
@given(position=st.integers(-10**10, 10**10), lots=st.integers(0, 10**10),
       price=st.integers(1, 10**8), mark=st.none() | st.integers(1, 10**8), buy=st.booleans(),
       leverage=st.integers(1, 125))
def test_order_margin_equals_its_definition(position, lots, price, mark, buy, leverage):
    value = lots * price
    reducing = max(0, -position if buy else position)
    increasing = max(0, lots - reducing)
    expected = math.ceil(Fraction(value * UPT * increasing, lots * leverage)) if lots else 0
    if mark is not None and lots:
        expected += max(0, value - lots * mark if buy else lots * mark - value) * UPT
    assert order_margin(position, lots, value, mark, buy, UPT, leverage) == expected


def test_max_notional_by_leverage():
    t = TIERS["ETH-PERP"]
    assert t.max_notional(100) == 50_000 * 10**6
    assert t.max_notional(75) == t.max_notional(51) == 500_000 * 10**6
    assert t.max_notional(1) == 30_000_000 * 10**6
    assert t.max_notional(101) == 0


def liquidatable(t, size, base, p):
    return base + size * UPT * p <= t.maintenance(abs(size) * UPT * p)


@settings(max_examples=400)
@given(st.sampled_from(sorted(TIERS)),
       st.integers(1, 50_000) | st.integers(-50_000, -1),
       st.integers(-10**13, 10**13))
def test_liquidation_price_is_the_first_tick_where_the_rule_holds(symbol, size, base):
    t = TIERS[symbol]
    p = t.liquidation_price(size, UPT, base)
    if p is None:
        assert size > 0 and not liquidatable(t, size, base, 1)
        return
    assert p >= 1 and liquidatable(t, size, base, p)
    if size > 0:
        assert not liquidatable(t, size, base, p + 1)
    elif p > 1:
        assert not liquidatable(t, size, base, p - 1)


def test_liquidation_price_by_hand():
    t = TIERS["BTC-PERP"]
    # long 1 BTC (1,000 lots) with 3,000 of equity at a 60,000 mark: equity(p) = p - 57,000; in
    # tier 2 maintenance is 0.5% p - 50; equal where 0.995 p = 56,950, p = 57,236.18...
    base = 3_000 * 10**6 - 1000 * UPT * 600000
    p = t.liquidation_price(1000, UPT, base)
    assert p == 572361               # 57,236.1 (the highest tick with equity <= maintenance)
    assert liquidatable(t, 1000, base, p) and not liquidatable(t, 1000, base, p + 1)


@given(st.integers(1, 10**6) | st.integers(-10**6, -1), st.integers(-10**14, 10**14))
def test_bankruptcy_price_is_the_last_tick_with_equity_at_or_above_zero(size, base):
    p = bankruptcy_price(size, UPT, base)
    equity = lambda q: base + size * UPT * q            # noqa: E731
    if p is None:
        assert (size > 0 and equity(1) >= 0) or (size < 0 and equity(1) < 0)
        return
    assert equity(p) >= 0
    assert equity(p - 1 if size > 0 else p + 1) < 0 or (size > 0 and p == 1)


def test_order_margin_netting_and_open_loss():
    # 0.1 BTC bid at 59,000, 20x, mark 60,000: 5,900 / 20 = 295
    assert order_margin(0, 100, 100 * 590000, 600000, True, UPT, 20) == 295 * 10**6
    # the same bid against a 0.1 short only reduces it: free
    assert order_margin(-100, 100, 100 * 590000, 600000, True, UPT, 20) == 0
    # against a 0.04 short: 0.06 of 0.1 increase, 295 x 0.6 = 177
    assert order_margin(-40, 100, 100 * 590000, 600000, True, UPT, 20) == 177 * 10**6
    # a bid at 61,000 over a 60,000 mark adds its immediate loss 0.1 x 1,000 = 100
    assert order_margin(0, 100, 100 * 610000, 600000, True, UPT, 20) == 405 * 10**6
    # an offer below the mark likewise; above it no loss; no mark, no loss
    assert order_margin(0, 100, 100 * 590000, 600000, False, UPT, 20) == 395 * 10**6
    assert order_margin(0, 100, 100 * 610000, 600000, False, UPT, 20) == 305 * 10**6
    assert order_margin(0, 100, 100 * 610000, None, True, UPT, 20) == 305 * 10**6
    # rounded up: 1 lot at 1 tick over 3x is 100 / 3 minor units
    assert order_margin(0, 1, 1, None, True, UPT, 3) == 34
    assert order_margin(0, 0, 0, 600000, True, UPT, 20) == 0


BTC_COLL = CollateralPrice(CFG, "BTC")


def test_collateral_value_rounds_down_after_the_haircut():
    # 1 satoshi at 62,000 = 620 micro-USD, 589 after 5%
    assert BTC_COLL.value(1, 620000) == 589
    assert BTC_COLL.market_value(1, 620000) == 620
    assert BTC_COLL.value(3, 620001) == 1767           # 3 x 620.001 x 0.95 = 1767.00285
    assert BTC_COLL.value(10**8, None) == 0 and BTC_COLL.value(-5, 620000) == 0
    assert BTC_COLL.symbol == "BTC-PERP"
    eth = CollateralPrice(CFG, "ETH")
    assert eth.symbol == "ETH-PERP" and eth.market_value(10**8, 300000) == 3000 * 10**6


@given(st.integers(1, 10**12), st.integers(1, 10**8), st.booleans())
def test_min_amount_is_the_least_amount_worth_the_value(value, index, haircut):
    worth = BTC_COLL.value if haircut else BTC_COLL.market_value
    x = BTC_COLL.min_amount(value, index, haircut)
    assert worth(x, index) >= value and worth(x - 1, index) < value


@given(st.integers(1, 10**12), st.integers(1, 10**8), st.integers(0, RATE_SCALE - 1))
def test_amount_for_proceeds_is_the_least_sale_that_raises_them(proceeds, index, penalty):
    x = amount_for_proceeds(BTC_COLL, proceeds, index, penalty)
    assert BTC_COLL.sale_proceeds(x, index, penalty) >= proceeds
    assert BTC_COLL.sale_proceeds(x - 1, index, penalty) < proceeds


def test_ltv_rounds_up_and_names_the_edge_cases():
    assert ltv(0, 0) == 0 and ltv(-3, 100) == 0
    assert ltv(1, 0) is None
    assert ltv(2, 3) == ceil_div(2 * RATE_SCALE, 3) == 66_666_667
