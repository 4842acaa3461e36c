"""perpcore.loan_liquidation: past the liquidation LTV, the loan repaid from cash then from
collateral sold to the platform, by MarginSpec.loan_liquidation ("repay_in_full" with its fee to
the insurance fund, or "restore_max_ltv"), worked on Bit2Me's terms (see test_venue_margin's
sources); a deficit's collateral sold (test_liquidation).
"""
from perpcore import messages as m
from perpcore.messages import FundReason, LiquidationReason

from margin_venue import BTC, loan_at_85, of, sats, usd

A = 1


def test_repay_in_full_sells_the_loan_and_its_fee_and_returns_the_rest():
    v = loan_at_85("repay_in_full")
    # BTC at 46,000: LTV 39,100 / 46,000 = 85% exactly, reached. The fee is 2% of 39,100 = 782;
    # 39,882 / 46,000 = 0.867 BTC is sold, exactly 39,882; the loan is repaid, 782 goes to the
    # insurance fund, 0.133 BTC stays with A
    events = v.price(BTC, 460000)
    started = of(events, m.LiquidationStarted)
    assert [e.reason for e in started] == [LiquidationReason.LOAN]
    assert of(events, m.CollateralConverted) == [m.CollateralConverted(
        v.ex.seq, 0, A, "BTC", sats("0.867"), 460000, usd(39_882), usd(39_100), 0)]
    fund = of(events, m.InsuranceFundChanged)
    assert [(e.delta, e.reason) for e in fund] == [(usd(782), FundReason.COLLATERAL_PENALTY)]
    a = v.view(A)
    assert (a.loan, a.balances) == (0, {"USD": 0, "BTC": sats("0.133"), "ETH": 0})
    assert v.ex.insurance_fund("USD") == usd(782)
    assert v.ex.audit().ok


def test_restore_max_ltv_sells_only_what_brings_the_loan_back_to_65_percent():
    v = loan_at_85("restore_max_ltv")
    events = v.price(BTC, 460000)
    (sale,) = of(events, m.CollateralConverted)
    # the least x with (39,100 - 46,000x) <= 65% x 46,000 (1 - x): x >= 9,200 / 16,100 = 0.571428...
    # -> 57,142,858 satoshi (26,285.71468 USD); 12,814.28532 stays owed on 0.42857142 BTC
    assert (sale.amount, sale.proceeds, sale.debt) == (57_142_858, usd("26285.71468"),
                                                      usd("12814.28532"))
    assert v.view(A).ltv <= 65_000_000
    assert not of(events, m.InsuranceFundChanged)       # no fee, no penalty
    assert v.ex.audit().ok


def test_the_loan_checks_hand_the_loan_to_the_pipeline():
    """The margin layer's loan check never calls the liquidation engine: a loan past the level
    is a LiquidateLoan the pipeline runs through its handler, in place (right after the
    MarginCall). With the handler held back, the check still makes its margin call, and nothing
    is sold."""
    ran = []
    for hold in (False, True):
        v = loan_at_85("repay_in_full")
        handlers = v.ex._handlers
        liquidate_loan = handlers[m.LiquidateLoan]

        def watched(cmd, events, hold=hold, liquidate_loan=liquidate_loan):
            ran.append((hold, cmd, [type(e) for e in events][-1:]))
            if not hold:
                liquidate_loan(cmd, events)

        handlers[m.LiquidateLoan] = watched
        events = v.price(BTC, 460000)
        assert len(of(events, m.MarginCall)) == 1
        assert bool(of(events, m.CollateralConverted)) is not hold
        assert (v.view(A).loan == 0) is not hold
        assert v.ex.audit().ok
    assert ran == [(False, m.LiquidateLoan(A), [m.MarginCall]),
                   (True, m.LiquidateLoan(A), [m.MarginCall])]
