// An inference session: the KV cache and scratch buffers for one sequence,
// and the llama forward pass over a batch of tokens (a prompt chunk or one
// decode token; the same code path serves both).

import CWrenKernels
import Dispatch
import WrenFormat
import WrenKernels

/// Element type of the KV cache.
public enum KVCacheType: String, Sendable, CaseIterable {
    case f32, f16
    var bytes: Int { self == .f32 ? 4 : 2 }
}

public final class InferenceSession: @unchecked Sendable {
    public let model: LlamaModel
    public let contextLength: Int
    public let threads: Int
    /// Tokens evaluated so far (the next token's position).
    public private(set) var position = 0
    /// Prompt tokens are evaluated in chunks of at most this many, bounding memory.
    public let maxBatch: Int
    public let kvType: KVCacheType

    let invFreq: [Float]
    let kvDim: Int
    let qDim: Int
    /// [layer][position][kvDim] elements of `kvType`.
    var keyCache: UnsafeMutableRawPointer
    var valueCache: UnsafeMutableRawPointer
    // Scratch, allocated once.
    let x, xb, q, k, v, att, proj, gate, up, logitsBuf, wScratch, scores: UnsafeMutablePointer<Float>

    /// - Parameters:
    ///   - contextLength: KV-cache capacity in tokens (default: the model's, capped at 4096).
    ///   - threads: worker threads for matrix products (default: active processors).
    ///   - kvType: KV-cache element type (f16 halves its memory; f32 is bit-for-bit the exact path).
    public init(model: LlamaModel, contextLength: Int? = nil, threads: Int? = nil, maxBatch: Int = 64, kvType: KVCacheType = .f16) throws {
        self.kvType = kvType
        let c = model.config
        self.model = model
        let ctx = contextLength ?? min(c.contextLength, 4096)
        guard ctx >= 1, ctx <= c.contextLength * max(1, Int(model.rope.factor.rounded(.up))) else {
            throw EngineError.invalidParameter("context length \(ctx) is outside 1...\(c.contextLength) for this model")
        }
        self.contextLength = ctx
        self.threads = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        self.maxBatch = maxBatch
        invFreq = model.rope.inverseFrequencies()
        kvDim = c.headCountKV * c.headDim
        qDim = c.headCount * c.headDim
        func alloc(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            p.initialize(repeating: 0, count: max(n, 1))
            return p
        }
        let kvBytes = c.blockCount * ctx * kvDim * kvType.bytes
        keyCache = UnsafeMutableRawPointer.allocate(byteCount: max(kvBytes, 1), alignment: 64)
        valueCache = UnsafeMutableRawPointer.allocate(byteCount: max(kvBytes, 1), alignment: 64)
        keyCache.initializeMemory(as: UInt8.self, repeating: 0, count: max(kvBytes, 1))
        valueCache.initializeMemory(as: UInt8.self, repeating: 0, count: max(kvBytes, 1))
        let B = maxBatch
        x = alloc(B * c.embeddingLength); xb = alloc(B * max(c.embeddingLength, qDim)); q = alloc(B * qDim)
        k = alloc(B * kvDim); v = alloc(B * kvDim); att = alloc(B * qDim); proj = alloc(B * c.embeddingLength)
        gate = alloc(B * c.feedForwardLength); up = alloc(B * c.feedForwardLength); logitsBuf = alloc(c.vocabSize)
        let biggest = model.layers.first.map { l in [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].map { $0.rows * $0.cols }.max()! } ?? 1
        wScratch = alloc(biggest)
        scores = alloc(c.headCount * B * ctx)
        openblas_set_num_threads_wrapper(self.threads)
    }

    deinit {
        keyCache.deallocate()
        valueCache.deallocate()
        for p in [x, xb, q, k, v, att, proj, gate, up, logitsBuf, wScratch, scores] { p.deallocate() }
    }

    /// Forgets every evaluated token.
    public func reset() { position = 0 }

    /// Rolls the cache back to `n` tokens (n ≤ position).
    public func truncate(to n: Int) {
        precondition(n >= 0 && n <= position)
        position = n
    }

    /// Evaluates `tokens` at the next positions and returns the logits of the last
    /// one (vocab floats), or of every one (tokens × vocab) when `allLogits`.
    /// - Throws: `EngineError.contextFull` when the tokens do not fit; `.invalidToken`.
    public func evaluate(_ tokens: [Int32], allLogits: Bool = false) throws -> [Float] {
        let c = model.config
        guard !tokens.isEmpty else { throw EngineError.emptyPrompt }
        guard position + tokens.count <= contextLength else { throw EngineError.contextFull(context: contextLength) }
        for t in tokens where t < 0 || Int(t) >= c.vocabSize { throw EngineError.invalidToken(t, vocabularySize: c.vocabSize) }
        var all: [Float] = []
        if allLogits { all.reserveCapacity(tokens.count * c.vocabSize) }
        var last: [Float] = []
        var i = 0
        while i < tokens.count {
            let chunk = Array(tokens[i..<min(tokens.count, i + maxBatch)])
            forwardChunk(chunk)
            let isLastChunk = i + chunk.count == tokens.count
            if allLogits {
                for t in 0..<chunk.count { all += logits(forRow: t) }
            } else if isLastChunk {
                last = logits(forRow: chunk.count - 1)
            }
            i += chunk.count
        }
        return allLogits ? all : last
    }

    /// Final norm and output head for row `t` of the current chunk.
    func logits(forRow t: Int) -> [Float] {
        let c = model.config
        let dim = c.embeddingLength
        model.outputNorm.withUnsafeBufferPointer { w in Ops.rmsNorm(x + t * dim, w.baseAddress!, xb, n: dim, eps: c.rmsNormEps) }
        let o = model.output
        Ops.matvec(o.dtype, o.data, rows: o.rows, n: o.cols, x: xb, y: logitsBuf, threads: threads)
        return Array(UnsafeBufferPointer(start: logitsBuf, count: c.vocabSize))
    }

