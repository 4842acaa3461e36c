"""The benchmark workloads: the mix they claim, determinism by seed, and streams that mean what they
say (cancels and amends of live orders, passive limits that rest, takers that cross) through the
Cython book, the reference book and the Exchange alike."""
import numpy as np
import pytest

from perpcore import _book
from perpcore._exchange import protection_price
from perpcore import messages as m
from perpcore import workloads as wls
from perpcore.bench import fresh_exchange
from refbook import ReferenceBook


@pytest.fixture(scope="module")
def std():
    return wls.standard(20_000, seed=3)


def test_standard_mix_proportions(std):
    counts = std.counts()
    assert sum(counts.values()) == len(std) == 20_000
    for kind, share in wls.STANDARD_MIX.items():
        # binomial spread at n=20,000 is at most 0.35 points; 1 point cannot fail by chance
        assert abs(counts[kind] / len(std) - share) < 0.01, kind
    assert len(std.setup) == 20_000 and std.params.accounts == 10_000


def test_same_seed_same_stream_other_seed_other_stream(std):
    again = wls.standard(20_000, seed=3)
    assert np.array_equal(again.setup, std.setup)
    assert np.array_equal(again.cmds, std.cmds)
    assert np.array_equal(again.kinds, std.kinds)
    other = wls.standard(20_000, seed=4)
    assert not np.array_equal(other.cmds, std.cmds)


def test_accounts_are_spread_over_ten_thousand(std):
    accounts = np.concatenate([std.setup["account"], std.cmds["account"]])
    assert accounts.min() >= 1 and accounts.max() <= 10_000
    assert len(np.unique(accounts)) > 9_000


def test_prefill_offsets_are_one_to_sixty_ticks_and_densest_at_the_top(std):
    p = std.params
    setup = std.setup
    off = np.where(setup["side"] == _book.BUY, p.start_mid - setup["price"],
                   setup["price"] - p.start_mid)
    assert off.min() == 1 and off.max() == 60
    near, mid, far = ((off >= 1) & (off <= 5)).sum(), ((off >= 21) & (off <= 25)).sum(), \
        ((off >= 41) & (off <= 45)).sum()
    assert near > 3 * mid > 0 and mid > 3 * far


def test_every_command_does_what_its_kind_says(std):
    """Replayed one call at a time, watching the book before each command."""
    book = _book.OrderBook()
    book.process_batch(std.setup)
    for row, kind in zip(std.cmds[:8_000].tolist(), std.kinds[:8_000].tolist()):
        op, side, tif, _, _, oid, acc, price, qty, _, _ = row
        if kind == wls.CANCEL:
            assert book.order(oid)[1] == acc           # live, and the account's own
            assert book.cancel(oid) > 0
        elif kind == wls.AMEND:
            before = book.order(oid)
            assert before[1] == acc and before[3] == price
            assert qty - before[5] <= before[4]       # a size-down (or the same): priority kept
            assert book.amend(oid, price, qty) == _book.RESTING
            assert book.order(oid)[4] == qty - before[5]
        elif kind == wls.PASSIVE:
            assert tif == _book.GTC
            assert book.place(oid, acc, side, price, qty) == _book.RESTING
            assert book.fill_count == 0
        else:
            touch = book.best_ask() if side == _book.BUY else book.best_bid()
            through = price - touch if side == _book.BUY else touch - price
            assert tif == _book.IOC
            if kind == wls.IOC:
                assert 0 <= through <= 5
            else:
                spec = wls.instrument()
                assert price == protection_price(side, touch, std.params.protection,
                                                 spec.max_price, spec.price_step)
            assert book.place(oid, acc, side, price, qty, tif) in (_book.FILLED, _book.EXPIRED)
            assert book.fill_count > 0


