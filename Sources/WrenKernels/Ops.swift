// The numeric ops of the llama forward pass, f32 activations: dot products,
// matrix-vector and matrix-matrix products against weights in any stored
// dtype (dequantized exactly, row by row or tile by tile), RMSNorm, RoPE,
// softmax, SwiGLU. Each optimised loop keeps a naive reference here for tests.

import CBLAS
import Foundation
import CWrenKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

/// How matrix products treat the f32 activations against quantized weights.
public enum Activations: Sendable {
    /// f32 inputs against exactly dequantized weights.
    case f32
    /// Inputs quantized once per product to 8-bit blocks; integer block dots.
    case q8
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

    /// y[r] = W[r,:] · x for `rows` rows of `n` elements stored as `dtype` at `w`
    /// (`matmul` with one token).
    public static func matvec(_ dtype: DType, _ w: UnsafeRawPointer, rows: Int, n: Int, x: UnsafePointer<Float>,
                              y: UnsafeMutablePointer<Float>, threads: Int, activations: Activations = .f32) {
        matmul(dtype, w, rows: rows, n: n, x: x, tokens: 1, y: y, threads: threads, activations: activations)
    }

    /// Σ over each 32-element block of `x` (n/32 values), for the fused quantized dots.
    static func blockSums(_ x: UnsafePointer<Float>, _ n: Int, _ out: UnsafeMutablePointer<Float>) {
        for b in 0..<(n / 32) {
            var s: Float = 0
            for j in 0..<32 { s += x[32 * b + j] }
            out[b] = s
        }
    }

    /// Y[t, r] = W[r,:] · X[t,:] for `tokens` rows of X (Y is tokens × rows).
    /// Each weight row is read once and dotted with every token's input while it
    /// is hot in cache; rows are split across `threads` workers; a worker writes
    /// only its own rows, so results do not depend on the thread count, and a
    /// token's outputs do not depend on the other tokens in the batch.
    ///
    /// `activations: .q8` (for quantized weights) quantizes each token's
    /// input once to 8-bit blocks and uses integer block dots, as llama.cpp
    /// does; `.f32` dots f32 inputs with the exactly dequantized weights.
    public static func matmul(_ dtype: DType, _ w: UnsafeRawPointer, rows: Int, n: Int, x: UnsafePointer<Float>, tokens: Int,
                              y: UnsafeMutablePointer<Float>, threads: Int, activations: Activations = .f32, packed: UnsafeRawPointer? = nil) {
        matmul([MatmulPart(dtype, w, rows: rows, y: y, packed: packed)], n: n, x: x, tokens: tokens, threads: threads, activations: activations)
    }

    /// One weight matrix of a fused product: `rows` × n in `dtype` at `w`, output Y (tokens × rows).
    public struct MatmulPart: @unchecked Sendable {
        public let dtype: DType
        public let w: UnsafeRawPointer
        public let rows: Int
        public let y: UnsafeMutablePointer<Float>
        /// The same rows packed by `wren_pack_rows8` (or nil): 1 to 8 tokens on the 8-bit path read these where the kernel set runs them.
        public let packed: UnsafeRawPointer?
        public init(_ dtype: DType, _ w: UnsafeRawPointer, rows: Int, y: UnsafeMutablePointer<Float>, packed: UnsafeRawPointer? = nil) {
            self.dtype = dtype; self.w = w; self.rows = rows; self.y = y; self.packed = packed
        }
    }

