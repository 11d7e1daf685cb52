// PEFT LoRA adapters (formats/adapter.md): a directory with adapter_config.json
// and adapter_model.safetensors, tensors named as Hugging Face's PEFT saves
// them — base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight
// (r × in) and ...lora_B.weight (out × r) — in HF row order. Wren's q/k row
// permutation is applied by the caller (WrenEngine), not here.

import Foundation
import WrenKernels

public struct PEFTConfig: Sendable, Equatable {
    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    /// Module names (q_proj, ...).
    public var targetModules: [String]
    public var useRSLoRA: Bool
    public var baseModel: String
    /// Per-module rank / alpha overrides (PEFT's rank_pattern / alpha_pattern), keyed by
    /// a module name or a key suffix.
    public var rankPattern: [String: Int]
    public var alphaPattern: [String: Double]

    public init(rank: Int, alpha: Double, dropout: Double, targetModules: [String], useRSLoRA: Bool = false, baseModel: String = "",
                rankPattern: [String: Int] = [:], alphaPattern: [String: Double] = [:]) {
        self.rank = rank; self.alpha = alpha; self.dropout = dropout; self.targetModules = targetModules
        self.useRSLoRA = useRSLoRA; self.baseModel = baseModel; self.rankPattern = rankPattern; self.alphaPattern = alphaPattern
    }

    /// The scale α/r (α/√r with rsLoRA) of the module with key `key` and rank `r`.
    public func scale(forKey key: String, rank r: Int) -> Double {
        let a = alphaPattern.first(where: { key.hasSuffix($0.key) || key.contains("." + $0.key + ".") })?.value ?? alpha
        return useRSLoRA ? a / Double(r).squareRoot() : a / Double(r)
    }
}

/// A LoRA factor pair of one module, HF layout.
public struct PEFTFactor: Sendable {
    public var a: [Float]     // rank × in
    public var b: [Float]     // out × rank
    public var rank: Int
    public var inFeatures: Int
    public var outFeatures: Int
    public init(a: [Float], b: [Float], rank: Int, inFeatures: Int, outFeatures: Int) {
        self.a = a; self.b = b; self.rank = rank; self.inFeatures = inFeatures; self.outFeatures = outFeatures
    }
}

public struct PEFTAdapter: Sendable {
    public var config: PEFTConfig
    /// [layer][module name (q_proj, ...)]
    public var factors: [Int: [String: PEFTFactor]]
    /// A reward model's head (`modules_to_save` "score" of a SEQ_CLS adapter): one row of
    /// embeddingLength values, the reward being score · (final normed hidden state).
    public var score: [Float]?
    static let scoreKey = "base_model.model.score.weight"
    /// Trainable token rows (`trainable_token_indices`): the ids, and their embedding rows
    /// ([ids.count][embeddingLength], PEFT's `trainable_tokens_delta`, which holds the rows
    /// themselves). With tied embeddings they are the output head's rows too.
    public var tokenIDs: [Int] = []
    public var tokenRows: [Float] = []
    static let tokensKey = "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"

    public init(config: PEFTConfig, factors: [Int: [String: PEFTFactor]]) {
        self.config = config; self.factors = factors
    }

    static let modulePaths = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

    public static func key(layer: Int, module: String, factor: String) -> String {
        let path = modulePaths.first { $0.hasSuffix("." + module) } ?? module
        return "base_model.model.model.layers.\(layer).\(path).lora_\(factor).weight"
    }

