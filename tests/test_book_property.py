"""Differential tests: random command streams run through the Cython OrderBook and the pure-Python
ReferenceBook, which must agree after every step on the status, the fill records, the depth, the
touch, the size, the touched orders and client ids, and (periodically) every resting order.

Streams use three accounts (so self-trade prevention triggers often), prices in a narrow band (so
orders cross often), every time in force and STP mode, client ids, cancels of live, dead and unknown
ids, cancels by client id, amends of every kind and whole-account cancels. The hypothesis streams
drive EXAMPLES x STREAM_LENGTH = 125,000 commands, derandomized so CI is deterministic; seeded
streams add 200,000 commands in a narrow band, 30,000 in a wide one (a deep book), 60,000 over a
book thousands of levels wide, and 100,000 through process_batch.
"""
import math
import random
from collections import deque, namedtuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpcore._book import (
    AMEND, BUY, CANCEL, CMD_DTYPE, FOK, GTC, INVALID, IOC, PLACE, POST_ONLY, RESTING, SELL,
    STP_MODES, OrderBook,
)
from refbook import ReferenceBook

EXAMPLES, STREAM_LENGTH = 500, 250

ACCOUNTS = (1, 2, 3)
MAX_QTY = 10
MAX_CLIENT_ID = 40              # half the orders have one; few enough values to collide at times
RECENT_IDS = 64                 # some cancels and amends target a recent id, live or dead
RESTING_EVERY = 16              # steps between full comparisons of resting()
ALL_LEVELS = 1_000_000          # a depth() that shows every level

# How often each kind of command occurs, out of the sum of the weights.
KIND_WEIGHTS = {
    "place": 60,
    "place_duplicate": 2,       # reuses a live id (mostly)
    "place_invalid": 2,
    "cancel": 6,
    "cancel_unknown": 2,
    "cancel_client": 3,
    "amend_down": 6,            # same price, total not above the current one: keeps priority
    "amend_up": 6,              # same price, larger total: loses priority
    "amend_price": 9,
    "amend_invalid": 3,         # total not above filled, or a non-positive price
    "cancel_account": 1,        # rare: it empties a third of the book
    "unknown_op": 2,            # batches only: an op code process_batch does not know
}
STREAM_KINDS = [k for k in KIND_WEIGHTS if k != "unknown_op"]
# process_batch runs only places, cancels by id and amends
BATCH_KINDS = [k for k in KIND_WEIGHTS if k not in ("cancel_client", "cancel_account")]
# Mostly orders that rest, so the book has depth for takers to sweep and amends to act on.
TIF_WEIGHTS = {GTC: 3, POST_ONLY: 2, IOC: 1, FOK: 1}

Raw = namedtuple("Raw", "kind account side price qty tif stp client_id pick")


class CommandSpace:
    """Every raw command numbered: a code picks one value per field, as digits of a mixed radix.

    Hypothesis spends ~20 us per value it draws, so drawing one integer per command (rather than
    one per field) is what keeps 100,000 commands within seconds; shrinking a code toward 0 still
    simplifies its command (toward a one-lot GTC buy at the lowest price).

    Prices are drawn from the band, then bids move down and asks up by side_skew: 0 makes nearly
    every order cross, a skew near half the band leaves a thin overlap and builds a deep book."""

    def __init__(self, kinds, prices, side_skew=0):
        self.side_skew = side_skew
        self.fields = {
            "kind": [k for k in kinds for _ in range(KIND_WEIGHTS[k])],
            "account": ACCOUNTS,
            "side": (BUY, SELL),
            "price": prices,
            "qty": range(1, MAX_QTY + 1),
            "tif": [tif for tif, weight in TIF_WEIGHTS.items() for _ in range(weight)],
            "stp": sorted(STP_MODES.values()),
            "client_id": [0] * MAX_CLIENT_ID + list(range(1, MAX_CLIENT_ID + 1)),
            "pick": range(1 << 16),
        }
        self.size = math.prod(len(values) for values in self.fields.values())

    def decode(self, code):
        picked = {}
        for name, values in self.fields.items():
            code, digit = divmod(code, len(values))
            picked[name] = values[digit]
        return Raw(**picked)

    def codes(self):
        return st.integers(0, self.size - 1)

    def random(self, rng):
        return self.decode(rng.randrange(self.size))

    def price(self, side, raw):
        return raw.price - self.side_skew if side == BUY else raw.price + self.side_skew


