"""Disk-cache invalidation for kernels compiled from several source files.

Numba's disk cache (``cache=True``) checks only the timestamp of the file
that defines the cached function.  fastdrop's kernels also compile code from
:mod:`fastdrop._numba.philox` and :mod:`fastdrop._numba.llvm` (and
:mod:`fastdrop.numba` uses :mod:`fastdrop._numba.kernels`), so a changed
``philox.py`` or ``llvm.py`` would leave stale machine code in the cache.  :func:`install` registers a cache locator for
fastdrop's own files that wraps Numba's usual locator (same cache
directory, ``NUMBA_CACHE_DIR`` honoured) and adds a content hash of those
dependency files to the source stamp, so any change to them invalidates the
cached kernels.

Numba has no public hook for this (numba/numba#9350 asks for control over
cache locators), so the locator goes into Numba's private
``CacheImpl._locator_classes`` list.  If that private API changes,
:func:`install` warns (:class:`RuntimeWarning`) and caching works as in
plain Numba: correct, except that a change to those dependency files alone
no longer invalidates the cached kernels.
"""

import hashlib
import os
import warnings

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEPS = ([os.path.join(_HERE, f) for f in ("philox.py", "llvm.py", "kernels.py")]
         + [os.path.join(os.path.dirname(_HERE), "_config.py")])  # CHUNK is compiled in
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


def _numba_locators():
    """Numba's (private) cache-locator base class and the list of locator
    classes it tries in order; raises if either is not what :func:`install`
    relies on."""
    from numba.core import caching

    base = caching._CacheLocator
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    classes = impl._locator_classes
    if not isinstance(base, type) or not isinstance(classes, list):
        raise TypeError("unexpected _CacheLocator / _locator_classes")
    return base, classes


def _warn(reason):
    import numba

    warnings.warn(
        "fastdrop: cannot register its Numba cache locator (Numba "
        f"{getattr(numba, '__version__', '?')} changed a private caching API: "
        f"{reason}); the kernels are still cached, but a change to "
        "fastdrop/_numba/philox.py or llvm.py alone will not invalidate them "
        "(clear NUMBA_CACHE_DIR or fastdrop/_numba/__pycache__ after such a change)",
        RuntimeWarning, stacklevel=3)


def install():
    """Register the locator (idempotent); warns (:class:`RuntimeWarning`)
    when Numba's private caching API is not as expected."""
    global _installed
    if _installed:
        return
    _installed = True
    try:
        base, classes = _numba_locators()
    except (ImportError, AttributeError, TypeError) as exc:
        _warn(f"{type(exc).__name__}: {exc}")
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

    missing = getattr(FastdropCacheLocator, "__abstractmethods__", ())
    if missing:  # instantiating it would fail inside Numba's compile
        _warn("locator methods not implemented: " + ", ".join(sorted(missing)))
        return
    classes.insert(0, FastdropCacheLocator)
