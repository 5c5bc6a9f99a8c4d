"""The dropout family (docs/spec.md §8, §9, §11): alpha dropout, feature
alpha dropout, DropPath, Gaussian dropout and Gaussian noise, NumPy API,
Dask and torch, plus the peers' own tests ported (each names its original).
Bit parity with the reference on every backend, ISA, dtype and layout is in
``tests/test_parity.py`` (``test_alpha_dropout*``, ``test_gaussian_*``,
``test_kernel_noise``) and, under the CUDA simulator, in
``tests/test_cuda_sim.py``.
"""

import math
import random

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from fastdrop import _plan

ALPHA = 1.7580993408473766   # PyTorch's alpha_dropout constant (lambda * alpha of SELU)


def bits(a):
    a = np.asarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


# ---------------------------------------------------------------- NumPy API

def test_alpha_constants_spec_golden_values():
    # docs/spec.md §8: the float64 constants, bit for bit
    a, b, c = _plan.alpha_constants(0.5)
    assert (a.hex(), b.hex(), c.hex()) == ('0x1.c5d6dcc335815p-1', '0x1.8ef281c1a21eep-1',
                                           '-0x1.8ef281c1a21eep-1')
    a, b, c = _plan.alpha_constants(0.1)
    assert a == 1.0 / math.sqrt((ALPHA * ALPHA * 0.1 + 1.0) * 0.9)
    assert (b, c) == (ALPHA * a * 0.1, ALPHA * a * (0.1 - 1.0))


def test_alpha_dropout_spec_golden_output():
    # docs/spec.md §8: seed 0, offset 0, p = 0.5, float32 x = 0..7
    y = fastdrop.alpha_dropout(np.arange(8, dtype=np.float32), 0.5, rng=0)
    assert bits(y).tolist() == [1061648705, 3209132353, 1076057095, 1079774946,
                                1082811615, 1084670541, 1086529466, 1088388392]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_alpha_dropout_decisions_are_dropouts(dtype):
    x = np.random.default_rng(1).standard_normal((13, 17)).astype(dtype)
    y, keep = fastdrop.alpha_dropout(x, 0.3, rng=7, return_mask=True)
    assert_array_equal(keep, fastdrop.dropout_mask(x.shape, 0.3, rng=7))
    a, b, c = _plan.alpha_constants(0.3)
    ct = np.float64 if dtype == np.float64 else np.float32
    want = np.where(keep, (x.astype(ct) * ct(a) + ct(b)).astype(dtype), dtype(ct(c)))
    assert_array_equal(bits(y), bits(want))


def test_alpha_dropout_p0_p1_and_evaluation():
    x = np.array([1.5, -0.0, np.nan, np.inf, -2.0], np.float32)
    assert_array_equal(bits(fastdrop.alpha_dropout(x, 0.0, rng=3)), bits(x))
    assert_array_equal(bits(fastdrop.alpha_dropout(x, 0.7, training=False)), bits(x))
    assert_array_equal(bits(fastdrop.alpha_dropout(x, 1.0, rng=3)), bits(np.zeros(5, np.float32)))
    g = fastdrop.Generator(4)
    fastdrop.alpha_dropout(x, 0.0, rng=g)  # training draws whatever p is (§3)
    assert g.offset == 8


def test_dropped_values_do_not_depend_on_x():
    x = np.array([np.nan, np.inf, -np.inf, -0.0] * 64, np.float32)
    y, keep = fastdrop.alpha_dropout(x, 0.5, rng=2, return_mask=True)
    c = np.float32(_plan.alpha_constants(0.5)[2])
    assert (~keep).any()
    assert_array_equal(bits(y[~keep]), bits(np.full((~keep).sum(), c)))


def test_feature_alpha_dropout_is_alpha_with_channel_noise():
    x = np.random.default_rng(2).standard_normal((3, 4, 5, 6)).astype(np.float32)
    y = fastdrop.feature_alpha_dropout(x, 0.4, rng=9)
    want = fastdrop.alpha_dropout(x, 0.4, rng=9, noise_shape=(3, 4, 1, 1))
    assert_array_equal(bits(y), bits(want))
    with pytest.raises(ValueError, match="at least 2 axes"):
        fastdrop.feature_alpha_dropout(np.ones(5, np.float32), 0.4, rng=9)


