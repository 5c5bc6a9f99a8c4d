"""The command line: ``fastdrop bench`` and ``fastdrop info``.

Benchmarks run on tiny sizes with few, short samples so the whole module
stays fast; the heavy in-process run is shared by a module-scoped fixture.
"""

import contextlib
import csv
import importlib.util
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time

import pytest

import fastdrop
from fastdrop import _bench, _benchmark
from fastdrop._benchmark import implementations, report as _report
from fastdrop.__main__ import build_parser, main
from fastdrop._comparisons import COMPARISONS

TINY = ["--sizes", "1000", "--repeat", "3", "--min-time", "0.0002", "--max-time", "0.2"]
CPU_BACKENDS = sorted(n for n, b in fastdrop.get_backends().items()
                      if b["available"] and n != "cuda")


def _run(argv):
    """main(argv) in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    png = tmp_path_factory.mktemp("plot") / "bench.png"
    rc, out, err = _run(["bench", *TINY, "--format", "json", "--plot", str(png)])
    assert rc == 0, err
    return json.loads(out), png, err


# ----------------------------------------------------------------------------
# bench
# ----------------------------------------------------------------------------

def test_bench_table():
    rc, out, err = _run(["bench", *TINY, "--ops", "forward,apply_mask", "--no-torch"])
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("fastdrop bench:")
    head = "\n".join(lines[:8])
    assert "numpy " + __import__("numpy").__version__ in head
    # the worker pool's threads: OpenMP's in Windows builds, POSIX threads elsewhere
    pool = "OpenMP" if fastdrop.openmp_enabled() else "POSIX"
    assert f"pool: {pool} threads" in lines[0] and "ceiling" in head
    if "numba" in CPU_BACKENDS:   # where the Numba kernels run
        where = ("kernels run on fastdrop's worker pool" if "cython" in CPU_BACKENDS
                 else "threading layer")
        assert f"numba: {where}" in head
    for name in CPU_BACKENDS:
        assert f"fastdrop[{name}]" in out
    for col in ("median", "GB/s", "% ceil", "vs NumPy"):
        assert col in out
    assert "forward [float32, p=0.5]" in out and "apply_mask [float32, p=0.5]" in out
    assert "numpy-f64" in out and "numpy-inplace" in out
    assert "mask_packed [" not in out
    assert "total wall time" in out


def test_bench_json_carries_the_table(json_run):
    report, _, _ = json_run
    m = report["machine"]
    for key in ("cpu", "cores", "threads", "openmp", "versions"):
        assert key in m
    for lib in ("fastdrop", "numpy", "numba", "torch"):
        assert lib in m["versions"]
    assert m["versions"]["fastdrop"] == fastdrop.__version__
    assert report["config"]["sizes"] == [1000]
    ops = {r["op"] for r in report["results"]}
    assert ops == {c.name for c in COMPARISONS}
    impls = {r["impl"] for r in report["results"]}
    assert {"ceiling", "numpy-f64", "numpy-f32", "numpy-inplace"} <= impls
    assert set(CPU_BACKENDS) <= impls
    groups = {}
    for r in report["results"]:
        groups.setdefault((r["op"], r["dtype"], r["p"], r["size"], r["device"]), []).append(r)
    for rs in groups.values():
        (ceil,) = [r for r in rs if r["kind"] == "ceiling"]
        best_np = min(r["median_s"] for r in rs if r["kind"] == "numpy")
        for r in rs:
            assert r["median_s"] > 0 and r["repeat"] >= 1 and r["number"] >= 1
            assert math.isclose(r["gbps"], r["bytes"] / r["median_s"] / 1e9)
            # fastdrop CPU rows carry the ceiling timed interleaved with them
            c = r.get("ceiling_paired_s", ceil["median_s"])
            if r["kind"] == "fastdrop" and r["device"] == "cpu":
                assert "ceiling_paired_s" in r
            assert math.isclose(r["pct_ceiling"], 100 * c / r["median_s"])
            if r["kind"] != "ceiling":
                assert math.isclose(r["speedup_vs_numpy"], best_np / r["median_s"])
    # every cell of the table is derived from the JSON alone
    table = _benchmark.format_table(report)
    for _, cells, _ in _report.table_rows(report):
        for cell in cells[1:]:
            assert cell in table
    assert report["warmup"] and all(w["first_call_s"] > 0 for w in report["warmup"])


def test_bench_plot(json_run):
    report, png, err = json_run
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    fig = _benchmark.plot_report(report)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    for name in CPU_BACKENDS:
        assert f"fastdrop[{name}]" in labels
    assert any(lab.startswith("ceiling") for lab in labels)
    assert "torch (CPU)" in labels or report["machine"]["versions"]["torch"] is None
    assert len(fig.axes) == len(COMPARISONS)  # one panel per operation
    assert all(ax.get_xscale() == "log" for ax in fig.axes)


def test_bench_csv():
    rc, out, err = _run(["bench", *TINY, "--ops", "mask_packed", "--backends", "reference",
                         "--no-torch", "--format", "csv", "--quiet"])
    assert rc == 0, err
    assert err == ""  # --quiet: nothing on stderr
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and {r["op"] for r in rows} == {"mask_packed"}
    assert {r["impl"] for r in rows} == {"ceiling", "reference", "numpy-f64", "numpy-f32",
                                         "numpy-inplace"}
    for r in rows:
        assert float(r["median_s"]) > 0 and float(r["gbps"]) > 0
        assert int(r["size"]) == 1000 and r["cpu"]


def test_bench_threads_and_restore():
    before = fastdrop.get_num_threads()
    rc, out, err = _run(["bench", *TINY, "--ops", "forward", "--backends", "reference",
                         "--no-torch", "--threads", "1", "--format", "json", "-q"])
    assert rc == 0, err
    assert json.loads(out)["machine"]["threads"] == 1
    assert fastdrop.get_num_threads() == before


def test_python_dash_m():
    env = dict(os.environ)
    r = subprocess.run(
        [sys.executable, "-m", "fastdrop", "bench", *TINY, "--ops", "forward",
         "--backends", "reference", "--no-torch", "--quiet"],
        capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "fastdrop[reference]" in r.stdout and "ceiling" in r.stdout


def test_quick_preset_and_overrides():
    from fastdrop.__main__ import _bench_config

    parser = build_parser()
    args = parser.parse_args(["bench", "--quick"])
    cfg = _bench_config(args, parser)
    assert cfg.quick and cfg.sizes == [1000, 100000, 10000000]
    assert cfg.dtypes == ["float32"] and cfg.ps == [0.5] and cfg.ops is None
    args = parser.parse_args(["bench", "--quick", "--sizes", "1e3,2.5e4", "--p", "0.1,0.5",
                              "--dtypes", "float64,f4", "--backends", "all"])
    cfg = _bench_config(args, parser)
    assert cfg.sizes == [1000, 25000] and cfg.ps == [0.1, 0.5]
    assert cfg.dtypes == ["float64", "float32"] and cfg.backends is None


@pytest.mark.parametrize("argv,msg", [
    (["bench", "--sizes", "abc"], "not a number"),
    (["bench", "--sizes", "0"], "whole number"),
    (["bench", "--sizes", "1.5"], "whole number"),
    (["bench", "--dtypes", "int32"], "dtype must be one of"),
    (["bench", "--p", "1"], "p must be in [0, 1)"),
    (["bench", "--p", "-0.1"], "p must be in [0, 1)"),
    (["bench", "--ops", "backward"], "unknown operation"),
    (["bench", "--backends", "cython,nope"], "unknown backend"),
    (["bench", "--threads", "0"], "must be >= 1"),
    (["bench", "--format", "xml"], "invalid choice"),
    (["bench", "--plot", "out.svg"], ".png"),
    (["bench", "--frobnicate"], "unrecognized arguments"),
    (["info", "--format", "yaml"], "invalid choice"),
    ([], "usage"),
])
def test_bad_arguments(argv, msg):
    rc, out, err = _run(argv)
    assert rc != 0
    assert msg in err
    assert out == ""


def test_unavailable_backend_is_reported():
    missing = [n for n, b in fastdrop.get_backends().items()
               if not b["available"] and n != "cuda"]
    if not missing:
        pytest.skip("every CPU backend is available here")
    rc, out, err = _run(["bench", *TINY, "--ops", "forward", "--backends",
                         f"reference,{missing[0]}", "--no-torch"])
    assert rc == 0
    assert f"backend {missing[0]!r} is not available" in err
    assert f"fastdrop[{missing[0]}]" in out  # under "not measured"


def test_time_call_and_formatting():
    r = _benchmark.time_call(lambda: None, repeat=4, min_time=1e-4)
    assert r["repeat"] == 4 and r["number"] > 1 and r["median_s"] > 0
    assert [_report._fmt_size(n) for n in (12, 1000, 25000, 10 ** 8)] == \
        ["12", "1e3", "2.5e4", "1e8"]
    assert _report._fmt_time(1.5e-6) == "1.5 us"


def test_time_call_calibrates_past_a_slow_first_call():
    # the calibration call of a fast function took far longer than the
    # rest (a worker thread waking, a cold cache): the loop count comes
    # from back-to-back calls, so a sample still lasts about min_time
    # (sized from the slow call alone, it held a few calls: microseconds)
    def slow_first():
        calls = []

        def fn():
            if not calls:
                time.sleep(0.005)
            calls.append(1)
        return fn

    r = _benchmark.time_call(slow_first(), repeat=3, min_time=0.01, partner=slow_first())
    assert r["number"] > 100 and r["number"] * r["median_s"] > 0.0025, r
    assert r["partner_median_s"] > 0


def test_bench_module_re_exports_the_engine():
    """fastdrop._bench, where the engine used to live, re-exports its names."""
    for name in ("BenchConfig", "run_bench", "time_call", "format_table", "format_csv",
                 "plot_report", "table_rows", "header_lines", "DEFAULT_SIZES", "QUICK_SIZES",
                 "CSV_FIELDS", "SCHEMA", "_fmt_size", "_fmt_time", "_fmt_pct", "_GpuRuntime",
                 "_may_have_gpu", "_find_gpu", "_check_some_backend_runs", "_Ceiling"):
        assert hasattr(_bench, name), name
    assert _bench.run_bench is _benchmark.run_bench
    assert _bench.BenchConfig is _benchmark.BenchConfig
    assert _bench.table_rows is _report.table_rows
    assert _bench._find_gpu is implementations._find_gpu


# ----------------------------------------------------------------------------
# info
# ----------------------------------------------------------------------------

def test_info_text():
    rc, out, err = _run(["info"])
    assert rc == 0, err
    assert out.startswith(f"fastdrop {fastdrop.__version__}")
    for word in ("backends:", "reference", "threads: fastdrop uses", "worker pool:",
                 "cpu:", "gpus:", "modules:"):
        assert word in out
    if importlib.util.find_spec("numba") is not None:
        assert "numba cache dir" in out
    else:  # what to install, for the backend and the module that need Numba
        assert 'numba is not installed: pip install "fastdrop-kernels[numba]"' in out


def test_info_json():
    rc, out, err = _run(["info", "--format", "json"])
    assert rc == 0, err
    info = json.loads(out)
    assert info["versions"]["numpy"] == __import__("numpy").__version__
    assert info["backends"]["reference"]["available"] is True
    for name, b in info["backends"].items():
        assert b["available"] or b["reason"], name
    assert isinstance(info["threads"]["openmp"], bool)
    assert info["threads"]["fastdrop_threads"] == fastdrop.get_num_threads()
    assert "features" in info["cpu"] and "devices" in info["gpu"]
    assert "compile_times" not in info


@pytest.mark.skipif(shutil.which("fastdrop") is None, reason="console script not installed")
def test_console_script_info():
    r = subprocess.run(["fastdrop", "info", "--format", "json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["mask_stream_version"] == fastdrop.MASK_STREAM_VERSION


def test_cli_modules_import_nothing_heavy():
    code = ("import sys, fastdrop, fastdrop._comparisons, fastdrop._bench, fastdrop._benchmark, "
            "fastdrop._info, fastdrop.__main__; print(sorted(m for m in ('numba', 'torch', "
            "'matplotlib', 'cupy', 'tqdm', 'cpuinfo') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("use_tqdm", [True, False])
def test_progress_bar(monkeypatch, use_tqdm):
    if not use_tqdm:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # import fails: simple bar
    buf = io.StringIO()
    cfg = _benchmark.BenchConfig(sizes=[100], ops=["forward"], backends=["reference"],
                                 torch=False, gpu=False, repeat=3, min_time=1e-5)
    report = _benchmark.run_bench(cfg, progress=True, progress_file=buf)
    assert report["results"]
    text = buf.getvalue()
    assert "forward float32 100" in text  # the bar names what it is timing
    if not use_tqdm:
        assert "5/5" in text


def test_gpu_path_with_a_fake_device(monkeypatch):
    """The GPU branch (device arrays, synchronisation, GPU ceiling, CuPy
    baselines) run against a stand-in "CuPy" backed by NumPy, so that it is
    exercised without a GPU."""
    import types

    import numpy as np

    syncs = []
    fake = types.SimpleNamespace(
        asarray=np.array, zeros=np.zeros, float32=np.float32, multiply=np.multiply,
        random=types.SimpleNamespace(default_rng=np.random.default_rng),
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(
            deviceSynchronize=lambda: syncs.append(1),
            memGetInfo=lambda: (1 << 34, 1 << 34),
            getDeviceProperties=lambda i: {"name": b"Fake GPU"})))
    rt = implementations._GpuRuntime("cupy", fake)
    monkeypatch.setattr(implementations, "_may_have_gpu", lambda: True)
    monkeypatch.setattr(implementations, "_find_gpu", lambda torch: rt)
    cfg = _benchmark.BenchConfig(sizes=[1000], ops=["forward", "apply_mask"],
                                 backends=["reference"], torch=False, repeat=3, min_time=1e-4)
    report = _benchmark.run_bench(cfg)
    gpu = [r for r in report["results"] if r["device"] == "gpu"]
    assert {r["impl"] for r in gpu} == {"ceiling-gpu", "cupy-f64", "cupy-f32", "cupy"}
    assert syncs  # every GPU sample is synchronised
    for r in gpu:
        assert r["pct_ceiling"] > 0
        if r["kind"] == "cupy":
            assert r["speedup_vs_numpy"] > 0  # GPU rows compare with the best CuPy idiom
    assert report["machine"]["gpu"] == "Fake GPU"
    assert "GPU: Fake GPU" in _benchmark.format_table(report)
    labels = [t.get_text() for t in _benchmark.plot_report(report).legends[0].get_texts()]
    assert "GPU ceiling (same-traffic stream)" in labels


def test_update_readme_from_saved_json(json_run, tmp_path):
    import importlib.util

    report, _, _ = json_run
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(report))
    readme = tmp_path / "README.md"
    readme.write_text("# fastdrop\n\nintro\n\n<!-- bench-results:start -->\nold\n"
                      "<!-- bench-results:end -->\n\nafter\n")
    path = os.path.join(os.path.dirname(__file__), os.pardir, "bench", "update_readme.py")
    spec = importlib.util.spec_from_file_location("update_readme", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    png = tmp_path / "docs" / "bench.png"
    with contextlib.redirect_stderr(io.StringIO()):
        assert mod.main(["--json", str(saved), "--readme", str(readme), "--plot", str(png)]) == 0
    text = readme.read_text()
    assert text.startswith("# fastdrop\n\nintro\n") and text.endswith("\nafter\n")
    assert "old" not in text
    assert report["machine"]["cpu"] in text and "](docs/bench.png)" in text
    for name in CPU_BACKENDS:
        assert f"fastdrop[{name}]" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "NOMARKERS.md"
    bad.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        mod.main(["--json", str(saved), "--readme", str(bad), "--plot", "none"])


def test_bench_torch_table(capsys):
    # fastdrop bench-torch: the fastdrop.torch / torch table (one tiny run)
    pytest.importorskip("torch")
    from fastdrop.__main__ import main

    assert main(["bench-torch", "--sizes", "1e3", "--threads", "1", "--samples", "1",
                 "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    rows = [r for r in out.splitlines() if r.startswith("| 1 |")]
    assert [r.split("|")[3].strip() for r in rows] == ["fwd", "fwd+bwd", "fwd+bwd stride-0"]
    assert all(float(r.split("|")[6]) > 0 for r in rows)


def test_bench_warns_on_a_busy_machine(monkeypatch):
    # the table's header warns when the load average is above the core count
    from fastdrop._benchmark import BenchConfig, run_bench, runner
    from fastdrop._benchmark.report import format_table

    monkeypatch.setattr(runner, "load_average", lambda: 1000.0)
    rep = run_bench(BenchConfig(sizes=[100], ops=["mask_packed"], backends=[], torch=False,
                                gpu=False, repeat=2, min_time=1e-5))
    assert rep["machine"]["load_average"] == 1000.0
    assert "WARNING: the machine was busy" in format_table(rep)
    monkeypatch.setattr(runner, "load_average", lambda: 0.0)
    rep = run_bench(BenchConfig(sizes=[100], ops=["mask_packed"], backends=[], torch=False,
                                gpu=False, repeat=2, min_time=1e-5))
    assert "WARNING" not in format_table(rep)
