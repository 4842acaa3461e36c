"""The liquidation engine's behaviour beyond the hand-computed scenarios: orders cancelled first,
a stale index never liquidates (the account waits for a fresh one), funding that breaches an
account, deficits covered by the fund and socialised beyond it, the breach index looking at nobody
on quiet moves, the fund's history (its deposits: test_insurance), and snapshots."""
import msgspec
import pytest

from perpcore import Exchange
from perpcore import messages as m
from perpcore.liquidation import DOWN, UP, Liquidation
from perpcore.config import HOUR_NS
from perpcore.messages import CancelReason, FundReason, LiquidationReason, Side

from liquidation_venue import BTC, ETH, Venue, of, usd, venue_config

TRADER, MAKER, BIDDER = 1, 2, 3
S = 1_000_000_000


def long_btc(v: Venue, cash=10_000, lots=1000):
    v.account(TRADER, cash)
    v.account(MAKER, 10_000_000)
    v.account(BIDDER, 10_000_000)
    v.price(BTC, 650000)
    v.trade(MAKER, TRADER, BTC, Side.BUY, lots, 650000)


def test_open_orders_are_cancelled_before_anything_is_sold():
    v = Venue()
    long_btc(v)
    v.order(TRADER, BTC, Side.SELL, 100, 700000)              # a resting offer
    v.order(TRADER, ETH, Side.BUY, 100, 300000)               # and a bid in the other book
    v.order(BIDDER, BTC, Side.BUY, 2000, 555000)
    events = v.price(BTC, 552000)
    names = [type(e).__name__ for e in events]
    cancels = of(events, m.OrderCancelled)
    assert [(c.symbol, c.reason) for c in cancels[:2]] == \
        [(BTC, CancelReason.LIQUIDATION), (ETH, CancelReason.LIQUIDATION)]
    assert names.index("OrderCancelled") < names.index("OrderFilled")
    view = v.ex.account(TRADER)
    assert view.positions == () and view.initial_margin == 0
    assert v.ex.audit().ok


def test_a_quiet_move_examines_nobody(monkeypatch):
    v = Venue()
    long_btc(v)
    v.account(4, 50_000)
    v.trade(MAKER, 4, BTC, Side.SELL, 500, 650000)            # a short
    v.price(ETH, 340000)
    v.trade(MAKER, 4, ETH, Side.BUY, 1000, 340000)            # and a long in ETH: budget triggers
    liq = v.ex.liquidation
    # the long: equity 9,967.50 (10,000 less the 32.50 fee), maintenance 0.5% x 65,000 - 50 = 275,
    # slack 9,692.50. At a mark p (ticks) its slack is 9,967.50 + (p - 650,000) / 10 - (0.5% x
    # p / 10 - 50) = 0.0995 p - 54,982.50, half of it (4,846.25) at 60,129.4: the trigger is the
    # highest tick there, 601,294, moved up onto a grid of 1/16-1/8 of the distance to the mark
    # (48,706 ticks: a grid of 4,096), 602,112; it fires early, never late. The spare on the other
    # side as far from the mark: 697,888 onto the grid, 696,320
    assert liq.triggers_of(TRADER) == ((("mark", BTC), DOWN, 602112), (("mark", BTC), UP, 696320))
    # its reserve: the slack a tick inside, at 60,211.3: 5,178.80 - (301.0565 - 50)
    assert liq.reserve(TRADER) == usd("4927.7435")
    examined = []
    monkeypatch.setattr(liq, "_examine",
                        lambda account, keep_earlier=False: examined.append(account))
    v.price(BTC, 640000)
    v.price(ETH, 345000)
    assert examined == []
    v.price(BTC, 602112)
    assert examined == [TRADER]


def funded_long() -> Venue:
    """10 BTC long (liquidated near 61,341) on a venue where longs pay 0.01% per 8 h, with the
    Binance mark median(P1, P2, last trade): a last trade below the index keeps the mark on the
    index (P2) whatever the time to funding."""
    cfg = venue_config()
    v = Venue()
    v.ex = Exchange(msgspec.structs.replace(cfg, instruments={s: msgspec.structs.replace(
        spec, pricing=msgspec.structs.replace(spec.pricing, mark_method="binance",
                                              interest_rate=10_000))
        for s, spec in cfg.instruments.items()}))
    long_btc(v, cash=40_000, lots=10_000)
    v.trade(MAKER, BIDDER, BTC, Side.BUY, 1, 500000)
    return v


