// Training over a batch of B sequences of L tokens: the forward pass (the
// engine's `LlamaBlock`, run with `TrainOps`, its activations kept per layer
// for the backward pass or recomputed per layer with gradient checkpointing),
// the loss, and the backward pass, producing the gradients of the trainable
// parameters: LoRA factors, or every weight in full finetuning. The frozen
// base stays in the model file's dtype.

import CBLAS
import Foundation
import WrenEngine
import WrenFormat
import WrenKernels

/// What is trained.
public enum TrainMode: Sendable, Equatable {
    case lora(LoRAConfig)
    /// Every weight (embedding, norms, projections, output head), as f32 copies.
    case full
}

/// A norm weight: frozen (the model's) or trainable.
final class NormWeight: @unchecked Sendable {
    let value: UnsafeMutablePointer<Float>
    let param: Parameter?
    private let owned: Bool
    init(_ frozen: [Float]) {
        let v = UnsafeMutablePointer<Float>.allocate(capacity: max(1, frozen.count))
        frozen.withUnsafeBufferPointer { v.initialize(from: $0.baseAddress!, count: frozen.count) }
        value = v
        param = nil
        owned = true
    }
    init(param: Parameter, from values: [Float]) {
        param.set(values)
        value = param.value
        self.param = param
        owned = false
    }
    deinit { if owned { value.deallocate() } }
}

final class TrainLayer: @unchecked Sendable {
    let attnNorm: NormWeight, ffnNorm: NormWeight
    let q, k, v, o, gate, up, down: TrainLinear
    init(attnNorm: NormWeight, ffnNorm: NormWeight, linears: [Projection: TrainLinear]) {
        self.attnNorm = attnNorm; self.ffnNorm = ffnNorm
        q = linears[.q]!; k = linears[.k]!; v = linears[.v]!; o = linears[.o]!
        gate = linears[.gate]!; up = linears[.up]!; down = linears[.down]!
    }
    func linear(_ p: Projection) -> TrainLinear {
        switch p {
        case .q: return q
        case .k: return k
        case .v: return v
        case .o: return o
        case .gate: return gate
        case .up: return up
        case .down: return down
        }
    }
}

/// Activations of one layer for a batch (capacity `maxTokens` rows).
final class LayerActivations: @unchecked Sendable {
    let q, k, v, att, x1, g, u: UnsafeMutablePointer<Float>
    init(maxTokens T: Int, dim: Int, qDim: Int, kvDim: Int, ff: Int) {
        q = .allocate(capacity: T * qDim); k = .allocate(capacity: T * kvDim); v = .allocate(capacity: T * kvDim)
        att = .allocate(capacity: T * qDim); x1 = .allocate(capacity: T * dim)
        g = .allocate(capacity: T * ff); u = .allocate(capacity: T * ff)
    }
    deinit { for p in [q, k, v, att, x1, g, u] { p.deallocate() } }
}

public final class TrainModel: @unchecked Sendable {
    public let base: LlamaModel
    public let config: ModelConfig
    public let mode: TrainMode
    public let maxTokens: Int
    public let threads: Int
    public let checkpointing: Bool
    /// Every trainable tensor, in a fixed order.
    public private(set) var parameters: [Parameter] = []
    /// The trainable tensors of each layer (for LISA's layer sampling).
    let layerParameters: [[Parameter]]
    /// Layers whose weights are trained in the next steps (nil: all). The
    /// others stay frozen: their weight gradients are not computed, though
    /// gradients still flow through them to the layers below (LISA).
    public var activeLayers: Set<Int>?
    let layers: [TrainLayer]
    let embedding: WeightMatrix
    let embeddingParam: Parameter?
    let output: WeightMatrix
    let outputParam: Parameter?
    let outputNorm: NormWeight
    let ctx: TrainContext
    /// LoRA's trainable token rows ([n][dim], PEFT's trainable_tokens_delta: the rows themselves),
    /// their ids, and the base rows they replace (for the tied head's gradient).
    let tokenParam: Parameter?
    let tokenIDs: [Int32]
    let tokenSlot: [Int32: Int]
    let tokenBase: [Float]

