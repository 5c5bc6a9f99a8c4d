"""Monte Carlo dropout (Gal and Ghahramani 2016): dropout kept on at
prediction time, ``samples`` stochastic passes, their mean as the prediction
and their standard deviation as its uncertainty.

Reproducible: pass ``t`` draws its masks from the ``t``-th child of
``Generator(seed).spawn(samples)`` (docs/spec.md §3), so the same seed gives
the same ``samples`` masks on any machine, backend and device.  Memory: the
passes are reduced as they come (Welford's running mean and sum of squared
deviations, float64); no mask and no pass is stored unless
``return_samples``.  The torch form (a context manager and ``mc_predict``)
is in :mod:`fastdrop.torch`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from ._generator import Generator, check_seed

__all__ = ["mc_dropout", "pass_generators", "RunningMoments"]


def pass_generators(rng: int | np.integer[Any] | Generator | None,
                    samples: int | np.integer[Any]) -> list[Generator]:
    """The ``samples`` generators of the passes: the children of ``rng``
    (an int seed, a :class:`fastdrop.Generator`, whose spawn counter
    advances, or None for fresh entropy)."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)):
        raise TypeError(f"samples must be an int, got {type(samples).__name__}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if rng is None or isinstance(rng, Generator):
        base = Generator() if rng is None else rng
    elif isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        base = Generator(check_seed(int(rng), "rng seed"))
    else:
        raise TypeError(
            f"rng must be None, an int seed or a fastdrop.Generator, got {type(rng).__name__}")
    return base.spawn(int(samples))


class RunningMoments:
    """Welford's running mean and sum of squared deviations of equally
    shaped arrays (NumPy arrays or torch tensors, accumulated in float64 by
    ``to_float64``): ``push(y)`` each pass, then ``mean`` and ``std(ddof)``.

    Examples
    --------
    >>> import numpy as np
    >>> m = RunningMoments()
    >>> for v in (1.0, 2.0, 4.0):
    ...     m.push(np.array([v]))
    >>> float(m.mean[0]), round(float(m.std()[0]), 6)
    (2.3333333333333335, 1.247219)
    """

    def __init__(self, to_float64: Callable[[Any], Any] = lambda y: np.asarray(y, dtype=np.float64)
                 ) -> None:
        self._f64 = to_float64
        self.count = 0
        self.mean: Any = None
        self._m2: Any = None

    def push(self, y: Any) -> None:
        y = self._f64(y)
        self.count += 1
        if self.mean is None:
            self.mean, self._m2 = y.clone() if hasattr(y, "clone") else y.copy(), y * 0
            return
        delta = y - self.mean
        self.mean = self.mean + delta / self.count
        self._m2 = self._m2 + delta * (y - self.mean)

    def std(self, ddof: int = 0) -> Any:
        if self.count - ddof <= 0:
            raise ValueError(f"std with ddof={ddof} needs more than {ddof} samples")
        return (self._m2 / (self.count - ddof)) ** 0.5


@overload
def mc_dropout(model: Callable[[Any, Generator], Any], x: Any, *,
               samples: int | np.integer[Any],
               rng: int | np.integer[Any] | Generator | None = ...,
               return_samples: Literal[False] = ..., ddof: int = ...
               ) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
@overload
def mc_dropout(model: Callable[[Any, Generator], Any], x: Any, *,
               samples: int | np.integer[Any],
               rng: int | np.integer[Any] | Generator | None = ...,
               return_samples: Literal[True], ddof: int = ...
               ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[Any]]: ...
@overload
def mc_dropout(model: Callable[[Any, Generator], Any], x: Any, *,
               samples: int | np.integer[Any],
               rng: int | np.integer[Any] | Generator | None = ...,
               return_samples: bool = ..., ddof: int = ...
               ) -> tuple[NDArray[np.float64], ...]: ...
def mc_dropout(model: Callable[[Any, Generator], Any], x: Any, *,
               samples: int | np.integer[Any],
               rng: int | np.integer[Any] | Generator | None = None,
               return_samples: bool = False, ddof: int = 0) -> tuple[NDArray[Any], ...]:
    """Monte Carlo dropout prediction of a NumPy model.

    Parameters
    ----------
    model : callable
        ``model(x, rng)`` runs one stochastic forward pass and returns an
        array; it passes ``rng`` (a :class:`fastdrop.Generator`) to every
        fastdrop call it makes in training mode (e.g.
        ``fastdrop.dropout(h, 0.2, rng=rng)``), in a fixed order.
    x : array_like
        The input, handed to ``model`` unchanged.
    samples : int
        Number of passes (>= 1).
    rng : None, int or fastdrop.Generator
        Pass ``t`` uses ``Generator(rng).spawn(samples)[t]`` (an int seed),
        ``rng.spawn(samples)[t]`` (a Generator) or fresh entropy (None).
    return_samples : bool, default False
        Also return the passes, stacked on a new leading axis (memory:
        ``samples`` outputs).
    ddof : int, default 0
        Delta degrees of freedom of the standard deviation.

    Returns
    -------
    mean, std : ndarray of float64
        Per output element, over the passes.
    samples : ndarray
        Only with ``return_samples``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastdrop
    >>> w = np.linspace(-1, 1, 12).reshape(4, 3)
    >>> def model(x, rng):
    ...     return fastdrop.dropout(x, 0.5, rng=rng) @ w
    >>> mean, std = fastdrop.mc_dropout(model, np.ones((2, 4)), samples=50, rng=0)
    >>> mean.shape, std.shape, bool((std > 0).any())
    ((2, 3), (2, 3), True)
    >>> m2, s2 = fastdrop.mc_dropout(model, np.ones((2, 4)), samples=50, rng=0)
    >>> bool((m2 == mean).all() and (s2 == std).all())   # same seed, same passes
    True
    """
    gens = pass_generators(rng, samples)
    moments = RunningMoments()
    kept: list[NDArray[Any]] | None = [] if return_samples else None
    for g in gens:
        y = np.asarray(model(x, g))
        moments.push(y)
        if kept is not None:
            kept.append(y)
    out = (moments.mean, moments.std(ddof))
    return out + (np.stack(kept),) if kept is not None else out
