"""Errors at the bottom of perpcore: why a command is refused, and what stops an engine.

Every layer imports this module and it imports none of perpcore's.

Refusals. Each is a RejectCode, in ranges by the stage that refuses (1xxx the boundary, 2xxx risk,
3xxx matching, 4xxx accounts and money, 5xxx sequencing), with a reason a person can read; the
command's one OrderRejected carries both. Inside a stage written in Python a refusal is raised as a
Rejection, which the exchange turns into that event; nothing has changed when it is raised.

Fail-stop. A command that raises inside the engine (a bug: every refusal is a rejection with a
code) may have left the state half-applied, so the engine stops there rather than build on it. It
refuses every later command with ENGINE_HALTED and keeps the Halt; its journal holds the failing
command, so recovery replays to the same point and reports the same Halt (perpcore.snapshot),
where an operator can inspect it (`perpcore store verify`) before fixing the software or cutting
the command out (`perpcore store repair`)."""
from __future__ import annotations

import traceback as _traceback
from enum import IntEnum

import msgspec

TRACE_LINES = 40    # the end of the traceback, where the cause is


class RejectCode(IntEnum):
    """Why a command was refused, in ranges by the stage that refused it."""
    # 1xxx validation at the boundary
    MALFORMED = 1000
    UNKNOWN_COMMAND = 1001
    UNKNOWN_SYMBOL = 1002
    UNKNOWN_ACCOUNT = 1003
    UNKNOWN_ASSET = 1004
    INVALID_PRICE = 1010
    PRICE_NOT_TICK_MULTIPLE = 1011
    PRICE_OUT_OF_RANGE = 1012
    INVALID_QTY = 1020
    QTY_NOT_LOT_MULTIPLE = 1021
    QTY_TOO_LARGE = 1022
    BELOW_MIN_NOTIONAL = 1023
    INVALID_AMOUNT = 1030
    AMOUNT_TOO_LARGE = 1031             # a balance, fund or total would pass its 64-bit range
    DUPLICATE_CLIENT_ORDER_ID = 1040
    UNKNOWN_ORDER = 1041
    STALE_TIMESTAMP = 1050
    TIME_STEP_TOO_LARGE = 1051          # moves time further than limits.max_time_step_ns
    # 2xxx risk before matching
    INSUFFICIENT_MARGIN = 2000
    NOT_ELIGIBLE = 2001
    REDUCE_ONLY_WOULD_INCREASE = 2002
    ACCOUNT_IN_LIQUIDATION = 2003
    LEVERAGE_NOT_ALLOWED = 2004
    PRICE_OUTSIDE_BAND = 2005
    RISK_LIMIT_EXCEEDED = 2006          # the position would outgrow its leverage's notional tier
    # 3xxx matching
    POST_ONLY_WOULD_TAKE = 3000
    FOK_UNFILLABLE = 3001
    NO_LIQUIDITY = 3002
    WOULD_TRIGGER_IMMEDIATELY = 3003
    NO_REFERENCE_PRICE = 3004           # a conditional order's price source has no price yet
    # 4xxx accounts and money
    DUPLICATE_ACCOUNT = 4000
    DUPLICATE_TRANSFER = 4001
    INSUFFICIENT_BALANCE = 4002
    WITHDRAWAL_BREAKS_MARGIN = 4003
    LOAN_LIMIT_EXCEEDED = 4004
    # 5xxx persistence and sequencing
    SEQUENCE_REPLAYED = 5000
    SEQUENCE_GAP = 5001
    ENGINE_HALTED = 5002                # fail-stop: an earlier command failed inside the engine
    CONCURRENT_SUBMIT = 5003            # another thread's submit is in progress (one writer)


class Rejection(Exception):
    """Raised inside a stage to refuse a command; the exchange turns it into one OrderRejected.
    It is raised before the command changed anything."""

    def __init__(self, code: RejectCode, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def reject(code: RejectCode, reason: str):
    """Refuses the command being applied (raises Rejection)."""
    raise Rejection(code, reason)


class Halt(msgspec.Struct, frozen=True):
    """The command at `seq` (of type `command`) raised `cause`; `trace` is the end of its
    traceback."""
    seq: int
    command: str
    cause: str
    trace: str

    @classmethod
    def of(cls, seq: int, command: object, error: BaseException) -> "Halt":
        """The Halt of the command at `seq` that raised `error`."""
        lines = "".join(_traceback.format_exception(error)).splitlines()
        return cls(seq, type(command).__name__, f"{type(error).__name__}: {error}"[:1000],
                   "\n".join(lines[-TRACE_LINES:]))