    // Shapes: T = maxTokens rows (B sequences × L positions), dim = embeddingLength,
    // qDim = heads·headDim, kvDim = kvHeads·headDim, ff = feedForwardLength.
    /// [blockCount + 1][T][dim] the residual stream entering each layer (and leaving the last).
    let xs: [UnsafeMutablePointer<Float>]
    /// Per layer (one shared set when checkpointing): q, k, v, attention, the
    /// stream after attention, gate and up — what the backward reads.
    let acts: [LayerActivations]
    /// [T][max(dim, qDim)] a norm's output; [T][ff] silu(gate)·up; [T][dim] a projection before its residual add.
    let n, h, proj: UnsafeMutablePointer<Float>
    /// Gradients: [T][dim] of the stream (dx) and of a norm's output (dn); [T][ff] of hidden, gate, up;
    /// [T][qDim] of attention's output and q; [T][kvDim] of k and v.
    let dx, dn, dh, dg, du, datt, dq, dk, dv: UnsafeMutablePointer<Float>
    /// [B·kvHeads][L][L] attention probabilities and their gradient (recomputed per query block).
    let probs, dprobs: UnsafeMutablePointer<Float>
    /// [T][rotary] cos/sin of each row's position (t mod L).
    let ropeTab: UnsafeMutablePointer<Float>
    /// [headChunk][dim] head inputs and their gradient; [headChunk][vocab] logits (then their gradient).
    let headIn, dHeadIn, logits: UnsafeMutablePointer<Float>
    /// Rows of the output head evaluated at once.
    static let headChunk = 128

