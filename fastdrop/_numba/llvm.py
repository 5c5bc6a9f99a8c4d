"""The LLVM intrinsics of the Numba CPU kernels (:mod:`fastdrop._numba.kernels`).

Each function here is a Numba ``@intrinsic``: callable from ``njit`` code
only, it emits a few LLVM instructions where Numba's own code generation
falls short.  Every call is inlined into the calling kernel (and cached with
it: :mod:`fastdrop._numba._cache` hashes this file into the kernels' cache
stamp).  LLVM intrinsic functions are declared with
``ir.Module.declare_intrinsic`` from the types of the arguments actually
passed, so their names are mangled to match the pointers llvmlite emits
(typed ``i8*`` or opaque ``ptr``) whatever the LLVM version.

- :func:`prefetch`: ``llvm.prefetch`` of one cache line into L2
  (declared by :func:`declare_prefetch`).
- :func:`addr`: an array's data address, for alignment checks.
- :func:`stack_buffer`, :func:`align_frame`: scratch arrays in the calling
  function's stack frame, and a 64-byte aligned frame (aligned spill slots).
- :func:`philox_blocks`: Philox of a tile's blocks eight per vector in
  32-bit lanes (for targets :func:`target_features` says have AVX2, not
  AVX-512).
- :func:`nt_line`, :func:`store_fence`: the affine select of one 64-byte
  line stored non-temporally (``!nontemporal``), and the ``sfence`` that orders
  such stores.
- :func:`pack_lanes32`, :func:`apply_line`: 32 keep bits packed by one
  vector compare; one line of the select read from a stored bool or packed
  mask, optionally stored non-temporally.
- :func:`f32_from_bits`, :func:`bits_from_f32`, :func:`f32_of_half_bits`,
  :func:`half_bits_of_f32`: float32/float16 bit reinterpretations and
  conversions (the latter two where :func:`native_f16`).

Why each exists, with the measurements behind it, is in its section below.
"""

import sys

from llvmlite import binding as _llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from . import philox as _philox  # the Philox constants: one definition

__all__ = [
    "X86", "native_f16", "declare_prefetch", "prefetch", "addr", "stack_buffer",
    "align_frame", "target_features", "philox_blocks", "store_fence", "nt_line",
    "pack_lanes32", "apply_line", "f32_from_bits", "bits_from_f32",
    "f32_of_half_bits", "half_bits_of_f32",
]

#: Whether the process (and so Numba's JIT) targets x86.
X86 = _llvm.get_process_triple().split("-")[0] in ("x86_64", "i386", "i686")

_I32 = ir.IntType(32)
_VOID = ir.VoidType()


# ---------------------------------------------------------------------------
# codegen helpers
# ---------------------------------------------------------------------------

def _elem_ptr(context, builder, aryty, ary, idx, idxty, ty):
    """Codegen: the address of element ``idx`` (of Numba type ``idxty``) of
    the array value ``ary``, as a ``ty`` pointer."""
    a = context.make_array(aryty)(context, builder, ary)
    i = context.cast(builder, idx, idxty, types.intp)
    return builder.bitcast(builder.gep(a.data, [i]), ty.as_pointer())


def _splat(builder, v, vty):
    """Codegen: ``v`` in every lane of the vector type ``vty``."""
    out = ir.Constant(vty, ir.Undefined)
    for k in range(vty.count):
        out = builder.insert_element(out, v, _I32(k))
    return out


def _any(builder, lanes_true):
    """Codegen: whether any lane of an ``i1`` vector is set."""
    n = lanes_true.type.count
    bits = builder.bitcast(lanes_true, ir.IntType(n))
    return builder.icmp_unsigned("!=", bits, ir.Constant(ir.IntType(n), 0))


