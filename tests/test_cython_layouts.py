"""Cython backend paths that only large arrays reach: non-temporal stores for
big caller-provided outputs (any alignment), compared bit for bit with the
reference.  The memory-order walk (Fortran-ordered and reversed layouts,
transposes of tall C arrays) and in place on negative strides are cases of
``test_parity.py`` (``cases.MEMORY_ORDER``, ``cases.TALL``)."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from conftest import bits, special_values

pytest.importorskip("fastdrop._cython._kernels")

# every test runs on each hand-written path this CPU has, in this process
pytestmark = pytest.mark.usefixtures("cython_isa")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_large_out_nontemporal_stores(threads, dtype):
    n = (8 << 20) // np.dtype(dtype).itemsize + 37   # over the 8 MiB threshold
    x = special_values((n,), dtype, seed=3)
    buf = np.empty(n + 64, dtype)
    for off in (0, 3):
        want, keep = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(7, off),
                                      return_mask=True, backend="reference")
        packed = np.packbits(keep, bitorder="little")
        for shift in (0, 1, 3):  # output start 0, 1, 3 elements past a 64-byte line
            base = (-(buf.ctypes.data // buf.itemsize)) % (64 // buf.itemsize)
            out = buf[base + shift:base + shift + n]
            for kind in (False, True, "packed"):
                out.fill(7)
                r = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(7, off), out=out,
                                     return_mask=kind, backend="cython")
                assert_array_equal(bits(out), bits(want))
                if kind is True:
                    assert_array_equal(r[1], keep)
                elif kind == "packed":
                    assert_array_equal(r[1], packed)
