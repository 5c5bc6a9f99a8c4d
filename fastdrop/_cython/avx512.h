/*
 * fastdrop: hand-vectorised AVX-512 (F, BW, VL) path for contiguous data,
 * chosen at run time (fd_have_avx512) -- no -march=native needed.
 *
 * 32 Philox blocks (256 stream positions) per batch in four interleaved
 * vectors of 8 blocks, one block per 64-bit lane (vpmuludq gives the whole
 * 32x32->64 product; only low halves are words); two 64-bit unpacks per
 * group put the 16-bit lanes in element order; 16-bit compares straight to mask registers, which are
 * the little-endian packed bits; zero-masked multiplies for the select (a
 * dropped element is +0.0 whatever x holds).  Ties (lane == Th) are rare and
 * fixed with scalar code on the bit masks.
 */
#ifndef FASTDROP_AVX512_H
#define FASTDROP_AVX512_H

#include "philox.h"

#include <stdlib.h>
#include <string.h>

/* FASTDROP_MAX_ISA=avx2 or =portable (read once) caps the hand-written
 * paths, so tests and users can run the narrower ones on a wider CPU. */
static int fd_isa_cap_state = -1;

static inline int fd_isa_cap(void)  /* 2: AVX-512, 1: AVX2, 0: portable */
{
    int c = fd_isa_cap_state;
    if (c < 0) {
        const char *e = getenv("FASTDROP_MAX_ISA");
        c = 2;
        if (e && strcmp(e, "avx2") == 0) c = 1;
        else if (e && strcmp(e, "portable") == 0) c = 0;
        fd_isa_cap_state = c;
    }
    return c;
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(FD_NO_AVX512)
#include <immintrin.h>
#define FD_HAVE_AVX512_PATH 1
#define FD_T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c")))
#define FD_ABATCH 256
/* software prefetch of the input this many bytes ahead, into L2 (T1): lets
 * one thread overlap Philox arithmetic with memory traffic.  Measured on the
 * 2-core AVX-512 VM, 16 Mi float32, 1 thread, interleaved with the stream:
 * T1 prefetch 0.84-0.89 of the stream, T0 prefetch 0.68-0.70, none 0.58-0.64
 * (an L1 prefetch that misses holds a fill buffer for the whole memory
 * latency; L2 prefetches queue deeper).  4-64 KiB ahead measured the same.
 * fd_bits256 issues them, spread over its rounds. */
#define FD_PF_BYTES 8192

static int fd_avx512_state = -1;

static inline int fd_have_avx512(void)
{
    return FD_CPU_ONCE(fd_avx512_state,
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("f16c") && fd_isa_cap() >= 2);
}

/* One Philox round on the 4 groups (keys ka, kb). */
#define FD_ROUND4(ka, kb) do {                                                          \
        const __m512i K0_ = _mm512_set1_epi64((long long)(ka));                         \
        const __m512i K1_ = _mm512_set1_epi64((long long)(kb));                         \
        for (int g = 0; g < 4; g++) {                                                   \
            __m512i p0 = _mm512_mul_epu32(A0[g], M0);                                   \
            __m512i p1 = _mm512_mul_epu32(A2[g], M1);                                   \
            A0[g] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), A1[g], K0_, 0x96); \
            A2[g] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), A3[g], K1_, 0x96); \
            A1[g] = p1;                                                                 \
            A3[g] = p0;                                                                 \
        }                                                                               \
    } while (0)

/* Keep bits of positions j .. j + m - 1 (m <= 256) into bits[0..3]; bits at
 * m and beyond are 0.  Needs Th <= 0xFFFF.  The pfl cache lines (a multiple
 * of 8) from pf on are prefetched into L2, spread over rounds 3-10 (pf may
 * be NULL): measured 2-3% faster than one burst before the batch. */
