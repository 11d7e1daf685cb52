// Hugging Face checkpoint directories: import (config.json, *.safetensors
// with or without model.safetensors.index.json, tokenizer.json,
// tokenizer_config.json) and export (the same files, written atomically).
// Tensors are renamed to Wren's names and q/k rows permuted at this border.

import Foundation
import WrenKernels

public enum HFImporter {
    static func readJSON(_ path: String) throws -> [String: Any] {
        guard let data = MappedFile.contents(of: path) else {
            throw FormatError.io(path: path, operation: "read", errno: ENOENT)
        }
        let obj: Any
        do { obj = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
            throw FormatError.invalid(path: path, field: "file", reason: "not valid JSON (\((error as NSError).localizedDescription))")
        }
        guard let d = obj as? [String: Any] else { throw FormatError.invalid(path: path, field: "file", reason: "not a JSON object") }
        return d
    }

    static func int(_ d: [String: Any], _ key: String, _ path: String, default def: Int? = nil) throws -> Int {
        guard let v = d[key], !(v is NSNull) else {
            if let def { return def }
            throw FormatError.missingField(path: path, field: key)
        }
        guard let i = Checked.jsonInt(v) else { throw FormatError.wrongFieldType(path: path, field: key, expected: "an integer") }
        return i
    }

    static func double(_ d: [String: Any], _ key: String, _ path: String, default def: Double? = nil) throws -> Double {
        guard let v = d[key], !(v is NSNull) else {
            if let def { return def }
            throw FormatError.missingField(path: path, field: key)
        }
        guard let x = Checked.jsonNumber(v) else { throw FormatError.wrongFieldType(path: path, field: key, expected: "a finite number") }
        return x
    }

    /// Parses config.json into a ModelConfig.
    public static func config(_ d: [String: Any], path: String, tiedDefault: Bool) throws -> ModelConfig {
        var modelType = "llama"
        if let mt = d["model_type"] {
            guard let s = mt as? String else { throw FormatError.wrongFieldType(path: path, field: "model_type", expected: "a string") }
            guard supportedModelTypes.contains(s) else {
                throw FormatError.invalid(path: path, field: "model_type",
                                          reason: "unsupported model type \"\(s)\" (Wren imports \(supportedModelTypes.joined(separator: ", ")))")
            }
            modelType = s
        }
        let heads = try int(d, "num_attention_heads", path)
        let dim = try int(d, "hidden_size", path)
        let headDim = try int(d, "head_dim", path, default: dim / max(1, heads))
        var tied = tiedDefault
        if let t = d["tie_word_embeddings"] {
            guard let b = t as? Bool else { throw FormatError.wrongFieldType(path: path, field: "tie_word_embeddings", expected: "a boolean") }
            tied = b
        }
        var c = ModelConfig(vocabSize: try int(d, "vocab_size", path),
                            contextLength: try int(d, "max_position_embeddings", path),
                            embeddingLength: dim,
                            feedForwardLength: try int(d, "intermediate_size", path),
                            blockCount: try int(d, "num_hidden_layers", path),
                            headCount: heads,
                            headCountKV: try int(d, "num_key_value_heads", path, default: heads),
                            headDim: headDim,
                            rmsNormEps: Float(try double(d, "rms_norm_eps", path, default: 1e-6)),
                            ropeFreqBase: Float(try double(d, "rope_theta", path, default: 10000)),
                            ropeDimensionCount: headDim,
                            tiedEmbeddings: tied)
        if let rs = d["rope_scaling"], !(rs is NSNull) {
            guard let r = rs as? [String: Any] else { throw FormatError.wrongFieldType(path: path, field: "rope_scaling", expected: "an object or null") }
            let type = (r["rope_type"] as? String) ?? (r["type"] as? String) ?? "none"
            switch type {
            case "linear": c.ropeScalingType = .linear
            case "ntk": c.ropeScalingType = .ntk
            case "dynamic": c.ropeScalingType = .dynamicNTK
            case "yarn": c.ropeScalingType = .yarn
            case "llama3": c.ropeScalingType = .llama3
            case "default", "none": c.ropeScalingType = .none
            default: throw FormatError.invalid(path: path, field: "rope_scaling.type", reason: "unsupported RoPE scaling \"\(type)\"")
            }
            c.ropeScalingFactor = Float(try double(r, "factor", path + " rope_scaling", default: 1))
            c.ropeOriginalContextLength = try int(r, "original_max_position_embeddings", path + " rope_scaling", default: 0)
            c.ropeLowFreqFactor = Float(try double(r, "low_freq_factor", path + " rope_scaling", default: 1))
            c.ropeHighFreqFactor = Float(try double(r, "high_freq_factor", path + " rope_scaling", default: 4))
        }
        switch modelType {
        case "mistral":
            // Mistral 7B v0.1 attends through a window on every layer; later versions set it to null.
            c.slidingWindow = try int(d, "sliding_window", path, default: 0)
            if c.slidingWindow >= c.contextLength { c.slidingWindow = 0 }
        case "gemma3_text":
            // Gemma 3's text model (the multimodal "gemma3" wraps it and is refused above).
            c.architecture = "gemma3"
            c.embeddingScale = Float(c.embeddingLength).squareRoot()
            c.qkNorm = true
            c.postNorms = true
            let act = (d["hidden_activation"] as? String) ?? (d["hidden_act"] as? String) ?? "gelu_pytorch_tanh"
            guard act == "gelu_pytorch_tanh" else {
                throw FormatError.invalid(path: path, field: "hidden_activation", reason: "\"\(act)\" is not supported (gelu_pytorch_tanh)")
            }
            c.activation = .geluTanh
            c.slidingWindow = try int(d, "sliding_window", path, default: 0)
            if let types = d["layer_types"] as? [String], c.slidingWindow > 0 {
                // The per-layer list must be the periodic pattern: N − 1 sliding layers, then a full one.
                guard let n = types.firstIndex(of: "full_attention").map({ $0 + 1 }),
                      types.enumerated().allSatisfy({ ($0.element == "full_attention") == (($0.offset + 1) % n == 0) }) else {
                    throw FormatError.invalid(path: path, field: "layer_types", reason: "only a periodic pattern of sliding and full layers is supported")
                }
                c.slidingWindowPattern = n
            } else {
                c.slidingWindowPattern = try int(d, "sliding_window_pattern", path, default: 6)
            }
            c.ropeFreqBaseLocal = Float(try double(d, "rope_local_base_freq", path, default: 10000))
            let scalar = try double(d, "query_pre_attn_scalar", path, default: Double(c.headDim))
            if scalar != Double(c.headDim) { c.attentionScale = Float(1 / scalar.squareRoot()) }
            for key in ["final_logit_softcapping", "attn_logit_softcapping"] {
                if let v = d[key], !(v is NSNull) { throw FormatError.invalid(path: path, field: key, reason: "soft-capping is not supported") }
            }
        case "qwen2":
            c.architecture = "qwen2"
            c.qkvBias = true
            if (d["use_sliding_window"] as? Bool) == true {
                throw FormatError.invalid(path: path, field: "use_sliding_window", reason: "Qwen2's layer-dependent sliding window is not supported")
            }
        default: break
        }
        try c.validate(path: path)
        return c
    }

