// See include/wren_kernels.h. Each kernel computes, per block,
//   d·Σ q[j]·x[j] + m·Σ x[j]
// which is the dot product with the exactly dequantized row (d·q + m) in f32
// arithmetic, summed in a different order.
#include "wren_kernels.h"
#include <string.h>

static float f16_to_f32_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) { bits = sign; }
        else { exp = 127 - 15 + 1; while (!(mant & 0x400)) { mant <<= 1; exp--; } mant &= 0x3ff; bits = sign | (exp << 23) | (mant << 13); }
    } else if (exp == 31) { bits = sign | 0x7f800000 | (mant << 13); }
    else { bits = sign | ((exp + 127 - 15) << 23) | (mant << 13); }
    float f; memcpy(&f, &bits, 4); return f;
}

static uint16_t load_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static float dot_q4_1_scalar(const uint8_t *r, const float *x, const float *xsum, int blocks) {
    float s = 0;
    for (int b = 0; b < blocks; b++, r += 20, x += 32) {
        float d = f16_to_f32_scalar(load_u16(r)), m = f16_to_f32_scalar(load_u16(r + 2)), acc = 0;
        for (int j = 0; j < 16; j++) acc += (float)(r[4 + j] & 15) * x[j] + (float)(r[4 + j] >> 4) * x[j + 16];
        s += d * acc + m * xsum[b];
    }
    return s;
}

static float dot_q4_0_scalar(const uint8_t *r, const float *x, const float *xsum, int blocks) {
    float s = 0;
    for (int b = 0; b < blocks; b++, r += 18, x += 32) {
        float d = f16_to_f32_scalar(load_u16(r)), acc = 0;
        for (int j = 0; j < 16; j++) acc += (float)(r[2 + j] & 15) * x[j] + (float)(r[2 + j] >> 4) * x[j + 16];
        s += d * acc - 8 * d * xsum[b];
    }
    return s;
}

static float dot_q8_0_scalar(const uint8_t *r, const float *x, int blocks) {
    float s = 0;
    for (int b = 0; b < blocks; b++, r += 34, x += 32) {
        float d = f16_to_f32_scalar(load_u16(r)), acc = 0;
        for (int j = 0; j < 32; j++) acc += (float)(int8_t)r[2 + j] * x[j];
        s += d * acc;
    }
    return s;
}

static float dot_f16_scalar(const uint8_t *r, const float *x, int n) {
    float s = 0;
    for (int j = 0; j < n; j++) s += f16_to_f32_scalar(load_u16(r + 2 * j)) * x[j];
    return s;
}

static float dot_bf16_scalar(const uint8_t *r, const float *x, int n) {
    float s = 0;
    for (int j = 0; j < n; j++) {
        uint32_t bits = (uint32_t)load_u16(r + 2 * j) << 16;
        float w; memcpy(&w, &bits, 4);
        s += w * x[j];
    }
    return s;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SIMD_FN __attribute__((target("avx2,fma,f16c")))

SIMD_FN static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

SIMD_FN static inline __m256 nib_dot(const uint8_t *q, const float *x) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)q);
    __m128i mask = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(bytes, mask), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    __m256 a = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), _mm256_loadu_ps(x));
    a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(x + 8), a);
    a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), _mm256_loadu_ps(x + 16), a);
    a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(x + 24), a);
    return a;
}

SIMD_FN static float dot_q4_1_avx2(const uint8_t *r, const float *x, const float *xsum, int blocks) {
    __m256 acc = _mm256_setzero_ps();
    float sm = 0;
    for (int b = 0; b < blocks; b++, r += 20, x += 32) {
        float d = _cvtsh_ss(load_u16(r)), m = _cvtsh_ss(load_u16(r + 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), nib_dot(r + 4, x), acc);
        sm += m * xsum[b];
    }
    return hsum256(acc) + sm;
}

SIMD_FN static float dot_q4_0_avx2(const uint8_t *r, const float *x, const float *xsum, int blocks) {
    __m256 acc = _mm256_setzero_ps();
    float sm = 0;
    for (int b = 0; b < blocks; b++, r += 18, x += 32) {
        float d = _cvtsh_ss(load_u16(r));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), nib_dot(r + 2, x), acc);
        sm -= 8 * d * xsum[b];
    }
    return hsum256(acc) + sm;
}

SIMD_FN static float dot_q8_0_avx2(const uint8_t *r, const float *x, int blocks) {
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

SIMD_FN static float dot_f16_avx2(const uint8_t *r, const float *x, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 2 * j))), _mm256_loadu_ps(x + j), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 2 * j + 16))), _mm256_loadu_ps(x + j + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; j < n; j++) s += _cvtsh_ss(load_u16(r + 2 * j)) * x[j];
    return s;
}

