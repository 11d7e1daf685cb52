// Conversions for the k-quants: super-blocks of 256 elements with 6- or 8-bit
// sub-block scales under one or two f16 super-scales. Layouts (bytes per
// super-block), as GGUF stores them; element e of the super-block:
//   q2_k (84):  scales[16] qs[64] d dmin   q = (qs[32·(e/128) + e%32] >> 2·((e%128)/32)) & 3
//               x = d·(sc & 15)·q − dmin·(sc >> 4),  sc = scales[e/16]
//   q3_k (110): hmask[32] qs[64] scales[12] d
//               q = the same 2 bits − (bit e/32 of hmask[e%32] ? 0 : 4)
//               x = d·(s − 32)·q, s: the 6-bit scale e/16 (low 4 bits in scales[0…7], two halves;
//               high 2 bits in scales[8…11])
//   q4_k (144): d dmin scales[12] qs[128]  q = nibble (e/32 odd: high) of qs[32·(e/64) + e%32]
//               x = d·s·q − dmin·m, (s, m): the 6-bit pair of sub-block e/32
//   q5_k (176): d dmin scales[12] qh[32] qs[128]   q4_k's nibble + 16·(bit e/32 of qh[e%32])
//   q6_k (210): ql[128] qh[64] scales[16] (int8) d
//               q = (ql nibble | 2 bits of qh << 4) − 32, x = d·scales[e/16]·q
// Dequantization groups its products as ggml and gguf-py do (d·s first), so
// the floats are theirs bit for bit. The quantizers follow ggml's
// quantize_row_q*_K_ref step for step (the same searches, the same float
// expressions in the same order, FP_CONTRACT off), so their bytes are
// llama-quantize's for a tensor without an importance matrix. Non-finite
// inputs are taken as 0 first (the reference's arithmetic would turn them
// into arbitrary integers); finite inputs are untouched.
#pragma STDC FP_CONTRACT OFF
#include "kernels_common.h"

#define QK 256
#define GROUP_MAX_EPS 1e-15f
#define MAXI(a, b) ((a) > (b) ? (a) : (b))
#define MINI(a, b) ((a) < (b) ? (a) : (b))

static inline float h2f(const uint8_t *p) { return f16_to_f32_scalar(load_u16(p)); }
static inline void f2h(uint8_t *p, float f) { uint16_t h = f32_to_f16_scalar(f); memcpy(p, &h, 2); }

// Round to nearest (ties to even) by the float-add trick, as the reference does.
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int i; memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

// The super-block at x, or a copy with non-finite values replaced by 0.
static const float *finite_block(const float *x, float *tmp) {
    for (int j = 0; j < QK; j++) {
        if (!isfinite(x[j])) {
            for (int k = 0; k < QK; k++) tmp[k] = isfinite(x[k]) ? x[k] : 0.f;
            return tmp;
        }
    }
    return x;
}

// ---- Dequantization.

void wren_convert_q2_k_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 84, dst += QK) {
        float d = h2f(b + 80), dmin = h2f(b + 82);
        for (int e = 0; e < QK; e++) {
            int sc = b[e / 16];
            float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
            int q = (b[16 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            dst[e] = dl * (float)q - ml;
        }
    }
}

void wren_convert_q3_k_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 110, dst += QK) {
        float d = h2f(b + 108);
        for (int e = 0; e < QK; e++) {
            float dl = d * (float)(scale_q3(e / 16, b + 96) - 32);
            int q = (b[32 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            q -= (b[e % 32] >> (e / 32)) & 1 ? 0 : 4;
            dst[e] = dl * (float)q;
        }
    }
}

void wren_convert_q4_k_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 144, dst += QK) {
        float d = h2f(b), dmin = h2f(b + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, b + 4, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            const uint8_t *q = b + 16 + 32 * (j / 2);
            for (int l = 0; l < 32; l++) dst[32 * j + l] = d1 * (float)((q[l] >> (4 * (j & 1))) & 15) - m1;
        }
    }
}

void wren_convert_q5_k_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 176, dst += QK) {
        float d = h2f(b), dmin = h2f(b + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, b + 4, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            const uint8_t *qh = b + 16, *q = b + 48 + 32 * (j / 2);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> (4 * (j & 1))) & 15) | ((qh[l] >> j) & 1) << 4;
                dst[32 * j + l] = d1 * (float)v - m1;
            }
        }
    }
}

