"""Build script: the list of compiled extensions, with OpenMP when the
compiler supports it (and a clean build without it).

Set ``FASTDROP_NO_OPENMP=1`` to build without OpenMP.  No ``-march=native``:
the kernels pick their instruction set at run time.
"""

import os
import shutil
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OMP_TEST = r"""
#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
  n += 1;
  return omp_get_max_threads() > 0 && n > 0 ? 0 : 1; }
"""

CY_DIR = os.path.join("fastdrop", "_cython")

extensions = [
    Extension(
        "fastdrop._cython._kernels",
        [os.path.join(CY_DIR, "_kernels.pyx")],
        include_dirs=[np.get_include(), CY_DIR],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math",
                            "-ffp-contract=off"],
    ),
]


class BuildExt(build_ext):
    """build_ext that turns OpenMP on when the compiler can build it."""

    def _has_openmp(self):
        if os.environ.get("FASTDROP_NO_OPENMP", "") not in ("", "0"):
            return False
        tmp = tempfile.mkdtemp()
        try:
            src = os.path.join(tmp, "omp_test.c")
            with open(src, "w") as f:
                f.write(OMP_TEST)
            objs = self.compiler.compile([src], output_dir=tmp,
                                         extra_postargs=["-fopenmp"])
            self.compiler.link_executable(objs, os.path.join(tmp, "omp_test"),
                                          extra_postargs=["-fopenmp"])
            return True
        except Exception:  # noqa: BLE001 - any failure means "no OpenMP"
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def build_extensions(self):
        omp = self._has_openmp()
        print(f"fastdrop: building with OpenMP: {omp}", file=sys.stderr)
        for ext in self.extensions:
            if omp:
                ext.extra_compile_args = list(ext.extra_compile_args) + ["-fopenmp"]
                ext.extra_link_args = list(ext.extra_link_args) + ["-fopenmp"]
        super().build_extensions()


setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3, "boundscheck": False,
                             "wraparound": False, "cdivision": True},
    ),
    cmdclass={"build_ext": BuildExt},
)
