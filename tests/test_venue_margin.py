"""The venues' margin rules as config options (issue 16), each with a worked example taken from the
venue's own documentation, recomputed here by hand (in the comments, exact decimals) and driven
through the real Exchange: commands in, the rejection at the boundary, events, balances, audit.

Sources (found with the search tool; the pages quoted are those the tests cite):
- Binance USDⓈ-M, "How to Calculate the Cost Required to Open a Position in Perpetual Futures
  Contracts" (binance.com/en/support/faq/87fa7ee33b574f7084d42bd2ce2e463b, and its binance.bh copy
  that shows the assuming price): "Cost = Initial Margin + Open Loss (if any)", "Long Order:
  Assuming Price = Order's Price", "Short Order: Assuming Price = Max(Last Price * (1 + 0.15%),
  Mark Price, Order's Price)", "Initial Margin = Position Value / Leverage = (Assuming Price *
  Order Quantity)", worked on last 9,258.99, mark 9,259.84, order price 9,253.30, 1 BTC at 20x;
  "Open Loss = Number of Contract x Absolute Value {min[0, direction of order x (mark price -
  order price)]}" (short: 1 x 6.54). The copy visible to the search ends before the short's total;
  the total below is the page's formula on the page's figures.
- Binance USDⓈ-M, "Frequently Asked Questions on Multi-Assets Mode"
  (binance.com/en/support/faq/f80415bea8124f6494566f23c0bf9c38): auto-exchange happens when "the
  USDT or BUSD margin balance ... is below the autoExchangeThreshold (-10,000 USD)"; Binance's
  multi-asset trading rules (binance.com/en-NG/futures/trading-rules/perpetual/multi-asset-info):
  "when your BUSD balance is -20,000 BUSD, auto exchange will be triggered. 20,000 BUSD / 97.5% =
  20,513 BUSD of the BTC will be changed to BUSD to balance the wallet", and "If there are multiple
  assets ... they will be automatically converted ... according to the proportion of each asset".
  ApolloX's copy of the same rules says "when the balance is -10,000 BUSD, an automatic exchange
  will be triggered" (at the threshold): the two readings are MarginSpec.trigger_at's two values.
- Bit2Me, "Do I still own the cryptocurrencies used as collateral?"
  (support.bit2me.com/en/support/solutions/articles/35000221382): a loan is liquidated "when the
  relationship between the principal and the collateral reaches 85%", and "Any liquidation will be
  associated with a liquidation fee ... 2% of the outstanding principal" (its EUR 100 minimum is
  not modelled). Binance Loans (its FAQ as quoted on bitcointalk topic 5248835): "If it reaches or
  goes beyond the Liquidation LTV [83%], it does the liquidation process automatically"; the
  remaining collateral is returned (repay in full).
"""
from decimal import Decimal
from fractions import Fraction
from math import ceil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpcore import Exchange
from perpcore import messages as m
from perpcore.config import RATE_SCALE, MarginSpec, default_config
from perpcore.messages import LiquidationReason, RejectCode, Side
from perpcore.config import digest_form

from margin_venue import BTC, ETH, Venue, loan_at_85, of, sats, usd

A, B, C, D = 1, 2, 3, 4


# ---- 1. initial margin of sell orders: Binance's assuming price --------------------------------

def binance_book(rule: str) -> Venue:
    """Binance's example market on a 0.01 grid: last trade 9,258.99 (accounts A and B), mark (the
    index: margin_venue's venue) 9,259.84, no resting orders."""
    v = Venue(tick_size=Decimal("0.01"), sell_order_margin=rule)
    v.account(A, USD=usd(100_000))
    v.account(B, USD=usd(100_000))
    v.price(BTC, 925984)
    v.trade(A, B, BTC, Side.BUY, 1, 925899)
    assert v.ex.mark_price(BTC) == 925984
    return v


