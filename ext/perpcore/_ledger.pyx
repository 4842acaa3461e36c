# The one writer of money: see perpcore._ledger.pxd, and perpcore.ledger for the holders and the
# audit. Amounts are Python ints at this interface; an account's balances are int64 in C.
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport INT64_MAX, INT64_MIN
from libc.string cimport memset

from collections.abc import MutableMapping


cdef class CashTable:

    def __init__(self, assets):
        self.assets = tuple(assets)
        self.column = {asset: k for k, asset in enumerate(self.assets)}
        self.width = len(self.assets)

    def __dealloc__(self):
        PyMem_Free(self.cells)

    cdef Py_ssize_t column_of(self, str asset) except -1:
        cdef Py_ssize_t k
        for k in range(self.width):     # the engine's asset names are the config's own strings
            if self.assets[k] is asset:
                return k
        return self.column[asset]

    def open(self) -> Cash:
        """A new row of zero balances, as its Cash."""
        cdef void* grown
        cdef Py_ssize_t cap
        if self.rows == self.cap:
            cap = self.cap * 2 if self.cap else 64
            grown = PyMem_Realloc(self.cells, cap * self.width * sizeof(int64_t) or 1)
            if grown is NULL:
                raise MemoryError()
            self.cells, self.cap = <int64_t*>grown, cap
        # only the row given is written: the pages past it stay untouched until used
        memset(self.cells + self.rows * self.width, 0, self.width * sizeof(int64_t))
        self.rows += 1
        return Cash(self, self.rows - 1)

    def total(self, str asset):
        """The sum of every row's balance of the asset (exact: the audit's accounts figure)."""
        cdef Py_ssize_t k = self.column_of(asset), r
        cdef long long total = 0
        cdef int64_t v
        out = 0
        for r in range(self.rows):
            v = self.cells[r * self.width + k]
            # summed in C while it fits, carried into the Python int before it would not
            if (v > 0 and total > INT64_MAX - v) or (v < 0 and total < INT64_MIN - v):
                out += total
                total = 0
            total += v
        return out + total


# a view refers to its table, which never refers to a view: no cycle through it
@cython.no_gc
cdef class Cash:

    def __init__(self, CashTable table, Py_ssize_t row):
        if not 0 <= row < table.rows:
            raise IndexError(f"no cash row {row}")
        self.table, self.row = table, row

    cdef int64_t* cell(self, Py_ssize_t column) noexcept:
        return &self.table.cells[self.row * self.table.width + column]

    cdef int64_t amount_of(self, str asset) except? -1:
        return self.cell(self.table.column_of(asset))[0]

    def __getitem__(self, str asset):
        return self.amount_of(asset)

    def __setitem__(self, str asset, value):
        # OverflowError past int64, before anything is written
        cdef int64_t v = value
        self.cell(self.table.column_of(asset))[0] = v

    def __delitem__(self, asset):
        raise TypeError("an account's balances keep every asset")

    def __len__(self):
        return self.table.width

    def __iter__(self):
        return iter(self.table.assets)

    def __contains__(self, asset):
        return asset in self.table.column

    def __eq__(self, other):
        if isinstance(other, (Cash, dict)):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __repr__(self):
        return f"Cash({dict(self.items())!r})"

    def keys(self):
        return list(self.table.assets)

    def values(self):
        cdef Py_ssize_t k
        return [self.cell(k)[0] for k in range(self.table.width)]

    def items(self):
        cdef Py_ssize_t k
        return [(self.table.assets[k], self.cell(k)[0]) for k in range(self.table.width)]

    def get(self, asset, default=None):
        return self[asset] if asset in self.table.column else default

    def update(self, other=()):
        """Writes each (asset, balance) of a mapping or of pairs."""
        for asset, value in (other.items() if hasattr(other, "items") else other):
            self[asset] = value


MutableMapping.register(Cash)


cdef inline int64_t* cell_of(holder, str asset) except? NULL:
    """An account's balance in C, or NULL for a venue bucket (a dict)."""
    if type(holder) is Cash:
        return (<Cash>holder).cell((<Cash>holder).table.column_of(asset))
    return NULL


cpdef object move(source, target, str asset, amount):
    """Moves amount of asset from source to target: what one loses the other gains, so no move can
    create or destroy money. Returns the target's new balance. Nothing is written unless both
    new balances fit their holders (an account's: int64, else OverflowError)."""
    if source is target:
        return target[asset]
    cdef int64_t* source_cell = cell_of(source, asset)
    cdef int64_t* target_cell = cell_of(target, asset)
    cdef int64_t left64 = 0, result64 = 0
    left = (source_cell[0] if source_cell is not NULL else (<dict>source)[asset]) - amount
    result = (target_cell[0] if target_cell is not NULL else (<dict>target)[asset]) + amount
    if source_cell is not NULL:
        left64 = left
    if target_cell is not NULL:
        result64 = result
    if source_cell is not NULL:
        source_cell[0] = left64
    else:
        (<dict>source)[asset] = left
    if target_cell is not NULL:
        target_cell[0] = result64
    else:
        (<dict>target)[asset] = result
    return result


cpdef object realise(cash, str asset, amount):
    """Realised PnL into an account's balances; returns the new balance."""
    cdef int64_t* balance = cell_of(cash, asset)
    if balance is NULL:
        result = (<dict>cash)[asset] + amount
        (<dict>cash)[asset] = result
        return result
    cdef int64_t result64 = balance[0] + amount     # OverflowError past int64, nothing written
    balance[0] = result64
    return result64
