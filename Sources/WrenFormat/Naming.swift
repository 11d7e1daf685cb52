// Wren's canonical tensor names (GGUF's: token_embd, blk.N.attn_q, ...) and
// the translation to and from Hugging Face names, including the per-head
// row permutation of q/k weights. Wren (like GGUF) rotates adjacent pairs
// (2i, 2i+1) in RoPE; HF llama checkpoints rotate halves (i, i + d/2), so
// HF q/k rows are permuted on import and un-permuted on export.

public enum TensorNames {
    public static let tokenEmbedding = "token_embd.weight"
    public static let outputNorm = "output_norm.weight"
    public static let output = "output.weight"
    /// Per-pair RoPE frequency divisors (llama.cpp's GGUFs of Llama 3.1+), optional.
    public static let ropeFreqs = "rope_freqs.weight"

    /// The nine tensors of a llama layer; `name(layer:)` spells `blk.N.<raw value>.weight`.
    /// Every other file names layer tensors through this, never by string.
    public enum Layer: String, CaseIterable, Sendable {
        case attnNorm = "attn_norm", q = "attn_q", k = "attn_k", v = "attn_v", o = "attn_output"
        case ffnNorm = "ffn_norm", gate = "ffn_gate", up = "ffn_up", down = "ffn_down"

        public func name(layer l: Int) -> String { "blk.\(l).\(rawValue).weight" }

        /// The Hugging Face name inside `model.layers.N.`.
        public var hf: String {
            switch self {
            case .attnNorm: return "input_layernorm.weight"
            case .q: return "self_attn.q_proj.weight"
            case .k: return "self_attn.k_proj.weight"
            case .v: return "self_attn.v_proj.weight"
            case .o: return "self_attn.o_proj.weight"
            case .ffnNorm: return "post_attention_layernorm.weight"
            case .gate: return "mlp.gate_proj.weight"
            case .up: return "mlp.up_proj.weight"
            case .down: return "mlp.down_proj.weight"
            }
        }

        /// Heads whose rows are permuted between HF and Wren order (q: heads, k: kv heads), or nil.
        public func permutedHeads(_ c: ModelConfig) -> Int? {
            switch self {
            case .q: return c.headCount
            case .k: return c.headCountKV
            default: return nil
            }
        }
    }

    /// Per-layer tensors beyond llama's nine, present when the config switches
    /// them on: QK-norm weights (head-dimension vectors), Gemma's post-norms, and
    /// Qwen2's q/k/v biases.
    public enum ExtraLayer: String, CaseIterable, Sendable {
        case qNorm = "attn_q_norm.weight", kNorm = "attn_k_norm.weight"
        case postAttnNorm = "post_attention_norm.weight", postFFNNorm = "post_ffw_norm.weight"
        case qBias = "attn_q.bias", kBias = "attn_k.bias", vBias = "attn_v.bias"

        public func name(layer l: Int) -> String { "blk.\(l).\(rawValue)" }

        /// Whether `c` uses this tensor.
        public func isUsed(by c: ModelConfig) -> Bool {
            switch self {
            case .qNorm, .kNorm: return c.qkNorm
            case .postAttnNorm, .postFFNNorm: return c.postNorms
            case .qBias, .kBias, .vBias: return c.qkvBias
            }
        }

        /// The tensor's length in `c`.
        public func length(_ c: ModelConfig) -> Int {
            switch self {
            case .qNorm, .kNorm: return c.headDim
            case .postAttnNorm, .postFFNNorm: return c.embeddingLength
            case .qBias: return c.headCount * c.headDim
            case .kBias, .vBias: return c.headCountKV * c.headDim
            }
        }

        /// The Hugging Face name inside `model.layers.N.` (Qwen2's biases; Gemma 3's
        /// QK-norms). Gemma's post-norms are named per architecture by the importer.
        public var hf: String? {
            switch self {
            case .qNorm: return "self_attn.q_norm.weight"
            case .kNorm: return "self_attn.k_norm.weight"
            case .qBias: return "self_attn.q_proj.bias"
            case .kBias: return "self_attn.k_proj.bias"
            case .vBias: return "self_attn.v_proj.bias"
            case .postAttnNorm, .postFFNNorm: return nil
            }
        }
    }

