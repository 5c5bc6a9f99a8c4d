"""The Cython backend's worker pool (fastdrop/_cython/pool.h): results do not
depend on who runs which chunk, concurrent callers, a forked child, and the
number of workers started.  Timing on a busy machine is a benchmark
(bench/busy_threads.py), not a test."""

import multiprocessing as mp
import os
import sys
import threading

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fastdrop
from fastdrop._config import CHUNK as _CHUNK
from conftest import bits

pytest.importorskip("fastdrop._cython._kernels")

N = 5 * _CHUNK + 123   # several chunks, a short last one


@pytest.fixture
def two_threads():
    old = fastdrop.set_num_threads(2)
    yield
    fastdrop.set_num_threads(old)


def _want(x, seed, p=0.3):
    return fastdrop.dropout(x, p, rng=seed, backend="reference")


def test_concurrent_callers(two_threads):
    """Python threads calling at once (the GIL released): one job runs on the
    pool, the others on their own threads; every result exact."""
    x = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    seeds = list(range(8))
    want = {s: _want(x, s) for s in seeds}
    got, errors = {}, []

    def work(s):
        try:
            for _ in range(5):
                got[s] = fastdrop.dropout(x, 0.3, rng=s, backend="cython")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    for s in seeds:
        assert_array_equal(bits(got[s]), bits(want[s]))


def _child(q):
    x = np.arange(N, dtype=np.float32)
    fastdrop.set_num_threads(2)
    q.put(bits(fastdrop.dropout(x, 0.3, rng=5, backend="cython")).tobytes())


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method: Linux")
def test_forked_child_runs_parallel_calls(two_threads):
    """Workers started in the parent do not exist in a forked child: its
    parallel calls start their own (no hang, same numbers)."""
    x = np.arange(N, dtype=np.float32)
    want = bits(fastdrop.dropout(x, 0.3, rng=5, backend="cython"))  # parent's pool up
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    try:
        got = q.get(timeout=60)
    finally:
        p.join(timeout=60)
    assert p.exitcode == 0
    assert got == want.tobytes()


_COUNT = r"""
import os, numpy as np, fastdrop
x = np.ones({n}, np.float32)
def tasks():
    return len(os.listdir("/proc/self/task"))
fastdrop.set_num_threads(1)
fastdrop.dropout(x, 0.5, rng=1, backend="cython")
base = tasks()
counts = []
for k in (3, 2, 3, 4):
    fastdrop.set_num_threads(k)
    fastdrop.dropout(x, 0.5, rng=1, backend="cython")
    counts.append(tasks() - base)
print(counts)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc (Linux)")
def test_workers_started_follow_thread_count():
    """In a fresh process: k threads start k - 1 workers, kept for later
    calls; a smaller count starts none."""
    import subprocess
    r = subprocess.run([sys.executable, "-c", _COUNT.format(n=N)], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[2, 2, 2, 3]"


def test_exact_with_more_threads_than_chunks():
    x = np.random.default_rng(1).standard_normal(_CHUNK + 5).astype(np.float64)
    old = fastdrop.set_num_threads(16)
    try:
        y = fastdrop.dropout(x, 0.7, rng=9, backend="cython")
    finally:
        fastdrop.set_num_threads(old)
    assert_array_equal(bits(y), bits(_want(x, 9, 0.7)))


_FTZ = r"""
import ctypes, threading, numpy as np, fastdrop
libm = ctypes.CDLL("libm.so.6")
env = (ctypes.c_uint32 * 8)()          # glibc x86-64 fenv_t: x87 env, then MXCSR
assert libm.fegetenv(env) == 0
env[7] |= 0x8040                        # MXCSR FTZ | DAZ
x = np.full({n}, 3e-39, np.float32)     # subnormal inputs, subnormal results
want = fastdrop.dropout(x, 0.25, rng=3, backend="reference")
fastdrop.set_num_threads(2)
got = {{}}
def flushing():
    assert libm.fesetenv(env) == 0
    # the environment took effect here: NumPy's own multiply flushes
    got["numpy"] = float(np.multiply(x[:1], np.float32(1.5))[0])
    got["ftz"] = fastdrop.dropout(x, 0.25, rng=3, backend="cython")   # starts the workers
t = threading.Thread(target=flushing)
t.start(); t.join()
got["main"] = fastdrop.dropout(x, 0.25, rng=3, backend="cython")
print(got["numpy"] == 0.0,
      np.array_equal(got["ftz"].view(np.uint32), want.view(np.uint32)),
      np.array_equal(got["main"].view(np.uint32), want.view(np.uint32)))
