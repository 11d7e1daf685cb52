// What `wren convert --type` asks for: one stored type for every 2-D weight,
// or one of llama.cpp's k-quant mixtures ("file types" such as Q4_K_M), which
// give some tensors more bits than the base type. The mixture rules are
// llama-quantize's for a dense llama-family model without an importance
// matrix (src/llama-quant.cpp, llama_tensor_get_type), so `wren convert
// --type q4_k_m` of an f32 model stores the same types and, through the
// byte-identical quantizers, the same bytes as `llama-quantize … Q4_K_M`
// (MixtureTests checks this against llama-quantize's output). The recipe is
// written out in docs/quantization.md.

import WrenKernels

/// llama.cpp's k-quant mixtures.
public enum QuantMixture: String, CaseIterable, Sendable {
    case q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k

    /// The type of every weight no rule promotes.
    public var base: DType {
        switch self {
        case .q2_k: return .q2_k
        case .q3_k_s, .q3_k_m, .q3_k_l: return .q3_k
        case .q4_k_s, .q4_k_m: return .q4_k
        case .q5_k_s, .q5_k_m: return .q5_k
        case .q6_k: return .q6_k
        }
    }
}

/// The model facts the mixture rules read.
public struct MixtureContext: Sendable {
    /// Transformer blocks (the rules favour the first and last eighth).
    public var layers: Int
    /// Query heads per key/value head (grouped-query attention).
    public var gqa: Int
    /// True when the model has no separate output matrix (the embedding is reused).
    public var tiedEmbeddings: Bool

    public init(layers: Int, gqa: Int, tiedEmbeddings: Bool) {
        self.layers = layers
        self.gqa = gqa
        self.tiedEmbeddings = tiedEmbeddings
    }
}

public enum QuantScheme: Sendable, Equatable, CustomStringConvertible {
    /// Every 2-D weight in one type (rows that are not whole blocks fall back, see `fallback`).
    case uniform(DType)
    /// llama.cpp's per-tensor choice.
    case mixture(QuantMixture)

    /// A mixture name (q4_k_m …; q2_k and q6_k mean llama-quantize's mixtures of
    /// those names) or a stored type. `pure`: the mixture's base type everywhere,
    /// as llama-quantize --pure.
    public init?(name: String, pure: Bool = false) {
        let n = name.lowercased()
        if let m = QuantMixture(rawValue: n) {
            self = pure ? .uniform(m.base) : .mixture(m)
        } else if let t = DType(name: n) {
            self = .uniform(t)
        } else {
            return nil
        }
    }

    /// Every name `init(name:)` accepts, mixtures first.
    public static var names: [String] {
        QuantMixture.allCases.map(\.rawValue) + DType.allCases.map(\.name).filter { QuantMixture(rawValue: $0) == nil }
    }

    public var description: String {
        switch self {
        case .uniform(let t): return t.name
        case .mixture(let m): return m.rawValue
        }
    }

    /// The stored type of a tensor named `name` (GGUF naming) with `shape`.
    /// 1-D tensors (norms) are f32.
    public func type(for name: String, shape: [Int], context: MixtureContext) -> DType {
        if shape.count == 1 { return .f32 }
        let want: DType
        switch self {
        case .uniform(let t): want = t
        case .mixture(let m): want = Self.mixtureType(m, name: name, rowLength: shape.last!, context: context)
        }
        return Self.fallback(want, rowLength: shape.last!)
    }

    /// A type whose blocks fit rows of `rowLength`: the k-quants step down to the
    /// 32-element type llama-quantize uses (q2_k, q3_k → q4_0; q4_k → q5_0;
    /// q5_k → q5_1; q6_k → q8_0), and anything still not fitting is f16.
    public static func fallback(_ t: DType, rowLength: Int) -> DType {
        if rowLength % t.blockSize == 0 { return t }
        let smaller: DType
        switch t {
        case .q2_k, .q3_k: smaller = .q4_0
        case .q4_k: smaller = .q5_0
        case .q5_k: smaller = .q5_1
        case .q6_k: smaller = .q8_0
        default: return .f16
        }
        return rowLength % smaller.blockSize == 0 ? smaller : .f16
    }

    /// llama.cpp's rule for one tensor of a dense model. `useMoreBits` marks the
    /// first and last eighth of the layers and every third one between them.
    static func mixtureType(_ m: QuantMixture, name: String, rowLength: Int, context c: MixtureContext) -> DType {
        let layer = Self.layerIndex(name)
        func useMoreBits(_ i: Int, _ n: Int) -> Bool { i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2 }
        let n = c.layers
        if name == "output.weight" || (c.tiedEmbeddings && name == "token_embd.weight") {
            // The output matrix: q6_k, or q8_0 when its rows are not whole super-blocks.
            return rowLength % 256 != 0 ? .q8_0 : .q6_k
        }
        if name.contains("attn_v.weight"), let i = layer {
            switch m {
            case .q2_k: return c.gqa >= 4 ? .q4_k : .q3_k
            case .q3_k_m: return i < 2 ? .q5_k : .q4_k
            case .q3_k_l: return .q5_k
            case .q4_k_m, .q5_k_m: return useMoreBits(i, n) ? .q6_k : m.base
            case .q4_k_s: return i < 4 ? .q5_k : m.base
            default: return m.base
            }
        }
        if name.contains("ffn_down"), let i = layer {
            switch m {
            case .q2_k: return .q3_k
            case .q3_k_m: return i < n / 16 ? .q5_k : .q4_k
            case .q3_k_l: return .q5_k
            case .q4_k_m, .q5_k_m: return useMoreBits(i, n) ? .q6_k : m.base
            case .q4_k_s: return i < n / 8 ? .q5_k : m.base
            default: return m.base
            }
        }
        if name.contains("attn_output.weight") {
            switch m {
            case .q2_k: return .q3_k
            case .q3_k_m: return .q4_k
            case .q3_k_l: return .q5_k
            default: return m.base
            }
        }
        return m.base
    }

    /// N in "blk.N.…".
    static func layerIndex(_ name: String) -> Int? {
        let parts = name.split(separator: ".")
        guard parts.count > 2, parts[0] == "blk" else { return nil }
        return Int(parts[1])
    }
}
