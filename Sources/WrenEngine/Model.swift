// A llama model loaded from a .wren file: hyperparameters, tokenizer, and
// weight views into the mapping (nothing copied but the small 1-D norms,
// which are kept as f32).

import WrenFormat
import WrenKernels
import WrenTokenizer
import Foundation

public enum EngineError: Error, CustomStringConvertible, Equatable {
    case promptTooLong(tokens: Int, context: Int)
    case contextFull(context: Int)
    case emptyPrompt
    case invalidToken(Int32, vocabularySize: Int)
    case unsupported(String)
    case invalidParameter(String)
    /// A setting out of range. `setting` is the option's property name (`FinetuneOptions.lisaLayers`
    /// → "lisaLayers"), so a front end can name its own flag; the library names no flags.
    case invalidSetting(setting: String, reason: String)

    public var description: String {
        switch self {
        case let .promptTooLong(t, c): return "the prompt is \(t) tokens but the context holds \(c) (enlarge the context length, up to the model's limit)"
        case let .contextFull(c): return "the context of \(c) tokens is full"
        case .emptyPrompt: return "the prompt is empty"
        case let .invalidToken(id, n): return "token id \(id) is outside the vocabulary (0..<\(n))"
        case let .unsupported(s): return s
        case let .invalidParameter(s): return s
        case let .invalidSetting(setting, reason): return "\(setting) \(reason)"
        }
    }
}

/// A weight matrix: `rows` × `cols` in `dtype`, a view into the model file.
public struct WeightMatrix: @unchecked Sendable {
    public let dtype: DType
    public let rows: Int
    public let cols: Int
    public let data: UnsafeRawPointer

    /// A view of `rows` × `cols` elements of `dtype` at `data` (the caller keeps them alive).
    public init(dtype: DType, rows: Int, cols: Int, data: UnsafeRawPointer) {
        self.dtype = dtype; self.rows = rows; self.cols = cols; self.data = data
    }

    init(_ t: Tensor) {
        dtype = t.dtype
        rows = t.shape.count == 2 ? t.shape[0] : 1
        cols = t.shape.last!
        data = t.data.baseAddress!
    }
}

public struct LayerWeights: @unchecked Sendable {
    public let attnNorm: [Float]
    public let q, k, v, o: WeightMatrix
    public let ffnNorm: [Float]
    public let gate, up, down: WeightMatrix
}

/// RoPE settings in effect (the model's, possibly overridden).
public struct RopeSettings: Sendable, Equatable {
    public var freqBase: Float
    public var dimensions: Int
    public var scaling: RopeScalingType
    public var factor: Float

    /// Inverse frequencies θ_i = base'^(−2i/d) for i < d/2, with NTK-aware
    /// scaling folded into the base (base' = base·factor^(d/(d−2))).
    public func inverseFrequencies() -> [Float] {
        let d = Double(dimensions)
        var base = Double(freqBase)
        if scaling == .ntk, factor != 1 { base *= pow(Double(factor), d / (d - 2)) }
        return (0..<(dimensions / 2)).map { Float(pow(base, -2 * Double($0) / d)) }
    }

    /// Position fed to the rotation (linear interpolation divides it by the factor).
    public func position(_ p: Int) -> Float {
        scaling == .linear ? Float(p) / factor : Float(p)
    }
}

public final class LlamaModel: @unchecked Sendable {
    public let file: WrenFile
    public let config: ModelConfig
    /// Built on first use (a 49k-token vocabulary takes tens of milliseconds), so that
    /// opening a model only maps it and checks its tables.
    public var tokenizer: Tokenizer {
        tokenizerLock.lock()
        defer { tokenizerLock.unlock() }
        if let t = tokenizerStorage { return t }
        // The metadata was validated in init; building cannot fail for a supported model kind.
        guard let t = try? Tokenizer(TokenizerSpec(tokenizerMetadata)) else {
            preconditionFailure("\(file.path): tokenizer metadata validated at load but rejected by the tokenizer")
        }
        tokenizerStorage = t
        return t
    }
    private var tokenizerStorage: Tokenizer?
    private let tokenizerLock = NSLock()
    let tokenizerMetadata: TokenizerMetadata
    public let embedding: WeightMatrix
    public let output: WeightMatrix
    public let outputNorm: [Float]
    public let layers: [LayerWeights]
    public var rope: RopeSettings
    /// LoRA deltas applied unmerged at run time, per layer (set before creating sessions;
    /// see `attach(_:)`).
    public internal(set) var adapters: [[Projection: [LoRADelta]]] = []

