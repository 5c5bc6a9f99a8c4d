"""Numba CUDA kernels for the mask stream v1 (docs/spec.md §1, §2 and §4) and
the normal-variate stream v1 (§10, §11).

Importing this module imports :mod:`numba.cuda` but compiles nothing: the
kernels are built by factories on first use, one per (dtype, variant), and
memoised (:func:`tile_kernel`, :func:`nd_kernel`, :func:`fill_kernel`).
Numba specialises each further on the argument types it is called with
(the number of axes of the strided kernels), also lazily.

Philox4x32-10 and the keep decision are not copied here: they come from
:func:`fastdrop._numba.philox.make`, compiled as CUDA device functions.

Two kernel shapes
-----------------
``tile`` (contiguous input, mask not broadcast, and the mask-only kernel)
    A block works through tiles of ``8 * blockDim`` consecutive elements
    (block-stride loop over tiles).  Thread ``t`` of the block owns group
    ``g = tile * blockDim + t``: the 8 mask positions ``8g .. 8g + 7``.  It
    computes their keep bits with one Philox call (two when ``offset`` is not
    a multiple of 8, since the group then straddles two Philox blocks) and
    writes packed byte ``g`` itself (no atomics).  The bits are exchanged
    through shared memory so that element ``k * blockDim + t`` of the tile is
    loaded and stored by thread ``t``: every warp access is coalesced.  The
    8 loads of a thread are issued before the Philox rounds and before any
    store, so 8 independent loads per thread are in flight.  Index math is
    multiplications and shifts only (no 64-bit division).
``nd`` (any strides, broadcast masks, stored masks)
    Grid-stride loop over groups of 8 consecutive logical (C-order) indices
    of ``x``.  The first is unravelled into per-axis indices (divisions),
    the rest advance along the last axis and re-unravel only on wrap-around.
    The mask index of a multi-index is ``sum(idx[k] * mstrides[k])`` (the
    "base index plus per-axis mask strides" rule); a thread caches the last
    Philox block so broadcast and sequential masks cost ~1 Philox per block.

Neither the mask nor the result depends on the grid or block size: every
decision is a function of its logical index only.

The affine select
-----------------
Every value kernel computes docs/spec.md §4's select,
``out = keep ? R(C(x) * a + b) : R(c)`` with ``a`` (scale), ``b`` (shift)
and ``c`` (fill) already rounded to the compute type by the caller.  The
product and the sum are two separately rounded IEEE operations: NVVM
contracts ``x * a + b`` into an FMA by default, so :func:`affine32` and
:func:`affine64` use libdevice's non-contracting ``fmul_rn``/``fadd_rn``
(``dmul_rn``/``dadd_rn`` for float64).  Under the Numba CUDA simulator those
libdevice functions are empty stubs, so the same names are bound to NumPy
scalar shims with the same IEEE results.  Plain dropout is the case
``b = -0.0`` (an exact identity) and ``c = +0.0``: one extra add per element
and no separate kernels.

The normal-variate stream and the noise kernels
-----------------------------------------------
:func:`noise_kernel` computes docs/spec.md §11 (Gaussian dropout and
noise), ``out = R(C(x) op C(t))`` with ``t = b * z + a`` in float64 and
``z`` the variate of §10 at the element's stream position (Philox block
``j >> 2`` with counter word 2 set to 2, word ``j & 3``; AS 241's quantile
with §10's logarithm, :func:`ppnd_rn` and :func:`ln_rn`).  Every float64
multiply, add, division and square root there is a libdevice ``_rn``
function (``dmul_rn``, ``dadd_rn``, ``ddiv_rn``, ``dsqrt_rn``), so NVVM can
neither contract nor approximate any of them, and the frexp decomposition
is done on the bits: the variates are those of
:func:`fastdrop.reference.normal_range` bit for bit.  Under the simulator
these names are NumPy shims as well.

Arrays reach the kernels as 1-D spans over the memory of the caller's
array plus an element offset (``base``) and element strides, see
:mod:`fastdrop._cuda._interop`.  A bfloat16 array's span is its uint16
bits; the kernels widen and round them with integer operations
(:func:`bf16_to_f32`, :func:`f32_to_bf16`: docs/spec.md §4, "bfloat16")
and compute in float32, as for float16.
"""