# Binance's short: assuming price max(9,258.99 x 1.0015 = 9,272.8784850, 9,259.84, 9,253.30)
# = 9,272.878485; initial margin 9,272.878485 / 20 = 463.64392425; open loss 1 x (9,259.84 -
# 9,253.30) = 6.54; cost 470.18392425, rounded up to the micro-dollar: 470.183925.
# Under "open_loss" the short pays 9,253.30 / 20 = 462.665 + 6.54 = 469.205.
@pytest.mark.parametrize("rule,cost", [("assuming_price", "470.183925"),
                                       ("open_loss", "469.205")])
def test_a_short_costs_binances_assuming_price_plus_its_open_loss(rule, cost):
    v = binance_book(rule)
    v.account(C, USD=usd(cost) - 1)
    sell = m.PlaceOrder(account=C, symbol=BTC, side=Side.SELL, qty=1000, price=925330)
    assert v.refuse(sell) == RejectCode.INSUFFICIENT_MARGIN
    v.submit(m.Deposit(account=C, asset="USD", amount=1))
    assert of(v.submit(sell), m.OrderAccepted)
    assert v.ex.audit().ok


def test_a_long_costs_its_order_price_under_either_rule():
    # Binance's long: assuming price = order price 9,253.30, initial margin 462.665, no open loss
    # (the mark 9,259.84 is above it)
    for rule in ("assuming_price", "open_loss"):
        v = binance_book(rule)
        v.account(C, USD=usd("462.665") - 1)
        buy = m.PlaceOrder(account=C, symbol=BTC, side=Side.BUY, qty=1000, price=925330)
        assert v.refuse(buy) == RejectCode.INSUFFICIENT_MARGIN
        v.submit(m.Deposit(account=C, asset="USD", amount=1))
        assert of(v.submit(buy), m.OrderAccepted)


@pytest.mark.parametrize("price,assumed", [
    (925330, Decimal("9272.8784850")),      # below the buffered last price: that is charged
    (928000, Decimal("9280.00")),           # above every other term: its own price
])
def test_the_assuming_price_is_the_largest_of_its_three_terms(price, assumed):
    v = binance_book("assuming_price")
    loss = max(Decimal("9259.84") - Decimal(price) / 100, 0)
    cost = (assumed / 20 + loss).quantize(Decimal("0.000001"), rounding="ROUND_CEILING")
    v.account(C, USD=usd(cost) - 1)
    sell = m.PlaceOrder(account=C, symbol=BTC, side=Side.SELL, qty=1000, price=price)
    assert v.refuse(sell) == RejectCode.INSUFFICIENT_MARGIN
    v.submit(m.Deposit(account=C, asset="USD", amount=1))
    assert of(v.submit(sell), m.OrderAccepted)


def test_the_mark_is_the_assuming_price_when_it_is_above_the_buffered_last():
    v = binance_book("assuming_price")
    v.price(BTC, 930000)                    # mark 9,300 > 9,272.878485
    # 1 BTC at 9,253.30: 9,300 / 20 = 465 + open loss 46.70 = 511.70
    v.account(C, USD=usd("511.70") - 1)
    sell = m.PlaceOrder(account=C, symbol=BTC, side=Side.SELL, qty=1000, price=925330)
    assert v.refuse(sell) == RejectCode.INSUFFICIENT_MARGIN
    v.submit(m.Deposit(account=C, asset="USD", amount=1))
    assert of(v.submit(sell), m.OrderAccepted)


def test_an_amend_is_charged_the_assuming_price_on_the_lots_it_adds_only():
    v = binance_book("assuming_price")
    # 2 BTC at 9,253.30: 2 x (463.64392425 + 6.54) = 940.3678485 -> 940.367849
    v.account(C, USD=usd("940.367849"))
    order = v.order(C, BTC, Side.SELL, 2000, 925330)[0].order_id
    v.submit(m.Withdraw(account=C, asset="USD", amount=usd("940.367849") - usd("938.41")))
    # resting, it reserves 2 x (462.665 + 6.54) = 938.41, all C has left: a size decrease passes
    assert v.view(C).initial_margin == v.view(C).equity == usd("938.41")
    assert of(v.submit(m.AmendOrder(account=C, symbol=BTC, order_id=order, price=925330,
                                    qty=1000)), m.OrderAmended)
    # an increase back to 2 BTC is charged the assuming price on the BTC it adds: 470.183925
    # against the 469.205 it freed, so it is refused; at its own price it would pass
    assert v.refuse(m.AmendOrder(account=C, symbol=BTC, order_id=order, price=925330,
                                 qty=2000)) == RejectCode.INSUFFICIENT_MARGIN


