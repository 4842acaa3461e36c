"""Funding: the premium index, its time-weighted average, the rate, and the zero-sum payments.

Pure functions over integers (rates at RATE_SCALE, prices in ticks, money in minor units) plus the
per-symbol accumulator the pricing layer advances on the clock. Nothing here reads the clock, the
book or the ledger: perpcore.pricing feeds them in and applies the results.
"""
from __future__ import annotations

from fractions import Fraction

from perpcore.config import RATE_SCALE


def to_rate(value: Fraction) -> int:
    """A fraction as fixed point at RATE_SCALE, rounded half to even (a rate, not money)."""
    return round(value * RATE_SCALE)


def premium(index: int, impact_bid: Fraction | None, impact_ask: Fraction | None) -> int | None:
    """Premium index [max(0, impact bid - index) - max(0, index - impact ask)] / index.

    A side too thin to absorb the impact notional (None) gives no evidence of a premium on that
    side and contributes 0; with neither side there is no sample at all (None)."""
    if impact_bid is None and impact_ask is None:
        return None
    up = max(0, impact_bid - index) if impact_bid is not None else 0
    down = max(0, index - impact_ask) if impact_ask is not None else 0
    return to_rate(Fraction(up - down) / index)


class PremiumAverage:
    """Binance's time-weighted average: the i-th sample of the interval has weight i, so
    P = sum(i * P_i) / sum(i). Kept as (count, weighted sum): k equal samples add in O(1)."""
    __slots__ = ("count", "weighted")

    def __init__(self, count: int = 0, weighted: int = 0):
        self.count = count
        self.weighted = weighted

    def add(self, value: int, k: int = 1) -> None:
        """k samples of the same value (weights count+1 .. count+k)."""
        n = self.count
        self.weighted += value * (k * n + k * (k + 1) // 2)
        self.count = n + k

    def value(self) -> int:
        """The average, rounded half to even; 0 before any sample."""
        if not self.count:
            return 0
        return round(Fraction(self.weighted, self.count * (self.count + 1) // 2))

    def reset(self) -> None:
        self.count = 0
        self.weighted = 0


def funding_rate(avg_premium: int, interest: int, clamp: int, cap: int) -> int:
    """F = P + clamp(I - P, -clamp, +clamp), then capped to +-cap (RATE_SCALE, per interval)."""
    f = avg_premium + min(max(interest - avg_premium, -clamp), clamp)
    return min(max(f, -cap), cap)


def payments(positions: list[tuple[int, int]], mark: int, rate: int,
             units_per_ticklot: int) -> tuple[list[tuple[int, int]], int]:
    """Each position's funding: size x mark x rate in minor units, longs paying when rate > 0.

    positions: [(account, signed lots)]. Returns ([(account, signed amount)], remainder): amount < 0
    is paid, > 0 received, in the order given, zero positions left out. Payers pay their exact due
    rounded up and receivers get theirs rounded down, so sum(amounts) + remainder == 0 with
    remainder >= 0: rounding never creates money and the remainder goes to the insurance fund. If
    what is due to receivers exceeds what payers pay (open interest not netting to zero), receivers
    share the pool pro rata to size, rounded down.

    The plain statement of the rule: a settlement computes it in C (perpcore._funding, proven equal
    by tests/test_funding_fast.py) and comes here only for figures past 128 bits."""
    per_lot = mark * units_per_ticklot * abs(rate)          # minor units x RATE_SCALE per lot
    if not per_lot:
        return [], 0
    # the side that pays: longs when the rate is positive, shorts when it is negative
    payer_sign = 1 if rate > 0 else -1
    out = []
    pool = owed = receivers = 0
    for account, size in positions:
        if size * payer_sign > 0:
            amount = -abs(size) * per_lot // RATE_SCALE      # floor of a negative: payers round up
            pool -= amount
        elif size:
            amount = abs(size) * per_lot // RATE_SCALE       # floor: a receiver never gets more
            owed += amount
            receivers += abs(size)
        else:
            continue
        out.append((account, amount))
    if owed > pool:
        owed = 0
        for i, (account, size) in enumerate((a, s) for a, s in positions if s):
            if size * payer_sign < 0:
                amount = pool * abs(size) // receivers
                owed += amount
                out[i] = (account, amount)
    return out, pool - owed
