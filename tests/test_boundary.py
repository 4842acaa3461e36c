"""The boundary (perpcore._validate) and the total state machine: hostile values in every field of
every command never raise, never halt the engine, never change the state on a refusal and never
reach the journal; the boundary agrees with the msgpack decoder's schema; a command that raises
inside the engine stops it (fail-stop) and recovery stops at the same place; one writer."""
import random
import sys
import threading

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostile import COMMANDS, HostileVenue, hostile_command
from perpcore import Exchange, default_config
from perpcore import journal as jr
from perpcore import snapshot as sn
from perpcore import messages as m
from perpcore._validate import check, schema
from perpcore.exchange import config_digest
from perpcore.messages import RejectCode

CONFIG = default_config()
DIGEST = config_digest(CONFIG)


# ---- hostile input ---------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**64))
def test_hostile_commands_never_raise_and_refusals_change_nothing(seed):
    rng = random.Random(seed)
    venue = HostileVenue(reset_every=150)
    for _ in range(300):
        venue.submit(hostile_command(rng, venue.ex.clock))


def test_the_hostile_stream_reaches_every_stage():
    """The seeded stream is not refused wholesale at the boundary: it trades, settles funding,
    accrues interest and is refused by every stage."""
    venue, rng, seen = HostileVenue(), random.Random(7), set()
    for _ in range(20_000):
        for event in venue.submit(hostile_command(rng, venue.ex.clock)):
            seen.add(event.code if type(event) is m.OrderRejected else type(event))
    assert {m.OrderFilled, m.FundingSettled, m.InterestAccrued, m.Deposited, m.Withdrawn,
            m.Borrowed, m.LeverageSet, m.OrderAmended, m.OrderCancelled} <= seen
    assert {RejectCode.MALFORMED, RejectCode.UNKNOWN_COMMAND, RejectCode.STALE_TIMESTAMP,
            RejectCode.TIME_STEP_TOO_LARGE, RejectCode.AMOUNT_TOO_LARGE,
            RejectCode.INSUFFICIENT_BALANCE, RejectCode.UNKNOWN_ORDER} <= seen
    assert venue.accepted > 0.05 * venue.cases


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**64))
def test_nothing_refused_at_the_boundary_is_journaled_and_the_journal_replays(seed,
                                                                               tmp_path_factory):
    rng = random.Random(seed)
    path = tmp_path_factory.mktemp("j") / "j.pcj"
    venue = HostileVenue(reset_every=10**9)
    ex = venue.ex
    je = jr.JournaledExchange(ex, jr.Journal(path, DIGEST, first_seq=ex.seq + 1, sync="none"))
    start, unsequenced = ex.seq, 0
    for _ in range(200):
        cmd = hostile_command(rng, ex.clock)
        before = ex.seq
        events = je.submit(cmd)
        if ex.seq == before:                        # refused before it was sequenced
            unsequenced += 1
            assert check(cmd) is not None and len(events) == 1
            assert events[0].code in (RejectCode.MALFORMED, RejectCode.UNKNOWN_COMMAND)
        else:
            assert check(cmd) is None
    je.close()
    _, records, report = jr.read(path)
    assert report.records == ex.seq - start == 200 - unsequenced and unsequenced
    replayed = Exchange.restore(CONFIG, venue.initial)
    jr.replay(path, replayed)
    assert replayed.seq == ex.seq and replayed.state_hash() == ex.state_hash()


_ANY = st.one_of(st.none(), st.booleans(), st.floats(), st.text(max_size=70), st.binary(max_size=4),
                 st.integers(), st.integers(-2**64, 2**64), st.sampled_from(list(m.Side)),
                 st.sampled_from(list(m.TimeInForce)), st.lists(st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), cls=st.sampled_from(COMMANDS))
def test_the_boundary_agrees_with_the_decoders_schema(data, cls):
    """A command passes the boundary exactly when its msgpack encoding decodes under the declared
    schema (one range per field, written once in perpcore.messages) to an equal command. (An
    IntEnum member in an integer field encodes as its value, but the boundary wants an exact int:
    the engine must see the same type live and in a replay.)"""
    cmd = cls(*(data.draw(_ANY) for _ in msgspec.structs.fields(cls)))
    try:
        decoded = m.command_decoder.decode(m.encoder.encode(cmd))
    except (msgspec.ValidationError, msgspec.EncodeError, TypeError, OverflowError,
            UnicodeEncodeError):
        decoded = None
    exact = all(c.kind != 0 or type(value) is int
                for c, value in zip(schema(cls), msgspec.structs.astuple(cmd)))
    assert (check(cmd) is None) == (decoded is not None and exact), (cmd, check(cmd))