    /// config.json `model_type`s Wren imports (Mistral as llama with a sliding window,
    /// Qwen2 as llama with q/k/v biases, Gemma 3's text model with its switches).
    public static let supportedModelTypes = ["llama", "mistral", "qwen2", "gemma3_text"]

    /// Loads a Hugging Face llama checkpoint directory.
    public static func load(directory dir: String) throws -> ModelSource {
        let configPath = dir + "/config.json"
        let cfgJSON = try readJSON(configPath)

        // Safetensors files: the index's weight_map, or model.safetensors, or all *.safetensors.
        var files: [String]
        let indexPath = dir + "/model.safetensors.index.json"
        if FileManager.default.fileExists(atPath: indexPath) {
            let idx = try readJSON(indexPath)
            guard let wm = idx["weight_map"] as? [String: String] else {
                throw FormatError.wrongFieldType(path: indexPath, field: "weight_map", expected: "an object of tensor name → file")
            }
            files = Array(Set(wm.values)).sorted()
        } else if FileManager.default.fileExists(atPath: dir + "/model.safetensors") {
            files = ["model.safetensors"]
        } else {
            files = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
        }
        guard !files.isEmpty else { throw FormatError.missingField(path: dir, field: "*.safetensors") }

        var raw: [(SafetensorInfo, SafetensorsFile)] = []
        var owners: [AnyObject] = []
        var originalDTypes: [String: DType] = [:]
        for f in files {
            let sf = try SafetensorsFile(path: dir + "/" + f)
            owners.append(sf)
            if let json = sf.metadata["wren.dtypes"], let d = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String] {
                for (k, v) in d { originalDTypes[k] = DType(name: v) }
            }
            for t in sf.tensors { raw.append((t, sf)) }
        }
        let hasLMHead = raw.contains { $0.0.name == "lm_head.weight" }
        let c = try config(cfgJSON, path: configPath, tiedDefault: !hasLMHead)
        let gemma = c.architecture == "gemma3"

