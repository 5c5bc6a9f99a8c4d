"""The ``backend="cython"`` kernel module (see :mod:`fastdrop._dispatch`).

Thin re-export of the compiled kernels in :mod:`fastdrop._cython._kernels`;
importing this module fails (and the backend is reported unavailable) when
the extension was not built.

Examples
--------
>>> from fastdrop._cython import backend
>>> backend.available()
(True, '')
"""

from __future__ import annotations

from ._kernels import apply_mask, fast_backward, fast_dropout, forward, mask, noise

__all__ = ["forward", "mask", "apply_mask", "noise", "fast_dropout", "fast_backward", "available",
           "DTYPES"]

#: dtypes these kernels support.
DTYPES = ("float16", "float32", "float64", "bfloat16")

#: forward() takes the ``fresh_out`` hint (see fastdrop._dispatch).
ACCEPTS_FRESH_OUT = True

#: A mask whose positions repeat is drawn once, then applied (fastdrop._dispatch.run).
DRAWS_SPANS = True


def available():
    """Whether the Cython backend can run here: ``(True, "")`` once the
    extension imported (an import failure is reported by the dispatcher).

    Examples
    --------
    >>> from fastdrop._cython import backend
    >>> backend.available()[0]
    True
    """
    return True, ""
