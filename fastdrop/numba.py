"""fastdrop's mask stream as functions for your own ``@numba.njit`` code.

Importing this module imports Numba but compiles nothing: each function is
compiled (or loaded from Numba's disk cache) for the argument types of its
first call, from inside ``@njit`` code or from Python.  Called from Python,
an ``int`` seed, position or offset is passed on as a ``numpy.uint64``:
Numba types a Python int as int64 once a function has been compiled for one,
and would then refuse a seed of ``2**63`` or more (``OverflowError``).
``import fastdrop`` does not import this module.

The mask is fastdrop's mask stream v1 (docs/spec.md §1), bit for bit:
``keep(seed, j, p)`` is the decision for stream position ``j``, which is what
:func:`fastdrop.dropout` uses for the element of logical (C-order) index
``i`` when called with ``rng=seed`` at offset ``j - i``.

Examples
--------
>>> import numpy as np
>>> import numba
>>> import fastdrop
>>> import fastdrop.numba as fdn
>>> @numba.njit
... def my_layer(x, seed, offset, p):
...     y = x * 2
...     fdn.dropout_inplace(y, seed, offset, p)
...     return y
>>> x = np.ones(8, np.float32)
>>> y = my_layer(x, 0, 0, 0.5)
>>> bool((y == fastdrop.dropout(2 * x, 0.5, rng=0)).all())
True
"""

from __future__ import annotations

import numpy as np

from ._extras import require

require("numba", "numba", "fastdrop.numba")

from numba import njit  # noqa: E402
from numba.extending import overload  # noqa: E402

from ._numba import kernels as _k  # noqa: E402

__all__ = ["threshold", "keep", "keep_threshold", "fill_mask", "dropout_inplace"]


def _u64(v):
    """A Python int in [0, 2**64) as numpy.uint64 (see the module docstring);
    anything else as given."""
    if type(v) is int and 0 <= v < 18446744073709551616:
        return np.uint64(v)
    return v


@njit(cache=True)
def threshold(p):
    """The integer threshold ``T = rint(p * 2**32)`` (round half to even).

    Parameters
    ----------
    p : float
        Drop probability in [0, 1] (not checked here).

    Returns
    -------
    numpy.uint64
        ``T`` in ``[0, 2**32]``; P(drop) is ``T / 2**32``.

    Examples
    --------
    >>> import fastdrop.numba as fdn
    >>> int(fdn.threshold(0.5)), int(fdn.threshold(1.0))
    (2147483648, 4294967296)
    """
    return np.uint64(np.rint(np.float64(p) * 4294967296.0))


@njit(cache=True)
def _keep_threshold(seed, position, T):
    """The compiled keep_threshold (see :func:`keep_threshold`)."""
    k0, k1, th, tl = _k._key(seed, T)
    return _k.keep_decision(np.uint64(position), k0, k1, th, tl)


def keep_threshold(seed, position, T):
    """Keep decision for one stream position, with an integer threshold.

    Parameters
    ----------
    seed : int
        uint64 seed.
    position : int
        Stream position ``j`` (``offset + logical index``), uint64.
    T : int
        Threshold from :func:`threshold`, in ``[0, 2**32]``.

    Returns
    -------
    bool
        True if the element is kept.

    Examples
    --------
    >>> import fastdrop.numba as fdn
    >>> [int(fdn.keep_threshold(0, j, 2**31)) for j in range(8)]
    [1, 0, 1, 1, 1, 1, 1, 1]
    """
    return _keep_threshold(_u64(seed), _u64(position), T)


@overload(keep_threshold)
def _keep_threshold_in_njit(seed, position, T):
    return lambda seed, position, T: _keep_threshold(seed, position, T)


@njit(cache=True)
def _keep(seed, position, p):
    """The compiled keep (see :func:`keep`)."""
    return _keep_threshold(seed, position, threshold(p))


def keep(seed, position, p):
    """Keep decision for one stream position (True = kept).

    Exactly the decision of :func:`fastdrop.dropout` and every backend:
    ``T = rint(p * 2**32)`` is computed inside, as
    :func:`fastdrop.reference.threshold` does.

    Parameters
    ----------
    seed : int
        uint64 seed (``rng=seed`` in the Python API).
    position : int
        Stream position: ``offset + i`` for logical index ``i``.
    p : float
        Drop probability in [0, 1] (not checked here).

    Returns
    -------
    bool

    Examples
    --------
    >>> import fastdrop.numba as fdn
    >>> [int(fdn.keep(42, j, 0.1)) for j in range(5, 11)]
    [0, 1, 1, 1, 1, 1]
    """
    return _keep(_u64(seed), _u64(position), p)


@overload(keep)
def _keep_in_njit(seed, position, p):
    return lambda seed, position, p: _keep(seed, position, p)


