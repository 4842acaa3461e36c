"""Builds ext/*.pyx into perpcore._<name>.

Each contract is ext/perpcore._<name>.pxd: Cython looks a module's .pxd up by its qualified name, so
the dotted file name binds it to the extension perpcore._<name> and lets other .pyx files
`from perpcore._<name> cimport ...` through include_path=["ext"].

The wheel ships each contract as perpcore/_<name>.pxd, the layout under which other projects
`cimport perpcore._<name>` against the installed package.

Release builds drop bounds/wraparound checks; PERPCORE_DEBUG=1 turns them back on, adds line tracing
(for coverage and profilers) and writes the annotated HTML next to each .pyx.
"""
import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

DEBUG = os.environ.get("PERPCORE_DEBUG") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "linetrace": DEBUG,
    "profile": DEBUG,
}
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if DEBUG:
    macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]

extensions = [
    Extension(
        f"perpcore.{pyx.stem}",
        [str(pyx)],
        include_dirs=["ext", numpy.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
    )
    for pyx in sorted(Path("ext").glob("_*.pyx"))
]


class build_py_with_contracts(build_py):
    def run(self):
        super().run()
        # like setuptools' own build_py: an editable install uses the source tree, contracts in ext/
        if self.editable_mode:
            return
        for pxd in sorted(Path("ext").glob("perpcore._*.pxd")):
            target = Path(self.build_lib, "perpcore", pxd.name.removeprefix("perpcore."))
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
