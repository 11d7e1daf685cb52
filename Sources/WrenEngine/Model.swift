// A llama model loaded from a .wren file: hyperparameters, tokenizer, and
// weight views into the mapping (nothing copied but the small 1-D norms,
// which are kept as f32).

import WrenFormat
import CWrenKernels
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
    /// QK-norm weights (headDim each), when the config has QK-norm.
    public var qNorm: [Float]? = nil, kNorm: [Float]? = nil
    /// Post-norm weights (embeddingLength each), when the config has post-norms.
    public var postAttnNorm: [Float]? = nil, postFFNNorm: [Float]? = nil
    /// q/k/v biases (one per output row), when the config has them.
    public var qBias: [Float]? = nil, kBias: [Float]? = nil, vBias: [Float]? = nil

    /// The bias added to `p`'s output rows, if any.
    public func bias(_ p: Projection) -> [Float]? {
        switch p {
        case .q: return qBias
        case .k: return kBias
        case .v: return vBias
        default: return nil
        }
    }

    /// The weight of `norm` (nil for a norm this layer does not have).
    public func norm(_ norm: BlockNorm) -> [Float]? {
        switch norm {
        case .attention: return attnNorm
        case .feedForward: return ffnNorm
        case .query: return qNorm
        case .key: return kNorm
        case .postAttention: return postAttnNorm
        case .postFeedForward: return postFFNNorm
        }
    }
}

/// RoPE settings in effect (the model's, possibly overridden).
public struct RopeSettings: Sendable, Equatable {
    public var freqBase: Float
    public var dimensions: Int
    public var scaling: RopeScalingType
    public var factor: Float
    /// The context the model was trained with: YaRN's and dynamic NTK's reference length.
    public var originalContext: Int
    /// YaRN: rotation counts bounding the ramp between extrapolated (fast) and
    /// interpolated (slow) dimensions, and the attention factor (nil: 0.1·ln(factor) + 1).
    public var yarnBetaFast: Float = 32
    public var yarnBetaSlow: Float = 1
    public var yarnAttentionFactor: Float?
    /// llama3: the wavelength band, as multiples of the original context, between
    /// frequencies kept (shorter than original/high) and divided by the factor
    /// (longer than original/low), with a linear blend in between.
    public var lowFreqFactor: Float = 1
    public var highFreqFactor: Float = 4
    /// Per-pair divisors of the frequencies stored in the model (GGUF `rope_freqs`), applied after
    /// the scaling method; nil: none.
    public var frequencyFactors: [Float]?

    public init(freqBase: Float, dimensions: Int, scaling: RopeScalingType, factor: Float, originalContext: Int) {
        self.freqBase = freqBase; self.dimensions = dimensions; self.scaling = scaling; self.factor = factor
        self.originalContext = originalContext
    }

    /// Inverse frequencies θ_i for i < d/2 when the sequence is `length` tokens long
    /// (only dynamic NTK depends on it):
    ///   none, linear: base^(−2i/d); ntk: base' = base·factor^(d/(d−2));
    ///   dynamic-ntk: base' = base·(factor·L/orig − (factor−1))^(d/(d−2)), L = max(length, orig);
    ///   yarn: each θ_i blended between base^(−2i/d) and base^(−2i/d)/factor by a linear ramp
    ///   over dimensions, from those rotating more than betaFast times in the original
    ///   context (kept) to those rotating fewer than betaSlow times (interpolated);
    ///   llama3: θ_i kept when its wavelength 2π/θ_i is under orig/high, divided by factor
    ///   over orig/low, and between them (1 − s)·θ_i/factor + s·θ_i with
    ///   s = (orig/wavelength − low)/(high − low).
    /// Stored frequency factors then divide each θ_i.
    public func inverseFrequencies(length: Int = 0) -> [Float] {
        let f = scaledInverseFrequencies(length: length)
        guard let ff = frequencyFactors, ff.count == f.count else { return f }
        return zip(f, ff).map { $0 / $1 }
    }

