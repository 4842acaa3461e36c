# The contract of ext/perpcore/_validate.pyx (the extension perpcore._validate): stage 1, the boundary. Every
# field of a command is checked by type and range against the schema perpcore.messages declares
# (msgspec constraints: Id, Int64, Time, Text, the enums, bool) before the command is sequenced,
# journaled or applied. A refusal is a (RejectCode, reason) pair, never an exception.

from cpython.object cimport PyTypeObject

cdef enum:
    K_INT = 0
    K_BOOL = 1
    K_TEXT = 2
    K_ENUM = 3

# a field's check in C, for the quick pass (FieldCheck's fields), and where a command keeps it
cdef struct Check:
    int kind
    long long lo, hi
    Py_ssize_t max_len
    PyTypeObject* plain                 # the type of its plain values: int, bool, str or the enum
    Py_ssize_t offset                   # of the field's slot in the instance
    Py_ssize_t min_size, max_size       # the int sizes surely within [lo, hi] (sizes_within)

cdef class FieldCheck:
    cdef readonly str name
    cdef readonly int kind              # K_INT, K_BOOL, K_TEXT or K_ENUM
    cdef readonly long long lo, hi      # an integer's range (K_INT)
    cdef readonly Py_ssize_t max_len    # a text's length in characters (K_TEXT)
    cdef readonly object enum           # the IntEnum class (K_ENUM)
    cdef readonly frozenset values      # its members' values (K_ENUM)

    cdef str refuse(self, value)        # why value is not of this field (None: it is)

cdef class Schema:
    cdef readonly tuple fields          # a FieldCheck per field, in field order
    cdef Check* checks                  # the same, in C
    cdef Py_ssize_t n
    cdef tuple spare                    # fields_of's last tuple, refilled once no one holds it

# A command's fields in order (msgspec's astuple) once every one is within its schema: the
# boundary's one pass, whose tuple the stages after it read; None for an object that is not a
# command or has a field outside its schema (refusal says why)
cdef tuple fields_of(cmd)
# Why cmd, whose fields_of is None, is refused: (RejectCode, reason); an object that is not a
# command is UNKNOWN_COMMAND
cdef tuple refusal(cmd)

# a field of a refused command to repeat in its rejection: its value if within its schema, else
# default (also when the command has no such field)
cdef object echo(cmd, str field, default)

# Where an instance of a msgspec Struct class keeps a field: its object slot's offset (TypeError
# for a field not kept in one), for the stages that read a field without an attribute lookup
cdef Py_ssize_t slot_offset(cls, str name) except -1
