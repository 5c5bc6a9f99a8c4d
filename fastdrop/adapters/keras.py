"""Keras 3 adapter: Keras's dropout layers with fastdrop's masks.

Imported only by ``import fastdrop.keras`` (``import fastdrop`` never imports
keras).  Keras chooses its backend when it is first imported
(``KERAS_BACKEND``, or ``~/.keras/keras.json``), so set it before importing
``fastdrop.keras``.

The layers
----------
:class:`Dropout`, :class:`SpatialDropout1D`, :class:`SpatialDropout2D`,
:class:`SpatialDropout3D`, :class:`AlphaDropout`, :class:`GaussianDropout`
and :class:`GaussianNoise` are subclasses of the Keras layers of the same
names (``isinstance(layer, keras.layers.Dropout)`` holds) with Keras's
constructor signatures, argument checks, ``get_config``/``from_config``,
masking support and seed state: only ``call`` is replaced.  They are
registered as serializable under the package name ``"fastdrop"``
(``"fastdrop>Dropout"``, ...), so a model saved with ``model.save("m.keras")``
loads with :func:`keras.saving.load_model` once ``fastdrop.keras`` is
imported.

In training (``training=True``, which ``fit`` passes) and with a non-zero
rate, ``call`` runs fastdrop's function for the active backend:

=========  ==================================================================
backend    path
=========  ==================================================================
jax        :mod:`fastdrop.jax` (XLA custom calls: jittable, differentiable)
torch      :mod:`fastdrop.torch` (autograd; CPU and CUDA tensors)
numpy      the NumPy API (:func:`fastdrop.dropout`, ...; Keras's numpy
           backend runs inference only)
other      ``NotImplementedError`` naming the supported backends (tensorflow,
           openvino): only the training path needs fastdrop, evaluation is
           the identity everywhere
=========  ==================================================================

Otherwise (``training=False``, the default of a direct call and of
``predict``/``evaluate``, or a zero rate) the input is returned unchanged, as
Keras's layers do.

Seeds
-----
Each layer with a non-zero rate owns Keras's own
``keras.random.SeedGenerator(seed)`` (``layer.seed_generator``, created by
Keras's constructor).  Its state is a pair ``(s0, s1)`` of 32-bit words:
``s0`` the initial seed (``seed``, or a random one from Python's
:mod:`random` when ``seed=None``, which :func:`keras.utils.set_random_seed`
controls) and ``s1`` a counter.  Every training call draws
``seed_generator.next()``, which returns the state and increments the
counter, so each call gets a fresh seed; under :func:`jax.jit` Keras
threads the state through its stateless scope as for its own layers.  The
drawn pair becomes the fastdrop seed (docs/spec.md §1) ::

    fastdrop seed = ((s0 mod 2**32) << 32) | (s1 mod 2**32),   offset 0

(:func:`fastdrop_seed`; the ``mod 2**32`` reads torch's int32 state words as
the unsigned words they stand for).  On the JAX backend the pair is passed
to :mod:`fastdrop.jax` as it is, a legacy ``uint32[2]`` key, which that
module maps to the same seed.  So the ``k``-th training call (``k = 0, 1,
...``) of a layer built with ``seed=S`` applies the mask of
``fastdrop.dropout(x, rate, rng=(S << 32) | k)``, on every backend, bit for
bit: the Keras backends agree with each other and with the NumPy API.  For
the spatial layers the mask has the noise shape below; Gaussian layers draw
fastdrop's normal-variate stream (docs/spec.md §10) from the same seed.

Semantics and the deliberate differences from Keras
---------------------------------------------------
The distributions are Keras's; the random bits are fastdrop's, so a layer
never reproduces the numbers of the Keras layer with the same seed.

- ``Dropout`` / ``SpatialDropout*``: kept elements are ``x * (1 / (1 -
  rate))`` (the factor rounded once to the compute dtype, one multiply: the
  fastdrop rule) where Keras computes ``x / (1 - rate)``; the two differ by
  1 ulp for some inputs (about a quarter of them at ``rate = 0.1`` in
  float32; never more than 1 ulp in the tests).  Dropped elements are ``+0.0``.  ``rate ==
  1`` gives zeros and draws no seed, as in Keras.  ``noise_shape`` has
  Keras's meaning (``None`` entries take the input's extent); each entry
  must be 1 or the input's extent (what Keras's broadcast needs too; fastdrop
  raises ``ValueError`` otherwise), and a noise shape shorter than the
  input is aligned to the right, as broadcasting aligns Keras's mask.
  Spatial noise shapes: ``(N, 1, C)`` (1D), ``(N, 1, 1, C)`` /
  ``(N, C, 1, 1)`` (2D, channels_last / channels_first), ``(N, 1, 1, 1, C)``
  / ``(N, C, 1, 1, 1)`` (3D).
- ``AlphaDropout``: Keras's formula and constants (its ``-alpha * scale``
  is fastdrop's ``-ALPHA = -1.7580993408473766``; ``a = ((1 - p) * (1 + p *
  ALPHA**2)) ** -0.5``, ``b = a * ALPHA * p``): kept ``x * a + b``, dropped
  ``a * (-ALPHA) + b``.  fastdrop evaluates the dropped value as one float64
  constant ``c = ALPHA * a * (p - 1)`` rounded once to the compute dtype,
  where Keras rounds ``-ALPHA``, ``a * (-ALPHA)`` and the sum in it (in
  float32 the two dropped values differ by up to 2 ulp; kept values agree
  to 1 ulp, ``tests/test_keras.py`` checks both), and a dropped element is
  ``c`` even where the input is infinite or NaN (Keras computes ``inf * 0 =
  NaN`` there).  ``rate == 1``
  gives zeros (the limit of ``c``; Keras raises ``ZeroDivisionError``).
- ``GaussianDropout``: ``x * t``, ``t = 1 + sqrt(rate / (1 - rate)) * z``
  computed in float64 and rounded once (Keras draws the noise in the compute
  dtype).  ``rate == 1`` is a ``ValueError`` at call time (Keras raises
  ``ZeroDivisionError``).
- ``GaussianNoise``: ``x + stddev * z``, ``stddev * z`` in float64 rounded
  once.  Keras's check ``0 <= stddev <= 1`` is kept.
- Inputs must be float16, float32, float64 or bfloat16 (Keras casts float
  inputs to the layer's compute dtype first); other dtypes are a
  ``TypeError`` in training.
- JAX arrays must be on the CPU (:mod:`fastdrop.jax` has no GPU handler:
  ``NotImplementedError``).
- torch backend, ``seed=None``: Keras's own ``Dropout`` then uses
  :func:`torch.nn.functional.dropout` and torch's global RNG; these layers
  always use their SeedGenerator (reproducible with
  :func:`keras.utils.set_random_seed`, not with ``torch.manual_seed``
  alone).

Examples
--------
>>> import numpy as np
>>> import keras
>>> import fastdrop
>>> import fastdrop.keras as fdk
>>> x = np.ones((2, 4), np.float32)
>>> layer = fdk.Dropout(0.5, seed=1)
>>> y = keras.ops.convert_to_numpy(layer(x, training=True))   # state (1, 0)
>>> y
array([[0., 2., 0., 2.],
       [2., 0., 0., 2.]], dtype=float32)
>>> bool((y == fastdrop.dropout(x, 0.5, rng=(1 << 32) | 0)).all())
True
>>> y2 = keras.ops.convert_to_numpy(layer(x, training=True))  # state (1, 1)
>>> bool((y2 == fastdrop.dropout(x, 0.5, rng=(1 << 32) | 1)).all())
True
>>> bool((keras.ops.convert_to_numpy(layer(x)) == x).all())    # training=False
True
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = [
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "AlphaDropout",
    "GaussianDropout",
    "GaussianNoise",
    "fastdrop_seed",
    "SUPPORTED_BACKENDS",
    "PACKAGE",
]

#: The Keras backends whose training path runs fastdrop.
SUPPORTED_BACKENDS = ("jax", "torch", "numpy")

#: The package name the layers are registered under (``"fastdrop>Dropout"``).
PACKAGE = "fastdrop"

_M32 = 0xFFFFFFFF


# ----------------------------------------------------------------------------
# seeds
# ----------------------------------------------------------------------------

def fastdrop_seed(state):
    """The fastdrop seed of a drawn Keras seed state ``(s0, s1)``:
    ``((s0 mod 2**32) << 32) | (s1 mod 2**32)``.

    ``state`` is what ``keras.random.SeedGenerator.next()`` returns (a
    2-element tensor of uint32 or int32 words; a concrete one, not a traced
    value), or any pair of ints.  The layers draw their mask at this seed,
    offset 0.

    Examples
    --------
    >>> fastdrop_seed([1, 0])
    4294967296
    >>> fastdrop_seed([7, 3]) == (7 << 32) | 3
    True
    >>> fastdrop_seed([-1, 2]) == (0xFFFFFFFF << 32) | 2    # int32 words (torch)
    True
    """
    if not isinstance(state, (list, tuple, np.ndarray)):
        state = keras.ops.convert_to_numpy(state)
    words = np.asarray(state).reshape(-1)
    if words.shape != (2,) or words.dtype.kind not in "iu":
        raise ValueError(
            f"a Keras seed state is 2 integer words, got dtype {words.dtype} and shape "
            f"{np.asarray(state).shape}")
    s0, s1 = (int(w) & _M32 for w in words.tolist())
    return (s0 << 32) | s1


# ----------------------------------------------------------------------------
# the backends' paths
# ----------------------------------------------------------------------------
# Each path is a function (kind, x, param, state, noise_shape) -> tensor,
# kind one of "dropout", "alpha", "gaussian_dropout", "gaussian_noise";
# state the drawn SeedGenerator value; noise_shape a full-rank tuple or None.

def _jax_path(kind, x, param, state, noise_shape):
    import jax
    import jax.numpy as jnp

    from .. import jax as fdj

    name = {"dropout": "dropout", "alpha": "alpha_dropout"}.get(kind, kind)
    fn = getattr(fdj, name, None)
    if fn is None:  # pragma: no cover - an older fastdrop.jax
        raise NotImplementedError(
            f"fastdrop.jax has no {name}: this layer needs it on the JAX backend")
    if isinstance(state, jax.core.Tracer):  # under jit: the uint32[2] key, traced
        key = state if state.dtype == jnp.uint32 else state.astype(jnp.uint32)
    else:  # eager: the same seed as a Python int (no jnp ops to build the key)
        key = fastdrop_seed(np.asarray(state))
    if kind in ("dropout", "alpha"):
        return fn(x, param, key, noise_shape=noise_shape)
    return fn(x, param, key)


def _torch_path(kind, x, param, state, noise_shape):
    from .. import torch as fdt

    seed = fastdrop_seed(state.tolist())
    if kind == "dropout":
        return fdt.dropout(x, param, True, generator=seed, noise_shape=noise_shape)
    if kind == "alpha":
        return fdt.alpha_dropout(x, param, True, generator=seed, noise_shape=noise_shape)
    if kind == "gaussian_dropout":
        return fdt.gaussian_dropout(x, param, True, generator=seed)
    return fdt.gaussian_noise(x, param, True, generator=seed)


def _numpy_path(kind, x, param, state, noise_shape):
    from .. import alpha_dropout, dropout, gaussian_dropout, gaussian_noise

    seed = fastdrop_seed(np.asarray(state))
    if kind == "dropout":
        return dropout(x, param, rng=seed, noise_shape=noise_shape)
    if kind == "alpha":
        return alpha_dropout(x, param, rng=seed, noise_shape=noise_shape)
    if kind == "gaussian_dropout":
        return gaussian_dropout(x, param, rng=seed)
    return gaussian_noise(x, param, rng=seed)


_PATHS = {"jax": _jax_path, "torch": _torch_path, "numpy": _numpy_path}


def _path_for(backend):
    """The training path of a Keras backend, or NotImplementedError."""
    path = _PATHS.get(backend)
    if path is None:
        raise NotImplementedError(
            f"fastdrop.keras layers run in training on the Keras backends "
            f"{', '.join(SUPPORTED_BACKENDS)}; the active backend is {backend!r}. Set "
            "KERAS_BACKEND=jax, torch or numpy before importing keras, or use "
            "keras.layers.Dropout (and its relatives) on this backend")
    return path


def _run(layer, kind, inputs, param, noise_shape=None):
    """The training call of ``layer``: draw the next seed and run ``kind``."""
    path = _path_for(keras.backend.backend())
    state = layer.seed_generator.next()
    return path(kind, inputs, float(param), state, noise_shape)


def _concrete_noise_shape(shape, noise_shape):
    """Keras's noise shape made concrete for an input of ``shape``: ``None``
    entries take the extent at their index (Keras's rule), and a shorter
    shape is aligned to the right with 1s (as broadcasting aligns Keras's
    mask).  None when there is no noise shape."""
    if noise_shape is None:
        return None
    shape = tuple(shape)
    ns = [shape[i] if v is None and i < len(shape) else v
          for i, v in enumerate(tuple(noise_shape))]
    if len(ns) < len(shape):
        ns = [1] * (len(shape) - len(ns)) + ns
    return tuple(int(v) if v is not None else v for v in ns)


def _shape(inputs):
    return tuple(int(d) for d in keras.ops.shape(inputs))


# ----------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------

_register = keras.saving.register_keras_serializable(package=PACKAGE)


@_register
class Dropout(keras.layers.Dropout):
    """:class:`keras.layers.Dropout` with fastdrop's mask.

    Same arguments as Keras's layer: ``rate`` (in [0, 1]), ``noise_shape``
    (``None`` entries: the input's extent; each entry 1 or the extent),
    ``seed`` (an int, or ``None`` for a random initial seed), and ``**kwargs``
    of :class:`keras.layers.Layer`; ``call(inputs, training=False)``.  In
    training the ``k``-th call applies ``fastdrop.dropout(x, rate,
    rng=fastdrop_seed((seed, k)), noise_shape=...)`` (see
    :mod:`fastdrop.adapters.keras` for the seed mapping and the backends).

    Examples
    --------
    >>> import numpy as np
    >>> import keras
    >>> import fastdrop.keras as fdk
    >>> layer = fdk.Dropout(0.5, noise_shape=(None, 1), seed=3)
    >>> y = keras.ops.convert_to_numpy(layer(np.ones((4, 3), np.float32), training=True))
    >>> bool((y == y[:, :1]).all())      # one decision per row
    True
    """

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            if self.rate == 1:  # Keras returns zeros without drawing a seed
                return keras.ops.zeros_like(inputs)
            ns = _concrete_noise_shape(_shape(inputs), self.noise_shape)
            return _run(self, "dropout", inputs, self.rate, ns)
        return inputs


def _spatial_call(layer, inputs, training):
    if training and layer.rate > 0:
        if layer.rate == 1:
            return keras.ops.zeros_like(inputs)
        shape = _shape(inputs)
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            ns = shape[:2] + (1,) * (len(shape) - 2)
        else:
            ns = (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)
        return _run(layer, "dropout", inputs, layer.rate, ns)
    return inputs


@_register
class SpatialDropout1D(keras.layers.SpatialDropout1D):
    """:class:`keras.layers.SpatialDropout1D` with fastdrop's mask: one
    decision per (sample, channel) of a ``(samples, timesteps, channels)``
    input, noise shape ``(N, 1, C)``.  Arguments ``rate``, ``seed``,
    ``name``, ``dtype``; ``call(inputs, training=False)``.
    """

    def call(self, inputs, training=False):
        return _spatial_call(self, inputs, training)


@_register
class SpatialDropout2D(keras.layers.SpatialDropout2D):
    """:class:`keras.layers.SpatialDropout2D` with fastdrop's mask: whole
    feature maps of a 4D input, noise shape ``(N, 1, 1, C)``
    (``data_format="channels_last"``) or ``(N, C, 1, 1)``
    (``"channels_first"``).  Arguments ``rate``, ``data_format``, ``seed``,
    ``name``, ``dtype``.
    """

    def call(self, inputs, training=False):
        return _spatial_call(self, inputs, training)


@_register
class SpatialDropout3D(keras.layers.SpatialDropout3D):
    """:class:`keras.layers.SpatialDropout3D` with fastdrop's mask: whole
    feature maps of a 5D input, noise shape ``(N, 1, 1, 1, C)``
    (``data_format="channels_last"``) or ``(N, C, 1, 1, 1)``
    (``"channels_first"``).  Arguments ``rate``, ``data_format``, ``seed``,
    ``name``, ``dtype``.
    """

    def call(self, inputs, training=False):
        return _spatial_call(self, inputs, training)


@_register
class AlphaDropout(keras.layers.AlphaDropout):
    """:class:`keras.layers.AlphaDropout` with fastdrop's mask
    (:func:`fastdrop.alpha_dropout`: Keras's formula and constants, see
    :mod:`fastdrop.adapters.keras` for the last-bit and ``rate == 1``
    differences).  Arguments ``rate``, ``noise_shape``, ``seed``.

    Examples
    --------
    >>> import numpy as np
    >>> import keras
    >>> import fastdrop
    >>> import fastdrop.keras as fdk
    >>> x = np.zeros((2, 4), np.float32)
    >>> y = keras.ops.convert_to_numpy(fdk.AlphaDropout(0.5, seed=1)(x, training=True))
    >>> bool((y == fastdrop.alpha_dropout(x, 0.5, rng=1 << 32)).all())
    True
    """

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            ns = _concrete_noise_shape(_shape(inputs), self.noise_shape)
            return _run(self, "alpha", inputs, self.rate, ns)
        return inputs


@_register
class GaussianDropout(keras.layers.GaussianDropout):
    """:class:`keras.layers.GaussianDropout` with fastdrop's normal-variate
    stream (:func:`fastdrop.gaussian_dropout`): ``x * (1 + sqrt(rate / (1 -
    rate)) * z)``.  Arguments ``rate``, ``seed``; ``rate == 1`` is a
    ``ValueError`` when called in training (infinite variance).
    """

    def call(self, inputs, training=False):
        if training and self.rate > 0:
            if self.rate == 1:
                raise ValueError(
                    "GaussianDropout with rate=1 has noise of infinite variance "
                    "(stddev sqrt(rate / (1 - rate))); use a rate below 1")
            return _run(self, "gaussian_dropout", inputs, self.rate)
        return inputs


@_register
class GaussianNoise(keras.layers.GaussianNoise):
    """:class:`keras.layers.GaussianNoise` with fastdrop's normal-variate
    stream (:func:`fastdrop.gaussian_noise`): ``x + stddev * z``.  Arguments
    ``stddev`` (Keras's range, [0, 1]), ``seed``.
    """

    def call(self, inputs, training=False):
        if training and self.stddev > 0:
            return _run(self, "gaussian_noise", inputs, self.stddev)
        return inputs


del _register
