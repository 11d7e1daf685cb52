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
// Two or more tokens: four rows are interleaved in 8-byte groups (nibbles
// unpacked), so one 32-byte vector holds four rows and maddubs/madd leave the
// four rows' partial sums in separate lanes; two tokens' lanes are merged by one
// hadd, and one fma applies eight (row, token) scales at once. A few tokens
// (decode batches) interleave each block in registers as they read it; a long
// prompt repacks each row group once into a buffer and runs every token over it.
#pragma STDC FP_CONTRACT OFF
#include "q8_common.h"

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

#define ISUM_Q4_1(blk, x) dot_u8(nibbles32((blk) + 4), x)
#define ISUM_Q4_0(blk, x) dot_i8(_mm256_sub_epi8(nibbles32((blk) + 2), _mm256_set1_epi8(8)), x)
#define ISUM_Q8_0(blk, x) dot_i8(_mm256_loadu_si256((const __m256i *)((blk) + 2)), x)
#define ISUM_Q5_0(blk, x) dot_i8(_mm256_sub_epi8(q5_ints((blk) + 2, (blk) + 6), _mm256_set1_epi8(16)), x)
#define ISUM_Q5_1(blk, x) dot_u8(q5_ints((blk) + 4, (blk) + 8), x)
GEMV_Q8(gemv_q4_1_avx2, SIMD_FN, 1, 20, ISUM_Q4_1, 1)
GEMV_Q8(gemv_q4_0_avx2, SIMD_FN, 1, 18, ISUM_Q4_0, 0)
GEMV_Q8(gemv_q8_0_avx2, SIMD_FN, 1, 34, ISUM_Q8_0, 0)
GEMV_Q8(gemv_q5_0_avx2, SIMD_FN, 1, 22, ISUM_Q5_0, 0)
GEMV_Q8(gemv_q5_1_avx2, SIMD_FN, 1, 24, ISUM_Q5_1, 1)

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

// The exact block sums of four rows against two tokens, in the lane order of one
// hadd: r0t0 r1t0 r0t1 r1t1 | r2t0 r3t0 r2t1 r3t1. C[c]: chunk c of the four rows
// (their elements 8c…8c+7, row after row); q8_0: |w| with the signs in SG.
// The unsigned 4- and 5-bit integers (≤ 31) let the four chunks' maddubs pairs
// add in int16 before one madd (|Σ| ≤ 4·2·31·127 = 31,496 < 32,767); q8_0's
// |w| ≤ 128 does not, so its chunks are widened one by one.
SIMD_FN static inline __m256i pair_sums(int signs, const __m256i *C, const __m256i *SG, const int8_t *x0, const int8_t *x1) {
    const int64_t *c0 = (const int64_t *)x0, *c1 = (const int64_t *)x1;
    if (!signs) {
        __m256i S0 = _mm256_maddubs_epi16(C[0], _mm256_set1_epi64x(c0[0]));
        __m256i S1 = _mm256_maddubs_epi16(C[0], _mm256_set1_epi64x(c1[0]));
        for (int c = 1; c < 4; c++) {
            S0 = _mm256_add_epi16(S0, _mm256_maddubs_epi16(C[c], _mm256_set1_epi64x(c0[c])));
            S1 = _mm256_add_epi16(S1, _mm256_maddubs_epi16(C[c], _mm256_set1_epi64x(c1[c])));
        }
        const __m256i ones = _mm256_set1_epi16(1);
        return _mm256_hadd_epi32(_mm256_madd_epi16(S0, ones), _mm256_madd_epi16(S1, ones));
    }
    __m256i P0 = dot_u8(C[0], _mm256_sign_epi8(_mm256_set1_epi64x(c0[0]), SG[0]));
    __m256i P1 = dot_u8(C[0], _mm256_sign_epi8(_mm256_set1_epi64x(c1[0]), SG[0]));
    for (int c = 1; c < 4; c++) {
        P0 = _mm256_add_epi32(P0, dot_u8(C[c], _mm256_sign_epi8(_mm256_set1_epi64x(c0[c]), SG[c])));
        P1 = _mm256_add_epi32(P1, dot_u8(C[c], _mm256_sign_epi8(_mm256_set1_epi64x(c1[c]), SG[c])));
    }
    return _mm256_hadd_epi32(P0, P1);
}

