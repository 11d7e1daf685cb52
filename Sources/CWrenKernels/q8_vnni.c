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

#define Q8_FN VNNI_FN
#define Q8_NAME(x) x##_vnni
#define Q8_PAIR_SUMS pair_sums_vnni
#include "q8_pairs.inc"

const struct q8_set *wren_q8_vnni_set(void) { return &set_vnni; }
#endif
