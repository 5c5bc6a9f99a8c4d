"""The Cython backend: bit-exact parity with fastdrop.reference over dtypes,
layouts, noise shapes, thresholds (ties forced), offsets and thread counts,
through the raw kernels and the public API; and the compiled fast path."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from fastdrop import reference as R

K = pytest.importorskip("fastdrop._cython._kernels")
from fastdrop._cython import backend as CB  # noqa: E402

# every test runs on each hand-written path this CPU has (AVX-512, AVX2,
# portable), in this process (conftest.cython_isa)
pytestmark = pytest.mark.usefixtures("cython_isa")

DTYPES = (np.float16, np.float32, np.float64)
UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}
SEED = 0x1234_5678_9ABC_DEF0
OFFSETS = (0, 5, 13, 2**40 + 3, 2**35 - 101)  # the last: block index crosses 2**32
# p = k / 65536 exactly gives Tl = 0 (a tie keeps); the others have Tl != 0.
# A lane ties (hi == Th) with probability 2**-16 whatever p is, so tie_ps()
# below picks p from the stream itself to force ties where a test looks.
P_VALUES = (0.1, 0.5, 0.9, 3 / 65536, (2 * 65536 + 40000) / 2**32, 1 - 7 / 65536,
            (65535 * 65536 + 1) / 2**32)


def values(shape, dtype, seed=0):
    """Normals with NaN, +-inf, -0.0, +0.0 and negatives mixed in."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    v = rng.standard_normal(n).astype(dtype)
    sp = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -1.5, 65504.0], dtype=dtype)
    v[rng.permutation(n)[: max(1, n // 6)] if n else []] = np.resize(sp, max(1, n // 6) if n else 0)
    return v.reshape(shape)


def assert_same(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    assert_array_equal(np.ascontiguousarray(a).view(UINT[a.itemsize]),
                       np.ascontiguousarray(b).view(UINT[b.itemsize]))


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def threads(request):
    old = fastdrop.set_num_threads(request.param)
    yield request.param
    fastdrop.set_num_threads(old)


def mstrides_of(shape, M):
    from fastdrop._api import mask_geometry
    return mask_geometry(shape, M)[1]


def test_module_interface():
    assert CB.available() == (True, "")
    assert set(CB.DTYPES) == {"float16", "float32", "float64"}
    assert fastdrop.get_backends()["cython"]["available"]
    assert K.openmp_enabled() in (True, False)
    assert K.omp_max_threads() >= 1
    assert K.CHUNK % 8 == 0


def test_golden_masks():
    for seed, off, p, n, hexs in [(0, 0, 0.5, 32, "fd630123"), (42, 0, 0.1, 32, "dfbffefa"),
                                  (42, 5, 0.1, 27, "fef5d707")]:
        pk = np.empty((n + 7) // 8, np.uint8)
        K.mask(n, seed, off, R.threshold(p), packed_out=pk)
        assert pk.tobytes().hex() == hexs


# --------------------------------------------------------------- raw kernels

@pytest.mark.parametrize("n", [1, 7, 8, 9, 255, 256, 257, 1000, 2**17 + 3])
@pytest.mark.parametrize("off", OFFSETS)
def test_mask_kernel(n, off, threads):
    for p in P_VALUES + tuple(tie_ps(SEED, off, n)):
        T = R.threshold(p)
        kr = R.keep_range(SEED, off, n, T)
        pr = np.packbits(kr, bitorder="little")
        keep = np.empty(n, bool)
        packed = np.full((n + 7) // 8, 0xAB, np.uint8)
        K.mask(n, SEED, off, T, keep_out=keep, packed_out=packed)
        assert_array_equal(keep, kr)
        assert_array_equal(packed, pr)
        packed2 = np.full_like(packed, 0xCD)
        K.mask(n, SEED, off, T, packed_out=packed2)  # packed only
        assert_array_equal(packed2, pr)


def test_mask_kernel_extreme_thresholds():
    n = 301
    for T, want in ((0, True), (2**32, False)):
        keep = np.empty(n, bool)
        packed = np.empty((n + 7) // 8, np.uint8)
        K.mask(n, 3, 11, T, keep_out=keep, packed_out=packed)
        assert keep.all() == want and (~keep).all() == (not want)
        assert_array_equal(packed, np.packbits(keep, bitorder="little"))


def lane(seed, j, c2):
    return int(R._lanes(seed, np.array([j >> 3], np.uint64), c2)[0, j & 7])


def tie_ps(seed, start, n):
    """p values whose Th equals the high lane at a position inside
    start .. start + n - 1, so that position ties: with Tl = 0 (tie keeps),
    Tl = lo (keeps, boundary), Tl = lo + 1 (drops)."""
    q = start + n // 2
    hi, lo = lane(seed, q, 0), lane(seed, q, 1)
    ps = []
    for tl in (0, lo, lo + 1):
        T = hi * 65536 + tl
        if 0 < T < 2**32 and tl <= 0xFFFF:
            ps.append(T / 2**32)
    assert all(R.threshold(p) >> 16 == hi for p in ps)
    return ps


def test_tie_ps_force_ties():
    for off in OFFSETS:
        ps = tie_ps(SEED, off, 1000)
        q = off + 500
        keeps = [bool(R.keep_range(SEED, q, 1, R.threshold(p))[0]) for p in ps]
        assert keeps[0] and keeps[1] and (len(ps) < 3 or not keeps[2])
        for p in ps:
            for off2 in (q, q - 3):
                pk = np.empty(1, np.uint8)
                K.mask(8, SEED, off2, R.threshold(p), packed_out=pk)
                assert_array_equal(pk, np.packbits(R.keep_range(SEED, off2, 8, R.threshold(p)),
                                                   bitorder="little"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 1000, 2**17 + 3])
def test_forward_kernel_contiguous(dtype, n, threads):
    x = values((n,), dtype, seed=n)
    for off in OFFSETS:
        for p in P_VALUES + tuple(tie_ps(SEED, off, n)):
            T, s = R.threshold(p), 1.0 / (1.0 - p)
            want = np.empty_like(x)
            R.forward(x, want, SEED, off, T, s, (1,))
            got = np.empty_like(x)
            K.forward(x, got, SEED, off, T, s, (1,))
            assert_same(got, want)
            # with both mask outputs (fused path)
            keep = np.empty(n, bool)
            packed = np.empty((n + 7) // 8, np.uint8)
            got2 = np.empty_like(x)
            K.forward(x, got2, SEED, off, T, s, (1,), keep_out=keep, packed_out=packed)
            assert_same(got2, want)
            kr = R.keep_range(SEED, off, n, T)
            assert_array_equal(keep, kr)
            assert_array_equal(packed, np.packbits(kr, bitorder="little"))


def _layouts(dtype):
    base3 = values((5, 6, 7), dtype, seed=3)
    big = values((300, 257), dtype, seed=4)
    yield "0d", values((), dtype)
    yield "empty", np.empty((0, 4), dtype)
    yield "C3", base3
    yield "F3", np.asfortranarray(base3)
    yield "T2", big.T
    yield "F2", np.asfortranarray(big)
    yield "step3", values((3000,), dtype, seed=5)[::3]
    yield "rev", values((1001,), dtype, seed=6)[::-1]
    yield "slice2d", big[1:-1:2, ::-3]
    yield "rows2", big[::2]  # contiguous rows at mask bases r * 257 (not multiples of 8)
    yield "swap3", base3.transpose(2, 0, 1)
    yield "ones", values((1, 9, 1), dtype, seed=7)


def _noise_shapes(shape):
    yield None
    if len(shape) >= 2:
        yield (1,) + shape[1:]
        yield shape[:-1] + (1,)
    if len(shape) == 3:
        yield (shape[0], 1, shape[2])
        yield (1, shape[1], 1)
        yield (1, 1, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_and_apply_kernels_any_layout(dtype, threads):
    for name, x in _layouts(dtype):
        for M in _noise_shapes(x.shape):
            ms = mstrides_of(x.shape, M)
            n = int(np.prod(M if M is not None else x.shape))
            for off in (0, 13):
                for p in [0.5, (2 * 65536 + 40000) / 2**32] + tie_ps(SEED, off, max(n, 1)):
                    T, s = R.threshold(p), 1.0 / (1.0 - p)
                    want = np.empty_like(x)
                    R.forward(x, want, SEED, off, T, s, ms)
                    got = np.empty_like(x)
                    K.forward(x, got, SEED, off, T, s, ms)
                    assert_same(got, want)
                    # stored masks: bool and packed
                    kr = R.keep_range(SEED, off, n, T)
                    got_b = np.empty_like(x)
                    K.apply_mask(x, got_b, ms, s, keep=kr)
                    assert_same(got_b, want)
                    got_p = np.empty_like(x)
                    K.apply_mask(x, got_p, ms, s, packed=np.packbits(kr, bitorder="little"))
                    assert_same(got_p, want)
                    if M is None and x.size:
                        keep = np.empty(n, bool)
                        packed = np.empty((n + 7) // 8, np.uint8)
                        got_m = np.empty_like(x)
                        K.forward(x, got_m, SEED, off, T, s, ms, keep_out=keep,
                                  packed_out=packed)
                        assert_same(got_m, want)
                        assert_array_equal(keep, kr)
                        assert_array_equal(packed, np.packbits(kr, bitorder="little"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_kernel_in_place(dtype, threads):
    for name, x0 in _layouts(dtype):
        # a forced tie: the fix-up must see x before it is overwritten
        p = tie_ps(SEED, 5, max(x0.size, 1))[0]
        T, s = R.threshold(p), 1.0 / (1.0 - p)
        ms = mstrides_of(x0.shape, None)
        want = np.empty_like(x0)
        R.forward(x0, want, SEED, 5, T, s, ms)
        x = x0.copy(order="K") if x0.ndim else x0.copy()
        K.forward(x, x, SEED, 5, T, s, ms)
        assert_same(x, want)


def test_large_forward_thread_independent():
    # several chunks, and a row layout that splits rows into chunks
    x = values((3, 2**17 + 5), np.float32, seed=9)
    T, s = R.threshold(0.3), 1 / 0.7
    arrays = (x, x[:, ::-1], np.asfortranarray(x))
    wants = []
    for arr in arrays:
        w = np.empty_like(arr)
        R.forward(arr, w, SEED, 2**40 + 3, T, s, (arr.shape[1], 1))
        wants.append(w)
    for nt in (1, 2, 3):
        old = fastdrop.set_num_threads(nt)
        try:
            for arr, w in zip(arrays, wants):
                o = np.empty_like(arr)
                K.forward(arr, o, SEED, 2**40 + 3, T, s, (arr.shape[1], 1))
                assert_same(o, w)
        finally:
            fastdrop.set_num_threads(old)


# ---------------------------------------------------------------- public API

@pytest.mark.parametrize("dtype", DTYPES)
def test_public_api_cython_equals_reference(dtype, threads):
    for name, x in _layouts(dtype):
        for M in _noise_shapes(x.shape):
            for p in (0.0, 1.0, 0.5, 0.9, 3 / 65536):
                kw = dict(rng=77, noise_shape=M)
                want = fastdrop.dropout(x, p, backend="reference", **kw)
                assert_same(fastdrop.dropout(x, p, backend="cython", **kw), want)
                for rm in (True, "packed"):
                    w, wm = fastdrop.dropout(x, p, backend="reference", return_mask=rm, **kw)
                    g, gm = fastdrop.dropout(x, p, backend="cython", return_mask=rm, **kw)
                    assert_same(g, w)
                    assert_array_equal(gm, wm)
                    ga = fastdrop.apply_mask(x, gm, p, noise_shape=M if rm == "packed" else None,
                                             backend="cython")
                    assert_same(ga, w)
                # in-place, classic mode
                xc = x.copy()
                r = fastdrop.dropout(xc, p, out=xc, backend="cython", mode="classic", **kw)
                assert r is xc
                assert_same(xc, fastdrop.dropout(x, p, backend="reference", mode="classic", **kw))


def test_public_mask_and_backward():
    for n in (0, 1, 13, 4099):
        for packed in (False, True):
            a = fastdrop.dropout_mask((n,), 0.3, rng=fastdrop.Generator(5, 13), packed=packed,
                                      backend="cython")
            b = fastdrop.dropout_mask((n,), 0.3, rng=fastdrop.Generator(5, 13), packed=packed,
                                      backend="reference")
            assert_array_equal(a, b)
    g = values((40, 33), np.float32)
    a = fastdrop.dropout_backward(g, 0.4, state=(9, 21), backend="cython")
    b = fastdrop.dropout_backward(g, 0.4, state=(9, 21), backend="reference")
    assert_same(a, b)


# ----------------------------------------------------------------- fast path

@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_equals_reference(dtype, threads):
    for shape in [(), (1,), (7,), (1000,), (31, 33), (2**17 + 3,)]:
        x = values(shape, dtype, seed=len(shape))
        for p in (0.0, 1.0, 0.5, 0.1, 3 / 65536, 1):
            want = fastdrop.dropout(x, p, rng=123, backend="reference")
            got = K.fast_dropout(x, p, 123)
            if 0 < p < 1 and isinstance(p, float):
                assert got is not NotImplemented
                assert_same(got, want)
            else:  # p == 0 and p == 1 are the plan's business, not the fast path's
                assert got is NotImplemented
            assert_same(fastdrop.dropout(x, p, rng=123), want)
            g1, g2 = fastdrop.Generator(4, 13), fastdrop.Generator(4, 13)
            assert_same(fastdrop.dropout(x, p, rng=g1),
                        fastdrop.dropout(x, p, rng=g2, backend="reference"))
            assert g1.state == g2.state
            assert g1.offset == 13 + (x.size + 7) // 8 * 8


def test_fast_path_declines_and_errors_match():
    x = np.ones(10, np.float32)
    for args in [(x.tolist(), 0.5, 1), (x[::2], 0.5, 1), (x.astype(np.int32), 0.5, 1),
                 (x, np.nan, 1), (x, 1.5, 1), (x, -0.0 - 1, 1), (x, True, 1), (x, "0.5", 1),
                 (x, 0.5, None), (x, 0.5, -1), (x, 0.5, 2**64), (x, 0.5, np.int64(3)),
                 (np.empty(0, np.float32), 0.5, 1), (x.astype(">f4"), 0.5, 1)]:
        assert K.fast_dropout(*args) is NotImplemented
    for bad_p, exc in ((np.nan, ValueError), (1.5, ValueError), (-1, ValueError),
                       (True, TypeError), ("0.5", TypeError)):
        with pytest.raises(exc):
            fastdrop.dropout(x, bad_p, rng=1)
    with pytest.raises(TypeError, match="int32"):
        fastdrop.dropout(x.astype(np.int32), 0.5, rng=1)
    with pytest.raises(ValueError):
        fastdrop.dropout(x, 0.5, rng=-1)
    # a generator near the end of the stream: same overflow error, not advanced
    g = fastdrop.Generator(1, 2**64 - 4)
    with pytest.raises(ValueError, match="overflow"):
        fastdrop.dropout(x, 0.5, rng=g)
    assert g.offset == 2**64 - 4
    # the fast path leaves no trace on a declined call
    g = fastdrop.Generator(1)
    with pytest.raises(ValueError):
        fastdrop.dropout(x, 2.0, rng=g)
    assert g.offset == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_with_out(dtype, threads):
    for shape in [(), (7,), (31, 33), (2**17 + 3,)]:
        x = values(shape, dtype, seed=len(shape))
        for p in (0.0, 1.0, 0.5, 3 / 65536):
            want = fastdrop.dropout(x, p, rng=fastdrop.Generator(4, 13), backend="reference")
            out = np.full_like(x, 7)
            g = fastdrop.Generator(4, 13)
            fast = K.fast_dropout if 0 < p < 1 else fastdrop.dropout  # p in {0, 1}: the plan
            call = (lambda x_, g_, out_: fast(x_, p, g_, out_)) if fast is K.fast_dropout \
                else (lambda x_, g_, out_: fast(x_, p, rng=g_, out=out_))
            assert call(x, g, out) is out
            assert_same(out, want)
            assert g.offset == 13 + (x.size + 7) // 8 * 8
            y = x.copy()  # in place
            assert call(y, fastdrop.Generator(4, 13), y) is y
            assert_same(y, want)


def test_fast_path_with_out_declines_untouched():
    x = np.ones(10, np.float32)
    unaligned = np.frombuffer(bytearray(41), np.float32, count=10, offset=1)
    ro = np.zeros(10, np.float32)
    ro.flags.writeable = False
    bads = [np.zeros(10, np.float64), np.zeros(9, np.float32), np.zeros((10, 1), np.float32),
            np.zeros(20, np.float32)[::2], ro, np.zeros(10, ">f4"), unaligned, [0.0] * 10]
    for out in bads:
        before = np.array(out, copy=True)
        g = fastdrop.Generator(5)
        assert K.fast_dropout(x, 0.5, g, out) is NotImplemented
        assert g.offset == 0
        assert_array_equal(np.asarray(out), before)
    # partial overlap with x itself: declined, and the public call raises
    # without writing
    buf = np.arange(11, dtype=np.float32)
    before = buf.copy()
    assert K.fast_dropout(buf[:10], 0.5, 1, buf[1:]) is NotImplemented
    with pytest.raises(ValueError, match="overlap"):
        fastdrop.dropout(buf[:10], 0.5, rng=1, out=buf[1:])
    assert_array_equal(buf, before)


def test_public_c_api_header_consistent():
    # the C API (api.pxd) reuses the same kernels; it is compiled in test_cimport
    import os
    from fastdrop._cython import get_include
    for f in ("philox.h", "kernels.h", "avx512.h", "api.pxd"):
        assert os.path.exists(os.path.join(get_include(), f))


def test_stream_scale():
    x = values((2**17 + 9,), np.float32)
    y = np.empty_like(x)
    K.stream_scale(x, y, 1.25)
    assert_same(y, x * np.float32(1.25))
