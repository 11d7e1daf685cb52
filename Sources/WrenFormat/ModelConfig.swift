// The canonical, typed model description stored in a .wren file's metadata:
// architecture hyperparameters (ModelConfig) and the tokenizer
// (TokenizerMetadata). Importers fill these from GGUF keys or Hugging Face
// config.json / tokenizer.json, and write them back with fixed key names and
// value types, so two conversions of the same model compare equal.

/// RoPE frequency scaling for long context.
public enum RopeScalingType: String, Sendable, CaseIterable {
    /// No scaling.
    case none
    /// Position interpolation (Chen et al. 2023): positions divided by `factor`.
    case linear
    /// NTK-aware scaling: the base is raised to base·factor^(d/(d−2)).
    case ntk
    /// Dynamic NTK (Hugging Face's "dynamic"): NTK scaling whose base grows with the
    /// sequence length past the original context, base·(factor·len/orig − (factor−1))^(d/(d−2)).
    case dynamicNTK = "dynamic-ntk"
    /// YaRN (Peng et al. 2023).
    case yarn
    /// Llama 3.1's frequency-dependent scaling.
    case llama3
}

/// The feed-forward nonlinearity: SwiGLU's silu(gate)·up or GeGLU's gelu(gate)·up.
public enum Activation: String, Sendable, CaseIterable {
    case silu
    /// GELU with the tanh approximation, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    case geluTanh = "gelu_tanh"
}

/// Hyperparameters of a llama-family model. Architectures are llama plus a few
/// switches, each a small difference in the one forward (WrenEngine/Forward.swift):
/// Gemma 3 is llama with `embeddingScale` √dim, `qkNorm`, `postNorms`, GeGLU
/// and sliding windows on five of six layers with their own RoPE base.
public struct ModelConfig: Sendable, Equatable {
    /// Architectures Wren runs (GGUF `general.architecture` names).
    public static let supportedArchitectures = ["llama", "qwen2", "gemma3"]

    public var architecture = "llama"
    public var vocabSize: Int
    public var contextLength: Int
    public var embeddingLength: Int
    public var feedForwardLength: Int
    public var blockCount: Int
    public var headCount: Int
    public var headCountKV: Int
    /// Per-head dimension (`embeddingLength / headCount` unless the model says otherwise).
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeFreqBase: Float
    /// How many leading dimensions of each head are rotated.
    public var ropeDimensionCount: Int
    public var ropeScalingType: RopeScalingType = .none
    public var ropeScalingFactor: Float = 1
    /// The context length the model was trained with before scaling (0: unknown).
    public var ropeOriginalContextLength: Int = 0
    public var ropeLowFreqFactor: Float = 1
    public var ropeHighFreqFactor: Float = 4
    /// The output head is the token embedding (no `output.weight` tensor).
    public var tiedEmbeddings: Bool
    /// The embedding rows are multiplied by this before the first block (Gemma: √dim).
    public var embeddingScale: Float = 1
    /// q and k are RMS-normalized per head (weights `attn_q_norm`, `attn_k_norm`) before RoPE.
    public var qkNorm = false
    /// The attention and feed-forward outputs are RMS-normalized before their residual
    /// adds (weights `post_attention_norm`, `post_ffw_norm`).
    public var postNorms = false
    public var activation: Activation = .silu
    /// Keys older than this many positions are masked on windowed layers (0: none).
    public var slidingWindow = 0
    /// With a window: 0 windows every layer; N > 0 leaves layer l global when
    /// (l + 1) is a multiple of N (Gemma 3: 6, five local layers then one global).
    public var slidingWindowPattern = 0
    /// RoPE base of the windowed layers (nil: `ropeFreqBase`).
    public var ropeFreqBaseLocal: Float?
    /// Attention logit scale (nil: 1/√headDim).
    public var attentionScale: Float?
    /// q, k and v projections add a bias (Qwen2; tensors `attn_q.bias` …).
    public var qkvBias = false

    /// Whether layer `l` attends through the sliding window.
    public func isWindowed(layer l: Int) -> Bool {
        slidingWindow > 0 && (slidingWindowPattern == 0 || (l + 1) % slidingWindowPattern != 0)
    }

