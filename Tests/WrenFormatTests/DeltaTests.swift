// Delta weights (formats/delta.md): make → apply rebuilds the tuned model bit for
// bit, the wrong base is refused by name, q8 stays within its stated bound, and a
// damaged delta never yields a model.

import Foundation
import TestSupport
@testable import WrenFormat
import WrenKernels
import XCTest

final class DeltaTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A "full finetune" of `base`: every value of the attention weights of layer 0 and of the
    /// embedding (and the attention norm) moves a little, the rest is untouched (as LISA leaves untrained layers).
    func tuned(_ base: TinyModel, scale: Float = 0.01, seed: UInt64 = 7) -> TinyModel {
        var t = base
        var rng = SeededRNG(seed: seed)
        for i in t.weights.indices where t.weights[i].name.hasPrefix("blk.0.attn") || t.weights[i].name == "token_embd.weight" {
            t.weights[i].values = t.weights[i].values.map { $0 + rng.normal() * scale }
        }
        return t
    }

    func tensorHashes(_ path: String) throws -> [String: String] {
        let m = try StoredModel.open(path)
        var out: [String: String] = [:]
        for (i, e) in m.entries.enumerated() { out[e.name] = try m.sha256(i) }
        return out
    }

    func sha(_ path: String) throws -> String { try ModelConverter.sha256(files: [path]) }

    func testExactRoundTripF32AndF16() throws {
        for dtype in [DType.f32, .f16, .bf16] {
            let base = TinyModel(seed: 5)
            let b = dir + "/base-\(dtype).wren", t = dir + "/tuned-\(dtype).wren", d = dir + "/d-\(dtype).wdelta", out = dir + "/out-\(dtype).wren"
            try base.writeWren(to: b, dtype: dtype)
            try tuned(base).writeWren(to: t, dtype: dtype)
            let r = try Delta.make(base: b, tuned: t, to: d)
            let enc = Dictionary(r.tensors.map { ($0.name, $0.encoding) }, uniquingKeysWith: { a, _ in a })
            XCTAssertEqual(enc["blk.1.ffn_up.weight"], .same, "\(dtype)")
            XCTAssertEqual(enc["blk.0.ffn_norm.weight"], .same, "\(dtype)")
            XCTAssertTrue([.xor, .sub].contains(enc["blk.0.attn_q.weight"]!), "\(dtype): \(enc["blk.0.attn_q.weight"]!)")
            XCTAssertLessThan(r.fileSize, try FileManager.default.attributesOfItem(atPath: t)[.size] as! Int)
            let a = try Delta.apply(delta: d, base: b, to: out)
            XCTAssertEqual(a.verified, r.tensors.count)
            XCTAssertEqual(a.differingBaseTensors, 0)
            // The same tensors, metadata and layout: the very file.
            XCTAssertEqual(try sha(out), try sha(t), "\(dtype)")
        }
    }

    func testDifferenceEncodingsInvert() {
        var rng = SeededRNG(seed: 3)
        for width in [1, 2, 4] {
            let n = 64 * width
            let t = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, b = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            for subtract in [false, true] {
                let p = t.withUnsafeBytes { tp in b.withUnsafeBytes { Delta.difference(tp, $0, width: width, subtract: subtract) } }
                var back = [UInt8](repeating: 0, count: n)
                p.withUnsafeBytes { pp in b.withUnsafeBytes { bp in back.withUnsafeMutableBytes { Delta.undifference(pp, bp, width: width, subtract: subtract, into: $0) } } }
                XCTAssertEqual(back, t, "width \(width) subtract \(subtract)")
            }
        }
        // Subtraction is of little-endian words: 0x0100 − 0x00FF = 0x0001, bytes (01, 00) in planes.
        let p = [UInt8]([0x00, 0x01]).withUnsafeBytes { tp in [UInt8]([0xFF, 0x00]).withUnsafeBytes { Delta.difference(tp, $0, width: 2, subtract: true) } }
        XCTAssertEqual(p, [0x01, 0x00])
    }

    func testQuantizedBlocksRoundTrip() throws {
        // A base and a tuned model in q8_0 where only a few rows change: the changed blocks are stored.
        let base = TinyModel(seed: 6)
        var t = base
        let qi = t.weights.firstIndex { $0.name == "blk.1.ffn_gate.weight" }!
        for c in 0..<32 { t.weights[qi].values[c] += 0.5 }           // one block of row 0
        let b = dir + "/b.wren", tw = dir + "/t.wren", d = dir + "/d.wdelta", out = dir + "/o.wren"
        try base.writeWren(to: b, dtype: .q8_0)
        try t.writeWren(to: tw, dtype: .q8_0)
        let r = try Delta.make(base: b, tuned: tw, to: d)
        XCTAssertEqual(r.tensors.first { $0.name == "blk.1.ffn_gate.weight" }?.encoding, .blocks)
        XCTAssertEqual(r.tensors.filter { $0.encoding != .same }.count, 1)
        let f = try DeltaFile(path: d)
        XCTAssertEqual(f.blocks["blk.1.ffn_gate.weight"], [0])
        _ = try Delta.apply(delta: d, base: b, to: out)
        XCTAssertEqual(try sha(out), try sha(tw))
    }

    func testNewVocabularyTravelsWithTheDelta() throws {
        // The tuned model has 8 more tokens: its embedding is stored whole, its tokenizer comes along.
        let base = TinyModel(seed: 8, vocab: 64)
        let big = TinyModel(seed: 8, vocab: 72)
        let b = dir + "/b.wren", t = dir + "/t.wren", d = dir + "/d.wdelta", out = dir + "/o.wren"
        try base.writeWren(to: b, dtype: .f32)
        try big.writeWren(to: t, dtype: .f32)
        let r = try Delta.make(base: b, tuned: t, to: d)
        XCTAssertEqual(r.tensors.first { $0.name == "token_embd.weight" }?.encoding, .whole)
        _ = try Delta.apply(delta: d, base: b, to: out)
        XCTAssertEqual(try sha(out), try sha(t))
        let tok = try TokenizerMetadata(metadata: try WrenFile(path: out).metadata, path: out)
        XCTAssertEqual(tok.tokens.count, 72)
    }

    func testGGUFAndHFInputsCompareAsStored() throws {
        // A GGUF base and the .wren converted from it are the same model; a HF directory too.
        let base = TinyModel(seed: 9)
        let g = dir + "/b.gguf", w = dir + "/b.wren", hf = dir + "/hf", t = dir + "/t.wren", d = dir + "/d.wdelta", out = dir + "/o.wren"
        base.writeGGUF(to: g, dtype: .f32)
        _ = try ModelConverter.convert(try ModelSource.open(g), to: w)
        try base.writeHF(to: hf)
        try tuned(base).writeWren(to: t, dtype: .f32)
        XCTAssertEqual(try tensorHashes(g), try tensorHashes(w))
        XCTAssertEqual(try tensorHashes(hf), try tensorHashes(w))
        _ = try Delta.make(base: g, tuned: t, to: d)
        for input in [w, hf] {
            _ = try Delta.apply(delta: d, base: input, to: out, overwrite: true)
            XCTAssertEqual(try sha(out), try sha(t), input)
        }
    }

    func testWrongBaseIsRefusedByName() throws {
        let base = TinyModel(seed: 10)
        let b = dir + "/b.wren", other = dir + "/b16.wren", t = dir + "/t.wren", d = dir + "/d.wdelta", out = dir + "/o.wren"
        try base.writeWren(to: b, dtype: .f32)
        try base.writeWren(to: other, dtype: .q8_0)
        try tuned(base).writeWren(to: t, dtype: .f32)
        _ = try Delta.make(base: b, tuned: t, to: d)
        XCTAssertThrowsError(try Delta.apply(delta: d, base: other, to: out)) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains("was made for tiny (f32, b.wren)"), s)
            XCTAssertTrue(s.contains("tensor token_embd.weight is q8_0, the delta's base has f32"), s)
            XCTAssertTrue(s.contains("--force-base"), s)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // The same dtype but other values: named by hash.
        let moved = dir + "/moved.wren"
        try tuned(base, scale: 0.001, seed: 99).writeWren(to: moved, dtype: .f32)
        XCTAssertThrowsError(try Delta.apply(delta: d, base: moved, to: out)) { e in
            XCTAssertTrue("\(e)".contains("tensor token_embd.weight differs (SHA-256)"), "\(e)")
        }
        // Forced: applied, the differing tensors counted, the untouched ones still checked.
        let r = try Delta.apply(delta: d, base: moved, to: out, forceBase: true)
        XCTAssertEqual(r.differingBaseTensors, 6)    // the embedding and layer 0's attention norm, q, k, v, output
        XCTAssertEqual(r.verified, r.tensors - 6)
        // Forced onto a base of another dtype, the xor payloads cannot be used: refused, nothing written.
        try? FileManager.default.removeItem(atPath: out)
        XCTAssertThrowsError(try Delta.apply(delta: d, base: other, to: out, forceBase: true))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testQ8DeltaErrorBound() throws {
        let base = TinyModel(seed: 11)
        let b = dir + "/b.wren", t = dir + "/t.wren", d = dir + "/d.wdelta", out = dir + "/o.wren"
        try base.writeWren(to: b, dtype: .f32)
        let tm = tuned(base, scale: 0.01)
        try tm.writeWren(to: t, dtype: .f32)
        let r = try Delta.make(base: b, tuned: t, to: d, kind: .q8)
        XCTAssertEqual(r.tensors.first { $0.name == "blk.0.attn_q.weight" }?.encoding, .q8)
        XCTAssertEqual(r.tensors.first { $0.name == "blk.1.ffn_up.weight" }?.encoding, .same)
        _ = try Delta.apply(delta: d, base: b, to: out)
        // q8_0 rounds each delta to a step of max|block|/127: the error is at most half a step,
        // about 0.01·4/127/2 ≈ 1.6e-4 for normal(0, 0.01) deltas; bound 3e-4 (f32 rounding is far below).
        let got = try WrenFile(path: out), want = try WrenFile(path: t)
        var worst: Float = 0
        for info in want.tensors {
            let a = try got.tensor(info.name).floats(), e = try want.tensor(info.name).floats()
            for (x, y) in zip(a, e) { worst = max(worst, abs(x - y)) }
        }
        XCTAssertGreaterThan(worst, 0)
        XCTAssertLessThan(worst, 3e-4)
        XCTAssertEqual(Double(worst), r.maxError, accuracy: 1e-7)
    }

    func testDamagedDeltasAndOutputsAreRefused() throws {
        let base = TinyModel(seed: 12)
        let b = dir + "/b.wren", t = dir + "/t.wren", d = dir + "/d.wdelta", out = dir + "/o.wren"
        try base.writeWren(to: b, dtype: .f32)
        try tuned(base).writeWren(to: t, dtype: .f32)
        _ = try Delta.make(base: b, tuned: t, to: d)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: d)))
        // Truncated.
        let cut = dir + "/cut.wdelta"
        try Data(bytes[0..<(bytes.count - 100)]).write(to: URL(fileURLWithPath: cut))
        XCTAssertThrowsError(try Delta.apply(delta: cut, base: b, to: out)) { XCTAssertTrue("\($0)".contains("cut.wdelta"), "\($0)") }
        // A flipped byte in the last payload.
        var flipped = bytes
        flipped[bytes.count - 10] ^= 0x40
        let fl = dir + "/flip.wdelta"
        try Data(flipped).write(to: URL(fileURLWithPath: fl))
        XCTAssertThrowsError(try Delta.apply(delta: fl, base: b, to: out)) { XCTAssertTrue("\($0)".contains("checksum"), "\($0)") }
        // Applied to itself, or used as a model.
        XCTAssertThrowsError(try Delta.apply(delta: d, base: d, to: out)) { XCTAssertTrue("\($0)".contains("is a delta, not a model"), "\($0)") }
        // A model given as the delta.
        XCTAssertThrowsError(try Delta.apply(delta: b, base: b, to: out)) { XCTAssertTrue("\($0)".contains("not a Wren delta"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // Existing outputs are kept unless overwrite.
        try Data("keep".utf8).write(to: URL(fileURLWithPath: out))
        XCTAssertThrowsError(try Delta.apply(delta: d, base: b, to: out))
        XCTAssertThrowsError(try Delta.make(base: b, tuned: t, to: out))
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "keep")
    }

    func testHostileDeltaFields() throws {
        let base = TinyModel(seed: 13)
        let b = dir + "/b.wren", t = dir + "/t.wren", d = dir + "/d.wdelta"
        try base.writeWren(to: b, dtype: .f32)
        try tuned(base).writeWren(to: t, dtype: .f32)
        _ = try Delta.make(base: b, tuned: t, to: d)
        let f = try DeltaFile(path: d)
        // Rewrite the delta with one field broken at a time (checksums valid, so the field checks answer).
        func rewrite(flipPayloadByte: Bool = false, _ edit: (inout Metadata) -> Void = { _ in }) throws -> String {
            var meta = f.file.metadata
            edit(&meta)
            let p = dir + "/bad.wdelta"
            let tensors = f.file.tensors.enumerated().map { i, info in
                var bytes = Array(try! f.file.tensor(info.name).data)
                if flipPayloadByte, i == 0 { bytes[3] ^= 1 }
                return PendingTensor(name: info.name, dtype: info.dtype, shape: info.shape, bytes: bytes)
            }
            var o = WrenWriteOptions(overwrite: true)
            o.magic = WrenFormatConstants.deltaMagic
            try WrenWriter.write(to: p, metadata: meta, tensors: tensors, options: o)
            return p
        }
        let n = f.target.count
        let cases: [(String, (inout Metadata) -> Void)] = [
            ("delta.kind", { $0["delta.kind"] = .string("zip") }),
            ("delta.target.encodings", { $0["delta.target.encodings"] = .array(MetaArray(strings: Array(repeating: "same", count: n - 1))) }),
            ("delta.target.encodings[0]", { m in
                var e = f.encodings.map(\.rawValue); e[0] = "rot13"
                m["delta.target.encodings"] = .array(MetaArray(strings: e)) }),
            ("delta.base.tensor_sha256[0]", { m in
                var s = f.base.map(\.sha256); s[0] = "xyz"
                m["delta.base.tensor_sha256"] = .array(MetaArray(strings: s)) }),
            ("delta.target.tensor_shapes[0]", { m in
                var s = f.target.map { $0.shape.map(String.init).joined(separator: ",") }; s[0] = "64,-1"
                m["delta.target.tensor_shapes"] = .array(MetaArray(strings: s)) }),
            ("delta.version", { $0["delta.version"] = nil }),
        ]
        for (field, edit) in cases {
            let p = try rewrite(edit)
            XCTAssertThrowsError(try DeltaFile(path: p), field) { XCTAssertTrue("\($0)".contains(field), "\(field): \($0)") }
        }
        // A payload changed with its checksum recomputed: the target's SHA-256 catches it, and nothing is written.
        let p = try rewrite(flipPayloadByte: true)
        XCTAssertThrowsError(try Delta.apply(delta: p, base: b, to: dir + "/o.wren")) {
            XCTAssertTrue("\($0)".contains("does not match the target's SHA-256"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/o.wren"))
    }
}

final class HFDeltaTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = tempDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func floats(_ path: String) throws -> [String: [Float]] {
        let w = try WrenFile(path: path)
        var out: [String: [Float]] = [:]
        for info in w.tensors { out[info.name] = try w.tensor(info.name).floats() }
        return out
    }

    /// FastChat/LMFlow deltas: a HF directory of tuned − base, here with 8 new tokens, made by
    /// hand as their make_delta would (the base subtracted from the leading rows).
    func testApplyAnLMFlowStyleDeltaWithAGrownVocabulary() throws {
        let base = TinyModel(seed: 20, vocab: 64), tuned = TinyModel(seed: 21, vocab: 72)
        var delta = tuned
        let baseByName = Dictionary(base.weights.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for i in delta.weights.indices {
            let b = baseByName[delta.weights[i].name]!
            var x = delta.weights[i].values
            XCTAssertTrue(Delta.combineLeading(&x, bigShape: delta.weights[i].shape, b.values, baseShape: b.shape, sign: -1))
            delta.weights[i].values = x
        }
        let b = dir + "/base.wren", t = dir + "/tuned.wren", d = dir + "/delta-hf", out = dir + "/out.wren"
        try base.writeWren(to: b, dtype: .f32)
        try tuned.writeWren(to: t, dtype: .f32)
        try delta.writeHF(to: d, dtype: .f32)
        XCTAssertEqual(try Delta.applyHF(delta: d, base: b, to: out), base.weights.count)
        let got = try floats(out), want = try floats(t)
        XCTAssertEqual(Set(got.keys), Set(want.keys))
        // (t − b) + b in f32 is t up to one rounding: |error| ≤ 2^-23·(|t| + |b|) < 1e-6 for these weights (|w| < 2).
        for (name, w) in want { for (x, y) in zip(got[name]!, w) { XCTAssertEqual(x, y, accuracy: 1e-6, name) } }
        let tok = try TokenizerMetadata(metadata: try WrenFile(path: out).metadata, path: out)
        XCTAssertEqual(tok.tokens.count, 72)
        // A base missing a tensor of the delta, or too large for it, is refused by name.
        let small = TinyModel(seed: 20, vocab: 64, layers: 1)
        let sb = dir + "/small.wren"
        try small.writeWren(to: sb, dtype: .f32)
        XCTAssertThrowsError(try Delta.applyHF(delta: d, base: sb, to: out, overwrite: true)) { XCTAssertTrue("\($0)".contains("blk.1."), "\($0)") }
        let big = dir + "/big.wren"
        try TinyModel(seed: 20, vocab: 80).writeWren(to: big, dtype: .f32)
        XCTAssertThrowsError(try Delta.applyHF(delta: d, base: big, to: out, overwrite: true)) {
            XCTAssertTrue("\($0)".contains("token_embd.weight"), "\($0)")
        }
    }

    func testMakeHFThenApplyRoundTrip() throws {
        let base = TinyModel(seed: 22)
        var tuned = base
        var rng = SeededRNG(seed: 1)
        for i in tuned.weights.indices { tuned.weights[i].values = tuned.weights[i].values.map { $0 + rng.normal() * 0.01 } }
        let b = dir + "/base.wren", t = dir + "/tuned.wren", d = dir + "/delta-hf", out = dir + "/out.wren"
        try base.writeWren(to: b, dtype: .f32)
        try tuned.writeWren(to: t, dtype: .f32)
        try Delta.makeHF(base: b, tuned: t, to: d)
        // The directory is an ordinary checkpoint of the differences (q/k rows in HF order).
        let src = try ModelSource.open(d)
        let dq = Delta.sourceFloats(src.tensors.first { $0.name == "blk.0.attn_q.weight" }!)
        let tq = tuned.weights.first { $0.name == "blk.0.attn_q.weight" }!.values, bq = base.weights.first { $0.name == "blk.0.attn_q.weight" }!.values
        for i in dq.indices { XCTAssertEqual(dq[i], tq[i] - bq[i], accuracy: 1e-6) }
        _ = try Delta.applyHF(delta: d, base: b, to: out)
        let got = try floats(out), want = try floats(t)
        for (name, w) in want { for (x, y) in zip(got[name]!, w) { XCTAssertEqual(x, y, accuracy: 1e-6, name) } }
        XCTAssertThrowsError(try Delta.makeHF(base: b, tuned: t, to: d)) { XCTAssertTrue("\($0)".contains("exists"), "\($0)") }
    }
}
