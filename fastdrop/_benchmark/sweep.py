"""The sweep: every (size, dtype, p), operation and implementation timed
with the ceiling beside it; which sizes fit in memory; thread settings;
warm-up (first) calls timed apart."""

from __future__ import annotations

import contextlib
import gc
import os
import sys

import numpy as np

import fastdrop
from fastdrop._benchmark.implementations import _Context
from fastdrop._benchmark.progress import _progress
from fastdrop._benchmark.report import _fmt_size
from fastdrop._benchmark.timing import _first_call, time_call


class Journal:
    """What a run records: ``results`` and ``warmup`` records, ``skipped``
    entries and ``notes`` (each note also goes to ``log``)."""

    def __init__(self, log=None):
        self.log = log or (lambda msg: None)
        self.notes, self.skipped, self.warmup, self.results = [], [], [], []

    def note(self, msg):
        self.notes.append(msg)
        self.log(msg)

    def skip(self, what, reason):
        self.skipped.append({"what": what, "reason": reason})


# ----------------------------------------------------------------------------
# memory and threads
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


def plan_sizes(cfg, journal):
    """The ``(n, dtype, p)`` to measure, smallest size first (the warm-up
    calls are then the cheapest); a size whose working set does not fit in
    ``cfg.memory_fraction`` of the available memory is skipped."""
    avail = _mem_available()
    plan = []
    for n in sorted(set(cfg.sizes)):
        for dt in dict.fromkeys(cfg.dtypes):
            need = _working_set(n, np.dtype(dt).itemsize)
            if avail is not None and need > cfg.memory_fraction * avail:
                msg = (f"size {_fmt_size(n)} {dt}: needs ~{need / 1e9:.1f} GB, "
                       f"{avail / 1e9:.1f} GB available")
                journal.skip(f"{_fmt_size(n)} {dt}", msg)
                journal.note("skipping " + msg)
                continue
            for p in dict.fromkeys(cfg.ps):
                plan.append((n, dt, p))
    return plan


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


@contextlib.contextmanager
def thread_settings(threads, torch, note):
    """Run with ``threads`` threads for fastdrop, Numba and PyTorch; restore
    fastdrop's and PyTorch's thread counts on the way out."""
    old_threads = fastdrop.get_num_threads()
    old_torch_threads = torch.get_num_threads() if torch is not None else None
    _set_threads(threads, torch, note)
    if threads > (os.cpu_count() or 1):
        note(f"{threads} threads requested on {os.cpu_count()} logical CPUs")
    try:
        yield
    finally:
        fastdrop.set_num_threads(old_threads)
        if old_torch_threads is not None:
            torch.set_num_threads(old_torch_threads)


# ----------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------

def _record(base, name, label, kind, device, r, nbytes):
    rec = dict(base)
    med = max(r["median_s"], 1e-12)  # a timer tick below resolution is not 0 s
    rec.update({"impl": name, "label": label, "kind": kind, "device": device,
                "median_s": med, "min_s": r["min_s"], "number": r["number"],
                "repeat": r["repeat"], "gbps": nbytes / med / 1e9,
                "samples_s": r["samples"]})
    return rec


def _ceiling_record(ceiling, base, nbytes, name, label, device):
    """Time ``ceiling`` at ``nbytes``: its record (``label`` may name the
    winning kernel as ``{}``)."""
    klabel, r, cands = ceiling.time(nbytes)
    rec = _record(base, name, label.format(klabel), "ceiling", device, r, nbytes)
    rec.update(ceiling_kernel=klabel, ceiling_candidates=cands,
               ceiling_elements=ceiling.elements_for(nbytes))
    return rec


