"""Funding: premium, time-weighted average, clamp and cap, interval scaling, payments and their
rounding (hand-computed), and settlements on the exchange clock."""
from fractions import Fraction

import pytest

from perpcore import Exchange
from perpcore import messages as m
from perpcore._book import BUY, GTC, SELL, OrderBook
from perpcore.config import HOUR_NS, RATE_SCALE, PricingSpec
from perpcore.funding import PremiumAverage, funding_rate, payments, premium
from pricing_venue import venue

S = 1_000_000_000
BTC = "BTC-PERP"


def of(events, cls):
    return [e for e in events if type(e) is cls]


# ---- premium -------------------------------------------------------------------------------------

def test_premium_signs():
    # impact bid above the index: a positive premium of 500 / 650000 = 0.076923%
    assert premium(650000, Fraction(650500), Fraction(650900)) == 76923
    # impact ask below the index: negative, -400 / 650000 = -0.061538%
    assert premium(650000, Fraction(649000), Fraction(649600)) == -61538
    # both around the index: nothing
    assert premium(650000, Fraction(649900), Fraction(650100)) == 0
    # a side that cannot absorb the impact notional contributes nothing
    assert premium(650000, None, Fraction(649600)) == -61538
    assert premium(650000, Fraction(650500), None) == 76923
    # an empty book is no sample
    assert premium(650000, None, None) is None


def test_premium_from_a_known_book():
    book = OrderBook()
    book.place(1, 1, BUY, 650500, 200, GTC, 0, 0)
    book.place(2, 1, BUY, 650000, 1000, GTC, 0, 0)
    book.place(3, 2, SELL, 651000, 1000, GTC, 0, 0)
    notional = 250_000_000              # 25,000 USD in 0.1 USD ticks x 0.001 BTC lots
    # selling 25,000 USD: 200 lots at 650500 (130.1M tick-lots), then 119.9M / 650000 lots:
    # 384.46 lots at 650260.10 on average
    impact_bid = Fraction(notional) / (200 + Fraction(119_900_000, 650000))
    assert book.impact(SELL, notional) == impact_bid
    assert float(impact_bid) == pytest.approx(650260.10, abs=0.01)
    # the premium is rounded half to even at 1e-8: 260.10 / 650000 = 0.040016%
    assert premium(650000, impact_bid, book.impact(BUY, notional)) == \
        round((impact_bid - 650000) / 650000 * RATE_SCALE) == 40016


def test_time_weighted_average_weights_the_ith_sample_by_i():
    avg = PremiumAverage()
    assert avg.value() == 0
    for v in (10, 20, 30):
        avg.add(v)
    assert avg.value() == round(Fraction(1 * 10 + 2 * 20 + 3 * 30, 6)) == 23
    # k equal samples at once are k single samples
    bulk, single = PremiumAverage(), PremiumAverage()
    bulk.add(7, 1)
    bulk.add(-5, 1000)
    single.add(7)
    for _ in range(1000):
        single.add(-5)
    assert (bulk.count, bulk.weighted, bulk.value()) == \
        (single.count, single.weighted, single.value())
    bulk.reset()
    assert bulk.value() == 0 and bulk.count == 0


def test_rate_clamp_and_cap():
    # |I - P| within the clamp: the interest rate
    assert funding_rate(15_385, 10_000, 50_000, 300_000) == 10_000
    # P far above I: P - 0.05%
    assert funding_rate(76_923, 10_000, 50_000, 300_000) == 26_923
    # P far below: P + 0.05%
    assert funding_rate(-200_000, 10_000, 50_000, 300_000) == -150_000
    # the cap
    assert funding_rate(1_538_462, 10_000, 50_000, 300_000) == 300_000
    assert funding_rate(-1_538_462, 10_000, 50_000, 300_000) == -300_000


def test_interest_and_clamp_scale_with_the_interval():
    for hours, interest, clamp in ((1, 1_250, 6_250), (2, 2_500, 12_500), (4, 5_000, 25_000),
                                   (8, 10_000, 50_000)):
        spec = PricingSpec(funding_interval_ns=hours * HOUR_NS)
        assert (spec.scaled(spec.interest_rate), spec.scaled(spec.funding_clamp)) == \
            (interest, clamp)


# ---- payments ------------------------------------------------------------------------------------

def test_longs_pay_shorts_when_the_rate_is_positive():
    # 1 BTC (1000 lots) at 65,000 USD (650000 ticks) x 0.01% = 6.5 USD = 6,500,000 minor units
    pays, rest = payments([(1, 1000), (2, -600), (3, -400), (4, 0)], 650000, 10_000, 100)
    assert pays == [(1, -6_500_000), (2, 3_900_000), (3, 2_600_000)] and rest == 0


def test_shorts_pay_longs_when_the_rate_is_negative():
    pays, rest = payments([(1, 1000), (2, -600), (3, -400)], 650000, -10_000, 100)
    assert pays == [(1, 6_500_000), (2, -3_900_000), (3, -2_600_000)] and rest == 0


