"""Build script: the list of compiled extensions, with OpenMP on Windows
only, when the compiler supports it (and a clean build without it).

The kernels run on their own worker pool (``fastdrop/_cython/pool.h``), on
POSIX threads: Linux and macOS builds link no OpenMP runtime (so a wheel
vendors none), and the default thread count is the extension's own
(``threads.h``).  Windows has no POSIX threads: there the pool runs an
OpenMP loop, so Windows builds use OpenMP when the compiler has it (serial
otherwise).  Set ``FASTDROP_NO_OPENMP=1`` to build without it.  No
``-march=native``: the kernels pick their instruction set at run time.

Compiler flags are chosen per compiler (``BuildExt``): GCC and Clang get
``UNIX_COMPILE_ARGS`` and, on Linux, no debug information and a stripped
shared object (``-g0``, ``-Wl,--strip-all``: the wheel stays small; set
``FASTDROP_DEBUG=1`` to keep the symbols); MSVC gets ``MSVC_COMPILE_ARGS``.
On Windows, OpenMP is tried with the compiler's own flag (``/openmp`` for
MSVC, ``-fopenmp`` for MinGW) and left out when a test program does not
build.

The per-dtype C kernels are written once, in Tempita templates next to their
headers (``fastdrop/_cython/NAME.h.in``); every run of this script first
generates ``NAME.h`` from each (when it is missing or older than its
template), before cythonize, so the package data and ``get_include()`` have
them; ``tools/c_headers.py`` renders them, keeping of their comments only
each file's leading block (the comments in the code stay in the templates).
The generated headers are not committed (.gitignore).
"""

import os
import shutil
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools"))
import c_headers  # noqa: E402 - tools/c_headers.py: the templates' rendering

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
    header is missing or older than the template or tools/c_headers.py (or
    with ``force``)."""
    for name in HEADER_TEMPLATES:
        src = os.path.join(directory, name)
        dst = src[:-len(".in")]
        if not os.path.exists(src):
            if os.path.exists(dst):
                continue  # a tree with the generated header only
            raise FileNotFoundError(f"{src}: header template missing")
        if (not force and os.path.exists(dst)
                and os.path.getmtime(dst) >= max(os.path.getmtime(src),
                                                 os.path.getmtime(c_headers.__file__))):
            continue
        text = c_headers.render(src)
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
                 ["philox.h", "normal.h", "pool.h", "fpenv.h", "threads.h", "xla_ffi.h",
                  XLA_FFI_C_API]
                 + [t[:-len(".in")] for t in HEADER_TEMPLATES]],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        # compiler flags: BuildExt.build_extensions (they depend on the compiler)
    ),
]

#: GCC and Clang (tests/test_c_headers.py compiles the headers with these too).
#: -ffp-contract=off: no fused multiply-add, so results match the reference bit
#: for bit; the math flags let the compiler vectorise the selects.  -fno-wrapv
#: undoes the -fwrapv that Python's own build flags add (CPython needs signed
#: overflow to wrap; fastdrop's C never overflows a signed type, and builds with
#: MSVC, which has no such mode): with it, the unchanged AVX-512 path lost 3-5% of its
#: 1-thread speed to an AVX2 leaf change, without it none (AMD EPYC Zen 5, 16 Mi
#: float32 forward, interleaved A/B, 2026-12-03).
UNIX_COMPILE_ARGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off",
                     "-fno-wrapv"]
#: Linux only (GNU ld, lld, gold): no debug information, symbols stripped at link.
LINUX_STRIP_COMPILE_ARGS = ["-g0"]
LINUX_STRIP_LINK_ARGS = ["-Wl,--strip-all"]
#: MSVC: /fp:precise (its default) never contracts a * b + c into an FMA.
MSVC_COMPILE_ARGS = ["/O2", "/fp:precise"]


def openmp_flags(compiler_type, platform=sys.platform):
    """The (compile, link) flag lists to try for OpenMP, in order: none but
    on Windows, where the worker pool needs OpenMP (pool.h)."""
    if not platform.startswith("win"):
        return []
    if compiler_type == "msvc":
        return [(["/openmp"], [])]
    return [(["-fopenmp"], ["-fopenmp"])]


def _env_flag(name):
    return os.environ.get(name, "") not in ("", "0")


class BuildExt(build_ext):
    """build_ext with per-compiler flags, and OpenMP on Windows when the
    compiler can build it."""

    def _try_openmp(self, cflags, lflags):
        tmp = tempfile.mkdtemp()
        try:
            src = os.path.join(tmp, "omp_test.c")
            with open(src, "w") as f:
                f.write(OMP_TEST)
            objs = self.compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
            self.compiler.link_executable(objs, os.path.join(tmp, "omp_test"),
                                          extra_postargs=lflags)
            return True
        except Exception:  # noqa: BLE001 - any failure means "not with these flags"
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _openmp(self, compiler_type):
        """(compile, link) flags that build an OpenMP program, or None."""
        if _env_flag("FASTDROP_NO_OPENMP"):
            return None
        for cflags, lflags in openmp_flags(compiler_type):
            if self._try_openmp(cflags, lflags):
                return cflags, lflags
        return None

    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            cargs, largs = list(MSVC_COMPILE_ARGS), []
        else:
            # -pthread: the worker pool (pool.h) on glibc < 2.34 and other libcs
            cargs, largs = list(UNIX_COMPILE_ARGS) + ["-pthread"], ["-pthread"]
            if sys.platform.startswith("linux") and not _env_flag("FASTDROP_DEBUG"):
                cargs += LINUX_STRIP_COMPILE_ARGS
                largs += LINUX_STRIP_LINK_ARGS
        omp = self._openmp(ctype)
        print(f"fastdrop: compiler {ctype}; building with OpenMP: "
              f"{' '.join(omp[0]) if omp else False}", file=sys.stderr)
        if omp:
            cargs += omp[0]
            largs += omp[1]
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args) + cargs
            ext.extra_link_args = list(ext.extra_link_args) + largs
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
