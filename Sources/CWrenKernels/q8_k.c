// Products of k-quant rows (q2_k … q6_k, super-blocks of 256) with Wren's
// 8-bit activations (blocks of 32: qs, d, s as in q8.c), portable and AVX2.
//
// The activations keep their 32-element blocks for every weight type, so one
// quantization of a vector serves a layer whose matrices mix k-quants with
// q5_0 or q8_0 (as Q4_K_M files do), and each 32 elements get their own scale
// (llama.cpp's q8_K has one per 256: coarser, but its sums stay integer across
// a super-block). The canonical arithmetic per (row, token), 32-block b in
// sub-block order (j = b mod 8 within its super-block):
//   q4_k, q5_k   isum = Σ q·x                      (exact int32; q unsigned)
//                A = fma(fl(dl_j·dx_b), isum, A)   dl_j = fl(d·s_j): dequantization's scale
//                M = fma(ml_j, s_b, M)             ml_j = fl(dmin·m_j); s_b = dx_b·Σx_b
//                y = A − M
//   q6_k, q3_k   isum = s_lo·Σ_lo q·x + s_hi·Σ_hi q·x   (the two 16-element halves, signed q and s)
//                A = fma(fl(d·dx_b), isum, A);   y = A
//   q2_k         isum as q6_k with s = sc & 15;  msum = m_lo·Σ_lo x + m_hi·Σ_hi x (m = sc >> 4)
//                A = fma(fl(d·dx_b), isum, A);  M = fma(fl(dmin·dx_b), msum, M);  y = A − M
// Every path performs these float operations in this order, so a result is
// the same bits on every CPU, for any number of tokens.
#pragma STDC FP_CONTRACT OFF
#include "kernels_common.h"

enum { K_Q2, K_Q3, K_Q4, K_Q5, K_Q6 };
static const int kbytes[5] = { 84, 110, 144, 176, 210 };

static inline float h2f(const uint8_t *p) { return f16_to_f32_scalar(load_u16(p)); }

// One super-block, unpacked: integers in element order and the scales the
// canonical arithmetic uses.
typedef struct {
    int8_t q[256];
    int sc[16], m[16];    // per 16 elements: integer sub-scales (q2, q3, q6) and q2_k's mins
    float dl[8], ml[8];   // per 32 elements (q4_k, q5_k)
    float d, dmin;
} kblock;

