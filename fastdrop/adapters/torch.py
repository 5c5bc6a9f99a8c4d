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
float16, float32 and float64.

Seeds, offsets and the op schema
--------------------------------
A mask is fixed by ``(seed, offset)``, two uint64 values (docs/spec.md §1).
Operator schemas carry int64, so the ops take both reinterpreted as signed
64-bit integers (two's complement: values ``>= 2**63`` are passed as
``value - 2**64`` and mapped back inside the kernel wrapper).  The
``generator=`` argument of :func:`dropout` and the modules decides where
``(seed, offset)`` come from:

``None`` (default)
    A fresh seed (offset 0) drawn from **torch's** default CPU generator
    with one ``random_()`` call (:func:`draw_seed`).  So
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

The eager fast path
-------------------
Outside compilation and tracing, plain dropout in training (``0 < p < 1``,
modes ``"inverted"``/``"classic"``, no noise shape or stored mask) of a CPU
tensor whose memory is one flat run (contiguous, or a stride-0 broadcast such
as the gradient of a sum) skips the custom op: the seed is drawn with one
``random_()`` of a per-thread int64 scalar, and the compiled kernel runs on
the tensors' memory, through one ``autograd.Function`` when a gradient is
needed and directly otherwise.  Same ``(seed, offset)``, same kernel, same
bits as the op path.  The function's ``jvp`` is the same select (forward-mode
AD, ``torch.func.jvp``); under ``torch.func.vmap`` every batch element gets
the same mask (the seed is drawn once: vmap's ``randomness="same"``; its
default ``"error"`` refuses the draw of ``generator=None``).

Compilation, tracing, scripting
-------------------------------
``torch.compile``: the ops are traceable (fake implementations).  With
``generator=None`` the seed is drawn inside the graph by the op
``fastdrop::draw_seed`` (tagged ``nondeterministic_seeded``; at run time it
draws from torch's CPU generator exactly as eager does, in graph order), so
``fullgraph=True`` and ``torch.export`` work and compiled results (values
and gradients) equal eager ones from the same RNG state.  A fixed ``int``
seed is a constant.  Other generators (a ``torch.Generator``, a fastdrop or
NumPy Generator) are drawn eagerly outside the graph (one graph break per
call).  ``torch.jit.trace`` records the same ``draw_seed`` op, so a traced
model draws a new mask per call; tracing with a stateful generator other
than ``None`` raises (its seed would be frozen).  ``torch.jit.script`` of the
layers works in-process (their forward calls Python; see
:mod:`fastdrop.adapters._torchscript`).

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
import threading
import warnings
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.autograd.forward_ad as _fwad

from .. import _api, _dispatch, _family, _mc, _plan
from ._torchscript import Module as _Module
from .._generator import Generator, check_seed, resolve_rng
from ..reference import threshold
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
_DTYPES = (torch.float16, torch.float32, torch.float64, torch.bfloat16)


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
        raise TypeError(
            f"{name} must be a float16, float32, float64 or bfloat16 tensor, got dtype "
            f"{x.dtype}")


def _np(t):
    """Zero-copy NumPy view of a CPU tensor (any strides); a bfloat16 tensor
    as an ``ml_dtypes.bfloat16`` array (NumPy has no bfloat16 of its own)."""
    t = t.detach().resolve_conj().resolve_neg()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_ml_bfloat16())
    return t.numpy()


def _ml_bfloat16():
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError(
            "this call on a bfloat16 tensor goes through NumPy, which needs the optional "
            "ml_dtypes package: pip install 'fastdrop-kernels[bfloat16]' (plain dropout of "
            "a contiguous CPU tensor does not)") from None
    return ml_dtypes.bfloat16


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


_tls = threading.local()  # per-thread int64 scalar the seeds are drawn into


