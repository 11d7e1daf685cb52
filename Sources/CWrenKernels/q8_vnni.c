// The AVX-512 VNNI set of the 8-bit products: the same loops and float
// operations as the AVX2 set (GEMV_Q8, q8_pairs.inc, q8_common.h), with
// each chunk's products summed into int32 lanes by one vpdpbusd (unsigned
// weight bytes × signed activation bytes, four per lane) where AVX2 needs
// maddubs, adds and a madd. The integer sums are exact either way, so the
// results are the same bits. 256-bit vectors with AVX-512VL: the tile layout is
// four rows × eight bytes, and the 32 vector registers hold eight tokens'
// accumulators without spilling.
#pragma STDC FP_CONTRACT OFF
#include "q8_common.h"

#if HAVE_SIMD
#define VNNI_FN __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

// pair_sums (q8.c) with vpdpbusd: Σ over a lane's four bytes of C·x added to the lane.
VNNI_FN static inline __m256i pair_sums_vnni(int signs, const __m256i *C, const __m256i *SG, const int8_t *x0, const int8_t *x1) {
    const int64_t *c0 = (const int64_t *)x0, *c1 = (const int64_t *)x1;
    __m256i P0 = _mm256_setzero_si256(), P1 = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i a = _mm256_set1_epi64x(c0[c]), b = _mm256_set1_epi64x(c1[c]);
        if (signs) { a = _mm256_sign_epi8(a, SG[c]); b = _mm256_sign_epi8(b, SG[c]); }
        P0 = _mm256_dpbusd_epi32(P0, C[c], a);
        P1 = _mm256_dpbusd_epi32(P1, C[c], b);
    }
    return _mm256_hadd_epi32(P0, P1);
}

// One token: GEMV_Q8 with each row's block sums from vpdpbusd.
VNNI_FN static inline __m256i dot_u8_vnni(__m256i w, __m256i x) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x); }
VNNI_FN static inline __m256i dot_i8_vnni(__m256i w, __m256i x) { return dot_u8_vnni(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)); }
#define ISUMV_Q4_1(blk, x) dot_u8_vnni(nibbles32((blk) + 4), x)
#define ISUMV_Q4_0(blk, x) dot_i8_vnni(_mm256_sub_epi8(nibbles32((blk) + 2), _mm256_set1_epi8(8)), x)
#define ISUMV_Q8_0(blk, x) dot_i8_vnni(_mm256_loadu_si256((const __m256i *)((blk) + 2)), x)
#define ISUMV_Q5_0(blk, x) dot_i8_vnni(_mm256_sub_epi8(q5_ints((blk) + 2, (blk) + 6), _mm256_set1_epi8(16)), x)
#define ISUMV_Q5_1(blk, x) dot_u8_vnni(q5_ints((blk) + 4, (blk) + 8), x)
GEMV_Q8(gemv_q4_1_vnni, VNNI_FN, 1, 20, ISUMV_Q4_1, 1)
GEMV_Q8(gemv_q4_0_vnni, VNNI_FN, 1, 18, ISUMV_Q4_0, 0)
GEMV_Q8(gemv_q8_0_vnni, VNNI_FN, 1, 34, ISUMV_Q8_0, 0)
GEMV_Q8(gemv_q5_0_vnni, VNNI_FN, 1, 22, ISUMV_Q5_0, 0)
GEMV_Q8(gemv_q5_1_vnni, VNNI_FN, 1, 24, ISUMV_Q5_1, 1)

// q8_0 read in place: the activations come as x + 128 (unsigned, struct
// q8_set's offset_x), the weights stay signed, and Σ (x + 128)·w = Σ x·w + 128·Σ w:
// the rows' 128·Σ w per block, in the pair lane order, is taken off each pair's sums.
VNNI_FN static inline __m256i signed_prep_vnni(const __m256i *C) {
    const __m256i ones = _mm256_set1_epi8(1);
    __m256i S = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) S = _mm256_dpbusd_epi32(S, ones, C[c]);
    return _mm256_slli_epi32(_mm256_hadd_epi32(S, S), 7);
}
VNNI_FN static inline __m256i inplace_sums_vnni(int signs, const __m256i *C, const __m256i *SG, __m256i W, const int8_t *x0,
                                                const int8_t *x1) {
    if (!signs) return pair_sums_vnni(0, C, SG, x0, x1);
    const int64_t *c0 = (const int64_t *)x0, *c1 = (const int64_t *)x1;
    __m256i P0 = _mm256_setzero_si256(), P1 = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        P0 = _mm256_dpbusd_epi32(P0, _mm256_set1_epi64x(c0[c]), C[c]);
        P1 = _mm256_dpbusd_epi32(P1, _mm256_set1_epi64x(c1[c]), C[c]);
    }
    return _mm256_sub_epi32(_mm256_hadd_epi32(P0, P1), W);
}
#define Q8_SIGNED_PREP(C, SG, W) ((void)(SG), (W) = signed_prep_vnni(C))
#define Q8_INPLACE_SUMS inplace_sums_vnni
#define Q8_OFFSET_X 1
#define Q8_ROWS8 { rows8_q4_0, rows8_q4_1, rows8_q8_0, 0, 0 }

