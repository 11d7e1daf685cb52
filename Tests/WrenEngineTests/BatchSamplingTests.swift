// Batched sampling of many sequences: every job's tokens are exactly those of
// generating it alone with the same options (greedy and seeded sampling), on
// float, 32-element and k-quant weights, both activation paths and every cache
// type; jobs sharing a prompt evaluate it once; more jobs than sequences run
// through freed sequences (continuous batching); the session's per-sequence
// caches stay apart.

import Foundation
import TestSupport
@testable import WrenEngine
import WrenFormat
import WrenKernels
import XCTest

final class BatchSamplingTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func model(_ tiny: TinyModel, _ dtype: DType, _ name: String) throws -> LlamaModel {
        let p = "\(dir)/\(name).wren"
        try tiny.writeWren(to: p, dtype: dtype)
        return try LlamaModel(path: p)
    }

    /// The jobs' tokens, each generated alone by a fresh one-sequence generator.
    func alone(_ m: LlamaModel, _ jobs: [BatchJob], kv: KVCacheType, activations: Activations) throws -> [GenerationResult] {
        try jobs.map { j in
            let g = try Generator(model: m, session: try InferenceSession(model: m, contextLength: 96, threads: 2, kvType: kv,
                                                                          activations: activations))
            return try g.generate(tokens: j.prompt, options: j.options)
        }
    }

    /// Eight sampled jobs (temperature 1 over the whole vocabulary, so any change in
    /// a logit's bits shows) and two greedy ones on one prompt long enough for the
    /// batched prompt path; end tokens allowed after a minimum of 5, so lengths differ.
    func jobs(prompt: [Int32], count: Int = 10) -> [BatchJob] {
        (0..<count).map { i in
            var o = GenerationOptions(maxTokens: 24, sampling: i < 2 ? .greedy : SamplingParameters(), minTokens: 5)
            o.sampling.temperature = i < 2 ? 0 : 1
            o.sampling.topK = 0; o.sampling.topP = 1; o.sampling.minP = 0
            o.sampling.seed = UInt64(100 + i)
            return BatchJob(prompt: prompt, options: o)
        }
    }

    func testBatchEqualsAloneOnEveryPath() throws {
        let prompt: [Int32] = (0..<20).map { Int32(3 + ($0 * 7) % 60) }   // ≥ 16: the prompt takes the batched path
        let cases: [(TinyModel, DType, Activations, KVCacheType)] = [
            (TinyModel(seed: 70, dim: 64, ff: 128), .f32, .f32, .f32),
            (TinyModel(seed: 71, dim: 64, ff: 128), .q8_0, .q8, .f16),
            (TinyModel(seed: 72, dim: 64, heads: 2, kvHeads: 1, ff: 128), .q4_1, .q8, .q8_0),
            (TinyModel(seed: 73, dim: 64, ff: 128), .q4_0, .f32, .f16),
            (TinyModel(seed: 74, dim: 256, ff: 256), .q4_k, .q8, .f16),
            (TinyModel(seed: 75, dim: 256, ff: 256), .q6_k, .q8, .f16),
        ]
        for (tiny, dtype, act, kv) in cases {
            let m = try model(tiny, dtype, "\(dtype)")
            let js = jobs(prompt: prompt)
            let want = try alone(m, js, kv: kv, activations: act)
            // 10 sequences at once, and 4 (the rest start as sequences free up).
            for width in [10, 4] {
                let b = try BatchGenerator(model: m, width: width, contextLength: 96, threads: 2, kvType: kv, activations: act)
                var order: [Int] = []
                let got = try b.generate(js) { i, _ in order.append(i) }
                XCTAssertEqual(Set(order), Set(0..<js.count))
                for i in js.indices {
                    XCTAssertEqual(got[i].tokens, want[i].tokens, "\(dtype) \(act) \(kv) width \(width) job \(i)")
                    XCTAssertEqual(got[i].text, want[i].text)
                    XCTAssertEqual(got[i].stopReason, want[i].stopReason)
                    XCTAssertGreaterThanOrEqual(got[i].tokens.count, 5)
                    XCTAssertFalse(got[i].tokens.prefix(5).contains { b.endTokens.contains($0) }, "an end token before the minimum")
                }
                // The prompt was evaluated once per batch; every other job copied it.
                XCTAssertEqual(got.map(\.stats.promptTokensEvaluated).reduce(0, +), prompt.count)
            }
            // The samples differ from each other (seeds are per job), the two greedy ones agree.
            XCTAssertEqual(want[0].tokens, want[1].tokens)
            XCTAssertGreaterThan(Set(want[2...].map(\.tokens)).count, 5)
        }
    }

    /// Different prompts, some sharing a prefix, more jobs than sequences: each job
    /// as alone (short prompts run on the decode kernels, whatever part of them a
    /// job found cached).
    func testContinuousBatchingOfDifferentPrompts() throws {
        let m = try model(TinyModel(seed: 76, dim: 64, ff: 128), .q8_0, "m")
        let prompts: [[Int32]] = [[5, 6, 7, 8], [5, 6, 7, 9, 10], [11, 12], [5, 6, 30, 31, 32, 33], [40], [11, 12, 13], [5, 6, 7, 8]]
        var js: [BatchJob] = []
        for (i, p) in prompts.enumerated() {
            var o = GenerationOptions(maxTokens: 6 + 3 * i, sampling: SamplingParameters())
            o.sampling.seed = UInt64(i)
            o.sampling.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]
            js.append(BatchJob(prompt: p, options: o))
        }
        let want = try alone(m, js, kv: .f16, activations: .q8)
        let b = try BatchGenerator(model: m, width: 3, contextLength: 96, threads: 2)
        let got = try b.generate(js)
        for i in js.indices {
            XCTAssertEqual(got[i].tokens, want[i].tokens, "job \(i)")
            XCTAssertEqual(got[i].tokens.count, 6 + 3 * i)
            XCTAssertEqual(got[i].stopReason, .length)
        }
        XCTAssertLessThan(got.map(\.stats.promptTokensEvaluated).reduce(0, +), prompts.map(\.count).reduce(0, +), "no prefix was reused")
        // A second call on the same generator reuses what its sequences hold and agrees.
        XCTAssertEqual(try b.generate(js).map(\.tokens), want.map(\.tokens))
    }

    func testStopsAndLimits() throws {
        let m = try model(TinyModel(seed: 77), .f32, "m")
        let b = try BatchGenerator(model: m, width: 2, contextLength: 16, threads: 1)
        var none = GenerationOptions(maxTokens: 0)
        let zero = try b.generate([BatchJob(prompt: [5, 6], options: none)])
        XCTAssertEqual(zero[0].tokens, [])
        XCTAssertEqual(zero[0].stopReason, .length)
        // The context fills: the job stops with contextFull, as alone.
        none.maxTokens = nil
        none.sampling.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]
        let full = try b.generate([BatchJob(prompt: [5, 6, 7], options: none), BatchJob(prompt: [8], options: none)])
        let g = try Generator(model: m, session: try InferenceSession(model: m, contextLength: 16, threads: 1))
        for (i, p) in [[5, 6, 7], [8]].enumerated() as EnumeratedSequence<[[Int32]]> {
            let a = try g.generate(tokens: p, options: none)
            XCTAssertEqual(full[i].tokens, a.tokens)
            XCTAssertTrue(full[i].stats.contextFull)
            XCTAssertEqual(full[i].tokens.count, 16 - p.count + 1)
        }
        // A stop string cuts the text, as alone.
        var stop = GenerationOptions(maxTokens: 30, sampling: .greedy)
        stop.sampling.logitBias = none.sampling.logitBias
        let first = try g.generate(tokens: [5], options: stop)
        let cut = String(first.text.prefix(3).suffix(1))
        stop.stop = [cut]
        let s1 = try b.generate([BatchJob(prompt: [5], options: stop)])[0]
        let s2 = try g.generate(tokens: [5], options: stop)
        XCTAssertEqual(s1.stopReason, .stop)
        XCTAssertEqual(s1.text, s2.text)
        XCTAssertEqual(s1.tokens, s2.tokens)
        // Bad jobs are refused before anything runs.
        XCTAssertThrowsError(try b.generate([BatchJob(prompt: [], options: .init())]))
        XCTAssertThrowsError(try b.generate([BatchJob(prompt: Array(repeating: 5, count: 17), options: .init())]))
        var bad = GenerationOptions()
        bad.sampling.temperature = -1
        XCTAssertThrowsError(try b.generate([BatchJob(prompt: [5], options: bad)]))
    }

    /// The session level: a sequence's cache is its own; decode refuses repeats and full sequences.
    func testSessionSequences() throws {
        let m = try model(TinyModel(seed: 78), .q8_0, "m")
        let s = try InferenceSession(model: m, contextLength: 8, threads: 1, sequences: 3)
        let one = try InferenceSession(model: m, contextLength: 8, threads: 1)
        _ = try s.evaluate([5, 6, 7], sequence: 1)
        s.copySequence(from: 1, to: 2)
        _ = try s.evaluate([9], sequence: 0)
        XCTAssertEqual(s.positions, [1, 3, 3])
        let l = try s.decode([(2, 10), (1, 11), (0, 12)])
        _ = try one.evaluate([5, 6, 7])
        XCTAssertEqual(Array(l[0..<64]), try one.evaluate([10]))
        one.truncate(to: 3)
        XCTAssertEqual(Array(l[64..<128]), try one.evaluate([11]))
        one.reset()
        _ = try one.evaluate([9])
        XCTAssertEqual(Array(l[128..<192]), try one.evaluate([12]))
        XCTAssertThrowsError(try s.decode([(0, 5), (0, 6)]))
        XCTAssertThrowsError(try s.decode([(3, 5)]))
        XCTAssertThrowsError(try s.decode([(0, 64)]))
        _ = try s.evaluate([1, 1, 1, 1, 1, 1], sequence: 0)
        XCTAssertThrowsError(try s.decode([(0, 5)])) { XCTAssertEqual($0 as? EngineError, .contextFull(context: 8)) }
        XCTAssertThrowsError(try InferenceSession(model: m, contextLength: 8, sequences: 0))
    }
}
