"""Packaging: what the sdist carries, what `import perpcore` says without built extensions, what
a plain install pulls in (the engine's needs; the command line's are the cli extra)."""
import email.parser
import importlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:     # Python 3.10
    import tomli as tomllib

import pytest

import perpcore

ROOT = Path(__file__).resolve().parents[1]
EXTENSIONS = sorted(pyx.stem for pyx in (ROOT / "ext" / "perpcore").glob("_*.pyx"))


def _import_perpcore_from(tree):
    # -S: no site-packages, so no editable install's finder can supply the extensions from elsewhere
    # (the check runs before perpcore imports anything outside the standard library)
    return subprocess.run([sys.executable, "-S", "-c", "import perpcore"], cwd=tree,
                          capture_output=True, text=True, timeout=60)


def test_the_import_check_knows_every_extension():
    assert sorted(perpcore._EXTENSIONS) == EXTENSIONS


def test_an_unbuilt_source_tree_says_what_is_wrong_and_what_to_do(tmp_path):
    tree = tmp_path / "checkout"
    (tree / "perpcore").mkdir(parents=True)
    for module in (ROOT / "perpcore").glob("*.py"):
        shutil.copy(module, tree / "perpcore")
    shutil.copy(ROOT / "setup.py", tree)

    done = _import_perpcore_from(tree)
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("ImportError: perpcore's compiled extensions (" + ", ".join(EXTENSIONS))
    assert str((tree / "perpcore").resolve()) in error
    assert "source tree" in error and "`pip install -e .`" in error
    assert "circular" not in done.stderr

    # outside a source tree the remedy is a reinstall, not an editable build
    (tree / "setup.py").unlink()
    error = _import_perpcore_from(tree).stderr.strip().splitlines()[-1]
    assert "reinstall perpcore" in error and "pip install -e" not in error


@pytest.fixture(scope="session")
def sdist(tmp_path_factory) -> Path:
    """The sdist of a copy of this tree, including whatever an in-place build left in it (the .c
    and .so files), built with this environment's build backend (no index needed)."""
    tmp = tmp_path_factory.mktemp("sdist")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".benchmarks",
        "bench-results"))
    done = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation",
                           "--outdir", str(tmp / "dist"), str(source)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = (tmp / "dist").glob("perpcore-*.tar.gz")
    return path


@pytest.mark.slow
def test_the_sdist_holds_what_a_build_needs_and_no_build_outputs(sdist):
    """The .pyx, .pxd and .pyi, the build files, the tests and what they use, and none of the
    generated C or binaries."""
    with tarfile.open(sdist) as tar:
        names = {Path(*Path(name).parts[1:]).as_posix() for name in tar.getnames()}
    needed = {"setup.py", "pyproject.toml", "MANIFEST.in", "README.md"}
    for pattern in ("ext/perpcore/_*.pyx", "ext/perpcore/_*.pxd", "perpcore/*.py",
                    "perpcore/_*.pyi", "perpcore/py.typed", "tests/*.py", "bench/*.py"):
        matched = {path.relative_to(ROOT).as_posix() for path in ROOT.glob(pattern)}
        assert matched, pattern
        needed |= matched
    assert needed - names == set()
    assert [name for name in names if name.endswith((".c", ".so", ".o", ".pyc", ".html"))] == []


# ---- wheels built from the sdist in fresh environments -----------------------------------------

def _index_unreachable(python: str, where: Path) -> str | None:
    """Why pip cannot fetch the build requirements (an isolated build needs them), or None."""
    done = subprocess.run([python, "-m", "pip", "download", "--no-deps", "--dest", str(where),
                           "setuptools>=77", "Cython>=3.0"],
                          capture_output=True, text=True, timeout=300, env=ISOLATED)
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
    return f"no pip index reachable for an isolated build: {lines[-1]}"


# the environment of a process in a fresh venv: nothing from this one's import path
ISOLATED = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


