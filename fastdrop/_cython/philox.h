/*
 * fastdrop mask stream v1 -- the scalar definition (docs/spec.md §1).
 *
 * Philox4x32-10 (Random123) with its scalar round, the threshold, the exact
 * v1 keep decision for one stream position, and the scalar helpers every
 * ISA leaf shares (one block's keep and tie bits; tie resolution).  The
 * batched generators are the ISA leaves' (leaf_portable.h, leaf_avx2.h,
 * leaf_avx512.h).  Everything is `static inline`: include this file from
 * any C or Cython code (see api.pxd).
 */
#ifndef FASTDROP_PHILOX_H
#define FASTDROP_PHILOX_H

#include <stdint.h>
#include <math.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fastdrop's lane layout assumes a little-endian machine"
#endif

#define FD_PHILOX_M0 0xD2511F53u
#define FD_PHILOX_M1 0xCD9E8D57u
#define FD_PHILOX_W0 0x9E3779B9u
#define FD_PHILOX_W1 0xBB67AE85u

/* One Philox4x32 round on the counter (c0, c1, c2, c3) with the round key
 * (k0, k1): the scalar round, used by every block computed one at a time and
 * by the portable batch generator (which the compiler vectorises). */
static inline void fd_round(uint32_t *c0, uint32_t *c1, uint32_t *c2, uint32_t *c3,
                            uint32_t k0, uint32_t k1)
{
    uint64_t p0 = (uint64_t)*c0 * FD_PHILOX_M0;
    uint64_t p1 = (uint64_t)*c2 * FD_PHILOX_M1;
    *c0 = (uint32_t)(p1 >> 32) ^ *c1 ^ k0;
    *c2 = (uint32_t)(p0 >> 32) ^ *c3 ^ k1;
    *c1 = (uint32_t)p1;
    *c3 = (uint32_t)p0;
}

/* One Philox4x32-10 block, in place on the counter c. */
static inline void fd_philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    for (int r = 0; r < 10; r++) {
        fd_round(&c[0], &c[1], &c[2], &c[3], k0, k1);
        k0 += FD_PHILOX_W0;
        k1 += FD_PHILOX_W1;
    }
}

/* T = rint(p * 2^32) for p in [0, 1] (an integer in [0, 2^32]). */
static inline uint64_t fd_threshold(double p)
{
    return (uint64_t)rint(p * 4294967296.0);
}

/* The 16-bit lane of stream position j (c2 = 0: high half, 1: low half). */
static inline uint32_t fd_lane16(uint64_t seed, uint64_t j, uint32_t c2)
{
    uint64_t b = j >> 3;
    uint32_t c[4] = {(uint32_t)b, (uint32_t)(b >> 32), c2, 0u};
    fd_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    return (c[(j & 7) >> 1] >> (16 * (unsigned)(j & 1))) & 0xFFFFu;
}

/* The v1 keep decision for stream position j; Th = T >> 16, Tl = T & 0xFFFF. */
static inline int fd_keep_at(uint64_t seed, uint64_t j, uint32_t Th, uint32_t Tl)
{
    uint32_t hi = fd_lane16(seed, j, 0);
    if (hi != Th)
        return hi > Th;
    return fd_lane16(seed, j, 1) >= Tl;
}

/* Keep (> Th) and tie (== Th) bits of the 8 high lanes of block bb: bit l
 * of *gt / *eq is lane l. */
static inline void fd_block_bits(uint64_t bb, uint64_t seed, uint32_t Th, uint64_t *gt,
                                 uint64_t *eq)
{
    uint32_t c[4] = {(uint32_t)bb, (uint32_t)(bb >> 32), 0u, 0u};
    fd_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    uint64_t g = 0, e = 0;
    for (int l = 0; l < 8; l++) {
        uint32_t h = (c[l >> 1] >> (16 * (l & 1))) & 0xFFFFu;
        g |= (uint64_t)(h > Th) << l;
        e |= (uint64_t)(h == Th) << l;
    }
    *gt = g;
    *eq = e;
}

