/*
 * fastdrop CPU kernels (header-only): dropout forward, mask, apply-mask for
 * float16/32/64, generated from one macro template, plus the strided
 * "base index + mask strides" task runner used by _kernels.pyx and the
 * public per-dtype C API declared in api.pxd.
 *
 * Semantics: docs/spec.md §1, §2 and §4.  Dropped elements are a select of +0.0;
 * kept ones are T(CT(x) * CT(scale)) with CT = double for float64, float for
 * float32 and float16 (round to nearest even on the way back to float16).
 */
#ifndef FASTDROP_KERNELS_H
#define FASTDROP_KERNELS_H

#include <stdint.h>
#include <string.h>
#include "philox.h"
#include "avx512.h"
#include "avx2.h"

/* Runtime ISA dispatch for the hot loops (no -march=native anywhere). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(FD_NO_CLONES)
#define FD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FD_CLONES
#endif

/* ---------------------------------------------------------------- float16 */
#if defined(__FLT16_MANT_DIG__) && !defined(FD_SOFT_HALF)
typedef _Float16 fd_half;
#define FD_H2F(v) ((float)(v))
#define FD_F2H(v) ((fd_half)(v))
#else
/* Portable IEEE binary16 <-> binary32 with round to nearest even. */
typedef uint16_t fd_half;
static inline float fd_h2f_soft(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, f;
    if (e == 0x1F) f = sign | 0x7F800000u | (m << 13);
    else if (e) f = sign | ((e + 112u) << 23) | (m << 13);
    else if (!m) f = sign;
    else {
        e = 113u;
        while (!(m & 0x400u)) { m <<= 1; e--; }
        f = sign | (e << 23) | ((m & 0x3FFu) << 13);
    }
    float r;
    memcpy(&r, &f, 4);
    return r;
}
static inline uint16_t fd_f2h_soft(float x)
{
    uint32_t f;
    memcpy(&f, &x, 4);
    uint16_t sign = (uint16_t)((f >> 16) & 0x8000u);
    uint32_t a = f & 0x7FFFFFFFu;
    if (a >= 0x7F800000u) {                     /* inf or nan */
        if (a == 0x7F800000u) return sign | 0x7C00u;
        uint16_t m = (uint16_t)((a & 0x007FE000u) >> 13);
        return sign | 0x7C00u | (m ? m : 1u) | 0x200u;
    }
    if (a >= 0x477FF000u) return sign | 0x7C00u; /* rounds to inf */
    if (a < 0x38800000u) {                      /* subnormal or zero */
        if (a < 0x33000000u) return sign;       /* < 2^-25 rounds to 0 */
        uint32_t e = a >> 23, m = (a & 0x7FFFFFu) | 0x800000u;
        uint32_t shift = 126u - e;              /* 14 .. 24 */
        uint32_t q = m >> shift, r = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (r > half || (r == half && (q & 1u))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t q = (a >> 13) - (112u << 10), r = a & 0x1FFFu;
    if (r > 0x1000u || (r == 0x1000u && (q & 1u))) q++;
    return sign | (uint16_t)q;
}
#define FD_H2F(v) fd_h2f_soft(v)
#define FD_F2H(v) fd_f2h_soft(v)
#endif

#define FD_ID(v) (v)
#define FD_F2F(v) ((float)(v))

#ifdef FD_HAVE_AVX512_PATH
#define FD_USE_AVX512(xs, ys, sz, Th) \
    ((xs) == (int64_t)(sz) && (ys) == (int64_t)(sz) && (Th) <= 0xFFFFu && fd_have_avx512())
#define FD_AVX512_CALL(call) call
/* FD_STAGED around an AVX-512 kernel (nothing at all without that path, so
 * no staging buffers are left set but unused) */
#define FD_STAGED_AVX512(T, x, xs, y, ys, n, CALL) FD_STAGED(T, x, xs, y, ys, n, CALL)
#else
#define FD_USE_AVX512(xs, ys, sz, Th) 0
#define FD_AVX512_CALL(call) ((void)0)
#define FD_STAGED_AVX512(T, x, xs, y, ys, n, CALL) ((void)0)
#endif
#ifdef FD_HAVE_AVX2_PATH
#define FD_USE_AVX2(xs, ys, sz, Th) \
    ((xs) == (int64_t)(sz) && (ys) == (int64_t)(sz) && (Th) <= 0xFFFFu && fd_have_avx2())
#define FD_AVX2_CALL(call) call
#else
#define FD_USE_AVX2(xs, ys, sz, Th) 0
#define FD_AVX2_CALL(call) ((void)0)
#endif

/* ------------------------------------------------------- task description */
#define FD_MAXDIM 64
enum { FD_OP_FORWARD = 0, FD_OP_APPLY = 1, FD_OP_MASK = 2 };
enum { FD_F16 = 0, FD_F32 = 1, FD_F64 = 2 };

typedef struct {
    int op, dtype, nd;                     /* nd: number of outer axes */
    int64_t oshape[FD_MAXDIM];             /* outer extents */
    int64_t oxs[FD_MAXDIM], oys[FD_MAXDIM]; /* outer byte strides of x, out */
    int64_t oms[FD_MAXDIM];                /* outer mask strides (elements) */
    char *x, *y;
    int64_t L, xs, ys, ms;                 /* inner extent and strides */
    int64_t chunk, cpr;                    /* chunk size, chunks per row */
    uint64_t seed, offset;
    uint32_t Th, Tl;
    double scale;
    uint8_t *keep, *packed;                /* forward/mask outputs (mask index) */
    const uint8_t *mkeep, *mpacked;        /* stored mask for apply */
    int nt;                                /* non-temporal stores (large out-of-place) */
    int64_t rblock;                        /* > 0: apply in blocks of rows (nd == 1) */
    int64_t tshort;                        /* > 0: forward over the transpose of a
                                              C-contiguous (L, tshort) array (AVX-512) */
} fd_task_t;

/* Elements per L1 staging tile for strided runs (a multiple of 8: packed mask
 * bytes stay whole). */
#define FD_STAGE 1024

/* n strided elements of type T through L1 staging tiles: each tile of m
 * elements (its first at k) is copied from x to xb, CALL turns xb[0..m) into
 * yb[0..m) with the contiguous code, and yb is copied to y. */
#define FD_STAGED(T, x, xs, y, ys, n, CALL) do {                                        \
        T xb[FD_STAGE], yb[FD_STAGE];                                                   \
        for (int64_t k = 0; k < (n); k += FD_STAGE) {                                   \
            int64_t m = (n) - k < FD_STAGE ? (n) - k : FD_STAGE;                        \
            for (int64_t e = 0; e < m; e++)                                             \
                xb[e] = *(const T *)((x) + (k + e) * (xs));                             \
            CALL;                                                                       \
            for (int64_t e = 0; e < m; e++)                                             \
                *(T *)((y) + (k + e) * (ys)) = yb[e];                                   \
        }                                                                               \
    } while (0)

/* --------------------------------------------------- per-dtype template */
/*
 * SUF: name suffix; T: storage type; CT: compute type; TOC / FROMC: storage
 * <-> compute conversions.
 *
 * fd_fwd_1d_SUF: n elements at byte strides xs / ys; the element k has mask
 * index base + k * ms, stream position offset + base + k * ms.  keep/packed
 * (if not NULL) receive the keep bits of element k at keep[k] and bit k of
 * packed (only with ms == 1; base of packed must be byte aligned).  nt asks for
 * non-temporal stores of the output (contiguous AVX-512 path only).
 */
#define FD_DEFINE(SUF, T, CT, TOC, FROMC)                                               \
                                                                                        \
static inline void fd_sel_c_##SUF(const T *x, T *y, int m, const uint8_t *kk, CT s)     \
{                                                                                       \
    if (m == FD_BATCH) {                                                                \
        for (int e = 0; e < FD_BATCH; e++) {                                            \
            CT v = TOC(x[e]) * s;                                                       \
            y[e] = kk[e] ? FROMC(v) : (T)0;                                             \
        }                                                                               \
    } else {                                                                            \
        for (int e = 0; e < m; e++) {                                                   \
            CT v = TOC(x[e]) * s;                                                       \
            y[e] = kk[e] ? FROMC(v) : (T)0;                                             \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
static inline void fd_sel_s_##SUF(const char *x, int64_t xs, char *y, int64_t ys, int m, \
                                  const uint8_t *kk, CT s)                              \
{                                                                                       \
    for (int e = 0; e < m; e++) {                                                       \
        CT v = TOC(*(const T *)(x + e * xs)) * s;                                       \
        *(T *)(y + e * ys) = kk[e] ? FROMC(v) : (T)0;                                   \
    }                                                                                   \
}                                                                                       \
                                                                                        \
FD_MAYBE_UNUSED                                                                         \
FD_CLONES static void fd_fwd_seq_##SUF(const char *x, int64_t xs, char *y, int64_t ys,  \
        int64_t n, uint64_t j0, uint64_t seed, uint32_t Th, uint32_t Tl, CT s,          \
        uint8_t *keep, uint8_t *packed)                                                 \
{                                                                                       \
    fd_lanes_t L;                                                                       \
    uint8_t kk[FD_BATCH];                                                               \
    int contig = (xs == (int64_t)sizeof(T) && ys == (int64_t)sizeof(T));                \
    for (int64_t k = 0; k < n; k += FD_BATCH) {                                         \
        int m = (n - k < FD_BATCH) ? (int)(n - k) : FD_BATCH;                           \
        uint64_t j = j0 + (uint64_t)k;                                                  \
        int f = fd_batch_lanes(&L, j, seed);                                            \
        fd_decide(L.h + f, m, j, seed, Th, Tl, kk);                                     \
        if (contig)                                                                     \
            fd_sel_c_##SUF((const T *)x + k, (T *)y + k, m, kk, s);                     \
        else                                                                            \
            fd_sel_s_##SUF(x + k * xs, xs, y + k * ys, ys, m, kk, s);                   \
        if (keep) memcpy(keep + k, kk, (size_t)m);                                      \
        if (packed) fd_pack(kk, (m + 7) / 8, packed + k / 8);                           \
    }                                                                                   \
}                                                                                       \
                                                                                        \
FD_MAYBE_UNUSED                                                                         \
static void fd_fwd_1d_##SUF(const char *x, int64_t xs, char *y, int64_t ys, int64_t n,  \
        int64_t base, int64_t ms, uint64_t offset, uint64_t seed, uint32_t Th,          \
        uint32_t Tl, CT s, uint8_t *keep, uint8_t *packed, int nt)                      \
{                                                                                       \
    (void)nt;  /* only the AVX-512 path streams */                                      \
    if (n <= 0) return;                                                                 \
    if (ms == 1 || n == 1) {                                                            \
        if (FD_USE_AVX512(xs, ys, sizeof(T), Th)) {                                     \
            FD_AVX512_CALL(fd_fwd_avx512_##SUF((const void *)x, (void *)y, n,           \
                offset + (uint64_t)base, seed, Th, Tl, s, keep, packed, nt));           \
            return;                                                                     \
        }                                                                               \
        if (n > 1 && FD_USE_AVX512(sizeof(T), sizeof(T), sizeof(T), Th)) {             \
            /* strided (step, reversed): tiles copied to and from L1 buffers      \
             * around the contiguous kernel (a reversed 16 Mi float32 view, 1      \
             * thread: 148 ms with the portable strided select, 27 ms) */         \
            FD_STAGED_AVX512(T, x, xs, y, ys, n,                                        \
                fd_fwd_avx512_##SUF((const void *)xb, (void *)yb, m,                    \
                    offset + (uint64_t)(base + k), seed, Th, Tl, s,                     \
                    keep ? keep + k : NULL, packed ? packed + k / 8 : NULL, 0));        \
            return;                                                                     \
        }                                                                               \
        if (FD_USE_AVX2(xs, ys, sizeof(T), Th)) {                                       \
            FD_AVX2_CALL(fd_fwd_avx2_##SUF((const void *)x, (void *)y, n,               \
                offset + (uint64_t)base, seed, Th, Tl, s, keep, packed));               \
            return;                                                                     \
        }                                                                               \
        fd_fwd_seq_##SUF(x, xs, y, ys, n, offset + (uint64_t)base, seed, Th, Tl, s,     \
                         keep, packed);                                                 \
    } else if (ms == 0) {                                                               \
        uint8_t kp = (uint8_t)fd_keep_at(seed, offset + (uint64_t)base, Th, Tl);        \
        for (int64_t k = 0; k < n; k++) {                                               \
            CT v = TOC(*(const T *)(x + k * xs)) * s;                                   \
            *(T *)(y + k * ys) = kp ? FROMC(v) : (T)0;                                  \
        }                                                                               \
    } else {                                                                            \
        for (int64_t k = 0; k < n; k++) {                                               \
            uint64_t j = offset + (uint64_t)(base + k * ms);                            \
            int kp = fd_keep_at(seed, j, Th, Tl);                                       \
            CT v = TOC(*(const T *)(x + k * xs)) * s;                                   \
            *(T *)(y + k * ys) = kp ? FROMC(v) : (T)0;                                  \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
FD_MAYBE_UNUSED                                                                         \
FD_CLONES static void fd_apply_1d_##SUF(const char *x, int64_t xs, char *y, int64_t ys, \
        int64_t n, int64_t base, int64_t ms, const uint8_t *mkeep,                      \
        const uint8_t *mpacked, CT s)                                                   \
{                                                                                       \
    if (mkeep) {                                                                        \
        if (ms == 1 && FD_USE_AVX512(xs, ys, sizeof(T), 0u)) {                          \
            FD_AVX512_CALL(fd_apply_bool_avx512_##SUF((const void *)x, (void *)y, n,    \
                mkeep + base, s));                                                      \
            return;                                                                     \
        }                                                                               \
        if (ms == 1 && xs == (int64_t)sizeof(T) && ys == (int64_t)sizeof(T)) {          \
            const T *xc = (const T *)x; T *yc = (T *)y;                                 \
            const uint8_t *kc = mkeep + base;                                           \
            for (int64_t k = 0; k < n; k++) {                                           \
                CT v = TOC(xc[k]) * s;                                                  \
                yc[k] = kc[k] ? FROMC(v) : (T)0;                                        \
            }                                                                           \
        } else if (ms == 1 && n > 1) {                                                  \
            /* strided with a contiguous mask: through L1 staging tiles */              \
            FD_STAGED(T, x, xs, y, ys, n,                                               \
                for (int64_t e = 0; e < m; e++)                                         \
                    yb[e] = mkeep[base + k + e] ? FROMC(TOC(xb[e]) * s) : (T)0);        \
        } else {                                                                        \
            for (int64_t k = 0; k < n; k++) {                                           \
                CT v = TOC(*(const T *)(x + k * xs)) * s;                               \
                *(T *)(y + k * ys) = mkeep[base + k * ms] ? FROMC(v) : (T)0;            \
            }                                                                           \
        }                                                                               \
    } else {                                                                            \
        if (ms == 1 && FD_USE_AVX512(xs, ys, sizeof(T), 0u)) {                          \
            FD_AVX512_CALL(fd_apply_packed_avx512_##SUF((const void *)x, (void *)y, n,  \
                (uint64_t)base, mpacked, s));                                           \
            return;                                                                     \
        }                                                                               \
        if (ms == 1 && n > 1 && FD_USE_AVX512(sizeof(T), sizeof(T), sizeof(T), 0u)) {   \
            /* strided: through L1 staging tiles, as in fd_fwd_1d */                    \
            /* (float16: the fd_half tiles go as their uint16_t bits) */                \
            FD_STAGED_AVX512(T, x, xs, y, ys, n,                                        \
                fd_apply_packed_avx512_##SUF((const void *)xb, (void *)yb, m,           \
                    (uint64_t)(base + k), mpacked, s));                                 \
            return;                                                                     \
        }                                                                               \
        for (int64_t k = 0; k < n; k++) {                                               \
            int64_t i = base + k * ms;                                                  \
            int kp = (mpacked[i >> 3] >> (i & 7)) & 1;                                  \
            CT v = TOC(*(const T *)(x + k * xs)) * s;                                   \
            *(T *)(y + k * ys) = kp ? FROMC(v) : (T)0;                                  \
        }                                                                               \
    }                                                                                   \
}                                                                                        \
/* Stored bool mask over a block of nr rows (row byte strides rxs / rys, row   \
 * mask stride rms) times n inner elements, walked 64 inner elements at a time \
 * across all rows: used when the inner (memory-contiguous) axis has a large   \
 * mask stride and the rows a small one (Fortran-ordered / transposed input),  \
 * so the keep bytes read for one inner position are contiguous. */            \