def _affine(builder, xv, a, b, vty):
    """Codegen: ``xv * a + b`` on the vector ``xv`` (scalars ``a``, ``b``
    splatted): an ``fmul`` then an ``fadd``, without fast-math flags, so
    each is rounded on its own and LLVM never contracts them into a fused
    multiply-add (docs/spec.md §4, the affine select)."""
    return builder.fadd(builder.fmul(xv, _splat(builder, a, vty)), _splat(builder, b, vty))


def _is_float_array(a):
    return isinstance(a, types.Array) and isinstance(a.dtype, types.Float)


# ---------------------------------------------------------------------------
# software prefetch (llvm.prefetch) into L2 (locality 2, as the C kernels,
# where L2 beat L1 clearly): lets a thread overlap a tile's Philox arithmetic
# with the memory traffic of the tiles ahead (measured on the 2-core AVX-512
# machine, 16 Mi float32, 1 thread: 0.63-0.65 -> 0.66-0.70 of the streaming
# kernel; the distance is kernels.PREFETCH_BYTES).
# ---------------------------------------------------------------------------

def declare_prefetch(module, ptrty):
    """Codegen: ``llvm.prefetch`` declared in ``module`` for an address of
    the llvmlite pointer type ``ptrty``.  The intrinsic is overloaded on the
    pointer type, so its name is mangled from the type passed: ``.p0i8``
    for a typed ``i8*`` (which LLVM >= 15 reads as ``ptr`` and remangles),
    ``.p0`` for an opaque ``ptr``."""
    fnty = ir.FunctionType(_VOID, [ptrty, _I32, _I32, _I32])
    return module.declare_intrinsic("llvm.prefetch", [ptrty], fnty)


@intrinsic
def prefetch(typingctx, arr, idx):
    """Prefetch the cache line of ``arr[idx]`` into L2 for reading (no bounds
    check: a prefetch never faults)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        i = context.cast(builder, args[1], idxty, types.intp)
        ptr = builder.bitcast(builder.gep(ary.data, [i]), ir.IntType(8).as_pointer())
        fn = declare_prefetch(builder.module, ptr.type)
        builder.call(fn, [ptr, _I32(0), _I32(2), _I32(1)])  # read, L2, data cache
        return context.get_dummy_value()

    return sig, codegen


# ---------------------------------------------------------------------------
# stack frames: LLVM gives a Numba function a 16-byte aligned frame, so a
# 32-byte spill slot may straddle a 4 KiB page, depending on where the
# process's stack begins: whole processes ran slow (docs/performance.md, the
# Numba backend).  Used by the Philox, contiguous select, mask and normal
# variate functions, not by the strided per-row select (slower aligned).
# ---------------------------------------------------------------------------

@intrinsic
def stack_buffer(typingctx, n, dtype):
    """A pointer to ``n`` (a compile-time constant) elements of ``dtype``
    (a NumPy scalar type, e.g. ``np.uint32``) on the calling function's own
    stack frame, 64-byte aligned, uninitialised; wrap it with ``carray``.
    Lives until that function returns."""
    if not isinstance(n, types.IntegerLiteral) or not isinstance(dtype, types.NumberClass):
        return None
    count, elty = n.literal_value, dtype.instance_type
    sig = types.CPointer(elty)(n, dtype)

    def codegen(context, builder, signature, args):
        lty = context.get_data_type(elty)
        with builder.goto_entry_block():  # a static alloca: one per call of the function
            slot = builder.alloca(ir.ArrayType(lty, count))
        slot.align = 64
        return builder.bitcast(slot, lty.as_pointer())

    return sig, codegen


@intrinsic
def align_frame(typingctx):
    """Give the calling function a 64-byte aligned stack frame (LLVM's
    ``alignstack(64)``): its vector spill slots then never straddle a
    64-byte line or a 4 KiB page."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        attrs = builder.function.attributes
        attrs.alignstack = 64
        # llvmlite writes a function's attributes only when its set is not
        # empty, and alignstack is not kept in the set: nounwind (true of
        # all Numba code, which returns status codes) makes it non-empty
        attrs.add("nounwind")
        return context.get_dummy_value()

    return sig, codegen



