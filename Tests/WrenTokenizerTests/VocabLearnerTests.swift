// Vocabulary extension at the tokenizer level: new tokens learned on Swift source
// (this repository's), appended after every existing id with the lowest priority.
// Existing ids never change, every string decodes to itself, and the domain text
// takes fewer tokens — for SentencePiece (Mistral's model) and byte-level BPE
// (the tiny fixture, and SmolLM2's real vocabulary where it is present).

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
@testable import WrenTokenizer
import XCTest

final class VocabLearnerTests: XCTestCase {
    /// Swift source from this repository: `train` from one module, `held` from another.
    func swiftText(_ module: String) throws -> String {
        let dir = repoRoot() + "/Sources/" + module
        return try FileManager.default.contentsOfDirectory(atPath: dir).sorted().filter { $0.hasSuffix(".swift") }
            .map { try String(contentsOfFile: dir + "/" + $0, encoding: .utf8) }.joined(separator: "\n")
    }

    func randomStrings(_ n: Int, seed: UInt64) -> [String] {
        var rng = SeededRNG(seed: seed)
        let pools: [ClosedRange<UInt32>] = [0x20...0x7E, 0xA0...0x24F, 0x370...0x3FF, 0x400...0x4FF, 0x4E00...0x4FFF, 0x1F300...0x1F64F, 0x9...0xD]
        return (0..<n).map { _ in
            var s = ""
            for _ in 0..<(1 + Int(rng.next() % 40)) {
                let pool = pools[Int(rng.next() % UInt64(pools.count))]
                s.unicodeScalars.append(Unicode.Scalar(pool.lowerBound + UInt32(rng.next() % UInt64(pool.count)))!)
            }
            return s
        }
    }

    func checkExtension(_ spec: TokenizerSpec, count: Int, label: String, minExact: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let tok = try Tokenizer(spec)
        let train = try swiftText("WrenFormat"), held = try swiftText("WrenEngine")
        let learned = try VocabLearner.learn(tok, text: train, count: count)
        XCTAssertEqual(learned.tokens.count, count, label, file: file, line: line)
        let ext = spec.extended(with: learned)
        XCTAssertEqual(Array(ext.tokens.prefix(spec.tokens.count)), spec.tokens, "\(label): existing ids changed", file: file, line: line)
        let big = try Tokenizer(ext)
        XCTAssertEqual(big.vocabularySize, spec.tokens.count + count, file: file, line: line)
        // Each new token's bytes are its parts' bytes.
        for (k, parts) in learned.parts.enumerated() {
            XCTAssertEqual(big.bytes(of: Int32(spec.tokens.count + k)), parts.flatMap { tok.bytes(of: $0) }, label, file: file, line: line)
        }
        // Fewer tokens on the training text and on held-out text of the same kind, and every new token used.
        let before = tok.encode(train, addSpecial: false, parseSpecial: false), after = big.encode(train, addSpecial: false, parseSpecial: false)
        XCTAssertLessThan(after.count, before.count, label, file: file, line: line)
        XCTAssertLessThan(big.encode(held, addSpecial: false, parseSpecial: false).count, tok.encode(held, addSpecial: false, parseSpecial: false).count,
                          label, file: file, line: line)
        XCTAssertGreaterThan(Set(after.filter { Int($0) >= spec.tokens.count }).count, count / 2, label, file: file, line: line)
        // decode(encode(x)) is what it was with the original vocabulary: x itself wherever the original
        // round-trips (a vocabulary without a token for some byte drops it, as Hugging Face's does).
        var failures = 0, exact = 0
        for s in randomStrings(300, seed: 7) + [train, held, "  leading spaces", "tabs\tand\nnewlines\r\n", "emoji 🦅 and 中文"] {
            let was = try tok.decode(tok.encode(s, addSpecial: false, parseSpecial: false))
            let now = try big.decode(big.encode(s, addSpecial: false, parseSpecial: false))
            if was == s { exact += 1 }
            if now != was {
                failures += 1
                if failures < 4 { XCTFail("\(label): \(s.prefix(80).debugDescription) decodes to \(now.prefix(80).debugDescription), was \(was.prefix(80).debugDescription)", file: file, line: line) }
            }
        }
        XCTAssertEqual(failures, 0, label, file: file, line: line)
        XCTAssertGreaterThan(exact, minExact, "\(label): too few strings round-trip exactly to prove anything", file: file, line: line)
    }

    func testSentencePieceExtension() throws {
        let path = repoRoot() + "/Tests/WrenTokenizerTests/Fixtures/mistral-7b-v0.1.tokenizer.model"
        let model = try SentencePieceModel(bytes: Array(try Data(contentsOf: URL(fileURLWithPath: path))), path: path)
        let spec = TokenizerSpec(try model.tokenizerMetadata())
        try checkExtension(spec, count: 300, label: "mistral", minExact: 250)
        let ext = try spec.extended(with: VocabLearner.learn(Tokenizer(spec), text: swiftText("WrenFormat"), count: 10))
        let normal = spec.scores!.indices.filter { spec.tokenTypes![$0] == 1 }.map { spec.scores![$0] }.min()!
        let added = Array(ext.scores!.suffix(10))
        XCTAssertLessThan(added[0], normal)
        XCTAssertEqual(added, added.sorted(by: >))
        XCTAssertEqual(Set(added).count, 10)
    }

    func testByteLevelExtension() throws {
        try checkExtension(TokenizerSpec(TinyModel().tokenizer), count: 40, label: "tiny byte-level", minExact: 0)
        guard let p = realModelPath() else { return }
        let g = try GGUFFile(path: p)
        let smol = TokenizerSpec(try TokenizerMetadata(metadata: g.metadata, path: p, prefix: "tokenizer.ggml."))
        try checkExtension(smol, count: 300, label: "SmolLM2", minExact: 250)
    }

    func testRefusals() throws {
        let tok = try Tokenizer(TokenizerSpec(TinyModel().tokenizer))
        XCTAssertThrowsError(try VocabLearner.learn(tok, text: "abc abc", count: 0)) { XCTAssertEqual($0 as? VocabLearner.Failure, .badCount(0)) }
        XCTAssertThrowsError(try VocabLearner.learn(tok, text: "abc abc", count: 1000)) { e in
            guard case let .notEnough(asked, supported, _)? = e as? VocabLearner.Failure else { return XCTFail("\(e)") }
            XCTAssertEqual(asked, 1000)
            XCTAssertLessThan(supported, 10)
            XCTAssertTrue("\(e)".contains("the text supports only"))
        }
    }
}
