"""The same command stream under several venues' rules, side by side.

A flow is a command stream written on a reference venue (its integers are that venue's ticks, lots
and minor units): a seeded simulated session (perpcore.simulate) or a stress path (a generated
population of positions, then one shock of perpcore.stress) on the built-in venue, or the commands
of a journal on the venue it was written under. Every venue in the comparison is fed the same
commands, in the same order, re-expressed on its own grid (Translator):

- a symbol becomes the venue's instrument of the same base asset (BTC-PERP -> BTCUSDT, XBTUSDT,
  BTC-USD, BTC); one the venue does not list stays as it is, and is refused;
- a price is the same Decimal price rounded to the venue's tick: a limit buy down and a limit sell
  up (never more aggressive than the reference order), an index or trigger price or an amended one
  half to even; a quantity is rounded down to the venue's lot (the presets' lots divide the
  built-in venue's, so a simulated or stress flow's quantities are exact);
- the reference's settlement asset becomes the venue's (USD, USDT and USDC counted at par), other
  assets keep their names and are refused where the venue does not hold them (dYdX and Hyperliquid
  take only USDC); amounts are rounded down to the venue's minor unit;
- accounts, times, leverage, order types and ids are kept (an id means the same order as long as
  the venues accepted the same orders before it).

Simulated and stress flows end with the clock running eight hours, the index held where it last
stood (refreshed a second before each hour), so that every venue settles funding: eight hourly
settlements on dYdX and Hyperliquid, one on the 8-hour venues. A journal is replayed as it is.

Per venue: commands refused, trades, liquidations (accounts, engine steps, notional closed), the
insurance fund (lowest once funded, end, paid in and out, and its path sampled at FUND_POINTS evenly
spaced commands of the flow from its watched part on: a stress flow's shock, not the set-up that
builds the population), auto-deleveraging (positions and notional), funding (paid, received,
the rounding remainder to the fund, settlements), socialised loss, fees, the audit and the state
hash. Money is in each venue's settlement asset. A result is a pure function of (flow, venue): no
wall clock in it, the same flow gives the same JSON; venues may run as tasks on a perpcore.fanout
pool.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from pathlib import Path

import msgspec

from perpcore import fanout
from perpcore import messages as m
from perpcore.config import DECIMAL, HOUR_NS, VenueConfig, default_config
from perpcore.exchange import Exchange
from perpcore.venues import venue

FUND_POINTS = 200                       # samples of the insurance fund's path per venue
FUNDING_HOURS = 8                       # the funding tail of simulated and stress flows
SECOND = 1_000_000_000
PRESETS = ("binance_usdm", "bitmex", "dydx_v4", "hyperliquid")


@dataclass
class Flow:
    """A command stream on a reference venue: what every venue of a comparison is fed."""
    source: str                         # what it is, in words
    reference: VenueConfig
    commands: list
    watched_from: int = 0               # the first command the fund's path follows (the set-up
    #                                     before it only builds the state)


# ---- flows ----------------------------------------------------------------------------------

def simulated(steps: int = 100_000, seed: int = 7, reference: VenueConfig | None = None) -> Flow:
    """The seeded session of `perpcore simulate` (its crash included) on the reference venue (the
    built-in one by default), then the funding tail."""
    from perpcore.simulate import Session

    reference = reference or default_config()
    session = Session(reference, seed, steps=steps)
    commands = session.setup() + [session.step() for _ in range(steps)]
    return Flow(f"simulated session, {steps:,} steps, seed {seed}", reference,
                commands + funding_tail(reference, commands))


class _Recorder(Exchange):
    """An exchange that keeps every command submitted to it."""

    def __init__(self, config: VenueConfig):
        super().__init__(config)
        self.commands: list = []

    def submit(self, cmd, seq=None):
        self.commands.append(cmd)
        return super().submit(cmd, seq)


def stressed(accounts: int = 500, seed: int = 1, shock: int = -30, flash: bool = False,
             path_steps: int = 8, reference: VenueConfig | None = None) -> Flow:
    """perpcore stress's generated population built on the reference venue, then one shock of
    `shock` percent reached in `path_steps` steps (with flash, down and back up again), then the
    funding tail."""
    from perpcore import stress

    reference = reference or default_config()
    recorder = _Recorder(reference)
    stress.population(accounts=accounts, seed=seed, config=reference, exchange=recorder)
    [(name, path)] = stress.shock_paths(0 if flash else shock, 0 if flash else shock, 1,
                                        path_steps, shock if flash else None)
    commands = recorder.commands + stress.shock_commands(recorder, path)
    return Flow(f"stress path: population of {accounts:,} accounts, seed {seed}, shock {name} "
                f"in {path_steps} steps", reference, commands + funding_tail(reference, commands),
                watched_from=len(recorder.commands))


def journaled(path: str | Path, reference: VenueConfig | None = None) -> Flow:
    """The commands of a journal (a segment file, or a store directory whose journal starts at
    its first command) written under `reference` (the built-in venue by default)."""
    from perpcore import journal as jr
    from perpcore import snapshot as sn
    from perpcore.exchange import config_digest

    reference = reference or default_config()
    path = Path(path)
    digest = config_digest(reference)
    segments = sn.check_segments(path, digest) if path.is_dir() else [jr.Segment.open(path)]
    if not segments:
        raise jr.JournalError(f"{path}: no journal segments")
    if segments[0].header.digest != digest:
        raise jr.JournalError(f"{path}: written under another venue config than the reference "
                              f"(give the journal's own)")
    if segments[0].header.first_seq != 1:
        raise jr.JournalError(f"{path}: the journal starts at command "
                              f"{segments[0].header.first_seq}; a comparison replays it from "
                              f"its first")
    commands = [cmd for seg in segments for cmd in seg.commands()]
    return Flow(f"journal {path.name}, {len(commands):,} commands", reference, commands)


def funding_tail(reference: VenueConfig, commands: list) -> list:
    """FUNDING_HOURS hours after the flow's last time, the index of each symbol held at its last
    price (from its last source) and refreshed a second before each hour, the clock advanced to
    each hour; then enough 1 ms steps for the last settlement's sweep to pay every account."""
    clock, last = 0, {}
    for cmd in commands:
        clock = max(clock, cmd.ts)
        if type(cmd) is m.SetIndexPrice:
            last[cmd.symbol] = cmd
    accounts = sum(type(cmd) is m.CreateAccount for cmd in commands)
    tail = []
    first = clock // HOUR_NS + 1
    for hour in range(first, first + FUNDING_HOURS):
        t = hour * HOUR_NS
        tail += [msgspec.structs.replace(last[s], ts=t - SECOND) for s in sorted(last)]
        tail.append(m.AdvanceClock(ts=t))
    # each symbol's sweep visits every account twice (payers, then receivers), so many a command
    visits = 2 * len(reference.instruments) * accounts
    sweeps = visits // reference.limits.funding_accounts_per_command + 1
    tail += [m.AdvanceClock(ts=t + k * 1_000_000) for k in range(1, sweeps + 1)]
    return tail


