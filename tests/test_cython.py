"""The Cython backend's own paths: the module interface, golden masks, results
independent of the thread count over several chunks, and the compiled fast
path (``fast_dropout``: what it takes, what it declines, ``out=``).  Parity
with the reference over layouts, offsets, thresholds and dtypes is
table-driven in ``test_parity.py`` (cases in ``cases.py``)."""

import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from cases import DTYPES, assert_same, values
from fastdrop import reference as R

K = pytest.importorskip("fastdrop._cython._kernels")
from fastdrop._cython import backend as CB  # noqa: E402

# every test runs on each hand-written path this CPU has (AVX-512, AVX2,
# portable), in this process (conftest.cython_isa)
pytestmark = pytest.mark.usefixtures("cython_isa")

SEED = 0x1234_5678_9ABC_DEF0


def test_module_interface():
    assert CB.available() == (True, "")
    assert set(CB.DTYPES) == {"float16", "float32", "float64", "bfloat16"}
    assert fastdrop.get_backends()["cython"]["available"]
    # OpenMP only where the worker pool needs it (Windows: no POSIX threads)
    assert K.openmp_enabled() in ((True, False) if sys.platform == "win32" else (False,))
    assert K.default_threads() >= 1
    assert K.CHUNK % 8 == 0


def test_golden_masks():
    for seed, off, p, n, hexs in [(0, 0, 0.5, 32, "fd630123"), (42, 0, 0.1, 32, "dfbffefa"),
                                  (42, 5, 0.1, 27, "fef5d707")]:
        pk = np.empty((n + 7) // 8, np.uint8)
        K.mask(n, seed, off, R.threshold(p), packed_out=pk)
        assert pk.tobytes().hex() == hexs


# ------------------------------------------------------------ threads

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


# ------------------------------------------------------ the select's constants

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shift, fill", [(-0.0, 0.0), (0.0, 0.0), (-0.0, -0.0), (0.0, -0.0),
                                         (-0.0, 1.5), (0.25, 0.0)])
def test_select_constants_signed_zeros(dtype, shift, fill):
    """Plain dropout's constants (shift -0.0, which adds nothing, and fill
    +0.0) take a shorter select in the AVX2 path; a +0.0 shift (which turns
    -0.0 to +0.0) or a -0.0 fill must not: forward (several batches and a
    tail, a Philox block boundary or not) and stored masks, bit for bit."""
    x = values((2000,), dtype, seed=4)
    x[::7] = -0.0
    T, s = R.threshold(0.3), 1 / 0.7
    for off in (0, 5):
        want, got = np.empty_like(x), np.full_like(x, 7)
        R.forward(x, want, SEED, off, T, s, (1,), shift=shift, fill=fill)
        K.forward(x, got, SEED, off, T, s, (1,), shift=shift, fill=fill)
        assert_same(got, want)
    keep = np.random.default_rng(2).random(x.shape) < 0.5
    want, got = np.empty_like(x), np.full_like(x, 7)
    R.apply_mask(x, want, (1,), s, keep, shift=shift, fill=fill)
    K.apply_mask(x, got, (1,), s, keep, shift=shift, fill=fill)
    assert_same(got, want)


