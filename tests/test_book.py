"""Unit tests of the order book, per order type and status code.

Most tests run against both the Cython OrderBook and the pure-Python ReferenceBook, so the
reference the property tests trust is itself pinned to the documented semantics. Fill records are
tuples (kind, maker_id, taker_id, maker_account, taker_account, price, qty, maker_remaining,
taker_remaining).
"""
from fractions import Fraction

import numpy as np
import pytest

from perpcore._book import (
    AMEND, BUY, CANCEL, CMD_DTYPE, DUPLICATE_CLIENT_ID, DUPLICATE_ORDER_ID, EXPIRED, FILL_DTYPE,
    FILLED, FOK, FOK_UNFILLABLE, GTC, INVALID, IOC, MAKER_EXPIRED, PLACE, POST_ONLY,
    POST_ONLY_WOULD_TAKE, RESTING, SELL, STP_EXPIRED, STP_MODES, TRADE, UNKNOWN_ORDER, OrderBook,
)
from refbook import ReferenceBook

ALICE, BOB, CAROL = 1, 2, 3


@pytest.fixture(params=[OrderBook, ReferenceBook], ids=["cython", "reference"])
def book_cls(request):
    return request.param


@pytest.fixture
def book(book_cls):
    return book_cls()


def snapshot(book):
    """Everything observable about a book's state."""
    return (book.resting(), book.depth(1000), book.best_bid(), book.best_ask(), len(book),
            book.level_count(BUY), book.level_count(SELL))


# ---- order types ------------------------------------------------------------------------------

def test_gtc_rests_when_nothing_crosses(book):
    assert book.place(1, ALICE, BUY, 100, 5, client_id=7) == RESTING
    assert book.fills() == [] and book.fill_count == 0
    assert book.order(1) == (1, ALICE, BUY, 100, 5, 0, 7, False)
    assert book.best_bid() == 100 and book.best_ask() is None
    assert len(book) == 1


def test_gtc_partial_fill_then_rests(book):
    book.place(1, BOB, SELL, 100, 5)
    assert book.place(2, ALICE, BUY, 101, 8) == RESTING
    assert book.fills() == [(TRADE, 1, 2, BOB, ALICE, 100, 5, 0, 3)]
    assert book.order(1) is None
    assert book.order(2) == (2, ALICE, BUY, 101, 3, 5, 0, False)
    assert book.best_bid() == 101 and book.best_ask() is None
    assert book.trade_count == 1 and book.traded_qty == 5


def test_gtc_filled_completely(book):
    book.place(1, BOB, SELL, 100, 5)
    assert book.place(2, ALICE, BUY, 100, 3) == FILLED
    assert book.fills() == [(TRADE, 1, 2, BOB, ALICE, 100, 3, 2, 0)]
    assert book.order(1) == (1, BOB, SELL, 100, 2, 3, 0, False)
    assert book.order(2) is None


def test_ioc_expires_its_remainder(book):
    book.place(1, BOB, SELL, 100, 5)
    assert book.place(2, ALICE, BUY, 100, 8, tif=IOC) == EXPIRED
    assert book.fills() == [(TRADE, 1, 2, BOB, ALICE, 100, 5, 0, 3)]
    assert book.order(2) is None and len(book) == 0


def test_ioc_without_a_cross_expires_untouched(book):
    book.place(1, BOB, SELL, 100, 5)
    before = snapshot(book)
    assert book.place(2, ALICE, BUY, 99, 8, tif=IOC) == EXPIRED
    assert book.fills() == []
    assert snapshot(book) == before


def test_fok_unfillable_is_rejected_before_any_fill(book):
    book.place(1, BOB, SELL, 100, 5)
    book.place(2, BOB, SELL, 101, 5)
    book.place(3, BOB, SELL, 103, 5)
    before = snapshot(book)
    assert book.place(4, ALICE, BUY, 102, 11, tif=FOK) == FOK_UNFILLABLE
    assert book.fills() == []
    assert snapshot(book) == before
    assert book.trade_count == 0


def test_fok_filled_across_levels(book):
    book.place(1, BOB, SELL, 100, 5)
    book.place(2, BOB, SELL, 101, 5)
    assert book.place(3, ALICE, BUY, 101, 10, tif=FOK) == FILLED
    assert book.fills() == [(TRADE, 1, 3, BOB, ALICE, 100, 5, 0, 5),
                            (TRADE, 2, 3, BOB, ALICE, 101, 5, 0, 0)]
    assert len(book) == 0


