"""Backend registry and the plan runner.

Backends only run plans (:mod:`fastdrop._plan`): :func:`run` turns a plan's
rule into calls of a backend's primitives, through an *ops* object
(:class:`HostOps` for the CPU backends; the CUDA front end has its own, with
the stream).  The registry knows each backend's module, whether it runs
here (and why not), its dtypes and whether it takes the fresh-output hint;
:func:`choose_cpu_backend` is what ``backend="auto"`` uses for host arrays,
and :func:`fast_path` gives the compiled fast paths of the backend that
has them (the Cython backend's ``fast_dropout`` and ``fast_backward``).

The kernel interface
--------------------
A backend is a module with four functions.  The front end (``_api``) has
already validated every argument, resolved the plan and allocated every
output; kernels only compute.  They never see ``p``, ``mode`` or ``rng``.
Arrays are NumPy arrays on the CPU (device arrays for ``cuda``).

``forward(x, out, seed, offset, T, scale, mstrides, keep_out=None, packed_out=None, *, shift=-0.0, fill=0.0)``
    ``x`` and ``out`` have the same shape and floating dtype and any strides
    (``out`` may be ``x`` itself, for in-place; they never partly overlap).
    For every multi-index ``idx`` of ``x`` the mask index is
    ``i = sum(idx[k] * mstrides[k])`` (``mstrides`` are the C-order element
    strides of the mask shape, 0 on broadcast axes) and the element is
    ``out[idx] = x[idx] * scale + shift`` if ``keep(offset + i)`` else
    ``fill`` (the affine select; plain dropout: ``shift = -0.0``, an exact
    identity, and ``fill = +0.0``), where ``keep`` is the v1 decision for
    ``seed`` and threshold ``T`` (an int in ``[0, 2**32]``).  ``scale``,
    ``shift`` and ``fill`` are Python floats (float64) that the kernel casts
    once to the compute type (float64 for float64, float32 otherwise); the
    product and the sum are two correctly rounded operations (never fused),
    and ``fill`` reaches the storage type through the compute type, as a kept
    value does (docs/spec.md §4).
    ``keep_out`` (C-contiguous bool, mask size) and ``packed_out``
    (C-contiguous uint8, ``ceil(n / 8)`` bytes, tail bits zero) are given only
    when the mask is not broadcast (``mstrides`` are x's C strides); then the
    kernel also writes the keep bits there.
``mask(n, seed, offset, T, keep_out=None, packed_out=None)``
    Keep bits of stream positions ``offset .. offset + n - 1`` into either or
    both outputs.
``apply_mask(x, out, mstrides, scale, keep=None, packed=None, *, shift=-0.0, fill=0.0)``
    As ``forward`` but ``keep(i)`` is read from a stored C-contiguous bool
    array or from little-endian packed bits (exactly one is given).

``noise(x, out, seed, offset, mstrides, a, b, op)``
    Gaussian dropout and noise (docs/spec.md §11): for every element, with
    mask index ``i`` as in ``forward``, ``t = b * z + a`` in float64 (``z``
    the normal-variate stream at position ``offset + i``, docs/spec.md
    §10; one rounded multiply, one rounded add), then ``out = x * t``
    (``op == "mul"``) or ``x + t`` (``op == "add"``) with ``t`` and ``x``
    in the compute type, rounded back to the dtype.

A backend module may also define ``available() -> (bool, reason)`` and
``DTYPES`` (the dtype names it supports; default float16/32/64; every
built-in backend also lists ``"bfloat16"``: ``ml_dtypes.bfloat16`` arrays,
computed in float32 with docs/spec.md §4's conversions).  One that
sets ``ACCEPTS_FRESH_OUT = True`` gets ``fresh_out=True`` in ``forward`` and
``apply_mask`` when the front end has just allocated ``out`` (untouched
pages: non-temporal stores, which pay off on a caller's buffer, would then
cost extra traffic).
One that sets ``DRAWS_SPANS = True`` has a broadcast mask whose positions
repeat along ``x`` (:func:`fastdrop._plan.span_to_draw`) drawn once with
``mask`` and applied with ``apply_mask`` by :func:`run`, instead of its
``forward`` making each decision once per repeat (the reference backend,
the definition, does not).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ._extras import install_command, is_installed
from ._plan import span_to_draw

if TYPE_CHECKING:
    from ._plan import Plan

__all__ = ["BACKENDS", "get_backends", "get_backend", "choose_cpu_backend", "fast_path",
           "run", "run_host", "HostOps", "missing_packages"]

#: name -> module path, in order of preference for ``backend="auto"`` on the CPU.
BACKENDS = {
    "cython": "fastdrop._cython.backend",
    "numba": "fastdrop._numba.backend",
    "reference": "fastdrop.reference",
    "cuda": "fastdrop._cuda.backend",
}

_DEFAULT_DTYPES = ("float16", "float32", "float64")


class _Loaded(dict):
    """name -> (module or None, reason), memoised by :func:`_load`; counts
    its changes (``version``) so that choices made from it can be memoised."""

    version = 0

    def __setitem__(self, key: str, value: tuple[ModuleType | None, str]) -> None:
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.version += 1


_cache = _Loaded()

#: Where each backend runs.
DEVICES = {"cython": "cpu", "numba": "cpu", "reference": "cpu", "cuda": "gpu"}


def capabilities(mod: ModuleType, name: str) -> dict[str, Any]:
    """What a backend module can run: a dict with ``device``, ``dtypes``,
    ``sources`` (keep-decision sources its kernels read natively: the
    stream, stored bool masks, stored packed bits), ``layouts`` (every
    backend takes any strides), ``fresh_out_hint`` and ``fast_path`` (a
    compiled fast path for the common call: its own, or the Cython
    extension's running the backend's task).  The rules ``copy``, ``zero``
    and ``scale`` need no kernel (the runner's ops carry them out)."""
    return {
        "device": DEVICES[name],
        "dtypes": tuple(getattr(mod, "DTYPES", _DEFAULT_DTYPES)),
        "sources": tuple(getattr(mod, "SOURCES", ("philox", "bool", "packed", "normal"))),
        "layouts": "any strides",
        "fresh_out_hint": bool(getattr(mod, "ACCEPTS_FRESH_OUT", False)),
        "fast_path": hasattr(mod, "fast_dropout") or (
            getattr(mod, "USES_COMPILED_FAST_PATH", False) and _load("cython")[0] is not None),
    }


#: The optional packages a backend needs, as (import name, distribution), and the
#: extra of pyproject.toml that installs them.  ``numba.cuda`` comes from
#: numba-cuda (Numba's own CUDA target is deprecated), so a CUDA backend that
#: does not run here says when numba-cuda is missing too.
REQUIREMENTS = {
    "numba": ((("numba", "numba"),), "numba"),
    "cuda": ((("numba", "numba"), ("numba_cuda", "numba-cuda")), "cuda"),
}


def missing_packages(name: str) -> list[str]:
    """The distributions backend ``name`` needs that are not installed (found
    without importing them)."""
    needs = REQUIREMENTS.get(name, ((), ""))[0]
    return [dist for mod, dist in needs if not is_installed(mod)]


def _not_installed(dists: list[str]) -> str:
    names = " and ".join(dists)
    return f"{names} {'is' if len(dists) == 1 else 'are'} not installed"


def _load(name: str) -> tuple[ModuleType | None, str]:
    """(module or None, reason) for a backend name, memoised.  A backend whose
    packages are missing is not imported: its reason names them and the
    extra that installs them."""
    if name not in _cache:
        missing = missing_packages(name)
        hint = install_command(REQUIREMENTS[name][1]) if missing else ""
        if "numba" in missing:  # nothing of it can run: do not import the backend
            _cache[name] = (None, f"{_not_installed(missing)}: {hint}")
            return _cache[name]
        try:
            mod = importlib.import_module(BACKENDS[name])
        except ImportError as e:
            why = f"import failed: {e}"
            _cache[name] = (None, f"{why}; {_not_installed(missing)}: {hint}" if missing else why)
        else:
            ok, why = (True, "")
            if hasattr(mod, "available"):
                ok, why = mod.available()
            if not ok and missing:
                why = f"{why}; {_not_installed(missing)}: {hint}"
            _cache[name] = (mod if ok else None, why)
    return _cache[name]


def get_backends() -> dict[str, dict[str, Any]]:
    """Backends known to fastdrop and whether each can run here.

    Returns
    -------
    dict
        ``name -> {"available": bool, "reason": str, "dtypes": tuple,
        "capabilities": dict or None}``; ``reason`` says why an unavailable
        backend is missing; ``capabilities`` as :func:`capabilities` gives
        them for a backend that runs here.

    Examples
    --------
    >>> import fastdrop
    >>> fastdrop.get_backends()["reference"]["available"]
    True
    """
    info = {}
    for name in BACKENDS:
        mod, why = _load(name)
        caps = capabilities(mod, name) if mod is not None else None
        info[name] = {"available": mod is not None, "reason": why,
                      "dtypes": caps["dtypes"] if caps else (), "capabilities": caps}
    return info


def get_backend(name: object) -> ModuleType:
    """The kernel module of a backend; ``ValueError`` for an unknown name,
    ``RuntimeError`` (with the reason) for one that cannot run here."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string ('auto' or one of {sorted(BACKENDS)}), "
                        f"got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}; choose 'auto' or one of {sorted(BACKENDS)}")
    mod, why = _load(name)
    if mod is None:
        raise RuntimeError(f"backend {name!r} is not available: {why}")
    return mod


def choose_cpu_backend(size: int, dtype: object = "float32",
                       source: str = "philox") -> tuple[str, ModuleType]:
    """The backend ``"auto"`` uses for a host array of ``size`` elements:
    the first CPU backend, in the order of :data:`BACKENDS`, that runs here
    and whose capabilities cover ``dtype`` and ``source``.

    The order is measured, not assumed: on the development machines the
    Cython kernels are as fast as or faster than Numba's at every size
    (2-core AMD EPYC with AVX-512, one thread, a 1000-element call with a
    packed mask output: 9.6 us against 15.7 us; 10**6 elements: 253 us
    against 251 us) and the reference is 9 to 56 times slower, so ``size``
    does not change the choice today.  The answer is memoised per dtype and
    source until the set of loaded backends changes (it cost a third of a
    1000-element call).
    """
    hit = _choices.get((dtype, source))
    if hit is None or hit[0] != _cache.version:
        loaded = tuple(_load(name)[0] for name in _CPU_ORDER)
        hit = _choices[(dtype, source)] = (_cache.version,
                                          _choose(str(dtype), source, loaded))
    return hit[1]


_CPU_ORDER = ("cython", "numba", "reference")
_choices: dict[tuple[object, str], tuple[int, tuple[str, ModuleType]]] = {}  # the memo


def _choose(dtype: str, source: str,
            loaded: tuple[ModuleType | None, ...]) -> tuple[str, ModuleType]:
    for name, mod in zip(_CPU_ORDER, loaded):
        if mod is None:
            continue
        caps = capabilities(mod, name)
        if dtype in caps["dtypes"] and source in caps["sources"]:
            return name, mod
    return "reference", _load("reference")[0]  # type: ignore[return-value]  # always loads


def fast_path(name: str = "fast_dropout") -> Callable[..., Any] | None:
    """A compiled fast path of the Cython backend, or None.

    ``"fast_dropout"`` (``fastdrop._cython._kernels.fast_dropout``) takes all
    of a ``dropout`` call's arguments ``(x, p, rng, out, training, mode,
    noise_shape, return_mask, backend)``, admits only training with
    ``mode="inverted"``, no noise shape and backend "auto" or "cython" (or
    "numba" for a dtype whose ``forward_contig`` task the Numba backend has
    written into the extension's ``NUMBA_FORWARD``: that task then runs), and
    handles only the plain select rule (``0 < p < 1``, C-contiguous arrays,
    an int seed or a Generator; bool or packed mask outputs) exactly as the
    plan would.  ``"fast_backward"`` takes a ``dropout_backward`` call's
    ``(grad, p, mask, state, training, mode, noise_shape, out, backend)``
    and handles the same select with the mask regenerated from an int seed,
    a ``(seed, offset)`` tuple or a saved ``Generator.state`` dict, or read
    from a stored bool mask of the gradient's shape or its packed bytes
    (``apply_mask`` calls it for that case too).  Both
    return ``NotImplemented`` for anything else, before anything is written
    or any generator moves.
    """
    mod, _ = _load("cython")
    return getattr(mod, name, None) if mod is not None else None


class HostOps:
    """The primitives :func:`run` needs, for a CPU kernel module."""

    def __init__(self, kern: ModuleType) -> None:
        self.kern = kern
        self.fresh_ok = getattr(kern, "ACCEPTS_FRESH_OUT", False)
        self.draws_spans = getattr(kern, "DRAWS_SPANS", False)

    def copy(self, x: NDArray[Any], out: NDArray[Any]) -> None:
        if out is not x:
            np.copyto(out, x)

    def zero(self, out: NDArray[Any]) -> None:
        out[...] = 0

    def scale(self, x: NDArray[Any], out: NDArray[Any], factor: float) -> None:
        from . import reference

        reference.scale(x, out, factor)

    def fill_mask(self, keep_out: NDArray[np.bool_] | None, packed_out: NDArray[np.uint8] | None,
                  n: int, value: bool) -> None:
        if keep_out is not None:
            keep_out[...] = value
        if packed_out is not None:
            packed_out[...] = 0xFF if value else 0
            if value and n % 8:
                packed_out[-1] = (1 << (n % 8)) - 1

    def forward(self, x: NDArray[Any], out: NDArray[Any], plan: Plan,
                keep_out: NDArray[np.bool_] | None, packed_out: NDArray[np.uint8] | None) -> None:
        hint = {"fresh_out": True} if plan.fresh_out and self.fresh_ok else {}
        self.kern.forward(x, out, plan.seed, plan.offset, plan.T, plan.scale, plan.mstrides,
                          keep_out=keep_out, packed_out=packed_out, shift=plan.shift,
                          fill=plan.fill, **hint)

    def mask(self, plan: Plan, keep_out: NDArray[np.bool_] | None,
             packed_out: NDArray[np.uint8] | None) -> None:
        self.kern.mask(plan.n, plan.seed, plan.offset, plan.T, keep_out=keep_out,
                       packed_out=packed_out)

    def packed_scratch(self, n: int) -> NDArray[np.uint8]:
        return np.empty((n + 7) // 8, dtype=np.uint8)

    def noise(self, x: NDArray[Any], out: NDArray[Any], plan: Plan) -> None:
        self.kern.noise(x, out, plan.seed, plan.offset, plan.mstrides, plan.shift, plan.scale,
                        plan.noise)

    def apply(self, x: NDArray[Any], out: NDArray[Any], plan: Plan, kind: str,
              stored: Any) -> None:
        if x.size:
            hint = {"fresh_out": True} if plan.fresh_out and self.fresh_ok else {}
            self.kern.apply_mask(x, out, plan.mstrides, plan.scale,
                                 keep=stored if kind == "bool" else None,
                                 packed=stored if kind == "packed" else None,
                                 shift=plan.shift, fill=plan.fill, **hint)


_host_ops: dict[ModuleType, HostOps] = {}  # kernel module -> its HostOps (made once)


def run_host(plan: Plan, kern: ModuleType, x: NDArray[Any] | None,
             out: NDArray[Any] | None) -> Any:
    """Run ``plan`` on host arrays with kernel module ``kern``, allocating
    the mask output the plan asks for.  Returns ``out`` or ``(out, mask)``.

    The plan-level entry the adapters use (with :mod:`fastdrop._plan`).
    """
    kind = plan.mask_out
    keep = np.empty(plan.M, dtype=bool) if kind == "bool" else None
    packed = np.empty((plan.n + 7) // 8, dtype=np.uint8) if kind == "packed" else None
    ops = _host_ops.get(kern)
    if ops is None:
        ops = _host_ops[kern] = HostOps(kern)
    run(plan, ops, x, out, keep.reshape(-1) if keep is not None else None, packed)
    if kind is None:
        return out
    return out, (keep if kind == "bool" else packed)


def run(plan: Plan, ops: Any, x: Any, out: Any, keep_out: Any = None,
        packed_out: Any = None) -> None:
    """Carry out ``plan`` with a backend's primitives ``ops``.

    ``out`` receives the values (unless the rule is ``"none"``);
    ``keep_out`` (flat bool, ``plan.n``) and ``packed_out`` (uint8,
    ``ceil(n / 8)``) the mask outputs the plan asks for.
    """
    rule = plan.rule
    if rule == "copy":
        ops.copy(x, out)
    elif rule == "zero":
        ops.zero(out)
    elif rule == "scale":
        ops.scale(x, out, plan.scale)
    elif rule == "noise":
        ops.noise(x, out, plan)
    elif rule == "select" and plan.source != "philox":
        ops.apply(x, out, plan, plan.source, plan.stored)
    elif rule == "select" and plan.full_mask:
        ops.forward(x, out, plan, keep_out, packed_out)
    elif rule == "select":
        # A broadcast mask is drawn, then applied, when it is returned, or when
        # its positions repeat along x (only the span x reads, into scratch);
        # else the forward makes each decision where it is used.
        returned = keep_out is not None or packed_out is not None
        span = span_to_draw(plan) if not returned and ops.draws_spans else 0
        if not returned and not span:
            ops.forward(x, out, plan, None, None)
        else:
            draw, keep, packed = plan, keep_out, packed_out
            if span:
                draw, packed = plan._replace(n=span), ops.packed_scratch(span)
            ops.mask(draw, keep, packed)
            kind, stored = ("bool", keep) if keep is not None else ("packed", packed)
            ops.apply(x, out, plan, kind, stored)
    elif plan.source == "philox":  # rule "none": mask outputs only
        ops.mask(plan, keep_out, packed_out)
    if plan.mask_fill is not None:
        ops.fill_mask(keep_out, packed_out, plan.n, plan.mask_fill)
