"""fastdrop for Dask: ``import fastdrop.dask``.

Re-exports :mod:`fastdrop.adapters.dask` (this is the only place dask is
imported).

Examples
--------
>>> import dask.array as da
>>> import fastdrop.dask
>>> fastdrop.dask.dropout(da.ones(4, chunks=3), 0.5, rng=0).compute()
array([2., 0., 2., 2.])
"""

from .adapters.dask import __all__, dropout, dropout_mask  # noqa: F401