class Sweep:
    """Times ``sel.impls`` (an implementations.Selection) and the ceilings
    on every ``(n, dtype, p)`` of a plan and operation of ``ops``, into
    ``journal``."""

    def __init__(self, cfg, ops, sel, ceilings, journal):
        self.cfg, self.ops, self.journal = cfg, ops, journal
        self.impls, self.gpu_rt = sel.impls, sel.gpu_rt
        self.ceiling, self.gpu_ceiling = ceilings
        self.timing = cfg.timing()
        self.warmed = set()
        self.bar = None

    def run(self, plan, progress=False, progress_file=None):
        per_op = len(self.impls) + 1 + (1 if self.gpu_ceiling else 0)
        self.bar = _progress(len(plan) * len(self.ops) * per_op, progress,
                             progress_file or sys.stderr)
        try:
            for n, dt, p in plan:
                self._one_case(n, dt, p)
        finally:
            self.bar.close()
            self.ceiling.free()
            if self.gpu_ceiling is not None:
                self.gpu_ceiling.free()

    def _one_case(self, n, dt, p):
        itemsize = np.dtype(dt).itemsize
        ctx = _Context(n, dt, p, self.cfg.seed, self.gpu_rt)
        biggest = max(c.bytes_moved(n, itemsize) for c in self.ops)
        self.ceiling.prepare(biggest)
        use_gpu = self._prepare_gpu(n, dt, itemsize, biggest)
        for cmp in self.ops:
            nbytes = cmp.bytes_moved(n, itemsize)
            base = {"op": cmp.name, "dtype": dt, "p": p, "size": n, "bytes": nbytes}
            self._time_ceilings(cmp, base, nbytes, use_gpu)
            for impl in self.impls:
                self._time_impl(impl, cmp, ctx, base, nbytes, use_gpu)
                self.bar.update()
        ctx.free()
        del ctx
        gc.collect()

    def _prepare_gpu(self, n, dt, itemsize, biggest):
        """Whether the GPU implementations run at this size (their working
        set fits in GPU memory); prepares the GPU ceiling if so."""
        if self.gpu_ceiling is None:
            return False
        gfree = self.gpu_rt.free_bytes()
        gneed = _working_set(n, itemsize)
        use_gpu = gfree is None or gneed < self.cfg.memory_fraction * gfree
        if use_gpu:
            self.gpu_ceiling.prepare(biggest)
        else:
            self.journal.skip(f"GPU {_fmt_size(n)} {dt}", "does not fit in GPU memory")
        return use_gpu

    def _time_ceilings(self, cmp, base, nbytes, use_gpu):
        """The ceiling, measured in the same run, same traffic (and the GPU
        ceiling)."""
        self.bar.set_description(f"{cmp.name} {base['dtype']} {_fmt_size(base['size'])} "
                                 "ceiling")
        self.journal.results.append(_ceiling_record(
            self.ceiling, base, nbytes, "ceiling", "ceiling ({} stream)", "cpu"))
        self.bar.update()
        if self.gpu_ceiling is not None:
            if use_gpu:
                self.journal.results.append(_ceiling_record(
                    self.gpu_ceiling, base, nbytes, "ceiling-gpu",
                    "GPU ceiling (same-traffic stream)", "gpu"))
            self.bar.update()

    def _time_impl(self, impl, cmp, ctx, base, nbytes, use_gpu):
        """Time one implementation on one operation (its first call apart);
        what cannot be timed goes to the journal's ``skipped``."""
        n, dt = base["size"], base["dtype"]
        self.bar.set_description(f"{cmp.name} {dt} {_fmt_size(n)} {impl.name}")
        if impl.device == "gpu" and not use_gpu:
            return
        try:
            fn = impl.make(cmp, ctx)
        except Exception as e:  # noqa: BLE001
            self.journal.skip(f"{impl.label} {cmp.name} {dt}", f"{type(e).__name__}: {e}")
            return
        if fn is None:
            return
        try:
            with np.errstate(all="ignore"):
                self._warm_up(impl, cmp.name, dt, n, fn)
                partner = (self.ceiling.partner(nbytes)
                           if impl.kind == "fastdrop" and impl.device == "cpu" else None)
                r = time_call(fn, sync=impl.sync, partner=partner, **self.timing)
        except Exception as e:  # noqa: BLE001 - e.g. unsupported on this build
            what = f"{impl.label} {cmp.name} {dt}"
            self.journal.skip(f"{what} {_fmt_size(n)}", f"{type(e).__name__}: {e}")
            self.journal.note(f"{what} failed: {type(e).__name__}: {e}")
            return
        rec = _record(base, impl.name, impl.label, impl.kind, impl.device, r, nbytes)
        if "partner_median_s" in r:
            rec["ceiling_paired_s"] = r["partner_median_s"]
        self.journal.results.append(rec)

    def _warm_up(self, impl, op, dt, n, fn):
        """Time the first call of ``impl`` for ``(op, dt)`` apart (it may
        compile): a warm-up record, never part of a median."""
        key = (impl.name, op, dt)
        if key in self.warmed:
            return
        self.warmed.add(key)
        w = _first_call(fn, impl.sync)
        self.journal.warmup.append({"impl": impl.name, "label": impl.label, "kind": impl.kind,
                                    "op": op, "dtype": dt, "size": n, "first_call_s": w})


def attach_steady(warmup, results):
    """Give each warm-up record ``steady_s``: the median time of the same
    implementation, operation, dtype and size (None if not measured)."""
    for w in warmup:
        steady = [r["median_s"] for r in results
                  if r["impl"] == w["impl"] and r["op"] == w["op"]
                  and r["dtype"] == w["dtype"] and r["size"] == w["size"]]
        w["steady_s"] = steady[0] if steady else None