    func scaledInverseFrequencies(length: Int) -> [Float] {
        let d = Double(dimensions), half = dimensions / 2
        var base = Double(freqBase)
        switch scaling {
        case .ntk where factor != 1:
            base *= pow(Double(factor), d / (d - 2))
        case .dynamicNTK where factor != 1 && originalContext > 0:
            let L = Double(max(length, originalContext)), f = Double(factor)
            base *= pow(f * L / Double(originalContext) - (f - 1), d / (d - 2))
        case .yarn where originalContext > 0:
            func correctionDim(_ rotations: Double) -> Double {
                d * Foundation.log(Double(originalContext) / (rotations * 2 * Double.pi)) / (2 * Foundation.log(base))
            }
            let low = max(Foundation.floor(correctionDim(Double(yarnBetaFast))), 0)
            var high = min(Foundation.ceil(correctionDim(Double(yarnBetaSlow))), d - 1)
            if low == high { high += 0.001 }
            return (0..<half).map { i in
                let extrapolated = pow(base, -2 * Double(i) / d), interpolated = extrapolated / Double(factor)
                let keep = 1 - min(max((Double(i) - low) / (high - low), 0), 1)
                return Float(interpolated * (1 - keep) + extrapolated * keep)
            }
        case .llama3 where originalContext > 0 && factor != 1:
            let orig = Double(originalContext), f = Double(factor), lo = Double(lowFreqFactor), hi = Double(highFreqFactor)
            return (0..<half).map { i in
                let theta = pow(base, -2 * Double(i) / d), wavelength = 2 * Double.pi / theta
                if wavelength < orig / hi { return Float(theta) }
                if wavelength > orig / lo { return Float(theta / f) }
                let s = (orig / wavelength - lo) / (hi - lo)
                return Float((1 - s) * theta / f + s * theta)
            }
        default: break
        }
        return (0..<half).map { Float(pow(base, -2 * Double($0) / d)) }
    }

    /// Position fed to the rotation (linear interpolation divides it by the factor).
    public func position(_ p: Int) -> Float {
        scaling == .linear ? Float(p) / factor : Float(p)
    }

    /// Scale of the cos/sin table: YaRN's attention factor (q·k then scales by its square); 1 otherwise.
    public var magnitude: Float {
        guard scaling == .yarn else { return 1 }
        return yarnAttentionFactor ?? (factor > 1 ? Float(0.1 * Foundation.log(Double(factor)) + 1) : 1)
    }
}

/// A model's q4_0 and q4_1 matrices (q8_0 too with AVX-512 VNNI: the types the
/// kernel set in use runs packed) packed eight rows at a time for the products of
/// 1 to 8 tokens (`wren_pack_rows8`: each block of eight rows as the eight-row
/// kernels read it, with no shuffles). Built once per file, on the first session
/// that can use it, in memory of its own: the same size again as
/// those matrices (the mapped file stays for everything else: prompts, training,
/// export), and never more than a quarter of the machine's memory (else nothing
/// is packed). The results are the same bits as from the rows themselves.
public final class PackedWeights: @unchecked Sendable {
    /// Per layer, the packed projections (those of a packable type with rows a multiple of 8).
    public let layers: [[Projection: UnsafeRawPointer]]
    public let output: UnsafeRawPointer?
    /// Bytes packed.
    public let bytes: Int
    private let buffers: [UnsafeMutableRawPointer]