    /// - Parameters:
    ///   - maxTokens: the most tokens (batch × sequence length) of one micro-batch.
    ///   - maxLength: the longest sequence (for the attention scratch).
    public init(model: LlamaModel, mode: TrainMode, maxTokens: Int, maxLength: Int, threads: Int, checkpointing: Bool = false,
                seed: UInt64 = 0) throws {
        // The backward pass is llama's; the other architectures' extra steps have none yet.
        guard model.config.extensions.isEmpty else {
            throw EngineError.unsupported("finetuning \(model.config.architecture) is not supported yet: "
                                          + "\(model.config.extensions.joined(separator: ", ")) have no backward pass (llama models train)")
        }
        base = model
        config = model.config
        self.mode = mode
        self.maxTokens = maxTokens
        self.threads = max(1, threads)
        self.checkpointing = checkpointing
        let c = model.config
        let dim = c.embeddingLength, qDim = c.headCount * c.headDim, kvDim = c.headCountKV * c.headDim, ff = c.feedForwardLength
        if c.headCount % c.headCountKV != 0 { throw EngineError.unsupported("head count \(c.headCount) is not a multiple of the kv heads") }
        var rng = TrainRNG(seed: seed)
        var params: [Parameter] = []
        var maxRank = 1
        // Full finetuning: f32 copies of every weight.
        func fullCopy(_ name: String, _ w: WeightMatrix) -> (WeightMatrix, Parameter) {
            let p = Parameter(name: name, shape: [w.rows, w.cols])
            Quant.dequantize(w.dtype, w.data, p.value, count: w.rows * w.cols)
            params.append(p)
            return (WeightMatrix(dtype: .f32, rows: w.rows, cols: w.cols, data: UnsafeRawPointer(p.value)), p)
        }
        let isFull = mode == .full
        if isFull {
            let (e, ep) = fullCopy(TensorNames.tokenEmbedding, model.embedding)
            embedding = e; embeddingParam = ep
        } else {
            embedding = model.embedding; embeddingParam = nil
        }
        var built: [TrainLayer] = []
        var perLayer: [[Parameter]] = []
        for (l, w) in model.layers.enumerated() {
            let firstParam = params.count
            func norm(_ t: TensorNames.Layer, _ v: [Float]) -> NormWeight {
                guard isFull else { return NormWeight(v) }
                let pr = Parameter(name: t.name(layer: l), shape: [v.count], decays: false)
                params.append(pr)
                return NormWeight(param: pr, from: v)
            }
            let an = norm(.attnNorm, w.attnNorm)
            var linears: [Projection: TrainLinear] = [:]
            for proj in Projection.allCases {
                let m = proj.matrix(w)
                let wname = proj.tensor.name(layer: l)
                if isFull {
                    let (fm, fp) = fullCopy(wname, m)
                    linears[proj] = TrainLinear(weight: fm, full: fp, lora: nil)
                } else if case let .lora(cfg) = mode, cfg.targets.contains(proj) {
                    let key = TrainRNG.mix(UInt64(l * 16 + Projection.allCases.firstIndex(of: proj)! + 1))
                    let mod = LoRAModule(name: String(wname.dropLast(".weight".count)), rank: cfg.rank, inFeatures: m.cols, outFeatures: m.rows,
                                         scale: cfg.scale, dropout: cfg.dropout, key: key, maxTokens: maxTokens)
                    mod.initialise(&rng)
                    params.append(mod.a); params.append(mod.b)
                    maxRank = max(maxRank, cfg.rank)
                    linears[proj] = TrainLinear(weight: m, full: nil, lora: mod)
                } else {
                    linears[proj] = TrainLinear(weight: m, full: nil, lora: nil)
                }
            }
            let fn = norm(.ffnNorm, w.ffnNorm)
            built.append(TrainLayer(attnNorm: an, ffnNorm: fn, linears: linears))
            perLayer.append(Array(params[firstParam...]))
        }
        layers = built
        layerParameters = perLayer
        if isFull {
            let pr = Parameter(name: TensorNames.outputNorm, shape: [dim], decays: false)
            params.append(pr)
            outputNorm = NormWeight(param: pr, from: model.outputNorm)
            if c.tiedEmbeddings {
                output = embedding; outputParam = embeddingParam
            } else {
                let (o, op) = fullCopy(TensorNames.output, model.output)
                output = o; outputParam = op
            }
        } else {
            outputNorm = NormWeight(model.outputNorm)
            output = model.output; outputParam = nil
        }
        if case let .lora(cfg) = mode, !cfg.trainableTokens.isEmpty {
            let ids = Array(Set(cfg.trainableTokens)).sorted()
            guard ids.first! >= 0, Int(ids.last!) < c.vocabSize else {
                throw EngineError.invalidParameter("trainable token \(ids.first! < 0 ? ids.first! : ids.last!) is outside the vocabulary (0..<\(c.vocabSize))")
            }
            let p = Parameter(name: "trainable_tokens", shape: [ids.count, dim], decays: false)
            var baseRows = [Float](repeating: 0, count: ids.count * dim)
            let emb = model.embedding
            baseRows.withUnsafeMutableBufferPointer { emb.gatherRows(ids, into: $0.baseAddress!) }
            p.set(baseRows)
            params.append(p)
            tokenParam = p; tokenIDs = ids; tokenBase = baseRows
            tokenSlot = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
        } else {
            tokenParam = nil; tokenIDs = []; tokenBase = []; tokenSlot = [:]
        }
        parameters = params
        // Full finetuning copied every weight; the mapped file's pages are not needed any more.
        if isFull { model.file.mapping.adviseDontNeed() }
        let biggest = model.layers.first.map { l in Projection.allCases.map { $0.matrix(l).rows * $0.matrix(l).cols }.max()! } ?? 1
        ctx = TrainContext(scratch: Scratch(weightTile: max(biggest, 4096 * dim)), threads: self.threads, maxTokens: maxTokens,
                           maxIn: max(dim, qDim, ff), maxRank: maxRank)
        let T = maxTokens
        func alloc(_ n: Int) -> UnsafeMutablePointer<Float> { .allocate(capacity: max(1, n)) }
        xs = (0...c.blockCount).map { _ in alloc(T * dim) }
        acts = (0..<(checkpointing ? 1 : c.blockCount)).map { _ in LayerActivations(maxTokens: T, dim: dim, qDim: qDim, kvDim: kvDim, ff: ff) }
        n = alloc(T * max(dim, qDim)); h = alloc(T * ff); proj = alloc(T * dim); dx = alloc(T * dim); dn = alloc(T * max(dim, qDim))
        dh = alloc(T * ff); dg = alloc(T * ff); du = alloc(T * ff); datt = alloc(T * qDim)
        dq = alloc(T * qDim); dk = alloc(T * kvDim); dv = alloc(T * kvDim)
        // B·kvHeads blocks of L × L, B·L ≤ maxTokens, L ≤ maxLength.
        probs = alloc(maxTokens * maxLength * c.headCountKV); dprobs = alloc(maxTokens * maxLength * c.headCountKV)
        ropeTab = alloc(maxTokens * max(2, model.rope.dimensions))
        headIn = alloc(Self.headChunk * dim); dHeadIn = alloc(Self.headChunk * dim); logits = alloc(Self.headChunk * c.vocabSize)
    }

