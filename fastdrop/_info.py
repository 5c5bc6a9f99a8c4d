"""Machine and library information for ``fastdrop info`` and ``fastdrop bench``.

Nothing here imports an optional dependency unless asked: library versions
come from the installed distributions' metadata, the CPU model from
``/proc/cpuinfo`` (or py-cpuinfo, which is slower, when ``detailed=True``),
and Numba is only queried when it is already loaded.

Examples
--------
>>> from fastdrop._info import library_versions
>>> "numpy" in library_versions()
True
"""

from __future__ import annotations

import importlib
import importlib.util
import importlib.metadata as md
import os
import platform
import sys

import numpy as np

import fastdrop
from fastdrop._extras import adapters_info, install_command, is_installed

__all__ = [
    "library_versions",
    "cpu_info",
    "threads_info",
    "numba_info",
    "gpu_info",
    "machine_info",
    "collect_info",
    "format_info",
]

#: Distributions whose versions are reported (import name -> distribution).
_DISTS = {
    "numba": "numba",
    "llvmlite": "llvmlite",
    "torch": "torch",
    "cupy": ("cupy", "cupy-cuda12x", "cupy-cuda11x", "cupy-cuda13x"),
    "numba-cuda": "numba-cuda",
    "dask": "dask",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "py-cpuinfo": "py-cpuinfo",
    "Cython": "Cython",
}

#: CPU features worth knowing for fastdrop's kernels.
CPU_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                "avx512vl", "avx512dq")


def _dist_version(names):
    if isinstance(names, str):
        names = (names,)
    for name in names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    return None


def library_versions():
    """Versions of fastdrop, Python, NumPy and the optional libraries.

    Optional libraries that are not installed map to ``None``.  Nothing is
    imported to find out.

    Returns
    -------
    dict
        ``name -> version string or None``.

    Examples
    --------
    >>> v = library_versions()
    >>> v["fastdrop"] == __import__("fastdrop").__version__
    True
    """
    out = {
        "fastdrop": fastdrop.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for key, dist in _DISTS.items():
        out[key] = _dist_version(dist)
    return out


def _proc_cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None, set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = val.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(val.split())
    return model, flags


def cpu_info(detailed=False):
    """CPU model, core counts and the instruction-set features fastdrop cares about.

    Parameters
    ----------
    detailed : bool, default False
        Use py-cpuinfo when it is installed (about a second slower); else
        read ``/proc/cpuinfo`` (Linux) or :func:`platform.processor`.

    Returns
    -------
    dict
        ``model``, ``logical_cpus``, ``usable_cpus`` (this process's
        affinity), ``arch``, ``features`` (name -> bool) and ``source``.

    Examples
    --------
    >>> info = cpu_info()
    >>> info["usable_cpus"] >= 1
    True
    """
    model, flags, source = None, set(), None
    if detailed:
        try:
            import cpuinfo  # py-cpuinfo

            d = cpuinfo.get_cpu_info()
            model = d.get("brand_raw") or None
            flags = set(d.get("flags", ()))
            source = "py-cpuinfo"
        except Exception:  # noqa: BLE001 - not installed or failed: fall back
            model, flags = None, set()
    if model is None and not flags:
        model, flags = _proc_cpuinfo()
        source = "/proc/cpuinfo" if (model or flags) else None
    if not model:
        model = platform.processor() or platform.machine() or "unknown"
        source = source or "platform"
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        usable = os.cpu_count() or 1
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "features": {f: (f in flags) for f in CPU_FEATURES} if flags else {},
        "source": source,
    }


def numba_runs_on(nb, cython_isa):
    """Where the Numba backend's kernels run, in words: fastdrop's worker
    pool when the compiled extension is built (``cython_isa``, its ISA leaf),
    else Numba's threading layer (``nb``: :func:`numba_info`).

    Examples
    --------
    >>> numba_runs_on({}, "avx2")
    "kernels run on fastdrop's worker pool"
    """
    if cython_isa:
        return "kernels run on fastdrop's worker pool"
    layer = nb["threading_layer"] or (
        f"not initialised yet (configured: {nb['threading_layer_config']})")
    return (f"threading layer {layer}"
            + (f", {nb['num_threads']} threads" if nb["num_threads"] else "")
            + " (the compiled extension's worker pool is not built)")


