// `wren reward train`: a reward model as LoRA on a causal LM plus a scalar
// head (Hugging Face's LlamaForSequenceClassification with one label): the
// reward of a sequence is score · h, h the final normed hidden state of its last
// token that is not the padding id (the token HF pools). Trained on preference
// pairs with the Bradley–Terry loss −log σ(r_chosen − r_rejected); evaluated by
// held-out pair accuracy. The result is a PEFT adapter whose
// `modules_to_save` holds the head as `score` (task SEQ_CLS), so PEFT loads it
// onto LlamaForSequenceClassification (tools/check-reward-peft.py).

import Foundation
import WrenEngine
import WrenFormat
import WrenKernels
import WrenTokenizer

/// The token a reward is read at: the last one that is not the padding id (HF's pooling).
public func rewardPoolIndex(_ ids: [Int32], pad: Int32?) -> Int {
    guard let pad else { return ids.count - 1 }
    return ids.lastIndex { $0 != pad } ?? ids.count - 1
}

/// Held-out figures of a reward model.
public struct RewardEval: Sendable {
    public var loss: Double
    /// Pairs whose chosen side scores higher.
    public var accuracy: Double
    /// Mean r_chosen − r_rejected.
    public var margin: Double
}

public final class RewardTrainer: PairTraining, @unchecked Sendable {
    public let options: FinetuneOptions
    public let model: LlamaModel
    public let trainModel: TrainModel
    /// The head: score.weight, 1 × embeddingLength.
    public let head: Parameter
    public let train: [ExamplePair]
    public let eval: [ExamplePair]
    let optimizer: AdamW
    public let stepsPerEpoch: Int
    public let totalSteps: Int
    public internal(set) var step = 0
    public internal(set) var log: [LogRow] = []
    public private(set) var evalHistory: [(step: Int, eval: RewardEval)] = []
    let pad: Int32?

    public init(_ o: FinetuneOptions) throws {
        options = o
        try Finetuner.validate(o)
        guard case .lora = o.mode else { throw Finetuner.invalid("mode", "reward models train with LoRA (full finetuning is not supported for them)") }
        model = try LlamaModel(path: o.modelPath)
        try Finetuner.checkMemory(o, model)
        (train, eval) = try PairData.load(o, model: model)
        let maxLen = (train + eval).flatMap { [$0.chosen.ids.count, $0.rejected.ids.count] }.max() ?? 2
        pad = model.tokenizerMetadata.padID.map(Int32.init)
        trainModel = try TrainModel(model: model, mode: o.mode, maxTokens: 2 * o.batchSize * maxLen, maxLength: maxLen, threads: o.threads,
                                    checkpointing: o.checkpointing, seed: o.seed)
        if let path = o.initAdapter { try trainModel.load(adapter: path) }
        // HF initialises the score layer from N(0, 0.02²) (initializer_range).
        head = Parameter(name: "score.weight", shape: [1, model.config.embeddingLength])
        var rng = TrainRNG(seed: o.seed ^ 0x5C0_4E00)
        for i in 0..<head.count {   // Box–Muller
            let u = max(Double(rng.uniform()), 1e-12), v = Double(rng.uniform())
            let radius: Double = (-2 * Foundation.log(u)).squareRoot()
            let z: Double = radius * Foundation.cos(2 * Double.pi * v)
            head.value[i] = Float(z * 0.02)
        }
        optimizer = AdamW(parameters: trainModel.parameters + [head], weightDecay: o.weightDecay)
        let micro = (train.count + o.batchSize - 1) / o.batchSize
        stepsPerEpoch = (micro + o.gradAccum - 1) / o.gradAccum
        totalSteps = stepsPerEpoch * o.epochs
    }

    /// Rewards of `pairs` (chosen, rejected each), and with `gradScale` > 0 the
    /// gradients of gradScale · Σ −log σ(r_c − r_r) added into the parameters.
    /// Returns the rewards and the summed loss.
    func forward(_ pairs: [ExamplePair], gradScale: Float) -> (chosen: [Double], rejected: [Double], lossSum: Double) {
        let seqs = pairs.flatMap { [$0.chosen.ids, $0.rejected.ids] }
        let L = seqs.map(\.count).max()!, B = seqs.count
        let fill = pad ?? 0
        let ids = seqs.flatMap { $0 + Array(repeating: fill, count: L - $0.count) }
        let backward = gradScale > 0
        trainModel.forwardHidden(tokens: ids, batch: B, length: L, backward: backward, maskKey: TrainRNG.mix(options.seed ^ UInt64(step) << 20))
        let dim = model.config.embeddingLength
        let rows = seqs.enumerated().map { $0.offset * L + rewardPoolIndex($0.element, pad: pad) }
        let r = rows.map { Double(Ops.dot(head.value, trainModel.hidden(row: $0), dim)) }
        var lossSum = 0.0
        var dr = [Float](repeating: 0, count: B)
        for p in 0..<pairs.count {
            let z = r[2 * p] - r[2 * p + 1]
            lossSum += softplus(-z)                       // −log σ(z)
            let g = -sigmoid(-z) * Double(gradScale)       // d/dz of gradScale · −log σ(z)
            dr[2 * p] = Float(g); dr[2 * p + 1] = Float(-g)
        }
        if backward {
            let dh = trainModel.hiddenGradient
            dh.update(repeating: 0, count: B * L * dim)
            for (i, row) in rows.enumerated() {
                let h = trainModel.hidden(row: row), d = dh + row * dim
                for e in 0..<dim {
                    head.grad[e] += dr[i] * h[e]
                    d[e] = dr[i] * head.value[e]
                }
            }
            trainModel.backwardFromHidden(tokens: ids, batch: B, length: L)
        }
        return (stride(from: 0, to: B, by: 2).map { r[$0] }, stride(from: 1, to: B, by: 2).map { r[$0] }, lossSum)
    }

