"""Liquidation scenarios with hand-computed figures (USD; BTC-PERP: tick 0.1 USD, lot 0.001 BTC,
so one tick x lot is 0.0001 USD = 100 minor units; taker fee 0.05%, maker 0.02%; BTC tiers 0.4% to
50k, 0.5% to 600k less 50 USD, 1% to 3M less 3,050 USD; the mark is the index)."""
from perpcore import messages as m
from perpcore.messages import FundReason, LiquidationReason, Side

from liquidation_venue import BTC, Venue, of, usd

TRADER, MAKER, BIDDER = 1, 2, 3


def test_partial_liquidation_steps_down_one_tier():
    v = Venue()
    v.account(TRADER, 40_000)
    v.account(MAKER, 1_000_000)
    v.account(BIDDER, 1_000_000)
    v.price(BTC, 650000)
    v.trade(MAKER, TRADER, BTC, Side.BUY, 10_000, 650000)    # long 10 BTC at 65,000
    # cash 40,000 - 325 taker fee = 39,675; equity(p) = 39,675 + 10 (p - 65,000)
    # maintenance in the 1% tier: 0.1 p - 3,050; equal at 9.9 p = 607,275: p = 61,340.90...
    pos = v.ex.account(TRADER).positions[0]
    assert pos.liquidation_price == 613409
    assert pos.bankruptcy_price == 610325                     # 39,675 = 10 (65,000 - 61,032.5)
    v.order(BIDDER, BTC, Side.BUY, 500, 613000)               # 0.5 BTC bid at 61,300
    assert not of(v.price(BTC, 613410), m.LiquidationStarted)
    events = v.price(BTC, 613409)
    # equity 39,675 - 36,591 = 3,084 <= maintenance 6,134.09 - 3,050 = 3,084.09
    assert of(events, m.LiquidationStarted) == [m.LiquidationStarted(
        events[0].seq, 0, TRADER, usd(3084), usd("3084.09"), LiquidationReason.MAINTENANCE)]
    # 613,409 USD is in the 1% tier: down to 600,000, i.e. floor(600,000 / 61.3409) = 9,781 lots
    # kept, 219 sold at 61,300; the surplus over bankruptcy, (61,300 - 61,032.5) x 0.219 =
    # 58.5825, is below 1% of 13,424.70: all of it goes to the fund
    [step] = of(events, m.PositionLiquidated)
    assert (step.qty, step.size, step.book_qty, step.book_value) == (219, 9781, 219, 613000 * 219)
    assert (step.fund_qty, step.adl_qty) == (0, 0)
    assert step.fee == step.fund_delta == usd("58.5825")
    # the trader realised (61,300 - 65,000) x 0.219 = -810.30 and paid the fee
    assert v.cash(TRADER) == usd(39_675) - usd("810.3") - usd("58.5825")
    account = v.ex.account(TRADER)
    # equity 38,806.1175 - 9.781 x 3,659.1 = 3,016.4604 above the 0.5% tier's 2,999.877 - 50
    assert account.equity == usd("3016.4604") and account.maintenance_margin == 2_949_876_715
    assert not account.liquidatable
    assert v.ex.insurance_fund("USD") == usd("58.5825")
    assert v.ex.audit().ok


