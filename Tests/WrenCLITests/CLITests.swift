// The `wren` binary end to end: exit codes, stdout/stderr split, refusal to
// overwrite, JSON output, verify naming the bad tensor.

import Foundation
import TestSupport
import WrenFormat
import XCTest

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the built `wren` (next to the test bundle) with `args` and optional stdin.
func runWren(_ args: [String], stdin: String? = nil) throws -> RunResult {
    try runWren(args, stdinBytes: stdin.map { Array($0.utf8) })
}

/// Same, with raw stdin bytes (for invalid UTF-8).
func runWren(_ args: [String], stdinBytes: [UInt8]?) throws -> RunResult {
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("wren")
    let p = Process()
    p.executableURL = exe
    p.arguments = args
    let out = Pipe(), err = Pipe(), inp = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = inp
    try p.run()
    if let stdinBytes { inp.fileHandleForWriting.write(Data(stdinBytes)) }
    try inp.fileHandleForWriting.close()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

final class CLITests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testConvertInspectVerifyExport() throws {
        let g = dir + "/tiny.gguf", w = dir + "/tiny.wren"
        TinyModel(seed: 8).writeGGUF(to: g, dtype: .q4_1)
        var r = try runWren(["convert", g, "-o", w])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "", "convert prints nothing on stdout")
        XCTAssertTrue(r.stderr.contains("[20/20 tensors]"), r.stderr)
        XCTAssertTrue(r.stderr.contains("MB/s"), r.stderr)

        r = try runWren(["inspect", w, "--json", "--verify"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(j["verify"] as? String, "ok")
        XCTAssertEqual((j["hyperparameters"] as! [String: Any])["block_count"] as? Int, 2)
        XCTAssertEqual((j["tokenizer"] as! [String: Any])["tokens"] as? Int, 64)
        XCTAssertEqual((j["tensors"] as! [[String: Any]]).count, 20)

        r = try runWren(["inspect", w])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.contains("blk.1.ffn_down.weight"), r.stdout)
        XCTAssertTrue(r.stdout.contains("tokenizer:     gpt2 (pre smollm), 64 tokens"), r.stdout)

        r = try runWren(["inspect", g, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any])["format"] as? String, "gguf")

        let hf = dir + "/hf"
        r = try runWren(["export", w, "-o", hf])
        XCTAssertEqual(r.status, 0, r.stderr)
        for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: hf + "/" + f), f)
        }
        r = try runWren(["convert", hf, "-o", dir + "/back.wren", "--compress"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let a = try WrenFile(path: w), b = try WrenFile(path: dir + "/back.wren")
        XCTAssertEqual(a.tensors.map(\.checksum), b.tensors.map { XXH64.hash(b.tensor(at: b.tensors.firstIndex(of: $0)!).data) })
    }

    func testErrorsAreOneLineAndExitNonZero() throws {
        let g = dir + "/tiny.gguf", w = dir + "/tiny.wren"
        TinyModel().writeGGUF(to: g, dtype: .f16)
        XCTAssertEqual(try runWren(["convert", g, "-o", w]).status, 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: w))

        var r = try runWren(["convert", g, "-o", w, "--type", "q8_0"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "wren: error: \(w): output exists (use --force to replace it)\n")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: w)), before, "the existing file must be untouched")

        r = try runWren(["convert", dir + "/nope.gguf", "-o", dir + "/x.wren"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("wren: error: \(dir)/nope.gguf: open failed: No such file or directory"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.wren"))

        r = try runWren(["convert", g, "-o", dir + "/x.wren", "--type", "q7_k"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--type"), r.stderr)

        r = try runWren(["convert", g, "-o", dir + "/x.wren", "--frobnicate"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("frobnicate"), r.stderr)

        // Flip a byte in the last tensor: open still works, --verify names the tensor.
        var bytes = [UInt8](before)
        bytes[bytes.count - 3] ^= 1
        let bad = dir + "/bad.wren"
        try Data(bytes).write(to: URL(fileURLWithPath: bad))
        r = try runWren(["inspect", bad, "--verify"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("wren: error: \(bad): checksum mismatch in tensor output_norm.weight"), r.stderr)
        XCTAssertEqual(r.stderr.filter { $0 == "\n" }.count, 1, "one line")

        try Data("hello".utf8).write(to: URL(fileURLWithPath: bad))
        r = try runWren(["inspect", bad])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("not a .wren file"), r.stderr)
    }
}

final class TokenizeCLITests: XCTestCase {
    func model() throws -> String {
        try requireRealModel(inDebug: true)
    }

    func testTokenizeAndDetokenize() throws {
        let m = try model()
        var r = try runWren(["tokenize", "-m", m, "--json", "Hello world"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "[19556, 905]\n")
        r = try runWren(["tokenize", "-m", m, "--json"], stdin: "<|im_start|>user\n")
        XCTAssertEqual(r.stdout, "[1, 4093, 198]\n")
        r = try runWren(["tokenize", "-m", m, "--json", "--no-special", "<|im_start|>"])
        XCTAssertNotEqual(r.stdout, "[1]\n")
        r = try runWren(["tokenize", "-m", m, "Hi"])
        XCTAssertEqual(r.stdout, "26843\t\"Hi\"\n")
        r = try runWren(["detokenize", "-m", m], stdin: "[1, 4093, 198, 19556, 905]")
        XCTAssertEqual(r.stdout, "<|im_start|>user\nHello world")
        r = try runWren(["detokenize", "-m", m, "--skip-special", "1", "19556"])
        XCTAssertEqual(r.stdout, "Hello")
        r = try runWren(["detokenize", "-m", m, "99999999"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("outside the vocabulary"), r.stderr)
        r = try runWren(["detokenize", "-m", m, "12x"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("not a token id: \"12x\""), r.stderr)
    }

    func testInvalidUTF8OnStdin() throws {
        let m = try model()
        let r = try runWren(["tokenize", "-m", m], stdinBytes: [0x66, 0xFF, 0x67])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("invalid UTF-8"))
    }
}

final class RunCLITests: XCTestCase {
    var dir = ""
    var model = ""
    override func setUpWithError() throws {
        dir = tempDirectory(name)
        model = dir + "/tiny.wren"
        try TinyModel(seed: 3).writeWren(to: model, dtype: .q8_0)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testRunFromArgumentAndStdinIsDeterministic() throws {
        let a = try runWren(["run", "-m", model, "-p", "abc", "-n", "10", "--temp", "0"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try runWren(["run", "-m", model, "-n", "10", "--temp", "0"], stdin: "abc")
        XCTAssertEqual(a.stdout, b.stdout, "prompt from stdin = prompt from -p")
        XCTAssertEqual(a.stderr, "", "nothing on stderr without --verbose")
        let s1 = try runWren(["run", "-m", model, "-p", "abc", "-n", "10", "--seed", "7", "--temp", "1.2"])
        let s2 = try runWren(["run", "-m", model, "-p", "abc", "-n", "10", "--seed", "7", "--temp", "1.2"])
        XCTAssertEqual(s1.stdout, s2.stdout, "same seed, same text")
        let v = try runWren(["run", "-m", model, "-p", "abc", "-n", "4", "--verbose"])
        XCTAssertTrue(v.stderr.contains("tokens/s"), v.stderr)
    }

    func testJSONL() throws {
        let input = """
        {"prompt": "abc", "n_predict": 5, "temperature": 0}
        not json
        {"n_predict": 3}
        {"prompt": "abc", "n_predict": 5, "temperature": 0, "top_p": 2}
        {"prompt": "abc", "n_predict": 5, "temperature": 0, "stop": ["zzzz"]}

        """
        let r = try runWren(["run", "-m", model, "--jsonl"], stdin: input)
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines.count, 5)
        XCTAssertEqual((lines[0]["tokens"] as! [Int]).count, 5)
        XCTAssertEqual(lines[0]["stop_reason"] as? String, "length")
        XCTAssertNotNil(lines[0]["timings"] as? [String: Any])
        XCTAssertEqual(lines[1]["error"] as? String, "line 2: not a JSON object")
        XCTAssertEqual(lines[2]["error"] as? String, "line 3: missing \"prompt\" (or \"messages\")")
        XCTAssertTrue((lines[3]["error"] as? String ?? "").hasPrefix("line 4: top-p must be in (0, 1]"))
        XCTAssertEqual(lines[4]["text"] as? String, lines[0]["text"] as? String)
    }

    /// Speculation from the command line: the same greedy text with every drafter,
    /// statistics in --verbose and in --jsonl timings, a clear refusal of a draft
    /// model with another vocabulary and of conflicting flags.
    func testSpeculationFlags() throws {
        let base = ["run", "-m", model, "-p", "abcabcabc", "-n", "24", "--temp", "0", "--logit-bias", "0=-inf", "--logit-bias", "2=-inf"]
        let plain = try runWren(base)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let draft = dir + "/draft.wren"
        try TinyModel(seed: 9, layers: 1).writeWren(to: draft, dtype: .q4_1)
        for extra in [["--draft", draft, "--draft-n", "3"], ["--lookup-ngram", "2"], ["--draft-layers", "1", "--draft-p-min", "0"]] {
            let r = try runWren(base + extra + ["--verbose"])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(r.stdout, plain.stdout, "\(extra)")
            XCTAssertTrue(r.stderr.contains("speculation:") && r.stderr.contains("target passes"), r.stderr)
        }
        let j = try runWren(["run", "-m", model, "--jsonl", "--lookup-ngram", "2"], stdin: "{\"prompt\": \"abcabc\", \"n_predict\": 6, \"temperature\": 0}\n")
        let obj = try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as! [String: Any]
        let sp = try XCTUnwrap((obj["timings"] as? [String: Any])?["speculation"] as? [String: Any])
        for key in ["drafted", "accepted", "acceptance_rate", "target_passes", "tokens_per_target_pass", "estimated_speedup"] { XCTAssertNotNil(sp[key], key) }
        let other = dir + "/other.wren"
        try TinyModel(seed: 9, vocab: 60).writeWren(to: other, dtype: .f32)
        let bad = try runWren(base + ["--draft", other])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("vocabulary"), bad.stderr)
        XCTAssertEqual(bad.stdout, "")
        let both = try runWren(base + ["--draft", draft, "--lookup-ngram", "2"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("use one of"), both.stderr)
    }

    func testLogitsJSON() throws {
        let r = try runWren(["logits", "-m", model, "--json", "--top", "3", "--all-positions", "abc"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let toks = j["tokens"] as! [Int]
        XCTAssertEqual((j["top"] as! [[Double]]).count, 3)
        XCTAssertEqual((j["positions"] as! [Any]).count, toks.count)
    }

    func testBadInput() throws {
        func expect(_ args: [String], stdin: String? = nil, _ text: String, line: UInt = #line) throws {
            let r = try runWren(args, stdin: stdin)
            XCTAssertNotEqual(r.status, 0, line: line)
            XCTAssertTrue(r.stderr.contains(text), "\(r.stderr)", line: line)
            XCTAssertEqual(r.stdout, "", line: line)
        }
        try expect(["run", "-m", model, "-p", "abc", "--n-predict=-3"], "-n must be >= 0")
        try expect(["run", "-m", model, "-p", "abc", "--top-p", "2"], "top-p must be in (0, 1]")
        try expect(["run", "-m", model], stdin: "", "the prompt is empty")
        try expect(["run", "-m", model, "-p", String(repeating: "q ", count: 200), "-c", "16"], "the prompt is")
        try expect(["run", "-m", dir + "/tiny.wren.gguf.missing", "-p", "x"], "No such file")
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: dir + "/junk.wren"))
        try expect(["run", "-m", dir + "/junk.wren", "-p", "x"], "not a .wren file")
        try expect(["run", "-m", model, "-p", "x", "--bogus"], "bogus")
        let u = try runWren(["run", "-m", model], stdinBytes: [0x61, 0xC3])
        XCTAssertEqual(u.status, 1)
        XCTAssertTrue(u.stderr.contains("invalid UTF-8"))
        // The context filling during generation is a notice, not a failure.
        let r = try runWren(["run", "-m", model, "-p", "abc", "-n", "100", "-c", "12", "--temp", "0", "--logit-bias", "2=-inf", "--logit-bias", "0=-inf"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("context of 12 tokens is full"), r.stderr)
    }
}

final class ChatCLITests: XCTestCase {
    var dir = ""
    var model = ""
    override func setUpWithError() throws {
        dir = tempDirectory(name)
        model = dir + "/tiny.wren"
        try TinyModel(seed: 5).writeWren(to: model, dtype: .f16)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testChatInAPipe() throws {
        let r = try runWren(["chat", "-m", model, "--temp", "0", "-n", "6", "--system", "sys"], stdin: "hello\n\n/reset\nagain\n/exit\nnever\n")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.filter { $0 == "\n" }.count, 2, "one reply per user turn: \(r.stdout.debugDescription)")
        XCTAssertTrue(r.stderr.contains("history cleared"))
    }

    func testContextFullDropsOldTurns() throws {
        let r = try runWren(["chat", "-m", model, "--temp", "0", "-n", "4", "-c", "48", "--system", "s"],
                            stdin: "abc abc abc\nabd abd abd\nabe abe abe\nabf abf\n")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("context full: dropped"), r.stderr)
    }

    func testRunChatAndJSONLMessages() throws {
        let a = try runWren(["run", "-m", model, "--chat", "-p", "hey", "--temp", "0", "-n", "5"])
        let b = try runWren(["run", "-m", model, "-p", "<|im_start|>user\nhey<|im_end|>\n", "--temp", "0", "-n", "5"])
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(a.stdout, b.stdout, "--chat renders the model's template")
        let j = try runWren(["run", "-m", model, "--jsonl"], stdin: """
        {"messages": [{"role": "user", "content": "hey"}], "n_predict": 5, "temperature": 0}
        {"messages": [{"role": "user"}]}

        """)
        let lines = j.stdout.split(separator: "\n").map { try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines[0]["text"] as? String, a.stdout)
        XCTAssertEqual(lines[1]["error"] as? String, "line 2: messages[0] needs string \"role\" and \"content\"")
        let bad = try runWren(["run", "-m", model, "--chat", "--chat-template", "nonesuch", "-p", "x"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("unknown chat template \"nonesuch\""), bad.stderr)
        let robin = try runWren(["run", "-m", model, "--chat", "--chat-template", "robin", "--system", "s", "-p", "x", "-n", "2"])
        XCTAssertEqual(robin.status, 0, robin.stderr)
    }
}

final class BenchCLITests: XCTestCase {
    func testBenchJSON() throws {
        let dir = tempDirectory(name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = dir + "/tiny.wren"
        try TinyModel(seed: 2).writeWren(to: model, dtype: .q4_1)
        let r = try runWren(["bench", "-m", model, "-p", "16,32", "-n", "8", "-t", "1,2", "-r", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let a = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [[String: Any]]
        XCTAssertEqual(a.map { $0["test"] as! String }, ["pp16", "pp32", "tg8", "pp16", "pp32", "tg8"])
        XCTAssertEqual(a.map { $0["threads"] as! Int }, [1, 1, 1, 2, 2, 2])
        XCTAssertTrue(a.allSatisfy { ($0["tokens_per_s"] as! Double) > 0 && ($0["repetitions"] as! Int) == 2 && $0["stddev"] != nil })
        let bad = try runWren(["bench", "-m", model, "-p", "x"])
        XCTAssertNotEqual(bad.status, 0)
    }
}

final class ChatInterruptTests: XCTestCase {
    /// Ctrl-C (SIGINT) stops the current reply; the chat goes on with the next turn.
    func testSigintStopsReplyNotChat() throws {
        let gguf = try requireRealModel()
        let dir = tempDirectory(name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = dir + "/smol.wren"
        _ = try ModelConverter.convert(try ModelSource.open(gguf), to: model)
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("wren")
        let p = Process()
        p.executableURL = exe
        p.arguments = ["chat", "-m", model, "-n", "2000", "-c", "2048", "--temp", "0.9", "--seed", "1", "--logit-bias", "2=-inf", "--logit-bias", "0=-inf"]
        let inp = Pipe(), out = Pipe(), err = Pipe()
        p.standardInput = inp; p.standardOutput = out; p.standardError = err
        try p.run()
        inp.fileHandleForWriting.write(Data("Write a very long story about a dragon.\n".utf8))
        Thread.sleep(forTimeInterval: 2.0)
        kill(p.processIdentifier, SIGINT)
        Thread.sleep(forTimeInterval: 0.5)
        inp.fileHandleForWriting.write(Data("Say hi.\n".utf8))
        Thread.sleep(forTimeInterval: 1.5)
        kill(p.processIdentifier, SIGINT)        // stops the second reply too (EOS is banned, so it would run on)
        Thread.sleep(forTimeInterval: 0.5)
        inp.fileHandleForWriting.write(Data("/exit\n".utf8))
        try inp.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(120)
        while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        if p.isRunning { p.terminate(); XCTFail("chat did not finish") }
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, e)
        XCTAssertEqual(e.components(separatedBy: "(stopped)").count - 1, 2, e)
        XCTAssertGreaterThanOrEqual(o.filter { $0 == "\n" }.count, 2, "a reply after the interrupted one: \(o.suffix(200))")
    }

    /// SIGINT or SIGTERM in the middle of a convert: the temporary file is removed, the
    /// destination never appears, and the process ends by the signal.
    func testSignalRemovesTemporaryFiles() throws {
        let gguf = try requireRealModel()
        let dir = tempDirectory(name)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("wren")
        for sig in [SIGINT, SIGTERM] {
            let p = Process()
            p.executableURL = exe
            p.arguments = ["convert", gguf, "-o", dir + "/out.wren", "--type", "f16", "--compress"]
            p.standardError = FileHandle.nullDevice
            try p.run()
            // Wait until the temporary file exists, then interrupt.
            let deadline = Date().addingTimeInterval(30)
            while p.isRunning, Date() < deadline, !(try FileManager.default.contentsOfDirectory(atPath: dir)).contains(where: { $0.contains(TempFiles.marker) }) {
                Thread.sleep(forTimeInterval: 0.01)
            }
            XCTAssertTrue(p.isRunning, "convert finished before it could be interrupted")
            kill(p.processIdentifier, sig)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationReason, .uncaughtSignal)
            XCTAssertEqual(p.terminationStatus, sig)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "no temporary file and no output left")
        }
    }
}
