// What a training run must refuse rather than lose or corrupt: nonsense numbers
// (NaN alpha, weight decay, clipping) and runs too big for the machine, before any
// work; an output directory in use by another run or already holding a result;
// and a resume from a checkpoint whose bytes, data or base model changed — naming
// what changed.

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
@testable import WrenTuning
import XCTest

final class TrainingSafetyTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func setup(seed: UInt64 = 3) throws -> (model: String, data: String) {
        let model = dir + "/tiny-\(seed).wren"
        try TinyModel(seed: seed).writeWren(to: model, dtype: .q8_0)
        let d = dir + "/data"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let inst = (0..<12).map { i in ["input": "ab cd \(i % 3 == 0 ? "ef" : "gh") =", "output": " ij"] }
        try JSONSerialization.data(withJSONObject: ["type": "text2text", "instances": inst]).write(to: URL(fileURLWithPath: d + "/train.json"))
        return (model, d)
    }

    func options(_ s: (model: String, data: String), _ out: String) -> FinetuneOptions {
        var o = FinetuneOptions(modelPath: s.model, dataPath: s.data, outputDir: out)
        o.mode = .lora(LoRAConfig(rank: 2, alpha: 4, targets: [.q, .v]))
        o.epochs = 1; o.batchSize = 4; o.blockSize = 16; o.saveEvery = 1; o.threads = 1
        return o
    }

    func expectError(_ body: () throws -> Void, _ parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("no error", file: file, line: line)
        } catch {
            for p in parts { XCTAssertTrue("\(error)".contains(p), "\"\(error)\" lacks \"\(p)\"", file: file, line: line) }
        }
    }

    func testNonsenseSettingsAreRefusedBeforeWork() throws {
        let s = try setup()
        let out = dir + "/out"
        var o = options(s, out)
        o.mode = .lora(LoRAConfig(rank: 2, alpha: .nan))
        expectError({ _ = try Finetuner(o) }, ["loraAlpha", "nan"])
        o = options(s, out); o.weightDecay = .nan
        expectError({ _ = try Finetuner(o) }, ["weightDecay"])
        o = options(s, out); o.clip = .infinity
        expectError({ _ = try Finetuner(o) }, ["clip must be"])
        o = options(s, out); o.learningRate = .nan
        expectError({ _ = try Finetuner(o) }, ["learningRate"])
        // A rank whose parameters and moments could never fit: refused with the figure, nothing allocated.
        o = options(s, out); o.mode = .lora(LoRAConfig(rank: 1_000_000_000, alpha: 4))
        expectError({ _ = try Finetuner(o) }, ["this run needs about", "GB", "the machine has"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing written")
    }

    func testOutputDirectoryIsLockedAndResultsAreNotReplaced() throws {
        let s = try setup()
        let out = dir + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let held = try DirectoryLock(out)
        expectError({ try Finetuner(options(s, out)).run() }, ["in use by another wren process", "pid \(getpid())"])
        held.release()
        try Finetuner(options(s, out)).run()
        let adapter = try Data(contentsOf: URL(fileURLWithPath: out + "/adapter_model.safetensors"))
        // A finished run is not silently replaced: the checkpoint and adapter stay as they were.
        try FileManager.default.removeItem(atPath: out + "/checkpoint.safetensors")
        var again = options(s, out)
        again.seed = 7
        expectError({ try Finetuner(again).run() }, ["already holds a trained result", "force"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/adapter_model.safetensors")), adapter)
        again.force = true
        try Finetuner(again).run()
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/adapter_model.safetensors")), adapter, "--force replaces it")
    }

    func testResumeChecksBytesDataAndBaseModel() throws {
        let s = try setup()
        let out = dir + "/out"
        var o = options(s, out)
        o.epochs = 2
        o.maxSteps = 1
        try Finetuner(o).run()
        let ckpt = out + "/checkpoint.safetensors"
        let good = try Data(contentsOf: URL(fileURLWithPath: ckpt))
        var r = options(s, out)
        r.epochs = 2
        r.resume = true

        // One flipped bit in the last tensor's data.
        var flipped = good
        flipped[flipped.count - 3] ^= 0x10
        try flipped.write(to: URL(fileURLWithPath: ckpt))
        expectError({ try Finetuner(r).run() }, [ckpt, "checksum mismatch", "tensor"])

        // Different data: the same number of instances and tokens, other words.
        try good.write(to: URL(fileURLWithPath: ckpt))
        let trainJSON = s.data + "/train.json"
        let original = try Data(contentsOf: URL(fileURLWithPath: trainJSON))
        try Data(String(decoding: original, as: UTF8.self).replacingOccurrences(of: "ij", with: "kl").utf8).write(to: URL(fileURLWithPath: trainJSON))
        expectError({ try Finetuner(r).run() }, ["cannot resume", "training/eval data: checkpoint"])
        try original.write(to: URL(fileURLWithPath: trainJSON))

        // A different base model of the same shape.
        let other = try setup(seed: 4)
        var rb = options((other.model, s.data), out)
        rb.epochs = 2
        rb.resume = true
        expectError({ try Finetuner(rb).run() }, ["cannot resume", "base model: checkpoint"])

        // The genuine checkpoint still resumes.
        try Finetuner(r).run()
    }
}
