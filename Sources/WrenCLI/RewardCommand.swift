// `wren reward train`: a reward model (LoRA + a scalar head) from preference
// pairs; `wren reward score`: rewards of prompt/response lines.

import ArgumentParser
import Foundation
import WrenEngine
import WrenFormat
import WrenTokenizer
import WrenTuning

struct Reward: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train and use reward models (LoRA plus a scalar head, loadable as a PEFT SEQ_CLS adapter).",
        subcommands: [RewardTrain.self, RewardScore.self])
}

struct RewardTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a reward model on preference pairs with the loss −log σ(r_chosen − r_rejected).",
        discussion: """
        DATA: LMFlow paired_conversation ({"chosen": {"messages": [...], "system": ...}, "rejected": {...}}, each side rendered \
        with the chat template) or paired_text_to_text ({"prompt", "chosen", "rejected"}), as .json files or JSONL. The reward is \
        read at the last token that is not the padding id, as Hugging Face's LlamaForSequenceClassification does. OUT receives \
        adapter_config.json and adapter_model.safetensors (task SEQ_CLS, the head as modules_to_save "score"), loss.csv, \
        eval.csv (held-out loss, pair accuracy and margin) and loss.svg.
        """)

    @OptionGroup var training: TrainingFlags

    @OptionGroup var checkpoints: ResumeFlags

    func run() throws {
        Std.removeTemporaryFilesOnSignals()
        do {
            var o = try training.options(defaultLearningRate: 1e-4)
            checkpoints.apply(to: &o)
            let t0 = Date()
            let rt = try RewardTrainer(o)
            let trainable = rt.trainModel.parameters.reduce(0) { $0 + $1.count } + rt.head.count
            stderrLine("wren reward train: \(rt.train.count) training pairs" + (rt.eval.isEmpty ? "" : ", \(rt.eval.count) held-out pairs")
                       + "; \(trainable) trainable parameters (LoRA and the head); \(rt.totalSteps) steps; prepared in "
                       + String(format: "%.1f s", Date().timeIntervalSince(t0)))
            let tty = isatty(2) == 1
            try rt.run(progress: progressPrinter(), onEval: { step, e in
                if tty { Std.err("\r\u{1b}[K") }
                stderrLine(String(format: "step %d: held-out loss %.4f, pair accuracy %.1f%%, mean margin %.3f", step, e.loss, 100 * e.accuracy, e.margin))
            })
            stderrLine("wren reward train: wrote \(o.outputDir)/adapter_model.safetensors, loss.csv, eval.csv, loss.svg"
                       + String(format: " in %.1f s", Date().timeIntervalSince(t0)))
        } catch {
            fail(error)
        }
    }
}

struct RewardScore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Score JSONL lines {\"prompt\", \"response\"} or {\"messages\", \"system\"} with a reward model; print {\"reward\": r} per line.")

    @Option(name: .shortAndLong, help: "Base model (.wren) the reward model was trained on.")
    var model: String

    @Option(help: "Reward model directory (from `wren reward train`).")
    var reward: String

    @Option(name: .shortAndLong, help: "JSONL input (default: stdin).")
    var input: String?

    @Option(name: .customLong("chat-template"), help: "Named chat template for messages instead of the model's.")
    var chatTemplate: String?

    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        do {
            let scorer = try RewardScorer(modelPath: model, rewardPath: reward, chatTemplate: chatTemplate, threads: threadOptions.threads)
            let source = input ?? "stdin"
            var lines: [[UInt8]] = []
            if let input {
                guard let d = MappedFile.contents(of: input) else { throw CLIError(message: "\(input): cannot read it") }
                lines = Array(d).split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
            } else {
                var it = StdinLines()
                while let l = try it.next() { lines.append(l) }
            }
            for (n, bytes) in lines.enumerated() {
                guard let line = String(validating: bytes, as: UTF8.self) else { throw CLIError(message: "\(source) line \(n + 1): invalid UTF-8") }
                if line.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { continue }
                let ids = try Self.tokens(line, scorer, where: "\(source) line \(n + 1)")
                let r = try scorer.reward(ids: ids)
                let data = try JSONSerialization.data(withJSONObject: ["reward": r], options: [.sortedKeys])
                Std.out(data + Data("\n".utf8))
            }
        } catch {
            fail(error)
        }
    }

    /// The tokens of one input line; errors name the line and field.
    static func tokens(_ line: String, _ scorer: RewardScorer, where place: String) throws -> [Int32] {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw CLIError(message: "\(place): not a JSON object")
        }
        if let m = o["messages"] {
            guard let list = m as? [[String: Any]], !list.isEmpty else { throw CLIError(message: "\(place): \"messages\" must be a non-empty list of {\"role\", \"content\"}") }
            let msgs = try list.enumerated().map { i, d -> ChatMessage in
                guard let role = d["role"] as? String, let content = d["content"] as? String else {
                    throw CLIError(message: "\(place): messages[\(i)] needs string \"role\" and \"content\"")
                }
                return ChatMessage(role: role, content: content)
            }
            guard msgs.last?.role == "assistant" else { throw CLIError(message: "\(place): \"messages\" must end with the assistant's response") }
            let system = o["system"] as? String
            if o["system"] != nil && system == nil && !(o["system"] is NSNull) { throw CLIError(message: "\(place): \"system\" must be a string") }
            return try scorer.tokens(messages: msgs, system: system)
        }
        guard let p = o["prompt"] as? String else { throw CLIError(message: "\(place): missing string \"prompt\" (or \"messages\")") }
        guard let r = o["response"] as? String else { throw CLIError(message: "\(place): missing string \"response\"") }
        return try scorer.tokens(prompt: p, response: r)
    }
}