#define Q8_FN SIMD_FN
#define Q8_NAME(x) x##_avx2
#define Q8_PAIR_SUMS pair_sums
// q8_0 read in place: |w| and the signs, as in the tiles.
#define Q8_SIGNED_PREP(C, SG, W) do { for (int c_ = 0; c_ < 4; c_++) { (SG)[c_] = (C)[c_]; (C)[c_] = _mm256_abs_epi8((C)[c_]); } } while (0)
#define Q8_INPLACE_SUMS(signs, C, SG, W, x0, x1) pair_sums(signs, C, SG, x0, x1)
#define Q8_OFFSET_X 0
#define Q8_ROWS8 { 0 }
#include "q8_pairs.inc"
#undef Q8_FN
#undef Q8_NAME
#undef Q8_PAIR_SUMS
#undef Q8_SIGNED_PREP
#undef Q8_INPLACE_SUMS
#undef Q8_OFFSET_X
#undef Q8_ROWS8

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

// Below this many tokens the rows are read in place and transposed in registers
// (pairs_in_place); from here on, repacking each group once for all the tokens
// costs less. Measured with `wren bench -p 64 -b N -t 1` on the 2-core EPYC
// (SmolLM2 q4_1): in place 527/550/557/556 tok/s at N = 8/16/32/64, repacked
// 531/477/530/565. The results are the same bits either way.
#ifndef TILE_MIN_TOKENS
#define TILE_MIN_TOKENS 48
#endif

SIMD_FN static void tiles_over_packed(int kind, uint8_t *pk, size_t packed, int rows, const int8_t *qs, const float *d, const float *s,
                                      int blocks, int tokens, float *y, int ldy);
SIMD_FN static void block_sums(int kind, const int8_t *qs, int tokens, int blocks, int32_t *sx);


// Σ of one activation block's 32 integers.
SIMD_FN static inline int32_t block_sum(const int8_t *x) {
    __m256i v = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), _mm256_loadu_si256((const __m256i *)x)), _mm256_set1_epi16(1));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1)));
}

// The `slots` tokens token[0…] of a pass into the interleaved buffers of `in`.
SIMD_FN static void interleave(int kind, const int8_t *qs, const float *d, const float *s, int blocks, const int *token, int slots,
                               int offset_x, struct q8_slots *in) {
    const __m256i flip = _mm256_set1_epi8(offset_x && packs_signs(kind) ? (char)0x80 : 0);   // x + 128 = x ^ 0x80
    int8_t *x = (int8_t *)in->x;
    float *D = (float *)in->d, *S = (float *)in->s;
    int32_t *SX = (int32_t *)in->sx;
    for (int b = 0; b < blocks; b++) {
        for (int j = 0; j < slots; j++) {
            size_t from = (size_t)token[j] * blocks + b;
            _mm256_storeu_si256((__m256i *)(x + 32 * ((size_t)b * slots + j)),
                                _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(qs + 32 * from)), flip));
        }
        for (int p = 0; p < slots / 2; p++) {   // lanes x0 x0 x1 x1 | x0 x0 x1 x1
            size_t f0 = (size_t)token[2 * p] * blocks + b, f1 = (size_t)token[2 * p + 1] * blocks + b, to = ((size_t)b * slots / 2 + p) * 8;
            int32_t i0 = offset_shift(kind) ? block_sum(qs + 32 * f0) : 0, i1 = offset_shift(kind) ? block_sum(qs + 32 * f1) : 0;
            for (int l = 0; l < 8; l++) {
                int second = (l & 2) != 0;
                D[to + l] = second ? d[f1] : d[f0];
                S[to + l] = second ? s[f1] : s[f0];
                SX[to + l] = second ? i1 : i0;
            }
        }
    }
}