def threads_info():
    """The thread counts fastdrop uses and where the default comes from.

    ``fastdrop_threads`` is :func:`fastdrop.get_num_threads`; ``set`` the
    count :func:`fastdrop.set_num_threads` set (None: the default);
    ``threadpool_limit`` threadpoolctl's limit (None: none); ``usable_cpus``
    the CPUs this process may run on; ``openmp`` whether the extension was
    built with OpenMP (Windows only: its worker pool runs on OpenMP threads
    there, on POSIX threads elsewhere).

    Examples
    --------
    >>> threads_info()["fastdrop_threads"] >= 1
    True
    """
    from . import _config

    env = os.environ.get("OMP_NUM_THREADS")
    info = {
        "openmp": bool(fastdrop.openmp_enabled()),
        "fastdrop_threads": fastdrop.get_num_threads(),
        "set": _config._num_threads,
        "threadpool_limit": None,
        "OMP_NUM_THREADS": env,
        "OMP_NUM_THREADS_valid": None if env is None else _config.omp_num_threads(env) is not None,
        "usable_cpus": _config._usable_cpus(),
        "cython_isa": None,
    }
    try:
        from fastdrop._cython import _kernels

        info["threadpool_limit"] = _kernels.threadpool_limit()
        info["cython_isa"] = _kernels.isa()
    except Exception:  # noqa: BLE001 - extension missing or older build
        pass
    return info


def _threads_line(t):
    """The ``threads:`` line of :func:`format_info`: the count and its source.

    Examples
    --------
    >>> _threads_line({"fastdrop_threads": 2, "set": None, "threadpool_limit": None,
    ...     "OMP_NUM_THREADS": "2,1", "OMP_NUM_THREADS_valid": True, "usable_cpus": 8,
    ...     "openmp": False})
    'threads: fastdrop uses 2 (OMP_NUM_THREADS=2,1); worker pool: POSIX threads'
    """
    env = t["OMP_NUM_THREADS"]
    if t["set"] is not None:
        why = "fastdrop.set_num_threads"
    elif t["threadpool_limit"] is not None:
        why = "threadpoolctl limit"
    elif env is not None and t["OMP_NUM_THREADS_valid"]:
        why = f"OMP_NUM_THREADS={env}"
    else:
        why = f"{t['usable_cpus']} usable CPUs" + (
            f"; OMP_NUM_THREADS={env!r} ignored: not valid" if env is not None else "")
    pool = ("OpenMP threads" if t["openmp"] else "serial") if sys.platform == "win32" \
        else "POSIX threads"
    return f"threads: fastdrop uses {t['fastdrop_threads']} ({why}); worker pool: {pool}"


def numba_info():
    """Numba's threading layer and cache directory, without importing Numba.

    The threading layer is read from Numba only when Numba is already
    loaded (and it is known only after a parallel kernel ran); otherwise the
    configuration (``NUMBA_THREADING_LAYER``) is reported.

    Examples
    --------
    >>> sorted(numba_info())[:2]
    ['cache_dir', 'installed']
    """
    env_cache = os.environ.get("NUMBA_CACHE_DIR")
    try:
        spec = importlib.util.find_spec("fastdrop._numba")
        numba_src = os.path.dirname(spec.origin) if spec and spec.origin else None
    except (ImportError, ValueError):
        numba_src = None
    if env_cache:
        cache_dir = f"{env_cache} (NUMBA_CACHE_DIR)"
    elif numba_src:
        cache_dir = f"{os.path.join(numba_src, '__pycache__')} (default: beside the sources)"
    else:
        cache_dir = "default (__pycache__ beside the sources)"
    info = {
        "installed": is_installed("numba"),
        "loaded": "numba" in sys.modules,
        "cache_dir": cache_dir,
        "threading_layer": None,
        "threading_layer_config": os.environ.get("NUMBA_THREADING_LAYER", "default"),
        "num_threads": None,
    }
    if info["loaded"]:
        numba = sys.modules["numba"]
        try:
            info["threading_layer_config"] = str(numba.config.THREADING_LAYER)
            info["num_threads"] = int(numba.config.NUMBA_NUM_THREADS)
        except Exception:  # noqa: BLE001
            pass
        try:
            info["threading_layer"] = numba.threading_layer()
        except Exception:  # noqa: BLE001 - ValueError until a parallel kernel ran
            info["threading_layer"] = None
    return info


