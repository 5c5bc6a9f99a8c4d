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


#: The thread count set with :func:`set_num_threads`, or None: the default,
#: read at call time (see :func:`get_num_threads`).
_num_threads: int | None = None

#: The compiled extension's default thread count (``_kernels.default_threads``:
#: threadpoolctl's limit, else ``OMP_NUM_THREADS``, else the usable CPUs, as
#: threads.h reads them), set by :mod:`fastdrop._cython._kernels` when it is
#: imported; None before that or without the extension.
_extension_threads: Callable[[], int] | None = None

#: What C's isspace() calls blank (OpenMP skips these around each entry).
_BLANKS = " \t\n\v\f\r"


def omp_num_threads(value: str | None) -> int | None:
    """The thread count an ``OMP_NUM_THREADS`` value asks for, read as
    OpenMP (libgomp) reads it: a comma-separated list of positive integers,
    blanks around each allowed, of which the first counts (capped at
    ``2**31 - 1``); None when the value is unset or OpenMP would reject it.
    The compiled extension reads the variable the same way (threads.h).

    Examples
    --------
    >>> from fastdrop._config import omp_num_threads
    >>> omp_num_threads("3,2"), omp_num_threads(" 4 "), omp_num_threads("+2")
    (3, 4, 2)
    >>> [omp_num_threads(v) for v in ("0", "two", "3,", "-1", "", None)]
    [None, None, None, None, None, None]
    """
    if value is None:
        return None
    first = None
    for entry in value.split(","):
        e = entry.strip(_BLANKS)
        digits = e[1:] if e.startswith("+") else e
        if not (digits.isascii() and digits.isdigit()):
            return None
        n = int(digits)
        if not 1 <= n < 2**63:
            return None
        if first is None:
            first = min(n, 2**31 - 1)
    return first


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _default_threads() -> int:
    """The default thread count now: the extension's (which honours a
    threadpoolctl limit), or without the extension ``OMP_NUM_THREADS``,
    else the CPUs this process may run on."""
    f = _extension_threads
    if f is not None:
        return max(1, int(f()))
    return omp_num_threads(os.environ.get("OMP_NUM_THREADS")) or _usable_cpus()


def get_num_threads() -> int:
    """Number of threads fastdrop's parallel kernels use: the value of
    :func:`set_num_threads` if one was set, else the default at this moment,
    the first of

    - the limit of an active ``threadpoolctl.threadpool_limits`` block:
      fastdrop is an ``"openmp"`` library to threadpoolctl (>= 3.5), so
      ``threadpool_limits(1)`` and ``threadpool_limits(1, user_api="openmp")``
      apply, and ``threadpoolctl.threadpool_info()`` lists it;
    - ``OMP_NUM_THREADS``, read as OpenMP reads it (the first entry of a
      comma-separated list; a value OpenMP rejects is ignored), so Dask's
      per-worker limits apply too;
    - the number of CPUs this process may run on (its affinity mask).

    The kernels run on fastdrop's own worker pool (POSIX threads; OpenMP
    threads on Windows): the build links no OpenMP runtime on Linux or macOS.

    Examples
    --------
    >>> import fastdrop
    >>> fastdrop.get_num_threads() >= 1
    True
    """
    n = _num_threads
    return _default_threads() if n is None else n


def set_num_threads(n: SupportsIndex | None) -> int | None:
    """Set the number of threads fastdrop's CPU kernels use (``None``: the
    default again, see :func:`get_num_threads`).

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
            f"set_num_threads: n must be an int (or None: the default), got "
            f"{type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"set_num_threads: n, the number of threads must be >= 1, got {n}")
    old, _num_threads = _num_threads, n
    return old
