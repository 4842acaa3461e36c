# The contract of ext/perpcore/_liquidation.pyx (the extension perpcore._liquidation): the per-command hot path of the
# liquidation engine's stage 6 (perpcore.liquidation, the base of its Liquidation class).
#
# after_command(events) passes over a command none of whose events can concern stage 6 (WATCHED)
# without calling into Python, and otherwise reads its events once (scan): each fill steps its
# account's reserve (the slack at the corner of its triggers, see perpcore.liquidation "The
# reserve") from the fill alone; an account whose step cannot show it sound, or that any other
# money movement touched, funding payments and fresh price moves are handed to the Python rounds
# (Liquidation._rounds), which are not called at all when a command's fills all stepped and its
# price moves reach no trigger (BreachIndex.reaches). A funding
# settlement (the one way another layer changes the insurance fund) has the fund's change recorded
# (Liquidation._record_external) before the rounds. The rounds' pass over funding payers,
# _uncovered(paid, touched), is here too: it lowers the reserve of each payer still covered and
# lists the others (perpcore.liquidation's Funding paragraph).
#
# Units as in perpcore.risk: prices in ticks, sizes in lots, money in minor units of the settlement
# asset. A position's term is computed over 128-bit products (perpcore._margin's tier table) and comes
# out as a Python int; reserves stay Python ints (balances are unbounded).

from libc.stdint cimport int64_t


cdef class LiquidationCore:
    cdef public dict fund              # the insurance fund's balances (the ledger's bucket)
    cdef public dict _fund_seen        # the fund as the engine last recorded it
    cdef public dict _reserve          # account -> its reserve
    cdef public dict _terms            # account -> {symbol: [corner below, corner above, term]}
    cdef public dict _symbols          # symbol -> perpcore._margin.SymbolRisk (the margin layer's)
    cdef public dict _mark_dim, _index_dim     # symbol -> the index's dimension of its mark, index
    cdef public bint shortcuts         # False: every account a command touched is examined in full
    cdef public bint enabled           # False: stage 6 is off (a study of margin without it)
    cdef public object index           # perpcore.breach_index.BreachIndex of every keyed account
    cdef public set _dirty             # accounts liquidated and not keyed since

    cdef after(self, list events)      # after_command()'s C entry, the Exchange's

    # the C half of scan() (not overridable, so a Python subclass costs no lookup)
    cdef bint read(self, list events, Py_ssize_t start, set touched, list moves,
                   dict paid) except -1
    cdef bint step(self, fill, account) except -1
    cdef bint reached(self, list moves) except -1     # some move reaches a trigger
    cdef bint unpriced(self, account, str symbol) except -1   # a fill with nothing to look at