def fok_stp_book(book):
    book.place(1, BOB, SELL, 100, 3)
    book.place(2, ALICE, SELL, 100, 4)     # Alice's own order, between Bob's
    book.place(3, BOB, SELL, 101, 3)


@pytest.mark.parametrize("mode, status, fills", [
    # STP off: the own order counts and trades
    ("none", FILLED, [(TRADE, 1, 9, BOB, ALICE, 100, 3, 0, 3),
                      (TRADE, 2, 9, ALICE, ALICE, 100, 3, 1, 0)]),
    # the taker would be expired at its own order after 3 lots: not fillable
    ("expire_taker", FOK_UNFILLABLE, []),
    ("expire_both", FOK_UNFILLABLE, []),
    # the own order would be expired, not traded: 3 + 3 lots of Bob's are enough
    ("expire_maker", FILLED, [(TRADE, 1, 9, BOB, ALICE, 100, 3, 0, 3),
                              (MAKER_EXPIRED, 2, 9, ALICE, ALICE, 100, 4, 0, 3),
                              (TRADE, 3, 9, BOB, ALICE, 101, 3, 0, 0)]),
])
def test_fok_counts_only_what_stp_lets_trade(book, mode, status, fills):
    fok_stp_book(book)
    before = snapshot(book)
    assert book.place(9, ALICE, BUY, 101, 6, tif=FOK, stp=STP_MODES[mode]) == status
    assert book.fills() == fills
    if status == FOK_UNFILLABLE:
        assert snapshot(book) == before


def test_fok_with_expire_taker_fills_when_enough_before_the_own_order(book):
    fok_stp_book(book)
    assert book.place(9, ALICE, BUY, 101, 3, tif=FOK, stp=STP_MODES["expire_taker"]) == FILLED
    assert book.fills() == [(TRADE, 1, 9, BOB, ALICE, 100, 3, 0, 0)]
    assert book.order(2) == (2, ALICE, SELL, 100, 4, 0, 0, False)


@pytest.mark.parametrize("price", [100, 101])
def test_post_only_rejected_when_it_would_take(book, price):
    book.place(1, BOB, SELL, 100, 5)
    before = snapshot(book)
    assert book.place(2, ALICE, BUY, price, 5, tif=POST_ONLY) == POST_ONLY_WOULD_TAKE
    assert book.fills() == []
    assert snapshot(book) == before


def test_post_only_rejected_against_own_order_whatever_the_stp_mode(book):
    book.place(1, ALICE, SELL, 100, 5)
    assert (book.place(2, ALICE, BUY, 100, 5, tif=POST_ONLY, stp=STP_MODES["expire_maker"])
            == POST_ONLY_WOULD_TAKE)
    assert len(book) == 1


def test_post_only_rests_when_it_would_not_take(book):
    book.place(1, BOB, SELL, 100, 5)
    assert book.place(2, ALICE, BUY, 99, 5, tif=POST_ONLY) == RESTING
    assert book.order(2) == (2, ALICE, BUY, 99, 5, 0, 0, True)
    assert book.place(3, ALICE, SELL, 101, 5, tif=POST_ONLY) == RESTING
    assert book.best_bid() == 99 and book.best_ask() == 100


def test_market_order_never_sweeps_past_its_protection_price(book):
    book.place(1, BOB, SELL, 100, 2)
    book.place(2, BOB, SELL, 101, 2)
    book.place(3, BOB, SELL, 105, 2)
    # a market buy of 100 lots is an IOC at its protection price
    assert book.place(4, ALICE, BUY, 102, 100, tif=IOC) == EXPIRED
    assert [f[5] for f in book.fills()] == [100, 101]
    assert book.depth() == ([], [(105, 2, 1)])


def test_market_sell_never_sweeps_below_its_protection_price(book):
    book.place(1, BOB, BUY, 100, 2)
    book.place(2, BOB, BUY, 95, 2)
    assert book.place(3, ALICE, SELL, 98, 100, tif=IOC) == EXPIRED
    assert book.fills() == [(TRADE, 1, 3, BOB, ALICE, 100, 2, 0, 98)]
    assert book.depth() == ([(95, 2, 1)], [])


# ---- priority ---------------------------------------------------------------------------------

def test_better_price_first_then_fifo_within_a_level(book):
    book.place(1, BOB, SELL, 101, 1)
    book.place(2, CAROL, SELL, 100, 1)
    book.place(3, BOB, SELL, 100, 1)
    book.place(4, CAROL, SELL, 101, 1)
    assert book.place(5, ALICE, BUY, 101, 4) == FILLED
    assert [f[1] for f in book.fills()] == [2, 3, 1, 4]


