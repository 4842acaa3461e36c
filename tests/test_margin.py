"""perpcore.margin as a component: the funding interface, snapshots and the state hash, refusals
that change nothing, and valuation without prices."""

import pytest

from perpcore import Exchange
from perpcore import messages as m
from perpcore.messages import RejectCode, Side

from margin_venue import BTC, ETH, Venue, of, repay_in_full, sats, usd

A, B, C = 1, 2, 3


def three_traders():
    v = Venue()
    for a in (A, B, C):
        v.account(a, USD=usd(100_000))
    v.price(BTC, 600000)
    v.price(ETH, 300000)
    v.trade(A, B, BTC, Side.BUY, 300, 600000)        # B long 0.3, A short 0.3
    v.trade(C, A, BTC, Side.BUY, 100, 600000)        # A buys 0.1 back: short 0.2; C short 0.1
    v.trade(C, B, ETH, Side.SELL, 500, 300000)       # B short 5 ETH, C long 5 ETH
    return v


def test_open_positions_lists_signed_sizes_by_account():
    v = three_traders()
    assert v.ex.margin.open_positions(BTC) == [(A, -200), (B, 300), (C, -100)]
    assert v.ex.margin.open_positions(ETH) == [(B, -500), (C, 500)]


def test_settle_funding_moves_cash_and_the_remainder_to_insurance():
    v = three_traders()
    margin = v.ex.margin
    before = {a: v.view(a).balances["USD"] for a in (A, B, C)}
    margin.settle_funding(BTC, [(A, 199), (B, -301), (C, 100)], 2)
    assert {a: v.view(a).balances["USD"] - before[a] for a in (A, B, C)} == {A: 199, B: -301, C: 100}
    assert v.ex.insurance_fund("USD") == 2
    assert v.ex.audit().ok
    with pytest.raises(ValueError, match="sum to zero"):
        margin.settle_funding(BTC, [(A, 5), (B, -4)], 0)
    assert v.ex.audit().ok


def test_a_snapshot_restores_positions_orders_loans_and_the_hash():
    v = three_traders()
    v.account(4, BTC=sats(1))
    v.submit(m.Borrow(account=4, asset="USD", amount=usd(1_000)))
    v.submit(m.SetLeverage(account=A, symbol=ETH, leverage=7))
    v.order(B, BTC, Side.SELL, 100, 610000, reduce_only=True)
    bid = v.order(A, BTC, Side.BUY, 50, 590000)[0].order_id
    restored = Exchange.restore(v.cfg, v.ex.snapshot())
    assert restored.state_hash() == v.ex.state_hash()
    for a in (A, B, C, 4):
        assert restored.account(a) == v.view(a)
    # the rebuilt order aggregates behave the same: the same next events
    for ex in (v.ex, restored):
        repay_in_full(ex)
    cmds = [m.PlaceOrder(account=C, symbol=BTC, side=Side.BUY, qty=400, price=610000),
            m.AmendOrder(account=A, symbol=BTC, order_id=bid, price=595000, qty=60),
            m.AdvanceClock(ts=3 * 3_600_000_000_000)]
    for cmd in cmds:
        assert restored.submit(cmd) == v.ex.submit(cmd)
    assert restored.state_hash() == v.ex.state_hash()


def test_the_state_hash_forgets_what_left_no_trace():
    v = Venue()
    v.account(A, USD=usd(1_000))
    oid = v.order(A, BTC, Side.BUY, 10, 590000)[0].order_id
    v.submit(m.CancelOrder(account=A, symbol=BTC, order_id=oid))
    v.submit(m.SetLeverage(account=A, symbol=ETH, leverage=20))     # the default: no change
    fresh = Venue()
    fresh.account(A, USD=usd(1_000))
    assert fresh.ex.margin.to_state() == v.ex.margin.to_state()


