"""Numba CPU backend: the kernel interface of :mod:`fastdrop._dispatch`.

Importing this module imports neither Numba nor the kernels and compiles
nothing.  The kernels (:mod:`fastdrop._numba.kernels`) are imported on the
first call and each (operation, dtype) specialisation is compiled -- or
loaded from Numba's disk cache -- on first use and memoised; the time each
took is recorded for :func:`compile_report`.

Every value this backend writes is the affine select of docs/spec.md §4,
``keep ? x * scale + shift : fill`` (plain dropout: ``shift = -0.0``,
``fill = +0.0``), on every path below: the kernels get the three constants
as one tuple (:func:`_select`) and apply them with
:func:`fastdrop._numba.kernels.affine_select`.

Layouts
-------
- ``forward`` on C-contiguous ``x``/``out`` with a full mask runs the 1-D
  fast path (:func:`~fastdrop._numba.kernels.forward_contig`), which also
  writes ``keep_out``/``packed_out`` in the same pass.  A large
  (``kernels.NT_MIN_BYTES``) float32/float64 output that the caller
  provided and that is not ``x`` is written with non-temporal stores, as in
  the Cython backend; a freshly allocated one (``fresh_out=True``) is not
  (its pages are first touched by the kernel, and cached stores serve
  that better).
- ``apply_mask`` on C-contiguous ``x``/``out`` with a full stored mask runs
  :func:`~fastdrop._numba.kernels.apply_contig` (float32/float64 packed
  bits a 64-byte line at a time), with non-temporal stores on the same
  terms as ``forward``.
- Anything else (strides, Fortran order, reversed or transposed views, noise
  shapes, other stored masks) runs :func:`~fastdrop._numba.kernels.forward_nd`:
  length-1 axes are dropped, an inner axis is chosen (mask stride 1, or the
  memory-contiguous axis if its mask stride is 0 or 1), compatible axes are
  merged into it, and each outer index runs a 1-D strided inner loop on
  "base index + per-axis mask strides".  Nothing is copied.
- ``noise`` (Gaussian dropout and noise) runs
  :func:`~fastdrop._numba.kernels.noise_nd` on that same geometry for every
  layout (a C-contiguous array with a full mask is a single axis).

Threads
-------
The kernels' chunk tasks run on the Cython extension's worker pool
(:func:`fastdrop._cython._kernels.run_tasks`, each task a Numba ``cfunc``;
see :func:`fastdrop._numba.kernels.task_cfunc`), with the thread count
:func:`fastdrop.get_num_threads` and one thread below ``CHUNK`` elements,
exactly as the Cython backend: tasks are handed out dynamically and a call
waits only for tasks a worker has claimed, so a worker the OS has not
scheduled never stalls it (Numba's own parallel loops end at a barrier that
waits for every thread: measured on a 2-core AMD EPYC with a busy loop per
core, 10**5 float32 elements took 57x longer on two threads than on one).
Numba's thread settings are not touched.  Results never depend on the
thread count.

Once this backend has the ``forward_contig`` task of float16, float32 or
float64 it writes its address into the extension's ``NUMBA_FORWARD``
(:mod:`fastdrop._cython._kernels`): the compiled fast
paths (:func:`fastdrop._dispatch.fast_path`) then run ``backend="numba"``
calls of their common case with that task, without this module's
Python-level call (a 1000-element float32 call: about 12 us -> 1 us).

Without the compiled extension (a source tree that was not built) the
``prange`` kernels run instead, on Numba's threading layer: each call sets
``numba.set_num_threads(min(fastdrop.get_num_threads(),
numba.config.NUMBA_NUM_THREADS))`` in the calling thread (Numba's setting is
thread-local) and puts the caller's value back afterwards; if Numba picked
its ``workqueue`` threading layer (not thread-safe) the calls are serialised
by a lock.  Arrays that are not aligned to their item size take that path
too (the pool tasks type their arrays as aligned).

Examples
--------
>>> import numpy as np
>>> from fastdrop._numba import backend
>>> from fastdrop.reference import threshold
>>> x = np.ones(8, np.float32); out = np.empty_like(x)
>>> backend.forward(x, out, 0, 0, threshold(0.5), 2.0, (1,))
>>> out.tolist()
[2.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
"""

