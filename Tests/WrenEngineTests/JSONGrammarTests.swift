// JSON mode: the recognizer accepts exactly the prefixes of JSON objects
// (checked against JSONSerialization on generated and mutated documents), and a
// JSON job's text is always such a prefix, a complete object when it ends by itself.

import Foundation
import TestSupport
@testable import WrenEngine
import WrenFormat
import WrenKernels
import XCTest

final class JSONGrammarTests: XCTestCase {
    func accepts(_ s: String) -> (prefix: Bool, complete: Bool) {
        var p = JSONPrefix()
        for b in s.utf8 where !p.feed(b) { return (false, false) }
        return (true, p.isComplete)
    }

    func testKnownDocuments() {
        for good in [#"{}"#, #" { "a" : 1 } "#.trimmingCharacters(in: .whitespaces), #"{"a":[1,-2.5e+3,0,0.1,true,false,null,"x\"\\\/\b\f\n\r\tA\u00e9"],"b":{"c":{}}}"#,
                     #"{"k":[[],[[]],{}]}"#, #"{"é":"ü 😀"}"#, #"{"n":-0.0E-0}"#] {
            XCTAssertEqual(accepts(good).complete, true, good)
            XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(good.utf8)), good)
        }
        // Every proper prefix of a document is a prefix, not complete.
        let doc = #"{"a":[1,-2.5e+3,{"b":null}],"c":"d\u0041"}"#
        for i in 1..<doc.utf8.count {
            let p = String(decoding: Array(doc.utf8)[..<i], as: UTF8.self)
            XCTAssertEqual(accepts(p).prefix, true, p)
            XCTAssertEqual(accepts(p).complete, false, p)
        }
        for bad in [#"[]"#, #"1"#, #""x""#, #"{"a"}"#, #"{"a":}"#, #"{"a":01}"#, #"{"a":1,}"#, #"{,}"#, #"{"a":tru}"#, #"{"a":"\x"}"#,
                    #"{"a":"\u12G4"}"#, "{\"a\":\"\u{01}\"}", #"{"a":-}"#, #"{"a":1.}"#, #"{"a":1e}"#, #"{"a":[1 2]}"#, #"{}{"#, #"{} x"#, #"{'a':1}"#] {
            XCTAssertFalse(accepts(bad).complete, bad)
            if !bad.contains(",}") {   // Foundation's parser takes a trailing comma; RFC 8259 does not
                XCTAssertNil(try? JSONSerialization.jsonObject(with: Data(bad.utf8)) as? [String: Any], "\(bad) is not a JSON object")
            }
        }
        // Nesting is bounded.
        XCTAssertFalse(accepts(#"{"a":"# + String(repeating: "[", count: 64)).prefix)
        XCTAssertTrue(accepts(#"{"a":"# + String(repeating: "[", count: 63)).prefix)
    }

    /// Random JSON objects (JSONSerialization writes them) are accepted and complete; random
    /// one-byte mutations are accepted as complete only when JSONSerialization parses an object.
    func testAgreesWithJSONSerialization() throws {
        var rng = SeededRNG(seed: 11)
        func value(_ d: Int) -> Any {
            switch rng.next() % (d > 3 ? 4 : 7) {
            case 0: return Double(Int(rng.next() % 20000)) / 7 - 1000
            case 1: return String((0..<Int(rng.next() % 6)).map { _ in "ab\"\\\n é😀/\u{1}".randomElement(using: &rng)! })
            case 2: return rng.next() % 2 == 0
            case 3: return NSNull()
            case 4, 5: return Dictionary(uniqueKeysWithValues: (0..<Int(rng.next() % 4)).map { ("k\($0)", value(d + 1)) })
            default: return (0..<Int(rng.next() % 4)).map { _ in value(d + 1) }
            }
        }
        var agreed = 0
        for i in 0..<400 {
            let o = Dictionary(uniqueKeysWithValues: (0..<Int(rng.next() % 4)).map { ("key\($0)", value(0)) })
            var bytes = Array(try JSONSerialization.data(withJSONObject: o, options: i % 2 == 0 ? [.prettyPrinted] : []))
            XCTAssertEqual(accepts(String(decoding: bytes, as: UTF8.self)).complete, true, String(decoding: bytes, as: UTF8.self))
            let at = Int(rng.next() % UInt64(bytes.count))
            let pool = Array("{}[],:\"\\0 e-.tnx".utf8)
            bytes[at] = pool[Int(rng.next() % UInt64(pool.count))]
            // A byte changed inside a multi-byte character: invalid UTF-8, which the recognizer leaves
            // to the decoder (tokens may split characters) and JSONSerialization refuses.
            guard let text = String(validating: bytes, as: UTF8.self) else { continue }
            // A huge exponent is JSON (RFC 8259 sets no range) that Foundation refuses as out of range.
            if text.range(of: #"[eE][+-]?[0-9]{4,}"#, options: .regularExpression) != nil { continue }
            let parsed = (try? JSONSerialization.jsonObject(with: Data(bytes))) is [String: Any]
            if accepts(text).complete == parsed { agreed += 1 } else if accepts(text).complete {
                XCTFail("the recognizer accepts \(text), which JSONSerialization refuses")
            } else {
                // Foundation's parser is lenient where RFC 8259 is not: a trailing comma.
                XCTAssertNotNil(text.range(of: #",\s*[}\]]"#, options: .regularExpression), "JSONSerialization parses \(text) but the recognizer refuses it")
            }
        }
        XCTAssertGreaterThan(agreed, 300)
    }

    /// A JSON job's text is always a JSON prefix; when it ends by itself it is one complete object.
    func testJSONJobsStayInTheGrammar() throws {
        let dir = tempDirectory(name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A vocabulary with JSON's characters: the tiny model's letters, then punctuation and digits.
        var tiny = TinyModel(seed: 91, vocab: 64)
        var toks = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + "abcdefghijklmnopqrstuvwxyzĠ".map(String.init)
        toks += ["{", "}", "[", "]", "\"", ":", ",", "-", ".", "0", "1", "2", "5", "9", "\":", "{\"", "\"}", "\",\"", "true", "null", "Ġ\"", "\\", "e+", "]}", "x\""]
        toks += (0..<(64 - toks.count)).map { "q\($0)" }
        var types = [Int32](repeating: 1, count: 64)
        types[0] = 3; types[1] = 3; types[2] = 3
        tiny.tokenizer = TokenizerMetadata(model: "gpt2", pre: "smollm", tokens: toks, tokenTypes: types, merges: [],
                                           bosID: 1, eosID: 2, unkID: 0, padID: 2, addBOS: false, addSpacePrefix: false,
                                           chatTemplate: tiny.tokenizer.chatTemplate)
        try tiny.writeWren(to: "\(dir)/m.wren", dtype: .f32)
        let m = try LlamaModel(path: "\(dir)/m.wren")
        let b = try BatchGenerator(model: m, width: 4, contextLength: 128, threads: 1)
        var jobs: [BatchJob] = []
        for i in 0..<8 {
            var o = GenerationOptions(maxTokens: 100, sampling: SamplingParameters())
            o.sampling.seed = UInt64(i)
            o.sampling.temperature = 1.5
            jobs.append(BatchJob(prompt: [5, 6], options: o, json: true))
        }
        let results = try b.generate(jobs)
        var complete = 0
        for r in results {
            XCTAssertTrue(accepts(r.text).prefix, r.text)
            if r.stopReason == .eos {
                complete += 1
                XCTAssertTrue(accepts(r.text).complete, r.text)
                XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(r.text.utf8)) as? [String: Any], r.text)
            }
        }
        XCTAssertGreaterThan(complete, 0, "no job finished its object in 100 tokens")
    }
}
