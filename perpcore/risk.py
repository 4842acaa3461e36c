"""Margin arithmetic: tiers, maintenance, order margin, collateral value, liquidation prices.

Pure integer functions and small immutable tables: nothing here holds an account, reads the clock
or knows the book. Money is in minor units of the settlement asset, prices in ticks, sizes in lots,
rates at RATE_SCALE. The rounding rule is the conservative one throughout: requirements (initial and
maintenance margin) round UP, values credited to the account (collateral after haircut) round DOWN.
"""
from __future__ import annotations

from fractions import Fraction

from perpcore._margin import TierTable, order_margin  # noqa: F401  (the hot half, in Cython)
from perpcore.config import RATE_SCALE, VenueConfig


def ceil_div(a: int, b: int) -> int:
    """a / b rounded up (b > 0)."""
    return -(-a // b)


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


def ltv(liabilities: int, collateral_value: int) -> int | None:
    """Loan-to-value at RATE_SCALE, rounded up; None (infinite) with liabilities and no collateral,
    0 without liabilities."""
    if liabilities <= 0:
        return 0
    if collateral_value <= 0:
        return None
    return ceil_div(liabilities * RATE_SCALE, collateral_value)
