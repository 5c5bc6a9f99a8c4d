"""The registry and the plan runner: capabilities, the choice for "auto",
and which primitive each plan rule becomes."""

import types

import numpy as np
import pytest

import fastdrop
from fastdrop import _dispatch, _plan


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
