"""Old build against new build, interleaved: did a change make fastdrop slower?

Two source trees with their extensions built in place (e.g. a ``git
worktree`` of the old HEAD and this checkout) are measured in alternation,
round after round, each round in a fresh process per tree (so both see the
same machine conditions over the run; the order flips every round):

- ``stream``: ``bench/stream_ratio.py``'s interleaved measurement (dropout
  against a same-traffic stream, median of its samples) for each backend and
  thread count, 16 Mi float32 by default;
- ``small``: the best of several timeit repeats of a 1000-element float32
  ``fastdrop.dropout`` with ``out=``, with an int seed and with a Generator
  (the compiled fast path), with ``return_mask=True`` (the fast path since
  the 2026-12-03 fourth session, the general path before), and with a
  ``noise_shape`` (the general path).

Medians over the rounds are printed with new/old ratios (for ``stream``:
new ratio-to-stream over old; for ``small``: new time over old), and each
tree's range over the rounds (a change that makes some processes slow shows
there first)::

    python bench/ab_compare.py --old /tmp/old --new . --rounds 5 --isa avx2
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from isa_env import ISAS, isa_env

_STREAM = r"""
import json, sys
sys.path.insert(0, {tree!r} + "/bench")
import stream_ratio, fastdrop
res = {{}}
for backend in {backends!r}:
    for th in {threads!r}:
        d, name, s = stream_ratio.measure(backend, {size}, th, samples={samples})
        res[f"{{backend}} {{th}}t"] = s / d
print(json.dumps(res))
"""

_SMALL = r"""
import json, timeit
import numpy as np, fastdrop
x = np.ones(1000, np.float32); out = np.empty_like(x); g = fastdrop.Generator(1)
calls = {{
    "int seed, out=": lambda: fastdrop.dropout(x, 0.5, rng=7, out=out),
    "Generator, out=": lambda: fastdrop.dropout(x, 0.5, rng=g, out=out),
    "return_mask=True": lambda: fastdrop.dropout(x, 0.5, rng=7, return_mask=True),
    "noise_shape (general path)": lambda: fastdrop.dropout(x, 0.5, rng=7, noise_shape=(1000,)),
}}
res = {{}}
for k, f in calls.items():
    f()
    t = timeit.Timer(f)
    n = 2000
    res[k] = min(t.repeat(7, n)) / n
print(json.dumps(res))
"""


#: Run first in each measuring process: an editable install's import hook
#: (``__editable__..._finder`` on ``sys.meta_path``) would otherwise win over
#: PYTHONPATH and both "trees" would be the installed one; then check that
#: the fastdrop imported is the tree's.
_PIN = r"""
import os, sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if "__editable__" not in getattr(f, "__module__", "")]
import fastdrop
_tree = os.path.realpath({tree!r})
if not os.path.realpath(fastdrop.__file__).startswith(_tree + os.sep):
    sys.exit(f"imported {{fastdrop.__file__}}, not the tree {{_tree}}")
"""


def _run(tree, code, env):
    tree = os.path.abspath(tree)
    env = dict(env, PYTHONPATH=tree)
    r = subprocess.run([sys.executable, "-c", _PIN.format(tree=tree) + code], env=env,
                       capture_output=True, text=True, cwd=tree)
    if r.returncode:
        sys.exit(f"{tree}: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", default=".")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--backends", default="cython,numba")
    ap.add_argument("--size", type=int, default=16 * 2**20)
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--isa", default=None, choices=ISAS,
                    help="run both trees at this ISA (bench/isa_env.py: the Cython cap and, "
                         "for avx2, Numba's target CPU and features)")
    ap.add_argument("--what", default="stream,small")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    if args.isa:
        env.update(isa_env(args.isa))
    ncpu = len(os.sched_getaffinity(0))
    threads = sorted({1, ncpu})
    trees = {"old": args.old, "new": args.new}
    what = args.what.split(",")
    results = {k: {"old": [], "new": []} for k in what}
    for r in range(args.rounds):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        for which in order:
            tree = trees[which]
            if "stream" in what:
                code = _STREAM.format(tree=os.path.abspath(args.new), backends=args.backends.split(","),
                                      threads=threads, size=args.size, samples=args.samples)
                results["stream"][which].append(_run(tree, code, env))
            if "small" in what:
                results["small"][which].append(_run(tree, _SMALL.format(), env))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"# {args.rounds} rounds, FASTDROP_MAX_ISA={args.isa or '(unset)'}, "
          f"old={args.old} new={args.new}")
    for k in what:
        keys = results[k]["old"][0].keys()
        unit = "ratio to stream" if k == "stream" else "seconds per call"
        print(f"## {k} ({unit}: median over rounds, then new/old)")
        for key in keys:
            ov = [d[key] for d in results[k]["old"]]
            nv = [d[key] for d in results[k]["new"]]
            o, n = statistics.median(ov), statistics.median(nv)
            fmt = (lambda v: f"{v:.3f}") if k == "stream" else (lambda v: f"{v * 1e6:.2f} us")
            print(f"{key:32s} old {fmt(o):>10s}  new {fmt(n):>10s}  new/old {n / o:.3f}"
                  f"   (rounds: old {fmt(min(ov))}-{fmt(max(ov))}, "
                  f"new {fmt(min(nv))}-{fmt(max(nv))})")


if __name__ == "__main__":
    main()