NARROW = range(95, 106)
STREAM_COMMANDS = CommandSpace(STREAM_KINDS, NARROW)
BATCH_COMMANDS = CommandSpace(BATCH_KINDS, NARROW)
DEEP_BOOK_COMMANDS = CommandSpace(STREAM_KINDS, range(1000, 3001), side_skew=900)


class Encoder:
    """Turns raw draws into concrete commands, reading the reference book to target live orders
    and to size amends. Commands are tuples: ("place", order_id, account, side, price, qty, tif,
    stp, client_id), ("cancel", order_id), ("cancel_client", account, client_id),
    ("amend", order_id, price, total_qty), ("cancel_account", account), ("unknown_op", order_id)."""

    def __init__(self, reference, space):
        self.reference = reference
        self.space = space
        self.recent_ids = deque(maxlen=RECENT_IDS)
        self.next_id = 1

    def fresh_id(self):
        order_id = self.next_id
        self.next_id += 1
        self.recent_ids.append(order_id)
        return order_id

    def target_id(self, raw):
        """Three times in four a resting order's id (if any), else a recent id, live or dead."""
        choice = raw.pick >> 2
        if raw.pick % 4:
            resting = self.reference.resting()
            if resting:
                return resting[choice % len(resting)][0]
        return self.recent_ids[choice % len(self.recent_ids)] if self.recent_ids else choice

    def encode(self, raw):
        kind = raw.kind
        if kind in ("place", "place_duplicate", "place_invalid"):
            order_id = self.target_id(raw) if kind == "place_duplicate" else self.fresh_id()
            fields = dict(account=raw.account, side=raw.side, price=self.space.price(raw.side, raw),
                          qty=raw.qty, tif=raw.tif, stp=raw.stp, client_id=raw.client_id)
            if kind == "place_invalid":
                field, bad_value = [("qty", 1 - raw.qty), ("price", -(raw.price % 3)),
                                    ("side", 2), ("tif", 4), ("stp", 4)][raw.pick % 5]
                fields[field] = bad_value
            return ("place", order_id, *fields.values())
        if kind == "cancel":
            return ("cancel", self.target_id(raw))
        if kind == "cancel_unknown":
            return ("cancel", -1 - raw.pick)       # placed ids are positive
        if kind == "cancel_client":
            return ("cancel_client", raw.account, raw.client_id)
        if kind == "cancel_account":
            return ("cancel_account", raw.account)
        if kind == "unknown_op":
            return ("unknown_op", self.target_id(raw))
        return self.encode_amend(raw)

    def encode_amend(self, raw):
        order_id = self.target_id(raw)
        target = self.reference.order(order_id)
        if target is None:
            return ("amend", order_id, self.space.price(raw.side, raw), raw.qty)
        _, _, side, price, open_qty, filled, _, _ = target
        if raw.kind == "amend_down":
            return ("amend", order_id, price, filled + 1 + raw.qty % open_qty)
        if raw.kind == "amend_up":
            return ("amend", order_id, price, filled + open_qty + raw.qty)
        if raw.kind == "amend_price":
            return ("amend", order_id, self.space.price(side, raw), filled + raw.qty)
        if raw.pick % 2:
            return ("amend", order_id, price, filled - raw.qty % 3)
        return ("amend", order_id, -(raw.price % 3), filled + raw.qty)


def apply(book, cmd):
    """Runs a command; for a cancel by client id, returns what find_client and cancel said."""
    kind, *args = cmd
    if kind == "place":
        return book.place(*args)
    if kind == "cancel":
        return book.cancel(*args)
    if kind == "amend":
        return book.amend(*args)
    if kind == "cancel_account":
        return book.cancel_account(*args)
    order_id = book.find_client(*args)
    return order_id, None if order_id is None else book.cancel(order_id)


