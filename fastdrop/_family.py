"""The dropout family: alpha dropout, feature alpha dropout and DropPath
(docs/spec.md §8, §9), NumPy API.

Each is :func:`fastdrop.dropout`'s machinery with its own plan mode
(:data:`fastdrop._plan.MODES`) and, for the feature and per-sample forms, a
noise shape: the kernels only ever run the plan's affine select, so adding
a variant adds no kernel.  Arguments, array kinds (NumPy, GPU, torch CPU
tensors, Dask) and errors are those of :func:`fastdrop.dropout`.
"""

from __future__ import annotations

from . import _api, _plan
from ._validate import check_flag, normalize_shape

__all__ = ["alpha_dropout", "feature_alpha_dropout", "drop_path",
           "alpha_dropout_backward", "drop_path_backward", "feature_noise_shape",
           "sample_noise_shape", "drop_path_mode"]

_ALL = _plan.MODES


def _shape_of(x):
    shape = getattr(x, "shape", None)
    if shape is None:
        import numpy as np

        shape = np.shape(x)
    return normalize_shape(tuple(int(d) for d in shape))


def feature_noise_shape(shape, fn="feature_alpha_dropout"):
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


def sample_noise_shape(shape, fn="drop_path"):
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


def drop_path_mode(scale_by_keep):
    """The plan mode of DropPath: kept samples scaled by ``1 / (1 - p)``
    (``"inverted"``) or left as they are (``"unscaled"``); the identity in
    evaluation either way (docs/spec.md §9)."""
    return "inverted" if check_flag(scale_by_keep, "scale_by_keep") else "unscaled"


def alpha_dropout(x, p=0.5, *, training=True, rng=None, noise_shape=None, out=None,
                  return_mask=False, backend="auto"):
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


def feature_alpha_dropout(x, p=0.5, *, training=True, rng=None, out=None,
                          return_mask=False, backend="auto"):
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


def drop_path(x, p, *, scale_by_keep=True, training=True, rng=None, out=None,
              return_mask=False, backend="auto"):
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


def alpha_dropout_backward(grad, p, *, mask=None, state=None, training=True,
                           noise_shape=None, out=None, backend="auto"):
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


def drop_path_backward(grad, p, *, mask=None, state=None, scale_by_keep=True,
                       training=True, out=None, backend="auto"):
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
