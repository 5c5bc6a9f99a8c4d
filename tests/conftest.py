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
