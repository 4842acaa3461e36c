"""Margin financing: loans of the settlement asset from the venue's lending pool.

A loan is one integer per account (principal and capitalised interest together, in minor units of
the settlement asset). Borrowing moves cash from the pool to the account and adds the same to the
debt the pool is owed (its receivable); repaying reverses both. Interest accrues at every multiple
of the interest interval on the exchange clock (Binance's hourly accrual): debt x annual rate x
interval / year, rounded UP (the borrower pays the fraction), added to the debt and the receivable;
no cash moves until it is repaid. A clock step walks the boundaries it crosses only while a loan is
outstanding at a rate above 0 (one InterestAccrued per loan and boundary); otherwise it passes them
in O(1). Converting collateral sells it to the platform at index less a penalty and repays from the
proceeds.

This module moves the money; when to lend, call or convert is decided by perpcore.margin, which
knows the collateral's value.
"""
from __future__ import annotations

from perpcore._clock import Clocked
from perpcore._ledger import move
from perpcore.config import RATE_SCALE, YEAR_NS, VenueConfig
from perpcore.ledger import Ledger
from perpcore.risk import CollateralPrice

NEVER = 2**63 - 1          # no accrual due: no loan outstanding


def amount_for_proceeds(c: CollateralPrice, proceeds: int, index: int, penalty: int) -> int:
    """The least amount of collateral c whose sale_proceeds() at index less penalty reach
    `proceeds`: floor(x * k) >= v iff x >= v / k for whole v."""
    if proceeds <= 0:
        return 0
    return -(-proceeds * c.den * RATE_SCALE // (index * c.num * (RATE_SCALE - penalty)))


class Lending(Clocked):
    def __init__(self, config: VenueConfig, ledger: Ledger):
        spec = config.margin
        self.asset = config.settlement_asset
        self.ledger = ledger
        self.pool = ledger.venue["lending_pool"]
        self.platform = ledger.venue["platform"]
        self.interval = spec.interest_interval_ns
        self.rate = spec.loan_rate
        self.penalty = spec.conversion_penalty
        self.limit = config.assets[self.asset].to_units(spec.lending_limit)
        self.debts: dict[int, int] = {}        # account -> debt > 0
        self.called: set[int] = set()      # accounts margin-called and not yet back below warning
        self.receivable = 0
        self.due = NEVER

    def room(self) -> int:
        """What the pool can still lend under its limit."""
        return self.limit - self.receivable

    def borrow(self, account: int, amount: int, now: int) -> int:
        move(self.pool, self.ledger.balances[account], self.asset, amount)
        self.receivable += amount
        debt = self.debts[account] = self.debts.get(account, 0) + amount
        if self.due == NEVER:
            self.due = (now // self.interval + 1) * self.interval
        return debt

    def repay(self, account: int, amount: int) -> int:
        """Repays from the account's cash (the caller checked it holds the amount)."""
        move(self.ledger.balances[account], self.pool, self.asset, amount)
        self.receivable -= amount
        debt = self.debts[account] - amount
        if debt:
            self.debts[account] = debt
        else:
            del self.debts[account]
            self.called.discard(account)
            if not self.debts:
                # nothing to accrue: the same state whenever the last loan went (the next loan
                # starts the schedule at the next interval boundary, as this one would have)
                self.due = NEVER
        return debt

    def interest(self, debt: int) -> int:
        """One interval's interest on a debt, rounded up."""
        return -(-debt * self.rate * self.interval // (RATE_SCALE * YEAR_NS))

    def accrue(self, t_end: int) -> list[tuple[int, int, int, int]]:
        """Adds the interest of every interval boundary in (last, t_end], compounding; returns
        [(time, account, interest, debt)] in time, then account order."""
        out = []
        if not self.rate and self.due <= t_end:
            # free loans: nothing accrues, so no interval is walked (nor reported)
            self.due = (t_end // self.interval + 1) * self.interval
        while self.due <= t_end:
            if not self.debts:
                self.due = NEVER
                break
            t = self.due
            for account in sorted(self.debts):
                interest = self.interest(self.debts[account])
                self.debts[account] += interest
                self.receivable += interest
                out.append((t, account, interest, self.debts[account]))
            self.due = t + self.interval
        return out

    def start(self, t: int, events: list) -> None:
        """The exchange clock starts at t (see perpcore.pricing.Pricing.start): loans made before
        it accrue from the first interval boundary at or after t, nothing for the time before."""
        if self.due != NEVER:
            self.due = max(self.due, -(-t // self.interval) * self.interval)

    def sell(self, account: int, collateral: CollateralPrice, amount: int, index: int,
             discount: int) -> int:
        """Sells `amount` of collateral to the platform at index less the discount; returns the
        proceeds (rounded down), paid into the account's settlement-asset balance."""
        proceeds = collateral.sale_proceeds(amount, index, discount)
        balances = self.ledger.balances[account]
        move(balances, self.platform, collateral.asset, amount)
        move(self.platform, balances, self.asset, proceeds)
        return proceeds

    def convert(self, account: int, collateral: CollateralPrice, amount: int,
                index: int) -> tuple[int, int, int]:
        """Sells `amount` of collateral to the platform at index less the penalty (proceeds rounded
        down) and repays the loan from the proceeds, at most the debt. Returns (proceeds, repaid,
        debt after)."""
        proceeds = self.sell(account, collateral, amount, index, self.penalty)
        repaid = min(proceeds, self.debts.get(account, 0))
        debt = self.repay(account, repaid) if repaid else self.debts.get(account, 0)
        return proceeds, repaid, debt

    def to_state(self) -> dict:
        return {"debts": sorted(self.debts.items()), "called": sorted(self.called),
                "receivable": self.receivable, "next_accrual": self.due}

    def from_state(self, state: dict) -> None:
        self.debts.clear()          # in place: the margin core holds this dict
        self.debts.update(state["debts"])
        self.called = set(state["called"])
        self.receivable = state["receivable"]
        self.due = state["next_accrual"]
