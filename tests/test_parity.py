"""Cross-backend parity, table-driven: every entry point, on every CPU backend
(Cython on each ISA path this CPU has, through ``cython_isa``; Numba; the
reference), every dtype and every case of ``tests/cases.py``, with 1 and 2
threads, equals :mod:`fastdrop.reference` bit for bit (raw bits: -0.0 is not
+0.0, NaN payloads count).

One test per entry point, one test id per case::

    <layout>-<offset>-<threshold>[-out=..][-classic][-mask=random][-seed=..]
        -<dtype>-<backend>[-<isa>]-t<threads>

The reference itself is a backend under test where its path differs from the
oracle call, on arrays below ``CHUNK`` elements: every caller-output and
in-place case, every third stored-mask and backward case.  Both thread counts
run where a backend splits the work between threads (``cases.Layout.split``):
from ``CHUNK`` elements on (both backends' task size; Cython runs serially
below it, ``_kernels._execute``), and for Numba also the small 3-D layouts its
blocked walk cuts into a task per outer index (``cases.SPLIT_SMALL``, checked
below); elsewhere a second thread would run the very same single task.
"""

import functools
import math
import zlib
from typing import NamedTuple

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import cases as T
import fastdrop
from cases import CHUNK, SENTINEL, assert_same, to_compute, to_dtype
from conftest import cpu_backends, cython_isas
from fastdrop import reference as R
from fastdrop._dispatch import get_backend

BACKENDS = cpu_backends()
ISAS = cython_isas()


def _combos(case, reference):
    """(backend, ISA, threads, id) for one case: 2 threads where the backend
    splits the work (``Layout.split``; Cython only from CHUNK elements on)."""
    large = case.layout.size >= CHUNK
    for b in BACKENDS:
        if b == "cython":
            for isa in ISAS:
                for t in (1, 2) if large else (1,):
                    yield b, isa, t, f"cython-{isa}-t{t}"
        elif b == "reference":
            if reference and not large:
                yield b, None, 1, "reference"
        else:
            for t in (1, 2) if case.layout.split else (1,):
                yield b, None, t, f"{b}-t{t}"


def parity(cases, reference=1):
    """Parametrise a test over case x dtype x backend (x ISA x threads); the
    reference is a backend under test on every ``reference``-th case (0: none)."""
    params = [
        pytest.param(c, dt, b, isa, t,
                     id=f"{c.id}-{np.dtype(dt).name}-{bid}" if dt else f"{c.id}-{bid}")
        for i, c in enumerate(cases)
        for dt in c.dtypes
        for b, isa, t, bid in _combos(c, reference and i % reference == 0)
    ]
    return pytest.mark.parametrize("case,dtype,backend,cython_isa,threads", params,
                                   indirect=["cython_isa", "threads"])


# ------------------------------------------------------------------ the oracle

class Want(NamedTuple):
    buf: np.ndarray          # the buffer x is a view of
    x: np.ndarray
    y: np.ndarray            # the reference's dropout(x)
    keep: np.ndarray         # its bool mask (mask shape)
    packed: np.ndarray       # its packed mask
    next_offset: int         # the Generator's offset after the call


@functools.lru_cache(maxsize=4)
def want(case, dtype):
    """The reference's answer for a case (the tests run case by case, so a
    few entries suffice)."""
    off, p, _, _, _ = case.stream
    buf = case.layout.buffer(dtype)
    x = case.layout.view(buf)
    g = fastdrop.Generator(case.seed, off)
    y, keep = fastdrop.dropout(x, p, rng=g, noise_shape=case.noise, mode=case.mode,
                               return_mask=True, backend="reference")
    return Want(buf, x, y, keep, np.packbits(keep.reshape(-1), bitorder="little"), g.offset)


@functools.lru_cache(maxsize=4)
def stored_mask(case, dtype):
    """(bool mask of the mask shape, packed bits, the reference's apply_mask)."""
    w = want(case, dtype)
    M = case.layout.geometry[0]
    if case.mask == "random":
        rng = np.random.default_rng(zlib.crc32(case.id.encode()))
        keep = rng.random(M) < 0.6
    else:
        keep = w.keep
    p = case.stream[1]
    y = fastdrop.apply_mask(w.x, keep, p, mode=case.mode, backend="reference")
    if case.mask == "stream":
        assert_same(y, w.y, "reference: apply_mask(the stream's mask) != dropout")
    return keep, np.packbits(keep.reshape(-1), bitorder="little"), y


