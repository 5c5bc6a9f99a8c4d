"""The benchmark engine behind ``fastdrop bench``.

For every size, dtype, drop probability and operation of the comparison
table (:mod:`fastdrop._comparisons`) it times

- every available fastdrop backend (through the public API, ``out=``
  preallocated where the API has it);
- the NumPy idioms people write instead, and ``torch.nn.functional.dropout``
  (and friends) on the CPU when PyTorch is installed;
- on a GPU, when one is present: fastdrop's CUDA backend, PyTorch and CuPy
  (synchronised);
- in the same run, the *ceiling*: a streaming kernel ``y = x * s`` that reads
  and writes the same number of bytes as the operation (DESIGN.md section 4,
  convention 9).

Every figure is measured in the run that reports it: medians of repeated
samples, the inner loop count adapting so that a sample of a tiny call lasts
at least ``min_time``.  The first call of each implementation, operation and
dtype (which includes Numba's JIT compilation) is timed separately and
reported as warm-up, never mixed into the medians.

Importing this module imports neither Numba, PyTorch nor matplotlib.

Examples
--------
>>> from fastdrop._bench import BenchConfig, run_bench, format_table
>>> cfg = BenchConfig(sizes=[1000], ops=["forward"], backends=["reference"],
...                   torch=False, gpu=False, repeat=3, min_time=1e-4)
>>> report = run_bench(cfg)
>>> sorted({r["impl"] for r in report["results"]})
['ceiling', 'numpy-f32', 'numpy-f64', 'numpy-inplace', 'reference']
>>> "forward" in format_table(report)
True
"""

from __future__ import annotations

import csv
import datetime
import gc
import io
import math
import os
import statistics
import sys
import time
import types
from dataclasses import asdict, dataclass, field

import numpy as np

import fastdrop
from fastdrop._comparisons import COMPARISONS, Case, get_comparison

__all__ = [
    "BenchConfig",
    "run_bench",
    "time_call",
    "format_table",
    "format_csv",
    "plot_report",
    "DEFAULT_SIZES",
    "QUICK_SIZES",
]

#: Default sizes: 1e3 ... 1e8, log-spaced (one per decade).
DEFAULT_SIZES = [10 ** k for k in range(3, 9)]
#: Sizes of ``--quick``.
QUICK_SIZES = [10 ** 3, 10 ** 5, 10 ** 7]
SCHEMA = 1


