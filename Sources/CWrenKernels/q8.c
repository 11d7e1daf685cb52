// Products of q4_0 / q4_1 / q5_0 / q5_1 / q8_0 weight rows with 8-bit
// activations (the gemm_q8 column of the dtype table), portable and AVX2.
//
// Every path computes the same canonical arithmetic for one (row, token), so
// a token's result is the same bits whether it is decoded alone, verified in a
// speculative batch, or part of a prompt tile, on any CPU:
//   isum_b = Σ_j w_bj · x_bj                 exact int32 per block (w: the row's
//                                            integers, q − 8 for q4_0, q − 16 for q5_0; x: the
//                                            activation's int8 block)
//   A = fma(fl(dw_b · dx_b), (float)isum_b, A)   over blocks in order
//   M = fma(m_b, s_b, M)                          q4_1 and q5_1 (their minimum, s_b = dx_b·Σx_b)
//   y = A + M  (q4_1, q5_1),  y = A  (q4_0, q5_0, q8_0)
// The SIMD kernels only choose which integer lanes hold which partial sums;
// the float operations per (row, token) are these, in this order.
//
// Prompt tiles: the rows of a tile are repacked once per call (nibbles
// unpacked, four rows interleaved in 8-byte groups, scales widened), so one
// 32-byte load feeds four rows and maddubs/madd leave the four rows' partial
// sums in separate lanes; two tokens' lanes are merged by one hadd, and one
// fma applies eight (row, token) scales at once.
#pragma STDC FP_CONTRACT OFF
#include "kernels_common.h"

// ---- Portable: one (row, token) at a time.

static float q8_row_q4_1(const uint8_t *r, const int8_t *qs, const float *d, const float *s, int blocks) {
    float A = 0, M = 0;
    for (int b = 0; b < blocks; b++, r += 20, qs += 32) {
        int32_t sum = 0;
        for (int j = 0; j < 16; j++) sum += (r[4 + j] & 15) * qs[j] + (r[4 + j] >> 4) * qs[j + 16];
        A = fmaf(f16_to_f32_scalar(load_u16(r)) * d[b], (float)sum, A);
        M = fmaf(f16_to_f32_scalar(load_u16(r + 2)), s[b], M);
    }
    return A + M;
}

static float q8_row_q4_0(const uint8_t *r, const int8_t *qs, const float *d, const float *s, int blocks) {
    (void)s;
    float A = 0;
    for (int b = 0; b < blocks; b++, r += 18, qs += 32) {
        int32_t sum = 0;
        for (int j = 0; j < 16; j++) sum += ((r[2 + j] & 15) - 8) * qs[j] + ((r[2 + j] >> 4) - 8) * qs[j + 16];
        A = fmaf(f16_to_f32_scalar(load_u16(r)) * d[b], (float)sum, A);
    }
    return A;
}

static float q8_row_q8_0(const uint8_t *r, const int8_t *qs, const float *d, const float *s, int blocks) {
    (void)s;
    float A = 0;
    for (int b = 0; b < blocks; b++, r += 34, qs += 32) {
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) sum += (int8_t)r[2 + j] * qs[j];
        A = fmaf(f16_to_f32_scalar(load_u16(r)) * d[b], (float)sum, A);
    }
    return A;
}

// The 5-bit types' integers: nibble j (low half of byte j, or high half of byte
// j − 16), plus bit j of qh as bit 4.
static inline int q5_int(const uint8_t *qh, const uint8_t *qs, int j) {
    uint32_t h; memcpy(&h, qh, 4);
    return (j < 16 ? qs[j] & 15 : qs[j - 16] >> 4) | (int)((h >> j) & 1) << 4;
}

static float q8_row_q5_0(const uint8_t *r, const int8_t *qs, const float *d, const float *s, int blocks) {
    (void)s;
    float A = 0;
    for (int b = 0; b < blocks; b++, r += 22, qs += 32) {
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) sum += (q5_int(r + 2, r + 6, j) - 16) * qs[j];
        A = fmaf(f16_to_f32_scalar(load_u16(r)) * d[b], (float)sum, A);
    }
    return A;
}