        var tensors: [SourceTensor] = []
        for (t, sf) in raw {
            if TensorNames.isIgnorableHF(t.name) { continue }
            guard let name = (gemma ? TensorNames.gemmaName(hf: t.name) : nil) ?? TensorNames.wrenName(hf: t.name, config: c) else {
                throw FormatError.invalid(path: sf.path, field: "tensor \(t.name)", reason: "not a \(c.architecture) weight Wren knows")
            }
            if c.tiedEmbeddings && name == TensorNames.output { continue }
            guard let dt = t.wrenDType else { throw FormatError.unsupportedDType(path: sf.path, dtype: t.dtype, tensor: t.name) }
            guard !t.shape.isEmpty else { throw FormatError.invalid(path: sf.path, field: "tensor \(t.name) shape", reason: "scalar") }
            var st = SourceTensor(name: name, dtype: dt, shape: t.shape, data: sf.data(t))
            if let heads = TensorNames.permutedHeads(name, c) {
                guard t.shape.count == 2, t.shape[0] % heads == 0 else {
                    throw FormatError.invalid(path: sf.path, field: "tensor \(t.name) shape", reason: "\(t.shape) rows not divisible by \(heads) heads")
                }
                st.rowOrder = TensorNames.hfToWrenRows(rows: t.shape[0], heads: heads)
            }
            if let heads = TensorNames.permutedBiasHeads(name, c) {   // q/k biases follow their rows
                guard t.shape.count == 1, t.shape[0] % heads == 0 else {
                    throw FormatError.invalid(path: sf.path, field: "tensor \(t.name) shape", reason: "\(t.shape) not divisible by \(heads) heads")
                }
                st.elementOrder = TensorNames.hfToWrenRows(rows: t.shape[0], heads: heads)
            }
            if gemma, t.name.hasSuffix("norm.weight") { st.valueOffset = 1 }   // Gemma multiplies by 1 + w
            if gemma, name.hasSuffix("attn_q_norm.weight") || name.hasSuffix("attn_k_norm.weight") {
                st.elementOrder = TensorNames.hfToWrenRows(rows: t.shape[0], heads: 1)   // follows the rotate-half rows
            }
            st.originalDType = originalDTypes[t.name]
            tensors.append(st)
        }
        // Tensors keep the order of their bytes in the safetensors files, so a
        // directory written by `wren export` converts back to the same layout.

