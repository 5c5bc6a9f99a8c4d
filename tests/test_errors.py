"""Every error of the foundation issue: exception type, message, and nothing
written (``out`` untouched, Generator not advanced) when a call fails."""

import numpy as np
import pytest

import fastdrop

SENTINEL = np.float32(-7.25)


def fresh_out(shape=(4, 5), dtype=np.float32):
    return np.full(shape, SENTINEL, dtype=dtype)


def check_untouched(out):
    assert (out == SENTINEL).all(), "out was written by a failing call"


X = np.ones((4, 5), np.float32)


@pytest.mark.parametrize("p", [float("nan"), -0.01, 1.0000001, 2, -np.inf])
def test_bad_p(p):
    out = fresh_out()
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        fastdrop.dropout(X, p, rng=0, out=out)
    check_untouched(out)


def test_p_wrong_type():
    out = fresh_out()
    with pytest.raises(TypeError, match="p must be a real number"):
        fastdrop.dropout(X, "0.5", rng=0, out=out)
    check_untouched(out)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64,
                                   np.longdouble])
def test_non_floating_dtype_names_it(dtype):
    x = np.ones((4, 5), dtype=dtype)
    out = fresh_out()
    with pytest.raises(TypeError, match=f"dtype {np.dtype(dtype)}"):
        fastdrop.dropout(x, 0.5, rng=0, out=out)
    check_untouched(out)
    with pytest.raises(TypeError, match=f"dtype {np.dtype(dtype)}"):
        fastdrop.dropout_backward(x, 0.5, state=0)


def test_out_wrong_shape():
    out = fresh_out((5, 4))
    with pytest.raises(ValueError, match=r"out has shape \(5, 4\), expected \(4, 5\)"):
        fastdrop.dropout(X, 0.5, rng=0, out=out)
    check_untouched(out)


def test_out_wrong_dtype():
    out = np.full((4, 5), SENTINEL, dtype=np.float64)
    with pytest.raises(TypeError, match="out has dtype float64, expected float32"):
        fastdrop.dropout(X, 0.5, rng=0, out=out)
    check_untouched(out)


def test_out_not_an_array():
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        fastdrop.dropout(X, 0.5, rng=0, out=[0.0] * 20)


def test_out_read_only():
    out = fresh_out()
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        fastdrop.dropout(X, 0.5, rng=0, out=out)
    check_untouched(out)


def test_out_partly_overlapping():
    buf = np.full(30, SENTINEL, dtype=np.float32)
    x = buf[:20]
    out = buf[5:25]
    before = buf.copy()
    with pytest.raises(ValueError, match="out partly overlaps x"):
        fastdrop.dropout(x, 0.5, rng=0, out=out)
    np.testing.assert_array_equal(buf, before)
    # same memory, different strides (a transposed alias) is also partial overlap
    sq = np.full((4, 4), SENTINEL, np.float32)
    with pytest.raises(ValueError, match="partly overlaps"):
        fastdrop.dropout(sq, 0.5, rng=0, out=sq.T)
    check_untouched(sq)


def test_out_identical_is_in_place():
    x = np.ones(16, np.float32)
    assert fastdrop.dropout(x, 0.5, rng=0, out=x) is x


@pytest.mark.parametrize("noise,msg", [((1,), "same number of axes"),
                                       ((4, 2), "not broadcastable"),
                                       ((3, 1), "not broadcastable"),
                                       ((1, 5, 1), "same number of axes")])
def test_noise_shape_not_broadcastable(noise, msg):
    out = fresh_out()
    g = fastdrop.Generator(1)
    with pytest.raises(ValueError, match=msg):
        fastdrop.dropout(X, 0.5, rng=g, noise_shape=noise, out=out)
    check_untouched(out)
    assert g.offset == 0


def test_bool_mask_wrong_shape():
    out = fresh_out()
    with pytest.raises(ValueError, match=r"mask has shape \(4, 4\)"):
        fastdrop.apply_mask(X, np.ones((4, 4), bool), 0.5, out=out)
    check_untouched(out)
    with pytest.raises(ValueError, match=r"mask has shape \(20,\)"):
        fastdrop.apply_mask(X, np.ones(20, bool), 0.5, out=out)
    check_untouched(out)


def test_packed_mask_wrong_length():
    out = fresh_out()
    with pytest.raises(ValueError, match="packed mask has 2 bytes, expected 3"):
        fastdrop.apply_mask(X, np.zeros(2, np.uint8), 0.5, out=out)
    check_untouched(out)
    with pytest.raises(ValueError, match="packed mask has 3 bytes, expected 1"):
        fastdrop.dropout_backward(X, 0.5, mask=np.zeros(3, np.uint8), noise_shape=(1, 5),
                                  out=out)
    check_untouched(out)
    with pytest.raises(ValueError, match="packed mask has 1 bytes, expected 2"):
        fastdrop.unpack_mask(np.zeros(1, np.uint8), (3, 3))