    /// Reads an adapter directory (or the directory holding the given adapter_config.json).
    public static func load(_ path: String) throws -> PEFTAdapter {
        var dir = path
        if path.hasSuffix("adapter_config.json") { dir = (path as NSString).deletingLastPathComponent }
        let cfgPath = dir + "/adapter_config.json"
        guard let data = MappedFile.contents(of: cfgPath) else {
            throw FormatError.invalid(path: cfgPath, field: "file", reason: "cannot read it (a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors)")
        }
        guard let d = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError.invalid(path: cfgPath, field: "file", reason: "not a JSON object")
        }
        if let t = d["peft_type"] as? String, t.uppercased() != "LORA" {
            throw FormatError.invalid(path: cfgPath, field: "peft_type", reason: "\(t) adapters are not supported (LORA is)")
        }
        if (d["use_dora"] as? Bool) == true { throw FormatError.invalid(path: cfgPath, field: "use_dora", reason: "DoRA adapters are not supported") }
        if (d["fan_in_fan_out"] as? Bool) == true {
            throw FormatError.invalid(path: cfgPath, field: "fan_in_fan_out", reason: "true is for Conv1D models (GPT-2); llama adapters use false")
        }
        if let b = d["bias"] as? String, b != "none" { throw FormatError.invalid(path: cfgPath, field: "bias", reason: "\"\(b)\" is not supported (\"none\" is)") }
        if let m = d["modules_to_save"], !(m is NSNull), !((m as? [Any])?.isEmpty ?? false) {
            guard let names = m as? [String], Set(names).isSubset(of: ["score", "classifier"]) else {
                throw FormatError.invalid(path: cfgPath, field: "modules_to_save", reason: "fully trained extra modules other than a reward head (\"score\") are not supported")
            }
        }
        // trainable_token_indices: a list of ids (for the input embedding), or {"embed_tokens": [ids]}.
        var tokenIDs: [Int] = []
        if let t = d["trainable_token_indices"], !(t is NSNull) {
            let list: Any? = (t as? [String: Any]).map { $0.count == 1 ? $0["embed_tokens"] : nil } ?? t
            guard let arr = list as? [Any] else {
                throw FormatError.invalid(path: cfgPath, field: "trainable_token_indices", reason: "not a list of token ids (or {\"embed_tokens\": [ids]})")
            }
            tokenIDs = try arr.enumerated().map { i, v in
                guard let id = Checked.jsonInt(v), id >= 0 else {
                    throw FormatError.invalid(path: cfgPath, field: "trainable_token_indices[\(i)]", reason: "not a non-negative integer")
                }
                return id
            }
            guard Set(tokenIDs).count == tokenIDs.count else {
                throw FormatError.invalid(path: cfgPath, field: "trainable_token_indices", reason: "repeats an id")
            }
        }
        guard let r = Checked.jsonInt(d["r"]), r > 0 else { throw FormatError.invalid(path: cfgPath, field: "r", reason: "missing or not a positive integer") }
        guard let alpha = Checked.jsonNumber(d["lora_alpha"]) else { throw FormatError.invalid(path: cfgPath, field: "lora_alpha", reason: "missing or not a finite number") }
        // target_modules: a list of module names, or a string that PEFT full-matches as a regular
        // expression against each module's path ("all-linear" meaning every projection).
        var targets: [String] = []
        var targetRegex: NSRegularExpression?
        switch d["target_modules"] {
        case let t as [Any]:
            guard let names = t as? [String] else { throw FormatError.wrongFieldType(path: cfgPath, field: "target_modules", expected: "a list of strings or a string") }
            targets = names
        case let t as String:
            if t == "all-linear" { targets = modulePaths.map { String($0.split(separator: ".").last!) } } else {
                guard let re = try? NSRegularExpression(pattern: "^(?:" + t + ")$") else {
                    throw FormatError.invalid(path: cfgPath, field: "target_modules", reason: "\"\(t)\" is not a regular expression")
                }
                targets = [t]
                targetRegex = re
            }
        case nil, is NSNull: break
        default: throw FormatError.wrongFieldType(path: cfgPath, field: "target_modules", expected: "a list of strings or a string")
        }
        var rp: [String: Int] = [:], ap: [String: Double] = [:]
        if let p = d["rank_pattern"] as? [String: Any] {
            for (k, v) in p {
                guard let i = Checked.jsonInt(v), i > 0 else { throw FormatError.invalid(path: cfgPath, field: "rank_pattern.\(k)", reason: "not a positive integer") }
                rp[k] = i
            }
        }
        if let p = d["alpha_pattern"] as? [String: Any] {
            for (k, v) in p {
                guard let x = Checked.jsonNumber(v) else { throw FormatError.invalid(path: cfgPath, field: "alpha_pattern.\(k)", reason: "not a finite number") }
                ap[k] = x
            }
        }
        var dropout = 0.0
        if let v = d["lora_dropout"], !(v is NSNull) {
            guard let x = Checked.jsonNumber(v), x >= 0, x < 1 else { throw FormatError.invalid(path: cfgPath, field: "lora_dropout", reason: "not a number in [0, 1)") }
            dropout = x
        }
        let config = PEFTConfig(rank: r, alpha: alpha, dropout: dropout, targetModules: targets,
                                useRSLoRA: (d["use_rslora"] as? Bool) ?? false, baseModel: (d["base_model_name_or_path"] as? String) ?? "",
                                rankPattern: rp, alphaPattern: ap)

