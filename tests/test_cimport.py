"""The public C API (fastdrop/_cython/api.pxd): a tiny Cython module that
cimports it is compiled at test time and must match the reference."""

import os
import sys

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from fastdrop import reference as R

Cython = pytest.importorskip("Cython")
pytest.importorskip("fastdrop._cython._kernels")

SRC = r'''
# cython: language_level=3
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from fastdrop._cython.api cimport (fastdrop_dropout_f16, fastdrop_dropout_f32,
    fastdrop_dropout_f64, fastdrop_mask_packed, fastdrop_keep, fastdrop_philox4x32_10,
    fastdrop_apply_packed_f32, fastdrop_dropout_bf16, fastdrop_apply_packed_bf16)

def dropout(x, out, uint64_t seed, uint64_t offset, double p):
    cdef int rc
    cdef float[::1] xf, of
    cdef double[::1] xd, od
    cdef uint16_t[::1] xh, oh
    cdef uint64_t n = x.shape[0]
    if x.dtype.itemsize == 4:
        xf = x; of = out
        with nogil:
            rc = fastdrop_dropout_f32(&xf[0], &of[0], n, seed, offset, p)
    elif x.dtype.itemsize == 8:
        xd = x; od = out
        with nogil:
            rc = fastdrop_dropout_f64(&xd[0], &od[0], n, seed, offset, p)
    else:
        xh = x.view("u2"); oh = out.view("u2")
        with nogil:
            rc = fastdrop_dropout_f16(&xh[0], &oh[0], n, seed, offset, p)
    return rc

def dropout_bf16(uint16_t[::1] x, uint16_t[::1] out, uint64_t seed, uint64_t offset,
                 double p):
    cdef int rc
    with nogil:
        rc = fastdrop_dropout_bf16(&x[0], &out[0], x.shape[0], seed, offset, p)
    return rc

def apply_packed_bf16(uint16_t[::1] x, uint16_t[::1] out, const uint8_t[::1] packed,
                      double scale):
    fastdrop_apply_packed_bf16(&x[0], &out[0], &packed[0], x.shape[0], scale)

def mask_packed(uint8_t[::1] out, uint64_t n, uint64_t seed, uint64_t offset, double p):
    return fastdrop_mask_packed(&out[0], n, seed, offset, p)

def keep(uint64_t seed, uint64_t pos, double p):
    return fastdrop_keep(seed, pos, p)

def philox(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1):
    cdef uint32_t c[4]
    c[0] = c0; c[1] = c1; c[2] = c2; c[3] = c3
    fastdrop_philox4x32_10(c, k0, k1)
    return [c[0], c[1], c[2], c[3]]

def apply_packed(float[::1] x, float[::1] out, const uint8_t[::1] packed, double scale):
    fastdrop_apply_packed_f32(&x[0], &out[0], &packed[0], x.shape[0], scale)
'''


@pytest.fixture(scope="module")
def mod(tmp_path_factory, c_compiler):
    from Cython.Build import cythonize
    from setuptools import Extension
    from setuptools.dist import Distribution

    from fastdrop._cython import get_include

    tmp = tmp_path_factory.mktemp("cimport")
    (tmp / "fd_cimport_check.pyx").write_text(SRC)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastdrop.__file__)))
    ext = Extension("fd_cimport_check", [str(tmp / "fd_cimport_check.pyx")],
                    include_dirs=[get_include()],
                    extra_compile_args=["-O2", "-ffp-contract=off"])
    dist = Distribution({"ext_modules": cythonize([ext], include_path=[root], quiet=True,
                                                  build_dir=str(tmp / "build"))})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(tmp)
    cmd.build_temp = str(tmp / "tmp")
    cmd.ensure_finalized()
    cmd.run()
    sys.path.insert(0, str(tmp))
    try:
        import fd_cimport_check
    finally:
        sys.path.remove(str(tmp))
    return fd_cimport_check


def test_kat(mod):
    assert [f"{v:08x}" for v in mod.philox(0, 0, 0, 0, 0, 0)] == \
        ["6627e8d5", "e169c58d", "bc57ac4c", "9b00dbd8"]
    assert [f"{v:08x}" for v in mod.philox(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344,
                                           0xa4093822, 0x299f31d0)] == \
        ["d16cfe09", "94fdcceb", "5001e420", "24126ea1"]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dropout_matches_reference(mod, dtype):
    rng = np.random.default_rng(0)
    for n in (1, 13, 1000, 70001):
        x = rng.standard_normal(n).astype(dtype)
        x[::9] = np.nan
        x[1::9] = -0.0
        x[2::9] = -np.inf
        for p in (0.0, 0.1, 0.5, 0.9, 1.0):
            for off in (0, 5, 2**40 + 3):
                want = np.empty_like(x)
                if p in (0.0, 1.0):
                    want[...] = x if p == 0.0 else 0
                else:
                    R.forward(x, want, 99, off, R.threshold(p), 1 / (1 - p), (1,))
                got = np.empty_like(x)
                assert mod.dropout(x, got, 99, off, p) == 0
                u = {2: "u2", 4: "u4", 8: "u8"}[x.itemsize]
                assert_array_equal(got.view(u), want.view(u))
    assert mod.dropout(x, got, 1, 0, float("nan")) == -1
    assert mod.dropout(x, got, 1, 0, 1.5) == -1


def test_bfloat16_c_api(mod):
    """fastdrop_dropout_bf16 / fastdrop_apply_packed_bf16 take bfloat16 as
    its uint16 bits (docs/spec.md §4); every bit pattern, against the
    reference on ml_dtypes arrays."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    x = h.view(ml_dtypes.bfloat16)
    for p, off in ((0.1, 0), (0.5, 5), (0.9, 2**40 + 3)):
        want = np.empty_like(x)
        R.forward(x, want, 99, off, R.threshold(p), 1 / (1 - p), (1,))
        got = np.empty_like(h)
        assert mod.dropout_bf16(h, got, 99, off, p) == 0
        assert_array_equal(got, want.view(np.uint16))
        packed = np.packbits(R.keep_range(7, off, h.size, R.threshold(p)), bitorder="little")
        R.apply_mask(x, want, (1,), 1 / (1 - p), packed=packed)
        mod.apply_packed_bf16(h, got, packed, 1 / (1 - p))
        assert_array_equal(got, want.view(np.uint16))
    assert mod.dropout_bf16(h, got, 1, 0, float("nan")) == -1


def test_mask_keep_apply(mod):
    for n, off in ((32, 0), (27, 5), (1003, 13)):
        for p in (0.1, 0.5, 3 / 65536):
            T = R.threshold(p)
            kr = R.keep_range(42, off, n, T)
            out = np.empty((n + 7) // 8, np.uint8)
            assert mod.mask_packed(out, n, 42, off, p) == 0
            assert_array_equal(out, np.packbits(kr, bitorder="little"))
            assert [mod.keep(42, off + i, p) for i in range(n)] == kr.astype(int).tolist()
            x = np.arange(n, dtype=np.float32) - 5
            y = np.empty_like(x)
            mod.apply_packed(x, y, out, 2.0)
            want = np.empty_like(x)
            R.apply_mask(x, want, (1,), 2.0, packed=out)
            assert_array_equal(y.view("u4"), want.view("u4"))
    assert mod.keep(0, 0, -0.5) == -1
