"""Every error of the foundation issue, as one table.

``ERRORS`` has one row ``(id, call, exception type, message regex)`` per
failing call.  ``call`` takes a fresh :class:`Scratch`: ``s.out`` is a
(4, 5) float32 array filled with ``SENTINEL``, ``s.array(...)`` makes another
sentinel-filled array and ``s.generator(...)`` a fresh ``fastdrop.Generator``.
``test_fails_and_writes_nothing`` runs each row under
``pytest.raises(exc, match=msg)`` and then checks that nothing was written:
every array the row took from the scratch still holds only the sentinel, and
every Generator it took still has its state (seed, offset) from before.

The few checks with another shape (successes, a multi-step walk to the end of
the stream) are small separate tests at the end.
"""

import numpy as np
import pytest

import fastdrop

SENTINEL = np.float32(-7.25)

X = np.ones((4, 5), np.float32)


class Scratch:
    """What one row may write to: sentinel arrays and fresh Generators."""

    def __init__(self):
        self._arrays = []
        self._generators = []
        self.out = self.array()

    def array(self, shape=(4, 5), dtype=np.float32):
        a = np.full(shape, SENTINEL, dtype=dtype)
        self._arrays.append(a)
        return a

    def generator(self, seed=1, offset=0):
        g = fastdrop.Generator(seed, offset=offset)
        self._generators.append((g, g.state))
        return g

    def check_untouched(self):
        for a in self._arrays:
            assert (a == SENTINEL).all(), "out was written by a failing call"
        for g, before in self._generators:
            assert g.state == before, "the Generator was advanced by a failing call"


def read_only(a):
    a.flags.writeable = False
    return a


def partial_overlap_shifted(s):
    buf = s.array(30)
    fastdrop.dropout(buf[:20], 0.5, rng=0, out=buf[5:25])


def partial_overlap_transposed(s):
    # same memory, different strides (a transposed alias) is also partial overlap
    sq = s.array((4, 4))
    fastdrop.dropout(sq, 0.5, rng=0, out=sq.T)


def assign_state(state):
    def call(s):
        s.generator(1).state = state
    return call


P_RANGE = r"p must be in \[0, 1\]"
IN_UINT64 = r"must be in \[0, 2\*\*64\)"
BAD_DTYPES = [np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.longdouble]
BAD_SEEDS = [("minus-1", -1), ("2**64", 2**64), ("2**70", 2**70)]
END = 2**64

