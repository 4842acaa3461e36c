"""Venue configuration: assets, instruments, and the Decimal <-> integer conversions at the edge.

Inside the engine every figure is an integer: prices in ticks, quantities in lots, money in minor units
of its asset, rates and fractions in fixed point at RATE_SCALE (1e-8: 0.01% is 10_000). Decimal lives
only here and in reports. A conversion that is not exact raises: a price between two ticks is a user
error, never something to round silently.
"""
from __future__ import annotations

from decimal import Decimal

import msgspec

RATE_SCALE = 10**8


def rate(value: str | Decimal | int) -> int:
    """A fraction as fixed point at RATE_SCALE; refuses precision finer than 1e-8."""
    return _exact(Decimal(value), Decimal(1) / RATE_SCALE, "rate")


def rate_to_decimal(value: int) -> Decimal:
    return Decimal(value) / RATE_SCALE


def _exact(value: Decimal | str | int, step: Decimal, what: str) -> int:
    d = Decimal(value)
    if not d.is_finite():
        raise ValueError(f"{what} {value!r} is not a finite number")
    units, rem = divmod(d, step)
    if rem != 0:
        raise ValueError(f"{what} {value} is not a multiple of {step}")
    return int(units)


class AssetSpec(msgspec.Struct, frozen=True):
    name: str
    decimals: int                        # the minor unit is 10**-decimals

    @property
    def unit(self) -> Decimal:
        return Decimal(1).scaleb(-self.decimals)

    def to_units(self, value: str | Decimal | int) -> int:
        return _exact(value, self.unit, f"{self.name} amount")

    def from_units(self, units: int) -> Decimal:
        return Decimal(units).scaleb(-self.decimals)


class InstrumentSpec(msgspec.Struct, frozen=True):
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

    def to_ticks(self, price: str | Decimal | int) -> int:
        return _exact(price, self.tick_size, f"{self.symbol} price")

    def from_ticks(self, ticks: int) -> Decimal:
        return ticks * self.tick_size

    def to_lots(self, qty: str | Decimal | int) -> int:
        return _exact(qty, self.lot_size, f"{self.symbol} quantity")

    def from_lots(self, lots: int) -> Decimal:
        return lots * self.lot_size


class VenueConfig(msgspec.Struct, frozen=True):
    settlement_asset: str
    assets: dict[str, AssetSpec]
    instruments: dict[str, InstrumentSpec]

    def __post_init__(self):
        if self.settlement_asset not in self.assets:
            raise ValueError(f"settlement asset {self.settlement_asset} is not among the assets")
        for spec in self.instruments.values():
            if spec.settle not in self.assets:
                raise ValueError(f"{spec.symbol} settles in unknown asset {spec.settle}")
            # a trade's value must be a whole number of minor units, or settlement would round
            self.units_per_ticklot(spec.symbol)

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
            ),
        },
    )
