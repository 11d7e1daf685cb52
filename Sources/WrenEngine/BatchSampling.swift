// Many generations decoded together (continuous batching). `BatchScheduler`
// gives each job one sequence (a "slot") of a multi-sequence session; each
// `step()` admits waiting jobs into free slots, lets every generating job pick
// its next token, and runs one pass for those tokens and one prompt chunk of the
// oldest job still reading its prompt (`InferenceSession.evaluate(chunk:with:)`;
// two passes, `evaluate` then `decode`, where the session cannot share one), so
// the weights are read once per step for all of them and a long prompt never
// stalls the others for more than one chunk. Jobs are added and cancelled from any thread while
// another runs the steps (the server's worker, or `BatchGenerator.generate`).
//
// Reuse of evaluated prompts:
//   - jobs with the same prompt admitted together evaluate it once: the others
//     follow the first and copy its cache (`copySequence`) when it is done;
//   - a job whose prompt was the last one evaluated whole copies it from any
//     sequence that still holds it, with its logits;
//   - any other job reuses the longest prefix cached in any sequence, preferring
//     a free slot whose own cache shares the most (a conversation's next turn
//     returns to its slot, whose cache holds the turns before).
//
// Exactness: a job's tokens are those `Generator.generate` gives for it alone
// with the same options when its prompt is evaluated in the same chunks: its
// logits are the same bits (see Session.swift) and its sampler is its own,
// seeded by its options. With `alignedReuse` a reused prefix is cut down to a
// multiple of the chunk size, so the rest is evaluated in exactly the chunks a
// fresh evaluation would use, and every job is exact whatever it found cached
// (the server does this, so parallel and sequential requests agree). Without
// it (`BatchGenerator`'s default, chunk = the session's batch limit) a job that
// reuses part of another's prefix evaluates only the rest, which may run on
// other kernels than the whole prompt would (last-bit differences); jobs
// started together, or with prompts short enough for the decode kernels, are exact.
//
// Speculative decoding (`enableSpeculation`): when a greedy job is the only one
// generating, a step drafts tokens for it and verifies them in one pass on the
// decode kernels, whose rows are the bits of single decode steps, so its tokens
// are exactly those without speculation. With two or more jobs generating, the
// batched step is the better use of the weights, and speculation waits.

import Foundation
import WrenKernels
import WrenTokenizer

/// One generation of a batch.
public struct BatchJob: Sendable {
    public var prompt: [Int32]
    public var options: GenerationOptions
    /// Log-probabilities of each generated token, with this many most likely alternatives (nil: none).
    public var logprobs: Int?
    /// Also the log-probabilities of the prompt's tokens (after the first), with `logprobs ?? 0`
    /// alternatives: the prompt is then evaluated whole, without reuse.
    public var promptLogprobs = false
    /// JSON mode: the generated text is constrained to one JSON object, and the job ends when it closes
    /// (stop reason `.eos`). See JSONGrammar.swift.
    public var json = false
    public init(prompt: [Int32], options: GenerationOptions, logprobs: Int? = nil, promptLogprobs: Bool = false, json: Bool = false) {
        self.prompt = prompt
        self.options = options
        self.logprobs = logprobs
        self.promptLogprobs = promptLogprobs
        self.json = json
    }
}

/// What a job reports as it runs (on the thread running the steps; keep handlers short).
public enum BatchEvent: Sendable {
    /// The prompt's tokens after the first with their log-probabilities (jobs with `promptLogprobs`), once read.
    case prompt([TokenLogprob])
    /// A generated token and the text it makes certain (possibly empty), with its log-probability when asked.
    case token(Int32, text: String, logprob: TokenLogprob?)
    /// The job ended (stop reason `.cancelled` when cancelled).
    case done(GenerationResult)
    /// The job was refused (an invalid option or prompt).
    case failed(Error)
}

