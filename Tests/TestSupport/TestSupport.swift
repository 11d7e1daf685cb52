// Shared test helpers: a seeded PRNG, tiny random llama models written as
// GGUF / Hugging Face directories / .wren files, temp directories, and the
// location of the real model.

import Foundation
import WrenFormat
import WrenKernels
import XCTest

/// The package's SplitMix64 (WrenKernels), with the float helpers tests use.
public typealias SeededRNG = SplitMix64

extension SplitMix64 {
    /// Uniform in [-1, 1).
    public mutating func float() -> Float { Float(Double(next() >> 11) * 0x1p-53 * 2 - 1) }
    /// Approximately standard normal (sum of uniforms).
    public mutating func normal() -> Float { (0..<6).reduce(Float(0)) { s, _ in s + float() } * 0.7071 }
}

public func tempDirectory(_ name: String = #function) -> String {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let dir = NSTemporaryDirectory() + "wren-tests-\(getpid())-\(safe)-\(UInt32.random(in: 0...UInt32.max))"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// The real reference model, fetched by tools/fetch-model.sh (nil when absent).
public func realModelPath() -> String? {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let p = root.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    return FileManager.default.fileExists(atPath: p) ? p : nil
}

/// The real model's GGUF for tests that need it: skips in debug builds (numeric code
/// there is 10–100× slower) and when the model is absent — except on CI, where a
/// missing model is a failure.
/// `inDebug`: also in the debug build (for tests that only read the file, e.g. its tokenizer).
public func requireRealModel(inDebug: Bool = false) throws -> String {
    #if DEBUG
    if !inDebug { throw XCTSkip("real-model tests run in the release test build (swift test -c release -Xswiftc -enable-testing)") }
    #endif
    guard let p = realModelPath() else {
        if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("models/ missing on CI: run tools/fetch-model.sh") }
        throw XCTSkip("run tools/fetch-model.sh to fetch the real model")
    }
    return p
}

public func repoRoot() -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}

/// A tiny llama model: vocab 64, dim 32, 2 layers, 4 heads, 2 kv heads, ffn 64.
public struct TinyModel {
    public var config: ModelConfig
    public var tokenizer: TokenizerMetadata
    /// Canonical (Wren) names and row order, outermost-first shapes.
    public var weights: [(name: String, shape: [Int], values: [Float])]