static void unpack_k(int kind, const uint8_t *b, kblock *k) {
    switch (kind) {
    case K_Q2:
        k->d = h2f(b + 80); k->dmin = h2f(b + 82);
        for (int e = 0; e < 256; e++) k->q[e] = (int8_t)((b[16 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3);
        for (int h = 0; h < 16; h++) { k->sc[h] = b[h] & 15; k->m[h] = b[h] >> 4; }
        break;
    case K_Q3:
        k->d = h2f(b + 108); k->dmin = 0;
        for (int e = 0; e < 256; e++) {
            int q = (b[32 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            k->q[e] = (int8_t)(q - ((b[e % 32] >> (e / 32)) & 1 ? 0 : 4));
        }
        for (int h = 0; h < 16; h++) { k->sc[h] = scale_q3(h, b + 96) - 32; k->m[h] = 0; }
        break;
    case K_Q4:
    case K_Q5: {
        float d = h2f(b), dmin = h2f(b + 2);
        k->d = d; k->dmin = dmin;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, b + 4, &sc, &m);
            k->dl[j] = d * (float)sc; k->ml[j] = dmin * (float)m;
            const uint8_t *q = b + (kind == K_Q4 ? 16 : 48) + 32 * (j / 2);
            for (int l = 0; l < 32; l++) {
                int v = (q[l] >> (4 * (j & 1))) & 15;
                if (kind == K_Q5) v |= ((b[16 + l] >> j) & 1) << 4;
                k->q[32 * j + l] = (int8_t)v;
            }
        }
        break;
    }
    default:   // K_Q6
        k->d = h2f(b + 208); k->dmin = 0;
        for (int e = 0; e < 256; e++) {
            int h = e / 128, g = (e % 128) / 32, l = e % 32;
            int ql = b[64 * h + l + 32 * (g & 1)], qh = b[128 + 32 * h + l];
            k->q[e] = (int8_t)(((g >= 2 ? ql >> 4 : ql & 15) | ((qh >> (2 * g)) & 3) << 4) - 32);
        }
        for (int h = 0; h < 16; h++) { k->sc[h] = (int8_t)b[192 + h]; k->m[h] = 0; }
        break;
    }
}

static float q8_row_k(int kind, const uint8_t *r, const int8_t *qs, const float *dx, const float *s, int blocks) {
    float A = 0, M = 0;
    kblock k;
    for (int b0 = 0; b0 < blocks; b0 += 8, r += kbytes[kind]) {
        unpack_k(kind, r, &k);
        for (int j = 0; j < 8; j++) {
            const int b = b0 + j;
            const int8_t *x = qs + 32 * (size_t)b;
            const int8_t *w = k.q + 32 * j;
            if (kind == K_Q4 || kind == K_Q5) {
                int32_t sum = 0;
                for (int l = 0; l < 32; l++) sum += w[l] * x[l];
                A = fmaf(k.dl[j] * dx[b], (float)sum, A);
                M = fmaf(k.ml[j], s[b], M);
            } else {
                int32_t lo = 0, hi = 0, xl = 0, xh = 0;
                for (int l = 0; l < 16; l++) { lo += w[l] * x[l]; hi += w[16 + l] * x[16 + l]; xl += x[l]; xh += x[16 + l]; }
                A = fmaf(k.d * dx[b], (float)(k.sc[2 * j] * lo + k.sc[2 * j + 1] * hi), A);
                if (kind == K_Q2) M = fmaf(k.dmin * dx[b], (float)(k.m[2 * j] * xl + k.m[2 * j + 1] * xh), M);
            }
        }
    }
    return A - M;
}

#define GEMM_K_SCALAR(NAME, KIND)                                                                              \
    void NAME(const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s,    \
              int blocks, int tokens, float *y, int ldy) {                                                     \
        for (int t = 0; t < tokens; t++) {                                                                     \
            const uint8_t *rw = w;                                                                             \
            for (int r = 0; r < rows; r++, rw += row_bytes)                                                    \
                y[(size_t)t * ldy + r] = q8_row_k(KIND, rw, qs + (size_t)t * 32 * blocks, d + (size_t)t * blocks, \
                                                  s + (size_t)t * blocks, blocks);                             \
        }                                                                                                      \
    }
GEMM_K_SCALAR(wren_gemm_q8_q2_k_scalar, K_Q2)
GEMM_K_SCALAR(wren_gemm_q8_q3_k_scalar, K_Q3)
GEMM_K_SCALAR(wren_gemm_q8_q4_k_scalar, K_Q4)
GEMM_K_SCALAR(wren_gemm_q8_q5_k_scalar, K_Q5)
GEMM_K_SCALAR(wren_gemm_q8_q6_k_scalar, K_Q6)

#if HAVE_SIMD

#define ALWAYS_INLINE __attribute__((always_inline))

// q8.c's prompt tiles, for q4_k and q5_k rows repacked into its q4_1 layout.
uint8_t *wren_q8_tile_space(int blocks, int rows, int tokens, size_t *packed);
size_t wren_q8_tile_block_bytes(void);
uint8_t *wren_q8_space(size_t bytes);
void wren_q8_tiles_min(uint8_t *pk, size_t packed, int rows, const int8_t *qs, const float *d, const float *s, int blocks,
                       int tokens, float *y, int ldy);

// Sub-block j's 32 integers in element order (q3_k, q6_k: signed, offsets taken off).
SIMD_FN static inline ALWAYS_INLINE __m256i k_ints(int kind, const uint8_t *b, int j) {
    const __m256i m3 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    const int h = j / 4, g = j % 4;
    switch (kind) {
    case K_Q2:
        return _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(b + 16 + 32 * h)), _mm_cvtsi32_si128(2 * g)), m3);
    case K_Q3: {
        __m256i q = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(b + 32 + 32 * h)), _mm_cvtsi32_si128(2 * g)), m3);
        __m256i hb = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)b), _mm_cvtsi32_si128(j)), one);
        return _mm256_sub_epi8(_mm256_or_si256(q, _mm256_slli_epi16(hb, 2)), _mm256_set1_epi8(4));
    }
    case K_Q4:
    case K_Q5: {
        __m256i v = _mm256_loadu_si256((const __m256i *)(b + (kind == K_Q4 ? 16 : 48) + 32 * (j / 2)));
        if (j & 1) v = _mm256_srli_epi16(v, 4);
        v = _mm256_and_si256(v, m15);
        if (kind == K_Q5) {
            __m256i hb = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(b + 16)), _mm_cvtsi32_si128(j)), one);
            v = _mm256_or_si256(v, _mm256_slli_epi16(hb, 4));
        }
        return v;
    }
    default: {   // K_Q6
        __m256i ql = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32 * (g & 1)));
        if (g >= 2) ql = _mm256_srli_epi16(ql, 4);
        ql = _mm256_and_si256(ql, m15);
        __m256i qh = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h)), _mm_cvtsi32_si128(2 * g)), m3);
        return _mm256_sub_epi8(_mm256_or_si256(ql, _mm256_slli_epi16(qh, 4)), _mm256_set1_epi8(32));
    }
    }
}

