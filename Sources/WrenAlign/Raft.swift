// `wren raft`: reward-ranked finetuning (Dong et al. 2023, LMFlow's RAFT).
// Each iteration:
//   1. sample: the current policy (base + the adapter so far) answers a batch of
//      prompts, K samples per prompt (`local`) or one (`top`), decoded together
//      (WrenEngine's BatchGenerator), each sample seeded from the run's seed;
//   2. score: a learned reward model or a reward command; an empty response, or
//      one the scorer rejects, gets −∞ and is never kept;
//   3. rank: `local` keeps each prompt's best sample, `top` the best `keep`
//      fraction of the batch;
//   4. finetune: the kept responses (prompts masked) continue the same LoRA
//      adapter (`wren finetune` with the previous iteration's adapter as its start);
//   5. measure: held-out greedy reward, the kept responses' perplexity before and
//      after, response lengths and diversity, time per phase, into raft.jsonl,
//      raft.svg, and every sample into samples-N.jsonl.
// A finished iteration is recorded in raft-state.json (written last, atomically),
// so a killed run resumes at the first unfinished iteration with the same seeds.

import Foundation
import WrenEngine
import WrenEval
import WrenFormat
import WrenTokenizer
import WrenTuning

public enum RaftStrategy: String, Sendable, CaseIterable { case local, top }

public struct RaftOptions: Sendable {
    /// Model, output directory, LoRA and training settings (dataPath is set per iteration).
    public var finetune: FinetuneOptions
    public var promptsPath: String
    public var rewardModel: String?
    public var rewardCommand: String?
    public var rewardTimeout = 600.0
    public var strategy = RaftStrategy.local
    public var k = 8
    public var keep = 0.125
    public var iterations = 5
    public var promptsPerIteration = 64
    public var temperature: Float = 0.85
    public var minNewTokens = 32
    public var maxNewTokens = 96
    public var evalPrompts: String?
    /// Sequences decoded together.
    public var width = 8
    public var resume = false

    public init(finetune: FinetuneOptions, promptsPath: String) {
        self.finetune = finetune
        self.promptsPath = promptsPath
    }
}

/// One prompt: its text, its tokens (with the chat template's generation prompt for conversations).
public struct RaftPrompt: Sendable {
    public var text: String
    public var system: String?
    public var messages: [ChatMessage]?
    public var ids: [Int32]
}

/// One iteration's figures (a line of raft.jsonl).
public struct RaftIteration: Codable, Sendable {
    public var iteration: Int
    public var samples = 0
    public var kept = 0
    public var meanSampledReward: Double?
    public var meanKeptReward: Double?
    public var evalReward: Double?
    public var evalRewardStderr: Double?
    public var keptPerplexityBefore: Double?
    public var keptPerplexityAfter: Double?
    /// Mean tokens per sampled response, and per held-out response.
    public var meanSampleTokens: Double?
    public var meanEvalTokens: Double?
    public var sampleDiversity: Diversity?
    public var evalDiversity: Diversity?
    public var samplingSeconds = 0.0
    public var scoringSeconds = 0.0
    public var trainingSeconds = 0.0
    public var evalSeconds = 0.0
}

public final class Raft: @unchecked Sendable {
    public let options: RaftOptions
    public let model: LlamaModel
    public let prompts: [RaftPrompt]
    public let evalPrompts: [RaftPrompt]
    let promptType: DatasetType
    let session: InferenceSession
    let rewards: RewardSource
    public private(set) var rows: [RaftIteration] = []
    /// Progress lines (phase, done, total).
    public var onProgress: ((String, Int, Int) -> Void)?