def observe(book):
    """What is compared after every step."""
    return (book.fills(), book.fill_count, book.depth(ALL_LEVELS), book.best_bid(),
            book.best_ask(), len(book), book.trade_count, book.traded_qty)


def touched(cmd):
    """The order ids and (account, client id) keys a command may have changed."""
    if cmd[0] == "place":
        _, order_id, account, _, _, _, _, _, client_id = cmd
        return [order_id], [(account, client_id)]
    if cmd[0] in ("cancel", "amend"):
        return [cmd[1]], []
    if cmd[0] == "cancel_client":
        return [], [cmd[1:]]
    return [], []


class Differential:
    """The Cython book and the reference side by side, checked after every command."""

    def __init__(self, space):
        # a tiny initial capacity so streams also exercise pool growth and index rehashing
        self.fast = OrderBook(16)
        self.reference = ReferenceBook()
        self.encoder = Encoder(self.reference, space)
        self.steps = 0

    def run(self, raw):
        cmd = self.encoder.encode(raw)
        assert apply(self.fast, cmd) == apply(self.reference, cmd), cmd
        assert observe(self.fast) == observe(self.reference), cmd
        order_ids, client_keys = touched(cmd)
        for order_id in order_ids:
            assert self.fast.order(order_id) == self.reference.order(order_id), cmd
        for key in client_keys:
            assert self.fast.find_client(*key) == self.reference.find_client(*key), cmd
        self.steps += 1
        if self.steps % RESTING_EVERY == 0:
            self.compare_resting()

    def compare_resting(self):
        assert self.fast.resting() == self.reference.resting()
        for side in (BUY, SELL):
            assert self.fast.level_count(side) == self.reference.level_count(side)

    def finish(self):
        """Final full comparison, then both books emptied account by account."""
        self.compare_resting()
        for account in ACCOUNTS:
            assert self.fast.cancel_account(account) == self.reference.cancel_account(account)
        assert len(self.fast) == len(self.reference) == 0


@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(st.lists(STREAM_COMMANDS.codes(), min_size=STREAM_LENGTH, max_size=STREAM_LENGTH))
def test_random_streams_agree_with_the_reference(codes):
    books = Differential(STREAM_COMMANDS)
    for code in codes:
        books.run(STREAM_COMMANDS.decode(code))
    books.finish()


@pytest.mark.parametrize("space, length", [(STREAM_COMMANDS, 200_000),
                                           (DEEP_BOOK_COMMANDS, 30_000)], ids=["narrow", "deep"])
def test_long_seeded_stream_agrees_with_the_reference(space, length):
    rng = random.Random(20240611)
    books = Differential(space)
    for _ in range(length):
        books.run(space.random(rng))
    books.finish()


