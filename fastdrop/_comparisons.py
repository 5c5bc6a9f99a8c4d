"""One table of comparisons that drives both the tests and the benchmarks.

Each :class:`Comparison` names an operation and says, for that operation,

- how to call it through fastdrop's public API on a given backend;
- its exact equivalent in :mod:`fastdrop.reference` (the oracle the tests
  compare every backend against with ``assert_array_equal``);
- the NumPy idioms people write instead (statistically equivalent, not
  bit-identical: they are benchmark baselines only);
- the PyTorch equivalent, when there is one;
- the memory traffic per element, so that the benchmark can time a
  streaming kernel that moves the same number of bytes (the ceiling).

The table is :data:`COMPARISONS`; ``tests/test_comparisons.py``, the
``fastdrop bench`` engine (:mod:`fastdrop._bench`) and the pytest-benchmark
suite in ``bench/`` all iterate over it.  Importing this module imports NumPy and fastdrop only.

Examples
--------
>>> import numpy as np
>>> from fastdrop._comparisons import COMPARISONS, Case
>>> [c.name for c in COMPARISONS]
['forward', 'forward_mask', 'alpha_dropout', 'gaussian_dropout', 'gaussian_noise', 'drop_path', 'mask_packed', 'apply_mask']
>>> case = Case(16, np.float32, p=0.5, seed=0)
>>> cmp = COMPARISONS[0]
>>> got = cmp.fastdrop(case, "reference")
>>> np.array_equal(got, cmp.reference(case))
True
>>> cmp.traffic(4)          # bytes per element: read x, write y
8
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np

import fastdrop
from fastdrop import _plan, reference
from fastdrop._plan import scale_for
from fastdrop._validate import mask_geometry

__all__ = ["Case", "Comparison", "COMPARISONS", "get_comparison", "NUMPY_IDIOMS"]


def _zeros(shape, dtype):
    """Zeros written explicitly (``np.zeros`` maps lazily zeroed pages, whose
    first-touch page faults would then land in a timing)."""
    a = np.empty(shape, dtype)
    a.fill(0)
    return a


class Case:
    """Inputs and preallocated buffers for one comparison run.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of ``x``.
    dtype : dtype-like
        Floating dtype of ``x``.
    p : float
        Drop probability.
    seed : int
        Seed for fastdrop's mask (``rng=seed``: stateless and repeatable) and
        for the NumPy generator used by the NumPy idioms and to draw ``x``
        and the stored mask ``keep``.

    Notes
    -----
    Buffers are allocated lazily (only the ones an operation uses) and
    touched once, so page faults are not part of any timing.

    Examples
    --------
    >>> c = Case((2, 3), "float64", p=0.25, seed=1)
    >>> c.x.shape, c.n, c.scale
    ((2, 3), 6, 1.3333333333333333)
    """

    def __init__(self, shape, dtype, p=0.5, seed=0):
        self.shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.p = float(p)
        self.seed = int(seed)
        self.n = math.prod(self.shape)
        self.rng = np.random.default_rng(self.seed)

    @cached_property
    def x(self):
        """The input: standard normal values in ``dtype``."""
        g = np.random.default_rng(self.seed + 1)
        return g.standard_normal(self.shape, dtype=np.float32).astype(self.dtype)

    @cached_property
    def out(self):
        """Output buffer, same shape and dtype as ``x`` (pre-touched)."""
        return _zeros(self.shape, self.dtype)

    @cached_property
    def keep(self):
        """A stored bool mask (True = kept) for :func:`fastdrop.apply_mask`."""
        g = np.random.default_rng(self.seed + 2)
        return g.random(self.shape, dtype=np.float32) >= self.p

    @cached_property
    def u32(self):
        """float32 uniforms buffer for the in-place NumPy idiom."""
        return _zeros(self.shape, np.float32)

    @cached_property
    def kbuf(self):
        """bool buffer for the in-place NumPy idiom."""
        return _zeros(self.shape, bool)

    @property
    def scale(self):
        """Scale of kept elements (inverted dropout), float64."""
        return scale_for(self.p, "inverted")

    @property
    def threshold(self):
        """Integer threshold ``T`` of the mask stream v1."""
        return reference.threshold(self.p)

    @property
    def mstrides(self):
        """C-order mask strides of ``x``'s shape (no broadcasting)."""
        return mask_geometry(self.shape, None)[1]


# ----------------------------------------------------------------------------
# fastdrop calls (public API, preallocated out= where the API has one)
# ----------------------------------------------------------------------------

def _fd_forward(c, backend):
    return fastdrop.dropout(c.x, c.p, rng=c.seed, out=c.out, backend=backend)


