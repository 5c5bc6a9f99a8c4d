"""The optional dependencies: which extra of ``fastdrop-kernels`` installs
each, and the error a module that needs a missing one raises.

Nothing here imports an optional package: they are looked up with
:func:`importlib.util.find_spec`.

Examples
--------
>>> from fastdrop._extras import install_command
>>> install_command("torch")
'pip install "fastdrop-kernels[torch]"'
"""

from __future__ import annotations

import importlib.util

__all__ = ["ADAPTERS", "install_command", "is_installed", "require", "adapters_info"]

#: The optional public modules: module -> (import name it needs, distribution, extra).
ADAPTERS: dict[str, tuple[str, str, str]] = {
    "fastdrop.numba": ("numba", "numba", "numba"),
    "fastdrop.torch": ("torch", "torch", "torch"),
    "fastdrop.dask": ("dask", "dask", "dask"),
    "fastdrop.jax": ("jax", "jax", "jax"),
    "fastdrop.keras": ("keras", "keras", "keras"),
}


def install_command(extra: str) -> str:
    """The pip command that installs one of the package's extras."""
    return f'pip install "fastdrop-kernels[{extra}]"'


def is_installed(module: str) -> bool:
    """Whether the top-level ``module`` can be imported (without importing it).

    Examples
    --------
    >>> is_installed("numpy")
    True
    """
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str, user: str) -> None:
    """Raise :class:`ModuleNotFoundError` (so ``pytest.importorskip`` skips)
    when ``module`` is not installed: ``user`` needs it and ``extra`` brings it.

    Examples
    --------
    >>> require("numpy", "numpy", "fastdrop")
    >>> try:
    ...     require("nope", "x", "fastdrop.x")
    ... except ModuleNotFoundError as e:
    ...     print(e)
    fastdrop.x needs nope, which is not installed: pip install "fastdrop-kernels[x]"
    """
    if not is_installed(module):
        raise ModuleNotFoundError(
            f"{user} needs {module}, which is not installed: {install_command(extra)}",
            name=module)


def adapters_info() -> dict[str, dict[str, object]]:
    """For ``fastdrop info``: each optional module, whether the package it
    needs is installed, and if not the command that installs it."""
    out: dict[str, dict[str, object]] = {}
    for name, (module, _dist, extra) in ADAPTERS.items():
        ok = is_installed(module)
        out[name] = {"available": ok,
                     "reason": "" if ok else
                     f"{module} is not installed: {install_command(extra)}"}
    return out
