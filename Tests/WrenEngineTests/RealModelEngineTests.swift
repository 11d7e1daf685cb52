// The engine on the real SmolLM2-135M-Instruct against a float32 numpy
// reference (tools/make_engine_fixtures.py): logits at every position and
// 24-token greedy continuations, for the stored q4_1 weights and for the
// `--type q8_0` and `--type f16` conversions. Release build only.
//
// Tolerances: the named bounds of TestSupport's `Tolerance` (exactF32, f16KV,
// q8_0KV, fastPath), each with its reason; failures report the worst position
// and both values.

import Foundation
import TestSupport
@testable import WrenEngine
import WrenFormat
import WrenKernels
import XCTest

struct EngineReference: Decodable {
    struct Case: Decodable {
        var tokens: [Int32]
        var top: [[[Double]]]
        var greedy: [Int32]
    }
    var prompts: [String]
    var variants: [String: [Case]]
}

final class RealModelEngineTests: XCTestCase {
    nonisolated(unsafe) static var converted: [String: String] = [:]   // XCTest runs these serially
    static let dir = tempDirectory("RealModelEngineTests")

    func model(_ variant: String) throws -> LlamaModel {
        let gguf = try requireRealModel()
        if Self.converted[variant] == nil {
            let out = "\(Self.dir)/\(variant).wren"
            _ = try ModelConverter.convert(try ModelSource.open(gguf), to: out,
                                           options: .init(type: variant == "q4_1" ? nil : QuantScheme(name: variant), overwrite: true))
            Self.converted[variant] = out
        }
        return try LlamaModel(path: Self.converted[variant]!)
    }

    func reference() throws -> EngineReference {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/smollm2_f32_reference.json")
        return try JSONDecoder().decode(EngineReference.self, from: Data(contentsOf: url))
    }

    /// Logits at every position of every prompt, for one engine configuration.
    func logits(_ variant: String, kv: KVCacheType = .f32, activations: Activations = .f32, maxBatch: Int = 64) throws -> [[Float]] {
        let m = try model(variant)
        let ref = try reference()
        return try ref.variants[variant]!.enumerated().map { pi, c in
            XCTAssertEqual(m.tokenizer.encode(ref.prompts[pi]), c.tokens, "token ids")
            let s = try InferenceSession(model: m, contextLength: 256, maxBatch: maxBatch, kvType: kv, activations: activations)
            return try s.evaluate(c.tokens, allLogits: true)
        }
    }

    /// Compares `got` (from `logits`) with `want` — the numpy reference, or another Wren run
    /// on this machine — over the reference's top-40 ids at every position.
    func compare(_ variant: String, _ got: [[Float]], against want: [[Float]]? = nil, _ tolerance: Tolerance) throws -> ErrorReport {
        let ref = try reference()
        let V = try model(variant).config.vocabSize
        var report = ErrorReport(tolerance)
        for (pi, c) in ref.variants[variant]!.enumerated() {
            for (p, top) in c.top.enumerated() {
                for pair in top {
                    let id = Int(pair[0])
                    report.add(got: Double(got[pi][p * V + id]), want: want.map { Double($0[pi][p * V + id]) } ?? pair[1],
                               place: "prompt \(pi) position \(p) id \(id)")
                }
            }
        }
        print("\(variant): \(report)")
        report.check()
        return report
    }

    /// Greedy continuations equal the reference's 24 argmax tokens — all of them: a run that
    /// stops early at EOS must meet an EOS in the reference at that very position.
    func checkGreedy(_ variant: String, kv: KVCacheType = .f32) throws {
        let m = try model(variant)
        let ref = try reference()
        for (pi, c) in ref.variants[variant]!.enumerated() {
            let g = try Generator(model: m, session: try InferenceSession(model: m, contextLength: 256, kvType: kv, activations: .f32))
            let r = try g.generate(tokens: c.tokens, options: .init(maxTokens: c.greedy.count, sampling: .greedy))
            if r.stopReason == .eos {
                XCTAssertEqual(r.tokens, Array(c.greedy.prefix(r.tokens.count)), "\(variant) prompt \(pi): greedy continuation up to EOS")
                XCTAssertEqual(r.tokens.last, m.tokenizer.eosID, "\(variant) prompt \(pi)")
            } else {
                XCTAssertEqual(r.tokens, c.greedy, "\(variant) prompt \(pi): greedy continuation")
            }
        }
    }