class FreshEnv:
    """A new virtual environment of one interpreter, with perpcore's wheel built there from the
    sdist (pip's isolated build: setuptools and Cython from the index) and installed."""

    def __init__(self, base: Path, python: str, sdist: Path, extras: str = ""):
        self.dir = base / "venv"
        subprocess.run([python, "-m", "venv", str(self.dir)], check=True, timeout=300,
                       env=ISOLATED)
        self.python = str(self.dir / "bin" / "python")
        why = _index_unreachable(self.python, base / "probe")
        if why:
            pytest.skip(why)
        self.pip("wheel", "--no-deps", "--wheel-dir", str(base / "wheels"), str(sdist))
        (self.wheel,) = (base / "wheels").glob("perpcore-*.whl")
        self.pip("install", f"perpcore{extras} @ {self.wheel.as_uri()}")

    def pip(self, *args: str) -> None:
        done = subprocess.run([self.python, "-m", "pip", "--disable-pip-version-check", *args],
                              capture_output=True, text=True, timeout=900, env=ISOLATED)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def run(self, code: str, cwd: Path) -> str:
        done = subprocess.run([self.python, "-c", code], cwd=cwd, capture_output=True,
                              text=True, timeout=300, env=ISOLATED)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="session")
def wheel_env(tmp_path_factory, sdist) -> FreshEnv:
    """This interpreter's fresh environment with the wheel built from the sdist, and the command
    line's extra."""
    return FreshEnv(tmp_path_factory.mktemp("wheel"), sys.executable, sdist, "[cli]")


SUITE_PART = ["test_book.py", "test_exchange.py", "test_journal.py", "test_snapshot.py",
              "test_simulate.py", "test_store_cli.py", "test_config.py", "test_cli.py"]


@pytest.mark.slow
def test_the_wheel_built_from_the_sdist_passes_the_tests_installed(wheel_env, sdist, tmp_path):
    """Part of the suite, taken from the sdist, run against the installed wheel (from a directory
    without the sources, so that nothing but the install can be imported)."""
    where = wheel_env.run("import perpcore, sys; print(perpcore.__file__)", tmp_path)
    assert where.startswith(str(wheel_env.dir)), where
    wheel_env.pip("install", "pytest>=8.0", "hypothesis>=6.100")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.glob("perpcore-*")
    suite = tmp_path / "suite"
    suite.mkdir()
    for name in ("tests", "docs", "pyproject.toml"):
        (suite / name).symlink_to(unpacked / name)
    done = subprocess.run([wheel_env.python, "-m", "pytest", "-p", "no:cacheprovider",
                           *[f"tests/{name}" for name in SUITE_PART]],
                          cwd=suite, capture_output=True, text=True, timeout=900, env=ISOLATED)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) > 300, done.stdout[-500:]


def _wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.mark.slow
def test_the_wheel_ships_extensions_contracts_stubs_and_no_dev_tools(wheel_env):
    names = _wheel_names(wheel_env.wheel)
    tag = "cpython-%d%d" % sys.version_info[:2]
    for name in EXTENSIONS:
        assert [n for n in names if re.fullmatch(rf"perpcore/{name}\.{tag}-.*\.so", n)], name
        assert f"perpcore/{name}.pxd" in names and f"perpcore/{name}.pyi" in names, name
    assert "perpcore/py.typed" in names
    modules = {f"perpcore/{p.relative_to(ROOT / 'perpcore').as_posix()}"
               for p in (ROOT / "perpcore").rglob("*.py")}
    assert modules <= names
    assert not [n for n in names if n.endswith((".pyx", ".c", ".html"))]
    # the benchmark's development tools and the tests' reference book stay out of the package
    assert not {"perpcore/refbook.py", "perpcore/figures.py"} & names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


