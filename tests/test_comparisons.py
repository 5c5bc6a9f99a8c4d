"""The comparison table (fastdrop._comparisons) drives these parity tests.

For every operation in the table, every available CPU backend and every
dtype it supports, the public-API call must equal the table's reference
equivalent exactly.  The same
table drives ``fastdrop bench`` and the ``bench/`` suite.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from fastdrop._comparisons import COMPARISONS, Case, get_comparison

_BACKENDS = fastdrop.get_backends()
_CPU = [name for name, b in _BACKENDS.items() if b["available"] and name != "cuda"]

_PARAMS = [
    pytest.param(cmp, name, dtype, id=f"{cmp.name}-{name}-{dtype}")
    for cmp in COMPARISONS
    for name in _CPU
    for dtype in _BACKENDS[name]["dtypes"]
]


def _assert_same(got, expected):
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            _assert_same(g, e)
        return
    got = np.asarray(got)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert_array_equal(got, expected)
    if got.dtype.kind == "f":  # dropped elements are +0.0, never -0.0
        assert not np.signbit(got[got == 0]).any()


@pytest.mark.parametrize("shape", [(1000,), (3, 5, 67)], ids=["1d", "3d"])
@pytest.mark.parametrize("p", [0.5, 0.1, 0.0, 1.0])
@pytest.mark.parametrize("cmp,backend,dtype", _PARAMS)
def test_backend_equals_reference(cmp, backend, dtype, p, shape):
    case = Case(shape, dtype, p=p, seed=12345)
    if cmp.name == "gaussian_dropout" and p == 1.0:  # infinite variance: refused
        with pytest.raises(ValueError, match="p < 1"):
            cmp.fastdrop(case, backend)
        return
    expected = cmp.reference(case)
    got = cmp.fastdrop(case, backend)
    if isinstance(got, np.ndarray) and got is case.out:
        got = got.copy()
    _assert_same(got, expected)


def test_every_cpu_backend_is_covered():
    assert "reference" in _CPU
    names = {pr.values[1] for pr in _PARAMS}
    assert names == set(_CPU)


@pytest.mark.parametrize("cmp", COMPARISONS, ids=lambda c: c.name)
def test_numpy_idioms_are_dropout(cmp):
    """The NumPy baselines compute a dropout of the right shape and dtype:
    kept elements are ``x * scale`` (to rounding), the rest zero."""
    case = Case(4096, np.float32, p=0.25, seed=3)
    for idiom, fn in cmp.numpy.items():
        res = fn(case)
        if cmp.name == "mask_packed":
            assert res.dtype == np.uint8 and res.shape == ((case.n + 7) // 8,)
            kept = np.unpackbits(res, count=case.n, bitorder="little").mean()
            assert 0.7 < kept < 0.8, idiom
            continue
        if isinstance(res, tuple):
            y, keep = res
        elif cmp.name == "apply_mask":
            y, keep = res, case.keep
        elif cmp.name == "alpha_dropout":  # dropped: the alpha fill, kept: x * a + b
            a, b, fill = fastdrop._plan.alpha_constants(case.p)
            keep = ~np.isclose(res, fill, rtol=1e-6, atol=0)
            assert 0.7 < keep.mean() < 0.8, idiom
            np.testing.assert_allclose(res[keep], case.x[keep] * a + b, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(res[~keep], fill, rtol=1e-6)
            continue
        elif cmp.name == "gaussian_dropout":  # y / x: mean 1, std sqrt(p / (1 - p))
            r = res.astype(np.float64) / case.x
            assert res.shape == case.x.shape and res.dtype == case.x.dtype, idiom
            sigma = (case.p / (1 - case.p)) ** 0.5
            assert abs(r.mean() - 1) < 5 * sigma / case.n ** 0.5, idiom
            assert abs(r.std() / sigma - 1) < 0.1, idiom
            continue
        elif cmp.name == "gaussian_noise":  # y - x: mean 0, std p
            r = res.astype(np.float64) - case.x
            assert res.shape == case.x.shape and res.dtype == case.x.dtype, idiom
            assert abs(r.mean()) < 5 * case.p / case.n ** 0.5, idiom
            assert abs(r.std() / case.p - 1) < 0.1, idiom
            continue
        elif cmp.name == "drop_path":  # whole rows kept (x * scale) or zero
            rows = res.reshape(64, -1)
            keep = rows.any(axis=1)
            assert not rows[~keep].any() and 0 < keep.sum() < len(keep), idiom
            np.testing.assert_allclose(rows[keep], case.x.reshape(64, -1)[keep] * case.scale,
                                       rtol=1e-6)
            continue
        else:  # x is never 0, so the zeros of y are the dropped elements
            y, keep = res, res != 0
        assert 0.7 < keep.mean() < 0.8, idiom
        assert y.shape == case.x.shape and y.dtype == case.x.dtype, idiom
        np.testing.assert_allclose(y[keep], case.x[keep] * case.scale, rtol=1e-6)
        assert not y[~keep].any()


def test_traffic_and_lookup():
    assert get_comparison("forward").bytes_moved(10, 4) == 80
    assert get_comparison("forward_mask").bytes_moved(10, 2) == 50
    with pytest.raises(ValueError, match="unknown operation"):
        get_comparison("nope")
