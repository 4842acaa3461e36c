"""Time cannot be a weapon: a step of the clock costs one turn per settlement that moves money (a
held symbol's funding, a loan's interest) and per index staleness expiry, whatever the number of
funding intervals, samples or interest hours it crosses; the first command at an epoch time settles
nothing for the time before it. Counted in loop turns and events, never in wall time."""
from unittest import mock

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpcore import messages as m
from perpcore.config import DAY_NS, HOUR_NS, MARK_METHODS, default_config
from perpcore.exchange import Exchange
from perpcore.lending import Lending
from perpcore.ledger import Ledger
from perpcore.pricing import SymbolPricing
from test_pricing import MIDS, venue_commands

S = 1_000_000_000
BTC, ETH = "BTC-PERP", "ETH-PERP"
EPOCH = 1_700_000_000_000_000_000       # 2023-11-14 22:13:20 UTC, on no hour boundary
MAX_STEP = default_config().limits.max_time_step_ns


def of(events, kind):
    return [e for e in events if type(e) is kind]


def counting(method: str):
    """Patches a SymbolPricing method with itself, counting its calls (the loop's turns)."""
    return mock.patch.object(SymbolPricing, method, autospec=True,
                             side_effect=getattr(SymbolPricing, method))


# ---- the reference: the plain loop ---------------------------------------------------------------

def plain_skip(self, a, t):
    """Every settlement before t of a symbol nobody holds, one turn each: what skip() does in
    O(1)."""
    while self.next_funding < t:
        due = self.next_funding
        self.sample(a, due)
        self.close_interval(due)
        a = due
    return a


def plain_add_basis(self, value, k):
    """SymbolPricing.add_basis one sample at a time."""
    for _ in range(k):
        if len(self.basis) == self.basis.maxlen:
            self.basis_sum -= self.basis[0]
        self.basis.append(value)
        self.basis_sum += value


def two_symbol_venue(btc, eth, stale):
    """BTC and ETH with their (funding interval, mark method)."""
    cfg = default_config()
    return msgspec.structs.replace(cfg, instruments={
        symbol: msgspec.structs.replace(spec, pricing=msgspec.structs.replace(
            spec.pricing, funding_interval_ns=interval, mark_method=method, index_stale_ns=stale,
            mark_sample_ns=60 * S, mark_window_ns=2 * HOUR_NS,      # a window over intervals
            index_sources=(("a", 1), ("b", 2))))
        for (symbol, spec), (interval, method) in zip(sorted(cfg.instruments.items()),
                                                      (btc, eth))})


