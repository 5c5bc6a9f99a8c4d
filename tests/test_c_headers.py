"""The header-only C core (philox.h, the ISA leaves leaf_portable.h,
leaf_avx2.h and leaf_avx512.h, and the skeleton kernels.h) compiles
without a single warning under GCC 14's stricter defaults.

GCC 14 turned ``incompatible-pointer-types``, ``implicit-function-declaration``
and friends into errors; this checks the headers with those (plus ``-Wall
-Wextra -Werror``, ``-std=c11`` and setup.py's own flags), with and without
OpenMP, each header on its own and all together, included the way
``_kernels.pyx`` includes them (after its OpenMP preamble) and called with
the argument types ``_kernels.pyx`` and ``api.pxd`` pass.  Needs a C compiler
(``gcc`` or ``cc``); skipped without one.  The extension's own headers (the
worker pool and the thread count: pool.h, threads.h) are checked too where
they are (the source tree; the wheel ships only the C API's headers).
"""

import os
import shutil
import subprocess

import pytest

import fastdrop

#: GCC 14's new errors, as flags an older GCC (or clang) understands too.
STRICT = ["-std=c11", "-Wall", "-Wextra", "-Werror",
          "-Werror=incompatible-pointer-types",
          "-Werror=implicit-function-declaration"]
#: setup.py's extra_compile_args for the extension.
SETUP = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]

HEADERS = ("philox.h", "normal.h", "leaf_portable.h", "leaf_avx2.h", "leaf_avx512.h",
           "kernels.h")

#: What the generated _kernels.c has before ``#include "kernels.h"``: the C
#: headers Cython includes, then the verbatim preamble of _kernels.pyx's
#: ``cdef extern from *`` block.
PREAMBLE = r"""
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <stdio.h>

#ifdef _OPENMP
#define FASTDROP_HAVE_OPENMP 1
#else
#define FASTDROP_HAVE_OPENMP 0
#endif
"""

#: Calls into each header with the argument types of the Cython callers
#: (never run: the file is only checked).
USES = {
    "philox.h": r"""
    uint32_t ctr[4] = {0u, 0u, 0u, 0u};
    fd_philox4x32_10(ctr, 1u, 2u);
    uint64_t T = fd_threshold(0.5);
    rc += fd_keep_at(1u, 2u, (uint32_t)(T >> 16), (uint32_t)(T & 0xFFFFu));
""",
    "normal.h": r"""
    double zs[8];
    fd_normal_batch(3u, 8, 1u, zs);
    rc += (int)(zs[0] + fd_normal_at(1u, 3u));
""",
    "leaf_portable.h": r"""
    uint64_t bits[FD_PORTABLE_WORDS];
    uint8_t kb[64] = {0u};
    fd_portable_bits(0u, 100, 1u, 0x8000u, 0u, bits, NULL, 0);
    fd_portable_to_bytes(bits[0], 64, kb);
    rc += (int)fd_portable_from_bytes(kb, 64, 0xFF) + (int)fd_f2h(fd_h2f(0x3C00u));
    rc += (int)fd_f2bf(fd_bf2f(0x3F80u));
""",
    "leaf_avx2.h": r"""
#ifdef FD_HAVE_AVX2
    rc += fd_avx2_cpu();
#endif
""",
    "leaf_avx512.h": r"""
#ifdef FD_HAVE_AVX512
    rc += fd_avx512_cpu();
#endif
""",
    "kernels.h": r"""
    /* _kernels.pyx */
    fd_task_t g;
    memset(&g, 0, sizeof g);
    g.op = FD_OP_FORWARD; g.dtype = FD_F16; g.nd = 0;
    g.isa = fd_isa_for(0u);
    g.af.a = 2.0; g.af.b = -0.0; g.af.c = 0.0;
    fd_run_task(&g, (int64_t)0);
    g.op = FD_OP_NOISE_MUL;
    fd_run_task(&g, (int64_t)0);
    rc += fd_isa_select(1)->level + fd_isa()->level + fd_isa_cap_level;
    g.dtype = FD_BF16;
    fd_run_task(&g, (int64_t)0);
    rc += FD_MAXDIM + FD_F32 + FD_F64 + FD_NDTYPES;
    float f[8] = {0.0f}, fo[8];
    double d[8] = {0.0}, dout[8];
    uint16_t h[8] = {0u}, ho[8];
    uint8_t packed[1] = {0u};
    uint32_t ctr2[4] = {0u, 0u, 0u, 0u};
    fd_isa()->stream_scale(f, fo, (int64_t)8, 2.0f);
    /* api.pxd (float16 and bfloat16 as their uint16_t bits) */
    rc += fastdrop_dropout_f16(h, ho, 8u, 1u, 0u, 0.5);
    rc += fastdrop_dropout_bf16(h, ho, 8u, 1u, 0u, 0.5);
    fastdrop_apply_packed_bf16(h, ho, packed, 8u, 2.0);
    rc += fastdrop_dropout_f32(f, fo, 8u, 1u, 0u, 0.5);
    rc += fastdrop_dropout_f64(d, dout, 8u, 1u, 0u, 0.5);
    fastdrop_apply_packed_f16(h, ho, packed, 8u, 2.0);
    fastdrop_apply_packed_f32(f, fo, packed, 8u, 2.0);
    fastdrop_apply_packed_f64(d, dout, packed, 8u, 2.0);
    rc += fastdrop_mask_packed(packed, 8u, 1u, 0u, 0.5);
    rc += fastdrop_keep(1u, 2u, 0.5) + (int)fd_threshold(0.25);
    fastdrop_philox4x32_10(ctr2, 1u, 2u);
""",
}