def test_a_sell_that_reduces_a_long_pays_no_assuming_price():
    v = binance_book("assuming_price")
    v.account(C, USD=usd(10_000))
    v.trade(A, C, BTC, Side.BUY, 1000, 925984)      # C long 1 BTC at the mark
    equity = v.view(C).equity
    im = v.view(C).initial_margin
    # the reducing sell adds no initial margin, only its open loss 6.54 (netted away: the max of
    # the two sides is the sell side's loss, which is below nothing else): it passes on any equity
    # that carries the position and that loss
    assert equity >= im + usd("6.54")
    assert of(v.submit(m.PlaceOrder(account=C, symbol=BTC, side=Side.SELL, qty=1000,
                                    price=925330)), m.OrderAccepted)


# ---- 2. multi-assets mode: auto-exchange ---------------------------------------------------------

def multi_assets(trigger_at="passing", **collateral) -> Venue:
    """Free trading; A holds the collateral given and a long of 1 BTC at 60,000 from B."""
    v = Venue(margin={"multi_assets": True, "trigger_at": trigger_at}, maker_fee=0, taker_fee=0)
    v.account(A, **collateral)
    v.account(B, USD=usd(1_000_000))
    v.price(BTC, 600000)
    v.price(ETH, 300000)
    v.trade(B, A, BTC, Side.BUY, 1000, 600000)
    return v


def test_binances_example_a_20000_deficit_sells_20000_over_97_5_percent_of_btc():
    v = multi_assets(BTC=sats(2))
    v.price(BTC, 400000)
    # A closes at 40,000: realised -20,000, its USD balance -20,000 < -10,000. Binance: "20,000 /
    # 97.5% = 20,513 of the BTC" are exchanged: at 40,000 a satoshi fetches 0.0004 x 0.975 =
    # 0.00039 USD, so ceil(20,000 / 0.00039) = 51,282,052 satoshi (20,512.8208 USD at index) for
    # 20,000.00028 USD; the balance is 0.00028.
    events = v.trade(B, A, BTC, Side.SELL, 1000, 400000)
    assert of(events, m.PositionChanged)[-1].balance == -usd(20_000)
    assert of(events, m.CollateralExchanged) == [m.CollateralExchanged(
        v.ex.seq, 0, A, "BTC", 51_282_052, 400000, usd("20000.00028"), usd("0.00028"))]
    assert v.view(A).balances == {"USD": usd("0.00028"), "BTC": sats(2) - 51_282_052, "ETH": 0}
    audit = v.ex.audit().check()
    assert audit["BTC"].platform == 51_282_052
    assert audit["USD"].platform == -usd("20000.00028")


@pytest.mark.parametrize("trigger_at,exchanged", [("passing", False), ("reaching", True)])
def test_a_balance_at_the_threshold_is_exchanged_only_when_reaching_triggers(trigger_at,
                                                                               exchanged):
    v = multi_assets(trigger_at, BTC=sats(2))
    v.price(BTC, 500000)
    events = v.trade(B, A, BTC, Side.SELL, 1000, 500000)     # realised -10,000: at the threshold
    assert bool(of(events, m.CollateralExchanged)) == exchanged
    assert (v.view(A).balances["USD"] >= 0) == exchanged
    assert v.ex.audit().ok


