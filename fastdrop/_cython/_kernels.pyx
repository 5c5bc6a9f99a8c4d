# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, autotestdict=False
"""Cython CPU kernels: drivers around the header-only C core (kernels.h).

The drivers turn an array and its mask strides into "outer rows x inner
axis" tasks of at most :data:`CHUNK` elements (docs/spec.md §2,
"Logical index"), then run them with the GIL released, in parallel on the
worker pool (pool.h) when the work is large.  A task's result depends only on its index, so results
never depend on the number of threads.
"""

cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

import numpy as np

from fastdrop import _config
from fastdrop._bfloat16 import is_bfloat16 as _is_bfloat16

cnp.import_array()

__all__ = ["forward", "mask", "apply_mask", "noise", "fast_dropout", "fast_backward",
           "stream_scale", "isa",
           "openmp_enabled", "default_threads", "threadpool_limit", "CHUNK", "run_tasks",
           "TASK_SLOTS"]

cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTDROP_HAVE_OPENMP 1
    #else
    #define FASTDROP_HAVE_OPENMP 0
    #endif
    """
    int FASTDROP_HAVE_OPENMP

cdef extern from "threads.h" nogil:
    int fastdrop_threadpool_get_num_threads()
    int fastdrop_threadpool_get_limit()
    int fd_threads_unlimited()

cdef extern from "pool.h" nogil:
    ctypedef void (*fd_pool_fn)(const void *ctx, int64_t t) noexcept nogil
    void fd_pool_run(fd_pool_fn fn, const void *ctx, int64_t ntasks, int nthreads)
    void fd_advise_output(void *y, int64_t nbytes)

cdef extern from "kernels.h" nogil:
    int FD_MAXDIM
    int FD_OP_FORWARD, FD_OP_APPLY, FD_OP_MASK, FD_OP_NOISE_MUL, FD_OP_NOISE_ADD
    int FD_F16, FD_F32, FD_F64, FD_BF16
    ctypedef struct fd_affine_t:
        double a, b, c
    ctypedef struct fd_isa_t:
        const char *name
        int level
        void (*stream_scale)(const float *x, float *y, int64_t n, float s) noexcept nogil
    ctypedef struct fd_task_t:
        const fd_isa_t *isa
        int op, dtype, nd
        int64_t oshape[64]
        int64_t oxs[64]
        int64_t oys[64]
        int64_t oms[64]
        char *x
        char *y
        int64_t L, xs, ys, ms, chunk, cpr
        uint64_t seed, offset
        uint32_t Th, Tl
        fd_affine_t af
        uint8_t *keep
        uint8_t *packed
        const uint8_t *mkeep
        const uint8_t *mpacked
        int nt
        int64_t rblock
        int64_t tshort
        int64_t rows
        int64_t rpt
    void fd_run_task(const fd_task_t *g, int64_t t)
    void fd_task_rows(fd_task_t *g, int64_t item, int forward)
    int64_t fd_task_count(const fd_task_t *g)
    const fd_isa_t *fd_isa()
    const fd_isa_t *fd_isa_select(int cap)
    const fd_isa_t *fd_isa_for(uint32_t Th)
    int fd_isa_cap_level
    uint64_t fd_threshold(double p)

# Everything after the kernels' headers (this module's Python-facing code and
# Cython's support code) compiles at -O2, the kernels at setup.py's -O3: 4.4 kB
# less compressed extension (the wheel is held under 600 kB), no slower
# (1000-element fast-path calls, both builds timed interleaved in one process,
# Zen 4 VM: 0.99-1.02x); -Os would save 37 kB but cost those calls 8-19%.
cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC optimize ("O2", "no-math-errno", "no-trapping-math", "fp-contract=off")
    #endif
    """

#: Elements per parallel task (shared with the Numba backend: fastdrop._config).
CHUNK = _config.CHUNK
# calls of fewer elements run on the calling thread alone
cdef int64_t _SERIAL_MAX = _config.CHUNK
# elements per task (the pool, pool.h).  Measured, 16 Mi float32, AMD EPYC
# Zen 5, quiet: a quarter of this made 1 thread 10-15% slower (more task
# starts without prefetched input) and 2 threads no faster; under heavy load
# it held the caller a little less (10^5 elements, load 8: 1.65 against 1.85
# times the 1-thread time)
cdef int64_t _CHUNK = _config.CHUNK
cdef object _Generator = None
cdef object _NpGenerator = None
cdef object _default_stream = None
cdef list _default_slot = None  # fastdrop._generator._DEFAULT: [the default stream or None]
cdef object _numpy_seed = None


cdef _import_generators():
    """fastdrop's Generator, NumPy's, the default stream and the NumPy seed
    rule, looked up once (fastdrop._generator imports this module's users)."""
    global _Generator, _NpGenerator, _default_stream, _default_slot, _numpy_seed
    from fastdrop import _generator
    _NpGenerator = np.random.Generator
    _default_stream = _generator.default_stream
    _default_slot = _generator._DEFAULT
    _numpy_seed = _generator.numpy_seed
    _Generator = _generator.Generator
cdef object _U64 = 1 << 64

_ISA_CAPS = {"portable": 0, "avx2": 1, "avx512": 2}
_ISA_NAMES = tuple(_ISA_CAPS)  # by cap level

# The CPU is probed and the ISA table entry chosen once, here, with the cap
# FASTDROP_MAX_ISA gives (avx512, avx2 or portable; anything else: no cap).
import os as _os
fd_isa_select(_ISA_CAPS.get(_os.environ.get("FASTDROP_MAX_ISA", ""), 2))


def openmp_enabled():
    """True if this extension was compiled with OpenMP: on Windows, where
    the worker pool runs OpenMP threads (POSIX threads elsewhere, with no
    OpenMP runtime).

    Examples
    --------
    >>> from fastdrop._cython import _kernels
    >>> _kernels.openmp_enabled() in (True, False)
    True
    """
    return bool(FASTDROP_HAVE_OPENMP)


def isa():
    """Which ISA leaf the kernels run with: ``"avx512"``, ``"avx2"`` or
    ``"portable"`` (C vectorised by the compiler for the build's baseline).
    Chosen once, when this module is imported, from the CPU and the
    environment variable ``FASTDROP_MAX_ISA=avx2`` or ``=portable`` (a cap);
    results are identical on every path.

    Examples
    --------
    >>> from fastdrop._cython import _kernels
    >>> _kernels.isa() in ("avx512", "avx2", "portable")
    True
    """
    return fd_isa().name.decode()


def set_max_isa(name):
    """Cap the hand-written kernels at ``name`` (``"avx512"``, ``"avx2"`` or
    ``"portable"``) in this process, as ``FASTDROP_MAX_ISA`` does at start-up;
    a cap never widens the path beyond what the CPU has.  Returns the
    previous cap's name.  For tests (the ISA parity suite runs every path in
    one process): do not call it while kernels run in other threads.

    Examples
    --------
    >>> from fastdrop._cython import _kernels
    >>> old = _kernels.set_max_isa("portable")
    >>> _kernels.isa()
    'portable'
    >>> _ = _kernels.set_max_isa(old)
    """
    if not isinstance(name, str) or name not in _ISA_CAPS:
        raise ValueError(f"name must be one of {sorted(_ISA_CAPS)}, got {name!r}")
    old = _ISA_NAMES[fd_isa_cap_level]
    fd_isa_select(_ISA_CAPS[name])
    return old

