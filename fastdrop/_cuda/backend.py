"""The ``cuda`` backend: the kernel interface of :mod:`fastdrop._dispatch`
on GPU arrays.

``forward``, ``mask``, ``apply_mask`` and ``noise`` take device arrays (Numba device
arrays, CuPy arrays, torch CUDA tensors or any ``__cuda_array_interface__``
object; zero-copy) where the CPU backends take NumPy arrays, with the same
meaning of every other argument.  They launch asynchronously on the stream
of the producer of ``x`` (see :func:`fastdrop._cuda._interop.launch_stream`)
unless ``stream=`` is given; ``launch=(grid, block)`` overrides the launch
configuration (results never depend on it).

Importing this module imports nothing from Numba; kernels are compiled on
first use per dtype and memoised (:mod:`fastdrop._cuda.kernels`).

Examples
--------
>>> from fastdrop._cuda import backend
>>> backend.DTYPES
('float16', 'float32', 'float64', 'bfloat16')
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DTYPES", "available", "forward", "mask", "apply_mask", "noise",
           "copy", "scale", "zero", "fill_mask"]

#: Floating dtypes the CUDA kernels support (bfloat16: ``ml_dtypes.bfloat16``
#: arrays and torch bfloat16 tensors, read and written as their uint16 bits).
DTYPES = ("float16", "float32", "float64", "bfloat16")

#: Default threads per block.
BLOCK = 256
#: Resident blocks aimed for per multiprocessor (grid-stride loops beyond).
BLOCKS_PER_SM = 8


def available():
    """Whether the CUDA backend can run here: ``(ok, reason)``.

    True with a CUDA GPU and driver that Numba can use, or under the Numba
    CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).
    """
    try:
        from numba import cuda
    except Exception as e:  # ImportError, or a broken CUDA installation
        return False, f"numba.cuda cannot be imported: {e}"
    try:
        if cuda.is_available():
            return True, ""
        err = cuda.cuda_error() if hasattr(cuda, "cuda_error") else None
    except Exception as e:
        err = e
    return False, (f"no usable CUDA GPU: {' '.join(str(err).split())}" if err
            else "no usable CUDA GPU")


# ----------------------------------------------------------------------------
# launch helpers
# ----------------------------------------------------------------------------

_sm_count = None
_dummies: dict = {}


def _multiprocessors():
    global _sm_count
    if _sm_count is None:
        from numba import cuda

        try:
            _sm_count = int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
        except Exception:
            _sm_count = 2
    return _sm_count


def _block(launch):
    """Threads per block: ``launch[1]`` or :data:`BLOCK`."""
    if launch is None:
        return BLOCK
    block = int(launch[1])
    if block < 1:
        raise ValueError(f"block size must be positive, got {block}")
    return block


def _grid(launch, need):
    """Blocks: ``launch[0]``, else ``need`` capped at a few waves of resident
    blocks (the kernels loop over the rest)."""
    if launch is not None:
        return max(1, int(launch[0]))
    return max(1, min(int(need), _multiprocessors() * BLOCKS_PER_SM))


def _dummy(dtype):
    """A 1-element device array of ``dtype`` for unused kernel arguments."""
    dtype = np.dtype(dtype)
    arr = _dummies.get(dtype)
    if arr is None:
        from numba import cuda

        arr = _dummies[dtype] = cuda.device_array(1, dtype=dtype)
    return arr


def _keys(seed, offset, T):
    seed = int(seed)
    T = int(T)
    return (np.uint64(offset), np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32),
            np.uint32(T >> 16), np.uint32(T & 0xFFFF))


def _ct(dtype, value):
    return np.float64(value) if np.dtype(dtype) == np.float64 else np.float32(value)


def _collapse(shape, strides_list):
    """Drop size-1 axes and merge axes that are contiguous for every stride
    list at once; the result has at least one axis."""
    axes = [k for k, n in enumerate(shape) if n != 1]
    if not axes:
        return (1,), [(0,) for _ in strides_list]
    shp = [shape[axes[0]]]
    sts = [[s[axes[0]]] for s in strides_list]
    for k in axes[1:]:
        n = shape[k]
        if all(st[-1] == s[k] * n for st, s in zip(sts, strides_list)):
            shp[-1] *= n
            for st, s in zip(sts, strides_list):
                st[-1] = s[k]
        else:
            shp.append(n)
            for st, s in zip(sts, strides_list):
                st.append(s[k])
    return tuple(shp), [tuple(st) for st in sts]


def _views(x, out, name_out="out"):
    from . import _interop

    dx = _interop.describe(x)
    do = dx if out is x else _interop.describe(out, name_out)
    return dx, do


def _operands(x, out, stream, ref="x"):
    """``(dx, st, vx, vo)`` for an elementwise launch over ``x`` and
    ``out`` (descriptions, stream, kernel views), or None when empty.
    ``ref`` names the array whose producer's stream is used by default."""
    from . import _interop

    dx, do = _views(x, out)
    if do.size == 0:
        return None
    st = _stream(x, dx, stream) if ref == "x" else _stream(out, do, stream)
    vx = _interop.view(dx)
    vo = vx if out is x else _interop.view(do, "out")
    return dx, do, st, vx, vo