from __future__ import annotations

import operator

import numpy as np
from numba import cuda

from .._numba.philox import make
from ..reference import (LN2_HI, LN2_LO, LN_SERIES, NORMAL_C2, PPND_A, PPND_B, PPND_C,
                         PPND_D, SQRT_HALF)
from ._interop import SIMULATOR

__all__ = ["MAX_BLOCK", "tile_kernel", "nd_kernel", "fill_kernel", "noise_kernel", "philox",
           "affine32", "affine64", "ln_rn", "ppnd_rn", "normal_of_word"]

#: Largest block size the tile kernels accept (size of their shared array).
MAX_BLOCK = 1024

#: Extra ``numba.cuda.jit`` options of the tile kernels (tuning on a GPU,
#: e.g. ``{"max_registers": 80}``); read when a kernel is first built.
JIT_OPTIONS: dict = {}

#: Philox and the keep decision, compiled as CUDA device functions (lazily).
philox = make(lambda f: cuda.jit(device=True)(f))

_block_words = philox.block_words
_lane = philox.lane
_keep_decision = philox.keep_decision

if SIMULATOR:
    # libdevice's functions are empty stubs in the simulator: NumPy scalar
    # arithmetic is IEEE round to nearest even in the operands' own type and
    # never fused, which is what the ``_rn`` intrinsics compute on a GPU.
    def _rn(ftype, op):
        def f(a, b):
            with np.errstate(all="ignore"):
                return op(ftype(a), ftype(b))
        return f

    _fmul_rn, _fadd_rn = _rn(np.float32, operator.mul), _rn(np.float32, operator.add)
    _dmul_rn, _dadd_rn = _rn(np.float64, operator.mul), _rn(np.float64, operator.add)
    _ddiv_rn = _rn(np.float64, operator.truediv)

    def _dsqrt_rn(a):  # IEEE sqrt is correctly rounded
        with np.errstate(all="ignore"):
            return np.sqrt(np.float64(a))

    def _double_as_longlong(a):  # the bits, as libdevice's reinterpretation
        return np.float64(a).view(np.int64)

    def _longlong_as_double(a):
        return np.int64(a).view(np.float64)

    def _float_as_int(a):
        return np.float32(a).view(np.int32)

    def _int_as_float(a):
        return np.int32(a).view(np.float32)
else:
    from numba.cuda import libdevice as _libdevice

    _fmul_rn = _libdevice.fmul_rn
    _fadd_rn = _libdevice.fadd_rn
    _dmul_rn = _libdevice.dmul_rn
    _dadd_rn = _libdevice.dadd_rn
    _ddiv_rn = _libdevice.ddiv_rn
    _dsqrt_rn = _libdevice.dsqrt_rn
    _double_as_longlong = _libdevice.double_as_longlong
    _longlong_as_double = _libdevice.longlong_as_double
    _float_as_int = _libdevice.float_as_int
    _int_as_float = _libdevice.int_as_float


@cuda.jit(device=True)
def affine32(v, a, b):
    """``v * a + b`` in float32, product and sum each rounded (no FMA)."""
    return _fadd_rn(_fmul_rn(v, a), b)


@cuda.jit(device=True)
def affine64(v, a, b):
    """``v * a + b`` in float64, product and sum each rounded (no FMA)."""
    return _dadd_rn(_dmul_rn(v, a), b)


_U3 = np.uint64(3)
_U7 = np.uint64(7)
_NO_BLOCK = np.uint64(0xFFFFFFFFFFFFFFFF)  # never a block index (they are < 2**61)


