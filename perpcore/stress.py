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

from perpcore import fanout
from perpcore import messages as m
from perpcore.config import DECIMAL, RATE_SCALE, VenueConfig, default_config, rate_to_decimal
from perpcore.exchange import Exchange

START_PRICES = {"BTC": "65000", "ETH": "3400"}
STEP_NS = 1_000_000_000                 # one second between the steps of a shock
# leverage a population uses: (low, high, share), drawn uniformly inside a band; most retail-sized
# accounts sit at a few times, a tail at the venue's limits (the shape venues publish)
LEVERAGE_BANDS = ((1, 3, 0.30), (3, 10, 0.35), (10, 25, 0.25), (25, 50, 0.08), (50, 100, 0.02))
MAKERS = 10                             # market makers to begin with; more join as needed
MAX_MAKERS = 999                        # accounts 1-999; the traders are 1,000 on
MAKER_LIMIT = 80                        # percent of its risk limit a maker may use
FIRST_TRADER = 1_000
CENT = Decimal("0.01")


@dataclass
class ShockResult:
    """What one shock did; money in the settlement asset as Decimal text.

    The loss waterfall: a liquidated position is closed in the book at its bankruptcy price or
    better (book_notional), the surplus of those fills going to the insurance fund up to the
    liquidation fee (surplus_to_fund); what the book cannot absorb the fund takes over and sells,
    paying the difference to bankruptcy (fund_notional, fund_covered); what neither absorbs is
    auto-deleveraged at the bankruptcy price (adl_notional: the opposite positions give up
    adl_forgone, their profit between the bankruptcy price and the mark); a deficit nobody covers
    is socialised. adl_causes counts the deleveraging steps by the rule that sent them there, and
    explanation says it in words."""
    name: str
    path_bp: list[int]                  # each step's move from the start, basis points
    liquidated: int = 0                 # accounts liquidated (any reason)
    liquidations: int = 0               # LiquidationStarted events
    steps: int = 0                      # PositionLiquidated events
    closed_lots: dict[str, int] = field(default_factory=dict)
    closed_notional: str = "0"          # book fills and the fund's takeovers
    fund_start: str = "0"
    fund_end: str = "0"
    fund_drawdown: str = "0"            # start less the lowest balance on the way
    adl_count: int = 0                  # AutoDeleveraged events
    adl_notional: str = "0"
    socialized: str = "0"
    collateral_sales: int = 0           # CollateralConverted (loans) and CollateralExchanged
    #                                     (multi-assets mode's auto-exchange) events
    elapsed_s: float = 0.0              # the shock's wall time, set by run() beside its result
    book_notional: str = "0"
    surplus_to_fund: str = "0"          # liquidation fees out of fills better than bankruptcy
    penalties_to_fund: str = "0"        # forced collateral sales' penalties
    fund_notional: str = "0"
    fund_covered: str = "0"             # takeover losses and deficits the fund paid
    adl_forgone: str = "0"
    adl_causes: dict[str, int] = field(default_factory=dict)
    book_exhausted: list[str] = field(default_factory=list)   # "BTC-PERP bids": emptied
    explanation: str = ""
    state_hash: str = ""                # the exchange's after the shock


# Why a liquidation step went on to deleveraging (the liquidation engine's steps 2-4)
ADL_CAUSES = {
    "band": "its bankruptcy price lay beyond the {band} market-protection band around the mark, "
            "where neither the book nor the fund may trade",
    "book": "the book held no more orders between its bankruptcy price and {band} from the mark",
    "fund": "the insurance fund could not carry a larger loss",
}


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
    currency: str = "USD"               # the settlement asset every amount is in
    page: str = ""                      # the HTML page
    ran_on: str = ""                    # where the shocks ran (perpcore.fanout)

    def to_json(self) -> dict:
        return asdict(self)


# ---- venue states ----------------------------------------------------------------------------

