// `wren dpo`: direct preference optimisation (Rafailov et al. 2023) with LoRA.
// The policy is the base plus the adapter; the reference is the starting policy
// (the base alone, or the base with --init-adapter: an SFT adapter),
// whose log-likelihoods of each pair's responses are computed once before
// training (the adapter starts at B = 0, so the trainer's own forward then is
// exactly the base). With h = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) −
// log π_ref(y_r)), summed over the response tokens only (prompts masked):
//   sigmoid: −log σ(β h)          (the paper's loss; ln 2 at step 0)
//   ipo:     (h − 1/(2β))²        (Azar et al. 2023)
//   hinge:   max(0, 1 − β h)      (SLiC)
// The gradient reaches the parameters through each sequence's log-likelihood:
// a first pass without gradients gives log π and so the weight ∂L/∂log π of
// every sequence; the second pass back-propagates the weighted likelihoods.

import Foundation
import WrenEngine
import WrenFormat
import WrenKernels

public enum DPOLoss: String, Sendable, CaseIterable {
    case sigmoid, ipo, hinge

    /// The loss of one pair and its derivative with respect to h.
    func value(_ h: Double, beta: Double) -> (loss: Double, dh: Double) {
        switch self {
        case .sigmoid: return (softplus(-beta * h), -beta * WrenTuning.sigmoid(-beta * h))
        case .ipo:
            let d = h - 1 / (2 * beta)
            return (d * d, 2 * d)
        case .hinge: return beta * h < 1 ? (1 - beta * h, -beta) : (0, 0)
        }
    }
}

/// Held-out figures of a DPO run (rewards are β·(log π − log π_ref)).
public struct DPOEval: Sendable {
    public var loss: Double
    /// Pairs whose chosen reward exceeds the rejected one.
    public var accuracy: Double
    /// Mean reward of the chosen responses minus the rejected ones.
    public var margin: Double
    public var chosenReward: Double
    public var rejectedReward: Double
}

public final class DPOTrainer: PairTraining, @unchecked Sendable {
    public let options: FinetuneOptions
    public let beta: Double
    public let loss: DPOLoss
    public let model: LlamaModel
    public let trainModel: TrainModel
    public let train: [ExamplePair]
    public let eval: [ExamplePair]
    /// The reference log-likelihoods of each pair's (chosen, rejected) responses.
    public let trainReference: [(Double, Double)]
    public let evalReference: [(Double, Double)]
    let optimizer: AdamW
    public let stepsPerEpoch: Int
    public let totalSteps: Int
    public internal(set) var step = 0
    public internal(set) var log: [LogRow] = []
    public private(set) var evalHistory: [(step: Int, eval: DPOEval)] = []

    public init(_ o: FinetuneOptions, beta: Double = 0.1, loss: DPOLoss = .sigmoid) throws {
        options = o
        self.beta = beta
        self.loss = loss
        try Finetuner.validate(o)
        guard beta > 0, beta.isFinite else { throw Finetuner.invalid("beta", "must be a finite number > 0, not \(beta)") }
        guard case .lora = o.mode else { throw Finetuner.invalid("mode", "DPO trains with LoRA (the reference is the base without the adapter)") }
        model = try LlamaModel(path: o.modelPath)
        try Finetuner.checkMemory(o, model)
        (train, eval) = try PairData.load(o, model: model)
        for p in train + eval {
            for side in [p.chosen, p.rejected] where !side.trained.dropFirst().contains(true) {
                throw DatasetError(side.source.file, instance: side.source.index, "has no response tokens left within the block size \(o.blockSize)")
            }
        }
        let maxLen = (train + eval).flatMap { [$0.chosen.ids.count, $0.rejected.ids.count] }.max() ?? 2
        trainModel = try TrainModel(model: model, mode: o.mode, maxTokens: 2 * o.batchSize * maxLen, maxLength: maxLen, threads: o.threads,
                                    checkpointing: o.checkpointing, seed: o.seed)
        if let path = o.initAdapter { try trainModel.load(adapter: path) }
        optimizer = AdamW(parameters: trainModel.parameters, weightDecay: o.weightDecay)
        let micro = (train.count + o.batchSize - 1) / o.batchSize
        stepsPerEpoch = (micro + o.gradAccum - 1) / o.gradAccum
        totalSteps = stepsPerEpoch * o.epochs
        // The reference: the trainer's forward before any step, i.e. the base (every LoRA B is
        // zero) or, with --init-adapter, the policy DPO starts from (an SFT adapter).
        trainReference = Self.logLikelihoods(trainModel, train, batch: o.batchSize)
        evalReference = Self.logLikelihoods(trainModel, eval, batch: o.batchSize)
    }