def test_bids_match_highest_first(book):
    book.place(1, BOB, BUY, 99, 1)
    book.place(2, BOB, BUY, 100, 1)
    book.place(3, BOB, BUY, 98, 1)
    assert book.place(4, ALICE, SELL, 98, 3) == FILLED
    assert [f[1] for f in book.fills()] == [2, 1, 3]


def test_resting_lists_bids_then_asks_best_first_in_fifo_order(book):
    book.place(1, BOB, BUY, 99, 1)
    book.place(2, BOB, BUY, 100, 2)
    book.place(3, CAROL, BUY, 99, 3)
    book.place(4, BOB, SELL, 102, 4)
    book.place(5, CAROL, SELL, 101, 5, tif=POST_ONLY)
    assert [o[0] for o in book.resting()] == [2, 1, 3, 5, 4]
    assert book.resting()[3] == (5, CAROL, SELL, 101, 5, 0, 0, True)


# ---- amend ------------------------------------------------------------------------------------

def two_bids_at_100(book):
    book.place(1, ALICE, BUY, 100, 5)
    book.place(2, BOB, BUY, 100, 5)


def first_maker_hit_at_100(book):
    book.place(99, CAROL, SELL, 100, 1)
    return book.fills()[0][1]


def test_amend_size_down_keeps_priority(book):
    two_bids_at_100(book)
    assert book.amend(1, 100, 3) == RESTING
    assert book.fills() == []
    assert book.order(1) == (1, ALICE, BUY, 100, 3, 0, 0, False)
    assert book.depth() == ([(100, 8, 2)], [])
    assert first_maker_hit_at_100(book) == 1


def test_amend_to_the_same_total_changes_nothing(book):
    two_bids_at_100(book)
    before = snapshot(book)
    assert book.amend(1, 100, 5) == RESTING
    assert snapshot(book) == before


def test_amend_size_up_loses_priority(book):
    two_bids_at_100(book)
    assert book.amend(1, 100, 6) == RESTING
    assert book.order(1) == (1, ALICE, BUY, 100, 6, 0, 0, False)
    assert book.depth() == ([(100, 11, 2)], [])
    assert first_maker_hit_at_100(book) == 2


def test_set_open_resizes_where_it_rests():
    """OrderBook._set_open (C only: perpcore._binance sets a depth level's size with it) grows or
    shrinks an order in its place in the queue, unlike an amend up; the level's total follows."""
    from perpcore._binance import LevelSetter, Step
    book = OrderBook()
    levels = LevelSetter(book, Step(1, int), Step(1, int), ALICE)
    levels.set_levels(b'[["100","5"]]', b"[]")     # places order 200 (2 x 100 + BUY) of ALICE
    book.place(1, BOB, BUY, 100, 5)
    levels.set_levels(b'[["100","9"]]', b"[]")
    assert book.order(200) == (200, ALICE, BUY, 100, 9, 0, 0, True)
    assert book.depth() == ([(100, 14, 2)], [])
    levels.set_levels(b'[["100","2"]]', b"[]")
    assert book.depth() == ([(100, 7, 2)], []) and book.fills() == []
    assert first_maker_hit_at_100(book) == 200


def test_amend_price_change_loses_priority(book):
    two_bids_at_100(book)
    assert book.amend(1, 99, 5) == RESTING
    assert book.depth() == ([(100, 5, 1), (99, 5, 1)], [])
    assert book.amend(1, 100, 5) == RESTING
    assert first_maker_hit_at_100(book) == 2


def test_amend_keeps_filled_quantity_and_client_id(book):
    book.place(1, ALICE, BUY, 100, 10, client_id=5)
    book.place(2, BOB, SELL, 100, 4)
    assert book.amend(1, 98, 12) == RESTING
    assert book.order(1) == (1, ALICE, BUY, 98, 8, 4, 5, False)
    assert book.find_client(ALICE, 5) == 1


def test_amend_that_crosses_trades_as_a_new_taker(book):
    book.place(1, BOB, SELL, 101, 3)
    book.place(2, ALICE, BUY, 100, 5)
    assert book.amend(2, 101, 5) == RESTING
    assert book.fills() == [(TRADE, 1, 2, BOB, ALICE, 101, 3, 0, 2)]
    assert book.order(2) == (2, ALICE, BUY, 101, 2, 3, 0, False)