@pytest.mark.parametrize("scale_by_keep,mode", [(True, "inverted"), (False, "classic")])
def test_drop_path_is_dropout_with_sample_noise(scale_by_keep, mode):
    x = np.random.default_rng(3).standard_normal((9, 4, 5)).astype(np.float32)
    y = fastdrop.drop_path(x, 0.4, rng=5, scale_by_keep=scale_by_keep)
    want = fastdrop.dropout(x, 0.4, rng=5, noise_shape=(9, 1, 1), mode=mode)
    assert_array_equal(bits(y), bits(want))
    # evaluation: x's values in both settings (not classic's x * (1 - p))
    assert_array_equal(bits(fastdrop.drop_path(x, 0.4, training=False,
                                               scale_by_keep=scale_by_keep)), bits(x))
    with pytest.raises(ValueError, match="at least 1 axis"):
        fastdrop.drop_path(np.float32(1.0), 0.4, rng=5)
    with pytest.raises(TypeError, match="scale_by_keep"):
        fastdrop.drop_path(x, 0.4, rng=5, scale_by_keep="yes")


def test_backward_from_state_and_from_mask():
    x = np.random.default_rng(4).standard_normal((6, 7)).astype(np.float64)
    g = np.random.default_rng(5).standard_normal((6, 7))
    y, keep = fastdrop.alpha_dropout(x, 0.25, rng=11, return_mask=True)
    a = _plan.alpha_constants(0.25)[0]
    want = np.where(keep, g * a, 0.0)
    assert_array_equal(bits(fastdrop.alpha_dropout_backward(g, 0.25, state=11)), bits(want))
    assert_array_equal(bits(fastdrop.alpha_dropout_backward(g, 0.25, mask=keep)), bits(want))
    assert_array_equal(fastdrop.alpha_dropout_backward(g, 0.25, training=False), g)
    gp = fastdrop.drop_path_backward(g, 0.25, state=11)
    assert_array_equal(gp, fastdrop.dropout_backward(g, 0.25, state=11, noise_shape=(6, 1)))


@pytest.mark.parametrize("bad,exc,msg", [
    (dict(p=1.5), ValueError, r"p must be in \[0, 1\]"),
    (dict(p=-0.5), ValueError, r"p must be in \[0, 1\]"),
    (dict(training="yes"), TypeError, "training"),
    (dict(rng=1.5), TypeError, "rng"),
    (dict(noise_shape=(2, 2)), ValueError, "noise_shape"),
])
def test_bad_arguments_write_nothing(bad, exc, msg):
    x = np.ones((4, 3), np.float32)
    out = np.full_like(x, -7.25)
    g = fastdrop.Generator(1)
    kw = dict(p=0.5, rng=g, out=out)
    kw.update(bad)
    p = kw.pop("p")
    with pytest.raises(exc, match=msg):
        fastdrop.alpha_dropout(x, p, **kw)
    assert (out == -7.25).all() and g.offset == 0


# ----------------------------------------------------- Keras's AlphaDropout tests

def test_keras_alpha_dropout_correctness():
    # ported from keras/src/layers/regularization/alpha_dropout_test.py
    # (test_alpha_dropout_correctness): the std of alpha dropout of ones
    inputs = np.ones((20, 500), np.float32)
    outputs = fastdrop.alpha_dropout(inputs, 0.3, rng=1337)
    assert abs(np.std(outputs) - 1.0) <= 1e-1


@pytest.mark.parametrize("noise_shape", [(None, 1, None), (20, 1, 10)])
def test_keras_alpha_dropout_partial_noise_shape(noise_shape):
    # ported from the same file (test_alpha_dropout_partial_noise_shape_dynamic
    # and _static): a mask shared along axis 1
    inputs = np.ones((20, 5, 10))
    outputs = fastdrop.alpha_dropout(inputs, 0.5, rng=0, noise_shape=noise_shape)
    assert_array_equal(outputs[:, 0, :], outputs[:, 1, :])


@pytest.mark.parametrize("rate", [-0.5, 1.5])
def test_keras_alpha_dropout_bad_rate(rate):
    # ported from the same file (test_alpha_dropout_negative_rate,
    # _rate_greater_than_one); fastdrop's message names p
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        fastdrop.alpha_dropout(np.ones(3), rate, rng=0)


# ------------------------------------------- Gaussian dropout and noise (§11)

SPEC_X = np.arange(8, dtype=np.float32)


