// Hostile safetensors files and PEFT adapters (issue: hostile input): shapes that
// overflow, fractional and overlapping offsets, duplicate names, non-string
// metadata, NaN factors, target_modules that do not name a factor, FIFOs given as
// files, outputs that are not regular files. Each must be a FormatError naming the
// file and field, never a trap, a hang or a silent success.

import Foundation
import TestSupport
@testable import WrenFormat
import XCTest

final class HostileFileTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A safetensors file from a raw JSON header and `data` bytes.
    func safetensors(_ header: String, data: [UInt8] = [UInt8](repeating: 0, count: 64), name: String = "x.safetensors") -> String {
        var json = Array(header.utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var b: [UInt8] = []
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { b += $0 }
        let p = dir + "/" + name
        FileManager.default.createFile(atPath: p, contents: Data(b + json + data))
        return p
    }

    func assertRefused(_ header: String, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        let p = safetensors(header)
        XCTAssertThrowsError(try SafetensorsFile(path: p), file: file, line: line) { e in
            let d = "\(e)"
            XCTAssert(d.contains(p) && d.contains(fragment), "\(header): \(d)", file: file, line: line)
        }
    }

    func testHostileSafetensorsHeaders() {
        assertRefused(#"{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}}"#, "too large")
        assertRefused(#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, "too large")
        assertRefused(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0.5,8.5]}}"#, "data_offsets")
        assertRefused(#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, "shape")
        assertRefused(#"{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}"#, "shape")
        assertRefused(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, "overlap")
        assertRefused(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, "duplicate")
        assertRefused(#"{"__metadata__":{"format":7},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, "__metadata__.format")
        assertRefused(#"{"a":{"dtype":"F32","shape":[20],"data_offsets":[0,80]}}"#, "truncated")
        assertRefused(#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}"#, "shape")
        // A valid one still loads.
        XCTAssertNoThrow(try SafetensorsFile(path: safetensors(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#)))
    }

    /// A PEFT adapter directory: q_proj of layer 0, rank 2, 4×4, with `a` values and `config` overrides.
    func adapter(_ name: String, config: [String: Any] = [:], a: [Float]? = nil, module: String = "q_proj") throws -> String {
        let d = dir + "/" + name
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let av = a ?? (0..<8).map { Float($0) / 10 }
        let bv = (0..<8).map { Float($0) / 20 }
        let key = "base_model.model.model.layers.0.self_attn.\(module).lora_"
        let st = SafetensorsWriter.encode([.init(name: key + "A.weight", dtype: "F32", shape: [2, 4], bytes: av.withUnsafeBytes { Array($0) }),
                                           .init(name: key + "B.weight", dtype: "F32", shape: [4, 2], bytes: bv.withUnsafeBytes { Array($0) })])
        FileManager.default.createFile(atPath: d + "/adapter_model.safetensors", contents: Data(st))
        var cfg: [String: Any] = ["peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"]]
        for (k, v) in config { cfg[k] = v }
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: d + "/adapter_config.json"))
        return d
    }

    func testHostileAdapters() throws {
        XCTAssertNoThrow(try PEFTAdapter.load(try adapter("good")))
        XCTAssertNoThrow(try PEFTAdapter.load(try adapter("regex", config: ["target_modules": ".*(q_proj|v_proj)"])))
        XCTAssertNoThrow(try PEFTAdapter.load(try adapter("all", config: ["target_modules": "all-linear"])))
        let cases: [(String, [String: Any], [Float]?, String, String)] = [
            ("nan", [:], [0, 1, .nan, 3, 4, 5, 6, 7], "", "NaN or infinite"),
            ("inf", [:], [0, 1, .infinity, 3, 4, 5, 6, 7], "", "NaN or infinite"),
            ("untargeted", ["target_modules": ["v_proj"]], nil, "", "target_modules"),
            ("regexmiss", ["target_modules": ".*v_proj"], nil, "", "target_modules"),
            ("k", [:], nil, "k_proj", "target_modules"),
            ("rank", ["r": 3], nil, "", "rank 2, but adapter_config.json says 3"),
            ("fractional", ["r": 2.5], nil, "", "r: missing or not a positive integer"),
            ("alpha", ["lora_alpha": "x"], nil, "", "lora_alpha"),
            ("dropout", ["lora_dropout": 1.5], nil, "", "lora_dropout"),
            ("pattern", ["rank_pattern": ["q_proj": 0.5]], nil, "", "rank_pattern"),
            ("targets", ["target_modules": [1, 2]], nil, "", "target_modules"),
        ]
        for (name, cfg, a, module, fragment) in cases {
            let d = try adapter(name, config: cfg, a: a, module: module.isEmpty ? "q_proj" : module)
            XCTAssertThrowsError(try PEFTAdapter.load(d), name) { e in
                XCTAssert("\(e)".contains(d) && "\(e)".contains(fragment), "\(name): \(e)")
            }
        }
    }

    func testFIFOsAndDevicesAreRefusedWithoutBlocking() throws {
        let fifo = dir + "/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let start = Date()
        XCTAssertThrowsError(try MappedFile(path: fifo)) { XCTAssert("\($0)".contains("not a regular file"), "\($0)") }
        XCTAssertNil(MappedFile.contents(of: fifo))
        XCTAssertThrowsError(try PEFTAdapter.load(fifo))
        XCTAssertLessThan(Date().timeIntervalSince(start), 2, "opening a FIFO must not wait for a writer")
        // As an output: never replaced, with or without overwrite.
        for p in [fifo, "/dev/null"] {
            XCTAssertThrowsError(try AtomicFile.write([1, 2, 3], to: p, overwrite: true)) { XCTAssert("\($0)".contains("Wren replaces only regular files"), "\($0)") }
        }
        var st = stat()
        XCTAssertEqual(lstat("/dev/null", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFCHR, "/dev/null is still a device")
        XCTAssertEqual(lstat(fifo, &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFIFO)
    }

    func testTemporaryFilesOfDeadProcessesAreRemoved() throws {
        // pid 2^31-2 is above any pid_max, so no process has it.
        let stale = dir + "/.out.json" + TempFiles.marker + "2147483646"
        let live = dir + "/.other.json" + TempFiles.marker + "\(getpid())"
        FileManager.default.createFile(atPath: stale, contents: Data([1]))
        FileManager.default.createFile(atPath: live, contents: Data([1]))
        try AtomicFile.write(Array("{}".utf8), to: dir + "/out.json", overwrite: false)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale), "a dead process's temporary file is removed by the next write")
        XCTAssertTrue(FileManager.default.fileExists(atPath: live), "this process's own temporary files are left alone")
        XCTAssertEqual(try String(contentsOfFile: dir + "/out.json", encoding: .utf8), "{}")
        XCTAssertThrowsError(try AtomicFile.write([1], to: dir + "/out.json", overwrite: false)) { XCTAssert("\($0)".contains("exists"), "\($0)") }
        XCTAssertEqual(try String(contentsOfFile: dir + "/out.json", encoding: .utf8), "{}", "a refused write leaves the file as it was")
    }

    /// A tensor corrupted inside a .wren is caught when it is copied (convert, export), not
    /// laundered into a new file with fresh checksums that pass --verify.
    func testCopiesCheckTheSourceChecksums() throws {
        let w = dir + "/m.wren"
        try TinyModel(seed: 3).writeWren(to: w, dtype: .q8_0)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: w))
        let file = try WrenFile(path: w)
        let victim = try XCTUnwrap(file.tensors.first { $0.name == "blk.1.ffn_up.weight" })
        bytes[file.dataOffset + victim.offset + 5] ^= 0x40
        let bad = dir + "/bad.wren"
        try bytes.write(to: URL(fileURLWithPath: bad))
        XCTAssertThrowsError(try ModelSource.open(bad)) { XCTAssert("\($0)".contains("checksum mismatch in tensor blk.1.ffn_up.weight"), "\($0)") }
        XCTAssertThrowsError(try HFExporter.export(try WrenFile(path: bad), to: dir + "/hf")) {
            XCTAssert("\($0)".contains("checksum mismatch in tensor blk.1.ffn_up.weight"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/hf"), "nothing exported")
    }

    /// A tokenizer whose special ids or token count do not fit the embedding is refused by
    /// convert (before, run refused the converted file later).
    func testTokenizerMustFitTheEmbedding() throws {
        let cases: [(String, (inout Metadata) -> Void, String)] = [
            ("bos", { $0["tokenizer.ggml.bos_token_id"] = .uint32(999) }, "bos_token_id: token id 999 outside"),
            ("eos", { $0["tokenizer.ggml.eos_token_id"] = .uint32(64) }, "eos_token_id: token id 64 outside"),
        ]
        for (name, edit, fragment) in cases {
            let g = dir + "/\(name).gguf"
            FileManager.default.createFile(atPath: g, contents: Data(TinyModel(seed: 3).ggufBytes(dtype: .f32, edit: edit)))
            XCTAssertThrowsError(try ModelSource.open(g), name) { XCTAssert("\($0)".contains(g) && "\($0)".contains(fragment), "\(name): \($0)") }
        }
        // 64 tokens over a 32-row embedding (vocab_size and the tensors agree with each other).
        var small = TinyModel(seed: 3, vocab: 32)
        small.tokenizer = TinyModel(seed: 3, vocab: 64).tokenizer
        let g = dir + "/count.gguf"
        small.writeGGUF(to: g, dtype: .f32)
        XCTAssertThrowsError(try ModelSource.open(g)) { XCTAssert("\($0)".contains("tokenizer.tokens: 64 tokens for a 32-row embedding"), "\($0)") }
    }

    /// Found by the fuzzer: block_count mutated to 2,228,226 made the converter build 20
    /// million expected tensor names (19 s) before noticing they were absent.
    func testHugeLayerCountIsRefusedAtOnce() throws {
        let g = dir + "/layers.gguf"
        FileManager.default.createFile(atPath: g, contents: Data(TinyModel(seed: 3).ggufBytes(dtype: .f32) { $0["llama.block_count"] = .uint32(2_228_226) }))
        let start = Date()
        XCTAssertThrowsError(try ModelSource.open(g)) { XCTAssert("\($0)".contains("missing tensor blk.2.attn_norm.weight"), "\($0)") }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1)
    }

    func testExportDirectoryIsAtomicAndNeverClobbers() throws {
        let w = dir + "/m.wren", out = dir + "/hf"
        try TinyModel(seed: 3).writeWren(to: w, dtype: .q8_0)
        let file = try WrenFile(path: w)
        try HFExporter.export(file, to: out)
        let first = try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors"))
        XCTAssertThrowsError(try HFExporter.export(file, to: out)) { XCTAssert("\($0)".contains("exists"), "\($0)") }
        try HFExporter.export(file, to: out, floatType: .f16, overwrite: true)
        let second = try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors"))
        XCTAssertLessThan(second.count, first.count, "--force replaced the export (f16 is smaller)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(TempFiles.marker) }, [])
        // A directory holding anything else is never replaced, even with overwrite.
        FileManager.default.createFile(atPath: out + "/notes.txt", contents: Data("mine".utf8))
        XCTAssertThrowsError(try HFExporter.export(file, to: out, overwrite: true)) { XCTAssert("\($0)".contains("notes.txt"), "\($0)") }
        XCTAssertEqual(try String(contentsOfFile: out + "/notes.txt", encoding: .utf8), "mine")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")), second)
    }
}