def test_amend_that_crosses_can_fill_completely(book):
    book.place(1, BOB, SELL, 101, 5)
    book.place(2, ALICE, BUY, 100, 5)
    assert book.amend(2, 101, 5) == FILLED
    assert book.order(2) is None and book.order(1) is None


def test_amend_that_crosses_its_own_order_applies_its_stp_mode(book):
    book.place(1, ALICE, SELL, 101, 5)
    book.place(2, ALICE, BUY, 100, 5, stp=STP_MODES["expire_taker"])
    assert book.amend(2, 101, 5) == STP_EXPIRED
    assert book.order(2) is None
    assert book.order(1) == (1, ALICE, SELL, 101, 5, 0, 0, False)


def test_amend_of_post_only_that_would_cross_is_rejected_unchanged(book):
    book.place(1, BOB, SELL, 101, 5)
    book.place(2, ALICE, BUY, 100, 5, tif=POST_ONLY)
    book.place(3, CAROL, BUY, 100, 5)
    before = snapshot(book)
    assert book.amend(2, 101, 5) == POST_ONLY_WOULD_TAKE
    assert book.fills() == []
    assert snapshot(book) == before
    assert first_maker_hit_at_100(book) == 2     # priority kept too


def test_amend_of_post_only_that_does_not_cross_stays_post_only(book):
    book.place(1, BOB, SELL, 101, 5)
    book.place(2, ALICE, BUY, 100, 5, tif=POST_ONLY)
    assert book.amend(2, 99, 7) == RESTING
    assert book.order(2) == (2, ALICE, BUY, 99, 7, 0, 0, True)
    assert book.amend(2, 101, 7) == POST_ONLY_WOULD_TAKE


@pytest.mark.parametrize("qty", [4, 3, 0, -1])
def test_amend_total_not_above_filled_is_invalid(book, qty):
    book.place(1, ALICE, BUY, 100, 10)
    book.place(2, BOB, SELL, 100, 4)
    before = snapshot(book)
    assert book.amend(1, 100, qty) == INVALID
    assert snapshot(book) == before


def test_amend_just_above_filled_leaves_one_lot_open(book):
    book.place(1, ALICE, BUY, 100, 10)
    book.place(2, BOB, SELL, 100, 4)
    assert book.amend(1, 100, 5) == RESTING
    assert book.order(1) == (1, ALICE, BUY, 100, 1, 4, 0, False)


@pytest.mark.parametrize("price", [0, -5])
def test_amend_to_non_positive_price_is_invalid(book, price):
    book.place(1, ALICE, BUY, 100, 10)
    before = snapshot(book)
    assert book.amend(1, price, 10) == INVALID
    assert snapshot(book) == before


def test_amend_unknown_order(book):
    assert book.amend(1, 100, 5) == UNKNOWN_ORDER
    book.place(1, ALICE, BUY, 100, 5)
    book.cancel(1)
    assert book.amend(1, 100, 5) == UNKNOWN_ORDER


# ---- cancel -----------------------------------------------------------------------------------

def test_cancel_returns_the_open_quantity(book):
    book.place(1, ALICE, BUY, 100, 10)
    book.place(2, BOB, SELL, 100, 4)
    assert book.cancel(1) == 6
    assert book.fills() == []
    assert book.order(1) is None and len(book) == 0 and book.best_bid() is None
    assert book.cancel(1) == UNKNOWN_ORDER


def test_cancel_unknown_order(book):
    assert book.cancel(42) == UNKNOWN_ORDER


def test_cancel_from_the_middle_of_a_level(book):
    for order_id in (1, 2, 3):
        book.place(order_id, ALICE, SELL, 100, order_id)
    assert book.cancel(2) == 2
    assert book.depth() == ([], [(100, 4, 2)])
    assert [o[0] for o in book.resting()] == [1, 3]


def test_find_client_then_cancel(book):
    book.place(1, ALICE, BUY, 100, 5, client_id=11)
    book.place(2, BOB, BUY, 100, 5, client_id=12)
    assert book.find_client(ALICE, 11) == 1
    assert book.find_client(BOB, 11) is None
    assert book.find_client(ALICE, 0) is None
    assert book.cancel(book.find_client(ALICE, 11)) == 5
    assert book.find_client(ALICE, 11) is None
    assert book.find_client(BOB, 12) == 2


