# A price-level book fed with decimal text, applied to the Cython order book in C. See
# perpcore._binance.pxd for the contract. Rebuilding a Binance capture's book sets some 440,000
# levels: as a Python loop (text -> units through a dict, a cancel/amend/place call per level) that
# was most of the replay.
from decimal import Decimal

import msgspec

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport INT64_MAX, int64_t, uint64_t
from libc.stdlib cimport free, realloc

from perpcore._book cimport (OrderBook, SIDE_BUY, SIDE_SELL, STP_NONE, ST_UNKNOWN_ORDER,
                             TIF_POST_ONLY)

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

# 2 * price + 1 (a level's order id) must fit an int64
cdef int64_t MAX_PRICE = (INT64_MAX - 1) // 2
# at most this many digits: their value fits an int64 without an overflow check per digit
cdef int MAX_DIGITS = 18

_json_str = msgspec.json.Decoder(str).decode


cdef inline Py_ssize_t _digits(const unsigned char* s, Py_ssize_t n, int64_t* value,
                               int* frac) noexcept nogil:
    """Reads digits[.digits] (at most MAX_DIGITS digits) from the start of s into value, with frac
    digits after the point; the index where it stopped, or -1 if s does not start so."""
    cdef uint64_t v = 0         # unsigned: past MAX_DIGITS digits it may wrap, and is not used
    cdef Py_ssize_t i = 0, whole, point
    cdef unsigned char d
    while i < n:
        d = s[i] - c'0'
        if d > 9:
            break
        v = v * 10 + d
        i += 1
    whole = i
    frac[0] = 0
    if i < n and s[i] == c'.':
        i += 1
        point = i
        while i < n:
            d = s[i] - c'0'
            if d > 9:
                break
            v = v * 10 + d
            i += 1
        frac[0] = <int>(i - point)
    if whole == 0 or whole + frac[0] > MAX_DIGITS:
        return -1
    value[0] = <int64_t>v
    return i


cdef inline bint _scale(int64_t v, int frac, int64_t mantissa, int exponent,
                        int64_t* out) noexcept nogil:
    """v * 10**-frac as a whole number of steps (mantissa * 10**-exponent) -> out; False if it is
    not one or does not fit an int64."""
    while frac > exponent:              # decimals beyond the step's must be zeros
        if v % 10:
            return False
        v //= 10
        frac -= 1
    while frac < exponent:
        if v > INT64_MAX // 10:
            return False
        v *= 10
        frac += 1
    if mantissa != 1:                   # a step of 10**-k (most are): no division
        if v % mantissa:
            return False
        v //= mantissa
    out[0] = v
    return True


