"""Generator: offset advance, state round-trip, spawn independence."""

import os

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop


@pytest.mark.parametrize("n,adv", [(0, 0), (1, 8), (7, 8), (8, 8), (9, 16), (1000, 1000),
                                   (1001, 1008)])
def test_advance_rounds_up_to_block(n, adv):
    g = fastdrop.Generator(1, offset=5)
    fastdrop.dropout_mask(n, 0.5, rng=g)
    assert g.offset == 5 + adv


def test_consecutive_calls_continue_the_stream_on_fresh_blocks():
    g = fastdrop.Generator(11)
    a = fastdrop.dropout_mask(13, 0.5, rng=g)
    b = fastdrop.dropout_mask(20, 0.5, rng=g)
    whole = fastdrop.dropout_mask(36, 0.5, rng=11)
    assert_array_equal(a, whole[:13])
    assert_array_equal(b, whole[16:36])


def test_state_round_trip_reproduces_masks():
    g = fastdrop.Generator(2024)
    fastdrop.dropout_mask(100, 0.5, rng=g)
    saved = g.state
    x = np.ones((30, 30), np.float32)
    first = [fastdrop.dropout(x, 0.5, rng=g) for _ in range(3)]
    g.state = saved
    again = [fastdrop.dropout(x, 0.5, rng=g) for _ in range(3)]
    for a, b in zip(first, again):
        assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1])
    h = fastdrop.Generator()
    h.state = saved
    assert_array_equal(fastdrop.dropout(x, 0.5, rng=h), first[0])


def test_state_is_a_plain_dict():
    g = fastdrop.Generator(5, offset=16)
    assert g.state == {"version": 1, "seed": 5, "offset": 16, "n_spawned": 0}
    assert repr(g) == "fastdrop.Generator(seed=5, offset=16)"


def test_spawn_is_reproducible_and_independent():
    a = fastdrop.Generator(7).spawn(3)
    b = fastdrop.Generator(7).spawn(3)
    assert [c.seed for c in a] == [c.seed for c in b]
    assert len({c.seed for c in a} | {7}) == 4
    g = fastdrop.Generator(7)
    g.spawn(1)
    assert g.spawn(1)[0].seed == a[1].seed  # the spawn counter is part of the state
    # masks of different children are uncorrelated (and differ from the parent's)
    n = 10**6
    masks = [fastdrop.dropout_mask(n, 0.5, rng=c).astype(np.float64) for c in a]
    masks.append(fastdrop.dropout_mask(n, 0.5, rng=7).astype(np.float64))
    c = np.corrcoef(np.stack(masks))
    off_diag = c[~np.eye(len(masks), dtype=bool)]
    assert np.abs(off_diag).max() < 5.0 / np.sqrt(n)


def test_nearby_seeds_give_uncorrelated_masks():
    n = 10**6
    m = [fastdrop.dropout_mask(n, 0.5, rng=s).astype(np.float64) for s in (0, 1, 2**32)]
    c = np.corrcoef(np.stack(m))
    assert np.abs(c[~np.eye(3, dtype=bool)]).max() < 5.0 / np.sqrt(n)


def test_fresh_entropy_generators_differ():
    assert fastdrop.Generator().seed != fastdrop.Generator().seed


def test_seed_types():
    assert fastdrop.Generator(np.uint64(2**63 + 1)).seed == 2**63 + 1
    with pytest.raises(TypeError):
        fastdrop.Generator(1.0)
    with pytest.raises(TypeError):
        fastdrop.Generator(True)


# ------------------------------------------------------------ rng=None and NumPy's objects

def test_rng_none_is_the_default_stream():
    from fastdrop._generator import default_stream

    g = default_stream()
    seed, start = g.seed, g.offset
    x = np.ones(21, np.float32)
    y = fastdrop.dropout(x, 0.5)
    assert g.offset == start + 24   # ceil(21 / 8) * 8 positions taken
    assert np.array_equal(y, fastdrop.dropout(x, 0.5, rng=fastdrop.Generator(seed, start)))
    assert fastdrop.dropout_mask(21, 0.5).shape == (21,) and g.offset == start + 48


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_rng_none_differs_in_a_forked_child():
    x = np.ones(256, np.float32)
    fastdrop.dropout(x, 0.5)  # the parent's stream exists before the fork
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: its first mask, then exit without running pytest's teardown
        try:
            os.write(w, fastdrop.dropout_mask(256, 0.5, packed=True).tobytes())
        finally:
            os._exit(0)
    os.close(w)
    child = os.read(r, 64)
    os.waitpid(pid, 0)
    parent = fastdrop.dropout_mask(256, 0.5, packed=True).tobytes()
    assert len(child) == 32 and child != parent


def test_numpy_objects_as_rng():
    x = np.ones(64, np.float32)
    # a numpy Generator: one integers(0, 2**64, uint64) draw (random_raw for 64-bit ones)
    for bg in (np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64):
        a, b = np.random.Generator(bg(3)), np.random.Generator(bg(3))
        want = fastdrop.dropout(x, 0.5, rng=int(b.integers(0, 2**64, dtype=np.uint64)))
        assert np.array_equal(fastdrop.dropout(x, 0.5, rng=a), want), bg.__name__
        bitgen, ref = bg(4), np.random.Generator(bg(4))
        want = fastdrop.dropout(x, 0.5, rng=int(ref.integers(0, 2**64, dtype=np.uint64)))
        assert np.array_equal(fastdrop.dropout(x, 0.5, rng=bitgen), want), bg.__name__
    ss = np.random.SeedSequence(11)
    seed = int(ss.generate_state(1, np.uint64)[0])
    assert np.array_equal(fastdrop.dropout(x, 0.5, rng=ss), fastdrop.dropout(x, 0.5, rng=seed))
    assert np.array_equal(fastdrop.dropout(x, 0.5, rng=ss), fastdrop.dropout(x, 0.5, rng=ss))
    with pytest.raises(TypeError, match="rng"):
        fastdrop.dropout(x, 0.5, rng=[1, 2])
