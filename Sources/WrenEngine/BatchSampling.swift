// Many generations decoded together: each job (a prompt and its options, its
// own seed among them) gets one sequence of a multi-sequence session, and every
// step decodes one token of each running job in one pass
// (`InferenceSession.decode`), so the weights are read once per step for all
// of them. Jobs that share a prompt evaluate it once: the first one's cache is
// copied to the others (`copySequence`) and they start from the same logits.
// When a job finishes, the next waiting one takes its sequence (continuous
// batching); a job whose prompt was the last one evaluated whole copies it, and
// any other reuses the longest cached prefix of any sequence.
//
// A job's tokens are those `Generator.generate` gives for it alone with the
// same options: its logits are the same bits (see Session.swift), and its
// sampler is its own, seeded by its options. (A job that joins later and reuses
// part of another sequence's prefix evaluates only the rest of its prompt;
// that rest runs on other kernels than a whole prompt would, so its tokens can
// differ in the last bits from a lone run's. Jobs started together are exact.)

import Dispatch
import WrenKernels
import WrenTokenizer

/// One generation of a batch.
public struct BatchJob: Sendable {
    public var prompt: [Int32]
    public var options: GenerationOptions
    public init(prompt: [Int32], options: GenerationOptions) {
        self.prompt = prompt
        self.options = options
    }
}

public final class BatchGenerator: @unchecked Sendable {
    public let model: LlamaModel
    /// The session; its `sequences` is the most jobs decoded at once.
    public let session: InferenceSession
    /// Ids that end generation (as `Generator`'s).
    public let endTokens: Set<Int32>
    /// The tokens in each sequence's cache.
    private var cached: [[Int32]]
    /// The last prompt evaluated whole, and its last token's logits: a job with the same
    /// prompt that starts later copies its cache from a sequence that still holds it.
    private var lastPrompt: (tokens: [Int32], logits: [Float])?

    /// - Parameters:
    ///   - width: jobs decoded together (the session's sequences).
    ///   - contextLength: per sequence: prompt plus generated tokens.
    public convenience init(model: LlamaModel, width: Int, contextLength: Int? = nil, threads: Int? = nil, kvType: KVCacheType = .f16,
                            activations: Activations = .q8) throws {
        self.init(model: model, session: try InferenceSession(model: model, contextLength: contextLength, threads: threads,
                                                              maxBatch: max(512, width), kvType: kvType, activations: activations,
                                                              sequences: width))
    }

    /// Over a session of several sequences (its caches are taken over: nothing in them is reused).
    public init(model: LlamaModel, session: InferenceSession) {
        self.model = model
        self.session = session
        session.reset()
        endTokens = Generator.endTokens(of: model)
        cached = Array(repeating: [], count: session.sequences)
    }

    /// Runs every job and returns their results in order. `onDone(i, result)` is
    /// called as job i finishes (results arrive out of order).
    public func generate(_ jobs: [BatchJob], onDone: (Int, GenerationResult) -> Void = { _, _ in }) throws -> [GenerationResult] {
        for j in jobs {
            try j.options.sampling.validate(vocabSize: model.config.vocabSize)
            if let m = j.options.maxTokens, m < 0 { throw EngineError.invalidParameter("the number of tokens to predict must be >= 0 (got \(m))") }
            guard !j.prompt.isEmpty else { throw EngineError.emptyPrompt }
            guard j.prompt.count <= session.contextLength else {
                throw EngineError.promptTooLong(tokens: j.prompt.count, context: session.contextLength)
            }
        }
        let V = model.config.vocabSize
        var results = [GenerationResult?](repeating: nil, count: jobs.count)
        var running: [Int: Running] = [:]        // sequence → its job
        var next = 0                              // the next job to start
        var reused = 0                            // prompt tokens the last prefill found cached
        let t0 = DispatchTime.now().uptimeNanoseconds
        func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }

        func finish(_ s: Int) {
            guard var r = running.removeValue(forKey: s) else { return }
            let result = r.result(now: now())
            results[r.job] = result
            onDone(r.job, result)
        }
        // Fills free sequences: a group of waiting jobs with the same prompt evaluates it once.
        func start() throws {
            while next < jobs.count, let free = (0..<session.sequences).first(where: { running[$0] == nil }) {
                let prompt = jobs[next].prompt
                let began = now()
                let logits = try prefill(prompt, into: free)
                var group = [free]
                while next + group.count < jobs.count, jobs[next + group.count].prompt == prompt,
                      let s = (0..<session.sequences).first(where: { running[$0] == nil && !group.contains($0) }) {
                    session.copySequence(from: free, to: s)
                    cached[s] = cached[free]
                    group.append(s)
                }
                let evaluated = session.positions[free]
                for s in group {
                    var r = Running(job: next, prompt: prompt, options: jobs[next].options, tokenizer: model.tokenizer, started: began)
                    r.stats.promptTokens = prompt.count
                    r.stats.promptTokensEvaluated = s == free ? evaluated - reused : 0
                    r.stats.promptSeconds = now() - began
                    r.logits = logits
                    running[s] = r
                    next += 1
                }
            }
        }
        // Evaluates `prompt` in sequence `s`, reusing the longest common prefix cached in any sequence.
        func prefill(_ prompt: [Int32], into s: Int) throws -> [Float] {
            if let last = lastPrompt, last.tokens == prompt,
               let i = cached.indices.first(where: { cached[$0].count >= prompt.count && cached[$0].starts(with: prompt) }) {
                session.copySequence(from: i, to: s)
                session.truncate(to: prompt.count, sequence: s)
                cached[s] = prompt
                reused = prompt.count
                return last.logits
            }
            var best = 0, from = s
            for (i, c) in cached.enumerated() {
                var n = 0
                while n < min(c.count, prompt.count - 1, session.positions[i]), c[n] == prompt[n] { n += 1 }
                if n > best { best = n; from = i }
            }
            if from != s { session.copySequence(from: from, to: s) }
            session.truncate(to: best, sequence: s)
            reused = best
            let logits = try session.evaluate(Array(prompt[best...]), sequence: s)
            cached[s] = prompt
            if best == 0 { lastPrompt = (prompt, logits) }
            return logits
        }

        try start()
        while !running.isEmpty {
            // Each running job picks its next token from its logits; finished ones free their sequence.
            var steps: [(sequence: Int, token: Int32)] = []
            for s in running.keys.sorted() {
                var r = running[s]!
                if let m = r.options.maxTokens, r.out.count >= m {
                    running[s] = r
                    finish(s)
                    continue
                }
                let tok = r.pick(endTokens: endTokens)
                if r.out.count == 1 { r.stats.timeToFirstToken = now() - r.started }
                if let reason = try r.accept(tok, endTokens: endTokens) {
                    r.reason = reason
                    running[s] = r
                    finish(s)
                    continue
                }
                if session.positions[s] >= session.contextLength {
                    r.reason = .length
                    r.stats.contextFull = true
                    running[s] = r
                    finish(s)
                    continue
                }
                running[s] = r
                steps.append((s, tok))
            }
            if !steps.isEmpty {
                let all = try session.decode(steps)
                for (i, step) in steps.enumerated() {
                    running[step.sequence]!.logits = Array(all[(i * V)..<((i + 1) * V)])
                    cached[step.sequence].append(step.token)
                }
            }
            try start()
        }
        return results.map { $0! }
    }

    /// One job while it runs: its sampler, tokens, text and stop checks.
    struct Running {
        let job: Int
        let options: GenerationOptions
        var sampler: Sampler
        var history: [Int32]
        var out: [Int32] = []
        var decoder: StreamingDecoder
        var text = ""
        var logits: [Float] = []
        var reason = StopReason.length
        var stats = GenerationStats()
        let started: Double
        var generationStart = 0.0

        init(job: Int, prompt: [Int32], options: GenerationOptions, tokenizer: Tokenizer, started: Double) {
            self.job = job
            self.options = options
            sampler = Sampler(options.sampling)
            history = prompt
            decoder = StreamingDecoder(tokenizer, skipSpecial: true, atStart: false)
            self.started = started
        }

        /// The next token (end tokens banned until `minTokens`).
        mutating func pick(endTokens: Set<Int32>) -> Int32 {
            if out.count < options.minTokens { for e in endTokens { logits[Int(e)] = -.infinity } }
            let t = sampler.sample(logits, history: history[...])
            out.append(t)
            history.append(t)
            return t
        }

        /// Takes token `tok` (already in `out`); a stop reason when the job is done.
        mutating func accept(_ tok: Int32, endTokens: Set<Int32>) throws -> StopReason? {
            if endTokens.contains(tok) { return .eos }
            text += try decoder.append(tok)
            for s in options.stop where !s.isEmpty {
                if let r = text.range(of: s) {
                    text = String(text[..<r.lowerBound])
                    return .stop
                }
            }
            if let m = options.maxTokens, out.count >= m { return .length }
            return nil
        }

        mutating func result(now: Double) -> GenerationResult {
            if reason != .stop { text += decoder.flush() }
            stats.generatedTokens = out.count
            stats.generationSeconds = now - started - stats.promptSeconds
            return GenerationResult(text: text, tokens: out, stopReason: reason, stats: stats)
        }
    }
}
