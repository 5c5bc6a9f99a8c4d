"""The LLVM intrinsics of the Numba CPU kernels (fastdrop/_numba/llvm.py),
one by one: each in a tiny ``njit`` function, checked for its effect and,
where cheap, for the LLVM instruction (``inspect_llvm``) or machine
instruction (``inspect_asm``, x86 only) it exists for.  Also the disk-cache
locator of fastdrop/_numba/_cache.py: registered, hashing llvm.py, and a
loud RuntimeWarning when Numba's private caching API is not as expected."""

import os
import re
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal

numba = pytest.importorskip("numba")

from llvmlite import binding as llvm_binding  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import carray, njit  # noqa: E402

from fastdrop._numba import _cache  # noqa: E402
from fastdrop._numba import llvm as L  # noqa: E402

X86 = L.X86


def _ir(fn):
    """The optimised LLVM IR of the (single) compiled signature of ``fn``."""
    return fn.inspect_llvm(fn.signatures[0])


def _asm(fn):
    return fn.inspect_asm(fn.signatures[0])


def _aligned(n, dtype, pad=64):
    """A zero-filled 1-D array of ``n`` elements, plus the index of its first
    element on a 64-byte boundary that leaves ``pad`` elements after it."""
    itemsize = np.dtype(dtype).itemsize
    buf = np.zeros(n + 64 // itemsize, dtype)
    first = (-buf.ctypes.data % 64) // itemsize
    assert first + pad <= buf.size
    return buf, first


# ---------------------------------------------------------------------------
# prefetch
# ---------------------------------------------------------------------------

@njit
def _sum_with_prefetch(x, ahead):
    t = 0.0
    for i in range(x.shape[0]):
        if i % 16 == 0:
            L.prefetch(x, i + ahead)  # past the end too: a prefetch never faults
        t += x[i]
    return t


def test_prefetch_runs_and_keeps_results():
    x = np.arange(1000, dtype=np.float32)
    assert _sum_with_prefetch(x, 256) == float(x.sum(dtype=np.float64))
    assert "llvm.prefetch" in _ir(_sum_with_prefetch)
    if X86:  # locality 2 (L2) on x86 is prefetcht1
        assert "prefetcht1" in _asm(_sum_with_prefetch)


@pytest.mark.parametrize("ptrty, name", [(ir.IntType(8).as_pointer(), "llvm.prefetch.p0i8"),
                                         (ir.PointerType(), "llvm.prefetch.p0")])
def test_prefetch_declaration_typed_and_opaque_pointers(ptrty, name):
    """The declaration is mangled from the pointer type passed, and the
    module parses and verifies with the installed LLVM either way (no
    branch on the LLVM version)."""
    m = ir.Module()
    f = ir.Function(m, ir.FunctionType(ir.VoidType(), [ptrty]), "f")
    b = ir.IRBuilder(f.append_basic_block())
    fn = L.declare_prefetch(m, ptrty)
    assert fn.name == name
    assert L.declare_prefetch(m, ptrty) is fn  # declared once per module
    i32 = ir.IntType(32)
    b.call(fn, [f.args[0], i32(0), i32(2), i32(1)])
    b.ret_void()
    mod = llvm_binding.parse_assembly(str(m))
    mod.verify()
    assert "call void @llvm.prefetch" in str(mod)


# ---------------------------------------------------------------------------
# addr, store_fence
# ---------------------------------------------------------------------------

@njit
def _addr_of(a):
    return L.addr(a)


def test_addr_is_the_data_address():
    a = np.zeros(100, np.float64)
    assert _addr_of(a) == a.ctypes.data
    assert _addr_of(a[3:]) == a.ctypes.data + 3 * a.itemsize


# ---------------------------------------------------------------------------
# stack frames: stack_buffer, align_frame
# ---------------------------------------------------------------------------

def _make_scratch_sum(dtype):
    @njit
    def scratch_sum(n_used, v):
        buf = carray(L.stack_buffer(40, dtype), 40)
        for i in range(n_used):
            buf[i] = v
        s = 0.0
        for i in range(n_used):
            s += buf[i]
        return s, L.addr(buf) % 64
    return scratch_sum


@pytest.mark.parametrize("dtype, lty", [(np.uint32, "i32"), (np.float64, "double"),
                                        (np.bool_, "i8")])
def test_stack_buffer_is_aligned_scratch_in_the_frame(dtype, lty):
    fn = _make_scratch_sum(dtype)
    s, misalign = fn(40, dtype(1))
    assert s == 40 and misalign == 0
    assert fn(7, dtype(1))[0] == 7
    text = _ir(fn)
    assert f"alloca [40 x {lty}], align 64" in text  # in the frame, not the heap
    assert "NRT_MemInfo_alloc" not in text


def test_stack_buffer_needs_a_constant_size():
    @njit
    def f(n):
        return carray(L.stack_buffer(n, np.uint32), n)[0]
    with pytest.raises(numba.core.errors.TypingError):
        f(4)


@njit
def _framed(x):
    L.align_frame()
    return x.sum()


def test_align_frame_gives_a_64_byte_aligned_frame():
    assert _framed(np.ones(4)) == 4.0
    assert re.search(r"alignstack[=(]64", _ir(_framed))
    if X86:  # the prologue realigns the stack pointer
        assert re.search(r"and[lq]?\s+\$-64, %rsp", _asm(_framed))


_FRAMES_SCRIPT = r"""
import json, re
import numpy as np
from fastdrop._numba import kernels as K
found = {}
for k in ("forward_contig", "mask", "apply_contig", "noise_nd"):
    ir = K.task_cfunc(k, np.float32, np.float32).inspect_llvm()  # one module each
    groups = dict(re.findall(r"^attributes #(\d+) = \{(.*)\}$", ir, re.M))
    for name, group in re.findall(r"^define [^@]*@\"?([^\s(\"]+)\"?\(.*\) [^{]*#(\d+)",
                                  ir, re.M):
        found.setdefault(name, []).append("alignstack=64" in groups[group])
print(json.dumps(found))
"""


def test_kernels_hot_functions_have_aligned_frames(tmp_path):
    """The out-of-line functions of the Numba kernels that run the Philox
    and select loops of contiguous data, the mask and the normal variates
    are compiled with a 64-byte aligned frame (fastdrop/_numba/llvm.py,
    "stack frames": unaligned vector spill slots made whole processes slow).
    Read from the LLVM IR of the pool tasks, compiled afresh in a child
    process with an empty cache (Numba does not keep the IR of cached code)."""
    import json
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", _FRAMES_SCRIPT], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    found = json.loads(r.stdout.strip().splitlines()[-1])
    names = ["_fill_lanes", "_fwd_contig_task", "_mask_task", "_apply_contig_task",
             "_apply_span", "normal_tile", "_noise_task"]
    for name in names:
        flags = [v for fn, vs in found.items() if re.search(rf"\d{name}B", fn) for v in vs]
        assert flags and all(flags), (name, flags)


# ---------------------------------------------------------------------------
# philox_blocks, target_features
# ---------------------------------------------------------------------------

def _make_philox_blocks(n):
    @njit
    def run(words, slot, b0, c2, k0, k1):
        L.philox_blocks(words, slot, b0, c2, k0, k1, n)
    return run


@pytest.mark.parametrize("n", [8, 16, 32])
def test_philox_blocks_is_philox4x32_10(n):
    """Every block against the plain-Python Philox (fastdrop/_numba/philox.py),
    block after block from word ``4 * slot``, nothing written outside;
    counters whose low word wraps inside the run, every c2 the kernels use."""
    from fastdrop._numba.philox import py
    run = _make_philox_blocks(n)
    rng = np.random.default_rng(n)
    starts = [0, 2**32 - 3, 2**32 * 7 + 2**32 - n // 2, int(rng.integers(0, 2**62))]
    for b0 in starts:
        for c2 in (0, 1, 2):
            k0, k1 = (int(v) for v in rng.integers(0, 2**32, 2))
            words = np.full(4 * n + 12, 0xA5A5A5A5, np.uint32)
            run(words, 2, np.uint64(b0), np.uint64(c2), np.uint64(k0), np.uint64(k1))
            want = words.copy()
            for i in range(n):
                b = b0 + i
                want[8 + 4 * i: 12 + 4 * i] = py.philox4x32_10(b & 0xFFFFFFFF, b >> 32, c2, 0,
                                                                k0, k1)
            want[:8] = want[8 + 4 * n:] = 0xA5A5A5A5
            assert_array_equal(words, want)


def test_philox_blocks_needs_a_constant_multiple_of_8():
    @njit
    def f(words, n):
        L.philox_blocks(words, 0, np.uint64(0), np.uint64(0), np.uint64(0), np.uint64(0), n)
    with pytest.raises(numba.core.errors.TypingError):
        f(np.zeros(64, np.uint32), 8)
    bad = _make_philox_blocks(12)
    with pytest.raises(numba.core.errors.TypingError):
        bad(np.zeros(64, np.uint32), 0, np.uint64(0), np.uint64(0), np.uint64(0), np.uint64(0))


def test_target_features_follow_numba_cpu_features():
    """What the kernels choose their Philox by: the features Numba's CPU
    codegen compiles for -- NUMBA_CPU_FEATURES when set, none for
    NUMBA_CPU_NAME=generic (Numba sets the features empty), else the host's."""
    import subprocess
    import sys
    code = ("from fastdrop._numba import llvm, kernels; f = llvm.target_features(); "
            "print('+avx2' in f, '+avx512f' in f, len(f) > 0, kernels._PHILOX_LANES)")
    cases = [({"NUMBA_CPU_FEATURES": "+64bit,+avx,+avx2,+fma,+sse4.2,-avx512f"},
              ["True", "False", "True", str(X86)]),
             ({"NUMBA_CPU_FEATURES": "+64bit,+avx,+avx2,+avx512f"},
              ["True", "True", "True", "False"]),
             ({"NUMBA_CPU_NAME": "generic"}, ["False", "False", "False", "False"])]
    for extra, want in cases:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
        r = subprocess.run([sys.executable, "-c", code], env=dict(env, **extra),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.split() == want, extra
    if numba.core.config.CPU_FEATURES is None and numba.core.config.ENABLE_AVX:
        host = set(llvm_binding.get_host_cpu_features().flatten().split(",")) - {""}
        assert L.target_features() == host


@njit
def _write_then_fence(out, v):
    for i in range(out.shape[0]):
        out[i] = v + i
    L.store_fence()
    return out.sum()


def test_store_fence_runs_and_keeps_results():
    out = np.zeros(64, np.float64)
    assert _write_then_fence(out, 1.0) == np.arange(1.0, 65.0).sum()
    assert_array_equal(out, np.arange(1.0, 65.0))
    text = _ir(_write_then_fence)
    if X86:
        assert "llvm.x86.sse.sfence" in text
        assert "sfence" in _asm(_write_then_fence)
    else:  # pragma: no cover - not x86
        assert "fence seq_cst" in text


# ---------------------------------------------------------------------------
# nt_line: one 64-byte line of the affine select, stored non-temporally
# ---------------------------------------------------------------------------

#: (scale, shift, fill): plain dropout (shift -0.0 adds nothing, fill +0.0)
#: and two affine selects
SELECTS = [(1.25, -0.0, 0.0), (1.7, -0.3, -1.25), (1.0526315789473684, 0.1, 3.0)]


def _no_fma(fn):
    """The product and the sum stay two rounded operations (x86: no fused
    multiply-add instruction in the machine code)."""
    if X86:
        for sig in fn.signatures:
            asm = fn.inspect_asm(sig).lower()
            assert "vfmadd" not in asm and "vfnmadd" not in asm and "vfmsub" not in asm


def _affine(x, a, b, c, kept):
    """NumPy's x * a + b (two roundings in x's dtype) where kept, else c."""
    t = x.dtype.type
    with np.errstate(all="ignore"):
        return np.where(kept, x * t(a) + t(b), t(c))


@njit
def _nt_line_at(x, xa, out, oa, lanes, lb, a, b, c, th16):
    return L.nt_line(x, xa, out, oa, lanes, lb, a, b, c, th16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("sel", SELECTS, ids=["plain", "affine1", "affine2"])
def test_nt_line_values_and_nontemporal_store(dtype, tie, sel):
    vl = 64 // np.dtype(dtype).itemsize
    rng = np.random.default_rng(vl)
    x = rng.standard_normal(vl + 5).astype(dtype)  # includes negatives: +0.0 when dropped
    x[4] = -0.0
    xa = 3
    lanes = rng.integers(0, 2**16, vl + 7, dtype=np.uint16)
    lb = 5
    th16 = np.uint16(0x8000)
    lanes[lanes == th16] = 0
    if tie:
        lanes[lb + vl // 2] = th16
    out, oa = _aligned(vl, dtype, pad=vl)
    out[:] = 7.0
    a, b, c = (dtype(v) for v in sel)
    got_tie = _nt_line_at(x, xa, out, oa, lanes, lb, a, b, c, th16)
    kept = lanes[lb:lb + vl] >= th16  # a tie is written as kept
    want = _affine(x[xa:xa + vl], a, b, c, kept)
    bits = {4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
    assert_array_equal(out[oa:oa + vl].view(bits), want.view(bits))  # +0.0, not -0.0
    assert (out[:oa] == 7.0).all() and (out[oa + vl:] == 7.0).all()  # one line only
    assert bool(got_tie) is tie
    assert "!nontemporal" in _ir(_nt_line_at)
    if X86:
        assert "movnt" in _asm(_nt_line_at)  # (v)movntps / (v)movntpd
    _no_fma(_nt_line_at)


def test_nt_line_rejects_float16_bits():
    u = np.zeros(32, np.uint16)
    f = np.float32(1.0)
    with pytest.raises(numba.core.errors.TypingError):
        _nt_line_at(u, 0, u, 0, u, 0, f, f, f, np.uint16(1))


# ---------------------------------------------------------------------------
# packed keep bits
# ---------------------------------------------------------------------------

@njit
def _pack32(lanes, lb, th16, packed, byte):
    return L.pack_lanes32(lanes, lb, th16, packed, byte)


@pytest.mark.parametrize("tie", [False, True])
def test_pack_lanes32_packs_little_bit_order(tie):
    rng = np.random.default_rng(32)
    lanes = rng.integers(0, 2**16, 40, dtype=np.uint16)
    th16 = np.uint16(0x9000)
    lanes[lanes == th16] = 1
    lb = 3
    if tie:
        lanes[lb + 17] = th16
    packed = np.full(8, 0xAA, np.uint8)
    got_tie = _pack32(lanes, lb, th16, packed, 2)
    want = np.packbits(lanes[lb:lb + 32] > th16, bitorder="little")  # a tie is dropped
    assert_array_equal(packed[2:6], want)
    assert (packed[:2] == 0xAA).all() and (packed[6:] == 0xAA).all()
    assert bool(got_tie) is tie
    assert "<32 x i16>" in _ir(_pack32)  # one vector compare of the 32 lanes


@njit
def _apply_line(x, k, out, mask, a, b, c, nt):
    L.apply_line(x, k, out, mask, a, b, c, nt)


@pytest.mark.parametrize("nt", [False, True], ids=["cached", "streamed"])
@pytest.mark.parametrize("kind", ["packed", "bool"])
@pytest.mark.parametrize("first", [0, 3, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sel", SELECTS, ids=["plain", "affine1", "affine2"])
def test_apply_line_selects_from_the_mask(dtype, sel, first, kind, nt):
    # one 64-byte line of the select from packed bits (starting on a mask
    # byte or inside one: first) or bool bytes, stored in the cache or
    # non-temporally (the line then starts on a 64-byte boundary); the
    # elements around it untouched; the packed read ends inside the array
    vl = 64 // np.dtype(dtype).itemsize
    k = vl + first
    n = k + 2 * vl - first if kind == "packed" else k + vl
    rng = np.random.default_rng(7 + first)
    x = rng.standard_normal(n).astype(dtype)
    x[k + 1] = -0.0
    kept_all = rng.integers(0, 2, n).astype(bool)
    mask = np.packbits(kept_all, bitorder="little") if kind == "packed" else kept_all
    buf = np.full(n + vl, 7.0, dtype)
    base = (-(buf.ctypes.data // buf.itemsize) - k) % vl  # out[k] on a 64-byte line
    out = buf[base:base + n]
    a, b, c = (dtype(v) for v in sel)
    _apply_line(x, k, out, mask, a, b, c, nt)
    want = _affine(x[k:k + vl], a, b, c, kept_all[k:k + vl])
    bits = {4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
    assert_array_equal(out[k:k + vl].view(bits), want.view(bits))
    assert (out[:k] == 7.0).all() and (out[k + vl:] == 7.0).all()
    _no_fma(_apply_line)
    assert "!nontemporal" in _ir(_apply_line)


# ---------------------------------------------------------------------------
# float32 / float16 bits
# ---------------------------------------------------------------------------

@njit
def _f32_bits_roundtrip(f, u, back):
    for i in range(f.shape[0]):
        u[i] = L.bits_from_f32(f[i])
        back[i] = L.f32_from_bits(u[i])


def test_float32_bit_reinterpretation():
    f = np.float32([0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, np.nan, 1e-45, 3.4e38])
    u = np.empty(f.size, np.uint32)
    back = np.empty_like(f)
    _f32_bits_roundtrip(f, u, back)
    assert_array_equal(u, f.view(np.uint32))
    assert_array_equal(back.view(np.uint32), f.view(np.uint32))


@njit
def _widen_native(h, out):
    for i in range(h.shape[0]):
        out[i] = L.f32_of_half_bits(h[i])


@njit
def _narrow_native(f, out):
    for i in range(f.shape[0]):
        out[i] = L.half_bits_of_f32(f[i])


@pytest.mark.skipif(not L.native_f16(), reason="no hardware float16 conversions")
def test_half_conversions_by_llvm():
    """fpext / fptrunc of half against NumPy for every float16 value and
    float32 values around every float16 rounding boundary."""
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    f = np.empty(h.size, np.float32)
    _widen_native(h, f)
    want = h.view(np.float16).astype(np.float32)
    assert ((f.view(np.uint32) == want.view(np.uint32)) | (np.isnan(f) & np.isnan(want))).all()
    finite = want[np.isfinite(want)]
    halfway = finite.view(np.uint32) + np.uint32(1 << 12)  # ties to even
    g = np.concatenate([finite, np.nextafter(finite, np.float32(np.inf)),
                        np.nextafter(finite, np.float32(-np.inf)), halfway.view(np.float32),
                        np.float32([np.inf, -np.inf, np.nan, 65520.0, 1e-8])])
    got = np.empty(g.size, np.uint16)
    _narrow_native(g, got)
    with np.errstate(all="ignore"):
        exp = g.astype(np.float16)
    assert ((got == exp.view(np.uint16)) | (np.isnan(got.view(np.float16)) & np.isnan(g))).all()
    assert "fpext" in _ir(_widen_native) and "fptrunc" in _ir(_narrow_native)
    if X86:  # F16C
        assert "vcvtph2ps" in _asm(_widen_native)
        assert "vcvtps2ph" in _asm(_narrow_native)


# ---------------------------------------------------------------------------
# the disk-cache locator (_cache.py)
# ---------------------------------------------------------------------------

def test_cache_locator_registered_and_hashes_llvm_py():
    from numba.core import caching

    from fastdrop._numba import kernels as K

    assert os.path.join(os.path.dirname(L.__file__), "llvm.py") in _cache._DEPS
    first = caching.CacheImpl._locator_classes[0]
    assert first.__name__ == "FastdropCacheLocator"
    loc = first.from_function(K.forward_contig.py_func, K.__file__)
    assert loc is not None and loc.get_source_stamp()[1] == _cache.deps_hash()
    assert first.from_function(_addr_of.py_func, __file__) is None  # not fastdrop's


def test_cache_warns_when_numba_private_api_is_gone(monkeypatch):
    from numba.core import caching

    before = list(caching.CacheImpl._locator_classes)
    monkeypatch.setattr(_cache, "_installed", False)
    monkeypatch.delattr(caching, "_CacheLocator")
    with pytest.warns(RuntimeWarning, match="cannot register its Numba cache locator"):
        _cache.install()
    assert caching.CacheImpl._locator_classes == before
    with warnings.catch_warnings():  # once only
        warnings.simplefilter("error")
        _cache.install()


def test_cache_warns_when_locator_would_be_abstract(monkeypatch):
    """A new abstract method on Numba's locator base would make the locator
    fail inside Numba's compile: refused, with the warning."""
    import abc

    from numba.core import caching

    class NewBase(caching._CacheLocator):
        @abc.abstractmethod
        def new_required_method(self):
            """What a later Numba might add."""

    classes = []
    monkeypatch.setattr(_cache, "_installed", False)
    monkeypatch.setattr(_cache, "_numba_locators", lambda: (NewBase, classes))
    with pytest.warns(RuntimeWarning, match="new_required_method"):
        _cache.install()
    assert classes == []
