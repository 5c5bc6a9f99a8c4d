"""Numba CPU kernels for the mask stream v1 (docs/spec.md §1, §2 and §4).

Importing this module imports Numba and *defines* the kernels, but compiles
nothing: every kernel is a lazily compiled ``numba.njit`` dispatcher
(``cache=True``, so later processes load the machine code from Numba's disk
cache -- ``NUMBA_CACHE_DIR`` is honoured by Numba itself).  Only
:mod:`fastdrop._numba.backend` imports this module, and only on first use.

Every kernel that writes values computes the affine select of docs/spec.md
§4, ``out = keep ? x * a + b : c`` (plain dropout: ``a`` the scale,
``b = -0.0``, which adds nothing, ``c = +0.0``), through one helper,
:func:`affine_select` (and its vector forms in :mod:`fastdrop._numba.llvm`).
The constants travel as one tuple ``sel = (a, b, c)``: ``a`` and ``b`` in
the compute type (float64 for float64, float32 otherwise), ``c`` already in
the storage type (so a dropped element is a stored constant; see
:func:`select_constants`).  The product and the sum are two separately
rounded operations: no kernel is compiled with ``fastmath``, so LLVM never
contracts them into a fused multiply-add.

Work is split into fixed chunks of :data:`CHUNK` logical elements (a multiple
of 8, so packed mask bytes never straddle chunks) and each chunk into tiles
of :data:`TILE` elements.  Each tile first computes Philox for all of its
blocks into a small scratch buffer (128 bits = eight 16-bit lanes per call;
viewed as ``uint16`` the lanes are in stream order), then runs a branchless
select over the elements that also flags lanes equal to ``Th``
(probability 2**-16 per element), and only if there are any, a tie-break
pass.  Results depend only on the logical indices,
never on the number of threads or the threading layer.

The Philox functions come from :func:`fastdrop._numba.philox.make`, compiled
with ``njit(inline="always")`` for the vectorised hot loops (Numba-IR
inlining is what lets LLVM vectorise the loop over blocks: four chains of 8
blocks per AVX-512 iteration, see :func:`_fill_lanes`) and with plain
``njit`` for the scalar paths.

:func:`forward_contig` is the 1-D fast path (with non-temporal stores for
large caller-provided outputs, :func:`_nt_tile`), :func:`forward_nd` the generic
strided/broadcast path (with a blocked variant for transposed layouts),
:func:`apply_contig` the 1-D stored-mask path,
:func:`mask_kernel` the mask alone and :func:`stream_scale` the same-traffic
streaming kernel ``out = x * s`` used as the benchmark bound (1-D contiguous
``x``/``out``, ``s`` of ``x``'s dtype).

:func:`noise_nd` is Gaussian dropout and noise (docs/spec.md §10, §11) on
the same strided geometry: per tile, the normal variates of the tile
(:func:`normal_tile`: Philox with ``c2 = 2``, four words per block, then
AS 241 branch-free, :func:`ppnd_spec` and :func:`ln_spec`, so LLVM
vectorises it), then ``x * t`` or ``x + t`` with ``t = b * z + a``
(:func:`noise_value`).

float16 has no Numba CPU support: float16 arrays are passed as their
``uint16`` bits and converted exactly (float16 -> float32 is exact,
float32 -> float16 rounds to nearest even, NaN/inf as NumPy) by the CPU's
conversion instructions where LLVM has them (x86 F16C, AArch64; see
:data:`NATIVE_F16`), else in integer code.  bfloat16 (``ml_dtypes``)
arrays are passed as their bits typed ``int16`` (so that an overload tells
them from float16's ``uint16``) and converted in integer code
(:func:`bf16_to_float`, :func:`float_to_bf16`; docs/spec.md §4).

This module holds the kernels only.  The LLVM intrinsics they call (the
prefetch, the non-temporal line stores and their ``sfence``, the packed-mask
helpers, the float16 bit conversions, the aligned stack frames and scratch,
the AVX2 Philox ``philox_blocks``) are in :mod:`fastdrop._numba.llvm`,
each with the measurements that justify it; the tuning constants
(:data:`CHUNK`, :data:`TILE`, :data:`PREFETCH_BYTES`, :data:`NT_MIN_BYTES`,
:data:`PBLOCK`) and the other tuning notes (four Philox chains,
:func:`_fill_lanes`; unsigned indices, :func:`_select_lanes`) are in the
comments and docstrings next to them here, except :data:`CHUNK` and
:data:`NT_MIN_BYTES`, which every CPU backend shares
(:mod:`fastdrop._config`).

Examples
--------
>>> import numpy as np
>>> from fastdrop._numba import kernels
>>> x = np.ones(8, np.float32); out = np.empty_like(x)
>>> sel = (np.float32(2.0), np.float32(-0.0), np.float32(0.0))  # plain dropout
>>> kernels.forward_contig(x, out, np.uint64(0), np.uint64(0), np.uint64(2**31),
...                        sel, kernels.NO_BOOL, kernels.NO_BYTES, False)
>>> out.tolist()
[2.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
>>> sel = (np.float32(2.0), np.float32(0.5), np.float32(-1.0))  # x * 2 + 0.5 : -1
>>> kernels.forward_contig(x, out, np.uint64(0), np.uint64(0), np.uint64(2**31),
...                        sel, kernels.NO_BOOL, kernels.NO_BYTES, False)
>>> out.tolist()
[2.5, -1.0, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5]
"""

import numpy as np
from numba import carray, cfunc, njit, prange, types
from numba.extending import intrinsic, overload

from .._config import CHUNK, NT_MIN_BYTES
from . import _cache
from . import philox as _philox
from .llvm import (
    X86, addr, align_frame, apply_line, bits_from_f32, f32_from_bits, f32_of_half_bits,
    half_bits_of_f32, native_f16, nt_line, pack_lanes32, philox_blocks, prefetch, stack_buffer,
    store_fence, target_features,
)

_cache.install()  # cached kernels are invalidated when philox.py or llvm.py change

__all__ = [
    "CHUNK", "NT_MIN_BYTES", "TILE", "NO_BOOL", "NO_BYTES", "affine_select",
    "select_constants",
    "forward_contig", "forward_nd", "mask_kernel", "apply_contig", "stream_scale",
    "keep_tile", "philox4x32_10", "block_words", "lane", "keep_decision",
    "noise_nd", "noise_value", "normal_tile", "normal_at", "ppnd_spec", "ln_spec",
    "uniform_of_word",
]