static float q8_row_q5_1(const uint8_t *r, const int8_t *qs, const float *d, const float *s, int blocks) {
    float A = 0, M = 0;
    for (int b = 0; b < blocks; b++, r += 24, qs += 32) {
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) sum += q5_int(r + 4, r + 8, j) * qs[j];
        A = fmaf(f16_to_f32_scalar(load_u16(r)) * d[b], (float)sum, A);
        M = fmaf(f16_to_f32_scalar(load_u16(r + 2)), s[b], M);
    }
    return A + M;
}

#define GEMM_Q8_SCALAR(NAME, ROW)                                                                              \
    void NAME(const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s,    \
              int blocks, int tokens, float *y, int ldy) {                                                     \
        for (int t = 0; t < tokens; t++) {                                                                     \
            const uint8_t *rw = w;                                                                             \
            for (int r = 0; r < rows; r++, rw += row_bytes)                                                    \
                y[(size_t)t * ldy + r] = ROW(rw, qs + (size_t)t * 32 * blocks, d + (size_t)t * blocks,         \
                                             s + (size_t)t * blocks, blocks);                                  \
        }                                                                                                      \
    }
GEMM_Q8_SCALAR(wren_gemm_q8_q4_0_scalar, q8_row_q4_0)
GEMM_Q8_SCALAR(wren_gemm_q8_q4_1_scalar, q8_row_q4_1)
GEMM_Q8_SCALAR(wren_gemm_q8_q8_0_scalar, q8_row_q8_0)
GEMM_Q8_SCALAR(wren_gemm_q8_q5_0_scalar, q8_row_q5_0)
GEMM_Q8_SCALAR(wren_gemm_q8_q5_1_scalar, q8_row_q5_1)

#if HAVE_SIMD

// ---- The weights' integers of one block as 32 bytes, element order.
SIMD_FN static inline __m256i nibbles32(const uint8_t *q) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)q), mask = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(bytes, mask), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

