"""PyTorch's own dropout tests, ported to fastdrop.torch.

Sources (pytorch/pytorch):

- ``test/nn/test_dropout.py`` (``TestDropoutNN``, ``TestDropoutNNDeviceType``);
- the dropout OpInfos of ``torch/testing/_internal/common_methods_invocations.py``
  (``nn.functional.dropout``, ``dropout2d``, ``dropout3d``, ``alpha_dropout``,
  ``feature_alpha_dropout`` ``with_train`` / ``without_train``: their
  ``sample_inputs_dropout``, ``supports_forward_ad=True``,
  ``supports_fwgrad_bwgrad=True``, ``inplace_variant=...``), as the generic
  OpInfo tests run them (``test/test_ops_gradients.py``,
  ``test/test_ops_fwd_gradients.py``, ``test/test_ops.py``);
- the dropout tests of ``test/test_jit.py`` (``TestJit``).
  (``torch/testing/_internal/common_nn.py`` has no Dropout module tests.)

Adaptations.  fastdrop draws its masks from its own Philox stream, so no
test compares mask bits with torch's: they compare statistics, shapes,
dtypes, strides, scaling, gradients and errors.  Where torch makes a test
deterministic with ``torch.manual_seed`` (``wrapper_set_seed``,
``freeze_rng_state``), the port passes a fixed ``generator=`` seed (the mask
is then a deterministic function of the seed: dropout is a fixed linear
map) or restores torch's RNG state (``generator=None`` draws fastdrop's seed
from torch's RNG, so that works too).  Torch's functional
``dropout1d/2d/3d`` have no fastdrop functional form: the ports use the
``Dropout1d/2d/3d`` modules (torch's rank conventions).
"""

import contextlib
import itertools
import math
import warnings
from functools import partial

import pytest

torch = pytest.importorskip("torch")

import torch.autograd.forward_ad as fwAD  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.autograd import gradcheck, gradgradcheck  # noqa: E402
from torch.testing import make_tensor  # noqa: E402

import fastdrop.torch as fdt  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# the OpInfos' dtypes: floating_types_and(torch.float16, torch.bfloat16)
FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
S = 5       # torch.testing._internal.opinfo.core.S
SEED = 42   # wrapper_set_seed's torch.manual_seed(42), as a fastdrop seed

# SELU's constants, as in ATen's alpha dropout (Dropout.cpp)
_ALPHA = 1.7580993408473766


@pytest.fixture(autouse=True)
def _torch_seed():
    """Torch's test suite runs each test from a fixed seed; generator=None
    draws fastdrop's seeds from torch's RNG, so this makes every test here
    deterministic.  The caller's RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


@contextlib.contextmanager
def freeze_rng_state():
    """torch.testing._internal.common_utils.freeze_rng_state, for the CPU
    generator (the one fastdrop's generator=None draws from, whatever the
    tensor's device)."""
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)


def _tol(dtype):
    return {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float32: 1e-5,
            torch.float64: 1e-10}[dtype]


def _alpha_constants(p):
    """(a, b, c) of alpha dropout: kept -> a * x + b, dropped -> c
    (ATen's _dropout_impl with alpha_dropout=True)."""
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * (1 - p))
    return a, _ALPHA * a * p, _ALPHA * a * (p - 1)


# ============================================================================
# test/nn/test_dropout.py
# ============================================================================

def _check_dropout(cls, device, input, memory_format=torch.contiguous_format):
    """ported from pytorch test/nn/test_dropout.py
    (TestDropoutNNDeviceType._test_dropout), extended with the fraction of
    zeros, the scaling of kept elements, the gradient's mask, the in-place
    module's effect on its input and the repr string."""
    p = 0.2
    input = input.to(device).fill_(1 - p)
    dtype = input.dtype
    tol = _tol(dtype)

    module = cls(p)
    input_var = input.clone(memory_format=memory_format).requires_grad_()
    output = module(input_var)
    assert output.is_contiguous(memory_format=memory_format)
    assert output.shape == input.shape and output.dtype == dtype
    assert output.device == input.device
    out = output.detach()
    assert abs(out.double().mean().item() - (1 - p)) < 0.05
    dropped = out == 0
    assert abs(dropped.double().mean().item() - p) < 0.05
    # kept elements: x / (1 - p)
    expected = (input.double() / (1 - p)).to(dtype)
    torch.testing.assert_close(out[~dropped], expected[~dropped], rtol=tol, atol=tol)
    output.backward(input)
    grad = input_var.grad
    assert grad.is_contiguous(memory_format=memory_format)
    assert abs(grad.double().mean().item() - (1 - p)) < 0.05
    # backward: the same mask, the same scale
    assert torch.equal(grad == 0, dropped)
    torch.testing.assert_close(grad[~dropped], expected[~dropped], rtol=tol, atol=tol)

    module = cls(p, True)
    input_var = input.clone(memory_format=memory_format).requires_grad_()
    tmp = input_var + 0
    output = module(tmp)
    # inplace=True writes into its input (and returns it)
    assert output.data_ptr() == tmp.data_ptr()
    assert torch.equal(output.detach(), tmp.detach())
    assert output.is_contiguous(memory_format=memory_format)
    assert abs(output.detach().double().mean().item() - (1 - p)) < 0.05
    assert abs((output.detach() == 0).double().mean().item() - p) < 0.05
    output.backward(input)
    assert input_var.grad.is_contiguous(memory_format=memory_format)
    assert abs(input_var.grad.double().mean().item() - (1 - p)) < 0.05
    assert torch.equal(input_var.grad == 0, output.detach() == 0)

    # check eval mode doesn't change anything
    for inplace in [True, False]:
        module = cls(p, inplace).eval()
        before = input.clone()
        assert torch.equal(module(input), before)
        assert torch.equal(input, before)

    # Check that these don't raise errors; and the string is torch's
    module.__repr__()
    str(module)
    assert repr(cls(p)) == f"{cls.__name__}(p={p}, inplace=False)"
    assert cls(p, True).extra_repr() == f"p={p}, inplace=True"