def draw_seed(generator=None):
    """A seed in ``[0, 2**63)`` drawn from torch's RNG (what ``generator=None``
    uses).

    One ``random_()`` of an int64 scalar from ``generator`` (torch's default
    CPU generator when ``None``; a per-thread buffer on the CPU, about 1 us),
    so the seed follows ``torch.manual_seed`` and is restored by activation
    checkpointing.

    Parameters
    ----------
    generator : torch.Generator, optional

    Returns
    -------
    int

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
    if generator is None or generator.device.type == "cpu":
        buf = getattr(_tls, "seed_buf", None)
        if buf is None:
            buf = _tls.seed_buf = torch.empty((), dtype=torch.int64)
        return buf.random_(generator=generator).item()
    return torch.empty((), dtype=torch.int64, device=generator.device).random_(
        generator=generator).item()


def _draw_seed_offset(generator, n):
    """:func:`_draw` run eagerly: under ``torch.compile`` through
    ``torch.compiler.disable``, made on first use (making it at import would
    import ``torch._dynamo``, half the import time of torch itself)."""
    if not torch.compiler.is_compiling():
        return _draw(generator, n)
    fn = _DISABLED.get("draw")
    if fn is None:
        fn = _DISABLED["draw"] = torch.compiler.disable(_draw)
    return fn(generator, n)


_DISABLED: dict = {}


def _draw(generator, n):
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
    out = _empty_like(x)
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


def _grad_select(grad, args):
    """The gradient op on ``grad``; through an autograd function with a jvp
    under forward-mode AD and torch.func (forward-over-reverse)."""
    if _is_functorch(grad):
        return _OpGradF.apply(grad, *args)
    if _fwad._current_level >= 0:
        return _OpGrad.apply(grad, *args)
    return torch.ops.fastdrop.dropout_grad(grad, *args)


def _dropout_backward(ctx, grad):
    # Same mask (regenerated from seed/offset), the mode's gradient select.
    return (_grad_select(grad, ctx.args),) + (None,) * 6


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
    out = _empty_like(grad)
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
    return (_grad_select(grad, ctx.args),) + (None,) * 6


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
    out = _empty_like(x)
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
    out = _empty_like(x)
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
    out = _empty_like(x)
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
# the seed inside a compiled graph
# ----------------------------------------------------------------------------
# Under torch.compile a generator=None (or CPU torch.Generator-free) call draws
# its seed with an op of the graph, fastdrop::draw_seed, tagged
# nondeterministic_seeded (never merged with another draw, never constant-
# folded): at run time it takes the seed from torch's CPU generator exactly as
# eager does (draw_seed), in graph order, so fullgraph=True and torch.export
# work and the compiled results equal eager ones from the same RNG state.

@torch.library.custom_op("fastdrop::draw_seed", mutates_args=("token",),
                         tags=(torch.Tag.nondeterministic_seeded,))
def _draw_seed_op(token: torch.Tensor) -> torch.Tensor:
    """A seed from torch's default CPU generator as a 0-d int64 tensor (the
    uint64 seed's bits).  ``token`` is a fresh empty tensor, declared mutated
    (there is nothing in it to write): that keeps every draw a node of its
    own, never merged with another or folded into a constant (TorchScript's
    constant propagation folded an op without side effects)."""
    return torch.tensor(_to_i64(draw_seed(None)), dtype=torch.int64)


@_draw_seed_op.register_fake
def _(token):
    return torch.empty((), dtype=torch.int64)


@torch.library.custom_op("fastdrop::dropout_seeded", mutates_args=())
def _dropout_seeded_op(x: torch.Tensor, p: float, seed: torch.Tensor,
                       noise_shape: Optional[List[int]], mode: str) -> torch.Tensor:
    """``fastdrop::dropout`` in training with the seed a 0-d int64 tensor
    (offset 0): the compiled form, whose seed comes from draw_seed."""
    return torch.ops.fastdrop.dropout(x, p, int(seed.item()), 0, noise_shape, mode, True)


@_dropout_seeded_op.register_fake
def _(x, p, seed, noise_shape, mode):
    return torch.empty_like(x)


def _seeded_setup(ctx, inputs, output):
    x, p, seed, noise_shape, mode = inputs
    ctx.save_for_backward(seed)
    ctx.args = (p, noise_shape, mode)


def _seeded_backward(ctx, grad):
    # the plain modes' gradient is the same select (scale, no shift, +0.0)
    (seed,) = ctx.saved_tensors
    p, noise_shape, mode = ctx.args
    return torch.ops.fastdrop.dropout_seeded(grad, p, seed, noise_shape, mode), None, None, \
        None, None


_dropout_seeded_op.register_autograd(_seeded_backward, setup_context=_seeded_setup)

#: modes whose gradient is the forward's select (dropout_seeded's backward)
_SEEDED_MODES = ("inverted", "classic", "unscaled")


# ----------------------------------------------------------------------------
# the eager fast path
# ----------------------------------------------------------------------------
# Outside torch.compile, plain dropout of a CPU tensor whose memory is one
# flat run (contiguous, or a stride-0 broadcast such as the gradient of a
# sum) skips the custom op: one autograd.Function (none at all when no
# gradient is needed) straight to the compiled kernel on the tensors' raw
# memory.  Same (seed, offset), same kernel, same bits as the op path.

try:
    from .._cython import _kernels as _ck
except ImportError:  # no compiled extension: the op path does everything
    _ck = None

_FAST_CODES = {}
if _ck is not None:
    _FAST_CODES = {getattr(torch, name): code for name, code in _ck.DTYPE_CODES.items()
                   if hasattr(torch, name)}


#: elements from which a result may reach 4 MiB (float64: 512 Ki; the C
#: side, fd_advise_output, checks the bytes)
_ADVISE_MIN = 1 << 19


def _empty_like(x):
    """``torch.empty_like(x)`` for a kernel's result: a large CPU
    result (4 MiB on) gets transparent huge pages asked for before it is
    written (:func:`fastdrop._cython._kernels.advise_output`; NumPy does the
    same for its arrays).  torch's allocator gives it fresh memory, faulted
    in 4 KiB pages otherwise: 16 Mi float32 elements of ``dropout`` took
    29-33 ms with them against 10-11 ms (2-core AMD EPYC VM, 2 threads)."""
    out = torch.empty_like(x)
    if _ck is not None and out.numel() >= _ADVISE_MIN and out.device.type == "cpu":
        _ck.advise_output(out.data_ptr(), out.numel() * out.element_size())
    return out


def _flat_stride(t):
    """Byte stride of ``t`` walked as one C-order run, or None: contiguous
    (the element size) or every element the same memory (0)."""
    if t.is_contiguous():
        return t.element_size()
    if not any(t.stride()):
        return 0
    return None


def _flat_select(t, seed, offset, T, scale, out=None):
    """The kernel on ``t`` (a flat run, see :func:`_flat_stride`) into a new
    contiguous tensor, or into ``out`` (``t`` itself: in place).  A negative
    view (``torch._neg_view``) is resolved first: its memory holds -t."""
    if t.is_neg():
        t = t.resolve_neg()
    xs = es = t.element_size()  # out has t's dtype
    fresh = out is None
    if t.is_contiguous():
        if fresh:
            out = torch.empty_like(t)  # contiguous too (0.8 us; torch.empty: 1.8)
    else:
        xs = None if any(t.stride()) else 0  # every element the same memory, or copy
        if xs is None:
            t = t.contiguous()
            xs = es
        if fresh:
            out = torch.empty_like(t, memory_format=torch.contiguous_format)
    n = t.numel()
    if n == 0:  # nothing drawn (the offset may be the stream's end, 2**64)
        return out
    if fresh and n >= _ADVISE_MIN:  # _empty_like's hint, inline (a small call: 0.4 us)
        _ck.advise_output(out.data_ptr(), n * es)
    _ck.flat_forward(t.data_ptr(), xs, out.data_ptr(), es, n,
                     _FAST_CODES[t.dtype], seed, offset, T, scale)
    return out


def _select_by_values(g, seed, offset, T, scale):
    """The select as torch operations on a tensor the kernel cannot read
    (a legacy-vmap batched gradient): the mask's values (``scale`` kept,
    ``+0.0`` dropped) from the kernel, then ``where(kept, g * scale, +0.0)``,
    the kernel's numbers."""
    n = g.shape.numel() if hasattr(g.shape, "numel") else math.prod(g.shape)
    m = _flat_select(torch.ones(n, dtype=g.dtype), seed, offset, T, scale).reshape(g.shape)
    return torch.where(m != 0, g * m, torch.zeros((), dtype=g.dtype))


