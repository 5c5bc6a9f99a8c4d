"""What is timed: fastdrop's backends, the NumPy idioms, PyTorch on the CPU
and, on a GPU, fastdrop's CUDA backend, PyTorch and CuPy.

Each implementation is an :class:`_Impl` record whose ``make(cmp, ctx)``
returns a zero-argument callable for one operation (a
:class:`fastdrop._comparisons.Comparison`) on the arrays of one
:class:`_Context`, or None where it does not apply.
:func:`select_implementations` builds the list for a run.

Importing this module imports neither PyTorch nor CuPy.
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass

import numpy as np

import fastdrop
from fastdrop._benchmark.report import _fmt_size
from fastdrop._benchmark.timing import _noop
from fastdrop._comparisons import Case

_NO_GPU = "no GPU found (NVIDIA driver, then CuPy or PyTorch with CUDA)"


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


@dataclass
class Selection:
    """The implementations of a run and what they run on."""

    impls: list         # every _Impl to time, GPU ones included
    gpu_impls: list     # the GPU ones alone
    gpu_rt: object      # _GpuRuntime, or None
    torch: object       # the torch module, or None
    backends_info: dict  # fastdrop.get_backends()


def select_implementations(cfg, ops, journal):
    """The :class:`Selection` that ``cfg`` asks for, among what runs here.

    What is not available is added to ``journal.skipped`` (and, where the
    backend was named explicitly, noted).  ValueError for an unknown
    backend; RuntimeError when none of the named backends can run
    (:func:`_check_some_backend_runs`).
    """
    binfo = fastdrop.get_backends()
    impls, want_cuda = _fastdrop_impls(cfg, binfo, journal)
    look_for_gpu = cfg.gpu and _may_have_gpu()
    torch = _import_torch() if (cfg.torch or look_for_gpu) else None
    impls.extend(_cpu_baseline_impls(cfg, ops, torch, journal))
    gpu_rt = _find_gpu(torch) if look_for_gpu else None
    gpu_impls = []
    if gpu_rt is not None:
        gpu_impls = _gpu_impls(gpu_rt, torch, binfo, want_cuda)
        impls.extend(gpu_impls)
    elif cfg.gpu:
        journal.skip("GPU", _NO_GPU)
    if cfg.backends:  # None: all that run here; []: none asked for
        _check_some_backend_runs(cfg, impls, binfo, gpu_rt)
    return Selection(impls, gpu_impls, gpu_rt, torch, binfo)


def _fastdrop_impls(cfg, binfo, journal):
    """fastdrop's CPU backends to time, and whether CUDA is wanted."""
    if cfg.backends is None:
        wanted = [b for b in binfo if b != "cuda"]
        want_cuda = True
    else:
        wanted = [b for b in cfg.backends if b != "cuda"]
        want_cuda = "cuda" in cfg.backends
    explicit = cfg.backends is not None
    impls = []
    for name in wanted:
        if name not in binfo:
            raise ValueError(f"unknown backend {name!r}; choose from {sorted(binfo)}")
        if not binfo[name]["available"]:
            _skip_backend(name, binfo[name]["reason"], explicit, journal)
            continue
        impls.append(_fastdrop_impl(name, binfo[name]["dtypes"], cfg.reference_max_size))
    cuda = binfo.get("cuda", {})
    if want_cuda and not cuda.get("available"):
        _skip_backend("cuda", cuda.get("reason", "unknown"), explicit, journal)
    return impls, want_cuda


def _skip_backend(name, reason, explicit, journal):
    journal.skip(f"fastdrop[{name}]", _oneline(reason))
    if explicit:
        journal.note(f"backend {name!r} is not available: {reason}")


def _cpu_baseline_impls(cfg, ops, torch, journal):
    """PyTorch on the CPU (and fastdrop's torch adapter), then the NumPy
    idioms of ``ops``, as ``cfg`` asks."""
    impls = []
    if cfg.torch:
        if torch is not None:
            impls.append(_torch_impl(torch))
            impls.append(_torch_adapter_impl(torch))
        else:
            journal.skip("torch (CPU)", "PyTorch is not installed")
    if cfg.numpy:
        idioms = []
        for cmp in ops:
            for k in cmp.numpy:
                if k not in idioms:
                    idioms.append(k)
        impls.extend(_numpy_impl(k) for k in idioms)
    return impls


def note_reference_limit(cfg, impls, note):
    """Note that the reference backend stops at ``cfg.reference_max_size``
    when a larger size is asked for."""
    if cfg.reference_max_size < max(cfg.sizes) and any(i.name == "reference" for i in impls):
        note(f"fastdrop[reference] (pure NumPy) timed only up to "
             f"{_fmt_size(cfg.reference_max_size)} elements (--reference-max-size)")


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
        return lambda: fdt.dropout(t.x, c.p, True)  # seeds from torch's RNG, as torch

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
            why.append(f"cuda: {_NO_GPU}")
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


def _oneline(text):
    return " ".join(str(text).split())