# CHUNK (logical elements per parallel work item) and NT_MIN_BYTES come
# from fastdrop._config, shared with the Cython backend.
#: Logical elements per inner tile; the lane scratch of one tile
#: (TILE // 8 + 2 Philox blocks) stays in L1.
TILE = 256
_TILE_WORDS = 4 * (TILE // 8 + 2)
_NB4 = TILE // 32  # blocks per Philox chain in _fill_lanes
_TILE_BLOCKS = TILE // 8  # Philox blocks per tile


def _avx2_not_avx512():
    f = target_features()
    return "+avx2" in f and "+avx512f" not in f


#: Whether _fill_lanes uses philox_blocks: Numba's target is x86 with AVX2,
#: without AVX-512 (checked on x86 only).
_PHILOX_LANES = X86 and _avx2_not_avx512()
# What the kernels rely on: four whole Philox chains per tile, packed-mask
# bytes and 32-bit pack groups never straddling tiles or chunks, and whole
# tiles covering whole 64-byte lines of float32 (so an aligned first tile
# keeps every later one aligned for the non-temporal stores).
assert TILE % 32 == 0 and CHUNK % TILE == 0 and (TILE * 4) % 64 == 0

#: Empty placeholders for absent optional outputs (one type, one compilation).
NO_BOOL = np.zeros(0, dtype=np.bool_)
NO_BYTES = np.zeros(0, dtype=np.uint8)

# The single source of Philox and the keep decision, compiled for the CPU.
# Inlined at the Numba IR level (``inline="always"``): without it the Numba
# call convention (status code per call) keeps LLVM from vectorising the
# loop over blocks (measured: 17.6 ms vs 3.5 ms for 2 Mi blocks).  These
# helpers are compiled into, and cached with, the kernels that call them.
_P = _philox.make(lambda f: njit(inline="always")(f))
philox4x32_10 = _P.philox4x32_10
block_words = _P.block_words
lane = _P.lane
# The same functions compiled as ordinary (not inlined) callees, for the
# scalar paths (tie-breaks, broadcast rows, scattered mask indices): keeps
# the kernels' IR, and so their compile time, small.
_S = _philox.make(njit)
keep_decision = _S.keep_decision
_block_words_scalar = _S.block_words
_lane_scalar = _S.lane

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U3 = np.uint64(3)
_U7 = np.uint64(7)
_U16 = np.uint64(16)
_LO16 = np.uint64(0xFFFF)
_MAX16 = np.uint32(0xFFFF)
_LO32 = _philox.LO32
_S32 = _philox.S32


# ---------------------------------------------------------------------------
# software prefetch into L2 (:func:`fastdrop._numba.llvm.prefetch`, where the
# gain is measured)
# ---------------------------------------------------------------------------

#: How far ahead of the current tile the input is prefetched, in bytes
#: (2048 and 4096 bytes ahead did no better).
PREFETCH_BYTES = 1024


@njit(inline="always")
def _prefetch_tile(x, a, L):
    """Prefetch the input ``PREFETCH_BYTES`` ahead of elements ``a .. a+L-1``."""
    step = max(1, 64 // x.itemsize)
    ahead = PREFETCH_BYTES // x.itemsize
    for e in range(0, L, step):
        prefetch(x, a + ahead + e)


# ---------------------------------------------------------------------------
# non-temporal stores of whole 64-byte lines for large caller-provided
# outputs (:func:`fastdrop._numba.llvm.nt_line`, where the gain is measured);
# not for float16 (its bits path converts in integer code)
# ---------------------------------------------------------------------------

# Outputs of at least NT_MIN_BYTES (fastdrop._config, as the Cython kernels)
# get non-temporal stores; the backend reads it as kernels.NT_MIN_BYTES.


def _nt_capable(x):
    """Whether :func:`_nt_tile` streams for ``x``'s dtype (compile-time)."""
    raise NotImplementedError  # pragma: no cover - replaced by the overload


@overload(_nt_capable)
def _nt_capable_impl(x):
    ok = isinstance(x.dtype, types.Float)
    return lambda x: ok


# ---------------------------------------------------------------------------
# float16 <-> float32 on raw bits (exact, branchless)
# ---------------------------------------------------------------------------

@njit(cache=True)
def half_to_float(h):
    """float16 bits -> float32 (exact)."""
    h = np.uint32(h)
    sign = (h & np.uint32(0x8000)) << np.uint32(16)
    e = h & np.uint32(0x7C00)
    o = ((h & np.uint32(0x7FFF)) << np.uint32(13)) + np.uint32(112 << 23)
    # subnormal: rebuild with an implicit 1 and subtract 2**-14 (exact)
    den = bits_from_f32(f32_from_bits(o + np.uint32(1 << 23)) - np.float32(6.103515625e-05))
    o_inf = o + np.uint32(112 << 23)
    r = den if e == np.uint32(0) else (o_inf if e == np.uint32(0x7C00) else o)
    return f32_from_bits(r | sign)


@njit(cache=True)
def float_to_half(f):
    """float32 -> float16 bits, round to nearest even (NaN keeps its top
    payload bits and is quiet, as NumPy's conversion of a quiet NaN)."""
    u = bits_from_f32(f)
    sign = (u >> np.uint32(16)) & np.uint32(0x8000)
    a = u & np.uint32(0x7FFFFFFF)
    nan = np.uint32(0x7E00) | ((a >> np.uint32(13)) & np.uint32(0x3FF))
    big = nan if a > np.uint32(0x7F800000) else np.uint32(0x7C00)
    # subnormal/zero results: let the FPU round at 2**-24 granularity
    den = bits_from_f32(f32_from_bits(a) + np.float32(0.5)) - np.uint32(126 << 23)
    odd = (a >> np.uint32(13)) & np.uint32(1)
    nrm = (a - np.uint32(112 << 23) + np.uint32(0xFFF) + odd) >> np.uint32(13)
    r = big if a >= np.uint32(143 << 23) else (den if a < np.uint32(113 << 23) else nrm)
    return np.uint16(r | sign)


#: float16 scaling by hardware conversions (see
#: :func:`fastdrop._numba.llvm.native_f16`).
NATIVE_F16 = native_f16()


# ---------------------------------------------------------------------------
# bfloat16 <-> float32 on raw bits (docs/spec.md §4; the backend passes
# bfloat16 arrays as their bits typed int16, float16 ones as uint16, so the
# overloads below tell them apart by type)
# ---------------------------------------------------------------------------

_BF_SHIFT = np.uint32(16)
_BF_SIGNLESS = np.uint32(0x7FFFFFFF)
_BF_INF = np.uint32(0x7F800000)
_BF_HALF = np.uint32(0x7FFF)
_BF_QUIET = np.uint32(0x40)
_BF_ONE = np.uint32(1)
_BF_LOW = np.uint32(0xFFFF)


@njit(cache=True)
def bf16_to_float(h):
    """bfloat16 bits (int16) -> float32: the high half of the float32
    (exact)."""
    return f32_from_bits((np.uint32(h) & _BF_LOW) << _BF_SHIFT)


@njit(cache=True)
def float_to_bf16(f):
    """float32 -> bfloat16 bits (int16): round to nearest even on the bits
    (overflow carries into an infinity); a NaN keeps its sign and top
    payload bits and is made quiet (branch-free)."""
    u = bits_from_f32(f)
    r = (u + _BF_HALF + ((u >> _BF_SHIFT) & _BF_ONE)) >> _BF_SHIFT
    q = (u >> _BF_SHIFT) | _BF_QUIET
    return np.int16(q if (u & _BF_SIGNLESS) > _BF_INF else r)


def affine_select(xv, sel, k):
    """The affine select of one element (docs/spec.md §4): with ``sel = (a,
    b, c)``, ``R(C(x) * a + b)`` if ``k`` else ``c``, in x's storage type
    (float16 as its uint16 bits, bfloat16 as its int16 bits: widened
    exactly to float32, rounded back to nearest even).  ``a`` and ``b``
    are in the compute type, ``c`` in the storage type
    (:func:`select_constants`); the product and the sum are two rounded
    operations (no ``fastmath``: never a fused multiply-add).  The one
    select of every kernel."""
    raise NotImplementedError  # pragma: no cover - replaced by the overload


@overload(affine_select)
def _affine_select_impl(xv, sel, k):
    if xv == types.int16:  # bfloat16 bits, through float32
        def impl_bf16(xv, sel, k):
            y = float_to_bf16(bf16_to_float(xv) * sel[0] + sel[1])
            return y if k else sel[2]
        return impl_bf16
    if isinstance(xv, types.Integer):  # float16 bits
        if NATIVE_F16:  # vectorised conversions (measured 16 Mi: 24.5 -> ms)
            def impl_native(xv, sel, k):
                y = half_bits_of_f32(f32_of_half_bits(xv) * sel[0] + sel[1])
                return y if k else sel[2]
            return impl_native

        def impl(xv, sel, k):
            y = float_to_half(half_to_float(xv) * sel[0] + sel[1])
            return y if k else sel[2]
        return impl

    def impl(xv, sel, k):
        y = xv * sel[0] + sel[1]
        return y if k else sel[2]
    return impl


def select_constants(x, a, b, c):
    """The ``sel`` tuple of :func:`affine_select` for float32/float64 array
    ``x``: ``a``, ``b``, ``c`` (floats) rounded once to x's dtype, which is
    its compute type.  (The backend builds the tuple for float16 bits
    itself: ``c`` as the bits of ``float16(float32(c))``.)"""
    raise NotImplementedError  # pragma: no cover - replaced by the overload


@overload(select_constants)
def _select_constants_impl(x, a, b, c):
    if x.dtype == types.float64:
        return lambda x, a, b, c: (np.float64(a), np.float64(b), np.float64(c))
    if x.dtype == types.float32:
        return lambda x, a, b, c: (np.float32(a), np.float32(b), np.float32(c))
    return None


# ---------------------------------------------------------------------------
# keep bits of one tile of consecutive stream positions
# ---------------------------------------------------------------------------

@njit(inline="always")
def _put_block(words, q, w):
    """The four Philox words ``w`` of block ``q`` of a tile into ``words``."""
    i = 4 * q
    words[i] = w[0]
    words[i + 1] = w[1]
    words[i + 2] = w[2]
    words[i + 3] = w[3]


@njit(cache=True)
def _fill_lanes(words, s0, b0, nb, k0, k1):
    """Philox (c2 = 0) of blocks ``b0 .. b0 + nb - 1`` into block slots
    ``s0 ..`` of ``words`` (4 uint32 per block; viewed as uint16 the lanes
    are in stream order).

    The first ``TILE // 8`` blocks are always computed (``words`` has room
    for ``s0 <= 1``): for AVX2 targets by :func:`philox_blocks`, elsewhere
    as four interleaved chains: with constant trip counts
    LLVM vectorises the four in one loop iteration, which gives the
    out-of-order core independent multiply chains (one chain of 8 blocks is
    latency-bound: measured 16 Mi float32 forward 13.9 -> 12.1 ms on 1
    thread, 6.9 -> 6.0 ms on 2, interleaved in one process).  Blocks past
    those are computed one at a time (scalar code, several times the cost
    of a vector lane).
    """
    align_frame()
    if _PHILOX_LANES:
        philox_blocks(words, s0, b0, _U0, k0, k1, _TILE_BLOCKS)
    else:
        h = _NB4
        for q in range(h):
            _put_block(words, s0 + q, block_words(b0 + np.uint64(q), 0, k0, k1))
            _put_block(words, s0 + q + h, block_words(b0 + np.uint64(q + h), 0, k0, k1))
            _put_block(words, s0 + q + 2 * h,
                       block_words(b0 + np.uint64(q + 2 * h), 0, k0, k1))
            _put_block(words, s0 + q + 3 * h,
                       block_words(b0 + np.uint64(q + 3 * h), 0, k0, k1))
    for q in range(_TILE_BLOCKS, nb):
        _put_block(words, s0 + q, block_words(b0 + np.uint64(q), 0, k0, k1))


@njit(cache=True)
def _tie_keep(j, k0, k1, tl):
    """Tie-break decision (low 16 bits, c2 = 1) for stream position ``j``."""
    v0, v1, v2, v3 = _block_words_scalar(j >> _U3, 1, k0, k1)
    return _lane_scalar(v0, v1, v2, v3, j & _U7) >= tl


@njit(cache=True)
def keep_tile(kbuf, words, j0, L, k0, k1, th, tl):
    """Keep bits of stream positions ``j0 .. j0 + L - 1`` into ``kbuf[:L]``
    (``L <= TILE``; ``words`` is a TILE scratch of uint32)."""
    first = np.int64(j0 & _U7)
    _fill_lanes(words, 0, j0 >> _U3, (first + L + 7) >> 3, k0, k1)
    if th > _MAX16:  # T = 2**32: nothing is kept, no ties
        for e in range(L):
            kbuf[e] = False
        return
    ln = words.view(np.uint16)
    th16 = np.uint16(th)
    if _lanes_keep(kbuf, 0, ln, first, L, th16):
        _fix_tie_masks(ln, first, L, th16, j0, k0, k1, tl, 0, kbuf, np.empty(0, np.uint8))


@njit(inline="always")
def _lanes_keep(kb, kb0, lanes, first, L, th16):
    """``kb[kb0 + e] = lanes[first + e] > th16`` for ``e < L`` (a tie is
    written as dropped, to be resolved); returns whether any lane equals
    ``th16``.  One vectorised pass at 16 bits; unsigned indices keep LLVM's
    vector loads contiguous (no wraparound selects)."""
    uf = np.uint64(first)
    uk = np.uint64(kb0)
    ties = False
    for e in range(L):
        ue = np.uint64(e)
        v = lanes[uf + ue]
        kb[uk + ue] = v > th16
        ties |= v == th16
    return ties


@njit(cache=True)
def _fix_ties(x, a, out, sel, lanes, first, L, th16, j0, k0, k1, tl):
    """Resolve the ties of a tile whose select wrote them as kept: each lane
    equal to ``th16`` that its tie-break drops becomes the fill in ``out``."""
    for e in range(L):
        if lanes[first + e] == th16 and not _tie_keep(j0 + np.uint64(e), k0, k1, tl):
            out[a + e] = affine_select(x[a + e], sel, False)


@njit(inline="always")
def _pack_lanes(lanes, first, L, th16, packed, byte0):
    """Keep bits of ``lanes[first:first + L]`` (ties written as dropped)
    packed into ``packed[byte0:]``; returns whether any lane equals
    ``th16``."""
    full = L >> 5
    ties = False
    for q in range(full):
        ties |= pack_lanes32(lanes, first + 32 * q, th16, packed, byte0 + 4 * q)
    v = 0
    for e in range(32 * full, L):
        u = lanes[first + e]
        v |= np.int64(u > th16) << (e & 7)
        ties |= u == th16
        if e & 7 == 7:
            packed[byte0 + (e >> 3)] = np.uint8(v)
            v = 0
    if L & 7:
        packed[byte0 + ((L - 1) >> 3)] = np.uint8(v)
    return ties


@njit(cache=True)
def _fix_tie_masks(lanes, first, L, th16, j0, k0, k1, tl, a, keep, packed):
    """Resolve the ties of a tile whose keep bits were written as dropped
    (``keep[a + e]`` / bit ``a + e`` of ``packed``, each when non-empty)."""
    for e in range(L):
        if lanes[first + e] == th16 and _tie_keep(j0 + np.uint64(e), k0, k1, tl):
            i = a + e
            if keep.shape[0] > 0:
                keep[i] = True
            if packed.shape[0] > 0:
                packed[i >> 3] |= np.uint8(1 << (i & 7))


@njit(inline="always")
def _no_keep(L, a, keep, packed):
    """Keep bits of a tile with nothing kept (T = 2**32)."""
    if keep.shape[0] > 0:
        for e in range(L):
            keep[a + e] = False
    if packed.shape[0] > 0:
        for q in range((L + 7) >> 3):
            packed[(a >> 3) + q] = 0


@njit(cache=True)
def _key(seed, T):
    seed = np.uint64(seed)
    T = np.uint64(T)
    return (np.uint64(seed & _LO32), np.uint64(seed >> _S32),
            np.uint32(T >> _U16), np.uint32(T & _LO16))


@njit(inline="always")
def _select_lanes(x, xa, out, oa, lanes, lb, L, sel, th16):
    """``out[oa + e] = x[xa + e] * a + b`` if ``lanes[lb + e] >= th16`` else
    ``c`` (``sel = (a, b, c)``), for ``e < L``; returns whether any lane
    equals ``th16`` (a tie, written as kept, to be checked).

    One vectorised pass at the width of the data: 16-bit compares (no
    widening of the lanes) and a bool tie flag (an integer count made LLVM
    use 64-bit lanes, 4 floats a vector).  Unsigned indices: no
    negative-index wraparound (which stops vectorisation) and no array
    views, whose reference counts are atomic updates.
    """
    ux = np.uint64(xa)
    uo = np.uint64(oa)
    ul = np.uint64(lb)
    ties = False
    for e in range(L):
        ue = np.uint64(e)
        v = lanes[ul + ue]
        out[uo + ue] = affine_select(x[ux + ue], sel, v >= th16)
        ties |= v == th16
    return ties


def _nt_tile(x, a, out, lanes, lb, sel, th16):
    """The select of one whole tile (``TILE`` elements from ``a``, 64-byte
    aligned in ``out``) with non-temporal stores (see
    :func:`fastdrop._numba.llvm.nt_line`); returns the tie flag."""
    raise NotImplementedError  # pragma: no cover - replaced by the overload


@overload(_nt_tile)
def _nt_tile_impl(x, a, out, lanes, lb, sel, th16):
    if not isinstance(x.dtype, types.Float):
        # float16 bits never stream (forward_contig checks _nt_capable):
        # the ordinary select, so that this still compiles and is right
        return lambda x, a, out, lanes, lb, sel, th16: _select_lanes(
            x, a, out, a, lanes, lb, TILE, sel, th16)
    vl = 512 // x.dtype.bitwidth  # elements per 64-byte line

    def impl(x, a, out, lanes, lb, sel, th16):
        ties = False
        for q in range(TILE // vl):
            ties |= nt_line(x, a + q * vl, out, a + q * vl, lanes, lb + q * vl,
                            sel[0], sel[1], sel[2], th16)
        return ties
    return impl


@njit(inline="always")
def _nt_head(x, out, nt, start):
    """Where a chunk from element ``start`` streams (``nt`` asked, a dtype
    :func:`_nt_tile` streams, ``x`` and ``out`` item-aligned): the elements
    of ``out`` from ``start`` to its next 64-byte line; else -1."""
    isz = np.uint64(out.itemsize)
    if not (nt and _nt_capable(x) and addr(out) % isz == _U0 and addr(x) % isz == _U0):
        return np.int64(-1)
    return np.int64((np.uint64(64) - ((addr(out) + np.uint64(start) * isz) & np.uint64(63)))
                    & np.uint64(63)) // out.itemsize


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------

@njit(cache=True)
def _fwd_contig_task(c, x, out, seed, offset, T, sel, keep_out, packed_out, nt):
    """Chunk ``c`` (elements ``c * CHUNK ..``) of :func:`forward_contig`."""
    align_frame()
    n = x.shape[0]
    k0, k1, th, tl = _key(seed, T)
    th16 = np.uint16(min(th, _MAX16))  # the lanes path runs only for th <= 0xFFFF
    offset = np.uint64(offset)
    want_keep = keep_out.shape[0] > 0
    want_packed = packed_out.shape[0] > 0
    head = _nt_head(x, out, nt, c * CHUNK)
    stream = head >= 0 and not (want_packed and head % 8 != 0)  # tiles start on mask bytes
    if not stream:
        head = 0
    words = carray(stack_buffer(_TILE_WORDS, np.uint32), _TILE_WORDS)
    lanes = words.view(np.uint16)
    start = c * CHUNK
    stop = min(n, start + CHUNK)
    a = start
    carry = False
    while a < stop:
        L = min(TILE if a > start or head == 0 else head, stop - a)
        j0 = offset + np.uint64(a)
        _prefetch_tile(x, a, L)
        if th > _MAX16:  # T = 2**32: nothing kept, every element the fill
            for e in range(L):
                out[a + e] = affine_select(x[a + e], sel, False)
            _no_keep(L, a, keep_out, packed_out)
        else:
            # select straight from the random lanes, ties written as
            # kept (in-place safe); keep bits from the same lanes, ties
            # written as dropped; then the rare ties resolved in all.
            # Arrays are passed whole with a base index: an array view
            # or array variable made per tile costs reference counts,
            # locked instructions that wait for the non-temporal stores
            # to drain (measured 3x slower per tile)
            first = np.int64(j0 & _U7)
            if carry:  # block 0 is the previous tile's block 32
                for w in range(4):
                    words[w] = words[4 * (TILE // 8) + w]
                _fill_lanes(words, 1, (j0 >> _U3) + _U1, TILE // 8, k0, k1)
            else:
                _fill_lanes(words, 0, j0 >> _U3, (first + L + 7) >> 3, k0, k1)
            # a whole tile that starts inside a block ends inside one:
            # the next tile (if any) starts in that block
            carry = L == TILE and first != 0
            if stream and L == TILE:
                ties = _nt_tile(x, a, out, lanes, first, sel, th16)
            else:
                ties = _select_lanes(x, a, out, a, lanes, first, L, sel, th16)
            if want_keep:
                _lanes_keep(keep_out, a, lanes, first, L, th16)
            if want_packed:
                _pack_lanes(lanes, first, L, th16, packed_out, a >> 3)
            if ties:
                _fix_ties(x, a, out, sel, lanes, first, L, th16, j0, k0, k1, tl)
                if want_keep or want_packed:
                    _fix_tie_masks(lanes, first, L, th16, j0, k0, k1, tl, a,
                                   keep_out, packed_out)
        a += L
    if stream:
        store_fence()


@njit(cache=True, parallel=True)
def forward_contig(x, out, seed, offset, T, sel, keep_out, packed_out, nt):
    """Dropout over 1-D contiguous ``x`` -> ``out`` (full mask, i = position):
    the affine select :func:`affine_select` with ``sel = (a, b, c)``.

    ``x``/``out`` are float32/float64, or uint16 bits of float16.
    ``keep_out`` (bool) / ``packed_out`` (uint8) are written when
    non-empty.  ``seed``, ``offset``, ``T`` are uint64.  ``nt`` asks for
    non-temporal stores (a large output that is not ``x``; taken by
    float32/float64, and with ``packed_out`` only when the first 64-byte
    line of ``out`` starts on a mask byte): each chunk then starts with a
    short tile up to the next 64-byte line of ``out``, so its whole tiles
    are line-aligned.
    """
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        _fwd_contig_task(c, x, out, seed, offset, T, sel, keep_out, packed_out, nt)


@njit(cache=True)
def _mask_task(c, n, seed, offset, T, keep_out, packed_out):
    """Chunk ``c`` of :func:`mask_kernel`."""
    align_frame()
    k0, k1, th, tl = _key(seed, T)
    th16 = np.uint16(min(th, _MAX16))
    offset = np.uint64(offset)
    want_keep = keep_out.shape[0] > 0
    want_packed = packed_out.shape[0] > 0
    words = carray(stack_buffer(_TILE_WORDS, np.uint32), _TILE_WORDS)
    lanes = words.view(np.uint16)
    start = c * CHUNK
    stop = min(n, start + CHUNK)
    for a in range(start, stop, TILE):
        L = min(TILE, stop - a)
        if th > _MAX16:
            _no_keep(L, a, keep_out, packed_out)
            continue
        j0 = offset + np.uint64(a)
        first = np.int64(j0 & _U7)
        _fill_lanes(words, 0, j0 >> _U3, (first + L + 7) >> 3, k0, k1)
        ties = False
        if want_keep:
            ties = _lanes_keep(keep_out, a, lanes, first, L, th16)
        if want_packed:
            ties = _pack_lanes(lanes, first, L, th16, packed_out, a >> 3)
        if ties:
            _fix_tie_masks(lanes, first, L, th16, j0, k0, k1, tl, a, keep_out, packed_out)


@njit(cache=True, parallel=True)
def mask_kernel(n, seed, offset, T, keep_out, packed_out):
    """Keep bits of positions ``offset .. offset + n - 1`` into ``keep_out``
    (bool, when non-empty) and ``packed_out`` (uint8, when non-empty)."""
    for c in prange((n + CHUNK - 1) // CHUNK):
        _mask_task(c, n, seed, offset, T, keep_out, packed_out)


def _apply_packed_run(x, out, packed, sel, start, stop):
    """``out[e] = x[e] * a + b`` where bit ``e`` of ``packed`` is set, else
    ``c`` (``sel = (a, b, c)``), for ``start <= e < stop``."""
    raise NotImplementedError  # pragma: no cover - replaced by the overload


@overload(_apply_packed_run)
def _apply_packed_run_impl(x, out, packed, sel, start, stop):
    if not isinstance(x.dtype, types.Float):
        # float16 bits: a tile's keep bits unpacked to bools, then one
        # vectorised select (reading the bit per element in the select
        # loop stopped vectorisation: 8x slower)
        def impl_bits(x, out, packed, sel, start, stop):
            kbuf = np.empty(TILE, np.bool_)
            for a in range(start, stop, TILE):
                L = min(TILE, stop - a)
                ua = np.uint64(a)
                for e in range(L):
                    u = ua + np.uint64(e)
                    kbuf[e] = (packed[u >> _U3] >> (u & _U7)) & _U1 != _U0
                for e in range(L):
                    u = ua + np.uint64(e)
                    out[u] = affine_select(x[u], sel, kbuf[e])
        return impl_bits
    vl = 512 // x.dtype.bitwidth  # elements per 64-byte line

    def impl(x, out, packed, sel, start, stop):
        a = start  # apply_line reads the vl // 4 bytes from a's mask byte
        while a + vl <= stop and (a >> 3) + vl // 4 <= packed.shape[0]:
            if (a - start) % TILE == 0:
                _prefetch_tile(x, a, TILE)
            apply_line(x, a, out, packed, sel[0], sel[1], sel[2], False)
            a += vl
        for e in range(a, stop):
            out[e] = affine_select(x[e], sel, (packed[e >> 3] >> (e & 7)) & 1 != 0)
    return impl


@njit(cache=True)
def _apply_span(x, out, sel, keep, packed, start, stop):
    """The select of elements ``start .. stop - 1`` with ordinary stores."""
    align_frame()
    if packed.shape[0] == 0:  # unsigned indices: one vectorised select
        us = np.uint64(start)
        for e in range(stop - start):
            u = us + np.uint64(e)
            out[u] = affine_select(x[u], sel, keep[u])
    else:
        _apply_packed_run(x, out, packed, sel, start, stop)


def _apply_lines_nt(x, out, sel, keep, packed, a, stop):
    """The select of the whole 64-byte lines from ``a`` (aligned in ``out``)
    before ``stop``, stored non-temporally (:func:`fastdrop._numba.llvm.
    apply_line`); returns where they end."""
    raise NotImplementedError  # pragma: no cover - replaced by the overload


@overload(_apply_lines_nt)
def _apply_lines_nt_impl(x, out, sel, keep, packed, a, stop):
    if not isinstance(x.dtype, types.Float):
        # float16 bits never stream (_apply_contig_task checks _nt_capable)
        return lambda x, out, sel, keep, packed, a, stop: a
    vl = 512 // x.dtype.bitwidth  # elements per 64-byte line

    def impl(x, out, sel, keep, packed, a, stop):
        b = a
        bits = packed.shape[0] > 0
        # packed: apply_line reads the vl // 4 bytes from the line's first mask byte
        while a + vl <= stop and (not bits or (a >> 3) + vl // 4 <= packed.shape[0]):
            if (a - b) % TILE == 0:
                _prefetch_tile(x, a, TILE)
            if bits:
                apply_line(x, a, out, packed, sel[0], sel[1], sel[2], True)
            else:
                apply_line(x, a, out, keep, sel[0], sel[1], sel[2], True)
            a += vl
        return a
    return impl


@njit(cache=True)
def _apply_contig_task(c, x, out, sel, keep, packed, nt):
    """Chunk ``c`` of :func:`apply_contig`."""
    align_frame()
    start = c * CHUNK
    stop = min(x.shape[0], start + CHUNK)
    head = _nt_head(x, out, nt, start)
    if head < 0:
        _apply_span(x, out, sel, keep, packed, start, stop)
        return
    a = min(start + head, stop)
    _apply_span(x, out, sel, keep, packed, start, a)
    a = _apply_lines_nt(x, out, sel, keep, packed, a, stop)
    _apply_span(x, out, sel, keep, packed, a, stop)
    store_fence()


@njit(cache=True, parallel=True)
def apply_contig(x, out, sel, keep, packed, nt):
    """The affine select (:func:`affine_select`, ``sel = (a, b, c)``) of 1-D
    contiguous ``x`` -> ``out`` (float32/float64, or uint16 bits of
    float16) with a stored full mask: ``keep`` (bool, when non-empty) or
    the bits of ``packed`` (little bit order; float32 and float64 a 64-byte
    line per step).  ``nt`` asks for non-temporal stores (a large output
    that is not ``x``; taken by float32/float64): each chunk's whole lines
    after a head to its first line."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        _apply_contig_task(c, x, out, sel, keep, packed, nt)


@njit(cache=True)
def _row_keep(kbuf, words, mbase, n_t, sm, offset, k0, k1, th, tl, keep, packed):
    """Keep bits of mask indices ``mbase + e * sm`` (``e < n_t``) into
    ``kbuf``: generated, or read from ``keep`` / ``packed`` when non-empty."""
    if keep.shape[0] > 0:
        if sm == 1:  # unsigned indices: a vectorised copy (no wraparound)
            ub = np.uint64(mbase)
            for e in range(n_t):
                kbuf[e] = keep[ub + np.uint64(e)]
        else:
            for e in range(n_t):
                kbuf[e] = keep[mbase + e * sm]
    elif packed.shape[0] > 0:
        if sm == 1:
            ub = np.uint64(mbase)
            for e in range(n_t):
                u = ub + np.uint64(e)
                kbuf[e] = (packed[u >> _U3] >> (u & _U7)) & _U1 != _U0
        else:
            for e in range(n_t):
                i = mbase + e * sm
                kbuf[e] = (packed[i >> 3] >> (i & 7)) & 1 != 0
    elif sm == 1:
        keep_tile(kbuf, words, offset + np.uint64(mbase), n_t, k0, k1, th, tl)
    else:  # (sm == 0, one decision per row, is _fwd_nd_task's own path)
        for e in range(n_t):
            kbuf[e] = keep_decision(offset + np.uint64(mbase + e * sm), k0, k1, th, tl)


#: Rows of the memory-contiguous axis per block in the transposed layout.
PBLOCK = 256


@njit(cache=True, inline="always")
def _select_run(xf, xb, sx, of, ob, so, n, sel, kb):
    """``of[ob + e*so] = kb[e] ? xf[xb + e*sx] * a + b : c`` for ``e < n``
    (flat element offsets and strides; unit strides take the vectorised
    slice form)."""
    if sx == 1 and so == 1:
        xa = xf[xb:xb + n]
        oa = of[ob:ob + n]
        for e in range(n):
            oa[e] = affine_select(xa[e], sel, kb[e])
    else:
        for e in range(n):
            of[ob + e * so] = affine_select(xf[xb + e * sx], sel, kb[e])


@njit(cache=True, inline="always")
def _select_const(xf, xb, sx, of, ob, so, n, sel, k):
    """:func:`_select_run` with one decision ``k`` for the whole run."""
    if sx == 1 and so == 1:
        xa = xf[xb:xb + n]
        oa = of[ob:ob + n]
        if k:
            for e in range(n):
                oa[e] = affine_select(xa[e], sel, True)
        else:
            for e in range(n):
                oa[e] = affine_select(xa[e], sel, False)
    else:
        for e in range(n):
            of[ob + e * so] = affine_select(xf[xb + e * sx], sel, k)


@njit(cache=True, inline="always")
def _rows_linear(shape, ms, nd):
    """Whether row ``r`` of the walk over the outer axes has mask index
    ``r`` (their mask strides those of a C-order array of their shape)."""
    acc = 1
    for k in range(nd - 2, -1, -1):
        if shape[k] != 1 and ms[k] != acc:
            return False
        acc *= shape[k]
    return True


@njit(cache=True, inline="always")
def _task_grid(shape, nd, L):
    """The fixed task grid of an N-d walk (rows of the outer axes, the inner
    axis of length L): ``(R rows, nseg segments per row, rows_per rows per
    task, ngroups tasks)``: a long row is cut into CHUNK segments, short rows
    are grouped up to CHUNK elements.  Fixed by the shape alone, so results
    never depend on the thread count."""
    R = 1
    for k in range(nd - 1):
        R *= shape[k]
    if L >= CHUNK:
        nseg = (L + CHUNK - 1) // CHUNK
        rows_per = 1
    else:
        nseg = 1
        rows_per = max(1, CHUNK // max(L, 1))
    return R, nseg, rows_per, ((R + rows_per - 1) // rows_per) * nseg


@njit(cache=True, inline="always")
def _task_bounds(g, R, nseg, rows_per, L):
    """Rows ``r0 .. r1`` and inner elements ``e0 .. e1`` of task ``g``."""
    rg = g // nseg
    seg = g - rg * nseg
    r0 = rg * rows_per
    e0 = seg * CHUNK
    return r0, min(R, r0 + rows_per), e0, min(L, e0 + CHUNK)


@njit(cache=True, inline="always")
def _outer_offsets(r, nouter, shape, xs, os, ms, x0, o0):
    """Element offsets of x and out, and the mask index, of the first element
    of row ``r`` of the C-order walk over axes ``0 .. nouter - 1``."""
    if nouter == 1:  # r < shape[0]: no division
        return x0 + r * xs[0], o0 + r * os[0], r * ms[0]
    xo = x0
    oo = o0
    mo = 0
    rem = r
    for k in range(nouter - 1, -1, -1):
        q = rem // shape[k]
        ik = rem - q * shape[k]
        rem = q
        xo += ik * xs[k]
        oo += ik * os[k]
        mo += ik * ms[k]
    return xo, oo, mo


@njit(cache=True, inline="always")
def _blocked_grid(shape, nd, L):
    """The task grid of :func:`forward_nd`'s blocked walk: ``(R outer rows,
    npb row blocks of PBLOCK, nseg tiles of TILE, units)``."""
    R = 1
    for k in range(nd - 2):
        R *= shape[k]
    npb = (shape[nd - 2] + PBLOCK - 1) // PBLOCK
    nseg = (L + TILE - 1) // TILE
    return R, npb, nseg, R * npb * nseg


@njit(cache=True)
def nd_tasks(shape, blocked):
    """Number of tasks of :func:`forward_nd` (``blocked`` as given there) or,
    with ``blocked=False``, of :func:`noise_nd` over ``shape`` (int64, inner
    axis last).  Fixed by the shape alone."""
    nd = shape.shape[0]
    L = shape[nd - 1]
    if blocked:
        return _blocked_grid(shape, nd, L)[3]
    return _task_grid(shape, nd, L)[3]


@njit(cache=True)
def _fwd_nd_task(g, xf, x0, of, o0, shape, xs, os, ms, seed, offset, T, sel, keep, packed,
                 blocked):
    """Task ``g`` of :func:`forward_nd`."""
    nd = shape.shape[0]
    L = shape[nd - 1]
    sx = xs[nd - 1]
    so = os[nd - 1]
    sm = ms[nd - 1]
    k0, k1, th, tl = _key(seed, T)
    offset = np.uint64(offset)
    words = np.empty(_TILE_WORDS, np.uint32)
    if blocked:
        P = shape[nd - 2]
        px = xs[nd - 2]
        po = os[nd - 2]
        pm = ms[nd - 2]
        R, npb, nseg, _ = _blocked_grid(shape, nd, L)
        kb2 = np.empty((PBLOCK, TILE), np.bool_)
        kbT = np.empty((TILE, PBLOCK), np.bool_)
        r = g // (npb * nseg)
        rest = g - r * (npb * nseg)
        seg = rest // npb
        pb = rest - seg * npb
        xo, oo, mo = _outer_offsets(r, nd - 2, shape, xs, os, ms, x0, o0)
        p0 = pb * PBLOCK
        n_p = min(PBLOCK, P - p0)
        t = seg * TILE
        n_t = min(TILE, L - t)
        for pl in range(n_p):
            _row_keep(kb2[pl], words, mo + (p0 + pl) * pm + t * sm, n_t, sm,
                      offset, k0, k1, th, tl, keep, packed)
        # transpose the keep bits so the select runs along memory
        for e in range(n_t):
            for pl in range(n_p):
                kbT[e, pl] = kb2[pl, e]
        xb = xo + p0 * px + t * sx
        ob = oo + p0 * po + t * so
        for e in range(n_t):
            _select_run(xf, xb + e * sx, px, of, ob + e * so, po, n_p, sel, kbT[e])
        return
    R, nseg, rows_per, _ = _task_grid(shape, nd, L)
    kbuf = np.empty(TILE, np.bool_)
    r0, r1, e0, e1 = _task_bounds(g, R, nseg, rows_per, L)
    if sm == 0 and keep.shape[0] == 0 and packed.shape[0] == 0:
        # one decision per row (a noise shape broadcast along the inner
        # axis: DropPath, spatial dropout): when rows r have mask indices r,
        # a tile of rows' decisions at once (batched Philox), else one each
        # (a decision per row took 241 us for DropPath of (3125, 32) float32
        # against 28 us for the Cython backend: AMD EPYC Zen 4 VM)
        lin = _rows_linear(shape, ms, nd) and r1 - r0 > 1
        for rt in range(r0, r1, TILE):
            nr = min(TILE, r1 - rt)
            if lin:
                keep_tile(kbuf, words, offset + np.uint64(rt), nr, k0, k1, th, tl)
            for j in range(nr):
                xo, oo, mo = _outer_offsets(rt + j, nd - 1, shape, xs, os, ms, x0, o0)
                kb = kbuf[j] if lin else keep_decision(offset + np.uint64(mo), k0, k1, th, tl)
                _select_const(xf, xo + e0 * sx, sx, of, oo + e0 * so, so, e1 - e0, sel, kb)
        return
    for r in range(r0, r1):
        xo, oo, mo = _outer_offsets(r, nd - 1, shape, xs, os, ms, x0, o0)
        for t in range(e0, e1, TILE):
            n_t = min(TILE, e1 - t)
            _row_keep(kbuf, words, mo + t * sm, n_t, sm, offset, k0, k1, th, tl,
                      keep, packed)
            _select_run(xf, xo + t * sx, sx, of, oo + t * so, so, n_t, sel, kbuf)


@njit(cache=True, parallel=True)
def forward_nd(xf, x0, of, o0, shape, xs, os, ms, seed, offset, T, sel, keep, packed,
               blocked):
    """The affine select (:func:`affine_select`, ``sel = (a, b, c)``) over a
    strided N-d view (inner axis last).

    ``xf``/``of`` are 1-D contiguous arrays over the memory of x/out (lowest
    address first); element ``idx`` lives at ``x0 + sum(idx * xs)`` /
    ``o0 + sum(idx * os)`` and has mask index ``i = sum(idx * ms)``.  The
    keep bit of ``i`` is generated (``keep`` and ``packed`` empty), read
    from ``keep[i]`` (bool) or from bit ``i`` of ``packed``.

    With ``blocked`` (transposed layouts: the last axis is contiguous in the
    mask, the second-to-last in memory) the work goes in blocks of
    ``PBLOCK`` x ``TILE`` elements: keep bits row by row along the mask,
    then the select in memory order.
    """
    for g in prange(nd_tasks(shape, blocked)):
        _fwd_nd_task(g, xf, x0, of, o0, shape, xs, os, ms, seed, offset, T, sel, keep, packed,
                     blocked)


@njit(cache=True)
def _stream_task(c, x, out, s):
    """Chunk ``c`` of :func:`stream_scale`."""
    align_frame()
    start = c * CHUNK
    stop = min(x.shape[0], start + CHUNK)
    xa = x[start:stop]
    oa = out[start:stop]
    for i in range(stop - start):
        oa[i] = xa[i] * s


@njit(cache=True, parallel=True)
def stream_scale(x, out, s):
    """``out = x * s`` over 1-D contiguous arrays, in parallel: the streaming
    kernel with the same memory traffic as dropout (the benchmark bound)."""
    for c in prange((x.shape[0] + CHUNK - 1) // CHUNK):
        _stream_task(c, x, out, s)


# ---------------------------------------------------------------------------
# the normal-variate stream v1 (docs/spec.md §10) and the noise kernel (§11)
# ---------------------------------------------------------------------------
# The constants are written out here rather than imported from
# fastdrop.reference: Numba freezes globals into the cached machine code,
# and only this file (with philox.py, llvm.py and _config.py) stamps the
# cache, so a constant changed elsewhere would not reach cached kernels.
# tests/test_numba.py checks that they equal the reference's.

#: Counter word c2 of the normal stream's Philox blocks (the mask stream
#: uses 0 and 1).
NORMAL_C2 = 2
LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
SQRT_HALF = float.fromhex("0x1.6a09e667f3bcdp-1")
#: 2 / (2k + 1), k = 0 .. 10
LN_SERIES = tuple(2.0 / (2 * k + 1) for k in range(11))
#: Wichura's AS 241 (PPND16), as in fastdrop.reference
PPND_A = (3.3871328727963666080e0, 1.3314166789178437745e+2, 1.9715909503065514427e+3,
          1.3731693765509461125e+4, 4.5921953931549871457e+4, 6.7265770927008700853e+4,
          3.3430575583588128105e+4, 2.5090809287301226727e+3)
PPND_B = (1.0, 4.2313330701600911252e+1, 6.8718700749205790830e+2, 5.3941960214247511077e+3,
          2.1213794301586595867e+4, 3.9307895800092710610e+4, 2.8729085735721942674e+4,
          5.2264952788528545610e+3)
PPND_C = (1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0,
          3.64784832476320460504e0, 1.27045825245236838258e0, 2.41780725177450611770e-1,
          2.27238449892691845833e-2, 7.74545014278341407640e-4)
PPND_D = (1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
          1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4,
          1.05075007164441684324e-9)

_TWO_M32 = 2.0 ** -32
_MANT = np.uint64(0x000FFFFFFFFFFFFF)
_HALF_EXP = np.uint64(0x3FE0000000000000)  # exponent field of [0.5, 1)
_TWO52_BITS = np.uint64(0x4330000000000000)  # 2**52
_TWO52_PLUS_1022 = 4503599627371518.0      # 2**52 + 1022
_U2 = np.uint64(2)
_U52 = np.uint64(52)
#: Philox blocks one tile of TILE consecutive positions can touch (four
#: variates per block), and the words they fill.
_NBLOCKS = TILE // 4 + 1
_NORMAL_WORDS = 4 * _NBLOCKS
_NB16 = TILE // 16  # blocks per Philox chain in _fill_normal


@njit(inline="always")
def _horner8(c, x):
    """``c[0] + x * (c[1] + ... + x * c[7])``, from the highest coefficient:
    one rounded multiply and one rounded add per step (no fastmath: never
    fused)."""
    p = c[7]
    p = p * x + c[6]
    p = p * x + c[5]
    p = p * x + c[4]
    p = p * x + c[3]
    p = p * x + c[2]
    p = p * x + c[1]
    p = p * x + c[0]
    return p


@njit(inline="always")
def _horner11(c, x):
    """As :func:`_horner8` for eleven coefficients."""
    p = c[10]
    p = p * x + c[9]
    p = p * x + c[8]
    p = p * x + c[7]
    p = p * x + c[6]
    p = p * x + c[5]
    p = p * x + c[4]
    p = p * x + c[3]
    p = p * x + c[2]
    p = p * x + c[1]
    p = p * x + c[0]
    return p


@njit(inline="always")
def ln_spec(r):
    """The logarithm of docs/spec.md §10 (:func:`fastdrop.reference.ln`) for
    a positive normal float64 ``r``: the frexp decomposition ``r = m * 2**e``
    done on the bits (exact; ``e`` made a float64 by the 2**52 trick, so the
    loop needs no integer conversion), ``m`` doubled when below
    ``sqrt(1/2)``, ``s = (m - 1) / (2 + (m - 1))``, ``ln m = s * P(s * s)``,
    ``e * LN2_HI + (e * LN2_LO + ln m)``.  Branch-free."""
    u = np.float64(r).view(np.uint64)
    m = np.uint64((u & _MANT) | _HALF_EXP).view(np.float64)       # in [0.5, 1)
    e = np.uint64(_TWO52_BITS | (u >> _U52)).view(np.float64) - _TWO52_PLUS_1022
    low = m < SQRT_HALF
    m = m * 2.0 if low else m                                      # exact
    e = e - 1.0 if low else e                                      # exact
    f = m - 1.0                                                    # exact
    s = f / (2.0 + f)
    lnm = s * _horner11(LN_SERIES, s * s)
    return e * LN2_HI + (e * LN2_LO + lnm)


@njit(inline="always")
def ppnd_spec(u):
    """AS 241 of docs/spec.md §10 (:func:`fastdrop.reference.ppnd`) for
    ``u`` in ``[2**-33, 1 - 2**-33]``: both branches computed, then
    selected (no branch in a loop over elements, so LLVM can vectorise
    it; each branch is finite for every such ``u``)."""
    q = u - 0.5
    rc = 0.180625 - q * q
    zc = q * _horner8(PPND_A, rc) / _horner8(PPND_B, rc)
    neg = q < 0.0
    rt = u if neg else 1.0 - u
    rt = np.sqrt(-ln_spec(rt)) - 1.6
    zt = _horner8(PPND_C, rt) / _horner8(PPND_D, rt)
    zt = -zt if neg else zt
    return zc if abs(q) <= 0.425 else zt


@njit(inline="always")
def uniform_of_word(w):
    """``u = (w + 0.5) * 2**-32`` for a uint32 word (exact in float64)."""
    return (np.float64(w) + 0.5) * _TWO_M32


@njit(cache=True, error_model="numpy")
def normal_at(j, k0, k1):
    """The standard normal variate of stream position ``j`` (uint64) under
    key ``(k0, k1)``: word ``j & 3`` of Philox at counter ``(b & 0xFFFFFFFF,
    b >> 32, 2, 0)``, ``b = j >> 2``."""
    j = np.uint64(j)
    w0, w1, w2, w3 = _block_words_scalar(j >> _U2, NORMAL_C2, k0, k1)
    wi = j & _U3
    w = w0 if wi == _U0 else (w1 if wi == _U1 else (w2 if wi == _U2 else w3))
    return ppnd_spec(uniform_of_word(w))


@njit(inline="always")
def _fill_normal(words, b0, nb, k0, k1):
    """Philox (c2 = 2) of blocks ``b0 .. b0 + nb - 1`` into ``words`` (4
    uint32 per block, so word ``4 * (b - b0) + (j & 3)`` is position ``j``'s).
    A tile's worth (at least ``TILE // 4`` blocks) runs as four interleaved
    chains of constant trip count, which LLVM vectorises (as
    :func:`_fill_lanes`); shorter runs go one block at a time."""
    if nb >= 4 * _NB16:
        h = _NB16
        for q in range(h):
            _put_block(words, q, block_words(b0 + np.uint64(q), NORMAL_C2, k0, k1))
            _put_block(words, q + h,
                       block_words(b0 + np.uint64(q + h), NORMAL_C2, k0, k1))
            _put_block(words, q + 2 * h,
                       block_words(b0 + np.uint64(q + 2 * h), NORMAL_C2, k0, k1))
            _put_block(words, q + 3 * h,
                       block_words(b0 + np.uint64(q + 3 * h), NORMAL_C2, k0, k1))
        for q in range(4 * h, nb):
            _put_block(words, q, block_words(b0 + np.uint64(q), NORMAL_C2, k0, k1))
    else:
        for q in range(nb):
            _put_block(words, q, block_words(b0 + np.uint64(q), NORMAL_C2, k0, k1))


@njit(cache=True, error_model="numpy")
def normal_tile(zbuf, words, j0, L, k0, k1):
    """The variates of positions ``j0 .. j0 + L - 1`` into ``zbuf[:L]``
    (``L <= TILE``; ``words`` a scratch of ``4 * (TILE // 4 + 1)`` uint32):
    Philox for the tile's blocks, then one branch-free loop of AS 241.

    ``error_model="numpy"``: a float division is the IEEE one, with no
    ZeroDivisionError check (whose branch kept LLVM from vectorising the
    loop; measured: scalar ``vdivsd`` before, 8-wide ``vdivpd``/``vsqrtpd``
    after on AVX-512).  No divisor here is ever zero (``2 + f >= 1.4``,
    ``B(r)`` and ``D(r)`` are positive), so the values are the same."""
    align_frame()
    j0 = np.uint64(j0)
    first = j0 & _U3
    _fill_normal(words, j0 >> _U2, np.int64((first + np.uint64(L) + _U3) >> _U2), k0, k1)
    for e in range(L):
        ue = np.uint64(e)
        zbuf[ue] = ppnd_spec(uniform_of_word(words[first + ue]))


@njit(cache=True)
def _row_normal(zbuf, words, mbase, n_t, sm, offset, k0, k1):
    """The variates of mask indices ``mbase + e * sm`` (``e < n_t``) into
    ``zbuf``."""
    align_frame()
    if sm == 1:
        normal_tile(zbuf, words, offset + np.uint64(mbase), n_t, k0, k1)
    elif sm == 0:
        z = normal_at(offset + np.uint64(mbase), k0, k1)
        for e in range(n_t):
            zbuf[e] = z
    else:
        for e in range(n_t):
            zbuf[e] = normal_at(offset + np.uint64(mbase + e * sm), k0, k1)


def noise_value(xv, t, mul):
    """One element of the noise rule (docs/spec.md §11): ``t`` (float64, ``b
    * z + a``) rounded to the compute type, then ``R(C(x) * t)`` (``mul``)
    or ``R(C(x) + t)``, in x's storage type (float16 as its uint16 bits,
    bfloat16 as its int16 bits).  Both results are computed and one selected (branch-free)."""
    raise NotImplementedError  # pragma: no cover - replaced by the overload


@overload(noise_value)
def _noise_value_impl(xv, t, mul):
    if xv == types.int16:  # bfloat16 bits, through float32
        def impl_bf16(xv, t, mul):
            xc = bf16_to_float(xv)
            tc = np.float32(t)
            ym = xc * tc
            ya = xc + tc
            return float_to_bf16(ym if mul else ya)
        return impl_bf16
    if isinstance(xv, types.Integer):  # float16 bits, through float32
        if NATIVE_F16:
            def impl_native(xv, t, mul):
                xc = f32_of_half_bits(xv)
                tc = np.float32(t)
                ym = xc * tc
                ya = xc + tc
                return half_bits_of_f32(ym if mul else ya)
            return impl_native

        def impl_bits(xv, t, mul):
            xc = half_to_float(xv)
            tc = np.float32(t)
            ym = xc * tc
            ya = xc + tc
            return float_to_half(ym if mul else ya)
        return impl_bits
    if xv == types.float32:
        def impl32(xv, t, mul):
            tc = np.float32(t)
            ym = xv * tc
            ya = xv + tc
            return ym if mul else ya
        return impl32

    def impl64(xv, t, mul):
        ym = xv * t
        ya = xv + t
        return ym if mul else ya
    return impl64


@njit(cache=True, inline="always")
def _noise_run(xf, xb, sx, of, ob, so, n, zbuf, a, b, mul):
    """``of[ob + e*so] = noise_value(xf[xb + e*sx], zbuf[e] * b + a, mul)``
    for ``e < n`` (unit strides take the vectorised slice form)."""
    if sx == 1 and so == 1:
        xa = xf[xb:xb + n]
        oa = of[ob:ob + n]
        for e in range(n):
            oa[e] = noise_value(xa[e], zbuf[e] * b + a, mul)
    else:
        for e in range(n):
            of[ob + e * so] = noise_value(xf[xb + e * sx], zbuf[e] * b + a, mul)


@njit(cache=True)
def _noise_task(g, xf, x0, of, o0, shape, xs, os, ms, seed, offset, a, b, mul):
    """Task ``g`` of :func:`noise_nd`."""
    align_frame()
    nd = shape.shape[0]
    L = shape[nd - 1]
    sx = xs[nd - 1]
    so = os[nd - 1]
    sm = ms[nd - 1]
    seed = np.uint64(seed)
    k0 = np.uint64(seed & _LO32)
    k1 = np.uint64(seed >> _S32)
    offset = np.uint64(offset)
    R, nseg, rows_per, _ = _task_grid(shape, nd, L)
    words = carray(stack_buffer(_NORMAL_WORDS, np.uint32), _NORMAL_WORDS)
    zbuf = carray(stack_buffer(TILE, np.float64), TILE)
    r0, r1, e0, e1 = _task_bounds(g, R, nseg, rows_per, L)
    for r in range(r0, r1):
        xo, oo, mo = _outer_offsets(r, nd - 1, shape, xs, os, ms, x0, o0)
        for t in range(e0, e1, TILE):
            n_t = min(TILE, e1 - t)
            _row_normal(zbuf, words, mo + t * sm, n_t, sm, offset, k0, k1)
            _noise_run(xf, xo + t * sx, sx, of, oo + t * so, so, n_t, zbuf, a, b, mul)


@njit(cache=True, parallel=True)
def noise_nd(xf, x0, of, o0, shape, xs, os, ms, seed, offset, a, b, mul):
    """Gaussian dropout / noise (docs/spec.md §11) over a strided N-d view
    (inner axis last; the geometry of :func:`forward_nd`): each element
    with mask index ``i`` becomes ``noise_value(x, b * Z(offset + i) + a,
    mul)``, ``Z`` the normal-variate stream of §10 under ``seed``.

    ``a`` and ``b`` are float64, ``seed`` and ``offset`` uint64, ``mul`` a
    bool (True: ``x * t``, False: ``x + t``).  Work goes in groups of about
    :data:`CHUNK` elements (whole rows, or CHUNK-long segments of long
    rows), each row in tiles of :data:`TILE`: the variates of a tile into a
    scratch buffer (batched Philox when the inner axis has mask stride 1),
    then the elementwise rule.  An element's value depends only on its mask
    index, never on the split.
    """
    for g in prange(nd_tasks(shape, False)):
        _noise_task(g, xf, x0, of, o0, shape, xs, os, ms, seed, offset, a, b, mul)


# ---------------------------------------------------------------------------
# the kernels' tasks as C callbacks for fastdrop's worker pool
# ---------------------------------------------------------------------------
# Numba's own parallel loops end at a barrier that waits for every thread of
# the region, including one the OS has not scheduled: on a busy machine a
# call then waits for a time slice (measured, 2-core AMD EPYC with a busy
# loop per core: 10**5 float32 took 57x longer on two threads than on
# one).  The backend therefore runs the chunk tasks above on the Cython
# extension's worker pool (fastdrop._cython._kernels.run_tasks), which hands
# tasks out dynamically and waits only for tasks a worker has claimed.  Each
# task runs through a ``cfunc`` of C signature ``void(void *ctx, int64_t
# t)``; ``ctx`` holds TASK_SLOTS array addresses, their sizes and
# TASK_SLOTS integers (see run_tasks).  The prange kernels above remain for
# when the extension is not built.

#: Slots per section of the pool's task context (``TASK_SLOTS`` of the
#: Cython extension; a test checks they agree).
TASK_SLOTS = 16
_SIZE = TASK_SLOTS        # index of the first array size
_INT = 2 * TASK_SLOTS     # index of the first integer argument
_TASK_SIG = types.void(types.voidptr, types.int64)


@intrinsic
def _pointer(typingctx, address):
    """The int64 ``address`` as a ``void *``."""
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))
    return types.voidptr(types.int64), codegen


@njit(inline="always")
def _context(ctx):
    return carray(ctx, 3 * TASK_SLOTS, np.int64)


@njit(inline="always")
def _array(ip, k, dt):
    """Array ``k`` of a task context, typed ``dt``."""
    return carray(_pointer(ip[k]), ip[_SIZE + k], dt)


@njit(inline="always")
def _u64(ip, k):
    """Integer ``k`` of a task context as the uint64 it stands for."""
    return np.uint64(ip[_INT + k])


@njit(inline="always")
def _sel(ip, k, ct, st):
    """``sel = (a, b, c)`` from arrays ``k`` (``ct[2]``) and ``k + 1``
    (``st[1]``) of a task context."""
    ab = _array(ip, k, ct)
    return (ab[0], ab[1], _array(ip, k + 1, st)[0])


def task_cfunc(kernel, st, ct):
    """The pool task of ``kernel`` (``"forward_contig"``, ``"mask"``,
    ``"apply_contig"``, ``"forward_nd"``, ``"noise_nd"`` or
    ``"stream_scale"``) for storage type ``st`` and compute type ``ct``
    (NumPy scalar types; ``st`` as the backend passes arrays: uint16 for
    float16, int16 for bfloat16; ignored by ``"mask"``), compiled -- or
    loaded from the disk cache -- now.

    The arguments a task reads from its context, in slot order (arrays:
    ``A``, integers: ``I``; ``sel`` travels as a ``ct[2]`` array ``(a,
    b)`` and an ``st[1]`` array ``(c,)``):

    - forward_contig: A x, out, keep_out, packed_out, ab, c; I seed,
      offset, T, nt
    - mask: A keep_out, packed_out; I n, seed, offset, T
    - apply_contig: A x, out, keep, packed, ab, c; I nt
    - forward_nd: A xf, of, shape, xs, os, ms, keep, packed, ab, c; I x0,
      o0, seed, offset, T, blocked
    - noise_nd: A xf, of, shape, xs, os, ms, ab (the float64 ``a``, ``b``);
      I x0, o0, seed, offset, mul
    - stream_scale: A x, out, s (``st[1]``)

    Returns
    -------
    numba.core.ccallback.CFunc
        ``.address`` is the C function pointer for ``run_tasks``.
    """
    if kernel == "forward_contig":
        def run(ctx, t):
            ip = _context(ctx)
            _fwd_contig_task(t, _array(ip, 0, st), _array(ip, 1, st), _u64(ip, 0), _u64(ip, 1),
                             _u64(ip, 2), _sel(ip, 4, ct, st), _array(ip, 2, np.bool_),
                             _array(ip, 3, np.uint8), ip[_INT + 3] != 0)
    elif kernel == "mask":
        def run(ctx, t):
            ip = _context(ctx)
            _mask_task(t, ip[_INT], _u64(ip, 1), _u64(ip, 2), _u64(ip, 3),
                       _array(ip, 0, np.bool_), _array(ip, 1, np.uint8))
    elif kernel == "apply_contig":
        def run(ctx, t):
            ip = _context(ctx)
            _apply_contig_task(t, _array(ip, 0, st), _array(ip, 1, st), _sel(ip, 4, ct, st),
                               _array(ip, 2, np.bool_), _array(ip, 3, np.uint8),
                               ip[_INT] != 0)
    elif kernel == "forward_nd":
        def run(ctx, t):
            ip = _context(ctx)
            _fwd_nd_task(t, _array(ip, 0, st), ip[_INT], _array(ip, 1, st), ip[_INT + 1],
                         _array(ip, 2, np.int64), _array(ip, 3, np.int64),
                         _array(ip, 4, np.int64), _array(ip, 5, np.int64),
                         _u64(ip, 2), _u64(ip, 3), _u64(ip, 4), _sel(ip, 8, ct, st),
                         _array(ip, 6, np.bool_), _array(ip, 7, np.uint8), ip[_INT + 5] != 0)
    elif kernel == "noise_nd":
        def run(ctx, t):
            ip = _context(ctx)
            ab = _array(ip, 6, np.float64)
            _noise_task(t, _array(ip, 0, st), ip[_INT], _array(ip, 1, st), ip[_INT + 1],
                        _array(ip, 2, np.int64), _array(ip, 3, np.int64),
                        _array(ip, 4, np.int64), _array(ip, 5, np.int64),
                        _u64(ip, 2), _u64(ip, 3), ab[0], ab[1], ip[_INT + 4] != 0)
    elif kernel == "stream_scale":
        def run(ctx, t):
            ip = _context(ctx)
            _stream_task(t, _array(ip, 0, st), _array(ip, 1, st), _array(ip, 2, st)[0])
    else:
        raise ValueError(f"unknown kernel {kernel!r}")
    return cfunc(_TASK_SIG, cache=True)(run)
