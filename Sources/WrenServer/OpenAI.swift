// OpenAI request bodies, read as the hostile input they are: every field is
// checked for its type and range, unknown fields are refused by name, and any
// failure is an `APIError` naming the field (HTTP 400), never a trap. The
// accepted fields are OpenAI's (chat completions and legacy completions) plus
// llama.cpp's sampling extensions top_k, min_p and repeat_penalty.

import Foundation
import HTTPTypes
import WrenEngine
import WrenFormat
import WrenTokenizer

/// An error answered as `{"error": {"message", "type", "param", "code"}}`.
struct APIError: Error {
    var status: HTTPResponse.Status
    var message: String
    var type = "invalid_request_error"
    var param: String? = nil
    var code: String? = nil

    static func invalid(_ message: String, param: String? = nil) -> APIError {
        APIError(status: .badRequest, message: message, param: param)
    }

    var json: [String: Any] {
        ["error": ["message": message, "type": type, "param": param ?? NSNull(), "code": code ?? NSNull()] as [String: Any]]
    }
}

/// A JSON object's fields, each read with its type checked.
struct JSONObject {
    let fields: [String: Any]
    /// How this object's fields are named in errors ("" or "messages[2].").
    let path: String

    init(_ fields: [String: Any], path: String = "") {
        self.fields = fields
        self.path = path
    }

    /// Parses a request body; it must be one JSON object.
    init(body: Data) throws {
        guard !body.isEmpty else { throw APIError.invalid("the request body is empty; send a JSON object") }
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) } catch {
            throw APIError.invalid("the request body is not valid JSON")
        }
        guard let o = any as? [String: Any] else { throw APIError.invalid("the request body must be a JSON object") }
        // JSONSerialization keeps one of two equal names: a body that says a field twice is refused.
        var seen = Set<String>()
        if let keys = Checked.topLevelKeys(Array(body)), let dup = keys.first(where: { !seen.insert($0).inserted }) {
            throw APIError.invalid("field \"\(dup)\" appears more than once", param: dup)
        }
        self.init(o)
    }

    func name(_ k: String) -> String { path + k }

    /// A present, non-null value.
    func value(_ k: String) -> Any? {
        guard let v = fields[k], !(v is NSNull) else { return nil }
        return v
    }

    func refuseUnknown(allowed: Set<String>) throws {
        if let k = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw APIError.invalid("unknown field \"\(name(k))\"", param: name(k))
        }
    }

    func string(_ k: String) throws -> String? {
        guard let v = value(k) else { return nil }
        guard let s = v as? String else { throw APIError.invalid("\"\(name(k))\" must be a string", param: name(k)) }
        return s
    }

    func bool(_ k: String) throws -> Bool? {
        guard let v = value(k) else { return nil }
        guard isJSONBool(v), let b = v as? Bool else { throw APIError.invalid("\"\(name(k))\" must be true or false", param: name(k)) }
        return b
    }

    func number(_ k: String, in range: ClosedRange<Double>? = nil) throws -> Double? {
        guard let v = value(k) else { return nil }
        guard let d = Checked.jsonNumber(v) else { throw APIError.invalid("\"\(name(k))\" must be a number", param: name(k)) }
        if let range, !range.contains(d) {
            throw APIError.invalid("\"\(name(k))\" must be in \(range.lowerBound)...\(range.upperBound) (got \(d))", param: name(k))
        }
        return d
    }

    func integer(_ k: String, in range: ClosedRange<Int>? = nil) throws -> Int? {
        guard let v = value(k) else { return nil }
        guard let i = Checked.jsonInt(v) else { throw APIError.invalid("\"\(name(k))\" must be an integer", param: name(k)) }
        if let range, !range.contains(i) {
            throw APIError.invalid("\"\(name(k))\" must be in \(range.lowerBound)...\(range.upperBound) (got \(i))", param: name(k))
        }
        return i
    }

    func object(_ k: String) throws -> JSONObject? {
        guard let v = value(k) else { return nil }
        guard let o = v as? [String: Any] else { throw APIError.invalid("\"\(name(k))\" must be an object", param: name(k)) }
        return JSONObject(o, path: name(k) + ".")
    }
}

/// What a prompt is given as.
enum PromptInput {
    case text(String)
    case tokens([Int32])
    case messages([ChatMessage])
}

/// A parsed generation request (chat or completions).
struct GenerationPlan {
    var model: String?
    var prompts: [PromptInput] = []
    var options = GenerationOptions(maxTokens: nil)
    var n = 1
    var stream = false
    var includeUsage = false
    /// Alternatives per token when log-probabilities are asked for.
    var logprobs: Int?
    var echo = false
    var seed: UInt64?
    /// response_format json_object: constrained to one JSON object.
    var json = false
}

