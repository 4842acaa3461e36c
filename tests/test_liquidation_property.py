"""Random markets with crashes (hypothesis stateful): makers quote around the index, traders take
and rest orders with random leverage, borrow against BTC, the index moves, crashes and recovers, the
clock runs through funding settlements, loan interest and index staleness, and the exchange is
snapshotted and restored midway. After every step: the audit is exact, the insurance fund is never
negative, no account is left under maintenance unless a stale index holds it back, and no account
has negative equity unless a SocializedLoss says so. At the end the same commands replayed into a
fresh exchange give the same events and the same state hash.

Under the built-in venue and every preset of perpcore.venues: the commands are written on the
built-in venue and re-expressed on the preset's grid (perpcore.compare.Translator), so each venue
meets the same random markets under its own rules."""
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore.compare import Translator
from perpcore.messages import Side
from perpcore.venues import VENUES, venue

BTC, ETH = "BTC-PERP", "ETH-PERP"
START = {BTC: 650000, ETH: 340000}
LOTS = {BTC: (10, 2000), ETH: (10, 5000)}
MAKERS = (1, 2, 3)
TRADERS = tuple(range(10, 18))
S = 1_000_000_000


class RandomMarket(RuleBasedStateMachine):
    def __init__(self, name: str = "default"):
        super().__init__()
        self.config = venue(name)
        self.reference = default_config()       # the venue the commands are written on
        self.translate = Translator(self.reference, self.config)
        self.settle = self.config.settlement_asset
        self.indices = dict(START)              # each index, in the reference's ticks
        self.ex = Exchange(self.config)
        self.commands: list = []
        self.events: list = []
        self.clock = 0
        self.socialized: dict[int, int] = {}

    def submit(self, cmd):
        cmd = self.translate(cmd)
        self.commands.append(cmd)
        events = self.ex.submit(cmd)
        self.events.extend(events)
        for e in events:
            if type(e) is m.SocializedLoss:
                self.socialized[e.account] = e.total
        return events

    def index(self, symbol):
        return self.indices[symbol]

    def set_index(self, symbol, price):
        self.indices[symbol] = price
        self.submit(m.SetIndexPrice(source="x", symbol=symbol, price=price, ts=self.clock))

    @initialize(deposits=st.lists(st.integers(1_000, 60_000), min_size=len(TRADERS),
                                  max_size=len(TRADERS)),
                collateral=st.lists(st.booleans(), min_size=len(TRADERS), max_size=len(TRADERS)),
                fund=st.integers(0, 50_000))
    def setup(self, deposits, collateral, fund):
        for a in MAKERS + TRADERS:
            self.submit(m.CreateAccount(account=a))
        for a in MAKERS:
            self.submit(m.Deposit(account=a, asset="USD", amount=10**13))
        for a, amount, btc in zip(TRADERS, deposits, collateral):
            self.submit(m.Deposit(account=a, asset="USD", amount=amount * 10**6))
            if btc:
                self.submit(m.Deposit(account=a, asset="BTC", amount=50_000_000))
        if fund:
            self.submit(m.FundInsurance(asset="USD", amount=fund * 10**6))
        for symbol, price in START.items():
            self.submit(m.SetIndexPrice(source="x", symbol=symbol, price=price))

    @rule(maker=st.sampled_from(MAKERS), symbol=st.sampled_from([BTC, ETH]),
          side=st.sampled_from(Side), offset=st.integers(1, 400), depth=st.integers(1, 40),
          data=st.data())
    def quote(self, maker, symbol, side, offset, depth, data):
        index = self.index(symbol)
        price = index - offset * depth if side == Side.BUY else index + offset * depth
        qty = data.draw(st.integers(*LOTS[symbol]))
        self.submit(m.PlaceOrder(account=maker, symbol=symbol, side=side, qty=qty,
                                 price=max(price, 1)))

    @rule(trader=st.sampled_from(TRADERS), symbol=st.sampled_from([BTC, ETH]),
          side=st.sampled_from(Side), leverage=st.integers(1, 50), use=st.integers(10, 95),
          market=st.booleans(), maker=st.sampled_from(MAKERS), offset=st.integers(0, 200))
    def take(self, trader, symbol, side, leverage, use, market, maker, offset):
        """A maker quotes and the trader takes up to `use`% of what its equity allows at that
        leverage (so that positions are large and crashes liquidate them)."""
        self.submit(m.SetLeverage(account=trader, symbol=symbol, leverage=leverage))
        index = self.index(symbol)
        price = index + offset if side == Side.BUY else max(1, index - offset)
        per_lot = price * self.reference.units_per_ticklot(symbol)
        qty = max(1, self.ex.account(trader).equity * leverage * use // (100 * per_lot))
        qty = min(qty, 100_000)
        self.submit(m.PlaceOrder(account=maker, symbol=symbol, side=Side(1 - side), qty=qty,
                                 price=price))
        if market:
            self.submit(m.PlaceOrder(account=trader, symbol=symbol, side=side, qty=qty,
                                     order_type=m.OrderType.MARKET))
        else:
            self.submit(m.PlaceOrder(account=trader, symbol=symbol, side=side, qty=qty,
                                     price=price, tif=m.TimeInForce.IOC))

    @rule(trader=st.sampled_from(TRADERS), symbol=st.sampled_from([BTC, ETH]),
          side=st.sampled_from(Side), offset=st.integers(1, 3000), data=st.data())
    def rest(self, trader, symbol, side, offset, data):
        index = self.index(symbol)
        price = index - offset if side == Side.BUY else index + offset
        qty = data.draw(st.integers(*LOTS[symbol]))
        self.submit(m.PlaceOrder(account=trader, symbol=symbol, side=side, qty=qty, price=price))

    @rule(symbol=st.sampled_from([BTC, ETH]), bp=st.integers(-300, 300))
    def move(self, symbol, bp):
        self.set_index(symbol, max(1, self.index(symbol) * (10_000 + bp) // 10_000))

    @rule(symbol=st.sampled_from([BTC, ETH]),
          pct=st.one_of(st.integers(-40, -8), st.integers(8, 40)))
    def crash(self, symbol, pct):
        self.set_index(symbol, max(1, self.index(symbol) * (100 + pct) // 100))

    @rule(symbol=st.sampled_from([BTC, ETH]))
    def recover(self, symbol):
        self.set_index(symbol, START[symbol])

    @rule(seconds=st.sampled_from([1, 30, 61, 600, 3600, 4 * 3600, 8 * 3600]))
    def advance(self, seconds):
        self.clock += seconds * S
        self.submit(m.AdvanceClock(ts=self.clock))

    @rule(trader=st.sampled_from(TRADERS), usd=st.integers(100, 30_000))
    def borrow(self, trader, usd):
        self.submit(m.Borrow(account=trader, asset="USD", amount=usd * 10**6))

    @rule(trader=st.sampled_from(TRADERS), usd=st.integers(100, 30_000))
    def withdraw(self, trader, usd):
        self.submit(m.Withdraw(account=trader, asset="USD", amount=usd * 10**6))

    @rule(usd=st.integers(1, 20_000))
    def fund(self, usd):
        self.submit(m.FundInsurance(asset="USD", amount=usd * 10**6))

    @precondition(lambda self: len(self.commands) > 20)
    @rule()
    def snapshot_and_restore(self):
        restored = Exchange.restore(self.config, self.ex.snapshot())
        assert restored.state_hash() == self.ex.state_hash()
        self.ex = restored

    # ---- invariants --------------------------------------------------------------------------

    def held_back(self, view) -> bool:
        """Valued with a stale index: the engine must leave it alone for now."""
        stale = self.ex.components["pricing"].is_stale
        symbols = {p.symbol for p in view.positions if p.size}
        symbols |= {self.config.collateral_symbol(a) for a in self.config.margin.haircuts
                    if view.balances[a] > 0}
        return any(stale(s) for s in symbols)

    @invariant()
    def books_balance(self):
        self.ex.audit().check()

    @invariant()
    def fund_never_negative(self):
        assert self.ex.insurance_fund(self.settle) >= 0

    @invariant()
    def accounts_are_sound(self):
        for a in TRADERS + MAKERS:
            view = self.ex.account(a)
            if self.held_back(view):
                continue
            assert not view.liquidatable, (a, view)
            if view.equity < 0:
                assert self.socialized.get(a, 0) >= -view.equity, (a, view)

    def teardown(self):
        replay = Exchange(self.config)
        events = []
        for cmd in self.commands:
            events.extend(replay.submit(cmd))
        assert events == self.events
        assert replay.state_hash() == self.ex.state_hash()


# the built-in venue as many examples as ever; each preset a quarter of them
@pytest.mark.parametrize("name", list(VENUES))
def test_random_markets_with_crashes(name):
    run_state_machine_as_test(lambda: RandomMarket(name), settings=settings(
        max_examples=40 if name == "default" else 10, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