def default_threads():
    """The default thread count at this moment (threads.h): the
    threadpoolctl limit if one is set, else ``OMP_NUM_THREADS`` (OpenMP's
    syntax: the first entry of a comma-separated list; an invalid value is
    ignored), else the CPUs this process may run on.
    :func:`fastdrop.get_num_threads` returns it when
    :func:`fastdrop.set_num_threads` has set no count.

    Examples
    --------
    >>> from fastdrop._cython import _kernels
    >>> _kernels.default_threads() >= 1
    True
    """
    return fastdrop_threadpool_get_num_threads()


def threadpool_limit():
    """The thread limit threadpoolctl set (``threadpool_limits``), or None.

    Examples
    --------
    >>> from fastdrop._cython import _kernels
    >>> _kernels.threadpool_limit() is None  # outside threadpool_limits blocks
    True
    """
    n = fastdrop_threadpool_get_limit()
    return n if n > 0 else None


# the default thread count (fastdrop._config.get_num_threads), and
# threadpoolctl's controller: registered now if threadpoolctl is imported,
# else when it is (fastdrop._threadpool)
_config._extension_threads = default_threads
from fastdrop import _threadpool
_threadpool.install()


cdef inline int _dtype_code(cnp.ndarray x) except -1:
    cdef int t = cnp.PyArray_TYPE(x)
    if t == cnp.NPY_FLOAT:
        return FD_F32
    if t == cnp.NPY_DOUBLE:
        return FD_F64
    if t == cnp.NPY_FLOAT16:
        return FD_F16
    # ml_dtypes.bfloat16 has a type number of its own, given at run time:
    # recognised by kind, size and name (fastdrop._bfloat16.is_bfloat16)
    if _is_bfloat16(x.dtype):
        return FD_BF16
    raise TypeError(f"unsupported dtype {x.dtype}")


# outputs at least this large are written with non-temporal stores (forward, apply)
cdef int64_t _NT_MIN_BYTES = _config.NT_MIN_BYTES


cdef inline bint _nontemporal(cnp.ndarray xa, cnp.ndarray ya, bint fresh) noexcept:
    """Whether out ``ya`` is written with non-temporal stores: a caller's
    large out-of-place output (they skip the read-for-ownership), not a fresh
    one (its untouched pages would be zeroed first, then written again)."""
    return (not fresh and cnp.PyArray_NBYTES(ya) >= _NT_MIN_BYTES
            and cnp.PyArray_BYTES(ya) != cnp.PyArray_BYTES(xa))


# row blocks of the stored-mask apply for transposed layouts (rows x inner chunk)
cdef int64_t _RBLOCK = 64
cdef int64_t _RBLOCK_CHUNK = 1024


cdef void _task_cb(const void *g, int64_t t) noexcept nogil:
    fd_run_task(<const fd_task_t *>g, t)


cdef int _execute(fd_task_t *g, int64_t ntasks, int64_t total) except -1:
    """Run tasks 0..ntasks-1, on the worker pool (pool.h) when there is
    enough work."""
    return _run_pool(_task_cb, g, ntasks, total)


cdef inline int _run_pool(fd_pool_fn fn, const void *ctx, int64_t ntasks,
                          int64_t total) except -1:
    """Run fn(ctx, t) for t = 0..ntasks-1 (total elements in all), on the
    worker pool when there is enough work."""
    cdef object ntset = _config._num_threads
    cdef int nt = 1  # the calling thread alone, unless there is enough work
    if ntasks <= 0:
        return 0
    if ntasks > 1 and total >= _SERIAL_MAX:
        nt = fastdrop_threadpool_get_num_threads() if ntset is None else ntset
    with nogil:
        fd_pool_run(fn, ctx, ntasks, nt)
    return 0


cdef int _geometry(fd_task_t *g, cnp.ndarray x, cnp.ndarray out, mstrides,
                   bint memory_order=False) except -1:
    """Fill the task geometry; returns the number of elements (0: nothing).

    The mask index ``sum(idx * mstrides)`` does not depend on the order the
    axes are walked in.  Forward walks them in logical order (the inner axis
    then has mask stride 1: whole Philox blocks).  With ``memory_order``
    (stored-mask kernels, for layouts where ``_prefer_memory_order``) the
    axes are walked in x's memory order instead, largest |stride| outermost,
    so a Fortran-ordered or transposed array streams through memory."""
    cdef int nd = cnp.PyArray_NDIM(x)
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(x)
    cdef cnp.npy_intp *xst = cnp.PyArray_STRIDES(x)
    cdef cnp.npy_intp *yst = cnp.PyArray_STRIDES(out)
    cdef int64_t sh[64]
    cdef int64_t xs[64]
    cdef int64_t ys[64]
    cdef int64_t ms[64]
    cdef int a, k = 0, i
    cdef int64_t total = 1
    if len(mstrides) != nd:
        raise ValueError(f"mstrides has {len(mstrides)} entries, x has {nd} axes")
    for a in range(nd):
        if shape[a] == 0:
            return 0
        total *= shape[a]
    cdef int order[64]
    cdef int b, t
    for a in range(nd):
        order[a] = a
    if memory_order:  # stable insertion sort by descending |x stride|
        for a in range(1, nd):
            t = order[a]
            b = a - 1
            while b >= 0 and _abs(xst[order[b]]) < _abs(xst[t]):
                order[b + 1] = order[b]
                b -= 1
            order[b + 1] = t
    # drop extent-1 axes, collapse adjacent axes from the innermost outwards
    for i in range(nd - 1, -1, -1):
        a = order[i]
        if shape[a] == 1:
            continue
        if (k > 0 and xst[a] == xs[k - 1] * sh[k - 1] and yst[a] == ys[k - 1] * sh[k - 1]
                and <int64_t>mstrides[a] == ms[k - 1] * sh[k - 1]):
            sh[k - 1] *= shape[a]
            continue
        sh[k] = shape[a]
        xs[k] = xst[a]
        ys[k] = yst[a]
        ms[k] = <int64_t>mstrides[a]
        k += 1
    if k == 0:  # a single element
        g.nd = 0
        g.L = 1
        g.xs = g.ys = cnp.PyArray_ITEMSIZE(x)
        g.ms = 1
    else:
        # axes are stored innermost first: axis 0 is the inner one
        g.nd = k - 1
        g.L = sh[0]
        g.xs = xs[0]
        g.ys = ys[0]
        g.ms = ms[0]
        for i in range(1, k):
            g.oshape[k - 1 - i] = sh[i]
            g.oxs[k - 1 - i] = xs[i]
            g.oys[k - 1 - i] = ys[i]
            g.oms[k - 1 - i] = ms[i]
    g.x = cnp.PyArray_BYTES(x)
    g.y = cnp.PyArray_BYTES(out)
    g.chunk = _CHUNK
    g.cpr = (g.L + _CHUNK - 1) // _CHUNK
    return 1 if total > 0 else 0


