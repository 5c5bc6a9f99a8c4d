"""fastdrop.dask: chunked dropout equals fastdrop.dropout on the whole array."""

import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal

da = pytest.importorskip("dask.array")

import fastdrop  # noqa: E402
import fastdrop.dask as fdd  # noqa: E402


def _data(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


CHUNKINGS = [
    ((37, 53), -1),                              # one chunk
    ((37, 53), (8, 8)),
    ((37, 53), ((5, 1, 20, 11), (13, 40))),      # uneven
    ((37, 53), ((37,), (1,) * 53)),              # one column per chunk
    ((4, 5, 6), ((1, 3), (2, 2, 1), (5, 1))),
    ((1000,), ((3, 997),)),
]


@pytest.mark.parametrize("shape,chunks", CHUNKINGS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_equals_fastdrop_dropout(shape, chunks, dtype):
    a = _data(shape, dtype)
    x = da.from_array(a, chunks=chunks)
    g1 = fastdrop.Generator(1234, offset=5)      # odd offset: blocks do not start on a Philox block
    g2 = fastdrop.Generator(1234, offset=5)
    y = fdd.dropout(x, 0.3, rng=g1)
    assert g1.offset == g2.offset + (a.size + 7) // 8 * 8   # advanced at graph-build time
    ref = fastdrop.dropout(a, 0.3, rng=g2)
    out = y.compute()
    assert out.dtype == a.dtype and out.shape == a.shape
    assert_array_equal(out, ref)
    assert y.chunks == x.chunks


@pytest.mark.parametrize("noise_shape", [(1, 53), (37, 1), (1, 1), (37, None)])
@pytest.mark.parametrize("chunks", [(8, 8), ((5, 1, 20, 11), (13, 40))])
def test_noise_shape(noise_shape, chunks):
    a = _data((37, 53), np.float32, 1)
    x = da.from_array(a, chunks=chunks)
    y = fdd.dropout(x, 0.4, rng=fastdrop.Generator(9, offset=3), noise_shape=noise_shape)
    ref = fastdrop.dropout(a, 0.4, rng=fastdrop.Generator(9, offset=3), noise_shape=noise_shape)
    assert_array_equal(y.compute(), ref)


def test_noise_shape_3d_and_classic_mode():
    a = _data((6, 7, 8), np.float64, 2)
    x = da.from_array(a, chunks=((2, 4), (3, 3, 1), (5, 3)))
    for ns in [(6, 1, 8), (1, 7, 1), (6, 7, 1)]:
        y = fdd.dropout(x, 0.5, rng=77, noise_shape=ns, mode="classic")
        ref = fastdrop.dropout(a, 0.5, rng=77, noise_shape=ns, mode="classic")
        assert_array_equal(y.compute(), ref)


CPU_BACKENDS = [name for name, info in fastdrop.get_backends().items()
                if info["available"] and name != "cuda"]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_explicit_backend(backend):
    a = _data((23, 19), np.float32, 8)
    x = da.from_array(a, chunks=((10, 13), (4, 15)))
    y = fdd.dropout(x, 0.5, rng=fastdrop.Generator(3, offset=7), noise_shape=(23, 1),
                    backend=backend)
    ref = fastdrop.dropout(a, 0.5, rng=fastdrop.Generator(3, offset=7), noise_shape=(23, 1),
                           backend="reference")
    assert_array_equal(y.compute(), ref)
    m = fdd.dropout_mask((23, 19), 0.5, rng=4, chunks=(5, 7), backend=backend)
    assert_array_equal(m.compute(), fastdrop.dropout_mask((23, 19), 0.5, rng=4,
                                                          backend="reference"))


@pytest.mark.parametrize("p", [0.0, 1.0, 0.999])
def test_extreme_p(p):
    a = _data((10, 9), np.float32, 3)
    x = da.from_array(a, chunks=4)
    assert_array_equal(fdd.dropout(x, p, rng=5).compute(), fastdrop.dropout(a, p, rng=5))


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_eval(mode):
    a = _data((10, 9), np.float16, 4)
    x = da.from_array(a, chunks=4)
    y = fdd.dropout(x, 0.3, training=False, mode=mode)
    assert_array_equal(y.compute(), fastdrop.dropout(a, 0.3, training=False, mode=mode))


def test_numpy_generator_and_seed():
    a = _data((20, 30), np.float32, 5)
    x = da.from_array(a, chunks=7)
    y = fdd.dropout(x, 0.5, rng=np.random.default_rng(11))
    ref = fastdrop.dropout(a, 0.5, rng=np.random.default_rng(11))
    assert_array_equal(y.compute(), ref)


def test_recompute_same_result_and_keys():
    a = _data((50, 40), np.float32, 6)
    x = da.from_array(a, chunks=(13, 17))
    y = fdd.dropout(x, 0.5)                       # fresh entropy, fixed at graph build
    first = y.compute()
    assert_array_equal(y.compute(), first)
    assert_array_equal((y + 0).compute(), first)
    g = fastdrop.Generator(1)
    y1, y2 = fdd.dropout(x, 0.5, rng=g), fdd.dropout(x, 0.5, rng=g)
    assert y1.name != y2.name                     # different offsets, different keys
    assert not np.array_equal(y1.compute(), y2.compute())


def test_zero_d_and_empty():
    a = np.array(3.0, dtype=np.float32)
    assert_array_equal(fdd.dropout(da.from_array(a), 0.5, rng=0).compute(),
                       fastdrop.dropout(a, 0.5, rng=0))
    e = np.empty((0, 4), np.float32)
    assert fdd.dropout(da.from_array(e), 0.5, rng=0).compute().shape == (0, 4)


def test_numpy_input_is_wrapped():
    a = _data((9, 4), np.float64, 7)
    y = fdd.dropout(a, 0.5, rng=2)
    assert isinstance(y, da.Array)
    assert_array_equal(y.compute(), fastdrop.dropout(a, 0.5, rng=2))


def test_errors():
    x = da.ones((4, 4), chunks=2, dtype=np.float32)
    with pytest.raises(ValueError):
        fdd.dropout(x, 1.5)
    with pytest.raises(ValueError):
        fdd.dropout(x, float("nan"))
    with pytest.raises(TypeError, match="int64"):
        fdd.dropout(da.ones(4, chunks=2, dtype=np.int64), 0.5)
    with pytest.raises(ValueError):
        fdd.dropout(x, 0.5, noise_shape=(2, 4))
    with pytest.raises(ValueError):
        fdd.dropout(x, 0.5, mode="nope")
    with pytest.raises(ValueError):
        fdd.dropout(x, 0.5, backend="nope")
    g = fastdrop.Generator(0)
    with pytest.raises(ValueError):
        fdd.dropout(x, 0.5, rng=g, mode="nope")
    assert g.offset == 0                          # nothing consumed by a failed call
    unknown = da.ones(10, chunks=3)[da.ones(10, chunks=3) > 0].astype(np.float32)
    with pytest.raises(ValueError, match="chunk sizes"):
        fdd.dropout(unknown, 0.5)


@pytest.mark.parametrize("shape,chunks", [((3, 5), 2), ((37, 53), ((5, 1, 20, 11), (13, 40))),
                                          ((1001,), 100), ((2, 3, 4), (1, 2, 3))])
def test_dropout_mask(shape, chunks):
    m = fdd.dropout_mask(shape, 0.3, rng=fastdrop.Generator(8, offset=3), chunks=chunks)
    ref = fastdrop.dropout_mask(shape, 0.3, rng=fastdrop.Generator(8, offset=3))
    out = m.compute()
    assert out.dtype == np.bool_
    assert_array_equal(out, ref)
    for p in (0.0, 1.0):
        assert_array_equal(fdd.dropout_mask(shape, p, rng=1, chunks=chunks).compute(),
                           fastdrop.dropout_mask(shape, p, rng=1))


def test_mask_is_the_dropout_mask():
    a = np.ones((12, 10), np.float32)
    y = fdd.dropout(da.from_array(a, chunks=5), 0.5, rng=3)
    m = fdd.dropout_mask((12, 10), 0.5, rng=3, chunks=(7, 3))
    assert_array_equal(y.compute() != 0, m.compute())


def test_distributed_local_cluster():
    distributed = pytest.importorskip("distributed")
    a = _data((200, 150), np.float32, 9)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        x = da.from_array(a, chunks=(64, 50))
        g = fastdrop.Generator(21, offset=1)
        y = fdd.dropout(x, 0.25, rng=g, noise_shape=(200, 1))
        first = client.compute(y).result()
        again = y.compute()                        # recompute through the client
        ref = fastdrop.dropout(a, 0.25, rng=fastdrop.Generator(21, offset=1),
                               noise_shape=(200, 1))
        assert_array_equal(first, ref)
        assert_array_equal(again, ref)
        m = fdd.dropout_mask((200, 150), 0.25, rng=5, chunks=(33, 70)).compute()
        assert_array_equal(m, fastdrop.dropout_mask((200, 150), 0.25, rng=5))


def test_import_fastdrop_does_not_import_dask():
    code = "import sys, fastdrop; assert 'dask' not in sys.modules, 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docs_example():
    # the Dask example of docs/frameworks.rst (also run by test_doc_examples)
    import dask.array as da
    import numpy as np
    import fastdrop
    import fastdrop.dask

    a = np.random.default_rng(0).standard_normal((1000, 300), dtype=np.float32)
    x = da.from_array(a, chunks=(256, 100))
    y = fastdrop.dask.dropout(x, p=0.1, rng=fastdrop.Generator(42))
    ref = fastdrop.dropout(a, p=0.1, rng=fastdrop.Generator(42))
    assert np.array_equal(y.compute(), ref)

    # Feature-wise masks (one decision per column), and masks alone:
    cols = fastdrop.dask.dropout(x, p=0.1, rng=7, noise_shape=(1, 300))
    keep = fastdrop.dask.dropout_mask((1000, 300), 0.1, rng=7, chunks=(256, 100))
    assert np.array_equal(keep.compute(), fastdrop.dropout_mask((1000, 300), 0.1, rng=7))
    assert_array_equal(cols.compute(), fastdrop.dropout(a, 0.1, rng=7, noise_shape=(1, 300)))

