"""Root conftest: skip collecting optional-dependency modules (for doctests)
when the dependency is not installed."""

import importlib.util

collect_ignore = ["setup.py"]
if importlib.util.find_spec("torch") is None:
    collect_ignore += ["fastdrop/torch.py", "fastdrop/adapters/torch.py"]
if importlib.util.find_spec("dask") is None:
    collect_ignore += ["fastdrop/dask.py", "fastdrop/adapters/dask.py"]
if importlib.util.find_spec("jax") is None:
    collect_ignore += ["fastdrop/jax.py", "fastdrop/adapters/jax.py"]
# Keras picks its backend at import (keras.json may name one that is not
# installed): tests/test_keras.py runs these modules' doctests in one
# subprocess per installed backend instead.
collect_ignore += ["fastdrop/keras.py", "fastdrop/adapters/keras.py"]
if importlib.util.find_spec("numba") is None:  # these import Numba or run its kernels
    collect_ignore += ["fastdrop/numba.py", "fastdrop/_numba/kernels.py",
                       "fastdrop/_numba/llvm.py", "fastdrop/_numba/backend.py",
                       "fastdrop/_cuda/_interop.py", "fastdrop/_cuda/frontend.py",
                       "fastdrop/_cuda/kernels.py"]
