/*
 * fastdrop's worker pool: the tasks of one call (fixed-size chunks of the
 * array, fd_run_task) handed out one at a time from an atomic counter to the
 * calling thread and up to nthreads - 1 workers.
 *
 * Why not an OpenMP parallel loop: its end is a barrier that every thread of
 * the team must reach, so on a busy machine a worker that the OS has not
 * scheduled yet holds the caller until it runs, even when the caller has
 * done every chunk itself (measured, AMD EPYC, 2 cores with two other
 * processes busy: a 10^5-element float32 dropout took 12 ms on 2 OpenMP
 * threads against 20 us on one).  Here the caller waits only for chunks that
 * a worker has claimed and not finished; a worker that wakes late finds the
 * counter exhausted and goes back to sleep.  The result does not depend on
 * who runs which chunk (each chunk's output is a function of its index).
 *
 * Every task runs in the kernels' floating-point environment (fpenv.h),
 * whatever the caller's or a worker's creator's was.  One job at a time: a call made while another thread's job runs does its
 * chunks on its own thread.  Workers spin briefly after a job (back-to-back
 * calls find them awake), then sleep on a condition variable.  After fork()
 * the child starts with no workers.  Platforms without POSIX threads
 * (Windows) use an OpenMP loop when the build has OpenMP, else run serially.
 */
#ifndef FASTDROP_POOL_H
#define FASTDROP_POOL_H

#include <stdint.h>
#include "fpenv.h"

typedef void (*fd_pool_fn)(const void *ctx, int64_t t);

#if !defined(_WIN32) && !defined(FD_NO_POOL)
#define FD_HAVE_POOL 1
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FD_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define FD_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define FD_CPU_RELAX() ((void)0)
#endif

/* workers at most; pause iterations a worker spins before it sleeps.  A
 * spinning thread (a worker between jobs, the caller waiting for claimed
 * tasks) calls sched_yield() every FD_POOL_YIELD pauses: on a busy machine
 * it may hold the core that the thread it waits for, or the caller, needs
 * (AMD EPYC, 2 cores, one busy-loop process per core: a woken worker that
 * shared the caller's core spun its 4096 pauses, about 110 us, before the
 * caller could go on: 10^5-element calls took 140 us instead of 19). */
#define FD_POOL_MAX 255
#define FD_POOL_SPIN 4096
#define FD_POOL_YIELD 64
#define FD_POOL_RELAX(spins) \
    do { if ((spins) % FD_POOL_YIELD) FD_CPU_RELAX(); else sched_yield(); } while (0)

/* Busy machines.  A worker that the OS preempts while it runs a task holds
 * the call until it is scheduled again: milliseconds, where a 10^5-element
 * call takes 20 us (AMD EPYC, 2 cores, one busy-loop process per core: one
 * call in a hundred waited 1-3 ms, so 2 threads averaged 1.5-1.8x the time
 * of one).  No other thread may take such a task over (it may have written
 * part of an in-place output), so the pool learns instead: when the caller
 * waited for claimed tasks more than FD_POOL_STALL_X times as long as it
 * ran tasks itself (and over FD_POOL_STALL_MIN_NS), a stall, for the second
 * time within FD_POOL_HOLD_NS (a busy machine, not one preemption on a
 * quiet one), jobs of at most FD_POOL_HOLD_TASKS tasks run on the calling
 * thread alone for the next FD_POOL_HOLD_NS; then the pool tries again
 * (measured there: up to about one call in a hundred stalled, so two
 * stalls came within milliseconds of each other).  Larger jobs stay parallel
 * (their share of a stall is smaller than what a second thread saves).
 * Results never depend on it. */
#define FD_POOL_STALL_X 4
#define FD_POOL_STALL_MIN_NS 100000
#define FD_POOL_HOLD_TASKS 16
#define FD_POOL_HOLD_NS 100000000

static struct {
    _Atomic uint64_t claim;      /* generation << 32 | next task */
    _Atomic int64_t done;        /* tasks finished in the current job */
    _Atomic uint32_t gen;        /* the current job's generation */
    _Atomic int want;            /* workers 0 .. want - 1 take part */
    _Atomic int sleepers;        /* workers waiting on cv */
    _Atomic(fd_pool_fn) fn;
    _Atomic(const void *) ctx;
    _Atomic int64_t ntasks;
    _Atomic int64_t hold_until;  /* CLOCK_MONOTONIC ns: small jobs serial until then */
    _Atomic int64_t last_stall;  /* CLOCK_MONOTONIC ns of the last stall (0: none) */
    int started;                 /* workers running (guarded by busy) */
    int atfork;                  /* the fork handler is registered */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t busy;        /* held by the thread whose job runs */
} fd_pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
             .busy = PTHREAD_MUTEX_INITIALIZER};