    /// The features beyond plain llama this config switches on, by name (for refusals).
    public var extensions: [String] {
        var e: [String] = []
        if embeddingScale != 1 { e.append("embedding scale") }
        if qkNorm { e.append("QK-norm") }
        if postNorms { e.append("post-norms") }
        if activation != .silu { e.append(activation.rawValue) }
        if slidingWindow > 0 { e.append("sliding-window attention") }
        if qkvBias { e.append("q/k/v biases") }
        return e
    }

    public init(vocabSize: Int, contextLength: Int, embeddingLength: Int, feedForwardLength: Int, blockCount: Int,
                headCount: Int, headCountKV: Int, headDim: Int? = nil, rmsNormEps: Float = 1e-5,
                ropeFreqBase: Float = 10000, ropeDimensionCount: Int? = nil, tiedEmbeddings: Bool) {
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.embeddingLength = embeddingLength
        self.feedForwardLength = feedForwardLength
        self.blockCount = blockCount
        self.headCount = headCount
        self.headCountKV = headCountKV
        self.headDim = headDim ?? embeddingLength / max(1, headCount)
        self.rmsNormEps = rmsNormEps
        self.ropeFreqBase = ropeFreqBase
        self.ropeDimensionCount = ropeDimensionCount ?? self.headDim
        self.tiedEmbeddings = tiedEmbeddings
    }

    public enum Key {
        public static let architecture = "general.architecture"
        public static let vocabSize = "model.vocab_size"
        public static let contextLength = "model.context_length"
        public static let embeddingLength = "model.embedding_length"
        public static let feedForwardLength = "model.feed_forward_length"
        public static let blockCount = "model.block_count"
        public static let headCount = "model.attention.head_count"
        public static let headCountKV = "model.attention.head_count_kv"
        public static let headDim = "model.attention.key_length"
        public static let rmsNormEps = "model.attention.layer_norm_rms_epsilon"
        public static let ropeFreqBase = "model.rope.freq_base"
        public static let ropeDimensionCount = "model.rope.dimension_count"
        public static let ropeScalingType = "model.rope.scaling.type"
        public static let ropeScalingFactor = "model.rope.scaling.factor"
        public static let ropeOriginalContext = "model.rope.scaling.original_context_length"
        public static let ropeLowFreqFactor = "model.rope.scaling.low_freq_factor"
        public static let ropeHighFreqFactor = "model.rope.scaling.high_freq_factor"
        public static let tiedEmbeddings = "model.tie_embeddings"
        public static let embeddingScale = "model.embedding_scale"
        public static let qkNorm = "model.attention.qk_norm"
        public static let postNorms = "model.post_norms"
        public static let activation = "model.feed_forward.activation"
        public static let slidingWindow = "model.attention.sliding_window"
        public static let slidingWindowPattern = "model.attention.sliding_window_pattern"
        public static let ropeFreqBaseLocal = "model.rope.freq_base_local"
        public static let attentionScale = "model.attention.scale"
        public static let qkvBias = "model.attention.qkv_bias"
    }

