# The liquidation engine's per-command hot path. See perpcore._liquidation.pxd for the contract and
# perpcore.liquidation (the module docstring's "The reserve") for what a reserve and a term are.

from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t

from perpcore._margin cimport SymbolRisk, int128_t, py_int

from perpcore import messages as m

# The events after which an account's money or positions may have changed: it is looked at again
# (FundingPaid is not among them: a payment only moves equity, see perpcore.liquidation's Funding
# paragraph; PositionChanged is, and is first stepped from the fill alone).
TOUCHING = frozenset({m.PositionChanged, m.InterestAccrued, m.Deposited, m.Withdrawn, m.Borrowed,
                      m.Repaid, m.CollateralConverted})
# Everything stage 6 reads: a command with none of these (most orders, cancels and amends) moved no
# price and no account's money. FundingSettled: the one way another layer changes the insurance fund
# (its rounding remainder, perpcore.margin.settle_funding), recorded then.
WATCHED = TOUCHING | {m.FundingPaid, m.FundingSettled, m.MarkPriceUpdated, m.IndexPriceUpdated}

cdef object POSITION_CHANGED = m.PositionChanged
cdef object FUNDING_PAID = m.FundingPaid
cdef object FUNDING_SETTLED = m.FundingSettled
cdef object MARK_MOVED = m.MarkPriceUpdated
cdef object INDEX_MOVED = m.IndexPriceUpdated
cdef frozenset C_TOUCHING = TOUCHING
cdef frozenset C_WATCHED = WATCHED


cdef object position_term(SymbolRisk sr, int64_t size, int64_t cost, int64_t price):
    cdef int128_t upt = sr.upt
    cdef int128_t notional = upt * size * price
    if size > 0:
        return py_int(notional - cost * upt - sr.tiers.mm(notional))
    if size < 0:
        return py_int(notional + cost * upt - sr.tiers.mm(-notional))
    return 0


cdef class LiquidationCore:
    """The base of perpcore.liquidation.Liquidation: stage 6's entry and its scan of events."""

    def __cinit__(self):
        self.shortcuts = True
        self.enabled = True

    def after_command(self, list events):
        """Liquidates every account the command put under maintenance, cascades included."""
        self.after(events)

    cdef after(self, list events):
        if not self.enabled:
            return
        cdef Py_ssize_t i, n = len(events)
        for i in range(n):
            if type(events[i]) in C_WATCHED:
                break
        else:
            return
        cdef set touched = set()
        cdef list moves = []
        cdef dict paid = {}
        if self.read(events, 0, touched, moves, paid) and self.fund != self._fund_seen:
            self._record_external(events)
        # price moves alone that reach nobody's trigger (most trades) leave nothing to do
        if touched or paid or self._dirty or moves and self.reached(moves):
            self._rounds(events, touched, moves, paid)

    cdef bint reached(self, list moves) except -1:
        reaches = self.index.reaches
        for dim, price in moves:
            if reaches(dim, price):
                return True
        return False

    def scan(self, list events, Py_ssize_t start, set touched, list moves, dict paid):
        """Reads events[start:]: each fill steps its account's reserve; an account whose step fails,
        or that another money movement touched, goes into `touched`; what each funding payer paid
        into `paid` (a receiver only gained slack); each move of a price on a fresh index into
        `moves` as (dimension, price). True if a funding settlement is among them."""
        return self.read(events, start, touched, moves, paid)

    def _uncovered(self, dict paid, set touched):
        """The payers of `paid` that must be looked at: those whose reserve does not cover the
        payment, or whose triggers are out of date; the others' reserves are lowered by it
        (perpcore.liquidation's Funding paragraph)."""
        cdef dict reserve = self._reserve
        cdef set dirty = self._dirty
        cdef list out = []
        cdef Py_ssize_t i = 0
        cdef PyObject* account
        cdef PyObject* amount
        cdef PyObject* held
        cdef bint shortcuts = self.shortcuts
        while PyDict_Next(paid, &i, &account, &amount):
            if touched and <object>account in touched:
                continue            # looked at anyway
            held = PyDict_GetItem(reserve, <object>account)
            left = (<object>held if held is not NULL else 0) - <object>amount
            if shortcuts and left >= 1 and not (dirty and <object>account in dirty):
                PyDict_SetItem(reserve, <object>account, left)
            else:
                out.append(<object>account)
        return out

    def term(self, str symbol, int64_t size, int64_t cost, int64_t price):
        """A position's part of equity - maintenance at mark `price`: its value less its entry value
        (its unrealised PnL) less its maintenance; 0 when flat."""
        return position_term(self._symbols[symbol], size, cost, price)

    cdef bint read(self, list events, Py_ssize_t start, set touched, list moves,
                   dict paid) except -1:
        cdef Py_ssize_t i
        cdef bint settled = False
        for i in range(start, len(events)):
            e = events[i]
            t = type(e)
            if t is POSITION_CHANGED:
                account = e.account
                if touched and account in touched or not self.step(e, account):
                    touched.add(account)
            elif t is FUNDING_PAID:
                amount = e.amount
                if amount < 0:
                    account = e.account
                    paid[account] = paid.get(account, 0) - amount
            elif t in C_TOUCHING:
                touched.add(e.account)
            elif t is MARK_MOVED:
                if not e.index_stale:
                    moves.append((self._mark_dim[e.symbol], e.price))
            elif t is INDEX_MOVED:
                moves.append((self._index_dim[e.symbol], e.price))
            elif t is FUNDING_SETTLED:
                settled = True
        return settled

    cdef bint unpriced(self, account, str symbol) except -1:
        """True when an account without terms (some trigger of it fires on any move) filled in a
        symbol that has no index yet needs no look: it cannot be liquidated in this command (that
        exposure is stale, so a breach is deferred) and its keying would stay as it is, a trigger
        on any move of that symbol's mark among its triggers. Not so for an account awaiting its
        keying after a liquidation."""
        if (<SymbolRisk>self._symbols[symbol]).prices.index is not None:
            return False
        if self._dirty and account in self._dirty:
            return False
        waiting = self.index._any.get(self._mark_dim[symbol])
        return waiting is not None and account in waiting

    cdef bint step(self, fill, account) except -1:
        """The fill's account's reserve brought up to date from the fill alone: True when it stays
        >= 1 (the account is sound and keeps its triggers), False when the account must be looked
        at (no terms kept, unless unpriced() shows there is nothing to look at; no trigger on the
        position's new side; or too little reserve left).

        A fill changes the account's cash by realised PnL - fee and this position's term at the
        corner from the old one to one of the new size and entry value: every other term stays.
        The terms are exact, so the reserve stays the corner's slack, less the funding paid since
        (a receipt, not counted, only leaves it lower)."""
        if not self.shortcuts:
            return False
        symbol = fill.symbol
        terms = self._terms.get(account)
        if terms is None:
            return self.unpriced(account, symbol)
        term = (<dict>terms).get(symbol)
        if term is None:
            return False
        cdef int64_t size = fill.size
        at = (<list>term)[0] if size > 0 else (<list>term)[1] if size < 0 else 0
        if at is None:
            return False
        now = position_term(self._symbols[symbol], size, fill.entry_value, at)
        reserve = self._reserve[account] + (fill.realised_pnl - fill.fee) + (now - (<list>term)[2])
        if reserve < 1:
            return False
        self._reserve[account] = reserve
        (<list>term)[2] = now
        return True
