"""Command line: ``fastdrop bench`` and ``fastdrop info``.

Run as ``fastdrop ...`` (console script) or ``python -m fastdrop ...``.
Results go to standard output; progress, notes and errors to standard
error, so ``fastdrop bench --format json > results.json`` stores clean JSON.

Examples
--------
>>> from fastdrop.__main__ import build_parser
>>> args = build_parser().parse_args(["bench", "--quick", "--format", "json"])
>>> args.command, args.quick, args.format
('bench', True, 'json')
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

__all__ = ["main", "build_parser"]

_DTYPES = ("float16", "float32", "float64")



def _seed(text):
    """argparse type: an int seed in [0, 2**64 - 2) (inputs use seed + 1, + 2)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= v < 2**64 - 2:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2**64 - 2), got {v}")
    return v

def _csv_list(parse, what):
    def f(text):
        items = [t.strip() for t in str(text).split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list of {what}")
        return [parse(t) for t in items]
    f.__name__ = what  # argparse names the type in its messages
    return f


def _size(t):
    try:
        v = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {t!r}") from None
    if not (v == v) or v < 1 or v > 1e11 or v != int(v):
        raise argparse.ArgumentTypeError(
            f"size must be a whole number of elements between 1 and 1e11, got {t!r}")
    return int(v)


def _dtype(t):
    import numpy as np

    try:
        name = np.dtype(t).name
    except TypeError:
        raise argparse.ArgumentTypeError(f"unknown dtype {t!r}") from None
    if name not in _DTYPES:
        raise argparse.ArgumentTypeError(f"dtype must be one of {', '.join(_DTYPES)}, got {t!r}")
    return name


def _prob(t):
    try:
        v = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {t!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"p must be in [0, 1), got {t!r}")
    return v


def _op(t):
    from fastdrop._comparisons import COMPARISONS

    names = [c.name for c in COMPARISONS]
    if t not in names:
        raise argparse.ArgumentTypeError(
            f"unknown operation {t!r}; choose from {', '.join(names)}")
    return t


def _backend(t):
    from fastdrop._dispatch import BACKENDS

    if t not in BACKENDS:
        raise argparse.ArgumentTypeError(
            f"unknown backend {t!r}; choose from {', '.join(BACKENDS)} (or 'all')")
    return t


def _backends(text):
    if str(text).strip() == "all":
        return None
    return _csv_list(_backend, "backends")(text)


def _positive_int(t):
    try:
        v = int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {t!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {t!r}")
    return v


def _seconds(t):
    try:
        v = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {t!r}") from None
    if not 0.0 <= v < 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds, got {t!r}")
    return v


def build_parser():
    """The argument parser of the ``fastdrop`` command."""
    parser = argparse.ArgumentParser(
        prog="fastdrop",
        description="fastdrop: dropout at memory speed. Benchmarks and installation info.")
    sub = parser.add_subparsers(dest="command", metavar="{bench,bench-torch,info}")

    b = sub.add_parser(
        "bench", help="time fastdrop against NumPy, PyTorch and a streaming ceiling",
        description=(
            "Time every operation of fastdrop's comparison table on every available "
            "backend, the NumPy idioms and PyTorch, next to a streaming kernel that "
            "moves the same bytes (the ceiling). Medians of repeated runs; warm-up and "
            "JIT compilation are timed separately. Results on stdout, progress on "
            "stderr."))
    b.add_argument("--quick", action="store_true",
                   help="sizes 1e3,1e5,1e7, float32, p=0.5, 5 short samples "
                        "(explicit options override)")
    b.add_argument("--sizes", type=_csv_list(_size, "sizes"), metavar="LIST",
                   help="comma-separated element counts, e.g. 1e3,1e6 "
                        "(default 1e3..1e8, one per decade)")
    b.add_argument("--dtypes", type=_csv_list(_dtype, "dtypes"), metavar="LIST",
                   help="comma-separated: float16,float32,float64 (default float32)")
    b.add_argument("--p", dest="ps", type=_csv_list(_prob, "probabilities"), metavar="LIST",
                   help="comma-separated drop probabilities in [0, 1) (default 0.5)")
    b.add_argument("--ops", type=_csv_list(_op, "operations"), metavar="LIST",
                   help="forward,forward_mask,alpha_dropout,gaussian_dropout,gaussian_noise,drop_path,"
                        "mask_packed,apply_mask "
                        "(default all)")
    b.add_argument("--backends", type=_backends, metavar="LIST",
                   help="fastdrop backends to time: cython,numba,reference,cuda or 'all' "
                        "(default: every available one)")
    b.add_argument("--no-numpy", action="store_true", help="skip the NumPy idioms")
    b.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    b.add_argument("--no-gpu", action="store_true", help="skip GPU implementations")
    b.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads for fastdrop, Numba and PyTorch (default: all usable CPUs)")
    b.add_argument("--repeat", type=_positive_int, metavar="N",
                   help="timed samples per measurement; the median is reported (default 7)")
    b.add_argument("--min-time", type=_seconds, metavar="SECONDS",
                   help="minimum duration of one sample; tiny calls are looped "
                        "(default 0.01)")
    b.add_argument("--max-time", type=_seconds, metavar="SECONDS",
                   help="soft time budget per measurement (default 5)")
    b.add_argument("--ceiling", choices=("auto", "cython", "numba", "numpy"),
                   help="streaming kernel for the ceiling (default auto: fastest of the "
                        "compiled kernel and NumPy)")
    b.add_argument("--reference-max-size", type=_size, metavar="N",
                   help="largest size at which the slow pure-NumPy reference backend is "
                        "timed (default 1e6)")
    b.add_argument("--seed", type=_seed, help="seed for inputs and masks (default 12345)")
    b.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="output format on stdout (default table)")
    b.add_argument("--plot", metavar="FILE.png",
                   help="also save a throughput-vs-size plot (needs matplotlib)")
    b.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no notes on stderr")
    b.set_defaults(subparser=b)

    sub.add_parser("bench-torch", add_help=False,
                   help="fastdrop.torch against torch.nn.functional.dropout (forward, "
                        "forward + backward, stride-0 gradients; --help for options)")

    i = sub.add_parser("info", help="versions, backends, threads, CPU and GPU",
                       description="Report fastdrop's installation: versions, which backends "
                                   "are available (and why not), the thread count and where it "
                                   "comes from, CPU features, GPUs and the Numba cache.")
    i.add_argument("--format", choices=("text", "json"), default="text")
    i.add_argument("--compile-times", action="store_true",
                   help="also report Numba compile / cache-load times (may compile the "
                        "kernels: seconds)")
    return parser


def _bench_config(args, parser):
    from fastdrop._benchmark import BenchConfig

    overrides = dict(
        sizes=args.sizes, dtypes=args.dtypes, ps=args.ps, ops=args.ops, backends=args.backends,
        threads=args.threads, repeat=args.repeat, min_time=args.min_time,
        max_time=args.max_time, ceiling=args.ceiling,
        reference_max_size=args.reference_max_size, seed=args.seed)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    overrides.update(numpy=not args.no_numpy, torch=not args.no_torch, gpu=not args.no_gpu)
    if args.quick:
        return BenchConfig.quick_preset(**overrides)
    return BenchConfig(**overrides)


def _cmd_bench(args, parser):
    parser = args.subparser
    from fastdrop import _benchmark

    cfg = _bench_config(args, parser)
    if args.plot:
        try:
            import matplotlib  # noqa: F401 - fail before a long run, not after
        except ImportError:
            parser.error("--plot needs matplotlib (pip install matplotlib)")
        if not str(args.plot).lower().endswith(".png"):
            parser.error(f"--plot writes a PNG file; give a name ending in .png, got "
                         f"{args.plot!r}")

    def log(msg):
        if not args.quiet:
            print(f"fastdrop bench: {msg}", file=sys.stderr, flush=True)

    progress = (not args.quiet) and sys.stderr.isatty()
    try:
        report = _benchmark.run_bench(cfg, log=log, progress=progress)
    except (ValueError, TypeError, RuntimeError) as e:
        print(f"fastdrop bench: error: {e}", file=sys.stderr)
        return 1
    report["command"] = "fastdrop " + " ".join(shlex.quote(a) for a in args.argv)
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
    elif args.format == "csv":
        sys.stdout.write(_benchmark.format_csv(report))
    else:
        sys.stdout.write(_benchmark.format_table(report) + "\n")
    sys.stdout.flush()
    if args.plot:
        _benchmark.plot_report(report, args.plot)
        log(f"wrote {args.plot}")
    return 0


def _cmd_info(args):
    from fastdrop import _info

    info = _info.collect_info(compile_times=args.compile_times)
    if args.format == "json":
        sys.stdout.write(json.dumps(info, indent=1, default=str) + "\n")
    else:
        sys.stdout.write(_info.format_info(info) + "\n")
    return 0


def main(argv=None):
    """Entry point of the ``fastdrop`` console script.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status (argument errors exit with status 2 via argparse).
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench-torch"]:  # its own options (fastdrop._benchmark.torch_dropin)
        from ._benchmark import torch_dropin

        return torch_dropin.main(argv[1:], prog="fastdrop bench-torch")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command == "bench":
        return _cmd_bench(args, parser)
    if args.command == "info":
        return _cmd_info(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
