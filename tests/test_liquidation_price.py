"""The liquidation price ex.account() shows is where the engine liquidates: the mark one tick short
of it leaves the account alone, the mark on it liquidates it. Single positions, an account with
positions in both perps (each price holding the other mark), and accounts margined by BTC
collateral, with and without a loan; then random accounts.

The price holds every other price fixed, the collateral's index included: it is exact for collateral
that is not the position's own underlying (the cases here). For BTC collateral behind a BTC-PERP
position one index moves both, and the price shown (index held) is not where a move of that index
liquidates."""
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore.messages import Side

from liquidation_venue import BTC, ETH, Venue, of, usd

TRADER, MAKER = 1, 2
START = {BTC: 650000, ETH: 340000}


def venue(usd_amount=0, **assets) -> Venue:
    v = Venue()
    v.account(TRADER, usd_amount, **assets)
    v.account(MAKER, 100_000_000)
    for symbol, price in START.items():
        v.price(symbol, price)
    return v


def open_position(v: Venue, symbol: str, lots: int) -> None:
    v.trade(MAKER, TRADER, symbol, Side.BUY if lots > 0 else Side.SELL, abs(lots), START[symbol])


def liquidation_price(v: Venue, symbol: str) -> int | None:
    [pos] = [p for p in v.ex.account(TRADER).positions if p.symbol == symbol]
    return pos.liquidation_price


def assert_exact(v: Venue, symbol: str) -> None:
    price = liquidation_price(v, symbol)
    assert price is not None
    long = v.size(TRADER, symbol) > 0
    events = v.price(symbol, price + 1 if long else price - 1)
    assert not of(events, m.LiquidationStarted)
    assert not v.ex.account(TRADER).liquidatable
    assert liquidation_price(v, symbol) == price          # nothing else moved: the same price
    events = v.price(symbol, price)
    assert [e.account for e in of(events, m.LiquidationStarted)] == [TRADER]
    assert v.ex.audit().ok


@pytest.mark.parametrize("lots", [1500, -1500, 20_000, -20_000])
def test_single_position(lots):
    v = venue(8_000)
    open_position(v, BTC, lots // 10 if abs(lots) > 10_000 else lots)
    assert_exact(v, BTC)


@pytest.mark.parametrize("moved", [BTC, ETH])
def test_multi_position_each_price_holding_the_other(moved):
    v = venue(20_000)
    open_position(v, BTC, 2000)             # long 2 BTC
    open_position(v, ETH, -2000)            # short 20 ETH
    assert_exact(v, moved)


@pytest.mark.parametrize("lots", [10_000, -10_000])
def test_collateral_backed(lots):
    v = venue(BTC=100_000_000)              # 1 BTC, no cash: the fees take the cash below zero
    open_position(v, ETH, lots)             # 100 ETH either way
    assert v.ex.account(TRADER).balances["USD"] < 0
    assert_exact(v, ETH)


def test_collateral_backed_with_a_loan():
    v = venue(BTC=100_000_000)
    v.submit(m.Borrow(account=TRADER, asset="USD", amount=usd(30_000)))
    open_position(v, ETH, -5000)
    assert_exact(v, ETH)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deposit=st.integers(500, 60_000), lots=st.integers(100, 4000).map(lambda x: x * 10),
       side=st.sampled_from([1, -1]), symbol=st.sampled_from([BTC, ETH]),
       leverage=st.integers(2, 50), collateral=st.booleans())
def test_random_accounts(deposit, lots, side, symbol, leverage, collateral):
    # the other asset as collateral (0.1 BTC or 10 ETH), so its index stays fixed
    other = {BTC: {"ETH": 1_000_000_000}, ETH: {"BTC": 10_000_000}}[symbol]
    v = venue(deposit, **(other if collateral else {}))
    v.submit(m.SetLeverage(account=TRADER, symbol=symbol, leverage=leverage))
    v.order(MAKER, symbol, Side.SELL if side > 0 else Side.BUY, lots, START[symbol])
    events = v.ex.submit(m.PlaceOrder(account=TRADER, symbol=symbol,
                                      side=Side.BUY if side > 0 else Side.SELL, qty=lots,
                                      price=START[symbol], tif=m.TimeInForce.IOC))
    assume(not of(events, m.OrderRejected))
    price = liquidation_price(v, symbol)
    assume(price is not None and price > 1)
    assert_exact(v, symbol)


LIQ = Exchange(default_config()).liquidation


@settings(max_examples=600)
@given(st.sampled_from([BTC, ETH]),
       st.integers(1, 10**9) | st.integers(-10**9, -1) | st.sampled_from([2**62, -2**62]),
       st.integers(-10**15, 10**15) | st.integers(-2**100, 2**100))
def test_the_keyings_c_solve_is_the_liquidation_price(symbol, size, base):
    """The keying's solve (LiquidationCore.liquidation_price: TierTable.liquidation_tick over
    128-bit integers, the Python figure past their range) is TierTable.liquidation_price, whatever
    the size and base."""
    sr = LIQ.margin.symbols[symbol]
    assert LIQ.liquidation_price(symbol, size, base) == \
        sr.tiers.liquidation_price(size, sr.upt, base)
