"""The report: its JSON assembly (derived columns included) and its
renderings: text table, CSV and plot.

Importing this module imports neither matplotlib nor anything heavy;
:func:`plot_report` imports matplotlib when called.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import time
from dataclasses import asdict

import numpy as np

__all__ = ["format_table", "format_csv", "plot_report", "table_rows", "header_lines",
           "build_report", "CSV_FIELDS", "SCHEMA"]

SCHEMA = 1


# ----------------------------------------------------------------------------
# JSON assembly
# ----------------------------------------------------------------------------

def _derive(results):
    """Add ``pct_ceiling`` and ``speedup_vs_numpy`` to every record, from
    the ceiling and the best NumPy idiom of the same (op, dtype, p, size)."""
    groups = {}
    for r in results:
        groups.setdefault((r["op"], r["dtype"], r["p"], r["size"]), []).append(r)
    for rs in groups.values():
        ceil = {r["device"]: r["median_s"] for r in rs if r["kind"] == "ceiling"}
        np_times = [r["median_s"] for r in rs if r["kind"] == "numpy"]
        cupy_times = [r["median_s"] for r in rs if r["kind"] == "cupy"]
        best_np = min(np_times) if np_times else None
        best_cupy = min(cupy_times) if cupy_times else None
        for r in rs:
            # a fastdrop CPU row was timed interleaved with the ceiling kernel:
            # use that paired ceiling time (same machine conditions)
            c = r.get("ceiling_paired_s") or ceil.get(r["device"])
            r["pct_ceiling"] = 100.0 * c / r["median_s"] if c else None
            ref = best_np if r["device"] == "cpu" else best_cupy
            r["speedup_vs_numpy"] = (ref / r["median_s"]
                                     if ref and r["kind"] != "ceiling" else None)


def build_report(cfg, threads, ops, ceiling, gpu_rt, journal, t_start):
    """The JSON-serialisable report of a run of ``cfg`` (see
    :func:`fastdrop._benchmark.run_bench`): ``ceiling`` is its description,
    ``journal`` holds the records, ``t_start`` is when the run began
    (``time.perf_counter()``)."""
    from fastdrop._info import machine_info, numba_info, numba_runs_on, threads_info

    machine = machine_info(threads=threads)
    nb = numba_info()
    machine["numba_threading_layer"] = nb["threading_layer"]
    if nb["installed"]:
        machine["numba_runs_on"] = numba_runs_on(nb, threads_info()["cython_isa"])
    if gpu_rt is not None:
        machine["gpu"] = gpu_rt.describe()
        machine["gpu_runtime"] = gpu_rt.name
    cfg_d = asdict(cfg)
    cfg_d["threads"] = threads
    cfg_d["ops"] = [c.name for c in ops]
    return {
        "schema": SCHEMA,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "config": cfg_d,
        "ceiling": ceiling,
        "operations": {c.name: {"title": c.title,
                                "bytes_per_element": {dt: c.traffic(np.dtype(dt).itemsize)
                                                      for dt in cfg.dtypes}}
                       for c in ops},
        "results": journal.results,
        "warmup": journal.warmup,
        "skipped": journal.skipped,
        "notes": journal.notes,
        "wall_s": time.perf_counter() - t_start,
    }


# ----------------------------------------------------------------------------
# cells
# ----------------------------------------------------------------------------

def _fmt_size(n):
    """``1000 -> '1e3'``, ``25000 -> '2.5e4'``, ``12 -> '12'``."""
    n = int(n)
    if n < 1000:
        return str(n)
    k = int(math.floor(math.log10(n)))
    m = n / 10 ** k
    if abs(m - round(m)) < 1e-9:
        return f"{int(round(m))}e{k}" if round(m) != 1 else f"1e{k}"
    return f"{m:.3g}e{k}"


def _fmt_time(s):
    if s is None:
        return "-"
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if s >= f or unit == "ns":
            v = s / f
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return str(s)


def _fmt_gbps(g):
    if g is None:
        return "-"
    return f"{g:.3g}" if g < 100 else f"{g:.0f}"


def _fmt_pct(p):
    return "-" if p is None else f"{p:.0f}%" if p >= 1 else f"{p:.1g}%"


def _fmt_speedup(s):
    return "-" if s is None else f"{s:.2f}x" if s < 10 else f"{s:.1f}x"


_KIND_ORDER = {"ceiling": 0, "fastdrop": 1, "torch": 2, "cupy": 3, "numpy": 4}


# ----------------------------------------------------------------------------
# text table
# ----------------------------------------------------------------------------

def table_rows(report):
    """The table's rows: ``(group, cells)`` per result, in display order.

    ``group`` is ``(op, dtype, p)``; ``cells`` the formatted strings
    ``size, implementation, median, GB/s, % ceiling, vs NumPy``.  Every
    cell is computed from one record of ``report["results"]``.
    """
    res = sorted(report["results"], key=lambda r: (
        [c for c in report["config"]["ops"]].index(r["op"]), r["dtype"], r["p"], r["size"],
        r["device"], _KIND_ORDER.get(r["kind"], 9), r["median_s"]))
    out = []
    for r in res:
        out.append(((r["op"], r["dtype"], r["p"]),
                    [_fmt_size(r["size"]), r["label"], _fmt_time(r["median_s"]),
                     _fmt_gbps(r["gbps"]), _fmt_pct(r["pct_ceiling"]),
                     _fmt_speedup(r["speedup_vs_numpy"])], r))
    return out


def machine_label(m):
    """``"AMD EPYC, 2 cores, 2 threads, pool: POSIX threads"``: the machine
    line of a report's metadata ``m`` (the pool runs OpenMP threads only in
    Windows builds)."""
    return (f"{m['cpu']}, {m['cores']} cores, {m['threads']} thread"
            f"{'s' if m['threads'] != 1 else ''}, "
            f"pool: {'OpenMP' if m['openmp'] else 'POSIX'} threads")


def header_lines(report):
    """Machine and run description lines that head the table."""
    m = report["machine"]
    v = m["versions"]
    libs = [f"fastdrop {v['fastdrop']}", f"numpy {v['numpy']}"]
    for k in ("numba", "torch", "cupy"):
        libs.append(f"{k} {v.get(k) or 'not installed'}")
    cfg = report["config"]
    lines = [
        f"fastdrop bench: {machine_label(m)}",
        "  " + ", ".join(libs) + f", Python {v['python']}",
    ]
    la = m.get("load_average")
    if la is not None and la > (m.get("cores") or 1):
        lines.append(f"  WARNING: the machine was busy (load average {la:.2f} on "
                     f"{m['cores']} cores): times are slow and noisy, with more than one "
                     "thread above all")
    if m.get("numba_runs_on"):
        lines.append(f"  numba: {m['numba_runs_on']}")
    if m.get("gpu"):
        lines.append(f"  GPU: {m['gpu']} (via {m.get('gpu_runtime')}; times synchronised, "
                     "data already on the device)")
    lines.append(f"  ceiling: {report['ceiling']['label']}; same bytes read+written as "
                 "the operation; fastdrop CPU rows' % ceil uses the ceiling kernel timed "
                 "interleaved with them")
    lines.append(f"  median of up to {cfg['repeat']} samples (each >= "
                 f"{_fmt_time(cfg['min_time'])}); warm-up / JIT compilation excluded "
                 "(listed below)")
    lines.append("  GB/s = bytes the operation must move / median time; vs NumPy = best "
                 "NumPy idiom's time / this time" + ("; GPU rows: vs best CuPy idiom"
                                                    if m.get("gpu") else ""))
    return lines


def format_table(report):
    """The report as a readable text table (what ``--format table`` prints).

    Examples
    --------
    >>> from fastdrop._benchmark import BenchConfig, run_bench
    >>> rep = run_bench(BenchConfig(sizes=[100], ops=["mask_packed"], backends=[],
    ...                 torch=False, gpu=False, repeat=3, min_time=1e-5))
    >>> print(format_table(rep).splitlines()[0][:15])
    fastdrop bench:
    """
    lines = header_lines(report)
    lines += _result_lines(report)
    lines += _warmup_lines(report["warmup"])
    if report["skipped"]:
        lines.append("")
        lines.append("not measured:")
        for s in report["skipped"]:
            lines.append(f"  {s['what']}: {s['reason']}")
    lines.append("")
    wsum = sum(w["first_call_s"] for w in report["warmup"])
    lines.append(f"total wall time {report['wall_s']:.1f} s, of which {wsum:.1f} s in "
                 "warm-up calls (JIT compilation, cache loads)")
    return "\n".join(lines)


def _result_lines(report):
    """One block per (op, dtype, p): its title, the column heads and a row
    per result, sizes separated by a blank line."""
    titles = {k: v["title"] for k, v in report.get("operations", {}).items()}
    head = ["size", "implementation", "median", "GB/s", "% ceil", "vs NumPy"]
    rows = table_rows(report)
    widths = [len(h) for h in head]
    for _, cells, _ in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells)]
    align = ["r", "l", "r", "r", "r", "r"]

    def fmt(cells):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                         for c, w, a in zip(cells, widths, align)).rstrip()

    lines = []
    group = None
    last_size = None
    for g, cells, _ in rows:
        if g != group:
            group = g
            last_size = None
            op, dt, p = g
            lines.append("")
            lines.append(f"{op} [{dt}, p={p:g}]: {titles.get(op, '')}")
            lines.append(fmt(head))
            lines.append(fmt(["-" * w for w in widths]))
        shown = list(cells)
        if cells[0] == last_size:
            shown[0] = ""
        elif last_size is not None:
            lines.append("")
        last_size = cells[0]
        lines.append(fmt(shown))
    return lines


def _warmup_lines(warmup):
    """The warm-up (first call) times of fastdrop's and PyTorch's rows."""
    warm = [w for w in warmup if w["kind"] in ("fastdrop", "torch")]
    if not warm:
        return []
    lines = ["", "warm-up (first call at the first size, excluded from the medians; "
                 "includes JIT compilation):"]
    lw = max(len(w["label"]) for w in warm)
    for w in warm:
        steady = f" (then {_fmt_time(w['steady_s'])})" if w.get("steady_s") else ""
        lines.append(f"  {w['label']:<{lw}}  {w['op']:<13} {w['dtype']:<8} "
                     f"{_fmt_size(w['size']):>5}: {_fmt_time(w['first_call_s'])}{steady}")
    return lines


# ----------------------------------------------------------------------------
# CSV
# ----------------------------------------------------------------------------

CSV_FIELDS = ["op", "dtype", "p", "size", "impl", "label", "kind", "device", "median_s",
              "min_s", "gbps", "pct_ceiling", "speedup_vs_numpy", "number", "repeat",
              "bytes", "cpu", "threads"]


def format_csv(report):
    """One CSV row per measurement (header first), machine columns included.

    Examples
    --------
    >>> import csv, io
    >>> from fastdrop._benchmark import BenchConfig, run_bench
    >>> rep = run_bench(BenchConfig(sizes=[100], ops=["forward"], backends=[],
    ...                 torch=False, gpu=False, repeat=3, min_time=1e-5))
    >>> rows = list(csv.DictReader(io.StringIO(format_csv(rep))))
    >>> rows[0]["op"]
    'forward'
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore",
                       lineterminator="\n")
    w.writeheader()
    m = report["machine"]
    for _, _, r in table_rows(report):
        row = dict(r)
        row["cpu"] = m["cpu"]
        row["threads"] = m["threads"]
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