def test_above_the_threshold_nothing_is_exchanged_and_off_by_default_nothing_ever_is():
    v = multi_assets(BTC=sats(2))
    v.price(BTC, 550000)
    events = v.trade(B, A, BTC, Side.SELL, 1000, 550000)     # -5,000 > -10,000
    assert not of(events, m.CollateralExchanged) and v.view(A).balances["USD"] == -usd(5_000)
    plain = Venue(maker_fee=0, taker_fee=0)
    plain.account(A, BTC=sats(2))
    plain.account(B, USD=usd(1_000_000))
    plain.price(BTC, 600000)
    plain.trade(B, A, BTC, Side.BUY, 1000, 600000)
    plain.price(BTC, 400000)
    events = plain.trade(B, A, BTC, Side.SELL, 1000, 400000)
    assert not of(events, m.CollateralExchanged)
    assert plain.view(A).balances["USD"] == -usd(20_000)


def test_a_balance_left_below_the_threshold_by_a_liquidation_is_exchanged_at_the_next_command():
    # A holds 1 BTC and is long 10 BTC at 60,000 (at 20x); the index falls to 55,000: its equity
    # (1 BTC at 55,000 less the 5% haircut, 52,250, less the 50,000 loss) is under maintenance and
    # stage 6 sells the 10 BTC into B's bid. Those fills come after the command's auto-exchange, so
    # A is left with about -50,000 USD and its BTC; the next command, whatever it is, exchanges
    # it (before its own stage 6), and a snapshot between the two carries that duty.
    v = Venue(margin={"multi_assets": True}, maker_fee=0, taker_fee=0)
    v.account(A, BTC=sats(1))
    v.account(B, USD=usd(10_000_000))
    v.price(BTC, 600000)
    v.trade(B, A, BTC, Side.BUY, 10_000, 600000)
    v.order(B, BTC, Side.BUY, 10_000, 550000)
    shock = v.price(BTC, 550000)
    assert of(shock, m.LiquidationStarted) and not of(shock, m.CollateralExchanged)
    balance = v.view(A).balances["USD"]
    assert balance < -usd(10_000) and v.view(A).balances["BTC"] == sats(1)
    snapshot = v.ex.snapshot()
    after = v.price(ETH, 300000)
    exchanged = of(after, m.CollateralExchanged)
    assert [(e.account, e.asset) for e in exchanged] == [(A, "BTC")]
    # at 55,000 a satoshi of BTC is 550 micro-USD, sold at 97.5%: 536.25 each, the least that
    # covers the deficit
    assert exchanged[0].amount == ceil(Fraction(-balance) / Fraction("536.25"))
    assert 0 <= v.view(A).balances["USD"] < usd("0.001")
    assert v.ex.audit().ok
    restored = Exchange.restore(v.cfg, snapshot)
    assert restored.submit(m.SetIndexPrice(source="x", symbol=ETH, price=300000)) == after
    assert restored.state_hash() == v.ex.state_hash()
    assert not v.ex.components["margin"].loans.exchange_pending


def test_two_collateral_assets_bear_the_deficit_in_proportion_to_their_value():
    # A holds 1 BTC (40,000 at index after the fall) and 20 ETH at 2,000 (40,000): equal values,
    # so each covers half the 20,000: 10,000 / (0.0004 x 0.975) = 25,641,025.6 -> 25,641,026 sat
    # of BTC (10,000.00014 USD) and 10,000 / (0.00002 x 0.975) = 512,820,512.8 -> 512,820,513 sat
    # of ETH (at 2,000 a satoshi of ETH is 0.00002 USD; 10,000.0000035 -> 10,000.000003 USD)
    v = multi_assets(BTC=sats(1), ETH=sats(20))
    v.price(ETH, 200000)
    v.price(BTC, 400000)
    events = v.trade(B, A, BTC, Side.SELL, 1000, 400000)
    exchanged = of(events, m.CollateralExchanged)
    assert [(e.asset, e.amount, e.proceeds) for e in exchanged] == [
        ("BTC", 25_641_026, usd("10000.00014")), ("ETH", 512_820_513, usd("10000.000003"))]
    assert v.view(A).balances["USD"] == usd("0.000143")
    assert v.ex.audit().ok


# ---- 3. margin-loan liquidation policy -----------------------------------------------------------