// The eight rows' sums of one token's block: a lane per row, one vpdpbusd per 4-byte chunk.
VNNI_FN static inline __m256i rows8_sums_vnni(const __m256i *C, const int8_t *x) {
    __m256i P = _mm256_setzero_si256();
    for (int c = 0; c < 8; c++) {
        int32_t v;
        memcpy(&v, x + 4 * c, 4);
        P = _mm256_dpbusd_epi32(P, C[c], _mm256_set1_epi32(v));
    }
    return P;
}
#define R8_FN VNNI_FN
#define R8_NAME(x) x##_vnni
#define R8_ROW_SUMS rows8_sums_vnni
#define R8_Q8_0 1
#include "q8_rows8.inc"
#undef R8_FN
#undef R8_NAME
#undef R8_ROW_SUMS
#undef R8_Q8_0

// ---- Up to eight tokens, eight rows per step. Each block of the eight rows is
// transposed so that vector c holds bytes 4c…4c+3 of every row (an int32 lane per
// row), and token j's four bytes of chunk c go into vpdpbusd as a broadcast from
// memory: a lane then sums one (row, token) block, with no horizontal step, and
// one fma applies the block's scale to eight rows of a token. The weights are the
// unsigned operand: q4's nibbles as they are (q4_0's −8 taken off as 8·Σx), q8_0's
// bytes as w + 128 (128·Σx taken off).
VNNI_FN static inline __attribute__((always_inline)) void rows8_body(int kind, int block_bytes, int NT, const uint8_t *w,
        size_t row_bytes, int rows, const struct q8_tokens *in, float *y, int ldy) {
    size_t group = 8 * row_bytes, pf_ahead = (PF_BYTES + group - 1) / group * group;
    const int blocks = in->blocks;
    for (int r = 0; r < rows; r += 8) {
        const uint8_t *rw[8];
        for (int k = 0; k < 8; k++) rw[k] = w + (size_t)(r + k < rows ? r + k : rows - 1) * row_bytes;
        __m256 A[8], M[8];
        for (int j = 0; j < NT; j++) { A[j] = _mm256_setzero_ps(); M[j] = _mm256_setzero_ps(); }
        const int8_t *xb = in->x;
        const float *db = in->d, *sb = in->s;
        const int32_t *ib = in->sx;
        for (int b = 0; b < blocks; b++, xb += 32 * NT, db += NT, sb += NT, ib += NT) {
            const char *pf = (const char *)rw[0] + pf_ahead + 8 * (size_t)b * block_bytes;
            for (int o = 0; o < 8 * block_bytes; o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
            const uint8_t *bk[8];
            for (int k = 0; k < 8; k++) bk[k] = rw[k] + (size_t)b * block_bytes;
            __m256i C[8];
            if (kind == KIND_Q4_0 || kind == KIND_Q4_1) {
                // Rows k and k+4 share a vector: low nibbles give chunks 0–3, high 4–7; a
                // 4 × 4 transpose of int32 lanes per 128-bit half puts rows 0–3 | 4–7 in order.
                int q = kind == KIND_Q4_1 ? 4 : 2;
                const __m256i m = _mm256_set1_epi8(15);
                __m256i L[4], H[4];
                for (int k = 0; k < 4; k++) {
                    __m256i V = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(bk[k] + q))),
                                                        _mm_loadu_si128((const __m128i *)(bk[k + 4] + q)), 1);
                    L[k] = _mm256_and_si256(V, m);
                    H[k] = _mm256_and_si256(_mm256_srli_epi16(V, 4), m);
                }
                for (int h = 0; h < 2; h++) {
                    const __m256i *S = h ? H : L;
                    __m256i a0 = _mm256_unpacklo_epi32(S[0], S[1]), a1 = _mm256_unpackhi_epi32(S[0], S[1]);
                    __m256i a2 = _mm256_unpacklo_epi32(S[2], S[3]), a3 = _mm256_unpackhi_epi32(S[2], S[3]);
                    C[4 * h + 0] = _mm256_unpacklo_epi64(a0, a2); C[4 * h + 1] = _mm256_unpackhi_epi64(a0, a2);
                    C[4 * h + 2] = _mm256_unpacklo_epi64(a1, a3); C[4 * h + 3] = _mm256_unpackhi_epi64(a1, a3);
                }
            } else {
                // q8_0: eight rows of 32 bytes (+ 128), an 8 × 8 transpose of int32 lanes.
                const __m256i flip = _mm256_set1_epi8((char)0x80);
                __m256i R[8], T[8], U[8];
                for (int k = 0; k < 8; k++) R[k] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(bk[k] + 2)), flip);
                for (int k = 0; k < 8; k += 2) {
                    T[k] = _mm256_unpacklo_epi32(R[k], R[k + 1]);
                    T[k + 1] = _mm256_unpackhi_epi32(R[k], R[k + 1]);
                }
                for (int k = 0; k < 8; k += 4) {
                    U[k] = _mm256_unpacklo_epi64(T[k], T[k + 2]);     U[k + 1] = _mm256_unpackhi_epi64(T[k], T[k + 2]);
                    U[k + 2] = _mm256_unpacklo_epi64(T[k + 1], T[k + 3]); U[k + 3] = _mm256_unpackhi_epi64(T[k + 1], T[k + 3]);
                }
                for (int c = 0; c < 4; c++) {
                    C[c] = _mm256_permute2x128_si256(U[c], U[c + 4], 0x20);
                    C[c + 4] = _mm256_permute2x128_si256(U[c], U[c + 4], 0x31);
                }
            }
            __m256 dw, mw = _mm256_setzero_ps();
            if (has_min(kind)) {
                // The rows' (scale, minimum) f16 pairs: two conversions, then even and odd lanes.
                uint32_t p[8];
                for (int k = 0; k < 8; k++) memcpy(&p[k], bk[k], 4);
                __m256 lo = _mm256_cvtph_ps(_mm_setr_epi32((int)p[0], (int)p[1], (int)p[2], (int)p[3]));
                __m256 hi = _mm256_cvtph_ps(_mm_setr_epi32((int)p[4], (int)p[5], (int)p[6], (int)p[7]));
                dw = _mm256_permutex2var_ps(lo, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), hi);
                mw = _mm256_permutex2var_ps(lo, _mm256_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15), hi);
            } else {
                dw = _mm256_cvtph_ps(_mm_setr_epi16((short)load_u16(bk[0]), (short)load_u16(bk[1]), (short)load_u16(bk[2]),
                                                    (short)load_u16(bk[3]), (short)load_u16(bk[4]), (short)load_u16(bk[5]),
                                                    (short)load_u16(bk[6]), (short)load_u16(bk[7])));
            }
            rows8_tokens_vnni(kind, NT, C, dw, mw, xb, db, sb, ib, A, M);
        }
        rows8_store_vnni(kind, NT, A, M, y, ldy, r, 0, rows - r < 8 ? rows - r : 8);
    }
}