public final class BatchScheduler: @unchecked Sendable {
    public let model: LlamaModel
    /// The session; its `sequences` is the most jobs decoded at once (the slots).
    public let session: InferenceSession
    /// Prompt tokens evaluated per step (at most the session's batch limit).
    public let promptChunk: Int
    /// Steps whose prompt chunk shared the decode pass (one pass over the weights for both).
    public private(set) var sharedPasses = 0
    /// Cut reused prefixes to a multiple of `promptChunk` (every job exact; see the top of this file).
    public let alignedReuse: Bool
    /// Ids that end generation (as `Generator`'s).
    public let endTokens: Set<Int32>

    public typealias Handler = @Sendable (BatchEvent) -> Void

    // Shared with the threads that add and cancel jobs.
    private let lock = NSCondition()
    private var inbox: [Waiting] = []
    private var cancelled: Set<Int> = []
    private var nextTicket = 0
    private var activeCount = 0
    private var waitingCount = 0

    // Owned by the thread running the steps.
    private var waiting: [Waiting] = []
    private var slots: [Slot?]
    /// The tokens in each sequence's cache (always `session.positions[s]` of them).
    private var cached: [[Int32]]
    /// The last prompt evaluated whole, and its last token's logits.
    private var lastPrompt: (tokens: [Int32], logits: [Float])?
    private let t0 = DispatchTime.now().uptimeNanoseconds
    private var admitted = 0
    /// Speculative decoding for a lone greedy job, when enabled.
    public private(set) var speculation: SpeculationOptions?
    private var drafter: Drafter?
    /// Each token's bytes and whether it is a control token (built for the first JSON job).
    private lazy var vocabulary: (bytes: [[UInt8]], control: [Bool]) = {
        let t = model.tokenizer
        let n = min(t.vocabularySize, model.config.vocabSize)
        return ((0..<n).map { t.bytes(of: Int32($0)) }, (0..<n).map { t.isControl(Int32($0)) })
    }()

    struct Waiting {
        let ticket: Int
        let job: BatchJob
        let handler: Handler
        let arrived: Double
    }

    enum Phase {
        /// Reading the prompt; the next position to evaluate.
        case prompt(next: Int)
        /// Waiting for slot `leader`, which reads the same prompt.
        case follow(leader: Int)
        /// Generating.
        case decode
    }

    struct Slot {
        let ticket: Int
        let job: BatchJob
        let handler: Handler
        let order: Int
        var phase: Phase
        var run: Running
        var promptLogprobs: [TokenLogprob] = []
        /// Log-probabilities of the prompt's next token are taken from this row (the last of the previous chunk).
        var pendingRow: [Float]?
    }

    /// - Parameters:
    ///   - promptChunk: prompt tokens per step (default: the session's batch limit).
    ///   - alignedReuse: see the top of this file.
    public convenience init(model: LlamaModel, session: InferenceSession, promptChunk: Int? = nil, alignedReuse: Bool = false) throws {
        let c = promptChunk ?? session.maxBatch
        guard c >= 1, c <= session.maxBatch else {
            throw EngineError.invalidParameter("the prompt chunk must be in 1...\(session.maxBatch) (got \(c))")
        }
        self.init(model: model, session: session, chunk: c, alignedReuse: alignedReuse)
    }

    /// `chunk` in 1...session.maxBatch.
    init(model: LlamaModel, session: InferenceSession, chunk c: Int, alignedReuse: Bool) {
        self.model = model
        self.session = session
        self.promptChunk = c
        self.alignedReuse = alignedReuse
        session.reset()
        endTokens = Generator.endTokens(of: model)
        slots = Array(repeating: nil, count: session.sequences)
        cached = Array(repeating: [], count: session.sequences)
    }

