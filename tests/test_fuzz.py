"""Adversarial battery: differential fuzzing of every CPU backend against the
reference, threads sharing generators and arrays, memory over many calls.

The differential test draws (Hypothesis, derandomised and bounded so CI
stays in budget) shapes of 0 to 4 axes with empty and long axes, views with
negative steps and transposes, outputs of another layout than the input,
noise shapes, all three dtypes, inputs with NaN, +-inf, -0.0 and
subnormals, offsets near 2**35 (where the Philox block index crosses 2**32)
and at the very end of the stream (``offset + n == 2**64``), and ``p``
chosen so that a drawn element *ties* with the threshold's high half (the
16-bit tie-break path).  Every backend must equal the reference bit for bit
in every entry point: forward with a fresh or a caller's ``out`` (in place
too), bool and packed masks, ``apply_mask``, ``dropout_backward`` from the
state, evaluation mode.  (The bad-argument battery is in
``test_bad_arguments.py``; the review's findings in ``test_findings.py``.)
"""

import math
import os
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

import fastdrop
from conftest import bits, cpu_backends
from fastdrop import reference

_U64 = 1 << 64
BACKENDS = [b for b in cpu_backends() if b != "reference"]


def adversarial_values(shape, dtype, seed):
    """Normals with NaN, +-inf, +-0.0, subnormals and the largest finite
    value sprinkled in."""
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    fi = np.finfo(dtype)
    v = (rng.standard_normal(n) * 4).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, fi.smallest_subnormal,
                         -fi.smallest_subnormal, fi.smallest_normal, fi.max, -fi.max],
                        dtype=dtype)
    if n:
        pos = rng.integers(0, n, size=max(1, n // 6))
        v[pos] = specials[rng.integers(0, specials.size, size=pos.size)]
    return v.reshape(shape)


def _strided_view(draw, shape, dtype, seed):
    """A view of ``shape`` into a larger buffer: steps (maybe negative), a
    transpose; memory order differs from the logical order."""
    ndim = len(shape)
    if ndim == 0:
        return adversarial_values((), dtype, seed)[...]  # a 0-d array, not a scalar
    perm = draw(st.permutations(range(ndim))) if ndim > 1 else list(range(ndim))
    inv = np.argsort(perm) if ndim else []
    pshape = tuple(shape[k] for k in perm)  # shape before the transpose
    steps = [draw(st.sampled_from([1, 1, 2, -1, -2])) for _ in range(ndim)]
    base_shape = tuple(max(1, s) * abs(k) for s, k in zip(pshape, steps))
    base = adversarial_values(base_shape, dtype, seed)
    view = base[tuple(slice(None, None, k) for k in steps)]
    view = view[tuple(slice(0, s) for s in pshape)]
    return view.transpose(inv) if ndim > 1 else view


def _offset(draw, n):
    kind = draw(st.sampled_from(["small", "block 2**32", "end", "any"]))
    if kind == "small":
        return draw(st.integers(0, 64))
    if kind == "block 2**32":  # Philox block index b = j >> 3 crosses 2**32
        return draw(st.integers(2**35 - n - 16, 2**35 + 16))
    if kind == "end":  # the last positions of the stream
        return _U64 - n - draw(st.integers(0, 9)) if n else _U64
    return draw(st.integers(0, _U64 - n))


def _tie_p(draw, seed, offset, n):
    """A p whose threshold's high half equals the drawn 16 bits of one mask
    element, so that element takes the tie-break path."""
    j = offset + draw(st.integers(0, n - 1))
    hi = int(reference._lanes(seed, np.array([j >> 3], dtype=np.uint64), 0)[0, j & 7])
    T = (hi << 16) | draw(st.integers(0, 0xFFFF))
    return T / 2**32


@st.composite
def cases(draw):
    ndim = draw(st.integers(0, 4))
    shape = [draw(st.integers(0, 6)) for _ in range(ndim)]
    if ndim and draw(st.integers(0, 3)) == 0:  # one long axis: several tiles/chunks
        shape[draw(st.integers(0, ndim - 1))] = draw(st.integers(65, 40000))
    shape = tuple(shape)
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    x = _strided_view(draw, shape, dtype, draw(st.integers(0, 1000)))
    noise = None
    if ndim and draw(st.booleans()):
        noise = tuple(draw(st.sampled_from([1, None, s])) for s in shape)
    M = shape if noise is None else tuple(s if m is None else m for m, s in zip(noise, shape))
    n = math.prod(M)
    seed = draw(st.integers(0, _U64 - 1))
    offset = _offset(draw, n)
    p_kind = draw(st.sampled_from(["tie", "tie", "float", "edge"]))
    if p_kind == "tie" and n:
        p = _tie_p(draw, seed, offset, n)
    elif p_kind == "edge":
        p = draw(st.sampled_from([0.0, 1.0, 2**-32, 1 - 2**-32, 0.5]))
    else:
        p = draw(st.floats(0.0, 1.0))
    out_layout = draw(st.sampled_from(["fresh", "strided", "in place"]))
    mode = draw(st.sampled_from(["inverted", "classic"]))
    return x, noise, seed, offset, p, out_layout, mode


def _out_for(x, layout, seed):
    if layout == "fresh":
        return None
    if layout == "in place":
        return x.copy()  # called with out=<this>, x=<this>
    # another layout than x: reversed Fortran-order buffer
    if x.ndim == 0:
        return np.full((), -7.25, dtype=x.dtype)
    buf = np.asfortranarray(np.full(x.shape, -7.25, dtype=x.dtype))
    return buf[tuple(slice(None, None, -1) for _ in range(x.ndim))]


def _dropout(x, p, seed, offset, noise, mode, layout, backend, **kw):
    g = fastdrop.Generator(seed, offset)
    out = _out_for(x, layout, seed)
    if layout == "in place":
        x = out
    res = fastdrop.dropout(x, p, rng=g, noise_shape=noise, mode=mode, out=out,
                           backend=backend, **kw)
    y = res[0] if isinstance(res, tuple) else res
    if out is not None:
        assert y is out
    return res, g.offset


@settings(max_examples=int(os.environ.get("FASTDROP_FUZZ_EXAMPLES", 60)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_every_backend_equals_reference(case):
    x, noise, seed, offset, p, layout, mode = case
    want, want_off = _dropout(x, p, seed, offset, noise, mode, "fresh", "reference")
    (_, want_keep), _ = _dropout(x, p, seed, offset, noise, mode, "fresh", "reference",
                                 return_mask=True)
    (_, want_packed), _ = _dropout(x, p, seed, offset, noise, mode, "fresh", "reference",
                                   return_mask="packed")
    assert_array_equal(want_packed, np.packbits(want_keep.reshape(-1), bitorder="little"))
    evald = fastdrop.dropout(x, p, training=False, mode=mode, backend="reference")
    for b in BACKENDS:
        got, off = _dropout(x, p, seed, offset, noise, mode, layout, b)
        assert_array_equal(bits(got), bits(want), err_msg=f"{b} forward")
        assert off == want_off
        (got, keep), _ = _dropout(x, p, seed, offset, noise, mode, layout, b,
                                  return_mask=True)
        assert_array_equal(bits(got), bits(want))
        assert_array_equal(keep, want_keep, err_msg=f"{b} bool mask")
        (got, packed), _ = _dropout(x, p, seed, offset, noise, mode, layout, b,
                                    return_mask="packed")
        assert_array_equal(bits(got), bits(want))
        assert_array_equal(packed, want_packed, err_msg=f"{b} packed mask")
        assert_array_equal(bits(fastdrop.apply_mask(x, keep, p, mode=mode, backend=b)),
                           bits(want), err_msg=f"{b} apply bool")
        assert_array_equal(bits(fastdrop.apply_mask(x, packed, p, mode=mode,
                                                    noise_shape=noise, backend=b)),
                           bits(want), err_msg=f"{b} apply packed")
        back = fastdrop.dropout_backward(x, p, state=(seed, offset), mode=mode,
                                         noise_shape=noise, backend=b)
        assert_array_equal(bits(back), bits(want), err_msg=f"{b} backward")
        assert_array_equal(bits(fastdrop.dropout(x, p, training=False, mode=mode,
                                                 backend=b)), bits(evald))
        M = x.shape if noise is None else keep.shape
        assert_array_equal(fastdrop.dropout_mask(M, p, rng=fastdrop.Generator(seed, offset),
                                                 backend=b), want_keep)


# ----------------------------------------------------------------------------
# threads sharing arrays
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", cpu_backends())
def test_threads_share_input_and_output(backend):
    """Eight threads read one input and write disjoint rows of one output
    (each its own seed, some through strided rows); the result is the serial
    one."""
    x = adversarial_values((8, 3000), np.float32, 3)
    out = np.full((8, 3000), -7.25, np.float32)
    outT = np.full((3000, 8), -7.25, np.float32)  # rows of out.T: strided columns
    barrier = threading.Barrier(8)
    errors = []

    def work(k):
        try:
            barrier.wait()
            for r in range(20):
                fastdrop.dropout(x[k], 0.3, rng=1000 * k + r, out=out[k], backend=backend)
                fastdrop.dropout(x[k], 0.3, rng=1000 * k + r, out=outT[:, k], backend=backend)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(8):
        want = fastdrop.dropout(x[k], 0.3, rng=1000 * k + 19, backend="reference")
        assert_array_equal(bits(out[k]), bits(want))
        assert_array_equal(bits(outT[:, k]), bits(want))


# ----------------------------------------------------------------------------
# memory over many calls
# ----------------------------------------------------------------------------

def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("backend", cpu_backends())
def test_no_memory_growth_over_many_calls(backend):
    """20,000 small and 200 large calls (50 for the slow reference) of every
    entry point: resident memory grows by less than 32 MiB (one large call's
    arrays are 4 MiB; a leak of either size would show)."""
    small = np.ones(1000, np.float32)
    large = np.ones(1 << 20, np.float32)
    out = np.empty_like(large)
    g = fastdrop.Generator(1)
    keep = fastdrop.dropout_mask(large.shape, 0.5, rng=1)
    packed = fastdrop.dropout_mask(large.shape, 0.5, rng=1, packed=True)

    def round_(n_small, n_large):
        for _ in range(n_small):
            fastdrop.dropout(small, 0.5, rng=g, backend=backend)
        for _ in range(n_large):
            fastdrop.dropout(large, 0.5, rng=g, out=out, backend=backend)
            fastdrop.dropout(large, 0.5, rng=g, return_mask="packed", backend=backend)
            fastdrop.apply_mask(large, keep, 0.5, out=out, backend=backend)
            fastdrop.apply_mask(large, packed, 0.5, backend=backend)

    n_small = 20000 if backend != "reference" else 4000
    n_large = 200 if backend != "reference" else 50
    round_(200, 5)  # warm up: compile, caches, allocator pools
    before = _rss()
    round_(n_small, n_large)
    grown = _rss() - before
    assert grown < 32 << 20, f"RSS grew by {grown / 2**20:.1f} MiB"
