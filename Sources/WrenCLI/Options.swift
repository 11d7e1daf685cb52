// Every option group of the CLI, in one place, each reused by every command
// that takes it: the model and how it runs, threads, the KV cache and exact
// path, adapters, sampling, chat templates and speculation. Plus the one table
// that maps a library setting's name to its flag, and the one error funnel that
// turns any error into a line on stderr and an exit code. Validation of values
// lives in the libraries; the CLI translates flags and names.

import ArgumentParser
import Foundation
import WrenEngine
import WrenEval
import WrenFormat
import WrenTokenizer
import WrenTuning

struct ThreadOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Threads (default: the physical cores).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 || threads > 256 { throw ValidationError("-t must be in 1...256") }
    }
}

/// The exact path and the KV cache element type.
struct KVPathOptions: ParsableArguments {
    @Flag(help: "Use the exact path: f32 activations against exactly dequantized weights (instead of 8-bit activation blocks for quantized weights) and an f32 KV cache.")
    var exact = false

    @Option(name: .customLong("kv-type"), help: "KV cache type: f32, f16 or q8_0 (default f16; f32 with --exact).")
    var kvType: String?

    func validate() throws {
        if let kvType, KVCacheType(rawValue: kvType) == nil { throw ValidationError("--kv-type must be f32, f16 or q8_0 (got \(kvType))") }
    }

    var kvCacheType: KVCacheType { kvType.flatMap(KVCacheType.init(rawValue:)) ?? (exact ? .f32 : .f16) }
}

/// PEFT adapters by directory, each with an optional scale.
struct LoRAOptions: ParsableArguments {
    @Option(name: .customLong("lora"), help: "PEFT LoRA adapter directory (repeatable; at run time applied unmerged, the base stays in its dtype).")
    var lora: [String] = []

    @Option(name: .customLong("lora-scale"), help: "Multiplier of each adapter's alpha/r (one for all, or one per --lora; default 1).")
    var loraScale: [Float] = []

    func validate() throws {
        if !loraScale.isEmpty, loraScale.count != 1, loraScale.count != lora.count {
            throw ValidationError("give one --lora-scale for all adapters or one per --lora (\(lora.count))")
        }
        if !loraScale.isEmpty, lora.isEmpty { throw ValidationError("--lora-scale needs --lora") }
    }

    /// The scale for adapter `i`.
    func scale(_ i: Int) -> Float { loraScale.isEmpty ? 1 : loraScale[loraScale.count == 1 ? 0 : i] }

    /// Attaches every adapter to `m` (unmerged).
    func attach(to m: LlamaModel) throws {
        for (i, path) in lora.enumerated() { try m.attachAdapter(path: path, scale: scale(i)) }
    }
}

