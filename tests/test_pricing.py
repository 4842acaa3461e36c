"""Index and mark: the pure formulas with hand-computed figures, then the same through the Exchange
(SetIndexPrice, staleness on the clock, the mark's samples and its reaction to trades)."""
from fractions import Fraction

import msgspec
import pytest

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore.config import HOUR_NS, PricingSpec
from perpcore.pricing import fair_price, index_price, mark_price, median
from pricing_venue import venue

S = 1_000_000_000
BTC = "BTC-PERP"


def accounts(ex, *ids):
    """Accounts with 10M USD each, so margin never stands in the way of a scenario's orders."""
    for a in ids:
        ex.submit(m.CreateAccount(account=a))
        ex.submit(m.Deposit(account=a, asset="USD", amount=10**13))


def quote(ex, bid, ask, qty=1000, ts=S):
    """Account 1 bids, account 2 offers; qty lots each."""
    ex.submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.BUY, price=bid, qty=qty, ts=ts))
    ex.submit(m.PlaceOrder(account=2, symbol=BTC, side=m.Side.SELL, price=ask, qty=qty, ts=ts))


def of(events, cls):
    return [e for e in events if type(e) is cls]


# ---- pure formulas -------------------------------------------------------------------------------

def test_median_odd_and_even():
    assert median([3, 1, 2]) == 2
    assert median([1, 4]) == Fraction(5, 2)


def test_index_caps_an_outlier_at_median_plus_cap_then_weights():
    # median 652000; cap 1%: [645480, 658520]; 700000 is capped to 658520 and carries weight 2
    quotes = [(650000, 1), (652000, 1), (700000, 2)]
    assert index_price(quotes, 1_000_000) == (650000 + 652000 + 2 * 658520) // 4 == 654760


def test_index_caps_low_outliers_too():
    # median 652000; 600000 is capped up to 645480
    assert index_price([(600000, 1), (652000, 1), (653000, 1)], 1_000_000) == \
        round(Fraction(645480 + 652000 + 653000, 3)) == 650160


def test_index_rounds_half_to_even():
    # median 10.5, nothing capped at 50%: the average 10.5 rounds to 10
    assert index_price([(10, 1), (11, 1)], 50_000_000) == 10
    assert index_price([(11, 1), (12, 1)], 50_000_000) == 12


def test_fair_price_is_index_times_one_plus_rate_times_time_left():
    # 0.01% with half the interval left: +0.005%
    assert fair_price(100000, 10_000, 4 * HOUR_NS, 8 * HOUR_NS) == 100005
    assert fair_price(100000, -10_000, 8 * HOUR_NS, 8 * HOUR_NS) == 99990
    assert fair_price(100000, 10_000, 0, 8 * HOUR_NS) == 100000


def test_mark_methods():
    p1, p2 = Fraction(100005), Fraction(100020)
    assert mark_price("binance", 100000, p1, p2, 100010, None, None) == 100010
    assert mark_price("binance", 100000, p1, p2, 100100, None, None) == 100020
    # no trade yet: the mean of P1 and P2, 100012.5, rounds half to even
    assert mark_price("binance", 100000, p1, p2, None, None, None) == 100012
    assert mark_price("bitmex", 100000, Fraction(2000011, 20), p2, 100010, 1, 2) == 100001
    # hyperliquid: median(P2 = 100020, median(99990, 100030, 100050) = 100030, index 100000)
    assert mark_price("hyperliquid", 100000, p1, p2, 100050, 99990, 100030) == 100020
    # a wide local market pulls it no further than P2 or the oracle
    assert mark_price("hyperliquid", 100000, p1, p2, None, 90000, 99000) == 100000


def test_pricing_spec_refuses_bad_values():
    with pytest.raises(ValueError):
        PricingSpec(funding_interval_ns=3 * HOUR_NS)
    with pytest.raises(ValueError):
        PricingSpec(mark_method="last")
    with pytest.raises(ValueError):
        PricingSpec(index_sources=(("a", 1), ("a", 2)))
    with pytest.raises(ValueError):
        PricingSpec(mark_window_ns=1_500_000_000)


# ---- index through the exchange ------------------------------------------------------------------

def test_no_price_before_the_first_index():
    ex = Exchange(default_config())
    assert ex.index_price(BTC) is None and ex.mark_price(BTC) is None
    assert ex.components["pricing"].is_stale(BTC)


def test_set_index_weights_sources_and_caps():
    ex = Exchange(venue(index_sources=(("a", 1), ("b", 1), ("c", 2))))
    ev = ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    assert of(ev, m.IndexPriceUpdated) == [m.IndexPriceUpdated(1, S, BTC, 650000, 1)]
    ex.submit(m.SetIndexPrice(source="b", symbol=BTC, price=652000, ts=S))
    ev = ex.submit(m.SetIndexPrice(source="c", symbol=BTC, price=700000, ts=S))
    assert of(ev, m.IndexPriceUpdated)[0].price == 654760 == ex.index_price(BTC)
    assert of(ev, m.IndexPriceUpdated)[0].sources == 3
    assert not ex.components["pricing"].is_stale(BTC)


