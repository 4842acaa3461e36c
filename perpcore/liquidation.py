"""Liquidation: the engine, the insurance fund and auto-deleveraging (DESIGN.md stage 6).

The Exchange's "liquidation" component. After every command (after the mark and the loans have been
brought up to date) it finds the accounts the command's price moves and money movements may have put
under maintenance, and liquidates them, in account order, until none is left. It reads money,
positions and margin through perpcore.margin and prices through perpcore.pricing; the only state of
its own is the socialised losses (and a recent window of the fund's history, outside the state).

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

Margin loans: past the liquidation LTV (margin calls on_loan_breach; at it too with MarginSpec
trigger_at "reaching") the loan is first repaid from cash, then collateral is sold to the platform
at index less the conversion penalty (the penalty goes to the insurance fund), by
MarginSpec.loan_liquidation: "restore_max_ltv", the least amount that brings the loan-to-value back
to the maximum LTV; "repay_in_full", the least that repays the whole loan and its fee
(loan_liquidation_fee of the loan, to the insurance fund).

Every change of the fund, by this engine or another layer (funding remainders), is an
InsuranceFundChanged event and an entry of fund_history() (the newest limits.history_kept).
Money is in minor units of the settlement asset; every figure is an integer and every transfer
exact.
"""
from __future__ import annotations

from collections import deque
from itertools import islice

import msgspec

from perpcore import messages as m
from perpcore._ledger import move
from perpcore._liquidation import Direction, LiquidationCore
from perpcore.adl import Holding, indicator, venue_ranking
from perpcore.config import RATE_SCALE
from perpcore.errors import RejectCode, Rejection
from perpcore.lending import amount_for_proceeds
from perpcore.messages import CancelReason, FundReason, LiquidationReason, Side

# a trigger's direction (perpcore._liquidation.BreachIndex): DOWN fires when the price falls to it
# or below (a long, collateral), UP when it rises to it or above (a short)
DOWN, UP = Direction.DOWN, Direction.UP


class FundEntry(msgspec.Struct, frozen=True):
    """One change of the insurance fund."""
    seq: int
    ts: int
    asset: str
    delta: int
    balance: int                        # afterwards
    reason: FundReason
    account: int = 0                    # the account concerned, 0: none
    symbol: str = ""


class _Params:
    """Per instrument, what the engine needs beyond the margin layer's SymbolRisk."""
    __slots__ = ("upt", "fee", "band", "max_price", "tiers", "adl_ranking")

    def __init__(self, spec, sr):
        self.upt = sr.upt
        self.adl_ranking = spec.adl_ranking
        self.tiers = sr.tiers
        self.fee = spec.liquidation_fee
        self.band = spec.market_protection
        self.max_price = spec.max_price


