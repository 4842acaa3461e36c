"""Conditional orders: stop-market, stop-limit, take-profit market and limit (stage 5).

The Triggers component (ex.components["triggers"], also ex.triggers) holds every accepted
conditional order that has not fired yet. Such an order is not in the book and, as on Binance,
reserves no margin: it only waits. When its reference price (the mark, or the last trade) crosses
its trigger price it fires: OrderTriggered, then it goes through the normal path of an order placed
at that instant, under the order id it was given when accepted (pre-trade checks, matching,
settlement). If a check refuses it then (margin, a reduce-only order whose position is gone, a
market order without liquidity) it gets an OrderRejected carrying its order id and is dropped.

Direction (see messages.TriggerKind): a stop buys on a rise and sells on a fall; a take-profit
sells on a rise and buys on a fall. An order whose condition already holds when it arrives is
refused as WOULD_TRIGGER_IMMEDIATELY; one whose price source has no price yet as
NO_REFERENCE_PRICE.

Index: per symbol and price source, one sorted list of the orders waiting for a rise, keyed
(trigger price, order id), and one of those waiting for a fall, keyed (-trigger price, order id),
so each list starts with the order the price reaches first and a price move reads only the orders
it crossed. Firing order, deterministic: symbols by name; per symbol the mark's orders then the
last trade's; per source those crossed by a rise (lowest trigger first) then by a fall (highest
first); equal triggers by arrival (order id). Fills of fired orders move the last trade and the
mark, which may fire more: the exchange loops until a round fires nothing (each round removes at
least one order, so it ends). Trades made later in the same command by the liquidation engine
(stage 6) are seen at the next command.
"""
from __future__ import annotations

from sortedcontainers import SortedList

from perpcore import messages as m
from perpcore._exchange import Waiting
from perpcore.errors import RejectCode, reject
from perpcore.messages import CancelReason, TriggerKind, TriggerSource

_SOURCES = (TriggerSource.MARK, TriggerSource.LAST)


def rises(cmd: m.PlaceOrder) -> bool:
    """True if the order fires when its price rises to the trigger, False on a fall to it."""
    return (cmd.trigger == TriggerKind.STOP) == (cmd.side == m.Side.BUY)


