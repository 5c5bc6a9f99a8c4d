"""bfloat16 (docs/spec.md §4): the dtype, recognised without importing
``ml_dtypes``, and the two conversions every backend implements.

NumPy has no bfloat16 of its own; fastdrop accepts arrays of
``ml_dtypes.bfloat16`` (the optional extra ``fastdrop[bfloat16]``).  Such a
dtype reports ``kind == "V"``, ``itemsize == 2`` and ``name ==
"bfloat16"``, which :func:`is_bfloat16` checks, so neither ``import
fastdrop`` nor a call on another dtype imports ``ml_dtypes``.

bfloat16 computes in float32, as float16 does:

- ``C(x)`` widens exactly: the 16 bits become the high half of a float32
  (:func:`widen`);
- ``R(v)`` rounds a float32 to the nearest bfloat16, ties to even, on the
  bits: ``(u + 0x7FFF + ((u >> 16) & 1)) >> 16``; a value past the largest
  finite bfloat16 rounds to an infinity of its sign, as IEEE rounding does;
  a NaN keeps its sign and top payload bits and is made quiet,
  ``(u >> 16) | 0x40``, so it never rounds into an infinity (:func:`narrow`).

These are the NumPy forms of the conversions (the reference backend and
the Numba backend's constants use them); the C kernels (``fd_bf2f`` /
``fd_f2bf`` and their vector forms), the Numba kernels and the CUDA kernels
compute the same bits with their own integer operations.

Examples
--------
>>> import numpy as np
>>> from fastdrop import _bfloat16 as bf
>>> bf.is_bfloat16(np.dtype(np.float16))
False
>>> [hex(int(v)) for v in bf.narrow_bits(np.array([1.0, 1.00390625, 1.01171875,
...                                               3.4e38, np.nan], np.float32))]
['0x3f80', '0x3f80', '0x3f82', '0x7f80', '0x7fc0']
>>> bf.widen_bits(np.array([0x3F80, 0xC040], np.uint16)).tolist()
[1.0, -3.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["NAME", "is_bfloat16", "dtype", "widen_bits", "narrow_bits", "widen", "narrow"]

#: The dtype's name (``numpy.dtype(ml_dtypes.bfloat16).name``).
NAME = "bfloat16"

_U16 = np.uint32(16)
_SIGNLESS = np.uint32(0x7FFFFFFF)
_INF = np.uint32(0x7F800000)
_QUIET = np.uint32(0x40)
_HALF = np.uint32(0x7FFF)
_ONE = np.uint32(1)


def is_bfloat16(dt: object) -> bool:
    """Whether ``dt`` (a NumPy dtype) is ``ml_dtypes.bfloat16``, decided
    from its kind, size and name alone (``ml_dtypes`` is never imported)."""
    return (getattr(dt, "kind", None) == "V" and getattr(dt, "itemsize", 0) == 2
            and getattr(dt, "name", None) == NAME and getattr(dt, "names", None) is None)


def dtype() -> np.dtype[Any]:
    """``numpy.dtype(ml_dtypes.bfloat16)``; imports ``ml_dtypes`` (a
    ``TypeError`` with the install hint when it is missing)."""
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError(
            "bfloat16 arrays need the ml_dtypes package (pip install ml_dtypes, or "
            "pip install 'fastdrop-kernels[bfloat16]')") from None
    return np.dtype(ml_dtypes.bfloat16)


def widen_bits(h: ArrayLike) -> NDArray[np.float32]:
    """float32 values of bfloat16 bit patterns (uint16 array): exact."""
    return (np.asarray(h, dtype=np.uint16).astype(np.uint32) << _U16).view(np.float32)


def narrow_bits(f: ArrayLike) -> NDArray[np.uint16]:
    """bfloat16 bit patterns (uint16) of float32 values: round to nearest
    even; overflow to infinity; NaN quiet with its sign and top payload
    bits."""
    u = np.asarray(f, dtype=np.float32).view(np.uint32)  # any strides: same itemsize
    nan = (u & _SIGNLESS) > _INF
    # never overflows for a non-NaN u (at most 0xFF800000 + 0x8000); NaN
    # lanes, which may wrap, take the quiet form instead
    r = ((u + _HALF + ((u >> _U16) & _ONE)) >> _U16).astype(np.uint16)
    q = ((u >> _U16) | _QUIET).astype(np.uint16)
    return np.where(nan, q, r)


def widen(x: NDArray[Any]) -> NDArray[np.float32]:
    """``C(x)``: a bfloat16 array (any strides) as float32, exactly."""
    return widen_bits(x.view(np.uint16))


def narrow(f: ArrayLike, dt: np.dtype[Any]) -> NDArray[Any]:
    """``R(f)``: float32 values as an array of the bfloat16 dtype ``dt``."""
    return narrow_bits(f).view(dt)
