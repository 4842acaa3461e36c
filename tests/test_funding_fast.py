"""perpcore._funding, a funding settlement's per-position work in one C pass, against the plain path
it stands for (Margin.open_positions, perpcore.funding.payments, Margin.settle_funding, a FundingPaid
per payment), and perpcore._liquidation's pass over funding payers (LiquidationCore._uncovered) against
the rule perpcore.liquidation's Funding paragraph states.

Figures range over zero, small and 64-bit sizes, account ids past 64 bits, both rate signs, open
interest that does not net to zero (receivers then share the pool pro rata) and marks and rates
whose products pass 128 bits, where the C pass must refuse, having changed nothing."""
import random
from unittest import mock

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpcore import Exchange, _funding, default_config, funding
from perpcore import pricing as pricing_module
from perpcore import messages as m
from perpcore.config import RATE_SCALE
from perpcore.messages import Side

BTC = "BTC-PERP"
SEQ, TS = 7, 8 * 3600 * 10**9
BIG = 2**127        # the C pass's integers hold values below this

sizes = st.one_of(st.integers(-3, 3), st.integers(-10**6, 10**6), st.integers(-2**63, 2**63 - 1))
# accounts are int64 (messages.Id; an account slot keeps its id in C): the top of the range too
account_ids = st.one_of(st.integers(1, 10**4), st.integers(2**63 - 3, 2**63 - 1))
positions = st.dictionaries(account_ids, sizes, max_size=12)
marks = st.one_of(st.integers(0, 10**7), st.integers(1, 2**64), st.integers(2**60, 2**100))
rates = st.one_of(st.integers(-10**6, 10**6), st.integers(-2**80, 2**80))
units = st.one_of(st.integers(1, 10**4), st.integers(1, 2**40))


