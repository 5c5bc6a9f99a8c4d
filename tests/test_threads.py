"""The default thread count without OpenMP: threadpoolctl's limit, else
``OMP_NUM_THREADS`` (OpenMP's syntax), else the usable CPUs, read at call
time (``fastdrop/_cython/threads.h``, ``fastdrop/_config.py``), and
fastdrop's threadpoolctl controller (``fastdrop/_threadpool.py``), registered
whichever of fastdrop and threadpoolctl is imported first, without
``import fastdrop`` importing threadpoolctl.

Most checks run in a fresh interpreter: the import order, the environment
and the registration are per process."""

import os
import subprocess
import sys
import textwrap

import pytest

import fastdrop
from fastdrop import _config

K = pytest.importorskip("fastdrop._cython._kernels")


def _run(code, env=None, args=()):
    """Run ``code`` in a fresh interpreter (the environment: this one's, with
    ``env``'s entries set, or removed where None); returns its stdout."""
    e = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    r = subprocess.run([sys.executable, *args, "-c", textwrap.dedent(code)], env=e,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _tpc():
    return pytest.importorskip("threadpoolctl", minversion="3.5")


# ------------------------------------------------------------ OMP_NUM_THREADS

#: OMP_NUM_THREADS values and the count OpenMP (libgomp) takes from them;
#: None: rejected, the default applies.
OMP_VALUES = [("1", 1), ("3,2", 3), (" 4 ", 4), ("+3", 3), ("3 , 2", 3),
              ("0", None), ("-1", None), ("abc", None), ("3,x", None), ("3,", None),
              ("2.5", None), ("1e2", None), ("", None), ("3 2", None),
              ("99999999999999999999999", None), ("99999999999", 2**31 - 1)]


@pytest.mark.parametrize("value, want", OMP_VALUES)
def test_omp_num_threads_parser(value, want):
    assert _config.omp_num_threads(value) == want


def test_extension_reads_omp_num_threads_at_call_time():
    # the C parser (threads.h), the variable changed in the running process
    out = _run(f"""
        import os
        from fastdrop._cython import _kernels
        cpus = len(os.sched_getaffinity(0))
        for value, want in {OMP_VALUES!r}:
            os.environ["OMP_NUM_THREADS"] = value
            got = _kernels.default_threads()
            assert got == (want or cpus), (value, got, want, cpus)
        print("ok")
        """, env={"OMP_NUM_THREADS": None})
    assert out.split() == ["ok"]


@pytest.mark.parametrize("value, want", [("1", 1), ("3,2", 3), ("abc", None), ("0", None)])
def test_default_threads_follow_omp_num_threads(value, want):
    out = _run("""
        import os, fastdrop
        print(fastdrop.get_num_threads(), len(os.sched_getaffinity(0)))
        """, env={"OMP_NUM_THREADS": value})
    n, cpus = map(int, out.split())
    assert n == (want or cpus)


def test_default_threads_are_the_usable_cpus():
    out = _run("""
        import os, fastdrop
        cpus = sorted(os.sched_getaffinity(0))
        print(fastdrop.get_num_threads(), len(cpus))
        os.sched_setaffinity(0, cpus[:1])   # read at call time
        print(fastdrop.get_num_threads())
        """, env={"OMP_NUM_THREADS": None})
    n, cpus, pinned = map(int, out.split())
    assert n == cpus and pinned == 1


def test_python_fallback_without_the_extension(monkeypatch):
    # the default when the extension is not loaded: the same rules in Python
    monkeypatch.setattr(_config, "_extension_threads", None)
    monkeypatch.setattr(_config, "_num_threads", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "3,1")
    assert fastdrop.get_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "three")
    assert fastdrop.get_num_threads() == len(os.sched_getaffinity(0))


# ------------------------------------------------------------ threadpoolctl

#: In a child: the controller's entry in threadpool_info(), then the thread
#: count inside threadpool_limits(1), (1, "openmp"), (1, "blas") and after.
_LIMITS = """
    import json, os
    info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastdrop"]
    got = {"info": info, "file": fastdrop._cython._kernels.__file__,
           "before": fastdrop.get_num_threads()}
    with threadpoolctl.threadpool_limits(1):
        got["all"] = fastdrop.get_num_threads()
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        got["openmp"] = fastdrop.get_num_threads()
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        got["blas"] = fastdrop.get_num_threads()
    got["after"] = fastdrop.get_num_threads()
    got["limit_after"] = fastdrop._cython._kernels.threadpool_limit()
    print(json.dumps(got))
"""


