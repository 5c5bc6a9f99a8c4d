"""Pure-NumPy implementation of the mask stream v1 and masked scaling.

This module is the executable form of docs/spec.md (§1-§6): every other
backend must reproduce it bit for bit.  It is also the fallback backend
(``backend="reference"``).  It works through large inputs in fixed-size
chunks, so its working memory stays bounded (a few tens of MB) whatever the
input size.

The backend kernel interface (shared by every backend module) is three
functions; their argument conventions are documented in
:mod:`fastdrop._dispatch`:

- :func:`forward` -- masked scaling with the mask generated on the fly;
- :func:`mask` -- the keep mask only, as bools and/or packed bits;
- :func:`apply_mask` -- masked scaling with a stored bool or packed mask.

and one for the Gaussian members of the family (docs/spec.md §10, §11):

- :func:`noise` -- ``x * (b * z + a)`` or ``x + (b * z + a)`` with ``z`` the
  normal-variate stream.

Examples
--------
>>> from fastdrop import reference
>>> k0, k1, k2, k3 = reference.philox4x32_10(0, 0, 0, 0, 0, 0)
>>> [hex(int(v)) for v in (k0, k1, k2, k3)]
['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
>>> keep = reference.keep_range(seed=0, start=0, count=8, T=reference.threshold(0.5))
>>> keep.astype(int).tolist()
[1, 0, 1, 1, 1, 1, 1, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _bfloat16 as _bf

__all__ = [
    "philox4x32_10",
    "threshold",
    "keep_range",
    "forward",
    "mask",
    "apply_mask",
    "normal_range",
    "noise",
    "ln",
    "ppnd",
    "CHUNK",
    "DTYPES",
]

#: Elements per chunk: bounds the working memory of every reference routine.
CHUNK = 1 << 18

#: dtypes this backend supports (bfloat16: ``ml_dtypes.bfloat16`` arrays).
DTYPES = ("float16", "float32", "float64", "bfloat16")

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
_LO32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_TWO32 = 1 << 32


def philox4x32_10(c0: ArrayLike, c1: ArrayLike, c2: ArrayLike, c3: ArrayLike, k0: int,
                  k1: int) -> tuple[NDArray[np.uint64], NDArray[np.uint64],
                                    NDArray[np.uint64], NDArray[np.uint64]]:
    """Philox4x32-10 on arrays of counters (Random123), vectorised.

    Parameters
    ----------
    c0, c1, c2, c3 : array_like of uint32 values
        Counter words; they broadcast against each other.
    k0, k1 : int
        Key words (uint32).

    Returns
    -------
    tuple of 4 ndarray of uint64
        The four output words (each < 2**32).

    Examples
    --------
    >>> out = philox4x32_10(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF,
    ...                     0xFFFFFFFF, 0xFFFFFFFF)
    >>> [f"{int(v):08x}" for v in out]
    ['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']
    """
    w0: NDArray[np.uint64] = np.asarray(c0, dtype=np.uint64)
    w1: NDArray[np.uint64] = np.asarray(c1, dtype=np.uint64)
    w2: NDArray[np.uint64] = np.asarray(c2, dtype=np.uint64)
    w3: NDArray[np.uint64] = np.asarray(c3, dtype=np.uint64)
    k0 = int(k0) & 0xFFFFFFFF
    k1 = int(k1) & 0xFFFFFFFF
    for r in range(10):
        if r:
            k0 = (k0 + _W0) & 0xFFFFFFFF
            k1 = (k1 + _W1) & 0xFFFFFFFF
        p0 = w0 * _M0
        p1 = w2 * _M1
        w0, w1, w2, w3 = (
            (p1 >> _S32) ^ w1 ^ np.uint64(k0),
            p1 & _LO32,
            (p0 >> _S32) ^ w3 ^ np.uint64(k1),
            p0 & _LO32,
        )
    return w0, w1, w2, w3


def threshold(p: float) -> int:
    """The integer threshold ``T = rint(p * 2**32)`` of docs/spec.md §1.

    Examples
    --------
    >>> threshold(0.5), threshold(0.0), threshold(1.0)
    (2147483648, 0, 4294967296)
    """
    # the product is exact in float64; Python's round() on a float rounds
    # half to even, as np.rint does, and returns the int directly
    return int(round(float(p) * 4294967296.0))


def _lanes(seed: int, blocks: NDArray[np.uint64], c2: int) -> NDArray[np.uint16]:
    """16-bit lanes of Philox((b_lo, b_hi, c2, 0), key) for each block b.

    Returns a uint16 array of shape ``(len(blocks), 8)``: lane ``l`` of a block
    is the lane of stream position ``8 * b + l`` (word ``l >> 1``, low half for
    even ``l``, high half for odd ``l``).
    """
    words = philox4x32_10(blocks & _LO32, blocks >> _S32, c2, 0,
                          seed & 0xFFFFFFFF, seed >> 32)
    w = np.empty((blocks.shape[0], 4), dtype="<u4")
    for k in range(4):
        w[:, k] = words[k]
    return w.view("<u2")


def keep_range(seed: int, start: int, count: int, T: int,
               out: NDArray[np.bool_] | None = None) -> NDArray[np.bool_]:
    """Keep decisions for stream positions ``start`` to ``start + count - 1``.

    Parameters
    ----------
    seed : int
        uint64 seed (key ``k0 = seed & 0xFFFFFFFF``, ``k1 = seed >> 32``).
    start, count : int
        First stream position and number of positions
        (``start + count <= 2**64``).
    T : int
        Threshold from :func:`threshold`, in ``[0, 2**32]``.
    out : ndarray of bool, optional
        Where to write; ``count`` elements.  Must not exceed :data:`CHUNK`
        elements when called directly by a hot loop, but any size works.

    Returns
    -------
    ndarray of bool
        True where the element is kept.

    Examples
    --------
    >>> keep_range(42, 5, 6, threshold(0.1)).astype(int).tolist()
    [0, 1, 1, 1, 1, 1]
    """
    seed = int(seed)
    start = int(start)
    count = int(count)
    if out is None:
        out = np.empty(count, dtype=bool)
    if count == 0:
        return out
    if T <= 0:
        out[...] = True
        return out
    if T >= _TWO32:
        out[...] = False
        return out
    Th = T >> 16
    Tl = T & 0xFFFF
    for pos in range(0, count, CHUNK):
        n = min(CHUNK, count - pos)
        s = start + pos
        b0 = s >> 3
        b1 = (s + n - 1) >> 3
        blocks = np.arange(b1 - b0 + 1, dtype=np.uint64) + np.uint64(b0)
        first = s & 7
        hi = _lanes(seed, blocks, 0).reshape(-1)[first:first + n]
        dst = out[pos:pos + n]
        np.greater(hi, Th, out=dst)
        ties = np.flatnonzero(hi == Th)
        if ties.size:
            j = ties.astype(np.uint64) + np.uint64(s)
            lanes_lo = _lanes(seed, j >> np.uint64(3), 1)
            lo = lanes_lo[np.arange(ties.size), (j & np.uint64(7)).astype(np.intp)]
            dst[ties] = lo >= Tl
    return out


def _compute_type(dtype: np.dtype[Any]) -> type[np.float32] | type[np.float64]:
    return np.float64 if dtype == np.float64 else np.float32


def _to_compute(x: NDArray[Any], ct: type[np.floating[Any]]) -> NDArray[Any]:
    """``C(x)``: x in the compute type ``ct`` (exact: float16 and bfloat16
    widen to float32, float32 and float64 are their own)."""
    if _bf.is_bfloat16(x.dtype):
        return _bf.widen(x)
    return x.astype(ct)


def _to_storage(v: Any, dtype: np.dtype[Any]) -> NDArray[Any]:
    """``R(v)``: compute-type values rounded to ``dtype`` (IEEE round to
    nearest even; bfloat16 on the bits, docs/spec.md §4)."""
    if _bf.is_bfloat16(dtype):
        return _bf.narrow(v, dtype)
    return np.asarray(v).astype(dtype, copy=False)


def _chunks(shape: tuple[int, ...]
            ) -> Iterator[tuple[tuple[Any, ...], tuple[int, ...], tuple[int, ...]]]:
    """Yield index tuples that cover ``shape`` in C order, each at most CHUNK
    elements, together with the logical start indices of the chunk."""
    ndim = len(shape)
    if ndim == 0:
        yield (), (), ()
        return
    if 0 in shape:
        return
    # smallest k such that the axes after k hold at most CHUNK elements
    inner = 1
    k = ndim - 1
    while k > 0 and inner * shape[k] <= CHUNK:
        inner *= shape[k]
        k -= 1
    if inner * shape[k] <= CHUNK:
        rows = shape[k]
    else:
        rows = max(1, CHUNK // inner)
    for lead in np.ndindex(*shape[:k]):
        for a in range(0, shape[k], rows):
            b = min(shape[k], a + rows)
            yield lead + (slice(a, b),), lead + (a,), (b - a,) + tuple(shape[k + 1:])


def _chunk_index(start: tuple[int, ...], sub_shape: tuple[int, ...],
                 mstrides: Sequence[int]) -> NDArray[np.int64]:
    """Mask indices (int64 array of the chunk's shape) for a chunk whose first
    element has logical index ``start`` (a tuple over the leading axes)."""
    nlead = len(start) - 1 if start else 0
    base = 0
    for i, ms in zip(start, mstrides):
        base += int(i) * int(ms)
    idx = np.array(base, dtype=np.int64)
    for length, ms in zip(sub_shape, mstrides[nlead:]):
        idx = idx[..., None] + np.arange(length, dtype=np.int64) * np.int64(ms)
    return idx


def _masked_select(x: NDArray[Any], out: NDArray[Any], mstrides: Sequence[int], scale: float,
                   shift: float, fill: float,
                   keep_of: Callable[[NDArray[np.int64]], NDArray[np.bool_]]) -> None:
    """out = keep ? x * scale + shift : fill, chunk by chunk (docs/spec.md
    §4: the compute type, then the storage type); ``keep_of(idx)`` gives the
    keep bools for an int64 array of mask indices."""
    ct = _compute_type(x.dtype)
    with np.errstate(all="ignore"):
        a, b = ct(scale), ct(shift)
        c = _to_storage(ct(fill), x.dtype)  # a large fill is inf in float16, as x * a would be
        for sl, start, sub in _chunks(x.shape):
            idx = _chunk_index(start, sub, mstrides)
            keep = keep_of(idx)
            y = _to_storage(_to_compute(x[sl], ct) * a + b, x.dtype)
            out[sl] = np.where(keep, y, c)


def forward(x: NDArray[Any], out: NDArray[Any], seed: int, offset: int, T: int, scale: float,
            mstrides: Sequence[int], keep_out: NDArray[np.bool_] | None = None,
            packed_out: NDArray[np.uint8] | None = None, *, shift: float = -0.0,
            fill: float = 0.0) -> None:
    """Dropout forward: ``out[idx] = keep(offset + i(idx)) ? x[idx] * scale + shift
    : fill`` (plain dropout: ``shift = -0.0``, which adds nothing, and ``fill = +0.0``).

    See :mod:`fastdrop._dispatch` for the argument conventions.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones(8, dtype=np.float32)
    >>> out = np.empty_like(x)
    >>> forward(x, out, 0, 0, threshold(0.5), 2.0, (1,))
    >>> out.tolist()
    [2.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    """
    if keep_out is not None or packed_out is not None:
        n = keep_out.size if keep_out is not None else x.size
        full = keep_out if keep_out is not None else np.empty(n, dtype=bool)
        mask(n, seed, offset, T, keep_out=full, packed_out=packed_out)
        apply_mask(x, out, mstrides, scale, keep=full, shift=shift, fill=fill)
        return

    def keep_of(idx: NDArray[np.int64]) -> NDArray[np.bool_]:
        lo = int(idx.min())
        hi = int(idx.max())
        kr = keep_range(seed, offset + lo, hi - lo + 1, T)
        return kr[idx - lo]

    _masked_select(x, out, mstrides, scale, shift, fill, keep_of)


def mask(n: int, seed: int, offset: int, T: int, keep_out: NDArray[np.bool_] | None = None,
         packed_out: NDArray[np.uint8] | None = None) -> None:
    """Keep mask for stream positions ``offset`` to ``offset + n - 1``.

    Writes bools (True = kept) to ``keep_out`` and/or packed bits
    (``np.packbits(..., bitorder="little")`` layout, tail bits zero) to
    ``packed_out``.

    Examples
    --------
    >>> import numpy as np
    >>> packed = np.empty(4, dtype=np.uint8)
    >>> mask(32, 0, 0, threshold(0.5), packed_out=packed)
    >>> packed.tobytes().hex()
    'fd630123'
    """
    step = CHUNK  # a multiple of 8, so each chunk packs into whole bytes
    for pos in range(0, n, step):
        m = min(step, n - pos)
        if keep_out is not None:
            k = keep_range(seed, offset + pos, m, T, out=keep_out[pos:pos + m])
        else:
            k = keep_range(seed, offset + pos, m, T)
        if packed_out is not None:
            packed_out[pos // 8:(pos + m + 7) // 8] = np.packbits(k, bitorder="little")


def apply_mask(x: NDArray[Any], out: NDArray[Any], mstrides: Sequence[int], scale: float,
               keep: NDArray[np.bool_] | None = None, packed: NDArray[np.uint8] | None = None,
               *, shift: float = -0.0, fill: float = 0.0) -> None:
    """Masked select with a stored mask: ``out[idx] = keep[i(idx)] ? x[idx] * scale
    + shift : fill``.

    ``keep`` is a C-contiguous bool array over the mask's logical indices;
    ``packed`` the same as little-endian packed bits.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(4, dtype=np.float64)
    >>> out = np.empty_like(x)
    >>> apply_mask(x, out, (1,), 2.0, keep=np.array([True, False, True, True]))
    >>> out.tolist()
    [0.0, 0.0, 4.0, 6.0]
    """
    if keep is not None:
        flat = keep.reshape(-1)

        def keep_of(idx: NDArray[np.int64]) -> NDArray[np.bool_]:
            return flat[idx]
    else:
        bits = cast("NDArray[np.uint8]", packed).reshape(-1)  # one of the two is given

        def keep_of(idx: NDArray[np.int64]) -> NDArray[np.bool_]:
            k: NDArray[np.bool_] = (
                (bits[idx >> 3] >> (idx & 7).astype(np.uint8)) & 1).astype(bool)
            return k

    _masked_select(x, out, mstrides, scale, shift, fill, keep_of)


def scale(x: NDArray[Any], out: NDArray[Any], factor: float) -> None:
    """``out = x * factor`` in the compute type (evaluation of classic mode)."""
    ct = _compute_type(x.dtype)
    with np.errstate(all="ignore"):
        for sl, _, _ in _chunks(x.shape):
            out[sl] = _to_storage(_to_compute(x[sl], ct) * ct(factor), x.dtype)


# ----------------------------------------------------------------------------
# the normal-variate stream v1 (docs/spec.md §10)
# ----------------------------------------------------------------------------

#: Counter word c2 of the normal stream's Philox blocks (the mask stream uses
#: 0 and 1): four 32-bit words, four variates, per block.
NORMAL_C2 = 2

#: ln 2 split so that ``e * LN2_HI`` is exact for any float64 exponent e.
LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
SQRT_HALF = float.fromhex("0x1.6a09e667f3bcdp-1")
#: 2 / (2k + 1), k = 0 .. 10, each the float64 nearest to it: ln m =
#: s * sum(c_k * s**(2k)) with s = (m - 1) / (m + 1).
LN_SERIES = tuple(2.0 / (2 * k + 1) for k in range(11))
#: Wichura's AS 241 (PPND16): central region |u - 0.5| <= 0.425 ...
PPND_A = (3.3871328727963666080e0, 1.3314166789178437745e+2, 1.9715909503065514427e+3,
          1.3731693765509461125e+4, 4.5921953931549871457e+4, 6.7265770927008700853e+4,
          3.3430575583588128105e+4, 2.5090809287301226727e+3)
PPND_B = (1.0, 4.2313330701600911252e+1, 6.8718700749205790830e+2, 5.3941960214247511077e+3,
          2.1213794301586595867e+4, 3.9307895800092710610e+4, 2.8729085735721942674e+4,
          5.2264952788528545610e+3)
#: ... and the tails with r = sqrt(-ln(min(u, 1 - u))) <= 5 (always: u >= 2**-33).
PPND_C = (1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0,
          3.64784832476320460504e0, 1.27045825245236838258e0, 2.41780725177450611770e-1,
          2.27238449892691845833e-2, 7.74545014278341407640e-4)
PPND_D = (1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
          1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4,
          1.05075007164441684324e-9)


def _horner(coeffs: Sequence[float], x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``c0 + x * (c1 + x * (... + x * c_last))``, innermost first: one
    multiply and one add per coefficient, each rounded (never fused)."""
    r = np.full_like(x, coeffs[-1])
    for c in coeffs[-2::-1]:
        r = r * x + c
    return r


def ln(r: ArrayLike) -> NDArray[np.float64]:
    """The natural logarithm of docs/spec.md §10 for positive normal float64
    ``r``, from correctly rounded operations only (so that every backend and
    device computes the same bits): ``r = m * 2**e`` with ``m`` in
    ``[sqrt(1/2), sqrt(2))`` (exact), ``s = (m - 1) / (m + 1)``, ``ln m = s *
    P(s * s)`` (:data:`LN_SERIES`, Horner), ``ln r = e * LN2_HI + (e *
    LN2_LO + ln m)``.  Within 2 ulp of ``numpy.log`` on ``[2**-33, 1/2]``.

    Examples
    --------
    >>> import math
    >>> float(ln(np.array([0.25]))[0]) == math.log(0.25)
    True
    """
    r = np.asarray(r, dtype=np.float64)
    m, e = np.frexp(r)                   # m in [0.5, 1), exact
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)        # exact
    e = (e - low).astype(np.float64)
    f = m - 1.0                          # exact (Sterbenz)
    s = f / (2.0 + f)
    lnm = s * _horner(LN_SERIES, s * s)
    out: NDArray[np.float64] = e * LN2_HI + (e * LN2_LO + lnm)
    return out


def ppnd(u: ArrayLike) -> NDArray[np.float64]:
    """The standard normal quantile of docs/spec.md §10 (AS 241, float64) for
    ``u`` in ``(0, 1)`` with ``min(u, 1 - u) >= 2**-33``.

    Examples
    --------
    >>> [round(float(v), 6) for v in ppnd(np.array([0.5, 0.975, 0.01]))]
    [0.0, 1.959964, -2.326348]
    """
    u = np.asarray(u, dtype=np.float64)
    q = u - 0.5
    z = np.empty_like(u)
    mid = np.abs(q) <= 0.425
    qm = q[mid]
    r = 0.180625 - qm * qm
    z[mid] = qm * _horner(PPND_A, r) / _horner(PPND_B, r)
    tail = ~mid
    qt = q[tail]
    r = np.where(qt < 0.0, u[tail], 1.0 - u[tail])
    r = np.sqrt(-ln(r)) - 1.6
    zt = _horner(PPND_C, r) / _horner(PPND_D, r)
    z[tail] = np.where(qt < 0.0, -zt, zt)
    return z


def normal_range(seed: int, start: int, count: int,
                 out: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """Standard normal variates of stream positions ``start`` to ``start +
    count - 1`` (docs/spec.md §10): position ``j`` takes word ``j & 3`` of
    Philox4x32-10 at counter ``(b & 0xFFFFFFFF, b >> 32, 2, 0)``, ``b = j >>
    2``, as the uniform ``u = (w + 0.5) * 2**-32``, and returns ``ppnd(u)``
    (float64).  Chunked like :func:`keep_range`.

    Examples
    --------
    >>> z = normal_range(0, 0, 4)
    >>> z.dtype, z.shape
    (dtype('float64'), (4,))
    """
    seed, start, count = int(seed), int(start), int(count)
    if out is None:
        out = np.empty(count, dtype=np.float64)
    for pos in range(0, count, CHUNK):
        n = min(CHUNK, count - pos)
        s = start + pos
        b0, b1 = s >> 2, (s + n - 1) >> 2
        blocks = np.arange(b1 - b0 + 1, dtype=np.uint64) + np.uint64(b0)
        words = philox4x32_10(blocks & _LO32, blocks >> _S32, NORMAL_C2, 0,
                              seed & 0xFFFFFFFF, seed >> 32)
        w = np.stack(words, axis=1).reshape(-1)[(s & 3):(s & 3) + n]
        u = (w.astype(np.float64) + 0.5) * 2.0 ** -32    # exact
        out[pos:pos + n] = ppnd(u)
    return out


#: The two ways a noise value ``t = b * z + a`` meets ``x`` (docs/spec.md §11).
NOISE_OPS = ("mul", "add")


def noise(x: NDArray[Any], out: NDArray[Any], seed: int, offset: int, mstrides: Sequence[int],
          a: float, b: float, op: str) -> None:
    """Gaussian noise on ``x`` (docs/spec.md §11): for every element with
    mask index ``i``, ``t = b * Z(offset + i) + a`` in float64 (``Z`` the
    normal stream of §10; one rounded multiply, one rounded add), then
    ``out = R(C(x) * C(t))`` (``op="mul"``: Gaussian dropout, ``a = 1``)
    or ``R(C(x) + C(t))`` (``op="add"``: Gaussian noise, ``a = -0.0``).
    ``C`` rounds to the compute type, ``R`` back to ``x``'s dtype.  See
    :mod:`fastdrop._dispatch` for the argument conventions.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones(4, dtype=np.float32)
    >>> out = np.empty_like(x)
    >>> noise(x, out, 0, 0, (1,), 1.0, 0.5, "mul")
    >>> [round(float(v), 4) for v in out]
    [0.0194, 1.281, 0.4795, 0.957]
    """
    if op not in NOISE_OPS:
        raise ValueError(f"op must be one of {NOISE_OPS}, got {op!r}")
    ct = _compute_type(x.dtype)
    with np.errstate(all="ignore"):
        for sl, start, sub in _chunks(x.shape):
            idx = _chunk_index(start, sub, mstrides)
            lo = int(idx.min())
            z = normal_range(seed, offset + lo, int(idx.max()) - lo + 1)[idx - lo]
            t = (z * np.float64(b) + np.float64(a)).astype(ct)
            xc = _to_compute(x[sl], ct)
            y = xc * t if op == "mul" else xc + t
            out[sl] = _to_storage(y, x.dtype)
