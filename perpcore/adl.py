"""Auto-deleveraging: BitMEX's queue ranking and the 1-5 indicator venues show, as pure functions.

When the insurance fund cannot cover a liquidation, the liquidation engine closes opposite positions
at the bankrupt position's bankruptcy price, in the order ranked here (MECHANICS.md):

- PnL% = unrealised PnL / entry value = (size x mark - signed entry value) / entry value;
- effective leverage = |mark value| / (mark value - bankrupt value)
  = |size x mark| / (size x (mark - bankruptcy)), the units per tick x lot cancel in both;
- a profitable position ranks by PnL% x effective leverage, any other by PnL% / effective leverage;
  every profitable position ranks ahead of every other (the profitable ones come first, the most
  profitable and most leveraged at the head).

Edge cases, so that the order is total and deterministic: an account already at or past its
bankruptcy price at the mark has unbounded leverage (it heads its group); a long whose account no
positive price bankrupts (bankruptcy None) has leverage 0 (it trails its group). Ties go to the
lower account id. Everything is exact (Fractions): no float decides a queue position.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Iterable

# Groups of the priority key, highest first
_PROFIT_UNBOUNDED = 3       # profitable, account at or past bankruptcy at the mark
_PROFIT = 2                 # profitable: PnL% x leverage
_LOSS = 1                   # not profitable, leverage > 0: PnL% / leverage (unbounded -> 0)
_LOSS_UNLEVERED = 0         # not profitable, nothing can bankrupt it: PnL% / 0 -> minus infinity


def pnl_fraction(size: int, entry_value: int, mark: int) -> Fraction:
    """Unrealised PnL as a fraction of the entry value (0 for a flat position)."""
    if not size or not entry_value:
        return Fraction(0)
    signed = entry_value if size > 0 else -entry_value
    return Fraction(size * mark - signed, entry_value)


def effective_leverage(size: int, mark: int, bankruptcy: int | None) -> Fraction | None:
    """|mark value| / (mark value - bankrupt value); None when unbounded (the account is at or past
    its bankruptcy price at the mark, or a short that every price leaves bankrupt); 0 for a long
    that no positive price bankrupts (bankruptcy None, as perpcore.risk.bankruptcy_price says)."""
    if bankruptcy is None:
        return Fraction(0) if size > 0 else None
    cushion = size * (mark - bankruptcy)
    if cushion <= 0:
        return None
    return Fraction(abs(size) * mark, cushion)


def priority(size: int, entry_value: int, mark: int,
             bankruptcy: int | None) -> tuple[int, Fraction]:
    """The queue key of one position: larger is deleveraged first."""
    pnl = pnl_fraction(size, entry_value, mark)
    lev = effective_leverage(size, mark, bankruptcy)
    if pnl > 0:
        return (_PROFIT_UNBOUNDED, Fraction(0)) if lev is None else (_PROFIT, pnl * lev)
    if lev is None:
        return _LOSS, Fraction(0)
    if not lev:
        return _LOSS_UNLEVERED, pnl
    return _LOSS, pnl / lev


def ranking(positions: Iterable[tuple[int, int, int, int | None]], mark: int) -> list[int]:
    """Accounts in deleveraging order from [(account, size, entry value, bankruptcy price)] of one
    side of one symbol: the head is closed first."""
    keyed = [(priority(size, entry, mark, bankrupt), account)
             for account, size, entry, bankrupt in positions if size]
    keyed.sort(key=lambda k: (-k[0][0], -k[0][1], k[1]))
    return [account for _, account in keyed]


def indicator(place: int, count: int) -> int:
    """The 1-5 light of the position at 0-based `place` of a queue of `count`: 5 for the first
    fifth (deleveraged first), 1 for the last fifth; a queue of one is all 5."""
    if not 0 <= place < count:
        raise ValueError(f"place {place} outside a queue of {count}")
    return 5 - 5 * place // count
