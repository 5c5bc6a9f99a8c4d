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
  and writes the same number of bytes as the operation.

Every figure is measured in the run that reports it: medians of repeated
samples, the inner loop count adapting so that a sample of a tiny call lasts
at least ``min_time``.  The first call of each implementation, operation and
dtype (which includes Numba's JIT compilation) is timed separately and
reported as warm-up, never mixed into the medians.

Modules:

- :mod:`~fastdrop._benchmark.config`: :class:`BenchConfig`, the ``--quick`` preset;
- :mod:`~fastdrop._benchmark.timing`: :func:`time_call` (medians of samples);
- :mod:`~fastdrop._benchmark.implementations`: what is timed (fastdrop, NumPy,
  PyTorch, GPU);
- :mod:`~fastdrop._benchmark.ceiling`: the same-traffic streaming kernel;
- :mod:`~fastdrop._benchmark.sweep`: the loop over sizes, dtypes, p and
  operations, memory planning, threads, warm-up;
- :mod:`~fastdrop._benchmark.progress`: the progress bar;
- :mod:`~fastdrop._benchmark.report`: the JSON report, table, CSV and plot;
- :mod:`~fastdrop._benchmark.runner`: :func:`run_bench`, which ties them together.

Importing this package imports neither Numba, PyTorch nor matplotlib.

Examples
--------
>>> from fastdrop._benchmark import BenchConfig, run_bench, format_table
>>> cfg = BenchConfig(sizes=[1000], ops=["forward"], backends=["reference"],
...                   torch=False, gpu=False, repeat=3, min_time=1e-4)
>>> report = run_bench(cfg)
>>> sorted({r["impl"] for r in report["results"]})
['ceiling', 'numpy-f32', 'numpy-f64', 'numpy-inplace', 'reference']
>>> "forward" in format_table(report)
True
"""

from fastdrop._benchmark.config import DEFAULT_SIZES, QUICK_SIZES, BenchConfig
from fastdrop._benchmark.report import format_csv, format_table, plot_report
from fastdrop._benchmark.runner import run_bench
from fastdrop._benchmark.timing import time_call

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
