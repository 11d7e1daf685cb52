// See include/wren_kernels.h. Each kernel computes, per block,
//   d·Σ q[j]·x[j] + m·Σ x[j]
// which is the dot product with the exactly dequantized row (d·q + m) in f32
// arithmetic, summed in a different order.
#include "kernels_common.h"
#include <stdio.h>



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



static float dot_bf16_scalar(const uint8_t *r, const float *x, int n) {
    float s = 0;
    for (int j = 0; j < n; j++) {
        uint32_t bits = (uint32_t)load_u16(r + 2 * j) << 16;
        float w; memcpy(&w, &bits, 4);
        s += w * x[j];
    }
    return s;
}

// ---- 8-bit activations: x quantized once per matmul to blocks of 32 int8
// with a float scale d (x ≈ d·q) and s = d·Σq, as llama.cpp's q8_1 does.
// (s = d·Σq, not the exact Σx: the q4_1 dot is then exactly w·x̂, whose
// rounding errors partly cancel between d·q and m; measured on SmolLM2, the
// exact Σx doubled the mean logit error.)
static void quantize_q8_scalar(const float *x, int8_t *qs, float *d, float *s, int n) {
    for (int b = 0; b < n / 32; b++, x += 32, qs += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) { float a = x[j] < 0 ? -x[j] : x[j]; if (a > amax) amax = a; }
        float db = amax / 127, id = db != 0 ? 127 / amax : 0;
        int sum = 0;
        for (int j = 0; j < 32; j++) { int q = (int)nearbyintf(x[j] * id); qs[j] = (int8_t)q; sum += q; }
        d[b] = db; s[b] = db * (float)sum;
    }
}

#if HAVE_SIMD


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


SIMD_FN static void quantize_q8_avx2(const float *x, int8_t *qs, float *d, float *s, int n) {
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    for (int b = 0; b < n / 32; b++, x += 32, qs += 32) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(signbit, v0), _mm256_andnot_ps(signbit, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(signbit, v2), _mm256_andnot_ps(signbit, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float db = amax / 127, id = db != 0 ? 127 / amax : 0;
        __m256 mul = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, mul)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, mul));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, mul)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, mul));
        __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        // Pack to bytes; packs interleave 128-bit lanes, the permute restores order.
        __m256i p16a = _mm256_packs_epi32(i0, i1), p16b = _mm256_packs_epi32(i2, i3);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)qs, p8);
        d[b] = db; s[b] = db * (float)_mm_cvtsi128_si32(s4);
    }
}

// f16 rows against f32 activations, one row at a time: measured on Zen 3, one
// sequential stream with two accumulators beat four interleaved rows (with or
// without software prefetch) by 10–40%, unlike the quantized rows above.
SIMD_FN static void gemv_f16_avx2(const uint8_t *w, size_t row_bytes, int rows, const float *x, int n, float *y) {
    for (int r = 0; r < rows; r++) y[r] = dot_f16_avx2(w + r * row_bytes, x, n);
}

// Two tokens against one f16 row: per token exactly dot_f16_avx2's operations.
SIMD_FN static void gemm2_f16_avx2(const uint8_t *w, size_t row_bytes, int rows, const float *x, int n, float *y, int ldy) {
    const float *x1 = x + n;
    for (int r = 0; r < rows; r++) {
        const uint8_t *rw = w + r * row_bytes;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        int j = 0;
        for (; j + 16 <= n; j += 16) {
            __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rw + 2 * j)));
            __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rw + 2 * j + 16)));
            a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + j + 8), a1);
            b0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x1 + j), b0);
            b1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x1 + j + 8), b1);
        }
        float sa = hsum256(_mm256_add_ps(a0, a1)), sb = hsum256(_mm256_add_ps(b0, b1));
        for (; j < n; j++) { float wj = _cvtsh_ss(load_u16(rw + 2 * j)); sa += wj * x[j]; sb += wj * x1[j]; }
        y[r] = sa; y[ldy + r] = sb;
    }
}

// f32 rows: one row against one token (remainder rows), and four rows against
// one or two tokens, per (row, token) the same operations in the same order.
SIMD_FN static float dot_f32_avx2(const float *w, const float *x, int n) {
    __m256 a = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x + j), a);
    float s = hsum256(a);
    for (; j < n; j++) s += w[j] * x[j];
    return s;
}

