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
- liquidatable: maintenance > 0 and equity <= maintenance (margin ratio >= 100%).
- withdrawable: cash and collateral may leave while equity without unrealised profit stays at or
  above initial margin, the loan-to-value at or below max_ltv, and balances non-negative.
- loan-to-value = loan / collateral value at index before haircuts, rounded up.
"""
from __future__ import annotations

from decimal import Decimal

import msgspec

from perpcore import messages as m
from perpcore.config import RATE_SCALE
from perpcore.ledger import Audit, Ledger
from perpcore.lending import Lending
from perpcore.messages import RejectCode
from perpcore.risk import CollateralPrice, TierTable, bankruptcy_price, ceil_div, ltv, order_margin


def _reject(code: RejectCode, reason: str):
    # exchange imports this module; the reverse import is deferred to the (cold) refusal path
    from perpcore.exchange import Rejection
    raise Rejection(code, reason)


class PositionView(msgspec.Struct, frozen=True):
    symbol: str
    size: int                           # signed lots
    entry_value: int                    # ticks x lots, exact
    entry_price: Decimal                # ticks, entry_value / |size| (display only)
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


class Position:
    """One account's net position in one symbol and the aggregate of its open orders there."""
    __slots__ = ("size", "cost", "leverage", "buy_qty", "buy_value", "sell_qty", "sell_value",
                 "reduce_only")

    def __init__(self, leverage: int):
        self.size = 0               # signed lots
        self.cost = 0               # entry value, ticks x lots, >= 0 (0 iff flat)
        self.leverage = leverage
        self.buy_qty = 0            # open bids: lots and sum(price x lots)
        self.buy_value = 0
        self.sell_qty = 0
        self.sell_value = 0
        self.reduce_only: list[int] = []    # open reduce-only order ids, oldest first

    def signed_cost(self) -> int:
        return self.cost if self.size >= 0 else -self.cost

    def idle(self, default_leverage: int) -> bool:
        return not (self.size or self.buy_qty or self.sell_qty) and self.leverage == default_leverage


class Account:
    __slots__ = ("id", "professional", "cash", "positions", "leverage_cap")

    def __init__(self, account: int, professional: bool, cash: dict[str, int], cap: int):
        self.id = account
        self.professional = professional
        self.cash = cash            # the ledger's balance dict of the account (shared)
        self.positions: dict[str, Position] = {}
        self.leverage_cap = cap


class SymbolRisk:
    """Per instrument: its margin parameters and the positions held in it."""
    __slots__ = ("symbol", "upt", "tiers", "maker_fee", "taker_fee", "default_leverage",
                 "max_leverage", "positions")

    def __init__(self, config, symbol: str):
        spec = config.instruments[symbol]
        self.symbol = symbol
        self.upt = config.units_per_ticklot(symbol)
        self.tiers = TierTable(spec, config)
        self.maker_fee = spec.maker_fee
        self.taker_fee = spec.taker_fee
        self.default_leverage = spec.default_leverage
        self.max_leverage = spec.tiers[0].max_leverage
        self.positions: dict[int, Position] = {}      # account -> position (any state)