@cuda.jit(device=True)
def group_bits(first, cnt, offset, k0, k1, th, tl):
    """Keep bits of mask indices ``first .. first + cnt - 1`` (``cnt <= 8``).

    Bit ``l`` of the result is the decision for mask index ``first + l``,
    i.e. stream position ``offset + first + l``.  ``first`` is a multiple of
    8 in the tile kernels, so the result is packed byte ``first // 8``.
    """
    j0 = offset + np.uint64(first)
    b0 = j0 >> _U3
    s = np.uint32(j0 & _U7)
    a0, a1, a2, a3 = _block_words(b0, 0, k0, k1)
    c0, c1, c2, c3 = a0, a1, a2, a3
    if s != np.uint32(0):
        c0, c1, c2, c3 = _block_words(b0 + np.uint64(1), 0, k0, k1)
    thu = np.uint32(th)
    bits = np.uint32(0)
    for l in range(8):
        if l < cnt:
            pos = s + np.uint32(l)
            if pos < np.uint32(8):
                hi = _lane(a0, a1, a2, a3, pos)
            else:
                hi = _lane(c0, c1, c2, c3, pos - np.uint32(8))
            if hi != thu:
                k = hi > thu
            else:  # tie on the high 16 bits: probability 2**-16
                k = _keep_decision(j0 + np.uint64(l), k0, k1, th, tl)
            if k:
                bits = bits | (np.uint32(1) << np.uint32(l))
    return np.uint32(bits)


@cuda.jit(device=True)
def group_bits_aligned(first, cnt, offset, k0, k1, th, tl):
    """:func:`group_bits` when ``offset + first`` is a multiple of 8: one
    Philox block, fewer live registers (the common case: a Generator's
    offsets are multiples of 8)."""
    j0 = offset + np.uint64(first)
    a0, a1, a2, a3 = _block_words(j0 >> _U3, 0, k0, k1)
    thu = np.uint32(th)
    bits = np.uint32(0)
    for l in range(8):
        if l < cnt:
            hi = _lane(a0, a1, a2, a3, np.uint32(l))
            if hi != thu:
                k = hi > thu
            else:
                k = _keep_decision(j0 + np.uint64(l), k0, k1, th, tl)
            if k:
                bits = bits | (np.uint32(1) << np.uint32(l))
    return np.uint32(bits)


@cuda.jit(device=True)
def unravel(L, shape, xs, os, ms, nd):
    """Element offsets (x, out, mask) of C-order logical index ``L`` and its
    index along the last axis."""
    xo = 0
    oo = 0
    mo = 0
    ilast = 0
    rem = L
    d = nd - 1
    while d >= 0:
        s = shape[d]
        q = rem // s
        i = rem - q * s
        xo += i * xs[d]
        oo += i * os[d]
        mo += i * ms[d]
        if d == nd - 1:
            ilast = i
        rem = q
        d -= 1
    return xo, oo, mo, ilast


_BF_SHIFT = np.uint32(16)
_BF_SIGNLESS = np.uint32(0x7FFFFFFF)
_BF_INF = np.uint32(0x7F800000)
_BF_HALF = np.uint32(0x7FFF)
_BF_QUIET = np.uint32(0x40)
_BF_ONE = np.uint32(1)


@cuda.jit(device=True)
def bf16_to_f32(h):
    """bfloat16 bits (uint16) -> float32: the high half of the float32
    (exact; docs/spec.md §4)."""
    return _int_as_float(np.int32(np.uint32(h) << _BF_SHIFT))


@cuda.jit(device=True)
def f32_to_bf16(f):
    """float32 -> bfloat16 bits (uint16): round to nearest even on the bits
    (overflow carries into an infinity); a NaN keeps its sign and top
    payload bits and is made quiet (docs/spec.md §4; a GPU's arithmetic NaN
    is its canonical one, so only NaN-ness is promised there)."""
    u = np.uint32(_float_as_int(np.float32(f)))
    hi = u >> _BF_SHIFT
    if (u & _BF_SIGNLESS) > _BF_INF:
        return np.uint16(hi | _BF_QUIET)
    return np.uint16((u + _BF_HALF + (hi & _BF_ONE)) >> _BF_SHIFT)


