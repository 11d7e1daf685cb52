// The Jinja sandbox (JinjaLimits): hostile chat templates — they live inside model
// files — must end in a JinjaError naming the line, never a crash, hang or memory
// blow-up. Each case below crashed, hung or trapped before the sandbox existed.

import Foundation
import WrenTokenizer
import XCTest

final class JinjaSandboxTests: XCTestCase {
    let msgs = [ChatMessage(role: "user", content: "hi")]

    /// Renders `src` and returns the error it must raise (fails if it renders).
    func refusal(_ src: String, limits: JinjaLimits = JinjaLimits(), file: StaticString = #filePath, line: UInt = #line) -> JinjaError? {
        let start = Date()
        defer {
            let t = Date().timeIntervalSince(start)
            XCTAssertLessThan(t, 10, "took too long: \(src.prefix(60))", file: file, line: line)
            if t > 0.5 { print("slow sandbox case (\(t) s): \(src.prefix(70))") }
        }
        do {
            let t = try ChatTemplate(src, limits: limits)
            let out = try t.render(msgs)
            XCTFail("rendered \(out.utf8.count) bytes instead of refusing: \(src.prefix(80))", file: file, line: line)
            return nil
        } catch let e as JinjaError {
            return e
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
            return nil
        }
    }

    func assertLimit(_ src: String, _ fragment: String, limits: JinjaLimits = JinjaLimits(), file: StaticString = #filePath, line: UInt = #line) {
        guard let e = refusal(src, limits: limits, file: file, line: line) else { return }
        XCTAssert(e.description.contains(fragment), "\(src.prefix(60)): \(e)", file: file, line: line)
        XCTAssert(e.description.hasPrefix("chat template line "), "no line in: \(e)", file: file, line: line)
    }

    func testRecursionAndNesting() {
        assertLimit("{% macro f(n) %}{{ f(n+1) }}{% endmacro %}{{ f(0) }}", "nested more than")
        assertLimit("{{ " + String(repeating: "(", count: 50_000) + "1" + String(repeating: ")", count: 50_000) + " }}", "nested more than")
        assertLimit("{{ " + String(repeating: "[", count: 50_000) + String(repeating: "]", count: 50_000) + " }}", "nested more than")
        assertLimit("{{ " + String(repeating: "not ", count: 50_000) + "1 }}", "nested more than")
        assertLimit("{{ " + String(repeating: "- ", count: 50_000) + "1 }}", "nested more than")
        assertLimit(String(repeating: "{% if true %}", count: 5_000) + String(repeating: "{% endif %}", count: 5_000), "nested more than")
        // A loop-built chain is a tree as deep as it is long.
        assertLimit("{{ 1" + String(repeating: " + 1", count: 50_000) + " }}", "operators in one tag")
        assertLimit("{{ x" + String(repeating: "[0]", count: 50_000) + " }}", "operators in one tag")
        // Values nested by a loop, and a namespace that contains itself.
        assertLimit("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}", "nested more than")
        assertLimit("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns | tojson }}", "nested more than")
    }

    func testCheckedArithmetic() {
        for src in ["{{ 9223372036854775807 + 1 }}", "{{ 2 ** 64 }}", "{{ 10 ** 30 }}", "{{ -9223372036854775807 - 2 }}",
                    "{{ (-9223372036854775807 - 1) // -1 }}", "{{ 3037000500 * 3037000500 }}", "{{ (-9223372036854775807 - 1) | abs }}",
                    "{{ -(-9223372036854775807 - 1) }}", "{{ (10.0 ** 300) | int }}"] {
            guard let e = refusal(src) else { continue }
            XCTAssert(e.description.hasPrefix("chat template line 1: ") && (e.description.contains("overflow") || e.description.contains("fit")), "\(src): \(e)")
        }
        guard let e = refusal("{{ 99999999999999999999 }}") else { return }
        XCTAssert(e.description.contains("does not fit in 64 bits"), "\(e)")
    }

    /// Jinja's int filter falls back to its default for nan/inf/garbage, as Python's does.
    func testConversionsFollowJinja() throws {
        let cases: [(String, String)] = [
            ("{{ 'nan' | int }}", "0"), ("{{ 'inf' | int }}", "0"), ("{{ 'x' | int }}", "0"), ("{{ '12' | int }}", "12"),
            ("{{ ' 7 ' | int }}", "7"), ("{{ '2.9' | int }}", "2"), ("{{ 'nan' | int(5) }}", "5"), ("{{ 7 // -2 }}", "-4"),
            ("{{ -7 % 3 }}", "2"), ("{{ 7 % -3 }}", "-2"), ("{{ 2 ** 62 }}", "4611686018427387904"), ("{{ 2 ** -1 }}", "0.5"),
            ("{{ (-9223372036854775807 - 1) % -1 }}", "0"), ("{{ 'ab' * 3 }}", "ababab"), ("{{ 2 * 'ab' }}", "abab"),
            ("{{ 'x' * -5 }}", ""), ("{{ 'a\nb' | indent(-3, true) }}", "a\nb"), ("{{ [1, [2]] | tojson(indent=-1) }}", "[\n1,\n[\n2\n]\n]"),
            ("{{ true + 1 }}", "2"), ("{{ range(5, 0, -2) | list }}", "[5, 3, 1]"), ("{{ range(-9223372036854775807 - 1, 9223372036854775807, 4611686018427387904) | list | length }}", "4"),
        ]
        for (src, want) in cases {
            XCTAssertEqual(try ChatTemplate(src).render(msgs), want, src)
        }
    }

    func testSizeAndTimeLimits() {
        assertLimit("{{ 'a' * 10**12 }}", "repeated")
        assertLimit("{{ 'a' * 1000 | indent(10**12) }}", "repeated")
        assertLimit("{{ ('x\n' * 1000000) | indent(100) }}", "bytes")
        assertLimit("{% for i in range(10**12) %}{% endfor %}", "range of")
        assertLimit("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}", "loop iterations")
        assertLimit("{% set s = namespace(v='a') %}{% for i in range(100) %}{% set s.v = s.v ~ s.v %}{% endfor %}", "refused by the sandbox")
        assertLimit("{% set s = 'a' * 1000000 %}{% for i in range(1000000) %}{{ s }}{% endfor %}", "output over")
        assertLimit("{% set s = 'a' * 1000000 %}{% for i in range(1000000) %}{% if 'b' in s %}{% endif %}{% endfor %}", "units of work")
        assertLimit("{% set ns = namespace(l=[]) %}{% for i in range(1000000) %}{% set ns.l = ns.l + [i] %}{% endfor %}", "units of work")
        assertLimit("{{ ('a' * 4000000).replace('a', 'aaaaaaaa') }}", "bytes")
        assertLimit("{{ (range(1000000) | map('string') | join(',')) * 100 }}", "repeated")
        // Limits are settings: a tighter sandbox refuses a small template.
        var tight = JinjaLimits()
        tight.maxStringBytes = 20
        assertLimit("{{ 'ab' * 11 }}", "repeated", limits: tight)
    }

    /// The sandbox leaves real templates alone: a ChatML conversation of 2,000 turns renders.
    func testRealTemplatesStillRender() throws {
        let t = try XCTUnwrap(try ChatTemplate.named("chatml"))
        let long = (0..<2_000).map { ChatMessage(role: $0 % 2 == 0 ? "user" : "assistant", content: String(repeating: "word ", count: 200)) }
        let out = try t.render(long)
        XCTAssertEqual(out.components(separatedBy: "<|im_start|>").count - 1, 2_001)
    }
}
