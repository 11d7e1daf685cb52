// Attention over the f16 and q8_0 KV caches (one query head against n cached
// positions, online softmax in blocks of 64) and the activations around it:
// softmax, SwiGLU and its backward, all with a vectorised exp (AVX2/FMA/F16C
// chosen at run time, portable C otherwise). The Swift side is
// WrenKernels/Attention.swift.
#include "kernels_common.h"

#if HAVE_SIMD
// e^x for 8 floats: x = n·ln2 + r (ln2 split in two parts for an exact
// product), e^r by Cephes' degree-6 polynomial (relative error ~2 ulp over
// the clamped range), 2^n put together in the exponent bits. Inputs below
// −88.38 give 0 (also −inf), above +88.38 the largest finite result.
SIMD_FN static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f)), _mm256_set1_ps(88.3762626647949f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

SIMD_FN static void softmax_avx2(float *x, int n) {
    float m = -INFINITY;
    int j = 0;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (; j + 8 <= n; j += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + j));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    m = _mm_cvtss_f32(m4);
    for (; j < n; j++) if (x[j] > m) m = x[j];
    __m256 sum = _mm256_setzero_ps(), mb = _mm256_set1_ps(m);
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), mb));
        _mm256_storeu_ps(x + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    float s = hsum256(sum);
    for (; j < n; j++) { x[j] = expf(x[j] - m); s += x[j]; }
    __m256 inv = _mm256_set1_ps(1 / s);
    for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), inv));
    for (; j < n; j++) x[j] *= 1 / s;
}

SIMD_FN static void swiglu_avx2(float *gate, const float *up, int n) {
    int j = 0;
    __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 g = _mm256_loadu_ps(gate + j);
        __m256 sig = _mm256_div_ps(g, _mm256_add_ps(one, exp256(_mm256_sub_ps(zero, g))));
        _mm256_storeu_ps(gate + j, _mm256_mul_ps(sig, _mm256_loadu_ps(up + j)));
    }
    for (; j < n; j++) gate[j] = gate[j] / (1 + expf(-gate[j])) * up[j];
}

// GeGLU with the tanh GELU: 0.5·g·(1 + tanh(u)) = g·σ(2u), u = √(2/π)·(g + 0.044715·g³).
SIMD_FN static void geglu_avx2(float *gate, const float *up, int n) {
    int j = 0;
    __m256 one = _mm256_set1_ps(1.0f), m2c = _mm256_set1_ps(-2 * 0.7978845608f), k = _mm256_set1_ps(0.044715f);
    for (; j + 8 <= n; j += 8) {
        __m256 g = _mm256_loadu_ps(gate + j);
        __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(k, g), _mm256_mul_ps(g, g), g);
        __m256 gelu = _mm256_div_ps(g, _mm256_add_ps(one, exp256(_mm256_mul_ps(m2c, inner))));
        _mm256_storeu_ps(gate + j, _mm256_mul_ps(gelu, _mm256_loadu_ps(up + j)));
    }
    for (; j < n; j++) gate[j] = gate[j] / (1 + expf(-2 * 0.7978845608f * (gate[j] + 0.044715f * gate[j] * gate[j] * gate[j]))) * up[j];
}

// Backward of h = silu(g)·u: dg += dh·u·σ(g)·(1 + g·(1 − σ(g))), du += dh·g·σ(g).
SIMD_FN static void swiglu_backward_avx2(const float *g, const float *u, const float *dh, float *dg, float *du, int n) {
    int j = 0;
    __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 x = _mm256_loadu_ps(g + j), d = _mm256_loadu_ps(dh + j);
        __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(zero, x))));
        __m256 silu = _mm256_mul_ps(x, sig);
        __m256 dsilu = _mm256_mul_ps(sig, _mm256_fmadd_ps(x, _mm256_sub_ps(one, sig), one));
        _mm256_storeu_ps(dg + j, _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_loadu_ps(u + j)), dsilu, _mm256_loadu_ps(dg + j)));
        _mm256_storeu_ps(du + j, _mm256_fmadd_ps(d, silu, _mm256_loadu_ps(du + j)));
    }
    for (; j < n; j++) {
        float s = 1 / (1 + expf(-g[j]));
        dg[j] += dh[j] * u[j] * s * (1 + g[j] * (1 - s));
        du[j] += dh[j] * g[j] * s;
    }
}

