"""fastdrop.torch against torch.nn.functional.dropout on CPU tensors: the
issue-15 table (float32, 1 thread and all threads, one run, interleaved).

For each size and thread count it times, sample for sample alternating the
two libraries (so a busy machine slows both alike):

- ``fwd``: ``dropout(x, p)`` on a tensor without grad;
- ``fwd+bwd``: ``dropout(x, p).backward(g)`` with a contiguous gradient ``g``
  (``x`` requires grad);
- ``fwd+bwd stride-0``: ``dropout(x, p).backward(g0)`` with ``g0`` an
  expanded (stride-0) tensor, the gradient ``y.sum().backward()`` hands over;

with ``generator=None`` for both (seeds drawn from torch's RNG), and prints
the medians and the ratio fastdrop / torch (below 1: fastdrop is faster).

Usage (``fastdrop bench-torch`` runs :func:`main`; so does
``python bench/torch_dropin.py``)::

    fastdrop bench-torch                                # sizes 1e3..1e6
    fastdrop bench-torch --sizes 1e3,1e5 --format markdown
"""

from __future__ import annotations

import argparse
import os
import statistics

from .._info import cpu_info
from .timing import per_call


def measure(sizes, threads, p=0.5, samples=7, budget=0.02):
    """Rows ``(threads, n, case, torch_s, fastdrop_s)`` (medians)."""
    import torch

    import fastdrop
    import fastdrop.torch as fdt

    F = torch.nn.functional
    rows = []
    for nt in threads:
        torch.set_num_threads(nt)
        fastdrop.set_num_threads(nt)
        for n in sizes:
            x = torch.randn(n)
            xg = torch.randn(n, requires_grad=True)
            g = torch.randn(n)
            g0 = torch.ones(()).expand(n)
            cases = {
                "fwd": (lambda: F.dropout(x, p), lambda: fdt.dropout(x, p)),
                "fwd+bwd": (lambda: F.dropout(xg, p).backward(g),
                            lambda: fdt.dropout(xg, p).backward(g)),
                "fwd+bwd stride-0": (lambda: F.dropout(xg, p).backward(g0),
                                     lambda: fdt.dropout(xg, p).backward(g0)),
            }
            for name, (ft, ff) in cases.items():
                tt, tf = [], []
                for _ in range(samples):  # interleaved, sample for sample
                    tt.append(per_call(ft, budget))
                    tf.append(per_call(ff, budget))
                rows.append((nt, n, name, statistics.median(tt), statistics.median(tf)))
                xg.grad = None
    return rows


def render(rows, fmt="text"):
    lines = []
    if fmt == "markdown":
        lines.append("| threads | elements | case | torch | fastdrop.torch | ratio |")
        lines.append("|---|---|---|---|---|---|")
        for nt, n, name, a, b in rows:
            lines.append(f"| {nt} | {n:.0e} | {name} | {a * 1e6:.1f} us | {b * 1e6:.1f} us "
                         f"| {b / a:.2f} |")
    else:
        for nt, n, name, a, b in rows:
            lines.append(f"threads={nt} n={n:>9} {name:<17} torch {a * 1e6:9.1f} us  "
                         f"fastdrop.torch {b * 1e6:9.1f} us  ratio {b / a:5.2f}")
    return "\n".join(lines)


def main(argv=None, prog=None):
    """Parse ``argv``, measure and print the table; returns 0."""
    ap = argparse.ArgumentParser(
        prog=prog, description="fastdrop.torch against torch.nn.functional.dropout on CPU "
        "tensors (float32; forward, forward + backward, and a stride-0 gradient), the two "
        "timed sample for sample in one run.")
    ap.add_argument("--sizes", default="1e3,1e4,1e5,1e6",
                    help="comma-separated element counts (default: %(default)s)")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}",
                    help="comma-separated thread counts (default: %(default)s)")
    ap.add_argument("--samples", type=int, default=7,
                    help="interleaved samples per cell; medians are reported (default: 7)")
    ap.add_argument("--format", choices=("text", "markdown"), default="text",
                    help="output format (default: text)")
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    threads = sorted({int(t) for t in args.threads.split(",")})
    import torch

    print(f"{cpu_info()['model']}, {os.cpu_count()} cores; torch {torch.__version__}; float32, p=0.5, "
          f"medians of {args.samples} interleaved samples; ratio = fastdrop.torch / torch")
    print(render(measure(sizes, threads, samples=args.samples), args.format))
    return 0