@pytest.mark.parametrize("trigger_at,liquidated", [("reaching", True), ("passing", False)])
def test_the_liquidation_ltv_fires_at_the_level_only_when_reaching(trigger_at, liquidated):
    v = loan_at_85("repay_in_full", trigger_at)
    events = v.price(BTC, 460000)                       # exactly 85%
    assert bool(of(events, m.CollateralConverted)) == liquidated
    assert of(events, m.MarginCall)                     # past the 75% warning either way
    if not liquidated:
        # one tick lower passes the level: 39,100 / 45,999.9 > 85%
        assert of(v.price(BTC, 459999), m.CollateralConverted)
    assert v.ex.audit().ok


@pytest.mark.parametrize("trigger_at,called", [("reaching", True), ("passing", False)])
def test_the_warning_ltv_calls_at_the_level_only_when_reaching(trigger_at, called):
    v = Venue(margin={"trigger_at": trigger_at})
    v.account(A, BTC=sats(1))
    v.price(BTC, 600000)
    v.submit(m.Borrow(account=A, asset="USD", amount=usd(39_000)))
    # 39,000 / 52,000 = 75% exactly: the warning level
    assert bool(of(v.price(BTC, 520000), m.MarginCall)) == called


def test_a_borrow_may_take_the_ltv_up_to_the_maximum_under_either_setting():
    for trigger_at in ("passing", "reaching"):
        v = Venue(margin={"trigger_at": trigger_at})
        v.account(A, BTC=sats(1))
        v.price(BTC, 600000)
        assert v.refuse(m.Borrow(account=A, asset="USD", amount=usd(39_000) + 1)) \
            == RejectCode.LOAN_LIMIT_EXCEEDED
        assert of(v.submit(m.Borrow(account=A, asset="USD", amount=usd(39_000))), m.Borrowed)


# ---- 4. the maintenance breach: on reaching it or on passing it ----------------------------------
# MECHANICS.md states both readings of the same venues' rule: "liquidation when equity < maintenance
# (ratio >= 100%)"; Binance liquidates when the margin ratio (maintenance / margin balance) reaches
# 100%, i.e. equity <= maintenance, perpcore's default; MarginSpec.maintenance_trigger_at "passing"
# is equity < maintenance.

def long_at_the_boundary(trigger_at: str) -> Venue:
    """Free trading; A holds 10,200 and a long of 1 BTC from 60,000. At a mark of 50,000 its
    equity is 10,200 - 10,000 = 200 and its maintenance 0.4% of 50,000 = 200: exactly at the
    level. At 50,000.1: equity 200.1 > 200.0004; at 49,999.9: 199.9 < 199.9996."""
    v = Venue(margin={"maintenance_trigger_at": trigger_at}, maker_fee=0, taker_fee=0)
    v.account(A, USD=usd(10_200))
    v.account(B, USD=usd(100_000))
    v.price(BTC, 600000)
    v.trade(B, A, BTC, Side.BUY, 1000, 600000)
    return v


@pytest.mark.parametrize("trigger_at,liquidated_at", [("reaching", 500000), ("passing", 499999)])
def test_the_maintenance_breach_fires_at_the_level_or_one_tick_past_it(trigger_at, liquidated_at):
    v = long_at_the_boundary(trigger_at)
    assert v.position(A, BTC).liquidation_price == liquidated_at
    assert not of(v.price(BTC, 500001), m.LiquidationStarted)
    for price in (500000, 499999):
        started = of(v.price(BTC, price), m.LiquidationStarted)
        if price > liquidated_at:
            assert not started and v.view(A).equity == v.view(A).maintenance_margin == usd(200)
        else:
            (e,) = started
            assert (e.equity, e.maintenance_margin) == \
                ((usd(200), usd(200)) if trigger_at == "reaching" else (usd("199.9"),
                                                                        usd("199.9996")))
            break
    assert v.ex.audit().ok


MOVES = st.lists(st.tuples(st.sampled_from([BTC, ETH]), st.integers(-40, 40)), min_size=5,
                 max_size=40)


@settings(max_examples=60, deadline=None)
@given(moves=MOVES, passing=st.booleans(), cash=st.lists(st.integers(300, 3_000), min_size=4,
                                                          max_size=4))