        var meta = Metadata()
        if let n = cfgJSON["_name_or_path"] as? String, !n.isEmpty { meta["general.name"] = .string(n) }
        c.write(to: &meta)
        let tok = try tokenizer(directory: dir, vocabSize: c.vocabSize)
        tok.write(to: &meta)
        return try ModelSource(path: dir, kind: .huggingface, metadata: meta, tensors: tensors, config: c,
                               owners: owners, sourceFiles: files.map { dir + "/" + $0 })
    }

    // MARK: tokenizer

    /// Reads tokenizer.json (+ tokenizer_config.json) into Wren's tokenizer metadata.
    public static func tokenizer(directory dir: String, vocabSize: Int) throws -> TokenizerMetadata {
        let tp = dir + "/tokenizer.json"
        let tj = try readJSON(tp)
        guard let model = tj["model"] as? [String: Any] else { throw FormatError.wrongFieldType(path: tp, field: "model", expected: "an object") }
        guard (model["type"] as? String) == "BPE" else {
            throw FormatError.invalid(path: tp, field: "model.type", reason: "\(model["type"] ?? "missing") is not supported (BPE only)")
        }
        guard let vocab = model["vocab"] as? [String: Any] else { throw FormatError.wrongFieldType(path: tp, field: "model.vocab", expected: "an object of token → id") }
        var idOf: [String: Int] = [:]
        var maxID = -1
        for (tok, v) in vocab {
            guard let i = Checked.jsonInt(v), i >= 0, i < 10_000_000 else {
                throw FormatError.wrongFieldType(path: tp, field: "model.vocab[\(tok)]", expected: "a token id")
            }
            idOf[tok] = i
            maxID = max(maxID, i)
        }
        var special = Set<Int>(), userDefined = Set<Int>()
        if let added = tj["added_tokens"] as? [[String: Any]] {
            for (k, a) in added.enumerated() {
                guard let id = Checked.jsonInt(a["id"]), id >= 0, id < 10_000_000, let content = a["content"] as? String else {
                    throw FormatError.wrongFieldType(path: tp, field: "added_tokens[\(k)]", expected: "an object with id and content")
                }
                idOf[content] = id
                maxID = max(maxID, id)
                if (a["special"] as? Bool) ?? false { special.insert(id) } else { userDefined.insert(id) }
            }
        }
        let count = max(maxID + 1, vocabSize)
        var tokens = [String?](repeating: nil, count: count)
        for (t, i) in idOf { tokens[i] = t }
        let byteFallback = (model["byte_fallback"] as? Bool) ?? false
        let kind = byteFallback || describe(tj["pre_tokenizer"]).contains("Metaspace") ? "llama" : "gpt2"
        var types = [Int32](repeating: 1, count: count)
        var filled: [String] = []
        filled.reserveCapacity(count)
        for i in 0..<count {
            if let t = tokens[i] {
                filled.append(t)
                if kind == "llama", t.utf8.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">"), UInt8(t.dropFirst(3).prefix(2), radix: 16) != nil { types[i] = 6 }
                else if special.contains(i) { types[i] = 3 } else if userDefined.contains(i) { types[i] = 4 }
            } else {
                filled.append("[PAD\(i)]")
                types[i] = 5
            }
        }
        var merges: [String] = []
        if let ms = model["merges"] as? [Any] {
            for (k, m) in ms.enumerated() {
                if let s = m as? String { merges.append(s) } else if let p = m as? [String], p.count == 2 { merges.append(p[0] + " " + p[1]) } else {
                    throw FormatError.wrongFieldType(path: tp, field: "model.merges[\(k)]", expected: "\"a b\" or [\"a\", \"b\"]")
                }
            }
        }
        let pre = kind == "llama" ? "default" : preTokenizerName(tj["pre_tokenizer"])
        var addSpacePrefix = kind == "llama"
        if kind == "gpt2", let p = findByteLevel(tj["pre_tokenizer"]) { addSpacePrefix = (p["add_prefix_space"] as? Bool) ?? false }

        var tok = TokenizerMetadata(model: kind, pre: pre, tokens: filled,
                                    scores: nil,   // HF BPE merges by rank; the merges carry the priorities
                                    tokenTypes: types, merges: merges.isEmpty ? nil : merges, addSpacePrefix: addSpacePrefix)
        if let unk = model["unk_token"] as? String { tok.unkID = idOf[unk] }
        if tok.unkID != nil { types[tok.unkID!] = 2; tok.tokenTypes = MetaArray(int32s: types) }

        let cp = dir + "/tokenizer_config.json"
        if FileManager.default.fileExists(atPath: cp) {
            let tc = try readJSON(cp)
            func tokenID(_ key: String) throws -> Int? {
                guard let v = tc[key], !(v is NSNull) else { return nil }
                let s: String? = (v as? String) ?? ((v as? [String: Any])?["content"] as? String)
                guard let s else { throw FormatError.wrongFieldType(path: cp, field: key, expected: "a token string") }
                guard let id = idOf[s] else { throw FormatError.invalid(path: cp, field: key, reason: "token \"\(s)\" is not in the vocabulary") }
                return id
            }
            tok.bosID = try tokenID("bos_token")
            tok.eosID = try tokenID("eos_token")
            if let u = try tokenID("unk_token") { tok.unkID = u }
            tok.padID = try tokenID("pad_token")
            if let b = tc["add_bos_token"] as? Bool { tok.addBOS = b }
            if let b = tc["add_eos_token"] as? Bool { tok.addEOS = b }
            if let t = tc["chat_template"] as? String { tok.chatTemplate = t } else if let list = tc["chat_template"] as? [[String: Any]] {
                tok.chatTemplate = (list.first { ($0["name"] as? String) == "default" } ?? list.first)?["template"] as? String
            }
        }
        return tok
    }

    static func describe(_ v: Any?) -> String {
        guard let v, let d = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed]) else { return "" }
        return String(decoding: d, as: UTF8.self)
    }

    static func findByteLevel(_ v: Any?) -> [String: Any]? {
        guard let d = v as? [String: Any] else { return nil }
        if (d["type"] as? String) == "ByteLevel" { return d }
        for p in (d["pretokenizers"] as? [Any]) ?? [] { if let f = findByteLevel(p) { return f } }
        return nil
    }

    /// llama.cpp's name for a byte-level pre-tokenizer, recognised from its structure.
    static func preTokenizerName(_ v: Any?) -> String {
        let s = describe(v)
        if s.contains("\"Digits\"") && s.contains("\"individual_digits\":true") && s.contains("ByteLevel") { return "smollm" }
        if s.contains("\\\\p{N}{1,3}") { return "llama-bpe" }
        if s.contains("\"Split\"") { return "default" }
        return "gpt2"
    }
}