SIMD_FN static inline float kdot_f16(const uint8_t *kp, const float *q, int hd) {
    __m256 a = _mm256_setzero_ps();
    for (int j = 0; j < hd; j += 8)
        a = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kp + 2 * j))), _mm256_loadu_ps(q + j), a);
    return hsum256(a);
}

// Eight positions' scores at once, each with exactly kdot_f16's operations (its
// own fma chain over j, then hsum256's additions, done transposed): eight
// independent chains instead of one latency-bound chain per position.
SIMD_FN static inline __m256 hsum8(const __m256 *a) {
    // Lanes [x_p | x_p+4]: hsum256's first step (low half + high half) for p and p + 4.
    __m256 X[4];
    for (int p = 0; p < 4; p++)
        X[p] = _mm256_add_ps(_mm256_permute2f128_ps(a[p], a[p + 4], 0x20), _mm256_permute2f128_ps(a[p], a[p + 4], 0x31));
    // Transpose each 128-bit half: R[c] holds element c of the four positions.
    __m256 t0 = _mm256_unpacklo_ps(X[0], X[1]), t1 = _mm256_unpackhi_ps(X[0], X[1]);
    __m256 t2 = _mm256_unpacklo_ps(X[2], X[3]), t3 = _mm256_unpackhi_ps(X[2], X[3]);
    __m256 R0 = _mm256_shuffle_ps(t0, t2, 0x44), R1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 R2 = _mm256_shuffle_ps(t1, t3, 0x44), R3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    // hsum256's (x0 + x2) + (x1 + x3).
    return _mm256_add_ps(_mm256_add_ps(R0, R2), _mm256_add_ps(R1, R3));
}

SIMD_FN static inline __m256 kdot8_f16(const uint8_t *kp, size_t stride, const float *q, int hd) {
    __m256 a[8];
    for (int p = 0; p < 8; p++) a[p] = _mm256_setzero_ps();
    for (int j = 0; j < hd; j += 8) {
        __m256 qv = _mm256_loadu_ps(q + j);
        for (int p = 0; p < 8; p++)
            a[p] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kp + p * stride + 2 * j))), qv, a[p]);
    }
    return hsum8(a);
}

SIMD_FN static inline void vaxpy_f16(float e, const uint8_t *vp, float *out, int hd) {
    __m256 ev = _mm256_set1_ps(e);
    for (int j = 0; j < hd; j += 8)
        _mm256_storeu_ps(out + j, _mm256_fmadd_ps(ev, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vp + 2 * j))), _mm256_loadu_ps(out + j)));
}

// A block's bn positions into out (vaxpy_f16 once per position, in order). With
// 64-wide heads the accumulator stays in eight registers across the block
// instead of going through memory at every position; the operations are the same.
SIMD_FN static inline void vblock_f16(const float *e, int bn, const uint8_t *v, size_t stride, float *out, int hd) {
    if (hd != 64) {
        for (int i = 0; i < bn; i++) vaxpy_f16(e[i], v + (size_t)i * stride, out, hd);
        return;
    }
    __m256 o[8];
    for (int c = 0; c < 8; c++) o[c] = _mm256_loadu_ps(out + 8 * c);
    for (int i = 0; i < bn; i++) {
        __m256 ev = _mm256_set1_ps(e[i]);
        const uint8_t *vp = v + (size_t)i * stride;
        for (int c = 0; c < 8; c++) o[c] = _mm256_fmadd_ps(ev, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vp + 16 * c))), o[c]);
    }
    for (int c = 0; c < 8; c++) _mm256_storeu_ps(out + 8 * c, o[c]);
}

SIMD_FN static inline void vaxpy_q8_0(float e, const uint8_t *vp, float *out, int hd) {
    for (int b = 0; b < hd / 32; b++, vp += 34, out += 32) {
        __m256 ev = _mm256_set1_ps(e * _cvtsh_ss(load_u16(vp)));
        const uint8_t *q = vp + 2;
        for (int j = 0; j < 32; j += 8) {
            __m256 w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + j))));
            _mm256_storeu_ps(out + j, _mm256_fmadd_ps(ev, w, _mm256_loadu_ps(out + j)));
        }
    }
}

