# cython: language_level=3
"""Cython kernels (placeholder until the Cython backend lands): build info."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTDROP_HAVE_OPENMP 1
    static int fastdrop_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define FASTDROP_HAVE_OPENMP 0
    static int fastdrop_omp_max_threads(void) { return 1; }
    #endif
    """
    int FASTDROP_HAVE_OPENMP
    int fastdrop_omp_max_threads() nogil


def openmp_enabled():
    """True if this extension was compiled with OpenMP."""
    return bool(FASTDROP_HAVE_OPENMP)


def omp_max_threads():
    """OpenMP's default thread count (1 without OpenMP)."""
    return fastdrop_omp_max_threads()
