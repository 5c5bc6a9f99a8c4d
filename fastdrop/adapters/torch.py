"""PyTorch adapter: fastdrop dropout as a ``torch.library`` custom op.

Imported only by ``import fastdrop.torch`` (``import fastdrop`` never imports
torch).  What it provides:

- :func:`dropout`, the functional form (the callable the benchmarks time
  against :func:`torch.nn.functional.dropout`);
- :class:`Dropout` and the spatial :class:`Dropout1d`, :class:`Dropout2d`,
  :class:`Dropout3d` modules (they honour ``train()`` / ``eval()``);
- the family (docs/spec.md §8, §9): :class:`AlphaDropout`,
  :class:`FeatureAlphaDropout`, :class:`DropPath` and the functional forms
  :func:`alpha_dropout`, :func:`feature_alpha_dropout` (PyTorch's
  signatures) and :func:`drop_path` (timm's);
- :func:`draw_seed`, the seed that ``generator=None`` draws from torch's RNG;
- four custom ops, ``torch.ops.fastdrop.dropout`` (every mode of the
  family), its gradient ``torch.ops.fastdrop.dropout_grad``,
  ``torch.ops.fastdrop.dropout_packed`` and ``torch.ops.fastdrop.apply_mask``,
  each with a fake (meta) implementation, so ``torch.compile`` can trace them,
  and an autograd formula.

How tensors reach the kernels
-----------------------------
CPU tensors go to :func:`fastdrop.dropout` as zero-copy NumPy views
(``t.detach().numpy()``, any strides, stride-0 broadcast views included); the
result is written straight into a fresh ``torch.empty_like(x)`` through its
NumPy view (``out=``).  CUDA tensors are passed as they are to
:func:`fastdrop.dropout`, which routes arrays with
``__cuda_array_interface__`` to the CUDA backend.  Supported dtypes are
float16, float32 and float64; bfloat16 is a ``TypeError`` (NumPy has no
bfloat16, and fastdrop's float16/float32 rounding rules do not cover it).

Seeds, offsets and the op schema
--------------------------------
A mask is fixed by ``(seed, offset)``, two uint64 values (docs/spec.md §1).
Operator schemas carry int64, so the ops take both reinterpreted as signed
64-bit integers (two's complement: values ``>= 2**63`` are passed as
``value - 2**64`` and mapped back inside the kernel wrapper).  The
``generator=`` argument of :func:`dropout` and the modules decides where
``(seed, offset)`` come from:

``None`` (default)
    A fresh uint64 seed (offset 0) drawn from **torch's** default CPU
    generator with one ``torch.randint`` call (:func:`draw_seed`).  So
    ``torch.manual_seed`` makes runs reproducible, exactly as with
    :class:`torch.nn.Dropout`, and activation checkpointing
    (``torch.utils.checkpoint`` with ``preserve_rng_state=True``, the
    default) restores torch's RNG before it recomputes a forward, so the
    recomputed forward draws the same seed and regenerates the same mask.
``torch.Generator``
    The same, drawn from that generator.
``int``
    A fixed seed, offset 0: the same mask on every call (stateless).
``fastdrop.Generator``
    Its seed, at its current offset; the generator advances by
    ``ceil(n / 8) * 8`` positions per call, as in :func:`fastdrop.dropout`,
    so ``fastdrop.torch.dropout(x, generator=g)`` equals
    ``fastdrop.dropout(x.numpy(), rng=g)`` bit for bit.  Activation
    checkpointing cannot rewind a fastdrop Generator: a checkpointed forward
    would draw a *different* mask when recomputed, and any op of the
    checkpointed region that saves the dropout output for its backward
    would get wrong gradients.  Use ``generator=None`` (or an ``int``)
    inside checkpointed regions.
``numpy.random.Generator``
    One uint64 seed is drawn from it (offset 0).

Backward regenerates the mask from the saved ``(seed, offset)``: nothing is
stored but two integers.  With ``save_mask=True`` the forward instead also
returns the packed mask (``ceil(n / 8)`` bytes) and backward applies it.

``torch.compile``: the ops are traceable (fake implementations) and compiled
models give the same numbers as eager ones.  Drawing ``(seed, offset)`` from a
stateful generator (``None``, a ``torch.Generator`` or a fastdrop/NumPy
Generator) runs eagerly, outside the graph (``torch.compiler.disable``): one
graph break per dropout call, so use the default ``fullgraph=False``; the
drawn ints become dynamic graph inputs after one recompile.  A fixed ``int``
seed is a constant and compiles with ``fullgraph=True``.

Examples
--------
>>> import torch
>>> import fastdrop.torch as fdt
>>> x = torch.ones(2, 4)
>>> fdt.dropout(x, 0.5, generator=0)
tensor([[2., 0., 2., 2.],
        [2., 2., 2., 2.]])
>>> layer = fdt.Dropout(0.5).eval()
>>> bool((layer(x) == x).all())
True
"""

from __future__ import annotations

import math
import numbers
from typing import List, Optional, Tuple

import numpy as np
import torch

from .. import _api, _dispatch, _family, _mc, _plan
from .._generator import Generator, check_seed, resolve_rng
from .._validate import (check_flag, check_mode, check_noise_param, check_noise_shape, check_p,
                         check_training, mask_geometry)