/* Claim and run tasks of job g until none is left (or a newer job began). */
static void fd_pool_drain(uint32_t g)
{
    for (;;) {
        uint64_t c = atomic_load_explicit(&fd_pool.claim, memory_order_acquire);
        if ((uint32_t)(c >> 32) != g)
            return;
        /* read before the claim: a claim that succeeds proves job g was still
         * running when they were read (its fields change only after it ends,
         * and it cannot end before this task is claimed) */
        const fd_pool_fn fn = atomic_load_explicit(&fd_pool.fn, memory_order_relaxed);
        const void *ctx = atomic_load_explicit(&fd_pool.ctx, memory_order_relaxed);
        const int64_t n = atomic_load_explicit(&fd_pool.ntasks, memory_order_relaxed);
        const int64_t k = (int64_t)(uint32_t)c;
        if (k >= n)
            return;
        if (!atomic_compare_exchange_weak_explicit(&fd_pool.claim, &c, c + 1,
                                                   memory_order_acq_rel, memory_order_acquire))
            continue;
        fn(ctx, k);
        atomic_fetch_add_explicit(&fd_pool.done, 1, memory_order_release);
    }
}

static void *fd_pool_worker(void *arg)
{
    const uint64_t a = (uint64_t)(uintptr_t)arg;
    const int me = (int)(a >> 32);
    uint32_t seen = (uint32_t)a;
    /* a thread inherits its creator's floating-point environment (XLA's
     * threads flush to zero): the kernels' own, for good (fpenv.h) */
    (void)fd_fpenv_enter();
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = atomic_load(&fd_pool.gen)) == seen) {
            if (++spins < FD_POOL_SPIN) {
                FD_POOL_RELAX(spins);
                continue;
            }
            pthread_mutex_lock(&fd_pool.mu);
            atomic_fetch_add(&fd_pool.sleepers, 1);
            while (atomic_load(&fd_pool.gen) == seen)
                pthread_cond_wait(&fd_pool.cv, &fd_pool.mu);
            atomic_fetch_sub(&fd_pool.sleepers, 1);
            pthread_mutex_unlock(&fd_pool.mu);
            spins = 0;
        }
        seen = g;
        if (me < atomic_load_explicit(&fd_pool.want, memory_order_relaxed))
            fd_pool_drain(g);
    }
    return NULL;
}

/* In a forked child no worker exists, and the locks may have been held by
 * threads that are gone. */
static void fd_pool_atfork_child(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    fd_pool.mu = m;
    fd_pool.busy = m;
    fd_pool.cv = c;
    fd_pool.started = 0;
    atomic_store(&fd_pool.sleepers, 0);
}

/* Start workers until nw run (busy held); returns how many run. */
static int fd_pool_start(int nw)
{
    if (!fd_pool.atfork) {
        if (pthread_atfork(NULL, NULL, fd_pool_atfork_child) != 0)
            return 0;
        fd_pool.atfork = 1;
    }
    if (fd_pool.started >= nw)
        return nw;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* signals stay with Python's threads */
    const uint32_t g = atomic_load(&fd_pool.gen);
    while (fd_pool.started < nw) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        const uint64_t arg = ((uint64_t)fd_pool.started << 32) | g;
        const int rc = pthread_create(&th, &at, fd_pool_worker, (void *)(uintptr_t)arg);
        pthread_attr_destroy(&at);
        if (rc != 0)
            break;
        fd_pool.started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return fd_pool.started < nw ? fd_pool.started : nw;
}

static int64_t fd_pool_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Run fn(ctx, t) for t = 0 .. ntasks - 1 on the calling thread and up to
 * nthreads - 1 workers; returns when every task has finished. */
