"""Liquidation: the engine, the insurance fund and auto-deleveraging (DESIGN.md stage 6).

The Exchange's "liquidation" component. After every command (after the mark and the loans have been
brought up to date) it finds the accounts the command's price moves and money movements may have put
under maintenance, and liquidates them, in account order, until none is left. It reads money,
positions and margin through perpcore.margin and prices through perpcore.pricing; the only state of
its own is the socialised losses (and a recent window of the fund's history, outside the state).

Trigger. An account is liquidated when it holds positions and its equity, valued at the MARK, is at
or below its maintenance margin (perpcore.margin's rule, the one its liquidation prices solve
exactly). Never on a stale index: an account valued with any symbol whose index is stale (its
positions' or its collateral's) is left alone until the index is fresh again, and then examined.

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
(see _corner), so its least value at any prices strictly inside the triggers is its value at their
corner, each price one tick inside its trigger: the account's reserve, kept beside its triggers with
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
The scan of each command's events and each fill's step run in C (perpcore._liquidation, this class's
base); a command whose events concern none of this (most orders, cancels and amends) is passed over
there without calling into Python, and so is one whose fills all stepped.

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
   price in BitMEX's queue order (perpcore.adl), a transfer between the two accounts, exactly
   zero-sum.
5. An account left without positions and with negative equity (a gap through bankruptcy on a short
   with other debts, a loan past its collateral) has a deficit: its collateral is sold, then the fund
   covers what it can; what it cannot is a SocializedLoss: the account keeps that negative balance,
   reported as the venue's bad debt, the explicit last resort.

Margin loans: past the liquidation LTV (margin calls on_loan_breach) the loan is first repaid from
cash, then collateral is sold to the platform at index less the conversion penalty, the least amount
that brings the loan-to-value back to the maximum LTV; the penalty goes to the insurance fund.

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
from perpcore._liquidation import LiquidationCore
from perpcore.adl import indicator, ranking
from perpcore.breach_index import DOWN, UP, BreachIndex
from perpcore.config import RATE_SCALE
from perpcore.errors import RejectCode, Rejection
from perpcore.messages import CancelReason, FundReason, LiquidationReason, Side

# no account: the crossed accounts of a round without price moves
_NOBODY = frozenset()


def _toward(trigger: int, price: int, direction: int) -> int:
    """The trigger moved toward the price onto a power-of-two grid of 1/16 to 1/8 of their
    distance: it fires a little earlier (never later), and small changes of an account leave it
    where it was, so keying it again rarely touches the sorted lists."""
    distance = price - trigger if direction == DOWN else trigger - price
    if distance < 16:
        return trigger
    grid = 1 << (distance.bit_length() - 4)
    return -(-trigger // grid) * grid if direction == DOWN else trigger // grid * grid


def _place(trigger: int, price: int, direction: int) -> int:
    """Where a trigger goes: a DOWN one no lower than 0 (below 1 it never fires), an UP one no
    higher than twice the price (beyond, it would only make the corner's figures huge), then
    _toward the price. Each step moves it toward the price: it fires earlier, never later."""
    if direction == DOWN:
        return _toward(max(trigger, 0), price, DOWN)
    return _toward(min(trigger, 2 * price), price, UP)


def _with_spare(dim, direction: int, trigger: int, price: int) -> list[tuple]:
    """A position's trigger and a spare on its other side, as far from the price (within
    _place's bounds): a fill that flips the position then needs no new trigger (see
    LiquidationCore.step)."""
    other = UP if direction == DOWN else DOWN
    return [(dim, direction, trigger), (dim, other, _place(2 * price - trigger, price, other))]


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
    __slots__ = ("upt", "short_rate", "fee", "band", "max_price", "tiers")

    def __init__(self, spec, sr):
        self.upt = sr.upt
        self.tiers = sr.tiers
        # a short loses its size per tick in equity and at most the top rate more in maintenance
        self.short_rate = RATE_SCALE + max(sr.tiers.rates)
        self.fee = spec.liquidation_fee
        self.band = spec.market_protection
        self.max_price = spec.max_price


class Liquidation(LiquidationCore):
    """The liquidation component of an Exchange (ex.components["liquidation"]); stage 6's entry,
    after_command, and its scan of events are perpcore._liquidation.LiquidationCore's."""

    def __init__(self, exchange):
        self.exchange = exchange
        self.margin = exchange.components["margin"]
        self.pricing = exchange.components["pricing"]
        config = exchange.config
        self.settle = config.settlement_asset
        self.fund = self.margin.insurance               # the ledger's insurance bucket, by asset
        self.params = {s: _Params(config.instruments[s], sr) for s, sr in self.margin.symbols.items()}
        self.index = BreachIndex()
        # the recent changes for fund_history(); the journal's events hold them all, so they stay
        # out of the state (a restored exchange's window starts at its snapshot)
        self.history: deque[FundEntry] = deque(maxlen=config.limits.history_kept)
        self.socialized: dict[int, int] = {}            # account -> bad debt left with it
        self._fund_seen = dict(self.fund)               # the fund as this engine last recorded it
        self._queues: dict[tuple[str, int], list[int]] = {}
        # accounts liquidated in this command, their triggers out of date: keyed before it ends
        self._dirty = set()
        # account -> a lower bound of its slack at every price strictly inside its triggers: the
        # slack at their corner (see _corner) when they were checked, brought up to date by each
        # fill since, less the funding it paid; absent: unknown
        self._reserve: dict[int, int] = {}
        # account -> {symbol: [corner price below, corner price above (None: no such trigger),
        # the position's term of the reserve]} while its reserve is its corner's slack: a fill then
        # brings the reserve up to date from the fill alone (LiquidationCore.step)
        self._terms: dict[int, dict[str, list]] = {}
        self._symbols = self.margin.symbols
        # the index's price dimensions, made once
        self._mark_dim = {s: ("mark", s) for s in self.params}
        self._index_dim = {s: ("index", s) for s in self.params}
        self.margin.on_loan_breach = self.sell_collateral

    # ---- stage 6 -------------------------------------------------------------------------------

    def _rounds(self, events: list, touched: set, moves: list, paid: dict) -> None:
        """The rest of a command's stage 6 once its events have been scanned (LiquidationCore):
        `touched` accounts to look at, price `moves`, funding `paid`. Rounds of liquidations follow
        until none is left, each scanning the events the last one added."""
        start = len(events)
        while True:
            # the accounts a price reached, by their triggers as they stood before this round
            crossed = _NOBODY
            if moves:
                crossed = set()
                for dim, price in moves:
                    crossed.update(self.index.crossed(dim, price))
            if paid:        # the payers funding did not leave sound (LiquidationCore, in C)
                touched.update(self._uncovered(paid, touched))
            # each candidate, in account order: its triggers as they stand may still keep it
            # sound; if not, it is examined in full (and keyed again at once unless in breach)
            breached = [account for account in sorted(touched | crossed)
                        if (account in crossed or not self._sound(account))
                        and self._examine(account, keep_earlier=account not in crossed)]
            if not breached:
                break
            self._queues.clear()
            for account in breached:
                self._liquidate(account, events)
            # stage 5 again: the liquidation trades moved the last price and the book
            ex = self.exchange
            if self.margin.reduce_only_dirty:
                ex._trim_reduce_only(events)
            new = events[start:]
            n = len(new)
            self.pricing.after_command(new)
            events.extend(new[n:])
            touched, moves, paid = set(), [], {}
            self.scan(events, start, touched, moves, paid)
            start = len(events)
        if self._dirty:
            accounts = self.margin.accounts
            for account in sorted(self._dirty):     # liquidated, and not keyed since
                self._key(accounts[account])

    # ---- finding accounts ----------------------------------------------------------------------

    def _sound(self, account: int) -> bool:
        """True when the account's triggers, as they stand, still keep it sound (the slack at their
        corner is positive, see _corner): it is sound now, at prices strictly inside them, and
        its triggers stay; its reserve becomes that slack. A position without a trigger on its
        side (opened or flipped since) gets one, the others staying (_key_position). False: the
        account is examined in full."""
        acc = self.margin.accounts.get(account)
        if acc is None or not self.shortcuts:
            return False
        triggers = self.index.triggers(account)
        missing = []
        terms = {}
        corner = self._corner(acc, triggers, terms, missing)
        if corner is None:
            return False
        if missing:
            return len(missing) == 1 and self._key_position(acc, triggers, corner, terms,
                                                            *missing[0])
        if corner < 1:
            return False
        self._reserve[account] = corner
        self._terms[account] = terms
        return True

    def _corner(self, acc, triggers: tuple, terms: dict | None = None,
                missing: list | None = None) -> int | None:
        """The account's equity - maintenance with each price one tick inside its trigger (a DOWN
        trigger below 1: at 1; a position's price inside the trigger on its side), or None when
        the triggers do not cover it: an exposure without a trigger on its side, a trigger of
        None, or a price not strictly inside a trigger. With `missing`, positions without a
        trigger on their side are listed there as (symbol, position) instead, and left out of the
        sum. With `terms`, each position's term is put there as _terms keeps it.

        It is the least slack at any prices strictly inside the triggers (the slack itself without
        positions is more by the bad debt + 1). Equity - maintenance is a sum of terms of one price
        each: a long's value less its maintenance (which rises by at most ceil(notional change x
        rate) <= the value's change, rates < 100%) never falls as its mark rises; a short's value
        falls and its maintenance rises with its mark; collateral's value (rounded down) never
        falls as its index rises. So each term is least at its trigger's inner neighbour, whatever
        the other prices are."""
        pricing = self.pricing
        below = {}          # dim -> the corner price of its DOWN trigger
        above = {}          # dim -> the corner price of its UP trigger
        for dim, direction, trigger in triggers:
            if trigger is None:
                return None
            kind, symbol = dim
            price = pricing.mark_price(symbol) if kind == "mark" else pricing.index_price(symbol)
            if price is None:
                return None
            if direction == DOWN:
                if price <= trigger:
                    return None
                below[dim] = trigger + 1 if trigger > 0 else 1
            else:
                if price >= trigger:
                    return None
                above[dim] = trigger - 1
        margin = self.margin
        cash = acc.cash
        slack = cash[self.settle] - margin.lending.debts.get(acc.id, 0)
        mark_dim = self._mark_dim
        for symbol, pos in acc.positions.items():
            dim = mark_dim[symbol]
            size = pos.size
            at = below.get(dim) if size > 0 else above.get(dim) if size < 0 else 0
            if at is None:
                if missing is None:
                    return None
                missing.append((symbol, pos))
                if terms is not None:
                    terms[symbol] = [below.get(dim), above.get(dim), 0]
                continue
            term = self.term(symbol, size, pos.cost, at)
            slack += term
            if terms is not None and (dim in below or dim in above):
                terms[symbol] = [below.get(dim), above.get(dim), term]
        for c in margin.collateral:
            amount = cash[c.asset]
            if amount > 0 and pricing.index_price(c.symbol) is not None:
                at = below.get(self._index_dim[c.symbol])
                if at is None:
                    return None
                slack += c.value(amount, at)
        return slack

    def _key_position(self, acc, triggers: tuple, rest: int, terms: dict, symbol: str,
                      pos) -> bool:
        """Gives one position a trigger on its side, the account's other triggers staying (one on
        the position's other side stays too, spare: a fill that flips it back needs nothing new).
        `rest` is the corner's equity - maintenance without this position, so the account's is a
        function of this position's mark alone, solved exactly as a lone position's (see
        _triggers), keeping half of it at the mark as room. False when it is not positive at the
        mark."""
        mark = self.pricing.mark_price(symbol)
        if mark is None:
            return False
        p = self.params[symbol]
        size = pos.size
        now = rest + self.term(symbol, size, pos.cost, mark)
        if now < 1:
            return False
        direction = DOWN if size > 0 else UP
        # at a price x: rest + size x upt x x - its entry value - maintenance at x
        base = rest - (pos.cost if size > 0 else -pos.cost) * p.upt
        trigger = _place(p.tiers.liquidation_price(size, p.upt, base - now // 2) or 0, mark,
                         direction)
        dim = self._mark_dim[symbol]
        corners = terms.get(symbol) or [None, None, 0]
        new = [(dim, direction, trigger)]
        if corners[1 if direction == DOWN else 0] is None:
            new = _with_spare(dim, direction, trigger, mark)     # nothing on the other side
        self.index.set(acc.id, triggers + tuple(new))
        for _, side, at in new:
            corners[0 if side == DOWN else 1] = at + 1 if side == DOWN else at - 1
        at = corners[0 if direction == DOWN else 1]
        corners[2] = term = self.term(symbol, size, pos.cost, at)
        terms[symbol] = corners
        self._reserve[acc.id] = rest + term
        self._terms[acc.id] = terms
        return True

    def _slack(self, acc, figures: tuple) -> int:
        """> 0 while the account is sound: equity - maintenance with positions; without, its equity
        plus the bad debt already socialised, plus one (a deficit is a breach)."""
        equity, _, _, mm, _ = figures
        if mm > 0:
            return equity - mm
        return equity + self.socialized.get(acc.id, 0) + 1

    def _dims(self, acc) -> list[tuple[tuple[str, str], int, int | None, int]]:
        """[(dim, direction, price, adverse loss bound per tick)] of the account's exposures."""
        out = []
        mark_of = self.pricing.mark_price
        mark_dim = self._mark_dim
        for symbol, pos in acc.positions.items():
            size = pos.size
            if size:
                p = self.params[symbol]
                if size > 0:
                    out.append((mark_dim[symbol], DOWN, mark_of(symbol), size * p.upt))
                else:
                    out.append((mark_dim[symbol], UP, mark_of(symbol),
                                -(size * p.upt * p.short_rate // RATE_SCALE)))
        cash = acc.cash
        index_of = self.pricing.index_price
        for c in self.margin.collateral:
            amount = cash[c.asset]
            if amount > 0:
                price = index_of(c.symbol)
                if price is not None:       # unpriced collateral counts for nothing: no exposure
                    out.append((self._index_dim[c.symbol], DOWN, price,
                                -(-amount * c.num * c.keep // (c.den * RATE_SCALE))))
        return out

    def _stale(self, dims) -> bool:
        is_stale = self.pricing.is_stale
        return any(is_stale(dim[1]) for dim, _, _, _ in dims)

    def _examine(self, account: int, keep_earlier: bool = False) -> bool:
        """The full examination: True if the account must be liquidated now; otherwise it is keyed
        again at once (with keep_earlier, triggers that fire no later than the fresh ones stay)."""
        acc = self.margin.accounts.get(account)
        if acc is None:
            return False
        figures = self.margin._figures(acc)
        slack = self._slack(acc, figures)
        dims = self._dims(acc)
        if slack <= 0 and not self._stale(dims):
            return True
        self._key(acc, figures, slack, dims, keep_earlier)
        return False

    def _key(self, acc, figures: tuple | None = None, slack: int | None = None,
             dims: list | None = None, keep_earlier: bool = False) -> None:
        """Sets the account's triggers, its reserve (their corner's slack) and its terms."""
        if figures is None:
            figures = self.margin._figures(acc)
            slack = self._slack(acc, figures)
            dims = self._dims(acc)
        index = self.index
        index.set(acc.id, self._triggers(acc, figures, slack, dims), keep_earlier)
        terms = {}
        corner = self._corner(acc, index.triggers(acc.id), terms)
        if corner is not None and corner > 0:
            self._reserve[acc.id] = corner
            self._terms[acc.id] = terms
        else:
            self._reserve[acc.id] = 0       # examined at any payment
            self._terms.pop(acc.id, None)
        self._dirty.discard(acc.id)

    def _triggers(self, acc, figures: tuple, slack: int, dims: list) -> list:
        """Triggers inside which the account keeps more than half its slack (the rest is room for
        later fills to spend without new triggers: see LiquidationCore.step)."""
        if not dims:
            return []
        if slack <= 0:
            # in breach but deferred (a stale index): look again at any move
            return [(dim, d, None) for dim, d, _, _ in dims]
        room = slack // 2
        if len(dims) == 1 and dims[0][0][0] == "mark" and dims[0][2] is not None:
            # one position and nothing else: exactly where its slack falls to the room (the
            # liquidation price of the account with `room` less equity); a long that no positive
            # price takes there: 0, never
            dim, direction, mark, _ = dims[0]
            pos, base, others = self.margin._price_base(acc, dim[1], figures)
            p = self.params[dim[1]]
            price = p.tiers.liquidation_price(pos.size, p.upt, base - others - room)
            return _with_spare(dim, direction, _place(price or 0, mark, direction), mark)
        budget = slack - room - len(dims) - 1
        if budget < 0 or any(price is None for _, _, price, _ in dims):
            return [(dim, d, None) for dim, d, _, _ in dims]
        # the same fraction of its price for every dimension: sum(w x allowed move) <= budget
        total = sum(w * price for _, _, price, w in dims)
        triggers = []
        for dim, direction, price, _ in dims:
            allowed = budget * price // total
            trigger = price - allowed - 1 if direction == DOWN else price + allowed + 1
            trigger = _place(trigger, price, direction)
            if dim[0] == "mark":
                triggers += _with_spare(dim, direction, trigger, price)
            else:
                triggers.append((dim, direction, trigger))
        return triggers

    # ---- liquidating ---------------------------------------------------------------------------

    def _liquidate(self, account: int, events: list) -> None:
        ex = self.exchange
        margin = self.margin
        acc = margin.accounts[account]
        # its triggers, reserve and terms say nothing any more: keyed again before the command ends
        self._dirty.add(account)
        self._terms.pop(account, None)
        equity, _, _, mm, _ = margin._figures(acc)
        if mm > 0 and equity <= mm:
            reason = LiquidationReason.MAINTENANCE
        elif mm == 0 and equity + self.socialized.get(account, 0) < 0:
            reason = LiquidationReason.DEFICIT
        else:
            return      # an earlier liquidation of this round restored it
        events.append(m.LiquidationStarted(ex.seq, ex.clock, account, equity, mm, reason))
        self._cancel_orders(account, events)
        while mm > 0 and equity <= mm:
            symbol, qty = self._next_step(acc, equity > 0)
            self._close(acc, symbol, qty, events)
            equity, _, _, mm, _ = margin._figures(acc)
        if mm == 0 and equity + self.socialized.get(account, 0) < 0:
            self._settle_deficit(acc, events)

    def _cancel_orders(self, account: int, events: list) -> None:
        ex = self.exchange
        for symbol, market in ex.markets.items():
            for order_id, side, price, open_qty in market.book.cancel_account(account):
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
        for symbol in sorted(acc.positions):
            size = acc.positions[symbol].size
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
            acc.cash[self.settle] -= fee
            self._fund_change(fee, FundReason.LIQUIDATION_FEE, acc.id, symbol, events)
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
                    self._fund_change(-cover, FundReason.LOSS_COVERED, acc.id, symbol, events)
                    acc.cash[self.settle] += cover
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
            self._fund_change(-cover, FundReason.DEFICIT_COVERED, acc.id, "", events)
            acc.cash[self.settle] += cover
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
            lending.platform[self.settle] -= penalty
            self._fund_change(penalty, FundReason.COLLATERAL_PENALTY, acc.id, c.symbol, events)

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
        if account not in margin.lending.debts:
            margin.lending.called.discard(account)

    # ---- the fund ------------------------------------------------------------------------------

    def _fund_change(self, delta: int, reason: FundReason, account: int, symbol: str,
                     events: list) -> None:
        asset = self.settle
        self.fund[asset] += delta
        self._fund_seen[asset] = balance = self.fund[asset]
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
        entries = []
        for account, pos in sorted(margin.symbols[symbol].positions.items()):
            if pos.size * sign > 0:
                entries.append((account, pos.size, pos.cost,
                                margin.bankruptcy_price(account, symbol)))
        return ranking(entries, mark)

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
        self.index.clear()
        self._dirty.clear()
        self._reserve.clear()
        self._terms.clear()
        for account in sorted(self.margin.accounts):
            self._key(self.margin.accounts[account])
