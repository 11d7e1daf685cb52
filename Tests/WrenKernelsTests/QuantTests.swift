// Quantizers against golden bytes from an independent implementation
// (gguf-py's numpy quantizers; tools/make_quant_fixtures.py), plus round-trip
// error bounds on random data of awkward sizes.

import CWrenKernels
import Foundation
import TestSupport
import WrenKernels
import XCTest

final class QuantTests: XCTestCase {
    struct Golden: Decodable {
        var values: [Float]
        var bytes: [String: String]
        /// gguf-py's dequantization of `bytes`, little-endian f32 bits.
        var dequantized: [String: String]
    }

    func golden() throws -> Golden {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/quant_golden.json")
        return try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }

    func hexBytes(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            out.append(UInt8(s[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    /// Byte-identical to gguf-py (and so to GGUF files) for every type, with the
    /// AVX2 and the portable rows of the dtype table.
    func testQuantizeMatchesGGUFPyBytes() throws {
        let g = try golden()
        for scalar in [false, true] {
            wren_kernels_force_scalar(scalar ? 1 : 0)
            defer { wren_kernels_force_scalar(0) }
            for t in DType.allCases where t != .f32 {
                let want = hexBytes(g.bytes[t.name]!)
                let got = Quant.quantize(t, g.values)
                XCTAssertEqual(got.count, want.count, "\(t) size")
                if let i = got.indices.first(where: { $0 < want.count && got[$0] != want[$0] }) {
                    XCTFail("\(t) scalar=\(scalar): first differing byte \(i) (block \(i / t.blockBytes)): got \(got[i]), want \(want[i])")
                }
            }
        }
    }

    /// Dequantization is bit for bit gguf-py's (`gguf.quants.dequantize`) for every
    /// stored type, on the golden blocks, with both rows of the dtype table.
    func testDequantizeMatchesGGUFPyBits() throws {
        let g = try golden()
        for scalar in [false, true] {
            wren_kernels_force_scalar(scalar ? 1 : 0)
            defer { wren_kernels_force_scalar(0) }
            for t in DType.allCases where t != .f32 {
                let want = hexBytes(g.dequantized[t.name]!).withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
                let got = Quant.dequantize(t, hexBytes(g.bytes[t.name]!), count: g.values.count).map(\.bitPattern)
                XCTAssertEqual(got.count, want.count, "\(t) size")
                if let i = got.indices.first(where: { got[$0] != want[$0] }) {
                    XCTFail("\(t) scalar=\(scalar): element \(i) is \(Float(bitPattern: got[i])), gguf-py \(Float(bitPattern: want[i]))")
                }
            }
        }
    }

    func testBlockGeometry() {
        XCTAssertEqual(DType.q5_0.byteCount(elements: 64), 44)
        XCTAssertEqual(DType.q5_1.byteCount(elements: 32), 24)
        XCTAssertEqual(DType.q8_0.byteCount(elements: 64), 68)
        XCTAssertEqual(DType.q4_0.byteCount(elements: 32), 18)
        XCTAssertEqual(DType.q4_1.byteCount(elements: 96), 60)
        XCTAssertEqual(DType.f16.byteCount(elements: 7), 14)
        XCTAssertNil(DType.q4_1.byteCount(elements: 33))
        XCTAssertNil(DType.q8_0.byteCount(elements: Int.max / 2))
        XCTAssertEqual(DType(name: "Q4_1"), .q4_1)
        XCTAssertNil(DType(name: "q4_K"))
    }

    /// Dequantize(quantize(x)) stays within each type's bound, per block, on
    /// random data of awkward lengths; re-quantizing dequantized data is exact
    /// (what makes .wren → HF f32 → .wren round trips byte-identical).
    func testRoundTripBoundsAndIdempotence() {
        var rng = SeededRNG(seed: 7)
        for t in DType.allCases {
            for blocks in [1, 7, 33] {
                let n = t.isQuantized ? blocks * 32 : blocks * 5 + 2
                let x = (0..<n).map { i in rng.normal() * (i % 11 == 0 ? 3 : 0.5) }
                let q = Quant.quantize(t, x)
                let y = Quant.dequantize(t, q, count: n)
                let bs = t.isQuantized ? 32 : 1
                for b in 0..<(n / bs) {
                    let blk = x[(b * bs)..<((b + 1) * bs)]
                    let bound = Quant.roundTripBound(t, lo: blk.min()!, hi: blk.max()!)
                    for i in (b * bs)..<((b + 1) * bs) where abs(x[i] - y[i]) > bound {
                        XCTFail("\(t) n=\(n): element \(i): \(x[i]) -> \(y[i]), error \(abs(x[i] - y[i])) > bound \(bound)")
                        return
                    }
                }
                XCTAssertEqual(Quant.quantize(t, y), q, "\(t) n=\(n): requantizing dequantized values changed bytes")
            }
        }
    }

    func testSpecialValues() {
        // Zeros quantize to a zero scale and dequantize to zeros; NaN does not trap.
        for t in DType.allCases where t.isQuantized {
            XCTAssertEqual(Quant.dequantize(t, Quant.quantize(t, [Float](repeating: 0, count: 32)), count: 32), [Float](repeating: 0, count: 32))
            var x = [Float](repeating: 1, count: 32)
            x[3] = .nan
            _ = Quant.quantize(t, x)
        }
        func bits(_ t: DType, _ x: Float) -> UInt16 { Quant.quantize(t, [x]).withUnsafeBytes { $0.load(as: UInt16.self) } }
        XCTAssertEqual(bits(.bf16, 1.0), 0x3f80)
        XCTAssertEqual(bits(.bf16, Float(bitPattern: 0x3f80_8000)), 0x3f80)      // tie to even
        XCTAssertEqual(bits(.bf16, Float(bitPattern: 0x3f81_8000)), 0x3f82)
        XCTAssertTrue(Quant.dequantize(.bf16, Quant.quantize(.bf16, [.nan]), count: 1)[0].isNaN)
        XCTAssertEqual(bits(.f16, 65504), 0x7bff)
        XCTAssertEqual(bits(.f16, 70000), 0x7c00)
        XCTAssertEqual(Quant.dequantize(.f16, [0x00, 0x3c], count: 1), [1])
    }
}
