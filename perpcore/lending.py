"""Margin financing: loans of the settlement asset from the venue's lending pool, and their policy.

This module owns the margin loans: Lending moves their money (the pool, the debts, interest,
collateral sold to the platform), and Loans decides when (Borrow and Repay checked against the
loan-to-value, interest on the clock, margin calls, the breach of the liquidation LTV handed to the
liquidation engine's policy, and multi-assets mode's auto-exchange), from the collateral's value
as perpcore.margin reports it.

A loan is one integer per account (principal and capitalised interest together, in minor units of
the settlement asset). Borrowing moves cash from the pool to the account and adds the same to the
debt the pool is owed (its receivable); repaying reverses both. Interest accrues at every multiple
of the interest interval on the exchange clock (Binance's hourly accrual): debt x annual rate x
interval / year, rounded UP (the borrower pays the fraction), added to the debt and the receivable;
no cash moves until it is repaid. A clock step walks the boundaries it crosses only while a loan is
outstanding at a rate above 0 (one InterestAccrued per loan and boundary); otherwise it passes them
in O(1). Converting collateral sells it to the platform at index less a penalty and repays from the
proceeds.

Loan-to-value = loan / collateral value at index before haircuts, rounded up; a Borrow may take it
up to max_ltv inclusive; warning_ltv and liquidation_ltv fire past the level, or at it too
(MarginSpec.trigger_at "reaching"). Multi-assets mode (MarginSpec.multi_assets): a settlement
balance a command's fill or funding left below the auto-exchange threshold is brought back to zero
by selling collateral to the platform (after_command, before liquidation; see _auto_exchange).
"""
from __future__ import annotations

from decimal import Decimal

from perpcore import messages as m
from perpcore.messages import Plan
from perpcore._clock import Clocked
from perpcore._ledger import move
from perpcore.config import DECIMAL, RATE_SCALE, YEAR_NS, VenueConfig
from perpcore.errors import RejectCode, reject
from perpcore.ledger import Ledger
from perpcore.risk import CollateralPrice, ceil_div, ltv
from perpcore.transfers import known_asset, positive

NEVER = 2**63 - 1          # no accrual due: no loan outstanding


