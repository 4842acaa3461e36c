"""perpcore._journal: JournaledExchange's hot path in C behaves as the plain Python model of it
(below) on any mix of commands, raw bytes, refusals, sequenced input, commits and polls: the same
events released by each call, the same acknowledged_seq after it, the same journal bytes."""
import bisect
import operator
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpcore import Exchange
from perpcore import journal as jr
from perpcore import messages as m
from perpcore._validate import check
from perpcore.config import default_config
from perpcore.exchange import config_digest

CONFIG = default_config()
DIGEST = config_digest(CONFIG)
_seq_of = operator.attrgetter("seq")


class ModelJournaled:
    """The journaled exchange in plain Python: journal each command, apply it, hold its events
    until the writer's committed seq reaches them."""

    def __init__(self, ex, journal):
        self.ex, self.journal = ex, journal
        self.held = []
        self.acknowledged_seq = ex.seq

    def submit(self, cmd, seq=None):
        ex = self.ex
        # refused at the boundary or for its sequence: neither journaled nor applied
        if check(cmd) is not None or seq is not None and seq != ex.seq + 1:
            return ex.submit(cmd, seq)
        committed = self.journal._writer.append(ex.seq + 1, m.encoder.encode(cmd))
        return self._release(ex.submit(cmd), committed)

    def submit_bytes(self, payload, seq=None):
        try:
            cmd = m.command_decoder.decode(payload)
        except msgspec.DecodeError:
            return self.ex.submit_bytes(payload, seq)
        return self.submit(cmd, seq)

    def _release(self, events, committed):
        if committed >= self.ex.seq and not self.held:
            self.acknowledged_seq = committed
            return events
        self.held += events
        return self.poll(committed)

    def poll(self, committed=None):
        committed = self.journal.committed_seq if committed is None else committed
        self.acknowledged_seq = committed
        cut = bisect.bisect_right(self.held, committed, key=_seq_of)
        out, self.held = self.held[:cut], self.held[cut:]
        return out


# what a session does: orders that rest, cross and get cancelled, refusals of every kind, raw
# bytes that decode and that do not, sequenced input in and out of order, commits and polls
_ACCOUNTS = [m.CreateAccount(account=a) for a in (1, 2)] + [
    m.Deposit(account=a, asset=CONFIG.settlement_asset, amount=10**12) for a in (1, 2)]
_ORDERS = st.builds(
    m.PlaceOrder, account=st.sampled_from([1, 2, 3]), symbol=st.just("BTC-PERP"),
    side=st.sampled_from(m.Side), qty=st.integers(1, 5).map(lambda q: q * 1000),
    price=st.integers(649_990, 650_010))
_STEPS = st.one_of(
    st.tuples(st.just("submit"), _ORDERS),
    st.tuples(st.just("submit"), st.builds(m.CancelOrder, account=st.sampled_from([1, 2]),
                                           symbol=st.just("BTC-PERP"),
                                           order_id=st.integers(1, 30))),
    st.tuples(st.just("submit"), st.sampled_from([
        {"account": 1}, m.CreateAccount(account=2**70), m.AdvanceClock(ts=0),
        m.OrderRejected(0, 0, m.RejectCode.MALFORMED, "an event is not a command")])),
    st.tuples(st.just("bytes"), _ORDERS.map(m.encoder.encode)),
    st.tuples(st.just("bytes"), st.binary(max_size=12)),
    st.tuples(st.just("sequenced"), _ORDERS, st.integers(-1, 2)),
    st.tuples(st.just("commit")),
    st.tuples(st.just("poll")),
)
_MODES = [dict(sync="always"), dict(sync="none", group_records=3),
          dict(sync="group", group_records=3, group_ms=60_000)]


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the flusher did not commit in time"
        time.sleep(0.0005)