    /// `qkvBias`: q/k/v biases (Qwen2), drawn after all other weights so the rest of the
    /// model is the same as without them.
    public init(seed: UInt64 = 1, tied: Bool = true, vocab: Int = 64, dim: Int = 32, layers: Int = 2, heads: Int = 4, kvHeads: Int = 2, ff: Int = 64,
                qkvBias: Bool = false) {
        config = ModelConfig(vocabSize: vocab, contextLength: 128, embeddingLength: dim, feedForwardLength: ff, blockCount: layers,
                             headCount: heads, headCountKV: kvHeads, rmsNormEps: 1e-5, ropeFreqBase: 10000, tiedEmbeddings: tied)
        config.qkvBias = qkvBias
        var toks = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        let letters = Array("abcdefghijklmnopqrstuvwxyzĠ".map(String.init))
        for l in letters where toks.count < vocab { toks.append(l) }
        var merges: [String] = []
        var i = 0
        while toks.count < vocab {
            let a = letters[(i / letters.count) % letters.count], b = letters[(i * 7 + 3) % letters.count]
            if !toks.contains(a + b) { toks.append(a + b); merges.append(a + " " + b) }
            i += 1
        }
        var types = [Int32](repeating: 1, count: vocab)
        types[0] = 3; types[1] = 3; types[2] = 3
        tokenizer = TokenizerMetadata(model: "gpt2", pre: "smollm", tokens: toks, tokenTypes: types, merges: merges,
                                      bosID: 1, eosID: 2, unkID: 0, padID: 2, addBOS: false, addSpacePrefix: false,
                                      chatTemplate: "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
        var rng = SeededRNG(seed: seed)
        func mat(_ r: Int, _ c: Int, scale: Float = 0.2) -> [Float] { (0..<(r * c)).map { _ in rng.normal() * scale } }
        func norm(_ n: Int) -> [Float] { (0..<n).map { _ in 1 + rng.float() * 0.1 } }
        let hd = dim / heads
        var w: [(String, [Int], [Float])] = [("token_embd.weight", [vocab, dim], mat(vocab, dim))]
        for l in 0..<layers {
            let p = "blk.\(l)."
            w.append((p + "attn_norm.weight", [dim], norm(dim)))
            w.append((p + "attn_q.weight", [heads * hd, dim], mat(heads * hd, dim)))
            w.append((p + "attn_k.weight", [kvHeads * hd, dim], mat(kvHeads * hd, dim)))
            w.append((p + "attn_v.weight", [kvHeads * hd, dim], mat(kvHeads * hd, dim)))
            w.append((p + "attn_output.weight", [dim, heads * hd], mat(dim, heads * hd)))
            w.append((p + "ffn_norm.weight", [dim], norm(dim)))
            w.append((p + "ffn_gate.weight", [ff, dim], mat(ff, dim)))
            w.append((p + "ffn_up.weight", [ff, dim], mat(ff, dim)))
            w.append((p + "ffn_down.weight", [dim, ff], mat(dim, ff)))
        }
        w.append(("output_norm.weight", [dim], norm(dim)))
        if !tied { w.append(("output.weight", [vocab, dim], mat(vocab, dim))) }
        if qkvBias {
            for l in 0..<layers {
                w.append(("blk.\(l).attn_q.bias", [heads * hd], (0..<(heads * hd)).map { _ in rng.normal() * 0.5 }))
                w.append(("blk.\(l).attn_k.bias", [kvHeads * hd], (0..<(kvHeads * hd)).map { _ in rng.normal() * 0.5 }))
                w.append(("blk.\(l).attn_v.bias", [kvHeads * hd], (0..<(kvHeads * hd)).map { _ in rng.normal() * 0.5 }))
            }
        }
        weights = w.map { (name: $0.0, shape: $0.1, values: $0.2) }
    }

    /// GGUF metadata as llama.cpp's converter writes it (keys under `arch`).
    public func ggufMetadata(fileType: Int = 0, arch: String = "llama") -> Metadata {
        var m = Metadata()
        m["general.architecture"] = .string(arch)
        m["general.name"] = .string("tiny")
        m["\(arch).vocab_size"] = .uint32(UInt32(config.vocabSize))
        m["\(arch).context_length"] = .uint32(UInt32(config.contextLength))
        m["\(arch).embedding_length"] = .uint32(UInt32(config.embeddingLength))
        m["\(arch).feed_forward_length"] = .uint32(UInt32(config.feedForwardLength))
        m["\(arch).block_count"] = .uint32(UInt32(config.blockCount))
        m["\(arch).attention.head_count"] = .uint32(UInt32(config.headCount))
        m["\(arch).attention.head_count_kv"] = .uint32(UInt32(config.headCountKV))
        m["\(arch).rope.freq_base"] = .float32(config.ropeFreqBase)
        m["\(arch).rope.dimension_count"] = .uint32(UInt32(config.ropeDimensionCount))
        m["\(arch).attention.layer_norm_rms_epsilon"] = .float32(config.rmsNormEps)
        m["general.file_type"] = .uint32(UInt32(fileType))
        m["tokenizer.ggml.model"] = .string(tokenizer.model)
        m["tokenizer.ggml.pre"] = .string(tokenizer.pre)
        m["tokenizer.ggml.tokens"] = .array(tokenizer.tokens)
        m["tokenizer.ggml.token_type"] = .array(tokenizer.tokenTypes!)
        m["tokenizer.ggml.merges"] = .array(tokenizer.merges!)
        m["tokenizer.ggml.bos_token_id"] = .uint32(1)
        m["tokenizer.ggml.eos_token_id"] = .uint32(2)
        m["tokenizer.ggml.unknown_token_id"] = .uint32(0)
        m["tokenizer.ggml.padding_token_id"] = .uint32(2)
        m["tokenizer.ggml.add_bos_token"] = .bool(false)
        m["tokenizer.ggml.add_space_prefix"] = .bool(false)
        m["tokenizer.chat_template"] = .string(tokenizer.chatTemplate!)
        return m
    }

    /// The stored dtype of each tensor for a "mostly `dtype`" model (norms f32).
    public static func dtype(for shape: [Int], _ dtype: DType) -> DType { shape.count == 1 ? .f32 : dtype }

    /// GGUF bytes with 2-D weights in `dtype`.
    public func ggufBytes(dtype: DType, alignment: Int = 32, edit: (inout Metadata) -> Void = { _ in }) -> [UInt8] {
        let tensors = weights.map { w -> GGUFWriter.Tensor in
            let t = TinyModel.dtype(for: w.shape, dtype)
            return GGUFWriter.Tensor(name: w.name, typeID: t.rawValue, ne: w.shape.reversed(), bytes: Quant.quantize(t, w.values))
        }
        var meta = ggufMetadata()
        if alignment != 32 { meta["general.alignment"] = .uint32(UInt32(alignment)) }
        edit(&meta)
        return GGUFWriter.encode(metadata: meta, tensors: tensors, alignment: alignment)
    }

    public func writeGGUF(to path: String, dtype: DType) {
        FileManager.default.createFile(atPath: path, contents: Data(ggufBytes(dtype: dtype)))
    }

    /// A GGUF as llama.cpp writes an architecture that rotates q/k in halves (qwen2,
    /// gemma3: "NEOX"): keys under `arch`, and the q/k rows and biases of each head in
    /// rotate-half order (the inverse of the permutation Wren's import applies).
    public func writeNeoxGGUF(to path: String, arch: String) {
        let c = config
        let tensors = weights.map { w -> GGUFWriter.Tensor in
            var values = w.values
            let parts = w.name.split(separator: ".")
            if parts.count == 4, parts[0] == "blk", parts[2] == "attn_q" || parts[2] == "attn_k" {
                let heads = parts[2] == "attn_q" ? c.headCount : c.headCountKV
                let order = TensorNames.wrenToHFRows(rows: heads * c.headDim, heads: heads)
                let n = w.shape.count == 2 ? w.shape[1] : 1
                values = order.flatMap { r in w.values[(r * n)..<((r + 1) * n)] }
            }
            return GGUFWriter.Tensor(name: w.name, typeID: DType.f32.rawValue, ne: w.shape.reversed(),
                                     bytes: Quant.quantize(.f32, values))
        }
        FileManager.default.createFile(atPath: path, contents: Data(GGUFWriter.encode(metadata: ggufMetadata(arch: arch), tensors: tensors,
                                                                                      alignment: 32)))
    }

    /// A Hugging Face directory with HF names and HF (rotate-half) q/k row order.
    /// `modelType` "qwen2" writes the q/k/v biases (q/k in rotate-half order like their
    /// rows); "mistral" writes `slidingWindow` into config.json.
    public func writeHF(to dir: String, dtype: DType = .f32, sharded: Bool = false, modelType: String = "llama",
                        slidingWindow: Int? = nil) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var entries: [SafetensorsWriter.Entry] = []
        for w in weights {
            var values = w.values
            if let heads = TensorNames.permutedHeads(w.name, config) {
                let perm = TensorNames.wrenToHFRows(rows: w.shape[0], heads: heads)
                let n = w.shape[1]
                values = [Float](repeating: 0, count: values.count)
                for hfRow in 0..<w.shape[0] { for c in 0..<n { values[hfRow * n + c] = w.values[perm[hfRow] * n + c] } }
            }
            if let heads = TensorNames.permutedBiasHeads(w.name, config) {
                let perm = TensorNames.wrenToHFRows(rows: w.shape[0], heads: heads)
                values = perm.map { w.values[$0] }
            }
            let hfBias = ["attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias", "attn_v.bias": "self_attn.v_proj.bias"]
            let parts = w.name.split(separator: ".", maxSplits: 2)
            let name = TensorNames.hfName(wren: w.name) ?? "model.layers.\(parts[1]).\(hfBias[String(parts[2])]!)"
            let dt = dtype
            let st = dt == .f32 ? "F32" : dt == .f16 ? "F16" : "BF16"
            entries.append(.init(name: name, dtype: st, shape: w.shape, bytes: Quant.quantize(dt, values)))
        }
        if sharded {
            let half = entries.count / 2
            let a = Array(entries[..<half]), b = Array(entries[half...])
            try Data(SafetensorsWriter.encode(a)).write(to: URL(fileURLWithPath: dir + "/model-00001-of-00002.safetensors"))
            try Data(SafetensorsWriter.encode(b)).write(to: URL(fileURLWithPath: dir + "/model-00002-of-00002.safetensors"))
            var map: [String: String] = [:]
            for e in a { map[e.name] = "model-00001-of-00002.safetensors" }
            for e in b { map[e.name] = "model-00002-of-00002.safetensors" }
            let idx = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 0], "weight_map": map])
            try idx.write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        } else {
            try Data(SafetensorsWriter.encode(entries)).write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        }
        var cfg: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": modelType, "vocab_size": config.vocabSize,
            "max_position_embeddings": config.contextLength, "hidden_size": config.embeddingLength,
            "intermediate_size": config.feedForwardLength, "num_hidden_layers": config.blockCount,
            "num_attention_heads": config.headCount, "num_key_value_heads": config.headCountKV,
            "rms_norm_eps": Double(config.rmsNormEps), "rope_theta": Double(config.ropeFreqBase),
            "tie_word_embeddings": config.tiedEmbeddings, "rope_scaling": NSNull(),
        ]
        if let slidingWindow { cfg["sliding_window"] = slidingWindow }
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/config.json"))
        try tokenizerJSON().write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        let tc: [String: Any] = ["bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                                 "pad_token": "<|im_end|>", "add_bos_token": false, "chat_template": tokenizer.chatTemplate!]
        try JSONSerialization.data(withJSONObject: tc).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
    }

    /// A hand-built tokenizer.json in the layout HF `tokenizers` saves (merges as pairs, the newer form).
    public func tokenizerJSON() throws -> Data {
        var vocab: [String: Int] = [:]
        for i in 0..<tokenizer.tokens.count { vocab[tokenizer.tokens.string(i)] = i }
        let added: [[String: Any]] = (0..<3).map { ["id": $0, "content": tokenizer.tokens.string($0), "special": true,
                                                    "single_word": false, "lstrip": false, "rstrip": false, "normalized": false] }
        let tj: [String: Any] = [
            "version": "1.0", "added_tokens": added,
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
                ["type": "Digits", "individual_digits": true],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]]],
            "model": ["type": "BPE", "vocab": vocab, "merges": tokenizer.merges!.strings.map { $0.split(separator: " ").map(String.init) },
                      "byte_fallback": false],
        ]
        return try JSONSerialization.data(withJSONObject: tj)
    }
}