class Margin:
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
        self.ledger = Ledger(list(config.assets))
        self.lending = Lending(config, self.ledger)
        self.fees = self.ledger.venue["fee_account"]
        self.insurance = self.ledger.venue["insurance_fund"]
        self.symbols = {s: SymbolRisk(config, s) for s in sorted(config.instruments)}
        self.collateral = [CollateralPrice(config, a) for a in sorted(config.margin.haircuts)]
        self.max_ltv = config.margin.max_ltv
        self.warning_ltv = config.margin.warning_ltv
        self.liquidation_ltv = config.margin.liquidation_ltv
        self.caps = config.margin.leverage_caps
        self.accounts: dict[int, Account] = {}
        # open orders: id -> [account, symbol, side, price, open qty, reduce_only]
        self.orders: dict[int, list] = {}
        # (account, symbol) whose reduce-only orders may now exceed what they can reduce
        self.reduce_only_dirty: set[tuple[int, str]] = set()
        self._loan_prices: tuple = ()     # collateral indices at the last loan check
        # what to do past the liquidation LTV: the liquidation engine installs its own
        self.on_loan_breach = self.convert_collateral

    # ---- accounts ------------------------------------------------------------------------------

    def open_account(self, account: int, professional: bool) -> None:
        cap = self.caps["professional" if professional else "retail"]
        self.accounts[account] = Account(account, professional, self.ledger.open(account), cap)

    def _leverage_default(self, acc: Account, sr: SymbolRisk) -> int:
        return min(sr.default_leverage, acc.leverage_cap)

    def _position(self, acc: Account, sr: SymbolRisk) -> Position:
        pos = acc.positions.get(sr.symbol)
        if pos is None:
            pos = acc.positions[sr.symbol] = sr.positions[acc.id] = \
                Position(self._leverage_default(acc, sr))
        return pos

    def _asset(self, asset) -> str:
        if type(asset) is not str or asset not in self.ledger.deposits:
            _reject(RejectCode.UNKNOWN_ASSET, f"unknown asset {asset!r}")
        return asset

    @staticmethod
    def _amount(amount) -> int:
        if type(amount) is not int or amount <= 0:
            _reject(RejectCode.INVALID_AMOUNT, f"amount {amount!r} must be a positive integer")
        return amount

    def _transfer_id(self, account: int, transfer_id) -> int:
        if type(transfer_id) is not int or transfer_id < 0:
            _reject(RejectCode.MALFORMED, "transfer id must be a non-negative integer")
        if self.ledger.seen(account, transfer_id):
            _reject(RejectCode.DUPLICATE_TRANSFER,
                    f"transfer {transfer_id} of account {account} was already applied")
        return transfer_id

    # ---- commands (the exchange checked the account exists; each validates, then advances the
    # ---- clock, then applies)

    def deposit(self, cmd: m.Deposit, events: list) -> None:
        asset = self._asset(cmd.asset)
        amount = self._amount(cmd.amount)
        tid = self._transfer_id(cmd.account, cmd.transfer_id)
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        balance = self.ledger.deposit(cmd.account, asset, amount, tid)
        events.append(m.Deposited(ex.seq, ex.clock, cmd.account, asset, amount, tid, balance))

    def withdraw(self, cmd: m.Withdraw, events: list) -> None:
        asset = self._asset(cmd.asset)
        amount = self._amount(cmd.amount)
        tid = self._transfer_id(cmd.account, cmd.transfer_id)
        acc = self.accounts[cmd.account]
        if amount > acc.cash[asset]:
            _reject(RejectCode.INSUFFICIENT_BALANCE,
                    f"withdrawal of {amount} exceeds the {asset} balance {max(acc.cash[asset], 0)}")
        available = self.available(acc, self._figures(acc))[asset]
        if amount > available:
            _reject(RejectCode.WITHDRAWAL_BREAKS_MARGIN,
                    f"withdrawal of {amount} {asset} would break initial margin or loan-to-value "
                    f"(available {available})")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        balance = self.ledger.withdraw(cmd.account, asset, amount, tid)
        events.append(m.Withdrawn(ex.seq, ex.clock, cmd.account, asset, amount, tid, balance))

    def borrow(self, cmd: m.Borrow, events: list) -> None:
        asset = self._loan_asset(cmd.asset)
        amount = self._amount(cmd.amount)
        acc = self.accounts[cmd.account]
        if amount > self.lending.room():
            _reject(RejectCode.LOAN_LIMIT_EXCEEDED,
                    f"the lending pool can lend {max(self.lending.room(), 0)} more")
        debt = self.lending.debts.get(acc.id, 0) + amount
        after = ltv(debt, self._collateral_market_value(acc))
        if after is None or after > self.max_ltv:
            _reject(RejectCode.LOAN_LIMIT_EXCEEDED,
                    f"loan-to-value would be {_pct(after)}, above the maximum {_pct(self.max_ltv)}")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        debt = self.lending.borrow(acc.id, amount, ex.clock)
        events.append(m.Borrowed(ex.seq, ex.clock, acc.id, asset, amount, debt,
                                 ltv(debt, self._collateral_market_value(acc))))

    def repay(self, cmd: m.Repay, events: list) -> None:
        asset = self._loan_asset(cmd.asset)
        amount = self._amount(cmd.amount)
        acc = self.accounts[cmd.account]
        debt = self.lending.debts.get(acc.id, 0)
        if amount > debt:
            _reject(RejectCode.INVALID_AMOUNT, f"repayment of {amount} exceeds the loan {debt}")
        if amount > acc.cash[asset]:
            _reject(RejectCode.INSUFFICIENT_BALANCE,
                    f"repayment of {amount} exceeds the {asset} balance {max(acc.cash[asset], 0)}")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        # interest may have accrued on the way to the command's time; the repayment stands
        debt = self.lending.repay(acc.id, amount)
        events.append(m.Repaid(ex.seq, ex.clock, acc.id, asset, amount, debt))
        self._check_loan(acc, events)

    def _loan_asset(self, asset) -> str:
        self._asset(asset)
        if asset != self.settle:
            _reject(RejectCode.UNKNOWN_ASSET, f"loans are of {self.settle} only")
        return asset

    def set_leverage(self, cmd: m.SetLeverage, events: list) -> None:
        acc = self.accounts[cmd.account]
        sr = self._symbol(cmd.symbol)
        lev = cmd.leverage
        if type(lev) is not int:
            _reject(RejectCode.MALFORMED, "leverage must be an integer")
        cap = min(sr.max_leverage, acc.leverage_cap)
        if not 1 <= lev <= cap:
            _reject(RejectCode.LEVERAGE_NOT_ALLOWED,
                    f"leverage {lev} outside 1..{cap} for this account and {sr.symbol}")
        pos = acc.positions.get(sr.symbol)
        max_notional = sr.tiers.max_notional(lev)
        if pos is not None:
            mark = self._mark(sr.symbol)
            worst = max(self._worst_notional(pos, sr, mark, True, pos.buy_qty, pos.buy_value),
                        self._worst_notional(pos, sr, mark, False, pos.sell_qty, pos.sell_value))
            if worst > max_notional:
                _reject(RejectCode.LEVERAGE_NOT_ALLOWED,
                        f"position and orders of {worst} exceed the {max_notional} that "
                        f"{lev}x allows")
            if lev < pos.leverage:
                # more initial margin: the account must still carry it
                old = pos.leverage
                pos.leverage = lev
                equity, _, im = self._figures(acc)[:3]
                pos.leverage = old
                if equity < im:
                    _reject(RejectCode.INSUFFICIENT_MARGIN,
                            f"equity {equity} below the initial margin {im} at {lev}x")
        ex = self.exchange
        ex._advance_to(cmd.ts, events)
        self._position(acc, sr).leverage = lev
        events.append(m.LeverageSet(ex.seq, ex.clock, acc.id, sr.symbol, lev, max_notional))

    def _symbol(self, symbol) -> SymbolRisk:
        sr = self.symbols.get(symbol) if type(symbol) is str else None
        if sr is None:
            _reject(RejectCode.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        return sr

    # ---- pre-trade -----------------------------------------------------------------------------

    def check_order(self, account: int, symbol: str, side: int, price: int, qty: int,
                    reduce_only: bool, amended: int = 0) -> None:
        """Refuses an order (or, with `amended`, the new price and open quantity of that resting
        order) the account could not carry: a reduce-only order that could increase the position
        (with the account's other orders on that side), a position past its leverage's notional
        cap, or initial margin above equity. An order that does not add initial margin (it only
        reduces, or is netted by the other side) always passes."""
        acc = self.accounts[account]
        sr = self.symbols[symbol]
        pos = acc.positions.get(symbol)
        if pos is None:
            pos = Position(self._leverage_default(acc, sr))     # a transient, empty position
        buy = side == 0
        bq, bv, sq, sv = pos.buy_qty, pos.buy_value, pos.sell_qty, pos.sell_value
        if amended:
            _, _, oside, oprice, oqty, reduce_only = self.orders[amended]
            if oside == 0:
                bq, bv = bq - oqty, bv - oprice * oqty
            else:
                sq, sv = sq - oqty, sv - oprice * oqty
        size = pos.size
        if reduce_only:
            room = (-size if buy else size) - (bq if buy else sq)
            if qty > room:
                _reject(RejectCode.REDUCE_ONLY_WOULD_INCREASE,
                        f"reduce-only order of {qty} lots could increase the position "
                        f"(it and the other {'bids' if buy else 'offers'} may reduce "
                        f"{max(room, 0)} more)")
            return
        # the order's side after it, that side now, and the other side (unchanged)
        if buy:
            lots, value = bq + qty, bv + price * qty
            now_lots, now_value, other_lots, other_value = pos.buy_qty, pos.buy_value, sq, sv
        else:
            lots, value = sq + qty, sv + price * qty
            now_lots, now_value, other_lots, other_value = pos.sell_qty, pos.sell_value, bq, bv
        if (-size if buy else size) >= lots:
            return                          # the whole side only reduces the position
        mark = self._mark(symbol)
        upt, lev = sr.upt, pos.leverage
        worst = self._worst_notional(pos, sr, mark, buy, lots, value)
        cap = sr.tiers.max_notional(lev)
        if worst > cap:
            _reject(RejectCode.RISK_LIMIT_EXCEEDED,
                    f"position and orders would reach {worst}, above the {cap} allowed at {lev}x")
        other = order_margin(size, other_lots, other_value, mark, not buy, upt, lev)
        new = order_margin(size, lots, value, mark, buy, upt, lev)
        if new <= other:
            return                          # netted by the other side: the max is unchanged
        current = max(order_margin(size, now_lots, now_value, mark, buy, upt, lev), other)
        if new <= current:
            return
        equity, _, im = self._figures(acc)[:3]
        need = im - current + new
        if equity < need:
            _reject(RejectCode.INSUFFICIENT_MARGIN,
                    f"initial margin would be {need} with equity {equity}")

    @staticmethod
    def _worst_notional(pos: Position, sr: SymbolRisk, price: int | None, buy: bool, lots: int,
                        value: int) -> int:
        """The position's notional if every order on one side filled: the position at `price`
        (the mark; its entry value without one) plus the side's orders at their prices."""
        held = pos.size * price if price is not None else pos.signed_cost()
        return abs(held + value if buy else held - value) * sr.upt

    # ---- orders (the exchange reports what rests and what leaves the book) --------------------

    def order_rested(self, order_id: int, account: int, symbol: str, side: int, price: int,
                     qty: int, reduce_only: bool) -> None:
        pos = self._position(self.accounts[account], self.symbols[symbol])
        self.orders[order_id] = [account, symbol, side, price, qty, reduce_only]
        self._add_order(pos, side, price, qty)
        if reduce_only:
            pos.reduce_only.append(order_id)    # its pre-trade check left it room
        elif pos.reduce_only:
            self.reduce_only_dirty.add((account, symbol))

    def order_changed(self, order_id: int, state) -> None:
        """After an amend: `state` is the book's order() tuple, or None if it left the book."""
        order = self.orders[order_id]
        pos = self.accounts[order[0]].positions[order[1]]
        self._add_order(pos, order[2], order[3], -order[4])
        if state is None:
            self._forget(order_id, order, pos)
            return
        order[3], order[4] = state[3], state[4]
        self._add_order(pos, order[2], order[3], order[4])
        if pos.reduce_only:
            self.reduce_only_dirty.add((order[0], order[1]))

    def order_closed(self, order_id: int) -> None:
        """The order left the book (cancel, expiry, self-trade prevention, liquidation)."""
        order = self.orders.get(order_id)
        if order is None:
            return
        pos = self.accounts[order[0]].positions[order[1]]
        self._add_order(pos, order[2], order[3], -order[4])
        self._forget(order_id, order, pos)

    def _forget(self, order_id: int, order: list, pos: Position) -> None:
        del self.orders[order_id]
        if order[5]:
            pos.reduce_only.remove(order_id)

    @staticmethod
    def _add_order(pos: Position, side: int, price: int, qty: int) -> None:
        if side == 0:
            pos.buy_qty += qty
            pos.buy_value += price * qty
        else:
            pos.sell_qty += qty
            pos.sell_value += price * qty

    def reduce_only_excess(self) -> list[tuple[str, int, int]]:
        """Reduce-only orders that could now increase a position, as (symbol, order_id, lots to
        take off), newest first: all of them when the position is flat or on their side, else
        as many lots as the account's orders on the reducing side exceed the position by."""
        out = []
        for account, symbol in sorted(self.reduce_only_dirty):
            pos = self.accounts[account].positions[symbol]
            size = pos.size
            excess = (pos.sell_qty - size) if size > 0 else (pos.buy_qty + size if size else 0)
            for order_id in reversed(pos.reduce_only):
                order = self.orders[order_id]
                reduces = (order[2] == 1) == (size > 0) and size != 0
                cut = order[4] if not reduces else min(order[4], excess)
                if cut > 0:
                    out.append((symbol, order_id, cut))
                    if reduces:
                        excess -= cut
        self.reduce_only_dirty.clear()
        return out

    # ---- settlement ----------------------------------------------------------------------------

    def settle_fill(self, symbol: str, price: int, qty: int, taker_side: int, maker_id: int,
                    taker_id: int, maker_account: int, taker_account: int, maker_remaining: int,
                    events: list, taker_fee: int | None = None) -> None:
        """Settles one trade for both sides (maker first) and updates the maker's resting order.
        taker_fee overrides the instrument's taker rate (a liquidation order pays none)."""
        sr = self.symbols[symbol]
        order = self.orders[maker_id]
        maker_pos = self.accounts[maker_account].positions[symbol]
        self._add_order(maker_pos, order[2], price, -qty)
        if maker_remaining:
            order[4] = maker_remaining
        else:
            self._forget(maker_id, order, maker_pos)
        self.trade(sr, maker_account, taker_side == 1, price, qty, sr.maker_fee, maker_id, events)
        self.trade(sr, taker_account, taker_side == 0, price, qty,
                   sr.taker_fee if taker_fee is None else taker_fee, taker_id, events)

    def trade(self, sr: SymbolRisk, account: int, buy: bool, price: int, qty: int, fee_rate: int,
              order_id: int, events: list) -> None:
        """One side of a trade: the position, realised PnL and the fee, settled in cash. Also the
        way the liquidation engine transfers positions outside the book (fee_rate 0)."""
        acc = self.accounts[account]
        pos = acc.positions.get(sr.symbol) or self._position(acc, sr)
        size = pos.size
        realised = 0
        if size == 0 or (size > 0) == buy:
            pos.cost += price * qty
        else:
            held = size if size > 0 else -size
            if qty >= held:
                realised = price * held - pos.cost if size > 0 else pos.cost - price * held
                pos.cost = price * (qty - held)
            elif size > 0:
                removed = -(-pos.cost * qty // held)          # up: realised rounds down
                realised = price * qty - removed
                pos.cost -= removed
            else:
                removed = pos.cost * qty // held              # down: realised rounds down
                realised = removed - price * qty
                pos.cost -= removed
            realised *= sr.upt
            if pos.reduce_only:
                self.reduce_only_dirty.add((account, sr.symbol))
        pos.size = size + qty if buy else size - qty
        fee = -(-price * qty * sr.upt * fee_rate // RATE_SCALE)
        cash = acc.cash
        settle = self.settle
        cash[settle] += realised - fee
        self.fees[settle] += fee
        events.append(m.PositionChanged(self.exchange.seq, self.exchange.clock, account,
                                        sr.symbol, order_id, pos.size, pos.cost, realised, fee,
                                        cash[settle]))

    # ---- funding -------------------------------------------------------------------------------

    def open_positions(self, symbol: str) -> list[tuple[int, int]]:
        """[(account, signed lots)] of every open position in the symbol, by account."""
        return sorted((a, p.size) for a, p in self.symbols[symbol].positions.items() if p.size)

    def settle_funding(self, symbol: str, payments: list[tuple[int, int]],
                       insurance_remainder: int) -> None:
        """Moves funding cash: each (account, amount) > 0 receives, < 0 pays; the rounding
        remainder goes to the insurance fund. The transfers must sum to zero with it."""
        if sum(amount for _, amount in payments) + insurance_remainder != 0:
            raise ValueError(f"{symbol} funding does not sum to zero with its remainder")
        settle = self.settle
        for account, amount in payments:
            self.accounts[account].cash[settle] += amount
        self.insurance[settle] += insurance_remainder

    # ---- valuation -----------------------------------------------------------------------------

    def _figures(self, acc: Account) -> tuple[int, int, int, int, int]:
        """(equity, unrealised PnL, initial margin, maintenance margin, collateral value)."""
        cash = acc.cash
        coll = 0
        index = self._index
        for c in self.collateral:
            amount = cash[c.asset]
            if amount > 0:
                coll += c.value(amount, index(c.symbol))
        upnl = im = mm = 0
        mark_of = self._mark
        symbols = self.symbols
        side_margin = order_margin
        for symbol, pos in acc.positions.items():
            sr = symbols[symbol]
            upt = sr.upt
            size = pos.size
            mark = mark_of(symbol)
            if size:
                if mark is None:
                    notional = pos.cost * upt
                else:
                    notional = (size if size > 0 else -size) * mark * upt
                    upnl += (size * mark - (pos.cost if size > 0 else -pos.cost)) * upt
                im += -(-notional // pos.leverage)
                mm += sr.tiers.maintenance(notional)
            if pos.buy_qty or pos.sell_qty:
                lev = pos.leverage
                bids = side_margin(size, pos.buy_qty, pos.buy_value, mark, True, upt, lev)
                offers = side_margin(size, pos.sell_qty, pos.sell_value, mark, False, upt, lev)
                im += bids if bids > offers else offers
        equity = cash[self.settle] + coll - self.lending.debts.get(acc.id, 0) + upnl
        return equity, upnl, im, mm, coll

    def _collateral_market_value(self, acc: Account) -> int:
        return sum(c.market_value(acc.cash[c.asset], self._index(c.symbol))
                   for c in self.collateral)

    def available(self, acc: Account, figures: tuple) -> dict[str, int]:
        """Per asset, the most a Withdraw may take now (see the module's definitions)."""
        equity, upnl, im, _, coll = figures
        headroom = equity - max(upnl, 0) - im       # unrealised profit is not withdrawable
        cash = acc.cash
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
        """True when the account holds positions and equity <= maintenance margin: the rule the
        liquidation engine applies (on the mark)."""
        equity, _, _, mm, _ = self._figures(self.accounts[account])
        return mm > 0 and equity <= mm

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
        other price held fixed: for a long the highest tick with equity <= maintenance (liquidated
        when mark <= it), for a short the lowest (when mark >= it). None: no position, or a long
        that no positive price liquidates. Exact: rounded to the tick where the rule first holds."""
        acc = self.accounts[account]
        pos = acc.positions.get(symbol)
        if pos is None or not pos.size:
            return None
        figures = figures or self._figures(acc)
        pos, base, others = self._price_base(acc, symbol, figures)
        return self.symbols[symbol].tiers.liquidation_price(pos.size, self.symbols[symbol].upt,
                                                            base - others)

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
        for symbol in sorted(acc.positions):
            pos = acc.positions[symbol]
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
            positions.append(PositionView(
                symbol=symbol, size=size, entry_value=pos.cost,
                entry_price=Decimal(pos.cost) / abs(size) if size else Decimal(0),
                mark_price=mark, notional=notional if size else 0, unrealised_pnl=pnl,
                leverage=pos.leverage, initial_margin=ceil_div(notional, pos.leverage) if size else 0,
                maintenance_margin=sr.tiers.maintenance(notional) if size else 0,
                order_margin=om, open_buy_qty=pos.buy_qty, open_sell_qty=pos.sell_qty,
                liquidation_price=self.liquidation_price(account, symbol, figures),
                bankruptcy_price=self.bankruptcy_price(account, symbol, figures)))
        debt = self.lending.debts.get(account, 0)
        market = self._collateral_market_value(acc)
        return AccountView(
            account=account, professional=acc.professional, balances=dict(acc.cash), loan=debt,
            collateral_value=coll, collateral_market_value=market, unrealised_pnl=upnl,
            equity=equity, initial_margin=im, maintenance_margin=mm,
            margin_ratio=ceil_div(mm * RATE_SCALE, equity) if equity > 0 else None,
            ltv=ltv(debt, market), available=self.available(acc, figures),
            liquidatable=mm > 0 and equity <= mm, positions=tuple(positions))

    # ---- loans on the clock and on prices -----------------------------------------------------

    def on_clock(self, t_end: int, events: list) -> None:
        """Interest of every accrual time up to t_end, then the loans' checks."""
        seq = self.exchange.seq
        for t, account, interest, debt in self.lending.accrue(t_end):
            events.append(m.InterestAccrued(seq, t, account, self.settle, interest, debt))
        self.check_loans(events)

    def after_command(self, events: list) -> None:
        """Re-checks the loans when a collateral index moved (cheap when nobody borrows)."""
        if not self.lending.debts:
            return
        prices = tuple(self._index(c.symbol) for c in self.collateral)
        if prices != self._loan_prices:
            self.check_loans(events)

    def check_loans(self, events: list) -> None:
        self._loan_prices = tuple(self._index(c.symbol) for c in self.collateral)
        for account in sorted(self.lending.debts):
            self._check_loan(self.accounts[account], events)

    def _check_loan(self, acc: Account, events: list) -> None:
        """MarginCall once past the warning LTV; past the liquidation LTV, convert collateral."""
        lending = self.lending
        debt = lending.debts.get(acc.id, 0)
        market = self._collateral_market_value(acc)
        level = ltv(debt, market)
        if level is not None and level <= self.warning_ltv:
            lending.called.discard(acc.id)
            return
        ex = self.exchange
        if acc.id not in lending.called:
            lending.called.add(acc.id)
            events.append(m.MarginCall(ex.seq, ex.clock, acc.id, level, debt, market))
        if level is None or level > self.liquidation_ltv:
            self.on_loan_breach(acc.id, events)

    def convert_collateral(self, account: int, events: list) -> None:
        """Repays the account's loan: first from its cash, then by selling collateral (in asset
        order) to the platform at index less the conversion penalty, only as much as the loan
        needs. Emits Repaid and CollateralConverted."""
        acc = self.accounts[account]
        lending = self.lending
        ex = self.exchange
        settle = self.settle
        from_cash = min(lending.debts.get(account, 0), max(acc.cash[settle], 0))
        if from_cash:
            debt = lending.repay(account, from_cash)
            events.append(m.Repaid(ex.seq, ex.clock, account, settle, from_cash, debt))
        for c in self.collateral:
            debt = lending.debts.get(account, 0)
            index = self._index(c.symbol)
            if not debt or index is None or acc.cash[c.asset] <= 0:
                continue
            amount = min(acc.cash[c.asset], c.amount_for_proceeds(debt, index, lending.penalty))
            proceeds, repaid, debt = lending.convert(account, c, amount, index)
            events.append(m.CollateralConverted(ex.seq, ex.clock, account, c.asset, amount, index,
                                                proceeds, repaid, debt))
        if account not in lending.debts:
            lending.called.discard(account)

    # ---- the books -----------------------------------------------------------------------------

    def audit(self) -> Audit:
        entry = 0
        for sr in self.symbols.values():
            upt = sr.upt
            for pos in sr.positions.values():
                if pos.size:
                    entry -= pos.signed_cost() * upt
        return self.ledger.audit({self.settle: entry}, {self.settle: sum(self.lending.debts.values())},
                                 {self.settle: self.lending.receivable})

    def insurance_fund(self, asset: str) -> int:
        return self.insurance[asset]

    # ---- snapshots -----------------------------------------------------------------------------

    def to_state(self) -> dict:
        positions = []
        for account in sorted(self.accounts):
            acc = self.accounts[account]
            for symbol in sorted(acc.positions):
                pos = acc.positions[symbol]
                if not pos.idle(self._leverage_default(acc, self.symbols[symbol])):
                    positions.append((account, symbol, pos.size, pos.cost, pos.leverage))
        return {
            "accounts": [(a, acc.professional) for a, acc in sorted(self.accounts.items())],
            "ledger": self.ledger.to_state(),
            "lending": self.lending.to_state(),
            "positions": positions,
            "orders": [(order_id, *order) for order_id, order in sorted(self.orders.items())],
        }

    def from_state(self, state: dict) -> None:
        self.ledger.from_state(state["ledger"])
        self.lending.from_state(state["lending"])
        self.accounts.clear()
        self.orders.clear()
        for sr in self.symbols.values():
            sr.positions.clear()
        for account, professional in state["accounts"]:
            self.open_account(account, professional)
        for account, symbol, size, cost, leverage in state["positions"]:
            pos = self._position(self.accounts[account], self.symbols[symbol])
            pos.size, pos.cost, pos.leverage = size, cost, leverage
        for order_id, account, symbol, side, price, qty, reduce_only in state["orders"]:
            self.order_rested(order_id, account, symbol, side, price, qty, reduce_only)
        self.reduce_only_dirty.clear()
        self._loan_prices = tuple(self._index(c.symbol) for c in self.collateral)


def _pct(rate: int | None) -> str:
    return "unbounded" if rate is None else f"{Decimal(rate) / RATE_SCALE:.2%}"
