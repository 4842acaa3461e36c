"""A seeded simulated trading session on a venue: makers quote both perps, takers cross.

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


@dataclass
class SimulationReport:
    seed: int
    steps: int
    commands: int = 0
    trades: int = 0
    rejected: int = 0
    volume_lots: dict[str, int] = field(default_factory=dict)
    notional: dict[str, str] = field(default_factory=dict)     # settlement currency, as Decimal text
    depth: dict[str, tuple] = field(default_factory=dict)      # symbol -> (bids, asks), top levels
    elapsed_s: float = 0.0
    state_hash: str = ""

    @property
    def commands_per_s(self) -> float:
        return self.commands / self.elapsed_s if self.elapsed_s else 0.0


class Session:
    """Drives an Exchange with makers and takers; `commands()` yields what they send."""

    def __init__(self, config: VenueConfig, seed: int, makers: int = 20, takers: int = 50):
        self.config = config
        self.rng = random.Random(seed)
        self.makers = list(range(1, makers + 1))
        self.takers = list(range(makers + 1, makers + takers + 1))
        self.symbols = sorted(config.instruments)
        self.mid = {s: config.instruments[s].to_ticks(START_PRICES.get(config.instruments[s].base, "100"))
                    for s in self.symbols}
        self.clock = 0

    def setup(self) -> list[m.Command]:
        return [m.CreateAccount(account=a, professional=True) for a in self.makers + self.takers]

    def step(self) -> m.Command:
        rng = self.rng
        self.clock += STEP_NS
        symbol = rng.choice(self.symbols)
        spec = self.config.instruments[symbol]
        mid = self.mid[symbol]
        # the fair price wanders: a random walk of about one basis point a step
        mid = max(spec.price_step, mid + round(rng.gauss(0, mid * 0.0001)))
        self.mid[symbol] = mid
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
        progress=None) -> tuple[Exchange, SimulationReport]:
    config = config or default_config()
    ex = Exchange(config)
    session = Session(config, seed)
    report = SimulationReport(seed=seed, steps=steps)
    volume = {s: 0 for s in session.symbols}
    notional = {s: 0 for s in session.symbols}
    for cmd in session.setup():
        ex.submit(cmd)
    started = time.perf_counter()      # throughput is reported, never used to decide anything
    for i in range(steps):
        for event in ex.submit(session.step()):
            if type(event) is m.OrderFilled:
                report.trades += 1
                volume[event.symbol] += event.qty
                notional[event.symbol] += event.qty * event.price
            elif type(event) is m.OrderRejected:
                report.rejected += 1
        if progress is not None and i % 1000 == 0:
            progress(i)
    report.elapsed_s = time.perf_counter() - started
    report.commands = steps
    for symbol in session.symbols:
        spec = config.instruments[symbol]
        report.volume_lots[symbol] = volume[symbol]
        report.notional[symbol] = str(spec.from_ticks(notional[symbol]) * spec.lot_size)
        report.depth[symbol] = ex.book(symbol).depth(5)
    report.state_hash = ex.state_hash()
    return ex, report
