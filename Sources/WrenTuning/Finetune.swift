// `wren finetune`: the training loop. Data are validated and tokenized before
// the first step; each optimizer step runs grad-accum micro-batches, clips,
// and applies AdamW at the scheduled rate. Every random choice (LoRA init,
// data order per epoch, dropout masks per step) derives from the seed and the
// step number, so a checkpoint (parameters, moments, step, loss log) resumes
// to the same final weights as an uninterrupted run.

import Foundation
import WrenEngine
import WrenFormat
import WrenKernels
import WrenTokenizer

public struct FinetuneOptions: Sendable {
    public var modelPath: String
    public var dataPath: String
    public var outputDir: String
    public var evalDataPath: String?
    public var validationSplit: Double = 0
    public var mode: TrainMode = .lora(LoRAConfig())
    public var epochs = 3
    /// Stops after this many optimizer steps in all (the schedule still spans the epochs).
    public var maxSteps: Int?
    public var learningRate: Float = 2e-4
    public var batchSize = 4
    public var gradAccum = 1
    public var blockSize = 512
    public var warmup = 0
    public var schedule: Schedule = .linear
    public var weightDecay: Float = 0
    public var clip: Float = 1
    public var checkpointing = false
    /// Saves a checkpoint every N steps (0: only at the end).
    public var saveEvery = 0
    /// Evaluates every N steps (0: at each save and at the end).
    public var evalEvery = 0
    public var resume = false
    /// Start afresh in a directory that already holds a finished adapter or model (replacing it).
    public var force = false
    public var seed: UInt64 = 42
    /// text_only: concatenate and cut into blocks (default); false: one sequence per instance.
    public var pack: Bool?
    public var truncate = false
    public var trainOnPrompt = false
    public var threads: Int = Machine.physicalCores
    public var chatTemplate: String?
    /// Element type of the .wren a full finetune writes.
    public var saveType: DType = .f32
    /// LISA (full finetuning only): train this many randomly chosen layers at a
    /// time (0: all layers), plus the embedding, output head and final norm.
    public var lisaLayers = 0
    /// LISA: choose new layers every this many optimizer steps.
    public var lisaInterval = 20
    /// LoRA: start from this PEFT adapter's factors instead of a fresh initialisation
    /// (same rank and targets; RAFT continues one adapter across its iterations).
    public var initAdapter: String?

    public init(modelPath: String, dataPath: String, outputDir: String) {
        self.modelPath = modelPath; self.dataPath = dataPath; self.outputDir = outputDir
    }
}

public struct TrainProgress: Sendable {
    public var step: Int
    public var totalSteps: Int
    public var row: LogRow
    public var tokensPerSecond: Double
    public var etaSeconds: Double
}

public final class Finetuner: @unchecked Sendable {
    public let options: FinetuneOptions
    public let model: LlamaModel
    public let trainModel: TrainModel
    public let train: [TrainSequence]
    public let eval: [TrainSequence]
    public let datasetType: DatasetType
    public let optimizer: AdamW
    public let stepsPerEpoch: Int
    public let totalSteps: Int
    public internal(set) var step = 0
    public internal(set) var log: [LogRow] = []
    /// Validation loss by step, including step 0 (before training).
    public internal(set) var evalHistory: [(step: Int, loss: Double)] = []
    /// Wall time of earlier runs (restored from a checkpoint).
    var priorSeconds: Double = 0
    /// XXH64 of every training and evaluation token and label: a resume must see the same data.
    let dataHash: UInt64

    /// Refuses up front a run whose trainable parameters, gradients and AdamW moments
    /// (16 bytes per trainable value) plus the f32 copies of a full finetune and the
    /// activations would not fit in this machine's memory, with the figure.
    static func checkMemory(_ o: FinetuneOptions, _ model: LlamaModel) throws {
        let c = model.config
        var trainable = 0.0
        switch o.mode {
        case .lora(let lc):
            for l in model.layers { for p in lc.targets { let w = p.matrix(l); trainable += Double(lc.rank) * Double(w.rows + w.cols) } }
        case .full:
            trainable = model.file.tensors.reduce(0.0) { $0 + Double($1.elementCount) }
        }
        // Activations kept per token and layer (inputs of each op, attention rows, ffn hidden), in floats.
        let perToken = Double(c.blockCount) * Double(12 * c.embeddingLength + 4 * c.feedForwardLength) + 2 * Double(c.vocabSize) / 8
        let activations = Double(o.batchSize * o.blockSize) * perToken * 4 * (o.checkpointing ? 0.2 : 1)
        let bytes = trainable * 16 + activations
        let physical = Double(sysconf(Int32(_SC_PHYS_PAGES))) * Double(sysconf(Int32(_SC_PAGESIZE)))
        if physical > 0, bytes > physical {
            throw EngineError.invalidParameter(String(format: "this run needs about %.1f GB (%.0f million trainable values at 16 bytes each, %.1f GB of activations) but the machine has %.1f GB; lower the LoRA rank, the batch or block size, or use gradient checkpointing",
                                                      bytes / 1e9, trainable / 1e6, activations / 1e9, physical / 1e9))
        }
    }

