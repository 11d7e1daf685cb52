// POST /v1/chat/completions and /v1/completions: prompts to token ids, jobs to
// the engine, results back in OpenAI's shapes, whole or streamed as server-sent
// events. A stream's text is exactly the whole response's: the pieces the
// scheduler releases, then whatever it held back (a possible stop string that
// did not come), sent with the final chunk.

import Foundation
import Hummingbird
import NIOCore
import WrenEngine
import WrenTokenizer

extension WrenServer {
    /// One prompt of a request, tokenized.
    struct Prompt {
        var ids: [Int32]
        /// The prompt as text, for `echo`.
        var text: String
    }

    /// What one job produced.
    struct Choice {
        var tokens: [(Int32, TokenLogprob?)] = []
        var promptLogprobs: [TokenLogprob] = []
        var result: GenerationResult?
        var error: Error?
        /// Bytes of text already streamed.
        var streamed = 0
    }

    func generate(_ request: Request, _ context: ServeContext, chat: Bool) async throws -> Response {
        let arrived = Date()
        let ms = try ready()
        let o = try await body(request)
        let V = ms[0].model.config.vocabSize
        let plan = chat ? try OpenAIRequest.chat(o, vocabSize: V) : try OpenAIRequest.completions(o, vocabSize: V)
        let served = try model(named: plan.model, in: ms)
        let tokenizer = served.model.tokenizer
        let ctx = served.scheduler.session.contextLength

        var prompts: [Prompt] = []
        for p in plan.prompts {
            switch p {
            case .messages(let messages):
                let f: ChatFormatter
                switch served.formatter {
                case .success(let x): f = x
                case .failure(let e): throw APIError.invalid("\(served.name) has no usable chat template (\(e)); use /v1/completions", param: "messages")
                }
                do { prompts.append(Prompt(ids: try f.tokens(messages), text: "")) } catch {
                    throw APIError.invalid("the chat template failed on these messages: \(error)", param: "messages")
                }
            case .text(let s):
                prompts.append(Prompt(ids: tokenizer.encode(s, addSpecial: true, parseSpecial: true), text: s))
            case .tokens(let ids):
                prompts.append(Prompt(ids: ids, text: (try? tokenizer.decode(ids)) ?? ""))
            }
        }
        for (i, p) in prompts.enumerated() {
            guard !p.ids.isEmpty else { throw APIError.invalid("prompt \(i) is empty", param: chat ? "messages" : "prompt") }
            guard p.ids.count <= ctx else {
                throw APIError(status: .badRequest, message: "prompt \(i) has \(p.ids.count) tokens; this server's context is \(ctx) tokens per slot",
                               param: chat ? "messages" : "prompt", code: "context_length_exceeded")
            }
        }
        // One job per prompt and choice; max_tokens capped by what the slot's context leaves.
        var jobs: [BatchJob] = []
        for p in prompts {
            for j in 0..<plan.n {
                var opts = plan.options
                let room = ctx - p.ids.count + 1
                opts.maxTokens = min(opts.maxTokens ?? room, room)
                opts.sampling.seed = plan.seed.map { $0 &+ UInt64(j) } ?? UInt64.random(in: 0...UInt64.max)
                jobs.append(BatchJob(prompt: p.ids, options: opts, logprobs: plan.logprobs, promptLogprobs: plan.echo && plan.logprobs != nil,
                                     json: plan.json))
            }
        }
        let count = jobs.count
        let (events, cancel) = try engine.submit(jobs, to: served)
        // A client that goes away cancels its jobs, noticed while waiting as well as when writing.
        let watch = DisconnectWatch(onClose: cancel)
        _ = try? await context.channel.pipeline.addHandler(watch, position: .first).get()
        let channel = context.channel
        let unwatch: @Sendable () -> Void = { channel.pipeline.removeHandler(watch, promise: nil) }
        let id = (chat ? "chatcmpl-" : "cmpl-") + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let created = Int(arrived.timeIntervalSince1970)
        let shape = Shape(id: id, created: created, model: served.name, chat: chat, plan: plan, prompts: prompts, tokenizer: tokenizer,
                          endTokens: served.scheduler.endTokens)

        if !plan.stream {
            var choices = [Choice](repeating: Choice(), count: jobs.count)
            for await (i, e) in events { record(e, into: &choices[i]) }
            unwatch()
            observe(choices, arrived: arrived)
            if let err = choices.compactMap(\.error).first { throw APIError.invalid("\(err)") }
            guard choices.allSatisfy({ $0.result?.stopReason != .cancelled }) else {
                throw APIError(status: .serviceUnavailable, message: "the generation was cancelled (the server is shutting down)", type: "server_error")
            }
            return Self.json(shape.whole(choices))
        }

        let body = ResponseBody { writer in
            var choices = [Choice](repeating: Choice(), count: count)
            defer {
                unwatch()
                self.observe(choices, arrived: arrived)
            }
            func send(_ object: Any) async throws {
                let data = (try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes, .sortedKeys])) ?? Data("{}".utf8)
                var b = ByteBuffer(string: "data: ")
                b.writeBytes(data)
                b.writeString("\n\n")
                try await writer.write(b)
            }
            if chat {
                for i in 0..<count { try await send(shape.chunk(index: i, delta: ["role": "assistant", "content": ""], logprobs: nil, finish: nil)) }
            }
            for await (i, e) in events {
                self.record(e, into: &choices[i])
                switch e {
                case .token(let tok, let text, let lp):
                    let visible = !shape.endTokens.contains(tok)
                    guard !text.isEmpty || (lp != nil && visible) else { continue }
                    choices[i].streamed += text.utf8.count
                    try await send(shape.chunk(index: i, text: text, logprobs: visible ? lp.map { [$0] } : nil, finish: nil))
                case .done(let r):
                    // What the scheduler held back and never streamed.
                    let rest = String(decoding: Array(r.text.utf8).dropFirst(choices[i].streamed), as: UTF8.self)
                    if !rest.isEmpty { try await send(shape.chunk(index: i, text: rest, logprobs: nil, finish: nil)) }
                    try await send(shape.chunk(index: i, text: nil, logprobs: nil, finish: Shape.finishReason(r)))
                case .failed(let err):
                    try await send(APIError.invalid("\(err)").json)
                case .prompt:
                    break
                }
            }
            if plan.includeUsage { try await send(shape.usageChunk(choices)) }
            var done = ByteBuffer(string: "data: [DONE]\n\n")
            try await writer.write(done)
            done.clear()
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    func record(_ e: BatchEvent, into c: inout Choice) {
        switch e {
        case .prompt(let lps): c.promptLogprobs = lps
        case .token(let t, _, let lp): c.tokens.append((t, lp))
        case .done(let r): c.result = r
        case .failed(let err): c.error = err
        }
    }

