"""Margin scenarios with figures computed by hand (in the comments), on the default tiers, fees
(maker 0.02%, taker 0.05%), haircuts (5%), leverage (20x) and loan terms (max LTV 65%, warning 75%,
liquidation 83%, 10% a year accrued hourly, 2% conversion penalty). One tick x one lot is 0.0001 USD
(100 minor units) in both perps; the mark equals the index (see margin_venue)."""

from perpcore import messages as m
from perpcore.messages import RejectCode, Side

from margin_venue import BTC, ETH, Venue, of, sats, usd

TRADER, MAKER = 1, 2


def long_btc_short_eth():
    """The trader deposits 1 BTC only, buys 0.5 BTC-PERP at 60,000 and sells 5 ETH-PERP at 3,000,
    taking both from the maker."""
    v = Venue()
    v.account(TRADER, BTC=sats(1))
    v.account(MAKER, USD=usd(1_000_000))
    v.price(BTC, 600000)
    v.price(ETH, 300000)
    v.trade(MAKER, TRADER, BTC, Side.BUY, 500, 600000)
    v.trade(MAKER, TRADER, ETH, Side.SELL, 500, 300000)
    return v


def test_long_btc_short_eth_on_btc_collateral():
    v = long_btc_short_eth()
    # fees: BTC 30,000 x 0.05% = 15, ETH 15,000 x 0.05% = 7.5 (the maker pays 6 + 3)
    assert v.view(TRADER).balances == {"USD": usd(-22.5), "BTC": sats(1), "ETH": 0}
    assert v.view(MAKER).balances["USD"] == usd(1_000_000 - 9)
    assert v.ex.audit().check()["USD"].fee_account == usd(31.5)

    v.price(BTC, 620000)
    v.price(ETH, 310000)
    a = v.view(TRADER)
    # collateral 1 BTC x 62,000 x 95% = 58,900; unrealised +1,000 on BTC, -500 on ETH
    assert (a.collateral_value, a.collateral_market_value) == (usd(58_900), usd(62_000))
    assert a.unrealised_pnl == usd(500)
    assert a.equity == usd(-22.5 + 58_900 + 500)                   # 59,377.5
    # initial: 31,000 / 20 + 15,500 / 20; maintenance: 31,000 x 0.4% + 15,500 x 0.5%
    assert a.initial_margin == usd(1550 + 775)
    assert a.maintenance_margin == usd(124 + 77.5)
    assert a.margin_ratio == 339355                 # 201.5 / 59,377.5 = 0.33935...%, rounded up
    btc, eth = a.positions
    assert (btc.symbol, btc.size, btc.entry_value, btc.unrealised_pnl) == (BTC, 500, 300_000_000,
                                                                          usd(1000))
    assert (eth.symbol, eth.size, eth.entry_value, eth.unrealised_pnl) == (ETH, -500, 150_000_000,
                                                                          usd(-500))
    # BTC collateral held at its index: no BTC mark liquidates the long
    assert btc.liquidation_price is None and btc.bankruptcy_price is None
    # ETH at q: equity 74,877.5 - 5q; maintenance 124 + (5q x 0.65% - 75) in tier 2 (5q > 50,000):
    # equal at q = 74,828.5 / 5.0325 = 14,869.0512..., so the first tick liquidated is 14,869.06
    assert eth.liquidation_price == 1486906
    # equity zero at 74,877.5 / 5 = 14,975.5
    assert eth.bankruptcy_price == 1497550


def test_the_liquidation_price_is_where_the_account_becomes_liquidatable():
    v = long_btc_short_eth()
    v.price(BTC, 620000)
    v.price(ETH, 310000)
    margin = v.ex.margin
    # the margin rule at hypothetical ETH marks (the liquidation engine would act on real ones)
    eth = margin.symbols[ETH].prices        # the pricing state the margin layer reads
    eth.mark = 1486905
    assert not margin.liquidatable(TRADER)
    eth.mark = 1486906
    f = margin.figures(TRADER)
    # equity 74,877.5 - 74,345.30 = 532.20; maintenance 124 + 483.24445 - 75 = 532.24445
    assert (f["equity"], f["maintenance_margin"]) == (usd(532.2), usd(532.24445))
    assert margin.liquidatable(TRADER)


