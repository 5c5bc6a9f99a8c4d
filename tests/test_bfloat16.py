"""bfloat16 (``ml_dtypes.bfloat16``) on every CPU backend and Cython ISA path
(docs/spec.md §4, "bfloat16"; the CUDA backend's bfloat16 is in
``test_cuda_sim.py``).

- every bfloat16 bit pattern (65536 values) through the forward, the stored
  masks, in place and strided, and through the Gaussian rule, against an
  oracle written here from the spec (``cases.bf16_round_bits``: widen
  exactly, compute in float32, round to nearest even on the bits, NaN quiet);
- the spec's golden values and explicit NaN / inf / overflow / -0.0 cases;
- every public function of the family;
- the parity tests of ``test_parity.py`` over a rotation of its case tables
  (``cases.BF16_ALL``): every backend, ISA and thread count, raw bits;
- the dtype checks and their messages, the Cython fast path declining,
  non-temporal stores of large caller outputs, Dask.

Skipped as a whole without ml_dtypes (an optional dependency).
"""

import math
import re

import numpy as np
import pytest
from numpy.testing import assert_array_equal

ml_dtypes = pytest.importorskip("ml_dtypes")

import cases as T  # noqa: E402
import fastdrop  # noqa: E402
import test_parity as P  # noqa: E402
from cases import assert_same, bf16_round_bits  # noqa: E402
from conftest import cpu_backends, cython_isas  # noqa: E402
from fastdrop import _bfloat16  # noqa: E402
from fastdrop import reference as R  # noqa: E402
from fastdrop._dispatch import get_backend  # noqa: E402

BF = np.dtype(ml_dtypes.bfloat16)
#: Every bfloat16 bit pattern, in order.
ALL = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


def _paths():
    """(backend, Cython ISA) for every CPU path here."""
    for b in cpu_backends():
        if b == "cython":
            for isa in cython_isas():
                yield pytest.param(b, isa, id=f"cython-{isa}")
        else:
            yield pytest.param(b, None, id=b)


every_path = pytest.mark.parametrize("backend,cython_isa", list(_paths()),
                                     indirect=["cython_isa"])


def bf(bits):
    """A bfloat16 array from bit patterns."""
    return np.asarray(bits, np.uint16).view(BF)


def widen(h):
    """C: the float32 whose high half is ``h`` (spec, written here)."""
    return (np.asarray(h, np.uint16).astype(np.uint32) << 16).view(np.float32)


def oracle_select(h, keep, a, b, c):
    """The affine select of docs/spec.md §4 on bfloat16 bits ``h``: kept
    ``R(C(x) * float32(a) + float32(b))``, dropped ``R(float32(c))``."""
    with np.errstate(all="ignore"):
        v = widen(h) * np.float32(a) + np.float32(b)
    return np.where(keep, bf16_round_bits(v), bf16_round_bits(np.float32(c)))


def ubits(a):
    return np.ascontiguousarray(a).view(np.uint16)


# ------------------------------------------------------------------ dtype

def test_dtype_is_recognised_by_name():
    assert _bfloat16.is_bfloat16(BF) and BF.name == _bfloat16.NAME
    for other in (np.float16, np.float32, "V2", np.int16, ml_dtypes.float8_e4m3fn,
                  [("a", "<u2")]):
        assert not _bfloat16.is_bfloat16(np.dtype(other)), other
    assert _bfloat16.dtype() == BF
    assert "bfloat16" in fastdrop.get_backends()["reference"]["dtypes"]


@pytest.mark.parametrize("dtype,shown", [(np.int32, "int32"), (np.uint16, "uint16"),
                                         ("V2", "|V2"), (ml_dtypes.float8_e4m3fn,
                                                          "float8_e4m3fn"),
                                         (np.complex64, "complex64")])
