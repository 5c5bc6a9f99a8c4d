"""Property-based tests (hypothesis) over shapes, strides, dtypes, p and
offsets: every CPU backend equals the reference, and the reference equals
docs/spec.md §4's formula applied to the mask of the logical shape."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

import fastdrop
from conftest import bits, cpu_backends, special_values
from fastdrop import reference

P_VALUES = st.one_of(
    st.sampled_from([0.0, 1.0, 0.5, 0.1, 0.9, 0x1234 / 65536, (0x1234 * 65536 + 7) / 2**32]),
    st.floats(0.0, 1.0, allow_nan=False),
)


@st.composite
def cases(draw):
    ndim = draw(st.integers(0, 3))
    # mostly tiny extents; sometimes one long axis (several tiles and chunks)
    shape = list(draw(st.lists(st.integers(0, 7), min_size=ndim, max_size=ndim)))
    if ndim and draw(st.integers(0, 4)) == 0:
        shape[draw(st.integers(0, ndim - 1))] = draw(st.integers(300, 70000))
    shape = tuple(shape)
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    # a larger base array, then a view with steps (possibly negative) and a
    # transpose, so memory order differs from logical order
    steps = [draw(st.sampled_from([1, 2, -1, -3])) for _ in range(ndim)]
    base_shape = tuple(max(1, s) * abs(k) for s, k in zip(shape, steps))
    base = special_values(base_shape, dtype, seed=draw(st.integers(0, 100)))
    view = base[tuple(slice(None, None, k) for k in steps)]
    view = view[tuple(slice(0, s) for s in shape)]
    if ndim > 1 and draw(st.booleans()):
        perm = draw(st.permutations(range(ndim)))
        view = view.transpose(perm)
    noise = tuple(1 if draw(st.booleans()) else None for _ in range(view.ndim))
    noise = draw(st.sampled_from([None, noise]))
    seed = draw(st.integers(0, 2**64 - 1))
    offset = draw(st.integers(0, 2**64 - 2**20))
    p = draw(P_VALUES)
    return view, noise, seed, offset, p


@given(cases())
def test_backends_match_reference(case):
    x, noise, seed, offset, p = case
    expected = fastdrop.dropout(x, p, rng=fastdrop.Generator(seed, offset), noise_shape=noise,
                                backend="reference")
    for b in cpu_backends():
        plain = fastdrop.dropout(x, p, rng=fastdrop.Generator(seed, offset),
                                 noise_shape=noise, backend=b)
        assert_array_equal(bits(plain), bits(expected))
        got, keep = fastdrop.dropout(x, p, rng=fastdrop.Generator(seed, offset),
                                     noise_shape=noise, backend=b, return_mask=True)
        assert_array_equal(bits(got), bits(expected))
        again = fastdrop.apply_mask(x, keep, p, backend=b)
        assert_array_equal(bits(again), bits(expected))


@given(cases())
def test_reference_is_formula_on_logical_mask(case):
    x, noise, seed, offset, p = case
    M = x.shape if noise is None else tuple(s if m is None else m
                                            for m, s in zip(noise, x.shape))
    keep = fastdrop.dropout_mask(M, p, rng=fastdrop.Generator(seed, offset))
    y = fastdrop.dropout(x, p, rng=fastdrop.Generator(seed, offset), noise_shape=noise,
                         backend="reference")
    ct = np.float64 if x.dtype == np.float64 else np.float32
    scale = 1.0 if p == 1.0 else 1.0 / (1.0 - p)
    with np.errstate(all="ignore"):
        scaled = (np.ascontiguousarray(x).astype(ct) * ct(scale)).astype(x.dtype)
    expected = np.where(np.broadcast_to(keep, x.shape), scaled, x.dtype.type(0))
    if p == 0.0:
        expected = x
    assert_array_equal(bits(y), bits(expected))


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 4096), st.integers(0, 3000),
       P_VALUES)
def test_mask_any_offset(seed, offset, n, p):
    T = reference.threshold(p)
    expected = reference.keep_range(seed, offset, n, T)
    for b in cpu_backends():
        k = fastdrop.dropout_mask(n, p, rng=fastdrop.Generator(seed, offset), backend=b)
        if 0.0 < p < 1.0:
            assert_array_equal(k, expected)
        else:
            assert k.all() == (p == 0.0) or n == 0
        pk = fastdrop.dropout_mask(n, p, rng=fastdrop.Generator(seed, offset), packed=True,
                                   backend=b)
        assert_array_equal(pk, np.packbits(k, bitorder="little"))
