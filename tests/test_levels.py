"""perpcore._binance: decimal text to ticks and lots in C, and price levels set from JSON level
lists, against plain Python references: InstrumentSpec.to_ticks / to_lots (Decimal) for the units,
and the level loop binance.LevelBook ran in Python before (a cancel / amend / place call per level)
for the book, compared order by order after every message."""
from decimal import Decimal, InvalidOperation

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpcore import binance as bn
from perpcore._book import BUY, POST_ONLY, SELL, UNKNOWN_ORDER, OrderBook
from perpcore._binance import LevelSetter, Step
from perpcore.config import InstrumentSpec

from real_data import BINANCE as DATA
from real_data import needs_binance
MAKER = bn._MAKER                  # the account LevelBook's levels belong to


def spec(tick="0.1", lot="0.001") -> InstrumentSpec:
    return msgspec.structs.replace(bn.binance_config().instruments["BTCUSDT"],
                                   tick_size=Decimal(tick), lot_size=Decimal(lot))


def setter(s: InstrumentSpec | None = None) -> LevelSetter:
    s = s or spec()
    return LevelSetter(OrderBook(), Step(s.tick_size, s.to_ticks), Step(s.lot_size, s.to_lots),
                       MAKER)


def reference_set(book: OrderBook, s: InstrumentSpec, bids, asks) -> None:
    """The Python loop LevelBook.update ran before perpcore._binance, over [price, qty] text
    pairs."""
    kept = []
    for side, levels in ((BUY, bids), (SELL, asks)):
        for price, qty in levels:
            n = s.to_lots(qty)
            if n:
                kept.append((2 * s.to_ticks(price) + side, n))
            else:
                book.cancel(2 * s.to_ticks(price) + side)
    for order_id, n in kept:
        if book.amend(order_id, order_id >> 1, n) == UNKNOWN_ORDER:
            price, side = divmod(order_id, 2)
            if book.place(order_id, MAKER, side, price, n, POST_ONLY, 0, 0) < 0:
                raise ValueError(f"level {price} x {n} on side {side} crosses the book")


def outcome(convert, text):
    """The converter's result, or the type of its error."""
    try:
        return convert(text)
    except (ValueError, ArithmeticError) as e:
        return type(e)


# ---- Step: text -> units -------------------------------------------------------------------------

def test_step_converts_plain_decimals_exactly():
    ticks, lots = Step(Decimal("0.1"), spec().to_ticks), Step(Decimal("0.001"), spec().to_lots)
    assert (ticks.mantissa, ticks.exponent, lots.mantissa, lots.exponent) == (1, 1, 1, 3)
    assert [ticks(t) for t in ("61800.20", "61800.2", "061800.2", "61800", "61800.", "0")] == \
        [618002, 618002, 618002, 618000, 618000, 0]
    assert [lots(t) for t in ("0.014", "20.004", "0.000", "1.23400000")] == [14, 20004, 0, 1234]
    assert Step(Decimal("25"), lambda t: None)("1000") == 40
    assert Step(Decimal("0.0025"), lambda t: None)("1.0050") == 402


def test_step_hands_other_text_to_the_converter():
    ticks = Step(Decimal("0.1"), spec().to_ticks)
    # forms Decimal reads and the C path does not: the converter's result
    assert [ticks(t) for t in ("6.18002E+4", " 61800.2 ", "+61800.2", ".5", "61_800.2")] == \
        [618002, 618002, 618002, 5, 618002]
    assert ticks("1" + "0" * 20) == 10**21             # more digits than an int64 holds
    # not a whole number of ticks, or not a number: the converter's error, message and all
    with pytest.raises(ValueError, match="not a multiple of 0.1"):
        ticks("61800.25")
    with pytest.raises(InvalidOperation):
        ticks("61800.2x")
    with pytest.raises(ValueError, match="not a finite number"):
        ticks("NaN")


def test_step_must_be_positive():
    for bad in ("0", "-0.1", "Infinity"):
        with pytest.raises(ValueError):
            Step(Decimal(bad), spec().to_ticks)


plain = st.builds(lambda a, point, b: a + ("." + b if point else ""),
                  st.text("0123456789", min_size=1, max_size=21), st.booleans(),
                  st.text("0123456789", max_size=21))
texts = st.one_of(plain, st.text("0123456789.+-eE_ x\u0661", max_size=12))
steps = st.sampled_from(["0.1", "0.01", "0.001", "0.5", "1", "5", "10", "25", "0.0025",
                         "0.00000001"])


@settings(max_examples=1500, derandomize=True, database=None, deadline=None)
@given(steps, texts)
def test_step_agrees_with_the_decimal_converter(step, text):
    s = spec(tick=step)
    assert outcome(Step(s.tick_size, s.to_ticks), text) == outcome(s.to_ticks, text)


# ---- LevelSetter against the Python loop ---------------------------------------------------------

def text_of(units: int, step: str, style: int) -> str:
    """units x step as decimal text, in a few of the spellings a feed may use."""
    d = units * Decimal(step)
    plain = f"{d:f}"
    if style == 1:
        return f"{d:.8f}"               # trailing zeros, as Binance spot writes them
    if style == 2:
        return "0" + plain              # a leading zero
    if style == 3:
        return f"{d:E}"                 # an exponent: the converter's path
    return plain