def test_thousands_of_levels_agree_with_the_reference():
    """A book many chunks of levels wide: levels created and removed all over each side, whole
    runs of them swept, and amends moving orders across it."""
    rng = random.Random(99)
    fast, reference = OrderBook(16), ReferenceBook()
    rested = []                 # ids that rested; sweeps kill some, cancelling those is fine too
    next_id = 1

    def both(method, *args):
        result = getattr(fast, method)(*args)
        assert result == getattr(reference, method)(*args), (method, args)
        # the full depth is O(levels) per call: here only the touch, all of it below
        assert observe_touch(fast) == observe_touch(reference), (method, args)
        return result

    def observe_touch(book):
        return book.fills(), book.depth(3), len(book)

    def compare_all():
        assert fast.depth(ALL_LEVELS) == reference.depth(ALL_LEVELS)
        assert fast.resting() == reference.resting()

    def price_on(side):
        # bids never reach the asks' range: only the sweeps below trade
        return rng.randint(1, 10_000) if side == BUY else rng.randint(10_001, 20_000)

    for step in range(60_000):
        roll = rng.random()
        side = rng.choice((BUY, SELL))
        if step < 20_000 or roll < 0.4:
            status = both("place", next_id, rng.choice(ACCOUNTS), side, price_on(side),
                          rng.randint(1, MAX_QTY), rng.choice((GTC, POST_ONLY)),
                          rng.choice(sorted(STP_MODES.values())))
            if status == RESTING:
                rested.append(next_id)
            next_id += 1
        elif roll < 0.997 and rested:
            # swap-remove a random id from the list: O(1)
            k = rng.randrange(len(rested))
            rested[k], rested[-1] = rested[-1], rested[k]
            order_id = rested.pop() if roll < 0.75 else rested[-1]
            order = reference.order(order_id)
            if roll < 0.75 or order is None:
                both("cancel", order_id)
            else:
                both("amend", order_id, price_on(order[2]), order[5] + rng.randint(1, MAX_QTY))
        else:
            # a sweep through up to a few hundred levels, across chunk boundaries, with an STP
            # mode that does not stop it at the first own order
            reachable = fast.depth(rng.randint(1, 300))[1 - side]
            if reachable:
                both("place", next_id, rng.choice(ACCOUNTS), side, reachable[-1][0], 10**9, IOC,
                     rng.choice((STP_MODES["none"], STP_MODES["expire_maker"])))
                next_id += 1
        if step % 2000 == 0:
            compare_all()
    compare_all()
    for order_id in rested:
        both("cancel", order_id)
    assert len(fast) == len(reference) == 0


# ---- process_batch ----------------------------------------------------------------------------

UNKNOWN_OP = 9


def to_row(row, cmd):
    kind, *args = cmd
    if kind == "place":
        row["op"] = PLACE
        (row["order_id"], row["account"], row["side"], row["price"], row["qty"], row["tif"],
         row["stp"], row["client_id"]) = args
    elif kind == "cancel":
        row["op"], row["order_id"] = CANCEL, args[0]
    elif kind == "amend":
        row["op"], (row["order_id"], row["price"], row["qty"]) = AMEND, args
    else:
        row["op"], row["order_id"] = UNKNOWN_OP, args[0]


def encode_batch(shadow, encoder, raws):
    """Encodes raws into a CMD_DTYPE array while running them one by one on the shadow book;
    returns the array and, per command, the status and the records the batch must reproduce."""
    cmds = np.zeros(len(raws), dtype=CMD_DTYPE)
    statuses, records = [], []
    for row, raw in zip(cmds, raws):
        cmd = encoder.encode(raw)
        to_row(row, cmd)
        if cmd[0] == "unknown_op":
            statuses.append(INVALID)
            records.append([])
        else:
            statuses.append(apply(shadow, cmd))
            records.append(shadow.fills())
    return cmds, statuses, records


def check_batches(batches, keep_fills):
    fast, reference, shadow = OrderBook(16), ReferenceBook(), ReferenceBook()
    encoder = Encoder(shadow, BATCH_COMMANDS)
    for raws in batches:
        cmds, statuses, records = encode_batch(shadow, encoder, raws)
        assert fast.process_batch(cmds, keep_fills).tolist() == statuses
        assert reference.process_batch(cmds, keep_fills).tolist() == statuses
        # without keep_fills each command drops the previous one's records
        expected_fills = [r for command_records in records for r in command_records] \
            if keep_fills else records[-1]
        assert fast.fills() == reference.fills() == expected_fills
        assert fast.resting() == reference.resting() == shadow.resting()
        assert observe(fast) == observe(reference)


@settings(max_examples=100, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.lists(BATCH_COMMANDS.codes(), min_size=1, max_size=100), min_size=1,
                max_size=5),
       st.booleans())
def test_process_batch_agrees_with_the_reference_and_one_by_one(batches, keep_fills):
    check_batches([[BATCH_COMMANDS.decode(code) for code in codes] for codes in batches],
                  keep_fills)


@pytest.mark.parametrize("keep_fills", [True, False])
def test_long_seeded_batches_agree_with_the_reference(keep_fills):
    rng = random.Random(7)
    check_batches([[BATCH_COMMANDS.random(rng) for _ in range(5000)] for _ in range(10)],
                  keep_fills)
