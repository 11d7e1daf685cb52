// Token ids against independent references (tools/make_tokenizer_fixtures.py):
// SmolLM2's byte-level BPE vs Hugging Face `tokenizers` (with SmolLM2's,
// GPT-2's, LLaMA-3's and Qwen2's pre-tokenizer regexes), Mistral's
// SentencePiece model vs `sentencepiece`; decoding round trips; streaming
// never splits a character.

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
import WrenTokenizer
import XCTest

struct TokenFixtures: Decodable {
    var strings: [String]
    var smollm2: [String: [[Int32]]]
    var mistral: Mistral
    struct Mistral: Decodable {
        var ids: [[Int32]]
        var decoded: [String]
    }

    static func load() throws -> TokenFixtures {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/token_ids.json")
        return try JSONDecoder().decode(TokenFixtures.self, from: Data(contentsOf: url))
    }
}

func fixturePath(_ name: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/" + name).path
}

/// SmolLM2's tokenizer metadata, from the real GGUF (fetched by tools/fetch-model.sh).
func smolTokenizerMetadata() throws -> TokenizerMetadata {
    let p = try requireRealModel(inDebug: true)
    let g = try GGUFFile(path: p)
    return try TokenizerMetadata(metadata: g.metadata, path: p, prefix: "tokenizer.ggml.")
}

func mistralTokenizer() throws -> Tokenizer {
    let path = fixturePath("mistral-7b-v0.1.tokenizer.model")
    let model = try SentencePieceModel(bytes: Array(try Data(contentsOf: URL(fileURLWithPath: path))), path: path)
    return try Tokenizer(TokenizerSpec(model.tokenizerMetadata()))
}

