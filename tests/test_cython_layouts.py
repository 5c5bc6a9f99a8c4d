"""Cython backend paths that only large arrays reach: non-temporal stores for
big caller-provided outputs (any alignment), and the forward of many short rows
with one decision each (blocks of rows per task), compared bit for bit with
the reference.  The memory-order walk (Fortran-ordered and reversed layouts,
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


# (rows, row length): one task's block of rows is min(4096, 65536 // L)
# (FD_ROWS_MAX, CHUNK): several blocks and a partial last one, a row
# length that leaves a block under 4096 rows, rows of 2 elements, rows
# just under a chunk
ROW_SHAPES = [(9000, 3), (4097, 16), (700, 49), (130, 2), (3, 65535), (1, 5)]


@pytest.mark.parametrize("rows, L", ROW_SHAPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, "bfloat16"])
def test_short_rows_one_decision_each(threads, rows, L, dtype):
    """DropPath / spatial dropout of short contiguous rows (a noise shape
    broadcast along the last axis): the rows are done in blocks, their
    decisions made together by the leaf (consecutive stream positions,
    from an offset that is not a multiple of 8 too); equal to the
    reference bit for bit, out of place, in place and through a
    (N, C, H, W) noise shape (N, C, 1, 1) that collapses to the same
    rows."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x = special_values((rows, L), dtype, seed=rows + L)
    for off in (0, 5):
        for fn in (fastdrop.dropout, fastdrop.alpha_dropout):  # alpha: a shift and a fill
            want = fn(x, 0.3, rng=fastdrop.Generator(7, off), noise_shape=(rows, 1),
                      backend="reference")
            got = fn(x, 0.3, rng=fastdrop.Generator(7, off), noise_shape=(rows, 1),
                     backend="cython")
            assert_array_equal(bits(got), bits(want))
        y = x.copy()
        fastdrop.dropout(y, 0.3, rng=fastdrop.Generator(7, off), out=y, noise_shape=(rows, 1),
                         backend="cython")
        want = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(7, off), noise_shape=(rows, 1),
                                backend="reference")
        assert_array_equal(bits(y), bits(want))
    x4 = special_values((2, rows, L, 2), dtype, seed=rows)  # rows 2 * rows of 2L
    got = fastdrop.dropout(x4, 0.6, rng=3, noise_shape=(2, rows, 1, 1), backend="cython")
    want = fastdrop.dropout(x4, 0.6, rng=3, noise_shape=(2, rows, 1, 1), backend="reference")
    assert_array_equal(bits(got), bits(want))


# rows of a full mask: tiles up to 32 (apply) / 128 (forward, noise)
# elements, blocks of rows run in place up to 1023, a task per row from 1024
COLUMN_L = [3, 32, 33, 128, 129, 1023, 1024]
_REF = {}  # (L, dtype, op) -> the reference result (shared by ISAs and thread counts)


def _column_case(L, dtype, inner):
    """A slice of L columns of a wider array (contiguous along its rows, or
    every other column backwards), enough rows for two tasks and a partial
    third (a task takes 65536 // L rows), and its stored masks."""
    rows = 2 * (65536 // L) + 5
    big = special_values((rows, 2 * L + 7), dtype, seed=L)
    x = big[:, 2:2 + L] if inner == "contiguous" else big[:, 2 * L:0:-2]
    keep = fastdrop.dropout_mask(x.shape, 0.4, rng=4)
    return x, keep, np.packbits(keep.reshape(-1), bitorder="little")


@pytest.mark.parametrize("inner", ["contiguous", "strided"])
@pytest.mark.parametrize("L", COLUMN_L)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, "bfloat16"])
def test_short_rows_of_a_full_mask(threads, L, dtype, inner):
    """Every op on a column slice ``x[:, a:a + L]`` or ``x[:, 2 * L:0:-2]``
    (rows of L elements whose stream positions follow each other): short
    rows go through contiguous tiles and blocks of rows per task; equal to
    the reference bit for bit, into a fresh output and into a strided one,
    from an offset inside a Philox block."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x, keep, packed = _column_case(L, dtype, inner)
    assert x.shape[1] == L
    ops = {
        "dropout": lambda be, **k: fastdrop.dropout(
            x, 0.4, rng=fastdrop.Generator(9, 3), backend=be, **k),
        "alpha": lambda be, **k: fastdrop.alpha_dropout(
            x, 0.4, rng=fastdrop.Generator(9, 1), backend=be, **k),
        "apply bool": lambda be, **k: fastdrop.apply_mask(x, keep, 0.4, backend=be, **k),
        "apply packed": lambda be, **k: fastdrop.apply_mask(x, packed, 0.4, backend=be, **k),
        "gaussian": lambda be, **k: fastdrop.gaussian_dropout(
            x, 0.4, rng=fastdrop.Generator(9, 5), backend=be, **k),
        "noise": lambda be, **k: fastdrop.gaussian_noise(
            x, 0.7, rng=fastdrop.Generator(9, 6), backend=be, **k),
    }
    for name, op in ops.items():
        key = (L, np.dtype(dtype).name, name, inner)
        if key not in _REF:
            _REF[key] = op("reference")
        want = _REF[key]
        assert_array_equal(bits(op("cython")), bits(want), err_msg=name)
        out = np.full((x.shape[0], L + 3), 7, dtype)[:, 1:1 + L]
        op("cython", out=out)
        assert_array_equal(bits(out), bits(want), err_msg=name)
