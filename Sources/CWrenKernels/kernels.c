// See include/wren_kernels.h. Each kernel computes, per block,
//   d·Σ q[j]·x[j] + m·Σ x[j]
// which is the dot product with the exactly dequantized row (d·q + m) in f32
// arithmetic, summed in a different order.
#include "kernels_common.h"



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

static float dot_q4_1_q8_scalar(const uint8_t *r, const int8_t *qs, const float *d, const float *s, int blocks) {
    float acc = 0;
    for (int b = 0; b < blocks; b++, r += 20, qs += 32) {
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += (r[4 + j] & 15) * qs[j] + (r[4 + j] >> 4) * qs[j + 16];
        acc += f16_to_f32_scalar(load_u16(r)) * d[b] * (float)sum + f16_to_f32_scalar(load_u16(r + 2)) * s[b];
    }
    return acc;
}

static float dot_q4_0_q8_scalar(const uint8_t *r, const int8_t *qs, const float *d, int blocks) {
    float acc = 0;
    for (int b = 0; b < blocks; b++, r += 18, qs += 32) {
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += ((r[2 + j] & 15) - 8) * qs[j] + ((r[2 + j] >> 4) - 8) * qs[j + 16];
        acc += f16_to_f32_scalar(load_u16(r)) * d[b] * (float)sum;
    }
    return acc;
}

static float dot_q8_0_q8_scalar(const uint8_t *r, const int8_t *qs, const float *d, int blocks) {
    float acc = 0;
    for (int b = 0; b < blocks; b++, r += 34, qs += 32) {
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += (int8_t)r[2 + j] * qs[j];
        acc += f16_to_f32_scalar(load_u16(r)) * d[b] * (float)sum;
    }
    return acc;
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


// Integer block dots: maddubs multiplies unsigned by signed bytes into int16
// pairs (|w|≤128, |q|≤127: no saturation), madd widens to int32.
SIMD_FN static inline __m256 block_dot_i8(__m256i w_unsigned, __m256i x_signed) {
    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(w_unsigned, x_signed), _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(p);
}

SIMD_FN static inline __m256i nibbles32(const uint8_t *q) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)q), mask = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(bytes, mask), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
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

// Four rows at a time: the activation block is loaded once for four weight
// rows, and four independent accumulator chains keep the FMA units busy
// (rows of a 135M-parameter model are only 18–48 blocks long, so per-row
// overhead matters as much as the block loop).
// Software prefetch distance: the row group at least this many bytes ahead
// (measured on Zen 3: hardware prefetch alone left the q8_0 kernel at 5 GB/s
// of one core's 16; ~2.5 KB ahead reaches 12–15 GB/s).
#ifndef PF_BYTES
#define PF_BYTES 2560
#endif
#define GEMV_Q8(NAME, BLOCK_BYTES, WEIGHTS, MIN_TERM)                                                     \
SIMD_FN static void NAME(const uint8_t *w, size_t row_bytes, int rows, const int8_t *qs, const float *d,      \
                         const float *s, int blocks, float *y) {                                              \
    int r = 0;                                                                                                \
    size_t group = 4 * row_bytes, pf_ahead = (PF_BYTES + group - 1) / group * group;                          \
    for (; r + 4 <= rows; r += 4) {                                                                           \
        const uint8_t *rw[4] = { w + r * row_bytes, w + (r + 1) * row_bytes, w + (r + 2) * row_bytes,         \
                                 w + (r + 3) * row_bytes };                                                   \
        __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() }; \
        float sm[4] = { 0, 0, 0, 0 };                                                                         \
        for (int b = 0; b < blocks; b++) {                                                                    \
            __m256i x = _mm256_loadu_si256((const __m256i *)(qs + 32 * b));                                   \
            float db = d[b], sb = s[b]; (void)sb;                                                             \
            const char *pf = (const char *)rw[0] + pf_ahead + 4 * b * BLOCK_BYTES;                          \
            _mm_prefetch(pf, _MM_HINT_T0); _mm_prefetch(pf + 64, _MM_HINT_T0);                                \
            if (4 * BLOCK_BYTES > 128) _mm_prefetch(pf + 128, _MM_HINT_T0);                                   \
            for (int k = 0; k < 4; k++) {                                                                     \
                const uint8_t *blk = rw[k] + b * BLOCK_BYTES;                                                 \
                WEIGHTS                                                                                       \
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(load_u16(blk)) * db), p, acc[k]);           \
                MIN_TERM                                                                                      \
            }                                                                                                 \
        }                                                                                                     \
        for (int k = 0; k < 4; k++) y[r + k] = hsum256(acc[k]) + sm[k];                                       \
    }                                                                                                         \
    for (; r < rows; r++) {                                                                                   \
        const uint8_t *rw = w + r * row_bytes;                                                                \
        __m256 acc = _mm256_setzero_ps();                                                                     \
        float sm[1] = { 0 };                                                                                  \
        for (int b = 0; b < blocks; b++) {                                                                    \
            __m256i x = _mm256_loadu_si256((const __m256i *)(qs + 32 * b));                                   \
            float db = d[b], sb = s[b]; (void)sb;                                                             \
            const int k = 0; (void)k;                                                                         \
            const uint8_t *blk = rw + b * BLOCK_BYTES;                                                        \
            WEIGHTS                                                                                           \
            acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(load_u16(blk)) * db), p, acc);                     \
            MIN_TERM                                                                                          \
        }                                                                                                     \
        y[r] = hsum256(acc) + sm[0];                                                                          \
    }                                                                                                         \
}