class _FastDropout(torch.autograd.Function):
    """Plain dropout's select as an autograd function: backward and the
    forward-mode derivative are the same select (dropout is linear in x for
    a fixed mask), the mask regenerated from ``(seed, offset)``.  Written in
    the old style (``ctx`` in ``forward``): ``apply`` of a function with
    ``setup_context`` cost 13 us against 4.5 us (measured, 1000 float32,
    torch 2.13, AMD EPYC); :class:`_FastDropoutF` is that style, for
    torch.func."""

    @staticmethod
    def forward(ctx, x, seed, offset, T, scale):
        ctx.args = (seed, offset, T, scale)
        return _flat_select(x, seed, offset, T, scale)

    @staticmethod
    def backward(ctx, grad):
        if _is_wrapped(grad):  # torch.func's vmap over backward
            g = _FastDropoutF.apply(grad, *ctx.args)
        elif _is_legacy_batched(grad):
            g = _select_by_values(grad, *ctx.args)  # gradcheck's batched gradients
        elif _grad_enabled() or _fwad._current_level >= 0:
            g = _FastDropout.apply(grad, *ctx.args)  # create_graph / forward-over-reverse
        else:
            g = _flat_select(grad, *ctx.args)
        return g, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, *_):
        return _flat_select(x_t, *ctx.args)


