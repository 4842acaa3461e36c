# See perpcore._clock.pxd.

cdef class Clocked:
    """The base of a layer with work on the exchange clock: the clock calls the layer's advance
    only once its time reaches `due`; the layer keeps `due` at its next instant of work (0: work
    it out at the next command)."""

    def __cinit__(self):
        self.due = 0

    cpdef start(self, t, list events):
        raise NotImplementedError(f"{type(self).__name__} defines no start")

    cpdef advance(self, t_end, list events):
        raise NotImplementedError(f"{type(self).__name__} defines no advance")
