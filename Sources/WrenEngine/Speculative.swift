// Speculative decoding (Leviathan et al., "Fast Inference from Transformers via
// Speculative Decoding"): a cheap drafter proposes a few tokens, the target
// model scores all of them in one batched pass, and a rejection rule keeps the
// longest acceptable prefix plus one token of the target's own. Under greedy
// decoding the output is token for token the target's; under sampling its
// distribution is the target's.
//
// Drafters: a second (smaller or more quantized) model with the same
// vocabulary, the target itself with only its first layers (self-speculation),
// or prompt lookup (the continuation of an earlier occurrence of the last n-gram).

import WrenKernels
import WrenTokenizer
import Foundation

/// A proposed token with the drafter's distribution it was drawn from
/// (a point mass for deterministic drafters).
public struct DraftToken {
    public var token: Int32
    public var q: [(id: Int32, p: Double)]
    func probability(of id: Int32) -> Double { q.first { $0.id == id }?.p ?? 0 }
}

public protocol Drafter: AnyObject {
    /// Up to `limit` tokens likely to follow `history`.
    func propose(after history: [Int32], limit: Int, sampler: inout Sampler) throws -> [DraftToken]
    /// Gets ready for a generation after `prompt` (a draft model evaluates it).
    func prefill(_ prompt: [Int32]) throws
    /// How the last proposal fared: `accepted` of `drafted` tokens were kept.
    func observe(drafted: Int, accepted: Int)
}

extension Drafter {
    public func observe(drafted: Int, accepted: Int) {}
}

/// How to speculate.
public enum SpeculationMode {
    /// A separate draft model (same vocabulary) in its own session.
    case draftModel(InferenceSession)
    /// The target's first `layers` layers as the draft (no second model).
    case selfDraft(layers: Int)
    /// Continue the most recent earlier occurrence of the last `ngram` (down to 1) tokens.
    case lookup(ngram: Int)
}

public struct SpeculationOptions {
    public var mode: SpeculationMode
    /// Tokens drafted per round at most.
    public var draftTokens = 8
    /// A model drafter stops when its most likely token's probability falls below this.
    public var pMin: Double = 0.5
    public init(mode: SpeculationMode, draftTokens: Int = 8, pMin: Double = 0.5) {
        self.mode = mode
        self.draftTokens = draftTokens
        self.pMin = pMin
    }
}

extension SpeculationOptions {
    /// The drafter these options describe for a target `model` decoding in `session` (checked:
    /// draft lengths, p-min, a draft model's vocabulary, self-draft layers, n-gram length).
    func makeDrafter(model: LlamaModel, session: InferenceSession) throws -> Drafter {
        guard draftTokens >= 1, draftTokens < session.maxBatch else {
            throw EngineError.invalidParameter("the draft length must be in 1...\(session.maxBatch - 1) (got \(draftTokens))")
        }
        guard pMin >= 0, pMin <= 1 else { throw EngineError.invalidParameter("draft p-min must be in [0, 1] (got \(pMin))") }
        switch mode {
        case .draftModel(let s):
            try checkSameVocabulary(target: model, draft: s.model)
            return ModelDrafter(session: s, pMin: pMin)
        case .selfDraft(let layers):
            guard layers >= 1, layers < model.config.blockCount else {
                throw EngineError.invalidSetting(setting: "draftLayers", reason: "must be in 1...\(model.config.blockCount - 1) for this model (got \(layers))")
            }
            let s = try InferenceSession(model: model, contextLength: session.contextLength, threads: session.threads,
                                         kvType: session.kvType, activations: session.activations, layers: layers)
            return ModelDrafter(session: s, pMin: pMin)
        case .lookup(let n):
            guard n >= 1 else { throw EngineError.invalidSetting(setting: "lookupNgram", reason: "must be at least 1 (got \(n))") }
            return LookupDrafter(ngram: n, length: draftTokens)
        }
    }
}

