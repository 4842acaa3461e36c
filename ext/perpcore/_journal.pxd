# The contract of perpcore._journal: the journal's record checks, its group-commit writer and the
# journaled command path. GroupWriter frames records (u32 body length, u32 chained CRC32, body
# = u64 sequence number + payload; see perpcore/journal.py) into a buffer and makes them durable
# in groups; perpcore._journal appends through its C entry, add().

from libc.stdint cimport int64_t, uint32_t
from posix.time cimport clockid_t, timespec

from perpcore._exchange cimport ExchangeCore

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    ctypedef struct pthread_condattr_t:
        pass
    int pthread_mutex_init(pthread_mutex_t*, void*)
    int pthread_mutex_lock(pthread_mutex_t*)
    int pthread_mutex_unlock(pthread_mutex_t*)
    int pthread_mutex_destroy(pthread_mutex_t*)
    int pthread_condattr_init(pthread_condattr_t*)
    int pthread_condattr_setclock(pthread_condattr_t*, clockid_t)
    int pthread_condattr_destroy(pthread_condattr_t*)
    int pthread_cond_init(pthread_cond_t*, pthread_condattr_t*)
    int pthread_cond_wait(pthread_cond_t*, pthread_mutex_t*)
    int pthread_cond_timedwait(pthread_cond_t*, pthread_mutex_t*, const timespec*)
    int pthread_cond_signal(pthread_cond_t*)
    int pthread_cond_broadcast(pthread_cond_t*)
    int pthread_cond_destroy(pthread_cond_t*)
    int pthread_create(pthread_t*, void*, void* (*)(void*) noexcept nogil, void*)
    int pthread_join(pthread_t, void**)


cdef class GroupWriter:
    cdef int fd
    cdef int mode
    cdef int64_t group_records, group_ns, max_pending
    cdef unsigned char* buf             # records appended and not yet taken by the flusher
    cdef Py_ssize_t buf_len, buf_cap
    cdef unsigned char* spare           # the buffer the flusher writes from
    cdef Py_ssize_t spare_cap
    cdef int64_t pending, oldest_ns, last_seq, committed
    cdef uint32_t chain                 # the CRC of the last sealed record (only the writer's)
    cdef int error
    cdef bint force, closing, idle, running
    cdef pthread_mutex_t mutex
    cdef pthread_cond_t wake            # the flusher waits here for work
    cdef pthread_cond_t done            # appenders and commit() wait here for commits
    cdef pthread_t thread

    # append(seq, payload) from C: the record of command `seq` with the n bytes at `payload`
    # (copied before it returns); returns committed_seq as of then, or raises OSError (-1)
    cdef int64_t add(self, int64_t seq, const unsigned char* payload, Py_ssize_t n) except? -1
    cdef int flush_now(self) except -1      # commit(): returns once all appended is committed
    cdef void _stop(self) noexcept
    cdef int _reserve(self, Py_ssize_t extra) noexcept nogil
    cdef void _flush_loop(self) noexcept nogil


cdef class JournaledCore:
    cdef readonly ExchangeCore ex
    cdef object _journal
    cdef GroupWriter _writer            # the journal's
    cdef list _held                     # events of commands not yet durable, in seq order
    cdef int64_t _held_first            # held[0].seq while there are held events
    # the last seq whose events have all been released: what a client has been told
    cdef readonly int64_t acknowledged_seq
    cdef bytearray _buf                 # each command's encoding, reused

    # submit()'s parts after the refusals: journal the command, then apply it
    cdef list _journal_and_apply(self, ExchangeCore ex, cmd, seq, tuple fields)
    cdef int64_t _append(self, int64_t seq, const char* payload, Py_ssize_t n) except? -1
    cdef list _release(self, list events, int64_t committed)
    cdef list _release_upto(self, int64_t committed)