from __future__ import annotations

import threading
import time

import numpy as np

from .._bfloat16 import is_bfloat16
from .._bfloat16 import narrow_bits as _bf16_bits
from .._config import CHUNK, get_num_threads

__all__ = ["DTYPES", "available", "forward", "mask", "apply_mask", "noise", "stream_scale",
           "compile_report", "warmup"]

#: dtypes this backend supports.
DTYPES = ("float16", "float32", "float64", "bfloat16")
#: ``forward`` takes the ``fresh_out`` hint (see :mod:`fastdrop._dispatch`).
ACCEPTS_FRESH_OUT = True
#: Not ``DRAWS_SPANS`` (see :mod:`fastdrop._dispatch`): drawing a repeated mask first,
#: then applying it, was measured mixed here (float32, Zen 4 VM, 1 / 2 threads, three
#: interleaved rounds: noise shape (32, 1, 1, 64) of (32, 56, 56, 64) 1.4x / 1.4x faster,
#: (128, 1, 768) of (128, 49, 768) 0.8-1.3x / 0.72-0.78x): this backend's forward makes
#: each decision where it is used.
DRAWS_SPANS = False
#: Keep-decision sources the kernels read natively (see
#: :func:`fastdrop._dispatch.capabilities`): the mask stream, stored bool
#: and packed masks, and the normal-variate stream (:func:`noise`).
SOURCES = ("philox", "bool", "packed", "normal")
#: The Cython extension's compiled fast paths run this backend's common case
#: with its own task when the extension is built (see "Threads" above).
USES_COMPILED_FAST_PATH = True

_build_lock = threading.Lock()   # first import of the kernels / compilation records
_call_lock = threading.Lock()    # serialises parallel calls under 'workqueue'
_K = None                        # the kernels module, once imported
_numba = None                    # the numba module, once imported
_layer = None                    # numba.threading_layer() after the first call
_seen: dict = {}                 # (kernel, type key) -> record dict
_records: list = []              # compile/load records, in order


def available():
    """Whether Numba can be imported (the backend's only requirement).

    Returns
    -------
    (bool, str)
        ``(True, "")`` or ``(False, reason)``.

    Examples
    --------
    >>> from fastdrop._numba import backend
    >>> backend.available()[0] in (True, False)
    True
    """
    try:
        import numba  # noqa: F401
    except ImportError as e:  # pragma: no cover - numba is a dependency
        return False, f"numba is not installed ({e})"
    return True, ""


def _kernels():
    global _K, _numba
    if _K is None:
        with _build_lock:
            if _K is None:
                t0 = time.perf_counter()
                import numba

                from . import kernels
                _numba = numba
                _records.append({"kernel": "import", "types": "",
                                 "seconds": time.perf_counter() - t0,
                                 "source": "import"})
                _K = kernels
    return _K


def _ensure(kernel, key, args):
    """Compile (or load from the disk cache) ``kernel`` for ``args``' types
    the first time ``key`` is seen, timing it."""
    k = (kernel, key)
    if k in _seen:
        return
    import numba

    with _build_lock:
        if k in _seen:
            return
        sig = tuple(numba.typeof(a) for a in args)
        already = sig in kernel.overloads
        hits = sum(kernel.stats.cache_hits.values())
        t0 = time.perf_counter()
        kernel.compile(sig)
        dt = time.perf_counter() - t0
        if already:
            source = "memory"
        elif sum(kernel.stats.cache_hits.values()) > hits:
            source = "cache"
        else:
            source = "compiled"
        rec = {"kernel": kernel.__name__, "types": str(key), "seconds": dt,
               "source": source}
        _records.append(rec)
        _seen[k] = rec


