// Perplexity of a token stream, two ways:
//   - llama.cpp's `llama-perplexity` (the default): cut the tokens into
//     non-overlapping chunks of `context`, start each chunk from an empty
//     cache (its first token replaced by BOS when the tokenizer adds one), and
//     score only the second half of each chunk: positions context/2 ..< context−1
//     predict the next token. Numbers are then comparable with llama.cpp's.
//   - Hugging Face's sliding window (`stride`): windows of `context` tokens
//     starting every `stride` tokens; each token is scored once, in the first
//     window that has it as a target past the previous window's end.
// ppl = exp(mean NLL); its standard error is llama.cpp's: exp(mean)·√(var/(n−1)).

import Foundation
import WrenEngine
import WrenTokenizer

public struct PerplexityOptions: Sendable {
    /// Tokens per chunk (window).
    public var context: Int
    /// Hugging Face sliding window with this stride (≤ context); nil: llama.cpp's chunks.
    public var stride: Int?
    /// Width of the position buckets of `PerplexityResult.byPosition` (positions within a chunk).
    public var bucket: Int?
    public init(context: Int = 512, stride: Int? = nil, bucket: Int? = nil) {
        self.context = context; self.stride = stride; self.bucket = bucket
    }
}

public struct PerplexityResult: Sendable, Codable {
    public var method: String
    public var context: Int
    public var stride: Int?
    public var chunks: Int
    public var tokens: Int
    /// Tokens scored.
    public var scored: Int
    /// Σ −log p over scored tokens (nats).
    public var nll: Double
    public var perplexity: Double
    /// Standard error of `perplexity`.
    public var perplexityError: Double
    /// UTF-8 bytes of the scored tokens' text.
    public var bytes: Int
    public var bitsPerByte: Double
    public var seconds: Double
    /// Per bucket of positions within a chunk: [first position, end, tokens scored, ppl].
    public var byPosition: [Bucket]

    public struct Bucket: Sendable, Codable {
        public var from: Int, to: Int, scored: Int, perplexity: Double
    }
}

/// One chunk's (window's) score, for per-item output.
public struct ChunkScore: Sendable, Codable {
    public var chunk: Int
    /// Index of the chunk's first token in the text.
    public var start: Int
    public var scored: Int
    public var nll: Double
    public var perplexity: Double
}

/// Progress after each chunk: chunks done, chunk count, running perplexity, tokens per second.
public typealias PerplexityProgress = (_ done: Int, _ total: Int, _ perplexity: Double, _ tokensPerSecond: Double) -> Void

