/*
 * fastdrop: hand-vectorised AVX2 path for contiguous data on x86-64 CPUs
 * without AVX-512, chosen at run time (fd_have_avx2) -- no -march=native.
 *
 * Same scheme as avx512.h at half the width: 8 Philox blocks (64 stream
 * positions) per batch in two interleaved vectors of 4 blocks, one block per
 * 64-bit lane (vpmuludq); 64-bit unpacks put the 16-bit lanes in stream
 * order; unsigned 16-bit compares (sign-flipped signed compares) packed to
 * bytes and moved to a 64-bit keep word; the select is an AND with a lane
 * mask built from the keep bits (a dropped element is +0.0 whatever x is).
 * Ties (lane == Th) are rare and fixed with scalar code on the keep word.
 * The portable auto-vectorised code kept GCC's x86-64-v3 clone scalar in its
 * Philox multiplies (16 Mi float32, 1 thread: 44 ms; this path: see README).
 */
#ifndef FASTDROP_AVX2_H
#define FASTDROP_AVX2_H

#include <stdlib.h>
#include <string.h>
#include "philox.h"
#include "avx512.h"  /* fd_isa_cap */

#if defined(__GNUC__) && defined(__x86_64__) && !defined(FD_NO_AVX2)
#include <immintrin.h>
#define FD_HAVE_AVX2_PATH 1
#define FD_T256 __attribute__((target("avx2,f16c")))
#define FD_BATCH2 64

static int fd_avx2_state = -1;

static inline int fd_have_avx2(void)
{
    return FD_CPU_ONCE(fd_avx2_state, __builtin_cpu_supports("avx2") &&
                       __builtin_cpu_supports("f16c") && fd_isa_cap() >= 1);
}

/* Keep bits of positions j .. j + m - 1 (m <= 64); bits at m and beyond are
 * 0.  Needs Th <= 0xFFFF. */
FD_T256 static inline uint64_t fd_bits64(uint64_t j, int m, uint64_t seed, uint32_t Th,
                                         uint32_t Tl)
{
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    const uint64_t b = j >> 3;
    const int f = (int)(j & 7);
    const __m256i M0 = _mm256_set1_epi64x(FD_PHILOX_M0), M1 = _mm256_set1_epi64x(FD_PHILOX_M1);
    /* lane l of group g holds block b + 4g + {0, 2, 1, 3}[l]: the 64-bit
     * unpacks (within 128-bit halves) then give blocks in stream order */
    const __m256i perm = _mm256_setr_epi64x(0, 2, 1, 3);
    __m256i A0[2], A1[2], A2[2], A3[2];
    for (int g = 0; g < 2; g++) {
        __m256i bb = _mm256_add_epi64(_mm256_set1_epi64x((long long)(b + 4u * (uint64_t)g)), perm);
        A0[g] = bb;
        A1[g] = _mm256_srli_epi64(bb, 32);
        A2[g] = _mm256_setzero_si256();
        A3[g] = _mm256_setzero_si256();
    }
    uint32_t ka = k0, kb = k1;
    for (int r = 0; r < 10; r++) {
        const __m256i K0 = _mm256_set1_epi64x((long long)ka), K1 = _mm256_set1_epi64x((long long)kb);
        for (int g = 0; g < 2; g++) {
            __m256i p0 = _mm256_mul_epu32(A0[g], M0);
            __m256i p1 = _mm256_mul_epu32(A2[g], M1);
            A0[g] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), A1[g]), K0);
            A2[g] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), A3[g]), K1);
            A1[g] = p1;
            A3[g] = p0;
        }
        ka += FD_PHILOX_W0;
        kb += FD_PHILOX_W1;
    }
    const __m256i lo32 = _mm256_set1_epi64x(0xFFFFFFFFll);
    const __m256i flip = _mm256_set1_epi16((short)0x8000);
    const __m256i THf = _mm256_set1_epi16((short)(Th ^ 0x8000u));
    const __m256i TH = _mm256_set1_epi16((short)Th);
    uint64_t w = 0, t = 0;
    for (int g = 0; g < 2; g++) {
        /* per block: (w0 | w1 << 32) and (w2 | w3 << 32), then in order */
        __m256i P = _mm256_or_si256(_mm256_and_si256(A0[g], lo32), _mm256_slli_epi64(A1[g], 32));
        __m256i Q = _mm256_or_si256(_mm256_and_si256(A2[g], lo32), _mm256_slli_epi64(A3[g], 32));
        __m256i V0 = _mm256_unpacklo_epi64(P, Q);   /* blocks 4g + 0, 1 */
        __m256i V1 = _mm256_unpackhi_epi64(P, Q);   /* blocks 4g + 2, 3 */
        __m256i g0 = _mm256_cmpgt_epi16(_mm256_xor_si256(V0, flip), THf);
        __m256i g1 = _mm256_cmpgt_epi16(_mm256_xor_si256(V1, flip), THf);
        __m256i e0 = _mm256_cmpeq_epi16(V0, TH), e1 = _mm256_cmpeq_epi16(V1, TH);
        /* packs interleaves 128-bit halves: [g0 lo, g1 lo | g0 hi, g1 hi] */
        __m256i gk = _mm256_permute4x64_epi64(_mm256_packs_epi16(g0, g1), 0xD8);
        __m256i ek = _mm256_permute4x64_epi64(_mm256_packs_epi16(e0, e1), 0xD8);
        w |= (uint64_t)(uint32_t)_mm256_movemask_epi8(gk) << (32 * g);
        t |= (uint64_t)(uint32_t)_mm256_movemask_epi8(ek) << (32 * g);
    }
    if (f) {
        uint64_t we, te;
        fd_block_bits(b + 8, seed, Th, &we, &te);
        w = (w >> f) | (we << (64 - f));
        t = (t >> f) | (te << (64 - f));
    }
    if (m < 64) {
        const uint64_t keepm = (1ull << m) - 1;
        w &= keepm;
        t &= keepm;
    }
    return __builtin_expect(t != 0, 0) ? fd_fix_ties(w, t, seed, j, Tl) : w;
}

