"""Root conftest: skip collecting optional-dependency modules (for doctests)
when the dependency is not installed."""

import importlib.util

collect_ignore = ["setup.py"]
if importlib.util.find_spec("torch") is None:
    collect_ignore += ["fastdrop/torch.py", "fastdrop/adapters/torch.py"]
if importlib.util.find_spec("dask") is None:
    collect_ignore += ["fastdrop/dask.py", "fastdrop/adapters/dask.py"]
if importlib.util.find_spec("jax") is None:
    collect_ignore += ["fastdrop/jax.py", "fastdrop/adapters/jax.py", "bench/jax_dropout.py"]
