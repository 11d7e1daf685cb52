// One generation request as JSON (`wren run --jsonl`, one per line; later the
// server's bodies): {"prompt" or "messages", "n_predict", "temperature", "top_k",
// "top_p", "min_p", "repeat_penalty", "frequency_penalty", "presence_penalty",
// "seed", "stop"}. Requests are hostile input: each field's type and range is
// checked, and a bad one is a Failure for that request alone.

import Foundation
import WrenFormat
import WrenTokenizer

/// A generation request; all fields optional but "prompt" (or "messages").
public struct GenerationRequest: Sendable {
    /// Why a request was refused, for the caller to report with the request's line or id.
    public struct Failure: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
        public init(message: String) { self.message = message }
    }
    public var prompt: String
    public var messages: [ChatMessage]?
    public var options: GenerationOptions

    /// Parses one JSON object; every field is checked (types, integers exact, ranges) before use.
    public static func parse(_ line: String, defaults: GenerationOptions) throws -> GenerationRequest {
        guard let data = line.data(using: .utf8), let any = try? JSONSerialization.jsonObject(with: data),
              let o = any as? [String: Any] else {
            throw Failure(message: "not a JSON object")
        }
        var messages: [ChatMessage]? = nil
        if let m = o["messages"] {
            guard let list = m as? [[String: Any]], !list.isEmpty else { throw Failure(message: "\"messages\" must be a non-empty array of {\"role\", \"content\"} objects") }
            messages = try list.enumerated().map { i, d in
                guard let role = d["role"] as? String, let content = d["content"] as? String else {
                    throw Failure(message: "messages[\(i)] needs string \"role\" and \"content\"")
                }
                return ChatMessage(role: role, content: content)
            }
        }
        guard let prompt = o["prompt"] ?? (messages != nil ? "" : nil) else { throw Failure(message: "missing \"prompt\" (or \"messages\")") }
        guard let p = prompt as? String else { throw Failure(message: "\"prompt\" must be a string") }
        guard !p.isEmpty || messages != nil else { throw Failure(message: "\"prompt\" is empty") }
        var opts = defaults
        func number(_ k: String) throws -> Double? {
            guard let v = o[k] else { return nil }
            guard let n = v as? NSNumber, !isJSONBool(v) else { throw Failure(message: "\"\(k)\" must be a number") }
            return n.doubleValue
        }
        func integer(_ k: String) throws -> Int? {
            guard let d = try number(k) else { return nil }
            guard let i = Checked.jsonInt(o[k]) else { throw Failure(message: "\"\(k)\" must be an integer, not \(d)") }
            return i
        }
        if let n = try integer("n_predict") {
            guard n >= 0 else { throw Failure(message: "\"n_predict\" must be >= 0") }
            opts.maxTokens = n
        }
        if let t = try number("temperature") { opts.sampling.temperature = Float(t) }
        if let k = try integer("top_k") { opts.sampling.topK = k }
        if let v = try number("top_p") { opts.sampling.topP = Float(v) }
        if let v = try number("min_p") { opts.sampling.minP = Float(v) }
        if let v = try number("repeat_penalty") { opts.sampling.repeatPenalty = Float(v) }
        if let v = try number("frequency_penalty") { opts.sampling.frequencyPenalty = Float(v) }
        if let v = try number("presence_penalty") { opts.sampling.presencePenalty = Float(v) }
        if let s = try integer("seed") {
            guard s >= 0 else { throw Failure(message: "\"seed\" must be >= 0") }
            opts.sampling.seed = UInt64(s)
        }
        if let s = o["stop"] {
            if let one = s as? String { opts.stop = [one] } else if let many = s as? [String] { opts.stop = many } else {
                throw Failure(message: "\"stop\" must be a string or an array of strings")
            }
        }
        do { try opts.sampling.validate() } catch let e as EngineError { throw Failure(message: e.description) }
        return GenerationRequest(prompt: p, messages: messages, options: opts)
    }
}
