// `wren eval`: perplexity of a text (llama.cpp's chunks or a sliding window),
// NLL of an LMFlow dataset, and multiple-choice accuracy. Scoring lives in
// WrenEval; this file parses flags, shows progress and writes results.

import ArgumentParser
import Foundation
import WrenEngine
import WrenEval
import WrenFormat
import WrenTokenizer
import WrenTuning

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a model: perplexity, dataset NLL, multiple choice, generated answers.",
        subcommands: [EvalPerplexity.self, EvalNLL.self, EvalMC.self, EvalGen.self, EvalPasskey.self])
}

/// Flags every eval command shares: where per-item results and the summary go.
struct EvalOutputOptions: ParsableArguments {
    @Option(help: "Write one JSON line per item (chunk, instance or question) to this file.")
    var output: String?

    @Flag(help: "Overwrite --output if it exists.")
    var force = false

    @Flag(help: "Print the summary as JSON on stdout.")
    var json = false

    /// Collects per-item lines; `commit` writes them atomically.
    final class Items {
        var lines: [String] = []
        func add(_ v: some Encodable) {
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys]
            lines.append(String(decoding: (try? e.encode(v)) ?? Data(), as: UTF8.self))
        }
    }

    func check() throws { if let output { try checkOutputPath(output, overwrite: force) } }

    func commit(_ items: Items) throws {
        guard let output else { return }
        let w = try AtomicWrite(path: output, overwrite: force)
        try w.write(Array((items.lines.joined(separator: "\n") + "\n").utf8))
        try w.commit()
    }

    func printJSON(_ v: some Encodable) {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        print(String(decoding: (try? e.encode(v)) ?? Data(), as: UTF8.self))
    }
}

/// A progress line on stderr: "[label done/total] extra  rate  ETA".
final class EvalProgress {
    let start = Date()
    var last = Date.distantPast
    let tty = isatty(2) == 1
    let label: String
    init(_ label: String) { self.label = label }

    func update(_ done: Int, _ total: Int, _ extra: String) {
        let now = Date()
        guard done == total || now.timeIntervalSince(last) > (tty ? 0.1 : 2.0) else { return }
        last = now
        let secs = now.timeIntervalSince(start)
        let eta = done > 0 ? secs / Double(done) * Double(total - done) : 0
        let line = String(format: "[%@ %d/%d] %@  ETA %.0fs", label, done, total, extra, eta)
        Std.err(tty ? "\r\u{1b}[K" + line + (done == total ? "\n" : "") : line + "\n")
    }
}

struct EvalPerplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppl",
        abstract: "Perplexity of a text file.",
        discussion: """
        By default as llama.cpp's llama-perplexity: the text is cut into chunks of -c tokens (default 512), each \
        evaluated from an empty cache, and the second half of each chunk is scored, so the numbers compare with \
        llama.cpp's. --stride S uses Hugging Face's sliding window instead (every token scored once, with up to \
        -c tokens of context).
        """)

    @OptionGroup var options: ModelOptions

    @Option(name: [.short, .customLong("file")], help: "The text file. The chunk (window) length is -c: default 512, at most the model's context.")
    var file: String

    @Option(help: "Sliding-window stride (Hugging Face's method); at most -c.")
    var stride: Int?

    @Flag(help: "Also report perplexity per bucket of positions within a chunk.")
    var byPosition = false

    @Option(help: "Width of the --by-position buckets (default: a chunk / 8).")
    var bucket: Int?

    @OptionGroup var out: EvalOutputOptions

    func run() throws {
        do {
            try out.check()
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError(message: "\(file): cannot read the file") }
            guard let text = String(data: data, encoding: .utf8) else { throw CLIError(message: "\(file): not UTF-8 text") }
            guard !text.isEmpty else { throw CLIError(message: "\(file): the file is empty") }
            let (model, session) = try options.load(defaultContext: { min(512, $0.contextLength) })
            let context = session.contextLength
            let ids = model.tokenizer.encode(text, addSpecial: true, parseSpecial: false)
            let progress = EvalProgress("ppl")
            let items = EvalOutputOptions.Items()
            let o = PerplexityOptions(context: context, stride: stride, bucket: bucket ?? (byPosition ? max(1, context / 8) : nil))
            let r = try Perplexity.run(ids, session: session, options: o, source: file, progress: { done, total, ppl, rate in
                progress.update(done, total, String(format: "ppl %.4f  %.0f tok/s", ppl, rate))
            }, perChunk: { items.add($0) })
            try out.commit(items)
            if out.json { out.printJSON(r); return }
            print(String(format: "%@ (%@): %d tokens, %d chunks of %d, %d scored in %.1f s (%.0f tok/s)", file, r.method, r.tokens, r.chunks,
                         r.context, r.scored, r.seconds, Double(r.chunks * r.context) / max(r.seconds, 1e-9)))
            print(String(format: "PPL = %.4f +/- %.5f   NLL/token %.5f   bits per byte %.4f", r.perplexity, r.perplexityError,
                         r.nll / Double(max(r.scored, 1)), r.bitsPerByte))
            if byPosition {
                for b in r.byPosition { print(String(format: "  positions %5d-%-5d  %7d tokens  ppl %.4f", b.from, b.to - 1, b.scored, b.perplexity)) }
            }
        } catch { fail(error) }
    }
}