struct ModelOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Model file (.wren; convert GGUF/HF with `wren convert`).")
    var model: String

    @Option(name: .shortAndLong, help: "Context length in tokens (default: the model's, at most 4096).")
    var ctx: Int?

    @OptionGroup var threadOptions: ThreadOptions
    var threads: Int? { threadOptions.threads }

    @Option(name: .customLong("rope-freq-base"), help: "Override the RoPE frequency base.")
    var ropeFreqBase: Float?

    @Option(name: .customLong("rope-scale"), help: "RoPE scaling factor, e.g. 2 to double the context (linear unless --rope-scaling says otherwise).")
    var ropeScale: Float?

    @Option(name: .customLong("rope-scaling"), help: "RoPE scaling method: none, linear, ntk, dynamic-ntk or yarn (default: the model's; linear with --rope-scale). An explicit none allows -c past the trained context, with a warning.")
    var ropeScaling: RopeScalingType?

    @Option(name: .customLong("yarn-orig-ctx"), help: "YaRN / dynamic NTK: the context the model was trained with (default: the model's).")
    var yarnOrigCtx: Int?

    @Option(name: .customLong("yarn-beta-fast"), help: "YaRN: dimensions rotating more than this many times in the original context keep their frequency. (default: 32)")
    var yarnBetaFast: Float?

    @Option(name: .customLong("yarn-beta-slow"), help: "YaRN: dimensions rotating fewer than this many times are fully interpolated. (default: 1)")
    var yarnBetaSlow: Float?

    @Option(name: .customLong("yarn-attn-factor"), help: "YaRN: scale of q·k's square root (default: 0.1·ln(factor) + 1).")
    var yarnAttnFactor: Float?

    @OptionGroup var path: KVPathOptions

    @OptionGroup var adapters: LoRAOptions

    var exact: Bool { path.exact }

    func validate() throws {
        if let ctx, ctx < 1 { throw ValidationError("-c must be at least 1") }
        if let ropeFreqBase, !(ropeFreqBase > 1 && ropeFreqBase.isFinite) { throw ValidationError("--rope-freq-base must be a finite number > 1") }
        if let ropeScale, !(ropeScale > 0 && ropeScale.isFinite) { throw ValidationError("--rope-scale must be a finite number > 0") }
        if let s = ropeScaling, s == .llama3 { throw ValidationError("--rope-scaling must be none, linear, ntk, dynamic-ntk or yarn (llama3 comes only from the model)") }
        if let s = ropeScaling, s != .none, ropeScale == nil { throw ValidationError("--rope-scaling \(s.rawValue) needs --rope-scale") }
        if let o = yarnOrigCtx, o < 1 { throw ValidationError("--yarn-orig-ctx must be at least 1") }
        for (name, v) in [("--yarn-beta-fast", yarnBetaFast), ("--yarn-beta-slow", yarnBetaSlow), ("--yarn-attn-factor", yarnAttnFactor)] {
            if let v, !(v > 0 && v.isFinite) { throw ValidationError("\(name) must be a finite number > 0") }
        }
    }

    /// Attaches the --lora adapters to `m`.
    func attachAdapters(_ m: LlamaModel) throws { try adapters.attach(to: m) }

    var kvCacheType: KVCacheType { path.kvCacheType }

    /// The model (with its adapters) and a session of -c tokens, else `defaultContext` of the
    /// model's config, else the model's context (at most 4096).
    /// The model and a session (of `sequences` sequences, each with the context length).
    /// `attach: false` leaves the --lora adapters off (the server serves each under its own name).
    func load(defaultContext: ((ModelConfig) -> Int)? = nil, sequences: Int = 1, attach: Bool = true) throws -> (LlamaModel, InferenceSession) {
        let m = try LlamaModel(path: model, ropeFreqBase: ropeFreqBase, ropeScale: ropeScaling == nil ? ropeScale : nil)
        if let s = ropeScaling {
            m.rope.scaling = s
            m.rope.factor = s == .none ? 1 : ropeScale ?? 1
        }
        if let o = yarnOrigCtx { m.rope.originalContext = o }
        if let b = yarnBetaFast { m.rope.yarnBetaFast = b }
        if let b = yarnBetaSlow { m.rope.yarnBetaSlow = b }
        if let a = yarnAttnFactor { m.rope.yarnAttentionFactor = a }
        if attach { try attachAdapters(m) }
        // An explicit `--rope-scaling none` lets -c pass the trained context: plain RoPE at
        // positions the model never saw, which is how a long-context test measures its failure.
        let context = ctx ?? defaultContext?(m.config)
        let beyond = ropeScaling == RopeScalingType.none
        if beyond, let context, context > m.config.contextLength {
            FileHandle.standardError.write(Data("warning: -c \(context) passes the \(m.config.contextLength) tokens \(model) was trained with, and --rope-scaling none does not scale RoPE; expect output to degrade past them\n".utf8))
        }
        return (m, try InferenceSession(model: m, contextLength: context, threads: threads, kvType: kvCacheType,
                                        activations: exact ? .f32 : .q8, beyondTrainedContext: beyond, sequences: sequences))
    }
}

struct SamplingOptions: ParsableArguments {
    @Option(name: [.short, .customLong("n-predict")], help: "Tokens to generate at most (>= 0).")
    var n = 128