def fits(open_positions: list[tuple[int, int]], mark: int, rate: int, upt: int) -> bool:
    """True when every product and sum of funding.payments' rule stays below 2**127."""
    per_lot = mark * upt * abs(rate)
    if max(mark, upt, abs(rate), mark * upt, per_lot) >= BIG:
        return False
    if not per_lot:
        return True
    payers = [abs(s) for _, s in open_positions if s * rate > 0]
    receivers = [abs(s) for _, s in open_positions if s * rate < 0]
    if any(lots * per_lot >= BIG for lots in payers + receivers):
        return False
    pool = sum(-(-lots * per_lot // RATE_SCALE) for lots in payers)
    owed = sum(lots * per_lot // RATE_SCALE for lots in receivers)
    if pool >= BIG or owed >= BIG:
        return False
    return owed <= pool or all(pool * lots < BIG for lots in receivers)


def margin_with(held: dict[int, int], seed: int):
    """A venue's margin layer holding `held` (account -> signed lots) in BTC-PERP, the positions
    entered in a shuffled order, each account with a random USD balance."""
    ex = Exchange(default_config())
    margin = ex.margin
    sr = margin.symbols[BTC]
    rng = random.Random(seed)
    order = list(held)
    rng.shuffle(order)
    for account in order:
        margin.open_account(account, True)
        margin.accounts[account].cash["USD"] = rng.randrange(-10**9, 10**12)
        margin._position(margin.accounts[account], sr).size = held[account]
    return margin


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(held=positions, mark=marks, rate=rates, upt=units, seed=st.integers(0, 2**32))
def test_settle_is_the_plain_path(held, mark, rate, upt, seed):
    margin = margin_with(held, seed)
    cash = {a: margin.accounts[a].cash["USD"] for a in held}
    open_positions = sorted((a, s) for a, s in held.items() if s)
    assert margin.open_positions(BTC) == open_positions
    pays, remainder = funding.payments(open_positions, mark, rate, upt)
    events = []
    settled = _funding.settle(margin, BTC, mark, rate, upt, SEQ, TS, events)
    moved = dict(pays)
    if not fits(open_positions, mark, rate, upt) or not all(
            -2**63 <= cash[a] + moved.get(a, 0) < 2**63 for a in held):
        # refused, having changed nothing (a figure past 128 bits, a balance past the ledger's
        # int64 range)
        assert settled is None and events == [] and margin.insurance["USD"] == 0
        assert {a: margin.accounts[a].cash["USD"] for a in held} == cash
        return
    assert settled == (len(pays), -sum(a for _, a in pays if a < 0), remainder)
    # payers first, then receivers, each by account (perpcore.funding)
    expected = [m.FundingPaid(SEQ, TS, BTC, account, size, mark, rate, amount)
                for (account, size), (_, amount) in zip(open_positions, pays)]
    assert events == [e for e in expected if e.amount < 0] + [e for e in expected if e.amount >= 0]
    assert {a: margin.accounts[a].cash["USD"] for a in held} == \
        {a: cash[a] + moved.get(a, 0) for a in held}
    assert margin.insurance["USD"] == remainder


def test_pro_rata_and_remainder_by_hand():
    """Longs of 3 and 1 lots pay, shorts of 2 and 5 lots are owed more than the pool: per lot
    10 x 100 x 0.0333% = 0.333 units, so the payers pay 1 and 1 (0.999 and 0.333 rounded up), the
    receivers are owed 0 and 1 (0.666, 1.665 rounded down): 1 <= 2, no pro rata, and the unit left
    goes to the insurance fund. With the shorts at 20 and 50 lots (owed 6 and 16) the pool of 2 is
    shared by size: 2 x 20 / 70 = 0 and 2 x 50 / 70 = 1, one unit left again."""
    margin = margin_with({1: 3, 2: -2, 3: 1, 4: -5}, 0)
    events = []
    assert _funding.settle(margin, BTC, 10, 33_300, 100, SEQ, TS, events) == (4, 2, 1)
    # payers (accounts 1, 3) first, then receivers (2, 4)
    assert [e.amount for e in events] == [-1, -1, 0, 1] and margin.insurance["USD"] == 1
    margin = margin_with({1: 3, 2: -20, 3: 1, 4: -50}, 0)
    events = []
    assert _funding.settle(margin, BTC, 10, 33_300, 100, SEQ, TS, events) == (4, 2, 1)
    assert [e.amount for e in events] == [-1, -1, 0, 1] and margin.insurance["USD"] == 1


def test_no_mark_or_no_rate_pays_nothing_and_reports_no_position():
    margin = margin_with({1: 3, 2: -3}, 0)
    events = []
    assert _funding.settle(margin, BTC, 650_000, 0, 100, SEQ, TS, events) == (0, 0, 0)
    assert events == []


# ---- through the exchange: the C pass and the plain path settle alike -----------------------

def config(interest: int):
    """BitMEX's mark on an index that never goes stale, no premium sample: every settlement pays
    the interest rate (per interval, RATE_SCALE; longs pay when > 0) at the index."""
    cfg = default_config()
    return msgspec.structs.replace(cfg, instruments={
        s: msgspec.structs.replace(spec, pricing=msgspec.structs.replace(
            spec.pricing, mark_method="bitmex", interest_rate=interest, index_stale_ns=10**18,
            funding_clamp=max(spec.pricing.funding_clamp, abs(interest)), funding_cap=10**6))
        for s, spec in cfg.instruments.items()})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interest=st.integers(-600_000, 600_000),
       traders=st.lists(st.tuples(st.integers(200, 5_000), st.integers(1, 1_500), st.booleans()),
                        min_size=1, max_size=6),
       index=st.integers(550_000, 700_000))
def test_settlements_through_the_exchange_match_the_plain_path(interest, traders, index):
    """Traders with random deposits (USD) and positions (lots, long or short) against one maker,
    the index then moved, two settlements: the same events (payments, liquidations of the payers
    funding put under maintenance, the insurance fund's record of each remainder) and balances
    whether an interval in transit (perpcore.funding, within one command's budget here), the C
    pass or the plain path settles, and the books balance."""
    spread, fast, plain = (Exchange(config(interest)) for _ in range(3))
    commands = [m.CreateAccount(account=1), m.Deposit(account=1, asset="USD", amount=10**13),
                m.SetIndexPrice(source="x", symbol=BTC, price=650_000)]
    for account, (deposit, lots, long) in enumerate(traders, start=2):
        commands += [
            m.CreateAccount(account=account),
            m.Deposit(account=account, asset="USD", amount=deposit * 10**6),
            m.PlaceOrder(account=1, symbol=BTC, side=Side.SELL if long else Side.BUY,
                         qty=lots, price=650_000),
            m.PlaceOrder(account=account, symbol=BTC, side=Side.BUY if long else Side.SELL,
                         qty=lots, price=650_000, tif=m.TimeInForce.IOC),
            m.CancelAll(account=1, symbol=BTC)]
    commands.append(m.SetIndexPrice(source="x", symbol=BTC, price=index))
    for cmd in commands:
        assert spread.submit(cmd) == fast.submit(cmd) == plain.submit(cmd)
    pricing = spread.components["pricing"]
    for _ in range(2):
        held = spread.margin.open_positions(BTC)
        cmd = m.AdvanceClock(ts=pricing.next_funding_time(BTC))
        events = spread.submit(cmd)
        with mock.patch.object(pricing_module, "_SPREADABLE", 0):      # all at once
            assert fast.submit(cmd) == events
            with mock.patch.object(_funding, "settle", return_value=None) as settle:
                assert plain.submit(cmd) == events
        assert settle.called == bool(held)      # a symbol nobody holds settles quietly
        payers = [(a, s) for a, s in held if s * interest > 0]
        assert [(e.account, e.position) for e in events if type(e) is m.FundingPaid] == \
            (payers + [(a, s) for a, s in held if (a, s) not in payers] if interest else [])
    assert spread.margin.ledger.balances == fast.margin.ledger.balances == \
        plain.margin.ledger.balances
    spread.audit().check()


# ---- the payer pass of stage 6 -------------------------------------------------------------

def uncovered(paid, touched, reserve, dirty, shortcuts) -> list[int]:
    """Reference: a payer already touched is looked at anyway; one whose reserve less what it paid
    is still >= 1 has its reserve lowered (with shortcuts, triggers not out of date); any other
    is listed, in the order of `paid`."""
    out = []
    for account, amount in paid.items():
        if account in touched:
            continue
        left = reserve.get(account, 0) - amount
        if left >= 1 and account not in dirty and shortcuts:
            reserve[account] = left
        else:
            out.append(account)
    return out


money = st.one_of(st.integers(-5, 5), st.integers(-10**12, 10**12), st.integers(-2**100, 2**100))
ids = st.integers(1, 30)


@settings(max_examples=300, deadline=None)
@given(paid=st.dictionaries(ids, st.integers(1, 10**12) | st.integers(1, 2**90)),
       reserve=st.dictionaries(ids, money), touched=st.sets(ids), dirty=st.sets(ids),
       shortcuts=st.booleans())
def test_uncovered_is_the_stated_rule(paid, reserve, touched, dirty, shortcuts):
    exchange = Exchange(default_config())
    core = exchange.liquidation
    for account in range(1, 31):        # a reserve is kept in the account's record
        exchange.margin.open_account(account, False)
    for account, amount in reserve.items():
        core.set_reserve(account, amount)
    core._dirty.update(dirty)
    core.shortcuts = shortcuts
    expected_reserve = dict(reserve)
    assert core._uncovered(paid, set(touched)) == \
        uncovered(paid, touched, expected_reserve, dirty, shortcuts)
    assert core.reserves() == expected_reserve
