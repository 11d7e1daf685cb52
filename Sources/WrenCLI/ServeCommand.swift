// `wren serve`: flags to settings, then the server (WrenServer) runs until
// SIGTERM/SIGINT. The socket is bound before the model loads, so /health can
// say 503 while loading; a model that fails to load ends the process with exit 1.

import ArgumentParser
import Foundation
import WrenEngine
import WrenFormat
import WrenServer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over an OpenAI-compatible HTTP API with continuous batching.",
        discussion: """
        Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, \
        POST /tokenize, POST /detokenize, and GET /metrics with --metrics. Each --lora NAME=DIR is \
        served as model NAME (the base under its file name or --alias). -c is the context of each slot. \
        --draft, --lookup-ngram or --draft-layers speculate for a greedy request while it is the only one \
        generating. See docs/serve.md.
        """)

    @OptionGroup var model: ModelOptions

    @Option(help: "Address to listen on (loopback unless told otherwise).")
    var host = "127.0.0.1"

    @Option(help: "Port (0: any free one, printed when listening).")
    var port = 8080

    @Option(name: [.customLong("parallel"), .customShort("P")], help: "Slots: generations decoded together, each with its own -c tokens of KV cache.")
    var parallel = 4

    @Option(help: "The base model's name in requests and /v1/models (default: the file name without .wren).")
    var alias: String?

    @Option(name: .customLong("api-key-file"), help: "File holding the API key that requests must send as 'Authorization: Bearer KEY' (/health needs none).")
    var apiKeyFile: String?

    @Flag(help: "Serve Prometheus metrics at GET /metrics.")
    var metrics = false

    @Option(name: .customLong("queue"), help: "Most generations waiting for a slot before requests get 429.")
    var queue = 64

    @Option(name: .customLong("max-body"), help: "Largest request body in bytes (413 past it).")
    var maxBody = 8 << 20

    @Option(name: .customLong("prompt-chunk"), help: "Prompt tokens evaluated per step between decode steps (a long prompt never stalls other streams longer).")
    var promptChunk = 64

    @Option(name: .customLong("shutdown-grace"), help: "Seconds running generations may finish after SIGTERM before they are cancelled.")
    var shutdownGrace = 10.0

    @Option(name: .customLong("idle-timeout"), help: "Seconds a connection may send nothing while none of its requests runs (idle keep-alive, or a request arriving too slowly) before it is closed.")
    var idleTimeout = 60.0

    @OptionGroup var template: ChatTemplateOptions

    @OptionGroup(title: "Speculative decoding (greedy requests while they generate alone)") var speculation: SpeculationFlags

    func validate() throws {
        if !(1...64).contains(parallel) { throw ValidationError("--parallel must be in 1...64") }
        if !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535") }
        if queue < 1 { throw ValidationError("--queue must be at least 1") }
        if maxBody < 1024 { throw ValidationError("--max-body must be at least 1024") }
        if !(1...512).contains(promptChunk) { throw ValidationError("--prompt-chunk must be in 1...512") }
        if !(shutdownGrace >= 0 && shutdownGrace.isFinite) { throw ValidationError("--shutdown-grace must be a finite number >= 0") }
        if !(idleTimeout > 0 && idleTimeout <= 86400) { throw ValidationError("--idle-timeout must be in (0, 86400] seconds") }
        if template.system != nil { throw ValidationError("--system does not apply to serve (requests carry their own system message)") }
    }

    /// Each --lora as (name, directory): NAME=DIR, or DIR named by its last path component.
    func adapters() throws -> [(name: String, path: String)] {
        var out: [(String, String)] = []
        for spec in model.adapters.lora {
            let named = spec.split(separator: "=", maxSplits: 1).map(String.init)
            let (name, path) = named.count == 2 && !named[0].contains("/") ? (named[0], named[1]) : (URL(fileURLWithPath: spec).lastPathComponent, spec)
            guard !name.isEmpty, !path.isEmpty else { throw CLIError(message: "--lora \(spec): give NAME=DIR or DIR") }
            guard !out.contains(where: { $0.0 == name }) else { throw CLIError(message: "--lora \(spec): the name \(name) is given twice") }
            out.append((name, path))
        }
        return out
    }

    func run() throws {
        var settings = ServerSettings()
        settings.host = host
        settings.port = port
        settings.metrics = metrics
        settings.maxBodyBytes = maxBody
        settings.shutdownGrace = shutdownGrace
        settings.idleTimeout = idleTimeout
        if let f = apiKeyFile {
            guard let d = MappedFile.contents(of: f), let s = String(data: d, encoding: .utf8) else { fail(CLIError(message: "\(f): cannot read the API key file")) }
            let key = s.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !key.isEmpty, key.utf8.count <= 4096, !key.contains(where: { $0.isWhitespace }) else {
                fail(CLIError(message: "\(f): the API key must be one line of 1 to 4096 bytes without spaces"))
            }
            settings.apiKey = key
        }
        let loras: [(name: String, path: String)]
        do { loras = try adapters() } catch { fail(error) }
        let base = alias ?? URL(fileURLWithPath: model.model).deletingPathExtension().lastPathComponent
        if loras.contains(where: { $0.name == base }) { fail(CLIError(message: "--lora: the name \(base) is the base model's (give --alias)")) }
        // For tests of queueing, cancellation and shutdown: slow each step down (milliseconds).
        let delay = ProcessInfo.processInfo.environment["WREN_SERVE_STEP_DELAY_MS"].flatMap(Double.init).map { min(max($0, 0), 1000) / 1000 } ?? 0
        let engine = Engine(queueLimit: queue, stepDelay: delay)
        let server = WrenServer(settings: settings, engine: engine)
        let (model, parallel, promptChunk, template, speculation) = (self.model, self.parallel, self.promptChunk, self.template, self.speculation)
        let loader: @Sendable () throws -> [ServedModel] = {
            // For tests of the loading state (/health says 503): hold the load this long.
            if let ms = ProcessInfo.processInfo.environment["WREN_SERVE_LOAD_DELAY_MS"].flatMap(Int.init), ms > 0, ms <= 60_000 {
                usleep(UInt32(ms) * 1000)
            }
            var served: [ServedModel] = []
            for (i, (name, path)) in ([(base, "")] + loras).enumerated() {
                let (m, session) = try model.load(defaultContext: { min($0.contextLength, 2048) }, sequences: parallel, attach: false)
                if i > 0 { try m.attachAdapter(path: path, scale: model.adapters.scale(i - 1)) }
                let scheduler = try BatchScheduler(model: m, session: session, promptChunk: min(promptChunk, session.maxBatch), alignedReuse: true)
                if let o = try speculation.options(for: session) { try scheduler.enableSpeculation(o) }
                served.append(ServedModel(name: name, model: m, scheduler: scheduler, formatter: Result { try template.formatter(m) }))
            }
            return served
        }
        final class Outcome: @unchecked Sendable { var error: Error? }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let host = self.host, modelPath = self.model.model
        Task.detached {
            do {
                try await server.run(log: { stderrLine("wren serve: \($0)") }) { bound in
                    stderrLine("wren serve: listening on http://\(host):\(bound) (loading \(modelPath))")
                    engine.load(loader) { error in
                        if let error {
                            stderrLine("wren: error: \(error)")
                            Foundation.exit(1)
                        }
                        let ms = engine.models
                        stderrLine("wren serve: ready: \(ms.map(\.name).joined(separator: ", ")); \(parallel) slots × \(ms[0].scheduler.session.contextLength) tokens each")
                    }
                }
            } catch {
                outcome.error = error
            }
            done.signal()
        }
        done.wait()
        if let e = outcome.error { fail(CLIError(message: "cannot serve on \(host):\(port): \(e)")) }
        stderrLine("wren serve: stopped")
    }
}