FD_T512 static inline void fd_bits256(uint64_t j, int m, uint64_t seed, uint32_t Th,
                                      uint32_t Tl, uint64_t bits[4], const char *pf, int pfl)
{
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    const uint64_t b = j >> 3;
    const int f = (int)(j & 7);
    const __m512i M0 = _mm512_set1_epi64(FD_PHILOX_M0), M1 = _mm512_set1_epi64(FD_PHILOX_M1);
    /* 4 groups of 8 blocks, one block per 64-bit lane (only the low 32 bits
     * of a lane are a Philox word; vpmuludq ignores the high ones).  Lane l
     * of group g holds block b + 8g + {0,4,1,5,2,6,3,7}[l], so that the
     * final 64-bit unpacks put the blocks in stream order. */
    const __m512i perm = _mm512_set_epi64(7, 3, 6, 2, 5, 1, 4, 0);
    __m512i A0[4], A1[4], A2[4], A3[4];
    for (int g = 0; g < 4; g++)
        A0[g] = _mm512_add_epi64(_mm512_set1_epi64((long long)(b + 8u * (uint64_t)g)), perm);
    if (((b + 31) >> 32) == (b >> 32)) {
        /* Rounds 1-2 when the 32 blocks share c1 = b >> 32 (all but one
         * batch in 2^27): with c2 = c3 = 0, round 1 leaves c0 = c1 ^ k0 the
         * same in every lane, so round 2's first product is one scalar. */
        const uint32_t ka2 = k0 + FD_PHILOX_W0, kb2 = k1 + FD_PHILOX_W1;
        const uint64_t P = (uint64_t)((uint32_t)(b >> 32) ^ k0) * FD_PHILOX_M0;
        const __m512i KB = _mm512_set1_epi64((long long)k1);
        const __m512i KA2 = _mm512_set1_epi64((long long)ka2);
        const __m512i HB = _mm512_set1_epi64((long long)((uint32_t)(P >> 32) ^ kb2));
        const __m512i LP = _mm512_set1_epi64((long long)(uint32_t)P);
        for (int g = 0; g < 4; g++) {
            __m512i p0 = _mm512_mul_epu32(A0[g], M0);                       /* round 1 */
            __m512i p1 = _mm512_mul_epu32(_mm512_xor_si512(_mm512_srli_epi64(p0, 32), KB), M1);
            A0[g] = _mm512_xor_si512(_mm512_srli_epi64(p1, 32), KA2);         /* round 2 */
            A1[g] = p1;
            A2[g] = _mm512_xor_si512(p0, HB);
            A3[g] = LP;
        }
    } else {
        for (int g = 0; g < 4; g++) {
            A1[g] = _mm512_srli_epi64(A0[g], 32);   /* c1 = b >> 32 */
            A2[g] = _mm512_setzero_si512();         /* c2 = 0: the high 16-bit lanes */
            A3[g] = _mm512_setzero_si512();
        }
        FD_ROUND4(k0, k1);
        FD_ROUND4(k0 + FD_PHILOX_W0, k1 + FD_PHILOX_W1);
    }
    uint32_t ka = k0 + 2 * FD_PHILOX_W0, kb = k1 + 2 * FD_PHILOX_W1;
    for (int r = 2; r < 10; r++) {
        if (pf)
            for (int i = 0; i < pfl / 8; i++)
                _mm_prefetch(pf + 64 * ((r - 2) * (pfl / 8) + i), _MM_HINT_T1);
        FD_ROUND4(ka, kb);
        ka += FD_PHILOX_W0;
        kb += FD_PHILOX_W1;
    }
    __m512i V[8];
    for (int g = 0; g < 4; g++) {
        /* per block: (w0 | w1 << 32) and (w2 | w3 << 32), then in order */
        __m512i P = _mm512_mask_blend_epi32(0xAAAA, A0[g], _mm512_slli_epi64(A1[g], 32));
        __m512i Q = _mm512_mask_blend_epi32(0xAAAA, A2[g], _mm512_slli_epi64(A3[g], 32));
        V[2 * g] = _mm512_unpacklo_epi64(P, Q);       /* blocks 8g + 0..3 */
        V[2 * g + 1] = _mm512_unpackhi_epi64(P, Q);   /* blocks 8g + 4..7 */
    }
    const __m512i TH = _mm512_set1_epi16((short)Th);
    uint64_t w[5], t[5];
    /* 64-bit keep words joined in mask registers (kunpckdq); ties only
     * OR-ed there, their words made in the rare batch that has one (the
     * compiler's own merging went through vector inserts: ~40 more ops) */
    __mmask32 tor = 0;
    for (int q = 0; q < 4; q++) {
        w[q] = _cvtmask64_u64(_mm512_kunpackd(
            (__mmask64)_mm512_cmpgt_epu16_mask(V[2 * q + 1], TH),
            (__mmask64)_mm512_cmpgt_epu16_mask(V[2 * q], TH)));
        tor = _kor_mask32(tor, _kor_mask32(_mm512_cmpeq_epu16_mask(V[2 * q], TH),
                                           _mm512_cmpeq_epu16_mask(V[2 * q + 1], TH)));
    }
    const int anytie = _cvtmask32_u32(tor) != 0;
    for (int q = 0; q < 4; q++)
        t[q] = anytie ? _cvtmask64_u64(_mm512_kunpackd(
                            (__mmask64)_mm512_cmpeq_epu16_mask(V[2 * q + 1], TH),
                            (__mmask64)_mm512_cmpeq_epu16_mask(V[2 * q], TH)))
                      : 0;
    if (f) {
        fd_block_bits(b + 32, seed, Th, &w[4], &t[4]);
        for (int q = 0; q < 4; q++) {
            w[q] = (w[q] >> f) | (w[q + 1] << (64 - f));
            t[q] = (t[q] >> f) | (t[q + 1] << (64 - f));
        }
    }
    if (m < FD_ABATCH) {
        for (int q = 0; q < 4; q++) {
            int lo = 64 * q;
            uint64_t keepm = m <= lo ? 0 : (m - lo >= 64 ? ~0ull : ((1ull << (m - lo)) - 1));
            w[q] &= keepm;
            t[q] &= keepm;
        }
    }
    if (__builtin_expect((t[0] | t[1] | t[2] | t[3]) != 0, 0))
        for (int q = 0; q < 4; q++)
            w[q] = fd_fix_ties(w[q], t[q], seed, j + (uint64_t)(64 * q), Tl);
    bits[0] = w[0]; bits[1] = w[1]; bits[2] = w[2]; bits[3] = w[3];
}