// The 5-bit types' integers of one block in element order: the nibbles, plus
// 0x10 in byte j where bit j of qh is set (byte j/8 of qh broadcast to eight
// bytes, each tested against its own bit).
SIMD_FN static inline __m256i q5_ints(const uint8_t *qh, const uint8_t *qs) {
    uint32_t h; memcpy(&h, qh, 4);
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_or_si256(nibbles32(qs), _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
}

// Σ over 4-byte groups of w·x as 8 int32 lanes. maddubs multiplies unsigned by
// signed bytes into int16 pairs (|w| ≤ 128, |x| ≤ 127: never saturates);
// signed weights go through |w| and x with w's sign.
SIMD_FN static inline __m256i dot_u8(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}
SIMD_FN static inline __m256i dot_i8(__m256i w, __m256i x) {
    return dot_u8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

// Four rows' 8-lane partial sums → their four exact block sums [r0, r1, r2, r3].
SIMD_FN static inline __m128i reduce4(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

SIMD_FN static inline __m128 scales4(const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, const uint8_t *r3) {
    return _mm_cvtph_ps(_mm_setr_epi16((short)load_u16(r0), (short)load_u16(r1), (short)load_u16(r2), (short)load_u16(r3), 0, 0, 0, 0));
}

// ---- One or two tokens against rows (decode, short verification passes): four
// rows per step, read in place; with two tokens each weight block is unpacked
// once for both.
// BLOCK_BYTES: block size; ISUM(blk, x): the block's 8-lane integer partials
// against x; HAS_MIN: q4_1's minimum term (the f16 after the scale); NT: tokens.
#define GEMV_Q8(NAME, NT, BLOCK_BYTES, ISUM, HAS_MIN)                                                           \
SIMD_FN static void NAME(const uint8_t *w, size_t row_bytes, int rows, const int8_t *qs, const float *d,          \
                         const float *s, int blocks, float *y, int ldy) {                                         \
    size_t group = 4 * row_bytes, pf_ahead = (PF_BYTES + group - 1) / group * group;                              \
    const size_t n = 32 * (size_t)blocks;                                                                         \
    for (int r = 0; r < rows; r += 4) {                                                                           \
        /* A short last group repeats its last row; only real rows are stored. */                                 \
        const uint8_t *rw[4];                                                                                     \
        for (int k = 0; k < 4; k++) rw[k] = w + (size_t)(r + k < rows ? r + k : rows - 1) * row_bytes;            \
        __m128 A[NT], M[NT];                                                                                      \
        for (int t = 0; t < NT; t++) { A[t] = _mm_setzero_ps(); M[t] = _mm_setzero_ps(); }                        \
        for (int b = 0; b < blocks; b++) {                                                                        \
            const char *pf = (const char *)rw[0] + pf_ahead + 4 * b * BLOCK_BYTES;                                \
            _mm_prefetch(pf, _MM_HINT_T0); _mm_prefetch(pf + 64, _MM_HINT_T0);                                    \
            if (4 * BLOCK_BYTES > 128) _mm_prefetch(pf + 128, _MM_HINT_T0);                                       \
            const uint8_t *b0 = rw[0] + b * BLOCK_BYTES, *b1 = rw[1] + b * BLOCK_BYTES,                           \
                          *b2 = rw[2] + b * BLOCK_BYTES, *b3 = rw[3] + b * BLOCK_BYTES;                           \
            __m128 dw = scales4(b0, b1, b2, b3), mw = HAS_MIN ? scales4(b0 + 2, b1 + 2, b2 + 2, b3 + 2) : dw;     \
            for (int t = 0; t < NT; t++) {                                                                        \
                __m256i x = _mm256_loadu_si256((const __m256i *)(qs + t * n + 32 * b));                           \
                __m128i isum = reduce4(ISUM(b0, x), ISUM(b1, x), ISUM(b2, x), ISUM(b3, x));                       \
                A[t] = _mm_fmadd_ps(_mm_mul_ps(dw, _mm_set1_ps(d[t * blocks + b])), _mm_cvtepi32_ps(isum), A[t]); \
                if (HAS_MIN) M[t] = _mm_fmadd_ps(mw, _mm_set1_ps(s[t * blocks + b]), M[t]);                       \
            }                                                                                                     \
        }                                                                                                         \
        for (int t = 0; t < NT; t++) {                                                                            \
            float out[4];                                                                                         \
            _mm_storeu_ps(out, HAS_MIN ? _mm_add_ps(A[t], M[t]) : A[t]);                                          \
            for (int k = 0; k < 4 && r + k < rows; k++) y[(size_t)t * ldy + r + k] = out[k];                      \
        }                                                                                                         \
    }                                                                                                             \
}

#define ISUM_Q4_1(blk, x) dot_u8(nibbles32((blk) + 4), x)
#define ISUM_Q4_0(blk, x) dot_i8(_mm256_sub_epi8(nibbles32((blk) + 2), _mm256_set1_epi8(8)), x)
#define ISUM_Q8_0(blk, x) dot_i8(_mm256_loadu_si256((const __m256i *)((blk) + 2)), x)
#define ISUM_Q5_0(blk, x) dot_i8(_mm256_sub_epi8(q5_ints((blk) + 2, (blk) + 6), _mm256_set1_epi8(16)), x)
#define ISUM_Q5_1(blk, x) dot_u8(q5_ints((blk) + 4, (blk) + 8), x)
GEMV_Q8(gemv_q4_1_q8, 1, 20, ISUM_Q4_1, 1)
GEMV_Q8(gemv_q4_0_q8, 1, 18, ISUM_Q4_0, 0)
GEMV_Q8(gemv_q8_0_q8, 1, 34, ISUM_Q8_0, 0)
GEMV_Q8(gemv_q5_0_q8, 1, 22, ISUM_Q5_0, 0)
GEMV_Q8(gemv_q5_1_q8, 1, 24, ISUM_Q5_1, 1)
GEMV_Q8(gemv2_q4_1_q8, 2, 20, ISUM_Q4_1, 1)
GEMV_Q8(gemv2_q4_0_q8, 2, 18, ISUM_Q4_0, 0)
GEMV_Q8(gemv2_q8_0_q8, 2, 34, ISUM_Q8_0, 0)
GEMV_Q8(gemv2_q5_0_q8, 2, 22, ISUM_Q5_0, 0)
GEMV_Q8(gemv2_q5_1_q8, 2, 24, ISUM_Q5_1, 1)
GEMV_Q8(gemv4_q4_1_q8, 4, 20, ISUM_Q4_1, 1)
GEMV_Q8(gemv4_q4_0_q8, 4, 18, ISUM_Q4_0, 0)
GEMV_Q8(gemv4_q8_0_q8, 4, 34, ISUM_Q8_0, 0)
GEMV_Q8(gemv4_q5_0_q8, 4, 22, ISUM_Q5_0, 0)
GEMV_Q8(gemv4_q5_1_q8, 4, 24, ISUM_Q5_1, 1)

// ---- Prompt tiles. A packed group of four rows holds, per block:
//   w[4][32]: chunk c = the rows' elements 8c…8c+7, row after row (8 bytes each)
//   q8_0: then sign[4][32], the same bytes before taking |w|
//   dw[8] = d0 d1 d0 d1 d2 d3 d2 d3, and for q4_1 mw[8] (the minimums) likewise
// so one hadd of two tokens' sums lines up with dw: lanes r0t0 r1t0 r0t1 r1t1 | r2t0 r3t0 r2t1 r3t1.
enum { KIND_Q4_0, KIND_Q4_1, KIND_Q8_0, KIND_Q5_0, KIND_Q5_1 };

// q4_* and q5_* pack their unsigned integers (q4_0's −8 and q5_0's −16 are
// taken off the block sum as 8·Σx and 16·Σx); q8_0 packs |w| and w (the sign trick).
static inline int packs_signs(int kind) { return kind == KIND_Q8_0; }
static inline int has_min(int kind) { return kind == KIND_Q4_1 || kind == KIND_Q5_1; }
/// log2 of the offset subtracted from the packed integers (0: none).
static inline int offset_shift(int kind) { return kind == KIND_Q4_0 ? 3 : kind == KIND_Q5_0 ? 4 : 0; }
static inline size_t packed_block_bytes(int kind) { return packs_signs(kind) ? 256 + 32 : has_min(kind) ? 128 + 64 : 128 + 32; }
static inline size_t packed_scales(int kind) { return packs_signs(kind) ? 256 : 128; }

// The packed integers of one block as 32 bytes in element order (q4_0: the
// nibbles, without their −8).
SIMD_FN static inline __m256i block_ints(int kind, const uint8_t *blk) {
    switch (kind) {
    case KIND_Q4_1: return nibbles32(blk + 4);
    case KIND_Q4_0: return nibbles32(blk + 2);
    case KIND_Q5_0: return q5_ints(blk + 2, blk + 6);
    case KIND_Q5_1: return q5_ints(blk + 4, blk + 8);
    default: return _mm256_loadu_si256((const __m256i *)(blk + 2));
    }
}

// Packs rows r0 … r0+3 (a short group repeats its last row) of every block:
// the four rows' 8-byte chunks are a 4 × 4 transpose of 64-bit lanes.
SIMD_FN static void pack_group(int kind, const uint8_t *w, size_t row_bytes, int rows, int r0, int blocks, int block_bytes, uint8_t *out) {
    const uint8_t *rw[4];
    for (int k = 0; k < 4; k++) rw[k] = w + (size_t)(r0 + k < rows ? r0 + k : rows - 1) * row_bytes;
    size_t pb = packed_block_bytes(kind);
    for (int b = 0; b < blocks; b++, out += pb) {
        const uint8_t *b0 = rw[0] + (size_t)b * block_bytes, *b1 = rw[1] + (size_t)b * block_bytes,
                      *b2 = rw[2] + (size_t)b * block_bytes, *b3 = rw[3] + (size_t)b * block_bytes;
        __m256i R0 = block_ints(kind, b0), R1 = block_ints(kind, b1), R2 = block_ints(kind, b2), R3 = block_ints(kind, b3);
        __m256i T0 = _mm256_unpacklo_epi64(R0, R1), T1 = _mm256_unpackhi_epi64(R0, R1);
        __m256i T2 = _mm256_unpacklo_epi64(R2, R3), T3 = _mm256_unpackhi_epi64(R2, R3);
        __m256i C[4] = { _mm256_permute2x128_si256(T0, T2, 0x20), _mm256_permute2x128_si256(T1, T3, 0x20),
                         _mm256_permute2x128_si256(T0, T2, 0x31), _mm256_permute2x128_si256(T1, T3, 0x31) };
        for (int c = 0; c < 4; c++) {
            if (packs_signs(kind)) {
                _mm256_storeu_si256((__m256i *)(out + 128 + 32 * c), C[c]);
                _mm256_storeu_si256((__m256i *)(out + 32 * c), _mm256_abs_epi8(C[c]));
            } else {
                _mm256_storeu_si256((__m256i *)(out + 32 * c), C[c]);
            }
        }
        // dw (and q4_1's mw) in the lane order of a two-token hadd: r0 r1 r0 r1 | r2 r3 r2 r3.
        __m128 d4 = scales4(b0, b1, b2, b3);
        __m256 dd = _mm256_set_m128(d4, d4);
        float *f = (float *)(out + packed_scales(kind));
        _mm256_storeu_ps(f, _mm256_permutevar8x32_ps(dd, _mm256_setr_epi32(0, 1, 0, 1, 2, 3, 2, 3)));
        if (has_min(kind)) {
            __m128 m4 = scales4(b0 + 2, b1 + 2, b2 + 2, b3 + 2);
            _mm256_storeu_ps(f + 8, _mm256_permutevar8x32_ps(_mm256_set_m128(m4, m4), _mm256_setr_epi32(0, 1, 0, 1, 2, 3, 2, 3)));
        }
    }
}

// Two tokens (x0, x1 with their d and s) against one packed group: eight
// (row, token) results, stored to y0[0…3] and y1[0…3] (the first `n` rows).
SIMD_FN static void tile_4x2(int kind, const uint8_t *p, int blocks, const int8_t *x0, const int8_t *x1,
                             const float *d0, const float *d1, const float *s0, const float *s1,
                             const int32_t *sx0, const int32_t *sx1, float *y0, float *y1, int n) {
    size_t pb = packed_block_bytes(kind);
    __m256 A = _mm256_setzero_ps(), M = _mm256_setzero_ps();
    for (int b = 0; b < blocks; b++, p += pb) {
        __m256i P0, P1;
        const int64_t *c0 = (const int64_t *)(x0 + 32 * b), *c1 = (const int64_t *)(x1 + 32 * b);
        if (!packs_signs(kind)) {
            __m256i w = _mm256_loadu_si256((const __m256i *)p);
            P0 = dot_u8(w, _mm256_set1_epi64x(c0[0]));
            P1 = dot_u8(w, _mm256_set1_epi64x(c1[0]));
            for (int c = 1; c < 4; c++) {
                w = _mm256_loadu_si256((const __m256i *)(p + 32 * c));
                P0 = _mm256_add_epi32(P0, dot_u8(w, _mm256_set1_epi64x(c0[c])));
                P1 = _mm256_add_epi32(P1, dot_u8(w, _mm256_set1_epi64x(c1[c])));
            }
        } else {
            __m256i w = _mm256_loadu_si256((const __m256i *)p), sg = _mm256_loadu_si256((const __m256i *)(p + 128));
            P0 = dot_u8(w, _mm256_sign_epi8(_mm256_set1_epi64x(c0[0]), sg));
            P1 = dot_u8(w, _mm256_sign_epi8(_mm256_set1_epi64x(c1[0]), sg));
            for (int c = 1; c < 4; c++) {
                w = _mm256_loadu_si256((const __m256i *)(p + 32 * c));
                sg = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * c));
                P0 = _mm256_add_epi32(P0, dot_u8(w, _mm256_sign_epi8(_mm256_set1_epi64x(c0[c]), sg)));
                P1 = _mm256_add_epi32(P1, dot_u8(w, _mm256_sign_epi8(_mm256_set1_epi64x(c1[c]), sg)));
            }
        }
        __m256i isum = _mm256_hadd_epi32(P0, P1);
        if (offset_shift(kind))   // Σ (q − 8)·x = Σ q·x − 8·Σ x (q4_0; 16 for q5_0)
            isum = _mm256_sub_epi32(isum, _mm256_sll_epi32(_mm256_blend_epi32(_mm256_set1_epi32(sx0[b]), _mm256_set1_epi32(sx1[b]), 0xCC),
                                                           _mm_cvtsi32_si128(offset_shift(kind))));
        const float *f = (const float *)(p + packed_scales(kind));
        __m256 dx = _mm256_blend_ps(_mm256_set1_ps(d0[b]), _mm256_set1_ps(d1[b]), 0xCC);
        A = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(f), dx), _mm256_cvtepi32_ps(isum), A);
        if (has_min(kind))
            M = _mm256_fmadd_ps(_mm256_loadu_ps(f + 8), _mm256_blend_ps(_mm256_set1_ps(s0[b]), _mm256_set1_ps(s1[b]), 0xCC), M);
    }
    __m256 Y = has_min(kind) ? _mm256_add_ps(A, M) : A;
    Y = _mm256_permutevar8x32_ps(Y, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
    float out[8];
    _mm256_storeu_ps(out, Y);
    for (int k = 0; k < n; k++) { y0[k] = out[k]; y1[k] = out[4 + k]; }
}

