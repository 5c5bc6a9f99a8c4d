"""The front end for GPU arrays: :func:`fastdrop.dropout`,
:func:`fastdrop.apply_mask` and :func:`fastdrop.dropout_backward` route here
when ``x`` is a GPU array (anything with ``__cuda_array_interface__`` that
is not a NumPy array), and so do the Gaussian members of the family
(:func:`noise`, :func:`noise_backward`: docs/spec.md §11).

Validation is :mod:`fastdrop._validate`'s and the semantics are the plan's
(:mod:`fastdrop._plan`), exactly as for host arrays: every argument is
checked before anything is written or a Generator advances, and the plan is
run by :func:`fastdrop._dispatch.run` with the CUDA primitives
(:class:`CudaOps`).  GPU specifics:

- Inputs are used in place through the CUDA array interface (zero-copy);
  CuPy arrays, torch CUDA tensors and Numba device arrays are supported.
- Work is launched asynchronously on the producer's current stream (torch:
  ``torch.cuda.current_stream()``; CuPy: ``cupy.cuda.get_current_stream()``;
  otherwise the array's CAI ``"stream"``), so it is ordered with the
  caller's other work without a host synchronisation.
- Results and masks are arrays of the input's kind (torch in, torch out;
  CuPy in, CuPy out; anything else: Numba device arrays).  ``out=`` and
  stored masks must be GPU arrays too: nothing is copied between host and
  device silently.
- Torch tensors that require grad are read through ``detach()``; autograd
  belongs to :mod:`fastdrop.adapters`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _dispatch, _plan
from .._generator import check_rng
from .._validate import (MODES, bool_mask_geometry, check_float_dtype, check_mode,
                         check_no_internal_overlap, check_p, check_packed_shape,
                         check_return_mask, check_training, mask_geometry)
from . import _interop

__all__ = ["dropout", "apply_mask", "dropout_backward", "noise", "noise_backward",
           "run_plan", "CudaOps"]


def _select(backend):
    """The cuda kernel module for ``backend`` ("auto" or "cuda")."""
    if backend in ("auto", "cuda"):
        return _dispatch.get_backend("cuda")
    if isinstance(backend, str) and backend in _dispatch.BACKENDS:
        raise TypeError(
            f"backend {backend!r} runs on the CPU but x is a GPU array; use "
            "backend='cuda' or 'auto' (fastdrop never copies between host and "
            "device silently)")
    return _dispatch.get_backend(backend)  # ValueError for unknown names


def _prepare_out(x, dx, out, stream, name="out"):
    """Validate ``out`` against ``x`` (a :class:`_interop.Desc`) or allocate
    it (before the plan: a failing call moves no generator)."""
    if out is None:
        return _interop.empty_like(x, dx, stream)
    if out is x:
        check_no_internal_overlap(dx.shape, dx.strides, dx.dtype.itemsize, name)
        return out
    if not _interop.is_gpu_array(out):
        raise TypeError(
            f"{name} must be a GPU array like x, got {type(out).__module__}."
            f"{type(out).__name__}; fastdrop never copies between host and device "
            "silently")
    do = _interop.describe(out, name)
    if do.shape != dx.shape:
        raise ValueError(f"{name} has shape {do.shape}, expected {dx.shape}")
    if do.dtype != dx.dtype:
        raise TypeError(f"{name} has dtype {do.dtype}, expected {dx.dtype}")
    if do.readonly:
        raise ValueError(f"{name} is read-only")
    check_no_internal_overlap(do.shape, do.strides, do.dtype.itemsize, name)
    identical = do.ptr == dx.ptr and do.strides == dx.strides
    if not identical and _interop.shares_memory(dx, do):
        raise ValueError(
            f"{name} partly overlaps x; pass out=x for in-place, or a separate array")
    return out


@dataclass(frozen=True)
class StoredView:
    """A stored GPU mask as the kernels read it: a view and its element
    strides (a bool mask of any layout: its own strides, 0 on broadcast axes;
    packed bits: the logical mask strides)."""

    view: object
    ms: tuple


class CudaOps:
    """The primitives :func:`fastdrop._dispatch.run` needs, on one stream."""

    # A broadcast mask's decisions are made where they are used (no scratch
    # mask and second launch; not measured against drawing first on a GPU).
    draws_spans = False

    def __init__(self, kern, stream):
        self.kern, self.stream = kern, stream

    def copy(self, x, out):
        self.kern.copy(x, out, stream=self.stream)

    def zero(self, out):
        self.kern.zero(out, stream=self.stream)

    def scale(self, x, out, factor):
        self.kern.scale(x, out, factor, stream=self.stream)

    def fill_mask(self, keep_out, packed_out, n, value):
        self.kern.fill_mask(keep_out, packed_out, n, value, stream=self.stream)

    def forward(self, x, out, plan, keep_out, packed_out):
        self.kern.forward(x, out, plan.seed, plan.offset, plan.T, plan.scale, plan.mstrides,
                          keep_out=keep_out, packed_out=packed_out, shift=plan.shift,
                          fill=plan.fill, stream=self.stream)

    def mask(self, plan, keep_out, packed_out):
        self.kern.mask(plan.n, plan.seed, plan.offset, plan.T, keep_out=keep_out,
                       packed_out=packed_out, stream=self.stream)

    def noise(self, x, out, plan):
        self.kern.noise(x, out, plan.seed, plan.offset, plan.mstrides, plan.shift, plan.scale,
                        plan.noise, stream=self.stream)

    def apply(self, x, out, plan, kind, stored):
        if isinstance(stored, StoredView):
            if stored.view is not None:
                self.kern.apply_view(x, out, kind, stored.view, stored.ms, plan.scale,
                                     shift=plan.shift, fill=plan.fill, stream=self.stream)
        else:  # a mask this call just drew (flat)
            self.kern.apply_mask(x, out, plan.mstrides, plan.scale,
                                 keep=stored if kind == "bool" else None,
                                 packed=stored if kind == "packed" else None,
                                 shift=plan.shift, fill=plan.fill, stream=self.stream)


def _alloc_mask(x, kind, M, n, stream):
    import numpy as np

    keep = _interop.empty(x, M, np.bool_, stream) if kind == "bool" else None
    packed = _interop.empty(x, ((n + 7) // 8,), np.uint8, stream) if kind == "packed" else None
    return keep, packed


def _execute(plan, kern, x, out, stream):
    """Allocate the plan's mask outputs on ``x``'s device and run it."""
    keep, packed = _alloc_mask(x, plan.mask_out, plan.M, plan.n, stream)
    _dispatch.run(plan, CudaOps(kern, stream), x, out, keep, packed)  # kernels flatten
    if plan.mask_out is None:
        return out
    return out, (keep if plan.mask_out == "bool" else packed)


def _launch(x, dx, out, kern, make_plan):
    """On ``x``'s device and stream: check or allocate ``out``, then plan
    (``make_plan(fresh_out)``, the last step that may fail: a Generator
    advances there) and run.  Every entry point ends here."""
    with _interop.device_context(x):
        st = _interop.launch_stream(x, dx)
        fresh = out is None
        out = _prepare_out(x, dx, out, st)
        return _execute(make_plan(fresh), kern, x, out, st)


def run_plan(plan, x, out=None):
    """Run a plan on a GPU array (the plan-level entry for adapters, e.g.
    Dask chunks that are CuPy arrays)."""
    return _launch(x, _interop.describe(x), out, _dispatch.get_backend("cuda"),
                   lambda fresh: plan)


def dropout(x, p=0.5, *, training=True, mode="inverted", rng=None, noise_shape=None,
            out=None, return_mask=False, backend="auto", modes=MODES):
    """:func:`fastdrop.dropout` for a GPU array ``x``.

    Same parameters and results as :func:`fastdrop.dropout`; ``out`` and
    the returned arrays are GPU arrays of ``x``'s kind (see the module
    docstring).  The result is bit-identical to the CPU backends'.  The
    family's functions pass their own ``mode`` (one of ``modes``).
    """
    training = check_training(training)
    p = check_p(p)
    check_mode(mode, modes)
    kind = check_return_mask(return_mask)
    dx = _interop.describe(x)
    check_float_dtype(dx.dtype)
    geometry = mask_geometry(dx.shape, noise_shape)
    kern = _select(backend)
    check_rng(rng)
    return _launch(x, dx, out, kern, lambda fresh: _plan.plan_dropout(
        dx.shape, p, training=training, mode=mode, rng=rng, mask_out=kind, fresh_out=fresh,
        geometry=geometry))


def _stored_mask(x_shape, mask, noise_shape):
    """``(kind, (M, mstrides, n), StoredView)`` for a stored GPU bool or
    packed mask, checked as in ``_api._stored_mask``.  Bool masks are read
    in place with their own strides, so any layout works."""
    import numpy as np

    if not _interop.is_gpu_array(mask):
        raise TypeError(
            f"mask must be a GPU array like x, got {type(mask).__module__}."
            f"{type(mask).__name__}; fastdrop never copies a host mask to the GPU "
            "silently")
    dm = _interop.describe(mask, "mask")
    if dm.dtype == np.bool_:
        geometry = bool_mask_geometry(x_shape, dm.shape, noise_shape)
        if dm.size == 0:
            return "bool", geometry, StoredView(None, ())
        v = _interop.view(dm, "mask")
        M = geometry[0]
        ms = tuple(0 if M[k] == 1 else v.strides[k] for k in range(len(M)))
        return "bool", geometry, StoredView(v, ms)
    if dm.dtype == np.uint8:
        geometry = mask_geometry(x_shape, noise_shape)
        check_packed_shape(dm.dtype, len(dm.shape), dm.size, geometry[2])
        return "packed", geometry, StoredView(
            _interop.view(dm, "mask") if dm.size else None, geometry[1])
    raise TypeError(
        f"mask must be a bool array or a 1-D uint8 packed mask, got dtype {dm.dtype}")


def apply_mask(x, mask, p, *, mode="inverted", noise_shape=None, out=None, backend="auto"):
    """:func:`fastdrop.apply_mask` for a GPU array ``x`` and a GPU ``mask``
    (bool of any layout, broadcastable to ``x``, or packed bytes)."""
    p = check_p(p)
    check_mode(mode)
    dx = _interop.describe(x)
    check_float_dtype(dx.dtype)
    stored = _stored_mask(dx.shape, mask, noise_shape)
    kern = _select(backend)
    return _launch(x, dx, out, kern, lambda fresh: _plan.plan_apply(
        dx.shape, p, mode, stored, fresh_out=fresh))


def dropout_backward(grad, p, *, mask=None, state=None, training=True, mode="inverted",
                     noise_shape=None, out=None, backend="auto", modes=MODES):
    """:func:`fastdrop.dropout_backward` for a GPU ``grad``: the forward's
    stored GPU ``mask`` applied, or its mask regenerated from ``state``
    (nothing stored); every argument is checked in evaluation mode too."""
    training = check_training(training)
    p = check_p(p)
    check_mode(mode, modes)
    dg = _interop.describe(grad, "grad")
    check_float_dtype(dg.dtype, "grad")
    stored = _stored_mask(dg.shape, mask, noise_shape) if mask is not None else None
    kern = _select(backend)
    return _launch(grad, dg, out, kern, lambda fresh: _plan.plan_backward(
        dg.shape, p, training=training, mode=mode, state=state, stored=stored,
        noise_shape=noise_shape, fresh_out=fresh))


def noise(x, kind, param, *, training=True, rng=None, noise_shape=None, out=None,
          backend="auto"):
    """Gaussian dropout (``kind="gaussian_dropout"``, ``param = p`` in
    ``[0, 1)``) or Gaussian noise (``kind="gaussian_noise"``, ``param =
    stddev >= 0``) of a GPU array ``x`` (docs/spec.md §11), bit-identical to
    the CPU backends.  The caller (:mod:`fastdrop._api`) has checked
    ``kind`` and ``param``; everything else is checked here before ``out``
    is written or a Generator advances (in training it advances by the mask
    size, as for dropout; evaluation and ``param == 0`` give ``x``'s values)."""
    training = check_training(training)
    dx = _interop.describe(x)
    check_float_dtype(dx.dtype)
    geometry = mask_geometry(dx.shape, noise_shape)
    kern = _select(backend)
    check_rng(rng)
    return _launch(x, dx, out, kern, lambda fresh: _plan.plan_noise(
        dx.shape, kind, param, training=training, rng=rng, noise_shape=noise_shape,
        fresh_out=fresh, geometry=geometry))


def noise_backward(grad, kind, param, *, state=None, training=True, noise_shape=None,
                   out=None, backend="auto"):
    """The gradient of :func:`noise` for a GPU ``grad``: Gaussian dropout
    multiplies ``grad`` by the forward's noise, regenerated from ``state``
    (the forward's int seed, ``(seed, offset)`` or saved ``Generator.state``;
    nothing stored); Gaussian noise and evaluation give ``grad``'s values."""
    training = check_training(training)
    dg = _interop.describe(grad, "grad")
    check_float_dtype(dg.dtype, "grad")
    mask_geometry(dg.shape, noise_shape)  # checked before anything is allocated
    kern = _select(backend)
    if training and kind == "gaussian_dropout" and state is None:
        raise ValueError("the gradient of Gaussian dropout needs the state the forward's "
                         "noise was drawn from (state=)")
    return _launch(grad, dg, out, kern, lambda fresh: _plan.plan_noise_backward(
        dg.shape, kind, param, training=training, state=state, noise_shape=noise_shape,
        fresh_out=fresh))