/* keep bytes / packed bits of one batch of m <= 64 elements */
static inline void fd_out_bits64(uint64_t w, int m, uint8_t *keep, uint8_t *packed)
{
    if (keep)
        for (int e = 0; e < m; e++)
            keep[e] = (uint8_t)((w >> e) & 1);
    if (packed)
        memcpy(packed, &w, (size_t)((m + 7) / 8));
}

/* One dtype's forward over n contiguous elements: VL elements per vector,
 * LOADS(p) / STORES(p, v): load to / store from the compute vector VT;
 * MASK(b): the all-ones / zero lane mask of VL keep bits b, as VT. */
#define FD_FWD_AVX2(SUF, T, CT, VL, VT, SET1, LOADS, STORES, MULV, ANDV, MASK)          \
FD_MAYBE_UNUSED                                                                         \
FD_T256 static void fd_fwd_avx2_##SUF(const T *x, T *y, int64_t n, uint64_t j0,         \
        uint64_t seed, uint32_t Th, uint32_t Tl, CT s, uint8_t *keep, uint8_t *packed)  \
{                                                                                       \
    const VT sv = SET1(s);                                                              \
    for (int64_t k = 0; k < n; k += FD_BATCH2) {                                        \
        const int m = (n - k < FD_BATCH2) ? (int)(n - k) : FD_BATCH2;                   \
        for (int q = 0; q < FD_BATCH2 * (int)sizeof(T); q += 64)                        \
            _mm_prefetch((const char *)(x + k) + 8192 + q, _MM_HINT_T1);                \
        const uint64_t w = fd_bits64(j0 + (uint64_t)k, m, seed, Th, Tl);                \
        const T *xp = x + k;                                                            \
        T *yp = y + k;                                                                  \
        int e = 0;                                                                      \
        for (; e + VL <= m; e += VL)                                                    \
            STORES(yp + e, ANDV(MULV(LOADS(xp + e), sv), MASK((uint32_t)(w >> e))));    \
        for (; e < m; e++) {                                                            \
            CT v = (CT)FD_AVX2_TOC_##SUF(xp[e]) * s;                                    \
            yp[e] = ((w >> e) & 1) ? FD_AVX2_FROMC_##SUF(v) : (T)0;                     \
        }                                                                               \
        if (keep || packed)                                                             \
            fd_out_bits64(w, m, keep ? keep + k : NULL, packed ? packed + k / 8 : NULL); \
    }                                                                                   \
}

FD_T256 static inline __m256 fd_mask8_ps(uint32_t b)
{
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(
        _mm256_and_si256(_mm256_set1_epi32((int)b), sel), sel));
}
FD_T256 static inline __m256d fd_mask4_pd(uint32_t b)
{
    const __m256i sel = _mm256_setr_epi64x(1, 2, 4, 8);
    return _mm256_castsi256_pd(_mm256_cmpeq_epi64(
        _mm256_and_si256(_mm256_set1_epi64x((long long)b), sel), sel));
}
FD_T256 static inline __m256 fd_load_ph8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
FD_T256 static inline void fd_store_ph8(uint16_t *p, __m256 v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
FD_T256 static inline float fd_h2f_avx2(uint16_t h)
{
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}
FD_T256 static inline uint16_t fd_f2h_avx2(float f)
{
    return (uint16_t)_mm_cvtsi128_si32(_mm_cvtps_ph(_mm_set_ss(f),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#define FD_AVX2_TOC_f32(v) (v)
#define FD_AVX2_FROMC_f32(v) (v)
#define FD_AVX2_TOC_f64(v) (v)
#define FD_AVX2_FROMC_f64(v) (v)
#define FD_AVX2_TOC_f16(v) fd_h2f_avx2(v)
#define FD_AVX2_FROMC_f16(v) fd_f2h_avx2(v)

FD_FWD_AVX2(f32, float, float, 8, __m256, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps,
            _mm256_mul_ps, _mm256_and_ps, fd_mask8_ps)
FD_FWD_AVX2(f64, double, double, 4, __m256d, _mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd,
            _mm256_mul_pd, _mm256_and_pd, fd_mask4_pd)
FD_FWD_AVX2(f16, uint16_t, float, 8, __m256, _mm256_set1_ps, fd_load_ph8, fd_store_ph8,
            _mm256_mul_ps, _mm256_and_ps, fd_mask8_ps)

FD_MAYBE_UNUSED
FD_T256 static void fd_mask_avx2(int64_t n, uint64_t j0, uint64_t seed, uint32_t Th,
                                 uint32_t Tl, uint8_t *keep, uint8_t *packed)
{
    for (int64_t k = 0; k < n; k += FD_BATCH2) {
        const int m = (n - k < FD_BATCH2) ? (int)(n - k) : FD_BATCH2;
        fd_out_bits64(fd_bits64(j0 + (uint64_t)k, m, seed, Th, Tl), m,
                      keep ? keep + k : NULL, packed ? packed + k / 8 : NULL);
    }
}

#else
static inline int fd_have_avx2(void) { return 0; }
#endif

#endif /* FASTDROP_AVX2_H */