    init?(_ model: LlamaModel) {
        var jobs: [(WeightMatrix, layer: Int, Projection?)] = []
        // The types the kernel set in use runs packed (AVX2: q4_0 and q4_1; VNNI: q8_0 too).
        func packable(_ w: WeightMatrix) -> Bool { wren_packed8_runs(w.dtype.rawValue) != 0 && w.rows % 8 == 0 && w.rows > 0 }
        for (l, layer) in model.layers.enumerated() {
            for p in Projection.allCases where packable(p.matrix(layer)) { jobs.append((p.matrix(layer), l, p)) }
        }
        if packable(model.output) { jobs.append((model.output, -1, nil)) }
        // Never more than a quarter of the machine's memory.
        let total = jobs.reduce(0) { $0 + $1.0.rows * $1.0.dtype.byteCount(elements: $1.0.cols)! }
        let physical = Double(sysconf(Int32(_SC_PHYS_PAGES))) * Double(sysconf(Int32(_SC_PAGESIZE)))
        guard !jobs.isEmpty, physical <= 0 || Double(total) <= physical / 4 else { return nil }
        // Memory that cannot be had (a ulimit, a cgroup) means no packing, not a trap.
        var out: [UnsafeMutableRawPointer] = []
        for j in jobs {
            var p: UnsafeMutableRawPointer? = nil
            guard posix_memalign(&p, 64, j.0.rows * j.0.dtype.byteCount(elements: j.0.cols)!) == 0, let p else {
                out.forEach { free($0) }
                return nil
            }
            out.append(p)
        }
        let J: [(w: WeightMatrix, o: SendableRawPointer)] = zip(jobs, out).map { ($0.0, SendableRawPointer(UnsafeRawPointer($1))) }
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            let w = J[i].w
            let n = wren_pack_rows8(w.dtype.rawValue, w.data, w.dtype.byteCount(elements: w.cols)!, Int32(w.rows),
                                    UnsafeMutableRawPointer(mutating: J[i].o.p))
            precondition(n == w.rows * w.dtype.byteCount(elements: w.cols)!, "wren_pack_rows8 refused a packable matrix")
        }
        var layers = [[Projection: UnsafeRawPointer]](repeating: [:], count: model.layers.count)
        var output: UnsafeRawPointer? = nil
        for (k, j) in jobs.enumerated() {
            if let p = j.2 { layers[j.layer][p] = UnsafeRawPointer(out[k]) } else { output = UnsafeRawPointer(out[k]) }
        }
        self.layers = layers
        self.output = output
        self.buffers = out
        self.bytes = total
    }

    deinit { buffers.forEach { free($0) } }

    /// One packed copy per file while any model holds it: `wren serve` loads the base once
    /// per served name (each --lora), and those share it. The key is the file's identity
    /// (device, inode, size, modification time), so a replaced file is packed anew.
    static func shared(for model: LlamaModel) -> PackedWeights? {
        var st = stat()
        guard stat(model.file.path, &st) == 0 else { return PackedWeights(model) }
        let key = "\(st.st_dev):\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        registryLock.lock()
        defer { registryLock.unlock() }
        if let p = registry[key]?.value { return p }
        let p = PackedWeights(model)
        registry[key] = Weak(value: p)
        return p
    }
    private struct Weak { weak var value: PackedWeights? }
    nonisolated(unsafe) private static var registry: [String: Weak] = [:]
    private static let registryLock = NSLock()

    /// Whether sessions pack: with the AVX2 or AVX-512 VNNI kernels (not the portable
    /// C), unless WREN_REPACK=0.
    public static var enabled: Bool {
        ProcessInfo.processInfo.environment["WREN_REPACK"] != "0" && wren_kernels_simd() >= 1
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
    public let tokenizerMetadata: TokenizerMetadata
    public let embedding: WeightMatrix
    public let output: WeightMatrix
    public let outputNorm: [Float]
    public let layers: [LayerWeights]
    public var rope: RopeSettings
    /// The sliding-window layers' RoPE, when their base differs from `rope`'s (Gemma 3:
    /// 10000 locally, unscaled).
    public var ropeLocal: RopeSettings?
    /// LoRA deltas applied unmerged at run time, per layer (set before creating sessions;
    /// see `attach(_:)`).
    public internal(set) var adapters: [[Projection: [LoRADelta]]] = []
    /// Embedding rows an adapter replaces (PEFT trainable tokens), by id; with tied embeddings
    /// they are the output head's rows too.
    public internal(set) var tokenRows: [Int32: [Float]] = [:]

    /// The packed copy of the weights (built on first call), or nil where packing is
    /// off or nothing is packable.
    public func packedWeights() -> PackedWeights? {
        packLock.lock()
        defer { packLock.unlock() }
        if !packTried {
            packTried = true
            packStorage = PackedWeights.enabled ? PackedWeights.shared(for: self) : nil
        }
        return packStorage
    }
    private var packStorage: PackedWeights?
    private var packTried = false
    private let packLock = NSLock()

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
        rope = RopeSettings(freqBase: ropeFreqBase ?? c.ropeFreqBase, dimensions: c.ropeDimensionCount,
                            scaling: ropeScale.map { $0 == 1 ? .none : .linear } ?? c.ropeScalingType,
                            factor: ropeScale ?? c.ropeScalingFactor,
                            originalContext: c.ropeOriginalContextLength > 0 ? c.ropeOriginalContextLength : c.contextLength)
        rope.lowFreqFactor = c.ropeLowFreqFactor
        rope.highFreqFactor = c.ropeHighFreqFactor
        // llama.cpp's GGUFs of Llama 3.1+ carry the llama3 scaling as per-pair frequency divisors.
        if let i = f.tensors.firstIndex(where: { $0.name == TensorNames.ropeFreqs }) {
            let factors = try f.verifiedTensor(at: i).floats()
            guard factors.count == c.ropeDimensionCount / 2, factors.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw FormatError.invalid(path: path, field: TensorNames.ropeFreqs,
                                          reason: "needs \(c.ropeDimensionCount / 2) positive factors (got \(factors.count))")
            }
            rope.frequencyFactors = factors
        }
        if let b = c.ropeFreqBaseLocal, b != rope.freqBase || rope.scaling != .none {
            ropeLocal = RopeSettings(freqBase: b, dimensions: c.ropeDimensionCount, scaling: .none, factor: 1,
                                     originalContext: rope.originalContext)
        }
        func mat(_ name: String) throws -> WeightMatrix { WeightMatrix(try f.tensor(name)) }
        func vec(_ name: String) throws -> [Float] { try f.tensor(name).floats() }
        let emb = try mat(TensorNames.tokenEmbedding)
        embedding = emb
        output = c.tiedEmbeddings ? emb : try mat(TensorNames.output)
        outputNorm = try vec(TensorNames.outputNorm)
        layers = try (0..<c.blockCount).map { l in
            func name(_ t: TensorNames.Layer) -> String { t.name(layer: l) }
            func extra(_ t: TensorNames.ExtraLayer, _ n: Int) throws -> [Float]? {
                guard t.isUsed(by: c) else { return nil }
                let v = try vec(t.name(layer: l))
                guard v.count == n else {
                    throw FormatError.invalid(path: path, field: t.name(layer: l), reason: "\(v.count) values, expected \(n)")
                }
                return v
            }
            var w = LayerWeights(attnNorm: try vec(name(.attnNorm)), q: try mat(name(.q)), k: try mat(name(.k)), v: try mat(name(.v)),
                                 o: try mat(name(.o)), ffnNorm: try vec(name(.ffnNorm)), gate: try mat(name(.gate)), up: try mat(name(.up)),
                                 down: try mat(name(.down)))
            w.qNorm = try extra(.qNorm, c.headDim); w.kNorm = try extra(.kNorm, c.headDim)
            w.postAttnNorm = try extra(.postAttnNorm, c.embeddingLength); w.postFFNNorm = try extra(.postFFNNorm, c.embeddingLength)
            w.qBias = try extra(.qBias, TensorNames.ExtraLayer.qBias.length(c))
            w.kBias = try extra(.kBias, TensorNames.ExtraLayer.kBias.length(c))
            w.vBias = try extra(.vBias, TensorNames.ExtraLayer.vBias.length(c))
            return w
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
