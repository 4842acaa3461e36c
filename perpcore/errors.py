"""What stops an engine: the fail-stop record.

A command that raises inside the engine (a bug: every refusal is a rejection with a code) may have
left the state half-applied, so the engine stops there rather than build on it. It refuses every
later command with ENGINE_HALTED and keeps the Halt; its journal holds the failing command, so
recovery replays to the same point and reports the same Halt (perpcore.snapshot), where an operator
can inspect it (`perpcore store verify`) before fixing the software or cutting the command out
(`perpcore store repair`)."""
from __future__ import annotations

import traceback as _traceback

import msgspec

TRACE_LINES = 40    # the end of the traceback, where the cause is


class Halt(msgspec.Struct, frozen=True):
    """The command at `seq` (of type `command`) raised `cause`; `trace` is the end of its
    traceback."""
    seq: int
    command: str
    cause: str
    trace: str

    @classmethod
    def of(cls, seq: int, command: object, error: BaseException) -> "Halt":
        lines = "".join(_traceback.format_exception(error)).splitlines()
        return cls(seq, type(command).__name__, f"{type(error).__name__}: {error}"[:1000],
                   "\n".join(lines[-TRACE_LINES:]))
