// Reward models: the paired dataset formats and their errors; the gradients of
// the Bradley–Terry loss (head and LoRA) against central finite differences;
// training that separates a held-out preference; the saved SEQ_CLS adapter
// read back, and the engine's scorer agreeing with the trainer's rewards.

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
import WrenKernels
@testable import WrenTuning
import XCTest

final class RewardTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func tinyModel(seed: UInt64 = 90) throws -> String {
        let p = dir + "/m.wren"
        try TinyModel(seed: seed, dim: 32, layers: 2, ff: 64).writeWren(to: p, dtype: .f32)
        return p
    }

    func pairs(_ n: Int, seed: UInt64, file: String) throws -> String { try letterPairs(n, seed: seed, file: file) }

    func options(_ model: String, _ data: String, out: String = "out") -> FinetuneOptions {
        var o = FinetuneOptions(modelPath: model, dataPath: data, outputDir: dir + "/" + out)
        o.mode = .lora(LoRAConfig(rank: 4, alpha: 8, dropout: 0, targets: Projection.allCases))
        o.batchSize = 4
        o.blockSize = 64
        o.epochs = 1
        o.threads = 2
        return o
    }

    func testPairedDataAndItsErrors() throws {
        let model = try tinyModel()
        // Both formats parse; each side is tokenized as its one-sided type (prompt masked).
        let conv = dir + "/conv.json"
        let obj: [String: Any] = ["type": "paired_conversation", "instances": [[
            "chosen": ["system": "be kind", "messages": [["role": "user", "content": "hi"], ["role": "assistant", "content": "hello"]]],
            "rejected": ["messages": [["role": "user", "content": "hi"], ["role": "assistant", "content": "go away"]]],
        ]]]
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: conv))
        let m = try LlamaModel(path: model)
        let ds = try RawDataset.load(conv)
        XCTAssertEqual(ds.type, .pairedConversation)
        let p = try DatasetTokenizer.tokenizePairs(ds, model: m, chat: try ChatFormatter(model: m, name: nil))
        XCTAssertTrue(p[0].chosen.trained.contains(true) && p[0].chosen.trained.first == false)
        XCTAssertNotEqual(p[0].chosen.ids, p[0].rejected.ids)
        let t2t = try pairs(3, seed: 1, file: dir + "/t2t/a.jsonl")
        XCTAssertEqual(try RawDataset.load(t2t).type, .pairedTextToText)

        func expectError(_ text: String, name: String, _ parts: [String], file: StaticString = #filePath, line: UInt = #line) throws {
            let f = dir + "/bad-\(name).jsonl"
            try text.write(toFile: f, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try RewardTrainer(options(model, f)), file: file, line: line) { e in
                for part in parts { XCTAssert("\(e)".contains(part), "\(e) lacks \(part)", file: file, line: line) }
            }
        }
        try expectError(#"{"prompt": "p", "chosen": "x", "rejected": "y"}"# + "\n" + #"{"prompt": "p", "chosen": "x"}"#, name: "side",
                        ["bad-side.jsonl", "instance 1", "\"rejected\"", "missing"])
        try expectError(#"{"prompt": "p", "chosen": "  ", "rejected": "y"}"#, name: "empty", ["instance 0", "\"chosen\"", "empty response"])
        try expectError(#"{"chosen": {"messages": [{"role": "user", "content": "q"}]}, "rejected": {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}}"#,
                        name: "conv", ["instance 0", "\"chosen\""])
        try expectError(#"{"chosen": "text", "rejected": {"messages": []}}"#, name: "shape", ["instance 0", "\"chosen\"", "must be an object"])
        try expectError(#"{"text": "plain"}"#, name: "plain", ["text_only", "paired_conversation or paired_text_to_text"])
        // finetune refuses pairs.
        XCTAssertThrowsError(try Finetuner(options(model, t2t))) { XCTAssert("\($0)".contains("preference pair"), "\($0)") }
    }

    /// Central differences of the mean pair loss in Float (h = 3e-3 on values of size ~0.1–1:
    /// truncation ~h²·|f'''| ≈ 1e-5 relative, rounding ~1e-7/h ≈ 3e-5); bound 2e-2 of the largest
    /// gradient checked plus 1e-4. A wrong sign, factor or transposition is off by the gradient itself.
    func testGradientsMatchFiniteDifferences() throws {
        let model = try tinyModel()
        let data = try pairs(4, seed: 2, file: dir + "/d/a.jsonl")
        let rt = try RewardTrainer(options(model, data))
        // B = 0 at initialisation leaves A without gradient: give every factor values.
        var rng = SeededRNG(seed: 3)
        for p in rt.trainModel.parameters { for i in 0..<p.count { p.value[i] = rng.normal() * 0.3 } }
        let batch = Array(rt.train.prefix(4))
        let params = rt.trainModel.parameters + [rt.head]
        for p in params { p.zeroGrad() }
        let n = Float(batch.count)
        _ = rt.forward(batch, gradScale: 1 / n)
        func loss() -> Double { rt.forward(batch, gradScale: 0).lossSum / Double(n) }
        var checked = 0
        for p in params {
            let idx = stride(from: 0, to: p.count, by: max(1, p.count / 5)).prefix(5)
            var worst = 0.0, scale = 0.0
            for i in idx {
                let v = p.value[i], h: Float = 3e-3
                p.value[i] = v + h; let up = loss()
                p.value[i] = v - h; let down = loss()
                p.value[i] = v
                let numeric = (up - down) / Double(2 * h)
                worst = max(worst, abs(numeric - Double(p.grad[i])))
                scale = max(scale, abs(numeric))
                checked += 1
            }
            XCTAssertLessThanOrEqual(worst, 2e-2 * scale + 1e-4, "\(p.name): largest difference \(worst), largest gradient \(scale)")
        }
        XCTAssertGreaterThan(checked, 50)
        XCTAssertGreaterThan(abs(Double(rt.head.grad[0])) + abs(Double(rt.head.grad[1])), 0)
    }

    func testTrainingSeparatesHeldOutPairsAndScorerAgrees() throws {
        let model = try tinyModel()
        let data = try pairs(48, seed: 4, file: dir + "/train/a.jsonl")
        let held = try pairs(24, seed: 5, file: dir + "/held/a.jsonl")
        var o = options(model, data)
        o.evalDataPath = held
        o.epochs = 6
        o.learningRate = 5e-3
        let rt = try RewardTrainer(o)
        try rt.run()
        let first = try XCTUnwrap(rt.evalHistory.first?.eval), last = try XCTUnwrap(rt.evalHistory.last?.eval)
        XCTAssertLessThan(first.accuracy, 0.8, "already separated before training")
        XCTAssertGreaterThanOrEqual(last.accuracy, 0.95)
        XCTAssertLessThan(last.loss, first.loss)
        for f in ["adapter_model.safetensors", "adapter_config.json", "loss.csv", "eval.csv", "loss.svg"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: o.outputDir + "/" + f), f)
        }
        // The adapter: SEQ_CLS with the head as modules_to_save "score".
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: o.outputDir + "/adapter_config.json"))) as! [String: Any]
        XCTAssertEqual(cfg["task_type"] as? String, "SEQ_CLS")
        XCTAssertEqual(cfg["modules_to_save"] as? [String], ["score"])
        let a = try PEFTAdapter.load(o.outputDir)
        XCTAssertEqual(a.score, rt.head.values)
        // The engine's scorer (exact path) gives the trainer's rewards: both are f32
        // forwards of the same math with different summation orders (~1e-6 relative).
        let scorer = try RewardScorer(modelPath: model, rewardPath: o.outputDir, threads: 2)
        let r = rt.forward(Array(rt.eval.prefix(4)), gradScale: 0)
        for (k, pair) in rt.eval.prefix(4).enumerated() {
            XCTAssertEqual(try scorer.reward(ids: pair.chosen.ids), r.chosen[k], accuracy: 1e-4 * max(1, abs(r.chosen[k])))
            XCTAssertEqual(try scorer.reward(ids: pair.rejected.ids), r.rejected[k], accuracy: 1e-4 * max(1, abs(r.rejected[k])))
        }
        // A causal-LM adapter is refused as a reward model, naming the field.
        var plain = a
        plain.score = nil
        try plain.save(to: dir + "/plain")
        XCTAssertThrowsError(try RewardScorer(modelPath: model, rewardPath: dir + "/plain")) { XCTAssert("\($0)".contains("no reward head"), "\($0)") }
    }

    /// A run stopped at step 3 and resumed ends with the very adapter and eval log of an
    /// uninterrupted run; a changed setting or a missing --resume is refused.
    func testResumeIsExact() throws {
        let model = try tinyModel()
        let data = try pairs(24, seed: 8, file: dir + "/train/a.jsonl")
        var o = options(model, data, out: "whole")
        o.evalDataPath = try pairs(8, seed: 9, file: dir + "/held/a.jsonl")
        o.epochs = 2
        o.learningRate = 5e-3
        o.evalEvery = 2
        try RewardTrainer(o).run()
        var cut = o
        cut.outputDir = dir + "/cut"
        cut.maxSteps = 3
        try RewardTrainer(cut).run()
        var resumed = cut
        resumed.maxSteps = nil
        XCTAssertThrowsError(try RewardTrainer(resumed).run()) { XCTAssertTrue("\($0)".contains("checkpoint.safetensors"), "\($0)") }
        var changed = resumed
        changed.resume = true
        changed.learningRate = 1e-3
        XCTAssertThrowsError(try RewardTrainer(changed).run()) { XCTAssertTrue("\($0)".contains("learning rate"), "\($0)") }
        resumed.resume = true
        let rt = try RewardTrainer(resumed)
        try rt.run()
        XCTAssertEqual(rt.step, 12)
        try assertResumedLikeWhole(whole: o.outputDir, resumed: resumed.outputDir)
    }
}
