// Forward and backward of each op of the llama forward pass, for training,
// side by side (in the manner of llm.c): RMSNorm, RoPE, SwiGLU, products
// against a frozen weight in any stored dtype, and cross-entropy with an
// ignore label. Causal GQA attention, forward and backward, is in
// WrenKernels/Attention.swift, shared with the engine. Activations are f32, row-major, one row
// per token; every backward *adds* into the input gradients it is given, so
// branches that share an input (q/k/v, gate/up, residuals) sum naturally.
// Products go through OpenBLAS sgemm; frozen quantized weights are expanded
// a tile of rows at a time into a scratch buffer, never as a whole.

import CBLAS
import CWrenKernels
import Foundation
import WrenEngine
import WrenKernels

/// Label of a position that takes no part in the loss (as in PyTorch/HF).
public let ignoreLabel: Int32 = -100

enum Layers {
    /// cblas_sgemm (row-major) split across the worker pool along M or N (the larger),
    /// each part a single-threaded OpenBLAS call: no OpenBLAS threads spin between
    /// products while the pool runs the element-wise ops.
    static func sgemm(_ ta: CBLAS_TRANSPOSE, _ tb: CBLAS_TRANSPOSE, _ M: Int, _ N: Int, _ K: Int, _ alpha: Float,
                      _ A: UnsafePointer<Float>, _ lda: Int, _ B: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
                      _ C: UnsafeMutablePointer<Float>, _ ldc: Int, threads: Int) {
        let splitM = M >= N
        let D = splitM ? M : N
        let parts = max(1, min(threads, D / 32, (M * N * K) / 2_000_000))
        if parts == 1 {
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(M), Int32(N), Int32(K), alpha, A, Int32(lda), B, Int32(ldb), beta, C, Int32(ldc))
            return
        }
        let per = (D + parts - 1) / parts
        let AP = SendableRawPointer(A), BP = SendableRawPointer(B), CP = SendablePointer(C)
        WorkerPool.shared(threads).run(parts) { p in
            let d0 = p * per, d1 = min(D, d0 + per)
            guard d0 < d1 else { return }
            var a = AP.p.assumingMemoryBound(to: Float.self), b = BP.p.assumingMemoryBound(to: Float.self), c = CP.p
            var m = M, n = N
            if splitM {
                a += ta == CblasNoTrans ? d0 * lda : d0
                c += d0 * ldc
                m = d1 - d0
            } else {
                b += tb == CblasNoTrans ? d0 : d0 * ldb
                c += d0
                n = d1 - d0
            }
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(K), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        }
    }

    // MARK: products with a weight W (rows × cols in any dtype): Y = X·Wᵀ

    /// y (T × rows) = x (T × cols) · Wᵀ, plus `beta`·y.
    static func linearForward(_ w: WeightMatrix, x: UnsafePointer<Float>, T: Int, y: UnsafeMutablePointer<Float>, beta: Float = 0,
                              scratch: Scratch, threads: Int) {
        forEachTile(w, scratch: scratch, threads: threads) { r0, n, tile in
            sgemm(CblasNoTrans, CblasTrans, T, n, w.cols, 1, x, w.cols, tile, w.cols, beta, y + r0, w.rows, threads: threads)
        }
    }

    /// dx (T × cols) += dy (T × rows) · W.
    static func linearBackwardInput(_ w: WeightMatrix, dy: UnsafePointer<Float>, T: Int, dx: UnsafeMutablePointer<Float>,
                                    scratch: Scratch, threads: Int) {
        forEachTile(w, scratch: scratch, threads: threads) { r0, n, tile in
            sgemm(CblasNoTrans, CblasNoTrans, T, w.cols, n, 1, dy + r0, w.rows, tile, w.cols, 1, dx, w.cols, threads: threads)
        }
    }

    /// dW (rows × cols) += dyᵀ · x.
    static func linearBackwardWeight(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, T: Int, rows: Int, cols: Int,
                                     dw: UnsafeMutablePointer<Float>, threads: Int) {
        sgemm(CblasTrans, CblasNoTrans, rows, cols, T, 1, dy, rows, x, cols, 1, dw, cols, threads: threads)
    }

    /// Calls `body(firstRow, rowCount, f32 rows)` over W: the whole matrix when it
    /// is f32, else tiles of rows dequantized into `scratch` (in parallel).
    static func forEachTile(_ w: WeightMatrix, scratch: Scratch, threads: Int,
                            _ body: (Int, Int, UnsafePointer<Float>) -> Void) {
        if w.dtype == .f32 {
            body(0, w.rows, w.data.assumingMemoryBound(to: Float.self))
            return
        }
        let rowBytes = w.dtype.byteCount(elements: w.cols)!
        let tileRows = max(1, min(w.rows, scratch.weightTile / w.cols))
        var r0 = 0
        while r0 < w.rows {
            let n = min(tileRows, w.rows - r0)
            let S = SendablePointer(scratch.tile), W = SendableRawPointer(w.data + r0 * rowBytes)
            let cols = w.cols, dtype = w.dtype
            let chunks = max(1, min(threads, n / 32))
            let per = (n + chunks - 1) / chunks
            WorkerPool.shared(threads).run(chunks) { c in
                let a = c * per, b = min(n, a + per)
                if a < b { Quant.dequantize(dtype, W.p + a * rowBytes, S.p + a * cols, count: (b - a) * cols) }
            }
            body(r0, n, scratch.tile)
            r0 += n
        }
    }

    // MARK: RMSNorm: y = x·r·w, r = 1/√(mean(x²) + eps)

    static func rmsNormForward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, T: Int, n: Int,
                               eps: Float, threads: Int) {
        let X = SendableRawPointer(x), W = SendableRawPointer(w), Y = SendablePointer(y)
        parallelRows(T, threads) { t in
            Ops.rmsNorm(X.p.assumingMemoryBound(to: Float.self) + t * n, W.p.assumingMemoryBound(to: Float.self), Y.p + t * n, n: n, eps: eps)
        }
    }

    /// dx += r·(w⊙dy) − x·r³/n·Σ(x⊙w⊙dy); dw (optional) += Σ_t dy⊙x·r.
    static func rmsNormBackward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                                dw: UnsafeMutablePointer<Float>?, T: Int, n: Int, eps: Float, threads: Int) {
        let X = SendableRawPointer(x), W = SendableRawPointer(w), DY = SendableRawPointer(dy), DX = SendablePointer(dx)
        parallelRows(T, threads) { t in
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

    // MARK: RoPE (adjacent pairs, the engine's layout); position of row t is t mod L

    /// Rotates each row's heads in place by the table of its position (`tables`: L × rotary).
    static func ropeForward(_ x: UnsafeMutablePointer<Float>, T: Int, L: Int, heads: Int, headDim: Int, rotary: Int,
                            tables: UnsafePointer<Float>) {
        for t in 0..<T {
            Ops.rope(x + t * heads * headDim, heads: heads, headDim: headDim, rotary: rotary, table: tables + (t % L) * rotary)
        }
    }

    /// The transpose of the rotation: rotates the gradient by −angle, in place.
    static func ropeBackward(_ dx: UnsafeMutablePointer<Float>, T: Int, L: Int, heads: Int, headDim: Int, rotary: Int,
                             tables: UnsafePointer<Float>) {
        for t in 0..<T {
            let tab = tables + (t % L) * rotary
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

    // MARK: SwiGLU: h = silu(g)·u

    static func swigluForward(_ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, _ h: UnsafeMutablePointer<Float>, n: Int) {
        h.update(from: g, count: n)
        Ops.swiglu(h, u, n)
    }

    /// dg += dh·u·silu'(g), du += dh·silu(g); silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
    static func swigluBackward(_ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, dh: UnsafePointer<Float>,
                               dg: UnsafeMutablePointer<Float>, du: UnsafeMutablePointer<Float>, n: Int, threads: Int) {
        let G = SendableRawPointer(g), U = SendableRawPointer(u), DH = SendableRawPointer(dh), DG = SendablePointer(dg), DU = SendablePointer(du)
        let chunk = 8192
        WorkerPool.shared(threads).run((n + chunk - 1) / chunk) { c in
            let i = c * chunk, m = min(n, i + chunk) - i
            wren_swiglu_backward(G.p.assumingMemoryBound(to: Float.self) + i, U.p.assumingMemoryBound(to: Float.self) + i,
                                 DH.p.assumingMemoryBound(to: Float.self) + i, DG.p + i, DU.p + i, Int32(m))
        }
    }

    // MARK: cross-entropy

    /// For each of `n` rows of logits (vocab wide) with label `labels[i]` (never the
    /// ignore label here): returns Σ (logsumexp − logit[label]) in Double and
    /// overwrites the logits with `gradScale`·(softmax − onehot) when `backward`.
    static func crossEntropy(_ logits: UnsafeMutablePointer<Float>, labels: UnsafePointer<Int32>, n: Int, vocab: Int, gradScale: Float,
                             backward: Bool, threads: Int) -> Double {
        var losses = [Double](repeating: 0, count: n)
        losses.withUnsafeMutableBufferPointer { lb in
            let Lg = SendablePointer(logits), Lb = SendableRawPointer(labels), Out = SendablePointer(lb.baseAddress!)
            parallelRows(n, threads) { i in
                let row = Lg.p + i * vocab
                let label = Int(Lb.p.assumingMemoryBound(to: Int32.self)[i])
                if backward {
                    // softmax in place (vectorised exp); loss = −log p[label].
                    Ops.softmax(row, vocab)
                    Out.p[i] = -Foundation.log(max(Double(row[label]), Double(Float.leastNonzeroMagnitude)))
                    for j in 0..<vocab { row[j] *= gradScale }
                    row[label] -= gradScale
                } else {
                    var m = -Float.infinity
                    for j in 0..<vocab { m = max(m, row[j]) }
                    var s: Double = 0
                    for j in 0..<vocab { s += Double(expf(row[j] - m)) }
                    Out.p[i] = Double(m) + Foundation.log(s) - Double(row[label])
                }
            }
        }
        return losses.reduce(0, +)
    }

    /// Runs `body(row)` for rows 0..<n across the pool in contiguous chunks.
    static func parallelRows(_ n: Int, _ threads: Int, _ body: @escaping @Sendable (Int) -> Void) {
        guard n > 0 else { return }
        let chunks = max(1, min(threads * 4, n))
        let per = (n + chunks - 1) / chunks
        WorkerPool.shared(threads).run(chunks) { c in
            var i = c * per
            while i < min(n, (c + 1) * per) { body(i); i += 1 }
        }
    }
}

/// Scratch memory shared by the ops of one trainer.
final class Scratch: @unchecked Sendable {
    /// Floats in `tile` (dequantized weight rows).
    let weightTile: Int
    let tile: UnsafeMutablePointer<Float>
    init(weightTile: Int) {
        self.weightTile = weightTile
        tile = .allocate(capacity: weightTile)
    }
    deinit { tile.deallocate() }
}
