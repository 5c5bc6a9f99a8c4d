"""fastdrop.torch: the custom op, autograd, compile, checkpointing, modules."""

import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal

torch = pytest.importorskip("torch")

import fastdrop  # noqa: E402
import fastdrop.torch as fdt  # noqa: E402
from fastdrop.adapters.torch import _to_i64  # noqa: E402

DTYPES = [torch.float16, torch.float32, torch.float64]


def _x(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def _np(t):
    return t.detach().numpy()


# ----------------------------------------------------------------------------
# same numbers as fastdrop.dropout
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (1,), (33,), (7, 9), (2, 3, 5)])
@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_equals_fastdrop_dropout(dtype, shape, mode):
    x = _x(shape, dtype)
    g1, g2 = fastdrop.Generator(99, offset=3), fastdrop.Generator(99, offset=3)
    y = fdt.dropout(x, 0.3, generator=g1, mode=mode)
    ref = fastdrop.dropout(_np(x), 0.3, rng=g2, mode=mode)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_array_equal(_np(y), ref)
    assert g1.state == g2.state


@pytest.mark.parametrize("make", [
    lambda x: x.t(),                                  # transposed
    lambda x: x[::2, 1::3],                           # strided
    lambda x: x[:, :1].expand(-1, 6),                 # stride-0 broadcast view
    lambda x: x.t().contiguous().t(),                 # Fortran order
])
def test_strided_inputs(make):
    x = make(_x((8, 6)))
    y = fdt.dropout(x, 0.5, generator=fastdrop.Generator(5))
    ref = fastdrop.dropout(_np(x), 0.5, rng=fastdrop.Generator(5))
    assert_array_equal(_np(y), ref)


@pytest.mark.parametrize("noise_shape", [(1, 9), (7, 1), (1, 1), (None, 1), "spatial"])
def test_noise_shape(noise_shape):
    x = _x((7, 9), torch.float64)
    y = fdt.dropout(x, 0.5, generator=fastdrop.Generator(4, offset=1), noise_shape=noise_shape)
    ns = (7, 9) if noise_shape == "spatial" else noise_shape
    ref = fastdrop.dropout(_np(x), 0.5, rng=fastdrop.Generator(4, offset=1), noise_shape=ns)
    assert_array_equal(_np(y), ref)


@pytest.mark.parametrize("seed,offset", [(2**64 - 1, 0), (2**63, 2**63 + 5), (2**63 - 1, 2**64 - 64)])
def test_uint64_seed_and_offset_reinterpreted(seed, offset):
    x = _x((5, 8))
    y = fdt.dropout(x, 0.5, generator=fastdrop.Generator(seed, offset))
    assert_array_equal(_np(y), fastdrop.dropout(_np(x), 0.5, rng=fastdrop.Generator(seed, offset)))
    y_int = fdt.dropout(x, 0.5, generator=seed)
    assert_array_equal(_np(y_int), fastdrop.dropout(_np(x), 0.5, rng=seed))
    assert _to_i64(seed) < 2**63


def test_generator_none_follows_torch_rng():
    x = _x((40, 30))
    torch.manual_seed(3)
    a = fdt.dropout(x, 0.5)
    torch.manual_seed(3)
    b = fdt.dropout(x, 0.5)
    assert torch.equal(a, b)
    c = fdt.dropout(x, 0.5)
    assert not torch.equal(a, c)                       # the next call draws a new seed
    torch.manual_seed(3)
    seed = fdt.draw_seed()
    assert_array_equal(_np(a), fastdrop.dropout(_np(x), 0.5, rng=seed))


