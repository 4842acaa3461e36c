"""The pure-Python reference order book that the Cython order book is tested against.

ReferenceBook has the same Python API, status codes, fill records, depth, impact() and resting()
order as perpcore._book.OrderBook (the semantics are in ext/perpcore/_book.pxd), but is built for
being obviously right rather than fast: per side a SortedDict of price -> FIFO queue (an OrderedDict
of order id -> order), plus plain dicts as the indexes. Every operation is O(log n) in the number of
price levels plus the work it does, so it doubles as the pure-Python baseline in the benchmarks.
"""
import operator
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice

import numpy as np
from sortedcontainers import SortedDict

from perpcore._book import (
    AMEND, BUY, CANCEL, CMD_DTYPE, DUPLICATE_CLIENT_ID, DUPLICATE_ORDER_ID, EXPIRED, FILL_DTYPE,
    FILLED, FOK, FOK_UNFILLABLE, GTC, INVALID, IOC, MAKER_EXPIRED, PLACE, POST_ONLY,
    POST_ONLY_WOULD_TAKE, RESTING, SELL, STP_EXPIRED, STP_MODES, TRADE, UNKNOWN_ORDER,
)

STP_NONE = STP_MODES["none"]
STP_EXPIRE_TAKER = STP_MODES["expire_taker"]
STP_EXPIRE_MAKER = STP_MODES["expire_maker"]
STP_EXPIRE_BOTH = STP_MODES["expire_both"]

SIDES = (BUY, SELL)
TIFS = (GTC, IOC, FOK, POST_ONLY)
STPS = (STP_NONE, STP_EXPIRE_TAKER, STP_EXPIRE_MAKER, STP_EXPIRE_BOTH)


@dataclass(slots=True, eq=False)
class _Order:
    id: int
    account: int
    side: int
    price: int
    qty: int            # open quantity
    filled: int
    client_id: int      # 0 = none
    post_only: bool
    stp: int

    def as_tuple(self):
        return (self.id, self.account, self.side, self.price, self.qty, self.filled,
                self.client_id, self.post_only)


def _crosses(taker_side, limit, maker_price):
    return maker_price <= limit if taker_side == BUY else maker_price >= limit


def _check_side(side):
    if side not in SIDES:
        raise ValueError(f"side must be BUY ({BUY}) or SELL ({SELL}), not {side!r}")


