"""Argument checks shared by every entry point: the NumPy front end, the GPU
front end and the adapters (torch, dask).

Each check raises ``TypeError`` (wrong kind of value) or ``ValueError``
(right kind, bad value) with a message that names the argument, and returns
the normalised value.  Entry points call them for *every* argument before
they decide anything else (evaluation mode included) and before anything is
written or a generator advances.

Examples
--------
>>> from fastdrop import _validate as v
>>> v.check_noise_shape((1, None, 4))
(1, None, 4)
>>> v.check_training(True)
True
>>> v.internal_overlap((3,), (0,), 4)
True
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from ._bfloat16 import is_bfloat16
from ._generator import check_rng  # noqa: F401 - re-exported: one import site for checks

__all__ = [
    "check_p", "check_mode", "check_float_dtype", "as_float_array", "check_return_mask",
    "check_training", "check_flag", "normalize_shape", "check_noise_shape",
    "mask_geometry", "bool_mask_geometry", "check_packed_shape", "internal_overlap",
    "check_no_internal_overlap", "prepare_out", "check_rng", "check_backward_source",
]

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
#: The floating dtypes every function takes, for messages (bfloat16 is
#: ``ml_dtypes.bfloat16``, which is not in FLOAT_DTYPES: NumPy has none).
FLOAT_NAMES = "float16, float32, float64 or bfloat16"
MODES = ("inverted", "classic")

#: ``(M, mstrides, n)``: mask shape, its per-axis element strides, mask size.
Geometry: TypeAlias = tuple[tuple[int, ...], tuple[int, ...], int]

#: Largest number of elements whose self-overlap is decided by listing every
#: element's address (only for stride patterns that are not simply nested).
_EXACT_OVERLAP_LIMIT = 1 << 24


def _tname(v: object) -> str:
    return type(v).__name__


def check_p(p: Any, name: str = "p") -> float:
    """``p`` as a float in [0, 1]; ValueError for NaN or out of range."""
    if type(p) is float and 0.0 <= p <= 1.0:  # the common case, without ABC checks
        return p
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_tname(p)}")
    try:
        p = float(p)
    except OverflowError:
        raise ValueError(f"{name} must be in [0, 1], got {p}") from None
    if not 0.0 <= p <= 1.0:  # also catches NaN
        raise ValueError(f"{name} must be in [0, 1], got {p}")
    return p


def check_noise_param(kind: str, param: Any) -> float:
    """Gaussian dropout's ``p`` in [0, 1) or Gaussian noise's ``stddev``
    (finite, >= 0), as a float (docs/spec.md §11)."""
    if kind == "gaussian_dropout":
        p = check_p(param)
        if p == 1.0:
            raise ValueError(
                "gaussian_dropout needs p < 1: its noise has variance p / (1 - p), "
                "infinite at p = 1 (use dropout to drop everything)")
        return p
    if isinstance(param, (bool, np.bool_)) or not isinstance(param, numbers.Real):
        raise TypeError(f"stddev must be a real number, got {_tname(param)}")
    try:
        s = float(param)
    except OverflowError:
        s = math.inf
    if not (0.0 <= s < math.inf):  # also catches NaN
        raise ValueError(f"stddev must be finite and >= 0, got {param}")
    return s


def check_mode(mode: Any, allowed: Sequence[str] = MODES) -> str:
    """``"inverted"`` or ``"classic"`` (the public modes); internal callers
    that also run the family's modes pass ``allowed=fastdrop._plan.MODES``."""
    if type(mode) is str and mode in allowed:
        return mode
    names = " or ".join(repr(m) for m in allowed) if len(allowed) == 2 else \
        ", ".join(repr(m) for m in allowed)
    if not isinstance(mode, str):
        raise TypeError(f"mode must be {names}, got {_tname(mode)} ({mode!r})")
    if mode not in allowed:
        raise ValueError(f"mode must be {names}, got {mode!r}")
    return mode


