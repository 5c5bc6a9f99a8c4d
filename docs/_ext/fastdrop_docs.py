"""Sphinx helpers for fastdrop's documentation (loaded by docs/conf.py).

- ``.. fastdrop-cli-help:: [subcommand]``: the ``--help`` text of the
  ``fastdrop`` command (or one subcommand), produced by the real argument
  parsers at build time, so the CLI page cannot drift from the code.
- ``.. fastdrop-backends::``: :func:`fastdrop.get_backends` on the building
  machine.
- ``.. fastdrop-bench-tables:: bench.json``: the tables of a benchmark
  report, in the README's format (``bench/update_readme.py``).
- an API coverage check: every public name of ``fastdrop``,
  ``fastdrop.torch``, ``fastdrop.dask``, ``fastdrop.numba`` and
  ``fastdrop.reference`` (their ``__all__``) must appear in an
  ``autosummary`` table of ``docs/api/*.rst``; a missing one is a warning,
  so an error under ``sphinx -W``.
- sphinx-gallery settings that must be importable by name (Sphinx caches
  the configuration and cannot pickle functions): the command-line
  arguments each example runs with, and the order of the gallery.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import os
import pathlib
import re
import textwrap

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------
# sphinx-gallery
# ----------------------------------------------------------------------------

#: Gallery order: the tutorials first, then interoperability, then results.
GALLERY_ORDER = [
    "plot_digits_overfitting.py",
    "plot_dropout_rate_sweep.py",
    "mc_dropout_regression.py",
    "torch_mlp_dropout.py",
    "plot_same_mask_everywhere.py",
    "plot_dask_zarr_out_of_core.py",
    "plot_benchmark_results.py",
]

#: Command-line arguments of the examples that are also scripts with options
#: (their own defaults write files or run for minutes).
GALLERY_ARGV = {
    # draw with pyplot instead of rewriting docs/images/mc_dropout.png
    "mc_dropout_regression.py": ["--no-plot", "--show"],
    # one seed, every mode (torch.compile with inductor), 15 epochs, one thread
    # (small matrices; a busy machine makes more threads far slower), a plot
    "torch_mlp_dropout.py": ["--seeds", "0", "--epochs", "15", "--threads", "1",
                             "--plot"],
}


def gallery_argv(gallery_conf, script_vars):
    """sphinx-gallery ``reset_argv``: ``sys.argv[1:]`` for one example."""
    return list(GALLERY_ARGV.get(pathlib.Path(script_vars["src_file"]).name, []))


def minigallery_order(path):
    """sphinx-gallery ``minigallery_sort_order``: :data:`GALLERY_ORDER`."""
    name = pathlib.Path(path).name
    return (GALLERY_ORDER.index(name) if name in GALLERY_ORDER else len(GALLERY_ORDER), name)


class GalleryOrder:
    """sphinx-gallery ``within_subsection_order``: :data:`GALLERY_ORDER`,
    then any other example by file name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        name = pathlib.Path(filename).name
        if name in GALLERY_ORDER:
            return f"{GALLERY_ORDER.index(name):03d}"
        return f"999-{name}"

    def __repr__(self):  # stable, for Sphinx's configuration cache
        return "<GalleryOrder>"


# ----------------------------------------------------------------------------
# CLI help
# ----------------------------------------------------------------------------

def cli_help(subcommand=None, width=80):
    """The ``--help`` text of ``fastdrop`` or of ``fastdrop <subcommand>``."""
    from fastdrop.__main__ import main

    argv = ([subcommand] if subcommand else []) + ["--help"]
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)      # argparse wraps to the terminal width
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            try:
                main(argv)
            except SystemExit:
                pass
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    text = buf.getvalue().rstrip()
    if not text:
        raise RuntimeError(f"no help text for {' '.join(['fastdrop'] + argv)}")
    return text


class CliHelp(SphinxDirective):
    """``.. fastdrop-cli-help:: [subcommand]``: a literal block with the help."""

    optional_arguments = 1

    def run(self):
        sub = self.arguments[0] if self.arguments else None
        try:
            text = cli_help(sub)
        except Exception as e:  # noqa: BLE001 - reported as a build warning
            logger.warning("fastdrop-cli-help %s: %s", sub or "", e,
                           location=self.get_location())
            return []
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class Backends(SphinxDirective):
    """``.. fastdrop-backends::``: :func:`fastdrop.get_backends` on the machine
    that builds the documentation, as a literal block."""

    def run(self):
        import fastdrop

        lines = []
        for name, b in fastdrop.get_backends().items():
            state = "available" if b["available"] else "missing"
            detail = ", ".join(b["dtypes"]) if b["available"] else " ".join(b["reason"].split())
            lines += textwrap.wrap(f"{name:<10} {state:<10} {detail}", 78,
                                   subsequent_indent=" " * 22)
        text = "\n".join(lines)
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


# ----------------------------------------------------------------------------
# benchmark tables
# ----------------------------------------------------------------------------

