// `wren logits`: the logits after evaluating a text, for checking Wren
// against references and debugging conversions.

import ArgumentParser
import Foundation
import WrenEngine
import WrenFormat

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the logits after evaluating TEXT (special tokens parsed).")

    @OptionGroup var options: ModelOptions

    @Option(help: "How many of the largest logits to print.")
    var top = 10

    @Flag(help: "Also print the top logits at every position.")
    var allPositions = false

    @Flag(help: "Print JSON: {\"tokens\": [...], \"top\": [[id, logit], ...], \"positions\": [...]}.")
    var json = false

    @Argument(help: "The text to evaluate.")
    var text: String

    func validate() throws {
        guard top >= 1 else { throw ValidationError("--top must be at least 1") }
    }

    static func topK(_ l: ArraySlice<Float>, _ k: Int) -> [(Int, Float)] {
        let base = l.startIndex
        return l.indices.sorted { l[$0] > l[$1] || (l[$0] == l[$1] && $0 < $1) }.prefix(k).map { ($0 - base, l[$0]) }
    }

    func run() throws {
        do {
            let (model, session) = try options.load()
            let ids = model.tokenizer.encode(text, addSpecial: true, parseSpecial: true)
            guard !ids.isEmpty else { throw EngineError.emptyPrompt }
            guard ids.count <= session.contextLength else { throw EngineError.promptTooLong(tokens: ids.count, context: session.contextLength) }
            let V = model.config.vocabSize
            let logits = try session.evaluate(ids, allLogits: allPositions)
            let lastSlice = allPositions ? logits[((ids.count - 1) * V)..<(ids.count * V)] : logits[0..<V]
            let last = Self.topK(lastSlice, top)
            if json {
                func pairs(_ p: [(Int, Float)]) -> String { "[" + p.map { "[\($0.0), \($0.1)]" }.joined(separator: ", ") + "]" }
                var s = "{\"tokens\": [" + ids.map(String.init).joined(separator: ", ") + "], \"top\": " + pairs(last)
                if allPositions {
                    s += ", \"positions\": [" + (0..<ids.count).map { pairs(Self.topK(logits[($0 * V)..<(($0 + 1) * V)], top)) }.joined(separator: ", ") + "]"
                }
                print(s + "}")
            } else {
                if allPositions {
                    for p in 0..<ids.count {
                        print("position \(p) token \(ids[p]) \(model.tokenizer.pieces[Int(ids[p])].debugDescription):")
                        for (id, v) in Self.topK(logits[(p * V)..<((p + 1) * V)], top) { print("  \(id)\t\(v)\t\(model.tokenizer.pieces[id].debugDescription)") }
                    }
                } else {
                    for (id, v) in last { print("\(id)\t\(v)\t\(model.tokenizer.pieces[id].debugDescription)") }
                }
            }
        } catch { fail(error) }
    }
}
