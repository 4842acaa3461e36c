"""Random deposits, orders, cancels, amends, leverage changes, borrows, repays, index moves, clock
jumps and withdrawals against the margin layer, checked after every step against plain reference
models: the audit balances; balances, positions and loans follow from the events alone (with
realised PnL = the trades' cash flow + the open entry value); the order mirror and its aggregates
match the book; reduce-only orders can never increase a position; equity, initial and maintenance
margin recomputed with Fractions and marginal tier rates; what a withdrawal may take is exactly
what the engine allows; and each liquidation price is the first tick at which the engine's rule
holds. The liquidation engine is switched off here (it has its own property test): the point is
the margin layer's books and arithmetic while accounts drift anywhere, under water included.

On the built-in venue and on every preset of perpcore.venues (its tiers, fees, grid and
collateral; the mark at the index, as margin_venue's): the rules draw the built-in venue's symbols
and assets and the machine takes the preset's of the same base (quantities in the built-in
venue's lots, scaled to the preset's); an asset the preset does not hold is left out."""
import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, rule,
                                 run_state_machine_as_test)

from perpcore import default_config
from perpcore import messages as m
from perpcore.config import RATE_SCALE
from perpcore.venues import VENUES, venue

from margin_venue import BTC, ETH, S, Venue, repay_in_full

ACCOUNTS = (1, 2, 3, 4)
SYMBOLS = (BTC, ETH)
ASSETS = ("USD", "BTC", "ETH")
START = {BTC: "60000", ETH: "30000"}


def reference_maintenance(tiers, notional: int) -> int:
    """Maintenance as marginal rates: each slice of notional pays its own tier's rate (the same
    as Binance's rate-less-amount form, which the engine uses)."""
    total, floor = 0, 0
    for k, cap in enumerate(tiers.caps):
        top = notional if k == len(tiers.caps) - 1 else min(notional, cap)
        if top > floor:
            total += (top - floor) * tiers.rates[k]
        floor = cap
    return math.ceil(Fraction(total, RATE_SCALE))


def reference_side(size, orders, mark, buy, upt, lev) -> int:
    """One side's order margin from the individual orders: the lots beyond what reduces the
    position at the side's average price over the leverage, plus the side's net loss vs mark."""
    lots = sum(q for _, q in orders)
    if not lots:
        return 0
    value = sum(p * q for p, q in orders)
    reducing = max(0, -size if buy else size)
    increasing = max(0, lots - reducing)
    im = math.ceil(Fraction(value, lots) * increasing * upt / lev)
    if mark is not None:
        im += max(0, (value - lots * mark) if buy else (lots * mark - value)) * upt
    return im


