"""Monte Carlo dropout: fastdrop.mc_dropout (NumPy models) and
fastdrop.torch.mc_dropout / mc_predict (torch models)."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fastdrop

W1 = np.random.default_rng(0).standard_normal((4, 16))
W2 = np.random.default_rng(1).standard_normal((16, 2))


def numpy_model(x, rng):
    h = np.maximum(x @ W1, 0.0)
    return fastdrop.dropout(h, 0.3, rng=rng) @ W2


X = np.random.default_rng(2).standard_normal((5, 4))


def test_mc_dropout_reproducible_and_seeded():
    m1, s1 = fastdrop.mc_dropout(numpy_model, X, samples=30, rng=11)
    m2, s2 = fastdrop.mc_dropout(numpy_model, X, samples=30, rng=11)
    assert_array_equal(m1, m2)
    assert_array_equal(s1, s2)
    m3, _ = fastdrop.mc_dropout(numpy_model, X, samples=30, rng=12)
    assert not np.array_equal(m1, m3)
    assert m1.dtype == s1.dtype == np.float64 and m1.shape == (5, 2)


def test_mc_dropout_passes_are_the_spawned_generators():
    mean, std, samples = fastdrop.mc_dropout(numpy_model, X, samples=7, rng=3,
                                             return_samples=True)
    gens = fastdrop.Generator(3).spawn(7)
    want = np.stack([numpy_model(X, g) for g in gens])
    assert_array_equal(samples, want)
    assert_allclose(mean, want.mean(0), rtol=1e-13, atol=1e-13)
    assert_allclose(std, want.std(0), rtol=1e-12, atol=1e-13)
    _, std1 = fastdrop.mc_dropout(numpy_model, X, samples=7, rng=3, ddof=1)
    assert_allclose(std1, want.std(0, ddof=1), rtol=1e-12, atol=1e-13)


def test_mc_dropout_generator_rng_spawns():
    g = fastdrop.Generator(5)
    a = fastdrop.mc_dropout(numpy_model, X, samples=4, rng=g)[0]
    b = fastdrop.mc_dropout(numpy_model, X, samples=4, rng=g)[0]
    assert not np.array_equal(a, b)  # the spawn counter moved on
    assert_array_equal(a, fastdrop.mc_dropout(numpy_model, X, samples=4, rng=5)[0])


@pytest.mark.parametrize("kw,exc", [(dict(samples=0), ValueError),
                                    (dict(samples=2.5), TypeError),
                                    (dict(samples=True), TypeError),
                                    (dict(samples=3, rng="x"), TypeError),
                                    (dict(samples=1, ddof=1), ValueError)])
def test_mc_dropout_bad_arguments(kw, exc):
    with pytest.raises(exc):
        fastdrop.mc_dropout(numpy_model, X, **kw)


torch = pytest.importorskip("torch")
fdt = pytest.importorskip("fastdrop.torch")


def _net(dropout_layer):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.BatchNorm1d(16),
                               torch.nn.ReLU(), dropout_layer, torch.nn.Linear(16, 2))


def test_context_manager_modes_and_restore():
    net = _net(torch.nn.Dropout(0.3)).train()
    with fdt.mc_dropout(net, rng=0) as ctx:
        assert net[3].training and not net[1].training and not net.training
        assert ctx.generator is not None
    assert all(m.training for m in net.modules())      # restored: all were training
    assert "forward" not in net[3].__dict__            # torch.nn.Dropout's own forward again
    net.eval()
    with fdt.mc_dropout(net):
        pass
    assert not any(m.training for m in net.modules())


def test_mc_predict_reproducible_freezes_batch_norm_and_equals_fastdrop_layers():
    xt = torch.randn(6, 4)
    net = _net(torch.nn.Dropout(0.3)).eval()
    bn_before = net[1].running_mean.clone()
    m1, s1, samples = fdt.mc_predict(net, xt, samples=9, rng=4, return_samples=True)
    m2, s2 = fdt.mc_predict(net, xt, samples=9, rng=4)
    assert torch.equal(m1, m2) and torch.equal(s1, s2)
    assert torch.equal(net[1].running_mean, bn_before)  # batch norm stayed frozen
    assert samples.shape == (9, 6, 2) and bool((s1 > 0).any())
    torch.testing.assert_close(m1, samples.double().mean(0))
    torch.testing.assert_close(s1, samples.double().std(0, unbiased=False))
    # a torch.nn.Dropout inside the context draws fastdrop's masks: the same
    # passes as the same network built with fastdrop's layer
    same = _net(fdt.Dropout(0.3)).eval()
    same.load_state_dict(net.state_dict())
    m3, s3 = fdt.mc_predict(same, xt, samples=9, rng=4)
    assert torch.equal(m1, m3) and torch.equal(s1, s3)
    assert same[3].generator is None                      # its own generator restored


@pytest.mark.parametrize("layer,fd_layer", [
    (lambda: torch.nn.Dropout2d(0.4), lambda: fdt.Dropout2d(0.4)),
    (lambda: torch.nn.AlphaDropout(0.2), lambda: fdt.AlphaDropout(0.2)),
])
def test_torch_layers_map_to_fastdrop_forms(layer, fd_layer):
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), layer())
    fd = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), fd_layer())
    fd.load_state_dict(net.state_dict())
    xt = torch.randn(2, 2, 4, 4)
    assert torch.equal(fdt.mc_predict(net, xt, samples=3, rng=2)[0],
                       fdt.mc_predict(fd, xt, samples=3, rng=2)[0])
