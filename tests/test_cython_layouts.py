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
    for off in (0, 3, 2**35 - 1003):  # 2**35 - 1003: Philox counter word 1 changes
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


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, "bfloat16"])
def test_large_out_apply_mask_nontemporal_stores(threads, dtype):
    """A stored mask applied into a big caller-provided output (non-temporal
    stores after a head to the first 64-byte line; a fresh output, ordinary
    stores): bool and packed masks, the mask's bits starting anywhere in a
    byte (a packed noise shape's rows), against the reference bit for bit."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    n = (8 << 20) // np.dtype(dtype).itemsize + 37   # over the 8 MiB threshold
    x = special_values((n,), dtype, seed=5)
    keep = np.random.default_rng(9).random(n) < 0.6
    packed = np.packbits(keep, bitorder="little")
    want = fastdrop.apply_mask(x, keep, 0.3, backend="reference")
    assert_array_equal(bits(fastdrop.apply_mask(x, packed, 0.3, backend="cython")), bits(want))
    buf = np.empty(n + 64, dtype)
    base = (-(buf.ctypes.data // buf.itemsize)) % (64 // buf.itemsize)
    for shift in (0, 1, 3):  # output start 0, 1, 3 elements past a 64-byte line
        out = buf[base + shift:base + shift + n]
        for mask in (keep, packed):
            out.fill(7)
            r = fastdrop.apply_mask(x, mask, 0.3, out=out, backend="cython")
            assert r is out
            assert_array_equal(bits(out), bits(want))
    # rows of a packed (rows, 1, L) mask on (rows, 3, L): each row's bits start mid-byte
    rows, L = 4, n // 12 - (n // 12 % 8 == 0)  # 8 MiB or more, L not a multiple of 8
    x3 = x[:rows * 3 * L].reshape(rows, 3, L)
    assert x3.nbytes >= 8 << 20 and L % 8
    m3 = np.random.default_rng(4).random((rows, 1, L)) < 0.5
    p3 = np.packbits(m3.reshape(-1), bitorder="little")
    want3 = fastdrop.apply_mask(x3, m3, 0.3, backend="reference")
    out3 = np.empty_like(x3)
    fastdrop.apply_mask(x3, p3, 0.3, noise_shape=(rows, 1, L), out=out3, backend="cython")
    assert_array_equal(bits(out3), bits(want3))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_large_out_one_decision_per_row(threads, dtype):
    """DropPath (one decision per row) into a big caller-provided output
    (float32 on AVX2 / AVX-512: each row streamed after a head to its first
    64-byte line): rows starting anywhere in a line (a row length not a
    multiple of 64 elements, the output 0, 1 or 3 elements past a line),
    rows padded into a wider array, against the reference bit for bit."""
    L = 4099
    rows = (8 << 20) // (L * np.dtype(dtype).itemsize) + 3   # over the 8 MiB threshold
    x = special_values((rows, L), dtype, seed=6)
    want = fastdrop.drop_path(x, 0.4, rng=fastdrop.Generator(5, 3), backend="reference")
    buf = np.empty(rows * L + 64, dtype)
    base = (-(buf.ctypes.data // buf.itemsize)) % (64 // buf.itemsize)
    for shift in (0, 1, 3):
        out = buf[base + shift:base + shift + rows * L].reshape(rows, L)
        out.fill(7)
        r = fastdrop.drop_path(x, 0.4, rng=fastdrop.Generator(5, 3), out=out, backend="cython")
        assert r is out
        assert_array_equal(bits(out), bits(want))
    wide = np.full((rows, L + 5), 7, dtype)
    out = wide[:, 2:L + 2]
    fastdrop.drop_path(x, 0.4, rng=fastdrop.Generator(5, 3), out=out, backend="cython")
    assert_array_equal(bits(out), bits(want))
    assert_array_equal(bits(wide[:, :2]), bits(np.full((rows, 2), 7, dtype)))
    assert_array_equal(bits(wide[:, L + 2:]), bits(np.full((rows, 3), 7, dtype)))


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


def _every_op(x, keep, packed, noise_shape=None):
    """Each op of the family on x as a function of the backend (and out=):
    dropout, alpha dropout, both stored-mask applies, Gaussian dropout and
    noise (the noise with ``noise_shape``)."""
    return {
        "dropout": lambda be, **k: fastdrop.dropout(
            x, 0.4, rng=fastdrop.Generator(9, 3), backend=be, **k),
        "alpha": lambda be, **k: fastdrop.alpha_dropout(
            x, 0.4, rng=fastdrop.Generator(9, 1), backend=be, **k),
        "apply bool": lambda be, **k: fastdrop.apply_mask(x, keep, 0.4, backend=be, **k),
        "apply packed": lambda be, **k: fastdrop.apply_mask(x, packed, 0.4, backend=be, **k),
        "gaussian": lambda be, **k: fastdrop.gaussian_dropout(
            x, 0.4, rng=fastdrop.Generator(9, 5), backend=be, **k),
        "noise": lambda be, **k: fastdrop.gaussian_noise(
            x, 0.7, rng=fastdrop.Generator(9, 6), noise_shape=noise_shape, backend=be, **k),
    }


def _check_ops(ops, case, strided_out):
    """Each op on the Cython backend, into a fresh output and into
    ``strided_out()``, equals the reference's result bit for bit (cached
    per ``case`` and op: shared by ISAs and thread counts)."""
    for name, op in ops.items():
        key = case + (name,)
        if key not in _REF:
            _REF[key] = op("reference")
        want = _REF[key]
        assert_array_equal(bits(op("cython")), bits(want), err_msg=name)
        out = strided_out()
        op("cython", out=out)
        assert_array_equal(bits(out), bits(want), err_msg=name)


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
    _check_ops(_every_op(x, keep, packed), (L, np.dtype(dtype).name, inner),
               lambda: np.full((x.shape[0], L + 3), 7, dtype)[:, 1:1 + L])


# short rows under two or more outer axes: blocks of 65536 // L whole rows per
# task, one kernel call each (fd_run_rows_each), below L = 1024
SEVERAL_L = [3, 64, 1023, 1024]


def _several_case(L, dtype):
    """Rows of L elements of a 3-D slice whose two outer axes do not merge
    (padded rows, a skipped plane): enough rows for two tasks' blocks and a
    partial third, and its stored masks."""
    a = 3
    b = (2 * (65536 // L) + 5) // a + 1
    big = special_values((a, b + 1, L + 3), dtype, seed=L)
    x = big[:, 1:, 2:2 + L]
    keep = fastdrop.dropout_mask(x.shape, 0.4, rng=4)
    return x, keep, np.packbits(keep.reshape(-1), bitorder="little")


@pytest.mark.parametrize("L", SEVERAL_L)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, "bfloat16"])
def test_short_rows_under_several_outer_axes(threads, L, dtype):
    """Every op on the rows of a 3-D slice (a full mask, consecutive rows'
    stream positions follow each other within a plane) and, with a noise
    shape (A, 1, L), on rows that share their mask positions (the kernels'
    forward called directly: the front end draws such a mask first, then
    applies it); equal to the reference bit for bit, into a fresh output
    and into a strided one, from an offset inside a Philox block."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    from fastdrop import reference
    from fastdrop._cython import _kernels

    x, keep, packed = _several_case(L, dtype)
    shared = (x.shape[0], 1, L)
    ops = _every_op(x, keep, packed, noise_shape=shared)
    ops["dropout shared"] = lambda be, **k: fastdrop.dropout(
        x, 0.4, rng=fastdrop.Generator(9, 3), noise_shape=shared, backend=be, **k)
    _check_ops(ops, (L, np.dtype(dtype).name, "several"),
               lambda: np.full(x.shape[:2] + (L + 3,), 7, dtype)[:, :, 1:1 + L])
    T = fastdrop.reference.threshold(0.4)
    ms = (L, 0, 1)
    want = np.empty_like(x)
    reference.forward(x, want, 9, 3, T, 2.5, ms, shift=1.0, fill=-3.0)
    for out in (np.empty_like(x), np.full(x.shape[:2] + (L + 3,), 7, dtype)[:, :, 1:1 + L]):
        _kernels.forward(x, out, 9, 3, T, 2.5, ms, shift=1.0, fill=-3.0)
        assert_array_equal(bits(out), bits(want), err_msg="forward, shared positions")