// Repacked rows live in a per-thread buffer that only grows.
static _Thread_local uint8_t *pack_buf;
static _Thread_local size_t pack_cap;

static uint8_t *pack_space(size_t bytes) {
    if (bytes > pack_cap) {
        free(pack_buf);
        pack_cap = bytes + bytes / 4;
        pack_buf = aligned_alloc(64, (pack_cap + 63) / 64 * 64);
        if (!pack_buf) pack_cap = 0;
    }
    return pack_buf;
}

// Below this many tokens the rows are read in place, two tokens at a time (the
// repacking pass would cost more than it saves); the results are the same bits.
#ifndef TILE_MIN_TOKENS
#define TILE_MIN_TOKENS 8
#endif

SIMD_FN static void tiles_over_packed(int kind, uint8_t *pk, size_t packed, int rows, const int8_t *qs, const float *d, const float *s,
                                      int blocks, int tokens, float *y, int ldy);
SIMD_FN static void block_sums(int kind, const int8_t *qs, int tokens, int blocks, int32_t *sx);
SIMD_FN static void tiles_of_group(int kind, const uint8_t *pg, int rows, int g, const int8_t *qs, const float *d, const float *s,
                                   const int32_t *sx, int blocks, int tokens, float *y, int ldy);

typedef void (*gemv_fn)(const uint8_t *, size_t, int, const int8_t *, const float *, const float *, int, float *, int);

