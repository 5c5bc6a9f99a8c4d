"""Cython CPU backend: header-only C core (philox.h, kernels.h), the compiled
drivers (_kernels) and a public C API for other Cython code (api.pxd)."""

import os

__all__ = ["get_include"]


def get_include():
    """Directory of fastdrop's C headers (``philox.h``, ``kernels.h``) and of
    its Cython declarations ``api.pxd``.

    Use it as a C include directory when building Cython code that does
    ``from fastdrop._cython.api cimport ...``.  Cython finds ``api.pxd``
    through ``sys.path`` for a regular install; for an editable install also
    pass the directory above the ``fastdrop`` package to ``cythonize``'s
    ``include_path`` (``os.path.dirname(os.path.dirname(fastdrop.__file__))``).

    Returns
    -------
    str

    Examples
    --------
    >>> import os
    >>> from fastdrop._cython import get_include
    >>> os.path.exists(os.path.join(get_include(), "philox.h"))
    True
    """
    return os.path.dirname(os.path.abspath(__file__))