def test_a_stale_index_never_liquidates():
    """Funding paid on a stale mark takes the account under maintenance: it waits, and is
    liquidated the moment the index is fresh again (at the same price)."""
    v = funded_long()
    # at the settlement the mark is the index (no time to funding): 5 ticks above liquidation
    # leaves ~4.95 USD of slack, and the long pays 0.01% of ~613,000 = ~61 USD
    price = v.ex.account(TRADER).positions[0].liquidation_price + 5
    v.price(BTC, price)
    assert not v.ex.account(TRADER).liquidatable
    events = v.submit(m.AdvanceClock(ts=8 * HOUR_NS))        # stale after 60 s; then funding
    assert of(events, m.IndexStale) and of(events, m.FundingPaid)
    assert v.ex.account(TRADER).liquidatable
    assert not of(events, m.LiquidationStarted)
    events = v.submit(m.AdvanceClock(ts=8 * HOUR_NS + 10 * S))  # marks may move: still stale
    assert not of(events, m.LiquidationStarted)
    events = v.submit(m.SetIndexPrice(source="x", symbol=BTC, price=price))
    assert [e.account for e in of(events, m.LiquidationStarted)] == [TRADER]
    assert not v.ex.account(TRADER).liquidatable
    assert v.ex.audit().ok


def test_funding_that_breaches_an_account_liquidates_it_at_once():
    v = funded_long()
    price = v.ex.account(TRADER).positions[0].liquidation_price + 5
    v.submit(m.SetIndexPrice(source="x", symbol=BTC, price=price, ts=8 * HOUR_NS - 30 * S))
    events = v.submit(m.AdvanceClock(ts=8 * HOUR_NS))         # the index is fresh (30 s old)
    assert not of(events, m.IndexStale)
    paid = of(events, m.FundingPaid)
    started = of(events, m.LiquidationStarted)
    assert [e.account for e in started] == [TRADER]
    assert events.index(paid[0]) < events.index(started[0])
    # the funding remainder (rounding) is in the fund's history too
    settled = of(events, m.FundingSettled)[0]
    funding = [e for e in v.ex.liquidation.fund_history() if e.reason == FundReason.FUNDING]
    assert sum(e.delta for e in funding) == settled.insurance
    assert v.ex.audit().ok


def test_a_loan_past_its_collateral_is_covered_then_socialised():
    v = Venue()
    D = 31
    v.account(D, BTC=100_000_000)
    v.price(BTC, 650000)
    v.submit(m.Borrow(account=D, asset="USD", amount=usd(40_000)))
    v.submit(m.Withdraw(account=D, asset="USD", amount=usd(40_000)))
    events = v.price(BTC, 300000)                             # LTV 133%: nothing can save it
    # all the BTC sells for 30,000 less 2%: 29,400 repaid, 600 penalty to the fund
    [sale] = of(events, m.CollateralConverted)
    assert (sale.amount, sale.proceeds, sale.debt) == (100_000_000, usd(29_400), usd(10_600))
    # 10,600 owed, nothing held: the fund covers its 600, the rest is socialised
    started = of(events, m.LiquidationStarted)
    assert [s.reason for s in started] == [LiquidationReason.LOAN, LiquidationReason.DEFICIT]
    reasons = [(e.delta, e.reason) for e in of(events, m.InsuranceFundChanged)]
    assert reasons == [(usd(600), FundReason.COLLATERAL_PENALTY),
                       (-usd(600), FundReason.DEFICIT_COVERED)]
    assert of(events, m.SocializedLoss) == [m.SocializedLoss(events[0].seq, 0, D, "USD",
                                                             usd(10_000), usd(10_000))]
    view = v.ex.account(D)
    assert view.equity == -usd(10_000) and view.loan == usd(10_000)
    assert v.ex.liquidation.socialized == {D: usd(10_000)}
    assert v.ex.insurance_fund("USD") == 0
    # nothing more happens to it on later moves
    assert not of(v.price(BTC, 290000), m.LiquidationStarted)
    assert v.ex.audit().ok


def test_many_accounts_in_one_move_in_account_order():
    v = Venue()
    v.account(MAKER, 10_000_000)
    v.account(BIDDER, 10_000_000)
    v.fund(10_000)
    v.price(BTC, 650000)
    traders = list(range(100, 110))
    for i, a in enumerate(traders):
        v.account(a, 2_000 + 100 * i)
        v.trade(MAKER, a, BTC, Side.BUY, 500, 650000)
    v.order(BIDDER, BTC, Side.BUY, 10_000, 590000)
    # at 59,500 equity is 1,983.75 + 100 i - 2,750 against maintenance 0.4% x 29,750 = 119:
    # the first nine are under it (the richest has 134)
    events = v.price(BTC, 595000)
    assert [e.account for e in of(events, m.LiquidationStarted)] == traders[:9]
    assert v.size(traders[9], BTC) == 500
    assert all(not v.ex.account(a).liquidatable for a in traders)
    assert v.ex.insurance_fund("USD") >= 0 and v.ex.audit().ok


