"""Keep-rate statistics at >= 10**7 elements.

Seeds are fixed, so these tests are deterministic; the p-value bounds are
far in the tails (a correct stream fails with probability ~1e-6 per test).
"""

import numpy as np
import pytest
from scipy.stats import binomtest

import fastdrop
from fastdrop import reference

N = 10**7
ALPHA = 1e-6
# P(drop) = T / 2**32 exactly; the last two have T's low 16 bits != 0, so
# the tie-break decides a visible share of the elements whose high lane == Th.
PS = [0.1, 0.5, 0.9, 0.25, (0x4CCC * 65536 + 0x8000) / 2**32, (0xFFF0 * 65536 + 0x0001) / 2**32]


def _check_rate(kept, n, p_drop):
    res = binomtest(int(kept), n, 1.0 - p_drop)
    assert res.pvalue > ALPHA, (kept, n, p_drop, res.pvalue)


@pytest.mark.parametrize("p", PS)
def test_keep_rate(p):
    keep = fastdrop.dropout_mask(N, p, rng=fastdrop.Generator(12345, offset=3))
    T = reference.threshold(p)
    _check_rate(keep.sum(), N, T / 2**32)
    # every lane of the 8 per Philox call has the same rate
    for lane in range(8):
        k = keep[(5 + lane) % 8::8]  # offset 3: position j = 3 + i
        _check_rate(k.sum(), k.size, T / 2**32)


@pytest.mark.parametrize("p", PS[-2:])
def test_tie_break_rate(p):
    """Among elements whose high lane equals Th, the keep rate is
    (65536 - Tl) / 65536: the low lane is a fresh uniform 16-bit value."""
    T = reference.threshold(p)
    Th, Tl = T >> 16, T & 0xFFFF
    seed = 777
    nb = 2 * N // 8
    blocks = np.arange(nb, dtype=np.uint64)
    hi = reference._lanes(seed, blocks, 0).reshape(-1)
    ties = np.flatnonzero(hi == Th)
    assert ties.size > 100
    keep = fastdrop.dropout_mask(2 * N, p, rng=seed)
    _check_rate(keep[ties].sum(), ties.size, Tl / 65536)
    assert keep[hi > Th].all() and not keep[hi < Th].any()


def test_dropout_values_rate_and_mean():
    x = np.ones(N, np.float32)
    y = fastdrop.dropout(x, 0.3, rng=99)
    kept = np.count_nonzero(y)
    _check_rate(kept, N, reference.threshold(0.3) / 2**32)
    assert set(np.unique(y).tolist()) == {0.0, float(np.float32(1 / 0.7))}