    @Option(name: .customLong("temp"), help: "Temperature; 0 = greedy.")
    var temperature: Float = 0.8

    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0 = all).")
    var topK = 40

    @Option(name: .customLong("top-p"), help: "Nucleus sampling threshold in (0, 1].")
    var topP: Float = 0.95

    @Option(name: .customLong("min-p"), help: "Drop tokens below min-p × the top probability, in [0, 1].")
    var minP: Float = 0.05

    @Option(name: .customLong("repeat-penalty"), help: "Repetition penalty (1 = off).")
    var repeatPenalty: Float = 1.0

    @Option(name: .customLong("repeat-last-n"), help: "Tokens the penalties look back over.")
    var repeatLastN = 64

    @Option(name: .customLong("frequency-penalty"), help: "Subtract count × this from repeated tokens' logits.")
    var frequencyPenalty: Float = 0

    @Option(name: .customLong("presence-penalty"), help: "Subtract this from the logits of tokens already present.")
    var presencePenalty: Float = 0

    @Option(name: .customLong("logit-bias"), help: "TOKEN_ID=BIAS, repeatable (BIAS may be -inf).")
    var logitBias: [String] = []

    @Option(name: .shortAndLong, help: "Random seed (same seed, same text).")
    var seed: UInt64 = 0xC0FFEE

    @Option(name: .customLong("stop"), help: "Stop when the text contains this string (repeatable).")
    var stop: [String] = []

    @Option(name: .customLong("min-tokens"), help: "Do not end before this many tokens (end-of-generation tokens are banned until then).")
    var minTokens = 0

    func validate() throws {
        guard n >= 0 else { throw ValidationError("-n must be >= 0 (got \(n))") }
        guard minTokens >= 0 else { throw ValidationError("--min-tokens must be >= 0 (got \(minTokens))") }
        do { try parameters().validate() } catch let e as EngineError { throw ValidationError(e.description) }
    }

    func parameters() throws -> SamplingParameters {
        var p = SamplingParameters()
        p.temperature = temperature
        p.topK = topK
        p.topP = topP
        p.minP = minP
        p.repeatPenalty = repeatPenalty
        p.repeatLastN = repeatLastN
        p.frequencyPenalty = frequencyPenalty
        p.presencePenalty = presencePenalty
        p.seed = seed
        for b in logitBias {
            let parts = b.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let id = Int32(parts[0]), let v = Float(parts[1].replacingOccurrences(of: "inf", with: "infinity")) else {
                throw ValidationError("--logit-bias takes TOKEN_ID=BIAS (got \"\(b)\")")
            }
            p.logitBias[id] = v
        }
        return p
    }

    func options() throws -> GenerationOptions {
        GenerationOptions(maxTokens: n, stop: stop, sampling: try parameters(), minTokens: minTokens)
    }
}

struct ChatTemplateOptions: ParsableArguments {
    @Option(name: .customLong("chat-template"), help: "Use a built-in template instead of the model's: \(ChatTemplate.fallbacks.keys.sorted().joined(separator: ", ")).")
    var chatTemplate: String?

    @Option(name: .customLong("chat-template-file"), help: "Use the Jinja chat template in this file.")
    var chatTemplateFile: String?

    @Option(help: "A system message.")
    var system: String?

    func formatter(_ m: LlamaModel) throws -> ChatFormatter {
        try ChatFormatter(model: m, name: chatTemplate, file: chatTemplateFile)
    }

    /// Renders a text as the user turn of a conversation (after --system), ready for the reply.
    func userTurn(_ m: LlamaModel) throws -> (String) throws -> String {
        let f = try formatter(m), system = system
        return { text in
            try f.render((system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + [ChatMessage(role: "user", content: text)],
                         addGenerationPrompt: true)
        }
    }
}

struct SpeculationFlags: ParsableArguments {
    @Option(name: .customLong("draft"), help: "Draft model (.wren with the same vocabulary) for speculative decoding.")
    var draft: String?

    @Option(name: .customLong("draft-n"), help: "Tokens drafted per round at most (default 8).")
    var draftN = 8

    @Option(name: .customLong("draft-p-min"), help: "A draft model stops drafting when its top token's probability is below this (default 0.5).")
    var draftPMin = 0.5

    @Option(name: .customLong("lookup-ngram"), help: "Prompt-lookup speculation: draft the continuation of the last earlier occurrence of the last N tokens.")
    var lookupNgram: Int?

    @Option(name: .customLong("draft-layers"), help: "Self-speculation: draft with the model's first K layers.")
    var draftLayers: Int?

    func validate() throws {
        let modes = [draft != nil, lookupNgram != nil, draftLayers != nil].filter { $0 }.count
        guard modes <= 1 else { throw ValidationError("use one of --draft, --lookup-ngram and --draft-layers") }
        guard draftN >= 1 && draftN <= 64 else { throw ValidationError("--draft-n must be in 1...64") }
        guard draftPMin >= 0 && draftPMin <= 1 else { throw ValidationError("--draft-p-min must be in [0, 1]") }
        if let lookupNgram, lookupNgram < 1 { throw ValidationError("--lookup-ngram must be at least 1") }
        if let draftLayers, draftLayers < 1 { throw ValidationError("--draft-layers must be at least 1") }
    }

