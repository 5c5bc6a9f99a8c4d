"""fastdrop.keras: the Keras 3 layers on each Keras backend.

Keras chooses its backend once, when it is imported, so this file runs in two
modes:

- **driver** (a normal pytest run, ``FASTDROP_KERAS_BACKEND`` unset): one test
  per Keras backend that is installed (jax, torch, numpy) runs this file and
  the doctests of ``fastdrop/keras.py`` and ``fastdrop/adapters/keras.py`` in
  a subprocess with ``KERAS_BACKEND`` set, and fails when that run fails or
  skips anything (a skip is allowed only where ``fastdrop.jax`` lacks a
  function the JAX path needs).  The driver never imports keras itself.
- **child** (``FASTDROP_KERAS_BACKEND`` set to the backend): the tests below,
  in-process, under ``pytest.importorskip("keras")``.

What is checked on every backend: the masks are bit for bit those of the
NumPy API at the documented seed (``(seed << 32) | k`` for the ``k``-th
training call of a layer built with ``seed``), for every layer, noise shape,
spatial data format and dtype; the SeedGenerator advances as Keras's own
layers advance it; ``training=False`` is the identity; Keras's argument
errors; serialisation and a ``.keras`` save/load round trip of a trained
model; gradients (jax under ``jax.jit``, torch autograd); the error on an
unsupported backend.
"""

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

_ENV = "FASTDROP_KERAS_BACKEND"
_BACKEND = os.environ.get(_ENV)
_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------
# driver (the parent process)
# ----------------------------------------------------------------------------

def keras_backends():
    """The Keras backends whose framework is installed (numpy always)."""
    return [b for b in ("jax", "torch", "numpy")
            if b == "numpy" or importlib.util.find_spec(b) is not None]