def _check_dropout_discontiguous(cls, device, memory_format=torch.contiguous_format):
    """ported from pytorch test/nn/test_dropout.py
    (TestDropoutNNDeviceType._test_dropout_discontiguous): dropout keeps the
    values where they were for a strided view, with p 0 or almost 0."""
    close_to_zero_p = 1e-10  # almost zero but not zero (p = 0 takes another path)
    for p in [0, close_to_zero_p]:
        inp = torch.ones(2, 3, 3, 3, device=device)
        inp_discontiguous = torch.empty(2, 3, 3, 6, device=device,
                                        memory_format=memory_format)[..., ::2]
        inp_discontiguous.copy_(inp)
        mod = cls(p=p)
        out = mod(inp_discontiguous)
        if p != 0:  # Zero keeps the input (and its strides) as it is.
            # input stride (54, 18, 6, 2) -> output stride (27, 9, 3, 1), as torch
            assert out.is_contiguous(memory_format=memory_format)
        else:
            assert out is inp_discontiguous  # p == 0: the input itself, as torch
        torch.testing.assert_close(out, inp_discontiguous, rtol=0, atol=0)


def _check_dropout_stride_mean_preserve(cls, device):
    """ported from pytorch test/nn/test_dropout.py
    (TestDropoutNNDeviceType._test_dropout_stride_mean_preserve).

    No deliberate difference: fastdrop's output is ``torch.empty_like`` of
    the input, which keeps a permuted (even sliced) input's memory order,
    exactly as torch's dropout does."""
    def invert_perm(p):
        d = {x: i for i, x in enumerate(p)}
        return (d[0], d[1], d[2], d[3])

    inp = torch.ones(2, 3, 4, 5, device=device)
    shifts = [(0, 0), (1, 0), (0, 1), (1, 1)]
    for perm in itertools.permutations((0, 1, 2, 3), r=4):
        for shift in shifts:
            for p in [1e-10, 0.3, 0.5, 0.7]:
                mod = cls(p=p)
                permuted_inp = inp.permute(perm).contiguous().permute(invert_perm(perm))
                permuted_inp = permuted_inp[shift[0]:, shift[1]:, :, :]
                out = mod(permuted_inp)

                assert out.permute(perm).is_contiguous(), (perm, shift, p, out.stride())
                torch.testing.assert_close(inp.mean(), out.mean(), rtol=0.5, atol=0.5)
                if p == 1e-10:
                    torch.testing.assert_close(permuted_inp, out, rtol=0, atol=0)
                else:
                    assert not torch.equal(permuted_inp, out)


# ported from pytorch test/nn/test_dropout.py (TestDropoutNNDeviceType.test_Dropout):
# torch runs _test_dropout in the default dtype and in bfloat16 ("input =
# input.bfloat16()"); float16 and float64 added.
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_Dropout(device, dtype):
    input = torch.empty(1000, dtype=dtype)
    _check_dropout(fdt.Dropout, device, input)


# ported from pytorch test/nn/test_dropout.py (TestDropoutNNDeviceType.test_Dropout,
# its _test_dropout_discontiguous part, contiguous and channels_last)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_Dropout_discontiguous(device, memory_format):
    _check_dropout_discontiguous(fdt.Dropout, device, memory_format)


# ported from pytorch test/nn/test_dropout.py (TestDropoutNNDeviceType.test_Dropout,
# its _test_dropout_stride_mean_preserve part)
@pytest.mark.parametrize("device", DEVICES)
def test_Dropout_stride_mean_preserve(device):
    _check_dropout_stride_mean_preserve(fdt.Dropout, device)


def _check_dropoutNd_no_batch(dropout, input):
    """ported from pytorch test/nn/test_dropout.py
    (TestDropoutNNDeviceType._test_dropoutNd_no_batch): an unbatched input
    gets the mask of the same input with a batch axis of 1 (same RNG state,
    hence the same fastdrop seed)."""
    input_clone = input.clone()
    with freeze_rng_state():
        res_no_batch = dropout(input)
    with freeze_rng_state():
        res_batched = dropout(input_clone.unsqueeze(0)).squeeze(0)
    torch.testing.assert_close(res_no_batch, res_batched, rtol=0, atol=0)


def _check_dropoutNd_channel_zero(dropout, input):
    """ported from pytorch test/nn/test_dropout.py
    (TestDropoutNNDeviceType._test_dropoutNd_channel_zero): every channel of
    a positive input is all zeros or all nonzero."""
    shape = input.shape
    B, C = shape[0], shape[1]
    channel_numel = math.prod(shape[2:])
    result = dropout(input)
    counts = set()
    for b, c in itertools.product(range(B), range(C)):
        n = int(result[b, c].count_nonzero())
        assert n in (0, channel_numel)
        counts.add(n)
    assert counts == {0, channel_numel}  # with p = 0.5 and >= 40 channels: both happen


# ported from pytorch test/nn/test_dropout.py (TestDropoutNNDeviceType.test_Dropout1d)
@pytest.mark.parametrize("device", DEVICES)
def test_Dropout1d(device):
    # torch: with set_default_dtype(torch.double), N, C, L random in [10, 15]
    N, C, L = 12, 11, 13
    input = torch.empty(N, C, L, dtype=torch.double)
    _check_dropout(fdt.Dropout1d, device, input)

    with pytest.raises(RuntimeError, match="Expected 2D or 3D input, but received a 4D input"):
        fdt.Dropout1d(p=0.5)(torch.rand(1, 2, 2, 2, device=device))

    with pytest.raises(RuntimeError, match="Expected 2D or 3D input, but received a 1D input"):
        fdt.Dropout1d(p=0.5)(torch.rand(2, device=device))

    # no batch dims
    input = torch.rand(50, 2, device=device)
    _check_dropoutNd_no_batch(fdt.Dropout1d(p=0.5), input)
    _check_dropoutNd_no_batch(fdt.Dropout1d(p=0.5, inplace=True), input)

    # check that complete channels are dropped
    input = torch.ones(10, 4, 2, device=device)
    _check_dropoutNd_channel_zero(fdt.Dropout1d(p=0.5), input)
    _check_dropoutNd_channel_zero(fdt.Dropout1d(p=0.5, inplace=True), input)