/* keep bytes / packed bits outputs of one batch of m elements */
FD_T512 static inline void fd_out_bits256(const uint64_t bits[4], int m, uint8_t *keep,
                                          uint8_t *packed)
{
    if (keep) {
        const __m512i one = _mm512_set1_epi8(1);
        for (int q = 0; q < 4 && 64 * q < m; q++) {
            __m512i v = _mm512_maskz_mov_epi8(bits[q], one);
            int r = m - 64 * q;
            if (r >= 64) _mm512_storeu_si512((void *)(keep + 64 * q), v);
            else _mm512_mask_storeu_epi8(keep + 64 * q, (__mmask64)((1ull << r) - 1), v);
        }
    }
    if (packed)
        memcpy(packed, bits, (size_t)((m + 7) / 8));
}

#define FD_TAILMASK(r, w) ((r) >= (w) ? (uint32_t)((1ull << (w)) - 1) : (uint32_t)((1ull << (r)) - 1))

/* One dtype's forward over a contiguous run: VL elements per vector (mask type
 * MT, compute vector VT).  LOAD(lm, p): zero-masked load converted to the
 * compute type; MUL(km, v, s): zero-masked multiply (a dropped element is
 * +0.0 whatever x holds); STORE(p, lm, v): masked store converted back;
 * FD_STREAM_SUF(p, v): non-temporal store of a whole vector (full batches, nt). */
