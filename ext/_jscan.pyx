# Checks journal records (see perpcore/journal.py for the layout) in C: length, CRC32 and
# consecutive sequence numbers. Replaying a journal is dominated by this loop in Python.

import numpy as np
from msgspec import DecodeError

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.errno cimport EINTR, errno
from libc.string cimport memcpy, strerror
from posix.unistd cimport fsync, write

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


_init_table()


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


cdef inline uint32_t _crc32(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    return _crc_update(ALL_ONES, p, n) ^ ALL_ONES


cdef inline void _put_le(unsigned char* p, uint64_t v, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        p[i] = v & 0xFF
        v >>= 8


cdef inline uint64_t _le(const unsigned char* p, int n) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n - 1, -1, -1):
        v = (v << 8) | p[i]
    return v


def crc32(const unsigned char[::1] data):
    """zlib.crc32 of the bytes (the same function, for tests)."""
    return _crc32(&data[0], data.shape[0]) if data.shape[0] else 0


def frame(bytearray buf, int64_t seq, bytes payload):
    """Appends to buf the record of command `seq` with that payload: u32 body length, u32 CRC32
    of the body, body = u64 seq + payload."""
    cdef Py_ssize_t n = len(payload), start = len(buf)
    cdef unsigned char* out
    if PyByteArray_Resize(buf, start + 16 + n) < 0:
        raise MemoryError()
    out = <unsigned char*>PyByteArray_AS_STRING(buf) + start
    _put_le(out, 8 + n, 4)
    _put_le(out + 8, <uint64_t>seq, 8)
    memcpy(out + 16, PyBytes_AS_STRING(payload), n)
    _put_le(out + 4, _crc32(out + 8, 8 + n), 4)


def scan(const unsigned char[::1] data, Py_ssize_t offset, int64_t first_seq, int64_t max_body):
    """Checks the records from `offset` on. Returns (spans, end, why): spans an int64 array of
    (payload start, payload end) per valid record, whose sequence numbers run from first_seq;
    end the offset after the last valid record; why OK or the reason the rest was refused."""
    cdef Py_ssize_t n = data.shape[0], off = offset, end
    cdef int64_t expected = first_seq, length
    cdef uint32_t crc
    cdef int why = ST_OK
    cdef int64_t count = 0
    # a record is at least 16 bytes, which bounds how many there can be
    spans = np.empty(((n - off) // 16 + 1, 2), dtype=np.int64)
    cdef int64_t[:, ::1] out = spans
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
            if _crc32(&data[off + 8], length) != crc:
                why = ST_BAD_CRC
                break
            if <int64_t>_le(&data[off + 8], 8) != expected:
                why = ST_BAD_SEQ
                break
            out[count, 0] = off + 16
            out[count, 1] = end
            count += 1
            expected += 1
            off = end
    return spans[:count], off, why


def write_all(int fd, const unsigned char[::1] data, bint sync):
    """Writes all of data to fd and, if sync, fsyncs it, in one call without the GIL (the
    journal's flusher thread then needs the GIL once per commit, not once per system call)."""
    cdef Py_ssize_t done = 0, n = data.shape[0]
    cdef ssize_t wrote = 0
    cdef int err = 0
    with nogil:
        while done < n:
            wrote = write(fd, &data[done], n - done)
            if wrote < 0:
                if errno == EINTR:
                    continue
                err = errno
                break
            done += wrote
        if err == 0 and sync and fsync(fd) != 0:
            err = errno
    if err:
        raise OSError(err, strerror(err).decode())


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