class _FastDropoutF(torch.autograd.Function):
    """:class:`_FastDropout` for torch.func's transforms (which need
    ``setup_context``): their wrapped tensors take this one."""

    @staticmethod
    def forward(x, seed, offset, T, scale):
        return _flat_select(x, seed, offset, T, scale)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.args = inputs[1:]

    @staticmethod
    def backward(ctx, grad):
        return _FastDropoutF.apply(grad, *ctx.args), None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, *_):
        return _FastDropoutF.apply(x_t, *ctx.args)

    @staticmethod
    def vmap(info, in_dims, x, *args):
        # (seed, offset) are arguments, drawn before the function runs: every
        # batch element gets the same mask (what vmap's randomness="same"
        # means; with generator=None, vmap's "error" and "different" modes
        # refuse the seed's draw itself).  jacrev's vmap over backward is this.
        bdim = in_dims[0]
        if bdim is None:
            return _FastDropoutF.apply(x, *args), None
        xb = x.movedim(bdim, 0)
        return torch.stack([_FastDropoutF.apply(xb[i], *args)
                            for i in range(xb.shape[0])]), 0


class _OpDropout(torch.autograd.Function):
    """The op path with a forward-mode derivative (forward AD): any mode and
    noise shape; the tangent goes through the gradient op (the select's
    linear part, docs/spec.md §6)."""

    @staticmethod
    def forward(ctx, x, p, seed, offset, ns, mode):
        ctx.args = (p, seed, offset, ns, mode, True)
        return torch.ops.fastdrop.dropout(x, p, seed, offset, ns, mode, True)

    @staticmethod
    def backward(ctx, grad):
        return (_grad_select(grad, ctx.args),) + (None,) * 5

    @staticmethod
    def jvp(ctx, x_t, *_):
        return _OpGrad.apply(x_t, *ctx.args)


class _OpGrad(torch.autograd.Function):
    """The gradient op with derivatives (it is linear: they are itself)."""

    @staticmethod
    def forward(ctx, g, *args):
        ctx.args = args
        return torch.ops.fastdrop.dropout_grad(g, *args)

    @staticmethod
    def backward(ctx, grad):
        return (_grad_select(grad, ctx.args),) + (None,) * 6

    @staticmethod
    def jvp(ctx, g_t, *_):
        return _OpGrad.apply(g_t, *ctx.args)


