"""CUDA backend (Numba CUDA kernels) and the GPU-array front end.

Nothing here is imported by ``import fastdrop``: :mod:`fastdrop._api`
imports :mod:`fastdrop._cuda.frontend` only when it meets a GPU array, and
the kernels (:mod:`fastdrop._cuda.kernels`) are compiled on first use per
dtype.  This package's ``__init__`` imports nothing from Numba.

Examples
--------
>>> from fastdrop import _cuda
>>> sorted(_cuda.info())[:3]
['available', 'devices', 'driver_version']
"""

from __future__ import annotations

__all__ = ["info"]


def _version(fn):
    try:
        v = fn()
    except Exception:
        return None
    if isinstance(v, tuple):
        return ".".join(str(int(p)) for p in v)
    return str(v)


def info():
    """What CUDA fastdrop can see, for ``fastdrop info``.

    Returns
    -------
    dict
        ``available`` (bool), ``reason`` (why not, or ""), ``simulator``
        (Numba's CUDA simulator is on), ``devices`` (list of dicts with
        ``id``, ``name``, ``compute_capability``, ``multiprocessors``,
        ``memory_bytes``), ``driver_version`` and ``runtime_version``
        (CUDA versions as strings, or None when unknown), ``numba_cuda``
        (version of the numba-cuda package, or None).

    Examples
    --------
    >>> from fastdrop._cuda import info
    >>> d = info()
    >>> isinstance(d["available"], bool) and isinstance(d["devices"], list)
    True
    """
    out = {"available": False, "reason": "", "simulator": False, "devices": [],
           "driver_version": None, "runtime_version": None, "numba_cuda": None}
    try:
        from importlib.metadata import version

        out["numba_cuda"] = version("numba-cuda")
    except Exception:
        pass
    try:
        from numba import cuda
    except Exception as e:
        out["reason"] = f"numba.cuda cannot be imported: {e}"
        return out
    try:
        from ._interop import SIMULATOR
    except Exception:
        SIMULATOR = False
    out["simulator"] = bool(SIMULATOR)
    try:
        ok = bool(cuda.is_available())
    except Exception as e:
        out["reason"] = f"CUDA initialisation failed: {e}"
        return out
    out["available"] = ok
    if not ok:
        err = None
        try:
            err = cuda.cuda_error()
        except Exception:
            pass
        out["reason"] = (f"no usable CUDA GPU: {' '.join(str(err).split())}" if err
            else "no usable CUDA GPU")
        return out
    if SIMULATOR:
        out["devices"] = [{"id": 0, "name": "Numba CUDA simulator",
                           "compute_capability": None, "multiprocessors": None,
                           "memory_bytes": None}]
        return out
    try:
        from numba.cuda.cudadrv import driver

        out["driver_version"] = _version(driver.driver.get_version)
    except Exception:
        pass
    out["runtime_version"] = _version(cuda.runtime.get_version)
    try:
        for dev in cuda.list_devices():
            entry = {"id": int(dev.id), "name": None, "compute_capability": None,
                     "multiprocessors": None, "memory_bytes": None}
            try:
                with dev:
                    d = cuda.get_current_device()
                    name = d.name
                    entry["name"] = name.decode() if isinstance(name, bytes) else str(name)
                    entry["compute_capability"] = ".".join(map(str, d.compute_capability))
                    entry["multiprocessors"] = int(d.MULTIPROCESSOR_COUNT)
                    entry["memory_bytes"] = int(cuda.current_context().get_memory_info()[1])
            except Exception as e:  # a device we cannot open: say why
                entry["error"] = str(e)
            out["devices"].append(entry)
    except Exception as e:
        out["reason"] = f"listing devices failed: {e}"
    return out
