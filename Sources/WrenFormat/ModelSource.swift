// A model as read from any supported input (.gguf, a Hugging Face directory,
// or a .wren file), in Wren's canonical naming and metadata, with tensors
// still pointing into the input's mapping. `ModelConverter` turns it into a
// .wren file; `HFExporter` into a Hugging Face directory.

import Foundation
import WrenKernels

/// One tensor of a source model, in Wren's naming and row order.
public struct SourceTensor: @unchecked Sendable {
    public var name: String
    public var dtype: DType
    /// Outermost first.
    public var shape: [Int]
    /// The stored bytes, in source row order.
    public var data: UnsafeRawBufferPointer
    /// When set, Wren row r is source row `rowOrder[r]` (the HF q/k permutation).
    public var rowOrder: [Int]?
    /// The dtype the tensor had before an export dequantized it (round trips).
    public var originalDType: DType?
    /// When set (1-D tensors), Wren element i is source element `elementOrder[i]`
    /// (a QK-norm weight follows its head's row permutation).
    public var elementOrder: [Int]?
    /// Added to every value on the way in (Gemma's Hugging Face norms store w for 1 + w).
    public var valueOffset: Float = 0

    public var rowCount: Int { shape.count == 1 ? 1 : shape.dropLast().reduce(1, *) }
    public var rowLength: Int { shape.last! }
    public var rowBytes: Int { dtype.byteCount(elements: rowLength)! }

    /// Copies row `r` (in Wren order) as stored bytes.
    public func rowBytes(_ r: Int) -> UnsafeRawBufferPointer {
        let src = rowOrder?[r] ?? r
        let rb = rowBytes
        return UnsafeRawBufferPointer(rebasing: data[(src * rb)..<((src + 1) * rb)])
    }

    /// Writes this tensor in Wren row order, converted to `target`, into `dst`
    /// (which holds `target.byteCount(elements:)` bytes). Same dtype and no
    /// reordering: a plain copy, byte for byte.
    public func write(as target: DType, into dst: UnsafeMutableRawBufferPointer) {
        let rows = rowCount, n = rowLength
        if elementOrder != nil || valueOffset != 0 {   // 1-D tensors only (norms, biases)
            var x = [Float](repeating: 0, count: n)
            x.withUnsafeMutableBufferPointer { Quant.dequantize(dtype, data.baseAddress!, $0.baseAddress!, count: n) }
            let v = (elementOrder ?? Array(0..<n)).map { x[$0] + valueOffset }
            Quant.quantize(target, v).withUnsafeBytes { dst.copyMemory(from: $0) }
            return
        }
        if target == dtype {
            if rowOrder == nil { dst.copyMemory(from: data); return }
            let rb = rowBytes
            for r in 0..<rows { UnsafeMutableRawBufferPointer(rebasing: dst[(r * rb)..<((r + 1) * rb)]).copyMemory(from: rowBytes(r)) }
            return
        }
        let outRow = target.byteCount(elements: n)!
        withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { tmp in
            for r in 0..<rows {
                Quant.dequantize(dtype, rowBytes(r).baseAddress!, tmp.baseAddress!, count: n)
                Quant.quantize(target, tmp.baseAddress!, dst.baseAddress! + r * outRow, count: n)
            }
        }
    }
}

/// Where a source came from (recorded as provenance in the .wren metadata).
public enum SourceKind: String, Sendable {
    case gguf, huggingface = "hf", wren
}

public final class ModelSource: @unchecked Sendable {
    public let path: String
    public let kind: SourceKind
    /// Canonical metadata: `general.*`, `model.*` (ModelConfig), `tokenizer.*`.
    public var metadata: Metadata
    public var tensors: [SourceTensor]
    public let config: ModelConfig
    /// Keeps the mappings alive.
    let owners: [AnyObject]
    /// Files whose bytes define the model (hashed for provenance).
    public let sourceFiles: [String]

    init(path: String, kind: SourceKind, metadata: Metadata, tensors: [SourceTensor], config: ModelConfig,
         owners: [AnyObject], sourceFiles: [String]) throws {
        self.path = path
        self.kind = kind
        self.metadata = metadata
        self.tensors = tensors
        self.config = config
        self.owners = owners
        self.sourceFiles = sourceFiles
        try ModelSource.checkTensors(tensors, config, path: path)
        try ModelSource.checkTokenizer(metadata, config, path: path)
    }

