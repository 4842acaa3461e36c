# Stage 1, the boundary: see perpcore._validate.pxd. The schema is read once from the message
# classes, so a field's range is written in one place (perpcore.messages) and the msgpack decoder,
# the JSON schema and this check all enforce the same one.
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyTypeObject
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_GET_LENGTH
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

import sys
from types import MemberDescriptorType

import msgspec
import msgspec.inspect as mi

from perpcore import messages as m
from perpcore.errors import RejectCode

cdef extern from "Python.h":
    # the UTF-8 form is cached on the string; it fails on a lone surrogate, which no wire can carry
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    # on borrowed pointers, so the pass over a command's fields takes no reference
    PyTypeObject* type_of "Py_TYPE"(PyObject*)
    bint is_ascii "PyUnicode_IS_ASCII"(PyObject*)
    Py_ssize_t text_length "PyUnicode_GET_LENGTH"(PyObject*)
    # a slot's member descriptor: where the instance keeps that field (msgspec reads a Struct's
    # fields at the same offsets, taken from the same members)
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member

cdef extern from "structmember.h":
    int T_OBJECT_EX

cdef extern from *:
    """
    /* 1 when v, an exact int, is within [lo, hi] by its size alone: before 3.12 an int's
       ob_size is its count of digits, signed, and every int whose size is in [min_size,
       max_size] is within the range (Schema works the sizes out); from 3.12 a compact int's
       value is at hand. 0: ask PyLong_AsLongLongAndOverflow. */
    static inline int perpcore_int_plainly_within(PyObject *v, Py_ssize_t min_size,
                                                  Py_ssize_t max_size, long long lo,
                                                  long long hi) {
    #if PY_VERSION_HEX < 0x030C0000
        Py_ssize_t size = Py_SIZE(v);
        (void)lo; (void)hi;
        return min_size <= size && size <= max_size;
    #else
        (void)min_size; (void)max_size;
        if (!PyUnstable_Long_IsCompact((PyLongObject *)v)) return 0;
        Py_ssize_t x = PyUnstable_Long_CompactValue((PyLongObject *)v);
        return lo <= x && x <= hi;
    #endif
    }
    """
    bint int_plainly_within "perpcore_int_plainly_within"(PyObject* v, Py_ssize_t min_size,
                                                          Py_ssize_t max_size, long long lo,
                                                          long long hi)

cdef extern from *:
    """
    /* Refilling a tuple no one else holds (as zip does) needs the GIL to keep other threads
       out, and before 3.14 a tuple caches no hash that a refill would leave stale. */
    #if defined(Py_GIL_DISABLED) || PY_VERSION_HEX >= 0x030E0000
    #define PERPCORE_REFILL_TUPLES 0
    #else
    #define PERPCORE_REFILL_TUPLES 1
    #endif
    """
    bint REFILL_TUPLES "PERPCORE_REFILL_TUPLES"
    Py_ssize_t refcount "Py_REFCNT"(PyObject*)
    void incref "Py_INCREF"(PyObject*)
    void decref "Py_DECREF"(PyObject*)
    PyObject* tuple_item "PyTuple_GET_ITEM"(PyObject*, Py_ssize_t)
    void set_tuple_item "PyTuple_SET_ITEM"(PyObject*, Py_ssize_t, PyObject*)
    bint gc_is_tracked "PyObject_GC_IsTracked"(PyObject*)
    void gc_track "PyObject_GC_Track"(PyObject*)

cdef object MALFORMED = RejectCode.MALFORMED
cdef object UNKNOWN_COMMAND = RejectCode.UNKNOWN_COMMAND
cdef object astuple = msgspec.structs.astuple


cdef class FieldCheck:

    def __init__(self, str owner, field):
        t = field.type
        self.name = f"{owner}.{field.name}"
        if isinstance(t, mi.IntType) and t.ge is not None and t.le is not None \
                and t.gt is None and t.lt is None:
            self.kind, self.lo, self.hi = K_INT, t.ge, t.le
        elif isinstance(t, mi.BoolType):
            self.kind = K_BOOL
        elif isinstance(t, mi.StrType) and t.max_length is not None:
            self.kind, self.max_len = K_TEXT, t.max_length
        elif isinstance(t, mi.EnumType):
            self.kind, self.enum = K_ENUM, t.cls
            self.values = frozenset(int(member) for member in t.cls)
        else:
            # every command field must have a bounded type: an unbounded one is a schema bug
            raise TypeError(f"{self.name}: no boundary check for {t!r}")

    cdef str refuse(self, value):
        """Why `value` is not of this field (None: it is)."""
        cdef int overflow
        cdef long long x
        cdef Py_ssize_t size
        kind = type(value)
        if self.kind == K_INT:
            if kind is not int:     # bool, float, enum members and int subclasses included
                return f"{self.name} must be an integer, not {kind.__name__}"
            x = PyLong_AsLongLongAndOverflow(value, &overflow)
            if overflow or not self.lo <= x <= self.hi:
                return f"{self.name} outside [{self.lo}, {self.hi}]"
        elif self.kind == K_BOOL:
            if kind is not bool:
                return f"{self.name} must be a bool, not {kind.__name__}"
        elif self.kind == K_TEXT:
            if kind is not str:
                return f"{self.name} must be a string, not {kind.__name__}"
            if PyUnicode_GET_LENGTH(value) > self.max_len:
                return f"{self.name} longer than {self.max_len} characters"
            try:
                PyUnicode_AsUTF8AndSize(value, &size)
            except UnicodeError:
                return f"{self.name} is not valid text"
        elif kind is not self.enum and not (kind is int and value in self.values):
            return f"{self.name} must be one of {self.enum.__name__}'s values"
        return None