def test_a_withdrawal_that_would_break_initial_margin_is_refused():
    v = long_btc_short_eth()
    v.price(BTC, 620000)
    v.price(ETH, 310000)
    # headroom: equity 59,377.5 less unrealised profit 500 less initial 2,325 = 56,552.5; the BTC
    # kept must be worth 58,900 - 56,552.5 = 2,347.5 after the haircut, at 589 micro-USD a satoshi:
    # 3,985,569 satoshi (rounded up), so 96,014,431 may leave
    assert v.view(TRADER).available == {"USD": 0, "BTC": 96_014_431, "ETH": 0}
    assert v.refuse(m.Withdraw(account=TRADER, asset="BTC", amount=96_014_432)) \
        == RejectCode.WITHDRAWAL_BREAKS_MARGIN
    assert v.refuse(m.Withdraw(account=TRADER, asset="USD", amount=1)) \
        == RejectCode.INSUFFICIENT_BALANCE
    assert v.refuse(m.Withdraw(account=TRADER, asset="BTC", amount=sats(2))) \
        == RejectCode.INSUFFICIENT_BALANCE
    events = v.submit(m.Withdraw(account=TRADER, asset="BTC", amount=96_014_431, transfer_id=7))
    assert events == [m.Withdrawn(v.ex.seq, 0, TRADER, "BTC", 96_014_431, 7, 3_985_569)]
    a = v.view(TRADER)
    # 3,985,569 satoshi x 589 = 2,347.500141; equity without the profit: 2,325.000141, just
    # above the initial margin
    assert a.collateral_value == 2_347_500141
    assert a.equity - a.unrealised_pnl - a.initial_margin == 141
    assert a.available["BTC"] == 0
    assert v.ex.audit().check()["BTC"].withdrawals == 96_014_431


def test_tier_boundaries_of_maintenance_and_leverage():
    v = Venue()
    v.account(TRADER, USD=usd(100_000))
    v.account(MAKER, USD=usd(10_000_000))
    v.price(BTC, 625000)
    assert v.refuse(m.SetLeverage(account=TRADER, symbol=BTC, leverage=126)) \
        == RejectCode.LEVERAGE_NOT_ALLOWED
    events = v.submit(m.SetLeverage(account=TRADER, symbol=BTC, leverage=125))
    assert events == [m.LeverageSet(v.ex.seq, 0, TRADER, BTC, 125, usd(50_000))]
    # at 125x the position may reach the first tier's 50,000: 0.8 BTC at 62,500 exactly
    v.order(MAKER, BTC, Side.SELL, 1000, 625000)
    assert v.refuse(m.PlaceOrder(account=TRADER, symbol=BTC, side=Side.BUY, qty=801,
                                 price=625000)) == RejectCode.RISK_LIMIT_EXCEEDED
    v.order(TRADER, BTC, Side.BUY, 800, 625000)
    p = v.position(TRADER, BTC)
    # tier 1: 50,000 x 0.4% = 200; initial 50,000 / 125 = 400
    assert (p.notional, p.maintenance_margin, p.initial_margin) == (usd(50_000), usd(200), usd(400))
    # one tick up, the notional enters tier 2: 50,000.08 x 0.5% - 50 = 200.0004 (continuous)
    v.price(BTC, 625001)
    p = v.position(TRADER, BTC)
    assert (p.notional, p.maintenance_margin) == (usd(50_000.08), usd(200.0004))
    # the position has outgrown 125x: going back to it is refused; 100x allows 600,000
    v.submit(m.SetLeverage(account=TRADER, symbol=BTC, leverage=100))
    assert v.refuse(m.SetLeverage(account=TRADER, symbol=BTC, leverage=125)) \
        == RejectCode.LEVERAGE_NOT_ALLOWED
    assert v.position(TRADER, BTC).initial_margin == usd(500.0008)      # 50,000.08 / 100
    # at 600,000 tier 2 gives 600,000 x 0.5% - 50 = 2,950; one micro-dollar more is tier 3 at 1%
    # less its amount 50 + 600,000 x 0.5% = 3,050: 6,000.00000001 - 3,050, rounded up
    tiers = v.ex.margin.symbols[BTC].tiers
    assert tiers.maintenance(usd(600_000)) == usd(2950)
    assert tiers.maintenance(usd(600_000) + 1) == usd(2950.000001)
    assert [tiers.max_notional(lev) for lev in (125, 101, 100, 51, 50, 21, 20, 11, 10, 1)] == \
        [usd(x) for x in (50_000, 50_000, 600_000, 600_000, 3_000_000, 3_000_000, 12_000_000,
                          12_000_000, 50_000_000, 50_000_000)]


