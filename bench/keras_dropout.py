"""fastdrop.keras.Dropout against keras.layers.Dropout on Keras's JAX backend:
the issue-18 table (Keras half).

One run, all threads, float32, default size 2**24 (16 Mi elements), p = 0.5,
both layers called with ``training=True`` in two ways, timed sample for
sample in turn (a busy machine slows them alike):

- **jit**, the way ``fit`` runs a layer: ``jax.jit`` of
  ``layer.stateless_call([], state, x, training=True)``, the SeedGenerator
  state threaded from call to call (every call a fresh seed, one
  compilation);
- **eager**: ``layer(x, training=True)`` outside any jit (Keras dispatches
  the layer's ops one by one).

A third row times ``jax.jit(fastdrop.jax.dropout)`` alone with a new
``uint32[2]`` key per call: the function the fastdrop layer runs, so the
difference is the layer's own cost.  A fourth, ``jax.jit(x * 2)``, is the
floor: an XLA op that reads the input and writes a fresh output of the same
size (every call here allocates its output; on a virtual machine the page
faults of a fresh 64 MiB buffer can cost more than the arithmetic).

Outputs are timed to ``block_until_ready()``.  fastdrop's threads are its
default (``fastdrop.get_num_threads()``); XLA's CPU runtime uses its own thread
pool for Keras's ops.  The script also checks that the fastdrop layer's
output equals ``fastdrop.dropout`` on NumPy at the documented seed, bit for
bit.  The machine's load average is printed: on a shared machine the
numbers move from run to run.

Usage::

    python bench/keras_dropout.py                    # 2**24 float32, p = 0.5
    python bench/keras_dropout.py --size 1e6 --samples 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from fastdrop._benchmark.timing import per_call


def measure(n, p=0.5, samples=5, budget=0.3):
    """``({name: [seconds per call, ...]}, bit_equal)`` for the two layers in
    the two modes (interleaved samples), after a warm-up call of each."""
    import jax
    import keras
    import numpy as np

    import fastdrop
    import fastdrop.keras as fdk

    x_np = np.random.default_rng(0).standard_normal(n).astype(np.float32).reshape(-1, 1024)
    x = jax.device_put(x_np, jax.devices("cpu")[0])
    seed = 1

    impls = {}
    for label, cls in (("fastdrop.keras.Dropout", fdk.Dropout),
                       ("keras.layers.Dropout", keras.layers.Dropout)):
        layer = cls(p, seed=seed)
        step = jax.jit(lambda nt, x, layer=layer: layer.stateless_call(
            [], nt, x, training=True))
        box = {"nt": [v.value for v in layer.non_trainable_variables]}

        def jitted(step=step, box=box):
            y, box["nt"] = step(box["nt"], x)
            y.block_until_ready()

        def eager(layer=layer):
            layer(x, training=True).block_until_ready()

        impls[(label, "jit")] = jitted
        impls[(label, "eager")] = eager

    # reference row: the function the fastdrop layer calls, without the layer
    import fastdrop.jax as fdj

    fd_jit = jax.jit(lambda x, k: fdj.dropout(x, p, k))
    keys = {"k": np.array([seed, 0], np.uint32)}

    def bare():
        keys["k"] = keys["k"] + np.uint32([0, 1])
        fd_jit(x, keys["k"]).block_until_ready()

    impls[("fastdrop.jax.dropout (no layer)", "jit")] = bare

    # floor: an XLA op moving the same bytes into a fresh output
    scale = jax.jit(lambda x: x * 2.0)
    impls[("floor: jax.jit(x * 2)", "jit")] = lambda: scale(x).block_until_ready()

    # the check: a fresh fastdrop layer's first jitted call is the mask of
    # seed (1 << 32) | 0 (state (1, 0)), as fastdrop.dropout draws it
    check = fdk.Dropout(p, seed=seed)
    y, _ = jax.jit(lambda nt, x: check.stateless_call([], nt, x, training=True))(
        [v.value for v in check.non_trainable_variables], x)
    same = np.array_equal(np.asarray(y).view(np.uint32),
                          fastdrop.dropout(x_np, p, rng=(seed << 32) | 0).view(np.uint32))

    for fn in impls.values():  # warm-up: compilation, first touch
        fn()
    times = {k: [] for k in impls}
    for _ in range(samples):
        for k, fn in impls.items():
            times[k].append(per_call(fn, budget))
    return times, same


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench/keras_dropout.py",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="16777216", help="elements (default 2**24)")
    ap.add_argument("--p", type=float, default=0.5)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.3, help="seconds per sample")
    args = ap.parse_args(argv)
    n = int(float(args.size))
    if n % 1024:
        ap.error("--size must be a multiple of 1024 (the input is (n / 1024, 1024))")

    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != "jax":
        ap.error("keras is already imported with another backend")
    os.environ["KERAS_BACKEND"] = "jax"
    import jax
    import keras
    import numpy as np

    import fastdrop
    from fastdrop._info import cpu_info

    times, same = measure(n, args.p, args.samples, args.budget)
    med = {k: statistics.median(v) for k, v in times.items()}
    info = cpu_info()
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not available
        load = float("nan")
    print(f"fastdrop.keras bench: {info.get('model') or 'unknown CPU'}, "
          f"{info.get('usable_cpus')} usable CPUs, fastdrop threads "
          f"{fastdrop.get_num_threads()}, "
          f"load average {load:.2f} at the end")
    print(f"  keras {keras.__version__} (backend {keras.backend.backend()}), jax "
          f"{jax.__version__}, numpy {np.__version__}, fastdrop {fastdrop.__version__}; "
          f"float32, n = {n:,} as ({n // 1024}, 1024), p = {args.p}, training=True; "
          f"median of {args.samples} interleaved samples (each >= {args.budget:g} s); "
          "timed to block_until_ready")
    print()
    w = max(len(k[0]) for k in med)
    print(f"| {'layer':<{w}} | {'mode':<5} | {'median':>10} | {'GB/s':>6} | "
          f"{'vs fastdrop layer':>17} |")
    print(f"|{'-' * (w + 2)}|{'-' * 7}|{'-' * 12}|{'-' * 8}|{'-' * 19}|")
    for (name, mode), t in med.items():
        ours = med[("fastdrop.keras.Dropout", mode)]
        print(f"| {name:<{w}} | {mode:<5} | {t * 1e3:>7.2f} ms | {8 * n / t / 1e9:>6.2f} | "
              f"{t / ours:>16.2f}x |")
    print()
    for mode in ("jit", "eager"):
        s = med[("keras.layers.Dropout", mode)] / med[("fastdrop.keras.Dropout", mode)]
        print(f"{mode}: fastdrop.keras.Dropout is {s:.1f}x faster than keras.layers.Dropout "
              f"(target >= 5x: {'met' if s >= 5 else 'NOT met'})")
    print(f"fastdrop.keras.Dropout equals fastdrop.dropout at seed (1 << 32) | 0 bit for bit: "
          f"{same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
