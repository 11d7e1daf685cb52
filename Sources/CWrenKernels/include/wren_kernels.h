// The innermost loops: the dtype table (per stored type: conversions, row
// dots, matrix products against f32 or 8-bit activations), f16 helpers, the
// attention kernels, softmax and SwiGLU. Swift's SIMD integer-to-float
// conversions do not vectorize here (measured: 1.2 GB/s for a fused q4_1 row
// dot in Swift SIMD, against ~19 GB/s of memory bandwidth), so these loops are
// C with AVX2/FMA/F16C intrinsics, chosen at run time by CPU features, with a
// portable scalar fallback for any other CPU.
#ifndef WREN_KERNELS_H
#define WREN_KERNELS_H
#include <stddef.h>
#include <stdint.h>

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
/// One stored element type's geometry and kernels (after ggml's type_traits):
/// a row per type, the same columns for all. `wren_type` picks the AVX2 row
/// when the CPU has AVX2/FMA/F16C, else the portable one; callers never switch
/// on a type themselves, so a new type is one new row.
typedef struct {
    uint32_t id;              ///< ggml type id (the value stored in .wren and GGUF files)
    const char *name;         ///< "q4_1"
    int block;                ///< elements per block (1 for plain floats)
    int block_bytes;          ///< bytes per block
    /// dst = n elements (a whole number of blocks) widened to f32, exactly.
    void (*to_float)(const void *src, float *dst, int64_t n);
    /// dst = n floats rounded into this type, byte for byte as ggml's reference quantizer.
    void (*from_float)(const float *src, void *dst, int64_t n);
    /// One row of n elements · f32 x. `xsum[b]` = Σ x over block b, for the
    /// types with an offset term (q4_0, q4_1); others ignore it (may be NULL).
    float (*vec_dot)(const void *row, const float *x, const float *xsum, int n);
    /// y[t·ldy + r] = row r · x_t for `rows` rows `row_bytes` apart and `tokens`
    /// f32 inputs of n floats (xsum: n/32 block sums per token). One token is
    /// the row gemv; several share each weight load, and a (row, token) result
    /// never depends on the other tokens.
    void (*gemm)(const void *w, size_t row_bytes, int rows, const float *x, const float *xsum, int n, int tokens,
                 float *y, int ldy);
    /// The same against 8-bit activations from wren_quantize_q8 (qs, d, s token
    /// after token, `blocks` = n/32); NULL for a type without such kernels.
    /// Every implementation computes q8.c's canonical arithmetic (exact integer
    /// block sums, then one fixed sequence of float operations per row and
    /// token), so a result is the same bits on every path and for any number
    /// of tokens: several tokens are prompt tiles on repacked rows, one is the
    /// in-place row gemv.
    void (*gemm_q8)(const void *w, size_t row_bytes, int rows, const int8_t *qs, const float *d, const float *s, int blocks,
                    int tokens, float *y, int ldy);
} wren_type_traits;

/// The row for ggml type id `dtype` on this CPU, or NULL when Wren has no
/// kernels for that type (an unknown type is an error, never a guess).
const wren_type_traits *wren_type(uint32_t dtype);
/// Packs `rows` rows of q4_0, q4_1 or q8_0 (ggml type ids 2, 3, 8) for the eight-row
/// products of 1 to 8 tokens: `out` gets rows × row_bytes bytes. Returns that size, or
/// 0 (nothing written) for another type or rows not a multiple of 8.
size_t wren_pack_rows8(uint32_t type, const void *w, size_t row_bytes, int rows, void *out);
/// y[t·ldy + r] for rows r0 ≤ r < r1 of a packed matrix and 1 to 8 tokens of 8-bit
/// activations (as gemm_q8): the same bits as gemm_q8 over the rows. Returns 0, having
/// done nothing, where the packed kernels do not run (see wren_packed8_runs): the
/// caller then uses the rows themselves.
int wren_gemm_q8_packed8(uint32_t type, const void *packed, int r0, int r1, const int8_t *qs, const float *d, const float *s,
                         int blocks, int tokens, float *y, int ldy);
/// Whether wren_gemm_q8_packed8 runs for `type` with the kernel set in use: every
/// packable type on AVX-512 VNNI, q4_0 and q4_1 on AVX2, none on the portable C.
int wren_packed8_runs(uint32_t type);
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
/// gate[j] = gelu_tanh(gate[j])·up[j] over n floats (GeGLU; gelu_tanh(x) = x·σ(2·√(2/π)·(x + 0.044715·x³))).
void wren_geglu(float *gate, const float *up, int n);
/// Backward of swiglu: dg += dh·u·silu'(g), du += dh·silu(g) (accumulates).
void wren_swiglu_backward(const float *g, const float *u, const float *dh, float *dg, float *du, int n);
/// The kernel set in use: 0 the portable C, 1 AVX2/FMA/F16C, 2 AVX2 plus AVX-512
/// VNNI for the 8-bit products (non-zero: SIMD).
int wren_kernels_simd(void);
/// The kernel set in use: "scalar" (the portable C), "avx2" or "avx512vnni".
const char *wren_kernels_name(void);
/// The best set this CPU runs (0, 1 or 2, as wren_kernels_simd).
int wren_kernels_best(void);
/// Tests: 1 forces the portable scalar kernels, 0 restores detection.
void wren_kernels_force_scalar(int on);
/// Tests: use set `set` (capped by the CPU), or detection again for −1; returns the set in use.
int wren_kernels_force_set(int set);
#endif
