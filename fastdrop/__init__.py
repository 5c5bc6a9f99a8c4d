"""fastdrop: dropout at memory speed, with one bit-identical mask everywhere.

Importing fastdrop compiles nothing and imports no optional dependency:
Numba kernels are built on first use, CUDA and the framework adapters are
imported only when used.

Examples
--------
>>> import numpy as np
>>> import fastdrop
>>> y = fastdrop.dropout(np.ones(8, np.float32), p=0.5, rng=0)
>>> y
array([2., 0., 2., 2., 2., 2., 2., 2.], dtype=float32)
"""

from ._api import apply_mask, dropout, dropout_backward, dropout_mask, unpack_mask
from ._config import get_num_threads, set_num_threads
from ._cython import get_include
from ._dispatch import get_backends
from ._family import (alpha_dropout, alpha_dropout_backward, drop_path, drop_path_backward,
                      feature_alpha_dropout, feature_noise_shape, gaussian_dropout,
                      gaussian_dropout_backward, gaussian_noise, gaussian_noise_backward,
                      sample_noise_shape)
from ._generator import Generator
from ._mc import mc_dropout

#: The package version: the one place it is written (pyproject.toml reads it with
#: setuptools' ``attr:``, which parses this literal without importing fastdrop).
__version__ = "0.1.0"

#: Version of the mask stream definition (docs/spec.md §1) these kernels implement.
MASK_STREAM_VERSION = 1

__all__ = [
    "dropout",
    "dropout_mask",
    "unpack_mask",
    "apply_mask",
    "dropout_backward",
    "alpha_dropout",
    "feature_alpha_dropout",
    "alpha_dropout_backward",
    "drop_path",
    "drop_path_backward",
    "gaussian_dropout",
    "gaussian_dropout_backward",
    "gaussian_noise",
    "gaussian_noise_backward",
    "feature_noise_shape",
    "sample_noise_shape",
    "mc_dropout",
    "Generator",
    "get_backends",
    "get_num_threads",
    "set_num_threads",
    "openmp_enabled",
    "get_include",
    "MASK_STREAM_VERSION",
]


def openmp_enabled() -> bool:
    """Whether the compiled Cython kernels were built with OpenMP.

    Only Windows builds use OpenMP (their worker pool runs OpenMP threads);
    on Linux and macOS the pool runs on POSIX threads and no OpenMP runtime
    is linked, so this is False there.  Returns False when the extension is
    missing or was built without it.  The thread count does not depend on
    it: see :func:`get_num_threads`.

    Examples
    --------
    >>> import fastdrop
    >>> fastdrop.openmp_enabled() in (True, False)
    True
    """
    try:
        from ._cython import _kernels
    except ImportError:
        return False
    return bool(_kernels.openmp_enabled())