    deinit {
        for p in xs { p.deallocate() }
        for p in [n, h, proj, dx, dn, dh, dg, du, datt, dq, dk, dv, probs, dprobs, ropeTab, headIn, dHeadIn, logits] { p.deallocate() }
    }

    /// The LoRA module of layer `l`, projection `p`, if trained.
    func loraModule(_ l: Int, _ p: Projection) -> LoRAModule? { layers[l].linear(p).lora }

    /// The tensors trained in the next step: all, or those outside the layers
    /// plus the active layers' (`activeLayers`).
    public var trainableParameters: [Parameter] {
        guard let active = activeLayers else { return parameters }
        let inLayers = Set(layerParameters.joined().map(ObjectIdentifier.init))
        return parameters.filter { !inLayers.contains(ObjectIdentifier($0)) } + active.sorted().flatMap { layerParameters[$0] }
    }

    public func zeroGradients() { for p in trainableParameters { p.zeroGrad() } }

    /// Loss of a batch and (when `backward`) gradients added into the parameters.
    /// - Parameters:
    ///   - tokens: B·L ids, B sequences of L tokens (padding allowed where labels are ignored).
    ///   - labels: B·L target ids (the next token) or `ignoreLabel`.
    ///   - gradScale: multiplies every per-token gradient (1 / tokens in the optimizer step).
    ///   - maskKey: selects the dropout masks (vary per micro-batch).
    /// - Returns: the summed loss over labelled positions, and their count.
    ///   - rowScales: per token, multiplies gradScale (a weight per sequence: DPO).
    /// - Returns also each sequence's summed loss (−log-likelihood of its labelled tokens).
    @discardableResult
    public func step(tokens: [Int32], labels: [Int32], batch B: Int, length L: Int, gradScale: Float, backward: Bool,
                     maskKey: UInt64 = 0, rowScales: [Float]? = nil) -> (lossSum: Double, count: Int, perSequence: [Double]) {
        let c = config
        let T = B * L
        precondition(labels.count == T, "one label per token")
        forwardHidden(tokens: tokens, batch: B, length: L, backward: backward, maskKey: maskKey)
        let dim = c.embeddingLength
        // Head over the labelled rows only.
        let rows = (0..<T).filter { labels[$0] != ignoreLabel }
        for r in rows where Int(labels[r]) >= c.vocabSize || labels[r] < 0 {
            preconditionFailure("label \(labels[r]) outside the vocabulary")
        }
        if backward { dn.update(repeating: 0, count: T * dim) }
        var lossSum: Double = 0
        var perSequence = [Double](repeating: 0, count: B)
        var rowLoss = [Double](repeating: 0, count: Self.headChunk)
        var i0 = 0
        while i0 < rows.count {
            let m = min(Self.headChunk, rows.count - i0)
            for j in 0..<m { (headIn + j * dim).update(from: n + rows[i0 + j] * dim, count: dim) }
            Layers.linearForward(output, x: headIn, T: m, y: logits, scratch: ctx.scratch, threads: threads)
            let tiedTokens = c.tiedEmbeddings ? tokenParam : nil
            if let tp = tiedTokens {   // the tied head's trainable rows
                for j in 0..<m { for (k, id) in tokenIDs.enumerated() { logits[j * c.vocabSize + Int(id)] = TrainModel.dot(headIn + j * dim, tp.value + k * dim, dim) } }
            }
            let lab = (0..<m).map { labels[rows[i0 + $0]] }
            let scales = rowScales.map { rs in (0..<m).map { rs[rows[i0 + $0]] } }
            lossSum += lab.withUnsafeBufferPointer { lb in
                rowLoss.withUnsafeMutableBufferPointer { rl in
                    Layers.crossEntropy(logits, labels: lb.baseAddress!, n: m, vocab: c.vocabSize, gradScale: gradScale, backward: backward,
                                        threads: threads, scales: scales, rowLosses: rl.baseAddress!)
                }
            }
            for j in 0..<m { perSequence[rows[i0 + j] / L] += rowLoss[j] }
            if backward {
                // dHeadIn = dLogits·E, scattered back to the rows.
                dHeadIn.update(repeating: 0, count: m * dim)
                Layers.linearBackwardInput(output, dy: logits, T: m, dx: dHeadIn, scratch: ctx.scratch, threads: threads)
                if let tp = tiedTokens {
                    // The product used the base rows for the trainable ids: add dl·(row − base row); the rows' gradient is dl·input.
                    for j in 0..<m {
                        for (k, id) in tokenIDs.enumerated() {
                            let g = logits[j * c.vocabSize + Int(id)]
                            guard g != 0 else { continue }
                            let row = tp.value + k * dim, b = k * dim, dIn = dHeadIn + j * dim, x = headIn + j * dim, gr = tp.grad + k * dim
                            for e in 0..<dim { dIn[e] += g * (row[e] - tokenBase[b + e]); gr[e] += g * x[e] }
                        }
                    }
                }
                for j in 0..<m {
                    let d = dn + rows[i0 + j] * dim, s = dHeadIn + j * dim
                    for e in 0..<dim { d[e] += s[e] }
                }
                if let op = outputParam {
                    Layers.linearBackwardWeight(dy: logits, x: headIn, T: m, rows: output.rows, cols: dim, dw: op.grad, threads: threads)
                }
            }
            i0 += m
        }
        guard backward else { return (lossSum, rows.count, perSequence) }
        backwardFromHidden(tokens: tokens, batch: B, length: L)
        return (lossSum, rows.count, perSequence)
    }

