# Stage 1, the boundary: see perpcore._validate.pxd. The schema is read once from the message
# classes, so a field's range is written in one place (perpcore.messages) and the msgpack decoder,
# the JSON schema and this check all enforce the same one.
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.object cimport Py_TYPE
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM
from cpython.unicode cimport PyUnicode_CheckExact, PyUnicode_GET_LENGTH
from libc.stdlib cimport free, malloc

import msgspec
import msgspec.inspect as mi

from perpcore import messages as m
from perpcore.errors import RejectCode

cdef extern from "Python.h":
    # the UTF-8 form is cached on the string; it fails on a lone surrogate, which no wire can carry
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    bint PyUnicode_IS_ASCII(object)

cdef object MALFORMED = RejectCode.MALFORMED
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


cdef class Schema:
    """A command class's field checks, in field order (the order of astuple), also as a C array
    for the pass of a command every field of which is fine."""

    def __cinit__(self, cls):
        self.fields = tuple(FieldCheck(cls.__name__, field) for field in mi.type_info(cls).fields)
        self.n = len(self.fields)
        self.checks = <Check*>malloc(self.n * sizeof(Check))
        if self.checks == NULL:
            raise MemoryError()
        cdef FieldCheck f
        for i, f in enumerate(self.fields):
            # the pointers are borrowed from the FieldChecks, which self.fields keeps alive
            self.checks[i] = Check(f.kind, f.lo, f.hi, f.max_len, <PyObject*>f.enum)

    def __dealloc__(self):
        free(self.checks)


cdef inline bint plainly_fine(const Check* c, object value):
    """A quick yes for the common values (exact ints in range, bools, ASCII text, enum members);
    False means "ask FieldCheck.refuse", which decides."""
    cdef int overflow
    cdef long long x
    if c.kind == K_INT:
        if not PyLong_CheckExact(value):
            return False
        x = PyLong_AsLongLongAndOverflow(value, &overflow)
        return not overflow and c.lo <= x <= c.hi
    if c.kind == K_BOOL:
        return value is True or value is False
    if c.kind == K_TEXT:
        return PyUnicode_CheckExact(value) and PyUnicode_IS_ASCII(value) \
            and PyUnicode_GET_LENGTH(value) <= c.max_len
    return <PyObject*>Py_TYPE(value) == c.enum


# command class -> its Schema
cdef dict SCHEMA = {cls: Schema(cls) for cls in m._all_subclasses(m.Command)}
# (command class, field name) -> its check
cdef dict FIELDS = {(cls, check.name.partition(".")[2]): check
                    for cls, schema in SCHEMA.items() for check in (<Schema>schema).fields}


cdef tuple fields_of(cmd):
    return astuple(cmd) if type(cmd) in SCHEMA else None


cdef tuple refusal(cmd, tuple values):
    found = SCHEMA.get(type(cmd))
    if found is None:
        return RejectCode.UNKNOWN_COMMAND, f"not a command: {type(cmd).__name__}"
    cdef Schema schema = <Schema>found
    cdef Py_ssize_t i
    cdef str why
    for i in range(schema.n):
        value = <object>PyTuple_GET_ITEM(values, i)
        if not plainly_fine(&schema.checks[i], value):
            why = (<FieldCheck>schema.fields[i]).refuse(value)
            if why is not None:
                return MALFORMED, why
    return None


def check(cmd):
    """None when `cmd` is a command whose every field is within its schema, else the
    (RejectCode, reason) the exchange refuses it with (before sequencing or journaling it)."""
    return refusal(cmd, fields_of(cmd))


def schema(cls) -> tuple:
    """The field checks of a command class, in field order."""
    return (<Schema>SCHEMA[cls]).fields


cdef object echo(cmd, str field, default):
    """A field of a refused command to repeat in its rejection: the value when it is within its
    schema (an out-of-range value could not even be encoded), else `default`."""
    check = FIELDS.get((type(cmd), field))
    if check is None:
        return default
    value = getattr(cmd, field)
    return value if (<FieldCheck>check).refuse(value) is None else default
