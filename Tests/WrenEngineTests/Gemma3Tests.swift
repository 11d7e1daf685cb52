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

    /// A Hugging Face Gemma 3 text checkpoint of the same weights (norms stored as w,
    /// q/k rows and QK-norms in rotate-half order, Gemma's norm names, config.json
    /// `gemma3_text` with `layer_types`) imports to the same model: every logit
    /// matches the reference.
    func testHuggingFaceImportMatchesReference() throws {
        let (m, ref) = try model()
        let c = m.config, dir = tempDirectory() + "/hf"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var entries: [SafetensorsWriter.Entry] = []
        for info in m.file.tensors {
            let t = try m.file.tensor(info.name)
            var v = t.floats()
            let parts = info.name.split(separator: ".")
            var hf: String
            if parts.count == 4, parts[0] == "blk" {
                let names = ["attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
                             "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
                             "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"]
                if let n = names[String(parts[2])] { hf = "model.layers.\(parts[1]).\(n).weight" } else { hf = TensorNames.hfName(wren: info.name)! }
                if parts[2] == "attn_q_norm" || parts[2] == "attn_k_norm" {
                    v = TensorNames.wrenToHFRows(rows: v.count, heads: 1).map { v[$0] }
                }
                if let heads = TensorNames.permutedHeads(info.name, c) {
                    let n = info.shape[1], order = TensorNames.wrenToHFRows(rows: info.shape[0], heads: heads)
                    v = order.flatMap { r in v[(r * n)..<((r + 1) * n)] }
                }
            } else {
                hf = TensorNames.hfName(wren: info.name)!
            }
            if info.name.hasSuffix("norm.weight") { v = v.map { $0 - 1 } }
            entries.append(.init(name: hf, dtype: "F32", shape: info.shape, bytes: Quant.quantize(.f32, v)))
        }
        try Data(SafetensorsWriter.encode(entries)).write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        let cfg: [String: Any] = [
            "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": c.vocabSize,
            "max_position_embeddings": c.contextLength, "hidden_size": c.embeddingLength, "intermediate_size": c.feedForwardLength,
            "num_hidden_layers": c.blockCount, "num_attention_heads": c.headCount, "num_key_value_heads": c.headCountKV,
            "head_dim": c.headDim, "rms_norm_eps": Double(c.rmsNormEps), "rope_theta": 1_000_000.0, "rope_local_base_freq": 10000.0,
            "sliding_window": 5, "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
            "query_pre_attn_scalar": c.headDim, "hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": NSNull(),
            "attn_logit_softcapping": NSNull(), "rope_scaling": NSNull(), "tie_word_embeddings": true,
        ]
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/config.json"))
        try TinyModel().tokenizerJSON().write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        let out = tempDirectory() + "/hf.wren"
        _ = try ModelConverter.convert(try ModelSource.open(dir), to: out, options: .init(overwrite: true))
        let h = try LlamaModel(path: out)
        XCTAssertEqual(h.config.slidingWindowPattern, 2)
        XCTAssertEqual(h.config.architecture, "gemma3")
        for c in ref.cases {
            let maxAbs = c.logits.joined().map { abs($0) }.max()!
            let s = try InferenceSession(model: h, threads: 2, kvType: .f32, activations: .f32)
            let all = try s.evaluate(c.ids, allLogits: true)
            let V = h.config.vocabSize
            var worst: Float = 0
            for p in 0..<c.ids.count { for j in 0..<V { worst = max(worst, abs(all[p * V + j] - c.logits[p][j])) } }
            XCTAssertLessThan(worst, 1e-4 * maxAbs, "max |Δ| \(worst)")
        }
    }
}
