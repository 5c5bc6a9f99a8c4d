"""Verify and time fastdrop's CUDA backend on a real GPU.

1. Bit-exact parity, CPU vs GPU: packed masks of ``--n`` (>= 1e8) elements
   for several seeds, offsets and drop probabilities, and float16/32/64
   dropout outputs on a smaller array.
2. Timing with CUDA events (median of ``--repeats`` samples of 10
   back-to-back calls each) on a float32 tensor of
   ``--mib`` MiB (default 256):

   - ``copy``: device-to-device copy (torch ``copy_`` or CuPy), the
     bandwidth bound, counted as bytes read + written;
   - ``fastdrop``: ``fastdrop.dropout(x, p, rng=seed, out=y)`` (whole public
     call) and ``kernel`` (the backend's forward alone);
   - ``fastdrop+bool`` / ``fastdrop+packed``: also writing the mask;
   - ``torch``: ``torch.nn.functional.dropout(x, p, training=True)``.

   Each row gives ms, GB/s (bytes the operation must move) and the fraction
   of the copy bandwidth measured in the same run.

Prints a table and writes everything as JSON to ``--json``.  Exit status 1
if any parity check fails.

Usage::

    python bench/gpu_check.py --json results/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def parity(n, quick=False, m=(1 << 24) + 3):
    """CPU vs GPU packed masks and dropout outputs; a list of result dicts."""
    from numba import cuda

    import fastdrop
    from fastdrop._cuda import backend, frontend
    from fastdrop.reference import threshold

    cases = [(0, 0, 0.5), (42, 5, 0.1), (2**63 + 12345, 2**40 + 8, 0.9),
             (7, 2**35 - 3, 0.25), (123456789, 1, 0.5 + 2**-20)]
    if quick:
        cases = cases[:2]
    rows = []
    pk = cuda.device_array((n + 7) // 8, np.uint8)
    for seed, offset, p in cases:
        t0 = time.perf_counter()
        want = fastdrop.dropout_mask(n, p, rng=fastdrop.Generator(seed, offset), packed=True)
        t_cpu = time.perf_counter() - t0
        t0 = time.perf_counter()
        backend.mask(n, seed, offset, threshold(p), packed_out=pk)
        cuda.synchronize()
        t_gpu = time.perf_counter() - t0
        got = pk.copy_to_host()
        diff = int(np.count_nonzero(got != want))
        rows.append({"check": "mask", "n": n, "seed": seed, "offset": offset, "p": p,
                     "bytes_differing": diff, "ok": diff == 0,
                     "cpu_s": round(t_cpu, 3), "gpu_s_incl_launch": round(t_gpu, 4)})
    for dtype in (np.float16, np.float32, np.float64):
        x = np.random.default_rng(0).standard_normal(m).astype(dtype)
        x[::1001] = np.nan
        for seed, off in ((1, 0), (2, 11)):
            want, wk = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(seed, off),
                                        return_mask="packed")
            got, gk = frontend.dropout(cuda.to_device(x), 0.3,
                                       rng=fastdrop.Generator(seed, off), return_mask="packed")
            diff = int(np.count_nonzero(_bits(got.copy_to_host()) != _bits(want)))
            kd = int(np.count_nonzero(gk.copy_to_host() != wk))
            rows.append({"check": f"dropout {np.dtype(dtype).name}", "n": m, "seed": seed,
                         "offset": off, "p": 0.3, "bytes_differing": diff + kd,
                         "ok": diff + kd == 0})
    return rows


def _timer(lib):
    """(start(), stop() -> ms) pairs of CUDA events on the current stream."""
    if lib == "torch":
        import torch

        def make():
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            return a, b

        def done(ev):
            a, b = ev
            b.record()
            b.synchronize()
            return a.elapsed_time(b)
        return make, done
    import cupy

    def make():
        a, b = cupy.cuda.Event(), cupy.cuda.Event()
        a.record()
        return a, b

    def done(ev):
        a, b = ev
        b.record()
        b.synchronize()
        return cupy.cuda.get_elapsed_time(a, b)
    return make, done


def time_it(fn, make, done, repeats, warmup=3, batch=10):
    """Median and min ms per call; each sample times ``batch`` back-to-back
    calls between two events (so the host overhead of a call overlaps the
    previous call's GPU work, as in a training loop)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        ev = make()
        for _ in range(batch):
            fn()
        times.append(done(ev) / batch)
    return statistics.median(times), min(times)


def timings(mib, repeats, p=0.5):
    import fastdrop
    from fastdrop._cuda import backend
    from fastdrop.reference import threshold

    try:
        import torch

        lib = "torch" if torch.cuda.is_available() else None
    except ImportError:
        lib = None
    if lib is None:
        import cupy  # noqa: F401

        lib = "cupy"
    n = mib * (1 << 20) // 4
    nbytes = n * 4
    make, done = _timer(lib)
    if lib == "torch":
        import torch

        x = torch.randn(n, device="cuda", dtype=torch.float32)
        y = torch.empty_like(x)
        keep = torch.empty(n, device="cuda", dtype=torch.bool)
        packed = torch.empty((n + 7) // 8, device="cuda", dtype=torch.uint8)

        def copy():
            y.copy_(x)
    else:
        import cupy

        x = cupy.random.standard_normal(n, dtype=cupy.float32)
        y = cupy.empty_like(x)
        keep = cupy.empty(n, dtype=cupy.bool_)
        packed = cupy.empty((n + 7) // 8, dtype=cupy.uint8)

        def copy():
            cupy.copyto(y, x)

    T = threshold(p)
    s = 1.0 / (1.0 - p)
    rows = []

    def add(name, fn, moved):
        med, best = time_it(fn, make, done, repeats)
        rows.append({"op": name, "ms_median": med, "ms_min": best, "bytes": moved,
                     "GBps": moved / (med * 1e-3) / 1e9})

    add("copy (read+write)", copy, 2 * nbytes)
    add("fastdrop.dropout, no mask", lambda: fastdrop.dropout(x, p, rng=1, out=y), 2 * nbytes)
    add("kernel only, no mask", lambda: backend.forward(x, y, 1, 0, T, s, (1,)), 2 * nbytes)
    add("kernel only, offset % 8 != 0",
        lambda: backend.forward(x, y, 1, 3, T, s, (1,)), 2 * nbytes)
    add("kernel + bool mask",
        lambda: backend.forward(x, y, 1, 0, T, s, (1,), keep_out=keep), 2 * nbytes + n)
    add("kernel + packed mask",
        lambda: backend.forward(x, y, 1, 0, T, s, (1,), packed_out=packed),
        2 * nbytes + (n + 7) // 8)
    add("mask only, packed", lambda: backend.mask(n, 1, 0, T, packed_out=packed), (n + 7) // 8)
    if lib == "torch":
        import torch

        F = torch.nn.functional
        add("torch.nn.functional.dropout", lambda: F.dropout(x, p, training=True),
            2 * nbytes)
    copy_bw = rows[0]["GBps"]
    for r in rows:
        r["fraction_of_copy"] = r["GBps"] / copy_bw
    fd = next(r for r in rows if r["op"] == "fastdrop.dropout, no mask")
    tr = next((r for r in rows if r["op"].startswith("torch")), None)
    summary = {"lib": lib, "n": n, "mib": mib, "p": p,
               "forward_fraction_of_copy": fd["fraction_of_copy"],
               "target_fraction": 0.85,
               "meets_target": fd["fraction_of_copy"] >= 0.85,
               "speedup_vs_torch": (tr["ms_median"] / fd["ms_median"]) if tr else None}
    return rows, summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", required=True, help="where to write the results")
    ap.add_argument("--n", type=int, default=100_000_003, help="mask elements for parity")
    ap.add_argument("--mib", type=int, default=256, help="float32 MiB for timing")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="fewer parity cases")
    args = ap.parse_args(argv)

    import fastdrop
    from fastdrop import _cuda

    info = _cuda.info()
    result = {"python": platform.python_version(), "fastdrop": fastdrop.__version__,
              "info": info}
    print(json.dumps(info, indent=1))
    if not info["available"] or info["simulator"]:
        print("no real CUDA GPU: nothing to check", file=sys.stderr)
        result["error"] = "no GPU"
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        return 2
    rows = parity(args.n, args.quick)
    result["parity"] = rows
    print(f"\n{'check':<18}{'n':>12}{'seed':>22}{'offset':>16}{'p':>10}  ok")
    for r in rows:
        print(f"{r['check']:<18}{r['n']:>12}{r['seed']:>22}{r['offset']:>16}"
              f"{r['p']:>10.6g}  {r['ok']}")
    trows, summary = timings(args.mib, args.repeats)
    result["timings"] = trows
    result["summary"] = summary
    print(f"\nfloat32, {args.mib} MiB, p={summary['p']}, events via {summary['lib']}")
    print(f"{'op':<32}{'ms (median)':>12}{'GB/s':>10}{'of copy':>10}")
    for r in trows:
        print(f"{r['op']:<32}{r['ms_median']:>12.3f}{r['GBps']:>10.1f}"
              f"{r['fraction_of_copy']:>10.3f}")
    print(json.dumps(summary, indent=1))
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