SIMD_FN static void gemm_f32_avx2(const float *w, int rows, const float *x, int n, int two, float *y, int ldy) {
    int r = 0;
    size_t group = 16 * (size_t)n, pf_ahead = (PF_BYTES + group - 1) / group * group / 4;
    const float *x1 = x + n;
    for (; r + 4 <= rows && n % 8 == 0; r += 4) {
        const float *w0 = w + (size_t)r * n;
        __m256 a[2][4];
        for (int k = 0; k < 4; k++) a[0][k] = a[1][k] = _mm256_setzero_ps();
        for (int j = 0; j < n; j += 8) {
            _mm_prefetch((const char *)(w0 + pf_ahead + 4 * j), _MM_HINT_T0);
            _mm_prefetch((const char *)(w0 + pf_ahead + 4 * j) + 64, _MM_HINT_T0);
            __m256 xa = _mm256_loadu_ps(x + j);
            for (int k = 0; k < 4; k++) {
                __m256 wv = _mm256_loadu_ps(w0 + (size_t)k * n + j);
                a[0][k] = _mm256_fmadd_ps(wv, xa, a[0][k]);
                if (two) a[1][k] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + j), a[1][k]);
            }
        }
        for (int k = 0; k < 4; k++) { y[r + k] = hsum256(a[0][k]); if (two) y[ldy + r + k] = hsum256(a[1][k]); }
    }
    for (; r < rows; r++) {
        y[r] = dot_f32_avx2(w + (size_t)r * n, x, n);
        if (two) y[ldy + r] = dot_f32_avx2(w + (size_t)r * n, x1, n);
    }
}

static int simd_state = -1;   /* -1: not chosen yet; else the set: 0 portable, 1 AVX2, 2 AVX-512 VNNI */
static int forced = -1;       /* tests: the set asked for (capped by the CPU), -1: the environment's */

/* The best set this CPU runs: AVX-512 VNNI needs F, BW, VL and VNNI (the OS saving the
   AVX-512 state is part of __builtin_cpu_supports' answer) on top of AVX2/FMA/F16C. */
static int cpu_best(void) {
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    int vnni = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vnni");
    return vnni ? 2 : avx2 ? 1 : 0;
}
static const char *set_names[] = { "scalar", "avx2", "avx512vnni" };

void wren_kernels_force_scalar(int on) { forced = on ? 0 : -1; simd_state = -1; }
int wren_kernels_force_set(int set) {
    int best = cpu_best();
    forced = set < 0 ? -1 : set < best ? set : best;
    simd_state = -1;
    return wren_kernels_simd();
}
int wren_kernels_best(void) { return cpu_best(); }
/* WREN_KERNELS=scalar (or portable) forces the portable C paths (the test command runs the
   engine tests once more that way, so the fallback is covered on every machine);
   WREN_KERNELS=avx2 asks for the AVX2 set, avx512vnni (or avx512) for the VNNI one. A set
   this CPU lacks is named on stderr with the set used instead, never skipped silently. */
int wren_kernels_simd(void) {
    if (simd_state < 0) {
        int best = cpu_best();
        if (forced >= 0) { simd_state = forced; return simd_state; }
        const char *k = getenv("WREN_KERNELS");
        int want = best;
        if (k && *k) {
            if (strcmp(k, "scalar") == 0 || strcmp(k, "portable") == 0) want = 0;
            else if (strcmp(k, "avx2") == 0) want = 1;
            else if (strcmp(k, "avx512vnni") == 0 || strcmp(k, "avx512") == 0) want = 2;
            else fprintf(stderr, "wren: WREN_KERNELS=%s: no such kernel set (scalar, avx2, avx512vnni); using %s\n", k, set_names[best]);
        }
        if (want > best) {
            fprintf(stderr, "wren: WREN_KERNELS=%s: this CPU lacks it; using %s\n", k, set_names[best]);
            want = best;
        }
        simd_state = want;
    }
    return simd_state;
}
const char *wren_kernels_name(void) { return set_names[wren_kernels_simd()]; }
#else
int wren_kernels_simd(void) { return 0; }
void wren_kernels_force_scalar(int on) { (void)on; }
int wren_kernels_force_set(int set) { (void)set; return 0; }
int wren_kernels_best(void) { return 0; }
const char *wren_kernels_name(void) { return "scalar"; }
#endif


