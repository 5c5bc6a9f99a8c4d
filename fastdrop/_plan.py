"""Plans: the semantics of a call, resolved once (docs/spec.md §3-§6).

A validated call becomes a frozen :class:`Plan` that says

- which **rule** forms each output element:
  ``"select"`` (the affine select: kept elements ``x * scale + shift``,
  dropped ``fill``; plain dropout has ``shift = -0.0``, which adds nothing,
  and ``fill = +0.0``; the keep decisions come from the plan's ``source``), ``"scale"`` (every element
  ``x * scale``), ``"copy"`` (``x`` unchanged), ``"zero"`` (every element
  ``+0.0``), ``"noise"`` (Gaussian dropout and noise: ``x * t`` or ``x +
  t`` with ``t = scale * z + shift`` from the normal-variate stream, the
  plan's ``noise`` says which) or ``"none"`` (no values: a mask-only call);
- the **source** of keep decisions for ``"select"`` and mask outputs:
  ``"philox"`` (the mask stream at ``(seed, offset)`` with threshold ``T``),
  ``"bool"`` or ``"packed"`` (a stored mask, in ``stored``), or a constant
  (``mask_fill``: every decision True or False, nothing drawn); ``"normal"``
  for the ``"noise"`` rule (the normal-variate stream at ``(seed, offset)``);
- the **geometry**: the mask shape ``M``, per-axis mask strides
  ``mstrides`` (0 on broadcast axes) and the mask size ``n``;
- the **outputs** wanted besides the values (``mask_out``: ``"bool"``,
  ``"packed"`` or None) and the **hints** (``fresh_out``: the value output
  was just allocated, so streaming stores would not pay).

This is the only module that looks at ``p == 0``, ``p == 1``, ``training``
and ``mode``; backends only run plans (:func:`fastdrop._dispatch.run`) and
never see ``p``, ``mode`` or ``rng``.  The planners assume validated
arguments (:mod:`fastdrop._validate`) and are the plan-level API the
adapters use (:mod:`fastdrop.adapters.dask` plans once and runs one block
at a time with :meth:`Plan.at`).

Examples
--------
>>> from fastdrop import _plan
>>> pl = _plan.plan_dropout((2, 4), 0.5, training=True, mode="inverted", rng=0)
>>> pl.rule, pl.source, pl.scale, pl.T, (pl.seed, pl.offset)
('select', 'philox', 2.0, 2147483648, (0, 0))
>>> _plan.plan_dropout((2, 4), 0.5, training=False, mode="classic", rng=0).rule
'scale'
>>> _plan.plan_dropout((2, 4), 1.0, training=True, mode="inverted", rng=0).rule
'zero'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional, TypeAlias

from ._generator import resolve_rng, resolve_state
from ._validate import Geometry, mask_geometry
from .reference import threshold

__all__ = ["Plan", "ALPHA", "MODES", "NOISES", "scale_for", "alpha_constants",
           "select_constants", "noise_constants", "noise_rule_of", "draws", "rule_of",
           "repeat_span", "SPAN_MIN", "span_to_draw", "plan_dropout", "plan_backward",
           "plan_apply", "plan_mask", "plan_noise", "plan_noise_backward"]

RULES = ("select", "scale", "copy", "zero", "noise", "none")
SOURCES = ("philox", "bool", "packed", "normal", None)

#: ``(shape, M, mstrides, n)``: the values' shape, then :data:`fastdrop._validate.Geometry`.
FullGeometry: TypeAlias = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]
#: A stored mask: ``(kind, (M, mstrides, n), flat mask)``, kind ``"bool"`` or ``"packed"``.
Stored: TypeAlias = tuple[str, Geometry, Any]


class Plan(NamedTuple):
    """A resolved call (see the module docstring).  Immutable (a named
    tuple: cheap to build on every call); derive variants with :meth:`at`,
    :meth:`keep_values` or ``_replace``."""

    rule: str                      # one of RULES
    source: Optional[str]          # one of SOURCES (None: no decisions drawn or read)
    shape: tuple                   # shape of the values (x, out)
    M: tuple                       # mask shape
    mstrides: tuple                # per-axis element strides of M (0 on broadcast axes)
    n: int                         # mask size
    scale: float = 1.0             # kept (select) or every (scale) element: x * scale
    shift: float = -0.0            # ... + shift for a kept element (-0.0: adds nothing)
    fill: float = 0.0              # a dropped element (select)
    seed: int = 0                  # philox source
    offset: int = 0
    T: int = 0
    stored: Any = None             # bool or packed source: the stored mask (flat)
    mask_out: Optional[str] = None  # "bool" | "packed" | None
    mask_fill: Optional[bool] = None  # mask outputs constant (no draw)
    fresh_out: bool = False
    noise: Optional[str] = None    # rule "noise": "mul" (x * t) or "add" (x + t)

    @property
    def full_mask(self) -> bool:
        """The mask is not broadcast: mask outputs come with the values."""
        return self.M == self.shape

    def keep_values(self) -> Plan:
        """This plan's keep decisions as values: kept ``x * 1.0``, dropped
        ``+0.0`` (run on ones, it computes a block of a multi-axis mask)."""
        return self._replace(rule="select", scale=1.0, shift=-0.0, fill=0.0, mask_out=None)

    def at(self, base: int) -> Plan:
        """The plan of a sub-block whose first element has mask index
        ``base`` (docs/spec.md §2): the stream offset moves, nothing else
        (mask strides stay those of the whole array; a block plan is run
        without mask outputs)."""
        if self.source not in ("philox", "normal") or base == 0:
            return self
        return self._replace(offset=self.offset + base)


#: SELU's negative saturation value is -ALPHA (``ALPHA = lambda * alpha`` of
#: Klambauer et al. 2017), PyTorch's constant (docs/spec.md §8).
ALPHA = 1.7580993408473766

#: How kept and dropped elements are formed (docs/spec.md §4, §8, §9): the
#: public dropout modes ``"inverted"`` and ``"classic"``; ``"unscaled"``
#: (DropPath without ``scale_by_keep``: kept elements unchanged in training,
#: the identity in evaluation); ``"alpha"`` (alpha dropout).
MODES = ("inverted", "classic", "unscaled", "alpha")


def scale_for(p: float, mode: str) -> float:
    """The factor kept elements are multiplied by in training (float64,
    computed once; docs/spec.md §4)."""
    if mode == "alpha":
        return alpha_constants(p)[0]
    if mode != "inverted" or p >= 1.0:
        return 1.0
    return 1.0 / (1.0 - p)


def alpha_constants(p: float) -> tuple[float, float, float]:
    """``(a, b, c)`` of alpha dropout for ``0 <= p < 1`` (docs/spec.md §8),
    each one float64 expression in this order: ``a = 1 / sqrt((ALPHA *
    ALPHA * p + 1) * (1 - p))``, kept ``x * a + b`` with ``b = ALPHA * a *
    p``, dropped ``c = ALPHA * a * (p - 1)`` (the saturation value ``-ALPHA``
    under the same affine map).

    Examples
    --------
    >>> [round(v, 6) for v in alpha_constants(0.5)]
    [0.886405, 0.779194, -0.779194]
    """
    a = 1.0 / math.sqrt((ALPHA * ALPHA * p + 1.0) * (1.0 - p))
    return a, ALPHA * a * p, ALPHA * a * (p - 1.0)


def select_constants(p: float, mode: str, grad: bool = False) -> tuple[float, float, float]:
    """``(scale, shift, fill)`` of the training select for ``0 < p < 1``:
    kept ``x * scale + shift``, dropped ``fill``.  The gradient of any of
    them (``grad``) is the select ``(scale, -0.0, +0.0)``."""
    if mode == "alpha" and not grad:
        return alpha_constants(p)
    return scale_for(p, mode), -0.0, 0.0


def repeat_span(shape: tuple[int, ...], mstrides: tuple[int, ...]) -> int:
    """How many mask positions values of ``shape`` read, ``1 + sum((e - 1) *
    s)`` over their extents ``e`` and mask strides ``s``, when they read
    some of them repeatedly in their C order; else 0.

    Positions repeat when an axis the mask is broadcast along (stride 0,
    extent > 1) comes before one it varies along: a channels-last spatial
    noise shape ``(N, 1, 1, C)``, a mask shared over a sequence ``(N, 1,
    F)``.  A full mask, or one broadcast along trailing axes only (one
    decision per row: DropPath, channels-first spatial dropout), reads each
    position in one run.  A kernel that makes each element's decision
    where it is used makes repeated ones once per repeat; where
    :func:`span_to_draw` says so, :func:`fastdrop._dispatch.run` and the
    XLA handlers draw the span once and apply it as a stored mask instead
    (the same decisions: the span starts at the plan's offset).

    Examples
    --------
    >>> repeat_span((32, 56, 56, 64), (64, 0, 0, 1))
    2048
    >>> repeat_span((64, 256, 14, 14), (256, 1, 0, 0)), repeat_span((4, 5), (5, 1))
    (0, 0)
    """
    broadcast = False
    for e, s in zip(shape, mstrides):
        if e > 1:
            if s == 0:
                broadcast = True
            elif broadcast:
                return 1 + sum((e - 1) * s for e, s in zip(shape, mstrides))
    return 0


#: Values from which a select whose mask positions repeat draws them first
#: (:func:`span_to_draw`).  Measured, float32 with a noise shape (N, 1, 1,
#: C), Cython, 1 thread, Zen 4 VM: 32 elements 9 us forward / 14 us drawn
#: first, 256: 15 / 14, 1024: 12 / 10, 8192: 29 / 13, 131072: 196 / 55.
SPAN_MIN = 1 << 9


def span_to_draw(plan: Plan) -> int:
    """How many mask positions a select from the stream draws once, before
    applying them as a stored mask, instead of making each decision where
    it is used: :func:`repeat_span` of its values, from :data:`SPAN_MIN`
    values on; else 0.  The NumPy API (:func:`fastdrop._dispatch.run`, for
    backends that draw spans) and the XLA handlers follow it.

    Examples
    --------
    >>> kw = dict(training=True, mode="inverted", rng=0)
    >>> span_to_draw(plan_dropout((32, 56, 56, 64), 0.5, noise_shape=(32, 1, 1, 64), **kw))
    2048
    >>> span_to_draw(plan_dropout((32, 64, 56, 56), 0.5, noise_shape=(32, 64, 1, 1), **kw))
    0
    >>> span_to_draw(plan_dropout((2, 2, 2, 32), 0.5, noise_shape=(2, 1, 1, 32), **kw))
    0
    """
    if plan.rule != "select" or plan.source != "philox" or plan.full_mask:
        return 0
    if math.prod(plan.shape) < SPAN_MIN:
        return 0
    return repeat_span(plan.shape, plan.mstrides)


def draws(training: bool) -> bool:
    """Whether a dropout call takes positions from its rng: in training
    always (p == 0 and p == 1 included: the stream advances by the mask
    size whatever p is), in evaluation never (docs/spec.md §3).  For
    adapters that must draw (seed, offset) before planning, e.g. from a
    ``torch.Generator``."""
    return bool(training)


def rule_of(p: float, training: bool, mode: str) -> str:
    """The rule of a call whose mask is not empty: in evaluation ``"copy"``
    (``"scale"`` by ``1 - p``, or ``"zero"`` at p == 1, for classic mode); in
    training ``"copy"`` at p == 0, ``"zero"`` at p == 1 (every mode: alpha
    dropout's dropped value tends to 0 as p -> 1, PyTorch's answer), else
    ``"select"``.  The one place these cases are decided."""
    if not training:
        if mode == "classic" and p != 0.0:
            return "zero" if p == 1.0 else "scale"
        return "copy"
    if p == 0.0:
        return "copy"
    return "zero" if p == 1.0 else "select"


def _eval(geometry: FullGeometry, p: float, mode: str, mask_out: str | None,
          fresh_out: bool) -> Plan:
    """Evaluation: no mask is drawn; every decision is "keep"."""
    rule = rule_of(p, False, mode)
    return Plan(rule, None, *geometry, scale=1.0 - p if rule == "scale" else 1.0,
                mask_out=mask_out, mask_fill=True if mask_out else None, fresh_out=fresh_out)


def _train(geometry: FullGeometry, p: float, mode: str, seed: int, offset: int,
           mask_out: str | None, fresh_out: bool, grad: bool = False) -> Plan:
    """Training with decisions from the stream at ``(seed, offset)``."""
    shape, M, mstrides, n = geometry
    if n == 0:  # empty: nothing drawn
        return Plan("none", None, shape, M, mstrides, n, mask_out=mask_out,
                    fresh_out=fresh_out)
    rule = rule_of(p, True, mode)
    if rule != "select":  # copy (all kept) or zero (all dropped): nothing to draw
        return Plan(rule, None, shape, M, mstrides, n, mask_out=mask_out,
                    mask_fill=(rule == "copy") if mask_out else None, fresh_out=fresh_out)
    a, b, c = select_constants(p, mode, grad)
    # positional (a small call builds one on every call): the fields in order
    return Plan("select", "philox", shape, M, mstrides, n, a, b, c, seed, offset,
                threshold(p), None, mask_out, None, fresh_out)


def plan_dropout(shape: Sequence[int], p: float, *, training: bool, mode: str, rng: Any,
                 noise_shape: Any = None, mask_out: str | None = None, fresh_out: bool = False,
                 geometry: Geometry | None = None) -> Plan:
    """The plan of ``fastdrop.dropout``; in training a Generator ``rng``
    advances here (the last step: everything else was checked before).
    ``geometry``: ``mask_geometry(shape, noise_shape)`` if the caller has it."""
    full = (tuple(shape),) + (geometry or mask_geometry(shape, noise_shape))
    if not training:
        return _eval(full, p, mode, mask_out, fresh_out)
    seed, offset = resolve_rng(rng, full[3])
    return _train(full, p, mode, seed, offset, mask_out, fresh_out)


def plan_backward(shape: Sequence[int], p: float, *, training: bool, mode: str,
                  state: Any = None, stored: Stored | None = None, noise_shape: Any = None,
                  fresh_out: bool = False) -> Plan:
    """The plan of ``fastdrop.dropout_backward``: the forward's mask from
    ``stored`` (``(kind, (M, mstrides, n), mask)``, as for :func:`plan_apply`) or
    regenerated from ``state``; evaluation needs neither."""
    if stored is not None:
        geometry = (tuple(shape),) + stored[1]
    else:
        geometry = (tuple(shape),) + mask_geometry(shape, noise_shape)
    if state is not None:
        seed, offset = resolve_state(state, geometry[3])
    if not training:
        return _eval(geometry, p, mode, None, fresh_out)
    if stored is not None:
        return plan_apply(shape, p, mode, stored, fresh_out=fresh_out, grad=True)
    return _train(geometry, p, mode, seed, offset, None, fresh_out, grad=True)


def plan_apply(shape: Sequence[int], p: float, mode: str, stored: Stored, *,
               fresh_out: bool = False, grad: bool = False) -> Plan:
    """The plan of ``fastdrop.apply_mask``: a stored mask, ``stored =
    (kind, (M, mstrides, n), mask)`` with kind ``"bool"`` or ``"packed"``
    (the mask as the backend reads it: flat on the host, a view on a GPU);
    ``grad``: the gradient's select (backward)."""
    kind, geometry, flat = stored
    full = (tuple(shape),) + geometry
    if p == 1.0 and mode in ("inverted", "alpha"):  # scale 1 / 0: nothing survives
        return Plan("zero", None, *full, fresh_out=fresh_out)
    a, b, c = select_constants(p, mode, grad)
    return Plan("select", kind, *full, scale=a, shift=b, fill=c, stored=flat,
                fresh_out=fresh_out)


def plan_mask(shape: Sequence[int], p: float, *, rng: Any, mask_out: str | None) -> Plan:
    """The plan of ``fastdrop.dropout_mask``: the training decisions of
    :func:`plan_dropout` (same p == 0 / p == 1 rules), mask outputs only."""
    geometry = (tuple(shape),) + mask_geometry(shape, None)
    seed, offset = resolve_rng(rng, geometry[3])
    plan = _train(geometry, p, "inverted", seed, offset, mask_out, False)
    return plan if plan.rule == "none" else Plan("none", *plan[1:])


# ----------------------------------------------------------------------------
# Gaussian dropout and Gaussian noise (docs/spec.md §11)
# ----------------------------------------------------------------------------

#: The Gaussian members of the family, by the parameter they take: Gaussian
#: dropout's drop probability ``p`` in [0, 1), Gaussian noise's ``stddev``.
NOISES = ("gaussian_dropout", "gaussian_noise")


def noise_constants(kind: str, param: float) -> tuple[float, float, str]:
    """``(a, b, op)`` of the noise rule ``t = b * z + a``, ``x op t``
    (docs/spec.md §11): Gaussian dropout ``(1.0, sqrt(p / (1 - p)), "mul")``,
    Gaussian noise ``(-0.0, stddev, "add")``.

    Examples
    --------
    >>> noise_constants("gaussian_dropout", 0.5)
    (1.0, 1.0, 'mul')
    >>> noise_constants("gaussian_noise", 0.1)
    (-0.0, 0.1, 'add')
    """
    if kind == "gaussian_dropout":
        return 1.0, math.sqrt(param / (1.0 - param)), "mul"
    return -0.0, float(param), "add"


def _noise_geometry(shape: Sequence[int], noise_shape: Any,
                    geometry: Geometry | None) -> FullGeometry:
    return (tuple(shape),) + (geometry or mask_geometry(shape, noise_shape))


def noise_rule_of(param: float, training: bool) -> str:
    """The rule of a Gaussian call whose noise is not empty: ``"copy"`` in
    evaluation and at ``param == 0`` (training still draws), else
    ``"noise"``.  The one place these cases are decided (as
    :func:`rule_of` for the select)."""
    return "noise" if training and param != 0.0 else "copy"


def plan_noise(shape: Sequence[int], kind: str, param: float, *, training: bool, rng: Any,
               noise_shape: Any = None, fresh_out: bool = False,
               geometry: Geometry | None = None) -> Plan:
    """The plan of ``gaussian_dropout`` (``param = p``) or ``gaussian_noise``
    (``param = stddev``), validated: rule ``"noise"``, or ``"copy"`` in
    evaluation and at ``param == 0`` (in training a Generator ``rng`` still
    advances by the mask size, as for dropout's p == 0)."""
    full = _noise_geometry(shape, noise_shape, geometry)
    if not training:
        return Plan("copy", None, *full, fresh_out=fresh_out)
    seed, offset = resolve_rng(rng, full[3])
    return _noise_train(full, kind, param, seed, offset, fresh_out)


def _noise_train(geometry: FullGeometry, kind: str, param: float, seed: int, offset: int,
                 fresh_out: bool) -> Plan:
    if geometry[3] == 0:
        return Plan("none", None, *geometry, fresh_out=fresh_out)
    if noise_rule_of(param, True) == "copy":
        return Plan("copy", None, *geometry, fresh_out=fresh_out)
    a, b, op = noise_constants(kind, param)
    return Plan("noise", "normal", *geometry, scale=b, shift=a, seed=seed, offset=offset,
                noise=op, fresh_out=fresh_out)


def plan_noise_backward(shape: Sequence[int], kind: str, param: float, *, training: bool,
                        state: Any, noise_shape: Any = None, fresh_out: bool = False) -> Plan:
    """The gradient's plan: Gaussian dropout multiplies ``grad`` by the
    forward's noise, regenerated from ``state``; Gaussian noise and
    evaluation pass ``grad`` through (a copy)."""
    geometry = _noise_geometry(shape, noise_shape, None)
    if state is not None:
        seed, offset = resolve_state(state, geometry[3])
    if not training or kind == "gaussian_noise":
        return Plan("copy", None, *geometry, fresh_out=fresh_out)
    return _noise_train(geometry, kind, param, seed, offset, fresh_out)
