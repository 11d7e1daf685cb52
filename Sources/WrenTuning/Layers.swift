// The training-only ops, forward beside backward (in the manner of llm.c):
// products against a frozen weight in any stored dtype, and cross-entropy with
// an ignore label. The ops the engine shares (RMSNorm, RoPE, SwiGLU in
// WrenKernels/Ops.swift; causal GQA attention in WrenKernels/Attention.swift)
// keep their backwards beside their forwards there. Activations are f32,
// row-major, one row per token; every backward *adds* into the input
// gradients it is given, so branches that share an input (q/k/v, gate/up,
// residuals) sum naturally.
// Products go through OpenBLAS sgemm; frozen quantized weights are expanded
// a tile of rows at a time into a scratch buffer, never as a whole.

import CBLAS
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

    // MARK: cross-entropy

    /// For each of `n` rows of logits (vocab wide) with label `labels[i]` (never the
    /// ignore label here): returns Σ (logsumexp − logit[label]) in Double and
    /// overwrites the logits with `gradScale`·(softmax − onehot) when `backward`.
    /// `scales`: per row, multiplies gradScale (DPO weighs each sequence); `rowLosses`: receives each row's loss.
    static func crossEntropy(_ logits: UnsafeMutablePointer<Float>, labels: UnsafePointer<Int32>, n: Int, vocab: Int, gradScale: Float,
                             backward: Bool, threads: Int, scales: UnsafePointer<Float>? = nil,
                             rowLosses: UnsafeMutablePointer<Double>? = nil) -> Double {
        var losses = [Double](repeating: 0, count: n)
        let S = scales.map { SendablePointer(UnsafeMutablePointer(mutating: $0)) }
        losses.withUnsafeMutableBufferPointer { lb in
            let Lg = SendablePointer(logits), Lb = SendableRawPointer(labels), Out = SendablePointer(lb.baseAddress!)
            WorkerPool.shared(threads).forEachRow(n) { i in
                let row = Lg.p + i * vocab
                let label = Int(Lb.p.assumingMemoryBound(to: Int32.self)[i])
                if backward {
                    // softmax in place (vectorised exp); loss = −log p[label].
                    Ops.softmax(row, vocab)
                    Out.p[i] = -Foundation.log(max(Double(row[label]), Double(Float.leastNonzeroMagnitude)))
                    let g = S.map { gradScale * $0.p[i] } ?? gradScale
                    for j in 0..<vocab { row[j] *= g }
                    row[label] -= g
                } else {
                    var m = -Float.infinity
                    for j in 0..<vocab { m = max(m, row[j]) }
                    var s: Double = 0
                    for j in 0..<vocab { s += Double(expf(row[j] - m)) }
                    Out.p[i] = Double(m) + Foundation.log(s) - Double(row[label])
                }
            }
        }
        if let rowLosses { for i in 0..<n { rowLosses[i] = losses[i] } }
        return losses.reduce(0, +)
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