def test_other_dtypes_are_refused_with_their_name(dtype, shown):
    x = np.zeros(4, dtype)
    msg = (r"x must have a floating dtype \(float16, float32, float64 or bfloat16\), "
           rf"got dtype {re.escape(shown)}$")
    for call in (lambda: fastdrop.dropout(x, 0.5, rng=0),
                 lambda: fastdrop.gaussian_noise(x, 0.5, rng=0),
                 lambda: fastdrop.apply_mask(x, np.ones(4, bool), 0.5)):
        with pytest.raises(TypeError, match=msg):
            call()
    with pytest.raises(TypeError, match=msg.replace("x must", "grad must")):
        fastdrop.dropout_backward(x, 0.5, state=0)


def test_out_of_another_dtype_is_refused():
    x = bf(np.full(4, 0x3F80))
    with pytest.raises(TypeError, match="out has dtype float16, expected bfloat16"):
        fastdrop.dropout(x, 0.5, rng=0, out=np.empty(4, np.float16))
    with pytest.raises(TypeError, match="out has dtype bfloat16, expected float16"):
        fastdrop.dropout(x.view(np.float16), 0.5, rng=0, out=np.empty(4, BF))


# ------------------------------------------------------------ conversions

#: docs/spec.md §4's golden values of R: float32 bits -> bfloat16 bits.
R_GOLDEN = [(0x3F808000, 0x3F80), (0x3F818000, 0x3F82), (0x3F808001, 0x3F81),
            (0x7F7FFFFF, 0x7F80), (0x7F7F7FFF, 0x7F7F), (0xFF800000, 0xFF80),
            (0x7F800001, 0x7FC0), (0xFFA12345, 0xFFE1), (0x00008000, 0x0000),
            (0x00018000, 0x0002), (0xC0490FDB, 0xC049)]


def test_conversions_golden_and_against_ml_dtypes():
    f = np.array([u for u, _ in R_GOLDEN], np.uint32).view(np.float32)
    want = np.array([h for _, h in R_GOLDEN], np.uint16)
    assert_array_equal(bf16_round_bits(f), want)
    assert_array_equal(_bfloat16.narrow_bits(f), want)
    # C is exact: ml_dtypes' widening, NaN payloads included
    assert_array_equal(_bfloat16.widen(bf(ALL)).view(np.uint32), ALL.astype(np.uint32) << 16)
    assert_array_equal(bf(ALL).astype(np.float32).view(np.uint32),
                       ALL.astype(np.uint32) << 16)
    # R: a spread of float32 bit patterns, every tie and its neighbours
    u = np.arange(0, 1 << 32, 4099, dtype=np.uint64).astype(np.uint32)
    ties = (ALL.astype(np.uint32) << 16) | 0x8000
    u = np.concatenate([u, ties, ties - 1, ties + 1])
    f = u.view(np.float32)
    mine = _bfloat16.narrow_bits(f)
    assert_array_equal(mine, bf16_round_bits(f))
    nan = np.isnan(f)
    with np.errstate(invalid="ignore"):  # ml_dtypes canonicalises NaN; not the spec's rule
        assert_array_equal(mine[~nan], f[~nan].astype(BF).view(np.uint16))
    assert np.isnan(mine[nan].view(BF).astype(np.float32)).all()
    assert_array_equal(mine[nan] & 0x8040, ((u[nan] >> 16) & 0x8000) | 0x40)


# ------------------------------------------------------ every bit pattern

#: (scale, shift, fill) of the all-patterns tests: plain dropout (p = 0.3,
#: and scale 1: a kept value unchanged, a signalling NaN quieted), alpha-
#: like constants, a scale that overflows most values and rounds the rest,
#: a halving (subnormals round) with a -0.0 fill, a shift that is a float32
#: subnormal and a fill bfloat16 rounds.
SELECTS = ((1 / 0.7, -0.0, 0.0), (1.0, -0.0, 0.0), (0.886405, 0.779194, -0.779194),
           (1e30, 0.0, 1e6), (0.5, -0.0, -0.0), (3.0, 1e-40, 1.00390625))