    /// Every layer and the final norm over B sequences of L tokens: row t's final
    /// normed hidden state is left at `n + t·dim` (`hidden(row:)`).
    func forwardHidden(tokens: [Int32], batch B: Int, length L: Int, backward: Bool, maskKey: UInt64) {
        let c = config
        let T = B * L
        precondition(tokens.count == T && T <= maxTokens, "batch larger than the trainer was sized for")
        for t in tokens { precondition(t >= 0 && Int(t) < c.vocabSize, "token id \(t) outside the vocabulary") }
        openblas_set_num_threads(1)   // products are split across the worker pool instead
        ctx.training = backward
        ctx.maskKey = maskKey
        embedding.gatherRows(tokens, into: xs[0])
        if let tp = tokenParam {
            for (t, id) in tokens.enumerated() { if let k = tokenSlot[id] { (xs[0] + t * c.embeddingLength).update(from: tp.value + k * c.embeddingLength, count: c.embeddingLength) } }
        }
        if c.embeddingScale != 1 { for i in 0..<(T * c.embeddingLength) { xs[0][i] *= c.embeddingScale } }
        base.rope.tables(positions: (0..<T).lazy.map { $0 % L }, into: ropeTab)   // row t sits at position t mod L
        for l in 0..<layers.count { layerForward(l, T: T, B: B, L: L) }
        Ops.rmsNorm(xs[layers.count], outputNorm.value, n, rows: T, n: c.embeddingLength, eps: c.rmsNormEps, threads: threads)
    }

