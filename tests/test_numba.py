"""Numba CPU backend and ``fastdrop.numba``: what is the Numba backend's own.

Import hygiene, non-temporal stores (``NT_MIN_BYTES``), float16 through
integer conversions, the affine select (docs/spec.md §4: ``keep ? x * scale
+ shift : fill``) on every path of the backend against the reference,
``fastdrop.numba.dropout_inplace`` at p = 0 and 1 (no special case),
results independent of the thread count, concurrent calls and the
``workqueue`` layer, ``fastdrop.numba`` from user ``@njit`` code, Philox
known answers, the compile report, and the Gaussian ``noise`` kernel
(docs/spec.md §10, §11) against ``fastdrop.reference.noise``.  Parity with the reference
over layouts, offsets, thresholds and dtypes is table-driven in
``test_parity.py`` (cases in ``cases.py``).  Every comparison is exact, on
the raw bits (so -0.0 and +0.0 differ, and NaN payloads must match).
"""

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from cases import DTYPES, LAYOUTS, assert_same, lane, unaligned_like, values
from conftest import bits, special_values
from fastdrop import reference as R

numba = pytest.importorskip("numba")

from fastdrop._numba import backend as B  # noqa: E402

SEED = 0x9E3779B97F4A7C15  # exercises both key words


def tie_thresholds(seed, j):
    """Two thresholds whose Th equals the lane of position j: one keeps j
    (lo >= Tl), one drops it (Tl = lo + 1)."""
    hi, lo = lane(seed, j, 0), lane(seed, j, 1)
    return (hi << 16) | lo, (hi << 16) + lo + 1


def scale_of(T):
    p = T / 2**32
    return 1.0 / (1.0 - p) if p < 1.0 else 1.0


# ---------------------------------------------------------------------------
# import hygiene, availability, report
# ---------------------------------------------------------------------------