@every_path
def test_every_bit_pattern_forward_and_apply(backend, cython_isa):
    kern = get_backend(backend)
    x = bf(ALL)
    rev = bf(ALL[::-1].copy())[::-1]  # the same values through a reversed view
    T_ = R.threshold(0.3)
    keep = R.keep_range(0x9E3779B97F4A7C15, 13, ALL.size, T_)
    packed = np.packbits(keep, bitorder="little")
    for a, b, c in SELECTS:
        want = oracle_select(ALL, keep, a, b, c)
        kw = dict(shift=b, fill=c)
        out = np.empty_like(x)
        kern.forward(x, out, 0x9E3779B97F4A7C15, 13, T_, a, (1,), **kw)
        assert_array_equal(ubits(out), want, f"forward {a, b, c}")
        kb, pk = np.zeros(ALL.size, bool), np.zeros(packed.size, np.uint8)
        out = np.empty_like(x)
        kern.forward(x, out, 0x9E3779B97F4A7C15, 13, T_, a, (1,), keep_out=kb,
                     packed_out=pk, **kw)
        assert_array_equal(ubits(out), want, "with mask outputs")
        assert_array_equal(kb, keep)
        assert_array_equal(pk, packed)
        out = np.empty_like(x)[::-1]
        kern.forward(rev, out, 0x9E3779B97F4A7C15, 13, T_, a, (1,), **kw)
        assert_array_equal(ubits(out), want, "strided")
        for m in ({"keep": keep}, {"packed": packed}):
            out = np.empty_like(x)
            kern.apply_mask(x, out, (1,), a, **m, **kw)
            assert_array_equal(ubits(out), want, f"apply {list(m)}")
        y = x.copy()
        kern.apply_mask(y, y, (1,), a, packed=packed, **kw)
        assert_array_equal(ubits(y), want, "apply in place")
    # T = 0 keeps all (scale 1: the values, signalling NaNs quiet); T = 2**32 none
    out = np.empty_like(x)
    kern.forward(x, out, 1, 0, 0, 1.0, (1,))
    assert_array_equal(ubits(out), bf16_round_bits(widen(ALL)))
    kern.forward(x, out, 1, 0, 1 << 32, math.inf, (1,), fill=-2.0)
    assert (ubits(out) == 0xC000).all()


@every_path
def test_every_bit_pattern_public_api(backend, cython_isa):
    """Through the public functions: dropout (training, classic evaluation,
    the mask), apply_mask and the backward, 256 x 256 and transposed."""
    x = bf(ALL).reshape(256, 256)
    for arr in (x, x.T):
        h = ubits(arr).reshape(-1)
        y, keep = fastdrop.dropout(arr, 0.25, rng=11, return_mask=True, backend=backend)
        assert y.dtype == BF
        assert_array_equal(ubits(y).reshape(-1), oracle_select(h, keep.reshape(-1),
                                                               1 / 0.75, -0.0, 0.0))
        y = fastdrop.dropout(arr, 0.25, training=False, mode="classic", backend=backend)
        assert_array_equal(ubits(y).reshape(-1), oracle_select(h, True, 0.75, -0.0, 0.0))
        y = fastdrop.apply_mask(arr, keep, 0.25, mode="classic", backend=backend)
        assert_array_equal(ubits(y).reshape(-1), oracle_select(h, keep.reshape(-1),
                                                               1.0, -0.0, 0.0))
        g = fastdrop.dropout_backward(arr, 0.25, state=11, backend=backend)
        assert_array_equal(ubits(g).reshape(-1), oracle_select(h, keep.reshape(-1),
                                                               1 / 0.75, -0.0, 0.0))


@every_path
def test_every_bit_pattern_noise(backend, cython_isa):
    """The Gaussian rule (docs/spec.md §11) on every bit pattern: ``t`` in
    float64 rounded to float32, ``x * t`` or ``x + t`` in float32, then R."""
    kern = get_backend(backend)
    x = bf(ALL)
    z = R.normal_range(5, 2**40 + 3, ALL.size)
    for op, a, b in (("mul", 1.0, math.sqrt(0.3 / 0.7)), ("mul", 1.0, 3.0),
                     ("add", -0.0, 0.7), ("add", -0.0, 3e38)):
        t = (z * b + a).astype(np.float32)
        with np.errstate(all="ignore"):
            v = widen(ALL) * t if op == "mul" else widen(ALL) + t
        want = bf16_round_bits(v)
        out = np.empty_like(x)
        kern.noise(x, out, 5, 2**40 + 3, (1,), a, b, op)
        assert_array_equal(ubits(out), want, op)
        y = x[::-1].copy()[::-1]  # x's values through a reversed view
        kern.noise(y, y, 5, 2**40 + 3, (1,), a, b, op)
        assert_array_equal(ubits(y), want, f"{op} reversed, in place")


