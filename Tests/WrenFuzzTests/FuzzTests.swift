// The fuzz targets: every parsing entry point that reads bytes a stranger may
// have written — .wren, deltas, GGUF, safetensors, PEFT adapters, tokenizer.json,
// LMFlow datasets, JSON generation requests and chat templates. See
// FuzzDriver.swift for the method; docs/reliability.md for the table.

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
import WrenKernels
import WrenTokenizer
import WrenTuning
@testable import WrenServer
import XCTest

final class FuzzTests: XCTestCase {
    nonisolated(unsafe) static let dir: String = {
        let d = tempDirectory("WrenFuzz")
        print("fuzz: inputs are written under \(d); after a crash the last one there is the reproducer")
        return d
    }()
    var dir: String { Self.dir }

    func write(_ b: [UInt8], _ name: String) -> String {
        let p = dir + "/" + name
        FileManager.default.createFile(atPath: p, contents: Data(b))
        return p
    }

    /// FormatError (naming the file), EngineError, TokenizerError, DatasetError, JinjaError:
    /// the typed, one-line errors the CLI prints.
    static func isWrenError(_ e: Error, path: String? = nil) -> Bool {
        switch e {
        case let f as FormatError: return path.map { f.description.contains($0) } ?? true
        case is EngineError, is TokenizerError, is DatasetError, is JinjaError, is GenerationRequest.Failure: return !"\(e)".isEmpty
        default: return false
        }
    }

    nonisolated(unsafe) static var cachedModel: LlamaModel?

    /// The tiny base model the adapter, dataset and request targets run against (built once).
    static func tinyModel() throws -> LlamaModel {
        if let m = cachedModel { return m }
        let p = dir + "/base.wren"
        try TinyModel(seed: 3).writeWren(to: p, dtype: .q8_0)
        let m = try LlamaModel(path: p)
        cachedModel = m
        return m
    }