def _fd_forward_mask(c, backend):
    return fastdrop.dropout(c.x, c.p, rng=c.seed, out=c.out, return_mask=True,
                            backend=backend)


def _fd_alpha(c, backend):
    return fastdrop.alpha_dropout(c.x, c.p, rng=c.seed, out=c.out, backend=backend)


def _fd_gaussian(c, backend):
    return fastdrop.gaussian_dropout(c.x, c.p, rng=c.seed, out=c.out, backend=backend)


def _fd_gaussian_noise(c, backend):
    return fastdrop.gaussian_noise(c.x, c.p, rng=c.seed, out=c.out, backend=backend)


def _rows(n):
    """DropPath's view of a case: ``(n // k, k)`` samples of ``k`` elements,
    ``k`` the largest power of two up to ``2**16`` that divides ``n`` and
    leaves at least 64 samples (a (64, 197, 768) ViT block is 2**16.1 per
    sample); one decision per sample."""
    k = 1
    while k < 1 << 16 and n % (2 * k) == 0 and n // (2 * k) >= 64:
        k *= 2
    return k


def _fd_drop_path(c, backend):
    k = _rows(c.n)
    return fastdrop.drop_path(c.x.reshape(-1, k), c.p, rng=c.seed,
                              out=c.out.reshape(-1, k), backend=backend).reshape(c.shape)


def _fd_mask_packed(c, backend):
    return fastdrop.dropout_mask(c.shape, c.p, rng=c.seed, packed=True, backend=backend)


def _fd_apply_mask(c, backend):
    return fastdrop.apply_mask(c.x, c.keep, c.p, out=c.out, backend=backend)


# ----------------------------------------------------------------------------
# reference equivalents (the oracle: fastdrop.reference called directly)
# ----------------------------------------------------------------------------

def _ref_keep(c):
    return reference.keep_range(c.seed, 0, c.n, c.threshold)


def _ref_forward(c):
    out = np.empty(c.shape, c.dtype)
    reference.forward(c.x, out, c.seed, 0, c.threshold, c.scale, c.mstrides)
    return out


def _ref_forward_mask(c):
    keep = _ref_keep(c)
    out = np.empty(c.shape, c.dtype)
    reference.apply_mask(c.x, out, c.mstrides, c.scale, keep=keep)
    return out, keep.reshape(c.shape)


def _ref_alpha(c):
    """Alpha dropout (docs/spec.md §8): the plan's rule for p, then the
    reference's affine select with the spec's constants."""
    out = np.empty(c.shape, c.dtype)
    rule = _plan.rule_of(c.p, True, "alpha")
    if rule == "select":
        a, b, fill = _plan.alpha_constants(c.p)
        reference.forward(c.x, out, c.seed, 0, c.threshold, a, c.mstrides, shift=b, fill=fill)
    else:
        out[...] = c.x if rule == "copy" else 0
    return out


def _ref_noise(c, kind):
    """Gaussian dropout or noise (docs/spec.md §11, the case's p as the
    parameter): the plan's rule, then the reference's noise kernel."""
    out = np.empty(c.shape, c.dtype)
    pl = _plan.plan_noise(c.shape, kind, c.p, training=True, rng=c.seed)
    if pl.rule == "noise":
        reference.noise(c.x, out, c.seed, 0, c.mstrides, pl.shift, pl.scale, pl.noise)
    else:
        out[...] = c.x
    return out


def _ref_drop_path(c):
    k = _rows(c.n)
    x = c.x.reshape(-1, k)
    out = np.empty_like(x)
    rule = _plan.rule_of(c.p, True, "inverted")
    if rule == "select":
        reference.forward(x, out, c.seed, 0, c.threshold, c.scale, (1, 0))
    else:
        out[...] = x if rule == "copy" else 0
    return out.reshape(c.shape)


def _ref_mask_packed(c):
    return np.packbits(_ref_keep(c), bitorder="little")


def _ref_apply_mask(c):
    out = np.empty(c.shape, c.dtype)
    reference.apply_mask(c.x, out, c.mstrides, c.scale, keep=c.keep.reshape(-1))
    return out


# ----------------------------------------------------------------------------
# NumPy idioms (benchmark baselines: what people write without fastdrop)
# ----------------------------------------------------------------------------

#: Short descriptions of the NumPy idioms, by name.
NUMPY_IDIOMS = {
    "numpy-f64": "float64 uniforms: x * (rng.random(shape) >= p) / (1 - p)",
    "numpy-f32": "float32 uniforms: rng.random(shape, dtype=np.float32)",
    "numpy-inplace": "float32 uniforms, preallocated buffers, out= ufuncs",
}