#define FD_FWD_AVX512_RUN(SUF, T, CT, VL, MT, VT, SET1, LOAD, MUL, STORE)             \
FD_MAYBE_UNUSED                                                                         \
FD_T512 static void fd_fwd_avx512_##SUF##_run(const T *x, T *y, int64_t n, uint64_t j0, \
        uint64_t seed, uint32_t Th, uint32_t Tl, CT s, uint8_t *keep, uint8_t *packed,  \
        int nt)                                                                         \
{                                                                                       \
    const VT sv = SET1(s);                                                              \
    uint64_t bits[4];                                                                   \
    for (int64_t k = 0; k < n; k += FD_ABATCH) {                                        \
        int m = (n - k < FD_ABATCH) ? (int)(n - k) : FD_ABATCH;                         \
        const T *xp = x + k;                                                            \
        T *yp = y + k;                                                                  \
        fd_bits256(j0 + (uint64_t)k, m, seed, Th, Tl, bits,                             \
                   (const char *)xp + FD_PF_BYTES, FD_ABATCH * (int)sizeof(T) / 64);    \
        const int stream = nt && m == FD_ABATCH;                                        \
        for (int q = 0; VL * q < m; q++) {                                              \
            MT km = (MT)(bits[(VL * q) >> 6] >> ((VL * q) & 63));                       \
            MT lm = (MT)FD_TAILMASK(m - VL * q, VL);                                    \
            VT v = MUL(km, LOAD(lm, xp + VL * q), sv);                                  \
            if (stream) FD_STREAM_##SUF(yp + VL * q, v);                                \
            else STORE(yp + VL * q, lm, v);                                             \
        }                                                                               \
        if (keep || packed)                                                             \
            fd_out_bits256(bits, m, keep ? keep + k : NULL, packed ? packed + k / 8 : NULL); \
    }                                                                                   \
    if (nt) _mm_sfence();                                                               \
}

#define FD_LOAD_PS(lm, p) _mm512_maskz_loadu_ps((lm), (p))
#define FD_STORE_PS(p, lm, v) _mm512_mask_storeu_ps((p), (lm), (v))
#define FD_LOAD_PD(lm, p) _mm512_maskz_loadu_pd((lm), (p))
#define FD_STORE_PD(p, lm, v) _mm512_mask_storeu_pd((p), (lm), (v))
#define FD_TO_PH(v) _mm512_cvtps_ph((v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define FD_LOAD_PH(lm, p) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((lm), (p)))
#define FD_STORE_PH(p, lm, v) _mm256_mask_storeu_epi16((p), (lm), FD_TO_PH(v))
#define FD_STREAM_f32(p, v) _mm512_stream_ps((p), (v))
#define FD_STREAM_f64(p, v) _mm512_stream_pd((p), (v))
#define FD_STREAM_f16(p, v) _mm256_stream_si256((__m256i *)(p), FD_TO_PH(v))

/* The per-dtype arguments (SUF, T, CT, VL, MT, VT, SET1, LOAD, MUL, STORE) of
 * the kernel templates below; FD_FOR_DTYPES(M) instantiates M for all three. */
#define FD_ARGS_F32 (f32, float, float, 16, __mmask16, __m512, _mm512_set1_ps, FD_LOAD_PS, \
                     _mm512_maskz_mul_ps, FD_STORE_PS)
#define FD_ARGS_F64 (f64, double, double, 8, __mmask8, __m512d, _mm512_set1_pd, FD_LOAD_PD, \
                     _mm512_maskz_mul_pd, FD_STORE_PD)
#define FD_ARGS_F16 (f16, uint16_t, float, 16, __mmask16, __m512, _mm512_set1_ps, FD_LOAD_PH, \
                     _mm512_maskz_mul_ps, FD_STORE_PH)
#define FD_CALL(M, ARGS) M ARGS
#define FD_FOR_DTYPES(M) FD_CALL(M, FD_ARGS_F32) FD_CALL(M, FD_ARGS_F64) FD_CALL(M, FD_ARGS_F16)

FD_FOR_DTYPES(FD_FWD_AVX512_RUN)