    /// Whether a speculation mode was asked for.
    var isOn: Bool { draft != nil || lookupNgram != nil || draftLayers != nil }

    /// The speculation asked for, for a target decoding in `s` (nil: none): a draft model gets its own
    /// session with `s`'s context, threads, cache type and activations.
    func options(for s: InferenceSession) throws -> SpeculationOptions? {
        let mode: SpeculationMode
        if let draft {
            let dm: LlamaModel
            do { dm = try LlamaModel(path: draft) } catch { throw CLIError(message: "--draft \(draft): \(error)") }
            mode = .draftModel(try InferenceSession(model: dm, contextLength: s.contextLength, threads: s.threads,
                                                    kvType: s.kvType, activations: s.activations))
        } else if let lookupNgram {
            mode = .lookup(ngram: lookupNgram)
        } else if let draftLayers {
            mode = .selfDraft(layers: draftLayers)
        } else {
            return nil
        }
        return SpeculationOptions(mode: mode, draftTokens: draftN, pMin: draftPMin)
    }

    /// Turns speculation on in `gen` when a mode was asked for.
    func apply(to gen: Generator) throws {
        if let o = try options(for: gen.session) { try gen.enableSpeculation(o) }
    }
}

extension SpeculationStats {
    var line: String {
        String(format: "speculation: %d drafted, %d accepted (%.1f%%), %d target passes (%.2f tokens per pass); drafting %.3f s, verifying %.3f s; ≈%.2f× plain decoding (plain step %.1f ms)",
               drafted, accepted, 100 * acceptanceRate, targetPasses, tokensPerTargetPass, draftSeconds, verifySeconds,
               estimatedSpeedup, plainStepSeconds * 1000)
    }

    var json: [String: Any] {
        ["drafted": drafted, "accepted": accepted, "acceptance_rate": acceptanceRate, "target_passes": targetPasses, "draft_ms": draftSeconds * 1000, "verify_ms": verifySeconds * 1000,
         "tokens_per_target_pass": tokensPerTargetPass, "plain_step_ms": plainStepSeconds * 1000, "estimated_speedup": estimatedSpeedup]
    }
}

/// Library settings (property names, as `EngineError.invalidSetting` carries them) and
/// the flags that set them: the one place the CLI's names meet the libraries'.
let settingFlags: [String: String] = [
    "learningRate": "--lr", "weightDecay": "--weight-decay", "clip": "--clip", "batchSize": "--batch-size", "gradAccum": "--grad-accum",
    "epochs": "--epochs", "blockSize": "--block-size", "warmup": "--warmup", "saveEvery": "--save-every", "evalEvery": "--eval-every",
    "maxSteps": "--max-steps", "validationSplit": "--validation-split", "lisaLayers": "--lisa-layers", "lisaInterval": "--lisa-interval",
    "loraRank": "--lora-r", "loraAlpha": "--lora-alpha", "loraDropout": "--lora-dropout", "loraTargets": "--lora-targets",
    "resume": "--resume", "force": "--force", "kvType": "--kv-type", "contextLength": "-c", "draftLayers": "--draft-layers",
    "lookupNgram": "--lookup-ngram", "chatTemplate": "--chat-template",
]

/// The error funnel: any error as one line on stderr (library errors name the file and
/// field; settings are named by their flag), temporary files removed, exit 1.
func fail(_ error: Error) -> Never {
    if Std.dyingSignal != 0 { Std.dieBySignal() }   // the failure is the signal's doing (its temp file went)
    let text: String
    switch error {
    case let EngineError.invalidSetting(setting, reason): text = "\(settingFlags[setting] ?? setting) \(reason)"
    case let FormatError.outputExists(path): text = "\(FormatError.outputExists(path: path)) (use --force to replace it)"
    case let e as CustomStringConvertible where error is FormatError || error is EngineError || error is TokenizerError
        || error is JinjaError || error is DatasetError || error is GenerationRequest.Failure || error is EvalError: text = e.description
    case let e as CLIError: text = e.message
    default: text = "\(error)"
    }
    Std.err("wren: error: \(text)\n")
    TempFiles.removeAll()
    exit(1)
}

struct CLIError: Error {
    var message: String
}
