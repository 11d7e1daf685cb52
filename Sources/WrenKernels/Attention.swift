// Causal grouped-query attention, one design for every caller:
// out = softmax(scale·Q·Kᵀ + causal mask)·V, query head h reading kv head
// h / (heads / kvHeads).
//   - decode: one query against n cached positions, keys in blocks of
//     `keyBlock` with a running maximum and sum (online softmax), so memory is
//     one block of scores whatever n. f32 here; the f16 and q8_0 caches run the
//     same algorithm in CWrenKernels (`wren_attend_f16`, `wren_attend_q8_0`).
//   - a block of query rows against f32 keys and values (`rowBlock`): two sgemms
//     with a causal softmax between them. The engine's prompt chunks (after the
//     cache is widened to f32) and the training forward both run it.
//   - training: B sequences of L tokens, forward and backward, in query blocks of
//     `queryBlock` rows so the masked upper triangle is (mostly) never computed;
//     probabilities are recomputed in the backward, not stored.

import CBLAS
import CWrenKernels
import Foundation

public enum Attention {
    /// Keys per block of the decode path's online softmax.
    public static let keyBlock = 64

    /// Query rows per block in training (a variable so tests can exercise several blocks on tiny sequences).
    nonisolated(unsafe) public static var queryBlock = 64

    // MARK: decode

    /// One query against a cache: (q, k, v, stride, n, hd, scale, out), as `decodeF32`.
    public typealias Decode = @Sendable (UnsafePointer<Float>, UnsafeRawPointer, UnsafeRawPointer, Int, Int, Int, Float,
                                         UnsafeMutablePointer<Float>) -> Void

    /// The decode kernel for a cache of `dtype` (f32, f16 or q8_0: the cache types).
    public static func decode(over dtype: DType) -> Decode {
        switch dtype {
        case .f32: return { decodeF32(q: $0, k: $1, v: $2, stride: $3, n: $4, hd: $5, scale: $6, out: $7) }
        case .f16: return { decodeF16(q: $0, k: $1, v: $2, stride: $3, n: $4, hd: $5, scale: $6, out: $7) }
        case .q8_0: return { decodeQ8_0(q: $0, k: $1, v: $2, stride: $3, n: $4, hd: $5, scale: $6, out: $7) }
        default: preconditionFailure("no attention kernel over a \(dtype) cache (KVCacheType allows f32, f16, q8_0)")
        }
    }

