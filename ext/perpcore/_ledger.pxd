# The contract of ext/perpcore/_ledger.pyx (the extension perpcore._ledger): the one writer of money.
# A holder's balances map asset -> minor units: a venue bucket's are a dict (perpcore.ledger), an
# account's are int64 cells of its record in the CashTable (no object per balance), its view a
# Cash. The CashTable is also the register of accounts: one record per account, in which the
# margin and liquidation layers reserve their own areas, so that everything the engine keeps of an
# account lies together (one lookup, a few neighbouring cache lines, one page).
# Outside the ledger's own external flows (deposits and withdrawals, in perpcore.ledger), money only
# ever changes through move, realise and an Accrual (an order's fees), which the layers call from
# C and from Python alike (tests/test_ledger.py checks that no other code writes a balance).
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef inline bint id_of(account, int64_t* key) noexcept:
    """True with an account's (or an order's) id in *key when it is an int within int64 (anything
    else names none)."""
    cdef int overflow = 0
    if type(account) is not int:
        return False
    key[0] = PyLong_AsLongLongAndOverflow(account, &overflow)
    return not overflow


cdef inline uint64_t mix(uint64_t x) noexcept nogil:
    """splitmix64's finaliser: the hash of an account id."""
    x ^= x >> 30
    x *= 0xbf58476d1ce4e5b9ULL
    x ^= x >> 27
    x *= 0x94d049bb133111ebULL
    return x ^ (x >> 31)


ctypedef struct IdTable:
    # open addressing, an int64 id -> its index (the owner keeps index i's id at keys[i * step]),
    # at most half full so that probes stay short
    uint32_t* cells         # index + 1, 0: empty
    Py_ssize_t mask         # cells - 1 (a power of two)


cdef inline Py_ssize_t id_find(IdTable* t, int64_t key, int64_t* keys, Py_ssize_t step) \
        noexcept nogil:
    """The index of the key, -1: none."""
    cdef Py_ssize_t i = <Py_ssize_t>(mix(<uint64_t>key) & <uint64_t>t.mask)
    cdef uint32_t s
    while True:
        s = t.cells[i]
        if s == 0:
            return -1
        if keys[(s - 1) * step] == key:
            return s - 1
        i = (i + 1) & t.mask

# index n gets key keys[n * step] (not in the table), growing the table first if n + 1 keys would
# pass half of it; id_reset empties it (a table of 16 cells)
cdef int id_add(IdTable* t, Py_ssize_t n, int64_t* keys, Py_ssize_t step) except -1
cdef int id_reset(IdTable* t) except -1


cdef class CashTable:
    """Every account's record and the register of accounts: a record per account, given in the
    order accounts open and never taken back (a restore clears them). A record holds the account's
    id, its balances (int64 per asset) and then the areas other layers reserve (reserve()): an
    account's state sits together in memory, one record, whichever layer reads it. An account's
    row is its slot in every layer. Every balance fits int64 (perpcore.ledger's range: the venue's
    money is at most 2**62 units); a write that would not is refused (OverflowError)."""
    cdef readonly tuple assets
    cdef dict column                    # asset -> its index in a row
    cdef readonly Py_ssize_t width      # assets
    cdef readonly Py_ssize_t rows       # rows given
    cdef Py_ssize_t cap                 # rows allocated
    cdef readonly Py_ssize_t stride     # bytes per record (a multiple of 16)
    cdef char* records                  # rows x stride: id, balances, reserved areas
    cdef IdTable table                  # account -> row
    # while True, row r holds account first + r (accounts numbered in sequence as they open): a
    # row is then found without reading memory
    cdef readonly bint sequential
    cdef int64_t first

    # an area in every record, reserved before any account opens: its offset
    cdef Py_ssize_t reserve(self, Py_ssize_t size) except -1
    cdef Py_ssize_t column_of(self, str asset) except -1       # KeyError for an unknown asset
    cdef Py_ssize_t find(self, int64_t account) noexcept nogil  # its row, -1: none
    cdef Py_ssize_t sequence_row(self, int64_t account) noexcept nogil     # while sequential
    cdef void prefetch_record(self, Py_ssize_t row) noexcept nogil     # its lines asked for
    cdef Py_ssize_t lookup(self, account) noexcept              # any object; -1: no account
    # an account about to be looked up (any object): its record (accounts in sequence) or its
    # cell in the table is asked for now, so that the miss overlaps the work before the lookup
    cdef void expect(self, account) noexcept
    cdef Py_ssize_t row_of(self, account) except -1            # KeyError for an unknown account


cdef inline char* record_of(CashTable t, Py_ssize_t row) noexcept nogil:
    """A row's record (valid until the next account opens: the records may move as they grow)."""
    return t.records + row * t.stride


cdef inline int64_t id_at(CashTable t, Py_ssize_t row) noexcept nogil:
    """A row's account."""
    return (<int64_t*>record_of(t, row))[0]


cdef inline int64_t* row_cells(CashTable t, Py_ssize_t row) noexcept nogil:
    """A row's balances, one per asset."""
    return <int64_t*>(record_of(t, row) + 8)


cdef class Cash:
    """One account's balances: its row of the CashTable, read and written like the dict of asset
    -> minor units it stands for (the same object for the ledger and the margin layer)."""
    cdef readonly CashTable table
    cdef readonly Py_ssize_t row

    cdef int64_t* cell(self, Py_ssize_t column) noexcept
    cdef int64_t amount_of(self, str asset) except? -1              # KeyError: unknown asset


cdef class Accrual:
    """Money on its way from accounts into a venue bucket within one command (the fees of an
    order's fills): take() debits an account's cell and adds to `amount` in C; flush() moves the
    sum into the bucket once. Whoever takes flushes before the command's later stages, so between
    commands (the audit, a snapshot) the bucket holds it all."""
    cdef readonly dict bucket
    cdef readonly str asset
    cdef readonly int64_t amount        # taken, not yet in the bucket

    cdef int take(self, int64_t* cell, int64_t amount) except -1
    cpdef flush(self)


cdef class Balances:
    """Every account's balances as a mapping account -> Cash (perpcore.ledger.Ledger.balances), in
    the order accounts opened; a view is made on each lookup."""
    cdef readonly CashTable table


# amount of asset from one holder's balances to another's (negative: the other way round); a
# holder is a dict or a Cash
cpdef object move(source, target, str asset, amount)
# the same with either holder's balance as its cell in the CashTable (NULL: the holder is a dict)
cdef object move_cells(source, int64_t* source_cell, target, int64_t* target_cell, str asset,
                       amount)
# profit (> 0) or loss (< 0) realised on closing a position, into the account's balances: its
# counterpart is the open positions' entry value, perpcore.ledger's open_entry_value
cpdef object realise(cash, str asset, amount)
cdef object realise_cell(int64_t* cell, amount)         # into an account's balance cell