def test_unknown_source_and_bad_prices_are_refused_without_change():
    ex = Exchange(venue(index_sources=(("a", 1),)))
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    before = ex.state_hash()
    for cmd, code in [
        (m.SetIndexPrice(source="z", symbol=BTC, price=650000, ts=2 * S), m.RejectCode.MALFORMED),
        (m.SetIndexPrice(source="a", symbol="DOGE", price=1, ts=2 * S),
         m.RejectCode.UNKNOWN_SYMBOL),
        (m.SetIndexPrice(source="a", symbol=BTC, price=0, ts=2 * S), m.RejectCode.INVALID_PRICE),
        (m.SetIndexPrice(source="a", symbol=BTC, price=10**9, ts=2 * S),
         m.RejectCode.PRICE_OUT_OF_RANGE),
        (m.SetIndexPrice(source="a", symbol=BTC, price=1.5, ts=2 * S), m.RejectCode.MALFORMED),
        (m.SetIndexPrice(source="", symbol=BTC, price=650000, ts=2 * S), m.RejectCode.MALFORMED),
    ]:
        [e] = ex.submit(cmd)
        assert type(e) is m.OrderRejected and e.code == code
    assert ex.state_hash() == before and ex.clock == S


def test_a_silent_source_drops_out_and_the_rest_renormalise():
    ex = Exchange(venue(index_sources=(("a", 1), ("b", 3)), index_stale_ns=10 * S))
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    ex.submit(m.SetIndexPrice(source="b", symbol=BTC, price=651000, ts=5 * S))
    assert ex.index_price(BTC) == (650000 + 3 * 651000) // 4 == 650750
    # a's quote of t=1 s is fresh up to 11 s inclusive; at 11 s + 1 ns the index is b's alone
    assert of(ex.submit(m.AdvanceClock(ts=11 * S)), m.IndexPriceUpdated) == []
    ev = ex.submit(m.AdvanceClock(ts=12 * S))
    assert of(ev, m.IndexPriceUpdated) == [m.IndexPriceUpdated(ex.seq, 11 * S + 1, BTC, 651000, 1)]
    # b falls silent too at 15 s + 1 ns: stale, the last price kept, an event says so
    ev = ex.submit(m.AdvanceClock(ts=20 * S))
    assert of(ev, m.IndexStale) == [m.IndexStale(ex.seq, 15 * S + 1, BTC, 651000)]
    [mark] = of(ev, m.MarkPriceUpdated)
    assert mark.index_stale and mark.ts == 15 * S + 1
    assert ex.index_price(BTC) == 651000 and ex.components["pricing"].is_stale(BTC)
    # a fresh quote revives it even at the same price
    ev = ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=651000, ts=21 * S))
    assert of(ev, m.IndexPriceUpdated) == [m.IndexPriceUpdated(ex.seq, 21 * S, BTC, 651000, 1)]
    assert not ex.components["pricing"].is_stale(BTC)
    assert not of(ev, m.MarkPriceUpdated)[0].index_stale


def test_no_premium_or_basis_sample_against_a_stale_index():
    ex = Exchange(venue(index_stale_ns=10 * S))
    accounts(ex, 1, 2)
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    quote(ex, 650100, 650500)
    ex.submit(m.AdvanceClock(ts=100 * S))
    state = ex.components["pricing"].symbols[BTC]
    # samples at 5 and 10 s (premium), 2..11 s (basis); stale from 11 s + 1 ns
    assert state.premium.count == 2 and len(state.basis) == 10


# ---- mark through the exchange -------------------------------------------------------------------

def test_binance_mark_from_sampled_basis_and_last_trade():
    ex = Exchange(default_config())
    accounts(ex, 1, 2, 3)
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    quote(ex, 649900, 650300)
    ev = ex.submit(m.AdvanceClock(ts=11 * S))
    # ten basis samples (2..11 s) of mid - index = 100 ticks: P2 = 650100; the premium is 0
    # (the impact bid is under the index, the impact ask over it) so the rate is the interest,
    # 0.01%, and P1 = index x (1 + 0.0001 x (8 h - 11 s) / 8 h); no trade yet: mean(P1, P2)
    p1 = 650000 * (1 + Fraction(10_000, 10**8) * Fraction(8 * 3600 - 11, 8 * 3600))
    expected = round((p1 + 650100) / 2)
    assert expected == 650082
    assert of(ev, m.MarkPriceUpdated)[-1].price == expected == ex.mark_price(BTC)
    assert ex.funding_rate(BTC) == 10_000
    # a trade at 650300: median(P1 = 650064.98, P2 = 650100, last = 650300) = P2
    ev = ex.submit(m.PlaceOrder(account=3, symbol=BTC, side=m.Side.BUY, price=650300, qty=10,
                                ts=11 * S))
    assert of(ev, m.MarkPriceUpdated) == \
        [m.MarkPriceUpdated(ex.seq, 11 * S, BTC, 650100, 650000, False)]