def check_training(training: Any, name: str = "training") -> bool:
    """``training`` as a Python bool.

    Accepts ``bool``, ``numpy.bool_`` and 0-d bool arrays or tensors; anything
    else (``"False"``, ``0``, ``None``) is a TypeError: a truthy string must
    not silently mean training.
    """
    if isinstance(training, (bool, np.bool_)):
        return bool(training)
    dtype = getattr(training, "dtype", None)
    shape = getattr(training, "shape", None)
    if (dtype is not None and shape is not None and tuple(shape) == ()
            and (str(dtype) in ("bool", "torch.bool"))):
        return bool(training)
    raise TypeError(f"{name} must be a bool, got {_tname(training)}")


def check_flag(value: Any, name: str) -> bool:
    """A plain on/off argument (``packed=``, ``save_mask=``) as a Python bool."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {_tname(value)}")


def check_float_dtype(dtype: Any, name: str = "x") -> np.dtype[Any]:
    """``dtype`` as a NumPy dtype; TypeError naming it unless float16/32/64
    or ``ml_dtypes.bfloat16`` (recognised without importing ml_dtypes:
    :func:`fastdrop._bfloat16.is_bfloat16`)."""
    dtype = np.dtype(dtype)
    if dtype in FLOAT_DTYPES or is_bfloat16(dtype):
        return dtype
    if dtype.kind == "f" and not dtype.isnative and dtype.newbyteorder("=") in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has non-native byte order (dtype {dtype.str}); convert it first, "
            f"e.g. {name}.astype({name}.dtype.newbyteorder('='))")
    raise TypeError(
        f"{name} must have a floating dtype ({FLOAT_NAMES}), got dtype {dtype}")


def as_float_array(x: Any, name: str = "x") -> NDArray[Any]:
    """``np.asarray(x)`` (no copy for arrays) with a floating dtype check.

    A ``numpy.ma`` masked array is refused: its mask would be silently lost.
    """
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a numpy.ma masked array, which fastdrop does not support "
            f"(its mask would be lost); pass np.ma.getdata({name}) and re-apply the "
            "mask to the result")
    arr = np.asarray(x)
    check_float_dtype(arr.dtype, name)
    return arr


def check_return_mask(return_mask: Any) -> str | None:
    """``None`` (no mask), ``"bool"`` or ``"packed"``."""
    if return_mask is None:
        return None
    if isinstance(return_mask, (bool, np.bool_)):
        return "bool" if return_mask else None
    if isinstance(return_mask, str) and return_mask in ("bool", "packed"):
        return return_mask
    if not isinstance(return_mask, str):
        raise TypeError(f"return_mask must be False, True, 'bool' or 'packed', got "
                        f"{_tname(return_mask)} ({return_mask!r})")
    raise ValueError(f"return_mask must be False, True, 'bool' or 'packed', got {return_mask!r}")


def _index(v: Any, name: str) -> int:
    """``operator.index`` that refuses bools and names the argument."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must contain ints, got a bool ({v!r})")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must contain ints, got {_tname(v)} ({v!r})") from None


def _as_sequence(value: Any, name: str, what: str) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes, bool, np.bool_)) or isinstance(value, numbers.Number):
        raise TypeError(f"{name} must be {what}, got {_tname(value)} ({value!r})")
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise TypeError(f"{name} must be {what}, got a {value.ndim}-D array")
    try:
        return tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be {what}, got {_tname(value)}") from None


