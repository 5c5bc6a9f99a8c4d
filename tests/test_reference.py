"""Known-answer vectors (Random123) and the golden masks of docs/spec.md §1."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from fastdrop import reference
from fastdrop._numba.philox import py as philox_py

KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]

GOLDEN = [
    (0, 0, 0.5, 32, "10111111110001101000000011000100", "fd630123"),
    (42, 0, 0.1, 32, "11111011111111010111111101011111", "dfbffefa"),
    (42, 5, 0.1, 27, "011111111010111111101011111", "fef5d707"),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_kat_reference(ctr, key, expected):
    out = reference.philox4x32_10(*ctr, *key)
    assert tuple(int(v) for v in out) == expected


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_kat_shared_device_source(ctr, key, expected):
    # the plain-Python form of the one source compiled for Numba CPU and CUDA
    assert tuple(int(v) for v in philox_py.philox4x32_10(*ctr, *key)) == expected


def test_philox_vectorised_matches_scalar():
    c0 = np.arange(100, dtype=np.uint64) * 7919
    vec = reference.philox4x32_10(c0, 3, 1, 0, 0xDEADBEEF, 0x12345678)
    for i in (0, 1, 57, 99):
        one = reference.philox4x32_10(int(c0[i]), 3, 1, 0, 0xDEADBEEF, 0x12345678)
        assert [int(v[i]) for v in vec] == [int(v) for v in one]


@pytest.mark.parametrize("p,T", [(0.0, 0), (1.0, 2**32), (0.5, 2**31), (0.1, 429496730),
                                 (2.0**-33, 0), (3 * 2.0**-33, 2)])
def test_threshold_rounds_half_to_even(p, T):
    assert reference.threshold(p) == T


def _golden_bits(k):
    return "".join("1" if b else "0" for b in k)


@pytest.mark.parametrize("seed,offset,p,n,keep_bits,packed", GOLDEN)
def test_golden_reference(seed, offset, p, n, keep_bits, packed):
    k = reference.keep_range(seed, offset, n, reference.threshold(p))
    assert _golden_bits(k) == keep_bits
    assert np.packbits(k, bitorder="little").tobytes().hex() == packed


@pytest.mark.parametrize("seed,offset,p,n,keep_bits,packed", GOLDEN)
def test_golden_every_backend(backend, seed, offset, p, n, keep_bits, packed):
    k = fastdrop.dropout_mask(n, p, rng=fastdrop.Generator(seed, offset), backend=backend)
    assert _golden_bits(k) == keep_bits
    pk = fastdrop.dropout_mask(n, p, rng=fastdrop.Generator(seed, offset), packed=True,
                               backend=backend)
    assert pk.tobytes().hex() == packed


@pytest.mark.parametrize("seed,offset,p,n,keep_bits,packed", GOLDEN)
def test_golden_shared_device_source(seed, offset, p, n, keep_bits, packed):
    T = reference.threshold(p)
    k = [philox_py.keep_decision(offset + i, seed & 0xFFFFFFFF, seed >> 32, T >> 16, T & 0xFFFF)
         for i in range(n)]
    assert _golden_bits(k) == keep_bits


def test_decision_is_the_32_bit_comparison():
    """The 16-bit lane plus tie-break equals comparing (hi << 16 | lo) with T."""
    seed = 0x0123456789ABCDEF
    n = 4096
    j = np.arange(n, dtype=np.uint64) + np.uint64(2**40 + 3)
    b = j >> np.uint64(3)
    w = ((j & np.uint64(7)) >> np.uint64(1)).astype(np.intp)
    s = (np.uint64(16) * (j & np.uint64(1)))
    hi_words = np.stack(reference.philox4x32_10(b & np.uint64(0xFFFFFFFF), b >> np.uint64(32),
                                                0, 0, seed & 0xFFFFFFFF, seed >> 32))
    lo_words = np.stack(reference.philox4x32_10(b & np.uint64(0xFFFFFFFF), b >> np.uint64(32),
                                                1, 0, seed & 0xFFFFFFFF, seed >> 32))
    hi = (hi_words[w, np.arange(n)] >> s) & np.uint64(0xFFFF)
    lo = (lo_words[w, np.arange(n)] >> s) & np.uint64(0xFFFF)
    u32 = (hi << np.uint64(16)) | lo
    # thresholds that hit ties in this window: T built from observed hi values
    for T in [int(hi[5]) << 16 | 0x8000, int(hi[77]) << 16, int(hi[300]) << 16 | 0xFFFF,
              reference.threshold(0.37)]:
        expected = u32 >= np.uint64(T)
        got = reference.keep_range(seed, 2**40 + 3, n, T)
        assert_array_equal(got, expected)


def test_keep_range_chunking_is_invisible():
    T = reference.threshold(0.3)
    whole = reference.keep_range(9, 11, 3 * reference.CHUNK + 5, T)
    parts = np.concatenate([reference.keep_range(9, 11 + a, b - a, T)
                            for a, b in [(0, 1000), (1000, 1003),
                                         (1003, 3 * reference.CHUNK + 5)]])
    assert_array_equal(whole, parts)


def test_offset_at_top_of_stream():
    """Positions near 2**64 use block counters with a high word (b >> 32)."""
    T = reference.threshold(0.5)
    start = 2**64 - 24
    k = reference.keep_range(5, start, 24, T)
    blocks = [start // 8 + i for i in range(3)]
    for i, blk in enumerate(blocks):
        words = reference.philox4x32_10(blk & 0xFFFFFFFF, blk >> 32, 0, 0, 5, 0)
        lanes = [(int(words[l >> 1]) >> (16 * (l & 1))) & 0xFFFF for l in range(8)]
        assert k[8 * i:8 * i + 8].tolist() == [v >= 32768 for v in lanes]