    /// The Wren name of an HF tensor name, or nil when it is not a llama weight.
    public static func wrenName(hf: String) -> String? {
        switch hf {
        case "model.embed_tokens.weight": return tokenEmbedding
        case "model.norm.weight": return outputNorm
        case "lm_head.weight": return output
        default: break
        }
        let parts = hf.split(separator: ".", maxSplits: 3)
        guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let n = Int(parts[2]), n >= 0 else { return nil }
        guard let t = Layer.allCases.first(where: { $0.hf == parts[3] }) else { return nil }
        return t.name(layer: n)
    }

    /// The Wren name of an HF tensor name in a model of `config` (the extra
    /// per-layer tensors its architecture uses included), or nil.
    public static func wrenName(hf: String, config c: ModelConfig) -> String? {
        if let n = wrenName(hf: hf) { return n }
        let parts = hf.split(separator: ".", maxSplits: 3)
        guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let n = Int(parts[2]), n >= 0 else { return nil }
        guard let t = ExtraLayer.allCases.first(where: { $0.isUsed(by: c) && $0.hf == String(parts[3]) }) else { return nil }
        return t.name(layer: n)
    }

    /// Gemma's Hugging Face names for its four block norms (its `post_attention_layernorm`
    /// is the post-norm, not llama's feed-forward norm), or nil for the shared names.
    public static func gemmaName(hf: String) -> String? {
        let parts = hf.split(separator: ".", maxSplits: 3)
        guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let n = Int(parts[2]), n >= 0 else { return nil }
        switch parts[3] {
        case "post_attention_layernorm.weight": return ExtraLayer.postAttnNorm.name(layer: n)
        case "pre_feedforward_layernorm.weight": return Layer.ffnNorm.name(layer: n)
        case "post_feedforward_layernorm.weight": return ExtraLayer.postFFNNorm.name(layer: n)
        default: return nil
        }
    }

    /// Heads whose bias elements are permuted like their rows (q and k biases), or nil.
    public static func permutedBiasHeads(_ wrenName: String, _ c: ModelConfig) -> Int? {
        let parts = wrenName.split(separator: ".")
        guard parts.count == 4, parts[0] == "blk", parts[3] == "bias" else { return nil }
        return parts[2] == "attn_q" ? c.headCount : parts[2] == "attn_k" ? c.headCountKV : nil
    }

    /// The HF name of a Wren tensor name, or nil.
    public static func hfName(wren: String) -> String? {
        switch wren {
        case tokenEmbedding: return "model.embed_tokens.weight"
        case outputNorm: return "model.norm.weight"
        case output: return "lm_head.weight"
        default: break
        }
        let parts = wren.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "blk", let n = Int(parts[1]) else { return nil }
        guard let t = Layer.allCases.first(where: { "\($0.rawValue).weight" == parts[2] }) else { return nil }
        return "model.layers.\(n).\(t.hf)"
    }

    /// HF tensors that carry no weights Wren needs (recomputed buffers).
    public static func isIgnorableHF(_ name: String) -> Bool {
        name.hasSuffix("rotary_emb.inv_freq")
    }

    /// Number of heads whose rows are permuted for `wrenName` (q: headCount, k: headCountKV), or nil.
    public static func permutedHeads(_ wrenName: String, _ c: ModelConfig) -> Int? {
        let parts = wrenName.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "blk", let t = Layer.allCases.first(where: { "\($0.rawValue).weight" == parts[2] }) else { return nil }
        return t.permutedHeads(c)
    }

    /// Row order that turns HF (rotate-half) rows into Wren (adjacent-pair) rows:
    /// Wren row `h·d + 2i + j` is HF row `h·d + j·d/2 + i`, for head h, pair i, j ∈ {0, 1}.
    /// Only the first `rotary` dimensions of each head are rotated; the rest keep their place.
    public static func hfToWrenRows(rows: Int, heads: Int, rotary: Int? = nil) -> [Int] {
        let d = rows / heads
        let rot = rotary ?? d
        var perm = [Int](repeating: 0, count: rows)
        for h in 0..<heads {
            for r in 0..<d {
                let src: Int
                if r < rot {
                    let i = r / 2, j = r % 2
                    src = j * (rot / 2) + i
                } else {
                    src = r
                }
                perm[h * d + r] = h * d + src
            }
        }
        return perm
    }

    /// The inverse of `hfToWrenRows`: HF row r is Wren row result[r].
    public static func wrenToHFRows(rows: Int, heads: Int, rotary: Int? = nil) -> [Int] {
        let f = hfToWrenRows(rows: rows, heads: heads, rotary: rotary)
        var inv = [Int](repeating: 0, count: rows)
        for (w, h) in f.enumerated() { inv[h] = w }
        return inv
    }
}
