// `wren serve` end to end on loopback: the built binary on a tiny model, driven
// by a small HTTP client written here (so malformed requests, dropped
// connections and raw server-sent events are all in reach). Covers the
// endpoints, OpenAI's error shapes and status codes, streamed = whole text,
// parallel = sequential greedy texts, the API key, the queue limit (429), a
// client disconnect freeing its slot, /health while loading, and SIGTERM.

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 client over a socket: one request per connection.
struct HTTPReply {
    var status: Int
    var headers: [String: String]
    var body: String
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
    /// The `data:` payloads of a server-sent event stream.
    var events: [String] {
        body.components(separatedBy: "\n\n").compactMap { $0.hasPrefix("data: ") ? String($0.dropFirst(6)) : nil }
    }
}

func connectLoopback(_ port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard r == 0 else { close(fd); throw NSError(domain: "connect", code: Int(errno)) }
    var tv = timeval(tv_sec: 120, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
    var off = 0
    while off < bytes.count {
        let n = bytes[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { return }
        off += n
    }
}

func request(_ port: Int, _ method: String, _ path: String, body: String? = nil, headers: [String: String] = [:]) throws -> HTTPReply {
    var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    for (k, v) in headers { head += "\(k): \(v)\r\n" }
    if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
    return try rawRequest(port, Array((head + "\r\n" + (body ?? "")).utf8))
}

func rawRequest(_ port: Int, _ bytes: [UInt8]) throws -> HTTPReply {
    let fd = try connectLoopback(port)
    defer { close(fd) }
    sendAll(fd, bytes)
    var data: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        data += buf[..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { return HTTPReply(status: 0, headers: [:], body: text) }
    let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    let status = Int(lines[0].split(separator: " ")[1]) ?? 0
    var headers: [String: String] = [:]
    for l in lines.dropFirst() {
        if let c = l.firstIndex(of: ":") { headers[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces) }
    }
    var body = String(text[split.upperBound...])
    if headers["transfer-encoding"] == "chunked" {
        var out = "", rest = Substring(body)
        while let nl = rest.range(of: "\r\n"), let size = Int(rest[..<nl.lowerBound], radix: 16), size > 0 {
            let start = nl.upperBound
            let bytes = Array(rest[start...].utf8)
            out += String(decoding: bytes.prefix(size), as: UTF8.self)
            rest = Substring(String(decoding: bytes.dropFirst(size + 2), as: UTF8.self))
        }
        body = out
    }
    return HTTPReply(status: status, headers: headers, body: body)
}

/// A `wren serve` process.
final class ServeProcess: @unchecked Sendable {
    let process = Process()
    var port = 0
    let stderr = Pipe()
    /// What stderr said up to the port (the rest is left in the pipe).
    var startup = ""

    init(_ args: [String], environment: [String: String] = [:], waitReady: Bool = true) throws {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("wren")
        process.executableURL = exe
        process.arguments = ["serve", "--port", "0", "-t", "2"] + args
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // "listening on http://127.0.0.1:PORT" comes first.
        var seen = ""
        let deadline = Date().addingTimeInterval(60)
        while port == 0 && Date() < deadline {
            let d = stderr.fileHandleForReading.availableData
            if d.isEmpty { break }
            seen += String(decoding: d, as: UTF8.self)
            if let r = seen.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                port = Int(seen[r].split(separator: ":")[1]) ?? 0
            }
        }
        startup = seen
        guard port > 0 else { throw NSError(domain: "serve did not start: \(seen)", code: 1) }
        if waitReady {
            while Date() < deadline, (try? request(port, "GET", "/health"))?.status != 200 { usleep(50_000) }
        }
    }

    func stop() -> Int32 {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }
    deinit { if process.isRunning { process.terminate(); process.waitUntilExit() } }
}

final class ServerTests: XCTestCase {
    var dir = ""
    var modelPath = ""
    override func setUpWithError() throws {
        dir = tempDirectory(name)
        modelPath = "\(dir)/tiny.wren"
        try TinyModel(seed: 90, dim: 64, ff: 128).writeWren(to: modelPath, dtype: .q8_0)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    static let noEnd = #""logit_bias": {"0": -100, "1": -100, "2": -100}"#

    func completion(_ port: Int, _ prompt: String, max: Int = 12, extra: String = "") throws -> HTTPReply {
        try request(port, "POST", "/v1/completions",
                    body: #"{"prompt": "\#(prompt)", "max_tokens": \#(max), "temperature": 0, \#(ServerTests.noEnd)\#(extra)}"#)
    }

    func testEndpointsStreamingAndErrors() throws {
        let s = try ServeProcess(["-m", modelPath, "--chat-template", "chatml", "--max-body", "4096", "--metrics"])
        let p = s.port
        XCTAssertEqual(try request(p, "GET", "/health").json["status"] as? String, "ok")
        let models = try request(p, "GET", "/v1/models").json
        XCTAssertEqual(((models["data"] as? [[String: Any]])?.first?["id"]) as? String, "tiny")
        // Tokenize and back.
        let toks = try request(p, "POST", "/tokenize", body: #"{"content": "abc dog"}"#).json["tokens"] as? [Int]
        XCTAssertFalse(toks?.isEmpty ?? true)
        let back = try request(p, "POST", "/detokenize", body: #"{"tokens": \#(toks ?? [])}"#).json["content"] as? String
        XCTAssertEqual(back, "abc dog")
        // vLLM's conventions too, which lm-evaluation-harness's remote tokenizer uses.
        XCTAssertEqual(try request(p, "POST", "/tokenize", body: #"{"prompt": "abc dog", "add_special_tokens": false}"#).json["tokens"] as? [Int], toks)
        XCTAssertEqual(try request(p, "POST", "/detokenize", body: #"{"tokens": \#(toks ?? [])}"#).json["prompt"] as? String, "abc dog")
        let info = try request(p, "GET", "/tokenizer_info").json
        XCTAssertEqual(info["eos_token"] as? String, "<|im_end|>")
        XCTAssertNotNil(info["chat_template"] as? String)

        // Completions: whole and streamed give the same text at temperature 0.
        let whole = try completion(p, "abc", max: 12)
        XCTAssertEqual(whole.status, 200)
        let choice = (whole.json["choices"] as? [[String: Any]])?.first
        let text = try XCTUnwrap(choice?["text"] as? String)
        XCTAssertEqual(choice?["finish_reason"] as? String, "length")
        XCTAssertEqual((whole.json["usage"] as? [String: Int])?["completion_tokens"], 12)
        let streamed = try completion(p, "abc", max: 12, extra: #", "stream": true, "stream_options": {"include_usage": true}"#)
        XCTAssertEqual(streamed.headers["content-type"], "text/event-stream")
        XCTAssertEqual(streamed.events.last, "[DONE]")
        var joined = ""
        for e in streamed.events.dropLast() {
            let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any])
            for c in o["choices"] as? [[String: Any]] ?? [] { joined += c["text"] as? String ?? "" }
        }
        XCTAssertEqual(joined, text)
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(streamed.events[streamed.events.count - 2].utf8)) as? [String: Any])
        XCTAssertTrue(streamed.events[streamed.events.count - 2].contains("\"usage\""), "include_usage: a last chunk with usage")

        // Chat, whole and streamed.
        let chatBody = #"{"messages": [{"role": "user", "content": "abc"}], "max_tokens": 10, "temperature": 0, \#(ServerTests.noEnd)"#
        let chat = try request(p, "POST", "/v1/chat/completions", body: chatBody + "}")
        XCTAssertEqual(chat.status, 200, chat.body)
        let message = ((chat.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
        let chatStream = try request(p, "POST", "/v1/chat/completions", body: chatBody + #", "stream": true}"#)
        var deltas = ""
        for e in chatStream.events.dropLast() {
            let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any])
            XCTAssertEqual(o["object"] as? String, "chat.completion.chunk")
            for c in o["choices"] as? [[String: Any]] ?? [] { deltas += (c["delta"] as? [String: Any])?["content"] as? String ?? "" }
        }
        XCTAssertEqual(deltas, message)

        // Echo with logprobs: the prompt's tokens, the first without a log-probability.
        let echo = try completion(p, "abc dog", max: 1, extra: #", "echo": true, "logprobs": 2"#)
        let lp = try XCTUnwrap(((echo.json["choices"] as? [[String: Any]])?.first?["logprobs"]) as? [String: Any])
        let tokenLPs = try XCTUnwrap(lp["token_logprobs"] as? [Any])
        XCTAssertEqual(tokenLPs.count, (toks?.count ?? 0) + 1)
        XCTAssertTrue(tokenLPs[0] is NSNull)
        XCTAssertTrue(tokenLPs.dropFirst().allSatisfy { ($0 as? Double).map { $0 <= 0 } ?? false })
        // The last (generated) token's log-probability through the decode path equals the same token
        // scored as part of an echoed prompt (the prompt path's kernels): within 1e-4 (f32 sums in another order).
        let gen = try XCTUnwrap(tokenLPs.last as? Double)
        let full = try XCTUnwrap((((echo.json["choices"] as? [[String: Any]])?.first?["text"]) as? String))
        let rescored = try completion(p, full, max: 0, extra: #", "echo": true, "logprobs": 0"#)
        let again = (((rescored.json["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any])?.last as? Double
        XCTAssertEqual(try XCTUnwrap(again), gen, accuracy: 1e-4)

        // Errors: status, OpenAI's shape, the field named.
        let bad: [(String, Int, String?)] = [
            ("{", 400, nil), ("[1]", 400, nil), (#"{"prompt": 5}"#, 400, "prompt"),
            (#"{"prompt": "a", "temperature": "hot"}"#, 400, "temperature"), (#"{"prompt": "a", "temperature": 3}"#, 400, "temperature"),
            (#"{"prompt": "a", "max_tokens": 1.5}"#, 400, "max_tokens"), (#"{"prompt": "a", "wat": 1}"#, 400, "wat"),
            (#"{"prompt": "a", "prompt": "b"}"#, 400, "prompt"), (#"{"prompt": [1, 2, 64]}"#, 400, "prompt"),
            (#"{"prompt": "a", "model": "nope"}"#, 404, "model"), (#"{"prompt": "a", "n": 0}"#, 400, "n"),
            (#"{"prompt": "a", "stop": [1]}"#, 400, "stop"), (#"{"prompt": "a", "logit_bias": {"999": 1}}"#, 400, "logit_bias"),
            (#"{"prompt": "\#(String(repeating: "ab ", count: 200))"}"#, 400, "prompt"),   // longer than the context
        ]
        for (body, status, field) in bad {
            let r = try request(p, "POST", "/v1/completions", body: body)
            XCTAssertEqual(r.status, status, body)
            let err = r.json["error"] as? [String: Any]
            XCTAssertNotNil(err?["message"] as? String, body)
            XCTAssertNotNil(err?["type"] as? String, body)
            if let field { XCTAssertEqual(err?["param"] as? String, field, body) }
        }
        let schema = try request(p, "POST", "/v1/chat/completions", body: #"{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}}"#)
        XCTAssertEqual(schema.status, 400)
        XCTAssertEqual((schema.json["error"] as? [String: Any])?["param"] as? String, "response_format")
        let chatBad = try request(p, "POST", "/v1/chat/completions", body: #"{"messages": [{"role": "robot", "content": "x"}]}"#)
        XCTAssertEqual(chatBad.status, 400)
        XCTAssertEqual((chatBad.json["error"] as? [String: Any])?["param"] as? String, "messages[0].role")
        XCTAssertEqual(try request(p, "POST", "/v1/completions", body: #"{"prompt": "\#(String(repeating: "a", count: 5000))"}"#).status, 413)
        XCTAssertEqual(try request(p, "GET", "/v1/nothing").status, 404)
        // Garbage instead of HTTP: the server answers 400 or closes, and keeps serving.
        _ = try? rawRequest(p, Array("\u{01}\u{02} NOT HTTP\r\n\r\n".utf8))
        XCTAssertEqual(try request(p, "GET", "/health").status, 200)
        let metrics = try request(p, "GET", "/metrics").body
        XCTAssertTrue(metrics.contains("wren_requests_total{endpoint=\"/v1/completions\",status=\"400\"}"), metrics)
        XCTAssertTrue(metrics.contains("wren_time_to_first_token_seconds_count"))
        XCTAssertEqual(s.stop(), 0)
    }

    /// Four clients at once get the texts four sequential ones do (greedy, and seeded sampling).
    func testParallelEqualsSequential() throws {
        let s = try ServeProcess(["-m", modelPath, "--parallel", "4", "--prompt-chunk", "16", "--idle-timeout", "1"])
        // A request that trickles in (half the headers, then nothing) is cut off after the idle timeout.
        let slow = try connectLoopback(s.port)
        sendAll(slow, Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\n".utf8))
        let t0 = Date()
        var byte: UInt8 = 0
        let n = recv(slow, &byte, 1, 0)
        XCTAssertLessThanOrEqual(n, 0, "the server closed the connection")
        XCTAssertLessThan(Date().timeIntervalSince(t0), 10)
        close(slow)
        let prompts = ["abc", "abc dog cat", "the cat sat on the mat and the dog", "xyz"]
        @Sendable func body(_ i: Int) -> String {
            #"{"prompt": "\#(prompts[i])", "max_tokens": 16, "temperature": \#(i % 2 == 0 ? 0 : 0.9), "seed": \#(i), \#(ServerTests.noEnd)}"#
        }
        let sequential = try (0..<4).map { i in try request(s.port, "POST", "/v1/completions", body: body(i)).body }
        final class Box: @unchecked Sendable { var replies = [String](repeating: "", count: 4) }
        let box = Box()
        let port = s.port
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            box.replies[i] = (try? request(port, "POST", "/v1/completions", body: body(i)).body) ?? ""
        }
        func texts(_ r: String) -> String? { ((try? JSONSerialization.jsonObject(with: Data(r.utf8)) as? [String: Any])?["choices"] as? [[String: Any]])?.first?["text"] as? String }
        for i in 0..<4 {
            XCTAssertNotNil(texts(sequential[i]), sequential[i])
            XCTAssertEqual(texts(box.replies[i]), texts(sequential[i]), "prompt \(i)")
        }
        // n = 2 with a seed: two different samples, reproducible.
        let n2 = #"{"prompt": "abc", "max_tokens": 12, "n": 2, "seed": 7, "temperature": 1, \#(ServerTests.noEnd)}"#
        let a = try request(s.port, "POST", "/v1/completions", body: n2).json["choices"] as? [[String: Any]]
        let b = try request(s.port, "POST", "/v1/completions", body: n2).json["choices"] as? [[String: Any]]
        XCTAssertEqual(a?.count, 2)
        XCTAssertEqual(a?.map { $0["text"] as? String }, b?.map { $0["text"] as? String })
        XCTAssertNotEqual(a?[0]["text"] as? String, a?[1]["text"] as? String)
        XCTAssertEqual(s.stop(), 0)
    }

    func testKeyQueueDisconnectAndShutdown() throws {
        let keyFile = "\(dir)/key"
        try "s3cret-key\n".write(toFile: keyFile, atomically: true, encoding: .utf8)
        // Steps slowed to 10 ms, so the jobs below are still queued or running, however fast the machine.
        let s = try ServeProcess(["-m", modelPath, "--parallel", "1", "--queue", "8", "--api-key-file", keyFile, "--metrics", "--shutdown-grace", "1", "-c", "120"],
                                 environment: ["WREN_SERVE_STEP_DELAY_MS": "10"])
        let p = s.port
        let auth = ["Authorization": "Bearer s3cret-key"]
        XCTAssertEqual(try request(p, "GET", "/health").status, 200, "no key needed")
        let page = try request(p, "GET", "/")
        XCTAssertEqual(page.status, 200, "the chat page needs no key (its requests carry it)")
        XCTAssertEqual(page.headers["content-type"], "text/html; charset=utf-8")
        XCTAssertTrue(page.body.contains("/v1/chat/completions"))
        XCTAssertFalse(page.body.contains("innerHTML"), "replies are set as text, never parsed as HTML")
        XCTAssertEqual(try request(p, "GET", "/v1/models").status, 401)
        XCTAssertEqual(try request(p, "GET", "/v1/models", headers: ["Authorization": "Bearer s3cret-kez"]).status, 401)
        XCTAssertEqual(try request(p, "GET", "/v1/models", headers: ["Authorization": "Bearer s3cret-key-longer"]).status, 401)
        XCTAssertEqual((try request(p, "GET", "/v1/models", headers: ["Authorization": "Bearer s3cret-key-longer"]).json["error"] as? [String: Any])?["code"] as? String,
                       "invalid_api_key")
        XCTAssertEqual(try request(p, "GET", "/v1/models", headers: auth).status, 200)

        // One slot, a queue of 8 jobs: a first request of 8 fills it, a second is told to come back.
        let long = #"{"prompt": "abc", "max_tokens": 100, "n": 8, "seed": 1, \#(ServerTests.noEnd)}"#
        var head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-key\r\nContent-Type: application/json\r\n"
        head += "Content-Length: \(long.utf8.count)\r\n\r\n"
        let first = try connectLoopback(p)
        sendAll(first, Array((head + long).utf8))
        usleep(50_000)
        let second = try request(p, "POST", "/v1/completions", body: long, headers: auth)
        XCTAssertEqual(second.status, 429, second.body)
        XCTAssertNotNil(second.headers["retry-after"])
        XCTAssertEqual((second.json["error"] as? [String: Any])?["code"] as? String, "queue_full")
        // The client leaves without reading: its generations are cancelled and the slot frees.
        close(first)
        var busy = "?"
        for _ in 0..<50 {
            usleep(100_000)
            let m = try request(p, "GET", "/metrics", headers: auth).body
            busy = m.components(separatedBy: "\n").first { $0.hasPrefix("wren_slots_busy ") } ?? "?"
            if busy == "wren_slots_busy 0", m.contains("wren_queue_depth 0") { break }
        }
        XCTAssertEqual(busy, "wren_slots_busy 0")
        let after = try request(p, "GET", "/metrics", headers: auth).body
        XCTAssertTrue(after.contains("wren_generations_total{reason=\"cancelled\"} 8"), after)
        let generated = after.components(separatedBy: "\n").first { $0.hasPrefix("wren_generated_tokens_total ") }
        XCTAssertLessThan(Int(generated?.split(separator: " ")[1] ?? "") ?? 800, 400, "the abandoned generations did not run to their end")

        // SIGTERM while a stream runs: the stream ends properly, the server exits 0.
        final class Box: @unchecked Sendable { var reply: HTTPReply? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        Thread {
            box.reply = try? request(p, "POST", "/v1/completions",
                                     body: #"{"prompt": "abc", "max_tokens": 110, "stream": true, \#(ServerTests.noEnd)}"#, headers: auth)
            done.signal()
        }.start()
        usleep(300_000)
        let t0 = Date()
        XCTAssertEqual(s.stop(), 0)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 10)
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(box.reply?.events.last, "[DONE]")
    }

    /// A --lora NAME=DIR is served as model NAME: its greedy text is `wren run --lora`'s, not the base's.
    func testLoRAServedByName() throws {
        let d = "\(dir)/adapter"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let model = try LlamaModel(path: modelPath)
        var factors: [Int: [String: PEFTFactor]] = [:]
        var rng = SeededRNG(seed: 9)
        for l in 0..<model.config.blockCount {
            for (mod, p) in [("q_proj", Projection.q), ("down_proj", .down)] {
                let w = p.matrix(model.layers[l])
                factors[l, default: [:]][mod] = PEFTFactor(a: (0..<(2 * w.cols)).map { _ in rng.normal() }, b: (0..<(w.rows * 2)).map { _ in rng.normal() },
                                                           rank: 2, inFeatures: w.cols, outFeatures: w.rows)
            }
        }
        try PEFTAdapter(config: PEFTConfig(rank: 2, alpha: 4, dropout: 0, targetModules: ["q_proj", "down_proj"]), factors: factors).save(to: d)
        let s = try ServeProcess(["-m", modelPath, "--lora", "ad=\(d)", "--parallel", "2"])
        let names = (try request(s.port, "GET", "/v1/models").json["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
        XCTAssertEqual(names, ["tiny", "ad"])
        func text(_ model: String) throws -> String? {
            let r = try request(s.port, "POST", "/v1/completions",
                                body: #"{"model": "\#(model)", "prompt": "abc", "max_tokens": 12, "temperature": 0, \#(ServerTests.noEnd)}"#)
            return ((r.json["choices"] as? [[String: Any]])?.first?["text"]) as? String
        }
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("wren")
        func cli(_ extra: [String]) throws -> String {
            let p = Process()
            p.executableURL = exe
            p.arguments = ["run", "-m", modelPath, "-p", "abc", "-n", "12", "--temp", "0", "-t", "2", "--logit-bias", "0=-inf",
                           "--logit-bias", "1=-inf", "--logit-bias", "2=-inf"] + extra
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        }
        let adapted = try XCTUnwrap(try text("ad"))
        XCTAssertEqual(adapted, try cli(["--lora", d]))
        XCTAssertEqual(try text("tiny"), try cli([]))
        XCTAssertNotEqual(adapted, try text("tiny"))
        XCTAssertEqual(s.stop(), 0)
    }

    /// --draft: a greedy request generating alone is speculated and gets the plain server's text.
    func testSpeculativeServerIsExact() throws {
        let body = #"{"prompt": "abc dog", "max_tokens": 30, "temperature": 0, \#(ServerTests.noEnd)}"#
        let plain = try ServeProcess(["-m", modelPath])
        let want = try request(plain.port, "POST", "/v1/completions", body: body).json
        XCTAssertEqual(plain.stop(), 0)
        let spec = try ServeProcess(["-m", modelPath, "--draft", modelPath, "--draft-p-min", "0", "--draft-n", "5", "--metrics"])
        let got = try request(spec.port, "POST", "/v1/completions", body: body).json
        let m = try request(spec.port, "GET", "/metrics").body
        let accepted = m.components(separatedBy: "\n").first { $0.hasPrefix("wren_speculative_accepted_total ") }
        XCTAssertGreaterThan(Int(accepted?.split(separator: " ")[1] ?? "") ?? 0, 20, "the same weights as draft: most drafts kept")
        XCTAssertEqual(spec.stop(), 0)
        let text = { (o: [String: Any]) in ((o["choices"] as? [[String: Any]])?.first?["text"]) as? String }
        XCTAssertNotNil(text(want))
        XCTAssertEqual(text(got), text(want))
    }

    func testHealthWhileLoadingAndBadStarts() throws {
        let s = try ServeProcess(["-m", modelPath], environment: ["WREN_SERVE_LOAD_DELAY_MS": "1500"], waitReady: false)
        let h = try request(s.port, "GET", "/health")
        XCTAssertEqual(h.status, 503)
        XCTAssertEqual(h.json["status"] as? String, "loading")
        XCTAssertEqual(try request(s.port, "POST", "/v1/completions", body: #"{"prompt": "a"}"#).status, 503)
        var ready = false
        for _ in 0..<100 where !ready { usleep(50_000); ready = (try? request(s.port, "GET", "/health"))?.status == 200 }
        XCTAssertTrue(ready)
        XCTAssertEqual(s.stop(), 0)
        // A model that cannot load ends the server with exit 1 and the file named.
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: "\(dir)/bad.wren"))
        let bad = try ServeProcess(["-m", "\(dir)/bad.wren"], waitReady: false)
        bad.process.waitUntilExit()
        XCTAssertEqual(bad.process.terminationStatus, 1)
        let err = bad.startup + String(decoding: bad.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(err.contains("bad.wren"), err)
    }
}
