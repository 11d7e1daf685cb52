// Text generation: prompt → tokens → prefill → sample/decode loop, streamed
// piece by piece (never a broken UTF-8 character, never part of a stop
// string), with timings. A callback API for the CLI and an AsyncSequence
// for apps; both cancellable.

import Dispatch
import WrenTokenizer
import Foundation

public struct GenerationOptions: Sendable {
    /// Tokens to generate at most (nil: until EOS or the context is full).
    public var maxTokens: Int? = 128
    /// Generation stops when the text contains one of these; the stop string is not returned.
    public var stop: [String] = []
    public var sampling = SamplingParameters()
    /// Parse special tokens (e.g. `<|im_start|>`) in the prompt.
    public var parseSpecial = true
    /// End-of-generation tokens are not sampled before this many tokens (RAFT's min-new-tokens).
    public var minTokens = 0
    public init(maxTokens: Int? = 128, stop: [String] = [], sampling: SamplingParameters = SamplingParameters(), minTokens: Int = 0) {
        self.maxTokens = maxTokens
        self.stop = stop
        self.sampling = sampling
        self.minTokens = minTokens
    }
}

public enum StopReason: String, Sendable {
    /// An end-of-generation token.
    case eos
    /// `maxTokens` reached, or the context filled up (`GenerationStats.contextFull`).
    case length
    /// A stop string appeared.
    case stop
    /// The caller cancelled.
    case cancelled
}

public struct GenerationStats: Sendable {
    public var promptTokens = 0
    /// Prompt tokens actually evaluated (the rest were reused from the KV cache).
    public var promptTokensEvaluated = 0
    public var generatedTokens = 0
    public var promptSeconds = 0.0
    public var generationSeconds = 0.0
    public var timeToFirstToken = 0.0
    public var contextFull = false
    /// Drafted/accepted counts and target passes, when speculating.
    public var speculation: SpeculationStats?
    public var promptTokensPerSecond: Double { promptSeconds > 0 ? Double(promptTokensEvaluated) / promptSeconds : 0 }
    public var generationTokensPerSecond: Double { generationSeconds > 0 ? Double(max(0, generatedTokens - 1)) / generationSeconds : 0 }
}

public struct GenerationResult: Sendable {
    public var text: String
    public var tokens: [Int32]
    public var stopReason: StopReason
    public var stats: GenerationStats
}

public enum GenerationEvent: Sendable {
    /// New text (may be empty while a character or a possible stop string is held back) and the token.
    case piece(String, token: Int32)
    case done(GenerationResult)
}

public final class Generator: @unchecked Sendable {
    public let model: LlamaModel
    public let session: InferenceSession
    /// Tokens currently in the session's KV cache, for prefix reuse across calls.
    private var cached: [Int32] = []
    /// Ids that end generation: EOS and end-of-turn control tokens.
    public let endTokens: Set<Int32>
    /// Speculative decoding, when set (`enableSpeculation`).
    public private(set) var speculation: SpeculationOptions?
    private var drafter: Drafter?

    /// Turns on speculative decoding for later `generate` calls.
    /// - Throws: a draft model with another vocabulary; bad draft lengths or layer counts.
    public func enableSpeculation(_ options: SpeculationOptions) throws {
        drafter = try options.makeDrafter(model: model, session: session)
        speculation = options
    }

    public init(model: LlamaModel, session: InferenceSession? = nil, contextLength: Int? = nil, threads: Int? = nil) throws {
        self.model = model
        self.session = try session ?? InferenceSession(model: model, contextLength: contextLength, threads: threads)
        endTokens = Self.endTokens(of: model)
    }