"""


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64",
                    reason="sets MXCSR through glibc's x86-64 fenv_t")
def test_flush_to_zero_threads_get_exact_results():
    """A caller that flushes subnormals to zero (as XLA's threads do) gets
    exact results, and so do later callers of the workers it started."""
    import subprocess
    r = subprocess.run([sys.executable, "-c", _FTZ.format(n=N)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True"]


# ---------------------------------------------------------------------------
# run_tasks: foreign task functions (the Numba backend's cfuncs) on the pool
# ---------------------------------------------------------------------------

def _recorder():
    """A ctypes task function recording (t, ints[0], size[0], thread)."""
    import ctypes

    seen = []
    lock = threading.Lock()

    @ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
    def task(ctx, t):
        slots = ctypes.cast(ctx, ctypes.POINTER(ctypes.c_int64))
        with lock:
            seen.append((t, slots[32], slots[16], threading.get_ident()))

    return task, ctypes.cast(task, ctypes.c_void_p).value, seen


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_run_tasks_runs_each_task_once(threads):
    from fastdrop._cython._kernels import run_tasks

    task, fn, seen = _recorder()
    a = np.zeros(7, np.float32)
    run_tasks(fn, 40, threads, (a,), (2**64 - 1,))
    assert sorted(s[0] for s in seen) == list(range(40))
    assert {s[1] for s in seen} == {-1}  # a uint64 travels as its bits
    assert {s[2] for s in seen} == {7}


def test_run_tasks_bad_arguments_run_nothing():
    from fastdrop._cython._kernels import TASK_SLOTS, run_tasks

    task, fn, seen = _recorder()
    a = np.zeros(8)
    with pytest.raises(ValueError, match="null"):
        run_tasks(0, 1, 1, (), ())
    with pytest.raises(ValueError, match="at most"):
        run_tasks(fn, 1, 1, (a,) * (TASK_SLOTS + 1), ())
    with pytest.raises(ValueError, match="at most"):
        run_tasks(fn, 1, 1, (), (0,) * (TASK_SLOTS + 1))
    with pytest.raises(ValueError, match="C-contiguous"):
        run_tasks(fn, 1, 1, (a[::2],), ())
    with pytest.raises(TypeError):
        run_tasks(fn, 1, 1, ([1.0],), ())
    with pytest.raises(OverflowError):
        run_tasks(fn, 1, 1, (), (2**64,))
    run_tasks(fn, 0, 2, (a,), ())
    assert seen == []


def test_stalled_worker_makes_small_jobs_serial_for_a_while():
    """A worker that holds a task far longer than the caller ran its own (as a
    worker the OS preempted on a busy machine does), twice within 100 ms,
    makes the pool run jobs of at most 16 tasks on the calling thread for the
    next 100 ms (pool.h, FD_POOL_HOLD_*); one such stall does not; after the
    100 ms, workers take tasks again."""
    import ctypes
    import time

    from fastdrop._cython._kernels import run_tasks

    main = threading.get_ident()
    who = []

    def make(caller_s, worker_s):
        @ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
        def task(ctx, t):
            me = threading.get_ident()
            who.append(me)
            time.sleep(caller_s if me == main else worker_s)
        return task, ctypes.cast(task, ctypes.c_void_p).value

    # the worker's task takes 40 ms, the caller's 1 ms: a stall, even when a
    # busy machine delays the caller by a few ms
    stall, fn_stall = make(0.001, 0.04)
    even, fn_even = make(0.003, 0.003)

    def stalled():
        for _ in range(20):
            who.clear()
            run_tasks(fn_stall, 2, 2, (), ())
            if set(who) != {main}:
                return
        raise AssertionError("no worker ever took a task")

    time.sleep(0.15)                       # no stall or hold left by earlier tests
    stalled()
    who.clear()
    run_tasks(fn_even, 8, 2, (), ())       # one stall: no hold
    assert len(who) == 8 and set(who) != {main}

    stalled()                              # the second within 100 ms: a hold
    who.clear()
    run_tasks(fn_even, 17, 2, (), ())      # more than 16 tasks: never held
    assert len(who) == 17 and set(who) != {main}
    who.clear()
    run_tasks(fn_even, 8, 2, (), ())       # within the hold: the caller alone
    assert who == [main] * 8

    time.sleep(0.15)                       # the hold is over
    who.clear()
    run_tasks(fn_even, 8, 2, (), ())
    assert len(who) == 8 and set(who) != {main}
