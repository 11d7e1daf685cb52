// `wren vocab extend`: new tokens learned on a domain text (docs/delta.md, "Vocabulary extension").

import ArgumentParser
import Foundation
import WrenFormat
import WrenTuning

struct Vocab: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Extend a model's vocabulary with tokens learned on a domain text.",
        subcommands: [VocabExtend.self])
}

struct VocabExtend: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extend",
        abstract: "Learn N new tokens on a dataset's text and write the extended model.",
        discussion: """
        Byte-level BPE vocabularies get N new merges after every existing one; SentencePiece \
        vocabularies get N new pieces scored below every existing one. Existing token ids never \
        change and every text decodes to itself. Each new token's embedding (and output) row is \
        the mean of the rows of the tokens it is made of; every other tensor is copied as it is. \
        Train the new rows with `wren finetune --full` on the domain text.
        """)

    @Option(name: .shortAndLong, help: "The model (.wren, GGUF or Hugging Face directory).")
    var model: String

    @Option(help: "The domain text: an LMFlow dataset (a .json/.jsonl file or a directory); every instance's text is used.")
    var data: String

    @Option(help: "How many tokens to add.")
    var newTokens: Int

    @Option(name: .shortAndLong, help: "Output .wren path.")
    var output: String

    @Flag(help: "Overwrite an existing output file.")
    var force = false

    func validate() throws {
        guard newTokens >= 1 else { throw ValidationError("--new-tokens must be at least 1") }
    }

    func run() throws {
        Std.removeTemporaryFilesOnSignals()
        do {
            let t0 = Date()
            if !force, FileManager.default.fileExists(atPath: output) { throw FormatError.outputExists(path: output) }
            let text = VocabExtension.text(of: try RawDataset.load(data))
            let r = try VocabExtension.extend(model: model, text: text, count: newTokens, to: output, overwrite: force,
                                              progress: ProgressLine().update)
            stderrLine(String(format: "wrote %@: %d new tokens (ids %d…%d) in %.1fs; the data's %d bytes: %d tokens before, %d after (%.3f → %.3f tokens per byte)",
                              output, r.added, r.firstNewID, r.firstNewID + r.added - 1, Date().timeIntervalSince(t0), r.bytes,
                              r.tokensBefore, r.tokensAfter, Double(r.tokensBefore) / Double(max(1, r.bytes)),
                              Double(r.tokensAfter) / Double(max(1, r.bytes))))
            stderrLine("first new tokens: " + r.examples.map { $0.debugDescription }.joined(separator: " "))
        } catch { fail(error) }
    }
}
