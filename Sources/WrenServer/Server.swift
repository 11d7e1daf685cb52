// `wren serve`: the OpenAI-compatible HTTP server on Hummingbird 2. This layer
// stays thin: it reads requests (OpenAI.swift checks every field), turns
// prompts into token ids with the model's tokenizer and chat template, hands
// jobs to the engine (Engine.swift: continuous batching on WrenEngine's
// BatchScheduler) and writes OpenAI's response shapes, whole or as server-sent
// events. Around it: the API key (compared in constant time), the body size
// limit, the queue limit (429 with Retry-After), a disconnect watch that
// cancels a gone client's generation, Prometheus metrics, and a graceful
// shutdown on SIGTERM/SIGINT (stop accepting, let streams finish for the grace
// period, cancel the rest, exit 0).

import Dispatch
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import WrenEngine
import WrenFormat
import WrenTokenizer

public struct ServerSettings: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Requests other than /health must carry `Authorization: Bearer <key>`.
    public var apiKey: String?
    /// Largest request body accepted (413 past it).
    public var maxBodyBytes = 8 << 20
    /// Serve GET /metrics.
    public var metrics = false
    /// Seconds running generations get to finish after SIGTERM before they are cancelled.
    public var shutdownGrace = 10.0
    /// A connection that sends nothing for this long while no request of its runs (idle keep-alive,
    /// or a request trickling in) is closed.
    public var idleTimeout = 60.0
    public init() {}
}

/// The request context: Hummingbird's, plus the connection (to notice a client that left).
public struct ServeContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

public final class WrenServer: @unchecked Sendable {
    public let settings: ServerSettings
    public let engine: Engine
    public let metrics = ServerMetrics()
    private let draining = NSLock()
    private var isDraining = false
    private var signalSources: [DispatchSourceSignal] = []

    public init(settings: ServerSettings, engine: Engine) {
        self.settings = settings
        self.engine = engine
        metrics.gauges = { [weak engine] in
            let l = engine?.load ?? (waiting: 0, active: 0)
            return [("wren_queue_depth", "Jobs waiting for a slot.", Double(l.waiting)),
                    ("wren_slots_busy", "Slots holding a job.", Double(l.active))]
        }
    }