def test_gaussian_spec_golden_values():
    # docs/spec.md §11, bit for bit
    y = fastdrop.gaussian_dropout(SPEC_X, 0.5, rng=0)
    assert bits(y).tolist() == [2147483648, 1070067252, 3181890882, 1076855004,
                                1080827157, 3204644587, 1094821364, 1085654836]
    y = fastdrop.gaussian_noise(SPEC_X, 0.1, rng=0)
    assert bits(y).tolist() == [3192443530, 1065824620, 1072868597, 1077900091,
                                1082097850, 1083996406, 1086538052, 1088382359]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_gaussian_dropout_is_x_times_one_plus_sigma_z(dtype):
    x = np.random.default_rng(3).standard_normal((7, 9)).astype(dtype)
    z = fastdrop.reference.normal_range(11, 0, x.size).reshape(x.shape)
    ct = np.float64 if dtype == np.float64 else np.float32
    for p in (0.1, 0.5, 0.9):
        sigma = math.sqrt(p / (1.0 - p))
        want = (x.astype(ct) * (z * sigma + 1.0).astype(ct)).astype(dtype)
        assert_array_equal(bits(fastdrop.gaussian_dropout(x, p, rng=11)), bits(want))
        want = (x.astype(ct) + (z * p).astype(ct)).astype(dtype)
        assert_array_equal(bits(fastdrop.gaussian_noise(x, p, rng=11)), bits(want))


def test_gaussian_statistics():
    # multiplicative noise of mean 1 and variance p / (1 - p); additive of std stddev
    ones = np.ones(10**6, np.float64)
    y = fastdrop.gaussian_dropout(ones, 0.3, rng=2)
    se_mean = math.sqrt(0.3 / 0.7 / ones.size)
    assert abs(y.mean() - 1.0) < 5 * se_mean
    assert abs(y.var() / (0.3 / 0.7) - 1.0) < 5 * math.sqrt(2 / ones.size)
    y = fastdrop.gaussian_noise(np.zeros(10**6), 2.5, rng=3)
    assert abs(y.mean()) < 5 * 2.5 / 1000
    assert abs(y.std() / 2.5 - 1.0) < 5 * math.sqrt(0.5 / ones.size)


def test_gaussian_identities_and_generator():
    x = np.random.default_rng(0).standard_normal(50).astype(np.float32)
    x[3] = np.nan
    for f in (fastdrop.gaussian_dropout, fastdrop.gaussian_noise):
        g = fastdrop.Generator(5)
        y = f(x, 0.0, rng=g)
        assert_array_equal(bits(y), bits(x))   # p == 0 in training: x's values
        assert y is not x and g.offset == 56   # ... and the generator moved (ceil8(50))
        g = fastdrop.Generator(5)
        y = f(x, 0.4, rng=g, training=False)
        assert_array_equal(bits(y), bits(x))   # evaluation: x's values, nothing drawn
        assert g.offset == 0
        y = f(x, 0.4, rng=g)
        assert g.offset == 56 and np.isnan(y[3]) and not np.isnan(np.delete(y, 3)).any()


def test_gaussian_noise_shape_shares_the_noise():
    x = np.ones((4, 5, 6), np.float32)
    y = fastdrop.gaussian_dropout(x, 0.5, rng=1, noise_shape=(4, 1, 6))
    assert_array_equal(y, np.broadcast_to(y[:, :1, :], y.shape))
    assert_array_equal(y[:, 0, :], fastdrop.gaussian_dropout(np.ones((4, 6), np.float32),
                                                             0.5, rng=1))


def test_gaussian_out_and_in_place():
    x = np.random.default_rng(1).standard_normal((6, 7))
    want = fastdrop.gaussian_noise(x, 0.3, rng=4)
    out = np.empty_like(x)
    assert fastdrop.gaussian_noise(x, 0.3, rng=4, out=out) is out
    assert_array_equal(bits(out), bits(want))
    fastdrop.gaussian_noise(x, 0.3, rng=4, out=x)
    assert_array_equal(bits(x), bits(want))