enum OpenAIRequest {
    static let samplingFields: Set<String> = ["model", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
                                              "frequency_penalty", "logit_bias", "seed", "stop", "n", "stream", "stream_options", "user",
                                              "max_tokens"]

    /// The fields both endpoints share.
    static func sampling(_ o: JSONObject, vocabSize: Int, into plan: inout GenerationPlan) throws {
        plan.model = try o.string("model")
        var s = SamplingParameters()
        if let t = try o.number("temperature", in: 0...2) { s.temperature = Float(t) }
        if let p = try o.number("top_p", in: 0...1) {
            guard p > 0 else { throw APIError.invalid("\"top_p\" must be greater than 0", param: "top_p") }
            s.topP = Float(p)
        }
        if let k = try o.integer("top_k", in: 0...Int(Int32.max)) { s.topK = k }
        if let m = try o.number("min_p", in: 0...1) { s.minP = Float(m) }
        if let r = try o.number("repeat_penalty", in: 0...10) {
            guard r > 0 else { throw APIError.invalid("\"repeat_penalty\" must be greater than 0", param: "repeat_penalty") }
            s.repeatPenalty = Float(r)
        }
        if let p = try o.number("presence_penalty", in: -2...2) { s.presencePenalty = Float(p) }
        if let f = try o.number("frequency_penalty", in: -2...2) { s.frequencyPenalty = Float(f) }
        if let bias = try o.object("logit_bias") {
            guard bias.fields.count <= 1024 else { throw APIError.invalid("\"logit_bias\" has more than 1024 entries", param: "logit_bias") }
            for k in bias.fields.keys.sorted() {
                guard let id = Int32(k), id >= 0, Int(id) < vocabSize else {
                    throw APIError.invalid("\"logit_bias\" key \"\(k)\" is not a token id of this model (0..<\(vocabSize))", param: "logit_bias")
                }
                guard let v = try bias.number(k, in: -100...100) else {
                    throw APIError.invalid("\"logit_bias\" value for \"\(k)\" must be a number", param: "logit_bias")
                }
                s.logitBias[id] = Float(v)
            }
        }
        if let seed = try o.integer("seed") { plan.seed = UInt64(bitPattern: Int64(seed)) }
        if let v = o.value("stop") {
            let stops: [String]
            if let one = v as? String { stops = [one] } else if let many = v as? [Any], case let strings = many.compactMap({ $0 as? String }),
                                                                    strings.count == many.count {
                stops = strings
            } else {
                throw APIError.invalid("\"stop\" must be a string or an array of strings", param: "stop")
            }
            guard stops.count <= 16, stops.allSatisfy({ $0.utf8.count <= 256 }) else {
                throw APIError.invalid("\"stop\" takes at most 16 strings of at most 256 bytes", param: "stop")
            }
            plan.options.stop = stops.filter { !$0.isEmpty }
        }
        if let n = try o.integer("n", in: 1...16) { plan.n = n }
        plan.stream = try o.bool("stream") ?? false
        if let so = try o.object("stream_options") {
            try so.refuseUnknown(allowed: ["include_usage"])
            plan.includeUsage = try so.bool("include_usage") ?? false
        }
        _ = try o.string("user")
        if let m = try o.integer("max_tokens", in: 0...Int(Int32.max)) { plan.options.maxTokens = m }
        plan.options.sampling = s
    }