    /// Reads the canonical keys (`model.*`) of a .wren file's metadata.
    /// - Throws: `FormatError` naming `path` and the missing or mistyped key, or an inconsistent value.
    public init(metadata m: Metadata, path: String) throws {
        let arch = try m.string(Key.architecture, in: path)
        guard Self.supportedArchitectures.contains(arch) else {
            throw FormatError.invalid(path: path, field: Key.architecture,
                                      reason: "unsupported architecture \"\(arch)\" (Wren runs \(Self.supportedArchitectures.joined(separator: ", ")))")
        }
        self.init(vocabSize: try m.int(Key.vocabSize, in: path),
                  contextLength: try m.int(Key.contextLength, in: path),
                  embeddingLength: try m.int(Key.embeddingLength, in: path),
                  feedForwardLength: try m.int(Key.feedForwardLength, in: path),
                  blockCount: try m.int(Key.blockCount, in: path),
                  headCount: try m.int(Key.headCount, in: path),
                  headCountKV: try m.int(Key.headCountKV, in: path),
                  headDim: try m.int(Key.headDim, in: path),
                  rmsNormEps: Float(try m.double(Key.rmsNormEps, in: path)),
                  ropeFreqBase: Float(try m.double(Key.ropeFreqBase, in: path)),
                  ropeDimensionCount: try m.int(Key.ropeDimensionCount, in: path),
                  tiedEmbeddings: m[Key.tiedEmbeddings]?.bool ?? false)
        let st = try m.string(Key.ropeScalingType, in: path)
        guard let t = RopeScalingType(rawValue: st) else {
            throw FormatError.invalid(path: path, field: Key.ropeScalingType, reason: "unknown RoPE scaling \"\(st)\"")
        }
        ropeScalingType = t
        ropeScalingFactor = Float(try m.double(Key.ropeScalingFactor, in: path))
        ropeOriginalContextLength = try m.int(Key.ropeOriginalContext, in: path)
        ropeLowFreqFactor = Float(try m.double(Key.ropeLowFreqFactor, in: path))
        ropeHighFreqFactor = Float(try m.double(Key.ropeHighFreqFactor, in: path))
        architecture = arch
        // The architecture switches (absent in files written before them: plain llama).
        embeddingScale = Float(try m.optionalDouble(Key.embeddingScale, in: path) ?? 1)
        qkNorm = m[Key.qkNorm]?.bool ?? false
        postNorms = m[Key.postNorms]?.bool ?? false
        if let a = m[Key.activation]?.string {
            guard let act = Activation(rawValue: a) else {
                throw FormatError.invalid(path: path, field: Key.activation, reason: "unknown activation \"\(a)\" (silu, gelu_tanh)")
            }
            activation = act
        }
        slidingWindow = try m.optionalInt(Key.slidingWindow, in: path) ?? 0
        slidingWindowPattern = try m.optionalInt(Key.slidingWindowPattern, in: path) ?? 0
        ropeFreqBaseLocal = try m.optionalDouble(Key.ropeFreqBaseLocal, in: path).map { Float($0) }
        attentionScale = try m.optionalDouble(Key.attentionScale, in: path).map { Float($0) }
        qkvBias = m[Key.qkvBias]?.bool ?? false
        try validate(path: path)
    }

    /// Checks that the numbers describe a buildable model.
    public func validate(path: String) throws {
        func bad(_ key: String, _ why: String) -> FormatError { .invalid(path: path, field: key, reason: why) }
        for (k, v) in [(Key.vocabSize, vocabSize), (Key.contextLength, contextLength), (Key.embeddingLength, embeddingLength),
                       (Key.feedForwardLength, feedForwardLength), (Key.blockCount, blockCount), (Key.headCount, headCount),
                       (Key.headCountKV, headCountKV), (Key.headDim, headDim)] where v <= 0 || v > 1 << 30 {
            throw bad(k, "\(v) is out of range")
        }
        guard headCount % headCountKV == 0 else { throw bad(Key.headCountKV, "\(headCountKV) does not divide head_count \(headCount)") }
        guard headDim % 2 == 0 else { throw bad(Key.headDim, "\(headDim) is odd; RoPE rotates pairs") }
        guard ropeDimensionCount > 0, ropeDimensionCount <= headDim, ropeDimensionCount % 2 == 0 else {
            throw bad(Key.ropeDimensionCount, "\(ropeDimensionCount) must be even and at most the head dimension \(headDim)")
        }
        guard rmsNormEps > 0, rmsNormEps.isFinite else { throw bad(Key.rmsNormEps, "\(rmsNormEps) must be positive") }
        guard ropeFreqBase > 1, ropeFreqBase.isFinite else { throw bad(Key.ropeFreqBase, "\(ropeFreqBase) must be > 1") }
        guard ropeScalingFactor > 0, ropeScalingFactor.isFinite else { throw bad(Key.ropeScalingFactor, "\(ropeScalingFactor) must be positive") }
        guard embeddingScale > 0, embeddingScale.isFinite else { throw bad(Key.embeddingScale, "\(embeddingScale) must be positive") }
        guard slidingWindow >= 0, slidingWindow <= 1 << 30 else { throw bad(Key.slidingWindow, "\(slidingWindow) is out of range") }
        guard slidingWindowPattern >= 0, slidingWindowPattern <= 1 << 20 else {
            throw bad(Key.slidingWindowPattern, "\(slidingWindowPattern) is out of range")
        }
        if let b = ropeFreqBaseLocal, !(b > 1 && b.isFinite) { throw bad(Key.ropeFreqBaseLocal, "\(b) must be > 1") }
        if let a = attentionScale, !(a > 0 && a.isFinite) { throw bad(Key.attentionScale, "\(a) must be positive") }
    }

