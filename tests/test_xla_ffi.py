"""The XLA FFI handlers of fastdrop.jax (fastdrop/_cython/xla_ffi.h) called
directly, without jax: call frames built with ctypes after the vendored
XLA FFI C API header, and a stand-in for XLA's API table that records the
errors the handlers create.

What is checked: the metadata query (API version, traits, state type; an
answer only when the caller's structs are large enough), the stages other
than execute (success, nothing touched), the call frame checks (sizes,
counts, buffer types, dtypes, ranks, dims, attribute names and types, the
end of the stream), each answered by an XLA_FFI_Error made through the
API's XLA_FFI_Error_Create with nothing written, and execution (the same
bits as the NumPy API, batch axes included).  tests/test_jax.py runs them
through XLA itself.
"""

import ctypes
import re
from ctypes import (POINTER, Structure, c_char_p, c_double, c_int, c_int64, c_size_t,
                    c_uint8, c_uint32, c_uint64, c_void_p)

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop

_kernels = pytest.importorskip("fastdrop._cython._kernels")

# ------------------------------------------------------------ the C structs

# enums (c_api.h)
PRED, S32, S64, U32, U64, F16, F32, F64, BF16 = 1, 4, 5, 8, 9, 10, 11, 12, 16
ARG_BUFFER = RET_BUFFER = 1
ATTR_ARRAY, ATTR_SCALAR = 1, 3
INSTANTIATE, PREPARE, INITIALIZE, EXECUTE = 0, 1, 2, 3
EXT_METADATA = 1
INVALID_ARGUMENT, OUT_OF_RANGE, UNIMPLEMENTED = 3, 11, 12


class ExtBase(Structure):
    pass


ExtBase._fields_ = [("struct_size", c_size_t), ("type", c_int), ("next", POINTER(ExtBase))]


class ApiVersion(Structure):
    _fields_ = [("struct_size", c_size_t), ("extension_start", c_void_p),
                ("major_version", c_int), ("minor_version", c_int)]


class ErrorCreateArgs(Structure):
    _fields_ = [("struct_size", c_size_t), ("extension_start", c_void_p),
                ("message", c_char_p), ("errc", c_int)]


ERROR_CREATE = ctypes.CFUNCTYPE(c_void_p, POINTER(ErrorCreateArgs))


class Api(Structure):
    _fields_ = ([("struct_size", c_size_t), ("extension_start", c_void_p),
                 ("api_version", ApiVersion), ("internal_api", c_void_p),
                 ("error_create", ERROR_CREATE)]
                + [(f"fn{i}", c_void_p) for i in range(17)])


class Buffer(Structure):
    _fields_ = [("struct_size", c_size_t), ("extension_start", c_void_p), ("dtype", c_int),
                ("data", c_void_p), ("rank", c_int64), ("dims", POINTER(c_int64))]


class Args(Structure):
    _fields_ = [("struct_size", c_size_t), ("extension_start", c_void_p), ("size", c_int64),
                ("types", POINTER(c_int)), ("args", POINTER(c_void_p))]


class ByteSpan(Structure):
    _fields_ = [("ptr", c_void_p), ("len", c_size_t)]


class Attrs(Structure):
    _fields_ = [("struct_size", c_size_t), ("extension_start", c_void_p), ("size", c_int64),
                ("types", POINTER(c_int)), ("names", POINTER(POINTER(ByteSpan))),
                ("attrs", POINTER(c_void_p))]


class Scalar(Structure):
    _fields_ = [("dtype", c_int), ("value", c_void_p)]


class Array(Structure):
    _fields_ = [("dtype", c_int), ("size", c_size_t), ("data", c_void_p)]


class CallFrame(Structure):
    _fields_ = [("struct_size", c_size_t), ("extension_start", POINTER(ExtBase)),
                ("api", POINTER(Api)), ("ctx", c_void_p), ("stage", c_int), ("args", Args),
                ("rets", Args), ("attrs", Attrs), ("future", c_void_p)]


class TypeId(Structure):
    _fields_ = [("type_id", c_int64)]


class Metadata(Structure):
    _fields_ = [("struct_size", c_size_t), ("api_version", ApiVersion), ("traits", c_uint32),
                ("state_type_id", TypeId)]