def test_lowering_leverage_needs_the_margin_for_it():
    v = Venue()
    v.account(TRADER, USD=usd(1_000))
    v.account(MAKER, USD=usd(10_000_000))
    v.price(BTC, 600000)
    v.trade(MAKER, TRADER, BTC, Side.BUY, 300, 600000)            # 18,000 notional, fee 9
    # equity 991: 20x needs 900, 10x would need 1,800
    assert v.view(TRADER).initial_margin == usd(900)
    assert v.refuse(m.SetLeverage(account=TRADER, symbol=BTC, leverage=10)) \
        == RejectCode.INSUFFICIENT_MARGIN
    v.submit(m.SetLeverage(account=TRADER, symbol=BTC, leverage=25))
    assert v.view(TRADER).initial_margin == usd(720)


def test_open_orders_reserve_margin_netted_by_side_and_position():
    v = Venue()
    v.account(TRADER, USD=usd(300))
    v.account(MAKER, USD=usd(10_000_000))
    v.price(BTC, 600000)
    # a bid of 0.1 at 59,000 reserves 5,900 / 20 = 295
    v.order(TRADER, BTC, Side.BUY, 100, 590000)
    assert v.view(TRADER).initial_margin == usd(295)
    # a second bid of 0.002 would need 295 + 5.9 > 300
    assert v.refuse(m.PlaceOrder(account=TRADER, symbol=BTC, side=Side.BUY, qty=2,
                                 price=590000)) == RejectCode.INSUFFICIENT_MARGIN
    # an offer of 0.1 at 60,000 is netted against the bid: max(295, 300) = 300, not 595
    v.order(TRADER, BTC, Side.SELL, 100, 600000)
    assert v.view(TRADER).initial_margin == usd(300)
    assert v.position(TRADER, BTC).order_margin == usd(300)
    # below the mark an offer also reserves its immediate loss: 0.1 x 500 = 50 on top of 297.5,
    # 347.5 > 300
    v.submit(m.CancelAll(account=TRADER, symbol=BTC))
    assert v.view(TRADER).initial_margin == 0
    assert v.refuse(m.PlaceOrder(account=TRADER, symbol=BTC, side=Side.SELL, qty=100,
                                 price=595000)) == RejectCode.INSUFFICIENT_MARGIN


def test_order_margin_frees_reducing_orders_and_charges_open_loss():
    v = Venue()
    v.account(TRADER, USD=usd(10_000))
    v.account(MAKER, USD=usd(10_000_000))
    v.price(BTC, 600000)
    v.trade(MAKER, TRADER, BTC, Side.BUY, 100, 600000)            # long 0.1
    base = v.view(TRADER).initial_margin                          # 6,000 / 20 = 300
    assert base == usd(300)
    # an offer of 0.1 only reduces: free
    v.order(TRADER, BTC, Side.SELL, 100, 610000)
    assert v.view(TRADER).initial_margin == base
    # another 0.05 offer goes short by 0.05: 0.15 x 61,000 x (0.05 / 0.15) / 20 = 152.5
    v.order(TRADER, BTC, Side.SELL, 50, 610000)
    assert v.view(TRADER).initial_margin == base + usd(152.5)
    # a bid above the mark pays its immediate loss too, and the bid side now outweighs the offers
    v.order(TRADER, BTC, Side.BUY, 100, 605000)
    # 0.1 x 60,500 / 20 = 302.5 + loss 0.1 x 500 = 50: 352.5 > 152.5
    assert v.view(TRADER).initial_margin == base + usd(352.5)
    assert v.position(TRADER, BTC).open_buy_qty == 100