def population(accounts: int = 2_000, seed: int = 1, config: VenueConfig | None = None,
               fund: Decimal = Decimal("0.005"), depth: Decimal = Decimal("0.15"),
               exchange: Exchange | None = None) -> Exchange:
    """An exchange holding `accounts` traders' positions, opened against market makers.

    Each trader has equity log-normal around 5,000 (heavy tail), a leverage from LEVERAGE_BANDS
    (within what its instrument's first tier allows), a position using 50-90% of it in BTC-PERP
    (60%) or ETH-PERP, long 55% of the time, its notional within the risk limit of its leverage;
    15% are margined by BTC collateral, a third of those with a loan at 40% LTV. The makers then
    rest a ladder of bids and offers every 0.25% out to 10% from the index, each side `depth` x
    the open interest, and the insurance fund holds `fund` x it. As many makers take part as keep
    each within its own risk limit (_Makers): any population is built within the venue's rules.
    It is built in `exchange` when given (an empty one of `config`: perpcore.compare's records
    the commands), else in a new one."""
    config = config or default_config()
    rng = random.Random(seed)
    ex = exchange if exchange is not None else Exchange(config)
    settle = config.assets[config.settlement_asset]
    symbols = sorted(config.instruments)
    prices = {}
    for symbol in symbols:
        spec = config.instruments[symbol]
        prices[symbol] = spec.to_ticks(START_PRICES.get(spec.base, "100"))
        _ok(ex.submit(m.SetIndexPrice(source="index", symbol=symbol, price=prices[symbol])))
    makers = _Makers(ex, prices)
    btc = config.assets.get("BTC")
    btc_symbol = (config.collateral_symbol("BTC") if btc and "BTC" in config.margin.haircuts
                  else None)
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
            coins = DECIMAL.quantize(DECIMAL.divide(Decimal(str(equity)), index), btc.unit)
            _ok(ex.submit(m.Deposit(account=account, asset="BTC", amount=btc.to_units(coins))))
            if rng.random() < 1 / 3:
                loan = settle.to_units((Decimal(str(equity)) * Decimal("0.4"))
                                       .quantize(settle.unit))
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
        self.limit = {s: ex.margin.symbols[s].tiers.max_notional(self.leverage[s]) * MAKER_LIMIT
                      // 100 // (prices[s] * 11 // 10 * config.units_per_ticklot(s))
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
    """Restores the state and walks every index along the path; what the engine did. A pure
    function of its arguments: the task `run` maps the shocks on (perpcore.fanout)."""
    ex = Exchange.restore(config, snapshot)
    settle = config.assets[config.settlement_asset]
    result = ShockResult(name=name, path_bp=list(path_bp))
    fund = ex.insurance_fund(settle.name)
    lowest = balance = fund
    result.fund_start = str(settle.from_units(fund))
    liquidated = set()
    closed = {s: 0 for s in ex.markets}
    sold_into: set[tuple[str, m.Side]] = set()     # the book sides liquidations traded against
    money = dict.fromkeys(("closed", "book", "fund", "adl", "forgone", "social", "surplus",
                           "penalties", "covered"), 0)
    causes = dict.fromkeys(ADL_CAUSES, 0)
    for move in shock_commands(ex, path_bp):
        for e in ex.submit(move):
            kind = type(e)
            if kind is m.LiquidationStarted:
                liquidated.add(e.account)
                result.liquidations += 1
            elif kind is m.PositionLiquidated:
                upt = ex.markets[e.symbol].units_per_ticklot
                result.steps += 1
                closed[e.symbol] += e.book_qty + e.fund_qty
                money["closed"] += (e.book_value + e.fund_value) * upt
                money["book"] += e.book_value * upt
                money["fund"] += e.fund_value * upt
                sold_into.add((e.symbol, m.Side(1 - e.side)))
                if e.adl_qty:
                    money["forgone"] += e.adl_qty * abs(e.mark_price - e.bankruptcy_price) * upt
                    # the fund's balance when it took over: before this step's cover
                    cover = e.fee - e.fund_delta
                    causes[_adl_cause(config, e, balance + cover, upt)] += 1
            elif kind is m.AutoDeleveraged:
                result.adl_count += 1
                money["adl"] += e.qty * e.price * ex.markets[e.symbol].units_per_ticklot
            elif kind is m.InsuranceFundChanged and e.asset == settle.name:
                balance = e.balance
                lowest = min(lowest, e.balance)
                if e.reason == m.FundReason.LIQUIDATION_FEE:
                    money["surplus"] += e.delta
                elif e.reason == m.FundReason.COLLATERAL_PENALTY:
                    money["penalties"] += e.delta
                elif e.reason in (m.FundReason.LOSS_COVERED, m.FundReason.DEFICIT_COVERED):
                    money["covered"] -= e.delta
            elif kind is m.SocializedLoss:
                money["social"] += e.amount
            elif kind is m.CollateralConverted or kind is m.CollateralExchanged:
                result.collateral_sales += 1
    result.liquidated = len(liquidated)
    result.closed_lots = closed
    text = {k: str(settle.from_units(v)) for k, v in money.items()}
    result.closed_notional, result.book_notional = text["closed"], text["book"]
    result.fund_notional, result.fund_covered = text["fund"], text["covered"]
    result.surplus_to_fund, result.penalties_to_fund = text["surplus"], text["penalties"]
    result.adl_notional, result.adl_forgone = text["adl"], text["forgone"]
    result.socialized = text["social"]
    result.fund_end = str(settle.from_units(ex.insurance_fund(settle.name)))
    result.fund_drawdown = str(settle.from_units(fund - lowest))
    result.adl_causes = {k: v for k, v in causes.items() if v}
    # no fresh liquidity arrives during a shock: a side emptied stays empty
    result.book_exhausted = [f"{symbol} {'bids' if side == m.Side.BUY else 'offers'}"
                             for symbol, side in sorted(sold_into)
                             if not ex.book(symbol).depth(1)[0 if side == m.Side.BUY else 1]]
    result.explanation = explain(result, config)
    ex.audit().check()                  # a stress run that breaks the books is a bug, not a figure
    result.state_hash = ex.state_hash()
    return result


def shock_commands(ex: Exchange, path_bp: list[int]) -> list[m.SetIndexPrice]:
    """A shock path as commands, from the state `ex` holds: at each step (STEP_NS apart) every
    index, from each of its sources, `bp` basis points from where it stands now."""
    pricing = ex.components["pricing"]
    base = {s: ex.index_price(s) for s in ex.markets if ex.index_price(s) is not None}
    sources = {s: sorted(pricing.symbols[s].quotes) or ["index"] for s in base}
    moves, t = [], ex.clock
    for bp in path_bp:
        t += STEP_NS
        for symbol in sorted(base):
            price = max(1, base[symbol] * (10_000 + bp) // 10_000)
            moves += [m.SetIndexPrice(source=source, symbol=symbol, price=price, ts=t)
                      for source in sources[symbol]]
    return moves


def _adl_cause(config: VenueConfig, e: m.PositionLiquidated, fund: int, upt: int) -> str:
    """Which limit stopped the fund's takeover of a step that went on to deleveraging: the
    market-protection band around the mark, the book (nothing left inside the band), or the
    fund's balance (the price down to which it can carry the loss)."""
    band = config.instruments[e.symbol].market_protection
    rest = e.qty - e.book_qty
    can = fund // (rest * upt) if rest else 0            # ticks of loss the fund can carry
    limit, mark = e.bankruptcy_price, e.mark_price
    if e.side == m.Side.SELL:                            # a long sold down
        edge = -(-mark * (RATE_SCALE - band) // RATE_SCALE)
        beyond, fund_binds = edge >= limit, limit - can >= edge
    else:
        edge = mark * (RATE_SCALE + band) // RATE_SCALE
        beyond, fund_binds = edge <= limit, limit + can <= edge
    return "band" if beyond else "fund" if fund_binds else "book"


ADL_CAUSES_SHORT = {"band": "bankruptcy beyond the band", "book": "book empty within the band",
                    "fund": "fund could not cover"}


def why(r: ShockResult) -> str:
    """The explanation in a few words, for a terminal's table."""
    if not r.steps and not r.collateral_sales:
        return "no liquidation"
    out = ["book ran out"] if r.book_exhausted else []
    out += [f"ADL ×{n:,}: {ADL_CAUSES_SHORT[c]}" for c, n in r.adl_causes.items()]
    if r.adl_count and not Decimal(r.fund_drawdown):
        out.append("fund never fell")
    if Decimal(r.fund_end) > Decimal(r.fund_start):
        out.append("fund grew: fees > losses covered")
    if Decimal(r.socialized):
        out.append("deficits beyond fund and ADL")
    return "; ".join(out) or "book and fund absorbed it"


def explain(r: ShockResult, config: VenueConfig) -> str:
    """The rules that sent the shock's losses where they went, in a few clauses."""
    if not r.steps and not r.collateral_sales:
        return "nobody reached maintenance margin: no liquidation"
    band = f"{rate_to_decimal(min(s.market_protection for s in config.instruments.values())):%}"
    band = band.replace(".000000%", "%")
    d = {k: Decimal(getattr(r, k)) for k in (
        "book_notional", "surplus_to_fund", "penalties_to_fund", "fund_notional", "fund_covered",
        "adl_notional", "socialized", "fund_drawdown", "fund_start", "fund_end")}
    out = [f"{r.liquidated:,} accounts at or below maintenance at the mark"]
    if d["book_notional"]:
        out.append(f"the book took {_money(r.book_notional)} at bankruptcy or better, its "
                   f"surplus paying {_money(r.surplus_to_fund)} of liquidation fees to the fund")
    if r.book_exhausted:
        out.append(f"the book ran out ({', '.join(r.book_exhausted)}): the volume closed stops "
                   f"growing with the shock")
    if d["fund_notional"] or d["fund_covered"]:
        out.append(f"the fund took over {_money(r.fund_notional)} and covered "
                   f"{_money(r.fund_covered)} of losses")
    if r.adl_count:
        why = "; ".join(f"{n:,} steps because {ADL_CAUSES[c].format(band=band)}"
                        for c, n in sorted(r.adl_causes.items(), key=lambda x: -x[1]))
        out.append(f"{r.adl_count:,} opposite positions deleveraged at bankruptcy prices "
                   f"({_money(r.adl_notional)}; they gave up {_money(r.adl_forgone)} of profit "
                   f"to the mark): {why}")
    gained = d["surplus_to_fund"] + d["penalties_to_fund"]
    if r.adl_count and not d["fund_drawdown"]:
        out.append("the fund never fell: deleveraging was not for want of money")
    if d["fund_end"] > d["fund_start"]:
        out.append(f"the fund grew: fees and penalties ({_money(str(gained))}) exceeded the "
                   f"losses it covered")
    out.append(f"socialised loss {_money(r.socialized)}" + (
        ": deficits neither the fund nor deleveraging could cover" if d["socialized"] else ""))
    return "; ".join(out)


def run(ex: Exchange, source: str, paths: list[tuple[str, list[int]]] | None = None,
        progress=None, pool=None) -> StressReport:
    """Every shock from the state `ex` holds now: a task each (apply_shock) on `pool`
    (fanout.Sequential by default), the results in the order of `paths`. progress(done, total)
    as shocks finish."""
    started = time.perf_counter()
    config = ex.config
    settle = config.assets[config.settlement_asset]
    snapshot = ex.snapshot()
    holders, leverage = _leverage(ex)
    report = StressReport(
        source=source, accounts=holders,
        open_interest=str(settle.from_units(sum(_open_interest(ex).values()))),
        fund=str(settle.from_units(ex.insurance_fund(settle.name))), leverage=leverage,
        currency=settle.name)
    pool = pool or fanout.Sequential()
    report.ran_on = pool.description
    calls = paths if paths is not None else shock_paths()
    for done in pool.map(apply_shock, calls, shared=(config, snapshot), progress=progress):
        done.result.elapsed_s = done.elapsed_s
        report.shocks.append(done.result)
    report.elapsed_s = time.perf_counter() - started
    return report


# ---- output ----------------------------------------------------------------------------------

def render(report: StressReport, console) -> None:
    """The report as two tables (what happened; where the losses went, and why) and a summary."""
    from rich.table import Table

    cur = report.currency
    table = Table(title=f"perpcore stress — {report.source}")
    for column in ("shock", "liquidated", f"volume closed ({cur})", f"fund drawdown ({cur})",
                   f"fund after ({cur})", "ADL", f"ADL notional ({cur})", f"socialised ({cur})",
                   "collateral sales"):
        table.add_column(column, justify="left" if column == "shock" else "right")
    for r in report.shocks:
        table.add_row(r.name, f"{r.liquidated:,}",
                      _money(r.closed_notional) + (" *" if r.book_exhausted else ""),
                      _money(r.fund_drawdown), _money(r.fund_end), f"{r.adl_count:,}",
                      _money(r.adl_notional), _money(r.socialized), f"{r.collateral_sales:,}")
    console.print(table)
    if any(r.book_exhausted for r in report.shocks):
        console.print("* the book ran out of orders on the side the liquidations traded against: "
                      "a larger shock closes no more volume in it")
    water = Table(title=f"loss waterfall per shock ({cur}): book → fees → insurance fund → ADL "
                        f"→ socialised loss")
    for column in ("shock", "book", "fees to fund", "fund took over", "fund covered",
                   "ADL", "ADL forgone", "socialised", "why"):
        water.add_column(column, justify="left" if column in ("shock", "why") else "right")
    for r in report.shocks:
        water.add_row(r.name, _money(r.book_notional),
                      _money(str(Decimal(r.surplus_to_fund) + Decimal(r.penalties_to_fund))),
                      _money(r.fund_notional), _money(r.fund_covered), _money(r.adl_notional),
                      _money(r.adl_forgone), _money(r.socialized), why(r))
    console.print(water)
    console.print("why: the rule that sent each loss where it went (the JSON and the HTML page "
                  "hold it in full); the band is each instrument's market protection around the "
                  "mark")
    lev = report.leverage
    console.print(f"{report.accounts:,} accounts with positions · open interest "
                  f"{_money(report.open_interest)} {cur} · insurance fund {_money(report.fund)} "
                  f"{cur} · effective leverage median {lev['median']}x, p90 {lev['p90']}x, "
                  f"max {lev['max']}x · {report.elapsed_s:.1f} s, {report.ran_on}")


def _money(text: str) -> str:
    # rounded by perpcore.config.DECIMAL, not the thread's context: a library in the process may
    # change that (ccxt sets ROUND_HALF_UP), and the report must not depend on it
    return f"{DECIMAL.quantize(Decimal(text), CENT):,.2f}"


def plot(report: StressReport, path: Path) -> Path:
    """The report's chart (figure()) as a PNG."""
    import matplotlib.pyplot as plt

    fig = figure(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def figure(report: StressReport):
    """The report's chart: six panels, one bar per shock, each axis with its unit; a panel whose
    figures are all zero says so, and the volume closed marks the shocks that emptied the book."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import StrMethodFormatter

    cur = report.currency
    shocks = report.shocks
    names = [r.name for r in shocks]
    x = list(range(len(names)))
    fig, axes = plt.subplots(3, 2, figsize=(14, 12), sharex=True)
    for ax in axes.flat:                # whole units with separators, never a 1e7 offset
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))

    def money(attr: str) -> list[float]:
        return [float(getattr(r, attr)) for r in shocks]

    def bars(ax, values, title, unit, colour):
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
        if not any(values):
            _nothing(ax, f"zero in every shock ({title})")
            return None
        return ax.bar(x, values, color=colour)

    bars(axes[0][0], [r.liquidated for r in shocks], "accounts liquidated", "accounts",
         "tab:red")
    drawn = bars(axes[0][1], money("closed_notional"), "volume closed (book and fund takeovers)",
                 cur, "tab:blue")
    if drawn is not None and any(r.book_exhausted for r in shocks):
        for bar, r in zip(drawn, shocks):
            if r.book_exhausted:
                bar.set_hatch("//")
                bar.set_edgecolor("white")
        axes[0][1].legend(handles=[Patch(facecolor="tab:blue", hatch="//", edgecolor="white",
                                         label="book exhausted: no more volume to close")],
                          loc="lower right", fontsize=8)
    ax = axes[1][0]
    ax.set_title("insurance fund")
    ax.set_ylabel(cur)
    ax.grid(axis="y", alpha=0.3)
    drawdown = [-v for v in money("fund_drawdown")]
    change = [float(Decimal(r.fund_end) - Decimal(r.fund_start)) for r in shocks]
    if any(drawdown) or any(change):
        width = 0.4
        ax.bar([i - width / 2 for i in x], drawdown, width, color="tab:orange",
               label="drawdown (lowest point)" if any(drawdown)
               else "drawdown: none in any shock")
        ax.bar([i + width / 2 for i in x], change, width, color="tab:green", label="net change")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.legend(loc="lower right", fontsize=8)
    else:
        _nothing(ax, "the fund did not change in any shock")
    bars(axes[1][1], [r.adl_count for r in shocks], "auto-deleveraged positions", "positions",
         "tab:purple")
    ax = axes[2][0]
    ax.set_title("where the losses went")
    ax.set_ylabel(cur)
    ax.grid(axis="y", alpha=0.3)
    layers = (("fund_covered", "covered by the insurance fund", "tab:orange"),
              ("adl_forgone", "given up by deleveraged positions (to the mark)", "tab:purple"),
              ("socialized", "socialised", "black"))
    if any(any(money(attr)) for attr, _, _ in layers):
        bottom = [0.0] * len(x)
        for attr, label, colour in layers:
            values = money(attr)
            ax.bar(x, values, bottom=bottom, color=colour, label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        fees = [float(Decimal(r.surplus_to_fund) + Decimal(r.penalties_to_fund)) for r in shocks]
        ax.plot(x, fees, color="tab:green", marker="o",
                label="liquidation fees and penalties into the fund")
        ax.set_ylim(top=max(bottom + fees) * 1.45)     # room for the legend above the bars
        ax.legend(loc="upper left", fontsize=8)
    else:
        _nothing(ax, "no loss beyond the traders' own margin in any shock")
    bars(axes[2][1], money("socialized"), "socialised loss", cur, "black")
    for ax in axes[2]:
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60, ha="right")
        ax.set_xlabel("shock (index move)")
    fig.suptitle(f"perpcore stress — {report.source}\nopen interest "
                 f"{_money(report.open_interest)} {cur}, fund {_money(report.fund)} {cur}")
    fig.tight_layout()
    return fig


def _nothing(ax, text: str) -> None:
    """An all-zero panel: says so, rather than an empty axis around zero."""
    ax.set_ylim(0, 1)
    ax.set_yticks([0])
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.3")


def html_page(report: StressReport, png: Path, path: Path) -> Path:
    """A self-contained HTML page (the chart inlined) of the report: the summary, both tables
    with their explanations, and the chart."""
    import base64
    from html import escape

    cur = escape(report.currency)
    lev = report.leverage

    def table(head: list[str], rows: list[list[str]]) -> str:
        out = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
        for row in rows:
            out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
        return "\n".join(out + ["</table>"])

    shocks = report.shocks
    summary = table(["shock", "liquidated", f"volume closed ({report.currency})",
                     "book exhausted", f"fund drawdown ({report.currency})",
                     f"fund after ({report.currency})", "ADL", f"socialised ({report.currency})",
                     "collateral sales"],
                    [[r.name, f"{r.liquidated:,}", _money(r.closed_notional),
                      ", ".join(r.book_exhausted) or "no", _money(r.fund_drawdown),
                      _money(r.fund_end), f"{r.adl_count:,}", _money(r.socialized),
                      f"{r.collateral_sales:,}"] for r in shocks])
    water = table(["shock", "book", "fees to fund", "fund took over", "fund covered", "ADL",
                   "ADL forgone", "socialised", "why"],
                  [[r.name, _money(r.book_notional),
                    _money(str(Decimal(r.surplus_to_fund) + Decimal(r.penalties_to_fund))),
                    _money(r.fund_notional), _money(r.fund_covered), _money(r.adl_notional),
                    _money(r.adl_forgone), _money(r.socialized), r.explanation]
                   for r in shocks])
    image = base64.b64encode(png.read_bytes()).decode()
    title = escape(f"perpcore stress — {report.source}")
    path.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 90%; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right;
          vertical-align: top; }}
th:first-child, td:first-child, td:last-child {{ text-align: left; }}
td:last-child {{ max-width: 60em; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>{title}</h1>
<p>{report.accounts:,} accounts with positions · open interest {_money(report.open_interest)}
{cur} · insurance fund {_money(report.fund)} {cur} · effective leverage median
{lev['median']}x, p90 {lev['p90']}x, max {lev['max']}x. Each shock moves every index by the
same percentage in steps a second apart, on the same starting state; no fresh liquidity
arrives.</p>
<h2>What each shock did</h2>
{summary}
<h2>Where the losses went ({cur}), and why</h2>
<p>A liquidated position closes in the book at its bankruptcy price or better (the surplus, up to
the liquidation fee, paid to the insurance fund); what the book cannot absorb the fund takes over
and sells, paying the difference to bankruptcy, within the market-protection band around the
mark; what neither absorbs is auto-deleveraged against the opposite positions at the bankruptcy
price (they give up their profit between it and the mark); a deficit nobody covers is
socialised.</p>
{water}
<h2>Chart</h2>
<img alt="the stress report's chart" src="data:image/png;base64,{image}">
</body></html>
""")
    return path