    public init(_ o: RaftOptions) throws {
        options = o
        try Finetuner.validate(o.finetune)
        let bad = { (setting: String, reason: String) in EngineError.invalidSetting(setting: setting, reason: reason) }
        guard o.keep > 0, o.keep <= 1 else { throw bad("keep", "must be in (0, 1], not \(o.keep)") }
        if o.strategy == .local { guard o.k >= 2 else { throw bad("k", "must be at least 2 with the local strategy (K samples per prompt, the best kept), not \(o.k)") } }
        guard o.k >= 1, o.iterations >= 1, o.promptsPerIteration >= 1, o.width >= 1 else {
            throw bad("iterations", "k, iterations, prompts per iteration and width must be at least 1")
        }
        guard o.maxNewTokens >= 1, o.minNewTokens >= 0, o.minNewTokens <= o.maxNewTokens else {
            throw bad("minNewTokens", "must be in 0...max-new-tokens (\(o.maxNewTokens)), and max-new-tokens at least 1")
        }
        guard o.temperature >= 0, o.temperature.isFinite else { throw bad("temperature", "must be >= 0, not \(o.temperature)") }
        guard case .lora = o.finetune.mode else { throw bad("mode", "RAFT tunes a LoRA adapter") }
        guard (o.rewardModel == nil) != (o.rewardCommand == nil) else { throw bad("reward", "give exactly one of a reward model and a reward command") }
        model = try LlamaModel(path: o.finetune.modelPath)
        let raw = try RawDataset.load(o.promptsPath, prompts: true)
        guard raw.type == .textOnly || raw.type == .conversation else {
            throw DatasetError(o.promptsPath, "is \(raw.type.rawValue); RAFT prompts are text_only (each text a prompt) or conversations ending with a user turn")
        }
        promptType = raw.type
        let chat = raw.type == .conversation ? try ChatFormatter(model: model, name: o.finetune.chatTemplate) : nil
        prompts = try Self.prompts(raw, model: model, chat: chat)
        if let e = o.evalPrompts {
            let er = try RawDataset.load(e, prompts: true)
            guard er.type == raw.type else { throw DatasetError(e, "is \(er.type.rawValue) but the prompts are \(raw.type.rawValue)") }
            evalPrompts = try Self.prompts(er, model: model, chat: chat)
        } else {
            evalPrompts = []
        }
        let longest = (prompts + evalPrompts).map(\.ids.count).max() ?? 1
        session = try InferenceSession(model: model, contextLength: longest + o.maxNewTokens + 1, threads: o.finetune.threads,
                                       maxBatch: max(512, o.width), sequences: o.width)
        if let rm = o.rewardModel {
            rewards = try RewardScorer(modelPath: o.finetune.modelPath, rewardPath: rm, chatTemplate: o.finetune.chatTemplate,
                                       threads: o.finetune.threads)
        } else {
            rewards = try RewardCommand(o.rewardCommand!, timeout: o.rewardTimeout)
        }
    }

    static func prompts(_ raw: RawDataset, model: LlamaModel, chat: ChatFormatter?) throws -> [RaftPrompt] {
        let tok = model.tokenizer
        let bos: [Int32] = tok.addBOS ? tok.bosID.map { [$0] } ?? [] : []
        return try zip(raw.instances, raw.sources).map { inst, src in
            switch inst {
            case let .text(t):
                guard !t.isEmpty else { throw DatasetError(src.file, instance: src.index, key: "text", "is an empty prompt") }
                return RaftPrompt(text: t, system: nil, messages: nil, ids: bos + tok.encode(t, addSpecial: false, parseSpecial: false))
            case let .conversation(system, messages):
                let all = (system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + messages
                return RaftPrompt(text: messages.last!.content, system: system, messages: messages, ids: try chat!.tokens(all))
            default:
                throw DatasetError(src.file, instance: src.index, "is not a prompt")
            }
        }
    }

    var out: String { options.finetune.outputDir }
    func iterationDir(_ i: Int) -> String { out + "/iter-\(i)" }
    func adapterDir(_ i: Int) -> String { iterationDir(i) + "/sft" }

    /// The policy of iteration `i` (the adapter after i iterations; 0: the base, or the adapter RAFT starts from).
    func usePolicy(after i: Int) throws {
        model.detachAdapters()
        if let path = i > 0 ? adapterDir(i) : options.finetune.initAdapter { try model.attachAdapter(path: path) }
    }

    /// Generates for `jobs` with the current policy; results in order.
    func generate(_ jobs: [BatchJob], phase: String) throws -> [GenerationResult] {
        var done = 0
        return try BatchGenerator(model: model, session: session).generate(jobs) { _, _ in
            done += 1
            self.onProgress?(phase, done, jobs.count)
        }
    }

    /// Rewards of (prompt, response) pairs; −∞ for empty responses.
    func score(_ items: [(RaftPrompt, String)], phase: String) throws -> [Double] {
        try items.enumerated().map { n, item in
            onProgress?(phase, n + 1, items.count)
            let (p, r) = item
            if r.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return -.infinity }
            return try rewards.reward(prompt: p.text, messages: p.messages, system: p.system, response: r)
        }
    }

