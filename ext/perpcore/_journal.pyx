# The journal's C half: its record checks (length, chained CRC32 and consecutive sequence numbers,
# and after a bad record the search for intact records beyond it, which tells corruption from a torn
# tail), its group-commit writer, and the journaled command path. See perpcore._journal.pxd for the
# contract and perpcore/journal.py for the layout. Replaying a journal is dominated by the scan loop
# in Python.

import bisect
import operator

from msgspec import DecodeError

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.errno cimport EINTR, ENOMEM, errno
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, strerror
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport fsync, write
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE

from perpcore._exchange cimport ExchangeCore
from perpcore._validate cimport fields_of

# Why a scan stopped before the end of the data.
cdef enum:
    ST_OK = 0
    ST_TORN_HEADER = 1
    ST_BAD_LENGTH = 2
    ST_TORN_RECORD = 3
    ST_BAD_CRC = 4
    ST_BAD_SEQ = 5

OK, TORN_HEADER, BAD_LENGTH, TORN_RECORD, BAD_CRC, BAD_SEQ = (
    ST_OK, ST_TORN_HEADER, ST_BAD_LENGTH, ST_TORN_RECORD, ST_BAD_CRC, ST_BAD_SEQ)
cdef uint32_t ALL_ONES = 0xFFFFFFFFU
cdef uint32_t POLY = 0xEDB88320U

cdef uint32_t CRC_TABLE[8][256]
cdef unsigned char CRC_TOP[256]     # the index of CRC_TABLE[0]'s entry with this top byte


cdef void _init_table() noexcept:
    # the reflected IEEE polynomial of zlib.crc32, as slicing-by-8 tables
    cdef uint32_t c, n, k
    for n in range(256):
        c = n
        for k in range(8):
            c = (c >> 1) ^ POLY if c & 1 else c >> 1
        CRC_TABLE[0][n] = c
    for n in range(256):
        c = CRC_TABLE[0][n]
        for k in range(1, 8):
            c = CRC_TABLE[0][c & 0xFF] ^ (c >> 8)
            CRC_TABLE[k][n] = c
    for n in range(256):
        CRC_TOP[CRC_TABLE[0][n] >> 24] = n


_init_table()


@cython.profile(False)
@cython.linetrace(False)
cdef inline uint32_t _crc_update(uint32_t c, const unsigned char* p, Py_ssize_t n) noexcept nogil:
    # the running register, without zlib's initial and final inversion
    cdef uint32_t lo, hi
    while n >= 8:
        lo = c ^ (p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24))
        hi = p[4] | (<uint32_t>p[5] << 8) | (<uint32_t>p[6] << 16) | (<uint32_t>p[7] << 24)
        c = (CRC_TABLE[7][lo & 0xFF] ^ CRC_TABLE[6][(lo >> 8) & 0xFF]
             ^ CRC_TABLE[5][(lo >> 16) & 0xFF] ^ CRC_TABLE[4][lo >> 24]
             ^ CRC_TABLE[3][hi & 0xFF] ^ CRC_TABLE[2][(hi >> 8) & 0xFF]
             ^ CRC_TABLE[1][(hi >> 16) & 0xFF] ^ CRC_TABLE[0][hi >> 24])
        p += 8
        n -= 8
    while n > 0:
        c = CRC_TABLE[0][(c ^ p[0]) & 0xFF] ^ (c >> 8)
        p += 1
        n -= 1
    return c