# ---- one venue ------------------------------------------------------------------------------

class Translator:
    """A reference venue's command re-expressed on another venue's grid (the module's rules)."""

    def __init__(self, reference: VenueConfig, config: VenueConfig):
        self.reference, self.config = reference, config
        self.symbols = {}
        for symbol, spec in reference.instruments.items():
            try:        # the instrument whose base it is (as collateral is valued)
                self.symbols[symbol] = config.collateral_symbol(spec.base)
            except ValueError:
                self.symbols[symbol] = symbol

    def __call__(self, cmd):
        kind = type(cmd)
        symbol = getattr(cmd, "symbol", "")
        changes = {}
        if symbol in self.symbols:
            changes["symbol"] = self.symbols[symbol]
            if self.symbols[symbol] in self.config.instruments:
                if kind is m.PlaceOrder:
                    changes["price"] = self.price(symbol, cmd.price, ROUND_FLOOR
                                                  if cmd.side == m.Side.BUY else ROUND_CEILING)
                    changes["trigger_price"] = self.price(symbol, cmd.trigger_price)
                elif kind in (m.AmendOrder, m.SetIndexPrice):
                    changes["price"] = self.price(symbol, cmd.price)
                if kind in (m.PlaceOrder, m.AmendOrder):
                    changes["qty"] = self.qty(symbol, cmd.qty)
        if hasattr(cmd, "asset"):
            changes["asset"], changes["amount"] = self.money(cmd.asset, cmd.amount)
        return msgspec.structs.replace(cmd, **changes) if changes else cmd

    def price(self, symbol: str, ticks: int, rounding: str = ROUND_HALF_EVEN) -> int:
        if not ticks:
            return 0
        value = self.reference.instruments[symbol].from_ticks(ticks)
        spec = self.config.instruments[self.symbols[symbol]]
        return max(1, int(DECIMAL.divide(value, spec.tick_size).to_integral_value(rounding)))

    def qty(self, symbol: str, lots: int) -> int:
        value = self.reference.instruments[symbol].from_lots(lots)
        spec = self.config.instruments[self.symbols[symbol]]
        return int(DECIMAL.divide(value, spec.lot_size).to_integral_value(ROUND_FLOOR))

    def money(self, asset: str, amount: int) -> tuple[str, int]:
        if asset == self.reference.settlement_asset:
            target = self.config.settlement_asset
        else:
            target = asset
        if asset not in self.reference.assets or target not in self.config.assets:
            return target, amount
        value = self.reference.assets[asset].from_units(amount)
        unit = self.config.assets[target].unit
        return target, int(DECIMAL.divide(value, unit).to_integral_value(ROUND_FLOOR))


