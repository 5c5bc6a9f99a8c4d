"""fastdrop.Generator: a (seed, offset) position in the mask stream."""

from __future__ import annotations

import numbers
import operator
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Generator", "resolve_rng", "resolve_state", "check_seed"]

_U64 = 1 << 64


def check_seed(seed: object, what: str = "seed") -> int:
    """Return ``seed`` as a Python int in [0, 2**64), or raise."""
    if type(seed) is int and 0 <= seed < _U64:  # the common case, without ABC checks
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{what} must be an integer, got {type(seed).__name__}")
    seed = operator.index(seed)
    if not 0 <= seed < _U64:
        raise ValueError(f"{what} must be in [0, 2**64), got {seed}")
    return seed


def check_offset(offset: object) -> int:
    """Return ``offset`` as a Python int in [0, 2**64]: 2**64 is the end of
    the stream, where only empty draws are possible."""
    if isinstance(offset, (bool, np.bool_)) or not isinstance(offset, numbers.Integral):
        raise TypeError(f"offset must be an integer, got {type(offset).__name__}")
    offset = operator.index(offset)
    if not 0 <= offset <= _U64:
        raise ValueError(f"offset must be in [0, 2**64], got {offset}")
    return offset


def _count(n: object, name: str) -> int:
    """An integer count argument (not a bool), with errors naming it."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(n).__name__}")
    return operator.index(n)


def _fresh_seed() -> int:
    return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])


# ---------------------------------------------------------------- rng=None
#: The process's default stream (``rng=None``): a Generator seeded once from
#: fresh OS entropy on first use, advanced by every call (thread-safe through
#: its lock), replaced in a forked child so two processes never share masks.
#: Changed in place only, never rebound: the Cython fast path holds this list.
_DEFAULT: list[Generator | None] = [None]


def default_stream() -> Generator:
    """The process-wide :class:`Generator` behind ``rng=None``
    (docs/spec.md §3): seeded from fresh entropy on first use, advanced by
    each call like any Generator, and reseeded in a child after ``fork``.

    Examples
    --------
    >>> from fastdrop._generator import default_stream
    >>> default_stream() is default_stream()
    True
    """
    g = _DEFAULT[0]
    if g is None:
        g = _DEFAULT[0] = Generator(_fresh_seed())
    return g


def _reserve_default(n: int) -> tuple[int, int]:
    """(seed, offset) of ``n`` positions from the default stream; a stream
    that would pass 2**64 is replaced by a fresh one (never in practice)."""
    g = default_stream()
    try:
        return g._reserve(n)
    except ValueError:
        _DEFAULT[0] = None
        return default_stream()._reserve(n)


def _forget_default() -> None:
    _DEFAULT[0] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_default)

#: numpy bit generators whose ``random_raw()`` is the full 64-bit
#: ``next_uint64``, i.e. exactly ``Generator.integers(0, 2**64,
#: dtype=uint64)``'s value, at a tenth of its cost (MT19937's raw output is
#: 32 bits: it goes through ``integers``).
_RAW64 = tuple(getattr(np.random, n) for n in ("PCG64", "PCG64DXSM", "Philox", "SFC64")
               if hasattr(np.random, n))


def numpy_seed(gen: np.random.Generator) -> int:
    """The seed drawn from a ``numpy.random.Generator`` (docs/spec.md §3):
    ``gen.integers(0, 2**64, dtype=uint64)``, through ``random_raw()`` where
    that is the same value."""
    bg = gen.bit_generator
    if type(bg) in _RAW64:
        return int(bg.random_raw())
    return int(gen.integers(0, 2**64, dtype=np.uint64))


class Generator:
    """A position ``(seed, offset)`` in fastdrop's mask stream (docs/spec.md §3).

    Each call that draws a mask of ``n`` elements from the generator uses
    stream positions ``offset .. offset + n - 1`` and then advances ``offset``
    by ``ceil(n / 8) * 8``, so the next call starts on a fresh Philox block.
    The state can be read and restored: re-running a computation from a saved
    state reproduces its masks exactly.

    A Generator is safe to share between threads, like
    :class:`numpy.random.Generator`: each call reserves its range of stream
    positions under a lock, so concurrent calls get disjoint, consecutive
    ranges (in whatever order the threads arrive) and never the same mask.
    Generators can be pickled and copied (the copy starts at the same state).

    Parameters
    ----------
    seed : int, optional
        uint64 seed.  ``None`` draws fresh entropy from the OS.
    offset : int, default 0
        Starting stream position, in [0, 2**64].

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> g = fastdrop.Generator(42)
    >>> saved = g.state
    >>> a = fastdrop.dropout(np.ones(10, np.float32), 0.5, rng=g)
    >>> g.offset                     # 10 positions used, rounded up to 16
    16
    >>> g.state = saved              # rewind
    >>> b = fastdrop.dropout(np.ones(10, np.float32), 0.5, rng=g)
    >>> bool((a == b).all())
    True
    >>> child_a, child_b = g.spawn(2)   # independent streams
    >>> child_a.seed != child_b.seed
    True
    """

    __slots__ = ("_seed", "_offset", "_n_spawned", "_lock")

    def __init__(self, seed: int | np.integer[Any] | None = None,
                 offset: int | np.integer[Any] = 0) -> None:
        self._seed = _fresh_seed() if seed is None else check_seed(seed)
        self._offset = check_offset(offset)
        self._n_spawned = 0
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Callable[[dict[str, int]], Generator], tuple[dict[str, int]]]:
        return (_restore, (self.state,))

    @property
    def seed(self) -> int:
        """The uint64 seed (read-only)."""
        return self._seed

    @property
    def offset(self) -> int:
        """The next stream position to be used."""
        return self._offset

    @property
    def state(self) -> dict[str, int]:
        """The generator's state as a dict; assign a saved dict to restore it."""
        with self._lock:
            return {"version": 1, "seed": self._seed, "offset": self._offset,
                    "n_spawned": self._n_spawned}

    @state.setter
    def state(self, value: dict[str, int]) -> None:
        if not isinstance(value, dict):
            raise TypeError(f"state must be a dict, got {type(value).__name__}")
        if value.get("version", 1) != 1:
            raise ValueError(f"unsupported state version {value.get('version')!r}")
        try:
            seed = check_seed(value["seed"])
            offset = check_offset(value["offset"])
        except KeyError as e:
            raise ValueError(f"state is missing the key {e.args[0]!r}") from None
        n_spawned = value.get("n_spawned", 0)
        if isinstance(n_spawned, (bool, np.bool_)) or not isinstance(n_spawned, numbers.Integral):
            raise TypeError(f"state['n_spawned'] must be an integer, got "
                            f"{type(n_spawned).__name__}")
        n_spawned = operator.index(n_spawned)
        if n_spawned < 0:
            raise ValueError(f"state['n_spawned'] must be non-negative, got {n_spawned}")
        with self._lock:
            self._seed, self._offset, self._n_spawned = seed, offset, n_spawned

    def advance(self, n: int | np.integer[Any]) -> int:
        """Use ``n`` stream positions: return the offset of the first and move
        ``offset`` on by ``ceil(n / 8) * 8``.

        Raises
        ------
        ValueError
            If ``offset + n`` would exceed ``2**64``.
        """
        return self._reserve(n)[1]

    def _reserve(self, n: int | np.integer[Any]) -> tuple[int, int]:
        """``(seed, first offset)`` of ``n`` positions, taken atomically (the
        one place the offset moves)."""
        if type(n) is not int:
            n = _count(n, "n")
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        with self._lock:
            start = self._offset
            if start + n > _U64:
                raise ValueError(
                    f"offset overflow: offset {start} + {n} elements exceeds 2**64; "
                    "use a new seed (e.g. Generator.spawn)")
            end = start + ((n + 7) & -8)  # the next call starts on a fresh block
            self._offset = end if end < _U64 else _U64
            return self._seed, start

    def spawn(self, n_children: int | np.integer[Any]) -> list[Generator]:
        """Return ``n_children`` new generators with independent seeds.

        Child seeds come from :class:`numpy.random.SeedSequence` keyed by this
        generator's seed and a spawn counter, so spawning is itself
        reproducible from the saved state.
        """
        n_children = _count(n_children, "n_children")
        if n_children < 0:
            raise ValueError(f"n_children must be non-negative, got {n_children}")
        with self._lock:
            first = self._n_spawned
            self._n_spawned += n_children
            seed = self._seed
        out = []
        for k in range(first, first + n_children):
            ss = np.random.SeedSequence(seed, spawn_key=(k,))
            out.append(Generator(int(ss.generate_state(1, np.uint64)[0])))
        return out

    def __repr__(self) -> str:
        return f"fastdrop.Generator(seed={self._seed}, offset={self._offset})"