@pytest.mark.parametrize("off", [0, 1, 5, 2**35 - 703, 2**35 - 1000, 2**35 - 515, 2**40 + 3])
def test_forward_batch_boundaries(off):
    """The forward's batches (256 positions on AVX2, whose float32 run selects
    a batch inside the rounds of the next): lengths at and around batch
    multiples (the last window of 1 position), offsets inside a Philox block,
    and Philox counter word 1 changing (2**35 - 703: inside a step that
    selects a batch, with the offset inside a block), keep and packed mask
    outputs, against the reference bit for bit."""
    T, s = R.threshold(0.3), 1 / 0.7
    for n in (255, 256, 257, 511, 512, 513, 767, 768, 769, 1025, 4099):
        x = values((n,), np.float32, seed=n)
        want, wkeep, wpk = np.empty_like(x), np.empty(n, bool), np.empty((n + 7) // 8, np.uint8)
        R.forward(x, want, SEED, off, T, s, (1,), wkeep, wpk)
        got, keep, pk = np.full_like(x, 7), np.empty(n, bool), np.empty((n + 7) // 8, np.uint8)
        K.forward(x, got, SEED, off, T, s, (1,), keep, pk)
        assert_same(got, want)
        assert_array_equal(keep, wkeep)
        assert_array_equal(pk, wpk)


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


def test_fast_path_takes_the_default_stream_and_numpy_generators():
    # rng=None (the process's default stream) and a numpy Generator run on the
    # fast path, with the general path's numbers
    from fastdrop._generator import default_stream

    x = np.ones(10, np.float32)
    g = default_stream()
    seed, start = g.seed, g.offset
    y = K.fast_dropout(x, 0.5, None)
    assert y is not NotImplemented and g.offset == start + 16
    assert_array_equal(y, fastdrop.dropout(x, 0.5, rng=fastdrop.Generator(seed, start),
                                           backend="reference"))
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    y = K.fast_dropout(x, 0.5, a)
    assert_array_equal(y, fastdrop.dropout(x, 0.5, rng=b, backend="reference"))


def test_fast_path_makes_the_default_stream_on_first_use():
    # rng=None with no default stream yet (a fresh process, a forked child):
    # the fast path makes it, in the slot default_stream() reads, and uses it
    from fastdrop import _generator

    x = np.ones(10, np.float32)
    _generator._forget_default()
    assert _generator._DEFAULT[0] is None
    y = K.fast_dropout(x, 0.5, None)
    g = _generator._DEFAULT[0]
    assert y is not NotImplemented and g is not None and g is _generator.default_stream()
    assert g.offset == 16
    assert_array_equal(y, fastdrop.dropout(x, 0.5, rng=fastdrop.Generator(g.seed, 0),
                                           backend="reference"))


def test_fast_path_declines_and_errors_match():
    x = np.ones(10, np.float32)
    for args in [(x.tolist(), 0.5, 1), (x[::2], 0.5, 1), (x.astype(np.int32), 0.5, 1),
                 (x, np.nan, 1), (x, 1.5, 1), (x, -0.0 - 1, 1), (x, True, 1), (x, "0.5", 1),
                 (x, 0.5, -1), (x, 0.5, 2**64), (x, 0.5, np.int64(3)),
                 (x, 0.5, np.random.PCG64(1)), (x, 0.5, np.random.SeedSequence(1)),
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


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_returns_the_mask(dtype, threads):
    # return_mask True / "bool" / "packed" on the fast path: the general
    # path's (reference backend's) values, mask, mask shape and Generator advance
    for shape in [(), (7,), (31, 33), (2**17 + 3,)]:
        x = values(shape, dtype, seed=len(shape))
        for p in (0.5, 0.1, 3 / 65536):
            for kind in (True, "bool", "packed"):
                want_y, want_m = fastdrop.dropout(x, p, rng=fastdrop.Generator(4, 13),
                                                  return_mask=kind, backend="reference")
                for out in (None, np.full_like(x, 7)):
                    g = fastdrop.Generator(4, 13)
                    got = K.fast_dropout(x, p, g, out, return_mask=kind)
                    assert got is not NotImplemented
                    y, m = got
                    if out is not None:
                        assert y is out
                    assert_same(y, want_y)
                    assert m.dtype == want_m.dtype and m.shape == want_m.shape
                    assert_array_equal(m, want_m)
                    assert g.offset == 13 + (x.size + 7) // 8 * 8
                    pub_y, pub_m = fastdrop.dropout(x, p, rng=fastdrop.Generator(4, 13),
                                                    out=out, return_mask=kind)
                    assert_same(pub_y, want_y)
                    assert_array_equal(pub_m, want_m)
    # what the fast path leaves to the general path (which validates)
    x = np.ones(10, np.float32)
    for kind in (np.True_, 1, "Bool", None, b"bool"):
        g = fastdrop.Generator(5)
        assert K.fast_dropout(x, 0.5, g, return_mask=kind) is NotImplemented
        assert g.offset == 0
    with pytest.raises(ValueError, match="return_mask"):
        fastdrop.dropout(x, 0.5, rng=1, return_mask="Bool")
    y, m = fastdrop.dropout(x, 0.5, rng=1, return_mask=np.True_)
    assert_array_equal(m, fastdrop.dropout_mask(10, 0.5, rng=1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_backward_equals_reference(dtype, threads):
    # dropout_backward with the mask regenerated from an int seed, a (seed,
    # offset) tuple or a saved Generator.state dict: the compiled fast path
    # gives the reference backend's gradient, for a fresh out, a caller's out
    # and in place; and it is the forward's select applied to grad
    for shape in [(), (7,), (31, 33), (2**17 + 3,)]:
        grad = values(shape, dtype, seed=len(shape) + 1)
        for p in (0.5, 0.1, 3 / 65536):
            gen = fastdrop.Generator(9, 2**40 + 24)
            for state in (123, (5, 3), (5, 2**64 - grad.size), gen.state):
                want = fastdrop.dropout_backward(grad, p, state=state, backend="reference")
                got = K.fast_backward(grad, p, state=state)
                assert got is not NotImplemented
                assert_same(got, want)
                out = np.full_like(grad, 7)
                assert K.fast_backward(grad, p, state=state, out=out) is out
                assert_same(out, want)
                y = grad.copy()
                assert K.fast_backward(y, p, state=state, out=y) is y
                assert_same(y, want)
                assert_same(fastdrop.dropout_backward(grad, p, state=state), want)
            fwd = fastdrop.dropout(grad, p, rng=fastdrop.Generator(9, 2**40 + 24))
            assert_same(K.fast_backward(grad, p, state=gen.state), fwd)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_backward_stored_mask_equals_reference(dtype, threads):
    # dropout_backward(mask=...) and apply_mask with a bool mask of grad's
    # shape or its packed bytes: the compiled fast path gives the reference
    # backend's answer (a fresh out, a caller's out, in place) and the
    # forward of the seed the mask was drawn with
    for shape in [(), (7,), (31, 33), (2**17 + 3,)]:
        grad = values(shape, dtype, seed=len(shape) + 3)
        for p in (0.5, 0.1, 3 / 65536):
            keep = fastdrop.dropout_mask(shape, p, rng=11)
            packed = fastdrop.dropout_mask(shape, p, rng=11, packed=True)
            fwd = fastdrop.dropout(grad, p, rng=11, backend="reference")
            # the same decisions from bool bytes other than 1 and from packed
            # bits past the end set
            keep3 = keep.view(np.uint8).copy()
            keep3 *= np.uint8(3)  # in place: a 0-d array stays an array
            keep3 = keep3.view(bool)
            ragged = packed.copy()
            if grad.size % 8:
                ragged[-1] |= np.uint8(0xFF << (grad.size % 8) & 0xFF)
            for m in (keep, packed, keep3, ragged):
                want = fastdrop.dropout_backward(grad, p, mask=m, backend="reference")
                assert_same(want, fwd)
                got = K.fast_backward(grad, p, m)
                assert got is not NotImplemented
                assert_same(got, want)
                out = np.full_like(grad, 7)
                assert K.fast_backward(grad, p, m, out=out) is out
                assert_same(out, want)
                y = grad.copy()
                assert K.fast_backward(y, p, m, out=y) is y
                assert_same(y, want)
                assert_same(fastdrop.dropout_backward(grad, p, mask=m), want)
                assert_same(fastdrop.apply_mask(grad, m, p), want)
                out = np.full_like(grad, 7)
                assert fastdrop.apply_mask(grad, m, p, out=out) is out
                assert_same(out, want)


def test_fast_backward_stored_mask_large_out():
    # a caller's output of 8 MiB or more (non-temporal stores, as the
    # general path): the general Cython path's answer, bool and packed
    from fastdrop._api import MODES, _backward
    n = 2**21 + 37
    grad = values((n,), np.float32, seed=5)
    keep = fastdrop.dropout_mask(n, 0.3, rng=4)
    for m in (keep, np.packbits(keep, bitorder="little")):
        want = _backward(grad, 0.3, m, None, True, "inverted", None, None, "cython", MODES)
        out = np.full_like(grad, 7)
        assert K.fast_backward(grad, 0.3, m, out=out) is out
        assert_same(out, want)
        assert_same(fastdrop.dropout(grad, 0.3, rng=4), want)


def test_fast_backward_stored_mask_declines_untouched():
    # what the fast path leaves to the general path: declined before
    # anything is written, and the public calls give the general path's
    # answer or error
    g = np.ones((4, 10), np.float32)
    keep = fastdrop.dropout_mask((4, 10), 0.5, rng=1)
    packed = np.packbits(keep.reshape(-1), bitorder="little")
    wide = np.zeros((4, 20), bool)
    wide[:, ::2] = keep
    declined = [
        dict(mask=keep, state=1), dict(mask=keep, backend="numba"),
        dict(mask=keep, backend="reference"), dict(mask=keep, mode="classic"),
        dict(mask=keep, training=False), dict(mask=keep.tolist()),
        dict(mask=wide[:, ::2]), dict(mask=keep[:1]), dict(mask=keep.reshape(-1)),
        dict(mask=keep.reshape(4, 10, 1)), dict(mask=keep.astype(np.int8)),
        dict(mask=packed[:-1]), dict(mask=np.append(packed, 0)), dict(mask=packed.reshape(5, 1)),
        dict(mask=packed, noise_shape=(4, 10)), dict(mask=packed.astype(np.int8)),
    ]
    for kw in declined:
        out = np.full((4, 10), 7, np.float32)
        assert K.fast_backward(g, 0.5, out=out, **kw) is NotImplemented, kw
        assert_array_equal(out, np.full((4, 10), 7, np.float32))
    # an output over the mask's own bytes: declined, nothing written
    buf = np.zeros(48, np.float32)
    m = buf.view(bool)[:40].reshape(4, 10)
    m[...] = keep
    before = buf.copy()
    assert K.fast_backward(g, 0.5, m, out=buf[8:].reshape(4, 10)) is NotImplemented
    assert_array_equal(buf, before)
    # the public calls on declined masks: the general path's answers
    want = fastdrop.apply_mask(g, keep, 0.5, backend="reference")
    for m in (keep[:1], wide[:, ::2], keep.tolist()):
        got = fastdrop.apply_mask(g, m, 0.5)
        ref = fastdrop.apply_mask(g, m, 0.5, backend="reference")
        assert_same(got, ref)
    assert_same(fastdrop.apply_mask(g, wide[:, ::2], 0.5), want)
    for m, exc in [(keep.reshape(-1), ValueError), (keep.astype(np.int8), TypeError),
                   (packed[:-1], ValueError)]:
        with pytest.raises(exc):
            fastdrop.apply_mask(g, m, 0.5)
        with pytest.raises(exc):
            fastdrop.dropout_backward(g, 0.5, mask=m)


class _OddFloat(float):
    """A float whose __float__ disagrees with its stored value."""

    def __float__(self):
        return 0.25


def test_fast_paths_take_p_as_check_p_reads_it():
    # a float subclass is declined (check_p reads float(p)); np.float64 is
    # taken and gives the float's answer
    x = np.ones(64, np.float32)
    assert K.fast_dropout(x, _OddFloat(0.5), 1) is NotImplemented
    assert K.fast_backward(x, _OddFloat(0.5), state=1) is NotImplemented
    assert_array_equal(fastdrop.dropout(x, _OddFloat(0.5), rng=1),
                       fastdrop.dropout(x, 0.25, rng=1, backend="reference"))
    assert_array_equal(fastdrop.dropout_backward(x, _OddFloat(0.5), state=1),
                       fastdrop.dropout_backward(x, 0.25, state=1, backend="reference"))
    assert_array_equal(K.fast_dropout(x, np.float64(0.3), 1),
                       fastdrop.dropout(x, 0.3, rng=1, backend="reference"))
    assert_array_equal(K.fast_backward(x, np.float64(0.3), state=1),
                       fastdrop.dropout_backward(x, 0.3, state=1, backend="reference"))


def test_fast_backward_declines_and_errors_match():
    g = np.ones(10, np.float32)
    keep = fastdrop.dropout_mask(10, 0.5, rng=1)
    declined = [
        dict(state=1, mask=keep), dict(state=1, training=False), dict(state=1, mode="classic"),
        dict(state=1, noise_shape=(10,)), dict(state=1, backend="reference"),
        dict(state=np.int64(1)), dict(state=True), dict(state=-1), dict(state=2**64),
        dict(state=(1, 2, 3)), dict(state=(1, -8)), dict(state=(1, 2**64 - 9)),
        dict(state=(np.int64(1), 0)), dict(state=[1, 0]), dict(state=fastdrop.Generator(1)),
        dict(state={"seed": 1}), dict(state={"seed": 1, "offset": 0, "extra": 0}),
        dict(state={"seed": 1, "offset": 0, "version": 2}),
        dict(state={"seed": 1, "offset": 0, "n_spawned": -1}),
        dict(state={"seed": 1.0, "offset": 0}),
    ]
    for kw in declined:
        out = np.full(10, 7, np.float32)
        assert K.fast_backward(g, 0.5, out=out, **kw) is NotImplemented, kw
        assert_array_equal(out, np.full(10, 7, np.float32))
    for args in [(g.tolist(), 0.5), (g[::2], 0.5), (g.astype(np.int32), 0.5), (g, 0.0),
                 (g, 1.0), (g, 1), (g, np.nan), (np.empty(0, np.float32), 0.5)]:
        assert K.fast_backward(*args, state=1) is NotImplemented
    # the public call on a declined state: the general path's answer or error
    for kw, exc in [(dict(state=(1, 2**64 - 9)), ValueError), (dict(state=-1), ValueError),
                    (dict(state=fastdrop.Generator(1)), TypeError),
                    (dict(state={"seed": 1}), ValueError),
                    (dict(state={"seed": 1, "offset": 0, "version": 2}), ValueError)]:
        with pytest.raises(exc):
            fastdrop.dropout_backward(g, 0.5, **kw)
    for kw in [dict(state=np.int64(1)), dict(state={"seed": 1, "offset": 0, "n_spawned": 3})]:
        assert_array_equal(fastdrop.dropout_backward(g, 0.5, **kw),
                           fastdrop.dropout_backward(g, 0.5, state=(1, 0), backend="reference"))


def test_extension_docstring_examples():
    # pytest's --doctest-modules reads .py files only: run the compiled
    # extension's examples here
    import doctest

    result = doctest.testmod(K, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 50 and result.failed == 0


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
    for f in ("philox.h", "kernels.h", "leaf_avx512.h", "api.pxd"):
        assert os.path.exists(os.path.join(get_include(), f))


def test_stream_scale():
    x = values((2**17 + 9,), np.float32)
    y = np.empty_like(x)
    K.stream_scale(x, y, 1.25)
    assert_same(y, x * np.float32(1.25))
