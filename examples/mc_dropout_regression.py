"""
Monte Carlo dropout: uncertainty on a 1-D regression (NumPy)
============================================================

Monte Carlo dropout (Gal and Ghahramani 2016, "Dropout as a Bayesian
Approximation: Representing Model Uncertainty in Deep Learning") keeps dropout
switched on at prediction time: ``samples`` stochastic forward passes, each
with its own dropout masks, are read as draws from an approximate posterior
predictive distribution.  Their mean is the prediction and their standard
deviation its uncertainty, which should grow away from the training data.

This script

1. makes a 1-D data set, ``y = sin(3x) + 0.3x + noise`` on
   ``x in [-1.5, -0.3] U [0.3, 1.5]`` (a gap in the middle, nothing beyond
   ``|x| > 1.5``), with a fixed seed;
2. trains a 1-64-64-1 ReLU network with dropout after each hidden layer, by
   full-batch Adam on a hand-written backward pass: the forward uses
   ``fastdrop.dropout(h, p, rng=seed)`` with an int seed per step and layer,
   and the backward regenerates the same masks with
   ``fastdrop.dropout_backward(g, p, state=seed)`` (no mask is stored);
3. predicts on ``x in [-3, 3]`` with
   ``fastdrop.mc_dropout(model, grid, samples=100, rng=0)`` (pass ``t`` draws
   its masks from ``Generator(0).spawn(100)[t]``: the same numbers on any
   machine and backend);
4. prints the training MSE and the mean predictive standard deviation inside
   the training range, in the gap and outside ``|x| > 1.5``, and plots it all.

Run it from the repository root (a few seconds on 2 cores)::

    python examples/mc_dropout_regression.py                  # writes docs/images/mc_dropout.png
    python examples/mc_dropout_regression.py --plot out.png   # elsewhere
    python examples/mc_dropout_regression.py --no-plot        # numbers only
    python examples/mc_dropout_regression.py --no-plot --show # draw with pyplot instead

The documentation's gallery runs it with ``--no-plot --show``.

Needs NumPy and fastdrop (``pip install .``; from a checkout the repository
root is used if fastdrop is not installed); matplotlib only for the plot.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

try:
    ROOT = pathlib.Path(__file__).resolve().parents[1]
except NameError:  # sphinx-gallery runs examples from examples/, without __file__
    ROOT = pathlib.Path.cwd().resolve().parent

try:
    import fastdrop
except ImportError:  # run from a checkout without installing: use the repository's copy
    sys.path.insert(0, str(ROOT))
    import fastdrop

DEFAULT_PLOT = ROOT / "docs" / "images" / "mc_dropout.png"

# %%
# The data
# --------
# A smooth function observed with noise on two intervals, nothing in between
# and nothing beyond them.

X_EDGE = 1.5   # training data in GAP <= |x| <= X_EDGE
GAP = 0.3


def true_function(x):
    return np.sin(3.0 * x) + 0.3 * x


def make_data(n=80, noise=0.1, seed=0):
    """``n`` points, half on [-1.5, -0.3] and half on [0.3, 1.5], as (n, 1) columns."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(GAP, X_EDGE, size=n) * np.where(np.arange(n) % 2 == 0, -1.0, 1.0)
    x = np.sort(x)[:, None]
    y = true_function(x) + noise * rng.standard_normal(x.shape)
    return x, y


# %%
# The network, and a backward pass that regenerates the masks
# ------------------------------------------------------------
# The forward pass keeps no mask: ``fastdrop.dropout_backward(g, p,
# state=seed)`` regenerates it from the int seed the forward used.