    /// One query (hd floats) against positions 0..<n of an f32 cache whose rows are `stride`
    /// bytes apart (k, v point at this kv head's first element); out: hd floats.
    public static func decodeF32(q: UnsafePointer<Float>, k: UnsafeRawPointer, v: UnsafeRawPointer, stride: Int, n: Int, hd: Int,
                                 scale: Float, out: UnsafeMutablePointer<Float>) {
        out.initialize(repeating: 0, count: hd)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: keyBlock) { buf in
            let sc = buf.baseAddress!
            var runMax = -Float.infinity, runSum: Float = 0
            var p0 = 0
            while p0 < n {
                let bn = min(keyBlock, n - p0)
                var bmax = -Float.infinity
                for i in 0..<bn {
                    let s = Ops.dot((k + (p0 + i) * stride).assumingMemoryBound(to: Float.self), q, hd) * scale
                    sc[i] = s
                    bmax = max(bmax, s)
                }
                if bmax > runMax {
                    let corr = expf(runMax - bmax)   // 0 on the first block
                    if runSum != 0 { for d in 0..<hd { out[d] *= corr } }
                    runSum *= corr
                    runMax = bmax
                }
                for i in 0..<bn {
                    let a = expf(sc[i] - runMax)
                    runSum += a
                    let vv = (v + (p0 + i) * stride).assumingMemoryBound(to: Float.self)
                    for d in 0..<hd { out[d] += a * vv[d] }
                }
                p0 += bn
            }
            let inv = 1 / runSum
            for d in 0..<hd { out[d] *= inv }
        }
    }

    /// The same over an f16 cache (C kernel, AVX2 or portable).
    public static func decodeF16(q: UnsafePointer<Float>, k: UnsafeRawPointer, v: UnsafeRawPointer, stride: Int, n: Int, hd: Int,
                                 scale: Float, out: UnsafeMutablePointer<Float>) {
        wren_attend_f16(q, k, v, stride, Int32(n), Int32(hd), scale, out)
    }

    /// The same over a q8_0 cache (one scale per 32 values of a head).
    public static func decodeQ8_0(q: UnsafePointer<Float>, k: UnsafeRawPointer, v: UnsafeRawPointer, stride: Int, n: Int, hd: Int,
                                  scale: Float, out: UnsafeMutablePointer<Float>) {
        wren_attend_q8_0(q, k, v, stride, Int32(n), Int32(hd), scale, out)
    }

    // MARK: a block of query rows against f32 keys and values

    /// Rows `rows` of P = causal softmax(scale·Q·Kᵀ) for one head, into `probs` (leading
    /// dimension `ldp`). Query row i sits at position start + i and sees keys 0...start + i;
    /// its row holds those probabilities, then zeros up to start + rows.upperBound.
    /// Q rows are `ldq` floats apart, K rows `ldk`. With `pool`, rows are normalised in parallel.
    /// A `window` > 0 also masks keys `window` or more positions before the query's
    /// (sliding-window attention): their probabilities are zero.
    public static func causalProbabilities(q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, ldk: Int, rows: Range<Int>, start: Int,
                                           hd: Int, scale: Float, probs: UnsafeMutablePointer<Float>, ldp: Int, pool: WorkerPool? = nil,
                                           window: Int = 0) {
        let r0 = rows.lowerBound, r1 = rows.upperBound, keys = start + r1
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(r1 - r0), Int32(keys), Int32(hd),
                    scale, q + r0 * ldq, Int32(ldq), k, Int32(ldk), 0, probs + r0 * ldp, Int32(ldp))
        let P = SendablePointer(probs)
        let normalise: @Sendable (Int) -> Void = { i in
            let row = P.p + i * ldp, visible = start + i + 1
            let first = window > 0 ? max(0, visible - window) : 0
            Ops.softmax(row + first, visible - first)
            if first > 0 { row.update(repeating: 0, count: first) }
            if visible < keys { (row + visible).update(repeating: 0, count: keys - visible) }
        }
        if let pool { pool.run(r1 - r0) { normalise(r0 + $0) } } else { for i in rows { normalise(i) } }
    }

    /// out rows `rows` (leading dimension `ldo`) = P·V for one head, P from `causalProbabilities`.
    public static func rowBlock(q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, ldkv: Int,
                                rows: Range<Int>, start: Int, hd: Int, scale: Float, probs: UnsafeMutablePointer<Float>, ldp: Int,
                                out: UnsafeMutablePointer<Float>, ldo: Int, pool: WorkerPool? = nil, window: Int = 0) {
        causalProbabilities(q: q, ldq: ldq, k: k, ldk: ldkv, rows: rows, start: start, hd: hd, scale: scale, probs: probs, ldp: ldp, pool: pool,
                            window: window)
        let r0 = rows.lowerBound
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows.count), Int32(hd), Int32(start + rows.upperBound),
                    1, probs + r0 * ldp, Int32(ldp), v, Int32(ldkv), 0, out + r0 * ldo, Int32(ldo))
    }

    // MARK: training: B sequences of L tokens, forward and backward

    /// out (B·L × heads·hd) = causal attention per sequence and head. One job per (sequence,
    /// kv head); `probs` holds B·kvHeads scratch blocks of L × L.
    public static func forward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                               B: Int, L: Int, heads: Int, kvHeads: Int, headDim hd: Int, probs: UnsafeMutablePointer<Float>, threads: Int) {
        let qDim = heads * hd, kvDim = kvHeads * hd, group = heads / kvHeads
        let scale = 1 / Float(hd).squareRoot()
        let Q = SendableRawPointer(q), K = SendableRawPointer(k), V = SendableRawPointer(v), O = SendablePointer(out), P = SendablePointer(probs)
        let block = queryBlock
        WorkerPool.shared(threads).run(B * kvHeads) { job in
            let b = job / kvHeads, g = job % kvHeads
            let pr = P.p + job * L * L
            let kp = K.p.assumingMemoryBound(to: Float.self) + b * L * kvDim + g * hd
            let vp = V.p.assumingMemoryBound(to: Float.self) + b * L * kvDim + g * hd
            for h in (g * group)..<((g + 1) * group) {
                let qp = Q.p.assumingMemoryBound(to: Float.self) + b * L * qDim + h * hd
                let op = O.p + b * L * qDim + h * hd
                var r0 = 0
                while r0 < L {
                    let r1 = min(L, r0 + block)
                    rowBlock(q: qp, ldq: qDim, k: kp, v: vp, ldkv: kvDim, rows: r0..<r1, start: 0, hd: hd, scale: scale,
                             probs: pr, ldp: L, out: op, ldo: qDim)
                    r0 = r1
                }
            }
        }
    }

    /// Given dOut, adds into dq, dk, dv (dk/dv summed over each kv head's group).
    /// `probs` and `dprobs` hold B·kvHeads blocks of L × L each. P is recomputed, not stored.
    public static func backward(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, dOut: UnsafePointer<Float>,
                                dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                                B: Int, L: Int, heads: Int, kvHeads: Int, headDim hd: Int,
                                probs: UnsafeMutablePointer<Float>, dprobs: UnsafeMutablePointer<Float>, threads: Int) {
        let qDim = heads * hd, kvDim = kvHeads * hd, group = heads / kvHeads
        let scale = 1 / Float(hd).squareRoot()
        let Q = SendableRawPointer(q), K = SendableRawPointer(k), V = SendableRawPointer(v), DO = SendableRawPointer(dOut)
        let DQ = SendablePointer(dq), DK = SendablePointer(dk), DV = SendablePointer(dv)
        let P = SendablePointer(probs), DP = SendablePointer(dprobs)
        let block = queryBlock
        WorkerPool.shared(threads).run(B * kvHeads) { job in
            let b = job / kvHeads, g = job % kvHeads
            let pr = P.p + job * L * L, dpr = DP.p + job * L * L
            let ko = b * L * kvDim + g * hd
            let kp = K.p.assumingMemoryBound(to: Float.self) + ko, vp = V.p.assumingMemoryBound(to: Float.self) + ko
            for h in (g * group)..<((g + 1) * group) {
                let qo = b * L * qDim + h * hd
                let qp = Q.p.assumingMemoryBound(to: Float.self) + qo, dop = DO.p.assumingMemoryBound(to: Float.self) + qo
                var r0 = 0
                while r0 < L {
                    let r1 = min(L, r0 + block), nr = r1 - r0
                    let pb = pr + r0 * L, db = dpr + r0 * L
                    causalProbabilities(q: qp, ldq: qDim, k: kp, ldk: kvDim, rows: r0..<r1, start: 0, hd: hd, scale: scale, probs: pr, ldp: L)
                    // dP = dO·Vᵀ; dV[0..<r1] += Pᵀ·dO
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(nr), Int32(r1), Int32(hd),
                                1, dop + r0 * qDim, Int32(qDim), vp, Int32(kvDim), 0, db, Int32(L))
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(r1), Int32(hd), Int32(nr),
                                1, pb, Int32(L), dop + r0 * qDim, Int32(qDim), 1, DV.p + ko, Int32(kvDim))
                    // dS = P ⊙ (dP − Σ_j P·dP), row by row (zero where masked, since P is).
                    for i in r0..<r1 {
                        let p = pr + i * L, d = dpr + i * L
                        var s: Float = 0
                        for j in 0...i { s += p[j] * d[j] }
                        for j in 0...i { d[j] = p[j] * (d[j] - s) }
                        if i + 1 < r1 { (d + i + 1).update(repeating: 0, count: r1 - i - 1) }
                    }
                    // dQ += scale·dS·K; dK[0..<r1] += scale·dSᵀ·Q
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(nr), Int32(hd), Int32(r1),
                                scale, db, Int32(L), kp, Int32(kvDim), 1, DQ.p + qo + r0 * qDim, Int32(qDim))
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(r1), Int32(hd), Int32(nr),
                                scale, db, Int32(L), qp + r0 * qDim, Int32(qDim), 1, DK.p + ko, Int32(kvDim))
                    r0 = r1
                }
            }
        }
    }
}
