/*
 * fastdrop mask stream v1 -- header-only C core (docs/spec.md §1).
 *
 * Philox4x32-10 (Random123), the threshold, the exact v1 keep decision for
 * one stream position, and a structure-of-arrays batch generator that
 * computes FD_NB Philox blocks at once (8 x 16-bit lanes per block) so the
 * compiler vectorises it.  Everything is `static inline`: include this file
 * from any C or Cython code (see api.pxd).
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

/* Blocks per batch (a batch covers 8 * FD_NB = 128 stream positions). */
#define FD_NB 16
#define FD_BATCH (8 * FD_NB)

/* One Philox4x32-10 block, in place on the counter c. */
static inline void fd_philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    uint32_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)c0 * FD_PHILOX_M0;
        uint64_t p1 = (uint64_t)c2 * FD_PHILOX_M1;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += FD_PHILOX_W0;
        k1 += FD_PHILOX_W1;
    }
    c[0] = c0; c[1] = c1; c[2] = c2; c[3] = c3;
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

/* Resolve the ties flagged in t (bit e: position j + e) in the keep word w
 * with the low 16-bit lanes. */
static inline uint64_t fd_fix_ties(uint64_t w, uint64_t t, uint64_t seed, uint64_t j,
                                   uint32_t Tl)
{
    while (t) {
        int e = __builtin_ctzll(t);
        t &= t - 1;
        if (fd_lane16(seed, j + (uint64_t)e, 1) >= Tl) w |= 1ull << e;
        else w &= ~(1ull << e);
    }
    return w;
}

/* Marks the static (not inline) functions of these headers: a file that
 * includes them and calls only some (a cimporter of api.pxd, one header on
 * its own) must not get -Wunused-function.  No effect on the code made. */
#if defined(__GNUC__)
#define FD_MAYBE_UNUSED __attribute__((unused))
#else
#define FD_MAYBE_UNUSED
#endif

/* Run a CPU probe once and cache its result in *state (-1: not yet). */
#define FD_CPU_ONCE(state, probe) \
    ((state) >= 0 ? (state) : ((state) = (__builtin_cpu_init(), (probe) ? 1 : 0)))

/* 16-bit lanes of a batch: h[8 * i + l] is lane l of block b0 + i.  One
 * spare block so a batch may start anywhere inside its first block. */
typedef union {
    uint32_t w[4 * (FD_NB + 1)];
    uint16_t h[8 * (FD_NB + 1)];
} fd_lanes_t;

/* Philox for blocks b0 .. b0 + FD_NB - 1 with counter word c2, structure of
 * arrays (vectorisable), written interleaved to w[4 * i + word]. */
static inline void fd_philox_batch(uint64_t b0, uint32_t c2, uint32_t k0, uint32_t k1,
                                   uint32_t *w)
{
    uint32_t x0[FD_NB], x1[FD_NB], x2[FD_NB], x3[FD_NB];
    for (int i = 0; i < FD_NB; i++) {
        uint64_t b = b0 + (uint64_t)i;
        x0[i] = (uint32_t)b;
        x1[i] = (uint32_t)(b >> 32);
        x2[i] = c2;
        x3[i] = 0u;
    }
    for (int r = 0; r < 10; r++) {
        for (int i = 0; i < FD_NB; i++) {
            uint64_t p0 = (uint64_t)x0[i] * FD_PHILOX_M0;
            uint64_t p1 = (uint64_t)x2[i] * FD_PHILOX_M1;
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ x1[i] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ x3[i] ^ k1;
            x1[i] = (uint32_t)p1;
            x3[i] = (uint32_t)p0;
            x0[i] = n0;
            x2[i] = n2;
        }
        k0 += FD_PHILOX_W0;
        k1 += FD_PHILOX_W1;
    }
    for (int i = 0; i < FD_NB; i++) {
        w[4 * i + 0] = x0[i];
        w[4 * i + 1] = x1[i];
        w[4 * i + 2] = x2[i];
        w[4 * i + 3] = x3[i];
    }
}

/* High-half lanes for stream positions j .. j + FD_BATCH - 1: returns the
 * index f such that L->h[f + e] is the lane of position j + e. */
static inline int fd_batch_lanes(fd_lanes_t *L, uint64_t j, uint64_t seed)
{
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    uint64_t b = j >> 3;
    int f = (int)(j & 7);
    fd_philox_batch(b, 0u, k0, k1, L->w);
    if (f) {
        uint64_t bb = b + FD_NB;
        uint32_t c[4] = {(uint32_t)bb, (uint32_t)(bb >> 32), 0u, 0u};
        fd_philox4x32_10(c, k0, k1);
        L->w[4 * FD_NB + 0] = c[0];
        L->w[4 * FD_NB + 1] = c[1];
        L->w[4 * FD_NB + 2] = c[2];
        L->w[4 * FD_NB + 3] = c[3];
    }
    return f;
}

/* Keep bytes (0/1) for m <= FD_BATCH positions starting at j whose high
 * lanes are h[0 .. m-1]; ties (h == Th) resolved with the low lane.  Bytes
 * m .. FD_BATCH-1 are set to 0. */
static inline void fd_decide(const uint16_t *h, int m, uint64_t j, uint64_t seed,
                             uint32_t Th, uint32_t Tl, uint8_t *kk)
{
    int tie = 0;
    if (m == FD_BATCH) {
        for (int e = 0; e < FD_BATCH; e++) {
            kk[e] = (uint8_t)(h[e] > Th);
            tie |= (h[e] == Th);
        }
    } else {
        for (int e = 0; e < m; e++) {
            kk[e] = (uint8_t)(h[e] > Th);
            tie |= (h[e] == Th);
        }
        for (int e = m; e < FD_BATCH; e++)
            kk[e] = 0;
    }
    if (__builtin_expect(tie, 0)) {
        for (int e = 0; e < m; e++)
            if (h[e] == Th)
                kk[e] = (uint8_t)(fd_lane16(seed, j + (uint64_t)e, 1) >= Tl);
    }
}

/* Pack nbytes * 8 keep bytes (0/1) into little-endian bits. */
static inline void fd_pack(const uint8_t *kk, int nbytes, uint8_t *out)
{
    for (int q = 0; q < nbytes; q++) {
        uint64_t v;
        __builtin_memcpy(&v, kk + 8 * q, 8);
        out[q] = (uint8_t)((v * 0x0102040810204080ull) >> 56);
    }
}

#endif /* FASTDROP_PHILOX_H */