def test_basis_average_is_a_moving_window():
    ex = Exchange(venue(mark_window_ns=3 * S))
    accounts(ex, 1, 2)
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    quote(ex, 649900, 650300)                       # basis 100 ticks
    ex.submit(m.AdvanceClock(ts=10 * S))
    ex.submit(m.CancelAll(account=2, symbol=BTC, ts=10 * S))
    ex.submit(m.PlaceOrder(account=2, symbol=BTC, side=m.Side.SELL, price=650500, qty=1000,
                           ts=10 * S))               # basis 200 ticks from now on
    state = ex.components["pricing"].symbols[BTC]
    ex.submit(m.AdvanceClock(ts=12 * S))
    assert list(state.basis) == [200, 400, 400]     # half ticks: 9..10 s old, 11..12 s new
    ex.submit(m.AdvanceClock(ts=40 * S))
    assert list(state.basis) == [400, 400, 400]


def test_bitmex_mark_is_the_fair_price():
    ex = Exchange(venue(mark_method="bitmex"))
    ev = ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=4 * HOUR_NS))
    # the funding clock starts at 4 h: 4 h to the 8 h settlement, half the interval, at 0.01%
    assert of(ev, m.MarkPriceUpdated)[0].price == 650032     # 650032.5 rounds half to even
    # the quote went stale after a minute, freezing the mark; a fresh one at 6 h: 2 h left
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=6 * HOUR_NS))
    assert ex.mark_price(BTC) == 650016                      # 650016.25


def test_hyperliquid_mark_follows_the_book():
    ex = Exchange(venue(mark_method="hyperliquid"))
    accounts(ex, 1, 2)
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    quote(ex, 650200, 650400)
    # no basis sample yet: P2 = index; median(650000, median(bid, ask) = 650300, 650000)
    assert ex.mark_price(BTC) == 650000
    ex.submit(m.AdvanceClock(ts=400 * S))
    # a full window of basis 300: P2 = 650300 = the book's median; the mark follows
    assert ex.mark_price(BTC) == 650300
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=400 * S))
    ex.submit(m.CancelAll(account=2, symbol=BTC, ts=400 * S))
    ev = ex.submit(m.PlaceOrder(account=2, symbol=BTC, side=m.Side.SELL, price=650250, qty=10,
                                ts=400 * S))
    # the book alone moves it: median(650300, median(650200, 650250) = 650225, 650000)
    assert of(ev, m.MarkPriceUpdated)[0].price == 650225
    ex.submit(m.CancelAll(account=2, symbol=BTC, ts=400 * S))
    ex.submit(m.PlaceOrder(account=2, symbol=BTC, side=m.Side.SELL, price=650400, qty=10,
                           ts=400 * S))
    # no bids left: median(650300, ask 650400, 650000) = 650300, unchanged, so no event
    assert of(ex.submit(m.CancelAll(account=1, symbol=BTC, ts=400 * S)), m.MarkPriceUpdated) == []
    ev = ex.submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.BUY, price=649000, qty=10,
                                ts=400 * S))
    # the book's median(649000, 650400) = 649700 is below the oracle: the oracle is the median
    assert of(ev, m.MarkPriceUpdated)[0].price == 650000 == ex.mark_price(BTC)


def test_pricing_state_round_trips_and_hashes():
    ex = Exchange(default_config())
    accounts(ex, 1, 2)
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    quote(ex, 650100, 650500)
    ex.submit(m.AdvanceClock(ts=9 * HOUR_NS))
    state = ex.components["pricing"].to_state()
    other = Exchange(default_config())
    other.components["pricing"].from_state(msgspec.msgpack.decode(msgspec.msgpack.encode(state)))
    assert other.components["pricing"].to_state() == state
    assert other.mark_price(BTC) == ex.mark_price(BTC)
    assert other.components["pricing"].funding_history(BTC) == \
        ex.components["pricing"].funding_history(BTC)


def test_a_restored_exchange_values_and_funds_as_the_original_does():
    ex = Exchange(venue(index_stale_ns=10**6 * S))
    accounts(ex, 1, 2, 3)
    ex.submit(m.SetIndexPrice(source="a", symbol=BTC, price=650000, ts=S))
    quote(ex, 650100, 650500)
    ex.submit(m.PlaceOrder(account=3, symbol=BTC, side=m.Side.BUY, price=650500, qty=10,
                           ts=2 * S))
    ex.submit(m.AdvanceClock(ts=3 * HOUR_NS + 7 * S))
    restored = Exchange.restore(ex.config, ex.snapshot())
    for cmd in (m.SetIndexPrice(source="a", symbol=BTC, price=650300, ts=4 * HOUR_NS),
                m.AdvanceClock(ts=9 * HOUR_NS)):
        assert restored.submit(cmd) == ex.submit(cmd)
    assert restored.state_hash() == ex.state_hash()
    assert restored.components["pricing"].funding_history(BTC) == \
        ex.components["pricing"].funding_history(BTC) != []
