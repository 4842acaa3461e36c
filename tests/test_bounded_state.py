"""State bounded by what is open, not by history: the transfer-id window (by count and by exchange
time, against a plain model, across snapshots) and the fund and funding histories outside the
hashed state, kept as a bounded recent window for the queries."""
import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from perpcore import Exchange
from perpcore import messages as m
from perpcore.config import DAY_NS, LimitsSpec
from perpcore.ledger import TransferWindow
from perpcore.messages import RejectCode
from margin_venue import BTC, HOUR, S, Venue, rejection, usd, venue_config

TTL = 30 * DAY_NS


def limited(**limits) -> Exchange:
    cfg = venue_config()
    return Exchange(msgspec.structs.replace(cfg, limits=LimitsSpec(**limits)))


def deposit(ex, transfer_id, ts=0, account=1):
    return ex.submit(m.Deposit(account=account, asset="USD", amount=usd(1),
                               transfer_id=transfer_id, ts=ts))


def refused(events):
    """The rejection's code, False for an accepted command."""
    codes = [e.code for e in events if type(e) is m.OrderRejected]
    return codes[0] if codes else False


def with_account(ex):
    ex.submit(m.CreateAccount(account=1))
    return ex


# ---- the transfer-id window ----------------------------------------------------------------------

def test_a_repeat_inside_the_ttl_is_refused_and_one_past_it_applied_again():
    ex = with_account(limited())
    deposit(ex, 7, ts=S)
    for day in range(1, TTL // DAY_NS):             # time moves at most a week per command
        ex.submit(m.AdvanceClock(ts=S + day * DAY_NS))
    ex.submit(m.AdvanceClock(ts=S + TTL - 1))
    assert refused(deposit(ex, 7, ts=S + TTL - 1)) == RejectCode.DUPLICATE_TRANSFER
    # the clock as the command arrives decides (a refusal does not move it): still one short
    assert refused(deposit(ex, 7, ts=S + TTL)) == RejectCode.DUPLICATE_TRANSFER
    ex.submit(m.AdvanceClock(ts=S + TTL))
    assert not refused(deposit(ex, 7, ts=S + TTL))
    assert refused(deposit(ex, 7, ts=S + TTL)) == RejectCode.DUPLICATE_TRANSFER
    assert ex.account(1).balances["USD"] == usd(2)
    ex.audit().check()


def test_the_window_keeps_the_newest_ids_by_count():
    ex = with_account(limited(transfer_ids_kept=3))
    for tid in (1, 2, 3, 4):
        deposit(ex, tid)
    assert [refused(deposit(ex, tid)) for tid in (2, 3, 4)] == [RejectCode.DUPLICATE_TRANSFER] * 3
    assert not refused(deposit(ex, 1))           # the oldest was forgotten: applied again
    # remembered again, and it pushed out 2, now the oldest
    assert refused(deposit(ex, 1)) == RejectCode.DUPLICATE_TRANSFER
    assert not refused(deposit(ex, 2))


def test_the_state_holds_only_the_live_window_in_arrival_order():
    runs = []
    for first_id in (9, 0):
        ex = with_account(limited())
        deposit(ex, first_id, ts=S)
        deposit(ex, 3, ts=2 * S)
        ex.submit(m.CreateAccount(account=2))
        deposit(ex, 9, ts=3 * S, account=2)
        runs.append(ex)
    ids = TransferWindow(1, 1)
    ids.from_state(runs[0].margin.ledger.to_state(runs[0].clock)["transfers"])
    assert list(ids.entries) == [1, 9, S, 1, 3, 2 * S, 2, 9, 3 * S]
    assert runs[0].state_hash() != runs[1].state_hash()
    # once id 9 of account 1 expired, the exchange that still holds it (not yet evicted) is in
    # the state of the one that never had it
    for ex in runs:
        for day in range(7, 35, 7):                 # a week at most a step
            ex.submit(m.AdvanceClock(ts=S + day * DAY_NS))
        ex.submit(m.AdvanceClock(ts=S + TTL))
    assert len(runs[0].margin.ledger.transfers.ids) == 3
    assert runs[0].state_hash() == runs[1].state_hash()


def test_transfer_ids_past_int64_are_malformed():
    ex = with_account(limited())
    assert refused(deposit(ex, 2**63)) == RejectCode.MALFORMED
    assert not refused(deposit(ex, 2**63 - 1))
    # the window holds every account the state can (up to msgpack's 2**64 - 1)
    window = TransferWindow(2, TTL)
    window.add(2**64 - 1, 2**63 - 1, 2**63 - 1)
    copy = TransferWindow(2, TTL)
    copy.from_state(window.to_state(2**63 - 1))
    assert copy.seen(2**64 - 1, 2**63 - 1, 2**63 - 1) and not copy.seen(2**64 - 2, 2**63 - 1, 0)


def test_a_restored_exchange_remembers_and_forgets_as_the_original():
    ex = with_account(limited(transfer_ids_kept=4))
    for i, tid in enumerate((5, 6, 7, 8, 9)):
        deposit(ex, tid, ts=(i + 1) * DAY_NS)
    restored = Exchange.restore(ex.config, ex.snapshot())
    assert restored.state_hash() == ex.state_hash()
    # the window holds 6, 7, 8, 9 (applied on days 2-5); 5 went by count
    later = [m.Deposit(account=1, asset="USD", amount=1, transfer_id=tid, ts=ts)
             for tid, ts in ((9, 6 * DAY_NS), (5, 6 * DAY_NS), (6, 6 * DAY_NS), (8, 7 * DAY_NS))]
    later += [m.AdvanceClock(ts=day * DAY_NS) for day in (13, 20, 27, 34)]  # a week at most a step
    later.append(m.Deposit(account=1, asset="USD", amount=1, transfer_id=9, ts=5 * DAY_NS + TTL))
    later.append(m.AdvanceClock(ts=5 * DAY_NS + TTL))
    later += [m.Deposit(account=1, asset="USD", amount=1, transfer_id=tid, ts=5 * DAY_NS + TTL)
              for tid in (9, 8, 5)]
    outcomes = []
    for cmd in later:
        events = ex.submit(cmd)
        assert restored.submit(cmd) == events
        assert restored.state_hash() == ex.state_hash()
        outcomes.append(refused(events))
    dup = RejectCode.DUPLICATE_TRANSFER
    # 5 pushes out 6 and 6 pushes out 7; 9 is refused until the clock is a ttl past its day 5
    assert outcomes == [dup, False, False, dup] + [False] * 4 + [dup, False, False, False, dup]


class Model:
    """The window as a plain list: an id is remembered while its last application is among the
    newest `kept` applications and was less than `ttl` before now."""

    def __init__(self, kept, ttl):
        self.kept, self.ttl = kept, ttl
        self.applied = []                           # (key, time), every application in order

    def seen(self, key, now):
        for k, t in self.applied[-self.kept:]:
            if k == key and now - t < self.ttl:
                return True
        return False

    def live(self, now):
        return [(k, t) for k, t in self.applied[-self.kept:] if now - t < self.ttl]


@settings(max_examples=300, deadline=None)
@given(kept=st.integers(1, 5), ttl=st.integers(1, 20),
       ops=st.lists(st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(0, 8),
                              st.booleans()), max_size=60))
