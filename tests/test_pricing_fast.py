"""Stage 5's C path (perpcore._pricing): the median-of-three mark over int64 against
perpcore.pricing.median_mark, and PricingCore.after_command against the plain Python pass it
replaced (every attribute read as an object, the mark by median_mark) on states with values up to
and beyond 64 bits, None where the venue allows it, and event lists that interleave symbols."""
import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore._pricing import median_mark_c
from perpcore.config import MARK_METHODS
from perpcore.pricing import median_mark

INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
NEVER = 1 << 127
SYMBOLS = ("BTC-PERP", "ETH-PERP")

# int64 values, crowded at the ends and around zero and one (the mark's floor)
int64s = st.one_of(st.integers(INT64_MIN, INT64_MAX), st.integers(-3, 3),
                   st.integers(INT64_MAX - 3, INT64_MAX), st.integers(INT64_MIN, INT64_MIN + 3))
prices = st.one_of(st.integers(1, INT64_MAX), st.integers(1, 3),
                   st.integers(INT64_MAX - 3, INT64_MAX))        # an index, a trade: 1..max_price


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(["binance", "bitmex", "index"]), prices, int64s, int64s, prices)
@example("binance", INT64_MAX, INT64_MIN, INT64_MAX, INT64_MAX)
@example("binance", 1, INT64_MAX, INT64_MIN, 1)
@example("bitmex", 1, INT64_MIN, 0, 1)
@example("index", INT64_MAX, 0, 0, 1)
def test_the_c_median_is_median_mark(method, index, p1, p2, last):
    assert median_mark_c(method, index, p1, p2, last) == \
        median_mark(method, index, p1, p2, last, None, None)


def test_the_c_median_leaves_hyperliquid_to_python():
    assert median_mark_c("hyperliquid", 100, 101, 102, 103) is None
    assert median_mark("hyperliquid", 100, 101, 102, 103, None, None) == 102
    assert set(MARK_METHODS) == {"binance", "bitmex", "index", "hyperliquid"}


# ---- the pass it replaced ----------------------------------------------------------------------

def plain_unmoved(self, state, price):
    """PricingCore.unmoved as it was: Python objects throughout, the mark by median_mark."""
    if state.book_moves:
        return False
    old, stale, rate = state.published
    if state.index_stale != stale or rate is None or rate[0] != state.predicted \
            or rate[1] != state.next_funding:
        return False
    index = state.index
    if index is None:
        mark = None
        if old is not None:
            return False
    else:
        t = self.exchange.clock
        if not state.p_from <= t <= state.p_until:
            return False
        mark = median_mark(state.spec.mark_method, index, state.p1, state.p2, price, None, None)
        if mark is None or mark != old:
            return False
    state.last_trade = price
    state.mark = mark
    return True


def plain_after_command(self, events):
    touched = None
    for e in events:
        kind = type(e)
        if kind is m.OrderFilled:
            if touched is None:
                touched = {}
            touched[e.symbol] = e.price
        elif self.book_moves and kind in (m.OrderAccepted, m.OrderCancelled, m.OrderAmended):
            if touched is None:
                touched = {}
            touched.setdefault(e.symbol, None)
    if touched is None:
        return
    for symbol in sorted(touched):
        price = touched[symbol]
        if price is None or not plain_unmoved(self, self.symbols[symbol], price):
            self.market_moved(symbol, price, events)


# ---- states and event lists -----------------------------------------------------------------------

def wide(near):
    """An int near `near` (often it), anywhere in 64 bits, or beyond them."""
    return st.one_of(st.just(near), st.integers(near - 2, near + 2), int64s,
                     st.integers(-2**80, 2**80), st.sampled_from([NEVER, -NEVER]))


@st.composite
def symbol_states(draw, t, method):
    """What stage 5 reads of a symbol: half the time consistent within 64 bits, a trade at `last`
    then leaving the mark as published (unless it moves with the book); else anything the fields
    can hold, each near its consistent value or not."""
    index = draw(st.one_of(st.none(), prices))
    predicted, next_funding = draw(int64s), draw(st.integers(t, INT64_MAX))
    p1, p2 = draw(int64s), draw(int64s)
    p_from, p_until = draw(st.integers(INT64_MIN, t)), draw(st.integers(t, INT64_MAX))
    stale = draw(st.booleans())
    last = draw(prices)
    mark = None
    if index is not None:
        mark = median_mark(method, index, p1, p2, last, None, None) or \
            median_mark(method, index, p1, p2, last, last, last)
    state = dict(index=index, index_stale=stale, predicted=predicted, next_funding=next_funding,
                 p1=p1, p2=p2, p_from=p_from, p_until=p_until,
                 published=(mark, stale, (predicted, next_funding)))
    if draw(st.booleans()):
        return state, last
    for name in ("predicted", "next_funding", "p1", "p2", "p_from", "p_until"):
        state[name] = draw(wide(state[name]))
    state["published"] = (draw(st.one_of(st.none(), wide(mark or 0))), draw(st.booleans()),
                          draw(st.one_of(st.none(), st.tuples(wide(predicted),
                                                              wide(next_funding)))))
    return state, last


