"""ADL ranking (BitMEX: PnL% x effective leverage for profitable positions, PnL% / leverage for the
others) and the 1-5 indicator: hand-computed queues, edge cases, and properties of the order; the
deleveraging itself (Deleveraging) on a venue."""
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perpcore import messages as m
from perpcore.adl import effective_leverage, indicator, pnl_fraction, priority, ranking
from perpcore.messages import Side

from liquidation_venue import BTC, Venue, of

MARK = 60000


def test_pnl_fraction_and_leverage_by_hand():
    # short 10 lots from 62,000 at a mark of 60,000: PnL 20,000 on 620,000 = 1/31
    assert pnl_fraction(-10, 620_000, MARK) == Fraction(1, 31)
    # long 2 lots from 59,000: PnL 2,000 on 118,000 = 1/59
    assert pnl_fraction(2, 118_000, MARK) == Fraction(1, 59)
    # |mark value| / (mark value - bankrupt value): short 10 bankrupt at 64,000 -> 600,000 / 40,000
    assert effective_leverage(-10, MARK, 64000) == 15
    # long 2 bankrupt at 57,000: 120,000 / 6,000
    assert effective_leverage(2, MARK, 57000) == 20
    # at or past the bankruptcy price: unbounded
    assert effective_leverage(-3, MARK, 60000) is None
    assert effective_leverage(3, MARK, 60001) is None
    # bankruptcy None: a long nothing bankrupts has no leverage; a short always bankrupt, unbounded
    assert effective_leverage(3, MARK, None) == 0
    assert effective_leverage(-3, MARK, None) is None


def test_queue_by_hand():
    shorts = [
        # account, size, entry value, bankruptcy
        (11, -10, 620_000, 64000),      # PnL 1/31, lev 15: score 15/31 = 0.484
        (12, -5, 305_000, 66000),       # PnL 1/61, lev 300,000/30,000 = 10: score 10/61 = 0.164
        (13, -2, 118_000, 61000),       # PnL -1/59, lev 120,000/2,000 = 60: -1/3540
        (14, -3, 189_000, 59500),       # profitable, already past bankruptcy: unbounded, first
        (15, -4, 236_000, 70000),       # PnL -4,000/236,000 = -1/59, lev 240,000/40,000 = 6: -1/354
        (16, -1, 63_000, 62000),        # PnL 3/63 = 1/21, lev 60,000/2,000 = 30: score 10/7 = 1.43
    ]
    assert priority(-10, 620_000, MARK, 64000) == (2, Fraction(15, 31))
    assert priority(-2, 118_000, MARK, 61000) == (1, Fraction(-1, 3540))
    assert ranking(shorts, MARK) == [14, 16, 11, 12, 13, 15]
    # the order does not depend on the order given
    assert ranking(list(reversed(shorts)), MARK) == [14, 16, 11, 12, 13, 15]


def test_ties_go_to_the_lower_account_and_flat_positions_are_left_out():
    same = [(9, -1, 61_000, 62000), (4, -1, 61_000, 62000), (7, 0, 0, None)]
    assert ranking(same, MARK) == [4, 9]


def test_indicator_quintiles():
    assert [indicator(i, 5) for i in range(5)] == [5, 4, 3, 2, 1]
    assert [indicator(i, 10) for i in range(10)] == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert [indicator(i, 3) for i in range(3)] == [5, 4, 2]
    assert indicator(0, 1) == 5
    with pytest.raises(ValueError):
        indicator(3, 3)


positions = st.lists(
    st.tuples(st.integers(1, 10_000), st.integers(-50, 50).filter(bool),
              st.integers(1, 100), st.one_of(st.none(), st.integers(1, 120_000))),
    max_size=30, unique_by=lambda p: p[0])


@given(positions, st.integers(30_000, 90_000))
def test_ranking_properties(raw, mark):
    # entry value = |size| x an entry price
    book = [(a, s, abs(s) * mark * e // 50, b) for a, s, e, b in raw]
    queue = ranking(book, mark)
    assert sorted(queue) == sorted(a for a, *_ in book)
    by_account = {a: (s, e, b) for a, s, e, b in book}
    keys = [priority(*by_account[a][:2], mark, by_account[a][2]) for a in queue]
    profitable = [pnl_fraction(*by_account[a][:2], mark) > 0 for a in queue]
    # every profitable position comes before every other
    assert profitable == sorted(profitable, reverse=True)
    # keys never increase along the queue; equal keys go by account id
    for (k1, a1), (k2, a2) in zip(zip(keys, queue), zip(keys[1:], queue[1:])):
        assert k1 > k2 or (k1 == k2 and a1 < a2)
    # within the profitable group, the finite scores are PnL% x leverage
    for a, key in zip(queue, keys):
        s, e, b = by_account[a]
        lev = effective_leverage(s, mark, b)
        if key[0] == 2:
            assert key[1] == pnl_fraction(s, e, mark) * lev


def test_deleveraging_closes_the_round_queue_in_order_and_ranks_it_once():
    """perpcore.adl.Deleveraging on its own: the trader's long closed at a price against the shorts
    in queue order, a zero-sum transfer; the queue stays the round's ranking until the next round;
    more lots than the other side holds is a bug, never a state."""
    trader, s1, s2, s3, l1, l2 = 1, 11, 12, 13, 21, 22
    v = Venue()
    for account, cash in ((trader, 10_000), (s1, 5_000), (s2, 2_000), (s3, 20_000),
                          (l1, 100_000), (l2, 100_000)):
        v.account(account, cash)
    v.price(BTC, 650000)
    v.trade(s1, l1, BTC, Side.BUY, 600, 660000)
    v.trade(s2, l2, BTC, Side.BUY, 500, 655000)
    v.trade(s3, trader, BTC, Side.BUY, 1000, 650000)
    v.fund(1_000_000)           # the fund covers the move to 56,000: nobody is liquidated
    assert not of(v.price(BTC, 560000), m.LiquidationStarted)
    adl = v.ex.liquidation.adl
    ranked = adl.queue(BTC, -1)
    assert ranked == v.ex.liquidation.adl_queue(BTC, -1) and sorted(ranked) == [s1, s2, s3]
    assert v.ex.mark_price(BTC) == 560000
    equity = {a: v.ex.account(a).equity for a in (trader, s1, s2, s3)}
    adl.new_round()
    events = []
    adl.deleverage(trader, BTC, True, 560000, 700, events)
    closed = [(e.account, e.qty, e.price, e.liquidated_account)
              for e in of(events, m.AutoDeleveraged)]
    head = ranked[0]
    held = {s1: 600, s2: 500, s3: 1000}
    assert closed[0] == (head, min(700, held[head]), 560000, trader)
    assert sum(q for _, q, _, _ in closed) == 700
    assert [a for a, *_ in closed] == ranked[:len(closed)]
    assert v.size(trader, BTC) == 300
    # closed at the mark without fees: each account's equity is where it was, the books balance
    assert {a: v.ex.account(a).equity for a in equity} == equity
    assert v.ex.audit().ok
    # the round keeps its ranking (a closed position is passed over), the next ranks afresh
    assert adl._queue(BTC, -1) == ranked != adl.queue(BTC, -1)
    adl.new_round()
    assert adl._queue(BTC, -1) == adl.queue(BTC, -1)
    with pytest.raises(RuntimeError, match="does not net to zero"):
        adl.deleverage(trader, BTC, True, 560000, 10_000, [])
