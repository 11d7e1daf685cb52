// An inference session: the KV cache and scratch buffers for one sequence,
// and the llama forward pass over a batch of tokens (a prompt chunk or one
// decode token; the same code path serves both).

import CBLAS
import CWrenKernels
import Dispatch
import Foundation
import WrenFormat
import WrenKernels

/// Element type of the KV cache.
public enum KVCacheType: String, Sendable, CaseIterable {
    case f32, f16, q8_0
    /// The stored type (its row of the dtype table converts rows in and out).
    var dtype: DType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .q8_0: return .q8_0
        }
    }
    /// Bytes for `elements` values (a multiple of 32 for q8_0).
    func bytes(_ elements: Int) -> Int { dtype.byteCount(elements: elements)! }
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
    /// Activations against quantized weights in decode-sized products (.q8 fast, .f32 exact).
    public let activations: Activations
    /// Layers run (all by default; fewer makes a self-speculation draft: the
    /// first layers, then the final norm and output head).
    public let layerCount: Int
    /// Wall time per part of the forward pass, when enabled (`enableProfiling`).
    public private(set) var profile: ForwardProfile?

    let invFreq: [Float]
    let kvDim: Int
    let qDim: Int
    /// [layer][position][kvDim] elements of `kvType`.
    var keyCache: UnsafeMutableRawPointer
    var valueCache: UnsafeMutableRawPointer
    // Scratch, allocated once.
    let x, xb, q, k, v, att, proj, gate, up, logitsBuf, wScratch, ropeTables, attScores, kvWide: UnsafeMutablePointer<Float>

    /// - Parameters:
    ///   - contextLength: KV-cache capacity in tokens (default: the model's, capped at 4096).
    ///   - threads: worker threads for matrix products (default: active processors).
    ///   - kvType: KV-cache element type (f16 halves its memory, q8_0 quarters it with one scale per
    ///     32 values of a head; f32 is the exact path).
    ///   - activations: `.q8` quantizes activations to 8-bit blocks for products with
    ///     q4_0/q4_1/q8_0 weights (llama.cpp's scheme); `.f32` keeps them exact.
    public init(model: LlamaModel, contextLength: Int? = nil, threads: Int? = nil, maxBatch: Int = 512, kvType: KVCacheType = .f16,
                activations: Activations = .q8, layers: Int? = nil) throws {
        self.kvType = kvType
        let nl = layers ?? model.config.blockCount
        guard nl >= 1, nl <= model.config.blockCount else {
            throw EngineError.invalidParameter("the number of layers must be in 1...\(model.config.blockCount) (got \(nl))")
        }
        layerCount = nl
        self.activations = activations
        let c = model.config
        self.model = model
        let ctx = contextLength ?? min(c.contextLength, 4096)
        guard ctx >= 1, ctx <= c.contextLength * max(1, Int(model.rope.factor.rounded(.up))) else {
            throw EngineError.invalidSetting(setting: "contextLength", reason: "\(ctx) is outside 1...\(c.contextLength) for this model")
        }
        self.contextLength = ctx
        self.threads = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        self.maxBatch = maxBatch
        invFreq = model.rope.inverseFrequencies()
        kvDim = c.headCountKV * c.headDim
        qDim = c.headCount * c.headDim
        // Scratch is written before it is read; left untouched (not zeroed) so
        // pages a short batch never uses are never made resident.
        func alloc(_ n: Int) -> UnsafeMutablePointer<Float> { UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1)) }
        if c.headDim % kvType.dtype.blockSize != 0 {
            throw EngineError.invalidSetting(setting: "kvType", reason: "\(kvType.rawValue) needs a head dimension that is a multiple of \(kvType.dtype.blockSize) (this model's is \(c.headDim))")
        }
        // The cache is sized from numbers a file (and -c) chose: checked, and refused past
        // the machine's memory with the figure rather than left to a failed allocation.
        let (perToken, o1) = kvType.bytes(kvDim).multipliedReportingOverflow(by: 2 * nl)
        let (cacheBytes, o2) = perToken.multipliedReportingOverflow(by: ctx)
        let physical = Double(sysconf(Int32(_SC_PHYS_PAGES))) * Double(sysconf(Int32(_SC_PAGESIZE)))
        guard !o1, !o2, physical <= 0 || Double(cacheBytes) < physical else {
            throw EngineError.invalidParameter(String(format: "a KV cache of %d tokens needs %.1f GB (%d layers, %d values per token, %@) but the machine has %.1f GB; use a smaller context length",
                                                      ctx, Double(perToken) * Double(ctx) / 1e9, nl, 2 * kvDim, kvType.rawValue, physical / 1e9))
        }
        let kvBytes = cacheBytes / 2
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
        ropeTables = alloc(B * max(model.rope.dimensions, 2))
        attScores = alloc(B * ctx)
        kvWide = alloc(2 * ctx * c.headDim)
        openblas_set_num_threads_wrapper(self.threads)
    }

    deinit {
        keyCache.deallocate()
        valueCache.deallocate()
        for p in [x, xb, q, k, v, att, proj, gate, up, logitsBuf, wScratch, ropeTables, attScores, kvWide] { p.deallocate() }
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
    /// `decodeKernels` keeps every token on the decode path's kernels whatever
    /// the batch size, so each token's logits are bit for bit those of evaluating
    /// it alone (speculative verification relies on this).
    /// - Throws: `EngineError.contextFull` when the tokens do not fit; `.invalidToken`.
    public func evaluate(_ tokens: [Int32], allLogits: Bool = false, decodeKernels: Bool = false) throws -> [Float] {
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
            forwardChunk(chunk, batched: !decodeKernels && chunk.count >= Self.blasMinTokens)
            let isLastChunk = i + chunk.count == tokens.count
            if allLogits {
                all += logits(rows: chunk.count)
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
        let t0 = profile != nil ? now() : 0
        model.outputNorm.withUnsafeBufferPointer { w in Ops.rmsNorm(x + t * dim, w.baseAddress!, xb, n: dim, eps: c.rmsNormEps) }
        let o = model.output
        Ops.matvec(o.dtype, o.data, rows: o.rows, n: o.cols, x: xb, y: logitsBuf, threads: threads, activations: activations)
        let out = Array(UnsafeBufferPointer(start: logitsBuf, count: c.vocabSize))
        if profile != nil { profile!.outputNs += now() - t0 }
        return out
    }

    /// Final norm and output head for the first `T` rows of the chunk in one
    /// product (the head is read once for all rows): T × vocab floats.
    func logits(rows T: Int) -> [Float] {
        let c = model.config
        let dim = c.embeddingLength
        let t0 = profile != nil ? now() : 0
        model.outputNorm.withUnsafeBufferPointer { w in
            for t in 0..<T { Ops.rmsNorm(x + t * dim, w.baseAddress!, xb + t * dim, n: dim, eps: c.rmsNormEps) }
        }
        let o = model.output
        let out = [Float](unsafeUninitializedCapacity: T * c.vocabSize) { buf, count in
            Ops.matmul(o.dtype, o.data, rows: o.rows, n: o.cols, x: xb, tokens: T, y: buf.baseAddress!, threads: threads,
                       activations: activations)
            count = T * c.vocabSize
        }
        if profile != nil { profile!.outputNs += now() - t0 }
        return out
    }

    /// Starts (or restarts) accumulating wall time per part of the forward pass.
    public func enableProfiling() { profile = ForwardProfile() }

    @inline(__always) func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    func forwardChunk(_ tokens: [Int32], batched: Bool) {
        let c = model.config
        let T = tokens.count, dim = c.embeddingLength, hd = c.headDim, ff = c.feedForwardLength
        let heads = c.headCount, kvHeads = c.headCountKV, group = heads / kvHeads
        let ctx = contextLength, kvDim = self.kvDim, qDim = self.qDim
        let start = position
        let profiling = profile != nil
        var mark = profiling ? now() : 0
        var matmulNs: UInt64 = 0, attentionNs: UInt64 = 0, otherNs: UInt64 = 0
        @inline(__always) func lap(_ bucket: inout UInt64) {
            if profiling { let t = now(); bucket += t - mark; mark = t }
        }
        let emb = model.embedding
        let embRowBytes = emb.dtype.byteCount(elements: dim)!
        for (t, id) in tokens.enumerated() {
            Quant.dequantize(emb.dtype, emb.data + Int(id) * embRowBytes, x + t * dim, count: dim)
        }
        let scale = 1 / Float(hd).squareRoot()
        let rot = model.rope.dimensions
        invFreq.withUnsafeBufferPointer { f in
            for t in 0..<T {
                Ops.ropeTable(position: model.rope.position(start + t), rotary: rot, invFreq: f.baseAddress!, into: ropeTables + t * rot)
            }
        }
        for (l, w) in model.layers.prefix(layerCount).enumerated() {
            w.attnNorm.withUnsafeBufferPointer { nw in
                for t in 0..<T { Ops.rmsNorm(x + t * dim, nw.baseAddress!, xb + t * dim, n: dim, eps: c.rmsNormEps) }
            }
            lap(&otherNs)
            mm([(w.q, q), (w.k, k), (w.v, v)], xb, T, batched, layer: l, [.q, .k, .v])
            lap(&matmulNs)
            for t in 0..<T {
                Ops.rope(q + t * qDim, heads: heads, headDim: hd, rotary: rot, table: ropeTables + t * rot)
                Ops.rope(k + t * kvDim, heads: kvHeads, headDim: hd, rotary: rot, table: ropeTables + t * rot)
            }
            let rowBytes = kvType.bytes(kvDim), headBytes = kvType.bytes(hd)
            let kc = keyCache + l * ctx * rowBytes, vc = valueCache + l * ctx * rowBytes
            Quant.quantize(kvType.dtype, k, kc + start * rowBytes, count: T * kvDim)
            Quant.quantize(kvType.dtype, v, vc + start * rowBytes, count: T * kvDim)
            lap(&otherNs)
            // Causal attention (WrenKernels/Attention.swift): one job per (token, head)
            // over the cache with an online softmax, or, for a prompt chunk, the
            // row-block form as two sgemms per head.
            let Q = SendablePointer(q), A = SendablePointer(att)
            let KC = SendableRawPointer(UnsafeRawPointer(kc)), VC = SendableRawPointer(UnsafeRawPointer(vc))
            let decode: @Sendable (UnsafePointer<Float>, UnsafeRawPointer, UnsafeRawPointer, Int, Int, Int, Float, UnsafeMutablePointer<Float>) -> Void
            switch kvType {
            case .f32: decode = Attention.decodeF32
            case .f16: decode = Attention.decodeF16
            case .q8_0: decode = Attention.decodeQ8_0
            }
            let work: @Sendable (Int) -> Void = { job in
                let t = job / heads, h = job % heads
                let kvh = h / group
                decode(Q.p + t * qDim + h * hd, KC.p + kvh * headBytes, VC.p + kvh * headBytes, rowBytes, start + t + 1, hd, scale,
                       A.p + t * qDim + h * hd)
            }
            if batched {
                attendBatched(kc: kc, vc: vc, T: T, start: start, scale: scale)
            } else {
                WorkerPool.shared(threads).run(T * heads, work)
            }
            lap(&attentionNs)
            mm([(w.o, proj)], att, T, batched, layer: l, [.o])
            lap(&matmulNs)
            for i in 0..<(T * dim) { x[i] += proj[i] }
            w.ffnNorm.withUnsafeBufferPointer { nw in
                for t in 0..<T { Ops.rmsNorm(x + t * dim, nw.baseAddress!, xb + t * dim, n: dim, eps: c.rmsNormEps) }
            }
            lap(&otherNs)
            mm([(w.gate, gate), (w.up, up)], xb, T, batched, layer: l, [.gate, .up])
            lap(&matmulNs)
            Ops.swiglu(gate, up, T * ff)
            lap(&otherNs)
            mm([(w.down, proj)], gate, T, batched, layer: l, [.down])
            lap(&matmulNs)
            for i in 0..<(T * dim) { x[i] += proj[i] }
        }
        lap(&otherNs)
        position += T
        if profiling {
            profile!.matmulNs += matmulNs; profile!.attentionNs += attentionNs; profile!.otherNs += otherNs
            profile!.tokens += T; profile!.passes += 1
        }
    }

    /// Attention for a prompt chunk as matrix products: per head, S = Q·Kᵀ
    /// (chunk × positions, OpenBLAS), a causal softmax per row (worker pool),
    /// then S·V. Memory: one head's scores (maxBatch × context floats) and one
    /// kv head's keys and values widened to f32, reused across heads.
    func attendBatched(kc: UnsafeMutableRawPointer, vc: UnsafeMutableRawPointer, T: Int, start: Int, scale: Float) {
        let c = model.config
        let hd = c.headDim, heads = c.headCount, kvHeads = c.headCountKV, group = heads / kvHeads
        let n = start + T, kvDim = self.kvDim, qDim = self.qDim
        for g in 0..<kvHeads {
            let kf: UnsafePointer<Float>, vf: UnsafePointer<Float>, ld: Int
            if kvType == .f32 {
                kf = UnsafePointer(kc.assumingMemoryBound(to: Float.self) + g * hd)
                vf = UnsafePointer(vc.assumingMemoryBound(to: Float.self) + g * hd)
                ld = kvDim
            } else {
                let rowBytes = kvType.bytes(kvDim), headBytes = kvType.bytes(hd)
                for p in 0..<n {
                    Quant.dequantize(kvType.dtype, kc + p * rowBytes + g * headBytes, kvWide + p * hd, count: hd)
                    Quant.dequantize(kvType.dtype, vc + p * rowBytes + g * headBytes, kvWide + (n + p) * hd, count: hd)
                }
                kf = UnsafePointer(kvWide); vf = UnsafePointer(kvWide + n * hd); ld = hd
            }
            for h in (g * group)..<((g + 1) * group) {
                Attention.rowBlock(q: q + h * hd, ldq: qDim, k: kf, v: vf, ldkv: ld, rows: 0..<T, start: start, hd: hd, scale: scale,
                                   probs: attScores, ldp: n, out: att + h * hd, ldo: qDim, pool: WorkerPool.shared(threads))
            }
        }
    }

    /// Prompt chunks of at least this many tokens go through OpenBLAS sgemm on
    /// dequantized weights; smaller ones (and decode) through the fused row dots.
    static let blasMinTokens = Int(ProcessInfo.processInfo.environment["WREN_BLAS_MIN_TOKENS"] ?? "") ?? 16

    /// Products sharing one input: fused row dots for decode-sized batches,
    /// OpenBLAS sgemm on dequantized weights for prompt chunks.
    /// Run-time LoRA deltas (`model.adapters`) are added after the base product.
    func mm(_ parts: [(WeightMatrix, UnsafeMutablePointer<Float>)], _ input: UnsafeMutablePointer<Float>, _ T: Int, _ batched: Bool,
            layer: Int, _ projections: [Projection]) {
        defer {
            if !model.adapters.isEmpty {
                for (i, p) in projections.enumerated() {
                    for d in model.adapters[layer][p] ?? [] { d.apply(x: input, tokens: T, y: parts[i].1) }
                }
            }
        }
        if batched {
            for (w, out) in parts {
                Ops.matmulBLAS(w.dtype, w.data, rows: w.rows, n: w.cols, x: input, tokens: T, y: out, scratch: wScratch, threads: threads)
            }
        } else {
            let n = parts[0].0.cols
            Ops.matmul(parts.map { Ops.MatmulPart($0.0.dtype, $0.0.data, rows: $0.0.rows, y: $0.1) }, n: n, x: input, tokens: T,
                       threads: threads, activations: activations)
        }
    }
}

/// Wall time per part of the forward pass, summed over passes.
public struct ForwardProfile: Sendable {
    public var matmulNs: UInt64 = 0
    public var attentionNs: UInt64 = 0
    /// Final norm and output head.
    public var outputNs: UInt64 = 0
    /// Embedding lookup, norms, RoPE, KV-cache stores, residuals, SwiGLU.
    public var otherNs: UInt64 = 0
    public var tokens = 0
    public var passes = 0
    public var totalNs: UInt64 { matmulNs + attentionNs + outputNs + otherNs }
}

func openblas_set_num_threads_wrapper(_ n: Int) { openblas_set_num_threads(Int32(n)) }
