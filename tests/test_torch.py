"""fastdrop.torch: the custom op, autograd, compile, checkpointing, modules."""

import os
import shutil
import subprocess
import sys

import warnings

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
    with pytest.raises(TypeError, match="complex64"):
        fdt.dropout(torch.ones(3, dtype=torch.complex64), 0.5)
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
    with pytest.raises(TypeError, match="complex64"):
        torch.ops.fastdrop.dropout(torch.ones(3, dtype=torch.complex64), 0.5, 0, 0, None,
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
    (fdt.Dropout2d, (3, 4, 5), (3, 4, 1)),       # torch: a 3-D input is (N, C, L), warned
    (fdt.Dropout3d, (2, 3, 2, 4, 5), (2, 3, 1, 1, 1)),
    (fdt.Dropout3d, (3, 2, 4, 5), (3, 1, 1, 1)),  # unbatched (C, D, H, W)
])
def test_spatial_dropout(cls, shape, ns):
    x = _x(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = cls(0.5, generator=fastdrop.Generator(6))(x)
    ref = fastdrop.dropout(_np(x), 0.5, rng=fastdrop.Generator(6), noise_shape=ns)
    assert_array_equal(_np(y), ref)


def _shared_axes(y):
    """The axes along which a dropout result of ones is constant (the
    broadcast axes of its mask), found from the values."""
    return tuple(a for a in range(y.dim()) if y.shape[a] > 1
                 and bool((y == y.narrow(a, 0, 1)).all()))


TORCH_ND = [(cls, tcls, d) for cls, tcls, ds in (
    (fdt.Dropout1d, torch.nn.Dropout1d, (2, 3)),
    (fdt.Dropout2d, torch.nn.Dropout2d, (2, 3, 4, 5)),
    (fdt.Dropout3d, torch.nn.Dropout3d, (2, 3, 4, 5, 6))) for d in ds]


@pytest.mark.parametrize("cls,tcls,d", TORCH_ND,
                         ids=[f"{c.__name__}-{d}d" for c, _, d in TORCH_ND])
def test_spatial_dropout_follows_torch(cls, tcls, d):
    # torch.nn.functional.dropout1d/2d/3d: the same channel axis per rank, the
    # same warnings (deprecated ranks, Dropout2d's 3-D input) and errors
    x = torch.ones((6,) * d)
    # torch's mask from a seeded generator: an unseeded one makes all six channel
    # decisions equal in 1 run of 32, and the shared axes found from the values
    # then include the channel axis (seen once the suite ran under pytest-xdist)
    with warnings.catch_warnings(record=True) as tw, torch.random.fork_rng():
        warnings.simplefilter("always")
        torch.manual_seed(20)
        ty = tcls(0.5)(x)
    with warnings.catch_warnings(record=True) as fw:
        warnings.simplefilter("always")
        fy = cls(0.5, generator=3)(x)
    assert [str(w.message) for w in fw] == [str(w.message) for w in tw]
    assert _shared_axes(fy) == _shared_axes(ty)


@pytest.mark.parametrize("d", [1, 4])
def test_dropout1d_wrong_rank_is_torch_error(d):
    x = torch.ones((3,) * d)
    with pytest.raises(RuntimeError) as te:
        torch.nn.Dropout1d(0.5)(x)
    with pytest.raises(RuntimeError) as fe:
        fdt.Dropout1d(0.5)(x)
    assert str(fe.value) == str(te.value)


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
    # the PyTorch example of docs/frameworks.rst (also run by test_doc_examples)
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



# ----------------------------------------------------------------------------
# inplace=, torch's signatures, the eager fast path
# ----------------------------------------------------------------------------

def test_signatures_match_torch():
    import inspect

    tf = inspect.signature(torch.nn.functional.dropout).parameters
    ff = inspect.signature(fdt.dropout).parameters
    assert list(ff)[:4] == list(tf)[:4] == ["input", "p", "training", "inplace"]
    assert [ff[k].default for k in tf] == [tf[k].default for k in tf]
    assert all(ff[k].kind is inspect.Parameter.KEYWORD_ONLY for k in list(ff)[4:])
    for cls in (fdt.Dropout, fdt.Dropout1d, fdt.Dropout2d, fdt.Dropout3d):
        tc = inspect.signature(getattr(torch.nn, cls.__name__)).parameters
        fc = inspect.signature(cls).parameters
        assert list(fc)[:2] == list(tc) == ["p", "inplace"]
        assert [fc[k].default for k in tc] == [tc[k].default for k in tc]
        assert all(fc[k].kind is inspect.Parameter.KEYWORD_ONLY for k in list(fc)[2:])
    assert repr(fdt.Dropout(0.2, True)) == repr(torch.nn.Dropout(0.2, True))


@pytest.mark.parametrize("shape", [(1000,), (7, 33), (2, 3, 4, 5)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_inplace_equals_out_of_place(shape, dtype):
    x = torch.randn(shape, dtype=dtype)
    want = fdt.dropout(x, 0.3, generator=fastdrop.Generator(4))
    v = x._version
    y = fdt.dropout(x, 0.3, True, True, generator=fastdrop.Generator(4))
    assert y is x and x._version > v
    assert_array_equal(_np(x), _np(want))
    x = torch.randn(shape, dtype=dtype).t() if len(shape) == 2 else torch.randn(shape, dtype=dtype)
    want = fdt.dropout(x, 0.3, generator=fastdrop.Generator(4))
    assert fdt.dropout(x, 0.3, inplace=True, generator=fastdrop.Generator(4)) is x
    assert_array_equal(_np(x), _np(want))


def test_inplace_autograd_like_torch():
    leaf = torch.randn(10, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        torch.nn.functional.dropout(leaf, 0.5, inplace=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        fdt.dropout(leaf, 0.5, inplace=True, generator=1)
    # a non-leaf: the in-place result is recorded, the gradient is dropout's
    a = torch.randn(50, requires_grad=True)
    h = a * 1.0
    y = fdt.Dropout(0.4, True, generator=9)(h)
    assert y is h
    y.sum().backward()
    b = torch.randn(50).requires_grad_()
    fdt.dropout(b * 1.0, 0.4, generator=9).sum().backward()
    assert torch.equal(a.grad, b.grad)
    m = fdt.Dropout(0.4, True).eval()
    x = torch.randn(5)
    assert m(x) is x


@pytest.mark.parametrize("n", [1, 1000, 70000])
@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_fast_path_equals_op_path(n, mode):
    # the eager fast path (no custom op) against the op and the NumPy API
    x = torch.randn(n, requires_grad=True)
    y = fdt.dropout(x, 0.3, mode=mode, generator=fastdrop.Generator(2))
    ref = fastdrop.dropout(_np(x), 0.3, mode=mode, rng=fastdrop.Generator(2))
    assert_array_equal(_np(y), ref)
    op = torch.ops.fastdrop.dropout(x.detach(), 0.3, 2, 0, None, mode, True)
    assert_array_equal(_np(op), ref)
    g = torch.randn(n)
    y.backward(g)
    assert_array_equal(_np(x.grad), fastdrop.dropout_backward(_np(g), 0.3, state=2, mode=mode))


def test_stride0_gradient_equals_contiguous():
    # y.sum().backward() hands dropout an expanded (stride-0) gradient
    x = torch.randn(3, 1000, requires_grad=True)
    fdt.dropout(x, 0.5, generator=5).sum().backward()
    g1 = x.grad.clone()
    x.grad = None
    fdt.dropout(x, 0.5, generator=5).backward(torch.ones(3, 1000))
    assert torch.equal(g1, x.grad)


def test_forward_mode_ad_is_dropout_of_the_tangent():
    import torch.autograd.forward_ad as fwAD

    x = torch.randn(100)
    t = torch.randn(100)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, t)
        y = fdt.dropout(dual, 0.5, generator=3)
        primal, tangent = fwAD.unpack_dual(y)
    assert torch.equal(primal, fdt.dropout(x, 0.5, generator=3))
    assert torch.equal(tangent, fdt.dropout(t, 0.5, generator=3))
    _, jvp = torch.func.jvp(lambda v: fdt.dropout(v, 0.5, generator=3), (x,), (t,))
    assert torch.equal(jvp, tangent)


def test_functorch_transforms():
    # torch.func: jvp and grad are the select of the tangent / cotangent;
    # under vmap every batch element gets the same mask (the seed is drawn
    # once; generator=None follows vmap's randomness flag)
    x, t = torch.randn(10), torch.randn(10)
    p, j = torch.func.jvp(lambda v: fdt.dropout(v, 0.5, generator=3), (x,), (t,))
    assert torch.equal(j, fdt.dropout(t, 0.5, generator=3))
    g = torch.func.grad(lambda v: fdt.dropout(v, 0.5, generator=3).sum())(x)
    assert torch.equal(g, fdt.dropout(torch.ones(10), 0.5, generator=3))
    J = torch.func.jacrev(lambda v: fdt.dropout(v, 0.5, generator=3))(torch.ones(6))
    assert torch.equal(J, torch.diag(fdt.dropout(torch.ones(6), 0.5, generator=3)))
    y = torch.func.vmap(lambda v: fdt.dropout(v, 0.5, generator=3))(torch.ones(3, 6))
    assert torch.equal(y, fdt.dropout(torch.ones(6), 0.5, generator=3).expand(3, 6))
    with pytest.raises(RuntimeError, match="randomness"):
        torch.func.vmap(lambda v: fdt.dropout(v, 0.5))(torch.ones(3, 6))
    y = torch.func.vmap(lambda v: fdt.dropout(v, 0.5), randomness="same")(torch.ones(3, 6))
    assert torch.equal(y, y[:1].expand(3, 6))


def _mlp_step(fd):
    def f(t):
        h = fd.dropout(t * 2, 0.5)
        return fd.dropout(h + 1, 0.3) + fd.dropout(h + 1, 0.3, mode="classic")
    return f


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_default_generator_equals_eager(backend):
    # generator=None under torch.compile: the seed is drawn inside the graph
    # (fastdrop::draw_seed) from torch's CPU generator, in graph order, so
    # fullgraph=True works and values and gradients equal eager's
    cxx = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
    if backend == "inductor" and shutil.which(cxx) is None:  # torch's own default
        pytest.skip(f"inductor compiles C++ on the CPU: no C++ compiler ({cxx}) on PATH")
    f = _mlp_step(fdt)
    c = torch.compile(f, backend=backend, fullgraph=True)
    x = torch.randn(64, requires_grad=True)
    torch.manual_seed(0)
    ye = f(x)
    ye.sum().backward()
    ge, x.grad = x.grad.clone(), None
    torch.manual_seed(0)
    yc = c(x)
    yc.sum().backward()
    assert torch.equal(ye, yc) and torch.equal(ge, x.grad)
    assert not torch.equal(c(x), c(x))  # a new mask per call


def test_export_default_generator():
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), fdt.Dropout(0.5))
    ep = torch.export.export(m, (torch.randn(4, 8),))
    x = torch.ones(4, 8)
    torch.manual_seed(3)
    a = ep.module()(x)
    torch.manual_seed(3)
    assert torch.equal(a, m(x))


def test_jit_trace_draws_a_new_mask_per_call():
    # the seed is drawn by an op of the traced graph (never a frozen constant)
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), fdt.Dropout(0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the trace check sees different masks: expected
        tr = torch.jit.trace(m, torch.randn(2, 8))
    x = torch.ones(2, 8)
    assert not torch.equal(tr(x), tr(x))
    torch.manual_seed(5)
    a = tr(x)
    torch.manual_seed(5)
    assert torch.equal(a, m(x))
    for g in (torch.Generator(), fastdrop.Generator(1)):
        with pytest.raises(RuntimeError, match="freeze the seed"):
            torch.jit.trace(fdt.Dropout(0.5, generator=g), torch.ones(3))


@pytest.mark.parametrize("make", [lambda: fdt.Dropout(0.3), lambda: fdt.Dropout2d(0.3),
                                  lambda: fdt.AlphaDropout(0.3), lambda: fdt.DropPath(0.3),
                                  lambda: fdt.GaussianDropout(0.3),
                                  lambda: fdt.GaussianNoise(0.3)])
def test_jit_script_modules(make):
    layer = make()
    s = torch.jit.script(torch.nn.Sequential(torch.nn.Identity(), layer))
    x = torch.ones(2, 3, 4, 4)
    assert s(x).shape == x.shape and not torch.equal(s(x), x)
    s.eval()
    assert torch.equal(s(x), x)


@pytest.mark.parametrize("shape,ns", [((1000,), None), ((4, 6, 5), (4, 1, 5))])
def test_bfloat16_tensors(shape, ns):
    # bfloat16 (docs/spec.md §4): the NumPy API's ml_dtypes result, bit for bit,
    # forward and backward, on the fast path and the op path
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = torch.randn(shape, dtype=torch.bfloat16, requires_grad=True)
    y = fdt.dropout(x, 0.3, generator=fastdrop.Generator(2), noise_shape=ns)
    xn = x.detach().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    ref = fastdrop.dropout(xn, 0.3, rng=fastdrop.Generator(2), noise_shape=ns)
    assert y.dtype == torch.bfloat16
    assert_array_equal(y.detach().view(torch.int16).numpy(), ref.view(np.int16))
    g = torch.randn(shape, dtype=torch.bfloat16)
    y.backward(g)
    want = fastdrop.dropout_backward(g.view(torch.int16).numpy().view(ml_dtypes.bfloat16), 0.3,
                                     state=(2, 0), noise_shape=ns)
    assert_array_equal(x.grad.view(torch.int16).numpy(), want.view(np.int16))


def test_bfloat16_autocast_model():
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), fdt.Dropout(0.5), torch.nn.Linear(8, 2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(torch.randn(3, 4))
    out.float().sum().backward()
    assert m[0].weight.grad is not None


def _vm_flags(addr):
    """The VmFlags of the mapping holding ``addr`` (/proc/self/smaps)."""
    start = end = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(v, 16) for v in head.split("-"))
                start, end = lo, hi
            elif head == "VmFlags:" and start is not None and start <= addr < end:
                return line.split()[1:]
    return None


def _have_extension():
    try:
        from fastdrop._cython import _kernels  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _have_extension()
                    or not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"),
                    reason="MADV_HUGEPAGE is Linux's (a kernel with transparent huge "
                    "pages); the hint is the extension's")
