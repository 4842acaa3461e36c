# A funding settlement's per-position work in one C pass. See perpcore._funding.pxd for the contract
# and perpcore.funding.payments for the rule (the plain reference this must equal).

from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport Py_GT, Py_LT, PyObject_RichCompareBool
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t
from libc.stdlib cimport qsort

from perpcore._margin cimport Account, MarginCore, Position, SymbolRisk, int128_t, py_int

from perpcore import messages as m
from perpcore.config import RATE_SCALE

cdef int128_t RS = RATE_SCALE
cdef object FUNDING_PAID = m.FundingPaid

cdef extern from *:
    # GCC/Clang builtins: the exact result into *r, True when it does not fit
    bint mul_overflow "__builtin_mul_overflow"(int128_t a, int128_t b, int128_t* r)
    bint add_overflow "__builtin_add_overflow"(int128_t a, int128_t b, int128_t* r)


cdef int compare(const void* a, const void* b) noexcept nogil:
    # qsort's comparator (nogil by its type; always called with the GIL held)
    cdef const Row* x = <const Row*>a
    cdef const Row* y = <const Row*>b
    if not x.big and not y.big:
        return (x.key > y.key) - (x.key < y.key)
    with gil:   # ids are ints (the exchange refuses anything else): comparing them cannot fail
        return (PyObject_RichCompareBool(<object>x.account, <object>y.account, Py_GT)
                - PyObject_RichCompareBool(<object>x.account, <object>y.account, Py_LT))


cdef inline int set_key(Row* row, object account) except -1:
    cdef int overflow
    row.account = <PyObject*>account
    row.key = PyLong_AsLongLongAndOverflow(account, &overflow)
    row.big = overflow != 0
    return 0


cdef Py_ssize_t gather(dict positions, Row* rows, dict holders) except -1:
    cdef Py_ssize_t i = 0, n = 0
    cdef PyObject* account
    cdef PyObject* position
    cdef int64_t size
    cdef bint ordered = True
    while PyDict_Next(positions, &i, &account, &position):
        size = (<Position>position).size
        if size:
            set_key(&rows[n], <object>account)
            rows[n].holder = NULL
            if holders is not None:     # looked up while the id is at hand
                rows[n].holder = PyDict_GetItem(holders, <object>account)
                if rows[n].holder is NULL:
                    raise KeyError(<object>account)
            rows[n].size = size
            if n and ordered and compare(&rows[n - 1], &rows[n]) > 0:
                ordered = False
            n += 1
    if not ordered:         # positions are mostly opened in account order: usually no sort at all
        qsort(rows, n, sizeof(Row), compare)
    return n


cdef bint amounts(Row* rows, Py_ssize_t n, int128_t per_lot, bint payer_long, int128_t* paid,
                  int128_t* remainder) except -1:
    cdef Py_ssize_t i
    cdef int128_t lots, due, pool = 0, owed = 0, receivers = 0
    for i in range(n):
        lots = rows[i].size
        if lots < 0:
            lots = -lots
        if mul_overflow(lots, per_lot, &due):
            return False
        if (rows[i].size > 0) == payer_long:
            due = due / RS + (due % RS != 0)        # a payer pays its due rounded up
            rows[i].amount = -due
            if add_overflow(pool, due, &pool):
                return False
        else:
            due = due / RS                          # a receiver gets its due rounded down
            rows[i].amount = due
            if add_overflow(owed, due, &owed):
                return False
            receivers += lots                       # < n x 2**63: fits
    if owed > pool:
        # open interest does not net to zero: receivers share the pool pro rata, rounded down
        owed = 0
        for i in range(n):
            if (rows[i].size > 0) != payer_long:
                lots = rows[i].size
                if lots < 0:
                    lots = -lots
                if mul_overflow(pool, lots, &due):
                    return False
                rows[i].amount = due / receivers
                owed += rows[i].amount              # at most the pool in all
    paid[0] = pool
    remainder[0] = pool - owed
    return True


def open_positions(SymbolRisk sr):
    """[(account, signed lots)] of every open position of sr, by account."""
    cdef Py_ssize_t i, n
    cdef Row* rows = <Row*>PyMem_Malloc(max(len(sr.positions), 1) * sizeof(Row))
    if rows is NULL:
        raise MemoryError()
    try:
        n = gather(sr.positions, rows, None)
        return [(<object>rows[i].account, rows[i].size) for i in range(n)]
    finally:
        PyMem_Free(rows)


def settle(MarginCore margin, str symbol, mark, rate, units_per_ticklot, seq, ts, list events):
    """Settles funding of every open position in `symbol` at `mark` and `rate` (see the contract
    in perpcore._funding.pxd): (positions, paid, remainder), or None having changed nothing."""
    cdef SymbolRisk sr = margin.symbols[symbol]
    cdef int128_t per_lot, paid = 0, remainder = 0
    cdef Py_ssize_t i, n = 0
    cdef dict cash
    cdef PyObject* balance
    cdef str asset = margin.settle
    try:
        if (mul_overflow(<int128_t>mark, <int128_t>units_per_ticklot, &per_lot)
                or mul_overflow(per_lot, <int128_t>abs(rate), &per_lot) or per_lot < 0):
            return None
    except OverflowError:
        return None
    cdef Row* rows = <Row*>PyMem_Malloc(max(len(sr.positions), 1) * sizeof(Row))
    if rows is NULL:
        raise MemoryError()
    try:
        if per_lot:             # no mark or no rate: nobody pays (and no position is reported)
            n = gather(sr.positions, rows, margin.accounts)   # every holder before money moves
            if not amounts(rows, n, per_lot, rate > 0, &paid, &remainder):
                return None
        for i in range(n):
            account = <object>rows[i].account
            amount = py_int(rows[i].amount)
            cash = (<Account>rows[i].holder).cash
            balance = PyDict_GetItem(cash, asset)
            if balance is NULL:
                raise KeyError(asset)
            PyDict_SetItem(cash, asset, <object>balance + amount)
            events.append(FUNDING_PAID(seq, ts, symbol, account, rows[i].size, mark, rate, amount))
        insurance = margin.insurance
        insurance[asset] += py_int(remainder)
        return n, py_int(paid), py_int(remainder)
    finally:
        PyMem_Free(rows)
