// `VocabExtension.extend`: the model keeps every existing row and tensor byte for byte,
// each new embedding (and output) row is the mean of its parts' rows, and the result
// loads and runs with the larger vocabulary.

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
import WrenKernels
import WrenTokenizer
@testable import WrenTuning
import XCTest

final class VocabExtensionTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testExtendedModelKeepsOldRowsAndAveragesNewOnes() throws {
        for (tied, dtype) in [(true, DType.f32), (false, .q8_0)] {
            let src = dir + "/m-\(tied).wren", out = dir + "/ve-\(tied).wren"
            try TinyModel(seed: 40, tied: tied).writeWren(to: src, dtype: dtype)
            var rng = SeededRNG(seed: 1)
            let words = ["abc", "abd", "bcd", "cab", "dab", "abab"]
            let text = (0..<400).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ")
            let r = try VocabExtension.extend(model: src, text: text, count: 8, to: out)
            XCTAssertEqual(r.added, 8)
            XCTAssertLessThan(r.tokensAfter, r.tokensBefore)
            let a = try WrenFile(path: src), b = try WrenFile(path: out)
            let n0 = 64
            XCTAssertEqual(try ModelConfig(metadata: b.metadata, path: out).vocabSize, n0 + 8)
            let tokA = try Tokenizer(file: a), tokB = try Tokenizer(file: b)
            XCTAssertEqual(Array(tokB.pieces.prefix(n0)), tokA.pieces)
            for info in a.tensors {
                let x = try a.tensor(info.name), y = try b.tensor(info.name)
                if info.name == "token_embd.weight" || info.name == "output.weight" {
                    XCTAssertEqual(y.shape, [n0 + 8, info.shape[1]])
                    XCTAssertEqual(Array(y.data.prefix(x.data.count)), Array(x.data), "\(info.name): old rows changed")
                    // New row k: the mean of the rows of the original tokens it is made of.
                    let dim = info.shape[1], all = y.floats(), old = x.floats()
                    for k in 0..<8 {
                        let parts = tokA.encode(String(decoding: tokB.bytes(of: Int32(n0 + k)), as: UTF8.self), addSpecial: false, parseSpecial: false)
                        XCTAssertGreaterThan(parts.count, 1)
                        for j in 0..<dim {
                            let mean = parts.map { old[Int($0) * dim + j] }.reduce(0, +) / Float(parts.count)
                            // f32: exact up to summation order; q8_0: the new row is requantized (half a step of its block).
                            XCTAssertEqual(all[(n0 + k) * dim + j], mean, accuracy: dtype == .f32 ? 1e-6 : 0.01, "\(info.name) row \(n0 + k)")
                        }
                    }
                } else {
                    XCTAssertEqual(Array(x.data), Array(y.data), info.name)
                }
            }
            // It runs, with logits over the larger vocabulary.
            let m = try LlamaModel(path: out)
            let s = try InferenceSession(model: m, contextLength: 32, threads: 1)
            let logits = try s.evaluate(tokB.encode("abc dab", addSpecial: false))
            XCTAssertEqual(logits.count, n0 + 8)
        }
    }

    func testRefusals() throws {
        let src = dir + "/m.wren"
        try TinyModel(seed: 41).writeWren(to: src, dtype: .f32)
        XCTAssertThrowsError(try VocabExtension.extend(model: src, text: "abc abc", count: 500, to: dir + "/x.wren")) {
            XCTAssertTrue("\($0)".contains("the text supports only"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.wren"))
        XCTAssertThrowsError(try VocabExtension.extend(model: src, text: "abc abc", count: 1, to: src)) {
            XCTAssertTrue("\($0)".contains("exists"), "\($0)")
        }
    }
}
