// `wren delta make|apply|inspect` end to end on tiny models: the exact round trip to the
// very file, the wrong base refused with exit 1 and nothing written, q8 and the Hugging
// Face form, and the refusals of bad flags.

import Foundation
import TestSupport
import WrenFormat
import XCTest

final class DeltaCLITests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testMakeApplyInspect() throws {
        let base = TinyModel(seed: 30)
        var tuned = base
        var rng = SeededRNG(seed: 2)
        for i in tuned.weights.indices where tuned.weights[i].name.hasPrefix("blk.1.") {
            tuned.weights[i].values = tuned.weights[i].values.map { $0 + rng.normal() * 0.01 }
        }
        let b = dir + "/base.wren", t = dir + "/tuned.wren", other = dir + "/other.wren", d = dir + "/d.wdelta"
        try base.writeWren(to: b, dtype: .f32)
        try tuned.writeWren(to: t, dtype: .f32)
        try base.writeWren(to: other, dtype: .f16)

        let make = try runWren(["delta", "make", "--base", b, "--tuned", t, "-o", d])
        XCTAssertEqual(make.status, 0, make.stderr)
        XCTAssertTrue(make.stderr.contains("same") && make.stderr.contains("smaller") && make.stderr.contains("by encoding tried"), make.stderr)
        let inspect = try runWren(["delta", "inspect", d, "--verify", "--tensors"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("base:     tiny (f32, base.wren), 20 tensors"), inspect.stdout)
        XCTAssertTrue(inspect.stdout.contains("checksums verified") && inspect.stdout.contains("blk.1.ffn_up.weight"), inspect.stdout)

        let apply = try runWren(["delta", "apply", "--base", b, d, "-o", dir + "/out.wren"])
        XCTAssertEqual(apply.status, 0, apply.stderr)
        XCTAssertEqual(try ModelConverter.sha256(files: [dir + "/out.wren"]), try ModelConverter.sha256(files: [t]))
        // The output exists now: refused without --force, kept as it is.
        let again = try runWren(["delta", "apply", "--base", b, d, "-o", dir + "/out.wren"])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("exists"), again.stderr)

        let wrong = try runWren(["delta", "apply", "--base", other, d, "-o", dir + "/wrong.wren"])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("was made for tiny (f32, base.wren); tensor token_embd.weight is f16"), wrong.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/wrong.wren"))
        let itself = try runWren(["delta", "apply", "--base", d, d, "-o", dir + "/self.wren"])
        XCTAssertEqual(itself.status, 1)
        XCTAssertTrue(itself.stderr.contains("is a delta, not a model"), itself.stderr)

        let q8 = try runWren(["delta", "make", "--base", b, "--tuned", t, "-o", dir + "/q8.wdelta", "--encoding", "q8"])
        XCTAssertEqual(q8.status, 0, q8.stderr)
        XCTAssertTrue(q8.stderr.contains("q8 error against the tuned values: max"), q8.stderr)
        XCTAssertEqual(try runWren(["delta", "apply", "--base", b, dir + "/q8.wdelta", "-o", dir + "/q8.wren"]).status, 0)

        let hf = try runWren(["delta", "make", "--format", "hf", "--base", b, "--tuned", t, "-o", dir + "/hf"])
        XCTAssertEqual(hf.status, 0, hf.stderr)
        let hfApply = try runWren(["delta", "apply", "--format", "hf", "--base", b, dir + "/hf", "-o", dir + "/hf.wren", "--type", "q8_0"])
        XCTAssertEqual(hfApply.status, 0, hfApply.stderr)
        let w = try WrenFile(path: dir + "/hf.wren")
        XCTAssertEqual(w.info("blk.1.ffn_up.weight")?.dtype, .q8_0)

        for (args, message) in [(["delta", "make", "--base", b, "--tuned", t, "-o", dir + "/x", "--format", "hf", "--type", "q4_0"], "--type"),
                                (["delta", "apply", "--base", b, d, "-o", dir + "/x.wren", "--type", "q8_0"], "--type"),
                                (["delta", "apply", "--format", "hf", "--base", b, d, "-o", dir + "/x.wren"], "Hugging Face directory"),
                                (["delta", "make", "--base", b, "--tuned", t, "-o", dir + "/x", "--encoding", "zip"], "encoding")] {
            let r = try runWren(args)
            XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }

    func testVocabExtendAndItsDelta() throws {
        let m = dir + "/m.wren"
        try TinyModel(seed: 31).writeWren(to: m, dtype: .f32)
        var rng = SeededRNG(seed: 3)
        let words = ["abc", "abd", "bcd", "cab", "dab", "abab"]
        let texts = (0..<40).map { _ in (0..<10).map { _ in words[Int(rng.next() % 6)] }.joined(separator: " ") }
        let data = try JSONSerialization.data(withJSONObject: ["type": "text_only", "instances": texts.map { ["text": $0] }])
        try data.write(to: URL(fileURLWithPath: dir + "/text.json"))
        let ve = try runWren(["vocab", "extend", "-m", m, "--data", dir + "/text.json", "--new-tokens", "6", "-o", dir + "/ve.wren"])
        XCTAssertEqual(ve.status, 0, ve.stderr)
        XCTAssertTrue(ve.stderr.contains("6 new tokens (ids 64…69)") && ve.stderr.contains("tokens per byte"), ve.stderr)
        XCTAssertEqual(try runWren(["run", "-m", dir + "/ve.wren", "-p", "abc", "-n", "3", "-t", "1"]).status, 0)
        // The extension travels in a delta: the grown embedding whole, the new tokenizer in the metadata.
        XCTAssertEqual(try runWren(["delta", "make", "--base", m, "--tuned", dir + "/ve.wren", "-o", dir + "/ve.wdelta"]).status, 0)
        XCTAssertEqual(try runWren(["delta", "apply", "--base", m, dir + "/ve.wdelta", "-o", dir + "/ve2.wren"]).status, 0)
        XCTAssertEqual(try ModelConverter.sha256(files: [dir + "/ve2.wren"]), try ModelConverter.sha256(files: [dir + "/ve.wren"]))

        for (args, message) in [(["--new-tokens", "0"], "--new-tokens must be at least 1"),
                                (["--new-tokens", "5000"], "the text supports only"),
                                (["--new-tokens", "2", "-o", dir + "/ve.wren"], "exists")] {
            var full = ["vocab", "extend", "-m", m, "--data", dir + "/text.json", "-o", dir + "/x.wren"] + args
            if args.contains("-o") { full = ["vocab", "extend", "-m", m, "--data", dir + "/text.json"] + args }
            let r = try runWren(full)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.wren"))
    }
}