FD_MAYBE_UNUSED                                                                         \
FD_CLONES static void fd_apply_2d_##SUF(const char *x, int64_t xs, char *y, int64_t ys, \
        int64_t n, int64_t base, int64_t ms, int64_t nr, int64_t rxs, int64_t rys,      \
        int64_t rms, const uint8_t *mkeep, CT s)                                        \
{                                                                                       \
    if (rms == 1 && nr <= 64 && FD_USE_AVX512(xs, ys, sizeof(T), 0u)) {                 \
        FD_AVX512_CALL(fd_apply_2d_avx512_##SUF(x, y, n, base, ms, nr, rxs, rys,        \
                                                 mkeep, s));                            \
        return;                                                                         \
    }                                                                                   \
    for (int64_t k0 = 0; k0 < n; k0 += 64) {                                            \
        int64_t k1 = k0 + 64 < n ? k0 + 64 : n;                                         \
        for (int64_t r = 0; r < nr; r++) {                                              \
            const char *xr = x + r * rxs;                                               \
            char *yr = y + r * rys;                                                     \
            const uint8_t *kr = mkeep + base + r * rms;                                 \
            for (int64_t k = k0; k < k1; k++) {                                         \
                CT v = TOC(*(const T *)(xr + k * xs)) * s;                              \
                *(T *)(yr + k * ys) = kr[k * ms] ? FROMC(v) : (T)0;                     \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
}

FD_DEFINE(f16, fd_half, float, FD_H2F, FD_F2H)
FD_DEFINE(f32, float, float, FD_ID, FD_ID)
FD_DEFINE(f64, double, double, FD_ID, FD_ID)

/* Keep bits of positions j0 .. j0 + n - 1 into keep[0..n) and/or packed
 * bits [0..n) (tail bits of the last byte zero). */
FD_MAYBE_UNUSED
FD_CLONES static void fd_mask_seq(int64_t n, uint64_t j0, uint64_t seed, uint32_t Th,
                                  uint32_t Tl, uint8_t *keep, uint8_t *packed)
{
    fd_lanes_t L;
    uint8_t kk[FD_BATCH];
    for (int64_t k = 0; k < n; k += FD_BATCH) {
        int m = (n - k < FD_BATCH) ? (int)(n - k) : FD_BATCH;
        uint64_t j = j0 + (uint64_t)k;
        int f = fd_batch_lanes(&L, j, seed);
        fd_decide(L.h + f, m, j, seed, Th, Tl, kk);
        if (keep) memcpy(keep + k, kk, (size_t)m);
        if (packed) fd_pack(kk, (m + 7) / 8, packed + k / 8);
    }
}

FD_MAYBE_UNUSED
static void fd_mask_1d(int64_t n, uint64_t j0, uint64_t seed, uint32_t Th, uint32_t Tl,
                       uint8_t *keep, uint8_t *packed)
{
    if (n <= 0) return;
    if (FD_USE_AVX512(1, 1, 1, Th)) {
        FD_AVX512_CALL(fd_mask_avx512(n, j0, seed, Th, Tl, keep, packed));
        return;
    }
    if (FD_USE_AVX2(1, 1, 1, Th)) {
        FD_AVX2_CALL(fd_mask_avx2(n, j0, seed, Th, Tl, keep, packed));
        return;
    }
    fd_mask_seq(n, j0, seed, Th, Tl, keep, packed);
}

/* Whether the tshort forward exists here (AVX-512 at run time). */
static inline int fd_have_tshort(void)
{
#ifdef FD_HAVE_AVX512_PATH
    return fd_have_avx512();
#else
    return 0;
#endif
}

/* --------------------------------------------------------- task runner */
/* Task t = (row, chunk of the inner axis); results depend only on t. */
static void fd_run_apply_block(const fd_task_t *g, int64_t t);

FD_MAYBE_UNUSED
static void fd_run_task(const fd_task_t *g, int64_t t)
{
    if (g->rblock > 0) {
        fd_run_apply_block(g, t);
        return;
    }
#ifdef FD_HAVE_AVX512_PATH
    if (g->tshort > 0) {  /* task t: j in chunk t, all rows */
        int64_t j0 = t * g->chunk, j1 = j0 + g->chunk < g->L ? j0 + g->chunk : g->L;
        int a = (int)g->tshort;
        switch (g->dtype) {
        case FD_F16: fd_fwd_tshort_avx512_f16((const uint16_t *)g->x, (uint16_t *)g->y, a,
                         g->L, j0, j1, g->offset, g->seed, g->Th, g->Tl, (float)g->scale); break;
        case FD_F32: fd_fwd_tshort_avx512_f32((const float *)g->x, (float *)g->y, a,
                         g->L, j0, j1, g->offset, g->seed, g->Th, g->Tl, (float)g->scale); break;
        default:     fd_fwd_tshort_avx512_f64((const double *)g->x, (double *)g->y, a,
                         g->L, j0, j1, g->offset, g->seed, g->Th, g->Tl, g->scale); break;
        }
        return;
    }
#endif
    int64_t row = t / g->cpr, c = t % g->cpr;
    int64_t xo = 0, yo = 0, mo = 0;
    for (int a = g->nd - 1; a >= 0; a--) {
        int64_t q = row % g->oshape[a];
        row /= g->oshape[a];
        xo += q * g->oxs[a];
        yo += q * g->oys[a];
        mo += q * g->oms[a];
    }
    int64_t start = c * g->chunk;
    int64_t len = g->L - start < g->chunk ? g->L - start : g->chunk;
    int64_t base = mo + start * g->ms;
    if (g->op == FD_OP_MASK) {
        fd_mask_1d(len, g->offset + (uint64_t)start, g->seed, g->Th, g->Tl,
                    g->keep ? g->keep + start : NULL,
                    g->packed ? g->packed + start / 8 : NULL);
        return;
    }
    const char *xp = g->x + xo + start * g->xs;
    char *yp = g->y + yo + start * g->ys;
    if (g->op == FD_OP_FORWARD) {
        uint8_t *kp = g->keep ? g->keep + base : NULL;
        uint8_t *pp = g->packed ? g->packed + base / 8 : NULL;
        switch (g->dtype) {
        case FD_F16: fd_fwd_1d_f16(xp, g->xs, yp, g->ys, len, base, g->ms, g->offset, g->seed,
                                   g->Th, g->Tl, (float)g->scale, kp, pp, g->nt); break;
        case FD_F32: fd_fwd_1d_f32(xp, g->xs, yp, g->ys, len, base, g->ms, g->offset, g->seed,
                                   g->Th, g->Tl, (float)g->scale, kp, pp, g->nt); break;
        default:     fd_fwd_1d_f64(xp, g->xs, yp, g->ys, len, base, g->ms, g->offset, g->seed,
                                   g->Th, g->Tl, g->scale, kp, pp, g->nt); break;
        }
    } else {
        switch (g->dtype) {
        case FD_F16: fd_apply_1d_f16(xp, g->xs, yp, g->ys, len, base, g->ms, g->mkeep,
                                     g->mpacked, (float)g->scale); break;
        case FD_F32: fd_apply_1d_f32(xp, g->xs, yp, g->ys, len, base, g->ms, g->mkeep,
                                     g->mpacked, (float)g->scale); break;
        default:     fd_apply_1d_f64(xp, g->xs, yp, g->ys, len, base, g->ms, g->mkeep,
                                     g->mpacked, g->scale); break;
        }
    }
}

/* Task t of a stored-mask apply in row blocks (g->nd == 1): rows
 * rb * rblock .. + rblock of the single outer axis, chunk c of the inner. */
FD_MAYBE_UNUSED
static void fd_run_apply_block(const fd_task_t *g, int64_t t)
{
    int64_t rb = t / g->cpr, c = t % g->cpr;
    int64_t r0 = rb * g->rblock;
    int64_t nr = g->oshape[0] - r0 < g->rblock ? g->oshape[0] - r0 : g->rblock;
    int64_t start = c * g->chunk;
    int64_t len = g->L - start < g->chunk ? g->L - start : g->chunk;
    const char *xp = g->x + r0 * g->oxs[0] + start * g->xs;
    char *yp = g->y + r0 * g->oys[0] + start * g->ys;
    int64_t base = r0 * g->oms[0] + start * g->ms;
    switch (g->dtype) {
    case FD_F16: fd_apply_2d_f16(xp, g->xs, yp, g->ys, len, base, g->ms, nr, g->oxs[0],
                                 g->oys[0], g->oms[0], g->mkeep, (float)g->scale); break;
    case FD_F32: fd_apply_2d_f32(xp, g->xs, yp, g->ys, len, base, g->ms, nr, g->oxs[0],
                                 g->oys[0], g->oms[0], g->mkeep, (float)g->scale); break;
    default:     fd_apply_2d_f64(xp, g->xs, yp, g->ys, len, base, g->ms, nr, g->oxs[0],
                                 g->oys[0], g->oms[0], g->mkeep, g->scale); break;
    }
}

/* Streaming ceiling for benchmarks: y = x * s (float32, same traffic). */
FD_MAYBE_UNUSED
FD_CLONES static void fd_stream_scale_f32(const float *x, float *y, int64_t n, float s)
{
    for (int64_t k = 0; k < n; k++)
        y[k] = x[k] * s;
}

/* ------------------------------------------------ public C API (api.pxd) */
/* Inverted dropout of n contiguous elements (single thread).  Returns 0, or
 * -1 if p is NaN or outside [0, 1] (nothing written).  out may equal x. */
#define FD_DEFINE_API(SUF, T, CT, ST)                                                   \
static inline int fastdrop_dropout_##SUF(const ST *x, ST *out, uint64_t n, uint64_t seed, \
                                         uint64_t offset, double p)                    \
{                                                                                       \
    if (!(p >= 0.0 && p <= 1.0)) return -1;                                             \
    if (p == 0.0) { if ((const void *)out != (const void *)x) memmove(out, x, n * sizeof(ST)); return 0; } \
    if (p == 1.0) { memset(out, 0, n * sizeof(ST)); return 0; }                         \
    uint64_t T_ = fd_threshold(p);                                                      \
    fd_fwd_1d_##SUF((const char *)x, sizeof(ST), (char *)out, sizeof(ST), (int64_t)n,   \
                    0, 1, offset, seed, (uint32_t)(T_ >> 16), (uint32_t)(T_ & 0xFFFFu),  \
                    (CT)(1.0 / (1.0 - p)), NULL, NULL, 0);                              \
    return 0;                                                                           \
}                                                                                       \
/* out[k] = bit k of packed ? x[k] * scale : +0.0 */                                    \
static inline void fastdrop_apply_packed_##SUF(const ST *x, ST *out, const uint8_t *packed, \
                                               uint64_t n, double scale)               \
{                                                                                       \
    fd_apply_1d_##SUF((const char *)x, sizeof(ST), (char *)out, sizeof(ST), (int64_t)n, \
                      0, 1, NULL, packed, (CT)scale);                                   \
}