def test_the_breach_is_exactly_the_plain_rule_never_early_never_late(moves, passing, cash):
    """Differential: every LiquidationStarted for maintenance shows equity < maintenance
    ("passing") or <= ("reaching"), and after every command no account with positions satisfies
    that rule unliquidated: the C breach index keys the shifted boundary exactly."""
    v = Venue(margin={"maintenance_trigger_at": "passing" if passing else "reaching"},
              maker_fee=0, taker_fee=0)
    v.account(B, USD=usd(10_000_000))
    v.submit(m.FundInsurance(asset="USD", amount=usd(1_000_000)))
    prices = {BTC: 600000, ETH: 300000}
    for symbol, price in prices.items():
        v.price(symbol, price)
        v.order(B, symbol, Side.BUY, 100_000, price - 1000)    # depth for the liquidations
        v.order(B, symbol, Side.SELL, 100_000, price + 1000)
    traders = [10, 11, 12, 13]
    for k, (trader, amount) in enumerate(zip(traders, cash)):
        v.account(trader, USD=usd(amount))
        symbol = (BTC, ETH)[k % 2]
        side = (Side.BUY, Side.SELL)[k // 2]
        # 18 x the cash at 20x (a lot is worth 60 USD of BTC, 30 of ETH), taken from B's quotes
        qty = amount * 18 // (60 if symbol == BTC else 30)
        v.order(trader, symbol, side, qty, prices[symbol] + (1000 if side == Side.BUY else -1000),
                tif=m.TimeInForce.IOC)

    def in_breach(view) -> bool:
        return view.maintenance_margin > 0 and (view.equity < view.maintenance_margin if passing
                                                else view.equity <= view.maintenance_margin)

    for symbol, ticks in moves:
        prices[symbol] = max(1000, prices[symbol] + ticks * 400)
        events = v.ex.submit(m.SetIndexPrice(source="x", symbol=symbol, price=prices[symbol]))
        for e in of(events, m.LiquidationStarted):
            if e.reason == LiquidationReason.MAINTENANCE:
                assert (e.equity < e.maintenance_margin) if passing \
                    else (e.equity <= e.maintenance_margin)
        for trader in traders:
            assert not in_breach(v.view(trader)), (trader, v.view(trader))
        assert v.ex.audit().ok


# ---- config --------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [{"loan_liquidation": "sell_all"}, {"trigger_at": "touching"},
                                    {"maintenance_trigger_at": "at"},
                                    {"loan_liquidation_fee": RATE_SCALE},
                                    {"auto_exchange_discount": -1},
                                    {"auto_exchange_threshold": Decimal("1")}])
def test_bad_margin_rules_are_refused(change):
    with pytest.raises(ValueError):
        MarginSpec(**change)


def test_bad_sell_order_rules_are_refused():
    spec = default_config().instruments[BTC]
    for change in ({"sell_order_margin": "mark"}, {"assuming_price_buffer": RATE_SCALE}):
        with pytest.raises(ValueError):
            type(spec)(**{**{f: getattr(spec, f) for f in spec.__struct_fields__}, **change})


def test_the_new_rules_leave_the_digest_alone_at_their_defaults_and_count_away_from_them():
    cfg = default_config()
    assert "loan_liquidation" not in digest_form(cfg.margin)
    assert "sell_order_margin" not in digest_form(cfg.instruments[BTC])
    changed = Venue(margin={"multi_assets": True}).cfg
    assert digest_form(changed.margin)["multi_assets"] is True


# ---- property: the rules never break conservation -----------------------------------------------

