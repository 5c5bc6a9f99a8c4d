/*
 * The floating-point environment the kernels run in: round to nearest,
 * subnormals kept as inputs and results (docs/spec.md §4), whatever the
 * calling thread had set (XLA runs its computations with flush-to-zero:
 * MXCSR FTZ/DAZ on x86, FPCR FZ on AArch64).  fd_fpenv_enter sets it and
 * returns the state to restore with fd_fpenv_leave; a few cycles.
 */
#ifndef FASTDROP_FPENV_H
#define FASTDROP_FPENV_H

#include <stdint.h>

#if defined(__SSE__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 1)
#include <xmmintrin.h>
#define FD_FPENV_MXCSR 1
#endif

typedef struct { uint64_t saved; } fd_fpenv_t;

static inline fd_fpenv_t fd_fpenv_enter(void)
{
    fd_fpenv_t e = {0};
#if defined(FD_FPENV_MXCSR)
    e.saved = _mm_getcsr();
    /* FTZ (bit 15), rounding control (bits 13-14), DAZ (bit 6) cleared */
    if (e.saved & 0xE040u)
        _mm_setcsr((unsigned int)e.saved & ~0xE040u);
#elif defined(__aarch64__) && defined(__GNUC__)
    uint64_t fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    e.saved = fpcr;
    /* FZ (bit 24), RMode (bits 22-23), FZ16 (bit 19) cleared */
    fpcr &= ~((UINT64_C(1) << 24) | (UINT64_C(3) << 22) | (UINT64_C(1) << 19));
    if (fpcr != e.saved)
        __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
#endif
    return e;
}

static inline void fd_fpenv_leave(fd_fpenv_t e)
{
#if defined(FD_FPENV_MXCSR)
    if (e.saved & 0xE040u)
        _mm_setcsr((unsigned int)e.saved);
#elif defined(__aarch64__) && defined(__GNUC__)
    __asm__ __volatile__("msr fpcr, %0" : : "r"(e.saved));
#else
    (void)e;
#endif
}

#endif /* FASTDROP_FPENV_H */
