# The contract of ext/perpcore/_binance.pyx (the extension perpcore._binance): a price-level book kept in a
# perpcore._book.OrderBook from exchange feeds that send levels as decimal text, such as Binance's
# depth diffs ([["price", "qty"], ...] as JSON).
#
# Units: a Step turns decimal text into integer units of a step (a tick or a lot) exactly. Text of
# the plain form digits[.digits] is converted in C; anything else (a sign, an exponent, whitespace,
# JSON escapes, more than 18 digits) and any text that is not a whole number of steps goes
# to the step's Python converter (InstrumentSpec.to_ticks / to_lots), which decides: the result is
# always the converter's, and so is its error.
#
# Levels: one resting order per (side, price), owned by one account, its id 2 * price + side (so a
# level is found without a map), its open quantity the level's. set_levels() applies one message's
# bid and ask lists: every text is converted and checked before the book changes (price > 0,
# quantity >= 0, 2 * price + 1 within int64; a bad one raises ValueError or the converter's error
# and changes nothing); then the removals (quantity 0, a missing level is no change) go first, in
# message order, so a level moving across the spread never crosses; then the other levels, in
# message order: the level's order resized where it rests (OrderBook._set_open), or placed
# post-only if absent. A placed level that would cross the other side is a broken feed, never a
# trade: ValueError, with the levels before it applied.

from libc.stdint cimport int64_t

from perpcore._book cimport OrderBook

ctypedef struct LevelSet:
    int64_t order_id        # 2 * price + side
    int64_t qty             # lots; 0 removes the level


cdef class Step:
    cdef readonly int64_t mantissa      # the step is mantissa * 10**-exponent, exponent >= 0
    cdef readonly int exponent
    cdef readonly object convert        # the Python converter: text -> int units, or raises


cdef class LevelSetter:
    cdef readonly OrderBook book
    cdef readonly Step ticks
    cdef readonly Step lots
    cdef readonly int64_t account
    cdef LevelSet* buf
    cdef Py_ssize_t cap

    cdef Py_ssize_t _parse(self, const unsigned char* s, Py_ssize_t n, int side,
                           Py_ssize_t at) except -1
    cdef Py_ssize_t _number(self, const unsigned char* s, Py_ssize_t n, Py_ssize_t i, int item,
                            int64_t* out) except -1
    cdef int _grow(self) except -1
