// What the preference trainers (reward models, DPO) share: each optimizer
// step's micro-batches of pairs (a seeded shuffle per epoch, as finetune's),
// the output directory's checks and lock, and the loop that logs every step
// (loss.csv), evaluates (eval.csv), reports progress, draws loss.svg, writes
// checkpoints (resumable with --resume, like finetune) and saves the adapter.

import Foundation
import WrenFormat
import WrenKernels

protocol PairTraining: AnyObject {
    var options: FinetuneOptions { get }
    var train: [ExamplePair] { get }
    var eval: [ExamplePair] { get }
    var step: Int { get set }
    var stepsPerEpoch: Int { get }
    var totalSteps: Int { get }
    var log: [LogRow] { get set }
    /// One optimizer step (advances `step`).
    func trainStep() -> LogRow
    /// Evaluates the held-out pairs, records and writes eval.csv; the held-out loss (nil: no held-out data).
    func evaluateAndRecord() throws -> Double?
    var curveTitle: String { get }
    /// Writes the result (the adapter) into the output directory.
    func saveResult() throws
    /// Everything the optimizer updates, in a fixed order, and the optimizer.
    var checkpointParameters: [Parameter] { get }
    var checkpointOptimizer: AdamW { get }
    /// The evaluation history as checkpoint text, and back.
    var evalsText: String { get }
    func restoreEvals(_ text: String)
    /// Settings beyond the shared ones that a resume must find unchanged.
    var extraFingerprint: [(String, String)] { get }
    var baseModelFile: WrenFile { get }
    /// The held-out losses so far, by step (for the curve).
    var evalLosses: [(step: Int, loss: Double)] { get }
}

extension PairTraining {
    /// The training pairs of each micro-batch of the current optimizer step.
    func microBatches() -> [[Int]] {
        let o = options
        let epoch = step / stepsPerEpoch, k = step % stepsPerEpoch
        var idx = Array(0..<train.count)
        var rng = TrainRNG(seed: o.seed &+ UInt64(epoch) &* 0x9E37_79B9)
        for i in stride(from: idx.count - 1, to: 0, by: -1) { idx.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let micro = (train.count + o.batchSize - 1) / o.batchSize
        let mb0 = k * o.gradAccum, mb1 = min(micro, mb0 + o.gradAccum)
        return (mb0..<mb1).map { mb in Array(idx[(mb * o.batchSize)..<min(train.count, (mb + 1) * o.batchSize)]) }
    }

    var checkpointPath: String { options.outputDir + "/checkpoint.safetensors" }

    /// What a resume must find unchanged: the settings, the base model, the initial adapter
    /// (DPO's reference) and every training and held-out pair's tokens.
    var fingerprintFields: [(String, String)] {
        let o = options
        var data: [UInt8] = []
        for p in train + eval {
            for side in [p.chosen, p.rejected] {
                side.ids.withUnsafeBytes { data += $0 }
                data += side.trained.map { $0 ? 1 : 0 } + [0xFF, 0xFF, 0xFF, 0xFE]
            }
        }
        let initHash = o.initAdapter.map { (try? ModelConverter.sha256(files: [$0 + "/adapter_model.safetensors"])) ?? "unreadable" } ?? "none"
        return [("mode", "\(o.mode)"), ("lr", "\(o.learningRate)"), ("bs", "\(o.batchSize)"), ("acc", "\(o.gradAccum)"), ("ep", "\(o.epochs)"),
                ("warm", "\(o.warmup)"), ("sched", "\(o.schedule)"), ("wd", "\(o.weightDecay)"), ("clip", "\(o.clip)"), ("seed", "\(o.seed)"),
                ("pairs", "\(train.count)/\(eval.count)")] + extraFingerprint
            + [("base", TrainingCheckpoint.baseHash(baseModelFile)), ("init", initHash),
               ("data", String(data.withUnsafeBytes { XXH64.hash($0) }, radix: 16))]
    }

    /// Trains to the end (evaluating at step 0, every evalEvery steps and at the end), with a
    /// checkpoint every saveEvery steps and at the end; `options.resume` continues from it.
    func runLoop(progress: ((TrainProgress) -> Void)?) throws {
        let o = options
        let lock = try Finetuner.prepareOutput(o, results: ["adapter_model.safetensors", "adapter_config.json"])
        defer { lock.release() }
        var prior = 0.0
        if o.resume {
            let r = try TrainingCheckpoint.load(from: checkpointPath, parameters: checkpointParameters, optimizer: checkpointOptimizer,
                                                fingerprint: fingerprintFields)
            step = r.step
            log = r.log
            prior = r.seconds
            restoreEvals(r.evals)
        } else {
            _ = try evaluateAndRecord()
        }
        let last = min(totalSteps, o.maxSteps ?? totalSteps)
        let start = Date(), firstStep = step
        var tokensSoFar = 0
        while step < last {
            var row = trainStep()
            tokensSoFar += row.tokens
            row.seconds = prior + Date().timeIntervalSince(start)
            if o.evalEvery > 0 ? (step % o.evalEvery == 0 || step == last) : step == last, let e = try evaluateAndRecord() {
                row.evalLoss = e
            }
            log.append(row)
            try writeAtomically(Array((Finetuner.csvHeader + log.map(Finetuner.csvLine).joined()).utf8), to: o.outputDir + "/loss.csv")
            if (o.saveEvery > 0 && step % o.saveEvery == 0) || step == last {
                try TrainingCheckpoint.save(to: checkpointPath, parameters: checkpointParameters, optimizer: checkpointOptimizer, step: step,
                                            seconds: row.seconds, log: log, evals: evalsText, fingerprint: fingerprintFields, seed: o.seed)
            }
            let elapsed = Date().timeIntervalSince(start)
            progress?(TrainProgress(step: step, totalSteps: last, row: row, tokensPerSecond: Double(tokensSoFar) / max(elapsed, 1e-9),
                                    etaSeconds: elapsed / Double(step - firstStep) * Double(last - step)))
        }
        try writeAtomically(Array(LossCurve.svg(log, eval: evalLosses, title: curveTitle).utf8), to: o.outputDir + "/loss.svg")
        try saveResult()
    }
}
