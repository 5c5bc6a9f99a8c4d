"""CUDA backend under the Numba CUDA simulator: bit-exact parity with the
NumPy reference, grid independence, strides, noise shapes, masks, front end.

The simulator must be switched on before ``numba.cuda`` is first imported,
and the rest of the suite imports it (``fastdrop.get_backends()`` probes the
CUDA backend).  So the ``TestSim`` tests run in their own pytest process,
a step of ``.ci/run`` of its own::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda_sim.py

In a normal run only the module-level tests here run.

Sizes stay small (the simulator runs each GPU thread as a Python thread).
"""

import math
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

import fastdrop
from fastdrop import reference as R

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if SIM:  # the simulator swaps the global name ``cuda`` inside kernels
    from numba import cuda

# float16 overflow to inf (a kept 65504 * scale) is part of the semantics
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

sim_only = pytest.mark.skipif(not SIM, reason="runs inside test_simulator_suite")

DTYPES = (np.float16, np.float32, np.float64)
try:  # bfloat16 is ml_dtypes' (optional): its tests are skipped without it
    import ml_dtypes
except ImportError:
    BF16 = None
    _BF16_PARAM = pytest.param(None, id="bfloat16",
                               marks=pytest.mark.skip(reason="ml_dtypes is not installed"))
else:
    BF16 = np.dtype(ml_dtypes.bfloat16)
    _BF16_PARAM = pytest.param(BF16, id="bfloat16")
#: DTYPES and bfloat16 (docs/spec.md §4), for the tests that run it too
WITH_BF16 = DTYPES + (_BF16_PARAM,)
LAUNCHES = ((1, 32), (3, 64), (2, 96), None)  # (grid, block); None = default