def test_torch_generator_and_numpy_generator():
    x = _x((10, 10))
    a = fdt.dropout(x, 0.5, generator=torch.Generator().manual_seed(7))
    seed = fdt.draw_seed(torch.Generator().manual_seed(7))
    assert_array_equal(_np(a), fastdrop.dropout(_np(x), 0.5, rng=seed))
    b = fdt.dropout(x, 0.5, generator=np.random.default_rng(1))
    assert_array_equal(_np(b), fastdrop.dropout(_np(x), 0.5, rng=np.random.default_rng(1)))


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_extreme_p(p):
    x = _x((6, 5))
    y = fdt.dropout(x, p, generator=1)
    assert_array_equal(_np(y), fastdrop.dropout(_np(x), p, rng=1))
    # torch.nn.functional.dropout(x, 0.0, True) returns x itself; p == 1 a new tensor
    assert (y is x) == (p == 0.0)
    assert (y.data_ptr() == x.data_ptr()) == (p == 0.0)


def test_eval_mode():
    x = _x((4, 5), torch.float16)
    assert fdt.dropout(x, 0.3, training=False) is x
    y = fdt.dropout(x, 0.3, training=False, mode="classic")
    assert_array_equal(_np(y), fastdrop.dropout(_np(x), 0.3, training=False, mode="classic"))
    xr = x.double().requires_grad_()
    fdt.dropout(xr, 0.3, training=False, mode="classic").sum().backward()
    assert_array_equal(_np(xr.grad), np.full((4, 5), 0.7))


def test_errors():
    with pytest.raises(TypeError, match="bfloat16"):
        fdt.dropout(torch.ones(3, dtype=torch.bfloat16), 0.5)
    with pytest.raises(TypeError, match="int64"):
        fdt.dropout(torch.ones(3, dtype=torch.int64), 0.5)
    with pytest.raises(TypeError):
        fdt.dropout(np.ones(3), 0.5)
    with pytest.raises(ValueError):
        fdt.dropout(torch.ones(3), 1.5)
    with pytest.raises(ValueError):
        fdt.dropout(torch.ones(3), float("nan"))
    with pytest.raises(ValueError):
        fdt.dropout(torch.ones(3), 0.5, mode="bad")
    with pytest.raises(ValueError):
        fdt.dropout(torch.ones(3, 4), 0.5, noise_shape=(2, 4))
    with pytest.raises(ValueError):
        fdt.dropout(torch.ones(3), 0.5, noise_shape="spatial")
    with pytest.raises(TypeError):
        fdt.Dropout(0.5, generator="seed")
    with pytest.raises(TypeError, match="bfloat16"):
        torch.ops.fastdrop.dropout(torch.ones(3, dtype=torch.bfloat16), 0.5, 0, 0, None,
                                   "inverted", True)


