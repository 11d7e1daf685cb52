// The `wren` command: argument parsing and printing only. Every capability
// lives in a library module; this target maps library errors to one line on
// stderr and exit code 1.

import ArgumentParser
import Foundation
import WrenEngine
import WrenFormat
import WrenTokenizer
import WrenTuning

@main
struct Wren: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wren",
        abstract: "Run and tune LLaMA-family models on a CPU.",
        version: "0.1.0",
        subcommands: [Run.self, Chat.self, Bench.self, Logits.self, Convert.self, Inspect.self, Export.self, Tokenize.self, Detokenize.self, Serve.self, Finetune.self, Merge.self, DeltaCommand.self, Vocab.self, Reward.self, DPO.self, Raft.self, Eval.self])

    /// ArgumentParser's main, after the standard streams and signals are set up (StandardStreams.swift).
    static func main() {
        Std.prepare()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

func stderrLine(_ s: String) {
    Std.err((s + "\n"))
}

/// A progress line on stderr: redrawn in place on a terminal, one line a second otherwise.
final class ProgressLine {
    let start = Date()
    var last = Date.distantPast
    let tty = isatty(2) == 1
    var shown = false

    func update(_ p: WriteProgress) {
        let now = Date()
        let done = p.tensorsDone == p.tensorCount
        guard done || now.timeIntervalSince(last) > (tty ? 0.1 : 1.0) else { return }
        last = now
        let secs = max(now.timeIntervalSince(start), 1e-6)
        let rate = Double(p.bytesDone) / secs / 1e6
        let eta = p.bytesDone > 0 ? Double(p.bytesTotal - p.bytesDone) / (Double(p.bytesDone) / secs) : 0
        let line = String(format: "[%d/%d tensors] %.1f/%.1f MB  %.1f MB/s  ETA %.1fs  %@", p.tensorsDone, p.tensorCount,
                          Double(p.bytesDone) / 1e6, Double(p.bytesTotal) / 1e6, rate, eta, p.name)
        if tty {
            Std.err(("\r\u{1b}[K" + line + (done ? "\n" : "")))
        } else {
            stderrLine(line)
        }
        shown = true
    }
}