/* Forward over n contiguous elements.  With nt (a large out-of-place output),
 * the output is written with non-temporal stores once it is 64-byte aligned:
 * the few head elements before that go through the ordinary stores. */
#define FD_FWD_AVX512_WRAP(SUF, T, CT)                                                  \
FD_MAYBE_UNUSED                                                                         \
FD_T512 static void fd_fwd_avx512_##SUF(const T *x, T *y, int64_t n, uint64_t j0,        \
        uint64_t seed, uint32_t Th, uint32_t Tl, CT s, uint8_t *keep, uint8_t *packed,  \
        int nt)                                                                         \
{                                                                                       \
    int64_t h = 0;                                                                      \
    if (nt) {                                                                           \
        uintptr_t a = (uintptr_t)y & 63;                                                \
        if (a % sizeof(T)) nt = 0;                                                      \
        else h = (int64_t)(((64 - a) & 63) / sizeof(T));                                \
        if (h > n) h = n;                                                               \
        /* keep the head's mask bytes whole: packed output needs h % 8 == 0 */          \
        if (packed && h % 8) { nt = 0; h = 0; }                                         \
    }                                                                                   \
    if (h)                                                                              \
        fd_fwd_avx512_##SUF##_run(x, y, h, j0, seed, Th, Tl, s, keep, packed, 0);       \
    fd_fwd_avx512_##SUF##_run(x + h, y + h, n - h, j0 + (uint64_t)h, seed, Th, Tl, s,   \
                              keep ? keep + h : NULL, packed ? packed + h / 8 : NULL, nt); \
}
FD_FWD_AVX512_WRAP(f32, float, float)
FD_FWD_AVX512_WRAP(f64, double, double)
FD_FWD_AVX512_WRAP(f16, uint16_t, float)

/* Stored packed mask over a contiguous run: out[k] = bit(base + k) ? x[k] * s
 * : +0.0, VL elements per zero-masked multiply, their VL mask bits read from
 * the (at most 3) bytes that hold them; the packed array is read only up to
 * its byte of bit base + n - 1. */
#define FD_APPLY_PACKED_AVX512(SUF, T, CT, VL, MT, VT, SET1, LOAD, MUL, STORE)         \
FD_MAYBE_UNUSED                                                                         \
FD_T512 static void fd_apply_packed_avx512_##SUF(const T *x, T *y, int64_t n,          \
        uint64_t base, const uint8_t *mp, CT s)                                         \
{                                                                                       \
    const VT sv = SET1(s);                                                              \
    const uint64_t nbytes = (base + (uint64_t)n + 7) >> 3;                              \
    for (int64_t k = 0; k < n; k += VL) {                                               \
        const uint64_t i = base + (uint64_t)k, byte = i >> 3;                           \
        uint32_t w = 0;                                                                 \
        if (byte + 4 <= nbytes) memcpy(&w, mp + byte, 4);                               \
        else for (uint64_t q = 0; byte + q < nbytes; q++) w |= (uint32_t)mp[byte + q] << (8 * q); \
        const MT km = (MT)(w >> (i & 7));                                               \
        const MT lm = (MT)FD_TAILMASK(n - k, VL);                                       \
        STORE(y + k, lm, MUL(km, LOAD(lm, x + k), sv));                                 \
    }                                                                                   \
}
FD_FOR_DTYPES(FD_APPLY_PACKED_AVX512)

/* Stored bool mask over a contiguous run: the VL keep bytes of a vector give
 * its mask register by one byte test (GCC does not vectorise the float16
 * conversions of the plain loop: float16 took 9x the packed-mask time). */