def _types(dtype):
    """``(storage type, load, store, compute type, affine device function)``
    for a float dtype name: ``load`` converts a stored element to the
    compute type, ``store`` a compute-type value back (bfloat16, stored as
    its uint16 bits: :func:`bf16_to_f32`, :func:`f32_to_bf16`; the IEEE
    types: their own conversions)."""
    if dtype == "bfloat16":
        return np.uint16, bf16_to_f32, f32_to_bf16, np.float32, affine32
    vt = {"float16": np.float16, "float32": np.float32, "float64": np.float64}[dtype]
    if dtype == "float64":
        return vt, np.float64, vt, np.float64, affine64
    return vt, np.float32, vt, np.float32, affine32


_tile_cache: dict = {}
_nd_cache: dict = {}
_fill_cache: dict = {}


def tile_kernel(dtype, with_x, with_keep, with_packed, aligned=False):
    """The contiguous kernel for ``dtype`` (a name), memoised.

    ``aligned=True`` gives a variant valid only when ``offset % 8 == 0``
    (one Philox call per group instead of two).

    Signature of the returned kernel::

        kern(x, out, keep, packed, n, offset, k0, k1, th, tl, scale, shift, fill)

    ``x``, ``out`` (``n`` elements of ``dtype``), ``keep`` (``n`` bools) and
    ``packed`` (``ceil(n / 8)`` bytes) are 1-D C-contiguous; arrays a
    variant does not use are dummies of the right type.  ``scale``,
    ``shift`` and ``fill`` are compute-type scalars: a kept element is
    ``R(x * scale + shift)`` (two roundings, no FMA), a dropped one
    ``R(fill)``.  Launch with any
    ``blockDim.x <= MAX_BLOCK`` (1-D) and any grid.
    """
    key = (dtype, bool(with_x), bool(with_keep), bool(with_packed), bool(aligned))
    kern = _tile_cache.get(key)
    if kern is not None:
        return kern
    vt, load, store, ct, affine = _types(dtype)
    WITH_X, WITH_KEEP, WITH_PACKED, ALIGNED = key[1:]
    EXCHANGE = WITH_X or WITH_KEEP

    @cuda.jit(**JIT_OPTIONS)
    def kern(x, out, keep, packed, n, offset, k0, k1, th, tl, scale, shift, fill):
        tid = cuda.threadIdx.x
        bd = cuda.blockDim.x
        sm = cuda.shared.array(MAX_BLOCK, np.uint32)
        v = cuda.local.array(8, vt)
        dropped = store(fill)
        tile_elems = np.int64(bd) * 8
        ntiles = (n + tile_elems - 1) // tile_elems
        t = np.int64(cuda.blockIdx.x)
        while t < ntiles:  # uniform within the block: syncthreads below is legal
            base = t * tile_elems
            if WITH_X:
                for k in range(8):
                    e = base + k * bd + tid
                    if e < n:
                        v[k] = x[e]
            g = t * bd + tid
            first = g * 8
            bits = np.uint32(0)
            if first < n:
                cnt = min(np.int64(8), n - first)
                if ALIGNED:
                    bits = group_bits_aligned(first, cnt, offset, k0, k1, th, tl)
                else:
                    bits = group_bits(first, cnt, offset, k0, k1, th, tl)
                if WITH_PACKED:
                    packed[g] = np.uint8(bits)
            if EXCHANGE:
                sm[tid] = bits
                cuda.syncthreads()
                for k in range(8):
                    el = k * bd + tid
                    e = base + el
                    if e < n:
                        kk = (sm[el >> 3] >> np.uint32(el & 7)) & np.uint32(1)
                        if WITH_KEEP:
                            keep[e] = kk != 0
                        if WITH_X:
                            y = store(affine(load(v[k]), scale, shift))
                            out[e] = y if kk != 0 else dropped
                cuda.syncthreads()
            t += cuda.gridDim.x

    _tile_cache[key] = kern
    return kern


