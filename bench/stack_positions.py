"""Time a call at every position of the stack in its 4 KiB page: does a
kernel's speed depend on where the process's stack happens to begin?

The stack begins at a random place in its page in every process, so a kernel
whose speed depends on that runs fast in some processes and slow in others,
each for its whole life (how the Numba kernels' unaligned spill slots showed:
fastdrop/_numba/llvm.py, "stack frames").  This script moves the stack itself:
it calls the timed function from a small C function (compiled here with the
system's C compiler) that first reserves 0, 16, 32, ... bytes with
``alloca``, and reports the time at each position (best of ``--reps`` calls,
two sweeps, the better of the two), and how many positions are more than 8%
slower than the median::

    python bench/stack_positions.py --backend numba --op forward
    python bench/stack_positions.py --backend numba --op drop_path --step 128 --isa avx2

Positions are printed as the stack address mod 4096 after the reservation.
"""

import argparse
import ctypes
import os
import subprocess
import tempfile
import time

import numpy as np

import fastdrop
from isa_env import ISAS, rerun_under

_SHIM = r"""
#include <alloca.h>
typedef void (*cb_t)(void);
unsigned long call_shifted(cb_t fn, unsigned long shift)
{
    volatile char *p = alloca(shift + 16);
    p[0] = 0;
    fn();
    p[1] = 1;
    return (unsigned long)p;
}
"""


def _shim(tmp):
    src = os.path.join(tmp, "shim.c")
    lib = os.path.join(tmp, "shim.so")
    with open(src, "w") as f:
        f.write(_SHIM)
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", src, "-o", lib], check=True)
    dll = ctypes.CDLL(lib)
    dll.call_shifted.restype = ctypes.c_ulong
    return dll


def _op(name, backend, n):
    """The call to time, and its data."""
    x = np.ones(n, np.float32)
    out = np.empty_like(x)
    kw = dict(rng=7, backend=backend)
    if name == "forward":
        return lambda: fastdrop.dropout(x, 0.5, out=out, **kw)
    if name == "mask":
        return lambda: fastdrop.dropout_mask(x.shape, 0.5, **kw)
    if name == "gaussian":
        return lambda: fastdrop.gaussian_dropout(x, 0.5, out=out, **kw)
    if name == "drop_path":
        x2, o2 = x.reshape(-1, 256), out.reshape(-1, 256)
        return lambda: fastdrop.drop_path(x2, 0.5, out=o2, **kw)
    if name == "strided":
        xs = np.ones((n // 512, 1024), np.float32)[:, ::2]
        os_ = np.empty(xs.shape, np.float32)
        return lambda: fastdrop.dropout(xs, 0.5, out=os_, **kw)
    raise SystemExit(f"unknown --op {name!r}")


def main(argv=None):
    """Run the sweep; returns ``{shift: stack address}`` and ``{shift:
    seconds}`` (the better of the two sweeps)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--op", default="forward",
                    choices=["forward", "mask", "gaussian", "drop_path", "strided"])
    ap.add_argument("--size", type=int, default=16 * 2**20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--step", type=int, default=64, help="bytes between positions (>= 16)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--isa", choices=ISAS, default=None,
                    help="measure this ISA's code (bench/isa_env.py)")
    args = ap.parse_args(argv)
    if args.step < 16 or args.step % 16:
        ap.error("--step must be a multiple of 16")
    rerun_under(args.isa, __file__, argv)
    fastdrop.set_num_threads(args.threads)
    f = _op(args.op, args.backend, args.size)
    f()
    times = []

    def body():
        best = float("inf")
        for _ in range(args.reps):
            t0 = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t0)
        times.append(best)

    with tempfile.TemporaryDirectory() as tmp:
        dll = _shim(tmp)
        cb = ctypes.CFUNCTYPE(None)(body)
        dll.call_shifted.argtypes = [ctypes.CFUNCTYPE(None), ctypes.c_ulong]
        where, best = {}, {}
        for _ in range(2):
            for shift in range(0, 4096, args.step):
                where[shift] = dll.call_shifted(cb, shift)
                best[shift] = min(best.get(shift, float("inf")), times[-1])
    v = sorted(best.values())
    med = v[len(v) // 2]
    slow = sorted((where[s] % 4096, t) for s, t in best.items() if t > 1.08 * med)
    print(f"# {args.backend} {args.op}, {args.size} float32, {args.threads} thread(s), "
          f"{len(v)} stack positions {args.step} bytes apart")
    print(f"min {v[0] * 1e3:.3f} ms, median {med * 1e3:.3f}, max {v[-1] * 1e3:.3f}; "
          f"{len(slow)} position(s) more than 8% slower than the median")
    for pos, t in slow:
        print(f"  stack at {pos:#05x}: {t * 1e3:.3f} ms")
    return where, best


if __name__ == "__main__":
    main()