    /// A setting out of range, named by its `FinetuneOptions` property.
    static func invalid(_ setting: String, _ reason: String) -> EngineError { .invalidSetting(setting: setting, reason: reason) }

    static func hash(_ seqs: [TrainSequence]) -> UInt64 {
        var h: UInt64 = 0
        for s in seqs {
            h = s.ids.withUnsafeBytes { XXH64.hash($0, seed: h) }
            h = s.labels.withUnsafeBytes { XXH64.hash($0, seed: h) }
        }
        return h
    }

    /// A seeded choice of `validationSplit` of the instances for evaluation, at least one,
    /// never all: (the rest, the chosen), each in the original order.
    static func split<T>(_ items: [T], _ o: FinetuneOptions) throws -> ([T], [T]) {
        var rng = TrainRNG(seed: o.seed ^ 0x5EED_5EED)
        let n = items.count
        let k = min(n - 1, max(1, Int((Double(n) * o.validationSplit).rounded())))
        guard k >= 1 else { throw Self.invalid("validationSplit", "needs at least two instances") }
        var idx = Array(0..<n)
        for i in stride(from: n - 1, to: 0, by: -1) { idx.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let chosen = Set(idx.prefix(k))
        return ((0..<n).filter { !chosen.contains($0) }.map { items[$0] }, chosen.sorted().map { items[$0] })
    }

    /// The settings' ranges, checked before anything is loaded (finetune, reward models, DPO).
    public static func validate(_ o: FinetuneOptions) throws {
        for (name, value, least) in [("batchSize", o.batchSize, 1), ("gradAccum", o.gradAccum, 1), ("epochs", o.epochs, 1), ("blockSize", o.blockSize, 2),
                                     ("warmup", o.warmup, 0), ("saveEvery", o.saveEvery, 0), ("evalEvery", o.evalEvery, 0),
                                     ("maxSteps", o.maxSteps ?? 1, 1), ("lisaInterval", o.lisaInterval, 1), ("lisaLayers", o.lisaLayers, 0)] where value < least {
            throw Self.invalid(name, "must be at least \(least), not \(value)")
        }
        guard o.learningRate > 0, o.learningRate.isFinite else { throw Self.invalid("learningRate", "must be a finite number > 0, not \(o.learningRate)") }
        guard o.weightDecay >= 0, o.weightDecay.isFinite else { throw Self.invalid("weightDecay", "must be a finite number ≥ 0, not \(o.weightDecay)") }
        guard o.clip >= 0, o.clip.isFinite else { throw Self.invalid("clip", "must be a finite number ≥ 0 (0: off), not \(o.clip)") }
        guard o.validationSplit >= 0, o.validationSplit < 1 else { throw Self.invalid("validationSplit", "must be in [0, 1), not \(o.validationSplit)") }
        if o.evalDataPath != nil, o.validationSplit > 0 { throw Self.invalid("validationSplit", "cannot be combined with separate evaluation data") }
        if case let .lora(c) = o.mode {
            guard c.rank >= 1 else { throw Self.invalid("loraRank", "must be at least 1, not \(c.rank)") }
            guard c.alpha.isFinite, c.alpha > 0 else { throw Self.invalid("loraAlpha", "must be a finite number > 0, not \(c.alpha)") }
            guard c.dropout >= 0, c.dropout < 1 else { throw Self.invalid("loraDropout", "must be in [0, 1), not \(c.dropout)") }
            guard !c.targets.isEmpty else { throw Self.invalid("loraTargets", "is empty") }
            guard o.lisaLayers == 0 else { throw Self.invalid("lisaLayers", "samples layers for full finetuning; this run is LoRA") }
        }
    }

    public init(_ o: FinetuneOptions) throws {
        options = o
        try Self.validate(o)
        model = try LlamaModel(path: o.modelPath)
        try Self.checkMemory(o, model)
        guard o.blockSize <= model.config.contextLength * max(1, Int(model.rope.factor)) else {
            throw Self.invalid("blockSize", "\(o.blockSize) exceeds the model's context length \(model.config.contextLength)")
        }
        let raw = try RawDataset.load(o.dataPath)
        datasetType = raw.type
        var chat: ChatFormatter?
        if raw.type == .conversation || o.chatTemplate != nil { chat = try ChatFormatter(model: model, name: o.chatTemplate) }
        var examples = try DatasetTokenizer.tokenize(raw, model: model, chat: chat, options: TokenizeOptions(trainOnPrompt: o.trainOnPrompt))
        var evalExamples: [Example] = []
        if let e = o.evalDataPath {
            let er = try RawDataset.load(e)
            evalExamples = try DatasetTokenizer.tokenize(er, model: model, chat: chat, options: TokenizeOptions(trainOnPrompt: o.trainOnPrompt))
        } else if o.validationSplit > 0 {
            (examples, evalExamples) = try Self.split(examples, o)
        }
        let pack = o.pack ?? (raw.type == .textOnly)
        func blocks(_ ex: [Example]) throws -> [TrainSequence] {
            pack ? Blocks.pack(ex, blockSize: o.blockSize) : try Blocks.perExample(ex, blockSize: o.blockSize, truncate: o.truncate)
        }
        train = try blocks(examples).filter { $0.labels.contains { $0 != ignoreLabel } }
        eval = try blocks(evalExamples).filter { $0.labels.contains { $0 != ignoreLabel } }
        guard !train.isEmpty else { throw DatasetError(o.dataPath, "no trainable tokens after tokenization") }
        let maxLen = (train + eval).map(\.ids.count).max() ?? 2
        trainModel = try TrainModel(model: model, mode: o.mode, maxTokens: o.batchSize * maxLen, maxLength: maxLen, threads: o.threads,
                                    checkpointing: o.checkpointing, seed: o.seed)
        if o.lisaLayers != 0, !(1...model.config.blockCount).contains(o.lisaLayers) {
            throw Self.invalid("lisaLayers", "must be in 1...\(model.config.blockCount) (the model's layers), not \(o.lisaLayers)")
        }
        if let path = o.initAdapter { try trainModel.load(adapter: path) }
        optimizer = AdamW(parameters: trainModel.parameters, weightDecay: o.weightDecay)
        dataHash = Self.hash(train + [TrainSequence(ids: [], labels: [])] + eval)
        let micro = (train.count + o.batchSize - 1) / o.batchSize
        stepsPerEpoch = (micro + o.gradAccum - 1) / o.gradAccum
        totalSteps = stepsPerEpoch * o.epochs
    }

    /// LISA's layers for optimizer step `step` (nil: every layer): `lisaLayers`
    /// distinct layers drawn from the seed and the interval number, so a resumed
    /// run draws the same ones.
    public func lisaActiveLayers(step: Int) -> Set<Int>? {
        let o = options
        guard o.lisaLayers > 0 else { return nil }
        var rng = TrainRNG(seed: TrainRNG.mix(o.seed ^ 0x4C49_5341_0000_0000 ^ UInt64(step / o.lisaInterval)))
        var idx = Array(0..<model.config.blockCount)
        for i in 0..<o.lisaLayers { idx.swapAt(i, i + Int(rng.next() % UInt64(idx.count - i))) }
        return Set(idx.prefix(o.lisaLayers))
    }

    /// Trained tokens per epoch.
    public var trainTokens: Int { train.reduce(0) { $0 + $1.labels.filter { $0 != ignoreLabel }.count } }

    /// The order of the training sequences in `epoch` (seeded shuffle).
    func order(epoch: Int) -> [Int] {
        var idx = Array(0..<train.count)
        var rng = TrainRNG(seed: options.seed &+ UInt64(epoch) &* 0x9E37_79B9)
        for i in stride(from: idx.count - 1, to: 0, by: -1) { idx.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return idx
    }

    /// Pads sequences to their longest (ids with EOS/0, labels ignored).
    func batch(_ seqs: [TrainSequence]) -> (ids: [Int32], labels: [Int32], B: Int, L: Int) {
        let L = seqs.map(\.ids.count).max() ?? 1
        let pad = model.tokenizer.eosID ?? 0
        var ids: [Int32] = [], labels: [Int32] = []
        for s in seqs {
            ids += s.ids + Array(repeating: pad, count: L - s.ids.count)
            labels += s.labels + Array(repeating: ignoreLabel, count: L - s.ids.count)
        }
        return (ids, labels, seqs.count, L)
    }

    /// Mean loss over the evaluation sequences (nil when there are none).
    public func evaluate() -> Double? {
        guard !eval.isEmpty else { return nil }
        var sum = 0.0, n = 0
        var i = 0
        while i < eval.count {
            let b = batch(Array(eval[i..<min(eval.count, i + options.batchSize)]))
            let r = trainModel.step(tokens: b.ids, labels: b.labels, batch: b.B, length: b.L, gradScale: 0, backward: false)
            sum += r.lossSum; n += r.count
            i += options.batchSize
        }
        return n > 0 ? sum / Double(n) : nil
    }

    /// One optimizer step (step `step`); returns the log row.
    func trainStep() -> LogRow {
        let o = options
        let epoch = step / stepsPerEpoch, k = step % stepsPerEpoch
        let ord = order(epoch: epoch)
        let micro = (train.count + o.batchSize - 1) / o.batchSize
        let mb0 = k * o.gradAccum, mb1 = min(micro, mb0 + o.gradAccum)
        var batches: [(ids: [Int32], labels: [Int32], B: Int, L: Int)] = []
        for mb in mb0..<mb1 {
            let idx = ord[(mb * o.batchSize)..<min(train.count, (mb + 1) * o.batchSize)]
            batches.append(batch(idx.map { train[$0] }))
        }
        let count = batches.reduce(0) { $0 + $1.labels.filter { $0 != ignoreLabel }.count }
        trainModel.activeLayers = lisaActiveLayers(step: step)
        trainModel.zeroGradients()
        var lossSum = 0.0
        for (j, b) in batches.enumerated() {
            let key = TrainRNG.mix(o.seed ^ (UInt64(step) << 20) ^ UInt64(j))
            lossSum += trainModel.step(tokens: b.ids, labels: b.labels, batch: b.B, length: b.L, gradScale: 1 / Float(count), backward: true,
                                       maskKey: key).lossSum
        }
        let trainable = trainModel.trainableParameters
        let norm = clipGradients(trainable, maxNorm: o.clip)
        let lr = o.learningRate * o.schedule.factor(step: step, total: totalSteps, warmup: o.warmup)
        optimizer.step(trainable, lr: lr)
        step += 1
        return LogRow(step: step, epoch: Double(step) / Double(stepsPerEpoch), loss: lossSum / Double(max(count, 1)), lr: lr,
                      tokens: batches.reduce(0) { $0 + $1.B * $1.L }, seconds: 0, gradNorm: norm, evalLoss: nil)
    }

    /// Creates and locks the output directory, refusing one that holds a checkpoint (unless
    /// resuming) or a finished result (`results`) unless `force`. Release the lock when done.
    static func prepareOutput(_ o: FinetuneOptions, results: [String]) throws -> DirectoryLock {
        try checkOutputPath(o.outputDir, overwrite: true, directory: true)
        try FileManager.default.createDirectory(atPath: o.outputDir, withIntermediateDirectories: true)
        let lock = try DirectoryLock(o.outputDir)
        if !o.resume, !o.force, FileManager.default.fileExists(atPath: o.outputDir + "/checkpoint.safetensors") {
            lock.release()
            throw invalid("resume", "is not set, but \(o.outputDir) already holds a training run (checkpoint.safetensors): resume it, force a fresh start, or choose another output directory")
        }
        if !o.resume, !o.force, let done = results.first(where: { FileManager.default.fileExists(atPath: o.outputDir + "/" + $0) }) {
            lock.release()
            throw invalid("force", "is not set, but \(o.outputDir) already holds a trained result (\(done)): force its replacement or choose another output directory")
        }
        return lock
    }

    /// Runs (or resumes) training to the end, writing the log, the curve,
    /// checkpoints and the result into the output directory.
    public func run(baseline: ((Double) -> Void)? = nil, progress: ((TrainProgress) -> Void)? = nil) throws {
        let o = options
        let lock = try Self.prepareOutput(o, results: ["adapter_model.safetensors", "adapter_config.json", "model.wren"])
        defer { lock.release() }
        if o.resume { try loadCheckpoint() }
        if step == 0, let e = evaluate() {
            evalHistory = [(0, e)]
            baseline?(e)
            try writeEvalLog()
        }
        let last = min(totalSteps, o.maxSteps ?? totalSteps)
        let start = Date()
        var tokensSinceStart = 0
        let firstStep = step
        try writeLog()
        while step < last {
            var row = trainStep()
            tokensSinceStart += row.tokens
            row.seconds = priorSeconds + Date().timeIntervalSince(start)
            let saving = (o.saveEvery > 0 && step % o.saveEvery == 0) || step == last
            let evaluating = o.evalEvery > 0 ? (step % o.evalEvery == 0 || step == last) : saving
            if evaluating, let e = evaluate() {
                row.evalLoss = e
                evalHistory.append((step, e))
                try writeEvalLog()
            }
            log.append(row)
            try appendLog(row)
            if saving {
                try saveCheckpoint(seconds: row.seconds)
                try writeCurve()
            }
            let elapsed = Date().timeIntervalSince(start)
            let rate = Double(tokensSinceStart) / max(elapsed, 1e-9)
            let perStep = elapsed / Double(step - firstStep)
            progress?(TrainProgress(step: step, totalSteps: last, row: row, tokensPerSecond: rate, etaSeconds: perStep * Double(last - step)))
        }
        try writeCurve()
        try saveResult()
    }

    // MARK: results

    /// The adapter as PEFT factors (HF row order).
    public func peftAdapter() -> PEFTAdapter? {
        guard case let .lora(c) = options.mode else { return nil }
        return trainModel.peftAdapter(c, modelPath: options.modelPath)
    }

    func saveResult() throws {
        if let a = peftAdapter() {
            try a.save(to: options.outputDir)
        } else {
            var values: [String: UnsafePointer<Float>] = [:]
            for p in trainModel.parameters {
                precondition(p.count == model.file.info(p.name)?.elementCount, "parameter \(p.name) does not match its tensor")
                values[p.name] = UnsafePointer(p.value)
            }
            try ModelWriter.write(base: model.file, replacing: values, type: options.saveType, to: options.outputDir + "/model.wren",
                                  overwrite: true)
        }
    }
}

extension TrainModel {
    /// The LoRA factors as a PEFT adapter (HF row order), named after the base.
    func peftAdapter(_ c: LoRAConfig, modelPath: String) -> PEFTAdapter {
        var factors: [Int: [String: PEFTFactor]] = [:]
        for l in 0..<config.blockCount {
            for p in c.targets {
                guard let m = loraModule(l, p) else { continue }
                factors[l, default: [:]][p.hfModule] = PEFTFactor(a: m.a.values, b: base.hfOrderB(m.b.values, projection: p, rank: m.rank),
                                                                  rank: m.rank, inFeatures: m.inFeatures, outFeatures: m.outFeatures)
            }
        }
        let name = base.file.metadata["general.name"]?.string ?? (modelPath as NSString).lastPathComponent
        let cfg = PEFTConfig(rank: c.rank, alpha: Double(c.alpha), dropout: Double(c.dropout), targetModules: c.targets.sorted().map(\.hfModule),
                             useRSLoRA: c.rsLoRA, baseModel: name)
        var adapter = PEFTAdapter(config: cfg, factors: factors)
        if let tp = tokenParam {
            adapter.tokenIDs = tokenIDs.map(Int.init)
            adapter.tokenRows = tp.values
        }
        return adapter
    }
}

extension TrainModel {
    /// Sets the LoRA factors from a PEFT adapter directory, which must have exactly the
    /// trained modules and ranks.
    func load(adapter path: String) throws {
        let a = try PEFTAdapter.load(path)
        let deltas = try base.deltas(from: a, source: path)
        guard a.tokenIDs == tokenIDs.map(Int.init) else {
            throw FormatError.invalid(path: path, field: "trainable_token_indices",
                                      reason: "\(a.tokenIDs.count) trainable tokens, but this run trains \(tokenIDs.count)" + (tokenIDs.isEmpty ? "" : " (ids \(tokenIDs.first!)…\(tokenIDs.last!))"))
        }
        if let tp = tokenParam { tp.set(Array(try base.tokenRows(from: a, source: path).sorted { $0.key < $1.key }.map(\.value).joined())) }
        for l in 0..<config.blockCount {
            for p in Projection.allCases {
                let m = loraModule(l, p), d = deltas[l]?[p]
                guard (m == nil) == (d == nil) else {
                    throw FormatError.invalid(path: path, field: "layer \(l) \(p.hfModule)",
                                              reason: m == nil ? "is in the adapter but not among this run's LoRA targets" : "is a LoRA target of this run but not in the adapter")
                }
                guard let m, let d else { continue }
                guard d.rank == m.rank, abs(d.scale - m.scale) <= 1e-6 * abs(m.scale) else {
                    throw FormatError.invalid(path: path, field: "layer \(l) \(p.hfModule)",
                                              reason: "rank \(d.rank) and scale \(d.scale), but this run's LoRA has rank \(m.rank) and scale \(m.scale)")
                }
                m.a.set(d.a)
                m.b.set(d.b)
            }
        }
    }
}