def init_params(sizes=(1, 64, 64, 1), seed=0):
    """He-initialised weights and zero biases: ``[(W1, b1), (W2, b2), (W3, b3)]``."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a), np.zeros(b))
            for a, b in zip(sizes[:-1], sizes[1:])]


def forward(params, x, p, rng, training=True):
    """One pass of the network; dropout (``rng`` per layer) after each hidden
    layer.  ``rng`` is a pair of int seeds (training) or a fastdrop.Generator
    (Monte Carlo prediction, shared by both layers in a fixed order).
    Returns the output and what the backward pass needs."""
    (w1, b1), (w2, b2), (w3, b3) = params
    r1, r2 = rng if isinstance(rng, tuple) else (rng, rng)
    a1 = x @ w1 + b1
    h1 = fastdrop.dropout(np.maximum(a1, 0.0), p, rng=r1, training=training)
    a2 = h1 @ w2 + b2
    h2 = fastdrop.dropout(np.maximum(a2, 0.0), p, rng=r2, training=training)
    return h2 @ w3 + b3, (a1, h1, a2, h2)


def backward(params, x, cache, dy, p, seeds):
    """Gradients of the loss given ``dy = dL/dy``; the dropout masks are
    regenerated from the forward's int seeds (nothing was stored)."""
    (_, _), (w2, _), (w3, _) = params
    a1, h1, a2, h2 = cache
    s1, s2 = seeds
    dw3, db3 = h2.T @ dy, dy.sum(0)
    da2 = fastdrop.dropout_backward(dy @ w3.T, p, state=s2) * (a2 > 0)
    dw2, db2 = h1.T @ da2, da2.sum(0)
    da1 = fastdrop.dropout_backward(da2 @ w2.T, p, state=s1) * (a1 > 0)
    dw1, db1 = x.T @ da1, da1.sum(0)
    return [(dw1, db1), (dw2, db2), (dw3, db3)]


# %%
# Training, then prediction with Monte Carlo dropout
# --------------------------------------------------


def train(x, y, *, p=0.2, steps=3000, lr=5e-3, weight_decay=1e-4, seed=0):
    """Full-batch Adam on the mean squared error (plus a small L2 term, the
    prior of Gal and Ghahramani's derivation).  Step ``t`` drops with the int
    seeds ``seeds[t]`` (one per hidden layer), drawn once from ``seed``."""
    params = init_params(seed=seed)
    flat = [a for pair in params for a in pair]
    m = [np.zeros_like(a) for a in flat]
    v = [np.zeros_like(a) for a in flat]
    b1, b2, eps = 0.9, 0.999, 1e-8
    seeds = np.random.default_rng(seed + 1).integers(0, 2**63, size=(steps, 2)).tolist()
    n = x.shape[0]
    for t in range(1, steps + 1):
        s = tuple(seeds[t - 1])
        out, cache = forward(params, x, p, s)
        grads = backward(params, x, cache, 2.0 * (out - y) / n, p, s)
        gflat = [g for pair in grads for g in pair]
        for i, (a, g) in enumerate(zip(flat, gflat)):
            if a.ndim == 2:
                g = g + weight_decay * a
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat = m[i] / (1 - b1**t)
            vhat = v[i] / (1 - b2**t)
            a -= lr * mhat / (np.sqrt(vhat) + eps)   # in place: params share these arrays
    return params


def main(plot_path=None, *, seed=0, steps=3000, p=0.2, samples=100, mc_seed=0,
         verbose=True):
    """Train, predict with Monte Carlo dropout, summarise and (if
    ``plot_path``) plot.  Returns a dict: ``train_mse`` (dropout off),
    ``std_in`` / ``std_gap`` / ``std_out`` (mean predictive std on the grid
    inside the training range, in the gap ``|x| < 0.3`` and outside
    ``|x| > 1.5``), and the arrays ``grid``, ``mean``, ``std``, ``x``, ``y``."""
    x, y = make_data(seed=seed)
    params = train(x, y, p=p, steps=steps, seed=seed)
    train_mse = float(np.mean((forward(params, x, p, None, training=False)[0] - y) ** 2))

    grid = np.linspace(-3.0, 3.0, 601)[:, None]

    def model(xs, rng):
        return forward(params, xs, p, rng)[0]

    mean, std = fastdrop.mc_dropout(model, grid, samples=samples, rng=mc_seed)
    g, s = grid[:, 0], std[:, 0]
    inside = (np.abs(g) >= GAP) & (np.abs(g) <= X_EDGE)
    res = {
        "train_mse": train_mse,
        "std_in": float(s[inside].mean()),
        "std_gap": float(s[np.abs(g) < GAP].mean()),
        "std_out": float(s[np.abs(g) > X_EDGE].mean()),
        "grid": g, "mean": mean[:, 0], "std": s, "x": x[:, 0], "y": y[:, 0],
        "p": p, "samples": samples,
    }
    if verbose:
        print(f"train MSE (dropout off)            : {res['train_mse']:.4f}")
        print(f"mean predictive std, training range : {res['std_in']:.3f}")
        print(f"mean predictive std, gap |x| < {GAP}  : {res['std_gap']:.3f}"
              f"  ({res['std_gap'] / res['std_in']:.1f}x)")
        print(f"mean predictive std, |x| > {X_EDGE}      : {res['std_out']:.3f}"
              f"  ({res['std_out'] / res['std_in']:.1f}x)")
    if plot_path is not None:
        plot(res, plot_path)
        if verbose:
            print(f"plot written to {plot_path}")
    return res


