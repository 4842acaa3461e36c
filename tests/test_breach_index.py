"""The breach index: triggers fire exactly when the price reaches them (checked by hand and against
a brute-force scan), replace and discard cleanly, and 'any move' entries fire on every update."""
from hypothesis import given
from hypothesis import strategies as st

from perpcore.breach_index import DOWN, UP, BreachIndex

M = ("mark", "BTC-PERP")
I = ("index", "BTC-PERP")


def test_down_and_up_triggers_by_hand():
    idx = BreachIndex()
    idx.set(1, [(M, DOWN, 60000)])          # a long liquidated at 60,000 or below
    idx.set(2, [(M, UP, 70000)])            # a short liquidated at 70,000 or above
    idx.set(3, [(M, DOWN, 59999), (I, DOWN, 50000)])
    assert idx.crossed(M, 60001) == []
    assert idx.crossed(M, 60000) == [1]
    assert idx.crossed(M, 59999) == [1, 3]
    assert idx.crossed(M, 69999) == []
    assert idx.crossed(M, 70000) == [2]
    assert idx.crossed(I, 50001) == []
    assert idx.crossed(I, 50000) == [3]
    assert idx.crossed(("mark", "ETH-PERP"), 1) == []
    assert len(idx) == 3 and 3 in idx and 4 not in idx


def test_set_replaces_and_discard_removes():
    idx = BreachIndex()
    idx.set(1, [(M, DOWN, 60000)])
    idx.set(1, [(M, UP, 65000)])
    assert idx.crossed(M, 50000) == []
    assert idx.crossed(M, 65000) == [1]
    assert idx.triggers(1) == ((M, UP, 65000),)
    idx.discard(1)
    idx.discard(1)                          # discarding twice is harmless
    assert idx.crossed(M, 65000) == [] and len(idx) == 0
    idx.set(2, [])                          # no exposure: not indexed
    assert 2 not in idx


def test_any_move_entries():
    idx = BreachIndex()
    idx.set(5, [(M, DOWN, None)])
    idx.set(6, [(M, UP, 1_000_000)])
    assert idx.crossed(M, 1) == [5]
    assert idx.crossed(M, 2_000_000) == [5, 6]
    idx.set(5, [(M, DOWN, 10)])
    assert idx.crossed(M, 11) == []
    idx.clear()
    assert idx.crossed(M, 1) == [] and len(idx) == 0


entries = st.lists(st.tuples(st.integers(1, 40), st.sampled_from([M, I]),
                             st.sampled_from([DOWN, UP]),
                             st.one_of(st.none(), st.integers(1, 100))), max_size=60)


@given(entries, st.lists(st.integers(1, 30)), st.sampled_from([M, I]), st.integers(0, 101))
def test_crossed_and_reaches_match_a_scan(ops, removed, dim, price):
    idx = BreachIndex()
    model: dict[int, list] = {}
    for account, d, direction, trigger in ops:
        model.setdefault(account, []).append((d, direction, trigger))
        idx.set(account, model[account])
    for account in removed:
        model.pop(account, None)
        idx.discard(account)
    expected = sorted({a for a, ts in model.items() for d, direction, t in ts if d == dim and (
        t is None or (price <= t if direction == DOWN else price >= t))})
    assert idx.crossed(dim, price) == expected
    assert idx.reaches(dim, price) == bool(expected)
    assert len(idx) == len([a for a, ts in model.items() if ts])


def test_keep_earlier_leaves_triggers_that_fire_no_later():
    idx = BreachIndex()
    idx.set(1, [(M, DOWN, 60000), (I, UP, 70000)])
    # the fresh triggers fire later (lower for DOWN, higher for UP): the old ones stay
    idx.set(1, [(M, DOWN, 59000), (I, UP, 71000)], keep_earlier=True)
    assert idx.triggers(1) == ((M, DOWN, 60000), (I, UP, 70000))
    # one fresh trigger fires earlier: all are replaced
    idx.set(1, [(M, DOWN, 61000), (I, UP, 71000)], keep_earlier=True)
    assert idx.triggers(1) == ((M, DOWN, 61000), (I, UP, 71000))
    assert idx.crossed(M, 60500) == [1]
    # another exposure (a new dimension, a flipped side, an 'any move' entry) always replaces
    idx.set(1, [(M, UP, 90000)], keep_earlier=True)
    assert idx.triggers(1) == ((M, UP, 90000),)
    idx.set(1, [(M, UP, None)], keep_earlier=True)
    assert idx.crossed(M, 1) == [1]
    # without keep_earlier the fresh triggers are set whatever they are
    idx.set(1, [(M, UP, 95000)])
    assert idx.crossed(M, 94000) == []
