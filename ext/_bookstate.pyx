# Whole-book state for snapshots: every resting order with every field that decides its future
# (including the filled quantity and the self-trade-prevention mode that the public order() tuple
# leaves out), and the inverse that rests such orders back without matching.
#
# It lives beside _book rather than in it and reaches the pool through the contract in
# perpcore._book.pxd, so the matcher's own code stays untouched.

from libc.stdint cimport int32_t, int64_t

from perpcore._book cimport NIL, Level, Order, OrderBook, SIDE_BUY, SIDE_SELL


def dump(OrderBook book):
    """Every resting order in priority order (bids best first, then asks best first), as
    (order_id, account, side, price, open_qty, filled, client_id, post_only, stp)."""
    cdef list out = []
    cdef int side
    cdef int64_t i
    cdef int32_t s
    cdef Order* o
    for side in range(2):
        i = book.sides[side].n - 1
        while i >= 0:
            s = book.levels[book.sides[side].slots[i]].head
            while s != NIL:
                o = &book.orders[s]
                out.append((o.id, o.account, o.side, o.price, o.qty, o.filled, o.client_id,
                            bool(o.post_only), o.stp))
                s = o.next
            i -= 1
    return out


def load(OrderBook book, orders):
    """Rests the orders of dump() into an empty book, in the order given (which is their time
    priority within each level). Everything is checked before the first order goes in, so a bad
    list leaves the book empty: ValueError names the first offending order."""
    if len(book):
        raise ValueError("load() needs an empty book")
    cdef set ids = set()
    cdef set client_ids = set()
    best_bid = None
    best_ask = None
    rows = [tuple(row) for row in orders]
    for row in rows:
        if len(row) != 9:
            raise ValueError(f"order row {row!r} does not have 9 fields")
        order_id, account, side, price, qty, filled, client_id, post_only, stp = row
        if side not in (SIDE_BUY, SIDE_SELL) or price <= 0 or qty <= 0 or filled < 0 \
                or client_id < 0 or not 0 <= stp <= 3:
            raise ValueError(f"order {order_id}: field out of range")
        if order_id in ids:
            raise ValueError(f"order {order_id} appears twice")
        ids.add(order_id)
        if client_id:
            if (account, client_id) in client_ids:
                raise ValueError(f"order {order_id}: client id {client_id} appears twice")
            client_ids.add((account, client_id))
        if side == SIDE_BUY:
            best_bid = price if best_bid is None else max(best_bid, price)
        else:
            best_ask = price if best_ask is None else min(best_ask, price)
    if best_bid is not None and best_ask is not None and best_bid >= best_ask:
        raise ValueError(f"the orders cross: bid {best_bid} >= ask {best_ask}")
    for order_id, account, side, price, qty, filled, client_id, post_only, stp in rows:
        book._rest(order_id, account, side, price, qty, stp, post_only, client_id, filled)
