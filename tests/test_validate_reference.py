"""The boundary's one pass (perpcore._validate: fields read from their slots, ints judged by their
size, the last tuple refilled) against a plain reference written from the schema alone: the same
verdict, the same reject code and reason, the same fields as msgspec's astuple, for every command
class and random, hostile and edge values in every field."""
import gc
import sys
from enum import IntEnum

import msgspec
import msgspec.inspect as mi
from hypothesis import given, settings
from hypothesis import strategies as st

from hostile import COMMANDS
from perpcore import messages as m
from perpcore._validate import _fields_of, check
from perpcore.messages import RejectCode

BITS = sys.int_info.bits_per_digit


def reference(cmd):
    """What the boundary answers for `cmd`, worked out from msgspec's type info."""
    if type(cmd) not in COMMANDS:
        return RejectCode.UNKNOWN_COMMAND, f"not a command: {type(cmd).__name__}"
    for field, value in zip(mi.type_info(type(cmd)).fields, msgspec.structs.astuple(cmd)):
        name, t, kind = f"{type(cmd).__name__}.{field.name}", field.type, type(value)
        if isinstance(t, mi.IntType):
            if kind is not int:
                return RejectCode.MALFORMED, f"{name} must be an integer, not {kind.__name__}"
            if not t.ge <= value <= t.le:
                return RejectCode.MALFORMED, f"{name} outside [{t.ge}, {t.le}]"
        elif isinstance(t, mi.BoolType):
            if kind is not bool:
                return RejectCode.MALFORMED, f"{name} must be a bool, not {kind.__name__}"
        elif isinstance(t, mi.StrType):
            if kind is not str:
                return RejectCode.MALFORMED, f"{name} must be a string, not {kind.__name__}"
            if len(value) > t.max_length:
                return RejectCode.MALFORMED, f"{name} longer than {t.max_length} characters"
            try:
                value.encode()
            except UnicodeEncodeError:
                return RejectCode.MALFORMED, f"{name} is not valid text"
        elif kind is not t.cls and not (kind is int and value in {int(e) for e in t.cls}):
            return RejectCode.MALFORMED, f"{name} must be one of {t.cls.__name__}'s values"
    return None


class Count(int):
    pass


class Name(str):
    pass


class Other(IntEnum):
    ZERO = 0
    ONE = 1


# ints on both sides of every digit count (where an int's size changes) and of the int64 range
_EDGES = sorted({sign * ((1 << BITS * digits) + delta)
                 for digits in range(5) for delta in (-2, -1, 0, 1) for sign in (1, -1)}
                | {2**63 - 1, 2**63, -2**63, -2**63 - 1, 2**64, -2**64})
_INTS = st.one_of(st.sampled_from(_EDGES), st.integers(-2**70, 2**70), st.integers(-5, 5),
                  st.integers(0, 2**62))
_TEXT = st.one_of(st.text(max_size=70), st.text(alphabet="ab", min_size=63, max_size=66),
                  st.text(alphabet="é€😀", min_size=62, max_size=66),
                  st.sampled_from(["\ud800", "a\udfff", "BTC-PERP", ""]))
_HOSTILE = st.one_of(
    _INTS, _TEXT, st.booleans(), st.none(), st.floats(), st.binary(max_size=3),
    st.builds(Count, _INTS), st.builds(Name, _TEXT), st.sampled_from(list(Other)),
    st.sampled_from([e for enum in (m.Side, m.OrderType, m.TimeInForce, m.SelfTradePrevention,
                                    m.TriggerKind, m.TriggerSource, m.CancelReason)
                     for e in enum]),
    st.lists(st.integers(), max_size=2))


def _plain(field):
    """A value of the field's own type, within its range or just outside it."""
    t = field.type
    if isinstance(t, mi.IntType):
        return st.one_of(st.integers(t.ge, t.le), st.sampled_from([t.ge, t.le, t.ge - 1, t.le + 1]),
                         st.sampled_from([e for e in _EDGES if t.ge <= e <= t.le]))
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.StrType):
        return _TEXT
    return st.one_of(st.sampled_from(list(t.cls)), st.integers(-1, len(t.cls)))


@settings(max_examples=600, deadline=None)
@given(data=st.data(), cls=st.sampled_from(COMMANDS))
def test_the_boundary_answers_as_the_reference_with_the_same_fields(data, cls):
    cmd = cls(*(data.draw(st.one_of(_plain(field), _HOSTILE) if data.draw(st.booleans())
                          else _plain(field))
                for field in mi.type_info(cls).fields))
    expected = reference(cmd)
    assert check(cmd) == expected, cmd
    fields = _fields_of(cmd)
    if expected is None:
        assert fields == msgspec.structs.astuple(cmd)
        assert all(a is b for a, b in zip(fields, msgspec.structs.astuple(cmd)))
    else:
        assert fields is None


def test_objects_that_are_not_commands_are_unknown():
    class Later(m.PlaceOrder, frozen=True):      # a subclass made after the schemas were read
        pass
    for thing in (None, 5, "PlaceOrder", m.PlaceOrder, m.OrderRejected(1, 2, RejectCode.MALFORMED,
                                                                      "x"),
                  Later(1, "BTC-PERP", m.Side.BUY, 1)):
        assert check(thing) == reference(thing) and check(thing)[0] == RejectCode.UNKNOWN_COMMAND
        assert _fields_of(thing) is None


def test_a_tuple_someone_holds_is_never_refilled():
    first = m.PlaceOrder(1, "BTC-PERP", m.Side.BUY, 5, 100)
    second = m.PlaceOrder(2, "ETH-PERP", m.Side.SELL, 7, 200, ts=9)
    held = _fields_of(first)
    other = _fields_of(second)
    assert held is not other
    assert held == msgspec.structs.astuple(first) and other == msgspec.structs.astuple(second)
    del held, other
    for cmd in (first, second, first):      # refilled now no one holds it: still right
        assert _fields_of(cmd) == msgspec.structs.astuple(cmd)
    # enum fields as plain ints: a tuple of atoms, which the collector untracks...
    assert _fields_of(m.PlaceOrder(3, "BTC-PERP", 1, 1, 1, 0, 0, 0, 0, False, 0, 0, 0, 0))
    gc.collect()
    # ...and tracks again once refilled with enum members (objects it must see)
    fields = _fields_of(m.PlaceOrder(3, "BTC-PERP", m.Side.SELL, 1, 1))
    assert gc.is_tracked(fields) and fields[2] is m.Side.SELL