@njit(cache=True)
def _fill_mask(out, seed, offset, p):
    """The compiled fill_mask (see :func:`fill_mask`)."""
    if not (p >= 0.0 and p <= 1.0):
        raise ValueError("p must be in [0, 1]")
    offset = np.uint64(offset)
    k0, k1, th, tl = _k._key(seed, threshold(p))
    words = np.empty(_k._TILE_WORDS, np.uint32)
    kbuf = np.empty(_k.TILE, np.bool_)
    n = out.shape[0]
    for a in range(0, n, _k.TILE):
        L = min(_k.TILE, n - a)
        _k.keep_tile(kbuf, words, offset + np.uint64(a), L, k0, k1, th, tl)
        oa = out[a:a + L]
        for e in range(L):
            oa[e] = kbuf[e]


def fill_mask(out, seed, offset, p):
    """Write the keep mask of positions ``offset`` to ``offset + len(out) - 1``.

    Parameters
    ----------
    out : 1-D ndarray of bool
        Receives True where kept; ``out[i]`` is position ``offset + i``.
    seed, offset : int
        uint64 seed and stream position of ``out[0]``.
    p : float
        Drop probability in [0, 1].

    Raises
    ------
    ValueError
        ``p`` NaN or outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop.numba as fdn
    >>> m = np.empty(8, np.bool_)
    >>> fdn.fill_mask(m, 0, 0, 0.5)
    >>> m.astype(int).tolist()
    [1, 0, 1, 1, 1, 1, 1, 1]
    """
    return _fill_mask(out, _u64(seed), _u64(offset), p)


@overload(fill_mask)
def _fill_mask_in_njit(out, seed, offset, p):
    return lambda out, seed, offset, p: _fill_mask(out, seed, offset, p)


@njit(cache=True, error_model="numpy")
def _dropout_inplace(x, seed, offset, p):
    """The compiled dropout_inplace (see :func:`dropout_inplace`)."""
    if not (p >= 0.0 and p <= 1.0):
        raise ValueError("p must be in [0, 1]")
    # p = 1: 1 / 0.0 is inf under error_model="numpy" (no ZeroDivisionError)
    sel = _k.select_constants(x, 1.0 / (1.0 - np.float64(p)), -0.0, 0.0)
    offset = np.uint64(offset)
    kbuf = np.empty(_k.TILE, np.bool_)
    n = x.shape[0]
    for a in range(0, n, _k.TILE):  # a tile of keep bits, then the select
        L = min(_k.TILE, n - a)
        _fill_mask(kbuf[:L], seed, offset + np.uint64(a), p)
        xa = x[a:a + L]
        for e in range(L):
            xa[e] = _k.affine_select(xa[e], sel, kbuf[e])



def dropout_inplace(x, seed, offset, p):
    """Dropout of a 1-D float32/float64 array, in place (inverted scaling).

    ``x[i]`` becomes ``x[i] * (1 / (1 - p))`` (scale computed in float64,
    cast to ``x``'s dtype) if position ``offset + i`` is kept, else exactly
    ``+0.0``: the same values as ``fastdrop.dropout(x, p, rng=seed)`` for
    ``offset == 0``, or as a :class:`fastdrop.Generator` at ``(seed,
    offset)``.  This is the affine select of docs/spec.md §4 with shift
    ``-0.0`` (an exact identity) and fill ``+0.0``, the same code as the
    Numba backend's kernels.

    ``p = 0`` and ``p = 1`` are not special cases: the threshold
    ``T = rint(p * 2**32)`` is 0 for ``p = 0`` (every element kept, with
    scale 1: ``x * 1 + -0.0`` is ``x`` bit for bit, ``-0.0``, infinities and
    quiet NaN payloads included; a signalling NaN comes back quiet, as from
    any multiplication) and ``2**32`` for ``p = 1`` (nothing kept: ``+0.0``
    everywhere; the scale is then ``inf``, which no kept element meets).

    ``x`` is a 1-D float32 or float64 array of any stride (Numba has no CPU
    float16); ``seed``, ``offset`` (of ``x[0]``) and ``p`` are as for
    :func:`fill_mask`, and so is the ``ValueError`` for a bad ``p``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop.numba as fdn
    >>> x = np.ones(8, np.float64)
    >>> fdn.dropout_inplace(x, 0, 0, 0.5)
    >>> x.tolist()
    [2.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    >>> x = np.array([-0.0, np.inf, -1.5], np.float32)
    >>> fdn.dropout_inplace(x, 0, 0, 0.0)
    >>> x.tolist()
    [-0.0, inf, -1.5]
    >>> fdn.dropout_inplace(x, 0, 0, 1.0)
    >>> x.tolist()
    [0.0, 0.0, 0.0]
    """
    return _dropout_inplace(x, _u64(seed), _u64(offset), p)


@overload(dropout_inplace)
def _dropout_inplace_in_njit(x, seed, offset, p):
    return lambda x, seed, offset, p: _dropout_inplace(x, seed, offset, p)