def test_rounding_takes_from_payers_and_the_remainder_goes_to_insurance():
    # 3e-8 x 65,000 USD per BTC: 1.95 minor units per lot; the payer pays 2, the receiver gets 1
    pays, rest = payments([(1, 1), (2, -1)], 650000, 3, 100)
    assert pays == [(1, -2), (2, 1)] and rest == 1
    # three receivers of 1.95 x (1, 1, 3) lots: floor 1, 1, 5; the payer ceil(9.75) = 10
    pays, rest = payments([(5, 5), (6, -1), (7, -1), (8, -3)], 650000, 3, 100)
    assert pays == [(5, -10), (6, 1), (7, 1), (8, 5)] and rest == 3


def test_receivers_share_pro_rata_when_open_interest_does_not_net():
    # 1 lot pays 2; 3 lots would be owed floor(5.85) = 5: they share the 2 paid, by size
    pays, rest = payments([(1, 1), (2, -2), (3, -1)], 650000, 3, 100)
    assert pays == [(1, -2), (2, 1), (3, 0)] and rest == 1


def test_zero_rate_pays_nothing():
    assert payments([(1, 10), (2, -10)], 650000, 0, 100) == ([], 0)


# ---- on the clock --------------------------------------------------------------------------------

def premium_venue(**pricing):
    """BTC-PERP with index 650000 from t = 1 s (a source refreshed beyond any test's horizon) and a
    book bid 650500 / ask 650900: the premium 0.076923% at every sample."""
    ex = Exchange(venue(index_stale_ns=10**6 * S, **pricing))
    for a in (1, 2):
        ex.submit(m.CreateAccount(account=a))
        ex.submit(m.Deposit(account=a, asset="USD", amount=10**13))
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    ex.submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.BUY, price=650500, qty=1000, ts=S))
    ex.submit(m.PlaceOrder(account=2, symbol=BTC, side=m.Side.SELL, price=650900, qty=1000, ts=S))
    return ex


def held_venue(**pricing):
    """premium_venue() with a position: account 3 buys 100 lots of account 2's offer at 2 s (the
    last trade 650900 makes the mark at a settlement median(650000, 650700, 650900) = 650700)."""
    ex = premium_venue(**pricing)
    ex.submit(m.CreateAccount(account=3))
    ex.submit(m.Deposit(account=3, asset="USD", amount=10**13))
    ex.submit(m.PlaceOrder(account=3, symbol=BTC, side=m.Side.BUY, price=650900, qty=100,
                           tif=m.TimeInForce.IOC, ts=2 * S))
    return ex


def test_predicted_rate_moves_with_the_samples():
    ex = premium_venue()
    assert ex.funding_rate(BTC) == 10_000           # no sample yet: the interest rate
    ev = ex.submit(m.AdvanceClock(ts=5 * S))
    assert of(ev, m.FundingRateUpdated) == [m.FundingRateUpdated(ex.seq, 5 * S, BTC, 26_923,
                                                                 8 * HOUR_NS)]


def test_a_clock_jump_settles_every_interval_crossed_in_order():
    ex = held_venue()
    ev = ex.submit(m.AdvanceClock(ts=24 * HOUR_NS + S))
    settled = of(ev, m.FundingSettled)
    # P = 0.076923% at every sample, F = P - 0.05% clamp; the figures of
    # test_settlement_moves_cash_between_positions_and_the_remainder_to_insurance, each time
    assert settled == [m.FundingSettled(ex.seq, t * HOUR_NS, BTC, 26_923, 650700, 2, 1_751_880,
                                        1_751_879, 1) for t in (8, 16, 24)]
    assert [e.ts for e in of(ev, m.FundingPaid)] == [t * HOUR_NS for t in (8, 8, 16, 16, 24, 24)]
    assert [e.ts for e in ev] == sorted(e.ts for e in ev)
    pricing = ex.components["pricing"]
    assert pricing.funding_history(BTC) == [(t * HOUR_NS, 26_923, 650700) for t in (8, 16, 24)]
    assert pricing.last_funding_rate(BTC) == 26_923
    assert pricing.next_funding_time(BTC) == 32 * HOUR_NS
    # one sample into the new interval
    assert pricing.symbols[BTC].premium.count == 0 and ex.funding_rate(BTC) == 10_000
    ex.audit().check()


