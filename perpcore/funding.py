"""Funding: the premium index, its time-weighted average, the rate, and the zero-sum payments.

Pure functions over integers (rates at RATE_SCALE, prices in ticks, money in minor units) plus the
per-symbol accumulator the pricing layer advances on the clock. Nothing here reads the clock, the
book or the ledger: perpcore.pricing feeds them in and applies the results.

The settlement model: an interval in transit. At a funding time the symbol's interval is fixed in
O(1) (perpcore._funding.begin, a perpcore._margin.Interval on its SymbolRisk): its rate, its mark
(the index where PricingSpec.funding_price is "index": the price the payments use, in the
events' mark fields and funding_history()) and the amount per lot, per_lot = mark x units per
tick-lot x |rate|. Every position open at that
instant owes (or is owed) payments()'s amount for its size then: a payer ceil(|size| x per_lot /
RATE_SCALE), a receiver the floor. Positions carry the number of the last interval they settled
(Position.funded), so the instant marks nobody; a position is due while its number is behind.
- The sweep. The interval's positions are paid over the following commands, account by account
  in ascending order (Margin.account_ids), first a pass over the payers, then one over the
  receivers, each payment a FundingPaid with the transfer between the account's cash and the
  ledger's funding in transit (perpcore.ledger's funding_transit bucket, part of the audit, so
  the books balance after every event). A command visits at most
  limits.funding_accounts_per_command accounts (all sweeps of the command together, the first at
  the funding time itself): no command's cost grows with the open positions. A venue whose
  accounts fit in that budget settles entirely at the funding time, as a whole settlement did.
  Past the last receiver the interval is complete: the rounding remainder (paid - received >= 0)
  moves to the insurance fund with FundingSettled (positions, paid, received, remainder). Events
  carry the seq and time of the command in which their money moves (the funding time for those
  paid at it); the interval's own time, rate and mark are funding_history()'s.
- Touched first. A command that moves an account's money or positions settles the account's due
  positions (every symbol in transit, in symbol order) before it does, in that command, with
  their FundingPaid: a fill (liquidation orders and ADL transfers included), a deposit, a
  withdrawal, a loan or repayment, a collateral sale past the liquidation LTV. Its events
  (PositionChanged's balance, Withdrawn's) are thus those of the settled account. A receiver
  touched while payers remain is paid at once too: only then can the funding in transit dip below
  zero, by at most those receipts, which the payers still to pay owe (the sweep alone keeps it at
  or above zero).
- As if settled. Every figure a check or a query reads counts the positions still due at their
  amount (MarginCore.pending_of, in equity; Margin.balances, in the settlement asset): the
  pre-trade check, a withdrawal's or repayment's, leverage changes, the liquidation engine's
  examination of an account (equity, maintenance, bankruptcy price), ex.account(). A refusal
  changes nothing, so a check never settles: it counts what is due.
- The liquidation engine reads each command's FundingPaid (a payer's reserve lowered, or the payer
  examined) as with a whole settlement: a payer that funding puts under maintenance is examined,
  and liquidated, in the command in which its payment moves, at most the payers' pass after the
  funding time (sooner when touched). That is the one thing that moves with the model: with a
  whole settlement it happened at the funding time. Meanwhile every decision about the account is
  the settled one (its orders and withdrawals refused as they would be; an examination, if a
  price reaches it, sees it as paid); an account topping up before its turn is examined with the
  top-up.
- A next funding time arriving before the sweep is done completes it first, in that command (an
  idle venue's clock jump over several funding times: that command does the rest of the work).
- Exactness. payments() is the rule, and the sweep pays exactly its amounts: receivers share the
  pool pro rata only when their floors exceed the payers' ceilings, which needs open interest not
  netting to zero (with L lots on each side, sum of floors <= L x per_lot / RATE_SCALE <= sum of
  ceilings); the engine's open interest always nets (every change of a position is one side of a
  trade), and an interval is spread only when it does and every product fits 128 bits
  (perpcore.pricing checks it from SymbolRisk.open_interest in O(1)); otherwise it is settled all
  at once (perpcore._funding.settle, or the plain path over payments()), in the same order,
  payers first.
- Snapshots hold each interval in transit (Interval.to_state) and the accounts still due, so a
  restored engine continues the sweep exactly (Margin.to_state).
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
    """The interval's average premium. Binance's time-weighted average (rising=True): the i-th
    sample of the interval has weight i, so P = sum(i * P_i) / sum(i); or the plain mean
    (rising=False: every weight 1), as BitMEX averages its minutely premium index (the .PI8H
    index, "the arithmetic mean of the .ONDOUSDTPI index over the previous 8-hour window, which
    is printed minutely"), Hyperliquid its 5 s samples and dYdX v4 its minutely ones. Kept as
    (count, weighted sum): k equal samples add in O(1)."""
    __slots__ = ("count", "weighted", "rising")

    def __init__(self, count: int = 0, weighted: int = 0, rising: bool = True):
        self.count = count
        self.weighted = weighted
        self.rising = rising

    def add(self, value: int, k: int = 1) -> None:
        """k samples of the same value (weights count+1 .. count+k, or 1 each)."""
        n = self.count
        self.weighted += value * (k * n + k * (k + 1) // 2 if self.rising else k)
        self.count = n + k

    def value(self) -> int:
        """The average, rounded half to even; 0 before any sample."""
        n = self.count
        if not n:
            return 0
        return round(Fraction(self.weighted, n * (n + 1) // 2 if self.rising else n))

    def reset(self) -> None:
        self.count = 0
        self.weighted = 0


def funding_rate(avg_premium: int, interest: int, clamp: int, cap: int,
                 share: Fraction | int = 1) -> int:
    """F = [P + clamp(I - P, -clamp, +clamp)] x share, then capped to +-cap (RATE_SCALE, per
    interval). share is 1 where I and the clamp are already the interval's (PricingSpec's
    funding_scaling "interest_and_clamp"), N/8 where they are quoted per 8 h and the whole rate
    is scaled to an interval of N hours ("whole_rate"); the product is rounded half to even."""
    f = avg_premium + min(max(interest - avg_premium, -clamp), clamp)
    if share != 1:
        f = round(f * share)
    return min(max(f, -cap), cap)


def margin_cap(rule: str, k: int, max_leverage: int, maintenance_rate: int) -> int:
    """The funding cap per interval from a margin tier (PricingSpec.funding_cap_rule), rounded
    toward zero: it never allows more than the rule. "maintenance": k x the maintenance rate
    (Binance: 0.75 x the maintenance margin rate); "margin_fraction_span": k x (the initial
    margin fraction 1 / max_leverage - the maintenance rate) (BitMEX: 75% x (initial -
    maintenance margin); dYdX v4: 600% x (IMF - MMF) on its 8-hour rate, of which it pays 1/8
    hourly: 75% an hour)."""
    if rule == "maintenance":
        return k * maintenance_rate // RATE_SCALE
    return int(k * (Fraction(RATE_SCALE, max_leverage) - maintenance_rate) / RATE_SCALE)


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
