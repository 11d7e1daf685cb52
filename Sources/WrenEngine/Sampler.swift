// Choosing the next token from logits: penalties over a window, logit bias,
// top-k, top-p, min-p, temperature, and a seeded draw (llama.cpp's order).
// Temperature 0 is greedy: the largest (penalised) logit, lowest id on ties.

import Foundation
import WrenKernels

/// xoshiro256** seeded by SplitMix64: the same seed gives the same draws on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var z = SplitMix64(seed: seed)   // xoshiro's recommended seeding
        s = (z.next(), z.next(), z.next(), z.next())
    }

    public mutating func next() -> UInt64 {
        @inline(__always) func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3; s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }
}

public struct SamplingParameters: Sendable, Equatable {
    /// 0 (or less) = greedy.
    public var temperature: Float = 0.8
    /// Keep the k most likely tokens (0 = all).
    public var topK = 40
    /// Keep the smallest set whose probability reaches p (1 = all).
    public var topP: Float = 0.95
    /// Drop tokens less likely than min-p × the most likely one (0 = off).
    public var minP: Float = 0.05
    /// llama.cpp's repetition penalty (1 = off): positive logits divided, negative multiplied.
    public var repeatPenalty: Float = 1.0
    /// How many recent tokens the penalties look at.
    public var repeatLastN = 64
    public var frequencyPenalty: Float = 0
    public var presencePenalty: Float = 0
    /// Added to a token's logit before sampling (-infinity bans it).
    public var logitBias: [Int32: Float] = [:]
    public var seed: UInt64 = 0xC0FFEE

    public init() {}

    public static var greedy: SamplingParameters {
        var p = SamplingParameters()
        p.temperature = 0
        return p
    }

    /// Throws for values outside their ranges.
    /// - Parameter vocabSize: when given, logit-bias ids must be below it.
    public func validate(vocabSize: Int? = nil) throws {
        func bad(_ s: String) -> EngineError { .invalidParameter(s) }
        guard temperature.isFinite, temperature >= 0 else { throw bad("temperature must be >= 0 (got \(temperature))") }
        guard topK >= 0 else { throw bad("top-k must be >= 0 (got \(topK))") }
        guard topP > 0, topP <= 1 else { throw bad("top-p must be in (0, 1] (got \(topP))") }
        guard minP >= 0, minP <= 1 else { throw bad("min-p must be in [0, 1] (got \(minP))") }
        guard repeatPenalty > 0, repeatPenalty.isFinite else { throw bad("repeat-penalty must be > 0 (got \(repeatPenalty))") }
        guard repeatLastN >= 0 else { throw bad("repeat-last-n must be >= 0 (got \(repeatLastN))") }
        guard frequencyPenalty.isFinite, presencePenalty.isFinite else { throw bad("penalties must be finite") }
        for (t, v) in logitBias.sorted(by: { $0.key < $1.key }) {
            guard t >= 0, vocabSize.map({ Int(t) < $0 }) ?? true else {
                throw bad("logit bias for token \(t): not a token id of this model" + (vocabSize.map { " (0..<\($0))" } ?? ""))
            }
            guard !v.isNaN, v != .infinity else { throw bad("logit bias for token \(t) must be a number or -inf (got \(v))") }
        }
    }
}