@every_path
def test_nan_inf_overflow_and_signed_zero(backend, cython_isa):
    """Explicit cases: a kept signalling NaN comes back quiet with its sign
    and payload, a quiet one unchanged, never an infinity; a dropped NaN or
    infinity is +0.0; -0.0 is kept; overflow gives inf of the sign."""
    h = np.array([0x7F81, 0xFF81, 0x7FC3, 0xFFFF, 0x7F80, 0xFF80, 0x8000, 0x0000,
                  0x7F7F, 0xFF7F, 0x0001, 0x8001], np.uint16)
    x = bf(np.tile(h, 8))
    y = fastdrop.dropout(x, 0.0, rng=0, backend=backend)   # p = 0: a copy
    assert_array_equal(ubits(y), ubits(x))
    kern = get_backend(backend)
    out = np.empty_like(x)
    kern.forward(x, out, 3, 0, 0, 1.25, (1,))               # everything kept, * 1.25
    got = ubits(out)[:h.size]
    assert_array_equal(got, [0x7FC1, 0xFFC1, 0x7FC3, 0xFFFF, 0x7F80, 0xFF80, 0x8000,
                             0x0000, 0x7F80, 0xFF80, 0x0001, 0x8001])
    y, keep = fastdrop.dropout(x, 0.5, rng=3, return_mask=True, backend=backend)
    assert (~keep).any() and keep.any()
    assert (ubits(y)[~keep] == 0).all()                      # +0.0 whatever x holds
    assert_array_equal(ubits(y)[keep], oracle_select(ubits(x)[keep], True, 2.0, -0.0, 0.0))


# ------------------------------------------------------------ spec golden

@every_path
def test_spec_golden_values(backend, cython_isa):
    """The golden values of docs/spec.md §4, "bfloat16"."""
    x = bf([0x3F80, 0x3FC1, 0x4049, 0xC030, 0x8000, 0x7F7F, 0x7F81, 0xFFC3])
    assert fastdrop.dropout_mask(8, 0.1, rng=1).astype(int).tolist() == [0, 1, 0, 1, 1, 1,
                                                                         1, 1]
    assert np.float32(1 / 0.9).view(np.uint32) == 0x3F8E38E4
    y = fastdrop.dropout(x, 0.1, rng=1, backend=backend)
    assert [f"{v:04X}" for v in ubits(y)] == "0000 3FD6 0000 C044 8000 7F80 7FC1 FFC3".split()
    x8 = np.arange(8).astype(BF)
    golden = {
        "dropout": (fastdrop.dropout, dict(p=0.5),
                    [0, 0, 16512, 16576, 16640, 16672, 16704, 16736]),
        "gaussian_noise": (fastdrop.gaussian_noise, dict(stddev=0.1),
                           [48713, 16263, 16371, 16447, 16512, 16540, 16579, 16607]),
        "gaussian_dropout": (fastdrop.gaussian_dropout, dict(p=0.5),
                             [32768, 16328, 48552, 16432, 16492, 48899, 16706, 16566]),
        "alpha_dropout": (fastdrop.alpha_dropout, dict(p=0.5),
                          [16199, 48967, 16419, 16476, 16522, 16551, 16579, 16607]),
    }
    for name, (f, kw, want) in golden.items():
        assert ubits(f(x8, rng=0, backend=backend, **kw)).tolist() == want, name
    # the bfloat16 values are the float32 ones of the spec (§8, §11) rounded by R
    f32 = np.arange(8, dtype=np.float32)
    for name, (f, kw, want) in golden.items():
        assert_array_equal(bf16_round_bits(f(f32, rng=0, **kw)), want, name)


