"""fastdrop for Dask: ``import fastdrop.dask``.

Re-exports :mod:`fastdrop.adapters.dask` (this is the only place dask is
imported).  Without Dask, importing this module raises
:class:`ModuleNotFoundError` naming the extra that installs it (``pip
install "fastdrop-kernels[dask]"``).

Examples
--------
>>> import dask.array as da
>>> import fastdrop.dask
>>> fastdrop.dask.dropout(da.ones(4, chunks=3), 0.5, rng=0).compute()
array([2., 0., 2., 2.])
"""

from ._extras import require

require("dask", "dask", "fastdrop.dask")

from .adapters.dask import __all__, dropout, dropout_mask  # noqa: E402,F401