SYMBOLS = st.sampled_from([BTC, ETH])
STEP = st.one_of(
    st.tuples(st.just("price"), SYMBOLS, st.sampled_from([-30, -15, -5, -1, 1, 5, 15, 30])),
    st.tuples(st.just("open"), SYMBOLS, st.sampled_from([Side.BUY, Side.SELL]),
              st.sampled_from([50, 200, 1000])),
    st.tuples(st.just("close"), SYMBOLS),
    # a position opened, the price moved, the position closed: realised PnL
    st.tuples(st.just("round"), SYMBOLS, st.sampled_from([Side.BUY, Side.SELL]),
              st.sampled_from([200, 1000]), st.sampled_from([-20, -10, 10, 20])),
    st.tuples(st.just("sell"), SYMBOLS, st.integers(-200, 200), st.integers(1, 400)),
    st.tuples(st.just("borrow"), st.sampled_from([1_000, 10_000, 19_000])),
    st.tuples(st.just("clock"), st.integers(1, 4)),
)


def unrolled(step: tuple) -> list[tuple]:
    """A "round" as its three steps: open, move the price, close."""
    if step[0] != "round":
        return [step]
    return [("open",) + step[1:4], ("price", step[1], step[4]), ("close", step[1])]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=8, max_size=30), reaching=st.booleans(),
       fee=st.integers(0, 5_000_000))
def test_every_rule_on_keeps_money_conserved_after_every_step(steps, reaching, fee):
    v = Venue(margin={"multi_assets": True, "auto_exchange_threshold": Decimal("-500"),
                      "loan_liquidation": "repay_in_full", "loan_liquidation_fee": fee,
                      "trigger_at": "reaching" if reaching else "passing"},
              sell_order_margin="assuming_price")
    v.account(A, BTC=sats(1), ETH=sats(10))
    v.account(B, USD=usd(500_000))
    v.account(C, BTC=sats("0.5"), USD=usd(2_000))
    v.submit(m.FundInsurance(asset="USD", amount=usd(1_000)))
    prices = {BTC: 600000, ETH: 300000}
    for symbol, price in prices.items():
        v.price(symbol, price)
    hour = 3_600_000_000_000
    ts = 0
    for step in [part for given_step in steps for part in unrolled(given_step)]:
        kind = step[0]
        if kind == "price":       # a move of step[2] percent
            prices[step[1]] = max(1000, prices[step[1]] * (100 + step[2]) // 100)
            cmds = [m.SetIndexPrice(source="x", symbol=step[1], price=prices[step[1]], ts=ts)]
        elif kind in ("open", "close"):     # A trades with B at the index: "close" flattens A
            symbol = step[1]
            if kind == "open":
                side, qty = step[2], step[3]
            else:
                size = v.position(A, symbol).size if v.position(A, symbol) else 0
                side, qty = (Side.SELL if size > 0 else Side.BUY), abs(size)
            if not qty:
                continue
            cmds = [m.PlaceOrder(account=B, symbol=symbol, side=Side(1 - side), qty=qty,
                                 price=prices[symbol], ts=ts),
                    m.PlaceOrder(account=A, symbol=symbol, side=side, qty=qty,
                                 price=prices[symbol], tif=m.TimeInForce.IOC, ts=ts)]
        elif kind == "sell":
            _, symbol, offset, qty = step
            cmds = [m.PlaceOrder(account=C, symbol=symbol, side=Side.SELL, qty=qty,
                                 price=prices[symbol] + offset * 10, ts=ts)]
        elif kind == "borrow":
            cmds = [m.Borrow(account=C, asset="USD", amount=usd(step[1]), ts=ts)]
        else:
            ts += step[1] * hour
            cmds = [m.AdvanceClock(ts=ts)]
        for cmd in cmds:
            events = v.ex.submit(cmd)
            assert v.ex.audit().ok, (cmd, events)
            # the auto-exchange brought every balance it touched back to zero or above, unless it
            # sold all the collateral it could price (not on a stale index; then stage 6 may have
            # liquidated the account)
            liquidated = {e.account for e in of(events, m.LiquidationStarted)}
            for account in {e.account for e in of(events, m.CollateralExchanged)} - liquidated:
                balances = v.ex.account(account).balances
                assert balances["USD"] >= 0 or all(
                    balances[asset] == 0 or v.ex.components["pricing"].is_stale(symbol)
                    for asset, symbol in (("BTC", BTC), ("ETH", ETH)))
    assert v.ex.audit().ok