def _spec_bf16_section():
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "spec.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    sec = text[text.index("### bfloat16"):text.index("## §5")]
    return " ".join(sec.split())


def test_spec_text_has_these_golden_values():
    """The golden values above are the ones docs/spec.md states."""
    sec = _spec_bf16_section()
    rtext = sec[sec.index("`R` on float32 bits:"):sec.index("`dropout(x, 0.1, rng=1)`")]
    pairs = re.findall(r"`0x([0-9A-F]{8})`[^`]*?(?:gives )?`0x([0-9A-F]{4})`", rtext)
    assert [(int(u, 16), int(h, 16)) for u, h in pairs] == R_GOLDEN
    assert "`3F80 3FC1 4049 C030 8000 7F7F 7F81 FFC3`" in sec
    assert "`0000 3FD6 0000 C044 8000 7F80 7FC1 FFC3`" in sec
    for name, want in (("dropout(x, 0.5, rng=0)", "0 0 16512 16576 16640 16672 16704 16736"),
                       ("gaussian_noise(x, 0.1, rng=0)",
                        "48713 16263 16371 16447 16512 16540 16579 16607"),
                       ("gaussian_dropout(x, 0.5, rng=0)",
                        "32768 16328 48552 16432 16492 48899 16706 16566"),
                       ("alpha_dropout(x, 0.5, rng=0)",
                        "16199 48967 16419 16476 16522 16551 16579 16607")):
        at = sec.index(f"`{name}`")
        assert sec[at:at + 120].split("`")[3] == want, name


# ------------------------------------------------------- the whole family

@pytest.mark.parametrize("backend", cpu_backends())
def test_every_public_function(backend):
    """Every public function that takes float16 takes bfloat16 and equals
    the reference (itself checked against the oracle above), the NumPy
    rules applied on the bits: the family (docs/spec.md §8, §9, §11) and
    the backwards, with noise shapes, caller outputs and in place."""
    x = T.values((6, 4, 5), BF, seed=3)
    ref = dict(backend="reference")
    calls = [
        (fastdrop.dropout, (0.3,), dict(noise_shape=(6, 1, 5), return_mask="packed")),
        (fastdrop.dropout, (0.3,), dict(mode="classic")),
        (fastdrop.dropout, (0.3,), dict(training=False, mode="classic")),
        (fastdrop.alpha_dropout, (0.3,), dict()),
        (fastdrop.alpha_dropout, (0.3,), dict(noise_shape=(6, 1, 5))),
        (fastdrop.feature_alpha_dropout, (0.45,), dict()),
        (fastdrop.drop_path, (0.5,), dict()),
        (fastdrop.drop_path, (0.5,), dict(scale_by_keep=False)),
        (fastdrop.gaussian_dropout, (0.3,), dict()),
        (fastdrop.gaussian_dropout, (0.3,), dict(noise_shape=(1, 4, 1))),
        (fastdrop.gaussian_noise, (0.7,), dict()),
        (fastdrop.gaussian_noise, (0.7,), dict(training=False)),
    ]
    for f, args, kw in calls:
        want = f(x, *args, rng=fastdrop.Generator(3, 9), **kw, **ref)
        got = f(x, *args, rng=fastdrop.Generator(3, 9), **kw, backend=backend)
        for w, g in zip(*((want, got) if isinstance(want, tuple) else ((want,), (got,)))):
            assert g.dtype == w.dtype
            assert_array_equal(ubits(g), ubits(w), f"{f.__name__} {kw}")
    backs = [(fastdrop.dropout_backward, (0.3,), dict(state=(3, 9))),
             (fastdrop.alpha_dropout_backward, (0.3,), dict(state=(3, 9))),
             (fastdrop.drop_path_backward, (0.5,), dict(state=(3, 9))),
             (fastdrop.gaussian_dropout_backward, (0.3,), dict(state=(3, 9))),
             (fastdrop.gaussian_noise_backward, (0.7,), dict())]
    for f, args, kw in backs:
        assert_array_equal(ubits(f(x, *args, **kw, backend=backend)),
                           ubits(f(x, *args, **kw, **ref)), f.__name__)
    _, keep = fastdrop.dropout(x, 0.3, rng=4, return_mask=True, **ref)
    packed = np.packbits(keep.reshape(-1), bitorder="little")
    want = fastdrop.dropout(x, 0.3, rng=4, **ref)
    for m in (keep, packed):
        assert_array_equal(ubits(fastdrop.apply_mask(x, m, 0.3, backend=backend)), ubits(want))
        assert_array_equal(ubits(fastdrop.dropout_backward(x, 0.3, mask=m, backend=backend)),
                           ubits(want))
    y = x.copy()
    assert fastdrop.dropout(y, 0.3, rng=4, out=y, backend=backend) is y
    assert_array_equal(ubits(y), ubits(want))
    assert_array_equal(ubits(want), oracle_select(ubits(x), keep, 1 / 0.7, -0.0, 0.0))


