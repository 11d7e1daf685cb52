// The numeric ops of the llama forward pass, f32 activations: dot products,
// matrix-vector and matrix-matrix products against weights in any stored
// dtype (dequantized exactly, row by row or tile by tile), RMSNorm, RoPE,
// softmax, SwiGLU. Each optimised loop keeps a naive reference here for tests.

import CBLAS
import CWrenKernels
import Dispatch

/// Sendable wrapper for raw pointers handed to parallel workers.
/// Invariant: workers write disjoint rows, so no two touch the same memory.
public struct SendablePointer<T>: @unchecked Sendable {
    public let p: UnsafeMutablePointer<T>
    public init(_ p: UnsafeMutablePointer<T>) { self.p = p }
}

public struct SendableRawPointer: @unchecked Sendable {
    public let p: UnsafeRawPointer
    public init(_ p: UnsafeRawPointer) { self.p = p }
}

public enum Ops {
    /// Σ a[i]·b[i] over `n` floats, four SIMD8 accumulators.
    @inlinable public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 32 <= n {
            s0 += ra.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            s1 += ra.loadUnaligned(fromByteOffset: 4 * (i + 8), as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: 4 * (i + 8), as: SIMD8<Float>.self)
            s2 += ra.loadUnaligned(fromByteOffset: 4 * (i + 16), as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: 4 * (i + 16), as: SIMD8<Float>.self)
            s3 += ra.loadUnaligned(fromByteOffset: 4 * (i + 24), as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: 4 * (i + 24), as: SIMD8<Float>.self)
            i += 32
        }
        while i + 8 <= n {
            s0 += ra.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        var s = ((s0 + s1) + (s2 + s3)).sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// Reference: plain sequential sum.
    public static func dotNaive(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var s: Float = 0
        for i in 0..<n { s += a[i] * b[i] }
        return s
    }

    /// y[r] = W[r,:] · x for `rows` rows of `n` elements stored as `dtype` at `w`.
    /// Rows are split across `threads` workers in contiguous blocks. f32 activations
    /// against exactly dequantized weights (the exact path): quantized rows use the
    /// fused kernels of CWrenKernels (d·Σq·x + m·Σx per block; f16/bf16 widened
    /// in registers).
    public static func matvec(_ dtype: DType, _ w: UnsafeRawPointer, rows: Int, n: Int, x: UnsafePointer<Float>,
                              y: UnsafeMutablePointer<Float>, threads: Int) {
        matmul(dtype, w, rows: rows, n: n, x: x, tokens: 1, y: y, threads: threads)
    }

    /// Σ over each 32-element block of `x` (n/32 values), for the fused quantized dots.
    static func blockSums(_ x: UnsafePointer<Float>, _ n: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<(n / 32) {
            var s: Float = 0
            for j in 0..<32 { s += x[32 * b + j] }
            out[b] = s
        }
    }

    /// Dot of weight row `r` (in `dtype`) with `x`; `xsum` holds x's block sums, `tmp` n floats of scratch.
    @inline(__always)
    static func rowDot(_ dtype: DType, _ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ xsum: UnsafePointer<Float>,
                       _ n: Int, _ tmp: UnsafeMutablePointer<Float>) -> Float {
        switch dtype {
        case .f32: return dot(row.assumingMemoryBound(to: Float.self), x, n)
        case .q4_1: return wren_dot_q4_1(row, x, xsum, Int32(n / 32))
        case .q4_0: return wren_dot_q4_0(row, x, xsum, Int32(n / 32))
        case .q8_0: return wren_dot_q8_0(row, x, Int32(n / 32))
        case .f16: return wren_dot_f16(row, x, Int32(n))
        case .bf16: return wren_dot_bf16(row, x, Int32(n))
        }
    }

    /// Y[t, r] = W[r,:] · X[t,:] for `tokens` rows of X (Y is tokens × rows).
    /// Each weight row is read once and dotted with every token's input while it
    /// is hot in cache; rows are split across `threads` workers; a worker writes
    /// only its own rows, so results do not depend on the thread count.
    public static func matmul(_ dtype: DType, _ w: UnsafeRawPointer, rows: Int, n: Int, x: UnsafePointer<Float>, tokens: Int,
                              y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>? = nil, threads: Int) {
        let rowBytes = dtype.byteCount(elements: n)!
        let nb = n / 32
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, tokens * nb)) { sums in
            if dtype.isQuantized { for t in 0..<tokens { blockSums(x + t * n, n, sums.baseAddress! + t * nb) } }
            let W = SendableRawPointer(w), X = SendableRawPointer(UnsafeRawPointer(x)), Y = SendablePointer(y)
            let XS = SendableRawPointer(UnsafeRawPointer(sums.baseAddress!))
            let chunks = max(1, min(threads, rows / 16))
            let per = (rows + chunks - 1) / chunks
            let work: @Sendable (Int) -> Void = { c in
                let r0 = c * per, r1 = min(rows, r0 + per)
                guard r0 < r1 else { return }
                let xp = X.p.assumingMemoryBound(to: Float.self), xs = XS.p.assumingMemoryBound(to: Float.self)
                withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { tmp in
                    for r in r0..<r1 {
                        let row = W.p + r * rowBytes
                        for t in 0..<tokens { Y.p[t * rows + r] = rowDot(dtype, row, xp + t * n, xs + t * nb, n, tmp.baseAddress!) }
                    }
                }
            }
            WorkerPool.shared(threads).run(chunks, work)
        }
    }

    /// The same product through OpenBLAS sgemm on W dequantized into `scratch` (≥ rows·n floats).
    public static func matmulBLAS(_ dtype: DType, _ w: UnsafeRawPointer, rows: Int, n: Int, x: UnsafePointer<Float>, tokens: Int,
                                  y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, threads: Int = 1) {
        let wf: UnsafePointer<Float>
        if dtype == .f32 {
            wf = w.assumingMemoryBound(to: Float.self)
        } else {
            let rowBytes = dtype.byteCount(elements: n)!
            let S = SendablePointer(scratch), W = SendableRawPointer(w)
            let chunks = max(1, min(threads, rows / 64))
            let per = (rows + chunks - 1) / chunks
            let work: @Sendable (Int) -> Void = { c in
                let r0 = c * per, r1 = min(rows, r0 + per)
                if r0 < r1 { Quant.dequantize(dtype, W.p + r0 * rowBytes, S.p + r0 * n, count: (r1 - r0) * n) }
            }
            WorkerPool.shared(threads).run(chunks, work)
            wf = UnsafePointer(scratch)
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(rows), Int32(n),
                    1, x, Int32(n), wf, Int32(n), 0, y, Int32(rows))
    }

    /// out = x / sqrt(mean(x²) + eps) · weight, over `n` elements.
    public static func rmsNorm(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, n: Int, eps: Float) {
        var ss: Float = 0
        for i in 0..<n { ss += x[i] * x[i] }
        let scale = 1 / (ss / Float(n) + eps).squareRoot()
        for i in 0..<n { out[i] = x[i] * scale * weight[i] }
    }

    /// In-place softmax over `n` values (max-subtracted).
    public static func softmax(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        var m = -Float.infinity
        for i in 0..<n { m = max(m, x[i]) }
        var s: Float = 0
        for i in 0..<n { x[i] = expf(x[i] - m); s += x[i] }
        let inv = 1 / s
        for i in 0..<n { x[i] *= inv }
    }

    /// gate[i] = silu(gate[i]) · up[i].
    public static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, _ n: Int) {
        for i in 0..<n {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    /// Rotates adjacent pairs (2i, 2i+1) of each head's first `rotary` dims by pos·θ_i
    /// (θ_i = inverse frequency i, precomputed in `invFreq`, rotary/2 values).
    public static func rope(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, rotary: Int, position: Float,
                            invFreq: UnsafePointer<Float>) {
        for i in 0..<(rotary / 2) {
            let angle = position * invFreq[i]
            let c = cosf(angle), s = sinf(angle)
            for h in 0..<heads {
                let p = x + h * headDim + 2 * i
                let a = p[0], b = p[1]
                p[0] = a * c - b * s
                p[1] = a * s + b * c
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