    /// Several products sharing the input X (q/k/v, or gate/up) in one parallel
    /// loop: the input is quantized once, the rows of all parts are split across
    /// the workers together, and the pool is woken once.
    public static func matmul(_ parts: [MatmulPart], n: Int, x: UnsafePointer<Float>, tokens: Int, threads: Int,
                              activations: Activations = .f32) {
        let nb = n / 32
        // Each part's kernels come from its dtype's row of the table; a part takes the
        // 8-bit path when asked and its type has one, else f32 activations (with x's
        // block sums for the block types).
        let types = TypeRows(parts.map { $0.dtype.traits })
        let int8 = activations == .q8 && types.rows.contains { $0.gemm_q8 != nil }
        let sums = types.rows.contains { !(int8 && $0.gemm_q8 != nil) && $0.block > 1 }
        let total = parts.reduce(0) { $0 + $1.rows }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, 2 * tokens * nb)) { sumBuf in
        withUnsafeTemporaryAllocation(of: Int8.self, capacity: int8 ? tokens * n : 1) { qs in
            let xs = sumBuf.baseAddress!, xd = xs + tokens * nb
            if int8 && tokens >= 2 * threads && threads > 1 {
                // A prompt's activations are quantized in parallel, tokens split across the workers.
                let X = SendablePointer(UnsafeMutablePointer(mutating: x)), Q = SendablePointer(qs.baseAddress!)
                let XS = SendablePointer(xs), XD = SendablePointer(xd)
                let per = (tokens + threads - 1) / threads
                WorkerPool.shared(threads).run(threads) { c in
                    for t in (c * per)..<min(tokens, (c + 1) * per) {
                        wren_quantize_q8(X.p + t * n, Q.p + t * n, XD.p + t * nb, XS.p + t * nb, Int32(n))
                    }
                }
            } else if int8 {
                for t in 0..<tokens { wren_quantize_q8(x + t * n, qs.baseAddress! + t * n, xd + t * nb, xs + t * nb, Int32(n)) }
            } else if sums {
                for t in 0..<tokens { blockSums(x + t * n, n, xs + t * nb) }
            }
            let X = SendableRawPointer(UnsafeRawPointer(x))
            let XS = SendablePointer(xs), XD = SendablePointer(xd), QS = SendablePointer(qs.baseAddress!)
            let chunks = max(1, min(threads, total / 16))
            // Packed rows go eight at a time: ranges start on a multiple of 8 where the parts allow.
            let per = ((total + chunks - 1) / chunks + 7) & ~7
            let work: @Sendable (Int) -> Void = { c in
                let g0 = c * per, g1 = min(total, g0 + per)
                guard g0 < g1 else { return }
                let xp = X.p.assumingMemoryBound(to: Float.self)
                var base = 0
                for (part, type) in zip(parts, types.rows) {
                    defer { base += part.rows }
                    let r0 = max(g0 - base, 0), r1 = min(g1 - base, part.rows)
                    guard r0 < r1 else { continue }
                    let rows = part.rows, y = part.y
                    if int8, tokens <= 8, let packed = part.packed,
                       wren_gemm_q8_packed8(part.dtype.rawValue, packed, Int32(r0), Int32(r1), QS.p, XD.p, XS.p, Int32(nb), Int32(tokens),
                                            y, Int32(rows)) != 0 { continue }
                    let rowBytes = n / Int(type.block) * Int(type.block_bytes)
                    // Several tokens: tiles of 64 rows stay in cache while every token
                    // passes over them (a row's result does not depend on the tiling).
                    // Up to eight tokens on the 8-bit path take one pass over the rows
                    // anyway, so they get the worker's whole range in one call.
                    let onePass = tokens == 1 || (int8 && type.gemm_q8 != nil && tokens <= 8)
                    let tile = onePass ? r1 - r0 : 64
                    for a in stride(from: r0, to: r1, by: tile) {
                        let b = min(r1, a + tile), w = part.w + a * rowBytes
                        if int8, let gemm = type.gemm_q8 {
                            gemm(w, rowBytes, Int32(b - a), QS.p, XD.p, XS.p, Int32(nb), Int32(tokens), y + a, Int32(rows))
                        } else {
                            type.gemm(w, rowBytes, Int32(b - a), xp, sums ? XS.p : nil, Int32(n), Int32(tokens), y + a, Int32(rows))
                        }
                    }
                }
            }
            WorkerPool.shared(threads).run(chunks, work)
        }
        }
    }

    /// Rows of the dtype table handed to the workers (read-only C structs of
    /// function pointers and constants).
    struct TypeRows: @unchecked Sendable {
        let rows: [wren_type_traits]
        init(_ rows: [wren_type_traits]) { self.rows = rows }
    }

    /// Floats of the dequantization scratch a session gives `matmulBLAS` (4 MB, the
    /// last-level cache's share of a core or more): rows are widened at most this
    /// much at a time, so the scratch no longer grows with the largest matrix (a
    /// 7B model's FFN matrix would take 180 MB).
    public static let blasTileFloats = 1 << 20

    /// The same product through OpenBLAS sgemm (f32 weights in place; other types
    /// widened `scratchFloats / n` rows at a time into `scratch`, each tile multiplied
    /// while it is in cache). For float weights on the prompt path and `--exact`.
    public static func matmulBLAS(_ dtype: DType, _ w: UnsafeRawPointer, rows: Int, n: Int, x: UnsafePointer<Float>, tokens: Int,
                                  y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, scratchFloats: Int = blasTileFloats,
                                  threads: Int = 1) {
        if dtype == .f32 {
            let chunks = max(1, min(threads, rows / 16)), per = (rows + chunks - 1) / chunks
            let X = SendablePointer(UnsafeMutablePointer(mutating: x)), Y = SendablePointer(y)
            let W = SendablePointer(UnsafeMutablePointer(mutating: w.assumingMemoryBound(to: Float.self)))
            WorkerPool.shared(threads).run(chunks) { c in
                let r0 = c * per, r1 = min(rows, r0 + per)
                guard r0 < r1 else { return }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(r1 - r0), Int32(n),
                            1, X.p, Int32(n), W.p + r0 * n, Int32(n), 0, Y.p + r0, Int32(rows))
            }
            return
        }
        precondition(scratchFloats >= n, "the scratch must hold a row")
        let rowBytes = dtype.byteCount(elements: n)!
        let tile = min(rows, scratchFloats / n)
        let S = SendablePointer(scratch), W = SendableRawPointer(w)
        let X = SendablePointer(UnsafeMutablePointer(mutating: x)), Y = SendablePointer(y)
        for t0 in stride(from: 0, to: rows, by: tile) {
            let t1 = min(rows, t0 + tile), count = t1 - t0
            let chunks = max(1, min(threads, count / 16))
            let per = (count + chunks - 1) / chunks
            // Each worker widens its rows and multiplies them (its own output columns):
            // OpenBLAS runs single-threaded inside the pool (InferenceSession sets it so).
            WorkerPool.shared(threads).run(chunks) { c in
                let r0 = t0 + c * per, r1 = min(t1, r0 + per)
                guard r0 < r1 else { return }
                Quant.dequantize(dtype, W.p + r0 * rowBytes, S.p + (r0 - t0) * n, count: (r1 - r0) * n)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(r1 - r0), Int32(n),
                            1, X.p, Int32(n), S.p + (r0 - t0) * n, Int32(n), 0, Y.p + r0, Int32(rows))
            }
        }
    }

    /// In-place softmax over `n` values (max-subtracted; CWrenKernels, vectorised exp).
    public static func softmax(_ x: UnsafeMutablePointer<Float>, _ n: Int) { wren_softmax(x, Int32(n)) }

    /// Naive references for the tests.
    public static func softmaxNaive(_ x: inout [Double]) {
        let m = x.max() ?? 0
        x = x.map { Foundation.exp($0 - m) }
        let s = x.reduce(0, +)
        x = x.map { $0 / s }
    }

    // MARK: the element-wise ops of a block, each forward beside its backward
    // (the training backward adds into the gradients it is given). Rows are
    // tokens; each row's result depends on that row alone, so splitting rows
    // across threads never changes a bit.

    /// out = x / sqrt(mean(x²) + eps) · weight, over `n` elements.
    public static func rmsNorm(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, n: Int, eps: Float) {
        var ss: Float = 0
        for i in 0..<n { ss += x[i] * x[i] }
        let scale = 1 / (ss / Float(n) + eps).squareRoot()
        for i in 0..<n { out[i] = x[i] * scale * weight[i] }
    }

    /// `rows` rows of `n`: out[t] = RMSNorm(x[t]) · weight, rows split across the pool.
    public static func rmsNorm(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, rows: Int, n: Int,
                               eps: Float, threads: Int) {
        let X = SendableRawPointer(x), W = SendableRawPointer(weight), Y = SendablePointer(out)
        WorkerPool.shared(threads).forEachRow(rows) { t in
            rmsNorm(X.p.assumingMemoryBound(to: Float.self) + t * n, W.p.assumingMemoryBound(to: Float.self), Y.p + t * n, n: n, eps: eps)
        }
    }

    /// Backward of `rmsNorm(rows:)`, r = 1/√(mean(x²) + eps):
    /// dx += r·(w⊙dy) − x·r³/n·Σ(x⊙w⊙dy); dw (optional) += Σ_t dy⊙x·r.
    public static func rmsNormBackward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                       dx: UnsafeMutablePointer<Float>, dw: UnsafeMutablePointer<Float>?, rows T: Int, n: Int, eps: Float,
                                       threads: Int) {
        let X = SendableRawPointer(x), W = SendableRawPointer(w), DY = SendableRawPointer(dy), DX = SendablePointer(dx)
        WorkerPool.shared(threads).forEachRow(T) { t in
            let xr = X.p.assumingMemoryBound(to: Float.self) + t * n, wr = W.p.assumingMemoryBound(to: Float.self)
            let g = DY.p.assumingMemoryBound(to: Float.self) + t * n, d = DX.p + t * n
            var ss: Float = 0, dot: Float = 0
            for i in 0..<n { ss += xr[i] * xr[i]; dot += xr[i] * wr[i] * g[i] }
            let r = 1 / (ss / Float(n) + eps).squareRoot()
            let c = r * r * r / Float(n) * dot
            for i in 0..<n { d[i] += r * wr[i] * g[i] - c * xr[i] }
        }
        if let dw {
            for t in 0..<T {
                let xr = x + t * n, g = dy + t * n
                var ss: Float = 0
                for i in 0..<n { ss += xr[i] * xr[i] }
                let r = 1 / (ss / Float(n) + eps).squareRoot()
                for i in 0..<n { dw[i] += g[i] * xr[i] * r }
            }
        }
    }

    /// cos and sin of pos·θ_i for one position, interleaved (rotary floats): computed
    /// once per token and shared by q, k and every layer.
    public static func ropeTable(position: Float, rotary: Int, invFreq: UnsafePointer<Float>, into t: UnsafeMutablePointer<Float>) {
        for i in 0..<(rotary / 2) {
            let angle = position * invFreq[i]
            t[2 * i] = cosf(angle)
            t[2 * i + 1] = sinf(angle)
        }
    }

    /// Rotates adjacent pairs (2i, 2i+1) of each head's first `rotary` dims by pos·θ_i,
    /// with cos/sin from `ropeTable` (the GGUF/llama.cpp pairing, not rotate-half).
    public static func rope(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, rotary: Int, table: UnsafePointer<Float>) {
        for h in 0..<heads {
            let p = x + h * headDim
            for i in 0..<(rotary / 2) {
                let c = table[2 * i], s = table[2 * i + 1]
                let a = p[2 * i], b = p[2 * i + 1]
                p[2 * i] = a * c - b * s
                p[2 * i + 1] = a * s + b * c
            }
        }
    }
    /// `rows` rows of `heads` heads: row t rotated by its table (`tables` + t·rotary).
    public static func rope(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rotary: Int, tables: UnsafePointer<Float>) {
        for t in 0..<rows { rope(x + t * heads * headDim, heads: heads, headDim: headDim, rotary: rotary, table: tables + t * rotary) }
    }

    /// Backward of `rope(rows:)`: the transpose of each rotation (by −angle), in place on the gradient.
    public static func ropeBackward(_ dx: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rotary: Int,
                                    tables: UnsafePointer<Float>) {
        for t in 0..<rows {
            let tab = tables + t * rotary
            for h in 0..<heads {
                let p = dx + t * heads * headDim + h * headDim
                for i in 0..<(rotary / 2) {
                    let c = tab[2 * i], s = tab[2 * i + 1]
                    let a = p[2 * i], b = p[2 * i + 1]
                    p[2 * i] = a * c + b * s
                    p[2 * i + 1] = -a * s + b * c
                }
            }
        }
    }

    /// gate[i] = silu(gate[i]) · up[i] (CWrenKernels, vectorised exp).
    public static func swiglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, _ n: Int) {
        wren_swiglu(gate, up, Int32(n))
    }

    /// gate = gelu_tanh(gate)·up (GeGLU, Gemma's feed-forward), n floats.
    public static func geglu(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, _ n: Int) {
        wren_geglu(gate, up, Int32(n))
    }

    /// Backward of `swiglu` (g, u its inputs): dg += dh·u·silu'(g), du += dh·silu(g),
    /// silu'(g) = σ(g)·(1 + g·(1 − σ(g))); chunks of 8192 across the pool.
    public static func swigluBackward(_ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, dh: UnsafePointer<Float>,
                                      dg: UnsafeMutablePointer<Float>, du: UnsafeMutablePointer<Float>, n: Int, threads: Int) {
        let G = SendableRawPointer(g), U = SendableRawPointer(u), DH = SendableRawPointer(dh), DG = SendablePointer(dg), DU = SendablePointer(du)
        let chunk = 8192
        WorkerPool.shared(threads).run((n + chunk - 1) / chunk) { c in
            let i = c * chunk, m = min(n, i + chunk) - i
            wren_swiglu_backward(G.p.assumingMemoryBound(to: Float.self) + i, U.p.assumingMemoryBound(to: Float.self) + i,
                                 DH.p.assumingMemoryBound(to: Float.self) + i, DG.p + i, DU.p + i, Int32(m))
        }
    }
}