cdef inline int64_t _abs(int64_t v) noexcept nogil:
    return -v if v < 0 else v


cdef bint _prefer_memory_order(cnp.ndarray x):
    """Whether walking x in memory order beats logical order: the axis of
    smallest |stride| (extent > 1) is not the logical last one and is long
    enough (>= 64) to make good rows.  True for Fortran-ordered and
    transposed arrays; False for C order and, e.g., a Fortran (4, 10**6)."""
    cdef int nd = cnp.PyArray_NDIM(x), a, last = -1, fast = -1
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(x)
    cdef cnp.npy_intp *st = cnp.PyArray_STRIDES(x)
    for a in range(nd - 1, -1, -1):
        if shape[a] > 1:
            if last < 0:
                last = a
            if fast < 0 or _abs(st[a]) < _abs(st[fast]):
                fast = a
    return fast >= 0 and fast != last and shape[fast] >= 64


cdef inline void _init_task(fd_task_t *g, int op, int dtype, uint64_t seed, uint64_t offset,
                            uint64_t T, double a, double b, double c) noexcept:
    """The scalar fields of a task (the geometry is _geometry's): the one
    place a task is filled, for every entry point of this module."""
    g.op = op
    g.dtype = dtype
    g.nd = 0
    g.seed = seed
    g.offset = offset
    g.Th = <uint32_t>(T >> 16)
    g.Tl = <uint32_t>(T & 0xFFFF)
    g.isa = fd_isa_for(g.Th)
    g.af.a = a
    g.af.b = b
    g.af.c = c
    g.x = g.y = NULL
    g.keep = g.packed = NULL
    g.mkeep = g.mpacked = NULL
    g.nt = 0
    g.rblock = 0
    g.tshort = 0
    g.rows = 0
    g.rpt = 0
    g.chunk = _CHUNK


cdef bint _aligned(cnp.ndarray a):
    return cnp.PyArray_ISALIGNED(a) and cnp.PyArray_ISNOTSWAPPED(a)