    func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }

    /// Turns on speculative decoding for greedy jobs that generate alone (see the top of this file).
    /// - Throws: as `Generator.enableSpeculation`.
    public func enableSpeculation(_ options: SpeculationOptions) throws {
        drafter = try options.makeDrafter(model: model, session: session)
        speculation = options
    }

    /// Throws when a job cannot run on this scheduler (bad options, empty or too long a prompt, an unknown id).
    public func validate(_ job: BatchJob) throws {
        try job.options.sampling.validate(vocabSize: model.config.vocabSize)
        if let m = job.options.maxTokens, m < 0 { throw EngineError.invalidParameter("the number of tokens to predict must be >= 0 (got \(m))") }
        guard !job.prompt.isEmpty else { throw EngineError.emptyPrompt }
        guard job.prompt.count <= session.contextLength else {
            throw EngineError.promptTooLong(tokens: job.prompt.count, context: session.contextLength)
        }
        if let bad = job.prompt.first(where: { $0 < 0 || Int($0) >= model.config.vocabSize }) {
            throw EngineError.invalidToken(bad, vocabularySize: model.config.vocabSize)
        }
        if let k = job.logprobs, k < 0 || k > 100 { throw EngineError.invalidParameter("logprobs alternatives must be in 0...100 (got \(k))") }
    }

    /// Queues a job (any thread); its events go to `handler`. Returns its ticket, for `cancel`.
    @discardableResult
    public func add(_ job: BatchJob, handler: @escaping Handler) -> Int {
        lock.lock()
        defer { lock.unlock() }
        nextTicket += 1
        inbox.append(Waiting(ticket: nextTicket, job: job, handler: handler, arrived: now()))
        waitingCount += 1
        lock.signal()
        return nextTicket
    }

    /// Cancels a job (any thread): a waiting one ends at once, a running one after the current step,
    /// with stop reason `.cancelled` and the tokens it had. Unknown or finished tickets are ignored.
    public func cancel(_ ticket: Int) {
        lock.lock()
        cancelled.insert(ticket)
        lock.signal()
        lock.unlock()
    }

    /// Jobs waiting for a slot, and jobs in slots (any thread).
    public var load: (waiting: Int, active: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (waitingCount, activeCount)
    }

    /// Blocks until a job is added or cancelled, or `timeout` seconds pass (any thread).
    public func waitForWork(timeout: Double) {
        lock.lock()
        if inbox.isEmpty && cancelled.isEmpty { _ = lock.wait(until: Date(timeIntervalSinceNow: timeout)) }
        lock.unlock()
    }

    /// One step: takes new jobs and cancellations, admits waiting jobs into free slots,
    /// evaluates one prompt chunk, decodes one token of every generating job.
    /// Returns false when there was nothing to do (no job waiting or running).
    @discardableResult
    public func step() -> Bool {
        lock.lock()
        waiting += inbox
        inbox = []
        let cancels = cancelled
        cancelled = []
        lock.unlock()

        if !cancels.isEmpty { applyCancellations(cancels) }
        admit()
        // Generating jobs pick their next tokens first; the next prompt chunk then
        // shares their decode pass where the session allows it (one pass over the
        // weights instead of two, with the same results), else runs on its own.
        let chunk = nextChunk()
        let (steps, decoding) = pickTokens()
        if let ch = chunk, let reader = slots[ch.slot], !steps.isEmpty, !reader.job.promptLogprobs,
           session.canShare(chunkTokens: ch.tokens.count, steps: steps.count) {
            let last = ch.end == reader.job.prompt.count
            do {
                let (c, all) = try session.evaluate(chunk: ch.tokens, sequence: ch.slot, chunkLogits: last, with: steps)
                sharedPasses += 1
                finishChunk(ch, logits: c)
                finishDecode(steps, logits: all)
            } catch {
                // Not expected after validation: the jobs in the pass fail.
                fail(ch.slot, error)
                for step in steps { fail(step.sequence, error) }
            }
        } else {
            if let ch = chunk { evaluateChunk(ch) }
            if !steps.isEmpty { decodePass(steps) }
        }
        let prompting = chunk != nil
        lock.lock()
        activeCount = slots.reduce(0) { $0 + ($1 == nil ? 0 : 1) }
        waitingCount = waiting.count + inbox.count
        lock.unlock()
        return prompting || decoding || !waiting.isEmpty
    }

    private func applyCancellations(_ tickets: Set<Int>) {
        waiting.removeAll { w in
            guard tickets.contains(w.ticket) else { return false }
            var r = Running(prompt: w.job.prompt, options: w.job.options, tokenizer: model.tokenizer, started: w.arrived)
            r.reason = .cancelled
            w.handler(.done(r.result(now: now())))
            return true
        }
        for s in slots.indices {
            guard let slot = slots[s], tickets.contains(slot.ticket) else { continue }
            // Followers of a cancelled leader take over its partly read prompt.
            if case .prompt(let next) = slot.phase {
                let followers = slots.indices.filter { if case .follow(let l)? = slots[$0]?.phase { return l == s } else { return false } }
                if let heir = followers.first {
                    session.copySequence(from: s, to: heir)
                    cached[heir] = cached[s]
                    slots[heir]!.phase = .prompt(next: next)
                    for f in followers.dropFirst() { slots[f]!.phase = .follow(leader: heir) }
                }
            }
            slots[s]!.run.reason = .cancelled
            finish(s)
        }
    }

    private func finish(_ s: Int) {
        guard var slot = slots[s] else { return }
        slots[s] = nil
        slot.handler(.done(slot.run.result(now: now())))
    }

    /// Ends slot `s` (and any job following it) with `error`; its cache is forgotten.
    private func fail(_ s: Int, _ error: Error) {
        for f in slots.indices {
            guard case .follow(let l)? = slots[f]?.phase, l == s else { continue }
            fail(f, error)
        }
        guard let slot = slots[s] else { return }
        slots[s] = nil
        session.truncate(to: 0, sequence: s)
        cached[s] = []
        slot.handler(.failed(error))
    }

    /// Fills free slots from the waiting jobs, oldest first.
    private func admit() {
        while !waiting.isEmpty {
            let free = slots.indices.filter { slots[$0] == nil }
            guard !free.isEmpty else { return }
            let w = waiting.removeFirst()
            do { try validate(w.job) } catch {
                w.handler(.failed(error))
                continue
            }
            let prompt = w.job.prompt
            // The free slot whose own cache shares the most with the prompt.
            var s = free[0], shared = common(cached[s], prompt)
            for f in free.dropFirst() where common(cached[f], prompt) > shared { s = f; shared = common(cached[f], prompt) }
            var slot = Slot(ticket: w.ticket, job: w.job, handler: w.handler, order: admitted, phase: .decode,
                            run: Running(prompt: prompt, options: w.job.options, tokenizer: model.tokenizer, started: w.arrived))
            if w.job.json { slot.run.json = JSONConstraint() }
            admitted += 1
            slot.run.stats.promptTokens = prompt.count
            slot.run.promptStart = now()
            if w.job.promptLogprobs {
                session.truncate(to: 0, sequence: s)
                cached[s] = []
                slot.phase = .prompt(next: 0)
            } else if let leader = slots.indices.first(where: { i in
                guard let o = slots[i], !o.job.promptLogprobs, o.job.prompt == prompt, case .prompt = o.phase else { return false }
                return true
            }) {
                slot.phase = .follow(leader: leader)
            } else if let last = lastPrompt, last.tokens == prompt,
                      let i = cached.indices.first(where: { cached[$0].count >= prompt.count && cached[$0].starts(with: prompt) }) {
                session.copySequence(from: i, to: s)
                session.truncate(to: prompt.count, sequence: s)
                cached[s] = prompt
                slot.run.logits = last.logits
                slot.run.stats.promptSeconds = 0
                slot.phase = .decode
            } else {
                // The longest cached prefix (at least one prompt token is evaluated), own slot first.
                var best = reusable(cached[s], prompt), from = s
                for i in cached.indices where i != s {
                    let n = reusable(cached[i], prompt)
                    if n > best { best = n; from = i }
                }
                if from != s { session.copySequence(from: from, to: s) }
                session.truncate(to: best, sequence: s)
                cached[s] = Array(cached[from][..<best])
                slot.phase = .prompt(next: best)
            }
            slots[s] = slot
        }
    }

    private func common(_ a: [Int32], _ b: [Int32]) -> Int {
        var n = 0
        while n < min(a.count, b.count), a[n] == b[n] { n += 1 }
        return n
    }

    /// Prompt tokens of `prompt` that a cache holding `c` can give (leaving at least one to evaluate).
    private func reusable(_ c: [Int32], _ prompt: [Int32]) -> Int {
        let n = min(common(c, prompt), prompt.count - 1)
        return alignedReuse ? n / promptChunk * promptChunk : n
    }

    /// A prompt chunk to evaluate: of slot `slot`, prompt tokens up to `end`.
    struct Chunk {
        let slot: Int, end: Int, tokens: [Int32]
    }

    /// The next chunk of the oldest job still reading its prompt.
    private func nextChunk() -> Chunk? {
        var pick: Int? = nil
        for (s, slot) in slots.enumerated() {
            guard let slot, case .prompt = slot.phase else { continue }
            if pick == nil || slot.order < slots[pick!]!.order { pick = s }
        }
        guard let s = pick, let slot = slots[s], case .prompt(let next) = slot.phase else { return nil }
        let prompt = slot.job.prompt
        let end = min(prompt.count, (next / promptChunk + 1) * promptChunk)
        return Chunk(slot: s, end: end, tokens: Array(prompt[next..<end]))
    }

    /// Evaluates a chunk on its own pass.
    private func evaluateChunk(_ ch: Chunk) {
        guard var slot = slots[ch.slot] else { return }
        let s = ch.slot, chunk = ch.tokens
        do {
            if slot.job.promptLogprobs {
                let V = model.config.vocabSize
                let all = try session.evaluate(chunk, sequence: s, allLogits: true)
                let k = slot.job.logprobs ?? 0
                for r in 0..<chunk.count {
                    let row = Array(all[(r * V)..<((r + 1) * V)])
                    if let prev = slot.pendingRow {
                        slot.promptLogprobs.append(TokenLogprob.of(chunk[r], logits: prev, top: k))
                    }
                    slot.pendingRow = row
                }
                slots[s] = slot
                finishChunk(ch, logits: slot.pendingRow!)
            } else {
                finishChunk(ch, logits: try session.evaluate(chunk, sequence: s))
            }
        } catch {
            // Not expected after validation (the chunk fits; ids are in range): the job and its followers fail.
            fail(s, error)
        }
    }

    /// After a chunk's pass: `logits` are its last token's (used once the prompt is read).
    private func finishChunk(_ ch: Chunk, logits: [Float]) {
        guard var slot = slots[ch.slot] else { return }
        let s = ch.slot, prompt = slot.job.prompt
        cached[s] += ch.tokens
        slot.run.stats.promptTokensEvaluated += ch.tokens.count
        if ch.end < prompt.count {
            slot.phase = .prompt(next: ch.end)
            slots[s] = slot
            return
        }
        slot.run.logits = logits
        slot.phase = .decode
        slot.run.stats.promptSeconds = now() - slot.run.promptStart
        if slot.job.promptLogprobs {
            slot.handler(.prompt(slot.promptLogprobs))
            slot.pendingRow = nil
        } else {
            lastPrompt = (prompt, slot.run.logits)
        }
        slots[s] = slot
        for f in slots.indices {
            guard case .follow(let l)? = slots[f]?.phase, l == s else { continue }
            session.copySequence(from: s, to: f)
            cached[f] = cached[s]
            slots[f]!.run.logits = slot.run.logits
            slots[f]!.run.stats.promptSeconds = now() - slots[f]!.run.promptStart
            slots[f]!.phase = .decode
        }
    }

    /// Each generating job picks its next token (reported to its handler); returns the
    /// steps to decode, and whether any job was generating. A greedy job alone with a
    /// draft model takes a speculative step here instead.
    private func pickTokens() -> (steps: [(sequence: Int, token: Int32)], any: Bool) {
        if drafter != nil {
            let generating = slots.indices.filter { if case .decode? = slots[$0]?.phase { return true } else { return false } }
            if generating.count == 1, let slot = slots[generating[0]], slot.job.options.sampling.temperature <= 0,
               slot.job.options.minTokens == 0, slot.job.logprobs == nil, !slot.job.json {
                speculate(generating[0])
                return ([], true)
            }
        }
        var steps: [(sequence: Int, token: Int32)] = []
        var any = false
        for s in slots.indices {
            guard var slot = slots[s], case .decode = slot.phase else { continue }
            any = true
            if let m = slot.job.options.maxTokens, slot.run.out.count >= m {
                slots[s] = slot
                finish(s)
                continue
            }
            let lp = slot.job.logprobs != nil ? slot.run.logits : nil    // before pick's end-token ban
            if let j = slot.run.json {
                j.mask(&slot.run.logits, tokenBytes: vocabulary.bytes, control: vocabulary.control)
                // No token continues the object (a vocabulary without JSON's characters): the job ends.
                guard slot.run.logits.contains(where: { $0 > -.infinity }) else {
                    slot.run.reason = .length
                    slots[s] = slot
                    finish(s)
                    continue
                }
            }
            let tok = slot.run.pick(endTokens: endTokens)
            if slot.run.json != nil, Int(tok) < vocabulary.bytes.count { slot.run.json!.advance(vocabulary.bytes[Int(tok)]) }
            if slot.run.out.count == 1 { slot.run.stats.timeToFirstToken = now() - slot.run.started }
            let logprob = lp.map { TokenLogprob.of(tok, logits: $0, top: slot.job.logprobs ?? 0) }
            let reason: StopReason?
            let piece: String
            do { (piece, reason) = try slot.run.accept(tok, endTokens: endTokens) } catch {
                fail(s, error)
                continue
            }
            slot.handler(.token(tok, text: piece, logprob: logprob))
            if let reason {
                slot.run.reason = reason
                slots[s] = slot
                finish(s)
                continue
            }
            if session.positions[s] >= session.contextLength {
                slot.run.reason = .length
                slot.run.stats.contextFull = true
                slots[s] = slot
                finish(s)
                continue
            }
            slots[s] = slot
            steps.append((s, tok))
        }
        return (steps, any)
    }

    /// One pass decodes every picked token.
    private func decodePass(_ steps: [(sequence: Int, token: Int32)]) {
        do {
            finishDecode(steps, logits: try session.decode(steps))
        } catch {
            for step in steps { fail(step.sequence, error) }
        }
    }

    private func finishDecode(_ steps: [(sequence: Int, token: Int32)], logits all: [Float]) {
        let V = model.config.vocabSize
        for (i, step) in steps.enumerated() {
            slots[step.sequence]!.run.logits = Array(all[(i * V)..<((i + 1) * V)])
            cached[step.sequence].append(step.token)
        }
    }

    /// One speculative step of greedy job `s`, alone: its next token, then drafted tokens checked
    /// in one pass of the decode kernels; the greedy pick of each verification row must equal the
    /// draft to keep it. Accepted tokens are reported as generated; the rest leave the cache.
    private func speculate(_ s: Int) {
        guard var slot = slots[s], let drafter, let spec = speculation else { return }
        if let m = slot.job.options.maxTokens, slot.run.out.count >= m {
            finish(s)
            return
        }
        let tok = slot.run.pick(endTokens: endTokens)
        if slot.run.out.count == 1 { slot.run.stats.timeToFirstToken = now() - slot.run.started }
        func take(_ t: Int32) -> StopReason? {
            do {
                let (piece, reason) = try slot.run.accept(t, endTokens: endTokens)
                slot.handler(.token(t, text: piece, logprob: nil))
                return reason
            } catch {
                slot.run.reason = .length
                return .length
            }
        }
        if let reason = take(tok) {
            slot.run.reason = reason
            slots[s] = slot
            finish(s)
            return
        }
        let start = session.positions[s]
        if start >= session.contextLength {
            slot.run.reason = .length
            slot.run.stats.contextFull = true
            slots[s] = slot
            finish(s)
            return
        }
        var limit = min(spec.draftTokens, session.contextLength - start - 1)
        if let m = slot.job.options.maxTokens { limit = min(limit, m - slot.run.out.count) }
        var scratch = slot.run.sampler
        let draft = limit > 0 ? ((try? drafter.propose(after: slot.run.history, limit: limit, sampler: &scratch)) ?? []) : []
        let V = model.config.vocabSize
        let all: [Float]
        do {
            all = try session.evaluate([tok] + draft.map(\.token), sequence: s, allLogits: true, decodeKernels: true)
        } catch {
            slots[s] = slot
            fail(s, error)
            return
        }
        cached[s] += [tok] + draft.map(\.token)
        var stats = slot.run.stats.speculation ?? SpeculationStats()
        stats.targetPasses += 1
        stats.drafted += draft.count
        var kept = 0, ended: StopReason? = nil
        while kept < draft.count {
            var check = slot.run.sampler
            let want = check.sample(Array(all[(kept * V)..<((kept + 1) * V)]), history: slot.run.history[...])
            guard want == draft[kept].token else { break }
            slot.run.out.append(want)
            slot.run.history.append(want)
            kept += 1
            if let r = take(want) { ended = r; break }
        }
        stats.accepted += kept
        drafter.observe(drafted: draft.count, accepted: kept)
        session.truncate(to: start + 1 + kept, sequence: s)
        cached[s] = Array(cached[s][..<(start + 1 + kept)])
        slot.run.stats.speculation = stats
        slot.run.logits = Array(all[(kept * V)..<((kept + 1) * V)])
        slots[s] = slot
        if let ended {
            slots[s]!.run.reason = ended
            finish(s)
        } else if let m = slot.job.options.maxTokens, slot.run.out.count >= m {
            slots[s]!.run.reason = .length
            finish(s)
        }
    }

    /// One job while it runs: its sampler, tokens, text and stop checks.
    struct Running {
        let options: GenerationOptions
        var sampler: Sampler
        var history: [Int32]
        var out: [Int32] = []
        var decoder: StreamingDecoder
        var text: StopText
        var logits: [Float] = []
        var reason = StopReason.length
        var stats = GenerationStats()
        /// JSON mode's recognizer.
        var json: JSONConstraint?
        /// When the job arrived, and when its prompt started (scheduler clock).
        let started: Double
        var promptStart = 0.0

        init(prompt: [Int32], options: GenerationOptions, tokenizer: Tokenizer, started: Double) {
            self.options = options
            sampler = Sampler(options.sampling)
            history = prompt
            decoder = StreamingDecoder(tokenizer, skipSpecial: true, atStart: false)
            text = StopText(stops: options.stop)
            self.started = started
            promptStart = started
        }

        /// The next token (end tokens banned until `minTokens`).
        mutating func pick(endTokens: Set<Int32>) -> Int32 {
            if out.count < options.minTokens { for e in endTokens { logits[Int(e)] = -.infinity } }
            let t = sampler.sample(logits, history: history[...])
            out.append(t)
            history.append(t)
            return t
        }

        /// Takes token `tok` (already in `out`): the text it makes certain, and a stop reason when the job is done.
        mutating func accept(_ tok: Int32, endTokens: Set<Int32>) throws -> (String, StopReason?) {
            if endTokens.contains(tok) { return ("", .eos) }
            let piece = text.append(try decoder.append(tok))
            if text.stopped { return (piece, .stop) }
            if json?.state.isComplete == true { return (piece, .eos) }
            if let m = options.maxTokens, out.count >= m { return (piece, .length) }
            return (piece, nil)
        }

        /// The result; the text's held-back rest was not streamed (the final event's text has it).
        mutating func result(now: Double) -> GenerationResult {
            if reason != .stop { _ = text.finish(decoder.flush()) }
            stats.generatedTokens = out.count
            stats.generationSeconds = max(0, now - promptStart - stats.promptSeconds)
            return GenerationResult(text: text.text, tokens: out, stopReason: reason, stats: stats)
        }
    }
}
