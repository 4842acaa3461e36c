"""Liquidation execution (DESIGN.md stage 6): the accounts under maintenance, closed.

This module owns stage 6's liquidation of an account: its orders cancelled, its positions reduced
into the book, taken over by the insurance fund, deleveraged, its deficit settled and, as the last
resort, socialised (the socialised losses are its only state).

It is the Exchange's "liquidation" component. After every command (after the mark and the loans have
been brought up to date) it finds the accounts the command's price moves and money movements may
have put under maintenance, and liquidates them, in account order, until none is left. It reads
money, positions and margin through perpcore.margin and prices through perpcore.pricing, and
composes the owners of the other stage-6 concerns: the insurance fund (perpcore.insurance),
auto-deleveraging (perpcore.adl) and margin-loan liquidation (perpcore.loan_liquidation).

Trigger. An account is liquidated when it holds positions and its equity, valued at the MARK, is at
or below its maintenance margin (below it with MarginSpec.maintenance_trigger_at "passing":
perpcore.margin's rule, the one its liquidation prices solve exactly; the index below keys the
equity plus margin.maintenance_shift, so both settings are exact). Never on a stale index: an
account valued with any symbol whose index is stale (its positions' or its collateral's) is left
alone until the index is fresh again, and then examined.

Finding the accounts. A BreachIndex keeps each account under the prices at which a move could breach
it, per price dimension (a symbol's mark; a collateral's index): a move that reaches nobody's
trigger looks at nobody. With slack = equity - maintenance at the current prices, the triggers keep
the account's slack above half of it at every price strictly inside them (the other half is room for
later fills, below). An account with one position and no collateral is keyed exactly: at the price
where its slack falls to that half (the liquidation price of the account with half its slack less
equity). Any other is keyed conservatively: with w_d an upper bound of the slack lost per tick of
adverse move in dimension d (|size| x units per tick-lot for a long, that x (1 + top maintenance
rate) for a short, the post-haircut value of one tick for collateral), the budget B = slack - half -
(n + 1) (n dimensions, each rounding at most one unit) is shared out so that every dimension gets
the same fraction of its price: dimension d may move B x P_d / sum(w x P) ticks against the account
before its trigger fires. Every trigger is then moved a little toward the price, onto a coarse grid
(it fires slightly early, never late; a DOWN trigger no lower than 0, never firing, an UP one no
higher than twice the price), and each position gets a spare trigger on its other side, as far from
the price, so that a fill that flips it needs no new trigger.

The reserve. Equity - maintenance is a sum of terms of one price each, each monotone in its price
(see LiquidationCore.corner), so its least value at any prices strictly inside the triggers is its
value at their corner, each price one tick inside its trigger: the account's reserve, kept beside its triggers with
each position's term. While the reserve is >= 1 the triggers are safe: the index never misses a
breach. Which accounts a command touched, and how:
- a fill (PositionChanged) changes the account's cash by its realised PnL less its fee and one
  position's term at the corner: the reserve is brought up to date from the fill alone. If it stays
  >= 1 the account keeps its triggers and is sound now: its prices are strictly inside them (a
  price moved past one is looked up this round, or was published on a stale index: the account may
  not be liquidated before the index is fresh again, and that publication is looked up). Nothing
  else is computed;
- otherwise, or when other money moved (interest, transfers, loans, collateral sold), the reserve
  is computed again from the account at its triggers' corner (a position without a trigger on its
  side gets one, the others staying); if it is not >= 1 the account is examined in full: liquidated
  if under maintenance, else keyed again at once;
- an account a price move reached (its trigger crossed) is examined in full and keyed again.
All of this runs in C (perpcore._liquidation, this class's base): the scan of each command's events,
each fill's step, the rounds' looks at their candidates, the keying, the liquidation price solve
over 128-bit integers, and the BreachIndex (per dimension and direction a tree of (trigger,
account), no Python object per entry; an account's triggers, reserve and terms in one C slot). A
command whose events concern none of this (most orders, cancels and amends) is passed over there
without calling into Python, and so is one whose fills all stepped and whose accounts were sound;
this module is called for the accounts in breach only (liquidate), and liquidates them.

Funding. A settlement moves cash of every open position, and examining each would cost more than
the settlement itself. Funding changes no position and no price, only equity, by the amount paid:
a receiver only gained slack (its reserve stays a lower bound), it is not looked at; a payer whose
reserve less what it paid is still >= 1 stays sound at every price inside its triggers, so only its
reserve is lowered; any other payer is looked at as above (liquidated in the same command if funding
put it under maintenance).

The engine plans, the Exchange acts: the liquidation of a round is a generator of internal
commands (perpcore.messages.InternalCommand: the cancels and the IOC orders below), which the
Exchange runs through order entry like a client's command, with their own events, sending back each
order's fills (perpcore._exchange ExchangeCore.liquidate); this layer never calls back into an
earlier stage. The fund, ADL and deficits it settles through the ledger itself.

Which accounts are liquidated is decided exactly, from the candidates of one round sorted by id; the
index only narrows the search, so the events never depend on its history (a restored exchange
rebuilds it and behaves the same).

Liquidating one account:
1. LiquidationStarted; all its open orders are cancelled (CancelReason.LIQUIDATION).
2. While still under maintenance: take the position with the largest maintenance margin and reduce
   it one tier (to the top of the tier below; the whole position in the first tier or when the
   account's equity is no longer positive), with an IOC
   order into the book limited at the position's bankruptcy price (the mark at which the account's
   equity is zero, others fixed). Each fill better than bankruptcy leaves a surplus; the insurance
   fund takes min(surplus, notional x the instrument's liquidation_fee), the rest stays with the
   trader.
3. What the book cannot absorb at bankruptcy is taken over by the insurance fund at the bankruptcy
   price and sold into the book at once, down to the price the fund can cover (and within the
   instrument's market protection band around the mark): the fund pays the account the difference
   between each fill and the bankruptcy price, so the account closes at bankruptcy and the fund
   carries the loss. The fund never holds a position nor goes below zero.
4. What neither absorbs is auto-deleveraged: the opposite positions are closed at the bankruptcy
   price in the instrument's queue order (InstrumentSpec.adl_ranking, perpcore.adl; BitMEX's by
   default), a transfer between the two accounts, exactly zero-sum.
5. An account left without positions and with negative equity (a gap through bankruptcy on a short
   with other debts, a loan past its collateral) has a deficit: its collateral is sold, then the fund
   covers what it can; what it cannot is a SocializedLoss: the account keeps that negative balance,
   reported as the venue's bad debt, the explicit last resort.

Margin loans past the liquidation LTV are perpcore.loan_liquidation's; every change of the fund
is recorded by perpcore.insurance. Money is in minor units of the settlement asset; every figure
is an integer and every transfer exact.
"""
from __future__ import annotations


