// What the preference trainers (reward models, DPO) share: each optimizer
// step's micro-batches of pairs (a seeded shuffle per epoch, as finetune's),
// the output directory's checks and lock, and the loop that logs every step
// (loss.csv), evaluates (eval.csv), reports progress, draws loss.svg and saves
// the adapter.

import Foundation
import WrenFormat

protocol PairTraining: AnyObject {
    var options: FinetuneOptions { get }
    var train: [ExamplePair] { get }
    var step: Int { get }
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

    /// Trains to the end (evaluating at step 0, every evalEvery steps and at the end).
    func runLoop(progress: ((TrainProgress) -> Void)?) throws {
        let o = options
        try checkOutputPath(o.outputDir, overwrite: true, directory: true)
        try FileManager.default.createDirectory(atPath: o.outputDir, withIntermediateDirectories: true)
        let lock = try DirectoryLock(o.outputDir)
        defer { lock.release() }
        if !o.force, let done = ["adapter_model.safetensors", "adapter_config.json"].first(where: {
            FileManager.default.fileExists(atPath: o.outputDir + "/" + $0)
        }) {
            throw Finetuner.invalid("force", "is not set, but \(o.outputDir) already holds a trained result (\(done)): force its replacement or choose another output directory")
        }
        var evals: [(step: Int, loss: Double)] = []
        if let e = try evaluateAndRecord() { evals.append((0, e)) }
        let last = min(totalSteps, o.maxSteps ?? totalSteps)
        let start = Date()
        var tokensSoFar = 0
        while step < last {
            var row = trainStep()
            tokensSoFar += row.tokens
            row.seconds = Date().timeIntervalSince(start)
            if o.evalEvery > 0 ? (step % o.evalEvery == 0 || step == last) : step == last, let e = try evaluateAndRecord() {
                row.evalLoss = e
                evals.append((step, e))
            }
            log.append(row)
            try writeAtomically(Array((Finetuner.csvHeader + log.map(Finetuner.csvLine).joined()).utf8), to: o.outputDir + "/loss.csv")
            let elapsed = Date().timeIntervalSince(start)
            progress?(TrainProgress(step: step, totalSteps: last, row: row, tokensPerSecond: Double(tokensSoFar) / max(elapsed, 1e-9),
                                    etaSeconds: elapsed / Double(step) * Double(last - step)))
        }
        try writeAtomically(Array(LossCurve.svg(log, eval: evals, title: curveTitle).utf8), to: o.outputDir + "/loss.svg")
        try saveResult()
    }
}