// Σ over 4-byte groups of w·x·scale as 8 int32 lanes (scale: int16 per byte
// pair). Signed weights go through |w| and x with w's sign, so maddubs never
// saturates (|w| ≤ 32, |x| ≤ 127).
SIMD_FN static inline ALWAYS_INLINE __m256i k_dot(int kind, __m256i w, __m256i x, __m256i scale) {
    if (kind == K_Q3 || kind == K_Q6) return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), scale);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), scale);
}

SIMD_FN static inline __m128i k_reduce4(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

// q4_k / q5_k: the 12 scale bytes of a super-block → sc[0…7] then m[0…7] (the
// same pairs as scale_min_k4, decoded four at a time in 32-bit words, kept in a
// register: no store and reload).
SIMD_FN static inline __m128i k4_scale_bytes(const uint8_t *q) {
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4); memcpy(&u1, q + 4, 4); memcpy(&u2, q + 8, 4);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    return _mm_setr_epi32((int)(u0 & m6), (int)((u2 & m4) | (((u0 >> 6) & m2) << 4)),
                          (int)(u1 & m6), (int)(((u2 >> 4) & m4) | (((u1 >> 6) & m2) << 4)));
}

// Four rows' dl_j = fl(d·s_j) and ml_j = fl(dmin·m_j) for j = 0…7 as one vector
// of the four rows per j (a 4 × 8 transpose in registers).
SIMD_FN static inline ALWAYS_INLINE void k4_scales4(const uint8_t *const b[4], __m128 dl[8], __m128 ml[8]) {
    __m256 D[4], M[4];
    for (int r = 0; r < 4; r++) {
        __m128i v = k4_scale_bytes(b[r] + 4);
        D[r] = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(load_u16(b[r]))), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)));
        M[r] = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(load_u16(b[r] + 2))), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8))));
    }
    for (int pass = 0; pass < 2; pass++) {
        __m256 *R = pass ? M : D;
        __m128 *out = pass ? ml : dl;
        __m256 t0 = _mm256_unpacklo_ps(R[0], R[1]), t1 = _mm256_unpackhi_ps(R[0], R[1]);
        __m256 t2 = _mm256_unpacklo_ps(R[2], R[3]), t3 = _mm256_unpackhi_ps(R[2], R[3]);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        out[0] = _mm256_castps256_ps128(u0); out[4] = _mm256_extractf128_ps(u0, 1);
        out[1] = _mm256_castps256_ps128(u1); out[5] = _mm256_extractf128_ps(u1, 1);
        out[2] = _mm256_castps256_ps128(u2); out[6] = _mm256_extractf128_ps(u2, 1);
        out[3] = _mm256_castps256_ps128(u3); out[7] = _mm256_extractf128_ps(u3, 1);
    }
}

// q2_k, q3_k, q6_k: the 16 signed sub-scales of a super-block as int8 (q2_k:
// its 4-bit scales; `mins`: q2_k's 4-bit minimums instead), built in registers.
SIMD_FN static inline ALWAYS_INLINE __m128i k16_scales(int kind, const uint8_t *p, int mins) {
    if (kind == K_Q6) return _mm_loadu_si128((const __m128i *)(p + 192));
    if (kind == K_Q2) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        return _mm_and_si128(mins ? _mm_srli_epi16(v, 4) : v, _mm_set1_epi8(15));
    }
    // q3_k: low 4 bits from bytes 0–7 (low nibbles: scales 0–7, high: 8–15), high 2 bits
    // from bytes 8–11 (shifted by 0, 2, 4, 6 for scales 0–3, 4–7, 8–11, 12–15), minus 32.
    uint64_t lo; uint32_t hb;
    memcpy(&lo, p + 96, 8); memcpy(&hb, p + 104, 4);
    const uint64_t n4 = 0x0f0f0f0f0f0f0f0full;
    const uint32_t n2 = 0x03030303;
    __m128i low = _mm_set_epi64x((long long)((lo >> 4) & n4), (long long)(lo & n4));
    __m128i high = _mm_setr_epi32((int)(hb & n2), (int)((hb >> 2) & n2), (int)((hb >> 4) & n2), (int)((hb >> 6) & n2));
    return _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi8(32));
}