#define FD_APPLY_BOOL_AVX512(SUF, T, CT, VL, MT, VT, SET1, LOAD, MUL, STORE)           \
FD_MAYBE_UNUSED                                                                         \
FD_T512 static void fd_apply_bool_avx512_##SUF(const T *x, T *y, int64_t n,            \
        const uint8_t *kp, CT s)                                                        \
{                                                                                       \
    const VT sv = SET1(s);                                                              \
    for (int64_t k = 0; k < n; k += VL) {                                               \
        const MT lm = (MT)FD_TAILMASK(n - k, VL);                                       \
        const __m128i kb = _mm_maskz_loadu_epi8((__mmask16)lm, kp + k);                 \
        const MT km = (MT)_mm_test_epi8_mask(kb, kb);                                   \
        STORE(y + k, lm, MUL(km, LOAD(lm, x + k), sv));                                 \
    }                                                                                   \
}
FD_FOR_DTYPES(FD_APPLY_BOOL_AVX512)

/* In place: a[k] bit r (element (k, r) of a 64 x 64 bit matrix) becomes
 * a[r] bit k. */
static inline void fd_transpose64(uint64_t a[64])
{
    uint64_t m = 0x00000000FFFFFFFFull;
    for (int j = 32; j; j >>= 1, m ^= m << j)
        for (int k = 0; k < 64; k = ((k | j) + 1) & ~j) {
            uint64_t t = ((a[k] >> j) ^ a[k | j]) & m;
            a[k | j] ^= t;
            a[k] ^= t << j;
        }
}

/* Stored bool mask over nr <= 64 rows (row byte strides rxs / rys, row mask
 * stride 1) times n contiguous inner elements (inner mask stride ms): the
 * layout of a Fortran-ordered or transposed 2-D array.  Tiles of 64 inner
 * elements x the rows: the keep bytes of one inner position (contiguous over
 * the rows) become a 64-bit word, the 64 x 64 bit tile is transposed (with at
 * most 8 rows: one byte per inner position, one bit test per row), and each
 * row is then applied with zero-masked multiplies over contiguous memory. */
