"""The registry and the plan runner: capabilities, the choice for "auto",
and which primitive each plan rule becomes."""

import types

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from conftest import bits, special_values
from fastdrop import _dispatch, _plan, _validate


def test_capabilities_reported():
    info = fastdrop.get_backends()
    ref = info["reference"]["capabilities"]
    assert ref["device"] == "cpu" and ref["sources"] == ("philox", "bool", "packed", "normal")
    assert ref["dtypes"] == ("float16", "float32", "float64", "bfloat16")
    for name, v in info.items():
        assert (v["capabilities"] is None) == (not v["available"]), name
        if v["available"]:  # every backend runs bfloat16 (ml_dtypes arrays)
            assert "bfloat16" in v["dtypes"], name


def test_auto_choice_follows_capabilities(monkeypatch):
    """A backend whose capabilities lack the dtype is passed over."""
    fake = types.SimpleNamespace(DTYPES=("float32",), forward=None, mask=None,
                                 apply_mask=None)
    monkeypatch.setitem(_dispatch._cache, "cython", (fake, ""))
    assert _dispatch.choose_cpu_backend(10, "float32")[0] == "cython"
    assert _dispatch.choose_cpu_backend(10, np.dtype("float16"))[0] != "cython"
    monkeypatch.setitem(_dispatch._cache, "cython", (None, "not built"))
    assert _dispatch.choose_cpu_backend(10, "float32")[0] in ("numba", "reference")


class RecordingOps:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *a: self.calls.append(name)


@pytest.mark.parametrize("plan_kw,expected", [
    (dict(p=0.5, training=True, mode="inverted"), ["forward"]),
    (dict(p=0.0, training=True, mode="inverted"), ["copy"]),
    (dict(p=1.0, training=True, mode="inverted"), ["zero"]),
    (dict(p=0.3, training=False, mode="inverted"), ["copy"]),
    (dict(p=0.3, training=False, mode="classic"), ["scale"]),
    (dict(p=1.0, training=False, mode="classic"), ["zero"]),
])
def test_rules_become_primitives(plan_kw, expected):
    plan = _plan.plan_dropout((4, 8), rng=1, **plan_kw)
    ops = RecordingOps()
    _dispatch.run(plan, ops, None, None)
    assert ops.calls == expected


def test_broadcast_mask_output_is_drawn_then_applied():
    plan = _plan.plan_dropout((4, 8), 0.5, training=True, mode="inverted", rng=1,
                              noise_shape=(4, 1), mask_out="bool")
    ops = RecordingOps()
    _dispatch.run(plan, ops, None, None, keep_out=np.empty(4, bool))
    assert ops.calls == ["mask", "apply"]


def test_constant_masks_are_filled():
    plan = _plan.plan_dropout((4, 8), 0.0, training=True, mode="inverted", rng=1,
                              mask_out="packed")
    ops = RecordingOps()
    _dispatch.run(plan, ops, None, None, packed_out=np.empty(4, np.uint8))
    assert ops.calls == ["copy", "fill_mask"]


def test_block_plans_move_the_offset_only():
    plan = _plan.plan_dropout((4, 8), 0.5, training=True, mode="inverted",
                              rng=fastdrop.Generator(3, 16))
    sub = plan.at(8)
    assert (sub.seed, sub.offset) == (3, 24) and sub.mstrides == plan.mstrides
    assert _plan.plan_dropout((4, 8), 0.0, training=True, mode="inverted",
                              rng=3).at(8).offset == 0  # nothing drawn: nothing moves


@pytest.mark.parametrize("shape, noise_shape, span", [
    ((4, 5, 6, 8), (4, 1, 1, 8), 32),      # channels-last spatial dropout
    ((3, 7, 5), (3, 1, 5), 15),            # a mask shared over a sequence
    ((5, 3, 4), (1, 3, 4), 12),            # shared along the leading axis
    ((2, 3, 4, 5), (2, 1, 4, 1), 8),       # broadcast axes inside and at the end
    ((4, 6, 3, 3), (4, 6, 1, 1), 0),       # channels-first: trailing axes only
    ((6, 9), None, 0),                     # a full mask
    ((1, 7, 1, 5), (1, 1, 1, 5), 5),       # among axes of extent 1
    ((9, 1, 4), (9, 1, 1), 0),
])
def test_repeat_span(shape, noise_shape, span):
    """repeat_span against its definition: the mask indices the values read
    in C order, some of them in more than one run -> 1 + the largest."""
    _, mstrides, n = _validate.mask_geometry(shape, noise_shape)
    assert _plan.repeat_span(shape, mstrides) == span
    idx = sum(np.arange(e).reshape([-1 if a == b else 1 for b in range(len(shape))]) * s
              for a, (e, s) in enumerate(zip(shape, mstrides))).ravel()
    runs = idx[np.r_[True, idx[1:] != idx[:-1]]]  # one entry per run of equal indices
    repeats = len(np.unique(runs)) < len(runs)
    assert span == (int(idx.max()) + 1 if repeats else 0)


