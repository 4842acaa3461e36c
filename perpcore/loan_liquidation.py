"""Margin-loan liquidation: collateral sold to the platform to repay an account's loan.

This module owns the conversion of collateral into the settlement asset against a loan: the
loan-breach policy past the liquidation LTV (a LiquidateLoan the margin layer's loan checks yield
and the Exchange runs through liquidate_loan; at the level too with MarginSpec trigger_at
"reaching"), and the sale of a liquidated account's collateral when it is left with a deficit
(perpcore.liquidation, step 5). The loan is first repaid from cash, then collateral is sold to the
platform at index less the conversion penalty (the penalty goes to the insurance fund), by
MarginSpec.loan_liquidation: "restore_max_ltv", the least amount that brings the loan-to-value
back to the maximum LTV; "repay_in_full", the least that repays the whole loan and its fee
(loan_liquidation_fee of the loan, to the insurance fund). Collateral without a fresh index is
never sold.
"""
from __future__ import annotations

from perpcore import messages as m
from perpcore.config import RATE_SCALE
from perpcore.insurance import InsuranceFund
from perpcore.lending import amount_for_proceeds
from perpcore.messages import FundReason, LiquidationReason


class LoanLiquidation:
    """The loan liquidation of an Exchange's liquidation engine (ex.liquidation.loans)."""

    def __init__(self, exchange, margin, insurance: InsuranceFund):
        self.exchange = exchange
        self.margin = margin
        self.pricing = exchange.components["pricing"]
        self.insurance = insurance
        self.settle = margin.settle
        # past the liquidation LTV (MarginSpec.loan_liquidation): the loan repaid in full, with
        # its fee, or the maximum LTV restored
        self.repays_in_full = exchange.config.margin.loan_liquidation == "repay_in_full"
        self.loan_fee_rate = exchange.config.margin.loan_liquidation_fee

    def sell_all(self, acc, events: list) -> None:
        """An account left with a deficit: all its priced collateral sold, then its loan repaid
        from cash."""
        for c in self.margin.collateral:
            held = acc.cash[c.asset]
            index = self.pricing.index_price(c.symbol)
            if held > 0 and index is not None and not self.pricing.is_stale(c.symbol):
                self.convert(acc, c, held, index, events)
        self.repay_from_cash(acc, events)

    def repay_from_cash(self, acc, events: list) -> None:
        lending = self.margin.lending
        amount = min(lending.debts.get(acc.id, 0), max(acc.cash[self.settle], 0))
        if amount:
            debt = lending.repay(acc.id, amount)
            ex = self.exchange
            events.append(m.Repaid(ex.seq, ex.clock, acc.id, self.settle, amount, debt))

    def convert(self, acc, c, amount: int, index: int, events: list) -> None:
        """Sells collateral to the platform at index less the penalty; the penalty (what the
        platform did not pay of the market value) goes to the insurance fund."""
        ex = self.exchange
        lending = self.margin.lending
        proceeds, repaid, debt = lending.convert(acc.id, c, amount, index)
        events.append(m.CollateralConverted(ex.seq, ex.clock, acc.id, c.asset, amount, index,
                                            proceeds, repaid, debt))
        penalty = c.market_value(amount, index) - proceeds
        if penalty:
            self.insurance.change(lending.platform, penalty, FundReason.COLLATERAL_PENALTY, acc.id,
                                  c.symbol, events)

    def liquidate_loan(self, cmd: m.LiquidateLoan, events: list) -> None:
        """The handler of a LiquidateLoan (the margin layer found the loan-to-value past the
        liquidation level): repay from cash, then sell collateral by MarginSpec.loan_liquidation.
        An account with neither cash nor priced collateral to give (a loan already written off)
        is left as it is."""
        account = cmd.account
        ex = self.exchange
        margin = self.margin
        acc = margin.accounts[account]
        pricing = self.pricing
        if acc.cash[self.settle] <= 0 and not any(
                acc.cash[c.asset] > 0 and pricing.index_price(c.symbol) is not None
                and not pricing.is_stale(c.symbol) for c in margin.collateral):
            return
        equity, _, _, mm, _ = margin._figures(acc)
        events.append(m.LiquidationStarted(ex.seq, ex.clock, account, equity, mm,
                                           LiquidationReason.LOAN))
        (self.repay_in_full if self.repays_in_full else self.restore_max_ltv)(acc, events)
        if account not in margin.lending.debts:
            margin.lending.called.discard(account)

    def restore_max_ltv(self, acc, events: list) -> None:
        """MarginSpec.loan_liquidation "restore_max_ltv": repay from cash, then sell the least
        collateral (in asset order) that brings the loan back to the maximum LTV."""
        margin = self.margin
        account = acc.id
        self.repay_from_cash(acc, events)
        target = margin.loans.max_ltv
        for c in margin.collateral:
            debt = margin.lending.debts.get(account, 0)
            if not debt:
                break
            held = acc.cash[c.asset]
            index = self.pricing.index_price(c.symbol)
            if held <= 0 or index is None or self.pricing.is_stale(c.symbol):
                continue
            others = sum(o.market_value(acc.cash[o.asset], self.pricing.index_price(o.symbol))
                         for o in margin.collateral if o is not c)

            def within(x: int) -> bool:
                left = debt - min(c.sale_proceeds(x, index, margin.lending.penalty), debt)
                value = others + c.market_value(held - x, index)
                return left == 0 or left * RATE_SCALE <= target * value

            if within(0):
                break
            if not within(held):
                amount = held       # it cannot get back inside: everything repays what it can
            else:
                lo, hi = 1, held    # within() holds at hi; it falls with x while the loan is
                while lo < hi:      # below the sale's value ratio, which within(held) shows
                    mid = (lo + hi) // 2
                    if within(mid):
                        hi = mid
                    else:
                        lo = mid + 1
                amount = lo
            self.convert(acc, c, amount, index, events)

    def repay_in_full(self, acc, events: list) -> None:
        """MarginSpec.loan_liquidation "repay_in_full": the whole loan is repaid, from cash, then
        from collateral sold (in asset order) at index less the conversion penalty, the least that
        covers the loan and the fee; the fee (loan_liquidation_fee of the loan at the breach,
        rounded up) then goes from the account's cash to the insurance fund, as much of it as the
        cash holds (what the collateral could not cover stays owed, and no fee is taken from it)."""
        margin = self.margin
        lending = margin.lending
        settle = self.settle
        fee = -(-lending.debts[acc.id] * self.loan_fee_rate // RATE_SCALE)
        self.repay_from_cash(acc, events)
        for c in margin.collateral:
            need = lending.debts.get(acc.id, 0) + fee - max(acc.cash[settle], 0)
            held = acc.cash[c.asset]
            index = self.pricing.index_price(c.symbol)
            if need <= 0:
                break
            if held <= 0 or index is None or self.pricing.is_stale(c.symbol):
                continue
            amount = min(held, amount_for_proceeds(c, need, index, lending.penalty))
            self.convert(acc, c, amount, index, events)
        fee = min(fee, max(acc.cash[settle], 0))
        if fee:
            self.insurance.change(acc.cash, fee, FundReason.COLLATERAL_PENALTY, acc.id, "", events)
