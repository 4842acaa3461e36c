"""Account views: what a person or a gateway reads of an account, made on request.

This module owns the read-only views of the margin layer's accounts: AccountView (balances, loan,
collateral, equity, margins, margin ratio, loan-to-value, what may be withdrawn) and PositionView
(per position: entry, mark, PnL, margins, open orders, liquidation and bankruptcy prices), as
Exchange.account() returns them. Every figure comes from perpcore.margin's valuation; nothing here
is state, and nothing here moves money.
"""
from __future__ import annotations

from decimal import Decimal

import msgspec

from perpcore.config import DECIMAL, RATE_SCALE
from perpcore.risk import ceil_div, ltv, order_margin


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


def account_view(margin, account: int) -> AccountView:
    """The account's view, at the current prices (perpcore.margin.Margin.view)."""
    acc = margin.accounts[account]
    figures = margin._figures(acc)
    equity, upnl, im, mm, coll = figures
    positions = []
    for symbol, pos in acc.positions.items():      # (in symbol order)
        if not (pos.size or pos.buy_qty or pos.sell_qty):
            continue
        sr = margin.symbols[symbol]
        mark = margin._mark(symbol)
        upt = sr.upt
        size = pos.size
        notional = pos.cost * upt if mark is None else abs(size) * mark * upt
        pnl = 0 if mark is None or not size else (size * mark - pos.signed_cost()) * upt
        om = max(order_margin(size, pos.buy_qty, pos.buy_value, mark, True, upt, pos.leverage),
                 order_margin(size, pos.sell_qty, pos.sell_value, mark, False, upt,
                              pos.leverage))
        tick = margin.config.instruments[symbol].tick_size
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
            liquidation_price=margin.liquidation_price(account, symbol, figures),
            bankruptcy_price=margin.bankruptcy_price(account, symbol, figures)))
    debt = margin.lending.debts.get(account, 0)
    market = margin._collateral_market_value(acc)
    return AccountView(
        account=account, professional=acc.professional, balances=margin.balances(acc), loan=debt,
        collateral_value=coll, collateral_market_value=market, unrealised_pnl=upnl,
        equity=equity, initial_margin=im, maintenance_margin=mm,
        margin_ratio=ceil_div(mm * RATE_SCALE, equity) if equity > 0 else None,
        ltv=ltv(debt, market), available=margin.available(acc, figures),
        liquidatable=margin.in_breach(equity, mm),
        positions=tuple(positions))
