"""CUDA backend on a real GPU: bit-exact CPU vs GPU on >= 1e8 elements,
CuPy / torch / Numba round trips (zero-copy, output kind, streams).

Every test is marked ``gpu`` and skips cleanly without a usable CUDA GPU
(and under the Numba CUDA simulator, which is not a GPU; the simulator
tests are in ``test_cuda_sim.py``).  Run with ``python -m pytest -m gpu``.
"""

import os

import numpy as np
import pytest

import fastdrop


def _gpu_reason():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "Numba CUDA simulator is on (not a real GPU)"
    try:
        from numba import cuda

        if cuda.is_available():
            return None
        return "no usable CUDA GPU"
    except Exception as e:  # pragma: no cover - depends on the machine
        return f"numba.cuda unavailable: {e}"


_REASON = _gpu_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_REASON is not None, reason=str(_REASON))]

BIG = 100_000_003  # >= 1e8 mask elements, not a multiple of 8


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    return torch


@pytest.mark.parametrize("seed,offset,p", [
    (0, 0, 0.5), (42, 5, 0.1), (2**63 + 12345, 2**40 + 8, 0.9), (7, 2**35 - 3, 0.25)])
def test_mask_bit_exact_1e8(seed, offset, p):
    from numba import cuda

    from fastdrop._cuda import backend

    want = fastdrop.dropout_mask(BIG, p, rng=fastdrop.Generator(seed, offset), packed=True)
    pk = cuda.device_array((BIG + 7) // 8, np.uint8)
    backend.mask(BIG, seed, offset, fastdrop.reference.threshold(p), packed_out=pk)
    got = pk.copy_to_host()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_forward_bit_exact_large(dtype):
    from numba import cuda

    from fastdrop._cuda import frontend

    n = (1 << 25) + 5
    x = np.random.default_rng(1).standard_normal(n).astype(dtype)
    for seed, off in ((3, 0), (4, 13)):
        g_cpu, g_gpu = fastdrop.Generator(seed, off), fastdrop.Generator(seed, off)
        want, wk = fastdrop.dropout(x, 0.3, rng=g_cpu, return_mask="packed")
        got, gk = frontend.dropout(cuda.to_device(x), 0.3, rng=g_gpu, return_mask="packed")
        np.testing.assert_array_equal(bits(got.copy_to_host()), bits(want))
        np.testing.assert_array_equal(gk.copy_to_host(), wk)
        assert g_cpu.offset == g_gpu.offset


def test_strided_and_noise_shape():
    from numba import cuda

    from fastdrop._cuda import frontend

    x = np.random.default_rng(2).standard_normal((64, 3, 50, 33)).astype(np.float32)
    d = cuda.to_device(x)
    hv, dv = x[::2, :, ::-1, 1:], d[::2, :, ::-1, 1:]
    for ns in (None, (32, 3, 1, 1), (1, 3, 50, 32)):
        want = fastdrop.dropout(hv, 0.4, rng=9, noise_shape=ns)
        got = frontend.dropout(dv, 0.4, rng=9, noise_shape=ns)
        np.testing.assert_array_equal(bits(got.copy_to_host()), bits(want))


def test_torch_round_trip_zero_copy():
    torch = _torch_cuda()
    x = torch.randn(1000, 777, device="cuda")
    xh = x.cpu().numpy()
    y, m = fastdrop.dropout(x, 0.3, rng=5, return_mask=True)
    assert isinstance(y, torch.Tensor) and y.device == x.device and y.dtype == x.dtype
    assert isinstance(m, torch.Tensor) and m.dtype == torch.bool and m.device == x.device
    want, wm = fastdrop.dropout(xh, 0.3, rng=5, return_mask=True)
    np.testing.assert_array_equal(bits(y.cpu().numpy()), bits(want))
    np.testing.assert_array_equal(m.cpu().numpy(), wm)
    ptr = x.data_ptr()
    r = fastdrop.dropout(x, 0.3, rng=5, out=x)  # in place, zero-copy
    assert r is x and x.data_ptr() == ptr
    np.testing.assert_array_equal(bits(x.cpu().numpy()), bits(want))
    # a strided view, on a side stream, and a tensor that requires grad
    s = torch.cuda.Stream()
    base = torch.randn(300, 400, device="cuda", requires_grad=True)
    with torch.cuda.stream(s):
        yv = fastdrop.dropout(base[:, ::3].T, 0.5, rng=6)
    s.synchronize()
    wv = fastdrop.dropout(base.detach().cpu().numpy()[:, ::3].T, 0.5, rng=6)
    np.testing.assert_array_equal(bits(yv.cpu().numpy()), bits(wv))
    # half precision and backward from the state
    xf = torch.randn(4097, device="cuda", dtype=torch.float16)
    g = fastdrop.dropout_backward(xf, 0.2, state=(11, 8))
    wg = fastdrop.dropout_backward(xf.cpu().numpy(), 0.2, state=(11, 8))
    np.testing.assert_array_equal(bits(g.cpu().numpy()), bits(wg))


def test_cupy_round_trip_zero_copy():
    cupy = pytest.importorskip("cupy")
    x = cupy.random.standard_normal((513, 129), dtype=cupy.float32)
    xh = cupy.asnumpy(x)
    y, pk = fastdrop.dropout(x, 0.6, rng=7, return_mask="packed")
    assert isinstance(y, cupy.ndarray) and isinstance(pk, cupy.ndarray)
    want, wpk = fastdrop.dropout(xh, 0.6, rng=7, return_mask="packed")
    np.testing.assert_array_equal(bits(cupy.asnumpy(y)), bits(want))
    np.testing.assert_array_equal(cupy.asnumpy(pk), wpk)
    ptr = x.data.ptr
    assert fastdrop.dropout(x, 0.6, rng=7, out=x) is x and x.data.ptr == ptr
    np.testing.assert_array_equal(bits(cupy.asnumpy(x)), bits(want))
    z = fastdrop.apply_mask(cupy.asarray(xh), pk, 0.6)
    np.testing.assert_array_equal(bits(cupy.asnumpy(z)), bits(want))
    with cupy.cuda.Stream(non_blocking=True) as s:
        w = fastdrop.dropout(cupy.asarray(xh), 0.6, rng=7)
        s.synchronize()
    np.testing.assert_array_equal(bits(cupy.asnumpy(w)), bits(want))


def test_numba_round_trip():
    from numba import cuda

    x = np.random.default_rng(3).standard_normal(10_001).astype(np.float64)
    d = cuda.to_device(x)
    ptr = d.device_ctypes_pointer.value
    y = fastdrop.dropout(d, 0.5, rng=1)
    assert isinstance(y, cuda.devicearray.DeviceNDArray)
    np.testing.assert_array_equal(bits(y.copy_to_host()), bits(fastdrop.dropout(x, 0.5, rng=1)))
    assert fastdrop.dropout(d, 0.5, rng=1, out=d) is d and d.device_ctypes_pointer.value == ptr


def test_host_array_never_copied():
    with pytest.raises(TypeError, match="never copies"):
        fastdrop.dropout(np.ones(8, np.float32), 0.5, backend="cuda")


def test_shared_generator_threads():
    """8 threads x 50 calls on one Generator through the GPU front end get
    exactly the masks of 400 serial calls (the simulator cannot launch from
    several Python threads, so this runs on a real GPU only)."""
    import threading

    from numba import cuda

    g = fastdrop.Generator(11)
    d = cuda.to_device(np.ones(64, np.float32))
    got, lock = [], threading.Lock()

    def body():
        for _ in range(50):
            y = fastdrop.dropout(d, 0.5, rng=g).copy_to_host()
            with lock:
                got.append(np.packbits(y != 0, bitorder="little").tobytes())

    threads = [threading.Thread(target=body) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gs = fastdrop.Generator(11)
    want = sorted(fastdrop.dropout_mask(64, 0.5, rng=gs, packed=True).tobytes()
                  for _ in range(400))
    assert sorted(got) == want and g.offset == 400 * 64