def gpu_info():
    """GPUs as seen by fastdrop's CUDA backend, or an empty list.

    Uses ``fastdrop._cuda.info()`` when that module provides it.

    Returns
    -------
    dict
        ``available`` (bool), ``devices`` (list) and ``reason``.

    Examples
    --------
    >>> isinstance(gpu_info()["devices"], list)
    True
    """
    from fastdrop._dispatch import missing_packages

    if "numba" in missing_packages("cuda"):  # nothing to ask
        return {"available": False, "devices": [],
                "reason": f"numba and numba-cuda are not installed: {install_command('cuda')}"}
    try:
        cuda = importlib.import_module("fastdrop._cuda")
        info_fn = getattr(cuda, "info", None)
        if info_fn is None:
            return {"available": False, "devices": [],
                    "reason": "fastdrop._cuda has no info() yet"}
        res = info_fn()
    except Exception as e:  # noqa: BLE001 - no CUDA, no driver, partial install
        return {"available": False, "devices": [], "reason": f"{type(e).__name__}: {e}"}
    if isinstance(res, dict):
        devices = res.get("devices", [])
        if not isinstance(devices, list):
            devices = [devices]
        avail = bool(res.get("available", bool(devices)))
        return {"available": avail, "devices": devices,
                "reason": " ".join(str(res.get("reason", "")).split()), "raw": res}
    if isinstance(res, (list, tuple)):
        return {"available": bool(res), "devices": list(res), "reason": ""}
    return {"available": bool(res), "devices": [res] if res else [], "reason": ""}


def machine_info(threads=None, detailed=False):
    """What a benchmark report is headed by: CPU, threads, library versions.

    Parameters
    ----------
    threads : int, optional
        Threads the benchmark used (default: :func:`fastdrop.get_num_threads`).
    detailed : bool
        Passed to :func:`cpu_info`.

    Examples
    --------
    >>> m = machine_info()
    >>> {"cpu", "versions", "openmp", "threads"} <= set(m)
    True
    """
    cpu = cpu_info(detailed=detailed)
    return {
        "cpu": cpu["model"],
        "arch": cpu["arch"],
        "cores": cpu["usable_cpus"],
        "logical_cpus": cpu["logical_cpus"],
        "features": [f for f, on in cpu["features"].items() if on],
        "threads": int(threads if threads is not None else fastdrop.get_num_threads()),
        "openmp": bool(fastdrop.openmp_enabled()),
        "platform": platform.platform(),
        "versions": library_versions(),
    }


def collect_info(compile_times=False, detailed=True):
    """Everything ``fastdrop info`` reports, as a JSON-serialisable dict.

    Parameters
    ----------
    compile_times : bool, default False
        Also call ``fastdrop._numba.backend.compile_report()`` (this may
        compile the Numba kernels, which takes seconds).
    detailed : bool, default True
        Use py-cpuinfo for the CPU when installed.
    """
    backends = fastdrop.get_backends()
    info = {
        "versions": library_versions(),
        "mask_stream_version": fastdrop.MASK_STREAM_VERSION,
        "backends": {k: {"available": v["available"], "reason": " ".join(str(v["reason"]).split()),
                         "dtypes": list(v["dtypes"])} for k, v in backends.items()},
        "adapters": adapters_info(),
        "threads": threads_info(),
        "numba": numba_info(),  # after get_backends(): Numba may now be loaded
        "cpu": cpu_info(detailed=detailed),
        "gpu": gpu_info(),
        "platform": platform.platform(),
    }
    if compile_times:
        info["compile_times"] = _compile_times()
    return info


