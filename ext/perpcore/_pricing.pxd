# The contract of ext/perpcore/_pricing.pyx (the extension perpcore._pricing): stage 5, the pricing layer's pass
# over a command's events, in C. PricingCore is the base of perpcore.pricing.Pricing: it finds the
# symbols whose last trade (or book, for a mark that moves with its book) the command changed and
# hands each to market_moved, except a trade that leaves the published mark, the index's
# staleness and the funding rate as they were: that one is only recorded as the last trade (what
# market_moved's publish would have done, emitting nothing).

#
# Funding in transit (perpcore.funding): sweep(sr, events) makes the next payments of sr's interval
# in transit within the command's budget (config.limits.funding_accounts_per_command accounts
# visited, shared by every sweep of the command: at a funding time, SymbolPricing.settle's, and
# carry's); the exchange calls carry(events) once a command while any interval is in transit.

from libc.stdint cimport int64_t

from perpcore._clock cimport Clocked
from perpcore._margin cimport SymbolRisk


cdef class PricingCore(Clocked):
    cdef public object exchange        # the Exchange: seq, clock
    cdef public dict symbols           # symbol -> perpcore.pricing.SymbolPricing
    cdef public bint book_moves        # some mark moves with its book alone (hyperliquid's)
    cdef public object median_mark     # perpcore.pricing.median_mark, the mark rule
    # accounts the funding sweeps may still visit in command budget_seq (not state: each command
    # starts afresh)
    cdef Py_ssize_t budget
    cdef int64_t budget_seq

    cpdef after_command(self, list events)
    # a symbol's book changed, with a trade at last_trade (None: none): publish its mark
    cpdef market_moved(self, symbol, last_trade, list events)
    cdef bint unmoved(self, state, price) except -1
    cpdef carry(self, list events)
    cpdef sweep(self, SymbolRisk sr, list events)
