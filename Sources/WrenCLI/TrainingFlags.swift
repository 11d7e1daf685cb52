// The training flags that finetune, reward-model training and DPO share: the
// data, the LoRA settings, the optimizer and its schedule, evaluation, threads.

import ArgumentParser
import Foundation
import WrenEngine
import WrenFormat
import WrenTuning

struct TrainingFlags: ParsableArguments {
    @Option(name: .shortAndLong, help: "Base model (.wren). Quantized bases (q4_0 … q8_0, the k-quants) stay quantized: QLoRA.")
    var model: String


    @Option(help: "Dataset directory or file (LMFlow JSON / JSONL); RAFT takes --prompts instead.")
    var data: String?


    @Option(name: .shortAndLong, help: "Output directory.")
    var output: String


    @Option(name: .customLong("eval-data"), help: "Validation dataset (same formats).")
    var evalData: String?


    @Option(name: .customLong("validation-split"), help: "Hold out this fraction of the instances for validation (0 = none).")
    var validationSplit: Double = 0


    @Option(name: .customLong("lora-r"), help: "LoRA rank.")
    var loraR = 8


    @Option(name: .customLong("lora-alpha"), help: "LoRA alpha (the update is scaled by alpha/r).")
    var loraAlpha: Float = 16


    @Option(name: .customLong("lora-dropout"), help: "Dropout on the LoRA branch's input, in [0, 1).")
    var loraDropout: Float = 0


    @Option(name: .customLong("lora-targets"), help: "Comma-separated projections: q,k,v,o,gate,up,down (or q_proj,...; 'all').")
    var loraTargets = "q,v"


    @Flag(name: .customLong("use-rslora"), help: "Scale by alpha/sqrt(r) (rsLoRA).")
    var rsLoRA = false


    @Option(help: "Epochs over the training data.")
    var epochs = 3


    @Option(name: .customLong("max-steps"), help: "Stop after this many optimizer steps in all.")
    var maxSteps: Int?


    @Option(help: "Peak learning rate.")
    var lr: Float?


    @Option(name: .customLong("batch-size"), help: "Sequences (pairs, for reward models and DPO) per micro-batch.")
    var batchSize = 4


    @Option(name: .customLong("grad-accum"), help: "Micro-batches per optimizer step.")
    var gradAccum = 1


    @Option(name: .customLong("block-size"), help: "Tokens per sequence (packing block, or the longest instance allowed).")
    var blockSize = 512


    @Flag(help: "Cut instances longer than --block-size instead of stopping with an error.")
    var truncate = false


    @Option(help: "Warm-up steps (linear from 0).")
    var warmup = 0


    @Option(help: "Learning-rate schedule after warm-up: cosine, linear or constant.")
    var schedule = "linear"


    @Option(name: .customLong("weight-decay"), help: "AdamW decoupled weight decay.")
    var weightDecay: Float = 0


    @Option(help: "Clip the global gradient norm to this (0 = off).")
    var clip: Float = 1


    @Flag(name: .customLong("grad-checkpointing"), help: "Keep only each layer's input and recompute the rest in the backward pass (less memory, ~1/3 more compute).")
    var gradCheckpointing = false


    @Option(name: .customLong("eval-every"), help: "Validation loss every N steps (0 = at each checkpoint).")
    var evalEvery = 0


    @Flag(help: "Start afresh even if OUT already holds a trained adapter or model (it is replaced at the end).")
    var force = false


    @Option(help: "Random seed (LoRA init, data order, dropout).")
    var seed: UInt64 = 42


    @OptionGroup var threadOptions: ThreadOptions


    @Option(name: .customLong("chat-template"), help: "Named chat template for conversation data instead of the model's.")
    var chatTemplate: String?


    @Option(name: .customLong("init-adapter"), help: "Start the LoRA factors from this PEFT adapter (same rank and targets) instead of a fresh initialisation.")
    var initAdapter: String?

    func validate() throws {
        guard Schedule(rawValue: schedule) != nil else { throw ValidationError("--schedule must be cosine, linear or constant (got \(schedule))") }
        _ = try targets()
    }

    func targets() throws -> [Projection] {
        if loraTargets == "all" { return Projection.allCases }
        var out: [Projection] = []
        for s in loraTargets.split(separator: ",") {
            let name = s.trimmingCharacters(in: .whitespaces)
            guard let p = Projection(name: name) else {
                throw ValidationError("--lora-targets: unknown projection \"\(name)\" (q, k, v, o, gate, up, down, or all)")
            }
            if !out.contains(p) { out.append(p) }
        }
        guard !out.isEmpty else { throw ValidationError("--lora-targets is empty") }
        return out
    }

    /// The options these flags set (LoRA mode); values are checked by the trainer, whose
    /// errors name the setting.
    func options(defaultLearningRate: Float, needsData: Bool = true) throws -> FinetuneOptions {
        guard let data = data ?? (needsData ? nil : "") else { throw ValidationError("--data is required") }
        if !needsData && !data.isEmpty { throw ValidationError("--data does not apply here (RAFT makes its data from --prompts)") }
        var o = FinetuneOptions(modelPath: model, dataPath: data, outputDir: output)
        o.evalDataPath = evalData
        o.validationSplit = validationSplit
        o.mode = .lora(LoRAConfig(rank: loraR, alpha: loraAlpha, dropout: loraDropout, targets: try targets(), rsLoRA: rsLoRA))
        o.epochs = epochs
        o.maxSteps = maxSteps
        o.learningRate = lr ?? defaultLearningRate
        o.batchSize = batchSize
        o.gradAccum = gradAccum
        o.blockSize = blockSize
        o.truncate = truncate
        o.warmup = warmup
        o.schedule = Schedule(rawValue: schedule) ?? .linear
        o.weightDecay = weightDecay
        o.clip = clip
        o.checkpointing = gradCheckpointing
        o.evalEvery = evalEvery
        o.force = force
        o.seed = seed
        if let t = threadOptions.threads { o.threads = t }
        o.chatTemplate = chatTemplate
        o.initAdapter = initAdapter
        return o
    }
}

/// A progress printer for a training loop: one line rewritten in place on a terminal
/// (at most 5 a second), else a line every 5 s, always the last step.
func progressPrinter() -> (TrainProgress) -> Void {
    let tty = isatty(2) == 1
    var lastPrint = Date.distantPast
    return { p in
        let now = Date()
        guard p.step == p.totalSteps || now.timeIntervalSince(lastPrint) > (tty ? 0.2 : 5) else { return }
        lastPrint = now
        let line = String(format: "step %d/%d  epoch %.2f  loss %.4f  lr %.2e  %.0f tok/s  ETA %@", p.step, p.totalSteps, p.row.epoch,
                          p.row.loss, Double(p.row.lr), p.tokensPerSecond, Finetune.duration(p.etaSeconds))
        Std.err(tty ? "\r\u{1b}[K" + line + (p.step == p.totalSteps ? "\n" : "") : line + "\n")
    }
}

/// Checkpoints and resuming, shared by finetune, reward train and dpo.
struct ResumeFlags: ParsableArguments {
    @Option(name: .customLong("save-every"), help: "Write a checkpoint every N steps (0 = at the end only).")
    var saveEvery = 0

    @Flag(help: "Continue from OUT/checkpoint.safetensors (same settings and data).")
    var resume = false

    func apply(to o: inout FinetuneOptions) {
        o.saveEvery = saveEvery
        o.resume = resume
    }
}
