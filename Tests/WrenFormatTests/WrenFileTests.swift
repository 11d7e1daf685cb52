// .wren writing and reading: every dtype, with and without zstd, checksums,
// atomic writes; XXH64 and SHA-256 against published test vectors.

import Foundation
import TestSupport
@testable import WrenFormat
import WrenKernels
import XCTest

final class WrenFileTests: XCTestCase {
    func testXXH64Vectors() {
        // Vectors from the reference implementation (python `xxhash` package).
        XCTAssertEqual(XXH64.hash([UInt8]()), 0xEF46_DB37_51D8_E999)
        XCTAssertEqual(XXH64.hash(Array("abc".utf8)), 0x44BC_2CF5_AD77_0999)
        let long = Array((0..<256).map { UInt8($0) }) + Array((0..<256).map { UInt8($0) }) + Array((0..<256).map { UInt8($0) }) + Array("xyz".utf8)
        XCTAssertEqual(XXH64.hash(long, seed: 7), 0xB635_55D1_BF05_377F)
    }

    func testSHA256Vectors() {
        var h = SHA256()
        XCTAssertEqual(h.finalizeHex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        h = SHA256()
        h.update(Array("abc".utf8))
        XCTAssertEqual(h.finalizeHex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        h = SHA256()
        let chunk = [UInt8](repeating: 0x61, count: 1000)     // one million 'a', fed in odd pieces
        for _ in 0..<1000 { h.update(Array(chunk[..<333])); h.update(Array(chunk[333...])) }
        XCTAssertEqual(h.finalizeHex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func tinyTensors(_ model: TinyModel, _ dtype: DType) -> [PendingTensor] {
        model.weights.map { w in
            let t = TinyModel.dtype(for: w.shape, dtype)
            return PendingTensor(name: w.name, dtype: t, shape: w.shape, bytes: Quant.quantize(t, w.values))
        }
    }

    func tinyMetadata(_ model: TinyModel) -> Metadata {
        var m = Metadata()
        model.config.write(to: &m)
        model.tokenizer.write(to: &m)
        m["general.name"] = .string("tiny")
        m["test.i8"] = .int8(-3)
        m["test.f64"] = .float64(2.5)
        m["test.u64s"] = .array(MetaArray(elementType: .uint64, count: 2, raw: [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]))
        m["test.empty"] = .array(MetaArray(strings: []))
        m["test.unicode"] = .array(MetaArray(strings: ["Ġhello", "日本語", "👩‍👩‍👧", ""]))
        return m
    }

    /// Every dtype, compressed or not: tensors come back byte for byte, metadata equal.
    func testWriteReadEveryDTypeAndCompression() throws {
        let dir = tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for dtype in DType.allCases {
            let model = dtype.blockSize == 256 ? TinyModel(seed: 3, tied: false, dim: 256, ff: 256) : TinyModel(seed: 3, tied: false)
            for compress in [false, true] {
                let path = "\(dir)/tiny-\(dtype)-\(compress).wren"
                let pending = tinyTensors(model, dtype)
                let meta = tinyMetadata(model)
                var progressCalls = 0
                try WrenWriter.write(to: path, metadata: meta, tensors: pending, options: .init(compress: compress)) { _ in progressCalls += 1 }
                XCTAssertEqual(progressCalls, pending.count)
                let f = try WrenFile(path: path)
                XCTAssertEqual(f.metadata, meta)
                XCTAssertEqual(try ModelConfig(metadata: f.metadata, path: path), model.config)
                XCTAssertEqual(try TokenizerMetadata(metadata: f.metadata, path: path), model.tokenizer)
                XCTAssertEqual(f.tensors.count, model.weights.count)
                for w in model.weights {
                    let t = try f.tensor(w.name)
                    let want = Quant.quantize(TinyModel.dtype(for: w.shape, dtype), w.values)
                    XCTAssertEqual(Array(t.data), want, "\(path): \(w.name)")
                    XCTAssertEqual(t.shape, w.shape)
                    XCTAssertEqual(Int(bitPattern: t.data.baseAddress!) % 64, 0, "tensor data must be 64-byte aligned")
                }
                try f.verify()
                if compress && dtype == .f32 {
                    XCTAssertTrue(f.tensors.contains { $0.compression == .zstd }, "f32 norms (values near 1) should compress")
                }
            }
        }
    }

    /// A failure while writing leaves neither the output nor a temporary file,
    /// and an existing output is neither overwritten nor damaged.
    func testAtomicWriteAndRefusal() throws {
        let dir = tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = TinyModel()
        let path = dir + "/out.wren"
        struct Boom: Error {}
        var pending = tinyTensors(model, .f32)
        pending[3].fill = { _ in throw Boom() }
        XCTAssertThrowsError(try WrenWriter.write(to: path, metadata: tinyMetadata(model), tensors: pending))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])

        try Data("precious".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try WrenWriter.write(to: path, metadata: tinyMetadata(model), tensors: tinyTensors(model, .f32))) { e in
            XCTAssertEqual(e as? FormatError, .outputExists(path: path))
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "precious")
        try WrenWriter.write(to: path, metadata: tinyMetadata(model), tensors: tinyTensors(model, .f32), options: .init(overwrite: true))
        XCTAssertNoThrow(try WrenFile(path: path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.wren"])
    }

    func testRefusesShapesThatAreNotWholeBlocks() {
        let dir = tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let t = PendingTensor(name: "x", dtype: .q8_0, shape: [2, 33], bytes: [])
        XCTAssertThrowsError(try WrenWriter.write(to: dir + "/x.wren", metadata: Metadata(), tensors: [t])) { e in
            XCTAssertTrue("\(e)".contains("tensor x shape"), "\(e)")
        }
    }
}