def test_every_command_field_has_a_bounded_check():
    for cls in COMMANDS:
        checks = schema(cls)
        assert [c.name for c in checks] == [f"{cls.__name__}.{f}" for f in cls.__struct_fields__]
        for c in checks:
            assert c.kind != 0 or -2**63 <= c.lo <= c.hi <= 2**63 - 1


def test_a_boundary_refusal_is_not_sequenced_and_says_which_field():
    ex = Exchange(CONFIG)
    ex.submit(m.CreateAccount(1))
    (event,) = ex.submit(m.Deposit(1, "USD", 100, ts=None))
    assert (event.code, event.seq, event.account) == (RejectCode.MALFORMED, 1, 1)
    assert event.reason == "Deposit.ts must be an integer, not NoneType" and ex.seq == 1
    (event,) = ex.submit(m.PlaceOrder(2**64, "BTC-PERP", m.Side.BUY, 1, 1, client_order_id=7))
    assert event.account == 0 and event.client_order_id == 7      # only valid fields are echoed


def test_first_timestamp_starts_the_clock_anywhere_then_steps_are_bounded():
    ex = Exchange(CONFIG)
    epoch = 1_700_000_000 * 10**9
    assert ex.submit(m.CreateAccount(1, ts=epoch))[0].ts == epoch
    week = CONFIG.limits.max_time_step_ns
    (event,) = ex.submit(m.AdvanceClock(ts=epoch + week + 1))
    assert event.code == RejectCode.TIME_STEP_TOO_LARGE and ex.clock == epoch
    assert ex.submit(m.AdvanceClock(ts=epoch + week)) is not None and ex.clock == epoch + week


# ---- fail-stop -------------------------------------------------------------------------------

def _boom(cmd, events):
    events.append("half-applied")
    raise RuntimeError("boom in the handler")


def _poisoned(ex):
    """An exchange whose CancelAll handler has a bug."""
    ex._handlers[m.CancelAll] = _boom
    return ex


def test_a_command_that_raises_halts_the_engine_with_its_seq_and_cause():
    ex = _poisoned(Exchange(CONFIG))
    ex.submit(m.CreateAccount(1))
    (event,) = ex.submit(m.CancelAll(1))
    assert event.code == RejectCode.ENGINE_HALTED and "boom in the handler" in event.reason
    assert (ex.halted.seq, ex.halted.command) == (2, "CancelAll")
    assert ex.halted.cause == "RuntimeError: boom in the handler" and "_boom" in ex.halted.trace
    for cmd in (m.CreateAccount(2), m.Deposit(1, "USD", 5), m.AdvanceClock(ts=10)):
        (event,) = ex.submit(cmd)
        assert event.code == RejectCode.ENGINE_HALTED and event.seq == 2
    assert ex.seq == 2 and ex.accounts() == [1]


def test_replaying_the_failing_command_halts_at_the_same_seq_and_fixed_software_goes_on(tmp_path):
    path = tmp_path / "j.pcj"
    je = jr.JournaledExchange(_poisoned(Exchange(CONFIG)), jr.Journal(path, DIGEST, sync="always"))
    je.submit(m.CreateAccount(1))
    je.submit(m.Deposit(1, "USD", 10**9))
    (event,) = je.submit(m.CancelAll(1))
    assert event.code == RejectCode.ENGINE_HALTED
    (event,) = je.submit(m.CreateAccount(2))        # nothing after the halt is journaled
    assert event.code == RejectCode.ENGINE_HALTED
    je.close()
    assert jr.read(path)[2].records == 3
    again = _poisoned(Exchange(CONFIG))
    jr.replay(path, again)
    assert (again.halted.seq, again.halted.cause) == (3, "RuntimeError: boom in the handler")
    fixed = Exchange(CONFIG)
    jr.replay(path, fixed)
    assert fixed.halted is None and fixed.seq == 3 and fixed.account(1).balances["USD"] == 10**9


# ---- one writer ------------------------------------------------------------------------------

def _blocking(ex, inside: threading.Event, release: threading.Event):
    """A CreateAccount handler that waits inside submit until released."""
    original = ex._handlers[m.CreateAccount]

    def handler(cmd, events):
        inside.set()
        assert release.wait(10)
        original(cmd, events)
    ex._handlers[m.CreateAccount] = handler