final class TokenizerTests: XCTestCase {
    func check(_ tok: Tokenizer, _ expected: [[Int32]], _ strings: [String], parseSpecial: Bool = true, label: String,
               file: StaticString = #filePath, line: UInt = #line) {
        var failures = 0
        for (s, want) in zip(strings, expected) {
            let got = tok.encode(s, addSpecial: false, parseSpecial: parseSpecial)
            if got != want {
                failures += 1
                if failures <= 5 {
                    XCTFail("\(label): \(s.debugDescription)\n got  \(got)\n want \(want)", file: file, line: line)
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(label): \(failures) of \(strings.count) strings differ", file: file, line: line)
    }

    func testSmolLM2MatchesHFTokenizers() throws {
        let fx = try TokenFixtures.load()
        var meta = try smolTokenizerMetadata()
        XCTAssertEqual(meta.pre, "smollm")
        let tok = try Tokenizer(TokenizerSpec(meta))
        check(tok, fx.smollm2["smollm"]!, fx.strings, label: "smollm")
        check(tok, fx.smollm2["smollm_no_special"]!, fx.strings, parseSpecial: false, label: "smollm --no-special")
        for (pre, name) in [("gpt2", "gpt2"), ("llama-bpe", "llama3"), ("qwen2", "qwen2")] {
            meta.pre = pre
            check(try Tokenizer(TokenizerSpec(meta)), fx.smollm2[name]!, fx.strings, label: name)
        }
    }

    func testSmolLM2DecodeRoundTrip() throws {
        let fx = try TokenFixtures.load()
        let tok = try Tokenizer(TokenizerSpec(try smolTokenizerMetadata()))
        for (s, ids) in zip(fx.strings, fx.smollm2["smollm"]!) {
            XCTAssertEqual(try tok.decode(ids), s)
        }
        XCTAssertEqual(tok.encode("<|im_start|>user"), [1, 4093])
        XCTAssertEqual(try tok.decode([1, 4093], skipSpecial: true), "user")
    }

    func testMistralMatchesSentencePiece() throws {
        let fx = try TokenFixtures.load()
        let tok = try mistralTokenizer()
        XCTAssertEqual(tok.kind, .sentencePiece)
        check(tok, fx.mistral.ids, fx.strings, parseSpecial: false, label: "mistral")
        for (ids, want) in zip(fx.mistral.ids, fx.mistral.decoded) {
            XCTAssertEqual(try tok.decode(ids), want)
        }
        // BOS by the model's flag; a control token written in text is one id when parsing specials.
        XCTAssertEqual(tok.encode("Hello world"), [1, 22557, 1526])
        XCTAssertEqual(tok.encode("<s>Hi", addSpecial: false, parseSpecial: true).first, 1)
    }

    /// decode(encode(s)) == s for random valid Unicode strings (byte-level is lossless).
    func testRandomUnicodeRoundTrip() throws {
        let tok = try Tokenizer(TokenizerSpec(try smolTokenizerMetadata()))
        var rng = SeededRNG(seed: 99)
        let pools: [ClosedRange<UInt32>] = [0x20...0x7E, 0x0A...0x0D, 0xA0...0x24F, 0x370...0x3FF, 0x400...0x4FF, 0x590...0x6FF,
                                            0x900...0x97F, 0x3040...0x30FF, 0x4E00...0x4FFF, 0xAC00...0xAFFF, 0x1F300...0x1F64F,
                                            0x1F900...0x1F9FF, 0x300...0x36F, 0x2000...0x206F, 0xE000...0xE0FF, 0x10000...0x1007F]
        for _ in 0..<300 {
            var s = String.UnicodeScalarView()
            for _ in 0..<Int(rng.next() % 40) {
                let pool = pools[Int(rng.next() % UInt64(pools.count))]
                let v = pool.lowerBound + UInt32(rng.next() % UInt64(pool.count))
                if let u = Unicode.Scalar(v) { s.append(u) }
            }
            let text = String(s)
            let ids = tok.encode(text, addSpecial: false, parseSpecial: false)
            XCTAssertEqual(try tok.decode(ids), text)
            // Streaming: each emitted piece is valid UTF-8 and the pieces add up to the text.
            var d = StreamingDecoder(tok)
            var acc = ""
            for id in ids { acc += try d.append(id) }
            acc += d.flush()
            XCTAssertEqual(acc, text)
        }
    }

    func testStreamingHoldsSplitCharacters() throws {
        let tok = try Tokenizer(TokenizerSpec(try smolTokenizerMetadata()))
        // An emoji that byte-level BPE splits over several tokens.
        let ids = tok.encode("🦩", addSpecial: false)
        XCTAssertGreaterThan(ids.count, 1, "pick a character split over tokens")
        var d = StreamingDecoder(tok)
        var outs: [String] = []
        for id in ids { outs.append(try d.append(id)) }
        XCTAssertEqual(outs.dropLast().joined(), "", "nothing before the character is complete")
        XCTAssertEqual(outs.last, "🦩")
        XCTAssertEqual(d.flush(), "")
        // SentencePiece: the dummy-prefix space is dropped at the start only.
        let m = try mistralTokenizer()
        var sd = StreamingDecoder(m)
        let text = m.encode("Hello world", addSpecial: true).map { try! sd.append($0) }.joined()
        XCTAssertEqual(text, "Hello world")
        XCTAssertThrowsError(try sd.append(40000))
    }

    /// A long text (every fixture string, 200 times) encodes and decodes back to itself; the
    /// throughput is printed for information (the benchmark is tools/bench-tokenizer).
    func testLongTextRoundTrips() throws {
        let tok = try Tokenizer(TokenizerSpec(try smolTokenizerMetadata()))
        let fx = try TokenFixtures.load()
        #if DEBUG
        let copies = 5
        #else
        let copies = 200
        #endif
        let text = String(repeating: fx.strings.joined(separator: "\n") + "\n", count: copies)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let ids = tok.encode(text, addSpecial: false)
        let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        XCTAssertEqual(try tok.decode(ids), text)
        XCTAssertGreaterThan(ids.count, text.utf8.count / 8, "a byte-level BPE gives at least one token per 8 bytes here")
        print(String(format: "tokenizer: %.2f MB in %.3f s = %.1f MB/s, %d tokens", Double(text.utf8.count) / 1e6, s, Double(text.utf8.count) / 1e6 / s, ids.count))
    }
}

/// A SentencePiece-style BPE (LLaMA-2's tokenizer.json layout) trained with HF
/// `tokenizers` (tools/make_spm_hf_fixture.py), imported from tokenizer.json.
final class HFSentencePieceTests: XCTestCase {
    struct Fixture: Decodable {
        var strings: [String]
        var ids: [[Int32]]
        var decoded: [String]
    }

    func testImportedTokenizerJSONMatchesHF() throws {
        let dir = fixturePath("spm-hf")
        let fx = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/ids.json")))
        let meta = try HFImporter.tokenizer(directory: dir, vocabSize: 0)
        XCTAssertEqual(meta.model, "llama")
        XCTAssertTrue(meta.addBOS)
        let tok = try Tokenizer(TokenizerSpec(meta))
        var bad = 0
        for (i, s) in fx.strings.enumerated() {
            let got = tok.encode(s, addSpecial: false)
            if got != fx.ids[i] {
                bad += 1
                if bad <= 3 { XCTFail("\(s.debugDescription)\n got  \(got)\n want \(fx.ids[i])") }
            }
            XCTAssertEqual(try tok.decode(fx.ids[i]), fx.decoded[i])
        }
        XCTAssertEqual(bad, 0)
        XCTAssertEqual(tok.encode("Wren runs").first, 1, "BOS from tokenizer_config.json")
    }
}
