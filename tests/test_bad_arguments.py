"""Bad-argument battery: every public entry point refuses every bad argument,
names it, and leaves everything as it was.

One table, ``CASES``, lists ``(function, argument, bad value, exception type,
regex)``; most rows come from per-argument batteries (bad ``p``, bad
``training``, bad ``out``, ...) crossed with the functions that take that
argument, the rest are per-function rows.  One generic test runs them all and
checks, for each row:

- the call raises the expected exception type (the convention of
  ``fastdrop._validate``: ``TypeError`` for a value of the wrong kind,
  ``ValueError`` for a value of the right kind that is out of range);
- the message matches the regex, which names the argument (``p``,
  ``training``, ``noise_shape``, ``out``, ``rng``, ``mode``, ``backend``,
  ``return_mask``, ``state``, ``mask``, ``packed``, ``shape``, ``seed``,
  ``offset``, ``n``, ...);
- dropout-like calls fail in *both* modes (``training=True`` and
  ``training=False``; ``train()`` and ``eval()`` for the torch modules): a bad
  argument must not hide until training starts;
- nothing was written and nothing advanced: the default ``out`` is
  pre-filled with a sentinel and still holds it, every array or tensor
  argument (``x``, a custom ``out``, masks) is bitwise unchanged, and the
  ``fastdrop.Generator(5, offset=16)`` passed as ``rng=`` / ``generator=``
  (and torch's global RNG for the torch adapter) has the same state.

The torch and Dask rows are skipped when those packages are missing.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

import fastdrop

SENTINEL = -7.25
F32 = np.float32
as_strided = np.lib.stride_tricks.as_strided


# ----------------------------------------------------------------------------
# values built per test (fresh arrays, arrays that alias the test's x, ...)
# ----------------------------------------------------------------------------

class Make:
    """A bad value built when the test runs: ``fn(ctx)``, where ``ctx`` holds
    the call's default primary array (``"x"``) and, for NumPy calls, the
    buffer it is a view of (``"buf"``)."""

    def __init__(self, label, fn):
        self.label = label
        self.fn = fn

    def __repr__(self):
        return self.label


def A(label, factory):
    """A fresh value from ``factory()`` (no context needed)."""
    return Make(label, lambda ctx: factory())


def _torch():
    return pytest.importorskip("torch")


def _dask_array():
    return pytest.importorskip("dask.array")


def sentinel(shape=(2, 4), dtype=F32):
    return np.full(shape, SENTINEL, dtype=dtype)


def read_only_out():
    out = sentinel()
    out.flags.writeable = False
    return out


def strided_out(shape, strides, size):
    """An ``out`` whose elements overlap each other in memory."""
    return as_strided(np.full(size, SENTINEL, F32), shape=shape, strides=strides)


def gen_near_end():
    """A Generator with 4 stream positions left (the calls need 8)."""
    return fastdrop.Generator(5, offset=2**64 - 4)


# ----------------------------------------------------------------------------
# the calls: default arguments, overridden by one table row
# ----------------------------------------------------------------------------

@dataclass
class Call:
    fn: object                       # the failing call, no arguments
    args: dict                       # every argument it gets (watched)
    sentinel_outs: list = field(default_factory=list)  # must still hold SENTINEL
    watch: dict = field(default_factory=dict)           # label -> getter of extra state
    cleanup: object = None           # undoes a global change should the call succeed


def resolve(overrides, ctx):
    return {k: (v.fn(ctx) if isinstance(v, Make) else v) for k, v in overrides.items()}


def host_x():
    buf = np.arange(16, dtype=F32)
    return buf, buf[:8].reshape(2, 4)


def _merge(defaults, overrides, ctx):
    args = dict(defaults)
    args.update(resolve(overrides, ctx))
    return args


def _set_mode(args, kw, training):
    """Run in the test's mode unless the row's bad value is ``training``."""
    if training is not None and "training" not in kw:
        args["training"] = training
    return args


def call_dropout(kw, training):
    buf, x = host_x()
    out = sentinel()
    args = _merge(dict(x=x, p=0.5, training=True, mode="inverted",
                       rng=fastdrop.Generator(5, offset=16), noise_shape=None, out=out,
                       return_mask=False, backend="auto"), kw, dict(x=x, buf=buf))
    _set_mode(args, kw, training)
    return Call(lambda: fastdrop.dropout(**args), args, [out])


def call_dropout_mask(kw, training):
    args = _merge(dict(shape=(2, 4), p=0.5, rng=fastdrop.Generator(5, offset=16),
                       packed=False, backend="auto"), kw, {})
    return Call(lambda: fastdrop.dropout_mask(**args), args)


def call_unpack_mask(kw, training):
    args = _merge(dict(packed=np.zeros(1, np.uint8), shape=(2, 4)), kw, {})
    return Call(lambda: fastdrop.unpack_mask(**args), args)


def call_apply_mask(kw, training):
    buf, x = host_x()
    out = sentinel()
    args = _merge(dict(x=x, mask=np.full(1, 0xA5, np.uint8), p=0.5, mode="inverted",
                       noise_shape=None, out=out, backend="auto"), kw, dict(x=x, buf=buf))
    return Call(lambda: fastdrop.apply_mask(**args), args, [out])


def call_dropout_backward(kw, training):
    buf, grad = host_x()
    out = sentinel()
    args = _merge(dict(grad=grad, p=0.5, mask=None, state=(5, 16), training=True,
                       mode="inverted", noise_shape=None, out=out, backend="auto"),
                  kw, dict(x=grad, buf=buf))
    _set_mode(args, kw, training)
    return Call(lambda: fastdrop.dropout_backward(**args), args, [out])


def call_generator(kw, training):
    args = _merge(dict(seed=5, offset=16), kw, {})
    return Call(lambda: fastdrop.Generator(**args), args)


def _method_call(method, default_args):
    def build(kw, training):
        args = _merge(dict(self=fastdrop.Generator(5, offset=16), **default_args), kw, {})
        g = args["self"]
        if method == "state=":
            fn = lambda: setattr(g, "state", args["value"])  # noqa: E731
        else:
            rest = {k: v for k, v in args.items() if k != "self"}
            fn = lambda: getattr(g, method)(**rest)  # noqa: E731
        return Call(fn, args)
    return build


def call_set_num_threads(kw, training):
    args = _merge(dict(n=1), kw, {})
    old = fastdrop.get_num_threads()
    return Call(lambda: fastdrop.set_num_threads(**args), args,
                watch={"get_num_threads()": fastdrop.get_num_threads},
                cleanup=lambda: fastdrop.set_num_threads(old))


def _torch_rng_watch(torch):
    return {"torch's global RNG": lambda: torch.get_rng_state().numpy().tobytes()}


def call_torch_dropout(kw, training):
    torch = _torch()
    fdt = pytest.importorskip("fastdrop.torch")
    x = torch.arange(8.0).reshape(2, 4)
    args = _merge(dict(x=x, p=0.5, training=True, generator=fastdrop.Generator(5, offset=16),
                       noise_shape=None, mode="inverted", save_mask=False), kw, dict(x=x))
    _set_mode(args, kw, training)
    # torch's name for the tensor is input (the battery's primary array is "x")
    return Call(lambda: fdt.dropout(**{("input" if k == "x" else k): v for k, v in args.items()}),
                args, watch=_torch_rng_watch(torch))


def _torch_ctor(cls_name, with_noise_shape):
    def build(kw, training):
        torch = _torch()
        fdt = pytest.importorskip("fastdrop.torch")
        defaults = dict(p=0.5, mode="inverted", generator=fastdrop.Generator(5, offset=16),
                        save_mask=False)
        if with_noise_shape:
            defaults["noise_shape"] = None
        args = _merge(defaults, kw, {})
        cls = getattr(fdt, cls_name)
        return Call(lambda: cls(**args), args, watch=_torch_rng_watch(torch))
    return build


_MODULE_X = {"Dropout": (2, 4), "Dropout1d": (1, 2, 3), "Dropout2d": (1, 2, 3, 3),
             "Dropout3d": (1, 2, 2, 2, 2)}


def _torch_forward(cls_name):
    """``layer(x)``; ``x`` from the row, every other key is set as an
    attribute of the layer after construction (``layer.p = 1.5``)."""
    def build(kw, training):
        torch = _torch()
        fdt = pytest.importorskip("fastdrop.torch")
        shape = _MODULE_X[cls_name]
        x = torch.arange(float(math.prod(shape))).reshape(shape)
        g = fastdrop.Generator(5, offset=16)
        layer = getattr(fdt, cls_name)(0.5, generator=g)
        if training is not None:
            layer.train(training)
        args = _merge(dict(x=x), kw, dict(x=x))
        for name, value in args.items():
            if name != "x":
                setattr(layer, name, value)
        watched = dict(args, generator=g)
        return Call(lambda: layer(args["x"]), watched, watch=_torch_rng_watch(torch))
    return build


def dask_x():
    da = _dask_array()
    return da.from_array(np.arange(8, dtype=F32).reshape(2, 4), chunks=(1, 3))


def call_dask_dropout(kw, training):
    fdd = pytest.importorskip("fastdrop.dask")
    x = dask_x()
    args = _merge(dict(x=x, p=0.5, rng=fastdrop.Generator(5, offset=16), noise_shape=None,
                       mode="inverted", training=True, backend="auto"), kw, dict(x=x))
    _set_mode(args, kw, training)
    return Call(lambda: fdd.dropout(**args), args)


def call_dask_dropout_mask(kw, training):
    fdd = pytest.importorskip("fastdrop.dask")
    args = _merge(dict(shape=(2, 4), p=0.5, rng=fastdrop.Generator(5, offset=16),
                       chunks="auto", backend="auto"), kw, {})
    return Call(lambda: fdd.dropout_mask(**args), args)


def call_dropout_torch_x(kw, training):
    """fastdrop.dropout (the NumPy API) on a CPU tensor."""
    torch = _torch()
    x = torch.arange(8.0).reshape(2, 4)
    out = torch.full((2, 4), SENTINEL)
    args = _merge(dict(x=x, p=0.5, training=True, mode="inverted",
                       rng=fastdrop.Generator(5, offset=16), noise_shape=None, out=out,
                       return_mask=False, backend="auto"), kw, dict(x=x))
    _set_mode(args, kw, training)
    return Call(lambda: fastdrop.dropout(**args), args, [out])


def call_dropout_dask_x(kw, training):
    """fastdrop.dropout (the NumPy API) on a Dask array."""
    pytest.importorskip("fastdrop.dask")
    x = dask_x()
    args = _merge(dict(x=x, p=0.5, training=True, mode="inverted",
                       rng=fastdrop.Generator(5, offset=16), noise_shape=None, out=None,
                       return_mask=False, backend="auto"), kw, dict(x=x))
    _set_mode(args, kw, training)
    return Call(lambda: fastdrop.dropout(**args), args)


#: name -> (builder(overrides, training) -> Call, takes a training flag)
TARGETS = {
    "dropout": (call_dropout, True),
    "dropout_mask": (call_dropout_mask, False),
    "unpack_mask": (call_unpack_mask, False),
    "apply_mask": (call_apply_mask, False),
    "dropout_backward": (call_dropout_backward, True),
    "Generator": (call_generator, False),
    "Generator.advance": (_method_call("advance", dict(n=8)), False),
    "Generator.spawn": (_method_call("spawn", dict(n_children=2)), False),
    "Generator.state=": (_method_call("state=", dict(value=None)), False),
    "set_num_threads": (call_set_num_threads, False),
    "torch.dropout": (call_torch_dropout, True),
    "torch.Dropout()": (_torch_ctor("Dropout", True), False),
    "torch.Dropout1d()": (_torch_ctor("Dropout1d", False), False),
    "torch.Dropout2d()": (_torch_ctor("Dropout2d", False), False),
    "torch.Dropout3d()": (_torch_ctor("Dropout3d", False), False),
    "torch.Dropout.forward": (_torch_forward("Dropout"), True),
    "torch.Dropout1d.forward": (_torch_forward("Dropout1d"), True),
    "torch.Dropout2d.forward": (_torch_forward("Dropout2d"), True),
    "torch.Dropout3d.forward": (_torch_forward("Dropout3d"), True),
    "dask.dropout": (call_dask_dropout, True),
    "dask.dropout_mask": (call_dask_dropout_mask, False),
    "dropout[torch x]": (call_dropout_torch_x, True),
    "dropout[dask x]": (call_dropout_dask_x, True),
}

TORCH_CTORS = ["torch.Dropout()", "torch.Dropout1d()", "torch.Dropout2d()",
               "torch.Dropout3d()"]
TORCH_FORWARDS = ["torch.Dropout.forward", "torch.Dropout1d.forward",
                  "torch.Dropout2d.forward", "torch.Dropout3d.forward"]


# ----------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------

@dataclass
class Case:
    target: str
    arg: str
    value: object
    exc: object               # exception type (or tuple of types)
    match: str                # regex that must appear in the message
    extra: dict = field(default_factory=dict)   # other arguments the row needs
    train_only: bool = False  # only an error when a mask is drawn

    def overrides(self):
        return {**self.extra, self.arg: self.value}


def battery(arg, rows, targets, *, train_only=False, **extra):
    """Cross a list of ``(bad value, exception, regex)`` with targets;
    ``extra``: other arguments every row needs."""
    return [Case(t, arg, v, exc, rx, dict(extra), train_only)
            for t in targets for v, exc, rx in rows]


def rows(target, arg, table, *, train_only=False, **extra):
    return battery(arg, table, [target], train_only=train_only, **extra)


NAN, INF = float("nan"), float("inf")

# --- p ----------------------------------------------------------------------
P_RANGE = r"p must be in \[0, 1\]"
P_TYPE = r"p must be a real number"
P_BAD = [
    (NAN, ValueError, P_RANGE),
    (np.float32(NAN), ValueError, P_RANGE),
    (-0.1, ValueError, P_RANGE),
    (1.5, ValueError, P_RANGE),
    (INF, ValueError, P_RANGE),
    (-INF, ValueError, P_RANGE),
    (2, ValueError, P_RANGE),
    ("0.5", TypeError, P_TYPE),
    (None, TypeError, P_TYPE),
    (True, TypeError, P_TYPE),
    ([0.5], TypeError, P_TYPE),
    (0.5j, TypeError, P_TYPE),
]
P_TARGETS = ["dropout", "dropout_mask", "apply_mask", "dropout_backward", "torch.dropout",
             *TORCH_CTORS, "dask.dropout", "dask.dropout_mask", "dropout[torch x]",
             "dropout[dask x]"]

# --- training ---------------------------------------------------------------
TRAINING = r"training must be a bool"
TRAINING_BAD = [(v, TypeError, TRAINING) for v in
                ("False", "no", "True", 0, 1, 0.0, None, [True],
                 A("np.array([True])", lambda: np.array([True])))]
TRAINING_TARGETS = ["dropout", "dropout_backward", "torch.dropout", *TORCH_FORWARDS,
                    "dask.dropout", "dropout[torch x]", "dropout[dask x]"]

# --- mode -------------------------------------------------------------------
MODE = r"mode must be 'inverted' or 'classic'"
MODE_BAD = [
    ("scaled", ValueError, MODE),
    ("", ValueError, MODE),
    ("Inverted", ValueError, MODE),
    (None, TypeError, MODE),
    (1, TypeError, MODE),
    (["inverted"], TypeError, MODE),
]
MODE_TARGETS = ["dropout", "apply_mask", "dropout_backward", "torch.dropout", *TORCH_CTORS,
                "dask.dropout", "dropout[torch x]", "dropout[dask x]"]

# --- rng (NumPy API and Dask) and generator (torch) ---------------------------
_SEED_BAD = [  # (value, exception, which message): the same for rng= and generator=
    ("s", TypeError, "type"), (1.5, TypeError, "type"), (True, TypeError, "type"),
    ([1], TypeError, "type"), (-1, ValueError, "seed"), (2**64, ValueError, "seed"),
]
RNG_MSG = {"type": r"rng must be None, an int seed", "seed": r"rng seed must be in \[0, 2\*\*64\)"}
GEN_MSG = {"type": r"generator must be None, a torch.Generator",
           "seed": r"generator seed must be in \[0, 2\*\*64\)"}
RNG_BAD = [(v, e, RNG_MSG[m]) for v, e, m in _SEED_BAD] + [
    (np.float64(1.0), TypeError, RNG_MSG["type"]),
    ({"seed": 1, "offset": 0}, TypeError, RNG_MSG["type"]),
]
RNG_TARGETS = ["dropout", "dropout_mask", "dask.dropout", "dask.dropout_mask",
               "dropout[torch x]", "dropout[dask x]"]
GENERATOR_BAD = [(v, e, GEN_MSG[m]) for v, e, m in _SEED_BAD]
# a Generator with too few stream positions left: an error only when a mask
# is drawn (evaluation draws none); the generator must not move
OVERFLOW = r"offset overflow"
RNG_AT_END = [(A("Generator(5, offset=2**64-4)", gen_near_end), ValueError, OVERFLOW)]

# --- noise_shape (x has shape (2, 4)) ---------------------------------------
NS_AXES = r"noise_shape .* same number of axes"
NS_BCAST = r"noise_shape .* not broadcastable"
NS_TYPE = r"noise_shape must (be a tuple|contain ints)"
NS_ARRAY = r"noise_shape must be a tuple.*2-D array"
NOISE_BAD = [
    ((1,), ValueError, NS_AXES),
    ((2, 4, 1), ValueError, NS_AXES),
    ((), ValueError, NS_AXES),
    ((3, 4), ValueError, NS_BCAST),
    ((2, 2), ValueError, NS_BCAST),
    ((0, 4), ValueError, NS_BCAST),
    ((-1, 4), ValueError, NS_BCAST),
    ((2, True), TypeError, NS_TYPE),
    ((2.0, 4), TypeError, NS_TYPE),
    (["a", 4], TypeError, NS_TYPE),
    (((2,), 4), TypeError, NS_TYPE),
    (True, TypeError, NS_TYPE),
    (8, TypeError, NS_TYPE),
    (A("np.ones((2, 2))", lambda: np.ones((2, 2))), TypeError, NS_ARRAY),
]
NOISE_TARGETS = ["dropout", "apply_mask", "dropout_backward", "torch.dropout",
                 "dask.dropout", "dropout[torch x]", "dropout[dask x]"]
# the NumPy API takes no string; the torch adapter takes exactly one ("spatial")
NOISE_STR_NUMPY = [("24", TypeError, NS_TYPE), ("spatial", TypeError, NS_TYPE)]
NOISE_STR_TORCH = [("24", ValueError, r"noise_shape must be a tuple, None or 'spatial'"),
                   ("channels", ValueError, r"noise_shape must be a tuple, None or 'spatial'")]
# constructors only see the types (the shape rules need x)
NOISE_CTOR_BAD = [row for row in NOISE_BAD if row[1] is TypeError] + NOISE_STR_TORCH

# --- return_mask ------------------------------------------------------------
RETURN_MASK = r"return_mask must be False, True, 'bool' or 'packed'"
RETURN_MASK_BAD = [
    ("bits", ValueError, RETURN_MASK),
    ("BOOL", ValueError, RETURN_MASK),
    ("", ValueError, RETURN_MASK),
    (1, TypeError, RETURN_MASK),
    (0, TypeError, RETURN_MASK),
    (2, TypeError, RETURN_MASK),
    ([True], TypeError, RETURN_MASK),
]
RETURN_MASK_TARGETS = ["dropout", "dropout[torch x]", "dropout[dask x]"]

# --- backend ----------------------------------------------------------------
BACKEND = r"unknown backend"
BACKEND_BAD = [
    ("fast", ValueError, BACKEND + " 'fast'"),
    ("", ValueError, BACKEND),
    ("CYTHON", ValueError, BACKEND),
    (None, TypeError, r"backend"),
    (1, TypeError, r"backend"),
    (["cython"], TypeError, r"backend"),
]
BACKEND_TARGETS = ["dropout", "dropout_mask", "apply_mask", "dropout_backward",
                   "dask.dropout", "dask.dropout_mask", "dropout[torch x]", "dropout[dask x]"]
# host arrays never go to the GPU silently
CUDA_ON_HOST = [("cuda", TypeError, r"backend='cuda'")]

# --- out (x is a float32 (2, 4) view of buf[:8]) ----------------------------
OVERLAP_SELF = r"out has elements that overlap each other"
OUT_BAD = [
    (A("(4, 2) array", lambda: sentinel((4, 2))), ValueError,
     r"out has shape \(4, 2\), expected \(2, 4\)"),
    (A("(1, 2, 4) array", lambda: sentinel((1, 2, 4))), ValueError, r"out has shape"),
    (A("(8,) array", lambda: sentinel((8,))), ValueError, r"out has shape"),
    (A("float64 array", lambda: sentinel(dtype=np.float64)), TypeError,
     r"out has dtype float64, expected float32"),
    (A("float16 array", lambda: sentinel(dtype=np.float16)), TypeError, r"out has dtype"),
    (A("int32 array", lambda: np.full((2, 4), -7, np.int32)), TypeError, r"out has dtype"),
    (A("read-only array", read_only_out), ValueError, r"out is read-only"),
    (A("list", lambda: [[SENTINEL] * 4] * 2), TypeError, r"out must be a numpy.ndarray"),
    ("abc", TypeError, r"out must be a numpy.ndarray"),
    (A("masked array", lambda: np.ma.masked_array(sentinel())), TypeError,
     r"out must be a numpy.ndarray"),
    (Make("buf[4:12] (partial overlap)", lambda ctx: ctx["buf"][4:12].reshape(2, 4)),
     ValueError, r"out partly overlaps"),
    (Make("transposed alias of x", lambda ctx: ctx["buf"][:8].reshape(4, 2).T),
     ValueError, r"out partly overlaps"),
    (A("as_strided zero row stride", lambda: strided_out((2, 4), (0, 4), 4)),
     ValueError, OVERLAP_SELF),
    (A("as_strided all-zero strides", lambda: strided_out((2, 4), (0, 0), 1)),
     ValueError, OVERLAP_SELF),
    (A("as_strided overlapping rows", lambda: strided_out((2, 4), (8, 4), 6)),
     ValueError, OVERLAP_SELF),
]
OUT_TARGETS = ["dropout", "apply_mask", "dropout_backward"]

# --- x / grad ---------------------------------------------------------------
def x_bad(name):
    floating = rf"{name} must have a floating dtype"
    return [
        (A("int32 array", lambda: np.ones((2, 4), np.int32)), TypeError, floating),
        (A("bool array", lambda: np.ones((2, 4), bool)), TypeError, floating),
        (A("complex64 array", lambda: np.ones((2, 4), np.complex64)), TypeError, floating),
        ("abc", TypeError, floating),
        (None, TypeError, floating),
        ([["a", "b"]], TypeError, floating),
        (A("big-endian float32", lambda: np.ones((2, 4), ">f4")), TypeError,
         rf"{name} has non-native byte order"),
        (A("masked array", lambda: np.ma.masked_array(np.ones((2, 4), F32))), TypeError,
         rf"{name} is a numpy.ma masked array"),
    ]


# --- shape (dropout_mask, unpack_mask, dask.dropout_mask) ---------------------
SHAPE_TYPE = r"shape must (be an int or a tuple|contain ints)"
SHAPE_BAD = [
    ((2, -1), ValueError, r"shape must not have negative entries"),
    (-1, ValueError, r"shape must not have negative entries"),
    ("abc", TypeError, SHAPE_TYPE),
    (2.5, TypeError, SHAPE_TYPE),
    ((2.0, 4), TypeError, SHAPE_TYPE),
    (True, TypeError, SHAPE_TYPE),
    ((True, 4), TypeError, SHAPE_TYPE),
    (None, TypeError, SHAPE_TYPE),
    ([None], TypeError, SHAPE_TYPE),
    (["2", "4"], TypeError, SHAPE_TYPE),
    (((2,), 4), TypeError, SHAPE_TYPE),
    (A("np.ones((2, 2))", lambda: np.ones((2, 2), int)), TypeError, r"shape must be"),
]
SHAPE_TARGETS = ["dropout_mask", "unpack_mask", "dask.dropout_mask"]

# --- packed masks (n = 8: one byte) ----------------------------------------
PACKED_1D = r"packed mask must be a 1-D uint8 array"
PACKED_BAD = [
    (A("2 bytes", lambda: np.zeros(2, np.uint8)), ValueError,
     r"packed mask has 2 bytes, expected 1"),
    (A("0 bytes", lambda: np.zeros(0, np.uint8)), ValueError,
     r"packed mask has 0 bytes, expected 1"),
    (A("2-D uint8", lambda: np.zeros((1, 1), np.uint8)), TypeError, PACKED_1D),
    (A("int8 bytes", lambda: np.zeros(1, np.int8)), TypeError, PACKED_1D),
    (A("int64", lambda: np.zeros(1, np.int64)), TypeError, PACKED_1D),
    (A("bool", lambda: np.zeros(1, bool)), TypeError, PACKED_1D),
    ([255], TypeError, PACKED_1D),
    ("abc", TypeError, PACKED_1D),
    (None, TypeError, PACKED_1D),
    (["a"], TypeError, PACKED_1D),
]

# --- stored masks (apply_mask, dropout_backward) ----------------------------
MASK_DTYPE = r"mask must be a bool array or a 1-D uint8 packed mask"
MASK_BAD = [
    (A("float32 mask", lambda: np.ones((2, 4), F32)), TypeError, MASK_DTYPE),
    (A("int64 mask", lambda: np.ones((2, 4), np.int64)), TypeError, MASK_DTYPE),
    ("abc", TypeError, MASK_DTYPE),
    ([["a"]], TypeError, MASK_DTYPE),
    (A("(2, 2) bool", lambda: np.ones((2, 2), bool)), ValueError, r"mask has shape \(2, 2\)"),
    (A("(8,) bool", lambda: np.ones(8, bool)), ValueError, r"mask has shape \(8,\)"),
    (A("(1, 2, 4) bool", lambda: np.ones((1, 2, 4), bool)), ValueError,
     r"mask has shape \(1, 2, 4\)"),
    (A("packed, 2 bytes", lambda: np.zeros(2, np.uint8)), ValueError,
     r"packed mask has 2 bytes, expected 1"),
    (A("packed, 0 bytes", lambda: np.zeros(0, np.uint8)), ValueError,
     r"packed mask has 0 bytes"),
    (A("packed, 2-D", lambda: np.zeros((2, 4), np.uint8)), TypeError, PACKED_1D),
]

# --- state (dropout_backward) and the Generator state setter ----------------
STATE_TYPE = r"state must be an int seed, a \(seed, offset\) tuple or a Generator.state dict"
SEED_RANGE = r"seed must be in \[0, 2\*\*64\)"
SEED_TYPE = r"seed must be an integer"
OFFSET_RANGE = r"offset must be in \[0, 2\*\*64\]"
OFFSET_TYPE = r"offset must be an integer"
STATE_BAD = [
    ("s", TypeError, STATE_TYPE),
    (1.5, TypeError, STATE_TYPE),
    (True, TypeError, STATE_TYPE),
    ([5, 16], TypeError, STATE_TYPE),
    ((5,), TypeError, STATE_TYPE),
    ((5, 16, 0), TypeError, STATE_TYPE),
    (A("numpy Generator", lambda: np.random.default_rng(0)), TypeError, STATE_TYPE),
    (A("fastdrop.Generator(5)", lambda: fastdrop.Generator(5)), TypeError,
     r"state must be the generator's state saved before the forward call"),
    (-1, ValueError, SEED_RANGE),
    (2**64, ValueError, SEED_RANGE),
    ((-1, 0), ValueError, SEED_RANGE),
    (("5", 0), TypeError, SEED_TYPE),
    ((5, -1), ValueError, OFFSET_RANGE),
    ((5, 2**64 + 1), ValueError, OFFSET_RANGE),
    ((5, 2**65), ValueError, OFFSET_RANGE),
    ((5, "0"), TypeError, OFFSET_TYPE),
    ((5, 1.5), TypeError, OFFSET_TYPE),
    ({"seed": 5}, ValueError, r"state is missing the key 'offset'"),
    ({}, ValueError, r"state is missing the key 'seed'"),
    ({"seed": 5, "offset": 2**64 + 1}, ValueError, OFFSET_RANGE),
    ({"seed": 5, "offset": 0, "version": 2}, ValueError, r"unsupported state version"),
]
STATE_DICT_BAD = [
    ((5, 16), TypeError, r"state must be a dict"),
    (None, TypeError, r"state must be a dict"),
    ("state", TypeError, r"state must be a dict"),
    ([("seed", 5), ("offset", 0)], TypeError, r"state must be a dict"),
    ({}, ValueError, r"state is missing the key 'seed'"),
    ({"seed": 5}, ValueError, r"state is missing the key 'offset'"),
    ({"offset": 0}, ValueError, r"state is missing the key 'seed'"),
    ({"seed": -1, "offset": 0}, ValueError, SEED_RANGE),
    ({"seed": 2**64, "offset": 0}, ValueError, SEED_RANGE),
    ({"seed": "5", "offset": 0}, TypeError, SEED_TYPE),
    ({"seed": 1.5, "offset": 0}, TypeError, SEED_TYPE),
    ({"seed": True, "offset": 0}, TypeError, SEED_TYPE),
    ({"seed": None, "offset": 0}, TypeError, SEED_TYPE),
    ({"seed": 5, "offset": -1}, ValueError, OFFSET_RANGE),
    ({"seed": 5, "offset": 2**64 + 1}, ValueError, OFFSET_RANGE),
    ({"seed": 5, "offset": 1.5}, TypeError, OFFSET_TYPE),
    ({"seed": 5, "offset": "0"}, TypeError, OFFSET_TYPE),
    ({"seed": 5, "offset": True}, TypeError, OFFSET_TYPE),
    ({"seed": 5, "offset": 0, "version": 2}, ValueError, r"unsupported state version"),
    ({"seed": 5, "offset": 0, "version": "1"}, ValueError, r"unsupported state version"),
    ({"seed": 5, "offset": 0, "n_spawned": -1}, ValueError,
     r"state\['n_spawned'\] must be non-negative"),
    ({"seed": 5, "offset": 0, "n_spawned": "1"}, TypeError,
     r"state\['n_spawned'\] must be an integer"),
    ({"seed": 5, "offset": 0, "n_spawned": 1.5}, TypeError,
     r"state\['n_spawned'\] must be an integer"),
]

# --- Generator: seed, offset, advance(n), spawn(n_children) ----------------
SEED_BAD = [
    (-1, ValueError, SEED_RANGE),
    (2**64, ValueError, SEED_RANGE),
    (2**70, ValueError, SEED_RANGE),
    (1.5, TypeError, SEED_TYPE),
    ("1", TypeError, SEED_TYPE),
    (True, TypeError, SEED_TYPE),
    ([1], TypeError, SEED_TYPE),
    (np.float64(1.0), TypeError, SEED_TYPE),
]
OFFSET_BAD = [
    (-1, ValueError, OFFSET_RANGE),
    (2**64 + 1, ValueError, OFFSET_RANGE),
    (2**65, ValueError, OFFSET_RANGE),
    (1.5, TypeError, OFFSET_TYPE),
    ("0", TypeError, OFFSET_TYPE),
    (True, TypeError, OFFSET_TYPE),
    (None, TypeError, OFFSET_TYPE),
]


def count_bad(name):
    """Bad values of an int count argument named ``name``."""
    return [
        (-1, ValueError, rf"\b{name} must be non-negative"),
        (True, TypeError, rf"\b{name} must be an integer"),
        (1.5, TypeError, rf"\b{name} must be an integer"),
        ("8", TypeError, rf"\b{name} must be an integer"),
        (None, TypeError, rf"\b{name} must be an integer"),
        ([8], TypeError, rf"\b{name} must be an integer"),
    ]


ADVANCE_OVERFLOW = [
    (16, ValueError, OVERFLOW),
    (2**65, ValueError, OVERFLOW),
]
THREADS_BAD = [
    (0, ValueError, r"n, the number of threads must be >= 1"),
    (-1, ValueError, r"n, the number of threads must be >= 1"),
    (1.5, TypeError, r"\bn must be an int"),
    ("2", TypeError, r"\bn must be an int"),
    (True, TypeError, r"\bn must be an int"),
    ([2], TypeError, r"\bn must be an int"),
]

# --- flags ------------------------------------------------------------------
def flag_bad(name):
    return [(v, TypeError, rf"{name} must be a bool") for v in ("yes", "packed", 1, 0, None,
                                                               [True])]


# --- torch tensors ---------------------------------------------------------
TENSOR = r"(x|input) must be a torch.Tensor"
TORCH_DTYPE = r"(x|input) must be a float16, float32, float64 or bfloat16 tensor"
TORCH_X_BAD = [
    (A("numpy array", lambda: np.ones((2, 4), F32)), TypeError, TENSOR),
    ([[1.0, 2.0]], TypeError, TENSOR),
    (None, TypeError, TENSOR),
    (A("int64 tensor", lambda: _torch().ones((2, 4), dtype=_torch().int64)), TypeError,
     TORCH_DTYPE),
    (A("bool tensor", lambda: _torch().ones((2, 4), dtype=_torch().bool)), TypeError,
     TORCH_DTYPE),
    (A("complex64 tensor", lambda: _torch().ones((2, 4), dtype=_torch().complex64)), TypeError,
     r"(x|input) must be a float16, float32, float64 or bfloat16 tensor, got dtype "
     r"torch.complex64"),
]


def module_x_bad(cls_name):
    """Inputs of the wrong rank for a channel-dropout module, and non-tensors."""
    k = {"Dropout1d": 1, "Dropout2d": 2, "Dropout3d": 3}[cls_name]
    good = _MODULE_X[cls_name]
    # torch's conventions: Dropout1d refuses other ranks; Dropout2d/3d warn and
    # go on, down to the rank feature dropout cannot take (a RuntimeError)
    if k == 1:
        rank = r"dropout1d: Expected 2D or 3D input, but received a"
        wrong = [(A("1-D tensor", lambda: _torch().ones((2,))), RuntimeError, rank),
                 (A("4-D tensor", lambda: _torch().ones((1,) * 4)), RuntimeError, rank)]
    else:
        low = 1 if k == 2 else 0
        wrong = [(A(f"{low}-D tensor", lambda: _torch().ones((2,) * low)), RuntimeError,
                  "Feature dropout requires at least 2 dimensions in the input")]
    return wrong + [
        (A("numpy array", lambda: np.ones(good, F32)), TypeError, TENSOR),
        (A("nested list", lambda: np.ones(good).tolist()), TypeError, TENSOR),
        (A("int64 tensor", lambda: _torch().ones(good, dtype=_torch().int64)), TypeError,
         TORCH_DTYPE),
    ]


# layer attributes changed after construction are checked at forward
LAYER_ATTRS_BAD = [
    ("p", 1.5, ValueError, P_RANGE),
    ("p", "0.5", TypeError, P_TYPE),
    ("mode", "scaled", ValueError, MODE),
    ("generator", "s", TypeError, GEN_MSG["type"]),
    ("generator", -1, ValueError, GEN_MSG["seed"]),
    ("save_mask", "yes", TypeError, r"save_mask must be a bool"),
    ("noise_shape", (3, 4), ValueError, NS_BCAST),
    ("noise_shape", (1,), ValueError, NS_AXES),
    ("noise_shape", (2.0, 4), TypeError, NS_TYPE),
    ("noise_shape", "24", ValueError, r"noise_shape must be a tuple, None or 'spatial'"),
]
TRAINING_ATTR_BAD = [(v, TypeError, TRAINING) for v in ("no", 0, 1, None)]

# the NumPy API's torch path: out must be a CPU tensor like x
TORCH_OUT_BAD = [
    (A("numpy array", sentinel), TypeError, r"out must be a torch tensor"),
    (A("requires_grad tensor",
       lambda: _torch().full((2, 4), SENTINEL, requires_grad=True)), ValueError,
     r"out requires grad"),
    (A("(4, 2) tensor", lambda: _torch().full((4, 2), SENTINEL)), ValueError,
     r"out has shape \(4, 2\), expected \(2, 4\)"),
    (A("float64 tensor", lambda: _torch().full((2, 4), SENTINEL, dtype=_torch().float64)),
     TypeError, r"out has dtype float64, expected float32"),
    (A("bfloat16 tensor", lambda: _torch().full((2, 4), SENTINEL, dtype=_torch().bfloat16)),
     TypeError, r"out has dtype torch.bfloat16"),
]

# --- dask ---------------------------------------------------------------------
DASK_X_BAD = [
    (A("int64 array", lambda: np.ones((2, 4), np.int64)), TypeError,
     r"x must have a floating dtype"),
    (A("int64 dask array", lambda: _dask_array().ones((2, 4), dtype=np.int64, chunks=2)),
     TypeError, r"x must have a floating dtype"),
    ("abc", TypeError, r"x must have a floating dtype"),
    (None, TypeError, r"x must have a floating dtype"),
    (Make("unknown chunk sizes", lambda ctx: ctx["x"][ctx["x"] > 1]), ValueError,
     r"known chunk sizes"),
]
# chunks go to dask's own normalisation: either exception type, but the
# message must name chunks and the generator must not have moved
CHUNKS_BAD = [(v, (TypeError, ValueError), r"chunks")
              for v in ("bad", (3,), 1.5, None, 0, True, ((1,), (4,)))]


CASES = [
    # shared batteries -------------------------------------------------------
    *battery("p", P_BAD, P_TARGETS),
    *battery("training", TRAINING_BAD, TRAINING_TARGETS),
    *battery("mode", MODE_BAD, MODE_TARGETS),
    *battery("rng", RNG_BAD, RNG_TARGETS),
    *battery("generator", GENERATOR_BAD, ["torch.dropout", *TORCH_CTORS]),
    *battery("noise_shape", NOISE_BAD, NOISE_TARGETS),
    *battery("noise_shape", NOISE_STR_NUMPY, ["dropout", "apply_mask", "dropout_backward",
                                              "dask.dropout", "dropout[torch x]"]),
    *battery("noise_shape", NOISE_STR_TORCH, ["torch.dropout"]),
    *battery("noise_shape", NOISE_CTOR_BAD, ["torch.Dropout()"]),
    *battery("return_mask", RETURN_MASK_BAD, RETURN_MASK_TARGETS),
    *battery("backend", BACKEND_BAD, BACKEND_TARGETS),
    *battery("backend", CUDA_ON_HOST, ["dropout", "dropout_mask", "apply_mask",
                                       "dropout_backward"]),
    *battery("out", OUT_BAD, OUT_TARGETS),
    *battery("shape", SHAPE_BAD, SHAPE_TARGETS),
    *battery("save_mask", flag_bad("save_mask"), ["torch.dropout", *TORCH_CTORS]),
    # dropout ------------------------------------------------------------------
    *rows("dropout", "x", x_bad("x")),
    *battery("rng", RNG_AT_END, ["dropout", "dask.dropout", "dropout[torch x]",
                                 "dropout[dask x]"], train_only=True),
    # dropout_mask ---------------------------------------------------------------
    *rows("dropout_mask", "packed", flag_bad("packed")),
    *rows("dropout_mask", "rng", RNG_AT_END),
    # unpack_mask ------------------------------------------------------------------
    *rows("unpack_mask", "packed", PACKED_BAD),
    # apply_mask -------------------------------------------------------------------
    *rows("apply_mask", "x", x_bad("x")),
    *rows("apply_mask", "mask", MASK_BAD),
    *rows("apply_mask", "mask", [(None, TypeError, MASK_DTYPE)]),
    *rows("apply_mask", "noise_shape",
          [((1, 4), ValueError, r"mask has shape \(2, 4\) but noise_shape is \(1, 4\)")],
          mask=A("(2, 4) bool", lambda: np.ones((2, 4), bool))),
    # dropout_backward -------------------------------------------------------------
    *rows("dropout_backward", "grad", x_bad("grad")),
    *rows("dropout_backward", "state", STATE_BAD),
    *rows("dropout_backward", "state", [((5, 2**64 - 4), ValueError, OVERFLOW)],
          train_only=True),
    *rows("dropout_backward", "mask", MASK_BAD, state=None),
    *rows("dropout_backward", "mask",
          [(A("(2, 4) bool", lambda: np.ones((2, 4), bool)), ValueError,
            r"give either mask or state")]),
    # Generator ------------------------------------------------------------------
    *rows("Generator", "seed", SEED_BAD),
    *rows("Generator", "offset", OFFSET_BAD),
    *rows("Generator.advance", "n", count_bad("n")),
    *rows("Generator.advance", "n", ADVANCE_OVERFLOW,
          self=A("Generator(5, offset=2**64-8)",
                 lambda: fastdrop.Generator(5, offset=2**64 - 8))),
    *rows("Generator.spawn", "n_children", count_bad("n_children")),
    *rows("Generator.state=", "value", STATE_DICT_BAD),
    # set_num_threads --------------------------------------------------------------
    *rows("set_num_threads", "n", THREADS_BAD),
    # torch adapter ----------------------------------------------------------------
    *rows("torch.dropout", "x", TORCH_X_BAD),
    *rows("torch.dropout", "noise_shape",
          [("spatial", ValueError, r"noise_shape='spatial' needs an input with at least 2")],
          x=A("1-D tensor", lambda: _torch().ones(4))),
    *rows("torch.dropout", "generator", RNG_AT_END, train_only=True),
    *rows("torch.Dropout.forward", "x", TORCH_X_BAD),
    *[c for cls in ("Dropout1d", "Dropout2d", "Dropout3d")
      for c in rows(f"torch.{cls}.forward", "x", module_x_bad(cls))],
    *[Case(t, attr, v, exc, rx) for t in TORCH_FORWARDS[:1]
      for attr, v, exc, rx in LAYER_ATTRS_BAD],
    *[Case(t, attr, v, exc, rx) for t in TORCH_FORWARDS[1:]
      for attr, v, exc, rx in LAYER_ATTRS_BAD if attr != "noise_shape"],
    *battery("training", TRAINING_ATTR_BAD, TORCH_FORWARDS),
    # dask adapter and the NumPy API on torch / dask inputs --------------------------
    *rows("dask.dropout", "x", DASK_X_BAD),
    *rows("dask.dropout_mask", "rng", RNG_AT_END),
    *rows("dask.dropout_mask", "chunks", CHUNKS_BAD),
    *rows("dropout[torch x]", "out", TORCH_OUT_BAD),
    *rows("dropout[dask x]", "out",
          [(A("numpy array", sentinel), TypeError, r"out= is not supported")]),
    *rows("dropout[dask x]", "return_mask",
          [(v, TypeError, r"return_mask is not supported") for v in (True, "bool", "packed")]),
]


def _label(v):
    if isinstance(v, Make):
        return v.label
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _params():
    params = []
    for c in CASES:
        _, has_training = TARGETS[c.target]
        if not has_training or "training" in c.overrides():
            modes = [None]
        else:
            modes = [True] if c.train_only else [True, False]
        for m in modes:
            tail = "" if m is None else ("-train" if m else "-eval")
            extra = "".join(f",{k}={_label(v)}" for k, v in c.extra.items())
            params.append(pytest.param(
                c, m, id=f"{c.target}:{c.arg}={_label(c.value)}{extra}{tail}"))
    return params


# ----------------------------------------------------------------------------
# the test
# ----------------------------------------------------------------------------

def _snapshot(v):
    """Something that compares equal iff ``v`` (an array, tensor or
    generator) is unchanged; None for other values."""
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, fastdrop.Generator):
        return v.state
    if isinstance(v, np.random.Generator):
        return v.bit_generator.state
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(v, torch.Tensor):
            return ("tensor", str(v.dtype), tuple(v.shape), v.detach().flatten().tolist())
        if isinstance(v, torch.Generator):
            return v.get_state().numpy().tobytes()
    return None


def _exc_name(exc):
    return exc.__name__ if isinstance(exc, type) else " or ".join(e.__name__ for e in exc)


@pytest.mark.parametrize("case, training", _params())
def test_bad_argument_is_refused(case, training):
    build, _ = TARGETS[case.target]
    call = build(case.overrides(), training)
    before = {name: _snapshot(v) for name, v in call.args.items()}
    extra_before = {label: get() for label, get in call.watch.items()}

    error = None
    try:
        call.fn()
    except Exception as e:  # noqa: BLE001 - judged below, with the side effects
        error = e
    finally:
        if call.cleanup is not None:
            call.cleanup()

    # every problem of the call at once: side effects first, then the error
    problems = []
    for out in call.sentinel_outs:
        values = out.tolist() if hasattr(out, "tolist") else out
        if not (np.asarray(values) == SENTINEL).all():
            problems.append("out (pre-filled with the sentinel) was written")
    for name, v in call.args.items():
        if before[name] is not None and _snapshot(v) != before[name]:
            problems.append(f"{name} changed (written or advanced)")
    for label, get in call.watch.items():
        if get() != extra_before[label]:
            problems.append(f"{label} changed")
    if error is None:
        problems.append(f"DID NOT RAISE (expected {_exc_name(case.exc)})")
    elif not isinstance(error, case.exc):
        problems.append(f"raised {type(error).__name__}: {error}; expected "
                        f"{_exc_name(case.exc)} matching {case.match!r}")
    elif not re.search(case.match, str(error)):
        problems.append(f"{type(error).__name__} message {str(error)!r} does not match "
                        f"{case.match!r}")
    assert not problems, "; ".join(problems)


def test_every_row_names_a_known_target():
    assert {c.target for c in CASES} <= set(TARGETS)
    # every public function of the brief has rows
    assert set(TARGETS) <= {c.target for c in CASES}
