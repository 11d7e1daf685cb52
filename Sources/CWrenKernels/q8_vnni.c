// The AVX-512 VNNI set of the 8-bit products of two or more tokens: the same
// loops and float operations as the AVX2 set (q8_pairs.inc, q8_common.h), with
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

#define Q8_FN VNNI_FN
#define Q8_NAME(x) x##_vnni
#define Q8_PAIR_SUMS pair_sums_vnni
#include "q8_pairs.inc"

const struct q8_set *wren_q8_vnni_set(void) { return &set_vnni; }
#endif