    /// Serves until SIGTERM or SIGINT, then drains and returns. `onListening(port)` is called once bound.
    public func run(log: @escaping @Sendable (String) -> Void, onListening: @escaping @Sendable (Int) -> Void) async throws {
        let router = Router(context: ServeContext.self)
        router.add(middleware: Gate(server: self))
        router.get("/health") { _, _ in self.health() }
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: ChatPage.html)))
        }
        router.get("/v1/models") { _, _ in try self.listModels() }
        router.post("/v1/chat/completions") { req, ctx in try await self.generate(req, ctx, chat: true) }
        router.post("/v1/completions") { req, ctx in try await self.generate(req, ctx, chat: false) }
        router.post("/tokenize") { req, _ in try await self.tokenize(req) }
        router.post("/detokenize") { req, _ in try await self.detokenize(req) }
        router.get("/tokenizer_info") { _, _ in try self.tokenizerInfo() }
        if settings.metrics {
            router.get("/metrics") { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: .init(byteBuffer: ByteBuffer(string: self.metrics.render())))
            }
        }
        var logger = Logger(label: "wren.serve")
        logger.logLevel = .error
        let app = Application(router: router,
                              server: .http1(configuration: .init(idleTimeout: .milliseconds(Int64(settings.idleTimeout * 1000)))),
                              configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "wren"),
                              onServerRunning: { channel in onListening(channel.localAddress?.port ?? self.settings.port) },
                              logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { [self] in
                draining.lock()
                let first = !isDraining
                isDraining = true
                draining.unlock()
                guard first else { return }
                let n = engine.outstandingRequests
                log("shutting down: \(n) request\(n == 1 ? "" : "s") running; cancelling what is left after \(settings.shutdownGrace) s")
                Task { await group.triggerGracefulShutdown() }
                DispatchQueue.global().asyncAfter(deadline: .now() + settings.shutdownGrace) { self.engine.cancelAll() }
            }
            src.resume()
            signalSources.append(src)
        }
        try await group.run()
        engine.cancelAll()
        engine.stop()
    }

    var shuttingDown: Bool {
        draining.lock()
        defer { draining.unlock() }
        return isDraining
    }

    // MARK: - Responses

    static func json(_ object: Any, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes, .sortedKeys]) else {
            return Response(status: .internalServerError, headers: h,
                            body: .init(byteBuffer: ByteBuffer(string: #"{"error":{"message":"the response could not be encoded","type":"server_error","param":null,"code":null}}"#)))
        }
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ e: APIError) -> Response {
        var headers: HTTPFields = [:]
        if e.status == .tooManyRequests { headers[.retryAfter] = "1" }
        return json(e.json, status: e.status, headers: headers)
    }

    func health() -> Response {
        switch engine.state {
        case .ready: return Self.json(["status": "ok"])
        case .loading: return Self.json(["status": "loading"], status: .serviceUnavailable)
        case .failed(let why): return Self.json(["status": "error", "error": why], status: .internalServerError)
        }
    }

    func ready() throws -> [ServedModel] {
        switch engine.state {
        case .ready: break
        case .loading: throw APIError(status: .serviceUnavailable, message: "the model is still loading", type: "server_error", code: "loading")
        case .failed(let why): throw APIError(status: .internalServerError, message: "the model failed to load: \(why)", type: "server_error")
        }
        if shuttingDown { throw APIError(status: .serviceUnavailable, message: "the server is shutting down", type: "server_error", code: "shutting_down") }
        return engine.models
    }

    func listModels() throws -> Response {
        let ms = try ready()
        return Self.json(["object": "list", "data": ms.map { m in
            ["id": m.name, "object": "model", "created": m.created, "owned_by": "wren",
             "context_length": m.scheduler.session.contextLength, "slots": m.scheduler.session.sequences] as [String: Any]
        }])
    }

    /// The served model a request names (the first, the base, when it names none).
    func model(named name: String?, in ms: [ServedModel]) throws -> ServedModel {
        guard let name else { return ms[0] }
        guard let m = ms.first(where: { $0.name == name }) else {
            throw APIError(status: .notFound, message: "model \"\(name)\" is not served here (GET /v1/models lists: \(ms.map(\.name).joined(separator: ", ")))",
                           param: "model", code: "model_not_found")
        }
        return m
    }

    func body(_ request: Request) async throws -> JSONObject {
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: settings.maxBodyBytes) } catch let e as HTTPResponseError where e.status == .contentTooLarge {
            throw APIError(status: .contentTooLarge, message: "the request body is larger than \(settings.maxBodyBytes) bytes", code: "body_too_large")
        }
        return try JSONObject(body: Data(buffer.readableBytesView))
    }

    // MARK: - Tokenizer endpoints

    // Both conventions: llama.cpp's ({"content", "add_special"} → {"tokens"}; {"tokens"} → {"content"}) and
    // vLLM's, which lm-evaluation-harness's remote tokenizer speaks ({"prompt", "add_special_tokens"};
    // {"tokens"} → {"prompt"}, and GET /tokenizer_info).
    func tokenize(_ request: Request) async throws -> Response {
        let ms = try ready()
        let o = try await body(request)
        try o.refuseUnknown(allowed: ["content", "prompt", "add_special", "add_special_tokens", "parse_special", "with_pieces", "model"])
        let m = try model(named: try o.string("model"), in: ms)
        guard let text = try o.string("content") ?? o.string("prompt") else { throw APIError.invalid("missing \"content\" (or \"prompt\")", param: "content") }
        let special = try o.bool("add_special") ?? o.bool("add_special_tokens") ?? false
        let ids = m.model.tokenizer.encode(text, addSpecial: special, parseSpecial: try o.bool("parse_special") ?? true)
        if try o.bool("with_pieces") == true {
            return Self.json(["tokens": ids.map { ["id": Int($0), "piece": String(decoding: m.model.tokenizer.bytes(of: $0), as: UTF8.self)] as [String: Any] }])
        }
        return Self.json(["tokens": ids.map { Int($0) }, "count": ids.count])
    }

    func detokenize(_ request: Request) async throws -> Response {
        let ms = try ready()
        let o = try await body(request)
        try o.refuseUnknown(allowed: ["tokens", "model"])
        let m = try model(named: try o.string("model"), in: ms)
        guard let list = o.value("tokens") as? [Any] else { throw APIError.invalid("\"tokens\" must be an array of token ids", param: "tokens") }
        let V = m.model.config.vocabSize
        let ids: [Int32] = try list.map {
            guard let i = Checked.jsonInt($0), i >= 0, i < V else { throw APIError.invalid("\"tokens\" must hold token ids of this model (0..<\(V))", param: "tokens") }
            return Int32(i)
        }
        let text = (try? m.model.tokenizer.decode(ids)) ?? ""
        return Self.json(["content": text, "prompt": text])
    }

    /// The base model's special tokens and chat template (vLLM's shape, which lm-evaluation-harness reads).
    func tokenizerInfo() throws -> Response {
        let m = try ready()[0]
        let t = m.model.tokenizer
        func piece(_ id: Int32?) -> Any { id.map { t.pieces[Int($0)] } ?? NSNull() }
        var info: [String: Any] = ["eos_token": piece(t.eosID), "bos_token": piece(t.bosID), "pad_token": piece(t.eosID),
                                   "model_max_length": m.scheduler.session.contextLength, "tokenizer_class": "wren"]
        if case .success(let f) = m.formatter { info["chat_template"] = f.template.source }
        return Self.json(info)
    }
}

