"""Named JSON for commands and events: objects with field names, beside the compact msgpack.

perpcore.messages encodes each message as an array (the journal's compact form), so its JSON is
positional and its JSON Schema has no field names. This module gives every message a twin struct
with the same fields, defaults and constraints, encoded as an object whose "type" is the class
name:

    named.encode(m.Deposit(account=1, asset="USD", amount=5))
    # b'{"type":"Deposit","account":1,"asset":"USD","amount":5,"transfer_id":0,"ts":0}'
    named.decode_command(b'{"type":"CreateAccount","account":7}')   # -> m.CreateAccount(7, ...)
    named.command_schema()      # JSON Schema with the field names and their ranges

Decoding validates every field as the msgpack decoder does (the engine's boundary checks again).
Enums are their integer values.
"""
from __future__ import annotations

from typing import Union

import msgspec

from perpcore import messages as m

_astuple = msgspec.structs.astuple


def _twin(cls: type) -> type:
    fields = []
    for f in msgspec.structs.fields(cls):
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, f.default))
        else:
            fields.append((f.name, f.type))
    return msgspec.defstruct(cls.__name__, fields, tag=cls.__name__, frozen=True,
                             forbid_unknown_fields=True, module=__name__)


_COMMANDS = m.Commands.__args__
_EVENTS = m.Events.__args__
_TWIN = {cls: _twin(cls) for cls in _COMMANDS + _EVENTS}
_ORIGINAL = {twin: cls for cls, twin in _TWIN.items()}
NamedCommands = Union[tuple(_TWIN[c] for c in _COMMANDS)]
NamedEvents = Union[tuple(_TWIN[c] for c in _EVENTS)]

_encoder = msgspec.json.Encoder()
_command_decoder = msgspec.json.Decoder(NamedCommands)
_event_decoder = msgspec.json.Decoder(NamedEvents)


def named(msg: m.Message) -> msgspec.Struct:
    """The twin of a message (encodes as an object with field names)."""
    return _TWIN[type(msg)](*_astuple(msg))


def to_builtins(msg: m.Message) -> dict:
    """A message as a dict with "type" and its fields (to embed in a larger JSON document)."""
    return msgspec.to_builtins(named(msg))


def encode(msg: m.Message) -> bytes:
    """A command or event as a named JSON object."""
    return _encoder.encode(_TWIN[type(msg)](*_astuple(msg)))


def encode_many(msgs) -> bytes:
    """A list of messages as a JSON array of named objects."""
    return _encoder.encode([_TWIN[type(x)](*_astuple(x)) for x in msgs])


def decode_command(data: bytes | str) -> m.Command:
    """A command from its named JSON object; msgspec.ValidationError (or DecodeError) if any
    field is outside its schema or unknown."""
    twin = _command_decoder.decode(data)
    return _ORIGINAL[type(twin)](*_astuple(twin))


def decode_event(data: bytes | str) -> m.Event:
    """An event from its named JSON object."""
    twin = _event_decoder.decode(data)
    return _ORIGINAL[type(twin)](*_astuple(twin))


def command_schema() -> dict:
    """The JSON Schema of every command, with field names."""
    return msgspec.json.schema(NamedCommands)


def event_schema() -> dict:
    """The JSON Schema of every event, with field names."""
    return msgspec.json.schema(NamedEvents)
