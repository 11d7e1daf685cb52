// Speculative decoding: exact under greedy decoding (tiny models here, the real
// model in the release build), the target's distribution under sampling
// (chi-square tests over seeded runs), vocabulary checks, drafter behaviour.

import Foundation
import TestSupport
@testable import WrenEngine
import WrenFormat
import WrenKernels
import XCTest

final class SpeculativeTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func model(_ tiny: TinyModel, _ dtype: DType = .f32, _ name: String) throws -> LlamaModel {
        let p = "\(dir)/\(name).wren"
        try tiny.writeWren(to: p, dtype: dtype)
        return try LlamaModel(path: p)
    }

    func generator(_ m: LlamaModel, _ mode: ((LlamaModel) throws -> SpeculationMode)?, draftTokens: Int = 4, pMin: Double = 0) throws -> Generator {
        let g = try Generator(model: m, session: try InferenceSession(model: m, contextLength: 128, threads: 2))
        if let mode { try g.enableSpeculation(SpeculationOptions(mode: try mode(m), draftTokens: draftTokens, pMin: pMin)) }
        return g
    }

    /// Greedy: every drafter and draft length gives the plain output, token for token;
    /// the KV caches roll back correctly after rejections (a mismatched draft model
    /// is rejected often).
    func testGreedyIsExactOnTinyModels() throws {
        let target = try model(TinyModel(seed: 60, layers: 3), .q8_0, "target")
        let draftModel = try model(TinyModel(seed: 61, layers: 1), .q4_1, "draft")
        var greedy = GenerationOptions(maxTokens: 40, sampling: .greedy)
        greedy.sampling.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]   // no end tokens: run all 40
        let prompts = ["abcab", "hello world", "zzzz abc zzzz abc"]
        let plain = try generator(target, nil)
        for prompt in prompts {
            let want = try plain.generate(prompt: prompt, options: greedy).tokens
            XCTAssertEqual(want.count, 40)
            for n in [1, 3, 7] {
                let modes: [(String, (LlamaModel) throws -> SpeculationMode)] = [
                    ("draft model", { _ in .draftModel(try InferenceSession(model: draftModel, contextLength: 128)) }),
                    ("self", { _ in .selfDraft(layers: 1) }),
                    ("lookup", { _ in .lookup(ngram: 2) }),
                ]
                for (label, mode) in modes {
                    let g = try generator(target, mode, draftTokens: n)
                    let r = try g.generate(prompt: prompt, options: greedy)
                    XCTAssertEqual(r.tokens, want, "\(label), draft length \(n), prompt \(prompt)")
                    let s = try XCTUnwrap(r.stats.speculation)
                    XCTAssertLessThanOrEqual(s.accepted, s.drafted)
                    // A second call reuses the caches (prefix) and still agrees.
                    XCTAssertEqual(try g.generate(prompt: prompt, options: greedy).tokens, want, "\(label) again")
                }
            }
        }
    }

    /// Pearson's chi-square statistic of `counts` against probabilities `p`.
    func chiSquare(_ counts: [Int32: Int], _ p: [(id: Int32, p: Double)], n: Int) -> Double {
        p.reduce(0) { acc, e in
            let expected = Double(n) * e.p
            let d = Double(counts[e.id, default: 0]) - expected
            return acc + d * d / expected
        } + (counts.keys.contains { id in !p.contains { $0.id == id } } ? .infinity : 0)
    }

    /// The 0.1% critical value of chi-square with `df` degrees of freedom (Wilson–Hilferty).
    func critical(df: Double) -> Double { df * pow(1 - 2 / (9 * df) + 3.09 * (2 / (9 * df)).squareRoot(), 3) }

    /// Sampling: the token after a speculative round follows the target's
    /// distribution (Leviathan et al.'s rule), not the draft's. Token 2 of each
    /// seeded generation (the first one the rule decides) is compared with its
    /// exact marginal Σ_t1 p(t1)·p(t2 | t1) computed from the target; token 3 with
    /// plain sampling (two-sample test); 0.1% critical values. The draft's own
    /// distribution would score far above them (checked, so the test can fail).
    func testSamplingFollowsTheTargetDistribution() throws {
        let target = try model(TinyModel(seed: 70), .f32, "target")
        // The draft: the same model with q4_0 weights — close to the target but not equal, so
        // most drafts are accepted and a wrong acceptance rule would show.
        let draftModel = try model(TinyModel(seed: 70), .q4_0, "draft")
        var params = SamplingParameters()
        params.temperature = 1; params.topK = 6; params.topP = 1; params.minP = 0
        params.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]
        let prompt: [Int32] = [5, 9, 14]
        // Exact marginal of token 2 under the target.
        let s = try InferenceSession(model: target, contextLength: 32)
        let sampler = Sampler(params)
        let p1 = sampler.distribution(try s.evaluate(prompt), history: prompt[...])
        var marginal: [Int32: Double] = [:]
        for e in p1 {
            s.truncate(to: prompt.count)
            let h = prompt + [e.id]
            for f in sampler.distribution(try s.evaluate([e.id]), history: h[...]) { marginal[f.id, default: 0] += e.p * f.p }
        }
        let exact = marginal.map { (id: $0.key, p: $0.value) }
        let runs = 3000
        let spec = try generator(target, { _ in .draftModel(try InferenceSession(model: draftModel, contextLength: 32)) }, draftTokens: 3)
        let plain = try generator(target, nil)
        var second: [Int32: Int] = [:], thirdSpec: [Int32: Int] = [:], thirdPlain: [Int32: Int] = [:]
        var drafted = 0, accepted = 0
        for seed in 0..<runs {
            var opts = GenerationOptions(maxTokens: 3, sampling: params)
            opts.sampling.seed = UInt64(seed)
            let a = try spec.generate(tokens: prompt, options: opts)
            second[a.tokens[1], default: 0] += 1
            thirdSpec[a.tokens[2], default: 0] += 1
            drafted += a.stats.speculation?.drafted ?? 0
            accepted += a.stats.speculation?.accepted ?? 0
            opts.sampling.seed = UInt64(seed + 1_000_000)
            thirdPlain[try plain.generate(tokens: prompt, options: opts).tokens[2], default: 0] += 1
        }
        XCTAssertGreaterThan(accepted, 0)
        XCTAssertLessThan(accepted, drafted, "some drafts must be rejected for the test to mean anything")
        let x2 = chiSquare(second, exact, n: runs)
        XCTAssertLessThan(x2, critical(df: Double(exact.count - 1)), "token 2 vs the exact target marginal: chi-square \(x2), \(exact.count - 1) degrees of freedom")
        // Power: had token 2 followed the draft, its expected statistic would be N·Σ(q−p)²/p.
        let ds = try InferenceSession(model: draftModel, contextLength: 32)
        let q1 = sampler.distribution(try ds.evaluate(prompt), history: prompt[...])
        var qm: [Int32: Double] = [:]
        for e in q1 {
            ds.truncate(to: prompt.count)
            for f in sampler.distribution(try ds.evaluate([e.id]), history: (prompt + [e.id])[...]) { qm[f.id, default: 0] += e.p * f.p }
        }
        let power = exact.reduce(0.0) { $0 + Double(runs) * pow(qm[$1.id, default: 0] - $1.p, 2) / $1.p }
        XCTAssertGreaterThan(power, 3 * critical(df: Double(exact.count - 1)), "draft and target distributions too alike for the test to detect a wrong rule")
        // Token 3: two-sample chi-square, speculative vs plain sampling.
        let ids = Set(thirdSpec.keys).union(thirdPlain.keys)
        var x2b = 0.0
        for id in ids {
            let a = Double(thirdSpec[id, default: 0]), b = Double(thirdPlain[id, default: 0])
            x2b += (a - b) * (a - b) / (a + b)
        }
        let df = Double(ids.count - 1), crit = critical(df: df)
        XCTAssertLessThan(x2b, crit, "token 3, speculative vs plain: chi-square \(x2b) with \(df) degrees of freedom")
    }

    func testVocabularyMismatchAndBadOptionsAreRefused() throws {
        let target = try model(TinyModel(seed: 1), .f32, "a")
        let other = try model(TinyModel(seed: 2, vocab: 60), .f32, "b")
        let g = try generator(target, nil)
        XCTAssertThrowsError(try g.enableSpeculation(.init(mode: .draftModel(try InferenceSession(model: other, contextLength: 32))))) {
            XCTAssertTrue("\($0)".contains("vocabulary"), "\($0)")
        }
        XCTAssertThrowsError(try g.enableSpeculation(.init(mode: .selfDraft(layers: 2)))) { XCTAssertTrue("\($0)".contains("draftLayers must be in 1...1"), "\($0)") }
        XCTAssertThrowsError(try g.enableSpeculation(.init(mode: .lookup(ngram: 0))))
        XCTAssertThrowsError(try g.enableSpeculation(.init(mode: .lookup(ngram: 2), draftTokens: 0)))
    }

    func testLookupDrafterProposesTheLatestContinuation() throws {
        let d = LookupDrafter(ngram: 3)
        var s = Sampler(.greedy)
        let h: [Int32] = [1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 4, 1, 2, 3]
        XCTAssertEqual(try d.propose(after: h, limit: 3, sampler: &s).map(\.token), [7, 8, 4])
        // A match must be 2 tokens long (a 1-gram match only when asked for with ngram 1).
        XCTAssertEqual(try d.propose(after: [5, 6, 5], limit: 4, sampler: &s).count, 0)
        XCTAssertEqual(try d.propose(after: [5, 6, 7, 5, 6], limit: 4, sampler: &s).map(\.token), [7, 5, 6])
        XCTAssertEqual(try LookupDrafter(ngram: 1).propose(after: [5, 6, 5], limit: 4, sampler: &s).map(\.token), [6, 5])
        XCTAssertEqual(try d.propose(after: [1, 2, 3], limit: 4, sampler: &s).count, 0)
    }

    /// Lookup drafts only what pays: after a round that kept nothing it pauses for
    /// 2, then 4 … plain steps and drafts 2 tokens; a fully accepted round doubles the length.
    func testLookupDrafterBacksOffAfterMisses() throws {
        let d = LookupDrafter(ngram: 2, length: 4)
        var s = Sampler(.greedy)
        let h: [Int32] = Array(repeating: [1, 2, 3, 4, 5, 6, 7, 8, 9], count: 3).flatMap { $0 } + [1, 2]
        XCTAssertEqual(try d.propose(after: h, limit: 16, sampler: &s).count, 4)
        d.observe(drafted: 4, accepted: 4)
        XCTAssertEqual(try d.propose(after: h, limit: 16, sampler: &s).count, 8)
        d.observe(drafted: 8, accepted: 0)
        XCTAssertEqual(try d.propose(after: h, limit: 16, sampler: &s).count, 0)   // paused: 2 plain steps
        XCTAssertEqual(try d.propose(after: h, limit: 16, sampler: &s).count, 0)
        XCTAssertEqual(try d.propose(after: h, limit: 16, sampler: &s).count, 2)
        d.observe(drafted: 2, accepted: 0)
        for _ in 0..<4 { XCTAssertEqual(try d.propose(after: h, limit: 16, sampler: &s).count, 0) }   // then 4
        XCTAssertEqual(try d.propose(after: h, limit: 16, sampler: &s).count, 2)
        d.observe(drafted: 2, accepted: 1)
        XCTAssertEqual(try d.propose(after: h, limit: 16, sampler: &s).count, 2)
        d.observe(drafted: 2, accepted: 2)
        XCTAssertEqual(try d.propose(after: h, limit: 3, sampler: &s).count, 3)   // 4, capped by the limit
    }
}
