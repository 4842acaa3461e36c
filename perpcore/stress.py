"""Stress testing: price shocks applied to one venue state, and what the liquidation layer did.

A venue state (a generated population of accounts with realistic leverage, or the state a simulated
session left) is snapshotted once; each shock restores it and moves every index by the same
percentage, in a few steps a second apart (a fast move: no fresh liquidity arrives, the book stands
as it was), or down and back up again for a flash crash. Per shock the report gives the accounts
liquidated, the volume their liquidations closed in the book, the insurance fund's drawdown (start
less its lowest point) and net change, the auto-deleveraging and the socialised loss: the figures a
risk officer takes to the regulator. Everything runs through Exchange.submit: the engine under test
is the one in production, and the same seed gives the same report.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

from perpcore import messages as m
from perpcore.config import VenueConfig, default_config
from perpcore.exchange import Exchange

START_PRICES = {"BTC": "65000", "ETH": "3400"}
STEP_NS = 1_000_000_000                 # one second between the steps of a shock
# leverage a population uses: (low, high, share), drawn uniformly inside a band; most retail-sized
# accounts sit at a few times, a tail at the venue's limits (the shape venues publish)
LEVERAGE_BANDS = ((1, 3, 0.30), (3, 10, 0.35), (10, 25, 0.25), (25, 50, 0.08), (50, 100, 0.02))
MAKERS = 10                             # market makers to begin with; more join as needed
MAX_MAKERS = 999                        # accounts 1-999; the traders are 1,000 on
MAKER_LIMIT = 0.8                       # share of its risk limit a maker may use
FIRST_TRADER = 1_000


@dataclass
class ShockResult:
    name: str
    path_bp: list[int]                  # each step's move from the start, basis points
    liquidated: int = 0                 # accounts liquidated (any reason)
    liquidations: int = 0               # LiquidationStarted events
    steps: int = 0                      # PositionLiquidated events
    closed_lots: dict[str, int] = field(default_factory=dict)
    closed_notional: str = "0"          # settlement asset: book fills and the fund's takeovers
    fund_start: str = "0"
    fund_end: str = "0"
    fund_drawdown: str = "0"            # start less the lowest balance on the way
    adl_count: int = 0                  # AutoDeleveraged events
    adl_notional: str = "0"
    socialized: str = "0"
    collateral_sales: int = 0
    elapsed_s: float = 0.0


@dataclass
class StressReport:
    source: str
    accounts: int                       # accounts holding positions before the shocks
    open_interest: str                  # settlement asset, both sides' notional / 2
    fund: str
    leverage: dict[str, float]          # effective leverage (notional / equity): median, p90, max
    shocks: list[ShockResult] = field(default_factory=list)
    chart: str = ""
    elapsed_s: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


# ---- venue states ----------------------------------------------------------------------------

def population(accounts: int = 2_000, seed: int = 1, config: VenueConfig | None = None,
               fund: Decimal = Decimal("0.005"), depth: Decimal = Decimal("0.15")) -> Exchange:
    """An exchange holding `accounts` traders' positions, opened against market makers.

    Each trader has equity log-normal around 5,000 (heavy tail), a leverage from LEVERAGE_BANDS
    (within what its instrument's first tier allows), a position using 50-90% of it in BTC-PERP
    (60%) or ETH-PERP, long 55% of the time, its notional within the risk limit of its leverage;
    15% are margined by BTC collateral, a third of those with a loan at 40% LTV. The makers then
    rest a ladder of bids and offers every 0.25% out to 10% from the index, each side `depth` x
    the open interest, and the insurance fund holds `fund` x it. As many makers take part as keep
    each within its own risk limit (_Makers): any population is built within the venue's rules."""
    config = config or default_config()
    rng = random.Random(seed)
    ex = Exchange(config)
    settle = config.assets[config.settlement_asset]
    symbols = sorted(config.instruments)
    prices = {}
    for symbol in symbols:
        spec = config.instruments[symbol]
        prices[symbol] = spec.to_ticks(START_PRICES.get(spec.base, "100"))
        _ok(ex.submit(m.SetIndexPrice(source="index", symbol=symbol, price=prices[symbol])))
    makers = _Makers(ex, prices)
    btc = config.assets.get("BTC")
    btc_symbol = config.collateral_symbol("BTC") if btc and "BTC" in config.margin.haircuts else None
    for i in range(accounts):
        account = FIRST_TRADER + i
        symbol = symbols[0] if rng.random() < 0.6 or len(symbols) == 1 else symbols[1]
        spec = config.instruments[symbol]
        equity = min(max(rng.lognormvariate(math.log(5_000), 1.2), 200), 2_000_000)
        low, high = _band(rng)
        leverage = min(rng.randint(low, high), spec.tiers[0].max_leverage)
        _ok(ex.submit(m.CreateAccount(account=account)))
        if btc_symbol and rng.random() < 0.15:
            index = Decimal(prices[btc_symbol]) * config.instruments[btc_symbol].tick_size
            coins = (Decimal(str(equity)) / index).quantize(btc.unit)
            _ok(ex.submit(m.Deposit(account=account, asset="BTC", amount=btc.to_units(coins))))
            if rng.random() < 1 / 3:
                loan = settle.to_units((Decimal(str(equity)) * Decimal("0.4")).quantize(settle.unit))
                _ok(ex.submit(m.Borrow(account=account, asset=settle.name, amount=loan)))
        else:
            amount = settle.to_units(Decimal(str(equity)).quantize(settle.unit))
            _ok(ex.submit(m.Deposit(account=account, asset=settle.name, amount=amount)))
        _ok(ex.submit(m.SetLeverage(account=account, symbol=symbol, leverage=leverage)))
        view = ex.account(account)
        per_lot = prices[symbol] * config.units_per_ticklot(symbol)
        # the risk limit of the trader's own leverage (its tier), with room for fees
        cap = ex.margin.symbols[symbol].tiers.max_notional(leverage)
        notional = min(view.equity * leverage * rng.uniform(0.5, 0.9), cap * 0.95)
        lots = int(notional // per_lot)
        if lots < 1:
            continue
        side = m.Side.BUY if rng.random() < 0.55 else m.Side.SELL
        quotes = makers.quote(symbol, m.Side(1 - side), lots, prices[symbol])
        events = ex.submit(m.PlaceOrder(account=account, symbol=symbol, side=side, qty=lots,
                                        price=prices[symbol], tif=m.TimeInForce.IOC))
        if any(type(e) is m.OrderRejected for e in events):
            # the margin check refused it (fees at the limit): the makers' quotes go
            makers.withdraw(symbol, quotes)
    oi = _open_interest(ex)
    for symbol in symbols:
        side_units = int(oi[symbol] * depth)
        for k in range(1, 41):
            for side, sign in ((m.Side.BUY, -1), (m.Side.SELL, 1)):
                price = prices[symbol] * (10_000 + sign * 25 * k) // 10_000
                lots = side_units // 40 // (price * config.units_per_ticklot(symbol))
                if lots:
                    makers.rest(symbol, side, lots, price)
    amount = int(sum(oi.values()) * fund)
    if amount > 0:
        _ok(ex.submit(m.FundInsurance(asset=settle.name, amount=amount)))
    return ex


class _Makers:
    """The market makers of a generated population, each within its own risk limit.

    A maker trades at the leverage of its instruments' last tier (the largest position they
    admit) and keeps its position plus its resting orders on either side within MAKER_LIMIT of
    that tier's notional: a trader's position is taken by the makers with room, the most
    offsetting first, and a new maker joins when none has room. Makers are accounts 1 to
    MAX_MAKERS."""

    def __init__(self, ex: Exchange, prices: dict[str, int]):
        self.ex = ex
        self.ids: list[int] = []
        self.position: dict[tuple[int, str], int] = {}      # (maker, symbol) -> lots, signed
        self.resting: dict[tuple[int, str, int], int] = {}  # (maker, symbol, side) -> lots
        config = ex.config
        self.leverage = {s: spec.tiers[-1].max_leverage for s, spec in config.instruments.items()}
        # lots each maker may hold on a side: valued at the ladder's furthest price (10% out)
        self.limit = {s: int(ex.margin.symbols[s].tiers.max_notional(self.leverage[s])
                             * MAKER_LIMIT) // (prices[s] * 11 // 10 * config.units_per_ticklot(s))
                      for s in config.instruments}
        for _ in range(MAKERS):
            self._join()

    def _join(self) -> int:
        if len(self.ids) == MAX_MAKERS:
            raise RuntimeError(f"the population needs more than {MAX_MAKERS} market makers")
        maker = len(self.ids) + 1
        settle = self.ex.config.assets[self.ex.config.settlement_asset]
        _ok(self.ex.submit(m.CreateAccount(account=maker)))
        _ok(self.ex.submit(m.Deposit(account=maker, asset=settle.name,
                                     amount=settle.to_units(10**9))))
        for symbol, leverage in self.leverage.items():
            _ok(self.ex.submit(m.SetLeverage(account=maker, symbol=symbol, leverage=leverage)))
        self.ids.append(maker)
        return maker

    def room(self, maker: int, symbol: str, side: m.Side) -> int:
        """Lots the maker may still add on `side` in `symbol`."""
        size = self.position.get((maker, symbol), 0)
        exposure = (size if side == m.Side.BUY else -size) + self.resting.get(
            (maker, symbol, side), 0)
        return max(self.limit[symbol] - exposure, 0)

    def _share(self, symbol: str, side: m.Side, lots: int) -> list[tuple[int, int]]:
        """(maker, lots) taking `lots` on `side`: the makers with the most room first."""
        out = []
        while lots:
            maker = max(self.ids, key=lambda a: self.room(a, symbol, side))
            room = self.room(maker, symbol, side)
            if room == 0:
                maker = self._join()
                room = self.room(maker, symbol, side)
            take = min(room, lots)
            out.append((maker, take))
            self.resting[maker, symbol, side] = self.resting.get((maker, symbol, side), 0) + take
            lots -= take
        return out

    def quote(self, symbol: str, side: m.Side, lots: int, price: int) -> list[tuple[int, int]]:
        """Rests `lots` for a trader to take at once; the quotes are counted as filled."""
        quotes = self._share(symbol, side, lots)
        sign = 1 if side == m.Side.BUY else -1
        for maker, qty in quotes:
            _ok(self.ex.submit(m.PlaceOrder(account=maker, symbol=symbol, side=side, qty=qty,
                                            price=price)))
            self.resting[maker, symbol, side] -= qty
            self.position[maker, symbol] = self.position.get((maker, symbol), 0) + sign * qty
        return [(maker, sign * qty) for maker, qty in quotes]

    def withdraw(self, symbol: str, quotes: list[tuple[int, int]]) -> None:
        """The quotes a trader did not take: cancelled, the positions they counted undone."""
        for maker, signed in quotes:
            self.ex.submit(m.CancelAll(account=maker, symbol=symbol))
            self.position[maker, symbol] -= signed

    def rest(self, symbol: str, side: m.Side, lots: int, price: int) -> None:
        """A ladder order of `lots`, shared among the makers with room."""
        for maker, qty in self._share(symbol, side, lots):
            _ok(self.ex.submit(m.PlaceOrder(account=maker, symbol=symbol, side=side, qty=qty,
                                            price=price)))


def _band(rng: random.Random) -> tuple[int, int]:
    x = rng.random()
    for low, high, share in LEVERAGE_BANDS:
        if x < share:
            return low, high
        x -= share
    return LEVERAGE_BANDS[-1][:2]


def _ok(events: list) -> list:
    rejected = [e for e in events if type(e) is m.OrderRejected]
    if rejected:
        raise RuntimeError(f"the venue refused a set-up command: {rejected[0].reason}")
    return events


def from_simulation(steps: int = 20_000, seed: int = 7,
                    config: VenueConfig | None = None) -> Exchange:
    """The state a simulated session (perpcore simulate, without its crash) leaves."""
    from perpcore import simulate
    ex, _ = simulate.run(steps=steps, seed=seed, config=config, crash=False)
    return ex


def _open_interest(ex: Exchange) -> dict[str, int]:
    """Per symbol, the notional of the longs at the mark (minor units)."""
    out = {}
    for symbol, sr in ex.margin.symbols.items():
        mark = ex.mark_price(symbol) or 0
        out[symbol] = sum(p.size for p in sr.positions.values() if p.size > 0) * mark * sr.upt
    return out


def _leverage(ex: Exchange) -> tuple[int, dict[str, float]]:
    """(accounts with positions, their effective leverage: position notional / equity)."""
    levs = []
    for account in ex.accounts():
        view = ex.account(account)
        notional = sum(p.notional for p in view.positions)
        if notional:
            levs.append(notional / view.equity if view.equity > 0 else math.inf)
    levs.sort()
    if not levs:
        return 0, {"median": 0.0, "p90": 0.0, "max": 0.0}
    finite = [x for x in levs if x != math.inf] or [0.0]
    return len(levs), {"median": round(levs[len(levs) // 2], 2),
                       "p90": round(levs[int(len(levs) * 0.9)], 2), "max": round(max(finite), 2)}


# ---- shocks ----------------------------------------------------------------------------------

def shock_paths(low: int = -40, high: int = 40, step: int = 5, steps: int = 8,
                flash: int | None = -30) -> list[tuple[str, list[int]]]:
    """(name, path in basis points) per shock: each move reached in `steps` equal steps; the
    flash crash goes down in `steps` steps and back in as many."""
    out = []
    for pct in range(low, high + 1, step):
        if pct:
            out.append((f"{pct:+d}%", [pct * 100 * (i + 1) // steps for i in range(steps)]))
    if flash:
        down = [flash * 100 * (i + 1) // steps for i in range(steps)]
        out.append((f"flash {flash:+d}%", down + down[-2::-1] + [0]))
    return out


def apply_shock(config: VenueConfig, snapshot: bytes, name: str, path_bp: list[int]) -> ShockResult:
    """Restores the state and walks every index along the path; what the engine did."""
    started = time.perf_counter()
    ex = Exchange.restore(config, snapshot)
    settle = config.assets[config.settlement_asset]
    pricing = ex.components["pricing"]
    base = {s: ex.index_price(s) for s in ex.markets if ex.index_price(s) is not None}
    sources = {s: sorted(pricing.symbols[s].quotes) or ["index"] for s in base}
    result = ShockResult(name=name, path_bp=list(path_bp))
    fund = ex.insurance_fund(settle.name)
    lowest = fund
    result.fund_start = str(settle.from_units(fund))
    liquidated = set()
    closed = {s: 0 for s in ex.markets}
    closed_units = adl_units = socialized = 0
    t = ex.clock
    for bp in path_bp:
        t += STEP_NS
        for symbol in sorted(base):
            price = max(1, base[symbol] * (10_000 + bp) // 10_000)
            for source in sources[symbol]:
                for e in ex.submit(m.SetIndexPrice(source=source, symbol=symbol, price=price,
                                                   ts=t)):
                    kind = type(e)
                    if kind is m.LiquidationStarted:
                        liquidated.add(e.account)
                        result.liquidations += 1
                    elif kind is m.PositionLiquidated:
                        upt = ex.markets[e.symbol].units_per_ticklot
                        result.steps += 1
                        closed[e.symbol] += e.book_qty + e.fund_qty
                        closed_units += (e.book_value + e.fund_value) * upt
                    elif kind is m.AutoDeleveraged:
                        result.adl_count += 1
                        adl_units += e.qty * e.price * ex.markets[e.symbol].units_per_ticklot
                    elif kind is m.InsuranceFundChanged and e.asset == settle.name:
                        lowest = min(lowest, e.balance)
                    elif kind is m.SocializedLoss:
                        socialized += e.amount
                    elif kind is m.CollateralConverted:
                        result.collateral_sales += 1
    result.liquidated = len(liquidated)
    result.closed_lots = closed
    result.closed_notional = str(settle.from_units(closed_units))
    result.fund_end = str(settle.from_units(ex.insurance_fund(settle.name)))
    result.fund_drawdown = str(settle.from_units(fund - lowest))
    result.adl_notional = str(settle.from_units(adl_units))
    result.socialized = str(settle.from_units(socialized))
    ex.audit().check()                  # a stress run that breaks the books is a bug, not a figure
    result.elapsed_s = time.perf_counter() - started
    return result


def run(ex: Exchange, source: str, paths: list[tuple[str, list[int]]] | None = None,
        progress=None) -> StressReport:
    started = time.perf_counter()
    config = ex.config
    settle = config.assets[config.settlement_asset]
    snapshot = ex.snapshot()
    holders, leverage = _leverage(ex)
    report = StressReport(
        source=source, accounts=holders,
        open_interest=str(settle.from_units(sum(_open_interest(ex).values()))),
        fund=str(settle.from_units(ex.insurance_fund(settle.name))), leverage=leverage)
    for name, path in paths if paths is not None else shock_paths():
        if progress is not None:
            progress(name)
        report.shocks.append(apply_shock(config, snapshot, name, path))
    report.elapsed_s = time.perf_counter() - started
    return report


# ---- output ----------------------------------------------------------------------------------

def render(report: StressReport, console) -> None:
    from rich.table import Table
    table = Table(title=f"perpcore stress — {report.source}")
    for column in ("shock", "liquidated", "volume closed", "fund drawdown", "fund after",
                   "ADL", "ADL notional", "socialised", "collateral sales"):
        table.add_column(column, justify="left" if column == "shock" else "right")
    for r in report.shocks:
        table.add_row(r.name, f"{r.liquidated:,}", _money(r.closed_notional),
                      _money(r.fund_drawdown), _money(r.fund_end), f"{r.adl_count:,}",
                      _money(r.adl_notional), _money(r.socialized), f"{r.collateral_sales:,}")
    console.print(table)
    lev = report.leverage
    console.print(f"{report.accounts:,} accounts with positions · open interest "
                  f"{_money(report.open_interest)} · insurance fund {_money(report.fund)} · "
                  f"effective leverage median {lev['median']}x, p90 {lev['p90']}x, "
                  f"max {lev['max']}x · {report.elapsed_s:.1f} s")


def _money(text: str) -> str:
    return f"{Decimal(text):,.2f}"


def plot(report: StressReport, path: Path) -> Path:
    """A PNG of the report: four panels, one bar per shock."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in report.shocks]
    x = range(len(names))
    fig, axes = plt.subplots(2, 2, figsize=(13, 8), sharex=True)
    panels = (
        (axes[0][0], [r.liquidated for r in report.shocks], "accounts liquidated", "tab:red"),
        (axes[0][1], [float(r.closed_notional) for r in report.shocks],
         "volume closed in the book", "tab:blue"),
        (axes[1][0], [float(r.fund_drawdown) for r in report.shocks],
         "insurance fund drawdown", "tab:orange"),
        (axes[1][1], [r.adl_count for r in report.shocks], "auto-deleveraged positions",
         "tab:purple"),
    )
    for ax, values, title, colour in panels:
        ax.bar(x, values, color=colour)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    social = [float(r.socialized) for r in report.shocks]
    if any(social):
        twin = axes[1][1].twinx()
        twin.plot(list(x), social, color="black", marker="o", label="socialised loss")
        twin.set_ylabel("socialised loss")
        twin.legend(loc="upper right")
    for ax in axes[1]:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=60, ha="right")
    fig.suptitle(f"perpcore stress — {report.source}\nopen interest {_money(report.open_interest)}"
                 f", fund {_money(report.fund)}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
