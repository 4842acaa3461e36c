"""Cross-margin positions and risk: positions, fills, collateral, margins and the pre-trade check.

This module owns the accounts' positions and their risk: valuation (equity, margins, what may be
withdrawn, liquidation and bankruptcy prices), leverage, the positions' funding cash, the audit of
the books and the margin layer's state.

It is the Exchange's "margin" component (also ex.margin): it knows, at every event, what each
account owns (cash and collateral, perpcore.ledger), owes (its loan, perpcore.lending) and risks
(one net position per symbol and its open orders), and refuses what the account could not carry.
The arithmetic lives in perpcore.risk; prices come from the pricing component (mark for positions,
index for collateral), the only place this layer reads them. It composes the owners of the other
concerns: accounts and transfers (perpcore.transfers, margin.transfers), loans and multi-assets
mode (perpcore.lending, margin.loans) and the account views (perpcore.views).

Definitions (money in minor units of the settlement asset, rounded conservatively):
- position: size (signed lots) and entry value (ticks x lots, exact). Adding to a position adds
  price x qty; reducing q of |size| lots removes cost x q / |size| of the entry value, rounded so
  that the PnL realised now is rounded down (the remainder stays in the entry value and is realised
  with the rest: over a position's life the total is exact). A fill that flips the position closes
  it and opens the rest at the fill price.
- realised PnL and fees settle in cash at each fill: fee = notional x rate rounded up (a maker
  rebate, a negative rate, rounds toward zero), paid to the fee account.
- unrealised PnL = size x mark x upt - signed entry value x upt; without a mark the position is
  valued at its entry (unrealised 0).
- collateral value: each non-cash asset at its index less the haircut, rounded down (0 without an
  index). equity = cash + collateral value - loan + unrealised PnL.
- initial margin: per position notional at mark / leverage, rounded up; plus each symbol's order
  margin, max(bids, offers), each side's orders netted against the position (perpcore.risk).
- maintenance margin: per position by its notional's tier, rounded up.
- liquidatable: maintenance > 0 and equity <= maintenance (margin ratio >= 100%); with
  MarginSpec.maintenance_trigger_at "passing", equity < maintenance (equity + 1 <= maintenance:
  every comparison and liquidation price adds maintenance_shift, 1, to equity).
- withdrawable: cash and collateral may leave while equity without unrealised profit stays at or
  above initial margin, the loan-to-value at or below max_ltv, and balances non-negative.
- loan-to-value and multi-assets mode: see perpcore.lending.
- funding in transit (perpcore.funding): an account's positions whose funding of an interval is
  not yet settled count at what they will pay or receive: cash as a query, a check or a decision
  sees it (balances, equity, available) is cash as if every settlement were done. A command that
  moves the account's money (a fill, a transfer, a loan, a collateral sale) settles it first, with
  its FundingPaid.
"""
from __future__ import annotations

from sortedcontainers import SortedList

from perpcore import _funding
from perpcore._ledger import move
from perpcore import messages as m
from perpcore.config import RATE_SCALE
from perpcore.ledger import Audit, Ledger
from perpcore.lending import Lending, Loans
from perpcore.errors import RejectCode, reject
from perpcore._margin import Account, MarginCore, Position, SymbolRisk
from perpcore.risk import CollateralPrice, bankruptcy_price, ceil_div, ltv
from perpcore.transfers import Transfers
from perpcore.views import AccountView, account_view


