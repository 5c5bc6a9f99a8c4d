"""Dask adapter: dropout on chunked arrays, one global mask for any chunking.

Imported only by ``import fastdrop.dask`` (``import fastdrop`` never imports
dask).

Each chunk computes its own part of the mask of the whole array (docs/spec.md
§2, "Logical index"): a chunk at global origin ``g`` has mask indices
``i = base + sum_k local_k * mstride_k`` with ``base = sum_k g_k * mstride_k``
and the global mask strides ``mstride`` (0 on broadcast axes of
``noise_shape``).  Since the keep decision of index ``i`` depends only on the
stream position ``offset + i``, a chunk is exactly the backend kernel
``forward`` called with offset ``offset + base`` and the global mask strides.
The result therefore equals :func:`fastdrop.dropout` on the computed array,
bit for bit, whatever the chunks (uneven ones included).

The ``rng`` is resolved when the graph is built: ``(seed, offset)`` are
constants in the graph, so computing it twice, or re-running a lost task on
another worker, gives the same result.  A :class:`fastdrop.Generator`
advances by ``ceil(n / 8) * 8`` positions at graph-build time, exactly as one
:func:`fastdrop.dropout` call on the whole array would.

Examples
--------
>>> import dask.array as da
>>> import numpy as np
>>> import fastdrop
>>> import fastdrop.dask
>>> x = da.ones((2, 4), chunks=(1, 3), dtype=np.float32)
>>> fastdrop.dask.dropout(x, 0.5, rng=0).compute()
array([[2., 0., 2., 2.],
       [2., 2., 2., 2.]], dtype=float32)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypeVar

import dask.array as da
import numpy as np
from dask.base import tokenize

from .. import _arrays, _dispatch, _plan
from .._generator import check_rng
from .._validate import (MODES, check_float_dtype, check_mode, check_p, check_training,
                         mask_geometry, normalize_shape)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from .._plan import Plan
    from .._typing import RNG, Backend, Float, Mode, NoiseShape, Shape

__all__ = ["dropout", "dropout_mask"]

_B = TypeVar("_B", bound=str)


def _run_block(plan: Plan, block: Any, backend: str) -> Any:
    """Run a (block) plan on one chunk: NumPy chunks on a CPU backend, GPU
    chunks (CuPy) through the CUDA front end."""
    if _arrays.is_gpu_array(block):
        from .._cuda import frontend

        return frontend.run_plan(plan, block)
    kern = (_dispatch.choose_cpu_backend(block.size, block.dtype)[1] if backend == "auto"
            else _dispatch.get_backend(backend))
    out = np.empty_like(block)
    return _dispatch.run_host(plan, kern, block, out)


def _base(block_info: dict[Any, Any], mstrides: tuple[int, ...]) -> int:
    """Global mask index of the block's first element."""
    loc = block_info[None]["array-location"]
    return sum(start * ms for (start, _), ms in zip(loc, mstrides))


def _dropout_block(block: Any, *, plan: Plan, backend: str, block_info: Any = None) -> Any:
    return _run_block(plan.at(_base(block_info, plan.mstrides)), block, backend)


def _check_backend(backend: _B) -> _B:
    if backend != "auto":
        _dispatch.get_backend(backend)  # ValueError / RuntimeError now, not at compute
    return backend


def _check_known_shape(x: da.Array) -> None:
    if any(math.isnan(s) for s in x.shape):
        raise ValueError(
            "fastdrop.dask needs an array with known chunk sizes (the mask index "
            "of a chunk depends on its position); call x.compute_chunk_sizes() first")


def dropout(x: da.Array | ArrayLike, p: Float = 0.5, *, rng: RNG = None,
            noise_shape: NoiseShape = None, mode: Mode = "inverted", training: bool = True,
            backend: Backend = "auto") -> da.Array:
    """Dropout on a Dask array; equals :func:`fastdrop.dropout` on the whole
    array, whatever the chunking.

    Parameters
    ----------
    x : dask.array.Array or array_like
        float16, float32, float64 or bfloat16, with known chunk sizes.  Other array
        likes are wrapped with :func:`dask.array.asarray`.
    p : float, default 0.5
        Drop probability in [0, 1].
    rng : None, int, fastdrop.Generator or numpy.random.Generator
        As in :func:`fastdrop.dropout`; resolved now, when the graph is built
        (a Generator advances now, by ``ceil(n / 8) * 8``).
    noise_shape : tuple, optional
        Mask shape (same ndim, each entry 1 or ``x``'s extent).
    mode : {"inverted", "classic"}
    training : bool, default True
        ``False``: identity (``"inverted"``) or ``x * (1 - p)``
        (``"classic"``), blockwise.
    backend : {"auto", "cython", "numba", "reference"}
        Kernels each chunk uses; all give identical results.  Chunks that are
        GPU arrays (CuPy) use the CUDA backend.

    Returns
    -------
    dask.array.Array
        Same shape, chunks and dtype as ``x``; nothing is computed yet.

    Raises
    ------
    ValueError
        ``p`` NaN or outside [0, 1]; bad ``mode``, ``noise_shape`` or
        ``backend``; unknown chunk sizes.
    TypeError
        Non-floating ``x``; bad ``rng``.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> import fastdrop
    >>> import fastdrop.dask
    >>> a = np.arange(1.0, 13.0).reshape(3, 4)
    >>> x = da.from_array(a, chunks=(2, 3))
    >>> y = fastdrop.dask.dropout(x, 0.5, rng=fastdrop.Generator(3))
    >>> ref = fastdrop.dropout(a, 0.5, rng=fastdrop.Generator(3))
    >>> bool((y.compute() == ref).all())
    True
    """
    return lazy_forward(x, p, rng=rng, noise_shape=noise_shape, mode=mode, training=training,
                        backend=backend)