def test_the_window_against_a_plain_model(kept, ttl, ops):
    window, model = TransferWindow(kept, ttl), Model(kept, ttl)
    now = 0
    for account, tid, dt, restore in ops:
        arrived = now                               # the clock as the command arrives
        now += dt
        seen = window.seen(account, tid, arrived)
        assert seen == model.seen((account, tid), arrived)
        if not seen:
            window.add(account, tid, now)
            model.applied.append(((account, tid), now))
        assert len(window.ids) <= kept
        state = window.to_state(now)
        copy = TransferWindow(1, 1)
        copy.from_state(state)
        assert list(copy.entries) == [x for (a, i), t in model.live(now) for x in (a, i, t)]
        if restore:
            window = TransferWindow(kept, ttl)
            window.from_state(state)


@settings(max_examples=100, deadline=None)
@given(kept=st.integers(1, 4),
       ops=st.lists(st.tuples(st.integers(1, 2), st.integers(1, 5), st.sampled_from([0, 3, 10]),
                              st.booleans(), st.booleans()), max_size=40))
def test_an_exchange_decides_transfers_as_the_model_across_restores(kept, ops):
    """Deposits and withdrawals through an Exchange (ttl 10 s), restored from a snapshot now and
    then: refused as duplicates exactly when the model remembers the id at the arriving clock."""
    ex = limited(transfer_ids_kept=kept, transfer_id_ttl_ns=10 * S)
    for account in (1, 2):
        ex.submit(m.CreateAccount(account=account))
        ex.submit(m.Deposit(account=account, asset="USD", amount=usd(100)))
    model = Model(kept, 10 * S)
    for account, tid, seconds, withdraw, restore in ops:
        kind = m.Withdraw if withdraw else m.Deposit
        arrived = ex.clock
        ts = arrived + seconds * S
        code = refused(ex.submit(kind(account=account, asset="USD", amount=1, transfer_id=tid,
                                      ts=ts)))
        if model.seen((account, tid), arrived):
            assert code == RejectCode.DUPLICATE_TRANSFER
        else:
            assert code is False
            model.applied.append(((account, tid), ts))
        if restore:
            ex = Exchange.restore(ex.config, ex.snapshot())
    ex.audit().check()


# ---- histories -----------------------------------------------------------------------------------

def funded_venue(**limits) -> Venue:
    v = Venue()
    v.ex = Exchange(msgspec.structs.replace(v.cfg, limits=LimitsSpec(**limits)))
    v.account(1, USD=usd(100_000))
    v.account(2, USD=usd(100_000))
    v.price(BTC, 650000)
    v.trade(1, 2, BTC, m.Side.BUY, 10, 650000)
    return v