# ported from pytorch test/nn/test_dropout.py (TestDropoutNNDeviceType.test_Dropout2d)
@pytest.mark.parametrize("device", DEVICES)
def test_Dropout2d(device):
    b, w, h = 3, 2, 4  # torch: random in [1, 5]
    num_features = 1000
    input = torch.empty(num_features, b, w, h)
    _check_dropout(fdt.Dropout2d, device, input)
    _check_dropout(fdt.Dropout2d, device, input, memory_format=torch.channels_last)

    _check_dropout_discontiguous(fdt.Dropout2d, device)
    _check_dropout_discontiguous(fdt.Dropout2d, device, memory_format=torch.channels_last)

    with pytest.warns(UserWarning, match="Received a 5-D input to dropout2d"):
        fdt.Dropout2d(p=0.5)(torch.rand(1, 2, 2, 2, 2, device=device))

    with pytest.warns(UserWarning, match="Received a 2-D input to dropout2d"):
        fdt.Dropout2d(p=0.5)(torch.rand(1, 2, device=device))

    # (torch keeps the historical dropout1d behaviour for 3D inputs, no
    # no-batch-dim test: pytorch issue 77081)
    with pytest.warns(UserWarning,
                      match="assuming that channel-wise 1D dropout behavior is desired"):
        fdt.Dropout2d(p=0.5)(torch.rand(1, 2, 2, device=device))

    # check that complete channels are dropped
    input = torch.ones(10, 4, 2, 2, device=device)
    _check_dropoutNd_channel_zero(fdt.Dropout2d(p=0.5), input)
    _check_dropoutNd_channel_zero(fdt.Dropout2d(p=0.5, inplace=True), input)


# ported from pytorch test/nn/test_dropout.py (TestDropoutNNDeviceType.test_Dropout3d)
@pytest.mark.parametrize("device", DEVICES)
def test_Dropout3d(device):
    b, w, h, d = 2, 3, 1, 2  # torch: random in [1, 5] ([1, 2] for d)
    num_features = 1000
    input = torch.empty(num_features, b, d, w, h)
    _check_dropout(fdt.Dropout3d, device, input)

    _check_dropout_discontiguous(fdt.Dropout3d, device)
    _check_dropout_discontiguous(fdt.Dropout3d, device, memory_format=torch.channels_last)

    with pytest.warns(UserWarning, match="Received a 6-D input to dropout3d"):
        fdt.Dropout3d(p=0.5)(torch.rand(1, 2, 2, 2, 2, 2, device=device))

    with pytest.warns(UserWarning, match="Received a 3-D input to dropout3d"):
        fdt.Dropout3d(p=0.5)(torch.rand(1, 2, 2, device=device))

    # no batch dims
    input = torch.rand(50, 2, 2, 2, device=device)
    _check_dropoutNd_no_batch(fdt.Dropout3d(p=0.5), input)
    _check_dropoutNd_no_batch(fdt.Dropout3d(p=0.5, inplace=True), input)

    # check that complete channels are dropped
    input = torch.ones(10, 4, 2, 2, 2, device=device)
    _check_dropoutNd_channel_zero(fdt.Dropout3d(p=0.5), input)
    _check_dropoutNd_channel_zero(fdt.Dropout3d(p=0.5, inplace=True), input)


# ported from pytorch test/nn/test_dropout.py (TestDropoutNNDeviceType.test_empty_dropout),
# extended to the modules, a 2-D empty tensor and backward
@pytest.mark.parametrize("device", DEVICES)
def test_empty_dropout(device):
    x = torch.tensor([]).to(device)
    out = fdt.dropout(x)
    assert out.size() == x.size()
    assert out.dtype == x.dtype and out.device == x.device

    for shape in [(0,), (0, 3), (2, 0, 4)]:
        x = torch.empty(shape, device=device, requires_grad=True)
        for layer in (fdt.Dropout(0.5), fdt.AlphaDropout(0.5)):
            out = layer(x)
            assert out.shape == x.shape
            out.sum().backward()
            assert x.grad.shape == x.shape
    x = torch.empty(2, 0, 4, device=device)
    assert fdt.Dropout1d(0.5)(x).shape == x.shape
    assert fdt.Dropout2d(0.5)(torch.empty(2, 3, 0, 4, device=device)).shape == (2, 3, 0, 4)
    assert fdt.Dropout3d(0.5)(torch.empty(0, 3, 1, 2, 2, device=device)).shape == (0, 3, 1, 2, 2)


# ported from pytorch test/nn/test_dropout.py (TestDropoutNN.test_invalid_dropout_p),
# extended to the alpha dropouts and NaN
def test_invalid_dropout_p():
    v = torch.ones(1)
    for cls in (fdt.Dropout, fdt.Dropout1d, fdt.Dropout2d, fdt.Dropout3d,
                fdt.AlphaDropout, fdt.FeatureAlphaDropout):
        for p in (-0.1, 1.1):
            with pytest.raises(ValueError):
                cls(p)
    for fn in (fdt.dropout, partial(fdt.alpha_dropout, training=True),
               partial(fdt.feature_alpha_dropout, training=True)):
        for p in (-0.1, 1.1, float("nan")):
            with pytest.raises(ValueError):
                fn(v.expand(1, 1), p)
    # evaluation mode checks p too (torch: F.dropout(v, 1.1, training=False) raises)
    with pytest.raises(ValueError):
        fdt.dropout(v, 1.1, training=False)


def _check_alpha_dropout(cls, input):
    """ported from pytorch test/nn/test_dropout.py
    (TestDropoutNN._test_alpha_dropout): alpha dropout keeps the mean and
    the standard deviation."""
    mean = input.mean()
    std = input.std()

    for p in [0.2, 0.5, 0.8]:
        module = cls(p)
        input_var = input.detach().clone().requires_grad_()
        output = module(input_var)
        # output mean should be close to input mean
        assert abs(output.data.mean() - mean) < 0.1
        # output std should be close to input std
        assert abs(output.data.std() - std) < 0.1
        output.backward(input)
        # fastdrop's extension: kept elements are a * x + b, dropped ones c,
        # the gradient a * grad where kept, 0 where dropped
        a, b, c = _alpha_constants(p)
        g, out = input_var.grad, output.detach()
        kept = g != 0  # input != 0 almost surely
        assert 0 < kept.double().mean().item() < 1
        torch.testing.assert_close(g[kept], (input * a)[kept])
        torch.testing.assert_close(out[kept], (input * a + b)[kept])
        torch.testing.assert_close(out[~kept], torch.full_like(out[~kept], c))