def _np_keep64(c):
    return c.rng.random(c.shape) >= c.p


def _np_keep32(c):
    return c.rng.random(c.shape, dtype=np.float32) >= c.p


def _np_keep_inplace(c):
    c.rng.random(c.shape, dtype=np.float32, out=c.u32)
    np.greater_equal(c.u32, c.p, out=c.kbuf)
    return c.kbuf


def _np_apply(c, keep):
    return c.x * keep / (1 - c.p)


def _np_apply_inplace(c, keep):
    np.multiply(c.x, keep, out=c.out)
    np.multiply(c.out, c.out.dtype.type(c.scale), out=c.out)
    return c.out


_NP_FORWARD = {
    "numpy-f64": lambda c: _np_apply(c, _np_keep64(c)),
    "numpy-f32": lambda c: _np_apply(c, _np_keep32(c)),
    "numpy-inplace": lambda c: _np_apply_inplace(c, _np_keep_inplace(c)),
}


def _with_mask(keep_fn, apply_fn):
    def f(c):
        keep = keep_fn(c)
        return apply_fn(c, keep), keep
    return f


_NP_FORWARD_MASK = {
    "numpy-f64": _with_mask(_np_keep64, _np_apply),
    "numpy-f32": _with_mask(_np_keep32, _np_apply),
    "numpy-inplace": _with_mask(_np_keep_inplace, _np_apply_inplace),
}

_NP_MASK_PACKED = {
    "numpy-f64": lambda c: np.packbits(_np_keep64(c), bitorder="little"),
    "numpy-f32": lambda c: np.packbits(_np_keep32(c), bitorder="little"),
    "numpy-inplace": lambda c: np.packbits(_np_keep_inplace(c), bitorder="little"),
}

def _np_alpha(c, keep):
    """Keras's formula: ``(x * keep + alpha_p * (1 - keep)) * a + b``."""
    a, b, _ = _plan.alpha_constants(c.p)
    keep = keep.astype(c.x.dtype)
    return (c.x * keep - _plan.ALPHA * (1 - keep)) * c.x.dtype.type(a) + c.x.dtype.type(b)


_NP_ALPHA = {
    "numpy-f32": lambda c: _np_alpha(c, _np_keep32(c)),
}

def _sigma(c):
    return math.sqrt(c.p / (1.0 - c.p))


_NP_GAUSSIAN = {
    # the idiom (and Keras's formula): float64 normals, cast, multiply
    "numpy-normal": lambda c: c.x * c.rng.normal(1.0, _sigma(c), c.shape).astype(c.dtype),
    # float32 normals (ziggurat in float32) scaled in place
    "numpy-f32": lambda c: c.x * (c.rng.standard_normal(c.shape, dtype=np.float32)
                                  * np.float32(_sigma(c)) + np.float32(1.0)).astype(c.dtype),
}

_NP_GAUSSIAN_NOISE = {
    "numpy-normal": lambda c: c.x + c.rng.normal(0.0, c.p, c.shape).astype(c.dtype),
    "numpy-f32": lambda c: c.x + c.rng.standard_normal(c.shape, dtype=np.float32)
    .astype(c.dtype) * c.dtype.type(c.p),
}