def test_auto_backend_and_lists():
    """backend="auto" runs bfloat16 on the first compiled backend (every
    backend lists it), and a list or a 0-d array is taken too."""
    x = T.values((50,), BF, seed=5)
    want = fastdrop.dropout(x, 0.4, rng=2, backend="reference")
    assert_array_equal(ubits(fastdrop.dropout(x, 0.4, rng=2)), ubits(want))
    y = fastdrop.dropout(x[3], 0.4, rng=2)  # a bfloat16 scalar: a 0-d array
    assert y.shape == () and y.dtype == BF
    for name, v in fastdrop.get_backends().items():
        if v["available"]:
            assert "bfloat16" in v["dtypes"], name


def test_cython_fast_path_declines_bfloat16():
    K = pytest.importorskip("fastdrop._cython._kernels")
    x = bf(ALL[:1000])
    assert K.fast_dropout(x, 0.5, 0) is NotImplemented
    g = fastdrop.Generator(1, 5)
    y = fastdrop.dropout(x, 0.5, rng=g)  # the general path
    assert g.offset == 5 + 1000
    assert_array_equal(ubits(y), oracle_select(ALL[:1000], R.keep_range(1, 5, 1000,
                                                                         R.threshold(0.5)),
                                               2.0, -0.0, 0.0))