def _update_readme_module(root):
    """``bench/update_readme.py``, which renders the README's tables: its cell
    format is reused so that the two cannot disagree."""
    path = pathlib.Path(root) / "bench" / "update_readme.py"
    spec = importlib.util.spec_from_file_location("fastdrop_bench_update_readme", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BenchTables(SphinxDirective):
    """``.. fastdrop-bench-tables:: bench.json``: the machine and command of a
    ``fastdrop bench --format json`` report, then one table per operation
    (rows: implementations, columns: sizes), in the README's cell format.
    ``:ops: forward,apply_mask`` limits the operations."""

    required_arguments = 1
    option_spec = {"ops": directives.unchanged}

    def run(self):
        path = pathlib.Path(self.env.srcdir) / self.arguments[0]
        self.env.note_dependency(str(path))
        report = json.loads(path.read_text())
        ur = _update_readme_module(pathlib.Path(self.env.srcdir).parent)
        m, cfg = report["machine"], report["config"]
        v = m["versions"]
        libs = [f"fastdrop {v['fastdrop']}", f"NumPy {v['numpy']}"]
        libs += [f"{k} {v[k]}" for k in ("numba", "torch") if v.get(k)]
        ops = cfg["ops"]
        if "ops" in self.options:
            ops = [o for o in ops if o in self.options["ops"].split(",")]
        lines = [f"Measured on **{m['cpu']}**, {m['cores']} cores, {m['threads']} threads, "
                 f"OpenMP {'on' if m['openmp'] else 'off'}; {', '.join(libs)}, "
                 f"Python {v['python']} ({report['timestamp'][:10]}).  Command: "
                 f"``{report['command']}``.", ""]
        titles = report.get("operations", {})
        order = {"ceiling": 0, "fastdrop": 1, "torch": 2, "cupy": 3, "numpy": 4}

        def cell(r):
            text = ur._cell(r)
            head, sep, tail = text.partition(" (")
            return [f"| {head}", f"  | ({tail}"] if sep else [text]

        for dt in cfg["dtypes"]:
            for p in cfg["ps"]:
                for op in ops:
                    rs = [r for r in report["results"]
                          if r["op"] == op and r["dtype"] == dt and r["p"] == p]
                    sizes = sorted({r["size"] for r in rs})
                    impls = []
                    for r in sorted(rs, key=lambda r: (r["device"], order.get(r["kind"], 9),
                                                        -r["gbps"] if r["size"] == sizes[-1]
                                                        else 0)):
                        if r["impl"] not in (i for i, _ in impls):
                            impls.append((r["impl"], r["label"]))
                    title = titles.get(op, {}).get("title", op)
                    lines += [f".. list-table:: ``{op}``: {title} [{dt}, p = {p:g}]",
                              "   :header-rows: 1", "   :stub-columns: 1",
                              "   :class: fastdrop-bench", "",
                              "   * - elements"]
                    lines += [f"     - {ur._fmt_size(n)}" for n in sizes]
                    for impl, label in impls:
                        if impl == "ceiling":
                            label = "ceiling (same-traffic stream)"
                        elif label.startswith("fastdrop"):
                            label = f"**{label}**"
                        lines.append(f"   * - {label}")
                        for n in sizes:
                            r = next((r for r in rs if r["impl"] == impl and r["size"] == n),
                                     None)
                            first, *rest = cell(r)
                            lines.append(f"     - {first}")
                            lines += [f"     {t}" for t in rest]
                    lines.append("")
        if report.get("skipped"):
            lines.append("Not measured: " + "; ".join(
                f"{s['what']} ({' '.join(s['reason'].split())})"
                for s in report["skipped"]) + ".")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=str(path)), self.content_offset,
                                container)
        return container.children


# ----------------------------------------------------------------------------
# API coverage
# ----------------------------------------------------------------------------

#: Modules whose ``__all__`` must be documented, with the prefix their names
#: take in the autosummary tables (``fastdrop.<name>`` for the top level).
API_MODULES = ("fastdrop", "fastdrop.torch", "fastdrop.dask", "fastdrop.numba",
               "fastdrop.reference")

_ENTRY = re.compile(r"^\s{3,}~?([A-Za-z_][\w.]*)\s*$")


def _documented_names(api_dir):
    """Names listed in autosummary tables (and autodata/autofunction/...
    directives) of the .rst files in ``api_dir``."""
    names = set()
    for path in pathlib.Path(api_dir).glob("*.rst"):
        current = None
        in_autosummary = False
        for line in path.read_text().splitlines():
            m = re.match(r"^\.\.\s+(?:py:)?currentmodule::\s*(\S+)", line)
            if m:
                current = m.group(1)
                continue
            m = re.match(r"^\.\.\s+auto(?:function|class|data|attribute)::\s*(\S+)", line)
            if m:
                names.add(m.group(1) if "." in m.group(1) and current is None
                          else f"{current}.{m.group(1)}")
                continue
            if re.match(r"^\.\.\s+autosummary::", line):
                in_autosummary = True
                continue
            if in_autosummary:
                if line.strip() == "" or line.lstrip().startswith(":"):
                    continue
                if not line.startswith(" "):
                    in_autosummary = False
                    continue
                m = _ENTRY.match(line)
                if m:
                    names.add(f"{current}.{m.group(1)}" if current else m.group(1))
    return names


def check_api_coverage(app):
    """Warn about every public name of :data:`API_MODULES` missing from the
    API reference."""
    documented = _documented_names(pathlib.Path(app.srcdir) / "api")
    for modname in API_MODULES:
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", ()):
            if f"{modname}.{name}" not in documented:
                logger.warning("API reference: %s.%s (in %s.__all__) is not documented "
                               "in docs/api/*.rst", modname, name, modname)


def setup(app):
    app.add_directive("fastdrop-cli-help", CliHelp)
    app.add_directive("fastdrop-backends", Backends)
    app.add_directive("fastdrop-bench-tables", BenchTables)
    app.connect("builder-inited", check_api_coverage)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
