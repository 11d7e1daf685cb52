// `wren logits`: the logits after evaluating a text, for checking Wren
// against references and debugging conversions.

import ArgumentParser
import Foundation
import WrenEngine
import WrenFormat

struct ModelOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Model file (.wren; convert GGUF/HF with `wren convert`).")
    var model: String

    @Option(name: .shortAndLong, help: "Context length in tokens (default: the model's, at most 4096).")
    var ctx: Int?

    @Option(name: .shortAndLong, help: "Threads (default: all cores).")
    var threads: Int?

    @Option(name: .customLong("rope-freq-base"), help: "Override the RoPE frequency base.")
    var ropeFreqBase: Float?

    @Option(name: .customLong("rope-scale"), help: "Linear RoPE scaling factor (position interpolation), e.g. 2 to double the context.")
    var ropeScale: Float?

    @Flag(help: "Use the exact path: f32 activations against exactly dequantized weights (instead of 8-bit activation blocks for q4_0/q4_1/q8_0 weights) and an f32 KV cache.")
    var exact = false

    @Option(name: .customLong("kv-type"), help: "KV cache type: f32, f16 or q8_0 (default f16; f32 with --exact).")
    var kvType: String?

    @Option(name: .customLong("lora"), help: "PEFT LoRA adapter directory applied unmerged at run time (repeatable; the base stays in its dtype).")
    var lora: [String] = []

    @Option(name: .customLong("lora-scale"), help: "Multiplier of each adapter's alpha/r (one for all, or one per --lora; default 1).")
    var loraScale: [Float] = []

    func validate() throws {
        if !loraScale.isEmpty, loraScale.count != 1, loraScale.count != lora.count {
            throw ValidationError("give one --lora-scale for all adapters or one per --lora (\(lora.count))")
        }
        if !loraScale.isEmpty, lora.isEmpty { throw ValidationError("--lora-scale needs --lora") }
        if let ctx, ctx < 1 { throw ValidationError("-c must be at least 1") }
        if let threads, threads < 1 || threads > 256 { throw ValidationError("-t must be in 1...256") }
        if let ropeFreqBase, !(ropeFreqBase > 1 && ropeFreqBase.isFinite) { throw ValidationError("--rope-freq-base must be a finite number > 1") }
        if let ropeScale, !(ropeScale > 0 && ropeScale.isFinite) { throw ValidationError("--rope-scale must be a finite number > 0") }
        if let kvType, KVCacheType(rawValue: kvType) == nil { throw ValidationError("--kv-type must be f32, f16 or q8_0 (got \(kvType))") }
    }

    /// Attaches the --lora adapters to `m`.
    func attachAdapters(_ m: LlamaModel) throws {
        for (i, path) in lora.enumerated() {
            let scale = loraScale.isEmpty ? 1 : loraScale[loraScale.count == 1 ? 0 : i]
            try m.attachAdapter(path: path, scale: scale)
        }
    }

    var kvCacheType: KVCacheType { kvType.flatMap(KVCacheType.init(rawValue:)) ?? (exact ? .f32 : .f16) }

    func load() throws -> (LlamaModel, InferenceSession) {
        let m = try LlamaModel(path: model, ropeFreqBase: ropeFreqBase, ropeScale: ropeScale)
        try attachAdapters(m)
        return (m, try InferenceSession(model: m, contextLength: ctx, threads: threads, kvType: kvCacheType,
                                        activations: exact ? .f32 : .q8))
    }
}

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the logits after evaluating TEXT (special tokens parsed).")

    @OptionGroup var options: ModelOptions

    @Option(help: "How many of the largest logits to print.")
    var top = 10

    @Flag(help: "Also print the top logits at every position.")
    var allPositions = false

    @Flag(help: "Print JSON: {\"tokens\": [...], \"top\": [[id, logit], ...], \"positions\": [...]}.")
    var json = false

    @Argument(help: "The text to evaluate.")
    var text: String

    func validate() throws {
        guard top >= 1 else { throw ValidationError("--top must be at least 1") }
    }

    static func topK(_ l: ArraySlice<Float>, _ k: Int) -> [(Int, Float)] {
        let base = l.startIndex
        return l.indices.sorted { l[$0] > l[$1] || (l[$0] == l[$1] && $0 < $1) }.prefix(k).map { ($0 - base, l[$0]) }
    }

    func run() throws {
        do {
            let (model, session) = try options.load()
            let ids = model.tokenizer.encode(text, addSpecial: true, parseSpecial: true)
            guard !ids.isEmpty else { throw EngineError.emptyPrompt }
            guard ids.count <= session.contextLength else { throw EngineError.promptTooLong(tokens: ids.count, context: session.contextLength) }
            let V = model.config.vocabSize
            let logits = try session.evaluate(ids, allLogits: allPositions)
            let lastSlice = allPositions ? logits[((ids.count - 1) * V)..<(ids.count * V)] : logits[0..<V]
            let last = Self.topK(lastSlice, top)
            if json {
                func pairs(_ p: [(Int, Float)]) -> String { "[" + p.map { "[\($0.0), \($0.1)]" }.joined(separator: ", ") + "]" }
                var s = "{\"tokens\": [" + ids.map(String.init).joined(separator: ", ") + "], \"top\": " + pairs(last)
                if allPositions {
                    s += ", \"positions\": [" + (0..<ids.count).map { pairs(Self.topK(logits[($0 * V)..<(($0 + 1) * V)], top)) }.joined(separator: ", ") + "]"
                }
                print(s + "}")
            } else {
                if allPositions {
                    for p in 0..<ids.count {
                        print("position \(p) token \(ids[p]) \(model.tokenizer.pieces[Int(ids[p])].debugDescription):")
                        for (id, v) in Self.topK(logits[(p * V)..<((p + 1) * V)], top) { print("  \(id)\t\(v)\t\(model.tokenizer.pieces[id].debugDescription)") }
                    }
                } else {
                    for (id, v) in last { print("\(id)\t\(v)\t\(model.tokenizer.pieces[id].debugDescription)") }
                }
            }
        } catch { fail(error) }
    }
}