struct EvalNLL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nll",
        abstract: "Negative log-likelihood of an LMFlow dataset (LMFlow's evaluator).",
        discussion: """
        Per instance, the sum of −log p over the tokens finetuning trains on (text_only: all; text2text: the output; \
        conversation: the assistant turns), averaged over instances; also per token and as perplexity. Instances \
        longer than -c are scored on their first -c tokens (counted as truncated).
        """)

    @OptionGroup var options: ModelOptions

    @Option(help: "The dataset: a directory of LMFlow .json files, or one file.")
    var data: String

    @OptionGroup var template: ChatTemplateOptions

    @OptionGroup var out: EvalOutputOptions

    func run() throws {
        do {
            try out.check()
            let (model, session) = try options.load()
            let raw = try RawDataset.load(data)
            let chat = raw.type == .conversation || template.chatTemplate != nil || template.chatTemplateFile != nil
                ? try template.formatter(model) : nil
            let examples = try DatasetTokenizer.tokenize(raw, model: model, chat: chat)
            let progress = EvalProgress("nll")
            let items = EvalOutputOptions.Items()
            let r = try DatasetNLL.run(examples, session: session, perItem: { items.add($0) },
                                       progress: { progress.update($0, $1, "") })
            try out.commit(items)
            if out.json { out.printJSON(r); return }
            print(String(format: "%@: %d instances, %d scored tokens%@ in %.1f s", data, r.instances, r.tokens,
                         r.truncated > 0 ? " (\(r.truncated) truncated to -c)" : "", r.seconds))
            print(String(format: "NLL = %.4f per instance   %.5f per token   PPL = %.4f", r.nll, r.nllPerToken, r.perplexity))
        } catch { fail(error) }
    }
}

struct EvalMC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mc",
        abstract: "Multiple-choice accuracy by log-likelihood (lm-evaluation-harness's method).",
        discussion: """
        Input: JSONL, one {"context": ..., "choices": [...], "answer": index} per line. Each choice is scored as \
        log p(choice | context) (trailing whitespace of the context moves to the choice); acc takes the most \
        likely choice, acc_norm the most likely per byte. The context is evaluated once per question. \
        tools/mc-convert.py turns MedMCQA, PubMedQA and MMLU-style files into this format.
        """)

    @OptionGroup var options: ModelOptions

    @Option(help: "The questions (JSONL).")
    var data: String

    @Flag(help: "Wrap each context in the chat template as a user turn (the choice follows the assistant prompt).")
    var chat = false

    @OptionGroup var template: ChatTemplateOptions

    @OptionGroup var out: EvalOutputOptions

    func run() throws {
        do {
            try out.check()
            guard let bytes = FileManager.default.contents(atPath: data) else { throw CLIError(message: "\(data): cannot read the file") }
            let items = try MultipleChoice.load(bytes, file: data)
            let (model, session) = try options.load()
            let wrap = chat ? try template.userTurn(model) : nil
            let progress = EvalProgress("mc")
            let perItem = EvalOutputOptions.Items()
            var correct = 0
            let r = try MultipleChoice.run(items, session: session, file: data, wrap: wrap, perItem: {
                perItem.add($0)
                if $0.predicted == $0.answer { correct += 1 }
            }, progress: { done, total in progress.update(done, total, String(format: "acc %.4f", Double(correct) / Double(max(done, 1)))) })
            try out.commit(perItem)
            if out.json { out.printJSON(r); return }
            print(String(format: "%@: %d questions in %.1f s", data, r.items, r.seconds))
            print(String(format: "acc = %.4f +/- %.4f   acc_norm = %.4f +/- %.4f", r.acc, r.accError, r.accNorm, r.accNormError))
        } catch { fail(error) }
    }
}

extension AnswerType: ExpressibleByArgument {}

