// The engine on the real SmolLM2-135M-Instruct against a float32 numpy
// reference (tools/make_engine_fixtures.py): logits at every position and
// 24-token greedy continuations, for the stored q4_1 weights and for the
// `--type q8_0` and `--type f16` conversions. Release build only.
//
// Tolerance: |wren − ref| ≤ 2e-3 + 2e-4·|ref| on the reference's top-40 logits at
// every position. Both sides compute in f32 from identical dequantized weights;
// they differ only in summation order (SIMD/BLAS vs numpy/BLAS) and in exp/cos
// implementations. Over 30 layers those ~1e-7 relative roundings grow to ~1e-5–1e-4
// absolute on logits of magnitude ~20; 2e-3 leaves room for that while being
// ~100× tighter than the smallest real modelling change (llama.cpp's 8-bit
// activations move logits by up to ~0.7).

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
                                           options: .init(type: variant == "q4_1" ? nil : DType(name: variant), overwrite: true))
            Self.converted[variant] = out
        }
        return try LlamaModel(path: Self.converted[variant]!)
    }

    func reference() throws -> EngineReference {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/smollm2_f32_reference.json")
        return try JSONDecoder().decode(EngineReference.self, from: Data(contentsOf: url))
    }

    @discardableResult
    func check(_ variant: String, kv: KVCacheType = .f32, activations: Activations = .f32, maxBatch: Int = 64,
               tolerance: Double = 2e-3, greedy: Bool = true) throws -> (worst: Double, mean: Double) {
        let m = try model(variant)
        let ref = try reference()
        let V = m.config.vocabSize
        var worst = 0.0, sum = 0.0, count = 0
        for (pi, c) in ref.variants[variant]!.enumerated() {
            XCTAssertEqual(m.tokenizer.encode(ref.prompts[pi]), c.tokens, "token ids")
            let s = try InferenceSession(model: m, contextLength: 256, maxBatch: maxBatch, kvType: kv, activations: activations)
            let logits = try s.evaluate(c.tokens, allLogits: true)
            for (p, top) in c.top.enumerated() {
                for pair in top {
                    let id = Int(pair[0]), want = pair[1]
                    let got = Double(logits[p * V + id])
                    let err = abs(got - want)
                    worst = max(worst, err); sum += err; count += 1
                    if err > tolerance + 2e-4 * abs(want) {
                        XCTFail("\(variant) prompt \(pi) position \(p) id \(id): \(got) vs \(want)")
                        return (worst, sum / Double(count))
                    }
                }
            }
            guard greedy else { continue }
            let g = try Generator(model: m, session: s)
            let r = try g.generate(tokens: c.tokens, options: .init(maxTokens: 24, sampling: .greedy))
            XCTAssertEqual(Array(r.tokens.prefix(c.greedy.count)), Array(c.greedy.prefix(r.tokens.count)), "\(variant) prompt \(pi): greedy continuation")
            XCTAssertTrue(r.tokens.count == 24 || r.stopReason == .eos)
        }
        print("\(variant) (\(kv.rawValue) KV cache, \(activations) activations): |logit − f32 reference| over top-40 at every position: worst \(worst), mean \(sum / Double(max(count, 1)))")
        return (worst, sum / Double(max(count, 1)))
    }

    func testQ4_1MatchesFloat32Reference() throws { try check("q4_1") }
    func testQ8_0ConversionMatchesReference() throws { try check("q8_0") }
    func testF16ConversionMatchesReference() throws { try check("f16") }
    /// The default f16 KV cache: tolerance 5e-2 (k and v rounded to f16, ~5e-4 relative, feeding
    /// softmax-weighted sums over 30 layers); greedy continuations still identical.
    func testQ4_1WithF16KVCache() throws { try check("q4_1", kv: .f16, tolerance: 5e-2) }
    /// The q8_0 KV cache (8-bit k/v per 32 values of a head, ~0.4% relative): tolerance 0.5,
    /// still half llama.cpp's worst; greedy continuations not required to match.
    func testQ4_1WithQ8_0KVCache() throws { try check("q4_1", kv: .q8_0, tolerance: 0.5, greedy: false) }

    /// The default fast path (8-bit activation blocks as in llama.cpp, f16 KV cache),
    /// every position through the decode-sized kernels (batches of 8). The bar is
    /// llama.cpp's own distance from the same reference on the same q4_1 bytes,
    /// measured with tools/compare-llamacpp.py: worst 1.013, mean over the four
    /// prompts 0.187 (per prompt 0.16–0.21). Both engines round activations the same
    /// way, so which logits land where is chaotic: Wren's mean has measured
    /// 0.171–0.194 across changes that only reorder f32 sums, its worst 0.97–1.24.
    /// Bounds: mean within 10% of llama.cpp's, worst within 25%.
    func testFastPathAsCloseAsLlamaCpp() throws {
        for variant in ["q4_1", "q8_0"] {
            let (worst, mean) = try check(variant, kv: .f16, activations: .q8, maxBatch: 8, tolerance: 1.27, greedy: false)
            XCTAssertLessThan(mean, 0.206, "\(variant): mean error more than 10% above llama.cpp's")
            XCTAssertGreaterThan(worst, 0)
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