    func seed(_ parts: UInt64...) -> UInt64 { parts.reduce(options.finetune.seed ^ 0x52A_F700) { TrainRNG.mix($0 ^ $1) } }

    /// The held-out greedy reward (mean, standard error), token lengths and diversity of the current policy.
    func evaluate() throws -> (mean: Double, stderr: Double, tokens: Double, diversity: Diversity)? {
        guard !evalPrompts.isEmpty else { return nil }
        var opts = GenerationOptions(maxTokens: options.maxNewTokens, sampling: .greedy, minTokens: options.minNewTokens)
        opts.parseSpecial = false
        let res = try generate(evalPrompts.map { BatchJob(prompt: $0.ids, options: opts) }, phase: "held-out answers")
        let r = try score(zip(evalPrompts, res.map(\.text)).map { ($0, $1) }, phase: "held-out rewards")
        // A rejected held-out answer counts as the worst finite reward seen (so the mean stays finite).
        let finite = r.filter(\.isFinite)
        let floor = finite.min() ?? 0
        let v = r.map { $0.isFinite ? $0 : floor }
        let mean = v.reduce(0, +) / Double(v.count)
        let sd = v.count > 1 ? (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count - 1)).squareRoot() : 0
        return (mean, sd / Double(v.count).squareRoot(), Double(res.map(\.tokens.count).reduce(0, +)) / Double(res.count),
                Diversity(res.map(\.text)))
    }

    /// Runs (or resumes) every iteration.
    public func run() throws {
        let o = options
        try checkOutputPath(out, overwrite: true, directory: true)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let lock = try DirectoryLock(out)
        defer { lock.release() }
        var done = 0
        let statePath = out + "/raft-state.json"
        if FileManager.default.fileExists(atPath: statePath) {
            guard o.resume || o.finetune.force else {
                throw EngineError.invalidSetting(setting: "resume", reason: "is not set, but \(out) already holds a RAFT run (raft-state.json): resume it, force a fresh start, or choose another output directory")
            }
            if o.resume {
                let dec = JSONDecoder()
                dec.keyDecodingStrategy = .convertFromSnakeCase
                guard let d = MappedFile.contents(of: statePath), let s = try? dec.decode(RaftState.self, from: d), s.iterationsDone >= 0 else {
                    throw FormatError.invalid(path: statePath, field: "file", reason: "not a RAFT state (iterations_done, rows)")
                }
                done = min(s.iterationsDone, o.iterations)
                rows = Array(s.rows.prefix(done + 1))
            }
        }
        if done == 0 && rows.isEmpty {
            // Iteration 0: the base policy on the held-out prompts.
            try usePolicy(after: 0)
            let t0 = Date()
            var row = RaftIteration(iteration: 0)
            if let e = try evaluate() {
                row.evalReward = e.mean; row.evalRewardStderr = e.stderr; row.meanEvalTokens = e.tokens; row.evalDiversity = e.diversity
            }
            row.evalSeconds = Date().timeIntervalSince(t0)
            rows = [row]
            try save(done: 0)
        }
        for it in (done + 1)...max(done + 1, o.iterations) where it <= o.iterations {
            try iteration(it)
            try save(done: it)
        }
        // The final adapter at the top of OUT.
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            guard let d = MappedFile.contents(of: adapterDir(o.iterations) + "/" + f) else {
                throw FormatError.invalid(path: adapterDir(o.iterations) + "/" + f, field: "file", reason: "missing after the last iteration")
            }
            try writeAtomically(Array(d), to: out + "/" + f)
        }
    }

    struct RaftState: Codable {
        var iterationsDone: Int
        var rows: [RaftIteration]
    }

    func save(done: Int) throws {
        let enc = JSONEncoder()
        enc.keyEncodingStrategy = .convertToSnakeCase
        enc.outputFormatting = [.sortedKeys]
        let lines = try rows.map { String(decoding: try enc.encode($0), as: UTF8.self) + "\n" }.joined()
        try writeAtomically(Array(lines.utf8), to: out + "/raft.jsonl")
        try writeAtomically(Array(svg().utf8), to: out + "/raft.svg")
        try writeAtomically(Array(try enc.encode(RaftState(iterationsDone: done, rows: rows))), to: out + "/raft-state.json")
    }

    func svg() -> String {
        let line = rows.filter { $0.iteration > 0 }.compactMap { r in
            r.meanSampledReward.map { LogRow(step: r.iteration, epoch: 0, loss: $0, lr: 0, tokens: 0, seconds: 0, gradNorm: 0, evalLoss: nil) }
        }
        let points = rows.compactMap { r in r.evalReward.map { (step: r.iteration, loss: $0) } }
        return LossCurve.svg(line, eval: points, title: "RAFT (\(options.strategy.rawValue)): \((options.finetune.modelPath as NSString).lastPathComponent)",
                             labels: ("reward", "iteration", "— mean sampled reward", "● held-out greedy reward"))
    }

    func iteration(_ it: Int) throws {
        let o = options
        var row = RaftIteration(iteration: it)
        try FileManager.default.createDirectory(atPath: iterationDir(it), withIntermediateDirectories: true)
        try usePolicy(after: it - 1)
        // The prompts of this iteration: consecutive in a seeded order of all prompts, one order per pass.
        let n = prompts.count
        let chosen = (0..<o.promptsPerIteration).map { j -> Int in
            let flat = (it - 1) * o.promptsPerIteration + j, pass = flat / n
            var idx = Array(0..<n)
            var rng = TrainRNG(seed: seed(1, UInt64(pass)))
            for i in stride(from: n - 1, to: 0, by: -1) { idx.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            return idx[flat % n]
        }
        let perPrompt = o.strategy == .local ? o.k : 1
        var base = GenerationOptions(maxTokens: o.maxNewTokens, sampling: SamplingParameters(), minTokens: o.minNewTokens)
        base.parseSpecial = false
        base.sampling.temperature = o.temperature
        base.sampling.topK = 0; base.sampling.topP = 1; base.sampling.minP = 0
        var jobs: [BatchJob] = []
        for (j, p) in chosen.enumerated() {
            for s in 0..<perPrompt {
                var opts = base
                opts.sampling.seed = seed(2, UInt64(it), UInt64(j), UInt64(s))
                jobs.append(BatchJob(prompt: prompts[p].ids, options: opts))
            }
        }
        var t = Date()
        let results = try generate(jobs, phase: "iteration \(it): sampling")
        row.samplingSeconds = Date().timeIntervalSince(t)
        t = Date()
        let texts = results.map(\.text)
        let r = try score(jobs.indices.map { (prompts[chosen[$0 / perPrompt]], texts[$0]) }, phase: "iteration \(it): scoring")
        row.scoringSeconds = Date().timeIntervalSince(t)
        // Rank.
        var keptIdx: [Int] = []
        if o.strategy == .local {
            for j in chosen.indices {
                let group = (j * perPrompt)..<((j + 1) * perPrompt)
                if let best = group.filter({ r[$0].isFinite }).max(by: { r[$0] < r[$1] || (r[$0] == r[$1] && $0 > $1) }) { keptIdx.append(best) }
            }
        } else {
            let finite = r.indices.filter { r[$0].isFinite }.sorted { r[$0] > r[$1] || (r[$0] == r[$1] && $0 < $1) }
            keptIdx = Array(finite.prefix(max(1, Int((Double(jobs.count) * o.keep).rounded(.down)))))
        }
        let finite = r.filter(\.isFinite)
        row.samples = jobs.count
        row.kept = keptIdx.count
        row.meanSampledReward = finite.isEmpty ? nil : finite.reduce(0, +) / Double(finite.count)
        row.meanKeptReward = keptIdx.isEmpty ? nil : keptIdx.map { r[$0] }.reduce(0, +) / Double(keptIdx.count)
        row.meanSampleTokens = Double(results.map(\.tokens.count).reduce(0, +)) / Double(results.count)
        row.sampleDiversity = Diversity(texts)
        try writeSamples(it, chosen: chosen, perPrompt: perPrompt, texts: texts, rewards: r)
        guard !keptIdx.isEmpty else {
            throw EngineError.invalidParameter("iteration \(it): every sample was rejected by the reward (−∞); nothing to finetune on")
        }
        // Finetune on the kept responses, continuing the adapter.
        t = Date()
        let data = iterationDir(it) + "/kept.json"
        try writeKept(keptIdx.map { (prompts[chosen[$0 / perPrompt]], texts[$0]) }, to: data)
        var f = o.finetune
        f.dataPath = data
        f.evalDataPath = data
        f.validationSplit = 0
        f.outputDir = adapterDir(it)
        f.initAdapter = it > 1 ? adapterDir(it - 1) : o.finetune.initAdapter
        f.resume = false
        f.force = true
        f.saveEvery = 0
        let ft = try Finetuner(f)
        try ft.run()
        row.keptPerplexityBefore = ft.evalHistory.first.map { exp($0.loss) }
        row.keptPerplexityAfter = ft.evalHistory.last.map { exp($0.loss) }
        row.trainingSeconds = Date().timeIntervalSince(t)
        // Held-out greedy reward of the new policy.
        t = Date()
        try usePolicy(after: it)
        if let e = try evaluate() {
            row.evalReward = e.mean; row.evalRewardStderr = e.stderr; row.meanEvalTokens = e.tokens; row.evalDiversity = e.diversity
        }
        row.evalSeconds = Date().timeIntervalSince(t)
        rows.append(row)
    }

    /// samples-N.jsonl: one LMFlow text_to_scored_textlist instance per prompt,
    /// {"input": prompt, "output": [{"score", "text"}, ...]} (score null: rejected).
    func writeSamples(_ it: Int, chosen: [Int], perPrompt: Int, texts: [String], rewards: [Double]) throws {
        var lines = ""
        for (j, p) in chosen.enumerated() {
            let outs: [[String: Any]] = (0..<perPrompt).map { s in
                let k = j * perPrompt + s
                return ["text": texts[k], "score": rewards[k].isFinite ? rewards[k] as Any : NSNull()]
            }
            let obj: [String: Any] = ["input": prompts[p].text, "output": outs]
            lines += String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self) + "\n"
        }
        try writeAtomically(Array(lines.utf8), to: out + "/samples-\(it).jsonl")
    }

    /// The kept (prompt, response) pairs as an LMFlow dataset: text2text for text prompts,
    /// conversations (the response as the last assistant turn) for conversation prompts.
    func writeKept(_ kept: [(RaftPrompt, String)], to path: String) throws {
        let instances: [[String: Any]] = kept.map { p, r in
            if let m = p.messages {
                var d: [String: Any] = ["messages": (m + [ChatMessage(role: "assistant", content: r)]).map { ["role": $0.role, "content": $0.content] }]
                if let s = p.system { d["system"] = s }
                return d
            }
            return ["input": p.text, "output": r]
        }
        let obj: [String: Any] = ["type": promptType == .conversation ? "conversation" : "text2text", "instances": instances]
        try writeAtomically(Array(try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])), to: path)
    }
}