void wren_convert_q6_k_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    for (int64_t i = 0; i < n / QK; i++, b += 210, dst += QK) {
        float d = h2f(b + 208);
        for (int e = 0; e < QK; e++) {
            int h = e / 128, g = (e % 128) / 32, l = e % 32;
            int ql = b[64 * h + l + 32 * (g & 1)], qh = b[128 + 32 * h + l];
            int q = ((g >= 2 ? ql >> 4 : ql & 15) | ((qh >> (2 * g)) & 3) << 4) - 32;
            dst[e] = d * (float)(int8_t)b[192 + e / 16] * (float)q;
        }
    }
}

// ---- The reference's searches for sub-block scales.

// Signed levels in [−nmax, nmax) for n values: the scale with the least
// weighted error (weights x²) among 19 candidates around nmax/max.
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) { for (int i = 0; i < n; i++) L[i] = 0; return 0.f; }
    float iscale = (float)(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = MAXI(-nmax, MINI(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = MAXI(-nmax, MINI(nmax - 1, l));
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + MAXI(-nmax, MINI(nmax - 1, l)));
            }
            scale = sumlx / suml2; best = scale * sumlx;
        }
    }
    return scale;
}

// q3_k's signed levels in [−nmax, nmax): start at nmax/max, then move single
// levels while the x²-weighted fit improves (at most 5 passes).
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) { for (int i = 0; i < n; i++) L[i] = 0; return 0.f; }
    float iscale = (float)(-nmax) / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = MAXI(-nmax, MINI(nmax - 1, l));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int nl = nearest_int(x[i] * sl2 / slx);
                nl = MAXI(-nmax, MINI(nmax - 1, nl));
                if (nl != L[i]) {
                    slx += w * x[i] * (float)nl;
                    sl2 += w * (float)nl * (float)nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl; sumlx = slx; suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Unsigned levels [0, nmax] with a minimum: x ≈ scale·L − the_min. Tries
// nstep+1 scales and keeps the least weighted error (squared, or absolute
// when use_mad), each with the least-squares scale and min for its levels.
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) { for (int i = 0; i < n; i++) L[i] = 0; *the_min = -min; return 0.f; }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAXI(0, MINI(nmax, l));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = MAXI(0, MINI(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) { this_min = 0; this_scale = sum_xl / sum_l2; }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best_error = cur_error; scale = this_scale; min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// ---- Quantization.

// 2 bits in four planes: byte l of each 32-byte group holds elements l, l+32, l+64, l+96.
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

void wren_convert_f32_to_q2_k(const float *src, void *dst, int64_t n) {
    uint8_t *y = dst, L[QK], Laux[16];
    float weights[16], mins[16], scales[16], tmp[QK];
    for (int64_t i = 0; i < n / QK; i++, src += QK, y += 84) {
        const float *x = finite_block(src, tmp);
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = 15.f / max_scale;
            for (int j = 0; j < 16; j++) y[j] = (uint8_t)nearest_int(iscale * scales[j]);
            f2h(y + 80, max_scale / 15.f);
        } else {
            for (int j = 0; j < 16; j++) y[j] = 0;
            f2h(y + 80, 0.f);
        }
        if (max_min > 0) {
            float iscale = 15.f / max_min;
            for (int j = 0; j < 16; j++) y[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            f2h(y + 82, max_min / 15.f);
        } else {
            f2h(y + 82, 0.f);
        }
        for (int j = 0; j < 16; j++) {
            const float d = h2f(y + 80) * (float)(y[j] & 15);
            if (!d) continue;
            const float dm = h2f(y + 82) * (float)(y[j] >> 4);
            for (int ii = 0; ii < 16; ii++) {
                int l = nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)MAXI(0, MINI(3, l));
            }
        }
        pack_2bit(L, y + 16);
    }
}

