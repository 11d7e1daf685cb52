// Innermost dot products of quantized weight rows with f32 activations.
// Swift's SIMD integer-to-float conversions do not vectorize here (measured:
// 1.2 GB/s for a fused q4_1 row dot in Swift SIMD, against ~19 GB/s of memory
// bandwidth), so these few loops are C with AVX2/FMA intrinsics, chosen at run
// time by CPU features, with a portable scalar fallback for any other CPU.
#ifndef WREN_KERNELS_H
#define WREN_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Σ_j w[j]·x[j] for one q4_1 row of `blocks` 32-element blocks (20 bytes each).
/// `xsum[b]` = Σ of x over block b (the q4_1 minimum m multiplies it).
float wren_dot_q4_1(const void *row, const float *x, const float *xsum, int blocks);
/// Same for q4_0 (18-byte blocks, w = d·(q − 8)).
float wren_dot_q4_0(const void *row, const float *x, const float *xsum, int blocks);
/// Same for q8_0 (34-byte blocks, w = d·q); `xsum` unused.
float wren_dot_q8_0(const void *row, const float *x, int blocks);
/// Σ f16(row[j])·x[j] over n elements (n a multiple of 8 takes the SIMD path).
float wren_dot_f16(const void *row, const float *x, int n);
/// Σ bf16(row[j])·x[j] over n elements.
float wren_dot_bf16(const void *row, const float *x, int n);
/// dst[j] = f16(src[j]) widened to f32, n elements.
void wren_f16_to_f32(const void *src, float *dst, int n);
/// dst[j] = f16(src[j]) rounded to nearest even, n elements.
void wren_f32_to_f16(const float *src, void *dst, int n);
/// out[j] += a · f16(v[j]), n elements.
void wren_axpy_f16(float a, const void *v, float *out, int n);
/// Quantizes n floats (a multiple of 32) to 8-bit blocks, once per matmul:
/// qs[j] = round(x[j]/d[b]) with d[b] = max|x| over block b / 127, and
/// s[b] = d[b]·Σ qs over the block (the scheme of llama.cpp's q8_1).
void wren_quantize_q8(const float *x, int8_t *qs, float *d, float *s, int n);
/// y[r] = row r · activation for `rows` consecutive rows `row_bytes` apart, of
/// ggml type `dtype` (2 = q4_0, 3 = q4_1, 8 = q8_0), four rows at a time with
/// software prefetch of the rows ahead. Returns 0, or -1 for any other dtype
/// (nothing written: an unknown type is an error, never a guess).
int wren_gemv_q8(int dtype, const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s,
                 int blocks, float *y);
/// The same for `tokens` activations (qs, d, s laid out token after token);
/// y[t·ldy + r]. Tokens go two at a time (weights unpacked once per pair), each
/// result bit for bit equal to wren_gemv_q8 on that token alone.
int wren_gemm_q8(int dtype, const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s,
                 int blocks, int tokens, float *y, int ldy);
/// y[r] = f16 row r · x (f32) for `rows` rows `row_bytes` apart.
void wren_gemv_f16(const void *w, size_t row_bytes, int rows, const float *x, int n, float *y);
/// The same for `tokens` inputs (x token after token), y[t·ldy + r]; two tokens
/// at a time, each result bit for bit equal to wren_gemv_f16 on that token alone.
void wren_gemm_f16(const void *w, size_t row_bytes, int rows, const float *x, int n, int tokens, float *y, int ldy);
/// f32 rows: y[t·ldy + r] = row r · x_t, four rows and two tokens at a time, each
/// result independent of how tokens are grouped.
void wren_gemm_f32(const float *w, int rows, const float *x, int n, int tokens, float *y, int ldy);
/// Causal attention of one query head over n cached positions of an f16 cache:
/// out = softmax(scale·q·k_p) · v_p, keys in blocks of 64 with a running
/// maximum and sum (online softmax). k and v point at the head's first
/// position; consecutive positions are `stride` bytes apart.
void wren_attend_f16(const float *q, const void *k, const void *v, size_t stride, int n, int hd, float scale, float *out);
/// Same over a q8_0 cache (each position's head is hd/32 q8_0 blocks; hd a multiple of 32).
void wren_attend_q8_0(const float *q, const void *k, const void *v, size_t stride, int n, int hd, float scale, float *out);
/// In-place softmax over n floats (max-subtracted; vectorised exp on AVX2).
void wren_softmax(float *x, int n);
/// gate[j] = silu(gate[j])·up[j] over n floats.
void wren_swiglu(float *gate, const float *up, int n);
/// Backward of swiglu: dg += dh·u·silu'(g), du += dh·silu(g) (accumulates).
void wren_swiglu_backward(const float *g, const float *u, const float *dh, float *dg, float *du, int n);
/// 1 when the AVX2/FMA/F16C kernels are in use.
int wren_kernels_simd(void);
/// Tests: 1 forces the portable scalar kernels, 0 restores detection.
void wren_kernels_force_scalar(int on);
#endif
