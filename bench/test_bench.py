"""pytest-benchmark suite over fastdrop's comparison table.

Each operation of :data:`fastdrop._comparisons.COMPARISONS` is timed on
every available fastdrop CPU backend, the NumPy idioms, PyTorch (when
installed) and a streaming ceiling ``y = x * s`` moving the same bytes.
Benchmarks are grouped by operation, dtype and size, and each records the
bytes it moves in ``extra_info`` (GB/s = bytes / time).

Run ``pytest bench`` for timings, ``pytest bench --benchmark-disable`` for a
one-call smoke test (CI).  By default one small size is used; ask for real
sizes with environment variables::

    FASTDROP_BENCH_SIZES=1e6,1e7 FASTDROP_BENCH_DTYPES=float32,float64 pytest bench --benchmark-enable

``FASTDROP_BENCH_P`` sets the drop probability (default 0.5).  The
``fastdrop bench`` command (same table, same run ratios) is the richer tool.
"""

import os

import numpy as np
import pytest

import fastdrop
from fastdrop._comparisons import COMPARISONS, Case


def _env_list(name, default, parse):
    text = os.environ.get(name, "").strip()
    return [parse(t.strip()) for t in (text or default).split(",") if t.strip()]


SIZES = _env_list("FASTDROP_BENCH_SIZES", "1e4", lambda t: int(float(t)))
DTYPES = _env_list("FASTDROP_BENCH_DTYPES", "float32", lambda t: np.dtype(t).name)
P = float(os.environ.get("FASTDROP_BENCH_P", "0.5"))

_INFO = fastdrop.get_backends()
_CPU = [name for name, b in _INFO.items() if b["available"] and name != "cuda"]

@pytest.fixture(scope="session")
def case_cache():
    """Inputs shared by every benchmark of a (size, dtype, p): allocated once."""
    cache = {}

    def get(n, dtype, p):
        key = (n, dtype, p)
        if key not in cache:
            cache.clear()  # keep at most one size in memory
            cache[key] = Case(n, dtype, p=p, seed=12345)
        return cache[key]

    return get


try:
    import torch
except ImportError:  # optional
    torch = None


def _impls(cmp):
    out = [("fastdrop", name) for name in _CPU]
    out += [("numpy", idiom) for idiom in cmp.numpy]
    if torch is not None and cmp.torch is not None:
        out.append(("torch", "torch"))
    out.append(("ceiling", "stream"))
    return out


_PARAMS = [
    pytest.param(cmp, kind, name, n, dt, id=f"{cmp.name}-{name}-{dt}-{n:g}")
    for cmp in COMPARISONS
    for n in SIZES
    for dt in DTYPES
    for kind, name in _impls(cmp)
]


def _stream_kernel():
    for mod_name in ("fastdrop._cython._kernels", "fastdrop._numba.kernels"):
        try:
            mod = __import__(mod_name, fromlist=["stream_scale"])
            fn = mod.stream_scale
            x = np.ones(16, np.float32)
            fn(x, np.empty_like(x), 2.0)
            return fn
        except Exception:  # noqa: BLE001 - backend not built
            continue
    return lambda x, y, s: np.multiply(x, s, out=y)


@pytest.mark.parametrize("cmp,kind,name,n,dtype", _PARAMS)
def test_bench(benchmark, case_cache, cmp, kind, name, n, dtype):
    case = case_cache(n, dtype, P)
    if kind == "fastdrop" and dtype not in _INFO[name]["dtypes"]:
        pytest.skip(f"{name} does not support {dtype}")
    nbytes = cmp.bytes_moved(n, case.dtype.itemsize)
    benchmark.group = f"{cmp.name} {dtype} n={n:g}"
    benchmark.extra_info.update(op=cmp.name, kind=kind, impl=name, size=n, dtype=dtype,
                                bytes=nbytes)
    if kind == "fastdrop":
        fn = lambda: cmp.fastdrop(case, name)  # noqa: E731
    elif kind == "numpy":
        idiom = cmp.numpy[name]
        fn = lambda: idiom(case)  # noqa: E731
    elif kind == "torch":
        t = type("T", (), {})()
        t.x, t.keep = torch.from_numpy(case.x), torch.from_numpy(case.keep)
        fn = lambda: cmp.torch(torch, t, case.p, case.scale)  # noqa: E731
    else:
        m = max(1, int(np.ceil(nbytes / 8)))  # float32: 4 bytes read + 4 written
        x, y = np.ones(m, np.float32), np.ones(m, np.float32)
        stream = _stream_kernel()
        fn = lambda: stream(x, y, 1.5)  # noqa: E731
    with np.errstate(all="ignore"):
        result = benchmark(fn)
    if kind == "fastdrop" and n <= 10 ** 6:  # the timed call computed the right thing
        expected = cmp.reference(case)
        got = result if isinstance(result, tuple) else (result,)
        exp = expected if isinstance(expected, tuple) else (expected,)
        for g, e in zip(got, exp):
            np.testing.assert_array_equal(g, e)