# ported from pytorch test/nn/test_dropout.py (TestDropoutNN.test_AlphaDropout)
def test_AlphaDropout():
    # generate random tensor with zero mean and unit std
    input = torch.randn(5000)
    _check_alpha_dropout(fdt.AlphaDropout, input)
    assert repr(fdt.AlphaDropout(0.2)).startswith("AlphaDropout(p=0.2")


# ported from pytorch test/nn/test_dropout.py (TestDropoutNN.test_FeatureAlphaDropout)
def test_FeatureAlphaDropout():
    b, w, h, d = 2, 3, 4, 1  # torch: random in [1, 5] ([1, 2] for d)
    num_features = 1000
    input = torch.randn(num_features, b, d, w, h)
    _check_alpha_dropout(fdt.FeatureAlphaDropout, input)

    # no batch dims
    input = torch.randn(50, 20, 64, 64)
    _check_alpha_dropout(fdt.FeatureAlphaDropout, input)


# ported from pytorch test/nn/test_dropout.py (TestDropoutNN.test_native_dropout_corner_case):
# p 0 and 1, training or not, are deterministic: fastdrop's values and
# gradients equal torch.dropout's exactly.  (torch runs it only with CUDA;
# here on every device.)
@pytest.mark.parametrize("device", DEVICES)
def test_native_dropout_corner_case(device):
    for train in [True, False]:
        for p in [0.0, 1.0]:
            for current_device in sorted({device, "cpu"}):
                x = torch.randn(5).to(device=current_device).requires_grad_()
                x_ref = x.detach().requires_grad_()
                o = fdt.dropout(x, p, train)
                o_ref = torch.dropout(x_ref, p, train)
                o.sum().backward()
                o_ref.sum().backward()
                assert o.equal(o_ref)
                assert x.grad.equal(x_ref.grad)


# extends pytorch test/nn/test_dropout.py (TestDropoutNNDeviceType._test_dropout's
# eval check): training=False, and p == 0 in training, return the input itself,
# as torch.nn.functional.dropout does; p == 1 gives zeros
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_dropout_identity_and_p_edges(device, dtype):
    x = make_tensor((S, S), device=device, dtype=dtype)
    assert F.dropout(x, 0.5, training=False) is x
    assert fdt.dropout(x, 0.5, training=False) is x
    assert fdt.dropout(x, 0.0, training=True) is x
    assert fdt.Dropout(0.5).eval()(x) is x
    assert fdt.alpha_dropout(x, 0.5, training=False) is x
    y = fdt.dropout(x, 1.0, training=True)
    assert y.dtype == dtype and torch.equal(y, torch.zeros_like(x))
    y = fdt.alpha_dropout(x, 1.0, training=True)
    assert y.dtype == dtype and torch.equal(y, torch.zeros_like(x))
    # in place, p == 1: the input becomes zeros
    z = x.clone()
    assert fdt.dropout(z, 1.0, True, True).data_ptr() == z.data_ptr()
    assert torch.equal(z, torch.zeros_like(x))


# ============================================================================
# the dropout OpInfos (torch/testing/_internal/common_methods_invocations.py)
# ============================================================================
# Each OpInfo's op is wrapped in wrapper_set_seed (torch.manual_seed(42)
# before every call): the port passes generator=SEED instead.

def _module_call(cls, x, p=0.5, training=True, inplace=False, *, generator=SEED):
    with warnings.catch_warnings():
        # dropout2d's 3-D samples: the "assuming channel-wise 1D" warning
        warnings.simplefilter("ignore", UserWarning)
        return cls(p, inplace, generator=generator).train(training)(x)


def _alpha_call(fn, x, *args, inplace=False, generator=SEED, **kwargs):
    if inplace:
        # torch's alpha_dropout / feature_alpha_dropout take inplace=;
        # pass it as the OpInfo's inplace_variant does
        kwargs["inplace"] = True
    return fn(x, *args, generator=generator, **kwargs)


class _Op:
    """One dropout OpInfo: fastdrop's op and in-place variant, the samples'
    shapes and training values, the kind of mask."""

    def __init__(self, name, op, inplace, *, train=None, valid_input_dim=None,
                 feature=False, alpha=False):
        self.name, self.op, self.inplace = name, op, inplace
        self.train, self.valid_input_dim = train, valid_input_dim
        self.feature, self.alpha = feature, alpha

    def __repr__(self):
        return self.name


OPS = [
    # OpInfo("nn.functional.dropout", sample_inputs_func=sample_inputs_dropout,
    #        inplace_variant=F.dropout(..., inplace=True))
    _Op("nn.functional.dropout",
        lambda x, *a, generator=SEED, **k: fdt.dropout(x, *a, generator=generator, **k),
        lambda x, *a, generator=SEED, **k: fdt.dropout(x, *a, inplace=True,
                                                       generator=generator, **k)),
    # OpInfo("nn.functional.dropout2d", valid_input_dim=(3, 4))
    _Op("nn.functional.dropout2d", partial(_module_call, fdt.Dropout2d),
        partial(_module_call, fdt.Dropout2d, inplace=True),
        valid_input_dim=(3, 4), feature=True),
    # OpInfo("nn.functional.dropout3d", valid_input_dim=(4, 5))
    _Op("nn.functional.dropout3d", partial(_module_call, fdt.Dropout3d),
        partial(_module_call, fdt.Dropout3d, inplace=True),
        valid_input_dim=(4, 5), feature=True),
    # OpInfo("nn.functional.alpha_dropout", gradcheck_wrapper=wrapper_set_seed)
    _Op("nn.functional.alpha_dropout", partial(_alpha_call, fdt.alpha_dropout),
        partial(_alpha_call, fdt.alpha_dropout, inplace=True), alpha=True),
    # OpInfo("nn.functional.feature_alpha_dropout", variant_test_name="with_train",
    #        train=True, valid_input_dim=(4, 5), gradcheck_fast_mode=True)
    _Op("nn.functional.feature_alpha_dropout.with_train",
        partial(_alpha_call, fdt.feature_alpha_dropout),
        partial(_alpha_call, fdt.feature_alpha_dropout, inplace=True),
        train=True, valid_input_dim=(4, 5), feature=True, alpha=True),
    # OpInfo("nn.functional.feature_alpha_dropout", variant_test_name="without_train",
    #        train=False)
    _Op("nn.functional.feature_alpha_dropout.without_train",
        partial(_alpha_call, fdt.feature_alpha_dropout),
        partial(_alpha_call, fdt.feature_alpha_dropout, inplace=True),
        train=False, feature=True, alpha=True),
]


def sample_inputs_dropout(op, device, dtype, requires_grad):
    """ported from pytorch torch/testing/_internal/common_methods_invocations.py
    (sample_inputs_dropout): shapes (S, S), (S,), () or (S,) * d for the
    valid ranks d, p in {0, 0.5, 1}, training True/False, then one sample
    with the defaults.  Yields (input, kwargs)."""
    make_arg = partial(make_tensor, device=device, dtype=dtype, requires_grad=requires_grad)
    if op.valid_input_dim:
        cases = [(S,) * i for i in op.valid_input_dim]
    else:
        cases = [(S, S), (S,), ()]
    training_vals = [op.train] if op.train is not None else [True, False]
    for case, p, training in itertools.product(cases, [0.0, 0.5, 1.0], training_vals):
        yield make_arg(case), dict(p=p, training=training)
    yield make_arg(case), {}


# deliberate difference: fastdrop's feature_alpha_dropout checks the input's
# rank (an (N, C, ...) tensor, at least 2 axes) in evaluation mode too, and
# with p 0 or 1, and raises ValueError ("feature_alpha_dropout needs an input
# with at least 2 axes (N, C, ...)"); torch's F.feature_alpha_dropout returns
# such an input (or zeros) unchecked, and raises RuntimeError ("Feature
# dropout requires at least 2 dimensions in the input") only in training with
# 0 < p < 1.  fastdrop checks every argument in evaluation mode too, so that a
# bad one does not hide until training starts (fastdrop/adapters/torch.py,
# dropout()).  The OpInfo samples this concerns (feature_alpha_dropout's (S,)
# and () inputs) check the ValueError instead.
def _deliberately_refused(op, x, kwargs):
    return op.name.startswith("nn.functional.feature_alpha_dropout") and x.dim() < 2


def _is_training(op, kwargs):
    default = not op.alpha  # F.dropout / dropout2d / dropout3d: True; alpha ones: False
    return kwargs.get("training", default)


def _check_sample_output(op, x, kwargs, y):
    """What one sample's output must be, mask bits aside."""
    p = kwargs.get("p", 0.5)
    training = _is_training(op, kwargs)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    x, y = x.detach(), y.detach()
    if not training or p == 0:
        assert torch.equal(y, x)
        return
    if p == 1:
        assert torch.equal(y, torch.zeros_like(x))
        return
    tol = _tol(x.dtype)
    if op.alpha:
        a, b, c = _alpha_constants(p)
        drop_val = torch.full_like(x, c, dtype=torch.float64)
        keep_val = x.double() * a + b
    else:
        drop_val = torch.zeros_like(x, dtype=torch.float64)
        keep_val = x.double() / (1 - p)
    yd = y.double()
    # every element is the dropped value or the kept one (an element can be
    # both: x == 0 in dropout, x == -alpha in alpha dropout)
    is_drop = torch.isclose(yd, drop_val, rtol=tol, atol=4 * tol)
    is_keep = torch.isclose(yd, keep_val, rtol=tol, atol=4 * tol)
    assert bool((is_drop | is_keep).all()), (kwargs, x, y)
    if op.feature:
        # whole channels: one decision for all the trailing axes
        # (dropout2d's 3-D input: (N, C, L); dropout3d's 4-D: (C, D, H, W))
        lead = 1 if (op.name.endswith("dropout3d") and x.dim() == 4) else 2
        n = math.prod(x.shape[:lead])
        channel_dropped = is_drop.reshape(n, -1).all(1)
        channel_kept = is_keep.reshape(n, -1).all(1)
        assert bool((channel_dropped | channel_kept).all()), (kwargs, x, y)


# ported from pytorch test/test_ops.py (TestCommon.test_dtypes /
# test_variant_consistency_eager forward part) over the dropout OpInfos'
# sample_inputs_dropout, dtypes floating_types_and(float16, bfloat16)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_opinfo_samples(op, device, dtype):
    for x, kwargs in sample_inputs_dropout(op, device, dtype, requires_grad=False):
        if _deliberately_refused(op, x, kwargs):
            with pytest.raises(ValueError, match="at least 2 axes"):
                op.op(x, **kwargs)
            continue
        y = op.op(x, **kwargs)
        _check_sample_output(op, x, kwargs, y)
        # the same seed, the same mask (wrapper_set_seed's determinism)
        assert torch.equal(op.op(x, **kwargs), y)


def _grad_samples(op, device):
    for x, kwargs in sample_inputs_dropout(op, device, torch.float64, requires_grad=True):
        if _deliberately_refused(op, x, kwargs):
            continue
        yield x, kwargs


def _fast_mode(x):
    # torch's test suite runs gradcheck in fast mode unless
    # PYTORCH_TEST_WITH_SLOW_GRADCHECK; here: slow mode for the small inputs
    return x.numel() > S * S


