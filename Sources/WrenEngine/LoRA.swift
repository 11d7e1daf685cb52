// LoRA deltas applied at run time without merging: for a projection y = W·x,
// y += s·B·(A·x), with A (r × in) and B (out × r) in f32 and the base W left in
// its stored dtype. B's rows follow Wren's row order (q/k rows permuted for
// adjacent-pair RoPE, as in the base); PEFT I/O undoes that at the border.

import WrenFormat
import WrenKernels

/// The seven projections of a llama layer that LoRA can target.
public enum Projection: String, CaseIterable, Sendable, Codable, Comparable {
    case q, k, v, o, gate, up, down

    /// PEFT's module name (`target_modules`).
    public var hfModule: String {
        switch self {
        case .q: return "q_proj"
        case .k: return "k_proj"
        case .v: return "v_proj"
        case .o: return "o_proj"
        case .gate: return "gate_proj"
        case .up: return "up_proj"
        case .down: return "down_proj"
        }
    }

    /// The module's path inside an HF llama layer.
    public var hfPath: String {
        switch self {
        case .q, .k, .v, .o: return "self_attn." + hfModule
        case .gate, .up, .down: return "mlp." + hfModule
        }
    }

    /// Accepts `q` or `q_proj` (likewise for the others).
    public init?(name: String) {
        if let p = Projection(rawValue: name) { self = p; return }
        guard let p = Projection.allCases.first(where: { $0.hfModule == name }) else { return nil }
        self = p
    }

    public static func < (a: Projection, b: Projection) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// The layer tensor this projection is.
    public var tensor: TensorNames.Layer {
        switch self {
        case .q: return .q
        case .k: return .k
        case .v: return .v
        case .o: return .o
        case .gate: return .gate
        case .up: return .up
        case .down: return .down
        }
    }

    /// The base matrix this projection names in a layer.
    public func matrix(_ l: LayerWeights) -> WeightMatrix {
        switch self {
        case .q: return l.q
        case .k: return l.k
        case .v: return l.v
        case .o: return l.o
        case .gate: return l.gate
        case .up: return l.up
        case .down: return l.down
        }
    }
}

/// One low-rank update ΔW = scale·B·A of a projection.
public struct LoRADelta: Sendable {
    public let rank: Int
    public let inFeatures: Int
    public let outFeatures: Int
    /// rank × inFeatures, row-major.
    public var a: [Float]
    /// outFeatures × rank, row-major, rows in Wren order.
    public var b: [Float]
    public var scale: Float

    public init(rank: Int, inFeatures: Int, outFeatures: Int, a: [Float], b: [Float], scale: Float) {
        precondition(a.count == rank * inFeatures && b.count == outFeatures * rank, "LoRA factor sizes do not match the rank")
        self.rank = rank; self.inFeatures = inFeatures; self.outFeatures = outFeatures
        self.a = a; self.b = b; self.scale = scale
    }

    /// y[t] += scale·B·(A·x[t]) for `tokens` rows (x: tokens × in, y: tokens × out).
    /// Token by token, so a token's result does not depend on its batch.
    public func apply(x: UnsafePointer<Float>, tokens: Int, y: UnsafeMutablePointer<Float>) {
        a.withUnsafeBufferPointer { ab in
            b.withUnsafeBufferPointer { bb in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: rank) { ub in
                    let u = ub.baseAddress!
                    for t in 0..<tokens {
                        let xt = x + t * inFeatures, yt = y + t * outFeatures
                        for j in 0..<rank { u[j] = scale * Ops.dot(ab.baseAddress! + j * inFeatures, xt, inFeatures) }
                        for o in 0..<outFeatures { yt[o] += Ops.dot(bb.baseAddress! + o * rank, u, rank) }
                    }
                }
            }
        }
    }

    /// The dense update scale·B·A (out × in).
    public func dense() -> [Float] {
        var d = [Float](repeating: 0, count: outFeatures * inFeatures)
        for o in 0..<outFeatures {
            for j in 0..<rank {
                let s = scale * b[o * rank + j]
                if s == 0 { continue }
                for i in 0..<inFeatures { d[o * inFeatures + i] += s * a[j * inFeatures + i] }
            }
        }
        return d
    }
}

extension LlamaModel {
    /// Adds `deltas[layer][projection]` to the run-time adapters (several adapters stack).
    /// - Throws: when a layer index or a factor's shape does not fit this model.
    public func attach(_ deltas: [Int: [Projection: LoRADelta]], source: String) throws {
        if adapters.isEmpty { adapters = Array(repeating: [:], count: config.blockCount) }
        for (l, byProj) in deltas {
            guard l >= 0, l < config.blockCount else {
                throw EngineError.invalidParameter("\(source): layer \(l) is outside this model's \(config.blockCount) layers")
            }
            for (p, d) in byProj {
                let w = p.matrix(layers[l])
                guard d.inFeatures == w.cols, d.outFeatures == w.rows else {
                    throw EngineError.invalidParameter(
                        "\(source): layer \(l) \(p.hfModule) is \(d.outFeatures)×\(d.inFeatures) but the model's is \(w.rows)×\(w.cols)")
                }
                adapters[l][p, default: []].append(d)
            }
        }
    }