def test_client_id_is_released_when_the_order_fills(book):
    book.place(1, ALICE, BUY, 100, 5, client_id=11)
    book.place(2, BOB, SELL, 100, 5)
    assert book.find_client(ALICE, 11) is None
    assert book.place(3, ALICE, BUY, 100, 5, client_id=11) == RESTING


def test_cancel_account_cancels_only_that_account_oldest_first(book):
    book.place(1, ALICE, BUY, 100, 1)
    book.place(2, BOB, BUY, 100, 2)
    book.place(3, ALICE, SELL, 105, 3, client_id=9)
    book.place(4, ALICE, BUY, 99, 4)
    book.place(5, BOB, SELL, 106, 5)
    assert book.cancel_account(ALICE) == [(1, BUY, 100, 1), (3, SELL, 105, 3), (4, BUY, 99, 4)]
    assert book.fills() == []
    assert [o[0] for o in book.resting()] == [2, 5]
    assert book.find_client(ALICE, 9) is None
    assert book.cancel_account(ALICE) == []
    assert book.cancel_account(CAROL) == []


def test_cancel_account_after_amend_sees_a_requeued_order_as_newest(book):
    book.place(1, ALICE, BUY, 100, 5)
    book.place(2, ALICE, BUY, 100, 5)
    book.place(3, ALICE, BUY, 100, 5)
    book.amend(3, 100, 4)       # keeps priority, so keeps its age
    book.amend(1, 99, 5)        # re-enters: now the newest
    assert book.cancel_account(ALICE) == [(2, BUY, 100, 5), (3, BUY, 100, 4), (1, BUY, 99, 5)]


# ---- rejections -------------------------------------------------------------------------------

def test_duplicate_order_id_is_rejected_unchanged(book):
    book.place(1, ALICE, BUY, 100, 5)
    book.place(2, BOB, SELL, 105, 5)
    before = snapshot(book)
    assert book.place(1, BOB, SELL, 100, 5) == DUPLICATE_ORDER_ID   # would have crossed
    assert book.fills() == []
    assert snapshot(book) == before


def test_order_id_is_free_again_once_the_order_is_gone(book):
    book.place(1, ALICE, BUY, 100, 5)
    book.cancel(1)
    assert book.place(1, ALICE, BUY, 100, 5) == RESTING


def test_duplicate_client_id_is_rejected_within_one_account_only(book):
    book.place(1, ALICE, BUY, 100, 5, client_id=7)
    before = snapshot(book)
    assert book.place(2, ALICE, SELL, 100, 5, client_id=7) == DUPLICATE_CLIENT_ID
    assert book.fills() == []
    assert snapshot(book) == before
    assert book.place(3, BOB, BUY, 100, 5, client_id=7) == RESTING
    assert book.find_client(BOB, 7) == 3
    assert book.place(4, ALICE, BUY, 100, 5) == RESTING      # client id 0 means none


def test_duplicate_order_id_is_checked_before_duplicate_client_id(book):
    book.place(1, ALICE, BUY, 100, 5, client_id=7)
    assert book.place(1, ALICE, BUY, 100, 5, client_id=7) == DUPLICATE_ORDER_ID


@pytest.mark.parametrize("side, price, qty, tif, stp", [
    (BUY, 100, 0, GTC, 0),
    (BUY, 100, -3, GTC, 0),
    (BUY, 0, 5, GTC, 0),
    (BUY, -100, 5, GTC, 0),
    (2, 100, 5, GTC, 0),
    (-1, 100, 5, GTC, 0),
    (BUY, 100, 5, 4, 0),
    (BUY, 100, 5, -1, 0),
    (BUY, 100, 5, GTC, 4),
    (BUY, 100, 5, GTC, -1),
])
def test_invalid_place_is_rejected_and_changes_nothing(book, side, price, qty, tif, stp):
    book.place(1, ALICE, BUY, 100, 5)
    book.place(2, BOB, SELL, 101, 5)
    before = snapshot(book)
    assert book.place(3, CAROL, side, price, qty, tif=tif, stp=stp) == INVALID
    assert book.fills() == []
    assert snapshot(book) == before


def test_invalid_input_is_reported_before_a_duplicate_id(book):
    book.place(1, ALICE, BUY, 100, 5)
    assert book.place(1, ALICE, BUY, 100, 0) == INVALID


def test_a_rejected_call_clears_the_previous_records(book):
    book.place(1, BOB, SELL, 100, 5)
    book.place(2, ALICE, BUY, 100, 1)
    assert book.fill_count == 1
    assert book.place(2, ALICE, BUY, 100, 1) == FILLED     # id 2 never rested: not a duplicate
    assert book.place(3, ALICE, BUY, 100, 0) == INVALID
    assert book.fills() == [] and book.fill_count == 0