# ----------------------------------------------------------------------------
# autograd and the custom op
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {},
    {"mode": "classic"},
    {"noise_shape": (4, 1)},
    {"save_mask": True},
    {"save_mask": True, "noise_shape": (1, 5)},
])
def test_gradcheck(kwargs):
    x = _x((4, 5), torch.float64).requires_grad_()
    f = lambda t: fdt.dropout(t, 0.4, generator=fastdrop.Generator(3, offset=5), **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("save_mask", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_is_dropout_backward(save_mask, dtype):
    x = _x((6, 7), dtype).requires_grad_()
    g = fastdrop.Generator(11, offset=2)
    saved = g.state
    y = fdt.dropout(x, 0.3, generator=g, save_mask=save_mask)
    grad = _x((6, 7), dtype, seed=1)
    y.backward(grad)
    ref = fastdrop.dropout_backward(_np(grad), 0.3, state=saved)
    assert_array_equal(_np(x.grad), ref)


def test_backward_regenerates_instead_of_storing():
    x = _x((3, 4)).requires_grad_()
    y = fdt.dropout(x, 0.5, generator=1)
    assert y.grad_fn.saved_tensors == ()                 # only (seed, offset) kept
    packed_y = fdt.dropout(x, 0.5, generator=1, save_mask=True)
    assert torch.equal(y, packed_y)
    (packed,) = packed_y.grad_fn.saved_tensors           # ceil(12 / 8) bytes
    assert_array_equal(packed.numpy(), fastdrop.dropout_mask(12, 0.5, rng=1, packed=True))


OPCHECK_CASES = [
    (torch.ops.fastdrop.dropout.default, lambda x: (x, 0.3, 5, 8, None, "inverted", True)),
    (torch.ops.fastdrop.dropout.default, lambda x: (x, 0.3, -5, 2**62, [3, 1], "classic", True)),
    (torch.ops.fastdrop.dropout.default, lambda x: (x, 0.3, 0, 0, None, "classic", False)),
    (torch.ops.fastdrop.dropout_packed.default, lambda x: (x, 0.3, 5, 8, [1, 5], "inverted")),
    (torch.ops.fastdrop.apply_mask.default,
     lambda x: (x, torch.tensor([0b10110111, 0b01011101], dtype=torch.uint8), 0.3, None,
                "inverted")),
]


@pytest.mark.parametrize("op,make_args", OPCHECK_CASES)
def test_opcheck(op, make_args):
    x = _x((3, 5), torch.float64).requires_grad_()
    torch.library.opcheck(op, make_args(x))


# ----------------------------------------------------------------------------
# modules
# ----------------------------------------------------------------------------

def test_dropout_module_train_eval():
    layer = fdt.Dropout(0.25, generator=fastdrop.Generator(2))
    x = _x((16, 8))
    y = layer(x)
    assert_array_equal(_np(y), fastdrop.dropout(_np(x), 0.25, rng=fastdrop.Generator(2)))
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.train()
    assert not torch.equal(layer(x), y)               # generator advanced
    assert "p=0.25" in repr(layer)


@pytest.mark.parametrize("cls,shape,ns", [
    (fdt.Dropout1d, (3, 4, 5), (3, 4, 1)),
    (fdt.Dropout1d, (4, 5), (4, 1)),
    (fdt.Dropout2d, (2, 3, 4, 5), (2, 3, 1, 1)),
    (fdt.Dropout2d, (3, 4, 5), (3, 1, 1)),
    (fdt.Dropout3d, (2, 3, 2, 4, 5), (2, 3, 1, 1, 1)),
])
def test_spatial_dropout(cls, shape, ns):
    x = _x(shape)
    y = cls(0.5, generator=fastdrop.Generator(6))(x)
    ref = fastdrop.dropout(_np(x), 0.5, rng=fastdrop.Generator(6), noise_shape=ns)
    assert_array_equal(_np(y), ref)
    with pytest.raises(ValueError):
        cls(0.5)(torch.ones((2,) * (len(shape) + 2)))


def test_spatial_noise_shape_module():
    x = _x((2, 3, 4, 4))
    a = fdt.Dropout(0.5, noise_shape="spatial", generator=8)(x)
    b = fdt.Dropout2d(0.5, generator=8)(x)
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------
# torch.compile and activation checkpointing
# ----------------------------------------------------------------------------

def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), fdt.Dropout(0.3),
                               torch.nn.Linear(16, 4), fdt.Dropout(0.1, noise_shape=(1, 4)))


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compile_matches_eager(backend):
    torch._dynamo.reset()
    model = _model()
    compiled = torch.compile(model, backend=backend)
    x = _x((5, 8))
    for step in range(3):
        torch.manual_seed(100 + step)
        ye = model(x)
        ye.sum().backward()
        ge = model[0].weight.grad.clone()
        model.zero_grad()
        torch.manual_seed(100 + step)
        yc = compiled(x)
        yc.sum().backward()
        gc = model[0].weight.grad.clone()
        model.zero_grad()
        assert_array_equal(_np(yc), _np(ye))
        assert_array_equal(_np(gc), _np(ge))
    assert not torch.equal(ye, model(x))              # masks do change between steps


def test_compile_fullgraph_with_int_seed():
    torch._dynamo.reset()
    f = torch.compile(lambda t: fdt.dropout(t * 2, 0.5, generator=12), backend="aot_eager",
                      fullgraph=True)
    x = _x((6, 6))
    assert_array_equal(_np(f(x)), fastdrop.dropout(_np(x * 2), 0.5, rng=12))