GEMV_Q8(gemv_q4_1_q8_avx2, 20,
        __m256 p = block_dot_i8(nibbles32(blk + 4), x);,
        sm[k] += _cvtsh_ss(load_u16(blk + 2)) * sb;)
GEMV_Q8(gemv_q4_0_q8_avx2, 18,
        __m256i wq = _mm256_sub_epi8(nibbles32(blk + 2), _mm256_set1_epi8(8));
        __m256 p = block_dot_i8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(x, wq));,
        )
GEMV_Q8(gemv_q8_0_q8_avx2, 34,
        __m256i wq = _mm256_loadu_si256((const __m256i *)(blk + 2));
        __m256 p = block_dot_i8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(x, wq));,
        )


// Two tokens at once against four rows: the weight block is unpacked once and
// dotted with both tokens' blocks. Each (row, token) result is computed with
// exactly the operations, in the order, of the one-token kernel above, so a
// token's outputs are bit for bit the same whether it comes alone or paired.
#define GEMM2_Q8(NAME, GEMV, BLOCK_BYTES, PREP, DOT, MIN_TERM)                                             \
SIMD_FN static void NAME(const uint8_t *w, size_t row_bytes, int rows, const int8_t *qs, const float *d,      \
                         const float *s, int blocks, int n, float *y, int ldy) {                               \
    int r = 0;                                                                                                \
    size_t group = 4 * row_bytes, pf_ahead = (PF_BYTES + group - 1) / group * group;                          \
    for (; r + 4 <= rows; r += 4) {                                                                           \
        const uint8_t *rw[4] = { w + r * row_bytes, w + (r + 1) * row_bytes, w + (r + 2) * row_bytes,         \
                                 w + (r + 3) * row_bytes };                                                   \
        __m256 acc[2][4];                                                                                     \
        float sm[2][4];                                                                                       \
        for (int k = 0; k < 4; k++) { acc[0][k] = acc[1][k] = _mm256_setzero_ps(); sm[0][k] = sm[1][k] = 0; } \
        for (int b = 0; b < blocks; b++) {                                                                    \
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(qs + 32 * b));                                  \
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(qs + n + 32 * b));                              \
            float d0 = d[b], d1 = d[blocks + b], s0 = s[b], s1 = s[blocks + b]; (void)s0; (void)s1;           \
            const char *pf = (const char *)rw[0] + pf_ahead + 4 * b * BLOCK_BYTES;                            \
            _mm_prefetch(pf, _MM_HINT_T0); _mm_prefetch(pf + 64, _MM_HINT_T0);                                \
            if (4 * BLOCK_BYTES > 128) _mm_prefetch(pf + 128, _MM_HINT_T0);                                   \
            for (int k = 0; k < 4; k++) {                                                                     \
                const uint8_t *blk = rw[k] + b * BLOCK_BYTES;                                                 \
                float dw = _cvtsh_ss(load_u16(blk));                                                          \
                PREP                                                                                          \
                { __m256i x = x0; DOT acc[0][k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * d0), p, acc[0][k]); }   \
                { __m256i x = x1; DOT acc[1][k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * d1), p, acc[1][k]); }   \
                MIN_TERM                                                                                      \
            }                                                                                                 \
        }                                                                                                     \
        for (int k = 0; k < 4; k++) { y[r + k] = hsum256(acc[0][k]) + sm[0][k];                               \
                                      y[ldy + r + k] = hsum256(acc[1][k]) + sm[1][k]; }                       \
    }                                                                                                         \
    if (r < rows) {                                                                                           \
        GEMV(w + r * row_bytes, row_bytes, rows - r, qs, d, s, blocks, y + r);                                \
        GEMV(w + r * row_bytes, row_bytes, rows - r, qs + n, d + blocks, s + blocks, blocks, y + ldy + r);    \
    }                                                                                                         \
}