    /// Removes every run-time adapter.
    public func detachAdapters() { adapters = []; tokenRows = [:] }

    /// An adapter's trainable token rows, checked against this model: ids inside the
    /// vocabulary, rows of embeddingLength finite values.
    public func tokenRows(from adapter: PEFTAdapter, source: String) throws -> [Int32: [Float]] {
        guard !adapter.tokenIDs.isEmpty else { return [:] }
        let dim = config.embeddingLength
        guard adapter.tokenRows.count == adapter.tokenIDs.count * dim else {
            throw EngineError.invalidParameter("\(source): trainable token rows have \(adapter.tokenRows.count / max(1, adapter.tokenIDs.count)) values, the model's embedding \(dim)")
        }
        var out: [Int32: [Float]] = [:]
        for (k, id) in adapter.tokenIDs.enumerated() {
            guard id < config.vocabSize else {
                throw EngineError.invalidParameter("\(source): trainable token \(id) is outside this model's \(config.vocabSize)-token vocabulary")
            }
            out[Int32(id)] = Array(adapter.tokenRows[(k * dim)..<((k + 1) * dim)])
        }
        return out
    }
}

extension LlamaModel {
    /// The heads whose rows are permuted in projection `p` (q: heads, k: kv heads), or nil.
    func permutedHeads(_ p: Projection) -> Int? { p.tensor.permutedHeads(config) }

    /// Converts a PEFT adapter (HF row order) into Wren-order deltas for this model.
    /// `scale` multiplies the adapter's own α/r.
    public func deltas(from adapter: PEFTAdapter, scale: Float = 1, source: String) throws -> [Int: [Projection: LoRADelta]] {
        var out: [Int: [Projection: LoRADelta]] = [:]
        for (layer, mods) in adapter.factors {
            for (module, f) in mods {
                guard let p = Projection(name: module) else {
                    throw EngineError.invalidParameter("\(source): module \(module) is not a llama projection")
                }
                // Shapes first: the q/k row permutation below indexes by them.
                guard layer >= 0, layer < config.blockCount else {
                    throw EngineError.invalidParameter("\(source): layer \(layer) is outside this model's \(config.blockCount) layers")
                }
                let w = p.matrix(layers[layer])
                guard f.inFeatures == w.cols, f.outFeatures == w.rows, f.rank > 0,
                      f.a.count == f.rank * f.inFeatures, f.b.count == f.outFeatures * f.rank else {
                    throw EngineError.invalidParameter(
                        "\(source): layer \(layer) \(module) is \(f.outFeatures)×\(f.inFeatures) (rank \(f.rank)) but the model's is \(w.rows)×\(w.cols)")
                }
                var b = f.b
                if let heads = permutedHeads(p) {
                    guard f.outFeatures % heads == 0 else {
                        throw EngineError.invalidParameter("\(source): layer \(layer) \(module) has \(f.outFeatures) rows, not a multiple of \(heads) heads")
                    }
                    let perm = TensorNames.hfToWrenRows(rows: f.outFeatures, heads: heads, rotary: rope.dimensions)
                    for r in 0..<f.outFeatures { for j in 0..<f.rank { b[r * f.rank + j] = f.b[perm[r] * f.rank + j] } }
                }
                let key = PEFTAdapter.key(layer: layer, module: module, factor: "A")
                let s = Float(adapter.config.scale(forKey: key, rank: f.rank)) * scale
                guard s.isFinite else { throw EngineError.invalidParameter("\(source): layer \(layer) \(module): scale \(s) is not finite") }
                out[layer, default: [:]][p] = LoRADelta(rank: f.rank, inFeatures: f.inFeatures, outFeatures: f.outFeatures, a: f.a, b: b, scale: s)
            }
        }
        return out
    }

    /// Loads a PEFT adapter directory and attaches it (unmerged) with an extra `scale`.
    public func attachAdapter(path: String, scale: Float = 1) throws {
        let a = try PEFTAdapter.load(path)
        let rows = try tokenRows(from: a, source: path)
        try attach(try deltas(from: a, scale: scale, source: path), source: path)
        tokenRows.merge(rows) { _, new in new }
    }

    /// B in HF row order (q/k un-permuted) for writing a PEFT adapter.
    public func hfOrderB(_ b: [Float], projection p: Projection, rank: Int) -> [Float] {
        guard let heads = permutedHeads(p) else { return b }
        let rows = b.count / rank
        let perm = TensorNames.hfToWrenRows(rows: rows, heads: heads, rotary: rope.dimensions)
        var out = b
        for r in 0..<rows { for j in 0..<rank { out[perm[r] * rank + j] = b[r * rank + j] } }
        return out
    }
}
