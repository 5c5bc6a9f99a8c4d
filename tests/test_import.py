"""`import fastdrop` compiles nothing and pulls in no optional dependency."""

import subprocess
import sys

import fastdrop


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout


def test_import_is_light():
    out = _run("import sys, fastdrop; "
               "print(sorted(m for m in ('numba', 'llvmlite', 'torch', 'dask', 'cupy', "
               "'matplotlib', 'scipy') if m in sys.modules))")
    assert out.strip() == "[]"


def test_public_api():
    for name in fastdrop.__all__:
        assert hasattr(fastdrop, name), name
    assert fastdrop.MASK_STREAM_VERSION == 1


def test_openmp_reported():
    assert fastdrop.openmp_enabled() in (True, False)
    try:
        from fastdrop._cython import _kernels
    except ImportError:
        assert fastdrop.openmp_enabled() is False
    else:
        assert fastdrop.openmp_enabled() == bool(_kernels.openmp_enabled())