STUB_SNIPPET = """
from perpcore._book import BUY, OrderBook

book = OrderBook()
status: int = book.place(1, 7, BUY, 100, 5)
best: int | None = book.best_bid()
book.place("1", 7, BUY, 100, 5)
name: str = book.cancel(1)
"""
STUB_ERRORS = [
    'snippet.py:7: error: Argument 1 to "place" of "OrderBook" has incompatible type "str"; '
    'expected "int"  [arg-type]',
    'snippet.py:8: error: Incompatible types in assignment (expression has type "int", variable '
    'has type "str")  [assignment]',
]


def _mypy_snippet(tmp_path: Path, *options: str, env: dict | None = None) -> list[str]:
    pytest.importorskip("mypy", reason="mypy is not installed: pip install -e '.[test]'")
    (tmp_path / "snippet.py").write_text(STUB_SNIPPET)
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", os.devnull,
                           "--config-file", "", "--follow-imports", "silent", *options,
                           "snippet.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    return done.stdout.splitlines()[:-1]


def test_mypy_reads_the_stubs_of_the_extensions(tmp_path):
    """The stubs type the extensions' API: a wrong argument and a wrong use of a result are
    found (without stubs both are Any, and mypy finds nothing)."""
    assert _mypy_snippet(tmp_path, env={**os.environ, "MYPYPATH": str(ROOT)}) == STUB_ERRORS


@pytest.mark.slow
def test_an_installed_perpcore_is_typed(wheel_env, tmp_path):
    """PEP 561: mypy reads the installed package (py.typed) and its stubs."""
    assert _mypy_snippet(tmp_path, "--python-executable", wheel_env.python,
                         env=ISOLATED) == STUB_ERRORS


# Cython's own module and class attributes, not perpcore's API
STUBTEST_ALLOWLIST = r"""
perpcore\._\w+\.(\w+\.)?__(reduce|setstate)_cython__
perpcore\._\w+\.__test__
perpcore\._\w+\.__pyx_capi__
"""


def test_the_stubs_match_the_compiled_modules(tmp_path):
    """mypy's stubtest imports each built extension and compares it with its stub: every public
    name, class, method, argument name, default and kind, and each constant's type."""
    pytest.importorskip("mypy", reason="mypy is not installed: pip install -e '.[test]'")
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text(STUBTEST_ALLOWLIST)
    # PEP 800 disjoint bases need typing_extensions' newest stubs: not for older mypy releases
    helps = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--help"],
                           capture_output=True, text=True, timeout=120).stdout
    disjoint = ["--ignore-disjoint-bases"] if "--ignore-disjoint-bases" in helps else []
    done = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--allowlist", str(allowlist),
                           *disjoint, *[f"perpcore.{name}" for name in EXTENSIONS]],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr
    assert f"Success: no issues found in {len(EXTENSIONS)} modules" in done.stdout
    assert sorted(p.stem for p in (ROOT / "perpcore").glob("_*.pyi")) == EXTENSIONS


# ---- the build on other Python versions ---------------------------------------------------------

SIMULATE_HASH = ("from perpcore import simulate; ex, report = simulate.run(steps=3000, seed=5); "
                 "print(ex.state_hash(), ex.seq)")


