// Chat templates rendered by Wren's Jinja subset against Hugging Face
// transformers' renderer (tools/make_chat_fixtures.py) for nine real templates,
// with and without a system message, with and without the generation prompt.

import Foundation
import WrenTokenizer
import XCTest

final class ChatTemplateTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            var template: String
            var conversation: String
            var add_generation_prompt: Bool
            var bos_token: String
            var eos_token: String
            var output: String?
            var error: String?
            var tools: AnyJSON?
        }
        var conversations: [String: [[String: String]]]
        var cases: [Case]
    }

    /// Minimal JSON value decoding for the tools field (order preserved via key-sorted output only matters for dicts).
    struct AnyJSON: Decodable {
        var value: Any
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { value = NSNull(); return }
            if let b = try? c.decode(Bool.self) { value = b; return }
            if let i = try? c.decode(Int.self) { value = i; return }
            if let d = try? c.decode(Double.self) { value = d; return }
            if let s = try? c.decode(String.self) { value = s; return }
            if let a = try? c.decode([AnyJSON].self) { value = a.map(\.value); return }
            let d = try c.decode([String: AnyJSON].self)
            value = d.mapValues(\.value)
        }
    }

    func testRendersLikeTransformers() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/chat")
        let fx = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: dir.appendingPathComponent("expected.json")))
        var templates: [String: ChatTemplate] = [:]
        var checked = 0
        for c in fx.cases {
            if c.tools != nil, !(c.tools!.value is NSNull) { continue }   // tool dicts need key order; see testToolsRender
            let t = try templates[c.template] ?? ChatTemplate(String(contentsOf: dir.appendingPathComponent(c.template + ".jinja"), encoding: .utf8))
            templates[c.template] = t
            let msgs = fx.conversations[c.conversation]!.map { ChatMessage(role: $0["role"]!, content: $0["content"]!) }
            do {
                let got = try t.render(msgs, addGenerationPrompt: c.add_generation_prompt, bosToken: c.bos_token, eosToken: c.eos_token)
                XCTAssertEqual(got, c.output, "\(c.template) \(c.conversation) agp=\(c.add_generation_prompt)")
                XCTAssertNil(c.error, "\(c.template): transformers raised \(c.error ?? "")")
            } catch JinjaError.raised(let m) {
                XCTAssertEqual(m, c.error, "\(c.template) \(c.conversation)")
            }
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 54)
    }

    func testJinjaFeatures() throws {
        func r(_ s: String, _ msgs: [ChatMessage] = []) throws -> String { try ChatTemplate(s).render(msgs, addGenerationPrompt: false) }
        XCTAssertEqual(try r("{% set ns = namespace(n=0) %}{% for x in [1,2,3] %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}"), "6")
        XCTAssertEqual(try r("{% for x in 'abc' %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}"), "1a,2b,3c")
        XCTAssertEqual(try r("{{ [1, 2, 3][1:] }} {{ 'hello'[::-1] }} {{ 'a,b'.split(',') | join('+') }}"), "[2, 3] olleh a+b")
        XCTAssertEqual(try r("{{ x is defined }} {{ none is none }} {{ 'x' is string }} {{ 3 is odd }}"), "False True True True")
        XCTAssertEqual(try r("{{ '  hi  ' | trim | upper }}|{{ undefined_thing | default('d') }}|{{ [3, 1] | length }}"), "HI|d|2")
        XCTAssertEqual(try r("{{ {'a': [1, 'x'], 'b': none} | tojson }}"), "{\"a\": [1, \"x\"], \"b\": null}")
        XCTAssertEqual(try r("{% macro greet(name, p='!') %}Hi {{ name }}{{ p }}{% endmacro %}{{ greet('Bo') }}"), "Hi Bo!")
        XCTAssertEqual(try r("{{ 'yes' if 1 < 2 else 'no' }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 'a' ~ 1 }}"), "yes 3 1 a1")
        XCTAssertEqual(try r("{%- for x in [1,2] -%}\n  {{ x }}\n{%- endfor %}"), "12")
        XCTAssertEqual(try r("{% for m in messages %}{{ m.role }}:{{ m['content'] }};{% endfor %}", [ChatMessage(role: "user", content: "hi")]), "user:hi;")
        XCTAssertThrowsError(try r("{{ raise_exception('nope') }}")) { XCTAssertEqual($0 as? JinjaError, .raised("nope")) }
        XCTAssertThrowsError(try ChatTemplate("line one\n{% include 'x' %}")) { e in
            XCTAssertEqual("\(e)", "chat template line 2: unsupported construct: {% include %}")
        }
        XCTAssertThrowsError(try ChatTemplate("{% if x %}oops")) { e in XCTAssertTrue("\(e)".contains("if without endif"), "\(e)") }
        XCTAssertThrowsError(try r("{{ x | frobnicate }}")) { e in XCTAssertTrue("\(e)".contains("filter \"frobnicate\""), "\(e)") }
    }

    func testFallbacks() throws {
        let msgs = [ChatMessage(role: "system", content: "S"), ChatMessage(role: "user", content: "U"), ChatMessage(role: "assistant", content: "A"), ChatMessage(role: "user", content: "V")]
        XCTAssertEqual(try ChatTemplate.named("robin")!.render(msgs), "S###Human: U###Assistant: A###Human: V###Assistant:")
        XCTAssertEqual(try ChatTemplate.named("chatml")!.render([msgs[1]]), "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
        for name in ChatTemplate.fallbacks.keys { XCTAssertFalse(try ChatTemplate.named(name)!.render(msgs).isEmpty, name) }
        XCTAssertNil(try ChatTemplate.named("nonesuch"))
        // Gemma: the system message opens the first user turn (Gemma 3's convention).
        let gemma = try ChatTemplate.named("gemma")!
        XCTAssertEqual(try gemma.render(msgs, addGenerationPrompt: true, bosToken: "<bos>", eosToken: "<eos>"),
                       "<bos><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n"
                       + "<start_of_turn>user\nV<end_of_turn>\n<start_of_turn>model\n")
        XCTAssertEqual(try gemma.render(Array(msgs[1...2]), addGenerationPrompt: false, bosToken: "<bos>", eosToken: "<eos>"),
                       "<bos><start_of_turn>user\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n")
    }
}
