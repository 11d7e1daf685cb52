// DPO: the sigmoid loss is exactly ln 2 at step 0 (the policy starts as the
// reference); the gradients of all three losses against central finite
// differences; only response tokens enter the log-likelihoods (checked against
// the engine's own logits); training raises the held-out reward accuracy.

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
import WrenKernels
@testable import WrenTuning
import XCTest

final class DPOTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func tinyModel() throws -> String {
        let p = dir + "/m.wren"
        try TinyModel(seed: 91, dim: 32, layers: 2, ff: 64).writeWren(to: p, dtype: .f32)
        return p
    }

    func pairs(_ n: Int, seed: UInt64, file: String) throws -> String { try letterPairs(n, seed: seed, file: file) }

    func options(_ model: String, _ data: String) -> FinetuneOptions {
        var o = FinetuneOptions(modelPath: model, dataPath: data, outputDir: dir + "/out")
        o.mode = .lora(LoRAConfig(rank: 4, alpha: 8, dropout: 0, targets: Projection.allCases))
        o.batchSize = 4
        o.blockSize = 64
        o.epochs = 1
        o.threads = 2
        return o
    }

    func testSigmoidLossIsLn2AtStepZero() throws {
        let model = try tinyModel()
        var o = options(model, try pairs(8, seed: 1, file: dir + "/d/a.jsonl"))
        o.evalDataPath = try pairs(4, seed: 2, file: dir + "/e/a.jsonl")
        let dt = try DPOTrainer(o, beta: 0.1, loss: .sigmoid)
        for x in dt.forward(dt.train[0..<4], ref: dt.trainReference[0..<4], gradScale: 0) {
            XCTAssertEqual(x.h, 0)
            XCTAssertEqual(x.loss, log(2.0))
        }
        let e = try XCTUnwrap(dt.evaluate())
        XCTAssertEqual(e.loss, log(2.0))
        XCTAssertEqual(e.margin, 0)
        // IPO at step 0: (0 − 1/(2β))²; hinge: 1.
        XCTAssertEqual(DPOLoss.ipo.value(0, beta: 0.1).loss, 25, accuracy: 1e-12)
        XCTAssertEqual(DPOLoss.hinge.value(0, beta: 0.1).loss, 1)
    }

    /// Central differences in Float, as in RewardTests (h = 3e-3; bound 2% of the largest gradient + 1e-4).
    func testGradientsMatchFiniteDifferences() throws {
        let model = try tinyModel()
        let data = try pairs(4, seed: 3, file: dir + "/d/a.jsonl")
        for kind in DPOLoss.allCases {
            let dt = try DPOTrainer(options(model, data), beta: 0.5, loss: kind)
            var rng = SeededRNG(seed: 4)
            for p in dt.trainModel.parameters { for i in 0..<p.count { p.value[i] = rng.normal() * 0.3 } }
            let batch = dt.train[0..<4], ref = dt.trainReference[0..<4]
            dt.trainModel.zeroGradients()
            _ = dt.forward(batch, ref: ref, gradScale: 0.25)
            func loss() -> Double { dt.forward(batch, ref: ref, gradScale: 0).reduce(0) { $0 + $1.loss } / 4 }
            XCTAssertNotEqual(loss(), kind.value(0, beta: 0.5).loss, "the random factors moved the policy")
            for p in dt.trainModel.parameters {
                let idx = stride(from: 0, to: p.count, by: max(1, p.count / 4)).prefix(4)
                var worst = 0.0, scale = 0.0
                for i in idx {
                    let v = p.value[i], h: Float = 3e-3
                    p.value[i] = v + h; let up = loss()
                    p.value[i] = v - h; let down = loss()
                    p.value[i] = v
                    let numeric = (up - down) / Double(2 * h)
                    worst = max(worst, abs(numeric - Double(p.grad[i])))
                    scale = max(scale, abs(numeric))
                }
                XCTAssertLessThanOrEqual(worst, 2e-2 * scale + 1e-4, "\(kind) \(p.name): largest difference \(worst), largest gradient \(scale)")
            }
        }
    }

    /// log π of a response is Σ log p over the response tokens only: the trainer's value
    /// equals that sum taken from the engine's exact logits, and differs from the sum over
    /// every token.
    func testOnlyResponseTokensCount() throws {
        let model = try tinyModel()
        let dt = try DPOTrainer(options(model, try pairs(4, seed: 5, file: dir + "/d/a.jsonl")))
        let m = try LlamaModel(path: model)
        let s = try InferenceSession(model: m, contextLength: 64, threads: 1, kvType: .f32, activations: .f32)
        for (k, pair) in dt.train.enumerated() {
            for (side, want) in [(pair.chosen, dt.trainReference[k].0), (pair.rejected, dt.trainReference[k].1)] {
                s.reset()
                let logits = try s.evaluate(side.ids, allLogits: true)
                let V = m.config.vocabSize
                var response = 0.0, all = 0.0
                for t in 0..<(side.ids.count - 1) {
                    let row = logits[(t * V)..<((t + 1) * V)].map(Double.init)
                    let mx = row.max()!
                    let lp = row[Int(side.ids[t + 1])] - mx - log(row.reduce(0) { $0 + exp($1 - mx) })
                    all += lp
                    if side.trained[t + 1] { response += lp }
                }
                XCTAssertEqual(want, response, accuracy: 1e-4 * max(1, abs(response)))
                XCTAssertGreaterThan(abs(all - response), 0.5)
            }
        }
    }

    func testTrainingRaisesHeldOutRewardAccuracy() throws {
        let model = try tinyModel()
        var o = options(model, try pairs(48, seed: 6, file: dir + "/train/a.jsonl"))
        o.evalDataPath = try pairs(24, seed: 7, file: dir + "/held/a.jsonl")
        o.epochs = 4
        o.learningRate = 5e-3
        let dt = try DPOTrainer(o, beta: 0.1)
        try dt.run()
        let first = try XCTUnwrap(dt.evalHistory.first?.eval), last = try XCTUnwrap(dt.evalHistory.last?.eval)
        XCTAssertEqual(first.accuracy, 0)            // h = 0 on every pair: no pair counts as right
        XCTAssertGreaterThanOrEqual(last.accuracy, 0.9)
        XCTAssertLessThan(last.loss, first.loss)
        XCTAssertGreaterThan(last.chosenReward, last.rejectedReward)
        let a = try PEFTAdapter.load(o.outputDir)
        XCTAssertNil(a.score)
        for f in ["loss.csv", "eval.csv", "loss.svg"] { XCTAssertTrue(FileManager.default.fileExists(atPath: o.outputDir + "/" + f), f) }
        // Bad settings name the setting.
        XCTAssertThrowsError(try DPOTrainer(o, beta: 0)) { XCTAssert("\($0)".contains("beta"), "\($0)") }
        var full = o
        full.mode = .full
        XCTAssertThrowsError(try DPOTrainer(full)) { XCTAssert("\($0)".contains("LoRA"), "\($0)") }
    }

    /// Stopped and resumed, DPO ends with the adapter of an uninterrupted run; β is part of what must match.
    func testResumeIsExact() throws {
        let model = try tinyModel()
        var o = options(model, try pairs(24, seed: 10, file: dir + "/train/a.jsonl"))
        o.evalDataPath = try pairs(8, seed: 11, file: dir + "/held/a.jsonl")
        o.outputDir = dir + "/whole"
        o.epochs = 2
        o.learningRate = 5e-3
        try DPOTrainer(o, beta: 0.2, loss: .ipo).run()
        var cut = o
        cut.outputDir = dir + "/cut"
        cut.maxSteps = 5
        try DPOTrainer(cut, beta: 0.2, loss: .ipo).run()
        var resumed = cut
        resumed.maxSteps = nil
        resumed.resume = true
        XCTAssertThrowsError(try DPOTrainer(resumed, beta: 0.3, loss: .ipo).run()) { XCTAssertTrue("\($0)".contains("beta: checkpoint 0.2, now 0.3"), "\($0)") }
        try DPOTrainer(resumed, beta: 0.2, loss: .ipo).run()
        try assertResumedLikeWhole(whole: o.outputDir, resumed: resumed.outputDir)
    }
}