SIMD_FN static void gemm_q8_avx2(int kind, int block_bytes, gemv_fn gemv, gemv_fn gemv2, gemv_fn gemv4, const uint8_t *w, size_t row_bytes, int rows,
                                 const int8_t *qs, const float *d, const float *s, int blocks, int tokens, float *y, int ldy) {
    const size_t n = 32 * (size_t)blocks;
    int groups = (rows + 3) / 4;
    size_t gbytes = (size_t)blocks * packed_block_bytes(kind);
    // One packed group, then (q4_0, q5_0) each token's block sums Σx.
    size_t packed = (gbytes + 63) / 64 * 64;
    uint8_t *pk = tokens >= TILE_MIN_TOKENS ? pack_space(packed + 4 * (size_t)tokens * blocks) : NULL;
    if (!pk) {
        // Four tokens per pass over the rows where there are four (a batch of decode
        // steps: the weights come from memory once for all four), then two, then one.
        int t = 0;
        for (; t + 4 <= tokens; t += 4)
            gemv4(w, row_bytes, rows, qs + t * n, d + (size_t)t * blocks, s + (size_t)t * blocks, blocks, y + (size_t)t * ldy, ldy);
        for (; t + 2 <= tokens; t += 2)
            gemv2(w, row_bytes, rows, qs + t * n, d + (size_t)t * blocks, s + (size_t)t * blocks, blocks, y + (size_t)t * ldy, ldy);
        if (t < tokens)
            gemv(w, row_bytes, rows, qs + t * n, d + (size_t)t * blocks, s + (size_t)t * blocks, blocks, y + (size_t)t * ldy, ldy);
        return;
    }
    // Each group is packed and used at once, while it is in L1: the next rows'
    // loads from memory overlap the products of these.
    int32_t *sx = (int32_t *)(pk + packed);
    block_sums(kind, qs, tokens, blocks, sx);
    for (int g = 0; g < groups; g++) {
        pack_group(kind, w, row_bytes, rows, 4 * g, blocks, block_bytes, pk);
        tiles_of_group(kind, pk, rows, g, qs, d, s, sx, blocks, tokens, y, ldy);
    }
}

