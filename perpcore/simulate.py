"""A seeded simulated trading session on a venue: makers quote both perps, takers cross, the index
follows the fair price, and a crash liquidates the leveraged punters.

Everything that decides what happens is drawn from one random.Random(seed), and time advances in the
commands, so two runs with the same seed give the same events and the same state hash.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from perpcore import messages as m
from perpcore.config import VenueConfig, default_config
from perpcore.exchange import Exchange

# Reference prices the session starts from, per base asset (in the quote currency).
START_PRICES = {"BTC": "65000", "ETH": "3400"}
STEP_NS = 10_000_000            # 10 ms of exchange time per step
# What each participant deposits before the session, per asset (in the asset's units); SETTLE is
# the venue's settlement asset (USD on the built-in venue, USDT or USDC on perpcore.venues' presets)
SETTLE = "settlement"
MAKER_FUNDING = ((SETTLE, "10000000"),)
TAKER_FUNDING = ((SETTLE, "1000000"), ("BTC", "5"), ("ETH", "50"))
# The crash: punters (the first one a whale, larger than the book near its bankruptcy) open
# leveraged positions, mostly long, between 10% and 50% of the session; at CRASH_AT of the way the
# fair price of every symbol falls CRASH_BP basis points in CRASH_STEPS steps and recovers in
# RECOVERY_STEPS. The index follows the fair price every INDEX_EVERY steps (every other step in
# the crash). The insurance fund starts with INSURANCE_SEED.
PUNTER_FUNDING = "2000"
WHALE_FUNDING = "30000"
PUNTER_LEVERAGE = 15                # notional opened, in multiples of the deposit
INSURANCE_SEED = "5000"
INDEX_EVERY = 20
CRASH_AT, CRASH_BP, CRASH_STEPS, RECOVERY_STEPS = 0.6, 2_000, 100, 500


@dataclass
class SimulationReport:
    seed: int
    steps: int
    commands: int = 0
    trades: int = 0
    rejected: int = 0
    volume_lots: dict[str, int] = field(default_factory=dict)
    notional: dict[str, str] = field(default_factory=dict)     # settlement currency, Decimal text
    depth: dict[str, tuple] = field(default_factory=dict)      # symbol -> (bids, asks), top levels
    liquidations: int = 0                                      # LiquidationStarted
    liquidated_accounts: int = 0
    auto_deleveraged: int = 0                                  # AutoDeleveraged
    socialized: str = "0"
    insurance_fund: dict[str, str] = field(default_factory=dict)  # start, low, end, paid in, out
    fees: str = "0"                                            # the fee account at the end
    open_interest: dict[str, str] = field(default_factory=dict)   # symbol -> longs, base asset
    audit_ok: bool = False                                     # ex.audit() balanced at the end
    elapsed_s: float = 0.0
    state_hash: str = ""

    @property
    def commands_per_s(self) -> float:
        return self.commands / self.elapsed_s if self.elapsed_s else 0.0


class Session:
    """Drives an Exchange with makers and takers; `commands()` yields what they send."""

    def __init__(self, config: VenueConfig, seed: int, makers: int = 20, takers: int = 50,
                 punters: int = 20, steps: int = 0, crash: bool = True):
        self.config = config
        self.rng = random.Random(seed)
        self.makers = list(range(1, makers + 1))
        self.takers = list(range(makers + 1, makers + takers + 1))
        self.punters = list(range(makers + takers + 1, makers + takers + punters + 1))
        self.symbols = sorted(config.instruments)
        self.mid = {s: config.instruments[s].to_ticks(
                    START_PRICES.get(config.instruments[s].base, "100")) for s in self.symbols}
        self.clock = 0
        self.i = 0
        # the step at which each punter opens its position
        self.opening = {steps // 10 + k * (steps * 4 // 10) // max(punters, 1): p
                        for k, p in enumerate(self.punters)} if steps else {}
        self.crash_at = int(steps * CRASH_AT) if crash and steps else None

    def factor(self, i: int) -> int:
        """The crash's multiplier of the fair price at step i, in basis points."""
        t = i - self.crash_at if self.crash_at is not None else -1
        if t < 0 or t >= CRASH_STEPS + RECOVERY_STEPS:
            return 10_000
        if t < CRASH_STEPS:
            return 10_000 - CRASH_BP * (t + 1) // CRASH_STEPS
        return 10_000 - CRASH_BP * (CRASH_STEPS + RECOVERY_STEPS - t) // RECOVERY_STEPS

    def fair(self, symbol: str, i: int) -> int:
        return max(self.config.instruments[symbol].price_step,
                   self.mid[symbol] * self.factor(i) // 10_000)

    def setup(self) -> list[m.Command]:
        """Accounts, funded before they trade: makers with cash, takers with cash and BTC/ETH
        collateral (counted once an index prices it), punters with a little cash (the whale with
        more); the insurance fund's seed; the first index prices."""
        cmds: list[m.Command] = [m.CreateAccount(account=a, professional=True)
                                 for a in self.makers + self.takers]
        assets = self.config.assets
        punters = [(p, ((SETTLE, WHALE_FUNDING if k == 0 else PUNTER_FUNDING),))
                   for k, p in enumerate(self.punters)]
        cmds += [m.CreateAccount(account=p, professional=True) for p in self.punters]
        settle = self.config.settlement_asset
        for accounts, funding in ((self.makers, MAKER_FUNDING), (self.takers, TAKER_FUNDING),
                                  *(([p], f) for p, f in punters)):
            for a in accounts:
                for asset, amount in funding:
                    asset = settle if asset == SETTLE else asset
                    if asset in assets:
                        cmds.append(m.Deposit(account=a, asset=asset,
                                              amount=assets[asset].to_units(amount)))
        cmds.append(m.FundInsurance(asset=settle, amount=assets[settle].to_units(INSURANCE_SEED)))
        cmds += [m.SetIndexPrice(source="sim", symbol=s, price=self.mid[s]) for s in self.symbols]
        return cmds

    def open_position(self, punter: int, i: int) -> m.Command:
        """A punter's leveraged bid or offer 0.1% off the fair price, mostly long (the whale in the
        first symbol): it rests and fills from the takers' flow and the price's drift."""
        rng = self.rng
        whale = punter == self.punters[0]
        symbol = self.symbols[0] if whale else rng.choice(self.symbols)
        spec = self.config.instruments[symbol]
        mid = self.fair(symbol, i)
        deposit = WHALE_FUNDING if whale else PUNTER_FUNDING
        notional = self.config.assets[spec.settle].to_units(deposit) * PUNTER_LEVERAGE
        qty = notional // (mid * self.config.units_per_ticklot(spec.symbol))
        side = m.Side.BUY if whale or rng.random() < 0.7 else m.Side.SELL
        price = mid * 999 // 1000 if side == m.Side.BUY else mid * 1001 // 1000
        return m.PlaceOrder(account=punter, symbol=symbol, side=side, qty=qty, price=price,
                            ts=self.clock)

    def step(self) -> m.Command:
        rng = self.rng
        self.clock += STEP_NS
        i = self.i
        self.i += 1
        if i in self.opening:
            return self.open_position(self.opening[i], i)
        every = 2 if self.factor(i) != 10_000 else INDEX_EVERY
        if i % every == 0:
            symbol = self.symbols[i // every % len(self.symbols)]
            return m.SetIndexPrice(source="sim", symbol=symbol, price=self.fair(symbol, i),
                                   ts=self.clock)
        symbol = rng.choice(self.symbols)
        spec = self.config.instruments[symbol]
        # the fair price wanders: a random walk of about one basis point a step
        self.mid[symbol] = max(spec.price_step,
                               self.mid[symbol] + round(rng.gauss(0, self.mid[symbol] * 0.0001)))
        mid = self.fair(symbol, i)
        # the smallest size that clears the instrument's minimum notional at this price
        min_lots = math.ceil(spec.min_notional / (spec.from_ticks(mid) * spec.lot_size))
        qty = min_lots * rng.randint(1, 20)
        if rng.random() < 0.75:
            side = rng.choice((m.Side.BUY, m.Side.SELL))
            offset = 1 + int(rng.expovariate(1 / 8))
            price = mid - offset if side == m.Side.BUY else mid + offset
            return m.PlaceOrder(account=rng.choice(self.makers), symbol=symbol, side=side, qty=qty,
                                price=max(price, 1), ts=self.clock)
        side = rng.choice((m.Side.BUY, m.Side.SELL))
        if rng.random() < 0.3:
            return m.PlaceOrder(account=rng.choice(self.takers), symbol=symbol, side=side, qty=qty,
                                order_type=m.OrderType.MARKET, ts=self.clock)
        cross = rng.randint(0, 5)
        price = mid + cross if side == m.Side.BUY else mid - cross
        return m.PlaceOrder(account=rng.choice(self.takers), symbol=symbol, side=side, qty=qty,
                            price=max(price, 1), tif=m.TimeInForce.IOC, ts=self.clock)


def run(steps: int = 100_000, seed: int = 7, config: VenueConfig | None = None,
        progress=None, crash: bool = True) -> tuple[Exchange, SimulationReport]:
    config = config or default_config()
    ex = Exchange(config)
    session = Session(config, seed, steps=steps, crash=crash)
    report = SimulationReport(seed=seed, steps=steps)
    volume = {s: 0 for s in session.symbols}
    notional = {s: 0 for s in session.symbols}
    for cmd in session.setup():
        ex.submit(cmd)
    settle = config.settlement_asset
    fund = low = ex.insurance_fund(settle)
    paid_in = paid_out = 0
    liquidated: set[int] = set()
    socialized = 0
    started = time.perf_counter()      # throughput is reported, never used to decide anything
    for i in range(steps):
        for event in ex.submit(session.step()):
            kind = type(event)
            if kind is m.OrderFilled:
                report.trades += 1
                volume[event.symbol] += event.qty
                notional[event.symbol] += event.qty * event.price
            elif kind is m.OrderRejected:
                report.rejected += 1
            elif kind is m.LiquidationStarted:
                report.liquidations += 1
                liquidated.add(event.account)
            elif kind is m.AutoDeleveraged:
                report.auto_deleveraged += 1
            elif kind is m.InsuranceFundChanged and event.asset == settle:
                low = min(low, event.balance)
                if event.delta > 0:
                    paid_in += event.delta
                else:
                    paid_out -= event.delta
            elif kind is m.SocializedLoss:
                socialized += event.amount
        if progress is not None and i % 1000 == 0:
            progress(i)
    report.elapsed_s = time.perf_counter() - started
    report.commands = steps
    report.liquidated_accounts = len(liquidated)
    asset = config.assets[settle]
    report.socialized = str(asset.from_units(socialized))
    report.insurance_fund = {name: str(asset.from_units(value)) for name, value in (
        ("start", fund), ("low", low), ("end", ex.insurance_fund(settle)), ("paid_in", paid_in),
        ("paid_out", paid_out))}
    for symbol in session.symbols:
        spec = config.instruments[symbol]
        report.volume_lots[symbol] = volume[symbol]
        report.notional[symbol] = str(spec.from_ticks(notional[symbol]) * spec.lot_size)
        report.depth[symbol] = ex.book(symbol).depth(5)
        report.open_interest[symbol] = str(spec.from_lots(
            sum(size for _, size in ex.margin.open_positions(symbol) if size > 0)))
    audit = ex.audit()
    report.fees = str(asset.from_units(audit[settle].fee_account))
    report.audit_ok = audit.ok
    report.state_hash = ex.state_hash()
    return ex, report
