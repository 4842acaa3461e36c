"""Builds ext/perpcore/_<name>.pyx into the extension perpcore._<name>.

Each contract, ext/perpcore/_<name>.pxd, sits beside its .pyx: with include_path=["ext"] Cython
finds it under the module's qualified name, and other .pyx files `from perpcore._<name> cimport
...`.

The wheel ships each contract as perpcore/_<name>.pxd, the layout under which other projects
`cimport perpcore._<name>` against the installed package.

Cython's warnings are errors: a build that warns fails.

Release builds drop bounds/wraparound checks and are stripped of symbols (on Linux: -s, a tenth of
the size); PERPCORE_DEBUG=1 turns the checks back on, keeps the symbols, adds line tracing (for
coverage and profilers) and writes the annotated HTML next to each .pyx. PERPCORE_SYMBOLS=1 keeps
the symbols of a release build, for profilers that count a release build's instructions
(perf, valgrind callgrind).
"""
import os
import sys
from pathlib import Path

from Cython.Build import cythonize
from Cython.Compiler import Options
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

DEBUG = os.environ.get("PERPCORE_DEBUG") == "1"
Options.warning_errors = True

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "linetrace": DEBUG,
    "profile": DEBUG,
}
macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []
compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]
SYMBOLS = DEBUG or os.environ.get("PERPCORE_SYMBOLS") == "1"
link_args = ["-s"] if not SYMBOLS and sys.platform.startswith("linux") else []

extensions = [
    Extension(
        f"perpcore.{pyx.stem}",
        [str(pyx)],
        include_dirs=["ext"],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for pyx in sorted(Path("ext/perpcore").glob("_*.pyx"))
]


class build_py_with_contracts(build_py):
    def run(self):
        super().run()
        # like setuptools' own build_py: an editable install uses the source tree, contracts in ext/
        if self.editable_mode:
            return
        for pxd in sorted(Path("ext/perpcore").glob("_*.pxd")):
            target = Path(self.build_lib, "perpcore", pxd.name)
            self.copy_file(str(pxd), str(target))


setup(
    cmdclass={"build_py": build_py_with_contracts},
    ext_modules=cythonize(
        extensions,
        include_path=["ext"],
        compiler_directives=directives,
        annotate=DEBUG,
    )
)