    /// EOS and the end-of-turn control tokens of the common chat formats that the vocabulary has.
    public static func endTokens(of model: LlamaModel) -> Set<Int32> {
        var ends = Set<Int32>()
        if let e = model.tokenizer.eosID { ends.insert(e) }
        for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "</s>", "<end_of_turn>"] {
            if let i = model.tokenizer.pieces.firstIndex(of: name), model.tokenizer.isControl(Int32(i)) { ends.insert(Int32(i)) }
        }
        return ends
    }

    /// Tokenizes `prompt` as the model expects (BOS per its flags, special tokens parsed).
    public func tokenize(_ prompt: String, parseSpecial: Bool = true) -> [Int32] {
        model.tokenizer.encode(prompt, addSpecial: true, parseSpecial: parseSpecial)
    }

    /// Generates from `prompt`, calling `onPiece` with each piece of text as it is decided.
    /// Return false from `onPiece` to stop (reason `.cancelled`).
    public func generate(prompt: String, options: GenerationOptions = .init(),
                         onPiece: (String, Int32) -> Bool = { _, _ in true }) throws -> GenerationResult {
        try generate(tokens: tokenize(prompt, parseSpecial: options.parseSpecial), options: options, onPiece: onPiece)
    }

    public func generate(tokens prompt: [Int32], options: GenerationOptions = .init(),
                         onPiece: (String, Int32) -> Bool = { _, _ in true }) throws -> GenerationResult {
        try options.sampling.validate(vocabSize: model.config.vocabSize)
        if let m = options.maxTokens, m < 0 { throw EngineError.invalidParameter("the number of tokens to predict must be >= 0 (got \(m))") }
        if options.minTokens > 0 && speculation != nil {
            throw EngineError.invalidParameter("a minimum number of new tokens does not combine with speculative decoding")
        }
        guard !prompt.isEmpty else { throw EngineError.emptyPrompt }
        guard prompt.count <= session.contextLength else {
            throw EngineError.promptTooLong(tokens: prompt.count, context: session.contextLength)
        }
        var stats = GenerationStats()
        stats.promptTokens = prompt.count
        let t0 = DispatchTime.now().uptimeNanoseconds
        func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }

        // Reuse the common prefix of the KV cache; evaluate at least the last prompt token.
        var common = 0
        while common < min(cached.count, prompt.count - 1), cached[common] == prompt[common] { common += 1 }
        session.truncate(to: min(common, session.position))
        cached = Array(prompt[..<session.position])
        let rest = Array(prompt[session.position...])
        stats.promptTokensEvaluated = rest.count
        var logits = try session.evaluate(rest)
        cached += rest
        try drafter?.prefill(prompt)
        stats.promptSeconds = now()

        var sampler = Sampler(options.sampling)
        var history = prompt
        var out: [Int32] = []
        var decoder = StreamingDecoder(model.tokenizer, skipSpecial: true, atStart: false)
        var text = StopText(stops: options.stop)
        var reason = StopReason.length
        let genStart = now()
        // Tokens already decided by a speculative round, next first. All but the
        // last are in the KV cache; the last is the target's own pick.
        var queue: [Int32] = []
        var spec = SpeculationStats()
        let V = model.config.vocabSize
        loop: while true {
            if let m = options.maxTokens, out.count >= m { reason = .length; break }
            if out.count < options.minTokens { for e in endTokens { logits[Int(e)] = -.infinity } }
            let tok = queue.isEmpty ? sampler.sample(logits, history: history[...]) : queue.removeFirst()
            if out.isEmpty { stats.timeToFirstToken = now() }
            out.append(tok)
            history.append(tok)
            if endTokens.contains(tok) { reason = .eos; break }
            let piece = text.append(try decoder.append(tok))
            if text.stopped {
                _ = onPiece(piece, tok)
                reason = .stop
                break loop
            }
            if !onPiece(piece, tok) { reason = .cancelled; break }
            if !queue.isEmpty { continue }     // an accepted draft token: already evaluated
            if session.position >= session.contextLength { reason = .length; stats.contextFull = true; break }
            guard let drafter, let specOptions = speculation else {
                logits = try session.evaluate([tok])
                cached.append(tok)
                continue
            }
            // One speculative round: draft, verify [tok, drafts…] in one target pass, keep the accepted prefix.
            // The first round is a plain decode step, timed as the baseline for the speed-up estimate.
            var limit = spec.targetPasses == 0 ? 0 : min(specOptions.draftTokens, session.contextLength - session.position - 1)
            if let m = options.maxTokens { limit = min(limit, m - out.count) }
            let td = now()
            let draft = limit > 0 ? try drafter.propose(after: history, limit: limit, sampler: &sampler) : []
            let tv = now()
            let all = try session.evaluate([tok] + draft.map(\.token), allLogits: true, decodeKernels: true)
            spec.draftSeconds += tv - td
            spec.verifySeconds += now() - tv
            if spec.targetPasses == 0 { spec.plainStepSeconds = now() - tv }
            cached.append(tok)
            spec.targetPasses += 1
            var h = history
            var p: [[(id: Int32, p: Double)]] = []
            for i in 0...draft.count {
                p.append(sampler.distribution(Array(all[(i * V)..<((i + 1) * V)]), history: h[...]))
                if i < draft.count { h.append(draft[i].token) }
            }
            let verdict = SpeculativeRule.verify(draft: draft, p: p, sampler: &sampler)
            spec.drafted += draft.count
            spec.accepted += verdict.accepted.count
            drafter.observe(drafted: draft.count, accepted: verdict.accepted.count)
            session.truncate(to: session.position - (draft.count - verdict.accepted.count))
            cached += verdict.accepted
            queue = verdict.accepted + [verdict.next]
        }
        if speculation != nil {
            spec.generatedTokens = out.count
            spec.generationSeconds = now() - genStart
            stats.speculation = spec
        }
        if reason != .stop {
            let rest = text.finish(decoder.flush())
            if !rest.isEmpty { _ = onPiece(rest, out.last ?? -1) }
        }
        stats.generatedTokens = out.count
        stats.generationSeconds = now() - genStart
        return GenerationResult(text: text.text, tokens: out, stopReason: reason, stats: stats)
    }

    /// Generation as an AsyncSequence of pieces followed by `.done`; cancelling the
    /// consuming task stops generation after the current token.
    public func stream(prompt: String, options: GenerationOptions = .init()) -> AsyncThrowingStream<GenerationEvent, Error> {
        AsyncThrowingStream { continuation in
            let worker = Thread { [self] in
                do {
                    let result = try self.generate(prompt: prompt, options: options) { piece, tok in
                        if case .terminated = continuation.yield(.piece(piece, token: tok)) { return false }
                        return true
                    }
                    continuation.yield(.done(result))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            worker.stackSize = 8 << 20
            worker.start()
        }
    }
}
