"""Shared fixtures: the CPU backends available here, input generators."""

import os

import numpy as np
import pytest
from hypothesis import settings

import fastdrop

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DTYPES = (np.float16, np.float32, np.float64)


def cpu_backends():
    """Available CPU backends (the reference is always one of them)."""
    info = fastdrop.get_backends()
    return [name for name, v in info.items() if v["available"] and name != "cuda"]


@pytest.fixture(params=cpu_backends())
def backend(request):
    return request.param


def cython_isas():
    """The distinct hand-written Cython paths this CPU can run, widest first
    (a cap never widens the path)."""
    try:
        from fastdrop._cython import _kernels
    except ImportError:
        return []
    order = ["avx512", "avx2", "portable"]
    return order[order.index(_kernels.isa()):]


@pytest.fixture(params=cython_isas() or [None])
def cython_isa(request):
    """Run a test on each Cython ISA path in turn, in this process
    (``_kernels.set_max_isa``); the widest path is restored afterwards."""
    if request.param is None:
        yield None
        return
    from fastdrop._cython import _kernels

    old = _kernels.set_max_isa(request.param)
    assert _kernels.isa() == request.param
    try:
        yield request.param
    finally:
        _kernels.set_max_isa(old)


_C_COMPILER = []  # memo of c_compiler_problem()


def c_compiler_problem():
    """Why no C extension can be built here (None when one can): setuptools
    compiles and links a one-function extension, as the cimport tests and
    README's Cython example do (``CC`` and PATH apply).  A wheel installed
    without a compiler skips those tests with this reason instead of failing."""
    if not _C_COMPILER:
        import tempfile

        from setuptools import Distribution, Extension

        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "fd_cc_probe.c")
            with open(src, "w") as f:
                f.write("int fd_cc_probe(void) { return 0; }\n")
            dist = Distribution({"ext_modules": [Extension("fd_cc_probe", [src])]})
            cmd = dist.get_command_obj("build_ext")
            cmd.build_lib = cmd.build_temp = tmp
            try:
                cmd.ensure_finalized()
                cmd.run()
            except Exception as e:  # noqa: BLE001 - CompileError, LinkError, OSError...
                msg = " ".join(str(e).split())
                msg = msg if len(msg) <= 160 else msg[:157] + "..."
                _C_COMPILER.append(f"no working C compiler ({type(e).__name__}: {msg})")
            else:
                _C_COMPILER.append(None)
    return _C_COMPILER[0]


@pytest.fixture(scope="session")
def c_compiler():
    """Skip a test that builds a C extension when no compiler works here."""
    why = c_compiler_problem()
    if why is not None:
        pytest.skip(why)


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def threads(request):
    """Run a test with 1 and with 2 threads (``fastdrop.set_num_threads``);
    a test may parametrise it indirectly with its own counts."""
    old = fastdrop.set_num_threads(request.param)
    yield request.param
    fastdrop.set_num_threads(old)


def special_values(shape, dtype, seed=0):
    """Random normals with NaN, +-inf, -0.0 and negatives sprinkled in."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    v = rng.standard_normal(n).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -1.5], dtype=dtype)
    if n:
        pos = rng.integers(0, n, size=max(1, n // 10))
        v[pos] = specials[np.arange(pos.size) % specials.size]
    return v.reshape(shape)


def bits(a):
    """View float data as unsigned ints so that -0.0 != +0.0 and NaNs compare."""
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])
