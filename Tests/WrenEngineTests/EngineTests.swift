// The engine on tiny random models (fast, bounds-checked in debug): the
// forward pass against a naive double-precision reference written here,
// batch vs one-token agreement, KV-cache reuse, every dtype, RoPE scaling,
// sampler behaviour, stop strings, limits.

import CWrenKernels
import Foundation
import TestSupport
@testable import WrenEngine
import WrenFormat
import WrenKernels
import XCTest

/// Naive llama forward in Double with no KV cache (recomputes everything), from the float weights.
struct NaiveLlama {
    let c: ModelConfig
    let w: [String: [Float]]
    let ropeScale: Double
    /// Keys at least this many positions back are masked (0: none).
    let window: Int

    init(_ m: TinyModel, ropeScale: Double = 1, window: Int = 0) {
        c = m.config
        var d: [String: [Float]] = [:]
        for x in m.weights { d[x.name] = x.values }
        w = d
        self.ropeScale = ropeScale
        self.window = window
    }

    /// W·x, plus the tensor's bias when the model has one (`….weight` → `….bias`).
    func matvec(_ name: String, _ x: [Double], rows: Int) -> [Double] {
        let m = w[name]!, n = x.count
        let b = w[name.replacingOccurrences(of: ".weight", with: ".bias")]
        return (0..<rows).map { r in (0..<n).reduce(0.0) { $0 + Double(m[r * n + $1]) * x[$1] } + Double(b?[r] ?? 0) }
    }

    func norm(_ x: [Double], _ name: String) -> [Double] {
        let ms = x.reduce(0) { $0 + $1 * $1 } / Double(x.count)
        let s = 1 / (ms + Double(c.rmsNormEps)).squareRoot()
        return x.enumerated().map { $0.element * s * Double(w[name]![$0.offset]) }
    }

    func rope(_ v: inout [Double], heads: Int, pos: Int) {
        let hd = c.headDim
        for h in 0..<heads {
            for i in 0..<(c.ropeDimensionCount / 2) {
                let theta = Double(pos) / ropeScale * pow(Double(c.ropeFreqBase), -2 * Double(i) / Double(c.ropeDimensionCount))
                let a = v[h * hd + 2 * i], b = v[h * hd + 2 * i + 1]
                v[h * hd + 2 * i] = a * cos(theta) - b * sin(theta)
                v[h * hd + 2 * i + 1] = a * sin(theta) + b * cos(theta)
            }
        }
    }

    /// Logits at every position.
    func logits(_ ids: [Int32]) -> [[Double]] {
        let dim = c.embeddingLength, hd = c.headDim, H = c.headCount, KV = c.headCountKV
        var xs: [[Double]] = ids.map { id in (0..<dim).map { Double(w["token_embd.weight"]![Int(id) * dim + $0]) } }
        for l in 0..<c.blockCount {
            let p = "blk.\(l)."
            var qs: [[Double]] = [], ks: [[Double]] = [], vs: [[Double]] = []
            for (t, x) in xs.enumerated() {
                let h = norm(x, p + "attn_norm.weight")
                var q = matvec(p + "attn_q.weight", h, rows: H * hd), k = matvec(p + "attn_k.weight", h, rows: KV * hd)
                rope(&q, heads: H, pos: t)
                rope(&k, heads: KV, pos: t)
                qs.append(q); ks.append(k); vs.append(matvec(p + "attn_v.weight", h, rows: KV * hd))
            }
            for t in 0..<xs.count {
                var att = [Double](repeating: 0, count: H * hd)
                for h in 0..<H {
                    let kv = h / (H / KV)
                    let first = window > 0 ? max(0, t - window + 1) : 0
                    var s = (first...t).map { j in (0..<hd).reduce(0.0) { $0 + qs[t][h * hd + $1] * ks[j][kv * hd + $1] } / Double(hd).squareRoot() }
                    let m = s.max()!
                    s = s.map { exp($0 - m) }
                    let z = s.reduce(0, +)
                    for j in first...t { for d in 0..<hd { att[h * hd + d] += s[j - first] / z * vs[j][kv * hd + d] } }
                }
                let o = matvec(p + "attn_output.weight", att, rows: dim)
                xs[t] = zip(xs[t], o).map(+)
                let h2 = norm(xs[t], p + "ffn_norm.weight")
                let g = matvec(p + "ffn_gate.weight", h2, rows: c.feedForwardLength), u = matvec(p + "ffn_up.weight", h2, rows: c.feedForwardLength)
                let a = zip(g, u).map { $0 / (1 + exp(-$0)) * $1 }
                xs[t] = zip(xs[t], matvec(p + "ffn_down.weight", a, rows: dim)).map(+)
            }
        }
        let head = c.tiedEmbeddings ? "token_embd.weight" : "output.weight"
        return xs.map { matvec(head, norm($0, "output_norm.weight"), rows: c.vocabSize) }
    }
}

