"""docs/spec.md §4 (what kept and dropped elements become) and the logical-index
rule of §2, checked on every available CPU backend (the reference alone for
§2) against independent NumPy formulas.  Parity of the backends with the
reference (layouts, out=, in place) is table-driven in ``test_parity.py``."""

import math

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
import cases
from conftest import DTYPES, bits, special_values


def expected_dropout(x, keep, scale):
    """§2 written out independently of the kernels."""
    ct = np.float64 if x.dtype == np.float64 else np.float32
    with np.errstate(all="ignore"):
        y = (x.astype(ct) * ct(scale)).astype(x.dtype)
    return np.where(keep, y, x.dtype.type(0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_forward_matches_formula(backend, dtype, p):
    x = special_values((37, 29), dtype, seed=1)
    keep = fastdrop.dropout_mask(x.shape, p, rng=11)
    y = fastdrop.dropout(x, p, rng=11, backend=backend)
    assert y.dtype == dtype
    assert_array_equal(bits(y), bits(expected_dropout(x, keep, 1 / (1 - p))))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropped_elements_are_positive_zero(backend, dtype):
    x = np.array([np.nan, np.inf, -np.inf, -0.0, -3.0, 2.0] * 50, dtype=dtype)
    y, keep = fastdrop.dropout(x, 0.5, rng=3, return_mask=True, backend=backend)
    assert (~keep).sum() > 0
    dropped = y[~keep]
    assert_array_equal(bits(dropped), np.zeros_like(bits(dropped)))  # +0.0 exactly
    kept = y[keep]
    assert np.isnan(kept[np.isnan(x[keep])]).all()
    assert np.signbit(kept[x[keep] == 0]).tolist() == np.signbit(x[keep][x[keep] == 0]).tolist()


def test_float16_rounding_goes_through_float32():
    # p = 1/3: scale = 1.5 in float64, float32(1.5) exact; choose values whose
    # product rounds differently in float16 arithmetic vs via float32
    x = np.arange(1, 2049, dtype=np.float16) * np.float16(1.0009765625)
    p = 0.3
    keep = fastdrop.dropout_mask(x.shape, p, rng=5)
    y = fastdrop.dropout(x, p, rng=5)
    s32 = np.float32(1.0 / (1.0 - p))
    expected = np.where(keep, (x.astype(np.float32) * s32).astype(np.float16), np.float16(0))
    assert_array_equal(bits(y), bits(expected))


def test_scale_is_cast_once_from_float64():
    p = 0.1
    x = np.full(1000, 3.0, dtype=np.float32)
    y = fastdrop.dropout(x, p, rng=1)
    kept = y[y != 0]
    assert (kept == np.float32(3.0) * np.float32(1.0 / (1.0 - p))).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_p_zero_returns_values_unchanged(backend, dtype):
    x = special_values((64, 3), dtype, seed=2)
    y, keep = fastdrop.dropout(x, 0.0, rng=1, return_mask=True, backend=backend)
    assert_array_equal(bits(y), bits(x))
    assert keep.all()
    assert y is not x


@pytest.mark.parametrize("dtype", DTYPES)
def test_p_one_returns_zeros(backend, dtype):
    x = special_values((64, 3), dtype, seed=3)
    y, packed = fastdrop.dropout(x, 1.0, rng=1, return_mask="packed", backend=backend)
    assert_array_equal(bits(y), np.zeros_like(bits(y)))
    assert not packed.any()


def test_p_zero_and_one_still_consume_the_stream():
    g = fastdrop.Generator(1)
    fastdrop.dropout(np.ones(10), 0.0, rng=g)
    fastdrop.dropout(np.ones(3), 1.0, rng=g)
    assert g.offset == 24


def test_classic_mode_keeps_unscaled_and_scales_in_eval(backend):
    x = special_values((100,), np.float32, seed=4)
    keep = fastdrop.dropout_mask(100, 0.25, rng=9)
    y = fastdrop.dropout(x, 0.25, rng=9, mode="classic", backend=backend)
    assert_array_equal(bits(y), bits(np.where(keep, x, np.float32(0))))
    ev = fastdrop.dropout(x, 0.25, training=False, mode="classic", backend=backend)
    assert_array_equal(bits(ev), bits(x * np.float32(0.75)))


def test_eval_inverted_is_identity_copy():
    x = special_values((10, 10), np.float64, seed=5)
    g = fastdrop.Generator(4)
    y = fastdrop.dropout(x, 0.5, training=False, rng=g)
    assert_array_equal(bits(y), bits(x))
    assert y is not x
    assert g.offset == 0  # evaluation draws no mask


def test_eval_classic_p_one_is_zeros():
    x = np.array([np.nan, 1.0, np.inf])
    assert_array_equal(bits(fastdrop.dropout(x, 1.0, training=False, mode="classic")),
                       np.zeros(3, np.uint64))


def test_return_mask_in_eval_keeps_everything():
    y, keep = fastdrop.dropout(np.ones((2, 3)), 0.5, training=False, return_mask=True)
    assert keep.shape == (2, 3) and keep.all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_regenerates_forward_mask(backend, dtype):
    g = fastdrop.Generator(77, offset=13)
    saved = g.state
    x = special_values((33, 5), dtype, seed=6)
    y, keep = fastdrop.dropout(x, 0.4, rng=g, return_mask=True, backend=backend)
    grad = special_values((33, 5), dtype, seed=7)
    gx_state = fastdrop.dropout_backward(grad, 0.4, state=saved, backend=backend)
    gx_mask = fastdrop.dropout_backward(grad, 0.4, mask=keep, backend=backend)
    packed = np.packbits(keep.ravel(), bitorder="little")
    gx_packed = fastdrop.dropout_backward(grad, 0.4, mask=packed, backend=backend)
    expected = expected_dropout(grad, keep, 1 / 0.6)
    for gx in (gx_state, gx_mask, gx_packed):
        assert_array_equal(bits(gx), bits(expected))


def test_backward_with_int_seed_and_tuple_state():
    x = np.ones((4, 9), np.float32)
    y = fastdrop.dropout(x, 0.5, rng=123)
    assert_array_equal(fastdrop.dropout_backward(x, 0.5, state=123), y)
    y2 = fastdrop.dropout(x, 0.5, rng=fastdrop.Generator(123, 40))
    assert_array_equal(fastdrop.dropout_backward(x, 0.5, state=(123, 40)), y2)


def test_backward_eval_mode():
    g = np.arange(6, dtype=np.float32)
    assert_array_equal(fastdrop.dropout_backward(g, 0.5, training=False), g)
    assert_array_equal(fastdrop.dropout_backward(g, 0.5, training=False, mode="classic"),
                       g * np.float32(0.5))


def test_packed_and_bool_masks_agree_and_unpack(backend):
    for n in (1, 7, 8, 9, 1000, 12345):
        keep = fastdrop.dropout_mask(n, 0.3, rng=n, backend=backend)
        packed = fastdrop.dropout_mask(n, 0.3, rng=n, packed=True, backend=backend)
        assert packed.shape == ((n + 7) // 8,)
        assert_array_equal(packed, np.packbits(keep, bitorder="little"))
        assert_array_equal(fastdrop.unpack_mask(packed, n), keep)


def test_return_mask_matches_dropout_mask(backend):
    x = np.ones((17, 19), np.float64)
    y, keep = fastdrop.dropout(x, 0.7, rng=8, return_mask=True, backend=backend)
    assert_array_equal(keep, fastdrop.dropout_mask((17, 19), 0.7, rng=8))
    _, packed = fastdrop.dropout(x, 0.7, rng=8, return_mask="packed", backend=backend)
    assert_array_equal(packed, fastdrop.dropout_mask((17, 19), 0.7, rng=8, packed=True))


# ---------------------------------------------------------------- noise shapes

@pytest.mark.parametrize("shape,noise", [((6, 5), (1, 5)), ((6, 5), (6, 1)),
                                         ((4, 3, 5), (4, 1, 1)), ((4, 3, 5), (1, 3, 1)),
                                         ((4, 3, 5), (4, 3, 1)), ((4, 3, 5), (None, 1, 5)),
                                         ((2, 1, 3), (2, 1, 1))])
def test_noise_shape_shares_mask(backend, shape, noise):
    x = special_values(shape, np.float32, seed=8)
    y, keep = fastdrop.dropout(x, 0.5, rng=21, noise_shape=noise, return_mask=True,
                               backend=backend)
    M = tuple(s if m is None else m for m, s in zip(noise, shape))
    assert keep.shape == M
    assert_array_equal(keep, fastdrop.dropout_mask(M, 0.5, rng=21))
    assert_array_equal(bits(y), bits(expected_dropout(x, np.broadcast_to(keep, shape), 2.0)))
    # packed mask output and re-application with a noise shape
    y2, packed = fastdrop.dropout(x, 0.5, rng=21, noise_shape=noise, return_mask="packed",
                                  backend=backend)
    assert_array_equal(bits(y2), bits(y))
    y3 = fastdrop.apply_mask(x, packed, 0.5, noise_shape=M, backend=backend)
    assert_array_equal(bits(y3), bits(y))
    y4 = fastdrop.apply_mask(x, keep, 0.5, backend=backend)
    assert_array_equal(bits(y4), bits(y))


def test_noise_shape_generator_advances_by_mask_size():
    g = fastdrop.Generator(0)
    fastdrop.dropout(np.ones((100, 3)), 0.5, rng=g, noise_shape=(1, 3))
    assert g.offset == 8


# -------------------------------------------------------- logical index rule

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", cases.LOGICAL_VIEWS, ids=lambda lay: lay.id)
def test_logical_index_not_memory_address(layout, dtype):
    """The reference on a view (transposed, Fortran, stepped, reversed,
    sliced) is the formula on the view's logical C-order copy and the mask of
    its logical shape (the other backends equal the reference on these
    layouts: test_parity.py)."""
    view = layout.view(layout.buffer(dtype))
    contig = np.ascontiguousarray(view)
    y = fastdrop.dropout(view, 0.5, rng=3, backend="reference")
    assert_array_equal(bits(y), bits(fastdrop.dropout(contig, 0.5, rng=3, backend="reference")))
    keep = fastdrop.dropout_mask(view.shape, 0.5, rng=3, backend="reference")
    assert_array_equal(bits(y), bits(expected_dropout(contig, keep, 2.0)))


def test_zero_d_and_empty(backend):
    x0 = np.float32(3.0) * np.ones((), np.float32)
    y0 = fastdrop.dropout(x0, 0.5, rng=0, backend=backend)  # position 0 is kept for seed 0
    assert y0.shape == () and y0 == np.float32(6.0)
    y0d = fastdrop.dropout(x0, 0.5, rng=1, backend=backend)
    assert y0d.shape == ()
    assert y0d == fastdrop.dropout(np.array([3.0], np.float32), 0.5, rng=1)[0]
    for shape in [(0,), (3, 0), (0, 5, 2)]:
        e = np.ones(shape, np.float64)
        y, keep = fastdrop.dropout(e, 0.5, rng=0, return_mask=True, backend=backend)
        assert y.shape == shape and keep.shape == shape


def test_sub_blocks_compute_their_own_part():
    """A block at global origin g regenerates its part of the global mask."""
    from fastdrop import reference
    from fastdrop._api import mask_geometry

    x = special_values((9, 14), np.float32, seed=10)
    whole = fastdrop.dropout(x, 0.5, rng=fastdrop.Generator(5, 3))
    T = reference.threshold(0.5)
    _, mstrides, _ = mask_geometry(x.shape, None)
    for r0, r1, c0, c1 in [(0, 4, 0, 7), (4, 9, 7, 14), (2, 3, 5, 6)]:
        blk = np.ascontiguousarray(x[r0:r1, c0:c1])
        out = np.empty_like(blk)
        base = r0 * mstrides[0] + c0 * mstrides[1]
        reference.forward(blk, out, 5, 3 + base, T, 2.0, mstrides)
        assert_array_equal(bits(out), bits(whole[r0:r1, c0:c1]))


# ------------------------------------------------------------------ input / rng

def test_read_only_input_is_fine(backend):
    x = special_values((20,), np.float32, seed=13)
    x.flags.writeable = False
    y = fastdrop.dropout(x, 0.5, rng=2, backend=backend)
    assert y.flags.writeable
    assert_array_equal(bits(y), bits(fastdrop.dropout(x.copy(), 0.5, rng=2)))


def test_output_layout_follows_input():
    x = np.asfortranarray(np.ones((5, 4), np.float32))
    assert fastdrop.dropout(x, 0.5, rng=1).flags.f_contiguous


def test_python_lists_and_scalars():
    y = fastdrop.dropout([1.0, 2.0, 3.0], 0.5, rng=0)
    assert y.dtype == np.float64 and y.shape == (3,)


def test_rng_forms():
    x = np.ones(1000, np.float32)
    a = fastdrop.dropout(x, 0.5, rng=np.random.default_rng(5))
    b = fastdrop.dropout(x, 0.5, rng=np.random.default_rng(5))
    assert_array_equal(a, b)
    c = fastdrop.dropout(x, 0.5)
    d = fastdrop.dropout(x, 0.5)
    assert not np.array_equal(c, d)  # fresh entropy each call (2**-1000 chance)
    assert_array_equal(fastdrop.dropout(x, 0.5, rng=7), fastdrop.dropout(x, 0.5, rng=np.uint64(7)))


def test_get_backends_reports_reasons():
    info = fastdrop.get_backends()
    assert set(info) >= {"reference", "cython", "numba", "cuda"}
    for name, v in info.items():
        assert v["available"] or v["reason"], name


@pytest.mark.parametrize("name", ["cython", "numba"])
def test_fresh_output_hint_reaches_the_backend(name, monkeypatch):
    """An output the front end allocates is passed as ``fresh_out=True``
    (ordinary stores, not non-temporal ones), with or without mask outputs;
    a caller's ``out`` is not."""
    if not fastdrop.get_backends()[name]["available"]:
        pytest.skip(f"{name} not available")
    from fastdrop import _dispatch

    mod = _dispatch._load(name)[0]
    real = mod.forward
    calls = []

    def recording(*args, **kwargs):
        calls.append(kwargs.get("fresh_out", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "forward", recording)
    x = special_values((40, 30), np.float32, seed=2)[:, ::2]  # not the fast path
    want, keep = fastdrop.dropout(x, 0.5, rng=1, return_mask=True, backend="reference")
    assert_array_equal(bits(fastdrop.dropout(x, 0.5, rng=1, backend=name)), bits(want))
    y, k = fastdrop.dropout(x, 0.5, rng=1, return_mask=True, backend=name)
    assert_array_equal(bits(y), bits(want))
    assert_array_equal(k, keep)
    out = np.empty(x.shape, np.float32)
    fastdrop.dropout(x, 0.5, rng=1, out=out, return_mask=True, backend=name)
    assert_array_equal(bits(out), bits(want))
    assert calls == [True, True, False]


def test_mask_geometry_memo_gives_the_logical_index():
    """``mask_geometry`` is memoised per ``(shape, noise_shape)`` (a small
    call would spend about 1 us computing it): whatever the spelling of the
    noise shape and however many shapes went through the bounded memo, the
    mask strides give every element the C-order index of its broadcast
    position in the mask (docs/spec.md §2), computed here independently."""
    from fastdrop import _validate

    rng = np.random.default_rng(11)
    for _ in range(700):
        shape = tuple(int(d) for d in rng.integers(0, 4, int(rng.integers(0, 4))))
        ns = tuple(None if rng.random() < 0.3 else (1 if rng.random() < 0.5 else d)
                   for d in shape)
        M = tuple(d if m is None else m for d, m in zip(shape, ns))
        for spelling in (ns, list(ns), None):
            want_M = shape if spelling is None else M
            got = _validate.mask_geometry(shape, spelling)
            assert got == _validate.mask_geometry(shape, spelling)
            assert got[0] == want_M and got[2] == math.prod(want_M)
            for idx in np.ndindex(*shape):
                mi = tuple(0 if m == 1 else i for i, m in zip(idx, want_M))
                want = int(np.ravel_multi_index(mi, want_M)) if want_M else 0
                assert sum(i * s for i, s in zip(idx, got[1])) == want
    assert 0 < len(_validate._GEOMETRIES) <= 256
