/*
 * fastdrop normal-variate stream v1 (docs/spec.md §10): standard normal
 * variates from Philox4x32-10 words (counter word c2 = 2) through Wichura's
 * AS 241 quantile, using only correctly rounded IEEE float64 operations
 * (+ - * /, sqrt, exact conversions and bit decompositions): no libm log,
 * no fused multiply-add (build with -ffp-contract=off).
 *
 * Written as plain C loops without branches on the data (the central
 * formula for a whole batch, then the tail formula for the compacted list
 * of tail elements), so that kernels.h, which compiles them once per ISA
 * with that ISA's target attribute (fd_<isa>_normal_batch and
 * fd_<isa>_normal_at, called by every dtype's noise kernel), vectorises
 * them for its own vector width.  Everything here is inlined into those
 * wrappers (FD_LEAF).
 */
#ifndef FASTDROP_NORMAL_H
#define FASTDROP_NORMAL_H

#include <stdint.h>
#include <string.h>
#include <math.h>
#include "philox.h"

/* Stream positions per batch of the vectorised generator. */
#define FD_NORMAL_BATCH 256
#define FD_NORMAL_C2 2u

/* AS 241 (PPND16), highest coefficient first (Horner order):
 * central |u - 0.5| <= 0.425: z = q * A(r) / B(r), r = 0.180625 - q * q;
 * tails: z = +-C(r) / D(r), r = sqrt(-ln(min(u, 1 - u))) - 1.6. */
static const double fd_ppnd_a[8] = {
    2.5090809287301226727e+3, 3.3430575583588128105e+4, 6.7265770927008700853e+4,
    4.5921953931549871457e+4, 1.3731693765509461125e+4, 1.9715909503065514427e+3,
    1.3314166789178437745e+2, 3.3871328727963666080e0};
static const double fd_ppnd_b[8] = {
    5.2264952788528545610e+3, 2.8729085735721942674e+4, 3.9307895800092710610e+4,
    2.1213794301586595867e+4, 5.3941960214247511077e+3, 6.8718700749205790830e+2,
    4.2313330701600911252e+1, 1.0};
static const double fd_ppnd_c[8] = {
    7.74545014278341407640e-4, 2.27238449892691845833e-2, 2.41780725177450611770e-1,
    1.27045825245236838258e0, 3.64784832476320460504e0, 5.76949722146069140550e0,
    4.63033784615654529590e0, 1.42343711074968357734e0};
static const double fd_ppnd_d[8] = {
    1.05075007164441684324e-9, 5.47593808499534494600e-4, 1.51986665636164571966e-2,
    1.48103976427480074590e-1, 6.89767334985100004550e-1, 1.67638483018380384940e0,
    2.05319162663775882187e0, 1.0};
/* ln m = s * sum(c_k s^(2k)), c_k = 2 / (2k + 1), highest first */
static const double fd_ln_series[11] = {
    2.0 / 21, 2.0 / 19, 2.0 / 17, 2.0 / 15, 2.0 / 13, 2.0 / 11, 2.0 / 9, 2.0 / 7, 2.0 / 5,
    2.0 / 3, 2.0};
#define FD_LN2_HI 0x1.62e42fee00000p-1
#define FD_LN2_LO 0x1.a39ef35793c76p-33
#define FD_SQRT_HALF 0x1.6a09e667f3bcdp-1

/* u = (w + 0.5) * 2^-32, exact; w goes through a signed 32-bit conversion
 * (the one x86 vector conversion before AVX-512). */
static inline double fd_normal_u(uint32_t w)
{
    return ((double)(int32_t)(w ^ 0x80000000u) + 2147483648.5) * 0x1p-32;
}

/* AS 241's central region, |q| <= 0.425 (q = u - 0.5): z = q * A(r) / B(r). */
FD_LEAF double fd_normal_central(double q)
{
    const double r = 0.180625 - q * q;
    double nu = fd_ppnd_a[0], de = fd_ppnd_b[0];
    for (int k = 1; k < 8; k++) {
        nu = nu * r + fd_ppnd_a[k];
        de = de * r + fd_ppnd_b[k];
    }
    return q * nu / de;
}

/* The tails, |q| > 0.425: z = +-C(r) / D(r), r = sqrt(-ln(min(u, 1 - u))) - 1.6,
 * with ln from correctly rounded operations: min(u, 1 - u) = m * 2^e exactly,
 * e as a double from the exponent bits (2^52 + E - 2^52, exact), so that no
 * 64-bit integer conversion is needed. */
