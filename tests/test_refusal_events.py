"""A refusal drops nothing: a command is refused before time moves to its ts (the funding and
interest of the time that passed come with the next command that is accepted), so a rejection
leaves the whole state as it was, clock included; and the events returned always rebuild the
state: folding them gives every account's balances, loan and positions."""
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpcore import messages as m
from perpcore.config import DAY_NS, HOUR_NS, default_config
from perpcore.exchange import Exchange
from perpcore.messages import RejectCode, Side, TimeInForce

S = 1_000_000_000
BTC = "BTC-PERP"
MID = 650_000
SETTLE = "USD"
TRADERS = (1, 2, 3)
MAKER = 4


def of(events, kind):
    return [e for e in events if type(e) is kind]


# ---- the refusals that came after the clock moved ------------------------------------------------

def start(t=S):
    """An index, accounts 1-4 with USD and 1 BTC each, a maker quoting 649,900 / 650,100."""
    cmds = [m.SetIndexPrice(source="x", symbol=BTC, price=MID, ts=t)]
    for a in TRADERS + (MAKER,):
        cmds += [m.CreateAccount(account=a, ts=t),
                 m.Deposit(account=a, asset=SETTLE, amount=10**12, ts=t),
                 m.Deposit(account=a, asset="BTC", amount=10**8, ts=t)]
    return cmds + [m.PlaceOrder(account=MAKER, symbol=BTC, side=side, price=price, qty=500, ts=t)
                   for side, price in ((Side.BUY, MID - 100), (Side.SELL, MID + 100))]


def venue():
    """start(), account 1 long 10 lots from account 2 (so funding pays) and borrowing against
    its BTC (so interest accrues), everything at 1 s."""
    ex = Exchange(default_config())
    for cmd in start() + [
            m.PlaceOrder(account=2, symbol=BTC, side=Side.SELL, price=MID, qty=10, ts=S),
            m.PlaceOrder(account=1, symbol=BTC, side=Side.BUY, price=MID, qty=10, ts=S),
            m.Borrow(account=1, asset=SETTLE, amount=10**9, ts=S)]:
        assert type(ex.submit(cmd)[0]) is not m.OrderRejected, cmd
    return ex


def refused(ex, cmd, code):
    """Submits cmd, which must be refused with code, changing nothing (clock included)."""
    before, clock = ex.state_hash(), ex.clock
    events = ex.submit(cmd)
    assert [(type(e), e.code) for e in events] == [(m.OrderRejected, code)], events
    assert ex.clock == clock and ex.state_hash() == before


def test_a_post_only_that_would_take_is_refused_before_time_moves():
    ex = venue()
    later = 9 * HOUR_NS         # a settlement (8 h) and nine interest hours (1 h ... 9 h) away
    refused(ex, m.PlaceOrder(account=3, symbol=BTC, side=Side.BUY, price=MID + 100, qty=1,
                             tif=TimeInForce.POST_ONLY, ts=later), RejectCode.POST_ONLY_WOULD_TAKE)
    # the time that passed comes with the next accepted command
    events = ex.submit(m.AdvanceClock(ts=later))
    assert len(of(events, m.FundingSettled)) == 1 and len(of(events, m.InterestAccrued)) == 9


def test_an_unfillable_fok_is_refused_before_time_moves():
    ex = venue()
    refused(ex, m.PlaceOrder(account=3, symbol=BTC, side=Side.BUY, price=MID + 100, qty=501,
                             tif=TimeInForce.FOK, ts=9 * HOUR_NS), RejectCode.FOK_UNFILLABLE)


def test_an_amend_of_a_post_only_that_would_take_is_refused_before_time_moves():
    ex = venue()
    accepted = ex.submit(m.PlaceOrder(account=3, symbol=BTC, side=Side.BUY, price=MID - 200,
                                      qty=1, tif=TimeInForce.POST_ONLY, ts=2 * S))
    order_id = of(accepted, m.OrderAccepted)[0].order_id
    refused(ex, m.AmendOrder(account=3, symbol=BTC, order_id=order_id, price=MID + 100, qty=1,
                             ts=9 * HOUR_NS), RejectCode.POST_ONLY_WOULD_TAKE)


def test_a_duplicate_client_order_id_is_refused_before_time_moves():
    ex = venue()
    ex.submit(m.PlaceOrder(account=3, symbol=BTC, side=Side.BUY, price=MID - 200, qty=1,
                           client_order_id=7, ts=2 * S))
    refused(ex, m.PlaceOrder(account=3, symbol=BTC, side=Side.BUY, price=MID - 300, qty=1,
                             client_order_id=7, ts=9 * HOUR_NS),
            RejectCode.DUPLICATE_CLIENT_ORDER_ID)


# ---- the events rebuild the state ----------------------------------------------------------------