    func forwardChunk(_ tokens: [Int32]) {
        let c = model.config
        let T = tokens.count, dim = c.embeddingLength, hd = c.headDim, ff = c.feedForwardLength
        let heads = c.headCount, kvHeads = c.headCountKV, group = heads / kvHeads
        let ctx = contextLength, kvDim = self.kvDim, qDim = self.qDim
        let start = position
        let emb = model.embedding
        let embRowBytes = emb.dtype.byteCount(elements: dim)!
        for (t, id) in tokens.enumerated() {
            Quant.dequantize(emb.dtype, emb.data + Int(id) * embRowBytes, x + t * dim, count: dim)
        }
        let scale = 1 / Float(hd).squareRoot()
        for (l, w) in model.layers.enumerated() {
            w.attnNorm.withUnsafeBufferPointer { nw in
                for t in 0..<T { Ops.rmsNorm(x + t * dim, nw.baseAddress!, xb + t * dim, n: dim, eps: c.rmsNormEps) }
            }
            mm(w.q, xb, T, q)
            mm(w.k, xb, T, k)
            mm(w.v, xb, T, v)
            invFreq.withUnsafeBufferPointer { f in
                for t in 0..<T {
                    let pos = model.rope.position(start + t)
                    Ops.rope(q + t * qDim, heads: heads, headDim: hd, rotary: model.rope.dimensions, position: pos, invFreq: f.baseAddress!)
                    Ops.rope(k + t * kvDim, heads: kvHeads, headDim: hd, rotary: model.rope.dimensions, position: pos, invFreq: f.baseAddress!)
                }
            }
            let es = kvType.bytes
            let kc = keyCache + l * ctx * kvDim * es, vc = valueCache + l * ctx * kvDim * es
            for t in 0..<T {
                let kd = kc + (start + t) * kvDim * es, vd = vc + (start + t) * kvDim * es
                if kvType == .f32 {
                    kd.copyMemory(from: k + t * kvDim, byteCount: kvDim * 4)
                    vd.copyMemory(from: v + t * kvDim, byteCount: kvDim * 4)
                } else {
                    wren_f32_to_f16(k + t * kvDim, kd, Int32(kvDim))
                    wren_f32_to_f16(v + t * kvDim, vd, Int32(kvDim))
                }
            }
            // Causal attention, one job per (token, head).
            let Q = SendablePointer(q), A = SendablePointer(att), S = SendablePointer(scores)
            let KC = SendableRawPointer(UnsafeRawPointer(kc)), VC = SendableRawPointer(UnsafeRawPointer(vc))
            let jobs = T * heads
            let f16 = kvType == .f16
            let work: @Sendable (Int) -> Void = { job in
                let t = job / heads, h = job % heads
                let kvh = h / group
                let n = start + t + 1
                let sc = S.p + job * ctx
                let qv = Q.p + t * qDim + h * hd
                for p in 0..<n {
                    let kp = KC.p + (p * kvDim + kvh * hd) * es
                    sc[p] = (f16 ? wren_dot_f16(kp, qv, Int32(hd)) : Ops.dot(kp.assumingMemoryBound(to: Float.self), qv, hd)) * scale
                }
                Ops.softmax(sc, n)
                let out = A.p + t * qDim + h * hd
                out.initialize(repeating: 0, count: hd)
                for p in 0..<n {
                    let a = sc[p]
                    let vp = VC.p + (p * kvDim + kvh * hd) * es
                    if f16 { wren_axpy_f16(a, vp, out, Int32(hd)) } else {
                        let vv = vp.assumingMemoryBound(to: Float.self)
                        for d in 0..<hd { out[d] += a * vv[d] }
                    }
                }
            }
            WorkerPool.shared(threads).run(jobs, work)
            mm(w.o, att, T, proj)
            for i in 0..<(T * dim) { x[i] += proj[i] }
            w.ffnNorm.withUnsafeBufferPointer { nw in
                for t in 0..<T { Ops.rmsNorm(x + t * dim, nw.baseAddress!, xb + t * dim, n: dim, eps: c.rmsNormEps) }
            }
            mm(w.gate, xb, T, gate)
            mm(w.up, xb, T, up)
            Ops.swiglu(gate, up, T * ff)
            mm(w.down, gate, T, proj)
            for i in 0..<(T * dim) { x[i] += proj[i] }
        }
        position += T
    }

    /// Prompt chunks of at least this many tokens go through OpenBLAS sgemm on
    /// dequantized weights; smaller ones (and decode) through the fused row dots.
    static let blasMinTokens = Int(ProcessInfo.processInfo.environment["WREN_BLAS_MIN_TOKENS"] ?? "") ?? 16

    @inline(__always) func mm(_ w: WeightMatrix, _ input: UnsafeMutablePointer<Float>, _ T: Int, _ out: UnsafeMutablePointer<Float>) {
        if T >= Self.blasMinTokens {
            Ops.matmulBLAS(w.dtype, w.data, rows: w.rows, n: w.cols, x: input, tokens: T, y: out, scratch: wScratch, threads: threads)
        } else {
            Ops.matmul(w.dtype, w.data, rows: w.rows, n: w.cols, x: input, tokens: T, y: out, scratch: wScratch, threads: threads)
        }
    }
}

import CBLAS
import Foundation

func openblas_set_num_threads_wrapper(_ n: Int) { openblas_set_num_threads(Int32(n)) }