def test_reference_book_sees_the_same_stream(std):
    cmds = std.cmds[:5_000]
    results = []
    for cls in (_book.OrderBook, ReferenceBook):
        book = cls()
        book.process_batch(std.setup)
        status = book.process_batch(cmds)
        results.append((status.tolist(), book.fills(), book.resting()))
    assert results[0] == results[1]
    assert (np.asarray(results[0][0]) != _book.UNKNOWN_ORDER).all()


def test_exchange_stream_matches_the_book_stream():
    wl = wls.standard(3_000, seed=5, prefill=2_000, accounts=300)
    xw = wls.exchange_workload(wl)
    ex = fresh_exchange(xw)
    events = [e for cmd in xw.cmds for e in ex.submit(cmd)]
    assert not [e for e in events if type(e) is m.OrderRejected]
    markets = sum(type(c) is m.PlaceOrder and c.order_type == m.OrderType.MARKET for c in xw.cmds)
    assert markets == wl.counts()["market"] > 0
    book = _book.OrderBook()
    book.process_batch(wl.setup)
    book.process_batch(wl.cmds)
    assert ex.markets[wls.SYMBOL].book.resting() == book.resting()
    fills = sum(type(e) is m.OrderFilled for e in events)
    assert fills == book.trade_count > 0


def test_messages_carry_rising_exchange_time(std):
    msgs = wls.to_messages(std.cmds[:100], std.kinds[:100])
    assert [type(c) for c in msgs[:20]] == [
        {wls.PASSIVE: m.PlaceOrder, wls.IOC: m.PlaceOrder, wls.MARKET: m.PlaceOrder,
         wls.CANCEL: m.CancelOrder, wls.AMEND: m.AmendOrder}[k] for k in std.kinds[:20].tolist()]
    assert [c.ts for c in msgs] == sorted(c.ts for c in msgs) and msgs[0].ts < msgs[-1].ts


def test_deep_book_holds_what_it_says_and_runs_the_mix():
    wl = wls.deep_book(2_000, seed=2, resting=30_000)
    book = _book.OrderBook()
    book.process_batch(wl.setup)
    assert len(book) == 30_000
    status = book.process_batch(wl.cmds)
    assert (status != _book.UNKNOWN_ORDER).all()
    assert abs(wl.counts()["cancel"] / 2_000 - 0.38) < 0.04


def test_wide_range_spreads_over_many_sparse_levels():
    wl = wls.wide_range(2_000, seed=2, prefill=5_000)
    book = _book.OrderBook()
    book.process_batch(wl.setup)
    levels = book.level_count(_book.BUY) + book.level_count(_book.SELL)
    assert levels > 2_000                     # the standard book has at most 120
    assert book.best_ask() - book.best_bid() < 20
    status = book.process_batch(wl.cmds)
    assert (status != _book.UNKNOWN_ORDER).all()


def test_cross_margin_accounts_hold_positions_in_both_perps():
    if not hasattr(m, "Deposit"):
        pytest.skip("the margin layer is not in this build")
    xw = wls.cross_margin(3_000, seed=4, accounts=200, prefill=500)
    ex = fresh_exchange(xw)
    for a in (1, 2, 117, 200):
        sizes = {p.symbol: p.size for p in ex.account(a).positions}
        assert set(sizes) == set(wls.START_MIDS) and 1 <= abs(sizes["BTC-PERP"]) <= 5
        assert (sizes["BTC-PERP"] > 0) == (a % 2 == 1) and (sizes["ETH-PERP"] > 0) == (a % 2 == 0)
    assert not [o for o in ex.markets["BTC-PERP"].book.resting() if o[1] == 201]   # maker used up
    events = [e for cmd in xw.cmds for e in ex.submit(cmd)]
    assert not [e for e in events if type(e) is m.OrderRejected]    # ids mapped right
    per_symbol = {s: sum(c.symbol == s for c in xw.cmds) for s in wls.START_MIDS}
    assert min(per_symbol.values()) > 1_300
    assert sum(type(c) is m.CancelOrder for c in xw.cmds) > 1_000