    /// A batch of pairs as sequences [c0, r0, c1, r1, …] padded to one length, labels on the responses.
    static func batch(_ pairs: ArraySlice<ExamplePair>) -> (ids: [Int32], labels: [Int32], B: Int, L: Int) {
        let seqs = pairs.flatMap { [$0.chosen, $0.rejected] }.map { Blocks.sequence($0.ids, $0.trained) }
        let L = seqs.map(\.ids.count).max()!
        var ids: [Int32] = [], labels: [Int32] = []
        for s in seqs {
            ids += s.ids + Array(repeating: 0, count: L - s.ids.count)
            labels += s.labels + Array(repeating: ignoreLabel, count: L - s.ids.count)
        }
        return (ids, labels, seqs.count, L)
    }

    /// log π of each pair's (chosen, rejected) responses under the trainer as it is now.
    static func logLikelihoods(_ tm: TrainModel, _ pairs: [ExamplePair], batch: Int) -> [(Double, Double)] {
        var out: [(Double, Double)] = []
        var i = 0
        while i < pairs.count {
            let b = Self.batch(pairs[i..<min(pairs.count, i + batch)])
            let r = tm.step(tokens: b.ids, labels: b.labels, batch: b.B, length: b.L, gradScale: 0, backward: false)
            for k in stride(from: 0, to: b.B, by: 2) { out.append((-r.perSequence[k], -r.perSequence[k + 1])) }
            i += batch
        }
        return out
    }

    /// The losses of `pairs` (reference log-likelihoods `ref`), and with gradScale > 0 the
    /// gradients of gradScale · Σ loss added into the parameters. Returns per pair the loss,
    /// h and log π of both responses.
    func forward(_ pairs: ArraySlice<ExamplePair>, ref: ArraySlice<(Double, Double)>, gradScale: Float,
                 maskKey: UInt64 = 0) -> [(loss: Double, h: Double, chosen: Double, rejected: Double)] {
        let b = Self.batch(pairs)
        let first = trainModel.step(tokens: b.ids, labels: b.labels, batch: b.B, length: b.L, gradScale: 0, backward: false, maskKey: maskKey)
        var out: [(loss: Double, h: Double, chosen: Double, rejected: Double)] = []
        var weights = [Float](repeating: 0, count: b.B)
        for (k, r) in zip(0..<pairs.count, ref) {
            let c = -first.perSequence[2 * k], x = -first.perSequence[2 * k + 1]
            let h = (c - r.0) - (x - r.1)
            let v = loss.value(h, beta: beta)
            out.append((v.loss, h, c, x))
            // ∂L/∂log π_c = dh, ∂L/∂log π_r = −dh; step adds gradScale·rowScale·∂(−log π), hence the signs.
            weights[2 * k] = Float(-v.dh)
            weights[2 * k + 1] = Float(v.dh)
        }
        if gradScale > 0 {
            let rows = (0..<(b.B * b.L)).map { weights[$0 / b.L] }
            trainModel.step(tokens: b.ids, labels: b.labels, batch: b.B, length: b.L, gradScale: gradScale, backward: true, maskKey: maskKey,
                            rowScales: rows)
        }
        return out
    }

    public func evaluate() -> DPOEval? {
        guard !eval.isEmpty else { return nil }
        var l = 0.0, right = 0, margin = 0.0, chosen = 0.0, rejected = 0.0
        var i = 0
        while i < eval.count {
            let j = min(eval.count, i + options.batchSize)
            for (k, x) in forward(eval[i..<j], ref: evalReference[i..<j], gradScale: 0).enumerated() {
                l += x.loss
                right += x.h > 0 ? 1 : 0
                margin += beta * x.h
                chosen += beta * (x.chosen - evalReference[i + k].0)
                rejected += beta * (x.rejected - evalReference[i + k].1)
            }
            i = j
        }
        let n = Double(eval.count)
        return DPOEval(loss: l / n, accuracy: Double(right) / n, margin: margin / n, chosenReward: chosen / n, rejectedReward: rejected / n)
    }