class Liquidation(LiquidationCore):
    """The liquidation component of an Exchange (ex.components["liquidation"]); stage 6's entry,
    after_command, up to the accounts in breach is perpcore._liquidation.LiquidationCore's."""

    def __init__(self, exchange):
        super().__init__(exchange.components["margin"])
        self.exchange = exchange
        self.pricing = exchange.components["pricing"]
        config = exchange.config
        self.settle = config.settlement_asset
        self.unit = 10 ** config.assets[self.settle].decimals     # one whole settlement asset
        self.fund = self.margin.insurance               # the ledger's insurance bucket, by asset
        self.params = {s: _Params(config.instruments[s], sr) for s, sr in self.margin.symbols.items()}
        # the recent changes for fund_history(); the journal's events hold them all, so they stay
        # out of the state (a restored exchange's window starts at its snapshot)
        self.history: deque[FundEntry] = deque(maxlen=config.limits.history_kept)
        self._fund_seen = dict(self.fund)               # the fund as this engine last recorded it
        self._queues: dict[tuple[str, int], list[int]] = {}
        # past the liquidation LTV (MarginSpec.loan_liquidation): the loan repaid in full, with
        # its fee, or the maximum LTV restored
        self.repays_in_full = config.margin.loan_liquidation == "repay_in_full"
        self.loan_fee_rate = config.margin.loan_liquidation_fee

    # ---- stage 6 -------------------------------------------------------------------------------

    def liquidate(self, breached: list, events: list, start: int) -> None:
        """A round's accounts in breach (LiquidationCore's rounds found them), liquidated in account
        order; then stage 5 again, as the liquidation trades moved the last price and the book."""
        self._queues.clear()
        for account in breached:
            self._liquidate(account, events)
        self.exchange._post_trade(events, start)

    # ---- liquidating ---------------------------------------------------------------------------

    def _liquidate(self, account: int, events: list) -> None:
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
        self._cancel_orders(account, events)
        while margin.in_breach(equity, mm):
            symbol, qty = self._next_step(acc, equity > 0)
            self._close(acc, symbol, qty, events)
            equity, _, _, mm, _ = margin._figures(acc)
        if mm == 0 and equity + self.socialized.get(account, 0) < 0:
            self._settle_deficit(acc, events)

    def _cancel_orders(self, account: int, events: list) -> None:
        ex = self.exchange
        for symbol, market in ex.markets.items():
            # by order id: the book's own order (arrival) is not kept by a snapshot's load(), so
            # after a restore it would differ, and it must not reach the events
            for order_id, side, price, open_qty in sorted(market.book.cancel_account(account)):
                self.margin.order_closed(order_id, account, symbol, side, price, open_qty)
                events.append(m.OrderCancelled(ex.seq, ex.clock, account, symbol, order_id,
                                               open_qty, CancelReason.LIQUIDATION))
            # its conditional orders too: none may fire into the positions being closed
            ex.triggers.cancel_account(account, symbol, CancelReason.LIQUIDATION, events)

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

    def _close(self, acc, symbol: str, qty: int, events: list) -> None:
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
        fills = self._ioc(acc.id, symbol, side, limit, qty, events)
        book_qty = sum(q for _, q in fills)
        book_value = sum(f * q for f, q in fills)
        fee = 0
        if fee_ok:
            for f, q in fills:
                surplus = ((f - limit) if long else (limit - f)) * q * upt
                fee += min(surplus, -(-f * q * upt * p.fee // RATE_SCALE))
        if fee:
            self._fund_change(acc.cash, fee, FundReason.LIQUIDATION_FEE, acc.id, symbol, events)
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
                taken = self._ioc(acc.id, symbol, side, worst, rest, events)
                fund_qty = sum(q for _, q in taken)
                fund_value = sum(f * q for f, q in taken)
                cover = abs(limit * fund_qty - fund_value) * upt
                if cover:
                    self._fund_change(acc.cash, -cover, FundReason.LOSS_COVERED, acc.id, symbol,
                                      events)
                rest -= fund_qty
        # 3. deleveraging at the bankruptcy price
        adl_price = bankrupt if bankrupt is not None else mark
        adl_qty = rest
        if rest:
            self._deleverage(acc.id, symbol, long, adl_price, rest, events)
        events.append(m.PositionLiquidated(
            ex.seq, ex.clock, acc.id, symbol, side, qty, acc.positions[symbol].size, mark,
            adl_price, book_qty, book_value, fund_qty, fund_value, adl_qty, fee, fee - cover))

    def _ioc(self, account: int, symbol: str, side: Side, limit: int, qty: int,
             events: list) -> list[tuple[int, int]]:
        """[(price, qty)] of the fills of an IOC the engine places for the account (no trading fee:
        the liquidation fee replaces it)."""
        start = len(events)
        order_id = self.exchange.place_internal(account, symbol, side, limit, qty, events,
                                                taker_fee=0)
        return [(e.price, e.qty) for e in islice(events, start, None)
                if type(e) is m.OrderFilled and e.taker_order_id == order_id]

    def _deleverage(self, account: int, symbol: str, long: bool, price: int, qty: int,
                    events: list) -> None:
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
            queue = self._queues[key] = self.adl_queue(symbol, sign)
        return queue

    # ---- deficits and loans --------------------------------------------------------------------

    def _settle_deficit(self, acc, events: list) -> None:
        """An account without positions whose equity is below zero: its collateral, then the fund,
        then a socialised loss."""
        ex = self.exchange
        margin = self.margin
        for c in margin.collateral:
            held = acc.cash[c.asset]
            index = self.pricing.index_price(c.symbol)
            if held > 0 and index is not None and not self.pricing.is_stale(c.symbol):
                self._convert(acc, c, held, index, events)
        self._repay_from_cash(acc, events)
        equity = margin._figures(acc)[0]
        deficit = -equity - self.socialized.get(acc.id, 0)
        if deficit <= 0:
            return
        cover = min(deficit, self.fund[self.settle])
        if cover:
            self._fund_change(acc.cash, -cover, FundReason.DEFICIT_COVERED, acc.id, "", events)
            self._repay_from_cash(acc, events)
        if deficit > cover:
            total = self.socialized[acc.id] = self.socialized.get(acc.id, 0) + deficit - cover
            events.append(m.SocializedLoss(ex.seq, ex.clock, acc.id, self.settle, deficit - cover,
                                           total))

    def _repay_from_cash(self, acc, events: list) -> None:
        lending = self.margin.lending
        amount = min(lending.debts.get(acc.id, 0), max(acc.cash[self.settle], 0))
        if amount:
            debt = lending.repay(acc.id, amount)
            ex = self.exchange
            events.append(m.Repaid(ex.seq, ex.clock, acc.id, self.settle, amount, debt))

    def _convert(self, acc, c, amount: int, index: int, events: list) -> None:
        """Sells collateral to the platform at index less the penalty; the penalty (what the
        platform did not pay of the market value) goes to the insurance fund."""
        ex = self.exchange
        lending = self.margin.lending
        proceeds, repaid, debt = lending.convert(acc.id, c, amount, index)
        events.append(m.CollateralConverted(ex.seq, ex.clock, acc.id, c.asset, amount, index,
                                            proceeds, repaid, debt))
        penalty = c.market_value(amount, index) - proceeds
        if penalty:
            self._fund_change(lending.platform, penalty, FundReason.COLLATERAL_PENALTY, acc.id,
                              c.symbol, events)

    def sell_collateral(self, account: int, events: list) -> None:
        """The margin layer's loan-to-value passed the liquidation level: repay from cash, then sell
        the least collateral (in asset order) that brings the loan back to the maximum LTV. An
        account with neither cash nor priced collateral to give (a loan already written off) is
        left as it is."""
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
        (self._repay_in_full if self.repays_in_full else self._restore_max_ltv)(acc, events)
        if account not in margin.lending.debts:
            margin.lending.called.discard(account)

    def _restore_max_ltv(self, acc, events: list) -> None:
        """MarginSpec.loan_liquidation "restore_max_ltv": repay from cash, then sell the least
        collateral (in asset order) that brings the loan back to the maximum LTV."""
        margin = self.margin
        account = acc.id
        self._repay_from_cash(acc, events)
        target = margin.max_ltv
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
            self._convert(acc, c, amount, index, events)

    def _repay_in_full(self, acc, events: list) -> None:
        """MarginSpec.loan_liquidation "repay_in_full": the whole loan is repaid, from cash, then
        from collateral sold (in asset order) at index less the conversion penalty, the least that
        covers the loan and the fee; the fee (loan_liquidation_fee of the loan at the breach,
        rounded up) then goes from the account's cash to the insurance fund, as much of it as the
        cash holds (what the collateral could not cover stays owed, and no fee is taken from it)."""
        margin = self.margin
        lending = margin.lending
        settle = self.settle
        fee = -(-lending.debts[acc.id] * self.loan_fee_rate // RATE_SCALE)
        self._repay_from_cash(acc, events)
        for c in margin.collateral:
            need = lending.debts.get(acc.id, 0) + fee - max(acc.cash[settle], 0)
            held = acc.cash[c.asset]
            index = self.pricing.index_price(c.symbol)
            if need <= 0:
                break
            if held <= 0 or index is None or self.pricing.is_stale(c.symbol):
                continue
            amount = min(held, amount_for_proceeds(c, need, index, lending.penalty))
            self._convert(acc, c, amount, index, events)
        fee = min(fee, max(acc.cash[settle], 0))
        if fee:
            self._fund_change(acc.cash, fee, FundReason.COLLATERAL_PENALTY, acc.id, "", events)

    # ---- the fund ------------------------------------------------------------------------------

    def _fund_change(self, counterpart: dict, delta: int, reason: FundReason, account: int,
                     symbol: str, events: list) -> None:
        """delta into the fund from the counterpart's balances (< 0: out of the fund to them)."""
        asset = self.settle
        self._fund_seen[asset] = balance = move(counterpart, self.fund, asset, delta)
        self._record(asset, delta, balance, reason, account, symbol, events)

    def _record(self, asset, delta, balance, reason, account, symbol, events) -> None:
        ex = self.exchange
        self.history.append(FundEntry(ex.seq, ex.clock, asset, delta, balance, reason, account,
                                      symbol))
        events.append(m.InsuranceFundChanged(ex.seq, ex.clock, asset, delta, balance, reason,
                                             account, symbol))

    def _record_external(self, events: list) -> None:
        """Changes other layers made (funding remainders, with their FundingSettled): recorded so
        the history is whole."""
        funding = sum(e.insurance for e in events if type(e) is m.FundingSettled)
        for asset in sorted(self.fund):
            delta = self.fund[asset] - self._fund_seen.get(asset, 0)
            if delta:
                reason = FundReason.FUNDING if asset == self.settle and delta == funding \
                    else FundReason.OTHER
                self._fund_seen[asset] = self.fund[asset]
                self._record(asset, delta, self.fund[asset], reason, 0, "", events)

    def deposit(self, cmd: m.FundInsurance, events: list) -> None:
        """FundInsurance: the venue pays capital into its insurance fund."""
        if cmd.asset not in self.fund:
            raise Rejection(RejectCode.UNKNOWN_ASSET, f"unknown asset {cmd.asset!r}")
        if cmd.amount <= 0:
            raise Rejection(RejectCode.INVALID_AMOUNT, f"amount {cmd.amount} must be positive")
        room = self.margin.ledger.room(cmd.asset, self.fund[cmd.asset])
        if cmd.amount > room:
            raise Rejection(RejectCode.AMOUNT_TOO_LARGE,
                            f"{cmd.amount} {cmd.asset} would pass the venue's range (room {room})")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        self.margin.ledger.deposit_venue("insurance_fund", cmd.asset, cmd.amount)
        self._fund_seen[cmd.asset] = self.fund[cmd.asset]
        self._record(cmd.asset, cmd.amount, self.fund[cmd.asset], FundReason.DEPOSIT, 0, "",
                     events)

    # ---- queries -------------------------------------------------------------------------------

    def fund_history(self, asset: str | None = None) -> list[FundEntry]:
        """The recent changes of the insurance fund, oldest first (of one asset, or all): the newest
        limits.history_kept of all assets, since the exchange was created or restored. Older ones
        are the journal's InsuranceFundChanged events."""
        return [e for e in self.history if asset is None or e.asset == asset]

    def adl_queue(self, symbol: str, sign: int) -> list[int]:
        """Accounts holding longs (sign 1) or shorts (-1) in the symbol, in deleveraging order."""
        margin = self.margin
        mark = self.pricing.mark_price(symbol)
        if mark is None:
            return []
        upt = self.params[symbol].upt
        holdings = []
        for account, pos in sorted(margin.symbols[symbol].positions.items()):
            if pos.size * sign > 0:
                figures = margin._figures(margin.accounts[account])
                equity, upnl, _, mm, _ = figures
                holdings.append(Holding(account, pos.size, pos.cost,
                                        margin.bankruptcy_price(account, symbol, figures),
                                        abs(pos.size) * mark * upt, equity, upnl, mm))
        return venue_ranking(self.params[symbol].adl_ranking, holdings, mark, self.unit)

    def adl_indicator(self, account: int, symbol: str) -> int | None:
        """The 1-5 deleveraging light of the account's position (5: first in line), None when flat."""
        pos = self.margin.accounts[account].positions.get(symbol)
        if pos is None or not pos.size:
            return None
        queue = self.adl_queue(symbol, 1 if pos.size > 0 else -1)
        return indicator(queue.index(account), len(queue))

    # ---- snapshots -----------------------------------------------------------------------------

    def to_state(self) -> dict:
        return {
            "socialized": sorted(self.socialized.items()),
            "fund_seen": sorted(self._fund_seen.items()),
        }

    def from_state(self, state: dict) -> None:
        self.history.clear()
        self.socialized = dict(state["socialized"])
        self._fund_seen = dict(state["fund_seen"])
        # the index is derived: rebuilt from the restored accounts and prices
        self.reset()
        for account in sorted(self.margin.accounts):
            self._key(self.margin.accounts[account])
