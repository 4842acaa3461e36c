"""Auto-deleveraging: the queue rankings and the 1-5 indicator venues show, and the deleveraging.

This module owns ADL: the rankings as pure functions, and Deleveraging, which closes opposite
positions against a bankrupt one. When the insurance fund cannot cover a liquidation, the
liquidation engine (perpcore.liquidation) hands Deleveraging what is left, and it closes opposite
positions at the bankrupt position's bankruptcy price, in the order ranked here (MECHANICS.md):

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

That is the "bitmex" ranking (InstrumentSpec.adl_ranking); `venue_ranking` also ranks by

- "binance", Binance Futures' LeveragePnL: PnL percent = max(0, unrealised PnL) / max(1, wallet
  balance), margin ratio = maintenance margin / (wallet balance + unrealised PnL), 0 when that
  balance is <= 0, LeveragePnL = PnL percent x margin ratio, highest first. perpcore's accounts are
  cross margin, so these are the account's figures: unrealised PnL over all its positions, margin
  balance = its equity, wallet balance = equity - unrealised PnL (collateral at its haircut value
  and less its loans, as Binance's multi-assets wallet balance), 1 = one whole settlement asset.
  Every position not in profit has LeveragePnL 0: those follow in account id order.
- "hyperliquid": (mark / entry) x (notional / account value), account value = equity. Hyperliquid
  states the index for "the affected users in profit"; a short's profit is a falling price, so
  its price ratio is read as entry / mark (the index then grows with profit on either side, as
  its page says the queue is "ranked by unrealized pnl and leverage used"). Positions in profit
  come first; the rest follow by the same index; an account with account value <= 0 (unbounded
  leverage) heads its group.

dYdX v4 is not among them: its deleveraging walks the offsetting subaccounts from a
pseudo-random starting point, regardless of profit or leverage, which a deterministic engine
cannot reproduce; its preset keeps "bitmex", perpcore's default.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Iterable, NamedTuple

from perpcore import messages as m
from perpcore.config import ADL_RANKINGS

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
    return _ordered((priority(size, entry, mark, bankrupt), account)
                    for account, size, entry, bankrupt in positions if size)


def _ordered(keyed: Iterable[tuple[tuple | Fraction, int]]) -> list[int]:
    """Accounts by their key, largest first, ties to the lower account id."""
    by_account = sorted(keyed, key=lambda k: k[1])
    by_account.sort(key=lambda k: k[0], reverse=True)     # stable: ties keep the account order
    return [account for _, account in by_account]


class Holding(NamedTuple):
    """One position in the queue and its account's figures (minor units of the settlement asset,
    except size in lots and entry value in ticks x lots)."""
    account: int
    size: int
    entry_value: int
    bankruptcy: int | None              # perpcore.margin's bankruptcy_price
    notional: int                       # |size| x mark, in minor units
    equity: int                         # the account's margin balance / account value
    unrealised_pnl: int                 # over all the account's positions
    maintenance: int                    # the account's maintenance margin


def binance_priority(unrealised_pnl: int, equity: int, maintenance: int, unit: int) -> Fraction:
    """Binance's LeveragePnL of an account (unit: one whole settlement asset in minor units)."""
    if equity <= 0:
        return Fraction(0)                                  # margin ratio 0
    wallet = equity - unrealised_pnl
    return Fraction(max(0, unrealised_pnl) * maintenance, max(unit, wallet) * equity)


def hyperliquid_priority(size: int, entry_value: int, mark: int, notional: int,
                         equity: int) -> tuple[bool, int, Fraction]:
    """(in profit, account value <= 0, (mark / entry) x (notional / account value)), the price
    ratio entry / mark for a short."""
    profit = pnl_fraction(size, entry_value, mark) > 0
    if equity <= 0:
        return profit, 1, Fraction(0)
    held = abs(size) * mark                                 # = mark / entry x entry value
    ratio = Fraction(held, entry_value) if size > 0 else Fraction(entry_value, held)
    return profit, 0, ratio * Fraction(notional, equity)


