"""fastdrop.jax: the XLA custom calls against the NumPy API, bit for bit;
keys, jit, grad, vmap, checkpoint, errors, devices, threads.

Skipped as a whole without jax.  The protocol of the C handlers (metadata
query, stages, decoding errors) is tested without jax in test_xla_ffi.py.
"""

import subprocess
import sys
import types

import numpy as np
import pytest
from numpy.testing import assert_array_equal

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import fastdrop  # noqa: E402
import fastdrop.jax as fdj  # noqa: E402
from conftest import bits  # noqa: E402
from fastdrop.adapters import jax as adapter  # noqa: E402

CHUNK = fastdrop._config.CHUNK
ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.float16, np.float32, np.float64, BF16]
#: the smallest positive subnormal of each dtype (XLA's CPU threads flush
#: subnormals to zero; the handlers must not)
TINY = {np.dtype(np.float16): 2.0 ** -24, np.dtype(np.float32): 2.0 ** -149,
        np.dtype(np.float64): 5e-324, BF16: 2.0 ** -133}


def _x(shape, dtype, seed=0):
    """Normals with NaN, +-inf, +-0.0, subnormals and large values sprinkled in."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    v = rng.standard_normal(n) * 3
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, TINY[dtype], -3 * TINY[dtype],
                         60000.0])
    if n:
        pos = rng.permutation(n)[:max(1, n // 5)]
        v[pos] = specials[np.arange(pos.size) % specials.size]
    return v.astype(dtype).reshape(shape)


def _x64(dtype):
    """jax.enable_x64 for float64 (and nothing otherwise)."""
    return jax.enable_x64(np.dtype(dtype) == np.float64)


def _j(a):
    """A NumPy array as a JAX array of the same dtype (on the CPU)."""
    out = jnp.asarray(a)
    assert out.dtype == a.dtype
    return out


def _same(y, ref):
    """Equal dtype, shape and bits (bool masks: values)."""
    y, ref = np.asarray(y), np.asarray(ref)
    assert y.dtype == ref.dtype and y.shape == ref.shape, (y.dtype, ref.dtype, y.shape, ref.shape)
    if ref.dtype == np.bool_:
        assert_array_equal(y, ref)
    else:
        assert_array_equal(bits(y), bits(ref))


SHAPES = [(), (0,), (1,), (37,), (3, 5), (2, 3, 4), (4, 0, 2), (2 * CHUNK + 5,)]
PS = [0.0, 2.0 ** -33, 3 * 2.0 ** -33, 0.1, 0.5, 0.999, 1.0]


# ----------------------------------------------------------------------------
# the same bits as the NumPy API
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dropout_equals_numpy(dtype, shape):
    with _x64(dtype):
        x = _x(shape, dtype)
        xj = _j(x)
        for p in PS:
            for mode in ("inverted", "classic"):
                for training in (True, False):
                    y = fdj.dropout(xj, p, 12345, mode=mode, training=training)
                    ref = fastdrop.dropout(x, p, rng=12345, mode=mode, training=training)
                    _same(y, ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,noise_shape", [
    ((4, 6), (1, 6)), ((4, 6), (4, 1)), ((4, 6), (1, 1)), ((2, 3, 5), (2, None, 1)),
    ((3, 1, 4), (1, 1, 4)), ((CHUNK + 3, 2), (None, 1)), ((5,), (5,))], ids=str)
def test_noise_shapes(dtype, shape, noise_shape):
    with _x64(dtype):
        x = _x(shape, dtype, seed=1)
        for p in (0.3, 0.5):
            _same(fdj.dropout(_j(x), p, 7, noise_shape=noise_shape),
                  fastdrop.dropout(x, p, rng=7, noise_shape=noise_shape))
            _same(fdj.dropout_mask(noise_shape and tuple(
                      s if m is None else m for s, m in zip(shape, noise_shape)), p, 7),
                  fastdrop.dropout(np.ones(shape, np.float32), p, rng=7,
                                   noise_shape=noise_shape, return_mask=True)[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,noise_shape", [
    ((3, 2 * CHUNK // 24 + 5, 24), (3, 1, 24)), ((2, 40, 7, 7), (2, 40, 1, 1)),
    ((2, 3 * CHUNK // 49, 49), (2, 1, 49))], ids=str)
def test_short_rows_in_the_handlers(dtype, shape, noise_shape):
    """The handlers walk short rows as the Cython backend does (blocks of
    rows per task: one decision per row; rows sharing their mask positions,
    a mask broadcast along a middle axis, one kernel call each), over more
    than one task's block: every op of the family and a stored broadcast
    mask, from an offset inside a Philox block, equal to NumPy's."""
    with _x64(dtype):
        x = _x(shape, dtype, seed=len(shape))
        xj = _j(x)
        _same(fdj.dropout(xj, 0.3, 7, offset=5, noise_shape=noise_shape),
              fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(7, 5), noise_shape=noise_shape))
        _same(fdj.alpha_dropout(xj, 0.3, 7, offset=3, noise_shape=noise_shape),
              fastdrop.alpha_dropout(x, 0.3, rng=fastdrop.Generator(7, 3),
                                     noise_shape=noise_shape))
        _same(fdj.gaussian_noise(xj, 0.5, 7, offset=1, noise_shape=noise_shape),
              fastdrop.gaussian_noise(x, 0.5, rng=fastdrop.Generator(7, 1),
                                      noise_shape=noise_shape))
        keep = fastdrop.dropout_mask(noise_shape, 0.4, rng=2)
        _same(fdj.apply_mask(xj, jnp.asarray(keep), 0.4),
              fastdrop.apply_mask(x, keep, 0.4))