def test_gaussian_backward():
    x = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float32)
    g = fastdrop.Generator(9)
    saved = g.state
    y = fastdrop.gaussian_dropout(x, 0.25, rng=g)
    ones = np.ones_like(x)
    t = fastdrop.gaussian_dropout_backward(ones, 0.25, state=saved)
    assert_array_equal(bits(x * t), bits(y))              # grad times the same noise
    assert_array_equal(bits(fastdrop.gaussian_dropout_backward(ones, 0.25, state=saved,
                                                               training=False)), bits(ones))
    assert_array_equal(bits(fastdrop.gaussian_noise_backward(x, 0.5)), bits(x))
    with pytest.raises(ValueError, match="state"):
        fastdrop.gaussian_dropout_backward(ones, 0.25)


@pytest.mark.parametrize("f,param,bad,exc,msg", [
    (fastdrop.gaussian_dropout, 1.0, {}, ValueError, "p < 1"),
    (fastdrop.gaussian_dropout, 1.5, {}, ValueError, r"p must be in \[0, 1\]"),
    (fastdrop.gaussian_dropout, True, {}, TypeError, "p must be a real number"),
    (fastdrop.gaussian_noise, -0.1, {}, ValueError, "stddev must be finite and >= 0"),
    (fastdrop.gaussian_noise, math.inf, {}, ValueError, "stddev"),
    (fastdrop.gaussian_noise, math.nan, {}, ValueError, "stddev"),
    (fastdrop.gaussian_noise, "0.1", {}, TypeError, "stddev must be a real number"),
    (fastdrop.gaussian_noise, 0.1, dict(training=1), TypeError, "training"),
    (fastdrop.gaussian_noise, 0.1, dict(rng=1.5), TypeError, "rng"),
    (fastdrop.gaussian_dropout, 0.1, dict(noise_shape=(2, 2)), ValueError, "noise_shape"),
    (fastdrop.gaussian_dropout, 0.1, dict(backend="nope"), ValueError, "backend"),
])
def test_gaussian_bad_arguments_write_nothing(f, param, bad, exc, msg):
    x = np.ones((4, 3), np.float32)
    out = np.full_like(x, -7.25)
    g = fastdrop.Generator(1)
    kw = dict(rng=g, out=out)
    kw.update(bad)
    with pytest.raises(exc, match=msg):
        f(x, param, **kw)
    assert (out == -7.25).all() and g.offset == 0
    with pytest.raises(TypeError, match="dtype"):
        f(np.ones(3, np.int32), 0.1, rng=g)
    assert g.offset == 0


def test_keras_gaussian_dropout_correctness():
    # ported from keras/src/layers/regularization/gaussian_dropout_test.py
    # (test_gaussian_dropout_correctness): the std of Gaussian dropout of ones
    inputs = np.ones((20, 500))
    outputs = fastdrop.gaussian_dropout(inputs, 0.3, rng=1337)
    assert abs(np.std(outputs) - np.sqrt(0.3 / (1 - 0.3))) <= 0.02


def test_keras_gaussian_noise_correctness():
    # ported from keras/src/layers/regularization/gaussian_noise_test.py
    # (test_gaussian_noise_correctness): the std of Gaussian noise on ones
    inputs = np.ones((20, 500))
    outputs = fastdrop.gaussian_noise(inputs, 0.3, rng=1337)
    assert abs(np.std(outputs) - 0.3) <= 0.02


# --------------------------------------------------------------------- Dask

@pytest.mark.parametrize("chunks", [(2, 3), (5, 7), ((1, 4), (3, 4))])
def test_dask_family_equals_numpy(chunks):
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(6).standard_normal((5, 7)).astype(np.float32)
    dx = da.from_array(x, chunks=chunks)
    for f in (fastdrop.alpha_dropout, fastdrop.feature_alpha_dropout, fastdrop.drop_path):
        y = f(dx, 0.35, rng=fastdrop.Generator(8))
        assert isinstance(y, da.Array)
        assert_array_equal(bits(y.compute()), bits(f(x, 0.35, rng=fastdrop.Generator(8))))
    for f in (fastdrop.gaussian_dropout, fastdrop.gaussian_noise):
        g = fastdrop.Generator(8)
        y = f(dx, 0.35, rng=g, noise_shape=(5, 1))
        assert isinstance(y, da.Array) and g.offset == 8
        assert_array_equal(bits(y.compute()),
                           bits(f(x, 0.35, rng=fastdrop.Generator(8), noise_shape=(5, 1))))
        y = f(dx, 0.35, rng=fastdrop.Generator(8))
        assert_array_equal(bits(y.compute()), bits(f(x, 0.35, rng=fastdrop.Generator(8))))