# ---------------------------------------------------------------------------
# non-temporal stores: a large caller-provided output is written with whole
# 64-byte lines that bypass the caches, so the memory system does not read
# each output line first (the read-for-ownership of an ordinary store): 8
# bytes of traffic per float32 element instead of 12.  Measured on the 2-core
# AVX-512 machine, 16 Mi float32 forward, interleaved in one process with the
# streaming kernel: 0.75-0.88 -> 0.88-0.99 of it on 1 thread, 0.70-0.72 ->
# 0.76-0.79 on 2.  LLVM's auto-vectoriser does not emit these stores (they
# need whole aligned vectors), so :func:`nt_line` builds the vector code
# itself.  Not for float16 (its bits path converts in integer code).
# ---------------------------------------------------------------------------

@intrinsic
def addr(typingctx, arr):
    """The address of ``arr``'s data, as uint64."""
    if not isinstance(arr, types.Array):
        return None
    sig = types.uint64(arr)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.ptrtoint(ary.data, ir.IntType(64))

    return sig, codegen


def target_features():
    """The CPU features Numba compiles for, as Numba's CPU codegen decides
    them: ``NUMBA_CPU_FEATURES`` when set (empty for ``NUMBA_CPU_NAME=generic``),
    else the host's (none where LLVM cannot read them, the AVX ones off with
    ``NUMBA_ENABLE_AVX=0``), as a set of ``+name`` / ``-name`` strings.
    Features a CPU name implies are not in it (``NUMBA_CPU_NAME`` alone keeps
    the host's features; bench/isa_env.py sets both)."""
    from numba.core import codegen, config
    feats = (config.CPU_FEATURES if config.CPU_FEATURES is not None
             else codegen.get_host_cpu_features())
    return {f for f in feats.split(",") if f}


