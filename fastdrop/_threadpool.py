"""fastdrop as a threadpoolctl library: ``threadpool_limits`` and
``threadpool_info`` see the compiled extension's default thread count.

The limit lives in the extension (threads.h), behind three exported C
functions, ``fastdrop_threadpool_get_num_threads``,
``fastdrop_threadpool_set_num_threads`` and ``fastdrop_threadpool_get_limit``;
the controller below reaches them through the ``ctypes.CDLL`` threadpoolctl
opens on the loaded extension.  Its ``user_api`` is ``"openmp"``: fastdrop
used OpenMP's thread count before it had its own, and code that limits
OpenMP libraries (``threadpool_limits(1, user_api="openmp")``) means
fastdrop's threads too.

When a ``threadpool_limits`` block ends, threadpoolctl sets each library
back to the count it had when the block began; for fastdrop, a count that
was the default with no limit becomes no limit again, not a limit at that
count (the default goes on following ``OMP_NUM_THREADS`` and the CPUs).

threadpoolctl is an optional dependency, never imported here: the
extension calls :func:`install` when it is loaded, which registers the
controller at once when threadpoolctl is already imported, and otherwise
puts a finder on :data:`sys.meta_path` that registers it right after
threadpoolctl's module has run, then removes itself.  threadpoolctl
versions without ``register`` (before 3.5) are left alone.
"""

from __future__ import annotations

import sys
import weakref
from types import ModuleType
from typing import Any

__all__ = ["install", "register"]

_NAME = "threadpoolctl"

#: The threadpoolctl modules the controller is registered with (one,
#: unless a test re-imports threadpoolctl).
_registered: weakref.WeakSet[ModuleType] = weakref.WeakSet()


def _controller_class(tpc: ModuleType) -> type:
    """The ``threadpoolctl.LibController`` subclass for the extension."""

    class FastdropController(tpc.LibController):  # type: ignore[name-defined]
        """fastdrop's compiled extension: its default thread count
        (``fastdrop.get_num_threads`` when ``set_num_threads`` set none)."""

        user_api = "openmp"
        internal_api = "fastdrop"
        # the extension's file (_kernels.cpython-311-x86_64-linux-gnu.so,
        # _kernels.cp311-win_amd64.pyd); the symbol check below keeps any
        # other package's _kernels module out
        filename_prefixes = ("_kernels",)
        check_symbols = ("fastdrop_threadpool_get_num_threads",)
        # not in vars(self), so not in threadpool_info()'s dicts: the count
        # get_num_threads returned while no limit was set, or None
        __slots__ = ("_unlimited_count",)

        def get_version(self) -> str | None:
            if not hasattr(self.dynlib, "fastdrop_threadpool_get_num_threads"):
                return None  # another package's _kernels: threadpoolctl drops it
            # fastdrop's version (the package is imported: it loaded the
            # extension; no import statement here, which would be a cycle)
            return getattr(sys.modules.get("fastdrop"), "__version__", None)

        def get_num_threads(self) -> int:
            unlimited = self.dynlib.fastdrop_threadpool_get_limit() == 0
            n = int(self.dynlib.fastdrop_threadpool_get_num_threads())
            self._unlimited_count = n if unlimited else None
            return n

        def set_num_threads(self, num_threads: int) -> None:
            # threadpool_limits restores the count get_num_threads gave when
            # the block began: when that was the default with no limit, that
            # count means no limit again (so the default goes on following
            # OMP_NUM_THREADS and the CPUs after the block) rather than a
            # limit frozen at it.  A limit equal to that count is no limit
            # either: the same count until the environment changes.
            n = int(num_threads)
            if n == getattr(self, "_unlimited_count", None):
                n = 0
            self.dynlib.fastdrop_threadpool_set_num_threads(n)

    return FastdropController


def register(tpc: ModuleType) -> bool:
    """Register fastdrop's controller with the threadpoolctl module ``tpc``
    (once per module); returns whether it is registered (False for a
    threadpoolctl without ``register``, before 3.5).

    Examples
    --------
    >>> import types
    >>> from fastdrop import _threadpool
    >>> _threadpool.register(types.ModuleType("threadpoolctl"))  # no register(): < 3.5
    False
    """
    if tpc in _registered:
        return True
    if not (callable(getattr(tpc, "register", None)) and hasattr(tpc, "LibController")):
        return False
    tpc.register(_controller_class(tpc))
    _registered.add(tpc)
    return True


class _Loader:
    """threadpoolctl's own loader, then :func:`register` on the module."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        # the module keeps its real loader (inspect, pkgutil, importlib.reload)
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self.loader
        self.loader.exec_module(module)
        _remove_finder()
        register(module)


class _Finder:
    """A :data:`sys.meta_path` finder that answers for threadpoolctl alone,
    with the spec the finders after it give and a :class:`_Loader` around
    that spec's loader."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != _NAME:
            return None
        meta_path = sys.meta_path
        for finder in meta_path[meta_path.index(self) + 1:] if self in meta_path else ():
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]


def install() -> None:
    """Make threadpoolctl see fastdrop: register the controller now when
    threadpoolctl is imported, else when it is (whichever is imported
    first).  Called by the extension when it is loaded.

    Examples
    --------
    >>> import sys
    >>> from fastdrop import _threadpool
    >>> _threadpool.install()
    >>> "threadpoolctl" in sys.modules or any(
    ...     isinstance(f, _threadpool._Finder) for f in sys.meta_path)
    True
    """
    tpc = sys.modules.get(_NAME)
    if tpc is not None:
        register(tpc)
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