class Triggers(Waiting):
    """The waiting conditional orders of an Exchange.

    It reads of the exchange `markets`, `seq`, `clock` and the pricing
    component's mark and last trade. Stage 5 asks it for the orders prices crossed (take_crossed)
    and fires each (fire): the exchange places the live order as a new command of the pipeline;
    nothing here calls back into order entry."""

    def __init__(self, exchange):
        self.exchange = exchange
        self._clear()

    def _clear(self) -> None:
        self.live = 0                                   # waiting orders; 0 keeps stage 5 free
        self.orders: dict[int, m.PlaceOrder] = {}       # order id -> the order as placed
        self.clients: dict[tuple[int, int], int] = {}   # (account, client order id) -> order id
        # symbol -> source -> (rise list, fall list)
        self.index = {symbol: {source: (SortedList(), SortedList()) for source in _SOURCES}
                      for symbol in self.exchange.markets}

    # ---- prices --------------------------------------------------------------------------------

    def reference(self, symbol: str, source: int) -> int | None:
        state = self.exchange.components["pricing"].symbols[symbol]
        return state.mark if source == TriggerSource.MARK else state.last_trade

    # ---- commands ------------------------------------------------------------------------------

    def place(self, market, cmd: m.PlaceOrder, events: list) -> None:
        """Accepts a conditional order, once its reference price shows it would not fire at once
        (order entry has checked it as any order, and its trigger price)."""
        ex = self.exchange
        spec = market.spec
        trigger = cmd.trigger_price
        source = TriggerSource(cmd.trigger_by)
        ref = self.reference(spec.symbol, source)
        if ref is None:
            reject(RejectCode.NO_REFERENCE_PRICE,
                    f"no {source.name.lower()} price for {spec.symbol} yet")
        up = rises(cmd)
        if ref >= trigger if up else ref <= trigger:
            reject(RejectCode.WOULD_TRIGGER_IMMEDIATELY,
                    f"{source.name.lower()} price {ref} already at or "
                    f"{'above' if up else 'below'} the trigger {trigger}")
        ex._advance_to(cmd.ts, events)
        order_id = ex._take_order_id()
        self._add(order_id, cmd)
        events.append(m.TriggerOrderAccepted(
            ex.seq, ex.clock, cmd.account, cmd.symbol, order_id, cmd.client_order_id, cmd.side,
            cmd.price, cmd.qty, cmd.order_type, cmd.tif, cmd.reduce_only,
            TriggerKind(cmd.trigger), trigger, source))

    def _add(self, order_id: int, cmd: m.PlaceOrder) -> None:
        self.orders[order_id] = cmd
        if cmd.client_order_id:
            self.clients[(cmd.account, cmd.client_order_id)] = order_id
        up, down = self.index[cmd.symbol][cmd.trigger_by]
        if rises(cmd):
            up.add((cmd.trigger_price, order_id))
        else:
            down.add((-cmd.trigger_price, order_id))
        self.live += 1

    def _remove(self, order_id: int) -> m.PlaceOrder:
        cmd = self.orders[order_id]
        up, down = self.index[cmd.symbol][cmd.trigger_by]
        if rises(cmd):
            up.remove((cmd.trigger_price, order_id))
        else:
            down.remove((-cmd.trigger_price, order_id))
        return self._forget(order_id)

    def _forget(self, order_id: int) -> m.PlaceOrder:
        """Drops an order already out of the index (cancelled, or taken out to fire)."""
        cmd = self.orders.pop(order_id)
        if cmd.client_order_id:
            del self.clients[(cmd.account, cmd.client_order_id)]
        self.live -= 1
        return cmd

    def find(self, account: int, symbol: str, order_id: int, client_order_id: int) -> int:
        """The id of the account's waiting order in `symbol` named by id (or, when order_id is 0,
        by client order id); 0 if there is none."""
        if not order_id:
            order_id = self.clients.get((account, client_order_id), 0) if client_order_id else 0
        cmd = self.orders.get(order_id)
        return order_id if cmd is not None and cmd.account == account \
            and cmd.symbol == symbol else 0

    def has_client(self, account: int, client_order_id: int) -> bool:
        return (account, client_order_id) in self.clients

    def cancel(self, order_id: int, reason: CancelReason, events: list) -> None:
        ex = self.exchange
        cmd = self._remove(order_id)
        events.append(m.OrderCancelled(ex.seq, ex.clock, cmd.account, cmd.symbol, order_id,
                                       cmd.qty, reason))

    def cancel_account(self, account: int, symbol: str, reason: CancelReason,
                       events: list) -> None:
        """Cancels the account's waiting orders in `symbol`, oldest first."""
        if not self.live:
            return
        for order_id in sorted(i for i, cmd in self.orders.items()
                               if cmd.account == account and cmd.symbol == symbol):
            self.cancel(order_id, reason, events)

    # ---- stage 5 -------------------------------------------------------------------------------

    def take_crossed(self) -> list[tuple[int, int]]:
        """Takes out every order its price has crossed, as (order id, price), in firing order."""
        fired = []
        for symbol, sources in self.index.items():      # markets are kept in name order
            for source, (up, down) in sources.items():
                if not up and not down:
                    continue
                ref = self.reference(symbol, source)
                if ref is None:
                    continue
                while up and up[0][0] <= ref:
                    fired.append((up.pop(0)[1], ref))
                while down and -down[0][0] >= ref:
                    fired.append((down.pop(0)[1], ref))
        return fired

    def fire(self, order_id: int, ref: int, events: list) -> m.PlaceOrder:
        """A crossed order (from take_crossed) fires: its OrderTriggered, and the live order the
        exchange now places under the same id, through the same stages as any order."""
        ex = self.exchange
        cmd = self._forget(order_id)
        events.append(m.OrderTriggered(ex.seq, ex.clock, cmd.account, cmd.symbol, order_id,
                                       cmd.client_order_id, cmd.trigger_price,
                                       TriggerSource(cmd.trigger_by), ref))
        return m.PlaceOrder(cmd.account, cmd.symbol, cmd.side, cmd.qty, cmd.price,
                            cmd.order_type, cmd.tif, cmd.stp, cmd.client_order_id,
                            cmd.reduce_only)

    # ---- snapshots -----------------------------------------------------------------------------

    def to_state(self) -> list:
        """The waiting orders, by order id, each as [order id, the PlaceOrder's fields]."""
        return [[order_id, cmd.account, cmd.symbol, int(cmd.side), cmd.qty, cmd.price,
                 int(cmd.order_type), int(cmd.tif), int(cmd.stp), cmd.client_order_id,
                 cmd.reduce_only, int(cmd.trigger), cmd.trigger_price, int(cmd.trigger_by)]
                for order_id, cmd in sorted(self.orders.items())]

    def from_state(self, data: list) -> None:
        self._clear()
        for order_id, account, symbol, side, qty, price, order_type, tif, stp, client, \
                reduce_only, trigger, trigger_price, trigger_by in data:
            self._add(order_id, m.PlaceOrder(
                account, symbol, m.Side(side), qty, price, m.OrderType(order_type),
                m.TimeInForce(tif), m.SelfTradePrevention(stp), client, reduce_only, 0,
                TriggerKind(trigger), trigger_price, TriggerSource(trigger_by)))