#define ROWS8_NT(KIND, BYTES, NT, NAME)                                                                             \
    VNNI_FN static void NAME##_##NT(const uint8_t *w, size_t row_bytes, int rows, const struct q8_tokens *in, float *y, \
                                    int ldy) { rows8_body(KIND, BYTES, NT, w, row_bytes, rows, in, y, ldy); }
#define ROWS8(KIND, BYTES, NAME)                                                                                    \
    ROWS8_NT(KIND, BYTES, 2, NAME) ROWS8_NT(KIND, BYTES, 3, NAME) ROWS8_NT(KIND, BYTES, 4, NAME)                    \
    ROWS8_NT(KIND, BYTES, 5, NAME) ROWS8_NT(KIND, BYTES, 6, NAME) ROWS8_NT(KIND, BYTES, 7, NAME)                    \
    ROWS8_NT(KIND, BYTES, 8, NAME)                                                                                  \
    VNNI_FN static void NAME(const uint8_t *w, size_t row_bytes, int rows, const struct q8_tokens *in, float *y, int ldy) { \
        switch (in->count) {                                                                                        \
        case 2: NAME##_2(w, row_bytes, rows, in, y, ldy); break;                                                    \
        case 3: NAME##_3(w, row_bytes, rows, in, y, ldy); break;                                                    \
        case 4: NAME##_4(w, row_bytes, rows, in, y, ldy); break;                                                    \
        case 5: NAME##_5(w, row_bytes, rows, in, y, ldy); break;                                                    \
        case 6: NAME##_6(w, row_bytes, rows, in, y, ldy); break;                                                    \
        case 7: NAME##_7(w, row_bytes, rows, in, y, ldy); break;                                                    \
        default: NAME##_8(w, row_bytes, rows, in, y, ldy); break;                                                   \
        }                                                                                                           \
    }
ROWS8(KIND_Q4_0, 18, rows8_q4_0)
ROWS8(KIND_Q4_1, 20, rows8_q4_1)
ROWS8(KIND_Q8_0, 34, rows8_q8_0)

int wren_q8_vnni_packed8(int kind, const uint8_t *w, int r0, int r1, const struct q8_tokens *in, float *y, int ldy) {
    return packed8_vnni(kind, w, r0, r1, in, y, ldy);
}

#define Q8_FN VNNI_FN
#define Q8_NAME(x) x##_vnni
#define Q8_PAIR_SUMS pair_sums_vnni
#include "q8_pairs.inc"

const struct q8_set *wren_q8_vnni_set(void) { return &set_vnni; }
#endif
