"""Each Cython module's .pxd is its contract: a method a Cython class calls on itself is defined in
its .pyx or declared in a .pxd it cimports, never one that only a Python subclass supplies (a
hidden hook: the core would then work only under that subclass, and no contract would say so)."""
import re
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parent.parent / "ext" / "perpcore"

DEFINED = re.compile(r"^\s*(?:async\s+)?(?:c?p?def)\s+(?:[\w.\[\]*]+\s+)*?(\w+)\s*\(", re.M)
DECLARED = re.compile(r"^\s*cdef\s+(?:public\s+|readonly\s+)?(?:[\w.\[\]*]+\s+)"
                      r"(\w+(?:\s*,\s*\w+)*)\s*(?:#.*)?$", re.M)
CIMPORTED = re.compile(r"^\s*from\s+perpcore\.(\w+)\s+cimport", re.M)
SELF_CALL = re.compile(r"\bself\.(\w+)\s*\(")


def names_of(text: str) -> set[str]:
    """Methods defined and attributes declared in a Cython source or contract."""
    names = set(DEFINED.findall(text))
    for group in DECLARED.findall(text):
        names |= {name.strip() for name in group.split(",")}
    return names


def undeclared_calls(pyx: Path) -> list[str]:
    text = pyx.read_text()
    contract = pyx.with_suffix(".pxd")
    sources = [text, contract.read_text()]
    for module in CIMPORTED.findall(text + sources[1]):
        sources.append((EXT / f"{module}.pxd").read_text())
    known = set().union(*(names_of(s) for s in sources))
    return sorted({name for name in SELF_CALL.findall(text) if name not in known})


@pytest.mark.parametrize("pyx", sorted(EXT.glob("_*.pyx")), ids=lambda p: p.name)
def test_a_cython_class_calls_only_what_its_contracts_declare(pyx):
    assert pyx.with_suffix(".pxd").exists(), f"{pyx.name} has no .pxd beside it"
    assert undeclared_calls(pyx) == []


def test_the_check_finds_a_hook_only_a_subclass_defines(tmp_path):
    (tmp_path / "_x.pxd").write_text("cdef class Core:\n    cdef public object hooks\n"
                                     "    cdef int run(self) except -1\n")
    pyx = tmp_path / "_x.pyx"
    pyx.write_text("cdef class Core:\n    cdef int run(self) except -1:\n"
                   "        self.hooks()\n        self.after_run(1)\n        return self.run()\n")
    assert undeclared_calls(pyx) == ["after_run"]