class Ledger:
    """Every account's balances, loan and positions, from the events alone."""

    def __init__(self):
        self.cash = defaultdict(int)        # (account, asset) -> minor units
        self.loan = defaultdict(int)        # account -> debt
        self.size = {}                      # (account, symbol) -> signed lots

    def fold(self, e) -> None:
        kind = type(e)
        if kind is m.Deposited or kind is m.Withdrawn:
            self.cash[e.account, e.asset] += e.amount if kind is m.Deposited else -e.amount
            assert self.cash[e.account, e.asset] == e.balance, e
        elif kind is m.PositionChanged:
            self.cash[e.account, SETTLE] += e.realised_pnl - e.fee
            assert self.cash[e.account, SETTLE] == e.balance, e
            self.size[e.account, e.symbol] = e.size
        elif kind is m.FundingPaid:
            self.cash[e.account, SETTLE] += e.amount
        elif kind is m.Borrowed or kind is m.Repaid:
            sign = 1 if kind is m.Borrowed else -1
            self.cash[e.account, e.asset] += sign * e.amount
            self.loan[e.account] += sign * e.amount
            assert self.loan[e.account] == e.debt, e
        elif kind is m.InterestAccrued:
            self.loan[e.account] += e.amount
            assert self.loan[e.account] == e.debt, e
        elif kind is m.CollateralConverted:
            self.cash[e.account, e.asset] -= e.amount
            self.cash[e.account, SETTLE] += e.proceeds - e.repaid
            self.loan[e.account] -= e.repaid
            assert self.loan[e.account] == e.debt, e
        else:
            # what this venue cannot do (no position is ever near its maintenance margin)
            assert kind not in (m.PositionLiquidated, m.AutoDeleveraged, m.SocializedLoss), e

    def check(self, ex) -> None:
        for a in ex.accounts():
            view = ex.account(a)
            assert {asset: self.cash[a, asset] for asset in view.balances} == view.balances, a
            assert self.loan[a] == view.loan, a
            assert {p.symbol: p.size for p in view.positions if p.size} == \
                {s: n for (b, s), n in self.size.items() if b == a and n}, a


STEPS = [0, 0, 1, S, 59 * 60 * S, HOUR_NS, 8 * HOUR_NS + 1, DAY_NS]
command_st = st.one_of(
    st.tuples(st.just("order"), st.sampled_from(TRADERS), st.sampled_from(list(Side)),
              st.integers(-150, 150), st.integers(1, 40), st.sampled_from(list(TimeInForce))),
    st.tuples(st.just("amend"), st.sampled_from(TRADERS), st.integers(1, 30),
              st.integers(-150, 150), st.integers(1, 40), st.just(None)),
    st.tuples(st.just("cancel"), st.sampled_from(TRADERS), st.integers(1, 30), st.just(0),
              st.just(0), st.just(None)),
    st.tuples(st.just("index"), st.just(0), st.just(None), st.integers(-2000, 2000), st.just(0),
              st.just(None)),
    st.tuples(st.sampled_from(["deposit", "withdraw", "borrow", "repay"]),
              st.sampled_from(TRADERS), st.just(None), st.just(0),
              st.integers(1, 10**9), st.just(None)))


def command(kind, who, x, offset, n, tif, ts):
    """x: an order's side; the order id an amend or a cancel names."""
    if kind == "order":
        return m.PlaceOrder(account=who, symbol=BTC, side=x, price=MID + offset, qty=n, tif=tif,
                            ts=ts)
    if kind == "amend":
        return m.AmendOrder(account=who, symbol=BTC, order_id=x, price=MID + offset, qty=n,
                            ts=ts)
    if kind == "cancel":
        return m.CancelOrder(account=who, symbol=BTC, order_id=x, ts=ts)
    if kind == "index":
        return m.SetIndexPrice(source="x", symbol=BTC, price=MID + offset, ts=ts)
    money = {"deposit": m.Deposit, "withdraw": m.Withdraw, "borrow": m.Borrow, "repay": m.Repay}
    return money[kind](account=who, asset=SETTLE, amount=n * 1000, ts=ts)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(command_st, st.sampled_from(STEPS)), min_size=10, max_size=50))
def test_a_refusal_changes_nothing_and_the_events_rebuild_the_state(steps):
    """Random commands at times that cross funding settlements and interest hours (post-only
    orders that would take, unfillable FOKs, amends and cancels of unknown or moved orders,
    withdrawals and repayments beyond the balance among them): each rejection leaves the state and
    the clock as they were, and after every command the events so far rebuild every account."""
    ex = Exchange(default_config())
    ledger = Ledger()
    t = S
    for cmd in start(t):
        for e in ex.submit(cmd):
            ledger.fold(e)
    for (kind, who, x, offset, n, tif), step in steps:
        t += step
        if kind in ("amend", "cancel"):     # mostly one of the account's open orders
            mine = [o[0] for o in ex.markets[BTC].book.resting() if o[1] == who]
            x = mine[x % len(mine)] if mine and x < 25 else x
        cmd = command(kind, who, x, offset, n, tif, t)
        before, clock = ex.state_hash(), ex.clock
        events = ex.submit(cmd)
        if events and type(events[0]) is m.OrderRejected:
            assert len(events) == 1, events
            assert ex.clock == clock and ex.state_hash() == before, cmd
        for e in events:
            ledger.fold(e)
        ledger.check(ex)
    ex.audit().check()