def _compile_times():
    try:
        backend = importlib.import_module("fastdrop._numba.backend")
    except Exception as e:  # noqa: BLE001
        return {"error": f"Numba backend not importable: {type(e).__name__}: {e}"}
    # warmup() compiles (or loads from the cache) every kernel, then reports;
    # compile_report() alone only lists what this process already compiled.
    report = getattr(backend, "warmup", None) or getattr(backend, "compile_report", None)
    if report is None:
        return {"error": "fastdrop._numba.backend has no compile_report()"}
    try:
        return _jsonable(report())
    except Exception as e:  # noqa: BLE001
        return {"error": f"compile_report() failed: {type(e).__name__}: {e}"}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _fmt_seconds(s):
    if not isinstance(s, (int, float)):
        return str(s)
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def format_info(info):
    """Render :func:`collect_info`'s dict as readable text.

    Examples
    --------
    >>> text = format_info(collect_info(detailed=False))
    >>> "backends" in text
    True
    """
    lines = []
    v = info["versions"]
    lines.append(f"fastdrop {v['fastdrop']} (mask stream v{info['mask_stream_version']})")
    lines.append("versions:")
    for k, val in v.items():
        if k != "fastdrop":
            lines.append(f"  {k:<12} {val if val is not None else 'not installed'}")
    lines.append("backends:")
    for name, b in info["backends"].items():
        if b["available"]:
            lines.append(f"  {name:<12} available   dtypes: {', '.join(b['dtypes'])}")
        else:
            lines.append(f"  {name:<12} missing     {b['reason']}")
    if info.get("adapters"):
        lines.append("modules:")
        for name, a in info["adapters"].items():
            lines.append(f"  {name:<15} " + ("available" if a["available"]
                                              else f"missing     {a['reason']}"))
    t = info["threads"]
    lines.append(_threads_line(t))
    if t.get("cython_isa"):
        cap = os.environ.get("FASTDROP_MAX_ISA")
        lines.append(f"cython kernels: {t['cython_isa']}"
                     + (f" (FASTDROP_MAX_ISA={cap})" if cap else ""))
    nb = info["numba"]
    if not nb["installed"]:
        lines.append(f"numba: not installed ({install_command('numba')})")
    else:
        lines.append("numba: " + numba_runs_on(nb, t.get("cython_isa")))
        lines.append(f"numba cache dir: {nb['cache_dir']}")
    c = info["cpu"]
    lines.append(f"cpu: {c['model']} ({c['arch']}), {c['usable_cpus']} usable of "
                 f"{c['logical_cpus']} logical CPUs [{c['source']}]")
    if c["features"]:
        feats = " ".join(f"{f}{'+' if on else '-'}" for f, on in c["features"].items())
        lines.append(f"cpu features: {feats}")
    g = info["gpu"]
    if g["available"] and g["devices"]:
        lines.append("gpus:")
        for d in g["devices"]:
            if isinstance(d, dict):
                extra = []
                if d.get("compute_capability") is not None:
                    cc = d["compute_capability"]
                    extra.append("cc " + (".".join(map(str, cc))
                                          if isinstance(cc, (list, tuple)) else str(cc)))
                if d.get("memory_bytes"):
                    extra.append(f"{d['memory_bytes'] / 2**30:.1f} GiB")
                if d.get("multiprocessors"):
                    extra.append(f"{d['multiprocessors']} SMs")
                lines.append(f"  {d.get('id', '?')}: {d.get('name', 'unknown')}"
                             + (f" ({', '.join(extra)})" if extra else ""))
            else:
                lines.append(f"  {d}")
        raw = g.get("raw") or {}
        if raw.get("driver_version") or raw.get("runtime_version"):
            lines.append(f"  CUDA driver {raw.get('driver_version')}, runtime "
                         f"{raw.get('runtime_version')}")
    else:
        lines.append("gpus: none" + (f" ({g['reason']})" if g.get("reason") else ""))
    if "compile_times" in info:
        ct = info["compile_times"]
        lines.append("numba compile times:")
        if isinstance(ct, dict) and "entries" in ct:
            for e in ct["entries"]:
                lines.append(f"  {e.get('kernel')} {e.get('types', '')}: "
                             f"{_fmt_seconds(e.get('seconds'))} ({e.get('source')})")
            lines.append(f"  total: compiled {_fmt_seconds(ct.get('compile_seconds', 0))}, "
                         f"loaded from cache {_fmt_seconds(ct.get('cache_load_seconds', 0))}"
                         + (f"; cache dir {ct['cache_dir']}" if ct.get("cache_dir") else ""))
        elif isinstance(ct, dict):
            for k, val in ct.items():
                lines.append(f"  {k}: {_fmt_seconds(val) if not isinstance(val, dict) else val}")
        else:
            lines.append(f"  {ct}")
    lines.append(f"platform: {info['platform']}")
    return "\n".join(lines)