    /// Writes every canonical key with its fixed type.
    public func write(to m: inout Metadata) {
        m[Key.architecture] = .string(architecture)
        m[Key.vocabSize] = .uint32(UInt32(vocabSize))
        m[Key.contextLength] = .uint32(UInt32(contextLength))
        m[Key.embeddingLength] = .uint32(UInt32(embeddingLength))
        m[Key.feedForwardLength] = .uint32(UInt32(feedForwardLength))
        m[Key.blockCount] = .uint32(UInt32(blockCount))
        m[Key.headCount] = .uint32(UInt32(headCount))
        m[Key.headCountKV] = .uint32(UInt32(headCountKV))
        m[Key.headDim] = .uint32(UInt32(headDim))
        m[Key.rmsNormEps] = .float32(rmsNormEps)
        m[Key.ropeFreqBase] = .float32(ropeFreqBase)
        m[Key.ropeDimensionCount] = .uint32(UInt32(ropeDimensionCount))
        m[Key.ropeScalingType] = .string(ropeScalingType.rawValue)
        m[Key.ropeScalingFactor] = .float32(ropeScalingFactor)
        m[Key.ropeOriginalContext] = .uint32(UInt32(ropeOriginalContextLength))
        m[Key.ropeLowFreqFactor] = .float32(ropeLowFreqFactor)
        m[Key.ropeHighFreqFactor] = .float32(ropeHighFreqFactor)
        m[Key.tiedEmbeddings] = .bool(tiedEmbeddings)
        // The architecture switches, only where they differ from llama (so llama files stay as they were).
        if embeddingScale != 1 { m[Key.embeddingScale] = .float32(embeddingScale) }
        if qkNorm { m[Key.qkNorm] = .bool(true) }
        if postNorms { m[Key.postNorms] = .bool(true) }
        if activation != .silu { m[Key.activation] = .string(activation.rawValue) }
        if slidingWindow > 0 {
            m[Key.slidingWindow] = .uint32(UInt32(slidingWindow))
            m[Key.slidingWindowPattern] = .uint32(UInt32(slidingWindowPattern))
        }
        if let b = ropeFreqBaseLocal { m[Key.ropeFreqBaseLocal] = .float32(b) }
        if let a = attentionScale { m[Key.attentionScale] = .float32(a) }
        if qkvBias { m[Key.qkvBias] = .bool(true) }
    }
}

/// The tokenizer as stored in metadata (GGUF's `tokenizer.ggml.*` without "ggml.").
public struct TokenizerMetadata: Sendable, Equatable {
    /// "gpt2" (byte-level BPE) or "llama" (SentencePiece-style BPE with byte fallback).
    public var model: String
    /// Pre-tokenizer name, as llama.cpp names them ("smollm", "llama-bpe", "gpt2", "default", ...).
    public var pre: String
    public var tokens: MetaArray
    public var scores: MetaArray?
    /// GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    public var tokenTypes: MetaArray?
    public var merges: MetaArray?
    public var bosID: Int?
    public var eosID: Int?
    public var unkID: Int?
    public var padID: Int?
    public var addBOS: Bool
    public var addEOS: Bool
    public var addSpacePrefix: Bool
    public var chatTemplate: String?

    public enum Key {
        public static let model = "tokenizer.model"
        public static let pre = "tokenizer.pre"
        public static let tokens = "tokenizer.tokens"
        public static let scores = "tokenizer.scores"
        public static let tokenTypes = "tokenizer.token_type"
        public static let merges = "tokenizer.merges"
        public static let bos = "tokenizer.bos_token_id"
        public static let eos = "tokenizer.eos_token_id"
        public static let unk = "tokenizer.unknown_token_id"
        public static let pad = "tokenizer.padding_token_id"
        public static let addBOS = "tokenizer.add_bos_token"
        public static let addEOS = "tokenizer.add_eos_token"
        public static let addSpacePrefix = "tokenizer.add_space_prefix"
        public static let chatTemplate = "tokenizer.chat_template"
    }