void wren_convert_f32_to_q3_k(const float *src, void *dst, int64_t n) {
    uint8_t *y = dst;
    int8_t L[QK];
    float scales[16], tmp[QK];
    for (int64_t i = 0; i < n / QK; i++, src += QK, y += 110) {
        const float *x = finite_block(src, tmp);
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            float scale = fabsf(scales[j]);
            if (scale > amax) { amax = scale; max_scale = scales[j]; }
        }
        uint8_t *sc = y + 96;
        memset(sc, 0, 12);
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++) {
                int8_t l = (int8_t)nearest_int(iscale * scales[j]);
                l = (int8_t)(MAXI(-32, MINI(31, l)) + 32);
                if (j < 8) sc[j] = (uint8_t)(l & 15);
                else sc[j - 8] |= (uint8_t)((l & 15) << 4);
                l >>= 4;
                sc[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            f2h(y + 108, 1 / iscale);
        } else {
            f2h(y + 108, 0.f);
        }
        for (int j = 0; j < 16; j++) {
            float d = h2f(y + 108) * (float)(scale_q3(j, sc) - 32);
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(MAXI(-4, MINI(3, l)) + 4);
            }
        }
        // The high bit of element e goes to bit e/32 of hmask[e % 32].
        memset(y, 0, 32);
        for (int e = 0; e < QK; e++)
            if (L[e] > 3) { y[e % 32] |= (uint8_t)(1 << (e / 32)); L[e] -= 4; }
        pack_2bit((const uint8_t *)L, y + 32);
    }
}

// q4_k and q5_k: eight sub-blocks of 32 with a weighted (scale, min) search,
// both quantized to 6 bits under the super-block's d and dmin.
static void quantize_k_scale_min(const float *x, uint8_t *y, uint8_t *L, int nmax, float rmin, int nstep) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t *s = y + 4;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = MINI(63, ls);
        lm = MINI(63, lm);
        if (j < 4) { s[j] = ls; s[j + 4] = lm; }
        else {
            s[j + 4] = (uint8_t)((ls & 15) | ((lm & 15) << 4));
            s[j - 4] |= (uint8_t)((ls >> 4) << 6);
            s[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    f2h(y, max_scale / 63.f);
    f2h(y + 2, max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, s, &sc, &m);
        const float d = h2f(y) * (float)sc;
        if (!d) continue;
        const float dm = h2f(y + 2) * (float)m;
        for (int ii = 0; ii < 32; ii++) {
            int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)MAXI(0, MINI(nmax, l));
        }
    }
}

void wren_convert_f32_to_q4_k(const float *src, void *dst, int64_t n) {
    uint8_t *y = dst, L[QK];
    float tmp[QK];
    for (int64_t i = 0; i < n / QK; i++, src += QK, y += 144) {
        memset(y + 4, 0, 12);
        quantize_k_scale_min(finite_block(src, tmp), y, L, 15, -1.f, 20);
        uint8_t *q = y + 16;
        for (int j = 0; j < QK; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

void wren_convert_f32_to_q5_k(const float *src, void *dst, int64_t n) {
    uint8_t *y = dst, L[QK];
    float tmp[QK];
    for (int64_t i = 0; i < n / QK; i++, src += QK, y += 176) {
        memset(y + 4, 0, 12);
        quantize_k_scale_min(finite_block(src, tmp), y, L, 31, -0.5f, 15);
        uint8_t *qh = y + 16, *ql = y + 48;
        memset(qh, 0, 32);
        uint8_t m1 = 1, m2 = 2;
        for (int j = 0; j < QK; j += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int l = 0; l < 32; l++) {
                int l1 = L[j + l], l2 = L[j + l + 32];
                if (l1 > 15) { l1 -= 16; qh[l] |= m1; }
                if (l2 > 15) { l2 -= 16; qh[l] |= m2; }
                ql[l] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

void wren_convert_f32_to_q6_k(const float *src, void *dst, int64_t n) {
    uint8_t *y = dst;
    int8_t L[QK];
    float scales[16], tmp[QK];
    for (int64_t i = 0; i < n / QK; i++, src += QK, y += 210) {
        const float *x = finite_block(src, tmp);
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            float abs_scale = fabsf(scales[ib]);
            if (abs_scale > max_abs_scale) { max_abs_scale = abs_scale; max_scale = scales[ib]; }
        }
        if (max_abs_scale < GROUP_MAX_EPS) { memset(y, 0, 210); continue; }
        float iscale = -128.f / max_scale;
        f2h(y + 208, 1 / iscale);
        int8_t *sc = (int8_t *)(y + 192);
        for (int ib = 0; ib < 16; ib++) sc[ib] = (int8_t)MINI(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < 16; j++) {
            float d = h2f(y + 208) * (float)sc[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(MAXI(-32, MINI(31, l)) + 32);
            }
        }
        uint8_t *ql = y, *qh = y + 128;
        for (int j = 0; j < QK; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                uint8_t q1 = L[j + l] & 15, q2 = L[j + l + 32] & 15, q3 = L[j + l + 64] & 15, q4 = L[j + l + 96] & 15;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}
