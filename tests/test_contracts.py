"""Each Cython module's .pxd is its contract: a method a Cython class calls on itself, or on a layer
it holds typed as one of perpcore's Cython classes, is defined in that class's .pyx or declared in
a .pxd its module cimports, never one that only a Python subclass supplies (a hidden hook: the core
would then work only under that subclass, and no contract would say so)."""
import re
from pathlib import Path

import pytest

EXT = Path(__file__).resolve().parent.parent / "ext" / "perpcore"

DEFINED = re.compile(r"^\s*(?:async\s+)?(?:c?p?def)\s+(?:[\w.\[\]*]+\s+)*?(\w+)\s*\(", re.M)
DECLARED = re.compile(r"^\s*cdef\s+(?:public\s+|readonly\s+)?(?:[\w.\[\]*]+\s+)"
                      r"(\w+(?:\s*,\s*\w+)*)\s*(?:#.*)?$", re.M)
CIMPORTED = re.compile(r"^\s*from\s+perpcore\.(\w+)\s+cimport", re.M)
SELF_CALL = re.compile(r"\bself\.(\w+)\s*\(")
CLASS = re.compile(r"^cdef class (\w+)", re.M)
TYPED = re.compile(r"\bcdef\s+(?:readonly\s+|public\s+)?(\w+)\s+(\w+)")
CALL = re.compile(r"\b(\w+)\.(\w+)\s*\(")


def names_of(text: str) -> set[str]:
    """Methods defined and attributes declared in a Cython source or contract."""
    names = set(DEFINED.findall(text))
    for group in DECLARED.findall(text):
        names |= {name.strip() for name in group.split(",")}
    return names


def known_names(pyx: Path) -> set[str]:
    """What a module's classes define or declare, with the .pxd files it cimports (its bases)."""
    text = pyx.read_text()
    sources = [text, pyx.with_suffix(".pxd").read_text()]
    for module in CIMPORTED.findall(text + sources[1]):
        sources.append((pyx.parent / f"{module}.pxd").read_text())
    return set().union(*(names_of(s) for s in sources))


def undeclared_calls(pyx: Path) -> list[str]:
    known = known_names(pyx)
    return sorted({name for name in SELF_CALL.findall(pyx.read_text()) if name not in known})


def undeclared_layer_calls(pyx: Path) -> list[str]:
    """Calls on a name typed (in any .pyx or .pxd beside it) as one of the Cython classes, of a
    method that class's module neither defines nor declares."""
    ext = pyx.parent
    module_of = {cls: pxd.with_suffix(".pyx") for pxd in ext.glob("_*.pxd")
                 for cls in CLASS.findall(pxd.read_text())}
    typed: dict[str, set[str]] = {}
    for source in [*ext.glob("_*.pxd"), *ext.glob("_*.pyx")]:
        for cls, name in TYPED.findall(source.read_text()):
            if cls in module_of:
                typed.setdefault(name, set()).add(cls)
    return sorted({f"{name}.{method}" for name, method in CALL.findall(pyx.read_text())
                   if name in typed and not any(method in known_names(module_of[cls])
                                                for cls in typed[name])})


@pytest.mark.parametrize("pyx", sorted(EXT.glob("_*.pyx")), ids=lambda p: p.name)
def test_a_cython_class_calls_only_what_its_contracts_declare(pyx):
    assert pyx.with_suffix(".pxd").exists(), f"{pyx.name} has no .pxd beside it"
    assert undeclared_calls(pyx) == []


@pytest.mark.parametrize("pyx", sorted(EXT.glob("_*.pyx")), ids=lambda p: p.name)
def test_a_cython_class_calls_on_its_layers_only_what_their_contracts_declare(pyx):
    assert undeclared_layer_calls(pyx) == []


def test_the_check_finds_a_hook_only_a_subclass_defines(tmp_path):
    (tmp_path / "_x.pxd").write_text("cdef class Core:\n    cdef public object hooks\n"
                                     "    cdef int run(self) except -1\n")
    pyx = tmp_path / "_x.pyx"
    pyx.write_text("cdef class Core:\n    cdef int run(self) except -1:\n"
                   "        self.hooks()\n        self.after_run(1)\n        return self.run()\n")
    assert undeclared_calls(pyx) == ["after_run"]


def test_the_check_finds_a_layers_hook_only_its_subclass_defines(tmp_path):
    (tmp_path / "_core.pxd").write_text("cdef class Core:\n    cdef Layer layer\n"
                                        "    cdef int run(self) except -1\n")
    (tmp_path / "_core.pyx").write_text("cdef class Core:\n    cdef int run(self) except -1:\n"
                                        "        self.layer.settle(1)\n"
                                        "        self.layer.after_settle(1)\n        return 0\n")
    (tmp_path / "_layer.pxd").write_text("cdef class Layer:\n    cpdef settle(self, x)\n")
    (tmp_path / "_layer.pyx").write_text("cdef class Layer:\n    cpdef settle(self, x):\n"
                                         "        return x\n")
    assert undeclared_layer_calls(tmp_path / "_core.pyx") == ["layer.after_settle"]
