"""
One mask, bit for bit: NumPy, PyTorch, Dask and Numba
======================================================

fastdrop's mask is a function of ``(seed, offset + i, p)`` only, where ``i``
is the element's C-order index in the array's logical shape (docs/spec.md
§1-§2).  It does not depend on the backend, the number of threads, the
memory layout, how a Dask array is chunked, or which framework holds the
data.  This example draws the mask for one seed through eight routes, checks
that every result is the same bits, and draws the masks side by side, next
to PyTorch's own dropout (another generator, another mask) for contrast.

The CUDA backend follows the same definition (it is compared with the
reference under Numba's CUDA simulator in the test suite); it is left out
here because the documentation is built without a GPU.
"""

# %%
# The input and the reference mask
# --------------------------------
import numpy as np

import fastdrop

seed, p = 2024, 0.3
shape = (48, 64)
x = np.random.default_rng(0).uniform(1.0, 2.0, shape).astype(np.float32)   # no zeros

# fastdrop.reference is the executable specification (pure NumPy).
y_ref, keep_ref = fastdrop.dropout(x, p, rng=seed, backend="reference",
                                   return_mask=True)
print(f"{keep_ref.size} elements, {int((~keep_ref).sum())} dropped "
      f"({(~keep_ref).mean():.3f}; p = {p})")

# %%
# Eight routes to the same mask
# -----------------------------
# Each route returns the dropout output; its mask is where the output is not
# zero (the input has no zeros).  Results are compared as raw bits.
import dask.array as da
import numba
import torch

import fastdrop.dask
import fastdrop.numba as fdn
import fastdrop.torch as fdt

results = {}

# the compiled backends (Cython on its worker pool, Numba parallel), 1 and 2 threads
for backend in ("cython", "numba"):
    for threads in (1, 2):
        fastdrop.set_num_threads(threads)
        results[f"NumPy, backend={backend!r}, {threads} thread(s)"] = \
            fastdrop.dropout(x, p, rng=seed, backend=backend)
fastdrop.set_num_threads(None)        # back to the default

# another memory layout: the logical index, not the address, picks the mask
xf = np.asfortranarray(x)
results["NumPy, Fortran-ordered input"] = fastdrop.dropout(xf, p, rng=seed)

# PyTorch: the autograd-aware functional form, on a CPU tensor
results["PyTorch, fastdrop.torch.dropout"] = \
    fdt.dropout(torch.from_numpy(x), p, generator=seed).numpy()

# Dask: uneven chunks, each computing its own part of the global mask
xd = da.from_array(x, chunks=((10, 17, 21), (30, 34)))
results["Dask, chunks (10,17,21) x (30,34)"] = \
    fastdrop.dask.dropout(xd, p, rng=seed).compute()


# Numba: the keep decision inside your own @njit code
@numba.njit
def my_dropout(x, seed, p):
    out = np.zeros_like(x)
    scale = np.float32(1.0 / (1.0 - p))
    rows, cols = x.shape
    for r in range(rows):
        for c in range(cols):
            if fdn.keep(seed, np.uint64(r * cols + c), p):   # stream position = index
                out[r, c] = x[r, c] * scale
    return out


results["Numba @njit, fastdrop.numba.keep"] = my_dropout(x, seed, p)

for name, y in results.items():
    same = (y.dtype == y_ref.dtype
            and np.array_equal(y.view(np.uint32), y_ref.view(np.uint32)))
    print(f"{name:<40} identical bits: {same}")
    assert same, name

# %%
# For contrast: PyTorch's own dropout
# -----------------------------------
# :func:`torch.nn.functional.dropout` draws from torch's generator with its
# own algorithm, so the same seed gives a different mask (and a CUDA tensor
# would give yet another one).
torch.manual_seed(seed)
y_torch = torch.nn.functional.dropout(torch.from_numpy(x), p).numpy()
agree = np.mean((y_torch != 0) == keep_ref)
print(f"torch.nn.functional.dropout and fastdrop agree on {agree:.1%} of the elements")
print(f"(two independent masks would agree on {(1 - p) ** 2 + p ** 2:.1%})")

# %%
# The masks side by side
# ----------------------
# Black = dropped.  The last panel is PyTorch's own mask.
import matplotlib.pyplot as plt

panels = [("fastdrop.reference (the spec)", y_ref)] + list(results.items()) \
    + [("torch.nn.functional.dropout\n(torch's generator)", y_torch)]
fig, axes = plt.subplots(3, 4, figsize=(9, 6.8), layout="constrained")
for ax in axes.flat[len(panels):]:
    ax.set_axis_off()
for ax, (name, y) in zip(axes.flat, panels):
    keep = y != 0
    ax.imshow(keep, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ok = np.array_equal(keep, keep_ref)
    if "\n" not in name:
        name = name.replace(", ", ",\n", 1)
    ax.set_title(name, fontsize=9)
    verdict = ("the definition" if name.startswith("fastdrop.reference")
               else "same mask as the spec" if ok else "a different mask")
    ax.set_xlabel(verdict, fontsize=9, color="tab:green" if ok else "tab:red")
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"keep masks, {shape[0]}x{shape[1]}, p = {p}, seed {seed}")
plt.show()