_NP_DROP_PATH = {
    # timm's formula in NumPy: one uniform per row
    "numpy-f64": lambda c: (c.x.reshape(-1, _rows(c.n))
                            * ((c.rng.random((c.n // _rows(c.n), 1)) >= c.p) / (1 - c.p))
                            .astype(c.dtype)).reshape(c.shape),
}

_NP_APPLY_MASK = {
    "numpy": lambda c: _np_apply(c, c.keep),
    "numpy-inplace": lambda c: _np_apply_inplace(c, c.keep),
}


# ----------------------------------------------------------------------------
# PyTorch equivalents (called on tensors: ``t`` is a namespace with x, keep)
# ----------------------------------------------------------------------------

def _torch_forward(torch, t, p, scale):
    return torch.nn.functional.dropout(t.x, p, training=True)


def _torch_forward_mask(torch, t, p, scale):
    return torch.native_dropout(t.x, p, True)


def _torch_alpha(torch, t, p, scale):
    return torch.nn.functional.alpha_dropout(t.x, p, training=True)


def _torch_drop_path(torch, t, p, scale):
    """timm's ``drop_path`` (timm/layers/drop.py): a Bernoulli per sample,
    divided by the keep probability."""
    x = t.x.reshape(-1, _rows(t.x.numel()))
    keep = x.new_empty((x.shape[0], 1)).bernoulli_(1 - p)
    if p < 1:
        keep.div_(1 - p)
    return (x * keep).reshape(t.x.shape)


def _torch_apply_mask(torch, t, p, scale):
    return torch.ops.aten.native_dropout_backward(t.x, t.keep, scale)


# ----------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """One operation, the ways to compute it, and its memory traffic.

    Attributes
    ----------
    name : str
        Short identifier (used on the command line: ``--ops``).
    title : str
        Human-readable description.
    fastdrop : callable
        ``fastdrop(case, backend) -> result`` through the public API.
    reference : callable
        ``reference(case) -> result``: the exact expected result, from
        :mod:`fastdrop.reference`.
    numpy : dict
        ``idiom name -> f(case) -> result`` (statistically equivalent only).
    torch : callable or None
        ``torch_fn(torch, tensors, p, scale)``; ``tensors`` has ``x`` and
        ``keep``.
    traffic : callable
        ``traffic(itemsize) -> bytes per element`` read plus written.
    """

    name: str
    title: str
    fastdrop: Callable
    reference: Callable
    numpy: dict = field(default_factory=dict)
    torch: Callable | None = None
    traffic: Callable | None = None
    gpu: bool = True  # whether the operation takes and returns device arrays

    def bytes_moved(self, n, itemsize):
        """Total bytes read plus written for ``n`` elements.

        Examples
        --------
        >>> get_comparison("mask_packed").bytes_moved(80, 4)
        10.0
        """
        return self.traffic(itemsize) * n


COMPARISONS = (
    Comparison(
        name="forward",
        title="dropout forward: y = dropout(x, p)",
        fastdrop=_fd_forward,
        reference=_ref_forward,
        numpy=_NP_FORWARD,
        torch=_torch_forward,
        traffic=lambda isz: 2 * isz,
    ),
    Comparison(
        name="forward_mask",
        title="dropout forward + bool mask: y, keep = dropout(x, p, return_mask=True)",
        fastdrop=_fd_forward_mask,
        reference=_ref_forward_mask,
        numpy=_NP_FORWARD_MASK,
        torch=_torch_forward_mask,
        traffic=lambda isz: 2 * isz + 1,
    ),
    Comparison(
        name="alpha_dropout",
        title="alpha dropout forward: y = alpha_dropout(x, p)",
        fastdrop=_fd_alpha,
        reference=_ref_alpha,
        numpy=_NP_ALPHA,
        torch=_torch_alpha,
        traffic=lambda isz: 2 * isz,
    ),
    Comparison(
        name="gaussian_dropout",
        title="Gaussian dropout forward: y = gaussian_dropout(x, p)",
        fastdrop=_fd_gaussian,
        reference=lambda c: _ref_noise(c, "gaussian_dropout"),
        numpy=_NP_GAUSSIAN,
        torch=None,  # torch has no Gaussian dropout op
        traffic=lambda isz: 2 * isz,
    ),
    Comparison(
        name="gaussian_noise",
        title="Gaussian noise forward: y = gaussian_noise(x, stddev=p)",
        fastdrop=_fd_gaussian_noise,
        reference=lambda c: _ref_noise(c, "gaussian_noise"),
        numpy=_NP_GAUSSIAN_NOISE,
        torch=None,  # torch has no Gaussian noise op
        traffic=lambda isz: 2 * isz,
    ),
    Comparison(
        name="drop_path",
        title="DropPath forward: y = drop_path(x.reshape(N, -1), p), N >= 64 samples",
        fastdrop=_fd_drop_path,
        reference=_ref_drop_path,
        numpy=_NP_DROP_PATH,
        torch=_torch_drop_path,
        traffic=lambda isz: 2 * isz,
    ),
    Comparison(
        name="mask_packed",
        title="packed mask only: dropout_mask(shape, p, packed=True)",
        fastdrop=_fd_mask_packed,
        reference=_ref_mask_packed,
        numpy=_NP_MASK_PACKED,
        torch=None,
        traffic=lambda isz: 1 / 8,
        gpu=False,
    ),
    Comparison(
        name="apply_mask",
        title="apply a stored bool mask: y = apply_mask(x, keep, p)",
        fastdrop=_fd_apply_mask,
        reference=_ref_apply_mask,
        numpy=_NP_APPLY_MASK,
        torch=_torch_apply_mask,
        traffic=lambda isz: 2 * isz + 1,
    ),
)


def get_comparison(name):
    """The :class:`Comparison` called ``name`` (ValueError if unknown).

    Examples
    --------
    >>> get_comparison("apply_mask").traffic(8)
    17
    """
    for c in COMPARISONS:
        if c.name == name:
            return c
    raise ValueError(
        f"unknown operation {name!r}; choose from {[c.name for c in COMPARISONS]}")
