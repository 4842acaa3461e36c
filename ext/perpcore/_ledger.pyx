# The one writer of money: see perpcore._ledger.pxd, and perpcore.ledger for the holders and the
# audit. Amounts are Python ints at this interface; an account's balances are int64 in C.
cimport cython
from libc.stdint cimport INT64_MAX, INT64_MIN
from libc.stdlib cimport calloc, free, malloc
from posix.mman cimport (MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ,
                         PROT_WRITE, madvise, mmap, munmap)

cdef extern from *:
    bint add_overflow "__builtin_add_overflow"(int64_t a, int64_t b, int64_t* out) noexcept nogil
    bint sub_overflow "__builtin_sub_overflow"(int64_t a, int64_t b, int64_t* out) noexcept nogil
    void prefetch "__builtin_prefetch"(const void* address) noexcept nogil
from libc.string cimport memcpy, memset

from collections.abc import Mapping, MutableMapping


cdef enum:
    HUGE_PAGE = 1 << 21         # 2 MiB, the x86-64 huge page


cdef inline size_t big_size(size_t size) noexcept nogil:
    if size < HUGE_PAGE:
        return size
    return (size + HUGE_PAGE - 1) & ~(<size_t>HUGE_PAGE - 1)


cdef void* big_block(size_t size, bint zeroed) noexcept nogil:
    # An array read at random (the records, the account table): from 2 MiB up, mapped on
    # huge-page boundaries with the kernel asked for huge pages, as at a million accounts every
    # read on 4 KiB pages is a TLB miss as well as a cache miss (advice only: where transparent
    # huge pages are off, 4 KiB pages). Mapped rather than allocated so that big_free gives it
    # back to the system (a freed heap block of this size would stay resident). NULL: no memory.
    cdef char* raw
    cdef size_t head
    if size < HUGE_PAGE:
        return calloc(size, 1) if zeroed else malloc(size)
    size = big_size(size)
    raw = <char*>mmap(NULL, size + HUGE_PAGE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if raw == <char*>MAP_FAILED:
        return NULL
    head = (HUGE_PAGE - (<size_t>raw & (HUGE_PAGE - 1))) & (HUGE_PAGE - 1)
    if head:
        munmap(raw, head)
    munmap(raw + head + size, HUGE_PAGE - head)     # the slack past it (never empty)
    madvise(raw + head, size, MADV_HUGEPAGE)
    return raw + head           # a fresh mapping reads as zeros


cdef void big_free(void* block, size_t size) noexcept nogil:
    if block == NULL:
        return
    if size < HUGE_PAGE:
        free(block)
    else:
        munmap(block, big_size(size))


cdef int id_add(IdTable* t, Py_ssize_t n, int64_t* keys, Py_ssize_t step) except -1:
    cdef Py_ssize_t size, i, s
    cdef uint32_t* cells
    if 2 * (n + 1) > t.mask + 1:
        size = 2 * (t.mask + 1)
        cells = <uint32_t*>big_block(size * sizeof(uint32_t), True)
        if cells is NULL:
            raise MemoryError()
        big_free(t.cells, (t.mask + 1) * sizeof(uint32_t))
        t.cells, t.mask = cells, size - 1
        for s in range(n):
            i = <Py_ssize_t>(mix(<uint64_t>keys[s * step]) & <uint64_t>t.mask)
            while cells[i]:
                i = (i + 1) & t.mask
            cells[i] = <uint32_t>(s + 1)
    i = <Py_ssize_t>(mix(<uint64_t>keys[n * step]) & <uint64_t>t.mask)
    while t.cells[i]:
        i = (i + 1) & t.mask
    t.cells[i] = <uint32_t>(n + 1)
    return 0


cdef int id_reset(IdTable* t) except -1:
    cdef uint32_t* cells = <uint32_t*>big_block(16 * sizeof(uint32_t), True)
    if cells is NULL:
        raise MemoryError()
    big_free(t.cells, (t.mask + 1) * sizeof(uint32_t))
    t.cells, t.mask = cells, 15
    return 0


cdef class CashTable:

    def __init__(self, assets):
        self.assets = tuple(assets)
        self.column = {asset: k for k, asset in enumerate(self.assets)}
        self.width = len(self.assets)
        self.stride = (8 + self.width * sizeof(int64_t) + 15) // 16 * 16
        id_reset(&self.table)

    def __dealloc__(self):
        big_free(self.records, self.cap * self.stride)
        big_free(self.table.cells, (self.table.mask + 1) * sizeof(uint32_t))

    cdef Py_ssize_t reserve(self, Py_ssize_t size) except -1:
        """Widens every record by size bytes (rounded up to 16) and returns where the new area
        begins. The layers reserve as they are bound, before any account opens."""
        cdef Py_ssize_t offset = self.stride
        if self.rows:
            raise ValueError("a record's areas are reserved before any account opens")
        # any left from a cleared table, laid out at the old stride
        big_free(self.records, self.cap * self.stride)
        self.records, self.cap = NULL, 0
        self.stride += (size + 15) // 16 * 16
        return offset

    cdef Py_ssize_t column_of(self, str asset) except -1:
        cdef Py_ssize_t k
        for k in range(self.width):     # the engine's asset names are the config's own strings
            if self.assets[k] is asset:
                return k
        return self.column[asset]

    cdef Py_ssize_t find(self, int64_t account) noexcept nogil:
        cdef Py_ssize_t row
        if self.sequential:
            row = self.sequence_row(account)
        else:
            row = id_find(&self.table, account, <int64_t*>self.records, self.stride // 8)
        if row >= 0:
            # whoever finds an account reads its record next, from several layers in turn: its
            # lines are asked for at once (their misses overlap) rather than each as it is reached
            self.prefetch_record(row)
        return row

    cdef Py_ssize_t sequence_row(self, int64_t account) noexcept nogil:
        # unsigned: an account below `first` wraps past every row
        cdef uint64_t row = <uint64_t>account - <uint64_t>self.first
        return <Py_ssize_t>row if row < <uint64_t>self.rows else -1

    cdef void prefetch_record(self, Py_ssize_t row) noexcept nogil:
        cdef size_t line = <size_t>record_of(self, row) & ~(<size_t>63)
        cdef size_t end = <size_t>record_of(self, row) + self.stride
        while line < end:
            prefetch(<void*>line)
            line += 64

    cdef void expect(self, account) noexcept:
        cdef int64_t key
        cdef Py_ssize_t row
        if not id_of(account, &key):
            return
        if self.sequential:
            row = self.sequence_row(key)
            if row >= 0:
                self.prefetch_record(row)
        else:
            prefetch(&self.table.cells[mix(<uint64_t>key) & <uint64_t>self.table.mask])

    cdef Py_ssize_t lookup(self, account) noexcept:
        cdef int64_t key
        return self.find(key) if id_of(account, &key) else -1

    cdef Py_ssize_t row_of(self, account) except -1:
        cdef Py_ssize_t row = self.lookup(account)
        if row < 0:
            raise KeyError(account)
        return row

    def open(self, int64_t account) -> int:
        """The account's row: a new record (zero balances, zeroed areas) if it has none."""
        cdef Py_ssize_t row = self.find(account), cap
        cdef void* grown
        if row >= 0:
            return row
        if self.rows == self.cap:
            cap = self.cap * 2 if self.cap else 64
            # a new block rather than a realloc: its pages are laid out (huge, where the kernel
            # gives them) as the copy first touches them
            grown = big_block(cap * self.stride, False)
            if grown is NULL:
                raise MemoryError()
            memcpy(grown, self.records, self.rows * self.stride)
            big_free(self.records, self.cap * self.stride)
            self.records, self.cap = <char*>grown, cap
        row = self.rows
        # only the record given is written: the pages past it stay untouched until used
        memset(record_of(self, row), 0, self.stride)
        (<int64_t*>record_of(self, row))[0] = account
        if row == 0:
            self.sequential, self.first = True, account
        elif self.sequential and (account <= self.first
                                  or <uint64_t>account - <uint64_t>self.first != <uint64_t>row):
            self.sequential = False     # (unsigned: first + row may pass int64; no wrapping round)
        id_add(&self.table, row, <int64_t*>self.records, self.stride // 8)
        self.rows += 1
        return row

    def clear(self):
        """No account (a restore's start)."""
        id_reset(&self.table)
        self.rows = 0
        self.sequential = False

    def account(self, Py_ssize_t row):
        """The account of a row."""
        if not 0 <= row < self.rows:
            raise IndexError(f"no cash row {row}")
        return id_at(self, row)

    def row(self, account) -> int:
        """The account's row (KeyError: none)."""
        return self.row_of(account)

    def total(self, str asset):
        """The sum of every row's balance of the asset (exact: the audit's accounts figure)."""
        cdef Py_ssize_t k = self.column_of(asset), r
        cdef long long total = 0
        cdef int64_t v
        out = 0
        for r in range(self.rows):
            v = row_cells(self, r)[k]
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
        return &row_cells(self.table, self.row)[column]

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


cdef class Accrual:

    def __init__(self, dict bucket, str asset):
        self.bucket, self.asset = bucket, asset

    cdef int take(self, int64_t* cell, int64_t amount) except -1:
        cdef int64_t left, total
        if sub_overflow(cell[0], amount, &left):
            raise OverflowError(f"a balance of {cell[0]} less {amount} leaves int64")
        if add_overflow(self.amount, amount, &total):
            self.flush()
            total = amount
        cell[0] = left
        self.amount = total
        return 0

    def take_from(self, Cash cash, int64_t amount):
        """Takes amount from the account's balance of the asset (take's Python entry)."""
        self.take(cash.cell(cash.table.column_of(self.asset)), amount)

    cpdef flush(self):
        """Moves what was taken into the bucket."""
        if self.amount:
            self.bucket[self.asset] += self.amount
            self.amount = 0


@cython.no_gc
cdef class Balances:

    def __init__(self, CashTable table):
        self.table = table

    def __getitem__(self, account):
        return Cash(self.table, self.table.row_of(account))

    def get(self, account, default=None):
        cdef Py_ssize_t row = self.table.lookup(account)
        return Cash(self.table, row) if row >= 0 else default

    def __contains__(self, account):
        return self.table.lookup(account) >= 0

    def __len__(self):
        return self.table.rows

    def __iter__(self):
        cdef Py_ssize_t r
        return iter([id_at(self.table, r) for r in range(self.table.rows)])

    def keys(self):
        return list(self)

    def values(self):
        cdef Py_ssize_t r
        return [Cash(self.table, r) for r in range(self.table.rows)]

    def items(self):
        cdef Py_ssize_t r
        return [(id_at(self.table, r), Cash(self.table, r)) for r in range(self.table.rows)]

    def __eq__(self, other):
        if isinstance(other, (Balances, dict)):
            return {a: dict(c.items()) for a, c in self.items()} == \
                {a: dict(c.items()) for a, c in other.items()}
        return NotImplemented

    def __repr__(self):
        return f"Balances({ {a: dict(c.items()) for a, c in self.items()}!r})"


Mapping.register(Balances)


cdef inline int64_t* cell_of(holder, str asset) except? NULL:
    """An account's balance in C, or NULL for a venue bucket (a dict)."""
    if type(holder) is Cash:
        return (<Cash>holder).cell((<Cash>holder).table.column_of(asset))
    return NULL


cpdef object move(source, target, str asset, amount):
    """Moves amount of asset from source to target: what one loses the other gains, so no move can
    create or destroy money. Returns the target's new balance. Nothing is written unless both
    new balances fit their holders (an account's: int64, else OverflowError)."""
    return move_cells(source, cell_of(source, asset), target, cell_of(target, asset), asset,
                      amount)


cdef object move_cells(source, int64_t* source_cell, target, int64_t* target_cell, str asset,
                       amount):
    # a holder to itself (two views of one row are one cell) changes nothing
    if source_cell is not NULL and source_cell == target_cell:
        return target_cell[0]
    if source_cell is NULL and target_cell is NULL and source is target:
        return (<dict>target)[asset]
    cdef int64_t left64 = 0, result64 = 0, amount64 = 0
    cdef int overflow = 1
    if type(amount) is int:
        amount64 = PyLong_AsLongLongAndOverflow(amount, &overflow)
    # an account's new balance in C when the amount fits int64 (the usual case), else over Python
    # ints; either way, nothing is written unless both new balances fit their holders
    if source_cell is not NULL:
        if overflow:
            left64 = source_cell[0] - amount
        elif sub_overflow(source_cell[0], amount64, &left64):
            raise OverflowError(f"a balance of {source_cell[0]} less {amount} leaves int64")
    else:
        left = (<dict>source)[asset] - amount
    if target_cell is not NULL:
        if overflow:
            result64 = target_cell[0] + amount
        elif add_overflow(target_cell[0], amount64, &result64):
            raise OverflowError(f"a balance of {target_cell[0]} plus {amount} leaves int64")
        result = result64
    else:
        result = (<dict>target)[asset] + amount
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
    return realise_cell(balance, amount)


cdef object realise_cell(int64_t* cell, amount):
    cdef int64_t result64, amount64 = 0
    cdef int overflow = 1
    if type(amount) is int:
        amount64 = PyLong_AsLongLongAndOverflow(amount, &overflow)
    if overflow:
        result64 = cell[0] + amount         # OverflowError past int64, nothing written
    elif add_overflow(cell[0], amount64, &result64):
        raise OverflowError(f"a balance of {cell[0]} plus {amount} leaves int64")
    cell[0] = result64
    return result64
