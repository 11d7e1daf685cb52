// `wren run`: generate text from a prompt (argument or all of stdin),
// streamed to stdout; or serve a JSON-lines stream of requests (--jsonl).

import ArgumentParser
import Foundation
import WrenEngine
import WrenFormat
import WrenTokenizer

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text. The prompt is -p, or all of stdin; the text is streamed to stdout.",
        discussion: "With --jsonl, each stdin line is a JSON request and each stdout line a JSON result (the model is loaded once).")

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingOptions

    @Option(name: .shortAndLong, help: "The prompt (default: all of stdin).")
    var prompt: String?

    @Flag(help: "Read JSON requests, one per line, from stdin; write one JSON result per line.")
    var jsonl = false

    @Flag(help: "Print timings and statistics on stderr.")
    var verbose = false

    @Flag(name: .customLong("no-special"), help: "Do not parse special tokens in the prompt.")
    var noSpecial = false

    @Flag(help: "Treat the prompt as one user message and format it with the chat template.")
    var chat = false

    @OptionGroup var template: ChatTemplateOptions

    @OptionGroup var speculation: SpeculationFlags

    @Option(help: "Sample this many continuations of the prompt, decoded together (seeds: --seed, --seed+1, ...); each is printed after a header line.")
    var samples = 1

    @Flag(help: "With --samples: generate them one after another instead (the baseline that batching is measured against).")
    var sequential = false

    func validate() throws {
        guard samples >= 1, samples <= 256 else { throw ValidationError("--samples must be in 1...256 (got \(samples))") }
        if samples > 1 && jsonl { throw ValidationError("--samples does not combine with --jsonl") }
        if samples > 1 && speculation.isOn { throw ValidationError("--samples does not combine with speculative decoding") }
    }

    func run() throws {
        do {
            let (m, session) = try model.load(sequences: samples > 1 && !sequential ? samples : 1)
            let gen = try Generator(model: m, session: session)
            try speculation.apply(to: gen)
            // The template is needed for --chat, and (lazily) for "messages" requests.
            let formatter: ChatFormatter? = chat || jsonl ? (try? template.formatter(m)) : nil
            if chat && formatter == nil { _ = try template.formatter(m) }   // rethrow the reason
            if jsonl { try serveJSONL(gen, formatter); return }
            let text: String
            if let prompt { text = prompt } else {
                guard let s = String(validating: try readAllStdin(), as: UTF8.self) else { throw CLIError(message: "stdin: invalid UTF-8") }
                text = s
            }
            guard !text.isEmpty else { throw EngineError.emptyPrompt }
            var opts = try sampling.options()
            opts.parseSpecial = !noSpecial
            var promptTokens = gen.tokenize(text, parseSpecial: !noSpecial)
            if chat, let formatter {
                var msgs = template.system.map { [ChatMessage(role: "system", content: $0)] } ?? []
                msgs.append(ChatMessage(role: "user", content: text.hasSuffix("\n") ? String(text.dropLast()) : text))
                promptTokens = try formatter.tokens(msgs)
            }
            if samples > 1 { try runSamples(m, session, gen, promptTokens, opts); return }
            let result = try gen.generate(tokens: promptTokens, options: opts) { piece, _ in
                if !piece.isEmpty { Std.out(piece) }
                return true
            }
            if isatty(1) == 1 { Std.out("\n") }
            if result.stats.contextFull { stderrLine("wren: the context of \(session.contextLength) tokens is full; generation stopped (use -c to enlarge it)") }
            if verbose { printStats(result) }
        } catch { fail(error) }
    }

    /// --samples: N continuations of one prompt, batched (or one after another with --sequential).
    func runSamples(_ m: LlamaModel, _ session: InferenceSession, _ gen: Generator, _ prompt: [Int32], _ opts: GenerationOptions) throws {
        let jobs = (0..<samples).map { i in
            var o = opts
            o.sampling.seed = opts.sampling.seed &+ UInt64(i)
            return BatchJob(prompt: prompt, options: o)
        }
        if verbose { session.enableProfiling() }
        let t0 = Date()
        let results = sequential ? try jobs.map { try gen.generate(tokens: $0.prompt, options: $0.options) }
                                 : try BatchGenerator(model: m, session: session).generate(jobs)
        let seconds = Date().timeIntervalSince(t0)
        for (i, r) in results.enumerated() {
            Std.out("### sample \(i + 1) (seed \(jobs[i].options.sampling.seed), \(r.tokens.count) tokens, stop: \(r.stopReason.rawValue))\n")
            Std.out(r.text + "\n")
        }
        if results.contains(where: \.stats.contextFull) {
            stderrLine("wren: the context of \(session.contextLength) tokens filled up in some samples; they stopped (use -c to enlarge it)")
        }
        if verbose {
            let tokens = results.map(\.tokens.count).reduce(0, +)
            stderrLine(String(format: "samples: %d × %d prompt tokens, %d generated tokens in %.3f s (prompt included), %.1f tokens/s%@",
                              samples, prompt.count, tokens, seconds, Double(tokens) / seconds, sequential ? " (sequential)" : " (batched)"))
            if let p = session.profile {
                let forward = Double(p.totalNs) / 1e9
                stderrLine(String(format: "forward passes %.3f s, the rest (sampling, text) %.3f s", forward, seconds - forward))
                p.lines(threads: session.threads, what: "the forward passes").forEach { stderrLine($0) }
            }
        }
    }

    func printStats(_ r: GenerationResult) {
        let s = r.stats
        stderrLine(String(format: "prompt: %d tokens (%d evaluated) in %.3f s, %.1f tokens/s; first token after %.3f s",
                          s.promptTokens, s.promptTokensEvaluated, s.promptSeconds, s.promptTokensPerSecond, s.timeToFirstToken))
        stderrLine(String(format: "generation: %d tokens in %.3f s, %.1f tokens/s; stop: %@", s.generatedTokens, s.generationSeconds,
                          s.generationTokensPerSecond, r.stopReason.rawValue))
        if let sp = s.speculation {
            stderrLine(sp.line)
        }
    }

    /// One request per line; errors become {"error": "line N: ..."} and the stream goes on.
    func serveJSONL(_ gen: Generator, _ formatter: ChatFormatter?) throws {
        let defaults = try sampling.options()
        var lineNo = 0
        var lines = StdinLines()
        while let bytes = try lines.next() {
            lineNo += 1
            var obj: [String: Any]
            do {
                // Raw bytes, not readLine (which would replace invalid UTF-8 silently): as plain stdin does, refuse it.
                guard let line = String(validating: bytes, as: UTF8.self) else {
                    throw GenerationRequest.Failure(message: "invalid UTF-8 (byte \(Self.firstInvalidUTF8(bytes)))")
                }
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                let req = try GenerationRequest.parse(line, defaults: defaults)
                var opts = req.options
                opts.parseSpecial = !noSpecial
                let tokens: [Int32]
                if let msgs = req.messages {
                    guard let formatter else { throw GenerationRequest.Failure(message: "\"messages\" needs a chat template: \((try? template.formatter(gen.model)).map { _ in "" } ?? "this model has none; pass --chat-template")") }
                    tokens = try formatter.tokens(msgs)
                } else {
                    tokens = gen.tokenize(req.prompt, parseSpecial: !noSpecial)
                }
                let r = try gen.generate(tokens: tokens, options: opts)
                obj = ["text": r.text, "tokens": r.tokens.map(Int.init), "prompt_tokens": r.stats.promptTokens,
                       "stop_reason": r.stopReason.rawValue,
                       "timings": ["prompt_ms": r.stats.promptSeconds * 1000, "prompt_per_second": r.stats.promptTokensPerSecond,
                                   "predicted_ms": r.stats.generationSeconds * 1000, "predicted_per_second": r.stats.generationTokensPerSecond,
                                   "ttft_ms": r.stats.timeToFirstToken * 1000, "prompt_evaluated": r.stats.promptTokensEvaluated] as [String: Any]]
                if r.stats.contextFull { obj["context_full"] = true }
                if let sp = r.stats.speculation {
                    var t = obj["timings"] as? [String: Any] ?? [:]
                    t["speculation"] = sp.json
                    obj["timings"] = t
                }
                if verbose { printStats(r) }
            } catch let e as GenerationRequest.Failure {
                obj = ["error": "line \(lineNo): \(e.message)"]
            } catch let e as EngineError {
                obj = ["error": "line \(lineNo): \(e.description)"]
            } catch let e as JinjaError {
                obj = ["error": "line \(lineNo): \(e.description)"]
            } catch {
                obj = ["error": "line \(lineNo): \(error)"]
            }
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
            Std.out(data + Data("\n".utf8))
        }
    }
}

extension Run {
    /// The offset of the first byte that does not start or continue valid UTF-8.
    static func firstInvalidUTF8(_ b: [UInt8]) -> Int {
        var i = 0
        while i < b.count {
            let n = b[i] < 0x80 ? 1 : b[i] >> 5 == 0x6 ? 2 : b[i] >> 4 == 0xE ? 3 : b[i] >> 3 == 0x1E ? 4 : 0
            guard n > 0, i + n <= b.count, String(validating: b[i..<(i + n)], as: UTF8.self) != nil else { return i }
            i += n
        }
        return b.count
    }
}