// One query head over n cached positions, keys in blocks of 64 with a running
// maximum and sum (online softmax); KDOT reads one position's key, KDOT8 eight
// positions' (the same bits as KDOT, used where KDOT8_OK), VBLOCK adds a block's
// weighted values to out.
#define ATTEND(NAME, KDOT, KDOT8, KDOT8_OK, VBLOCK, KV_BYTES)                                                                       \
SIMD_FN static void NAME(const float *q, const uint8_t *k, const uint8_t *v, size_t stride, int n, int hd, \
                         float scale, float *out) {                                                    \
    float sc[64], run_max = -INFINITY, run_sum = 0;                                                    \
    for (int j = 0; j < hd; j++) out[j] = 0;                                                           \
    for (int p0 = 0; p0 < n; p0 += 64) {                                                               \
        int bn = n - p0 < 64 ? n - p0 : 64;                                                            \
        float bmax = -INFINITY;                                                                        \
        /* The cache rows are far apart (a row holds every kv head): fetch this block's   \
           values while its scores are computed, and each next eight keys ahead. */        \
        for (int r = 0; r < bn; r++)                                                                   \
            for (int o = 0; o < hd * KV_BYTES; o += 64) _mm_prefetch((const char *)v + (size_t)(p0 + r) * stride + o, _MM_HINT_T0); \
        int i = 0;                                                                                     \
        for (; i + 8 <= bn && KDOT8_OK; i += 8) {                                                      \
            for (int r = i + 8; r < i + 16 && r < bn; r++)                                             \
                for (int o = 0; o < hd * KV_BYTES; o += 64) _mm_prefetch((const char *)k + (size_t)(p0 + r) * stride + o, _MM_HINT_T0); \
            _mm256_storeu_ps(sc + i, _mm256_mul_ps(KDOT8(k + (size_t)(p0 + i) * stride, stride, q, hd),  \
                                                   _mm256_set1_ps(scale)));                            \
        }                                                                                              \
        for (; i < bn; i++) sc[i] = KDOT(k + (size_t)(p0 + i) * stride, q, hd) * scale;                \
        for (i = 0; i < bn; i++) if (sc[i] > bmax) bmax = sc[i];                                       \
        if (bmax > run_max) {                                                                          \
            float corr = expf(run_max - bmax);                                                         \
            if (run_sum != 0) for (int j = 0; j < hd; j++) out[j] *= corr;                             \
            run_sum *= corr;                                                                           \
            run_max = bmax;                                                                            \
        }                                                                                              \
        int i8 = 0;                                                                                    \
        for (; i8 + 8 <= bn; i8 += 8)                                                                  \
            _mm256_storeu_ps(sc + i8, exp256(_mm256_sub_ps(_mm256_loadu_ps(sc + i8), _mm256_set1_ps(run_max)))); \
        for (; i8 < bn; i8++) sc[i8] = expf(sc[i8] - run_max);                                         \
        for (i = 0; i < bn; i++) run_sum += sc[i];                                                     \
        VBLOCK(sc, bn, v + (size_t)p0 * stride, stride, out, hd);                                      \
    }                                                                                                  \
    float inv = 1 / run_sum;                                                                           \
    for (int j = 0; j < hd; j++) out[j] *= inv;                                                        \
}

SIMD_FN static inline float kdot_q8_0(const uint8_t *kp, const float *q, int hd) { return dot_q8_0_avx2(kp, q, hd / 32); }
ATTEND(attend_f16_avx2, kdot_f16, kdot8_f16, 1, vblock_f16, 2)
SIMD_FN static inline void vblock_q8_0(const float *e, int bn, const uint8_t *v, size_t stride, float *out, int hd) {
    for (int i = 0; i < bn; i++) vaxpy_q8_0(e[i], v + (size_t)i * stride, out, hd);
}
ATTEND(attend_q8_0_avx2, kdot_q8_0, kdot8_f16, 0, vblock_q8_0, 1)
#endif