def _draws_first(f, *args):
    """The ``draw`` attribute of every fastdrop_select in ``f``'s lowering."""
    text = jax.jit(f).lower(*args).as_text()
    return [("draw = true" in ln) for ln in text.splitlines() if "fastdrop_select" in ln]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_repeated_positions_drawn_first_in_the_handler(dtype):
    """A mask whose positions repeat along x (channels-last spatial dropout)
    is drawn once per key by the handler, then applied (the plan's
    span_to_draw decides; small arrays and channels-first do not): the
    same bits as NumPy's, for the forward from an offset, classic mode,
    alpha dropout, the gradient, vmap over x with one key (the batch axis
    repeats the mask too) and vmap over keys (a drawn mask per key)."""
    shape, ns = (3, 5, 7, 40), (3, 1, 1, 40)
    with _x64(dtype):
        x = _x(shape, dtype, seed=3)
        xj = _j(x)
        assert _draws_first(lambda x: fdj.dropout(x, 0.3, 7, noise_shape=ns), xj) == [True]
        assert _draws_first(lambda x: fdj.dropout(x[:1, :2, :2], 0.3, 7,
                                                  noise_shape=(1, 1, 1, 40)), xj) == [False]
        assert _draws_first(lambda x: fdj.dropout(x, 0.3, 7, noise_shape=(3, 5, 1, 1)),
                            xj) == [False]
        _same(fdj.dropout(xj, 0.3, 7, offset=5, noise_shape=ns),
              fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(7, 5), noise_shape=ns))
        _same(fdj.dropout(xj, 0.3, 7, mode="classic", noise_shape=ns),
              fastdrop.dropout(x, 0.3, rng=7, mode="classic", noise_shape=ns))
        _same(fdj.alpha_dropout(xj, 0.3, 7, offset=3, noise_shape=ns),
              fastdrop.alpha_dropout(x, 0.3, rng=fastdrop.Generator(7, 3), noise_shape=ns))
        g = np.ones(shape, dtype)
        _same(jax.grad(lambda x: (fdj.dropout(x, 0.3, 7, noise_shape=ns) * _j(g))
                       .astype(jnp.float32).sum())(xj),
              fastdrop.dropout_backward(g, 0.3, state=7, noise_shape=ns))
        xs = np.stack([x, x[::-1]])
        y = jax.vmap(lambda x: fdj.dropout(x, 0.3, 7, noise_shape=ns))(_j(xs))
        _same(y, np.stack([fastdrop.dropout(v, 0.3, rng=7, noise_shape=ns) for v in xs]))
        keys = jnp.arange(4, dtype=jnp.uint32) * 3 + 1
        y = jax.vmap(lambda k: fdj.dropout(xj, 0.3, k, noise_shape=ns))(keys)
        _same(y, np.stack([fastdrop.dropout(x, 0.3, rng=int(k), noise_shape=ns)
                           for k in np.asarray(keys)]))
        y = jax.vmap(lambda v, k: fdj.dropout(v, 0.3, k, noise_shape=ns))(_j(xs), keys[:2])
        _same(y, np.stack([fastdrop.dropout(v, 0.3, rng=int(k), noise_shape=ns)
                           for v, k in zip(xs, np.asarray(keys[:2]))]))


@pytest.mark.parametrize("offset", [0, 1, 5, 8, 2 ** 35 - 3, 2 ** 64 - 40])
def test_offsets(offset):
    x = _x((5, 8), np.float32, seed=2)
    seed = 0x9E3779B97F4A7C15
    y = fdj.dropout(_j(x), 0.4, seed, offset=offset)
    _same(y, fastdrop.dropout(x, 0.4, rng=fastdrop.Generator(seed, offset)))
    # a traced offset (x64: the full 64 bits) gives the same
    with jax.enable_x64(True):
        f = jax.jit(lambda x, o: fdj.dropout(x, 0.4, seed, offset=o))
        _same(f(_j(x), jnp.uint64(offset)), np.asarray(y))
    if offset < 2 ** 32:
        f32 = jax.jit(lambda x, o: fdj.dropout(x, 0.4, seed, offset=o))
        _same(f32(_j(x), jnp.uint32(offset)), np.asarray(y))
    # the mask of a shifted offset is the shifted mask (docs/spec.md §1)
    m = fdj.dropout_mask(41, 0.4, seed, offset=offset - 1 if offset else 0)
    m0 = fastdrop.dropout_mask(41, 0.4, rng=fastdrop.Generator(seed, max(offset - 1, 0)))
    _same(m, m0)


