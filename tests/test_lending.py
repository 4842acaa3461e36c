"""perpcore.lending: loans move cash between the pool and the account, interest compounds at each
interval boundary rounded up, conversion sells to the platform and repays."""
from perpcore.config import default_config
from perpcore.ledger import Ledger
from perpcore.lending import NEVER, Lending
from perpcore.risk import CollateralPrice

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
