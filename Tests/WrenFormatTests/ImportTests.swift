// GGUF and Hugging Face import, HF export, and the round trip
// GGUF → .wren → HF → .wren, on tiny models built in-process.

import Foundation
import TestSupport
@testable import WrenFormat
import WrenKernels
import XCTest

final class ImportTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// GGUF tensors in every dtype are carried over byte for byte, metadata mapped.
    func testGGUFImportCarriesBytes() throws {
        for dtype in DType.allCases {
            // The k-quants need rows of whole 256-element super-blocks.
            let model = dtype.blockSize == 256 ? TinyModel(seed: 11, tied: false, dim: 256, ff: 256) : TinyModel(seed: 11, tied: false)
            let g = "\(dir)/tiny-\(dtype).gguf", w = "\(dir)/tiny-\(dtype).wren"
            model.writeGGUF(to: g, dtype: dtype)
            let gguf = try GGUFFile(path: g)
            _ = try ModelConverter.convert(try ModelSource.open(g), to: w)
            let f = try WrenFile(path: w)
            XCTAssertEqual(try ModelConfig(metadata: f.metadata, path: w), model.config)
            XCTAssertEqual(try TokenizerMetadata(metadata: f.metadata, path: w), model.tokenizer)
            XCTAssertEqual(f.metadata["general.source.format"], .string("gguf"))
            XCTAssertEqual(f.metadata["general.name"], .string("tiny"))
            for t in gguf.tensors {
                let wt = try f.tensor(t.name)
                XCTAssertEqual(wt.shape, Array(t.ne.reversed()))
                XCTAssertEqual(Array(wt.data), Array(gguf.data(t)), "\(dtype) \(t.name)")
            }
        }
    }

    /// GGUF version 2 (same layout as 3 for little-endian files) imports identically.
    func testGGUFVersion2() throws {
        let model = TinyModel(seed: 12)
        let tensors = model.weights.map { w in
            GGUFWriter.Tensor(name: w.name, typeID: TinyModel.dtype(for: w.shape, .q4_0).rawValue, ne: w.shape.reversed(),
                              bytes: Quant.quantize(TinyModel.dtype(for: w.shape, .q4_0), w.values))
        }
        let v2 = dir + "/v2.gguf", v3 = dir + "/v3.gguf"
        FileManager.default.createFile(atPath: v2, contents: Data(GGUFWriter.encode(metadata: model.ggufMetadata(), tensors: tensors, version: 2)))
        FileManager.default.createFile(atPath: v3, contents: Data(GGUFWriter.encode(metadata: model.ggufMetadata(), tensors: tensors, version: 3)))
        XCTAssertEqual(try GGUFFile(path: v2).version, 2)
        _ = try ModelConverter.convert(try ModelSource.open(v2), to: dir + "/a.wren")
        _ = try ModelConverter.convert(try ModelSource.open(v3), to: dir + "/b.wren")
        XCTAssertEqual(try WrenFile(path: dir + "/a.wren").tensors, try WrenFile(path: dir + "/b.wren").tensors)
    }

    /// Non-default GGUF alignment is honoured.
    func testGGUFAlignment() throws {
        let model = TinyModel(seed: 2)
        let g = dir + "/a64.gguf"
        FileManager.default.createFile(atPath: g, contents: Data(model.ggufBytes(dtype: .q8_0, alignment: 64)))
        let gguf = try GGUFFile(path: g)
        XCTAssertEqual(gguf.alignment, 64)
        XCTAssertEqual(gguf.dataOffset % 64, 0)
        let emb = gguf.tensors.first { $0.name == "token_embd.weight" }!
        XCTAssertEqual(Array(gguf.data(emb)), Quant.quantize(.q8_0, model.weights[0].values))
    }

    /// `--type` requantizes 2-D weights and keeps norms f32; values stay within the
    /// bound. The tiny model's rows (32, 64) are not whole k-quant super-blocks, so
    /// those types take their fallbacks (q4_k → q5_0 …), as llama-quantize does.
    func testRequantize() throws {
        let model = TinyModel(seed: 5)
        let g = dir + "/m.gguf"
        model.writeGGUF(to: g, dtype: .f32)
        for target in DType.allCases {
            let w = "\(dir)/m-\(target).wren"
            _ = try ModelConverter.convert(try ModelSource.open(g), to: w, options: .init(type: .uniform(target)))
            let f = try WrenFile(path: w)
            for wt in model.weights {
                let t = try f.tensor(wt.name)
                XCTAssertEqual(t.dtype, wt.shape.count == 1 ? .f32 : QuantScheme.fallback(target, rowLength: wt.shape.last!), wt.name)
                let y = t.floats()
                for b in 0..<(wt.values.count / 32) {
                    let blk = wt.values[(b * 32)..<(b * 32 + 32)]
                    let bound = Quant.roundTripBound(t.dtype, lo: blk.min()!, hi: blk.max()!)
                    for i in (b * 32)..<(b * 32 + 32) where abs(y[i] - wt.values[i]) > bound {
                        XCTFail("\(target) \(wt.name)[\(i)]: \(wt.values[i]) -> \(y[i])")
                        return
                    }
                }
            }
        }
    }

    /// HF import renames, un-does the rotate-half row order and yields the same
    /// tensors as the GGUF of the same weights (single file and sharded; f32/f16/bf16).
    func testHFImportMatchesGGUF() throws {
        let model = TinyModel(seed: 9, tied: false)
        let g = dir + "/m.gguf"
        model.writeGGUF(to: g, dtype: .f32)
        let fromGGUF = dir + "/g.wren"
        _ = try ModelConverter.convert(try ModelSource.open(g), to: fromGGUF)
        let ref = try WrenFile(path: fromGGUF)
        for (dtype, sharded) in [(DType.f32, false), (.f32, true), (.f16, false), (.bf16, true)] {
            let hf = "\(dir)/hf-\(dtype)-\(sharded)"
            try model.writeHF(to: hf, dtype: dtype, sharded: sharded)
            let out = "\(dir)/hf-\(dtype)-\(sharded).wren"
            _ = try ModelConverter.convert(try ModelSource.open(hf), to: out, options: .init(type: dtype == .f32 ? nil : .uniform(.f32)))
            let f = try WrenFile(path: out)
            XCTAssertEqual(try ModelConfig(metadata: f.metadata, path: out), model.config)
            let tok = try TokenizerMetadata(metadata: f.metadata, path: out)
            XCTAssertEqual(tok, model.tokenizer)
            XCTAssertEqual(f.tensors.map(\.name), ref.tensors.map(\.name), "tensor order")
            for info in ref.tensors {
                let a = try ref.tensor(info.name).floats(), b = try f.tensor(info.name).floats()
                if dtype == .f32 {
                    XCTAssertEqual(a, b, "\(info.name) from HF \(dtype)")
                } else {
                    // f16/bf16 source: compare to the same rounding of the reference values.
                    let r = Quant.dequantize(dtype, Quant.quantize(dtype, a), count: a.count)
                    XCTAssertEqual(r, b, "\(info.name) from HF \(dtype)")
                }
            }
        }
    }

    /// GGUF → .wren → HF → .wren is bit-exact for every 32-element dtype (quantized
    /// ones are exported dequantized and requantized on the way back); the k-quants
    /// come back in their dtype within their error (their scale searches need not
    /// settle on the same scales for dequantized values).
    func testRoundTripGGUFWrenHFWren() throws {
        let model = TinyModel(seed: 21)
        for dtype in DType.allCases where dtype.blockSize != 256 {
            let g = "\(dir)/rt-\(dtype).gguf", a = "\(dir)/rt-\(dtype)-a.wren", hf = "\(dir)/rt-\(dtype)-hf", b = "\(dir)/rt-\(dtype)-b.wren"
            model.writeGGUF(to: g, dtype: dtype)
            _ = try ModelConverter.convert(try ModelSource.open(g), to: a)
            try HFExporter.export(try WrenFile(path: a), to: hf)
            _ = try ModelConverter.convert(try ModelSource.open(hf), to: b)
            try assertSameModel(a, b)
        }
        let big = TinyModel(seed: 22, dim: 256, ff: 256)
        for dtype in DType.allCases where dtype.blockSize == 256 {
            let g = "\(dir)/rt-\(dtype).gguf", a = "\(dir)/rt-\(dtype)-a.wren", hf = "\(dir)/rt-\(dtype)-hf", b = "\(dir)/rt-\(dtype)-b.wren"
            big.writeGGUF(to: g, dtype: dtype)
            _ = try ModelConverter.convert(try ModelSource.open(g), to: a)
            try HFExporter.export(try WrenFile(path: a), to: hf)
            _ = try ModelConverter.convert(try ModelSource.open(hf), to: b)
            let fa = try WrenFile(path: a), fb = try WrenFile(path: b)
            for info in fa.tensors {
                let x = try fa.tensor(info.name), y = try fb.tensor(info.name)
                XCTAssertEqual(y.dtype, x.dtype, "\(dtype) \(info.name)")
                let xv = x.floats(), yv = y.floats(), bs = x.dtype.blockSize
                for blk in 0..<(xv.count / bs) {
                    let r = (blk * bs)..<((blk + 1) * bs)
                    let bound = Quant.roundTripBound(x.dtype, lo: xv[r].min()!, hi: xv[r].max()!)
                    if let i = r.first(where: { abs(xv[$0] - yv[$0]) > bound }) {
                        XCTFail("\(dtype) \(info.name)[\(i)]: \(xv[i]) → \(yv[i]) (bound \(bound))")
                        break
                    }
                }
            }
        }
    }

    func assertSameModel(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let fa = try WrenFile(path: a), fb = try WrenFile(path: b)
        XCTAssertEqual(try ModelConfig(metadata: fa.metadata, path: a), try ModelConfig(metadata: fb.metadata, path: b), file: file, line: line)
        XCTAssertEqual(try TokenizerMetadata(metadata: fa.metadata, path: a), try TokenizerMetadata(metadata: fb.metadata, path: b), file: file, line: line)
        XCTAssertEqual(fa.tensors.map(\.name), fb.tensors.map(\.name), file: file, line: line)
        for (x, y) in zip(fa.tensors, fb.tensors) {
            XCTAssertEqual(x.dtype, y.dtype, x.name, file: file, line: line)
            XCTAssertEqual(x.shape, y.shape, x.name, file: file, line: line)
            XCTAssertEqual(x.checksum, y.checksum, "\(x.name) bytes differ", file: file, line: line)
        }
    }

    func testPermutationIsLlamaCppPermute() {
        // llama.cpp's convert_hf_to_gguf permute: reshape(h, 2, d/2, n).swapaxes(1, 2).
        // For one head of 8 rows: GGUF row order = HF rows [0, 4, 1, 5, 2, 6, 3, 7].
        XCTAssertEqual(TensorNames.hfToWrenRows(rows: 8, heads: 1), [0, 4, 1, 5, 2, 6, 3, 7])
        XCTAssertEqual(TensorNames.hfToWrenRows(rows: 8, heads: 2), [0, 2, 1, 3, 4, 6, 5, 7])
        let p = TensorNames.hfToWrenRows(rows: 24, heads: 3), q = TensorNames.wrenToHFRows(rows: 24, heads: 3)
        XCTAssertEqual((0..<24).map { p[q[$0]] }, Array(0..<24))
    }

    func testHFNames() {
        XCTAssertEqual(TensorNames.wrenName(hf: "model.layers.12.self_attn.o_proj.weight"), "blk.12.attn_output.weight")
        XCTAssertEqual(TensorNames.hfName(wren: "blk.3.ffn_down.weight"), "model.layers.3.mlp.down_proj.weight")
        XCTAssertNil(TensorNames.wrenName(hf: "model.layers.x.mlp.down_proj.weight"))
        XCTAssertNil(TensorNames.wrenName(hf: "model.layers.1.mlp.bias"))
    }
}