// 1 to 8 tokens' blocks interleaved for the eight-row kernels (block b: every
// token's 32 bytes, scales and sums), with their integer sums for the kinds that
// take an offset off. 0 when the per-thread buffer cannot grow.
SIMD_FN static int tokens_for_rows8(int kind, const int8_t *qs, const float *d, const float *s, int blocks, int tokens,
                                    struct q8_tokens *in) {
    uint8_t *buf = pack_space((32 + 12) * (size_t)tokens * blocks);
    if (!buf) return 0;
    size_t m = (size_t)tokens * blocks;
    int8_t *X = (int8_t *)buf;
    float *D = (float *)(buf + 32 * m), *S = D + m;
    int32_t *SX = (int32_t *)(S + m);
    int sums = offset_shift(kind) || packs_signs(kind);
    for (int b = 0; b < blocks; b++)
        for (int j = 0; j < tokens; j++) {
            size_t from = (size_t)j * blocks + b, to = (size_t)b * tokens + j;
            _mm256_storeu_si256((__m256i *)(X + 32 * to), _mm256_loadu_si256((const __m256i *)(qs + 32 * from)));
            D[to] = d[from]; S[to] = s[from];
            SX[to] = sums ? block_sum(qs + 32 * from) : 0;
        }
    *in = (struct q8_tokens){ X, D, S, SX, blocks, tokens };
    return 1;
}

static int packable_kind(uint32_t type) { return type == 2 ? KIND_Q4_0 : type == 3 ? KIND_Q4_1 : type == 8 ? KIND_Q8_0 : -1; }

// The eight rows' sums of one token's block on AVX2 (the packed rows of q4_0 and
// q4_1, q8_rows8.inc): every chunk's maddubs byte pairs add up in int16 before one
// madd, |Σ| ≤ 8·2·15·127 < 32,767, so the sums are exact and the bits are the
// VNNI set's. (q8_0's w + 128 would overflow maddubs' pairs: VNNI only.)
SIMD_FN static inline __m256i rows8_sums_avx2(const __m256i *C, const int8_t *x) {
    __m256i P16 = _mm256_setzero_si256();
    for (int c = 0; c < 8; c++) {
        int32_t v;
        memcpy(&v, x + 4 * c, 4);
        P16 = _mm256_add_epi16(P16, _mm256_maddubs_epi16(C[c], _mm256_set1_epi32(v)));
    }
    return _mm256_madd_epi16(P16, _mm256_set1_epi16(1));
}
#define R8_FN SIMD_FN
#define R8_NAME(x) x##_avx2
#define R8_ROW_SUMS rows8_sums_avx2
#define R8_Q8_0 0
#include "q8_rows8.inc"
#undef R8_FN
#undef R8_NAME
#undef R8_ROW_SUMS
#undef R8_Q8_0

int wren_gemm_q8_packed8(uint32_t type, const void *packed, int r0, int r1, const int8_t *qs, const float *d, const float *s,
                         int blocks, int tokens, float *y, int ldy) {
    int kind = packable_kind(type), set = wren_kernels_simd();
    if (kind < 0 || tokens < 1 || tokens > 8 || set < 1 || (set == 1 && kind == KIND_Q8_0)) return 0;
    struct q8_tokens in;
    if (!tokens_for_rows8(kind, qs, d, s, blocks, tokens, &in)) return 0;
    return set >= 2 ? wren_q8_vnni_packed8(kind, packed, r0, r1, &in, y, ldy) : packed8_avx2(kind, packed, r0, r1, &in, y, ldy);
}

int wren_packed8_runs(uint32_t type) {
    int kind = packable_kind(type), set = wren_kernels_simd();
    return kind >= 0 && (set >= 2 || (set == 1 && kind != KIND_Q8_0));
}

// The kernel set: VNNI where the CPU has it (and it is not forced off), else
// AVX2. Every set gives the same bits.
static const struct q8_set *pair_set(void) { return wren_kernels_simd() >= 2 ? wren_q8_vnni_set() : &set_avx2; }

