"""
Benchmark results: throughput against array size
=================================================

``fastdrop bench --format json`` writes every measurement of a benchmark run
to a JSON report; the one behind the project's README and this page is
``docs/bench.json``.  This example only reads that file (nothing is timed
while the documentation is built) and plots two views of it:

- the forward pass ``y = dropout(x, p=0.5)`` in GB/s (bytes read and written
  per second) against the number of float32 elements, for fastdrop's
  backends, PyTorch, the NumPy idioms and the *ceiling*: a streaming kernel
  ``y = x * s`` that moves the same bytes, timed in the same run;
- the speedup over the best NumPy idiom for each operation at the largest
  size.

How the numbers are taken is described in :doc:`/benchmarking`; run
``fastdrop bench --quick`` to measure your own machine.
"""

# %%
# The report
# ----------
import json
import pathlib

try:
    HERE = pathlib.Path(__file__).resolve().parent
except NameError:   # sphinx-gallery runs examples in their directory, without __file__
    HERE = pathlib.Path.cwd()
report = json.loads((HERE.parent / "docs" / "bench.json").read_text())

m = report["machine"]
print(f"{report['command']}  ({report['timestamp'][:10]})")
print(f"{m['cpu']}, {m['cores']} cores, {m['threads']} threads, OpenMP "
      f"{'on' if m['openmp'] else 'off'}; "
      + ", ".join(f"{k} {v}" for k, v in m["versions"].items()
                  if k in ("fastdrop", "numpy", "numba", "torch") and v))
print(f"{len(report['results'])} measurements; ceiling: {report['ceiling']['label']}")
for s in report["skipped"]:
    print(f"not measured: {s['what']} ({s['reason']})")


def series(impl, op="forward"):
    """(sizes, GB/s) of one implementation and operation, by size."""
    rows = sorted((r for r in report["results"] if r["impl"] == impl and r["op"] == op),
                  key=lambda r: r["size"])
    return [r["size"] for r in rows], [r["gbps"] for r in rows]


# %%
# Forward pass, and speedup over NumPy per operation
# --------------------------------------------------
# For small arrays the fixed cost of a call (argument checks, thread start-up)
# dominates.  In cache (10^5 and 10^6 elements) the streaming kernel is far
# ahead of every dropout: making the random bits costs more than moving data
# that stays in cache.  At 16.8 million elements (64 MiB per array) memory
# traffic dominates and the compiled backends reach the streaming kernel, or
# pass it: they write large outputs with non-temporal stores, which the
# streaming kernel does not.
import matplotlib.pyplot as plt
import numpy as np

styles = {
    "ceiling": ("ceiling: streaming y = x * s", "black", "--"),
    "cython": ("fastdrop[cython]", "tab:blue", "-"),
    "numba": ("fastdrop[numba]", "tab:orange", "-"),
    "reference": ("fastdrop[reference] (pure NumPy)", "tab:gray", "-"),
    "fastdrop-torch": ("fastdrop.torch (CPU tensor)", "tab:purple", "-"),
    "torch": ("torch.nn.functional.dropout", "tab:red", "-"),
    "numpy-f32": ("NumPy, float32 uniforms", "tab:green", ":"),
    "numpy-inplace": ("NumPy, in place with out=", "tab:olive", ":"),
}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5.4), layout="constrained")
for impl, (label, colour, ls) in styles.items():
    sizes, gbps = series(impl)
    if sizes:
        ceiling = impl == "ceiling"
        ax1.plot(sizes, gbps, ls, color=colour, marker=None if ceiling else "o",
                 ms=3.5, lw=2 if ceiling else 1.4, label=label)
ax1.set_xscale("log")
ax1.set_yscale("log")
ax1.set_xlabel("float32 elements")
ax1.set_ylabel("GB/s (bytes moved / median time)")
ax1.set_title("dropout forward, p = 0.5")
ax1.grid(True, alpha=0.3)
fig.legend(*ax1.get_legend_handles_labels(), loc="outside lower center", ncol=4,
           fontsize=8, frameon=False)

largest = max(r["size"] for r in report["results"])
ops = report["config"]["ops"]
impls = [("cython", "fastdrop[cython]", "tab:blue"),
         ("numba", "fastdrop[numba]", "tab:orange"),
         ("torch", "torch (CPU)", "tab:red")]
width = 0.27


def at_largest(impl, op):
    """The result of ``impl`` for ``op`` at the largest size, or None."""
    return next((r for r in report["results"]
                 if r["impl"] == impl and r["op"] == op and r["size"] == largest), None)


for k, (impl, label, colour) in enumerate(impls):
    speed = [r["speedup_vs_numpy"] if (r := at_largest(impl, op)) else np.nan
             for op in ops]
    ax2.bar(np.arange(len(ops)) + (k - 1) * width, speed, width, color=colour,
            label=label)
ax2.axhline(1, color="black", lw=1)
ax2.set_yscale("log")
ax2.set_xticks(np.arange(len(ops)), [op.replace("_", "\n") for op in ops], fontsize=8)
ax2.set_ylabel("speedup over the best NumPy idiom")
ax2.set_title(f"every operation at {largest:,} elements (no bar: not available)")
ax2.set_ylim(0.1, 300)                     # room for the legend above the bars
ax2.legend(fontsize=8, ncol=3, loc="upper center")
fig.suptitle(f"fastdrop {m['versions']['fastdrop']} on {m['cpu']}, {m['cores']} cores, "
             f"{m['threads']} threads ({report['timestamp'][:10]})")
plt.show()

# %%
# The largest size as a table
# ---------------------------
# Percent of the streaming ceiling (moving the same bytes) and speedup over
# the best NumPy idiom; the packed mask writes n/8 bytes and is
# compute-bound, so it has no ceiling.
print(f"{largest:,} float32 elements: % of the ceiling, speedup over NumPy")
print(f"{'operation':<18}" + "".join(f"{impl:>20}" for impl, _, _ in impls))
for op in ops:
    cells = []
    for impl, _, _ in impls:
        r = at_largest(impl, op)
        if r is None:
            cells.append("-")
        else:
            pct = "-" if op == "mask_packed" else f"{r['pct_ceiling']:.0f}%"
            cells.append(f"{pct}, {r['speedup_vs_numpy']:.2f}x")
    print(f"{op:<18}" + "".join(f"{c:>20}" for c in cells))