def test_takeover_with_a_surplus_beyond_the_fee():
    """The whole position (first tier) is closed in the book better than bankruptcy: the fund
    takes the fee, capped at 0.1% of the notional here, and the trader keeps the rest."""
    v = Venue(liquidation_fee=100_000)                         # 0.1%
    v.account(TRADER, 2_500)
    v.account(MAKER, 1_000_000)
    v.account(BIDDER, 1_000_000)
    v.price(BTC, 650000)
    v.trade(MAKER, TRADER, BTC, Side.BUY, 500, 650000)       # long 0.5 BTC; cash 2,483.75
    # bankruptcy: 2,483.75 = 0.5 (65,000 - p), p = 60,032.5; maintenance 0.4% of 0.5 p:
    # 2,483.75 + 0.5 p - 32,500 <= 0.002 p  <=>  p <= 60,273.59...
    pos = v.ex.account(TRADER).positions[0]
    assert (pos.liquidation_price, pos.bankruptcy_price) == (602735, 600325)
    v.order(BIDDER, BTC, Side.BUY, 200, 606000)
    v.order(BIDDER, BTC, Side.BUY, 1000, 602000)
    assert not of(v.price(BTC, 602736), m.LiquidationStarted)
    events = v.price(BTC, 602735)
    fills = of(events, m.OrderFilled)
    assert [(f.price, f.qty) for f in fills] == [(606000, 200), (602000, 300)]
    # surplus (60,600 - 60,032.5) x 0.2 = 113.50 capped at 0.1% of 12,120 = 12.12;
    # (60,200 - 60,032.5) x 0.3 = 50.25 capped at 0.1% of 18,060 = 18.06
    [step] = of(events, m.PositionLiquidated)
    assert step.fee == usd("30.18") and step.size == 0 and step.book_qty == 500
    [change] = of(events, m.InsuranceFundChanged)
    assert (change.delta, change.reason) == (usd("30.18"), FundReason.LIQUIDATION_FEE)
    # the trader keeps 163.75 - 30.18 of the surplus: at bankruptcy it would have had nothing
    assert v.cash(TRADER) == usd("133.57")
    assert v.ex.insurance_fund("USD") == usd("30.18")
    assert v.ex.audit().ok


def test_loss_covered_by_the_insurance_fund():
    v = Venue()
    v.account(TRADER, 10_000)
    v.account(MAKER, 1_000_000)
    v.account(BIDDER, 1_000_000)
    v.fund(1_000)
    v.price(BTC, 650000)
    v.trade(MAKER, TRADER, BTC, Side.BUY, 1000, 650000)      # long 1 BTC; cash 9,967.5
    assert v.ex.account(TRADER).positions[0].bankruptcy_price == 550325
    v.order(BIDDER, BTC, Side.BUY, 1000, 545000)             # the only bid: 54,500
    events = v.price(BTC, 548000)                             # a gap through bankruptcy
    # equity 9,967.5 - 10,200 = -232.5; maintenance 0.5% of 54,800 - 50 = 224
    [start] = of(events, m.LiquidationStarted)
    assert (start.equity, start.maintenance_margin) == (usd("-232.5"), usd(224))
    # nothing bids at 55,032.5 or better: the fund takes the lot over and sells it, as low as
    # it can cover (1,000 USD on 1 BTC: 55,032.5 - 1,000 = 54,032.5), all of it at 54,500
    [order, taken] = of(events, m.OrderAccepted)
    assert order.price == 550325 and taken.price == 540325
    [step] = of(events, m.PositionLiquidated)
    assert (step.book_qty, step.fund_qty, step.fund_value, step.adl_qty) == (0, 1000, 545_000_000, 0)
    # the fund pays (55,032.5 - 54,500) x 1 = 532.50: the trader closes at bankruptcy
    assert step.fee == 0 and step.fund_delta == -usd("532.5")
    [change] = of(events, m.InsuranceFundChanged)
    assert (change.delta, change.balance, change.reason) == \
        (-usd("532.5"), usd("467.5"), FundReason.LOSS_COVERED)
    assert v.cash(TRADER) == 0 and v.ex.account(TRADER).equity == 0
    assert v.ex.insurance_fund("USD") == usd("467.5")
    assert [e.delta for e in v.ex.liquidation.fund_history("USD")] == [usd(1000), -usd("532.5")]
    assert v.ex.audit().ok