    func check(_ variant: String, kv: KVCacheType = .f32, tolerance: Tolerance = .exactF32) throws {
        _ = try compare(variant, try logits(variant, kv: kv), tolerance)
        try checkGreedy(variant, kv: kv)
    }

    func testQ4_1MatchesFloat32Reference() throws { try check("q4_1") }
    func testQ8_0ConversionMatchesReference() throws { try check("q8_0") }
    func testF16ConversionMatchesReference() throws { try check("f16") }
    /// The default f16 KV cache; greedy continuations still identical.
    func testQ4_1WithF16KVCache() throws { try check("q4_1", kv: .f16, tolerance: .f16KV) }
    /// The q8_0 KV cache against Wren's own f32-KV logits on this machine (not the numpy
    /// reference: prompts long enough for the BLAS path carry CPU-dependent sgemm rounding
    /// into the 8-bit rounding, which is what failed on an Intel Xeon against a fixed bound).
    func testQ4_1WithQ8_0KVCache() throws {
        let exact = try logits("q4_1", kv: .f32)
        let q8 = try logits("q4_1", kv: .q8_0)
        let r = try compare("q4_1", q8, against: exact, .q8_0KV)
        XCTAssertGreaterThan(r.worst, 0, "the q8_0 cache must differ from the f32 one (is it in use?)")
    }

    /// The default fast path (8-bit activation blocks as in llama.cpp, f16 KV cache), every
    /// position through the decode-sized kernels (batches of 8), against the f32 reference
    /// with the bounds of `Tolerance.fastPath` (llama.cpp's own distance measured with
    /// tools/compare-llamacpp.py on the same q4_1 bytes: worst 1.013, mean 0.187).
    func testFastPathAsCloseAsLlamaCpp() throws {
        for variant in ["q4_1", "q8_0"] {
            let r = try compare(variant, try logits(variant, kv: .f16, activations: .q8, maxBatch: 8), .fastPath)
            XCTAssertGreaterThan(r.worst, 0)
        }
    }

    /// SmolLM2 requantized into k-quant mixtures (from the q4_1 GGUF's weights; its
    /// 576-wide rows take the q5_0/q5_1/q8_0 fallbacks, ffn_down the k-quants): the
    /// exact path's logits against the numpy reference on the same bytes (made from
    /// llama-quantize's requantization), and its 32-token greedy continuations equal
    /// the reference's.
    func testKQuantMixturesMatchReference() throws {
        for variant in ["q4_k_m", "q5_k_m", "q6_k"] {
            let m = try model(variant)
            XCTAssertTrue(m.layers.contains { [.q4_k, .q5_k, .q6_k].contains($0.down.dtype) }, "\(variant): no k-quant weights")
            try check(variant)
        }
    }

    /// Speculative decoding on the real model: target = the f16 conversion; drafts from
    /// the q4_1 model, from prompt lookup and from the first 12 layers; greedy output
    /// token for token the plain output, for several prompts and draft lengths.
    func testSpeculativeGreedyIsExact() throws {
        let target = try model("f16"), draft = try model("q4_1")
        let ref = try reference()
        var opts = GenerationOptions(maxTokens: 32, sampling: .greedy)
        opts.parseSpecial = true
        let prompts = Array(ref.prompts.suffix(2)) + ["<|im_start|>user\nRepeat exactly: the quick brown fox jumps over the lazy dog, the quick brown fox.<|im_end|>\n<|im_start|>assistant\n"]
        let plain = try Generator(model: target, session: try InferenceSession(model: target, contextLength: 256))
        for prompt in prompts {
            let want = try plain.generate(prompt: prompt, options: opts).tokens
            for n in [3, 8] {
                let modes: [(String, SpeculationMode)] = [
                    ("q4_1 draft", .draftModel(try InferenceSession(model: draft, contextLength: 256))),
                    ("lookup", .lookup(ngram: 3)),
                    ("self", .selfDraft(layers: 12)),
                ]
                for (label, mode) in modes where n == 3 || label != "self" {
                    let g = try Generator(model: target, session: try InferenceSession(model: target, contextLength: 256))
                    try g.enableSpeculation(SpeculationOptions(mode: mode, draftTokens: n, pMin: 0.2))
                    let r = try g.generate(prompt: prompt, options: opts)
                    XCTAssertEqual(r.tokens, want, "\(label), draft length \(n): \(prompt.prefix(40))")
                    if label == "q4_1 draft" { XCTAssertGreaterThan(r.stats.speculation?.accepted ?? 0, 0) }
                }
            }
        }
    }
}