// Each token's block sums Σx, for the kinds whose integers carry an offset.
SIMD_FN static void block_sums(int kind, const int8_t *qs, int tokens, int blocks, int32_t *sx) {
    if (!offset_shift(kind)) return;
    for (size_t i = 0; i < (size_t)tokens * blocks; i++) {
        __m256i v = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i *)(qs + 32 * i))),
                                      _mm256_set1_epi16(1));
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
        sx[i] = _mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1)));
    }
}

// Every token against packed group g (rows 4g … 4g+3) at pg.
SIMD_FN static void tiles_of_group(int kind, const uint8_t *pg, int rows, int g, const int8_t *qs, const float *d, const float *s,
                                   const int32_t *sx, int blocks, int tokens, float *y, int ldy) {
    const size_t n = 32 * (size_t)blocks;
    int r = 4 * g, live = rows - r < 4 ? rows - r : 4;
    for (int t = 0; t < tokens; t += 2) {
        int u = t + 1 < tokens ? t + 1 : t;   // an odd last token pairs with itself
        tile_4x2(kind, pg, blocks, qs + t * n, qs + u * n, d + (size_t)t * blocks, d + (size_t)u * blocks,
                 s + (size_t)t * blocks, s + (size_t)u * blocks, sx + (size_t)t * blocks, sx + (size_t)u * blocks,
                 y + (size_t)t * ldy + r, y + (size_t)u * ldy + r, live);
    }
}