cdef Py_ssize_t slot_offset(cls, str name) except -1:
    """Where an instance of `cls` keeps field `name`: its slot's offset."""
    for klass in cls.__mro__:
        found = klass.__dict__.get(name)
        if found is not None:
            break
    if type(found) is not MemberDescriptorType or not issubclass(cls, found.__objclass__):
        raise TypeError(f"{cls.__name__}.{name} is not kept in a slot")
    cdef PyMemberDef* member = (<PyMemberDescrObject*>found).d_member
    # an object slot, which reads NULL when unset (fields_of then leaves it to refusal)
    if member.type != T_OBJECT_EX:
        raise TypeError(f"{cls.__name__}.{name}'s slot is not an object")
    return member.offset


cdef tuple sizes_within(lo, hi):
    """The signed digit counts (an int's ob_size before Python 3.12) every int of which is
    within [lo, hi], as (min, max); (1, 0) for none."""
    bits = sys.int_info.bits_per_digit
    sizes = [0] if lo <= 0 <= hi else []
    for digits in range(1, 5):          # 5 digits (75 bits or more) pass any int64 range
        least, most = 1 << bits * (digits - 1), (1 << bits * digits) - 1
        if lo <= least and most <= hi:
            sizes.append(digits)
        if lo <= -most and -least <= hi:
            sizes.append(-digits)
    return (min(sizes), max(sizes)) if sizes else (1, 0)


cdef class Schema:
    """A command class's field checks, in field order (__struct_fields__), also as a C array
    for the pass of a command every field of which is fine."""

    def __cinit__(self, cls):
        self.fields = tuple(FieldCheck(cls.__name__, field) for field in mi.type_info(cls).fields)
        self.n = len(self.fields)
        self.checks = <Check*>malloc(self.n * sizeof(Check))
        if self.checks == NULL:
            raise MemoryError()
        cdef FieldCheck f
        for i, f in enumerate(self.fields):
            # borrowed: builtins, or the enum its FieldCheck (in self.fields) keeps alive
            plain = {K_INT: int, K_BOOL: bool, K_TEXT: str, K_ENUM: f.enum}[f.kind]
            min_size, max_size = sizes_within(f.lo, f.hi) if f.kind == K_INT else (1, 0)
            self.checks[i] = Check(f.kind, f.lo, f.hi, f.max_len, <PyTypeObject*>plain,
                                   slot_offset(cls, cls.__struct_fields__[i]), min_size, max_size)

    def __dealloc__(self):
        free(self.checks)


cdef inline bint plainly_fine(const Check* c, PyObject* value) noexcept:
    """A quick yes for the common values (exact ints in range, bools, ASCII text, enum members);
    False means "ask FieldCheck.refuse", which decides."""
    cdef int overflow = 0
    cdef long long x
    if type_of(value) != c.plain:
        return False
    if c.kind == K_INT:
        if int_plainly_within(value, c.min_size, c.max_size, c.lo, c.hi):
            return True
        x = PyLong_AsLongLongAndOverflow(<object>value, &overflow)
        return not overflow and c.lo <= x <= c.hi
    if c.kind == K_TEXT:
        return is_ascii(value) and text_length(value) <= c.max_len
    return True             # a bool, or a member of the enum


# command class -> its Schema
cdef dict SCHEMA = {cls: Schema(cls) for cls in m._all_subclasses(m.Command)}
# (command class, field name) -> its check
cdef dict FIELDS = {(cls, check.name.partition(".")[2]): check
                    for cls, schema in SCHEMA.items() for check in (<Schema>schema).fields}

