"""Type aliases of the public API's arguments (for annotations only: nothing
here runs at call time).

The NumPy-style functions take any array-like ``x`` (NumPy arrays, and also
GPU arrays, torch CPU tensors and Dask arrays, which come back as their own
kind): their overloads give ``NDArray[S]`` back for an ``NDArray[S]`` and
``Any`` for anything else.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._generator import Generator

__all__ = ["ArrayLike", "NDArray", "Scalar_co", "RNG", "State", "Mode", "Backend",
           "ReturnMask", "MaskKind", "NoiseShape", "Shape", "Float", "MaskArray"]

#: The element type of an array that comes back with the input's dtype.
Scalar_co = TypeVar("Scalar_co", bound=np.generic)

#: A real number argument (``p``, ``stddev``): Python or NumPy, not a bool.
Float: TypeAlias = float | np.floating[Any] | np.integer[Any]

#: ``rng=``: an int seed, a fastdrop Generator, NumPy's Generator,
#: BitGenerator or SeedSequence, or None (the process's default stream).
RNG: TypeAlias = (int | np.integer[Any] | Generator | np.random.Generator
                  | np.random.BitGenerator | np.random.SeedSequence | None)

#: ``state=`` of the backwards: the forward's int seed, ``(seed, offset)`` or
#: a saved :attr:`fastdrop.Generator.state`.
State: TypeAlias = int | np.integer[Any] | tuple[int, int] | dict[str, int] | None

#: ``mode=`` of :func:`fastdrop.dropout` and its backward.
Mode: TypeAlias = Literal["inverted", "classic"]

#: ``backend=``.
Backend: TypeAlias = Literal["auto", "cython", "numba", "reference", "cuda"]

#: ``return_mask=``: False, or the mask's form (True means ``"bool"``).
ReturnMask: TypeAlias = bool | Literal["bool", "packed"]
#: ``return_mask=`` values that return a mask.
MaskKind: TypeAlias = Literal[True, "bool", "packed"]

#: ``noise_shape=``: the mask's shape, ``None`` entries meaning x's extent.
NoiseShape: TypeAlias = tuple[int | None, ...] | None

#: A shape argument: an int or a tuple of ints.
Shape: TypeAlias = int | np.integer[Any] | tuple[int | np.integer[Any], ...]

#: A returned mask: bool (``"bool"``) or packed bits (``"packed"``).
MaskArray: TypeAlias = NDArray[np.bool_] | NDArray[np.uint8]