def lazy_forward(x: Any, p: Any, *, rng: Any, noise_shape: Any, mode: Any, training: Any,
                 backend: Any, modes: tuple[str, ...] = MODES) -> da.Array:
    """A forward of the family (``mode`` one of ``modes``: the public dropout
    modes, or :data:`fastdrop._plan.MODES` for the family's functions, which
    reach here through :func:`fastdrop.alpha_dropout` and friends on a Dask
    array), planned once for the whole array and run block by block."""
    if not isinstance(x, da.Array):
        x = da.asarray(x)
    training = check_training(training)
    p = check_p(p)
    check_mode(mode, modes)
    check_float_dtype(x.dtype)
    _check_known_shape(x)
    backend = _check_backend(backend)
    mask_geometry(x.shape, noise_shape)
    check_rng(rng)  # in evaluation too: a bad rng must not hide until training
    # planned now, when the graph is built: a Generator advances once, and
    # (seed, offset) are constants of the graph
    plan = _plan.plan_dropout(x.shape, p, training=training, mode=mode, rng=rng,
                              noise_shape=noise_shape, fresh_out=True)
    name = "fastdrop-dropout-" + tokenize(x, plan, backend)
    return x.map_blocks(_dropout_block, plan=plan, backend=backend, dtype=x.dtype, name=name)


def lazy_noise(x: Any, kind: str, param: float, *, rng: Any, noise_shape: Any, training: bool,
               backend: Any) -> da.Array:
    """Gaussian dropout or noise (``kind``, ``param`` checked by the caller:
    :func:`fastdrop.gaussian_dropout` and :func:`fastdrop.gaussian_noise` on
    a Dask array), planned once for the whole array and run block by block:
    each block's variates are those of its global indices (docs/spec.md
    §11), so the result equals the NumPy call on the computed array."""
    if not isinstance(x, da.Array):
        x = da.asarray(x)
    check_float_dtype(x.dtype)
    _check_known_shape(x)
    backend = _check_backend(backend)
    mask_geometry(x.shape, noise_shape)
    check_rng(rng)
    plan = _plan.plan_noise(x.shape, kind, param, training=training, rng=rng,
                            noise_shape=noise_shape, fresh_out=True)
    name = f"fastdrop-{kind.replace('_', '-')}-" + tokenize(x, plan, backend)
    return x.map_blocks(_dropout_block, plan=plan, backend=backend, dtype=x.dtype, name=name)


def _mask_block(block_info: Any = None, *, plan: Plan, backend: str) -> NDArray[np.bool_]:
    shape = tuple(block_info[None]["chunk-shape"])
    if plan.source is None:  # nothing drawn: a constant mask (or an empty one)
        return np.full(shape, bool(plan.mask_fill), dtype=bool)
    # Masks are drawn for contiguous index ranges only; a chunk of a
    # multi-axis mask is not one, so run the plan's keep values (1.0 kept,
    # +0.0 dropped) on a stride-0 array of ones and read them off.
    ones = np.broadcast_to(np.ones((), dtype=np.float32), shape)
    vals = _run_block(plan.keep_values().at(_base(block_info, plan.mstrides)), ones, backend)
    return vals != 0


def _normalize_chunks(chunks: Any, shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """``da.core.normalize_chunks`` with errors that name ``chunks`` (a bool
    is not a chunk size)."""
    if isinstance(chunks, (bool, np.bool_)) or (
            isinstance(chunks, (tuple, list))
            and any(isinstance(c, (bool, np.bool_)) for c in chunks)):
        raise TypeError(f"chunks must not be a bool, got {chunks!r}")
    try:
        return da.core.normalize_chunks(chunks, shape, dtype=bool)
    except (ValueError, TypeError, ZeroDivisionError) as e:
        raise (TypeError if isinstance(e, TypeError) else ValueError)(
            f"chunks {chunks!r} is not a valid chunk specification for shape {shape}: "
            f"{e}") from None


def dropout_mask(shape: Shape, p: Float, *, rng: RNG = None, chunks: Any = "auto",
                 backend: Backend = "auto") -> da.Array:
    """The keep mask (True = kept) as a chunked bool Dask array.

    Equals :func:`fastdrop.dropout_mask` with the same arguments, whatever
    ``chunks``; it is the mask :func:`dropout` applies to an array of this
    shape.

    Parameters
    ----------
    shape : int or tuple of int
    p : float
        Drop probability in [0, 1].
    rng : None, int, fastdrop.Generator or numpy.random.Generator
        Resolved when the graph is built.
    chunks : chunks specification, default "auto"
        As in :func:`dask.array.empty`.
    backend : str, default "auto"

    Returns
    -------
    dask.array.Array of bool

    Examples
    --------
    >>> import fastdrop
    >>> import fastdrop.dask
    >>> m = fastdrop.dask.dropout_mask((3, 5), 0.3, rng=7, chunks=2)
    >>> bool((m.compute() == fastdrop.dropout_mask((3, 5), 0.3, rng=7)).all())
    True
    """
    p = check_p(p)
    shape = normalize_shape(shape)
    backend = _check_backend(backend)
    check_rng(rng)
    chunks = _normalize_chunks(chunks, shape)
    plan = _plan.plan_mask(shape, p, rng=rng, mask_out="bool")  # last: the rng moves
    name = "fastdrop-mask-" + tokenize(shape, chunks, plan, backend)
    return da.map_blocks(_mask_block, plan=plan, backend=backend, chunks=chunks,
                         dtype=bool, name=name,
                         meta=np.empty((0,) * len(shape), dtype=bool))