def _interpreter(version: str) -> str | None:
    """A Python of that version that runs: python3.X on PATH (not a pyenv shim without it), else
    one of pyenv's."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"), "versions")
    candidates = [shutil.which(f"python{version}"),
                  *map(str, sorted(pyenv.glob(f"{version}.*/bin/python"), reverse=True))]
    for python in filter(None, candidates):
        done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60, env=ISOLATED)
        if done.returncode == 0 and done.stdout.strip() == version:
            return python
    return None


# Besides the running one, the suite builds on the newest declared Python; CI adds the others
# (.ci/run: PERPCORE_OTHER_PYTHONS="3.10 3.12"), each build taking two to three minutes
OTHER_PYTHONS = os.environ.get("PERPCORE_OTHER_PYTHONS", "3.13").split()


@pytest.mark.slow
@pytest.mark.parametrize("version", OTHER_PYTHONS)
def test_another_python_builds_the_sdist_and_simulates_the_same_state(version, sdist,
                                                                       tmp_path):
    """The sdist builds into a wheel for another interpreter, installs (the engine's dependencies
    only) and runs a seeded session to the state hash this interpreter reaches."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        pytest.skip(f"Python {version} is the interpreter running the tests")
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} interpreter (python{version} on PATH, or pyenv's)")
    env = FreshEnv(tmp_path, python, sdist)
    assert f"cp{version.replace('.', '')}" in env.wheel.name
    theirs = env.run(SIMULATE_HASH, tmp_path)
    ours = subprocess.run([sys.executable, "-c", SIMULATE_HASH], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert ours.returncode == 0, ours.stderr
    assert theirs == ours.stdout


# ---- a lean runtime: the engine's dependencies, the command line's in the cli extra ------------

ENGINE = {"msgspec", "sortedcontainers", "tomli"}
CLI = {"click", "rich", "matplotlib", "hdrhistogram", "numpy"}


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    """The wheel's METADATA as the build backend writes it for this tree."""
    out = tmp_path_factory.mktemp("metadata")
    done = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                           "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = (out / done.stdout.split()[-1] / "METADATA").read_text()
    return email.parser.Parser().parsestr(text)


def _requirements(metadata) -> dict[str, set[str]]:
    """Distribution names per extra ("" for the plain install)."""
    out: dict[str, set[str]] = {}
    for line in metadata.get_all("Requires-Dist"):
        name = re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower()
        extra = re.search(r"""extra\s*==\s*["']([^"']+)""", line)
        out.setdefault(extra.group(1) if extra else "", set()).add(name)
    return out


def test_a_plain_install_pulls_only_what_the_engine_needs(metadata):
    requires = _requirements(metadata)
    assert requires[""] == ENGINE
    assert requires["cli"] == CLI
    assert "perpcore" in requires["test"]          # the tests run the command line too
    assert "tomli>=2.0; python_version < \"3.11\"" in metadata.get_all("Requires-Dist")


def test_the_engine_imports_nothing_of_the_cli_extra():
    code = ("import sys, perpcore; from perpcore import Exchange; from perpcore.snapshot import "
            "Store; import perpcore.replay, perpcore.stress, perpcore.simulate; "
            "print(sorted({m.split('.')[0] for m in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    loaded = set(eval(done.stdout))
    assert loaded & {"click", "rich", "matplotlib", "hdrh"} == set()


def test_the_build_needs_no_numpy():
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert not [r for r in build if r.startswith("numpy")]
    assert "numpy" not in (ROOT / "setup.py").read_text()
    assert not [p.name for p in (ROOT / "ext" / "perpcore").glob("*.p*")
                if re.search(r"^\s*cimport numpy|^\s*from numpy cimport", p.read_text(), re.M)]


def test_the_journal_needs_no_numpy(tmp_path):
    """The journal's C scan hands its record spans over as a memoryview."""
    from perpcore import _journal

    assert "numpy" not in (ROOT / "ext" / "perpcore" / "_journal.pyx").read_text()
    spans, end, why, _ = _journal.scan(b"", 0, 1, 1 << 20, 0)
    assert (type(spans), len(spans), spans.tolist(), end) == (memoryview, 0, [], 0)


def _engine_only(tmp_path) -> dict:
    """The environment of a perpcore installed without extras: the engine's libraries linked into
    a directory of their own (with -S, site-packages is left out: no numpy, no cli extra)."""
    libs = tmp_path / "libs"
    libs.mkdir()
    for name in ("msgspec", "sortedcontainers"):
        (libs / name).symlink_to(Path(importlib.import_module(name).__file__).parent)
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{libs}"}


def test_without_the_cli_extra_the_command_says_what_to_install(tmp_path):
    done = subprocess.run([sys.executable, "-S", "-c",
                           "from perpcore._entry import main; main()", "simulate"],
                          env=_engine_only(tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == ("Error: perpcore's command line needs the cli extra (click, rich, "
                           "matplotlib, hdrhistogram, numpy missing): pip install "
                           "'perpcore[cli]' (from a source tree: pip install '.[cli]')\n")


ENGINE_WITHOUT_NUMPY = """
import sys, tempfile
import perpcore
from perpcore import _book, simulate
from perpcore.replay import replay_journal
from perpcore.snapshot import Store
ex, _ = simulate.run(steps=300, seed=3)
with tempfile.TemporaryDirectory() as d:
    store = Store(d, perpcore.default_config())
    store.engine.submit(perpcore.messages.CreateAccount(account=1))
    store.close()
book = _book.OrderBook()
assert book.place(1, 1, _book.BUY, 100, 5) == _book.RESTING
try:
    book.process_batch(None)
except ImportError as e:
    print(e)
print(ex.seq, sorted(m for m in sys.modules if m.split(".")[0] == "numpy"))
"""


def test_the_engine_runs_without_numpy(tmp_path):
    """numpy is the batch entry point's (imported on its first use), not the engine's: a session,
    a store and the book's one-call API run where numpy cannot be imported, and the batch entry
    point says what to install."""
    done = subprocess.run([sys.executable, "-S", "-c", ENGINE_WITHOUT_NUMPY],
                          env=_engine_only(tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    why, last = done.stdout.splitlines()
    assert why == ("the order book's batch entry point takes numpy arrays, and numpy is not "
                   "installed: pip install numpy")
    assert last.endswith(" []") and int(last.split()[0]) > 300


def test_importing_perpcore_loads_no_numpy():
    code = "import sys, perpcore; print(sorted(m for m in sys.modules if m.startswith('numpy')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "[]", done.stderr


def test_the_script_is_the_guarded_entry_point():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"perpcore": "perpcore._entry:main"}


def test_the_readme_installs_the_cli_for_perpcore_simulate():
    block = (ROOT / "README.md").read_text().split("<!-- setup:begin -->")[1]
    commands = [line for line in block.split("<!-- setup:end -->")[0].splitlines()
                if line and not line.startswith("```")]
    assert len(commands) == 2
    assert commands[0].startswith("pip install '.[cli]' && perpcore simulate")
    assert commands[1].startswith("pip install -e '.[test]'")


def _elf_sections(path: Path) -> set[str]:
    """The section names of a 64-bit little-endian ELF file."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, path
    shoff = int.from_bytes(data[0x28:0x30], "little")
    size, count, names = (int.from_bytes(data[at:at + 2], "little") for at in (0x3A, 0x3C, 0x3E))
    headers = [data[shoff + i * size:shoff + (i + 1) * size] for i in range(count)]
    table = int.from_bytes(headers[names][0x18:0x20], "little")
    return {data[table + int.from_bytes(h[:4], "little"):].split(b"\0", 1)[0].decode()
            for h in headers}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the strip flag is for Linux")
@pytest.mark.skipif(os.environ.get("PERPCORE_DEBUG") == "1", reason="a debug build keeps symbols")
@pytest.mark.skipif(os.environ.get("PERPCORE_SYMBOLS") == "1",
                    reason="a build for profilers keeps symbols")
def test_release_extensions_are_stripped():
    """Release builds link with -s: no symbol table, no debug information (_clock was 231 KB)."""
    for name in EXTENSIONS:
        path = Path(importlib.import_module(f"perpcore.{name}").__file__)
        sections = _elf_sections(path)
        assert ".dynsym" in sections and not sections & {".symtab", ".debug_info"}, path
    clock = Path(importlib.import_module("perpcore._clock").__file__)
    assert clock.stat().st_size < 100_000