class MetadataExt(Structure):
    _fields_ = [("extension_base", ExtBase), ("metadata", POINTER(Metadata))]


# XLA_FFI_STRUCT_SIZE: up to and including the last field the header names
CALL_FRAME_SIZE = CallFrame.future.offset           # ... attrs
BUFFER_SIZE = ctypes.sizeof(Buffer)                 # ... dims
METADATA_SIZE = Metadata.traits.offset + 4          # ... traits
METADATA_EXT_SIZE = ctypes.sizeof(MetadataExt)      # ... metadata
HANDLER = ctypes.CFUNCTYPE(c_void_p, POINTER(CallFrame))


def _handler(name, unsupported=False):
    capsule = _kernels.xla_handlers(unsupported=unsupported)[name]
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = c_void_p
    get.argtypes = [ctypes.py_object, c_char_p]
    return HANDLER(get(capsule, b"xla._CUSTOM_CALL_TARGET"))


class FakeXla:
    """The API table (only XLA_FFI_Error_Create is called) and a call frame
    builder; every object handed to C is kept alive on ``self``."""

    def __init__(self):
        self.errors = []   # (code, message)
        self.keep = []

        def create(args):
            a = args.contents
            assert a.struct_size >= ctypes.sizeof(ErrorCreateArgs) - 4
            self.errors.append((a.errc, a.message.decode()))
            return 0x1000 + len(self.errors)  # an opaque, non-null error

        self._create = ERROR_CREATE(create)
        self.api = Api(struct_size=ctypes.sizeof(Api), error_create=self._create)
        self.api.api_version = ApiVersion(ctypes.sizeof(ApiVersion), None, 0, 3)

    def buffer(self, arr, dtype):
        """A buffer over ``arr``'s own memory (C-contiguous)."""
        assert arr.flags.c_contiguous
        dims = (c_int64 * max(arr.ndim, 1))(*arr.shape)
        b = Buffer(BUFFER_SIZE, None, dtype, arr.ctypes.data, arr.ndim, dims)
        self.keep += [arr, dims, b]
        return b

    def scalar(self, value, dtype):
        ct = {F64: c_double, U64: c_uint64, S64: c_int64, PRED: c_uint8, F32: ctypes.c_float,
              S32: ctypes.c_int32}[dtype]
        v = ct(value)
        s = Scalar(dtype, ctypes.addressof(v))
        self.keep += [v, s]
        return (ATTR_SCALAR, s)

    def array(self, values, dtype=S64):
        a = np.asarray(values, {S64: np.int64, S32: np.int32}[dtype])
        arr = Array(dtype, a.size, a.ctypes.data)
        self.keep += [a, arr]
        return (ATTR_ARRAY, arr)

    def frame(self, args=(), rets=(), attrs=None, stage=EXECUTE, arg_types=None,
              ret_types=None, size=CALL_FRAME_SIZE):
        attrs = dict(sorted((attrs or {}).items()))  # XLA sorts attributes by name
        n = len(args)
        at = (c_int * max(n, 1))(*(arg_types or [ARG_BUFFER] * n))
        ap = (c_void_p * max(n, 1))(*[ctypes.addressof(b) for b in args])
        m = len(rets)
        rt = (c_int * max(m, 1))(*(ret_types or [RET_BUFFER] * m))
        rp = (c_void_p * max(m, 1))(*[ctypes.addressof(b) for b in rets])
        k = len(attrs)
        names = [ctypes.create_string_buffer(name.encode(), len(name)) for name in attrs]
        spans = [ByteSpan(ctypes.addressof(nb), len(name)) for nb, name in zip(names, attrs)]
        tp = (c_int * max(k, 1))(*[t for t, _ in attrs.values()])
        np_ = (POINTER(ByteSpan) * max(k, 1))(*[ctypes.pointer(s) for s in spans])
        vp = (c_void_p * max(k, 1))(*[ctypes.addressof(v) for _, v in attrs.values()])
        cf = CallFrame(size, None, ctypes.pointer(self.api), None, stage,
                       Args(ctypes.sizeof(Args), None, n, at, ap),
                       Args(ctypes.sizeof(Args), None, m, rt, rp),
                       Attrs(ctypes.sizeof(Attrs), None, k, tp, np_, vp), None)
        self.keep += [at, ap, rt, rp, names, spans, tp, np_, vp, cf]
        return cf