def test_a_reducing_order_priced_past_the_mark_must_be_carried():
    """Closing orders are free of notional margin but not of their loss against the mark: a
    trader who cannot carry that loss is refused, unless the order is reduce-only."""
    v = Venue()
    v.account(TRADER, USD=usd(400))
    v.account(MAKER, USD=usd(10_000_000))
    v.price(BTC, 600000)
    v.trade(MAKER, TRADER, BTC, Side.BUY, 100, 600000)            # long 0.1, fee 3
    a = v.view(TRADER)
    # equity 400 - 3 = 397; initial 6,000 / 20 = 300: 97 to spare
    assert (a.equity, a.initial_margin) == (usd(397), usd(300))
    # an offer of 0.1 at 50,000 only reduces, but would lose 0.1 x 10,000 = 1,000 against the mark
    assert v.refuse(m.PlaceOrder(account=TRADER, symbol=BTC, side=Side.SELL, qty=100,
                                 price=500000)) == RejectCode.INSUFFICIENT_MARGIN
    # at 59,100 it loses 0.1 x 900 = 90 <= 97: carried
    v.order(TRADER, BTC, Side.SELL, 100, 591000)
    assert v.view(TRADER).initial_margin == usd(390)
    v.submit(m.CancelAll(account=TRADER, symbol=BTC))
    # reduce-only, the same far offer is the way out: accepted whatever it adds
    v.order(TRADER, BTC, Side.SELL, 100, 500000, reduce_only=True)
    assert v.view(TRADER).initial_margin == usd(1_300)


def test_reduce_only_orders_never_increase_a_position():
    v = Venue()
    v.account(TRADER, USD=usd(10_000))
    v.account(MAKER, USD=usd(10_000_000))
    v.price(BTC, 600000)
    assert v.refuse(m.PlaceOrder(account=TRADER, symbol=BTC, side=Side.SELL, qty=100,
                                 price=610000, reduce_only=True)) \
        == RejectCode.REDUCE_ONLY_WOULD_INCREASE
    v.trade(MAKER, TRADER, BTC, Side.BUY, 100, 600000)            # long 0.1
    assert v.refuse(m.PlaceOrder(account=TRADER, symbol=BTC, side=Side.SELL, qty=101,
                                 price=610000, reduce_only=True)) \
        == RejectCode.REDUCE_ONLY_WOULD_INCREASE
    assert v.refuse(m.PlaceOrder(account=TRADER, symbol=BTC, side=Side.BUY, qty=10,
                                 price=590000, reduce_only=True)) \
        == RejectCode.REDUCE_ONLY_WOULD_INCREASE
    ro = v.order(TRADER, BTC, Side.SELL, 60, 620000, reduce_only=True)[0].order_id
    # a plain offer of 0.07 leaves the reduce-only order room for only 0.03: it is cut to that
    events = v.order(TRADER, BTC, Side.SELL, 70, 630000)
    assert of(events, m.OrderAmended) == [m.OrderAmended(v.ex.seq, 0, TRADER, BTC, ro, 620000, 30,
                                                         True)]
    # the position closes by another order: the reduce-only order is cancelled, the plain stays
    v.order(MAKER, BTC, Side.BUY, 100, 590000)
    events = v.order(TRADER, BTC, Side.SELL, 100, 590000, tif=m.TimeInForce.IOC)
    assert of(events, m.OrderCancelled) == [m.OrderCancelled(v.ex.seq, 0, TRADER, BTC, ro, 30,
                                                             m.CancelReason.REDUCE_ONLY)]
    p = v.position(TRADER, BTC)
    assert (p.size, p.open_sell_qty) == (0, 70)
    assert v.ex.book(BTC).order(ro) is None