GEMM2_Q8(gemm2_q4_1_q8_avx2, gemv_q4_1_q8_avx2, 20,
         __m256i wn = nibbles32(blk + 4); float mw = _cvtsh_ss(load_u16(blk + 2));,
         __m256 p = block_dot_i8(wn, x);,
         sm[0][k] += mw * s0; sm[1][k] += mw * s1;)
GEMM2_Q8(gemm2_q4_0_q8_avx2, gemv_q4_0_q8_avx2, 18,
         __m256i wq = _mm256_sub_epi8(nibbles32(blk + 2), _mm256_set1_epi8(8)); __m256i wa = _mm256_sign_epi8(wq, wq);,
         __m256 p = block_dot_i8(wa, _mm256_sign_epi8(x, wq));,
         )
GEMM2_Q8(gemm2_q8_0_q8_avx2, gemv_q8_0_q8_avx2, 34,
         __m256i wq = _mm256_loadu_si256((const __m256i *)(blk + 2)); __m256i wa = _mm256_sign_epi8(wq, wq);,
         __m256 p = block_dot_i8(wa, _mm256_sign_epi8(x, wq));,
         )

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

static int simd_state = -1;
void wren_kernels_force_scalar(int on) { simd_state = on ? 0 : -1; }
/* WREN_KERNELS=scalar forces the portable C paths (the test command runs the engine
   tests once more that way, so the fallback is covered on every machine). */
