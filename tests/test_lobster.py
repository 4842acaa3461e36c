"""LOBSTER replay: each message type's rule on small hand-made streams, and the reproduction figures
on the real files in ../shared/data/lobster, asserted at the level reached."""

import numpy as np
import pytest

from perpcore import _book
from perpcore import lobster as lb

from real_data import LOBSTER as DATA
from real_data import needs_lobster as needs_data
LEVEL_1 = DATA / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
LEVEL_10 = DATA / "AMZN_2021-04-12_34200000_57600000_message_10.csv"
BUY, SELL = 1, -1


def replay(*rows, orderbook=None):
    msgs = np.array([(i, *row) for i, row in enumerate(rows)], dtype=np.int64).reshape(-1, 6)
    r = lb.LobsterReplay()
    report = r.run(msgs, lb.LobsterReport("test", 0),
                   None if orderbook is None else np.array(orderbook, dtype=np.int64))
    return r, report


def queue(r, side, price):
    return [o[0] for o in r.book.resting() if o[2] == side and o[3] == price]


def test_parse_time_is_exact():
    assert lb.parse_time("34200.000376608") == 34_200_000_376_608
    assert lb.parse_time("34200.01746") == 34_200_017_460_000
    assert lb.parse_time("57599") == 57_599_000_000_000


def test_reading_both_file_layouts(tmp_path):
    with_header = tmp_path / "X_message_1.csv"
    with_header.write_text("Time,Type,OrderId,Size,Price,Direction\n34200.5,1,7,100,2238100,1\n")
    seventh = tmp_path / "X_message_10.csv"
    seventh.write_text("34200.5,1,7,100,2238100,1,null\n34201,3,7,100,2238100,1,UBSS\n")
    assert lb.read_messages(with_header).tolist() == [[34_200_500_000_000, 1, 7, 100, 2238100, 1]]
    assert lb.read_messages(seventh)[:, 1].tolist() == [1, 3]
    assert lb.level_of(seventh) == 10 and lb.orderbook_for(seventh) is None


def test_adds_cancels_and_deletes():
    r, report = replay((lb.ADD, 1, 100, 500, BUY), (lb.ADD, 2, 50, 500, BUY),
                       (lb.PARTIAL_CANCEL, 1, 30, 500, BUY), (lb.DELETE, 2, 50, 500, BUY),
                       (lb.DELETE, 99, 10, 400, BUY))
    assert r.book.order(1)[4] == 70 and r.book.order(2) is None
    assert report.unknown_cancels == 1 and report.by_type == {"add": 2, "partial cancel": 1,
                                                              "delete": 2}


def test_visible_execution_is_the_engines_own_trade():
    trades = []
    msgs = np.array([(0, lb.ADD, 1, 100, 500, BUY), (1, lb.ADD, 2, 100, 500, BUY),
                     (2, lb.EXECUTE, 1, 40, 500, BUY)], dtype=np.int64)
    r = lb.LobsterReplay(on_trade=lambda ts, i, taker_side, fill: trades.append((taker_side, fill)))
    report = r.run(msgs, lb.LobsterReport("test", 0))
    assert report.reproduced == report.visible_executions == 1 == report.reproduced_seen
    ((taker_side, fill),) = trades
    assert taker_side == _book.SELL
    assert fill[0] == _book.TRADE and fill[1] == 1 and fill[3] == lb._level_account(0, 500)
    assert fill[4] == lb.TAKER_ACCOUNT and fill[5:7] == (500, 40)
    assert r.book.order(1)[4] == 60 and queue(r, 0, 500) == [1, 2]


def test_an_order_first_seen_executing_is_seeded_at_the_front():
    r, report = replay((lb.ADD, 2, 100, 500, SELL), (lb.EXECUTE, 1, 30, 500, SELL))
    assert report.seeded == 1 and report.reproduced == 1 and report.reproduced_seen == 0
    assert queue(r, 1, 500) == [2] and r.book.order(1) is None     # seeded 30, all executed


def test_better_priced_orders_were_already_gone():
    r, report = replay((lb.ADD, 1, 100, 501, BUY), (lb.ADD, 2, 100, 502, BUY),
                       (lb.ADD, 3, 100, 500, BUY), (lb.EXECUTE, 3, 100, 500, BUY))
    assert report.stale_removed == 2 and report.reproduced == 1 and len(r.book) == 0