step_st = st.one_of(
    # (kind, symbol index, account or source, side, price offset, qty or clock step), as
    # test_pricing.venue_commands takes them
    st.tuples(st.just("order"), st.integers(0, 1), st.integers(1, 3),
              st.sampled_from([m.Side.BUY, m.Side.SELL]), st.integers(-30, 30), st.just(3)),
    st.tuples(st.just("index"), st.integers(0, 1), st.sampled_from(["a", "b"]), st.just(0),
              st.integers(-300, 300), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, 1), st.integers(1, 4), st.just(0), st.just(0),
              st.just(0)),
    st.tuples(st.just("clock"), st.just(0), st.just(0), st.just(0), st.just(0),
              st.sampled_from([1, S, 61 * S, HOUR_NS, 3 * HOUR_NS + 7 * S, DAY_NS,
                               5 * DAY_NS // 2, MAX_STEP])))
DEEP = 1000     # lots a side: enough for the impact notional, so premium samples are taken


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(st.sampled_from([HOUR_NS, 8 * HOUR_NS]), st.sampled_from(MARK_METHODS)),
       st.tuples(st.sampled_from([HOUR_NS, 2 * HOUR_NS]), st.sampled_from(MARK_METHODS)),
       st.sampled_from([30 * S, 10 * 60 * S, 3 * HOUR_NS, 10 * DAY_NS]),
       st.lists(step_st, min_size=5, max_size=40))
def test_the_o1_crossing_equals_the_plain_loop(btc, eth, stale, steps):
    """Random venues (a held or unheld symbol each, any mark method, a mark window longer than an
    interval, index quotes going stale inside long steps): every event of every command, and the
    state, as when every quiet settlement and every sample is walked one by one."""
    cfg = two_symbol_venue(btc, eth, stale)
    cmds = venue_commands(steps, depth=DEEP)
    fast, plain = Exchange(cfg), Exchange(cfg)
    got = [fast.submit(c) for c in cmds]
    with mock.patch.multiple(SymbolPricing, skip=plain_skip, add_basis=plain_add_basis):
        want = [plain.submit(c) for c in cmds]
    for c, g, w in zip(cmds, got, want):
        assert g == w, c
    assert fast.state_hash() == plain.state_hash()
    fast.audit().check()


# ---- what a step costs ---------------------------------------------------------------------------

def held_venue(t=S, config=None):
    """Both symbols priced from t; accounts 1 and 2 hold BTC (1 lot), nobody holds ETH."""
    ex = Exchange(config or default_config())
    for cmd in venue_commands([], t, DEEP) + [
            m.PlaceOrder(account=1, symbol=BTC, side=m.Side.BUY, price=MIDS[BTC] + 20, qty=1,
                         ts=t)]:
        assert type(ex.submit(cmd)[0]) is not m.OrderRejected, cmd
    assert ex.margin.open_positions(BTC) == [(1, 1), (4, -1)] and not ex.margin.open_positions(ETH)
    return ex


def test_a_longest_step_takes_one_turn_per_settlement_of_a_held_symbol():
    ex = held_venue()
    with counting("step") as step, counting("settle") as settle:
        ev = ex.submit(m.AdvanceClock(ts=S + MAX_STEP))
    crossed = (S + MAX_STEP) // (8 * HOUR_NS)           # 21 settlements of each symbol
    assert [e.symbol for e in of(ev, m.FundingSettled)] == [BTC] * crossed
    assert settle.call_count == crossed
    # instants: BTC's settlements, the quotes' staleness (60 s, both at once) and the end; both
    # symbols are looked at in each
    assert step.call_count == 2 * (crossed + 2)
    ex.audit().check()


def test_a_longest_step_with_nobody_holding_takes_constant_turns():
    ex = Exchange(default_config())
    for cmd in venue_commands([], depth=DEEP):
        ex.submit(cmd)
    with counting("step") as step, counting("skip") as skip:
        ev = ex.submit(m.AdvanceClock(ts=S + MAX_STEP))
    assert of(ev, m.FundingSettled) == [] and of(ev, m.IndexStale) != []
    assert step.call_count == 2 * 2 and skip.call_count == 2      # staleness, then the end
    pricing = ex.components["pricing"]
    assert pricing.next_funding_time(BTC) == pricing.next_funding_time(ETH) == \
        ((S + MAX_STEP) // (8 * HOUR_NS) + 1) * 8 * HOUR_NS


def test_the_basis_window_fills_in_one_call_per_stretch():
    """A stretch of k equal mark samples enters the window at once (its oldest samples leaving),
    as k samples one by one would."""
    ex = held_venue()
    s = ex.components["pricing"].symbols[BTC]
    window = s.basis.maxlen
    value = s.book.best_bid() + s.book.best_ask() - 2 * s.index
    for k in (1, 7, window - 1, window, 3 * window):
        s.basis.clear()
        s.basis.extend(range(1, window - 1))
        s.basis_sum = sum(s.basis)
        expected = (list(s.basis) + [value] * min(k, window))[-window:]
        s.sample(0, k * s.spec.mark_sample_ns)
        assert list(s.basis) == expected and s.basis_sum == sum(expected), k


def test_interest_is_one_turn_per_hour_with_a_loan_and_none_when_it_is_free():
    cfg = default_config()
    ledger = Ledger(list(cfg.assets))
    ledger.open(1)
    free = Lending(msgspec.structs.replace(
        cfg, margin=msgspec.structs.replace(cfg.margin, loan_rate=0)), ledger)
    paid = Lending(cfg, ledger)
    for lending in (free, paid):
        lending.borrow(1, 10**9, now=S)
    assert free.accrue(MAX_STEP) == [] and free.due == MAX_STEP + HOUR_NS
    assert free.debts == {1: 10**9}
    assert [t for t, *_ in paid.accrue(MAX_STEP)] == [h * HOUR_NS for h in range(1, 7 * 24 + 1)]


# ---- the first command at an epoch time ----------------------------------------------------------

def test_a_replay_from_an_epoch_time_then_a_weekend():
    """The first command at an epoch time starts the clock: nothing is due before it. A weekend
    later (2.5 days, within one step) the held symbol settles each of the 8 intervals crossed, the
    other none."""
    with counting("step") as step:
        ex = held_venue(t=EPOCH)
        assert step.call_count == 0                     # nothing ran on the clock before EPOCH
        ev = ex.submit(m.AdvanceClock(ts=EPOCH + 5 * DAY_NS // 2))
    first, last = EPOCH // (8 * HOUR_NS) + 1, (EPOCH + 5 * DAY_NS // 2) // (8 * HOUR_NS)
    assert [(e.symbol, e.ts) for e in of(ev, m.FundingSettled)] == \
        [(BTC, k * 8 * HOUR_NS) for k in range(first, last + 1)]
    assert last - first + 1 == 8
    assert step.call_count == 2 * (8 + 2)
    ex.audit().check()


def test_a_first_time_beyond_one_step_settles_nothing_before_it():
    """An index, positions and a loan set up before the clock started (commands without a time),
    then a first command at an epoch time: no settlement, no interest for the time since 0 (one
    per interval since 0 would be 59,000 settlements and 472,000 accruals); the funding clock and
    the interest start at the next boundary after it, and the index is as stale as its quotes."""
    ex = held_venue(t=0)
    ex.submit(m.Deposit(account=3, asset="BTC", amount=10**8))
    assert of(ex.submit(m.Borrow(account=3, asset="USD", amount=10**9)), m.Borrowed)
    with counting("step") as step:
        ev = ex.submit(m.AdvanceClock(ts=EPOCH))
    assert [type(e) for e in ev if type(e) in (m.FundingSettled, m.FundingPaid,
                                               m.InterestAccrued)] == []
    assert [(e.symbol, e.ts) for e in of(ev, m.IndexStale)] == [(BTC, EPOCH), (ETH, EPOCH)]
    assert step.call_count == 2
    pricing = ex.components["pricing"]
    assert pricing.next_funding_time(BTC) == (EPOCH // (8 * HOUR_NS) + 1) * 8 * HOUR_NS
    assert ex.margin.lending.due == (EPOCH // HOUR_NS + 1) * HOUR_NS
    # from there on, ordinary steps: a day settles the held symbol 3 times, the loan 24 times
    ev = ex.submit(m.AdvanceClock(ts=EPOCH + DAY_NS))
    assert len(of(ev, m.FundingSettled)) == 3 and len(of(ev, m.InterestAccrued)) == 24
    ex.audit().check()


def test_a_first_time_within_one_step_is_an_ordinary_step():
    ex = held_venue(t=0)
    ev = ex.submit(m.AdvanceClock(ts=8 * HOUR_NS))
    assert [(e.symbol, e.ts) for e in of(ev, m.FundingSettled)] == [(BTC, 8 * HOUR_NS)]
    assert of(ev, m.IndexStale)[0].ts == 60 * S + 1


def test_the_last_time_there_is_as_a_first_time_leaves_a_hashable_state():
    """The issue's AdvanceClock(2**63 - 1) (millions of events, a GB, an unhashable state before)
    as the first command with a time, after an untimed set-up with positions and a loan."""
    ex = held_venue(t=0)
    ex.submit(m.Deposit(account=3, asset="BTC", amount=10**8))
    ex.submit(m.Borrow(account=3, asset="USD", amount=10**9))
    ev = ex.submit(m.AdvanceClock(ts=2**63 - 1))
    assert len(ev) <= 8 and not of(ev, m.FundingSettled) and not of(ev, m.InterestAccrued)
    assert ex.clock == 2**63 - 1
    ex.state_hash()
    ex.audit().check()