# ---- self-trade prevention --------------------------------------------------------------------

def stp_book(book):
    book.place(1, BOB, SELL, 100, 2)
    book.place(2, ALICE, SELL, 100, 3)
    book.place(3, BOB, SELL, 101, 4)


@pytest.mark.parametrize("mode, status, fills, resting_ids", [
    ("none", FILLED, [(TRADE, 1, 10, BOB, ALICE, 100, 2, 0, 3),
                      (TRADE, 2, 10, ALICE, ALICE, 100, 3, 0, 0)], [3]),
    ("expire_taker", STP_EXPIRED, [(TRADE, 1, 10, BOB, ALICE, 100, 2, 0, 3)], [2, 3]),
    ("expire_maker", FILLED, [(TRADE, 1, 10, BOB, ALICE, 100, 2, 0, 3),
                              (MAKER_EXPIRED, 2, 10, ALICE, ALICE, 100, 3, 0, 3),
                              (TRADE, 3, 10, BOB, ALICE, 101, 3, 1, 0)], [3]),
    ("expire_both", STP_EXPIRED, [(TRADE, 1, 10, BOB, ALICE, 100, 2, 0, 3),
                                  (MAKER_EXPIRED, 2, 10, ALICE, ALICE, 100, 3, 0, 3)], [3]),
])
def test_stp_modes(book, mode, status, fills, resting_ids):
    stp_book(book)
    assert book.place(10, ALICE, BUY, 101, 5, stp=STP_MODES[mode]) == status
    assert book.fills() == fills
    assert [o[0] for o in book.resting()] == resting_ids
    assert book.order(10) is None


def test_stp_expire_maker_rests_the_remainder(book):
    stp_book(book)
    assert book.place(10, ALICE, BUY, 101, 10, stp=STP_MODES["expire_maker"]) == RESTING
    assert book.fills()[-1] == (TRADE, 3, 10, BOB, ALICE, 101, 4, 0, 4)
    assert book.order(10) == (10, ALICE, BUY, 101, 4, 6, 0, False)


def test_stp_expire_taker_on_ioc_reports_stp_not_plain_expiry(book):
    book.place(1, ALICE, SELL, 100, 2)
    assert book.place(2, ALICE, BUY, 100, 5, tif=IOC, stp=STP_MODES["expire_taker"]) == STP_EXPIRED
    assert book.fills() == []
    assert book.order(1) == (1, ALICE, SELL, 100, 2, 0, 0, False)


def test_stp_follows_the_takers_mode_not_the_makers(book):
    book.place(1, ALICE, SELL, 100, 2, stp=STP_MODES["expire_both"])
    assert book.place(2, ALICE, BUY, 100, 2) == FILLED
    assert book.fills() == [(TRADE, 1, 2, ALICE, ALICE, 100, 2, 0, 0)]


def test_stp_ignores_other_accounts(book):
    book.place(1, BOB, SELL, 100, 2)
    assert book.place(2, ALICE, BUY, 100, 2, stp=STP_MODES["expire_both"]) == FILLED


# ---- queries ----------------------------------------------------------------------------------

def impact_book(book):
    book.place(1, BOB, SELL, 100, 4)
    book.place(2, CAROL, SELL, 100, 6)
    book.place(3, BOB, SELL, 102, 5)
    book.place(4, BOB, BUY, 99, 4)
    book.place(5, BOB, BUY, 97, 10)


@pytest.mark.parametrize("side, notional, expected", [
    (BUY, 500, Fraction(100)),                      # inside the first level
    (BUY, 1000, Fraction(100)),                     # exactly the first level
    (BUY, 1100, Fraction(1100) / (10 + Fraction(100, 102))),   # 100/102 of a lot at 102
    (BUY, 1204, Fraction(1204, 12)),                # 2 whole lots at 102
    (BUY, 1510, Fraction(1510, 15)),                # the whole side
    (BUY, 1511, None),                              # more than the side holds
    (BUY, 0, None),
    (BUY, -5, None),
    (SELL, 396, Fraction(99)),
    (SELL, 881, Fraction(881, 9)),
    (SELL, 500, Fraction(500) / (4 + Fraction(104, 97))),
])
def test_impact_is_an_exact_average_price(book, side, notional, expected):
    impact_book(book)
    assert book.impact(side, notional) == expected
    if expected is not None:
        assert isinstance(book.impact(side, notional), Fraction)