def test_import_is_lazy():
    """import fastdrop imports neither numba.cuda nor the CUDA kernels."""
    code = ("import sys, fastdrop, numpy as np; "
            "fastdrop.dropout(np.ones(4, np.float32), 0.5, rng=1, backend='reference'); "
            "print([m for m in ('numba.cuda', 'fastdrop._cuda.kernels', "
            "'fastdrop._cuda.frontend', 'fastdrop._cuda._interop') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_info_subprocess():
    """fastdrop._cuda.info() answers on any machine, GPU or not."""
    code = ("import json, fastdrop._cuda as c; d = c.info(); "
            "print(json.dumps({k: d[k] for k in ('available', 'reason', 'devices')}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=300,
                       env={k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"})
    assert r.returncode == 0, r.stderr
    import json

    d = json.loads(r.stdout.strip().splitlines()[-1])
    assert isinstance(d["available"], bool)
    if d["available"]:
        assert d["devices"] and d["devices"][0]["name"]
    else:
        assert d["reason"] and d["devices"] == []


# ----------------------------------------------------------------------------
# helpers (used only in the simulator run)
# ----------------------------------------------------------------------------

def bits(a):
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_same(got, want):
    """Bit-exact equality (so +0.0 != -0.0 and NaN payloads count)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(bits(got), bits(want))


def values(shape, dtype, seed=0):
    """Normals with NaN, +-inf, -0.0 and negatives sprinkled in."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    v = (rng.standard_normal(n) * 3).astype(dtype)
    sp = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, -1.5, 65504.0], dtype=dtype)
    if n:
        pos = rng.integers(0, n, size=max(1, n // 8))
        v[pos] = sp[np.arange(pos.size) % sp.size]
    return v.reshape(shape)


def ref_forward(x, seed, offset, T, scale, mstrides, **affine):
    out = np.empty_like(x)
    R.forward(np.ascontiguousarray(x), out, seed, offset, T, scale, mstrides, **affine)
    return out


def affine_values(shape, dtype, seed=0):
    """:func:`values` plus subnormals (both signs) and the smallest normals."""
    v = values(shape, dtype, seed).reshape(-1).copy()
    fi = np.finfo(dtype)
    tiny = np.array([fi.smallest_subnormal, -fi.smallest_subnormal,
                     fi.smallest_subnormal * 3, fi.smallest_normal,
                     -fi.smallest_normal, fi.smallest_normal / 2], dtype=dtype)
    if v.size:
        pos = np.random.default_rng(seed + 1).permutation(v.size)[:max(1, v.size // 10)]
        v[pos] = tiny[np.arange(pos.size) % tiny.size]
    return v.reshape(shape)


#: (scale, shift, fill) of the affine select tests: dropout-like factors with
#: a shift and a fill; a halving that rounds subnormals with a -0.0 fill; a
#: shift that is a float32 subnormal and a fill that overflows float16.
AFFINE = ((1.7, -0.3, -1.25), (1.0526315789473684, 0.1, 3.0), (0.5, -0.0, -0.0),
          (3.0, 1e-40, 1e6))


def fma_case(dtype):
    """``(x, scale, shift)``, each exact in its type, for which the
    separately rounded ``R(C(x) * C(scale) + C(shift))`` and a fused
    multiply-add (one rounding to the compute type) give different bits:
    ``C(x) * C(scale)`` is not exact in the compute type and ``shift`` is
    minus its rounded value, so mul-then-add gives ``+0.0`` and an FMA the
    (nonzero) rounding error of the product."""
    x, scale = {np.float16: (1 + 2**-10, 1 + 2**-14),  # error 2**-24: f16's least subnormal
                np.float32: (1 + 2**-12, 1 + 2**-12),  # error 2**-24
                np.float64: (1 + 2**-27, 1 + 2**-27)}[dtype]  # error 2**-54
    ct = np.float64 if dtype is np.float64 else np.float32
    assert float(dtype(x)) == x and float(ct(scale)) == scale
    shift = -float(ct(x) * ct(scale))
    return x, scale, shift


def fused(x, scale, shift, dtype):
    """``R(fma(x, scale, shift))``: the exact ``x * scale + shift`` rounded
    once to the compute type (then to ``dtype``), by exact rationals."""
    ct = np.float64 if dtype is np.float64 else np.float32
    exact = Fraction(x) * Fraction(scale) + Fraction(shift)
    assert Fraction(float(exact)) == exact  # exact in float64: no double rounding below
    if dtype is np.float64 and hasattr(math, "fma"):  # Python 3.13+
        assert math.fma(x, scale, shift) == float(exact)
    return dtype(ct(float(exact)))


def c_strides(shape):
    st, acc = [], 1
    for n in reversed(shape):
        st.append(acc if n != 1 else 0)
        acc *= n
    return tuple(reversed(st))


#: (op, a, b) of the noise kernel tests (docs/spec.md §11): Gaussian dropout
#: at p = 0.3 and p = 0.9 (sigma = 3: many negative factors), Gaussian noise
#: with stddev 0.7 and with 3e4 (float16 overflows to inf).
NOISE = (("mul", 1.0, math.sqrt(0.3 / 0.7)), ("mul", 1.0, math.sqrt(0.9 / (1 - 0.9))),
         ("add", -0.0, 0.7), ("add", -0.0, 3e4))


def ref_noise(x, seed, offset, mstrides, a, b, op):
    out = np.empty(x.shape, x.dtype)
    R.noise(np.ascontiguousarray(x), out, seed, offset, mstrides, a, b, op)
    return out


class SimCAI:
    """A foreign GPU array that only has ``__cuda_array_interface__`` (under
    the simulator device pointers are host pointers), like a CuPy array."""

    def __init__(self, arr):
        self.arr = arr

    @property
    def __cuda_array_interface__(self):
        a = self.arr
        return {"shape": a.shape, "typestr": a.dtype.str, "version": 3,
                "strides": None if a.flags.c_contiguous else a.strides,
                "data": (a.__array_interface__["data"][0], not a.flags.writeable),
                "stream": None}


# ----------------------------------------------------------------------------
# the simulator tests
# ----------------------------------------------------------------------------

@sim_only
class TestSim:

    @pytest.fixture(autouse=True)
    def _mods(self):
        from numba import cuda

        from fastdrop._cuda import backend, frontend

        self.cuda, self.B, self.F = cuda, backend, frontend

    def dev(self, a):
        return self.cuda.to_device(np.ascontiguousarray(a))

    # --- Philox and the mask stream ------------------------------------------------

    def test_philox_kat_device_functions(self):
        from fastdrop._cuda.kernels import philox

        kat = [((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
               ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2,
                (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
               ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
                (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1))]
        f = philox.philox4x32_10

        @cuda.jit
        def k(inp, out):
            i = cuda.grid(1)
            if i < inp.shape[0]:
                w0, w1, w2, w3 = f(inp[i, 0], inp[i, 1], inp[i, 2], inp[i, 3],
                                   inp[i, 4], inp[i, 5])
                out[i, 0] = w0
                out[i, 1] = w1
                out[i, 2] = w2
                out[i, 3] = w3

        inp = np.array([c + key for c, key, _ in kat], dtype=np.uint32)
        out = cuda.device_array((3, 4), dtype=np.uint32)
        k[1, 32](self.dev(inp), out)
        assert out.copy_to_host().tolist() == [list(o) for _, _, o in kat]

    @pytest.mark.parametrize("seed,offset,p,n,packed", [
        (0, 0, 0.5, 32, "fd630123"), (42, 0, 0.1, 32, "dfbffefa"),
        (42, 5, 0.1, 27, "fef5d707")])
    def test_golden_vectors(self, seed, offset, p, n, packed):
        cuda = self.cuda
        pk = cuda.device_array((n + 7) // 8, np.uint8)
        keep = cuda.device_array(n, np.bool_)
        self.B.mask(n, seed, offset, R.threshold(p), keep_out=keep, packed_out=pk)
        assert pk.copy_to_host().tobytes().hex() == packed
        want = np.unpackbits(np.frombuffer(bytes.fromhex(packed), np.uint8),
                             count=n, bitorder="little").astype(bool)
        np.testing.assert_array_equal(keep.copy_to_host(), want)

    @pytest.mark.parametrize("launch", LAUNCHES)
    @pytest.mark.parametrize("n,seed,offset,p", [
        (1, 1, 0, 0.5), (13, 2, 3, 0.3), (200, 3, 8, 0.9), (1001, 4, 7, 0.1),
        (77, 5, 2**35 - 5, 0.5),            # block index crosses 2**32 (counter word 1)
        (64, 6, 2**64 - 64, 0.5),           # the very end of the stream
        (40, 2**64 - 1, 2**61 + 1, 0.25)])  # seed with both key words all ones
    def test_mask_kernel(self, n, seed, offset, p, launch):
        cuda = self.cuda
        T = R.threshold(p)
        keep = cuda.device_array(n, np.bool_)
        pk = cuda.device_array((n + 7) // 8, np.uint8)
        self.B.mask(n, seed, offset, T, keep_out=keep, packed_out=pk, launch=launch)
        want = R.keep_range(seed, offset, n, T)
        np.testing.assert_array_equal(keep.copy_to_host(), want)
        np.testing.assert_array_equal(pk.copy_to_host(), np.packbits(want, bitorder="little"))
        pk2 = cuda.device_array((n + 7) // 8, np.uint8)  # packed alone
        self.B.mask(n, seed, offset, T, packed_out=pk2, launch=launch)
        np.testing.assert_array_equal(pk2.copy_to_host(), pk.copy_to_host())

    @pytest.mark.parametrize("offset", [0, 3])
    def test_ties_exact(self, offset):
        """Thresholds whose high half equals a drawn lane force the tie-break,
        in the mask kernel and in both forward kernels (contiguous, strided)."""
        seed, n = 11, 600
        j = np.arange(offset, offset + n, dtype=np.uint64)
        lanes = (np.arange(n), (j & np.uint64(7)).astype(int))
        hi = R._lanes(seed, j >> np.uint64(3), 0)[lanes]
        lo = R._lanes(seed, j >> np.uint64(3), 1)[lanes]
        x = values(n, np.float32, 1)
        base = self.dev(np.stack([x, -x], axis=1))  # x is column 0: stride 2
        for i in (5, 321, 599):
            h, l = int(hi[i]), int(lo[i])
            for tl in sorted({0, l, min(l + 1, 0xFFFF), 0xFFFF}):
                T = (h << 16) | tl
                p = T / 2**32
                assert R.threshold(p) == T
                want_keep = R.keep_range(seed, offset, n, T)
                assert want_keep[i] == (l >= tl)
                keep = self.cuda.device_array(n, np.bool_)
                self.B.mask(n, seed, offset, T, keep_out=keep, launch=(2, 32))
                np.testing.assert_array_equal(keep.copy_to_host(), want_keep)
                want = ref_forward(x, seed, offset, T, 1 / (1 - p), (1,))
                for dx in (self.dev(x), base[:, 0]):
                    out = self.cuda.device_array(n, np.float32)
                    self.B.forward(dx, out, seed, offset, T, 1 / (1 - p), (1,),
                                   launch=(3, 64))
                    assert_same(out.copy_to_host(), want)

    # --- forward ---------------------------------------------------------------------

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("launch", LAUNCHES)
    @pytest.mark.parametrize("n,offset,p", [(1, 0, 0.5), (9, 5, 0.5), (500, 8, 0.3),
                                            (1003, 13, 0.7)])
    def test_forward_contiguous(self, dtype, launch, n, offset, p):
        cuda = self.cuda
        x = values(n, dtype, n)
        T, s, seed = R.threshold(p), 1 / (1 - p), 1234567890123
        want = ref_forward(x, seed, offset, T, s, (1,))
        dx = self.dev(x)
        out = cuda.device_array(n, dtype)
        self.B.forward(dx, out, seed, offset, T, s, (1,), launch=launch)
        assert_same(out.copy_to_host(), want)
        keep = cuda.device_array(n, np.bool_)
        pk = cuda.device_array((n + 7) // 8, np.uint8)
        out2 = cuda.device_array(n, dtype)
        self.B.forward(dx, out2, seed, offset, T, s, (1,), keep_out=keep, packed_out=pk,
                       launch=launch)
        assert_same(out2.copy_to_host(), want)
        kr = R.keep_range(seed, offset, n, T)
        np.testing.assert_array_equal(keep.copy_to_host(), kr)
        np.testing.assert_array_equal(pk.copy_to_host(), np.packbits(kr, bitorder="little"))
        self.B.forward(dx, dx, seed, offset, T, s, (1,), launch=launch)  # in place
        assert_same(dx.copy_to_host(), want)

    def test_dropped_are_positive_zero_and_f16_rounding(self):
        x = np.array([np.nan, -np.inf, -0.0, -1.0, 65504.0, 1e-8, -3.3, 2.0] * 16,
                     dtype=np.float16)
        p = 0.4  # scale 1/0.6 overflows 65504 to inf in float16, rounds the rest
        T = R.threshold(p)
        out = self.cuda.device_array(x.shape, np.float16)
        self.B.forward(self.dev(x), out, 9, 0, T, 1 / (1 - p), (1,))
        got = out.copy_to_host()
        assert_same(got, ref_forward(x, 9, 0, T, 1 / (1 - p), (1,)))
        keep = R.keep_range(9, 0, x.size, T)
        assert (bits(got)[~keep] == 0).all() and (~keep).any() and keep.any()
        want_kept = (x.astype(np.float32) * np.float32(1 / (1 - p))).astype(np.float16)
        np.testing.assert_array_equal(bits(got)[keep], bits(want_kept)[keep])

    @pytest.mark.parametrize("dtype", WITH_BF16)
    @pytest.mark.parametrize("case", ["step", "reverse", "transpose", "3d", "fortran_out"])
    def test_forward_strided(self, dtype, case):
        cuda = self.cuda
        base = values((10, 12, 9), dtype, 3)
        db = self.dev(base)
        if case == "step":
            hx, dx = base[1, ::3, 1:8:2], db[1, ::3, 1:8:2]
        elif case == "reverse":
            hx, dx = base[::-1, 2, ::-2], db[::-1, 2, ::-2]
        elif case == "transpose":
            hx, dx = base[:, :, 4].T, db[:, :, 4].T
        elif case == "3d":
            hx, dx = base[::2, 1::2, ::-3].transpose(2, 0, 1), db[::2, 1::2, ::-3].transpose((2, 0, 1))
        else:
            hx, dx = base[3], db[3]
        T, s = R.threshold(0.35), 1 / 0.65
        ms = c_strides(hx.shape)
        want = ref_forward(np.ascontiguousarray(hx), 77, 5, T, s, ms)
        if case == "fortran_out":
            out = cuda.device_array(hx.shape, dtype, order="F")
        else:  # a strided output view
            out = cuda.device_array(hx.shape + (2,), dtype)[..., 1]
        for launch in ((1, 32), (4, 64)):
            self.B.forward(dx, out, 77, 5, T, s, ms, launch=launch)
            assert_same(out.copy_to_host(), want)
        keep = cuda.device_array(hx.shape, np.bool_)
        pk = cuda.device_array((hx.size + 7) // 8, np.uint8)
        self.B.forward(dx, out, 77, 5, T, s, ms, keep_out=keep, packed_out=pk)
        kr = R.keep_range(77, 5, hx.size, T)
        np.testing.assert_array_equal(keep.copy_to_host().ravel(), kr)
        np.testing.assert_array_equal(pk.copy_to_host(), np.packbits(kr, bitorder="little"))
        assert_same(out.copy_to_host(), want)

    @pytest.mark.parametrize("dtype", (np.float16, np.float32, np.float64))
    @pytest.mark.parametrize("shape,ns", [((6, 40), (1, 40)), ((6, 40), (6, 1)),
                                          ((4, 5, 16), (4, 1, 16)), ((3, 4, 5, 6), (3, 4, 1, 1)),
                                          ((3, 4, 5), (1, 1, 1))])
    def test_noise_shapes_public_api(self, dtype, shape, ns):
        """fastdrop.dropout on a foreign CAI array routes to the GPU front end."""
        x = values(shape, dtype, 5)
        want, want_keep = fastdrop.dropout(x, 0.3, rng=8, noise_shape=ns, return_mask=True,
                                           backend="reference")
        _, want_pk = fastdrop.dropout(x, 0.3, rng=8, noise_shape=ns, return_mask="packed",
                                      backend="reference")
        got, keep = fastdrop.dropout(SimCAI(x.copy()), 0.3, rng=8, noise_shape=ns,
                                     return_mask=True)
        assert_same(got.copy_to_host(), want)
        np.testing.assert_array_equal(keep.copy_to_host(), want_keep)
        got2, pk = fastdrop.dropout(SimCAI(x.copy()), 0.3, rng=8, noise_shape=ns,
                                    return_mask="packed", backend="cuda")
        assert_same(got2.copy_to_host(), want)
        np.testing.assert_array_equal(pk.copy_to_host(), want_pk)
        got3 = fastdrop.dropout(SimCAI(x.copy()), 0.3, rng=8, noise_shape=ns)
        assert_same(got3.copy_to_host(), want)

    # --- the affine select (docs/spec.md §4): x * scale + shift, fill --------------------

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("abc", AFFINE)
    def test_affine_forward_contiguous(self, dtype, abc):
        """Tile kernel (aligned and unaligned offsets), with and without mask
        outputs, out of place and in place."""
        cuda = self.cuda
        scale, shift, fill = abc
        aff = dict(shift=shift, fill=fill)
        n, seed = 203, 99
        x = affine_values(n, dtype, 40)
        T = R.threshold(0.35)
        for offset, launch in ((8, (2, 32)), (5, (3, 64)), (0, None)):
            want = ref_forward(x, seed, offset, T, scale, (1,), **aff)
            kr = R.keep_range(seed, offset, n, T)
            assert kr.any() and not kr.all()
            dx = self.dev(x)
            out = cuda.device_array(n, dtype)
            self.B.forward(dx, out, seed, offset, T, scale, (1,), launch=launch, **aff)
            assert_same(out.copy_to_host(), want)
            keep = cuda.device_array(n, np.bool_)
            pk = cuda.device_array((n + 7) // 8, np.uint8)
            out2 = cuda.device_array(n, dtype)
            self.B.forward(dx, out2, seed, offset, T, scale, (1,), keep_out=keep,
                           packed_out=pk, launch=launch, **aff)
            assert_same(out2.copy_to_host(), want)
            np.testing.assert_array_equal(keep.copy_to_host(), kr)
            np.testing.assert_array_equal(pk.copy_to_host(), np.packbits(kr, bitorder="little"))
            self.B.forward(dx, dx, seed, offset, T, scale, (1,), launch=launch, **aff)
            assert_same(dx.copy_to_host(), want)
        # dropped elements are exactly R(C(fill)), kept ones R(C(x) * a + b)
        ct = np.float64 if dtype is np.float64 else np.float32
        with np.errstate(all="ignore"):
            kept = (x.astype(ct) * ct(scale) + ct(shift)).astype(dtype)
            c = dtype(ct(fill))
        got = out.copy_to_host()
        np.testing.assert_array_equal(bits(got)[~kr], np.full((~kr).sum(), bits(np.array(c))))
        np.testing.assert_array_equal(bits(got)[kr], bits(kept)[kr])

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("abc", AFFINE)
    def test_affine_forward_strided(self, dtype, abc):
        """Strided kernel: a reversed, transposed view into a strided output,
        with mask outputs."""
        cuda = self.cuda
        scale, shift, fill = abc
        aff = dict(shift=shift, fill=fill)
        base = affine_values((6, 9, 8), dtype, 41)
        hx = base[::-1, 1::2, ::3].transpose(2, 0, 1)
        dx = self.dev(base)[::-1, 1::2, ::3].transpose((2, 0, 1))
        T, ms = R.threshold(0.4), c_strides(hx.shape)
        want = ref_forward(hx, 7, 3, T, scale, ms, **aff)
        out = cuda.device_array(hx.shape + (2,), dtype)[..., 0]
        self.B.forward(dx, out, 7, 3, T, scale, ms, launch=(2, 32), **aff)
        assert_same(out.copy_to_host(), want)
        keep = cuda.device_array(hx.shape, np.bool_)
        pk = cuda.device_array((hx.size + 7) // 8, np.uint8)
        out2 = cuda.device_array(hx.shape, dtype, order="F")
        self.B.forward(dx, out2, 7, 3, T, scale, ms, keep_out=keep, packed_out=pk, **aff)
        assert_same(out2.copy_to_host(), want)
        kr = R.keep_range(7, 3, hx.size, T)
        np.testing.assert_array_equal(keep.copy_to_host().ravel(), kr)
        np.testing.assert_array_equal(pk.copy_to_host(), np.packbits(kr, bitorder="little"))

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("ns", [(6, 1), (1, 20), (1, 1)])
    def test_affine_forward_broadcast(self, dtype, ns):
        """Broadcast mask strides (noise shapes), contiguous and strided x."""
        from fastdrop._validate import mask_geometry

        cuda = self.cuda
        x = affine_values((6, 20), dtype, 42)
        _, ms, _ = mask_geometry(x.shape, ns)
        T = R.threshold(0.3)
        for scale, shift, fill in AFFINE[:2]:
            want = ref_forward(x, 12, 1, T, scale, ms, shift=shift, fill=fill)
            out = cuda.device_array(x.shape, dtype)
            self.B.forward(self.dev(x), out, 12, 1, T, scale, ms, shift=shift, fill=fill,
                           launch=(2, 32))
            assert_same(out.copy_to_host(), want)
            wide = self.dev(np.stack([x, -x], axis=2))[:, :, 0]  # strided input
            self.B.forward(wide, out, 12, 1, T, scale, ms, shift=shift, fill=fill)
            assert_same(out.copy_to_host(), want)

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("abc", AFFINE)
    def test_affine_apply_mask(self, dtype, abc):
        """Stored bool and packed masks, full and broadcast (noise shape),
        contiguous and strided x."""
        from fastdrop._validate import mask_geometry

        cuda = self.cuda
        scale, shift, fill = abc
        aff = dict(shift=shift, fill=fill)
        x = affine_values((5, 24), dtype, 43)
        views = ((x, self.dev(x)),
                 (x[:, ::-2], self.dev(x)[:, ::-2]))  # reversed, stride 2
        for ns in (None, (5, 1)):
            for hx, dx in views:
                M, ms, n = mask_geometry(hx.shape, ns)
                keep = np.random.default_rng(n).random(n) < 0.6
                pk = np.packbits(keep, bitorder="little")
                want = np.empty_like(hx)
                R.apply_mask(np.ascontiguousarray(hx), want, ms, scale, keep=keep, **aff)
                want2 = np.empty_like(hx)
                R.apply_mask(np.ascontiguousarray(hx), want2, ms, scale, packed=pk, **aff)
                assert_same(want2, want)
                out = cuda.device_array(hx.shape, dtype)
                self.B.apply_mask(dx, out, ms, scale, keep=self.dev(keep), launch=(2, 32),
                                  **aff)
                assert_same(out.copy_to_host(), want)
                out = cuda.device_array(hx.shape, dtype)
                self.B.apply_mask(dx, out, ms, scale, packed=self.dev(pk), **aff)
                assert_same(out.copy_to_host(), want)

    @pytest.mark.parametrize("dtype", DTYPES)
    def test_affine_is_not_fused(self, dtype):
        """An element whose fused multiply-add differs from mul-then-add
        (checked here with exact rationals, so this test can fail): every
        kernel path gives the two-rounding result of the reference."""
        cuda = self.cuda
        x0, scale, shift = fma_case(dtype)
        ct = np.float64 if dtype is np.float64 else np.float32
        two_step = dtype(ct(ct(dtype(x0)) * ct(scale)) + ct(shift))
        assert bits(np.array(two_step)) == 0  # +0.0
        f = fused(x0, scale, shift, dtype)
        assert f != 0 and bits(np.array(f)) != bits(np.array(two_step))
        x = np.full(40, x0, dtype)
        x[1::4] = affine_values(10, dtype, 44)  # and ordinary values around it
        aff = dict(shift=shift, fill=-2.0)
        want = ref_forward(x, 1, 0, 0, scale, (1,), **aff)  # T = 0: all kept
        assert (bits(want[::4]) == bits(np.array(two_step))).all()
        for offset in (0, 3):  # tile kernel, aligned and not
            out = cuda.device_array(x.shape, dtype)
            self.B.forward(self.dev(x), out, 1, offset, 0, scale, (1,), launch=(1, 32), **aff)
            assert_same(out.copy_to_host(), want)
        out = cuda.device_array(20, dtype)  # strided kernel
        self.B.forward(self.dev(x)[::2], out, 1, 0, 0, scale, (1,), **aff)
        assert_same(out.copy_to_host(), want[::2])
        out = cuda.device_array(x.shape, dtype)  # stored mask
        keep = np.arange(40) % 3 != 1
        self.B.apply_mask(self.dev(x), out, (1,), scale, keep=self.dev(keep), **aff)
        got = out.copy_to_host()
        assert_same(got[keep], want[keep])
        assert (bits(got[~keep]) == bits(np.array(dtype(-2.0)))).all()

    def test_plain_is_affine_with_defaults(self):
        """shift=-0.0, fill=+0.0 (the defaults) is plain dropout, bit for bit:
        -0.0 inputs stay -0.0, NaN and inf pass, dropped are +0.0."""
        cuda = self.cuda
        for dtype in DTYPES:
            x = affine_values(100, dtype, 45)
            T, s = R.threshold(0.5), 2.0
            want = ref_forward(x, 3, 0, T, s, (1,))
            ct = np.float64 if dtype is np.float64 else np.float32
            kr = R.keep_range(3, 0, x.size, T)
            with np.errstate(all="ignore"):
                plain = np.where(kr, (x.astype(ct) * ct(s)).astype(dtype), dtype(0))
            assert_same(want, plain)
            for kw in ({}, dict(shift=-0.0, fill=0.0)):
                out = cuda.device_array(x.shape, dtype)
                self.B.forward(self.dev(x), out, 3, 0, T, s, (1,), launch=(1, 32), **kw)
                assert_same(out.copy_to_host(), want)

    @pytest.mark.parametrize("kind", [None, "bool", "packed"])
    @pytest.mark.parametrize("ns", [None, (4, 1, 6)])
    def test_affine_plans_through_frontend(self, kind, ns):
        """The front end's CudaOps pass a plan's shift and fill to every kernel
        path: forward (with mask outputs), draw-then-apply (broadcast mask
        returned) and stored masks; the host runner gives the same bits."""
        from fastdrop import _dispatch, _plan

        x = affine_values((4, 5, 6), np.float32, 46)
        scale, shift, fill = AFFINE[0]
        plan = _plan.plan_dropout(x.shape, 0.3, training=True, mode="inverted", rng=5,
                                  noise_shape=ns, mask_out=kind)
        plan = plan._replace(shift=shift, fill=fill)
        assert plan.rule == "select" and plan.scale != scale  # scale from p, as in dropout
        want = _dispatch.run_host(plan, R, x, np.empty_like(x))
        got = self.F.run_plan(plan, self.dev(x))
        if kind is None:
            want, got = (want,), (got,)
        for w, g in zip(want, got):
            assert_same(g.copy_to_host(), w)
        # the stored mask of that draw, bool (read in place, transposed) and packed
        _, keep = _dispatch.run_host(plan._replace(mask_out="bool"), R, x, np.empty_like(x))
        yv = want[0]
        for m in (self.dev(np.ascontiguousarray(keep.T)).T,
                  self.dev(np.packbits(keep.reshape(-1), bitorder="little"))):
            stored = self.F._stored_mask(x.shape, m, ns)
            ap = _plan.plan_apply(x.shape, 0.3, "inverted", stored)._replace(shift=shift,
                                                                            fill=fill)
            assert_same(self.F.run_plan(ap, self.dev(x)).copy_to_host(), yv)

    # --- Gaussian dropout and noise (docs/spec.md §10, §11) ---------------------------

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("oab", NOISE)
    @pytest.mark.parametrize("offset", [0, 5, 2**35 - 7, 2**64 - 23])
    def test_noise_contiguous(self, dtype, oab, offset):
        """The block-per-thread kernel (mask index == logical index), every
        alignment of the first Philox block, a grid-stride loop, in place;
        NaN, infinities and -0.0 among the inputs."""
        op, a, b = oab
        n, seed = 23, 2**64 - 3
        x = values(n, dtype, offset % 97)
        want = ref_noise(x, seed, offset, (1,), a, b, op)
        for launch in (None, (2, 2)):
            out = self.cuda.device_array(n, dtype)
            self.B.noise(self.dev(x), out, seed, offset, (1,), a, b, op, launch=launch)
            assert_same(out.copy_to_host(), want)
        d = self.dev(x)
        self.B.noise(d, d, seed, offset, (1,), a, b, op, launch=(1, 3))  # in place
        assert_same(d.copy_to_host(), want)

    @pytest.mark.parametrize("dtype", WITH_BF16)
    @pytest.mark.parametrize("case", ["step", "reverse", "transpose", "3d", "fortran_out",
                                      "in_place"])
    def test_noise_strided(self, dtype, case):
        """Strided, reversed and transposed views (both kernels: a reversed
        1-D view still has a contiguous mask), strided and Fortran outputs,
        in place on a strided view."""
        cuda = self.cuda
        base = values((6, 7, 5), dtype, 50)
        db = self.dev(base)
        if case == "step":
            hx, dx = base[1, ::2, 1:5:2], db[1, ::2, 1:5:2]
        elif case == "reverse":
            hx, dx = base[::-1, 2, 3], db[::-1, 2, 3]
        elif case == "transpose":
            hx, dx = base[:, :, 4].T, db[:, :, 4].T
        elif case == "3d":
            hx, dx = base[::2, 1::2, ::-2].transpose(2, 0, 1), \
                db[::2, 1::2, ::-2].transpose((2, 0, 1))
        else:
            hx, dx = base[:, ::-3, 1], db[:, ::-3, 1]
        ms = c_strides(hx.shape)
        for op, a, b in NOISE[:3:2]:
            want = ref_noise(hx, 77, 5, ms, a, b, op)
            if case == "in_place":
                d = self.dev(base)[:, ::-3, 1]
                self.B.noise(d, d, 77, 5, ms, a, b, op, launch=(2, 4))
                assert_same(d.copy_to_host(), want)
                continue
            if case == "fortran_out":
                out = cuda.device_array(hx.shape, dtype, order="F")
            else:  # a strided output view
                out = cuda.device_array(hx.shape + (2,), dtype)[..., 1]
            self.B.noise(dx, out, 77, 5, ms, a, b, op, launch=(2, 4))
            assert_same(out.copy_to_host(), want)

    @pytest.mark.parametrize("dtype", WITH_BF16)
    @pytest.mark.parametrize("shape,ns", [((6, 9), (6, 1)), ((6, 9), (1, 9)), ((6, 9), (1, 1)),
                                          ((4, 3, 5), (4, 1, 5))])
    def test_noise_broadcast(self, dtype, shape, ns):
        """Mask strides 0 on broadcast axes: one variate per mask element,
        shared along them; contiguous and strided x, offset 2**64 - n."""
        from fastdrop._validate import mask_geometry

        x = values(shape, dtype, 51)
        _, ms, n = mask_geometry(shape, ns)
        offset = 2**64 - n
        wide = self.dev(np.stack([x, -x], axis=-1))[..., 0]  # strided input
        for op, a, b in NOISE[::3]:
            want = ref_noise(x, 4, offset, ms, a, b, op)
            for dx in (self.dev(x), wide):
                out = self.cuda.device_array(shape, dtype)
                self.B.noise(dx, out, 4, offset, ms, a, b, op, launch=(2, 4))
                assert_same(out.copy_to_host(), want)

    @pytest.mark.parametrize("seed,offset", [(0, 0), (12345, 5), (7, 2**34 - 6),
                                             (2**64 - 1, 2**35 - 3), (3, 2**64 - 40)])
    def test_noise_variates(self, seed, offset):
        """The variates themselves: ``0.0 + (z * 1 + -0.0)`` is ``z``, equal
        to reference.normal_range (block index across 2**32, the end of the
        stream, both key words all ones); §10's golden values."""
        n = 40
        z = R.normal_range(seed, offset, n)
        assert (np.abs(z) > 1.0364).any()  # some from the tails (|q| > 0.425)
        for shape, ms, view in (((n,), (1,), slice(None)), ((5, 8), (8, 1), slice(None)),
                                ((n,), (1,), slice(None, None, -1))):
            x = np.zeros(n)
            out = self.cuda.device_array(n)
            self.B.noise(self.dev(x).reshape(shape), out.reshape(shape), seed, offset, ms,
                         -0.0, 1.0, "add", launch=(2, 3))
            got = out.copy_to_host()
            assert_same(got, z)
        if (seed, offset) == (0, 0):
            golden = ["-0x1.f60e59ec08376p+0", "0x1.1fb8d018e6b0bp-1",
                      "-0x1.0a7cd421f52c3p+0", "-0x1.5fedad7be36c1p-4"]
            assert [float.hex(float(v)) for v in got[:4]] == golden

    def test_normal_device_functions(self):
        """ppnd of chosen 32-bit words through the device functions: both
        ends of the uniform's range, the middle, the words around the
        switch from the central to the tail formula (|q| = 0.425) and random
        words, against reference.ppnd bit for bit."""
        from fastdrop._cuda import kernels

        f = kernels.normal_of_word

        @cuda.jit
        def k(w, out):
            i = cuda.grid(1)
            if i < w.shape[0]:
                out[i] = f(w[i])

        edges = [0, 1, 2, 3, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]
        for u in (0.075, 0.925):
            c = int(u * 2**32)
            edges += [c - 1, c, c + 1]
        words = np.array(edges + list(np.random.default_rng(52).integers(0, 2**32, 40)),
                         dtype=np.uint32)
        u = (words.astype(np.float64) + 0.5) * 2.0**-32
        q = np.abs(u - 0.5)
        assert (q <= 0.425).any() and (q > 0.425).any()
        out = cuda.device_array(words.size, np.float64)
        k[2, 32](self.dev(words), out)
        assert_same(out.copy_to_host(), R.ppnd(u))

    @pytest.mark.parametrize("dtype", WITH_BF16)
    @pytest.mark.parametrize("kind,param", [("gaussian_dropout", 0.3),
                                            ("gaussian_noise", 0.25)])
    def test_noise_frontend(self, dtype, kind, param):
        """frontend.noise / noise_backward on device arrays equal the host
        runner on the same plan (reference kernels), Generators advance
        alike; out=, in place, a noise shape, evaluation and param 0 (copies)."""
        from fastdrop import _dispatch, _plan

        def host(plan, x):
            return _dispatch.run_host(plan, R, x, np.empty_like(x))

        x = values((4, 10), dtype, 53)
        for ns in (None, (4, 1)):
            gh, gd = fastdrop.Generator(3, 5), fastdrop.Generator(3, 5)
            want = host(_plan.plan_noise(x.shape, kind, param, training=True, rng=gh,
                                         noise_shape=ns), x)
            got = self.F.noise(self.dev(x), kind, param, rng=gd, noise_shape=ns)
            assert_same(got.copy_to_host(), want)
            n = 40 if ns is None else 4
            assert gd.offset == gh.offset == 5 + -(-n // 8) * 8  # §3's advance
        want = host(_plan.plan_noise(x.shape, kind, param, training=True, rng=9), x)
        out = self.cuda.device_array(x.shape, dtype)
        assert self.F.noise(self.dev(x), kind, param, rng=9, out=out, backend="cuda") is out
        assert_same(out.copy_to_host(), want)
        d = self.dev(x)
        assert self.F.noise(d, kind, param, rng=9, out=d) is d  # in place
        assert_same(d.copy_to_host(), want)
        g = fastdrop.Generator(1)
        for kw in (dict(training=False), dict(param=0.0)):
            kw = {"param": param, **kw}
            got = self.F.noise(self.dev(x), kind, rng=g, **kw)
            assert_same(got.copy_to_host(), x)
        assert g.offset == 40  # param 0 in training still draws; evaluation does not
        # backward: Gaussian dropout regenerates the noise, Gaussian noise is the identity
        gr = values((4, 10), dtype, 54)
        for state in (9, (9, 0)):
            want = host(_plan.plan_noise_backward(gr.shape, kind, param, training=True,
                                                  state=state), gr)
            got = self.F.noise_backward(self.dev(gr), kind, param, state=state)
            assert_same(got.copy_to_host(), want)
        if kind == "gaussian_dropout":
            assert_same(self.F.noise_backward(self.dev(x), kind, param, state=9)
                        .copy_to_host(), self.F.noise(self.dev(x), kind, param, rng=9)
                        .copy_to_host())
        else:
            assert_same(self.F.noise_backward(self.dev(gr), kind, param).copy_to_host(), gr)
        assert_same(self.F.noise_backward(self.dev(gr), kind, param, training=False)
                    .copy_to_host(), gr)
        st = fastdrop.Generator(3, 5).state
        want = host(_plan.plan_noise_backward(gr.shape, kind, param, training=True, state=st,
                                              noise_shape=(4, 1)), gr)
        got = self.F.noise_backward(self.dev(gr), kind, param, state=st, noise_shape=(4, 1))
        assert_same(got.copy_to_host(), want)

    def test_noise_frontend_errors_and_empty(self):
        x = values((4, 8), np.float32, 55)
        d = self.dev(x)
        g = fastdrop.Generator(1)
        with pytest.raises(TypeError, match="runs on the CPU"):
            self.F.noise(d, "gaussian_noise", 0.1, rng=g, backend="numba")
        with pytest.raises(ValueError, match="shape"):
            self.F.noise(d, "gaussian_noise", 0.1, rng=g,
                         out=self.cuda.device_array((4, 7), np.float32))
        with pytest.raises(ValueError, match="noise_shape"):
            self.F.noise(d, "gaussian_dropout", 0.1, rng=g, noise_shape=(2, 8))
        with pytest.raises(TypeError, match="rng"):
            self.F.noise(d, "gaussian_dropout", 0.1, rng="seed")
        with pytest.raises(TypeError, match="training must be a bool"):
            self.F.noise(d, "gaussian_dropout", 0.1, rng=g, training=1)
        with pytest.raises(ValueError, match="state"):
            self.F.noise_backward(d, "gaussian_dropout", 0.1)
        with pytest.raises(TypeError, match="state"):
            self.F.noise_backward(d, "gaussian_noise", 0.1, state="x")
        with pytest.raises(ValueError, match="op must be"):
            self.B.noise(d, d, 1, 0, (8, 1), 1.0, 0.5, "sub")
        assert g.offset == 0
        np.testing.assert_array_equal(d.copy_to_host(), x)
        e = self.dev(np.ones((3, 0), np.float32))
        end = fastdrop.Generator(1, offset=2**64)
        assert self.F.noise(e, "gaussian_dropout", 0.5, rng=end).shape == (3, 0)
        assert end.offset == 2**64
        from fastdrop._cuda import kernels

        assert kernels.noise_kernel("float16", "mul", False) is \
            kernels.noise_kernel("float16", "mul", False)

    # --- bfloat16 (docs/spec.md §4, "bfloat16") ------------------------------------------

    def _bf16_oracle(self):
        if BF16 is None:
            pytest.skip("ml_dtypes is not installed")
        from cases import bf16_round_bits  # the spec's R, written in the tests

        return bf16_round_bits

    def test_bf16_every_bit_pattern(self):
        """Every bfloat16 bit pattern through the tile kernel (both mask
        outputs), the strided kernel with a stored bool mask and with packed
        bits on a reversed view: the kernels' integer conversions on uint16
        spans against an oracle written from the spec."""
        rnd = self._bf16_oracle()
        cuda = self.cuda
        h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
        x = h.view(BF16)
        f = (h.astype(np.uint32) << 16).view(np.float32)
        seed, off, T = 2**64 - 3, 13, R.threshold(0.3)
        keep = R.keep_range(seed, off, h.size, T)
        packed = np.packbits(keep, bitorder="little")

        def want(a, b, c):
            with np.errstate(all="ignore"):
                v = f * np.float32(a) + np.float32(b)
            return np.where(keep, rnd(v), rnd(np.float32(c)))

        dx = self.dev(x)
        out = cuda.device_array(h.size, BF16)
        kd = cuda.device_array(h.size, np.bool_)
        pk = cuda.device_array(packed.size, np.uint8)
        self.B.forward(dx, out, seed, off, T, 1 / 0.7, (1,), keep_out=kd, packed_out=pk,
                       shift=0.1, fill=-1.25)
        np.testing.assert_array_equal(bits(out.copy_to_host()), want(1 / 0.7, 0.1, -1.25))
        np.testing.assert_array_equal(kd.copy_to_host(), keep)
        np.testing.assert_array_equal(pk.copy_to_host(), packed)
        # overflow to inf, a fill that rounds; then scale 1 (signalling NaNs quiet)
        self.B.apply_mask(dx, out, (1,), 1e30, keep=self.dev(keep), fill=1.00390625)
        np.testing.assert_array_equal(bits(out.copy_to_host()), want(1e30, -0.0, 1.00390625))
        rev = self.dev(x[::-1].copy())[::-1]
        self.B.apply_mask(rev, out, (1,), 1.0, packed=self.dev(packed))
        np.testing.assert_array_equal(bits(out.copy_to_host()), want(1.0, -0.0, 0.0))

    def test_bf16_noise_bit_patterns(self):
        """The Gaussian rule (§11) on 4096 bit patterns: both noise kernels
        (a contiguous x, a reversed one), overflow to inf included."""
        rnd = self._bf16_oracle()
        h = np.arange(5, 1 << 16, 16, dtype=np.uint32).astype(np.uint16)
        x = h.view(BF16)
        f = (h.astype(np.uint32) << 16).view(np.float32)
        z = R.normal_range(9, 2**34 - 5, h.size)
        for op, a, b in (("mul", 1.0, 3.0), ("add", -0.0, 3e38)):
            t = (z * b + a).astype(np.float32)
            with np.errstate(all="ignore"):
                w = rnd(f * t if op == "mul" else f + t)
            for dx in (self.dev(x), self.dev(x[::-1].copy())[::-1]):
                out = self.cuda.device_array(h.size, BF16)
                self.B.noise(dx, out, 9, 2**34 - 5, (1,), a, b, op)
                np.testing.assert_array_equal(bits(out.copy_to_host()), w)

    @pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
    def test_bf16_constant_rules_and_eval(self, p):
        """The rules without a select kernel (copy, zero, classic
        evaluation's scale: the fill kernel) and the masks they fill."""
        self._bf16_oracle()
        x = values((5, 13), BF16, 7)
        for kw in (dict(), dict(training=False), dict(training=False, mode="classic")):
            want, wm = fastdrop.dropout(x, p, rng=1, return_mask="packed", **kw,
                                        backend="reference")
            got, m = self.F.dropout(self.dev(x), p, rng=1, return_mask="packed", **kw)
            assert_same(got.copy_to_host(), want)
            np.testing.assert_array_equal(m.copy_to_host(), wm)
            got = self.F.dropout(self.dev(x)[:, ::-2], p, rng=1, **kw)
            assert_same(got.copy_to_host(),
                        fastdrop.dropout(x[:, ::-2], p, rng=1, **kw, backend="reference"))

    def test_bf16_spans_and_foreign_arrays(self):
        """A bfloat16 device array is read through a uint16 span; a foreign
        CAI array can only say ``<V2`` (no bfloat16 type string), which is
        refused with that dtype named."""
        self._bf16_oracle()
        from fastdrop._cuda import _interop

        d = _interop.describe(self.dev(values((3, 4), BF16, 2)))
        assert d.dtype == BF16
        v = _interop.view(d)
        assert v.span.dtype == np.uint16 and v.dtype == BF16
        with pytest.raises(TypeError, match=r"floating dtype .*bfloat16.*got dtype \|V2"):
            fastdrop.dropout(SimCAI(values((3, 4), BF16, 2)), 0.5, rng=0)

    # --- front end ---------------------------------------------------------------------

    def test_frontend_zero_copy_and_generator(self):
        x = values((7, 33), np.float32, 6)
        hx = x.copy()
        g_host, g_dev = fastdrop.Generator(5, offset=16), fastdrop.Generator(5, offset=16)
        want = fastdrop.dropout(x, 0.45, rng=g_host, backend="reference")
        a = SimCAI(hx)
        res = fastdrop.dropout(a, 0.45, rng=g_dev, out=a)  # in place, zero-copy
        assert res is a
        assert_same(hx, want)  # written through the interface pointer
        assert g_dev.offset == g_host.offset == 16 + (7 * 33 + 7) // 8 * 8
        want2 = fastdrop.dropout(x, 0.45, rng=g_host, backend="reference")
        got2 = self.F.dropout(self.dev(x), 0.45, rng=g_dev)
        assert_same(got2.copy_to_host(), want2)
        assert type(got2).__name__ == "FakeCUDAArray"  # numba device array in, out

    @pytest.mark.parametrize("p", [0.0, 1.0])
    @pytest.mark.parametrize("kind", ["bool", "packed"])
    def test_p_zero_one(self, p, kind):
        x = values((5, 13), np.float64, 7)
        want, wm = fastdrop.dropout(x, p, rng=1, return_mask=kind, backend="reference")
        got, m = self.F.dropout(self.dev(x), p, rng=1, return_mask=kind)
        assert_same(got.copy_to_host(), want)
        np.testing.assert_array_equal(m.copy_to_host(), wm)

    @pytest.mark.parametrize("mode", ["inverted", "classic"])
    @pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
    def test_eval(self, mode, p):
        x = values((4, 9), np.float16, 8)
        want, wm = fastdrop.dropout(x, p, training=False, mode=mode, return_mask="packed",
                                    backend="reference")
        got, m = self.F.dropout(self.dev(x), p, training=False, mode=mode,
                                return_mask="packed")
        assert_same(got.copy_to_host(), want)
        np.testing.assert_array_equal(m.copy_to_host(), wm)
        got2 = self.F.dropout(self.dev(x)[:, ::2], p, training=False, mode=mode)
        want2 = fastdrop.dropout(x[:, ::2], p, training=False, mode=mode, backend="reference")
        assert_same(got2.copy_to_host(), want2)

    @pytest.mark.parametrize("mode", ["inverted", "classic"])
    def test_apply_mask_and_backward(self, mode):
        cuda = self.cuda
        x = values((6, 20), np.float32, 9)
        g = values((6, 20), np.float32, 10)
        y, keep = fastdrop.dropout(x, 0.4, rng=3, mode=mode, return_mask=True,
                                   backend="reference")
        _, pk = fastdrop.dropout(x, 0.4, rng=3, mode=mode, return_mask="packed",
                                 backend="reference")
        want = fastdrop.apply_mask(g, keep, 0.4, mode=mode, backend="reference")
        dg = self.dev(g)
        assert_same(fastdrop.apply_mask(SimCAI(g.copy()), SimCAI(keep), 0.4,
                                        mode=mode).copy_to_host(), want)
        assert_same(self.F.apply_mask(dg, self.dev(pk), 0.4, mode=mode).copy_to_host(), want)
        # a transposed (non-contiguous) bool mask is read in place
        kT = self.dev(np.ascontiguousarray(keep.T)).T
        assert_same(self.F.apply_mask(dg, kT, 0.4, mode=mode).copy_to_host(), want)
        # broadcast bool mask
        kb = keep[:1]
        assert_same(self.F.apply_mask(dg, self.dev(kb), 0.4, mode=mode).copy_to_host(),
                    fastdrop.apply_mask(g, kb, 0.4, mode=mode, backend="reference"))
        # backward from the state regenerates the same mask
        gb = self.F.dropout_backward(dg, 0.4, state=3, mode=mode)
        assert_same(gb.copy_to_host(), want)
        gb2 = fastdrop.dropout_backward(SimCAI(g.copy()), 0.4, state=(3, 0), mode=mode)
        assert_same(gb2.copy_to_host(), want)
        out = cuda.device_array_like(dg)
        assert fastdrop.dropout_backward(SimCAI(g.copy()), 0.4, mask=SimCAI(pk), mode=mode,
                                         out=out) is out
        assert_same(out.copy_to_host(), want)
        # packed mask with a noise shape
        xs = values((6, 20), np.float32, 11)
        _, pkn = fastdrop.dropout(xs, 0.4, rng=4, noise_shape=(6, 1), return_mask="packed",
                                  backend="reference")
        assert_same(self.F.apply_mask(dg, self.dev(pkn), 0.4, mode=mode,
                                      noise_shape=(6, 1)).copy_to_host(),
                    fastdrop.apply_mask(g, pkn, 0.4, mode=mode, noise_shape=(6, 1),
                                        backend="reference"))

    def test_edge_shapes(self):
        cuda = self.cuda
        for shape in [(), (0,), (3, 0), (1, 1, 1)]:
            x = values(shape, np.float32, 12)
            want, wk = fastdrop.dropout(x, 0.5, rng=2, return_mask=True, backend="reference")
            d = cuda.to_device(x) if x.ndim else cuda.to_device(x.reshape(1)).reshape(())
            got, k = self.F.dropout(d, 0.5, rng=2, return_mask=True)
            assert_same(got.copy_to_host(), want)
            np.testing.assert_array_equal(k.copy_to_host(), wk)

    def test_errors_mirror_api(self):
        cuda = self.cuda
        x = values((4, 8), np.float32, 13)
        d = self.dev(x)
        g = fastdrop.Generator(1)
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
            self.F.dropout(d, 1.5, rng=g)
        with pytest.raises(ValueError, match="p must be in"):
            fastdrop.dropout(SimCAI(x), float("nan"), rng=g)
        with pytest.raises(TypeError, match="int32"):
            fastdrop.dropout(SimCAI(np.ones(4, np.int32)), 0.5, rng=g)
        with pytest.raises(ValueError, match="mode"):
            self.F.dropout(d, 0.5, mode="bad", rng=g)
        with pytest.raises(ValueError, match="return_mask"):
            self.F.dropout(d, 0.5, return_mask="nope", rng=g)
        with pytest.raises(ValueError, match="noise_shape"):
            self.F.dropout(d, 0.5, noise_shape=(2, 8), rng=g)
        with pytest.raises(TypeError, match="GPU array"):
            self.F.dropout(d, 0.5, out=np.empty_like(x), rng=g)
        with pytest.raises(ValueError, match="shape"):
            self.F.dropout(d, 0.5, out=cuda.device_array((4, 7), np.float32), rng=g)
        with pytest.raises(TypeError, match="dtype"):
            self.F.dropout(d, 0.5, out=cuda.device_array((4, 8), np.float64), rng=g)
        big = cuda.device_array((5, 8), np.float32)
        with pytest.raises(ValueError, match="partly overlaps"):
            self.F.dropout(big[:4], 0.5, out=big[1:], rng=g)
        ro = x.copy()
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            self.F.dropout(d, 0.5, out=SimCAI(ro), rng=g)
        with pytest.raises(TypeError, match="runs on the CPU"):
            self.F.dropout(d, 0.5, rng=g, backend="numba")
        with pytest.raises(ValueError, match="unknown backend"):
            self.F.dropout(d, 0.5, rng=g, backend="nope")
        with pytest.raises(TypeError, match="rng"):
            self.F.dropout(d, 0.5, rng="seed")
        with pytest.raises(TypeError, match="host mask|GPU array"):
            self.F.apply_mask(d, np.ones((4, 8), bool), 0.5)
        with pytest.raises(ValueError, match="bytes"):
            self.F.apply_mask(d, cuda.device_array(3, np.uint8), 0.5)
        with pytest.raises(ValueError, match="broadcastable"):
            self.F.apply_mask(d, cuda.device_array((4, 3), np.bool_), 0.5)
        with pytest.raises(TypeError, match="bool array or a 1-D uint8"):
            self.F.apply_mask(d, cuda.device_array((4, 8), np.int8), 0.5)
        with pytest.raises(ValueError, match="either mask or state"):
            fastdrop.dropout_backward(SimCAI(x), 0.5, mask=SimCAI(np.ones((4, 8), bool)),
                                      state=1)
        with pytest.raises(TypeError, match="state"):
            self.F.dropout_backward(d, 0.5, state="x")
        assert g.offset == 0  # nothing advanced the generator
        np.testing.assert_array_equal(d.copy_to_host(), x)  # nothing written

    # --- the adversarial review's findings, on the GPU path ----------------------------

    @pytest.mark.parametrize("dtype", WITH_BF16)
    def test_public_api_takes_numba_device_arrays(self, dtype):
        """Every public function that takes arrays, through ``fastdrop.*`` with
        ``numba.cuda.to_device`` arrays, equals the reference bit for bit."""
        x = values((6, 10), dtype, 30)
        ref = dict(backend="reference")
        for kw in (dict(), dict(noise_shape=(6, 1)), dict(mode="classic"),
                   dict(training=False, mode="classic"), dict(training=False)):
            for rm in (False, True, "packed"):
                want = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(2, 5), return_mask=rm,
                                        **kw, **ref)
                got = fastdrop.dropout(self.dev(x), 0.3, rng=fastdrop.Generator(2, 5),
                                       return_mask=rm, **kw)
                if rm is False:
                    want, got = (want,), (got,)
                for w, g in zip(want, got):
                    assert_same(g.copy_to_host(), w)
        out = self.cuda.device_array(x.shape, x.dtype)
        assert fastdrop.dropout(self.dev(x), 0.3, rng=4, out=out) is out
        want = fastdrop.dropout(x, 0.3, rng=4, **ref)
        assert_same(out.copy_to_host(), want)
        d = self.dev(x)
        assert fastdrop.dropout(d, 0.3, rng=4, out=d) is d  # in place
        assert_same(d.copy_to_host(), want)
        _, keep = fastdrop.dropout(x, 0.3, rng=4, return_mask=True, **ref)
        packed = np.packbits(keep.reshape(-1), bitorder="little")
        for m in (keep, packed):
            assert_same(fastdrop.apply_mask(self.dev(x), self.dev(m), 0.3).copy_to_host(),
                        fastdrop.apply_mask(x, m, 0.3, **ref))
            assert_same(fastdrop.dropout_backward(self.dev(x), 0.3, mask=self.dev(m))
                        .copy_to_host(), want)
        assert_same(fastdrop.dropout_backward(self.dev(x), 0.3, state=4).copy_to_host(), want)
        assert_same(fastdrop.dropout_backward(self.dev(x), 0.3, training=False,
                                              mode="classic").copy_to_host(),
                    fastdrop.dropout(x, 0.3, training=False, mode="classic", **ref))
        with pytest.raises(TypeError, match="GPU array"):
            fastdrop.unpack_mask(self.dev(packed), x.shape)  # host function: no silent copy

    @pytest.mark.parametrize("dtype", WITH_BF16)
    def test_family_public_api_on_device_arrays(self, dtype):
        """alpha_dropout, feature_alpha_dropout, drop_path and their
        backwards (docs/spec.md §8, §9) on device arrays equal the reference
        bit for bit: the plan's affine select on the CUDA kernels as they are."""
        x = values((6, 4, 5), dtype, 31)
        ref = dict(backend="reference")
        calls = [(fastdrop.alpha_dropout, dict(p=0.3)),
                 (fastdrop.alpha_dropout, dict(p=0.3, noise_shape=(6, 1, 5))),
                 (fastdrop.feature_alpha_dropout, dict(p=0.45)),
                 (fastdrop.drop_path, dict(p=0.5)),
                 (fastdrop.drop_path, dict(p=0.5, scale_by_keep=False)),
                 (fastdrop.alpha_dropout, dict(p=1.0)),
                 (fastdrop.alpha_dropout, dict(p=0.3, training=False))]
        for f, kw in calls:
            p = kw.pop("p")
            want = f(x, p, rng=fastdrop.Generator(3, 9), **kw, **ref)
            got = f(self.dev(x), p, rng=fastdrop.Generator(3, 9), **kw)
            assert_same(got.copy_to_host(), want)
        assert_same(fastdrop.alpha_dropout_backward(self.dev(x), 0.3, state=(3, 9))
                    .copy_to_host(), fastdrop.alpha_dropout_backward(x, 0.3, state=(3, 9), **ref))
        assert_same(fastdrop.drop_path_backward(self.dev(x), 0.5, state=(3, 9))
                    .copy_to_host(), fastdrop.drop_path_backward(x, 0.5, state=(3, 9), **ref))

    def test_numba_device_array_routes_through_public_api(self):
        """fastdrop.dropout(..., backend='cuda') takes the simulator's arrays."""
        x = values((5, 7), np.float32, 20)
        got = fastdrop.dropout(self.dev(x), 0.4, rng=3, backend="cuda")
        assert_same(got.copy_to_host(), fastdrop.dropout(x, 0.4, rng=3, backend="reference"))

    def test_self_overlapping_out_and_training_and_end_of_stream(self):
        buf = np.full(64, -7.25, np.float32)
        out = SimCAI(np.lib.stride_tricks.as_strided(buf, shape=(4, 8), strides=(8, 4)))
        d = self.dev(np.ones((4, 8), np.float32))
        g = fastdrop.Generator(2)
        for training in (True, False):
            with pytest.raises(ValueError, match="overlap each other"):
                fastdrop.dropout(d, 0.5, rng=g, out=out, training=training)
        with pytest.raises(ValueError, match="overlap each other"):
            fastdrop.apply_mask(d, self.dev(np.ones((4, 8), bool)), 0.5, out=out)
        for bad in ("False", 0, None):
            with pytest.raises(TypeError, match="training must be a bool"):
                fastdrop.dropout(d, 0.5, rng=g, training=bad)
            with pytest.raises(TypeError, match="training must be a bool"):
                fastdrop.dropout_backward(d, 0.5, state=2, training=bad)
        with pytest.raises(TypeError, match="noise_shape"):
            fastdrop.dropout(d, 0.5, rng=g, noise_shape=True)
        assert (buf == -7.25).all() and g.offset == 0
        end = fastdrop.Generator(1, offset=2**64)
        e = self.dev(np.ones((3, 0), np.float32))
        assert fastdrop.dropout(e, 0.5, rng=end).shape == (3, 0)
        assert fastdrop.dropout(e, 0.5, rng=end, return_mask="packed")[1].shape == (0,)
        assert fastdrop.dropout_backward(e, 0.5, state=(1, 2**64)).shape == (3, 0)
        assert end.offset == 2**64

    def test_backward_mask_and_eval_checks(self):
        x = values((4, 8), np.float32, 21)
        d = self.dev(x)
        want, keep = fastdrop.dropout(x, 0.3, rng=4, return_mask=True, backend="reference")
        got = fastdrop.dropout_backward(d, 0.3, mask=self.dev(keep))
        assert_same(got.copy_to_host(), want)
        ev = fastdrop.dropout_backward(d, 0.3, training=False, mode="classic")
        assert_same(ev.copy_to_host(), fastdrop.dropout(x, 0.3, training=False,
                                                        mode="classic"))
        with pytest.raises(TypeError, match="state"):  # checked in evaluation too
            fastdrop.dropout_backward(d, 0.3, state="x", training=False)
        with pytest.raises(ValueError, match="bytes"):
            fastdrop.dropout_backward(d, 0.3, mask=self.cuda.device_array(3, np.uint8),
                                      training=False)

    def test_backend_registry_and_info(self):
        info = fastdrop.get_backends()["cuda"]
        assert info["available"] and info["dtypes"] == ("float16", "float32", "float64",
                                                        "bfloat16")
        from fastdrop._cuda import info as cinfo

        d = cinfo()
        assert d["available"] and d["simulator"] and len(d["devices"]) == 1

    def test_kernels_memoised_per_dtype(self):
        from fastdrop._cuda import kernels

        a = kernels.tile_kernel("float32", True, False, False, True)
        assert kernels.tile_kernel("float32", True, False, False, True) is a
        assert kernels.tile_kernel("float64", True, False, False, True) is not a
        assert kernels.nd_kernel("float16", kernels.BOOL, False, False) is \
            kernels.nd_kernel("float16", kernels.BOOL, False, False)


if not SIM:  # collected only inside the simulator run (no wall of skips here)
    del TestSim
