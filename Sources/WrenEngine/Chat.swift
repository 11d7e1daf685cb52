// Chat prompts for a model: its own template (or a named fallback or a file),
// rendered and tokenized the way Hugging Face's apply_chat_template does
// (special tokens parsed, no extra BOS unless the model wants one and the
// template did not write it), and history trimming when the context is full.

import Foundation
import WrenFormat
import WrenTokenizer

public final class ChatFormatter: @unchecked Sendable {
    public let template: ChatTemplate
    /// Where the template came from: "model", a fallback name, or a file path.
    public let origin: String
    let tokenizer: Tokenizer
    let bos: String
    let eos: String

    /// - Parameters:
    ///   - name: a fallback template (`ChatTemplate.fallbacks`), used instead of the model's.
    ///   - file: a Jinja template file, used instead of the model's.
    /// - Throws: `EngineError.invalidParameter` when no template is available or the name is unknown;
    ///   `JinjaError` for a template that does not parse.
    public init(model: LlamaModel, name: String? = nil, file: String? = nil) throws {
        tokenizer = model.tokenizer
        bos = model.tokenizer.bosID.map { model.tokenizer.pieces[Int($0)] } ?? ""
        eos = model.tokenizer.eosID.map { model.tokenizer.pieces[Int($0)] } ?? ""
        if let file {
            guard let s = MappedFile.contents(of: file).flatMap({ String(data: $0, encoding: .utf8) }) else {
                throw EngineError.invalidParameter("\(file): cannot read the chat template file")
            }
            template = try ChatTemplate(s)
            origin = file
        } else if let name {
            guard let t = try ChatTemplate.named(name) else {
                throw EngineError.invalidParameter("unknown chat template \"\(name)\" (known: \(ChatTemplate.fallbacks.keys.sorted().joined(separator: ", ")))")
            }
            template = t
            origin = name
        } else if let src = model.file.metadata["tokenizer.chat_template"]?.string {
            template = try ChatTemplate(src)
            origin = "model"
        } else if let name = ChatFormatter.builtIn[model.config.architecture], let t = try ChatTemplate.named(name) {
            // GGUF files of some architectures carry no template; theirs is fixed by the architecture.
            template = t
            origin = "\(name) (built in for \(model.config.architecture); the file has none)"
        } else {
            throw EngineError.invalidSetting(setting: "chatTemplate", reason: "is needed: \(model.file.path) has no chat template; name a built-in one (\(ChatTemplate.fallbacks.keys.sorted().joined(separator: ", "))) or give a template file")
        }
    }

    /// The template an architecture implies when its file has none.
    static let builtIn = ["gemma3": "gemma"]

    /// The rendered prompt text.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws -> String {
        try template.render(messages, addGenerationPrompt: addGenerationPrompt, bosToken: bos, eosToken: eos)
    }

    /// Token ids of the rendered prompt.
    public func tokens(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws -> [Int32] {
        let text = try render(messages, addGenerationPrompt: addGenerationPrompt)
        var ids = tokenizer.encode(text, addSpecial: false, parseSpecial: true)
        if tokenizer.addBOS, let b = tokenizer.bosID, ids.first != b { ids.insert(b, at: 0) }
        return ids
    }

    /// Drops the oldest turns (never the system message, never the last user turn)
    /// until the prompt plus `reserve` tokens fits in `context`.
    /// - Returns: the trimmed history, its tokens, and how many messages were dropped.
    public func fit(_ messages: [ChatMessage], context: Int, reserve: Int) throws -> (messages: [ChatMessage], tokens: [Int32], dropped: Int) {
        var msgs = messages
        var dropped = 0
        while true {
            let ids = try tokens(msgs)
            if ids.count + reserve <= context { return (msgs, ids, dropped) }
            let first = msgs.first?.role == "system" ? 1 : 0
            // Keep at least the last message; drop a user/assistant pair (or one message) from the front.
            guard msgs.count - first > 1 else { throw EngineError.promptTooLong(tokens: ids.count, context: context - reserve) }
            msgs.remove(at: first)
            dropped += 1
            if msgs.count - first > 1, msgs[first].role == "assistant" { msgs.remove(at: first); dropped += 1 }
        }
    }
}