def test_impact_on_an_empty_side_is_none(book):
    book.place(1, BOB, BUY, 99, 4)
    assert book.impact(BUY, 1) is None


def test_impact_with_a_level_notional_beyond_int64(book):
    book.place(1, BOB, SELL, 2**40, 2**30)
    assert book.impact(BUY, 2**69) == 2**40
    assert book.impact(BUY, 2**71) is None


@pytest.mark.parametrize("query, args", [("impact", (2, 100)), ("impact", (-1, 100)),
                                         ("level_count", (2,)), ("level_count", (-1,))])
def test_queries_reject_a_side_that_is_neither_buy_nor_sell(book, query, args):
    book.place(1, BOB, SELL, 100, 10)
    with pytest.raises(ValueError):
        getattr(book, query)(*args)


def test_depth_aggregates_levels_best_first(book):
    book.place(1, BOB, BUY, 99, 4)
    book.place(2, CAROL, BUY, 99, 6)
    book.place(3, BOB, BUY, 97, 1)
    book.place(4, BOB, BUY, 98, 2)
    book.place(5, BOB, SELL, 103, 5)
    book.place(6, CAROL, SELL, 101, 7)
    book.place(7, CAROL, SELL, 103, 1)
    assert book.depth() == ([(99, 10, 2), (98, 2, 1), (97, 1, 1)], [(101, 7, 1), (103, 6, 2)])
    assert book.depth(1) == ([(99, 10, 2)], [(101, 7, 1)])
    assert book.depth(0) == ([], [])
    assert book.level_count(BUY) == 3 and book.level_count(SELL) == 2
    book.place(8, ALICE, SELL, 99, 5)
    assert book.depth(1) == ([(99, 5, 1)], [(101, 7, 1)])


def test_fills_array_matches_fills(book):
    stp_book(book)
    book.place(10, ALICE, BUY, 101, 5, stp=STP_MODES["expire_maker"])
    records = book.fills_array()
    assert records.dtype == FILL_DTYPE
    assert [tuple(r) for r in records.tolist()] == book.fills()
    book.cancel(3)
    assert len(book.fills_array()) == 0


# ---- batches ----------------------------------------------------------------------------------

def batch(*cmds):
    """CMD_DTYPE rows from (op, order_id, account, side, price, qty, tif, stp, client_id)."""
    out = np.zeros(len(cmds), dtype=CMD_DTYPE)
    for row, (op, order_id, account, side, price, qty, tif, stp, client_id) in zip(out, cmds):
        row["op"], row["order_id"], row["account"], row["side"] = op, order_id, account, side
        row["price"], row["qty"], row["tif"] = price, qty, tif
        row["stp"], row["client_id"] = stp, client_id
    return out


SAMPLE_BATCH = batch(
    (PLACE, 1, BOB, SELL, 100, 5, GTC, 0, 1),
    (PLACE, 2, ALICE, SELL, 101, 5, GTC, 0, 0),
    (PLACE, 3, CAROL, BUY, 99, 5, POST_ONLY, 0, 0),
    (PLACE, 4, ALICE, BUY, 101, 8, GTC, STP_MODES["expire_maker"], 0),
    (PLACE, 5, BOB, BUY, 98, 0, GTC, 0, 0),                  # invalid qty
    (PLACE, 6, BOB, SELL, 99, 20, FOK, 0, 0),                # unfillable
    (AMEND, 3, 0, 0, 100, 9, 0, 0, 0),
    (CANCEL, 1, 0, 0, 0, 0, 0, 0, 0),                        # already filled
    (PLACE, 7, BOB, SELL, 100, 2, IOC, 0, 0),
    (CANCEL, 4, 0, 0, 0, 0, 0, 0, 0),                        # 1 lot left open
    (9, 8, BOB, BUY, 100, 1, GTC, 0, 0),                     # unknown op
    (PLACE, 3, BOB, BUY, 100, 1, GTC, 0, 0),                 # duplicate id
)


def one_by_one(book, cmds):
    statuses, records = [], []
    for c in cmds.tolist():
        op, side, tif, stp, _pad, order_id, account, price, qty, client_id, _reserved = c
        if op == PLACE:
            statuses.append(book.place(order_id, account, side, price, qty, tif, stp, client_id))
        elif op == CANCEL:
            statuses.append(book.cancel(order_id))
        elif op == AMEND:
            statuses.append(book.amend(order_id, price, qty))
        else:
            statuses.append(INVALID)
        records += book.fills()
    return statuses, records


