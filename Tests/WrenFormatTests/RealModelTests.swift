// The real SmolLM2-135M-Instruct Q4_1 GGUF (tools/fetch-model.sh): conversion
// carries every tensor over byte for byte; dequantization and the HF q/k
// permutation match digests made independently with gguf-py
// (tools/make_real_model_fixture.py); GGUF → .wren → HF → .wren is bit-exact;
// requantized tensors stay within their quantization error bound.
// These run in the optimized test build only (see README, "Tests").

import Foundation
import TestSupport
@testable import WrenFormat
import WrenKernels
import XCTest

final class RealModelTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func model() throws -> String {
        try requireRealModel()
    }

    struct Reference: Decodable {
        struct T: Decodable {
            var dtype: String
            var shape: [Int]
            var f32_sha256: String
            var hf_f32_sha256: String?
        }
        var tensors: [String: T]
    }

    func reference() throws -> Reference {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/smollm2_reference.json")
        return try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
    }

    func sha(_ b: UnsafeRawBufferPointer) -> String { var h = SHA256(); h.update(b); return h.finalizeHex() }
    func sha(_ f: [Float]) -> String { f.withUnsafeBytes { sha($0) } }

    func testConvertCarriesEveryTensorAndOpensFast() throws {
        let path = try model()
        let g = try GGUFFile(path: path)
        let out = dir + "/smol.wren"
        let report = try ModelConverter.convert(try ModelSource.open(path), to: out)
        XCTAssertEqual(report.sourceSHA256, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
        var best = Double.infinity
        for _ in 0..<5 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try WrenFile(path: out)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        print("open SmolLM2 .wren: best of 5 = \(best) ms")
        XCTAssertLessThan(best, 100, "opening must not copy the file")
        let w = try WrenFile(path: out)
        try w.verify()
        XCTAssertEqual(w.tensors.count, 272)
        for t in g.tensors {
            let wt = try w.tensor(t.name)
            XCTAssertEqual(wt.dtype.rawValue, t.typeID, t.name)
            XCTAssertEqual(wt.shape, t.shape, t.name)
            XCTAssertTrue(wt.data.elementsEqual(g.data(t)), "\(t.name) bytes differ")
        }
        let c = try ModelConfig(metadata: w.metadata, path: out)
        XCTAssertEqual([c.vocabSize, c.embeddingLength, c.blockCount, c.headCount, c.headCountKV, c.feedForwardLength], [49152, 576, 30, 9, 3, 1536])
        XCTAssertEqual(c.ropeFreqBase, 100000)
        XCTAssertTrue(c.tiedEmbeddings)
        let tok = try TokenizerMetadata(metadata: w.metadata, path: out)
        XCTAssertEqual(tok.tokens.count, 49152)
        XCTAssertEqual(tok.merges?.count, 48900)
        XCTAssertEqual(tok.pre, "smollm")
        XCTAssertFalse(tok.addBOS)
        XCTAssertEqual(tok.tokens.string(1), "<|im_start|>")
    }

    /// Dequantization and HF export match gguf-py; HF → .wren restores the same bytes.
    func testDequantizationAndHFRoundTripMatchReference() throws {
        let path = try model()
        let ref = try reference()
        let a = dir + "/a.wren", f32 = dir + "/f32.wren", hf = dir + "/hf", b = dir + "/b.wren"
        _ = try ModelConverter.convert(try ModelSource.open(path), to: a)
        _ = try ModelConverter.convert(try ModelSource.open(path), to: f32, options: .init(type: .uniform(.f32)))
        let wf = try WrenFile(path: f32)
        for (name, r) in ref.tensors {
            XCTAssertEqual(sha(try wf.tensor(name).data), r.f32_sha256, "\(name): dequantized f32 differs from gguf-py")
        }
        try HFExporter.export(try WrenFile(path: a), to: hf)
        let st = try SafetensorsFile(path: hf + "/model.safetensors")
        for (name, r) in ref.tensors {
            guard let hfName = TensorNames.hfName(wren: name), let t = st.tensors.first(where: { $0.name == hfName }) else { continue }
            XCTAssertEqual(sha(st.data(t)), r.hf_f32_sha256 ?? r.f32_sha256, "\(hfName): HF export differs from gguf-py + llama.cpp permute")
        }
        _ = try ModelConverter.convert(try ModelSource.open(hf), to: b)
        let wa = try WrenFile(path: a), wb = try WrenFile(path: b)
        XCTAssertEqual(try ModelConfig(metadata: wa.metadata, path: a), try ModelConfig(metadata: wb.metadata, path: b))
        XCTAssertEqual(try TokenizerMetadata(metadata: wa.metadata, path: a), try TokenizerMetadata(metadata: wb.metadata, path: b))
        XCTAssertEqual(wa.tensors.map(\.name), wb.tensors.map(\.name))
        for (x, y) in zip(wa.tensors, wb.tensors) {
            XCTAssertEqual(x.dtype, y.dtype, x.name)
            XCTAssertEqual(x.checksum, y.checksum, "\(x.name): GGUF → .wren → HF → .wren changed the bytes")
        }
    }

    /// --type q8_0 / f16 / q4_0 from the q4_1 source: every element within the
    /// target type's bound of the GGUF's dequantized value; --compress changes nothing.
    func testRequantizeAndCompress() throws {
        let path = try model()
        let base = dir + "/base-f32.wren"
        _ = try ModelConverter.convert(try ModelSource.open(path), to: base, options: .init(type: .uniform(.f32)))
        let ref = try WrenFile(path: base)
        for target in [DType.q8_0, .f16, .q4_0] {
            let out = "\(dir)/\(target).wren"
            _ = try ModelConverter.convert(try ModelSource.open(path), to: out, options: .init(type: .uniform(target), compress: target == .f16))
            let w = try WrenFile(path: out)
            try w.verify()
            var worst: (Float, String) = (0, "")
            for info in ref.tensors {
                let x = try ref.tensor(info.name).floats(), t = try w.tensor(info.name)
                XCTAssertEqual(t.dtype, info.shape.count == 1 ? .f32 : target)
                let y = t.floats()
                let bs = t.dtype.blockSize
                for blk in 0..<(x.count / bs) {
                    let s = x[(blk * bs)..<((blk + 1) * bs)]
                    let bound = Quant.roundTripBound(t.dtype, lo: s.min()!, hi: s.max()!)
                    for i in (blk * bs)..<((blk + 1) * bs) {
                        let e = abs(x[i] - y[i])
                        if e > bound { XCTFail("\(target) \(info.name)[\(i)]: \(x[i]) -> \(y[i]) (bound \(bound))"); return }
                        if e > worst.0 { worst = (e, info.name) }
                    }
                }
            }
            print("requantize q4_1 -> \(target): worst abs error \(worst.0) in \(worst.1)")
        }
    }
}
