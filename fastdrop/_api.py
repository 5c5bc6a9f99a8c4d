"""The NumPy-style front end: argument checks, rng/state, shapes, out=, dispatch.

Every public function validates all of its arguments (with
:mod:`fastdrop._validate`, whatever the mode) before it writes anything, so
a call that raises leaves ``out`` (and any Generator) untouched.

Arrays the NumPy API does not run natively get a definite answer (see
:mod:`fastdrop._arrays`): GPU arrays go to the CUDA front end, torch CPU
tensors are computed through zero-copy NumPy views and come back as tensors,
Dask arrays go to :mod:`fastdrop.dask` (lazily) for :func:`dropout` and are
refused elsewhere, ``numpy.ma`` masked arrays are refused.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _arrays, _dispatch, _plan
from ._generator import check_rng
from ._plan import scale_for  # noqa: F401 - re-exported for older imports
from ._validate import MODES
from ._validate import (  # noqa: F401 - re-exported for older imports
    as_float_array, bool_mask_geometry, check_flag, check_float_dtype, check_mode,
    check_backward_source, check_noise_shape, check_p, check_packed_shape, check_return_mask,
    check_training,
    mask_geometry, normalize_shape, prepare_out)

if TYPE_CHECKING:
    from ._typing import (RNG, Backend, Float, MaskArray, MaskKind, Mode, NoiseShape,
                          ReturnMask, Scalar_co, Shape, State)

__all__ = ["dropout", "dropout_mask", "unpack_mask", "apply_mask", "dropout_backward"]

_fast_dropout = _dispatch.fast_path()  # the compiled common case (Cython or Numba kernels), or None
_fast_backward = _dispatch.fast_path("fast_backward")  # the same for the gradient


def select_backend(backend: str, x: NDArray[Any]) -> tuple[str, ModuleType]:
    """(name, kernel module) for a host array."""
    if backend == "auto":
        return _dispatch.choose_cpu_backend(x.size, x.dtype)
    if backend == "cuda" and backend in _dispatch.BACKENDS:
        raise TypeError(
            "backend='cuda' needs a GPU array (CuPy, torch CUDA tensor or Numba "
            "device array); fastdrop never copies a NumPy array to the GPU "
            "silently: move it first, e.g. with cupy.asarray(x)")
    return backend, _dispatch.get_backend(backend)


def _device(op: str) -> Any:
    from ._cuda import frontend  # imported only for GPU arrays

    return getattr(frontend, op)


# ----------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------

@overload
def dropout(x: NDArray[Scalar_co], p: Float = ..., *, training: bool = ..., mode: Mode = ...,
            rng: RNG = ..., noise_shape: NoiseShape = ..., out: NDArray[Scalar_co] | None = ...,
            return_mask: Literal[False] = ..., backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def dropout(x: NDArray[Scalar_co], p: Float = ..., *, training: bool = ..., mode: Mode = ...,
            rng: RNG = ..., noise_shape: NoiseShape = ..., out: NDArray[Scalar_co] | None = ...,
            return_mask: MaskKind, backend: Backend = ...
            ) -> tuple[NDArray[Scalar_co], MaskArray]: ...
@overload
def dropout(x: ArrayLike, p: Float = ..., *, training: bool = ..., mode: Mode = ...,
            rng: RNG = ..., noise_shape: NoiseShape = ..., out: Any = ...,
            return_mask: ReturnMask = ..., backend: Backend = ...) -> Any: ...
def dropout(x: ArrayLike, p: Float = 0.5, *, training: bool = True, mode: Mode = "inverted",
            rng: RNG = None, noise_shape: NoiseShape = None, out: Any = None,
            return_mask: ReturnMask = False, backend: Backend = "auto") -> Any:
    """Dropout: zero each element with probability ``p`` and scale the rest.

    The mask is fastdrop's mask stream v1 (docs/spec.md §1): element ``i`` of
    the mask (its C-order logical index) is decided by Philox4x32-10 keyed by
    the seed at stream position ``offset + i``, identically on every backend,
    thread count and device.

    Parameters
    ----------
    x : array_like of float16, float32, float64 or bfloat16 (ml_dtypes)
        Input, any shape (0-d and empty too) and any strides.
    p : float
        Drop probability in [0, 1].
    training : bool, default True
        In evaluation (``False``) no mask is drawn: ``mode="inverted"``
        returns a copy of ``x``, ``mode="classic"`` returns ``x * (1 - p)``.
    mode : {"inverted", "classic"}
        ``"inverted"`` scales kept elements by ``1 / (1 - p)`` in training;
        ``"classic"`` keeps them unscaled.
    rng : None, int, fastdrop.Generator, numpy.random.Generator, BitGenerator or SeedSequence
        Where the mask comes from.  An int is a seed (offset 0: stateless
        and repeatable); a :class:`fastdrop.Generator` is advanced by the
        positions the mask uses; ``None`` takes the next positions of the
        process's default stream (seeded from fresh entropy once, reseeded
        in a forked child); NumPy's objects give one seed (docs/spec.md §3).
    noise_shape : tuple, optional
        Mask shape, same ndim as ``x``, each entry 1 (mask shared along that
        axis, as in Keras/Flax) or ``x``'s extent (``None`` means the extent).
    out : ndarray, optional
        Where to write the result: same shape and dtype as ``x``; may be
        ``x`` itself (in-place) but must not partly overlap it.
    return_mask : bool or {"bool", "packed"}
        Also return the keep mask: a bool array of the mask shape (``True``
        or ``"bool"``) or ``np.packbits(..., bitorder="little")`` bytes over
        the logical index (``"packed"``).
    backend : {"auto", "cython", "numba", "reference", "cuda"}
        Which kernels to use.  All give identical results.

    Returns
    -------
    out : ndarray
        Same shape and dtype as ``x``; dropped elements are exactly ``+0.0``.
    mask : ndarray
        Only if ``return_mask``.

    Raises
    ------
    ValueError
        ``p`` NaN or outside [0, 1]; unknown mode or backend name;
        ``noise_shape`` not broadcastable to ``x``; ``out`` of the wrong
        shape, read-only, partly overlapping ``x`` or with elements that
        overlap each other; a Generator whose stream would run past 2**64.
    TypeError
        Non-floating ``x`` (the message names the dtype); ``out`` of another
        dtype; ``training`` not a bool; ``noise_shape`` not a tuple of ints
        and ``None``; bad ``rng``; a masked array; ``out=`` or
        ``return_mask`` with a Dask array.

    Notes
    -----
    A :class:`fastdrop.Generator` may be shared between threads: each call
    reserves its positions atomically.  A torch CPU tensor comes back as a
    tensor; a Dask array comes back as a lazy Dask array
    (:func:`fastdrop.dask.dropout`).

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> x = np.ones((2, 4), dtype=np.float32)
    >>> fastdrop.dropout(x, 0.5, rng=0)
    array([[2., 0., 2., 2.],
           [2., 2., 2., 2.]], dtype=float32)
    >>> y, keep = fastdrop.dropout(x, 0.5, rng=0, noise_shape=(1, 4), return_mask=True)
    >>> keep
    array([[ True, False,  True,  True]])
    >>> fastdrop.dropout(x, 0.5, training=False, mode="classic")[0, 0]
    np.float32(0.5)
    """
    if _fast_dropout is not None:  # the compiled common case (it declines the rest)
        y = _fast_dropout(x, p, rng, out, training, mode, noise_shape, return_mask, backend)
        if y is not NotImplemented:
            return y
    return _forward(x, p, training, mode, rng, noise_shape, out, return_mask, backend,
                    MODES)


def _forward(x: Any, p: Any, training: Any, mode: Any, rng: Any, noise_shape: Any, out: Any,
             return_mask: Any, backend: Any, modes: tuple[str, ...]) -> Any:
    """A forward of the family on any kind of array: ``mode`` is one of
    ``modes`` (the public dropout modes, or :data:`fastdrop._plan.MODES`
    for the family's own functions, which pass theirs)."""
    where = _arrays.kind(x)
    if where == "gpu":
        return _device("dropout")(x, p, training=training, mode=mode, rng=rng,
                                  noise_shape=noise_shape, out=out,
                                  return_mask=return_mask, backend=backend, modes=modes)
    if where == "dask":
        return _dask_dropout(x, p, training, mode, rng, noise_shape, out, return_mask,
                             backend, modes)
    if where == "torch":
        return _dropout_torch(x, p, training, mode, rng, noise_shape, out, return_mask,
                              backend, modes)
    return dropout_host(x, p, training, mode, rng, noise_shape, out, return_mask, backend,
                        fresh=out is None, modes=modes)


def _dropout_torch(x: Any, p: Any, training: Any, mode: Any, rng: Any, noise_shape: Any,
                   out: Any, return_mask: Any, backend: Any, modes: tuple[str, ...]) -> Any:
    """A forward of a torch CPU tensor, through NumPy views (apart from
    :func:`dropout`: a closure there would cost every call ~0.1 us)."""
    return _arrays.via_torch(
        lambda xv, _, ov: dropout_host(xv, p, training, mode, rng, noise_shape, ov,
                                       return_mask, backend, fresh=ov is None, modes=modes),
        x, out)


def _dask_dropout(x: Any, p: Any, training: Any, mode: Any, rng: Any, noise_shape: Any,
                  out: Any, return_mask: Any, backend: Any, modes: tuple[str, ...]) -> Any:
    """:func:`dropout` of a Dask array: the lazy :func:`fastdrop.dask.dropout`
    (never a silent compute); ``out=`` and ``return_mask`` have no lazy form."""
    kind = check_return_mask(return_mask)
    if out is not None:
        raise TypeError(
            "out= is not supported for a Dask array x: the result is a lazy Dask "
            "array (fastdrop.dask.dropout); store it with dask.array.store")
    if kind is not None:
        raise TypeError(
            "return_mask is not supported for a Dask array x; draw the mask with "
            "fastdrop.dask.dropout_mask (same rng) instead")
    from .adapters import dask as fdd

    return fdd.lazy_forward(x, p, rng=rng, noise_shape=noise_shape, mode=mode,
                            training=training, backend=backend, modes=modes)


def _refuse_dask(fn: str, name: str = "x") -> NoReturn:
    raise TypeError(
        f"fastdrop.{fn} does not take Dask arrays ({name} is one) and never computes "
        "one silently; use fastdrop.dask.dropout, or compute the array first")


def dropout_host(x: Any, p: Any, training: Any, mode: Any, rng: Any, noise_shape: Any, out: Any,
                 return_mask: Any, backend: Any, fresh: bool,
                 modes: tuple[str, ...] = MODES) -> Any:
    """A forward of the family for host arrays; ``fresh`` says ``out`` was
    just allocated by the caller (the adapters), or is allocated here if None."""
    training = check_training(training)
    p = check_p(p)
    check_mode(mode, modes)
    kind = check_return_mask(return_mask)
    x = as_float_array(x)
    geometry = mask_geometry(x.shape, noise_shape)
    _, kern = select_backend(backend, x)
    check_rng(rng)
    fresh = fresh or out is None
    out = prepare_out(x, out)
    plan = _plan.plan_dropout(x.shape, p, training=training, mode=mode, rng=rng,
                              mask_out=kind, fresh_out=fresh, geometry=geometry)
    return _dispatch.run_host(plan, kern, x, out)


@overload
def dropout_mask(shape: Shape, p: Float, *, rng: RNG = ..., packed: Literal[False] = ...,
                 backend: Backend = ...) -> NDArray[np.bool_]: ...
@overload
def dropout_mask(shape: Shape, p: Float, *, rng: RNG = ..., packed: Literal[True],
                 backend: Backend = ...) -> NDArray[np.uint8]: ...
@overload
def dropout_mask(shape: Shape, p: Float, *, rng: RNG = ..., packed: bool = ...,
                 backend: Backend = ...) -> MaskArray: ...
def dropout_mask(shape: Shape, p: Float, *, rng: RNG = None, packed: bool = False,
                 backend: Backend = "auto") -> MaskArray:
    """The keep mask alone (True = kept), as bools or packed bits.

    ``dropout_mask(x.shape, p, rng=s)`` is exactly the mask that
    ``dropout(x, p, rng=s)`` applies.

    Parameters
    ----------
    shape : int or tuple of int
        Mask shape; its C-order flat index is the logical index.
    p : float
        Drop probability in [0, 1].
    rng : None, int, fastdrop.Generator or numpy.random.Generator
        As in :func:`dropout`.
    packed : bool, default False
        Return ``np.packbits(keep.ravel(), bitorder="little")`` bytes
        (``ceil(n / 8)`` of them) instead of a bool array.
    backend : str, default "auto"

    Examples
    --------
    >>> import fastdrop
    >>> fastdrop.dropout_mask(8, 0.5, rng=0).astype(int)
    array([1, 0, 1, 1, 1, 1, 1, 1])
    >>> fastdrop.dropout_mask(32, 0.5, rng=0, packed=True).tobytes().hex()
    'fd630123'
    """
    p = check_p(p)
    shape = normalize_shape(shape)
    packed = check_flag(packed, "packed")
    n = math.prod(shape)
    if backend == "auto":
        _, kern = _dispatch.choose_cpu_backend(n)
    elif backend == "cuda":
        raise TypeError("dropout_mask makes host arrays; backend='cuda' is for GPU arrays")
    else:
        kern = _dispatch.get_backend(backend)
    check_rng(rng)
    plan = _plan.plan_mask(shape, p, rng=rng, mask_out="packed" if packed else "bool")
    mask: MaskArray = _dispatch.run_host(plan, kern, None, None)[1]
    return mask


def unpack_mask(packed: ArrayLike, shape: Shape) -> NDArray[np.bool_]:
    """Unpack a packed mask (``np.packbits`` layout, ``bitorder="little"``)
    into a bool array of ``shape``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> m = fastdrop.dropout_mask((3, 5), 0.3, rng=7)
    >>> packed = fastdrop.dropout_mask((3, 5), 0.3, rng=7, packed=True)
    >>> bool((fastdrop.unpack_mask(packed, (3, 5)) == m).all())
    True
    """
    shape = normalize_shape(shape)
    packed = _check_packed(packed, math.prod(shape))
    n = math.prod(shape)
    return np.unpackbits(packed, count=n, bitorder="little").view(bool).reshape(shape)


def _host_only(a: object, name: str) -> None:
    """TypeError for a GPU array where a host array is needed (never a silent
    device-to-host copy)."""
    if _arrays.kind(a) == "gpu":
        raise TypeError(
            f"{name} is a GPU array but this call works on host arrays; fastdrop never "
            "copies between device and host silently: copy it to the host first")


def _check_packed(packed: Any, n: int) -> NDArray[np.uint8]:
    _host_only(packed, "packed")
    packed = np.asarray(packed)
    check_packed_shape(packed.dtype, packed.ndim, packed.size, n)
    return np.ascontiguousarray(packed)


def _stored_mask(x_shape: tuple[int, ...], mask: Any,
                 noise_shape: Any) -> tuple[str, Any, NDArray[Any]]:
    """``(kind, (M, mstrides, n), flat mask)`` for a stored bool or packed
    mask (the ``stored`` argument of the planners)."""
    _host_only(mask, "mask")
    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        geometry = bool_mask_geometry(x_shape, mask.shape, noise_shape)
        return "bool", geometry, np.ascontiguousarray(mask).reshape(-1)
    if mask.dtype == np.uint8:
        geometry = mask_geometry(x_shape, noise_shape)
        return "packed", geometry, _check_packed(mask, geometry[2])
    raise TypeError(
        f"mask must be a bool array or a 1-D uint8 packed mask, got dtype {mask.dtype}")


@overload
def apply_mask(x: NDArray[Scalar_co], mask: ArrayLike, p: Float, *, mode: Mode = ...,
               noise_shape: NoiseShape = ..., out: NDArray[Scalar_co] | None = ...,
               backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def apply_mask(x: ArrayLike, mask: ArrayLike, p: Float, *, mode: Mode = ...,
               noise_shape: NoiseShape = ..., out: Any = ..., backend: Backend = ...) -> Any: ...
def apply_mask(x: ArrayLike, mask: ArrayLike, p: Float, *, mode: Mode = "inverted",
               noise_shape: NoiseShape = None, out: Any = None, backend: Backend = "auto") -> Any:
    """Masked scaling with a stored mask: ``out = mask ? x * scale : +0.0``.

    This is the backward of dropout given the forward's mask, and the way to
    re-apply a mask to another array.

    Parameters
    ----------
    x : array_like of float16, float32, float64 or bfloat16 (ml_dtypes)
    mask : ndarray of bool or packed uint8
        A bool mask broadcastable to ``x`` (same ndim, each axis 1 or
        ``x``'s extent), or packed bits over the logical index of the mask
        shape ``noise_shape`` (default ``x.shape``).
    p : float
        The drop probability the mask was drawn with (sets the scale).
    mode : {"inverted", "classic"}
    noise_shape : tuple, optional
        Only for packed masks: the mask's shape.
    out : ndarray, optional
    backend : str, default "auto"

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> x = np.arange(4, dtype=np.float32)
    >>> fastdrop.apply_mask(x, np.array([True, False, True, True]), 0.5)
    array([0., 0., 4., 6.], dtype=float32)
    """
    if _fast_backward is not None:  # the compiled common case: the backward's select
        y = _fast_backward(x, p, mask, None, True, mode, noise_shape, out, backend)
        if y is not NotImplemented:
            return y
    where = _arrays.kind(x)
    if where == "gpu":
        return _device("apply_mask")(x, mask, p, mode=mode, noise_shape=noise_shape,
                                     out=out, backend=backend)
    if where == "dask" or _arrays.kind(mask) == "dask":
        _refuse_dask("apply_mask", "x" if where == "dask" else "mask")
    if where == "torch":
        return _arrays.via_torch(
            lambda xv, mv, ov: apply_mask(xv, mv, p, mode=mode, noise_shape=noise_shape,
                                          out=ov, backend=backend), x, out, mask)
    p = check_p(p)
    check_mode(mode)
    x = as_float_array(x)
    stored = _stored_mask(x.shape, mask, noise_shape)
    _, kern = select_backend(backend, x)
    fresh = out is None
    out = prepare_out(x, out)
    return _dispatch.run_host(_plan.plan_apply(x.shape, p, mode, stored, fresh_out=fresh),
                              kern, x, out)


@overload
def dropout_backward(grad: NDArray[Scalar_co], p: Float, *, mask: ArrayLike | None = ...,
                     state: State = ..., training: bool = ..., mode: Mode = ...,
                     noise_shape: NoiseShape = ..., out: NDArray[Scalar_co] | None = ...,
                     backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def dropout_backward(grad: ArrayLike, p: Float, *, mask: ArrayLike | None = ...,
                     state: State = ..., training: bool = ..., mode: Mode = ...,
                     noise_shape: NoiseShape = ..., out: Any = ...,
                     backend: Backend = ...) -> Any: ...
def dropout_backward(grad: ArrayLike, p: Float, *, mask: ArrayLike | None = None,
                     state: State = None, training: bool = True, mode: Mode = "inverted",
                     noise_shape: NoiseShape = None, out: Any = None,
                     backend: Backend = "auto") -> Any:
    """Gradient of :func:`dropout`: the same mask and scale applied to ``grad``.

    Give either the forward's stored ``mask`` (bool or packed), or the
    ``state`` it was drawn from, and the mask is regenerated (nothing stored).

    Parameters
    ----------
    grad : array_like of float16, float32, float64 or bfloat16 (ml_dtypes)
        Gradient with respect to the dropout output.
    p : float
        The forward's drop probability.
    mask : ndarray, optional
        The forward's mask (``return_mask=True`` or ``"packed"``).
    state : int, (seed, offset) or dict, optional
        The forward's ``rng`` if it was an int seed, or the
        ``Generator.state`` saved just before the forward call.
    training : bool, default True
        ``False`` gives the evaluation-mode gradient (identity or ``1 - p``).
    mode, noise_shape, out, backend
        As in :func:`dropout`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> g = fastdrop.Generator(3)
    >>> saved = g.state
    >>> x = np.ones(6, np.float32)
    >>> y = fastdrop.dropout(x, 0.5, rng=g)
    >>> gx = fastdrop.dropout_backward(np.ones(6, np.float32), 0.5, state=saved)
    >>> bool((gx == y).all())
    True
    """
    if _fast_backward is not None:  # the compiled common case (it declines the rest)
        g = _fast_backward(grad, p, mask, state, training, mode, noise_shape, out, backend)
        if g is not NotImplemented:
            return g
    return _backward(grad, p, mask, state, training, mode, noise_shape, out, backend, MODES)


def _backward(grad: Any, p: Any, mask: Any, state: Any, training: Any, mode: Any,
              noise_shape: Any, out: Any, backend: Any, modes: tuple[str, ...]) -> Any:
    """The gradient of a forward of the family (``mode`` one of ``modes``)."""
    training = check_training(training)
    check_backward_source(mask, state, training)
    where = _arrays.kind(grad)
    if where == "gpu":
        return _device("dropout_backward")(grad, p, mask=mask, state=state,
                                           training=training, mode=mode,
                                           noise_shape=noise_shape, out=out,
                                           backend=backend, modes=modes)
    if where == "dask" or (mask is not None and _arrays.kind(mask) == "dask"):
        _refuse_dask("dropout_backward", "grad" if where == "dask" else "mask")
    if where == "torch":
        return _arrays.via_torch(
            lambda gv, mv, ov: _backward(gv, p, mv, state, training, mode, noise_shape, ov,
                                         backend, modes), grad, out, mask, "grad")
    p = check_p(p)
    check_mode(mode, modes)
    grad = as_float_array(grad, "grad")
    stored = _stored_mask(grad.shape, mask, noise_shape) if mask is not None else None
    _, kern = select_backend(backend, grad)
    fresh = out is None
    out = prepare_out(grad, out)
    plan = _plan.plan_backward(grad.shape, p, training=training, mode=mode, state=state,
                               stored=stored, noise_shape=noise_shape, fresh_out=fresh)
    return _dispatch.run_host(plan, kern, grad, out)