# %%
# The plot
# --------


def plot(res, path):
    """The figure of :func:`draw` as a small PNG, through the Agg backend
    (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    draw(res, fig)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def show(res):
    """The figure of :func:`draw`, shown with pyplot."""
    import matplotlib.pyplot as plt

    draw(res, plt.figure(figsize=(8, 5)))
    plt.show()


def draw(res, fig):
    """Training points, predictive mean, +-1 and +-2 std bands, the regions
    without training data shaded, into the matplotlib figure ``fig``."""
    g, mean, std = res["grid"], res["mean"], res["std"]
    ax = fig.add_subplot()
    for lo, hi in ((-3.0, -X_EDGE), (X_EDGE, 3.0)):
        ax.axvspan(lo, hi, color="0.88", lw=0,
                   label="no training data" if lo < 0 else None)
    ax.axvspan(-GAP, GAP, color="0.94", lw=0, label="gap in the training data")
    ax.fill_between(g, mean - 2 * std, mean + 2 * std, color="tab:blue", alpha=0.2, lw=0,
                    label="mean ± 2 std")
    ax.fill_between(g, mean - std, mean + std, color="tab:blue", alpha=0.3, lw=0,
                    label="mean ± 1 std")
    ax.plot(g, true_function(g), "--", color="0.35", lw=1, label="true sin(3x) + 0.3x")
    ax.plot(g, mean, color="tab:blue", lw=2, label="predictive mean")
    ax.plot(res["x"], res["y"], "o", color="tab:red", ms=3.5, label="training points")
    ax.set_xlim(g[0], g[-1])
    ax.set_ylim(-3.5, 3.5)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"Monte Carlo dropout: 1-64-64-1 ReLU MLP, p = {res['p']}, "
                 f"{res['samples']} passes (fastdrop.mc_dropout)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize=8,
              frameon=False)
    ax.text(0.99, 0.03,
            f"mean std: in range {res['std_in']:.3f}, gap {res['std_gap']:.3f}, "
            f"|x| > {X_EDGE} {res['std_out']:.3f}",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
    fig.tight_layout()


# %%
# Run it
# ------


def _cli(argv=None):
    ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0] or None)
    ap.add_argument("--plot", default=str(DEFAULT_PLOT),
                    help=f"where to write the PNG (default: {DEFAULT_PLOT.relative_to(ROOT)})")
    ap.add_argument("--no-plot", action="store_true", help="write no PNG")
    ap.add_argument("--show", action="store_true", help="draw the figure with pyplot")
    ap.add_argument("--p", type=float, default=0.2, help="dropout probability (0.2)")
    ap.add_argument("--steps", type=int, default=3000, help="Adam steps (3000)")
    ap.add_argument("--samples", type=int, default=100, help="Monte Carlo passes (100)")
    args = ap.parse_args(argv)
    res = main(None if args.no_plot else args.plot, p=args.p, steps=args.steps,
               samples=args.samples)
    if args.show:
        show(res)


if __name__ == "__main__":
    _cli()
