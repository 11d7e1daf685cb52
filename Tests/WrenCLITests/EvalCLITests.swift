// `wren eval` end to end on a tiny model: summaries and per-item files, and
// each kind of bad input named with its file (and line) and exit code 1,
// nothing written.

import Foundation
import TestSupport
import XCTest

final class EvalCLITests: XCTestCase {
    var dir = ""
    var model = ""
    override func setUpWithError() throws {
        dir = tempDirectory(name)
        model = dir + "/tiny.wren"
        try TinyModel(seed: 4).writeWren(to: model, dtype: .q8_0)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) throws -> String {
        let p = dir + "/" + name
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func json(_ s: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any])
    }

    func testPerplexityJSONAndPerChunkFile() throws {
        let text = try write("t.txt", String(repeating: "abc def ghij kl mno pq rstu vw xyz ", count: 20))
        let out = dir + "/chunks.jsonl"
        let r = try runWren(["eval", "ppl", "-m", model, "-f", text, "-c", "32", "--json", "--output", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try json(r.stdout)
        let ppl = try XCTUnwrap(j["perplexity"] as? Double), chunks = try XCTUnwrap(j["chunks"] as? Int)
        XCTAssertTrue(ppl > 1 && ppl.isFinite, "\(ppl)")
        XCTAssertEqual(j["scored"] as? Int, chunks * 15, "each chunk of 32 scores 15 tokens")
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, chunks)
        XCTAssertTrue(r.stderr.contains("[ppl \(chunks)/\(chunks)]"), "progress line: \(r.stderr)")
        let plain = try runWren(["eval", "ppl", "-m", model, "-f", text, "-c", "32", "--stride", "16", "--by-position", "--bucket", "8"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertTrue(plain.stdout.contains("PPL = ") && plain.stdout.contains("positions     0-7"), plain.stdout)
    }

    func testMultipleChoiceAndNLL() throws {
        let mc = try write("mc.jsonl", """
        {"context": "abc de ", "choices": ["fg", "hij"], "answer": 0}
        {"context": "xy", "choices": [" zz", " q", " abc"], "answer": 2}
        """)
        let r = try runWren(["eval", "mc", "-m", model, "--data", mc, "--json", "--output", dir + "/mc-items.jsonl"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try json(r.stdout)["items"] as? Int, 2)
        let items = try String(contentsOfFile: dir + "/mc-items.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(try json(String(items[1]))["line"] as? Int, 2)
        let data = dir + "/ds"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        _ = try write("ds/a.json", #"{"type": "text2text", "instances": [{"input": "abc", "output": "de fg"}]}"#)
        let n = try runWren(["eval", "nll", "-m", model, "--data", data])
        XCTAssertEqual(n.status, 0, n.stderr)
        XCTAssertTrue(n.stdout.contains("NLL = "), n.stdout)
    }

    func testBadInputIsNamedAndNothingIsWritten() throws {
        let empty = try write("empty.txt", "")
        let short = try write("short.txt", "abc de")
        let bad = try write("bad.jsonl", """
        {"context": "a", "choices": ["b", "c"], "answer": 1}
        {"context": "a", "choices": ["b", "c"], "answer": 2}
        """)
        let out = dir + "/out.jsonl"
        for (args, want) in [
            (["eval", "ppl", "-m", model, "-f", empty, "--output", out], "\(empty): the file is empty"),
            (["eval", "ppl", "-m", model, "-f", short, "-c", "32", "--output", out], "\(short): the text is"),
            (["eval", "mc", "-m", model, "--data", bad, "--output", out], "\(bad):2: \"answer\" 2 is out of range for 2 choices"),
            (["eval", "ppl", "-m", model, "-f", dir + "/missing.txt"], "missing.txt: cannot read the file"),
        ] {
            let r = try runWren(args)
            XCTAssertEqual(r.status, 1, "\(args)")
            XCTAssertTrue(r.stderr.hasPrefix("wren: error: ") && r.stderr.contains(want), "\(args): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing written for \(args)")
        }
    }

    func testGenerationEval() throws {
        let data = try write("qa.json", #"{"type": "text2text", "instances": [{"input": "abc", "output": "1"}, {"input": "de", "output": "2"}]}"#)
        let r = try runWren(["eval", "gen", "-m", model, "--data", data, "--answer-type", "number", "-n", "6", "--json",
                             "--output", dir + "/gen.jsonl"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try json(r.stdout)
        XCTAssertEqual(j["items"] as? Int, 2)
        XCTAssertNotNil((j["diversity"] as? [String: Any])?["distinct1"])
        XCTAssertEqual(try String(contentsOfFile: dir + "/gen.jsonl", encoding: .utf8).split(separator: "\n").count, 2)
        let conv = try write("conv.json", #"{"type": "conversation", "instances": [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]}"#)
        let c = try runWren(["eval", "gen", "-m", model, "--data", conv])
        XCTAssertEqual(c.status, 1)
        XCTAssertTrue(c.stderr.contains("conv.json") && c.stderr.contains("text2text"), c.stderr)
        let t = try runWren(["eval", "gen", "-m", model, "--data", data, "--answer-type", "essay"])
        XCTAssertNotEqual(t.status, 0)
        XCTAssertTrue(t.stderr.contains("essay"), t.stderr)
    }
}