class MarginMachine(RuleBasedStateMachine):
    def __init__(self, name: str = "default"):
        super().__init__()
        self.v = Venue(preset=venue(name))
        self.ex = self.v.ex
        self.cfg = cfg = self.ex.config
        self.margin = self.ex.margin
        reference = default_config()
        # the built-in venue's symbol -> the venue's of the same base, and the venue's lots in one
        # of the built-in venue's (the presets' lots divide it)
        self.sym = {s: cfg.collateral_symbol(reference.instruments[s].base) for s in SYMBOLS}
        self.symbols = tuple(self.sym.values())
        self.scale = {self.sym[s]: int(reference.instruments[s].lot_size
                                       / cfg.instruments[self.sym[s]].lot_size) for s in SYMBOLS}
        self.settle = cfg.settlement_asset
        self.assets = (self.settle, *sorted(cfg.margin.haircuts))
        self.asset = {"USD": self.settle, **{a: a for a in cfg.margin.haircuts}}
        # isolate the margin layer: no liquidation engine; the tests' loan policy (repaid in full)
        self.ex.liquidation.enabled = False
        repay_in_full(self.ex)
        self.ts = S
        for a in ACCOUNTS:
            self.submit(m.CreateAccount(account=a))
        for symbol, price in START.items():
            symbol = self.sym[symbol]
            self.submit(m.SetIndexPrice(source="x", symbol=symbol, ts=self.ts,
                                        price=cfg.instruments[symbol].to_ticks(price)))
        self.flows = {a: dict.fromkeys(self.assets, 0) for a in ACCOUNTS}   # from the events
        self.fees = dict.fromkeys(ACCOUNTS, 0)
        self.debt = dict.fromkeys(ACCOUNTS, 0)
        self.size = {(a, s): 0 for a in ACCOUNTS for s in self.symbols}
        self.cashflow = {(a, s): 0 for a in ACCOUNTS for s in self.symbols}     # ticks x lots
        self.transfer_id = 0

    def units(self, asset: str, amount) -> int:
        """`amount` of the built-in venue's `asset` in the venue's minor units."""
        return self.cfg.assets[self.asset[asset]].to_units(amount)

    @initialize(funding=st.lists(st.sampled_from([(0, 0, 0), (1_000, 0, 0), (0, 10**7, 10**8),
                                                   (20_000, 10**8, 10**9)]),
                                 min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)))
    def fund(self, funding):
        """Each account starts with nothing, a little cash, a little collateral, or plenty."""
        for a, amounts in zip(ACCOUNTS, funding):
            for asset, amount in zip(ASSETS, (self.units("USD", amounts[0]), *amounts[1:])):
                asset = self.asset.get(asset)
                if amount and asset:
                    self.submit(m.Deposit(account=a, asset=asset, amount=amount))

    # ---- the reference model, fed by the events -------------------------------------------------

    def submit(self, cmd):
        events = self.ex.submit(cmd)
        for e in events:
            t = type(e)
            if t is m.Deposited:
                self.flows[e.account][e.asset] += e.amount
            elif t is m.Withdrawn:
                self.flows[e.account][e.asset] -= e.amount
            elif t is m.Borrowed:
                self.flows[e.account][self.settle] += e.amount
                self.debt[e.account] += e.amount
            elif t is m.Repaid:
                self.flows[e.account][self.settle] -= e.amount
                self.debt[e.account] -= e.amount
            elif t is m.InterestAccrued:
                self.debt[e.account] += e.amount
            elif t is m.CollateralConverted:
                self.flows[e.account][e.asset] -= e.amount
                self.flows[e.account][self.settle] += e.proceeds - e.repaid   # the loan repaid
                self.debt[e.account] -= e.repaid
            elif t is m.FundingPaid:
                self.flows[e.account][self.settle] += e.amount
            elif t is m.OrderFilled:
                spec = self.ex.config.instruments[e.symbol]
                upt = self.ex.config.units_per_ticklot(e.symbol)
                value = e.price * e.qty
                buyer, seller = (e.taker_account, e.maker_account) if e.taker_side == 0 else \
                    (e.maker_account, e.taker_account)
                self.size[buyer, e.symbol] += e.qty
                self.size[seller, e.symbol] -= e.qty
                self.cashflow[buyer, e.symbol] -= value
                self.cashflow[seller, e.symbol] += value
                for account, rate in ((e.maker_account, spec.maker_fee),
                                      (e.taker_account, spec.taker_fee)):
                    self.fees[account] += math.ceil(Fraction(value * upt * rate, RATE_SCALE))
        return events

    # ---- rules ---------------------------------------------------------------------------------

    @rule(a=st.sampled_from(ACCOUNTS), asset=st.sampled_from(ASSETS),
          amount=st.integers(1, 200_000))
    def deposit(self, a, asset, amount):
        units = self.units("USD", amount) if asset == "USD" else amount * 10**5   # up to 2 BTC
        asset = self.asset.get(asset)
        if asset is None:
            return
        self.transfer_id += 1
        self.submit(m.Deposit(account=a, asset=asset, amount=units, transfer_id=self.transfer_id))

    @rule(a=st.sampled_from(ACCOUNTS), asset=st.sampled_from(ASSETS),
          share=st.sampled_from([Fraction(1, 4), Fraction(1), Fraction(101, 100), None]))
    def withdraw(self, a, asset, share):
        asset = self.asset.get(asset)
        if asset is None:
            return
        view = self.ex.account(a)
        available, held = view.available[asset], view.balances[asset]
        amount = available + 1 if share is None else math.ceil(available * share)
        if amount <= 0:
            return
        self.transfer_id += 1
        events = self.submit(m.Withdraw(account=a, asset=asset, amount=amount,
                                        transfer_id=self.transfer_id))
        if amount <= available:
            assert type(events[0]) is m.Withdrawn, events
        else:
            assert type(events[0]) is m.OrderRejected and events[0].code == (
                m.RejectCode.INSUFFICIENT_BALANCE if amount > held
                else m.RejectCode.WITHDRAWAL_BREAKS_MARGIN), (events, available, held)

    @rule(a=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS),
          side=st.sampled_from([m.Side.BUY, m.Side.SELL]), offset=st.integers(-300, 300),
          qty=st.integers(1, 3000), reduce_only=st.sampled_from([False, False, False, True]))
    def quote(self, a, symbol, side, offset, qty, reduce_only):
        symbol = self.sym[symbol]
        qty *= self.scale[symbol]
        mark = self.ex.mark_price(symbol)
        price = max(1, mark + offset * (mark // 10_000))            # within +-3% of the mark
        self.place(a, symbol, side, price, qty, m.TimeInForce.GTC, reduce_only)

    @rule(a=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS),
          side=st.sampled_from([m.Side.BUY, m.Side.SELL]), depth=st.integers(0, 100),
          qty=st.integers(1, 3000), reduce_only=st.sampled_from([False, False, False, True]))
    def take(self, a, symbol, side, depth, qty, reduce_only):
        symbol = self.sym[symbol]
        qty *= self.scale[symbol]
        book = self.ex.book(symbol)
        touch = book.best_ask() if side == m.Side.BUY else book.best_bid()
        if touch is None:
            return
        price = touch + depth if side == m.Side.BUY else max(1, touch - depth)
        self.place(a, symbol, side, price, qty, m.TimeInForce.IOC, reduce_only)

    def place(self, a, symbol, side, price, qty, tif, reduce_only):
        before = self.ex.account(a)
        events = self.submit(m.PlaceOrder(account=a, symbol=symbol, side=side, price=price,
                                          qty=qty, tif=tif, reduce_only=reduce_only))
        if type(events[0]) is m.OrderAccepted and not [e for e in events
                                                       if type(e) is m.OrderFilled]:
            after = self.ex.account(a)
            # an order that rests without trading and adds margin left the account able to carry
            # it (a reduce-only order is the way out of a position: never refused for margin)
            if after.initial_margin > before.initial_margin and not reduce_only:
                assert after.equity >= after.initial_margin
        if reduce_only and type(events[0]) is m.OrderAccepted:
            assert abs(self.size[a, symbol]) <= abs(before_size(before, symbol))

    @rule(data=st.data())
    def cancel_or_amend(self, data):
        orders = self.resting()
        if not orders:
            return
        order_id, (account, symbol, side, price, qty) = data.draw(st.sampled_from(orders))
        if data.draw(st.booleans()):
            self.submit(m.CancelOrder(account=account, symbol=symbol, order_id=order_id))
            return
        filled = self.ex.book(symbol).order(order_id)[5]
        new_price = max(1, price + data.draw(st.integers(-200, 200)) * (price // 10_000))
        self.submit(m.AmendOrder(account=account, symbol=symbol, order_id=order_id,
                                 price=new_price,
                                 qty=filled + data.draw(st.integers(1, 400)) * self.scale[symbol]))

    @rule(a=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS),
          leverage=st.sampled_from([1, 5, 20, 50, 100, 125]))
    def set_leverage(self, a, symbol, leverage):
        self.submit(m.SetLeverage(account=a, symbol=self.sym[symbol], leverage=leverage))

    @rule(a=st.sampled_from(ACCOUNTS),
          share=st.sampled_from([Fraction(1, 2), Fraction(1), Fraction(101, 100)]))
    def borrow(self, a, share):
        """A share of what the maximum loan-to-value leaves (over it: refused)."""
        view = self.ex.account(a)
        room = view.collateral_market_value * self.cfg.margin.max_ltv // RATE_SCALE - view.loan
        amount = math.ceil(room * share)
        if amount > 0:
            events = self.submit(m.Borrow(account=a, asset=self.settle, amount=amount))
            assert (type(events[0]) is m.Borrowed) == (amount <= room), events

    @rule(a=st.sampled_from(ACCOUNTS), share=st.sampled_from([Fraction(1, 3), Fraction(1)]))
    def repay(self, a, share):
        view = self.ex.account(a)
        amount = min(view.loan, max(view.balances[self.settle], 0))
        if amount:
            self.submit(m.Repay(account=a, asset=self.settle, amount=math.ceil(amount * share)))

    @rule(symbol=st.sampled_from(SYMBOLS), move=st.integers(-1500, 1500),
          dt=st.integers(1, 30))
    def move_index(self, symbol, move, dt):
        symbol = self.sym[symbol]
        index = self.ex.index_price(symbol)
        self.ts += dt * S
        self.submit(m.SetIndexPrice(source="x", symbol=symbol, ts=self.ts,
                                    price=max(1000, index + move * (index // 10_000))))

    @rule(hours=st.integers(1, 12))
    def advance(self, hours):
        self.ts += hours * 3600 * S
        self.submit(m.AdvanceClock(ts=self.ts))
        for symbol in self.symbols:      # keep the index fresh
            self.submit(m.SetIndexPrice(source="x", symbol=symbol, ts=self.ts,
                                        price=self.ex.index_price(symbol)))

    # ---- invariants ----------------------------------------------------------------------------

    @invariant()
    def books_balance(self):
        audit = self.ex.audit()
        assert audit.ok, audit

    @invariant()
    def balances_positions_and_loans_follow_from_the_events(self):
        for a in ACCOUNTS:
            view = self.ex.account(a)
            assert view.loan == self.debt[a]
            for asset in self.assets[1:]:
                assert view.balances[asset] == self.flows[a][asset]
            realised = 0
            for symbol in self.symbols:
                pos = self.margin.accounts[a].positions.get(symbol)
                size = pos.size if pos else 0
                assert size == self.size[a, symbol]
                signed_cost = pos.signed_cost() if pos else 0
                assert (signed_cost == 0) == (size == 0) and (pos is None or pos.cost >= 0)
                realised += (self.cashflow[a, symbol] + signed_cost) * \
                    self.ex.config.units_per_ticklot(symbol)
            assert view.balances[self.settle] == \
                self.flows[a][self.settle] + realised - self.fees[a]

    def resting(self) -> list[tuple[int, tuple]]:
        """[(order_id, (account, symbol, side, price, open qty))] of every resting order, by id."""
        return sorted((order_id, (account, symbol, side, price, qty))
                      for symbol in self.symbols
                      for order_id, account, side, price, qty, _, _, _
                      in self.ex.book(symbol)._book.resting())

    @invariant()
    def order_sums_match_the_books(self):
        orders = self.resting()
        books = dict(orders)
        ro_ids = self.margin.reduce_only_orders
        # a reduce-only order is one of the books', as the books hold it
        assert {i: tuple(o) for i, o in ro_ids.items()} == {i: books[i] for i in ro_ids}
        for a in ACCOUNTS:
            for symbol, pos in self.margin.accounts[a].positions.items():
                mine = [o for _, o in orders if o[0] == a and o[1] == symbol]
                for side, qty, value in ((0, pos.buy_qty, pos.buy_value),
                                         (1, pos.sell_qty, pos.sell_value)):
                    assert qty == sum(o[4] for o in mine if o[2] == side)
                    assert value == sum(o[3] * o[4] for o in mine if o[2] == side)
                ids = self.margin.reduce_only_ids.get((a, symbol), [])
                assert pos.reduce_only == len(ids)
                assert sorted(ids) == sorted(i for i, o in ro_ids.items()
                                             if o[0] == a and o[1] == symbol)
                ro = [books[i] for i in ids]
                if ro:
                    # reduce-only orders sit on the reducing side, which cannot outgrow the position
                    assert pos.size != 0
                    reducing = 1 if pos.size > 0 else 0
                    assert all(o[2] == reducing for o in ro)
                    assert (pos.sell_qty if reducing else pos.buy_qty) <= abs(pos.size)

    @invariant()
    def figures_match_a_fraction_reference(self):
        margin = self.margin
        for a in ACCOUNTS:
            view = self.ex.account(a)
            acc = margin.accounts[a]
            coll = market = upnl = im = mm = 0
            for c in margin.collateral:
                index = self.ex.index_price(c.symbol)
                amount = max(view.balances[c.asset], 0)
                # money units of the settlement asset per tick of price per unit of the asset
                unit = (Fraction(self.cfg.instruments[c.symbol].tick_size)
                        / Fraction(self.cfg.assets[self.settle].unit)
                        * Fraction(self.cfg.assets[c.asset].unit))
                haircut = Fraction(self.cfg.margin.haircuts[c.asset], RATE_SCALE)
                coll += math.floor(amount * index * unit * (1 - haircut))
                market += math.floor(amount * index * unit)
            for symbol, pos in acc.positions.items():
                sr = margin.symbols[symbol]
                mark = self.ex.mark_price(symbol)
                if pos.size:
                    notional = abs(pos.size) * mark * sr.upt
                    upnl += (pos.size * mark - pos.signed_cost()) * sr.upt
                    im += math.ceil(Fraction(notional, pos.leverage))
                    mm += reference_maintenance(sr.tiers, notional)
                    assert math.ceil(Fraction(notional, pos.leverage)) > \
                        reference_maintenance(sr.tiers, notional) or notional == 0
                orders = [o for _, o in self.resting() if o[0] == a and o[1] == symbol]
                im += max(reference_side(pos.size, [(o[3], o[4]) for o in orders if o[2] == side],
                                         mark, side == 0, sr.upt, pos.leverage)
                          for side in (0, 1))
            assert (view.collateral_value, view.collateral_market_value) == (coll, market)
            assert view.unrealised_pnl == upnl
            assert view.equity == view.balances[self.settle] + coll - view.loan + upnl
            assert (view.initial_margin, view.maintenance_margin) == (im, mm)
            assert view.liquidatable == (mm > 0 and view.equity <= mm)
            if view.loan:
                assert view.ltv == (math.ceil(Fraction(view.loan * RATE_SCALE, market))
                                    if market else None)

    @invariant()
    def liquidation_prices_are_where_the_rule_first_holds(self):
        margin = self.margin
        marks = {s: self.ex.mark_price(s) for s in self.symbols}
        views = [(a, self.ex.account(a)) for a in ACCOUNTS]
        prices = {s: margin.symbols[s].prices for s in self.symbols}   # what the margin layer reads

        def mark_at(symbol, price):
            for s in self.symbols:
                prices[s].mark = price if s == symbol else marks[s]
        try:
            for a, view in views:
                for p in view.positions:
                    if not p.size or p.liquidation_price is None:
                        continue
                    price, step = p.liquidation_price, (1 if p.size > 0 else -1)
                    mark_at(p.symbol, price)
                    assert margin.liquidatable(a), (a, p)
                    beyond = price + step
                    if beyond >= 1:
                        mark_at(p.symbol, beyond)
                        assert not margin.liquidatable(a), (a, p)
        finally:
            mark_at(None, None)


def before_size(view, symbol):
    for p in view.positions:
        if p.symbol == symbol:
            return p.size
    return 0


# the built-in venue as many examples as ever; each preset a quarter of them
@pytest.mark.parametrize("name", list(VENUES))
def test_margin(name):
    run_state_machine_as_test(lambda: MarginMachine(name), settings=settings(
        max_examples=200 if name == "default" else 50, stateful_step_count=80, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
