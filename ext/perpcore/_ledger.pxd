# The contract of ext/perpcore/_ledger.pyx (the extension perpcore._ledger): the one writer of money.
# A holder's balances map asset -> minor units: a venue bucket's are a dict (perpcore.ledger), an
# account's a row of the CashTable (int64 per asset in C, no object per balance), its view a Cash.
# Outside the ledger's own external flows (deposits and withdrawals, in perpcore.ledger), money only
# ever changes through move and realise, which the layers call from C and from Python alike
# (tests/test_ledger.py checks that no other code writes a balance).
from libc.stdint cimport int64_t


cdef class CashTable:
    """Every account's balances: a row of int64 per account (one per asset), rows given in the
    order accounts open and never taken back. Every balance fits int64 (perpcore.ledger's range:
    the venue's money is at most 2**62 units); a write that would not is refused (OverflowError)."""
    cdef readonly tuple assets
    cdef dict column                    # asset -> its index in a row
    cdef readonly Py_ssize_t width      # assets
    cdef readonly Py_ssize_t rows       # rows given
    cdef Py_ssize_t cap                 # rows allocated
    cdef int64_t* cells                 # rows x width

    cdef Py_ssize_t column_of(self, str asset) except -1       # KeyError for an unknown asset


cdef class Cash:
    """One account's balances: its row of the CashTable, read and written like the dict of asset
    -> minor units it stands for (the same object for the ledger and the margin layer)."""
    cdef readonly CashTable table
    cdef readonly Py_ssize_t row

    cdef int64_t* cell(self, Py_ssize_t column) noexcept


# amount of asset from one holder's balances to another's (negative: the other way round); a
# holder is a dict or a Cash
cpdef object move(source, target, str asset, amount)
# profit (> 0) or loss (< 0) realised on closing a position, into the account's balances: its
# counterpart is the open positions' entry value, perpcore.ledger's open_entry_value
cpdef object realise(cash, str asset, amount)