    /// Loss, accuracy and margin over the held-out pairs (nil when there are none).
    public func evaluate() -> RewardEval? {
        guard !eval.isEmpty else { return nil }
        var loss = 0.0, right = 0, margin = 0.0
        var i = 0
        while i < eval.count {
            let r = forward(Array(eval[i..<min(eval.count, i + options.batchSize)]), gradScale: 0)
            loss += r.lossSum
            for (c, x) in zip(r.chosen, r.rejected) { right += c > x ? 1 : 0; margin += c - x }
            i += options.batchSize
        }
        let n = Double(eval.count)
        return RewardEval(loss: loss / n, accuracy: Double(right) / n, margin: margin / n)
    }

    /// One optimizer step over gradAccum micro-batches of pairs.
    func trainStep() -> LogRow {
        let o = options
        let batches = microBatches().map { $0.map { train[$0] } }
        let count = batches.reduce(0) { $0 + $1.count }
        let params = trainModel.parameters + [head]
        for p in params { p.zeroGrad() }
        var lossSum = 0.0, tokens = 0
        for b in batches {
            lossSum += forward(b, gradScale: 1 / Float(count)).lossSum
            tokens += 2 * b.count * b.flatMap { [$0.chosen.ids.count, $0.rejected.ids.count] }.max()!
        }
        let norm = clipGradients(params, maxNorm: o.clip)
        let lr = o.learningRate * o.schedule.factor(step: step, total: totalSteps, warmup: o.warmup)
        optimizer.step(params, lr: lr)
        step += 1
        return LogRow(step: step, epoch: Double(step) / Double(stepsPerEpoch), loss: lossSum / Double(count), lr: lr, tokens: tokens,
                      seconds: 0, gradNorm: norm, evalLoss: nil)
    }

    /// Trains to the end; writes loss.csv, eval.csv (loss, accuracy, margin), loss.svg and the adapter with its head.
    public func run(progress: ((TrainProgress) -> Void)? = nil, onEval: ((Int, RewardEval) -> Void)? = nil) throws {
        self.onEval = onEval
        try runLoop(progress: progress)
    }

    var onEval: ((Int, RewardEval) -> Void)?

    func evaluateAndRecord() throws -> Double? {
        guard let e = evaluate() else { return nil }
        evalHistory.append((step, e))
        onEval?(step, e)
        let text = "step,eval_loss,accuracy,margin\n" + evalHistory.map {
            String(format: "%d,%.6f,%.4f,%.4f\n", $0.step, $0.eval.loss, $0.eval.accuracy, $0.eval.margin)
        }.joined()
        try writeAtomically(Array(text.utf8), to: options.outputDir + "/eval.csv")
        return e.loss
    }

    var curveTitle: String {
        "reward model: \((options.modelPath as NSString).lastPathComponent) — \((options.dataPath as NSString).lastPathComponent)"
    }

    func saveResult() throws { try adapter().save(to: options.outputDir) }

    /// The LoRA factors (HF order) and the head, as a SEQ_CLS PEFT adapter.
    public func adapter() -> PEFTAdapter {
        guard case let .lora(c) = options.mode else { preconditionFailure("reward models are LoRA") }
        var a = trainModel.peftAdapter(c, modelPath: options.modelPath)
        a.score = head.values
        return a
    }
}