SIMD_FN static float dot_bf16_avx2(const uint8_t *r, const float *x, int n) {
    __m256 a0 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(r + 2 * j))), 16);
        a0 = _mm256_fmadd_ps(_mm256_castsi256_ps(w), _mm256_loadu_ps(x + j), a0);
    }
    float s = hsum256(a0);
    for (; j < n; j++) { uint32_t bits = (uint32_t)load_u16(r + 2 * j) << 16; float w; memcpy(&w, &bits, 4); s += w * x[j]; }
    return s;
}

SIMD_FN static void f16_to_f32_avx2(const uint8_t *r, float *dst, int n) {
    int j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 2 * j))));
    for (; j < n; j++) dst[j] = _cvtsh_ss(load_u16(r + 2 * j));
}

SIMD_FN static void f32_to_f16_avx2(const float *src, uint8_t *dst, int n) {
    int j = 0;
    for (; j + 8 <= n; j += 8) _mm_storeu_si128((__m128i *)(dst + 2 * j), _mm256_cvtps_ph(_mm256_loadu_ps(src + j), _MM_FROUND_TO_NEAREST_INT));
    for (; j < n; j++) { uint16_t h = _cvtss_sh(src[j], _MM_FROUND_TO_NEAREST_INT); memcpy(dst + 2 * j, &h, 2); }
}

SIMD_FN static void axpy_f16_avx2(float a, const uint8_t *v, float *out, int n) {
    __m256 av = _mm256_set1_ps(a);
    int j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(out + j, _mm256_fmadd_ps(av, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + 2 * j))), _mm256_loadu_ps(out + j)));
    for (; j < n; j++) out[j] += a * _cvtsh_ss(load_u16(v + 2 * j));
}

static int simd_state = -1;
void wren_kernels_force_scalar(int on) { simd_state = on ? 0 : -1; }
int wren_kernels_simd(void) {
    if (simd_state < 0) {
        __builtin_cpu_init();
        simd_state = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return simd_state;
}
#define HAVE_SIMD 1
#else
int wren_kernels_simd(void) { return 0; }
void wren_kernels_force_scalar(int on) { (void)on; }
#define HAVE_SIMD 0
#endif

float wren_dot_q4_1(const void *row, const float *x, const float *xsum, int blocks) {
#if HAVE_SIMD
    if (wren_kernels_simd()) return dot_q4_1_avx2(row, x, xsum, blocks);
#endif
    return dot_q4_1_scalar(row, x, xsum, blocks);
}

float wren_dot_q4_0(const void *row, const float *x, const float *xsum, int blocks) {
#if HAVE_SIMD
    if (wren_kernels_simd()) return dot_q4_0_avx2(row, x, xsum, blocks);
#endif
    return dot_q4_0_scalar(row, x, xsum, blocks);
}

float wren_dot_q8_0(const void *row, const float *x, int blocks) {
#if HAVE_SIMD
    if (wren_kernels_simd()) return dot_q8_0_avx2(row, x, blocks);
#endif
    return dot_q8_0_scalar(row, x, blocks);
}

float wren_dot_f16(const void *row, const float *x, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) return dot_f16_avx2(row, x, n);
#endif
    return dot_f16_scalar(row, x, n);
}

float wren_dot_bf16(const void *row, const float *x, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) return dot_bf16_avx2(row, x, n);
#endif
    return dot_bf16_scalar(row, x, n);
}

void wren_f16_to_f32(const void *src, float *dst, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { f16_to_f32_avx2(src, dst, n); return; }
#endif
    const uint8_t *r = src;
    for (int j = 0; j < n; j++) dst[j] = f16_to_f32_scalar(load_u16(r + 2 * j));
}

static uint16_t f32_to_f16_scalar(float f) {
    uint32_t x; memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
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

void wren_f32_to_f16(const float *src, void *dst, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { f32_to_f16_avx2(src, dst, n); return; }
#endif
    uint8_t *d = dst;
    for (int j = 0; j < n; j++) { uint16_t h = f32_to_f16_scalar(src[j]); memcpy(d + 2 * j, &h, 2); }
}

void wren_axpy_f16(float a, const void *v, float *out, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { axpy_f16_avx2(a, v, out, n); return; }
#endif
    const uint8_t *r = v;
    for (int j = 0; j < n; j++) out[j] += a * f16_to_f32_scalar(load_u16(r + 2 * j));
}