    /// Loads the model at `path` (.wren). RoPE overrides replace the file's base / linear factor.
    public init(path: String, ropeFreqBase: Float? = nil, ropeScale: Float? = nil) throws {
        if let b = ropeFreqBase, !(b.isFinite && b > 1) { throw EngineError.invalidParameter("RoPE frequency base must be a finite number > 1 (got \(b))") }
        if let s = ropeScale, !(s.isFinite && s > 0) { throw EngineError.invalidParameter("RoPE scale must be a finite number > 0 (got \(s))") }
        let f = try WrenFile(path: path)
        file = f
        config = try ModelConfig(metadata: f.metadata, path: path)
        tokenizerMetadata = try TokenizerMetadata(metadata: f.metadata, path: path)
        guard ["gpt2", "llama"].contains(tokenizerMetadata.model) else {
            throw EngineError.unsupported("\(path): tokenizer model \(tokenizerMetadata.model) is not supported")
        }
        let c = config
        switch c.ropeScalingType {
        case .none, .linear, .ntk: break
        case .yarn, .llama3:
            throw EngineError.unsupported("\(path): RoPE scaling \(c.ropeScalingType.rawValue) is not supported yet (none, linear, ntk are)")
        }
        rope = RopeSettings(freqBase: ropeFreqBase ?? c.ropeFreqBase, dimensions: c.ropeDimensionCount,
                            scaling: ropeScale.map { $0 == 1 ? .none : .linear } ?? c.ropeScalingType,
                            factor: ropeScale ?? c.ropeScalingFactor)
        func mat(_ name: String) throws -> WeightMatrix { WeightMatrix(try f.tensor(name)) }
        func vec(_ name: String) throws -> [Float] { try f.tensor(name).floats() }
        let emb = try mat(TensorNames.tokenEmbedding)
        embedding = emb
        output = c.tiedEmbeddings ? emb : try mat(TensorNames.output)
        outputNorm = try vec(TensorNames.outputNorm)
        layers = try (0..<c.blockCount).map { l in
            func name(_ t: TensorNames.Layer) -> String { t.name(layer: l) }
            return LayerWeights(attnNorm: try vec(name(.attnNorm)), q: try mat(name(.q)), k: try mat(name(.k)), v: try mat(name(.v)),
                                o: try mat(name(.o)), ffnNorm: try vec(name(.ffnNorm)), gate: try mat(name(.gate)), up: try mat(name(.up)),
                                down: try mat(name(.down)))
        }
        // The tensor shapes were checked against the hyperparameters when the file was written;
        // check again here, since a .wren may come from elsewhere.
        for (l, w) in layers.enumerated() {
            let qr = c.headCount * c.headDim, kr = c.headCountKV * c.headDim
            guard w.q.rows == qr, w.q.cols == c.embeddingLength, w.k.rows == kr, w.v.rows == kr, w.o.rows == c.embeddingLength,
                  w.o.cols == qr, w.gate.rows == c.feedForwardLength, w.down.cols == c.feedForwardLength,
                  w.attnNorm.count == c.embeddingLength, w.ffnNorm.count == c.embeddingLength else {
                throw FormatError.invalid(path: path, field: "blk.\(l)", reason: "tensor shapes do not match the hyperparameters")
            }
        }
        guard embedding.rows == c.vocabSize, embedding.cols == c.embeddingLength, output.rows == c.vocabSize else {
            throw FormatError.invalid(path: path, field: TensorNames.tokenEmbedding, reason: "shape does not match vocab_size × embedding_length")
        }
        guard tokenizerMetadata.tokens.count <= c.vocabSize else {
            throw FormatError.invalid(path: path, field: "tokenizer.tokens", reason: "\(tokenizerMetadata.tokens.count) tokens for a \(c.vocabSize)-row embedding")
        }
    }
}
