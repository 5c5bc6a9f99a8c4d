"""CUDA backend on a real GPU: bit-exact CPU vs GPU on >= 1e8 elements,
CuPy / torch / Numba round trips (zero-copy, output kind, streams).

Every test is marked ``gpu`` and skips cleanly without a usable CUDA GPU
(and under the Numba CUDA simulator, which is not a GPU; the simulator
tests are in ``test_cuda_sim.py``).  Run with ``python -m pytest -m gpu``.
"""

import math
import os
from fractions import Fraction

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


# --- the affine select (docs/spec.md §4): x * scale + shift, fill -------------------

#: (scale, shift, fill), as in test_cuda_sim.py
AFFINE = ((1.7, -0.3, -1.25), (1.0526315789473684, 0.1, 3.0), (0.5, -0.0, -0.0),
          (3.0, 1e-40, 1e6))


def _affine_values(n, dtype, seed):
    """Normals with -0.0, +-inf, NaN, subnormals and the extreme normals."""
    rng = np.random.default_rng(seed)
    v = (rng.standard_normal(n) * 3).astype(dtype)
    fi = np.finfo(dtype)
    sp = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, fi.smallest_subnormal,
                   -fi.smallest_subnormal, fi.smallest_subnormal * 3, fi.smallest_normal,
                   -fi.smallest_normal / 2, fi.max, -fi.max], dtype=dtype)
    pos = rng.permutation(n)[:n // 8]
    v[pos] = sp[np.arange(pos.size) % sp.size]
    return v


def _assert_select(got, want):
    """Bit-exact equality, except that where the reference holds a NaN the
    GPU value need only be a NaN: NVIDIA arithmetic returns the canonical
    NaN rather than propagating the input's payload and sign as x86 does
    (docs/spec.md §4 promises NaN-ness for kept NaNs)."""
    got, want = np.ascontiguousarray(got), np.ascontiguousarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(bits(got)[~nan], bits(want)[~nan])


def _ref(x, fn, *args, **kw):
    out = np.empty_like(x)
    fn(np.ascontiguousarray(x), out, *args, **kw)
    return out


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("abc", AFFINE)
def test_affine_select_bit_exact(dtype, abc):
    """forward (contiguous aligned/unaligned with mask outputs, strided,
    broadcast noise shape) and apply_mask (bool, packed) against the
    reference, for kept ``x * scale + shift`` and dropped ``fill``."""
    from numba import cuda

    from fastdrop import reference as R
    from fastdrop._cuda import backend
    from fastdrop._validate import mask_geometry

    scale, shift, fill = abc
    aff = dict(shift=shift, fill=fill)
    T = R.threshold(0.3)
    n = 300_007
    x = _affine_values(n, dtype, 21)
    d = cuda.to_device(x)
    for offset in (0, 5):
        want = _ref(x, R.forward, 17, offset, T, scale, (1,), **aff)
        out = cuda.device_array(n, dtype)
        keep = cuda.device_array(n, np.bool_)
        pk = cuda.device_array((n + 7) // 8, np.uint8)
        backend.forward(d, out, 17, offset, T, scale, (1,), keep_out=keep, packed_out=pk,
                        **aff)
        _assert_select(out.copy_to_host(), want)
        kr = R.keep_range(17, offset, n, T)
        np.testing.assert_array_equal(keep.copy_to_host(), kr)
        np.testing.assert_array_equal(pk.copy_to_host(), np.packbits(kr, bitorder="little"))
        backend.forward(d, out, 17, offset, T, scale, (1,), **aff)
        _assert_select(out.copy_to_host(), want)
    # strided (a reversed, transposed view) and broadcast (noise shape)
    x3 = _affine_values(60 * 50 * 40, dtype, 22).reshape(60, 50, 40)
    d3 = cuda.to_device(x3)
    hv, dv = x3[::-2, :, 1::3].transpose(2, 0, 1), d3[::-2, :, 1::3].transpose((2, 0, 1))
    for ns in (None, (1, 30, 50), (hv.shape[0], 1, 1)):
        M, ms, nm = mask_geometry(hv.shape, ns)
        want = _ref(hv, R.forward, 5, 3, T, scale, ms, **aff)
        out = cuda.device_array(hv.shape, dtype)
        backend.forward(dv, out, 5, 3, T, scale, ms, **aff)
        _assert_select(out.copy_to_host(), want)
        km = np.random.default_rng(nm).random(nm) < 0.6
        want = _ref(hv, R.apply_mask, ms, scale, keep=km, **aff)
        backend.apply_mask(dv, out, ms, scale, keep=cuda.to_device(km), **aff)
        _assert_select(out.copy_to_host(), want)
        out2 = cuda.device_array(hv.shape, dtype)
        backend.apply_mask(dv, out2, ms, scale,
                           packed=cuda.to_device(np.packbits(km, bitorder="little")), **aff)
        _assert_select(out2.copy_to_host(), want)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_affine_select_is_not_fused(dtype):
    """An element whose FMA differs from mul-then-add (checked with exact
    rationals) gets the two-rounding value on the GPU, in every kernel, and
    the compiled PTX of the select kernels has no floating-point FMA."""
    from numba import cuda

    from fastdrop import reference as R
    from fastdrop._cuda import backend, kernels

    ct = np.float64 if dtype is np.float64 else np.float32
    x0, scale = {np.float16: (1 + 2**-10, 1 + 2**-14), np.float32: (1 + 2**-12, 1 + 2**-12),
                 np.float64: (1 + 2**-27, 1 + 2**-27)}[dtype]
    shift = -float(ct(x0) * ct(scale))
    exact = Fraction(x0) * Fraction(scale) + Fraction(shift)
    assert exact != 0 and Fraction(float(exact)) == exact
    if dtype is np.float64 and hasattr(math, "fma"):
        assert math.fma(x0, scale, shift) == float(exact)
    assert bits(np.array(dtype(ct(float(exact))))) != 0  # the fused result is not +0.0
    x = np.full(4099, x0, dtype)
    x[1::3] = _affine_values(x[1::3].size, dtype, 23)
    want = _ref(x, R.forward, 1, 0, 0, scale, (1,), shift=shift, fill=-2.0)  # T = 0: all kept
    assert (bits(want[::3]) == 0).all()  # mul-then-add: +0.0
    for offset, view in ((0, slice(None)), (3, slice(None)), (0, slice(None, None, 2))):
        d = cuda.to_device(x)[view]
        out = cuda.device_array(d.shape, dtype)
        backend.forward(d, out, 1, offset, 0, scale, (1,), shift=shift, fill=-2.0)
        _assert_select(out.copy_to_host(), want[view])
    keep = np.arange(x.size) % 5 != 2
    out = cuda.device_array(x.shape, dtype)
    backend.apply_mask(cuda.to_device(x), out, (1,), scale, keep=cuda.to_device(keep),
                       shift=shift, fill=-2.0)
    got = out.copy_to_host()
    _assert_select(got[keep], want[keep])
    assert (bits(got[~keep]) == bits(np.array(dtype(-2.0)))).all()
    name = np.dtype(dtype).name  # the value kernels this test compiled
    kerns = ([k for key, k in kernels._tile_cache.items() if key[0] == name and key[1]]
             + [k for key, k in kernels._nd_cache.items() if key[0] == name])
    assert len(kerns) >= 3
    for k in kerns:
        for ptx in k.inspect_asm().values():
            assert "fma.rn.f" not in ptx  # no contraction: the only float math is the select
            assert "mul.rn.f" in ptx and "add.rn.f" in ptx


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