    static func chat(_ o: JSONObject, vocabSize: Int) throws -> GenerationPlan {
        try o.refuseUnknown(allowed: samplingFields.union(["messages", "max_completion_tokens", "logprobs", "top_logprobs", "response_format"]))
        var plan = GenerationPlan()
        try sampling(o, vocabSize: vocabSize, into: &plan)
        if let m = try o.integer("max_completion_tokens", in: 0...Int(Int32.max)) { plan.options.maxTokens = m }
        guard let list = o.value("messages") else { throw APIError.invalid("missing \"messages\"", param: "messages") }
        guard let items = list as? [Any], !items.isEmpty else { throw APIError.invalid("\"messages\" must be a non-empty array", param: "messages") }
        guard items.count <= 4096 else { throw APIError.invalid("\"messages\" has more than 4096 messages", param: "messages") }
        var messages: [ChatMessage] = []
        for (i, item) in items.enumerated() {
            guard let d = item as? [String: Any] else { throw APIError.invalid("\"messages[\(i)]\" must be an object", param: "messages[\(i)]") }
            let m = JSONObject(d, path: "messages[\(i)].")
            try m.refuseUnknown(allowed: ["role", "content", "name"])
            guard let role = try m.string("role") else { throw APIError.invalid("missing \"messages[\(i)].role\"", param: "messages[\(i)].role") }
            guard ["system", "developer", "user", "assistant"].contains(role) else {
                throw APIError.invalid("\"messages[\(i)].role\" must be system, developer, user or assistant (got \"\(role)\")", param: "messages[\(i)].role")
            }
            _ = try m.string("name")
            let content: String
            if let parts = m.value("content") as? [Any] {
                // Content parts: text only.
                var text = ""
                for (j, p) in parts.enumerated() {
                    guard let pd = p as? [String: Any] else { throw APIError.invalid("\"messages[\(i)].content[\(j)]\" must be an object", param: "messages[\(i)].content") }
                    let part = JSONObject(pd, path: "messages[\(i)].content[\(j)].")
                    guard try part.string("type") == "text", let t = try part.string("text") else {
                        throw APIError.invalid("\"messages[\(i)].content[\(j)]\" must be a {\"type\": \"text\", \"text\": ...} part (this model reads text only)", param: "messages[\(i)].content")
                    }
                    text += t
                }
                content = text
            } else if let s = try m.string("content") {
                content = s
            } else if role == "assistant" {
                content = ""
            } else {
                throw APIError.invalid("missing \"messages[\(i)].content\"", param: "messages[\(i)].content")
            }
            messages.append(ChatMessage(role: role == "developer" ? "system" : role, content: content))
        }
        plan.prompts = [.messages(messages)]
        if try o.bool("logprobs") == true { plan.logprobs = try o.integer("top_logprobs", in: 0...20) ?? 0 } else if o.value("top_logprobs") != nil {
            throw APIError.invalid("\"top_logprobs\" needs \"logprobs\": true", param: "top_logprobs")
        }
        if let rf = try o.object("response_format") {
            try rf.refuseUnknown(allowed: ["type"])
            switch try rf.string("type") {
            case "text": break
            case "json_object": plan.json = true
            case let t: throw APIError.invalid("\"response_format\" type \"\(t ?? "")\" is not supported (text or json_object)", param: "response_format")
            }
        }
        return plan
    }

    static func completions(_ o: JSONObject, vocabSize: Int) throws -> GenerationPlan {
        try o.refuseUnknown(allowed: samplingFields.union(["prompt", "echo", "logprobs", "best_of", "suffix"]))
        var plan = GenerationPlan()
        plan.options.maxTokens = 16          // OpenAI's default for completions
        try sampling(o, vocabSize: vocabSize, into: &plan)
        guard let p = o.value("prompt") else { throw APIError.invalid("missing \"prompt\"", param: "prompt") }
        func ids(_ a: [Any], _ what: String) throws -> [Int32] {
            try a.map { v in
                guard let i = Checked.jsonInt(v), i >= 0, i < vocabSize else {
                    throw APIError.invalid("\"\(what)\" must hold token ids of this model (0..<\(vocabSize))", param: "prompt")
                }
                return Int32(i)
            }
        }
        if let s = p as? String {
            plan.prompts = [.text(s)]
        } else if let a = p as? [Any], !a.isEmpty {
            let strings = a.compactMap { $0 as? String }, lists = a.compactMap { $0 as? [Any] }
            if strings.count == a.count {
                plan.prompts = strings.map { .text($0) }
            } else if lists.count == a.count {
                plan.prompts = try lists.enumerated().map { .tokens(try ids($1, "prompt[\($0)]")) }
            } else {
                plan.prompts = [.tokens(try ids(a, "prompt"))]
            }
        } else {
            throw APIError.invalid("\"prompt\" must be a string, an array of strings, an array of token ids or an array of such arrays", param: "prompt")
        }
        guard plan.prompts.count * plan.n <= 64 else {
            throw APIError.invalid("at most 64 completions per request (prompts × n)", param: "prompt")
        }
        plan.echo = try o.bool("echo") ?? false
        plan.logprobs = try o.integer("logprobs", in: 0...20)
        if let b = try o.integer("best_of", in: 1...16), b != plan.n {
            throw APIError.invalid("\"best_of\" other than n is not supported", param: "best_of")
        }
        if let s = try o.string("suffix"), !s.isEmpty { throw APIError.invalid("\"suffix\" is not supported", param: "suffix") }
        if plan.echo && plan.stream { throw APIError.invalid("\"echo\" does not combine with \"stream\"", param: "echo") }
        return plan
    }
}