def _stream(x, dx, stream):
    if stream is not None:
        return stream
    from . import _interop

    return _interop.launch_stream(x, dx)


def _flat(arr, name):
    """View of a 1-D mask output/input (any element stride)."""
    from . import _interop

    v = _interop.view(_interop.describe(arr, name), name)
    if len(v.shape) != 1:
        # a C-contiguous N-d bool mask: address it as flat
        d = _interop.describe(arr, name)
        c = _interop._c_strides(d.shape, d.dtype.itemsize)
        if d.strides != c:
            raise ValueError(f"{name} must be C-contiguous")
        v.strides = (1,)
        v.shape = (math.prod(d.shape),)
    return v


# ----------------------------------------------------------------------------
# the kernel interface
# ----------------------------------------------------------------------------

def forward(x, out, seed, offset, T, scale, mstrides, keep_out=None, packed_out=None,
            *, shift=-0.0, fill=0.0, stream=None, launch=None):
    """Dropout forward (the affine select) with the mask generated on the fly
    (see :mod:`fastdrop._dispatch`), on device arrays.

    Parameters
    ----------
    x, out : device arrays
        Same shape and float dtype, any strides; ``out`` may be ``x``.
    seed, offset, T, scale, mstrides
        As in :mod:`fastdrop._dispatch`.
    keep_out, packed_out : device arrays, optional
        C-contiguous bool (mask size) / uint8 (``ceil(n / 8)``) outputs, only
        when the mask is not broadcast.
    shift, fill : float
        A kept element is ``x * scale + shift`` (two roundings, never an
        FMA), a dropped one ``fill`` (docs/spec.md §4); plain dropout is
        ``shift=-0.0``, ``fill=+0.0``.
    stream : numba stream or 0, optional
        Default: the producer's stream of ``x``.
    launch : (grid, block), optional
        Launch configuration override (tests); results do not depend on it.
    """
    from . import _interop, kernels

    ops = _operands(x, out, stream)
    if ops is None:
        return
    dx, do, st, vx, vo = ops
    n = dx.size
    off, k0, k1, th, tl = _keys(seed, offset, T)
    s, b, c = _ct(dx.dtype, scale), _ct(dx.dtype, shift), _ct(dx.dtype, fill)
    shape, (xs, os_, ms) = _collapse(dx.shape, [vx.strides, vo.strides, tuple(mstrides)])
    vk = _flat(keep_out, "keep_out") if keep_out is not None else None
    vp = _flat(packed_out, "packed_out") if packed_out is not None else None
    flat_masks = all(v is None or (v.base == 0 and v.strides == (1,)) for v in (vk, vp))
    name = dx.dtype.name
    keep_arr = vk.span if vk is not None else _dummy(np.bool_)
    packed_arr = vp.span if vp is not None else _dummy(np.uint8)
    if (len(shape) == 1 and xs == (1,) and os_ == (1,) and ms == (1,)
            and vx.base == 0 and vo.base == 0 and flat_masks):
        kern = kernels.tile_kernel(name, True, vk is not None, vp is not None,
                                   aligned=int(offset) % 8 == 0)
        block = _check_block(_block(launch))
        grid = _grid(launch, -(-n // (8 * block)))
        kern[grid, block, st](vx.span, vo.span, keep_arr, packed_arr, np.int64(n),
                              off, k0, k1, th, tl, s, b, c)
        return
    if not flat_masks:
        raise ValueError("keep_out and packed_out must be C-contiguous")
    kern = kernels.nd_kernel(name, kernels.PHILOX, vk is not None, vp is not None)
    block = _block(launch)
    grid = _grid(launch, -(-n // (8 * block)))
    kern[grid, block, st](vx.span, np.int64(vx.base), xs, vo.span, np.int64(vo.base), os_,
                          shape, ms, np.int64(n), _dummy(np.uint8), np.int64(0),
                          np.int64(0), off, k0, k1, th, tl, s, b, c, keep_arr, packed_arr)


def _check_block(block):
    from .kernels import MAX_BLOCK

    if block > MAX_BLOCK:
        raise ValueError(f"block size must be at most {MAX_BLOCK}, got {block}")
    return block


def mask(n, seed, offset, T, keep_out=None, packed_out=None, *, stream=None, launch=None):
    """Keep bits of stream positions ``offset .. offset + n - 1`` into a
    device bool array and/or packed bytes (``np.packbits`` little-endian
    layout, tail bits zero)."""
    from . import kernels

    n = int(n)
    if n == 0 or (keep_out is None and packed_out is None):
        return
    vk = _flat(keep_out, "keep_out") if keep_out is not None else None
    vp = _flat(packed_out, "packed_out") if packed_out is not None else None
    if not all(v is None or (v.base == 0 and v.strides == (1,)) for v in (vk, vp)):
        raise ValueError("keep_out and packed_out must be C-contiguous")
    if stream is None:
        from . import _interop

        ref = keep_out if keep_out is not None else packed_out
        stream = _interop.launch_stream(ref, _interop.describe(ref))
    off, k0, k1, th, tl = _keys(seed, offset, T)
    kern = kernels.tile_kernel("float32", False, vk is not None, vp is not None,
                               aligned=int(offset) % 8 == 0)
    block = _check_block(_block(launch))
    grid = _grid(launch, -(-n // (8 * block)))
    d = _dummy(np.float32)
    kern[grid, block, stream](d, d, vk.span if vk is not None else _dummy(np.bool_),
                              vp.span if vp is not None else _dummy(np.uint8),
                              np.int64(n), off, k0, k1, th, tl, np.float32(1.0),
                              np.float32(-0.0), np.float32(0.0))


def apply_mask(x, out, mstrides, scale, keep=None, packed=None, *, shift=-0.0, fill=0.0,
               stream=None, launch=None):
    """The affine select with a stored mask (exactly one of ``keep``/``packed``),
    on device arrays; ``keep`` is a C-contiguous bool array over the mask's
    logical indices, ``packed`` 1-D uint8 little-endian bits.  Kept elements
    are ``x * scale + shift``, dropped ones ``fill`` (as in :func:`forward`)."""
    if (keep is None) == (packed is None):
        raise ValueError("give exactly one of keep and packed")
    if keep is not None:
        v = _flat(keep, "keep")
        ms = tuple(int(m) * v.strides[0] for m in mstrides)
        apply_view(x, out, "bool", v, ms, scale, shift=shift, fill=fill, stream=stream,
                   launch=launch)
    else:
        v = _flat(packed, "packed")
        apply_view(x, out, "packed", v, tuple(mstrides), scale, shift=shift, fill=fill,
                   stream=stream, launch=launch)


def apply_view(x, out, kind, mview, ms, scale, *, shift=-0.0, fill=0.0, stream=None,
               launch=None):
    """The affine select (kept ``x * scale + shift``, dropped ``fill``)
    reading ``keep(idx)`` from a mask view.

    ``kind="bool"``: ``mview.span[mview.base + sum(idx * ms)]`` (``ms`` are
    element strides of a bool array, 0 on broadcast axes: any layout works).
    ``kind="packed"``: bit ``i & 7`` of byte ``i >> 3`` of a 1-D uint8 view,
    ``i = sum(idx * ms)`` the logical mask index.
    """
    from . import _interop, kernels

    ops = _operands(x, out, stream)
    if ops is None:
        return
    dx, do, st, vx, vo = ops
    n = dx.size
    s, b, c = _ct(dx.dtype, scale), _ct(dx.dtype, shift), _ct(dx.dtype, fill)
    shape, (xs, os_, ms) = _collapse(dx.shape, [vx.strides, vo.strides, tuple(ms)])
    source = kernels.BOOL if kind == "bool" else kernels.PACKED
    mstep = mview.strides[0] if kind == "packed" else 0
    kern = kernels.nd_kernel(dx.dtype.name, source, False, False)
    block = _block(launch)
    grid = _grid(launch, -(-n // (8 * block)))
    kern[grid, block, st](vx.span, np.int64(vx.base), xs, vo.span, np.int64(vo.base), os_,
                          shape, ms, np.int64(n), mview.span, np.int64(mview.base),
                          np.int64(mstep), np.uint64(0), np.uint64(0), np.uint64(0),
                          np.uint32(0), np.uint32(0), s, b, c, _dummy(np.bool_),
                          _dummy(np.uint8))


def noise(x, out, seed, offset, mstrides, a, b, op, *, stream=None, launch=None):
    """Gaussian dropout and noise (docs/spec.md §11) on device arrays: for
    every element, with mask index ``i = sum(idx * mstrides)``, ``t = b * z
    + a`` in float64 (``z`` the normal variate of stream position ``offset +
    i``, docs/spec.md §10), then ``out = x * t`` (``op="mul"``) or ``x + t``
    (``op="add"``) in the compute type, rounded to the dtype.  Bit-identical
    to :func:`fastdrop.reference.noise`.

    Parameters
    ----------
    x, out : device arrays
        Same shape and float dtype, any strides; ``out`` may be ``x``.
    seed, offset, mstrides
        As in :func:`forward` (``offset + n <= 2**64``).
    a, b : float
        The noise is ``t = b * z + a`` (float64: Gaussian dropout ``a = 1``,
        ``b = sqrt(p / (1 - p))``; Gaussian noise ``a = -0.0``, ``b = stddev``).
    op : {"mul", "add"}
    stream, launch
        As in :func:`forward`.
    """
    from . import kernels

    if op not in kernels.NOISE_OPS:
        raise ValueError(f"op must be one of {kernels.NOISE_OPS}, got {op!r}")
    ops = _operands(x, out, stream)
    if ops is None:
        return
    dx, do, st, vx, vo = ops
    n = dx.size
    offset, seed = int(offset), int(seed)
    off, k0, k1, _, _ = _keys(seed, offset, 0)
    fa, fb = np.float64(a), np.float64(b)
    shape, (xs, os_, ms) = _collapse(dx.shape, [vx.strides, vo.strides, tuple(mstrides)])
    block = _block(launch)
    if len(shape) == 1 and ms == (1,):  # mask index == logical index: a block per thread
        kern = kernels.noise_kernel(dx.dtype.name, op, True)
        nblocks = ((offset + n - 1) >> 2) - (offset >> 2) + 1
        grid = _grid(launch, -(-nblocks // block))
        kern[grid, block, st](vx.span, np.int64(vx.base), np.int64(xs[0]), vo.span,
                              np.int64(vo.base), np.int64(os_[0]), np.int64(n), off, k0, k1,
                              fa, fb)
        return
    kern = kernels.noise_kernel(dx.dtype.name, op, False)
    grid = _grid(launch, -(-n // (8 * block)))
    kern[grid, block, st](vx.span, np.int64(vx.base), xs, vo.span, np.int64(vo.base), os_,
                          shape, ms, np.int64(n), off, k0, k1, fa, fb)


def _fill(x, out, op, factor, stream, launch):
    from . import _interop, kernels

    ops = _operands(x, out, stream, ref="out")
    if ops is None:
        return
    dx, do, st, vx, vo = ops
    n = do.size
    shape, (xs, os_) = _collapse(do.shape, [vx.strides, vo.strides])
    kern = kernels.fill_kernel(do.dtype.name, op)
    block = _block(launch)
    grid = _grid(launch, -(-n // block))
    kern[grid, block, st](vx.span, np.int64(vx.base), xs, vo.span, np.int64(vo.base), os_,
                          shape, np.int64(n), _ct(do.dtype, factor))


def copy(x, out, *, stream=None, launch=None):
    """``out[...] = x`` for device arrays of one shape and dtype."""
    from .kernels import COPY

    if out is not x:
        _fill(x, out, COPY, 1.0, stream, launch)


def scale(x, out, factor, *, stream=None, launch=None):
    """``out = x * factor`` in the compute type (classic-mode evaluation)."""
    from .kernels import SCALE

    _fill(x, out, SCALE, factor, stream, launch)


def zero(out, *, stream=None, launch=None):
    """``out[...] = +0.0``."""
    from .kernels import ZERO

    _fill(out, out, ZERO, 0.0, stream, launch)


def fill_mask(keep_out, packed_out, n, value, *, stream=None, launch=None):
    """All-kept (``value=True``) or all-dropped masks: bools, and packed bytes
    with the tail byte's unused bits zero."""
    from . import _interop, kernels

    n = int(n)
    if n == 0 or (keep_out is None and packed_out is None):
        return
    vk = _flat(keep_out, "keep_out") if keep_out is not None else None
    vp = _flat(packed_out, "packed_out") if packed_out is not None else None
    if stream is None:
        ref = keep_out if keep_out is not None else packed_out
        stream = _interop.launch_stream(ref, _interop.describe(ref))
    nkeep = n if vk is not None else 0
    nbytes = (n + 7) // 8 if vp is not None else 0
    kern = kernels.mask_fill_kernel()
    block = _block(launch)
    grid = _grid(launch, -(-max(nkeep, nbytes) // block))
    kern[grid, block, stream](vk.span if vk is not None else _dummy(np.bool_),
                              np.int64(nkeep),
                              vp.span if vp is not None else _dummy(np.uint8),
                              np.int64(nbytes), np.int64(n), bool(value))
