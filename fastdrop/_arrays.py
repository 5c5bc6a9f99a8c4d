"""What kind of array a caller passed, without importing any framework.

:func:`kind` sorts an argument into one of

``"numpy"``
    a NumPy array, or anything :func:`numpy.asarray` turns into one in memory
    (lists, scalars, objects with ``__array__``);
``"gpu"``
    a GPU array: anything with ``__cuda_array_interface__`` that is not a
    NumPy array (CuPy, torch CUDA tensors, Numba device arrays) and the Numba
    CUDA simulator's device arrays;
``"torch"``
    a torch tensor on the CPU (the NumPy API computes it through a zero-copy
    NumPy view and returns tensors);
``"dask"``
    a Dask array (never computed silently: :func:`fastdrop.dropout` hands it
    to :mod:`fastdrop.dask`, the other functions refuse it).

Frameworks are recognised only when the caller has already imported them
(``sys.modules``), so this module imports none.

Examples
--------
>>> import numpy as np
>>> from fastdrop import _arrays
>>> _arrays.kind(np.ones(3)), _arrays.kind([1.0, 2.0])
('numpy', 'numpy')
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["kind", "is_gpu_array", "torch_view", "wrap_torch", "via_torch"]


def is_gpu_array(x: object) -> bool:
    """A GPU array fastdrop accepts (never a NumPy array)."""
    if isinstance(x, np.ndarray):
        return False
    if type(x).__module__.startswith("numba.cuda.simulator"):
        return True
    try:
        return hasattr(x, "__cuda_array_interface__")
    except (TypeError, RuntimeError):  # torch CUDA tensors: requires_grad, bfloat16
        return True


def kind(x: object) -> str:
    """``"numpy"``, ``"gpu"``, ``"torch"`` or ``"dask"`` (see the module doc)."""
    if isinstance(x, np.ndarray):
        return "numpy"
    if is_gpu_array(x):
        return "gpu"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "gpu" if x.device.type == "cuda" else "torch"
    dask_array = sys.modules.get("dask.array")
    if dask_array is not None and isinstance(x, dask_array.Array):
        return "dask"
    return "numpy"


def torch_view(t: Any, name: str, *, writable: bool = False) -> NDArray[Any]:
    """Zero-copy NumPy view of a CPU tensor argument (TypeError otherwise).

    Inputs are read through ``detach()``; an output (``writable``) must not
    require grad (writing into it would bypass autograd).
    """
    torch = sys.modules["torch"]
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch tensor on the CPU like x, got {type(t).__module__}."
            f"{type(t).__name__}")
    if t.device.type != "cpu":
        raise TypeError(
            f"{name} is a tensor on {t.device}; the NumPy API takes CPU tensors (CUDA "
            "tensors go to the GPU path) and never moves data between devices silently")
    if t.dtype == torch.bfloat16:
        raise TypeError(
            f"{name} has dtype torch.bfloat16, which the NumPy API cannot hold; use "
            "fastdrop.torch.dropout for torch tensors")
    if writable and t.requires_grad:
        raise ValueError(f"{name} requires grad; fastdrop cannot write into it")
    return t.detach().resolve_conj().resolve_neg().numpy()


def wrap_torch(result: Any, views: list[tuple[Any, Any]]) -> Any:
    """Turn the NumPy results of a call back into tensors: an array that is
    the view of a tensor argument (``views``: ``(array, tensor)`` pairs)
    becomes that tensor, any other array a tensor sharing its memory."""
    torch = sys.modules["torch"]

    def one(a: Any) -> Any:
        for arr, t in views:
            if a is arr:
                return t
        if any(s < 0 for s in a.strides):
            a = np.ascontiguousarray(a)
        return torch.from_numpy(a)

    if isinstance(result, tuple):
        return tuple(one(a) for a in result)
    return one(result)


def via_torch(call: Callable[[Any, Any, Any], Any], x: Any, out: Any, mask: Any = None,
              name: str = "x") -> Any:
    """Run ``call(x_view, mask_view, out_view)`` (a NumPy-API call) on the
    zero-copy NumPy views of CPU tensors and return tensors: ``out`` itself
    when given, otherwise tensors sharing the results' memory."""
    xv = torch_view(x, name)
    mv = torch_view(mask, "mask") if mask is not None and kind(mask) == "torch" else mask
    ov = None if out is None else torch_view(out, "out", writable=True)
    return wrap_torch(call(xv, mv, ov), [(ov, out)])
