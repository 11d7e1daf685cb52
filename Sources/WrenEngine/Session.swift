// An inference session: the KV cache of one or more sequences and the buffers
// (`RunState`), and the forward pass over a chunk of tokens (a prompt chunk or
// one decode token): embedding, the blocks (Forward.swift's `LlamaBlock`, run
// here with `CacheOps`: products on the decode kernels or OpenBLAS, attention
// over the cache), final norm and output head.
//
// Several sequences: each has its own `contextLength` rows of the cache and its
// own position. `decode` runs one token of each of several sequences in one
// pass: the weights are read once for all of them, and each row attends over
// its own sequence's cache. `copySequence` gives a sequence another's cache
// (a shared prompt evaluated once). A row's arithmetic does not depend on the
// other rows of its pass, so a sequence's logits are the same bits whether it
// is decoded alone or in a batch (BatchSampling.swift relies on this).

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
    /// Tokens evaluated so far in sequence 0 (the next token's position).
    public var position: Int { positions[0] }
    /// The same for every sequence.
    public private(set) var positions: [Int]
    /// Sequences whose caches this session holds (each `contextLength` tokens).
    public let sequences: Int
    /// Prompt tokens are evaluated in chunks of at most this many, bounding memory.
    public let maxBatch: Int
    public let kvType: KVCacheType
    /// Activations against quantized weights in decode-sized products (.q8 fast, .f32 exact).
    public let activations: Activations
    /// The model's weights packed for 1 to 8 tokens on the 8-bit path (see `PackedWeights`), if any.
    public internal(set) var packed: PackedWeights?
    /// Layers run (all by default; fewer makes a self-speculation draft: the
    /// first layers, then the final norm and output head).
    public let layerCount: Int
    /// Wall time per part of the forward pass, when enabled (`enableProfiling`).
    public private(set) var profile: ForwardProfile?

    let kvDim: Int
    let qDim: Int
    /// The KV cache and every activation buffer, allocated once.
    let state: RunState

    /// - Parameters:
    ///   - contextLength: KV-cache capacity in tokens (default: the model's, capped at 4096).
    ///   - threads: worker threads for matrix products (default: active processors).
    ///   - kvType: KV-cache element type (f16 halves its memory, q8_0 quarters it with one scale per
    ///     32 values of a head; f32 is the exact path).
    ///   - activations: `.q8` quantizes activations to 8-bit blocks for products with
    ///     quantized weights (q4_0 … q8_0 and the k-quants; llama.cpp's scheme); `.f32` keeps them exact.
    ///   - beyondTrainedContext: allow a context past the trained length × RoPE scale
    ///     (plain RoPE at positions the model never saw; for measuring that failure).
    ///   - sequences: independent sequences, each with a cache of `contextLength` tokens (see `decode`).
    public init(model: LlamaModel, contextLength: Int? = nil, threads: Int? = nil, maxBatch: Int = 512, kvType: KVCacheType = .f16,
                activations: Activations = .q8, layers: Int? = nil, beyondTrainedContext: Bool = false, sequences: Int = 1) throws {
        self.kvType = kvType
        guard sequences >= 1, sequences <= maxBatch else {
            throw EngineError.invalidParameter("the number of sequences must be in 1...\(maxBatch) (got \(sequences))")
        }
        self.sequences = sequences
        positions = Array(repeating: 0, count: sequences)
        let nl = layers ?? model.config.blockCount
        guard nl >= 1, nl <= model.config.blockCount else {
            throw EngineError.invalidParameter("the number of layers must be in 1...\(model.config.blockCount) (got \(nl))")
        }
        layerCount = nl
        self.activations = activations
        let c = model.config
        self.model = model
        let ctx = contextLength ?? min(c.contextLength, 4096)
        let limit = c.contextLength * max(1, Int(model.rope.factor.rounded(.up)))
        guard ctx >= 1, ctx <= limit || beyondTrainedContext else {
            let scaled = limit > c.contextLength ? " (\(c.contextLength) trained × RoPE scale \(model.rope.factor))" : " (a RoPE scale raises it)"
            throw EngineError.invalidSetting(setting: "contextLength", reason: "\(ctx) is outside 1...\(limit) for this model\(scaled)")
        }
        self.contextLength = ctx
        self.threads = max(1, threads ?? Machine.physicalCores)
        self.maxBatch = maxBatch
        kvDim = c.headCountKV * c.headDim
        qDim = c.headCount * c.headDim
        if c.headDim % kvType.dtype.blockSize != 0 {
            throw EngineError.invalidSetting(setting: "kvType", reason: "\(kvType.rawValue) needs a head dimension that is a multiple of \(kvType.dtype.blockSize) (this model's is \(c.headDim))")
        }
        // The cache is sized from numbers a file (and -c) chose: checked, and refused past
        // the machine's memory with the figure rather than left to a failed allocation.
        let (perToken, o1) = kvType.bytes(kvDim).multipliedReportingOverflow(by: 2 * nl)
        let (cacheBytes, o2) = perToken.multipliedReportingOverflow(by: ctx * sequences)
        let physical = Double(sysconf(Int32(_SC_PHYS_PAGES))) * Double(sysconf(Int32(_SC_PAGESIZE)))
        guard !o1, !o2, physical <= 0 || Double(cacheBytes) < physical else {
            let what = sequences == 1 ? "\(ctx) tokens" : "\(ctx) tokens × \(sequences) sequences"
            throw EngineError.invalidParameter(String(format: "a KV cache of %@ needs %.1f GB (%d layers, %d values per token, %@) but the machine has %.1f GB; use a smaller context length",
                                                      what, Double(perToken) * Double(ctx) * Double(sequences) / 1e9, nl, 2 * kvDim, kvType.rawValue,
                                                      physical / 1e9))
        }
        state = RunState(model: model, maxBatch: maxBatch, context: ctx, sequences: sequences, layers: nl, kvType: kvType)
        packed = activations == .q8 ? model.packedWeights() : nil
        // OpenBLAS stays single-threaded: its products are split across the worker pool
        // (Ops.matmulBLAS, attendRowBlocks). Its own threads would spin on sched_yield
        // after each call, taking a core from the pool during decode steps (measured ~5%
        // of a batched decode step's CPU time on the 2-core VM).
        openblas_set_num_threads_wrapper(1)
        _ = stopOpenBLASThreads
    }

    /// Forgets every evaluated token of every sequence.
    public func reset() { positions = Array(repeating: 0, count: sequences) }

    /// Rolls sequence `sequence`'s cache back to `n` tokens (n ≤ its position).
    public func truncate(to n: Int, sequence: Int = 0) {
        precondition(n >= 0 && n <= positions[sequence])
        positions[sequence] = n
    }

    /// Makes sequence `to` hold what sequence `from` holds (its cached tokens, and its position):
    /// a prompt evaluated once, then continued by several sequences.
    public func copySequence(from: Int, to: Int) {
        precondition(from >= 0 && from < sequences && to >= 0 && to < sequences)
        guard from != to else { return }
        let rowBytes = kvType.bytes(kvDim), n = positions[from] * rowBytes
        for l in 0..<layerCount {
            for cache in [state.keyCache, state.valueCache] {
                (cache + cacheRow(layer: l, sequence: to) * rowBytes).copyMemory(from: cache + cacheRow(layer: l, sequence: from) * rowBytes,
                                                                                  byteCount: n)
            }
        }
        positions[to] = positions[from]
    }

    /// The row of the cache where layer `layer`'s part of sequence `sequence` starts.
    func cacheRow(layer: Int, sequence: Int) -> Int { (layer * sequences + sequence) * contextLength }

    /// Evaluates one token of each of several distinct sequences in one pass (each at
    /// its sequence's next position) and returns their logits, row i for `steps[i]`
    /// (steps.count × vocab floats). Every row runs on the decode kernels, so its
    /// logits are bit for bit those of `evaluate([token], sequence:)` alone.
    /// - Throws: `EngineError.contextFull` when a sequence is full; `.invalidToken`.
    public func decode(_ steps: [(sequence: Int, token: Int32)]) throws -> [Float] {
        let c = model.config
        guard !steps.isEmpty else { throw EngineError.emptyPrompt }
        guard steps.count <= maxBatch else { throw EngineError.invalidParameter("\(steps.count) sequences in one pass exceed the batch size \(maxBatch)") }
        var seen = Set<Int>()
        for (s, t) in steps {
            guard s >= 0, s < sequences, seen.insert(s).inserted else {
                throw EngineError.invalidParameter("sequence \(s) is not one of 0..<\(sequences), or appears twice in one pass")
            }
            guard positions[s] < contextLength else { throw EngineError.contextFull(context: contextLength) }
            guard t >= 0, Int(t) < c.vocabSize else { throw EngineError.invalidToken(t, vocabularySize: c.vocabSize) }
        }
        forward(steps.map(\.token), segments: steps.enumerated().map { Segment(sequence: $1.sequence, row: $0, count: 1, position: positions[$1.sequence], rowBlock: false) })
        for (s, _) in steps { positions[s] += 1 }
        return logits(rows: 0..<steps.count)
    }

    /// Whether `evaluate(chunk:…, with:)` can take a prompt chunk of `chunkTokens` and
    /// `steps` decode steps in one pass with every row's result unchanged: every product
    /// (the output head too) on the 8-bit kernels, whose rows do not depend on how many
    /// tokens share a pass, and no run-time adapters.
    public func canShare(chunkTokens: Int, steps: Int) -> Bool {
        chunkTokens + steps <= maxBatch && sharedPasses
    }

    /// Asked each time: an adapter may be attached after the session is made.
    private var sharedPasses: Bool {
        guard activations == .q8, model.adapters.isEmpty, model.output.dtype.traits.gemm_q8 != nil else { return false }
        return model.layers.allSatisfy { layer in Projection.allCases.allSatisfy { $0.matrix(layer).dtype.traits.gemm_q8 != nil } }
    }

    /// A prompt chunk of one sequence and one decode step of each of several others in a
    /// single pass over the weights (continuous batching: a prompt joins the running
    /// decode batch). The chunk's rows attend as `evaluate` would attend them alone, each
    /// step's row as `decode`'s, and every product is one `canShare` allows, so the
    /// results are bit for bit those of `evaluate(chunk, sequence:)` then `decode(steps)`.
    /// Returns the logits of the chunk's last token when `chunkLogits` (else empty) and
    /// those of the steps (steps.count × vocab).
    public func evaluate(chunk: [Int32], sequence: Int, chunkLogits: Bool, with steps: [(sequence: Int, token: Int32)]) throws
        -> (chunk: [Float], steps: [Float]) {
        let c = model.config, C = chunk.count, V = c.vocabSize
        precondition(canShare(chunkTokens: C, steps: steps.count), "a pass canShare does not allow")
        guard C > 0 else { throw EngineError.emptyPrompt }
        guard sequence >= 0, sequence < sequences, !steps.contains(where: { $0.sequence == sequence }) else {
            throw EngineError.invalidParameter("sequence \(sequence) is not one of 0..<\(sequences), or also has a decode step")
        }
        guard positions[sequence] + C <= contextLength else { throw EngineError.contextFull(context: contextLength) }
        for t in chunk where t < 0 || Int(t) >= V { throw EngineError.invalidToken(t, vocabularySize: V) }
        var seen = Set<Int>()
        for (s, t) in steps {
            guard s >= 0, s < sequences, seen.insert(s).inserted else {
                throw EngineError.invalidParameter("sequence \(s) is not one of 0..<\(sequences), or appears twice in one pass")
            }
            guard positions[s] < contextLength else { throw EngineError.contextFull(context: contextLength) }
            guard t >= 0, Int(t) < V else { throw EngineError.invalidToken(t, vocabularySize: V) }
        }
        var segments = [Segment(sequence: sequence, row: 0, count: C, position: positions[sequence], rowBlock: C >= Self.blasMinTokens)]
        for (i, st) in steps.enumerated() {
            segments.append(Segment(sequence: st.sequence, row: C + i, count: 1, position: positions[st.sequence], rowBlock: false))
        }
        forward(chunk + steps.map(\.token), segments: segments)
        positions[sequence] += C
        for (s, _) in steps { positions[s] += 1 }
        // The head once for the rows wanted, which sit together: the chunk's last, then the steps.
        let rows = (chunkLogits ? C - 1 : C)..<(C + steps.count)
        guard !rows.isEmpty else { return ([], []) }
        let all = logits(rows: rows)
        return chunkLogits ? (Array(all[0..<V]), Array(all[V...])) : ([], all)
    }

    /// Evaluates `tokens` at the next positions and returns the logits of the last
    /// one (vocab floats), or of every one (tokens × vocab) when `allLogits`, or
    /// of tokens logitsFrom..<tokens.count when `logitsFrom` is given (the output
    /// head then runs only for those rows: a perplexity chunk scores its second half).
    /// `decodeKernels` keeps every token on the decode path's kernels whatever
    /// the batch size, so each token's logits are bit for bit those of evaluating
    /// it alone (speculative verification relies on this).
    /// - Throws: `EngineError.contextFull` when the tokens do not fit; `.invalidToken`.
    public func evaluate(_ tokens: [Int32], sequence: Int = 0, allLogits: Bool = false, logitsFrom: Int? = nil,
                         decodeKernels: Bool = false) throws -> [Float] {
        precondition(sequence >= 0 && sequence < sequences, "sequence \(sequence) outside 0..<\(sequences)")
        let position = positions[sequence]
        let from = allLogits ? 0 : logitsFrom
        if let from { precondition(from >= 0 && from < tokens.count, "logitsFrom \(from) outside 0..<\(tokens.count)") }
        let c = model.config
        guard !tokens.isEmpty else { throw EngineError.emptyPrompt }
        guard position + tokens.count <= contextLength else { throw EngineError.contextFull(context: contextLength) }
        for t in tokens where t < 0 || Int(t) >= c.vocabSize { throw EngineError.invalidToken(t, vocabularySize: c.vocabSize) }
        var all: [Float] = []
        if let from { all.reserveCapacity((tokens.count - from) * c.vocabSize) }
        var last: [Float] = []
        var i = 0
        while i < tokens.count {
            let chunk = Array(tokens[i..<min(tokens.count, i + maxBatch)])
            let start = positions[sequence]
            forward(chunk, segments: [Segment(sequence: sequence, row: 0, count: chunk.count, position: start,
                                              rowBlock: !decodeKernels && chunk.count >= Self.blasMinTokens)])
            positions[sequence] += chunk.count
            let isLastChunk = i + chunk.count == tokens.count
            if let from {
                if from < i + chunk.count { all += logits(rows: max(0, from - i)..<chunk.count) }
            } else if isLastChunk {
                last = logits(forRow: chunk.count - 1)
            }
            i += chunk.count
        }
        return from != nil ? all : last
    }

    /// The final normed hidden state (embeddingLength floats) of the last token evaluated:
    /// what a reward model's head reads.
    public func lastHidden() -> [Float] {
        precondition(lastChunkRows > 0, "nothing evaluated yet")
        let c = model.config, dim = c.embeddingLength
        var out = [Float](repeating: 0, count: dim)
        model.outputNorm.withUnsafeBufferPointer { w in
            out.withUnsafeMutableBufferPointer { Ops.rmsNorm(state.x + (lastChunkRows - 1) * dim, w.baseAddress!, $0.baseAddress!, n: dim, eps: c.rmsNormEps) }
        }
        return out
    }

    /// Rows of the last forward pass (their stream is in `state.x`).
    private(set) var lastChunkRows = 0

    /// Final norm and output head for row `t` of the current chunk.
    func logits(forRow t: Int) -> [Float] {
        let c = model.config
        let dim = c.embeddingLength
        let t0 = profile != nil ? now() : 0
        let s = state
        model.outputNorm.withUnsafeBufferPointer { w in Ops.rmsNorm(s.x + t * dim, w.baseAddress!, s.normed, n: dim, eps: c.rmsNormEps) }
        let o = model.output
        Ops.matmul(o.dtype, o.data, rows: o.rows, n: o.cols, x: s.normed, tokens: 1, y: s.logits, threads: threads, activations: activations,
                   packed: packed?.output)
        if c.tiedEmbeddings { for (id, r) in model.tokenRows { s.logits[Int(id)] = Self.dot(s.normed, r) } }
        let out = Array(UnsafeBufferPointer(start: s.logits, count: c.vocabSize))
        if profile != nil { profile!.outputNs += now() - t0 }
        return out
    }

    /// Final norm and output head for rows `rows` of the chunk in one product
    /// (the head is read once for all rows): rows.count × vocab floats.
    func logits(rows: Range<Int>) -> [Float] {
        let c = model.config
        let dim = c.embeddingLength, T = rows.count
        let t0 = profile != nil ? now() : 0
        let s = state
        model.outputNorm.withUnsafeBufferPointer { w in
            for (i, t) in rows.enumerated() { Ops.rmsNorm(s.x + t * dim, w.baseAddress!, s.normed + i * dim, n: dim, eps: c.rmsNormEps) }
        }
        let o = model.output
        let out = [Float](unsafeUninitializedCapacity: T * c.vocabSize) { buf, count in
            Ops.matmul(o.dtype, o.data, rows: o.rows, n: o.cols, x: s.normed, tokens: T, y: buf.baseAddress!, threads: threads,
                       activations: activations, packed: packed?.output)
            if c.tiedEmbeddings {
                for i in 0..<T { for (id, r) in model.tokenRows { buf[i * c.vocabSize + Int(id)] = Self.dot(s.normed + i * dim, r) } }
            }
            count = T * c.vocabSize
        }
        if profile != nil { profile!.outputNs += now() - t0 }
        return out
    }

    /// Starts (or restarts) accumulating wall time per part of the forward pass.
    public func enableProfiling() { profile = ForwardProfile() }

    @inline(__always) func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Rows `row..<row + count` of a pass: tokens of `sequence` at consecutive positions
    /// from `position`. `rowBlock`: a prompt chunk's row-block attention (and OpenBLAS
    /// for products without 8-bit kernels); otherwise each row attends over the cache
    /// as a decode step.
    struct Segment {
        let sequence: Int, row: Int, count: Int, position: Int, rowBlock: Bool
    }

    /// Runs `tokens` (at most maxBatch), laid out in `segments`, through every layer;
    /// the stream's last rows are left in `state.x` for the head.
    func forward(_ tokens: [Int32], segments: [Segment]) {
        let c = model.config, T = tokens.count
        precondition(segments.reduce(0) { $0 + $1.count } == T)
        let t0 = profile != nil ? now() : 0
        model.embedding.gatherRows(tokens, into: state.x)
        if !model.tokenRows.isEmpty {
            for (t, id) in tokens.enumerated() { if let r = model.tokenRows[id] { (state.x + t * c.embeddingLength).update(from: r, count: c.embeddingLength) } }
        }
        if c.embeddingScale != 1 { for i in 0..<(T * c.embeddingLength) { state.x[i] *= c.embeddingScale } }
        // One table per segment, as for its sequence alone (dynamic NTK reads the positions' extent).
        let width = model.rope.dimensions
        var seqs = [Int](), pos = [Int]()
        for g in segments {
            let r = g.position..<(g.position + g.count), at = g.row * width
            model.rope.tables(positions: r, into: state.rope + at)
            if let local = model.ropeLocal, let table = state.ropeLocal { local.tables(positions: r, into: table + at) }
            seqs += Array(repeating: g.sequence, count: g.count)
            pos += Array(r)
        }
        lastChunkRows = T
        var ops = CacheOps(session: self, sequences: seqs, positions: pos, segments: segments, timed: profile != nil)
        let buffers = state.block
        for l in 0..<layerCount {
            LlamaBlock.forward(&ops, layer: l, tokens: T, config: c, rotary: model.rope.dimensions, buffers, threads: threads)
        }
        if profile != nil {
            let total = now() - t0
            profile!.matmulNs += ops.matmulNs; profile!.attentionNs += ops.attentionNs
            profile!.otherNs += total - ops.matmulNs - ops.attentionNs
            profile!.tokens += T; profile!.passes += 1
        }
    }

    /// Prompt chunks of at least this many tokens take the batched path: attention
    /// in row blocks, and products on OpenBLAS sgemm where the 8-bit tiles do not
    /// apply (f32/f16/bf16 weights, or --exact); smaller ones use the decode kernels.
    static let blasMinTokens = Int(ProcessInfo.processInfo.environment["WREN_BLAS_MIN_TOKENS"] ?? "") ?? 16
}