/// Drafts with a model: the draft session follows the history (reusing its
/// cache up to the common prefix) and proposes tokens one decode step each.
public final class ModelDrafter: Drafter {
    let session: InferenceSession
    let pMin: Double
    /// Tokens in the draft session's cache.
    var cached: [Int32] = []

    public init(session: InferenceSession, pMin: Double) {
        self.session = session
        self.pMin = pMin
    }

    /// Makes the cache hold all of `history` but its last token (reusing the common prefix).
    func sync(_ history: [Int32]) throws {
        var common = 0
        while common < min(cached.count, history.count - 1), cached[common] == history[common] { common += 1 }
        session.truncate(to: min(common, session.position))
        cached = Array(history[..<session.position])
        if history.count - 1 > session.position, history.count <= session.contextLength {
            _ = try session.evaluate(Array(history[session.position..<(history.count - 1)]))
            cached = Array(history.dropLast())
        }
    }

    public func prefill(_ prompt: [Int32]) throws { try sync(prompt) }

    public func propose(after history: [Int32], limit: Int, sampler: inout Sampler) throws -> [DraftToken] {
        try sync(history)
        let room = session.contextLength - history.count
        let n = min(limit, room)
        guard n > 0 else { return [] }
        var logits = try session.evaluate(Array(history[session.position...]))
        cached = history
        var out: [DraftToken] = []
        var h = history
        while out.count < n {
            // Confidence of the draft's top token at temperature 1, as llama.cpp's --draft-p-min.
            if pMin > 0 {
                var probs = logits
                Ops.softmax(&probs, probs.count)
                if (probs.max() ?? 0) < Float(pMin) { break }
            }
            let q = sampler.distribution(logits, history: h[...])
            let tok = sampler.parameters.temperature <= 0 ? q[0].id : sampler.draw(q)
            out.append(DraftToken(token: tok, q: q))
            h.append(tok)
            if out.count == n { break }
            logits = try session.evaluate([tok])
            cached.append(tok)
        }
        return out
    }
}

/// Prompt lookup: find the most recent earlier place where the last k tokens
/// (k = ngram down to 2; 1 when ngram is 1) occurred and propose what followed it.
/// It should never cost more than plain decoding, so it drafts only what has
/// been paying: the draft length follows the recent acceptance (one more than
/// the last accepted run, doubling after a fully accepted round), and after
/// rounds that kept nothing it pauses for 2, 4, … 32 plain steps.
public final class LookupDrafter: Drafter {
    let ngram: Int
    /// Draft length for the next round (≤ the caller's limit).
    var length: Int
    /// Consecutive rounds that kept no drafted token, and plain steps left to pause.
    var misses = 0, pause = 0
    public init(ngram: Int, length: Int = 8) { self.ngram = ngram; self.length = max(1, length) }
    public func prefill(_ prompt: [Int32]) throws { misses = 0; pause = 0 }

    public func observe(drafted: Int, accepted: Int) {
        guard drafted > 0 else { return }
        if accepted == 0 {
            misses += 1
            pause = min(32, 1 << misses)
            length = 2
        } else {
            misses = 0
            length = accepted == drafted ? length * 2 : accepted + 1
        }
    }

    public func propose(after history: [Int32], limit: Int, sampler: inout Sampler) throws -> [DraftToken] {
        if pause > 0 { pause -= 1; return [] }
        let n = history.count, want = min(limit, max(1, length))
        for k in stride(from: min(ngram, n - 1), through: min(ngram, 2), by: -1) where k >= 1 {
            let tail = history[(n - k)...]
            var start = n - k - 1
            while start >= 0 {
                if history[start..<(start + k)].elementsEqual(tail) {
                    let follow = history[(start + k)..<min(n, start + k + want)]
                    if !follow.isEmpty { return follow.map { DraftToken(token: $0, q: [($0, 1)]) } }
                }
                start -= 1
            }
        }
        return []
    }
}