def test_golden_values():
    """docs/spec.md §1 and §4's golden values through the custom calls."""
    keep = fdj.dropout_mask(32, 0.5, 0)
    assert "".join(str(int(b)) for b in np.asarray(keep)) == "10111111110001101000000011000100"
    keep = fdj.dropout_mask(27, 0.1, 42, offset=5)
    assert "".join(str(int(b)) for b in np.asarray(keep)) == "011111111010111111101011111"
    xb = np.array([0x3F80, 0x3FC1, 0x4049, 0xC030, 0x8000, 0x7F7F, 0x7F81, 0xFFC3],
                  np.uint16).view(BF16)
    y = fdj.dropout(_j(xb), 0.1, 1)
    assert [f"{v:04X}" for v in bits(np.asarray(y))] == \
        "0000 3FD6 0000 C044 8000 7F80 7FC1 FFC3".split()


def test_jit_matches_eager():
    x = _x((6, 7), np.float32, seed=3)
    f = jax.jit(fdj.dropout, static_argnames=("training", "mode", "noise_shape"),
                static_argnums=1)
    for mode in ("inverted", "classic"):
        _same(f(_j(x), 0.3, jax.random.key(11), mode=mode),
              fastdrop.dropout(x, 0.3, rng=11, mode=mode))
    _same(f(_j(x), 0.3, jax.random.key(11), training=False, mode="classic"),
          fastdrop.dropout(x, 0.3, rng=11, training=False, mode="classic"))


def test_threads_do_not_change_results():
    x = _x((3 * CHUNK + 7,), np.float32, seed=4)
    ref = fastdrop.dropout(x, 0.5, rng=3)
    old = fastdrop.set_num_threads(1)
    try:
        y1 = fdj.dropout(_j(x), 0.5, 3)
        fastdrop.set_num_threads(2)
        y2 = fdj.dropout(_j(x), 0.5, 3)
        y3 = fdj.gaussian_noise(_j(x), 0.5, 3)
    finally:
        fastdrop.set_num_threads(old)
    _same(y1, ref)
    _same(y2, ref)
    _same(y3, fastdrop.gaussian_noise(x, 0.5, rng=3))


# ----------------------------------------------------------------------------
# keys
# ----------------------------------------------------------------------------

def test_key_mapping():
    x = _x((20,), np.float32, seed=5)
    for s in (0, 1, 42, 2 ** 32 - 1):
        ref = fastdrop.dropout(x, 0.5, rng=s)
        _same(fdj.dropout(_j(x), 0.5, s), ref)
        _same(fdj.dropout(_j(x), 0.5, np.uint32(s)), ref)
        _same(fdj.dropout(_j(x), 0.5, jax.random.key(s)), ref)
        _same(fdj.dropout(_j(x), 0.5, jax.random.PRNGKey(s)), ref)
        _same(fdj.dropout(_j(x), 0.5, jnp.asarray(s, jnp.uint32)), ref)
    # key data (k0, k1) -> seed (k0 << 32) | k1
    data = np.array([0x01234567, 0x89ABCDEF], np.uint32)
    seed = (0x01234567 << 32) | 0x89ABCDEF
    ref = fastdrop.dropout(x, 0.5, rng=seed)
    _same(fdj.dropout(_j(x), 0.5, jax.random.wrap_key_data(data)), ref)
    _same(fdj.dropout(_j(x), 0.5, data), ref)  # a legacy uint32[2] key
    _same(fdj.dropout(_j(x), 0.5, seed), ref)
    assert fdj.key_words(jax.random.wrap_key_data(data), 2 ** 40 + 9).tolist() == \
        [0x89ABCDEF, 0x01234567, 9, 256]
    # a split key
    k = jax.random.split(jax.random.key(0))[1]
    kd = np.asarray(jax.random.key_data(k)).astype(np.uint64)
    _same(fdj.dropout(_j(x), 0.5, k),
          fastdrop.dropout(x, 0.5, rng=int((kd[0] << np.uint64(32)) | kd[1])))
    # traced integer seeds: their bits
    f = jax.jit(lambda x, s: fdj.dropout(x, 0.5, s))
    _same(f(_j(x), jnp.int32(-1)), fastdrop.dropout(x, 0.5, rng=2 ** 32 - 1))
    with jax.enable_x64(True):
        _same(f(_j(x), jnp.uint64(2 ** 64 - 5)), fastdrop.dropout(x, 0.5, rng=2 ** 64 - 5))
        _same(f(_j(x), jnp.int64(-5)), fastdrop.dropout(x, 0.5, rng=2 ** 64 - 5))
    _same(fdj.dropout(_j(x), 0.5, np.array(-1, np.int64)), fastdrop.dropout(x, 0.5, rng=2 ** 64 - 1))


