// Shared by q8.c (the AVX2 set) and q8_vnni.c (the AVX-512 VNNI set): reading
// the weight rows' integers and scales, the tile layout, and the float side of
// a pair of tokens (the canonical arithmetic described in q8.c). Everything is
// AVX2 code, which the VNNI functions may inline.
#ifndef WREN_Q8_COMMON_H
#define WREN_Q8_COMMON_H
#include "kernels_common.h"
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

// ---- One token against rows (decode): four rows per step, read in place.
// (NT tokens per pass also work; the batched passes use pairs_in_place below.)
// BLOCK_BYTES: block size; ISUM(blk, x): the block's 8-lane integer partials
// against x; HAS_MIN: q4_1's minimum term (the f16 after the scale); NT: tokens;
// FN: the kernel set's target attribute.
#define GEMV_Q8(NAME, FN, NT, BLOCK_BYTES, ISUM, HAS_MIN)                                                           \
FN static void NAME(const uint8_t *w, size_t row_bytes, int rows, const int8_t *qs, const float *d,              \
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
/// Bytes of one block of a group of eight rows packed by wren_pack_rows8: eight
/// blocks' worth (the scales side by side, then the transposed quants).
static inline size_t packed8_group_block(int kind) { return kind == KIND_Q4_0 ? 8 * 18 : kind == KIND_Q4_1 ? 8 * 20 : 8 * 34; }
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

// One block of a pair into its accumulators: the canonical fma per (row, token).
// dw, mw: the four rows' scales and minimums in the hadd lane order; d0, s0, sx0
// and d1, s1, sx1: the two tokens' scale, scaled sum and integer sum of the block.
// The same with the pair's operands already in the hadd lane order (x0 x0 x1 x1 |
// x0 x0 x1 x1): dx the scales, sx the integer sums, sv the scaled sums.
SIMD_FN static inline void pair_accumulate_lanes(int kind, __m256i isum, __m256 dw, __m256 mw, __m256 dx, __m256i sx, __m256 sv,
                                                 __m256 *A, __m256 *M) {
    if (offset_shift(kind))   // Σ (q − 8)·x = Σ q·x − 8·Σ x (q4_0; 16 for q5_0)
        isum = _mm256_sub_epi32(isum, _mm256_sll_epi32(sx, _mm_cvtsi32_si128(offset_shift(kind))));
    *A = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(isum), *A);
    if (has_min(kind)) *M = _mm256_fmadd_ps(mw, sv, *M);
}

SIMD_FN static inline void pair_accumulate(int kind, __m256i isum, __m256 dw, __m256 mw, float d0, float d1, float s0, float s1,
                                           int32_t sx0, int32_t sx1, __m256 *A, __m256 *M) {
    pair_accumulate_lanes(kind, isum, dw, mw, _mm256_blend_ps(_mm256_set1_ps(d0), _mm256_set1_ps(d1), 0xCC),
                          _mm256_blend_epi32(_mm256_set1_epi32(sx0), _mm256_set1_epi32(sx1), 0xCC),
                          _mm256_blend_ps(_mm256_set1_ps(s0), _mm256_set1_ps(s1), 0xCC), A, M);
}

// A pair's eight results: rows r…r+live−1 of tokens t0 and t1.
SIMD_FN static inline void pair_store(int kind, __m256 A, __m256 M, float *y0, float *y1, int live) {
    __m256 Y = has_min(kind) ? _mm256_add_ps(A, M) : A;
    Y = _mm256_permutevar8x32_ps(Y, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
    float out[8];
    _mm256_storeu_ps(out, Y);
    for (int k = 0; k < live; k++) { y0[k] = out[k]; y1[k] = out[4 + k]; }
}

// A kernel set's products: gemv[kind] one token; pairs2[kind] / pairs4[kind] run
// up to four / eight tokens per pass over rows read in place (the pass's tokens
// in a struct q8_slots); tiles_of_group runs every token over one packed group.
typedef void (*q8_gemv_fn)(const uint8_t *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s,
                           int blocks, float *y, int ldy);
// The 2·NP tokens of one pass, block by block: block b of slot j has its 32
// activation bytes at x + (b·2NP + j)·32; pair p (slots 2p, 2p+1) has its
// scales, scaled sums and integer sums in the hadd lane order at d, s, sx
// + (b·NP + p)·8; slot j's results go to output row token[j] (a pass with fewer
// tokens repeats its last one).
struct q8_slots { const int8_t *x; const float *d, *s; const int32_t *sx; int blocks; int token[8]; };
typedef void (*q8_pairs_fn)(const uint8_t *w, size_t row_bytes, int rows, const struct q8_slots *in, float *y, int ldy);
typedef void (*q8_group_fn)(int kind, const uint8_t *pg, int rows, int g, const int8_t *qs, const float *d, const float *s,
                            const int32_t *sx, int blocks, int tokens, float *y, int ldy);
// offset_x: the set's passes over rows in place read q8_0's activation bytes
// stored as x + 128 (unsigned), so signed weights need no sign trick.
// rows8[kind] (NULL where a set has none): up to eight tokens against rows read
// in place, eight rows per step with the tokens in broadcasts.
// Its input: `count` tokens block by block, block b of token j at x + (b·count + j)·32
// and its scale, scaled sum and integer sum at d, s, sx [b·count + j]; token j's
// results go to y + j·ldy.
struct q8_tokens { const int8_t *x; const float *d, *s; const int32_t *sx; int blocks, count; };
typedef void (*q8_rows8_fn)(const uint8_t *w, size_t row_bytes, int rows, const struct q8_tokens *in, float *y, int ldy);
struct q8_set { q8_gemv_fn gemv[5]; q8_pairs_fn pairs2[5], pairs4[5]; q8_group_fn tiles_of_group; int offset_x; q8_rows8_fn rows8[5]; };
/// The AVX-512 VNNI set (q8_vnni.c); call only where wren_kernels_simd() >= 2.
const struct q8_set *wren_q8_vnni_set(void);
/// Rows [r0, r1) of a product over rows packed by wren_pack_rows8 (1 to 8 tokens;
/// q8_vnni.c, q8_rows8.inc); call only where wren_kernels_simd() >= 2. Returns 1.
int wren_q8_vnni_packed8(int kind, const uint8_t *w, int r0, int r1, const struct q8_tokens *in, float *y, int ldy);

#endif
#endif