@pytest.mark.parametrize("isa", cython_isas())
def test_large_out_nontemporal_stores(isa):
    """A caller's output over the 8 MiB threshold (non-temporal stores on
    AVX-512), at several alignments, with and without mask outputs."""
    K = pytest.importorskip("fastdrop._cython._kernels")
    n = (8 << 20) // 2 + 37
    h = np.resize(ALL, n)
    x = bf(h)
    T_ = R.threshold(0.3)
    keep = R.keep_range(7, 3, n, T_)
    want = oracle_select(h, keep, 1 / 0.7, -0.0, 0.0)
    buf = np.empty(n + 64, BF)
    old = K.set_max_isa(isa)
    try:
        for shift in (0, 1, 8):  # 0, 2 and 16 bytes past a 64-byte line
            base = (-(buf.ctypes.data // 2)) % 32
            out = buf[base + shift:base + shift + n]
            for kind in (False, "packed"):
                out.fill(7)
                r = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(7, 3), out=out,
                                     return_mask=kind, backend="cython")
                assert_array_equal(ubits(out), want)
                if kind:
                    assert_array_equal(r[1], np.packbits(keep, bitorder="little"))
    finally:
        K.set_max_isa(old)


def test_dask_arrays():
    da = pytest.importorskip("dask.array")
    import fastdrop.dask as fdd

    x = T.values((40, 30), BF, seed=8)
    d = da.from_array(x, chunks=(7, 11))
    want = fastdrop.dropout(x, 0.3, rng=5, backend="reference")
    for y in (fdd.dropout(d, 0.3, rng=5), fastdrop.dropout(d, 0.3, rng=5)):
        y = y.compute()
        assert y.dtype == BF
        assert_array_equal(ubits(y), ubits(want))


def test_c_api_bfloat16_is_generated():
    """kernels.h has the bfloat16 C API (api.pxd declares it)."""
    import os

    inc = fastdrop.get_include()

    def read(name):
        with open(os.path.join(inc, name), encoding="utf-8") as f:
            return f.read()

    kernels, leaf, pxd = read("kernels.h"), read("leaf_portable.h"), read("api.pxd")
    for fn in ("fastdrop_dropout_bf16", "fastdrop_apply_packed_bf16", "FD_BF16 = 3",
               "fd_portable_fwd_bf16", "fd_avx512_noise_bf16"):
        assert fn in kernels, fn
    assert "fd_portable_sel64_bf16" in leaf and "fd_f2bf" in leaf
    assert "fastdrop_dropout_bf16" in pxd and "fastdrop_apply_packed_bf16" in pxd


# ------------------------------------------------------ the parity tables

@P.parity(T.BF16_ALL["FORWARD"], reference=0)
def test_forward(case, dtype, backend, cython_isa, threads):
    P.test_forward(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["WITH_MASK"], reference=0)
def test_forward_with_mask(case, dtype, backend, cython_isa, threads):
    P.test_forward_with_mask(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["OUT"])
def test_forward_caller_out(case, dtype, backend, cython_isa, threads):
    P.test_forward_caller_out(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["IN_PLACE"])
def test_forward_in_place(case, dtype, backend, cython_isa, threads):
    P.test_forward_in_place(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["BACKWARD"], reference=3)
def test_backward_from_state(case, dtype, backend, cython_isa, threads):
    P.test_backward_from_state(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["APPLY"], reference=3)
def test_apply_mask(case, dtype, backend, cython_isa, threads):
    P.test_apply_mask(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["KERNEL_FORWARD"], reference=0)
def test_kernel_forward(case, dtype, backend, cython_isa, threads):
    P.test_kernel_forward(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["KERNEL_APPLY"], reference=0)
def test_kernel_apply_mask(case, dtype, backend, cython_isa, threads):
    P.test_kernel_apply_mask(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["KERNEL_FORWARD"], reference=0)
def test_kernel_noise(case, dtype, backend, cython_isa, threads):
    P.test_kernel_noise(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["FORWARD"][::2], reference=2)
def test_alpha_dropout(case, dtype, backend, cython_isa, threads):
    P.test_alpha_dropout(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["FORWARD"][1::2], reference=2)
def test_gaussian_dropout(case, dtype, backend, cython_isa, threads):
    P.test_gaussian_dropout(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["FORWARD"][::3], reference=3)
def test_gaussian_noise(case, dtype, backend, cython_isa, threads):
    P.test_gaussian_noise(case, dtype, backend, cython_isa, threads)


@P.parity(T.BF16_ALL["BACKWARD"], reference=3)
def test_gaussian_dropout_backward(case, dtype, backend, cython_isa, threads):
    P.test_gaussian_dropout_backward(case, dtype, backend, cython_isa, threads)


def test_bf16_tables_cover():
    """What cases.BF16_ALL promises: bfloat16 only; the layouts no rotation
    may skip are in FORWARD; every list has small and (but BACKWARD) large
    cases, ties that keep and drop, and several offsets."""
    fwd = {c.layout.id for c in T.BF16_ALL["FORWARD"]}
    for group in (T.TALL, T.BLOCKED, T.UNALIGNED, T.MEMORY_ORDER[::3]):
        assert {lay.id for lay in group} <= fwd
    assert {lay.id for lay in T.SMALL if lay.noise is not None} <= fwd
    for name, cs in T.BF16_ALL.items():
        assert all(c.dtypes == (BF,) for c in cs), name
        assert any(c.layout.size < T.CHUNK for c in cs), name
        assert name == "BACKWARD" or any(c.layout.size >= T.CHUNK for c in cs), name
        assert len({c.offset.id for c in cs}) >= 3, name
    kinds = {c.threshold.kind for cs in T.BF16_ALL.values() for c in cs}
    assert {"tie0", "tie-keep", "tie-drop"} <= kinds
    outs = {c.out.id for c in T.BF16_ALL["OUT"]}
    assert outs == set(T.OUTS)
