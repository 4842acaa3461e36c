# The contract of ext/perpcore/_clock.pyx (the extension perpcore._clock): what the exchange clock reads of
# the layers that have work on it (pricing, lending) on every command, as a C field rather than an
# attribute lookup.

cdef class Clocked:
    # no work on the clock before this time (ns; a Python int: "never" is beyond 64 bits)
    cdef public object due

    # the hooks the exchange clock calls (perpcore._exchange), each layer's own (its Python class):
    # start, when the clock's first time is beyond one step from 0 (nothing is due before t);
    # advance, for the work due up to t_end, in time order, once t_end reaches `due`
    cpdef start(self, t, list events)
    cpdef advance(self, t_end, list events)
