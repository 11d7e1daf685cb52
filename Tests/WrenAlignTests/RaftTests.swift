// RAFT on a tiny model with a reward command (a shell rule: the number of
// letters "a" in the response): the held-out greedy reward rises, kept samples
// score at least the sampled mean, the logs and samples are written; a resumed
// run equals an uninterrupted one; a reward command that is missing, dies or
// answers garbage stops the run with the reason and the state intact; bad
// settings are refused.

import Foundation
import TestSupport
@testable import WrenAlign
import WrenEngine
import WrenFormat
import WrenTuning
import XCTest

final class RaftTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Counts the a's of the response (the text after "response":).
    static let countA = #"while IFS= read -r line; do r=${line#*\"response\":}; n=$(printf %s "$r" | tr -cd a | wc -c); echo "{\"reward\": $n}"; done"#

    func setUpRun(iterations: Int = 3, command: String = RaftTests.countA, out: String = "out") throws -> RaftOptions {
        let model = dir + "/m.wren"
        if !FileManager.default.fileExists(atPath: model) {
            try TinyModel(seed: 95, dim: 32, layers: 2, ff: 64).writeWren(to: model, dtype: .f32)
            let letters = Array("bcdefghijklmnop")
            func prompts(_ n: Int, _ off: Int) -> [String: Any] {
                ["type": "text_only", "instances": (0..<n).map { ["text": "say \(letters[($0 + off) % letters.count]) "] }]
            }
            try JSONSerialization.data(withJSONObject: prompts(12, 0)).write(to: URL(fileURLWithPath: dir + "/prompts.json"))
            try JSONSerialization.data(withJSONObject: prompts(8, 5)).write(to: URL(fileURLWithPath: dir + "/eval.json"))
        }
        var f = FinetuneOptions(modelPath: model, dataPath: "", outputDir: dir + "/" + out)
        f.mode = .lora(LoRAConfig(rank: 4, alpha: 8, dropout: 0, targets: Projection.allCases))
        f.learningRate = 1e-2
        f.epochs = 2
        f.batchSize = 4
        f.blockSize = 64
        f.threads = 2
        var o = RaftOptions(finetune: f, promptsPath: dir + "/prompts.json")
        o.rewardCommand = command
        o.k = 4
        o.iterations = iterations
        o.promptsPerIteration = 8
        o.maxNewTokens = 8
        o.minNewTokens = 4
        o.temperature = 1
        o.evalPrompts = dir + "/eval.json"
        o.width = 8
        return o
    }

    func testRaftRaisesTheRewardAndResumesExactly() throws {
        let o = try setUpRun()
        let raft = try Raft(o)
        try raft.run()
        let rows = raft.rows
        XCTAssertEqual(rows.map(\.iteration), [0, 1, 2, 3])
        let first = try XCTUnwrap(rows.first?.evalReward), last = try XCTUnwrap(rows.last?.evalReward)
        XCTAssertGreaterThan(last, first + 1, "held-out reward \(rows.map { $0.evalReward ?? .nan })")
        for r in rows.dropFirst() {
            XCTAssertEqual(r.samples, 32)
            XCTAssertEqual(r.kept, 8)
            XCTAssertGreaterThanOrEqual(try XCTUnwrap(r.meanKeptReward), try XCTUnwrap(r.meanSampledReward))
            XCTAssertNotNil(r.keptPerplexityBefore)
            XCTAssertLessThan(try XCTUnwrap(r.keptPerplexityAfter), try XCTUnwrap(r.keptPerplexityBefore))
            XCTAssertNotNil(r.sampleDiversity)
        }
        let out = o.finetune.outputDir
        for f in ["raft.jsonl", "raft.svg", "samples-1.jsonl", "samples-3.jsonl", "adapter_model.safetensors", "adapter_config.json",
                  "iter-2/kept.json", "iter-2/sft/loss.csv"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + f), f)
        }
        let samples = try String(contentsOfFile: out + "/samples-1.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(samples.count, 8)
        let inst = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(samples[0].utf8)) as? [String: Any])
        XCTAssertEqual((inst["output"] as? [[String: Any]])?.count, 4)
        XCTAssertNotNil(inst["input"] as? String)
        XCTAssertEqual(try String(contentsOfFile: out + "/raft.jsonl", encoding: .utf8).split(separator: "\n").count, 4)

        // Two iterations, then a resume to three: the same figures as the uninterrupted run.
        var short = try setUpRun(iterations: 2, out: "resumed")
        try Raft(short).run()
        short.iterations = 3
        XCTAssertThrowsError(try Raft(short).run()) { XCTAssert("\($0)".contains("resume"), "\($0)") }
        short.resume = true
        let resumed = try Raft(short)
        try resumed.run()
        XCTAssertEqual(resumed.rows.map(\.evalReward), rows.map(\.evalReward))
        XCTAssertEqual(resumed.rows.map(\.meanKeptReward), rows.map(\.meanKeptReward))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/resumed/adapter_model.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: out + "/adapter_model.safetensors")))
    }

    func testRewardCommandFailuresStopTheRunWithTheStateIntact() throws {
        var o = try setUpRun(iterations: 1)
        try Raft(o).run()
        let state = try Data(contentsOf: URL(fileURLWithPath: o.finetune.outputDir + "/raft-state.json"))
        o.iterations = 2
        o.resume = true
        let cases: [(String, String)] = [
            ("no-such-scorer-xyz", "not found"),
            ("while read -r l; do echo 'fine, thanks'; done", "not a JSON object"),
            (#"while read -r l; do echo '{"reward": "high"}'; done"#, "must be a number"),
            (#"read -r l; echo '{"reward": 1}'; exit 3"#, "exit"),
        ]
        for (cmd, words) in cases {
            o.rewardCommand = cmd
            XCTAssertThrowsError(try Raft(o).run(), cmd) { XCTAssert("\($0)".contains(words), "\(cmd): \($0)") }
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: o.finetune.outputDir + "/raft-state.json")), state, cmd)
        }
        // A scorer that answers null rejects responses: with every response rejected there is nothing to keep.
        o.rewardCommand = #"while read -r l; do echo '{"reward": null}'; done"#
        XCTAssertThrowsError(try Raft(o).run()) { XCTAssert("\($0)".contains("rejected"), "\($0)") }
    }

    func testBadSettingsAreRefused() throws {
        let o = try setUpRun()
        var bad = o
        bad.keep = 0
        XCTAssertThrowsError(try Raft(bad)) { XCTAssert("\($0)".contains("keep"), "\($0)") }
        bad = o
        bad.k = 1
        XCTAssertThrowsError(try Raft(bad)) { XCTAssert("\($0)".contains("local"), "\($0)") }
        bad = o
        bad.rewardModel = dir + "/rm"
        XCTAssertThrowsError(try Raft(bad)) { XCTAssert("\($0)".contains("exactly one"), "\($0)") }
        bad = o
        bad.promptsPath = dir + "/missing.json"
        XCTAssertThrowsError(try Raft(bad)) { XCTAssert("\($0)".contains("missing.json"), "\($0)") }
    }
}
