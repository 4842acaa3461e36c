"""perpcore.transfers: accounts opened, deposits and withdrawals, each refusal changing nothing; a
transfer id is applied once per account (a withdrawal that would break margin, as perpcore.margin
says what is available: test_margin_scenarios; the venue's range: test_money_limits)."""
from perpcore import messages as m
from perpcore.messages import RejectCode

from margin_venue import Venue, of, sats, usd

TRADER, MAKER = 1, 2


def test_an_opened_account_is_in_the_ledger_and_the_funding_sweeps_order():
    v = Venue()
    for account in (5, 2, 9):
        v.account(account, professional=account != 9)
    assert v.ex.accounts() == [2, 5, 9]
    assert list(v.ex.margin.account_ids) == [2, 5, 9]      # ascending: the sweep's order
    assert v.view(5).balances == {"USD": 0, "BTC": 0, "ETH": 0}
    assert (v.view(5).professional, v.view(9).professional) == (True, False)
    assert v.refuse(m.CreateAccount(account=5)) == RejectCode.DUPLICATE_ACCOUNT


def test_deposits_and_withdrawals_move_the_ledger_and_report_the_balance():
    v = Venue()
    v.account(TRADER)
    events = v.submit(m.Deposit(account=TRADER, asset="BTC", amount=sats(2), transfer_id=1))
    assert events == [m.Deposited(v.ex.seq, 0, TRADER, "BTC", sats(2), 1, sats(2))]
    events = v.submit(m.Withdraw(account=TRADER, asset="BTC", amount=sats("0.5"), transfer_id=2))
    assert events == [m.Withdrawn(v.ex.seq, 0, TRADER, "BTC", sats("0.5"), 2, sats("1.5"))]
    # the margin component's own entry (ex.margin.deposit) is the same transfer
    events = []
    v.ex.margin.deposit(m.Deposit(account=TRADER, asset="USD", amount=usd(7), transfer_id=3),
                        events)
    assert of(events, m.Deposited)[0].balance == usd(7) == v.view(TRADER).balances["USD"]
    audit = v.ex.audit().check()
    assert (audit["BTC"].deposits, audit["BTC"].withdrawals) == (sats(2), sats("0.5"))
    for cmd, code in [
            (m.Withdraw(account=TRADER, asset="DOGE", amount=1), RejectCode.UNKNOWN_ASSET),
            (m.Withdraw(account=TRADER, asset="BTC", amount=0), RejectCode.INVALID_AMOUNT),
            (m.Withdraw(account=TRADER, asset="BTC", amount=-1), RejectCode.INVALID_AMOUNT),
            (m.Withdraw(account=TRADER, asset="BTC", amount=sats(2)),
             RejectCode.INSUFFICIENT_BALANCE)]:
        assert v.refuse(cmd) == code


def test_transfers_are_idempotent_by_transfer_id():
    v = Venue()
    v.account(TRADER)
    v.submit(m.Deposit(account=TRADER, asset="USD", amount=usd(100), transfer_id=42))
    assert v.refuse(m.Deposit(account=TRADER, asset="USD", amount=usd(100), transfer_id=42)) \
        == RejectCode.DUPLICATE_TRANSFER
    # the id is spent for withdrawals too; another account may use it; 0 means "no id"
    assert v.refuse(m.Withdraw(account=TRADER, asset="USD", amount=usd(1), transfer_id=42)) \
        == RejectCode.DUPLICATE_TRANSFER
    v.account(MAKER)
    v.submit(m.Deposit(account=MAKER, asset="USD", amount=usd(5), transfer_id=42))
    v.submit(m.Deposit(account=TRADER, asset="USD", amount=usd(1)))
    v.submit(m.Deposit(account=TRADER, asset="USD", amount=usd(1)))
    assert v.view(TRADER).balances["USD"] == usd(102)
    assert v.refuse(m.Deposit(account=TRADER, asset="DOGE", amount=1)) == RejectCode.UNKNOWN_ASSET
    assert v.refuse(m.Deposit(account=TRADER, asset="USD", amount=0)) == RejectCode.INVALID_AMOUNT
    assert v.refuse(m.Deposit(account=9, asset="USD", amount=1)) == RejectCode.UNKNOWN_ACCOUNT
