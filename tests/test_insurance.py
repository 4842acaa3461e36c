"""perpcore.insurance: the fund's deposits and their refusals, its history (the newest
limits.history_kept, restarted by a restore) and the record of other layers' changes."""
from perpcore import Exchange
from perpcore import messages as m
from perpcore.messages import FundReason, RejectCode

from liquidation_venue import Venue, usd


def test_fund_deposits_and_their_rejections():
    v = Venue()
    before = v.ex.state_hash()
    for cmd, code in [(m.FundInsurance(asset="XRP", amount=5), RejectCode.UNKNOWN_ASSET),
                      (m.FundInsurance(asset="USD", amount=0), RejectCode.INVALID_AMOUNT),
                      (m.FundInsurance(asset="USD", amount=-3), RejectCode.INVALID_AMOUNT),
                      (m.FundInsurance(asset="USD", amount=1.5), RejectCode.MALFORMED)]:
        [event] = v.ex.submit(cmd)
        assert type(event) is m.OrderRejected and event.code == code
    assert v.ex.state_hash() == before
    [event] = v.fund(250)
    assert (event.delta, event.balance, event.reason) == (usd(250), usd(250), FundReason.DEPOSIT)
    audit = v.ex.audit()
    assert audit.ok and audit["USD"].deposits == usd(250) == audit["USD"].insurance_fund
    assert v.ex.liquidation.fund_history("USD")[0].delta == usd(250)


def test_a_restore_starts_the_history_afresh_and_records_as_before():
    v = Venue()
    v.fund(250)
    v.fund(100)
    restored = Exchange.restore(v.ex.config, v.ex.snapshot())
    assert restored.liquidation.fund_history() == []          # the window is not state
    # the core's view of the fund as last recorded is the fund's own, restored in place
    assert restored.liquidation._fund_seen is restored.liquidation.insurance.seen
    assert restored.liquidation.insurance.seen == {"USD": usd(350), "BTC": 0, "ETH": 0}
    cmd = m.FundInsurance(asset="USD", amount=usd(5))
    assert restored.submit(cmd) == v.ex.submit(cmd)
    [entry] = restored.liquidation.fund_history("USD")
    assert (entry.delta, entry.balance, entry.reason) == (usd(5), usd(355), FundReason.DEPOSIT)
    assert [e.delta for e in v.ex.liquidation.fund_history()] == [usd(250), usd(100), usd(5)]
    assert restored.state_hash() == v.ex.state_hash()
