"""JAX adapter: fastdrop's CPU kernels as XLA custom calls.

Imported only by ``import fastdrop.jax`` (``import fastdrop`` never imports
jax).  The kernels are the C kernels of :func:`fastdrop.dropout`, reached
through XLA's typed FFI: four handlers written in plain C against XLA's FFI
C API (``fastdrop/_cython/xla_ffi.h``), compiled into the extension
``fastdrop._cython._kernels`` and registered with
:func:`jax.ffi.register_ffi_target` the first time a function of this module
runs.  So the results are fastdrop's bits: ``fastdrop.jax.dropout(x, p, s)``
equals ``fastdrop.dropout(np.asarray(x), p, rng=s)`` bit for bit, for every
dtype (float16, float32, float64, bfloat16), shape, noise shape and value
(NaN, infinities and subnormals included), under :func:`jax.jit` or not.

Keys: seeds and offsets
-----------------------
A mask is fixed by ``(seed, offset)``, two uint64 values (docs/spec.md §1).
``key`` may be

an ``int`` in ``[0, 2**64)`` (or a NumPy integer)
    That seed (a constant of the traced program).
a ``jax.random`` key
    A typed key (``jax.random.key``) or a legacy ``uint32[2]`` key
    (``jax.random.PRNGKey``) of the default implementation, threefry2x32,
    whose data are two uint32 words ``(k0, k1)``: the seed is
    ``(k0 << 32) | k1``.  ``jax.random.key(s)`` and ``PRNGKey(s)`` for
    ``0 <= s < 2**32`` have the data ``(0, s)``, so they give the same masks
    as the int seed ``s``.  Keys of other implementations (``rbg``,
    ``unsafe_rbg``) are a ``TypeError``: derive a threefry key, or pass
    an int seed.
a 0-d integer array (a traced seed)
    Its value's bits, zero-extended to 64 bits (an int32 ``-1`` is
    ``2**32 - 1``; 64-bit values need ``jax_enable_x64``).

``offset`` (default 0) is the first stream position: an ``int`` in
``[0, 2**64]`` or a 0-d integer array (bits as above).  The custom calls
take ``(seed, offset)`` as an operand, a ``uint32[4]`` array ``(seed lo,
seed hi, offset lo, offset hi)``: under :func:`jax.jit` a key (or a seed
or an offset passed as an argument) is traced, and a new key never
recompiles.  ``p``, ``mode``, ``training`` and ``noise_shape`` are static:
Python values fixed at trace time (the threshold and the factors are
compiled in as attributes of the custom call); a traced ``p`` is a
``TypeError``.

Nothing is stateful here: a key is used as given (fastdrop's
:class:`~fastdrop.Generator` does not apply).  Split keys, or use offsets,
to get new masks: a call with a mask of ``n`` elements uses positions
``offset .. offset + n - 1``.

Differentiation, jit, vmap, checkpoint
--------------------------------------
Every function is a :func:`jax.custom_vjp` whose backward regenerates the
mask (or the Gaussian noise) from the key: nothing but the ``uint32[4]``
key is saved for the backward pass.  The gradient is the operation's
gradient select (docs/spec.md §6, §8, §11): dropout's gradient is the
forward's select applied to the cotangent, alpha dropout's is ``g * a``
where kept, Gaussian dropout's is ``g * t`` with the forward's noise, and
Gaussian noise's is the identity.  Forward-mode differentiation
(:func:`jax.jvp`, :func:`jax.jacfwd`) is not available (a JAX restriction
of custom_vjp functions).  :func:`jax.checkpoint` recomputes the same masks
from the same key.

:func:`jax.vmap` has one rule for every function of this module: **a mask
depends on the key (seed and offset) alone**, never on how ``x`` is batched.

- Along a batch axis where the key (or the offset) is batched, each batch
  element uses its own: element ``b`` gets exactly the mask of
  ``f(xs[b], keys[b])``, e.g. ``jax.vmap(f)(xs, jax.random.split(key, n))``.
- Along a batch axis where the key and the offset are shared (an unbatched
  key with a batched ``x``), every element gets the **same** mask, the mask
  of ``f(xs[b], key)`` (as with :mod:`jax.random`, where an unbatched key
  gives every element the same bits).  To mask a batch as one stacked array
  instead (what ``f(xs, key)`` does: element ``b`` at stream positions
  ``offset + b * n + i``, ``n`` the mask size of one element), batch the
  offset: ``jax.vmap(lambda x, o: f(x, key, offset=o))(xs, jnp.arange(B) *
  n)``.

The rule is what keeps the transformations consistent: a backward pass sees
the key saved by the forward, batched as it was, while its cotangent may be
batched differently from ``x`` (``jax.vmap(jax.grad(f))`` has an unbatched
cotangent for a batched ``x``, :func:`jax.jacrev` a batched one for an
unbatched ``x``); a mask that followed ``x``'s batching would then differ
between the forward and the backward pass.  A ``noise_shape`` applies to
each element.  :func:`apply_mask` follows broadcasting: an unbatched mask
is applied to every element.

The custom calls
----------------
Four XLA FFI targets (typed FFI, CPU), each called with
``jax.ffi.ffi_call(..., vmap_method="expand_dims")``:

``fastdrop_select(x, key) -> y``
    The affine select of docs/spec.md §4 (dropout in every mode, alpha
    dropout, DropPath; their gradients; classic evaluation with ``T = 0``).
``fastdrop_noise(x, key) -> y``
    Gaussian dropout and noise (§11) and Gaussian dropout's gradient.
``fastdrop_mask(key) -> keep``
    The keep decisions as a bool array (:func:`dropout_mask`).
``fastdrop_apply(x, mask) -> y``
    The select with a stored bool mask (:func:`apply_mask`).

Operands: ``x`` (float16, float32, float64 or bfloat16), ``key`` the
``uint32[4]`` words of :func:`key_words` (traced: never recompiles), ``mask``
a bool array.  Attributes (static, from :mod:`fastdrop._plan`, the planner
the NumPy API uses, so every rule of p, mode and training is decided in one
place): ``a``, ``b``, ``c`` (float64: kept ``x * a + b``, dropped ``c``; for
the noise ``t = b * z + a``), ``threshold`` (``T = rint(p * 2**32)``,
uint64), ``add`` (bool: ``x + t`` or ``x * t``), ``mstrides`` (int64:
the mask strides of x's axes, docs/spec.md §2) and, optional for
``fastdrop_select``, ``draw`` (bool: the positions the mask reads repeat
along ``x``, e.g. channels-last spatial dropout; the handler draws them
once per key, then applies them as a stored mask).  The rules that need no
kernel (``p == 0``, ``p == 1``, evaluation) are ``x`` itself or zeros.

Devices
-------
The handlers run on the CPU only.  An array on a GPU is a
``NotImplementedError`` when the function is called on it outside
:func:`jax.jit`; under :func:`jax.jit` a computation placed on a GPU fails
when it runs, with an error saying so (the GPU targets are registered with
a handler that only reports it).  For GPU arrays use :func:`fastdrop.dropout`
on CuPy arrays or ``fastdrop.torch`` on CUDA tensors.

Threads: the handlers use :func:`fastdrop.get_num_threads` threads as set
when a function of this module was last called (under :func:`jax.jit`: when
it was traced or last called eagerly); results never depend on it.

Examples
--------
>>> import jax
>>> import jax.numpy as jnp
>>> import fastdrop.jax as fdj
>>> x = jnp.ones(8)
>>> fdj.dropout(x, 0.5, 0)
Array([2., 0., 2., 2., 2., 2., 2., 2.], dtype=float32)
>>> bool((fdj.dropout(x, 0.5, jax.random.key(0)) == fdj.dropout(x, 0.5, 0)).all())
True
>>> jax.grad(lambda x: fdj.dropout(x, 0.5, 0).sum())(x)
Array([2., 0., 2., 2., 2., 2., 2., 2.], dtype=float32)
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _config, _plan
from .._family import drop_path_mode, feature_noise_shape, sample_noise_shape
from .._generator import check_offset, check_seed
from .._validate import (bool_mask_geometry, check_float_dtype, check_mode, check_noise_param,
                         check_p, check_packed_shape, check_training, mask_geometry,
                         normalize_shape)

__all__ = [
    "dropout",
    "alpha_dropout",
    "feature_alpha_dropout",
    "drop_path",
    "gaussian_dropout",
    "gaussian_noise",
    "dropout_mask",
    "apply_mask",
    "key_words",
]

_U64 = 1 << 64
_M32 = 0xFFFFFFFF

# ----------------------------------------------------------------------------
# registration of the custom call targets (first use)
# ----------------------------------------------------------------------------

_lock = threading.Lock()
_kernels_mod: list[Any] = []  # [fastdrop._cython._kernels] once the targets are registered

#: Platforms that get the handler which reports that there is no kernel there.
_UNSUPPORTED_PLATFORMS = ("CUDA", "ROCM")


def _kernels():
    """The compiled extension, its XLA targets registered (once per process);
    pushes the current thread setting to the handlers."""
    if not _kernels_mod:
        with _lock:
            if not _kernels_mod:
                try:
                    from .._cython import _kernels as ck
                except ImportError as e:
                    raise RuntimeError(
                        "fastdrop.jax needs fastdrop's compiled extension "
                        f"(fastdrop._cython._kernels), which failed to import: {e}") from e
                for name, capsule in ck.xla_handlers().items():
                    jax.ffi.register_ffi_target(name, capsule, platform="cpu")
                for platform in _UNSUPPORTED_PLATFORMS:
                    for name, capsule in ck.xla_handlers(unsupported=True).items():
                        jax.ffi.register_ffi_target(name, capsule, platform=platform)
                _kernels_mod.append(ck)
    ck = _kernels_mod[0]
    ck.xla_configure(_config._num_threads)
    return ck


def _call(target, shape, dtype, *operands, **attrs):
    """``jax.ffi.ffi_call`` of one of the targets (batched by the handlers
    themselves: ``vmap_method="expand_dims"``, see the module docstring)."""
    return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, dtype),
                            vmap_method="expand_dims")(*operands, **attrs)


# ----------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------

def _is_tracer(v):
    return isinstance(v, jax.core.Tracer)


def _static(value, name, what):
    """A TypeError for a traced value where a Python value is needed."""
    if _is_tracer(value):
        raise TypeError(
            f"{name} must be a Python {what}, not a traced value: fastdrop.jax compiles "
            f"{name} into the custom call (pass it as a static argument of jax.jit)")


def _check_training(training):
    _static(training, "training", "bool")
    return check_training(training)


def _check_p(p, name="p"):
    _static(p, name, "float")
    return check_p(p, name)


def _as_float(x, name="x"):
    """``x`` as a JAX array of a floating dtype on the CPU."""
    if not _is_tracer(x) and not isinstance(x, jax.Array):
        if isinstance(x, np.ma.MaskedArray):
            raise TypeError(f"{name} is a numpy.ma masked array; pass np.ma.getdata({name})")
        dtype = np.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
        check_float_dtype(dtype, name)
        x = jnp.asarray(x)
    check_float_dtype(x.dtype, name)
    _check_cpu(x, name)
    return x


def _check_cpu(x, name="x"):
    """NotImplementedError for a concrete array with a device other than a CPU."""
    if _is_tracer(x):
        return
    try:
        devices = x.devices()
    except Exception:  # noqa: BLE001 - not a committed array: nothing to check
        return
    other = sorted({d.platform for d in devices if d.platform != "cpu"})
    if other:
        raise NotImplementedError(
            f"fastdrop.jax runs on the CPU only ({name} is on {', '.join(other)}): there is "
            "no GPU handler.  Move it with jax.device_put(x, jax.devices('cpu')[0]), or use "
            "fastdrop.dropout on a CuPy array or fastdrop.torch on a CUDA tensor")


def _int_words(v, name):
    """(lo, hi) uint32 words of an integer: a Python / NumPy integer (range
    checked by the caller) or a 0-d integer array (its bits, zero-extended)."""
    if isinstance(v, numbers.Integral):
        v = int(v)
        return np.uint32(v & _M32), np.uint32((v >> 32) & _M32)
    a = v if (_is_tracer(v) or isinstance(v, jax.Array)) else np.asarray(v)
    dt = np.dtype(a.dtype)
    if dt.kind not in "iu" or a.shape != ():
        raise TypeError(f"{name} must be an int or a 0-d integer array, got "
                        f"{type(v).__name__} of dtype {dt} and shape {tuple(a.shape)}")
    if isinstance(a, np.ndarray):  # concrete: its bits, without a round trip through JAX
        return _int_words(int(a) & ((1 << (8 * dt.itemsize)) - 1), name)
    if dt.itemsize <= 4:
        return jnp.asarray(a).astype(jnp.uint32), jnp.uint32(0)
    a = jnp.asarray(a).astype(jnp.uint64)
    return (a & _M32).astype(jnp.uint32), (a >> 32).astype(jnp.uint32)


def key_words(key, offset=0):
    """The ``uint32[4]`` operand of the custom calls for a key (or seed) and
    an offset: ``(seed lo, seed hi, offset lo, offset hi)`` (see the module
    docstring for the mapping).

    Returns a NumPy array when both are Python ints, else a JAX array.

    Examples
    --------
    >>> import jax
    >>> import fastdrop.jax as fdj
    >>> fdj.key_words(2**32 + 7, offset=3).tolist()
    [7, 1, 3, 0]
    >>> fdj.key_words(jax.random.PRNGKey(7)).tolist()
    [7, 0, 0, 0]
    """
    return _key_words(key, offset, 0)


def _key_words(key, offset, n):
    """:func:`key_words` with the static checks of a call drawing ``n``
    positions (``offset + n <= 2**64`` for a Python int offset)."""
    if isinstance(offset, (bool, np.bool_)):
        raise TypeError("offset must be an integer, got bool")
    if isinstance(offset, numbers.Integral):
        offset = check_offset(offset)
        if offset + n > _U64:
            raise ValueError(
                f"offset overflow: offset {offset} + {n} mask elements exceeds 2**64, the "
                "end of the stream")
        olo, ohi = _int_words(offset % _U64, "offset")
    else:
        olo, ohi = _int_words(offset, "offset")
    if isinstance(key, (bool, np.bool_)):
        raise TypeError("key must be an int seed or a jax.random key, got bool")
    if isinstance(key, numbers.Integral):
        slo, shi = _int_words(check_seed(key, "key (seed)"), "key")
    elif isinstance(key, (jax.Array, np.ndarray)) or _is_tracer(key):
        slo, shi = _key_seed_words(key)
    else:
        raise TypeError(
            "key must be an int seed, a jax.random key (jax.random.key or PRNGKey) or a "
            f"0-d integer array, got {type(key).__name__}")
    words = (slo, shi, olo, ohi)
    if all(isinstance(w, np.uint32) for w in words):
        return np.array(words, dtype=np.uint32)
    return jnp.stack([jnp.asarray(w, jnp.uint32) for w in words])


def _key_seed_words(key):
    """(seed lo, seed hi) of a jax.random key or a 0-d integer array."""
    dt = key.dtype
    if jnp.issubdtype(dt, jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(key))
        if impl != "threefry2x32":
            raise TypeError(
                f"key is a jax.random key of the {impl!r} implementation; fastdrop.jax maps "
                "threefry2x32 keys (data (k0, k1) -> seed (k0 << 32) | k1) and int seeds "
                "only: use jax.random.key(...) with the default implementation, or an int")
        if key.shape != ():
            raise TypeError(
                f"key must be a single key, got an array of keys of shape {key.shape} "
                "(use jax.vmap to give each element its own key)")
        data = jax.random.key_data(key)
        return data[1], data[0]
    dt = np.dtype(dt)
    if dt == np.uint32 and tuple(key.shape) == (2,):  # legacy PRNGKey data
        data = key if (_is_tracer(key) or isinstance(key, jax.Array)) else jnp.asarray(key)
        return data[1], data[0]
    if dt.kind in "iu" and tuple(key.shape) == ():
        return _int_words(key, "key")
    raise TypeError(
        "key must be an int seed, a jax.random key (a typed key or a legacy uint32[2] "
        f"PRNGKey) or a 0-d integer array, got an array of dtype {dt} and shape "
        f"{tuple(key.shape)}")


# ----------------------------------------------------------------------------
# plans -> custom calls
# ----------------------------------------------------------------------------
# A *spec* is the static, hashable form of a plan's rule (fastdrop._plan):
# ("copy",), ("zero",), ("select", a, b, c, T, mstrides, draw) or ("noise",
# a, b, add, mstrides), the float constants as float.hex() strings (so that
# -0.0 and +0.0 never compare equal in JAX's caches); draw: the mask's
# positions repeat along x and are drawn once first (_plan.span_to_draw).

def _spec(plan):
    rule = plan.rule
    if rule in ("copy", "none"):  # "none": an empty array
        return ("copy",)
    if rule == "zero":
        return ("zero",)
    if rule in ("select", "scale"):  # "scale": every element kept (T = 0)
        T = plan.T if rule == "select" else 0
        return ("select", float(plan.scale).hex(), float(plan.shift).hex(),
                float(plan.fill).hex(), int(T), tuple(plan.mstrides),
                _plan.span_to_draw(plan) > 0)
    if rule == "noise":  # t = scale * z + shift; x op t
        return ("noise", float(plan.shift).hex(), float(plan.scale).hex(),
                plan.noise == "add", tuple(plan.mstrides))
    raise AssertionError(f"unexpected plan rule {rule!r}")  # pragma: no cover


def _run(spec, x, key):
    kind = spec[0]
    if kind == "copy":
        return x
    if kind == "zero":
        return jnp.zeros_like(x)
    if kind == "select":
        _, a, b, c, T, ms, draw = spec
        return _call("fastdrop_select", x.shape, x.dtype, x, key, a=float.fromhex(a),
                     b=float.fromhex(b), c=float.fromhex(c), threshold=np.uint64(T),
                     mstrides=np.array(ms, dtype=np.int64), draw=bool(draw))
    _, a, b, add, ms = spec
    return _call("fastdrop_noise", x.shape, x.dtype, x, key, a=float.fromhex(a),
                 b=float.fromhex(b), add=bool(add), mstrides=np.array(ms, dtype=np.int64))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _keyed(fwd, bwd, x, key):
    """``fwd`` on ``x`` with the stream at ``key``; the gradient is ``bwd``
    on the cotangent with the same key (the mask regenerated)."""
    return _run(fwd, x, key)


def _keyed_fwd(fwd, bwd, x, key):
    # through _keyed itself: an outer differentiation (grad of grad) sees a
    # custom_vjp function here, not the bare custom call
    return _keyed(fwd, bwd, x, key), key


def _keyed_bwd(fwd, bwd, key, g):
    # the gradient is linear in g and its own gradient: differentiable again
    return _keyed(bwd, bwd, g, key), None


_keyed.defvjp(_keyed_fwd, _keyed_bwd)


def _run_stored(spec, x, mask):
    kind = spec[0]
    if kind != "select":
        return _run(spec, x, None)
    _, a, b, c, _, _, _ = spec
    return _call("fastdrop_apply", x.shape, x.dtype, x, mask, a=float.fromhex(a),
                 b=float.fromhex(b), c=float.fromhex(c))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _stored(fwd, bwd, x, mask):
    return _run_stored(fwd, x, mask)


def _stored_fwd(fwd, bwd, x, mask):
    return _stored(fwd, bwd, x, mask), mask


def _stored_bwd(fwd, bwd, mask, g):
    return _stored(bwd, bwd, g, mask), None


_stored.defvjp(_stored_fwd, _stored_bwd)


def _select_family(x, p, key, offset, training, mode, noise_shape, modes=_plan.MODES):
    """A member of the dropout family (a plan mode of fastdrop._plan.MODES)."""
    training = _check_training(training)
    p = _check_p(p)
    check_mode(mode, modes)
    x = _as_float(x)
    geometry = mask_geometry(x.shape, noise_shape)
    words = _key_words(key, offset, geometry[2] if training else 0)
    _kernels()
    fwd = _plan.plan_dropout(x.shape, p, training=training, mode=mode, rng=0,
                             geometry=geometry)
    bwd = _plan.plan_backward(x.shape, p, training=training, mode=mode, state=0,
                              noise_shape=geometry[0])
    return _keyed(_spec(fwd), _spec(bwd), x, words)


def _noise_family(kind, x, param, key, offset, training, noise_shape):
    training = _check_training(training)
    _static(param, "p" if kind == "gaussian_dropout" else "stddev", "float")
    param = check_noise_param(kind, param)
    x = _as_float(x)
    geometry = mask_geometry(x.shape, noise_shape)
    words = _key_words(key, offset, geometry[2] if training else 0)
    _kernels()
    fwd = _plan.plan_noise(x.shape, kind, param, training=training, rng=0, geometry=geometry)
    bwd = _plan.plan_noise_backward(x.shape, kind, param, training=training, state=0,
                                    noise_shape=geometry[0])
    return _keyed(_spec(fwd), _spec(bwd), x, words)


# ----------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------

def dropout(x, p, key, *, offset=0, training=True, mode="inverted", noise_shape=None):
    """Dropout of a JAX array with fastdrop's mask (differentiable, jittable).

    Same bits as :func:`fastdrop.dropout` for the same ``(seed, offset)``:
    element ``i`` of the mask (its C-order index in the mask shape) is kept
    when the v1 decision of stream position ``offset + i`` says so
    (docs/spec.md §1); kept elements become ``x * (1 / (1 - p))``
    (``mode="inverted"``) or ``x`` (``"classic"``), dropped ones ``+0.0``.

    Parameters
    ----------
    x : jax.Array or array_like
        float16, float32, float64 (with ``jax_enable_x64``) or bfloat16, any
        shape, on the CPU.
    p : float
        Drop probability in [0, 1] (static: a Python float).
    key : int, jax.random key or 0-d integer array
        The seed; see the module docstring for the mapping of keys.  A key
        is an operand of the custom call: a new key does not recompile.
    offset : int or 0-d integer array, default 0
        First stream position of the mask.
    training : bool, default True
        Static.  In evaluation nothing is drawn: ``"inverted"`` returns
        ``x``, ``"classic"`` returns ``x * (1 - p)``.
    mode : {"inverted", "classic"}
    noise_shape : tuple, optional
        Mask shape, same ndim as ``x``, each entry 1 (one decision shared
        along that axis) or ``x``'s extent (``None`` means the extent).

    Returns
    -------
    jax.Array
        Same shape and dtype as ``x``.

    Raises
    ------
    TypeError
        ``x`` not of a floating dtype (the message names it); ``p``,
        ``training`` or ``mode`` traced or of the wrong type; a bad key.
    ValueError
        ``p`` NaN or outside [0, 1]; unknown mode; bad ``noise_shape``;
        ``offset + n > 2**64``.
    NotImplementedError
        ``x`` is on a GPU.

    Notes
    -----
    Under :func:`jax.vmap` a batched key (or offset) gives each element its
    own mask, a shared key gives every element the same mask (see the
    module docstring).  The gradient regenerates the mask from ``key``; it
    is differentiable again (the same select).

    Examples
    --------
    >>> import numpy as np
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import fastdrop
    >>> import fastdrop.jax as fdj
    >>> x = jnp.arange(1.0, 9.0)
    >>> fdj.dropout(x, 0.5, 0)
    Array([ 2.,  0.,  6.,  8., 10., 12., 14., 16.], dtype=float32)
    >>> bool((np.asarray(fdj.dropout(x, 0.5, 0)) == fastdrop.dropout(np.asarray(x), 0.5, rng=0)).all())
    True
    >>> f = jax.jit(fdj.dropout, static_argnums=1)
    >>> y = f(x, 0.5, jax.random.key(1))      # a new key: no recompilation
    >>> jax.grad(lambda x: fdj.dropout(x, 0.5, 0).sum())(x)
    Array([2., 0., 2., 2., 2., 2., 2., 2.], dtype=float32)
    >>> fdj.dropout(jnp.ones((2, 4)), 0.5, 0, noise_shape=(1, 4))
    Array([[2., 0., 2., 2.],
           [2., 0., 2., 2.]], dtype=float32)
    """
    return _select_family(x, p, key, offset, training, mode, noise_shape, ("inverted", "classic"))


def alpha_dropout(x, p, key, *, offset=0, training=True, noise_shape=None):
    """Alpha dropout (for SELU networks; docs/spec.md §8): kept ``x * a +
    b``, dropped ``c``, with PyTorch's constants; the keep decisions are
    :func:`dropout`'s.  Same bits as :func:`fastdrop.alpha_dropout`.
    ``p == 0`` and evaluation return ``x``; ``p == 1`` gives ``+0.0``.
    The gradient is ``g * a`` where kept, ``+0.0`` where dropped.

    Parameters are those of :func:`dropout` without ``mode``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import fastdrop.jax as fdj
    >>> fdj.alpha_dropout(jnp.zeros(4), 0.5, 0)
    Array([ 0.77919394, -0.77919394,  0.77919394,  0.77919394], dtype=float32)
    """
    return _select_family(x, p, key, offset, training, "alpha", noise_shape)


def feature_alpha_dropout(x, p, key, *, offset=0, training=True):
    """Alpha dropout of whole channels: :func:`alpha_dropout` with the noise
    shape ``(N, C, 1, ..., 1)``; ``x`` has at least 2 axes.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import fastdrop.jax as fdj
    >>> y = fdj.feature_alpha_dropout(jnp.zeros((2, 3, 4)), 0.5, 1)
    >>> bool((y == y[:, :, :1]).all())
    True
    """
    shape = tuple(int(d) for d in jnp.shape(x))
    return _select_family(x, p, key, offset, training, "alpha",
                          feature_noise_shape(shape))


def drop_path(x, p, key, *, offset=0, scale_by_keep=True, training=True):
    """DropPath / stochastic depth (timm's semantics; docs/spec.md §9): one
    decision per index of the leading axis, a kept sample scaled by ``1 /
    (1 - p)`` (``scale_by_keep``) or left as it is; ``x`` in evaluation.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import fastdrop.jax as fdj
    >>> fdj.drop_path(jnp.ones((4, 2)), 0.5, 0)
    Array([[2., 2.],
           [0., 0.],
           [2., 2.],
           [2., 2.]], dtype=float32)
    """
    shape = tuple(int(d) for d in jnp.shape(x))
    return _select_family(x, p, key, offset, training, drop_path_mode(scale_by_keep),
                          sample_noise_shape(shape))


def gaussian_dropout(x, p, key, *, offset=0, training=True, noise_shape=None):
    """Gaussian dropout (docs/spec.md §11): ``x * t`` with ``t = 1 + sigma *
    z``, ``sigma = sqrt(p / (1 - p))``, ``z`` fastdrop's normal-variate
    stream at the element's stream position.  Same bits as
    :func:`fastdrop.gaussian_dropout`.  ``p`` in [0, 1) (static); ``p ==
    0`` and evaluation return ``x``.  The gradient is ``g * t`` (the noise
    regenerated from ``key``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import fastdrop.jax as fdj
    >>> fdj.gaussian_dropout(jnp.ones(4), 0.5, 0)
    Array([-0.9611565 ,  1.5619569 , -0.04096723,  0.91407996], dtype=float32)
    """
    return _noise_family("gaussian_dropout", x, p, key, offset, training, noise_shape)


def gaussian_noise(x, stddev, key, *, offset=0, training=True, noise_shape=None):
    """Additive Gaussian noise (docs/spec.md §11): ``x + stddev * z``.  Same
    bits as :func:`fastdrop.gaussian_noise`.  ``stddev`` finite and >= 0
    (static); ``stddev == 0`` and evaluation return ``x``.  The gradient is
    the identity.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import fastdrop.jax as fdj
    >>> fdj.gaussian_noise(jnp.zeros(4), 0.1, 0)
    Array([-0.19611564,  0.05619569, -0.10409673, -0.008592  ], dtype=float32)
    """
    return _noise_family("gaussian_noise", x, stddev, key, offset, training, noise_shape)


def dropout_mask(shape, p, key, *, offset=0):
    """The keep mask (True = kept) of shape ``shape``: exactly the mask
    :func:`dropout` applies to an array of that shape with the same ``p``,
    key and offset (and :func:`fastdrop.dropout_mask` for the same seed).

    Parameters
    ----------
    shape : int or tuple of int
    p : float
        Static.  ``p == 0`` keeps everything, ``p == 1`` nothing.
    key, offset
        As in :func:`dropout`.

    Returns
    -------
    jax.Array of bool

    Examples
    --------
    >>> import fastdrop.jax as fdj
    >>> fdj.dropout_mask(8, 0.5, 0).astype(int)
    Array([1, 0, 1, 1, 1, 1, 1, 1], dtype=int32)
    """
    p = _check_p(p)
    shape = normalize_shape(shape)
    n = math.prod(shape)
    words = _key_words(key, offset, n)
    _kernels()
    plan = _plan.plan_mask(shape, p, rng=0, mask_out="bool")
    if plan.source == "philox":
        return _call("fastdrop_mask", shape, jnp.bool_, words, threshold=np.uint64(plan.T))
    return jnp.full(shape, bool(plan.mask_fill), dtype=jnp.bool_)  # p == 0, p == 1, n == 0


def apply_mask(x, mask, p, *, mode="inverted", noise_shape=None):
    """Masked scaling with a stored mask: kept ``x * scale``, dropped
    ``+0.0`` (``scale = 1 / (1 - p)`` in ``"inverted"`` mode, 1 in
    ``"classic"``); same bits as :func:`fastdrop.apply_mask`.  Its
    gradient is the same select on the cotangent.

    Parameters
    ----------
    x : jax.Array or array_like of a floating dtype
    mask : bool array or 1-D uint8 packed mask
        A bool mask of ``x``'s ndim, each axis 1 (shared) or ``x``'s extent;
        or packed bits (``np.packbits(keep, bitorder="little")``) over the
        mask shape ``noise_shape`` (default ``x.shape``).
    p : float
        The drop probability the mask was drawn with (static).
    mode : {"inverted", "classic"}
    noise_shape : tuple, optional
        Only for packed masks.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import fastdrop.jax as fdj
    >>> fdj.apply_mask(jnp.arange(4.0), jnp.array([True, False, True, True]), 0.5)
    Array([0., 0., 4., 6.], dtype=float32)
    """
    p = _check_p(p)
    check_mode(mode)
    x = _as_float(x)
    if not (_is_tracer(mask) or isinstance(mask, jax.Array)):
        mask = np.asarray(mask)
    mdt = np.dtype(mask.dtype)
    if mdt == np.bool_:
        geometry = bool_mask_geometry(x.shape, tuple(mask.shape), noise_shape)
    elif mdt == np.uint8:
        geometry = mask_geometry(x.shape, noise_shape)
        check_packed_shape(mdt, mask.ndim, mask.size, geometry[2])
        mask = jnp.unpackbits(jnp.asarray(mask), count=geometry[2],
                              bitorder="little").astype(jnp.bool_).reshape(geometry[0])
    else:
        raise TypeError(
            f"mask must be a bool array or a 1-D uint8 packed mask, got dtype {mdt}")
    mask = jnp.asarray(mask)
    _kernels()
    stored = ("bool", geometry, None)
    fwd = _plan.plan_apply(x.shape, p, mode, stored)
    bwd = _plan.plan_apply(x.shape, p, mode, stored, grad=True)
    return _stored(_spec(fwd), _spec(bwd), x, mask)
