"""GPU array interop: describe, view, allocate and find the stream of device
arrays from CuPy, PyTorch, Numba or anything with ``__cuda_array_interface__``.

Nothing is copied: an array is turned into a :class:`View`, a 1-D Numba
device array spanning its memory (zero-copy, through the CUDA array
interface) plus the element offset of its first element and its element
strides.  The kernels address element ``idx`` as
``span[base + sum(idx[k] * strides[k])]``.

Under the Numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) "device"
pointers are host pointers: the same code builds the span as a NumPy view
of that memory wrapped in the simulator's array type, so the simulator
tests exercise this module too (including objects that only expose
``__cuda_array_interface__``).
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass

import numpy as np
from numba import cuda

from .. import _bfloat16
from .._validate import FLOAT_NAMES

__all__ = ["SIMULATOR", "Desc", "View", "describe", "view", "array_kind",
           "launch_stream", "empty_like", "empty", "device_context", "is_gpu_array"]


def _simulator():
    try:
        from numba.cuda.core import config
    except ImportError:  # pragma: no cover - older numba-cuda
        from numba import config
    return bool(getattr(config, "ENABLE_CUDASIM", False))


#: True when Numba runs CUDA kernels in its simulator.
SIMULATOR = _simulator()

if SIMULATOR:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _SimArray
else:
    _SimArray = None  # type: ignore[misc,assignment]  # no simulator: no such arrays


@dataclass
class Desc:
    """What fastdrop needs to know about a device array."""

    obj: object          # the array as given (torch tensors: detached)
    ptr: int             # address of element (0, ..., 0)
    shape: tuple
    strides: tuple       # bytes
    dtype: np.dtype
    readonly: bool
    stream: object       # the CAI "stream" entry (None when absent)

    @property
    def size(self):
        return math.prod(self.shape)

    def extent(self):
        """[lo, hi) byte addresses the array touches (lo == hi if empty)."""
        if self.size == 0:
            return self.ptr, self.ptr
        lo = hi = self.ptr
        for n, s in zip(self.shape, self.strides):
            if s >= 0:
                hi += (n - 1) * s
            else:
                lo += (n - 1) * s
        return lo, hi + self.dtype.itemsize


def _module_root(x):
    return type(x).__module__.split(".", 1)[0]


def array_kind(x):
    """``"torch"``, ``"cupy"``, ``"numba"`` or ``"cai"`` (anything else with
    ``__cuda_array_interface__``)."""
    root = _module_root(x)
    if root == "torch":
        return "torch"
    if root == "cupy":
        return "cupy"
    if _SimArray is not None and isinstance(x, _SimArray):
        return "numba"
    if not SIMULATOR:
        from numba.cuda.cudadrv.devicearray import DeviceNDArray

        if isinstance(x, DeviceNDArray):
            return "numba"
    return "cai"


from .._arrays import is_gpu_array  # noqa: E402 - one definition for every front end


def _c_strides(shape, itemsize):
    strides = []
    acc = itemsize
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


def describe(x, name="x"):
    """A :class:`Desc` of a GPU array; TypeError if ``x`` is not one.

    Torch tensors that require grad are read through ``x.detach()``
    (autograd is the adapter's business).  A torch bfloat16 tensor, which the
    CUDA array interface cannot express, is described through its int16
    view with the dtype ``ml_dtypes.bfloat16`` (which must be installed); a
    dtype the interface cannot express otherwise is a TypeError naming it.
    """
    if _SimArray is not None and isinstance(x, _SimArray):
        ai = x._ary.__array_interface__
        return Desc(x, ai["data"][0], tuple(x._ary.shape), tuple(x._ary.strides),
                    x._ary.dtype, bool(ai["data"][1]), None)
    not_gpu = TypeError(
        f"{name} must be a GPU array (CuPy, torch CUDA tensor, Numba device "
        f"array or another __cuda_array_interface__ object), got "
        f"{type(x).__module__}.{type(x).__name__}")
    if isinstance(x, np.ndarray):
        raise not_gpu
    obj = x
    if _module_root(x) == "torch" and getattr(x, "requires_grad", False):
        obj = x.detach()
    bf16 = _is_torch_bfloat16(obj)
    try:
        cai = (obj.view(sys.modules["torch"].int16) if bf16 else obj).__cuda_array_interface__
    except AttributeError:
        raise not_gpu from None
    except (TypeError, RuntimeError) as e:
        dt = getattr(obj, "dtype", "unknown")
        raise TypeError(
            f"{name} must have a floating dtype ({FLOAT_NAMES}), "
            f"got dtype {dt} ({e})") from None
    dtype = _bfloat16.dtype() if bf16 else np.dtype(cai["typestr"])
    shape = tuple(int(n) for n in cai["shape"])
    strides = cai.get("strides")
    strides = _c_strides(shape, dtype.itemsize) if strides is None else tuple(
        int(s) for s in strides)
    ptr, readonly = cai["data"]
    return Desc(obj, int(ptr or 0), shape, strides, dtype, bool(readonly),
                cai.get("stream"))


def _is_torch_bfloat16(x):
    torch = sys.modules.get("torch") if _module_root(x) == "torch" else None
    return torch is not None and getattr(x, "dtype", None) == torch.bfloat16


def _typestr(dtype):
    """The CAI type string of a span: bfloat16 (no CAI type of its own) is
    read and written as its uint16 bits, which is how the kernels take it."""
    return "<u2" if _bfloat16.is_bfloat16(dtype) else dtype.str


class _HostAI:
    """Holder exposing ``__array_interface__`` (simulator spans, overlap checks)."""

    def __init__(self, ptr, shape, strides, typestr, owner=None):
        self.__array_interface__ = {"data": (ptr, False), "shape": shape,
                                    "strides": strides, "typestr": typestr,
                                    "version": 3}
        self.owner = owner


@dataclass
class View:
    """A device array as the kernels see it: ``span[base + sum(idx * strides)]``."""

    span: object
    base: int
    strides: tuple  # elements
    shape: tuple
    dtype: np.dtype


def view(d, name="x"):
    """The :class:`View` of a :class:`Desc` (zero-copy).  Requires a
    non-empty array; strides must be multiples of the item size."""
    item = d.dtype.itemsize
    if any(s % item for s in d.strides):
        raise ValueError(f"{name} has strides {d.strides} that are not multiples of "
                         f"its item size {item}; fastdrop cannot address it")
    lo, hi = d.extent()
    n_span = (hi - lo) // item
    if SIMULATOR:
        host = np.asarray(_HostAI(lo, (n_span,), None, _typestr(d.dtype), d.obj))
        span = _SimArray(host)
    else:
        desc = {"shape": (n_span,), "strides": None, "typestr": _typestr(d.dtype),
                "data": (lo, False), "version": 3}
        span = cuda.from_cuda_array_interface(desc, owner=d.obj, sync=False)
    return View(span, (d.ptr - lo) // item, tuple(s // item for s in d.strides),
                d.shape, d.dtype)


def shares_memory(a, b):
    """Exact overlap test of two :class:`Desc` (addresses only, nothing is read)."""
    alo, ahi = a.extent()
    blo, bhi = b.extent()
    if alo >= bhi or blo >= ahi:
        return False
    ha = np.asarray(_HostAI(a.ptr, a.shape, a.strides, _typestr(a.dtype)))
    hb = np.asarray(_HostAI(b.ptr, b.shape, b.strides, _typestr(b.dtype)))
    return bool(np.shares_memory(ha, hb))


def launch_stream(x, d):
    """The stream to launch on: the producer's current stream.

    torch: ``torch.cuda.current_stream(device)``; CuPy:
    ``cupy.cuda.get_current_stream()``; a Numba array: its ``stream``;
    otherwise the CAI ``"stream"`` entry (1 = legacy default, 2 = per-thread
    default, else a stream pointer) or the default stream.  Always 0 under
    the simulator (it runs everything synchronously).
    """
    if SIMULATOR:
        return 0
    kind = array_kind(x)
    ptr = None
    if kind == "torch":
        import torch

        ptr = torch.cuda.current_stream(x.device).cuda_stream
    elif kind == "cupy":
        import cupy

        ptr = cupy.cuda.get_current_stream().ptr
    elif kind == "numba":
        return x.stream
    else:
        ptr = d.stream
        if ptr == 1:
            return cuda.legacy_default_stream()
        if ptr == 2:
            return cuda.per_thread_default_stream()
    if not ptr:
        return 0
    return cuda.external_stream(ptr)


def device_context(x):
    """A context manager making ``x``'s GPU Numba's current device."""
    if SIMULATOR:
        return contextlib.nullcontext()
    kind = array_kind(x)
    idx = None
    if kind == "torch":
        idx = x.device.index
    elif kind == "cupy":
        idx = x.device.id
    if idx is None or idx == cuda.get_current_device().id:
        return contextlib.nullcontext()
    return cuda.gpus[idx]


def empty_like(x, d, stream=0):
    """A new array of ``x``'s kind, shape and dtype (layout like ``x`` where
    the library preserves it)."""
    kind = array_kind(x)
    if kind == "torch":
        import torch

        return torch.empty_like(d.obj)
    if kind == "cupy":
        import cupy

        with x.device:
            return cupy.empty_like(x)
    return cuda.device_array(d.shape, dtype=d.dtype, stream=stream)


def empty(x, shape, dtype, stream=0):
    """A new C-contiguous array of ``x``'s kind (same device) for a mask."""
    kind = array_kind(x)
    dtype = np.dtype(dtype)
    if kind == "torch":
        import torch

        tdt = torch.bool if dtype == np.bool_ else torch.uint8
        return torch.empty(shape, dtype=tdt, device=x.device)
    if kind == "cupy":
        import cupy

        with x.device:
            return cupy.empty(shape, dtype=dtype)
    return cuda.device_array(shape, dtype=dtype, stream=stream)


def loaded(name):
    """Whether a module is already imported (to avoid importing torch/cupy)."""
    return name in sys.modules