class _OpDropoutF(torch.autograd.Function):
    """:class:`_OpDropout` for torch.func's transforms."""

    @staticmethod
    def forward(x, p, seed, offset, ns, mode):
        return torch.ops.fastdrop.dropout(x, p, seed, offset, ns, mode, True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.args = tuple(inputs[1:]) + (True,)

    @staticmethod
    def backward(ctx, grad):
        return (_OpGradF.apply(grad, *ctx.args),) + (None,) * 5

    @staticmethod
    def jvp(ctx, x_t, *_):
        return _OpGradF.apply(x_t, *ctx.args)

    @staticmethod
    def vmap(info, in_dims, x, *args):  # the same mask for every batch element
        if in_dims[0] is None:
            return _OpDropoutF.apply(x, *args), None
        xb = x.movedim(in_dims[0], 0)
        return torch.stack([_OpDropoutF.apply(xb[i], *args) for i in range(len(xb))]), 0


class _OpGradF(torch.autograd.Function):
    """The gradient op under torch.func (linear: its derivatives are itself)."""

    @staticmethod
    def forward(g, *args):
        return torch.ops.fastdrop.dropout_grad(g, *args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.args = inputs[1:]

    @staticmethod
    def backward(ctx, grad):
        return (_OpGradF.apply(grad, *ctx.args),) + (None,) * 6

    @staticmethod
    def jvp(ctx, g_t, *_):
        return _OpGradF.apply(g_t, *ctx.args)

    @staticmethod
    def vmap(info, in_dims, g, *args):
        if in_dims[0] is None:
            return _OpGradF.apply(g, *args), None
        gb = g.movedim(in_dims[0], 0)
        return torch.stack([_OpGradF.apply(gb[i], *args) for i in range(len(gb))]), 0


def _fast_seed_offset(generator, n):
    """(seed, offset) as uint64 for the eager path."""
    if generator is None or type(generator) is torch.Generator:
        return draw_seed(generator), 0
    if type(generator) is int:
        return generator, 0
    return resolve_rng(generator, n)


#: (p, mode) -> (threshold, scale) of the fast path's recent calls
_TS_CACHE: dict = {}


def _fast(x, p, mode, generator, inplace):
    """Plain dropout in training with ``0 < p < 1`` on the eager fast path,
    or None when it does not apply (then nothing was drawn)."""
    if (_ck is None or not x.is_cpu or x.dtype not in _FAST_CODES
            or torch.compiler.is_compiling() or torch._C._is_tracing()):
        return None
    wrapped = _is_wrapped(x)
    if not wrapped and (_flat_stride(x) is None or (inplace and x.is_neg())):
        return None
    if isinstance(generator, torch.Generator) and generator.device.type != "cpu":
        return None
    if generator is None:  # draw_seed inlined: the common call
        buf = getattr(_tls, "seed_buf", None)
        if buf is None:
            buf = _tls.seed_buf = torch.empty((), dtype=torch.int64)
        seed, offset = buf.random_().item(), 0
    else:
        seed, offset = _fast_seed_offset(generator, x.numel())
    key = (p, mode)
    ts = _TS_CACHE.get(key)
    if ts is None:
        if len(_TS_CACHE) > 64:
            _TS_CACHE.clear()
        ts = _TS_CACHE[key] = (threshold(p), _plan.scale_for(p, mode))
    T, scale = ts
    # a dual tensor of forward-mode AD has no requires_grad: inside a dual
    # level the autograd function always runs (its jvp is the same select)
    needs_grad = ((x.requires_grad and _grad_enabled()) or _fwad._current_level >= 0
                  or wrapped)
    if inplace:
        if needs_grad:  # recorded by autograd (and refused for a leaf, as torch does)
            fn = _FastDropoutF if wrapped else _FastDropout
            return x.copy_(fn.apply(x, seed, offset, T, scale))
        if x.stride() and _flat_stride(x) == 0 and x.numel() > 1:
            raise RuntimeError(
                "inplace=True on a tensor whose elements share memory (an expanded "
                "view): use inplace=False")
        _flat_select(x, seed, offset, T, scale, out=x)
        torch.autograd.graph.increment_version(x)
        return x
    if wrapped:
        return _FastDropoutF.apply(x, seed, offset, T, scale)
    if needs_grad:
        return _FastDropout.apply(x, seed, offset, T, scale)
    return _flat_select(x, seed, offset, T, scale)


def _is_functorch(x):
    """Whether ``x`` is a functorch wrapper (torch.func's vmap, grad, jvp):
    those go through the autograd function, whose forward sees plain
    tensors."""
    return _is_wrapped(x)


# bound once: the fast path's per-call checks (an attribute chain costs 0.1 us)
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
_is_legacy_batched = torch._C._functorch.is_legacy_batchedtensor
_grad_enabled = torch.is_grad_enabled


# ----------------------------------------------------------------------------
# functional API
# ----------------------------------------------------------------------------

def dropout(input, p=0.5, training=True, inplace=False, *, generator=None, noise_shape=None,
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
    x = input
    if (type(x) is torch.Tensor and type(p) is float and 0.0 < p < 1.0 and training is True
            and noise_shape is None and save_mask is False and type(inplace) is bool
            and (mode == "inverted" or mode == "classic")):
        y = _fast(x, p, mode, generator if generator is None else _check_generator(generator),
                  inplace)
        if y is not None:
            return y
    # every argument is checked in evaluation mode too (a bad one must not
    # hide until training starts)
    _check_tensor(x, "input")
    training = check_training(training)
    p = check_p(p)
    check_mode(mode)
    inplace = check_flag(inplace, "inplace")
    save_mask = check_flag(save_mask, "save_mask")
    ns = _resolve_noise_shape(x.shape, noise_shape)
    generator = _check_generator(generator)
    return _run(x, p, training, mode, ns, generator, save_mask, inplace)


def _run(x, p, training, mode, ns, generator, save_mask=False, inplace=False):
    """The checked call of any functional form: ``mode`` one of
    :data:`fastdrop._plan.MODES`, ``ns`` the resolved mask shape or None;
    ``inplace``: the result is written into ``x`` (autograd records it, and
    refuses a leaf that requires grad, as for torch's in-place dropout)."""
    if not _plan.draws(training):  # evaluation: nothing drawn from the generator
        if _plan.rule_of(p, False, mode) == "copy":
            return x  # the identity returns x itself, as torch does
        y = torch.ops.fastdrop.dropout(x, p, 0, 0, None, mode, False)
        return x.copy_(y) if inplace else y
    tracing = torch.jit.is_tracing()
    if tracing and generator is not None and not isinstance(generator, int):
        raise RuntimeError(
            "torch.jit.trace would freeze the seed drawn from this generator (the same "
            "mask on every call of the traced model): use generator=None, whose seed is "
            "drawn inside the traced graph, or an int seed (a fixed mask by design)")
    if (generator is None and mode in _SEEDED_MODES and not save_mask
            and x.device.type == "cpu" and (tracing or torch.compiler.is_compiling())):
        # in the graph: no graph break.  Its input is a fresh empty tensor: an
        # aten.empty node is never merged with another, so two draws of one
        # graph are never merged either (AOTAutograd's CSE ignores custom ops'
        # nondeterministic_seeded tag)
        seed_t = torch.ops.fastdrop.draw_seed(torch.empty(0))
        if _plan.rule_of(p, True, mode) == "copy":
            return x
        y = torch.ops.fastdrop.dropout_seeded(x, p, seed_t, ns, mode)
        return x.copy_(y) if inplace else y
    seed, offset = _seed_offset(generator, _mask_size(x, ns))
    if _plan.rule_of(p, True, mode) == "copy":
        return x  # p == 0: x itself (the generator has advanced), as torch does
    if save_mask:
        y = torch.ops.fastdrop.dropout_packed(x, p, seed, offset, ns, mode)[0]
    elif not torch.compiler.is_compiling() and (_fwad._current_level >= 0 or _is_functorch(x)):
        # forward-mode AD and torch.func: the op has no jvp; the function's is
        # the gradient select (every mode is affine in x for a fixed mask)
        fn = _OpDropoutF if _is_functorch(x) else _OpDropout
        y = fn.apply(x, p, seed, offset, ns, mode)
    else:
        y = torch.ops.fastdrop.dropout(x, p, seed, offset, ns, mode, True)
    return x.copy_(y) if inplace else y


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


class Dropout(_Module):
    """Dropout layer with fastdrop's mask; a drop-in for :class:`torch.nn.Dropout`.

    Active in ``train()`` mode, the identity (``mode="inverted"``) in
    ``eval()`` mode.

    Parameters
    ----------
    p : float, default 0.5
        Drop probability.
    inplace : bool, default False
        Write the result into the input, as ``torch.nn.Dropout(inplace=True)``
        does (refused, as torch refuses it, for a leaf that requires grad).
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

    def __init__(self, p=0.5, inplace=False, *, noise_shape=None, mode="inverted",
                 generator=None, save_mask=False):
        super().__init__()
        self.p = check_p(p)
        self.inplace = check_flag(inplace, "inplace")
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

    def _forward(self, x, training):
        return dropout(x, self.p, training, self.inplace, generator=self.generator,
                       noise_shape=self._noise_shape(x), mode=self.mode,
                       save_mask=self.save_mask)

    def extra_repr(self):
        s = f"p={self.p}, inplace={self.inplace}"
        if self.noise_shape is not None:
            s += f", noise_shape={self.noise_shape!r}"
        if self.mode != "inverted":
            s += f", mode={self.mode!r}"
        return s


class _DropoutNd(Dropout):
    _nspatial = 0

    def __init__(self, p=0.5, inplace=False, *, mode="inverted", generator=None,
                 save_mask=False):
        super().__init__(p, inplace, mode=mode, generator=generator, save_mask=save_mask)

    def _noise_shape(self, x):
        """torch's conventions (``torch.nn.functional.dropout1d/2d/3d``): the
        same accepted ranks, warnings and errors, the same channel axis."""
        _check_tensor(x)
        k, d = self._nspatial, x.dim()
        name = f"dropout{k}d"
        if k == 1 and d not in (2, 3):
            raise RuntimeError(
                f"dropout1d: Expected 2D or 3D input, but received a {d}D input. Note that "
                "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial "
                "dimension, a channel dimension, and an optional batch dimension (i.e. 2D or "
                "3D inputs).")
        if k > 1 and d not in (k + 1, k + 2):
            warnings.warn(
                f"{name}: Received a {d}-D input to {name}, which is deprecated and will "
                "result in an error in a future release. To retain the behavior and silence "
                f"this warning, please use dropout instead. Note that {name} exists to "
                f"provide channel-wise dropout on inputs with {k} spatial dimensions, a "
                f"channel dimension, and an optional batch dimension (i.e. {k + 1}D or "
                f"{k + 2}D inputs).", stacklevel=4)
        if k == 2 and d == 3:
            warnings.warn(
                "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise "
                "1D dropout behavior is desired - input is interpreted as shape (N, C, L), "
                "where C is the channel dim. This behavior will change in a future release to "
                "interpret the input as one without a batch dimension, i.e. shape (C, H, W). "
                "To maintain the 1D channel-wise dropout behavior, please switch to using "
                "dropout1d instead.", stacklevel=4)
        # batched: one decision per (N, C); torch's unbatched forms (Dropout1d's
        # 2-D, Dropout3d's non-5-D input) take one per index of the first axis
        batched = d == 3 if k == 1 else (d == 5 if k == 3 else True)
        if batched:
            if d < 2:
                raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
            return tuple(x.shape[:2]) + (1,) * (d - 2)
        if d < 1:
            raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
        return (x.shape[0],) + (1,) * (d - 1)


class Dropout1d(_DropoutNd):
    """Channel dropout for ``(N, C, L)`` or ``(C, L)`` inputs: mask shape
    ``(N, C, 1)`` (``(C, 1)``), like :class:`torch.nn.Dropout1d`; other ranks
    are torch's ``RuntimeError``.

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
    """Channel dropout for ``(N, C, H, W)`` inputs: mask shape ``(N, C, 1,
    1)``, like :class:`torch.nn.Dropout2d`, whose conventions it follows: a
    3-D input is taken as ``(N, C, L)`` with torch's warning, other ranks
    warn and go on.

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
    """Channel dropout for ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)``
    inputs: mask shape ``(N, C, 1, 1, 1)`` (``(C, 1, 1, 1)``), like
    :class:`torch.nn.Dropout3d` (other ranks warn and go on, as there).

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

def alpha_dropout(input, p=0.5, training=False, inplace=False, *, generator=None,
                  noise_shape=None):
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
    inplace = check_flag(inplace, "inplace")
    return _run(input, p, training, "alpha", ns, _check_generator(generator), inplace=inplace)


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False, *, generator=None):
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
    inplace = check_flag(inplace, "inplace")
    return _run(input, p, training, "alpha", ns, _check_generator(generator), inplace=inplace)


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
    if _plan.noise_rule_of(param, True) == "copy":
        return x  # no noise: x itself (the generator has advanced)
    if not torch.compiler.is_compiling() and (_fwad._current_level >= 0 or _is_functorch(x)):
        fn = _GaussianF if _is_functorch(x) else _Gaussian
        return fn.apply(x, kind, param, seed, offset, ns)
    return torch.ops.fastdrop.gaussian(x, kind, param, seed, offset, ns)


class _Gaussian(torch.autograd.Function):
    """The Gaussian op with a forward-mode derivative: ``x * t`` has the
    tangent ``x_t * t`` (the op on the tangent), ``x + t`` the tangent
    itself."""

    @staticmethod
    def forward(ctx, x, kind, param, seed, offset, ns):
        ctx.args = (kind, param, seed, offset, ns)
        return torch.ops.fastdrop.gaussian(x, kind, param, seed, offset, ns)

    @staticmethod
    def backward(ctx, g):
        g = g.clone() if ctx.args[0] == "gaussian_noise" else _Gaussian.apply(g, *ctx.args)
        return (g,) + (None,) * 5

    @staticmethod
    def jvp(ctx, x_t, *_):
        if ctx.args[0] == "gaussian_noise":
            return x_t.clone()
        return _Gaussian.apply(x_t, *ctx.args)


class _GaussianF(torch.autograd.Function):
    """:class:`_Gaussian` for torch.func's transforms."""

    @staticmethod
    def forward(x, kind, param, seed, offset, ns):
        return torch.ops.fastdrop.gaussian(x, kind, param, seed, offset, ns)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.args = inputs[1:]

    @staticmethod
    def backward(ctx, g):
        g = g.clone() if ctx.args[0] == "gaussian_noise" else _GaussianF.apply(g, *ctx.args)
        return (g,) + (None,) * 5

    @staticmethod
    def jvp(ctx, x_t, *_):
        if ctx.args[0] == "gaussian_noise":
            return x_t.clone()
        return _GaussianF.apply(x_t, *ctx.args)

    @staticmethod
    def vmap(info, in_dims, x, *args):  # the same noise for every batch element
        if in_dims[0] is None:
            return _GaussianF.apply(x, *args), None
        xb = x.movedim(in_dims[0], 0)
        return torch.stack([_GaussianF.apply(xb[i], *args) for i in range(len(xb))]), 0


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


class GaussianDropout(_Module):
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

    def _forward(self, x, training):
        return gaussian_dropout(x, self.p, training, generator=self.generator)

    def extra_repr(self):
        return f"p={self.p}"


class GaussianNoise(_Module):
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

    def _forward(self, x, training):
        return gaussian_noise(x, self.stddev, training, generator=self.generator)

    def extra_repr(self):
        return f"stddev={self.stddev}"


class AlphaDropout(_Module):
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

    def __init__(self, p=0.5, inplace=False, *, generator=None):
        super().__init__()
        self.p = check_p(p)
        self.inplace = check_flag(inplace, "inplace")
        self.generator = _check_generator(generator)

    def _forward(self, x, training):
        return self._fn(x, self.p, training, self.inplace, generator=self.generator)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


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


class DropPath(_Module):
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

    def _forward(self, x, training):
        return drop_path(x, self.drop_prob, training, self.scale_by_keep,
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