    public init(model: String, pre: String, tokens: [String], scores: [Float]? = nil, tokenTypes: [Int32]? = nil,
                merges: [String]? = nil, bosID: Int? = nil, eosID: Int? = nil, unkID: Int? = nil, padID: Int? = nil,
                addBOS: Bool? = nil, addEOS: Bool = false, addSpacePrefix: Bool? = nil, chatTemplate: String? = nil) {
        self.model = model
        self.pre = pre
        self.tokens = MetaArray(strings: tokens)
        self.scores = scores.map { MetaArray(float32s: $0) }
        self.tokenTypes = tokenTypes.map { MetaArray(int32s: $0) }
        self.merges = merges.map { MetaArray(strings: $0) }
        self.bosID = bosID
        self.eosID = eosID
        self.unkID = unkID
        self.padID = padID
        self.addBOS = addBOS ?? (model == "llama")
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix ?? (model == "llama")
        self.chatTemplate = chatTemplate
    }

    /// Reads `tokenizer.*` keys. `prefix` is "tokenizer." for .wren and "tokenizer.ggml." for GGUF.
    public init(metadata m: Metadata, path: String, prefix: String = "tokenizer.") throws {
        func k(_ key: String) -> String { prefix + key.dropFirst("tokenizer.".count) }
        model = try m.string(k(Key.model), in: path)
        guard model == "gpt2" || model == "llama" else {
            throw FormatError.invalid(path: path, field: k(Key.model), reason: "unsupported tokenizer model \"\(model)\" (gpt2 or llama)")
        }
        pre = m[k(Key.pre)]?.string ?? "default"
        guard let toks = m[k(Key.tokens)]?.array, toks.elementType == .string, toks.count > 0 else {
            throw FormatError.wrongFieldType(path: path, field: k(Key.tokens), expected: "a non-empty array of strings")
        }
        tokens = toks
        func numeric(_ key: String) throws -> MetaArray? {
            guard let v = m[k(key)] else { return nil }
            guard let a = v.array, a.elementType != .string, a.count == toks.count else {
                throw FormatError.wrongFieldType(path: path, field: k(key), expected: "a numeric array with one entry per token (\(toks.count))")
            }
            return a
        }
        scores = try numeric(Key.scores).map { MetaArray(float32s: $0.floats!) }
        tokenTypes = try numeric(Key.tokenTypes).map { MetaArray(int32s: $0.int32s!) }
        if let v = m[k(Key.merges)] {
            guard let a = v.array, a.elementType == .string else {
                throw FormatError.wrongFieldType(path: path, field: k(Key.merges), expected: "an array of strings")
            }
            merges = a
        }
        func id(_ key: String) throws -> Int? {
            guard let i = try m.optionalInt(k(key), in: path) else { return nil }
            guard i >= 0, i < toks.count else {
                throw FormatError.invalid(path: path, field: k(key), reason: "token id \(i) outside the vocabulary of \(toks.count)")
            }
            return i
        }
        bosID = try id(Key.bos)
        eosID = try id(Key.eos)
        unkID = try id(Key.unk)
        padID = try id(Key.pad)
        addBOS = m[k(Key.addBOS)]?.bool ?? (model == "llama")
        addEOS = m[k(Key.addEOS)]?.bool ?? false
        addSpacePrefix = m[k(Key.addSpacePrefix)]?.bool ?? (model == "llama")
        chatTemplate = m[Key.chatTemplate]?.string
    }

    public func write(to m: inout Metadata) {
        m[Key.model] = .string(model)
        m[Key.pre] = .string(pre)
        m[Key.tokens] = .array(tokens)
        m[Key.scores] = scores.map { .array($0) }
        m[Key.tokenTypes] = tokenTypes.map { .array($0) }
        m[Key.merges] = merges.map { .array($0) }
        m[Key.bos] = bosID.map { .uint32(UInt32($0)) }
        m[Key.eos] = eosID.map { .uint32(UInt32($0)) }
        m[Key.unk] = unkID.map { .uint32(UInt32($0)) }
        m[Key.pad] = padID.map { .uint32(UInt32($0)) }
        m[Key.addBOS] = .bool(addBOS)
        m[Key.addEOS] = .bool(addEOS)
        m[Key.addSpacePrefix] = .bool(addSpacePrefix)
        m[Key.chatTemplate] = chatTemplate.map { .string($0) }
    }
}