@pytest.mark.parametrize("first", ["fastdrop", "threadpoolctl"])
def test_threadpoolctl_sees_fastdrop_in_either_import_order(first):
    _tpc()
    second = "threadpoolctl" if first == "fastdrop" else "fastdrop"
    import json

    out = _run(f"import {first}\nimport {second}\nimport fastdrop._cython._kernels\n"
               + textwrap.dedent(_LIMITS), env={"OMP_NUM_THREADS": "2"})
    got = json.loads(out)
    (info,) = got["info"]
    assert info["user_api"] == "openmp" and info["internal_api"] == "fastdrop"
    assert info["num_threads"] == 2 and info["version"] == fastdrop.__version__
    assert os.path.samefile(info["filepath"], got["file"])
    assert got["before"] == 2
    assert got["all"] == 1 and got["openmp"] == 1   # limits on OpenMP libraries apply
    assert got["blas"] == 2                          # limits on BLAS alone do not
    assert got["after"] == 2 and got["limit_after"] is None


def test_threadpoolctl_hook_registers_once_and_leaves():
    _tpc()
    out = _run("""
        import sys
        import fastdrop
        from fastdrop import _threadpool
        hooks = lambda: sum(isinstance(f, _threadpool._Finder) for f in sys.meta_path)
        print("threadpoolctl" in sys.modules, hooks())
        import threadpoolctl
        print(hooks(), threadpoolctl.__spec__.loader is threadpoolctl.__loader__,
              type(threadpoolctl.__loader__).__name__ != "_Loader")
        _threadpool.install()   # the extension loaded again: no second controller
        print(sum(i["internal_api"] == "fastdrop" for i in threadpoolctl.threadpool_info()))
        """)
    assert out.split() == ["False", "1", "0", "True", "True", "1"]


def test_limit_block_restores_no_limit():
    _tpc()
    out = _run("""
        import os, threadpoolctl, fastdrop
        from fastdrop._cython import _kernels as K
        got = []
        with threadpoolctl.threadpool_limits(3):
            got.append((K.threadpool_limit(), fastdrop.get_num_threads()))
            with threadpoolctl.threadpool_limits(1):
                got.append((K.threadpool_limit(), fastdrop.get_num_threads()))
            got.append((K.threadpool_limit(), fastdrop.get_num_threads()))
        got.append((K.threadpool_limit(), fastdrop.get_num_threads()))
        # a limit equal to the default count (4) sets none: the same count
        with threadpoolctl.threadpool_limits(4):
            got.append((K.threadpool_limit(), fastdrop.get_num_threads()))
        # after the blocks, the default follows OMP_NUM_THREADS again (the
        # count at a block's start is not left behind as a limit)
        os.environ["OMP_NUM_THREADS"] = "5"
        got.append((K.threadpool_limit(), fastdrop.get_num_threads()))
        print(got)
        """, env={"OMP_NUM_THREADS": "4"})
    assert out.strip() == str([(3, 3), (1, 1), (3, 3), (None, 4), (None, 4), (None, 5)])


def test_exported_c_functions_by_ctypes():
    import ctypes

    lib = ctypes.CDLL(K.__file__)
    old = fastdrop.set_num_threads(None)
    try:
        lib.fastdrop_threadpool_set_num_threads(3)
        assert lib.fastdrop_threadpool_get_limit() == 3
        assert lib.fastdrop_threadpool_get_num_threads() == 3 == fastdrop.get_num_threads()
        lib.fastdrop_threadpool_set_num_threads(0)
        assert K.threadpool_limit() is None
        assert lib.fastdrop_threadpool_get_num_threads() == K.default_threads()
    finally:
        lib.fastdrop_threadpool_set_num_threads(0)
        fastdrop.set_num_threads(old)


def test_import_is_warning_free_and_does_not_import_threadpoolctl():
    _tpc()
    out = _run("""
        import sys
        import fastdrop, fastdrop._cython._kernels
        print("threadpoolctl" in sys.modules)
        """, args=("-W", "error"))
    assert out.split() == ["False"]
    r = subprocess.run([sys.executable, "-W", "error", "-c", "import fastdrop"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr
