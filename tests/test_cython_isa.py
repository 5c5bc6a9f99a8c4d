"""The Cython backend's narrower hand-written paths on a wider CPU.

``test_cython.py`` and ``test_cython_layouts.py`` run every test on each
path this CPU has (AVX-512, AVX2, portable), in one process, through the
``cython_isa`` fixture (``_kernels.set_max_isa``).  Here: the cap itself,
in-process and through ``FASTDROP_MAX_ISA`` at start-up.
"""

import os
import subprocess
import sys

import pytest

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