public enum Perplexity {
    /// Scores `tokens` (the whole text, tokenized with BOS when the tokenizer adds
    /// one) with `session` (context ≥ options.context), resetting it per chunk.
    /// - Throws: `EvalError` when the text is too short for one chunk (two for llama.cpp's method).
    public static func run(_ tokens: [Int32], session: InferenceSession, options o: PerplexityOptions, source: String,
                           progress: PerplexityProgress? = nil, perChunk: ((ChunkScore) -> Void)? = nil) throws -> PerplexityResult {
        let model = session.model, tok = model.tokenizer, V = model.config.vocabSize
        let c = o.context
        guard c >= 4 else { throw EvalError(source, "the context must be at least 4 tokens (got \(c))") }
        guard c <= session.contextLength else {
            throw EvalError(source, "the context \(c) exceeds the session's \(session.contextLength)")
        }
        // (window start, tokens, first target index within the window)
        var windows: [(start: Int, ids: [Int32], first: Int)] = []
        if let s = o.stride {
            guard s >= 1, s <= c else { throw EvalError(source, "the stride must be in 1...\(c) (got \(s))") }
            guard tokens.count >= 2 else { throw EvalError(source, "the text is \(tokens.count) token(s); perplexity needs at least 2") }
            var prevEnd = 0, begin = 0
            while true {
                let end = min(begin + c, tokens.count)
                windows.append((begin, Array(tokens[begin..<end]), max(prevEnd, begin + 1) - begin))
                prevEnd = end
                if end == tokens.count { break }
                begin += s
            }
        } else {
            guard tokens.count >= 2 * c else {
                throw EvalError(source, "the text is \(tokens.count) tokens; llama.cpp's method needs at least 2 × the context (\(2 * c)); use a smaller -c")
            }
            let bos = tok.addBOS ? tok.bosID : nil
            for i in 0..<(tokens.count / c) {
                var ids = Array(tokens[(i * c)..<((i + 1) * c)])
                if let bos { ids[0] = bos }
                windows.append((i * c, ids, c / 2 + 1))
            }
        }
        let bucket = o.bucket ?? c
        guard bucket >= 1 else { throw EvalError(source, "the bucket width must be at least 1") }
        var nll: Double = 0, nll2: Double = 0, scored = 0, bytes = 0
        var buckets = [(scored: Int, nll: Double)](repeating: (0, 0), count: (c + bucket - 1) / bucket)
        let t0 = Date()
        for (w, win) in windows.enumerated() {
            session.reset()
            // Rows first−1 ..< n−1 predict targets first ..< n.
            let n = win.ids.count
            guard win.first < n else { continue }
            // The window goes in pieces of the session's batch (the same chunks one call would
            // make, so the same numbers), each scored as it comes: logits never exceed one
            // piece (512 × vocab floats) however long the window.
            var lps: [Double] = []
            lps.reserveCapacity(n - win.first)
            var i = 0
            while i < n - 1 {
                let end = min(n - 1, i + session.maxBatch)
                let piece = Array(win.ids[i..<end])
                if end <= win.first - 1 {
                    _ = try session.evaluate(piece)
                } else {
                    let from = max(0, win.first - 1 - i)
                    let logits = try session.evaluate(piece, logitsFrom: from)
                    let targets = Array(tokens[(win.start + i + from + 1)..<(win.start + end + 1)])
                    lps += Scoring.logProbabilities(logits, vocab: V, targets: targets, threads: session.threads)
                }
                i = end
            }
            let targets = Array(tokens[(win.start + win.first)..<(win.start + n)])
            for (k, lp) in lps.enumerated() {
                nll -= lp; nll2 += lp * lp
                let b = (win.first + k) / bucket
                buckets[b].scored += 1; buckets[b].nll -= lp
            }
            scored += lps.count
            bytes += Scoring.textBytes(targets, tokenizer: tok)
            let chunkNLL = -lps.reduce(0, +)
            perChunk?(ChunkScore(chunk: w, start: win.start, scored: lps.count, nll: chunkNLL,
                                 perplexity: Foundation.exp(chunkNLL / Double(max(lps.count, 1)))))
            let secs = Date().timeIntervalSince(t0)
            progress?(w + 1, windows.count, Foundation.exp(nll / Double(max(scored, 1))), Double((w + 1) * c) / max(secs, 1e-9))
        }
        let mean = nll / Double(max(scored, 1))
        let variance = nll2 / Double(max(scored, 1)) - mean * mean
        let stderr = variance > 0 && scored > 1 ? (variance / Double(scored - 1)).squareRoot() : 0
        let ppl = Foundation.exp(mean)
        return PerplexityResult(
            method: o.stride == nil ? "llama.cpp" : "sliding-window", context: c, stride: o.stride, chunks: windows.count,
            tokens: tokens.count, scored: scored, nll: nll, perplexity: ppl, perplexityError: ppl * stderr, bytes: bytes,
            bitsPerByte: bytes > 0 ? nll / Foundation.log(2) / Double(bytes) : 0, seconds: Date().timeIntervalSince(t0),
            byPosition: buckets.enumerated().compactMap { b, v in
                v.scored == 0 ? nil : .init(from: b * bucket, to: min(c, (b + 1) * bucket), scored: v.scored,
                                            perplexity: Foundation.exp(v.nll / Double(v.scored)))
            })
    }
}

/// Bad evaluation input: names the file (and line or item when there is one).
public struct EvalError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int?
    public let message: String
    public init(_ file: String, line: Int? = nil, _ message: String) { self.file = file; self.line = line; self.message = message }
    public var description: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(message)" }
}
