"""Index and mark: the pure formulas with hand-computed figures, then the same through the Exchange
(SetIndexPrice, staleness on the clock, the mark's samples and its reaction to trades); the integer
mark against the exact Fraction formula it replaced, alone and through random venues."""
from fractions import Fraction
from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore import pricing
from perpcore.config import FUNDING_INTERVALS_NS, HOUR_NS, MARK_METHODS, RATE_SCALE, PricingSpec
from perpcore.pricing import (basis_price, fair_price, fair_price_span, index_price, mark_price,
                              median, round_half_even)
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


def test_round_half_even():
    assert [round_half_even(n, 2) for n in (-3, -1, 1, 3, 5)] == [-2, 0, 0, 2, 2]
    assert round_half_even(7, 3) == 2 and round_half_even(-7, 3) == -2
    assert round_half_even(10, 5) == 2


def test_fair_price_is_index_times_one_plus_rate_times_time_left():
    # 0.01% with half the interval left: +0.005%
    assert fair_price(100000, 10_000, 4 * HOUR_NS, 8 * HOUR_NS) == 100005
    assert fair_price(100000, -10_000, 8 * HOUR_NS, 8 * HOUR_NS) == 99990
    assert fair_price(100000, 10_000, 0, 8 * HOUR_NS) == 100000
    # 650032.5 and 650016.25 round to the nearest tick, a tie to the even one
    assert fair_price(650000, 10_000, 4 * HOUR_NS, 8 * HOUR_NS) == 650032
    assert fair_price(650000, 10_000, 2 * HOUR_NS, 8 * HOUR_NS) == 650016


