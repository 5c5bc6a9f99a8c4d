"""What a benchmark run measures and how: :class:`BenchConfig` and the
``--quick`` preset."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BenchConfig", "DEFAULT_SIZES", "QUICK_SIZES"]

#: Default sizes: 1e3 ... 1e8, log-spaced (one per decade).
DEFAULT_SIZES = [10 ** k for k in range(3, 9)]
#: Sizes of ``--quick``.
QUICK_SIZES = [10 ** 3, 10 ** 5, 10 ** 7]


@dataclass
class BenchConfig:
    """What to benchmark and how.

    Attributes
    ----------
    sizes : list of int
        Numbers of elements (1-D arrays).
    dtypes : list of str
    ps : list of float
        Drop probabilities, each in [0, 1).
    ops : list of str or None
        Operation names from :data:`fastdrop._comparisons.COMPARISONS`
        (None: all).
    backends : list of str or None
        fastdrop backends (None: every available one).
    numpy, torch, gpu : bool
        Time the NumPy idioms; PyTorch on the CPU (if installed); GPU
        implementations (if a GPU is present).
    threads : int or None
        Threads for fastdrop, Numba and PyTorch (None: fastdrop's default).
    repeat : int
        Timed samples per measurement (the median is reported).
    min_time : float
        Minimum seconds per sample: the inner loop count adapts to it.
    max_time : float
        Soft budget per measurement: sampling stops once it is spent and at
        least three samples were taken.
    ceiling : str
        Streaming kernel for the ceiling: "auto" (cython, else numba, else
        numpy), "cython", "numba" or "numpy".
    reference_max_size : int
        The pure-NumPy reference backend is slow; it is timed only up to
        this size.
    memory_fraction : float
        Skip a size whose estimated working set exceeds this fraction of
        the available memory.
    seed : int
    quick : bool
        Recorded in the report (``--quick`` presets the other fields).
    """

    sizes: list = field(default_factory=lambda: list(DEFAULT_SIZES))
    dtypes: list = field(default_factory=lambda: ["float32"])
    ps: list = field(default_factory=lambda: [0.5])
    ops: list | None = None
    backends: list | None = None
    numpy: bool = True
    torch: bool = True
    gpu: bool = True
    threads: int | None = None
    repeat: int = 7
    min_time: float = 0.01
    max_time: float = 5.0
    ceiling: str = "auto"
    reference_max_size: int = 10 ** 6
    memory_fraction: float = 0.7
    seed: int = 12345
    quick: bool = False

    @classmethod
    def quick_preset(cls, **overrides):
        """The ``--quick`` configuration: sizes 1e3, 1e5, 1e7; float32;
        p = 0.5; every operation and backend; three samples of >= 2 ms.

        Examples
        --------
        >>> BenchConfig.quick_preset().sizes
        [1000, 100000, 10000000]
        """
        base = dict(sizes=list(QUICK_SIZES), dtypes=["float32"], ps=[0.5], repeat=5,
                    min_time=0.002, max_time=1.0, quick=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def timing(self):
        """The keyword arguments of :func:`~fastdrop._benchmark.timing.time_call`
        that this configuration sets.

        Examples
        --------
        >>> BenchConfig(repeat=3).timing()
        {'repeat': 3, 'min_time': 0.01, 'max_time': 5.0}
        """
        return dict(repeat=self.repeat, min_time=self.min_time, max_time=self.max_time)