def test_snapshot_restores_the_same_behaviour():
    v = Venue()
    long_btc(v)
    v.account(4, 30_000)
    v.trade(MAKER, 4, BTC, Side.SELL, 800, 650000)
    v.trade(MAKER, 4, ETH, Side.BUY, 2000, 340000)
    v.order(BIDDER, BTC, Side.BUY, 3000, 548000)
    v.fund(500)
    v.price(BTC, 600000)
    restored = Exchange.restore(v.ex.config, v.ex.snapshot())
    assert restored.state_hash() == v.ex.state_hash()
    for cmd in [m.SetIndexPrice(source="x", symbol=BTC, price=551000),
                m.SetIndexPrice(source="x", symbol=ETH, price=200000),
                m.SetIndexPrice(source="x", symbol=BTC, price=760000)]:
        assert restored.submit(cmd) == v.ex.submit(cmd)
    assert restored.state_hash() == v.ex.state_hash()
    assert of(v.ex.submit(m.AdvanceClock(ts=S)), m.OrderRejected) == []


def test_stage_6_plans_and_the_pipeline_places_its_orders(monkeypatch):
    """The liquidation engine never calls back into order entry: what it needs (the cancels, the
    IOC into the book, the fund's takeover sale) it yields as internal commands, and the books
    change only while the pipeline runs those. Each order's fills come back as the command's
    result."""
    v = Venue()
    long_btc(v)
    v.fund(1_000)
    v.order(TRADER, BTC, Side.SELL, 100, 700000)              # a resting offer to cancel
    v.submit(m.PlaceOrder(TRADER, BTC, Side.SELL, 100, 0, m.OrderType.MARKET,
                          trigger=m.TriggerKind.TAKE_PROFIT, trigger_price=700000))
    v.order(BIDDER, BTC, Side.BUY, 300, 551000)               # bids above and below bankruptcy
    v.order(BIDDER, BTC, Side.BUY, 1000, 545000)
    def books():
        return [(s, mk.book.depth(50), len(mk.book)) for s, mk in sorted(v.ex.markets.items())]
    plan_of = Liquidation.liquidate
    yielded, answers = [], []

    def watched(self, breached, events):
        plan, answer = plan_of(self, breached, events), None
        while True:
            before, start = books(), len(events)
            try:
                cmd = plan.send(answer)
            except StopIteration:
                cmd = None
            # between two of its commands the plan moved nothing in the books and wrote no
            # order event: those are the pipeline's
            assert books() == before
            assert not of(events[start:], m.OrderAccepted) + of(events[start:], m.OrderFilled) \
                + of(events[start:], m.OrderCancelled)
            if cmd is None:
                return
            assert isinstance(cmd, m.InternalCommand)
            yielded.append(cmd)
            answer = yield cmd
            answers.append(answer)

    monkeypatch.setattr(Liquidation, "liquidate", watched)
    events = v.price(BTC, 548000)                             # a gap through bankruptcy
    assert [type(c) for c in yielded] == [m.CancelAccountOrders, m.PlaceLiquidationOrder,
                                          m.PlaceLiquidationOrder]
    assert yielded[0] == m.CancelAccountOrders(TRADER, CancelReason.LIQUIDATION)
    book, takeover = yielded[1:]
    # the book at bankruptcy (55,032.5) takes the 0.3 bid above it (a fee of 20.25 to the fund);
    # the fund sells the rest as low as it can cover: 1,020.25 over 0.7 BTC, 1,457.50 below
    assert (book.account, book.side, book.price, book.qty) == (TRADER, Side.SELL, 550325, 1000)
    assert (takeover.qty, takeover.price) == (700, 535750)
    assert answers == [None, [(551000, 300)], [(545000, 700)]]
    accepted = of(events, m.OrderAccepted)
    assert [(o.price, o.qty) for o in accepted] == [(550325, 1000), (535750, 700)]
    assert {c.reason for c in of(events, m.OrderCancelled)[:2]} == {CancelReason.LIQUIDATION}
    [step] = of(events, m.PositionLiquidated)
    assert (step.book_qty, step.fund_qty) == (300, 700)
    assert v.size(TRADER, BTC) == 0 and v.ex.audit().ok


def test_an_internal_command_is_never_accepted_from_outside():
    """The pipeline's own commands are refused at the boundary like anything outside the schema:
    nothing is applied and nothing sequenced (so nothing is journaled)."""
    v = Venue()
    long_btc(v)
    v.order(BIDDER, BTC, Side.BUY, 1000, 600000)
    before, seq = v.ex.state_hash(), v.ex.seq
    for cmd in (m.PlaceLiquidationOrder(TRADER, BTC, Side.SELL, 600000, 1000),
                m.CancelAccountOrders(BIDDER, CancelReason.LIQUIDATION),
                m.LiquidateLoan(TRADER)):
        [rejected] = v.ex.submit(cmd)
        assert type(rejected) is m.OrderRejected and rejected.code == m.RejectCode.UNKNOWN_COMMAND
        with pytest.raises(msgspec.ValidationError):
            m.command_decoder.decode(m.encoder.encode(cmd))
    assert (v.ex.state_hash(), v.ex.seq) == (before, seq)