/* Index of the lowest set bit of t != 0. */
#if defined(__GNUC__)
#define fd_ctz64(t) __builtin_ctzll(t)
#elif defined(_MSC_VER) && defined(_M_X64)
#include <intrin.h>
static inline int fd_ctz64(uint64_t t)
{
    unsigned long i;
    _BitScanForward64(&i, t);
    return (int)i;
}
#else
static inline int fd_ctz64(uint64_t t)
{
    int e = 0;
    while (!(t & 1)) { t >>= 1; e++; }
    return e;
}
#endif

/* A branch hint: x is rarely true (nothing without GCC/Clang). */
#if defined(__GNUC__)
#define FD_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define FD_UNLIKELY(x) (x)
#endif

/* Marks the static (not inline) functions of these headers: a file that
 * includes them and calls only some (a cimporter of api.pxd, one header on
 * its own) must not get -Wunused-function.  No effect on the code made. */
#if defined(__GNUC__)
#define FD_MAYBE_UNUSED __attribute__((unused))
#else
#define FD_MAYBE_UNUSED
#endif

/* A function compiled once and called, never inlined (the normal-variate
 * batch of each ISA, kernels.h: inlined, it was copied into every dtype's
 * noise kernel). */
#if defined(__GNUC__)
#define FD_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define FD_NOINLINE __declspec(noinline)
#else
#define FD_NOINLINE
#endif

/* Resolve the ties flagged in t (bit e: position j + e) in the keep word w
 * with the low 16-bit lanes (rare: out of line). */
static FD_NOINLINE FD_MAYBE_UNUSED uint64_t fd_fix_ties(uint64_t w, uint64_t t, uint64_t seed,
                                                       uint64_t j, uint32_t Tl)
{
    while (t) {
        int e = fd_ctz64(t);
        t &= t - 1;
        if (fd_lane16(seed, j + (uint64_t)e, 1) >= Tl) w |= 1ull << e;
        else w &= ~(1ull << e);
    }
    return w;
}

/* Not cloned by GCC's interprocedural constant propagation either (with
 * FD_NOINLINE: one copy).  GCC made a copy of the AVX2 keep bits per
 * constant prefetch length, three of 5 KB. */
#if defined(__GNUC__) && !defined(__clang__)
#define FD_NOCLONE __attribute__((noclone))
#else
#define FD_NOCLONE
#endif

/* Unroll the next loop by 8 (for an 8-trip loop: completely), where the
 * compiler has the pragma. */
#if defined(__clang__)
#define FD_UNROLL8 _Pragma("unroll 8")
#elif defined(__GNUC__) && __GNUC__ >= 8
#define FD_UNROLL8 _Pragma("GCC unroll 8")
#else
#define FD_UNROLL8
#endif

/* Prefetch the cache line at p into L2 (a hint; nothing without GCC/Clang). */
#if defined(__GNUC__)
#define FD_PREFETCH_L2(p) __builtin_prefetch((p), 0, 2)
#else
#define FD_PREFETCH_L2(p) ((void)(p))
#endif

/* The ISA leaves' functions: always inlined into the skeleton's loops, so
 * their constants stay in registers across batches. */
#if defined(__GNUC__)
#define FD_LEAF static inline __attribute__((always_inline))
#else
#define FD_LEAF static inline
#endif

/* Keep (w) and tie (t) bits of the nb blocks from b on (8 per word, lane l
 * of block i at bit 8 i + l), block by block: the SIMD leaves' rare cases
 * (blocks crossing a multiple of 2^32, the extra block of a batch that
 * starts inside one), out of line: inlined, they were 1-2 KB of each of
 * the leaves' call sites. */
static FD_NOINLINE FD_MAYBE_UNUSED void fd_blocks_bits(uint64_t b, int nb, uint64_t seed,
                                                       uint32_t Th, uint64_t *w, uint64_t *t)
{
    for (int q = 0; 8 * q < nb; q++) w[q] = t[q] = 0;
    for (int i = 0; i < nb; i++) {
        uint64_t gw, ge;
        fd_block_bits(b + (uint64_t)i, seed, Th, &gw, &ge);
        w[i >> 3] |= gw << (8 * (i & 7));
        t[i >> 3] |= ge << (8 * (i & 7));
    }
}

#endif /* FASTDROP_PHILOX_H */