def run_under_keras_backend(backend, paths, timeout=600):
    """Run pytest on ``paths`` (relative to the repository root) in a
    subprocess with ``KERAS_BACKEND=backend``, importing the same fastdrop as
    this process; fail on a failure, an error, no test run, or a skip whose
    reason does not name ``fastdrop.jax``.  Returns the summary line."""
    import fastdrop

    pkg_root = str(Path(fastdrop.__file__).resolve().parents[1])
    env = dict(os.environ, KERAS_BACKEND=backend, **{_ENV: backend})
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # the package's own files from where fastdrop is imported (the source tree, or
    # site-packages when the suite runs against an installed wheel)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
           *[str(Path(pkg_root if p.startswith("fastdrop/") else _ROOT) / p) for p in paths]]
    r = subprocess.run(cmd, cwd=_ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"KERAS_BACKEND={backend}: pytest exit {r.returncode}\n{out[-8000:]}"
    summary = [line for line in out.splitlines() if re.search(r"\d+ passed", line)]
    assert summary, out[-4000:]
    bad = [line for line in out.splitlines()
           if line.startswith("SKIPPED") and "fastdrop.jax" not in line]
    assert not bad, "\n".join(bad)
    return summary[-1]


if _BACKEND is None:
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed", allow_module_level=True)

    @pytest.mark.parametrize("backend", keras_backends())
    def test_under_keras_backend(backend):
        print(run_under_keras_backend(
            backend, ["tests/test_keras.py", "fastdrop/keras.py",
                      "fastdrop/adapters/keras.py"]))


# ----------------------------------------------------------------------------
# child (KERAS_BACKEND set): the tests
# ----------------------------------------------------------------------------

if _BACKEND is not None:
    keras = pytest.importorskip("keras")
    assert keras.backend.backend() == _BACKEND, (keras.backend.backend(), _BACKEND)

    import fastdrop  # noqa: E402
    import fastdrop.keras as fdk  # noqa: E402
    from fastdrop.adapters import keras as fdk_impl  # noqa: E402

SEED = 1234
RATES = [0.1, 0.5, 0.9]
SHAPES = [(37,), (4, 33), (2, 3, 5, 7)]


def np_of(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def special_values(shape, dtype="float32", seed=0):
    """Normals with NaN, +-inf, -0.0 sprinkled in (a kept value keeps its
    bits; a dropped one is +0.0 in both paths)."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(int(np.prod(shape))).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0], dtype=dtype)
    if v.size >= 16:
        v[rng.integers(0, v.size, size=4)] = specials
    return v.reshape(shape)


def assert_bits(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (
        actual.dtype, actual.shape, expected.dtype, expected.shape)
    u = {2: np.uint16, 4: np.uint32, 8: np.uint64}[actual.dtype.itemsize]
    a = np.ascontiguousarray(actual).view(u)
    e = np.ascontiguousarray(expected).view(u)
    assert np.array_equal(a, e), f"{(a != e).sum()} of {a.size} elements differ"


def seed_for(seed, k):
    """The documented mapping, written out: state (seed, k) -> fastdrop seed."""
    return (seed << 32) | k


def state_of(layer):
    return np_of(layer.seed_generator.state.value).astype(np.int64).tolist()


# --- bit equality with the NumPy API -----------------------------------------

@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("shape", SHAPES)
def test_dropout_equals_numpy_api(rate, shape):
    x = special_values(shape)
    layer = fdk.Dropout(rate, seed=SEED)
    outs = []
    for k in range(3):  # each call draws the next seed of the SeedGenerator
        y = np_of(layer(x, training=True))
        assert_bits(y, fastdrop.dropout(x, rate, rng=seed_for(SEED, k)))
        outs.append(y)
    assert state_of(layer) == [SEED, 3]
    if x.size > 30 and rate == 0.5:
        assert not np.array_equal(outs[0], outs[1])  # fresh masks per call


def test_default_seed_maps_the_same_way():
    """seed=None: a random initial word s0 (Keras's), the same mapping."""
    x = special_values((8, 16))
    layer = fdk.Dropout(0.3)
    s0, k = state_of(layer)
    assert k == 0 and s0 > 0
    y = np_of(layer(x, training=True))
    assert_bits(y, fastdrop.dropout(x, 0.3, rng=seed_for(s0, 0)))


@pytest.mark.parametrize("noise_shape, full", [
    ((None, 1, None), (4, 1, 6)),
    ((4, 1, 6), (4, 1, 6)),
    ([1, 5, None], (1, 5, 6)),
    ((5, 1), (1, 5, 1)),        # shorter: aligned to the right, as broadcasting does
    ((None, None, None), (4, 5, 6)),
])
def test_dropout_noise_shape(noise_shape, full):
    x = special_values((4, 5, 6), seed=1)
    layer = fdk.Dropout(0.5, noise_shape=noise_shape, seed=SEED)
    y = np_of(layer(x, training=True))
    assert_bits(y, fastdrop.dropout(x, 0.5, rng=seed_for(SEED, 0), noise_shape=full))
    keep = np.broadcast_to(fastdrop.dropout_mask(full, 0.5, rng=seed_for(SEED, 0)), x.shape)
    assert np.all(y[~keep] == 0)
    for ax, n in enumerate(full):
        if n == 1:  # shared along that axis
            assert np.array_equal(np.take(keep, 0, ax), np.take(keep, 1, ax))


def test_dropout_bad_noise_shape_raises():
    layer = fdk.Dropout(0.5, noise_shape=(3, 1, 6), seed=SEED)
    with pytest.raises(ValueError, match="noise_shape"):
        layer(np.ones((4, 5, 6), np.float32), training=True)


@pytest.mark.parametrize("cls, shape, data_format, full", [
    ("SpatialDropout1D", (3, 7, 5), None, (3, 1, 5)),
    ("SpatialDropout2D", (3, 4, 6, 5), "channels_last", (3, 1, 1, 5)),
    ("SpatialDropout2D", (3, 5, 4, 6), "channels_first", (3, 5, 1, 1)),
    ("SpatialDropout3D", (2, 3, 4, 2, 5), "channels_last", (2, 1, 1, 1, 5)),
    ("SpatialDropout3D", (2, 5, 3, 4, 2), "channels_first", (2, 5, 1, 1, 1)),
])
@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_spatial_dropout_equals_numpy_api(cls, shape, data_format, full, rate):
    kwargs = {} if data_format is None else {"data_format": data_format}
    layer = getattr(fdk, cls)(rate, seed=SEED, **kwargs)
    x = special_values(shape, seed=2)
    for k in range(2):
        y = np_of(layer(x, training=True))
        assert_bits(y, fastdrop.dropout(x, rate, rng=seed_for(SEED, k), noise_shape=full))


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("noise_shape", [None, (None, 1, None)])
def test_alpha_dropout_equals_numpy_api(rate, noise_shape):
    x = np.random.default_rng(3).standard_normal((6, 5, 7)).astype(np.float32)
    layer = fdk.AlphaDropout(rate, noise_shape=noise_shape, seed=SEED)
    full = None if noise_shape is None else (6, 1, 7)
    for k in range(2):
        y = np_of(layer(x, training=True))
        assert_bits(y, fastdrop.alpha_dropout(x, rate, rng=seed_for(SEED, k),
                                              noise_shape=full))


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_gaussian_dropout_equals_numpy_api(rate):
    x = special_values((5, 40), seed=4)
    layer = fdk.GaussianDropout(rate, seed=SEED)
    for k in range(2):
        y = np_of(layer(x, training=True))
        assert_bits(y, fastdrop.gaussian_dropout(x, rate, rng=seed_for(SEED, k)))


@pytest.mark.parametrize("stddev", [0.05, 1.0])
def test_gaussian_noise_equals_numpy_api(stddev):
    x = special_values((5, 40), seed=5)
    layer = fdk.GaussianNoise(stddev, seed=SEED)
    for k in range(2):
        y = np_of(layer(x, training=True))
        assert_bits(y, fastdrop.gaussian_noise(x, stddev, rng=seed_for(SEED, k)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_dtypes(dtype):
    """The layer's compute dtype reaches fastdrop (Keras casts the input)."""
    ml_dtypes = pytest.importorskip("ml_dtypes") if dtype == "bfloat16" else None
    np_dtype = ml_dtypes.bfloat16 if ml_dtypes else np.float16
    # no NaN here: Keras's torch backend converts bfloat16 arrays through
    # float32 (both ways), which rewrites NaN bits before fastdrop sees them
    x = np.random.default_rng(6).standard_normal((6, 20)).astype(np_dtype)
    x[0, :3] = [np.inf, -np.inf, -0.0]
    cases = [
        (fdk.Dropout(0.3, seed=SEED, dtype=dtype),
         lambda v: fastdrop.dropout(v, 0.3, rng=seed_for(SEED, 0))),
        (fdk.AlphaDropout(0.3, seed=SEED, dtype=dtype),
         lambda v: fastdrop.alpha_dropout(v, 0.3, rng=seed_for(SEED, 0))),
        (fdk.GaussianNoise(0.2, seed=SEED, dtype=dtype),
         lambda v: fastdrop.gaussian_noise(v, 0.2, rng=seed_for(SEED, 0))),
    ]
    for layer, ref in cases:
        y = np_of(layer(x, training=True))
        assert y.dtype == np.dtype(np_dtype), (type(layer).__name__, y.dtype)
        assert_bits(y, ref(x))


# --- Keras's semantics --------------------------------------------------------

def test_dropout_kept_values_are_keras_scaling():
    """Kept: x / (1 - rate) as Keras computes it, to the last bit (fastdrop
    multiplies by the rounded reciprocal); dropped: +0.0."""
    rate = 0.3
    x = np.random.default_rng(7).standard_normal((64, 64)).astype(np.float32)
    y = np_of(fdk.Dropout(rate, seed=SEED)(x, training=True))
    keep = fastdrop.dropout_mask(x.shape, rate, rng=seed_for(SEED, 0))
    keras_kept = x / np.float32(1 - rate)
    ulps = np.abs(y[keep].view(np.int32).astype(np.int64) - keras_kept[keep].view(np.int32))
    assert ulps.max() <= 1
    assert np.all(y[~keep].view(np.uint32) == 0)
    assert abs(keep.mean() - (1 - rate)) < 0.03


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.8])
def test_alpha_dropout_is_keras_formula(rate):
    """Keras's AlphaDropout formula with its own constants (copied from
    keras/src/layers/regularization/alpha_dropout.py), evaluated in float32
    as Keras does, on fastdrop's mask: equal to 1 ulp."""
    alpha = 1.6732632423543772848170429916717
    scale = 1.0507009873554804934193349852946
    alpha_p = -alpha * scale
    x = np.random.default_rng(8).standard_normal((50, 40)).astype(np.float32)
    y = np_of(fdk.AlphaDropout(rate, seed=SEED)(x, training=True))
    keep = fastdrop.dropout_mask(x.shape, rate, rng=seed_for(SEED, 0))
    kept_idx = keep.astype(np.float32)
    a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5
    b = -a * alpha_p * rate
    xk = x * kept_idx + np.float32(alpha_p) * (np.float32(1) - kept_idx)
    keras_y = np.float32(a) * xk + np.float32(b)
    ulps = np.abs(y.view(np.int32).astype(np.int64) - keras_y.view(np.int32))
    assert ulps[keep].max() <= 1, ulps[keep].max()
    # dropped: fastdrop's c = ALPHA * a * (p - 1) rounded once; Keras rounds
    # alpha_p, a * alpha_p and the sum in float32 (up to 2 ulp apart)
    ALPHA = 1.7580993408473766  # docs/spec.md §8 (== alpha * scale above)
    assert alpha * scale == ALPHA
    a64 = 1.0 / math.sqrt((ALPHA * ALPHA * rate + 1.0) * (1.0 - rate))
    c = np.float32(ALPHA * a64 * (rate - 1.0))
    assert np.all(y[~keep] == c)
    assert ulps[~keep].max() <= 2, ulps[~keep].max()
    # self-normalising: mean 0 and variance 1 kept for standard normal input
    big = np.random.default_rng(9).standard_normal((400, 500)).astype(np.float32)
    z = np_of(fdk.AlphaDropout(rate, seed=SEED)(big, training=True))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02


def test_gaussian_layers_statistics():
    x = np.ones((400, 500), np.float32)
    t = np_of(fdk.GaussianDropout(0.3, seed=SEED)(x, training=True))
    assert abs(t.mean() - 1) < 0.01 and abs(t.std() - np.sqrt(0.3 / 0.7)) < 0.01
    n = np_of(fdk.GaussianNoise(0.3, seed=SEED)(x, training=True)) - 1
    assert abs(n.mean()) < 0.01 and abs(n.std() - 0.3) < 0.01


LAYERS = [
    ("Dropout", {"rate": 0.5}, (4, 6, 3)),
    ("SpatialDropout1D", {"rate": 0.5}, (4, 6, 3)),
    ("SpatialDropout2D", {"rate": 0.5}, (2, 4, 6, 3)),
    ("SpatialDropout3D", {"rate": 0.5}, (2, 3, 4, 2, 3)),
    ("AlphaDropout", {"rate": 0.5}, (4, 6, 3)),
    ("GaussianDropout", {"rate": 0.5}, (4, 6, 3)),
    ("GaussianNoise", {"stddev": 0.5}, (4, 6, 3)),
]


@pytest.mark.parametrize("name, kwargs, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_training_false_is_identity(name, kwargs, shape):
    x = special_values(shape, seed=10)
    layer = getattr(fdk, name)(seed=SEED, **kwargs)
    before = state_of(layer)
    for y in (layer(x, training=False), layer(x)):  # call's default: training=False
        assert_bits(np_of(y), x)
    assert state_of(layer) == before  # nothing drawn


@pytest.mark.parametrize("name, kwargs, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_seed_generator_advances_as_keras(name, kwargs, shape):
    """The layer is Keras's layer (subclass, same config keys) and moves the
    SeedGenerator exactly as Keras's layer does: one step per training call."""
    x = np.ones(shape, np.float32)
    ours = getattr(fdk, name)(seed=SEED, **kwargs)
    theirs = getattr(keras.layers, name)(seed=SEED, **kwargs)
    assert isinstance(ours, getattr(keras.layers, name))
    assert sorted(ours.get_config()) == sorted(theirs.get_config())
    for _ in range(3):
        ours(x, training=True)
        theirs(x, training=True)
    assert state_of(ours) == state_of(theirs) == [SEED, 3]


@pytest.mark.parametrize("name, kwargs, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_zero_rate_is_identity_in_training(name, kwargs, shape):
    kwargs = {k: 0.0 for k in kwargs}
    layer = getattr(fdk, name)(seed=SEED, **kwargs)
    assert not hasattr(layer, "seed_generator")  # Keras creates none at rate 0
    x = special_values(shape, seed=11)
    assert_bits(np_of(layer(x, training=True)), x)


def test_rate_one():
    x = special_values((4, 8), seed=12)
    d = fdk.Dropout(1.0, seed=SEED)
    y = np_of(d(x, training=True))
    assert np.all(y.view(np.uint32) == 0)
    assert state_of(d) == [SEED, 0]  # Keras returns zeros without drawing
    a = np_of(fdk.AlphaDropout(1.0, seed=SEED)(x, training=True))
    assert np.all(a.view(np.uint32) == 0)  # the limit of c (Keras: ZeroDivisionError)
    g = fdk.GaussianDropout(1.0, seed=SEED)  # constructs, as Keras's does
    with pytest.raises(ValueError, match="infinite variance"):
        g(x, training=True)
    assert state_of(g) == [SEED, 0]
    assert_bits(np_of(g(x, training=False)), x)


@pytest.mark.parametrize("name, arg", [
    ("Dropout", "rate"), ("AlphaDropout", "rate"), ("GaussianDropout", "rate"),
    ("SpatialDropout1D", "rate"), ("SpatialDropout2D", "rate"),
    ("SpatialDropout3D", "rate"), ("GaussianNoise", "stddev"),
])
@pytest.mark.parametrize("bad", [-0.5, 1.5])
def test_bad_rate_raises(name, arg, bad):
    with pytest.raises(ValueError, match=f"Invalid value received for argument `{arg}`"):
        getattr(fdk, name)(**{arg: bad})


def test_bad_noise_shape_argument_raises():
    with pytest.raises(ValueError, match="noise_shape"):
        fdk.Dropout(0.5, noise_shape="Invalid")
    with pytest.raises(ValueError, match="positive integers"):
        fdk.Dropout(0.5, noise_shape=(2, 0))


def test_bad_data_format_raises():
    with pytest.raises(ValueError, match="data_format"):
        fdk.SpatialDropout2D(0.5, data_format="channels_middle")


def test_integer_input_raises_type_error():
    layer = fdk.Dropout(0.5, seed=SEED, autocast=False)
    with pytest.raises(TypeError, match="int32"):
        layer(np.ones((2, 3), np.int32), training=True)


# --- the seed mapping ---------------------------------------------------------

def test_fastdrop_seed():
    assert fdk.fastdrop_seed([5, 7]) == (5 << 32) | 7
    assert fdk.fastdrop_seed(np.array([5, 7], np.uint32)) == (5 << 32) | 7
    assert fdk.fastdrop_seed(np.array([-1, -2], np.int32)) == (0xFFFFFFFF << 32) | 0xFFFFFFFE
    sg = keras.random.SeedGenerator(99)
    assert fdk.fastdrop_seed(sg.next()) == (99 << 32) | 0
    assert fdk.fastdrop_seed(sg.next()) == (99 << 32) | 1
    with pytest.raises(ValueError, match="2 integer words"):
        fdk.fastdrop_seed([1, 2, 3])
    with pytest.raises(ValueError, match="2 integer words"):
        fdk.fastdrop_seed(np.array([1.0, 2.0]))


# --- serialisation, save / load ----------------------------------------------

@pytest.mark.parametrize("name, kwargs, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_serialization_round_trip(name, kwargs, shape):
    cls = getattr(fdk, name)
    extra = {"data_format": "channels_first"} if name in ("SpatialDropout2D",
                                                          "SpatialDropout3D") else {}
    if name in ("Dropout", "AlphaDropout"):
        extra = {"noise_shape": (None, 1, None)}
    layer = cls(seed=7, **kwargs, **extra)
    assert keras.saving.get_registered_name(cls) == f"fastdrop>{name}"
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == f"fastdrop>{name}"
    back = keras.saving.deserialize_keras_object(config)
    assert type(back) is cls
    assert back.get_config() == layer.get_config()
    assert type(cls.from_config(layer.get_config())) is cls


def _json_normal(obj):
    import json

    return json.loads(json.dumps(obj))


def test_model_trains_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="selu"),
        fdk.Dropout(0.3, seed=1),
        fdk.AlphaDropout(0.1, seed=2),
        keras.layers.Dense(8),
        fdk.GaussianNoise(0.1, seed=3),
        fdk.GaussianDropout(0.2, seed=4),
        keras.layers.Reshape((2, 4)),
        fdk.SpatialDropout1D(0.25, seed=5),
        keras.layers.Flatten(),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    w0 = [w.copy() for w in model.get_weights()]
    steps = 4
    if _BACKEND != "numpy":  # Keras's numpy backend cannot train
        hist = model.fit(x, y, batch_size=64 // steps, epochs=1, verbose=0)
        assert np.isfinite(hist.history["loss"][0])
        assert any(not np.array_equal(a, b) for a, b in zip(w0, model.get_weights()))
        drops = [la for la in model.layers if isinstance(la, keras.layers.Layer)
                 and hasattr(la, "seed_generator")]
        assert len(drops) == 5
        for la in drops:  # one fresh seed per training step (jit threads the state)
            assert state_of(la)[1] == steps, (la.name, state_of(la))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(la) for la in loaded.layers] == [type(la) for la in model.layers]
    assert _json_normal(loaded.get_config()) == _json_normal(model.get_config())
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        assert_bits(b, a)
    assert_bits(np_of(loaded.predict(x, verbose=0)), np_of(model.predict(x, verbose=0)))
    # the loaded layers draw fastdrop masks in training too
    layer = loaded.layers[1]
    s0, k = state_of(layer)
    h = rng.standard_normal((3, 16)).astype(np.float32)
    assert_bits(np_of(layer(h, training=True)), fastdrop.dropout(h, 0.3, rng=seed_for(s0, k)))


def test_functional_model_symbolic_call():
    inputs = keras.Input((5, 4))
    out = fdk.SpatialDropout1D(0.5)(inputs, training=True)
    out = fdk.Dropout(0.5, noise_shape=(None, 1, None))(out)
    model = keras.Model(inputs, out)
    assert tuple(model.output.shape) == (None, 5, 4)
    x = np.ones((2, 5, 4), np.float32)
    assert_bits(np_of(model(x, training=False)), x)


# --- unsupported backends -----------------------------------------------------

@pytest.mark.parametrize("other", ["tensorflow", "openvino"])
def test_unsupported_backend_raises(monkeypatch, other):
    with pytest.raises(NotImplementedError, match="jax, torch, numpy"):
        fdk_impl._path_for(other)
    layer = fdk.Dropout(0.5, seed=SEED)
    x = np.ones((2, 3), np.float32)
    monkeypatch.setattr(keras.backend, "backend", lambda: other)
    with pytest.raises(NotImplementedError, match=f"the active backend is '{other}'"):
        layer(x, training=True)
    assert state_of(layer) == [SEED, 0]  # refused before drawing
    assert_bits(np_of(layer(x, training=False)), x)  # evaluation needs no fastdrop


# --- gradients and jit (backends that differentiate) -------------------------

if _BACKEND == "jax":
    def test_jax_jit_grad_state_threading():
        """Under jax.jit with Keras's stateless_call, the k-th step uses seed
        (SEED << 32) | k, and the gradient is the select of the same mask."""
        import jax

        layer = fdk.Dropout(0.4, seed=SEED)
        x = np.random.default_rng(13).standard_normal((16, 24)).astype(np.float32)
        nt = [v.value for v in layer.non_trainable_variables]
        assert len(nt) == 1  # the seed state

        def loss(x, nt):
            y, nt2 = layer.stateless_call([], nt, x, training=True)
            return (y * 1.0).sum(), (y, nt2)

        step = jax.jit(jax.grad(loss, has_aux=True))
        for k in range(3):
            g, (y, nt) = step(x, nt)
            assert_bits(np.asarray(y), fastdrop.dropout(x, 0.4, rng=seed_for(SEED, k)))
            assert_bits(np.asarray(g), fastdrop.dropout(np.ones_like(x), 0.4,
                                                        rng=seed_for(SEED, k)))
        assert np.asarray(nt[0]).tolist() == [SEED, 3]

    def test_jax_jit_every_layer():
        import jax

        x = np.random.default_rng(14).standard_normal((2, 3, 4, 5)).astype(np.float32)
        cases = [
            (fdk.SpatialDropout2D(0.5, seed=SEED),
             lambda k: fastdrop.dropout(x, 0.5, rng=seed_for(SEED, k),
                                        noise_shape=(2, 1, 1, 5))),
            (fdk.AlphaDropout(0.2, seed=SEED),
             lambda k: fastdrop.alpha_dropout(x, 0.2, rng=seed_for(SEED, k))),
            (fdk.GaussianDropout(0.2, seed=SEED),
             lambda k: fastdrop.gaussian_dropout(x, 0.2, rng=seed_for(SEED, k))),
            (fdk.GaussianNoise(0.2, seed=SEED),
             lambda k: fastdrop.gaussian_noise(x, 0.2, rng=seed_for(SEED, k))),
        ]
        for layer, ref in cases:
            f = jax.jit(lambda nt, x, layer=layer: layer.stateless_call(
                [], nt, x, training=True))
            nt = [v.value for v in layer.non_trainable_variables]
            for k in range(2):
                y, nt = f(nt, x)
                assert_bits(np.asarray(y), ref(k))


if _BACKEND == "torch":
    def test_torch_autograd():
        import torch

        x = torch.randn(16, 24, requires_grad=True)
        layer = fdk.Dropout(0.4, seed=SEED)
        y = layer(x, training=True)
        y.sum().backward()
        assert_bits(x.grad.numpy(), fastdrop.dropout(np.ones((16, 24), np.float32), 0.4,
                                                     rng=seed_for(SEED, 0)))
        x.grad = None
        a = fdk.AlphaDropout(0.4, seed=SEED)(x, training=True)
        a.sum().backward()
        keep = fastdrop.dropout_mask((16, 24), 0.4, rng=seed_for(SEED, 0))
        assert np.all(x.grad.numpy()[~keep] == 0)
        assert np.unique(x.grad.numpy()[keep]).size == 1
        x.grad = None
        g = fdk.GaussianDropout(0.4, seed=SEED)(x, training=True)
        g.sum().backward()
        assert_bits(x.grad.numpy(), fastdrop.gaussian_dropout(
            np.ones((16, 24), np.float32), 0.4, rng=seed_for(SEED, 0)))


if _BACKEND is None:  # the driver: the child tests above are not collected here
    for _name in [n for n in list(globals())
                  if n.startswith("test_") and n != "test_under_keras_backend"]:
        del globals()[_name]