__all__ = [
    "dropout",
    "draw_seed",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "alpha_dropout",
    "feature_alpha_dropout",
    "drop_path",
    "AlphaDropout",
    "FeatureAlphaDropout",
    "DropPath",
    "gaussian_dropout",
    "gaussian_noise",
    "GaussianDropout",
    "GaussianNoise",
    "mc_dropout",
    "mc_predict",
]

_U64 = 1 << 64
_I63 = 1 << 63
_DTYPES = (torch.float16, torch.float32, torch.float64)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def _to_i64(u):
    """uint64 -> the int64 with the same bits (for op schemas)."""
    return u - _U64 if u >= _I63 else u


def _to_u64(i):
    """int64 -> the uint64 with the same bits."""
    return i + _U64 if i < 0 else i


def _check_tensor(x, name="x"):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _DTYPES:
        hint = (" (NumPy has no bfloat16: cast with .float() or use "
                "torch.nn.functional.dropout)") if x.dtype == torch.bfloat16 else ""
        raise TypeError(
            f"{name} must be a float16, float32 or float64 tensor, got dtype "
            f"{x.dtype}{hint}")


def _np(t):
    """Zero-copy NumPy view of a CPU tensor (any strides)."""
    return t.detach().resolve_conj().resolve_neg().numpy()


def _device_check(x):
    if x.device.type not in ("cpu", "cuda"):
        raise NotImplementedError(
            f"fastdrop supports CPU and CUDA tensors, got a tensor on {x.device}")


def _into(out, res):
    """Make sure a CUDA front-end result ends up in ``out``."""
    if isinstance(res, torch.Tensor) and res.data_ptr() == out.data_ptr():
        return
    out.copy_(torch.as_tensor(res, device=out.device))


def _noise(noise_shape):
    return None if noise_shape is None else tuple(noise_shape)


def _mask_size(x, noise_shape):
    return math.prod(noise_shape) if noise_shape is not None else x.numel()


def draw_seed(generator=None):
    """A uint64 seed drawn from torch's RNG (what ``generator=None`` uses).

    One ``torch.randint`` call of two 32-bit halves from ``generator``
    (torch's default CPU generator when ``None``), so the seed follows
    ``torch.manual_seed`` and is restored by activation checkpointing.

    Parameters
    ----------
    generator : torch.Generator, optional

    Returns
    -------
    int
        In ``[0, 2**64)``.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> _ = torch.manual_seed(0)
    >>> a = fdt.draw_seed()
    >>> _ = torch.manual_seed(0)
    >>> a == fdt.draw_seed()
    True
    """
    device = generator.device if generator is not None else "cpu"
    lo, hi = torch.randint(0, 1 << 32, (2,), dtype=torch.int64, device=device,
                           generator=generator).tolist()
    return (hi << 32) | lo


@torch.compiler.disable
def _draw_seed_offset(generator, n):
    """(seed, offset) as int64 op arguments for a mask of ``n`` elements,
    drawn from a stateful generator.

    Run eagerly under ``torch.compile`` (a graph break): the draw and the
    generator's side effects happen exactly as in eager mode, and the ints
    enter the next graph as inputs (dynamic after one recompile) rather than
    as constants that would force a recompile per call.
    """
    if generator is None or isinstance(generator, torch.Generator):
        seed, offset = draw_seed(generator), 0
    else:
        seed, offset = resolve_rng(generator, n)
    return _to_i64(seed), _to_i64(offset)


def _seed_offset(generator, n):
    """(seed, offset) as int64 op arguments for a mask of ``n`` elements."""
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return _to_i64(check_seed(generator, "generator seed")), 0  # a constant
    return _draw_seed_offset(generator, n)


def _resolve_noise_shape(shape, noise_shape):
    """The mask shape as a list of ints, or None when it is ``shape`` itself."""
    if noise_shape is None:
        return None
    shape = tuple(shape)
    if isinstance(noise_shape, str):  # the one string a noise shape may be
        if noise_shape != "spatial":
            raise ValueError(
                f"noise_shape must be a tuple, None or 'spatial', got {noise_shape!r}")
        if len(shape) < 2:
            raise ValueError(
                f"noise_shape='spatial' needs an input with at least 2 axes "
                f"(N, C, ...), got shape {shape}")
        ns = shape[:2] + (1,) * (len(shape) - 2)
    else:
        ns = check_noise_shape(noise_shape)
    M, _, _ = mask_geometry(shape, ns)  # validates; None entries -> extents
    if tuple(M) == shape:
        return None
    return [int(m) for m in M]


# ----------------------------------------------------------------------------
# custom ops
# ----------------------------------------------------------------------------

