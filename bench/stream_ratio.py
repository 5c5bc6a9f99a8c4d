"""Interleaved measurement of a backend's dropout against a same-traffic
stream (the issue targets' ratio), robust to a noisy shared machine.

Each sample times ``fastdrop.dropout(x, p, rng=seed, out=out)`` and then the
faster stream kernel ``out = x * s`` over the same arrays (NumPy's multiply
and fastdrop's compiled ``stream_scale``), back to back, so both see the
same machine conditions and the same pages;
medians over the samples are reported for 1 thread and for all threads::

    python bench/stream_ratio.py --backend cython --size 16777216
    python bench/stream_ratio.py --backend numba --isa avx2   # AVX2 code

``--isa`` runs the script again in a fresh process with the environment of
``bench/isa_env.py`` (the Cython cap, and for ``avx2`` Numba's target CPU and
features, which Numba reads when it is first imported).
"""

import argparse
import os
import statistics
import time

import numpy as np

import fastdrop
from isa_env import ISAS, rerun_under


def _stream_kernels():
    """(name, fn(x, out, s)) for the stream kernels ``out = x * s`` available here."""
    ks = [("numpy", lambda x, out, s: np.multiply(x, np.float32(s), out=out))]
    try:
        from fastdrop._cython._kernels import stream_scale
        ks.append(("cython", stream_scale))
    except ImportError:  # pragma: no cover - extension not built
        pass
    return ks


#: What the last :func:`measure` saw: ``huge_page_mib``, the process's MiB on
#: huge pages once its arrays were touched.
LAST: dict = {}


def huge_page_mib():
    """MiB of this process's memory on transparent huge pages (Linux), else
    None."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def measure(backend, n, threads, p=0.5, samples=25, seed=12345):
    """Median seconds of dropout and of the best stream, interleaved.

    The stream reads ``x`` and writes ``out``, the dropout's own arrays: the
    same pages, so the same TLB reach (transparent huge pages are granted per
    allocation, and dropout over 4 KiB pages against a stream over huge pages
    measured 0.83-0.90x the ratio of both on huge pages; Xeon VM, 16 Mi)."""
    x = np.random.default_rng(seed).standard_normal(n, dtype=np.float32)
    out = np.empty_like(x)
    out.fill(0)
    LAST["huge_page_mib"] = huge_page_mib()
    old = fastdrop.set_num_threads(threads)
    try:
        drop = lambda: fastdrop.dropout(x, p, rng=seed, out=out, backend=backend)  # noqa: E731
        streams = [(name, lambda f=f: f(x, out, 1.5)) for name, f in _stream_kernels()]
        drop()
        for _, f in streams:
            f()
        t_drop, t_stream = [], {name: [] for name, _ in streams}
        for _ in range(samples):
            t0 = time.perf_counter()
            drop()
            t_drop.append(time.perf_counter() - t0)
            for name, f in streams:
                t0 = time.perf_counter()
                f()
                t_stream[name].append(time.perf_counter() - t0)
    finally:
        fastdrop.set_num_threads(old)
    best = min(t_stream, key=lambda k: statistics.median(t_stream[k]))
    return statistics.median(t_drop), best, statistics.median(t_stream[best])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="cython")
    ap.add_argument("--size", type=int, default=16 * 2**20)
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--isa", choices=ISAS, default=None,
                    help="measure this ISA's code (bench/isa_env.py)")
    args = ap.parse_args(argv)
    rerun_under(args.isa, __file__, argv)
    if args.isa:
        print(f"# --isa {args.isa}: FASTDROP_MAX_ISA={os.environ.get('FASTDROP_MAX_ISA')}, "
              f"NUMBA_CPU_NAME={os.environ.get('NUMBA_CPU_NAME', '(host)')}")
    ncpu = len(os.sched_getaffinity(0))
    for th in sorted({1, ncpu}):
        d, name, s = measure(args.backend, args.size, th, samples=args.samples)
        mib = LAST["huge_page_mib"]
        huge = "" if mib is None else (f" (huge pages: {mib} MiB of the process, x and out "
                                       f"{2 * 4 * args.size / 2**20:.0f} MiB)")
        print(f"{args.backend} {args.size} float32, {th} thread(s): dropout {d * 1e3:.2f} ms, "
              f"stream ({name}) {s * 1e3:.2f} ms, ratio {s / d:.2f}{huge}")


if __name__ == "__main__":
    main()
