"""Hostile commands: every command class with every field drawn from plausible values (so commands
reach deep into the engine) or, often, from values no field may hold (wrong types, past 64 bits,
enum members of another enum, text too long or not encodable). Shared by the boundary tests
(tests/test_boundary.py, driven by hypothesis' Random) and the fuzzer benchmark
(bench/bench_hostile.py, seeded).

`HostileVenue` runs them against a venue with accounts, collateral, prices and resting orders and
checks each outcome: submit never raises and never halts; a rejection has a code and a reason and
leaves state_hash() as it was; an accepted command leaves a state that hashes, audits and encodes,
and events a gateway can encode."""
from __future__ import annotations

import random
from decimal import Decimal

import msgspec

from perpcore import Exchange, default_config
from perpcore import messages as m

COMMANDS = sorted(m._all_subclasses(m.Command), key=lambda cls: cls.__name__)
EDGE_INTS = (-2**100, -2**64, -2**63 - 1, -2**63, -1, 0, 1, 2**31, 2**63 - 1, 2**63, 2**64, 2**100)
WRONG_TYPES = (None, True, False, 0.0, 1.5, float("nan"), float("inf"), "", "1", "x" * 65,
               "\ud800", b"", b"BTC-PERP", [], [1], {}, {"a": 1}, (), Decimal("1"),
               m.Side.SELL, m.TimeInForce.FOK, m.CancelReason.USER, object())
SYMBOLS = ("BTC-PERP", "BTC-PERP", "ETH-PERP", "", "DOGE-PERP")
ASSETS = ("USD", "BTC", "ETH", "XRP", "")
ACCOUNTS = (1, 1, 2, 2, 3, 4, 0, 99)
MID = {"BTC-PERP": 650_000, "ETH-PERP": 340_000}
STEP_NS = 60 * 10**9


def _plausible(rng: random.Random, field: str, clock: int):
    if field == "account":
        return rng.choice(ACCOUNTS)
    if field == "symbol":
        return rng.choice(SYMBOLS)
    if field == "asset":
        return rng.choice(ASSETS)
    if field == "source":
        return rng.choice(("binance", "okx", ""))
    if field in ("price", "trigger_price"):
        return max(0, MID["BTC-PERP"] + rng.randint(-2_000, 2_000) * rng.choice((1, 10))) \
            if rng.random() < 0.9 else rng.choice((0, -1, 100_000_001))
    if field == "qty":
        return rng.choice((1, 10, 100, 1_000, 5_000, 0, -1, 1_000_001))
    if field == "amount":
        return rng.choice((10**6, 10**9, 10**11, 10**12, 1, 0, -5, 2**62, 2**63 - 1))
    if field == "leverage":
        return rng.choice((1, 5, 20, 50, 125, 126, 0, -1))
    if field in ("order_id", "client_order_id", "transfer_id"):
        return rng.choice((0, 1, 2, 3, rng.randint(1, 60)))
    if field == "ts":
        return rng.choice((0, 0, 0, 0, clock, clock + rng.randint(1, STEP_NS),
                           clock + 8 * 3600 * 10**9, max(clock - 1, 0), 2**63 - 1))
    if field in ("professional", "reduce_only"):
        return rng.random() < 0.5
    return None


def _field_value(rng: random.Random, cls, field: str, annotation, clock: int, hostility: float):
    roll = rng.random()
    if roll < hostility / 2:
        return rng.choice(WRONG_TYPES)
    if roll < hostility:
        return rng.choice(EDGE_INTS)
    value = _plausible(rng, field, clock)
    if value is not None:
        return value
    enum = (annotation if isinstance(annotation, type) and issubclass(annotation, m.IntEnum)
            else None)
    if enum is not None:        # a member, its plain int, or now and then an int past its members
        if field == "trigger" and rng.random() < 0.8:
            return m.TriggerKind.NONE
        member = rng.choice(list(enum))
        roll = rng.random()
        return member if roll < 0.5 else int(member) if roll < 0.95 else len(enum)
    return rng.choice(EDGE_INTS)


def hostile_command(rng: random.Random, clock: int, hostility: float | None = None):
    """One command (or, now and then, something that is not one) whose fields are each hostile
    with probability `hostility` (by default a level drawn per command, 0 to 0.6)."""
    if hostility is None:
        hostility = rng.choice((0.0, 0.0, 0.1, 0.3, 0.6))
    if rng.random() < 0.02:
        return rng.choice((None, {"account": 1}, m.OrderRejected(0, 0, m.RejectCode.MALFORMED, "x"),
                           b"\x93\xa3no", "PlaceOrder"))
    cls = rng.choice(COMMANDS)
    fields = msgspec.structs.fields(cls)
    return cls(*(_field_value(rng, cls, f.name, f.type, clock, hostility) for f in fields))


def venue() -> Exchange:
    """Accounts 1 and 2 professional with cash and BTC, 3 retail, a fund, both indexes, and resting
    orders around each mid."""
    ex = Exchange(default_config())
    setup = [m.CreateAccount(1), m.CreateAccount(2), m.CreateAccount(3, professional=False),
             m.Deposit(1, "USD", 10**12), m.Deposit(2, "USD", 10**11), m.Deposit(2, "BTC", 10**8),
             m.Deposit(3, "USD", 10**10), m.FundInsurance("USD", 10**11)]
    for symbol, mid in MID.items():
        setup.append(m.SetIndexPrice("binance", symbol, mid, ts=1_000))
        for i in range(1, 6):
            setup.append(m.PlaceOrder(1, symbol, m.Side.BUY, 100, mid - 10 * i))
            setup.append(m.PlaceOrder(2, symbol, m.Side.SELL, 100, mid + 10 * i))
    for cmd in setup:
        events = ex.submit(cmd)
        assert not any(type(e) is m.OrderRejected for e in events), (cmd, events)
    return ex


class HostileVenue:
    """A venue that takes hostile commands and checks every outcome (AssertionError otherwise).
    It starts over from its set-up state every `reset_every` commands, so the open state stays
    small and every command meets the set-up's accounts, prices and orders."""

    def __init__(self, reset_every: int = 500):
        self.initial = venue().snapshot()
        self.reset_every = reset_every
        self.cases = self.rejected = self.accepted = 0
        self._reset()

    def _reset(self) -> None:
        self.ex = Exchange.restore(default_config(), self.initial)
        self.hash = self.ex.state_hash()
        self.since_reset = 0

    def submit(self, cmd) -> list:
        ex = self.ex
        events = ex.submit(cmd)                         # must not raise
        self.cases += 1
        assert ex.halted is None, ex.halted
        msgspec.msgpack.encode(events)                  # a gateway can send every event
        if len(events) == 1 and type(events[0]) is m.OrderRejected:
            rejection = events[0]
            assert isinstance(rejection.code, m.RejectCode) and rejection.reason, rejection
            assert ex.state_hash() == self.hash, (cmd, rejection)
            self.rejected += 1
        else:                                           # accepted (AdvanceClock may say nothing)
            self.hash = ex.state_hash()
            ex.audit().check()
            self.accepted += 1
        self.since_reset += 1
        if self.since_reset >= self.reset_every:
            restored = Exchange.restore(default_config(), ex.snapshot())
            assert restored.state_hash() == self.hash
            self._reset()
        return events
