"""Build script: the list of compiled extensions, with OpenMP when the
compiler supports it (and a clean build without it).

Set ``FASTDROP_NO_OPENMP=1`` to build without OpenMP.  No ``-march=native``:
the kernels pick their instruction set at run time.

The per-dtype C kernels are written once, in Tempita templates next to their
headers (``fastdrop/_cython/NAME.h.in``); every run of this script first
generates ``NAME.h`` from each (when it is missing or older than its
template), before cythonize, so the package data and ``get_include()`` have
them.  The generated headers are not committed (.gitignore).
"""

import os
import shutil
import sys
import tempfile

import numpy as np
from Cython import Tempita
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

#: Tempita templates of the C headers, each rendered to the file without ".in".
HEADER_TEMPLATES = ["leaf_portable.h.in", "leaf_avx2.h.in", "leaf_avx512.h.in", "kernels.h.in"]

#: The XLA FFI C API header (vendored, Apache-2.0) the handlers of fastdrop.jax
#: are built against (xla_ffi.h includes it): no jax or jaxlib at build time.
XLA_FFI_C_API = os.path.join("third_party", "xla", "ffi", "api", "c_api.h")


def generate_headers(directory=CY_DIR, force=False):
    """Render each header template in ``directory`` to its header when the
    header is missing or older than the template (or with ``force``)."""
    for name in HEADER_TEMPLATES:
        src = os.path.join(directory, name)
        dst = src[:-len(".in")]
        if not os.path.exists(src):
            if os.path.exists(dst):
                continue  # a tree with the generated header only
            raise FileNotFoundError(f"{src}: header template missing")
        if (not force and os.path.exists(dst)
                and os.path.getmtime(dst) >= os.path.getmtime(src)):
            continue
        with open(src, encoding="utf-8") as f:
            text = Tempita.Template(f.read(), name=src).substitute()
        tmp = f"{dst}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, dst)
        print(f"fastdrop: generated {dst} from {name}", file=sys.stderr)


extensions = [
    Extension(
        "fastdrop._cython._kernels",
        [os.path.join(CY_DIR, "_kernels.pyx")],
        include_dirs=[np.get_include(), CY_DIR],
        # the header-only C core: a changed header rebuilds the extension
        depends=[os.path.join(CY_DIR, h) for h in
                 ["philox.h", "normal.h", "xla_ffi.h", XLA_FFI_C_API]
                 + [t[:-len(".in")] for t in HEADER_TEMPLATES]],
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


generate_headers()  # before cythonize: _kernels.pyx includes kernels.h

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3, "boundscheck": False,
                             "wraparound": False, "cdivision": True},
    ),
    cmdclass={"build_ext": BuildExt},
)
