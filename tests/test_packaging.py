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


@pytest.mark.slow
def test_the_sdist_holds_what_a_build_needs_and_no_build_outputs(tmp_path):
    """Builds the sdist (not the wheel) from a copy of this tree, including whatever an in-place
    build left in it (the .c and .so files): the .pyx and .pxd, the build files, the tests and what
    they use, and none of the generated C or binaries."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".benchmarks",
        "bench-results"))
    done = subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation",
                           "--outdir", str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    (sdist,) = (tmp_path / "dist").glob("perpcore-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {Path(*Path(name).parts[1:]).as_posix() for name in tar.getnames()}
    needed = {"setup.py", "pyproject.toml", "MANIFEST.in", "README.md"}
    for pattern in ("ext/perpcore/_*.pyx", "ext/perpcore/_*.pxd", "perpcore/*.py",
                    "perpcore/py.typed", "tests/*.py", "bench/*.py"):
        matched = {path.relative_to(ROOT).as_posix() for path in ROOT.glob(pattern)}
        assert matched, pattern
        needed |= matched
    assert needed - names == set()
    assert [name for name in names if name.endswith((".c", ".so", ".o", ".pyc", ".html"))] == []


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