struct EvalGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen",
        abstract: "Generate answers and score them (LMFlow's accuracy evaluator), with diversity metrics.",
        discussion: """
        Input: an LMFlow text2text dataset; each input is a prompt and its output the reference answer. The answer is \
        extracted from the response by --answer-type (multiple_choice: the last letter A-E; yes_no: the last yes/no; \
        number: the last number; text: the whole response) and compared with the reference. Also reports the RAFT \
        paper's diversity metrics over all responses: mean length, distinct-1/2, unique-1/2, MSTTR-100.
        """)

    @OptionGroup var options: ModelOptions

    @Option(help: "The dataset (text2text): a directory of LMFlow .json files, or one file.")
    var data: String

    @Option(help: "How the answer is extracted: \(AnswerType.allCases.map(\.rawValue).joined(separator: ", ")).")
    var answerType: AnswerType = .text

    @Option(name: [.short, .customLong("n-predict")], help: "Tokens to generate at most per answer.")
    var n = 128

    @Option(name: .customLong("temp"), help: "Temperature; 0 = greedy (the default for evaluation).")
    var temperature: Float = 0

    @Option(help: "Sampling seed.")
    var seed: UInt64 = 0xC0FFEE

    @Flag(help: "Wrap each input in the chat template as a user turn.")
    var chat = false

    @OptionGroup var template: ChatTemplateOptions

    @OptionGroup var out: EvalOutputOptions

    func run() throws {
        do {
            try out.check()
            let raw = try RawDataset.load(data)
            var instances: [GenerationEval.Instance] = []
            for (inst, src) in zip(raw.instances, raw.sources) {
                guard case let .text2text(input, output) = inst else {
                    throw DatasetError(src.file, instance: src.index, "wren eval gen needs text2text instances (an input and its reference output)")
                }
                instances.append(.init(input: input, output: output, file: src.file, index: src.index))
            }
            let (model, session) = try options.load()
            let generator = try Generator(model: model, session: session)
            let wrap = chat ? try template.userTurn(model) : nil
            var sampling = SamplingParameters()
            sampling.temperature = temperature
            sampling.seed = seed
            var gen = GenerationOptions(maxTokens: n, sampling: sampling)
            gen.parseSpecial = chat
            let progress = EvalProgress("gen")
            let items = EvalOutputOptions.Items()
            let r = try GenerationEval.run(instances, generator: generator, options: gen, answerType: answerType, wrap: wrap,
                                           perItem: { items.add($0) },
                                           progress: { progress.update($0, $1, String(format: "accuracy %.4f", $2)) })
            try out.commit(items)
            if out.json { out.printJSON(r); return }
            let d = r.diversity
            print(String(format: "%@: %d items (%@) in %.1f s", data, r.items, r.answerType.rawValue, r.seconds))
            print(String(format: "accuracy = %.4f   mean length %.1f words (%.1f tokens)", r.accuracy, d.meanLength, r.meanTokens))
            print(String(format: "distinct-1 %.4f  distinct-2 %.4f  unique-1 %d  unique-2 %d  msttr-100 %@", d.distinct1, d.distinct2,
                         d.unique1, d.unique2, d.msttr100.map { String(format: "%.4f", $0) } ?? "n/a (under 100 words)"))
        } catch { fail(error) }
    }
}

struct EvalPasskey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passkey",
        abstract: "Pass-key retrieval: a 5-digit key hidden in --length tokens of filler, asked for at the end.",
        discussion: """
        For each depth (a fraction of the filler before the key) --trials random keys are tried with greedy \
        decoding; a response is right when its first number is the key. --length counts prompt and answer; the context \
        defaults to it; \
        past the model's trained context, pick a RoPE scaling (--rope-scaling, --rope-scale).
        """)

    @OptionGroup var options: ModelOptions

    @Option(help: "Tokens of prompt and answer (the test's context length).")
    var length: Int

    @Option(help: "Depths of the key, comma-separated fractions in [0, 1].")
    var depths = "0.1,0.5,0.9"

    @Option(help: "Keys per depth.")
    var trials = 3

    @Option(help: "Seed of the keys.")
    var seed: UInt64 = 1

    @OptionGroup var out: EvalOutputOptions

    func run() throws {
        do {
            try out.check()
            let ds = depths.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !ds.isEmpty, ds.allSatisfy({ $0 != nil && $0! >= 0 && $0! <= 1 }) else {
                throw CLIError(message: "--depths must be comma-separated fractions in [0, 1] (got \"\(depths)\")")
            }
            guard length >= 64 else { throw CLIError(message: "--length must be at least 64 tokens") }
            guard trials >= 1 else { throw CLIError(message: "--trials must be at least 1") }
            let (model, session) = try options.load(defaultContext: { _ in length })
            let generator = try Generator(model: model, session: session)
            let progress = EvalProgress("passkey")
            let items = EvalOutputOptions.Items()
            let r = try Passkey.run(generator: generator, options: PasskeyOptions(length: length, depths: ds.map { $0! }, trials: trials, seed: seed),
                                    perItem: { items.add($0) },
                                    progress: { progress.update($0, $1, String(format: "accuracy %.3f", $2)) })
            try out.commit(items)
            if out.json { out.printJSON(r); return }
            print(String(format: "pass key in %d tokens (prompts up to %d), RoPE %@ × %g: accuracy %.3f in %.1f s", r.length, r.promptTokens,
                         model.rope.scaling.rawValue, model.rope.factor, r.accuracy, r.seconds))
            for d in r.byDepth { print(String(format: "  depth %.2f: %d/%d", d.depth, d.correct, d.trials)) }
        } catch { fail(error) }
    }
}