    /// Row t's final normed hidden state after `forwardHidden` (embeddingLength floats).
    func hidden(row t: Int) -> UnsafeMutablePointer<Float> { n + t * config.embeddingLength }

    /// The gradient of the final normed hidden states, [T][dim], to fill before `backwardFromHidden`.
    var hiddenGradient: UnsafeMutablePointer<Float> { dn }

    /// Backward from `hiddenGradient` through the final norm, every layer and the
    /// embedding, adding into the trainable parameters' gradients.
    func backwardFromHidden(tokens: [Int32], batch B: Int, length L: Int) {
        let c = config, T = B * L, dim = c.embeddingLength
        let xL = xs[layers.count]
        dx.update(repeating: 0, count: T * dim)
        Ops.rmsNormBackward(xL, outputNorm.value, dy: dn, dx: dx, dw: outputNorm.param?.grad, rows: T, n: dim, eps: c.rmsNormEps,
                            threads: threads)
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            if checkpointing { layerForward(l, T: T, B: B, L: L) }
            layerBackward(l, T: T, B: B, L: L)
        }
        if let ep = embeddingParam {
            for (t, id) in tokens.enumerated() {
                let g = ep.grad + Int(id) * dim, s = dx + t * dim
                for e in 0..<dim { g[e] += s[e] }
            }
        }
        if let tp = tokenParam {
            for (t, id) in tokens.enumerated() {
                guard let k = tokenSlot[id] else { continue }
                let g = tp.grad + k * dim, s = dx + t * dim
                for e in 0..<dim { g[e] += s[e] * c.embeddingScale }
            }
        }
    }

    func activations(_ l: Int) -> LayerActivations { acts[checkpointing ? 0 : l] }

    /// Layer `l`'s forward (the engine's block), its activations kept in `activations(l)` and `xs`.
    func layerForward(_ l: Int, T: Int, B: Int, L: Int) {
        let a = activations(l)
        var ops = TrainOps(model: self, B: B, L: L)
        let buffers = BlockBuffers(input: xs[l], middle: a.x1, output: xs[l + 1], normed: n, q: a.q, k: a.k, v: a.v, attention: a.att,
                                   projected: proj, gate: a.g, up: a.u, hidden: h, rope: ropeTab)
        LlamaBlock.forward(&ops, layer: l, tokens: T, config: config, rotary: base.rope.dimensions, buffers, threads: threads)
    }

    /// On entry `dx` holds the gradient of the layer's output; on exit, of its input.
    func layerBackward(_ l: Int, T: Int, B: Int, L: Int) {
        let c = config, w = layers[l], a = activations(l)
        let dim = c.embeddingLength, ff = c.feedForwardLength, eps = c.rmsNormEps
        let qDim = c.headCount * c.headDim, kvDim = c.headCountKV * c.headDim
        let x0 = xs[l]
        let trained = activeLayers?.contains(l) ?? true
        // Feed-forward: x2 = x1 + down(silu(gate(n2))·up(n2)), n2 = norm(x1).
        h.update(from: a.g, count: T * ff)
        Ops.swiglu(h, a.u, T * ff)
        dh.update(repeating: 0, count: T * ff)
        w.down.backward(h, dy: dx, T: T, dx: dh, ctx: ctx, weights: trained)
        dg.update(repeating: 0, count: T * ff); du.update(repeating: 0, count: T * ff)
        Ops.swigluBackward(a.g, a.u, dh: dh, dg: dg, du: du, n: T * ff, threads: threads)
        Ops.rmsNorm(a.x1, w.ffnNorm.value, n, rows: T, n: dim, eps: eps, threads: threads)
        dn.update(repeating: 0, count: T * dim)
        w.gate.backward(n, dy: dg, T: T, dx: dn, ctx: ctx, weights: trained)
        w.up.backward(n, dy: du, T: T, dx: dn, ctx: ctx, weights: trained)
        Ops.rmsNormBackward(a.x1, w.ffnNorm.value, dy: dn, dx: dx, dw: trained ? w.ffnNorm.param?.grad : nil, rows: T, n: dim, eps: eps,
                            threads: threads)
        // Attention: x1 = x0 + o(attn(rope(q(n1)), rope(k(n1)), v(n1))), n1 = norm(x0).
        datt.update(repeating: 0, count: T * qDim)
        w.o.backward(a.att, dy: dx, T: T, dx: datt, ctx: ctx, weights: trained)
        dq.update(repeating: 0, count: T * qDim); dk.update(repeating: 0, count: T * kvDim); dv.update(repeating: 0, count: T * kvDim)
        Attention.backward(q: a.q, k: a.k, v: a.v, dOut: datt, dq: dq, dk: dk, dv: dv, B: B, L: L, heads: c.headCount,
                                 kvHeads: c.headCountKV, headDim: c.headDim, probs: probs, dprobs: dprobs, threads: threads)
        let rot = base.rope.dimensions
        Ops.ropeBackward(dq, rows: T, heads: c.headCount, headDim: c.headDim, rotary: rot, tables: ropeTab)
        Ops.ropeBackward(dk, rows: T, heads: c.headCountKV, headDim: c.headDim, rotary: rot, tables: ropeTab)
        Ops.rmsNorm(x0, w.attnNorm.value, n, rows: T, n: dim, eps: eps, threads: threads)
        // The first layer's input gradient only matters when the embedding is trained.
        let needInput = l > 0 || embeddingParam != nil || tokenParam != nil
        dn.update(repeating: 0, count: T * dim)
        let dIn: UnsafeMutablePointer<Float>? = needInput ? dn : nil
        w.q.backward(n, dy: dq, T: T, dx: dIn, ctx: ctx, weights: trained)
        w.k.backward(n, dy: dk, T: T, dx: dIn, ctx: ctx, weights: trained)
        w.v.backward(n, dy: dv, T: T, dx: dIn, ctx: ctx, weights: trained)
        if needInput {
            Ops.rmsNormBackward(x0, w.attnNorm.value, dy: dn, dx: dx, dw: trained ? w.attnNorm.param?.grad : nil, rows: T, n: dim, eps: eps,
                                threads: threads)
        }
    }
}

