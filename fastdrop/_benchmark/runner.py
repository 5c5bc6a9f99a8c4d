""":func:`run_bench`: one benchmark run, from configuration to report."""

from __future__ import annotations

import os
import time

import fastdrop
from fastdrop._benchmark.ceiling import describe, make_ceilings
from fastdrop._benchmark.implementations import note_reference_limit, select_implementations
from fastdrop._benchmark.report import _derive, build_report
from fastdrop._benchmark.sweep import Journal, Sweep, attach_steady, plan_sizes, thread_settings
from fastdrop._comparisons import COMPARISONS, get_comparison

__all__ = ["run_bench"]


def run_bench(config, log=None, progress=False, progress_file=None):
    """Run the benchmark described by ``config``.

    Parameters
    ----------
    config : BenchConfig
    log : callable, optional
        ``log(message)`` for notes (default: discard).
    progress : bool
        Draw a progress bar on ``progress_file`` (default ``sys.stderr``).

    Returns
    -------
    dict
        The report: ``machine``, ``config``, ``ceiling``, ``results`` (one
        record per measurement, the ceiling's included), ``warmup``,
        ``skipped``, ``notes`` and ``wall_s``.  JSON-serialisable.
    """
    t_start = time.perf_counter()
    cfg = config
    journal = Journal(log)
    load = load_average()
    if load is not None and load > (os.cpu_count() or 1):
        journal.note(f"warning: the machine is busy (load average {load:.2f} on "
                     f"{os.cpu_count()} cores): times will be slow and noisy, with more "
                     "than one thread above all")
    threads = int(cfg.threads) if cfg.threads else fastdrop.get_num_threads()
    ops = [get_comparison(o) for o in cfg.ops] if cfg.ops else list(COMPARISONS)
    sel = select_implementations(cfg, ops, journal)
    with thread_settings(threads, sel.torch, journal.note):
        ceilings = make_ceilings(cfg.ceiling, cfg.timing(),
                                 sel.gpu_rt if sel.gpu_impls else None, journal.note)
        note_reference_limit(cfg, sel.impls, journal.note)
        plan = plan_sizes(cfg, journal)
        Sweep(cfg, ops, sel, ceilings, journal).run(plan, progress, progress_file)
    _derive(journal.results)
    attach_steady(journal.warmup, journal.results)
    rep = build_report(cfg, threads, ops, describe(ceilings[0].kernels), sel.gpu_rt,
                       journal, t_start)
    rep["machine"]["load_average"] = load
    return rep


def load_average():
    """The 1-minute load average before the run, or None where the OS has
    none (reported, and warned about above the core count)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None