@intrinsic
def philox_blocks(typingctx, words, slot, b0, c2, k0, k1, n):
    """Philox4x32-10 of the ``n`` blocks ``b0 ..`` (counter ``(b & 0xFFFFFFFF,
    b >> 32, c2, 0)``, key ``(k0, k1)``; ``n`` a constant multiple of 8) into
    ``words[4 * slot ..]``, block after block (no bounds check): eight
    blocks in the 32-bit lanes of a vector, the groups' rounds interleaved,
    each multiply two 64-bit-lane multiplies of the even and the odd lanes
    (``vpmuludq``); for AVX2 targets (docs/performance.md)."""
    if not (isinstance(words, types.Array) and words.dtype == types.uint32
            and words.layout == "C" and words.mutable
            and all(isinstance(t, types.Integer) for t in (slot, b0, c2, k0, k1))
            and isinstance(n, types.IntegerLiteral) and n.literal_value % 8 == 0):
        return None
    sig = types.void(words, slot, b0, c2, k0, k1, n)
    nb, L = n.literal_value, 8

    def codegen(context, builder, signature, args):
        wt, st, bt, c2t, k0t, k1t, _ = signature.args
        i32, i64 = ir.IntType(32), ir.IntType(64)
        vw, vd = ir.VectorType(i32, L), ir.VectorType(i64, L // 2)

        def u64(v, t):
            return context.cast(builder, v, t, types.uint64)

        def cd(v):
            return ir.Constant(vd, [ir.Constant(i64, v)] * (L // 2))

        def cw(v):
            return ir.Constant(vw, [_I32(v)] * L)

        lo_mask, hi_mask, s32 = cd(0xFFFFFFFF), cd(0xFFFFFFFF00000000), cd(32)

        def mulhilo(x, m):  # (hi, lo) of x * m, lane by lane
            xd = builder.bitcast(x, vd)
            pe = builder.mul(builder.and_(xd, lo_mask), cd(m))
            po = builder.mul(builder.lshr(xd, s32), cd(m))
            hi = builder.or_(builder.lshr(pe, s32), builder.and_(po, hi_mask))
            lo = builder.or_(builder.and_(pe, lo_mask), builder.shl(po, s32))
            return builder.bitcast(hi, vw), builder.bitcast(lo, vw)

        b = u64(args[2], bt)
        x2 = _splat(builder, builder.trunc(u64(args[3], c2t), i32), vw)
        state = []
        for g in range(nb // L):
            x0 = ir.Constant(vw, ir.Undefined)
            x1 = ir.Constant(vw, ir.Undefined)
            for i in range(L):
                v = builder.add(b, ir.Constant(i64, L * g + i))
                x0 = builder.insert_element(x0, builder.trunc(v, i32), _I32(i))
                x1 = builder.insert_element(
                    x1, builder.trunc(builder.lshr(v, ir.Constant(i64, 32)), i32), _I32(i))
            state.append((x0, x1, x2, cw(0)))
        k0 = _splat(builder, builder.trunc(u64(args[4], k0t), i32), vw)
        k1 = _splat(builder, builder.trunc(u64(args[5], k1t), i32), vw)
        for r in range(10):
            if r:
                k0 = builder.add(k0, cw(int(_philox.W0)))
                k1 = builder.add(k1, cw(int(_philox.W1)))
            for g, (x0, x1, x2_, x3) in enumerate(state):
                hi0, lo0 = mulhilo(x0, int(_philox.M0))
                hi1, lo1 = mulhilo(x2_, int(_philox.M1))
                state[g] = (builder.xor(builder.xor(hi1, x1), k0), lo1,
                            builder.xor(builder.xor(hi0, x3), k1), lo0)
        # block-major: words (b, w0), (b, w1), (b, w2), (b, w3), (b + 1, w0), ...
        zip2 = ir.Constant(ir.VectorType(i32, 2 * L),
                           [_I32(v) for i in range(L) for v in (i, i + L)])
        zip4 = ir.Constant(ir.VectorType(i32, 4 * L), [
            _I32(v) for i in range(L) for v in (2 * i, 2 * i + 1, 2 * i + 2 * L, 2 * i + 2 * L + 1)])
        q = builder.mul(context.cast(builder, args[1], st, types.intp),
                        ir.Constant(context.get_value_type(types.intp), 4))
        for g, (x0, x1, x2_, x3) in enumerate(state):
            out = builder.shuffle_vector(builder.shuffle_vector(x0, x1, zip2),
                                         builder.shuffle_vector(x2_, x3, zip2), zip4)
            ptr = _elem_ptr(context, builder, wt, args[0],
                            builder.add(q, ir.Constant(q.type, 4 * L * g)), types.intp,
                            ir.VectorType(i32, 4 * L))
            builder.store(out, ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def store_fence(typingctx):
    """Order this thread's non-temporal stores before anything after it
    (``sfence`` on x86, where LLVM's own fence may become a locked stack
    operation; a sequentially consistent fence elsewhere): called at the
    end of a parallel work item that streamed."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if X86:
            fn = builder.module.declare_intrinsic(
                "llvm.x86.sse.sfence", (), ir.FunctionType(_VOID, []))
            builder.call(fn, [])
        else:  # pragma: no cover - not x86
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def nt_line(typingctx, x, xa, out, oa, lanes, lb, a, b, c, th16):
    """One 64-byte line of the affine select, stored non-temporally:
    ``out[oa + e] = x[xa + e] * a + b if lanes[lb + e] >= th16 else c`` for
    the ``64 // itemsize`` elements of the line (``a``, ``b``, ``c`` of x's
    dtype; the product and the sum are two rounded IEEE operations,
    :func:`_affine`; ``out + oa`` must be 64-byte aligned; float32/float64
    only).  Returns whether a lane equals ``th16`` (a tie, written as kept,
    to be resolved)."""
    if not (_is_float_array(x) and isinstance(out, types.Array) and out.dtype == x.dtype
            and isinstance(lanes, types.Array) and lanes.dtype == types.uint16
            and a == x.dtype and b == x.dtype and c == x.dtype):
        return None
    sig = types.boolean(x, xa, out, oa, lanes, lb, a, b, c, th16)

    def codegen(context, builder, signature, args):
        xt, xat, ot, oat, lt, lbt, _, _, _, tht = signature.args
        size = xt.dtype.bitwidth // 8
        vl = 64 // size
        vty = ir.VectorType(context.get_value_type(xt.dtype), vl)
        lty = ir.VectorType(ir.IntType(16), vl)
        xv = builder.load(_elem_ptr(context, builder, xt, args[0], args[1], xat, vty),
                          align=size)
        lv = builder.load(_elem_ptr(context, builder, lt, args[4], args[5], lbt, lty),
                          align=2)
        tv = _splat(builder, context.cast(builder, args[9], tht, types.uint16), lty)
        res = builder.select(builder.icmp_unsigned(">=", lv, tv),
                             _affine(builder, xv, args[6], args[7], vty),
                             _splat(builder, args[8], vty))
        st = builder.store(res, _elem_ptr(context, builder, ot, args[2], args[3], oat, vty),
                           align=64)
        st.set_metadata("nontemporal", builder.module.add_metadata([_I32(1)]))
        return _any(builder, builder.icmp_unsigned("==", lv, tv))

    return sig, codegen


# ---------------------------------------------------------------------------
# packed keep bits
# ---------------------------------------------------------------------------

@intrinsic
def pack_lanes32(typingctx, lanes, lb, th16, packed, byte):
    """Keep bits of the 32 random lanes ``lanes[lb:lb + 32]`` (``lane >
    th16``: a tie is written as dropped, to be resolved) into the four
    bytes ``packed[byte:byte + 4]`` (little bit order): one vector compare
    and a 32-bit store, where LLVM's own code for the shifts and ors of a
    bool-to-bits loop took about 0.2 ns/element.  Returns whether a lane
    equals ``th16``."""
    if not (isinstance(lanes, types.Array) and lanes.dtype == types.uint16
            and isinstance(packed, types.Array) and packed.dtype == types.uint8):
        return None
    sig = types.boolean(lanes, lb, th16, packed, byte)

    def codegen(context, builder, signature, args):
        lt, lbt, tht, pt, bt = signature.args
        lty = ir.VectorType(ir.IntType(16), 32)
        lv = builder.load(_elem_ptr(context, builder, lt, args[0], args[1], lbt, lty),
                          align=2)
        tv = _splat(builder, context.cast(builder, args[2], tht, types.uint16), lty)
        bits = builder.bitcast(builder.icmp_unsigned(">", lv, tv), _I32)
        if sys.byteorder == "big":  # pragma: no cover - byte 0 holds bits 0-7
            bits = builder.bswap(bits)
        builder.store(bits, _elem_ptr(context, builder, pt, args[3], args[4], bt, _I32),
                      align=1)
        return _any(builder, builder.icmp_unsigned("==", lv, tv))

    return sig, codegen


@intrinsic
def apply_line(typingctx, x, k, out, mask, a, b, c, nt):
    """One 64-byte line of ``vl = 64 // itemsize`` elements from ``k``:
    ``out = x * a + b`` where the element is kept, else ``c`` (``a``, ``b``,
    ``c`` of x's dtype; two rounded operations, :func:`_affine`).  ``mask``
    is the bool keep array (the line's ``vl`` bytes from ``k``) or packed
    bits (uint8: the ``2 * vl // 8`` bytes from ``mask[k >> 3]``, which must
    exist, read as one integer and shifted right by ``k & 7``, so a line
    need not start on a mask byte).  ``nt``: the
    line is stored non-temporally (``out + k`` must be 64-byte aligned;
    the caller fences, :func:`store_fence`).  float32/float64 only."""
    if not (_is_float_array(x) and isinstance(out, types.Array) and out.dtype == x.dtype
            and isinstance(mask, types.Array) and mask.dtype in (types.uint8, types.boolean)
            and a == x.dtype and b == x.dtype and c == x.dtype
            and isinstance(nt, types.Boolean)):
        return None
    sig = types.void(x, k, out, mask, a, b, c, nt)

    def codegen(context, builder, signature, args):
        xt, kt, ot, mt = signature.args[:4]
        size = xt.dtype.bitwidth // 8
        vl = 64 // size
        vty = ir.VectorType(context.get_value_type(xt.dtype), vl)
        k = context.cast(builder, args[1], kt, types.intp)
        if mt.dtype == types.uint8:
            wty = ir.IntType(2 * vl)
            byte = builder.lshr(k, k.type(3))
            bits = builder.load(_elem_ptr(context, builder, mt, args[3], byte, types.intp,
                                          wty), align=1)
            if sys.byteorder == "big":  # pragma: no cover - byte 0 first
                bits = builder.bswap(bits)
            bits = builder.lshr(bits, builder.zext(builder.trunc(
                builder.and_(k, k.type(7)), ir.IntType(8)), wty))
            kept = builder.bitcast(builder.trunc(bits, ir.IntType(vl)),
                                   ir.VectorType(ir.IntType(1), vl))
        else:  # bool bytes: any nonzero byte is kept (as Numba's own bool loads)
            bty = ir.VectorType(ir.IntType(8), vl)
            kept = builder.icmp_unsigned("!=", builder.load(
                _elem_ptr(context, builder, mt, args[3], k, types.intp, bty), align=1),
                bty(None))
        xv = builder.load(_elem_ptr(context, builder, xt, args[0], k, types.intp, vty),
                          align=size)
        res = builder.select(kept, _affine(builder, xv, args[4], args[5], vty),
                             _splat(builder, args[6], vty))
        ptr = _elem_ptr(context, builder, ot, args[2], k, types.intp, vty)
        nt_flag = context.cast(builder, args[7], signature.args[7], types.boolean)
        with builder.if_else(nt_flag) as (streamed, ordinary):
            with streamed:
                st = builder.store(res, ptr, align=64)
                st.set_metadata("nontemporal", builder.module.add_metadata([_I32(1)]))
            with ordinary:
                builder.store(res, ptr, align=size)
        return context.get_dummy_value()

    return sig, codegen


# ---------------------------------------------------------------------------
# float32 / float16 bits
# ---------------------------------------------------------------------------

@intrinsic
def f32_from_bits(typingctx, u):
    """Reinterpret a uint32 as float32."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def bits_from_f32(typingctx, f):
    """Reinterpret a float32 as uint32."""
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _I32)

    return sig, codegen


def native_f16():
    """Whether LLVM converts float16 <-> float32 in hardware for the CPU
    Numba compiles for: x86 with F16C, or AArch64, and Numba targeting the
    host CPU (``NUMBA_CPU_NAME`` unset).  Elsewhere the conversions would
    be runtime-library calls, which Numba's JIT may not resolve, so the
    kernels convert in integer code instead (:func:`f32_of_half_bits` and
    :func:`half_bits_of_f32` are for where this is true)."""
    from numba import config

    if config.CPU_NAME not in (None, "host"):
        return False
    arch = _llvm.get_process_triple().split("-")[0]
    if X86:
        return bool(_llvm.get_host_cpu_features().get("f16c", False))
    return arch in ("aarch64", "arm64")


@intrinsic
def f32_of_half_bits(typingctx, h):
    """float16 bits -> float32 by LLVM's ``fpext`` (exact)."""
    if h != types.uint16:
        return None
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@intrinsic
def half_bits_of_f32(typingctx, f):
    """float32 -> float16 bits by LLVM's ``fptrunc`` (round to nearest
    even; a NaN keeps its top payload bits and is quiet)."""
    if f != types.float32:
        return None
    sig = types.uint16(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return sig, codegen