#: Mask sources of the strided kernel.
PHILOX, BOOL, PACKED = 0, 1, 2


def nd_kernel(dtype, source, with_keep, with_packed):
    """The strided kernel for ``dtype``, memoised.

    Signature::

        kern(x, xb, xs, out, ob, os, shape, ms, n,
             msrc, mb, mstep, offset, k0, k1, th, tl, scale, shift, fill, keep, packed)

    ``x``/``out`` are 1-D spans, ``xb``/``ob`` the element offsets of
    element ``(0, ..., 0)`` and ``xs``/``os`` element strides (tuples);
    ``shape`` the (collapsed) shape, ``n`` its size; ``ms`` the per-axis
    mask strides.  ``source`` selects where ``keep(i)`` comes from, for the
    mask index ``i = sum(idx * ms)``:

    - ``PHILOX``: the v1 decision at stream position ``offset + i``;
    - ``BOOL``: ``msrc[mb + i]`` (``ms`` are then the bool array's own
      element strides, 0 on broadcast axes);
    - ``PACKED``: bit ``i & 7`` of ``msrc[mb + (i >> 3) * mstep]``.

    ``keep``/``packed`` (contiguous, used when ``with_keep``/``with_packed``,
    only valid when the mask is not broadcast so that ``i`` is the logical
    index) receive the keep bits.  The element is the affine select of
    :func:`tile_kernel` (``scale``, ``shift``, ``fill`` in the compute type).
    """
    key = (dtype, int(source), bool(with_keep), bool(with_packed))
    kern = _nd_cache.get(key)
    if kern is not None:
        return kern
    _, load, store, ct, affine = _types(dtype)
    SOURCE = key[1]
    WITH_KEEP, WITH_PACKED = key[2:]

    @cuda.jit
    def kern(x, xb, xs, out, ob, os, shape, ms, n,
             msrc, mb, mstep, offset, k0, k1, th, tl, scale, shift, fill, keep, packed):
        nd = len(shape)
        last = shape[nd - 1]
        xsl = xs[nd - 1]
        osl = os[nd - 1]
        msl = ms[nd - 1]
        dropped = store(fill)
        thu = np.uint32(th)
        ngroups = (n + 7) // 8
        g = np.int64(cuda.grid(1))
        step = np.int64(cuda.gridsize(1))
        while g < ngroups:
            L = g * 8
            xo, oo, mo, il = unravel(L, shape, xs, os, ms, nd)
            cached = _NO_BLOCK
            w0 = w1 = w2 = w3 = np.uint32(0)
            bits = np.uint32(0)
            for l in range(8):
                if L < n:
                    if SOURCE == PHILOX:
                        j = offset + np.uint64(mo)
                        b = j >> _U3
                        if b != cached:
                            w0, w1, w2, w3 = _block_words(b, 0, k0, k1)
                            cached = b
                        hi = _lane(w0, w1, w2, w3, np.uint32(j & _U7))
                        if hi != thu:
                            k = hi > thu
                        else:
                            k = _keep_decision(j, k0, k1, th, tl)
                    elif SOURCE == BOOL:
                        k = msrc[mb + mo] != 0
                    else:
                        byte = msrc[mb + (mo >> 3) * mstep]
                        k = ((np.uint32(byte) >> np.uint32(mo & 7)) & np.uint32(1)) != 0
                    y = store(affine(load(x[xb + xo]), scale, shift))
                    out[ob + oo] = y if k else dropped
                    if WITH_KEEP:
                        keep[L] = k
                    if k:
                        bits = bits | (np.uint32(1) << np.uint32(l))
                    L += 1
                    il += 1
                    if il < last:
                        xo += xsl
                        oo += osl
                        mo += msl
                    elif L < n:
                        xo, oo, mo, il = unravel(L, shape, xs, os, ms, nd)
            if WITH_PACKED:
                packed[g] = np.uint8(bits)
            g += step

    _nd_cache[key] = kern
    return kern


