"""A seeded simulated trading session on a venue: makers quote both perps, takers cross, the index
follows the fair price, and a crash liquidates the leveraged punters.

Everything that decides what happens is drawn from one random.Random(seed), and time advances in the
commands, so two runs with the same seed give the same events and the same state hash.
"""
from __future__ import annotations

import math
import random
import time
from collections import defaultdict
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


class Tally:
    """What a run's events did: trades (lots and ticks x lots per symbol), refusals, liquidations
    (the accounts, the engine's steps, the ticks x lots they closed per symbol), auto-deleveraging
    (positions, ticks x lots per symbol), the insurance fund of the settlement asset (its lowest
    balance once it moved, what was paid in and out), funding (paid, received, the remainders to
    the fund, settlements) and socialised losses; money in minor units. perpcore simulate's
    summary and perpcore.compare's figures."""

    def __init__(self, settle: str):
        self.settle = settle
        self.trades = self.rejected = self.liquidations = self.liquidation_steps = 0
        self.adl = self.settlements = 0
        self.volume: dict[str, int] = defaultdict(int)
        self.traded: dict[str, int] = defaultdict(int)
        self.liquidated_value: dict[str, int] = defaultdict(int)
        self.adl_value: dict[str, int] = defaultdict(int)
        self.liquidated: set[int] = set()
        self.fund_low: int | None = None
        self.fund_in = self.fund_out = 0
        self.funding_paid = self.funding_received = self.funding_remainder = 0
        self.socialized = 0

    def add(self, events) -> None:
        for e in events:
            kind = type(e)
            if kind is m.OrderFilled:
                self.trades += 1
                self.volume[e.symbol] += e.qty
                self.traded[e.symbol] += e.qty * e.price
            elif kind is m.OrderRejected:
                self.rejected += 1
            elif kind is m.LiquidationStarted:
                self.liquidations += 1
                self.liquidated.add(e.account)
            elif kind is m.PositionLiquidated:
                self.liquidation_steps += 1
                self.liquidated_value[e.symbol] += e.book_value + e.fund_value
            elif kind is m.AutoDeleveraged:
                self.adl += 1
                self.adl_value[e.symbol] += e.qty * e.price
            elif kind is m.InsuranceFundChanged and e.asset == self.settle:
                self.fund_low = e.balance if self.fund_low is None else min(self.fund_low,
                                                                             e.balance)
                if e.delta > 0:
                    self.fund_in += e.delta
                else:
                    self.fund_out -= e.delta
            elif kind is m.FundingPaid:
                if e.amount < 0:
                    self.funding_paid -= e.amount
                else:
                    self.funding_received += e.amount
            elif kind is m.FundingSettled:
                self.settlements += 1
                self.funding_remainder += e.insurance
            elif kind is m.SocializedLoss:
                self.socialized += e.amount


def run(steps: int = 100_000, seed: int = 7, config: VenueConfig | None = None,
        progress=None, crash: bool = True) -> tuple[Exchange, SimulationReport]:
    config = config or default_config()
    ex = Exchange(config)
    session = Session(config, seed, steps=steps, crash=crash)
    report = SimulationReport(seed=seed, steps=steps)
    for cmd in session.setup():
        ex.submit(cmd)
    settle = config.settlement_asset
    fund = ex.insurance_fund(settle)
    tally = Tally(settle)
    started = time.perf_counter()      # throughput is reported, never used to decide anything
    for i in range(steps):
        tally.add(ex.submit(session.step()))
        if progress is not None and i % 1000 == 0:
            progress(i)
    report.elapsed_s = time.perf_counter() - started
    report.commands = steps
    report.trades, report.rejected = tally.trades, tally.rejected
    report.liquidations, report.auto_deleveraged = tally.liquidations, tally.adl
    report.liquidated_accounts = len(tally.liquidated)
    asset = config.assets[settle]
    report.socialized = str(asset.from_units(tally.socialized))
    low = fund if tally.fund_low is None else min(fund, tally.fund_low)
    report.insurance_fund = {name: str(asset.from_units(value)) for name, value in (
        ("start", fund), ("low", low), ("end", ex.insurance_fund(settle)),
        ("paid_in", tally.fund_in), ("paid_out", tally.fund_out))}
    for symbol in session.symbols:
        spec = config.instruments[symbol]
        report.volume_lots[symbol] = tally.volume[symbol]
        report.notional[symbol] = str(spec.from_ticks(tally.traded[symbol]) * spec.lot_size)
        report.depth[symbol] = ex.book(symbol).depth(5)
        report.open_interest[symbol] = str(spec.from_lots(
            sum(size for _, size in ex.margin.open_positions(symbol) if size > 0)))
    audit = ex.audit()
    report.fees = str(asset.from_units(audit[settle].fee_account))
    report.audit_ok = audit.ok
    report.state_hash = ex.state_hash()
    return ex, report