def test_fair_price_span_is_where_the_rounded_fair_price_holds():
    # 0.01% of 650000 over 8 h: 65 ticks, one per 8 h / 65 of time left. At 4 h 650032.5 rounds
    # down to the even 650032, which holds from 650031.5 (a tie to the even 650032) to 650032.5
    p1, shortest, longest = fair_price_span(650000, 10_000, 4 * HOUR_NS, 8 * HOUR_NS)
    assert p1 == 650032
    assert (shortest, longest) == (8 * HOUR_NS * 63 // 130 + 1, 4 * HOUR_NS)
    assert fair_price(650000, 10_000, shortest - 1, 8 * HOUR_NS) == 650031
    assert fair_price(650000, 10_000, longest + 1, 8 * HOUR_NS) == 650033
    # no rate: the index at any time
    assert fair_price_span(650000, 0, 123, 8 * HOUR_NS)[0] == 650000


def test_basis_price_is_the_index_plus_the_mean_basis():
    # basis samples in half ticks: 41 / 2 = 20.5 -> 100020 (a tie to the even one)
    assert basis_price(100000, 41, 1) == 100020
    assert basis_price(100000, 43, 1) == 100022
    assert basis_price(100000, 0, 0) == 100000


def test_mark_methods():
    # P1 = 100005 (0.01% with half of 8 h left); P2 = 100000 + 40 / 2 = 100020 (one basis sample)
    p = (100000, 10_000, 4 * HOUR_NS, 8 * HOUR_NS, 40, 1)
    assert mark_price("binance", *p, 100010, None, None) == 100010
    assert mark_price("binance", *p, 100100, None, None) == 100020
    # no trade yet: the mean of P1 and P2, 100012.5, rounds half to even
    assert mark_price("binance", *p, None, None, None) == 100012
    # P1 = 100000 x (1 + 0.0000055) = 100000.55
    assert mark_price("bitmex", 100000, 550, 8 * HOUR_NS, 8 * HOUR_NS, 40, 1, 100010, 1, 2) == \
        100001
    # hyperliquid: median(P2 = 100020, median(99990, 100030, 100050) = 100030, index 100000)
    assert mark_price("hyperliquid", *p, 100050, 99990, 100030) == 100020
    # a wide local market pulls it no further than P2 or the oracle
    assert mark_price("hyperliquid", *p, None, 90000, 99000) == 100000
    # nothing local: the mean of P2 = 100021 and the index, 100010.5, rounds half to even
    assert mark_price("hyperliquid", 100000, 10_000, HOUR_NS, 8 * HOUR_NS, 42, 1, None, None,
                      None) == 100010


# ---- the integer mark against the exact formula it replaced --------------------------------------

def ref_median(values: list) -> Fraction:
    v = sorted(values)
    mid = len(v) // 2
    return Fraction(v[mid]) if len(v) % 2 else Fraction(v[mid - 1] + v[mid], 2)


def ref_fair(index: int, rate: int, time_to_funding: int, interval: int) -> Fraction:
    """P1 = index x (1 + rate x time to funding / interval), exactly."""
    scale = RATE_SCALE * interval
    return Fraction(index) * (scale + rate * time_to_funding) / scale


def ref_mark(method: str, index: int, rate: int, time_to_funding: int, interval: int,
             basis_sum: int, samples: int, last, bid, ask) -> int:
    """The mark as Fractions: P1, P2 = index + basis_sum / (2 x samples); the medians of the
    methods, rounded half to even (at least 1)."""
    p1 = ref_fair(index, rate, time_to_funding, interval)
    p2 = index + Fraction(basis_sum, 2 * samples) if samples else Fraction(index)
    if method == "bitmex":
        value = p1
    elif method == "index":
        value = Fraction(index)
    elif method == "binance":
        value = ref_median([x for x in (p1, p2, last) if x is not None])
    else:
        local = [x for x in (bid, ask, last) if x is not None]
        value = ref_median([p2, index] + ([ref_median(local)] if local else []))
    return max(1, round(value))


prices = st.one_of(st.integers(1, 2_000), st.integers(1, 10**9))
maybe = st.one_of(st.none(), prices)


@st.composite
def mark_inputs(draw):
    """Mark inputs, with times to funding at simple fractions of the interval and round rates so
    that ties (a half tick) come up."""
    interval = draw(st.sampled_from(FUNDING_INTERVALS_NS))
    index = draw(prices)
    rate = draw(st.one_of(st.integers(-10**7, 10**7),
                          st.sampled_from([k * 2_500 for k in range(-8, 9)])))
    ttf = draw(st.one_of(st.integers(0, interval),
                         st.integers(0, 16).map(lambda k: interval * k // 16)))
    samples = draw(st.integers(0, 300))
    basis_sum = draw(st.integers(-2 * index * samples, 10**6 * samples)) if samples else 0
    return interval, index, rate, ttf, samples, basis_sum


@settings(max_examples=1500)
@given(st.sampled_from(MARK_METHODS), mark_inputs(), maybe, maybe, maybe)
@example("bitmex", (8 * HOUR_NS, 650000, 10_000, 4 * HOUR_NS, 0, 0), None, None, None)
@example("binance", (8 * HOUR_NS, 100000, 10_000, 4 * HOUR_NS, 1, 40), None, None, None)
@example("hyperliquid", (8 * HOUR_NS, 100000, 0, 0, 1, 42), None, None, None)
@example("hyperliquid", (8 * HOUR_NS, 100000, 0, 0, 2, 3), None, 99999, 100002)
def test_integer_mark_is_the_fraction_formula(method, inputs, last, bid, ask):
    interval, index, rate, ttf, samples, basis_sum = inputs
    assert mark_price(method, index, rate, ttf, interval, basis_sum, samples, last, bid, ask) == \
        ref_mark(method, index, rate, ttf, interval, basis_sum, samples, last, bid, ask)


@settings(max_examples=500)
@given(mark_inputs(), st.randoms(use_true_random=False))
def test_fair_price_span_is_exactly_where_the_fair_price_holds(inputs, rnd):
    interval, index, rate, ttf, _, _ = inputs
    p1, shortest, longest = fair_price_span(index, rate, ttf, interval)
    assert p1 == fair_price(index, rate, ttf, interval) == round(ref_fair(index, rate, ttf, interval))
    assert shortest <= ttf <= longest
    if not rate:
        assert (shortest, longest) == (-pricing._NEVER, pricing._NEVER)
        return
    for u in (shortest, longest, rnd.randint(shortest, longest)):
        assert fair_price(index, rate, u, interval) == p1
    assert fair_price(index, rate, shortest - 1, interval) != p1
    assert fair_price(index, rate, longest + 1, interval) != p1


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
    ex.submit(m.PlaceOrder(account=1, symbol=BTC, side=m.Side.BUY, price=650500, qty=1, ts=S))
    ex.submit(m.AdvanceClock(ts=9 * HOUR_NS))
    state = ex.components["pricing"].to_state()
    other = Exchange(default_config())
    # valued at another index first: nothing of it may survive the restore
    other.submit(m.SetIndexPrice(source="a", symbol=BTC, price=600000, ts=9 * HOUR_NS))
    other.components["pricing"].from_state(msgspec.msgpack.decode(msgspec.msgpack.encode(state)))
    assert other.components["pricing"].to_state() == state
    assert other.mark_price(BTC) == ex.mark_price(BTC)
    # the funding history is not state (the journal's events hold it): it restarts at the restore
    assert other.components["pricing"].funding_history(BTC) == [] != \
        ex.components["pricing"].funding_history(BTC)
    mine, theirs = ex.components["pricing"].symbols[BTC], other.components["pricing"].symbols[BTC]
    for t in (9 * HOUR_NS, 12 * HOUR_NS):
        assert theirs.compute_mark(t) == mine.compute_mark(t) > 600100


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


# ---- stage 5 through random venues, against the Fraction mark and the event scan it replaced ----

def ref_compute_mark(self, t):
    if self.index is None:
        return None
    return ref_mark(self.spec.mark_method, self.index, self.predicted, self.next_funding - t,
                    self.spec.funding_interval_ns, self.basis_sum, len(self.basis),
                    self.last_trade, self.book.best_bid(), self.book.best_ask())


def ref_publish(self, seq, t, events):
    self.mark = self.compute_mark(t)
    mark, stale, rate = self.published
    if self.mark is not None and (self.mark != mark or self.index_stale != stale):
        events.append(m.MarkPriceUpdated(seq, t, self.symbol, self.mark, self.index,
                                         self.index_stale))
    now_rate = (self.predicted, self.next_funding)
    if self.index is not None and now_rate != rate:
        events.append(m.FundingRateUpdated(seq, t, self.symbol, self.predicted, self.next_funding))
    self.published = (self.mark, self.index_stale, now_rate)


def ref_after_command(self, events):
    touched = {}
    for e in events:
        if type(e) is m.OrderFilled:
            touched[e.symbol] = e.price
        elif type(e) in (m.OrderAccepted, m.OrderCancelled, m.OrderAmended):
            touched.setdefault(e.symbol, None)
    for symbol in sorted(touched):
        s = self.symbols[symbol]
        if touched[symbol] is not None:
            s.last_trade = touched[symbol]
        elif s.spec.mark_method != "hyperliquid":
            continue
        s.publish(self.exchange.seq, self.exchange.clock, events)


def reference_stage5():
    """The mark as Fractions on every call, and stage 5's scan of every event, patched in."""
    return mock.patch.multiple(pricing.SymbolPricing, compute_mark=ref_compute_mark,
                               publish=ref_publish), \
        mock.patch.object(pricing.Pricing, "after_command", ref_after_command)


MIDS = {BTC: 650_000, "ETH-PERP": 340_000}
order_step = st.tuples(st.just("order"), st.integers(0, 1), st.integers(1, 4),
                       st.sampled_from([m.Side.BUY, m.Side.SELL]), st.integers(-40, 40),
                       st.integers(1, 30))
step_st = st.one_of(
    # (kind, symbol index, account, side, price offset, qty or clock step)
    order_step, order_step, order_step,
    st.tuples(st.just("index"), st.integers(0, 1), st.sampled_from(["a", "b"]),
              st.just(0), st.integers(-300, 300), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, 1), st.integers(1, 4), st.just(0), st.just(0),
              st.just(0)),
    st.tuples(st.just("clock"), st.just(0), st.just(0), st.just(0), st.just(0),
              st.sampled_from([1, 999, S // 3, S, 7 * S, 61 * S, 20 * 60 * S, HOUR_NS])))


def venue_commands(steps, t=S, depth=50, indexed=True):
    """Accounts 1-4, each symbol's index at t (unless not `indexed`: until an index step sets it)
    and account 4's book of `depth` lots a side around it, then the steps."""
    cmds = []
    for a in range(1, 5):
        cmds += [m.CreateAccount(account=a), m.Deposit(account=a, asset="USD", amount=10**13)]
    for symbol, mid in MIDS.items():     # an index and a two-sided book to start from
        cmds += [m.SetIndexPrice(source="a", symbol=symbol, price=mid, ts=t)] if indexed else []
        cmds += [m.PlaceOrder(account=4, symbol=symbol, side=m.Side.BUY, price=mid - 20,
                              qty=depth, ts=t),
                 m.PlaceOrder(account=4, symbol=symbol, side=m.Side.SELL, price=mid + 20,
                              qty=depth, ts=t)]
    for kind, k, who, side, offset, n in steps:
        symbol = sorted(MIDS)[k]
        if kind == "order":
            cmds.append(m.PlaceOrder(account=who, symbol=symbol, side=side, qty=n, ts=t,
                                     price=MIDS[symbol] + offset))
        elif kind == "index":
            cmds.append(m.SetIndexPrice(source=who, symbol=symbol, price=MIDS[symbol] + offset,
                                        ts=t))
        elif kind == "cancel":
            cmds.append(m.CancelAll(account=who, symbol=symbol, ts=t))
        else:
            t += n
            cmds.append(m.AdvanceClock(ts=t))
    return cmds


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MARK_METHODS), st.sampled_from(MARK_METHODS),
       st.lists(step_st, min_size=20, max_size=80), st.booleans())
def test_stage5_is_the_fraction_formula_and_full_scan_on_random_venues(btc, eth, steps, indexed):
    """Marks, funding and every event, command by command, as the Fraction formula recomputed on
    every call and the scan of every event decide (each symbol its own method; a one-hour
    interval to cross settlements), from the start or from an index step on (trades with no
    index publish no mark)."""
    cfg = default_config()
    cfg = msgspec.structs.replace(cfg, instruments={
        s: msgspec.structs.replace(spec, pricing=msgspec.structs.replace(
            spec.pricing, mark_method=method, funding_interval_ns=HOUR_NS,
            mark_window_ns=30 * S, index_sources=(("a", 1), ("b", 2))))
        for (s, spec), method in zip(sorted(cfg.instruments.items()), (btc, eth))})
    cmds = venue_commands(steps, indexed=indexed)
    ex = Exchange(cfg)
    got = [ex.submit(c) for c in cmds]
    ref = Exchange(cfg)
    patch_symbol, patch_pricing = reference_stage5()
    with patch_symbol, patch_pricing:
        want = [ref.submit(c) for c in cmds]
    for c, g, w in zip(cmds, got, want):
        assert g == w, c
    assert ex.state_hash() == ref.state_hash()
    for symbol, s in ex.components["pricing"].symbols.items():
        # and at later times, where the cached fair price must be worked out afresh or not
        for t in (ex.clock, ex.clock + 1, ex.clock + S, max(s.next_funding, ex.clock)):
            assert s.compute_mark(t) == ref_compute_mark(s, t), (symbol, t)