# -------------------------------------------------------------------- torch

torch = pytest.importorskip("torch")
fdt = pytest.importorskip("fastdrop.torch")


def _alpha_stats_test(cls, input):
    # ported from pytorch test/nn/test_dropout.py (TestDropoutNN._test_alpha_dropout)
    mean = input.mean()
    std = input.std()
    for p in [0.2, 0.5, 0.8]:
        module = cls(p)
        input_var = input.detach().clone().requires_grad_()
        output = module(input_var)
        assert abs(output.data.mean() - mean) < 0.1  # output mean close to input mean
        assert abs(output.data.std() - std) < 0.1    # output std close to input std
        output.backward(input)


def test_torch_AlphaDropout():
    # ported from pytorch test/nn/test_dropout.py (TestDropoutNN.test_AlphaDropout)
    torch.manual_seed(0)
    _alpha_stats_test(fdt.AlphaDropout, torch.randn(5000))


def test_torch_FeatureAlphaDropout():
    # ported from pytorch test/nn/test_dropout.py (TestDropoutNN.test_FeatureAlphaDropout)
    torch.manual_seed(0)
    rnd = random.Random(0)
    b, w, h, d = (rnd.randint(1, 5), rnd.randint(1, 5), rnd.randint(1, 5), rnd.randint(1, 2))
    _alpha_stats_test(fdt.FeatureAlphaDropout, torch.randn(1000, b, d, w, h))
    _alpha_stats_test(fdt.FeatureAlphaDropout, torch.randn(50, 20, 64, 64))  # no batch dims


def test_torch_alpha_equals_numpy_and_gradient():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    g = fastdrop.Generator(21)
    y = fdt.alpha_dropout(x, 0.3, True, generator=g)
    ref = fastdrop.alpha_dropout(x.detach().numpy(), 0.3, rng=fastdrop.Generator(21))
    assert_array_equal(bits(y.detach().numpy()), bits(ref))
    gy = torch.randn(6, 5, dtype=torch.float64)
    y.backward(gy)
    want = fastdrop.alpha_dropout_backward(gy.numpy(), 0.3, state=(21, 0))
    assert_array_equal(bits(x.grad.numpy()), bits(want))


def test_torch_family_identities():
    x = torch.randn(4, 3)
    assert fdt.alpha_dropout(x, 0.5) is x                   # training=False by default
    assert fdt.AlphaDropout(0.5).eval()(x) is x
    assert fdt.drop_path(x, 0.5) is x
    assert fdt.DropPath(0.5).eval()(x) is x
    assert fdt.drop_path(x, 0.0, True) is x
    assert (fdt.alpha_dropout(x, 1.0, True, generator=0) == 0).all()


def test_torch_drop_path_timm_semantics():
    # timm's drop_path: one decision per sample, kept samples / (1 - p)
    x = torch.randn(64, 3, 4)
    y = fdt.DropPath(0.25, generator=3)(x)
    kept = (y != 0).flatten(1).any(1)
    assert_array_equal(kept.numpy(), fastdrop.dropout_mask((64, 1, 1), 0.25, rng=3).ravel())
    torch.testing.assert_close(y[kept], x[kept] / 0.75, rtol=1e-6, atol=0)
    y = fdt.DropPath(0.25, scale_by_keep=False, generator=3)(x)
    assert torch.equal(y[kept], x[kept])


@pytest.mark.parametrize("args", [
    (0.3, 5, 8, None, "alpha", True),
    (0.3, 5, 8, [3, 1], "alpha", True),
    (0.3, 5, 8, [3, 1], "unscaled", True),
    (0.3, 0, 0, None, "alpha", False),
])
def test_torch_opcheck_family(args):
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.fastdrop.dropout.default, (x,) + args)
    torch.library.opcheck(torch.ops.fastdrop.dropout_grad.default, (x,) + args)


def test_torch_compile_fullgraph_alpha():
    f = torch.compile(lambda t: fdt.alpha_dropout(t * 2, 0.5, True, generator=12),
                      backend="aot_eager", fullgraph=True)
    x = torch.randn(40)
    assert torch.equal(f(x), fdt.alpha_dropout(x * 2, 0.5, True, generator=12))