# The same schemas by the address of their class, open addressing: finding a command's is a
# multiply and (nearly always) one compare, where a dict lookup hashes and probes. The Schemas
# are borrowed: SCHEMA keeps them.
cdef struct Entry:
    PyTypeObject* cls
    PyObject* schema
cdef enum:
    TABLE_BITS = 6
    TABLE_SIZE = 1 << TABLE_BITS
cdef Entry TABLE[TABLE_SIZE]


cdef inline Py_ssize_t home(PyTypeObject* cls) noexcept:
    # Fibonacci hashing of the address: its high bits
    return <Py_ssize_t>((<uintptr_t>cls * <uintptr_t>0x9E3779B97F4A7C15ULL) >> (64 - TABLE_BITS))


cdef inline PyObject* schema_of(PyTypeObject* cls) noexcept:
    """A command class's Schema (NULL: not a command class)."""
    cdef Py_ssize_t i = home(cls)
    while TABLE[i].cls != NULL:
        if TABLE[i].cls == cls:
            return TABLE[i].schema
        i = (i + 1) & (TABLE_SIZE - 1)
    return NULL


def _fill_table():
    # at most half full, so a miss ends at an empty entry soon
    assert sizeof(uintptr_t) == 8 and 2 * len(SCHEMA) <= TABLE_SIZE
    memset(TABLE, 0, sizeof(TABLE))
    cdef Py_ssize_t i
    for cls, schema in SCHEMA.items():
        i = home(<PyTypeObject*>cls)
        while TABLE[i].cls != NULL:
            i = (i + 1) & (TABLE_SIZE - 1)
        TABLE[i] = Entry(<PyTypeObject*>cls, <PyObject*>schema)
_fill_table()
del _fill_table


cdef tuple fields_of(cmd):
    cdef PyObject* found = schema_of(type_of(<PyObject*>cmd))
    if found == NULL:
        return None
    cdef Schema schema = <Schema>found
    cdef const Check* c
    cdef PyObject* value
    cdef Py_ssize_t i
    for i in range(schema.n):
        c = &schema.checks[i]
        value = (<PyObject**>(<char*><PyObject*>cmd + c.offset))[0]
        if value == NULL or not plainly_fine(c, value) \
                and (<FieldCheck>schema.fields[i]).refuse(<object>value) is not None:
            return None
    # every field is fine: they are the tuple (nothing above ran Python code that could
    # change a field in between)
    cdef PyObject* spare = <PyObject*>schema.spare
    cdef PyObject* old
    if REFILL_TUPLES and refcount(spare) == 1:
        # the last command's tuple, which no one holds any more, refilled: no allocation and
        # no deallocation per command. Its old items are fields that passed, plain ints, str,
        # bools and enum members, whose release runs no Python code.
        for i in range(schema.n):
            value = (<PyObject**>(<char*><PyObject*>cmd + schema.checks[i].offset))[0]
            old = tuple_item(spare, i)
            incref(value)
            set_tuple_item(spare, i, value)
            decref(old)
        # the collector untracks a tuple of atoms; enum members are not atoms
        if not gc_is_tracked(spare):
            gc_track(spare)
        return <tuple>spare
    cdef tuple values = PyTuple_New(schema.n)
    for i in range(schema.n):
        value = (<PyObject**>(<char*><PyObject*>cmd + schema.checks[i].offset))[0]
        incref(value)
        set_tuple_item(<PyObject*>values, i, value)
    schema.spare = values
    return values


cdef tuple refusal(cmd):
    found = SCHEMA.get(type(cmd))
    if found is None:
        return UNKNOWN_COMMAND, f"not a command: {type(cmd).__name__}"
    cdef FieldCheck check
    # astuple raises on a field left unset, as a command's fields are read nowhere else
    for check, value in zip((<Schema>found).fields, astuple(cmd)):
        why = check.refuse(value)
        if why is not None:
            return MALFORMED, why
    raise AssertionError(f"{type(cmd).__name__} refused with every field within its schema")


def check(cmd):
    """None when `cmd` is a command whose every field is within its schema, else the
    (RejectCode, reason) the exchange refuses it with (before sequencing or journaling it)."""
    return None if fields_of(cmd) is not None else refusal(cmd)


def schema(cls) -> tuple:
    """The field checks of a command class, in field order."""
    return (<Schema>SCHEMA[cls]).fields


def _fields_of(cmd):
    """fields_of, for tests: the fields of a command within its schema, else None."""
    return fields_of(cmd)


cdef object echo(cmd, str field, default):
    """A field of a refused command to repeat in its rejection: the value when it is within its
    schema (an out-of-range value could not even be encoded), else `default`."""
    check = FIELDS.get((type(cmd), field))
    if check is None:
        return default
    value = getattr(cmd, field)
    return value if (<FieldCheck>check).refuse(value) is None else default