def amount_for_proceeds(c: CollateralPrice, proceeds: int, index: int, penalty: int) -> int:
    """The least amount of collateral c whose sale_proceeds() at index less penalty reach
    `proceeds`: floor(x * k) >= v iff x >= v / k for whole v."""
    if proceeds <= 0:
        return 0
    return -(-proceeds * c.den * RATE_SCALE // (index * c.num * (RATE_SCALE - penalty)))


class Lending(Clocked):
    """The pool's money: loans, repayments, interest and collateral sold to the platform."""

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


class Loans:
    """The loans of an Exchange's margin layer (ex.margin.loans): Borrow, Repay, interest, margin
    calls, the loan breach and multi-assets mode's auto-exchange."""

    def __init__(self, margin):
        self.margin = margin
        self.exchange = margin.exchange
        self.lending: Lending = margin.lending
        self.settle = margin.settle
        config = margin.config
        spec = config.margin
        self.max_ltv = spec.max_ltv
        self.warning_ltv = spec.warning_ltv
        self.liquidation_ltv = spec.liquidation_ltv
        # a level fires past it ("passing") or at it too ("reaching"): at or past it is past
        # the level less one (every figure it is compared with is an integer)
        self.at_level = 1 if spec.trigger_at == "reaching" else 0
        # multi-assets mode (margin.auto_exchange): a settlement balance below this (minor units)
        # is auto-exchanged
        self.exchange_below = config.assets[self.settle].to_units(spec.auto_exchange_threshold) \
            + self.at_level
        self.exchange_discount = spec.auto_exchange_discount
        # accounts to auto-exchange at the next command: stage 6's fills left their balance below
        # the threshold, or their collateral had no fresh index (state: see Margin.to_state)
        self.exchange_pending: set[int] = set()
        self._loan_prices: tuple = ()     # collateral indices at the last loan check

    # ---- commands (the exchange checked the account exists; each validates, then advances the
    # ---- clock, then applies)

    def borrow(self, cmd: m.Borrow, events: list) -> None:
        margin = self.margin
        asset = self._loan_asset(cmd.asset)
        amount = positive(cmd.amount)
        acc = margin.accounts[cmd.account]
        if amount > self.lending.room():
            reject(RejectCode.LOAN_LIMIT_EXCEEDED,
                    f"the lending pool can lend {max(self.lending.room(), 0)} more")
        debt = self.lending.debts.get(acc.id, 0) + amount
        after = ltv(debt, margin._collateral_market_value(acc))
        if after is None or after > self.max_ltv:
            reject(RejectCode.LOAN_LIMIT_EXCEEDED,
                    f"loan-to-value would be {_pct(after)}, above the maximum {_pct(self.max_ltv)}")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        margin.touch(acc, events)
        debt = self.lending.borrow(acc.id, amount, ex.clock)
        events.append(m.Borrowed(ex.seq, ex.clock, acc.id, asset, amount, debt,
                                 ltv(debt, margin._collateral_market_value(acc))))

    def repay(self, cmd: m.Repay, events: list) -> Plan:
        """Applies the repayment now; returns the loan's check, a plan (see on_clock)."""
        margin = self.margin
        asset = self._loan_asset(cmd.asset)
        amount = positive(cmd.amount)
        acc = margin.accounts[cmd.account]
        debt = self.lending.debts.get(acc.id, 0)
        if amount > debt:
            reject(RejectCode.INVALID_AMOUNT, f"repayment of {amount} exceeds the loan {debt}")
        cash = margin.balances(acc)[asset]
        if amount > cash:
            reject(RejectCode.INSUFFICIENT_BALANCE,
                    f"repayment of {amount} exceeds the {asset} balance {max(cash, 0)}")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        margin.touch(acc, events)
        # interest may have accrued on the way to the command's time; the repayment stands
        debt = self.lending.repay(acc.id, amount)
        events.append(m.Repaid(ex.seq, ex.clock, acc.id, asset, amount, debt))
        return self._check_loan(acc, events)

    def _loan_asset(self, asset) -> str:
        known_asset(self.margin.ledger, asset)
        if asset != self.settle:
            reject(RejectCode.UNKNOWN_ASSET, f"loans are of {self.settle} only")
        return asset

    # ---- on the clock and on prices (the margin layer's hooks) ---------------------------------
    # Each applies its own work now and returns the loans' checks as a plan (a generator, as
    # Repay's handler does): a loan past the liquidation LTV is a LiquidateLoan it yields, which
    # the Exchange runs through its handler (the liquidation engine's) there and then, never a
    # call from this layer into stage 6.

    def on_clock(self, t_end: int, events: list) -> Plan:
        """Interest of every accrual time up to t_end, then the loans' checks."""
        seq = self.exchange.seq
        for t, account, interest, debt in self.lending.accrue(t_end):
            events.append(m.InterestAccrued(seq, t, account, self.settle, interest, debt))
        return self.check_loans(events)

    def after_command(self, events: list) -> Plan | None:
        """Multi-assets mode's auto-exchange of the accounts whose cash this command moved, then
        the loans again when a collateral index moved (cheap when nobody borrows)."""
        if self.margin.auto_exchange:
            self._auto_exchange(events)
        if not self.lending.debts:
            return None
        index = self.margin._index
        prices = tuple(index(c.symbol) for c in self.margin.collateral)
        return self.check_loans(events) if prices != self._loan_prices else None

    def _auto_exchange(self, events: list) -> None:
        """Binance's Multi-Assets Mode: an account whose settlement-asset balance (as if its
        funding were settled) a fill or a funding payment of this command left below the
        threshold (MarginSpec.auto_exchange_threshold; at it too with trigger_at "reaching"), or
        that an earlier command left pending (after_liquidation; an index not fresh), has
        collateral sold to the platform at index less the auto-exchange discount, the least that
        brings the balance back to zero, each collateral asset on a fresh index bearing its share
        of the balance in proportion to its value at index (all of it when that is not enough).
        The discount stays with the platform, the buyer. One CollateralExchanged per asset sold."""
        margin = self.margin
        moved = sorted(self._cash_moved(events) | self.exchange_pending)
        self.exchange_pending.clear()
        pricing = self.exchange.components["pricing"]
        index_of = margin._index
        for account in moved:
            acc = margin.accounts[account]
            if not self._below_threshold(acc):
                continue
            priced = [(c, index_of(c.symbol)) for c in margin.collateral
                      if acc.cash[c.asset] > 0 and index_of(c.symbol) is not None
                      and not pricing.is_stale(c.symbol)]
            if not priced:
                self.exchange_pending.add(account)      # again once its index is fresh
                continue
            margin.touch(acc, events)   # its funding in transit first: the deficit is in cash
            deficit = -acc.cash[self.settle]
            values = [c.market_value(acc.cash[c.asset], index) for c, index in priced]
            total = sum(values)
            if not total:
                continue            # dust worth nothing at index
            ex = self.exchange
            for (c, index), value in zip(priced, values):
                share = ceil_div(deficit * value, total)        # the shares cover the deficit
                amount = min(acc.cash[c.asset],
                             amount_for_proceeds(c, share, index, self.exchange_discount))
                if amount <= 0:
                    continue
                proceeds = self.lending.sell(account, c, amount, index, self.exchange_discount)
                events.append(m.CollateralExchanged(ex.seq, ex.clock, account, c.asset, amount,
                                                    index, proceeds, acc.cash[self.settle]))

    @staticmethod
    def _cash_moved(events: list) -> set[int]:
        return {e.account for e in events if type(e) is m.PositionChanged
                or type(e) is m.FundingPaid}

    def _below_threshold(self, acc) -> bool:
        """Below the auto-exchange threshold, holding collateral that could be exchanged."""
        return self.margin.balances(acc)[self.settle] < self.exchange_below and \
            any(acc.cash[c.asset] > 0 for c in self.margin.collateral)

    def after_liquidation(self, events: list) -> None:
        """Stage 6's fills (liquidation orders, ADL) come after this command's auto-exchange: an
        account they left below the threshold is exchanged at the next command, before that
        command's own stage 6."""
        accounts = self.margin.accounts
        self.exchange_pending.update(a for a in self._cash_moved(events)
                                     if self._below_threshold(accounts[a]))

    def check_loans(self, events: list) -> Plan:
        margin = self.margin
        self._loan_prices = tuple(margin._index(c.symbol) for c in margin.collateral)
        for account in sorted(self.lending.debts):
            yield from self._check_loan(margin.accounts[account], events)

    def _check_loan(self, acc, events: list) -> Plan:
        """MarginCall once past the warning LTV; past the liquidation LTV, the loan handed to the
        liquidation engine as a LiquidateLoan, which the Exchange runs (at each level too with
        MarginSpec.trigger_at "reaching")."""
        lending = self.lending
        debt = lending.debts.get(acc.id, 0)
        market = self.margin._collateral_market_value(acc)
        level = ltv(debt, market)
        if level is not None and level <= self.warning_ltv - self.at_level:
            lending.called.discard(acc.id)
            return
        ex = self.exchange
        if acc.id not in lending.called:
            lending.called.add(acc.id)
            events.append(m.MarginCall(ex.seq, ex.clock, acc.id, level, debt, market))
        if level is None or level > self.liquidation_ltv - self.at_level:
            self.margin.touch(acc, events)  # the conversion repays from cash first: settled cash
            yield m.LiquidateLoan(acc.id)

    # ---- snapshots (the margin layer's state holds the pool's and these) -----------------------

    def from_state(self, pending) -> None:
        margin = self.margin
        self.exchange_pending = set(pending)
        self._loan_prices = tuple(margin._index(c.symbol) for c in margin.collateral)


def _pct(rate: int | None) -> str:
    if rate is None:
        return "unbounded"
    return f"{DECIMAL.quantize(DECIMAL.divide(Decimal(rate), RATE_SCALE // 100), Decimal('0.01'))}%"