        let stPath = dir + "/adapter_model.safetensors"
        guard FileManager.default.fileExists(atPath: stPath) else {
            throw FormatError.invalid(path: stPath, field: "file", reason: "missing (adapter_model.bin pickles are not read; save with safe_serialization)")
        }
        let st = try SafetensorsFile(path: stPath)
        var halves: [Int: [String: (a: SafetensorInfo?, b: SafetensorInfo?)]] = [:]
        var score: [Float]?
        var tokenRows: [Float]?
        for t in st.tensors {
            if t.name == tokensKey || t.name == "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta.default" {
                guard t.shape.count == 2, t.shape[0] == tokenIDs.count, t.shape[1] > 0 else {
                    throw FormatError.invalid(path: stPath, field: "tensor \(t.name) shape",
                                              reason: "\(t.shape) for \(tokenIDs.count) trainable_token_indices in adapter_config.json")
                }
                let v = try floats(st, t)
                if let i = v.firstIndex(where: { !$0.isFinite }) {
                    throw FormatError.invalid(path: stPath, field: "tensor \(t.name)", reason: "element \(i) is \(v[i]) (NaN or infinite)")
                }
                tokenRows = v
                continue
            }
            if t.name == scoreKey || t.name == "base_model.model.score.modules_to_save.default.weight" {
                guard t.shape.count == 2, t.shape[0] == 1, t.shape[1] > 0 else {
                    throw FormatError.invalid(path: stPath, field: "tensor \(t.name) shape", reason: "\(t.shape) is not one row (a reward head has one label)")
                }
                let v = try floats(st, t)
                if let i = v.firstIndex(where: { !$0.isFinite }) {
                    throw FormatError.invalid(path: stPath, field: "tensor \(t.name)", reason: "element \(i) is \(v[i]) (NaN or infinite)")
                }
                score = v
                continue
            }
            // base_model.model.model.layers.N.<attn|mlp>.<module>.lora_<A|B>[.adapter].weight
            let parts = t.name.split(separator: ".").map(String.init)
            guard let li = parts.firstIndex(of: "layers"), li + 4 < parts.count, let layer = Int(parts[li + 1]),
                  let fi = parts.firstIndex(where: { $0 == "lora_A" || $0 == "lora_B" }), fi >= 1, parts.last == "weight" else {
                throw FormatError.invalid(path: stPath, field: "tensor \(t.name)", reason: "not a LoRA factor of a llama layer")
            }
            let module = parts[fi - 1]
            guard let modulePath = modulePaths.first(where: { $0.hasSuffix("." + module) }) else {
                throw FormatError.invalid(path: stPath, field: "tensor \(t.name)", reason: "module \(module) is not a llama projection")
            }
            let targeted = targetRegex.map { re in
                let p = "model.layers.\(layer).\(modulePath)"
                return re.firstMatch(in: p, range: NSRange(p.startIndex..., in: p)) != nil
                    || re.firstMatch(in: module, range: NSRange(module.startIndex..., in: module)) != nil
            } ?? (targets.isEmpty || targets.contains(module) || targets.contains { modulePath.hasSuffix($0) })
            guard targeted else {
                throw FormatError.invalid(path: stPath, field: "tensor \(t.name)", reason: "module \(module) is not in adapter_config.json's target_modules \(targets)")
            }
            guard t.shape.count == 2 else { throw FormatError.invalid(path: stPath, field: "tensor \(t.name) shape", reason: "\(t.shape) is not 2-D") }
            var e = halves[layer, default: [:]][module] ?? (nil, nil)
            if parts[fi] == "lora_A" { e.a = t } else { e.b = t }
            halves[layer, default: [:]][module] = e
        }
        var factors: [Int: [String: PEFTFactor]] = [:]
        for (layer, mods) in halves {
            for (module, pair) in mods {
                guard let a = pair.a, let b = pair.b else {
                    throw FormatError.invalid(path: stPath, field: "layer \(layer) \(module)", reason: "has only one of lora_A and lora_B")
                }
                let rank = a.shape[0]
                guard rank > 0, b.shape[1] == rank, a.shape[1] > 0, b.shape[0] > 0 else {
                    throw FormatError.invalid(path: stPath, field: "layer \(layer) \(module)", reason: "lora_A is \(a.shape) but lora_B is \(b.shape)")
                }
                let key = Self.key(layer: layer, module: module, factor: "A")
                let want = rp.first(where: { key.hasSuffix($0.key) || key.contains("." + $0.key + ".") || $0.key == module })?.value ?? r
                guard rank == want else {
                    throw FormatError.invalid(path: stPath, field: "layer \(layer) \(module)", reason: "rank \(rank), but adapter_config.json says \(want)")
                }
                let fa = try floats(st, a), fb = try floats(st, b)
                for (f, info) in [(fa, a), (fb, b)] {
                    if let i = f.firstIndex(where: { !$0.isFinite }) {
                        throw FormatError.invalid(path: stPath, field: "tensor \(info.name)", reason: "element \(i) is \(f[i]) (NaN or infinite)")
                    }
                }
                factors[layer, default: [:]][module] = PEFTFactor(a: fa, b: fb, rank: rank, inFeatures: a.shape[1], outFeatures: b.shape[0])
            }
        }
        guard !factors.isEmpty else { throw FormatError.invalid(path: stPath, field: "tensors", reason: "no LoRA factors") }
        if let bad = factors.flatMap({ l, m in m.keys.map { (l, $0) } }).first(where: { !config.scale(forKey: key(layer: $0.0, module: $0.1, factor: "A"), rank: r).isFinite }) {
            throw FormatError.invalid(path: cfgPath, field: "lora_alpha", reason: "gives a non-finite scale for layer \(bad.0) \(bad.1)")
        }
        guard tokenIDs.isEmpty || tokenRows != nil else {
            throw FormatError.invalid(path: stPath, field: "tensor \(tokensKey)", reason: "missing; adapter_config.json names \(tokenIDs.count) trainable tokens")
        }
        var adapter = PEFTAdapter(config: config, factors: factors)
        adapter.score = score
        adapter.tokenIDs = tokenIDs
        adapter.tokenRows = tokenRows ?? []
        return adapter
    }

    public static func floats(_ st: SafetensorsFile, _ t: SafetensorInfo) throws -> [Float] {
        guard let dt = t.wrenDType else { throw FormatError.unsupportedDType(path: st.path, dtype: t.dtype, tensor: t.name) }
        let n = t.shape.reduce(1, *)
        let raw = st.data(t)
        guard raw.count == dt.byteCount(elements: n) else {
            throw FormatError.invalid(path: st.path, field: "tensor \(t.name)", reason: "\(raw.count) bytes for shape \(t.shape)")
        }
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { Quant.dequantize(dt, raw.baseAddress!, $0.baseAddress!, count: n) }
        return out
    }

    /// Writes adapter_config.json and adapter_model.safetensors (f32) into `dir`
    /// (created if needed), each file written to a temporary name and renamed.
    public func save(to dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var entries: [SafetensorsWriter.Entry] = []
        for layer in factors.keys.sorted() {
            for module in factors[layer]!.keys.sorted() {
                let f = factors[layer]![module]!
                entries.append(.init(name: Self.key(layer: layer, module: module, factor: "A"), dtype: "F32", shape: [f.rank, f.inFeatures],
                                     bytes: f.a.withUnsafeBytes { Array($0) }))
                entries.append(.init(name: Self.key(layer: layer, module: module, factor: "B"), dtype: "F32", shape: [f.outFeatures, f.rank],
                                     bytes: f.b.withUnsafeBytes { Array($0) }))
            }
        }
        if let score {
            entries.append(.init(name: Self.scoreKey, dtype: "F32", shape: [1, score.count], bytes: score.withUnsafeBytes { Array($0) }))
        }
        if !tokenIDs.isEmpty {
            entries.append(.init(name: Self.tokensKey, dtype: "F32", shape: [tokenIDs.count, tokenRows.count / tokenIDs.count],
                                 bytes: tokenRows.withUnsafeBytes { Array($0) }))
        }
        try writeAtomically(SafetensorsWriter.encode(entries, metadata: ["format": "pt"]), to: dir + "/adapter_model.safetensors")
        var cfg: [String: Any] = [
            "peft_type": "LORA", "task_type": score == nil ? "CAUSAL_LM" : "SEQ_CLS", "base_model_name_or_path": config.baseModel,
            "r": config.rank, "lora_alpha": config.alpha, "lora_dropout": config.dropout,
            "target_modules": config.targetModules, "bias": "none", "fan_in_fan_out": false, "inference_mode": true,
            "use_rslora": config.useRSLoRA, "use_dora": false, "modules_to_save": score == nil ? NSNull() : ["score"] as Any, "init_lora_weights": true,
            "rank_pattern": config.rankPattern, "alpha_pattern": config.alphaPattern, "layers_to_transform": NSNull(),
            "revision": NSNull(), "library": "wren",
        ]
        if !tokenIDs.isEmpty { cfg["trainable_token_indices"] = tokenIDs }
        let json = try JSONSerialization.data(withJSONObject: cfg, options: [.prettyPrinted, .sortedKeys])
        try writeAtomically(Array(json), to: dir + "/adapter_config.json")
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename,
/// so a reader (or a crash) never sees a half-written file.
public func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    try AtomicFile.write(bytes, to: path, overwrite: true)
}