    func observe(_ choices: [Choice], arrived: Date) {
        for c in choices {
            guard let r = c.result else { continue }
            metrics.add("wren_prompt_tokens_total", Double(r.stats.promptTokens))
            metrics.add("wren_prompt_tokens_evaluated_total", Double(r.stats.promptTokensEvaluated))
            metrics.add("wren_generated_tokens_total", Double(r.tokens.count))
            metrics.add("wren_generations_total", labels: [("reason", r.stopReason.rawValue)])
            if let sp = r.stats.speculation {
                metrics.add("wren_speculative_drafted_total", Double(sp.drafted))
                metrics.add("wren_speculative_accepted_total", Double(sp.accepted))
            }
            if !r.tokens.isEmpty { metrics.observe("wren_time_to_first_token_seconds", r.stats.timeToFirstToken) }
            if r.tokens.count > 1 { metrics.observe("wren_generation_tokens_per_second", r.stats.generationTokensPerSecond) }
        }
        metrics.observe("wren_request_duration_seconds", Date().timeIntervalSince(arrived))
    }
}

/// OpenAI's response objects for one request.
struct Shape {
    let id: String
    let created: Int
    let model: String
    let chat: Bool
    let plan: GenerationPlan
    let prompts: [WrenServer.Prompt]
    let tokenizer: Tokenizer
    let endTokens: Set<Int32>

    static func finishReason(_ r: GenerationResult) -> String {
        switch r.stopReason {
        case .eos, .stop: return "stop"
        case .length, .cancelled: return "length"
        }
    }

    func piece(_ t: Int32) -> String { String(decoding: tokenizer.bytes(of: t), as: UTF8.self) }

    static func finite(_ x: Float) -> Double { x.isFinite ? Double(x) : -9999 }

    /// A chat logprobs entry.
    func chatLogprob(_ lp: TokenLogprob) -> [String: Any] {
        ["token": piece(lp.token), "logprob": Self.finite(lp.logprob), "bytes": tokenizer.bytes(of: lp.token).map { Int($0) },
         "top_logprobs": lp.top.map { ["token": piece($0.token), "logprob": Self.finite($0.logprob), "bytes": tokenizer.bytes(of: $0.token).map { Int($0) }] as [String: Any] }]
    }