def venue_ranking(rule: str, holdings: Iterable[Holding], mark: int, unit: int) -> list[int]:
    """Accounts in deleveraging order by the named rule (InstrumentSpec.adl_ranking), from the
    positions of one side of one symbol: the head is closed first."""
    held = [h for h in holdings if h.size]
    if rule == "bitmex":
        return ranking([(h.account, h.size, h.entry_value, h.bankruptcy) for h in held], mark)
    if rule == "binance":
        return _ordered((binance_priority(h.unrealised_pnl, h.equity, h.maintenance, unit),
                         h.account) for h in held)
    if rule == "hyperliquid":
        return _ordered((hyperliquid_priority(h.size, h.entry_value, mark, h.notional, h.equity),
                         h.account) for h in held)
    raise ValueError(f"ADL ranking must be one of {ADL_RANKINGS}, not {rule!r}")


def indicator(place: int, count: int) -> int:
    """The 1-5 light of the position at 0-based `place` of a queue of `count`: 5 for the first
    fifth (deleveraged first), 1 for the last fifth; a queue of one is all 5."""
    if not 0 <= place < count:
        raise ValueError(f"place {place} outside a queue of {count}")
    return 5 - 5 * place // count


class Deleveraging:
    """The ADL of an Exchange's liquidation engine (ex.liquidation.adl): each symbol's queues,
    ranked once per round of liquidations, and the deleveraging of what neither the book nor the
    insurance fund absorbed."""

    def __init__(self, exchange, margin, rankings: dict[str, str], unit: int):
        self.exchange = exchange
        self.margin = margin
        self.pricing = exchange.components["pricing"]
        self.rankings = rankings            # symbol -> InstrumentSpec.adl_ranking
        self.unit = unit                    # one whole settlement asset, in minor units
        self._queues: dict[tuple[str, int], list[int]] = {}

    def new_round(self) -> None:
        """A round of liquidations begins: its queues are ranked afresh when first needed."""
        self._queues.clear()

    def deleverage(self, account: int, symbol: str, long: bool, price: int, qty: int,
                   events: list) -> None:
        """Closes `qty` lots of the account's position (long or short) at `price` against the
        opposite positions, head of the queue first: AutoDeleveraged per counterparty."""
        ex = self.exchange
        margin = self.margin
        sr = margin.symbols[symbol]
        for other in self._queue(symbol, -1 if long else 1):
            if other == account:
                continue
            pos = margin.accounts[other].positions.get(symbol)
            if pos is None or (pos.size > 0) == long or not pos.size:
                continue    # closed or flipped since the queue was ranked
            take = min(qty, abs(pos.size))
            margin.trade(sr, account, not long, price, take, 0, 0, events)
            margin.trade(sr, other, long, price, take, 0, 0, events)
            events.append(m.AutoDeleveraged(ex.seq, ex.clock, other, symbol, take, price,
                                            pos.size, account))
            qty -= take
            if not qty:
                return
        raise RuntimeError(f"{symbol}: open interest does not net to zero")  # a bug, never a state

    def _queue(self, symbol: str, sign: int) -> list[int]:
        """The ADL queue of one side of a symbol (sign 1: longs), ranked once per round."""
        key = (symbol, sign)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = self.queue(symbol, sign)
        return queue

    def queue(self, symbol: str, sign: int) -> list[int]:
        """Accounts holding longs (sign 1) or shorts (-1) in the symbol, in deleveraging order."""
        margin = self.margin
        mark = self.pricing.mark_price(symbol)
        if mark is None:
            return []
        sr = margin.symbols[symbol]
        holdings = []
        for account, pos in sorted(sr.positions.items()):
            if pos.size * sign > 0:
                figures = margin._figures(margin.accounts[account])
                equity, upnl, _, mm, _ = figures
                holdings.append(Holding(account, pos.size, pos.cost,
                                        margin.bankruptcy_price(account, symbol, figures),
                                        abs(pos.size) * mark * sr.upt, equity, upnl, mm))
        return venue_ranking(self.rankings[symbol], holdings, mark, self.unit)

    def indicator_of(self, account: int, symbol: str) -> int | None:
        """The 1-5 deleveraging light of the account's position (5: first in line), None when
        flat."""
        pos = self.margin.accounts[account].positions.get(symbol)
        if pos is None or not pos.size:
            return None
        queue = self.queue(symbol, 1 if pos.size > 0 else -1)
        return indicator(queue.index(account), len(queue))
