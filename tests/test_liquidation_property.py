"""Random markets with crashes (hypothesis stateful): makers quote around the index, traders take
and rest orders with random leverage, borrow against BTC, the index moves, crashes and recovers, the
clock runs through funding settlements, loan interest and index staleness, and the exchange is
snapshotted and restored midway. After every step: the audit is exact, the insurance fund is never
negative, no account is left under maintenance unless a stale index holds it back, and no account
has negative equity unless a SocializedLoss says so. At the end the same commands replayed into a
fresh exchange give the same events and the same state hash."""
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from perpcore import Exchange, default_config
from perpcore import messages as m
from perpcore.messages import Side

BTC, ETH = "BTC-PERP", "ETH-PERP"
START = {BTC: 650000, ETH: 340000}
LOTS = {BTC: (10, 2000), ETH: (10, 5000)}
MAKERS = (1, 2, 3)
TRADERS = tuple(range(10, 18))
S = 1_000_000_000


class RandomMarket(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.config = default_config()
        self.ex = Exchange(self.config)
        self.commands: list = []
        self.events: list = []
        self.clock = 0
        self.socialized: dict[int, int] = {}

    def submit(self, cmd):
        self.commands.append(cmd)
        events = self.ex.submit(cmd)
        self.events.extend(events)
        for e in events:
            if type(e) is m.SocializedLoss:
                self.socialized[e.account] = e.total
        return events

    def index(self, symbol):
        return self.ex.index_price(symbol)

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
        per_lot = price * self.ex.config.units_per_ticklot(symbol)
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
        price = max(1, self.index(symbol) * (10_000 + bp) // 10_000)
        self.submit(m.SetIndexPrice(source="x", symbol=symbol, price=price, ts=self.clock))

    @rule(symbol=st.sampled_from([BTC, ETH]),
          pct=st.one_of(st.integers(-40, -8), st.integers(8, 40)))
    def crash(self, symbol, pct):
        price = max(1, self.index(symbol) * (100 + pct) // 100)
        self.submit(m.SetIndexPrice(source="x", symbol=symbol, price=price, ts=self.clock))

    @rule(symbol=st.sampled_from([BTC, ETH]))
    def recover(self, symbol):
        self.submit(m.SetIndexPrice(source="x", symbol=symbol, price=START[symbol], ts=self.clock))

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
        symbols |= {self.config.collateral_symbol(a) for a in ("BTC", "ETH") if view.balances[a] > 0}
        return any(stale(s) for s in symbols)

    @invariant()
    def books_balance(self):
        self.ex.audit().check()

    @invariant()
    def fund_never_negative(self):
        assert self.ex.insurance_fund("USD") >= 0

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


RandomMarket.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_random_markets_with_crashes = RandomMarket.TestCase