# ported from pytorch test/test_ops_gradients.py (TestBwdGradients.test_fn_grad)
# for the dropout OpInfos: gradcheck in float64, check_grad_dtypes and
# check_undefined_grad as there.  Torch runs it with
# check_batched_grad=op.check_batched_grad (True for these OpInfos): that part
# is test_fn_grad_batched, below, so that it reports on its own.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_fn_grad(op, device):
    for x, kwargs in _grad_samples(op, device):
        assert gradcheck(lambda t: op.op(t, **kwargs), (x,), check_batched_grad=False,
                         check_grad_dtypes=True, check_undefined_grad=True,
                         fast_mode=_fast_mode(x))


# ported from pytorch test/test_ops_gradients.py (TestBwdGradients.test_fn_grad),
# its check_batched_grad=True part (gradcheck's vmap over the backward)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_fn_grad_batched(op, device):
    for x, kwargs in _grad_samples(op, device):
        assert gradcheck(lambda t: op.op(t, **kwargs), (x,), check_batched_grad=True,
                         check_grad_dtypes=True, check_undefined_grad=True,
                         fast_mode=_fast_mode(x))


# ported from pytorch test/test_ops_gradients.py (TestBwdGradients.test_fn_gradgrad):
# gradgradcheck with contiguous and non-contiguous grad outputs; torch's
# check_batched_grad=op.check_batched_gradgrad (True) part is
# test_fn_gradgrad_batched
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_fn_gradgrad(op, device):
    for x, kwargs in _grad_samples(op, device):
        for gen_non_contig_grad_outputs in (False, True):
            assert gradgradcheck(lambda t: op.op(t, **kwargs), (x,),
                                 gen_non_contig_grad_outputs=gen_non_contig_grad_outputs,
                                 check_batched_grad=False, check_grad_dtypes=True,
                                 fast_mode=_fast_mode(x))


# ported from pytorch test/test_ops_gradients.py (TestBwdGradients.test_fn_gradgrad),
# its check_batched_grad=True part
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_fn_gradgrad_batched(op, device):
    for x, kwargs in _grad_samples(op, device):
        assert gradgradcheck(lambda t: op.op(t, **kwargs), (x,), check_batched_grad=True,
                             check_grad_dtypes=True, fast_mode=_fast_mode(x))


# ported from pytorch test/test_ops_fwd_gradients.py (TestFwdGradients.test_forward_mode_AD):
# supports_forward_ad=True, check_batched_forward_grad=False.
# (Torch marks feature_alpha_dropout with_train expectedFailure here, for its
# random op inside vmap; fastdrop's mask comes from the seed, so it is run.)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_forward_mode_AD(op, device):
    for x, kwargs in _grad_samples(op, device):
        assert gradcheck(lambda t: op.op(t, **kwargs), (x,), check_forward_ad=True,
                         check_backward_ad=False, check_batched_grad=False,
                         check_undefined_grad=True, check_batched_forward_grad=False,
                         fast_mode=_fast_mode(x))


# ported from pytorch test/test_ops_fwd_gradients.py (TestFwdGradients.test_fn_fwgrad_bwgrad):
# supports_fwgrad_bwgrad=True (forward over reverse)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_fn_fwgrad_bwgrad(op, device):
    for x, kwargs in _grad_samples(op, device):
        for gen_non_contig_grad_outputs in (False, True):
            assert gradgradcheck(lambda t: op.op(t, **kwargs), (x,),
                                 gen_non_contig_grad_outputs=gen_non_contig_grad_outputs,
                                 check_fwd_over_rev=True, check_rev_over_rev=False,
                                 check_batched_grad=False, check_undefined_grad=False,
                                 check_grad_dtypes=True, fast_mode=_fast_mode(x))


def _inplace_fn(op, kwargs):
    # torch's _get_safe_inplace: the in-place variant on a clone
    return lambda t: op.inplace(t.clone(), **kwargs)


# ported from pytorch test/test_ops_gradients.py (TestBwdGradients.test_inplace_grad)
# for the OpInfos' inplace_variant (dropout: F.dropout(..., inplace=True);
# dropout2d/3d: the modules with inplace=True; alpha_dropout and
# feature_alpha_dropout: inplace=True, as in torch's signatures)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_inplace_grad(op, device):
    for x, kwargs in _grad_samples(op, device):
        assert gradcheck(_inplace_fn(op, kwargs), (x,), check_batched_grad=False,
                         check_grad_dtypes=True, check_undefined_grad=True,
                         fast_mode=_fast_mode(x))


# ported from pytorch test/test_ops_gradients.py (TestBwdGradients.test_inplace_gradgrad)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_inplace_gradgrad(op, device):
    for x, kwargs in _grad_samples(op, device):
        assert gradgradcheck(_inplace_fn(op, kwargs), (x,), check_batched_grad=False,
                             check_grad_dtypes=True, fast_mode=_fast_mode(x))


# ported from pytorch test/test_ops_fwd_gradients.py
# (TestFwdGradients.test_inplace_forward_mode_AD)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_inplace_forward_mode_AD(op, device):
    for x, kwargs in _grad_samples(op, device):
        assert gradcheck(_inplace_fn(op, kwargs), (x,), check_forward_ad=True,
                         check_backward_ad=False, check_batched_grad=False,
                         check_undefined_grad=True, check_batched_forward_grad=False,
                         fast_mode=_fast_mode(x))


# ported from pytorch test/test_ops.py (TestCommon.test_variant_consistency_eager)
# for the OpInfos' inplace_variant: with the same seed the in-place result
# equals the out-of-place one, it is written into (and returned as) the
# input, and the gradients agree
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_variant_consistency_eager(op, device, dtype):
    for x, kwargs in sample_inputs_dropout(op, device, dtype, requires_grad=True):
        if _deliberately_refused(op, x, kwargs):
            continue
        expected = op.op(x, **kwargs)
        cotangent = torch.randn_like(x)
        (g_expected,) = torch.autograd.grad(expected, x, cotangent)

        base = x.detach().clone()
        out = op.inplace(base, **kwargs)
        assert out.data_ptr() == base.data_ptr()
        torch.testing.assert_close(base, expected.detach(), rtol=0, atol=0)

        t = x.clone()  # a non-leaf: autograd records the in-place op
        out = op.inplace(t, **kwargs)
        torch.testing.assert_close(out.detach(), expected.detach(), rtol=0, atol=0)
        (g,) = torch.autograd.grad(out, x, cotangent)
        torch.testing.assert_close(g, g_expected, rtol=0, atol=0)