public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    public var rng: SeededGenerator

    public init(_ p: SamplingParameters) {
        parameters = p
        rng = SeededGenerator(seed: p.seed)
    }

    /// Applies penalties over `history`'s last `repeatLastN` tokens and the logit bias, in place.
    public func applyPenalties(_ logits: inout [Float], history: ArraySlice<Int32>) {
        let p = parameters
        if p.repeatPenalty != 1 || p.frequencyPenalty != 0 || p.presencePenalty != 0, p.repeatLastN > 0 {
            var counts: [Int32: Int] = [:]
            for t in history.suffix(p.repeatLastN) { counts[t, default: 0] += 1 }
            for (t, n) in counts where t >= 0 && Int(t) < logits.count {
                var l = logits[Int(t)]
                l = l > 0 ? l / p.repeatPenalty : l * p.repeatPenalty
                l -= Float(n) * p.frequencyPenalty + p.presencePenalty
                logits[Int(t)] = l
            }
        }
        for (t, b) in p.logitBias where t >= 0 && Int(t) < logits.count { logits[Int(t)] += b }
    }

    /// The next token.
    public mutating func sample(_ logitsIn: [Float], history: ArraySlice<Int32> = []) -> Int32 {
        let d = distribution(logitsIn, history: history)
        if parameters.temperature <= 0 { return d[0].id }
        return draw(d)
    }

    /// The distribution `sample` draws from: candidates best first with their
    /// probabilities after penalties, bias, top-k, top-p, min-p and temperature.
    /// Greedy (temperature 0) gives the single most likely token with probability 1.
    public func distribution(_ logitsIn: [Float], history: ArraySlice<Int32> = []) -> [(id: Int32, p: Double)] {
        var logits = logitsIn
        applyPenalties(&logits, history: history)
        let p = parameters
        if p.temperature <= 0 {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return [(Int32(best), 1)]
        }
        // Candidates, best first (top-k by partial selection).
        var cand: [(id: Int32, logit: Float)]
        let k = p.topK > 0 ? min(p.topK, logits.count) : logits.count
        if k < logits.count {
            cand = Self.topK(logits, k)
        } else {
            cand = logits.enumerated().map { (Int32($0.offset), $0.element) }
            cand.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        }
        cand.removeAll { $0.logit == -.infinity }
        if cand.isEmpty { return [(Int32(logits.indices.max { logits[$0] < logits[$1] } ?? 0), 1)] }
        // Probabilities at temperature 1 for top-p / min-p (as llama.cpp filters before temperature).
        func probs(_ c: [(id: Int32, logit: Float)], temp: Float) -> [Double] {
            let m = Double(c[0].logit)
            let e = c.map { exp((Double($0.logit) - m) / Double(temp)) }
            let s = e.reduce(0, +)
            return e.map { $0 / s }
        }
        if p.topP < 1 {
            let pr = probs(cand, temp: 1)
            var acc = 0.0, keep = cand.count
            for (i, q) in pr.enumerated() {
                acc += q
                if acc >= Double(p.topP) { keep = i + 1; break }
            }
            cand.removeSubrange(keep...)
        }
        if p.minP > 0 {
            let pr = probs(cand, temp: 1)
            let cut = Double(p.minP) * pr[0]
            let keep = max(1, pr.firstIndex { $0 < cut } ?? pr.count)
            cand.removeSubrange(keep...)
        }
        let pr = probs(cand, temp: p.temperature)
        return zip(cand, pr).map { ($0.id, $1) }
    }

    /// One seeded draw from a distribution (probabilities summing to 1).
    public mutating func draw(_ d: [(id: Int32, p: Double)]) -> Int32 {
        let u = rng.unit()
        var acc = 0.0
        for e in d {
            acc += e.p
            if u < acc { return e.id }
        }
        return d[d.count - 1].id
    }

    /// The k largest logits, best first (ties: lower id first).
    static func topK(_ logits: [Float], _ k: Int) -> [(id: Int32, logit: Float)] {
        // Min-heap of size k on (logit, -id).
        var heap: [(id: Int32, logit: Float)] = []
        heap.reserveCapacity(k)
        func worse(_ a: (id: Int32, logit: Float), _ b: (id: Int32, logit: Float)) -> Bool {
            a.logit < b.logit || (a.logit == b.logit && a.id > b.id)
        }
        func siftDown(_ i0: Int) {
            var i = i0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && worse(heap[l], heap[m]) { m = l }
                if r < heap.count && worse(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        logits.withUnsafeBufferPointer { lp in
            // Once the heap is full, a logit below its worst cannot enter: one comparison
            // per logit against a local (the common case), not a heap read.
            var floor = -Float.infinity
            for i in 0..<lp.count {
                let l = lp[i]
                if heap.count == k && l < floor { continue }
                let e = (id: Int32(i), logit: l)
                if heap.count < k {
                    heap.append(e)
                    var j = heap.count - 1
                    while j > 0 && worse(heap[j], heap[(j - 1) / 2]) { heap.swapAt(j, (j - 1) / 2); j = (j - 1) / 2 }
                } else if worse(heap[0], e) {
                    heap[0] = e
                    siftDown(0)
                }
                if heap.count == k { floor = heap[0].logit }
            }
        }
        return heap.sorted { worse($1, $0) }
    }
}