// The multiplier vector of sub-block j: eight int16 copies of scale 2j (the first 16
// elements' byte pairs), then eight of scale 2j+1. `dup[h]` holds scales 8h…8h+7 as
// int16 in both 128-bit lanes; one in-lane byte shuffle picks the two.
SIMD_FN static inline ALWAYS_INLINE __m256i k16_pick(const __m256i dup[2], int j) {
    const int a = (2 * j) % 8, b = a + 1;
    const __m256i pat = _mm256_setr_epi8(2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1,
                                         2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1, 2 * a, 2 * a + 1,
                                         2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1,
                                         2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1, 2 * b, 2 * b + 1);
    return _mm256_shuffle_epi8(dup[j / 4], pat);
}

SIMD_FN static inline ALWAYS_INLINE void k16_dup(__m128i s8, __m256i dup[2]) {
    __m256i w = _mm256_cvtepi8_epi16(s8);   // 16 int16: scales 0–15
    dup[0] = _mm256_permute2x128_si256(w, w, 0x00);
    dup[1] = _mm256_permute2x128_si256(w, w, 0x11);
}

// Rows against NT tokens read in place, four rows per step: each super-block's
// integers are unpacked once for all tokens.
SIMD_FN static inline ALWAYS_INLINE void gemv_k(int kind, int NT, const uint8_t *w, size_t row_bytes, int rows,
                                                const int8_t *qs, const float *dx, const float *s, int blocks, float *y, int ldy) {
    const int SB = kbytes[kind];
    const size_t n = 32 * (size_t)blocks, group = 4 * row_bytes, pf_ahead = (PF_BYTES + group - 1) / group * group;
    const __m256i ones16 = _mm256_set1_epi16(1);
    const __m256i onesu8 = _mm256_set1_epi8(1);
    for (int r = 0; r < rows; r += 4) {
        const uint8_t *rw[4];
        for (int k = 0; k < 4; k++) rw[k] = w + (size_t)(r + k < rows ? r + k : rows - 1) * row_bytes;
        __m128 A[2], M[2];
        for (int t = 0; t < NT; t++) { A[t] = _mm_setzero_ps(); M[t] = _mm_setzero_ps(); }
        for (int i = 0; i < blocks / 8; i++) {
            const char *pf = (const char *)rw[0] + pf_ahead + (size_t)4 * i * SB;
            for (int c = 0; c < 4 * SB; c += 64) _mm_prefetch(pf + c, _MM_HINT_T0);
            const uint8_t *b[4] = { rw[0] + (size_t)i * SB, rw[1] + (size_t)i * SB, rw[2] + (size_t)i * SB, rw[3] + (size_t)i * SB };
            __m128 dl[8], ml[8], d4 = _mm_setzero_ps(), dmin4 = _mm_setzero_ps();
            __m256i sdup[4][2], mdup[4][2];
            if (kind == K_Q4 || kind == K_Q5) {
                k4_scales4(b, dl, ml);
            } else {
                const int doff = kind == K_Q2 ? 80 : kind == K_Q3 ? 108 : 208;
                d4 = _mm_cvtph_ps(_mm_setr_epi16((short)load_u16(b[0] + doff), (short)load_u16(b[1] + doff), (short)load_u16(b[2] + doff),
                                                 (short)load_u16(b[3] + doff), 0, 0, 0, 0));
                if (kind == K_Q2)
                    dmin4 = _mm_cvtph_ps(_mm_setr_epi16((short)load_u16(b[0] + 82), (short)load_u16(b[1] + 82), (short)load_u16(b[2] + 82),
                                                        (short)load_u16(b[3] + 82), 0, 0, 0, 0));
                for (int k = 0; k < 4; k++) {
                    k16_dup(k16_scales(kind, b[k], 0), sdup[k]);
                    if (kind == K_Q2) k16_dup(k16_scales(kind, b[k], 1), mdup[k]);
                }
            }
            for (int j = 0; j < 8; j++) {
                const int blk = 8 * i + j;
                __m256i W[4], SC[4];
                for (int k = 0; k < 4; k++) {
                    W[k] = k_ints(kind, b[k], j);
                    SC[k] = (kind == K_Q4 || kind == K_Q5) ? ones16 : k16_pick(sdup[k], j);
                }
                for (int t = 0; t < NT; t++) {
                    __m256i x = _mm256_loadu_si256((const __m256i *)(qs + t * n + 32 * (size_t)blk));
                    __m128i isum = k_reduce4(k_dot(kind, W[0], x, SC[0]), k_dot(kind, W[1], x, SC[1]),
                                             k_dot(kind, W[2], x, SC[2]), k_dot(kind, W[3], x, SC[3]));
                    __m128 dxv = _mm_set1_ps(dx[t * blocks + blk]);
                    if (kind == K_Q4 || kind == K_Q5) {
                        A[t] = _mm_fmadd_ps(_mm_mul_ps(dl[j], dxv), _mm_cvtepi32_ps(isum), A[t]);
                        M[t] = _mm_fmadd_ps(ml[j], _mm_set1_ps(s[t * blocks + blk]), M[t]);
                    } else {
                        A[t] = _mm_fmadd_ps(_mm_mul_ps(d4, dxv), _mm_cvtepi32_ps(isum), A[t]);
                        if (kind == K_Q2) {
                            // msum = m_lo·Σ_lo x + m_hi·Σ_hi x: the byte-pair sums of x against each row's mins.
                            __m256i px = _mm256_maddubs_epi16(onesu8, x);
                            __m128i msum = k_reduce4(_mm256_madd_epi16(px, k16_pick(mdup[0], j)), _mm256_madd_epi16(px, k16_pick(mdup[1], j)),
                                                     _mm256_madd_epi16(px, k16_pick(mdup[2], j)), _mm256_madd_epi16(px, k16_pick(mdup[3], j)));
                            M[t] = _mm_fmadd_ps(_mm_mul_ps(dmin4, dxv), _mm_cvtepi32_ps(msum), M[t]);
                        }
                    }
                }
            }
        }
        for (int t = 0; t < NT; t++) {
            float out[4];
            _mm_storeu_ps(out, _mm_sub_ps(A[t], M[t]));
            for (int k = 0; k < 4 && r + k < rows; k++) y[(size_t)t * ldy + r + k] = out[k];
        }
    }
}