ERRORS = [
    # p
    *[(f"p-{name}", lambda s, p=p: fastdrop.dropout(X, p, rng=0, out=s.out),
       ValueError, P_RANGE)
      for name, p in [("nan", float("nan")), ("-0.01", -0.01), ("1.0000001", 1.0000001),
                      ("2", 2), ("-inf", -np.inf)]],
    ("p-10**400", lambda s: fastdrop.dropout(X, 10**400, rng=0, out=s.out),
     ValueError, P_RANGE),
    ("p-10**400-no-out", lambda s: fastdrop.dropout(X, 10**400, rng=0),
     ValueError, P_RANGE),
    ("p-str", lambda s: fastdrop.dropout(X, "0.5", rng=0, out=s.out),
     TypeError, "p must be a real number"),

    # x's dtype
    *[(f"dropout-x-{np.dtype(dt)}",
       lambda s, dt=dt: fastdrop.dropout(np.ones((4, 5), dt), 0.5, rng=0, out=s.out),
       TypeError, f"dtype {np.dtype(dt)}")
      for dt in BAD_DTYPES],
    *[(f"backward-x-{np.dtype(dt)}",
       lambda s, dt=dt: fastdrop.dropout_backward(np.ones((4, 5), dt), 0.5, state=0),
       TypeError, f"dtype {np.dtype(dt)}")
      for dt in BAD_DTYPES],
    ("x-non-native-byte-order",
     lambda s: fastdrop.dropout(np.ones((4, 5), ">f4"), 0.5, rng=0, out=s.out),
     TypeError, "non-native byte order"),

    # out
    ("out-wrong-shape", lambda s: fastdrop.dropout(X, 0.5, rng=0, out=s.array((5, 4))),
     ValueError, r"out has shape \(5, 4\), expected \(4, 5\)"),
    ("out-wrong-dtype",
     lambda s: fastdrop.dropout(X, 0.5, rng=0, out=s.array((4, 5), np.float64)),
     TypeError, "out has dtype float64, expected float32"),
    ("out-list", lambda s: fastdrop.dropout(X, 0.5, rng=0, out=[0.0] * 20),
     TypeError, "out must be a numpy.ndarray"),
    ("out-read-only", lambda s: fastdrop.dropout(X, 0.5, rng=0, out=read_only(s.out)),
     ValueError, "out is read-only"),
    ("out-partly-overlaps-x-shifted", partial_overlap_shifted,
     ValueError, "out partly overlaps x"),
    ("out-partly-overlaps-x-transposed", partial_overlap_transposed,
     ValueError, "partly overlaps"),

    # noise_shape (the Generator must not be advanced)
    *[("noise-shape-" + "x".join(map(str, noise)),
       lambda s, noise=noise: fastdrop.dropout(X, 0.5, rng=s.generator(1), noise_shape=noise,
                                               out=s.out),
       ValueError, msg)
      for noise, msg in [((1,), "same number of axes"),
                         ((4, 2), "not broadcastable"),
                         ((3, 1), "not broadcastable"),
                         ((1, 5, 1), "same number of axes")]],

    # masks
    ("bool-mask-4x4", lambda s: fastdrop.apply_mask(X, np.ones((4, 4), bool), 0.5, out=s.out),
     ValueError, r"mask has shape \(4, 4\)"),
    ("bool-mask-20", lambda s: fastdrop.apply_mask(X, np.ones(20, bool), 0.5, out=s.out),
     ValueError, r"mask has shape \(20,\)"),
    ("packed-mask-2-bytes",
     lambda s: fastdrop.apply_mask(X, np.zeros(2, np.uint8), 0.5, out=s.out),
     ValueError, "packed mask has 2 bytes, expected 3"),
    ("backward-packed-mask-3-bytes",
     lambda s: fastdrop.dropout_backward(X, 0.5, mask=np.zeros(3, np.uint8),
                                         noise_shape=(1, 5), out=s.out),
     ValueError, "packed mask has 3 bytes, expected 1"),
    ("unpack-mask-1-byte", lambda s: fastdrop.unpack_mask(np.zeros(1, np.uint8), (3, 3)),
     ValueError, "packed mask has 1 bytes, expected 2"),
    ("mask-float32",
     lambda s: fastdrop.apply_mask(X, np.ones((4, 5), np.float32), 0.5, out=s.out),
     TypeError, "mask must be a bool array"),

    # seeds and rng
    *[(f"dropout-seed-{name}", lambda s, seed=seed: fastdrop.dropout(X, 0.5, rng=seed, out=s.out),
       ValueError, IN_UINT64)
      for name, seed in BAD_SEEDS],
    *[(f"generator-seed-{name}", lambda s, seed=seed: fastdrop.Generator(seed),
       ValueError, r"seed must be in \[0, 2\*\*64\)")
      for name, seed in BAD_SEEDS],
    *[(f"backward-state-{name}",
       lambda s, seed=seed: fastdrop.dropout_backward(X, 0.5, state=seed, out=s.out),
       ValueError, IN_UINT64)
      for name, seed in BAD_SEEDS],
    ("rng-float", lambda s: fastdrop.dropout(X, 0.5, rng=1.5, out=s.out),
     TypeError, "rng must be None, an int seed"),
    ("eval-mode-rng-object",
     lambda s: fastdrop.dropout(X, 0.5, training=False, rng=object(), out=s.out),
     TypeError, "rng must be None, an int seed"),
    ("eval-mode-seed-minus-1",
     lambda s: fastdrop.dropout(X, 0.5, training=False, rng=-1, out=s.out),
     ValueError, IN_UINT64),

    # offsets (20 elements > 16 / 8 / 0 positions left)
    ("offset-overflow-generator",
     lambda s: fastdrop.dropout(X, 0.5, rng=s.generator(3, offset=END - 16), out=s.out),
     ValueError, "offset overflow"),
    ("offset-overflow-backward-state",
     lambda s: fastdrop.dropout_backward(X, 0.5, state=(3, END - 8), out=s.out),
     ValueError, "offset overflow"),
    ("offset-overflow-at-end-of-stream",
     lambda s: fastdrop.dropout(np.ones(1, np.float32), 0.5, rng=s.generator(3, offset=END)),
     ValueError, "offset overflow"),
    ("generator-offset-past-end", lambda s: fastdrop.Generator(3, offset=END + 1),
     ValueError, r"offset must be in \[0, 2\*\*64\]"),

    # options
    ("backend-fast", lambda s: fastdrop.dropout(X, 0.5, rng=0, out=s.out, backend="fast"),
     ValueError, "unknown backend 'fast'"),
    ("backend-cuda-numpy-x",
     lambda s: fastdrop.dropout(X, 0.5, rng=0, out=s.out, backend="cuda"),
     TypeError, "needs a GPU array"),
    ("mode-scaled", lambda s: fastdrop.dropout(X, 0.5, rng=0, out=s.out, mode="scaled"),
     ValueError, "mode must be 'inverted' or 'classic'"),
    ("return-mask-bits",
     lambda s: fastdrop.dropout(X, 0.5, rng=0, out=s.out, return_mask="bits"),
     ValueError, "return_mask must be"),

    # dropout_backward's mask/state
    ("backward-neither-mask-nor-state", lambda s: fastdrop.dropout_backward(X, 0.5, out=s.out),
     ValueError, "needs the forward's mask"),
    ("backward-both-mask-and-state",
     lambda s: fastdrop.dropout_backward(X, 0.5, mask=np.ones((4, 5), bool), state=1,
                                         out=s.out),
     ValueError, "either mask or state"),
    ("backward-state-is-a-generator",
     lambda s: fastdrop.dropout_backward(X, 0.5, state=s.generator(1), out=s.out),
     TypeError, "not the Generator itself"),

    # dropout_mask's shape
    ("mask-shape-negative", lambda s: fastdrop.dropout_mask((3, -1), 0.5),
     ValueError, "negative"),
    ("mask-shape-str", lambda s: fastdrop.dropout_mask("abc", 0.5),
     TypeError, "shape must be an int or a tuple"),

    # Generator.state assignment (the Generator keeps its state)
    ("state-missing-offset", assign_state({"seed": 3}),
     ValueError, "missing the key 'offset'"),
    ("state-tuple", assign_state((1, 2)),
     TypeError, "state must be a dict"),

    # threads
    ("num-threads-0", lambda s: fastdrop.set_num_threads(0),
     ValueError, "number of threads must be >= 1"),
]