def test_mask_wrong_dtype():
    out = fresh_out()
    with pytest.raises(TypeError, match="mask must be a bool array"):
        fastdrop.apply_mask(X, np.ones((4, 5), np.float32), 0.5, out=out)
    check_untouched(out)


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70])
def test_seed_outside_uint64(seed):
    out = fresh_out()
    with pytest.raises(ValueError, match=r"must be in \[0, 2\*\*64\)"):
        fastdrop.dropout(X, 0.5, rng=seed, out=out)
    check_untouched(out)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        fastdrop.Generator(seed)
    with pytest.raises(ValueError, match=r"must be in \[0, 2\*\*64\)"):
        fastdrop.dropout_backward(X, 0.5, state=seed, out=out)
    check_untouched(out)


def test_bad_rng_type():
    out = fresh_out()
    with pytest.raises(TypeError, match="rng must be None, an int seed"):
        fastdrop.dropout(X, 0.5, rng=1.5, out=out)
    check_untouched(out)


def test_offset_overflow():
    out = fresh_out()
    g = fastdrop.Generator(3, offset=2**64 - 16)
    with pytest.raises(ValueError, match="offset overflow"):
        fastdrop.dropout(X, 0.5, rng=g, out=out)  # 20 elements > 16 left
    check_untouched(out)
    assert g.offset == 2**64 - 16
    # exactly the remaining positions is fine
    y = fastdrop.dropout(np.ones(16, np.float32), 0.5, rng=g)
    assert y.shape == (16,)
    with pytest.raises(ValueError, match="offset overflow"):
        fastdrop.dropout_backward(X, 0.5, state=(3, 2**64 - 8), out=out)
    check_untouched(out)
    with pytest.raises(ValueError, match=r"offset must be in \[0, 2\*\*64\]"):
        fastdrop.Generator(3, offset=2**64 + 1)
    # the end of the stream is a valid state: it round-trips, and only empty
    # draws can follow
    assert g.offset == 2**64
    g.state = g.state
    assert fastdrop.dropout(np.ones(0, np.float32), 0.5, rng=g).shape == (0,)
    with pytest.raises(ValueError, match="offset overflow"):
        fastdrop.dropout(np.ones(1, np.float32), 0.5, rng=g)


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(backend="fast"), ValueError, "unknown backend 'fast'"),
    (dict(backend="cuda"), TypeError, "needs a GPU array"),
    (dict(mode="scaled"), ValueError, "mode must be 'inverted' or 'classic'"),
    (dict(return_mask="bits"), ValueError, "return_mask must be"),
])
def test_bad_option(kwargs, exc, msg):
    out = fresh_out()
    with pytest.raises(exc, match=msg):
        fastdrop.dropout(X, 0.5, rng=0, out=out, **kwargs)
    check_untouched(out)


def test_backward_needs_mask_or_state():
    out = fresh_out()
    with pytest.raises(ValueError, match="needs the forward's mask"):
        fastdrop.dropout_backward(X, 0.5, out=out)
    with pytest.raises(ValueError, match="either mask or state"):
        fastdrop.dropout_backward(X, 0.5, mask=np.ones((4, 5), bool), state=1, out=out)
    with pytest.raises(TypeError, match="not the Generator itself"):
        fastdrop.dropout_backward(X, 0.5, state=fastdrop.Generator(1), out=out)
    check_untouched(out)


def test_bad_shapes_for_mask():
    with pytest.raises(ValueError, match="negative"):
        fastdrop.dropout_mask((3, -1), 0.5)
    with pytest.raises(TypeError, match="shape must be an int or a tuple"):
        fastdrop.dropout_mask("abc", 0.5)


def test_bad_state_dict():
    g = fastdrop.Generator(1)
    with pytest.raises(ValueError, match="missing the key 'offset'"):
        g.state = {"seed": 3}
    with pytest.raises(TypeError, match="state must be a dict"):
        g.state = (1, 2)
    assert g.seed == 1


def test_threads_validation():
    with pytest.raises(ValueError, match="number of threads must be >= 1"):
        fastdrop.set_num_threads(0)


def test_huge_p_is_a_value_error():
    out = fresh_out()
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        fastdrop.dropout(X, 10**400, rng=0, out=out)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        fastdrop.dropout(X, 10**400, rng=0)
    check_untouched(out)


def test_non_native_byte_order_names_the_problem():
    x = np.ones((4, 5), dtype=">f4")
    out = fresh_out()
    with pytest.raises(TypeError, match="non-native byte order"):
        fastdrop.dropout(x, 0.5, rng=0, out=out)
    check_untouched(out)


def test_rng_is_checked_in_evaluation_mode_too():
    out = fresh_out()
    with pytest.raises(TypeError, match="rng must be None, an int seed"):
        fastdrop.dropout(X, 0.5, training=False, rng=object(), out=out)
    with pytest.raises(ValueError, match=r"must be in \[0, 2\*\*64\)"):
        fastdrop.dropout(X, 0.5, training=False, rng=-1, out=out)
    check_untouched(out)


def test_in_place_through_a_view_with_extent_one_axes():
    a = np.ones(4, np.float32)
    y = fastdrop.dropout(a.reshape(4, 1), 0.5, rng=0, out=a[:, None])
    np.testing.assert_array_equal(a, fastdrop.dropout(np.ones(4, np.float32), 0.5, rng=0))
    assert np.shares_memory(y, a)