void wren_f16_to_f32(const void *src, float *dst, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { f16_to_f32_avx2(src, dst, n); return; }
#endif
    wren_convert_f16_to_f32_scalar(src, dst, n);
}

void wren_f32_to_f16(const float *src, void *dst, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { f32_to_f16_avx2(src, dst, n); return; }
#endif
    wren_convert_f32_to_f16_scalar(src, dst, n);
}

void wren_axpy_f16(float a, const void *v, float *out, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { axpy_f16_avx2(a, v, out, n); return; }
#endif
    const uint8_t *r = v;
    for (int j = 0; j < n; j++) out[j] += a * f16_to_f32_scalar(load_u16(r + 2 * j));
}

void wren_quantize_q8(const float *x, int8_t *qs, float *d, float *s, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { quantize_q8_avx2(x, qs, d, s, n); return; }
#endif
    quantize_q8_scalar(x, qs, d, s, n);
}

// ---- The dtype table: one row per stored type and per kernel set (portable,
// AVX2). The columns share one signature each, so the adapters below only
// rename arguments; every row's arithmetic is the kernel above it.

static void copy_to_float(const void *src, float *dst, int64_t n) { memcpy(dst, src, 4 * (size_t)n); }
static void copy_from_float(const float *src, void *dst, int64_t n) { memcpy(dst, src, 4 * (size_t)n); }

// f32 · f32, sequential (the portable row dot).
static float dot_f32_scalar(const float *w, const float *x, int n) {
    float s = 0;
    for (int j = 0; j < n; j++) s += w[j] * x[j];
    return s;
}

// vec_dot adapters: (row, x, block sums of x, n elements).
#define VEC_DOT(NAME, CALL) \
    static float NAME(const void *row, const float *x, const float *xsum, int n) { (void)xsum; (void)n; return CALL; }
VEC_DOT(vd_f32_scalar, dot_f32_scalar(row, x, n))
VEC_DOT(vd_f16_scalar, dot_f16_scalar(row, x, n))
VEC_DOT(vd_bf16_scalar, dot_bf16_scalar(row, x, n))
VEC_DOT(vd_q4_0_scalar, dot_q4_0_scalar(row, x, xsum, n / 32))
VEC_DOT(vd_q4_1_scalar, dot_q4_1_scalar(row, x, xsum, n / 32))
VEC_DOT(vd_q8_0_scalar, dot_q8_0_scalar(row, x, n / 32))

// The 5-bit types against f32 activations (the exact path): each block widened
// exactly, then dotted in order. Portable code on every kernel set for now.
#define DOT_WIDENED(NAME, CONVERT, BLOCK_BYTES)                                                                \
    static float NAME(const void *row, const float *x, const float *xsum, int n) {                             \
        (void)xsum;                                                                                            \
        const uint8_t *r = row;                                                                                \
        float s = 0, w[32];                                                                                    \
        for (int b = 0; b < n / 32; b++, r += BLOCK_BYTES, x += 32) {                                          \
            CONVERT(r, w, 32);                                                                                 \
            float acc = 0;                                                                                     \
            for (int j = 0; j < 32; j++) acc += w[j] * x[j];                                                   \
            s += acc;                                                                                          \
        }                                                                                                      \
        return s;                                                                                              \
    }
DOT_WIDENED(vd_q5_0_scalar, wren_convert_q5_0_to_f32, 22)
DOT_WIDENED(vd_q5_1_scalar, wren_convert_q5_1_to_f32, 24)

// The k-quants: one super-block of 256 widened at a time.
#define DOT_WIDENED_K(NAME, CONVERT, BLOCK_BYTES)                                                              \
    static float NAME(const void *row, const float *x, const float *xsum, int n) {                             \
        (void)xsum;                                                                                            \
        const uint8_t *r = row;                                                                                \
        float s = 0, w[256];                                                                                   \
        for (int b = 0; b < n / 256; b++, r += BLOCK_BYTES, x += 256) {                                        \
            CONVERT(r, w, 256);                                                                                \
            for (int c = 0; c < 256; c += 32) {                                                                \
                float acc = 0;                                                                                 \
                for (int j = c; j < c + 32; j++) acc += w[j] * x[j];                                           \
                s += acc;                                                                                      \
            }                                                                                                  \
        }                                                                                                      \
        return s;                                                                                              \
    }