def _call(kernel, key, *args, n=None):
    """Run a parallel kernel with fastdrop's thread count, safely; ``n``
    elements (when given) below one task (``CHUNK``) run on one thread: the
    work is a single task anyway, and waking the pool cost more than the
    call (measured with a busy loop per core, 2-core AMD EPYC, 1000
    float32: 8 ms on 2 threads against 26 us on one)."""
    global _layer
    numba = _numba
    if (kernel, key) not in _seen:
        _ensure(kernel, key, args)
    caller = numba.get_num_threads()  # restored after the call (the caller's setting)
    want = 1 if n is not None and n < CHUNK else get_num_threads()
    numba.set_num_threads(min(want, numba.config.NUMBA_NUM_THREADS))
    try:
        if _layer is None or _layer == "workqueue":
            with _call_lock:
                kernel(*args)
                if _layer is None:
                    try:
                        _layer = numba.threading_layer()
                    except ValueError:  # pragma: no cover - no parallel run yet
                        pass
        else:
            kernel(*args)
    finally:
        numba.set_num_threads(caller)


_run_tasks = None  # fastdrop._cython._kernels.run_tasks, False if not built
_tasks: dict = {}  # (kernel, storage char) -> the pool task's CFunc


def _pool():
    """The Cython extension's ``run_tasks`` (the worker pool), or None when
    the extension is not built (the prange kernels then run on Numba's own
    threads)."""
    global _run_tasks
    if _run_tasks is None:
        try:
            from .._cython import _kernels as C
        except ImportError:
            _run_tasks = False
        else:
            if C.TASK_SLOTS != _kernels().TASK_SLOTS:  # pragma: no cover - a stale build
                raise ImportError("fastdrop._cython._kernels.TASK_SLOTS differs from "
                                  "fastdrop._numba.kernels.TASK_SLOTS: rebuild the extension")
            _run_tasks = C.run_tasks
    return _run_tasks or None


#: storage type chars whose forward_contig task the Cython fast paths take
#: (float16 travels as uint16); bfloat16 is not on the fast paths
_FAST_DTYPES = {"H": "float16", "f": "float32", "d": "float64"}


def _task(kernel, st, ct):
    """Address of ``kernel``'s pool task for storage type ``st`` (compiled,
    or loaded from the disk cache, the first time; timed for
    :func:`compile_report`)."""
    key = (kernel, np.dtype(st).char)
    f = _tasks.get(key)
    if f is None:
        K = _kernels()
        with _build_lock:
            f = _tasks.get(key)
            if f is None:
                t0 = time.perf_counter()
                f = K.task_cfunc(kernel, st, ct)
                dt = time.perf_counter() - t0
                _records.append({"kernel": f"{kernel} task", "types": np.dtype(st).name,
                                 "seconds": dt,
                                 "source": "cache" if f.cache_hits else "compiled"})
                _tasks[key] = f
    if kernel == "forward_contig" and key[1] in _FAST_DTYPES and _pool():
        # the compiled fast paths run backend="numba" calls of their common
        # case with it (held alive in _tasks); written again if the slot
        # was cleared
        from .._cython import _kernels as C
        code = C.DTYPE_CODES[_FAST_DTYPES[key[1]]]
        if C.NUMBA_FORWARD[code] != f.address:
            C.NUMBA_FORWARD[code] = f.address
    return f.address


def _run(kernel, st, ntasks, n, arrays, ints, ct=np.float32):
    """Run ``ntasks`` tasks of ``kernel`` on the worker pool (one thread
    below ``CHUNK`` elements, as the Cython backend)."""
    _pool()(_task(kernel, st, ct), ntasks, 1 if n < CHUNK else get_num_threads(),
            arrays, ints)


