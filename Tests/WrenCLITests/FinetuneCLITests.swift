// `wren finetune`, `wren merge` and `--lora` end to end on a tiny model,
// including a run killed with SIGKILL and resumed.

import Foundation
import TestSupport
import WrenFormat
import XCTest

final class FinetuneCLITests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func setUpModelAndData() throws -> (model: String, data: String) {
        let model = dir + "/tiny.wren"
        try TinyModel(seed: 3, tied: true).writeWren(to: model, dtype: .q8_0)
        let words = ["ab", "cd", "ef", "gh"]
        let lines = (0..<16).map { "{\"input\": \"\(words[$0 % 4]) \(words[$0 / 4]) =\", \"output\": \" \(words[($0 + 1) % 4])\"}" }
        try lines.joined(separator: "\n").write(toFile: dir + "/data.jsonl", atomically: true, encoding: .utf8)
        return (model, dir + "/data.jsonl")
    }

    func args(_ m: String, _ d: String, _ out: String, epochs: Int) -> [String] {
        ["finetune", "-m", m, "--data", d, "-o", out, "--lora-targets", "q,k,v,o,gate,up,down", "--lora-r", "4", "--lora-alpha", "8",
         "--lora-dropout", "0.05", "--lr", "5e-3", "--batch-size", "2", "--grad-accum", "2", "--block-size", "32", "--epochs", "\(epochs)",
         "--warmup", "3", "--schedule", "cosine", "--weight-decay", "0.01", "--clip", "1", "--save-every", "1", "--seed", "9", "-t", "1",
         "--validation-split", "0.2"]
    }

    func testFinetuneMergeAndRunWithAdapter() throws {
        let (m, d) = try setUpModelAndData()
        let r = try runWren(args(m, d, dir + "/out", epochs: 3))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("QLoRA on a q8_0 base"), r.stderr)
        XCTAssertTrue(r.stderr.contains("tok/s") && r.stderr.contains("ETA") && r.stderr.contains("val_loss"), r.stderr)
        for f in ["adapter_config.json", "adapter_model.safetensors", "loss.csv", "loss.svg", "eval.csv", "checkpoint.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/out/" + f), f)
        }
        // A second run into the same directory is refused unless --resume.
        let again = try runWren(args(m, d, dir + "/out", epochs: 3))
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("--resume"), again.stderr)
        // The adapter at run time, and merged.
        let plain = try runWren(["run", "-m", m, "-n", "6", "--temp", "0", "-p", "ab cd ="])
        let adapted = try runWren(["run", "-m", m, "-n", "6", "--temp", "0", "--lora", dir + "/out", "--lora-scale", "1", "-p", "ab cd ="])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertEqual(adapted.status, 0, adapted.stderr)
        let merged = try runWren(["merge", "-m", m, "--lora", dir + "/out", "-o", dir + "/merged.wren", "--type", "f32"])
        XCTAssertEqual(merged.status, 0, merged.stderr)
        XCTAssertTrue(merged.stderr.contains("survived requantization"), merged.stderr)
        let fromMerged = try runWren(["run", "-m", dir + "/merged.wren", "-n", "6", "--temp", "0", "-p", "ab cd ="])
        XCTAssertEqual(fromMerged.stdout, adapted.stdout)
        let exists = try runWren(["merge", "-m", m, "--lora", dir + "/out", "-o", dir + "/merged.wren"])
        XCTAssertEqual(exists.status, 1)
        XCTAssertTrue(exists.stderr.contains("exists"), exists.stderr)
    }

    func testKilledRunResumesToSameWeights() throws {
        let (m, d) = try setUpModelAndData()
        let clean = try runWren(args(m, d, dir + "/clean", epochs: 40))
        XCTAssertEqual(clean.status, 0, clean.stderr)
        // Start the same run, SIGKILL it once a checkpoint exists, resume.
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("wren")
        let p = Process()
        p.executableURL = exe
        p.arguments = args(m, d, dir + "/killed", epochs: 40)
        p.standardError = FileHandle.nullDevice
        try p.run()
        let ckpt = dir + "/killed/checkpoint.safetensors"
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: ckpt) && Date() < deadline { usleep(2000) }
        usleep(20000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the run finished before it could be killed; make it longer")
        let resumed = try runWren(args(m, d, dir + "/killed", epochs: 40) + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/clean/adapter_model.safetensors"))
        let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/killed/adapter_model.safetensors"))
        XCTAssertEqual(a, b, "resumed weights differ from the uninterrupted run's")
        let csvA = try String(contentsOfFile: dir + "/clean/loss.csv", encoding: .utf8).split(separator: "\n")
        let csvB = try String(contentsOfFile: dir + "/killed/loss.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csvA.count, csvB.count)
        XCTAssertEqual(csvA.map { $0.split(separator: ",")[2] }, csvB.map { $0.split(separator: ",")[2] }, "losses per step")
    }

    func testBadFinetuneInput() throws {
        let (m, d) = try setUpModelAndData()
        let cases: [([String], String)] = [
            (["--lora-targets", "q,bogus"], "unknown projection"),
            (["--schedule", "steep"], "--schedule"),
            (["--lora-dropout", "1.5"], "--lora-dropout"),
            (["--batch-size", "0"], "--batch-size"),
            (["--lisa-layers", "1"], "--lisa-layers samples layers for full finetuning"),
            (["--full", "--lisa-layers", "9", "--block-size", "32"], "--lisa-layers must be in 1...2"),
        ]
        for (extra, msg) in cases {
            let r = try runWren(["finetune", "-m", m, "--data", d, "-o", dir + "/x"] + extra)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(msg), r.stderr)
        }
        try "{\"type\": \"text2text\", \"instances\": [{\"input\": \"a\"}]}".write(toFile: dir + "/bad.json", atomically: true, encoding: .utf8)
        let r = try runWren(["finetune", "-m", m, "--data", dir + "/bad.json", "-o", dir + "/y", "--block-size", "32"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "wren: error: \(dir)/bad.json: instance 0, key \"output\": missing\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/y"))
        let lora = try runWren(["run", "-m", m, "--lora", dir + "/nowhere", "-p", "hi"])
        XCTAssertEqual(lora.status, 1)
        XCTAssertTrue(lora.stderr.contains("adapter_config.json"), lora.stderr)
    }
}
