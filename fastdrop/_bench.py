"""Compatibility module: the benchmark engine behind ``fastdrop bench`` now
lives in the package :mod:`fastdrop._benchmark` (one module per concern:
config, timing, implementations, ceiling, sweep, progress, report, runner).

This module re-exports the names that used to be defined here, so that
``from fastdrop._bench import ...`` keeps working.  New code should import
from :mod:`fastdrop._benchmark` and its modules.  Note that replacing one of
these names here (``monkeypatch.setattr(_bench, ...)``) does not change what
the engine calls: patch the module that defines it instead.

Examples
--------
>>> from fastdrop import _bench, _benchmark
>>> _bench.run_bench is _benchmark.run_bench
True
"""

from fastdrop._benchmark import __all__  # noqa: F401 - the same public names
from fastdrop._benchmark.ceiling import _NUMPY_STREAM, _Ceiling, _ceiling_kernels
from fastdrop._benchmark.config import DEFAULT_SIZES, QUICK_SIZES, BenchConfig
from fastdrop._benchmark.implementations import (
    _check_some_backend_runs,
    _Context,
    _fastdrop_impl,
    _find_gpu,
    _GpuRuntime,
    _gpu_impls,
    _Impl,
    _import_torch,
    _may_have_gpu,
    _numpy_impl,
    _oneline,
    _torch_adapter_impl,
    _torch_cuda,
    _torch_impl,
)
from fastdrop._benchmark.progress import _NoBar, _progress, _SimpleBar
from fastdrop._benchmark.report import (
    _KIND_ORDER,
    CSV_FIELDS,
    SCHEMA,
    _derive,
    _fmt_gbps,
    _fmt_pct,
    _fmt_size,
    _fmt_speedup,
    _fmt_time,
    format_csv,
    format_table,
    header_lines,
    plot_report,
    table_rows,
)
from fastdrop._benchmark.runner import run_bench
from fastdrop._benchmark.sweep import _mem_available, _record, _set_threads, _working_set
from fastdrop._benchmark.timing import _first_call, _noop, _per_call, time_call