    /// The completions logprobs object over `entries` (nil logprob: the prompt's first token), text offsets from `start`.
    func completionLogprobs(_ entries: [(Int32, TokenLogprob?)], start: Int) -> [String: Any] {
        var offset = start
        var tokens: [String] = [], lps: [Any] = [], tops: [Any] = [], offsets: [Int] = []
        for (t, lp) in entries {
            let s = piece(t)
            tokens.append(s)
            offsets.append(offset)
            offset += s.count
            lps.append(lp.map { Self.finite($0.logprob) } ?? NSNull())
            if let lp {
                var d: [String: Double] = [:]
                for a in lp.top { d[piece(a.token)] = max(d[piece(a.token)] ?? -.infinity, Self.finite(a.logprob)) }
                tops.append(d)
            } else {
                tops.append(NSNull())
            }
        }
        return ["tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets]
    }

    func usage(_ choices: [WrenServer.Choice]) -> [String: Int] {
        let p = prompts.reduce(0) { $0 + $1.ids.count }
        let c = choices.reduce(0) { $0 + ($1.result?.tokens.count ?? 0) }
        return ["prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c]
    }

    func whole(_ choices: [WrenServer.Choice]) -> [String: Any] {
        var out: [[String: Any]] = []
        for (i, c) in choices.enumerated() {
            let r = c.result!
            let visible = c.tokens.filter { !endTokens.contains($0.0) }
            if chat {
                var choice: [String: Any] = ["index": i, "message": ["role": "assistant", "content": r.text], "finish_reason": Self.finishReason(r)]
                choice["logprobs"] = plan.logprobs == nil ? NSNull() : ["content": visible.compactMap { $0.1.map(chatLogprob) }]
                out.append(choice)
            } else {
                let p = prompts[i / plan.n]
                var choice: [String: Any] = ["index": i, "text": (plan.echo ? p.text : "") + r.text, "finish_reason": Self.finishReason(r)]
                if plan.logprobs != nil {
                    var entries: [(Int32, TokenLogprob?)] = []
                    if plan.echo {
                        entries.append((p.ids[0], nil))
                        entries += c.promptLogprobs.map { ($0.token, $0) }
                    }
                    // Every generated token, an end token too (as OpenAI lists "<|endoftext|>"): the harness
                    // drops the last entry as the generated one.
                    entries += c.tokens
                    choice["logprobs"] = completionLogprobs(entries, start: 0)
                } else {
                    choice["logprobs"] = NSNull()
                }
                out.append(choice)
            }
        }
        return ["id": id, "object": chat ? "chat.completion" : "text_completion", "created": created, "model": model,
                "system_fingerprint": "wren", "choices": out, "usage": usage(choices)]
    }

    func chunk(index: Int, delta: [String: Any], logprobs: [TokenLogprob]?, finish: String?) -> [String: Any] {
        var choice: [String: Any] = ["index": index, "delta": delta, "finish_reason": finish ?? NSNull()]
        choice["logprobs"] = logprobs.map { ["content": $0.map(chatLogprob)] } ?? NSNull()
        return ["id": id, "object": "chat.completion.chunk", "created": created, "model": model, "system_fingerprint": "wren", "choices": [choice]]
    }

    /// A streamed piece (text nil: the final chunk of a choice, with its finish reason).
    func chunk(index: Int, text: String?, logprobs: [TokenLogprob]?, finish: String?) -> [String: Any] {
        if chat { return chunk(index: index, delta: text.map { ["content": $0] } ?? [:], logprobs: logprobs, finish: finish) }
        var choice: [String: Any] = ["index": index, "text": text ?? "", "finish_reason": finish ?? NSNull()]
        choice["logprobs"] = logprobs.map { completionLogprobs($0.map { ($0.token, $0) }, start: 0) } ?? NSNull()
        return ["id": id, "object": "text_completion", "created": created, "model": model, "choices": [choice]]
    }

    func usageChunk(_ choices: [WrenServer.Choice]) -> [String: Any] {
        ["id": id, "object": chat ? "chat.completion.chunk" : "text_completion", "created": created, "model": model, "choices": [] as [Any],
         "usage": usage(choices)]
    }
}

/// Calls `onClose` when the client closes its side of the connection (the server
/// allows half-closure, so the channel stays active until a write fails) or the
/// connection goes. Added for one request, removed after it.
final class DisconnectWatch: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    let onClose: @Sendable () -> Void
    init(onClose: @escaping @Sendable () -> Void) { self.onClose = onClose }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed { onClose() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose()
        context.fireChannelInactive()
    }
}
