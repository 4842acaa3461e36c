"""Cross-margin accounts: positions, fills, collateral, margin requirements and the pre-trade check.

The Exchange's "margin" component (also ex.margin). It knows, at every event, what each account
owns (cash and collateral, perpcore.ledger), owes (its loan, perpcore.lending) and risks (one net
position per symbol and its open orders), and refuses what the account could not carry. The
arithmetic lives in perpcore.risk; prices come from the pricing component (mark for positions,
index for collateral), the only place this layer reads them.

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
- loan-to-value = loan / collateral value at index before haircuts, rounded up; a Borrow may take
  it up to max_ltv inclusive; warning_ltv and liquidation_ltv fire past the level, or at it too
  (MarginSpec.trigger_at "reaching").
- multi-assets mode (MarginSpec.multi_assets): a settlement balance a command's fill or funding
  left below the auto-exchange threshold is brought back to zero by selling collateral to the
  platform (after_command, before liquidation; see _auto_exchange).
- funding in transit (perpcore.funding): an account's positions whose funding of an interval is
  not yet settled count at what they will pay or receive: cash as a query, a check or a decision
  sees it (balances, equity, available) is cash as if every settlement were done. A command that
  moves the account's money (a fill, a transfer, a loan, a collateral sale) settles it first, with
  its FundingPaid.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import msgspec
from sortedcontainers import SortedList

from perpcore import _funding
from perpcore._ledger import move
from perpcore import messages as m
from perpcore.config import DECIMAL, RATE_SCALE
from perpcore.ledger import Audit, Ledger
from perpcore.lending import Lending, amount_for_proceeds
from perpcore.errors import RejectCode, reject
from perpcore._margin import Account, MarginCore, Position, SymbolRisk
from perpcore.risk import CollateralPrice, bankruptcy_price, ceil_div, ltv, order_margin


class PositionView(msgspec.Struct, frozen=True):
    """One position of an account: size, entry, valuation at the mark, margins and the prices at
    which it is liquidated and bankrupt; integers in ticks, lots and minor units as the engine keeps
    them, except the entry price a person reads (in the quote currency; entry_price_ticks is its
    tick form)."""
    symbol: str
    size: int                           # signed lots
    entry_value: int                    # ticks x lots, exact
    entry_price: Decimal                # quote currency: entry_value x tick size / |size|
    mark_price: int | None
    notional: int                       # at mark (at entry without a mark)
    unrealised_pnl: int
    leverage: int
    initial_margin: int                 # the position's, without its orders
    maintenance_margin: int
    order_margin: int
    open_buy_qty: int
    open_sell_qty: int
    liquidation_price: int | None       # ticks; see Margin.liquidation_price
    bankruptcy_price: int | None        # ticks; see Margin.bankruptcy_price
    entry_price_ticks: Decimal = Decimal(0)     # the entry price in ticks: entry_value / |size|


class AccountView(msgspec.Struct, frozen=True):
    """An account's state; money in minor units of the settlement asset unless keyed by asset."""
    account: int
    professional: bool
    balances: dict[str, int]            # per asset, minor units
    loan: int
    collateral_value: int               # after haircuts
    collateral_market_value: int        # at index, before haircuts
    unrealised_pnl: int
    equity: int
    initial_margin: int                 # positions and orders
    maintenance_margin: int
    margin_ratio: int | None            # maintenance / equity (RATE_SCALE); None: equity <= 0
    ltv: int | None                     # loan / collateral market value; None: no collateral
    available: dict[str, int]           # per asset, what a Withdraw may take now
    liquidatable: bool
    positions: tuple[PositionView, ...]


