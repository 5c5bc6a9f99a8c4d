"""The normal-variate stream v1 (docs/spec.md §10) in its executable form,
fastdrop.reference.normal_range: golden values, the basic-operation
logarithm, the quantile function, chunk independence and statistical
quality (Kolmogorov-Smirnov and tail counts over 10^7 variates)."""

import math
import os

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from fastdrop import reference as R

stats = pytest.importorskip("scipy.stats")
special = pytest.importorskip("scipy.special")

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                    "spec.md")
GOLDEN = ["-0x1.f60e59ec08376p+0", "0x1.1fb8d018e6b0bp-1", "-0x1.0a7cd421f52c3p+0",
          "-0x1.5fedad7be36c1p-4"]


def test_golden_values_and_the_spec_text():
    z = R.normal_range(0, 0, 4)
    assert [v.hex() for v in z] == GOLDEN
    with open(SPEC, encoding="utf-8") as f:
        text = f.read()
    assert all(f"`{g}`" in text for g in GOLDEN)


def test_words_are_the_c2_2_blocks():
    # position j: word j & 3 of Philox at counter (j >> 2, 0, 2, 0)
    w = R.philox4x32_10(np.array([0, 1], np.uint64), 0, 2, 0, 7, 0)
    words = np.stack(w, axis=1).reshape(-1)
    u = (words.astype(np.float64) + 0.5) * 2.0 ** -32
    assert_array_equal(R.normal_range(7, 0, 8), R.ppnd(u))


def test_chunk_and_offset_independence():
    whole = R.normal_range(99, 5, 3 * R.CHUNK + 11)
    parts = np.concatenate([R.normal_range(99, 5, R.CHUNK - 3),
                            R.normal_range(99, 5 + R.CHUNK - 3, 2 * R.CHUNK + 14)])
    assert_array_equal(whole, parts)
    assert_array_equal(R.normal_range(99, 2**64 - 4, 4)[:2],
                       R.normal_range(99, 2**64 - 4, 2))   # the end of the stream


def test_ln_is_basic_operations_within_2_ulp():
    r = np.exp(np.random.default_rng(0).uniform(math.log(2**-33), math.log(0.5), 10**6))
    r = np.concatenate([r, [2.0**-33, 0.5, R.SQRT_HALF, np.nextafter(R.SQRT_HALF, 0)]])
    ref = np.log(r)
    assert (np.abs(R.ln(r) - ref) <= 2 * np.spacing(np.abs(ref))).all()


def test_ppnd_inverts_the_normal_cdf():
    u = np.concatenate([np.linspace(2.0**-33, 1 - 2.0**-33, 100001),
                        [0.075, 0.925, 0.5 - 1e-12, 2.0**-33, 1 - 2.0**-33]])
    z = R.ppnd(u)
    want = special.ndtri(u)
    assert np.max(np.abs(z - want) / np.maximum(np.abs(want), 1.0)) < 1e-13
    # symmetric for the stream's uniforms (w + 0.5) * 2**-32, whose 1 - u is exact
    w = np.random.default_rng(1).integers(0, 2**32, 10**5).astype(np.float64)
    us = (w + 0.5) * 2.0**-32
    assert_array_equal(R.ppnd(1 - us), -R.ppnd(us))


def test_quality_ks_and_tails():
    z = R.normal_range(12345, 0, 10**7)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    for k in (4, 5):
        expected = z.size * 2 * stats.norm.sf(k)
        count = int((np.abs(z) > k).sum())
        assert abs(count - expected) <= 5 * math.sqrt(expected), (k, count, expected)
    assert abs(z.mean()) < 5 / math.sqrt(z.size) and abs(z.std() - 1) < 5e-3
