"""perpcore.lending: loans move cash between the pool and the account, interest compounds at each
interval boundary rounded up, conversion sells to the platform and repays (Lending); Borrow and
Repay checked against the loan-to-value and the pool's limit, interest on the clock, margin calls
and the loan breach, through the Exchange (Loans; multi-assets mode's auto-exchange and the venues'
LTV levels: test_venue_margin)."""
from decimal import Decimal

from perpcore import messages as m
from perpcore.config import default_config
from perpcore.ledger import Ledger
from perpcore.lending import NEVER, Lending
from perpcore.messages import RejectCode
from perpcore.risk import CollateralPrice

from margin_venue import BTC, S, Venue, of, sats, usd

CFG = default_config()
HOUR = 3_600_000_000_000


def lending():
    led = Ledger(list(CFG.assets))
    led.open(1)
    led.open(2)
    return led, Lending(CFG, led)


def test_borrow_and_repay_move_cash_and_the_receivable():
    led, lend = lending()
    assert lend.due == NEVER and lend.room() == 100_000_000 * 10**6
    assert lend.borrow(1, 1_000, now=HOUR + 5) == 1_000
    assert lend.due == 2 * HOUR          # the next boundary after the loan
    assert led.balances[1]["USD"] == 1_000 and led.venue["lending_pool"]["USD"] == -1_000
    assert lend.receivable == 1_000 and lend.room() == 100_000_000 * 10**6 - 1_000
    assert lend.repay(1, 400) == 600
    assert led.balances[1]["USD"] == 600 and led.venue["lending_pool"]["USD"] == -600
    lend.called.add(1)
    assert lend.repay(1, 600) == 0
    assert lend.debts == {} and lend.called == set() and lend.due == NEVER


def test_interest_compounds_each_interval_rounded_up():
    _, lend = lending()
    lend.borrow(2, 87_600_000_000, now=0)         # 87,600 USD at 10% a year: 1 USD an hour
    lend.borrow(1, 1, now=0)                      # a micro-dollar still pays a micro-dollar
    accrued = lend.accrue(2 * HOUR + 1)
    assert accrued == [(HOUR, 1, 1, 2), (HOUR, 2, 1_000_000, 87_601_000_000),
                       (2 * HOUR, 1, 1, 3), (2 * HOUR, 2, 1_000_012, 87_602_000_012)]
    assert lend.receivable == 3 + 87_602_000_012 and lend.due == 3 * HOUR
    assert lend.accrue(3 * HOUR - 1) == []


def test_a_clock_jump_without_loans_accrues_nothing():
    _, lend = lending()
    lend.borrow(1, 10, now=0)
    lend.debts.clear()                            # (as if repaid elsewhere)
    assert lend.accrue(100 * HOUR) == [] and lend.due == NEVER


def test_conversion_sells_to_the_platform_and_repays():
    led, lend = lending()
    led.balances[1]["BTC"] = 10**8
    lend.borrow(1, 1_000_000_000, now=0)          # 1,000 USD
    led.balances[1]["USD"] = 0                    # (spent: the test skips the withdrawal)
    led.venue["lending_pool"]["USD"] = -1_000_000_000
    btc = CollateralPrice(CFG, "BTC")
    # 2,500,000 satoshi at 50,000 less 2%: 1,225 USD; 1,000 repays the loan, 225 stays as cash
    assert lend.convert(1, btc, 2_500_000, 500000) == (1_225_000_000, 1_000_000_000, 0)
    assert led.balances[1] == {"USD": 225_000_000, "BTC": 97_500_000, "ETH": 0}
    assert led.venue["platform"] == {"USD": -1_225_000_000, "BTC": 2_500_000, "ETH": 0}
    assert led.venue["lending_pool"]["USD"] == 0 and lend.debts == {}


def test_state_round_trip():
    _, lend = lending()
    lend.borrow(1, 5, now=0)
    lend.called.add(1)
    _, other = lending()
    other.from_state(lend.to_state())
    assert other.to_state() == lend.to_state()


# ---- Loans: the policy, through the Exchange -------------------------------------------------

A = TRADER = 1


def test_the_lending_pool_limit_is_enforced():
    v = Venue(margin={"lending_limit": Decimal("100")})
    v.account(A, BTC=sats(1))
    v.price(BTC, 600000)
    v.submit(m.Borrow(account=A, asset="USD", amount=usd(60)))
    assert v.refuse(m.Borrow(account=A, asset="USD", amount=usd(40.000001))) \
        == RejectCode.LOAN_LIMIT_EXCEEDED
    v.submit(m.Borrow(account=A, asset="USD", amount=usd(40)))