DOT_WIDENED_K(vd_q2_k_scalar, wren_convert_q2_k_to_f32, 84)
DOT_WIDENED_K(vd_q3_k_scalar, wren_convert_q3_k_to_f32, 110)
DOT_WIDENED_K(vd_q4_k_scalar, wren_convert_q4_k_to_f32, 144)
DOT_WIDENED_K(vd_q5_k_scalar, wren_convert_q5_k_to_f32, 176)
DOT_WIDENED_K(vd_q6_k_scalar, wren_convert_q6_k_to_f32, 210)

// gemm over rows × tokens from a vec_dot: y[t·ldy + r] = row r · x_t.
#define GEMM_BY_DOT(NAME, DOT)                                                                                 \
    static void NAME(const void *w, size_t row_bytes, int rows, const float *x, const float *xsum, int n,     \
                     int tokens, float *y, int ldy) {                                                          \
        const uint8_t *rw = w;                                                                                 \
        for (int r = 0; r < rows; r++, rw += row_bytes)                                                        \
            for (int t = 0; t < tokens; t++)                                                                   \
                y[(size_t)t * ldy + r] = DOT(rw, x + (size_t)t * n, xsum ? xsum + (size_t)t * (n / 32) : NULL, n); \
    }
GEMM_BY_DOT(gemm_f32_scalar, vd_f32_scalar)
GEMM_BY_DOT(gemm_f16_scalar, vd_f16_scalar)
GEMM_BY_DOT(gemm_bf16_scalar, vd_bf16_scalar)
GEMM_BY_DOT(gemm_q4_0_scalar, vd_q4_0_scalar)
GEMM_BY_DOT(gemm_q4_1_scalar, vd_q4_1_scalar)
GEMM_BY_DOT(gemm_q8_0_scalar, vd_q8_0_scalar)
GEMM_BY_DOT(gemm_q5_0_scalar, vd_q5_0_scalar)
GEMM_BY_DOT(gemm_q5_1_scalar, vd_q5_1_scalar)
GEMM_BY_DOT(gemm_q2_k_scalar, vd_q2_k_scalar)
GEMM_BY_DOT(gemm_q3_k_scalar, vd_q3_k_scalar)
GEMM_BY_DOT(gemm_q4_k_scalar, vd_q4_k_scalar)
GEMM_BY_DOT(gemm_q5_k_scalar, vd_q5_k_scalar)
GEMM_BY_DOT(gemm_q6_k_scalar, vd_q6_k_scalar)

#define ROW(ID, NAME, BLOCK, BYTES, TO, FROM, DOT, GEMM, GEMM_Q8) \
    [ID] = { ID, NAME, BLOCK, BYTES, TO, FROM, DOT, GEMM, GEMM_Q8 }
enum { TYPE_SLOTS = 31 };   /* ggml ids 0 … 30 */

