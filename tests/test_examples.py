"""The examples in examples/ run and show what they claim.

examples/mc_dropout_regression.py: Monte Carlo dropout on a 1-D regression
problem (a few seconds).  The numeric checks always run; only the plot needs
matplotlib.

examples/torch_mlp_dropout.py: fastdrop.torch.Dropout against
torch.nn.Dropout in a training loop, eager, compiled (fullgraph) and under
bfloat16 autocast; here a short run of each (the compiled one with the
aot_eager backend, to keep CI fast).

Every example is also a page of the documentation's sphinx-gallery, which
runs them all (the docs build, not this suite); here only what is cheap:
their gallery headers, and the pyplot figures of the two scripts above.
"""

import ast
import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"fastdrop_example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def mc_example():
    return _load("mc_dropout_regression")


@pytest.fixture(scope="module")
def mc_run(mc_example):
    """One run with the default seeds, no plot."""
    return mc_example.main(verbose=False)


def test_mc_example_fits_the_training_data(mc_run):
    # noise variance 0.01; observed 0.0138 (p = 0.2, 3000 Adam steps)
    assert mc_run["train_mse"] < 0.04


def test_mc_example_uncertainty_grows_away_from_the_data(mc_run):
    # observed: in range 0.114, gap 0.168 (1.5x), |x| > 1.5 0.274 (2.4x)
    std_in, std_gap, std_out = mc_run["std_in"], mc_run["std_gap"], mc_run["std_out"]
    assert 0 < std_in < 0.3
    assert std_out > 1.8 * std_in
    assert std_gap > 1.2 * std_in
    g, std = mc_run["grid"], mc_run["std"]
    assert std[np.abs(g) > 2.5].mean() > std[(np.abs(g) > 1.5) & (np.abs(g) <= 2.5)].mean()
    assert np.all(np.isfinite(mc_run["mean"])) and np.all(std >= 0)


def test_mc_example_is_reproducible(mc_example, mc_run, tmp_path, capsys):
    """Same seeds, same numbers, bit for bit; and the plot (when matplotlib
    is installed) is a PNG."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        plot_path = None
    else:
        plot_path = tmp_path / "images" / "mc.png"
    again = mc_example.main(plot_path)
    for key in ("grid", "mean", "std", "x", "y"):
        assert again[key].tobytes() == mc_run[key].tobytes(), key
    for key in ("train_mse", "std_in", "std_gap", "std_out"):
        assert again[key] == mc_run[key], key
    out = capsys.readouterr().out
    assert "train MSE" in out and f"{mc_run['std_out']:.3f}" in out
    if plot_path is None:
        return  # numbers checked; the plot part needs matplotlib
    assert plot_path.is_file()
    data = plot_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert 5_000 < len(data) < 300_000


@pytest.mark.parametrize("mode", ["eager", "compiled", "bf16"])
def test_torch_mlp_example_same_accuracy_as_nn_dropout(mode):
    pytest.importorskip("torch")
    ex = _load("torch_mlp_dropout")
    res = ex.main(modes=(mode,), seeds=(0,), epochs=4, compile_backend="aot_eager",
                  verbose=False)
    (acc_t, _), = res[(mode, "torch.nn.Dropout")]
    (acc_f, _), = res[(mode, "fastdrop.torch.Dropout")]
    # both learn the task (chance is 0.1), and agree within the seed-to-seed
    # spread seen over 3 seeds (0.94-0.96 for both at 15 epochs)
    assert acc_t > 0.8 and acc_f > 0.8
    assert abs(acc_t - acc_f) < 0.04


def test_every_example_has_a_gallery_header():
    """sphinx-gallery needs examples/README.txt and, in every example, a
    docstring that opens with a reST title (the gallery's thumbnail text)."""
    assert (EXAMPLES / "README.txt").is_file()
    scripts = sorted(EXAMPLES.glob("*.py"))
    assert len(scripts) >= 7
    for path in scripts:
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        assert doc, path.name
        title, underline, *rest = doc.strip("\n").splitlines()
        assert title.strip() and set(underline) == {"="}, path.name
        assert len(underline) >= len(title), path.name
        assert any(line.strip() for line in rest), path.name


def _pyplot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def test_mc_example_show_draws_the_gallery_figure(mc_example, mc_run, monkeypatch):
    """``--show`` (what the gallery runs) draws the same figure with pyplot."""
    plt = _pyplot()
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    plt.close("all")
    mc_example.show(mc_run)
    fig = plt.gcf()
    ax, = fig.axes
    assert "Monte Carlo dropout" in ax.get_title()
    assert len(ax.lines) >= 3 and len(ax.collections) >= 2
    plt.close("all")


def test_torch_mlp_example_plot(monkeypatch):
    """The gallery's plot of torch_mlp_dropout.py, from a made-up result."""
    pytest.importorskip("torch")
    plt = _pyplot()
    ex = _load("torch_mlp_dropout")
    res = {(mode, name): [(0.9 + 0.01 * k, 1e-3) for k in range(3)]
           for mode in ex.MODES for name in ex.NAMES}
    plt.close("all")
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(plt.gcf()))
    ex.plot(res)
    fig, = shown
    ax_acc, ax_t = fig.axes
    assert [t.get_text() for t in ax_acc.get_xticklabels()] == list(ex.MODES)
    plt.close("all")