def test_a_loan_accrues_interest_and_gets_a_margin_call_then_conversion():
    # the loan-liquidation policy that repays the loan in full (MarginSpec.loan_liquidation; the
    # default sells the least that restores the maximum LTV)
    v = Venue(margin={"loan_liquidation": "repay_in_full"})
    v.account(TRADER, BTC=sats(1))
    v.price(BTC, 600000, ts=S)
    # 1 BTC at 60,000: 65% allows 39,000
    assert v.refuse(m.Borrow(account=TRADER, asset="USD", amount=usd(39_000.000001),
                             ts=HOUR // 2)) == RejectCode.LOAN_LIMIT_EXCEEDED
    events = v.submit(m.Borrow(account=TRADER, asset="USD", amount=usd(39_000), ts=HOUR // 2))
    assert of(events, m.Borrowed) == [m.Borrowed(v.ex.seq, HOUR // 2, TRADER, "USD", usd(39_000),
                                                 usd(39_000), 65_000_000)]
    v.submit(m.Withdraw(account=TRADER, asset="USD", amount=usd(39_000)))
    # interest each hour: 39,000 x 10% / 8,760 = 0.4452054... -> 0.445206, then on 39,000.445206:
    # 0.4452109... -> 0.445211
    events = v.submit(m.AdvanceClock(ts=2 * HOUR))
    assert of(events, m.InterestAccrued) == [
        m.InterestAccrued(v.ex.seq, HOUR, TRADER, "USD", 445206, 39_000_445206),
        m.InterestAccrued(v.ex.seq, 2 * HOUR, TRADER, "USD", 445211, 39_000_890417)]
    assert of(events, m.MarginCall) == []
    a = v.view(TRADER)
    assert a.loan == 39_000_890417 and a.ltv == 65_001_485       # 39,000.890417 / 60,000
    audit = v.ex.audit().check()["USD"]
    assert (audit.lending_pool, audit.loans, audit.pool_receivable) == \
        (-usd(39_000), 39_000_890417, 39_000_890417)
    # BTC falls to 51,990: 39,000.890417 / 51,990 = 75.016...% > 75%: a margin call, once
    events = v.price(BTC, 519900, ts=2 * HOUR + S)
    assert of(events, m.MarginCall) == [m.MarginCall(v.ex.seq, 2 * HOUR + S, TRADER, 75_016_139,
                                                     39_000_890417, usd(51_990))]
    assert of(v.price(BTC, 519800, ts=2 * HOUR + 2 * S), m.MarginCall) == []
    # to 46,900: 83.16% > 83%: the collateral is sold to the platform at 46,900 x 98% = 45,962 a
    # BTC (459.62 micro-USD a satoshi): 84,854,642 satoshi raise 39,000.890556, repaying the loan
    events = v.price(BTC, 469000, ts=2 * HOUR + 3 * S)
    assert of(events, m.CollateralConverted) == [m.CollateralConverted(
        v.ex.seq, 2 * HOUR + 3 * S, TRADER, "BTC", 84_854_642, 469000, 39_000_890556,
        39_000_890417, 0)]
    a = v.view(TRADER)
    assert a.loan == 0 and a.balances == {"USD": 139, "BTC": sats(1) - 84_854_642, "ETH": 0}
    audit = v.ex.audit().check()
    assert audit["BTC"].platform == 84_854_642
    # the platform paid the proceeds and the penalty (market value less proceeds) went to the fund
    assert audit["USD"].platform == -39_796_827098                 # 0.84854642 BTC at 46,900
    assert audit["USD"].insurance_fund == 39_796_827098 - 39_000_890556
    assert audit["USD"].lending_pool == 890417                     # the interest, now in cash
    # with no loan left, the clock accrues nothing
    assert of(v.submit(m.AdvanceClock(ts=5 * HOUR)), m.InterestAccrued) == []


def test_repaying_a_loan_returns_cash_to_the_pool():
    v = Venue()
    v.account(TRADER, USD=usd(100), BTC=sats(1))
    v.price(BTC, 600000)
    v.submit(m.Borrow(account=TRADER, asset="USD", amount=usd(1_000)))
    assert v.refuse(m.Repay(account=TRADER, asset="USD", amount=usd(1_000.000001))) \
        == RejectCode.INVALID_AMOUNT
    assert v.refuse(m.Borrow(account=TRADER, asset="BTC", amount=1)) == RejectCode.UNKNOWN_ASSET
    events = v.submit(m.Repay(account=TRADER, asset="USD", amount=usd(400)))
    assert events == [m.Repaid(v.ex.seq, 0, TRADER, "USD", usd(400), usd(600))]
    v.submit(m.Repay(account=TRADER, asset="USD", amount=usd(600)))
    a = v.view(TRADER)
    assert a.loan == 0 and a.balances["USD"] == usd(100)
    assert v.ex.audit().check()["USD"].lending_pool == 0
    assert v.refuse(m.Repay(account=TRADER, asset="USD", amount=1)) == RejectCode.INVALID_AMOUNT