level = st.tuples(st.integers(990, 1010),                          # ticks around a 1000 mid
                  st.one_of(st.just(0), st.integers(1, 5000)),     # lots, often a removal
                  st.integers(0, 3))                               # spelling
diffs = st.lists(st.tuples(st.lists(level, max_size=12), st.lists(level, max_size=12)),
                 min_size=1, max_size=12)


@settings(max_examples=300, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(diffs)
def test_set_levels_matches_the_python_loop(messages):
    s = spec()
    fast, ref = setter(s), OrderBook()
    for bids, asks in messages:
        bids = [[text_of(p, "0.1", k), text_of(q, "0.001", k)] for p, q, k in bids]
        asks = [[text_of(p, "0.1", k), text_of(q, "0.001", k)] for p, q, k in asks]
        got = outcome(lambda _: fast.set_levels(msgspec.json.encode(bids),
                                                msgspec.json.encode(asks)), None)
        want = outcome(lambda _: reference_set(ref, s, bids, asks), None)
        assert got == want                  # None, or ValueError for a crossing level
        assert fast.book.dump() == ref.dump()
        assert fast.book.trade_count == 0


def test_removals_go_first_and_crossing_levels_are_refused():
    lv = setter()
    lv.set_levels(b'[["100.0","1.000"],["99.9","2.000"]]', b'[["100.1","0.500"]]')
    # the ask at 100.1 leaves before the bid moves onto it
    lv.set_levels(b'[["100.1","0.250"]]', b'[["100.1","0"],["100.3","1.000"]]')
    assert lv.book.depth(5) == ([(1001, 250, 1), (1000, 1000, 1), (999, 2000, 1)],
                                [(1003, 1000, 1)])
    assert lv.book.order(2 * 1001 + BUY)[:5] == (2 * 1001 + BUY, MAKER, BUY, 1001, 250)
    with pytest.raises(ValueError, match="crosses the book"):
        lv.set_levels(b'[]', b'[["100.3","2.000"],["100.0","1.000"]]')
    # the levels before the crossing one are set; nothing traded
    assert lv.book.depth(5)[1] == [(1003, 2000, 1)] and lv.book.trade_count == 0


def test_json_whitespace_escapes_and_raw_input():
    lv = setter()
    lv.set_levels(msgspec.Raw(b' [ [ "100.0" , "1.000" ] ,\n\t["99.9","\\u0032.000"] ] '),
                  bytearray(b"[]"))
    assert lv.book.depth(5) == ([(1000, 1000, 1), (999, 2000, 1)], [])


@pytest.mark.parametrize("bids", [
    b'', b'[', b'[[', b'{}', b'["100.0","1.000"]', b'[["100.0"]]', b'[["100.0","1.000","1"]]',
    b'[[100.0,"1.000"]]', b'[["100.0","1.000"],]', b'[["100.0","1.000"]] x', b'[["100.0,"1"]]',
    b'[["100.0","1.000"]', b'[["100.0","1.0\x01"]]', b'[["100.\xff","1.000"]]',
    b'[["100.0","1.000"],["100.05","1.000"]]', b'[["0","1.000"]]', b'[["-100.0","1.000"]]',
    b'[["100.0","-1.000"]]', b'[["1' + b'0' * 20 + b'","1.000"]]', b'[["100.0","1.0x"]]',
])
def test_bad_text_raises_and_changes_nothing(bids):
    lv = setter()
    lv.set_levels(b'[["99.0","1.000"],["98.0","2.000"]]', b'[["101.0","1.000"]]')
    before = lv.book.dump()
    # the removal would go first: it must not happen either
    with pytest.raises((ValueError, ArithmeticError)):
        lv.set_levels(bids, b'[["101.0","0"]]')
    assert lv.book.dump() == before


@needs_binance
def test_a_real_capture_rebuilds_the_same_book_as_the_python_loop():
    """The ETHUSDT capture's snapshot and every depth diff that follows it, through both paths."""
    s = bn.binance_config().instruments["ETHUSDT"]
    fast, ref = bn.LevelBook(s, OrderBook()), OrderBook()
    pairs = msgspec.json.Decoder(list[tuple[str, str]]).decode
    lines = bn.read_capture(bn.capture_paths(DATA, "ETHUSDT")[0])
    snap = next(msg for _, kind, msg in lines
                if kind == bn._SNAPSHOT and msg.lastUpdateId is not None)
    fast.load_snapshot(msgspec.structs.asdict(snap))
    reference_set(ref, s, pairs(snap.bids), pairs(snap.asks))
    applied = 0
    for _, kind, msg in lines:
        if kind == bn._DEPTH and fast.update(msg.U, msg.u, msg.pu, msg.b, msg.a):
            reference_set(ref, s, pairs(msg.b), pairs(msg.a))
            applied += 1
            if applied % 500 == 0:
                assert fast.book.dump() == ref.dump()
    assert applied == 6581 and fast.book.dump() == ref.dump() and len(ref) > 1000