@dataclass
class BenchConfig:
    """What to benchmark and how.

    Attributes
    ----------
    sizes : list of int
        Numbers of elements (1-D arrays).
    dtypes : list of str
    ps : list of float
        Drop probabilities, each in [0, 1).
    ops : list of str or None
        Operation names from :data:`fastdrop._comparisons.COMPARISONS`
        (None: all).
    backends : list of str or None
        fastdrop backends (None: every available one).
    numpy, torch, gpu : bool
        Time the NumPy idioms; PyTorch on the CPU (if installed); GPU
        implementations (if a GPU is present).
    threads : int or None
        Threads for fastdrop, Numba and PyTorch (None: fastdrop's default).
    repeat : int
        Timed samples per measurement (the median is reported).
    min_time : float
        Minimum seconds per sample: the inner loop count adapts to it.
    max_time : float
        Soft budget per measurement: sampling stops once it is spent and at
        least three samples were taken.
    ceiling : str
        Streaming kernel for the ceiling: "auto" (cython, else numba, else
        numpy), "cython", "numba" or "numpy".
    reference_max_size : int
        The pure-NumPy reference backend is slow; it is timed only up to
        this size.
    memory_fraction : float
        Skip a size whose estimated working set exceeds this fraction of
        the available memory.
    seed : int
    quick : bool
        Recorded in the report (``--quick`` presets the other fields).
    """

    sizes: list = field(default_factory=lambda: list(DEFAULT_SIZES))
    dtypes: list = field(default_factory=lambda: ["float32"])
    ps: list = field(default_factory=lambda: [0.5])
    ops: list | None = None
    backends: list | None = None
    numpy: bool = True
    torch: bool = True
    gpu: bool = True
    threads: int | None = None
    repeat: int = 7
    min_time: float = 0.01
    max_time: float = 5.0
    ceiling: str = "auto"
    reference_max_size: int = 10 ** 6
    memory_fraction: float = 0.7
    seed: int = 12345
    quick: bool = False

    @classmethod
    def quick_preset(cls, **overrides):
        """The ``--quick`` configuration: sizes 1e3, 1e5, 1e7; float32;
        p = 0.5; every operation and backend; three samples of >= 2 ms.

        Examples
        --------
        >>> BenchConfig.quick_preset().sizes
        [1000, 100000, 10000000]
        """
        base = dict(sizes=list(QUICK_SIZES), dtypes=["float32"], ps=[0.5], repeat=5,
                    min_time=0.002, max_time=1.0, quick=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


# ----------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------

def _noop():
    return None


def time_call(fn, repeat=7, min_time=0.01, max_time=5.0, sync=_noop, partner=None):
    """Median seconds per call of ``fn()``.

    With ``partner`` (a zero-argument callable), every sample of ``fn`` is
    followed by a sample of ``partner`` (calibrated the same way), and the
    result also carries ``partner_median_s``: the two are then measured
    under the same machine conditions, which keeps their ratio honest on a
    shared, noisy machine.

    A calibration call picks the inner loop count ``number`` so that a
    sample lasts at least ``min_time`` (when one call already does, the
    calibration call is the first sample); then up to ``repeat`` samples of
    ``number`` calls are taken (stopping early, after at least three, once
    ``max_time`` is spent).  ``sync()`` is called before each clock
    read (GPU work is asynchronous).

    Returns
    -------
    dict
        ``median_s``, ``min_s``, ``samples`` (seconds per call),
        ``number`` and ``repeat`` (samples taken).

    Examples
    --------
    >>> r = time_call(lambda: sum(range(100)), repeat=5, min_time=1e-4)
    >>> r["repeat"], r["median_s"] > 0
    (5, True)
    """
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    number = 1
    samples = []
    spent = 0.0
    if first < min_time:
        number = int(min(10 ** 6, max(1, math.ceil(min_time / max(first, 1e-8)))))
    else:  # a long call: the calibration run is the first sample
        samples.append(first)
        spent = first
    pnumber = 1
    psamples = []
    if partner is not None:
        pfirst = _first_call(partner, sync)
        if pfirst < min_time:
            pnumber = int(min(10 ** 6, max(1, math.ceil(min_time / max(pfirst, 1e-8)))))
        if samples:  # keep the samples paired
            psamples.append(pfirst if pnumber == 1 else _per_call(partner, pnumber, sync))
    while len(samples) < max(1, repeat):
        dt = _per_call(fn, number, sync) * number
        spent += dt
        samples.append(dt / number)
        if partner is not None:
            psamples.append(_per_call(partner, pnumber, sync))
        if spent > max_time and len(samples) >= 3:
            break
    out = {"median_s": statistics.median(samples), "min_s": min(samples),
           "samples": samples, "number": number, "repeat": len(samples)}
    if partner is not None:
        out["partner_median_s"] = statistics.median(psamples)
    return out


def _per_call(fn, number, sync=_noop):
    """Seconds per call of ``fn()`` over ``number`` back-to-back calls."""
    sync()
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    sync()
    return (time.perf_counter() - t0) / number


def _first_call(fn, sync=_noop):
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------
# implementations
# ----------------------------------------------------------------------------

@dataclass
class _Impl:
    name: str           # key in results: "cython", "numpy-f32", "torch", ...
    label: str          # for humans: "fastdrop[cython]"
    kind: str           # "fastdrop" | "numpy" | "torch" | "cupy"
    device: str         # "cpu" | "gpu"
    make: object        # make(cmp, ctx) -> zero-arg callable, or None (unsupported)
    sync: object = _noop


class _Context:
    """Arrays for one (size, dtype, p): the CPU case and lazily made
    PyTorch tensors and GPU arrays."""

    def __init__(self, n, dtype, p, seed, gpu_rt=None):
        self.case = Case(n, dtype, p=p, seed=seed)
        self.gpu_rt = gpu_rt
        self._torch = None
        self._gpu = None

    def torch_cpu(self, torch):
        if self._torch is None:
            c = self.case
            self._torch = types.SimpleNamespace(x=torch.from_numpy(c.x),
                                                keep=torch.from_numpy(c.keep))
        return self._torch

    def gpu(self):
        """A Case-like namespace whose arrays live on the GPU."""
        if self._gpu is None:
            c = self.case
            to = self.gpu_rt.to_device
            self._gpu = types.SimpleNamespace(
                x=to(c.x), out=to(c.out), keep=to(c.keep), shape=c.shape, n=c.n,
                p=c.p, seed=c.seed, scale=c.scale, dtype=c.dtype,
                rng=self.gpu_rt.rng(c.seed))
        return self._gpu

    def free(self):
        self._torch = None
        self._gpu = None
        self.case = None


class _GpuRuntime:
    """CuPy or PyTorch CUDA: device arrays, synchronisation, ceiling."""

    def __init__(self, name, mod, torch=None):
        self.name = name
        self.mod = mod
        self.torch = torch
        if name == "cupy":
            self.sync = mod.cuda.runtime.deviceSynchronize
        else:
            self.sync = mod.cuda.synchronize

    def to_device(self, a):
        if self.name == "cupy":
            return self.mod.asarray(a)
        return self.mod.from_numpy(np.ascontiguousarray(a)).cuda()

    def rng(self, seed):
        if self.name == "cupy":
            return self.mod.random.default_rng(seed)
        return None

    def empty_f32(self, m):
        if self.name == "cupy":
            return self.mod.zeros(m, dtype=self.mod.float32)
        return self.mod.zeros(m, dtype=self.mod.float32, device="cuda")

    def multiply(self, x, s, y):
        if self.name == "cupy":
            self.mod.multiply(x, s, out=y)
        else:
            self.mod.mul(x, s, out=y)

    def free_bytes(self):
        try:
            if self.name == "cupy":
                return int(self.mod.cuda.runtime.memGetInfo()[0])
            return int(self.mod.cuda.mem_get_info()[0])
        except Exception:  # noqa: BLE001
            return None

    def describe(self):
        try:
            if self.name == "cupy":
                props = self.mod.cuda.runtime.getDeviceProperties(0)
                name = props["name"]
                return name.decode() if isinstance(name, bytes) else str(name)
            return str(self.mod.cuda.get_device_name(0))
        except Exception:  # noqa: BLE001
            return "unknown GPU"


def _may_have_gpu():
    """False when this is Linux and no NVIDIA driver is loaded (so that
    looking for a GPU need not import PyTorch or CuPy)."""
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")
    return True


def _find_gpu(torch):
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return _GpuRuntime("cupy", cupy)
    except Exception:  # noqa: BLE001 - not installed or no driver
        pass
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return _GpuRuntime("torch", torch)
        except Exception:  # noqa: BLE001
            pass
    return None


def _import_torch():
    try:
        import torch
    except Exception:  # noqa: BLE001 - not installed or broken
        return None
    return torch


def _fastdrop_impl(name, dtypes, reference_max_size):
    def make(cmp, ctx):
        c = ctx.case
        if c.dtype.name not in dtypes:
            return None
        if name == "reference" and c.n > reference_max_size:
            return None
        return lambda: cmp.fastdrop(c, name)

    return _Impl(name, f"fastdrop[{name}]", "fastdrop", "cpu", make)


def _numpy_impl(idiom):
    def make(cmp, ctx):
        fn = cmp.numpy.get(idiom)
        if fn is None:
            return None
        c = ctx.case
        return lambda: fn(c)

    return _Impl(idiom, idiom, "numpy", "cpu", make)


def _torch_impl(torch):
    def make(cmp, ctx):
        if cmp.torch is None:
            return None
        t = ctx.torch_cpu(torch)
        c = ctx.case
        return lambda: cmp.torch(torch, t, c.p, c.scale)

    return _Impl("torch", "torch (CPU)", "torch", "cpu", make)


def _torch_adapter_impl(torch):
    """``fastdrop.torch.dropout`` (the autograd op) on the same CPU tensor as
    ``torch.nn.functional.dropout``: forward only."""
    from fastdrop import torch as fdt

    def make(cmp, ctx):
        if cmp.name != "forward":
            return None
        t = ctx.torch_cpu(torch)
        c = ctx.case
        return lambda: fdt.dropout(t.x, c.p, True, generator=c.seed)

    return _Impl("fastdrop-torch", "fastdrop.torch (CPU tensor)", "torch", "cpu", make)


def _check_some_backend_runs(cfg, impls, binfo, gpu_rt):
    """RuntimeError, naming why, when none of the explicitly requested
    fastdrop backends can be measured here (a run that times only NumPy and
    torch is not what was asked for)."""
    measured = {i.name for i in impls if i.kind == "fastdrop"}
    if measured & set(cfg.backends):
        return
    why = []
    for name in dict.fromkeys(cfg.backends):
        info = binfo.get(name, {})
        if not info.get("available"):
            why.append(f"{name}: {_oneline(info.get('reason', 'unknown'))}")
        elif name == "cuda" and not cfg.gpu:
            why.append("cuda: --no-gpu was given")
        elif name == "cuda" and gpu_rt is None:
            why.append("cuda: no GPU found (NVIDIA driver, then CuPy or PyTorch with CUDA)")
    raise RuntimeError("none of the requested backends can run here (" + "; ".join(why)
                       + ")")


def _gpu_impls(rt, torch, backends_info, want_cuda):
    impls = []
    if want_cuda and backends_info.get("cuda", {}).get("available"):
        dtypes = backends_info["cuda"]["dtypes"]

        def make_cuda(cmp, ctx):
            if not cmp.gpu or ctx.case.dtype.name not in dtypes:
                return None
            g = ctx.gpu()
            return lambda: cmp.fastdrop(g, "cuda")

        impls.append(_Impl("cuda", "fastdrop[cuda]", "fastdrop", "gpu", make_cuda, rt.sync))
    if torch is not None and _torch_cuda(torch):
        def make_torch(cmp, ctx):
            if cmp.torch is None:
                return None
            c = ctx.case
            if not hasattr(ctx, "_torch_gpu"):
                ctx._torch_gpu = types.SimpleNamespace(
                    x=torch.from_numpy(c.x).cuda(), keep=torch.from_numpy(c.keep).cuda())
            t = ctx._torch_gpu
            return lambda: cmp.torch(torch, t, c.p, c.scale)

        impls.append(_Impl("torch-cuda", "torch (GPU)", "torch", "gpu", make_torch,
                           torch.cuda.synchronize))
    if rt.name == "cupy":
        for idiom in ("numpy-f64", "numpy-f32", "numpy"):
            def make_cupy(cmp, ctx, idiom=idiom):
                fn = cmp.numpy.get(idiom)
                if fn is None:
                    return None
                g = ctx.gpu()
                return lambda: fn(g)

            impls.append(_Impl("cupy" + idiom[5:], "cupy" + idiom[5:], "cupy", "gpu",
                               make_cupy, rt.sync))
    return impls


def _torch_cuda(torch):
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


# ----------------------------------------------------------------------------
# the ceiling: a streaming kernel with the same traffic
# ----------------------------------------------------------------------------

_NUMPY_STREAM = ("numpy", "NumPy np.multiply(x, s, out=y), 1 thread",
                 lambda x, y, s: np.multiply(x, s, out=y))


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
            if name == "cython":
                from fastdrop._cython import _kernels as mod

                fn = mod.stream_scale
            else:
                try:  # the backend's wrapper records its compile time
                    from fastdrop._numba import backend as mod

                    fn = mod.stream_scale
                except (ImportError, AttributeError):
                    from fastdrop._numba import kernels as mod

                    fn = mod.stream_scale
        except Exception as e:  # noqa: BLE001 - backend not built yet
            if choice != "auto":
                log(f"ceiling kernel {name!r} unavailable ({type(e).__name__}: {e}); "
                    "using NumPy")
            continue
        # check it works (and compile it, for Numba) before timing anything
        try:
            x = np.ones(64, np.float32)
            y = np.empty_like(x)
            fn(x, y, 2.0)
            if not np.array_equal(y, x * np.float32(2.0)):
                raise RuntimeError("wrong result")
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
                best = None
                cands = {}
                for name, label, fn in self.kernels:
                    r = time_call(lambda fn=fn: fn(x, y, 1.5), **self.timing)
                    cands[name] = r["median_s"]
                    if best is None or r["median_s"] < best[1]["median_s"]:
                        best = (name, r)
                self._cache[m] = (best[0], best[1], cands)
        return self._cache[m]

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


# ----------------------------------------------------------------------------
# progress
# ----------------------------------------------------------------------------

class _SimpleBar:
    def __init__(self, total, file):
        self.total, self.n, self.file, self.desc = total, 0, file, ""
        self.t0 = time.perf_counter()

    def set_description(self, desc):
        self.desc = desc
        self._draw()

    def update(self, k=1):
        self.n += k
        self._draw()

    def _draw(self):
        width = 30
        done = int(width * self.n / max(1, self.total))
        el = time.perf_counter() - self.t0
        self.file.write(f"\r[{'#' * done}{'.' * (width - done)}] {self.n}/{self.total} "
                        f"{el:5.1f}s {self.desc[:40]:<40}")
        self.file.flush()

    def close(self):
        self.file.write("\r" + " " * 100 + "\r")
        self.file.flush()


class _NoBar:
    def set_description(self, desc):
        pass

    def update(self, k=1):
        pass

    def close(self):
        pass


def _progress(total, enabled, file):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm

        return tqdm(total=total, file=file, leave=False, unit="run", dynamic_ncols=True)
    except Exception:  # noqa: BLE001 - tqdm not installed
        return _SimpleBar(total, file)


# ----------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------

def _mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _working_set(n, itemsize):
    """Rough peak bytes for one size: inputs and buffers, NumPy and PyTorch
    temporaries (float64 uniforms), masks and the ceiling's arrays."""
    return int(n * (10 * itemsize + 17))


def _set_threads(threads, torch, log):
    fastdrop.set_num_threads(threads)
    if torch is not None:
        try:
            torch.set_num_threads(threads)
        except Exception as e:  # noqa: BLE001
            log(f"torch.set_num_threads({threads}) failed: {e}")
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        try:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except Exception as e:  # noqa: BLE001
            log(f"numba.set_num_threads({threads}) failed: {e}")


def run_bench(config, log=None, progress=False, progress_file=None):
    """Run the benchmark described by ``config``.

    Parameters
    ----------
    config : BenchConfig
    log : callable, optional
        ``log(message)`` for notes (default: discard).
    progress : bool
        Draw a progress bar on ``progress_file`` (default ``sys.stderr``).

    Returns
    -------
    dict
        The report: ``machine``, ``config``, ``ceiling``, ``results`` (one
        record per measurement, the ceiling's included), ``warmup``,
        ``skipped``, ``notes`` and ``wall_s``.  JSON-serialisable.
    """
    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    cfg = config
    notes, skipped, warmup, results = [], [], [], []

    def note(msg):
        notes.append(msg)
        log(msg)

    threads = int(cfg.threads) if cfg.threads else fastdrop.get_num_threads()
    old_threads = fastdrop.get_num_threads()

    ops = [get_comparison(o) for o in cfg.ops] if cfg.ops else list(COMPARISONS)
    binfo = fastdrop.get_backends()
    if cfg.backends is None:
        wanted = [b for b in binfo if b != "cuda"]
        want_cuda = True
    else:
        wanted = [b for b in cfg.backends if b != "cuda"]
        want_cuda = "cuda" in cfg.backends
    impls = []
    for name in wanted:
        if name not in binfo:
            raise ValueError(f"unknown backend {name!r}; choose from {sorted(binfo)}")
        if not binfo[name]["available"]:
            skipped.append({"what": f"fastdrop[{name}]",
                            "reason": _oneline(binfo[name]["reason"])})
            if cfg.backends is not None:
                note(f"backend {name!r} is not available: {binfo[name]['reason']}")
            continue
        impls.append(_fastdrop_impl(name, binfo[name]["dtypes"], cfg.reference_max_size))
    if want_cuda and not binfo.get("cuda", {}).get("available"):
        skipped.append({"what": "fastdrop[cuda]", "reason": _oneline(binfo.get("cuda", {}).get(
            "reason", "unknown"))})
        if cfg.backends is not None:
            note(f"backend 'cuda' is not available: {binfo['cuda']['reason']}")

    look_for_gpu = cfg.gpu and _may_have_gpu()
    torch = _import_torch() if (cfg.torch or look_for_gpu) else None
    if cfg.torch:
        if torch is not None:
            impls.append(_torch_impl(torch))
            impls.append(_torch_adapter_impl(torch))
        else:
            skipped.append({"what": "torch (CPU)", "reason": "PyTorch is not installed"})
    if cfg.numpy:
        idioms = []
        for cmp in ops:
            for k in cmp.numpy:
                if k not in idioms:
                    idioms.append(k)
        impls.extend(_numpy_impl(k) for k in idioms)

    gpu_rt = _find_gpu(torch) if look_for_gpu else None
    gpu_impls = []
    if gpu_rt is not None:
        gpu_impls = _gpu_impls(gpu_rt, torch, binfo, want_cuda)
        impls.extend(gpu_impls)
    elif cfg.gpu:
        skipped.append({"what": "GPU", "reason": "no GPU found (NVIDIA driver, then CuPy "
                                                 "or PyTorch with CUDA)"})

    if cfg.backends:  # None: all that run here; []: none asked for
        _check_some_backend_runs(cfg, impls, binfo, gpu_rt)

    old_torch_threads = torch.get_num_threads() if torch is not None else None
    _set_threads(threads, torch, note)
    if threads > (os.cpu_count() or 1):
        note(f"{threads} threads requested on {os.cpu_count()} logical CPUs")

    timing = dict(repeat=cfg.repeat, min_time=cfg.min_time, max_time=cfg.max_time)
    ck = _ceiling_kernels(cfg.ceiling, note)
    ck_label = " / ".join(label for _, label, _ in ck)
    if len(ck) > 1:
        ck_label = "fastest of " + ck_label
    ceiling = _Ceiling(ck, timing)
    gpu_ceiling = _Ceiling(None, timing, gpu_rt) if gpu_impls else None
    if cfg.reference_max_size < max(cfg.sizes) and any(i.name == "reference" for i in impls):
        note(f"fastdrop[reference] (pure NumPy) timed only up to "
             f"{_fmt_size(cfg.reference_max_size)} elements (--reference-max-size)")

    # plan: which sizes fit in memory
    avail = _mem_available()
    plan = []
    # smallest size first: the warm-up (first) calls are then the cheapest
    for n in sorted(set(cfg.sizes)):
        for dt in dict.fromkeys(cfg.dtypes):
            need = _working_set(n, np.dtype(dt).itemsize)
            if avail is not None and need > cfg.memory_fraction * avail:
                msg = (f"size {_fmt_size(n)} {dt}: needs ~{need / 1e9:.1f} GB, "
                       f"{avail / 1e9:.1f} GB available")
                skipped.append({"what": f"{_fmt_size(n)} {dt}", "reason": msg})
                note("skipping " + msg)
                continue
            for p in dict.fromkeys(cfg.ps):
                plan.append((n, dt, p))

    total = len(plan) * len(ops) * (len(impls) + 1 + (1 if gpu_ceiling else 0))
    bar = _progress(total, progress, progress_file or sys.stderr)
    warmed = set()
    try:
        for n, dt, p in plan:
            itemsize = np.dtype(dt).itemsize
            ctx = _Context(n, dt, p, cfg.seed, gpu_rt)
            ceiling.prepare(max(c.bytes_moved(n, itemsize) for c in ops))
            if gpu_ceiling is not None:
                gfree = gpu_rt.free_bytes()
                gneed = _working_set(n, itemsize)
                use_gpu = gfree is None or gneed < cfg.memory_fraction * gfree
                if use_gpu:
                    gpu_ceiling.prepare(max(c.bytes_moved(n, itemsize) for c in ops))
                else:
                    skipped.append({"what": f"GPU {_fmt_size(n)} {dt}",
                                    "reason": "does not fit in GPU memory"})
            else:
                use_gpu = False
            for cmp in ops:
                nbytes = cmp.bytes_moved(n, itemsize)
                base = {"op": cmp.name, "dtype": dt, "p": p, "size": n, "bytes": nbytes}
                # the ceiling, measured in the same run, same traffic
                bar.set_description(f"{cmp.name} {dt} {_fmt_size(n)} ceiling")
                klabel, r, cands = ceiling.time(nbytes)
                rec = _record(base, "ceiling", f"ceiling ({klabel} stream)", "ceiling",
                              "cpu", r, nbytes)
                rec.update(ceiling_kernel=klabel, ceiling_candidates=cands,
                           ceiling_elements=ceiling.elements_for(nbytes))
                results.append(rec)
                bar.update()
                if gpu_ceiling is not None:
                    if use_gpu:
                        klabel, r, cands = gpu_ceiling.time(nbytes)
                        rec = _record(base, "ceiling-gpu", "GPU ceiling (same-traffic stream)",
                                      "ceiling", "gpu", r, nbytes)
                        rec.update(ceiling_kernel=klabel, ceiling_candidates=cands,
                                   ceiling_elements=gpu_ceiling.elements_for(nbytes))
                        results.append(rec)
                    bar.update()
                for impl in impls:
                    bar.set_description(f"{cmp.name} {dt} {_fmt_size(n)} {impl.name}")
                    if impl.device == "gpu" and not use_gpu:
                        bar.update()
                        continue
                    try:
                        fn = impl.make(cmp, ctx)
                    except Exception as e:  # noqa: BLE001
                        skipped.append({"what": f"{impl.label} {cmp.name} {dt}",
                                        "reason": f"{type(e).__name__}: {e}"})
                        fn = None
                    if fn is None:
                        bar.update()
                        continue
                    key = (impl.name, cmp.name, dt)
                    try:
                        with np.errstate(all="ignore"):
                            if key not in warmed:
                                warmed.add(key)
                                w = _first_call(fn, impl.sync)
                                warmup.append({"impl": impl.name, "label": impl.label,
                                               "kind": impl.kind, "op": cmp.name,
                                               "dtype": dt, "size": n, "first_call_s": w})
                            partner = (ceiling.partner(nbytes)
                                       if impl.kind == "fastdrop" and impl.device == "cpu"
                                       else None)
                            r = time_call(fn, sync=impl.sync, partner=partner, **timing)
                    except Exception as e:  # noqa: BLE001 - e.g. unsupported on this build
                        skipped.append({"what": f"{impl.label} {cmp.name} {dt} "
                                                f"{_fmt_size(n)}",
                                        "reason": f"{type(e).__name__}: {e}"})
                        note(f"{impl.label} {cmp.name} {dt} failed: {type(e).__name__}: {e}")
                        bar.update()
                        continue
                    rec = _record(base, impl.name, impl.label, impl.kind, impl.device, r, nbytes)
                    if "partner_median_s" in r:
                        rec["ceiling_paired_s"] = r["partner_median_s"]
                    results.append(rec)
                    bar.update()
            ctx.free()
            del ctx
            gc.collect()
    finally:
        bar.close()
        ceiling.free()
        if gpu_ceiling is not None:
            gpu_ceiling.free()
        fastdrop.set_num_threads(old_threads)
        if old_torch_threads is not None:
            torch.set_num_threads(old_torch_threads)

    _derive(results)
    for w in warmup:
        steady = [r["median_s"] for r in results
                  if r["impl"] == w["impl"] and r["op"] == w["op"]
                  and r["dtype"] == w["dtype"] and r["size"] == w["size"]]
        w["steady_s"] = steady[0] if steady else None

    from fastdrop._info import machine_info, numba_info

    machine = machine_info(threads=threads)
    nb = numba_info()
    machine["numba_threading_layer"] = nb["threading_layer"]
    if gpu_rt is not None:
        machine["gpu"] = gpu_rt.describe()
        machine["gpu_runtime"] = gpu_rt.name
    cfg_d = asdict(cfg)
    cfg_d["threads"] = threads
    cfg_d["ops"] = [c.name for c in ops]
    return {
        "schema": SCHEMA,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "config": cfg_d,
        "ceiling": {"kernels": [name for name, _, _ in ck], "label": ck_label,
                    "definition": "streaming y = x * s over float32 arrays moving the "
                                  "same bytes (read + written) as the operation"},
        "operations": {c.name: {"title": c.title,
                                "bytes_per_element": {dt: c.traffic(np.dtype(dt).itemsize)
                                                      for dt in cfg.dtypes}}
                       for c in ops},
        "results": results,
        "warmup": warmup,
        "skipped": skipped,
        "notes": notes,
        "wall_s": time.perf_counter() - t_start,
    }


def _oneline(text):
    return " ".join(str(text).split())


def _record(base, name, label, kind, device, r, nbytes):
    rec = dict(base)
    med = max(r["median_s"], 1e-12)  # a timer tick below resolution is not 0 s
    rec.update({"impl": name, "label": label, "kind": kind, "device": device,
                "median_s": med, "min_s": r["min_s"], "number": r["number"],
                "repeat": r["repeat"], "gbps": nbytes / med / 1e9,
                "samples_s": r["samples"]})
    return rec


def _derive(results):
    """Add ``pct_ceiling`` and ``speedup_vs_numpy`` to every record, from
    the ceiling and the best NumPy idiom of the same (op, dtype, p, size)."""
    groups = {}
    for r in results:
        groups.setdefault((r["op"], r["dtype"], r["p"], r["size"]), []).append(r)
    for rs in groups.values():
        ceil = {r["device"]: r["median_s"] for r in rs if r["kind"] == "ceiling"}
        np_times = [r["median_s"] for r in rs if r["kind"] == "numpy"]
        cupy_times = [r["median_s"] for r in rs if r["kind"] == "cupy"]
        best_np = min(np_times) if np_times else None
        best_cupy = min(cupy_times) if cupy_times else None
        for r in rs:
            # a fastdrop CPU row was timed interleaved with the ceiling kernel:
            # use that paired ceiling time (same machine conditions)
            c = r.get("ceiling_paired_s") or ceil.get(r["device"])
            r["pct_ceiling"] = 100.0 * c / r["median_s"] if c else None
            ref = best_np if r["device"] == "cpu" else best_cupy
            r["speedup_vs_numpy"] = (ref / r["median_s"]
                                     if ref and r["kind"] != "ceiling" else None)


# ----------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------

def _fmt_size(n):
    """``1000 -> '1e3'``, ``25000 -> '2.5e4'``, ``12 -> '12'``."""
    n = int(n)
    if n < 1000:
        return str(n)
    k = int(math.floor(math.log10(n)))
    m = n / 10 ** k
    if abs(m - round(m)) < 1e-9:
        return f"{int(round(m))}e{k}" if round(m) != 1 else f"1e{k}"
    return f"{m:.3g}e{k}"


def _fmt_time(s):
    if s is None:
        return "-"
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if s >= f or unit == "ns":
            v = s / f
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return str(s)


def _fmt_gbps(g):
    if g is None:
        return "-"
    return f"{g:.3g}" if g < 100 else f"{g:.0f}"


def _fmt_pct(p):
    return "-" if p is None else f"{p:.0f}%" if p >= 1 else f"{p:.1g}%"


def _fmt_speedup(s):
    return "-" if s is None else f"{s:.2f}x" if s < 10 else f"{s:.1f}x"


_KIND_ORDER = {"ceiling": 0, "fastdrop": 1, "torch": 2, "cupy": 3, "numpy": 4}


def table_rows(report):
    """The table's rows: ``(group, cells)`` per result, in display order.

    ``group`` is ``(op, dtype, p)``; ``cells`` the formatted strings
    ``size, implementation, median, GB/s, % ceiling, vs NumPy``.  Every
    cell is computed from one record of ``report["results"]``.
    """
    res = sorted(report["results"], key=lambda r: (
        [c for c in report["config"]["ops"]].index(r["op"]), r["dtype"], r["p"], r["size"],
        r["device"], _KIND_ORDER.get(r["kind"], 9), r["median_s"]))
    out = []
    for r in res:
        out.append(((r["op"], r["dtype"], r["p"]),
                    [_fmt_size(r["size"]), r["label"], _fmt_time(r["median_s"]),
                     _fmt_gbps(r["gbps"]), _fmt_pct(r["pct_ceiling"]),
                     _fmt_speedup(r["speedup_vs_numpy"])], r))
    return out


def header_lines(report):
    """Machine and run description lines that head the table."""
    m = report["machine"]
    v = m["versions"]
    libs = [f"fastdrop {v['fastdrop']}", f"numpy {v['numpy']}"]
    for k in ("numba", "torch", "cupy"):
        libs.append(f"{k} {v.get(k) or 'not installed'}")
    cfg = report["config"]
    lines = [
        f"fastdrop bench: {m['cpu']}, {m['cores']} cores, {m['threads']} thread"
        f"{'s' if m['threads'] != 1 else ''}, OpenMP {'on' if m['openmp'] else 'off'}",
        "  " + ", ".join(libs) + f", Python {v['python']}",
    ]
    if m.get("numba_threading_layer"):
        lines.append(f"  numba threading layer: {m['numba_threading_layer']}")
    if m.get("gpu"):
        lines.append(f"  GPU: {m['gpu']} (via {m.get('gpu_runtime')}; times synchronised, "
                     "data already on the device)")
    lines.append(f"  ceiling: {report['ceiling']['label']}; same bytes read+written as "
                 "the operation; fastdrop CPU rows' % ceil uses the ceiling kernel timed "
                 "interleaved with them")
    lines.append(f"  median of up to {cfg['repeat']} samples (each >= "
                 f"{_fmt_time(cfg['min_time'])}); warm-up / JIT compilation excluded "
                 "(listed below)")
    lines.append("  GB/s = bytes the operation must move / median time; vs NumPy = best "
                 "NumPy idiom's time / this time" + ("; GPU rows: vs best CuPy idiom"
                                                    if m.get("gpu") else ""))
    return lines


def format_table(report):
    """The report as a readable text table (what ``--format table`` prints).

    Examples
    --------
    >>> from fastdrop._bench import BenchConfig, run_bench
    >>> rep = run_bench(BenchConfig(sizes=[100], ops=["mask_packed"], backends=[],
    ...                 torch=False, gpu=False, repeat=3, min_time=1e-5))
    >>> print(format_table(rep).splitlines()[0][:15])
    fastdrop bench:
    """
    lines = header_lines(report)
    titles = {k: v["title"] for k, v in report.get("operations", {}).items()}
    head = ["size", "implementation", "median", "GB/s", "% ceil", "vs NumPy"]
    rows = table_rows(report)
    widths = [len(h) for h in head]
    for _, cells, _ in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells)]
    align = ["r", "l", "r", "r", "r", "r"]

    def fmt(cells):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                         for c, w, a in zip(cells, widths, align)).rstrip()

    group = None
    last_size = None
    for g, cells, _ in rows:
        if g != group:
            group = g
            last_size = None
            op, dt, p = g
            lines.append("")
            lines.append(f"{op} [{dt}, p={p:g}]: {titles.get(op, '')}")
            lines.append(fmt(head))
            lines.append(fmt(["-" * w for w in widths]))
        shown = list(cells)
        if cells[0] == last_size:
            shown[0] = ""
        elif last_size is not None:
            lines.append("")
        last_size = cells[0]
        lines.append(fmt(shown))
    warm = [w for w in report["warmup"] if w["kind"] in ("fastdrop", "torch")]
    if warm:
        lines.append("")
        lines.append("warm-up (first call at the first size, excluded from the medians; "
                     "includes JIT compilation):")
        lw = max(len(w["label"]) for w in warm)
        for w in warm:
            steady = f" (then {_fmt_time(w['steady_s'])})" if w.get("steady_s") else ""
            lines.append(f"  {w['label']:<{lw}}  {w['op']:<13} {w['dtype']:<8} "
                         f"{_fmt_size(w['size']):>5}: {_fmt_time(w['first_call_s'])}{steady}")
    if report["skipped"]:
        lines.append("")
        lines.append("not measured:")
        for s in report["skipped"]:
            lines.append(f"  {s['what']}: {s['reason']}")
    lines.append("")
    wsum = sum(w["first_call_s"] for w in report["warmup"])
    lines.append(f"total wall time {report['wall_s']:.1f} s, of which {wsum:.1f} s in "
                 "warm-up calls (JIT compilation, cache loads)")
    return "\n".join(lines)


