"""Sums are checked: money coming in (Deposit, FundInsurance) that would take the asset's money in
the venue or the receiving balance past perpcore.ledger.MAX_MONEY is refused as AMOUNT_TOO_LARGE
and changes nothing; whatever was accepted leaves a state that hashes, snapshots, restores and
audits."""
import pytest

from perpcore import Exchange
from perpcore import messages as m
from perpcore.ledger import MAX_MONEY
from perpcore.messages import RejectCode
from margin_venue import BTC, Venue, sats, usd

TOO_LARGE = RejectCode.AMOUNT_TOO_LARGE
INT64_MAX = 2**63 - 1


def sound(ex):
    """The state hashes, snapshots, restores to the same hash, and audits."""
    restored = Exchange.restore(ex.config, ex.snapshot())
    assert restored.state_hash() == ex.state_hash()
    ex.audit().check()
    restored.audit().check()


def deposit(account, amount, asset="USD"):
    return m.Deposit(account=account, asset=asset, amount=amount)


@pytest.mark.parametrize("asset", ["USD", "BTC"])
def test_deposits_of_int64_max_then_more_are_refused(asset):
    v = Venue()
    v.account(1)
    v.account(2)
    for _ in range(3):
        assert v.refuse(deposit(1, INT64_MAX, asset)) == TOO_LARGE
        sound(v.ex)
    assert v.refuse(deposit(1, 2**64, asset)) == m.RejectCode.MALFORMED   # past the field's range
    v.submit(deposit(1, MAX_MONEY - 10, asset))
    assert v.refuse(deposit(2, 11, asset)) == TOO_LARGE       # the venue's total, not account 1's
    v.submit(deposit(2, 10, asset))
    assert v.refuse(deposit(2, 1, asset)) == TOO_LARGE
    assert v.ex.audit()[asset].deposits == MAX_MONEY
    sound(v.ex)


def test_fund_insurance_is_bounded_like_a_deposit():
    v = Venue()
    v.account(1)
    assert v.refuse(m.FundInsurance(asset="USD", amount=INT64_MAX)) == TOO_LARGE
    v.submit(m.FundInsurance(asset="USD", amount=MAX_MONEY - 1))
    assert v.refuse(m.FundInsurance(asset="USD", amount=2)) == TOO_LARGE
    assert v.refuse(deposit(1, 2)) == TOO_LARGE
    v.submit(deposit(1, 1))
    assert v.ex.insurance_fund("USD") == MAX_MONEY - 1
    sound(v.ex)


def test_the_bound_is_on_money_held_so_withdrawals_make_room_again():
    """Lifetime deposits pass 2**64 (msgpack's end) over cycles; the state still encodes."""
    v = Venue()
    v.account(1)
    for tid in range(1, 11, 2):
        v.submit(m.Deposit(account=1, asset="USD", amount=MAX_MONEY, transfer_id=tid))
        assert v.refuse(deposit(1, 1)) == TOO_LARGE
        v.submit(m.Withdraw(account=1, asset="USD", amount=MAX_MONEY, transfer_id=tid + 1))
    audit = v.ex.audit().check()["USD"]
    assert audit.deposits == audit.withdrawals == 5 * MAX_MONEY > 2**64
    sound(v.ex)


def test_a_balance_above_the_venues_money_bounds_what_may_come_in():
    """Money the venue put out (a loan) sits in a balance above the asset's money in the venue:
    the balance bounds the deposit."""
    v = Venue()
    v.account(1, BTC=sats(10))
    v.price(BTC, 650000)
    v.submit(m.Borrow(account=1, asset="USD", amount=usd(1000)))
    assert v.ex.audit()["USD"].deposits == 0
    assert v.refuse(deposit(1, MAX_MONEY - usd(1000) + 1)) == TOO_LARGE
    v.submit(deposit(1, MAX_MONEY - usd(1000)))
    assert v.ex.account(1).balances["USD"] == MAX_MONEY
    sound(v.ex)