def out_for(case, x):
    """(buffer filled with SENTINEL, the out view of it)."""
    o = case.out
    if o.make is None:
        buf = np.empty_like(x)
        buf.fill(SENTINEL)
        return buf, buf
    buf = o.make(x.shape, x.dtype)
    buf.fill(SENTINEL)
    return buf, o.view(buf, x.shape)


def assert_only_view_written(case, buf, view_of):
    """Everything in ``buf`` outside ``view_of(buf)`` is still SENTINEL."""
    rest = buf.copy()
    view_of(rest)[...] = SENTINEL
    assert_same(rest, np.full_like(rest, SENTINEL), f"{case.id}: wrote outside out")


# ------------------------------------------------------------------ forward

@parity(T.FORWARD, reference=0)
def test_forward(case, dtype, backend, cython_isa, threads):
    """dropout(x) with a fresh output."""
    w = want(case, dtype)
    off, p = case.stream[:2]
    g = fastdrop.Generator(case.seed, off)
    y = fastdrop.dropout(w.x, p, rng=g, noise_shape=case.noise, mode=case.mode,
                         backend=backend)
    assert_same(y, w.y)
    assert g.offset == w.next_offset


@parity(T.WITH_MASK, reference=0)
def test_forward_with_mask(case, dtype, backend, cython_isa, threads):
    """dropout(x, return_mask=True) and return_mask="packed"."""
    w = want(case, dtype)
    off, p = case.stream[:2]
    for kind, mask_want in ((True, w.keep), ("packed", w.packed)):
        g = fastdrop.Generator(case.seed, off)
        y, m = fastdrop.dropout(w.x, p, rng=g, noise_shape=case.noise, mode=case.mode,
                                return_mask=kind, backend=backend)
        assert_same(y, w.y, f"return_mask={kind!r}")
        assert m.dtype == mask_want.dtype
        assert_array_equal(m, mask_want, err_msg=f"return_mask={kind!r}")
        assert g.offset == w.next_offset


@parity(T.OUT)
def test_forward_caller_out(case, dtype, backend, cython_isa, threads):
    """dropout(x, out=out) with ``out`` in the case's output layout; nothing
    outside ``out`` is written."""
    w = want(case, dtype)
    off, p = case.stream[:2]
    buf, out = out_for(case, w.x)
    r = fastdrop.dropout(w.x, p, rng=fastdrop.Generator(case.seed, off), noise_shape=case.noise,
                         mode=case.mode, out=out, backend=backend)
    assert r is out
    assert_same(out, w.y)
    if out is not buf:
        assert_only_view_written(case, buf, lambda b: case.out.view(b, w.x.shape))


@parity(T.IN_PLACE)
def test_forward_in_place(case, dtype, backend, cython_isa, threads):
    """dropout(x, out=x) on a view of a buffer; the rest of the buffer stays."""
    w = want(case, dtype)
    off, p = case.stream[:2]
    lay = case.layout
    buf = lay.clone(w.buf)
    x = lay.view(buf)
    r = fastdrop.dropout(x, p, rng=fastdrop.Generator(case.seed, off), noise_shape=case.noise,
                         mode=case.mode, out=x, backend=backend)
    assert r is x
    assert_same(x, w.y)
    rest = buf.copy()
    lay.view(rest)[...] = lay.view(w.buf)
    assert_same(rest, w.buf, "wrote outside the view")


@parity(T.BACKWARD, reference=3)
def test_backward_from_state(case, dtype, backend, cython_isa, threads):
    """dropout_backward(g, state=(seed, offset)) regenerates the forward's mask."""
    w = want(case, dtype)
    off, p = case.stream[:2]
    gx = fastdrop.dropout_backward(w.x, p, state=(case.seed, off), mode=case.mode,
                                   noise_shape=case.noise, backend=backend)
    assert_same(gx, w.y)