    func trainStep() -> LogRow {
        let o = options
        let batches = microBatches()
        let count = batches.reduce(0) { $0 + $1.count }
        trainModel.zeroGradients()
        var lossSum = 0.0, tokens = 0
        for (j, b) in batches.enumerated() {
            let key = TrainRNG.mix(o.seed ^ (UInt64(step) << 20) ^ UInt64(j))
            lossSum += forward(ArraySlice(b.map { train[$0] }), ref: ArraySlice(b.map { trainReference[$0] }), gradScale: 1 / Float(count),
                               maskKey: key).reduce(0) { $0 + $1.loss }
            tokens += 2 * b.count * b.map { max(train[$0].chosen.ids.count, train[$0].rejected.ids.count) }.max()!
        }
        let norm = clipGradients(trainModel.parameters, maxNorm: o.clip)
        let lr = o.learningRate * o.schedule.factor(step: step, total: totalSteps, warmup: o.warmup)
        optimizer.step(trainModel.parameters, lr: lr)
        step += 1
        return LogRow(step: step, epoch: Double(step) / Double(stepsPerEpoch), loss: lossSum / Double(count), lr: lr, tokens: tokens,
                      seconds: 0, gradNorm: norm, evalLoss: nil)
    }

    /// Trains to the end; writes loss.csv, eval.csv (loss, accuracy, margin, rewards), loss.svg and the adapter.
    public func run(progress: ((TrainProgress) -> Void)? = nil, onEval: ((Int, DPOEval) -> Void)? = nil) throws {
        self.onEval = onEval
        try runLoop(progress: progress)
    }

    var onEval: ((Int, DPOEval) -> Void)?

    func evaluateAndRecord() throws -> Double? {
        guard let e = evaluate() else { return nil }
        evalHistory.append((step, e))
        onEval?(step, e)
        let text = "step,eval_loss,accuracy,margin,chosen_reward,rejected_reward\n" + evalHistory.map {
            String(format: "%d,%.6f,%.4f,%.4f,%.4f,%.4f\n", $0.step, $0.eval.loss, $0.eval.accuracy, $0.eval.margin, $0.eval.chosenReward,
                   $0.eval.rejectedReward)
        }.joined()
        try writeAtomically(Array(text.utf8), to: options.outputDir + "/eval.csv")
        return e.loss
    }

    var curveTitle: String {
        "DPO (\(loss.rawValue), β \(beta)): \((options.modelPath as NSString).lastPathComponent) — \((options.dataPath as NSString).lastPathComponent)"
    }

    func saveResult() throws {
        guard case let .lora(c) = options.mode else { return }
        try trainModel.peftAdapter(c, modelPath: options.modelPath).save(to: options.outputDir)
    }
}

extension DPOTrainer {
    var checkpointParameters: [Parameter] { trainModel.parameters }
    var checkpointOptimizer: AdamW { optimizer }
    var extraFingerprint: [(String, String)] { [("beta", "\(beta)"), ("loss", loss.rawValue)] }
    var baseModelFile: WrenFile { model.file }
    var evalLosses: [(step: Int, loss: Double)] { evalHistory.map { ($0.step, $0.eval.loss) } }
    /// "step:loss:accuracy:margin:chosen:rejected" per evaluation, ";"-separated.
    var evalsText: String {
        evalHistory.map { "\($0.step):\($0.eval.loss):\($0.eval.accuracy):\($0.eval.margin):\($0.eval.chosenReward):\($0.eval.rejectedReward)" }
            .joined(separator: ";")
    }
    func restoreEvals(_ text: String) {
        evalHistory = text.split(separator: ";").compactMap { e in
            let f = e.split(separator: ":").compactMap { Double($0) }
            guard f.count == 6, let s = Int(exactly: f[0]) else { return nil }
            return (s, DPOEval(loss: f[1], accuracy: f[2], margin: f[3], chosenReward: f[4], rejectedReward: f[5]))
        }
    }
}