@pytest.mark.parametrize("key,exc", [
    (jax.random.key(1, impl="rbg"), TypeError),
    (jax.random.split(jax.random.key(1), 2), TypeError),     # several keys
    (np.zeros(3, np.uint32), TypeError),
    (np.zeros((), np.float32), TypeError),
    ([0, 1], TypeError),
    (True, TypeError),
    (1.0, TypeError),
    (None, TypeError),
    (-1, ValueError),
    (2 ** 64, ValueError),
], ids=["rbg", "split", "u32x3", "float-array", "list", "bool", "float", "None", "neg", "big"])
def test_bad_keys(key, exc):
    with pytest.raises(exc, match="key"):
        fdj.dropout(jnp.ones(4), 0.5, key)
    with pytest.raises(exc, match="key"):  # evaluation checks the key too
        fdj.dropout(jnp.ones(4), 0.5, key, training=False)


def test_bad_offsets():
    with pytest.raises(ValueError, match="2\\*\\*64"):
        fdj.dropout(jnp.ones(4), 0.5, 0, offset=2 ** 64 - 3)
    with pytest.raises(ValueError, match="offset"):
        fdj.dropout(jnp.ones(4), 0.5, 0, offset=-1)
    with pytest.raises(TypeError, match="offset"):
        fdj.dropout(jnp.ones(4), 0.5, 0, offset=1.5)
    with pytest.raises(TypeError, match="offset"):
        fdj.dropout(jnp.ones(4), 0.5, 0, offset=True)
    # the end of the stream: empty draws are valid there, nothing else
    assert fdj.dropout(jnp.ones(0), 0.5, 0, offset=2 ** 64).shape == (0,)
    _same(fdj.dropout(jnp.ones(4), 0.5, 0, offset=2 ** 64 - 4),
          fastdrop.dropout(np.ones(4, np.float32), 0.5, rng=fastdrop.Generator(0, 2 ** 64 - 4)))
    # a traced offset past the end: the handler refuses it (nothing computed)
    with jax.enable_x64(True):
        f = jax.jit(lambda x, o: fdj.dropout(x, 0.5, 0, offset=o))
        with pytest.raises(Exception, match="stream ends at 2\\*\\*64"):
            f(jnp.ones(4, jnp.float32), jnp.uint64(2 ** 64 - 3)).block_until_ready()
        f(jnp.ones(4, jnp.float32), jnp.uint64(2 ** 64 - 4)).block_until_ready()


# ----------------------------------------------------------------------------
# the family, masks
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(8,), (3, 4, 5), (2 * CHUNK + 1,), (0, 3)], ids=str)
def test_family_equals_numpy(dtype, shape):
    with _x64(dtype):
        x = _x(shape, dtype, seed=6)
        xj = _j(x)
        for training in (True, False):
            for p in (0.0, 0.2, 0.5, 1.0):
                _same(fdj.alpha_dropout(xj, p, 9, training=training),
                      fastdrop.alpha_dropout(x, p, rng=9, training=training))
                if x.ndim >= 2:
                    _same(fdj.feature_alpha_dropout(xj, p, 9, training=training),
                          fastdrop.feature_alpha_dropout(x, p, rng=9, training=training))
                for sbk in (True, False):
                    _same(fdj.drop_path(xj, p, 9, scale_by_keep=sbk, training=training),
                          fastdrop.drop_path(x, p, rng=9, scale_by_keep=sbk,
                                             training=training))
                if p < 1.0:
                    _same(fdj.gaussian_dropout(xj, p, 9, training=training),
                          fastdrop.gaussian_dropout(x, p, rng=9, training=training))
            for stddev in (0.0, 0.1, 2.5):
                _same(fdj.gaussian_noise(xj, stddev, 9, training=training),
                      fastdrop.gaussian_noise(x, stddev, rng=9, training=training))
        ns = (1,) * (x.ndim - 1) + (x.shape[-1],) if x.ndim else None
        _same(fdj.gaussian_noise(xj, 0.5, 9, offset=3, noise_shape=ns),
              fastdrop.gaussian_noise(x, 0.5, rng=fastdrop.Generator(9, 3), noise_shape=ns))
        _same(fdj.alpha_dropout(xj, 0.3, 9, offset=11, noise_shape=ns),
              fastdrop.alpha_dropout(x, 0.3, rng=fastdrop.Generator(9, 11), noise_shape=ns))