@cython.profile(False)
@cython.linetrace(False)
cdef inline uint32_t _crc32(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    return _crc_update(ALL_ONES, p, n) ^ ALL_ONES


@cython.profile(False)
@cython.linetrace(False)
cdef inline uint32_t _chained(uint32_t prev, const unsigned char* rec,
                              Py_ssize_t length) noexcept nogil:
    # a record's CRC: CRC32 of its length field and body, continuing from its predecessor's CRC
    # (zlib.crc32(body, zlib.crc32(length field, prev))), so each record vouches for the chain
    cdef uint32_t c = _crc_update(prev ^ ALL_ONES, rec, 4)
    return _crc_update(c, rec + 8, length) ^ ALL_ONES


@cython.profile(False)
@cython.linetrace(False)
cdef inline uint32_t _unstep(uint32_t c, unsigned char b) noexcept nogil:
    # one byte of the CRC register run backwards (each table entry has its own top byte)
    cdef unsigned char idx = CRC_TOP[c >> 24]
    return ((c ^ CRC_TABLE[0][idx]) << 8) | (idx ^ b)


@cython.profile(False)
@cython.linetrace(False)
cdef uint32_t _unchained(uint32_t crc, const unsigned char* rec, Py_ssize_t length) noexcept nogil:
    # the predecessor's CRC that a record's stored CRC requires: _chained() run backwards
    cdef uint32_t c = crc ^ ALL_ONES
    cdef Py_ssize_t i
    for i in range(length - 1, -1, -1):
        c = _unstep(c, rec[8 + i])
    for i in range(3, -1, -1):
        c = _unstep(c, rec[i])
    return c ^ ALL_ONES


@cython.profile(False)
@cython.linetrace(False)
cdef inline void _put_le(unsigned char* p, uint64_t v, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        p[i] = v & 0xFF
        v >>= 8


@cython.profile(False)
@cython.linetrace(False)
cdef inline uint64_t _le(const unsigned char* p, int n) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n - 1, -1, -1):
        v = (v << 8) | p[i]
    return v


def crc32(const unsigned char[::1] data):
    """zlib.crc32 of the bytes (the same function, for tests)."""
    return _crc32(&data[0], data.shape[0]) if data.shape[0] else 0


def unchained(uint32_t crc, const unsigned char[::1] record):
    """The predecessor's CRC a framed record's stored `crc` requires (for tests)."""
    return _unchained(crc, &record[0], record.shape[0] - 8)


def scan(const unsigned char[::1] data, Py_ssize_t offset, int64_t first_seq, int64_t max_body,
         uint32_t chain):
    """Checks the records from `offset` on, the first chained from `chain`. Returns (spans, end,
    why, chain): spans a memoryview of int64, shape (records, 2), of (payload start, payload
    end) per valid record, whose sequence numbers run from first_seq; end the offset after the
    last valid record; why OK or the reason the rest was refused; chain the last valid record's
    CRC (or the one given)."""
    cdef Py_ssize_t n = data.shape[0], off = offset, end
    cdef int64_t expected = first_seq, length
    cdef uint32_t crc
    cdef int why = ST_OK
    cdef int64_t count = 0
    # a record is at least 16 bytes, which bounds how many there can be
    cdef Py_ssize_t rows = (n - off) // 16 + 1
    cdef int64_t[:, ::1] out = memoryview(bytearray(rows * 16)).cast("q", (rows, 2))
    with nogil:
        while off < n:
            if off + 8 > n:
                why = ST_TORN_HEADER
                break
            length = <int64_t>_le(&data[off], 4)
            crc = <uint32_t>_le(&data[off + 4], 4)
            if length < 8 or length > max_body:
                why = ST_BAD_LENGTH
                break
            end = off + 8 + length
            if end > n:
                why = ST_TORN_RECORD
                break
            if _chained(chain, &data[off], length) != crc:
                why = ST_BAD_CRC
                break
            if <int64_t>_le(&data[off + 8], 8) != expected:
                why = ST_BAD_SEQ
                break
            out[count, 0] = off + 16
            out[count, 1] = end
            count += 1
            expected += 1
            chain = crc
            off = end
    # a Python memoryview of (count, 2) int64: len(), spans[i, 0], tolist(), and a buffer
    return memoryview(out[:count]), off, why, chain


def find_intact(const unsigned char[::1] data, Py_ssize_t offset, int64_t seq, int64_t max_body,
                uint32_t chain):
    """After a bad record at `offset` (which should have held `seq`; `chain` the CRC before it):
    (offset, seq) of the first intact record beyond it, of `seq` or later (a record written twice
    has the one after it carry `seq`), or (-1, -1) when there is none (a torn tail). A candidate
    is a plausible frame (length, a seq that fits in the bytes left) whose CRC continues one
    stored in the damaged stretch (after a record whose body or length is damaged), `chain` (after
    bytes inserted), or the bad record's own CRC computed afresh (after a damaged CRC field), or
    is continued by the record that follows it. A false match needs a 32-bit CRC to agree by
    chance."""
    cdef Py_ssize_t n = data.shape[0], p, q, x, end, found = -1
    cdef int64_t length, later = -1, most = seq + (n - offset) // 16 + 1
    cdef uint32_t crc, want, intact = chain
    with nogil:
        # the bad record's true CRC, were only its CRC field damaged: what its successor continues
        if offset + 16 <= n:
            length = <int64_t>_le(&data[offset], 4)
            if 8 <= length <= max_body and offset + 8 + length <= n:
                intact = _chained(chain, &data[offset], length)
        for p in range(offset + 1, n - 15):
            length = <int64_t>_le(&data[p], 4)
            if length < 8 or length > max_body or p + 8 + length > n:
                continue
            later = <int64_t>_le(&data[p + 8], 8)
            if later < seq or later > most:
                continue
            crc = <uint32_t>_le(&data[p + 4], 4)
            want = _unchained(crc, &data[p], length)
            if want == chain or want == intact:
                found = p
                break
            for x in range(offset, p - 15):
                if <uint32_t>_le(&data[x + 4], 4) == want:
                    found = p
                    break
            if found >= 0:
                break
            q = p + 8 + length
            if q + 16 <= n:
                length = <int64_t>_le(&data[q], 4)
                end = q + 8 + length
                if (8 <= length <= max_body and end <= n
                        and <int64_t>_le(&data[q + 8], 8) == later + 1
                        and _chained(crc, &data[q], length) == <uint32_t>_le(&data[q + 4], 4)):
                    found = p
                    break
    if found < 0:
        return -1, -1
    return found, later


def decode_spans(const unsigned char[::1] data, const int64_t[:, ::1] spans, decode, fallback,
                 bint keep=True):
    """decode(payload) of each span's bytes, or fallback(payload) where decode raises
    msgspec.DecodeError: the list of results in order (or, without keep, just their count)."""
    cdef Py_ssize_t i, n = spans.shape[0]
    cdef list out = [] if keep else None
    cdef bytes payload
    for i in range(n):
        payload = PyBytes_FromStringAndSize(<const char*>&data[spans[i, 0]],
                                            spans[i, 1] - spans[i, 0])
        try:
            result = decode(payload)
        except DecodeError:
            result = fallback(payload)
        if keep:
            out.append(result)
    return out if keep else n


# ---- the group-commit writer -------------------------------------------------------------------

# How a GroupWriter makes records durable.
cdef enum:
    MODE_ALWAYS = 0     # write and fsync each record before append() returns
    MODE_GROUP = 1      # a C thread writes and fsyncs groups
    MODE_NONE = 2       # write in groups, never fsync

MODES = {"always": MODE_ALWAYS, "group": MODE_GROUP, "none": MODE_NONE}


@cython.profile(False)
@cython.linetrace(False)
cdef inline int64_t _now_ns() noexcept nogil:
    # monotonic: it decides only when bytes reach the disk, never anything in the engine
    cdef timespec t
    clock_gettime(CLOCK_MONOTONIC, &t)
    return <int64_t>t.tv_sec * 1000000000 + t.tv_nsec


@cython.profile(False)
@cython.linetrace(False)
cdef int _write_fd(int fd, const unsigned char* p, Py_ssize_t n, bint sync) noexcept nogil:
    """Writes all n bytes and fsyncs if asked; 0 or an errno."""
    cdef ssize_t wrote
    while n > 0:
        wrote = write(fd, p, n)
        if wrote < 0:
            if errno == EINTR:
                continue
            return errno
        p += wrote
        n -= wrote
    if sync and fsync(fd) != 0:
        return errno
    return 0


@cython.profile(False)
@cython.linetrace(False)
cdef uint32_t _seal(unsigned char* p, Py_ssize_t n, uint32_t chain) noexcept nogil:
    """Fills in the chained CRC of each record in the n bytes at p, the first continuing `chain`,
    just before they are written; returns the last one (the chain the next group continues). The
    appends leave it, so that the CRC's table lookups (8 KiB, cold between two commands) are not
    on the engine thread."""
    cdef Py_ssize_t off = 0, length
    while off < n:
        length = <Py_ssize_t>_le(p + off, 4)
        chain = _chained(chain, p + off, length)
        _put_le(p + off + 4, chain, 4)
        off += 8 + length
    return chain


# The flusher thread never takes the GIL (add() locks the mutex holding it), so nothing it runs
# may be traced: a debug build's profiling and line tracing would take the GIL there.
@cython.profile(False)
@cython.linetrace(False)
cdef void* _flusher_main(void* arg) noexcept nogil:
    (<GroupWriter>arg)._flush_loop()
    return NULL


cdef class GroupWriter:
    """Appends framed journal records to a file descriptor and makes them durable in groups.

    In "group" mode a C thread that never takes the GIL commits (writes, then fsyncs) once
    `group_records` records are waiting, once the oldest has waited `group_ns` on the monotonic
    clock, or when commit() asks; append() only copies the record into a buffer under a mutex, so
    the engine thread never waits for the disk or hands the GIL over (the records' CRCs are computed
    by whoever writes them: in "group" mode the flusher, which alone then carries the chain from
    group to group). `committed_seq` is the last record known durable and `chain` the CRC the next
    record continues (the last committed record's, or the header's before any). append() waits while
    `max_pending` records are uncommitted (back-pressure). After a failed write or fsync every
    append() and commit() raises OSError."""
    def __cinit__(self, int fd, str mode, int64_t last_seq, uint32_t chain,
                  int64_t group_records=1024, double group_ms=5.0, int64_t max_pending=65536):
        cdef pthread_condattr_t attr
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}")
        if group_records < 1 or group_ms < 0 or max_pending < group_records:
            raise ValueError("need group_records >= 1, group_ms >= 0, max_pending >= group_records")
        self.fd = fd
        self.mode = MODES[mode]
        self.group_records = 1 if self.mode == MODE_ALWAYS else group_records
        self.group_ns = <int64_t>(group_ms * 1e6)
        self.max_pending = max_pending
        self.last_seq = self.committed = last_seq
        self.chain = chain
        pthread_mutex_init(&self.mutex, NULL)
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&self.wake, &attr)
        pthread_cond_init(&self.done, &attr)
        pthread_condattr_destroy(&attr)
        if self.mode == MODE_GROUP:
            if pthread_create(&self.thread, NULL, _flusher_main, <void*>self) != 0:
                raise OSError("cannot start the journal's flusher thread")
            self.running = True

    def __dealloc__(self):
        self._stop()
        pthread_cond_destroy(&self.wake)
        pthread_cond_destroy(&self.done)
        pthread_mutex_destroy(&self.mutex)
        free(self.buf)
        free(self.spare)

    cdef void _stop(self) noexcept:
        if not self.running:
            return
        with nogil:
            pthread_mutex_lock(&self.mutex)
            self.closing = True
            pthread_cond_signal(&self.wake)
            pthread_mutex_unlock(&self.mutex)
            pthread_join(self.thread, NULL)
        self.running = False

    cdef int _reserve(self, Py_ssize_t extra) noexcept nogil:
        cdef Py_ssize_t cap = self.buf_cap if self.buf_cap else 65536
        cdef unsigned char* grown
        while cap < self.buf_len + extra:
            cap *= 2
        if cap != self.buf_cap:
            grown = <unsigned char*>realloc(self.buf, cap)
            if grown == NULL:
                return ENOMEM
            self.buf, self.buf_cap = grown, cap
        return 0

    def append(self, int64_t seq, bytes payload not None):
        """Adds the record of command `seq`; returns committed_seq as of then (the caller learns
        what has become durable without a second call)."""
        return self.add(seq, <const unsigned char*>PyBytes_AS_STRING(payload), len(payload))

    cdef int64_t add(self, int64_t seq, const unsigned char* payload, Py_ssize_t n) except? -1:
        cdef unsigned char* out
        cdef int err = 0
        cdef int64_t committed
        # the flusher never takes the GIL, so locking the mutex while holding it cannot deadlock
        pthread_mutex_lock(&self.mutex)
        if self.pending >= self.max_pending and self.error == 0:
            with nogil:
                while self.pending >= self.max_pending and self.error == 0:
                    pthread_cond_wait(&self.done, &self.mutex)
        err = self.error or self._reserve(16 + n)
        if err == 0:
            out = self.buf + self.buf_len
            _put_le(out, 8 + n, 4)
            _put_le(out + 8, <uint64_t>seq, 8)
            memcpy(out + 16, payload, n)
            self.buf_len += 16 + n
            self.last_seq = seq
            self.pending += 1
            if self.pending == 1:
                self.oldest_ns = _now_ns()
                if self.idle:
                    pthread_cond_signal(&self.wake)
            elif self.pending == self.group_records and self.mode == MODE_GROUP:
                pthread_cond_signal(&self.wake)
        committed = self.committed
        pthread_mutex_unlock(&self.mutex)
        if err:
            raise OSError(err, strerror(err).decode())
        if self.mode != MODE_GROUP and self.pending >= self.group_records:
            self.flush_now()
            committed = self.committed
        return committed

    @cython.profile(False)
    @cython.linetrace(False)
    cdef void _flush_loop(self) noexcept nogil:
        cdef timespec deadline
        cdef int64_t due, last
        cdef uint32_t chain
        cdef unsigned char* data
        cdef Py_ssize_t size, cap
        cdef int err
        pthread_mutex_lock(&self.mutex)
        while True:
            while not (self.pending and (self.force or self.closing
                                         or self.pending >= self.group_records)):
                if self.closing and not self.pending:
                    pthread_mutex_unlock(&self.mutex)
                    return
                if not self.pending:
                    self.idle = True        # the next append wakes it
                    pthread_cond_wait(&self.wake, &self.mutex)
                    self.idle = False
                    continue
                due = self.oldest_ns + self.group_ns
                if due <= _now_ns():
                    break
                deadline.tv_sec = due // 1000000000
                deadline.tv_nsec = due % 1000000000
                pthread_cond_timedwait(&self.wake, &self.mutex, &deadline)
            # take the buffer; appends go on into the spare while this group is written
            data, size, cap, last = self.buf, self.buf_len, self.buf_cap, self.last_seq
            self.buf, self.buf_cap, self.buf_len = self.spare, self.spare_cap, 0
            self.spare, self.spare_cap = NULL, 0
            self.pending = 0
            self.force = False
            pthread_mutex_unlock(&self.mutex)
            chain = _seal(data, size, self.chain)      # only this thread seals in this mode
            err = _write_fd(self.fd, data, size, True)
            pthread_mutex_lock(&self.mutex)
            self.spare, self.spare_cap = data, cap
            if err:
                self.error = err
                pthread_cond_broadcast(&self.done)
                pthread_mutex_unlock(&self.mutex)
                return
            self.committed = last
            self.chain = chain
            pthread_cond_broadcast(&self.done)

    def commit(self):
        """Returns once every record appended so far is committed."""
        self.flush_now()

    cdef int flush_now(self) except -1:
        cdef int64_t target
        cdef int err = 0
        cdef uint32_t chain
        cdef unsigned char* data
        cdef Py_ssize_t size
        if self.mode != MODE_GROUP:
            if self.error == 0 and self.buf_len:
                data, size = self.buf, self.buf_len
                with nogil:
                    chain = _seal(data, size, self.chain)
                    err = _write_fd(self.fd, data, size, self.mode == MODE_ALWAYS)
                if err:
                    self.error = err
                else:
                    self.chain = chain
                    self.buf_len = 0
                    self.pending = 0
                    self.committed = self.last_seq
            if self.error:
                raise OSError(self.error, strerror(self.error).decode())
            return 0
        with nogil:
            pthread_mutex_lock(&self.mutex)
            target = self.last_seq
            if self.committed < target and self.error == 0:
                self.force = True
                pthread_cond_signal(&self.wake)
                while self.committed < target and self.error == 0:
                    pthread_cond_wait(&self.done, &self.mutex)
            err = self.error if self.committed < target else 0
            pthread_mutex_unlock(&self.mutex)
        if err:
            raise OSError(err, strerror(err).decode())
        return 0

    def close(self):
        """Commits, then stops the flusher thread (the file descriptor stays the caller's)."""
        try:
            self.commit()
        finally:
            self._stop()

    @property
    def committed_seq(self):
        cdef int64_t value
        pthread_mutex_lock(&self.mutex)
        value = self.committed
        pthread_mutex_unlock(&self.mutex)
        return value

    @property
    def chain(self):
        cdef uint32_t value
        pthread_mutex_lock(&self.mutex)
        value = self.chain
        pthread_mutex_unlock(&self.mutex)
        return value

    @property
    def last_seq(self):
        return self.last_seq

    @property
    def failed(self):
        return self.error != 0


# ---- the journaled command path ----------------------------------------------------------------
# JournaledCore, the base of perpcore.journal.JournaledExchange: submit() encodes a command, appends
# its record through the GroupWriter's C entry, applies it and releases the events of the commands
# whose records are durable (the Python around a command cost ~1 µs, a fifth of the engine's own
# time on the standard mix).

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
            ex.expect_account(cmd)
            fields = fields_of(cmd)
            refused = ex.refusal(cmd, fields)
            if refused is not None:
                return refused
            return self._journal_and_apply(ex, cmd, seq, fields)
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

    cdef list _journal_and_apply(self, ExchangeCore ex, cmd, seq, tuple fields):
        cdef bytearray buf = self._buf
        if seq is not None and seq != ex.seq + 1:
            return ex.apply(cmd, seq, fields)       # refused for its sequence; changes nothing
        try:
            encode_into(cmd, buf)       # a command within its schema always encodes
            committed = self._append(ex.seq + 1, PyByteArray_AS_STRING(buf),
                                     PyByteArray_GET_SIZE(buf))
        except Exception as e:
            return ex.halt(ex.seq + 1, cmd, e)
        return self._release(ex.apply(cmd, None, fields), committed)

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
