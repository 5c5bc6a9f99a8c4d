"""The front end for GPU arrays: :func:`fastdrop.dropout`,
:func:`fastdrop.apply_mask` and :func:`fastdrop.dropout_backward` route here
when ``x`` is a GPU array (anything with ``__cuda_array_interface__`` that
is not a NumPy array).

Semantics, validation and error messages mirror :mod:`fastdrop._api`
(every argument is checked before anything is written or a Generator
advances; ``p == 0`` copies, ``p == 1`` zeros, evaluation is the identity or
``x * (1 - p)``).  GPU specifics:

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

from .. import _dispatch
from .._api import scale_for
from .._generator import check_rng, resolve_rng, resolve_state
from .._validate import (bool_mask_geometry, check_float_dtype, check_mode,
                         check_no_internal_overlap, check_p, check_packed_shape,
                         check_return_mask, check_training, mask_geometry)
from ..reference import threshold
from . import _interop

__all__ = ["dropout", "apply_mask", "dropout_backward"]


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
    """Validate ``out`` against ``x`` (a :class:`_interop.Desc`) or allocate."""
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


def _alloc_mask(x, kind, M, n, stream):
    import numpy as np

    keep = _interop.empty(x, M, np.bool_, stream) if kind == "bool" else None
    packed = _interop.empty(x, ((n + 7) // 8,), np.uint8, stream) if kind == "packed" else None
    return keep, packed


def _run(kern, x, out, p, seed, offset, T, scale, M, shape, mstrides, n, keep, packed,
         stream):
    """Training-mode masked scaling with a generated mask (as ``_api._run``)."""
    if n == 0:
        return  # x is empty too; nothing is drawn (an offset of 2**64 is fine)
    if p == 0.0:
        kern.copy(x, out, stream=stream)
        kern.fill_mask(keep, packed, n, True, stream=stream)
    elif p == 1.0:
        kern.zero(out, stream=stream)
        kern.fill_mask(keep, packed, n, False, stream=stream)
    elif keep is None and packed is None:
        kern.forward(x, out, seed, offset, T, scale, mstrides, stream=stream)
    elif M == shape:
        kern.forward(x, out, seed, offset, T, scale, mstrides, keep_out=keep,
                     packed_out=packed, stream=stream)
    else:
        kern.mask(n, seed, offset, T, keep_out=keep, packed_out=packed, stream=stream)
        kern.apply_mask(x, out, mstrides, scale, keep=keep, packed=packed, stream=stream)


def _eval(kern, x, out, p, mode, stream):
    if mode == "classic" and p == 1.0:
        kern.zero(out, stream=stream)
    elif mode == "classic" and p != 0.0:
        kern.scale(x, out, 1.0 - p, stream=stream)
    else:
        kern.copy(x, out, stream=stream)


def dropout(x, p=0.5, *, training=True, mode="inverted", rng=None, noise_shape=None,
            out=None, return_mask=False, backend="auto"):
    """:func:`fastdrop.dropout` for a GPU array ``x``.

    Same parameters and results as :func:`fastdrop.dropout`; ``out`` and
    the returned arrays are GPU arrays of ``x``'s kind (see the module
    docstring).  The result is bit-identical to the CPU backends'.
    """
    training = check_training(training)
    p = check_p(p)
    check_mode(mode)
    kind = check_return_mask(return_mask)
    dx = _interop.describe(x)
    check_float_dtype(dx.dtype)
    M, mstrides, n = mask_geometry(dx.shape, noise_shape)
    kern = _select(backend)
    check_rng(rng)
    with _interop.device_context(x):
        st = _interop.launch_stream(x, dx)
        out = _prepare_out(x, dx, out, st)
        if not training:
            _eval(kern, x, out, p, mode, st)
            if kind is None:
                return out
            keep, packed = _alloc_mask(x, kind, M, n, st)
            kern.fill_mask(keep, packed, n, True, stream=st)
            return out, (keep if kind == "bool" else packed)
        seed, offset = resolve_rng(rng, n)
        keep, packed = _alloc_mask(x, kind, M, n, st)
        _run(kern, x, out, p, seed, offset, threshold(p), scale_for(p, mode),
             M, dx.shape, mstrides, n, keep, packed, st)
    if kind is None:
        return out
    return out, (keep if kind == "bool" else packed)


def _stored_mask(x_shape, mask, noise_shape):
    """(kind, ms, view) for a stored GPU bool or packed mask, checked as in
    ``_api._stored_mask``.  For bool masks ``ms`` are the mask's own element
    strides (0 on broadcast axes), so any layout is read in place."""
    import numpy as np

    if not _interop.is_gpu_array(mask):
        raise TypeError(
            f"mask must be a GPU array like x, got {type(mask).__module__}."
            f"{type(mask).__name__}; fastdrop never copies a host mask to the GPU "
            "silently")
    dm = _interop.describe(mask, "mask")
    if dm.dtype == np.bool_:
        M, _, _ = bool_mask_geometry(x_shape, dm.shape, noise_shape)
        if dm.size == 0:
            return "bool", None, None
        v = _interop.view(dm, "mask")
        ms = tuple(0 if M[k] == 1 else v.strides[k] for k in range(len(M)))
        return "bool", ms, v
    if dm.dtype == np.uint8:
        M, mstrides, n = mask_geometry(x_shape, noise_shape)
        check_packed_shape(dm.dtype, len(dm.shape), dm.size, n)
        return "packed", mstrides, (_interop.view(dm, "mask") if dm.size else None)
    raise TypeError(
        f"mask must be a bool array or a 1-D uint8 packed mask, got dtype {dm.dtype}")


def apply_mask(x, mask, p, *, mode="inverted", noise_shape=None, out=None, backend="auto"):
    """:func:`fastdrop.apply_mask` for a GPU array ``x`` and a GPU ``mask``
    (bool of any layout, broadcastable to ``x``, or packed bytes)."""
    p = check_p(p)
    check_mode(mode)
    dx = _interop.describe(x)
    check_float_dtype(dx.dtype)
    mkind, ms, mview = _stored_mask(dx.shape, mask, noise_shape)
    kern = _select(backend)
    with _interop.device_context(x):
        st = _interop.launch_stream(x, dx)
        out = _prepare_out(x, dx, out, st)
        _apply_stored(kern, x, out, dx, p, mode, mkind, mview, ms, st)
    return out


def _apply_stored(kern, x, out, dx, p, mode, mkind, mview, ms, stream):
    """Masked scaling with a stored GPU mask (as ``_api._apply_stored``)."""
    if p == 1.0 and mode == "inverted":
        kern.zero(out, stream=stream)
    elif dx.size:
        kern.apply_view(x, out, mkind, mview, ms, scale_for(p, mode), stream=stream)


def dropout_backward(grad, p, *, mask=None, state=None, training=True, mode="inverted",
                     noise_shape=None, out=None, backend="auto"):
    """:func:`fastdrop.dropout_backward` for a GPU ``grad``: the forward's
    stored GPU ``mask`` applied, or its mask regenerated from ``state``
    (nothing stored); every argument is checked in evaluation mode too."""
    training = check_training(training)
    p = check_p(p)
    check_mode(mode)
    dg = _interop.describe(grad, "grad")
    check_float_dtype(dg.dtype, "grad")
    if mask is not None:
        mkind, ms, mview = _stored_mask(dg.shape, mask, noise_shape)
    M, mstrides, n = mask_geometry(dg.shape, None if mask is not None else noise_shape)
    kern = _select(backend)
    if state is not None:
        seed, offset = resolve_state(state, n)
    with _interop.device_context(grad):
        st = _interop.launch_stream(grad, dg)
        out = _prepare_out(grad, dg, out, st)
        if not training:
            _eval(kern, grad, out, p, mode, st)
        elif mask is not None:
            _apply_stored(kern, grad, out, dg, p, mode, mkind, mview, ms, st)
        else:
            _run(kern, grad, out, p, seed, offset, threshold(p), scale_for(p, mode),
                 M, dg.shape, mstrides, n, None, None, st)
    return out