def _words(seed, offset=0):
    return np.array([seed & 0xFFFFFFFF, seed >> 32, offset & 0xFFFFFFFF, offset >> 32],
                    np.uint32)


def _select_attrs(xla, p=0.5, ms=(1,), **over):
    T = fastdrop.reference.threshold(p)
    attrs = {"a": xla.scalar(1.0 / (1.0 - p), F64), "b": xla.scalar(-0.0, F64),
             "c": xla.scalar(0.0, F64), "threshold": xla.scalar(T, U64),
             "mstrides": xla.array(ms)}
    attrs.update(over)
    return attrs


def _bits(a):
    return np.ascontiguousarray(a).view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.itemsize])


# ------------------------------------------------------------------ tests

def test_capsules():
    caps = _kernels.xla_handlers()
    assert sorted(caps) == ["fastdrop_apply", "fastdrop_mask", "fastdrop_noise",
                            "fastdrop_select"]
    assert _kernels.xla_api_version() == (0, 3)  # the vendored header's
    for name in caps:
        assert ctypes.cast(_handler(name), c_void_p).value


@pytest.mark.parametrize("name", ["fastdrop_select", "fastdrop_noise", "fastdrop_mask",
                                  "fastdrop_apply"])
@pytest.mark.parametrize("unsupported", [False, True])
def test_metadata_query(name, unsupported):
    xla = FakeXla()
    for size in (METADATA_SIZE, ctypes.sizeof(Metadata)):
        md = Metadata(size, ApiVersion(0, None, -1, -1), 0xFFFF, TypeId(-7))
        ext = MetadataExt(ExtBase(METADATA_EXT_SIZE, EXT_METADATA, None), ctypes.pointer(md))
        cf = xla.frame()  # no operands: a metadata query carries none
        cf.extension_start = ctypes.cast(ctypes.pointer(ext), POINTER(ExtBase))
        assert _handler(name, unsupported)(ctypes.byref(cf)) is None
        assert (md.api_version.major_version, md.api_version.minor_version) == (0, 3)
        assert md.api_version.struct_size == ctypes.sizeof(ApiVersion)
        assert md.traits == 0
        # the state type id is past the header's struct size: written only
        # when the caller's struct has it
        assert md.state_type_id.type_id == (0 if size == ctypes.sizeof(Metadata) else -7)
    assert xla.errors == []
    # structs smaller than the header's: an error, nothing answered
    md = Metadata(METADATA_SIZE - 4, ApiVersion(0, None, -1, -1), 0, TypeId(0))
    ext = MetadataExt(ExtBase(METADATA_EXT_SIZE, EXT_METADATA, None), ctypes.pointer(md))
    cf = xla.frame()
    cf.extension_start = ctypes.cast(ctypes.pointer(ext), POINTER(ExtBase))
    assert _handler(name, unsupported)(ctypes.byref(cf)) is not None
    assert xla.errors[-1][0] == INVALID_ARGUMENT and "XLA_FFI_Metadata" in xla.errors[-1][1]
    assert md.api_version.major_version == -1
    ext = MetadataExt(ExtBase(METADATA_EXT_SIZE - 8, EXT_METADATA, None), ctypes.pointer(md))
    cf.extension_start = ctypes.cast(ctypes.pointer(ext), POINTER(ExtBase))
    assert _handler(name, unsupported)(ctypes.byref(cf)) is not None
    assert "XLA_FFI_Metadata_Extension" in xla.errors[-1][1]


def _select_frame(xla, x, y, seed=5, offset=0, stage=EXECUTE, **attrs):
    dt = {np.dtype(np.float16): F16, np.dtype(np.float32): F32, np.dtype(np.float64): F64}
    return xla.frame([xla.buffer(x, dt[x.dtype]), xla.buffer(_words(seed, offset), U32)],
                     [xla.buffer(y, dt[y.dtype])], _select_attrs(xla, **attrs), stage=stage)