// The tiles over groups already packed at pk (`packed` bytes, then room for the
// tokens' block sums).
SIMD_FN static void tiles_over_packed(int kind, uint8_t *pk, size_t packed, int rows, const int8_t *qs, const float *d, const float *s,
                                      int blocks, int tokens, float *y, int ldy) {
    int groups = (rows + 3) / 4;
    size_t gbytes = (size_t)blocks * packed_block_bytes(kind);
    int32_t *sx = (int32_t *)(pk + packed);
    block_sums(kind, qs, tokens, blocks, sx);
    // A group's packed rows (a few KB) stay in L1 while every token passes over them.
    for (int g = 0; g < groups; g++) tiles_of_group(kind, pk + g * gbytes, rows, g, qs, d, s, sx, blocks, tokens, y, ldy);
}

// For q8_k.c: q4_k and q5_k rows repacked as q4_1-kind groups (their unsigned
// integers, per 32-block scale dl and minimum −ml) run on these same tiles.
uint8_t *wren_q8_tile_space(int blocks, int rows, int tokens, size_t *packed) {
    *packed = ((size_t)blocks * packed_block_bytes(KIND_Q4_1) * ((rows + 3) / 4) + 63) / 64 * 64;
    return pack_space(*packed + 4 * (size_t)tokens * blocks);
}
size_t wren_q8_tile_block_bytes(void) { return packed_block_bytes(KIND_Q4_1); }
/// The per-thread packing buffer, at least `bytes` long (NULL if it cannot grow).
uint8_t *wren_q8_space(size_t bytes) { return pack_space(bytes); }
SIMD_FN void wren_q8_tiles_min(uint8_t *pk, size_t packed, int rows, const int8_t *qs, const float *d, const float *s, int blocks,
                               int tokens, float *y, int ldy) {
    tiles_over_packed(KIND_Q4_1, pk, packed, rows, qs, d, s, blocks, tokens, y, ldy);
}

#define GEMM_Q8_AVX2(NAME, KIND, BYTES, GEMV, GEMV2, GEMV4)                                                           \
    void NAME(const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s,    \
              int blocks, int tokens, float *y, int ldy) {                                                     \
        gemm_q8_avx2(KIND, BYTES, GEMV, GEMV2, GEMV4, w, row_bytes, rows, qs, d, s, blocks, tokens, y, ldy);          \
    }
GEMM_Q8_AVX2(wren_gemm_q8_q4_0_avx2, KIND_Q4_0, 18, gemv_q4_0_q8, gemv2_q4_0_q8, gemv4_q4_0_q8)
GEMM_Q8_AVX2(wren_gemm_q8_q4_1_avx2, KIND_Q4_1, 20, gemv_q4_1_q8, gemv2_q4_1_q8, gemv4_q4_1_q8)
GEMM_Q8_AVX2(wren_gemm_q8_q8_0_avx2, KIND_Q8_0, 34, gemv_q8_0_q8, gemv2_q8_0_q8, gemv4_q8_0_q8)
GEMM_Q8_AVX2(wren_gemm_q8_q5_0_avx2, KIND_Q5_0, 22, gemv_q5_0_q8, gemv2_q5_0_q8, gemv4_q5_0_q8)
GEMM_Q8_AVX2(wren_gemm_q8_q5_1_avx2, KIND_Q5_1, 24, gemv_q5_1_q8, gemv2_q5_1_q8, gemv4_q5_1_q8)

#endif