/// The preference pairs of a reward-model or DPO run: the training pairs and the
/// held-out ones (--eval-data, or a seeded --validation-split), each side within
/// the block size (cut with --truncate, else an error naming the instance).
enum PairData {
    static func load(_ o: FinetuneOptions, model: LlamaModel) throws -> (train: [ExamplePair], eval: [ExamplePair]) {
        let raw = try RawDataset.load(o.dataPath)
        let chat = raw.type == .pairedConversation || o.chatTemplate != nil ? try ChatFormatter(model: model, name: o.chatTemplate) : nil
        var pairs = try DatasetTokenizer.tokenizePairs(raw, model: model, chat: chat)
        var held: [ExamplePair] = []
        if let e = o.evalDataPath {
            let er = try RawDataset.load(e)
            let echat = er.type == .pairedConversation ? try chat ?? ChatFormatter(model: model, name: o.chatTemplate) : chat
            held = try DatasetTokenizer.tokenizePairs(er, model: model, chat: echat)
        } else if o.validationSplit > 0 {
            (pairs, held) = try Finetuner.split(pairs, o)
        }
        func fit(_ e: Example) throws -> Example {
            guard e.ids.count > o.blockSize else { return e }
            guard o.truncate else {
                throw DatasetError(e.source.file, instance: e.source.index,
                                   "is \(e.ids.count) tokens, longer than the block size \(o.blockSize) (raise the block size or allow truncation)")
            }
            return Example(ids: Array(e.ids.prefix(o.blockSize)), trained: Array(e.trained.prefix(o.blockSize)), source: e.source)
        }
        let train = try pairs.map { ExamplePair(chosen: try fit($0.chosen), rejected: try fit($0.rejected)) }
        let eval = try held.map { ExamplePair(chosen: try fit($0.chosen), rejected: try fit($0.rejected)) }
        return (train, eval)
    }
}

func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }
/// log(1 + eˣ), without overflow.
func softplus(_ x: Double) -> Double { x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)) }

/// `wren reward score`, and RAFT's learned reward: the base model with a reward
/// adapter attached, on the exact path (f32 activations and cache, as trained).
public final class RewardScorer: @unchecked Sendable {
    public let model: LlamaModel
    let session: InferenceSession
    let score: [Float]
    let pad: Int32?
    let chat: ChatFormatter?

    public init(modelPath: String, rewardPath: String, chatTemplate: String? = nil, threads: Int? = nil, contextLength: Int? = nil) throws {
        model = try LlamaModel(path: modelPath)
        let adapter = try PEFTAdapter.load(rewardPath)
        guard let s = adapter.score else {
            throw FormatError.invalid(path: rewardPath, field: "modules_to_save", reason: "this adapter has no reward head (score); train one with `wren reward train`")
        }
        guard s.count == model.config.embeddingLength else {
            throw FormatError.invalid(path: rewardPath, field: "score.weight", reason: "has \(s.count) values but the model's hidden size is \(model.config.embeddingLength): the adapter belongs to another base")
        }
        score = s
        try model.attach(try model.deltas(from: adapter, source: rewardPath), source: rewardPath)
        session = try InferenceSession(model: model, contextLength: contextLength, threads: threads, kvType: .f32, activations: .f32)
        pad = model.tokenizerMetadata.padID.map(Int32.init)
        chat = try? ChatFormatter(model: model, name: chatTemplate)
    }

    /// The reward of a token sequence (read at `rewardPoolIndex`).
    public func reward(ids: [Int32]) throws -> Double {
        guard !ids.isEmpty else { throw EngineError.emptyPrompt }
        let n = rewardPoolIndex(ids, pad: pad) + 1
        guard n <= session.contextLength else { throw EngineError.promptTooLong(tokens: n, context: session.contextLength) }
        session.reset()
        _ = try session.evaluate(Array(ids[..<n]))
        let h = session.lastHidden()
        return zip(score, h).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }

    /// A prompt and response as training tokenizes a paired_text_to_text side.
    public func tokens(prompt: String, response: String) throws -> [Int32] {
        try tokens(.text2text(input: prompt, output: response), type: .text2text)
    }

    /// A conversation (ending with the assistant's response) as training tokenizes a paired_conversation side.
    public func tokens(messages: [ChatMessage], system: String?) throws -> [Int32] {
        guard chat != nil else { throw EngineError.unsupported("conversations need a chat template; this model has none (pass one)") }
        return try tokens(.conversation(system: system, messages: messages), type: .conversation)
    }

    func tokens(_ inst: RawInstance, type: DatasetType) throws -> [Int32] {
        let ds = RawDataset(type: type, instances: [inst], sources: [InstanceSource(file: "input", index: 0)])
        return try DatasetTokenizer.tokenize(ds, model: model, chat: chat)[0].ids
    }
}

extension RewardTrainer {
    var checkpointParameters: [Parameter] { trainModel.parameters + [head] }
    var checkpointOptimizer: AdamW { optimizer }
    var extraFingerprint: [(String, String)] { [] }
    var baseModelFile: WrenFile { model.file }
    var evalLosses: [(step: Int, loss: Double)] { evalHistory.map { ($0.step, $0.eval.loss) } }
    /// "step:loss:accuracy:margin" per evaluation, ";"-separated (exact: Double's own text).
    var evalsText: String { evalHistory.map { "\($0.step):\($0.eval.loss):\($0.eval.accuracy):\($0.eval.margin)" }.joined(separator: ";") }
    func restoreEvals(_ text: String) {
        evalHistory = text.split(separator: ";").compactMap { e in
            let f = e.split(separator: ":").map(String.init)
            guard f.count == 4, let s = Int(f[0]), let l = Double(f[1]), let a = Double(f[2]), let m = Double(f[3]) else { return nil }
            return (s, RewardEval(loss: l, accuracy: a, margin: m))
        }
    }
}
