"""Process-wide settings (the number of threads kernels may use) and the
work-splitting constants every CPU backend shares."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from typing import SupportsIndex

__all__ = ["get_num_threads", "set_num_threads", "CHUNK", "NT_MIN_BYTES"]

#: Elements per parallel task of the CPU backends (Cython and Numba): a
#: multiple of 256, so packed mask bytes and every ISA's batch stay inside
#: one task.  A task's result depends only on its index, so results never
#: depend on the number of threads.  Arrays smaller than this run on the
#: calling thread.
CHUNK = 1 << 16

#: Out-of-place forward outputs of at least this many bytes (in a caller's
#: buffer, not a fresh one) are written with non-temporal stores.
NT_MIN_BYTES = 8 << 20


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


#: The thread count set with :func:`set_num_threads`, or None: follow
#: OpenMP's default at call time (``omp_get_max_threads()`` of the compiled
#: kernels' OpenMP runtime, so ``OMP_NUM_THREADS`` and threadpoolctl apply).
_num_threads: int | None = None


#: ``omp_get_max_threads`` of the compiled kernels' OpenMP runtime, set by
#: :mod:`fastdrop._cython._kernels` when it is imported (with OpenMP); None
#: before that or without it.
_omp_max_threads: Callable[[], int] | None = None


def _openmp_threads() -> int:
    """``omp_get_max_threads()`` of the Cython extension's runtime, or the
    CPUs this process may run on when it is not built (or has no OpenMP)."""
    f = _omp_max_threads
    return _default_threads() if f is None else max(1, int(f()))


def get_num_threads() -> int:
    """Number of threads fastdrop's parallel kernels use: the value of
    :func:`set_num_threads` if one was set, else OpenMP's default at this
    moment (``OMP_NUM_THREADS``, ``threadpoolctl.threadpool_limits`` and
    Dask's per-worker limits apply; without either, all CPUs this process
    may run on).

    Examples
    --------
    >>> import fastdrop
    >>> fastdrop.get_num_threads() >= 1
    True
    """
    n = _num_threads
    return _openmp_threads() if n is None else n


def set_num_threads(n: SupportsIndex | None) -> int | None:
    """Set the number of threads fastdrop's CPU kernels use (``None``: follow
    OpenMP's default again, see :func:`get_num_threads`).

    Results never depend on it: work is split into fixed-size chunks whose
    masks depend only on their positions.  Returns the previous setting (an
    int, or None for the default), which can be passed back to restore it.

    Examples
    --------
    >>> import fastdrop
    >>> old = fastdrop.set_num_threads(1)
    >>> fastdrop.get_num_threads()
    1
    >>> _ = fastdrop.set_num_threads(old)
    """
    global _num_threads
    if n is None:
        old, _num_threads = _num_threads, None
        return old
    if isinstance(n, bool):
        raise TypeError("set_num_threads: n must be an int, got bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(
            f"set_num_threads: n must be an int (or None: OpenMP's default), got "
            f"{type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"set_num_threads: n, the number of threads must be >= 1, got {n}")
    old, _num_threads = _num_threads, n
    return old