// Prompt tiles for q4_k and q5_k: their canonical arithmetic is q4_1's with
// per-32-block scale dl_j and minimum −ml_j (A = fma(fl(dl·dx), isum, A);
// M' = fma(−ml, s, M') = −M exactly; y = A + M' = A − M), so their rows are
// repacked into q8.c's q4_1 group layout and run on its tiles: per 32-block,
// the four rows' integers in 8-byte chunks, then dl and −ml in the lane order
// r0 r1 r0 r1 r2 r3 r2 r3.
SIMD_FN static void pack_group_k(int kind, const uint8_t *w, size_t row_bytes, int rows, int r0, int blocks, uint8_t *out, size_t pb) {
    const uint8_t *rw[4];
    for (int k = 0; k < 4; k++) rw[k] = w + (size_t)(r0 + k < rows ? r0 + k : rows - 1) * row_bytes;
    const int SB = kbytes[kind];
    const __m256i lanes = _mm256_setr_epi32(0, 1, 0, 1, 2, 3, 2, 3);
    for (int i = 0; i < blocks / 8; i++) {
        const uint8_t *b[4] = { rw[0] + (size_t)i * SB, rw[1] + (size_t)i * SB, rw[2] + (size_t)i * SB, rw[3] + (size_t)i * SB };
        __m128 DL[8], ML[8];
        k4_scales4(b, DL, ML);
        for (int j = 0; j < 8; j++, out += pb) {
            __m256i R0 = k_ints(kind, b[0], j), R1 = k_ints(kind, b[1], j), R2 = k_ints(kind, b[2], j), R3 = k_ints(kind, b[3], j);
            __m256i T0 = _mm256_unpacklo_epi64(R0, R1), T1 = _mm256_unpackhi_epi64(R0, R1);
            __m256i T2 = _mm256_unpacklo_epi64(R2, R3), T3 = _mm256_unpackhi_epi64(R2, R3);
            _mm256_storeu_si256((__m256i *)(out + 0), _mm256_permute2x128_si256(T0, T2, 0x20));
            _mm256_storeu_si256((__m256i *)(out + 32), _mm256_permute2x128_si256(T1, T3, 0x20));
            _mm256_storeu_si256((__m256i *)(out + 64), _mm256_permute2x128_si256(T0, T2, 0x31));
            _mm256_storeu_si256((__m256i *)(out + 96), _mm256_permute2x128_si256(T1, T3, 0x31));
            __m128 dl = DL[j], ml = _mm_sub_ps(_mm_setzero_ps(), ML[j]);
            _mm256_storeu_ps((float *)(out + 128), _mm256_permutevar8x32_ps(_mm256_set_m128(dl, dl), lanes));
            _mm256_storeu_ps((float *)(out + 160), _mm256_permutevar8x32_ps(_mm256_set_m128(ml, ml), lanes));
        }
    }
}

