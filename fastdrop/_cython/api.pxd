# Public C API of fastdrop for other Cython code (header-only: nothing to link).
#
#     from fastdrop._cython.api cimport fastdrop_dropout_f32
#
# Build the cimporting extension with ``include_dirs=[fastdrop._cython.get_include()]``.
# All functions are single-threaded, ``noexcept nogil``, and implement
# fastdrop's mask stream v1 exactly (docs/spec.md §1, §2 and §4): element k of a
# call uses stream position ``offset + k``.  float16 data is passed as its
# uint16 bit pattern (numpy.float16 / npy_half), and so is bfloat16 (the high
# half of a float32; ml_dtypes.bfloat16).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "kernels.h" nogil:
    # out = inverted dropout of x (n contiguous elements); out may be x.
    # Returns 0, or -1 if p is NaN or outside [0, 1] (nothing written).
    int fastdrop_dropout_f16(const uint16_t *x, uint16_t *out, uint64_t n,
                             uint64_t seed, uint64_t offset, double p) noexcept
    int fastdrop_dropout_f32(const float *x, float *out, uint64_t n,
                             uint64_t seed, uint64_t offset, double p) noexcept
    int fastdrop_dropout_f64(const double *x, double *out, uint64_t n,
                             uint64_t seed, uint64_t offset, double p) noexcept
    int fastdrop_dropout_bf16(const uint16_t *x, uint16_t *out, uint64_t n,
                              uint64_t seed, uint64_t offset, double p) noexcept
    # out[k] = bit k of packed ? x[k] * scale : +0.0
    void fastdrop_apply_packed_f16(const uint16_t *x, uint16_t *out, const uint8_t *packed,
                                   uint64_t n, double scale) noexcept
    void fastdrop_apply_packed_f32(const float *x, float *out, const uint8_t *packed,
                                   uint64_t n, double scale) noexcept
    void fastdrop_apply_packed_f64(const double *x, double *out, const uint8_t *packed,
                                   uint64_t n, double scale) noexcept
    void fastdrop_apply_packed_bf16(const uint16_t *x, uint16_t *out, const uint8_t *packed,
                                    uint64_t n, double scale) noexcept
    # ceil(n / 8) bytes of packed keep bits (np.packbits little order, tail bits 0).
    int fastdrop_mask_packed(uint8_t *packed, uint64_t n, uint64_t seed,
                             uint64_t offset, double p) noexcept
    # keep decision (1 kept, 0 dropped) for one stream position; -1 for a bad p.
    int fastdrop_keep(uint64_t seed, uint64_t position, double p) noexcept
    # T = rint(p * 2**32)
    uint64_t fd_threshold(double p) noexcept
    # one Philox4x32-10 block, in place on ctr[4]
    void fastdrop_philox4x32_10(uint32_t *ctr, uint32_t k0, uint32_t k1) noexcept