CASES = [(h,) for h in HEADERS] + [HEADERS]


def _compiler():
    return shutil.which("gcc") or shutil.which("cc")


@pytest.fixture(scope="module")
def cc():
    path = _compiler()
    if path is None:
        pytest.skip("no C compiler (gcc or cc) on PATH")
    return path


def _source(headers):
    body = "".join(USES[h] for h in headers)
    includes = "".join(f'#include "{h}"\n' for h in headers)
    return (PREAMBLE + includes + "\nint main(void)\n{\n"
            + "    int rc = FASTDROP_HAVE_OPENMP;\n"
            + body + "    return rc;\n}\n")


def _compile(cc, tmp_path, src, args):
    path = tmp_path / "fd_headers.c"
    path.write_text(src)
    cmd = [cc, *args, "-I", fastdrop.get_include(), str(path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return cmd, res


def _check(cmd, res, src):
    out = (res.stdout + res.stderr).strip()
    if res.returncode != 0 or out:
        numbered = "\n".join(f"{i:4d}  {ln}" for i, ln in enumerate(src.splitlines(), 1))
        pytest.fail(f"{' '.join(cmd)}\nexit status {res.returncode}\n{out}\n\n"
                    f"--- fd_headers.c ---\n{numbered}", pytrace=False)


@pytest.fixture(scope="module")
def openmp(cc, tmp_path_factory):
    """Whether the compiler can do OpenMP at all (the extension builds
    without it otherwise, so the -fopenmp variants are moot)."""
    path = tmp_path_factory.mktemp("omp") / "omp.c"
    path.write_text("#include <omp.h>\nint main(void) { return omp_get_max_threads(); }\n")
    res = subprocess.run([cc, "-fsyntax-only", "-fopenmp", str(path)],
                         capture_output=True, text=True, timeout=300)
    return res.returncode == 0


def test_include_dir():
    inc = fastdrop.get_include()
    for h in HEADERS:
        assert os.path.isfile(os.path.join(inc, h)), h


@pytest.mark.parametrize("omp", [False, True], ids=["serial", "openmp"])
@pytest.mark.parametrize("headers", CASES, ids=["+".join(c) for c in CASES])
def test_headers_compile_warning_free(cc, openmp, tmp_path, headers, omp):
    if omp and not openmp:
        pytest.skip(f"{cc} cannot compile OpenMP code (-fopenmp / omp.h)")
    src = _source(headers)
    args = ["-fsyntax-only", *STRICT, *SETUP] + (["-fopenmp"] if omp else [])
    _check(*_compile(cc, tmp_path, src, args), src)


#: The headers' configuration macros: the code a build for another CPU
#: (no AVX leaves) or without _Float16 compiles.
PORTABLE = ["-DFD_NO_AVX512", "-DFD_NO_AVX2", "-DFD_SOFT_HALF"]


@pytest.mark.parametrize("omp", [False, True], ids=["serial", "openmp"])
def test_portable_configuration_compiles_warning_free(cc, openmp, tmp_path, omp):
    if omp and not openmp:
        pytest.skip(f"{cc} cannot compile OpenMP code (-fopenmp / omp.h)")
    src = _source(HEADERS)
    args = ["-fsyntax-only", *STRICT, *SETUP, *PORTABLE] + (["-fopenmp"] if omp else [])
    _check(*_compile(cc, tmp_path, src, args), src)


def test_cimporter_unused_kernels_do_not_warn(cc, tmp_path):
    # A module that cimports one function of api.pxd includes all of
    # kernels.h; the static kernels it does not call must not raise
    # -Wunused-function (reported only when compiling, not by -fsyntax-only).
    src = ('#include "kernels.h"\n'
           "int main(void) { return fastdrop_keep(1u, 2u, 0.5); }\n")
    _check(*_compile(cc, tmp_path, src,
                     ["-c", "-o", str(tmp_path / "fd_headers.o"), *STRICT, *SETUP]), src)


#: The extension's own headers (not the C API: the wheel does not ship them),
#: called as _kernels.pyx and xla_ffi.h call them.
OWN_USES = {
    "pool.h": r"""
    fd_pool_run(fd_test_task, &rc, (int64_t)4, 2);
    fd_advise_output(&rc, (int64_t)sizeof rc);
""",
    "threads.h": r"""
    fastdrop_threadpool_set_num_threads(3);
    rc += fastdrop_threadpool_get_num_threads() + fastdrop_threadpool_get_limit();
    rc += fd_threads_unlimited() + fd_threads_env() + fd_threads_cpus();
    fastdrop_threadpool_set_num_threads(0);
""",
}


@pytest.mark.parametrize("omp", [False, True], ids=["serial", "openmp"])
def test_extension_headers_compile_warning_free(cc, openmp, tmp_path, omp):
    inc = fastdrop.get_include()
    if not all(os.path.isfile(os.path.join(inc, h)) for h in OWN_USES):
        pytest.skip("pool.h and threads.h are not installed (the sdist has them)")
    if omp and not openmp:
        pytest.skip(f"{cc} cannot compile OpenMP code (-fopenmp / omp.h)")
    # _GNU_SOURCE: Python.h defines it before anything in _kernels.c
    src = ("#define _GNU_SOURCE\n" + PREAMBLE
           + "".join(f'#include "{h}"\n' for h in OWN_USES)
           + "\nstatic void fd_test_task(const void *ctx, int64_t t)\n"
           + "{ (void)ctx; (void)t; }\n"
           + "\nint main(void)\n{\n    int rc = 0;\n"
           + "".join(OWN_USES.values()) + "    return rc;\n}\n")
    # compiled and linked (the exported functions are definitions: -c checks
    # them as the extension's build does), -pthread as setup.py builds it
    args = ["-o", str(tmp_path / "fd_own"), *STRICT, *SETUP, "-pthread"] + (
        ["-fopenmp"] if omp else [])
    _check(*_compile(cc, tmp_path, src, args), src)