def event_lists(lasts):
    """Fills of both symbols (runs, interleaved), book events, and others, in any order."""
    fill = st.builds(lambda k, p: m.OrderFilled(7, 0, SYMBOLS[k], p, 1, m.Side.BUY, 1, 2, 1, 2,
                                                0, 0),
                     st.integers(0, 1), st.one_of(st.sampled_from(lasts), prices))
    book = st.builds(lambda k: m.OrderCancelled(7, 0, 1, SYMBOLS[k], 3, 1, "user"),
                     st.integers(0, 1))
    accepted = st.builds(lambda k: m.OrderAccepted(7, 0, 1, SYMBOLS[k], 4, 0, m.Side.SELL, 5, 1,
                                                   m.OrderType.LIMIT, m.TimeInForce.GTC),
                         st.integers(0, 1))
    other = st.just(m.IndexStale(7, 0, SYMBOLS[0], 1))
    return st.lists(st.one_of(fill, fill, book, accepted, other), max_size=12)


def venue(btc, eth):
    cfg = default_config()
    return msgspec.structs.replace(cfg, instruments={
        s: msgspec.structs.replace(spec, pricing=msgspec.structs.replace(spec.pricing,
                                                                         mark_method=method))
        for (s, spec), method in zip(sorted(cfg.instruments.items()), (btc, eth))})


def pricing_at(cfg, t, states):
    ex = Exchange(cfg)
    ex._restore_counters(7, t, 1)
    pricing = ex.components["pricing"]
    for symbol, fields in zip(SYMBOLS, states):
        for name, value in fields.items():
            setattr(pricing.symbols[symbol], name, value)
    return pricing


FIELDS = ("index", "index_stale", "mark", "last_trade", "predicted", "next_funding", "p1", "p2",
          "p_from", "p_until", "published")


@st.composite
def scenarios(draw):
    methods = draw(st.sampled_from(MARK_METHODS)), draw(st.sampled_from(MARK_METHODS))
    t = draw(st.one_of(st.integers(0, INT64_MAX), st.sampled_from([0, INT64_MAX])))
    (btc, btc_last), (eth, eth_last) = [draw(symbol_states(t, method)) for method in methods]
    return methods, t, (btc, eth), draw(event_lists([btc_last, eth_last]))


@settings(max_examples=600, deadline=None)
@given(scenarios())
def test_stage5_in_c_is_the_plain_pass(scenario):
    """The same events, in the same order, and the same state of every field stage 5 reads or
    writes, from any state: the int64 path where every value fits, publish's where one does
    not."""
    (btc, eth), t, states, events = scenario
    cfg = venue(btc, eth)
    fast, plain = pricing_at(cfg, t, states), pricing_at(cfg, t, states)
    got, want = list(events), list(events)
    fast.after_command(got)
    plain_after_command(plain, want)
    assert got == want
    for symbol in SYMBOLS:
        mine, theirs = fast.symbols[symbol], plain.symbols[symbol]
        assert [getattr(mine, f) for f in FIELDS] == [getattr(theirs, f) for f in FIELDS]
        assert mine.to_state() == theirs.to_state()


def test_a_trade_at_the_published_mark_publishes_nothing_within_64_bits_and_beyond():
    """A trade that leaves the mark publishes nothing either way; with P1 past 64 bits (a venue's
    funding cap allows any rate) the answer is publish's, the same."""
    cfg = venue("bitmex", "bitmex")
    for p1 in (650_123, 2**64 + 650_123):
        state = dict(index=650_000, index_stale=False, predicted=10_000, next_funding=10,
                     p1=p1, p2=650_000, p_from=0, p_until=10, published=(p1, False, (10_000, 10)))
        fast, plain = pricing_at(cfg, 5, (state, {})), pricing_at(cfg, 5, (state, {}))
        fill = m.OrderFilled(7, 5, SYMBOLS[0], 650_050, 1, m.Side.BUY, 1, 2, 1, 2, 0, 0)
        got, want = [fill], [fill]
        fast.after_command(got)
        plain_after_command(plain, want)
        assert got == want == [fill]
        assert fast.symbols[SYMBOLS[0]].mark == plain.symbols[SYMBOLS[0]].mark == p1
        assert fast.symbols[SYMBOLS[0]].last_trade == 650_050