def test_a_symbol_nobody_holds_passes_its_settlements_quietly():
    """Nobody to pay: the funding clock moves on (the rate of each interval recorded, a new one
    begun) with no FundingSettled and no history, and the state is the same as when positions
    are settled, apart from the payments."""
    quiet, held = premium_venue(), held_venue()
    ev = quiet.submit(m.AdvanceClock(ts=24 * HOUR_NS + S))
    held.submit(m.AdvanceClock(ts=24 * HOUR_NS + S))
    assert not [e for e in ev if type(e) in (m.FundingSettled, m.FundingPaid)]
    # published at the step's end, as the clock left it
    assert of(ev, m.FundingRateUpdated)[-1] == \
        m.FundingRateUpdated(quiet.seq, 24 * HOUR_NS + S, BTC, 10_000, 32 * HOUR_NS)
    pricing = quiet.components["pricing"]
    assert pricing.funding_history(BTC) == []
    assert pricing.last_funding_rate(BTC) == 26_923
    assert pricing.next_funding_time(BTC) == 32 * HOUR_NS
    mine, theirs = pricing.symbols[BTC], held.components["pricing"].symbols[BTC]
    assert (mine.premium.count, mine.predicted, mine.basis_sum, mine.last_premium) == \
        (theirs.premium.count, theirs.predicted, theirs.basis_sum, theirs.last_premium)


def test_one_jump_equals_many_steps():
    one, many = premium_venue(), premium_venue()
    end = 17 * HOUR_NS
    one.submit(m.AdvanceClock(ts=end))
    t, steps = S, (3 * S, 7 * S + 1, 3600 * S, 1, 5 * HOUR_NS, 13 * S)
    while t < end:
        t = min(end, t + steps[t % len(steps)])
        many.submit(m.AdvanceClock(ts=t))
    assert one.components["pricing"].to_state() == many.components["pricing"].to_state()


def test_a_one_hour_interval_scales_interest_and_clamp():
    ex = held_venue(funding_interval_ns=HOUR_NS)
    ev = ex.submit(m.AdvanceClock(ts=3 * HOUR_NS))
    # F = 76923 + clamp(1250 - 76923, +-6250) = 70673 at 1, 2 and 3 h
    assert [(e.ts, e.rate) for e in of(ev, m.FundingSettled)] == \
        [(h * HOUR_NS, 70_673) for h in (1, 2, 3)]


def test_the_cap_binds():
    ex = held_venue(funding_cap=20_000)
    ev = ex.submit(m.AdvanceClock(ts=8 * HOUR_NS))
    assert of(ev, m.FundingSettled)[0].rate == 20_000


def test_settlement_moves_cash_between_positions_and_the_remainder_to_insurance():
    ex = premium_venue()
    ex.submit(m.CreateAccount(account=3))
    ex.submit(m.Deposit(account=3, asset="USD", amount=10**13))
    # account 3 buys 100 lots (0.1 BTC) from account 2's offer at 650900
    ev = ex.submit(m.PlaceOrder(account=3, symbol=BTC, side=m.Side.BUY, price=650900, qty=100,
                                tif=m.TimeInForce.IOC, ts=2 * S))
    assert of(ev, m.OrderFilled)
    cash = {a: ex.account(a).balances["USD"] for a in (1, 2, 3)}
    fund = ex.insurance_fund("USD")
    ev = ex.submit(m.AdvanceClock(ts=8 * HOUR_NS))
    # rate 0.026923%; mark = median(P1 = index at settlement = 650000, P2 = 650700, last 650900)
    # = 650700; 100 lots x 650700 ticks x 100 minor units per tick-lot x 26923e-8
    # = 1,751,879.61: the long pays 1,751,880, the short gets 1,751,879, 1 to the fund; payers
    # first (perpcore.funding)
    assert of(ev, m.FundingPaid) == [
        m.FundingPaid(ex.seq, 8 * HOUR_NS, BTC, 3, 100, 650700, 26_923, -1_751_880),
        m.FundingPaid(ex.seq, 8 * HOUR_NS, BTC, 2, -100, 650700, 26_923, 1_751_879)]
    assert of(ev, m.FundingSettled) == [
        m.FundingSettled(ex.seq, 8 * HOUR_NS, BTC, 26_923, 650700, 2, 1_751_880, 1_751_879, 1)]
    assert ex.account(1).balances["USD"] == cash[1]
    assert ex.account(2).balances["USD"] == cash[2] + 1_751_879
    assert ex.account(3).balances["USD"] == cash[3] - 1_751_880
    assert ex.insurance_fund("USD") == fund + 1
    ex.audit().check()


def test_an_empty_book_takes_no_premium_sample_and_a_one_sided_book_does():
    ex = Exchange(venue())
    ex.submit(m.CreateAccount(account=1))
    ex.submit(m.Deposit(account=1, asset="USD", amount=10**13))
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    ex.submit(m.AdvanceClock(ts=30 * S))
    pricing = ex.components["pricing"]
    assert pricing.symbols[BTC].premium.count == 0 and pricing.premium_index(BTC) is None
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=30 * S))
    ex.submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.BUY, price=650500, qty=1000,
                           ts=30 * S))
    ex.submit(m.AdvanceClock(ts=40 * S))
    # samples at 35 and 40 s: the bid side alone shows the premium
    assert pricing.symbols[BTC].premium.count == 2 and pricing.premium_index(BTC) == 76923