final class EngineTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Sessions default to the exact path here (f32 KV, f32 activations) so the
    /// reference comparisons are tight; the fast path has its own tests.
    func load(_ tiny: TinyModel, _ dtype: DType = .f32, threads: Int = 2, ropeScale: Float? = nil, kv: KVCacheType = .f32,
              activations: Activations = .f32, maxBatch: Int = 8) throws -> (LlamaModel, InferenceSession) {
        let p = "\(dir)/m-\(dtype)-\(UInt32.random(in: 0...UInt32.max)).wren"
        try tiny.writeWren(to: p, dtype: dtype)
        let m = try LlamaModel(path: p, ropeScale: ropeScale)
        return (m, try InferenceSession(model: m, contextLength: 64, threads: threads, maxBatch: maxBatch, kvType: kv, activations: activations))
    }

    /// The fast path (8-bit activation blocks, f16 KV cache): a token's logits do
    /// not depend on how many tokens share its pass below the BLAS threshold, nor
    /// on the thread count (bit for bit: speculative verification relies on it),
    /// and stay near the exact path.
    func testFastPathBatchInvariance() throws {
        let tiny = TinyModel(seed: 41)
        let ids: [Int32] = (0..<14).map { Int32(($0 * 5 + 1) % 64) }
        for dt in [DType.q4_1, .q4_0, .q8_0, .f16, .f32] {
            let (_, a) = try load(tiny, dt, threads: 1, kv: .f16, activations: .q8, maxBatch: 64)
            let batch = try a.evaluate(ids, allLogits: true)
            let (_, forced) = try load(tiny, dt, threads: 2, kv: .f16, activations: .q8, maxBatch: 64)
            _ = try forced.evaluate(Array(ids.prefix(3)))
            let verify = try forced.evaluate(Array(ids.dropFirst(3)), allLogits: true, decodeKernels: true)
            XCTAssertEqual(Array(batch.dropFirst(3 * 64)), verify, "\(dt): a verification batch differs from one-at-a-time logits")
            let (_, b) = try load(tiny, dt, threads: 2, kv: .f16, activations: .q8)
            var single: [Float] = []
            for id in ids { single += try b.evaluate([id]) }
            XCTAssertEqual(batch, single, "\(dt): batched and one-at-a-time logits differ")
            if !dt.isQuantized { continue }
            let (_, e) = try load(tiny, dt)
            let exact = try e.evaluate(ids, allLogits: true)
            let worst = zip(exact, batch).map { abs($0 - $1) }.max()!
            let scale = exact.map { abs($0) }.max()!
            XCTAssertGreaterThan(worst, 0, "\(dt): the fast path should differ from the exact one")
            XCTAssertLessThan(worst, 0.25 * scale, "\(dt): fast path far from the exact path")
        }
    }

    /// f32 weights: every position's logits match the double-precision reference (tolerance 1e-4:
    /// f32 rounding over dims ≤ 64 and 2 layers stays near 1e-6 relative).
    func testForwardMatchesNaiveReference() throws {
        for tied in [true, false] {
            let tiny = TinyModel(seed: tied ? 31 : 32, tied: tied)
            let (_, s) = try load(tiny)
            let ids: [Int32] = [5, 17, 3, 40, 63, 0, 12, 12, 9, 30, 1, 2]     // 12 tokens: spans two batches of 8
            let got = try s.evaluate(ids, allLogits: true)
            let want = NaiveLlama(tiny).logits(ids)
            let V = tiny.config.vocabSize
            for t in 0..<ids.count {
                for v in 0..<V {
                    XCTAssertEqual(Double(got[t * V + v]), want[t][v], accuracy: 1e-4 + 1e-4 * abs(want[t][v]), "pos \(t) id \(v)")
                }
            }
        }
    }

    /// Every position's exact-path logits against `want` (tolerance 1e-4 as in
    /// testForwardMatchesNaiveReference), for the whole prompt at once (maxBatch 64)
    /// and token by token (maxBatch 1).
    func assertLogits(_ m: LlamaModel, _ ids: [Int32], _ want: [[Double]], _ label: String, line: UInt = #line) throws {
        let V = m.config.vocabSize
        for batch in [64, 1] {
            let s = try InferenceSession(model: m, contextLength: 64, threads: 2, maxBatch: batch, kvType: .f32, activations: .f32)
            let got = try s.evaluate(ids, allLogits: true)
            for t in 0..<ids.count {
                for v in 0..<V {
                    XCTAssertEqual(Double(got[t * V + v]), want[t][v], accuracy: 1e-4 + 1e-4 * abs(want[t][v]),
                                   "\(label) batch \(batch) pos \(t) id \(v)", line: line)
                }
            }
        }
    }

    /// Qwen2: q/k/v biases, and llama.cpp's rotate-half q/k rows (and q/k biases)
    /// permuted back on GGUF import; every position against the reference, for the
    /// whole prompt at once and token by token.
    func testQwen2BiasesMatchReference() throws {
        let tiny = TinyModel(seed: 33, tied: true, qkvBias: true)
        let g = "\(dir)/qwen2.gguf", w = "\(dir)/qwen2.wren"
        tiny.writeNeoxGGUF(to: g, arch: "qwen2")
        _ = try ModelConverter.convert(try ModelSource.open(g), to: w)
        let m = try LlamaModel(path: w)
        XCTAssertEqual(m.config.architecture, "qwen2")
        XCTAssertTrue(m.config.qkvBias)
        let ids: [Int32] = [5, 17, 3, 40, 63, 0, 12, 12, 9, 30]
        let want = NaiveLlama(tiny).logits(ids)
        try assertLogits(m, ids, want, "qwen2")
        // Without the biases the logits are far off: the test sees them.
        let plain = NaiveLlama(TinyModel(seed: 33, tied: true)).logits(ids)
        XCTAssertGreaterThan(zip(plain.joined(), want.joined()).map { abs($0 - $1) }.max()!, 0.05)
    }

    /// Hugging Face Qwen2 (biases, rotate-half rows) and Mistral (a sliding window on every
    /// layer, shorter than the prompt) import and run like the reference, whole prompt and
    /// token by token (the window masks in both attention paths).
    func testHFQwen2AndMistralMatchReference() throws {
        let ids: [Int32] = [5, 17, 3, 40, 63, 0, 12, 12, 9, 30, 44, 2, 7, 21, 8, 60, 33, 1, 19, 50]   // 20: the batched path too
        for (type, tiny, window) in [("qwen2", TinyModel(seed: 34, tied: false, qkvBias: true), 0), ("mistral", TinyModel(seed: 35, tied: true), 5)] {
            let hf = "\(dir)/hf-\(type)", w = "\(dir)/\(type).wren"
            try tiny.writeHF(to: hf, modelType: type, slidingWindow: window > 0 ? window : nil)
            _ = try ModelConverter.convert(try ModelSource.open(hf), to: w)
            let m = try LlamaModel(path: w)
            XCTAssertEqual(m.config.slidingWindow, window, type)
            XCTAssertEqual(m.config.qkvBias, type == "qwen2", type)
            try assertLogits(m, ids, NaiveLlama(tiny, window: window).logits(ids), type)
        }
    }

    /// Prompt chunks that take the BLAS products and the matrix-form attention
    /// (chunks of 16: the second starts at position 16, so its causal mask is offset):
    /// f32 path against the double reference, f16 KV cache near it.
    func testBatchedAttentionMatchesReference() throws {
        let tiny = TinyModel(seed: 33)
        let ids: [Int32] = (0..<40).map { Int32(($0 * 13 + 7) % 64) }
        let want = NaiveLlama(tiny).logits(ids)
        for kv in [KVCacheType.f32, .f16] {
            let (_, s) = try load(tiny, kv: kv, maxBatch: 16)
            let got = try s.evaluate(ids, allLogits: true)
            var worst = 0.0
            for t in 0..<ids.count { for v in 0..<64 { worst = max(worst, abs(Double(got[t * 64 + v]) - want[t][v]) / (1 + abs(want[t][v]))) } }
            XCTAssertLessThan(worst, kv == .f32 ? 1e-4 : 5e-3, "\(kv) KV cache")
        }
    }

    /// The q8_0 KV cache (head dim 32: one block per head per position) through the
    /// decode kernel and the prompt path, near the f32 cache (8-bit k/v: ~0.4%
    /// relative per value); refused when the head dimension is not a multiple of 32.
    func testQ8_0KVCache() throws {
        let tiny = TinyModel(seed: 17, dim: 64, heads: 2, kvHeads: 1, ff: 96)
        let ids: [Int32] = (0..<40).map { Int32(($0 * 11 + 5) % 64) }
        let (_, exact) = try load(tiny)
        let want = try exact.evaluate(ids, allLogits: true)
        let scale = want.map { abs($0) }.max()!
        var results: [[Float]] = []
        for batch in [8, 16] {
            let (_, s) = try load(tiny, kv: .q8_0, maxBatch: batch)
            let got = try s.evaluate(ids, allLogits: true)
            let worst = zip(want, got).map { abs($0 - $1) }.max()!
            // Random tiny models amplify rounding (measured 0.036·scale); the real-model test holds the meaningful bound.
            XCTAssertLessThan(worst, 0.06 * scale, "maxBatch \(batch)")
            XCTAssertGreaterThan(worst, 0)
            results.append(got)
        }
        // The decode kernel and the prompt path read the same quantized cache: they differ only in f32 summation order.
        XCTAssertLessThan(zip(results[0], results[1]).map { abs($0 - $1) }.max()!, 1e-3 * scale)
        // The portable scalar kernels (any CPU) agree with the AVX2 ones, for both reduced caches.
        for kv in [KVCacheType.q8_0, .f16] {
            let (_, simd) = try load(tiny, kv: kv, activations: .q8)
            let a = try simd.evaluate(ids, allLogits: true)
            wren_kernels_force_scalar(1)
            defer { wren_kernels_force_scalar(0) }
            let (_, scalar) = try load(tiny, kv: kv, activations: .q8)
            let b = try scalar.evaluate(ids, allLogits: true)
            XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-3 * scale, "\(kv) scalar vs SIMD")
        }
        XCTAssertThrowsError(try load(TinyModel(seed: 1), kv: .q8_0)) { e in
            XCTAssertTrue("\(e)".contains("multiple of 32"), "\(e)")
        }
    }

    /// One batch, chunked batches, and one token at a time give the same logits; thread count does not matter.
    func testBatchVersusSingleTokenAndThreads() throws {
        let tiny = TinyModel(seed: 4)
        let ids: [Int32] = (0..<20).map { Int32(($0 * 7 + 3) % 64) }
        let (_, a) = try load(tiny, .q4_1, threads: 1)
        let batch = try a.evaluate(ids)
        let (_, b) = try load(tiny, .q4_1, threads: 2)
        var single: [Float] = []
        for id in ids { single = try b.evaluate([id]) }
        for i in 0..<batch.count { XCTAssertEqual(batch[i], single[i], accuracy: 1e-4, "logit \(i)") }
        // Same thread-independence for the matvec path.
        let (_, c) = try load(tiny, .q4_1, threads: 1)
        var single1: [Float] = []
        for id in ids { single1 = try c.evaluate([id]) }
        XCTAssertEqual(single, single1, "results must not depend on the thread count")
    }

    /// Every stored dtype runs exactly: the logits equal the double-precision reference
    /// run on the same weights dequantized (the exact path: f32 activations).
    func testEveryDTypeIsExact() throws {
        let ids: [Int32] = [3, 9, 27, 17, 11]
        for dt in DType.allCases {
            // The k-quants need rows of whole 256-element super-blocks.
            let tiny = dt.blockSize == 256 ? TinyModel(seed: 6, tied: false, dim: 256, ff: 256) : TinyModel(seed: 6, tied: false)
            let (_, s) = try load(tiny, dt)
            let got = try s.evaluate(ids, allLogits: true)
            var deq = tiny
            deq.weights = tiny.weights.map { w in
                let t = TinyModel.dtype(for: w.shape, dt)
                return (w.name, w.shape, Quant.dequantize(t, Quant.quantize(t, w.values), count: w.values.count))
            }
            let want = NaiveLlama(deq).logits(ids)
            var worst = 0.0
            for t in 0..<ids.count { for v in 0..<64 { worst = max(worst, abs(Double(got[t * 64 + v]) - want[t][v]) / (1 + abs(want[t][v]))) } }
            XCTAssertLessThan(worst, 1e-4, "\(dt): worst relative logit difference \(worst)")
        }
    }

    /// The f16 KV cache stays close to the exact path (k/v rounded to 11 bits: ~1e-3 relative).
    func testF16KVCache() throws {
        let tiny = TinyModel(seed: 15)
        let ids: [Int32] = (0..<30).map { Int32(($0 * 11 + 5) % 64) }
        let (_, a) = try load(tiny, .q8_0)
        let (_, b) = try load(tiny, .q8_0, kv: .f16)
        let x = try a.evaluate(ids, allLogits: true), y = try b.evaluate(ids, allLogits: true)
        let worst = zip(x, y).map { abs($0 - $1) / (1 + abs($0)) }.max()!
        XCTAssertLessThan(worst, 5e-3)
        XCTAssertGreaterThan(worst, 0)
    }

    func testRopeLinearScalingMatchesReference() throws {
        let tiny = TinyModel(seed: 8)
        let (_, s) = try load(tiny, ropeScale: 2)
        let ids: [Int32] = [1, 2, 3, 4, 5, 6]
        let got = try s.evaluate(ids, allLogits: true)
        let want = NaiveLlama(tiny, ropeScale: 2).logits(ids)
        for t in 0..<ids.count { for v in 0..<64 { XCTAssertEqual(Double(got[t * 64 + v]), want[t][v], accuracy: 1e-4 + 1e-4 * abs(want[t][v])) } }
        let r = RopeSettings(freqBase: 10000, dimensions: 8, scaling: .ntk, factor: 4, originalContext: 128)
        XCTAssertEqual(Double(r.inverseFrequencies()[1]), pow(10000 * pow(4, 8.0 / 6.0), -2.0 / 8), accuracy: 1e-9)
    }

    func testGreedyGenerationReusesCacheAndStops() throws {
        let tiny = TinyModel(seed: 10)
        let (m, s) = try load(tiny)
        let g = try Generator(model: m, session: s)
        var opts = GenerationOptions(maxTokens: 12, sampling: .greedy)
        opts.sampling.logitBias = [0: -.infinity, 1: -.infinity, 2: -.infinity]   // no EOS or special tokens: exactly 12
        let a = try g.generate(prompt: "abc", options: opts)
        XCTAssertEqual(a.tokens.count, 12)
        XCTAssertEqual(a.stopReason, .length)
        let b = try g.generate(prompt: "abc", options: opts)            // reuses the cached prefix
        XCTAssertEqual(a.tokens, b.tokens)
        XCTAssertEqual(b.stats.promptTokensEvaluated, 1)
        let (m2, s2) = try load(tiny)
        let fresh = try Generator(model: m2, session: s2).generate(prompt: "abc", options: opts)
        XCTAssertEqual(fresh.tokens, a.tokens)
        // Stop strings: cut before the first occurrence, never emitted.
        let text = a.text
        XCTAssertGreaterThan(text.count, 4, "12 letter tokens give a text long enough for the stop-string check")
        do {
            let stop = String(text.dropFirst(2).prefix(2))
            opts.stop = [stop]
            var streamed = ""
            let r = try g.generate(prompt: "abc", options: opts) { piece, _ in streamed += piece; return true }
            XCTAssertEqual(r.stopReason, .stop)
            XCTAssertEqual(r.text, String(text[..<text.range(of: stop)!.lowerBound]))
            XCTAssertEqual(streamed, r.text)
        }
    }

    func testLimits() throws {
        let tiny = TinyModel(seed: 12)
        let (m, s) = try load(tiny)
        let g = try Generator(model: m, session: s)
        var long = "a"
        while m.tokenizer.encode(long).count <= 64 { long += " x" }
        XCTAssertThrowsError(try g.generate(prompt: long)) { e in
            XCTAssertEqual(e as? EngineError, .promptTooLong(tokens: m.tokenizer.encode(long).count, context: 64))
        }
        XCTAssertThrowsError(try g.generate(prompt: "")) { XCTAssertEqual($0 as? EngineError, .emptyPrompt) }
        var p = SamplingParameters(); p.topP = 2
        XCTAssertThrowsError(try g.generate(prompt: "ab", options: .init(sampling: p)))
        // The context fills during generation: stops cleanly with reason length.
        var opts = GenerationOptions(maxTokens: nil, sampling: .greedy)
        opts.sampling.logitBias = [2: -.infinity, 0: -.infinity]     // no EOS
        let r = try g.generate(prompt: String(repeating: "ab", count: 25), options: opts)
        XCTAssertTrue(r.stats.contextFull)
        XCTAssertEqual(r.stopReason, .length)
        XCTAssertEqual(s.position, 64)
        XCTAssertThrowsError(try s.evaluate([5])) { XCTAssertEqual($0 as? EngineError, .contextFull(context: 64)) }
        // An id outside the vocabulary, in a session with room: invalidToken, and the cache is untouched.
        let (_, fresh) = try load(tiny)
        for bad: Int32 in [64, -1, .max] {
            XCTAssertThrowsError(try fresh.evaluate([3, bad])) { XCTAssertEqual($0 as? EngineError, .invalidToken(bad, vocabularySize: 64)) }
        }
        XCTAssertEqual(fresh.position, 0)
        // A context the file allows but the machine cannot hold: refused with the figure, not a failed allocation.
        var huge = TinyModel(seed: 12)
        huge.config.contextLength = 1 << 30
        let (hm, _) = try load(huge)
        XCTAssertThrowsError(try InferenceSession(model: hm, contextLength: 1 << 30, kvType: .f32)) {
            XCTAssert("\($0)".contains("a KV cache of 1073741824 tokens needs") && "\($0)".contains("GB"), "\($0)")
        }
    }

    func testSampler() {
        let logits: [Float] = [1, 3, 2, 0.5, 2.9]
        var greedy = Sampler(.greedy)
        XCTAssertEqual(greedy.sample(logits), 1)
        var p = SamplingParameters()
        p.temperature = 1; p.topK = 2; p.topP = 1; p.minP = 0; p.seed = 5
        var s = Sampler(p)
        var seen = Set<Int32>()
        for _ in 0..<200 { seen.insert(s.sample(logits)) }
        XCTAssertEqual(seen, [1, 4], "top-k 2 keeps ids 1 and 4")
        // Same seed, same draws.
        var a = Sampler(p), b = Sampler(p)
        XCTAssertEqual((0..<50).map { _ in a.sample(logits) }, (0..<50).map { _ in b.sample(logits) })
        // min-p: 0.5 of the top probability drops ids 0 and 3.
        p.topK = 0; p.minP = 0.5
        var m = Sampler(p)
        seen = []
        for _ in 0..<300 { seen.insert(m.sample(logits)) }
        XCTAssertFalse(seen.contains(0) || seen.contains(3))
        // top-p 0.5: only the best token survives (p(1) ≈ 0.41 < 0.5, then id 4 ≈ 0.37).
        p.minP = 0; p.topP = 0.5
        var tp = Sampler(p)
        seen = []
        for _ in 0..<300 { seen.insert(tp.sample(logits)) }
        XCTAssertEqual(seen, [1, 4])
        // Bias and penalties.
        var bias = SamplingParameters.greedy
        bias.logitBias = [1: -.infinity]
        var sb = Sampler(bias)
        XCTAssertEqual(sb.sample(logits), 4)
        var pen = SamplingParameters.greedy
        pen.repeatPenalty = 1.5
        var sp = Sampler(pen)
        XCTAssertEqual(sp.sample(logits, history: [1]), 4, "3/1.5 = 2 < 2.9")
        XCTAssertEqual(Sampler.topK([0, 5, 5, 1], 2).map(\.id), [1, 2])
    }

    func testAsyncStreamAndCancellation() async throws {
        let tiny = TinyModel(seed: 14)
        let (m, s) = try load(tiny)
        let g = try Generator(model: m, session: s)
        var pieces = 0
        var done: GenerationResult?
        var opts = GenerationOptions(maxTokens: 8, sampling: .greedy)
        opts.sampling.logitBias = [2: -.infinity, 0: -.infinity]
        for try await e in g.stream(prompt: "ab", options: opts) {
            switch e {
            case .piece: pieces += 1
            case .done(let r): done = r
            }
        }
        XCTAssertEqual(pieces, 8)
        XCTAssertEqual(done?.tokens.count, 8)
        // Breaking out of the loop cancels generation.
        opts.maxTokens = nil
        var n = 0
        for try await e in g.stream(prompt: "ab", options: opts) {
            if case .piece = e { n += 1 }
            if n == 3 { break }
        }
        XCTAssertEqual(n, 3)
    }
}
