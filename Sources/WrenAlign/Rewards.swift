// Where RAFT's rewards come from: a learned reward model (WrenTuning's
// RewardScorer) or any program. The program (`--reward-cmd`, run through
// `sh -c`) lives for the whole run: it reads JSONL {"prompt", "response"} on
// stdin and answers one {"reward": r} line per request, flushed. A program that
// exits, hangs past the timeout or answers anything but a number stops the run
// with an error that quotes it (its stderr tail too); the checkpoint is left as
// it was.

import Foundation
import WrenEngine
import WrenFormat
import WrenTokenizer
import WrenTuning

public struct RewardError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Scores (prompt, response) pairs; −∞ for a response that must never be kept.
public protocol RewardSource: AnyObject {
    /// `prompt`: the prompt's text; `messages`: the conversation it came from, if any.
    func reward(prompt: String, messages: [ChatMessage]?, system: String?, response: String) throws -> Double
}

extension RewardScorer: RewardSource {
    public func reward(prompt: String, messages: [ChatMessage]?, system: String?, response: String) throws -> Double {
        let ids = try messages.map { try tokens(messages: $0 + [ChatMessage(role: "assistant", content: response)], system: system) }
            ?? tokens(prompt: prompt, response: response)
        return try reward(ids: ids)
    }
}

/// A long-lived scoring program.
public final class RewardCommand: RewardSource, @unchecked Sendable {
    public let command: String
    let process = Process()
    let input = Pipe(), output = Pipe(), errors = Pipe()
    var pending: [UInt8] = []
    /// Seconds to wait for one answer.
    public let timeout: Double
    /// The last bytes the program wrote to stderr (for error messages).
    var errorTail = Data()
    let errorLock = NSLock()

    public init(_ command: String, timeout: Double = 600) throws {
        self.command = command
        self.timeout = timeout
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        errors.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.errorLock.lock()
            self.errorTail.append(d)
            if self.errorTail.count > 2000 { self.errorTail = self.errorTail.suffix(2000) }
            self.errorLock.unlock()
        }
        // The program starts with SIGPIPE at its default, whatever this process does with it
        // (the CLI ignores it; an ignored signal would be inherited).
        let old = signal(SIGPIPE, SIG_DFL)
        defer { signal(SIGPIPE, old) }
        do { try process.run() } catch { throw RewardError(message: "--reward-cmd: cannot start /bin/sh: \(error)") }
    }

    deinit { close() }

    /// Ends the program (its stdin closed, then a kill if it lingers).
    public func close() {
        guard process.isRunning else { return }
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(2)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { process.terminate() }
    }

    func failure(_ what: String) -> RewardError {
        usleep(50_000)   // let the stderr handler catch the last words
        errorLock.lock()
        let tail = String(decoding: errorTail, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        errorLock.unlock()
        var status = ""
        if !process.isRunning {
            let s = process.terminationStatus
            status = s == 127 ? " (exit status 127: the command was not found)" : s == 126 ? " (exit status 126: the command is not executable)"
                : " (exit status \(s))"
        }
        return RewardError(message: "--reward-cmd \"\(command)\": \(what)\(status)" + (tail.isEmpty ? "" : "; its stderr ends: \(tail.suffix(400))"))
    }

    public func reward(prompt: String, messages: [ChatMessage]?, system: String?, response: String) throws -> Double {
        let line = try JSONSerialization.data(withJSONObject: ["prompt": prompt, "response": response], options: [.sortedKeys]) + Data("\n".utf8)
        let fd = input.fileHandleForWriting.fileDescriptor
        // A program that has exited must be an error here, not a SIGPIPE that ends the run.
        let old = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, old) }
        try line.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; throw failure("the program stopped reading its input") }
                off += n
            }
        }
        let answer = try readLine()
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(answer.utf8))) as? [String: Any] else {
            throw failure("answered \"\(answer.prefix(200))\", not a JSON object {\"reward\": number}")
        }
        guard let v = obj["reward"] else { throw failure("answered \"\(answer.prefix(200))\" without \"reward\"") }
        if v is NSNull { return -.infinity }   // the scorer rejects the response
        guard let n = v as? NSNumber, !isJSONBool(v) else {
            throw failure("answered \"\(answer.prefix(200))\": \"reward\" must be a number (or null to reject)")
        }
        let r = n.doubleValue
        guard !r.isNaN, r != .infinity else { throw failure("answered a reward of \(r)") }
        return r
    }

    /// The next line of the program's output, within the timeout.
    func readLine() throws -> String {
        let fd = output.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let nl = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeFirst(nl + 1)
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                return line
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw failure("gave no answer within \(Int(timeout)) s") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(min(left, 1) * 1000))
            if r < 0 && errno != EINTR { throw failure("cannot read its output (errno \(errno))") }
            if r <= 0 { continue }
            var buf = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &buf, buf.count)
            if n < 0 { if errno == EINTR { continue }; throw failure("cannot read its output (errno \(errno))") }
            if n == 0 {
                process.waitUntilExit()
                throw failure("exited before answering")
            }
            pending += buf[..<n]
        }
    }
}