def test_torch_gaussian_equals_numpy_and_gradient():
    for f, fn, bf in ((fdt.gaussian_dropout, fastdrop.gaussian_dropout,
                       fastdrop.gaussian_dropout_backward),
                      (fdt.gaussian_noise, fastdrop.gaussian_noise,
                       fastdrop.gaussian_noise_backward)):
        x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
        y = f(x, 0.3, generator=fastdrop.Generator(21))
        ref = fn(x.detach().numpy(), 0.3, rng=fastdrop.Generator(21))
        assert_array_equal(bits(y.detach().numpy()), bits(ref))
        gy = torch.randn(6, 5, dtype=torch.float64)
        y.backward(gy)
        want = bf(gy.numpy(), 0.3, state=(21, 0))
        assert_array_equal(bits(x.grad.numpy()), bits(want))


def test_torch_gaussian_gradcheck():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    for f in (fdt.gaussian_dropout, fdt.gaussian_noise):
        assert torch.autograd.gradcheck(lambda t: f(t, 0.4, generator=3), (x,))
        assert torch.autograd.gradgradcheck(lambda t: f(t, 0.4, generator=3) ** 2, (x,))


def test_torch_gaussian_modules_and_identities():
    x = torch.randn(4, 3)
    assert fdt.GaussianDropout(0.5).eval()(x) is x
    assert fdt.GaussianNoise(0.5).eval()(x) is x
    assert fdt.gaussian_dropout(x, 0.0, generator=1) is x
    assert fdt.gaussian_noise(x, 0.5, training=False) is x
    m = fdt.GaussianDropout(0.2, generator=fastdrop.Generator(4))
    assert_array_equal(bits(m(x).numpy()), bits(fastdrop.gaussian_dropout(
        x.numpy(), 0.2, rng=fastdrop.Generator(4))))
    assert repr(fdt.GaussianNoise(0.25)) == "GaussianNoise(stddev=0.25)"
    with pytest.raises(ValueError, match="p < 1"):
        fdt.GaussianDropout(1.0)
    with pytest.raises(ValueError, match="stddev"):
        fdt.GaussianNoise(-1.0)


@pytest.mark.parametrize("args", [
    ("gaussian_dropout", 0.3, 5, 8, None),
    ("gaussian_dropout", 0.3, 5, 8, [3, 1]),
    ("gaussian_noise", 0.7, 5, 8, [1, 5]),
])
def test_torch_opcheck_gaussian(args):
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.fastdrop.gaussian.default, (x,) + args)


def test_torch_compile_fullgraph_gaussian():
    for f in (fdt.gaussian_dropout, fdt.gaussian_noise):
        c = torch.compile(lambda t, f=f: f(t * 2, 0.5, generator=12), backend="aot_eager",
                          fullgraph=True)
        x = torch.randn(40)
        assert torch.equal(c(x), f(x * 2, 0.5, generator=12))


def test_torch_mc_dropout_turns_gaussian_dropout_on():
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), fdt.GaussianDropout(0.3),
                              fdt.GaussianNoise(0.3)).eval()
    with fdt.mc_dropout(net, rng=0):
        assert net[1].training and not net[2].training
    assert not net[1].training
    mean, std = fdt.mc_predict(net, torch.randn(5, 4), samples=8, rng=1)
    assert bool((std > 0).all())


@pytest.mark.parametrize("kind", ["gaussian_dropout", "gaussian_noise"])
def test_torch_gaussian_forward_ad(kind):
    import torch.autograd.forward_ad as fwAD

    f = getattr(fdt, kind)
    x, t = torch.randn(20, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    with fwAD.dual_level():
        y = f(fwAD.make_dual(x, t), 0.3, generator=4)
        primal, tangent = fwAD.unpack_dual(y)
    assert torch.equal(primal, f(x, 0.3, generator=4))
    # multiplicative noise: the tangent through the same noise; additive: itself
    want = f(t, 0.3, generator=4) if kind == "gaussian_dropout" else t
    assert torch.equal(tangent, want)
    _, jvp = torch.func.jvp(lambda v: f(v, 0.3, generator=4), (x,), (t,))
    assert torch.equal(jvp, want)
    g = torch.func.grad(lambda v: f(v, 0.3, generator=4).sum())(x)
    assert torch.equal(g, f(torch.ones(20, dtype=torch.float64), 0.3, generator=4)
                       if kind == "gaussian_dropout" else torch.ones(20, dtype=torch.float64))