// Prompt tiles for q6_k, q3_k and q2_k, whose 16-value sub-scales live inside
// the integer sums. A packed group of four rows holds, per 32-block:
//   w[4][32]   the rows' integers made unsigned (q6_k: q + 32, q3_k: q + 4), four
//              rows interleaved in 8-byte chunks (chunks 0–1: the first 16 values)
//   slo[16], shi[16]   int16: each row's sub-scale four times (r0 r0 r0 r0 r1 … r3),
//              for the byte-pair sums of chunks 0–1 and 2–3
//   sp[8]      int16 pairs (s_lo, s_hi) in the lane order r0 r1 r0 r1 | r2 r3 r2 r3
//   mp[8]      q2_k's (m_lo, m_hi) likewise
//   d[8], dmin[8]   the rows' super-scales in that lane order
// With the tokens' (Σx_lo, Σx_hi) pairs per block, the offset comes off as
// isum −= 2^k·(s_lo·Σx_lo + s_hi·Σx_hi) and q2_k's msum = m_lo·Σx_lo + m_hi·Σx_hi,
// one madd each, so every (row, token) gets the canonical integers and then
// the canonical float steps.
enum { K16_BLOCK = 320 };

SIMD_FN static void pack_group_k16(int kind, const uint8_t *w, size_t row_bytes, int rows, int r0, int blocks, uint8_t *out) {
    const uint8_t *rw[4];
    for (int k = 0; k < 4; k++) rw[k] = w + (size_t)(r0 + k < rows ? r0 + k : rows - 1) * row_bytes;
    const int SB = kbytes[kind], doff = kind == K_Q2 ? 80 : kind == K_Q3 ? 108 : 208;
    const __m256i bias = _mm256_set1_epi8(kind == K_Q6 ? 32 : kind == K_Q3 ? 4 : 0);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 0, 1, 2, 3, 2, 3);
    for (int i = 0; i < blocks / 8; i++) {
        const uint8_t *b[4] = { rw[0] + (size_t)i * SB, rw[1] + (size_t)i * SB, rw[2] + (size_t)i * SB, rw[3] + (size_t)i * SB };
        int8_t sc[4][16], mn[4][16];
        for (int k = 0; k < 4; k++) {
            _mm_storeu_si128((__m128i *)sc[k], k16_scales(kind, b[k], 0));
            if (kind == K_Q2) _mm_storeu_si128((__m128i *)mn[k], k16_scales(kind, b[k], 1));
        }
        __m128 d4 = _mm_cvtph_ps(_mm_setr_epi16((short)load_u16(b[0] + doff), (short)load_u16(b[1] + doff), (short)load_u16(b[2] + doff),
                                                (short)load_u16(b[3] + doff), 0, 0, 0, 0));
        __m128 m4 = kind == K_Q2 ? _mm_cvtph_ps(_mm_setr_epi16((short)load_u16(b[0] + 82), (short)load_u16(b[1] + 82),
                                                               (short)load_u16(b[2] + 82), (short)load_u16(b[3] + 82), 0, 0, 0, 0))
                                 : _mm_setzero_ps();
        __m256 dv = _mm256_permutevar8x32_ps(_mm256_set_m128(d4, d4), lanes), mv = _mm256_permutevar8x32_ps(_mm256_set_m128(m4, m4), lanes);
        for (int j = 0; j < 8; j++, out += K16_BLOCK) {
            __m256i R[4];
            for (int k = 0; k < 4; k++) R[k] = _mm256_add_epi8(k_ints(kind, b[k], j), bias);
            __m256i T0 = _mm256_unpacklo_epi64(R[0], R[1]), T1 = _mm256_unpackhi_epi64(R[0], R[1]);
            __m256i T2 = _mm256_unpacklo_epi64(R[2], R[3]), T3 = _mm256_unpackhi_epi64(R[2], R[3]);
            _mm256_storeu_si256((__m256i *)(out + 0), _mm256_permute2x128_si256(T0, T2, 0x20));
            _mm256_storeu_si256((__m256i *)(out + 32), _mm256_permute2x128_si256(T1, T3, 0x20));
            _mm256_storeu_si256((__m256i *)(out + 64), _mm256_permute2x128_si256(T0, T2, 0x31));
            _mm256_storeu_si256((__m256i *)(out + 96), _mm256_permute2x128_si256(T1, T3, 0x31));
            int16_t *slo = (int16_t *)(out + 128), *shi = (int16_t *)(out + 160), *sp = (int16_t *)(out + 192), *mp = (int16_t *)(out + 224);
            static const int lane_row[8] = { 0, 1, 0, 1, 2, 3, 2, 3 };
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 4; l++) { slo[4 * k + l] = sc[k][2 * j]; shi[4 * k + l] = sc[k][2 * j + 1]; }
            for (int l = 0; l < 8; l++) {
                int r = lane_row[l];
                sp[2 * l] = sc[r][2 * j]; sp[2 * l + 1] = sc[r][2 * j + 1];
                mp[2 * l] = kind == K_Q2 ? mn[r][2 * j] : 0; mp[2 * l + 1] = kind == K_Q2 ? mn[r][2 * j + 1] : 0;
            }
            _mm256_storeu_ps((float *)(out + 256), dv);
            _mm256_storeu_ps((float *)(out + 288), mv);
        }
    }
}

