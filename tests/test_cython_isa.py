"""The Cython backend's narrower hand-written paths on a wider CPU.

``test_cython.py`` and ``test_cython_layouts.py`` run every test on each
path this CPU has (AVX-512, AVX2, portable), in one process, through the
``cython_isa`` fixture (``_kernels.set_max_isa``).  Here: the cap itself,
in-process and through ``FASTDROP_MAX_ISA`` at start-up, and the path chosen
with no cap on a CPU without AVX-512 (Valgrind's).
"""

import os
import platform
import shutil
import subprocess
import sys

import pytest

import fastdrop
from conftest import cython_isas

K = pytest.importorskip("fastdrop._cython._kernels")


def _reachable(cap):
    """The path the cap selects on this CPU (a cap never widens it)."""
    order = ["portable", "avx2", "avx512"]
    return order[min(order.index(K.isa()), order.index(cap))]


@pytest.mark.parametrize("cap", ["avx2", "portable"])
def test_environment_cap_selects_path(cap):
    r = subprocess.run(
        [sys.executable, "-c", "from fastdrop._cython import _kernels; print(_kernels.isa())"],
        env=dict(os.environ, FASTDROP_MAX_ISA=cap), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == _reachable(cap)


@pytest.mark.parametrize("cap", ["avx512", "avx2", "portable"])
def test_in_process_cap(cap):
    widest = K.isa()
    old = K.set_max_isa(cap)
    try:
        assert K.isa() == _reachable(cap)
    finally:
        K.set_max_isa(old)
    assert K.isa() == widest


def test_in_process_cap_rejects_unknown():
    with pytest.raises(ValueError, match="name must be one of"):
        K.set_max_isa("sse2")


def test_isa_paths_listed():
    paths = cython_isas()
    assert paths[0] == K.isa() and paths[-1] == "portable"


#: Run under Valgrind: the extension picks its own path (no cap) and every op
#: below must match the reference backend bit for bit.
_NO_AVX512 = r"""
import os, numpy as np, fastdrop
from numpy.testing import assert_array_equal
from fastdrop._cython import _kernels
assert "vgpreload" in os.environ.get("LD_PRELOAD", ""), "not under Valgrind"
assert os.path.realpath(fastdrop.__file__) == os.environ["FD_PARENT_FASTDROP"], fastdrop.__file__
assert _kernels.isa() == "avx2", _kernels.isa()

def same(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f":
        a, b = a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")
    assert_array_equal(a, b, what)

runs = 0
def check(calls, names):
    # calls(backend) -> a tuple of results: the Cython backend's, bit for
    # bit the reference backend's
    global runs
    for w, v, what in zip(calls("reference"), calls("cython"), names):
        same(v, w, what)
    runs += 1

rng = np.random.default_rng(5)
for dt in (np.float16, np.float32, np.float64):
    for n, off in ((1, 0), (255, 3), (257, 0), (1000, 5), (300_000, 0), (300_001, 7)):
        x = rng.standard_normal(n).astype(dt)
        x[::97] = np.nan
        def calls(be):
            y, m = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(11, off), out=np.empty_like(x),
                                    return_mask="packed", backend=be)
            return (y, m,
                    fastdrop.gaussian_dropout(x, 0.3, rng=fastdrop.Generator(12, off), backend=be),
                    fastdrop.dropout_mask(x.shape, 0.7, rng=fastdrop.Generator(13, off), backend=be))
        label = f"{np.dtype(dt).name} n={n} offset={off}"
        check(calls, [f"{w} {label}" for w in ("dropout", "packed mask", "gaussian", "mask")])
    x = rng.standard_normal((64, 9, 40)).astype(dt)
    check(lambda be: (fastdrop.drop_path(x, 0.4, rng=3, backend=be),
                      fastdrop.dropout(x, 0.4, rng=4, noise_shape=(64, 1, 40), backend=be),
                      fastdrop.dropout(x[:, ::2, 3:], 0.4, rng=6, backend=be),
                      fastdrop.dropout_backward(x, 0.4, state=(7, 0), backend=be)),
          [f"{w} 3-D {np.dtype(dt).name}" for w in ("drop_path", "noise shape", "strided",
                                                     "backward")])
# a caller's output of 8 MiB or more: the non-temporal stores (after a
# head to a 64-byte line) of the forward, DropPath's rows and a stored mask
x = rng.standard_normal(2**21 + 2**13 + 5).astype(np.float32)
xr = x[1:1 + 256 * 8200].reshape(256, 8200)
def large(be):
    y, m = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(14, 3), out=np.empty_like(x),
                            return_mask=True, backend=be)
    return (y, m, fastdrop.drop_path(xr, 0.4, rng=5, out=np.empty_like(xr), backend=be),
            fastdrop.apply_mask(x, m, 0.3, out=np.empty_like(x), backend=be))
check(large, [f"{w} into a large out" for w in ("dropout", "mask", "drop_path", "apply_mask")])
print("checked", runs)
"""


@pytest.mark.skipif(shutil.which("valgrind") is None or platform.machine() != "x86_64",
                    reason="needs Valgrind on x86-64")
def test_cpu_without_avx512_under_valgrind():
    """Valgrind's virtual x86-64 CPU has AVX2 but no AVX-512 (its CPUID says
    so, and it stops a program at an instruction it cannot run): a CPU that
    lacks AVX-512, whatever this machine has.  There the extension must pick
    the AVX2 leaf by itself, and the forward (offsets inside a Philox block,
    batch ends), the mask, Gaussian dropout, DropPath, a broadcast noise
    shape, a strided view, the backward, and the non-temporal stores into a
    large output (forward, DropPath, stored mask) must match the reference
    backend bit for bit (NaNs included)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo to tell whether this CPU has AVX2")
    if "avx2" not in flags or "f16c" not in flags:
        pytest.skip("this CPU has no AVX2 (or F16C): nor has Valgrind's")
    env = {k: v for k, v in os.environ.items() if k != "FASTDROP_MAX_ISA"}
    env["FD_PARENT_FASTDROP"] = os.path.realpath(fastdrop.__file__)
    # sys.executable itself (a venv's symlink keeps the venv); Valgrind does
    # not follow an exec, so the script checks it runs under Valgrind
    r = subprocess.run(["valgrind", "--tool=none", "-q", sys.executable, "-c", _NO_AVX512],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert r.stdout.split()[-2:] == ["checked", "22"], r.stdout[-2000:]
