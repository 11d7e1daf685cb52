// `wren raft`: reward-ranked finetuning (sample, score, keep the best, finetune; repeat).

import ArgumentParser
import Foundation
import WrenAlign
import WrenTuning

struct Raft: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "RAFT: sample K responses per prompt, score them, keep the best, finetune a LoRA adapter on them; repeat.",
        discussion: """
        PROMPTS: LMFlow text_only (each text one prompt, used literally) or conversation instances ending with a user turn \
        (rendered with the chat template and its generation prompt). The reward is a model from `wren reward train` (--reward) or \
        a command (--reward-cmd, run once through sh -c) that reads JSONL {"prompt", "response"} and answers {"reward": r} per line, \
        flushed (null rejects a response). OUT receives raft.jsonl and raft.svg (per iteration: sampled, kept and held-out rewards, \
        perplexity of the kept responses, lengths, diversity, time per phase), samples-N.jsonl (LMFlow text_to_scored_textlist), \
        iter-N/ (the kept data and that iteration's finetune) and the final adapter. A killed run continues with --resume.
        """)

    @OptionGroup var training: TrainingFlags

    @Option(help: "Prompt dataset (text_only, or conversations ending with a user turn).")
    var prompts: String

    @Option(help: "Reward model directory (from `wren reward train`).")
    var reward: String?

    @Option(name: .customLong("reward-cmd"), help: "Reward command (sh -c), JSONL in and out.")
    var rewardCmd: String?

    @Option(name: .customLong("reward-timeout"), help: "Seconds to wait for one answer of the reward command.")
    var rewardTimeout = 600.0

    @Option(help: "local: K samples per prompt, the best kept; top: one per prompt, the best --keep fraction kept.")
    var strategy = "local"

    @Option(help: "Samples per prompt (local).")
    var k = 8

    @Option(help: "Fraction of the batch kept (top), in (0, 1].")
    var keep = 0.125

    @Option(help: "Iterations.")
    var iterations = 5

    @Option(name: .customLong("prompts-per-iteration"), help: "Prompts sampled per iteration.")
    var promptsPerIteration = 64

    @Option(help: "Sampling temperature.")
    var temp: Float = 0.85

    @Option(name: .customLong("min-new-tokens"), help: "No end of generation before this many tokens.")
    var minNewTokens = 32

    @Option(name: .customLong("max-new-tokens"), help: "Tokens per response at most.")
    var maxNewTokens = 96

    @Option(name: .customLong("eval-prompts"), help: "Held-out prompts (same formats): greedy reward per iteration.")
    var evalPrompts: String?

    @Option(help: "Sequences decoded together.")
    var width = 8

    @Flag(name: .customLong("train-on-prompt"), help: "Train on the prompts too (no masking).")
    var trainOnPrompt = false

    @Flag(help: "Continue a killed run from OUT/raft-state.json.")
    var resume = false

    func validate() throws {
        guard RaftStrategy(rawValue: strategy) != nil else { throw ValidationError("--strategy must be local or top (got \(strategy))") }
        guard (reward == nil) != (rewardCmd == nil) else { throw ValidationError("give exactly one of --reward and --reward-cmd") }
        guard keep > 0 && keep <= 1 else { throw ValidationError("--keep must be in (0, 1] (got \(keep))") }
        if strategy == "local" && k < 2 { throw ValidationError("--k must be at least 2 with --strategy local (got \(k))") }
        guard rewardTimeout > 0 else { throw ValidationError("--reward-timeout must be > 0") }
    }

    func run() throws {
        Std.removeTemporaryFilesOnSignals()
        do {
            var f = try training.options(defaultLearningRate: 2e-4, needsData: false)
            f.trainOnPrompt = trainOnPrompt
            var o = RaftOptions(finetune: f, promptsPath: prompts)
            o.rewardModel = reward
            o.rewardCommand = rewardCmd
            o.rewardTimeout = rewardTimeout
            o.strategy = RaftStrategy(rawValue: strategy) ?? .local
            o.k = k
            o.keep = keep
            o.iterations = iterations
            o.promptsPerIteration = promptsPerIteration
            o.temperature = temp
            o.minNewTokens = minNewTokens
            o.maxNewTokens = maxNewTokens
            o.evalPrompts = evalPrompts
            o.width = width
            o.resume = resume
            let t0 = Date()
            let raft = try WrenAlign.Raft(o)
            stderrLine("wren raft: \(raft.prompts.count) prompts" + (raft.evalPrompts.isEmpty ? "" : ", \(raft.evalPrompts.count) held-out prompts")
                       + "; \(iterations) iterations of \(promptsPerIteration) prompts × \(o.strategy == .local ? k : 1) samples")
            let tty = isatty(2) == 1
            var last = Date.distantPast, phaseStart = Date(), phaseName = ""
            raft.onProgress = { phase, done, total in
                let now = Date()
                if phase != phaseName { phaseName = phase; phaseStart = now }
                guard done == total || now.timeIntervalSince(last) > (tty ? 0.2 : 5) else { return }
                last = now
                // The first items of a phase arrive before a rate means anything.
                let el = now.timeIntervalSince(phaseStart), rate = Double(done) / max(el, 1e-9)
                let line = el < 1 ? String(format: "%@: %d/%d", phase, done, total)
                    : String(format: "%@: %d/%d  %.1f/s  ETA %@", phase, done, total, rate, Finetune.duration(Double(total - done) / rate))
                Std.err(tty ? "\r\u{1b}[K" + line + (done == total ? "\n" : "") : line + "\n")
            }
            try raft.run()
            for r in raft.rows {
                var line = "iteration \(r.iteration):"
                if let s = r.meanSampledReward { line += String(format: " sampled %.3f", s) }
                if let s = r.meanKeptReward { line += String(format: ", kept %.3f (%d of %d)", s, r.kept, r.samples) }
                if let s = r.evalReward { line += String(format: ", held-out %.3f ± %.3f", s, r.evalRewardStderr ?? 0) }
                if let d = r.evalDiversity { line += String(format: ", distinct-1/2 %.3f/%.3f", d.distinct1, d.distinct2) }
                stderrLine(line)
            }
            stderrLine("wren raft: wrote \(f.outputDir)/raft.jsonl, raft.svg, samples-*.jsonl and the adapter" + String(format: " in %.1f s", Date().timeIntervalSince(t0)))
        } catch {
            fail(error)
        }
    }
}