def _restore(state: dict[str, int]) -> Generator:
    """Unpickle a :class:`Generator` from its state dict."""
    g = Generator(0)
    g.state = state
    return g


def check_rng(rng: object) -> None:
    """Validate an ``rng=`` argument without drawing from it (evaluation
    mode draws no mask but still rejects a bad ``rng``)."""
    if type(rng) is int:  # the common case, without ABC checks
        check_seed(rng, "rng seed")
        return
    if rng is None or type(rng) is Generator or isinstance(
            rng, (Generator, np.random.Generator, np.random.BitGenerator,
                  np.random.SeedSequence)):
        return
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)):
        check_seed(rng, "rng seed")
        return
    raise TypeError(
        "rng must be None, an int seed, a fastdrop.Generator, a numpy.random.Generator, "
        f"BitGenerator or SeedSequence, got {type(rng).__name__}")


def resolve_rng(rng: object, n: int) -> tuple[int, int]:
    """Turn an ``rng=`` argument into ``(seed, offset)`` for a mask of ``n``
    elements, advancing a :class:`Generator` by the positions it uses."""
    if rng is None:
        return _reserve_default(n)
    if type(rng) is int:
        return check_seed(rng, "rng seed"), 0
    if isinstance(rng, Generator):
        return rng._reserve(n)
    if isinstance(rng, np.random.Generator):
        return numpy_seed(rng), 0
    if isinstance(rng, np.random.BitGenerator):
        return numpy_seed(np.random.Generator(rng)), 0
    if isinstance(rng, np.random.SeedSequence):
        return int(rng.generate_state(1, np.uint64)[0]), 0
    check_rng(rng)
    return check_seed(rng, "rng seed"), 0


def resolve_state(state: object, n: int) -> tuple[int, int]:
    """Turn a saved ``state=`` (int seed, ``(seed, offset)`` or a
    :attr:`Generator.state` dict) into ``(seed, offset)``; nothing advances."""
    if isinstance(state, Generator):
        raise TypeError(
            "state must be the generator's state saved before the forward call "
            "(gen.state), not the Generator itself, which has advanced since")
    if isinstance(state, dict):
        g = Generator(0)
        g.state = state
        seed, offset = g.seed, g.offset
    elif isinstance(state, tuple) and len(state) == 2:
        seed, offset = check_seed(state[0]), check_offset(state[1])
    elif isinstance(state, numbers.Integral) and not isinstance(state, (bool, np.bool_)):
        seed, offset = check_seed(state), 0
    else:
        raise TypeError(
            "state must be an int seed, a (seed, offset) tuple or a "
            f"Generator.state dict, got {type(state).__name__}")
    if offset + n > _U64:
        raise ValueError(f"offset overflow: offset {offset} + {n} elements exceeds 2**64")
    return seed, offset