/// API key (not for /health and the chat page, whose own requests carry it), error mapping and
/// request counting, around every route.
struct Gate: RouterMiddleware {
    typealias Context = ServeContext
    let server: WrenServer
    static let endpoints: Set<String> = ["/", "/health", "/v1/models", "/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize", "/tokenizer_info", "/metrics"]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        var response: Response
        if path != "/health", path != "/", let key = server.settings.apiKey, !Self.authorized(request.headers[.authorization], key: key) {
            response = WrenServer.error(APIError(status: .unauthorized, message: "a valid API key is needed (Authorization: Bearer <key>)",
                                                 type: "authentication_error", code: "invalid_api_key"))
        } else {
            do {
                response = try await next(request, context)
            } catch let e as APIError {
                response = WrenServer.error(e)
            } catch let e as QueueFull {
                _ = e
                response = WrenServer.error(APIError(status: .tooManyRequests, message: "too many requests are waiting; retry shortly",
                                                     type: "server_error", code: "queue_full"))
            } catch let e as HTTPResponseError {
                let what: String
                switch e.status {
                case .notFound: what = "no such endpoint: \(request.method) \(path)"
                case .methodNotAllowed: what = "\(request.method) is not allowed on \(path)"
                case .contentTooLarge: what = "the request body is too large"
                default: what = "\(e.status)"
                }
                response = WrenServer.error(APIError(status: e.status, message: what, type: e.status.code >= 500 ? "server_error" : "invalid_request_error"))
            } catch {
                response = WrenServer.error(APIError(status: .internalServerError, message: "internal error: \(error)", type: "server_error"))
            }
        }
        server.metrics.add("wren_requests_total", labels: [("endpoint", Self.endpoints.contains(path) ? path : "other"), ("status", "\(response.status.code)")])
        return response
    }

    /// `Bearer <key>` against the key, in time that depends on the lengths only.
    static func authorized(_ header: String?, key: String) -> Bool {
        guard let header, header.hasPrefix("Bearer ") else { return false }
        let a = Array(header.utf8.dropFirst(7)), b = Array(key.utf8)
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) { diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0) }
        return diff == 0
    }
}