SIMD_FN static void gemm_q8_avx2(int kind, int block_bytes, const uint8_t *w, size_t row_bytes, int rows,
                                 const int8_t *qs, const float *d, const float *s, int blocks, int tokens, float *y, int ldy) {
    const struct q8_set *set = pair_set();
    q8_gemv_fn gemv = set->gemv[kind];
    if (tokens == 1) { gemv(w, row_bytes, rows, qs, d, s, blocks, y, ldy); return; }
    int groups = (rows + 3) / 4;
    size_t gbytes = (size_t)blocks * packed_block_bytes(kind);
    if (tokens <= 8 && set->rows8[kind]) {
        // Eight rows per step with the tokens broadcast (q8_vnni.c).
        struct q8_tokens in;
        if (!tokens_for_rows8(kind, qs, d, s, blocks, tokens, &in)) {
            for (int t = 0; t < tokens; t++)
                gemv(w, row_bytes, rows, qs + (size_t)t * 32 * blocks, d + (size_t)t * blocks, s + (size_t)t * blocks, blocks,
                     y + (size_t)t * ldy, ldy);
            return;
        }
        set->rows8[kind](w, row_bytes, rows, &in, y, ldy);
        return;
    }
    if (tokens < TILE_MIN_TOKENS) {
        // Up to eight tokens per pass over the rows (the weights come from memory
        // once for all of them), then up to four; each pass's tokens interleaved first.
        size_t floats = 32 * (size_t)blocks;   // four pairs' lanes per block
        uint8_t *buf = pack_space(256 * (size_t)blocks + 3 * 4 * floats);
        if (!buf) {   // no memory for the buffer: one token at a time (the same bits)
            for (int t = 0; t < tokens; t++)
                gemv(w, row_bytes, rows, qs + (size_t)t * 32 * blocks, d + (size_t)t * blocks, s + (size_t)t * blocks, blocks,
                     y + (size_t)t * ldy, ldy);
            return;
        }
        struct q8_slots in = { (const int8_t *)buf, (const float *)(buf + 256 * (size_t)blocks),
                               (const float *)(buf + 256 * (size_t)blocks) + floats,
                               (const int32_t *)((const float *)(buf + 256 * (size_t)blocks) + 2 * floats), blocks, {0} };
        for (int t = 0; t < tokens;) {
            int slots = tokens - t > 4 ? 8 : 4, count = tokens - t < slots ? tokens - t : slots;
            for (int j = 0; j < slots; j++) in.token[j] = t + (j < count ? j : count - 1);
            interleave(kind, qs, d, s, blocks, in.token, slots, set->offset_x, &in);
            (slots == 8 ? set->pairs4 : set->pairs2)[kind](w, row_bytes, rows, &in, y, ldy);
            t += count;
        }
        return;
    }
    // One packed group, then (q4_0, q5_0) each token's block sums Σx.
    size_t packed = (gbytes + 63) / 64 * 64;
    uint8_t *pk = pack_space(packed + 4 * (size_t)tokens * blocks);
    if (!pk) {
        for (int t = 0; t < tokens; t++)
            gemv(w, row_bytes, rows, qs + (size_t)t * 32 * blocks, d + (size_t)t * blocks, s + (size_t)t * blocks, blocks,
                 y + (size_t)t * ldy, ldy);
        return;
    }
    int32_t *sx = (int32_t *)(pk + packed);
    block_sums(kind, qs, tokens, blocks, sx);
    // Each group is packed and used at once, while it is in L1; the next group's
    // rows are fetched meanwhile.
    for (int g = 0; g < groups; g++) {
        if (g + 1 < groups) {
            const char *next = (const char *)w + (size_t)(4 * g + 4) * row_bytes;
            int more = rows - 4 * g - 4 < 4 ? rows - 4 * g - 4 : 4;
            for (size_t o = 0; o < (size_t)more * row_bytes; o += 64) _mm_prefetch(next + o, _MM_HINT_T0);
        }
        pack_group(kind, w, row_bytes, rows, 4 * g, blocks, block_bytes, pk);
        set->tiles_of_group(kind, pk, rows, g, qs, d, s, sx, blocks, tokens, y, ldy);
    }
}