@pytest.mark.parametrize("shape", [(), 0, 1, 13, (3, 7), (2, 2, 2), 3 * CHUNK + 3], ids=str)
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
def test_dropout_mask(shape, p):
    m = fdj.dropout_mask(shape, p, 77, offset=3)
    ref = fastdrop.dropout_mask(shape, p, rng=fastdrop.Generator(77, 3))
    assert m.dtype == jnp.bool_
    _same(m, ref)
    # exactly the mask dropout applies
    y = fdj.dropout(jnp.ones(ref.shape), p, 77, offset=3)
    if p < 1:
        assert_array_equal(np.asarray(y) != 0, ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_apply_mask(dtype):
    with _x64(dtype):
        x = _x((4, 6), dtype, seed=8)
        rng = np.random.default_rng(0)
        for mshape in [(4, 6), (1, 6), (4, 1), (1, 1)]:
            mask = rng.random(mshape) < 0.5
            for p in (0.0, 0.3, 1.0):
                for mode in ("inverted", "classic"):
                    ref = fastdrop.apply_mask(x, mask, p, mode=mode)
                    _same(fdj.apply_mask(_j(x), jnp.asarray(mask), p, mode=mode), ref)
                    _same(fdj.apply_mask(_j(x), mask, p, mode=mode), ref)
        keep = fastdrop.dropout_mask((4, 6), 0.5, rng=1)
        packed = np.packbits(keep.reshape(-1), bitorder="little")
        _same(fdj.apply_mask(_j(x), packed, 0.5), fastdrop.apply_mask(x, packed, 0.5))
        packed = np.packbits(keep[:1].reshape(-1), bitorder="little")
        _same(fdj.apply_mask(_j(x), jnp.asarray(packed), 0.5, noise_shape=(1, 6)),
              fastdrop.apply_mask(x, packed, 0.5, noise_shape=(1, 6)))


# ----------------------------------------------------------------------------
# jit: a new key, seed or offset never recompiles
# ----------------------------------------------------------------------------

def test_no_recompilation_per_key():
    traces = []

    def f(x, k):
        traces.append(1)
        return fdj.dropout(x, 0.5, k)

    jf = jax.jit(f)
    x = _x((33,), np.float32)
    for s in range(6):
        _same(jf(_j(x), jax.random.key(s)), fastdrop.dropout(x, 0.5, rng=s))
    assert len(traces) == 1 and jf._cache_size() == 1
    js = jax.jit(lambda x, s, o: fdj.gaussian_noise(x, 0.5, s, offset=o))
    for s in range(4):
        _same(js(_j(x), jnp.uint32(s), jnp.uint32(s + 1)),
              fastdrop.gaussian_noise(x, 0.5, rng=fastdrop.Generator(s, s + 1)))
    assert js._cache_size() == 1
    # the key is an operand of the custom call, p's threshold an attribute
    text = jf.lower(_j(x), jax.random.key(0)).as_text()
    assert "fastdrop_select" in text and "threshold" in text


# ----------------------------------------------------------------------------
# gradients: the select regenerated from the key
# ----------------------------------------------------------------------------

def _vjp(f, x, g):
    y, back = jax.vjp(f, x)
    return y, back(g)[0]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gradients_equal_numpy_backward(dtype):
    with _x64(dtype):
        x = _x((5, 9), dtype, seed=9)
        g = _x((5, 9), dtype, seed=10)
        xj, gj = _j(x), _j(g)
        st = (21, 4)
        for mode in ("inverted", "classic"):
            for ns in (None, (1, 9)):
                _, gx = _vjp(lambda x: fdj.dropout(x, 0.3, 21, offset=4, mode=mode,
                                                   noise_shape=ns), xj, gj)
                _same(gx, fastdrop.dropout_backward(g, 0.3, state=st, mode=mode,
                                                    noise_shape=ns))
            _, gx = _vjp(lambda x: fdj.dropout(x, 0.3, 21, mode=mode, training=False), xj, gj)
            _same(gx, fastdrop.dropout_backward(g, 0.3, training=False, mode=mode))
        _, gx = _vjp(lambda x: fdj.alpha_dropout(x, 0.3, 21, offset=4), xj, gj)
        _same(gx, fastdrop.alpha_dropout_backward(g, 0.3, state=st))
        _, gx = _vjp(lambda x: fdj.drop_path(x, 0.3, 21, offset=4), xj, gj)
        _same(gx, fastdrop.drop_path_backward(g, 0.3, state=st))
        _, gx = _vjp(lambda x: fdj.gaussian_dropout(x, 0.3, 21, offset=4), xj, gj)
        _same(gx, fastdrop.gaussian_dropout_backward(g, 0.3, state=st))
        _, gx = _vjp(lambda x: fdj.gaussian_noise(x, 0.3, 21, offset=4), xj, gj)
        _same(gx, g)
        mask = fastdrop.dropout_mask((1, 9), 0.5, rng=3)
        _, gx = _vjp(lambda x: fdj.apply_mask(x, mask, 0.3), xj, gj)
        _same(gx, fastdrop.apply_mask(g, mask, 0.3))
        for p in (0.0, 1.0):
            _, gx = _vjp(lambda x: fdj.dropout(x, p, 21), xj, gj)
            _same(gx, fastdrop.dropout_backward(g, p, state=21))


def test_grad_is_the_regenerated_select():
    """grad of sum(w * dropout(x)) is where(keep, w * scale, +0.0), keep the
    mask regenerated from the key (nothing else was saved)."""
    x = jnp.asarray(_x((1000,), np.float32, seed=11))
    w = jnp.asarray(np.random.default_rng(1).standard_normal(1000).astype(np.float32))
    key = jax.random.key(5)
    scale = np.float32(1 / 0.7)
    gx = jax.jit(jax.grad(lambda x, k: (w * fdj.dropout(x, 0.3, k)).sum()))(x, key)
    keep = fdj.dropout_mask(1000, 0.3, key)
    _same(gx, np.where(np.asarray(keep), np.asarray(w) * scale, np.float32(0)))
    # the residuals: the key's four words, not a mask or x
    jaxpr = jax.make_jaxpr(lambda x: jax.vjp(lambda x: fdj.dropout(x, 0.3, key), x)[1])(x)
    res = [v.aval for v in jaxpr.jaxpr.outvars]
    assert all(a.size <= 4 for a in res), res


def test_higher_order_gradients():
    x = jnp.asarray(_x((50,), np.float32, seed=12))
    keep = np.asarray(fdj.dropout_mask(50, 0.5, 3))
    f = lambda x: (fdj.dropout(x, 0.5, 3) ** 2).sum()  # noqa: E731
    gg = jax.grad(lambda x: jax.grad(f)(x).sum())(x)
    _same(gg, np.where(keep, np.float32(8), np.float32(0)))
    with pytest.raises(Exception):  # forward mode: custom_vjp functions have none
        jax.jvp(lambda x: fdj.dropout(x, 0.5, 3), (x,), (x,))


def test_checkpoint():
    """jax.checkpoint recomputes the forward in the backward pass from the
    same key: the same values and gradients (multiplications only around
    the custom calls, so XLA's fusion cannot change a rounding)."""
    x = jnp.asarray(_x((4, 25), np.float32, seed=13))
    w = jnp.asarray(np.random.default_rng(2).standard_normal((4, 25)).astype(np.float32))
    key = jax.random.key(8)

    def block(x):
        return fdj.dropout(x, 0.4, key) * fdj.gaussian_dropout(x, 0.2, key, offset=100)

    def loss(f):  # its gradient: products, and one sum of two custom calls' results
        return lambda x: (w * f(x) ** 2).sum()

    y = np.asarray(block(x))
    g_plain = np.asarray(jax.grad(loss(block))(x))
    g_jit = np.asarray(jax.jit(jax.grad(loss(block)))(x))
    for ck in (jax.checkpoint(block),
               jax.checkpoint(block, policy=jax.checkpoint_policies.nothing_saveable)):
        _same(ck(x), y)
        _same(jax.grad(loss(ck))(x), g_plain)
        _same(jax.jit(jax.grad(loss(ck)))(x), g_jit)
    # the recomputed forward is the forward: the masks come from the key
    xn = np.asarray(x)
    with np.errstate(invalid="ignore"):  # inf * 0
        _same(y, fastdrop.dropout(xn, 0.4, rng=8)
              * fastdrop.gaussian_dropout(xn, 0.2, rng=fastdrop.Generator(8, 100)))


# ----------------------------------------------------------------------------
# vmap: a mask depends on the key alone
# ----------------------------------------------------------------------------

def test_vmap_shared_key_same_mask():
    xs = _x((3, 10), np.float32, seed=14)
    key = jax.random.key(7)
    y = jax.vmap(lambda x: fdj.dropout(x, 0.5, key))(_j(xs))
    for b in range(3):
        _same(y[b], fastdrop.dropout(xs[b], 0.5, rng=7))
    # in_axes=1
    y = jax.vmap(lambda x: fdj.dropout(x, 0.5, key), in_axes=1, out_axes=1)(_j(xs.T.copy()))
    for b in range(3):
        _same(y[:, b], fastdrop.dropout(xs[b], 0.5, rng=7))


def test_vmap_batched_keys_and_offsets():
    xs = _x((4, 12), np.float32, seed=15)
    keys = jax.random.split(jax.random.key(0), 4)
    seeds = [int((d[0].astype(np.uint64) << np.uint64(32)) | d[1])
             for d in np.asarray(jax.random.key_data(keys))]
    y = jax.vmap(lambda x, k: fdj.dropout(x, 0.5, k))(_j(xs), keys)
    for b in range(4):
        _same(y[b], fastdrop.dropout(xs[b], 0.5, rng=seeds[b]))
    # keys batched, x not
    y = jax.vmap(lambda k: fdj.gaussian_dropout(_j(xs[0]), 0.5, k))(keys)
    for b in range(4):
        _same(y[b], fastdrop.gaussian_dropout(xs[0], 0.5, rng=seeds[b]))
    # batched offsets: the stacked array's mask
    y = jax.vmap(lambda x, o: fdj.dropout(x, 0.5, 3, offset=o))(_j(xs), jnp.arange(4) * 12)
    _same(y, fastdrop.dropout(xs, 0.5, rng=3))
    # masks
    m = jax.vmap(lambda k: fdj.dropout_mask((2, 5), 0.5, k))(keys)
    for b in range(4):
        _same(m[b], fastdrop.dropout_mask((2, 5), 0.5, rng=seeds[b]))


def test_vmap_nested_mixed():
    xs = _x((2, 3, 5), np.float32, seed=16)
    keys = jax.random.split(jax.random.key(1), 3)
    seeds = [int((d[0].astype(np.uint64) << np.uint64(32)) | d[1])
             for d in np.asarray(jax.random.key_data(keys))]
    # outer axis: key shared; inner axis: keys batched
    y = jax.vmap(lambda xx: jax.vmap(lambda x, k: fdj.dropout(x, 0.5, k))(xx, keys))(_j(xs))
    for i in range(2):
        for j in range(3):
            _same(y[i, j], fastdrop.dropout(xs[i, j], 0.5, rng=seeds[j]))
    # outer batched keys over an inner shared one
    y = jax.vmap(lambda xx, k: jax.vmap(lambda x: fdj.alpha_dropout(x, 0.5, k))(xx),
                 in_axes=(1, 0))(_j(xs), keys)
    for j in range(3):
        for i in range(2):
            _same(y[j, i], fastdrop.alpha_dropout(xs[i, j], 0.5, rng=seeds[j]))


def test_vmap_and_grad_agree():
    """The backward pass regenerates the forward's masks whatever the
    cotangent's batching: vmap(grad), grad(vmap), jacrev, batched keys."""
    xs = jnp.asarray(_x((3, 10), np.float32, seed=17))
    w = jnp.arange(1.0, 11.0)
    key = jax.random.key(7)
    keep = np.asarray(fdj.dropout_mask(10, 0.5, key))
    want = np.where(keep, 2 * np.asarray(w), 0).astype(np.float32)
    f = lambda x, k: (w * fdj.dropout(x, 0.5, k)).sum()  # noqa: E731
    _same(jax.vmap(jax.grad(f), in_axes=(0, None))(xs, key), np.stack([want] * 3))
    _same(jax.grad(lambda xs: jax.vmap(f, in_axes=(0, None))(xs, key).sum())(xs),
          np.stack([want] * 3))
    J = jax.jacrev(lambda x: fdj.dropout(x, 0.5, key))(xs[0])
    _same(J, np.diag(np.where(keep, np.float32(2), np.float32(0))))
    keys = jax.random.split(key, 3)
    gk = jax.vmap(jax.grad(f))(xs, keys)
    for b in range(3):
        kb = np.asarray(fdj.dropout_mask(10, 0.5, keys[b]))
        _same(gk[b], np.where(kb, 2 * np.asarray(w), 0).astype(np.float32))


def test_vmap_apply_mask_broadcasts():
    xs = _x((3, 2, 4), np.float32, seed=18)
    mask = fastdrop.dropout_mask((2, 4), 0.5, rng=2)
    y = jax.vmap(lambda x: fdj.apply_mask(x, mask, 0.5))(_j(xs))
    _same(y, np.stack([fastdrop.apply_mask(xs[b], mask, 0.5) for b in range(3)]))
    masks = np.stack([fastdrop.dropout_mask((1, 4), 0.5, rng=s) for s in range(3)])
    y = jax.vmap(lambda x, m: fdj.apply_mask(x, m, 0.5))(_j(xs), masks)
    _same(y, np.stack([fastdrop.apply_mask(xs[b], masks[b], 0.5) for b in range(3)]))


# ----------------------------------------------------------------------------
# argument errors
# ----------------------------------------------------------------------------

def test_argument_errors():
    x = jnp.ones((2, 3))
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="p must be in"):
            fdj.dropout(x, p, 0)
        with pytest.raises(ValueError, match="p must be in"):
            fdj.dropout(x, p, 0, training=False)
    for p in ("0.5", True, None):
        with pytest.raises(TypeError, match="p must be"):
            fdj.dropout(x, p, 0)
    with pytest.raises(TypeError, match="p must be a Python float"):
        jax.jit(lambda x, p: fdj.dropout(x, p, 0))(x, 0.5)
    with pytest.raises(TypeError, match="training must be a Python bool"):
        jax.jit(lambda x, t: fdj.dropout(x, 0.5, 0, training=t))(x, True)
    with pytest.raises(TypeError, match="training"):
        fdj.dropout(x, 0.5, 0, training=1)
    with pytest.raises(ValueError, match="mode"):
        fdj.dropout(x, 0.5, 0, mode="alpha")
    with pytest.raises(TypeError, match="int32"):
        fdj.dropout(jnp.ones(3, jnp.int32), 0.5, 0)
    with pytest.raises(TypeError, match="complex64"):
        fdj.dropout(jnp.ones(3, jnp.complex64), 0.5, 0)
    with pytest.raises(TypeError, match="int64"):
        fdj.dropout(np.ones(3, np.int64), 0.5, 0)
    with pytest.raises(ValueError, match="noise_shape"):
        fdj.dropout(x, 0.5, 0, noise_shape=(2, 2))
    with pytest.raises(ValueError, match="noise_shape"):
        fdj.dropout(x, 0.5, 0, noise_shape=(2,))
    with pytest.raises(TypeError, match="noise_shape"):
        fdj.dropout(x, 0.5, 0, noise_shape=(2, 1.0))
    with pytest.raises(ValueError, match="p < 1"):
        fdj.gaussian_dropout(x, 1.0, 0)
    with pytest.raises(ValueError, match="stddev"):
        fdj.gaussian_noise(x, -1.0, 0)
    with pytest.raises(TypeError, match="stddev must be a Python float"):
        jax.jit(lambda x, s: fdj.gaussian_noise(x, s, 0))(x, 0.5)
    with pytest.raises(ValueError, match="at least 2 axes"):
        fdj.feature_alpha_dropout(jnp.ones(3), 0.5, 0)
    with pytest.raises(TypeError, match="mask must be"):
        fdj.apply_mask(x, jnp.ones((2, 3), jnp.int32), 0.5)
    with pytest.raises(ValueError, match="mask"):
        fdj.apply_mask(x, jnp.ones((3, 3), bool), 0.5)
    with pytest.raises(ValueError):
        fdj.apply_mask(x, np.zeros(5, np.uint8), 0.5)
    with pytest.raises(ValueError, match="negative"):
        fdj.dropout_mask((2, -1), 0.5, 0)


