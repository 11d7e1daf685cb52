// Gemma 3 against a float32 numpy reference (tools/refs/gemma3_numpy.py) on a
// tiny random model that reaches every difference from llama: √dim embedding
// scale, QK-norm, post-norms, GeGLU, sliding-window layers with their own RoPE
// base, grouped-query attention with head dimension ≠ dim/heads, the rotate-half
// q/k rows of llama.cpp's GGUF permuted on import (fixture:
// tools/make_gemma3_fixture.py). Tolerance: 1e-4 of the largest |logit| — the
// exact path only reorders f32 sums against the same f16-dequantized weights.

import Foundation
import TestSupport
@testable import WrenEngine
import WrenFormat
import WrenKernels
import XCTest

final class Gemma3Tests: XCTestCase {
    struct Reference: Decodable {
        struct Case: Decodable { var ids: [Int32]; var logits: [[Float]] }
        var cases: [Case]
    }

    func model() throws -> (LlamaModel, Reference) {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        let out = tempDirectory() + "/tiny-gemma3.wren"
        _ = try ModelConverter.convert(try ModelSource.open(fixtures.appendingPathComponent("tiny-gemma3.gguf").path), to: out,
                                       options: .init(overwrite: true))
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: fixtures.appendingPathComponent("tiny_gemma3_reference.json")))
        return (try LlamaModel(path: out), ref)
    }

    func testConfigFromGGUF() throws {
        let (m, _) = try model()
        let c = m.config
        XCTAssertEqual(c.architecture, "gemma3")
        XCTAssertEqual(c.embeddingScale, Float(64).squareRoot())
        XCTAssertTrue(c.qkNorm && c.postNorms)
        XCTAssertEqual(c.activation, .geluTanh)
        XCTAssertEqual(c.headDim, 32)
        XCTAssertEqual([0, 1, 2].map { c.isWindowed(layer: $0) }, [true, false, true])
        XCTAssertEqual(m.ropeLocal?.freqBase, 10000)
        XCTAssertEqual(m.rope.freqBase, 1_000_000)
    }

    /// Every position, whole prompt at once (the batched row-block attention) and
    /// token by token (the decode kernels), both past the window of 5.
    func testLogitsMatchReference() throws {
        let (m, ref) = try model()
        for c in ref.cases {
            let maxAbs = c.logits.joined().map { abs($0) }.max()!
            let tol = 1e-4 * maxAbs
            for kvType in [KVCacheType.f32] {
                let s = try InferenceSession(model: m, threads: 2, kvType: kvType, activations: .f32)
                let all = try s.evaluate(c.ids, allLogits: true)
                let V = m.config.vocabSize
                var worst: Float = 0
                for p in 0..<c.ids.count { for j in 0..<V { worst = max(worst, abs(all[p * V + j] - c.logits[p][j])) } }
                XCTAssertLessThan(worst, tol, "whole prompt: max |Δ| \(worst)")
                let one = try InferenceSession(model: m, threads: 1, kvType: kvType, activations: .f32)
                worst = 0
                for (p, id) in c.ids.enumerated() {
                    let row = try one.evaluate([id], decodeKernels: true)
                    for j in 0..<V { worst = max(worst, abs(row[j] - c.logits[p][j])) }
                }
                XCTAssertLessThan(worst, tol, "token by token: max |Δ| \(worst)")
            }
        }
    }

    /// The default path (f16 cache) stays close: greedy choices equal the reference's.
    func testDefaultPathAgreesOnGreedy() throws {
        let (m, ref) = try model()
        for c in ref.cases {
            let s = try InferenceSession(model: m, threads: 2)
            let all = try s.evaluate(c.ids, allLogits: true)
            let V = m.config.vocabSize
            for p in 0..<c.ids.count {
                let got = (0..<V).max { all[p * V + $0] < all[p * V + $1] }!
                let want = (0..<V).max { c.logits[p][$0] < c.logits[p][$1] }!
                XCTAssertEqual(got, want, "position \(p)")
            }
        }
    }
}