// Each token's block sums Σx, for the kinds whose integers carry an offset.
SIMD_FN static void block_sums(int kind, const int8_t *qs, int tokens, int blocks, int32_t *sx) {
    if (!offset_shift(kind)) return;
    for (size_t i = 0; i < (size_t)tokens * blocks; i++) sx[i] = block_sum(qs + 32 * i);
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
    const struct q8_set *set = pair_set();
    for (int g = 0; g < groups; g++) set->tiles_of_group(kind, pk + g * gbytes, rows, g, qs, d, s, sx, blocks, tokens, y, ldy);
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

#define GEMM_Q8_AVX2(NAME, KIND, BYTES)                                                                               \
    void NAME(const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s,              \
              int blocks, int tokens, float *y, int ldy) {                                                           \
        gemm_q8_avx2(KIND, BYTES, w, row_bytes, rows, qs, d, s, blocks, tokens, y, ldy);                             \
    }
GEMM_Q8_AVX2(wren_gemm_q8_q4_0_avx2, KIND_Q4_0, 18)
GEMM_Q8_AVX2(wren_gemm_q8_q4_1_avx2, KIND_Q4_1, 20)
GEMM_Q8_AVX2(wren_gemm_q8_q8_0_avx2, KIND_Q8_0, 34)
GEMM_Q8_AVX2(wren_gemm_q8_q5_0_avx2, KIND_Q5_0, 22)
GEMM_Q8_AVX2(wren_gemm_q8_q5_1_avx2, KIND_Q5_1, 24)

#endif

#if !HAVE_SIMD
int wren_gemm_q8_packed8(uint32_t type, const void *packed, int r0, int r1, const int8_t *qs, const float *d, const float *s,
                         int blocks, int tokens, float *y, int ldy) {
    (void)type; (void)packed; (void)r0; (void)r1; (void)qs; (void)d; (void)s; (void)blocks; (void)tokens; (void)y; (void)ldy;
    return 0;
}
int wren_packed8_runs(uint32_t type) { (void)type; return 0; }
#endif

// Rows in groups of eight, each block of a group as the eight-row kernels read it
// (q8_vnni.c, packed8_body): the eight rows' f16 scales (q4_1: then their
// minimums), then the quants as 4-byte pieces, piece c of every row side by
// side (q4: the 16 packed bytes, low nibbles elements 4c…4c+3 and high nibbles
// 16+4c…; q8_0: the 32 bytes, each + 128). The same size as the rows.
size_t wren_pack_rows8(uint32_t type, const void *w, size_t row_bytes, int rows, void *out) {
    int kind = type == 2 ? 0 : type == 3 ? 1 : type == 8 ? 2 : -1;   // KIND_Q4_0, KIND_Q4_1, KIND_Q8_0
    size_t bb = kind == 0 ? 18 : kind == 1 ? 20 : 34;
    if (kind < 0 || rows <= 0 || rows % 8 || row_bytes % bb) return 0;
    size_t blocks = row_bytes / bb, gb = 8 * bb;
    const uint8_t *src = w;
    uint8_t *dst = out;
    int scales = kind == 1 ? 2 : 1, pieces = kind == 2 ? 8 : 4;
    for (int g = 0; g < rows / 8; g++)
        for (size_t b = 0; b < blocks; b++) {
            uint8_t *o = dst + ((size_t)g * blocks + b) * gb;
            for (int k = 0; k < 8; k++) {
                const uint8_t *blk = src + (size_t)(8 * g + k) * row_bytes + b * bb;
                for (int sc = 0; sc < scales; sc++) memcpy(o + 16 * sc + 2 * k, blk + 2 * sc, 2);
                const uint8_t *q = blk + 2 * scales;
                for (int c = 0; c < pieces; c++)
                    for (int i = 0; i < 4; i++) o[16 * scales + 32 * c + 4 * k + i] = (uint8_t)(q[4 * c + i] ^ (kind == 2 ? 0x80 : 0));
            }
        }
    return (size_t)rows * row_bytes;
}