class Margin(MarginCore):
    """The margin component of an Exchange (ex.components["margin"], ex.margin)."""

    def __init__(self, exchange):
        config = exchange.config
        self.config = config
        self.ledger = Ledger(list(config.assets), config.limits)
        super().__init__(exchange, self.ledger, Lending(config, self.ledger),
                         [CollateralPrice(config, a) for a in sorted(config.margin.haircuts)])
        self.insurance = self.ledger.venue["insurance_fund"]
        # every account, ascending: the order a funding interval in transit is swept in
        self.account_ids = SortedList()
        # the concerns it composes
        self.transfers = Transfers(self)
        self.loans = Loans(self)

    # ---- accounts, transfers and loans (their owners' commands, as the margin component's) ----

    def open_account(self, account: int, professional: bool) -> None:
        self.transfers.open_account(account, professional)

    def deposit(self, cmd: m.Deposit, events: list) -> None:
        self.transfers.deposit(cmd, events)

    def withdraw(self, cmd: m.Withdraw, events: list) -> None:
        self.transfers.withdraw(cmd, events)

    def borrow(self, cmd: m.Borrow, events: list) -> None:
        self.loans.borrow(cmd, events)

    def repay(self, cmd: m.Repay, events: list) -> m.Plan:
        return self.loans.repay(cmd, events)

    # ---- leverage ------------------------------------------------------------------------------

    def set_leverage(self, cmd: m.SetLeverage, events: list) -> None:
        acc = self.accounts[cmd.account]
        sr = self._symbol(cmd.symbol)
        lev = cmd.leverage
        cap = min(sr.max_leverage, acc.leverage_cap)
        if not 1 <= lev <= cap:
            reject(RejectCode.LEVERAGE_NOT_ALLOWED,
                    f"leverage {lev} outside 1..{cap} for this account and {sr.symbol}")
        pos = acc.positions.get(sr.symbol)
        max_notional = sr.tiers.max_notional(lev)
        if pos is not None:
            mark = self._mark(sr.symbol)
            worst = max(self._worst_notional(pos, sr, mark, True, pos.buy_qty, pos.buy_value),
                        self._worst_notional(pos, sr, mark, False, pos.sell_qty, pos.sell_value))
            if worst > max_notional:
                reject(RejectCode.LEVERAGE_NOT_ALLOWED,
                        f"position and orders of {worst} exceed the {max_notional} that "
                        f"{lev}x allows")
            if lev < pos.leverage:
                # more initial margin: the account must still carry it
                old = pos.leverage
                pos.leverage = lev
                equity, _, im = self._figures(acc)[:3]
                pos.leverage = old
                if equity < im:
                    reject(RejectCode.INSUFFICIENT_MARGIN,
                            f"equity {equity} below the initial margin {im} at {lev}x")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        self._position(acc, sr).leverage = lev
        events.append(m.LeverageSet(ex.seq, ex.clock, acc.id, sr.symbol, lev, max_notional))

    def _symbol(self, symbol) -> SymbolRisk:
        sr = self.symbols.get(symbol) if type(symbol) is str else None
        if sr is None:
            reject(RejectCode.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        return sr

    # ---- funding -------------------------------------------------------------------------------

    def open_positions(self, symbol: str) -> list[tuple[int, int]]:
        """[(account, signed lots)] of every open position in the symbol, by account."""
        return _funding.open_positions(self.symbols[symbol])

    def settle_funding(self, symbol: str, payments: list[tuple[int, int]],
                       insurance_remainder: int) -> None:
        """Moves funding cash: each (account, amount) > 0 receives, < 0 pays; the rounding
        remainder goes to the insurance fund. The transfers must sum to zero with it."""
        if sum(amount for _, amount in payments) + insurance_remainder != 0:
            raise ValueError(f"{symbol} funding does not sum to zero with its remainder")
        settle = self.settle
        # through the funding in transit (back where it was once the remainder is in the fund)
        for account, amount in payments:
            move(self.funding, self.accounts[account].cash, settle, amount)
        move(self.funding, self.insurance, settle, insurance_remainder)

    # ---- valuation -----------------------------------------------------------------------------

    def _collateral_market_value(self, acc: Account) -> int:
        return sum(c.market_value(acc.cash[c.asset], self._index(c.symbol))
                   for c in self.collateral)

    def balances(self, acc: Account) -> dict[str, int]:
        """The account's balances as if its funding in transit were settled."""
        shown = dict(acc.cash)      # a copy: no money moves
        shown[self.settle] += self.pending(acc)
        return shown

    def available(self, acc: Account, figures: tuple) -> dict[str, int]:
        """Per asset, the most a Withdraw may take now (see the module's definitions)."""
        equity, upnl, im, _, coll = figures
        headroom = equity - max(upnl, 0) - im       # unrealised profit is not withdrawable
        cash = self.balances(acc)
        out = {}
        for asset in self.ledger.assets:
            # an asset that is neither cash nor collateral does not count toward equity
            out[asset] = max(0, cash[asset])
        out[self.settle] = max(0, min(cash[self.settle], headroom))
        debt = self.lending.debts.get(acc.id, 0)
        market = self._collateral_market_value(acc) if debt else 0
        max_ltv = self.loans.max_ltv
        for c in self.collateral:
            held = cash[c.asset]
            if held <= 0:
                out[c.asset] = 0
                continue
            index = self._index(c.symbol)
            if index is None:
                # unpriced collateral counts for nothing: it may leave if the account is sound
                sound = headroom >= 0 and (not debt or ltv(debt, market) <= max_ltv)
                out[c.asset] = held if sound else 0
                continue
            # keep enough that its value covers what the rest of the account does not
            keep = c.min_amount(c.value(held, index) - headroom, index)
            if debt:
                need = ceil_div(debt * RATE_SCALE, max_ltv) - (market - c.market_value(held, index))
                keep = max(keep, c.min_amount(need, index, haircut=False))
            out[c.asset] = max(0, held - keep)
        return out

    def liquidatable(self, account: int) -> bool:
        """True when the account holds positions and equity <= maintenance margin (< with
        maintenance_trigger_at "passing"): the rule the liquidation engine applies (on the mark)."""
        equity, _, _, mm, _ = self._figures(self.accounts[account])
        return self.in_breach(equity, mm)

    def in_breach(self, equity: int, mm: int) -> bool:
        """The maintenance breach, from an account's equity and maintenance margin: it holds
        positions and equity <= maintenance (< with maintenance_trigger_at "passing")."""
        return mm > 0 and equity + self.maintenance_shift <= mm

    def figures(self, account: int) -> dict:
        """Equity, unrealised PnL, initial and maintenance margin, collateral value (minor units
        of the settlement asset): what the liquidation engine needs, cheaply."""
        equity, upnl, im, mm, coll = self._figures(self.accounts[account])
        return {"equity": equity, "unrealised_pnl": upnl, "initial_margin": im,
                "maintenance_margin": mm, "collateral_value": coll}

    def _price_base(self, acc: Account, symbol: str, figures: tuple) -> tuple[Position, int, int]:
        """(position, equity less the position's value at price 0, maintenance of the others)."""
        equity, _, _, mm, _ = figures
        sr = self.symbols[symbol]
        pos = acc.positions[symbol]
        mark = self._mark(symbol)
        upt = sr.upt
        if mark is None:
            value = pos.signed_cost() * upt            # valued at entry
            own_mm = sr.tiers.maintenance(pos.cost * upt)
        else:
            value = pos.size * mark * upt
            own_mm = sr.tiers.maintenance(abs(pos.size) * mark * upt)
        # equity = rest + size*upt*p - signed_cost*upt; at the mark that is `equity`
        base = equity - value
        return pos, base, mm - own_mm

    def liquidation_price(self, account: int, symbol: str, figures: tuple | None = None) -> int | None:
        """The mark (ticks) at which the engine liquidates the account for this position, every
        other price held fixed: for a long the highest tick in breach (liquidated
        when mark <= it), for a short the lowest (when mark >= it). None: no position, or a long
        that no positive price liquidates. Exact: rounded to the tick where the rule first holds."""
        acc = self.accounts[account]
        pos = acc.positions.get(symbol)
        if pos is None or not pos.size:
            return None
        figures = figures or self._figures(acc)
        pos, base, others = self._price_base(acc, symbol, figures)
        return self.symbols[symbol].tiers.liquidation_price(
            pos.size, self.symbols[symbol].upt, base + self.maintenance_shift - others)

    def bankruptcy_price(self, account: int, symbol: str, figures: tuple | None = None) -> int | None:
        """The mark (ticks) at which the account's equity reaches zero, others held fixed, rounded
        toward the mark (a long: the lowest tick with equity >= 0; a short: the highest)."""
        acc = self.accounts[account]
        pos = acc.positions.get(symbol)
        if pos is None or not pos.size:
            return None
        figures = figures or self._figures(acc)
        pos, base, _ = self._price_base(acc, symbol, figures)
        return bankruptcy_price(pos.size, self.symbols[symbol].upt, base)

    def view(self, account: int) -> AccountView:
        """The account's view (perpcore.views)."""
        return account_view(self, account)

    # ---- the layer's hooks (the exchange core calls them): the loans' ---------------------------

    def on_clock(self, t_end: int, events: list) -> m.Plan:
        """Interest of every accrual time up to t_end, then the loans' checks: a plan (its loans
        past the liquidation LTV, perpcore.lending.Loans)."""
        return self.loans.on_clock(t_end, events)

    def after_command(self, events: list) -> m.Plan | None:
        """Multi-assets mode's auto-exchange, then the loans' checks: a plan, as on_clock()."""
        return self.loans.after_command(events)

    def after_liquidation(self, events: list) -> None:
        """Stage 6's fills may leave accounts for the next command's auto-exchange."""
        self.loans.after_liquidation(events)

    # ---- the books -----------------------------------------------------------------------------

    def audit(self) -> Audit:
        entry = -sum(sr.open_entry() * sr.upt for sr in self.symbols.values())
        return self.ledger.audit({self.settle: entry}, {self.settle: sum(self.lending.debts.values())},
                                 {self.settle: self.lending.receivable})

    def insurance_fund(self, asset: str) -> int:
        return self.insurance[asset]

    # ---- snapshots -----------------------------------------------------------------------------

    def to_state(self) -> dict:
        positions = []
        for account in sorted(self.accounts):
            acc = self.accounts[account]
            for symbol, pos in acc.positions.items():      # (in symbol order)
                if not pos.idle(self._leverage_default(acc, self.symbols[symbol])):
                    positions.append((account, symbol, pos.size, pos.cost, pos.leverage,
                                      pos.buy_qty, pos.buy_value, pos.sell_qty, pos.sell_value,
                                      self.reduce_only_ids.get((account, symbol), [])))
        pending = self.loans.exchange_pending
        return {
            "accounts": [(a, acc.professional) for a, acc in sorted(self.accounts.items())],
            "ledger": self.ledger.to_state(self.exchange.clock),
            "lending": self.lending.to_state(),
            "positions": positions,
            "reduce_only": [(order_id, *order)
                            for order_id, order in sorted(self.reduce_only_orders.items())],
            # per interval in transit: its figures and the accounts whose position is still due
            "funding": [(symbol, sr.transit.to_state(),
                         sorted(a for a, pos in sr.positions.items()
                                if pos.size and pos.funded != sr.transit.number))
                        for symbol, sr in self.symbols.items() if sr.transit is not None],
        } | ({"auto_exchange": sorted(pending)} if pending else {})
        # (only when there is one: a state without it hashes as before multi-assets mode existed)

    def from_state(self, state: dict) -> None:
        self.ledger.from_state(state["ledger"])
        self.lending.from_state(state["lending"])
        self.clear_accounts()
        self.account_ids.clear()
        self.reduce_only_orders.clear()
        self.reduce_only_ids.clear()
        for account, professional in state["accounts"]:
            self.open_account(account, professional)
        for account, symbol, size, cost, leverage, *orders, reduce_only in state["positions"]:
            pos = self._position(self.accounts[account], self.symbols[symbol])
            pos.size, pos.cost, pos.leverage = size, cost, leverage
            pos.buy_qty, pos.buy_value, pos.sell_qty, pos.sell_value = orders
            if reduce_only:
                self.reduce_only_ids[account, symbol] = reduce_only
                pos.reduce_only = len(reduce_only)
        for order_id, *order in state["reduce_only"]:
            self.reduce_only_orders[order_id] = order
        for sr in self.symbols.values():
            sr.count_open_interest()
        _funding.restore(self, [(self.symbols[symbol], interval, due)
                                for symbol, interval, due in state["funding"]])
        self.reduce_only_dirty.clear()
        self.loans.from_state(state.get("auto_exchange", ()))

