"""The import graph of perpcore: one way, errors at the bottom.

Every import between perpcore's modules is read from the sources (Python modules by their syntax
tree, Cython modules and contracts by their import and cimport lines), nested imports included, so
that a deferred import cannot hide a cycle."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "perpcore"
EXT = ROOT / "ext" / "perpcore"
CYTHON_IMPORT = re.compile(r"^\s*from\s+(perpcore(?:\.\w+)*)\s+c?import\s+\(?([\w\s,]+)", re.M)
CYTHON_PLAIN = re.compile(r"^\s*c?import\s+(perpcore(?:\.\w+)*)", re.M)


def modules() -> set[str]:
    names = {f"perpcore.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    names |= {f"perpcore.{p.stem}" for p in EXT.glob("_*.pyx")}
    return names | {"perpcore"}


def targets(module: str, names: list[str], known: set[str]) -> set[str]:
    """What `from module import names` loads: the named submodules, else the module itself."""
    out = set()
    for name in names:
        sub = f"{module}.{name}"
        out.add(sub if sub in known else module)
    return out


def python_imports(path: Path, known: set[str]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "perpcore"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "perpcore":
            out |= targets(node.module, [a.name for a in node.names], known)
    return out


def cython_imports(paths: list[Path], known: set[str]) -> set[str]:
    out = set()
    for path in paths:
        text = path.read_text()
        for module, names in CYTHON_IMPORT.findall(text):
            words = [w.split()[0] for w in names.replace("\n", " ").split(",") if w.strip()]
            out |= targets(module, words, known)
        out |= set(CYTHON_PLAIN.findall(text))
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name in sorted(known):
        stem = "__init__" if name == "perpcore" else name.split(".")[1]
        py = PACKAGE / f"{stem}.py"
        if py.exists():
            found = python_imports(py, known)
        else:
            found = cython_imports([EXT / f"{stem}.pyx", EXT / f"{stem}.pxd"], known)
        edges[name] = {t for t in found if t in known and t != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}          # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_is_read_from_every_module():
    edges = graph()
    # a sample of the edges the walker must see, Python and Cython, nested included
    assert "perpcore._exchange" in edges["perpcore.exchange"]
    assert "perpcore._book" in edges["perpcore._exchange"]          # a cimport
    assert "perpcore.replay" in edges["perpcore.cli"]               # inside a function


def test_perpcore_has_no_import_cycle():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_the_walker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_errors_are_at_the_bottom():
    """errors imports no other module of perpcore, and every refusal comes from it."""
    edges = graph()
    assert edges["perpcore.errors"] == set()
    from perpcore import errors, messages
    assert messages.RejectCode is errors.RejectCode