# ----------------------------------------------------------------------------
# plot
# ----------------------------------------------------------------------------

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
            "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"]


def plot_report(report, path=None, dpi=110):
    """Throughput (GB/s) against size, one panel per operation, one line per
    implementation, the ceiling drawn dashed.  Log-log axes.

    Uses matplotlib's object-oriented API with the Agg canvas (no pyplot,
    no global backend change); matplotlib is imported only here.

    Parameters
    ----------
    report : dict
        From :func:`run_bench` (or its JSON).
    path : str or path-like, optional
        Where to save a PNG.

    Returns
    -------
    matplotlib.figure.Figure
        The figure; its single figure legend (``fig.legends[0]``) names every
        implementation and the ceiling.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ops = report["config"]["ops"]
    combos = []
    for r in report["results"]:
        c = (r["dtype"], r["p"])
        if c not in combos:
            combos.append(c)
    panels = [(op, combo) for combo in combos for op in ops]
    ncols = (2 if len(ops) > 1 else 1) if len(combos) <= 1 else len(ops)
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = Figure(figsize=(6.2 * ncols, 3.9 * nrows + 1.2), dpi=dpi)
    FigureCanvasAgg(fig)
    names = _plot_names(report["results"])
    colours = _plot_colours(names)
    titles = {k: v["title"] for k, v in report.get("operations", {}).items()}
    handles = {}
    for i, (op, (dt, p)) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for name in names:
            _plot_line(ax, report["results"], op, name, dt, p, colours[name], handles)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{titles.get(op, op)}\n[{dt}, p={p:g}]", fontsize=9)
        ax.set_xlabel("elements")
        ax.set_ylabel("GB/s (bytes moved / time)")
        ax.grid(True, which="major", alpha=0.3)
    _finish_figure(fig, report["machine"], handles)
    if path is not None:
        fig.savefig(path, format="png")
    return fig


def _plot_names(results):
    """Implementation names in legend order: ceilings first, then by kind."""
    names = []
    for r in sorted(results, key=lambda r: (_KIND_ORDER.get(r["kind"], 9), r["device"])):
        if r["impl"] not in names:
            names.append(r["impl"])
    return names


def _plot_colours(names):
    """Black / dim gray for the ceilings, the palette in turn for the rest."""
    colours = {}
    k = 0
    for name in names:
        if name.startswith("ceiling"):
            colours[name] = "black" if name == "ceiling" else "dimgray"
        else:
            colours[name] = _PALETTE[k % len(_PALETTE)]
            k += 1
    return colours


def _plot_line(ax, results, op, name, dt, p, colour, handles):
    """Draw GB/s against size of implementation ``name`` in one panel; its
    line joins ``handles`` (label -> line) for the figure legend."""
    rs = sorted((r for r in results if r["op"] == op
                 and r["impl"] == name and r["dtype"] == dt and r["p"] == p),
                key=lambda r: r["size"])
    if not rs:
        return
    is_ceil = rs[0]["kind"] == "ceiling"
    label = rs[0]["label"]
    if is_ceil:
        label = ("GPU ceiling" if rs[0]["device"] == "gpu" else "ceiling") + \
            " (same-traffic stream)"
    numpy_like = rs[0]["kind"] in ("numpy", "cupy")
    (line,) = ax.plot([r["size"] for r in rs], [r["gbps"] for r in rs],
                      linestyle="--" if is_ceil else (":" if numpy_like else "-"),
                      marker=None if is_ceil else "o", markersize=3.5,
                      linewidth=2.2 if is_ceil else 1.4, color=colour,
                      label=label)
    handles.setdefault(label, line)


def _finish_figure(fig, m, handles):
    """Title (machine ``m``), the one figure legend and the layout."""
    fig.suptitle(f"fastdrop {m['versions']['fastdrop']}: {machine_label(m)}", fontsize=10)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center",
               ncol=min(4, max(1, len(handles))), fontsize=8, frameon=False)
    nleg_rows = math.ceil(len(handles) / 4)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, min(0.4, (0.25 + 0.17 * nleg_rows) / height), 1,
                           1 - 0.35 / height))