@pytest.mark.parametrize("path", ["fast", "op", "grad"])
def test_large_results_ask_for_huge_pages(path):
    """A large CPU result (4 MiB on) is advised MADV_HUGEPAGE before it is
    written, as NumPy does for its arrays: torch's allocator hands out
    fresh memory whose 4 KiB page faults took most of a 16 Mi-element call.
    The flag is the mapping's ("hg" in /proc/self/smaps), whatever the
    machine's THP mode; the values are the NumPy API's."""
    n = 3 << 20  # 12 MiB of float32
    x = torch.from_numpy(np.linspace(-1, 1, n, dtype=np.float32))
    if path == "fast":
        y = fdt.dropout(x, 0.5, generator=7)
        want = fastdrop.dropout(x.numpy(), 0.5, rng=7)
    elif path == "op":  # a noise shape: the custom op
        y = fdt.dropout(x.view(3, -1), 0.5, generator=7, noise_shape=(3, n // 3)).reshape(-1)
        want = fastdrop.dropout(x.numpy(), 0.5, rng=7)
    else:
        xg = x.clone().requires_grad_()
        fdt.dropout(xg.view(3, -1), 0.5, generator=7, noise_shape=(3, n // 3)).sum().backward()
        y = xg.grad
        want = fastdrop.dropout(np.ones(n, np.float32), 0.5, rng=7)
    assert_array_equal(y.numpy().view(np.uint32), want.view(np.uint32))
    huge = 2 << 20
    inner = (y.data_ptr() + huge - 1) & ~(huge - 1)  # a whole 2 MiB page inside y
    flags = _vm_flags(inner)
    assert flags is not None and "hg" in flags, flags
