"""Margin arithmetic: tiers, maintenance, order margin, collateral value, liquidation prices.

Pure integer functions and small immutable tables: nothing here holds an account, reads the clock
or knows the book. Money is in minor units of the settlement asset, prices in ticks, sizes in lots,
rates at RATE_SCALE. The rounding rule is the conservative one throughout: requirements (initial and
maintenance margin) round UP, values credited to the account (collateral after haircut) round DOWN.
"""
from __future__ import annotations

from fractions import Fraction

from perpcore.config import RATE_SCALE, InstrumentSpec, VenueConfig


def ceil_div(a: int, b: int) -> int:
    """a / b rounded up (b > 0)."""
    return -(-a // b)


class TierTable:
    """An instrument's margin tiers in engine units.

    Tier k covers notionals in (caps[k-1], caps[k]] (the first from 0, the last without an upper
    bound for valuation, though no order may take a position past caps[-1]). Maintenance of a
    position of notional n in tier k is ceil((n * rates[k] - amounts[k]) / RATE_SCALE) where
    amounts[k] = caps[k-1] * (rates[k] - rates[k-1]) + amounts[k-1] (minor units x RATE_SCALE):
    the requirement is continuous across tier boundaries, Binance's maintenance amount."""
    __slots__ = ("caps", "leverages", "rates", "amounts", "cap0", "rate0")

    def __init__(self, spec: InstrumentSpec, config: VenueConfig):
        settle = config.assets[spec.settle]
        self.caps = tuple(settle.to_units(t.max_notional) for t in spec.tiers)
        self.leverages = tuple(t.max_leverage for t in spec.tiers)
        self.rates = tuple(t.maintenance_rate for t in spec.tiers)
        amounts = [0]
        for k in range(1, len(self.caps)):
            amounts.append(self.caps[k - 1] * (self.rates[k] - self.rates[k - 1]) + amounts[-1])
        self.amounts = tuple(amounts)
        self.cap0, self.rate0 = self.caps[0], self.rates[0]      # most positions: the first tier

    def tier(self, notional: int) -> int:
        caps = self.caps
        k = 0
        last = len(caps) - 1
        while k < last and notional > caps[k]:
            k += 1
        return k

    def maintenance(self, notional: int) -> int:
        """Maintenance margin of a position of that notional (minor units), rounded up."""
        if notional <= self.cap0:
            return -(-notional * self.rate0 // RATE_SCALE)
        k = self.tier(notional)
        return -((self.amounts[k] - notional * self.rates[k]) // RATE_SCALE)

    def max_notional(self, leverage: int) -> int:
        """The largest position notional that may use this leverage: the top of the last tier whose
        maximum leverage allows it (0 if no tier does)."""
        cap = 0
        for k, lev in enumerate(self.leverages):
            if lev >= leverage:
                cap = self.caps[k]
        return cap

    def _price_range(self, k: int, per_tick: int) -> tuple[int, int | None]:
        """Prices (ticks) at which a position worth per_tick minor units a tick is in tier k."""
        lo = self.caps[k - 1] // per_tick + 1 if k else 1
        hi = self.caps[k] // per_tick if k < len(self.caps) - 1 else None
        return lo, hi

    def liquidation_price(self, size: int, upt: int, base: int) -> int | None:
        """The tick at which a position of `size` lots gets liquidated, all else held fixed.

        `base` is the account's equity less its other positions' maintenance, less this
        position's value at price 0: at price p the equity less other maintenance is
        base + size * upt * p, and the account is liquidatable when that is <= this position's
        maintenance at p. That set of prices is a half-line; the answer is its end nearest the
        mark: for a long the HIGHEST tick at or below which it is liquidatable (mark <= price),
        for a short the LOWEST tick at or above which it is (mark >= price). None: a long that no
        positive price liquidates. A short liquidatable at every price gives 1.

        Per tier k (rate r, amount A): base + s*u*p <= ceil((a*u*p*r - A) / RS) holds, for whole
        L = base + s*u*p, iff RS * (L - 1) < a*u*p*r - A; that is linear in p and solved exactly."""
        a = abs(size)
        per_tick = a * upt
        best = None
        for k in range(len(self.caps)):
            r, amount = self.rates[k], self.amounts[k]
            lo, hi = self._price_range(k, per_tick)
            if size > 0:
                # p * a*u*(RS - r) < RS - RS*base - A
                c = RATE_SCALE - RATE_SCALE * base - amount
                p = (c - 1) // (per_tick * (RATE_SCALE - r))
                if hi is not None:
                    p = min(p, hi)
                if p >= lo and (best is None or p > best):
                    best = p
            else:
                # p * a*u*(RS + r) > RS*(base - 1) + A
                c = RATE_SCALE * (base - 1) + amount
                p = max(c // (per_tick * (RATE_SCALE + r)) + 1, lo)
                if (hi is None or p <= hi) and (best is None or p < best):
                    best = p
        return best


def bankruptcy_price(size: int, upt: int, base: int) -> int | None:
    """The tick at which the account's equity (base + size * upt * p, all else fixed) reaches zero,
    rounded toward the mark: for a long the lowest tick with equity >= 0, for a short the highest.
    Selling a long (buying back a short) at that tick or better leaves equity >= 0. None when no
    positive price takes the equity below zero (a long) or none keeps it at zero or above (a
    short)."""
    per_tick = abs(size) * upt
    if size > 0:
        p = ceil_div(-base, per_tick)
        return p if p >= 1 else None
    p = base // per_tick
    return p if p >= 1 else None


def order_margin(position: int, lots: int, value: int, mark: int | None, buy: bool,
                 upt: int, leverage: int) -> int:
    """Initial margin one side of an account's open orders in a symbol reserves.

    lots / value: the side's open quantity and sum(price x qty) in ticks x lots. The first
    lots that would reduce the position (a buy against a short) are free; the rest pay
    notional / leverage, pro rata to the side's value and rounded up. Orders priced worse than
    the mark add their immediate loss, netted over the side: max(0, value - lots * mark) for bids,
    max(0, lots * mark - value) for offers (BitMEX and Binance charge it the same way)."""
    if not lots:
        return 0
    reducing = -position if buy else position
    increasing = lots - reducing if reducing > 0 else lots
    im = -(-value * upt * increasing // (lots * leverage)) if increasing > 0 else 0
    if mark is not None:
        loss = value - lots * mark if buy else lots * mark - value
        if loss > 0:
            im += loss * upt
    return im


class CollateralPrice:
    """How one collateral asset is valued: at the index of the instrument whose base it is.

    One minor unit of the asset at an index of p ticks is worth p * num / den minor units of the
    settlement asset (exact). value() rounds down once, after the haircut."""
    __slots__ = ("asset", "symbol", "num", "den", "keep")

    def __init__(self, config: VenueConfig, asset: str):
        self.asset = asset
        self.symbol = config.collateral_symbol(asset)
        spec = config.instruments[self.symbol]
        settle = config.assets[config.settlement_asset]
        ratio = Fraction(spec.tick_size) * Fraction(10) ** settle.decimals \
            / Fraction(10) ** config.assets[asset].decimals
        self.num, self.den = ratio.numerator, ratio.denominator
        self.keep = RATE_SCALE - config.margin.haircuts[asset]

    def value(self, amount: int, index: int | None) -> int:
        """Collateral value after the haircut, rounded down (0 without an index)."""
        if index is None or amount <= 0:
            return 0
        return amount * index * self.num * self.keep // (self.den * RATE_SCALE)

    def market_value(self, amount: int, index: int | None) -> int:
        """Value at index before the haircut, rounded down (loan-to-value uses it)."""
        if index is None or amount <= 0:
            return 0
        return amount * index * self.num // self.den

    def min_amount(self, value: int, index: int, haircut: bool = True) -> int:
        """The least amount whose value (after the haircut, or at market) is at least `value`:
        floor(x * k) >= v  iff  x >= v / k for whole v."""
        if value <= 0:
            return 0
        if haircut:
            return ceil_div(value * self.den * RATE_SCALE, index * self.num * self.keep)
        return ceil_div(value * self.den, index * self.num)

    def sale_proceeds(self, amount: int, index: int, penalty: int) -> int:
        """Settlement asset paid for `amount` sold at index less the penalty, rounded down."""
        return amount * index * self.num * (RATE_SCALE - penalty) // (self.den * RATE_SCALE)

    def amount_for_proceeds(self, proceeds: int, index: int, penalty: int) -> int:
        """The least amount whose sale_proceeds() reach `proceeds`."""
        if proceeds <= 0:
            return 0
        return ceil_div(proceeds * self.den * RATE_SCALE, index * self.num * (RATE_SCALE - penalty))


def ltv(liabilities: int, collateral_value: int) -> int | None:
    """Loan-to-value at RATE_SCALE, rounded up; None (infinite) with liabilities and no collateral,
    0 without liabilities."""
    if liabilities <= 0:
        return 0
    if collateral_value <= 0:
        return None
    return ceil_div(liabilities * RATE_SCALE, collateral_value)
