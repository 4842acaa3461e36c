import gc
import typing

import msgspec
import pytest

from perpcore import messages as m


def _example(cls):
    """An instance of a message class with a plausible value in every field."""
    values = {}
    for field in msgspec.structs.fields(cls):
        if field.default is not msgspec.NODEFAULT:
            continue
        t = field.type
        options = [a for a in typing.get_args(t) if a is not type(None)]
        if options:             # an optional field: give it a value of its type
            t = options[0]
        if t is int:
            values[field.name] = 7
        elif t is str:
            values[field.name] = "BTC-PERP"
        elif t is bool:
            values[field.name] = True
        elif isinstance(t, type) and issubclass(t, m.IntEnum):
            values[field.name] = list(t)[-1]
        else:
            pytest.skip(f"no example value for {cls.__name__}.{field.name}: {t}")
    return cls(**values)


COMMANDS = m._all_subclasses(m.Command)
EVENTS = m._all_subclasses(m.Event)


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda c: c.__name__)
def test_every_command_round_trips_on_its_channel(cls):
    cmd = _example(cls)
    assert m.command_decoder.decode(m.encoder.encode(cmd)) == cmd


@pytest.mark.parametrize("cls", EVENTS, ids=lambda c: c.__name__)
def test_every_event_round_trips_on_its_channel(cls):
    event = _example(cls)
    assert m.event_decoder.decode(m.encoder.encode(event)) == event


def test_messages_are_frozen_tagged_arrays():
    cmd = m.CancelOrder(account=1, symbol="BTC-PERP", order_id=3)
    with pytest.raises(AttributeError):
        cmd.order_id = 4
    assert msgspec.msgpack.decode(m.encoder.encode(cmd))[0] == "CancelOrder"


def test_an_event_is_not_accepted_as_a_command():
    with pytest.raises(msgspec.ValidationError):
        m.command_decoder.decode(m.encoder.encode(m.AccountCreated(1, 0, 1, True)))


def test_decoding_checks_field_types():
    bad = msgspec.msgpack.encode(["PlaceOrder", 1, "BTC-PERP", 0, 1.5, 650000])
    with pytest.raises(msgspec.ValidationError):
        m.command_decoder.decode(bad)


@pytest.mark.parametrize("cls", m._all_subclasses(m.Message), ids=lambda c: c.__name__)
def test_messages_hold_only_scalars_so_the_collector_may_skip_them(cls):
    # gc=False is only safe while no message can reference another object that refers back to it
    scalars = (int, str, bool, type(None))
    for field in msgspec.structs.fields(cls):
        t = field.type
        if typing.get_origin(t) is typing.Annotated:    # a command field's range
            t = typing.get_args(t)[0]
        for arg in typing.get_args(t) or (t,):
            assert isinstance(arg, type) and issubclass(arg, scalars), (cls.__name__, field.name,
                                                                        arg)
    assert not gc.is_tracked(_example(cls))
