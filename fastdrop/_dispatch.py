"""Backend registry: name -> module, availability, dtypes; the choice for "auto".

The kernel interface
--------------------
A backend is a module with three functions.  The front end (``_api``) has
already validated every argument and allocated every output; kernels only
compute.  Arrays are NumPy arrays on the CPU (device arrays for ``cuda``).

``forward(x, out, seed, offset, T, scale, mstrides, keep_out=None, packed_out=None)``
    ``x`` and ``out`` have the same shape and floating dtype and any strides
    (``out`` may be ``x`` itself, for in-place; they never partly overlap).
    For every multi-index ``idx`` of ``x`` the mask index is
    ``i = sum(idx[k] * mstrides[k])`` (``mstrides`` are the C-order element
    strides of the mask shape, 0 on broadcast axes) and the element is
    ``out[idx] = x[idx] * scale`` if ``keep(offset + i)`` else ``+0.0``, where
    ``keep`` is the v1 decision for ``seed`` and threshold ``T`` (an int in
    ``[0, 2**32]``).  ``scale`` is a Python float (float64) that the kernel
    casts once to the compute type (float64 for float64, float32 otherwise).
    ``keep_out`` (C-contiguous bool, mask size) and ``packed_out``
    (C-contiguous uint8, ``ceil(n / 8)`` bytes, tail bits zero) are given only
    when the mask is not broadcast (``mstrides`` are x's C strides); then the
    kernel also writes the keep bits there.
``mask(n, seed, offset, T, keep_out=None, packed_out=None)``
    Keep bits of stream positions ``offset .. offset + n - 1`` into either or
    both outputs.
``apply_mask(x, out, mstrides, scale, keep=None, packed=None)``
    As ``forward`` but ``keep(i)`` is read from a stored C-contiguous bool
    array or from little-endian packed bits (exactly one is given).

A backend module may also define ``available() -> (bool, reason)`` and
``DTYPES`` (the dtype names it supports; default float16/32/64).  One that
sets ``ACCEPTS_FRESH_OUT = True`` gets ``fresh_out=True`` in ``forward`` when
the front end has just allocated ``out`` (untouched pages: non-temporal
stores, which pay off on a caller's buffer, would then cost extra traffic).
"""

from __future__ import annotations

import importlib

__all__ = ["BACKENDS", "get_backends", "get_backend", "choose_cpu_backend"]

#: name -> module path, in order of preference for ``backend="auto"`` on the CPU.
BACKENDS = {
    "cython": "fastdrop._cython.backend",
    "numba": "fastdrop._numba.backend",
    "reference": "fastdrop.reference",
    "cuda": "fastdrop._cuda.backend",
}

_DEFAULT_DTYPES = ("float16", "float32", "float64")
_cache: dict[str, tuple] = {}


def _load(name):
    """(module or None, reason) for a backend name, memoised."""
    if name not in _cache:
        try:
            mod = importlib.import_module(BACKENDS[name])
        except ImportError as e:
            _cache[name] = (None, f"import failed: {e}")
        else:
            ok, why = (True, "")
            if hasattr(mod, "available"):
                ok, why = mod.available()
            _cache[name] = (mod if ok else None, why)
    return _cache[name]


def get_backends():
    """Backends known to fastdrop and whether each can run here.

    Returns
    -------
    dict
        ``name -> {"available": bool, "reason": str, "dtypes": tuple}``;
        ``reason`` says why an unavailable backend is missing.

    Examples
    --------
    >>> import fastdrop
    >>> fastdrop.get_backends()["reference"]["available"]
    True
    """
    info = {}
    for name in BACKENDS:
        mod, why = _load(name)
        dtypes = getattr(mod, "DTYPES", _DEFAULT_DTYPES) if mod is not None else ()
        info[name] = {"available": mod is not None, "reason": why, "dtypes": tuple(dtypes)}
    return info


def get_backend(name):
    """The kernel module of a backend; ``ValueError`` for an unknown name,
    ``RuntimeError`` (with the reason) for one that cannot run here."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string ('auto' or one of {sorted(BACKENDS)}), "
                        f"got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}; choose 'auto' or one of {sorted(BACKENDS)}")
    mod, why = _load(name)
    if mod is None:
        raise RuntimeError(f"backend {name!r} is not available: {why}")
    return mod


def choose_cpu_backend(size):
    """The backend ``"auto"`` uses for a host array of ``size`` elements."""
    for name in ("cython", "numba"):
        mod, _ = _load(name)
        if mod is not None:
            return name, mod
    return "reference", _load("reference")[0]
