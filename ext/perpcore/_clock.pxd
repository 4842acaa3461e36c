# The contract of ext/perpcore/_clock.pyx (the extension perpcore._clock): what the exchange clock reads of
# the layers that have work on it (pricing, lending) on every command, as a C field rather than an
# attribute lookup.

cdef class Clocked:
    # no work on the clock before this time (ns; a Python int: "never" is beyond 64 bits)
    cdef public object due
