"""Venue configuration: assets, instruments, and the Decimal <-> integer conversions at the edge.

Inside the engine every figure is an integer: prices in ticks, quantities in lots, money in minor
units of its asset, rates and fractions in fixed point at RATE_SCALE (1e-8: 0.01% is 10_000).
Decimal lives only here and in reports. A conversion that is not exact raises: a price between two
ticks is a user error, never something to round silently.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from fractions import Fraction
from pathlib import Path

import msgspec

RATE_SCALE = 10**8


# Decimal work at the edge never reads the thread's context, which a host process may have changed
# (ccxt sets ROUND_HALF_UP for good; a platform may lower the precision): whatever can round or run
# out of digits goes through this context, Python's default (28 digits, half to even).
DECIMAL = Context(prec=28, rounding=ROUND_HALF_EVEN,
                  traps=[InvalidOperation, DivisionByZero, Overflow])


def rate(value: str | Decimal | int) -> int:
    """A fraction as fixed point at RATE_SCALE; refuses precision finer than 1e-8."""
    return _exact(Decimal(value), Decimal(1) / RATE_SCALE, "rate")


def rate_to_decimal(value: int) -> Decimal:
    return DECIMAL.divide(Decimal(value), RATE_SCALE)


def _exact(value: Decimal | str | int, step: Decimal, what: str) -> int:
    d = Decimal(value)
    if not d.is_finite():
        raise ValueError(f"{what} {value!r} is not a finite number")
    units, rem = DECIMAL.divmod(d, step)
    if rem != 0:
        raise ValueError(f"{what} {value} is not a multiple of {step}")
    return int(units)


class AssetSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An asset the venue holds: the engine counts it in whole minor units (10**-decimals)."""
    name: str
    decimals: int                        # the minor unit is 10**-decimals

    @property
    def unit(self) -> Decimal:
        """The minor unit as a Decimal (0.01 for 2 decimals)."""
        return Decimal(1).scaleb(-self.decimals)

    def to_units(self, value: str | Decimal | int) -> int:
        """An amount in minor units; ValueError unless it is a whole number of them."""
        return _exact(value, self.unit, f"{self.name} amount")

    def from_units(self, units: int) -> Decimal:
        """Minor units as an exact Decimal amount of the asset."""
        return Decimal(units).scaleb(-self.decimals)


HOUR_NS = 3_600_000_000_000
FUNDING_INTERVALS_NS = (HOUR_NS, 2 * HOUR_NS, 4 * HOUR_NS, 8 * HOUR_NS)
MARK_METHODS = ("binance", "bitmex", "hyperliquid", "index")
FUNDING_SCALINGS = ("interest_and_clamp", "whole_rate")
PREMIUM_AVERAGES = ("time_weighted", "plain")
FUNDING_RATE_WINDOWS = ("current", "previous")
FUNDING_CAP_RULES = ("maintenance", "margin_fraction_span")
FUNDING_PRICES = ("mark", "index")


class PricingSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How an instrument is valued and funded (see MECHANICS.md); rates at RATE_SCALE, times in ns.

    index_sources: (source, weight) pairs; empty accepts any source at weight 1. Each source is
    capped at median x (1 +- index_cap) and drops out when silent for more than index_stale_ns.
    mark_method: "binance" median(P1, P2, last trade); "bitmex" fair price P1; "hyperliquid"
    median(P2, median(bid, ask, last), index); "index" the index itself (dYdX v4 marks at its
    oracle price). P2's moving average of (mid - index) is sampled every mark_sample_ns over
    mark_window_ns. The impact notional is impact_margin / the initial margin rate at the first
    tier's maximum leverage (impact_margin x max leverage) unless impact_notional is set (both in
    the settlement asset).

    Funding (perpcore.funding): a premium sample every premium_sample_ns, averaged over the
    interval, F = P + clamp(I - P, +-funding_clamp), capped, paid every funding_interval_ns.
    interest_rate and funding_clamp are quoted per 8 h. The venues differ in five named rules:
    - funding_scaling, for an interval of N < 8 hours: "interest_and_clamp" scales I and the clamp
      by N/8 and not the premium; "whole_rate" computes the 8-hour rate and pays N/8 of it,
      F = [P + clamp(I - P, +-clamp)] x N/8 (Binance since 2025-09-18, Hyperliquid and dYdX v4,
      which pay 1/8 of an 8-hour rate every hour).
    - premium_average: "time_weighted" gives the i-th sample of the interval weight i (Binance);
      "plain" is their plain mean (BitMEX's minutely samples, Hyperliquid's 5 s, dYdX's minutely).
    - funding_rate_window: "current" pays at a funding time the rate of the interval ending then;
      "previous" pays the rate of the interval that ended at the previous funding time, fixed and
      published there, one interval ahead (BitMEX). Under "previous" the first funding time of a
      venue, with no interval before it, pays the rate of a premium of zero (the interest rate,
      clamped and capped), and the rate quoted for the next funding time (funding_rate(),
      FundingRateUpdated, P1 of the mark, as BitMEX's fair basis) is that announced rate.
    - the cap, per interval: funding_cap if set, else by funding_cap_rule from the first margin
      tier: "maintenance" funding_cap_k x its maintenance rate (Binance: 0.75 x MMR);
      "margin_fraction_span" funding_cap_k x (1 / its max leverage - its maintenance rate), the
      span between initial and maintenance margin fractions (BitMEX: 75% x (IM - MM) per
      interval; dYdX v4: 600% x (IMF - MMF) on an 8-hour rate paid 1/8 an hour, so k = 75% with
      hourly funding). Both round toward zero.
    - funding_price: the price a position's funding is valued at, size x price x F: "mark"
      (Binance, BitMEX) or "index" (Hyperliquid and dYdX v4 use the oracle price)."""
    index_sources: tuple[tuple[str, int], ...] = ()
    index_cap: int = 1_000_000                      # 1%
    index_stale_ns: int = 60_000_000_000            # 60 s
    mark_method: str = "binance"
    mark_sample_ns: int = 1_000_000_000             # 1 s
    mark_window_ns: int = 300_000_000_000           # 5 min
    premium_sample_ns: int = 5_000_000_000          # 5 s
    funding_interval_ns: int = 8 * HOUR_NS
    interest_rate: int = 10_000                     # 0.01% per 8 h
    funding_clamp: int = 50_000                     # 0.05% per 8 h
    funding_cap: int = 0
    funding_cap_k: int = 75_000_000                 # 0.75
    impact_margin: Decimal = Decimal("200")
    impact_notional: Decimal = Decimal("0")
    funding_scaling: str = "interest_and_clamp"
    premium_average: str = "time_weighted"
    funding_rate_window: str = "current"
    funding_cap_rule: str = "maintenance"
    funding_price: str = "mark"

    def __post_init__(self):
        if self.funding_interval_ns not in FUNDING_INTERVALS_NS:
            raise ValueError("funding interval must be 1, 2, 4 or 8 hours")
        for name, allowed in (("mark_method", MARK_METHODS),
                              ("funding_scaling", FUNDING_SCALINGS),
                              ("premium_average", PREMIUM_AVERAGES),
                              ("funding_rate_window", FUNDING_RATE_WINDOWS),
                              ("funding_cap_rule", FUNDING_CAP_RULES),
                              ("funding_price", FUNDING_PRICES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name.replace('_', ' ')} must be one of {allowed}")
        if min(self.mark_sample_ns, self.mark_window_ns, self.premium_sample_ns,
               self.index_stale_ns) <= 0 or self.mark_window_ns % self.mark_sample_ns:
            raise ValueError("sample intervals must be positive; the mark window a whole number "
                             "of mark samples")
        if any(w <= 0 for _, w in self.index_sources) or \
                len({s for s, _ in self.index_sources}) != len(self.index_sources):
            raise ValueError("index sources must be distinct with positive weights")
        if not 0 <= self.index_cap < RATE_SCALE or self.impact_margin <= 0 or \
                self.impact_notional < 0 or min(self.interest_rate + RATE_SCALE, self.funding_clamp,
                                                self.funding_cap, self.funding_cap_k) < 0:
            raise ValueError("pricing rates out of range")

    def scaled(self, per_8h: int) -> int:
        """A rate quoted per 8 h, for one funding interval (exact: the intervals divide 8 h)."""
        return per_8h * self.funding_interval_ns // (8 * HOUR_NS)

    def share_of_8h(self) -> Fraction:
        """The funding interval as a fraction of 8 h: N/8 for an interval of N hours."""
        return Fraction(self.funding_interval_ns, 8 * HOUR_NS)


class MarginTier(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One risk-limit tier (Binance's "leverage bracket"): a position whose notional is at most
    max_notional (settlement asset) and above the previous tier's may use leverage up to
    max_leverage and pays maintenance_rate (RATE_SCALE) on its notional, less the tier's
    maintenance amount that keeps the requirement continuous across tiers. The last tier's
    max_notional is the largest position the instrument admits."""
    max_notional: Decimal
    max_leverage: int
    maintenance_rate: int


BTC_TIERS = (
    MarginTier(Decimal("50000"), 125, 400_000),            # 0.40%
    MarginTier(Decimal("600000"), 100, 500_000),           # 0.50%
    MarginTier(Decimal("3000000"), 50, 1_000_000),         # 1.00%
    MarginTier(Decimal("12000000"), 20, 2_500_000),        # 2.50%
    MarginTier(Decimal("50000000"), 10, 5_000_000),        # 5.00%
)
ETH_TIERS = (
    MarginTier(Decimal("50000"), 100, 500_000),            # 0.50%
    MarginTier(Decimal("500000"), 75, 650_000),            # 0.65%
    MarginTier(Decimal("2000000"), 50, 1_000_000),         # 1.00%
    MarginTier(Decimal("10000000"), 20, 2_500_000),        # 2.50%
    MarginTier(Decimal("30000000"), 10, 5_000_000),        # 5.00%
)


def _check_tiers(symbol: str, tiers: tuple[MarginTier, ...], default_leverage: int) -> None:
    if not tiers:
        raise ValueError(f"{symbol} needs at least one margin tier")
    previous = None
    for tier in tiers:
        if tier.max_notional <= 0 or tier.max_leverage < 1 or tier.maintenance_rate < 0:
            raise ValueError(f"{symbol}: a tier needs a positive notional and leverage")
        # initial margin at the tier's top leverage must exceed maintenance, or opening a
        # position at full leverage would make it liquidatable at once
        if tier.maintenance_rate * tier.max_leverage >= RATE_SCALE:
            raise ValueError(f"{symbol}: maintenance rate must be below 1 / max leverage")
        if previous is not None and (tier.max_notional <= previous.max_notional
                                     or tier.max_leverage > previous.max_leverage
                                     or tier.maintenance_rate < previous.maintenance_rate):
            raise ValueError(f"{symbol}: tiers must rise in notional and maintenance rate and "
                             "fall in leverage")
        previous = tier
    if not 1 <= default_leverage <= tiers[0].max_leverage:
        raise ValueError(f"{symbol}: default leverage outside 1..{tiers[0].max_leverage}")


SELL_ORDER_MARGINS = ("open_loss", "assuming_price")
ADL_RANKINGS = ("bitmex", "binance", "hyperliquid")


class InstrumentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A linear perpetual: quoted and settled in `settle`, one lot is lot_size of `base`."""
    symbol: str
    base: str
    settle: str
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal                # in the settlement asset
    max_qty: int                         # lots per order
    max_price: int                       # ticks
    price_step: int = 1                  # orders must be multiples of this many ticks (a venue can
    qty_step: int = 1                    # coarsen its grid without rescaling stored prices)
    market_protection: int = 5_000_000   # market orders fill no worse than best ± 5% (RATE_SCALE)
    professional_only: bool = True
    pricing: PricingSpec = PricingSpec()
    tiers: tuple[MarginTier, ...] = BTC_TIERS
    maker_fee: int = 20_000              # 0.02% of the notional (RATE_SCALE); negative: a rebate
    taker_fee: int = 50_000              # 0.05%
    default_leverage: int = 20           # until the account sets its own
    liquidation_fee: int = 1_000_000     # 1%: most of a liquidation fill's surplus the fund takes
    # the initial margin a sell order pays in its pre-trade check: "open_loss", at its own price
    # plus its open loss against the mark (as a buy); "assuming_price", Binance USDⓈ-M's cost to
    # open a short: at max(last trade x (1 + assuming_price_buffer), mark, order price), plus the
    # open loss (perpcore._margin's MarginCore.check)
    sell_order_margin: str = "open_loss"
    assuming_price_buffer: int = 150_000     # 0.15%
    # the auto-deleveraging queue's order (perpcore.adl): "bitmex", PnL% x effective leverage;
    # "binance", Binance's LeveragePnL; "hyperliquid", (mark / entry) x (notional / account value)
    adl_ranking: str = "bitmex"

    def __post_init__(self):
        _check_tiers(self.symbol, self.tiers, self.default_leverage)
        if self.sell_order_margin not in SELL_ORDER_MARGINS:
            raise ValueError(f"{self.symbol}: sell order margin must be one of "
                             f"{SELL_ORDER_MARGINS}")
        if self.adl_ranking not in ADL_RANKINGS:
            raise ValueError(f"{self.symbol}: ADL ranking must be one of {ADL_RANKINGS}")
        if not 0 <= self.assuming_price_buffer < RATE_SCALE:
            raise ValueError(f"{self.symbol}: assuming price buffer must be in [0, 1)")
        if self.taker_fee < 0 or self.maker_fee + self.taker_fee < 0:
            raise ValueError(f"{self.symbol}: a trade's fees may not pay out more than they take")
        if not 0 <= self.liquidation_fee < RATE_SCALE:
            raise ValueError(f"{self.symbol}: liquidation fee must be in [0, 1)")

    def to_ticks(self, price: str | Decimal | int) -> int:
        """A price in ticks; ValueError unless it is a whole number of ticks."""
        return _exact(price, self.tick_size, f"{self.symbol} price")

    def from_ticks(self, ticks: int) -> Decimal:
        """Ticks as an exact Decimal price in the quote currency."""
        return ticks * self.tick_size

    def to_lots(self, qty: str | Decimal | int) -> int:
        """A quantity in lots; ValueError unless it is a whole number of lots."""
        return _exact(qty, self.lot_size, f"{self.symbol} quantity")

    def from_lots(self, lots: int) -> Decimal:
        """Lots as an exact Decimal quantity of the base asset."""
        return lots * self.lot_size


YEAR_NS = 365 * 24 * 3_600_000_000_000


LOAN_LIQUIDATIONS = ("restore_max_ltv", "repay_in_full")
TRIGGERS_AT = ("passing", "reaching")


class MarginSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Cross margin, collateral and margin financing (rates at RATE_SCALE, times in ns).

    haircuts: the non-cash assets that count as collateral, each valued at its index less the
    haircut. leverage_caps: the highest leverage per account class ("professional", "retail").
    Loans are of the settlement asset, against collateral: a Borrow may take the loan-to-value
    (liabilities / collateral at index) up to max_ltv; past warning_ltv the account gets a
    MarginCall; past liquidation_ltv collateral is sold to the platform at index less
    conversion_penalty to repay. Interest (loan_rate a year) is added to the debt at every
    multiple of interest_interval_ns of exchange time. lending_limit caps the pool's loans.

    loan_liquidation: what happens past liquidation_ltv. "restore_max_ltv": the loan is repaid
    from cash, then the least collateral is sold that brings the loan-to-value back to max_ltv
    (the penalty on what is sold). "repay_in_full": the whole loan is repaid, from cash, then from
    collateral sold at index less the conversion penalty; loan_liquidation_fee (a fraction of the
    loan repaid this way, rounded up) is paid to the insurance fund out of the same (Bit2Me: 2% of
    the outstanding principal).
    trigger_at: when the loan levels and the auto-exchange threshold fire: "passing" (a warning
    past warning_ltv, a sale past liquidation_ltv, an auto-exchange below the threshold) or
    "reaching" (at or past each: Binance Loans liquidates when the LTV "reaches or goes beyond"
    it). max_ltv is a limit, not a trigger: a Borrow may take the LTV up to it, inclusive, either
    way.
    maintenance_trigger_at: when an account with positions is liquidated: "reaching", when its
    equity is at or below its maintenance margin (Binance: margin ratio >= 100%), or "passing",
    when its equity is below it.
    multi_assets: Binance's Multi-Assets Mode auto-exchange: after a command, an account holding
    BTC/ETH collateral whose settlement-asset balance is below auto_exchange_threshold (a negative
    amount of the settlement asset) has collateral sold to the platform at index less
    auto_exchange_discount, the least that brings the balance back to zero, each collateral asset
    in proportion to its value at index (all of it if that is not enough)."""
    haircuts: dict[str, int] = msgspec.field(
        default_factory=lambda: {"BTC": 5_000_000, "ETH": 5_000_000})            # 5%
    leverage_caps: dict[str, int] = msgspec.field(
        default_factory=lambda: {"professional": 125, "retail": 10})
    max_ltv: int = 65_000_000                        # 65%
    warning_ltv: int = 75_000_000                    # 75%
    liquidation_ltv: int = 83_000_000                # 83%
    conversion_penalty: int = 2_000_000              # 2%
    loan_rate: int = 10_000_000                      # 10% a year
    interest_interval_ns: int = 3_600_000_000_000    # hourly
    lending_limit: Decimal = Decimal("100000000")
    loan_liquidation: str = "restore_max_ltv"
    loan_liquidation_fee: int = 0
    trigger_at: str = "passing"
    maintenance_trigger_at: str = "reaching"
    multi_assets: bool = False
    auto_exchange_threshold: Decimal = Decimal("-10000")        # Binance's autoExchangeThreshold
    auto_exchange_discount: int = 2_500_000                     # 2.5%: BTC sold at 97.5%

    def __post_init__(self):
        if self.loan_liquidation not in LOAN_LIQUIDATIONS or \
                not {self.trigger_at, self.maintenance_trigger_at} <= set(TRIGGERS_AT):
            raise ValueError(f"loan liquidation must be one of {LOAN_LIQUIDATIONS}, the triggers "
                             f"one of {TRIGGERS_AT}")
        if not (0 <= self.loan_liquidation_fee < RATE_SCALE
                and 0 <= self.auto_exchange_discount < RATE_SCALE
                and self.auto_exchange_threshold <= 0):
            raise ValueError("loan liquidation fee and auto-exchange discount must be in [0, 1), "
                             "the auto-exchange threshold at most 0")
        if not 0 < self.max_ltv <= self.warning_ltv < self.liquidation_ltv <= RATE_SCALE:
            raise ValueError("need 0 < max LTV <= warning LTV < liquidation LTV <= 1")
        if not 0 <= self.conversion_penalty < RATE_SCALE or self.loan_rate < 0 \
                or self.interest_interval_ns <= 0 or self.lending_limit < 0:
            raise ValueError("margin financing rates out of range")
        if any(not 0 <= h < RATE_SCALE for h in self.haircuts.values()):
            raise ValueError("haircuts must be in [0, 1)")
        if set(self.leverage_caps) != {"professional", "retail"} or \
                min(self.leverage_caps.values()) < 1:
            raise ValueError("leverage caps needed for professional and retail, each >= 1")


DAY_NS = 24 * HOUR_NS


class LimitsSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Bounds that keep the engine's work per command and its state finite, whatever the command
    stream holds (times in ns).

    max_time_step_ns: the furthest one command may move exchange time forward (TIME_STEP_TOO_LARGE
    beyond); the first command that carries a time may start the clock anywhere.
    transfer_ids_kept / transfer_id_ttl_ns: the window of transfer ids remembered for idempotency
    (the newest ones, and none applied ttl or more ago in exchange time; perpcore.ledger's
    TransferWindow). A repeat inside the window is DUPLICATE_TRANSFER; one the window has
    forgotten is applied again, so custody must not retry for longer. The window is hashed state:
    state_hash() and checkpoint() grow with it (not with history): 24 bytes and about
    70 ns of state_hash() per id (a full default window: some 5-7 ms, 14 MB of memory).
    history_kept: the recent entries of the insurance fund's history (all assets) and of each
    symbol's funding history kept for fund_history() / funding_history(); outside the state, so a
    restored exchange's window starts at its snapshot (the whole history is in the journal's
    events).
    funding_accounts_per_command: the most accounts a funding interval in transit visits per
    command to settle its positions (perpcore.funding): a settlement's longest command is bounded
    by it, not by the number of open positions."""
    max_time_step_ns: int = 7 * DAY_NS
    transfer_ids_kept: int = 100_000
    transfer_id_ttl_ns: int = 30 * DAY_NS
    history_kept: int = 10_000
    funding_accounts_per_command: int = 250

    def __post_init__(self):
        if min(self.max_time_step_ns, self.transfer_ids_kept, self.transfer_id_ttl_ns,
               self.history_kept, self.funding_accounts_per_command) <= 0:
            raise ValueError("limits must be positive")


class VenueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A whole venue: its assets, instruments, margin and lending rules, and limits. An Exchange is
    built from one; snapshots and journals record its digest."""
    settlement_asset: str
    assets: dict[str, AssetSpec]
    instruments: dict[str, InstrumentSpec]
    margin: MarginSpec = MarginSpec()
    limits: LimitsSpec = LimitsSpec()

    def __post_init__(self):
        for kind, specs, field in (("asset", self.assets, "name"),
                                   ("instrument", self.instruments, "symbol")):
            for key, spec in specs.items():
                if getattr(spec, field) != key:
                    raise ValueError(f"{kind} {key} is named {getattr(spec, field)}")
        if self.settlement_asset not in self.assets:
            raise ValueError(f"settlement asset {self.settlement_asset} is not among the assets")
        for spec in self.instruments.values():
            if spec.settle not in self.assets:
                raise ValueError(f"{spec.symbol} settles in unknown asset {spec.settle}")
            # a trade's value must be a whole number of minor units, or settlement would round
            self.units_per_ticklot(spec.symbol)
            if spec.settle != self.settlement_asset:
                raise ValueError(f"{spec.symbol} must settle in {self.settlement_asset}")
        for asset in self.margin.haircuts:
            if asset not in self.assets or asset == self.settlement_asset:
                raise ValueError(f"collateral {asset} must be a non-settlement asset")
            self.collateral_symbol(asset)
        self.assets[self.settlement_asset].to_units(self.margin.lending_limit)
        self.assets[self.settlement_asset].to_units(self.margin.auto_exchange_threshold)

    def collateral_symbol(self, asset: str) -> str:
        """The instrument whose index values a collateral asset: the one whose base it is."""
        for symbol in sorted(self.instruments):
            if self.instruments[symbol].base == asset:
                return symbol
        raise ValueError(f"no instrument has base {asset}: its collateral cannot be valued")

    def units_per_ticklot(self, symbol: str) -> int:
        """Minor units of the settlement asset that one tick of price times one lot is worth."""
        spec = self.instruments[symbol]
        settle = self.assets[spec.settle]
        return _exact(spec.tick_size * spec.lot_size, settle.unit,
                      f"{symbol} tick x lot value")


def default_config() -> VenueConfig:
    """The built-in venue: BTC-PERP and ETH-PERP settled in USD, with BTC and ETH as collateral."""
    return VenueConfig(
        settlement_asset="USD",
        assets={
            "USD": AssetSpec("USD", 6),
            "BTC": AssetSpec("BTC", 8),
            "ETH": AssetSpec("ETH", 8),
        },
        instruments={
            "BTC-PERP": InstrumentSpec(
                symbol="BTC-PERP", base="BTC", settle="USD",
                tick_size=Decimal("0.1"), lot_size=Decimal("0.001"),
                min_notional=Decimal("5"), max_qty=1_000_000, max_price=100_000_000,
            ),
            "ETH-PERP": InstrumentSpec(
                symbol="ETH-PERP", base="ETH", settle="USD",
                tick_size=Decimal("0.01"), lot_size=Decimal("0.01"),
                min_notional=Decimal("5"), max_qty=1_000_000, max_price=100_000_000,
                tiers=ETH_TIERS,
            ),
        },
    )


# Fields added to the config after stores began to record its digest (perpcore.exchange's
# config_digest), by the struct they belong to. While such a field holds its default it is left out
# of the digest, so a journal or snapshot written before the field existed still opens under the
# same venue: an upgrade must never brick a store. Every field added to a config struct from now on
# is listed here (tests/test_config.py holds the default venue's digest fixed).
LATER_FIELDS: dict[str, frozenset[str]] = {
    "PricingSpec": frozenset({"funding_scaling", "premium_average", "funding_rate_window",
                              "funding_cap_rule", "funding_price"}),
    "InstrumentSpec": frozenset({"sell_order_margin", "assuming_price_buffer", "adl_ranking"}),
    "MarginSpec": frozenset({"loan_liquidation", "loan_liquidation_fee", "trigger_at",
                             "maintenance_trigger_at", "multi_assets", "auto_exchange_threshold",
                             "auto_exchange_discount"}),
}


def digest_form(value):
    """A config (or any part of it) as plain data for its digest: every field, in declaration
    order, except a LATER_FIELDS field that holds its default."""
    if isinstance(value, msgspec.Struct):
        later = LATER_FIELDS.get(type(value).__name__, frozenset())
        form = {}
        for field in msgspec.structs.fields(value):
            item = getattr(value, field.name)
            if field.name in later and item == (field.default if field.default_factory is
                                                msgspec.NODEFAULT else field.default_factory()):
                continue
            form[field.encode_name] = digest_form(item)
        return form
    if isinstance(value, dict):
        return {key: digest_form(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [digest_form(item) for item in value]
    return value


class ConfigError(ValueError):
    """A venue config file that cannot be read, or does not hold a valid VenueConfig."""


def load_config(path: str | Path) -> VenueConfig:
    """The venue config in a TOML (.toml) or JSON (.json) file, in VenueConfig's schema: the
    fields the Python API takes, by name, nested as the structs are (an unknown field is an
    error, a missing one takes its default). Decimals may be written as strings (exact) or
    numbers. Raises ConfigError, one line naming the file and the field at fault."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ConfigError(f"{path}: a venue config is a .toml or a .json file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from e
    try:
        # untyped first: the sections are then checked one entry at a time, which names the
        # entry at fault (msgspec's path shows a dict's key as [...])
        raw = msgspec.toml.decode(data) if suffix == ".toml" else msgspec.json.decode(data)
    except msgspec.DecodeError as e:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()} ({e})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: holds no table of the venue's fields")
    for section, kind in (("assets", AssetSpec), ("instruments", InstrumentSpec)):
        entries = raw.get(section)
        if isinstance(entries, dict):
            for key, entry in entries.items():
                _convert(path, entry, kind, f"{section}.{key}")
    return _convert(path, raw, VenueConfig, "")


def _convert(path: Path, raw, kind: type, where: str):
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as e:
        text, _, at = str(e).partition(" - at `$")
        at = (where + at.rstrip("`")).lstrip(".")
        raise ConfigError(f"{path}: {at + ': ' if at else ''}{text}") from e