@dataclass
class VenueResult:
    """What one venue did with the flow; money in its settlement asset as Decimal text."""
    venue: str
    currency: str
    symbols: dict[str, str]             # reference symbol -> the venue's
    rejected: int = 0                   # OrderRejected events
    trades: int = 0
    traded_notional: str = "0"
    liquidated_accounts: int = 0
    liquidations: int = 0               # LiquidationStarted
    liquidation_steps: int = 0          # PositionLiquidated
    liquidated_notional: str = "0"      # closed in the book and by the fund
    fund_low: str = "0"                 # the lowest balance once first funded
    fund_end: str = "0"
    fund_paid_in: str = "0"
    fund_paid_out: str = "0"
    fund_path: list[str] = field(default_factory=list)     # at fund_points(): FUND_POINTS commands
    adl_count: int = 0                  # AutoDeleveraged
    adl_notional: str = "0"
    funding_settlements: int = 0        # FundingSettled
    funding_paid: str = "0"             # by the payers
    funding_received: str = "0"         # by the receivers
    funding_to_fund: str = "0"          # the rounding remainders
    socialized: str = "0"
    fees: str = "0"                     # the fee account at the end
    audit_ok: bool = False
    state_hash: str = ""


def run_venue(flow: Flow, name: str) -> VenueResult:
    """The flow under the preset `name` (perpcore.venues): a fanout task."""
    from perpcore.simulate import Tally

    config = venue(name)
    translate = Translator(flow.reference, config)
    settle = config.settlement_asset
    ex = Exchange(config)
    tally = Tally(settle)
    points = fund_points(flow.watched_from, len(flow.commands))
    samples = {point - 1 for point in points}
    fund_after: dict[int, int] = {}     # command index -> the fund after it
    for i, cmd in enumerate(flow.commands):
        tally.add(ex.submit(translate(cmd)))
        if i in samples:
            fund_after[i] = ex.insurance_fund(settle)

    def value(per_symbol: dict[str, int]) -> int:      # ticks x lots -> minor units
        return sum(v * config.units_per_ticklot(s) for s, v in per_symbol.items())
    audit = ex.audit()
    money = text(config, {
        "traded_notional": value(tally.traded),
        "liquidated_notional": value(tally.liquidated_value),
        "fund_low": tally.fund_low or 0, "fund_end": ex.insurance_fund(settle),
        "fund_paid_in": tally.fund_in, "fund_paid_out": tally.fund_out,
        "adl_notional": value(tally.adl_value), "funding_paid": tally.funding_paid,
        "funding_received": tally.funding_received, "funding_to_fund": tally.funding_remainder,
        "socialized": tally.socialized, "fees": audit[settle].fee_account})
    return VenueResult(
        venue=name, currency=settle, symbols=dict(translate.symbols), rejected=tally.rejected,
        trades=tally.trades, liquidated_accounts=len(tally.liquidated),
        liquidations=tally.liquidations, liquidation_steps=tally.liquidation_steps,
        adl_count=tally.adl, funding_settlements=tally.settlements,
        fund_path=[str(config.assets[settle].from_units(fund_after[point - 1]))
                   for point in points],
        audit_ok=audit.ok,
        state_hash=ex.state_hash(), **money)