extension TinyModel {
    /// Writes this model as a .wren file with 2-D weights in `dtype` (via a GGUF, as a user would).
    public func writeWren(to path: String, dtype: DType) throws {
        let g = path + ".gguf"
        writeGGUF(to: g, dtype: dtype)
        defer { try? FileManager.default.removeItem(atPath: g) }
        _ = try ModelConverter.convert(try ModelSource.open(g), to: path, options: .init(overwrite: true))
    }
}

// MARK: tolerance policy

/// A named error bound for comparing numbers, with the reason for its size. Tests pick
/// one of the bounds below instead of writing a literal, so every tolerance in the suite
/// is written down once, with its justification, and can be tightened in one place.
///
/// Policy (issue: tests that hold on any x86-64): where results are exact up to
/// summation order, `abs + rel·|want|` per value with ≥ 10× margin over the measured
/// worst; where rounding is chaotic (8-bit activations, 8-bit KV cache), the mean error
/// is held tightly and the worst case with ≥ 2× margin over what was measured on more
/// than one CPU, and the comparison is against a same-machine result where possible.
public struct Tolerance: Sendable, CustomStringConvertible {
    public let name: String
    /// Per-value bound: |got − want| ≤ abs + rel·|want|.
    public let abs: Double
    public let rel: Double
    /// Bound on the mean |got − want| (nil: not checked).
    public let mean: Double?
    public let reason: String