/// The trainer's side of a block: products through the trainable linears
/// (frozen base in its stored dtype, LoRA with dropout, or full f32 weights)
/// and attention within each of the B sequences of L tokens.
struct TrainOps: BlockOps {
    let model: TrainModel
    let B: Int, L: Int

    func withNormWeight(_ norm: BlockNorm, layer: Int, _ body: (UnsafePointer<Float>) -> Void) {
        let w = model.layers[layer]
        switch norm {
        case .attention: body(w.attnNorm.value)
        case .feedForward: body(w.ffnNorm.value)
        default: preconditionFailure("\(norm): refused at init (llama models only)")
        }
    }

    mutating func project(_ projections: [Projection], layer: Int, input: UnsafeMutablePointer<Float>,
                          outputs: [UnsafeMutablePointer<Float>], tokens T: Int) {
        for (p, out) in zip(projections, outputs) { model.layers[layer].linear(p).forward(input, T: T, y: out, ctx: model.ctx) }
    }

    mutating func attend(layer: Int, q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                         out: UnsafeMutablePointer<Float>, tokens: Int) {
        let c = model.config
        Attention.forward(q: q, k: k, v: v, out: out, B: B, L: L, heads: c.headCount, kvHeads: c.headCountKV, headDim: c.headDim,
                          probs: model.probs, threads: model.threads)
    }
}

extension TrainModel {
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var s: Float = 0
        for i in 0..<n { s += a[i] * b[i] }
        return s
    }
}