@pytest.mark.parametrize("save_mask", [False, True])
def test_activation_checkpoint_recomputes_same_mask(save_mask):
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    lin1, mid, lin2 = torch.nn.Linear(8, 32), torch.nn.Linear(32, 16), torch.nn.Linear(16, 3)
    drop = fdt.Dropout(0.5, save_mask=save_mask)
    x = _x((10, 8))

    def block(t):
        # `mid` saves the dropout output for backward: under checkpointing that
        # saved value is the *recomputed* one, so a different mask would show
        # up in mid's weight gradient.
        return mid(drop(torch.relu(lin1(t))))

    def run(use_checkpoint):
        lin1.zero_grad()
        mid.zero_grad()
        torch.manual_seed(42)
        h = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
        lin2(h).square().sum().backward()
        return h.detach().clone(), lin1.weight.grad.clone(), mid.weight.grad.clone()

    plain = run(False)
    ckpt = run(True)
    for a, b in zip(plain, ckpt):
        assert_array_equal(_np(b), _np(a))


# ----------------------------------------------------------------------------
# training: fastdrop.torch.Dropout vs torch.nn.Dropout on sklearn's digits
# ----------------------------------------------------------------------------

def _train_digits(dropout_cls, seed, data, epochs=12):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), dropout_cls(0.3),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return (model(xte).argmax(1) == yte).float().mean().item()


def test_training_digits_matches_torch_dropout():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    X = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1347], perm[1347:]
    data = (X[tr], y[tr], X[te], y[te])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention
    try:
        ours = [_train_digits(fdt.Dropout, s, data) for s in range(3)]
        theirs = [_train_digits(torch.nn.Dropout, s, data) for s in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert min(ours) > 0.9 and min(theirs) > 0.9, (ours, theirs)
    assert abs(np.mean(ours) - np.mean(theirs)) < 0.03, (ours, theirs)


# ----------------------------------------------------------------------------
# packaging and docs
# ----------------------------------------------------------------------------

def test_import_fastdrop_does_not_import_torch():
    code = "import sys, fastdrop; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    x = _x((33, 17))
    y_cpu = fdt.dropout(x, 0.4, generator=fastdrop.Generator(5, offset=3))
    y_gpu = fdt.dropout(x.cuda(), 0.4, generator=fastdrop.Generator(5, offset=3))
    assert_array_equal(y_gpu.cpu().numpy(), _np(y_cpu))
    xr = x.cuda().requires_grad_()
    fdt.dropout(xr, 0.4, generator=fastdrop.Generator(5, offset=3), save_mask=True).sum().backward()
    assert_array_equal(xr.grad.cpu().numpy(), (_np(y_cpu) != 0) * np.float32(1 / 0.6))


def test_docs_example():
    # the PyTorch example of README's "Use inside other frameworks"
    import numpy as np
    import torch
    import fastdrop
    import fastdrop.torch as fdt

    torch.manual_seed(0)                  # seeds are drawn from torch's RNG: runs are reproducible
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(),
        fdt.Dropout(p=0.2),               # drop-in for torch.nn.Dropout
        torch.nn.Linear(128, 10),
    )
    x = torch.randn(32, 64)
    model(x).square().mean().backward()   # backward regenerates the mask
    model.eval()                          # dropout is now the identity

    # Functional form; with a fastdrop.Generator it equals fastdrop.dropout on NumPy:
    y = fdt.dropout(x, p=0.5, generator=fastdrop.Generator(1234))
    ref = fastdrop.dropout(x.numpy(), p=0.5, rng=fastdrop.Generator(1234))
    assert np.array_equal(y.numpy(), ref)

    # Channel dropout: one decision per (sample, channel)
    z = fdt.Dropout2d(p=0.5)(torch.randn(8, 16, 5, 5))
    # (end of the docs example)
    zero = (z == 0).flatten(2)
    assert (zero.all(2) | ~zero.any(2)).all() and zero.any()