    public init(_ name: String, abs: Double, rel: Double = 0, mean: Double? = nil, reason: String) {
        self.name = name; self.abs = abs; self.rel = rel; self.mean = mean; self.reason = reason
    }

    public var description: String { "\(name) (|Δ| ≤ \(abs) + \(rel)·|ref|\(mean.map { ", mean ≤ \($0)" } ?? ""))" }

    /// f32 engine vs the f32 numpy reference on identical dequantized weights: only summation
    /// order and exp/cos differ (~1e-7 relative per op, ~1e-5–1e-4 absolute after 30 layers on
    /// logits ~20; measured worst 2e-4 on AMD Zen and Intel Xeon). 10× margin, and still 100×
    /// below the smallest modelling error (llama.cpp's 8-bit activations move logits ~0.7).
    public static let exactF32 = Tolerance("exact f32 path", abs: 2e-3, rel: 2e-4,
                                           reason: "summation order only; ≥10× the measured worst")
    /// The f16 KV cache: k/v rounded to f16 (~5e-4 relative) feeding 30 layers of softmax-weighted sums.
    /// Measured worst 1.2e-2; bound ≥ 4×.
    public static let f16KV = Tolerance("f16 KV cache", abs: 5e-2, rel: 2e-4,
                                        reason: "k/v rounded to f16; ≥4× the measured worst")
    /// The q8_0 KV cache against Wren's own f32-KV result on the same machine (so BLAS rounding,
    /// which differs between CPUs, cancels). 8-bit k/v per 32 values is ~0.4% relative; measured
    /// worst 0.43 (AMD, AVX2), 0.55 (AMD, portable kernels), 0.51 (Intel Xeon, against the numpy
    /// reference); mean 0.093–0.095.
    public static let q8_0KV = Tolerance("q8_0 KV cache vs same-machine f32 KV", abs: 1.1, mean: 0.13,
                                         reason: "chaotic 8-bit rounding: worst 2× the worst seen, mean +35%")
    /// The default fast path (8-bit activation blocks as llama.cpp's CPU path, f16 KV): which
    /// logits land where is chaotic. llama.cpp's own distance from the reference on the same
    /// q4_1 bytes: worst 1.013, mean 0.187; Wren's measured worst 0.80–1.24 (AVX2), 1.45 (portable
    /// kernels, q8_0), mean 0.167–0.194.
    public static let fastPath = Tolerance("8-bit activation fast path", abs: 2.9, mean: 0.206,
                                           reason: "worst 2× the largest seen; mean within 10% of llama.cpp's")
}

