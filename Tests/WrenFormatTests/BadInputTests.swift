// Bad input: every damaged or inconsistent file gives a FormatError naming
// the file and what is wrong — never a crash — and a seeded fuzz test
// mutates the headers and tables of small .wren and .gguf files.

import Foundation
import TestSupport
@testable import WrenFormat
import WrenKernels
import XCTest

final class BadInputTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func tinyWren(compress: Bool = false, dtype: DType = .q8_0) throws -> [UInt8] {
        let model = TinyModel(seed: 4)
        let g = dir + "/src-\(compress)-\(dtype).gguf", w = dir + "/src-\(compress)-\(dtype).wren"
        model.writeGGUF(to: g, dtype: dtype)
        _ = try ModelConverter.convert(try ModelSource.open(g), to: w, options: .init(compress: compress))
        return Array(try Data(contentsOf: URL(fileURLWithPath: w)))
    }

    func u64(_ b: [UInt8], _ o: Int) -> Int { Int(truncatingIfNeeded: raw64(b, o)) }
    func raw64(_ b: [UInt8], _ o: Int) -> UInt64 { b.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: o, as: UInt64.self)) } }
    func u32(_ b: [UInt8], _ o: Int) -> Int { b.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: o, as: UInt32.self))) } }
    func put64(_ b: inout [UInt8], _ o: Int, _ v: UInt64) { for i in 0..<8 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }

    /// Recomputes the header and body checksums so a mutation reaches the field checks.
    func fixChecksums(_ b: inout [UInt8]) {
        let metaOff = raw64(b, 32), tableOff = raw64(b, 48), tableSize = raw64(b, 56)
        let (end, o) = tableOff.addingReportingOverflow(tableSize)
        if !o, metaOff <= end, end <= UInt64(b.count) {
            put64(&b, 80, b.withUnsafeBytes { XXH64.hash(UnsafeRawBufferPointer(rebasing: $0[Int(metaOff)..<Int(end)])) })
        }
        put64(&b, 88, b.withUnsafeBytes { XXH64.hash(UnsafeRawBufferPointer(rebasing: $0[0..<88])) })
    }

    /// Byte offsets of the first tensor entry's offset, stored size and size fields.
    func firstEntryFields(_ b: [UInt8]) -> (dtype: Int, offset: Int, stored: Int, size: Int) {
        var o = u64(b, 48)
        let nameLen = u32(b, o); o += 4 + nameLen
        let dtype = o; o += 4
        let nd = u32(b, o); o += 4 + 8 * nd
        return (dtype, o, o + 8, o + 16)
    }

    func write(_ bytes: [UInt8], _ name: String) -> String {
        let p = dir + "/" + name
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }

    func expectError(_ bytes: [UInt8], _ contains: String, file: StaticString = #filePath, line: UInt = #line) {
        let p = write(bytes, "bad.wren")
        XCTAssertThrowsError(try WrenFile(path: p), file: file, line: line) { e in
            let msg = "\(e)"
            XCTAssertTrue(e is FormatError, "not a FormatError: \(msg)", file: file, line: line)
            XCTAssertTrue(msg.contains(p), "message does not name the file: \(msg)", file: file, line: line)
            XCTAssertTrue(msg.contains(contains), "\"\(msg)\" does not mention \"\(contains)\"", file: file, line: line)
        }
    }

    func testDamagedWrenFiles() throws {
        let good = try tinyWren()
        XCTAssertNoThrow(try WrenFile(path: write(good, "good.wren")))
        expectError([], "truncated")
        expectError(Array(good[..<50]), "truncated")
        expectError(Array(good[..<(good.count - 1)]), "truncated: data section")
        var b = good; b[0] = 0x58
        expectError(b, "not a .wren file")
        b = good; b[8] = 2
        expectError(b, "unsupported .wren version 2")
        b = good; b[200] ^= 0xFF
        expectError(b, "checksum mismatch in metadata and tensor table")
        b = good; b[20] ^= 1
        expectError(b, "checksum mismatch in header")

        let f = firstEntryFields(good)
        b = good; put64(&b, f.offset, UInt64(good.count)); fixChecksums(&b)
        expectError(b, "tensor token_embd.weight at data offset")
        b = good; put64(&b, f.offset, 8); fixChecksums(&b)
        expectError(b, "is not a multiple of 64")
        b = good; put64(&b, f.size, UInt64(u64(good, f.size) + 34)); put64(&b, f.stored, UInt64(u64(good, f.size) + 34)); fixChecksums(&b)
        expectError(b, "tensor token_embd.weight size")
        b = good; b[f.dtype] = 23; fixChecksums(&b)
        expectError(b, "unsupported dtype iq4_xs in tensor token_embd.weight")
        b = good; b[f.dtype] = 12; fixChecksums(&b)     // a known type whose size disagrees with the table
        expectError(b, "shape [64, 32] in q4_k needs")
        b = good; put64(&b, f.offset, UInt64.max - 3); fixChecksums(&b)
        expectError(b, "token_embd.weight")
    }

    func testChecksumMismatchNamesTensor() throws {
        var b = try tinyWren()
        b[b.count - 5] ^= 0x40          // inside the last tensor's data
        let p = write(b, "flipped.wren")
        let f = try WrenFile(path: p)    // opening does not read tensor data
        XCTAssertThrowsError(try f.verify()) { e in
            XCTAssertTrue("\(e)".contains("checksum mismatch in tensor output_norm.weight"), "\(e)")
        }
    }

    func testCorruptCompressedTensorIsCaughtAtOpen() throws {
        let good = try tinyWren(compress: true, dtype: .f32)
        let w = write(good, "c.wren")
        let file = try WrenFile(path: w)
        guard let c = file.tensors.first(where: { $0.compression == .zstd }) else { return XCTFail("nothing compressed") }
        var b = good
        b[file.dataOffset + c.offset + c.storedSize / 2] ^= 0x10
        expectError(b, "checksum mismatch in tensor \(c.name)")
    }

    func testUnsupportedGGUFDType() throws {
        let model = TinyModel()
        var tensors = model.weights.map { w in
            GGUFWriter.Tensor(name: w.name, typeID: 0, ne: w.shape.reversed(), bytes: Quant.quantize(.f32, w.values))
        }
        // An iq4_xs tensor: 256-element blocks of 136 bytes.
        tensors[2] = GGUFWriter.Tensor(name: "blk.0.attn_q.weight", typeID: 23, ne: [256, 32], bytes: [UInt8](repeating: 0, count: 32 * 136))
        let p = write(GGUFWriter.encode(metadata: model.ggufMetadata(), tensors: tensors), "k.gguf")
        XCTAssertNoThrow(try GGUFFile(path: p), "the table itself is valid")
        XCTAssertThrowsError(try ModelSource.open(p)) { e in
            XCTAssertEqual("\(e)", "\(p): unsupported dtype iq4_xs in tensor blk.0.attn_q.weight")
        }
    }

    /// An architecture Wren does not run is named, with the ones it does; so is a
    /// mixture-of-experts model of a supported one.
    func testUnsupportedArchitectures() throws {
        let model = TinyModel()
        for arch in ["phi2", "mamba", "clip"] {
            let p = write(model.ggufBytes(dtype: .f32) { m in m["general.architecture"] = .string(arch) }, "\(arch).gguf")
            XCTAssertThrowsError(try ModelSource.open(p)) { e in
                XCTAssertEqual("\(e)", "\(p): general.architecture: unsupported architecture \"\(arch)\" (Wren runs llama, qwen2, gemma3)")
            }
        }
        let p = write(model.ggufBytes(dtype: .f32) { m in m["llama.expert_count"] = .uint32(8) }, "moe.gguf")
        XCTAssertThrowsError(try ModelSource.open(p)) { e in
            XCTAssertTrue("\(e)".contains("mixture-of-experts models are not supported"), "\(e)")
        }
    }

    func testDamagedGGUF() throws {
        let good = TinyModel().ggufBytes(dtype: .q4_1)
        func expect(_ b: [UInt8], _ s: String, line: UInt = #line) {
            let p = write(b, "bad.gguf")
            XCTAssertThrowsError(try ModelSource.open(p), line: line) { e in
                XCTAssertTrue(e is FormatError && "\(e)".contains(s) && "\(e)".contains(p), "\(e)", line: line)
            }
        }
        expect(Array(good[..<(good.count - 10)]), "truncated")
        expect(Array(good[..<30]), "cannot fit")
        var b = good; b[4] = 1
        expect(b, "unsupported GGUF version 1")
        b = good; b[4] = 0; b[7] = 3
        expect(b, "big-endian")
        b = good; for i in 8..<16 { b[i] = 0xFF }
        expect(b, "cannot fit")
    }

    func testMissingAndMistypedConfigFields() throws {
        let model = TinyModel()
        let hf = dir + "/hf"
        try model.writeHF(to: hf)
        let cfgPath = hf + "/config.json"
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: cfgPath))) as! [String: Any]
        func expect(_ c: [String: Any], _ s: String, line: UInt = #line) throws {
            try JSONSerialization.data(withJSONObject: c).write(to: URL(fileURLWithPath: cfgPath))
            XCTAssertThrowsError(try ModelSource.open(hf), line: line) { e in
                XCTAssertEqual("\(e)", "\(cfgPath): \(s)", line: line)
            }
        }
        var c = cfg; c["hidden_size"] = nil
        try expect(c, "missing field \"hidden_size\"")
        c = cfg; c["num_hidden_layers"] = "2"
        try expect(c, "field \"num_hidden_layers\" should be an integer")
        c = cfg; c["num_key_value_heads"] = 3
        try expect(c, "model.attention.head_count_kv: 3 does not divide head_count 4")
        c = cfg; c["model_type"] = "gpt_neox"
        try expect(c, "model_type: unsupported model type \"gpt_neox\" (Wren imports llama, mistral, qwen2, gemma3_text)")
        c = cfg; c["num_hidden_layers"] = 3
        try JSONSerialization.data(withJSONObject: c).write(to: URL(fileURLWithPath: cfgPath))
        XCTAssertThrowsError(try ModelSource.open(hf)) { e in XCTAssertEqual("\(e)", "\(hf): missing tensor blk.2.attn_norm.weight") }
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: cfgPath))
        XCTAssertThrowsError(try ModelSource.open(hf)) { e in XCTAssertTrue("\(e)".hasPrefix("\(cfgPath): file: not valid JSON"), "\(e)") }
    }

    /// Several hundred seeded mutations of headers and tables: only clean
    /// FormatErrors, and whatever opens has every tensor in bounds.
    func testFuzzHeadersAndTables() throws {
        var rng = SeededRNG(seed: 2026)
        let wren = try tinyWren(compress: true, dtype: .f32)
        let wrenHead = u64(wren, 64)                 // data offset: header + metadata + table
        let gguf = TinyModel().ggufBytes(dtype: .q8_0)
        let ggufHead = try GGUFFile(path: write(gguf, "g.gguf")).dataOffset
        var opened = 0, refused = 0
        for i in 0..<600 {
            let isWren = i % 2 == 0
            var b = isWren ? wren : gguf
            let head = isWren ? wrenHead : ggufHead
            let edits = 1 + Int(rng.next() % 4)
            for _ in 0..<edits {
                let pos: Int
                switch rng.next() % 4 {
                case 0: pos = Int(rng.next() % 96)                      // fixed header
                case 1: pos = Int(rng.next() % UInt64(head))           // anywhere before data
                default: pos = max(0, head - 1 - Int(rng.next() % 600)) // the table
                }
                switch rng.next() % 3 {
                case 0: b[pos] ^= UInt8(1 << (rng.next() % 8))
                case 1: b[pos] = UInt8(truncatingIfNeeded: rng.next())
                default: b[pos] = [0x00, 0xFF, 0x7F, 0x80][Int(rng.next() % 4)]
                }
            }
            if rng.next() % 5 == 0 { b = Array(b[..<Int(rng.next() % UInt64(b.count))]) }
            if isWren, b.count >= 96, rng.next() % 4 != 0 { fixChecksums(&b) }
            let p = write(b, isWren ? "fuzz.wren" : "fuzz.gguf")
            do {
                if isWren {
                    let f = try WrenFile(path: p)
                    for j in 0..<f.tensors.count { _ = XXH64.hash(f.tensor(at: j).data) }
                    try? f.verify()
                } else {
                    let g = try GGUFFile(path: p)
                    for t in g.tensors { _ = XXH64.hash(g.data(t)) }
                    _ = try? ModelSource.fromGGUF(g)
                }
                opened += 1
            } catch let e as FormatError {
                XCTAssertTrue(e.description.hasPrefix(p), e.description)
                refused += 1
            } catch {
                XCTFail("mutation \(i): unexpected error type \(error)")
            }
        }
        XCTAssertEqual(opened + refused, 600)
        XCTAssertGreaterThan(refused, 300, "most mutations should be refused")
    }
}