def test_process_batch_equals_the_same_commands_one_by_one(book_cls):
    batched, single = book_cls(), book_cls()
    statuses = batched.process_batch(SAMPLE_BATCH)
    expected_statuses, expected_records = one_by_one(single, SAMPLE_BATCH)
    assert statuses.dtype == np.int64
    assert statuses.tolist() == expected_statuses
    assert expected_statuses == [RESTING, RESTING, RESTING, RESTING, INVALID, FOK_UNFILLABLE,
                                 RESTING, UNKNOWN_ORDER, FILLED, 1, INVALID, DUPLICATE_ORDER_ID]
    assert batched.fills() == expected_records
    assert snapshot(batched) == snapshot(single)
    assert (batched.trade_count, batched.traded_qty) == (single.trade_count, single.traded_qty)


def test_process_batch_without_keep_fills_does_not_accumulate_records(book_cls):
    book = book_cls()
    statuses = book.process_batch(SAMPLE_BATCH[:4], keep_fills=False)
    assert statuses.tolist() == [RESTING, RESTING, RESTING, RESTING]
    # only the last command's records are left
    assert book.fills() == [(TRADE, 1, 4, BOB, ALICE, 100, 5, 0, 3),
                            (MAKER_EXPIRED, 2, 4, ALICE, ALICE, 101, 5, 0, 3)]


def test_process_batch_accepts_a_strided_view(book_cls):
    batched, single = book_cls(), book_cls()
    every_other = SAMPLE_BATCH[::2]
    assert batched.process_batch(every_other).tolist() == one_by_one(single, every_other)[0]
    assert snapshot(batched) == snapshot(single)


def test_process_batch_of_nothing(book):
    assert book.process_batch(np.zeros(0, dtype=CMD_DTYPE)).tolist() == []


def test_process_batch_rejects_another_dtype(book):
    with pytest.raises(TypeError):
        book.process_batch(np.zeros(3, dtype=np.int64))


# ---- scale (Cython only) ----------------------------------------------------------------------

def test_growth_past_the_initial_capacity_keeps_every_index_right():
    n = 100_000

    def order_of(i):
        # asks above bids: nothing crosses, so all of them rest
        side, price = (BUY, 1000 - i % 500) if i % 2 else (SELL, 2000 + i % 500)
        return (10 * i + 7, i % 1000, side, price, 1 + i % 9, 0, i // 1000 + 1, False)

    book = OrderBook(16)
    for i in range(n):
        order_id, account, side, price, qty, _, client_id, _ = order_of(i)
        assert book.place(order_id, account, side, price, qty, client_id=client_id) == RESTING
    assert len(book) == n
    for i in range(0, n, 97):
        assert book.order(10 * i + 7) == order_of(i)
        assert book.find_client(i % 1000, i // 1000 + 1) == 10 * i + 7
    assert [order_id for order_id, *_ in book.cancel_account(123)] == [
        10 * i + 7 for i in range(123, n, 1000)]
    # cancel the rest in a scrambled order: every deletion reshuffles probe chains
    remaining = [i for i in range(n) if i % 1000 != 123]
    for i in remaining[::7] + [i for k, i in enumerate(remaining) if k % 7]:
        assert book.cancel(10 * i + 7) == 1 + i % 9
        if i % 89 == 0:
            assert book.find_client(i % 1000, i // 1000 + 1) is None
    assert len(book) == 0 and book.resting() == [] and book.depth() == ([], [])
    for i in range(0, n, 101):
        assert book.order(10 * i + 7) is None
        assert book.cancel_account(i % 1000) == []
    assert book.place(7, 1, BUY, 100, 1, client_id=1) == RESTING
    assert book.find_client(1, 1) == 7


def test_memory_per_resting_order_at_a_million_orders():
    n = 1_000_000
    cmds = np.zeros(n, dtype=CMD_DTYPE)
    ids = np.arange(n)
    cmds["op"] = PLACE
    cmds["order_id"] = ids + 1
    cmds["account"] = ids % 5000
    cmds["side"] = ids % 2
    cmds["price"] = np.where(ids % 2 == BUY, 10_000 - ids % 1000, 20_000 + ids % 1000)
    cmds["qty"] = 1 + ids % 50
    cmds["client_id"] = ids // 5000 + 1
    book = OrderBook()
    assert (book.process_batch(cmds, keep_fills=False) == RESTING).all()
    assert len(book) == n
    assert book.memory_bytes() / n < 200