#: Operations of the fill kernel.
COPY, SCALE, ZERO = 0, 1, 2


def fill_kernel(dtype, op):
    """Elementwise ``out = x`` (COPY), ``x * factor`` in the compute type
    (SCALE) or ``+0.0`` (ZERO) over strided spans, memoised.

    Signature::

        kern(x, xb, xs, out, ob, os, shape, n, factor)
    """
    key = (dtype, int(op))
    kern = _fill_cache.get(key)
    if kern is not None:
        return kern
    _, load, store, ct, _ = _types(dtype)
    OP = key[1]

    @cuda.jit
    def kern(x, xb, xs, out, ob, os, shape, n, factor):
        nd = len(shape)
        i = np.int64(cuda.grid(1))
        step = np.int64(cuda.gridsize(1))
        while i < n:
            xo, oo, mo, il = unravel(i, shape, xs, os, os, nd)
            if OP == COPY:
                out[ob + oo] = x[xb + xo]
            elif OP == SCALE:
                out[ob + oo] = store(load(x[xb + xo]) * factor)
            else:
                out[ob + oo] = store(ct(0.0))
            i += step

    _fill_cache[key] = kern
    return kern


_mask_fill = None


def mask_fill_kernel():
    """``keep[:] = value`` and ``packed[:] = 0xFF / 0`` with the tail byte's
    unused bits zero.  Signature ``kern(keep, nkeep, packed, nbytes, n, value)``."""
    global _mask_fill
    if _mask_fill is None:
        @cuda.jit
        def kern(keep, nkeep, packed, nbytes, n, value):
            i = np.int64(cuda.grid(1))
            step = np.int64(cuda.gridsize(1))
            while i < nkeep or i < nbytes:
                if i < nkeep:
                    keep[i] = value
                if i < nbytes:
                    b = np.uint32(0)
                    if value:
                        rem = n - i * 8
                        if rem >= 8:
                            b = np.uint32(0xFF)
                        else:
                            b = (np.uint32(1) << np.uint32(rem)) - np.uint32(1)
                    packed[i] = np.uint8(b)
                i += step

        _mask_fill = kern
    return _mask_fill


# ----------------------------------------------------------------------------
# the normal-variate stream v1 (docs/spec.md §10) and the noise kernels (§11)
# ----------------------------------------------------------------------------

_U2 = np.uint64(2)
_MANTISSA = np.int64(0x000FFFFFFFFFFFFF)
_HALF_EXPONENT = np.int64(0x3FE0000000000000)  # the exponent field of [0.5, 1)
_TWO_M32 = 2.0 ** -32


def _horner(coeffs):
    """A device function ``c0 + x * (c1 + x * (... + x * c_last))`` for the
    float64 coefficients ``coeffs``, evaluated as the reference's
    ``_horner``: from the highest coefficient down, one rounded multiply and
    one rounded add per step (``dmul_rn``, ``dadd_rn``: never fused)."""
    c = tuple(float(v) for v in coeffs[::-1])
    n = len(c)

    @cuda.jit(device=True)
    def horner(x):
        r = c[0]
        for k in range(1, n):
            r = _dadd_rn(_dmul_rn(r, x), c[k])
        return r

    return horner


_ln_series = _horner(LN_SERIES)
_ppnd_a = _horner(PPND_A)
_ppnd_b = _horner(PPND_B)
_ppnd_c = _horner(PPND_C)
_ppnd_d = _horner(PPND_D)


