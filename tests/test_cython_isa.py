"""The Cython backend's narrower hand-written paths on a wider CPU.

``FASTDROP_MAX_ISA=avx2`` / ``=portable`` caps the kernels the extension
picks at run time (read once per process), so the AVX2 and portable paths
are checked bit for bit here even on an AVX-512 machine: the whole Cython
parity suite (``test_cython.py``, ``test_cython_layouts.py``) runs again in
a subprocess under each cap.
"""

import os
import subprocess
import sys

import pytest

K = pytest.importorskip("fastdrop._cython._kernels")

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(code_or_args, cap):
    env = dict(os.environ, FASTDROP_MAX_ISA=cap)
    return subprocess.run([sys.executable] + code_or_args, env=env, capture_output=True,
                          text=True, cwd=os.path.dirname(HERE))


def _reachable(cap):
    """The path the cap selects on this CPU (a cap never widens it)."""
    order = ["portable", "avx2", "avx512"]
    here = K.isa()
    return order[min(order.index(here), order.index(cap))]


@pytest.mark.parametrize("cap", ["avx2", "portable"])
def test_cap_selects_path(cap):
    r = _run(["-c", "from fastdrop._cython import _kernels; print(_kernels.isa())"], cap)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == _reachable(cap)


@pytest.mark.parametrize("cap", ["avx2", "portable"])
def test_parity_suite_under_cap(cap):
    if _reachable(cap) == K.isa() and cap != K.isa():
        pytest.skip(f"this CPU has no {cap} path narrower than {K.isa()}")
    r = _run(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
              os.path.join(HERE, "test_cython.py"),
              os.path.join(HERE, "test_cython_layouts.py")], cap)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and " failed" not in r.stdout
