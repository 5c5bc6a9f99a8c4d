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
               "'matplotlib', 'scipy', 'ml_dtypes') if m in sys.modules))")
    assert out.strip() == "[]"


def test_calls_do_not_import_ml_dtypes():
    """bfloat16 is recognised by name (fastdrop._bfloat16): calls on other
    dtypes, and their dtype errors, never import ml_dtypes."""
    out = _run("import sys, numpy as np, fastdrop\n"
               "x = np.ones(70000, np.float32)\n"
               "fastdrop.dropout(x, 0.5, rng=0); fastdrop.dropout(x[::2], 0.5, rng=0)\n"
               "fastdrop.gaussian_noise(x, 0.5, rng=0)\n"
               "try:\n    fastdrop.dropout(np.ones(3, np.int32), 0.5)\n"
               "except TypeError:\n    pass\n"
               "print('ml_dtypes' in sys.modules)")
    assert out.strip() == "False"


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