static float kdot_f16_scalar(const uint8_t *kp, const float *q, int hd) { return dot_f16_scalar(kp, q, hd); }
static float kdot_q8_0_scalar(const uint8_t *kp, const float *q, int hd) { return dot_q8_0_scalar(kp, q, hd / 32); }
static void vaxpy_f16_scalar(float e, const uint8_t *vp, float *out, int hd) {
    for (int j = 0; j < hd; j++) out[j] += e * f16_to_f32_scalar(load_u16(vp + 2 * j));
}
static void vaxpy_q8_0_scalar(float e, const uint8_t *vp, float *out, int hd) {
    for (int b = 0; b < hd / 32; b++, vp += 34, out += 32) {
        float d = e * f16_to_f32_scalar(load_u16(vp));
        for (int j = 0; j < 32; j++) out[j] += d * (float)(int8_t)vp[2 + j];
    }
}

static void attend_scalar(const float *q, const uint8_t *k, const uint8_t *v, size_t stride, int n, int hd, float scale, float *out,
                          float (*kdot)(const uint8_t *, const float *, int), void (*vaxpy)(float, const uint8_t *, float *, int)) {
    float sc[64], run_max = -INFINITY, run_sum = 0;
    for (int j = 0; j < hd; j++) out[j] = 0;
    for (int p0 = 0; p0 < n; p0 += 64) {
        int bn = n - p0 < 64 ? n - p0 : 64;
        float bmax = -INFINITY;
        for (int i = 0; i < bn; i++) {
            sc[i] = kdot(k + (size_t)(p0 + i) * stride, q, hd) * scale;
            if (sc[i] > bmax) bmax = sc[i];
        }
        if (bmax > run_max) {
            float corr = expf(run_max - bmax);
            if (run_sum != 0) for (int j = 0; j < hd; j++) out[j] *= corr;
            run_sum *= corr;
            run_max = bmax;
        }
        for (int i = 0; i < bn; i++) {
            float e = expf(sc[i] - run_max);
            run_sum += e;
            vaxpy(e, v + (size_t)(p0 + i) * stride, out, hd);
        }
    }
    float inv = 1 / run_sum;
    for (int j = 0; j < hd; j++) out[j] *= inv;
}

void wren_attend_f16(const float *q, const void *k, const void *v, size_t stride, int n, int hd, float scale, float *out) {
#if HAVE_SIMD
    if (wren_kernels_simd() && hd % 8 == 0) { attend_f16_avx2(q, k, v, stride, n, hd, scale, out); return; }
#endif
    attend_scalar(q, k, v, stride, n, hd, scale, out, kdot_f16_scalar, vaxpy_f16_scalar);
}

void wren_attend_q8_0(const float *q, const void *k, const void *v, size_t stride, int n, int hd, float scale, float *out) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { attend_q8_0_avx2(q, k, v, stride, n, hd, scale, out); return; }
#endif
    attend_scalar(q, k, v, stride, n, hd, scale, out, kdot_q8_0_scalar, vaxpy_q8_0_scalar);
}

void wren_softmax(float *x, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { softmax_avx2(x, n); return; }
#endif
    float m = -INFINITY, s = 0;
    for (int j = 0; j < n; j++) if (x[j] > m) m = x[j];
    for (int j = 0; j < n; j++) { x[j] = expf(x[j] - m); s += x[j]; }
    for (int j = 0; j < n; j++) x[j] *= 1 / s;
}

void wren_swiglu(float *gate, const float *up, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { swiglu_avx2(gate, up, n); return; }
#endif
    for (int j = 0; j < n; j++) gate[j] = gate[j] / (1 + expf(-gate[j])) * up[j];
}

void wren_geglu(float *gate, const float *up, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { geglu_avx2(gate, up, n); return; }
#endif
    for (int j = 0; j < n; j++) gate[j] = gate[j] / (1 + expf(-2 * 0.7978845608f * (gate[j] + 0.044715f * gate[j] * gate[j] * gate[j]))) * up[j];
}

void wren_swiglu_backward(const float *g, const float *u, const float *dh, float *dg, float *du, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { swiglu_backward_avx2(g, u, dh, dg, du, n); return; }
#endif
    for (int j = 0; j < n; j++) {
        float s = 1 / (1 + expf(-g[j]));
        dg[j] += dh[j] * u[j] * s * (1 + g[j] * (1 - s));
        du[j] += dh[j] * g[j] * s;
    }
}
