# The journaled command path: JournaledCore, the base of perpcore.journal.JournaledExchange, whose
# submit() encodes a command, appends its record through the GroupWriter's C entry, applies it and
# releases the events of the commands whose records are durable. perpcore.journal documents the
# behaviour; this is its hot path, typed (the Python around a command cost ~1 µs, a fifth of the
# engine's own time on the standard mix).
from libc.stdint cimport int64_t
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.set cimport PySet_Contains

from perpcore._jscan cimport GroupWriter
from perpcore._orders cimport ExchangeCore

import bisect
import operator

import msgspec

from perpcore import messages as m

cdef object Message = m.Message
cdef object OrderRejected = m.OrderRejected
cdef object MALFORMED = m.RejectCode.MALFORMED
# every message class: a set lookup of the type first, as isinstance() on a Struct is slow
cdef frozenset MESSAGE_CLASSES = frozenset(m._all_subclasses(m.Message))
cdef tuple UNENCODABLE = (TypeError, OverflowError, msgspec.EncodeError)
cdef object DecodeError = msgspec.DecodeError
cdef object decode = m.command_decoder.decode
cdef object encode = m.encoder.encode
cdef object encode_into = m.encoder.encode_into
cdef object bisect_right = bisect.bisect_right
cdef object seq_of = operator.attrgetter("seq")


cdef class JournaledCore:
    """An exchange and the journal its commands are written to before their events are released
    (see perpcore.journal.JournaledExchange)."""
    cdef readonly ExchangeCore ex
    cdef object _journal
    cdef GroupWriter _writer            # the journal's
    cdef list _held                     # events of commands not yet durable, in seq order
    cdef int64_t _held_first            # held[0].seq while there are held events
    # the last seq whose events have all been released: what a client has been told
    cdef public int64_t acknowledged_seq
    cdef bytearray _buf                 # each command's encoding, reused

    def __cinit__(self, ExchangeCore ex not None, journal, *args, **kwargs):
        self.ex = ex
        self.journal = journal
        self._held = []
        self.acknowledged_seq = ex.seq
        self._buf = bytearray()

    @property
    def journal(self):
        return self._journal

    @journal.setter
    def journal(self, journal):
        # a store swaps journals at checkpoints; the hot path talks to the writer directly
        self._writer = <GroupWriter?>journal._writer
        self._journal = journal

    def submit(self, cmd, seq=None):
        """`seq` as in Exchange.submit: a command from an already sequenced source that is not
        the next is refused and neither journaled nor applied. So is, as MALFORMED, anything that
        is not a perpcore message or cannot be encoded (an integer beyond 64 bits)."""
        cdef ExchangeCore ex = self.ex
        cdef bytearray buf = self._buf
        if seq is not None and seq != ex.seq + 1:
            return ex.submit(cmd, seq)              # refused for its sequence; changes nothing
        try:
            if not PySet_Contains(MESSAGE_CLASSES, type(cmd)) and not isinstance(cmd, Message):
                raise TypeError(f"{type(cmd).__name__} is not a perpcore message")
            encode_into(cmd, buf)
        except UNENCODABLE as e:
            return [OrderRejected(ex.seq, ex.clock, MALFORMED, f"command cannot be journaled: {e}")]
        committed = self._append(ex.seq + 1, PyByteArray_AS_STRING(buf), PyByteArray_GET_SIZE(buf))
        return self._release(ex.submit(cmd), committed)

    def submit_bytes(self, payload, seq=None):
        """As Exchange.submit_bytes; a payload that does not decode is journaled (wrapped, so
        that its replay refuses it the same way) and refused as MALFORMED."""
        cdef ExchangeCore ex = self.ex
        cdef bytes record
        if seq is not None and seq != ex.seq + 1:
            return ex.submit_bytes(payload, seq)    # refused for its sequence; changes nothing
        payload = bytes(payload)
        try:
            cmd = decode(payload)
        except DecodeError:
            record = encode(payload)
            committed = self._append(ex.seq + 1, PyBytes_AS_STRING(record),
                                     PyBytes_GET_SIZE(record))
            return self._release(ex.submit_bytes(payload), committed)
        record = payload
        committed = self._append(ex.seq + 1, PyBytes_AS_STRING(record), PyBytes_GET_SIZE(record))
        return self._release(ex.submit(cmd), committed)

    def poll(self):
        """Releases what has become durable, without waiting."""
        return self._release_upto(self._writer.committed_seq)

    cdef int64_t _append(self, int64_t seq, const char* payload, Py_ssize_t n) except? -1:
        """The writer's committed seq as of the append (see GroupWriter.add)."""
        try:
            return self._writer.add(seq, <const unsigned char*>payload, n)
        except OSError as e:
            raise self._journal.failure(e) from e

    cdef list _release(self, list events, int64_t committed):
        """The events released now: `committed` is the writer's committed seq when the command
        was appended (its own record counts once that reaches the exchange's seq)."""
        cdef list held = self._held
        cdef bint was_empty = not held
        if was_empty and committed >= self.ex.seq:
            self.acknowledged_seq = committed
            return events
        held.extend(events)
        if was_empty and held:
            self._held_first = held[0].seq
        return self._release_upto(committed)

    cdef list _release_upto(self, int64_t committed):
        cdef list held = self._held, out
        cdef Py_ssize_t cut
        self.acknowledged_seq = committed
        if not held or self._held_first > committed:
            return []
        if held[len(held) - 1].seq <= committed:
            self._held = []
            return held
        # events carry their command's seq, in order: release those of durable commands
        cut = bisect_right(held, committed, key=seq_of)
        out = held[:cut]
        del held[:cut]
        self._held_first = held[0].seq
        return out