static void fd_pool_run(fd_pool_fn fn, const void *ctx, int64_t ntasks, int nthreads)
{
    if (nthreads > ntasks)
        nthreads = (int)ntasks;
    const fd_fpenv_t env = fd_fpenv_enter();
    if (nthreads > 1 && ntasks <= FD_POOL_HOLD_TASKS
            && fd_pool_now() < atomic_load_explicit(&fd_pool.hold_until, memory_order_relaxed))
        nthreads = 1;
    if (nthreads <= 1 || ntasks >= ((int64_t)1 << 32)
            || pthread_mutex_trylock(&fd_pool.busy) != 0) {
        for (int64_t t = 0; t < ntasks; t++)
            fn(ctx, t);
        fd_fpenv_leave(env);
        return;
    }
    int nw = nthreads - 1 < FD_POOL_MAX ? nthreads - 1 : FD_POOL_MAX;
    nw = fd_pool_start(nw);
    atomic_store_explicit(&fd_pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&fd_pool.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&fd_pool.ntasks, ntasks, memory_order_relaxed);
    atomic_store_explicit(&fd_pool.done, 0, memory_order_relaxed);
    atomic_store_explicit(&fd_pool.want, nw, memory_order_relaxed);
    const uint32_t g = atomic_load(&fd_pool.gen) + 1;
    atomic_store_explicit(&fd_pool.claim, (uint64_t)g << 32, memory_order_release);
    atomic_store(&fd_pool.gen, g);                   /* publishes the job */
    if (atomic_load(&fd_pool.sleepers) > 0) {
        pthread_mutex_lock(&fd_pool.mu);
        pthread_cond_broadcast(&fd_pool.cv);
        pthread_mutex_unlock(&fd_pool.mu);
    }
    const int64_t t0 = fd_pool_now();
    fd_pool_drain(g);
    const int64_t t1 = fd_pool_now();
    /* only tasks a worker claimed and has not finished are left */
    for (int spins = 0; atomic_load_explicit(&fd_pool.done, memory_order_acquire) < ntasks;)
        FD_POOL_RELAX(++spins);
    const int64_t t2 = fd_pool_now(), wait = t2 - t1;
    if (wait > FD_POOL_STALL_MIN_NS && wait > FD_POOL_STALL_X * (t1 - t0)) {
        const int64_t last = atomic_exchange_explicit(&fd_pool.last_stall, t2,
                                                      memory_order_relaxed);
        if (last != 0 && t2 - last < FD_POOL_HOLD_NS)
            atomic_store_explicit(&fd_pool.hold_until, t2 + FD_POOL_HOLD_NS,
                                  memory_order_relaxed);
    }
    pthread_mutex_unlock(&fd_pool.busy);
    fd_fpenv_leave(env);
}

#else  /* no POSIX threads: an OpenMP loop, or serial */

#ifdef _OPENMP
#include <omp.h>
#endif

static void fd_pool_run(fd_pool_fn fn, const void *ctx, int64_t ntasks, int nthreads)
{
    const fd_fpenv_t env = fd_fpenv_enter();
#ifdef _OPENMP
    if (nthreads > 1 && ntasks > 1) {
        int64_t t;
#pragma omp parallel num_threads(nthreads)
        {
            const fd_fpenv_t wenv = fd_fpenv_enter();
#pragma omp for schedule(dynamic)
            for (t = 0; t < ntasks; t++)
                fn(ctx, t);
            fd_fpenv_leave(wenv);
        }
        fd_fpenv_leave(env);
        return;
    }
#endif
    (void)nthreads;
    for (int64_t t = 0; t < ntasks; t++)
        fn(ctx, t);
    fd_fpenv_leave(env);
}
#endif

/* ------------------------------------------------------ output memory */
/* A fresh large result from a plain aligned malloc (XLA's CPU buffers,
 * torch.empty_like) is mmap memory faulted in 4 KiB pages as the tasks
 * first write it (a 64 MiB result: 16384 page faults, most of a call's
 * time in a VM).  NumPy asks the kernel for transparent huge pages on its
 * large arrays (madvise MADV_HUGEPAGE from 4 MiB on, where THP is in
 * "madvise" mode); fd_advise_output does the same for such a result before
 * it is written: a hint about the backing of the pages of [y, y + nbytes)
 * (only the whole 2 MiB pages inside it), which changes no byte. */
#if defined(__linux__)
#include <sys/mman.h>
#endif
#define FD_HUGEPAGE_MIN (4 << 20)

static void fd_advise_output(void *y, int64_t nbytes)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (nbytes < FD_HUGEPAGE_MIN)
        return;
    const uintptr_t huge = (uintptr_t)2 << 20;
    const uintptr_t lo = ((uintptr_t)y + huge - 1) & ~(huge - 1);
    const uintptr_t hi = ((uintptr_t)y + (uintptr_t)nbytes) & ~(huge - 1);
    if (hi > lo)
        (void)madvise((void *)lo, (size_t)(hi - lo), MADV_HUGEPAGE);  /* a hint: errors ignored */
#else
    (void)y;
    (void)nbytes;
#endif
}

#endif /* FASTDROP_POOL_H */