def test_a_non_professional_account_may_not_trade_perpetuals():
    v = Venue()
    v.account(3, professional=False, USD=usd(100_000))
    assert v.refuse(m.PlaceOrder(account=3, symbol=BTC, side=Side.BUY, qty=100, price=600000)) \
        == RejectCode.NOT_ELIGIBLE
    # where an instrument is open to them, retail leverage is capped at 10x
    open_venue = Venue(professional_only=False)
    open_venue.account(3, professional=False, USD=usd(100_000))
    assert open_venue.refuse(m.SetLeverage(account=3, symbol=BTC, leverage=11)) \
        == RejectCode.LEVERAGE_NOT_ALLOWED
    open_venue.submit(m.SetLeverage(account=3, symbol=BTC, leverage=10))
    open_venue.order(3, BTC, Side.BUY, 100, 600000)
    assert open_venue.view(3).initial_margin == usd(600)          # 6,000 / 10


def test_realised_pnl_fees_and_flips_settle_exactly():
    v = Venue()
    v.account(TRADER, USD=usd(10_000))
    v.account(MAKER, USD=usd(10_000_000))
    v.price(BTC, 600000)
    v.trade(MAKER, TRADER, BTC, Side.BUY, 3, 600000)              # 0.003 at 60,000
    v.trade(MAKER, TRADER, BTC, Side.BUY, 3, 600001)              # 0.003 at 60,000.1
    # entry value 3 x 600000 + 3 x 600001 = 3,600,003 ticks x lots
    assert v.position(TRADER, BTC).entry_value == 3_600_003
    # sell 0.001 at 61,000: cost removed 3,600,003 / 6 = 600,000.5 rounded up -> 600,001, so
    # 10,000 - 1 = 9,999 ticks x lots are realised now (0.9999 USD), the half tick later
    events = v.trade(MAKER, TRADER, BTC, Side.SELL, 1, 610000)
    [pc] = [e for e in of(events, m.PositionChanged) if e.account == TRADER]
    # taker fee: 61 x 0.05% = 0.0305
    assert (pc.size, pc.entry_value, pc.realised_pnl, pc.fee) == (5, 3_000_002, 999_900, 30_500)
    # sell 0.008 at 59,000: closes 0.005 (realised 5 x 590000 - 3,000,002 = -50,002 -> -5.0002)
    # and opens a 0.003 short at 59,000
    events = v.trade(MAKER, TRADER, BTC, Side.SELL, 8, 590000)
    [pc] = [e for e in of(events, m.PositionChanged) if e.account == TRADER]
    assert (pc.size, pc.entry_value, pc.realised_pnl) == (-3, 1_770_000, -5_000_200)
    # over both closes 9,999 - 50,002 = -40,003: exactly the trades' cash flow less the entry value
    # of the short still open
    flows = -3 * 600000 - 3 * 600001 + 610000 + 8 * 590000
    assert (999_900 - 5_000_200) == (flows - 1_770_000) * 100
    assert v.ex.audit().ok


def test_a_maker_rebate_is_paid_by_the_fee_account():
    v = Venue(maker_fee=-10_000)                    # -0.01%
    v.account(TRADER, USD=usd(10_000))
    v.account(MAKER, USD=usd(10_000))
    v.price(BTC, 600000)
    v.trade(MAKER, TRADER, BTC, Side.BUY, 100, 600000)
    # 6,000 notional: the maker receives 0.6, the taker pays 3
    assert v.view(MAKER).balances["USD"] == usd(10_000.6)
    assert v.view(TRADER).balances["USD"] == usd(9_997)
    assert v.ex.audit().check()["USD"].fee_account == usd(2.4)
