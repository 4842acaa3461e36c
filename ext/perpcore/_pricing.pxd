# The contract of ext/perpcore/_pricing.pyx (the extension perpcore._pricing): stage 5, the pricing layer's pass
# over a command's events, in C. PricingCore is the base of perpcore.pricing.Pricing: it finds the
# symbols whose last trade (or book, for a mark that moves with its book) the command changed and
# hands each to market_moved, except a trade that leaves the published mark, the index's
# staleness and the funding rate as they were: that one is only recorded as the last trade (what
# market_moved's publish would have done, emitting nothing). That test (unmoved) runs in C over
# int64 copies of the fields it reads, which PricingState keeps; where a value does not fit 64
# bits, it answers "moved" and publish (Python) decides, which is always exact.

#
# Funding in transit (perpcore.funding): sweep(sr, events) makes the next payments of sr's interval
# in transit within the command's budget (config.limits.funding_accounts_per_command accounts
# visited, shared by every sweep of the command: at a funding time, SymbolPricing.settle's, and
# carry's); the exchange calls carry(events) once a command while any interval is in transit.

from libc.stdint cimport int64_t

from perpcore._clock cimport Clocked
from perpcore._margin cimport Prices, SymbolRisk


cdef enum MarkMethod:      # PricingSpec.mark_method
    BINANCE = 0             # median(P1, P2, last trade)
    BITMEX = 1              # P1
    INDEX = 2               # the index
    HYPERLIQUID = 3         # median(P2, median(bid, ask, last), index): Python's (moves with the book)


# which of PricingState's int64 copies hold their Python value (fits)
cdef enum:
    FITS_P1 = 1
    FITS_P2 = 2
    FITS_SPAN = 4           # some int64 time lies in [p_from, p_until] (from_c, until_c: those)
    FITS_RATE = 8           # predicted, next_funding
    FITS_PUBLISHED = 16     # published: a mark (not None), its staleness, a rate (not None)


cdef class PricingState(Prices):
    """The fields of perpcore.pricing.SymbolPricing (its subclass, the only writer) that stage 5
    reads: Python ints and tuples as properties (values beyond 64 bits are allowed), each with an
    int64 copy for the C test. The mark rule is set once (set_mark_method)."""
    cdef readonly MarkMethod method
    cdef readonly bint book_moves      # the book alone moves the mark (hyperliquid)
    cdef object _p1, _p2, _p_from, _p_until, _predicted, _next_funding, _published
    cdef int64_t p1_c, p2_c, from_c, until_c, predicted_c, next_funding_c
    # published = (mark, stale, (rate, next funding)): its parts
    cdef int64_t published_mark_c, published_rate_c, published_funding_c
    cdef bint published_stale_c
    cdef int fits                       # FITS_*

    # the int64 copies of p_from and p_until, of predicted and next_funding, after a write
    cdef int copy_span(self) except -1
    cdef int copy_rate(self) except -1


cdef class PricingCore(Clocked):
    cdef readonly object exchange      # the Exchange: seq, clock
    cdef readonly dict symbols         # symbol -> perpcore.pricing.SymbolPricing
    cdef readonly bint book_moves      # some mark moves with its book alone (hyperliquid's)
    # accounts the funding sweeps may still visit in command budget_seq (not state: each command
    # starts afresh)
    cdef Py_ssize_t budget
    cdef int64_t budget_seq

    cpdef after_command(self, list events)
    # a symbol's book changed, with a trade at last_trade (None: none): publish its mark
    cpdef market_moved(self, symbol, last_trade, list events)
    # the symbol's last trade of the command was `fill`: unmoved, else market_moved
    cdef int traded(self, symbol, fill, list events) except -1
    cdef bint unmoved(self, PricingState state, price, int64_t t) except -1
    cpdef carry(self, list events)
    cpdef sweep(self, SymbolRisk sr, list events)