// Two tokens against one packed group: eight (row, token) results.
SIMD_FN static inline ALWAYS_INLINE void tile16_4x2(int kind, const uint8_t *p, int blocks, const int8_t *x0, const int8_t *x1,
                                                    const float *d0, const float *d1, const int32_t *tx0, const int32_t *tx1,
                                                    float *y0, float *y1, int live) {
    __m256 A = _mm256_setzero_ps(), M = _mm256_setzero_ps();
    const int shift = kind == K_Q6 ? 5 : kind == K_Q3 ? 2 : 0;
    for (int b = 0; b < blocks; b++, p += K16_BLOCK) {
        const int64_t *c0 = (const int64_t *)(x0 + 32 * b), *c1 = (const int64_t *)(x1 + 32 * b);
        __m256i slo = _mm256_loadu_si256((const __m256i *)(p + 128)), shi = _mm256_loadu_si256((const __m256i *)(p + 160));
        __m256i P0 = _mm256_setzero_si256(), P1 = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)(p + 32 * c)), sc = c < 2 ? slo : shi;
            P0 = _mm256_add_epi32(P0, _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_set1_epi64x(c0[c])), sc));
            P1 = _mm256_add_epi32(P1, _mm256_madd_epi16(_mm256_maddubs_epi16(w, _mm256_set1_epi64x(c1[c])), sc));
        }
        __m256i isum = _mm256_hadd_epi32(P0, P1);
        __m256i tx = _mm256_blend_epi32(_mm256_set1_epi32(tx0[b]), _mm256_set1_epi32(tx1[b]), 0xCC);
        if (shift) isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(p + 192)), tx), shift));
        __m256 dx = _mm256_blend_ps(_mm256_set1_ps(d0[b]), _mm256_set1_ps(d1[b]), 0xCC);
        A = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps((const float *)(p + 256)), dx), _mm256_cvtepi32_ps(isum), A);
        if (kind == K_Q2) {
            __m256i msum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(p + 224)), tx);
            M = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps((const float *)(p + 288)), dx), _mm256_cvtepi32_ps(msum), M);
        }
    }
    __m256 Y = _mm256_permutevar8x32_ps(_mm256_sub_ps(A, M), _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
    float out[8];
    _mm256_storeu_ps(out, Y);
    for (int k = 0; k < live; k++) { y0[k] = out[k]; y1[k] = out[4 + k]; }
}

