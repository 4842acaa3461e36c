# Stage 5 in C. See perpcore._pricing.pxd for the contract and perpcore.pricing for the mark rules.

from perpcore._margin cimport SymbolRisk

from perpcore import messages as m
from perpcore._funding import sweep as sweep_interval

cdef object FILLED = m.OrderFilled
# the events that change a book without a trade (looked at only when a book alone moves some mark)
cdef frozenset BOOK_EVENTS = frozenset({m.OrderAccepted, m.OrderCancelled, m.OrderAmended})


cdef class PricingCore(Clocked):

    def __cinit__(self):
        self.budget_seq = -1

    cpdef after_command(self, list events):
        """Stage 5: the last trade and the book moved; recomputes the affected marks."""
        cdef dict touched = None        # symbol -> its last trade price (None: only its book moved)
        cdef bint book_moves = self.book_moves
        for e in events:                # every event of a command (100,000 at a funding settlement)
            kind = type(e)
            if kind is FILLED:
                if touched is None:
                    touched = {}
                touched[e.symbol] = e.price
            elif book_moves and kind in BOOK_EVENTS:
                if touched is None:
                    touched = {}
                touched.setdefault(e.symbol, None)
        if touched is None:
            return
        for symbol in sorted(touched):
            price = touched[symbol]
            if price is None or not self.unmoved(self.symbols[symbol], price):
                self.market_moved(symbol, price, events)

    cpdef market_moved(self, symbol, last_trade, list events):
        """The symbol's book changed, with a last trade at last_trade (None: no trade)."""
        state = self.symbols[symbol]
        if last_trade is not None:
            state.last_trade = last_trade
        elif not state.book_moves:
            return      # the book alone moves only the hyperliquid mark
        state.publish(self.exchange.seq, self.exchange.clock, events)

    cdef bint unmoved(self, state, price) except -1:
        """True, with `price` recorded as the last trade, when publishing after a trade at it would
        change nothing: the mark does not move with the book, the index's staleness and the rate
        are those published, and the mark is the one published: none without an index (a venue
        or a replay without one), else the rule's at P1 and P2, which hold at this time (their
        cached span)."""
        if state.book_moves:
            return False
        old, stale, rate = state.published
        if state.index_stale != stale or rate is None or rate[0] != state.predicted \
                or rate[1] != state.next_funding:
            return False
        index = state.index
        if index is None:
            mark = None
            if old is not None:
                return False
        else:
            t = self.exchange.clock
            if not state.p_from <= t <= state.p_until:
                return False
            mark = self.median_mark(state.spec.mark_method, index, state.p1, state.p2, price,
                                    None, None)
            if mark is None or mark != old:
                return False
        state.last_trade = price
        state.mark = mark
        return True

    # ---- funding in transit (perpcore.funding) -------------------------------------------------

    cpdef carry(self, list events):
        """Settles the next positions of the funding intervals in transit, symbol by symbol."""
        for sr in self.exchange.margin.symbols.values():
            if (<SymbolRisk>sr).transit is not None:
                self.sweep(sr, events)

    cpdef sweep(self, SymbolRisk sr, list events):
        """The next payments of sr's interval in transit, within what is left of this command's
        budget."""
        ex = self.exchange
        cdef int64_t seq = ex.seq
        if self.budget_seq != seq:
            self.budget_seq = seq
            self.budget = ex.config.limits.funding_accounts_per_command
        margin = ex.margin
        self.budget -= sweep_interval(margin, sr, margin.account_ids, self.budget, events, seq,
                                      ex.clock)