def forward(x, out, seed, offset, T, scale, mstrides, keep_out=None, packed_out=None,
            fresh_out=False, *, shift=-0.0, fill=0.0):
    """Dropout forward with the mask generated on the fly (kernel interface).

    ``out[idx] = x[idx] * scale + shift`` if ``keep(offset + i(idx))`` else
    ``fill``, with ``i(idx) = sum(idx * mstrides)``; see :mod:`fastdrop._dispatch`.

    Parameters
    ----------
    x, out : ndarray
        Same shape and float dtype, any strides; ``out`` may be ``x``.
    seed, offset : int
        uint64 key and first stream position.
    T : int
        Threshold ``rint(p * 2**32)`` in ``[0, 2**32]``.
    scale, shift, fill : float
        The affine select: kept ``x * scale + shift``, dropped ``fill``
        (each cast once to the compute type).
    mstrides : tuple of int
        Mask strides per axis (0 on broadcast axes).
    keep_out, packed_out : ndarray, optional
        Bool / packed uint8 mask outputs (full mask only).
    fresh_out : bool, default False
        ``out`` was just allocated (its pages are untouched): then large
        outputs are not written with non-temporal stores, which would double
        the write traffic of the first-touch page zeroing.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdrop._cython import _kernels
    >>> x = np.ones(8, dtype=np.float32)
    >>> out = np.empty_like(x)
    >>> _kernels.forward(x, out, 0, 0, 2**31, 2.0, (1,))
    >>> out.tolist()
    [2.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    """
    cdef fd_task_t g
    cdef cnp.ndarray xa = x, ya = out
    cdef int64_t n
    cdef int a
    if not (_aligned(xa) and _aligned(ya)):
        from fastdrop import reference
        return reference.forward(x, out, seed, offset, T, scale, mstrides,
                                 keep_out=keep_out, packed_out=packed_out, shift=shift,
                                 fill=fill)
    if xa.size >= _SERIAL_MAX and _prefer_memory_order(xa):
        # Fortran-ordered / transposed layout: the logical rows are strided in
        # memory (and may be short).  Make the mask (in logical order, whole
        # Philox blocks), then apply it walking x in memory order.
        # (a loop, not a generator expression: that would bring Cython's
        # generator support code into the extension)
        n = 1
        for a in range(cnp.PyArray_NDIM(xa)):
            n += (cnp.PyArray_DIMS(xa)[a] - 1) * <int64_t>mstrides[a]
        full = keep_out if keep_out is not None else np.empty(n, dtype=bool)
        mask(n, seed, offset, T, keep_out=full, packed_out=packed_out)
        apply_mask(x, out, mstrides, scale, keep=full, shift=shift, fill=fill,
                   fresh_out=fresh_out)
        return
    _init_task(&g, FD_OP_FORWARD, _dtype_code(xa), seed, offset, T, scale, shift, fill)
    if _geometry(&g, xa, ya, mstrides) == 0:
        return
    n = xa.size
    g.nt = _nontemporal(xa, ya, fresh_out)
    if keep_out is not None or packed_out is not None:
        if g.nd != 0 or g.ms != 1:
            # strided layout: make the mask first, then apply it
            full = keep_out if keep_out is not None else np.empty(n, dtype=bool)
            mask(n, seed, offset, T, keep_out=full, packed_out=packed_out)
            apply_mask(x, out, mstrides, scale, keep=full, shift=shift, fill=fill,
                       fresh_out=fresh_out)
            return
        if keep_out is not None:
            g.keep = <uint8_t *>cnp.PyArray_BYTES(<cnp.ndarray>keep_out)
        if packed_out is not None:
            g.packed = <uint8_t *>cnp.PyArray_BYTES(<cnp.ndarray>packed_out)
    elif _is_tshort(&g, xa.itemsize):
        # the transpose of a C-contiguous (L, a) array, a <= 16: walk memory
        # (a logical-order walk would stride through it a times)
        g.tshort = g.oshape[0]
        g.chunk = max(256, (_CHUNK // g.tshort) // 256 * 256)
        g.cpr = (g.L + g.chunk - 1) // g.chunk
    else:
        fd_task_rows(&g, xa.itemsize, 1)
    _execute(&g, fd_task_count(&g), n)


cdef bint _is_tshort(fd_task_t *g, int64_t item):
    """Whether the forward geometry is the transpose of a C-contiguous (L, a)
    array with 2 <= a <= 16 (x and out alike)."""
    cdef int64_t a
    if g.nd != 1 or g.ms != 1:
        return False
    a = g.oshape[0]
    return (2 <= a <= 16 and g.oms[0] == g.L and g.xs == a * item and g.ys == a * item
            and g.oxs[0] == item and g.oys[0] == item)


def noise(x, out, seed, offset, mstrides, a, b, op):
    """Gaussian dropout and noise (kernel interface, docs/spec.md §11):
    ``t = b * z + a`` in float64 with ``z`` the normal-variate stream at
    position ``offset + i(idx)``, then ``out = x * t`` (``op == "mul"``) or
    ``x + t`` (``"add"``) in the compute type; see :mod:`fastdrop._dispatch`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdrop._cython import _kernels
    >>> x = np.ones(4, dtype=np.float32)
    >>> out = np.empty_like(x)
    >>> _kernels.noise(x, out, 0, 0, (1,), 1.0, 0.5, "mul")
    >>> [round(float(v), 4) for v in out]
    [0.0194, 1.281, 0.4795, 0.957]
    """
    cdef fd_task_t g
    cdef cnp.ndarray xa = x, ya = out
    cdef int code
    if op == "mul":
        code = FD_OP_NOISE_MUL
    elif op == "add":
        code = FD_OP_NOISE_ADD
    else:
        raise ValueError(f"op must be 'mul' or 'add', got {op!r}")
    if not (_aligned(xa) and _aligned(ya)):
        from fastdrop import reference
        return reference.noise(x, out, seed, offset, mstrides, a, b, op)
    _init_task(&g, code, _dtype_code(xa), seed, offset, 0, a, b, 0.0)
    g.isa = fd_isa()
    if _geometry(&g, xa, ya, mstrides) == 0:
        return
    fd_task_rows(&g, xa.itemsize, 0)
    _execute(&g, fd_task_count(&g), xa.size)


def mask(n, seed, offset, T, keep_out=None, packed_out=None):
    """Keep bits of stream positions ``offset .. offset + n - 1`` (kernel interface).

    Parameters
    ----------
    n : int
        Number of mask elements.
    seed, offset, T : int
        Key, first stream position, threshold.
    keep_out : ndarray of bool, optional
        C-contiguous, ``n`` elements.
    packed_out : ndarray of uint8, optional
        C-contiguous, ``ceil(n / 8)`` bytes (tail bits are written as 0).

    Examples
    --------
    >>> import numpy as np
    >>> from fastdrop._cython import _kernels
    >>> packed = np.empty(4, dtype=np.uint8)
    >>> _kernels.mask(32, 0, 0, 2**31, packed_out=packed)
    >>> packed.tobytes().hex()
    'fd630123'
    """
    cdef fd_task_t g
    _init_task(&g, FD_OP_MASK, FD_F32, seed, offset, T, 1.0, -0.0, 0.0)
    g.L = n
    g.xs = g.ys = g.ms = 1
    g.cpr = (g.L + _CHUNK - 1) // _CHUNK
    g.keep = <uint8_t *>cnp.PyArray_BYTES(<cnp.ndarray>keep_out) if keep_out is not None else NULL
    g.packed = <uint8_t *>cnp.PyArray_BYTES(<cnp.ndarray>packed_out) if packed_out is not None else NULL
    if n <= 0 or (g.keep == NULL and g.packed == NULL):
        return
    _execute(&g, g.cpr, n)


def apply_mask(x, out, mstrides, scale, keep=None, packed=None, *, shift=-0.0, fill=0.0,
               fresh_out=False):
    """The affine select with a stored mask (kernel interface).

    ``out[idx] = keep[i(idx)] ? x[idx] * scale + shift : fill``; ``keep`` is a
    C-contiguous bool array over the logical mask index, or ``packed`` its
    little-endian packed bits (exactly one is given).  A large out-of-place
    ``out`` is written with non-temporal stores unless ``fresh_out`` (see
    :func:`forward`).

    Examples
    --------
    >>> import numpy as np
    >>> from fastdrop._cython import _kernels
    >>> x = np.arange(4, dtype=np.float64)
    >>> out = np.empty_like(x)
    >>> _kernels.apply_mask(x, out, (1,), 2.0, keep=np.array([True, False, True, True]))
    >>> out.tolist()
    [0.0, 0.0, 4.0, 6.0]
    """
    cdef fd_task_t g
    cdef cnp.ndarray xa = x, ya = out
    if not (_aligned(xa) and _aligned(ya)):
        from fastdrop import reference
        return reference.apply_mask(x, out, mstrides, scale, keep=keep, packed=packed,
                                    shift=shift, fill=fill)
    _init_task(&g, FD_OP_APPLY, _dtype_code(xa), 0, 0, 0, scale, shift, fill)
    if _geometry(&g, xa, ya, mstrides, _prefer_memory_order(xa)) == 0:
        return
    g.nt = _nontemporal(xa, ya, fresh_out)
    g.mkeep = <const uint8_t *>cnp.PyArray_BYTES(<cnp.ndarray>keep) if keep is not None else NULL
    g.mpacked = <const uint8_t *>cnp.PyArray_BYTES(<cnp.ndarray>packed) if packed is not None else NULL
    if g.mkeep == NULL and g.mpacked == NULL:
        raise ValueError("apply_mask needs keep= or packed=")
    if g.nd == 1 and g.mkeep != NULL and g.ms != 1 and _abs(g.oms[0]) < _abs(g.ms):
        # e.g. a Fortran-ordered 2-D array: walk blocks of rows so the keep
        # bytes of one inner position are read contiguously
        g.rblock = _RBLOCK
        g.chunk = _RBLOCK_CHUNK
        g.cpr = (g.L + g.chunk - 1) // g.chunk
    else:
        fd_task_rows(&g, xa.itemsize, 0)
    _execute(&g, fd_task_count(&g), xa.size)


cdef object _np_float64 = np.float64


cdef int _fast_admit(cnp.ndarray xa, object p, int *dtype, double *pd):
    """The fast paths' test of x (or grad) and p: C-contiguous, aligned,
    native float16/32/64, not empty; p a float strictly between 0 and 1.
    1 with the dtype code and p set, else 0."""
    if not (cnp.PyArray_IS_C_CONTIGUOUS(xa) and _aligned(xa)):
        return 0
    tcode = cnp.PyArray_TYPE(xa)
    if tcode == cnp.NPY_FLOAT:
        dtype[0] = FD_F32
    elif tcode == cnp.NPY_DOUBLE:
        dtype[0] = FD_F64
    elif tcode == cnp.NPY_FLOAT16:
        dtype[0] = FD_F16
    else:
        return 0
    if not (type(p) is float or type(p) is _np_float64):
        return 0  # a float subclass may define its own __float__: check_p's business
    pd[0] = p
    if not (pd[0] > 0.0 and pd[0] < 1.0):
        return 0  # p == 0, p == 1 and bad p: the plan's business
    return 1 if cnp.PyArray_SIZE(xa) != 0 else 0


cdef inline bint _overlap(char *a, int64_t an, char *b, int64_t bn) noexcept:
    """Whether the bytes [a, a + an) and [b, b + bn) share one."""
    return a < b + bn and b < a + an


cdef object _fast_out(cnp.ndarray xa, object out):
    """The fast paths' output: a new array like x when out is None, out
    itself when it is a writeable C-contiguous aligned ndarray of x's shape
    and dtype that is x or does not overlap it, else None (declined)."""
    cdef cnp.ndarray ya
    cdef int k
    cdef char *x0
    cdef char *y0
    cdef int64_t nbytes = cnp.PyArray_SIZE(xa) * cnp.PyArray_ITEMSIZE(xa)
    tcode = cnp.PyArray_TYPE(xa)
    if out is None:
        return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(xa), cnp.PyArray_DIMS(xa), tcode, 0)
    if type(out) is not cnp.ndarray:
        return None
    ya = <cnp.ndarray>out
    if not (cnp.PyArray_TYPE(ya) == tcode and cnp.PyArray_IS_C_CONTIGUOUS(ya)
            and _aligned(ya) and cnp.PyArray_ISWRITEABLE(ya)
            and cnp.PyArray_NDIM(ya) == cnp.PyArray_NDIM(xa)):
        return None
    for k in range(cnp.PyArray_NDIM(xa)):
        if cnp.PyArray_DIMS(ya)[k] != cnp.PyArray_DIMS(xa)[k]:
            return None
    x0 = cnp.PyArray_BYTES(xa)
    y0 = cnp.PyArray_BYTES(ya)
    if y0 != x0 and _overlap(x0, nbytes, y0, nbytes):
        return None  # partial overlap: the general path raises
    return ya


cdef int _fast_select(cnp.ndarray xa, cnp.ndarray ya, int dtype, double pd, uint64_t seed,
                      uint64_t offset, bint fresh, object keep, object packed,
                      size_t numba_fn, const uint8_t *stored=NULL,
                      bint stored_packed=False) except -1:
    """The plan's select rule of inverted dropout (kept x / (1 - p), dropped
    +0.0; its gradient is the same select) over the whole of x, decisions
    from the stream at (seed, offset), mask outputs keep / packed if given;
    by the Numba backend's task numba_fn when not 0 (backend="numba").
    With ``stored`` (a flat bool mask of x's size, or its packed bits if
    ``stored_packed``) the decisions are read from it instead: the plan's
    apply (seed, offset, keep, packed and numba_fn unused)."""
    cdef fd_task_t g
    cdef int64_t n = cnp.PyArray_SIZE(xa)
    cdef double scale = 1.0 / (1.0 - pd)
    cdef uint64_t T = fd_threshold(pd)
    cdef bint nt = _nontemporal(xa, ya, fresh)
    if stored != NULL:
        _init_task(&g, FD_OP_APPLY, dtype, 0, 0, 0, scale, -0.0, 0.0)
        if stored_packed:
            g.mpacked = stored
        else:
            g.mkeep = stored
    elif numba_fn != 0:
        return _numba_select(numba_fn, xa, ya, dtype, scale, T, seed, offset, nt, keep, packed)
    else:
        _init_task(&g, FD_OP_FORWARD, dtype, seed, offset, T, scale, -0.0, 0.0)
    g.nt = nt
    g.L = n
    g.xs = g.ys = cnp.PyArray_ITEMSIZE(xa)
    g.ms = 1
    g.x = cnp.PyArray_BYTES(xa)
    g.y = cnp.PyArray_BYTES(ya)
    g.cpr = (n + _CHUNK - 1) // _CHUNK
    if keep is not None:
        g.keep = <uint8_t *>cnp.PyArray_BYTES(<cnp.ndarray>keep)
    if packed is not None:
        g.packed = <uint8_t *>cnp.PyArray_BYTES(<cnp.ndarray>packed)
    return _execute(&g, g.cpr, n)


# The Numba backend's pool tasks of its contiguous forward ("forward_contig"
# of fastdrop._numba.kernels.task_cfunc; their addresses) by dtype code
# (DTYPE_CODES: float16, float32, float64), 0 until that backend has
# compiled or loaded one and written its address here (the backend keeps
# the task alive): the fast paths then run backend="numba" calls of their
# common case with it, without the backend's Python-level call (1000 float32
# elements: about 12 us -> 1 us).  An array, not a setter function: less
# code in the extension.  Internal: its entries are called as functions, and
# the extension reads the array it was created with (do not rebind it).
NUMBA_FORWARD = np.zeros(3, np.uint64)
cdef object _numba_forward_array = NUMBA_FORWARD  # held: the pointer below stays valid
cdef uint64_t *_numba_forward = <uint64_t *>cnp.PyArray_DATA(<cnp.ndarray>_numba_forward_array)


cdef int _numba_select(size_t fn, cnp.ndarray xa, cnp.ndarray ya, int dtype, double scale,
                       uint64_t T, uint64_t seed, uint64_t offset, bint nt, object keep,
                       object packed) except -1:
    """_fast_select's select (its scale, threshold T and nt) run by the Numba
    backend's forward_contig task fn with the context its general path gives
    run_tasks (arrays x, out,
    keep_out, packed_out, (a, b) in the compute type, (c,) in the storage
    type; integers seed, offset, T, nt), on the threads _execute chooses."""
    cdef _task_args c
    cdef double ab64[2]
    cdef float ab32[2]
    cdef uint64_t fill = 0  # c = +0.0: all bits 0 in every storage type
    cdef uint8_t empty = 0  # the data of an absent mask output (size 0)
    cdef int64_t n = cnp.PyArray_SIZE(xa)
    memset(&c, 0, sizeof(c))
    c.addr[0] = <int64_t><size_t>cnp.PyArray_DATA(xa)
    c.addr[1] = <int64_t><size_t>cnp.PyArray_DATA(ya)
    c.size[0] = c.size[1] = n
    c.addr[2] = c.addr[3] = <int64_t><size_t>&empty
    if keep is not None:
        c.addr[2] = <int64_t><size_t>cnp.PyArray_DATA(<cnp.ndarray>keep)
        c.size[2] = n
    if packed is not None:
        c.addr[3] = <int64_t><size_t>cnp.PyArray_DATA(<cnp.ndarray>packed)
        c.size[3] = cnp.PyArray_SIZE(<cnp.ndarray>packed)
    if dtype == FD_F64:
        ab64[0] = scale
        ab64[1] = -0.0
        c.addr[4] = <int64_t><size_t>ab64
    else:  # float32 and float16 compute in float32: the scale rounded once
        ab32[0] = <float>scale
        ab32[1] = -0.0
        c.addr[4] = <int64_t><size_t>ab32
    c.size[4] = 2
    c.addr[5] = <int64_t><size_t>&fill
    c.size[5] = 1
    c.ints[0] = <int64_t>seed
    c.ints[1] = <int64_t>offset
    c.ints[2] = <int64_t>T
    c.ints[3] = nt
    return _run_pool(<fd_pool_fn>fn, &c, (n + _CHUNK - 1) // _CHUNK, n)


def fast_dropout(x, p, rng, out=None, training=True, mode="inverted", noise_shape=None,
                 return_mask=False, backend="auto"):
    """Fast path of :func:`fastdrop.dropout` for the common case, given all
    of that call's arguments.

    The compiled form of the plan's common case (:mod:`fastdrop._plan`: the
    select rule with decisions from the stream, scale ``1 / (1 - p)``);
    reached through :func:`fastdrop._dispatch.fast_path`.
    Handles a C-contiguous, aligned, native float16/32/64 ``numpy.ndarray``
    (bfloat16 is declined: the general path runs it) with ``p`` a float
    strictly between 0 and 1 and ``rng`` an int seed or a
    :class:`fastdrop.Generator`, ``training`` True, ``mode="inverted"``, no
    ``noise_shape``, ``return_mask`` False, True, "bool" or "packed" (the
    mask made by the same pass, as the general path returns it: a bool array
    of ``x.shape`` or ``ceil(x.size / 8)`` packed bytes), ``backend`` "auto"
    or "cython" (or "numba" once that backend has written its task for the
    dtype into ``NUMBA_FORWARD``; the task then runs the select), and
    ``out`` either None or a writeable C-contiguous aligned ``numpy.ndarray``
    of the same shape and dtype that is ``x`` itself or does not overlap it.
    Returns ``NotImplemented`` for anything else, before touching ``rng`` or
    ``out``, so the caller falls back to the general path, which raises the
    proper errors.  Results and the Generator advance are those of the
    general path.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdrop._cython import _kernels
    >>> _kernels.fast_dropout(np.ones(8, np.float32), 0.5, 0)
    array([2., 0., 2., 2., 2., 2., 2., 2.], dtype=float32)
    >>> _kernels.fast_dropout([1.0], 0.5, 0)
    NotImplemented
    >>> y = np.zeros(8, np.float32)
    >>> _kernels.fast_dropout(np.ones(8, np.float32), 0.5, 0, y) is y
    True
    >>> _kernels.fast_dropout(np.ones(8, np.float32), 0.5, 0, return_mask="packed")[1]
    array([253], dtype=uint8)
    """
    pass  # (the generator objects are module globals, set by _import_generators)
    cdef cnp.ndarray xa, ya
    cdef double pd
    cdef int dtype
    cdef int64_t n
    cdef uint64_t seed = 0, offset = 0
    if type(x) is not cnp.ndarray:
        return NotImplemented
    # the admission test (pointer and exact-str compares): anything but the
    # plain call is the general path's, which validates and plans it
    if not (training is True and noise_shape is None
            and type(mode) is str and mode == "inverted" and type(backend) is str):
        return NotImplemented
    cdef bint numba = not (backend == "auto" or backend == "cython")
    if numba and not backend == "numba":
        return NotImplemented
    cdef int mkind  # the mask output: 0 none, 1 bool, 2 packed
    if return_mask is False:
        mkind = 0
    elif return_mask is True:
        mkind = 1
    elif type(return_mask) is str and (return_mask == "bool" or return_mask == "packed"):
        mkind = 1 if return_mask == "bool" else 2
    else:
        return NotImplemented
    xa = <cnp.ndarray>x
    if _fast_admit(xa, p, &dtype, &pd) == 0:
        return NotImplemented
    cdef size_t numba_fn = <size_t>_numba_forward[dtype] if numba else 0
    if numba and numba_fn == 0:
        return NotImplemented  # the Numba backend has no task for it yet
    n = cnp.PyArray_SIZE(xa)
    npgen = None
    if type(rng) is int:
        if rng < 0 or rng >= 18446744073709551616:
            return NotImplemented
        seed = rng
        offset = 0
        gen = None
    else:
        if _Generator is None:
            _import_generators()
        if rng is None:  # the process's default stream (docs/spec.md §3), made on first use
            gen = _default_slot[0]
            if gen is None:
                gen = _default_stream()
        elif type(rng) is _Generator:
            gen = rng
        elif type(rng) is _NpGenerator:
            gen = None
            npgen = rng
        else:
            return NotImplemented
    ya = _fast_out(xa, out)
    if ya is None:
        return NotImplemented
    cdef cnp.npy_intp nb
    keep = packed = None
    if mkind == 1:
        keep = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(xa), cnp.PyArray_DIMS(xa), cnp.NPY_BOOL, 0)
    elif mkind == 2:
        nb = (n + 7) // 8
        packed = cnp.PyArray_EMPTY(1, &nb, cnp.NPY_UINT8, 0)
    if npgen is not None:  # one seed drawn from it (checks all passed: nothing declines now)
        seed = _numpy_seed(npgen)
        offset = 0
    if gen is not None:
        # Generator._reserve's common case, under the same lock (a Generator
        # may be shared by threads): n positions from the offset, the next
        # call on a fresh block.  Reaching the end of the stream is the
        # general path's (its error or its clamp at 2**64), so decline it.
        lock = gen._lock
        lock.acquire()
        try:
            start = gen._offset
            end = start + ((n + 7) & -8)
            if end >= _U64:
                return NotImplemented
            gen._offset = end
            seed = gen._seed
            offset = start
        finally:
            lock.release()
    _fast_select(xa, ya, dtype, pd, seed, offset, out is None, keep, packed, numba_fn)
    if mkind == 0:
        return ya
    return ya, (keep if mkind == 1 else packed)


def fast_backward(grad, p, mask=None, state=None, training=True, mode="inverted",
                  noise_shape=None, out=None, backend="auto"):
    """Fast path of :func:`fastdrop.dropout_backward` for the common case,
    given all of that call's arguments.

    The gradient of inverted dropout with the mask regenerated from
    ``state``: the plan's select (kept ``grad / (1 - p)``, dropped +0.0),
    which is the forward's select on ``grad`` with the forward's decisions.
    Handles ``grad`` and ``out`` as :func:`fast_dropout` handles ``x`` and
    ``out``, ``state`` an int seed, a ``(seed, offset)`` tuple of ints or a
    saved ``Generator.state`` dict (its ``seed`` and ``offset`` ints, version
    1; ``offset + grad.size <= 2**64``), no ``noise_shape``, ``training``
    True, ``mode="inverted"``, ``backend`` "auto" or "cython" (or "numba",
    as :func:`fast_dropout` takes it).  Or, with ``state`` None, the
    forward's stored ``mask``: a C-contiguous bool ``numpy.ndarray`` of
    ``grad``'s shape or its ``ceil(grad.size / 8)`` packed bytes (1-D
    uint8), not overlapping ``out``; ``backend`` "auto" or "cython".  That
    is also :func:`fastdrop.apply_mask`'s common case (the same select).
    Returns ``NotImplemented`` for anything else, writing nothing, so the
    caller falls back to the general path, which raises the proper errors.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdrop._cython import _kernels
    >>> _kernels.fast_backward(np.ones(8, np.float32), 0.5, state=0)
    array([2., 0., 2., 2., 2., 2., 2., 2.], dtype=float32)
    >>> _kernels.fast_backward(np.ones(8, np.float32), 0.5, state=(0, 8))
    array([2., 2., 0., 0., 0., 2., 2., 0.], dtype=float32)
    >>> _kernels.fast_backward(np.ones(8, np.float32), 0.5, state={"seed": 0, "offset": 8})
    array([2., 2., 0., 0., 0., 2., 2., 0.], dtype=float32)
    >>> _kernels.fast_backward(np.ones(8, np.float32), 0.5, state={"seed": 0})
    NotImplemented
    >>> _kernels.fast_backward(np.ones(4, np.float32), 0.5, np.array([1, 0, 1, 1], bool))
    array([2., 0., 2., 2.], dtype=float32)
    >>> _kernels.fast_backward(np.ones(8, np.float32), 0.5, np.array([253], np.uint8))
    array([2., 0., 2., 2., 2., 2., 2., 2.], dtype=float32)
    """
    cdef cnp.ndarray xa, ya, ma
    cdef double pd
    cdef int dtype, k
    cdef uint64_t seed = 0, offset = 0
    cdef int64_t n
    cdef char *m0
    cdef char *y0
    if type(grad) is not cnp.ndarray:
        return NotImplemented
    if not (training is True and noise_shape is None
            and type(mode) is str and mode == "inverted" and type(backend) is str):
        return NotImplemented
    cdef bint numba = not (backend == "auto" or backend == "cython")
    if numba and not backend == "numba":
        return NotImplemented
    xa = <cnp.ndarray>grad
    if mask is not None:
        # a stored mask: the plan's apply (no Numba task runs it)
        if state is not None or numba or type(mask) is not cnp.ndarray:
            return NotImplemented
        if _fast_admit(xa, p, &dtype, &pd) == 0:
            return NotImplemented
        ma = <cnp.ndarray>mask
        n = cnp.PyArray_SIZE(xa)
        if not cnp.PyArray_IS_C_CONTIGUOUS(ma):
            return NotImplemented
        if cnp.PyArray_TYPE(ma) == cnp.NPY_UINT8:  # packed bits over the flat index
            if not (cnp.PyArray_NDIM(ma) == 1 and cnp.PyArray_SIZE(ma) == (n + 7) // 8):
                return NotImplemented
        elif cnp.PyArray_TYPE(ma) == cnp.NPY_BOOL:  # grad's shape (no broadcasting)
            if cnp.PyArray_NDIM(ma) != cnp.PyArray_NDIM(xa):
                return NotImplemented
            for k in range(cnp.PyArray_NDIM(xa)):
                if cnp.PyArray_DIMS(ma)[k] != cnp.PyArray_DIMS(xa)[k]:
                    return NotImplemented
        else:
            return NotImplemented
        ya = _fast_out(xa, out)
        if ya is None:
            return NotImplemented
        m0 = cnp.PyArray_BYTES(ma)
        y0 = cnp.PyArray_BYTES(ya)
        if _overlap(m0, cnp.PyArray_SIZE(ma), y0, n * cnp.PyArray_ITEMSIZE(xa)):
            return NotImplemented  # out would overwrite the mask it reads
        _fast_select(xa, ya, dtype, pd, 0, 0, out is None, None, None, 0, <const uint8_t *>m0,
                     cnp.PyArray_TYPE(ma) == cnp.NPY_UINT8)
        return ya
    if type(state) is int:
        s, o = state, 0
    elif (type(state) is tuple and len(<tuple>state) == 2 and type(state[0]) is int
          and type(state[1]) is int):
        s, o = state
    elif type(state) is dict:
        # a saved Generator.state as that getter makes it; any other dict is
        # the general path's (Generator.state's setter validates it)
        s, o = state.get("seed"), state.get("offset")
        v, ns = state.get("version", 1), state.get("n_spawned", 0)
        if not (type(s) is int and type(o) is int and type(v) is int and v == 1
                and type(ns) is int and ns >= 0 and len(<dict>state) == 2
                + ("version" in state) + ("n_spawned" in state)):
            return NotImplemented
    else:
        return NotImplemented
    if _fast_admit(xa, p, &dtype, &pd) == 0:
        return NotImplemented
    if not (0 <= s < _U64 and 0 <= o and o + cnp.PyArray_SIZE(xa) <= _U64):
        return NotImplemented  # bad seeds and offsets: the general path's errors
    cdef size_t numba_fn = <size_t>_numba_forward[dtype] if numba else 0
    if numba and numba_fn == 0:
        return NotImplemented
    seed = s
    offset = o
    ya = _fast_out(xa, out)
    if ya is None:
        return NotImplemented
    _fast_select(xa, ya, dtype, pd, seed, offset, out is None, None, None, numba_fn)
    return ya


ctypedef struct _stream_ctx:
    const fd_isa_t *isa
    const float *x
    float *y
    int64_t n
    float s


cdef void _stream_cb(const void *ctx, int64_t t) noexcept nogil:
    cdef const _stream_ctx *c = <const _stream_ctx *>ctx
    cdef int64_t a = t * _CHUNK
    c.isa.stream_scale(c.x + a, c.y + a, min(c.n - a, _CHUNK), c.s)


def stream_scale(x, out, s):
    """Streaming reference kernel ``out = x * s`` (float32, same memory
    traffic as out-of-place dropout), parallel over the same chunks and
    threads as the dropout kernels: the ceiling the benchmarks compare with.

    Parameters
    ----------
    x, out : ndarray of float32
        C-contiguous, same size.
    s : float

    Examples
    --------
    >>> import numpy as np
    >>> from fastdrop._cython import _kernels
    >>> y = np.empty(3, np.float32)
    >>> _kernels.stream_scale(np.arange(3, dtype=np.float32), y, 2.0)
    >>> y.tolist()
    [0.0, 2.0, 4.0]
    """
    cdef cnp.ndarray xa = x, ya = out
    if (xa.dtype != np.float32 or ya.dtype != np.float32 or xa.size != ya.size
            or not cnp.PyArray_IS_C_CONTIGUOUS(xa) or not cnp.PyArray_IS_C_CONTIGUOUS(ya)):
        raise TypeError("stream_scale needs C-contiguous float32 arrays of equal size")
    cdef float *xp = <float *>cnp.PyArray_DATA(xa)
    cdef float *yp = <float *>cnp.PyArray_DATA(ya)
    cdef int64_t n = xa.size, ntasks = (n + _CHUNK - 1) // _CHUNK, t, a, b
    cdef float sf = s
    cdef object ntset = _config._num_threads
    cdef int nt = fastdrop_threadpool_get_num_threads() if ntset is None else ntset
    if nt > ntasks:
        nt = <int>max(ntasks, 1)
    cdef _stream_ctx c
    c.isa = fd_isa()
    c.x = xp
    c.y = yp
    c.n = n
    c.s = sf
    with nogil:
        if nt <= 1:
            c.isa.stream_scale(xp, yp, n, sf)
        else:
            fd_pool_run(_stream_cb, &c, ntasks, nt)


#: dtype name -> kernel dtype code (:func:`flat_forward`'s ``dtype``).
DTYPE_CODES = {"float16": FD_F16, "float32": FD_F32, "float64": FD_F64, "bfloat16": FD_BF16}


def flat_forward(size_t xp, int64_t xs, size_t yp, int64_t ys, int64_t n, int dtype,
                 uint64_t seed, uint64_t offset, uint64_t T, double scale):
    """The training select of plain dropout (kept ``x * scale``, dropped
    ``+0.0``, no mask output) over ``n`` elements at raw addresses ``xp`` /
    ``yp`` with byte strides ``xs`` / ``ys`` (``xs`` may be 0: one value
    broadcast), mask indices ``0 .. n - 1``: the entry of ``fastdrop.torch``'s
    eager fast path, which has already checked everything (dtype code
    FD_F16 / FD_F32 / FD_F64, non-overlapping memory, ``0 < T < 2**32``).
    ``y`` is a fresh output: no non-temporal stores."""
    cdef fd_task_t g
    _init_task(&g, FD_OP_FORWARD, dtype, seed, offset, T, scale, -0.0, 0.0)
    if n <= 0:
        return
    g.nd = 0
    g.L = n
    g.xs = xs
    g.ys = ys
    g.ms = 1
    g.x = <char *>xp
    g.y = <char *>yp
    g.chunk = _CHUNK
    g.cpr = (n + _CHUNK - 1) // _CHUNK
    _execute(&g, g.cpr, n)


def advise_output(size_t p, int64_t nbytes):
    """Ask for transparent huge pages on the ``nbytes`` of fresh, not yet
    written output memory at address ``p`` (Linux; from 4 MiB on), as NumPy
    does for its large arrays: ``fastdrop.torch`` calls it on the results
    it allocates with ``torch.empty_like``, whose 4 KiB page faults would
    otherwise take most of a large call.  A hint: no byte changes.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdrop._cython import _kernels
    >>> a = np.zeros(1 << 21, np.float32)
    >>> _kernels.advise_output(a.ctypes.data, a.nbytes)
    >>> bool((a == 0).all())
    True
    """
    fd_advise_output(<void *>p, nbytes)


# ----------------------------------------------------------------------------
# XLA FFI handlers for fastdrop.jax (plain C: xla_ffi.h)
# ----------------------------------------------------------------------------

from cpython.pycapsule cimport PyCapsule_New

cdef extern from "xla_ffi.h" nogil:
    void *fd_xla_handler(int which)
    void fd_xla_configure(int threads, int64_t chunk, int64_t serial, int unlimited)
    int XLA_FFI_API_MAJOR
    int XLA_FFI_API_MINOR

#: custom call target -> number of its handler in xla_ffi.h
_XLA_TARGETS = {"fastdrop_select": 0, "fastdrop_noise": 1, "fastdrop_mask": 2,
                "fastdrop_apply": 3}


def xla_handlers(unsupported=False):
    """The XLA FFI handlers of :mod:`fastdrop.jax` as PyCapsules, by custom
    call target name (``jax.ffi.register_ffi_target(name, capsule,
    platform="cpu")``); with ``unsupported``, the handler for platforms
    without kernels (it answers every call with an error) under each name.

    Examples
    --------
    >>> from fastdrop._cython import _kernels
    >>> sorted(_kernels.xla_handlers())
    ['fastdrop_apply', 'fastdrop_mask', 'fastdrop_noise', 'fastdrop_select']
    """
    xla_configure(_config._num_threads)
    return {name: PyCapsule_New(fd_xla_handler(4 if unsupported else k),
                                b"xla._CUSTOM_CALL_TARGET", NULL)
            for name, k in _XLA_TARGETS.items()}


def xla_configure(threads):
    """Threads the XLA handlers use (None: the default, see
    :func:`default_threads`: a threadpoolctl limit applies when the handler
    runs, ``OMP_NUM_THREADS`` and the CPUs are read now); their task size and
    single-thread cut-over are the other entry points'.  Results never
    depend on either.

    Examples
    --------
    >>> from fastdrop._cython import _kernels
    >>> _kernels.xla_configure(None)
    """
    fd_xla_configure(0 if threads is None else int(threads), _CHUNK, _SERIAL_MAX,
                     fd_threads_unlimited())


def xla_api_version():
    """(major, minor) of the XLA FFI C API the handlers were built with (the
    vendored ``third_party/xla/ffi/api/c_api.h``).

    Examples
    --------
    >>> from fastdrop._cython import _kernels
    >>> _kernels.xla_api_version()[0]
    0
    """
    return (XLA_FFI_API_MAJOR, XLA_FFI_API_MINOR)


#: Slots of :func:`run_tasks`' context: arrays (address, size) and integers.
TASK_SLOTS = 16

ctypedef struct _task_args:
    int64_t addr[16]    # TASK_SLOTS array addresses
    int64_t size[16]    # their element counts
    int64_t ints[16]    # integer arguments (uint64 values as their bits)


def run_tasks(size_t fn, int64_t ntasks, int nthreads, tuple arrays, tuple ints):
    """Run a foreign task function (a Numba ``cfunc`` of C signature
    ``void(void *ctx, int64_t t)``) for ``t = 0 .. ntasks - 1`` on the
    worker pool, the GIL released: the way the Numba backend's kernels run,
    so that they share this extension's threads, their dynamic hand-out of
    tasks (a descheduled thread never stalls a call) and their
    floating-point environment (docs/spec.md, "Threads").

    ``ctx`` points to three arrays of :data:`TASK_SLOTS` int64: the data
    addresses of ``arrays`` (C-contiguous ndarrays), their sizes in
    elements, and ``ints`` (Python ints in the int64 or uint64 range; a
    uint64 travels as its bits).  The arrays must stay alive and unchanged
    for the call, which this function guarantees by holding them.

    Examples
    --------
    >>> import ctypes, numpy as np
    >>> from fastdrop._cython import _kernels
    >>> seen = np.zeros(4, np.int64)
    >>> @ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
    ... def task(ctx, t):  # a Python callback only for this example
    ...     seen[t] = ctypes.cast(ctx, ctypes.POINTER(ctypes.c_int64))[32] + t
    >>> fn = ctypes.cast(task, ctypes.c_void_p).value
    >>> _kernels.run_tasks(fn, 4, 1, (), (100,))
    >>> seen.tolist()
    [100, 101, 102, 103]
    """
    cdef _task_args c
    cdef cnp.ndarray a
    cdef Py_ssize_t k
    if fn == 0:
        raise ValueError("run_tasks: null task function")
    if len(arrays) > TASK_SLOTS or len(ints) > TASK_SLOTS:
        raise ValueError(f"run_tasks: at most {TASK_SLOTS} arrays and {TASK_SLOTS} integers")
    memset(&c, 0, sizeof(c))
    for k in range(len(arrays)):
        a = arrays[k]
        if not cnp.PyArray_IS_C_CONTIGUOUS(a):
            raise ValueError(f"run_tasks: array {k} is not C-contiguous")
        c.addr[k] = <int64_t><size_t>cnp.PyArray_DATA(a)
        c.size[k] = cnp.PyArray_SIZE(a)
    for k in range(len(ints)):
        v = ints[k]
        c.ints[k] = <int64_t><uint64_t>v if v >= 0 else <int64_t>v
    if ntasks <= 0:
        return
    if nthreads < 1:
        nthreads = 1
    with nogil:
        fd_pool_run(<fd_pool_fn>fn, &c, ntasks, nthreads)
