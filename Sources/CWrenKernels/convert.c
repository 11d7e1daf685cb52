// Scalar conversions between floats and each stored type (the to_float and
// from_float columns of the dtype table in kernels.c). Layouts and rounding
// follow ggml's quantize_row_*_ref / dequantize_row_* so the bytes equal
// GGUF's:
//   q8_0: f16 d, int8 q[32];        x = d·q,        d = amax/127
//   q4_0: f16 d, u8 nib[16];        x = d·(q − 8),  d = max/−8 (max: the signed value of the largest |x|)
//   q4_1: f16 d, f16 m, u8 nib[16]; x = d·q + m,    d = (max−min)/15, m = min
//   q5_0: f16 d, u32 qh, u8 nib[16];        x = d·(q − 16), d = max/−16
//   q5_1: f16 d, f16 m, u32 qh, u8 nib[16]; x = d·q + m,    d = (max−min)/31, m = min
//   (5-bit q: the nibble, plus bit j of qh as bit 4 of element j)
// For the 4-bit types, element j sits in the low nibble of byte j and element
// j+16 in the high nibble. NaN never traps: it quantizes to 0.
// FP_CONTRACT OFF: no a·b+c is fused into one rounding, on any target, so the
// bytes are the reference's everywhere.
#pragma STDC FP_CONTRACT OFF
#include "kernels_common.h"

void wren_convert_f32_to_f16_scalar(const float *src, void *dst, int64_t n) {
    uint8_t *d = dst;
    for (int64_t j = 0; j < n; j++) { uint16_t h = f32_to_f16_scalar(src[j]); memcpy(d + 2 * j, &h, 2); }
}

void wren_convert_f16_to_f32_scalar(const void *src, float *dst, int64_t n) {
    const uint8_t *r = src;
    for (int64_t j = 0; j < n; j++) dst[j] = f16_to_f32_scalar(load_u16(r + 2 * j));
}

// bf16: round to nearest even; a NaN stays a (quiet) NaN, as ggml's fp32_to_bf16.
void wren_convert_f32_to_bf16(const float *src, void *dst, int64_t n) {
    uint8_t *d = dst;
    for (int64_t j = 0; j < n; j++) {
        uint32_t u; memcpy(&u, src + j, 4);
        uint16_t h = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 64) : (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
        memcpy(d + 2 * j, &h, 2);
    }
}

void wren_convert_bf16_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *r = src;
    for (int64_t j = 0; j < n; j++) { uint32_t bits = (uint32_t)load_u16(r + 2 * j) << 16; memcpy(dst + j, &bits, 4); }
}

static void store_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

// C's MIN(hi, (uint8_t)v) for v ≥ 0, made total for NaN and negatives.
static uint8_t trunc_clamp(float v, float hi) { return v > 0 ? (uint8_t)truncf(v < hi ? v : hi) : 0; }

void wren_convert_f32_to_q8_0(const float *src, void *dst, int64_t n) {
    uint8_t *y = dst;
    for (int64_t b = 0; b < n / 32; b++, src += 32, y += 34) {
        float amax = 0;
        for (int j = 0; j < 32; j++) { float a = fabsf(src[j]); if (a >= amax) amax = a; }
        float d = amax / 127, id = d != 0 ? 1 / d : 0;
        store_u16(y, f32_to_f16_scalar(d));
        for (int j = 0; j < 32; j++) {
            float v = roundf(src[j] * id);   // half away from zero
            y[2 + j] = (uint8_t)(int8_t)(v != v ? 0 : v < -128 ? -128 : v > 127 ? 127 : v);
        }
    }
}

void wren_convert_q8_0_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *x = src;
    for (int64_t b = 0; b < n / 32; b++, x += 34, dst += 32) {
        float d = f16_to_f32_scalar(load_u16(x));
        for (int j = 0; j < 32; j++) dst[j] = (float)(int8_t)x[2 + j] * d;
    }
}

void wren_convert_f32_to_q4_0(const float *src, void *dst, int64_t n) {
    uint8_t *y = dst;
    for (int64_t b = 0; b < n / 32; b++, src += 32, y += 18) {
        float amax = 0, maxv = 0;
        for (int j = 0; j < 32; j++) if (amax < fabsf(src[j])) { amax = fabsf(src[j]); maxv = src[j]; }
        float d = maxv / -8, id = d != 0 ? 1 / d : 0;
        store_u16(y, f32_to_f16_scalar(d));
        for (int j = 0; j < 16; j++)
            y[2 + j] = (uint8_t)(trunc_clamp(src[j] * id + 8.5f, 15) | (trunc_clamp(src[j + 16] * id + 8.5f, 15) << 4));
    }
}

