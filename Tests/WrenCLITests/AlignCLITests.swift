// The alignment commands end to end on a tiny model: `wren run --samples`,
// `wren reward train/score`, `wren dpo` and `wren raft` (a shell reward command),
// and their refusals of bad flags and bad input.

import Foundation
import TestSupport
import WrenFormat
import XCTest

final class AlignCLITests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func setUpModel() throws -> String {
        let model = dir + "/tiny.wren"
        try TinyModel(seed: 4, tied: true).writeWren(to: model, dtype: .q8_0)
        return model
    }

    func testSamplesRewardDPOAndRaft() throws {
        let m = try setUpModel()
        // Four samples decoded together equal four one after another.
        let batched = try runWren(["run", "-m", m, "-p", "ab", "-n", "12", "--samples", "4", "--min-tokens", "12", "-t", "1"])
        let sequential = try runWren(["run", "-m", m, "-p", "ab", "-n", "12", "--samples", "4", "--min-tokens", "12", "--sequential", "-t", "1"])
        XCTAssertEqual(batched.status, 0, batched.stderr)
        XCTAssertEqual(batched.stdout, sequential.stdout)
        XCTAssertEqual(batched.stdout.components(separatedBy: "### sample").count - 1, 4)
        XCTAssertTrue(batched.stdout.contains("12 tokens, stop: length"), batched.stdout)

        // Pairs: chosen answers of a's, rejected of p's.
        let pairs = (0..<12).map { i in #"{"prompt": "q\#(i % 3) ", "chosen": "aa aa", "rejected": "pp pp"}"# }
        try pairs.joined(separator: "\n").write(toFile: dir + "/pairs.jsonl", atomically: true, encoding: .utf8)
        let train = ["-m", m, "--data", dir + "/pairs.jsonl", "--block-size", "32", "--lora-r", "2", "--lora-alpha", "4", "--epochs", "1",
                     "--batch-size", "4", "-t", "1", "--validation-split", "0.25"]
        let rm = try runWren(["reward", "train"] + train + ["-o", dir + "/rm"])
        XCTAssertEqual(rm.status, 0, rm.stderr)
        XCTAssertTrue(rm.stderr.contains("pair accuracy") && rm.stderr.contains("ETA"), rm.stderr)
        try #"{"prompt": "q1 ", "response": "aa aa"}"#.appending("\n{\"prompt\": \"q1 \", \"response\": \"pp pp\"}\n")
            .write(toFile: dir + "/lines.jsonl", atomically: true, encoding: .utf8)
        let score = try runWren(["reward", "score", "-m", m, "--reward", dir + "/rm", "-i", dir + "/lines.jsonl"])
        XCTAssertEqual(score.status, 0, score.stderr)
        XCTAssertEqual(score.stdout.split(separator: "\n").filter { $0.contains("\"reward\"") }.count, 2)
        let bad = try runWren(["reward", "score", "-m", m, "--reward", dir + "/rm"], stdin: "{\"prompt\": 3}\n")
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("stdin line 1") && bad.stderr.contains("prompt"), bad.stderr)

        let dpo = try runWren(["dpo"] + train + ["-o", dir + "/dpo", "--beta", "0.2", "--loss", "ipo"])
        XCTAssertEqual(dpo.status, 0, dpo.stderr)
        XCTAssertTrue(dpo.stderr.contains("reward accuracy"), dpo.stderr)
        let run = try runWren(["run", "-m", m, "-p", "ab", "-n", "4", "--lora", dir + "/dpo", "-t", "1"])
        XCTAssertEqual(run.status, 0, run.stderr)

        // RAFT with a shell rule as the reward (the number of a's in the response).
        try #"{"type": "text_only", "instances": [{"text": "ab "}, {"text": "cd "}, {"text": "ef "}, {"text": "gh "}]}"#
            .write(toFile: dir + "/prompts.json", atomically: true, encoding: .utf8)
        let cmd = #"while IFS= read -r l; do r=${l#*\"response\":}; echo "{\"reward\": $(printf %s "$r" | tr -cd a | wc -c)}"; done"#
        let raftArgs = ["raft", "-m", m, "--prompts", dir + "/prompts.json", "--eval-prompts", dir + "/prompts.json", "-o", dir + "/raft",
                        "--reward-cmd", cmd, "--iterations", "2", "--prompts-per-iteration", "4", "--k", "2", "--max-new-tokens", "6",
                        "--min-new-tokens", "2", "--lora-r", "2", "--lora-alpha", "4", "--epochs", "1", "--block-size", "32", "-t", "1"]
        let raft = try runWren(raftArgs)
        XCTAssertEqual(raft.status, 0, raft.stderr)
        XCTAssertTrue(raft.stderr.contains("iteration 2: sampled") && raft.stderr.contains("held-out"), raft.stderr)
        for f in ["raft.jsonl", "raft.svg", "samples-2.jsonl", "adapter_model.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/raft/" + f), f)
        }
    }

    func testBadFlagsAndCommandsAreRefused() throws {
        let m = try setUpModel()
        try #"{"type": "text_only", "instances": [{"text": "ab "}]}"#.write(toFile: dir + "/p.json", atomically: true, encoding: .utf8)
        let base = ["raft", "-m", m, "--prompts", dir + "/p.json", "-o", dir + "/raft", "--iterations", "1", "--prompts-per-iteration", "1",
                    "--max-new-tokens", "4", "--min-new-tokens", "0", "--block-size", "32", "-t", "1"]
        for (extra, words) in [(["--reward-cmd", "cat", "--keep", "0"], "--keep"), (["--reward-cmd", "cat", "--k", "1"], "--k"),
                               ([], "exactly one"), (["--reward-cmd", "cat", "--strategy", "best"], "--strategy")] {
            let r = try runWren(base + extra)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(words), "\(extra): \(r.stderr)")
        }
        let missing = try runWren(base + ["--reward-cmd", "/no/such/scorer"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/no/such/scorer") && missing.stderr.contains("exit status 127"), missing.stderr)
        // The failed iteration is not recorded as done.
        let state = (try? String(contentsOfFile: dir + "/raft/raft-state.json", encoding: .utf8)) ?? ""
        XCTAssertFalse(state.contains("\"iterations_done\":1"), state)
        let dpo = try runWren(["dpo", "-m", m, "--data", dir + "/p.json", "-o", dir + "/d", "--loss", "kl"])
        XCTAssertNotEqual(dpo.status, 0)
        XCTAssertTrue(dpo.stderr.contains("--loss"), dpo.stderr)
        let notPairs = try runWren(["dpo", "-m", m, "--data", dir + "/p.json", "-o", dir + "/d"])
        XCTAssertNotEqual(notPairs.status, 0)
        XCTAssertTrue(notPairs.stderr.contains("paired_conversation or paired_text_to_text"), notPairs.stderr)
    }
}
