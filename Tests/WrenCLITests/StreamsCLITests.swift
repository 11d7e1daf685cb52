// The binary against hostile surroundings: a full, closed or vanished stdout, a
// closed stderr or stdin, a FIFO given as the model, a device given as the
// output, a chat template inside the model that would crash or hang, and raw
// invalid UTF-8 inside a --jsonl request. Each ends cleanly (documented exit
// code, one-line message) and one bad --jsonl request never affects the next.

import Foundation
import TestSupport
import WrenFormat
import XCTest

final class StreamsCLITests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    var wren: String { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("wren").path }

    /// Runs a bash command line (for redirections a Process cannot express); $W is the binary.
    func sh(_ script: String) throws -> RunResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", script]
        p.environment = ProcessInfo.processInfo.environment.merging(["W": wren], uniquingKeysWith: { $1 })
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    func model(template: String? = nil) throws -> String {
        var m = TinyModel(seed: 5)
        if let template { m.tokenizer.chatTemplate = template }
        let w = dir + "/tiny.wren"
        try m.writeWren(to: w, dtype: .q8_0)
        return w
    }

    func testBrokenStandardStreams() throws {
        let m = try model()
        let run = "\"$W\" detokenize -m \(m) 10 11 12 13"
        var r = try sh("\(run) > /dev/full")
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("writing to standard output failed: No space left on device"), r.stderr)
        r = try sh("\(run) >&-")
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("standard output failed"), r.stderr)
        // The reader went away: like `head`'s upstream, a quiet exit 0.
        // 300,000 ids decode to far more than a pipe buffer holds, so the write really meets EPIPE.
        r = try sh("yes 10 | head -n 300000 | \"$W\" detokenize -m \(m) | head -c 1 >/dev/null; echo \"status ${PIPESTATUS[2]}\"")
        XCTAssertEqual(r.stdout, "status 0\n", r.stderr)
        XCTAssertEqual(r.stderr, "")
        r = try sh("\(run) 2>&-; echo \"status $?\"")
        XCTAssertTrue(r.stdout.hasSuffix("status 0\n"), r.stdout)
        r = try sh("\"$W\" run -m \(m) -n 3 <&-")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("the prompt is empty"), r.stderr)
        r = try sh("\"$W\" inspect \(m) --json > /dev/full")
        XCTAssertEqual(r.status, 1, "print() goes through the same checks")
    }

    func testFIFOModelAndDeviceOutput() throws {
        let fifo = dir + "/model.fifo"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let start = Date()
        var r = try runWren(["run", "-m", fifo, "-p", "hi"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("not a regular file"), r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        let g = dir + "/tiny.gguf"
        TinyModel(seed: 5).writeGGUF(to: g, dtype: .q8_0)
        r = try runWren(["convert", g, "-o", "/dev/null", "--force"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("/dev/null: output: is a device"), r.stderr)
        var st = stat()
        XCTAssertEqual(lstat("/dev/null", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFCHR)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "/dev").filter { $0.contains(TempFiles.marker) }, [])
    }

    /// A template that recurses forever errs on its own request; the next request is served.
    func testHostileTemplateFailsOnlyItsRequest() throws {
        let m = try model(template: "{% macro f(n) %}{{ f(n+1) }}{% endmacro %}{{ f(0) }}")
        let input = #"{"messages":[{"role":"user","content":"hi"}],"n_predict":2}"# + "\n"
            + #"{"prompt":"ab","n_predict":2}"# + "\n"
        var r = try runWren(["run", "-m", m, "--jsonl"], stdin: input)
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2, r.stdout)
        XCTAssertTrue(lines[0].contains(#""error":"line 1: chat template line 1: refused by the sandbox"#), lines[0])
        XCTAssertTrue(lines[1].contains(#""tokens""#), lines[1])
        // --chat reports it as one line and exit 1.
        r = try runWren(["run", "-m", m, "--chat", "-p", "hi"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("wren: error: chat template line 1: refused by the sandbox"), r.stderr)
    }

    func testInvalidUTF8InsideJSONL() throws {
        let m = try model()
        var bytes = Array(#"{"prompt":"a"#.utf8) + [0xff, 0xfe] + Array("\"}\n".utf8)
        bytes += Array(#"{"prompt":"ab","n_predict":1}"#.utf8) + [0x0a]
        let r = try runWren(["run", "-m", m, "--jsonl"], stdinBytes: bytes)
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2, r.stdout)
        XCTAssertEqual(lines.first, #"{"error":"line 1: invalid UTF-8 (byte 12)"}"#)
        XCTAssertTrue(lines.last?.contains(#""tokens""#) ?? false)
    }

    func testNonsenseNumbersAreRefusedUpFront() throws {
        let m = try model()
        for (args, fragment) in [(["--logit-bias", "5=nan"], "logit bias for token 5"), (["--logit-bias", "99999=1"], "not a token id"),
                                 (["--logit-bias", "5=inf"], "logit bias for token 5")] {
            let r = try runWren(["run", "-m", m, "-p", "ab"] + args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(fragment), "\(args): \(r.stderr)")
        }
        let r = try runWren(["logits", "-m", m, "-p", "ab", "--rope-freq-base", "inf"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--rope-freq-base"), r.stderr)
    }
}