public enum HFExporter {
    /// Writes `model` as a Hugging Face llama directory: config.json, tokenizer.json,
    /// tokenizer_config.json, model.safetensors. Quantized tensors are written
    /// dequantized (as `floatType`, default f32) and their original dtype is kept in
    /// the safetensors metadata ("wren.dtypes") so that converting back restores them:
    /// the very bytes for the 32-element types, a requantization for the k-quants
    /// (whose scale searches can settle differently on dequantized values).
    /// The directory is built under a temporary name beside `dir` and renamed into place
    /// whole, so a kill at any point leaves either the old directory or the new one, never a
    /// mix. An existing `dir` is replaced only with `overwrite` and only when it holds nothing
    /// but the files export writes.
    public static func export(_ w: WrenFile, to dir: String, floatType: DType = .f32, overwrite: Bool = false) throws {
        precondition(!floatType.isQuantized)
        let c = try ModelConfig(metadata: w.metadata, path: w.path)
        guard c.architecture == "llama", !w.tensors.contains(where: { $0.name == TensorNames.ropeFreqs }) else {
            throw FormatError.invalid(path: w.path, field: ModelConfig.Key.architecture,
                                      reason: "export writes llama and Mistral checkpoints; \(c.architecture)"
                                          + (c.architecture == "llama" ? " with stored RoPE frequency factors" : "") + " is not supported yet")
        }
        let tok = try TokenizerMetadata(metadata: w.metadata, path: w.path)
        let build = try DirectoryBuild(path: dir, overwrite: overwrite, replaceable: exportedFiles)
        let out = build.tempPath
        var entries: [SafetensorsWriter.Entry] = []
        var original: [String: String] = [:]
        for (index, info) in w.tensors.enumerated() {
            guard let hf = TensorNames.hfName(wren: info.name) else { continue }
            let t = try w.verifiedTensor(at: index)
            let outType = info.dtype.isQuantized ? floatType : info.dtype
            if info.dtype.isQuantized { original[hf] = info.dtype.name }
            var src = SourceTensor(name: info.name, dtype: info.dtype, shape: info.shape, data: t.data)
            if let heads = TensorNames.permutedHeads(info.name, c) {
                src.rowOrder = TensorNames.wrenToHFRows(rows: info.shape[0], heads: heads)
            }
            var bytes = [UInt8](repeating: 0, count: outType.byteCount(elements: info.elementCount)!)
            bytes.withUnsafeMutableBytes { src.write(as: outType, into: $0) }
            entries.append(.init(name: hf, dtype: outType == .f32 ? "F32" : outType == .f16 ? "F16" : "BF16", shape: info.shape, bytes: bytes))
        }
        var stMeta = ["format": "pt"]
        if !original.isEmpty,
           let d = try? JSONSerialization.data(withJSONObject: original, options: [.sortedKeys]) {
            stMeta["wren.dtypes"] = String(decoding: d, as: UTF8.self)
        }
        try AtomicFile.write(SafetensorsWriter.encode(entries, metadata: stMeta), to: out + "/model.safetensors", overwrite: true)

        var cfg: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": c.vocabSize, "max_position_embeddings": c.contextLength, "hidden_size": c.embeddingLength,
            "intermediate_size": c.feedForwardLength, "num_hidden_layers": c.blockCount,
            "num_attention_heads": c.headCount, "num_key_value_heads": c.headCountKV, "head_dim": c.headDim,
            "rms_norm_eps": Double(c.rmsNormEps), "rope_theta": Double(c.ropeFreqBase),
            "tie_word_embeddings": c.tiedEmbeddings, "hidden_act": "silu",
            "torch_dtype": floatType == .f32 ? "float32" : floatType == .f16 ? "float16" : "bfloat16",
            "attention_bias": false, "mlp_bias": false,
        ]
        if c.slidingWindow > 0 {   // a windowed llama is Mistral's layout
            cfg["architectures"] = ["MistralForCausalLM"]; cfg["model_type"] = "mistral"; cfg["sliding_window"] = c.slidingWindow
        }
        if let b = tok.bosID { cfg["bos_token_id"] = b }
        if let e = tok.eosID { cfg["eos_token_id"] = e }
        if c.ropeScalingType != .none {
            var rs: [String: Any] = ["rope_type": c.ropeScalingType == .dynamicNTK ? "dynamic" : c.ropeScalingType.rawValue,
                                     "factor": Double(c.ropeScalingFactor)]
            if c.ropeOriginalContextLength > 0 { rs["original_max_position_embeddings"] = c.ropeOriginalContextLength }
            if c.ropeScalingType == .llama3 {
                rs["low_freq_factor"] = Double(c.ropeLowFreqFactor)
                rs["high_freq_factor"] = Double(c.ropeHighFreqFactor)
            }
            cfg["rope_scaling"] = rs
        } else {
            cfg["rope_scaling"] = NSNull()
        }
        try writeJSON(cfg, out + "/config.json")
        try writeJSON(tokenizerJSON(tok), out + "/tokenizer.json")
        var tc: [String: Any] = ["add_bos_token": tok.addBOS, "add_eos_token": tok.addEOS,
                                 "tokenizer_class": tok.model == "gpt2" ? "GPT2Tokenizer" : "LlamaTokenizer",
                                 "clean_up_tokenization_spaces": false, "model_max_length": c.contextLength]
        if let b = tok.bosID { tc["bos_token"] = tok.tokens.string(b) }
        if let e = tok.eosID { tc["eos_token"] = tok.tokens.string(e) }
        if let u = tok.unkID { tc["unk_token"] = tok.tokens.string(u) }
        if let p = tok.padID { tc["pad_token"] = tok.tokens.string(p) }
        if let t = tok.chatTemplate { tc["chat_template"] = t }
        try writeJSON(tc, out + "/tokenizer_config.json")
        try build.commit()
    }

    /// What `export` writes; an existing directory holding anything else is never replaced.
    public static let exportedFiles: Set<String> = ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"]

    static func writeJSON(_ obj: Any, _ path: String) throws {
        let d = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try AtomicFile.write(Array(d) + [0x0a], to: path, overwrite: true)
    }

    /// A tokenizers-library tokenizer.json for the vocabulary.
    static func tokenizerJSON(_ tok: TokenizerMetadata) -> [String: Any] {
        let n = tok.tokens.count
        let types = tok.tokenTypes?.int32s ?? [Int32](repeating: 1, count: n)
        var vocab: [String: Int] = [:]
        var added: [[String: Any]] = []
        for i in 0..<n {
            let t = tok.tokens.string(i)
            if types[i] == 5 { continue }
            if vocab[t] == nil { vocab[t] = i }
            if types[i] == 3 || types[i] == 4 {
                added.append(["id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": types[i] == 4, "special": types[i] == 3])
            }
        }
        var model: [String: Any] = ["type": "BPE", "dropout": NSNull(), "unk_token": tok.unkID.map { tok.tokens.string($0) as Any } ?? NSNull(),
                                    "continuing_subword_prefix": NSNull(), "end_of_word_suffix": NSNull(),
                                    "fuse_unk": tok.model == "llama", "byte_fallback": tok.model == "llama",
                                    "ignore_merges": false, "vocab": vocab, "merges": tok.merges?.strings ?? []]
        if tok.model == "gpt2" { model["unk_token"] = NSNull() }
        var out: [String: Any] = ["version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added, "model": model]
        if tok.model == "gpt2" {
            let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": tok.addSpacePrefix, "trim_offsets": true, "use_regex": true]
            switch tok.pre {
            case "smollm":
                out["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel]]
            case "llama-bpe":
                let re = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
                var bl = byteLevel
                bl["use_regex"] = false
                out["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [
                    ["type": "Split", "pattern": ["Regex": re], "behavior": "Isolated", "invert": false], bl]]
            default:
                out["pre_tokenizer"] = byteLevel
            }
            out["normalizer"] = NSNull()
            out["post_processor"] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true]
            out["decoder"] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true]
        } else {
            out["normalizer"] = ["type": "Sequence", "normalizers": [
                ["type": "Prepend", "prepend": "▁"], ["type": "Replace", "pattern": ["String": " "], "content": "▁"]]]
            out["pre_tokenizer"] = NSNull()
            out["post_processor"] = NSNull()
            out["decoder"] = ["type": "Sequence", "decoders": [
                ["type": "Replace", "pattern": ["String": "▁"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"],
                ["type": "Strip", "content": " ", "start": 1, "stop": 0]]]
        }
        return out
    }
}