def _pooled(*arrays):
    """Whether the pool path takes these arrays (the extension is built and
    every array is aligned: its tasks type them as aligned)."""
    return _pool() is not None and all(a.flags.aligned for a in arrays)


def _sel_arrays(sel, st):
    """``sel = (a, b, c)`` as the pool tasks read it: ``(a, b)`` in the
    compute type and ``(c,)`` in the storage type."""
    return np.array(sel[:2], dtype=type(sel[0])), np.array(sel[2:], dtype=st)


def _storage(a):
    """float16 arrays travel as their uint16 bits (no Numba CPU float16),
    bfloat16 arrays as their bits typed int16 (so that the kernels'
    overloads tell the two apart by type: :mod:`fastdrop._numba.kernels`)."""
    if a.dtype == np.float16:
        return a.view(np.uint16)
    if is_bfloat16(a.dtype):
        return a.view(np.int16)
    return a


def _select(dtype, scale, shift, fill):
    """The kernels' ``sel = (a, b, c)``: ``scale`` and ``shift`` rounded once
    to the compute type (float64 for float64, float32 otherwise), ``fill``
    through the compute type to the storage type as a kept value goes
    (float16: ``float16(float32(fill))``, passed as its uint16 bits;
    bfloat16: ``R(float32(fill))``, its bits as an int16)."""
    ct = np.float64 if dtype == np.float64 else np.float32
    if is_bfloat16(dtype):
        return (ct(scale), ct(shift), _bf16_bits(ct(fill)).view(np.int16)[()])
    if dtype == np.float16:
        with np.errstate(over="ignore"):  # a large fill is inf in float16
            c = np.float16(ct(fill)).view(np.uint16)
    else:  # float32 / float64: the compute type itself
        c = ct(fill)
    return (ct(scale), ct(shift), c)


def _u64(v):
    return np.uint64(int(v))


def _readonly(a):
    v = a.view()
    v.flags.writeable = False
    return v


def _is_full(shape, mstrides):
    """Whether the mask index is x's C-order flat index."""
    acc = 1
    for n, m in zip(reversed(shape), reversed(mstrides)):
        if n != 1 and m != acc:
            return False
        acc *= n
    return True