FD_DEFINE_API(f16, fd_half, float, uint16_t)
FD_DEFINE_API(f32, float, float, float)
FD_DEFINE_API(f64, double, double, double)

/* Packed keep bits (np.packbits little layout, ceil(n/8) bytes, tail bits
 * zero) for positions offset .. offset + n - 1.  Returns -1 for a bad p. */
static inline int fastdrop_mask_packed(uint8_t *packed, uint64_t n, uint64_t seed,
                                       uint64_t offset, double p)
{
    if (!(p >= 0.0 && p <= 1.0)) return -1;
    uint64_t T_ = fd_threshold(p);
    fd_mask_1d((int64_t)n, offset, seed, (uint32_t)(T_ >> 16), (uint32_t)(T_ & 0xFFFFu),
                NULL, packed);
    return 0;
}

/* The keep decision (1 = kept) for one stream position; -1 for a bad p. */
static inline int fastdrop_keep(uint64_t seed, uint64_t position, double p)
{
    if (!(p >= 0.0 && p <= 1.0)) return -1;
    uint64_t T_ = fd_threshold(p);
    return fd_keep_at(seed, position, (uint32_t)(T_ >> 16), (uint32_t)(T_ & 0xFFFFu));
}

/* Cap the hand-written paths in-process (2: AVX-512, 1: AVX2, 0: portable;
 * never wider than the CPU): the ISA parity tests run every path in one
 * process.  Not for concurrent use with running kernels. */
FD_MAYBE_UNUSED static void fd_set_isa_cap(int c)
{
    fd_isa_cap_state = c < 0 ? 0 : (c > 2 ? 2 : c);
#ifdef FD_HAVE_AVX512_PATH
    fd_avx512_state = -1;
#endif
#ifdef FD_HAVE_AVX2_PATH
    fd_avx2_state = -1;
#endif
}

/* Philox4x32-10 of one block (for known-answer tests). */
static inline void fastdrop_philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1)
{
    fd_philox4x32_10(ctr, k0, k1);
}

#endif /* FASTDROP_KERNELS_H */