@torch.library.custom_op("fastdrop::dropout", mutates_args=())
def _dropout_op(x: torch.Tensor, p: float, seed: int, offset: int,
                noise_shape: Optional[List[int]], mode: str,
                training: bool) -> torch.Tensor:
    """``fastdrop.dropout(x, p, rng=Generator(seed, offset), ...)`` as an op;
    ``seed`` and ``offset`` are uint64 values reinterpreted as int64."""
    _check_tensor(x)
    _device_check(x)
    seed, offset = _to_u64(seed), _to_u64(offset)
    out = torch.empty_like(x)
    # evaluation draws nothing, so the rng is only used in training
    kwargs = dict(training=training, mode=mode, noise_shape=_noise(noise_shape),
                  rng=Generator(seed, offset))
    if x.device.type == "cpu":
        # plan-level API: out was just allocated (the fresh_out hint: no
        # streaming stores on untouched pages)
        xn = _np(x)
        plan = _plan.plan_dropout(xn.shape, p, training=training, mode=mode,
                                  rng=kwargs["rng"], noise_shape=kwargs["noise_shape"],
                                  fresh_out=True)
        _dispatch.run_host(plan, _dispatch.choose_cpu_backend(xn.size, xn.dtype)[1], xn, _np(out))
    else:
        _into(out, _api._forward(x.detach(), p, training, mode, kwargs["rng"],
                                 kwargs["noise_shape"], out, False, "auto", _plan.MODES))
    return out


@_dropout_op.register_fake
def _(x, p, seed, offset, noise_shape, mode, training):
    return torch.empty_like(x)


def _dropout_setup(ctx, inputs, output):
    _, p, seed, offset, noise_shape, mode, training = inputs
    ctx.args = (p, seed, offset, noise_shape, mode, training)


def _dropout_backward(ctx, grad):
    # Same mask (regenerated from seed/offset), the mode's gradient select.
    return (torch.ops.fastdrop.dropout_grad(grad, *ctx.args),) + (None,) * 6


_dropout_op.register_autograd(_dropout_backward, setup_context=_dropout_setup)


@torch.library.custom_op("fastdrop::dropout_grad", mutates_args=())
def _dropout_grad_op(grad: torch.Tensor, p: float, seed: int, offset: int,
                     noise_shape: Optional[List[int]], mode: str,
                     training: bool) -> torch.Tensor:
    """The gradient of ``fastdrop::dropout`` with the same arguments: the
    forward's decisions regenerated from ``(seed, offset)``, kept elements
    times the mode's scale, dropped ones +0.0 (docs/spec.md §6; for alpha
    dropout the shift and the fill do not enter the gradient)."""
    _check_tensor(grad, "grad")
    _device_check(grad)
    state = (_to_u64(seed), _to_u64(offset))
    out = torch.empty_like(grad)
    ns = _noise(noise_shape)
    if grad.device.type == "cpu":
        gn = _np(grad)
        plan = _plan.plan_backward(gn.shape, p, training=training, mode=mode, state=state,
                                   noise_shape=ns, fresh_out=True)
        _dispatch.run_host(plan, _dispatch.choose_cpu_backend(gn.size, gn.dtype)[1], gn,
                           _np(out))
    else:
        _into(out, _api._backward(grad.detach(), p, None, state, training, mode, ns, out,
                                  "auto", _plan.MODES))
    return out


@_dropout_grad_op.register_fake
def _(grad, p, seed, offset, noise_shape, mode, training):
    return torch.empty_like(grad)


def _dropout_grad_backward(ctx, grad):
    # linear in its input: its gradient is itself
    return (torch.ops.fastdrop.dropout_grad(grad, *ctx.args),) + (None,) * 6


_dropout_grad_op.register_autograd(_dropout_grad_backward, setup_context=_dropout_setup)


