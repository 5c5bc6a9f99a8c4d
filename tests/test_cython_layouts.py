"""Cython backend paths that only large arrays reach: non-temporal stores
for big caller-provided outputs (any alignment), and the memory-order walk
for Fortran-ordered / transposed layouts; plus in-place on negative strides.
Every result is compared bit for bit with the reference."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from conftest import bits, special_values

pytest.importorskip("fastdrop._cython._kernels")

# every test runs on each hand-written path this CPU has, in this process
pytestmark = pytest.mark.usefixtures("cython_isa")


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = fastdrop.set_num_threads(request.param)
    yield request.param
    fastdrop.set_num_threads(old)


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


LAYOUTS = [
    ("fortran", lambda a: np.asfortranarray(a)),
    ("transposed", lambda a: np.ascontiguousarray(a.T).T),
    ("reversed-fortran", lambda a: np.asfortranarray(a)[::-1]),
]


@pytest.mark.parametrize("name,make", LAYOUTS, ids=[n for n, _ in LAYOUTS])
@pytest.mark.parametrize("shape,noise", [((70001, 3), None), ((300, 401), None),
                                         ((300, 401), (1, 401)), ((300, 401), (300, 1)),
                                         ((3, 70001), None), ((1500, 130), None)])
def test_memory_order_layouts(threads, name, make, shape, noise):
    x = make(special_values(shape, np.float32, seed=4))
    want = fastdrop.dropout(np.ascontiguousarray(x), 0.4, rng=fastdrop.Generator(9, 5),
                            noise_shape=noise, backend="reference")
    y, keep = fastdrop.dropout(x, 0.4, rng=fastdrop.Generator(9, 5), noise_shape=noise,
                               return_mask=True, backend="cython")
    assert_array_equal(bits(y), bits(want))
    y2 = fastdrop.dropout(x, 0.4, rng=fastdrop.Generator(9, 5), noise_shape=noise,
                          backend="cython")
    assert_array_equal(bits(y2), bits(want))
    y3 = fastdrop.apply_mask(x, keep, 0.4, backend="cython")
    assert_array_equal(bits(y3), bits(want))
    out = np.empty_like(x)
    fastdrop.dropout(x, 0.4, rng=fastdrop.Generator(9, 5), noise_shape=noise, out=out,
                     backend="cython")
    assert_array_equal(bits(out), bits(want))


@pytest.mark.parametrize("backend", ["cython", "numba", "reference"])
def test_in_place_on_negative_strides(backend):
    if not fastdrop.get_backends()[backend]["available"]:
        pytest.skip(f"{backend} not available")
    big = special_values((202, 300), np.float64, seed=5)
    before = big.copy()
    v = big[1:-1:2, ::-3]          # strides (4800, -24)
    assert v.strides[1] < 0
    want = fastdrop.dropout(before[1:-1:2, ::-3], 0.5, rng=11, backend="reference")
    r = fastdrop.dropout(v, 0.5, rng=11, out=v, backend=backend)
    assert r is v
    assert_array_equal(bits(big[1:-1:2, ::-3]), bits(want))
    untouched = np.ones(big.shape, bool)
    untouched[1:-1:2, ::-3] = False
    assert_array_equal(bits(big[untouched]), bits(before[untouched]))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("a", [2, 3, 4, 9, 16, 17])
def test_transpose_of_tall_c_array(threads, dtype, a):
    """``c.T`` for a C-contiguous ``(L, a)`` array (a <= 16 takes the memory-order
    AVX-512 walk): ragged blocks and task chunks, odd offsets, a batch whose
    block index crosses 2**32, tie-forcing p; in place and out of place."""
    from fastdrop import reference as R

    L = 70001
    c = special_values((L, a), dtype, seed=a)
    x = c.T
    assert x.strides[0] == c.itemsize
    # thresholds that tie at logical (1, 100): one keeps it, one drops it
    j = 1 * L + 100
    hi = int(R._lanes(7, np.array([(j + 5) >> 3], np.uint64), 0)[0, (j + 5) & 7])
    lo = int(R._lanes(7, np.array([(j + 5) >> 3], np.uint64), 1)[0, (j + 5) & 7])
    ps = [0.3, ((hi << 16) | lo) / 2**32, ((hi << 16) + lo + 1) / 2**32]
    for off, p in [(5, ps[0]), (5, ps[1]), (5, ps[2]), (0, 0.5), (2**35 - 1000, 0.5)]:
        want = fastdrop.dropout(np.ascontiguousarray(x), p, rng=fastdrop.Generator(7, off),
                                backend="reference")
        out = np.empty_like(x)
        assert out.strides == x.strides
        fastdrop.dropout(x, p, rng=fastdrop.Generator(7, off), out=out, backend="cython")
        assert_array_equal(bits(out), bits(want))
        y = c.copy().T  # in place on the same layout
        fastdrop.dropout(y, p, rng=fastdrop.Generator(7, off), out=y, backend="cython")
        assert_array_equal(bits(y), bits(want))
    # out in another layout than x: the logical-order walk, same values
    out_c = np.empty(x.shape, dtype)
    fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(7, 5), out=out_c, backend="cython")
    assert_array_equal(bits(out_c), bits(fastdrop.dropout(
        np.ascontiguousarray(x), 0.3, rng=fastdrop.Generator(7, 5), backend="reference")))
