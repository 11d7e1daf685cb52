// `wren dpo`: direct preference optimisation with LoRA on preference pairs.

import ArgumentParser
import Foundation
import WrenTuning

struct DPO: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract: "Direct preference optimisation: LoRA on preference pairs, the base model as the reference.",
        discussion: """
        DATA: the reward model's pair formats (paired_conversation, paired_text_to_text). Only the response tokens count; prompts \
        and user turns are masked. The reference log-likelihoods (the base without the adapter) are computed once before training. \
        OUT receives the PEFT adapter (use it with `wren run --lora OUT` or merge it), loss.csv, eval.csv (held-out loss, reward \
        accuracy, margin, chosen and rejected rewards β·(log π − log π_ref), from step 0) and loss.svg.
        """)

    @OptionGroup var training: TrainingFlags

    @OptionGroup var checkpoints: ResumeFlags

    @Option(help: "β: how far the policy may move from the reference.")
    var beta = 0.1

    @Option(help: "Loss: sigmoid (DPO), ipo or hinge.")
    var loss = "sigmoid"

    func validate() throws {
        guard DPOLoss(rawValue: loss) != nil else { throw ValidationError("--loss must be sigmoid, ipo or hinge (got \(loss))") }
    }

    func run() throws {
        Std.removeTemporaryFilesOnSignals()
        do {
            var o = try training.options(defaultLearningRate: 5e-5)
            checkpoints.apply(to: &o)
            let t0 = Date()
            let dt = try DPOTrainer(o, beta: beta, loss: DPOLoss(rawValue: loss) ?? .sigmoid)
            stderrLine("wren dpo: \(dt.train.count) training pairs" + (dt.eval.isEmpty ? "" : ", \(dt.eval.count) held-out pairs")
                       + "; \(dt.trainModel.parameters.reduce(0) { $0 + $1.count }) trainable parameters; \(dt.totalSteps) steps; "
                       + "reference log-likelihoods and preparation in " + String(format: "%.1f s", Date().timeIntervalSince(t0)))
            let tty = isatty(2) == 1
            try dt.run(progress: progressPrinter(), onEval: { step, e in
                if tty { Std.err("\r\u{1b}[K") }
                stderrLine(String(format: "step %d: held-out loss %.4f, reward accuracy %.1f%%, margin %.3f (chosen %.3f, rejected %.3f)", step, e.loss,
                                  100 * e.accuracy, e.margin, e.chosenReward, e.rejectedReward))
            })
            stderrLine("wren dpo: wrote \(o.outputDir)/adapter_model.safetensors, loss.csv, eval.csv, loss.svg"
                       + String(format: " in %.1f s", Date().timeIntervalSince(t0)))
        } catch {
            fail(error)
        }
    }
}