/// Counts of one generation with speculation.
public struct SpeculationStats: Sendable {
    public var drafted = 0
    public var accepted = 0
    /// Batched verification passes of the target.
    public var targetPasses = 0
    /// Wall time spent drafting and in the target's verification passes.
    public var draftSeconds = 0.0
    public var verifySeconds = 0.0
    /// The first round's plain one-token target pass (the baseline).
    public var plainStepSeconds = 0.0
    public var generatedTokens = 0
    public var generationSeconds = 0.0
    public var acceptanceRate: Double { drafted > 0 ? Double(accepted) / Double(drafted) : 0 }
    public var tokensPerTargetPass: Double { targetPasses > 0 ? Double(generatedTokens) / Double(targetPasses) : 0 }
    /// Estimated speed-up over plain decoding: the time plain decoding would take
    /// (tokens × the measured one-token step) over the time taken. An estimate
    /// from one step; tools/bench-speculative.py measures both sides.
    /// The step is the smaller of the first (plain, often cold) pass and the mean
    /// verification pass, which can only cost more than a plain step.
    public var estimatedSpeedup: Double {
        let step = min(plainStepSeconds, targetPasses > 0 ? verifySeconds / Double(targetPasses) : plainStepSeconds)
        return generationSeconds > 0 && step > 0 ? Double(generatedTokens) * step / generationSeconds : 0
    }
}

/// One round's verdict: the accepted draft prefix and the target's own next
/// token (a correction after a rejection, or a bonus token when all passed).
struct Verdict {
    var accepted: [Int32]
    var next: Int32
}

enum SpeculativeRule {
    /// Leviathan et al.'s rule. `p[i]` is the target's distribution for the
    /// position of draft token i (p has one more entry than `draft`: the bonus).
    static func verify(draft: [DraftToken], p: [[(id: Int32, p: Double)]], sampler: inout Sampler) -> Verdict {
        var accepted: [Int32] = []
        for (i, d) in draft.enumerated() {
            let pt = p[i].first { $0.id == d.token }?.p ?? 0
            let qt = d.probability(of: d.token)
            let ratio = qt > 0 ? pt / qt : 0
            // Accept with probability min(1, p/q); draw only when it is a real chance.
            let accept = ratio >= 1 ? true : (ratio <= 0 ? false : sampler.rng.unit() < ratio)
            if accept { accepted.append(d.token); continue }
            // Rejected: draw from the normalised positive part of p − q.
            var residual: [(id: Int32, p: Double)] = []
            var total = 0.0
            for e in p[i] {
                let r = max(0, e.p - d.probability(of: e.id))
                if r > 0 { residual.append((e.id, r)); total += r }
            }
            if residual.isEmpty { return Verdict(accepted: accepted, next: p[i][0].id) }
            residual = residual.map { ($0.id, $0.p / total) }
            let next = residual.count == 1 ? residual[0].id : sampler.draw(residual)
            return Verdict(accepted: accepted, next: next)
        }
        let last = p[draft.count]
        let next = last.count == 1 ? last[0].id : sampler.draw(last)
        return Verdict(accepted: accepted, next: next)
    }
}

/// Refuses a draft model whose vocabulary differs from the target's.
public func checkSameVocabulary(target: LlamaModel, draft: LlamaModel) throws {
    let a = target.tokenizer.pieces, b = draft.tokenizer.pieces
    guard a.count == b.count, target.config.vocabSize == draft.config.vocabSize else {
        throw EngineError.invalidParameter("the draft model's vocabulary (\(draft.config.vocabSize) tokens) differs from the target's (\(target.config.vocabSize)); speculation needs the same tokenizer")
    }
    if let i = a.indices.first(where: { a[$0] != b[$0] }) {
        throw EngineError.invalidParameter("the draft model's vocabulary differs from the target's at token \(i) (\"\(b[i])\" vs \"\(a[i])\"); speculation needs the same tokenizer")
    }
}