@pytest.mark.parametrize("stage", [INSTANTIATE, PREPARE, INITIALIZE])
def test_other_stages_do_nothing(stage):
    xla = FakeXla()
    x = np.ones(16, np.float32)
    y = np.full(16, 7.0, np.float32)
    cf = _select_frame(xla, x, y, stage=stage)
    assert _handler("fastdrop_select")(ctypes.byref(cf)) is None
    assert (y == 7).all() and xla.errors == []


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_execute(dtype):
    xla = FakeXla()
    x = np.random.default_rng(0).standard_normal((3, 70000 // 3)).astype(dtype)
    y = np.empty_like(x)
    cf = xla.frame([xla.buffer(x, {2: F16, 4: F32, 8: F64}[x.itemsize]),
                    xla.buffer(_words(2 ** 40 + 5, 17), U32)],
                   [xla.buffer(y, {2: F16, 4: F32, 8: F64}[x.itemsize])],
                   _select_attrs(xla, 0.3, (23333, 1)))
    assert _handler("fastdrop_select")(ctypes.byref(cf)) is None, xla.errors
    ref = fastdrop.dropout(x, 0.3, rng=fastdrop.Generator(2 ** 40 + 5, 17))
    assert_array_equal(_bits(y), _bits(ref))


def test_execute_batch_axes():
    """Leading batch axes: a key per index where the key is batched, the
    same key (and mask) where it has extent 1; x shared where it has 1."""
    xla = FakeXla()
    x = np.random.default_rng(1).standard_normal((1, 2, 9)).astype(np.float32)
    keys = np.stack([_words(s, 3)[None] for s in (11, 12, 13)])  # (3, 1, 4)
    y = np.empty((3, 2, 9), np.float32)
    cf = xla.frame([xla.buffer(x, F32), xla.buffer(keys, U32)], [xla.buffer(y, F32)],
                   _select_attrs(xla, 0.5, (1,)))
    assert _handler("fastdrop_select")(ctypes.byref(cf)) is None, xla.errors
    for i, s in enumerate((11, 12, 13)):
        for j in range(2):
            ref = fastdrop.dropout(x[0, j], 0.5, rng=fastdrop.Generator(s, 3))
            assert_array_equal(_bits(y[i, j]), _bits(ref))
    # the mask handler, batched keys
    m = np.empty((3, 1, 2, 5), np.bool_)
    cf = xla.frame([xla.buffer(keys, U32)], [xla.buffer(m, PRED)],
                   {"threshold": xla.scalar(fastdrop.reference.threshold(0.4), U64)})
    assert _handler("fastdrop_mask")(ctypes.byref(cf)) is None, xla.errors
    for i, s in enumerate((11, 12, 13)):
        assert_array_equal(m[i, 0], fastdrop.dropout_mask((2, 5), 0.4,
                                                           rng=fastdrop.Generator(s, 3)))


@pytest.mark.parametrize("draw", [0, 1])
@pytest.mark.parametrize("F", [40, 20000])
def test_execute_drawn_first(draw, F):
    """The optional ``draw`` attribute (a mask whose positions repeat along
    x, drawn once per key, then applied): keys batched along the first batch
    axis, shared along the second (its two elements read the same mask),
    the noise shape (4, 1, F) over (4, 3, F) (F = 20000: a key's draw spans
    several chunks, and the call is large enough for the worker threads);
    equal to NumPy's either way."""
    xla = FakeXla()
    x = np.random.default_rng(2).standard_normal((3, 2, 4, 3, F)).astype(np.float32)
    keys = np.stack([_words(s, 5)[None] for s in (21, 22, 23)])  # (3, 1, 4)
    y = np.empty_like(x)
    cf = xla.frame([xla.buffer(x, F32), xla.buffer(keys, U32)], [xla.buffer(y, F32)],
                   _select_attrs(xla, 0.4, (F, 0, 1), draw=xla.scalar(draw, PRED)))
    assert _handler("fastdrop_select")(ctypes.byref(cf)) is None, xla.errors
    for i, s in enumerate((21, 22, 23)):
        for j in range(2):
            ref = fastdrop.dropout(x[i, j], 0.4, rng=fastdrop.Generator(s, 5),
                                   noise_shape=(4, 1, F))
            assert_array_equal(_bits(y[i, j]), _bits(ref))


def _bad(xla, cf, name="fastdrop_select", code=INVALID_ARGUMENT):
    n = len(xla.errors)
    err = _handler(name)(ctypes.byref(cf))
    assert err is not None and len(xla.errors) == n + 1
    assert xla.errors[-1][0] == code
    return xla.errors[-1][1]


def test_call_frame_errors_write_nothing():
    xla = FakeXla()
    x = np.ones(8, np.float32)

    def case(**kw):
        y = np.full(8, 7.0, np.float32)
        cf = _select_frame(xla, x, y, **kw)
        return cf, y

    cf, y = case()
    cf.struct_size = CALL_FRAME_SIZE - 8
    assert "XLA_FFI_CallFrame size" in _bad(xla, cf)
    for attrs, msg in [
        (dict(threshold=xla.scalar(1.0, F32)), "'threshold' must be a u64 or s64 scalar"),
        (dict(threshold=xla.scalar(2 ** 32 + 1, U64)), "must lie in \\[0, 2\\*\\*32\\]"),
        (dict(threshold=xla.scalar(-1, S64)), "must lie in"),
        (dict(a=xla.scalar(2.0, F32)), "'a' must be an f64 scalar, got f32"),
        (dict(a=xla.array([1])), "'a' must be a scalar"),
        (dict(mstrides=xla.array([1], S32)), "'mstrides' must be an s64 array"),
        (dict(mstrides=xla.scalar(1, S64)), "'mstrides' must be an s64 array"),
        (dict(mstrides=xla.array([2])), "mstrides are not the strides of a mask shape"),
        (dict(mstrides=xla.array([1, 1])), "rank"),
        (dict(draw=xla.scalar(1.0, F64)), "'draw' must be a pred scalar, got f64"),
        (dict(zzz=xla.scalar(1.0, F64)), "unexpected attribute 'zzz'"),
    ]:
        cf, y = case(**attrs)
        assert re.search(msg, _bad(xla, cf)), xla.errors[-1]
        assert (y == 7).all()
    # a missing attribute
    y = np.full(8, 7.0, np.float32)
    attrs = _select_attrs(xla)
    del attrs["c"]
    cf = xla.frame([xla.buffer(x, F32), xla.buffer(_words(1), U32)], [xla.buffer(y, F32)],
                   attrs)
    assert "'c' missing" in _bad(xla, cf) and (y == 7).all()
    # operands: counts, kinds, dtypes, shapes
    good = _select_attrs(xla)
    for args, rets, msg in [
        ([xla.buffer(x, F32)], [xla.buffer(np.zeros(8, np.float32), F32)], "operand"),
        ([xla.buffer(x.view(np.int32), S32), xla.buffer(_words(1), U32)],
         [xla.buffer(np.zeros(8, np.int32), S32)], "x must be f16, f32, f64 or bf16, got s32"),
        ([xla.buffer(x, F32), xla.buffer(_words(1), U32)],
         [xla.buffer(np.zeros(8, np.float64), F64)], "the result must have x's dtype"),
        ([xla.buffer(x, F32), xla.buffer(_words(1).astype(np.int32), S32)],
         [xla.buffer(np.zeros(8, np.float32), F32)], "key must be u32"),
        ([xla.buffer(x, F32), xla.buffer(np.zeros(3, np.uint32), U32)],
         [xla.buffer(np.zeros(8, np.float32), F32)], "key must have shape"),
        ([xla.buffer(np.ones(9, np.float32), F32), xla.buffer(_words(1), U32)],
         [xla.buffer(np.zeros(8, np.float32), F32)], "x's axis 0 has extent 9"),
    ]:
        cf = xla.frame(args, rets, good)
        assert msg in _bad(xla, cf), xla.errors[-1]
    cf = xla.frame([xla.buffer(x, F32), xla.buffer(_words(1), U32)],
                   [xla.buffer(np.zeros(8, np.float32), F32)], good, arg_types=[1, 2])
    assert "is not a buffer" in _bad(xla, cf)
    cf = xla.frame([xla.buffer(x, F32), xla.buffer(_words(1), U32)],
                   [xla.buffer(np.zeros(8, np.float32), F32)], good, ret_types=[2])
    assert "is not a buffer" in _bad(xla, cf)
    b = xla.buffer(x, F32)
    b.struct_size = 8
    cf = xla.frame([b, xla.buffer(_words(1), U32)], [xla.buffer(np.zeros(8, np.float32), F32)],
                   good)
    assert "XLA_FFI_Buffer size" in _bad(xla, cf)


def test_end_of_stream_writes_nothing():
    xla = FakeXla()
    x = np.ones(8, np.float32)
    y = np.full(8, 7.0, np.float32)
    cf = _select_frame(xla, x, y, offset=2 ** 64 - 7)
    assert "stream ends at 2**64" in _bad(xla, cf, code=OUT_OF_RANGE)
    assert (y == 7).all()
    y2 = np.full(8, 7.0, np.float32)
    cf = _select_frame(xla, x, y2, offset=2 ** 64 - 8)
    assert _handler("fastdrop_select")(ctypes.byref(cf)) is None
    ref = fastdrop.dropout(x, 0.5, rng=fastdrop.Generator(5, 2 ** 64 - 8))
    assert_array_equal(y2, ref)
    # a batch of keys is checked as a whole before anything is written
    keys = np.stack([_words(1, 0), _words(2, 2 ** 64 - 1)])
    y3 = np.full((2, 8), 7.0, np.float32)
    cf = xla.frame([xla.buffer(x[None], F32), xla.buffer(keys, U32)], [xla.buffer(y3, F32)],
                   _select_attrs(xla))
    assert "stream ends" in _bad(xla, cf, code=OUT_OF_RANGE)
    assert (y3 == 7).all()


def test_noise_and_apply_handlers():
    xla = FakeXla()
    x = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)
    y = np.empty_like(x)
    cf = xla.frame([xla.buffer(x, F32), xla.buffer(_words(9, 2), U32)], [xla.buffer(y, F32)],
                   {"a": xla.scalar(-0.0, F64), "b": xla.scalar(0.5, F64),
                    "add": xla.scalar(1, PRED), "mstrides": xla.array([5, 1])})
    assert _handler("fastdrop_noise")(ctypes.byref(cf)) is None, xla.errors
    assert_array_equal(y, fastdrop.gaussian_noise(x, 0.5, rng=fastdrop.Generator(9, 2)))
    cf = xla.frame([xla.buffer(x, F32), xla.buffer(_words(9, 2), U32)], [xla.buffer(y, F32)],
                   {"a": xla.scalar(-0.0, F64), "b": xla.scalar(0.5, F64),
                    "add": xla.scalar(1, S32), "mstrides": xla.array([5, 1])})
    assert "'add' must be a pred scalar" in _bad(xla, cf, "fastdrop_noise")
    mask = np.random.default_rng(4).random((1, 5)) < 0.5
    cf = xla.frame([xla.buffer(x, F32), xla.buffer(mask, PRED)], [xla.buffer(y, F32)],
                   {"a": xla.scalar(2.0, F64), "b": xla.scalar(-0.0, F64),
                    "c": xla.scalar(0.0, F64)})
    assert _handler("fastdrop_apply")(ctypes.byref(cf)) is None, xla.errors
    assert_array_equal(y, fastdrop.apply_mask(x, mask, 0.5))
    cf = xla.frame([xla.buffer(x, F32), xla.buffer(mask.astype(np.uint8), 6)],
                   [xla.buffer(y, F32)], {"a": xla.scalar(2.0, F64), "b": xla.scalar(-0.0, F64),
                                          "c": xla.scalar(0.0, F64)})
    assert "mask must be pred" in _bad(xla, cf, "fastdrop_apply")
    m = np.empty(8, np.bool_)
    cf = xla.frame([xla.buffer(_words(1), U32)], [xla.buffer(m, U32)],
                   {"threshold": xla.scalar(5, U64)})
    assert "the result must be pred" in _bad(xla, cf, "fastdrop_mask")


def test_unsupported_platform_handler():
    xla = FakeXla()
    cf = _select_frame(xla, np.ones(4, np.float32), np.zeros(4, np.float32))
    err = _handler("fastdrop_select", unsupported=True)(ctypes.byref(cf))
    assert err is not None
    code, msg = xla.errors[-1]
    assert code == UNIMPLEMENTED and "no GPU handler" in msg and "CPU" in msg
    # other stages: nothing to refuse
    cf = _select_frame(xla, np.ones(4, np.float32), np.zeros(4, np.float32), stage=PREPARE)
    assert _handler("fastdrop_select", unsupported=True)(ctypes.byref(cf)) is None