def test_import_fastdrop_does_not_import_numba():
    code = textwrap.dedent("""
        import sys
        import fastdrop
        import fastdrop._numba.backend
        import fastdrop._numba.philox
        assert 'numba' not in sys.modules, 'numba imported'
        assert 'fastdrop._numba.kernels' not in sys.modules
        assert 'fastdrop.numba' not in sys.modules
        print('ok')
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_available_and_registered():
    assert B.available() == (True, "")
    info = fastdrop.get_backends()["numba"]
    assert info["available"] and set(info["dtypes"]) == {"float16", "float32", "float64",
                                                          "bfloat16"}
    # the compiled fast paths run its common case when the extension is built
    built = fastdrop.get_backends()["cython"]["available"]
    assert info["capabilities"]["fast_path"] is built


# ---------------------------------------------------------------------------
# raw kernels: non-temporal stores, float16
# ---------------------------------------------------------------------------

def _nt_case(dtype, seed):
    """``(n, x, per_line, buf, base, unaligned)`` of the non-temporal store
    tests: n special values (several chunks), elements per 64-byte line, a
    buffer whose element ``base`` starts a line (outputs at ``base + shift``
    start off a line by ``shift`` elements) and an output whose address is
    not a multiple of the item size."""
    n = 2**17 + 1001
    x = special_values((n,), dtype, seed=seed)
    per_line = 64 // x.itemsize
    buf = np.empty(n + 2 * per_line, dtype)
    base = (-(buf.ctypes.data // buf.itemsize)) % per_line
    raw = bytearray((n + 1) * x.itemsize)
    unaligned = np.frombuffer(raw, dtype, count=n, offset=1)
    return n, x, per_line, buf, base, unaligned


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_forward_nontemporal_stores(dtype, threads, monkeypatch):
    """Caller-provided outputs that are not ``x`` take the non-temporal
    store path (threshold lowered so small arrays reach it), with and
    without mask outputs: starts of ``out`` across a 64-byte line (so
    chunks begin with head tiles and whole tiles start inside a Philox
    block, reusing the previous tile's last block), stream offsets off a
    block, p = 0 and 1, ties inside the data and in a reused block; fresh,
    in-place and unaligned outputs (which take ordinary stores) agree too."""
    from fastdrop._numba import kernels as K

    monkeypatch.setattr(K, "NT_MIN_BYTES", 0)
    n, x, per_line, buf, base, unaligned = _nt_case(dtype, seed=6)
    for offset in (0, 3, 2**35 - 101):
        # with out one element past a line, chunk 1's second whole tile
        # starts at 2**16 + (per_line - 1) + 256: a tie there sits in the
        # block reused from the tile before (unless offset + that is a
        # multiple of 8)
        ts = [R.threshold(0.3), (3 << 16) + 1, 0, 2**32]
        ts += list(tie_thresholds(SEED, offset + 2**16 + 300))
        ts += list(tie_thresholds(SEED, offset + 2**16 + per_line - 1 + 256))
        for T in ts:
            ref = np.empty_like(x)
            R.forward(x, ref, SEED, offset, T, scale_of(T), (1,))
            kr = np.empty(n, bool)
            pr = np.empty((n + 7) // 8, np.uint8)
            R.mask(n, SEED, offset, T, keep_out=kr, packed_out=pr)
            for shift in (0, 1, 8 % per_line, per_line - 1):
                out = buf[base + shift:base + shift + n]
                out.fill(7)
                B.forward(x, out, SEED, offset, T, scale_of(T), (1,))
                assert_same(out, ref)
                keep = np.empty(n, bool)
                packed = np.empty((n + 7) // 8, np.uint8)
                for kw in ({"keep_out": keep}, {"packed_out": packed},
                           {"keep_out": keep, "packed_out": packed}):
                    out.fill(7)
                    keep.fill(False)
                    packed.fill(0)
                    B.forward(x, out, SEED, offset, T, scale_of(T), (1,), **kw)
                    assert_same(out, ref)
                    if "keep_out" in kw:
                        assert_array_equal(keep, kr)
                    if "packed_out" in kw:
                        assert_array_equal(packed, pr)
            out = np.empty_like(x)
            B.forward(x, out, SEED, offset, T, scale_of(T), (1,), fresh_out=True)
            assert_same(out, ref)
            y = x.copy()
            B.forward(y, y, SEED, offset, T, scale_of(T), (1,))
            assert_same(y, ref)
            unaligned.fill(7)
            B.forward(x, unaligned, SEED, offset, T, scale_of(T), (1,))
            assert_same(unaligned, ref)


def test_forward_nontemporal_over_threshold(threads):
    """An output over ``NT_MIN_BYTES`` through the public API, unaligned."""
    n = (8 << 20) // 4 + 37
    x = special_values((n,), np.float32, seed=8)
    want = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(7, 3), backend="reference")
    buf = np.empty(n + 1, np.float32)
    out = buf[1:]
    r = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(7, 3), out=out, backend="numba")
    assert r is out
    assert_same(out, want)


@pytest.mark.parametrize("pool", [True, False], ids=["pool", "prange"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_apply_nontemporal_stores(dtype, pool, threads, monkeypatch):
    """A stored mask (bool or packed) into a caller-provided output that is
    not ``x`` takes the non-temporal store path (threshold lowered): starts
    of ``out`` across a 64-byte line (each chunk's head up to its first line;
    packed lines then start inside a mask byte), plain and affine selects,
    on the pool's tasks and the prange kernel; fresh, in-place and unaligned
    outputs (ordinary stores) agree too."""
    from fastdrop._numba import kernels as K

    monkeypatch.setattr(K, "NT_MIN_BYTES", 0)
    if not pool:
        monkeypatch.setattr(B, "_run_tasks", False)
    n, x, per_line, buf, base, unaligned = _nt_case(dtype, seed=9)
    keep = R.keep_range(SEED, 5, n, R.threshold(0.3))
    packed = np.packbits(keep, bitorder="little")
    for a, b, c in [(1 / 0.7, -0.0, 0.0), *SELECTS]:
        for kw in ({"keep": keep}, {"packed": packed}):
            ref = np.empty_like(x)
            R.apply_mask(x, ref, (1,), a, shift=b, fill=c, **kw)
            for shift in (0, 1, 8 % per_line, per_line - 1):
                out = buf[base + shift:base + shift + n]
                out.fill(7)
                B.apply_mask(x, out, (1,), a, shift=b, fill=c, **kw)
                assert_same(out, ref, f"{list(kw)} line+{shift}")
            out = np.empty_like(x)
            B.apply_mask(x, out, (1,), a, shift=b, fill=c, fresh_out=True, **kw)
            assert_same(out, ref)
            y = x.copy()
            B.apply_mask(y, y, (1,), a, shift=b, fill=c, **kw)
            assert_same(y, ref)
            unaligned.fill(7)
            B.apply_mask(x, unaligned, (1,), a, shift=b, fill=c, **kw)
            assert_same(unaligned, ref)


def _guarded(nbytes):
    """A writable uint8 array of ``nbytes`` that ends where an inaccessible
    page begins (a read past its end faults), and the mapping holding it."""
    import ctypes
    import mmap
    page = mmap.PAGESIZE
    pages = (nbytes + page - 1) // page
    mm = mmap.mmap(-1, (pages + 1) * page)
    start = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(start + pages * page, page, 0) == 0, ctypes.get_errno()
    return np.frombuffer(mm, np.uint8, count=pages * page)[pages * page - nbytes:], mm


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through libc")
@pytest.mark.parametrize("pool", [True, False], ids=["pool", "prange"])
def test_apply_reads_no_mask_byte_past_the_end(pool, monkeypatch):
    """The vector lines' wide reads of packed bits (two lines' worth from a
    line's first mask byte) and of bool bytes stay inside the mask: masks
    that end against an inaccessible page, lengths ending inside and at a
    chunk and a mask byte, streamed and cached outputs."""
    from fastdrop._numba import kernels as K

    if not pool:
        monkeypatch.setattr(B, "_run_tasks", False)
    maps = []
    for nt_min in (0, 2**62):
        monkeypatch.setattr(K, "NT_MIN_BYTES", nt_min)
        for dt in (np.float32, np.float64, np.float16):
            for n in (5, 47, 2**16 + 1001, 2**17 - 3, 2**17, 2**17 + 33):
                x = values((n,), dt, seed=n % 97)
                keep = R.keep_range(SEED, 1, n, R.threshold(0.4))
                pk = np.packbits(keep, bitorder="little")
                packed, m1 = _guarded(pk.size)
                packed[:] = pk
                kb, m2 = _guarded(n)
                kb = kb.view(bool)
                kb[:] = keep
                maps += [m1, m2]
                for kw in ({"packed": packed}, {"keep": kb}):
                    ref = np.empty_like(x)
                    R.apply_mask(x, ref, (1,), 2.5, **kw)
                    buf = np.empty(n + 16, dt)
                    for s in (0, 3):
                        out = buf[s:s + n]
                        B.apply_mask(x, out, (1,), 2.5, **kw)
                        assert_same(out, ref, f"{np.dtype(dt).name} n={n} {list(kw)} +{s}")


def test_apply_nontemporal_over_threshold(threads):
    """A stored mask into an output over ``NT_MIN_BYTES`` through the public
    API, unaligned and aligned, bool and packed: the reference's answer."""
    n = (8 << 20) // 4 + 37
    x = special_values((n,), np.float32, seed=10)
    keep = fastdrop.dropout_mask(n, 0.3, rng=2)
    buf = np.empty(n + 16, np.float32)
    for m in (keep, np.packbits(keep, bitorder="little")):
        want = fastdrop.apply_mask(x, m, 0.3, backend="reference")
        for s in (1, (-(buf.ctypes.data // 4)) % 16):
            out = buf[s:s + n]
            assert fastdrop.apply_mask(x, m, 0.3, out=out, backend="numba") is out
            assert_same(out, want)
            out.fill(7)
            assert fastdrop.dropout_backward(x, 0.3, mask=m, out=out, backend="numba") is out
            assert_same(out, want)


@pytest.mark.parametrize("s", [1.0, 1.0 / 0.9, 10.0, 1.0 / (1 - 1 / 3)])
def test_float16_all_bit_patterns(s):
    """float16 -> float32 * scale -> float16 (round to nearest even) for every
    float16 value, subnormals, inf and NaN included."""
    x = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    with np.errstate(all="ignore"):
        expected = (x.astype(np.float32) * np.float32(s)).astype(np.float16)
    out = np.empty_like(x)
    B.forward(x, out, 1, 0, 0, s, (1,))  # T = 0 keeps everything
    assert_same(out, expected)
    out = np.empty_like(x)
    B.forward(x, out, 1, 0, 2**32, s, (1,))  # T = 2**32 drops everything
    assert_same(out, np.zeros_like(x))


def test_integer_half_conversions():
    """The integer float16 <-> float32 code (used where the hardware
    conversions are not, see kernels.NATIVE_F16) against NumPy, for every
    float16 value and for float32 values around every float16 rounding
    boundary, subnormals, overflow, inf and NaN."""
    from fastdrop._numba import kernels as K

    @numba.njit
    def widen(h, out):
        for i in range(h.shape[0]):
            out[i] = K.half_to_float(h[i])

    @numba.njit
    def narrow(f, out):
        for i in range(f.shape[0]):
            out[i] = K.float_to_half(f[i])

    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    f = np.empty(h.size, np.float32)
    widen(h, f)
    assert_array_equal(f.view(np.uint32), h.view(np.float16).astype(np.float32).view(np.uint32))
    # each float16 value widened, and the float32 values 1 and 2 ulps to
    # either side and halfway to the next float16 (ties to even)
    base = f[np.isfinite(f)].view(np.uint32)
    probes = [base, base + 1, base - 1, base + 2, base - 2, base + (1 << 12), base - (1 << 12)]
    g = np.concatenate(probes).astype(np.uint32).view(np.float32)
    payload = np.random.default_rng(3).integers(0, 2**22, 2000, dtype=np.uint32)
    qnans = (payload | np.uint32(0x7FC00000) | (payload << np.uint32(31))).view(np.float32)
    g = np.concatenate([g, qnans,
                        np.float32([np.inf, -np.inf, np.nan, 65520.0, 65519.996, 1e-8])])
    got = np.empty(g.size, np.uint16)
    narrow(g, got)
    with np.errstate(all="ignore"):
        want = g.astype(np.float16).view(np.uint16)
    nan = np.isnan(g)
    assert_array_equal(got[~nan], want[~nan])
    assert np.isnan(got[nan].view(np.float16)).all()
    quiet = nan & ((g.view(np.uint32) & 0x400000) != 0)  # what a product yields
    assert quiet.sum() > 1000
    assert_array_equal(got[quiet], want[quiet])


def test_results_independent_of_threads():
    x = special_values((3 * 2**16 + 11,), np.float32, seed=9)
    outs = []
    for t in (1, 2, 3):
        old = fastdrop.set_num_threads(t)
        try:
            outs.append(fastdrop.dropout(x, 0.3, rng=11, backend="numba", return_mask="packed"))
        finally:
            fastdrop.set_num_threads(old)
    for y, m in outs[1:]:
        assert_same(y, outs[0][0])
        assert_array_equal(m, outs[0][1])


# ---------------------------------------------------------------------------
# the affine select: keep ? x * scale + shift : fill, on every path
# ---------------------------------------------------------------------------

#: (scale, shift, fill) of an affine select other than plain dropout
SELECTS = [(1.7, -0.3, -1.25), (1.0526315789473684, 0.1, 3.0)]
SELECT_IDS = ["sel1.7,-0.3,-1.25", "sel1.05,0.1,3"]

#: raw bits sprinkled into the inputs besides cases.SPECIALS: subnormals
#: (smallest and largest, both signs), the smallest normal, the largest
#: finite value (whose product overflows) and quiet NaNs with payloads
EXTRA_BITS = {
    np.float16: [0x0001, 0x8001, 0x03FF, 0x83FF, 0x0400, 0x7BFF, 0xFBFF, 0x7E01, 0xFE3F],
    np.float32: [0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000,
                 0x7F7FFFFF, 0xFF7FFFFF, 0x7FC12345, 0xFFC00001],
    np.float64: [0x1, 0x8000000000000001, 0x000FFFFFFFFFFFFF, 0x800FFFFFFFFFFFFF,
                 0x0010000000000000, 0x7FEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF,
                 0x7FF8000000012345, 0xFFF8000000000001],
}
UINT = {np.float16: np.uint16, np.float32: np.uint32, np.float64: np.uint64}

#: cases.LAYOUTS through each of the backend's paths: contiguous 1-D (over
#: several CHUNK tasks: forward_contig / apply_contig), a 2-D C array,
#: stepped and reversed 1-D, a transposed 2-D array (the blocked walk of
#: forward_nd), Fortran order, noise shapes (broadcast mask strides), an
#: unaligned transpose (copied first)
SELECT_LAYOUTS = ["C131077", "C4099", "C30x50", "C3000[s3]", "C1001[s-1]",
                  "C300x257.T", "F30x50", "C30x50-noise1x50", "C30x50-noise30x1",
                  "C5x6x7-noise5x1x7", "C300x257.T-noise1x300", "U30x50.T"]


def select_inputs(layout, dtype, seed=0):
    """``x`` laid out as ``layout``: cases.values (NaN, infinities, signed
    zeros, ...) plus :data:`EXTRA_BITS`, and values close to
    ``-shift / scale`` (a sum that cancels: where a fused multiply-add
    would differ)."""
    v = values(layout.base, dtype, seed)
    flat = v.reshape(-1)
    if flat.size:
        rng = np.random.default_rng(seed + 1)
        extra = np.array(EXTRA_BITS[dtype], UINT[dtype]).view(dtype)
        near = np.array([0.3 / 1.7, -0.1 / 1.0526315789473684], dtype)
        near = np.concatenate([near, np.nextafter(near, dtype(1)), np.nextafter(near, dtype(-1))])
        extra = np.concatenate([extra, near])
        pos = rng.choice(flat.size, size=min(flat.size, 3 * extra.size), replace=False)
        flat[pos] = extra[np.arange(pos.size) % extra.size]
    if layout.order == "F":
        v = np.asfortranarray(v)
    elif layout.order == "unaligned":
        v = unaligned_like(v)
    return layout.view(v)


def thresholds_for(offset):
    """A plain threshold, both kinds of tie (the tie-break drops or keeps
    position ``offset + 300``: the tie fix-up writes the fill or leaves the
    select's value), nothing dropped (T = 0) and nothing kept (T = 2**32)."""
    return [R.threshold(0.3), *tie_thresholds(SEED, offset + 300), 0, 2**32]


@pytest.mark.parametrize("sel", SELECTS, ids=SELECT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("lay", SELECT_LAYOUTS)
def test_affine_forward(lay, dtype, sel, threads):
    """``forward(..., shift=, fill=)`` against the reference, raw bits: fresh
    (with the fresh-output hint), caller-provided and in-place outputs, and
    with ``keep_out`` / ``packed_out`` where the mask is not broadcast."""
    layout = LAYOUTS[lay]
    a, b, c = sel
    x = select_inputs(layout, dtype)
    M, ms, n = layout.geometry
    off = 2**35 - 101
    for T in thresholds_for(off):
        ref = np.empty_like(x)
        R.forward(x, ref, SEED, off, T, a, ms, shift=b, fill=c)
        out = np.empty_like(x)
        B.forward(x, out, SEED, off, T, a, ms, shift=b, fill=c)
        assert_same(out, ref, f"T={T}")
        out = np.empty_like(x)
        B.forward(x, out, SEED, off, T, a, ms, shift=b, fill=c, fresh_out=True)
        assert_same(out, ref, f"T={T} fresh_out")
        y = x.copy(order="K")
        B.forward(y, y, SEED, off, T, a, ms, shift=b, fill=c)
        assert_same(y, ref, f"T={T} in place")
        if M == x.shape:
            kr = R.keep_range(SEED, off, n, T)
            keep = np.zeros(n, bool)
            packed = np.full((n + 7) // 8, 0xAB, np.uint8)
            out = np.empty_like(x)
            B.forward(x, out, SEED, off, T, a, ms, keep_out=keep, packed_out=packed,
                      shift=b, fill=c)
            assert_same(out, ref, f"T={T} with mask outputs")
            assert_array_equal(keep, kr)
            assert_array_equal(packed, np.packbits(kr, bitorder="little"))
            for kw in ({"keep_out": np.zeros(n, bool)},
                       {"packed_out": np.zeros((n + 7) // 8, np.uint8)}):
                out = np.empty_like(x)
                B.forward(x, out, SEED, off, T, a, ms, shift=b, fill=c, **kw)
                assert_same(out, ref, f"T={T} {list(kw)}")


@pytest.mark.parametrize("sel", SELECTS, ids=SELECT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_affine_forward_nontemporal(dtype, sel, monkeypatch):
    """The non-temporal store path (threshold lowered), one element off a
    64-byte line (a head tile) and line-aligned, alone and with mask
    outputs, ties in a whole tile included."""
    from fastdrop._numba import kernels as K

    monkeypatch.setattr(K, "NT_MIN_BYTES", 0)
    a, b, c = sel
    n = 2**17 + 1001
    x = select_inputs(LAYOUTS["C131077"], dtype, seed=5)
    x = np.concatenate([x, x[:n - x.size]])
    per_line = 64 // x.itemsize
    buf = np.empty(n + 2 * per_line, dtype)
    base = (-(buf.ctypes.data // buf.itemsize)) % per_line
    off = 3
    for T in [R.threshold(0.3), *tie_thresholds(SEED, off + 2**16 + 300), 2**32]:
        ref = np.empty_like(x)
        R.forward(x, ref, SEED, off, T, a, (1,), shift=b, fill=c)
        kr = R.keep_range(SEED, off, n, T)
        for shift in (0, 1):
            out = buf[base + shift:base + shift + n]
            out.fill(7)
            B.forward(x, out, SEED, off, T, a, (1,), shift=b, fill=c)
            assert_same(out, ref, f"T={T} line+{shift}")
            out.fill(7)
            keep = np.zeros(n, bool)
            packed = np.zeros((n + 7) // 8, np.uint8)
            B.forward(x, out, SEED, off, T, a, (1,), keep_out=keep, packed_out=packed,
                      shift=b, fill=c)
            assert_same(out, ref, f"T={T} line+{shift} with masks")
            assert_array_equal(keep, kr)
            assert_array_equal(packed, np.packbits(kr, bitorder="little"))


@pytest.mark.parametrize("sel", SELECTS, ids=SELECT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("lay", SELECT_LAYOUTS)
def test_affine_apply_mask(lay, dtype, sel):
    """``apply_mask(..., shift=, fill=)`` with stored bool and packed masks
    against the reference: fresh and in place."""
    layout = LAYOUTS[lay]
    a, b, c = sel
    x = select_inputs(layout, dtype, seed=2)
    M, ms, n = layout.geometry
    keep = np.random.default_rng(n).random(n) < 0.6
    packed = np.packbits(keep, bitorder="little")
    ref = np.empty_like(x)
    R.apply_mask(x, ref, ms, a, keep=keep, shift=b, fill=c)
    assert_same(ref, np.where(keep.reshape(M), ref, dtype(c)))  # the fills are there
    for kw in ({"keep": keep}, {"packed": packed}):
        out = np.empty_like(x)
        B.apply_mask(x, out, ms, a, shift=b, fill=c, **kw)
        assert_same(out, ref, str(list(kw)))
        y = x.copy(order="K")
        B.apply_mask(y, y, ms, a, shift=b, fill=c, **kw)
        assert_same(y, ref, f"{list(kw)} in place")


@pytest.mark.parametrize("sel", [(1.0, -0.0, 0.0)] + SELECTS, ids=["plain"] + SELECT_IDS)
def test_affine_float16_all_bit_patterns(sel):
    """Every float16 value through the affine select:
    ``float16(float32(x) * float32(a) + float32(b))`` kept (two float32
    roundings, then one to float16), ``float16(float32(c))`` dropped."""
    a, b, c = sel
    x = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    f32 = np.float32
    with np.errstate(all="ignore"):
        kept = (x.astype(f32) * f32(a) + f32(b)).astype(np.float16)
    for T, want in ((0, kept), (2**32, np.full_like(x, np.float16(f32(c))))):
        out = np.empty_like(x)
        B.forward(x, out, 1, 0, T, a, (1,), shift=b, fill=c)
        assert_same(out, want, f"T={T}")
        ref = np.empty_like(x)
        R.forward(x, ref, 1, 0, T, a, (1,), shift=b, fill=c)
        assert_same(out, ref, f"T={T} reference")
        for kw in ({"keep": np.full(x.size, T == 0)},
                   {"packed": np.full(x.size // 8, 0xFF if T == 0 else 0, np.uint8)}):
            out = np.empty_like(x)
            B.apply_mask(x, out, (1,), a, shift=b, fill=c, **kw)
            assert_same(out, want, f"T={T} {list(kw)}")


def test_plain_select_is_the_old_formula():
    """shift = -0.0 adds nothing: the defaults give ``x * scale`` kept and
    +0.0 dropped, bit for bit, -0.0 and NaN payloads included."""
    for dtype in DTYPES:
        x = select_inputs(LAYOUTS["C1000"], dtype, seed=4)
        ct = np.float64 if dtype == np.float64 else np.float32
        keep = R.keep_range(SEED, 0, x.size, R.threshold(0.3))
        with np.errstate(all="ignore"):
            want = np.where(keep, (x.astype(ct) * ct(1 / 0.7)).astype(dtype), dtype(0))
        out = np.empty_like(x)
        B.forward(x, out, SEED, 0, R.threshold(0.3), 1 / 0.7, (1,))
        assert_same(out, want)
        out = np.empty_like(x)
        B.forward(x, out, SEED, 0, R.threshold(0.3), 1 / 0.7, (1,), shift=-0.0, fill=0.0)
        assert_same(out, want)


def test_public_functions_mix_small_and_large_python_int_seeds():
    """Numba types a Python int as int64 once a function has been compiled
    for one and then refuses 2**63 or more (OverflowError): the public
    functions pass Python ints on as uint64, so small and large seeds and
    positions mix in any order, and njit code still calls them with int64
    or uint64 values."""
    import fastdrop.numba as fdn

    @numba.njit
    def inside(x, seed, offset, p):
        fdn.dropout_inplace(x, seed, offset, p)
        return fdn.keep(seed, offset, p), fdn.keep_threshold(seed, offset, fdn.threshold(p))

    big = 2**63 + 12345
    T = R.threshold(0.3)
    for seed, offset in ((7, 3), (big, 2**63 + 3), (7, 2**64 - 200), (big, 5)):
        want = R.keep_range(seed, offset, 100, T)
        x = np.ones(100, np.float32)
        fdn.dropout_inplace(x, seed, offset, 0.3)
        assert_array_equal(x != 0, want)
        m = np.empty(100, bool)
        fdn.fill_mask(m, seed, offset, 0.3)
        assert_array_equal(m, want)
        assert fdn.keep(seed, offset, 0.3) == want[0]
        assert fdn.keep_threshold(seed, offset, T) == want[0]
        for s, o in ((np.int64(seed), np.int64(offset)) if seed < 2**63 and offset < 2**63
                     else (np.uint64(seed), np.uint64(offset)),):
            y = np.ones(100, np.float32)
            assert inside(y, s, o, 0.3) == (want[0], want[0])
            assert_array_equal(y, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_dropout_inplace_p0_p1(dtype):
    """``fastdrop.numba.dropout_inplace`` has no p = 0 / p = 1 branch: at
    p = 0 (T = 0, scale 1) every value comes back bit for bit (-0.0,
    infinities, subnormals and quiet NaN payloads included), at p = 1
    (T = 2**32, scale inf) every element is +0.0; both as the reference,
    contiguous and strided."""
    import fastdrop.numba as fdn

    x = select_inputs(LAYOUTS["C1000"], dtype, seed=7)
    u = x.view(UINT[dtype])
    assert (u == np.array(EXTRA_BITS[dtype][-1], UINT[dtype])).any()  # a NaN payload
    assert (u == np.array(1 << (8 * x.itemsize - 1), UINT[dtype])).any()  # -0.0
    for view in (lambda v: v, lambda v: v[::-3]):
        for p, T in ((0.0, 0), (1.0, 2**32)):
            assert R.threshold(p) == T
            y = x.copy()
            fdn.dropout_inplace(view(y), SEED, 11, p)
            ref = view(x).copy()
            R.forward(view(x), ref, SEED, 11, T, 1.0, (1,))
            assert_same(view(y), ref, f"p={p}")
            api = fastdrop.dropout(view(x), p, rng=fastdrop.Generator(SEED, 11),
                                   backend="reference")
            assert_same(view(y), api, f"p={p} fastdrop.dropout")
            inside = np.zeros(y.size, bool)
            view(inside)[...] = True
            assert_same(y[~inside], x[~inside], "outside the view")
            if p == 0.0:
                assert_same(y, x)  # unchanged, bit for bit
            else:
                assert_same(view(y), np.zeros_like(view(x)))  # +0.0 everywhere
    with pytest.raises(ValueError):
        fdn.dropout_inplace(x.copy(), 1, 0, float("nan"))
    with pytest.raises(ValueError):
        fdn.dropout_inplace(x.copy(), 1, 0, -0.5)


# ---------------------------------------------------------------------------
# public API with backend="numba": golden values
# ---------------------------------------------------------------------------

def test_api_golden_values():
    keep = fastdrop.dropout_mask(32, 0.5, rng=0, backend="numba")
    assert "".join(str(int(k)) for k in keep) == "10111111110001101000000011000100"
    assert fastdrop.dropout_mask(32, 0.1, rng=42, packed=True,
                                 backend="numba").tobytes().hex() == "dfbffefa"
    g = fastdrop.Generator(42, offset=5)
    x = np.ones(27, np.float64)
    y, packed = fastdrop.dropout(x, 0.1, rng=g, return_mask="packed", backend="numba")
    assert packed.tobytes().hex() == "fef5d707"


# ---------------------------------------------------------------------------
# concurrency
# ---------------------------------------------------------------------------

def test_concurrent_calls_from_threads():
    rng = np.random.default_rng(1)
    jobs = []
    for k in range(48):
        dtype = DTYPES[k % 3]
        shape = [(1000,), (70000,), (30, 50), (200, 301)][k % 4]
        x = special_values(shape, dtype, seed=k)
        if k % 5 == 0:
            x = np.asfortranarray(x)
        ns = (1, shape[1]) if len(shape) == 2 and k % 2 else None
        p = float(rng.choice([0.1, 0.5, 0.9]))
        ref = fastdrop.dropout(x, p, rng=k, noise_shape=ns, return_mask="packed",
                               backend="reference")
        jobs.append((x, p, k, ns, ref))

    def run(job):
        x, p, seed, ns, ref = job
        for _ in range(3):
            y, m = fastdrop.dropout(x, p, rng=seed, noise_shape=ns, return_mask="packed",
                                    backend="numba")
            if not (np.array_equal(bits(y), bits(ref[0])) and np.array_equal(m, ref[1])):
                return False
        return True

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(run, jobs * 3))
    assert all(results)
    assert B.compile_report()["runs_on"] == "pool"


def test_concurrent_large_outputs_and_stored_masks():
    """Four Python threads at once on the paths only large or contiguous
    arrays take: caller-provided outputs over the non-temporal threshold
    (with a bool mask too) and the contiguous stored-mask apply."""
    n = (8 << 20) // 4 + 1000
    jobs = []
    for k in range(4):
        x = special_values((n,), np.float32, seed=20 + k)
        want, keep = fastdrop.dropout(x, 0.3, rng=k, return_mask=True, backend="reference")
        jobs.append((x, k, want, keep, np.packbits(keep, bitorder="little")))

    def run(job):
        x, seed, want, keep, packed = job
        out = np.empty(n + 3, np.float32)[3:]
        ok = True
        for _ in range(2):
            out.fill(7)
            _, k = fastdrop.dropout(x, 0.3, rng=seed, out=out, return_mask=True,
                                    backend="numba")
            ok &= np.array_equal(bits(out), bits(want)) and np.array_equal(k, keep)
            out.fill(7)
            fastdrop.apply_mask(x, packed, 0.3, out=out, backend="numba")
            ok &= np.array_equal(bits(out), bits(want))
        return ok

    with ThreadPoolExecutor(4) as ex:
        assert all(ex.map(run, jobs * 2))


def test_workqueue_layer_is_serialised():
    """Without the compiled extension's pool, under Numba's non-thread-safe
    'workqueue' layer, concurrent calls are serialised by the backend and
    stay correct."""
    code = textwrap.dedent("""
        import numpy as np
        from concurrent.futures import ThreadPoolExecutor
        import fastdrop
        from fastdrop._numba import backend as B
        B._run_tasks = False  # as if the extension were not built: the prange kernels
        x = np.arange(200003, dtype=np.float32) - 1000
        ref = fastdrop.dropout(x, 0.3, rng=5, backend="reference")
        def run(k):
            return all(np.array_equal(fastdrop.dropout(x, 0.3, rng=5, backend="numba"), ref)
                       for _ in range(10))
        with ThreadPoolExecutor(4) as ex:
            ok = all(ex.map(run, range(8)))
        print(ok, B.compile_report()["threading_layer"])
    """)
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "workqueue"], r.stdout + r.stderr


# ---------------------------------------------------------------------------
# fastdrop.numba from user @njit code
# ---------------------------------------------------------------------------

def test_user_njit_functions():
    import fastdrop.numba as fdn

    @numba.njit
    def user(x, seed, offset, p, keeps, m):
        y = x.copy()
        fdn.dropout_inplace(y, seed, offset, p)
        for j in range(keeps.shape[0]):
            keeps[j] = fdn.keep(seed, offset + j, p)
        fdn.fill_mask(m, seed, offset, p)
        return y

    for dtype in (np.float32, np.float64):
        x = special_values((5003,), dtype, seed=2)
        for offset in (0, 5, 2**40 + 3):
            for p in (0.0, 1.0, 0.1, 0.5, 3 / 65536, tie_thresholds(SEED, offset + 7)[1] / 2**32):
                keeps = np.empty(40, np.bool_)
                m = np.empty(5003, np.bool_)
                y = user(x, np.uint64(SEED), np.uint64(offset), p, keeps, m)
                g = fastdrop.Generator(SEED, offset=offset)
                ref = fastdrop.dropout(x, p, rng=g, backend="reference")
                assert_same(y, ref)
                T = R.threshold(p)
                assert_array_equal(keeps, R.keep_range(SEED, offset, 40, T))
                assert_array_equal(m, R.keep_range(SEED, offset, 5003, T))

    # strided 1-D input, and the golden values through keep()
    x = special_values((3000,), np.float32, seed=3)
    y = x[::3].copy()
    fdn.dropout_inplace(x[::3], 42, 0, 0.1)
    assert_same(x[::3], fastdrop.dropout(y, 0.1, rng=42, backend="reference"))
    assert "".join(str(int(fdn.keep(42, 5 + i, 0.1))) for i in range(27)) == \
        "011111111010111111101011111"
    assert fdn.threshold(0.5) == 2**31 and fdn.threshold(1.0) == 2**32
    with pytest.raises(ValueError):
        fdn.dropout_inplace(np.ones(3), 1, 0, 1.5)


def test_njit_philox_known_answers():
    from fastdrop._numba import kernels as K

    @numba.njit
    def kat(c, k):
        return K.philox4x32_10(c[0], c[1], c[2], c[3], k[0], k[1])

    vectors = [
        ((0, 0, 0, 0), (0, 0), "6627e8d5 e169c58d bc57ac4c 9b00dbd8"),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, "408f276d 41c83b0e a20bc7c6 6d5451fd"),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         "d16cfe09 94fdcceb 5001e420 24126ea1"),
    ]
    for c, k, want in vectors:
        got = kat(np.array(c, np.uint32), np.array(k, np.uint32))
        assert " ".join(f"{int(w):08x}" for w in got) == want


def test_compile_report_and_stream_scale():
    x = np.arange(100, dtype=np.float32)
    out = np.empty_like(x)
    B.stream_scale(x, out, 2.0)
    assert_array_equal(out, x * np.float32(2.0))
    rep = B.compile_report()
    assert rep["numba_version"] == numba.__version__
    kinds = {e["kernel"] for e in rep["entries"]}
    assert {"forward_contig task", "stream_scale task"} <= kinds
    assert rep["runs_on"] == "pool"
    for e in rep["entries"]:
        assert e["source"] in ("compiled", "cache", "import", "memory")
        assert e["seconds"] >= 0
    assert rep["compile_seconds"] + rep["cache_load_seconds"] > 0


# ---------------------------------------------------------------------------
# Gaussian dropout and noise: noise(x, out, seed, offset, mstrides, a, b, op)
# against fastdrop.reference.noise (docs/spec.md §10, §11), raw bits
# ---------------------------------------------------------------------------

def _sigma(p):
    return float(np.sqrt(p / (1.0 - p)))  # one rounded division, one rounded sqrt


#: (a, b, op): Gaussian dropout at p = 0.1, 0.5, 0.9 and Gaussian noise
NOISE_PARAMS = [(1.0, _sigma(p), "mul") for p in (0.1, 0.5, 0.9)] + [
    (-0.0, 0.1, "add"), (-0.0, 3.0, "add")]
#: cases.LAYOUTS for noise: 0-d, empty, 1-D contiguous (one tile, several
#: tiles, over two CHUNK tasks), stepped and reversed, a 2-D stepped and
#: reversed view, transposed (inner axis contiguous in the mask, strided in
#: memory), Fortran order (rows longer than a CHUNK), noise shapes (mask
#: strides 0, and mask strides other than 0 and 1 on the inner axis), an
#: unaligned transpose (copied first)
NOISE_LAYOUTS = ["0d", "empty0", "C0x4-noise1x4", "C1", "C13", "C1000", "C131077",
                 "C3000[s3]", "C1001[s-1]", "C300x257[1:-1:2,s-3]", "C300x257.T",
                 "F30x50", "F3x70001", "C30x50-noise1x50", "C30x50-noise30x1",
                 "C5x6x7-noise5x1x7", "C5x6x7.transpose(2,0,1)-noise7x1x6",
                 "C300x257.T-noise1x300", "U30x50.T"]


def noise_offsets(n):
    """Offsets 0 and 3, the normal stream's block index (j >> 2) crossing
    2**32, the mask stream's (j >> 3) crossing 2**32, and the end of the
    stream."""
    return [0, 3, 2**34 - 5, 2**35 - 101, 2**64 - max(n, 1)]


def test_noise_constants_match_reference():
    from fastdrop._numba import kernels as K

    assert K.NORMAL_C2 == R.NORMAL_C2
    for name in ("LN2_HI", "LN2_LO", "SQRT_HALF", "LN_SERIES", "PPND_A", "PPND_B",
                 "PPND_C", "PPND_D"):
        assert getattr(K, name) == getattr(R, name), name
    assert "normal" in fastdrop.get_backends()["numba"]["capabilities"]["sources"]


@pytest.mark.parametrize("seed", [SEED, 0, 2**64 - 1])
def test_noise_z_is_the_normal_stream(seed):
    """a = 0, b = 1, op "add" on float64 zeros gives z itself: the
    variates of reference.normal_range, bit for bit, around every offset
    (and the scalar path, mask stride 3, too)."""
    n = 3 * 2**16 + 1001
    for off in noise_offsets(n):
        want = R.normal_range(seed, off, n)
        x = np.zeros(n)
        out = np.full(n, np.nan)
        B.noise(x, out, seed, off, (1,), 0.0, 1.0, "add")
        assert_array_equal(out.view(np.uint64), want.view(np.uint64), err_msg=f"off={off}")
        m = 1001
        out = np.full(m, np.nan)
        B.noise(np.zeros(m), out, seed, off, (3,), 0.0, 1.0, "add")
        want = R.normal_range(seed, off, 3 * m - 2)[::3]
        assert_array_equal(out.view(np.uint64), want.view(np.uint64), err_msg=f"off={off} s3")


def test_noise_golden_values():
    """docs/spec.md §10 and §11 golden values."""
    out = np.empty(4)
    B.noise(np.zeros(4), out, 0, 0, (1,), 0.0, 1.0, "add")
    assert [v.hex() for v in out.tolist()] == [
        "-0x1.f60e59ec08376p+0", "0x1.1fb8d018e6b0bp-1", "-0x1.0a7cd421f52c3p+0",
        "-0x1.5fedad7be36c1p-4"]
    x = np.arange(8, dtype=np.float32)
    out = np.empty_like(x)
    B.noise(x, out, 0, 0, (1,), 1.0, _sigma(0.5), "mul")
    assert out.view(np.uint32).tolist() == [
        2147483648, 1070067252, 3181890882, 1076855004, 1080827157, 3204644587,
        1094821364, 1085654836]
    B.noise(x, out, 0, 0, (1,), -0.0, 0.1, "add")
    assert out.view(np.uint32).tolist() == [
        3192443530, 1065824620, 1072868597, 1077900091, 1082097850, 1083996406,
        1086538052, 1088382359]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("lay", NOISE_LAYOUTS)
def test_noise_matches_reference(lay, dtype, threads):
    """Every (a, b, op) of :data:`NOISE_PARAMS` at every offset of
    :func:`noise_offsets`, inputs with NaN, infinities, signed zeros and
    subnormals (:func:`select_inputs`): a fresh output, in place on the
    same view, and (at one offset) an output laid out unlike ``x``."""
    layout = LAYOUTS[lay]
    x = select_inputs(layout, dtype)
    M, ms, n = layout.geometry
    for off in noise_offsets(n):
        for a, b, op in NOISE_PARAMS:
            msg = f"off={off} a={a} b={b} op={op}"
            ref = np.empty_like(x)
            R.noise(x, ref, SEED, off, ms, a, b, op)
            out = np.empty_like(x)
            B.noise(x, out, SEED, off, ms, a, b, op)
            assert_same(out, ref, msg)
            y = select_inputs(layout, dtype)  # the same view of a new buffer
            B.noise(y, y, SEED, off, ms, a, b, op)
            assert_same(y, ref, msg + " in place")
            if off == 3 and x.ndim:
                out = np.full(x.shape[::-1], 7, dtype).T
                B.noise(x, out, SEED, off, ms, a, b, op)
                assert_same(out, ref, msg + " transposed out")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_noise_broadcast_mask_strides(dtype, threads):
    """x of shape (4, 5, 6) (C, Fortran, reversed, transposed-back views)
    with mask strides that broadcast: one z per (i, j) row, per i, per
    (i, k), one for everything; and the full mask."""
    base = special_values((4, 5, 6), dtype, seed=3)
    views = {"C": base, "F": np.asfortranarray(base), "rev": base.copy()[::-1, :, ::-1],
             "T": np.ascontiguousarray(base.transpose(2, 1, 0)).transpose(2, 1, 0)}
    for name, x in views.items():
        for ms in [(5, 1, 0), (1, 0, 0), (6, 0, 1), (0, 0, 0), (30, 6, 1), (0, 6, 1)]:
            n = 1 + sum((s - 1) * m for s, m in zip(x.shape, ms))
            for off in noise_offsets(n):
                for a, b, op in (NOISE_PARAMS[1], NOISE_PARAMS[3]):
                    msg = f"{name} ms={ms} off={off} op={op}"
                    ref = np.empty_like(x)
                    R.noise(x, ref, SEED, off, ms, a, b, op)
                    out = np.empty_like(x)
                    B.noise(x, out, SEED, off, ms, a, b, op)
                    assert_same(out, ref, msg)
                    y = x.copy(order="K")
                    B.noise(y, y, SEED, off, ms, a, b, op)
                    assert_same(y, ref, msg + " in place")


@pytest.mark.parametrize("op", ["mul", "add"])
def test_noise_float16_all_bit_patterns(op):
    """Every float16 input (NaN payloads, subnormals, infinities) through
    the float32 compute type and back."""
    x = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    a, b = (1.0, _sigma(0.3)) if op == "mul" else (-0.0, 0.7)
    ref = np.empty_like(x)
    R.noise(x, ref, SEED, 2**35 - 101, (1,), a, b, op)
    out = np.empty_like(x)
    B.noise(x, out, SEED, 2**35 - 101, (1,), a, b, op)
    assert_array_equal(out.view(np.uint16), ref.view(np.uint16))


def test_noise_independent_of_threads():
    x = special_values((5 * 2**16 + 77,), np.float32, seed=12)
    ref = np.empty_like(x)
    R.noise(x, ref, SEED, 11, (1,), 1.0, _sigma(0.25), "mul")
    for t in (1, 2, 3):
        old = fastdrop.set_num_threads(t)
        try:
            out = np.empty_like(x)
            B.noise(x, out, SEED, 11, (1,), 1.0, _sigma(0.25), "mul")
        finally:
            fastdrop.set_num_threads(old)
        assert_array_equal(out.view(np.uint32), ref.view(np.uint32), err_msg=f"threads={t}")


def test_noise_bad_op():
    x = np.ones(3)
    with pytest.raises(ValueError, match="op"):
        B.noise(x, np.empty_like(x), 0, 0, (1,), 1.0, 0.5, "sub")


def test_ppnd_extreme_words():
    """The kernels' AS 241 on the words a random test rarely draws: the
    ends of the uniform range (u = 2**-33, 1 - 2**-33), around u = 1/2,
    both sides of each branch switch |u - 1/2| = 0.425, and random words;
    bit for bit with reference.ppnd."""
    from fastdrop._numba import kernels as K

    @numba.njit(error_model="numpy")
    def z_of(words):
        out = np.empty(words.shape[0])
        for e in range(words.shape[0]):
            out[e] = K.ppnd_spec(K.uniform_of_word(words[e]))
        return out

    edge = [0, 1, 2, 3, 2**31 - 2, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 3, 2**32 - 2, 2**32 - 1]
    for u in (0.075, 0.925):
        w = int(u * 2**32 - 0.5)
        edge += list(range(w - 3, w + 4))
    rng = np.random.default_rng(5)
    words = np.concatenate([np.array(edge, np.uint64),
                            rng.integers(0, 2**32, 2**16, dtype=np.uint64)]).astype(np.uint32)
    u = (words.astype(np.float64) + 0.5) * 2.0**-32
    assert_array_equal(z_of(words).view(np.uint64), R.ppnd(u).view(np.uint64))
    q = np.abs(u[:len(edge)] - 0.5)
    assert (q <= 0.425).any() and (q > 0.425).any()


# ---------------------------------------------------------------------------
# the two ways the kernels run: tasks on fastdrop's worker pool (the default)
# and the prange kernels on Numba's threads (the extension not built)
# ---------------------------------------------------------------------------

def _every_path(x, xt):
    """Each backend entry point on a contiguous array ``x`` (several CHUNK
    tasks) and a transposed one ``xt`` (the blocked walk), with masks."""
    T = R.threshold(0.3)
    res = []
    out = np.empty_like(x)
    keep = np.empty(x.size, bool)
    packed = np.empty((x.size + 7) // 8, np.uint8)
    B.forward(x, out, 7, 3, T, 1.5, (1,), keep_out=keep, packed_out=packed)
    res += [out.copy(), keep.copy(), packed.copy()]
    outt = np.empty_like(xt)
    B.forward(xt, outt, 7, 3, T, 1.5, (xt.shape[1], 1))
    res.append(outt.copy())
    B.forward(xt, outt, 7, 3, T, 1.5, (0, 1))  # noise shape (1, n): broadcast rows
    res.append(outt.copy())
    B.apply_mask(x, out, (1,), 1.5, packed=packed)
    res.append(out.copy())
    B.mask(x.size, 7, 3, T, keep_out=keep)
    res.append(keep.copy())
    B.noise(xt, outt, 7, 3, (xt.shape[1], 1), 1.0, 0.5, "mul")
    res.append(outt.copy())
    B.stream_scale(x, out, 2.0)
    res.append(out.copy())
    return res


def test_prange_kernels_without_the_pool(monkeypatch):
    """The prange kernels (what runs when the extension is not built) give
    the pool tasks' bits on every entry point, at 1 and 2 threads."""
    x = special_values((2 * 2**16 + 77,), np.float32, seed=3)
    xt = special_values((300, 257), np.float32, seed=4).T
    pooled = _every_path(x, xt)
    assert B.compile_report()["runs_on"] == "pool"
    monkeypatch.setattr(B, "_run_tasks", False)
    assert B.compile_report()["runs_on"] == "numba"
    for t in (1, 2):
        old = fastdrop.set_num_threads(t)
        try:
            for a, b in zip(_every_path(x, xt), pooled):
                assert_array_equal(bits(a) if a.dtype.kind == "f" else a,
                                   bits(b) if b.dtype.kind == "f" else b)
        finally:
            fastdrop.set_num_threads(old)


def test_task_slots_agree_with_the_extension():
    C = pytest.importorskip("fastdrop._cython._kernels")
    K = pytest.importorskip("fastdrop._numba.kernels")
    assert C.TASK_SLOTS == K.TASK_SLOTS


def test_pool_tasks_leave_numba_threads_alone():
    before = numba.get_num_threads()
    fastdrop.dropout(np.ones(3 << 16, np.float32), 0.5, rng=1, backend="numba")
    assert numba.get_num_threads() == before


def test_unknown_task_kernel():
    with pytest.raises(ValueError, match="unknown kernel"):
        B._kernels().task_cfunc("nope", np.float32, np.float32)


# ---------------------------------------------------------------------------
# the compiled fast paths with backend="numba": the Cython extension's
# fast_dropout / fast_backward run the backend's registered forward_contig
# task, skipping its Python-level call
# ---------------------------------------------------------------------------

def _registered(C, dtype):
    """Make the backend register its forward_contig task for ``dtype`` (one
    general-path call; idempotent) and return the task's address."""
    st = np.uint16 if dtype == np.float16 else dtype
    B.forward(np.ones(8, dtype), np.empty(8, dtype), 1, 0, R.threshold(0.5), 2.0, (1,))
    return B._tasks[("forward_contig", np.dtype(st).char)].address


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [1, 1000, 2**16, 3 * 2**16 + 77])
def test_fast_path_runs_the_numba_task(dtype, n, threads, monkeypatch):
    """Once the backend has its task, the public calls of the fast paths'
    common case never reach its Python forward, and give the reference's
    bits: int seed, Generator, NumPy Generator, default stream, out=, in
    place, bool and packed masks, the gradient from a seed, an offset and a
    saved state."""
    C = pytest.importorskip("fastdrop._cython._kernels")
    _registered(C, dtype)

    def general(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(B, "forward", general)
    x = special_values((n,), dtype, seed=n)
    p = 0.3
    ref = fastdrop.dropout(x, p, rng=SEED, backend="reference")
    keep, packed = fastdrop.dropout_mask(n, p, rng=SEED), fastdrop.dropout_mask(n, p, rng=SEED,
                                                                                packed=True)
    assert_same(fastdrop.dropout(x, p, rng=SEED, backend="numba"), ref)
    out = np.full_like(x, 7)
    assert fastdrop.dropout(x, p, rng=SEED, out=out, backend="numba") is out
    assert_same(out, ref)
    y = x.copy()
    fastdrop.dropout(y, p, rng=SEED, out=y, backend="numba")
    assert_same(y, ref)
    r, k = fastdrop.dropout(x, p, rng=SEED, return_mask=True, backend="numba")
    assert_same(r, ref)
    assert_array_equal(k, keep)
    r, k = fastdrop.dropout(x, p, rng=SEED, return_mask="packed", backend="numba")
    assert_same(r, ref)
    assert_array_equal(k, packed)
    g = fastdrop.Generator(SEED, 5)
    assert_same(fastdrop.dropout(x, p, rng=g, backend="numba"),
                fastdrop.dropout(x, p, rng=fastdrop.Generator(SEED, 5), backend="reference"))
    assert g.offset == 5 + ((n + 7) & -8)
    fastdrop.dropout(x, p, backend="numba")  # the default stream: runs, advances
    assert_same(fastdrop.dropout(x, p, rng=np.random.default_rng(4), backend="numba"),
                fastdrop.dropout(x, p, rng=np.random.default_rng(4), backend="reference"))
    assert_same(fastdrop.dropout_backward(x, p, state=SEED, backend="numba"), ref)
    state = {"seed": SEED, "offset": 13}
    expect = fastdrop.dropout_backward(x, p, state=(SEED, 13), backend="reference")
    assert_same(fastdrop.dropout_backward(x, p, state=(SEED, 13), backend="numba"), expect)
    assert_same(fastdrop.dropout_backward(x, p, state=state, backend="numba"), expect)


def test_fast_path_numba_nontemporal(threads, monkeypatch):
    """A caller's output over ``NT_MIN_BYTES`` (non-temporal stores) on the
    fast path, against the reference and a fresh output (ordinary stores)."""
    C = pytest.importorskip("fastdrop._cython._kernels")
    _registered(C, np.float32)
    monkeypatch.setattr(B, "forward", None)  # the general path would fail
    n = (8 << 20) // 4 + 61
    x = special_values((n,), np.float32, seed=2)
    out = np.full_like(x, 7)
    fastdrop.dropout(x, 0.4, rng=SEED, out=out, backend="numba")
    assert_same(out, fastdrop.dropout(x, 0.4, rng=SEED, backend="reference"))
    assert_same(fastdrop.dropout(x, 0.4, rng=SEED, backend="numba"), out)


def test_fast_path_declines_numba_without_its_task():
    """Without a dtype's task in ``NUMBA_FORWARD`` the fast paths decline
    ``backend="numba"``; the general path then runs and writes the task's
    address again."""
    C = pytest.importorskip("fastdrop._cython._kernels")
    x = special_values((100,), np.float64, seed=1)
    address = _registered(C, np.float64)
    C.NUMBA_FORWARD[C.DTYPE_CODES["float64"]] = 0
    try:
        assert C.fast_dropout(x, 0.5, 1, backend="numba") is NotImplemented
        assert C.fast_backward(x, 0.5, state=1, backend="numba") is NotImplemented
        assert_same(fastdrop.dropout(x, 0.5, rng=1, backend="numba"),
                    fastdrop.dropout(x, 0.5, rng=1, backend="reference"))
        assert C.NUMBA_FORWARD[C.DTYPE_CODES["float64"]] == address
    finally:
        C.NUMBA_FORWARD[C.DTYPE_CODES["float64"]] = address
    assert_same(C.fast_dropout(x, 0.5, 1, backend="numba"),
                fastdrop.dropout(x, 0.5, rng=1, backend="reference"))
    # what runs is the registered task: float32's on float64 data (half
    # the bytes read as float32 elements) changes the result
    C.NUMBA_FORWARD[C.DTYPE_CODES["float64"]] = _registered(C, np.float32)
    try:
        wrong = C.fast_dropout(x, 0.5, 1, np.zeros_like(x), backend="numba")
    finally:
        C.NUMBA_FORWARD[C.DTYPE_CODES["float64"]] = address
    assert not np.array_equal(bits(wrong), bits(fastdrop.dropout(x, 0.5, rng=1,
                                                                 backend="reference")))


@pytest.mark.parametrize("shape, noise", [
    ((3125, 32), (3125, 1)),        # many rows per task: several tiles of rows
    ((8, 64, 49), (8, 64, 1)),      # two outer axes, rows r have mask index r
    ((3, 70001), (3, 1)),           # rows longer than CHUNK: segments of a row
    ((4, 300, 40), (1, 300, 1)),    # rows whose mask indices repeat: one each
    ((5, 3, 70001), (5, 1, 1)),
], ids=lambda v: "x".join(map(str, v)))
def test_one_decision_per_row(shape, noise, threads):
    """The forward's rows with one decision each (mask stride 0 along the
    inner axis: DropPath, spatial dropout), against the reference: offsets
    inside and across Philox blocks, ties on a row of a later tile."""
    x = special_values(shape, np.float32, seed=len(shape))
    acc, ms = 1, []  # the mask strides: C order over the noise shape, 0 where shared
    for n in reversed(noise):
        ms.insert(0, 0 if n == 1 else acc)
        acc *= n
    rows = int(np.prod(noise))
    for offset in (0, 5, 2**35 - 3):
        for T in (R.threshold(0.4), *tie_thresholds(SEED, offset + min(rows - 1, 300))):
            ref = np.empty_like(x)
            R.forward(x, ref, SEED, offset, T, scale_of(T), ms)
            out = np.full_like(x, 7)
            B.forward(x, out, SEED, offset, T, scale_of(T), ms)
            assert_same(out, ref)


def test_geometry_memo_tells_layouts_apart():
    """The N-d path's geometry is memoised by item size, shape and the
    three stride tuples: arrays of one shape that differ only in x's
    layout, out's layout, the mask strides or the item size (a float32
    slice with a float64 array's byte strides), run in turn (each twice, so
    a stale entry would be used), all match the reference."""
    base = special_values((6, 10), np.float64, seed=3)
    xs = [base, np.asfortranarray(base), base[::-1, ::-1].copy()[::-1, ::-1], base[:, ::-1],
          special_values((6, 20), np.float64, seed=4)[:, ::2]]
    xs += [x.astype(np.float32) for x in xs]
    xs.append(special_values((6, 20), np.float32, seed=5)[:, ::2])  # strides (80, 8) as base's
    outs = [lambda dt: np.full((6, 10), 7, dt),
            lambda dt: np.full((6, 10), 7, dt, order="F"),
            lambda dt: np.full((6, 10), 7, dt)[::-1, ::-1],
            lambda dt: np.full((6, 20), 7, dt)[:, 1::2]]
    masks = [(10, 1), (1, 6), (1, 0), (0, 1)]
    T = R.threshold(0.3)
    for _ in range(2):
        for x in xs:
            for make_out in outs:
                for ms in masks:
                    ref, out = np.empty(x.shape, x.dtype), make_out(x.dtype)
                    R.forward(x, ref, SEED, 5, T, scale_of(T), ms)
                    B.forward(x, out, SEED, 5, T, scale_of(T), ms)
                    assert_same(out, ref)
    assert 0 < len(B._GEOMETRY) <= B._GEOMETRY_MAX


def test_geometry_memo_is_bounded():
    x = np.ones(3, np.float32)
    old = B._GEOMETRY_MAX
    B._GEOMETRY_MAX = 4
    try:
        for n in range(1, 12):
            y = np.ones((n, 3), np.float32)
            B._geometry(y, y, (0, 1))
            assert len(B._GEOMETRY) <= 4
    finally:
        B._GEOMETRY_MAX = old
    assert B._geometry(x, x, (1,))[0][0].tolist() == [3]