static const wren_type_traits portable[TYPE_SLOTS] = {
    ROW(0, "f32", 1, 4, copy_to_float, copy_from_float, vd_f32_scalar, gemm_f32_scalar, NULL),
    ROW(1, "f16", 1, 2, wren_convert_f16_to_f32_scalar, wren_convert_f32_to_f16_scalar, vd_f16_scalar, gemm_f16_scalar, NULL),
    ROW(2, "q4_0", 32, 18, wren_convert_q4_0_to_f32, wren_convert_f32_to_q4_0, vd_q4_0_scalar, gemm_q4_0_scalar, wren_gemm_q8_q4_0_scalar),
    ROW(3, "q4_1", 32, 20, wren_convert_q4_1_to_f32, wren_convert_f32_to_q4_1, vd_q4_1_scalar, gemm_q4_1_scalar, wren_gemm_q8_q4_1_scalar),
    ROW(6, "q5_0", 32, 22, wren_convert_q5_0_to_f32, wren_convert_f32_to_q5_0, vd_q5_0_scalar, gemm_q5_0_scalar, wren_gemm_q8_q5_0_scalar),
    ROW(7, "q5_1", 32, 24, wren_convert_q5_1_to_f32, wren_convert_f32_to_q5_1, vd_q5_1_scalar, gemm_q5_1_scalar, wren_gemm_q8_q5_1_scalar),
    ROW(8, "q8_0", 32, 34, wren_convert_q8_0_to_f32, wren_convert_f32_to_q8_0, vd_q8_0_scalar, gemm_q8_0_scalar, wren_gemm_q8_q8_0_scalar),
    ROW(10, "q2_k", 256, 84, wren_convert_q2_k_to_f32, wren_convert_f32_to_q2_k, vd_q2_k_scalar, gemm_q2_k_scalar, wren_gemm_q8_q2_k_scalar),
    ROW(11, "q3_k", 256, 110, wren_convert_q3_k_to_f32, wren_convert_f32_to_q3_k, vd_q3_k_scalar, gemm_q3_k_scalar, wren_gemm_q8_q3_k_scalar),
    ROW(12, "q4_k", 256, 144, wren_convert_q4_k_to_f32, wren_convert_f32_to_q4_k, vd_q4_k_scalar, gemm_q4_k_scalar, wren_gemm_q8_q4_k_scalar),
    ROW(13, "q5_k", 256, 176, wren_convert_q5_k_to_f32, wren_convert_f32_to_q5_k, vd_q5_k_scalar, gemm_q5_k_scalar, wren_gemm_q8_q5_k_scalar),
    ROW(14, "q6_k", 256, 210, wren_convert_q6_k_to_f32, wren_convert_f32_to_q6_k, vd_q6_k_scalar, gemm_q6_k_scalar, wren_gemm_q8_q6_k_scalar),
    ROW(30, "bf16", 1, 2, wren_convert_bf16_to_f32, wren_convert_f32_to_bf16, vd_bf16_scalar, gemm_bf16_scalar, NULL),
};

#if HAVE_SIMD
// f16 widening in chunks (the SIMD loops count in int).
static void f16_to_float_avx2(const void *src, float *dst, int64_t n) {
    const uint8_t *r = src;
    for (int64_t j = 0; j < n; j += 1 << 30) f16_to_f32_avx2(r + 2 * j, dst + j, (int)(n - j < (1 << 30) ? n - j : 1 << 30));
}
static void f16_from_float_avx2(const float *src, void *dst, int64_t n) {
    uint8_t *d = dst;
    for (int64_t j = 0; j < n; j += 1 << 30) f32_to_f16_avx2(src + j, d + 2 * j, (int)(n - j < (1 << 30) ? n - j : 1 << 30));
}

VEC_DOT(vd_f32_avx2, dot_f32_avx2(row, x, n))
VEC_DOT(vd_f16_avx2, dot_f16_avx2(row, x, n))
VEC_DOT(vd_bf16_avx2, dot_bf16_avx2(row, x, n))
VEC_DOT(vd_q4_0_avx2, dot_q4_0_avx2(row, x, xsum, n / 32))
VEC_DOT(vd_q4_1_avx2, dot_q4_1_avx2(row, x, xsum, n / 32))
VEC_DOT(vd_q8_0_avx2, dot_q8_0_avx2(row, x, n / 32))
GEMM_BY_DOT(gemm_bf16_avx2, vd_bf16_avx2)
GEMM_BY_DOT(gemm_q4_0_avx2, vd_q4_0_avx2)
GEMM_BY_DOT(gemm_q4_1_avx2, vd_q4_1_avx2)
GEMM_BY_DOT(gemm_q8_0_avx2, vd_q8_0_avx2)

// f32 and f16 rows: two tokens at a time share each weight load; per (row,
// token) the operations of the one-token kernel, so grouping never changes a result.
static void gemm_f32_rows_avx2(const void *w, size_t row_bytes, int rows, const float *x, const float *xsum, int n,
                               int tokens, float *y, int ldy) {
    (void)row_bytes; (void)xsum;
    int t = 0;
    for (; t + 2 <= tokens; t += 2) gemm_f32_avx2(w, rows, x + (size_t)t * n, n, 1, y + (size_t)t * ldy, ldy);
    if (t < tokens) gemm_f32_avx2(w, rows, x + (size_t)t * n, n, 0, y + (size_t)t * ldy, ldy);
}

static void gemm_f16_rows_avx2(const void *w, size_t row_bytes, int rows, const float *x, const float *xsum, int n,
                               int tokens, float *y, int ldy) {
    (void)xsum;
    int t = 0;
    for (; t + 2 <= tokens; t += 2) gemm2_f16_avx2(w, row_bytes, rows, x + (size_t)t * n, n, y + (size_t)t * ldy, ldy);
    for (; t < tokens; t++) gemv_f16_avx2(w, row_bytes, rows, x + (size_t)t * n, n, y + (size_t)t * ldy);
}

static const wren_type_traits avx2[TYPE_SLOTS] = {
    ROW(0, "f32", 1, 4, copy_to_float, copy_from_float, vd_f32_avx2, gemm_f32_rows_avx2, NULL),
    ROW(1, "f16", 1, 2, f16_to_float_avx2, f16_from_float_avx2, vd_f16_avx2, gemm_f16_rows_avx2, NULL),
    ROW(2, "q4_0", 32, 18, wren_convert_q4_0_to_f32, wren_convert_f32_to_q4_0, vd_q4_0_avx2, gemm_q4_0_avx2, wren_gemm_q8_q4_0_avx2),
    ROW(3, "q4_1", 32, 20, wren_convert_q4_1_to_f32, wren_convert_f32_to_q4_1, vd_q4_1_avx2, gemm_q4_1_avx2, wren_gemm_q8_q4_1_avx2),
    ROW(6, "q5_0", 32, 22, wren_convert_q5_0_to_f32, wren_convert_f32_to_q5_0, vd_q5_0_scalar, gemm_q5_0_scalar, wren_gemm_q8_q5_0_avx2),
    ROW(7, "q5_1", 32, 24, wren_convert_q5_1_to_f32, wren_convert_f32_to_q5_1, vd_q5_1_scalar, gemm_q5_1_scalar, wren_gemm_q8_q5_1_avx2),
    ROW(8, "q8_0", 32, 34, wren_convert_q8_0_to_f32, wren_convert_f32_to_q8_0, vd_q8_0_avx2, gemm_q8_0_avx2, wren_gemm_q8_q8_0_avx2),
    ROW(10, "q2_k", 256, 84, wren_convert_q2_k_to_f32, wren_convert_f32_to_q2_k, vd_q2_k_scalar, gemm_q2_k_scalar, wren_gemm_q8_q2_k_avx2),
    ROW(11, "q3_k", 256, 110, wren_convert_q3_k_to_f32, wren_convert_f32_to_q3_k, vd_q3_k_scalar, gemm_q3_k_scalar, wren_gemm_q8_q3_k_avx2),
    ROW(12, "q4_k", 256, 144, wren_convert_q4_k_to_f32, wren_convert_f32_to_q4_k, vd_q4_k_scalar, gemm_q4_k_scalar, wren_gemm_q8_q4_k_avx2),
    ROW(13, "q5_k", 256, 176, wren_convert_q5_k_to_f32, wren_convert_f32_to_q5_k, vd_q5_k_scalar, gemm_q5_k_scalar, wren_gemm_q8_q5_k_avx2),
    ROW(14, "q6_k", 256, 210, wren_convert_q6_k_to_f32, wren_convert_f32_to_q6_k, vd_q6_k_scalar, gemm_q6_k_scalar, wren_gemm_q8_q6_k_avx2),
    ROW(30, "bf16", 1, 2, wren_convert_bf16_to_f32, wren_convert_f32_to_bf16, vd_bf16_avx2, gemm_bf16_avx2, NULL),
};
#endif


const wren_type_traits *wren_type(uint32_t dtype) {
    if (dtype >= TYPE_SLOTS) return NULL;
    const wren_type_traits *row = &portable[dtype];
#if HAVE_SIMD
    if (wren_kernels_simd()) row = &avx2[dtype];
#endif
    return row->name ? row : NULL;   /* an empty slot: a type Wren has no kernels for */
}