class ReferenceBook:
    """A price-time priority order book for one instrument, in plain Python."""

    def __init__(self, capacity=1024):
        # capacity only mirrors OrderBook's signature: Python containers grow by themselves.
        # Per side, price -> FIFO of orders; bids sort by descending price: both iterate best first.
        self._levels = (SortedDict(operator.neg), SortedDict())
        self._orders = {}           # order id -> order
        self._by_client = {}        # (account, client id) -> order
        self._by_account = {}       # account -> {order id: order}, oldest first (insertion order)
        self._fills = []
        self.trade_count = 0
        self.traded_qty = 0

    # ---- storage -------------------------------------------------------------------------------

    def _rest(self, order):
        self._levels[order.side].setdefault(order.price, OrderedDict())[order.id] = order
        self._orders[order.id] = order
        if order.client_id != 0:
            self._by_client[order.account, order.client_id] = order
        self._by_account.setdefault(order.account, {})[order.id] = order

    def _remove(self, order):
        levels = self._levels[order.side]
        queue = levels[order.price]
        del queue[order.id]
        if not queue:
            del levels[order.price]
        del self._orders[order.id]
        if order.client_id != 0:
            del self._by_client[order.account, order.client_id]
        account_orders = self._by_account[order.account]
        del account_orders[order.id]
        if not account_orders:
            del self._by_account[order.account]

    def _record(self, kind, maker, taker_id, taker_account, qty, maker_remaining, taker_remaining):
        self._fills.append((kind, maker.id, taker_id, maker.account, taker_account, maker.price,
                            qty, maker_remaining, taker_remaining))

    # ---- matching ------------------------------------------------------------------------------

    def _best_price(self, side):
        levels = self._levels[side]
        return levels.peekitem(0)[0] if levels else None

    def _would_take(self, side, price):
        best = self._best_price(1 - side)
        return best is not None and _crosses(side, price, best)

    def _crossing_makers(self, taker_side, limit):
        """The opposite side's orders a taker with that limit reaches, in priority order."""
        for price, queue in self._levels[1 - taker_side].items():
            if not _crosses(taker_side, limit, price):
                return
            yield from queue.values()

    def _fok_fillable(self, side, price, qty, account, stp):
        """Whether the taker would fill qty completely, counting only what STP lets it trade."""
        tradable = 0
        for maker in self._crossing_makers(side, price):
            if tradable >= qty:
                break
            if stp != STP_NONE and maker.account == account:
                if stp == STP_EXPIRE_MAKER:
                    continue    # that maker would be expired, not traded
                break           # the taker would be expired right here
            tradable += maker.qty
        return tradable >= qty

    def _match(self, taker_id, account, side, price, qty, stp):
        """Trades the taker against the opposite side; returns (remaining qty, expired by STP)."""
        opposite = self._levels[1 - side]
        while qty > 0 and opposite:
            level_price, queue = opposite.peekitem(0)
            if not _crosses(side, price, level_price):
                break
            maker = next(iter(queue.values()))
            if stp != STP_NONE and maker.account == account:
                if stp == STP_EXPIRE_TAKER:
                    return qty, True
                self._record(MAKER_EXPIRED, maker, taker_id, account, maker.qty, 0, qty)
                self._remove(maker)
                if stp == STP_EXPIRE_BOTH:
                    return qty, True
                continue
            traded = min(maker.qty, qty)
            maker.qty -= traded
            maker.filled += traded
            qty -= traded
            self.trade_count += 1
            self.traded_qty += traded
            self._record(TRADE, maker, taker_id, account, traded, maker.qty, qty)
            if maker.qty == 0:
                self._remove(maker)
        return qty, False

    def _place(self, order_id, account, side, price, qty, tif, stp, client_id, filled):
        if (qty <= 0 or price <= 0 or side not in SIDES or tif not in TIFS
                or stp not in STPS):
            return INVALID
        if order_id in self._orders:
            return DUPLICATE_ORDER_ID
        if client_id != 0 and (account, client_id) in self._by_client:
            return DUPLICATE_CLIENT_ID
        if tif == POST_ONLY and self._would_take(side, price):
            return POST_ONLY_WOULD_TAKE
        if tif == FOK and not self._fok_fillable(side, price, qty, account, stp):
            return FOK_UNFILLABLE
        remaining, stp_expired = self._match(order_id, account, side, price, qty, stp)
        if stp_expired:
            return STP_EXPIRED
        if remaining == 0:
            return FILLED
        if tif in (IOC, FOK):
            return EXPIRED
        self._rest(_Order(order_id, account, side, price, remaining, filled + qty - remaining,
                          client_id, tif == POST_ONLY, stp))
        return RESTING

    def _cancel(self, order_id):
        order = self._orders.get(order_id)
        if order is None:
            return UNKNOWN_ORDER
        self._remove(order)
        return order.qty

    def _amend(self, order_id, price, qty):
        order = self._orders.get(order_id)
        if order is None:
            return UNKNOWN_ORDER
        if price <= 0 or qty <= order.filled:
            return INVALID
        if price == order.price and qty <= order.filled + order.qty:
            order.qty = qty - order.filled      # in place: keeps its time priority
            return RESTING
        if order.post_only and self._would_take(order.side, price):
            return POST_ONLY_WOULD_TAKE
        self._remove(order)
        return self._place(order.id, order.account, order.side, price, qty - order.filled,
                           POST_ONLY if order.post_only else GTC, order.stp, order.client_id,
                           order.filled)

    # ---- Python API (as OrderBook) -------------------------------------------------------------

    def place(self, order_id, account, side, price, qty, tif=GTC, stp=STP_NONE, client_id=0):
        self._fills = []
        return self._place(order_id, account, side, price, qty, tif, stp, client_id, 0)

    def cancel(self, order_id):
        self._fills = []
        return self._cancel(order_id)

    def amend(self, order_id, price, qty):
        self._fills = []
        return self._amend(order_id, price, qty)

    def cancel_account(self, account):
        self._fills = []
        cancelled = list(self._by_account.get(account, {}).values())
        for order in cancelled:
            self._remove(order)
        return [(order.id, order.side, order.price, order.qty) for order in cancelled]

    def find_client(self, account, client_id):
        order = self._by_client.get((account, client_id)) if client_id != 0 else None
        return None if order is None else order.id

    def order(self, order_id):
        order = self._orders.get(order_id)
        return None if order is None else order.as_tuple()

    def best_bid(self):
        return self._best_price(BUY)

    def best_ask(self):
        return self._best_price(SELL)

    def depth(self, n=10):
        return tuple(
            [(price, sum(o.qty for o in queue.values()), len(queue))
             for price, queue in islice(self._levels[side].items(), max(n, 0))]
            for side in SIDES)

    def level_count(self, side):
        _check_side(side)
        return len(self._levels[side])

    def impact(self, taker_side, notional):
        _check_side(taker_side)
        if notional <= 0:
            return None
        whole_levels_qty = 0
        need = notional
        for price, queue in self._levels[1 - taker_side].items():
            level_qty = sum(o.qty for o in queue.values())
            if price * level_qty >= need:
                # the last level is taken in part: a fractional quantity need / price
                return Fraction(notional) / (whole_levels_qty + Fraction(need, price))
            need -= price * level_qty
            whole_levels_qty += level_qty
        return None

    @property
    def fill_count(self):
        return len(self._fills)

    def fills(self):
        return list(self._fills)

    def fills_array(self):
        return np.array(self._fills, dtype=FILL_DTYPE)

    def process_batch(self, cmds, keep_fills=True):
        if cmds.dtype != CMD_DTYPE:
            raise TypeError("cmds must be a numpy array of CMD_DTYPE")
        status = np.empty(len(cmds), dtype=np.int64)
        self._fills = []
        for i, cmd in enumerate(cmds.tolist()):
            op, side, tif, stp, _pad, order_id, account, price, qty, client_id, _reserved = cmd
            if not keep_fills:
                self._fills = []
            if op == PLACE:
                status[i] = self._place(order_id, account, side, price, qty, tif, stp, client_id, 0)
            elif op == CANCEL:
                status[i] = self._cancel(order_id)
            elif op == AMEND:
                status[i] = self._amend(order_id, price, qty)
            else:
                status[i] = INVALID
        return status

    def resting(self):
        return [order.as_tuple()
                for side in SIDES
                for queue in self._levels[side].values()
                for order in queue.values()]

    def __len__(self):
        return len(self._orders)