# extends TestCommon.test_variant_consistency_eager: the in-place op on a leaf
# that requires grad is refused, as torch refuses it
@pytest.mark.parametrize("device", DEVICES)
def test_inplace_on_leaf_requiring_grad_raises(device):
    x = torch.randn(4, 4, device=device, requires_grad=True)
    with pytest.raises(RuntimeError):
        F.dropout(x, 0.5, True, True)
    with pytest.raises(RuntimeError):
        fdt.dropout(x, 0.5, True, True)
    with pytest.raises(RuntimeError):
        fdt.Dropout2d(0.5, True)(torch.randn(2, 3, 4, 4, device=device, requires_grad=True))


# ported from pytorch test/test_ops.py (TestCommon.test_noncontiguous_samples):
# the op on a non-contiguous copy of each sample gives the same values and
# gradients (same seed: fastdrop's mask follows the logical index)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_noncontiguous_samples(op, device):
    contiguous = list(sample_inputs_dropout(op, device, torch.float32, requires_grad=True))
    for (x, kwargs) in contiguous:
        if _deliberately_refused(op, x, kwargs):
            continue
        nc = make_tensor(x.shape, device=device, dtype=x.dtype, noncontiguous=True)
        nc.copy_(x.detach())
        nc.requires_grad_()
        assert x.dim() == 0 or x.numel() <= 1 or not nc.is_contiguous()
        y = op.op(x, **kwargs)
        y_nc = op.op(nc, **kwargs)
        torch.testing.assert_close(y_nc, y, rtol=0, atol=0)
        cotangent = torch.randn_like(y)
        (g,) = torch.autograd.grad(y, x, cotangent)
        (g_nc,) = torch.autograd.grad(y_nc, nc, cotangent)
        torch.testing.assert_close(g_nc, g, rtol=0, atol=0)


# ported from pytorch test/test_ops.py (TestMathBits.test_neg_view) for the
# dropout OpInfos (torch skips nn.functional.dropout's only on CUDA): the op
# on a negative view (torch._neg_view, the neg bit set) equals the op on the
# materialised tensor, values and gradients
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_neg_view(op, device):
    for x, kwargs in sample_inputs_dropout(op, device, torch.float64, requires_grad=False):
        if _deliberately_refused(op, x, kwargs):
            continue
        neg = torch._neg_view(x)
        assert neg.is_neg()
        expected = op.op(neg.resolve_neg(), **kwargs)
        torch.testing.assert_close(op.op(neg, **kwargs), expected, rtol=0, atol=0)

        # a negative view as the gradient's input (backward of the op)
        leaf = x.clone().requires_grad_()
        out = op.op(leaf, **kwargs)
        if not out.requires_grad:
            continue
        g_neg = torch._neg_view(torch.ones_like(x))
        (g,) = torch.autograd.grad(out, leaf, g_neg)
        (g_ref,) = torch.autograd.grad(op.op(leaf, **kwargs), leaf, g_neg.resolve_neg())
        torch.testing.assert_close(g, g_ref, rtol=0, atol=0)


def _expected_tangent(op, kwargs, tangent):
    """The tangent of a fixed-seed dropout: the same mask applied to the
    tangent (the gradient's select: the alpha dropouts' shift and fill do
    not enter it, so it is op(t) - op(0))."""
    t = op.op(tangent, **kwargs)
    if op.alpha:
        t = t - op.op(torch.zeros_like(tangent), **kwargs)
    return t


def _layouts(x):
    """x itself and a transposed (non-contiguous) view with the same values."""
    yield x
    if x.dim() >= 2:
        yield x.transpose(0, -1).contiguous().transpose(0, -1)


# ported from the OpInfos' supports_forward_ad=True, explicitly: torch.autograd.forward_ad
# (dual tensors) gives the tangent dropped with the same mask as the primal,
# for contiguous and transposed inputs
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_forward_ad_tangent_uses_the_mask(op, device):
    for x0, kwargs in _grad_samples(op, device):
        for x in _layouts(x0.detach()):
            tangent = torch.randn_like(x)
            with fwAD.dual_level():
                dual = fwAD.make_dual(x, tangent)
                y = op.op(dual, **kwargs)
                primal, t = fwAD.unpack_dual(y)
            torch.testing.assert_close(primal, op.op(x, **kwargs), rtol=0, atol=0)
            assert t is not None, f"no tangent: {kwargs}, shape {tuple(x.shape)}, " \
                                  f"strides {x.stride()}"
            torch.testing.assert_close(t, _expected_tangent(op, kwargs, tangent))


# ported from the OpInfos' supports_forward_ad=True through torch.func.jvp
# (functorch's test/functorch/test_ops.py TestOperators.test_jvp)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS, ids=repr)
def test_func_jvp(op, device):
    for x0, kwargs in _grad_samples(op, device):
        for x in _layouts(x0.detach()):
            tangent = torch.randn_like(x)
            primal, t = torch.func.jvp(lambda u: op.op(u, **kwargs), (x,), (tangent,))
            torch.testing.assert_close(primal, op.op(x, **kwargs), rtol=0, atol=0)
            torch.testing.assert_close(t, _expected_tangent(op, kwargs, tangent))


# ============================================================================
# test/test_jit.py
# ============================================================================