#define FD_APPLY_2D_AVX512(SUF, T, CT, VL, MT, VT, SET1, LOAD, MUL, STORE)             \
FD_MAYBE_UNUSED                                                                         \
FD_T512 static void fd_apply_2d_avx512_##SUF(const char *x, char *y, int64_t n,         \
        int64_t base, int64_t ms, int64_t nr, int64_t rxs, int64_t rys,                 \
        const uint8_t *mkeep, CT s)                                                     \
{                                                                                       \
    const VT sv = SET1(s);                                                              \
    const __mmask64 rm = nr >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << nr) - 1);        \
    uint64_t tile[64];                                                                  \
    for (int64_t k0 = 0; k0 < n; k0 += 64) {                                            \
        const int kn = n - k0 < 64 ? (int)(n - k0) : 64;                                \
        for (int k = 0; k < 64; k++) {                                                  \
            if (k < kn) {                                                               \
                __m512i v = _mm512_maskz_loadu_epi8(rm, mkeep + base + (k0 + k) * ms);  \
                tile[k] = _cvtmask64_u64(_mm512_test_epi8_mask(v, v));                  \
            } else {                                                                    \
                tile[k] = 0;                                                            \
            }                                                                           \
        }                                                                               \
        if (nr <= 8) {  /* few rows: bit r of byte k, tested per row */                \
            uint8_t tb[64];                                                             \
            for (int k = 0; k < 64; k++) tb[k] = (uint8_t)tile[k];                      \
            const __m512i tv = _mm512_loadu_si512((const void *)tb);                    \
            for (int r = 0; r < nr; r++)                                                \
                tile[r] = _cvtmask64_u64(_mm512_test_epi8_mask(                         \
                    tv, _mm512_set1_epi8((char)(1 << r))));                             \
        } else {                                                                        \
            fd_transpose64(tile);                                                       \
        }                                                                               \
        for (int64_t r = 0; r < nr; r++) {                                              \
            const T *xr = (const T *)(x + r * rxs) + k0;                                \
            T *yr = (T *)(y + r * rys) + k0;                                            \
            for (int q = 0; VL * q < kn; q++) {                                         \
                MT km = (MT)(tile[r] >> (VL * q));                                      \
                MT lm = (MT)FD_TAILMASK(kn - VL * q, VL);                               \
                STORE(yr + VL * q, lm, MUL(km, LOAD(lm, xr + VL * q), sv));             \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
}
FD_FOR_DTYPES(FD_APPLY_2D_AVX512)

/* Forward over the transpose of a C-contiguous (L, a) array, a <= 16: logical
 * element (i, j), i < a, j < L, lives at memory index j * a + i and has mask
 * index i * L + j.  For j0 <= j < j1, 256 j at a time: the a rows' keep bits
 * (each a contiguous run of the stream), regrouped into keep bytes in memory
 * order, then zero-masked multiplies over the contiguous memory. */
#define FD_FWD_TSHORT_AVX512(SUF, T, CT, VL, MT, VT, SET1, LOAD, MUL, STORE)           \
FD_MAYBE_UNUSED                                                                         \
FD_T512 static void fd_fwd_tshort_avx512_##SUF(const T *x, T *y, int a, int64_t L,      \
        int64_t j0, int64_t j1, uint64_t offset, uint64_t seed, uint32_t Th,            \
        uint32_t Tl, CT s)                                                              \
{                                                                                       \
    const VT sv = SET1(s);                                                              \
    uint64_t bits[16][4];                                                               \
    uint8_t kb[16 * FD_ABATCH + 64];                                                    \
    memset(kb, 0, sizeof kb);                                                           \
    for (int64_t jb = j0; jb < j1; jb += FD_ABATCH) {                                   \
        const int m = j1 - jb < FD_ABATCH ? (int)(j1 - jb) : FD_ABATCH;                \
        const char *pf = (const char *)(x + (jb + FD_ABATCH) * a);                      \
        for (int i = 0; i < a; i++)                                                     \
            fd_bits256(offset + (uint64_t)i * (uint64_t)L + (uint64_t)jb, m, seed, Th,  \
                       Tl, bits[i], pf + i * FD_ABATCH * (int)sizeof(T),                \
                       FD_ABATCH * (int)sizeof(T) / 64);                                \
        for (int i = 0; i < a; i++) {  /* keep bytes of row i, then interleaved */     \
            uint8_t rb[FD_ABATCH];                                                      \
            for (int q = 0; q < 4; q++)                                                 \
                _mm512_storeu_si512((void *)(rb + 64 * q), _mm512_maskz_mov_epi8(       \
                    (__mmask64)bits[i][q], _mm512_set1_epi8(1)));                       \
            for (int jj = 0; jj < m; jj++)                                              \
                kb[jj * a + i] = rb[jj];                                                \
        }                                                                               \
        const int ne = m * a;                                                           \
        const T *xp = x + jb * a;                                                       \
        T *yp = y + jb * a;                                                             \
        for (int q = 0; q < ne; q += VL) {                                              \
            const __m128i kv = _mm_loadu_si128((const __m128i *)(kb + q));              \
            const MT km = (MT)_mm_test_epi8_mask(kv, kv);                               \
            const MT lm = (MT)FD_TAILMASK(ne - q, VL);                                  \
            STORE(yp + q, lm, MUL(km, LOAD(lm, xp + q), sv));                           \
        }                                                                               \
    }                                                                                   \
}
FD_FOR_DTYPES(FD_FWD_TSHORT_AVX512)

FD_MAYBE_UNUSED
FD_T512 static void fd_mask_avx512(int64_t n, uint64_t j0, uint64_t seed, uint32_t Th,
                                   uint32_t Tl, uint8_t *keep, uint8_t *packed)
{
    uint64_t bits[4];
    for (int64_t k = 0; k < n; k += FD_ABATCH) {
        int m = (n - k < FD_ABATCH) ? (int)(n - k) : FD_ABATCH;
        fd_bits256(j0 + (uint64_t)k, m, seed, Th, Tl, bits, NULL, 0);
        fd_out_bits256(bits, m, keep ? keep + k : NULL, packed ? packed + k / 8 : NULL);
    }
}

#else
static inline int fd_have_avx512(void) { return 0; }
#endif

#endif /* FASTDROP_AVX512_H */
