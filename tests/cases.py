"""The case tables of the cross-backend parity tests (``tests/test_parity.py``).

One place for what the parity tests run over, each entry with a readable id:

- ``LAYOUTS``: how ``x`` lies in memory (C and Fortran order, transposes,
  reversed and stepped views, 0-d, empty, size-1 axes, long arrays over
  several ``CHUNK``-element tasks, noise shapes, unaligned buffers), as views
  of a buffer so that writes outside the view can be checked;
- ``OUTS``: caller outputs (another layout than ``x``, one element off a
  line, unaligned, stepped);
- ``OFFSETS``: stream offsets (0, odd, a block index crossing 2**32 near
  2**35, the last positions of the stream ``2**64 - n``);
- ``THRESHOLDS``: drop probabilities (0, 1, 0.1 ... 0.9, ``k / 65536`` whose
  low half ``Tl`` is 0, others with ``Tl != 0``) and *tie-forcing* ones,
  computed from the stream so that one chosen element's 16 high bits equal
  the threshold's (``tie0``: ``Tl = 0``, the tie keeps; ``tie-keep``:
  ``Tl = lo``, keeps at the boundary; ``tie-drop``: ``Tl = lo + 1``, drops);
- ``DTYPES``.

The lists at the end (``FORWARD``, ``WITH_MASK``, ``OUT``, ``IN_PLACE``,
``APPLY``, ``BACKWARD``, ``MASKS``, ``KERNEL_FORWARD``, ``KERNEL_MASKS``,
``KERNEL_APPLY``) are the cases each parity test runs, built from the
tables.  A full product of layouts x offsets x thresholds would be tens of
thousands of tests, so the lists *rotate* offsets and thresholds along the
layouts instead, each test with another phase: every layout is in
``FORWARD``; every small one also in the in-place, stored-mask and backward
lists and meets a keeping and a dropping tie and three offsets over them;
every offset meets every threshold in ``MASKS`` and every tie kind in
``STREAM`` (contiguous arrays).  ``test_parity.py::test_tables_cover``
checks these properties, ``test_tie_thresholds_tie`` that the ties tie.
"""

import dataclasses
import math
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional

import numpy as np
from numpy.testing import assert_array_equal

from conftest import bits
from fastdrop import reference as R
from fastdrop._validate import mask_geometry

DTYPES = (np.float16, np.float32, np.float64)
try:  # bfloat16 is ml_dtypes' (an optional dependency): the BF16_* lists are empty without it
    import ml_dtypes
except ImportError:
    BFLOAT16 = None
else:
    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
SEED = 0x9E3779B97F4A7C15     # both key words non-zero
CHUNK = 1 << 16               # the task size of both compiled backends
U64 = 1 << 64

# x contains these: NaN, infinities, signed zeros, a negative, float16's largest
# finite value (its scaled value overflows to inf) and a float16 subnormal
SPECIALS = (np.nan, np.inf, -np.inf, -0.0, 0.0, -1.5, 65504.0, 2.0 ** -24)
# ... and bfloat16 also these bit patterns: its largest finite value (scaled,
# it overflows to inf), the largest value below 1 (scaled, a rounding tie
# or near one), subnormals, a signalling NaN, a negative NaN with a payload
BF16_SPECIALS = (0x7F7F, 0xFF7F, 0x3F7F, 0x0001, 0x807F, 0x7F81, 0xFFC3)