// Packs every group, computes each token's (Σx_lo, Σx_hi) per block, runs the tiles.
SIMD_FN static inline ALWAYS_INLINE int tiles_k16(int kind, const uint8_t *w, size_t row_bytes, int rows, const int8_t *qs,
                                                  const float *d, int blocks, int tokens, float *y, int ldy) {
    const size_t n = 32 * (size_t)blocks, gbytes = (size_t)blocks * K16_BLOCK;
    const int groups = (rows + 3) / 4;
    uint8_t *pk = wren_q8_space(gbytes * groups + 4 * (size_t)tokens * blocks);
    if (!pk) return 0;
    int32_t *tx = (int32_t *)(pk + gbytes * groups);
    const __m256i ones = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (size_t i = 0; i < (size_t)tokens * blocks; i++) {
        __m256i v = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, _mm256_loadu_si256((const __m256i *)(qs + 32 * i))), ones16);
        __m256i h = _mm256_hadd_epi32(v, v);   // per lane: [s01 s23 s01 s23]
        int32_t lo = _mm256_extract_epi32(h, 0) + _mm256_extract_epi32(h, 1), hi = _mm256_extract_epi32(h, 4) + _mm256_extract_epi32(h, 5);
        tx[i] = (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)hi << 16);
    }
    for (int g = 0; g < groups; g++) pack_group_k16(kind, w, row_bytes, rows, 4 * g, blocks, pk + g * gbytes);
    for (int g = 0; g < groups; g++) {
        int r = 4 * g, live = rows - r < 4 ? rows - r : 4;
        for (int t = 0; t < tokens; t += 2) {
            int u = t + 1 < tokens ? t + 1 : t;
            tile16_4x2(kind, pk + g * gbytes, blocks, qs + t * n, qs + u * n, d + (size_t)t * blocks, d + (size_t)u * blocks,
                       tx + (size_t)t * blocks, tx + (size_t)u * blocks, y + (size_t)t * ldy + r, y + (size_t)u * ldy + r, live);
        }
    }
    return 1;
}

// Below this many tokens the rows are read in place (as q8.c's TILE_MIN_TOKENS).
#define K_TILE_MIN_TOKENS 8

#define GEMM_K_AVX2(NAME, KIND)                                                                                 \
    SIMD_FN void NAME(const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s, \
                      int blocks, int tokens, float *y, int ldy) {                                              \
        const size_t n = 32 * (size_t)blocks;                                                                   \
        if ((KIND == K_Q4 || KIND == K_Q5) && tokens >= K_TILE_MIN_TOKENS) {                                    \
            size_t packed, pb = wren_q8_tile_block_bytes();                                                     \
            uint8_t *pk = wren_q8_tile_space(blocks, rows, tokens, &packed);                                    \
            if (pk) {                                                                                           \
                for (int g = 0; g < (rows + 3) / 4; g++)                                                        \
                    pack_group_k(KIND, w, row_bytes, rows, 4 * g, blocks, pk + (size_t)g * blocks * pb, pb);    \
                wren_q8_tiles_min(pk, packed, rows, qs, d, s, blocks, tokens, y, ldy);                          \
                return;                                                                                         \
            }                                                                                                   \
        }                                                                                                       \
        if ((KIND == K_Q2 || KIND == K_Q3 || KIND == K_Q6) && tokens >= K_TILE_MIN_TOKENS &&                    \
            tiles_k16(KIND, w, row_bytes, rows, qs, d, blocks, tokens, y, ldy))                                 \
            return;                                                                                             \
        int t = 0;                                                                                              \
        for (; t + 2 <= tokens; t += 2)                                                                         \
            gemv_k(KIND, 2, w, row_bytes, rows, qs + t * n, d + (size_t)t * blocks, s + (size_t)t * blocks,     \
                   blocks, y + (size_t)t * ldy, ldy);                                                           \
        if (t < tokens)                                                                                         \
            gemv_k(KIND, 1, w, row_bytes, rows, qs + t * n, d + (size_t)t * blocks, s + (size_t)t * blocks,     \
                   blocks, y + (size_t)t * ldy, ldy);                                                           \
    }
GEMM_K_AVX2(wren_gemm_q8_q2_k_avx2, K_Q2)
GEMM_K_AVX2(wren_gemm_q8_q3_k_avx2, K_Q3)
GEMM_K_AVX2(wren_gemm_q8_q4_k_avx2, K_Q4)
GEMM_K_AVX2(wren_gemm_q8_q5_k_avx2, K_Q5)
GEMM_K_AVX2(wren_gemm_q8_q6_k_avx2, K_Q6)

#endif
