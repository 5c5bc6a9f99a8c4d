"""The ceiling: a streaming kernel ``y = x * s`` over float32 arrays that
reads and writes the same number of bytes as the operation, timed in the
same run."""

from __future__ import annotations

import gc
import math

import numpy as np

import fastdrop
from fastdrop._benchmark.timing import time_call

_NUMPY_STREAM = ("numpy", "NumPy np.multiply(x, s, out=y), 1 thread",
                 lambda x, y, s: np.multiply(x, s, out=y))


def make_ceilings(choice, timing, gpu_rt, note):
    """The CPU :class:`_Ceiling` (kernels per ``choice``, see
    :func:`_ceiling_kernels`) and, when ``gpu_rt`` is given, the GPU one
    (else None)."""
    cpu = _Ceiling(_ceiling_kernels(choice, note), timing)
    gpu = _Ceiling(None, timing, gpu_rt) if gpu_rt is not None else None
    return cpu, gpu


def describe(kernels):
    """The report's ``ceiling`` entry for the CPU ceiling's ``kernels``."""
    label = " / ".join(label for _, label, _ in kernels)
    if len(kernels) > 1:
        label = "fastest of " + label
    return {"kernels": [name for name, _, _ in kernels], "label": label,
            "definition": "streaming y = x * s over float32 arrays moving the "
                          "same bytes (read + written) as the operation"}


def _ceiling_kernels(choice, log):
    """Streaming kernels ``y = x * s`` to time for the ceiling, as
    ``(name, label, fn(x, y, s))``.

    ``"auto"``: the first compiled kernel that works (Cython, else Numba)
    and NumPy's single-threaded multiply; the faster of them at each size is
    the ceiling (NumPy wins at tiny sizes, where thread start-up dominates).
    """
    order = ["cython", "numba"] if choice == "auto" else [choice]
    found = []
    for name in order:
        if name == "numpy":
            break
        try:
            fn = _import_stream_scale(name)
        except Exception as e:  # noqa: BLE001 - backend not built yet
            if choice != "auto":
                log(f"ceiling kernel {name!r} unavailable ({type(e).__name__}: {e}); "
                    "using NumPy")
            continue
        # check it works (and compile it, for Numba) before timing anything
        try:
            _check_stream_kernel(fn)
        except Exception as e:  # noqa: BLE001
            log(f"ceiling kernel {name!r} failed ({type(e).__name__}: {e}); trying the next")
            continue
        threads = fastdrop.get_num_threads()
        found.append((name, f"{name} stream_scale, {threads} thread"
                      + ("s" if threads != 1 else ""), fn))
        break
    if choice in ("auto", "numpy") or not found:
        found.append(_NUMPY_STREAM)
    return found


def _import_stream_scale(name):
    """``stream_scale`` of the Cython extension or of the Numba backend."""
    if name == "cython":
        from fastdrop._cython import _kernels as mod

        return mod.stream_scale
    try:  # the backend's wrapper records its compile time
        from fastdrop._numba import backend as mod

        return mod.stream_scale
    except (ImportError, AttributeError):
        from fastdrop._numba import kernels as mod

        return mod.stream_scale


def _check_stream_kernel(fn):
    x = np.ones(64, np.float32)
    y = np.empty_like(x)
    fn(x, y, 2.0)
    if not np.array_equal(y, x * np.float32(2.0)):
        raise RuntimeError("wrong result")


class _Ceiling:
    """Times ``y = x * s`` over float32 arrays moving a given number of bytes
    (read + written), with each candidate kernel; the fastest median is the
    ceiling.  Memoised per element count."""

    def __init__(self, kernels, timing, gpu_rt=None):
        self.kernels = kernels
        self.timing = dict(timing)
        self.timing["repeat"] = max(self.timing["repeat"], 5)
        self.gpu_rt = gpu_rt
        self._x = self._y = None
        self._cache = {}

    def elements_for(self, nbytes):
        return max(1, int(math.ceil(nbytes / 8)))  # float32: 4 read + 4 written

    def prepare(self, max_bytes):
        m = self.elements_for(max_bytes)
        if self._x is None or self._x.shape[0] < m:
            self._x = self._y = None
            gc.collect()
            if self.gpu_rt is not None:
                self._x = self.gpu_rt.empty_f32(m)
                self._x += 1
                self._y = self.gpu_rt.empty_f32(m)
            else:
                self._x = np.ones(m, np.float32)
                self._y = np.empty(m, np.float32)
                self._y.fill(0)  # touch the pages now, not in a timing

    def time(self, nbytes):
        """(kernel label, timing dict, all candidates' medians) for a
        streaming pass moving ``nbytes``."""
        m = self.elements_for(nbytes)
        if m not in self._cache:
            x, y = self._x[:m], self._y[:m]
            if self.gpu_rt is not None:
                rt = self.gpu_rt
                r = time_call(lambda: rt.multiply(x, 1.5, y), sync=rt.sync, **self.timing)
                self._cache[m] = (rt.name, r, {rt.name: r["median_s"]})
            else:
                self._cache[m] = self._fastest(x, y)
        return self._cache[m]

    def _fastest(self, x, y):
        best = None
        cands = {}
        for name, label, fn in self.kernels:
            r = time_call(lambda fn=fn: fn(x, y, 1.5), **self.timing)
            cands[name] = r["median_s"]
            if best is None or r["median_s"] < best[1]["median_s"]:
                best = (name, r)
        return (best[0], best[1], cands)

    def partner(self, nbytes):
        """The ceiling's fastest kernel at ``nbytes`` as a zero-argument
        callable (CPU only), to time interleaved with an implementation."""
        m = self.elements_for(nbytes)
        if self.gpu_rt is not None or m not in self._cache or not self.kernels:
            return None
        best = self._cache[m][0]
        fn = next((f for name, _, f in self.kernels if name == best), None)
        if fn is None:
            return None
        x, y = self._x[:m], self._y[:m]
        return lambda: fn(x, y, 1.5)

    def free(self):
        self._x = self._y = None
        self._cache.clear()