def test_the_histories_keep_a_recent_window_outside_the_hashed_state():
    v = funded_venue(history_kept=2)
    ex = v.ex
    for i in range(1, 4):
        v.submit(m.SetIndexPrice(source="x", symbol=BTC, price=650000 + i, ts=8 * i * HOUR))
        v.submit(m.FundInsurance(asset="USD", amount=i))
    pricing = ex.components["pricing"]
    assert [e.delta for e in ex.liquidation.fund_history()] == [2, 3]
    assert [t for t, _, _ in pricing.funding_history(BTC)] == [16 * HOUR, 24 * HOUR]
    state = ex.to_state()
    assert "history" not in state["liquidation"] and "history" not in state["pricing"][BTC]
    restored = Exchange.restore(ex.config, ex.snapshot())
    assert restored.state_hash() == ex.state_hash()
    assert restored.liquidation.fund_history() == [] and restored.components[
        "pricing"].funding_history(BTC) == []
    cmd = m.FundInsurance(asset="USD", amount=4)
    assert restored.submit(cmd) == ex.submit(cmd)
    assert restored.liquidation.fund_history() == ex.liquidation.fund_history()[-1:]


def leaves(x) -> int:
    """The size of plain data: its scalars, a bytes or str counted by length."""
    if isinstance(x, dict):
        return sum(leaves(k) + leaves(v) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return sum(map(leaves, x))
    return len(x) if isinstance(x, (bytes, str)) else 1


def test_no_component_state_grows_with_history():
    """Cycles of deposits with ids, withdrawals, fund payments and funding settlements over the
    same open positions leave every component's state the same size once the windows are full."""
    v = funded_venue(transfer_ids_kept=10)
    ex = v.ex
    sizes = []
    for cycle in range(1, 61):
        ts = 8 * cycle * HOUR
        v.submit(m.Deposit(account=1, asset="USD", amount=5, transfer_id=cycle, ts=ts))
        v.submit(m.Withdraw(account=1, asset="USD", amount=5, transfer_id=10**6 + cycle, ts=ts))
        v.submit(m.FundInsurance(asset="USD", amount=1, ts=ts))
        if cycle in (20, 60):
            sizes.append({name: leaves(state) for name, state in ex.to_state().items()})
    assert sizes[0] == sizes[1]
    assert len(ex.liquidation.fund_history()) == 60 and len(ex.margin.ledger.transfers.ids) == 10
    assert len(ex.components["pricing"].funding_history(BTC)) == 60
    assert rejection(ex.submit(m.Deposit(account=1, asset="USD", amount=5, transfer_id=60))).code \
        == RejectCode.DUPLICATE_TRANSFER


# ---- the garbage collector -----------------------------------------------------------------------

def tracked_by_a_venue(accounts: int) -> tuple[int, Exchange]:
    """The objects the collector tracks once a venue has `accounts` accounts holding both perps,
    a hundred of them with a reduce-only order resting far from the market."""
    import gc

    from perpcore import workloads
    setup = workloads.cross_margin(100, accounts=accounts, prefill=100).setup
    gc.collect()
    before = len(gc.get_objects())
    ex = Exchange(venue_config())
    for cmd in setup:
        assert type(ex.submit(cmd)[-1]) is not m.OrderRejected, cmd
    holders = [a for a, acc in sorted(ex.margin.accounts.items())
               if not acc.positions["BTC-PERP"].sell_qty | acc.positions["BTC-PERP"].buy_qty
               and acc.positions["BTC-PERP"].size][:100]
    for account in holders:
        long = ex.margin.accounts[account].positions["BTC-PERP"].size > 0
        events = ex.submit(m.PlaceOrder(account=account, symbol="BTC-PERP",
                                        side=m.Side.SELL if long else m.Side.BUY,
                                        price=1_300_000 if long else 300_000, qty=1,
                                        reduce_only=True, tif=m.TimeInForce.GTC))
        assert type(events[-1]) is m.OrderAccepted, events
    del setup, events
    gc.collect()
    return len(gc.get_objects()) - before, ex


def test_the_collector_tracks_no_object_per_account():
    """A full collection visits every tracked object: were accounts and positions tracked, a venue
    of a million accounts would pause for most of a second each time. Accounts, their positions
    and balances are none of its concern."""
    import gc
    small, _ = tracked_by_a_venue(1_000)
    large, ex = tracked_by_a_venue(3_000)
    assert large - small < 100, f"{large - small} more objects tracked for 2,000 more accounts"
    assert len(ex.margin.reduce_only_ids) == 100
    account = next(iter(ex.margin.reduce_only_ids))[0]
    acc = ex.margin.accounts[account]
    assert not any(gc.is_tracked(x) for x in (acc, acc.positions, acc.cash,
                                              *acc.positions.values()))