def test_auto_deleveraging_closes_the_top_ranked_shorts():
    v = Venue()
    S1, S2, S3, L1, L2 = 11, 12, 13, 21, 22
    v.account(TRADER, 10_000)
    v.account(S1, 5_000)
    v.account(S2, 2_000)
    v.account(S3, 20_000)
    v.account(L1, 100_000)
    v.account(L2, 100_000)
    v.price(BTC, 650000)
    v.trade(S1, L1, BTC, Side.BUY, 600, 660000)              # S1 short 0.6 at 66,000: cash 4,992.08
    v.trade(S2, L2, BTC, Side.BUY, 500, 655000)              # S2 short 0.5 at 65,500: cash 1,993.45
    v.trade(S3, TRADER, BTC, Side.BUY, 1000, 650000)         # S3 short 1 at 65,000: cash 19,987
    assert v.cash(S1) == usd("4992.08") and v.cash(S2) == usd("1993.45")
    # no fund, no bids: the trader's long 1 BTC, bankrupt at 55,032.5, is deleveraged.
    # At a mark of 54,800 the shorts rank by PnL% x |mark value| / (mark value - bankrupt value):
    #   S2: 10,700/65,500 = 0.16336 x 54,800 / (69,486.9 - 54,800) = 3.7312 -> 0.6095
    #   S1: 11,200/66,000 = 0.16970 x 54,800 / (74,320.1 - 54,800) = 2.8074 -> 0.4764
    #   S3: 10,200/65,000 = 0.15692 x 54,800 / (84,987 - 54,800)   = 1.8154 -> 0.2849
    events = v.price(BTC, 548000)
    deleveraged = of(events, m.AutoDeleveraged)
    assert [(e.account, e.qty, e.price, e.size, e.liquidated_account) for e in deleveraged] == \
        [(S2, 500, 550325, 0, TRADER), (S1, 500, 550325, -100, TRADER)]
    [step] = of(events, m.PositionLiquidated)
    assert (step.adl_qty, step.book_qty, step.fund_qty, step.fee, step.fund_delta) == \
        (1000, 0, 0, 0, 0)
    # S2 realises 0.5 x (65,500 - 55,032.5) = 5,233.75; S1 0.5 x (66,000 - 55,032.5) = 5,483.75
    assert v.cash(S2) == usd("1993.45") + usd("5233.75")
    assert v.cash(S1) == usd("4992.08") + usd("5483.75")
    assert v.size(S3, BTC) == -1000
    # the trader closed at bankruptcy: nothing left, nothing owed, no fund touched
    assert v.cash(TRADER) == 0 and v.size(TRADER, BTC) == 0
    assert v.ex.insurance_fund("USD") == 0 and not of(events, m.SocializedLoss)
    # the remaining shorts' lights: S3 (0.2849) ahead of S1 (PnL 1,120/6,600 x 54,800 /
    # (170,758.3 - 54,800) = 0.0802)
    liq = v.ex.liquidation
    assert liq.adl_queue(BTC, -1) == [S3, S1]
    assert (liq.adl_indicator(S3, BTC), liq.adl_indicator(S1, BTC)) == (5, 3)
    assert liq.adl_indicator(TRADER, BTC) is None
    assert v.ex.audit().ok


def test_collateral_sale_brings_the_loan_back_to_the_maximum_ltv():
    v = Venue()
    D = 31
    v.account(D, BTC=100_000_000)                             # 1 BTC of collateral
    v.price(BTC, 650000)
    v.submit(m.Borrow(account=D, asset="USD", amount=usd(40_000)))   # LTV 40,000/65,000 = 61.5%
    v.submit(m.Withdraw(account=D, asset="USD", amount=usd(40_000)))
    events = v.price(BTC, 480000)                             # LTV 40,000/48,000 = 83.3% > 83%
    assert of(events, m.MarginCall)
    [start] = of(events, m.LiquidationStarted)
    assert start.reason == LiquidationReason.LOAN
    # one satoshi is 480 minor units at 48,000 and sells for 470.4 (2% penalty). The least x with
    # (40,000e6 - 470.4 x) <= 65% of 480 (1e8 - x): x >= 8,800e6 / 15,840 = 55,555,555.6
    [sale] = of(events, m.CollateralConverted)
    assert (sale.amount, sale.price) == (55_555_556, 480000)
    assert sale.proceeds == sale.repaid == 26_133_333_542          # floor(55,555,556 x 470.4)
    assert sale.debt == usd(40_000) - 26_133_333_542 == 13_866_666_458
    account = v.ex.account(D)
    assert account.ltv == 65_000_000                               # 13,866.67 / 21,333.33
    # one satoshi less would leave it above: (40,000e6 - 26,133,333,072) > 65% of 44,444,445 x 480
    assert (usd(40_000) - 26_133_333_072) * 100 > 65 * 44_444_445 * 480
    # the penalty, market value 26,666,666,880 less the proceeds, goes to the insurance fund
    [change] = of(events, m.InsuranceFundChanged)
    assert (change.delta, change.reason) == (533_333_338, FundReason.COLLATERAL_PENALTY)
    assert v.ex.insurance_fund("USD") == 533_333_338
    audit = v.ex.audit()
    assert audit.ok and audit["BTC"].platform == 55_555_556
    assert audit["USD"].platform == -26_666_666_880