def fund_points(start: int, end: int) -> list[int]:
    """The commands of the flow (counted from 1) after which the fund's path is sampled:
    FUND_POINTS of them evenly spaced over (start, end]."""
    return [start + (k + 1) * (end - start) // FUND_POINTS for k in range(FUND_POINTS)]


def text(config: VenueConfig, amounts: dict) -> dict[str, str]:
    """Minor units of the settlement asset as Decimal text, by name."""
    asset = config.assets[config.settlement_asset]
    return {name: str(asset.from_units(v)) for name, v in amounts.items()}


# ---- the comparison -------------------------------------------------------------------------

@dataclass
class Comparison:
    source: str
    commands: int                       # in the flow, the same for every venue
    venues: list[VenueResult]
    watched_from: int = 0               # the flow's: where the fund's path starts
    ran_on: str = ""                    # where the venues ran (perpcore.fanout): not in the JSON

    def to_json(self) -> dict:
        return {"source": self.source, "commands": self.commands,
                "fund_points": fund_points(self.watched_from, self.commands),
                "venues": [asdict(r) for r in self.venues]}


def compare(flow: Flow, names=PRESETS, pool=None, progress=None) -> Comparison:
    """The flow under each named preset: a task each on `pool` (in this process by default), the
    results in the order of `names`."""
    for name in names:
        venue(name)                 # an unknown name fails here, before any venue runs
    pool = pool or fanout.Sequential()
    done = pool.map(run_venue, [(name,) for name in names], shared=(flow,), progress=progress)
    return Comparison(flow.source, len(flow.commands), [d.result for d in done],
                      flow.watched_from, ran_on=pool.description)


def parse_names(text: str) -> list[str]:
    """A comma-separated list of preset names, each once; ValueError naming the presets."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("no venue named")
    for name in names:
        venue(name)
    if len(set(names)) != len(names):
        raise ValueError(f"a venue is named twice in {text!r}")
    return names


# ---- output ---------------------------------------------------------------------------------

ROWS = (  # (label, attribute): one row of the table per figure
    ("currency", "currency"), ("symbols", "symbols"), ("refused", "rejected"),
    ("trades", "trades"), ("traded notional", "traded_notional"),
    ("accounts liquidated", "liquidated_accounts"), ("liquidations", "liquidations"),
    ("liquidation steps", "liquidation_steps"), ("notional liquidated", "liquidated_notional"),
    ("insurance fund low", "fund_low"),
    ("insurance fund end", "fund_end"), ("fund paid in", "fund_paid_in"),
    ("fund paid out", "fund_paid_out"), ("ADL positions", "adl_count"),
    ("ADL notional", "adl_notional"), ("funding settlements (per symbol)", "funding_settlements"),
    ("funding paid", "funding_paid"), ("funding received", "funding_received"),
    ("funding remainder to fund", "funding_to_fund"), ("socialised loss", "socialized"),
    ("fees", "fees"), ("audit", "audit_ok"),
)


def _cell(value) -> str:
    if isinstance(value, bool):
        return "balanced" if value else "BROKEN"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(value.values())
    return f"{DECIMAL.quantize(Decimal(value), Decimal('0.01')):,.2f}"


def render(comparison: Comparison, console) -> None:
    """The comparison as one table: a row per figure, a column per venue."""
    from rich.table import Table

    table = Table(title=f"perpcore compare — {comparison.source} "
                        f"({comparison.commands:,} commands)")
    table.add_column("")
    for r in comparison.venues:
        table.add_column(r.venue, justify="right")
    for label, attr in ROWS:
        table.add_row(label, *(_cell(getattr(r, attr)) if attr != "currency"
                               else r.currency for r in comparison.venues))
    console.print(table)
    console.print("money in each venue's settlement asset (USD, USDT, USDC at par); the same "
                  "commands, re-expressed on each venue's tick and lot grid")


def plot(comparison: Comparison, path: Path) -> Path:
    """One PNG: the insurance fund's path per venue through the flow; per venue the accounts
    liquidated and the positions auto-deleveraged; per venue the funding paid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import StrMethodFormatter

    venues = comparison.venues
    money = "settlement asset (USD, USDT, USDC at par)"
    fig, (path_ax, count_ax, funding_ax) = plt.subplots(
        1, 3, figsize=(17, 6), gridspec_kw={"width_ratios": (3, 2, 1.5)})
    x = fund_points(comparison.watched_from, comparison.commands)
    for r in venues:
        path_ax.plot(x[:len(r.fund_path)], [float(v) for v in r.fund_path], label=r.venue,
                     drawstyle="steps-post")
    start = comparison.watched_from
    path_ax.set_title(f"insurance fund from command {start + 1:,} (set-up before)" if start
                      else "insurance fund through the flow")
    path_ax.set_xlabel("command of the flow")
    path_ax.set_ylabel(money)
    path_ax.legend(fontsize=8)
    names = range(len(venues))
    width = 0.4
    count_ax.bar([i - width / 2 for i in names], [r.liquidated_accounts for r in venues], width,
                 label="accounts liquidated", color="tab:red")
    count_ax.bar([i + width / 2 for i in names], [r.adl_count for r in venues], width,
                 label="positions auto-deleveraged", color="tab:purple")
    count_ax.set_title("liquidations and auto-deleveraging")
    count_ax.set_ylabel("accounts / positions")
    count_ax.legend(fontsize=8)
    funding_ax.bar(names, [float(r.funding_paid) for r in venues], color="tab:green")
    for i, r in zip(names, venues):
        if not Decimal(r.funding_paid):     # an empty slot would read as missing data
            funding_ax.annotate("none", (i, 0), ha="center", va="bottom")
    funding_ax.set_title("funding paid")
    funding_ax.set_ylabel(money)
    for ax in (path_ax, count_ax, funding_ax):
        ax.grid(axis="y", alpha=0.3)
        if ax is not path_ax:
            ax.set_xticks(list(names))
            ax.set_xticklabels([r.venue for r in venues], rotation=20)
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    fig.suptitle(f"perpcore compare — {comparison.source}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
