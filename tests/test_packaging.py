"""Packaging: what the sdist carries, and what `import perpcore` says without built extensions."""
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

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
    for pattern in ("ext/perpcore/_*.pyx", "ext/perpcore/_*.pxd", "perpcore/*.py", "perpcore/py.typed",
                    "tests/*.py", "bench/*.py"):
        matched = {path.relative_to(ROOT).as_posix() for path in ROOT.glob(pattern)}
        assert matched, pattern
        needed |= matched
    assert needed - names == set()
    assert [name for name in names if name.endswith((".c", ".so", ".o", ".pyc", ".html"))] == []