void wren_convert_q4_0_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *x = src;
    for (int64_t b = 0; b < n / 32; b++, x += 18, dst += 32) {
        float d = f16_to_f32_scalar(load_u16(x));
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((x[2 + j] & 15) - 8) * d;
            dst[j + 16] = (float)((x[2 + j] >> 4) - 8) * d;
        }
    }
}

void wren_convert_f32_to_q4_1(const float *src, void *dst, int64_t n) {
    uint8_t *y = dst;
    for (int64_t b = 0; b < n / 32; b++, src += 32, y += 20) {
        float lo = 3.40282347e+38f, hi = -3.40282347e+38f;
        for (int j = 0; j < 32; j++) { if (src[j] < lo) lo = src[j]; if (src[j] > hi) hi = src[j]; }
        float d = (hi - lo) / 15, id = d != 0 ? 1 / d : 0;
        store_u16(y, f32_to_f16_scalar(d));
        store_u16(y + 2, f32_to_f16_scalar(lo));
        for (int j = 0; j < 16; j++)
            y[4 + j] = (uint8_t)(trunc_clamp((src[j] - lo) * id + 0.5f, 15) | (trunc_clamp((src[j + 16] - lo) * id + 0.5f, 15) << 4));
    }
}

void wren_convert_q4_1_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *x = src;
    for (int64_t b = 0; b < n / 32; b++, x += 20, dst += 32) {
        float d = f16_to_f32_scalar(load_u16(x)), m = f16_to_f32_scalar(load_u16(x + 2));
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)(x[4 + j] & 15) * d + m;
            dst[j + 16] = (float)(x[4 + j] >> 4) * d + m;
        }
    }
}

// The 5-bit types: nibbles as in q4_*, the fifth bits gathered in qh.
static void store_q5(const uint8_t q[32], uint8_t *qh, uint8_t *qs) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4));
    for (int j = 0; j < 32; j++) h |= (uint32_t)(q[j] >> 4) << j;
    memcpy(qh, &h, 4);
}

static void load_q5(const uint8_t *qh, const uint8_t *qs, uint8_t q[32]) {
    uint32_t h; memcpy(&h, qh, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (uint8_t)((qs[j] & 15) | ((h >> j) & 1) << 4);
        q[j + 16] = (uint8_t)((qs[j] >> 4) | ((h >> (j + 16)) & 1) << 4);
    }
}

void wren_convert_f32_to_q5_0(const float *src, void *dst, int64_t n) {
    uint8_t *y = dst, q[32];
    for (int64_t b = 0; b < n / 32; b++, src += 32, y += 22) {
        float amax = 0, maxv = 0;
        for (int j = 0; j < 32; j++) if (amax < fabsf(src[j])) { amax = fabsf(src[j]); maxv = src[j]; }
        float d = maxv / -16, id = d != 0 ? 1 / d : 0;
        store_u16(y, f32_to_f16_scalar(d));
        for (int j = 0; j < 32; j++) q[j] = trunc_clamp(src[j] * id + 16.5f, 31);
        store_q5(q, y + 2, y + 6);
    }
}

void wren_convert_q5_0_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *x = src;
    uint8_t q[32];
    for (int64_t b = 0; b < n / 32; b++, x += 22, dst += 32) {
        float d = f16_to_f32_scalar(load_u16(x));
        load_q5(x + 2, x + 6, q);
        for (int j = 0; j < 32; j++) dst[j] = d * (float)((int)q[j] - 16);
    }
}

void wren_convert_f32_to_q5_1(const float *src, void *dst, int64_t n) {
    uint8_t *y = dst, q[32];
    for (int64_t b = 0; b < n / 32; b++, src += 32, y += 24) {
        float lo = 3.40282347e+38f, hi = -3.40282347e+38f;
        for (int j = 0; j < 32; j++) { if (src[j] < lo) lo = src[j]; if (src[j] > hi) hi = src[j]; }
        float d = (hi - lo) / 31, id = d != 0 ? 1 / d : 0;
        store_u16(y, f32_to_f16_scalar(d));
        store_u16(y + 2, f32_to_f16_scalar(lo));
        for (int j = 0; j < 32; j++) q[j] = trunc_clamp((src[j] - lo) * id + 0.5f, 31);
        store_q5(q, y + 4, y + 8);
    }
}

void wren_convert_q5_1_to_f32(const void *src, float *dst, int64_t n) {
    const uint8_t *x = src;
    uint8_t q[32];
    for (int64_t b = 0; b < n / 32; b++, x += 24, dst += 32) {
        float d = f16_to_f32_scalar(load_u16(x)), m = f16_to_f32_scalar(load_u16(x + 2));
        load_q5(x + 4, x + 8, q);
        for (int j = 0; j < 32; j++) dst[j] = d * (float)q[j] + m;
    }
}