REFUSALS = [
    ("withdraw unknown asset", m.Withdraw(A, "DOGE", 1), RejectCode.UNKNOWN_ASSET),
    ("withdraw float", m.Withdraw(A, "USD", 1.5), RejectCode.MALFORMED),
    ("withdraw negative", m.Withdraw(A, "USD", -1), RejectCode.INVALID_AMOUNT),
    ("negative transfer id", m.Deposit(A, "USD", 1, transfer_id=-1), RejectCode.MALFORMED),
    ("borrow nothing", m.Borrow(A, "USD", 0), RejectCode.INVALID_AMOUNT),
    ("borrow without collateral", m.Borrow(A, "USD", 1), RejectCode.LOAN_LIMIT_EXCEEDED),
    ("repay without a loan", m.Repay(A, "USD", 1), RejectCode.INVALID_AMOUNT),
    ("leverage zero", m.SetLeverage(A, BTC, 0), RejectCode.LEVERAGE_NOT_ALLOWED),
    ("leverage float", m.SetLeverage(A, BTC, 2.0), RejectCode.MALFORMED),
    ("leverage unknown symbol", m.SetLeverage(A, "XRP-PERP", 2), RejectCode.UNKNOWN_SYMBOL),
    ("leverage unknown account", m.SetLeverage(9, BTC, 2), RejectCode.UNKNOWN_ACCOUNT),
    ("amend past margin", m.AmendOrder(A, BTC, 1, 590000, 100_000), RejectCode.INSUFFICIENT_MARGIN),
    ("order past margin", m.PlaceOrder(A, BTC, Side.SELL, 100_000, 610000),
     RejectCode.INSUFFICIENT_MARGIN),
]


@pytest.mark.parametrize("name,cmd,code", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_carry_their_code_and_change_nothing(name, cmd, code):
    v = Venue()
    v.account(A, USD=usd(1_000))
    v.price(BTC, 600000)
    v.order(A, BTC, Side.BUY, 10, 590000)
    assert v.refuse(cmd) == code


def test_without_prices_positions_stand_at_entry_and_collateral_counts_nothing():
    v = Venue()
    v.account(A, USD=usd(1_000), BTC=sats(1))
    v.account(B, USD=usd(1_000))
    v.trade(B, A, BTC, Side.BUY, 100, 600000)                     # no index, no mark yet
    a = v.view(A)
    assert a.collateral_value == 0 and a.unrealised_pnl == 0
    [p] = a.positions
    assert (p.mark_price, p.notional, p.initial_margin) == (None, usd(6_000), usd(300))
    # everything but the initial margin may leave: the BTC, unpriced, counts for nothing
    assert a.available == {"USD": usd(1_000 - 3 - 300), "BTC": sats(1), "ETH": 0}
    assert v.ex.audit().ok


def test_unknown_account_view_is_a_key_error():
    with pytest.raises(KeyError):
        Venue().ex.account(42)


def test_every_fill_reports_both_positions():
    v = Venue()
    v.account(A, USD=usd(10_000))
    v.account(B, USD=usd(10_000))
    v.price(BTC, 600000)
    v.order(A, BTC, Side.SELL, 100, 600000)
    events = v.order(B, BTC, Side.BUY, 100, 600000)
    assert [type(e) for e in events][:4] == [m.OrderAccepted, m.OrderFilled, m.PositionChanged,
                                              m.PositionChanged]
    maker, taker = of(events, m.PositionChanged)
    assert (maker.account, maker.size, maker.fee) == (A, -100, usd(1.2))
    assert (taker.account, taker.size, taker.fee) == (B, 100, usd(3))
    assert taker.balance == usd(10_000 - 3)


def test_a_crash_past_the_collateral_leaves_the_shortfall_owed():
    # the loan-liquidation policy that repays the loan in full (MarginSpec.loan_liquidation)
    v = Venue(margin={"loan_liquidation": "repay_in_full"})
    v.account(A, BTC=sats(1))
    v.price(BTC, 600000)
    v.submit(m.Borrow(account=A, asset="USD", amount=usd(39_000)))
    v.submit(m.Withdraw(account=A, asset="USD", amount=usd(39_000)))
    # BTC halves: LTV 130%; everything is sold at 30,000 less 2% = 29,400 and 9,600 stays owed;
    # the 600 penalty went to the insurance fund, which covers as much of the deficit: 9,000 owed
    events = v.price(BTC, 300000)
    assert of(events, m.MarginCall) == [m.MarginCall(v.ex.seq, 0, A, 130_000_000, usd(39_000),
                                                     usd(30_000))]
    assert of(events, m.CollateralConverted) == [m.CollateralConverted(
        v.ex.seq, 0, A, "BTC", sats(1), 300000, usd(29_400), usd(29_400), usd(9_600))]
    a = v.view(A)
    assert of(events, m.SocializedLoss) == [m.SocializedLoss(v.ex.seq, 0, A, "USD", usd(9_000),
                                                             usd(9_000))]
    assert (a.loan, a.ltv, a.collateral_market_value, a.equity) == (usd(9_000), None, 0,
                                                                    -usd(9_000))
    assert v.ex.audit().ok