@pytest.mark.parametrize("journaled", [False, True])
def test_a_second_thread_is_refused_while_a_submit_is_in_progress(journaled, tmp_path):
    ex = Exchange(CONFIG)
    engine = jr.JournaledExchange(ex, jr.Journal(tmp_path / "j.pcj", DIGEST, sync="always")) \
        if journaled else ex
    inside, release = threading.Event(), threading.Event()
    _blocking(ex, inside, release)
    results = []
    first = threading.Thread(target=lambda: results.append(engine.submit(m.CreateAccount(1))))
    first.start()
    assert inside.wait(10)
    (event,) = engine.submit(m.Deposit(1, "USD", 5))
    assert event.code == RejectCode.CONCURRENT_SUBMIT and "one thread owns" in event.reason
    if journaled:
        assert engine.poll() == [] and engine.journal.last_seq == 1
    release.set()
    first.join(10)
    assert type(results[0][0]) is m.AccountCreated and ex.seq == 1
    assert type(engine.submit(m.Deposit(1, "USD", 5))[0]) is m.Deposited    # free again
    if journaled:
        engine.close()


def test_two_threads_hammering_one_journaled_engine_keep_journal_and_state_in_step(tmp_path):
    """Every call is applied or refused as concurrent; the journal's order is the apply order."""
    path = tmp_path / "j.pcj"
    ex = Exchange(CONFIG)
    je = jr.JournaledExchange(ex, jr.Journal(path, DIGEST, sync="none"))
    for cmd in (m.CreateAccount(1), m.CreateAccount(2), m.Deposit(1, "USD", 10**12),
                m.Deposit(2, "USD", 10**12)):
        je.submit(cmd)
    counts = {"refused": 0}

    def trader(account, seed):
        rng = random.Random(seed)
        for _ in range(3_000):
            side = rng.choice(list(m.Side))
            events = je.submit(m.PlaceOrder(account, "BTC-PERP", side, 100,
                                            650_000 + rng.randint(-20, 20)))
            if events and type(events[0]) is m.OrderRejected:
                assert events[0].code == RejectCode.CONCURRENT_SUBMIT, events[0]
                counts["refused"] += 1
    threads = [threading.Thread(target=trader, args=(a, a)) for a in (1, 2)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)                     # switch threads as often as possible
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    je.close()
    ex.audit().check()
    replayed = Exchange(CONFIG)
    jr.replay(path, replayed)
    assert replayed.seq == ex.seq == 4 + 6_000 - counts["refused"]
    assert replayed.state_hash() == ex.state_hash()


@pytest.mark.parametrize("halted_live", [True, False], ids=["halted live", "halts in replay"])
def test_a_store_reopens_halted_where_its_engine_stopped_and_fixed_software_goes_on(
        tmp_path, monkeypatch, halted_live):
    """Recovery replays up to the failing command, opens with the engine halted there (every
    command refused, nothing journaled), and says so in its report and in `store verify`; once
    the software is fixed the same store replays past it. A command that fails only in replay
    (a bug the live run did not have) is handled the same way: nothing journaled is cut."""
    def poison():
        monkeypatch.setattr(Exchange, "_cancel_all", lambda self, cmd, events: _boom(cmd, events))
    if halted_live:
        poison()
    with sn.Store(tmp_path, CONFIG, sync="always") as store:
        for cmd in (m.CreateAccount(1), m.CancelAll(1), m.CreateAccount(2)):
            store.engine.submit(cmd)
    journaled = 2 if halted_live else 3
    poison()
    with sn.Store(tmp_path, CONFIG, sync="always") as store:
        assert (store.recovery.halted.seq, store.recovery.halted.command) == (2, "CancelAll")
        (event,) = store.engine.submit(m.CreateAccount(3))
        assert event.code == RejectCode.ENGINE_HALTED and store.engine.journal.last_seq == journaled
        with pytest.raises(sn.SnapshotError, match="halted"):
            store.checkpoint()
    check = sn.verify_store(tmp_path, CONFIG)
    assert not check.healthy and check.halted.seq == 2
    assert any("halted at command 2" in p.message for p in check.problems)
    monkeypatch.undo()
    with sn.Store(tmp_path, CONFIG, sync="always") as store:
        assert store.recovery.halted is None and store.engine.ex.seq == journaled
        assert store.engine.ex.accounts() == [1, 2][:journaled - 1]