def normalize_shape(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """An array shape: an int or a sequence of non-negative ints."""
    if type(shape) is tuple and all(type(s) is int and s >= 0 for s in shape):
        return shape  # the common spelling, already normal
    if isinstance(shape, numbers.Integral) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    shape = tuple(_index(s, name) for s in _as_sequence(shape, name,
                                                        "an int or a tuple of ints"))
    if any(s < 0 for s in shape):
        raise ValueError(f"{name} must not have negative entries, got {shape}")
    return shape


def check_noise_shape(noise_shape: Any,
                      name: str = "noise_shape") -> tuple[int | None, ...] | None:
    """``None`` or a tuple of ints and ``None`` entries (types only; see
    :func:`mask_geometry` for the shape rules)."""
    if noise_shape is None:
        return None
    if type(noise_shape) is tuple and all(m is None or type(m) is int for m in noise_shape):
        return noise_shape  # already normal
    ns = _as_sequence(noise_shape, name, "a tuple of ints (or None entries)")
    return tuple(None if m is None else _index(m, name) for m in ns)


def mask_geometry(shape: Sequence[int], noise_shape: Any) -> Geometry:
    """Mask shape ``M``, per-axis mask strides and mask size for an input of
    ``shape`` (docs/spec.md, "Logical index").

    ``noise_shape`` has the input's ndim; each entry equals the input's
    extent or is 1 (shared along that axis); ``None`` entries mean "the
    input's extent".

    Examples
    --------
    >>> from fastdrop._validate import mask_geometry
    >>> mask_geometry((2, 3, 4), (None, 1, 4))
    ((2, 1, 4), (4, 0, 1), 8)
    """
    shape = tuple(shape)
    ns = check_noise_shape(noise_shape)
    key = (shape, ns)
    geometry = _GEOMETRIES.get(key)
    if geometry is None:  # memoised: a small call would spend about 1 us here
        geometry = _mask_geometry(shape, ns)
        if len(_GEOMETRIES) >= 256:
            _GEOMETRIES.clear()
        _GEOMETRIES[key] = geometry
    return geometry


_GEOMETRIES: dict[tuple[Any, Any], Geometry] = {}


def _mask_geometry(shape: tuple[int, ...], ns: tuple[int | None, ...] | None) -> Geometry:
    """:func:`mask_geometry` of a checked ``noise_shape`` (not memoised)."""
    if ns is None:
        M = shape
    else:
        if len(ns) != len(shape):
            raise ValueError(
                f"noise_shape {ns} must have the same number of axes as x "
                f"(shape {shape})")
        axes = []
        for k, (m, s) in enumerate(zip(ns, shape)):
            m = s if m is None else m
            if m != s and m != 1:
                raise ValueError(
                    f"noise_shape {ns} is not broadcastable to x's shape {shape}: "
                    f"axis {k} must be 1 or {s}")
            axes.append(m)
        M = tuple(axes)
    mstrides = [0] * len(M)
    acc = 1
    for k in range(len(M) - 1, -1, -1):
        mstrides[k] = acc if M[k] == shape[k] and M[k] != 1 else 0
        acc *= M[k]
    return M, tuple(mstrides), math.prod(M)


def bool_mask_geometry(x_shape: Sequence[int], mask_shape: Sequence[int],
                       noise_shape: Any) -> Geometry:
    """``mask_geometry`` for a stored bool mask of ``mask_shape`` (which must
    broadcast to ``x_shape`` and agree with ``noise_shape`` if given)."""
    mask_shape = tuple(mask_shape)
    ns = check_noise_shape(noise_shape)
    if ns is not None and ns != mask_shape:
        raise ValueError(f"mask has shape {mask_shape} but noise_shape is {ns}")
    if len(mask_shape) != len(x_shape):
        raise ValueError(
            f"mask has shape {mask_shape}, which does not match x's shape "
            f"{x_shape} (same number of axes, each 1 or x's extent)")
    try:
        return mask_geometry(x_shape, mask_shape)
    except ValueError:
        raise ValueError(
            f"mask has shape {mask_shape}, which is not broadcastable to x's "
            f"shape {x_shape}") from None


def check_packed_shape(dtype: Any, ndim: int, size: int, n: int) -> None:
    """A packed mask must be 1-D uint8 with ``ceil(n / 8)`` bytes (host and
    GPU front ends alike)."""
    if dtype != np.uint8 or ndim != 1:
        raise TypeError(
            f"a packed mask must be a 1-D uint8 array, got dtype {dtype} "
            f"with {ndim} axes")
    if size != (n + 7) // 8:
        raise ValueError(
            f"packed mask has {size} bytes, expected {(n + 7) // 8} for "
            f"{n} mask elements")


def internal_overlap(shape: Sequence[int], strides: Sequence[int],
                     itemsize: int) -> bool | None:
    """Whether two different elements of an array share a byte.

    ``strides`` in bytes.  Decided exactly: arrays whose axes nest (each
    axis's stride at least the span of the smaller ones: every slice,
    transpose or reshape of a contiguous array) at once; other stride
    patterns, which only ``as_strided`` makes, by listing every element's
    address (up to 2**24 elements; ``None`` beyond, meaning "unknown").

    Examples
    --------
    >>> from fastdrop._validate import internal_overlap
    >>> internal_overlap((4, 5), (20, 4), 4)          # C order
    False
    >>> internal_overlap((4, 5), (4, 4), 4)           # overlapping rows
    True
    >>> internal_overlap((2, 3), (12, 8), 4)          # interleaved, disjoint
    False
    """
    if any(d == 0 for d in shape):
        return False
    axes = sorted((abs(int(s)), int(d)) for d, s in zip(shape, strides) if d > 1)
    if not axes:
        return False
    if axes[0][0] == 0:
        return True
    span = itemsize
    for s, d in axes:
        if s < span:
            break
        span += s * (d - 1)
    else:
        return False
    n = math.prod(d for _, d in axes)
    if n > _EXACT_OVERLAP_LIMIT:
        return None
    offs = np.zeros(1, dtype=np.int64)
    for s, d in axes:
        offs = (offs[:, None] + np.arange(d, dtype=np.int64) * s).reshape(-1)
    offs.sort()
    return bool((np.diff(offs) < itemsize).any())


def check_no_internal_overlap(shape: Sequence[int], strides: Sequence[int], itemsize: int,
                              name: str = "out") -> None:
    """ValueError if elements of an output array overlap each other (the
    result would depend on the order of the writes)."""
    ov = internal_overlap(shape, strides, itemsize)
    if ov is None:
        raise ValueError(
            f"{name} has strides {tuple(strides)} that fastdrop cannot prove free of "
            "self-overlap; pass an array whose elements are distinct in memory "
            "(e.g. a contiguous one)")
    if ov:
        raise ValueError(
            f"{name} has elements that overlap each other in memory (strides "
            f"{tuple(strides)} for shape {tuple(shape)}, e.g. from as_strided or "
            "broadcast_to): the result would depend on the order of the writes; "
            "pass an array with distinct elements")


def prepare_out(x: NDArray[Any], out: Any, name: str = "out") -> NDArray[Any]:
    """Validate ``out`` against the host array ``x`` or allocate it (same
    layout as ``x``).

    The cheap tests come first (a small call pays about 1 us here): a
    contiguous ``out`` cannot overlap itself, and only an ``out`` whose
    memory bounds meet ``x``'s needs the exact overlap test.
    """
    if out is None:
        return np.empty_like(x)
    if type(out) is not np.ndarray and (not isinstance(out, np.ndarray)
                                        or isinstance(out, np.ma.MaskedArray)):
        raise TypeError(f"{name} must be a numpy.ndarray, got {_tname(out)}")
    if out.shape != x.shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {x.shape}")
    if out.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {x.dtype}")
    flags = out.flags
    if not flags.writeable:
        raise ValueError(f"{name} is read-only")
    if not (flags.c_contiguous or flags.f_contiguous):
        check_no_internal_overlap(out.shape, out.strides, out.itemsize, name)
    if out is x or not np.may_share_memory(x, out):
        return out
    identical = (out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
                 and all(so == sx for so, sx, d in zip(out.strides, x.strides, x.shape)
                         if d > 1))
    if not identical and np.shares_memory(x, out):
        raise ValueError(
            f"{name} partly overlaps x; pass out=x for in-place, or a separate array")
    return out


def check_backward_source(mask: Any, state: Any, training: bool) -> None:
    """``dropout_backward``'s source of the forward's decisions: at most one
    of ``mask`` and ``state``, and one of them in training (evaluation drew
    no mask, so it needs neither)."""
    if mask is not None and state is not None:
        raise ValueError("give either mask or state, not both")
    if training and mask is None and state is None:
        raise ValueError(
            "dropout_backward needs the forward's mask (mask=) or the state it "
            "was drawn from (state=)")
