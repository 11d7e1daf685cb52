// `wren finetune`: LoRA / QLoRA / full finetuning on LMFlow JSON datasets;
// `wren merge`: fold LoRA adapters into a new .wren.

import ArgumentParser
import Foundation
import WrenEngine
import WrenFormat
import WrenKernels
import WrenTuning

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Finetune a model on an LMFlow JSON dataset: LoRA (QLoRA when the base is quantized) or full.",
        discussion: """
        DATA is a directory of LMFlow .json files ({"type": "text_only" | "text2text" | "conversation", "instances": [...]}) \
        or .jsonl files (one instance per line), or one such file. OUT receives the PEFT adapter \
        (adapter_config.json, adapter_model.safetensors) or, with --full, model.wren; plus loss.csv, eval.csv (validation), loss.svg and \
        checkpoint.safetensors. Every instance is checked before training starts.
        """)

    @OptionGroup var training: TrainingFlags

    @Flag(help: "Train every weight (f32 copies; small models) instead of LoRA.")
    var full = false


    @Option(name: .customLong("lisa-layers"), help: "With --full: LISA, train only this many randomly sampled layers at a time (plus embedding, head and final norm).")
    var lisaLayers: Int?


    @Option(name: .customLong("lisa-interval"), help: "With --lisa-layers: sample new layers every this many steps.")
    var lisaInterval = 20


    @Flag(inversion: .prefixedNo, help: "text_only: concatenate instances and cut into blocks (default on for text_only, off otherwise).")
    var pack: Bool?


    @Flag(name: .customLong("train-on-prompt"), help: "Train on inputs and user turns too (no masking).")
    var trainOnPrompt = false


    @OptionGroup var checkpoints: ResumeFlags


    @Option(name: .customLong("save-type"), help: "Element type of model.wren written by --full: f32, f16, bf16, q8_0, q4_1, q4_0.")
    var saveType = "f32"

    @Flag(name: .customLong("train-new-tokens"),
          help: "LoRA: also train the embedding rows of the tokens `wren vocab extend` added (PEFT trainable_token_indices; the tied output head's rows too). --full trains every row already.")
    var trainNewTokens = false

    /// Only what is about flags themselves (names that must parse); values are checked by
    /// `Finetuner`, whose errors name the setting and reach the user as its flag.
    func validate() throws {
        guard DType(name: saveType) != nil else { throw ValidationError("--save-type: unknown type \(saveType)") }
    }

    func run() throws {
        Std.removeTemporaryFilesOnSignals()
        do {
            var o = try training.options(defaultLearningRate: full ? 2e-5 : 2e-4)
            if full { o.mode = .full }
            if trainNewTokens, case var .lora(cfg) = o.mode {
                cfg.trainableTokens = try VocabExtension.addedTokens(try WrenFile(path: o.modelPath))
                o.mode = .lora(cfg)
            }
            o.pack = pack
            o.trainOnPrompt = trainOnPrompt
            checkpoints.apply(to: &o)
            o.saveType = DType(name: saveType) ?? .f32
            o.lisaLayers = lisaLayers ?? 0
            o.lisaInterval = lisaInterval
            let t0 = Date()
            let ft = try Finetuner(o)
            let trainable = ft.trainModel.parameters.reduce(0) { $0 + $1.count }
            let base = ft.model.layers.first.map { $0.q.dtype } ?? .f32
            stderrLine("wren finetune: \(ft.datasetType.rawValue) data, \(ft.train.count) training sequences (\(ft.trainTokens) trained tokens per epoch)"
                + (ft.eval.isEmpty ? "" : ", \(ft.eval.count) validation sequences")
                + "; \(full ? (lisaLayers.map { "full finetune with LISA (\($0) of \(ft.model.config.blockCount) layers every \(lisaInterval) steps)" } ?? "full finetune") : (base.isQuantized ? "QLoRA on a \(base) base" : "LoRA on a \(base) base")), \(trainable) trainable parameters; "
                + "\(ft.totalSteps) steps (\(ft.stepsPerEpoch) per epoch); prepared in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s")
            let tty = isatty(2) == 1
            var lastPrint = Date.distantPast
            try ft.run(baseline: { e in
                stderrLine(String(format: "step 0: val_loss %.4f (ppl %.2f) before training", e, exp(e)))
            }) { p in
                let now = Date()
                let final = p.step == p.totalSteps
                guard final || p.row.evalLoss != nil || now.timeIntervalSince(lastPrint) > (tty ? 0.2 : 5) else { return }
                lastPrint = now
                var line = String(format: "step %d/%d  epoch %.2f  loss %.4f  lr %.2e  %.0f tok/s  ETA %@", p.step, p.totalSteps, p.row.epoch,
                                  p.row.loss, Double(p.row.lr), p.tokensPerSecond, Self.duration(p.etaSeconds))
                if let e = p.row.evalLoss { line += String(format: "  val_loss %.4f (ppl %.2f)", e, exp(e)) }
                if tty && p.row.evalLoss == nil && !final {
                    Std.err(("\r\u{1b}[K" + line))
                } else {
                    Std.err(((tty ? "\r\u{1b}[K" : "") + line + "\n"))
                }
            }
            let output = training.output
            stderrLine("wren finetune: wrote \(full ? output + "/model.wren" : output + "/adapter_model.safetensors"), \(output)/loss.csv, \(output)/loss.svg"
                + String(format: " in %.1f s", Date().timeIntervalSince(t0)))
        } catch {
            fail(error)
        }
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
    }
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge LoRA adapters into a new .wren (quantized matrices are dequantized, updated and requantized).")

    @Option(name: .shortAndLong, help: "Base model (.wren).")
    var model: String

    @OptionGroup var adapters: LoRAOptions

    @Option(name: .shortAndLong, help: "Output .wren.")
    var output: String

    @Option(name: .customLong("type"), help: "Type of the merged matrices (default: each base matrix's own): f32, f16, bf16, q8_0, q4_1, q4_0.")
    var type: String?

    @Flag(help: "Replace an existing output file.")
    var force = false

    func validate() throws {
        guard !adapters.lora.isEmpty else { throw ValidationError("give at least one --lora ADAPTER") }
        if let type, DType(name: type) == nil { throw ValidationError("--type: unknown type \(type)") }
    }

    func run() throws {
        Std.removeTemporaryFilesOnSignals()
        do {
            let m = try LlamaModel(path: model)
            try adapters.attach(to: m)
            if (try? FileManager.default.attributesOfItem(atPath: output)) != nil, !force {
                throw FormatError.outputExists(path: output)
            }
            let reports = try Merger.merge(model: m, type: type.flatMap(DType.init(name:)), to: output, overwrite: force)
            let total = reports.reduce(0.0) { $0 + $1.updateNorm * $1.updateNorm }
            let weighted = reports.reduce(0.0) { $0 + $1.survived * $1.updateNorm * $1.updateNorm } / max(total, 1e-30)
            let worst = reports.min { $0.survived < $1.survived }
            stderrLine(String(format: "wren merge: %d matrices updated; %.1f%% of the adapters' update survived requantization (weighted by ‖ΔW‖²)",
                              reports.count, 100 * weighted)
                + (worst.map { String(format: "; least: %@ (%@) %.1f%%", $0.tensor, $0.dtype.description, 100 * $0.survived) } ?? ""))
            if weighted < 0.5 {
                stderrLine(String(format: "wren merge: warning: the requantized weights keep only %.1f%% of the LoRA update — most of it is smaller than one quantization step. "
                                  + "Apply the adapter unmerged (wren run --lora) or merge into a finer type (--type q8_0, f16 or f32).", 100 * weighted))
            }
            print(output)
        } catch {
            fail(error)
        }
    }
}