cdef inline Py_ssize_t _skip_ws(const unsigned char* s, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    while i < n and (s[i] == c' ' or s[i] == c'\n' or s[i] == c'\r' or s[i] == c'\t'):
        i += 1
    return i


cdef inline Py_ssize_t _expect(const unsigned char* s, Py_ssize_t n, Py_ssize_t i,
                               unsigned char c) except -1:
    """The index after the character c, which must come next (after any whitespace)."""
    if i < n and s[i] == c:             # compact JSON: no whitespace to skip
        return i + 1
    i = _skip_ws(s, n, i)
    if i == n or s[i] != c:
        raise ValueError(f"malformed level list at byte {i}: expected {chr(c)!r}")
    return i + 1


cdef class Step:
    """Decimal text -> integer units of a step (a tick or a lot), exactly; the text the C path does
    not take (see the .pxd) goes to convert, e.g. Step(spec.tick_size, spec.to_ticks)."""

    def __init__(self, step, convert):
        sign, digits, exponent = Decimal(step).as_tuple()
        if sign or not isinstance(exponent, int) or not any(digits):
            raise ValueError(f"a step must be a positive number, not {step}")
        mantissa = int("".join(map(str, digits)))
        if exponent >= 0:
            mantissa *= 10 ** exponent
            exponent = 0
        if mantissa > INT64_MAX or -exponent > MAX_DIGITS:
            raise ValueError(f"step {step} is out of range")
        self.mantissa = mantissa
        self.exponent = -exponent
        self.convert = convert

    def __call__(self, str text):
        cdef Py_ssize_t n
        cdef const char* s = PyUnicode_AsUTF8AndSize(text, &n)
        cdef int64_t v = 0, out = 0        # _digits leaves v unset when s does not start a number
        cdef int frac = 0
        if _digits(<const unsigned char*>s, n, &v, &frac) == n and \
                _scale(v, frac, self.mantissa, self.exponent, &out):
            return out
        return self.convert(text)


cdef class LevelSetter:
    """Sets price levels of an OrderBook from [[price, qty], ...] JSON text (see the .pxd): one
    order of `account` per level, id 2 * price + side."""

    def __init__(self, OrderBook book not None, Step ticks not None, Step lots not None,
                 int64_t account):
        self.book = book
        self.ticks = ticks
        self.lots = lots
        self.account = account

    def __dealloc__(self):
        free(self.buf)

    def set_levels(self, bids, asks):
        """Applies one message's bid and ask level lists (JSON text: bytes, msgspec.Raw or any
        other buffer)."""
        cdef Py_buffer b, a
        cdef Py_ssize_t count, k
        cdef int64_t order_id, qty
        cdef int status
        cdef OrderBook book = self.book
        PyObject_GetBuffer(bids, &b, PyBUF_SIMPLE)
        try:
            PyObject_GetBuffer(asks, &a, PyBUF_SIMPLE)
            try:
                count = self._parse(<const unsigned char*>b.buf, b.len, SIDE_BUY, 0)
                count = self._parse(<const unsigned char*>a.buf, a.len, SIDE_SELL, count)
            finally:
                PyBuffer_Release(&a)
        finally:
            PyBuffer_Release(&b)
        book.n_fills = 0
        for k in range(count):
            if self.buf[k].qty == 0:
                book._cancel(self.buf[k].order_id)      # UNKNOWN_ORDER: no change
        for k in range(count):
            order_id, qty = self.buf[k].order_id, self.buf[k].qty
            if qty == 0:
                continue
            if book._set_open(order_id, qty) == ST_UNKNOWN_ORDER:
                # post-only: a level that would cross the other side is refused, not traded
                status = book._place(order_id, self.account, order_id & 1, order_id >> 1, qty,
                                     TIF_POST_ONLY, STP_NONE, 0, 0)
                if status < 0:
                    raise ValueError(f"level {order_id >> 1} x {qty} on side {order_id & 1} "
                                     f"crosses the book")

    cdef Py_ssize_t _parse(self, const unsigned char* s, Py_ssize_t n, int side,
                           Py_ssize_t at) except -1:
        """Parses a [[price, qty], ...] list into the buffer from entry `at`; the entry count after
        it. JSON whitespace anywhere between tokens; the strings may hold escapes."""
        cdef int64_t price, qty
        cdef Py_ssize_t i = _skip_ws(s, n, _expect(s, n, 0, c'['))
        if i < n and s[i] == c']':
            i += 1
        else:
            while True:
                i = _expect(s, n, i, c'[')
                i = self._number(s, n, i, 0, &price)
                i = _expect(s, n, i, c',')
                i = self._number(s, n, i, 1, &qty)
                i = _skip_ws(s, n, _expect(s, n, i, c']'))
                if at == self.cap:
                    self._grow()
                self.buf[at].order_id = 2 * price + side
                self.buf[at].qty = qty
                at += 1
                if i < n and s[i] == c',':
                    i += 1
                else:
                    i = _expect(s, n, i, c']')
                    break
        if _skip_ws(s, n, i) != n:
            raise ValueError(f"malformed level list at byte {i}: text after the list")
        return at

    cdef Py_ssize_t _number(self, const unsigned char* s, Py_ssize_t n, Py_ssize_t i, int item,
                            int64_t* out) except -1:
        """Reads the string at i (after any whitespace) as a price (item 0, ticks) or a quantity
        (item 1, lots) into out; the index after it."""
        cdef Step step = self.ticks if item == 0 else self.lots
        cdef Py_ssize_t start = _expect(s, n, i, c'"'), end
        cdef int64_t v
        cdef int frac
        # the common case: plain digits up to the closing quote, a whole number of steps
        end = _digits(s + start, n - start, &v, &frac)
        if end >= 0 and start + end < n and s[start + end] == c'"' and \
                _scale(v, frac, step.mantissa, step.exponent, out):
            i = start + end
        else:
            # anything else: the converter decides (its result or its error) on the JSON string,
            # decoded (escapes undone; bad UTF-8 or control characters rejected)
            i = start
            while i < n and s[i] != c'"':
                i += 2 if s[i] == c'\\' else 1
            if i >= n:
                raise ValueError("malformed level list: unterminated string")
            units = step.convert(_json_str((<const char*>s)[start - 1:i + 1]))
            if not 0 <= units <= INT64_MAX:
                raise ValueError(f"{'price' if item == 0 else 'quantity'} {units} is out of range")
            out[0] = units
        if item == 0 and not 0 < out[0] <= MAX_PRICE:
            raise ValueError(f"price {out[0]} ticks is out of range")
        return i + 1

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = max(256, 2 * self.cap)
        cdef LevelSet* grown = <LevelSet*>realloc(self.buf, cap * sizeof(LevelSet))
        if grown == NULL:
            raise MemoryError()
        self.buf, self.cap = grown, cap
        return 0