/// The engine's side of a block: products on the dtype table's kernels (8-bit
/// tiles for quantized weights, OpenBLAS for a prompt chunk's float weights) plus run-time LoRA deltas, and attention over
/// the KV cache after appending the chunk's keys and values. With `timed`, the
/// wall time of products and attention is summed for the profiler.
struct CacheOps: BlockOps {
    let session: InferenceSession
    /// Row t's sequence and position.
    let sequences: [Int], positions: [Int]
    let segments: [InferenceSession.Segment]
    /// A prompt chunk is in the pass: OpenBLAS for products without 8-bit tiles; else the decode kernels.
    let batched: Bool
    let timed: Bool
    var matmulNs: UInt64 = 0, attentionNs: UInt64 = 0

    init(session: InferenceSession, sequences: [Int], positions: [Int], segments: [InferenceSession.Segment], timed: Bool) {
        self.session = session; self.sequences = sequences; self.positions = positions; self.segments = segments
        self.batched = segments.contains { $0.rowBlock }; self.timed = timed
    }

    func withNormWeight(_ norm: BlockNorm, layer: Int, _ body: (UnsafePointer<Float>) -> Void) {
        // The model's loader read every norm its config switches on; the block asks only for those.
        guard let w = session.model.layers[layer].norm(norm) else { preconditionFailure("layer \(layer) has no \(norm) norm") }
        w.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    mutating func project(_ projections: [Projection], layer: Int, input: UnsafeMutablePointer<Float>,
                          outputs: [UnsafeMutablePointer<Float>], tokens T: Int) {
        let t0 = timed ? session.now() : 0
        let s = session, weights = projections.map { $0.matrix(s.model.layers[layer]) }
        // A prompt chunk's products: the 8-bit tiles on the quantized bytes where every
        // weight has them (the fast path), else OpenBLAS on dequantized weights.
        let tiles = s.activations == .q8 && weights.allSatisfy { $0.dtype.traits.gemm_q8 != nil }
        if batched && !tiles {
            for (w, out) in zip(weights, outputs) {
                Ops.matmulBLAS(w.dtype, w.data, rows: w.rows, n: w.cols, x: input, tokens: T, y: out, scratch: s.state.weightScratch,
                               scratchFloats: s.state.weightScratchFloats,
                               threads: s.threads)
            }
        } else {
            let packed = s.packed?.layers[layer]
            Ops.matmul(zip(projections, zip(weights, outputs)).map { p, wo in
                Ops.MatmulPart(wo.0.dtype, wo.0.data, rows: wo.0.rows, y: wo.1, packed: packed?[p])
            }, n: weights[0].cols, x: input, tokens: T, threads: s.threads, activations: s.activations)
        }
        if !s.model.adapters.isEmpty {
            for (p, out) in zip(projections, outputs) {
                for d in s.model.adapters[layer][p] ?? [] { d.apply(x: input, tokens: T, y: out) }
            }
        }
        for (p, out) in zip(projections, outputs) {
            guard let b = s.model.layers[layer].bias(p) else { continue }
            for t in 0..<T { for j in 0..<b.count { out[t * b.count + j] += b[j] } }
        }
        if timed { matmulNs += session.now() - t0 }
    }

    mutating func attend(layer l: Int, q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                         out: UnsafeMutablePointer<Float>, tokens T: Int) {
        let s = session, c = s.model.config, kvType = s.kvType
        let hd = c.headDim, heads = c.headCount, group = heads / c.headCountKV, qDim = s.qDim, kvDim = s.kvDim
        let rowBytes = kvType.bytes(kvDim), headBytes = kvType.bytes(hd)
        // Row t's sequence's cache in this layer, and where its own key and value go.
        let base = sequences.map { s.cacheRow(layer: l, sequence: $0) }, positions = self.positions
        let kc = s.state.keyCache, vc = s.state.valueCache
        for t in 0..<T {
            Quant.quantize(kvType.dtype, k + t * kvDim, kc + (base[t] + positions[t]) * rowBytes, count: kvDim)
            Quant.quantize(kvType.dtype, v + t * kvDim, vc + (base[t] + positions[t]) * rowBytes, count: kvDim)
        }
        let t0 = timed ? s.now() : 0
        let scale = c.attentionScale ?? 1 / Float(hd).squareRoot()
        let window = c.isWindowed(layer: l) ? c.slidingWindow : 0
        var rows: [Int] = []   // rows attending as decode steps
        for g in segments {
            if g.rowBlock {
                let b = s.cacheRow(layer: l, sequence: g.sequence) * rowBytes
                attendRowBlocks(kc: kc + b, vc: vc + b, q: q + g.row * qDim, out: out + g.row * qDim, T: g.count, start: g.position,
                                scale: scale, window: window)
            } else {
                rows += g.row..<(g.row + g.count)
            }
        }
        if !rows.isEmpty {
            // Jobs over the cache with an online softmax: one per (token, head), or,
            // where there are enough of them to keep the workers busy, one per (token,
            // kv head) running that kv head's query heads one after another, so its
            // keys and values come from memory once and then from the core's cache.
            // Each head's result is the same either way.
            let decode = Attention.decode(over: kvType.dtype)
            let Q = SendablePointer(q), A = SendablePointer(out)
            let KC = SendableRawPointer(UnsafeRawPointer(kc)), VC = SendableRawPointer(UnsafeRawPointer(vc))
            let perJob = group > 1 && rows.count * c.headCountKV >= 4 * s.threads ? group : 1, jobsPerToken = heads / perJob
            WorkerPool.shared(s.threads).run(rows.count * jobsPerToken) { job in
                let t = rows[job / jobsPerToken], h0 = job % jobsPerToken * perJob
                // A windowed layer sees the last `window` positions up to its own.
                let end = positions[t] + 1, first = window > 0 ? max(0, end - window) : 0
                for h in h0..<(h0 + perJob) {
                    let row = (base[t] + first) * rowBytes + h / group * headBytes
                    decode(Q.p + t * qDim + h * hd, KC.p + row, VC.p + row, rowBytes, end - first, hd, scale, A.p + t * qDim + h * hd)
                }
            }
        }
        if timed { attentionNs += s.now() - t0 }
    }

    /// Attention for a prompt chunk as matrix products: per head, the causal row
    /// block of WrenKernels/Attention.swift (S = Q·Kᵀ, softmax, S·V through
    /// OpenBLAS) over one kv head's keys and values, widened to f32 unless the
    /// cache is f32. Memory: one head's scores and one kv head's keys and values.
    /// kc, vc: the sequence's cache in this layer; start: the chunk's first position.
    func attendRowBlocks(kc: UnsafeMutableRawPointer, vc: UnsafeMutableRawPointer, q: UnsafeMutablePointer<Float>,
                         out: UnsafeMutablePointer<Float>, T: Int, start: Int, scale: Float, window: Int) {
        let s = session, c = s.model.config, kvType = s.kvType, state = s.state
        let hd = c.headDim, group = c.headCount / c.headCountKV
        let n = start + T, kvDim = s.kvDim, qDim = s.qDim
        for g in 0..<c.headCountKV {
            let kf: UnsafePointer<Float>, vf: UnsafePointer<Float>, ld: Int
            if kvType == .f32 {
                kf = UnsafePointer(kc.assumingMemoryBound(to: Float.self) + g * hd)
                vf = UnsafePointer(vc.assumingMemoryBound(to: Float.self) + g * hd)
                ld = kvDim
            } else {
                let rowBytes = kvType.bytes(kvDim), headBytes = kvType.bytes(hd)
                for p in 0..<n {
                    Quant.dequantize(kvType.dtype, kc + p * rowBytes + g * headBytes, state.kvWide + p * hd, count: hd)
                    Quant.dequantize(kvType.dtype, vc + p * rowBytes + g * headBytes, state.kvWide + (n + p) * hd, count: hd)
                }
                kf = UnsafePointer(state.kvWide); vf = UnsafePointer(state.kvWide + n * hd); ld = hd
            }
            // Blocks of query rows across the workers (disjoint rows of the scores and of
            // out; OpenBLAS single-threaded in each), taken as they come: later rows see
            // more keys. The blocks do not depend on the thread count.
            let rowsPerJob = 16, jobs = (T + rowsPerJob - 1) / rowsPerJob
            let Q = SendablePointer(q), O = SendablePointer(out), P = SendablePointer(state.scores)
            let K = SendablePointer(UnsafeMutablePointer(mutating: kf)), V = SendablePointer(UnsafeMutablePointer(mutating: vf))
            for h in (g * group)..<((g + 1) * group) {
                WorkerPool.shared(s.threads).run(jobs) { j in
                    let rows = (j * rowsPerJob)..<min(T, (j + 1) * rowsPerJob)
                    Attention.rowBlock(q: Q.p + h * hd, ldq: qDim, k: K.p, v: V.p, ldkv: ld, rows: rows, start: start, hd: hd, scale: scale,
                                       probs: P.p, ldp: n, out: O.p + h * hd, ldo: qDim, window: window)
                }
            }
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

/// OpenBLAS's pthread build starts its server threads when the library loads, and
/// they spin on sched_yield for about 0.1 s before sleeping: on a 2-core machine that
/// takes a core from the first decode steps of every run. Sessions run OpenBLAS
/// single-threaded, so its threads are stopped once, where the build has them
/// (`blas_thread_shutdown_`, looked up at run time: the serial build lacks it). A later
/// multi-threaded call would start them again.
private let stopOpenBLASThreads: Void = {
    openblas_set_num_threads(1)
    if let f = dlsym(nil, "blas_thread_shutdown_") {
        typealias Shutdown = @convention(c) () -> Int32
        _ = unsafeBitCast(f, to: Shutdown.self)()
    }
}()

extension InferenceSession {
    /// x · row, for an adapter's trainable token rows on the tied head.
    static func dot(_ x: UnsafePointer<Float>, _ row: [Float]) -> Float {
        var s: Float = 0
        for i in 0..<row.count { s += x[i] * row[i] }
        return s
    }
}
