/*
 * fastdrop's default thread count: what the worker pool (pool.h) runs when
 * fastdrop.set_num_threads has not set a count (fastdrop.get_num_threads),
 * read at the time of each call, in this order:
 *
 *  1. a limit set with fastdrop_threadpool_set_num_threads (threadpoolctl's
 *     threadpool_limits, through the controller fastdrop/_threadpool.py
 *     registers with threadpoolctl for user_api "openmp");
 *  2. else OMP_NUM_THREADS, in OpenMP's syntax: a comma-separated list of
 *     positive integers, of which the first counts; a value OpenMP rejects
 *     (empty, 0, negative, not a number, a bad list entry) is ignored;
 *  3. else the CPUs this process may run on (its affinity mask on Linux,
 *     the online CPUs elsewhere).
 *
 * The extension links no OpenMP runtime on Linux and macOS (the pool runs
 * on POSIX threads); this keeps the default omp_get_max_threads() gave,
 * except that OMP_NUM_THREADS and the affinity mask are read at each call
 * (OpenMP read them once) and that the limit is process-wide: a
 * threadpool_limits block in one thread applies to calls from every thread
 * (omp_set_num_threads set the calling thread's count).
 *
 * The three fastdrop_threadpool_* functions are exported from the
 * extension (default visibility), so that threadpoolctl (and ctypes) find
 * them in the loaded shared object.  Only the extension includes this file:
 * it defines them.
 */
#ifndef FASTDROP_THREADS_H
#define FASTDROP_THREADS_H

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#define FD_EXPORT __declspec(dllexport)
#else
#include <sched.h>
#include <unistd.h>
#define FD_EXPORT __attribute__((visibility("default")))
#endif

/* > 0: the threadpoolctl limit; 0: none.  An int: its reads and writes are
 * whole on every platform the extension builds for. */
static volatile int fd_threads_limit = 0;

/* One entry of OMP_NUM_THREADS at *s, parsed as libgomp does (strtoul
 * after blanks, blanks after it, a value in 1 .. LONG_MAX): the value,
 * capped at INT_MAX, with *s just past it, or 0 when invalid. */
static int fd_threads_entry(const char **s)
{
    const char *p = *s;
    char *end;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r')) p++;
    if (*p == '\0' || *p == '-') return 0;  /* strtoul would negate "-n" */
    errno = 0;
    const unsigned long v = strtoul(p, &end, 10);
    if (end == p || errno != 0 || v == 0 || v > (unsigned long)LONG_MAX) return 0;
    while (*end == ' ' || (*end >= '\t' && *end <= '\r')) end++;
    *s = end;
    return v > (unsigned long)INT_MAX ? INT_MAX : (int)v;
}

/* OMP_NUM_THREADS's first entry when the whole value is valid, else 0. */
static int fd_threads_env(void)
{
    const char *s = getenv("OMP_NUM_THREADS");
    if (s == NULL) return 0;
    const int first = fd_threads_entry(&s);
    if (first == 0) return 0;
    while (*s == ',') {
        s++;
        if (fd_threads_entry(&s) == 0) return 0;
    }
    return *s == '\0' ? first : 0;
}

/* The CPUs this process may run on (at least 1). */
static int fd_threads_cpus(void)
{
#if defined(_WIN32)
    const DWORD n = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
    return n > 0 ? (int)n : 1;
#else
#if defined(__linux__) && defined(CPU_ALLOC)
    /* the affinity mask, in a set grown until it holds every CPU number */
    for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (set == NULL) break;
        const size_t size = CPU_ALLOC_SIZE(ncpu);
        if (sched_getaffinity(0, size, set) == 0) {
            const int n = CPU_COUNT_S(size, set);
            CPU_FREE(set);
            return n > 0 ? n : 1;
        }
        CPU_FREE(set);
        if (errno != EINVAL) break;
    }
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (n > INT_MAX ? INT_MAX : (int)n) : 1;
#endif
}

/* The default without a threadpoolctl limit: OMP_NUM_THREADS, else the CPUs. */
static int fd_threads_unlimited(void)
{
    const int n = fd_threads_env();
    return n > 0 ? n : fd_threads_cpus();
}

/* The default thread count: the limit, else fd_threads_unlimited().  For
 * threadpoolctl (its get_num_threads) and for ctypes callers. */
FD_EXPORT int fastdrop_threadpool_get_num_threads(void)
{
    const int lim = fd_threads_limit;
    return lim > 0 ? lim : fd_threads_unlimited();
}

/* Set the limit to n threads; n <= 0 removes it. */
FD_EXPORT void fastdrop_threadpool_set_num_threads(int n)
{
    fd_threads_limit = n > 0 ? n : 0;
}

/* The limit, or 0 when none is set. */
FD_EXPORT int fastdrop_threadpool_get_limit(void)
{
    return fd_threads_limit;
}

#endif /* FASTDROP_THREADS_H */
