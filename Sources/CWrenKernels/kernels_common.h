// Helpers shared by the kernel files of CWrenKernels (not part of the public
// header): f16 widening, unaligned loads, the scalar and AVX2 dots that both
// the matrix kernels (kernels.c) and the attention kernels (attention.c) use,
// and the SIMD_FN / HAVE_SIMD switches. All static inline, so each file gets
// its own copy and nothing changes in the generated arithmetic.
#ifndef WREN_KERNELS_COMMON_H
#define WREN_KERNELS_COMMON_H
#include "wren_kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline float f16_to_f32_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) { bits = sign; }
        else { exp = 127 - 15 + 1; while (!(mant & 0x400)) { mant <<= 1; exp--; } mant &= 0x3ff; bits = sign | (exp << 23) | (mant << 13); }
    } else if (exp == 31) { bits = sign | 0x7f800000 | (mant << 13); }
    else { bits = sign | ((exp + 127 - 15) << 23) | (mant << 13); }
    float f; memcpy(&f, &bits, 4); return f;
}

// f32 → f16 bits, rounding to nearest even (inf past 65504; NaN stays NaN).
static inline uint16_t f32_to_f16_scalar(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 | (mant >> 13) : 0));   // NaN: quiet, payload truncated (as F16C)
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000;
        int shift = 14 - e;
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

// convert.c: the portable to_float / from_float column of the dtype table.
void wren_convert_f16_to_f32_scalar(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_f16_scalar(const float *src, void *dst, int64_t n);
void wren_convert_bf16_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_bf16(const float *src, void *dst, int64_t n);
void wren_convert_q8_0_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_q8_0(const float *src, void *dst, int64_t n);
void wren_convert_q4_0_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_q4_0(const float *src, void *dst, int64_t n);
void wren_convert_q4_1_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_q4_1(const float *src, void *dst, int64_t n);
void wren_convert_q5_0_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_q5_0(const float *src, void *dst, int64_t n);
void wren_convert_q5_1_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_q5_1(const float *src, void *dst, int64_t n);
// convert_k.c: the k-quants (super-blocks of 256).
void wren_convert_q2_k_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_q2_k(const float *src, void *dst, int64_t n);
void wren_convert_q3_k_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_q3_k(const float *src, void *dst, int64_t n);
void wren_convert_q4_k_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_q4_k(const float *src, void *dst, int64_t n);
void wren_convert_q5_k_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_q5_k(const float *src, void *dst, int64_t n);
void wren_convert_q6_k_to_f32(const void *src, float *dst, int64_t n);
void wren_convert_f32_to_q6_k(const float *src, void *dst, int64_t n);

// The k-quants' sub-block scales (convert_k.c and q8_k.c). scale_min_k4: the 6-bit
// (scale, min) pair of sub-block j (0…7) in q4_k / q5_k's 12 scale bytes.
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) { *sc = q[j] & 63; *m = q[j + 4] & 63; }
    else { *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4); *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4); }
}

// q3_k's 6-bit scale j (0…15), before its −32: low 4 bits from bytes 0–7, high 2 from bytes 8–11.
static inline int scale_q3(int j, const uint8_t *s) {
    int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    return lo | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4;
}

// q8.c: products with 8-bit activations (the gemm_q8 column of the dtype table).
#define WREN_GEMM_Q8(NAME) void NAME(const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, \
                                     const float *s, int blocks, int tokens, float *y, int ldy);
WREN_GEMM_Q8(wren_gemm_q8_q4_0_scalar)
WREN_GEMM_Q8(wren_gemm_q8_q4_1_scalar)
WREN_GEMM_Q8(wren_gemm_q8_q8_0_scalar)
WREN_GEMM_Q8(wren_gemm_q8_q5_0_scalar)
WREN_GEMM_Q8(wren_gemm_q8_q5_1_scalar)
WREN_GEMM_Q8(wren_gemm_q8_q5_0_avx2)
WREN_GEMM_Q8(wren_gemm_q8_q5_1_avx2)
WREN_GEMM_Q8(wren_gemm_q8_q4_0_avx2)
WREN_GEMM_Q8(wren_gemm_q8_q4_1_avx2)
WREN_GEMM_Q8(wren_gemm_q8_q8_0_avx2)
// q8_k.c: the k-quants against the same 8-bit activations.
WREN_GEMM_Q8(wren_gemm_q8_q2_k_scalar)
WREN_GEMM_Q8(wren_gemm_q8_q3_k_scalar)
WREN_GEMM_Q8(wren_gemm_q8_q4_k_scalar)
WREN_GEMM_Q8(wren_gemm_q8_q5_k_scalar)
WREN_GEMM_Q8(wren_gemm_q8_q6_k_scalar)
WREN_GEMM_Q8(wren_gemm_q8_q2_k_avx2)
WREN_GEMM_Q8(wren_gemm_q8_q3_k_avx2)
WREN_GEMM_Q8(wren_gemm_q8_q4_k_avx2)
WREN_GEMM_Q8(wren_gemm_q8_q5_k_avx2)
WREN_GEMM_Q8(wren_gemm_q8_q6_k_avx2)

// Software prefetch distance of the row kernels: the row group at least this
// many bytes ahead (measured on Zen 3: hardware prefetch alone left the q8_0
// kernel at 5 GB/s of one core's 16; ~2.5 KB ahead reaches 12–15 GB/s).
#ifndef PF_BYTES
#define PF_BYTES 2560
#endif

static inline uint16_t load_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static inline float dot_q8_0_scalar(const uint8_t *r, const float *x, int blocks) {
    float s = 0;
    for (int b = 0; b < blocks; b++, r += 34, x += 32) {
        float d = f16_to_f32_scalar(load_u16(r)), acc = 0;
        for (int j = 0; j < 32; j++) acc += (float)(int8_t)r[2 + j] * x[j];
        s += d * acc;
    }
    return s;
}

static inline float dot_f16_scalar(const uint8_t *r, const float *x, int n) {
    float s = 0;
    for (int j = 0; j < n; j++) s += f16_to_f32_scalar(load_u16(r + 2 * j)) * x[j];
    return s;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SIMD_FN __attribute__((target("avx2,fma,f16c")))
#define HAVE_SIMD 1

SIMD_FN static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

SIMD_FN static inline float dot_q8_0_avx2(const uint8_t *r, const float *x, int blocks) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++, r += 34, x += 32) {
        float d = _cvtsh_ss(load_u16(r));
        const uint8_t *q = r + 2;
        __m128i q0 = _mm_loadu_si128((const __m128i *)q), q1 = _mm_loadu_si128((const __m128i *)(q + 16));
        __m256 a = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0)), _mm256_loadu_ps(x));
        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8))), _mm256_loadu_ps(x + 8), a);
        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1)), _mm256_loadu_ps(x + 16), a);
        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8))), _mm256_loadu_ps(x + 24), a);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), a, acc);
    }
    return hsum256(acc);
}

#else
#define HAVE_SIMD 0
#endif

#endif
