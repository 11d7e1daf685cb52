// Speculative-decoding flags shared by `run` (plain and --jsonl) and `chat`.

import ArgumentParser
import Foundation
import WrenEngine

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

    /// Turns speculation on in `gen` when a mode was asked for.
    func apply(to gen: Generator) throws {
        let mode: SpeculationMode
        if let draft {
            let dm: LlamaModel
            do { dm = try LlamaModel(path: draft) } catch { throw CLIError(message: "--draft \(draft): \(error)") }
            let s = gen.session
            mode = .draftModel(try InferenceSession(model: dm, contextLength: s.contextLength, threads: s.threads,
                                                    kvType: s.kvType, activations: s.activations))
        } else if let lookupNgram {
            mode = .lookup(ngram: lookupNgram)
        } else if let draftLayers {
            mode = .selfDraft(layers: draftLayers)
        } else {
            return
        }
        try gen.enableSpeculation(SpeculationOptions(mode: mode, draftTokens: draftN, pMin: draftPMin))
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
