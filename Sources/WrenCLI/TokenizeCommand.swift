// `wren tokenize` and `wren detokenize`.

import ArgumentParser
import Foundation
import WrenEngine
import WrenFormat
import WrenTokenizer

/// All of stdin as bytes.
func readAllStdin() throws -> [UInt8] {
    try Std.readAll()
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text (from the argument, or all of stdin).",
        discussion: "Special tokens such as <|im_start|> are matched as single ids unless --no-special. BOS/EOS are added as the model's flags say unless --no-bos-eos.")

    @Option(name: .shortAndLong, help: "Model: .wren, .gguf or a Hugging Face directory.")
    var model: String

    @Flag(help: "Print a JSON array of ids.")
    var json = false

    @Flag(name: .customLong("no-special"), help: "Treat special-token text as plain text.")
    var noSpecial = false

    @Flag(name: .customLong("no-bos-eos"), help: "Do not add BOS/EOS.")
    var noBosEos = false

    @Flag(help: "Print token count and encoding speed (MB/s, excluding model load) on stderr; ids are not printed.")
    var stats = false

    @Argument(help: "Text; read from stdin when absent.")
    var text: String?

    func run() throws {
        do {
            let tok = try Tokenizer.load(model: model)
            let input: String
            if let text { input = text } else {
                let bytes = try readAllStdin()
                guard let s = String(validating: bytes, as: UTF8.self) else { throw CLIError(message: "stdin: invalid UTF-8") }
                input = s
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let ids = tok.encode(input, addSpecial: !noBosEos, parseSpecial: !noSpecial)
            let secs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if stats {
                stderrLine(String(format: "tokens %d bytes %d seconds %.4f MB/s %.2f", ids.count, input.utf8.count, secs,
                                  Double(input.utf8.count) / 1e6 / max(secs, 1e-9)))
                return
            }
            var out = ""
            if json {
                out = "[" + ids.map(String.init).joined(separator: ", ") + "]\n"
            } else {
                for id in ids { out += "\(id)\t\(tok.pieces[Int(id)].debugDescription)\n" }
            }
            Std.out(out)
        } catch { fail(error) }
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read token ids (whitespace, comma or JSON-array separated) from the arguments or stdin and print the text.")

    @Option(name: .shortAndLong, help: "Model: .wren, .gguf or a Hugging Face directory.")
    var model: String

    @Flag(help: "Leave out control tokens such as <|im_end|>.")
    var skipSpecial = false

    @Argument(help: "Token ids; read from stdin when absent.")
    var ids: [String] = []

    func run() throws {
        do {
            let tok = try Tokenizer.load(model: model)
            let raw = ids.isEmpty ? String(decoding: try readAllStdin(), as: UTF8.self) : ids.joined(separator: " ")
            var list: [Int32] = []
            for part in raw.split(whereSeparator: { " \t\n\r,[]".contains($0) }) {
                guard let v = Int32(part) else { throw CLIError(message: "not a token id: \"\(part)\"") }
                list.append(v)
            }
            let text = try tok.decode(list, skipSpecial: skipSpecial)
            Std.out(text)
            if isatty(1) == 1 { Std.out("\n") }
        } catch let e as TokenizerError { fail(CLIError(message: e.description)) } catch { fail(error) }
    }
}