FD_LEAF double fd_normal_tail(double u)
{
    const double q = u - 0.5;
    const double r = q < 0.0 ? u : 1.0 - u;
    uint64_t rb;
    memcpy(&rb, &r, 8);
    const uint64_t mb = (rb & 0x000FFFFFFFFFFFFFull) | 0x3FE0000000000000ull;
    const uint64_t eb = (rb >> 52) | 0x4330000000000000ull;
    double m, eh;
    memcpy(&m, &mb, 8);                                /* [0.5, 1) */
    memcpy(&eh, &eb, 8);                               /* 2^52 + E */
    const int low = m < FD_SQRT_HALF;
    m = low ? m * 2.0 : m;
    const double ed = (eh - 0x1p52) - (low ? 1023.0 : 1022.0);
    const double f = m - 1.0;
    const double s = f / (2.0 + f);
    const double s2 = s * s;
    double p = fd_ln_series[0];
    for (int k = 1; k < 11; k++)
        p = p * s2 + fd_ln_series[k];
    const double ln = ed * FD_LN2_HI + (ed * FD_LN2_LO + s * p);
    const double x = sqrt(-ln) - 1.6;
    double nu = fd_ppnd_c[0], de = fd_ppnd_d[0];
    for (int k = 1; k < 8; k++) {
        nu = nu * x + fd_ppnd_c[k];
        de = de * x + fd_ppnd_d[k];
    }
    const double z = nu / de;
    return q < 0.0 ? -z : z;
}

/* The variate of one 32-bit word (docs/spec.md §10). */
static inline double fd_normal_of_word(uint32_t w)
{
    const double u = fd_normal_u(w);
    const double q = u - 0.5;
    return fabs(q) <= 0.425 ? fd_normal_central(q) : fd_normal_tail(u);
}

/* Philox words (c2 = 2) of positions j .. j + m - 1, m <= FD_NORMAL_BATCH,
 * into w[0 .. m - 1]: the blocks structure-of-arrays (vectorised). */
FD_LEAF void fd_normal_words(uint64_t j, int m, uint64_t seed, uint32_t *w)
{
    enum { N = FD_NORMAL_BATCH / 4 + 1 };
    uint32_t x0[N], x1[N], x2[N], x3[N], all[4 * N];
    const uint64_t b0 = j >> 2;
    const int nb = (int)(((j & 3) + (uint64_t)m + 3) >> 2);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int i = 0; i < N; i++) {
        const uint64_t b = b0 + (uint64_t)i;
        x0[i] = (uint32_t)b;
        x1[i] = (uint32_t)(b >> 32);
        x2[i] = FD_NORMAL_C2;
        x3[i] = 0u;
    }
    for (int r = 0; r < 10; r++) {
        for (int i = 0; i < N; i++)
            fd_round(&x0[i], &x1[i], &x2[i], &x3[i], k0, k1);
        k0 += FD_PHILOX_W0;
        k1 += FD_PHILOX_W1;
    }
    for (int i = 0; i < nb; i++) {
        all[4 * i + 0] = x0[i];
        all[4 * i + 1] = x1[i];
        all[4 * i + 2] = x2[i];
        all[4 * i + 3] = x3[i];
    }
    memcpy(w, all + (j & 3), (size_t)m * 4);
}

/* Variates of positions j .. j + m - 1 (m <= FD_NORMAL_BATCH) into z:
 * the central formula for every element (vectorised), then the tail
 * formula (15% of the words) for the compacted list of tail elements
 * (vectorised too, over gathered words), scattered back.  Every element
 * gets exactly fd_normal_of_word's value.  Computing both formulas for
 * every element and selecting was slower (measured, 16 Mi float32, 1
 * thread, interleaved, AMD EPYC Zen 5: 71.5 against 51.3 ms with AVX-512,
 * 118.7 against 65.8 ms with AVX2). */
FD_LEAF void fd_normal_batch(uint64_t j, int m, uint64_t seed, double *z)
{
    enum { G = 8 };  /* the tail list is padded to whole groups of G */
    uint32_t w[FD_NORMAL_BATCH], wt[FD_NORMAL_BATCH + G];
    int64_t tail[FD_NORMAL_BATCH];
    int32_t at[FD_NORMAL_BATCH];
    double zt[FD_NORMAL_BATCH + G];
    fd_normal_words(j, m, seed, w);
    for (int e = 0; e < m; e++) {
        const double q = fd_normal_u(w[e]) - 0.5;
        tail[e] = fabs(q) > 0.425;
        z[e] = fd_normal_central(q);
    }
    int nt = 0;
    for (int e = 0; e < m; e++) {  /* the tail elements, their words gathered */
        at[nt] = e;
        wt[nt] = w[e];
        nt += (int)tail[e];
    }
    for (int k = nt; k < nt + G; k++)
        wt[k] = 0x80000000u;  /* padding (u = 1/2): computed, never stored */
    for (int k = 0; k < nt; k += G) {
        /* through pointers: Python's -fwrapv makes zt[k + i] opaque to the
         * vectoriser (it kept this loop scalar) */
        const uint32_t *wg = wt + k;
        double *zg = zt + k;
        for (int i = 0; i < G; i++)
            zg[i] = fd_normal_tail(fd_normal_u(wg[i]));
    }
    for (int k = 0; k < nt; k++)
        z[at[k]] = zt[k];
}

/* The variate of one stream position. */
static inline double fd_normal_at(uint64_t seed, uint64_t j)
{
    const uint64_t b = j >> 2;
    uint32_t c[4] = {(uint32_t)b, (uint32_t)(b >> 32), FD_NORMAL_C2, 0u};
    fd_philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    return fd_normal_of_word(c[j & 3]);
}

#endif /* FASTDROP_NORMAL_H */
