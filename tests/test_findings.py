"""The eight findings of the adversarial review (silent wrong results), one
test group each.  Every test here failed before the fix.

1. a Generator shared between threads handed the same mask to several calls;
2. an ``out`` whose elements overlap each other was written;
3. a bool, a string or float entries were taken as ``noise_shape``;
4. ``training`` was not checked (``"False"`` meant training);
5. an empty draw at the very end of the stream raised OverflowError;
6. the adapters skipped validation in evaluation mode;
7. Dask arrays were computed silently, torch CPU tensors came back as NumPy
   arrays, masked arrays lost their mask;
8. ``fastdrop bench --backends cuda`` without a GPU exited 0.
"""

import contextlib
import io
import os
import sys
import threading

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from conftest import bits, cpu_backends

_U64 = 1 << 64
SENTINEL = np.float32(-7.25)


@contextlib.contextmanager
def fast_switching():
    """Make the interpreter switch threads as often as it can (races show)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def run_threads(n_threads, body):
    """Run ``body(k)`` in ``n_threads`` threads that start together; return
    their results in thread order (re-raising the first error)."""
    results = [None] * n_threads
    errors = []
    barrier = threading.Barrier(n_threads)

    def work(k):
        try:
            barrier.wait()
            results[k] = body(k)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    with fast_switching():
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return results


# ----------------------------------------------------------------------------
# 1. a shared Generator: disjoint, consecutive ranges under threads
# ----------------------------------------------------------------------------

N_THREADS, N_CALLS, N_ELEM = 8, 300, 64


def _serial_masks(seed, n_calls, n_elem):
    g = fastdrop.Generator(seed)
    return sorted(fastdrop.dropout_mask(n_elem, 0.5, rng=g, packed=True).tobytes()
                  for _ in range(n_calls))


@pytest.mark.parametrize("backend", cpu_backends())
def test_shared_generator_threads_get_the_serial_masks(backend):
    """8 threads x 300 calls on one Generator: exactly the masks of 2400
    serial calls (in some order) and the exact final offset.  Three rounds:
    without the lock the race shows in most rounds, not in every one."""
    x = np.ones(N_ELEM, np.float32)
    serial = _serial_masks(12345, N_THREADS * N_CALLS, N_ELEM)
    for _ in range(3):
        g = fastdrop.Generator(12345)

        def body(_):
            return [fastdrop.dropout(x, 0.5, rng=g, backend=backend)
                    for _ in range(N_CALLS)]

        got = [y for ys in run_threads(N_THREADS, body) for y in ys]
        masks = sorted(np.packbits(y != 0, bitorder="little").tobytes() for y in got)
        assert masks == serial
        assert g.offset == N_THREADS * N_CALLS * N_ELEM


def test_shared_generator_advance_under_threads():
    """The reservation itself: 8 threads x 20000 advance(1) calls get
    distinct starts and the exact final offset (fails at once without the
    lock)."""
    g = fastdrop.Generator(1)
    starts = run_threads(N_THREADS, lambda _: [g.advance(1) for _ in range(20000)])
    flat = sorted(s for ss in starts for s in ss)
    assert flat == list(range(0, 8 * N_THREADS * 20000, 8))
    assert g.offset == 8 * N_THREADS * 20000


def assert_threads_share(seed, n_calls, draws):
    """``N_THREADS`` threads make ``n_calls`` calls each on one Generator,
    cycling through ``draws`` (each returns the packed keep bits of one
    ``N_ELEM``-element call): exactly the serial masks and final offset."""
    g = fastdrop.Generator(seed)

    def body(k):
        return [bytes(draws[(k + i) % len(draws)](g)) for i in range(n_calls)]

    got = sorted(m for ms in run_threads(N_THREADS, body) for m in ms)
    assert got == _serial_masks(seed, N_THREADS * n_calls, N_ELEM)
    assert g.offset == N_THREADS * n_calls * N_ELEM


def _packed(y):
    return np.packbits(np.asarray(y) != 0, bitorder="little").tobytes()


def test_shared_generator_threads_mixed_entry_points():
    """dropout (fast path and general path), dropout_mask and the packed
    mask output sharing one Generator: every range handed out once."""
    x = np.ones(N_ELEM, np.float32)
    assert_threads_share(99, 100, [
        lambda g: _packed(fastdrop.dropout(x, 0.5, rng=g)),
        lambda g: _packed(fastdrop.dropout(x, 0.5, rng=g, backend="reference")),
        lambda g: fastdrop.dropout(x, 0.5, rng=g, return_mask="packed")[1].tobytes(),
        lambda g: fastdrop.dropout_mask(N_ELEM, 0.5, rng=g, packed=True).tobytes(),
    ])


def test_shared_generator_threads_torch_adapter():
    torch = pytest.importorskip("torch")
    import fastdrop.torch as fdt

    x = torch.ones(N_ELEM)
    assert_threads_share(7, 50, [lambda g: _packed(fdt.dropout(x, 0.5, generator=g).numpy())])


def test_shared_generator_threads_dask_adapter():
    """Graph building reserves the range; computing later is pure."""
    da = pytest.importorskip("dask.array")
    import fastdrop.dask as fdd

    x = da.ones(N_ELEM, chunks=16, dtype=np.float32)
    assert_threads_share(8, 20, [
        lambda g: _packed(fdd.dropout(x, 0.5, rng=g).compute(scheduler="sync"))])


def test_generator_pickles_and_copies():
    import copy
    import pickle

    g = fastdrop.Generator(5, offset=24)
    g.spawn(2)
    for h in (pickle.loads(pickle.dumps(g)), copy.deepcopy(g), copy.copy(g)):
        assert h.state == g.state
        assert_array_equal(fastdrop.dropout_mask(10, 0.3, rng=h),
                           fastdrop.dropout_mask(10, 0.3, rng=fastdrop.Generator(5, 24)))
        assert h.offset == 40 and g.offset == 24  # independent


# ----------------------------------------------------------------------------
# 2. out whose elements overlap each other
# ----------------------------------------------------------------------------

def _self_overlapping_outs():
    buf = np.full(64, SENTINEL, np.float32)
    ast = np.lib.stride_tricks.as_strided
    return buf, {
        "zero stride": ast(buf, shape=(8,), strides=(0,)),
        "overlapping rows": ast(buf, shape=(4, 8), strides=(8, 4)),
        "zero stride, 2-D": ast(buf, shape=(4, 8), strides=(0, 4)),
        "byte overlap": ast(buf, shape=(8,), strides=(2,)),
    }


@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("case", ["zero stride", "overlapping rows", "zero stride, 2-D",
                                  "byte overlap"])
def test_self_overlapping_out_is_refused(backend, case):
    buf, outs = _self_overlapping_outs()
    out = outs[case]
    x = np.ones(out.shape, np.float32)
    g = fastdrop.Generator(3)
    for call in (lambda: fastdrop.dropout(x, 0.5, rng=g, out=out, backend=backend),
                 lambda: fastdrop.dropout(x, 0.5, rng=g, out=out, training=False,
                                          backend=backend),
                 lambda: fastdrop.apply_mask(x, np.ones(x.shape, bool), 0.5, out=out,
                                             backend=backend),
                 lambda: fastdrop.dropout_backward(x, 0.5, state=3, out=out,
                                                   backend=backend)):
        with pytest.raises(ValueError, match="out has elements that overlap each other"):
            call()
    assert (buf == SENTINEL).all()
    assert g.offset == 0


def test_self_overlapping_in_place_is_refused():
    buf = np.ones(16, np.float32)
    x = np.lib.stride_tricks.as_strided(buf, shape=(4, 4), strides=(4, 4))
    with pytest.raises(ValueError, match="overlap each other"):
        fastdrop.dropout(x, 0.5, rng=0, out=x)
    assert (buf == 1).all()


def test_disjoint_unusual_strides_are_accepted():
    """Interleaved strides that do not nest but never overlap are fine."""
    buf = np.full(16, SENTINEL, np.float32)
    out = np.lib.stride_tricks.as_strided(buf, shape=(2, 3), strides=(12, 8))
    x = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)
    fastdrop.dropout(x, 0.5, rng=4, out=out)
    assert_array_equal(bits(out), bits(fastdrop.dropout(x, 0.5, rng=4)))


# ----------------------------------------------------------------------------
# 3. noise_shape types; every argument error names its argument
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("ns", [True, False, np.True_, "spam", b"ab", (4.0, 8), (4, 8.0),
                                (True, 8), 8, 2.5])
def test_noise_shape_types(ns):
    x = np.ones((4, 8), np.float32)
    g = fastdrop.Generator(1)
    for training in (True, False):
        with pytest.raises(TypeError, match="noise_shape"):
            fastdrop.dropout(x, 0.5, rng=g, noise_shape=ns, training=training)
    with pytest.raises(TypeError, match="noise_shape"):
        fastdrop.dropout_backward(x, 0.5, state=1, noise_shape=ns)
    assert g.offset == 0


def test_noise_shape_lists_and_arrays_still_work():
    x = np.ones((4, 8), np.float32)
    ref = fastdrop.dropout(x, 0.5, rng=2, noise_shape=(4, 1))
    for ns in ([4, 1], np.array([4, 1]), (np.int64(4), 1), (None, 1)):
        assert_array_equal(fastdrop.dropout(x, 0.5, rng=2, noise_shape=ns), ref)


def test_torch_dropout_positional_bool_is_inplace():
    # was: Dropout(0.2, True) taken as a noise shape (one decision for the
    # whole tensor); now torch's positional inplace, as nn.Dropout(0.2, True)
    pytest.importorskip("torch")
    import fastdrop.torch as fdt

    layer = fdt.Dropout(0.5, True)
    assert layer.inplace is True and layer.noise_shape is None
    with pytest.raises(TypeError, match="inplace"):
        fdt.Dropout(0.5, "yes")


@pytest.mark.parametrize("n", [1.5, "2", True])
def test_set_num_threads_names_its_argument(n):
    old = fastdrop.get_num_threads()
    with pytest.raises(TypeError, match="set_num_threads: n must be an int"):
        fastdrop.set_num_threads(n)
    assert fastdrop.get_num_threads() == old


# ----------------------------------------------------------------------------
# 4. training must be a bool
# ----------------------------------------------------------------------------

BAD_TRAINING = ["False", "no", 0, 1, None, 1.0, np.array([True])]


@pytest.mark.parametrize("training", BAD_TRAINING)
def test_training_must_be_bool(training):
    x = np.ones(8, np.float32)
    out = np.full(8, SENTINEL, np.float32)
    g = fastdrop.Generator(1)
    with pytest.raises(TypeError, match="training must be a bool"):
        fastdrop.dropout(x, 0.5, rng=g, training=training, out=out)
    with pytest.raises(TypeError, match="training must be a bool"):
        fastdrop.dropout_backward(x, 0.5, state=1, training=training, out=out)
    assert (out == SENTINEL).all() and g.offset == 0


@pytest.mark.parametrize("training", [True, False, np.True_, np.False_, np.array(True),
                                      np.array(False)])
def test_training_bool_likes(training):
    x = np.ones(8, np.float32)
    y = fastdrop.dropout(x, 0.5, rng=0, training=training)
    assert_array_equal(y, fastdrop.dropout(x, 0.5, rng=0, training=bool(training)))


def test_training_in_adapters():
    torch = pytest.importorskip("torch")
    da = pytest.importorskip("dask.array")
    import fastdrop.dask as fdd
    import fastdrop.torch as fdt

    for bad in ("False", 0, None):
        with pytest.raises(TypeError, match="training must be a bool"):
            fdt.dropout(torch.ones(4), 0.5, bad, generator=0)
        with pytest.raises(TypeError, match="training must be a bool"):
            fdd.dropout(da.ones(4, chunks=2), 0.5, rng=0, training=bad)
    assert (fdt.dropout(torch.ones(4), 0.5, torch.tensor(False)) == 1).all()


# ----------------------------------------------------------------------------
# 5. empty draws at the end of the stream
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", cpu_backends())
def test_empty_draw_at_end_of_stream(backend):
    g = fastdrop.Generator(1, offset=_U64)
    assert fastdrop.dropout_mask(0, 0.5, rng=g, backend=backend).shape == (0,)
    assert fastdrop.dropout_mask((3, 0), 0.5, rng=g, packed=True,
                                 backend=backend).shape == (0,)
    for dt in (np.float16, np.float32, np.float64):
        x = np.ones((3, 0), dt)
        assert fastdrop.dropout(x, 0.5, rng=g, backend=backend).shape == (3, 0)
        y, m = fastdrop.dropout(x, 0.5, rng=g, backend=backend, return_mask="packed")
        assert y.shape == (3, 0) and m.shape == (0,)
        y, m = fastdrop.dropout(x, 0.5, rng=g, backend=backend, return_mask=True)
        assert m.shape == (3, 0)
        assert fastdrop.dropout_backward(x, 0.5, state=(1, _U64),
                                         backend=backend).shape == (3, 0)
    assert g.offset == _U64
    # anything non-empty there is a clear ValueError, and nothing moves
    with pytest.raises(ValueError, match="offset overflow"):
        fastdrop.dropout(np.ones(1, np.float32), 0.5, rng=g, backend=backend)
    with pytest.raises(ValueError, match="offset overflow"):
        fastdrop.dropout_mask(1, 0.5, rng=g, backend=backend)
    assert g.offset == _U64


def test_empty_draw_at_end_of_stream_adapters():
    torch = pytest.importorskip("torch")
    da = pytest.importorskip("dask.array")
    import fastdrop.dask as fdd
    import fastdrop.torch as fdt

    g = fastdrop.Generator(1, offset=_U64)
    assert fdt.dropout(torch.ones(3, 0), 0.5, generator=g).shape == (3, 0)
    assert fdd.dropout(da.ones((3, 0), chunks=2), 0.5, rng=g).compute().shape == (3, 0)
    assert fdd.dropout_mask((0, 4), 0.5, rng=g).compute().shape == (0, 4)
    assert g.offset == _U64


# ----------------------------------------------------------------------------
# 6. adapters validate in evaluation mode
# ----------------------------------------------------------------------------

def test_torch_adapter_validates_in_eval():
    torch = pytest.importorskip("torch")
    import fastdrop.torch as fdt

    x = torch.ones(2, 3)
    for training in (True, False):
        for gen, exc in (("7", TypeError), (-1, ValueError), (1.5, TypeError)):
            with pytest.raises(exc, match="generator"):
                fdt.dropout(x, 0.5, training, generator=gen)
        for ns, exc in (((3,), ValueError), ("bad", ValueError), (True, TypeError)):
            with pytest.raises(exc, match="noise_shape"):
                fdt.dropout(x, 0.5, training, noise_shape=ns)


def test_dask_adapter_validates_in_eval():
    da = pytest.importorskip("dask.array")
    import fastdrop.dask as fdd

    x = da.ones((2, 3), chunks=2, dtype=np.float32)
    for training in (True, False):
        for rng, exc in ((-1, ValueError), (1.5, TypeError), ("s", TypeError)):
            with pytest.raises(exc, match="rng"):
                fdd.dropout(x, 0.5, rng=rng, training=training)
        with pytest.raises(TypeError, match="noise_shape"):
            fdd.dropout(x, 0.5, rng=0, noise_shape=True, training=training)


# ----------------------------------------------------------------------------
# 7. arrays fastdrop does not run natively
# ----------------------------------------------------------------------------

def test_dask_array_is_routed_lazily():
    da = pytest.importorskip("dask.array")
    import fastdrop.dask as fdd

    a = np.arange(1.0, 13.0, dtype=np.float32).reshape(3, 4)
    x = da.from_array(a, chunks=(2, 3))
    y = fastdrop.dropout(x, 0.5, rng=fastdrop.Generator(3))
    assert isinstance(y, da.Array)  # lazy: nothing computed
    assert_array_equal(y.compute(), fastdrop.dropout(a, 0.5, rng=fastdrop.Generator(3)))
    assert_array_equal(y.compute(), fdd.dropout(x, 0.5, rng=fastdrop.Generator(3)).compute())
    with pytest.raises(TypeError, match="out= is not supported for a Dask array"):
        fastdrop.dropout(x, 0.5, rng=0, out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError, match="return_mask is not supported for a Dask"):
        fastdrop.dropout(x, 0.5, rng=0, return_mask=True)
    with pytest.raises(TypeError, match="apply_mask does not take Dask arrays"):
        fastdrop.apply_mask(x, np.ones((3, 4), bool), 0.5)
    with pytest.raises(TypeError, match="dropout_backward does not take Dask arrays"):
        fastdrop.dropout_backward(x, 0.5, state=0)
    with pytest.raises(TypeError, match="mask is one"):
        fastdrop.apply_mask(a, da.ones((3, 4), dtype=bool, chunks=2), 0.5)


def test_torch_cpu_tensor_comes_back_as_tensor():
    torch = pytest.importorskip("torch")

    a = np.arange(1.0, 13.0, dtype=np.float32).reshape(3, 4)
    t = torch.from_numpy(a.copy())
    y = fastdrop.dropout(t, 0.5, rng=5)
    assert isinstance(y, torch.Tensor)
    assert_array_equal(y.numpy(), fastdrop.dropout(a, 0.5, rng=5))
    y, m = fastdrop.dropout(t.t(), 0.5, rng=5, return_mask="packed")
    assert isinstance(y, torch.Tensor) and isinstance(m, torch.Tensor)
    assert_array_equal(y.numpy(), fastdrop.dropout(a.T, 0.5, rng=5))
    out = torch.full((3, 4), -1.0)
    assert fastdrop.dropout(t, 0.5, rng=5, out=out) is out
    assert_array_equal(out.numpy(), fastdrop.dropout(a, 0.5, rng=5))
    keep = fastdrop.dropout_mask((3, 4), 0.5, rng=5)
    z = fastdrop.apply_mask(t, torch.from_numpy(keep), 0.5)
    assert isinstance(z, torch.Tensor)
    assert_array_equal(z.numpy(), fastdrop.dropout(a, 0.5, rng=5))
    gb = fastdrop.dropout_backward(t, 0.5, state=5)
    assert isinstance(gb, torch.Tensor)
    assert_array_equal(gb.numpy(), fastdrop.dropout(a, 0.5, rng=5))
    with pytest.raises(TypeError, match="out must be a torch tensor"):
        fastdrop.dropout(t, 0.5, rng=5, out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError, match="bfloat16"):
        fastdrop.dropout(t.bfloat16(), 0.5, rng=5)
    with pytest.raises(ValueError, match="out requires grad"):
        fastdrop.dropout(t, 0.5, rng=5, out=torch.zeros(3, 4, requires_grad=True))


def test_masked_array_is_refused():
    x = np.ma.array(np.ones(4, np.float32), mask=[0, 1, 0, 0])
    with pytest.raises(TypeError, match="masked array"):
        fastdrop.dropout(x, 0.5, rng=0)
    with pytest.raises(TypeError, match="masked array"):
        fastdrop.apply_mask(x, np.ones(4, bool), 0.5)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        fastdrop.dropout(np.ones(4, np.float32), 0.5, rng=0,
                         out=np.ma.array(np.zeros(4, np.float32)))


# ----------------------------------------------------------------------------
# 8. the CLI fails when no requested backend can run
# ----------------------------------------------------------------------------

@pytest.mark.skipif(fastdrop.get_backends()["cuda"]["available"], reason="a GPU is here")
def test_cli_bench_cuda_without_gpu_fails():
    from fastdrop.__main__ import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["bench", "--backends", "cuda", "--sizes", "1000", "--repeat", "1",
                   "--max-time", "0.05"])
    assert rc != 0
    assert "none of the requested backends can run here (cuda:" in err.getvalue()


# ------------------------------------- threads follow OMP_NUM_THREADS and threadpoolctl

def test_default_threads_follow_omp_num_threads():
    import subprocess
    import sys

    code = ("import numpy as np, fastdrop; n = fastdrop.get_num_threads(); "
            "fastdrop.dropout(np.ones(1 << 20, np.float32), 0.5, rng=1); print(n)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "1"


def test_default_threads_follow_threadpoolctl_and_set_none_resets():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    old = fastdrop.set_num_threads(None)  # the default: threadpoolctl's limit applies
    try:
        with threadpoolctl.threadpool_limits(1):
            assert fastdrop.get_num_threads() == 1
        assert fastdrop.set_num_threads(3) is None
        with threadpoolctl.threadpool_limits(1):
            assert fastdrop.get_num_threads() == 3   # an explicit setting wins
        assert fastdrop.set_num_threads(None) == 3
    finally:
        fastdrop.set_num_threads(old)


def test_numba_thread_count_restored():
    numba = pytest.importorskip("numba")
    if "numba" not in fastdrop.get_backends() or not fastdrop.get_backends()["numba"]["available"]:
        pytest.skip("numba backend not available")
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        fastdrop.dropout(np.ones(1 << 17, np.float32), 0.5, rng=1, backend="numba")
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)
