"""
fastdrop.torch.Dropout as a drop-in for torch.nn.Dropout
========================================================

A small MLP (64-256-256-10, ReLU, dropout after each hidden layer) is
trained on a synthetic 10-class problem (Gaussian clusters in 64
dimensions with label noise, so that dropout has something to regularise)
with ``torch.nn.Dropout`` and with ``fastdrop.torch.Dropout``, in three
modes:

- ``eager``: plain PyTorch;
- ``compiled``: ``torch.compile(model, fullgraph=True)`` (AOTAutograd compiles
  the backward too): fastdrop's seed is drawn inside the graph;
- ``bf16``: eager under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (the
  linear layers run in bfloat16, so dropout sees bfloat16 tensors).

For each mode and seed it reports the test accuracy and the median time of a
training step, so the two dropouts can be compared side by side.

Run::

    python examples/torch_mlp_dropout.py                   # 3 seeds, every mode
    python examples/torch_mlp_dropout.py --modes eager --seeds 0
    python examples/torch_mlp_dropout.py --epochs 15 --plot  # also plot (pyplot)

The documentation's gallery runs it with ``--seeds 0 --epochs 15 --threads 1
--plot``: one seed, every mode, ``torch.compile`` with its default backend
(inductor), one thread (the matrices are small, and the machine that builds
the documentation is often busy); its step times are that machine's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import fastdrop.torch as fdt

MODES = ("eager", "compiled", "bf16")
NAMES = ("torch.nn.Dropout", "fastdrop.torch.Dropout")

# %%
# Data and model
# --------------


def make_data(seed=0, n_train=2000, n_test=2000, dim=64, classes=10, noise=0.15):
    """Gaussian clusters (two per class) with a fraction ``noise`` of the
    training labels replaced at random."""
    g = torch.Generator().manual_seed(1000 + seed)
    centers = torch.randn(2 * classes, dim, generator=g) * 1.2

    def draw(n):
        k = torch.randint(0, 2 * classes, (n,), generator=g)
        x = centers[k] + torch.randn(n, dim, generator=g) * 1.6
        return x, k % classes

    xtr, ytr = draw(n_train)
    flip = torch.rand(n_train, generator=g) < noise
    ytr = torch.where(flip, torch.randint(0, classes, (n_train,), generator=g), ytr)
    xte, yte = draw(n_test)
    return xtr, ytr, xte, yte


def make_model(dropout_cls, p=0.3, dim=64, hidden=256, classes=10):
    return torch.nn.Sequential(
        torch.nn.Linear(dim, hidden), torch.nn.ReLU(), dropout_cls(p),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), dropout_cls(p),
        torch.nn.Linear(hidden, classes))


# %%
# One training run, in one mode
# -----------------------------


def train(dropout_cls, mode, seed, epochs=30, batch=100, compile_backend="inductor"):
    """(test accuracy, median step seconds) of one run."""
    xtr, ytr, xte, yte = make_data(seed)
    torch.manual_seed(seed)
    model = make_model(dropout_cls)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    net = model
    if mode == "compiled":
        net = torch.compile(model, backend=compile_backend, fullgraph=True)

    def step(xb, yb):
        if mode == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(net(xb), yb)
        else:
            loss = loss_fn(net(xb), yb)
        loss.backward()
        return loss

    times = []
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            step(xtr[idx], ytr[idx])
            opt.step()
            times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    skip = len(times) // 10  # the first steps include compilation
    return acc, statistics.median(times[skip:])


# %%
# Every mode and seed, both dropouts
# ----------------------------------


def main(modes=MODES, seeds=(0, 1, 2), epochs=30, compile_backend="inductor", verbose=True):
    """Results ``{(mode, name): [(accuracy, step_seconds) per seed]}``."""
    results = {}
    for mode in modes:
        for name, cls in (("torch.nn.Dropout", torch.nn.Dropout),
                          ("fastdrop.torch.Dropout", fdt.Dropout)):
            runs = [train(cls, mode, s, epochs=epochs, compile_backend=compile_backend)
                    for s in seeds]
            results[(mode, name)] = runs
            if verbose:
                accs = [a for a, _ in runs]
                print(f"{mode:<9} {name:<23} accuracy {statistics.mean(accs):.4f} "
                      f"(seeds {', '.join(f'{a:.4f}' for a in accs)})  step "
                      f"{statistics.median(t for _, t in runs) * 1e3:.2f} ms")
    return results


def plot(results):
    """Test accuracy (one dot per seed, bar = mean) and median step time of
    both dropouts in each mode, with pyplot."""
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(mode for mode, _ in results))
    fig, (ax_acc, ax_t) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for k, (name, colour) in enumerate(zip(NAMES, ("tab:red", "tab:blue"))):
        pos = [i + (k - 0.5) * 0.38 for i in range(len(modes))]
        runs = [results[(mode, name)] for mode in modes]
        ax_acc.bar(pos, [statistics.mean(a for a, _ in r) for r in runs], 0.36,
                   color=colour, alpha=0.35, label=name)
        for x, r in zip(pos, runs):
            ax_acc.plot([x] * len(r), [a for a, _ in r], "o", color=colour, ms=4)
        ax_t.bar(pos, [statistics.median(t for _, t in r) * 1e3 for r in runs], 0.36,
                 color=colour, label=name)
    for ax in (ax_acc, ax_t):
        ax.set_xticks(range(len(modes)), modes)
        ax.legend(fontsize=8, loc="lower right")
    lo = min(a for r in results.values() for a, _ in r)
    ax_acc.set_ylim(lo - 0.03, 1.0)
    ax_acc.set_ylabel("test accuracy (bars: mean, dots: seeds)")
    seeds = len(next(iter(results.values())))
    ax_acc.set_title(f"test accuracy, {seeds} seed{'s' if seeds > 1 else ''}")
    ax_t.set_ylabel("median training step (ms)")
    ax_t.set_title("training step, 64-256-256-10 MLP, batch 100")
    plt.show()


# %%
# Run it
# ------
if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0] or None)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--plot", action="store_true", help="plot the results (pyplot)")
    args = ap.parse_args()
    if args.threads:
        threads_before = torch.get_num_threads()
        torch.set_num_threads(args.threads)
    res = main(tuple(args.modes.split(",")), tuple(int(s) for s in args.seeds.split(",")),
               args.epochs)
    if args.plot:
        plot(res)
    if args.threads:
        torch.set_num_threads(threads_before)