/// The result of comparing many values: the worst one (with where it was and both values),
/// the mean, and how many broke the per-value bound.
public struct ErrorReport: CustomStringConvertible {
    public var tolerance: Tolerance
    public var count = 0
    public var sum = 0.0
    public var worst = 0.0
    public var worstWhere = ""
    public var worstGot = 0.0, worstWant = 0.0
    public var failures = 0
    public var firstFailure = ""

    public init(_ tolerance: Tolerance) { self.tolerance = tolerance }

    public var mean: Double { count == 0 ? 0 : sum / Double(count) }

    /// Records one comparison; `place` says where it is (prompt, position, id) for the report.
    public mutating func add(got: Double, want: Double, place: @autoclosure () -> String) {
        let err = Swift.abs(got - want)
        count += 1
        sum += err
        if err > worst || !err.isFinite {
            worst = err.isFinite ? err : .infinity
            worstWhere = place(); worstGot = got; worstWant = want
        }
        if !(err <= tolerance.abs + tolerance.rel * Swift.abs(want)) {
            failures += 1
            if failures == 1 { firstFailure = "\(place()): \(got) vs \(want)" }
        }
    }

    public var description: String {
        "\(tolerance.name): \(count) values, worst \(worst) at \(worstWhere) (got \(worstGot), want \(worstWant)), mean \(mean)"
            + (failures > 0 ? "; \(failures) over the bound, first \(firstFailure)" : "")
    }

    /// Fails the test (once, with the whole report) if any value or the mean breaks the bound.
    public func check(file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertGreaterThan(count, 0, "nothing compared", file: file, line: line)
        XCTAssertEqual(failures, 0, "\(self) [bound \(tolerance); \(tolerance.reason)]", file: file, line: line)
        if let m = tolerance.mean {
            XCTAssertLessThanOrEqual(mean, m, "mean over the bound: \(self) [\(tolerance.reason)]", file: file, line: line)
        }
    }
}

/// A training run cut short and resumed (in `resumed`) ends as the uninterrupted one (in
/// `whole`): the same adapter bytes, and the same evaluations plus the one the cut run made
/// at its last step.
public func assertResumedLikeWhole(whole: String, resumed: String, file: StaticString = #filePath, line: UInt = #line) throws {
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: whole + "/adapter_model.safetensors")),
                   try Data(contentsOf: URL(fileURLWithPath: resumed + "/adapter_model.safetensors")), "adapters differ", file: file, line: line)
    let a = try String(contentsOfFile: whole + "/eval.csv", encoding: .utf8).split(separator: "\n")
    let b = try String(contentsOfFile: resumed + "/eval.csv", encoding: .utf8).split(separator: "\n")
    XCTAssertEqual(Set(b).subtracting(a).count, 1, "\(b)", file: file, line: line)
    XCTAssertTrue(Set(a).isSubset(of: Set(b)), "\(a) vs \(b)", file: file, line: line)
}

/// `n` paired_text_to_text lines (JSONL) written to `file`: each prompt names a random letter,
/// the chosen response is made of one of the letters a–h, the rejected one of i–p.
public func letterPairs(_ n: Int, seed: UInt64, file: String) throws -> String {
    var rng = SeededRNG(seed: seed)
    let letters = Array("abcdefghijklmnop")
    var lines: [String] = []
    for _ in 0..<n {
        let i = Int(rng.next() % 8), j = 8 + Int(rng.next() % 8), k = Int(rng.next() % 16)
        let a = String(letters[i]), b = String(letters[j]), c = String(letters[k])
        let obj: [String: String] = ["prompt": "say \(c)\(c): ", "chosen": "\(a)\(a) \(a)\(a)", "rejected": "\(b)\(b) \(b)\(b)"]
        lines.append(String(data: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), encoding: .utf8)!)
    }
    try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
    return file
}
