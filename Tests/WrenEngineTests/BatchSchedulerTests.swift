// The stepwise scheduler under the server: with aligned prefix reuse every job
// is exact whatever it found cached and whenever it arrived; streamed pieces
// add up to the result's text under stop strings; cancellation frees slots
// (and a cancelled leader's followers carry on); a long prompt is read in
// chunks while other jobs keep decoding; log-probabilities match the logits.

import CWrenKernels
import Foundation
import TestSupport
@testable import WrenEngine
import WrenFormat
import WrenKernels
import XCTest

final class BatchSchedulerTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func model(_ tiny: TinyModel, _ dtype: DType) throws -> LlamaModel {
        let p = "\(dir)/\(dtype).wren"
        try tiny.writeWren(to: p, dtype: dtype)
        return try LlamaModel(path: p)
    }

    /// Collects a job's events.
    final class Log: @unchecked Sendable {
        let lock = NSLock()
        var pieces: [Int: String] = [:]
        var tokens: [Int: [Int32]] = [:]
        var logprobs: [Int: [TokenLogprob]] = [:]
        var prompt: [Int: [TokenLogprob]] = [:]
        var results: [Int: GenerationResult] = [:]
        var failures: [Int: Error] = [:]
        func handler(_ i: Int) -> BatchScheduler.Handler {
            { e in
                self.lock.lock()
                defer { self.lock.unlock() }
                switch e {
                case .token(let t, let text, let lp):
                    self.pieces[i, default: ""] += text
                    self.tokens[i, default: []].append(t)
                    if let lp { self.logprobs[i, default: []].append(lp) }
                case .prompt(let lps): self.prompt[i] = lps
                case .done(let r): self.results[i] = r
                case .failed(let err): self.failures[i] = err
                }
            }
        }
        var finished: Int { lock.lock(); defer { lock.unlock() }; return results.count + failures.count }
    }

    func runUntil(_ s: BatchScheduler, _ log: Log, count: Int, maxSteps: Int = 10_000) {
        var n = 0
        while log.finished < count && n < maxSteps { s.step(); n += 1 }
        XCTAssertEqual(log.finished, count, "jobs did not finish in \(maxSteps) steps")
    }

    /// Prompts sharing prefixes of various lengths, arriving at different steps, reusing whatever
    /// is cached: each job's tokens equal a lone run whose prompt is read in the same chunks.
    func testAlignedReuseIsExactWhateverWasCached() throws {
        let chunk = 16
        for (tiny, dtype, kv) in [(TinyModel(seed: 80, dim: 64, ff: 128), DType.q8_0, KVCacheType.f16),
                                  (TinyModel(seed: 81, dim: 64, ff: 128), DType.f32, KVCacheType.f32)] {
            let m = try model(tiny, dtype)
            var rng = SeededGenerator(seed: 3)
            let shared = (0..<70).map { _ in Int32(3 + rng.next() % 60) }
            var prompts: [[Int32]] = []
            for i in 0..<8 {
                let keep = [70, 35, 17, 16, 70, 3, 53, 40][i]
                prompts.append(Array(shared[..<keep]) + (0..<(5 + i)).map { _ in Int32(3 + rng.next() % 60) })
            }
            var jobs: [BatchJob] = []
            for (i, p) in prompts.enumerated() {
                var o = GenerationOptions(maxTokens: 6 + i, sampling: i % 2 == 0 ? .greedy : SamplingParameters())
                o.sampling.seed = UInt64(50 + i)
                o.sampling.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]
                jobs.append(BatchJob(prompt: p, options: o, logprobs: 2))
            }
            // Alone, with prompts read in chunks of `chunk` (the session's batch limit).
            let want = try jobs.map { j in
                try Generator(model: m, session: try InferenceSession(model: m, contextLength: 128, threads: 2, maxBatch: chunk, kvType: kv,
                                                                     activations: dtype == .f32 ? .f32 : .q8)).generate(tokens: j.prompt, options: j.options)
            }
            let session = try InferenceSession(model: m, contextLength: 128, threads: 2, kvType: kv, activations: dtype == .f32 ? .f32 : .q8, sequences: 3)
            let s = try BatchScheduler(model: m, session: session, promptChunk: chunk, alignedReuse: true)
            let log = Log()
            // Jobs arrive every few steps, so some find prefixes cached in running or free slots.
            var added = 0, steps = 0
            while log.finished < jobs.count && steps < 5000 {
                if added < jobs.count && steps % 3 == 0 { s.add(jobs[added], handler: log.handler(added)); added += 1 }
                s.step()
                steps += 1
            }
            var evaluated = 0
            for i in jobs.indices {
                let r = try XCTUnwrap(log.results[i], "job \(i)")
                XCTAssertEqual(r.tokens, want[i].tokens, "\(dtype) job \(i)")
                XCTAssertEqual(r.text, want[i].text)
                XCTAssertEqual(log.pieces[i] ?? "", r.text, "streamed pieces add up to the text")
                evaluated += r.stats.promptTokensEvaluated
                // The logits themselves, through their log-probabilities: the same bits as alone.
                let lone = try InferenceSession(model: m, contextLength: 128, threads: 2, maxBatch: chunk, kvType: kv,
                                                activations: dtype == .f32 ? .f32 : .q8)
                var logits = try lone.evaluate(jobs[i].prompt)
                let got = log.logprobs[i] ?? []
                XCTAssertEqual(got.count, r.tokens.count)
                for (k, t) in r.tokens.enumerated() where k < got.count {
                    XCTAssertEqual(got[k], TokenLogprob.of(t, logits: logits, top: 2), "\(dtype) job \(i) token \(k)")
                    logits = try lone.evaluate([t])
                }
            }
            XCTAssertLessThan(evaluated, prompts.map(\.count).reduce(0, +), "no prefix was reused")
            // Prompt chunks joined the decode passes where every product is on the 8-bit kernels.
            if dtype == .q8_0 { XCTAssertGreaterThan(s.sharedPasses, 0) } else { XCTAssertEqual(s.sharedPasses, 0) }
        }
    }

    /// A prompt chunk and decode steps of other sequences in one pass give the bits of
    /// evaluating the chunk alone and then decoding the steps: short chunks (decode-path
    /// attention) and long ones (row-block attention), with and without the chunk's logits.
    func testSharedPassIsTheSameAsTwo() throws {
        let m = try model(TinyModel(seed: 88, dim: 64, ff: 128), .q8_0)
        var rng = SeededGenerator(seed: 9)
        let toks = { (n: Int) in (0..<n).map { _ in Int32(3 + rng.next() % 60) } }
        for (chunkLength, wantLogits) in [(5, true), (20, true), (16, false), (1, true)] {
            let prompts = [toks(7), toks(12), toks(3)], chunk = toks(chunkLength), before = toks(4)
            func prepared() throws -> InferenceSession {
                let s = try InferenceSession(model: m, contextLength: 96, threads: 2, sequences: 4)
                for (i, p) in prompts.enumerated() { _ = try s.evaluate(p, sequence: i) }
                _ = try s.evaluate(before, sequence: 3)
                return s
            }
            let steps: [(sequence: Int, token: Int32)] = [(0, 9), (2, 14), (1, 30)]
            let apart = try prepared()
            let c1 = try apart.evaluate(chunk, sequence: 3), d1 = try apart.decode(steps)
            let shared = try prepared()
            XCTAssertTrue(shared.canShare(chunkTokens: chunk.count, steps: steps.count))
            let (c2, d2) = try shared.evaluate(chunk: chunk, sequence: 3, chunkLogits: wantLogits, with: steps)
            XCTAssertEqual(d2, d1, "steps, chunk of \(chunkLength)")
            XCTAssertEqual(c2, wantLogits ? c1 : [], "chunk of \(chunkLength)")
            XCTAssertEqual(shared.positions, apart.positions)
            // The caches agree too: the next token of every sequence gives the same logits.
            let next: [(sequence: Int, token: Int32)] = [(0, 4), (1, 5), (2, 6), (3, 7)]
            XCTAssertEqual(try shared.decode(next), try apart.decode(next))
        }
        // Float weights: products whose rows depend on the pass, so no sharing.
        let f = try model(TinyModel(seed: 89, dim: 64, ff: 128), .f32)
        XCTAssertFalse(try InferenceSession(model: f, contextLength: 32, threads: 1, activations: .f32, sequences: 2).canShare(chunkTokens: 4, steps: 1))
    }

    /// Packed weights (AVX2 and AVX-512 VNNI kernels) are wired to the right matrices: decode
    /// steps and a prompt give the same logits as the session without them (the rows read in
    /// place); two models of one file share one packed copy.
    func testPackedWeightsAreExactAndShared() throws {
        for dt in [DType.q4_1, .q8_0, .q4_0] {
            let m = try model(TinyModel(seed: 90, dim: 64, ff: 128), dt)
            let s = try InferenceSession(model: m, contextLength: 64, threads: 2, sequences: 3)
            guard PackedWeights.enabled, wren_packed8_runs(dt.rawValue) != 0 else {
                XCTAssertNil(s.packed, "\(dt): packed where its kernels do not run")
                continue
            }
            let p = try XCTUnwrap(s.packed, "\(dt): nothing packed")
            XCTAssertEqual(p.layers.count, m.config.blockCount)
            XCTAssertEqual(p.layers[0].count, Projection.allCases.count)
            XCTAssertNotNil(p.output)
            XCTAssertTrue(try LlamaModel(path: m.file.path).packedWeights() === p, "one packed copy per file")
            func run() throws -> [Float] {
                s.reset()
                for q in 0..<3 { _ = try s.evaluate([Int32(5 + q), 9, 12], sequence: q) }
                return try s.decode([(0, 7), (1, 8), (2, 30)]) + s.decode([(2, 4)]) + s.evaluate([3, 4, 5, 6], sequence: 0, allLogits: true)
            }
            let packed = try run()
            s.packed = nil   // the same kernels reading the rows in place
            let rows = try run()
            XCTAssertTrue(packed.map(\.bitPattern) == rows.map(\.bitPattern), "\(dt): packed and in-place logits differ")
        }
    }

    func testStreamedPiecesUnderStopStrings() throws {
        let m = try model(TinyModel(seed: 82), .f32)
        let g = try Generator(model: m, session: try InferenceSession(model: m, contextLength: 64, threads: 1))
        var o = GenerationOptions(maxTokens: 40, sampling: .greedy)
        o.sampling.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]
        let free = try g.generate(tokens: [5, 6], options: o).text
        XCTAssertGreaterThan(free.count, 6)
        // A stop string taken from the middle of the free text, and one that never comes but shares its start.
        let mid = free.index(free.startIndex, offsetBy: free.count / 2)
        let stop = String(free[mid...].prefix(2))
        o.stop = [stop, String(free.prefix(1)) + "\u{1F600}never"]
        let s = try BatchScheduler(model: m, session: try InferenceSession(model: m, contextLength: 64, threads: 1, sequences: 2))
        let log = Log()
        s.add(BatchJob(prompt: [5, 6], options: o), handler: log.handler(0))
        runUntil(s, log, count: 1)
        let r = try XCTUnwrap(log.results[0])
        XCTAssertEqual(r.stopReason, .stop)
        XCTAssertEqual(r.text, try g.generate(tokens: [5, 6], options: o).text)
        XCTAssertFalse(r.text.contains(stop))
        XCTAssertEqual(log.pieces[0], r.text, "the stream shows exactly the text, never part of a stop string")
    }

    func testStopTextHoldsBackAndCuts() {
        var t = StopText(stops: ["END", "é!"])
        XCTAssertEqual(t.append("abc E"), "abc ")
        XCTAssertEqual(t.append("N"), "")
        XCTAssertEqual(t.append("x"), "ENx")           // not a stop after all
        XCTAssertEqual(t.append("caf"), "caf")
        XCTAssertEqual(t.append("é"), "")               // could start "é!"
        XCTAssertEqual(t.append("!tail"), "")
        XCTAssertTrue(t.stopped)
        XCTAssertEqual(t.text, "abc ENxcaf")
        var u = StopText(stops: ["zz"])
        XCTAssertEqual(u.append("az"), "a")
        XCTAssertEqual(u.finish("q"), "zq")
        var v = StopText(stops: ["ab"])
        XCTAssertEqual(v.append("xa"), "x")
        XCTAssertEqual(v.append("b"), "")
        XCTAssertEqual(v.text, "x")
    }

    func testCancellationFreesSlotsAndFollowersCarryOn() throws {
        let m = try model(TinyModel(seed: 83, dim: 64, ff: 128), .q8_0)
        let prompt = (0..<40).map { Int32(3 + ($0 * 11) % 60) }
        var o = GenerationOptions(maxTokens: 20, sampling: .greedy)
        o.sampling.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]
        let want = try Generator(model: m, session: try InferenceSession(model: m, contextLength: 96, threads: 2, maxBatch: 8)).generate(tokens: prompt, options: o)
        let s = try BatchScheduler(model: m, session: try InferenceSession(model: m, contextLength: 96, threads: 2, sequences: 2), promptChunk: 8,
                                   alignedReuse: true)
        let log = Log()
        let leader = s.add(BatchJob(prompt: prompt, options: o), handler: log.handler(0))
        s.add(BatchJob(prompt: prompt, options: o), handler: log.handler(1))
        let queued = s.add(BatchJob(prompt: [5], options: o), handler: log.handler(2))
        s.step()                                     // the leader has read one chunk; job 1 follows it
        s.cancel(leader)
        s.cancel(queued)
        s.step()
        XCTAssertEqual(log.results[0]?.stopReason, .cancelled)
        XCTAssertEqual(log.results[2]?.stopReason, .cancelled)
        XCTAssertEqual(log.results[2]?.tokens, [])
        runUntil(s, log, count: 3)
        XCTAssertEqual(log.results[1]?.tokens, want.tokens, "the follower took over the leader's partly read prompt")
        XCTAssertEqual(s.load.active, 0)
        XCTAssertEqual(s.load.waiting, 0)
        // A running job cancelled mid-generation keeps what it had and frees its slot.
        let log2 = Log()
        let t = s.add(BatchJob(prompt: [5, 6], options: o), handler: log2.handler(0))
        for _ in 0..<5 { s.step() }
        s.cancel(t)
        s.step()
        let r = try XCTUnwrap(log2.results[0])
        XCTAssertEqual(r.stopReason, .cancelled)
        XCTAssertGreaterThan(r.tokens.count, 0)
        XCTAssertLessThan(r.tokens.count, 20)
        XCTAssertEqual(s.load.active, 0)
    }

    /// While a long prompt is read chunk by chunk, a generating job gets a token every step.
    func testLongPromptDoesNotStallOthers() throws {
        let m = try model(TinyModel(seed: 84, dim: 64, ff: 128), .q8_0)
        let s = try BatchScheduler(model: m, session: try InferenceSession(model: m, contextLength: 120, threads: 2, sequences: 2), promptChunk: 8)
        let log = Log()
        var o = GenerationOptions(maxTokens: 30, sampling: .greedy)
        o.sampling.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]
        s.add(BatchJob(prompt: [5, 6], options: o), handler: log.handler(0))
        s.step()
        s.step()
        let before = log.tokens[0]?.count ?? 0
        s.add(BatchJob(prompt: (0..<100).map { Int32(3 + $0 % 60) }, options: o), handler: log.handler(1))
        for _ in 0..<12 { s.step() }                 // 100 tokens = 13 chunks of 8
        XCTAssertEqual((log.tokens[0]?.count ?? 0) - before, 12, "one token per step while the long prompt is read")
        XCTAssertNil(log.tokens[1], "the long prompt is still being read")
        runUntil(s, log, count: 2)
        XCTAssertEqual(log.results[1]?.stats.promptTokensEvaluated, 100)
        XCTAssertGreaterThanOrEqual(s.sharedPasses, 12, "each chunk shared the decode pass")
    }

    func testLogprobsMatchTheLogits() throws {
        let m = try model(TinyModel(seed: 85), .f32)
        let prompt: [Int32] = [5, 9, 12, 7, 30, 22]
        let s = try BatchScheduler(model: m, session: try InferenceSession(model: m, contextLength: 64, threads: 1, activations: .f32, sequences: 2))
        let log = Log()
        var o = GenerationOptions(maxTokens: 5, sampling: .greedy)
        o.sampling.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]
        s.add(BatchJob(prompt: prompt, options: o, logprobs: 3, promptLogprobs: true), handler: log.handler(0))
        runUntil(s, log, count: 1)
        let all = try InferenceSession(model: m, contextLength: 64, threads: 1, activations: .f32).evaluate(prompt, allLogits: true)
        let V = m.config.vocabSize
        func reference(_ row: Int, _ tok: Int32) -> Double {
            let l = all[(row * V)..<((row + 1) * V)].map(Double.init)
            let mx = l.max()!
            return l[Int(tok)] - mx - Foundation.log(l.map { Foundation.exp($0 - mx) }.reduce(0, +))
        }
        let p = try XCTUnwrap(log.prompt[0])
        XCTAssertEqual(p.map(\.token), Array(prompt.dropFirst()))
        for (i, lp) in p.enumerated() {
            XCTAssertEqual(Double(lp.logprob), reference(i, prompt[i + 1]), accuracy: 1e-5)   // f32 sums: well inside 1e-5
            XCTAssertEqual(lp.top.count, 3)
            XCTAssertGreaterThanOrEqual(lp.top[0].logprob, lp.top[1].logprob)
            XCTAssertGreaterThanOrEqual(lp.top[0].logprob, lp.logprob)
        }
        // Greedy: every generated token is the most likely one.
        let g = try XCTUnwrap(log.logprobs[0])
        XCTAssertEqual(g.count, 5)
        for lp in g {
            XCTAssertEqual(lp.top[0].token, lp.token)
            XCTAssertEqual(lp.top[0].logprob, lp.logprob)
        }
        XCTAssertEqual(Double(g[0].logprob), reference(prompt.count - 1, g[0].token), accuracy: 1e-5)
    }

    /// Speculation for a lone greedy job (a draft model, here the same weights so drafts are
    /// accepted, and prompt lookup) gives exactly the tokens of plain decoding; with two jobs
    /// generating, the batched step runs and they are exact too.
    func testSpeculationIsExact() throws {
        let m = try model(TinyModel(seed: 87, dim: 64, ff: 128), .q8_0)
        var o = GenerationOptions(maxTokens: 40, sampling: .greedy)
        o.sampling.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]
        let prompts: [[Int32]] = [[5, 6, 7, 5, 6, 7, 5, 6], [9, 12, 30, 9, 12]]
        func run(_ spec: SpeculationOptions?, together: Bool) throws -> (tokens: [[Int32]], stats: [SpeculationStats?]) {
            let s = try BatchScheduler(model: m, session: try InferenceSession(model: m, contextLength: 96, threads: 2, sequences: 2))
            if let spec { try s.enableSpeculation(spec) }
            let log = Log()
            if together {
                for (i, p) in prompts.enumerated() { s.add(BatchJob(prompt: p, options: o), handler: log.handler(i)) }
                runUntil(s, log, count: prompts.count)
            } else {
                for (i, p) in prompts.enumerated() {
                    s.add(BatchJob(prompt: p, options: o), handler: log.handler(i))
                    runUntil(s, log, count: i + 1)
                }
            }
            for i in prompts.indices { XCTAssertEqual(log.pieces[i] ?? "", log.results[i]?.text) }
            return (prompts.indices.map { log.results[$0]?.tokens ?? [] }, prompts.indices.map { log.results[$0]?.stats.speculation })
        }
        let plain = try run(nil, together: false).tokens
        XCTAssertEqual(plain.map(\.count), [40, 40])
        let draftModel = try LlamaModel(path: "\(dir)/q8_0.wren")
        let draft = SpeculationOptions(mode: .draftModel(try InferenceSession(model: draftModel, contextLength: 96, threads: 2)), draftTokens: 6, pMin: 0)
        let withDraft = try run(draft, together: false)
        XCTAssertEqual(withDraft.tokens, plain)
        let st = try XCTUnwrap(withDraft.stats[0])
        XCTAssertGreaterThan(st.accepted, 30, "the same weights as draft: nearly every draft is kept")
        XCTAssertLessThan(st.targetPasses, 15)
        let lookup = try run(SpeculationOptions(mode: .lookup(ngram: 2), draftTokens: 4), together: false)
        XCTAssertEqual(lookup.tokens, plain)
        let together = try run(SpeculationOptions(mode: .lookup(ngram: 2), draftTokens: 4), together: true)
        XCTAssertEqual(together.tokens, plain)
    }

    func testRefusedJobsFailAlone() throws {
        let m = try model(TinyModel(seed: 86), .f32)
        let s = try BatchScheduler(model: m, session: try InferenceSession(model: m, contextLength: 16, threads: 1, sequences: 2))
        let log = Log()
        s.add(BatchJob(prompt: [], options: .init()), handler: log.handler(0))
        s.add(BatchJob(prompt: Array(repeating: 5, count: 17), options: .init()), handler: log.handler(1))
        s.add(BatchJob(prompt: [5, 64], options: .init()), handler: log.handler(2))
        s.add(BatchJob(prompt: [5], options: GenerationOptions(maxTokens: 3, sampling: .greedy)), handler: log.handler(3))
        runUntil(s, log, count: 4)
        XCTAssertEqual(log.failures.keys.sorted(), [0, 1, 2])
        XCTAssertEqual(log.results[3]?.tokens.count, 3)
        XCTAssertThrowsError(try BatchScheduler(model: m, session: try InferenceSession(model: m, contextLength: 16, threads: 1), promptChunk: 0))
    }
}