    func testFuzzWren() throws {
        var seeds: [[UInt8]] = []
        for (i, (dt, compress)) in [(DType.q8_0, false), (.q4_1, false), (.f32, true)].enumerated() {
            let g = dir + "/seed\(i).gguf", w = dir + "/seed\(i).wren"
            TinyModel(seed: 4).writeGGUF(to: g, dtype: dt)
            _ = try ModelConverter.convert(try ModelSource.open(g), to: w, options: .init(compress: compress))
            seeds.append(Array(try Data(contentsOf: URL(fileURLWithPath: w))))
        }
        let head = seeds.map { b in b.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 64, as: UInt64.self))) } }.min()!
        _ = Fuzz.run("wren", seeds: seeds, headBias: head, mustRefuseTruncation: true, exec: { b in
            let p = self.write(b, "input.wren")
            let m = try LlamaModel(path: p)
            try m.file.verify()
        }, isExpected: { Self.isWrenError($0, path: self.dir + "/input.wren") })
    }

    func testFuzzDelta() throws {
        // Seeds: an exact delta (xor and same) and a q8 delta between a tiny model and a tuned copy.
        let base = dir + "/delta-base.wren", tuned = dir + "/delta-tuned.wren"
        let model = TinyModel(seed: 5)
        var t = model
        var rng = SeededRNG(seed: 8)
        for i in t.weights.indices where t.weights[i].name.hasPrefix("blk.0.") { t.weights[i].values = t.weights[i].values.map { $0 + rng.normal() * 0.01 } }
        try model.writeWren(to: base, dtype: .f32)
        try t.writeWren(to: tuned, dtype: .f32)
        var seeds: [[UInt8]] = []
        for kind in DeltaKind.allCases {
            let d = dir + "/delta-seed-\(kind).wdelta"
            _ = try Delta.make(base: base, tuned: tuned, to: d, kind: kind, overwrite: true)
            seeds.append(Array(try Data(contentsOf: URL(fileURLWithPath: d))))
        }
        let stored = try StoredModel.open(base)
        let head = seeds.map { b in b.withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 64, as: UInt64.self))) } }.min()!
        _ = Fuzz.run("delta", seeds: seeds, headBias: head, mustRefuseTruncation: true, exec: { b in
            let d = try DeltaFile(path: self.write(b, "input.wdelta"))
            try d.file.verify()
            for (i, r) in d.target.enumerated() {
                var out = [UInt8](repeating: 0, count: r.dtype.byteCount(elements: r.shape.reduce(1, *))!)
                try out.withUnsafeMutableBytes { try d.reconstruct(i, base: stored, into: $0) }
            }
        }, isExpected: { Self.isWrenError($0, path: self.dir + "/input.wdelta") })
    }

    func testFuzzGGUF() throws {
        let seeds = [DType.q8_0, .q4_1, .f32].map { TinyModel(seed: 4).ggufBytes(dtype: $0) }
        let head = try GGUFFile(path: write(seeds[0], "head.gguf")).dataOffset
        _ = Fuzz.run("gguf", seeds: seeds, headBias: head, mustRefuseTruncation: true, exec: { b in
            let p = self.write(b, "input.gguf")
            let s = try ModelSource.open(p)
            for t in s.tensors { _ = XXH64.hash(UnsafeRawBufferPointer(t.data)) }
        }, isExpected: { Self.isWrenError($0, path: self.dir + "/input.gguf") })
    }

    func safetensorsSeeds() throws -> [[UInt8]] {
        let hf = dir + "/hf"
        try TinyModel(seed: 4).writeHF(to: hf, dtype: .bf16)
        let small = SafetensorsWriter.encode([
            .init(name: "a", dtype: "F32", shape: [2, 3], bytes: [Float](repeating: 1.5, count: 6).withUnsafeBytes { Array($0) }),
            .init(name: "b", dtype: "F16", shape: [4], bytes: [UInt8](repeating: 0x3c, count: 8)),
        ], metadata: ["format": "pt"])
        return [small, Array(try Data(contentsOf: URL(fileURLWithPath: hf + "/model.safetensors")))]
    }

    func testFuzzSafetensors() throws {
        let seeds = try safetensorsSeeds()
        _ = Fuzz.run("safetensors", seeds: seeds, dictionary: ["\"dtype\"", "\"shape\"", "\"data_offsets\"", "[0,0]", "1e999", "-1", "4611686018427387904", "2.5", "{", "}", "\"__metadata__\""],
                     headBias: 400, mustRefuseTruncation: true, exec: { b in
            let st = try SafetensorsFile(path: self.write(b, "input.safetensors"))
            for t in st.tensors where t.wrenDType != nil { _ = try PEFTAdapter.floats(st, t) }
        }, isExpected: { Self.isWrenError($0, path: self.dir + "/input.safetensors") })
    }

    func testFuzzPEFTAdapter() throws {
        let d = dir + "/adapter"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let model = try Self.tinyModel()
        var factors: [Int: [String: PEFTFactor]] = [:]
        var rng = SeededRNG(seed: 9)
        for l in 0..<2 {
            for (mod, p) in [("q_proj", Projection.q), ("k_proj", .k), ("down_proj", .down)] {
                let w = p.matrix(model.layers[l])
                factors[l, default: [:]][mod] = PEFTFactor(a: (0..<(2 * w.cols)).map { _ in rng.float() }, b: (0..<(w.rows * 2)).map { _ in rng.float() },
                                                           rank: 2, inFeatures: w.cols, outFeatures: w.rows)
            }
        }
        try PEFTAdapter(config: PEFTConfig(rank: 2, alpha: 4, dropout: 0, targetModules: ["q_proj", "k_proj", "down_proj"]), factors: factors).save(to: d)
        let config = Array(try Data(contentsOf: URL(fileURLWithPath: d + "/adapter_config.json")))
        let weights = Array(try Data(contentsOf: URL(fileURLWithPath: d + "/adapter_model.safetensors")))
        // Seeds: the two files tagged by a first byte saying which one the mutation goes to.
        let seeds = [[0] + config, [1] + weights]
        _ = Fuzz.run("peft", seeds: seeds, dictionary: ["\"r\"", "\"lora_alpha\"", "\"target_modules\"", "\"use_dora\"", "1e999", "-1", "0", "null", "[]", "\".*\"", "\"all-linear\"", "\"layers\"", "lora_A", "lora_B", "99"],
                     headBias: 300, mustRefuseTruncation: true, exec: { b in
            guard let which = b.first else { throw FormatError.invalid(path: d, field: "fuzz", reason: "empty input") }
            let body = Array(b.dropFirst())
            _ = FileManager.default.createFile(atPath: d + "/adapter_config.json", contents: Data(which == 0 ? body : config))
            _ = FileManager.default.createFile(atPath: d + "/adapter_model.safetensors", contents: Data(which == 0 ? weights : body))
            let a = try PEFTAdapter.load(d)
            _ = try model.deltas(from: a, source: d)
        }, isExpected: { Self.isWrenError($0, path: d) })
    }

    func testFuzzTokenizerJSON() throws {
        let d = dir + "/tok"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let spm = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("WrenTokenizerTests/Fixtures/spm-hf/tokenizer.json")
        let seeds = [Array(try TinyModel(seed: 4).tokenizerJSON()), Array(try Data(contentsOf: spm))]
        _ = Fuzz.run("tokenizer", seeds: seeds, dictionary: ["\"merges\"", "\"vocab\"", "\"added_tokens\"", "\"id\"", "\"type\"", "\"BPE\"", "\"ByteLevel\"", "\"Metaspace\"", "-1", "1e999", "2.5", "4294967296", "null", "\"\\u0000\"", "\"<0xFF>\""],
                     headBias: 2000, mustRefuseTruncation: true, exec: { b in
            _ = FileManager.default.createFile(atPath: d + "/tokenizer.json", contents: Data(b))
            let meta = try HFImporter.tokenizer(directory: d, vocabSize: 0)
            let tok = try Tokenizer(TokenizerSpec(meta))
            let ids = tok.encode("Hello, wörld! 123 <|im_end|> \u{1F600}", addSpecial: true)
            _ = try tok.decode(ids)
        }, isExpected: { Self.isWrenError($0, path: d) })
    }

    func testFuzzDataset() throws {
        let model = try Self.tinyModel()
        func json(_ o: Any) throws -> [UInt8] { Array(try JSONSerialization.data(withJSONObject: o)) }
        let seeds: [[UInt8]] = [
            [0] + (try json(["type": "text_only", "instances": [["text": "ab cd ef"], ["text": "gh ij"]]])),
            [0] + (try json(["type": "text2text", "instances": [["input": "ab =", "output": " cd"], ["input": "ef =", "output": " gh"]]])),
            [0] + (try json(["type": "conversation", "instances": [["system": "be brief", "messages": [["role": "user", "content": "ab"], ["role": "assistant", "content": "cd"]]]]])),
            [1] + Array("{\"input\": \"ab\", \"output\": \"cd\"}\n{\"input\": \"ef\", \"output\": \"gh\"}\n".utf8),
        ]
        let chat = try ChatFormatter(model: model, name: "chatml")
        _ = Fuzz.run("dataset", seeds: seeds, dictionary: ["\"type\"", "\"instances\"", "\"messages\"", "\"role\"", "\"content\"", "\"assistant\"", "null", "[]", "{}", "1e999", "\"\\ud800\"", "\n"],
                     headBias: 60, mustRefuseTruncation: false, exec: { b in
            guard let kind = b.first else { throw DatasetError(self.dir, "empty input") }
            let p = self.write(Array(b.dropFirst()), kind == 0 ? "input.json" : "input.jsonl")
            let raw = try RawDataset.load(p)
            _ = try DatasetTokenizer.tokenize(raw, model: model, chat: chat)
        }, isExpected: { Self.isWrenError($0) })
    }

    func testFuzzGenerationRequests() throws {
        let vocab = try Self.tinyModel().config.vocabSize
        let seeds = [
            #"{"prompt":"Hello","n_predict":8,"temperature":0.7,"top_k":40,"top_p":0.9,"seed":3,"stop":["\n"]}"#,
            #"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}],"min_p":0.05,"repeat_penalty":1.1}"#,
            #"{"prompt":"x","frequency_penalty":0.5,"presence_penalty":0.2,"stop":"END"}"#,
        ].map { Array($0.utf8) }
        _ = Fuzz.run("request", seeds: seeds, dictionary: ["\"n_predict\"", "\"temperature\"", "\"top_k\"", "\"seed\"", "\"messages\"", "-1", "1e999", "2.5", "true", "null", "9223372036854775807", "18446744073709551616", "\"\\ud800\""],
                     mustRefuseTruncation: true, exec: { b in
            guard let line = String(validating: b, as: UTF8.self) else { throw GenerationRequest.Failure(message: "invalid UTF-8") }
            let r = try GenerationRequest.parse(line, defaults: GenerationOptions())
            try r.options.sampling.validate(vocabSize: vocab)
        }, isExpected: { Self.isWrenError($0) })
    }

    /// The server's OpenAI bodies (chat and completions): every mutation is accepted or
    /// refused with an APIError naming what is wrong; never a trap.
    func testFuzzOpenAIRequests() throws {
        let vocab = try Self.tinyModel().config.vocabSize
        let seeds = [
            #"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"temperature":0.7,"top_p":0.9,"max_tokens":8,"stop":["\n"],"seed":3,"n":2,"stream":true,"stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":2}"#,
            #"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null},{"role":"user","content":"x"}],"max_completion_tokens":4,"logit_bias":{"5":-100,"6":2.5},"frequency_penalty":0.5,"response_format":{"type":"text"}}"#,
            #"{"model":"m","prompt":"Hello","max_tokens":16,"echo":true,"logprobs":2,"temperature":0,"best_of":1,"user":"u"}"#,
            #"{"prompt":[[1,2,3],[4,5]],"n":1,"top_k":40,"min_p":0.05,"repeat_penalty":1.1,"presence_penalty":-1}"#,
            #"{"prompt":["a","b"],"stop":"END","suffix":""}"#,
        ].map { Array($0.utf8) }
        _ = Fuzz.run("openai", seeds: seeds, dictionary: ["\"messages\"", "\"prompt\"", "\"logit_bias\"", "\"n\"", "null", "-1", "1e999", "2.5", "true",
                                                        "[]", "{}", "9223372036854775807", "18446744073709551616", "\"\\ud800\"", "[[", "\"role\""],
                     mustRefuseTruncation: true, exec: { b in
            let o = try JSONObject(body: Data(b))
            if o.fields["messages"] != nil { _ = try OpenAIRequest.chat(o, vocabSize: vocab) } else { _ = try OpenAIRequest.completions(o, vocabSize: vocab) }
        }, isExpected: { $0 is APIError })
    }

    func testFuzzChatTemplates() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("WrenTokenizerTests/Fixtures/chat")
        var seeds = try FileManager.default.contentsOfDirectory(atPath: fixtures.path).filter { $0.hasSuffix(".jinja") }.sorted()
            .map { Array(try Data(contentsOf: fixtures.appendingPathComponent($0))) }
        seeds += ChatTemplate.fallbacks.keys.sorted().map { Array(ChatTemplate.fallbacks[$0]!.utf8) }
        // Alternating user/assistant turns without a system message: every real template accepts that.
        let msgs = [ChatMessage(role: "user", content: "Hi {{ there }}"), ChatMessage(role: "assistant", content: "Hello."),
                    ChatMessage(role: "user", content: "Bye")]
        _ = Fuzz.run("template", seeds: seeds, dictionary: ["{{", "}}", "{%", "%}", "{% for x in range(10**9) %}", "{% endfor %}", "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(0) }}",
                                                            "9223372036854775807", " ** 64", " * 10**12", "(((((", "]]]]", "|int", "|indent(10**9)", "|tojson", "loop.", "namespace(",
                                                            "'nan'", "messages", "raise_exception('x')", "-", "~", "[::-1]", "{#", "#}", "{%- ", " -%}", "\\u"],
                     mustRefuseTruncation: false, exec: { b in
            guard let src = String(validating: b, as: UTF8.self) else { throw JinjaError.syntax(line: 0, message: "invalid UTF-8") }
            let t = try ChatTemplate(src)
            _ = try t.render(msgs, bosToken: "<s>", eosToken: "</s>")
        }, isExpected: { Self.isWrenError($0) })
    }
}