class Margin(MarginCore):
    """The margin component of an Exchange (ex.components["margin"], ex.margin)."""

    def __init__(self, exchange):
        self.exchange = exchange
        config = exchange.config
        self.config = config
        self.settle = config.settlement_asset
        pricing = exchange.components["pricing"]
        # the one place prices come in: mark for positions, index for collateral
        self._mark = pricing.mark_price
        self._index = pricing.index_price
        self.ledger = Ledger(list(config.assets), config.limits)
        self.lending = Lending(config, self.ledger)
        self.debts = self.lending.debts
        self.fees = self.ledger.venue["fee_account"]
        self.insurance = self.ledger.venue["insurance_fund"]
        self.funding = self.ledger.venue["funding_transit"]
        # every account, ascending: the order a funding interval in transit is swept in
        self.account_ids = SortedList()
        self.symbols = {s: SymbolRisk(config, s) for s in sorted(config.instruments)}
        for symbol, sr in self.symbols.items():
            sr.prices = pricing.symbols[symbol]     # the hot path reads its mark directly
        caps = config.margin.leverage_caps
        self.bind_symbols(self.ledger.cash, caps["retail"], caps["professional"])
        self._set_collateral([CollateralPrice(config, a) for a in sorted(config.margin.haircuts)])
        self.bind_cash(self.ledger.cash)
        spec = config.margin
        self.max_ltv = spec.max_ltv
        self.warning_ltv = spec.warning_ltv
        self.liquidation_ltv = spec.liquidation_ltv
        # a level fires past it ("passing") or at it too ("reaching"): at or past it is past
        # the level less one (every figure it is compared with is an integer)
        self.at_level = 1 if spec.trigger_at == "reaching" else 0
        self.maintenance_shift = 1 if spec.maintenance_trigger_at == "passing" else 0
        # multi-assets mode: a settlement balance below this (minor units) is auto-exchanged
        self.auto_exchange = spec.multi_assets
        self.exchange_below = config.assets[self.settle].to_units(spec.auto_exchange_threshold) \
            + self.at_level
        self.exchange_discount = spec.auto_exchange_discount
        # accounts to auto-exchange at the next command: stage 6's fills left their balance below
        # the threshold, or their collateral had no fresh index (state: see to_state)
        self.exchange_pending: set[int] = set()
        # open reduce-only orders: id -> [account, symbol, side, price, open qty] (the books hold
        # the rest; each position keeps its open orders' sums)
        self.reduce_only_orders: dict[int, list] = {}
        # (account, symbol) -> its open reduce-only order ids, oldest first
        self.reduce_only_ids: dict[tuple[int, str], list[int]] = {}
        # (account, symbol) whose reduce-only orders may now exceed what they can reduce
        self.reduce_only_dirty: set[tuple[int, str]] = set()
        self._loan_prices: tuple = ()     # collateral indices at the last loan check
        # what to do past the liquidation LTV: the liquidation engine's sell_collateral, which
        # the Exchange wires in once (the one policy; tests isolating this layer install their own)
        self.on_loan_breach: Callable[[int, list], None] | None = None

    # ---- accounts ------------------------------------------------------------------------------

    def open_account(self, account: int, professional: bool) -> None:
        self.ledger.open(account)
        self.new_account(account, professional)
        self.account_ids.add(account)

    def _asset(self, asset) -> str:
        if asset not in self.ledger.deposits:
            reject(RejectCode.UNKNOWN_ASSET, f"unknown asset {asset!r}")
        return asset

    @staticmethod
    def _amount(amount) -> int:
        if amount <= 0:
            reject(RejectCode.INVALID_AMOUNT, f"amount {amount} must be positive")
        return amount

    def _transfer_id(self, account: int, transfer_id) -> int:
        if self.ledger.seen(account, transfer_id, self.exchange.clock):
            reject(RejectCode.DUPLICATE_TRANSFER,
                    f"transfer {transfer_id} of account {account} was already applied")
        return transfer_id

    # ---- commands (the exchange checked the account exists; each validates, then advances the
    # ---- clock, then applies)

    def deposit(self, cmd: m.Deposit, events: list) -> None:
        asset = self._asset(cmd.asset)
        amount = self._amount(cmd.amount)
        tid = self._transfer_id(cmd.account, cmd.transfer_id)
        room = self.ledger.room(asset, self.accounts[cmd.account].cash[asset])
        if amount > room:
            reject(RejectCode.AMOUNT_TOO_LARGE,
                    f"deposit of {amount} {asset} would pass the venue's range (room {room})")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        self.touch(self.accounts[cmd.account], events)
        balance = self.ledger.deposit(cmd.account, asset, amount, tid, ex.clock)
        events.append(m.Deposited(ex.seq, ex.clock, cmd.account, asset, amount, tid, balance))

    def withdraw(self, cmd: m.Withdraw, events: list) -> None:
        asset = self._asset(cmd.asset)
        amount = self._amount(cmd.amount)
        tid = self._transfer_id(cmd.account, cmd.transfer_id)
        acc = self.accounts[cmd.account]
        cash = self.balances(acc)[asset]
        if amount > cash:
            reject(RejectCode.INSUFFICIENT_BALANCE,
                    f"withdrawal of {amount} exceeds the {asset} balance {max(cash, 0)}")
        available = self.available(acc, self._figures(acc))[asset]
        if amount > available:
            reject(RejectCode.WITHDRAWAL_BREAKS_MARGIN,
                    f"withdrawal of {amount} {asset} would break initial margin or loan-to-value "
                    f"(available {available})")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        self.touch(acc, events)
        balance = self.ledger.withdraw(cmd.account, asset, amount, tid, ex.clock)
        events.append(m.Withdrawn(ex.seq, ex.clock, cmd.account, asset, amount, tid, balance))

    def borrow(self, cmd: m.Borrow, events: list) -> None:
        asset = self._loan_asset(cmd.asset)
        amount = self._amount(cmd.amount)
        acc = self.accounts[cmd.account]
        if amount > self.lending.room():
            reject(RejectCode.LOAN_LIMIT_EXCEEDED,
                    f"the lending pool can lend {max(self.lending.room(), 0)} more")
        debt = self.lending.debts.get(acc.id, 0) + amount
        after = ltv(debt, self._collateral_market_value(acc))
        if after is None or after > self.max_ltv:
            reject(RejectCode.LOAN_LIMIT_EXCEEDED,
                    f"loan-to-value would be {_pct(after)}, above the maximum {_pct(self.max_ltv)}")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        self.touch(acc, events)
        debt = self.lending.borrow(acc.id, amount, ex.clock)
        events.append(m.Borrowed(ex.seq, ex.clock, acc.id, asset, amount, debt,
                                 ltv(debt, self._collateral_market_value(acc))))

    def repay(self, cmd: m.Repay, events: list) -> None:
        asset = self._loan_asset(cmd.asset)
        amount = self._amount(cmd.amount)
        acc = self.accounts[cmd.account]
        debt = self.lending.debts.get(acc.id, 0)
        if amount > debt:
            reject(RejectCode.INVALID_AMOUNT, f"repayment of {amount} exceeds the loan {debt}")
        cash = self.balances(acc)[asset]
        if amount > cash:
            reject(RejectCode.INSUFFICIENT_BALANCE,
                    f"repayment of {amount} exceeds the {asset} balance {max(cash, 0)}")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        self.touch(acc, events)
        # interest may have accrued on the way to the command's time; the repayment stands
        debt = self.lending.repay(acc.id, amount)
        events.append(m.Repaid(ex.seq, ex.clock, acc.id, asset, amount, debt))
        self._check_loan(acc, events)

    def _loan_asset(self, asset) -> str:
        self._asset(asset)
        if asset != self.settle:
            reject(RejectCode.UNKNOWN_ASSET, f"loans are of {self.settle} only")
        return asset

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
        for c in self.collateral:
            held = cash[c.asset]
            if held <= 0:
                out[c.asset] = 0
                continue
            index = self._index(c.symbol)
            if index is None:
                # unpriced collateral counts for nothing: it may leave if the account is sound
                sound = headroom >= 0 and (not debt or ltv(debt, market) <= self.max_ltv)
                out[c.asset] = held if sound else 0
                continue
            # keep enough that its value covers what the rest of the account does not
            keep = c.min_amount(c.value(held, index) - headroom, index)
            if debt:
                need = ceil_div(debt * RATE_SCALE, self.max_ltv) - (market - c.market_value(held, index))
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
        acc = self.accounts[account]
        figures = self._figures(acc)
        equity, upnl, im, mm, coll = figures
        positions = []
        for symbol, pos in acc.positions.items():      # (in symbol order)
            if not (pos.size or pos.buy_qty or pos.sell_qty):
                continue
            sr = self.symbols[symbol]
            mark = self._mark(symbol)
            upt = sr.upt
            size = pos.size
            notional = pos.cost * upt if mark is None else abs(size) * mark * upt
            pnl = 0 if mark is None or not size else (size * mark - pos.signed_cost()) * upt
            om = max(order_margin(size, pos.buy_qty, pos.buy_value, mark, True, upt, pos.leverage),
                     order_margin(size, pos.sell_qty, pos.sell_value, mark, False, upt,
                                  pos.leverage))
            tick = self.config.instruments[symbol].tick_size
            positions.append(PositionView(
                symbol=symbol, size=size, entry_value=pos.cost,
                # one division of exact figures each, nothing rounded twice
                entry_price=DECIMAL.divide(DECIMAL.multiply(Decimal(pos.cost), tick), abs(size))
                if size else Decimal(0),
                entry_price_ticks=DECIMAL.divide(Decimal(pos.cost), abs(size))
                if size else Decimal(0),
                mark_price=mark, notional=notional if size else 0, unrealised_pnl=pnl,
                leverage=pos.leverage, initial_margin=ceil_div(notional, pos.leverage) if size else 0,
                maintenance_margin=sr.tiers.maintenance(notional) if size else 0,
                order_margin=om, open_buy_qty=pos.buy_qty, open_sell_qty=pos.sell_qty,
                liquidation_price=self.liquidation_price(account, symbol, figures),
                bankruptcy_price=self.bankruptcy_price(account, symbol, figures)))
        debt = self.lending.debts.get(account, 0)
        market = self._collateral_market_value(acc)
        return AccountView(
            account=account, professional=acc.professional, balances=self.balances(acc), loan=debt,
            collateral_value=coll, collateral_market_value=market, unrealised_pnl=upnl,
            equity=equity, initial_margin=im, maintenance_margin=mm,
            margin_ratio=ceil_div(mm * RATE_SCALE, equity) if equity > 0 else None,
            ltv=ltv(debt, market), available=self.available(acc, figures),
            liquidatable=self.in_breach(equity, mm),
            positions=tuple(positions))

    # ---- loans on the clock and on prices -----------------------------------------------------

    def on_clock(self, t_end: int, events: list) -> None:
        """Interest of every accrual time up to t_end, then the loans' checks."""
        seq = self.exchange.seq
        for t, account, interest, debt in self.lending.accrue(t_end):
            events.append(m.InterestAccrued(seq, t, account, self.settle, interest, debt))
        self.check_loans(events)

    def after_command(self, events: list) -> None:
        """Multi-assets mode's auto-exchange of the accounts whose cash this command moved, then
        the loans again when a collateral index moved (cheap when nobody borrows)."""
        if self.auto_exchange:
            self._auto_exchange(events)
        if not self.lending.debts:
            return
        prices = tuple(self._index(c.symbol) for c in self.collateral)
        if prices != self._loan_prices:
            self.check_loans(events)

    def _auto_exchange(self, events: list) -> None:
        """Binance's Multi-Assets Mode: an account whose settlement-asset balance (as if its
        funding were settled) a fill or a funding payment of this command left below the
        threshold (MarginSpec.auto_exchange_threshold; at it too with trigger_at "reaching"), or
        that an earlier command left pending (after_liquidation; an index not fresh), has
        collateral sold to the platform at index less the auto-exchange discount, the least that
        brings the balance back to zero, each collateral asset on a fresh index bearing its share
        of the balance in proportion to its value at index (all of it when that is not enough).
        The discount stays with the platform, the buyer. One CollateralExchanged per asset sold."""
        moved = sorted(self._cash_moved(events) | self.exchange_pending)
        self.exchange_pending.clear()
        pricing = self.exchange.components["pricing"]
        for account in moved:
            acc = self.accounts[account]
            if not self._below_threshold(acc):
                continue
            priced = [(c, self._index(c.symbol)) for c in self.collateral
                      if acc.cash[c.asset] > 0 and self._index(c.symbol) is not None
                      and not pricing.is_stale(c.symbol)]
            if not priced:
                self.exchange_pending.add(account)      # again once its index is fresh
                continue
            self.touch(acc, events)     # its funding in transit first: the deficit is in cash
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

    def _below_threshold(self, acc: Account) -> bool:
        """Below the auto-exchange threshold, holding collateral that could be exchanged."""
        return self.balances(acc)[self.settle] < self.exchange_below and \
            any(acc.cash[c.asset] > 0 for c in self.collateral)

    def after_liquidation(self, events: list) -> None:
        """Stage 6's fills (liquidation orders, ADL) come after this command's auto-exchange: an
        account they left below the threshold is exchanged at the next command, before that
        command's own stage 6."""
        self.exchange_pending.update(a for a in self._cash_moved(events)
                                     if self._below_threshold(self.accounts[a]))

    def check_loans(self, events: list) -> None:
        self._loan_prices = tuple(self._index(c.symbol) for c in self.collateral)
        for account in sorted(self.lending.debts):
            self._check_loan(self.accounts[account], events)

    def _check_loan(self, acc: Account, events: list) -> None:
        """MarginCall once past the warning LTV; past the liquidation LTV, convert collateral (at
        each level too with MarginSpec.trigger_at "reaching")."""
        lending = self.lending
        debt = lending.debts.get(acc.id, 0)
        market = self._collateral_market_value(acc)
        level = ltv(debt, market)
        if level is not None and level <= self.warning_ltv - self.at_level:
            lending.called.discard(acc.id)
            return
        ex = self.exchange
        if acc.id not in lending.called:
            lending.called.add(acc.id)
            events.append(m.MarginCall(ex.seq, ex.clock, acc.id, level, debt, market))
        if level is None or level > self.liquidation_ltv - self.at_level:
            self.touch(acc, events)     # the conversion repays from cash first: settled cash
            self.on_loan_breach(acc.id, events)

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
        } | ({"auto_exchange": sorted(self.exchange_pending)} if self.exchange_pending else {})
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
        self.exchange_pending = set(state.get("auto_exchange", ()))
        self._loan_prices = tuple(self._index(c.symbol) for c in self.collateral)


def _pct(rate: int | None) -> str:
    if rate is None:
        return "unbounded"
    return f"{DECIMAL.quantize(DECIMAL.divide(Decimal(rate), RATE_SCALE // 100), Decimal('0.01'))}%"
