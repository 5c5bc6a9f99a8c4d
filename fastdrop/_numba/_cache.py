"""Disk-cache invalidation for kernels compiled from several source files.

Numba's disk cache (``cache=True``) checks only the timestamp of the file
that defines the cached function.  fastdrop's kernels also compile code from
:mod:`fastdrop._numba.philox` (and :mod:`fastdrop.numba` uses
:mod:`fastdrop._numba.kernels`), so a changed ``philox.py`` would leave stale
machine code in the cache.  :func:`install` registers a cache locator for
fastdrop's own files that wraps Numba's usual locator (same cache
directory, ``NUMBA_CACHE_DIR`` honoured) and adds a content hash of those
dependency files to the source stamp, so any change to them invalidates the
cached kernels.  If Numba's private caching API ever changes, this is
skipped and caching works as in plain Numba.
"""

import hashlib
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEPS = [os.path.join(_HERE, f) for f in ("philox.py", "kernels.py")]
_OURS = {os.path.realpath(os.path.join(_HERE, "kernels.py")),
         os.path.realpath(os.path.join(os.path.dirname(_HERE), "numba.py"))}
_installed = False


def deps_hash():
    """sha256 over the contents of the files the kernels are compiled from."""
    h = hashlib.sha256()
    for path in _DEPS:
        try:
            with open(path, "rb") as f:
                h.update(f.read())
        except OSError:  # pragma: no cover - e.g. zipped installs
            h.update(path.encode())
    return h.hexdigest()


def install():
    """Register the locator (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    try:
        from numba.core import caching

        base = caching._CacheLocator
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
        classes = impl._locator_classes
    except (ImportError, AttributeError):  # pragma: no cover
        return
    digest = deps_hash()

    class FastdropCacheLocator(base):
        """Numba's locator for the file, with the dependency hash added to
        the source stamp."""

        def __init__(self, inner):
            self._inner = inner

        def ensure_cache_path(self):
            return self._inner.ensure_cache_path()

        def get_cache_path(self):
            return self._inner.get_cache_path()

        def get_source_stamp(self):
            return (self._inner.get_source_stamp(), digest)

        def get_disambiguator(self):
            return self._inner.get_disambiguator()

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.realpath(py_file) not in _OURS:
                return None
            for other in classes:
                if other is cls:
                    continue
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
            return None

    classes.insert(0, FastdropCacheLocator)