@cuda.jit(device=True)
def ln_rn(r):
    """docs/spec.md §10's logarithm of a positive normal float64 ``r``
    (:func:`fastdrop.reference.ln`): ``r = m * 2**e`` from the bits (exact),
    ``m`` in ``[sqrt(1/2), sqrt(2))``, ``s = (m - 1) / (2 + (m - 1))``,
    ``ln m = s * P(s * s)``, ``ln r = e * LN2_HI + (e * LN2_LO + ln m)``."""
    bits = _double_as_longlong(r)
    e = (bits >> 52) - 1022                      # frexp: r = m * 2**e, m in [0.5, 1)
    m = _longlong_as_double((bits & _MANTISSA) | _HALF_EXPONENT)
    if m < SQRT_HALF:
        m = _dmul_rn(m, 2.0)                     # exact
        e -= 1
    fe = np.float64(e)                           # exact
    f = _dadd_rn(m, -1.0)                        # exact (Sterbenz)
    s = _ddiv_rn(f, _dadd_rn(2.0, f))
    lnm = _dmul_rn(s, _ln_series(_dmul_rn(s, s)))
    return _dadd_rn(_dmul_rn(fe, LN2_HI), _dadd_rn(_dmul_rn(fe, LN2_LO), lnm))


@cuda.jit(device=True)
def ppnd_rn(u):
    """AS 241's standard normal quantile (:func:`fastdrop.reference.ppnd`)
    of a float64 ``u`` with ``min(u, 1 - u) >= 2**-33``."""
    q = _dadd_rn(u, -0.5)
    if abs(q) <= 0.425:
        r = _dadd_rn(0.180625, -_dmul_rn(q, q))
        return _ddiv_rn(_dmul_rn(q, _ppnd_a(r)), _ppnd_b(r))
    r = u if q < 0.0 else _dadd_rn(1.0, -u)
    r = _dadd_rn(_dsqrt_rn(-ln_rn(r)), -1.6)
    z = _ddiv_rn(_ppnd_c(r), _ppnd_d(r))
    return -z if q < 0.0 else z


@cuda.jit(device=True)
def normal_of_word(w):
    """The variate of a 32-bit Philox word: ``ppnd((w + 0.5) * 2**-32)``
    (the uniform is exact)."""
    return ppnd_rn(_dmul_rn(_dadd_rn(np.float64(w), 0.5), _TWO_M32))


@cuda.jit(device=True)
def _word(w0, w1, w2, w3, k):
    return w0 if k == 0 else (w1 if k == 1 else (w2 if k == 2 else w3))


@cuda.jit(device=True)
def noise_t(w, a, b):
    """``t = b * z + a`` in float64 (two roundings, never fused) for the
    variate ``z`` of word ``w``."""
    return _dadd_rn(_dmul_rn(normal_of_word(w), b), a)


@cuda.jit(device=True)
def _mul32(v, t):
    return _fmul_rn(np.float32(v), np.float32(t))


@cuda.jit(device=True)
def _add32(v, t):
    return _fadd_rn(np.float32(v), np.float32(t))


@cuda.jit(device=True)
def _mul64(v, t):
    return _dmul_rn(np.float64(v), t)


@cuda.jit(device=True)
def _add64(v, t):
    return _dadd_rn(np.float64(v), t)


#: The operations of the noise kernels (docs/spec.md §11): ``x * t``, ``x + t``.
NOISE_OPS = ("mul", "add")

_noise_cache: dict = {}