int wren_kernels_simd(void) {
    if (simd_state < 0) {
        const char *k = getenv("WREN_KERNELS");
        __builtin_cpu_init();
        simd_state = !(k && strcmp(k, "scalar") == 0) &&
                     __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return simd_state;
}
#else
int wren_kernels_simd(void) { return 0; }
void wren_kernels_force_scalar(int on) { (void)on; }
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

void wren_quantize_q8(const float *x, int8_t *qs, float *d, float *s, int n) {
#if HAVE_SIMD
    if (wren_kernels_simd()) { quantize_q8_avx2(x, qs, d, s, n); return; }
#endif
    quantize_q8_scalar(x, qs, d, s, n);
}

int wren_gemv_q8(int dtype, const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s,
                 int blocks, float *y) {
    const uint8_t *rw = w;
    if (dtype != 2 && dtype != 3 && dtype != 8) return -1;   /* no 8-bit-activation kernel: an error, never a guess */
#if HAVE_SIMD
    if (wren_kernels_simd()) {
        switch (dtype) {
        case 3: gemv_q4_1_q8_avx2(rw, row_bytes, rows, qs, d, s, blocks, y); return 0;
        case 2: gemv_q4_0_q8_avx2(rw, row_bytes, rows, qs, d, s, blocks, y); return 0;
        case 8: gemv_q8_0_q8_avx2(rw, row_bytes, rows, qs, d, s, blocks, y); return 0;
        }
    }
#endif
    for (int r = 0; r < rows; r++, rw += row_bytes) {
        switch (dtype) {
        case 3: y[r] = dot_q4_1_q8_scalar(rw, qs, d, s, blocks); break;
        case 2: y[r] = dot_q4_0_q8_scalar(rw, qs, d, blocks); break;
        case 8: y[r] = dot_q8_0_q8_scalar(rw, qs, d, blocks); break;
        }
    }
    return 0;
}


void wren_gemv_f16(const void *w, size_t row_bytes, int rows, const float *x, int n, float *y) {
    const uint8_t *rw = w;
#if HAVE_SIMD
    if (wren_kernels_simd()) { gemv_f16_avx2(rw, row_bytes, rows, x, n, y); return; }
#endif
    for (int r = 0; r < rows; r++) y[r] = dot_f16_scalar(rw + r * row_bytes, x, n);
}

int wren_gemm_q8(int dtype, const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s,
                 int blocks, int tokens, float *y, int ldy) {
    int t = 0;
    if (dtype != 2 && dtype != 3 && dtype != 8) return -1;
#if HAVE_SIMD
    if (wren_kernels_simd()) {
        const int n = 32 * blocks;
        for (; t + 2 <= tokens; t += 2) {
            const int8_t *q = qs + (size_t)t * n;
            const float *dt = d + (size_t)t * blocks, *st = s + (size_t)t * blocks;
            float *yt = y + (size_t)t * ldy;
            switch (dtype) {
            case 3: gemm2_q4_1_q8_avx2(w, row_bytes, rows, q, dt, st, blocks, n, yt, ldy); break;
            case 2: gemm2_q4_0_q8_avx2(w, row_bytes, rows, q, dt, st, blocks, n, yt, ldy); break;
            case 8: gemm2_q8_0_q8_avx2(w, row_bytes, rows, q, dt, st, blocks, n, yt, ldy); break;
            }
        }
    }
#endif
    for (; t < tokens; t++)
        wren_gemv_q8(dtype, w, row_bytes, rows, qs + (size_t)t * 32 * blocks, d + (size_t)t * blocks, s + (size_t)t * blocks,
                     blocks, y + (size_t)t * ldy);
    return 0;
}

void wren_gemm_f16(const void *w, size_t row_bytes, int rows, const float *x, int n, int tokens, float *y, int ldy) {
    int t = 0;
#if HAVE_SIMD
    if (wren_kernels_simd())
        for (; t + 2 <= tokens; t += 2) gemm2_f16_avx2(w, row_bytes, rows, x + (size_t)t * n, n, y + (size_t)t * ldy, ldy);
#endif
    for (; t < tokens; t++) wren_gemv_f16(w, row_bytes, rows, x + (size_t)t * n, n, y + (size_t)t * ldy);
}

void wren_gemm_f32(const float *w, int rows, const float *x, int n, int tokens, float *y, int ldy) {
    int t = 0;
#if HAVE_SIMD
    if (wren_kernels_simd()) {
        for (; t + 2 <= tokens; t += 2) gemm_f32_avx2(w, rows, x + (size_t)t * n, n, 1, y + (size_t)t * ldy, ldy);
        if (t < tokens) gemm_f32_avx2(w, rows, x + (size_t)t * n, n, 0, y + (size_t)t * ldy, ldy);
        return;
    }
#endif
    for (; t < tokens; t++)
        for (int r = 0; r < rows; r++) {
            float s = 0;
            for (int j = 0; j < n; j++) s += w[(size_t)r * n + j] * x[(size_t)t * n + j];
            y[(size_t)t * ldy + r] = s;
        }
}