@torch.library.custom_op("fastdrop::dropout_packed", mutates_args=())
def _dropout_packed_op(x: torch.Tensor, p: float, seed: int, offset: int,
                       noise_shape: Optional[List[int]],
                       mode: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Training-mode dropout that also returns the packed keep mask
    (uint8, ``ceil(n / 8)`` bytes, ``np.packbits(..., bitorder="little")``)."""
    _check_tensor(x)
    _device_check(x)
    seed, offset = _to_u64(seed), _to_u64(offset)
    out = torch.empty_like(x)
    kwargs = dict(mode=mode, noise_shape=_noise(noise_shape), rng=Generator(seed, offset),
                  return_mask="packed")
    if x.device.type == "cpu":
        _, packed = _api.dropout(_np(x), p, out=_np(out), **kwargs)
        return out, torch.from_numpy(packed)
    res, packed = _api.dropout(x.detach(), p, out=out, **kwargs)
    _into(out, res)
    return out, torch.as_tensor(packed, device=x.device)


@_dropout_packed_op.register_fake
def _(x, p, seed, offset, noise_shape, mode):
    n = _mask_size(x, noise_shape)
    return torch.empty_like(x), x.new_empty(((n + 7) // 8,), dtype=torch.uint8)


def _dropout_packed_setup(ctx, inputs, output):
    _, p, _, _, noise_shape, mode = inputs
    ctx.save_for_backward(output[1])
    ctx.args = (p, noise_shape, mode)


def _dropout_packed_backward(ctx, grad, _grad_packed):
    (packed,) = ctx.saved_tensors
    return (torch.ops.fastdrop.apply_mask(grad, packed, *ctx.args),) + (None,) * 5


_dropout_packed_op.register_autograd(_dropout_packed_backward,
                                     setup_context=_dropout_packed_setup)


@torch.library.custom_op("fastdrop::apply_mask", mutates_args=())
def _apply_mask_op(x: torch.Tensor, packed: torch.Tensor, p: float,
                   noise_shape: Optional[List[int]], mode: str) -> torch.Tensor:
    """``fastdrop.apply_mask(x, packed, p, ...)`` as an op (a stored packed mask)."""
    _check_tensor(x)
    _device_check(x)
    out = torch.empty_like(x)
    kwargs = dict(mode=mode, noise_shape=_noise(noise_shape))
    if x.device.type == "cpu":
        _api.apply_mask(_np(x), _np(packed), p, out=_np(out), **kwargs)
    else:
        _into(out, _api.apply_mask(x.detach(), packed.detach(), p, out=out, **kwargs))
    return out


@_apply_mask_op.register_fake
def _(x, packed, p, noise_shape, mode):
    return torch.empty_like(x)


def _apply_mask_setup(ctx, inputs, output):
    _, packed, p, noise_shape, mode = inputs
    ctx.save_for_backward(packed)
    ctx.args = (p, noise_shape, mode)


def _apply_mask_backward(ctx, grad):
    (packed,) = ctx.saved_tensors
    return (torch.ops.fastdrop.apply_mask(grad, packed, *ctx.args),) + (None,) * 4


_apply_mask_op.register_autograd(_apply_mask_backward, setup_context=_apply_mask_setup)


@torch.library.custom_op("fastdrop::gaussian", mutates_args=())
def _gaussian_op(x: torch.Tensor, kind: str, param: float, seed: int, offset: int,
                 noise_shape: Optional[List[int]]) -> torch.Tensor:
    """``fastdrop.gaussian_dropout(x, param)`` (``kind="gaussian_dropout"``)
    or ``fastdrop.gaussian_noise(x, param)`` in training with ``rng =
    Generator(seed, offset)`` (docs/spec.md §11), as an op."""
    _check_tensor(x)
    _device_check(x)
    rng = Generator(_to_u64(seed), _to_u64(offset))
    out = torch.empty_like(x)
    ns = _noise(noise_shape)
    if x.device.type == "cpu":
        xn = _np(x)
        plan = _plan.plan_noise(xn.shape, kind, param, training=True, rng=rng,
                                noise_shape=ns, fresh_out=True)
        _dispatch.run_host(plan, _dispatch.choose_cpu_backend(xn.size, xn.dtype, "normal")[1],
                           xn, _np(out))
    else:
        _into(out, _family._noise(kind, x.detach(), param, True, rng, ns, out, "auto"))
    return out


@_gaussian_op.register_fake
def _(x, kind, param, seed, offset, noise_shape):
    return torch.empty_like(x)


def _gaussian_setup(ctx, inputs, output):
    ctx.args = inputs[1:]


def _gaussian_backward(ctx, grad):
    # Gaussian dropout is x * t: its gradient is grad * t, the same op on
    # grad (t regenerated from seed and offset); Gaussian noise is x + t.
    kind = ctx.args[0]
    if kind == "gaussian_noise":
        return (grad,) + (None,) * 5
    return (torch.ops.fastdrop.gaussian(grad, *ctx.args),) + (None,) * 5


_gaussian_op.register_autograd(_gaussian_backward, setup_context=_gaussian_setup)


# ----------------------------------------------------------------------------
# functional API
# ----------------------------------------------------------------------------

def dropout(x, p=0.5, training=True, *, generator=None, noise_shape=None,
            mode="inverted", save_mask=False):
    """Dropout on a torch tensor with fastdrop's mask (differentiable).

    Same numbers as :func:`fastdrop.dropout` for the same ``(seed, offset)``;
    the same semantics as :func:`torch.nn.functional.dropout` otherwise.

    Parameters
    ----------
    x : torch.Tensor
        float16, float32 or float64, on the CPU or a CUDA device, any shape
        and strides.
    p : float, default 0.5
        Drop probability in [0, 1].
    training : bool, default True
        ``False``: ``mode="inverted"`` returns ``x`` itself (like torch);
        ``mode="classic"`` returns ``x * (1 - p)``.
    generator : None, torch.Generator, int, fastdrop.Generator or numpy.random.Generator
        Where ``(seed, offset)`` come from; see the module docstring.
        ``None`` draws a seed from torch's RNG (reproducible under
        ``torch.manual_seed``, safe under activation checkpointing).
    noise_shape : tuple, "spatial" or None
        Mask shape, same ndim as ``x``, each entry 1 (shared along that
        axis) or ``x``'s extent (``None`` entries mean the extent);
        ``"spatial"`` is ``(N, C, 1, ..., 1)``.
    mode : {"inverted", "classic"}
    save_mask : bool, default False
        Store the packed mask for backward instead of regenerating it from
        ``(seed, offset)`` (trades ``n / 8`` bytes for one Philox pass).

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``x``.

    Raises
    ------
    TypeError
        ``x`` is not a float16/32/64 tensor (bfloat16 included).
    ValueError
        ``p`` NaN or outside [0, 1], unknown ``mode``, bad ``noise_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> import fastdrop
    >>> import fastdrop.torch as fdt
    >>> x = torch.arange(1.0, 9.0, requires_grad=True)
    >>> y = fdt.dropout(x, 0.5, generator=fastdrop.Generator(0))
    >>> y.detach()
    tensor([ 2.,  0.,  6.,  8., 10., 12., 14., 16.])
    >>> y.sum().backward()
    >>> x.grad
    tensor([2., 0., 2., 2., 2., 2., 2., 2.])
    >>> ref = fastdrop.dropout(x.detach().numpy(), 0.5, rng=fastdrop.Generator(0))
    >>> bool(np.array_equal(y.detach().numpy(), ref))
    True
    """
    # every argument is checked in evaluation mode too (a bad one must not
    # hide until training starts)
    _check_tensor(x)
    training = check_training(training)
    p = check_p(p)
    check_mode(mode)
    save_mask = check_flag(save_mask, "save_mask")
    ns = _resolve_noise_shape(x.shape, noise_shape)
    generator = _check_generator(generator)
    return _run(x, p, training, mode, ns, generator, save_mask)


def _run(x, p, training, mode, ns, generator, save_mask=False):
    """The checked call of any functional form: ``mode`` one of
    :data:`fastdrop._plan.MODES`, ``ns`` the resolved mask shape or None."""
    if not _plan.draws(training):  # evaluation: nothing drawn from the generator
        if _plan.rule_of(p, False, mode) == "copy":
            return x  # the identity returns x itself, as torch does
        return torch.ops.fastdrop.dropout(x, p, 0, 0, None, mode, False)
    seed, offset = _seed_offset(generator, _mask_size(x, ns))
    if _plan.rule_of(p, True, mode) == "copy":
        return x  # p == 0: x itself (the generator has advanced), as torch does
    if save_mask:
        return torch.ops.fastdrop.dropout_packed(x, p, seed, offset, ns, mode)[0]
    return torch.ops.fastdrop.dropout(x, p, seed, offset, ns, mode, True)


# ----------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------

def _check_generator(generator):
    if generator is None or isinstance(generator, (torch.Generator, Generator,
                                                   np.random.Generator)):
        return generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return check_seed(generator, "generator seed")
    raise TypeError(
        "generator must be None, a torch.Generator, an int seed, a "
        f"fastdrop.Generator or a numpy.random.Generator, got {type(generator).__name__}")


class Dropout(torch.nn.Module):
    """Dropout layer with fastdrop's mask; a drop-in for :class:`torch.nn.Dropout`.

    Active in ``train()`` mode, the identity (``mode="inverted"``) in
    ``eval()`` mode.

    Parameters
    ----------
    p : float, default 0.5
        Drop probability.
    noise_shape : tuple, "spatial" or None
        Mask shape (see :func:`dropout`); ``"spatial"`` drops whole channels
        of an ``(N, C, ...)`` input.
    mode : {"inverted", "classic"}
    generator : None, torch.Generator, int, fastdrop.Generator or numpy.random.Generator
        See :func:`dropout`.  The default (``None``, seeds drawn from torch's
        RNG) is the one that is safe under activation checkpointing.
    save_mask : bool, default False
        Store the packed mask for backward instead of regenerating it.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> _ = torch.manual_seed(0)
    >>> layer = fdt.Dropout(p=0.25)
    >>> y = layer(torch.ones(1000))
    >>> torch.unique(y)
    tensor([0.0000, 1.3333])
    >>> layer.eval()(torch.ones(3))
    tensor([1., 1., 1.])
    """

    def __init__(self, p=0.5, noise_shape=None, *, mode="inverted", generator=None,
                 save_mask=False):
        super().__init__()
        self.p = check_p(p)
        self.mode = check_mode(mode)
        if isinstance(noise_shape, str):
            if noise_shape != "spatial":
                raise ValueError(
                    f"noise_shape must be a tuple, None or 'spatial', got {noise_shape!r}")
        else:
            noise_shape = check_noise_shape(noise_shape)
        self.noise_shape = noise_shape
        self.generator = _check_generator(generator)
        self.save_mask = check_flag(save_mask, "save_mask")

    def _noise_shape(self, x):
        return self.noise_shape

    def forward(self, x):
        return dropout(x, self.p, self.training, generator=self.generator,
                       noise_shape=self._noise_shape(x), mode=self.mode,
                       save_mask=self.save_mask)

    def extra_repr(self):
        s = f"p={self.p}"
        if self.noise_shape is not None:
            s += f", noise_shape={self.noise_shape!r}"
        if self.mode != "inverted":
            s += f", mode={self.mode!r}"
        return s


class _DropoutNd(Dropout):
    _nspatial = 0

    def __init__(self, p=0.5, *, mode="inverted", generator=None, save_mask=False):
        super().__init__(p, None, mode=mode, generator=generator, save_mask=save_mask)

    def _noise_shape(self, x):
        _check_tensor(x)
        k = self._nspatial
        if x.dim() == k + 2:        # (N, C, *spatial)
            return tuple(x.shape[:2]) + (1,) * k
        if x.dim() == k + 1:        # unbatched (C, *spatial)
            return (x.shape[0],) + (1,) * k
        raise ValueError(
            f"{type(self).__name__} expects a {k + 1}-D (unbatched) or {k + 2}-D "
            f"(batched) input, got shape {tuple(x.shape)}")


class Dropout1d(_DropoutNd):
    """Channel dropout for ``(N, C, L)`` or ``(C, L)`` inputs: mask shape
    ``(N, C, 1)``, like :class:`torch.nn.Dropout1d`.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> y = fdt.Dropout1d(0.5, generator=0)(torch.ones(1, 4, 3))
    >>> y[0]
    tensor([[2., 2., 2.],
            [0., 0., 0.],
            [2., 2., 2.],
            [2., 2., 2.]])
    """

    _nspatial = 1


class Dropout2d(_DropoutNd):
    """Channel dropout for ``(N, C, H, W)`` or ``(C, H, W)`` inputs: mask
    shape ``(N, C, 1, 1)``, like :class:`torch.nn.Dropout2d`.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> y = fdt.Dropout2d(0.5, generator=0)(torch.ones(2, 3, 4, 4))
    >>> (y.amax(dim=(2, 3)) == y.amin(dim=(2, 3))).all().item()
    True
    """

    _nspatial = 2


class Dropout3d(_DropoutNd):
    """Channel dropout for ``(N, C, D, H, W)`` or ``(C, D, H, W)`` inputs:
    mask shape ``(N, C, 1, 1, 1)``, like :class:`torch.nn.Dropout3d`.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> fdt.Dropout3d(0.5, generator=0)(torch.ones(1, 2, 2, 2, 2)).shape
    torch.Size([1, 2, 2, 2, 2])
    """

    _nspatial = 3


# ----------------------------------------------------------------------------
# the dropout family (docs/spec.md §8, §9)
# ----------------------------------------------------------------------------

def alpha_dropout(input, p=0.5, training=False, *, generator=None, noise_shape=None):
    """Alpha dropout on a tensor (PyTorch's semantics and constants, fastdrop's
    mask): :func:`fastdrop.alpha_dropout` with autograd; ``training``
    defaults to False as in :func:`torch.nn.functional.alpha_dropout`.

    A kept element is ``x * a + b``, a dropped one ``c`` (docs/spec.md §8);
    the gradient is ``grad * a`` where kept, ``+0.0`` where dropped.
    Evaluation and ``p == 0`` return ``input`` itself; ``p == 1`` gives zeros.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> x = torch.zeros(4, requires_grad=True)
    >>> y = fdt.alpha_dropout(x, 0.5, True, generator=0)
    >>> y.detach()
    tensor([ 0.7792, -0.7792,  0.7792,  0.7792])
    >>> y.sum().backward(); x.grad
    tensor([0.8864, 0.0000, 0.8864, 0.8864])
    """
    _check_tensor(input, "input")
    training = check_training(training)
    p = check_p(p)
    ns = _resolve_noise_shape(input.shape, noise_shape)
    return _run(input, p, training, "alpha", ns, _check_generator(generator))


def feature_alpha_dropout(input, p=0.5, training=False, *, generator=None):
    """Alpha dropout of whole channels of an ``(N, C, ...)`` tensor (mask
    shape ``(N, C, 1, ..., 1)``), as :func:`torch.nn.functional.feature_alpha_dropout`.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> y = fdt.feature_alpha_dropout(torch.zeros(2, 3, 5), 0.5, True, generator=1)
    >>> bool((y == y[:, :, :1]).all())
    True
    """
    _check_tensor(input, "input")
    training = check_training(training)
    p = check_p(p)
    ns = _resolve_noise_shape(input.shape,
                              _family.feature_noise_shape(tuple(input.shape)))
    return _run(input, p, training, "alpha", ns, _check_generator(generator))


def drop_path(x, drop_prob=0.0, training=False, scale_by_keep=True, *, generator=None):
    """DropPath / stochastic depth, timm's ``drop_path`` signature and
    semantics with fastdrop's mask: one decision per sample (mask shape
    ``(N, 1, ..., 1)``), kept samples scaled by ``1 / (1 - drop_prob)`` when
    ``scale_by_keep``; evaluation and ``drop_prob == 0`` return ``x`` itself.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> fdt.drop_path(torch.ones(4, 2), 0.5, True, generator=0)
    tensor([[2., 2.],
            [0., 0.],
            [2., 2.],
            [2., 2.]])
    """
    _check_tensor(x)
    training = check_training(training)
    p = check_p(drop_prob)
    mode = _family.drop_path_mode(scale_by_keep)
    ns = _resolve_noise_shape(x.shape, _family.sample_noise_shape(tuple(x.shape)))
    return _run(x, p, training, mode, ns, _check_generator(generator))


def _run_noise(x, kind, param, training, ns, generator):
    if not training:
        return x  # evaluation: x itself, nothing drawn
    seed, offset = _seed_offset(generator, _mask_size(x, ns))
    if param == 0.0:
        return x  # no noise: x itself (the generator has advanced)
    return torch.ops.fastdrop.gaussian(x, kind, param, seed, offset, ns)


def gaussian_dropout(input, p=0.5, training=True, *, generator=None, noise_shape=None):
    """Gaussian dropout on a tensor (Keras's ``GaussianDropout``, fastdrop's
    normal-variate stream): ``input * (1 + sigma * z)``, ``sigma = sqrt(p /
    (1 - p))``, with autograd (the gradient is ``grad`` times the same
    noise, regenerated).  Same numbers as :func:`fastdrop.gaussian_dropout`
    for the same ``(seed, offset)``.  ``p`` in [0, 1); evaluation and
    ``p == 0`` return ``input`` itself.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> x = torch.ones(4, requires_grad=True)
    >>> y = fdt.gaussian_dropout(x, 0.5, generator=0)
    >>> y.detach()
    tensor([-0.9612,  1.5620, -0.0410,  0.9141])
    >>> y.sum().backward(); bool(torch.equal(x.grad, y.detach()))
    True
    """
    _check_tensor(input, "input")
    training = check_training(training)
    p = check_noise_param("gaussian_dropout", p)
    ns = _resolve_noise_shape(input.shape, noise_shape)
    return _run_noise(input, "gaussian_dropout", p, training, ns, _check_generator(generator))


def gaussian_noise(input, stddev, training=True, *, generator=None, noise_shape=None):
    """Additive Gaussian noise on a tensor (Keras's ``GaussianNoise``):
    ``input + stddev * z`` with fastdrop's normal-variate stream; the
    gradient passes through.  Evaluation and ``stddev == 0`` return
    ``input`` itself.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> fdt.gaussian_noise(torch.zeros(4), 0.1, generator=0)
    tensor([-0.1961,  0.0562, -0.1041, -0.0086])
    """
    _check_tensor(input, "input")
    training = check_training(training)
    stddev = check_noise_param("gaussian_noise", stddev)
    ns = _resolve_noise_shape(input.shape, noise_shape)
    return _run_noise(input, "gaussian_noise", stddev, training, ns,
                      _check_generator(generator))


class GaussianDropout(torch.nn.Module):
    """Gaussian dropout layer (Keras's ``GaussianDropout(rate)``): active in
    ``train()``, the identity in ``eval()``; :func:`gaussian_dropout`.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> _ = torch.manual_seed(0)
    >>> y = fdt.GaussianDropout(0.2)(torch.ones(100000))
    >>> abs(float(y.mean()) - 1) < 0.01, abs(float(y.var()) - 0.25) < 0.01
    (True, True)
    """

    def __init__(self, p=0.5, *, generator=None):
        super().__init__()
        self.p = check_noise_param("gaussian_dropout", p)
        self.generator = _check_generator(generator)

    def forward(self, x):
        return gaussian_dropout(x, self.p, self.training, generator=self.generator)

    def extra_repr(self):
        return f"p={self.p}"


class GaussianNoise(torch.nn.Module):
    """Additive Gaussian noise layer (Keras's ``GaussianNoise(stddev)``):
    active in ``train()``, the identity in ``eval()``; :func:`gaussian_noise`.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> m = fdt.GaussianNoise(0.5).eval()
    >>> x = torch.ones(3)
    >>> m(x) is x
    True
    """

    def __init__(self, stddev, *, generator=None):
        super().__init__()
        self.stddev = check_noise_param("gaussian_noise", stddev)
        self.generator = _check_generator(generator)

    def forward(self, x):
        return gaussian_noise(x, self.stddev, self.training, generator=self.generator)

    def extra_repr(self):
        return f"stddev={self.stddev}"


class AlphaDropout(torch.nn.Module):
    """Alpha dropout layer with fastdrop's mask; :class:`torch.nn.AlphaDropout`'s
    semantics (active in ``train()``, the identity in ``eval()``).

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> _ = torch.manual_seed(0)
    >>> y = fdt.AlphaDropout(0.2)(torch.randn(10000))
    >>> abs(float(y.mean())) < 0.05, abs(float(y.std()) - 1) < 0.05
    (True, True)
    """

    _fn = staticmethod(alpha_dropout)

    def __init__(self, p=0.5, *, generator=None):
        super().__init__()
        self.p = check_p(p)
        self.generator = _check_generator(generator)

    def forward(self, x):
        return self._fn(x, self.p, self.training, generator=self.generator)

    def extra_repr(self):
        return f"p={self.p}"


class FeatureAlphaDropout(AlphaDropout):
    """Alpha dropout of whole channels (:class:`torch.nn.FeatureAlphaDropout`).

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> fdt.FeatureAlphaDropout(0.5, generator=0)(torch.zeros(2, 3, 4)).shape
    torch.Size([2, 3, 4])
    """

    _fn = staticmethod(feature_alpha_dropout)


class DropPath(torch.nn.Module):
    """DropPath / stochastic depth per sample (timm's ``DropPath``), for the
    main path of residual blocks.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> layer = fdt.DropPath(0.5, generator=0)
    >>> layer(torch.ones(4, 2))[:, 0]
    tensor([2., 0., 2., 2.])
    >>> bool((layer.eval()(torch.ones(4, 2)) == 1).all())
    True
    """

    def __init__(self, drop_prob=0.0, scale_by_keep=True, *, generator=None):
        super().__init__()
        self.drop_prob = check_p(drop_prob)
        self.scale_by_keep = check_flag(scale_by_keep, "scale_by_keep")
        self.generator = _check_generator(generator)

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep,
                         generator=self.generator)

    def extra_repr(self):
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"


# ----------------------------------------------------------------------------
# Monte Carlo dropout (docs/spec.md §3 for the pass generators)
# ----------------------------------------------------------------------------

def _fastdrop_form(m):
    """fastdrop's functional form ``f(x, generator)`` of a ``torch.nn``
    dropout layer (its own ``p``, always in training), or None."""
    nn = torch.nn
    if isinstance(m, nn.FeatureAlphaDropout):
        return lambda x, g: feature_alpha_dropout(x, m.p, True, generator=g)
    if isinstance(m, nn.AlphaDropout):
        return lambda x, g: alpha_dropout(x, m.p, True, generator=g)
    for k, cls in ((1, nn.Dropout1d), (2, nn.Dropout2d), (3, nn.Dropout3d)):
        if isinstance(m, cls):
            layer = (Dropout1d, Dropout2d, Dropout3d)[k - 1](m.p)
            return lambda x, g, layer=layer: dropout(x, layer.p, True, generator=g,
                                                     noise_shape=layer._noise_shape(x))
    if isinstance(m, nn.Dropout):
        return lambda x, g: dropout(x, m.p, True, generator=g)
    return None


class mc_dropout:
    """Context manager for Monte Carlo dropout: inside it, every dropout
    layer of ``model`` is stochastic while every other module is in
    evaluation mode (batch norm frozen); on exit every module's mode is
    restored.

    Dropout layers are fastdrop's (:class:`Dropout`, ``Dropout1d/2d/3d``,
    :class:`AlphaDropout`, :class:`FeatureAlphaDropout`, :class:`DropPath`,
    :class:`GaussianDropout`; not :class:`GaussianNoise`, a training-time
    regulariser)
    and ``torch.nn``'s (``Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout``,
    ``FeatureAlphaDropout``), whose masks inside the context are fastdrop's,
    drawn from the context's generator: so runs are reproducible from
    ``rng`` on any machine and device.  :meth:`use` switches the generator
    (one per pass: :func:`mc_predict`).

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5),
    ...                           torch.nn.BatchNorm1d(8)).eval()
    >>> with fdt.mc_dropout(net, rng=0):
    ...     net[1].training, net[2].training
    (True, False)
    >>> net[1].training
    False
    """

    def __init__(self, model, rng=None):
        self.model = model
        self.generator = _mc.pass_generators(rng, 1)[0]
        self._modes = []       # (module, its training flag before)
        self._generators = []  # (fastdrop dropout layer, its generator before)
        self._patched = []     # torch.nn dropout layers with fastdrop's forward

    def use(self, generator):
        """Draw the masks of the next forward passes from ``generator``."""
        self.generator = generator
        for m, _ in self._generators:
            m.generator = generator

    def __enter__(self):
        self._modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        for m in self.model.modules():
            if isinstance(m, (Dropout, AlphaDropout, DropPath, GaussianDropout)):
                self._generators.append((m, m.generator))
            elif (form := _fastdrop_form(m)) is not None:
                m.forward = (lambda x, form=form: form(x, self.generator))
                self._patched.append(m)
            else:
                continue
            m.train()
        self.use(self.generator)
        return self

    def __exit__(self, *exc):
        for m in self._patched:
            del m.forward
        for m, g in self._generators:
            m.generator = g
        for m, training in self._modes:
            m.training = training
        self._modes, self._generators, self._patched = [], [], []
        return False


def mc_predict(model, x, samples, rng=None, *, return_samples=False, ddof=0):
    """Monte Carlo dropout prediction: ``samples`` stochastic passes of
    ``model(x)`` inside :class:`mc_dropout` (no autograd), pass ``t`` with
    masks from ``Generator(rng).spawn(samples)[t]``.

    Returns ``(mean, std)`` over the passes (float64 tensors on the output's
    device; ``std`` with ``ddof``), plus the stacked passes with
    ``return_samples``.  Only the running moments are kept otherwise.

    Examples
    --------
    >>> import torch
    >>> import fastdrop.torch as fdt
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
    ...                           torch.nn.Dropout(0.3), torch.nn.Linear(16, 1))
    >>> mean, std = fdt.mc_predict(net, torch.randn(5, 4), samples=20, rng=7)
    >>> mean.shape, bool((std > 0).all())
    (torch.Size([5, 1]), True)
    >>> m2, _ = fdt.mc_predict(net, torch.randn(5, 4) * 0 + 1, samples=3, rng=7)
    >>> m3, _ = fdt.mc_predict(net, torch.randn(5, 4) * 0 + 1, samples=3, rng=7)
    >>> bool(torch.equal(m2, m3))
    True
    """
    gens = _mc.pass_generators(rng, samples)
    moments = _mc.RunningMoments(lambda t: t.detach().to(torch.float64))
    kept = [] if return_samples else None
    with torch.no_grad(), mc_dropout(model) as ctx:
        for g in gens:
            ctx.use(g)
            y = model(x)
            moments.push(y)
            if kept is not None:
                kept.append(y)
    out = (moments.mean, moments.std(ddof))
    return out + (torch.stack(kept),) if kept is not None else out