def noise_kernel(dtype, op, blocks):
    """The Gaussian noise kernel for ``dtype`` and ``op`` (``"mul"`` or
    ``"add"``), memoised: ``out = R(C(x) op C(t))``, ``t = b * z + a`` in
    float64 with ``z`` the variate of stream position ``offset + i`` (``C``
    rounds ``x`` and ``t`` to the compute type, a plain round-to-nearest
    conversion, ``R`` back to ``dtype``; the operation is ``fmul_rn`` /
    ``fadd_rn`` or ``dmul_rn`` / ``dadd_rn``).

    ``blocks=True``: the mask index of element ``e`` of a 1-D array is
    ``e`` itself (a full, contiguous mask; ``x`` and ``out`` may have any
    element strides).  Thread ``g`` of the grid-stride loop owns Philox
    block ``(offset >> 2) + g``: one Philox call for its (up to) 4
    elements.  Signature::

        kern(x, xb, xs, out, ob, os, n, offset, k0, k1, a, b)

    with ``xs``/``os`` ints, ``n > 0`` the size.

    ``blocks=False``: any strides and mask strides, as :func:`nd_kernel`
    (groups of 8 consecutive logical indices, the last Philox block and the
    last ``t`` cached, so a broadcast mask computes each variate once per
    run along the last axis).  Signature::

        kern(x, xb, xs, out, ob, os, shape, ms, n, offset, k0, k1, a, b)

    ``offset`` (uint64), ``k0``, ``k1`` (uint64 key words), ``a``, ``b``
    (float64).
    """
    if op not in NOISE_OPS:
        raise ValueError(f"op must be one of {NOISE_OPS}, got {op!r}")
    key = (dtype, op, bool(blocks))
    kern = _noise_cache.get(key)
    if kern is not None:
        return kern
    _, load, store, ct, _ = _types(dtype)
    if ct is np.float64:
        combine = _mul64 if op == "mul" else _add64
    else:
        combine = _mul32 if op == "mul" else _add32

    if blocks:
        @cuda.jit
        def kern(x, xb, xs, out, ob, os, n, offset, k0, k1, a, b):
            un = np.uint64(n)
            b0 = offset >> _U2
            nblocks = np.int64(((offset + (un - np.uint64(1))) >> _U2) - b0) + 1
            g = np.int64(cuda.grid(1))
            step = np.int64(cuda.gridsize(1))
            while g < nblocks:
                blk = b0 + np.uint64(g)
                w0, w1, w2, w3 = _block_words(blk, NORMAL_C2, k0, k1)
                j0 = blk << _U2
                for l in range(4):
                    j = j0 + np.uint64(l)
                    if j >= offset:
                        i = j - offset
                        if i < un:
                            e = np.int64(i)
                            t = noise_t(_word(w0, w1, w2, w3, l), a, b)
                            out[ob + e * os] = store(combine(load(x[xb + e * xs]), t))
                g += step
    else:
        @cuda.jit
        def kern(x, xb, xs, out, ob, os, shape, ms, n, offset, k0, k1, a, b):
            nd = len(shape)
            last = shape[nd - 1]
            xsl = xs[nd - 1]
            osl = os[nd - 1]
            msl = ms[nd - 1]
            ngroups = (n + 7) // 8
            g = np.int64(cuda.grid(1))
            step = np.int64(cuda.gridsize(1))
            while g < ngroups:
                L = g * 8
                xo, oo, mo, il = unravel(L, shape, xs, os, ms, nd)
                cached = _NO_BLOCK  # never a block index (they are < 2**62)
                w0 = w1 = w2 = w3 = np.uint32(0)
                have_t = False
                tj = np.uint64(0)
                t = np.float64(0.0)
                for _ in range(8):
                    if L < n:
                        j = offset + np.uint64(mo)
                        if not have_t or j != tj:
                            blk = j >> _U2
                            if blk != cached:
                                w0, w1, w2, w3 = _block_words(blk, NORMAL_C2, k0, k1)
                                cached = blk
                            t = noise_t(_word(w0, w1, w2, w3, np.int64(j & _U3)), a, b)
                            tj = j
                            have_t = True
                        out[ob + oo] = store(combine(load(x[xb + xo]), t))
                        L += 1
                        il += 1
                        if il < last:
                            xo += xsl
                            oo += osl
                            mo += msl
                        elif L < n:
                            xo, oo, mo, il = unravel(L, shape, xs, os, ms, nd)
                g += step

    _noise_cache[key] = kern
    return kern
