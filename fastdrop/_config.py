"""Process-wide settings: the number of threads kernels may use."""

from __future__ import annotations

import operator
import os

__all__ = ["get_num_threads", "set_num_threads"]


def _default_threads():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


_num_threads = _default_threads()


def get_num_threads():
    """Number of threads fastdrop's parallel kernels use (default: all CPUs
    this process may run on).

    Examples
    --------
    >>> import fastdrop
    >>> fastdrop.get_num_threads() >= 1
    True
    """
    return _num_threads


def set_num_threads(n):
    """Set the number of threads fastdrop's CPU kernels use.

    Results never depend on it: work is split into fixed-size chunks whose
    masks depend only on their positions.  Returns the previous value.

    Examples
    --------
    >>> import fastdrop
    >>> old = fastdrop.set_num_threads(1)
    >>> fastdrop.get_num_threads()
    1
    >>> _ = fastdrop.set_num_threads(old)
    """
    global _num_threads
    if isinstance(n, bool):
        raise TypeError("set_num_threads: n must be an int, got bool")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"set_num_threads: n, the number of threads must be >= 1, got {n}")
    old, _num_threads = _num_threads, n
    return old