class SpyOps:
    """Records each primitive run() calls, with its arguments."""

    def __init__(self, draws_spans):
        self.draws_spans = draws_spans
        self.calls = []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name, args))
            return np.zeros(64, np.uint8) if name == "packed_scratch" else None
        return call


def test_repeated_mask_positions_are_drawn_once():
    """A channels-last noise shape: a backend that opts in (DRAWS_SPANS) gets
    the span of mask positions drawn once into a packed scratch mask, then
    applied; one that does not (the reference), small values, and a mask
    broadcast along trailing axes only keep the one forward."""
    shape = (4, 64, 16)
    plan = _plan.plan_dropout(shape, 0.5, training=True, mode="inverted",
                              rng=fastdrop.Generator(3, 40), noise_shape=(4, 1, 16))
    x = np.ones(shape, np.float32)
    ops = SpyOps(True)
    _dispatch.run(plan, ops, x, x)
    assert [c[0] for c in ops.calls] == ["packed_scratch", "mask", "apply"]
    assert ops.calls[0][1] == (64,)
    drawn = ops.calls[1][1][0]
    assert (drawn.n, drawn.seed, drawn.offset, drawn.T) == (64, 3, 40, plan.T)
    assert ops.calls[2][1][3] == "packed" and ops.calls[2][1][2] is plan
    for draws, sh, ns in [(False, shape, (4, 1, 16)), (True, (4, 4, 16), (4, 1, 16)),
                          (True, (4, 16, 64), (4, 16, 1))]:
        ops = SpyOps(draws)
        pl = _plan.plan_dropout(sh, 0.5, training=True, mode="inverted", rng=1,
                                noise_shape=ns)
        _dispatch.run(pl, ops, np.ones(sh, np.float32), None)
        assert [c[0] for c in ops.calls] == ["forward"], (draws, sh, ns)
    assert not _dispatch.HostOps(fastdrop.reference).draws_spans


CPU_BACKENDS = [b for b in ("cython", "numba") if fastdrop.get_backends()[b]["available"]]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "bfloat16"])
def test_repeated_positions_equal_the_reference(backend, dtype):
    """Masks broadcast along a middle axis (channels-last spatial dropout, a
    mask shared over a sequence, a leading axis; a Generator at an offset
    inside a Philox block): values and the Generator's
    advance equal the reference's bit for bit; also into a strided out and
    in place, and for alpha dropout (a shift and a fill) and the gradient."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    for shape, ns in [((3, 9, 7, 24), (3, 1, 1, 24)), ((5, 300, 6), (5, 1, 6)),
                      ((40, 3, 50), (1, 3, 50))]:
        x = special_values(shape, dtype, seed=sum(shape))
        want_g, got_g = fastdrop.Generator(11, 5), fastdrop.Generator(11, 5)
        want = fastdrop.dropout(x, 0.3, rng=want_g, noise_shape=ns, backend="reference")
        got = fastdrop.dropout(x, 0.3, rng=got_g, noise_shape=ns, backend=backend)
        assert_array_equal(bits(got), bits(want), err_msg=str(shape))
        assert got_g.state == want_g.state
        out = np.full(shape[:-1] + (2 * shape[-1],), 7, dtype)[..., ::2]
        fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(11, 5), noise_shape=ns, out=out,
                         backend=backend)
        assert_array_equal(bits(out), bits(want))
        y = x.copy()
        fastdrop.dropout(y, 0.3, rng=fastdrop.Generator(11, 5), noise_shape=ns, out=y,
                         backend=backend)
        assert_array_equal(bits(y), bits(want))
        r = fastdrop.alpha_dropout(x, 0.3, rng=2, noise_shape=ns, backend="reference")
        assert_array_equal(bits(fastdrop.alpha_dropout(x, 0.3, rng=2, noise_shape=ns,
                                                       backend=backend)), bits(r))
        g = fastdrop.dropout_backward(x, 0.3, state=(11, 5), noise_shape=ns,
                                      backend="reference")
        assert_array_equal(bits(fastdrop.dropout_backward(x, 0.3, state=(11, 5), noise_shape=ns,
                                                          backend=backend)), bits(g))
