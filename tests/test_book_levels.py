"""The chunked level structure under books wide and deep enough to split and merge its chunks,
checked against the reference book after every command."""
import random

import pytest

from perpcore import _book
from perpcore._book import BUY, GTC, IOC, SELL, OrderBook
from refbook import ReferenceBook


def _drive(rng, n, spread, levels_check_every=1):
    fast, ref = OrderBook(16), ReferenceBook()
    live = []
    for i in range(1, n + 1):
        r = rng.random()
        if r < 0.65 or not live:
            side = rng.choice((BUY, SELL))
            # prices spread far from the touch so that levels are inserted all over each side
            offset = rng.randint(1, spread)
            price = 1_000_000 - offset if side == BUY else 1_000_000 + offset
            tif = IOC if rng.random() < 0.03 else GTC
            if tif == IOC:
                price = 1_000_000 + spread if side == BUY else 1_000_000 - spread
            args = (i, rng.randint(1, 5), side, price, rng.randint(1, 4), tif)
            assert fast.place(*args) == ref.place(*args)
            assert fast.fills() == ref.fills()
            live.append(i)
        elif r < 0.95:
            order_id = live.pop(rng.randrange(len(live)))
            assert fast.cancel(order_id) == ref.cancel(order_id)
        else:
            order_id = rng.choice(live)
            state = ref.order(order_id)
            if state is not None:
                new_price = state[3] + rng.choice((-3, 3))
                args = (order_id, new_price, state[4] + state[5])
                assert fast.amend(*args) == ref.amend(*args)
                assert fast.fills() == ref.fills()
        if i % levels_check_every == 0:
            assert fast.depth(10**6) == ref.depth(10**6)
            assert (fast.best_bid(), fast.best_ask()) == (ref.best_bid(), ref.best_ask())
    assert fast.resting() == ref.resting()
    return fast


@pytest.mark.parametrize("seed", range(3))
def test_wide_book_matches_the_reference_through_splits_and_merges(seed):
    book = _drive(random.Random(seed), 8_000, spread=3_000, levels_check_every=50)
    # enough levels per side for several chunks
    assert book.level_count(BUY) > 4 * _book.LEVELS_PER_CHUNK


def test_levels_drain_and_refill_from_the_top():
    # a sweep empties hundreds of levels (dropping and merging chunks), then the side refills
    fast, ref = OrderBook(), ReferenceBook()
    for book in (fast, ref):
        for i in range(1, 1001):
            book.place(i, 1, SELL, 5_000 + i, 2)
    for book in (fast, ref):
        book.place(5_000, 2, BUY, 5_700, 1_399, IOC)
    assert fast.fills() == ref.fills() and len(fast.fills()) == 700
    assert fast.depth(2000) == ref.depth(2000)
    for book in (fast, ref):
        for i in range(6_000, 6_500):
            book.place(i, 1, SELL, 5_000 + (i * 7919) % 2_000 + 1, 1)
    assert fast.depth(5000) == ref.depth(5000)
    assert fast.resting() == ref.resting()
