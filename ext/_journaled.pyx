# The journaled command path: JournaledCore, the base of perpcore.journal.JournaledExchange, whose
# submit() encodes a command, appends its record through the GroupWriter's C entry, applies it and
# releases the events of the commands whose records are durable. perpcore.journal documents the
# behaviour; this is its hot path, typed (the Python around a command cost ~1 µs, a fifth of the
# engine's own time on the standard mix).
from libc.stdint cimport int64_t
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE

from perpcore._jscan cimport GroupWriter
from perpcore._orders cimport ExchangeCore

import bisect
import operator

from perpcore import messages as m

cdef object OrderRejected = m.OrderRejected
cdef object MALFORMED = m.RejectCode.MALFORMED
cdef object decode = m.command_decoder.decode
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
        """As Exchange.submit, journaling the command before it is applied: one refused before
        it is sequenced (outside its schema, the engine halted, another thread's submit in
        progress, or `seq` not the next) is neither journaled nor applied. A journal that fails
        halts the engine (fail-stop): the command is not applied and nothing later is."""
        cdef ExchangeCore ex = self.ex
        if ex.busy:
            return ex.concurrent(cmd)
        ex.busy = True
        try:
            refused = ex.refusal(cmd)
            if refused is not None:
                return refused
            return self._journal_and_apply(ex, cmd, seq)
        finally:
            ex.busy = False

    def submit_bytes(self, payload, seq=None):
        """As Exchange.submit_bytes: a payload that does not decode is refused as MALFORMED,
        neither journaled nor sequenced; one that does is journaled as it came."""
        cdef ExchangeCore ex = self.ex
        try:
            cmd = decode(payload)
        except Exception as e:  # msgspec's DecodeError or ValidationError: both "malformed"
            return [OrderRejected(ex.seq, ex.clock, MALFORMED, str(e)[:200])]
        return self.submit(cmd, seq)

    cdef list _journal_and_apply(self, ExchangeCore ex, cmd, seq):
        cdef bytearray buf = self._buf
        if seq is not None and seq != ex.seq + 1:
            return ex.apply(cmd, seq)               # refused for its sequence; changes nothing
        try:
            encode_into(cmd, buf)       # a command within its schema always encodes
            committed = self._append(ex.seq + 1, PyByteArray_AS_STRING(buf),
                                     PyByteArray_GET_SIZE(buf))
        except Exception as e:
            return ex.halt(ex.seq + 1, cmd, e)
        return self._release(ex.apply(cmd, None), committed)

    def poll(self):
        """Releases what has become durable, without waiting (nothing while another thread's
        submit is in progress: that call releases it)."""
        if self.ex.busy:
            return []
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
