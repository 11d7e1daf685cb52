// Tuning on the real SmolLM2-135M-Instruct (release build only): the
// trainer's forward equals the engine's exact path at step 0, and a few QLoRA
// steps on the q4_1 base teach the sentiment-code task (examples/sentiment):
// the validation loss falls from ~7.8 to below 2.

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
@testable import WrenTuning
import XCTest

final class RealModelTuningTests: XCTestCase {
    func modelPath() throws -> String {
        let gguf = try requireRealModel()
        let out = tempDirectory("RealModelTuningTests") + "/smol.wren"
        if !FileManager.default.fileExists(atPath: out) {
            _ = try ModelConverter.convert(try ModelSource.open(gguf), to: out, options: .init(overwrite: true))
        }
        return out
    }

    func testStepZeroMatchesEngine() throws {
        let m = try LlamaModel(path: try modelPath())
        let ids = m.tokenizer.encode("The quick brown fox jumps over the lazy dog because it wanted to see the river.", addSpecial: true)
        let tm = try TrainModel(model: m, mode: .lora(LoRAConfig(rank: 8, alpha: 16, targets: Projection.allCases)), maxTokens: ids.count,
                                maxLength: ids.count, threads: 2)
        let r = tm.step(tokens: ids, labels: Array(ids.dropFirst()) + [ignoreLabel], batch: 1, length: ids.count, gradScale: 0, backward: false)
        let s = try InferenceSession(model: m, contextLength: 64, threads: 2, kvType: .f32, activations: .f32)
        let logits = try s.evaluate(ids, allLogits: true)
        let V = m.config.vocabSize
        var ref = 0.0
        for t in 0..<(ids.count - 1) {
            let row = logits[(t * V)..<((t + 1) * V)].map(Double.init)
            let mx = row.max()!
            ref += mx + log(row.map { exp($0 - mx) }.reduce(0, +)) - row[Int(ids[t + 1])]
        }
        XCTAssertEqual(r.lossSum / Double(r.count), ref / Double(ids.count - 1), accuracy: 1e-3)
    }

    func testQLoRALearnsSentimentCodes() throws {
        var o = FinetuneOptions(modelPath: try modelPath(), dataPath: repoRoot() + "/examples/sentiment/train.json",
                                outputDir: tempDirectory("RealModelTuningTests-qlora"))
        o.mode = .lora(LoRAConfig(rank: 8, alpha: 16, targets: Projection.allCases))
        o.learningRate = 1e-3; o.batchSize = 8; o.maxSteps = 10; o.warmup = 2; o.validationSplit = 0.05; o.threads = 2
        let ft = try Finetuner(o)
        XCTAssertTrue(ft.model.layers[0].q.dtype == .q4_1, "the base stays quantized")
        try ft.run()
        let before = try XCTUnwrap(ft.evalHistory.first?.loss), after = try XCTUnwrap(ft.evalHistory.last?.loss)
        XCTAssertGreaterThan(before, 5)
        XCTAssertLessThan(after, 2, "validation loss \(before) → \(after)")
    }
}