@pytest.mark.parametrize("call,exc,msg", [pytest.param(call, exc, msg, id=row_id)
                                          for row_id, call, exc, msg in ERRORS])
def test_fails_and_writes_nothing(call, exc, msg):
    s = Scratch()
    with pytest.raises(exc, match=msg):
        call(s)
    s.check_untouched()


def test_row_ids_are_unique():
    ids = [row[0] for row in ERRORS]
    assert len(ids) == len(set(ids))


def test_end_of_stream_is_a_valid_state():
    g = fastdrop.Generator(3, offset=END - 16)
    # exactly the remaining positions is fine
    assert fastdrop.dropout(np.ones(16, np.float32), 0.5, rng=g).shape == (16,)
    # the end of the stream round-trips, and only empty draws can follow
    assert g.offset == END
    g.state = g.state
    assert fastdrop.dropout(np.ones(0, np.float32), 0.5, rng=g).shape == (0,)
    with pytest.raises(ValueError, match="offset overflow"):
        fastdrop.dropout(np.ones(1, np.float32), 0.5, rng=g)
    assert g.offset == END


def test_out_identical_is_in_place():
    x = np.ones(16, np.float32)
    assert fastdrop.dropout(x, 0.5, rng=0, out=x) is x


def test_in_place_through_a_view_with_extent_one_axes():
    a = np.ones(4, np.float32)
    y = fastdrop.dropout(a.reshape(4, 1), 0.5, rng=0, out=a[:, None])
    np.testing.assert_array_equal(a, fastdrop.dropout(np.ones(4, np.float32), 0.5, rng=0))
    assert np.shares_memory(y, a)