# ------------------------------------------------------------------ masks

@functools.lru_cache(maxsize=4)
def mask_want(case):
    off, _, Th, _, _ = case.stream
    M, _, n = case.layout.geometry
    keep = R.keep_range(case.seed, off, n, Th)
    return keep.reshape(M), np.packbits(keep, bitorder="little"), off + ((n + 7) & -8)


@parity(T.MASKS, reference=0)
def test_dropout_mask(case, dtype, backend, cython_isa, threads):
    """dropout_mask(M), bool and packed."""
    keep, packed, end = mask_want(case)
    off, p = case.stream[:2]
    M = case.layout.geometry[0]
    for as_packed, m_want in ((False, keep), (True, packed)):
        g = fastdrop.Generator(case.seed, off)
        m = fastdrop.dropout_mask(M, p, rng=g, packed=as_packed, backend=backend)
        assert m.dtype == m_want.dtype
        assert_array_equal(m, m_want, err_msg=f"packed={as_packed}")
        assert g.offset == min(end, 2**64)


@parity(T.APPLY, reference=3)
def test_apply_mask(case, dtype, backend, cython_isa, threads):
    """apply_mask(x, mask) with the bool mask (mask shape, broadcast) and the
    packed one (with noise_shape); into the case's output layout if any."""
    w = want(case, dtype)
    keep, packed, y_want = stored_mask(case, dtype)
    p = case.stream[1]
    M = case.layout.geometry[0]
    for kind, m, kw in (("bool", keep, {}),
                        ("packed", packed, {"noise_shape": M} if case.noise else {})):
        buf, out = out_for(case, w.x) if case.out is not None else (None, None)
        y = fastdrop.apply_mask(w.x, m, p, mode=case.mode, out=out, backend=backend, **kw)
        assert_same(y, y_want, kind)
        if out is not None:
            assert y is out
            if out is not buf:
                assert_only_view_written(case, buf, lambda b: case.out.view(b, w.x.shape))


# ------------------------------------------------------- the kernel interface

#: (shift, fill) of the affine select besides plain dropout's (-0.0, +0.0):
#: a negative shift and fill, a positive shift with a large fill (inf in
#: float16), a float32-subnormal shift and a -0.0 fill (docs/spec.md §4).
AFFINE = ((-0.3, -1.25), (0.1, 1e6), (1e-40, -0.0))

