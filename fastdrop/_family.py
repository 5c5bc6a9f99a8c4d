"""The dropout family: alpha dropout, feature alpha dropout, DropPath,
Gaussian dropout and Gaussian noise (docs/spec.md §8, §9, §11), NumPy API.

Alpha dropout and DropPath are :func:`fastdrop.dropout`'s machinery with
their own plan mode (:data:`fastdrop._plan.MODES`) and, for the feature and
per-sample forms, a noise shape: the kernels only ever run the plan's affine
select, so those variants add no kernel.  The Gaussian members draw normal
variates instead of keep decisions: the plan's ``"noise"`` rule, one kernel
per backend (``noise``).  Arguments, array kinds (NumPy, GPU, torch CPU
tensors, Dask) and errors are those of :func:`fastdrop.dropout`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from . import _api, _arrays, _dispatch, _plan
from ._generator import check_rng
from ._validate import (as_float_array, check_flag, check_noise_param, check_training,
                        mask_geometry, normalize_shape, prepare_out)

__all__ = ["alpha_dropout", "feature_alpha_dropout", "drop_path",
           "alpha_dropout_backward", "drop_path_backward", "feature_noise_shape",
           "sample_noise_shape", "drop_path_mode", "gaussian_dropout", "gaussian_noise",
           "gaussian_dropout_backward", "gaussian_noise_backward"]

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from ._typing import (RNG, Backend, Float, MaskArray, MaskKind, NoiseShape, ReturnMask,
                          Scalar_co, State)

_ALL = _plan.MODES


def _shape_of(x: Any) -> tuple[int, ...]:
    shape = getattr(x, "shape", None)
    if shape is None:
        import numpy as np

        shape = np.shape(x)
    return normalize_shape(tuple(int(d) for d in shape))


def feature_noise_shape(shape: Sequence[int],
                        fn: str = "feature_alpha_dropout") -> tuple[int, ...]:
    """``(N, C, 1, ..., 1)``: one decision per sample and channel (PyTorch's
    feature dropout: ``Dropout2d``/``3d``, ``FeatureAlphaDropout``).

    Examples
    --------
    >>> feature_noise_shape((8, 3, 32, 32))
    (8, 3, 1, 1)
    """
    if len(shape) < 2:
        raise ValueError(
            f"{fn} needs an input with at least 2 axes (N, C, ...), got shape {tuple(shape)}")
    return tuple(shape[:2]) + (1,) * (len(shape) - 2)


def sample_noise_shape(shape: Sequence[int], fn: str = "drop_path") -> tuple[int, ...]:
    """``(N, 1, ..., 1)``: one decision per sample along the leading axis
    (DropPath / stochastic depth).

    Examples
    --------
    >>> sample_noise_shape((8, 197, 768))
    (8, 1, 1)
    """
    if len(shape) < 1:
        raise ValueError(f"{fn} needs an input with at least 1 axis (N, ...), got a 0-d input")
    return (shape[0],) + (1,) * (len(shape) - 1)


def drop_path_mode(scale_by_keep: bool) -> str:
    """The plan mode of DropPath: kept samples scaled by ``1 / (1 - p)``
    (``"inverted"``) or left as they are (``"unscaled"``); the identity in
    evaluation either way (docs/spec.md §9)."""
    return "inverted" if check_flag(scale_by_keep, "scale_by_keep") else "unscaled"


@overload
def alpha_dropout(x: NDArray[Scalar_co], p: Float = ..., *, training: bool = ...,
                  rng: RNG = ..., noise_shape: NoiseShape = ...,
                  out: NDArray[Scalar_co] | None = ..., return_mask: Literal[False] = ...,
                  backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def alpha_dropout(x: NDArray[Scalar_co], p: Float = ..., *, training: bool = ...,
                  rng: RNG = ..., noise_shape: NoiseShape = ...,
                  out: NDArray[Scalar_co] | None = ..., return_mask: MaskKind,
                  backend: Backend = ...) -> tuple[NDArray[Scalar_co], MaskArray]: ...
@overload
def alpha_dropout(x: ArrayLike, p: Float = ..., *, training: bool = ..., rng: RNG = ...,
                  noise_shape: NoiseShape = ..., out: Any = ..., return_mask: ReturnMask = ...,
                  backend: Backend = ...) -> Any: ...
def alpha_dropout(x: ArrayLike, p: Float = 0.5, *, training: bool = True, rng: RNG = None,
                  noise_shape: NoiseShape = None, out: Any = None,
                  return_mask: ReturnMask = False, backend: Backend = "auto") -> Any:
    """Alpha dropout (Klambauer et al. 2017), for SELU networks.

    A dropped element takes SELU's negative saturation value ``-ALPHA``
    (``ALPHA = 1.7580993408473766``, PyTorch's constant), then every element
    goes through the affine map that keeps zero mean and unit variance:
    kept ``x * a + b``, dropped ``c``, with ``a = 1 / sqrt((ALPHA**2 * p +
    1) * (1 - p))``, ``b = ALPHA * a * p`` and ``c = ALPHA * a * (p - 1)``
    (docs/spec.md §8).  ``p == 0`` and evaluation return ``x``'s values;
    ``p == 1`` gives ``+0.0`` everywhere (the limit of ``c``; PyTorch's
    value).  A dropped element is ``c`` whatever ``x`` holds (a dropped
    NaN or infinity too).

    Parameters are those of :func:`fastdrop.dropout` without ``mode``; the
    mask (``return_mask``) is the same keep mask ``dropout`` would draw.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> y = fastdrop.alpha_dropout(np.zeros(8, np.float32), 0.5, rng=0)
    >>> y
    array([ 0.77919394, -0.77919394,  0.77919394,  0.77919394,  0.77919394,
            0.77919394,  0.77919394,  0.77919394], dtype=float32)
    >>> keep = fastdrop.dropout_mask(8, 0.5, rng=0)
    >>> bool(((y > 0) == keep).all())
    True
    """
    return _api._forward(x, p, training, "alpha", rng, noise_shape, out, return_mask,
                         backend, _ALL)


@overload
def feature_alpha_dropout(x: NDArray[Scalar_co], p: Float = ..., *, training: bool = ...,
                          rng: RNG = ..., out: NDArray[Scalar_co] | None = ...,
                          return_mask: Literal[False] = ...,
                          backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def feature_alpha_dropout(x: NDArray[Scalar_co], p: Float = ..., *, training: bool = ...,
                          rng: RNG = ..., out: NDArray[Scalar_co] | None = ...,
                          return_mask: MaskKind, backend: Backend = ...
                          ) -> tuple[NDArray[Scalar_co], MaskArray]: ...
@overload
def feature_alpha_dropout(x: ArrayLike, p: Float = ..., *, training: bool = ...,
                          rng: RNG = ..., out: Any = ..., return_mask: ReturnMask = ...,
                          backend: Backend = ...) -> Any: ...
def feature_alpha_dropout(x: ArrayLike, p: Float = 0.5, *, training: bool = True,
                          rng: RNG = None, out: Any = None, return_mask: ReturnMask = False,
                          backend: Backend = "auto") -> Any:
    """Alpha dropout of whole channels: :func:`alpha_dropout` with the noise
    shape ``(N, C, 1, ..., 1)`` (PyTorch's ``FeatureAlphaDropout``); ``x``
    has at least 2 axes.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> y = fastdrop.feature_alpha_dropout(np.zeros((2, 3, 4), np.float32), 0.5, rng=1)
    >>> bool((y == y[:, :, :1]).all())   # one value per (sample, channel)
    True
    """
    return _api._forward(x, p, training, "alpha", rng, feature_noise_shape(_shape_of(x)),
                         out, return_mask, backend, _ALL)


@overload
def drop_path(x: NDArray[Scalar_co], p: Float, *, scale_by_keep: bool = ...,
              training: bool = ..., rng: RNG = ..., out: NDArray[Scalar_co] | None = ...,
              return_mask: Literal[False] = ...,
              backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def drop_path(x: NDArray[Scalar_co], p: Float, *, scale_by_keep: bool = ...,
              training: bool = ..., rng: RNG = ..., out: NDArray[Scalar_co] | None = ...,
              return_mask: MaskKind,
              backend: Backend = ...) -> tuple[NDArray[Scalar_co], MaskArray]: ...
@overload
def drop_path(x: ArrayLike, p: Float, *, scale_by_keep: bool = ..., training: bool = ...,
              rng: RNG = ..., out: Any = ..., return_mask: ReturnMask = ...,
              backend: Backend = ...) -> Any: ...
def drop_path(x: ArrayLike, p: Float, *, scale_by_keep: bool = True, training: bool = True,
              rng: RNG = None, out: Any = None, return_mask: ReturnMask = False,
              backend: Backend = "auto") -> Any:
    """DropPath / stochastic depth (timm's ``drop_path``): drop whole samples
    of a residual branch, one decision per index of the leading axis.

    ``x`` is ``(N, ...)``; the result is :func:`fastdrop.dropout` with the
    noise shape ``(N, 1, ..., 1)``: a kept sample is scaled by ``1 / (1 -
    p)`` (``scale_by_keep=True``) or left as it is, a dropped one is
    ``+0.0``.  In evaluation the result is ``x``'s values (both settings).
    Unlike timm's function, ``training`` defaults to True, as for every
    fastdrop function (the torch module follows the module's mode).

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> x = np.ones((4, 3), np.float32)
    >>> fastdrop.drop_path(x, 0.5, rng=0)
    array([[2., 2., 2.],
           [0., 0., 0.],
           [2., 2., 2.],
           [2., 2., 2.]], dtype=float32)
    """
    return _api._forward(x, p, training, drop_path_mode(scale_by_keep), rng,
                         sample_noise_shape(_shape_of(x)), out, return_mask, backend, _ALL)


@overload
def alpha_dropout_backward(grad: NDArray[Scalar_co], p: Float, *,
                           mask: ArrayLike | None = ..., state: State = ...,
                           training: bool = ..., noise_shape: NoiseShape = ...,
                           out: NDArray[Scalar_co] | None = ...,
                           backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def alpha_dropout_backward(grad: ArrayLike, p: Float, *, mask: ArrayLike | None = ...,
                           state: State = ..., training: bool = ...,
                           noise_shape: NoiseShape = ..., out: Any = ...,
                           backend: Backend = ...) -> Any: ...
def alpha_dropout_backward(grad: ArrayLike, p: Float, *, mask: ArrayLike | None = None,
                           state: State = None, training: bool = True,
                           noise_shape: NoiseShape = None, out: Any = None,
                           backend: Backend = "auto") -> Any:
    """Gradient of :func:`alpha_dropout`: ``grad * a`` where kept, ``+0.0``
    where dropped (the identity in evaluation), the forward's mask from
    ``mask`` or regenerated from ``state`` as in
    :func:`fastdrop.dropout_backward` (for :func:`feature_alpha_dropout`,
    pass ``noise_shape=fastdrop.feature_noise_shape(x.shape)``).

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> g = fastdrop.alpha_dropout_backward(np.ones(4, np.float32), 0.5, state=0)
    >>> g
    array([0.8864049, 0.       , 0.8864049, 0.8864049], dtype=float32)
    """
    return _api._backward(grad, p, mask, state, training, "alpha", noise_shape, out,
                          backend, _ALL)


@overload
def drop_path_backward(grad: NDArray[Scalar_co], p: Float, *, mask: ArrayLike | None = ...,
                       state: State = ..., scale_by_keep: bool = ..., training: bool = ...,
                       out: NDArray[Scalar_co] | None = ...,
                       backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def drop_path_backward(grad: ArrayLike, p: Float, *, mask: ArrayLike | None = ...,
                       state: State = ..., scale_by_keep: bool = ..., training: bool = ...,
                       out: Any = ..., backend: Backend = ...) -> Any: ...
def drop_path_backward(grad: ArrayLike, p: Float, *, mask: ArrayLike | None = None,
                       state: State = None, scale_by_keep: bool = True, training: bool = True,
                       out: Any = None, backend: Backend = "auto") -> Any:
    """Gradient of :func:`drop_path`: the forward's per-sample decisions
    (from ``mask`` or regenerated from ``state``) and scale applied to
    ``grad``; the identity in evaluation.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> fastdrop.drop_path_backward(np.ones((4, 2), np.float32), 0.5, state=0)[:, 0]
    array([2., 0., 2., 2.], dtype=float32)
    """
    return _api._backward(grad, p, mask, state, training, drop_path_mode(scale_by_keep),
                          sample_noise_shape(_shape_of(grad)), out, backend, _ALL)


# ----------------------------------------------------------------------------
# Gaussian dropout and Gaussian noise (docs/spec.md §11)
# ----------------------------------------------------------------------------

@overload
def gaussian_dropout(x: NDArray[Scalar_co], p: Float = ..., *, training: bool = ...,
                     rng: RNG = ..., noise_shape: NoiseShape = ...,
                     out: NDArray[Scalar_co] | None = ...,
                     backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def gaussian_dropout(x: ArrayLike, p: Float = ..., *, training: bool = ..., rng: RNG = ...,
                     noise_shape: NoiseShape = ..., out: Any = ...,
                     backend: Backend = ...) -> Any: ...
def gaussian_dropout(x: ArrayLike, p: Float = 0.5, *, training: bool = True, rng: RNG = None,
                     noise_shape: NoiseShape = None, out: Any = None,
                     backend: Backend = "auto") -> Any:
    """Gaussian dropout (Srivastava et al. 2014; Keras's ``GaussianDropout``):
    multiply by noise of mean 1 and variance ``p / (1 - p)``.

    Every element (of the noise shape: shared along its axes of extent 1)
    draws one standard normal ``z`` from fastdrop's normal-variate stream
    (docs/spec.md §10: Philox and AS 241 in correctly rounded float64, the
    same bits on every backend, thread count and device), and becomes ``x *
    t`` with ``t = 1 + sigma * z``, ``sigma = sqrt(p / (1 - p))`` (float64,
    rounded once to the compute type: float32 for float16, bfloat16 and float32).
    In evaluation, or at ``p == 0``, the result is ``x``'s values.

    Parameters
    ----------
    x : array_like of float16, float32, float64 or bfloat16 (ml_dtypes)
    p : float
        In [0, 1): the drop rate whose inverted-dropout variance the noise
        matches; ``p == 1`` is a ``ValueError`` (infinite variance).
    training, rng, noise_shape, out, backend
        As in :func:`fastdrop.dropout`; a Generator advances by the noise
        size (as a dropout mask of that shape would).

    Returns
    -------
    ndarray (or tensor, CuPy or lazy Dask array, as ``x``)

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> y = fastdrop.gaussian_dropout(np.ones(4, np.float32), 0.5, rng=0)
    >>> y
    array([-0.9611565 ,  1.5619569 , -0.04096723,  0.91407996], dtype=float32)
    >>> z = fastdrop.reference.normal_range(0, 0, 4)   # the variates
    >>> bool((y == (1.0 + 1.0 * z).astype(np.float32)).all())
    True
    """
    return _noise("gaussian_dropout", x, p, training, rng, noise_shape, out, backend)


@overload
def gaussian_noise(x: NDArray[Scalar_co], stddev: Float, *, training: bool = ...,
                   rng: RNG = ..., noise_shape: NoiseShape = ...,
                   out: NDArray[Scalar_co] | None = ...,
                   backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def gaussian_noise(x: ArrayLike, stddev: Float, *, training: bool = ..., rng: RNG = ...,
                   noise_shape: NoiseShape = ..., out: Any = ...,
                   backend: Backend = ...) -> Any: ...
def gaussian_noise(x: ArrayLike, stddev: Float, *, training: bool = True, rng: RNG = None,
                   noise_shape: NoiseShape = None, out: Any = None,
                   backend: Backend = "auto") -> Any:
    """Additive Gaussian noise (Keras's ``GaussianNoise``): ``x + stddev *
    z`` with ``z`` fastdrop's normal-variate stream (docs/spec.md §10,
    §11): ``stddev * z`` in float64, rounded once to the compute type, then
    added.  In evaluation, or at ``stddev == 0``, the result is ``x``'s
    values.

    Parameters
    ----------
    x : array_like of float16, float32, float64 or bfloat16 (ml_dtypes)
    stddev : float
        Finite and >= 0.
    training, rng, noise_shape, out, backend
        As in :func:`fastdrop.dropout`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> fastdrop.gaussian_noise(np.zeros(4, np.float32), 0.1, rng=0)
    array([-0.19611564,  0.05619569, -0.10409673, -0.008592  ], dtype=float32)
    """
    return _noise("gaussian_noise", x, stddev, training, rng, noise_shape, out, backend)


@overload
def gaussian_dropout_backward(grad: NDArray[Scalar_co], p: Float, *, state: State = ...,
                              training: bool = ..., noise_shape: NoiseShape = ...,
                              out: NDArray[Scalar_co] | None = ...,
                              backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def gaussian_dropout_backward(grad: ArrayLike, p: Float, *, state: State = ...,
                              training: bool = ..., noise_shape: NoiseShape = ...,
                              out: Any = ..., backend: Backend = ...) -> Any: ...
def gaussian_dropout_backward(grad: ArrayLike, p: Float, *, state: State = None,
                              training: bool = True, noise_shape: NoiseShape = None,
                              out: Any = None, backend: Backend = "auto") -> Any:
    """Gradient of :func:`gaussian_dropout`: ``grad`` times the forward's
    noise ``t``, regenerated from ``state`` (the forward's int seed, or the
    ``Generator.state`` saved just before it; nothing stored); the identity
    in evaluation.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> x = np.full(4, 3.0, np.float32)
    >>> y = fastdrop.gaussian_dropout(x, 0.2, rng=5)
    >>> g = fastdrop.gaussian_dropout_backward(np.ones(4, np.float32), 0.2, state=5)
    >>> bool((g * np.float32(3.0) == y).all())
    True
    """
    return _noise_backward("gaussian_dropout", grad, p, state, training, noise_shape, out,
                           backend)


@overload
def gaussian_noise_backward(grad: NDArray[Scalar_co], stddev: Float, *, state: State = ...,
                            training: bool = ..., noise_shape: NoiseShape = ...,
                            out: NDArray[Scalar_co] | None = ...,
                            backend: Backend = ...) -> NDArray[Scalar_co]: ...
@overload
def gaussian_noise_backward(grad: ArrayLike, stddev: Float, *, state: State = ...,
                            training: bool = ..., noise_shape: NoiseShape = ...,
                            out: Any = ..., backend: Backend = ...) -> Any: ...
def gaussian_noise_backward(grad: ArrayLike, stddev: Float, *, state: State = None,
                            training: bool = True, noise_shape: NoiseShape = None,
                            out: Any = None, backend: Backend = "auto") -> Any:
    """Gradient of :func:`gaussian_noise`: the identity (``grad``'s values;
    the noise is a constant).  Arguments as :func:`gaussian_dropout_backward`
    (checked the same way; ``state`` is not needed).

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> fastdrop.gaussian_noise_backward(np.ones(2, np.float32), 0.1)
    array([1., 1.], dtype=float32)
    """
    return _noise_backward("gaussian_noise", grad, stddev, state, training, noise_shape, out,
                           backend)


def _noise(kind: str, x: Any, param: Any, training: Any, rng: Any, noise_shape: Any, out: Any,
           backend: Any) -> Any:
    """A Gaussian forward on any kind of array (the scalars are checked
    first, whichever front end runs it)."""
    training = check_training(training)
    param = check_noise_param(kind, param)
    where = _arrays.kind(x)
    if where == "gpu":
        from ._cuda import frontend

        return frontend.noise(x, kind, param, training=training, rng=rng,
                              noise_shape=noise_shape, out=out, backend=backend)
    if where == "dask":
        if out is not None:
            raise TypeError(
                f"out= is not supported for a Dask array x: {kind} returns a lazy Dask "
                "array; store it with dask.array.store")
        from .adapters import dask as fdd

        return fdd.lazy_noise(x, kind, param, rng=rng, noise_shape=noise_shape,
                              training=training, backend=backend)
    if where == "torch":
        return _arrays.via_torch(
            lambda xv, _, ov: _noise_host(kind, xv, param, training, rng, noise_shape, ov,
                                          backend), x, out)
    return _noise_host(kind, x, param, training, rng, noise_shape, out, backend)


def _noise_host(kind: str, x: Any, param: float, training: bool, rng: Any, noise_shape: Any,
                out: Any, backend: Any) -> Any:
    x = as_float_array(x)
    geometry = mask_geometry(x.shape, noise_shape)
    _, kern = _api.select_backend(backend, x)
    check_rng(rng)
    fresh = out is None
    out = prepare_out(x, out)
    plan = _plan.plan_noise(x.shape, kind, param, training=training, rng=rng,
                            fresh_out=fresh, geometry=geometry)
    return _dispatch.run_host(plan, kern, x, out)


def _noise_backward(kind: str, grad: Any, param: Any, state: Any, training: Any,
                    noise_shape: Any, out: Any, backend: Any) -> Any:
    training = check_training(training)
    param = check_noise_param(kind, param)
    if training and state is None and kind == "gaussian_dropout":
        raise ValueError(
            "gaussian_dropout_backward needs the state the forward's noise was drawn "
            "from (state=: its int seed or the Generator.state saved before it)")
    where = _arrays.kind(grad)
    if where == "gpu":
        from ._cuda import frontend

        return frontend.noise_backward(grad, kind, param, state=state, training=training,
                                       noise_shape=noise_shape, out=out, backend=backend)
    if where == "dask":
        _api._refuse_dask(f"{kind}_backward", "grad")
    if where == "torch":
        return _arrays.via_torch(
            lambda gv, _, ov: _noise_backward(kind, gv, param, state, training, noise_shape,
                                              ov, backend), grad, out, None, "grad")
    grad = as_float_array(grad, "grad")
    mask_geometry(grad.shape, noise_shape)
    _, kern = _api.select_backend(backend, grad)
    fresh = out is None
    out = prepare_out(grad, out)
    plan = _plan.plan_noise_backward(grad.shape, kind, param, training=training, state=state,
                                     noise_shape=noise_shape, fresh_out=fresh)
    return _dispatch.run_host(plan, kern, grad, out)