CSV_FIELDS = ["op", "dtype", "p", "size", "impl", "label", "kind", "device", "median_s",
              "min_s", "gbps", "pct_ceiling", "speedup_vs_numpy", "number", "repeat",
              "bytes", "cpu", "threads"]


def format_csv(report):
    """One CSV row per measurement (header first), machine columns included.

    Examples
    --------
    >>> import csv, io
    >>> from fastdrop._bench import BenchConfig, run_bench
    >>> rep = run_bench(BenchConfig(sizes=[100], ops=["forward"], backends=[],
    ...                 torch=False, gpu=False, repeat=3, min_time=1e-5))
    >>> rows = list(csv.DictReader(io.StringIO(format_csv(rep))))
    >>> rows[0]["op"]
    'forward'
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore",
                       lineterminator="\n")
    w.writeheader()
    m = report["machine"]
    for _, _, r in table_rows(report):
        row = dict(r)
        row["cpu"] = m["cpu"]
        row["threads"] = m["threads"]
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def plot_report(report, path=None, dpi=110):
    """Throughput (GB/s) against size, one panel per operation, one line per
    implementation, the ceiling drawn dashed.  Log-log axes.

    Uses matplotlib's object-oriented API with the Agg canvas (no pyplot,
    no global backend change); matplotlib is imported only here.

    Parameters
    ----------
    report : dict
        From :func:`run_bench` (or its JSON).
    path : str or path-like, optional
        Where to save a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; its single figure legend (``fig.legends[0]``) names every
        implementation and the ceiling.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ops = report["config"]["ops"]
    titles = {k: v["title"] for k, v in report.get("operations", {}).items()}
    combos = []
    for r in report["results"]:
        c = (r["dtype"], r["p"])
        if c not in combos:
            combos.append(c)
    panels = [(op, combo) for combo in combos for op in ops]
    ncols = (2 if len(ops) > 1 else 1) if len(combos) <= 1 else len(ops)
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = Figure(figsize=(6.2 * ncols, 3.9 * nrows + 1.2), dpi=dpi)
    FigureCanvasAgg(fig)
    names = []
    for r in sorted(report["results"], key=lambda r: (_KIND_ORDER.get(r["kind"], 9),
                                                      r["device"])):
        if r["impl"] not in names:
            names.append(r["impl"])
    cmap = {}
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
               "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"]
    k = 0
    for name in names:
        if name.startswith("ceiling"):
            cmap[name] = "black" if name == "ceiling" else "dimgray"
        else:
            cmap[name] = palette[k % len(palette)]
            k += 1
    handles = {}
    for i, (op, (dt, p)) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for name in names:
            rs = sorted((r for r in report["results"] if r["op"] == op
                         and r["impl"] == name and r["dtype"] == dt and r["p"] == p),
                        key=lambda r: r["size"])
            if not rs:
                continue
            is_ceil = rs[0]["kind"] == "ceiling"
            label = rs[0]["label"]
            if is_ceil:
                label = ("GPU ceiling" if rs[0]["device"] == "gpu" else "ceiling") + \
                    " (same-traffic stream)"
            numpy_like = rs[0]["kind"] in ("numpy", "cupy")
            (line,) = ax.plot([r["size"] for r in rs], [r["gbps"] for r in rs],
                              linestyle="--" if is_ceil else (":" if numpy_like else "-"),
                              marker=None if is_ceil else "o", markersize=3.5,
                              linewidth=2.2 if is_ceil else 1.4, color=cmap[name],
                              label=label)
            handles.setdefault(label, line)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{titles.get(op, op)}\n[{dt}, p={p:g}]", fontsize=9)
        ax.set_xlabel("elements")
        ax.set_ylabel("GB/s (bytes moved / time)")
        ax.grid(True, which="major", alpha=0.3)
    m = report["machine"]
    fig.suptitle(f"fastdrop {m['versions']['fastdrop']}: {m['cpu']}, {m['cores']} cores, "
                 f"{m['threads']} thread{'s' if m['threads'] != 1 else ''}, "
                 f"OpenMP {'on' if m['openmp'] else 'off'}",
                 fontsize=10)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center",
               ncol=min(4, max(1, len(handles))), fontsize=8, frameon=False)
    nleg_rows = math.ceil(len(handles) / 4)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, min(0.4, (0.25 + 0.17 * nleg_rows) / height), 1,
                           1 - 0.35 / height))
    if path is not None:
        fig.savefig(path, format="png")
    return fig