# ported from pytorch test/test_jit.py (TestJit.test_dropout): a traced dropout
# replayed from the same RNG state gives the same output.  fastdrop's trace
# records the op fastdrop::draw_seed (generator=None), so the traced model
# draws its seed from torch's RNG on every call, as eager does.
def test_jit_trace_dropout():
    x = torch.ones(2, 2)
    layer = fdt.Dropout(0.6)
    with torch.random.fork_rng(devices=[]):
        traced = torch.jit.trace(layer, x, check_trace=False)
    assert "fastdrop::draw_seed" in str(traced.graph)
    x = torch.ones(50, 40)
    with freeze_rng_state():
        outputs = layer(x)
    with freeze_rng_state():
        torch.testing.assert_close(traced(x), outputs, rtol=0, atol=0)
    # a new mask per call
    assert not torch.equal(traced(x), traced(x))
    y = traced(torch.ones(10000))
    assert abs((y == 0).double().mean().item() - 0.6) < 0.03
    # deliberate difference: tracing a layer whose generator is stateful
    # (here a torch.Generator) raises: its seed would be frozen into the
    # trace (fastdrop/adapters/torch.py, "Compilation, tracing, scripting");
    # torch.nn.Dropout takes no generator
    with pytest.raises(RuntimeError, match="freeze the seed"):
        torch.jit.trace(fdt.Dropout(0.6, generator=torch.Generator()), torch.ones(2, 2))
    # an int seed is a fixed mask by design
    fixed = torch.jit.trace(fdt.Dropout(0.6, generator=SEED), torch.ones(2, 2))
    assert torch.equal(fixed(x), fixed(x))


# ported from pytorch test/test_jit.py (TestJit.test_dropout_module_requires_grad):
# a scripted model with a dropout layer, in train() and eval(), with inputs
# that do and do not require grad.  Torch checks with the profiler that
# bernoulli_ runs in training only; the port checks the outputs: the scripted
# model equals the eager one from the same RNG state, the dropout applies in
# training only, and gradients flow.
@pytest.mark.parametrize("device", DEVICES)
def test_jit_script_dropout_module_requires_grad(device):
    class MyModule(nn.Module):
        def __init__(self, M):
            super().__init__()
            self.dropout = fdt.Dropout(0.5)
            self.linear = nn.Linear(M, M)

        def forward(self, input):
            input = self.dropout(input)
            output = self.linear(input)
            return output

    M = 100
    eager = MyModule(M).to(device)
    scripted = torch.jit.script(eager)
    for training in (True, False):
        scripted.train(training)
        eager.train(training)
        for requires_grad in (True, False):
            X = torch.randn(M, M, device=device, requires_grad=requires_grad)
            with freeze_rng_state():
                out = scripted(X)
            with freeze_rng_state():
                ref = eager(X)
            torch.testing.assert_close(out, ref, rtol=0, atol=0)
            no_dropout = eager.linear(X)
            assert torch.allclose(out, no_dropout) is not training
            if requires_grad:
                (g,) = torch.autograd.grad(out.sum(), X)
                assert g.shape == X.shape


# ported from pytorch test/test_jit.py (TestJit.test_dropout_func_requires_grad):
# deliberate difference: fastdrop's functional forms cannot be scripted
# (Python functions with keyword-only arguments; only the layers are
# scriptable, in-process: fastdrop/adapters/_torchscript.py), so the port
# traces the functional form (the trace records fastdrop::draw_seed) and
# scripts the layer
@pytest.mark.parametrize("requires_grad", [True, False])
def test_jit_dropout_func_requires_grad(requires_grad):
    def dropout_training(input):
        return fdt.dropout(input, 0.5, training=True)

    def dropout_eval(input):
        return fdt.dropout(input, 0.5, training=False)

    M = 100
    X0 = torch.randn(M, M)
    traced_training = torch.jit.trace(dropout_training, (X0,), check_trace=False)
    traced_eval = torch.jit.trace(dropout_eval, (X0,))
    X = torch.randn(M, M, requires_grad=requires_grad)
    y = traced_training(X)
    assert abs((y == 0).double().mean().item() - 0.5) < 0.05
    assert not torch.equal(traced_training(X), traced_training(X))
    torch.testing.assert_close(traced_eval(X), X, rtol=0, atol=0)
    if requires_grad:
        (g,) = torch.autograd.grad(y.sum(), X)
        assert torch.equal(g == 0, y == 0)

    layer = torch.jit.script(fdt.Dropout(0.5))
    y = layer(X)
    assert abs((y == 0).double().mean().item() - 0.5) < 0.05
    torch.testing.assert_close(layer.eval()(X), X, rtol=0, atol=0)


# ported from pytorch test/test_jit.py (TestJit.test_native_dropout_corner_case):
# scripted dropout with p 0 or 1, training or not, equals torch's eager
# dropout exactly, values and gradients (torch runs it only with CUDA)
@pytest.mark.parametrize("device", DEVICES)
def test_jit_native_dropout_corner_case(device):
    for train in [True, False]:
        for p in [0.0, 1.0]:
            jit_t = torch.jit.script(fdt.Dropout(p)).train(train)
            for current_device in sorted({device, "cpu"}):
                x = torch.randn(5).to(device=current_device).requires_grad_()
                x_ref = x.detach().requires_grad_()
                o = jit_t(x)
                o_ref = torch.dropout(x_ref, p, train)
                o.sum().backward()
                o_ref.sum().backward()
                assert o.equal(o_ref)
                assert x.grad.equal(x_ref.grad)


# ported from pytorch test/test_jit.py (TestJit.test_dropout_cuda): scripted
# dropout against eager dropout from the same RNG state, by the rate of zeros
# of the output and of the gradient (torch: CUDA only; here every device)
@pytest.mark.parametrize("device", DEVICES)
def test_jit_dropout_zero_rate(device):
    def _zero_rate(t):
        return torch.true_divide((t == 0).sum(), t.numel())

    x = torch.ones(1000, 1000, device=device).requires_grad_()
    func = torch.jit.script(fdt.Dropout())  # p = 0.5, as F.dropout's default

    with freeze_rng_state():
        out_ref = fdt.dropout(x)
        grad_ref = torch.autograd.grad(out_ref.sum(), x)
    with freeze_rng_state():
        out = func(x)
        grad = torch.autograd.grad(out.sum(), x)

    torch.testing.assert_close(_zero_rate(out), _zero_rate(out_ref), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(_zero_rate(grad[0]), _zero_rate(grad_ref[0]), rtol=1e-3,
                               atol=1e-4)
    # from the same RNG state fastdrop draws the same seed: the same mask
    assert torch.equal(out, out_ref)
    assert abs(_zero_rate(out).item() - 0.5) < 0.005