def values(shape, dtype, seed=0):
    """Normals with ``SPECIALS`` on a sixth of the elements (bfloat16: and
    ``BF16_SPECIALS`` on another twelfth)."""
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    v = rng.standard_normal(n).astype(dtype)
    if n:
        pos = rng.integers(0, n, size=max(1, n // 6))
        with np.errstate(over="ignore"):
            v[pos] = np.array(SPECIALS, dtype=dtype)[np.arange(pos.size) % len(SPECIALS)]
        if BFLOAT16 is not None and np.dtype(dtype) == BFLOAT16:
            pos = rng.integers(0, n, size=max(1, n // 12))
            v.view(np.uint16)[pos] = np.array(BF16_SPECIALS, np.uint16)[
                np.arange(pos.size) % len(BF16_SPECIALS)]
    return v.reshape(shape)


def is_bf16(dtype):
    return BFLOAT16 is not None and np.dtype(dtype) == BFLOAT16


def to_compute(x, ct):
    """``C(x)`` of docs/spec.md §4, written from the spec (not with
    fastdrop's code): bfloat16's bits are the high half of a float32."""
    if is_bf16(x.dtype):
        return (x.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return x.astype(ct)


def bf16_round_bits(f):
    """``R`` of docs/spec.md §4 for bfloat16, written from the spec: the
    float32 bits cut at 16, rounded up when the cut half is more than half
    an ulp or exactly half with an odd result (ties to even); a NaN quiet
    with its sign and top payload bits."""
    u = np.asarray(f, np.float32).view(np.uint32)
    hi, lo = u >> 16, u & 0xFFFF
    up = (lo > 0x8000) | ((lo == 0x8000) & ((hi & 1) == 1))
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, hi | 0x40, hi + up).astype(np.uint16)


def to_dtype(v, dtype):
    """``R(v)``: compute-type values rounded to ``dtype`` (round to nearest
    even; bfloat16 by :func:`bf16_round_bits`)."""
    if is_bf16(dtype):
        return bf16_round_bits(v).view(dtype)
    return np.asarray(v).astype(dtype)


def assert_same(actual, expected, msg=""):
    """Same shape, dtype and bits (-0.0 != +0.0, NaN payloads compared)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, msg
    assert_array_equal(bits(actual), bits(expected), err_msg=msg)


def lane(seed, j, c2):
    """The 16-bit lane of stream position ``j`` (c2 = 0: the high half the
    threshold compares with; c2 = 1: the tie-break)."""
    return int(R._lanes(seed, np.array([j >> 3], np.uint64), c2)[0, j & 7])


# ---------------------------------------------------------------- layouts

def _ident(a):
    return a


@dataclass(frozen=True)
class Layout:
    """``x = view(buffer)``: ``buffer`` has shape ``base`` and memory order
    ``order`` ("C", "F", or "unaligned": C order at an address that is not a
    multiple of the itemsize); ``view`` only indexes and transposes."""

    id: str
    base: tuple
    view: Callable = _ident
    order: str = "C"
    noise: Optional[tuple] = None

    def buffer(self, dtype):
        v = values(self.base, dtype, seed=zlib.crc32(self.id.encode()) % 1000)
        if self.order == "F":
            return np.asfortranarray(v)
        if self.order == "unaligned":
            return unaligned_like(v)
        return v

    def clone(self, buf):
        """A new buffer with ``buf``'s memory layout and contents."""
        if self.order == "unaligned":
            return unaligned_like(buf)
        return buf.copy(order="K")

    @cached_property
    def shape(self):
        return self.view(np.empty(self.base, np.uint8)).shape

    @cached_property
    def geometry(self):
        """(mask shape M, mask strides, mask size n)."""
        return mask_geometry(self.shape, self.noise)

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def split(self):
        """Whether a compiled backend may split this array between threads:
        ``CHUNK`` elements or more (both backends' task size; Cython runs
        serially below it), or one of ``SPLIT_SMALL``."""
        return self.size >= CHUNK or self.id in SPLIT_SMALL

    def with_noise(self, noise):
        tag = "x".join("_" if m is None else str(m) for m in noise)
        return Layout(f"{self.id}-noise{tag}", self.base, self.view, self.order, noise)


def unaligned_like(a):
    """A C-ordered copy of ``a`` one byte past an aligned address."""
    raw = bytearray(a.size * a.itemsize + 1)
    u = np.frombuffer(raw, a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert a.itemsize == 1 or a.size == 0 or not u.flags.aligned
    return u


def _dims(shape):
    return "x".join(map(str, shape))


def C(*shape):
    return Layout(f"C{_dims(shape)}", shape)


def F(*shape):
    return Layout(f"F{_dims(shape)}", shape, order="F")


def view(base, vid, fn, order="C"):
    """A view ``fn`` of a buffer of shape ``base``, id ``<order><base><vid>``
    (in ids ``sK`` stands for ``::K``: pytest node ids cannot hold ``::``)."""
    return Layout(f"{order}{_dims(base)}{vid}", base, fn, order)


def noise_variants(layout):
    """The layout without and with noise shapes: the first or the last axis
    shared, for 3-D also the middle one, all but the middle one, and all."""
    s = layout.shape
    out = [layout]
    shapes = []
    if len(s) >= 2:
        shapes += [(1,) + s[1:], s[:-1] + (1,)]
    if len(s) == 3:
        shapes += [(s[0], 1, s[2]), (1, s[1], 1), (1, 1, 1)]
    seen = {s}
    for ns in shapes:
        if ns not in seen:
            seen.add(ns)
            out.append(layout.with_noise(ns))
    return out


def _table(*groups):
    t = {}
    for g in groups:
        for lay in g:
            assert lay.id not in t, lay.id
            t[lay.id] = lay
    return t


# 0-d, empty, size-1 axes
EDGE = [
    Layout("0d", ()),
    Layout("empty0", (0,)),
    *noise_variants(C(0, 4)),
    C(0, 5).with_noise((1, 5)),
    C(1),
    *noise_variants(C(1, 9, 1)),
    C(1, 9, 1).with_noise((1, 9, 1)),          # a noise shape equal to the shape
]
# contiguous 1-D of sizes around the 8-lane blocks, the 256-element tiles and
# the CHUNK-element tasks
SIZES = (5, 7, 8, 9, 13, 100, 255, 256, 257, 301, 1000, 4099, CHUNK + 5, CHUNK + 64,
         2 * CHUNK + 3, 2 * CHUNK + 5)
CONTIGUOUS = [C(n) for n in SIZES]
# 1-D strided and reversed
STRIDED_1D = [
    view((3000,), "[s3]", lambda a: a[::3]),
    view((3001,), "[s3]", lambda a: a[::3]),
    view((1001,), "[s-1]", lambda a: a[::-1]),
    view((3 * (2 * CHUNK + 3),), "[s3]", lambda a: a[::3]),
    view((3 * (2 * CHUNK + 3),), "[s-1][:131075]", lambda a: a[::-1][:2 * CHUNK + 3]),
]
# views whose memory order is not the logical order (docs/spec.md §2)
LOGICAL_VIEWS = [
    C(12, 10),
    view((12, 10), ".T", lambda a: a.T),
    F(12, 10),
    view((12, 10), "[s2]", lambda a: a[::2]),
    view((12, 10), "[s-1]", lambda a: a[::-1]),
    view((12, 10), "[:,s-3]", lambda a: a[:, ::-3]),
    view((12, 10), "[s-1,s-1].T", lambda a: a[::-1, ::-1].T),
    view((12, 10), "[1:-1,2:]", lambda a: a[1:-1, 2:]),
]
# 2-D: C, Fortran, transposed, stepped, reversed, sliced
TWO_D = [
    *noise_variants(C(30, 50)),
    *noise_variants(F(30, 50)),
    F(30, 50).with_noise((1, 1)),
    view((50, 30), ".T", lambda a: a.T),
    *noise_variants(view((300, 257), ".T", lambda a: a.T)),    # 77100 elements
    *noise_variants(F(300, 257)),
    *noise_variants(view((300, 257), "[1:-1:2,s-3]", lambda a: a[1:-1:2, ::-3])),
    *noise_variants(view((300, 257), "[s2]", lambda a: a[::2])),  # row bases r*514
    view((202, 300), "[1:-1:2,s-3]", lambda a: a[1:-1:2, ::-3]),  # strides (+, -)
    *LOGICAL_VIEWS,
    C(50, 7),
    view((100, 7), "[s2]", lambda a: a[::2]),
    C(129, 33),
    C(6, 8),
    C(40, 33),
    C(300, 301),
]
# 3-D
THREE_D = [
    *noise_variants(C(5, 6, 7)),
    *noise_variants(F(5, 6, 7)),
    *noise_variants(view((5, 6, 7), ".transpose(2,0,1)", lambda a: a.transpose(2, 0, 1))),
    C(6, 7, 9),
    C(6, 7, 9).with_noise((6, 1, 9)),
    F(6, 7, 9),
    F(6, 7, 9).with_noise((1, 7, 1)),
    view((9, 7, 6), ".T", lambda a: a.T).with_noise((6, 1, 9)),
    view((8, 9, 12), "[1:7,s-1][:,1:8,s-1][:,:,1:10]",
         lambda a: a[1:7, ::-1][:, 1:8, ::-1][:, :, 1:10]).with_noise((6, 1, 1)),
    view((8, 9, 12), "[1:7,s-1][:,1:8,s-1][:,:,1:10]",
         lambda a: a[1:7, ::-1][:, 1:8, ::-1][:, :, 1:10]),
]
# unaligned x
UNALIGNED = [
    Layout("U1001", (1001,), order="unaligned"),
    Layout("U30x50.T", (30, 50), lambda a: a.T, order="unaligned"),
]
# large: the Cython memory-order walk (Fortran / reversed Fortran, >= CHUNK
# elements), the transposes of tall C arrays (the AVX-512 walk for a <= 16),
# Numba's blocked transposed path
MEMORY_ORDER = [
    lay
    for shape in ((70001, 3), (300, 401), (3, 70001), (1500, 130))
    for base in (F(*shape), view(shape, "[s-1]", lambda a: a[::-1], "F"))
    for lay in ([base, base.with_noise((1, 401)), base.with_noise((300, 1))]
                if shape == (300, 401) else [base])
]
TALL = [view((70001, a), ".T", lambda c: c.T) for a in (2, 3, 4, 9, 16, 17)]
BLOCKED = [
    F(600, 530),
    view((530, 600), ".T", lambda a: a.T),
    view((3, 270, 300), ".transpose(0,2,1)", lambda a: a.transpose(0, 2, 1)),
    view((520, 4, 300), "[:,s-1]", lambda a: a[:, ::-1], "F"),
]

# the small layouts Numba's blocked (transposed) walk cuts into several tasks,
# one per outer index (test_parity.py::test_split_small_is_numbas checks it)
SPLIT_SMALL = {"F5x6x7", "F5x6x7-noise5x1x7", "C5x6x7.transpose(2,0,1)-noise7x5x1", "F6x7x9",
               "C9x7x6.T-noise6x1x9"}

LAYOUTS = _table(EDGE, CONTIGUOUS, STRIDED_1D, TWO_D, THREE_D, UNALIGNED, MEMORY_ORDER,
                 TALL, BLOCKED)
SMALL = [lay for lay in LAYOUTS.values() if lay.size < CHUNK]
LARGE = [lay for lay in LAYOUTS.values() if lay.size >= CHUNK]


# ---------------------------------------------------------------- outputs

@dataclass(frozen=True)
class Out:
    """A caller's output: ``view(buffer)`` where ``buffer = make(shape, dtype)``
    is filled with ``SENTINEL`` first (what is outside the view must stay so)."""

    id: str
    make: Callable
    view: Callable = lambda buf, shape: buf


SENTINEL = -7.25


def _c_shift1(shape, dtype):
    return np.empty(math.prod(shape) + 1, dtype)


def _revf_view(buf, shape):
    return buf[tuple(slice(None, None, -1) for _ in shape)] if shape else buf


def _step2_make(shape, dtype):
    return np.empty(shape[:-1] + (2 * shape[-1],) if shape else (), dtype)


def _step2_view(buf, shape):
    return buf[..., ::2] if shape else buf


OUTS = {o.id: o for o in [
    Out("C", lambda s, d: np.empty(s, d)),
    Out("F", lambda s, d: np.empty(s, d, order="F")),      # == np.empty(s[::-1]).T
    Out("revF", lambda s, d: np.empty(s, d, order="F"), _revf_view),
    Out("shift1", _c_shift1, lambda buf, s: buf[1:].reshape(s)),
    Out("unaligned", lambda s, d: unaligned_like(np.empty(s, d))),
    Out("step2", _step2_make, _step2_view),
    Out("like", None),                                      # np.empty_like(x)
]}


# ---------------------------------------------------------------- offsets

@dataclass(frozen=True)
class Offset:
    id: str
    at: Callable          # mask size n -> offset

    def __call__(self, n):
        return self.at(n)


def _fixed(v):
    return lambda n: v


OFFSETS = {o.id: o for o in [
    Offset("off0", _fixed(0)),
    Offset("off5", _fixed(5)),
    Offset("off13", _fixed(13)),
    Offset("off2**40+3", _fixed(2**40 + 3)),
    Offset("off2**35-101", _fixed(2**35 - 101)),     # block index crosses 2**32
    Offset("off2**35-1000", _fixed(2**35 - 1000)),
    Offset("end", lambda n: U64 - n),                  # the stream's last n positions
    Offset("end-9", lambda n: U64 - n - 9),
    Offset("off11", _fixed(11)),                       # two more odd ones, for single cases
    Offset("off21", _fixed(21)),
]}
# the offsets the matrices cross with every threshold
MATRIX_OFFSETS = [o for k, o in OFFSETS.items() if k not in ("off11", "off21")]


# ---------------------------------------------------------------- thresholds

@dataclass(frozen=True)
class Threshold:
    """A fixed ``p``, or a tie of ``kind`` at mask index ``at(M)`` (M: the mask
    shape), resolved per case by :func:`tie` (it depends on seed and offset)."""

    id: str
    fixed: Optional[float] = None
    kind: Optional[str] = None        # "tie0", "tie-keep", "tie-drop"
    at: Optional[Callable] = None     # M -> the mask index to tie at


TIE_TL = {"tie0": lambda lo: 0, "tie-keep": lambda lo: lo, "tie-drop": lambda lo: lo + 1}


def tie(seed, offset, M, kind, at):
    """(p, mask index): ``p`` gives the threshold whose high half equals the
    high lane of that mask index, with the low half ``TIE_TL[kind]``; the
    index is ``at(M)`` or the next one where that threshold is valid
    (``0 < T < 2**32``, ``Tl <= 0xFFFF``).  An empty mask gets p = 0.5."""
    n = math.prod(M)
    if n == 0:
        return 0.5, None
    i0 = min(max(at(M), 0), n - 1)
    for i in list(range(i0, n)) + list(range(i0 - 1, -1, -1)):
        j = offset + i
        hi, lo = lane(seed, j, 0), lane(seed, j, 1)
        tl = TIE_TL[kind](lo)
        T = (hi << 16) + tl
        if tl <= 0xFFFF and 0 < T < 2**32:
            return T / 2**32, i
    raise AssertionError("no position can tie")  # pragma: no cover


def _tie(kind, where, at):
    return Threshold(f"{kind}@{where}", kind=kind, at=at)


def _p(pid, v):
    return Threshold(pid, fixed=v)


THRESHOLDS = {t.id: t for t in [
    _p("p0", 0.0),
    _p("p1", 1.0),
    _p("p0.1", 0.1),
    _p("p0.3", 0.3),
    _p("p0.4", 0.4),
    _p("p0.5", 0.5),
    _p("p0.9", 0.9),
    _p("p3/65536", 3 / 65536),                          # Tl = 0: a tie keeps
    _p("p40000/65536", 40000 / 65536),
    _p("p1-7/65536", 1 - 7 / 65536),
    _p("T3<<16+1", ((3 << 16) + 1) / 2**32),            # Tl != 0
    _p("T3<<16+7", ((3 << 16) + 7) / 2**32),
    _p("T3<<16+9", ((3 << 16) + 9) / 2**32),
    _p("T7<<16+3", ((7 << 16) + 3) / 2**32),
    _p("T2<<16+40000", ((2 << 16) + 40000) / 2**32),
    _p("T40000<<16-1", ((40000 << 16) - 1) / 2**32),
    _p("T65535<<16+1", ((65535 << 16) + 1) / 2**32),
    _tie("tie0", "mid", lambda M: math.prod(M) // 2),
    _tie("tie-keep", "mid", lambda M: math.prod(M) // 2),
    _tie("tie-drop", "mid", lambda M: math.prod(M) // 2),
    _tie("tie-keep", "3", lambda M: 3),
    _tie("tie-drop", "3", lambda M: 3),
    _tie("tie-keep", "last", lambda M: math.prod(M) - 1),
    _tie("tie-drop", "last", lambda M: math.prod(M) - 1),
    _tie("tie-keep", "row1+100", lambda M: M[-1] + 100),    # logical (1, 100) of 2-D
    _tie("tie-drop", "row1+100", lambda M: M[-1] + 100),
]}
PLAIN = [t for t in THRESHOLDS.values() if t.kind is None]
TIES_MID = [THRESHOLDS[k] for k in ("tie0@mid", "tie-keep@mid", "tie-drop@mid")]
# in-place and stored-mask rotations: every small layout meets a dropping tie
# in one and a keeping one in the other
KEEP_DROP = [THRESHOLDS[k] for k in ("tie-keep@mid", "tie-drop@mid")]
DROP_KEEP = [THRESHOLDS[k] for k in ("tie-drop@mid", "tie0@mid")]


# ---------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    """One parity case: ``x`` in ``layout`` (with its noise shape), the stream
    at ``(seed, offset)``, drop probability from ``threshold``; ``out`` for
    the caller-output tests, ``mask`` for stored-mask tests ("stream": the
    stream's own mask; "random": independent random bits), ``mode``."""

    layout: Layout
    offset: Offset
    threshold: Threshold
    out: Optional[Out] = None
    mode: str = "inverted"
    mask: str = "stream"
    seed: int = SEED
    dtypes: tuple = field(default=DTYPES)

    @property
    def id(self):
        parts = [self.layout.id, self.offset.id, self.threshold.id]
        if self.out is not None:
            parts.append(f"out={self.out.id}")
        if self.mode != "inverted":
            parts.append(self.mode)
        if self.mask != "stream":
            parts.append(f"mask={self.mask}")
        if self.seed != SEED:
            parts.append(f"seed={self.seed}")
        return "-".join(parts)

    @property
    def noise(self):
        return self.layout.noise

    @cached_property
    def stream(self):
        """(offset, p, T, scale, tie index or None)."""
        M, _, n = self.layout.geometry
        off = self.offset(n)
        th = self.threshold
        if th.kind is None:
            p, at = th.fixed, None
        else:
            p, at = tie(self.seed, off, M, th.kind, th.at)
        scale = 1.0 if self.mode == "classic" or p >= 1.0 else 1.0 / (1.0 - p)
        return off, p, R.threshold(p), scale, at


def case(layout, offset="off13", threshold="tie-keep@mid", out=None, **kw):
    """A case from table ids (or a Layout)."""
    lay = LAYOUTS[layout] if isinstance(layout, str) else layout
    return Case(lay, OFFSETS[offset], THRESHOLDS[threshold],
                out=OUTS[out] if out is not None else None, **kw)


def _unique(cases):
    """The cases in order, each id once (rotations may meet)."""
    seen = {}
    for c in cases:
        seen.setdefault(c.id, c)
    return list(seen.values())


def _rot(seq, i):
    return seq[i % len(seq)]


# offsets the layout cases rotate through
LAYOUT_OFFSETS = ("off13", "off2**35-101", "off5", "off2**40+3", "end", "off0", "end-9")


def rotate(layouts, shift, thresholds=TIES_MID, offsets=LAYOUT_OFFSETS, outs=None, **kw):
    """One case per layout; offsets, thresholds (ties by default) and outputs
    rotate along the list, ``shift`` moves the rotation so that another test
    meets other pairs."""
    return [Case(lay, OFFSETS[_rot(offsets, i + shift)], _rot(thresholds, i + 2 * shift),
                 out=OUTS[_rot(outs, i + shift)] if outs else None, **kw)
            for i, lay in enumerate(layouts)]


F32 = (np.float32,)
NO_DTYPE = (None,)
SMALL_VIEWS = [lay for lay in SMALL if lay not in CONTIGUOUS]
NONEMPTY = [lay for lay in SMALL if lay.size]
EMPTY = [lay for lay in SMALL if not lay.size]
LARGE_1D = [LAYOUTS[k] for k in ("C393225[s3]", "C393225[s-1][:131075]")]
LARGE_2D = noise_variants(LAYOUTS["C300x257.T"]) + noise_variants(LAYOUTS["F300x257"])

# the transposes of tall C arrays: an odd offset (plain p, ties at logical
# (1, 100) keeping and dropping), offset 0, a block index crossing 2**32;
# spread over the fresh, caller-output and in-place tests (each array meets
# three or four of them)
TALL_SETTINGS = (("off5", "p0.3"), ("off5", "tie-keep@row1+100"),
                 ("off5", "tie-drop@row1+100"), ("off0", "p0.5"), ("off2**35-1000", "p0.5"))


def tall(shift, **kw):
    return [case(lay, *_rot(TALL_SETTINGS, i + shift), **kw) for i, lay in enumerate(TALL)]


# the stream on contiguous arrays: every offset with every tie kind and every
# plain threshold, sizes rotating; ties in the first and the last tile
STREAM_SIZES = [LAYOUTS[f"C{n}"] for n in (1, 7, 8, 9, 257, 1000, 4099, 255)]
STREAM = _unique(
    [Case(_rot(STREAM_SIZES, 3 * i + j), o, TIES_MID[j])
     for i, o in enumerate(MATRIX_OFFSETS) for j in range(3)]
    + [Case(_rot(STREAM_SIZES, i), _rot(MATRIX_OFFSETS, i), t)
       for i, t in enumerate(PLAIN)]
    + [case("C1000", "off5", "tie-drop@3"), case("C256", "end", "tie-keep@last")]
)
# ... and over several tasks
STREAM_LARGE = [case("C131075", "off13", "tie-keep@last"),
                case("C131075", "off2**40+3", "tie-drop@mid"),
                case("C131075", "off2**35-101", "tie0@mid"),
                case("C65541", "end", "T3<<16+1")]


def one_dtype(cases, shift=0):
    """The cases with one dtype each, rotating (large arrays: the oracle and
    the 2-thread runs cost most)."""
    return [dataclasses.replace(c, dtypes=(_rot(DTYPES, i + shift),))
            for i, c in enumerate(cases)]


# forward, fresh output: every layout; the tall transposes and the blocked
# layouts with every dtype, the memory-order walk in float32, other large
# arrays one dtype each
FORWARD = _unique(
    rotate(SMALL_VIEWS, 0) + STREAM + rotate(CONTIGUOUS[:12], 4)
    + rotate([LAYOUTS["C300x257[1:-1:2,s-3]"]] * len(PLAIN), 3, PLAIN,
             [o.id for o in MATRIX_OFFSETS])
    + tall(0) + rotate(BLOCKED, 0)
    + [case(lay, "off5", "p0.4", dtypes=F32) for lay in MEMORY_ORDER]
    + one_dtype(STREAM_LARGE + rotate(LARGE_1D + LARGE_2D + [LAYOUTS[k] for k in (
        "C65600", "C131077", "C300x301")], 0))
)
# forward with a bool and with a packed mask output
WITH_MASK = _unique(
    rotate(SMALL_VIEWS, 2) + STREAM
    + [case(lay, "off5", "p0.4", dtypes=F32) for lay in MEMORY_ORDER[0::2]]
    + one_dtype(STREAM_LARGE + rotate(BLOCKED + LARGE_2D[::3], 1), 1)
)
# a caller's output: another layout than x, one element off a line,
# unaligned, stepped, x's own layout (np.empty_like)
OUT = _unique(
    rotate(SMALL_VIEWS, 1, outs=list(OUTS))
    + [case(lid, "off13", "tie-drop@mid", out=o)
       for lid in ("C30x50", "C12x10.T", "C6x8", "C1000") for o in OUTS]
    + [case(lay, "off5", "p0.4", out="like", dtypes=F32) for lay in MEMORY_ORDER[1::2]]
    + one_dtype(tall(1, out="like") + tall(4, out="C")[::3]
                + [case("C131075", "off0", "p0", out="shift1"),
                   case("C131075", "off0", "p1", out="F")], 2)
)
# in place (out=x) on views of a buffer: nothing outside the view changes;
# ties (the fix-up must read x before overwriting it); classic mode on some
IN_PLACE = _unique(
    rotate(SMALL, 3, KEEP_DROP) + rotate(SMALL, 4, mode="classic")[::2]
    + [case(lid, "off0", tid) for lid in ("C5x6x7", "C300x257[s2]") for tid in ("p0", "p1")]
    + one_dtype(tall(2) + rotate(LARGE_2D[::3], 3))
)
# stored masks, bool and packed: the stream's own mask and random bits, in
# inverted and classic mode (scale 1), caller outputs
APPLY = _unique(
    rotate(SMALL, 5, DROP_KEEP) + rotate(SMALL, 6, mask="random")[::4]
    + rotate(SMALL, 7, mask="random", mode="classic")[1::8]
    + [case(lid, "off0", tid, mask="random")
       for lid in ("C30x50", "F6x7x9") for tid in ("p0", "p0.3", "p0.9", "p1")]
    + [case(lid, "off0", "p0.3", mask="random", out=o)
       for lid in ("C5", "C100") for o in ("shift1", "unaligned")]
    + [case(lay, "off5", "p0.4", dtypes=F32) for lay in MEMORY_ORDER[0::2]]
    + one_dtype(rotate(LARGE_2D, 4)
                + [case(lid, "off0", "p0.3", mask="random", out=o)
                   for lid, o in (("C300x301", "shift1"), ("C65600", "unaligned"),
                                  ("C131077", "shift1"), ("C131077", "unaligned"))], 1)
)
# the backward from the forward's state
BACKWARD = _unique(
    rotate(SMALL, 8)[::3]
    + rotate(THREE_D, 0, [THRESHOLDS[t] for t in ("p0.1", "p0.5", "p3/65536", "T3<<16+9",
                                                   "p0", "p1")], ("off0",))
    + [case("C40x33", "off21", "p0.4", seed=9)]
    + one_dtype([case("C300x257.T-noise1x300", "off13", "p0.4"),
                 case("C131075", "end", "tie-drop@last")])
)
# masks alone: every offset with every threshold; sizes and seeds rotate
MASK_SIZES = [LAYOUTS[k] for k in ("C0x4", "C1", "C7", "C8", "C9", "C13", "C255", "C256",
                                   "C257", "C1000", "C4099", "C30x50", "C6x7x9", "C1x9x1",
                                   "0d")]
SEEDS = (SEED, 0x1234_5678_9ABC_DEF0, 77, 5, 42, U64 - 1)
MASK_THRESHOLDS = PLAIN + TIES_MID + [THRESHOLDS[k] for k in ("tie-keep@last", "tie-keep@3",
                                                              "tie-drop@3")]
MASKS = _unique(
    [Case(_rot(MASK_SIZES, i + 3 * k), o, t, seed=_rot(SEEDS, i + k), dtypes=NO_DTYPE)
     for k, o in enumerate(MATRIX_OFFSETS) for i, t in enumerate(MASK_THRESHOLDS)]
    + [case("C1000", "off13", "tie-drop@last", dtypes=NO_DTYPE),
       case("C301", "off11", "p0", seed=3, dtypes=NO_DTYPE),
       case("C301", "off11", "p1", seed=3, dtypes=NO_DTYPE)]
    + [case(lid, off, tid, dtypes=NO_DTYPE) for lid, off, tid in (
        ("C65541", "off0", "tie-keep@last"), ("C65541", "end", "p0.5"),
        ("C131075", "off2**35-101", "tie-drop@mid"), ("C131075", "off13", "p3/65536"),
        ("C131075", "off5", "T65535<<16+1"))]
)
# the kernel interface itself: T straight to the kernel (0 and 2**32 too),
# both mask outputs at once, the fresh-output hint
KERNEL_MASKS = _unique([c for c in MASKS if c.layout.size][::2]
                       + [c for c in MASKS if c.threshold.id in ("p0", "p1") and c.layout.size])
KERNEL_FORWARD = _unique(
    STREAM[::2]
    + rotate([lay for lay in NONEMPTY if lay.noise is None and lay not in CONTIGUOUS], 9,
             [THRESHOLDS[t] for t in ("tie-keep@3", "tie-drop@mid", "p0", "T3<<16+7",
                                      "p1", "tie0@mid")])[::2]
    + [case(lay, "off13", "p0.5") for lay in EMPTY]
    + one_dtype(STREAM_LARGE[:2] + rotate(LARGE_1D, 1))
)
KERNEL_APPLY = _unique(
    rotate(NONEMPTY, 10, mask="random")[::3]
    + [case(lid, "off0", tid, mask="random") for lid in ("C1000", "F30x50")
       for tid in ("p0", "p0.3", "p0.9")]
    + [case(lay, "off13", "p0.5", mask="random") for lay in EMPTY]
    + one_dtype([case(lay, "off0", "p0.5", mask="random") for lay in BLOCKED]
                + [case("C131077", "off0", tid, mask="random") for tid in ("p0", "p0.3", "p0.9")])
)

ALL = {"FORWARD": FORWARD, "WITH_MASK": WITH_MASK, "OUT": OUT, "IN_PLACE": IN_PLACE,
       "APPLY": APPLY, "BACKWARD": BACKWARD, "MASKS": MASKS, "KERNEL_MASKS": KERNEL_MASKS,
       "KERNEL_FORWARD": KERNEL_FORWARD, "KERNEL_APPLY": KERNEL_APPLY}


# ---------------------------------------------------------------- bfloat16
# bfloat16 (ml_dtypes) runs every parity test over a rotation of the tables
# above rather than all of them: every 5th case of each list (every 3rd of
# the kernel lists), plus the layouts whose paths no rotation may skip (the
# transposes of tall arrays, the blocked and memory-order walks, unaligned
# buffers, every noise-shape variant of the 2-D and 3-D tables in FORWARD).
# ``test_bfloat16.py::test_bf16_tables_cover`` checks this.
BF16 = (BFLOAT16,) if BFLOAT16 is not None else ()


def bf16(cases, step, shift=0, extra=()):
    """Every ``step``-th case of ``cases`` from ``shift``, and ``extra``, in
    bfloat16 only (no case without ml_dtypes)."""
    return _unique([dataclasses.replace(c, dtypes=BF16)
                    for c in list(cases[shift::step]) + list(extra)])


_BF16_MUST = ([c for c in FORWARD if c.layout in TALL or c.layout in BLOCKED
               or c.layout in UNALIGNED or c.layout in MEMORY_ORDER[::3]
               or (c.layout.noise is not None and c.layout.size < CHUNK)])
BF16_ALL = {
    "FORWARD": bf16(FORWARD, 5, extra=_BF16_MUST),
    "WITH_MASK": bf16(WITH_MASK, 5, 1),
    "OUT": bf16(OUT, 5, 2, extra=[c for c in OUT if c.out is not None
                                   and c.layout.id in ("C30x50", "C1000")]),
    "IN_PLACE": bf16(IN_PLACE, 5, 3),
    "APPLY": bf16(APPLY, 5, 4),
    "BACKWARD": bf16(BACKWARD, 5),
    "KERNEL_FORWARD": bf16(KERNEL_FORWARD, 3),
    "KERNEL_APPLY": bf16(KERNEL_APPLY, 3, 1),
}