def test_custom_call_errors_reach_python():
    """A bad call frame is an XLA error from the handler, not a crash."""
    adapter._kernels()
    x = jnp.ones(8, jnp.float32)
    call = jax.ffi.ffi_call("fastdrop_select", jax.ShapeDtypeStruct((8,), jnp.float32))
    words = np.zeros(4, np.uint32)
    good = dict(a=2.0, b=-0.0, c=0.0, threshold=np.uint64(2 ** 31), mstrides=np.array([1]))
    _same(call(x, words, **good), fastdrop.dropout(np.ones(8, np.float32), 0.5, rng=0))
    bad = [
        (dict(good, threshold=np.float32(1)), "threshold"),
        (dict(good, threshold=np.uint64(2 ** 32 + 1)), "threshold"),
        ({k: v for k, v in good.items() if k != "c"}, "'c' missing"),
        (dict(good, extra=1.0), "unexpected attribute 'extra'"),
        (dict(good, mstrides=np.array([2])), "mstrides"),
        (dict(good, mstrides=np.array([1, 1])), "rank"),
        # (a value no other call used: JAX caches compiled calls by attribute
        # equality, and np.float32(2.0) == 2.0)
        (dict(good, a=np.float32(2.75)), "'a' must be an f64"),
    ]
    for attrs, msg in bad:
        with pytest.raises(Exception, match=msg):
            call(x, words, **attrs).block_until_ready()
    with pytest.raises(Exception, match="key must be u32"):
        call(x, words.astype(np.int32), **good).block_until_ready()
    with pytest.raises(Exception, match="x must be f16, f32, f64 or bf16, got s32"):
        jax.ffi.ffi_call("fastdrop_select", jax.ShapeDtypeStruct((8,), jnp.int32))(
            jnp.ones(8, jnp.int32), words, **good).block_until_ready()
    with pytest.raises(Exception, match="expected 2 operand"):
        call(x, **good).block_until_ready()


# ----------------------------------------------------------------------------
# devices, imports
# ----------------------------------------------------------------------------

def test_gpu_arrays_are_refused():
    gpu = types.SimpleNamespace(devices=lambda: [types.SimpleNamespace(platform="gpu")])
    with pytest.raises(NotImplementedError, match="CPU only.*no GPU handler"):
        adapter._check_cpu(gpu)
    adapter._check_cpu(jnp.ones(2))  # a CPU array passes


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_import_fastdrop_does_not_import_jax():
    assert _run("import sys, fastdrop; import numpy as np; "
                "fastdrop.dropout(np.ones(3), 0.5, rng=0); print('jax' in sys.modules)") == "False"


def test_targets_registered_on_first_use():
    out = _run("import fastdrop.jax as fdj, jax.numpy as jnp\n"
               "from fastdrop.adapters import jax as a\n"
               "before = len(a._kernels_mod)\n"
               "fdj.dropout(jnp.ones(3), 0.5, 0).block_until_ready()\n"
               "print(before, len(a._kernels_mod))")
    assert out.splitlines()[-1] == "0 1"