def test_an_add_never_trades_against_stale_orders():
    r, report = replay((lb.ADD, 1, 100, 505, SELL), (lb.ADD, 2, 50, 506, BUY))
    assert report.stale_removed == 1 and report.engine_trades == 0
    assert r.book.best_bid() == 506 and r.book.best_ask() is None


def test_a_queue_the_file_contradicts_is_counted_and_repaired():
    """Order 1 sits ahead of order 2 but the file executes 2: not reproduced, and afterwards the
    book holds what the file says (1 was not there; 2 lost 60)."""
    r, report = replay((lb.ADD, 1, 100, 500, BUY), (lb.ADD, 2, 100, 500, BUY),
                       (lb.EXECUTE, 2, 60, 500, BUY))
    assert report.reproduced == 0 and report.repaired == 1 and report.engine_trades == 1
    assert r.book.order(1) is None and r.book.order(2)[4] == 40


def test_hidden_executions_touch_no_visible_order():
    r, report = replay((lb.ADD, 1, 100, 500, BUY), (lb.HIDDEN, 0, 25, 501, SELL),
                       (lb.HALT, 0, 0, -1, -1))
    assert report.hidden_executions == 1 and report.hidden_volume == 25
    assert report.engine_trades == 0 and r.book.order(1)[4] == 100
    assert report.by_type["halt"] == 1


def test_orderbook_file_aligns_the_top():
    """The file says the best bid is 500 for 30 lots: our better 501 level and the oldest order
    at 500 that the size leaves no room for were gone."""
    rows = [(lb.ADD, 1, 100, 501, BUY), (lb.ADD, 2, 70, 500, BUY), (lb.ADD, 3, 30, 500, BUY)]
    top = [(lb.EMPTY_ASK, 0, 501, 100), (lb.EMPTY_ASK, 0, 501, 100), (lb.EMPTY_ASK, 0, 500, 30)]
    r, report = replay(*rows, orderbook=top)
    assert report.top_compared == 3 and report.top_price_agreed == 2
    assert queue(r, 0, 500) == [3] and r.book.best_bid() == 500
    assert report.stale_removed == 2


# ---- the real files ----------------------------------------------------------------------------

@needs_data
@pytest.mark.parametrize("path", [LEVEL_1, LEVEL_10])
def test_file_times_are_exact_nanoseconds(path):
    texts = [line.split(",", 1)[0] for line in path.read_text().splitlines() if line[:1].isdigit()]
    assert lb.read_messages(path)[:, 0].tolist() == [lb.parse_time(t) for t in texts]


@needs_data
def test_level_10_file_reproduces_99_percent_of_visible_executions():
    report = lb.replay_file(LEVEL_10)
    assert report.messages == 40_674 and report.visible_executions == 5_389
    # reached 5,348 / 5,389 = 99.24%; 98.8% of the executions of orders the file showed added
    assert report.reproduction >= 0.99
    assert report.reproduction_seen >= 0.985
    assert report.engine_trades >= report.reproduced
    assert report.hidden_executions == 3_632


@needs_data
def test_level_1_file_with_its_orderbook():
    report = lb.replay_file(LEVEL_1)
    # 57,515 messages after the header (the data README says 57,514; the last line has no
    # newline, which a line count misses)
    assert report.messages == 57_515
    assert report.visible_executions == 8_974
    # reached 99.46% with the orderbook file's top of book; the top of book agrees on price
    # after 71% of messages (the rest: levels whose orders the file never showed being added)
    assert report.reproduction >= 0.99
    assert report.top_compared == report.messages and report.top_price_agreement >= 0.70


@needs_data
def test_level_1_file_from_its_messages_alone():
    report = lb.replay_file(LEVEL_1, compare_orderbook=False)
    # without the top of book, queues at levels that were away from the top hold orders whose
    # cancels the file never showed: 89.3% reached
    assert report.reproduction >= 0.88 and report.top_compared == 0


@needs_data
def test_replay_is_deterministic():
    a, b = lb.replay_file(LEVEL_10), lb.replay_file(LEVEL_10)
    assert a.book_hash == b.book_hash and a.resting_orders == b.resting_orders > 0