def _flat_base(a, writeable):
    """(1-D contiguous array over ``a``'s memory from its lowest address,
    element offset of ``a[0, ..., 0]`` in it)."""
    if type(a) is np.ndarray and a.flags.c_contiguous:  # a plain view (as_strided: ~5 us)
        flat = a.reshape(-1)
        if not writeable:
            flat.flags.writeable = False
        return flat, 0
    item = a.itemsize
    lo = hi = 0
    for n, st in zip(a.shape, a.strides):
        ext = (n - 1) * (st // item)
        if ext < 0:
            lo += ext
        else:
            hi += ext
    flip = tuple(slice(None, None, -1) if st < 0 else slice(None) for st in a.strides)
    low = a[flip]
    flat = np.lib.stride_tricks.as_strided(low, shape=(hi - lo + 1,), strides=(item,),
                                           writeable=writeable)
    return flat, -lo


_GEOMETRY: dict = {}  # _geometry's key -> its result (cleared past _GEOMETRY_MAX)
_GEOMETRY_MAX = 256


def _geometry(x, out, mstrides):
    """Axes for the N-d kernel: (shape, xs, os, ms) as int64 arrays, inner
    axis last, with length-1 axes dropped and mergeable axes merged.

    Memoised by item size, shape and the three stride tuples (working it
    out took about 4 us of a 1000-element call); the arrays are shared
    between calls, and the kernels only read them."""
    key = (x.itemsize, x.shape, x.strides, out.strides, tuple(int(m) for m in mstrides))
    g = _GEOMETRY.get(key)
    if g is None:
        g = _geometry_of(*key)
        if len(_GEOMETRY) >= _GEOMETRY_MAX:
            _GEOMETRY.clear()
        _GEOMETRY[key] = g
    return g


def _geometry_of(item, shape, xstrides, ostrides, mstrides):
    """:func:`_geometry` of the arrays its key describes."""
    axes = [(n, sx // item, so // item, m)
            for n, sx, so, m in zip(shape, xstrides, ostrides, mstrides) if n != 1]
    if not axes:
        axes = [(1, 0, 0, 0)]
    # inner axis: the memory-contiguous one if its mask stride is 0 or 1,
    # else the one with mask stride 1 (batched Philox), else memory order
    c_ax = min(range(len(axes)), key=lambda k: abs(axes[k][1]))
    m_ax = [k for k in range(len(axes)) if axes[k][3] == 1]
    inner = c_ax if axes[c_ax][3] in (0, 1) or not m_ax else m_ax[0]
    # transposed layout (mask-contiguous axis far apart in memory, the
    # memory-contiguous axis scattered in the mask): blocked kernel path
    blocked = (inner != c_ax and abs(axes[inner][1]) > 8 and abs(axes[c_ax][1]) <= 2
               and abs(axes[c_ax][2]) <= 2)
    n_in, sx_in, so_in, sm_in = axes[inner]
    pax = axes[c_ax] if blocked else None
    axes = [a for k, a in enumerate(axes) if k != inner and not (blocked and k == c_ax)]
    merged = True
    while merged:
        merged = False
        for k, (n, sx, so, sm) in enumerate(axes):
            if sx == sx_in * n_in and so == so_in * n_in and sm == sm_in * n_in:
                n_in *= n
                axes.pop(k)
                merged = True
                break
    if blocked:
        axes.append(pax)
    axes.append((n_in, sx_in, so_in, sm_in))
    cols = list(zip(*axes))
    return tuple(np.array(c, dtype=np.int64) for c in cols), blocked


def _aligned_strides(a):
    return all(st % a.itemsize == 0 for st in a.strides)


def _nd(x, out, mstrides, seed, offset, T, sel, keep, packed):
    K = _kernels()
    if not _aligned_strides(x):
        x = np.ascontiguousarray(x)
    if not _aligned_strides(out):  # pragma: no cover - exotic views
        tmp = np.empty_like(x)
        _nd(x, tmp, mstrides, seed, offset, T, sel, keep, packed)
        out[...] = tmp
        return
    (shape, xs, os_, ms), blocked = _geometry(x, out, mstrides)
    xf, x0 = _flat_base(_storage(x), False)
    of, o0 = _flat_base(_storage(out), True)
    keep = keep if keep is not None else K.NO_BOOL
    packed = packed if packed is not None else K.NO_BYTES
    if _pooled(xf, of):
        ab, c = _sel_arrays(sel, xf.dtype)
        _run("forward_nd", xf.dtype, K.nd_tasks(shape, blocked), x.size,
             (xf, of, shape, xs, os_, ms, keep, packed, ab, c),
             (int(x0), int(o0), int(seed), int(offset), int(T), int(blocked)), ab.dtype)
        return
    args = (xf, np.int64(x0), of, np.int64(o0), shape, xs, os_, ms,
            _u64(seed), _u64(offset), _u64(T), sel, keep, packed, blocked)
    _call(K.forward_nd, (x.dtype.char, xf.flags.aligned, of.flags.aligned), *args, n=x.size)


def forward(x, out, seed, offset, T, scale, mstrides, keep_out=None, packed_out=None, *,
            shift=-0.0, fill=0.0, fresh_out=False):
    """Dropout forward, the affine select ``keep ? x * scale + shift :
    fill``; see :mod:`fastdrop._dispatch` for the conventions (``fresh_out``:
    ``out`` was just allocated by the caller).

    Examples
    --------
    >>> import numpy as np
    >>> from fastdrop.reference import threshold
    >>> x = np.ones((2, 4), np.float64); out = np.empty_like(x)
    >>> forward(x, out, 0, 0, threshold(0.5), 2.0, (0, 1))  # noise_shape (1, 4)
    >>> out.tolist()
    [[2.0, 0.0, 2.0, 2.0], [2.0, 0.0, 2.0, 2.0]]
    >>> forward(x, out, 0, 0, threshold(0.5), 2.0, (0, 1), shift=0.5, fill=-1.0)
    >>> out.tolist()
    [[2.5, -1.0, 2.5, 2.5], [2.5, -1.0, 2.5, 2.5]]
    """
    if x.size == 0:
        return
    K = _kernels()
    sel = _select(x.dtype, scale, shift, fill)
    if x.ndim == 0:
        x, out, mstrides = x.reshape(1), out.reshape(1), (1,)
    full = _is_full(x.shape, mstrides)
    if full and x.flags.c_contiguous and out.flags.c_contiguous:
        xs = _readonly(_storage(x).reshape(-1))
        os_ = _storage(out).reshape(-1)
        nt = (not fresh_out and out.nbytes >= K.NT_MIN_BYTES
              and out.__array_interface__["data"][0] != x.__array_interface__["data"][0])
        keep = keep_out if keep_out is not None else K.NO_BOOL
        packed = packed_out if packed_out is not None else K.NO_BYTES
        if _pooled(xs, os_):
            ab, c = _sel_arrays(sel, xs.dtype)
            _run("forward_contig", xs.dtype, (x.size + CHUNK - 1) // CHUNK, x.size,
                 (xs, os_, keep, packed, ab, c), (int(seed), int(offset), int(T), int(nt)),
                 ab.dtype)
            return
        args = (xs, os_, _u64(seed), _u64(offset), _u64(T), sel, keep, packed, nt)
        _call(K.forward_contig, (x.dtype.char, xs.flags.aligned, os_.flags.aligned), *args,
              n=x.size)
        return
    if keep_out is not None or packed_out is not None:
        mask(x.size, seed, offset, T, keep_out=keep_out, packed_out=packed_out)
        if keep_out is not None:
            _nd(x, out, mstrides, seed, offset, T, sel, keep_out, None)
        else:
            _nd(x, out, mstrides, seed, offset, T, sel, None, packed_out)
        return
    _nd(x, out, mstrides, seed, offset, T, sel, None, None)


def mask(n, seed, offset, T, keep_out=None, packed_out=None):
    """Keep bits of stream positions ``offset .. offset + n - 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastdrop.reference import threshold
    >>> packed = np.empty(4, np.uint8)
    >>> mask(32, 0, 0, threshold(0.5), packed_out=packed)
    >>> packed.tobytes().hex()
    'fd630123'
    """
    if n == 0 or (keep_out is None and packed_out is None):
        return
    K = _kernels()
    keep = keep_out if keep_out is not None else K.NO_BOOL
    packed = packed_out if packed_out is not None else K.NO_BYTES
    if _pooled():
        _run("mask", np.uint8, (n + CHUNK - 1) // CHUNK, n, (keep, packed),
             (int(n), int(seed), int(offset), int(T)))
        return
    _call(K.mask_kernel, (), np.int64(n), _u64(seed), _u64(offset), _u64(T), keep, packed,
          n=n)


def apply_mask(x, out, mstrides, scale, keep=None, packed=None, *, shift=-0.0, fill=0.0,
               fresh_out=False):
    """The affine select ``keep ? x * scale + shift : fill`` with a stored
    bool or packed mask.  With a full mask over C-contiguous ``x`` and
    ``out`` (:func:`~fastdrop._numba.kernels.apply_contig`), a float32/float64
    output of ``kernels.NT_MIN_BYTES`` or more that is not ``x``, not
    ``fresh_out`` (the fresh-output hint) and item-aligned as ``x`` is, is
    written with non-temporal stores, as in :func:`forward`; other layouts
    use ordinary stores.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(4, dtype=np.float32); out = np.empty_like(x)
    >>> apply_mask(x, out, (1,), 2.0, keep=np.array([True, False, True, True]))
    >>> out.tolist()
    [0.0, 0.0, 4.0, 6.0]
    >>> apply_mask(x, out, (1,), 2.0, packed=np.array([0b1101], np.uint8), shift=1.0,
    ...            fill=9.0)
    >>> out.tolist()
    [1.0, 9.0, 5.0, 7.0]
    """
    if x.size == 0:
        return
    sel = _select(x.dtype, scale, shift, fill)
    if x.ndim == 0:
        x, out, mstrides = x.reshape(1), out.reshape(1), (1,)
    if keep is not None:
        keep = np.ascontiguousarray(keep).reshape(-1)
    else:
        packed = np.ascontiguousarray(packed).reshape(-1)
    if _is_full(x.shape, mstrides) and x.flags.c_contiguous and out.flags.c_contiguous:
        K = _kernels()
        xs = _readonly(_storage(x).reshape(-1))
        os_ = _storage(out).reshape(-1)
        nt = (not fresh_out and out.nbytes >= K.NT_MIN_BYTES
              and out.__array_interface__["data"][0] != x.__array_interface__["data"][0])
        keep = keep if keep is not None else K.NO_BOOL
        packed = packed if packed is not None else K.NO_BYTES
        if _pooled(xs, os_):
            ab, c = _sel_arrays(sel, xs.dtype)
            _run("apply_contig", xs.dtype, (x.size + CHUNK - 1) // CHUNK, x.size,
                 (xs, os_, keep, packed, ab, c), (int(nt),), ab.dtype)
            return
        _call(K.apply_contig, (x.dtype.char, xs.flags.aligned, os_.flags.aligned),
              xs, os_, sel, keep, packed, nt, n=x.size)
        return
    _nd(x, out, mstrides, 0, 0, 0, sel, keep, packed)


#: The two ways a noise value meets ``x`` (docs/spec.md §11), as in
#: :data:`fastdrop.reference.NOISE_OPS`.
NOISE_OPS = ("mul", "add")


def noise(x, out, seed, offset, mstrides, a, b, op):
    """Gaussian dropout and noise (docs/spec.md §11): ``out = x * t``
    (``op="mul"``) or ``x + t`` (``op="add"``) with ``t = b * z + a`` in
    float64, ``z`` the normal-variate stream (§10) at position ``offset +
    i`` for the element's mask index ``i``; ``t`` and ``x`` in the compute
    type, rounded back to the dtype.  See :mod:`fastdrop._dispatch`.

    Every layout runs :func:`~fastdrop._numba.kernels.noise_nd` on the
    geometry of ``forward``'s N-d path (a C-contiguous array with a full
    mask is one axis, split into CHUNK-long tasks).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones(4, np.float32); out = np.empty_like(x)
    >>> noise(x, out, 0, 0, (1,), 1.0, 0.5, "mul")
    >>> [round(float(v), 4) for v in out]
    [0.0194, 1.281, 0.4795, 0.957]
    """
    if op not in NOISE_OPS:
        raise ValueError(f"op must be one of {NOISE_OPS}, got {op!r}")
    if x.size == 0:
        return
    K = _kernels()
    if x.ndim == 0:
        x, out, mstrides = x.reshape(1), out.reshape(1), (1,)
    if not _aligned_strides(x):
        x = np.ascontiguousarray(x)
    if not _aligned_strides(out):  # pragma: no cover - exotic views
        tmp = np.empty_like(x)
        noise(x, tmp, seed, offset, mstrides, a, b, op)
        out[...] = tmp
        return
    (shape, xs, os_, ms), _ = _geometry(x, out, mstrides)  # any axis order is a valid walk
    xf, x0 = _flat_base(_storage(x), False)
    of, o0 = _flat_base(_storage(out), True)
    if _pooled(xf, of):
        _run("noise_nd", xf.dtype, K.nd_tasks(shape, False), x.size,
             (xf, of, shape, xs, os_, ms, np.array([a, b], np.float64)),
             (int(x0), int(o0), int(seed), int(offset), int(op == "mul")))
        return
    _call(K.noise_nd, (x.dtype.char, xf.flags.aligned, of.flags.aligned),
          xf, np.int64(x0), of, np.int64(o0), shape, xs, os_, ms,
          _u64(seed), _u64(offset), np.float64(a), np.float64(b), op == "mul", n=x.size)


def stream_scale(x, out, factor):
    """``out = x * factor`` with the parallel streaming kernel (same memory
    traffic as dropout: the benchmark's bound).  1-D contiguous float32 or
    float64 arrays.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(3, dtype=np.float32); out = np.empty_like(x)
    >>> stream_scale(x, out, 2.0)
    >>> out.tolist()
    [0.0, 2.0, 4.0]
    """
    K = _kernels()
    s = x.dtype.type(factor)
    if _pooled(x, out):
        _run("stream_scale", x.dtype, (x.size + CHUNK - 1) // CHUNK, x.size,
             (x, out, np.array([s])), ())
        return
    _call(K.stream_scale, (x.dtype.char,), x, out, s, n=x.size)


def warmup(dtypes=DTYPES):
    """Compile (or load from cache) every kernel for ``dtypes`` now
    (``"bfloat16"`` only where ``ml_dtypes`` is installed).

    Returns
    -------
    dict
        :func:`compile_report` after warming up.
    """
    from .. import _bfloat16
    from ..reference import threshold

    T = threshold(0.5)
    for dt in dtypes:
        if dt == _bfloat16.NAME:
            try:
                dt = _bfloat16.dtype()
            except TypeError:  # ml_dtypes is not installed: no bfloat16 arrays
                continue
        x = np.ones((4, 4), dtype=dt)
        out = np.empty_like(x)
        forward(x, out, 1, 0, T, 2.0, (4, 1))
        forward(x, out, 1, 0, T, 2.0, (0, 1))
        apply_mask(x, out, (4, 1), 2.0, keep=np.ones(16, bool))
        noise(x, out, 1, 0, (4, 1), 1.0, 0.5, "mul")
    mask(8, 1, 0, T, keep_out=np.empty(8, bool), packed_out=np.empty(1, np.uint8))
    return compile_report()


def compile_report():
    """First-use compile (or disk-cache load) times of the Numba kernels.

    Returns
    -------
    dict
        ``numba_version``, ``runs_on`` (``"pool"``: the kernels run on
        fastdrop's worker pool; ``"numba"``: on Numba's threading layer,
        the extension not being built), ``threading_layer`` (Numba's, None
        unless a ``prange`` kernel ran), ``cache_dir`` (``NUMBA_CACHE_DIR`` or None for
        Numba's default ``__pycache__`` next to the sources), ``entries``
        (one dict per kernel specialisation: ``kernel``, ``types``,
        ``seconds``, ``source`` = "compiled" | "cache" | "import"),
        ``compile_seconds`` and ``cache_load_seconds`` (totals).

    Examples
    --------
    >>> from fastdrop._numba import backend
    >>> sorted(backend.compile_report())[:3]
    ['cache_dir', 'cache_load_seconds', 'compile_seconds']
    """
    try:
        import numba
        version = numba.__version__
        cache_dir = numba.config.CACHE_DIR or None
    except ImportError:  # pragma: no cover
        version, cache_dir = None, None
    entries = [dict(r) for r in _records]
    return {
        "numba_version": version,
        "runs_on": "pool" if _pool() is not None else "numba",
        "threading_layer": _layer,
        "cache_dir": cache_dir,
        "entries": entries,
        "compile_seconds": sum(r["seconds"] for r in entries if r["source"] == "compiled"),
        "cache_load_seconds": sum(r["seconds"] for r in entries if r["source"] == "cache"),
    }