@pytest.mark.parametrize("options", _MODES, ids=[o["sync"] for o in _MODES])
@settings(max_examples=40, deadline=None)
@given(steps=st.lists(_STEPS, max_size=40))
def test_the_c_path_behaves_as_the_model(tmp_path_factory, options, steps):
    """Each writer commits every record, or every third, or (group) every third on its flusher
    thread, which the test waits for after each call; and on commit(). So the model and the C
    path see the same committed seq at every append, and a group commit that lands between
    two appends releases part of what is held (the events of the durable commands only)."""
    tmp = tmp_path_factory.mktemp("j")
    core = jr.JournaledExchange(Exchange(CONFIG), jr.Journal(tmp / "c.pcj", DIGEST, **options))
    model = ModelJournaled(Exchange(CONFIG), jr.Journal(tmp / "m.pcj", DIGEST, **options))
    group = options.get("group_records", 1)
    waiting = 0                         # records appended since the last commit
    for step in [("submit", cmd) for cmd in _ACCOUNTS] + steps:
        kind = step[0]
        appended = core.journal.last_seq
        if kind == "submit":
            got, want = core.submit(step[1]), model.submit(step[1])
        elif kind == "bytes":
            got, want = core.submit_bytes(step[1]), model.submit_bytes(step[1])
        elif kind == "sequenced":
            got = core.submit(step[1], seq=core.ex.seq + 1 + step[2])
            want = model.submit(step[1], seq=model.ex.seq + 1 + step[2])
        elif kind == "commit":
            core.journal.commit()
            model.journal.commit()
            waiting = 0
            continue
        else:
            got, want = core.poll(), model.poll()
        assert got == want
        assert core.acknowledged_seq == model.acknowledged_seq
        if core.journal.last_seq > appended:
            # journaled (not a refusal answered at once): only durable commands' events
            assert all(e.seq <= core.journal.committed_seq for e in got)
            waiting = (waiting + 1) % group
        for journal in (core.journal, model.journal):
            _wait_for(lambda: journal.committed_seq == journal.last_seq - waiting)
    model.journal.commit()
    assert core.flush() == model.poll() and core.acknowledged_seq == model.acknowledged_seq
    core.close()
    model.journal.close()
    assert (tmp / "c.pcj").read_bytes() == (tmp / "m.pcj").read_bytes()
    assert core.ex.state_hash() == model.ex.state_hash()


def test_group_commit_releases_in_groups_and_keeps_order(tmp_path):
    """Three commands wait for their group; the commit releases all their events in seq order,
    the next command's own events come back at once once nothing is held (sync "always"
    journal swapped in, as a store does at a checkpoint)."""
    je = jr.JournaledExchange(Exchange(CONFIG), jr.Journal(
        tmp_path / "a.pcj", DIGEST, sync="group", group_records=1000, group_ms=60_000))
    for cmd in _ACCOUNTS[:2]:
        assert je.submit(cmd) == [] and je.acknowledged_seq == 0
    # refused for its sequence: answered at once, not journaled, nothing released with it
    (gap,) = je.submit(m.CreateAccount(account=9), seq=7)
    assert gap.code == m.RejectCode.SEQUENCE_GAP and je.journal.last_seq == 2
    assert je.submit(_ACCOUNTS[2]) == []
    released = je.flush()
    assert [type(e) for e in released] == [m.AccountCreated, m.AccountCreated, m.Deposited]
    assert [e.seq for e in released] == [1, 2, 3] and je.acknowledged_seq == 3
    je.journal.close()
    je.journal = jr.Journal(tmp_path / "b.pcj", DIGEST, first_seq=4, sync="always")
    (deposited,) = je.submit(_ACCOUNTS[3])
    assert deposited.seq == 4 and je.acknowledged_seq == 4
    je.close()


def test_a_journal_must_carry_a_group_writer(tmp_path):
    class NotAJournal:
        _writer = object()
    with pytest.raises(TypeError):
        jr.JournaledExchange(Exchange(CONFIG), NotAJournal())