    /// The tokenizer must fit the embedding: no more tokens than rows, special ids inside the
    /// vocabulary (otherwise convert would write a file that run then refuses).
    static func checkTokenizer(_ meta: Metadata, _ c: ModelConfig, path: String) throws {
        let tok = try TokenizerMetadata(metadata: meta, path: path)
        guard tok.tokens.count <= c.vocabSize else {
            throw FormatError.invalid(path: path, field: "tokenizer.tokens", reason: "\(tok.tokens.count) tokens for a \(c.vocabSize)-row embedding")
        }
        for (name, id) in [("bos", tok.bosID), ("eos", tok.eosID), ("unknown", tok.unkID), ("padding", tok.padID)] {
            if let id, !(0..<tok.tokens.count).contains(id) {
                throw FormatError.invalid(path: path, field: "tokenizer.\(name)_token_id", reason: "\(id) is outside the \(tok.tokens.count) tokens")
            }
        }
    }

    /// Opens a .gguf file, a .wren file, or a Hugging Face directory (by what `path` is).
    public static func open(_ path: String) throws -> ModelSource {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FormatError.io(path: path, operation: "open", errno: ENOENT)
        }
        if isDir.boolValue { return try HFImporter.load(directory: path) }
        let head = try MappedFile.prefix(of: path, count: 8)
        if head.starts(with: Array("GGUF".utf8)) { return try fromGGUF(GGUFFile(path: path)) }
        if head == WrenFormatConstants.magic { return try fromWren(WrenFile(path: path)) }
        throw FormatError.badMagic(path: path, expected: "GGUF, .wren or Hugging Face directory",
                                   found: head.map { String(format2: $0) }.joined(separator: " "))
    }

    /// Checks names, dtypes and shapes against the config before any conversion. Layer by
    /// layer, stopping at the first problem: a hostile block_count costs nothing beyond the
    /// layers the file really has.
    static func checkTensors(_ tensors: [SourceTensor], _ c: ModelConfig, path: String) throws {
        var byName: [String: SourceTensor] = [:]
        for t in tensors { byName[t.name] = t }
        let dim = c.embeddingLength, qRows = c.headCount * c.headDim, kvRows = c.headCountKV * c.headDim
        func check(_ expected: [(String, [Int])]) throws {
            for (name, shape) in expected {
                guard let t = byName[name] else { throw FormatError.missingTensor(path: path, tensor: name) }
                guard t.shape == shape else {
                    throw FormatError.invalid(path: path, field: "tensor \(name) shape", reason: "\(t.shape), expected \(shape) from the hyperparameters")
                }
            }
        }
        try check([(TensorNames.tokenEmbedding, [c.vocabSize, dim]), (TensorNames.outputNorm, [dim])])
        if !c.tiedEmbeddings { try check([(TensorNames.output, [c.vocabSize, dim])]) }
        for l in 0..<c.blockCount {
            try check(TensorNames.ExtraLayer.allCases.filter { $0.isUsed(by: c) }.map { t in (t.name(layer: l), [t.length(c)]) })
            try check(TensorNames.Layer.allCases.map { t in
                let shape: [Int]
                switch t {
                case .attnNorm, .ffnNorm: shape = [dim]
                case .q: shape = [qRows, dim]
                case .k, .v: shape = [kvRows, dim]
                case .o: shape = [dim, qRows]
                case .gate, .up: shape = [c.feedForwardLength, dim]
                case .down: shape = [dim, c.feedForwardLength]
                }
                return (t.name(layer: l), shape)
            })
        }
    }

    // MARK: GGUF

    /// Maps a GGUF's keys to Wren's: `{arch}.x` → `model.x`, `tokenizer.ggml.x` →
    /// `tokenizer.x`; `general.*` kept. Tensors keep their names and bytes.
    public static func fromGGUF(_ g: GGUFFile) throws -> ModelSource {
        let path = g.path
        let m = g.metadata
        let arch = try m.string("general.architecture", in: path)
        guard ModelConfig.supportedArchitectures.contains(arch) else {
            throw FormatError.invalid(path: path, field: "general.architecture",
                                      reason: "unsupported architecture \"\(arch)\" (Wren runs \(ModelConfig.supportedArchitectures.joined(separator: ", ")))")
        }
        let tok = try TokenizerMetadata(metadata: m, path: path, prefix: "tokenizer.ggml.")
        func key(_ k: String) -> String { "\(arch).\(k)" }
        if let experts = try m.optionalInt(key("expert_count"), in: path), experts > 0 {
            throw FormatError.invalid(path: path, field: key("expert_count"),
                                      reason: "\(experts) experts: mixture-of-experts models are not supported")
        }
        let heads = try m.int(key("attention.head_count"), in: path)
        let dim = try m.int(key("embedding_length"), in: path)
        let headDim = try m.optionalInt(key("attention.key_length"), in: path) ?? dim / max(1, heads)
        let tied = !g.tensors.contains { $0.name == TensorNames.output }
        var c = ModelConfig(vocabSize: try m.optionalInt(key("vocab_size"), in: path) ?? tok.tokens.count,
                            contextLength: try m.int(key("context_length"), in: path),
                            embeddingLength: dim,
                            feedForwardLength: try m.int(key("feed_forward_length"), in: path),
                            blockCount: try m.int(key("block_count"), in: path),
                            headCount: heads,
                            headCountKV: try m.optionalInt(key("attention.head_count_kv"), in: path) ?? heads,
                            headDim: headDim,
                            rmsNormEps: Float(try m.double(key("attention.layer_norm_rms_epsilon"), in: path)),
                            ropeFreqBase: Float(try m.optionalDouble(key("rope.freq_base"), in: path) ?? 10000),
                            ropeDimensionCount: try m.optionalInt(key("rope.dimension_count"), in: path) ?? headDim,
                            tiedEmbeddings: tied)
        if let st = m[key("rope.scaling.type")]?.string {
            guard let t = RopeScalingType(rawValue: st) else {
                throw FormatError.invalid(path: path, field: key("rope.scaling.type"), reason: "unknown RoPE scaling \"\(st)\"")
            }
            c.ropeScalingType = t
        }
        if let f = try m.optionalDouble(key("rope.scaling.factor"), in: path) {
            c.ropeScalingFactor = Float(f)
            if c.ropeScalingType == .none, f != 1 { c.ropeScalingType = .linear }
        } else if let f = try m.optionalDouble(key("rope.scale_linear"), in: path) {
            c.ropeScalingFactor = Float(f)
            c.ropeScalingType = f == 1 ? .none : .linear
        }
        c.ropeOriginalContextLength = try m.optionalInt(key("rope.scaling.original_context_length"), in: path) ?? 0
        c.architecture = arch
        if arch == "gemma3" { try gemma3Settings(&c, m, path: path) }
        // Qwen2: q/k/v biases (llama.cpp stores them with the q/k rows in rotate-half order).
        if arch == "qwen2" { c.qkvBias = g.tensors.contains { $0.name == TensorNames.ExtraLayer.qBias.name(layer: 0) } }
        try c.validate(path: path)

        var meta = Metadata()
        for (k, v) in m.entries where k.hasPrefix("general.") && k != "general.alignment" && k != "general.architecture" {
            meta[k] = v
        }
        c.write(to: &meta)
        tok.write(to: &meta)

        var tensors: [SourceTensor] = []
        for t in g.tensors {
            guard let dt = t.dtype else {
                throw FormatError.unsupportedDType(path: path, dtype: ggmlTypeName(t.typeID), tensor: t.name)
            }
            var st = SourceTensor(name: t.name, dtype: dt, shape: t.shape, data: g.data(t))
            if arch == "gemma3" || arch == "qwen2" { rotateHalfToPairs(&st, c) }
            tensors.append(st)
        }
        return try ModelSource(path: path, kind: .gguf, metadata: meta, tensors: tensors, config: c, owners: [g], sourceFiles: [path])
    }

    /// Gemma 3's differences from llama, as llama.cpp reads its GGUF: embeddings
    /// scaled by √dim, QK-norm, post-norms, GeGLU (tanh GELU), and a sliding
    /// window on five of every six layers, whose RoPE base is 10000 unless the
    /// file names one. The norm weights are stored as 1 + w already (llama.cpp's
    /// converter adds the 1), so they multiply directly.
    static func gemma3Settings(_ c: inout ModelConfig, _ m: Metadata, path: String) throws {
        c.embeddingScale = Float(c.embeddingLength).squareRoot()
        c.qkNorm = true
        c.postNorms = true
        c.activation = .geluTanh
        c.slidingWindow = try m.optionalInt("gemma3.attention.sliding_window", in: path) ?? 0
        if c.slidingWindow > 0 {
            if let v = m["gemma3.attention.sliding_window_pattern"], v.int == nil {
                throw FormatError.invalid(path: path, field: "gemma3.attention.sliding_window_pattern",
                                          reason: "a per-layer pattern array is not supported (only a period N)")
            }
            c.slidingWindowPattern = try m.optionalInt("gemma3.attention.sliding_window_pattern", in: path) ?? 6
            c.ropeFreqBaseLocal = Float(try m.optionalDouble("gemma3.rope.freq_base_swa", in: path) ?? 10000)
        }
        // The 27B model scales queries by its embedding width per head (as llama.cpp and gemma_pytorch do).
        if c.blockCount == 62 { c.attentionScale = 1 / Float(c.embeddingLength / c.headCount).squareRoot() }
        if let cap = try m.optionalDouble("gemma3.final_logit_softcapping", in: path), cap != 0 {
            throw FormatError.invalid(path: path, field: "gemma3.final_logit_softcapping", reason: "final logit soft-capping is not supported")
        }
    }

    /// llama.cpp rotates Gemma's and Qwen2's q and k in halves (i, i + d/2) ("NEOX");
    /// Wren rotates adjacent pairs, so q/k rows are permuted per head on import, as
    /// for Hugging Face llama checkpoints, and the biases and QK-norm weights with
    /// them (attention scores are unchanged: q and k are permuted alike).
    static func rotateHalfToPairs(_ t: inout SourceTensor, _ c: ModelConfig) {
        let parts = t.name.split(separator: ".")
        guard parts.count == 4, parts[0] == "blk" else { return }
        let heads = parts[2] == "attn_q" ? c.headCount : parts[2] == "attn_k" ? c.headCountKV : 0
        switch (parts[2], parts[3]) {
        case ("attn_q", "weight"), ("attn_k", "weight"):
            t.rowOrder = TensorNames.hfToWrenRows(rows: t.rowCount, heads: heads, rotary: c.ropeDimensionCount)
        case ("attn_q", "bias"), ("attn_k", "bias"):   // a bias follows its rows
            if t.shape == [heads * c.headDim] {
                t.elementOrder = TensorNames.hfToWrenRows(rows: heads * c.headDim, heads: heads, rotary: c.ropeDimensionCount)
            }
        case ("attn_q_norm", "weight"), ("attn_k_norm", "weight"):
            if t.shape == [c.headDim] { t.elementOrder = TensorNames.hfToWrenRows(rows: c.headDim, heads: 1, rotary: c.ropeDimensionCount) }
        default: break
        }
    }

    // MARK: .wren

    public static func fromWren(_ w: WrenFile) throws -> ModelSource {
        let c = try ModelConfig(metadata: w.metadata, path: w.path)
        _ = try TokenizerMetadata(metadata: w.metadata, path: w.path)
        // Every tensor that will be copied is checked against its stored checksum first, so a
        // corrupt .wren is never converted into a file whose fresh checksums would hide it.
        let tensors = try (0..<w.tensors.count).map { i -> SourceTensor in
            let t = try w.verifiedTensor(at: i)
            return SourceTensor(name: t.name, dtype: t.dtype, shape: t.shape, data: t.data)
        }
        var meta = w.metadata
        for k in meta.keys where k.hasPrefix("general.source.") || k == "general.converter" { meta[k] = nil }
        return try ModelSource(path: w.path, kind: .wren, metadata: meta, tensors: tensors, config: c, owners: [w], sourceFiles: [w.path])
    }
}