@parity(T.KERNEL_FORWARD, reference=0)
def test_kernel_forward(case, dtype, backend, cython_isa, threads):
    """The backend's ``forward``: T straight from the case (0 and 2**32 too),
    fresh and in place, with the fresh-output hint, and with both mask
    outputs at once where the mask is not broadcast."""
    kern = get_backend(backend)
    w = want(case, dtype)
    off, _, Th, s, _ = case.stream
    M, ms, n = case.layout.geometry
    ref = np.empty_like(w.x)
    R.forward(w.x, ref, case.seed, off, Th, s, ms)
    out = np.empty_like(w.x)
    kern.forward(w.x, out, case.seed, off, Th, s, ms)
    assert_same(out, ref, "forward")
    if getattr(kern, "ACCEPTS_FRESH_OUT", False):
        out = np.empty_like(w.x)
        kern.forward(w.x, out, case.seed, off, Th, s, ms, fresh_out=True)
        assert_same(out, ref, "fresh_out=True")
    y = case.layout.view(case.layout.clone(w.buf))
    kern.forward(y, y, case.seed, off, Th, s, ms)
    assert_same(y, ref, "in place")
    if M == w.x.shape:
        keep = np.zeros(n, bool)
        packed = np.full((n + 7) // 8, 0xAB, np.uint8)
        out = np.empty_like(w.x)
        kern.forward(w.x, out, case.seed, off, Th, s, ms, keep_out=keep, packed_out=packed)
        assert_same(out, ref, "with mask outputs")
        kr = R.keep_range(case.seed, off, n, Th)
        assert_array_equal(keep, kr)
        assert_array_equal(packed, np.packbits(kr, bitorder="little"))
    for b, c in AFFINE:  # the affine select: kept x * s + b, dropped c
        R.forward(w.x, ref, case.seed, off, Th, s, ms, shift=b, fill=c)
        out = np.empty_like(w.x)
        kern.forward(w.x, out, case.seed, off, Th, s, ms, shift=b, fill=c)
        assert_same(out, ref, f"shift={b}, fill={c}")


@parity(T.KERNEL_MASKS, reference=0)
def test_kernel_mask(case, dtype, backend, cython_isa, threads):
    """The backend's ``mask``: both outputs at once, each alone."""
    kern = get_backend(backend)
    off, _, Th, _, _ = case.stream
    n = case.layout.geometry[2]
    kr = R.keep_range(case.seed, off, n, Th)
    pr = np.packbits(kr, bitorder="little")
    for which in ("both", "keep", "packed"):
        keep = np.zeros(n, bool) if which != "packed" else None
        packed = np.full((n + 7) // 8, 0xAB, np.uint8) if which != "keep" else None
        kern.mask(n, case.seed, off, Th, keep_out=keep, packed_out=packed)
        if keep is not None:
            assert_array_equal(keep, kr, err_msg=which)
        if packed is not None:
            assert_array_equal(packed, pr, err_msg=which)


@parity(T.KERNEL_APPLY, reference=0)
def test_kernel_apply_mask(case, dtype, backend, cython_isa, threads):
    """The backend's ``apply_mask`` with random stored bits, bool and packed,
    fresh and in place, scale straight from the case (1, 1/0.7, 10, ...)."""
    kern = get_backend(backend)
    w = want(case, dtype)
    keep, packed, _ = stored_mask(case, dtype)
    s = case.stream[3]
    ms = case.layout.geometry[1]
    flat = keep.reshape(-1)
    ref = np.empty_like(w.x)
    R.apply_mask(w.x, ref, ms, s, keep=flat)
    for kw in ({"keep": flat}, {"packed": packed}):
        out = np.empty_like(w.x)
        kern.apply_mask(w.x, out, ms, s, **kw)
        assert_same(out, ref, str(list(kw)))
    y = case.layout.view(case.layout.clone(w.buf))
    kern.apply_mask(y, y, ms, s, packed=packed)
    assert_same(y, ref, "in place")
    for b, c in AFFINE:  # the affine select: kept x * s + b, dropped c
        R.apply_mask(w.x, ref, ms, s, keep=flat, shift=b, fill=c)
        for kw in ({"keep": flat}, {"packed": packed}):
            out = np.empty_like(w.x)
            kern.apply_mask(w.x, out, ms, s, shift=b, fill=c, **kw)
            assert_same(out, ref, f"{list(kw)}, shift={b}, fill={c}")


# ------------------------------------------------------------------ the tables

def test_tie_thresholds_tie():
    """Every tie threshold of every case ties where it says: the element's
    high lane equals Th; tie0 and tie-keep keep it, tie-drop drops it."""
    seen = set()
    for cs in T.ALL.values():
        for c in cs:
            if c.threshold.kind is None:
                continue
            off, p, Th, _, at = c.stream
            if at is None:
                assert c.layout.geometry[2] == 0
                continue
            key = (c.seed, off, Th, at)
            if key in seen:
                continue
            seen.add(key)
            j = off + at
            assert T.lane(c.seed, j, 0) == Th >> 16, c.id
            kept = bool(R.keep_range(c.seed, j, 1, Th)[0])
            assert kept == (c.threshold.kind != "tie-drop"), c.id
    assert len(seen) > 300


def test_tables_cover():
    """What the rotations in cases.py promise."""
    ids = lambda cs, f: {f(c) for c in cs}  # noqa: E731
    lay = lambda c: c.layout.id  # noqa: E731
    every_layout = set(T.LAYOUTS)
    small = {x.id for x in T.SMALL}
    assert ids(T.FORWARD, lay) == every_layout
    assert small <= ids(T.IN_PLACE, lay) and small <= ids(T.APPLY, lay)
    assert small <= ids(T.BACKWARD, lay) | ids(T.FORWARD, lay)
    assert {x.id for x in T.SMALL_VIEWS} <= ids(T.WITH_MASK, lay) & ids(T.OUT, lay)
    assert ids(T.OUT, lambda c: c.out.id) == set(T.OUTS)
    # every offset with every threshold (masks); every offset with every tie
    # kind and every plain threshold on contiguous arrays (values)
    matrix = [o.id for o in T.MATRIX_OFFSETS]
    pairs = ids(T.MASKS, lambda c: (c.offset.id, c.threshold.id))
    assert {(o, t.id) for o in matrix for t in T.MASK_THRESHOLDS} <= pairs
    pairs = ids(T.STREAM, lambda c: (c.offset.id, c.threshold.id))
    assert {(o, t.id) for o in matrix for t in T.TIES_MID} <= pairs
    assert {t.id for t in T.PLAIN} <= ids(T.STREAM, lambda c: c.threshold.id)
    used = set().union(*(ids(cs, lambda c: c.threshold.id) for cs in T.ALL.values()))
    assert used == set(T.THRESHOLDS)
    used = set().union(*(ids(cs, lambda c: c.offset.id) for cs in T.ALL.values()))
    assert used == set(T.OFFSETS)
    # every tie kind and the rotation's offsets on every small layout, over the tests
    for x in T.SMALL:
        met = {(c.offset.id, c.threshold.kind) for cs in T.ALL.values() for c in cs
               if c.layout.id == x.id}
        kinds = {k for _, k in met}
        assert not x.size or ("tie-drop" in kinds and kinds & {"tie0", "tie-keep"}), x.id
        assert len({o for o, _ in met}) >= 3, x.id


def test_chunk_is_the_backends():
    """The task size the thread dimension relies on (Cython runs serially
    below it)."""
    if "cython" in BACKENDS:
        from fastdrop._cython import _kernels
        assert _kernels.CHUNK == CHUNK
    if "numba" in BACKENDS:
        from fastdrop._numba import kernels
        assert kernels.CHUNK == CHUNK


def test_split_small_is_numbas():
    """``cases.SPLIT_SMALL`` is exactly the small layouts the Numba backend
    walks in more than one task (so the 2-thread runs below CHUNK are the
    ones that split)."""
    if "numba" not in BACKENDS:
        pytest.skip("numba not available")
    from fastdrop._numba import backend as B
    from fastdrop._numba import kernels as K

    split = set()
    for lay in T.SMALL:
        if not lay.size or not lay.shape:
            continue
        x = lay.view(lay.buffer(np.float32))
        ms = lay.geometry[1]
        if B._is_full(x.shape, ms) and x.flags.c_contiguous:
            continue  # forward_contig: one task per CHUNK elements
        (shape, _, _, _), blocked = B._geometry(x, x, ms)
        if blocked:
            tasks = (math.prod(shape[:-2]) * -(-int(shape[-2]) // K.PBLOCK)
                     * -(-int(shape[-1]) // K.TILE))
        else:
            tasks = -(-math.prod(shape[:-1]) // max(1, CHUNK // int(shape[-1])))
        if tasks > 1:
            split.add(lay.id)
    assert split == T.SPLIT_SMALL


# ------------------------------------------------------------- the family
# Alpha dropout (docs/spec.md §8) against an oracle written from the spec
# alone: the reference's keep mask, PyTorch's constant, the float64
# constants in the spec's order, then the affine select in the compute type.

ALPHA = 1.7580993408473766


def alpha_want(case, dtype, grad=False):
    """The spec's alpha dropout (or its gradient) of the case's x."""
    w = want(case, dtype)
    p = case.stream[1]
    x = w.x
    if p == 0.0:
        return x.copy()
    if p == 1.0:
        return np.zeros_like(x)
    a = 1.0 / math.sqrt((ALPHA * ALPHA * p + 1.0) * (1.0 - p))
    b, c = (-0.0, 0.0) if grad else (ALPHA * a * p, ALPHA * a * (p - 1.0))
    ct = np.float64 if x.dtype == np.float64 else np.float32
    keep = np.broadcast_to(w.keep, x.shape)
    with np.errstate(all="ignore"):
        kept = to_dtype(to_compute(x, ct) * ct(a) + ct(b), x.dtype)
        return np.where(keep, kept, to_dtype(ct(c), x.dtype))


@parity(T.FORWARD, reference=2)
def test_alpha_dropout(case, dtype, backend, cython_isa, threads):
    """alpha_dropout(x): same decisions as dropout, the alpha select."""
    off, p = case.stream[:2]
    g = fastdrop.Generator(case.seed, off)
    y = fastdrop.alpha_dropout(want(case, dtype).x, p, rng=g, noise_shape=case.noise,
                               backend=backend)
    assert_same(y, alpha_want(case, dtype))
    assert g.offset == want(case, dtype).next_offset


@parity(T.BACKWARD, reference=3)
def test_alpha_dropout_backward(case, dtype, backend, cython_isa, threads):
    """alpha_dropout_backward(g, state=...): grad * a where kept, +0.0 dropped."""
    off, p = case.stream[:2]
    gx = fastdrop.alpha_dropout_backward(want(case, dtype).x, p, state=(case.seed, off),
                                         noise_shape=case.noise, backend=backend)
    assert_same(gx, alpha_want(case, dtype, grad=True))


# ------------------------------------------------- Gaussian dropout and noise

def noise_want(case, dtype, op, b):
    """The spec's Gaussian rule (docs/spec.md §11) on the case's x, from the
    normal stream of §10 directly: ``t = b * z + a``, then ``x * t`` or
    ``x + t`` in the compute type."""
    w = want(case, dtype)
    off = case.stream[0]
    M, _, n = case.layout.geometry
    z = R.normal_range(case.seed, off, n).reshape(M)
    x = w.x
    ct = np.float64 if x.dtype == np.float64 else np.float32
    with np.errstate(all="ignore"):
        t = (z * b + (1.0 if op == "mul" else -0.0)).astype(ct)
        xc = to_compute(x, ct)
        return to_dtype(xc * t if op == "mul" else xc + t, x.dtype)


def _sigma(p):
    return math.sqrt(p / (1.0 - p))


@parity(T.KERNEL_FORWARD, reference=0)
def test_kernel_noise(case, dtype, backend, cython_isa, threads):
    """The backend's ``noise`` kernel against the reference's, both ops, with
    a fresh output and in place."""
    kern = get_backend(backend)
    w = want(case, dtype)
    off, p = case.stream[:2]
    ms = case.layout.geometry[1]
    for op, a, b in (("mul", 1.0, _sigma(min(p, 0.9))), ("add", -0.0, 0.5 + p)):
        ref = np.empty_like(w.x)
        R.noise(w.x, ref, case.seed, off, ms, a, b, op)
        out = np.empty_like(w.x)
        kern.noise(w.x, out, case.seed, off, ms, a, b, op)
        assert_same(out, ref, op)
        y = case.layout.view(case.layout.clone(w.buf))
        kern.noise(y, y, case.seed, off, ms, a, b, op)
        assert_same(y, ref, f"{op} in place")


@parity(T.FORWARD, reference=2)
def test_gaussian_dropout(case, dtype, backend, cython_isa, threads):
    """gaussian_dropout(x, p) against the spec; p == 1 is refused with the
    generator untouched; the generator advances as dropout's does."""
    off, p = case.stream[:2]
    g = fastdrop.Generator(case.seed, off)
    x = want(case, dtype).x
    if p == 1.0:
        with pytest.raises(ValueError, match="p < 1"):
            fastdrop.gaussian_dropout(x, p, rng=g, noise_shape=case.noise, backend=backend)
        assert g.offset == off
        return
    y = fastdrop.gaussian_dropout(x, p, rng=g, noise_shape=case.noise, backend=backend)
    assert_same(y, x.copy() if p == 0.0 else noise_want(case, dtype, "mul", _sigma(p)))
    assert g.offset == want(case, dtype).next_offset


@parity(T.FORWARD, reference=3)
def test_gaussian_noise(case, dtype, backend, cython_isa, threads):
    """gaussian_noise(x, stddev) against the spec (stddev from the case's p)."""
    off, p = case.stream[:2]
    g = fastdrop.Generator(case.seed, off)
    x = want(case, dtype).x
    y = fastdrop.gaussian_noise(x, 2.0 * p, rng=g, noise_shape=case.noise, backend=backend)
    assert_same(y, x.copy() if p == 0.0 else noise_want(case, dtype, "add", 2.0 * p))
    assert g.offset == want(case, dtype).next_offset


@parity(T.BACKWARD, reference=3)
def test_gaussian_dropout_backward(case, dtype, backend, cython_isa, threads):
    """gaussian_dropout_backward(g, state=...): g times the forward's noise."""
    off, p = case.stream[:2]
    p = min(p, 0.9)
    gx = fastdrop.gaussian_dropout_backward(want(case, dtype).x, p, state=(case.seed, off),
                                            noise_shape=case.noise, backend=backend)
    assert_same(gx, want(case, dtype).x.copy() if p == 0.0
                else noise_want(case, dtype, "mul", _sigma(p)))


@pytest.mark.parametrize("off", [2**34 - 5, 2**35 - 101, 2**64 - 2000])
def test_noise_block_crossings_every_isa(off):
    """The normal stream's block index j >> 2 crosses 2**32 at j = 2**34 (the
    mask stream's at 2**35); the end of the stream: every Cython ISA."""
    x = np.random.default_rng(4).standard_normal(2000).astype(np.float32)
    ref = np.empty_like(x)
    R.noise(x, ref, T.SEED, off, (1,), 1.0, 0.75, "mul")
    _kernels = pytest.importorskip("fastdrop._cython._kernels")
    for isa in ISAS:
        old = _kernels.set_max_isa(isa)
        try:
            out = np.empty_like(x)
            _kernels.noise(x, out, T.SEED, off, (1,), 1.0, 0.75, "mul")
        finally:
            _kernels.set_max_isa(old)
        assert_same(out, ref, isa)


@pytest.mark.parametrize("f", range(8))
def test_block_unaligned_runs_every_isa(f):
    """A contiguous run whose first stream position is inside a Philox block
    (an offset, or the head the forward splits off to stream y with
    non-temporal stores) and spans several of the leaf's batches is computed
    from block-aligned windows, one ahead: sizes around batch ends (128, 256,
    384 and 768 positions: one portable batch; one, 1.5 and three AVX2 ones;
    three AVX-512 ones), every Cython ISA, forward with the bool and the
    packed mask, and a view of y at every 4-byte phase of a 64-byte line;
    ties in the middle of a batch."""
    _kernels = pytest.importorskip("fastdrop._cython._kernels")
    seed = 77
    sizes = [127, 129, 255, 257, 383, 385, 767 - f, 768 - f, 769 - f, 1024 + 3, 1543,
             2 * 4096 + 11]
    for isa in ISAS:
        old = _kernels.set_max_isa(isa)
        try:
            for i, n in enumerate(sizes):
                off = 8 * 1000 + f
                p, at = T.tie(seed, off, (n,), ("tie-keep", "tie-drop")[i % 2],
                              lambda M: M[0] // 2)
                keep = R.keep_range(seed, off, n, R.threshold(p))
                assert keep[at] == (i % 2 == 0)
                x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
                want_y = np.where(keep, x * np.float32(1 / (1 - p)), np.float32(0))
                buf = np.zeros(n + 16, np.float32)
                out = buf[n % 16:n % 16 + n]
                y, m = fastdrop.dropout(x, p, rng=fastdrop.Generator(seed, off), out=out,
                                        return_mask="packed", backend="cython")
                assert y is out
                assert_array_equal(y.view(np.uint32), want_y.view(np.uint32), f"{isa} n={n}")
                assert_array_equal(m, np.packbits(keep, bitorder="little"), f"{isa} n={n}")
                yb, mb = fastdrop.dropout(x, p, rng=fastdrop.Generator(seed, off),
                                          return_mask=True, backend="cython")
                assert_array_equal(mb, keep, f"{isa} n={n}")
                assert_array_equal(yb.view(np.uint32), want_y.view(np.uint32))
        finally:
            _kernels.set_max_isa(old)