from perpcore import messages as m
from perpcore._liquidation import Direction, LiquidationCore
from perpcore.adl import Deleveraging
from perpcore.config import RATE_SCALE
from perpcore.insurance import FundEntry, InsuranceFund
from perpcore.loan_liquidation import LoanLiquidation
from perpcore.messages import CancelReason, FundReason, LiquidationReason, Plan, Side

# a trigger's direction (perpcore._liquidation.BreachIndex): DOWN fires when the price falls to it
# or below (a long, collateral), UP when it rises to it or above (a short)
DOWN, UP = Direction.DOWN, Direction.UP


class _Params:
    """Per instrument, what the engine needs beyond the margin layer's SymbolRisk."""
    __slots__ = ("upt", "fee", "band", "max_price", "tiers")

    def __init__(self, spec, sr):
        self.upt = sr.upt
        self.tiers = sr.tiers
        self.fee = spec.liquidation_fee
        self.band = spec.market_protection
        self.max_price = spec.max_price


class Liquidation(LiquidationCore):
    """The liquidation component of an Exchange (ex.components["liquidation"]); stage 6's entry,
    after_command, up to the accounts in breach is perpcore._liquidation.LiquidationCore's."""

    def __init__(self, exchange):
        margin = exchange.components["margin"]
        self.insurance = InsuranceFund(exchange, margin.ledger)
        super().__init__(margin, self.insurance)
        self.exchange = exchange
        self.pricing = exchange.components["pricing"]
        config = exchange.config
        self.settle = config.settlement_asset
        self.params = {s: _Params(config.instruments[s], sr) for s, sr in margin.symbols.items()}
        self.adl = Deleveraging(
            exchange, margin, {s: spec.adl_ranking for s, spec in config.instruments.items()},
            10 ** config.assets[self.settle].decimals)  # one whole settlement asset
        self.loans = LoanLiquidation(exchange, margin, self.insurance)

    # ---- stage 6 -------------------------------------------------------------------------------

    def liquidate(self, breached: list, events: list) -> Plan:
        """The plan of a round's liquidations (LiquidationCore's rounds found the accounts in
        breach), in account order: a generator of the orders and cancels they need, which the
        Exchange runs through order entry and answers with each one's result (an order's fills);
        after the round it runs stage 5 again, as the liquidation trades moved the last price and
        the book (perpcore._exchange ExchangeCore.liquidate)."""
        self.adl.new_round()
        for account in breached:
            yield from self._liquidate(account, events)

    # ---- liquidating ---------------------------------------------------------------------------

    def _liquidate(self, account: int, events: list) -> Plan:
        ex = self.exchange
        margin = self.margin
        acc = margin.accounts[account]
        # its triggers, reserve and terms say nothing any more: keyed again before the command ends
        self._forget(account)
        equity, _, _, mm, _ = margin._figures(acc)
        if margin.in_breach(equity, mm):
            reason = LiquidationReason.MAINTENANCE
        elif mm == 0 and equity + self.socialized.get(account, 0) < 0:
            reason = LiquidationReason.DEFICIT
        else:
            return      # an earlier liquidation of this round restored it
        events.append(m.LiquidationStarted(ex.seq, ex.clock, account, equity, mm, reason))
        # all its orders, live and conditional: none may fill or fire into the positions closed
        yield m.CancelAccountOrders(account, CancelReason.LIQUIDATION)
        while margin.in_breach(equity, mm):
            symbol, qty = self._next_step(acc, equity > 0)
            yield from self._close(acc, symbol, qty, events)
            equity, _, _, mm, _ = margin._figures(acc)
        if mm == 0 and equity + self.socialized.get(account, 0) < 0:
            self._settle_deficit(acc, events)

    def _next_step(self, acc, solvent: bool) -> tuple[str, int]:
        """The position with the largest maintenance margin (ties: symbol order) and how many lots
        to close: down to the top of the tier below, or all of it in the first tier, or all of it
        when the account is insolvent (no step could bring its margin back)."""
        best = None
        mark_of = self.pricing.mark_price
        for symbol, pos in acc.positions.items():      # (in symbol order)
            size = pos.size
            if not size:
                continue
            p = self.params[symbol]
            per_lot = mark_of(symbol) * p.upt
            mm = p.tiers.maintenance(abs(size) * per_lot)
            if best is None or mm > best[0]:
                best = (mm, symbol, abs(size), per_lot)
        _, symbol, lots, per_lot = best
        if not solvent:
            return symbol, lots
        tiers = self.params[symbol].tiers
        k = tiers.tier(lots * per_lot)
        keep = tiers.caps[k - 1] // per_lot if k else 0
        return symbol, lots - keep

    def _close(self, acc, symbol: str, qty: int, events: list) -> Plan:
        """Closes `qty` lots of the account's position: the book at bankruptcy or better, then the
        fund's takeover, then deleveraging (see the module's steps 2-4)."""
        ex = self.exchange
        margin = self.margin
        p = self.params[symbol]
        upt = p.upt
        size = acc.positions[symbol].size
        long = size > 0
        side = Side.SELL if long else Side.BUY
        mark = self.pricing.mark_price(symbol)
        bankrupt = margin.bankruptcy_price(acc.id, symbol)
        if bankrupt is not None:
            limit, fee_ok = bankrupt, True
        elif long:
            limit, fee_ok = 1, True         # no price bankrupts it: any fill keeps equity >= 0
        else:
            limit, fee_ok = mark, False     # bankrupt at every price: its deficit is settled after
        # 1. the book, at the bankruptcy price or better
        fills = yield m.PlaceLiquidationOrder(acc.id, symbol, side, limit, qty)
        book_qty = sum(q for _, q in fills)
        book_value = sum(f * q for f, q in fills)
        fee = 0
        if fee_ok:
            for f, q in fills:
                surplus = ((f - limit) if long else (limit - f)) * q * upt
                fee += min(surplus, -(-f * q * upt * p.fee // RATE_SCALE))
        if fee:
            self.insurance.change(acc.cash, fee, FundReason.LIQUIDATION_FEE, acc.id, symbol,
                                  events)
        rest = qty - book_qty
        # 2. the fund takes the rest over at bankruptcy and sells it, as far as it can cover
        fund_qty = fund_value = cover = 0
        if rest:
            can = self.fund[self.settle] // (rest * upt)          # ticks of loss it can carry
            if long:
                worst = max(limit - can, -(-mark * (RATE_SCALE - p.band) // RATE_SCALE), 1)
            else:
                worst = min(limit + can, mark * (RATE_SCALE + p.band) // RATE_SCALE, p.max_price)
            if (worst < limit) if long else (worst > limit):
                taken = yield m.PlaceLiquidationOrder(acc.id, symbol, side, worst, rest)
                fund_qty = sum(q for _, q in taken)
                fund_value = sum(f * q for f, q in taken)
                cover = abs(limit * fund_qty - fund_value) * upt
                if cover:
                    self.insurance.change(acc.cash, -cover, FundReason.LOSS_COVERED, acc.id,
                                          symbol, events)
                rest -= fund_qty
        # 3. deleveraging at the bankruptcy price
        adl_price = bankrupt if bankrupt is not None else mark
        adl_qty = rest
        if rest:
            self.adl.deleverage(acc.id, symbol, long, adl_price, rest, events)
        events.append(m.PositionLiquidated(
            ex.seq, ex.clock, acc.id, symbol, side, qty, acc.positions[symbol].size, mark,
            adl_price, book_qty, book_value, fund_qty, fund_value, adl_qty, fee, fee - cover))

    # ---- deficits ------------------------------------------------------------------------------

    def _settle_deficit(self, acc, events: list) -> None:
        """An account without positions whose equity is below zero: its collateral, then the fund,
        then a socialised loss."""
        ex = self.exchange
        self.loans.sell_all(acc, events)
        equity = self.margin._figures(acc)[0]
        deficit = -equity - self.socialized.get(acc.id, 0)
        if deficit <= 0:
            return
        cover = min(deficit, self.fund[self.settle])
        if cover:
            self.insurance.change(acc.cash, -cover, FundReason.DEFICIT_COVERED, acc.id, "",
                                  events)
            self.loans.repay_from_cash(acc, events)
        if deficit > cover:
            total = self.socialized[acc.id] = self.socialized.get(acc.id, 0) + deficit - cover
            events.append(m.SocializedLoss(ex.seq, ex.clock, acc.id, self.settle, deficit - cover,
                                           total))

    def _record_external(self, events: list) -> None:
        """The core found the fund changed by another layer: perpcore.insurance records it."""
        self.insurance.record_external(events)

    # ---- queries -------------------------------------------------------------------------------

    def fund_history(self, asset: str | None = None) -> list[FundEntry]:
        """The insurance fund's recent changes (perpcore.insurance.InsuranceFund.history)."""
        return self.insurance.history(asset)

    def adl_queue(self, symbol: str, sign: int) -> list[int]:
        """Accounts holding longs (sign 1) or shorts (-1) in the symbol, in deleveraging order."""
        return self.adl.queue(symbol, sign)

    def adl_indicator(self, account: int, symbol: str) -> int | None:
        """The 1-5 deleveraging light of the account's position (5: first in line), None when
        flat."""
        return self.adl.indicator_of(account, symbol)

    # ---- snapshots -----------------------------------------------------------------------------

    def to_state(self) -> dict:
        return {
            "socialized": sorted(self.socialized.items()),
            "fund_seen": self.insurance.to_state(),
        }

    def from_state(self, state: dict) -> None:
        self.socialized.clear()
        self.socialized.update(state["socialized"])
        self.insurance.from_state(state["fund_seen"])
        # the index is derived: rebuilt from the restored accounts and prices
        self.reset()
        for account in sorted(self.margin.accounts):
            self._key(self.margin.accounts[account])
