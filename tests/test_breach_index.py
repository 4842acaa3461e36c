"""The breach index (perpcore._liquidation.BreachIndex): triggers fire exactly when the price
reaches them (by hand), replace and discard cleanly, 'any move' entries fire on every update, and
random streams of set / discard / crossed give the same answers as the reference model, the
SortedList index the engine kept in Python before (tests/breach_model.py)."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breach_model import BreachIndex as Model
from perpcore._liquidation import BreachIndex
from perpcore.liquidation import DOWN, UP

M, I = 0, 1                                 # a mark and an index dimension
E = 2                                       # another symbol's mark


def index() -> BreachIndex:
    return BreachIndex(3)


def test_down_and_up_triggers_by_hand():
    idx = index()
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
    assert idx.crossed(E, 1) == []
    assert len(idx) == 3 and 3 in idx and 4 not in idx


def test_set_replaces_and_discard_removes():
    idx = index()
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
    idx = index()
    idx.set(5, [(M, DOWN, None)])
    idx.set(6, [(M, UP, 1_000_000)])
    assert idx.crossed(M, 1) == [5]
    assert idx.crossed(M, 2_000_000) == [5, 6]
    assert idx.reaches(M, 1) and not idx.reaches(I, 1)
    idx.set(5, [(M, DOWN, 10)])
    assert idx.crossed(M, 11) == []
    idx.clear()
    assert idx.crossed(M, 1) == [] and len(idx) == 0


def test_keep_earlier_leaves_triggers_that_fire_no_later():
    idx = index()
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


def test_one_trigger_per_dimension_and_direction():
    idx = index()
    idx.set(1, [(M, DOWN, 5), (M, DOWN, 5), (M, UP, 9)])       # an entry given twice counts once
    assert idx.triggers(1) == ((M, DOWN, 5), (M, UP, 9))
    for bad in ([(M, DOWN, 5), (M, DOWN, 6)], [(3, DOWN, 5)], [(M, 2, 5)], [(M, UP, 2**63 - 1)]):
        with pytest.raises(ValueError):
            idx.set(1, bad)
        assert idx.triggers(1) == ((M, DOWN, 5), (M, UP, 9))     # a refused set changes nothing
    with pytest.raises(ValueError):
        idx.crossed(3, 1)
    narrow = BreachIndex(3, 2)              # room for two triggers an account
    with pytest.raises(ValueError):
        narrow.set(1, [(M, DOWN, 5), (M, UP, 9), (I, DOWN, 3)])
    assert 1 not in narrow


# ---- against the reference model --------------------------------------------------------------

prices = st.one_of(st.none(), st.integers(1, 100), st.integers(-5, 2**40))


@st.composite
def entries(draw):
    """An account's triggers: at most one per dimension and direction, in any order, sometimes
    with an entry given twice (it counts once)."""
    pairs = draw(st.lists(st.tuples(st.sampled_from([M, I, E]), st.sampled_from([DOWN, UP])),
                          unique=True, max_size=6))
    out = [(dim, direction, draw(prices)) for dim, direction in pairs]
    if out and draw(st.booleans()):
        out.append(out[0])
    return out


ops = st.lists(st.one_of(
    st.tuples(st.just("set"), st.integers(0, 40), entries(), st.booleans()),
    st.tuples(st.just("set"), st.integers(0, 40), entries(), st.booleans()),
    st.tuples(st.just("discard"), st.integers(0, 40)),
    st.tuples(st.just("crossed"), st.sampled_from([M, I, E]), st.integers(-5, 105)),
    st.tuples(st.just("clear"),),
), max_size=120)


def same_answers(idx: BreachIndex, model: Model, accounts, probes) -> None:
    for dim, price in probes:
        assert idx.crossed(dim, price) == model.crossed(dim, price), (dim, price)
        assert idx.reaches(dim, price) == model.reaches(dim, price), (dim, price)
    for account in accounts:
        assert idx.triggers(account) == model.triggers(account), account
        assert (account in idx) == (account in model)
    assert len(idx) == len(model)


@settings(max_examples=400, deadline=None)
@given(ops)
def test_random_streams_match_the_reference(stream):
    idx, model = index(), Model()
    for op in stream:
        if op[0] == "set":
            _, account, triggers, keep = op
            idx.set(account, triggers, keep)
            model.set(account, triggers, keep)
        elif op[0] == "discard":
            idx.discard(op[1])
            model.discard(op[1])
        elif op[0] == "crossed":
            same_answers(idx, model, (), [op[1:]])
        else:
            idx.clear()
            model.clear()
    same_answers(idx, model, range(41), [(d, p) for d in (M, I, E) for p in (-5, 0, 1, 50, 101)])


def test_a_long_stream_over_many_accounts():
    """Deep trees: 5,000 accounts keyed and keyed again 40,000 times, checked as it goes."""
    rng = random.Random(7)
    idx, model = index(), Model()
    for step in range(40_000):
        account = rng.randrange(5_000)
        if rng.random() < 0.05:
            idx.discard(account)
            model.discard(account)
            continue
        mark = rng.randrange(1, 200)
        triggers = [(M, DOWN, mark - rng.randrange(0, 100)), (M, UP, mark + rng.randrange(100))]
        if rng.random() < 0.3:
            triggers.append((I, DOWN, rng.choice([None, rng.randrange(1, 200)])))
        rng.shuffle(triggers)
        keep = rng.random() < 0.5
        idx.set(account, triggers, keep)
        model.set(account, triggers, keep)
        if step % 997 == 0:
            same_answers(idx, model, range(0, 5_000, 37),
                         [(d, rng.randrange(-2, 300)) for d in (M, I, E) for _ in range(5)])
    same_answers(idx, model, range(5_000), [(d, p) for d in (M, I, E) for p in range(-1, 301, 3)])


def test_the_trees_grow_and_shrink():
    """20,000 accounts keyed (many at the same prices, 'any move' ones among them), then all
    discarded in random order and keyed again: leaves and inner nodes split, empty and go."""
    rng = random.Random(11)
    idx, model = index(), Model()
    accounts = list(range(20_000))
    for _ in range(2):
        rng.shuffle(accounts)
        for account in accounts:
            triggers = [(M, DOWN, rng.choice([None, 5, 50, rng.randrange(1, 100)])),
                        (E, UP, rng.randrange(50, 60))]
            idx.set(account, triggers)
            model.set(account, triggers)
        same_answers(idx, model, range(0, 20_000, 7), [(d, p) for d in (M, E) for p in (1, 50, 99)])
        rng.shuffle(accounts)
        for k, account in enumerate(accounts):
            idx.discard(account)
            model.discard(account)
            if k % 1_999 == 0:
                same_answers(idx, model, accounts[k:k + 50],
                             [(d, p) for d in (M, E) for p in (1, 5, 50, 55, 99)])
        assert len(idx) == 0 and idx.crossed(M, 1) == [] and not idx.reaches(E, 10**9)
