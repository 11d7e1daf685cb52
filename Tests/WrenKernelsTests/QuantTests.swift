// Quantizers against golden bytes from independent implementations (gguf-py's
// numpy quantizers; ggml's quantize_row_q*_K_ref for the k-quants;
// tools/make_quant_fixtures.py), plus round-trip error bounds on random data
// of awkward sizes.

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
        /// The k-quants' input (f32 bits: synthetic super-blocks, then real SmolLM2
        /// rows), ggml's reference bytes for it, and gguf-py's dequantization of those.
        var k_values: String
        var k_bytes: [String: String]
        var k_dequantized: [String: String]

        /// Input values and golden bytes for `t`.
        func input(_ t: DType) -> (values: [Float], bytes: String, dequantized: String) {
            if t.blockSize == 256 {
                let v = QuantTests.hexBytes(k_values).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                return (v, k_bytes[t.name]!, k_dequantized[t.name]!)
            }
            return (values, bytes[t.name]!, dequantized[t.name]!)
        }
    }

    func golden() throws -> Golden {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/quant_golden.json")
        return try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }

    func hexBytes(_ s: String) -> [UInt8] { Self.hexBytes(s) }

    static func hexBytes(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            out.append(UInt8(s[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    /// Byte-identical to gguf-py, and for the k-quants to ggml's reference
    /// quantizer (so to llama-quantize without an importance matrix), for every
    /// type, with the AVX2 and the portable rows of the dtype table.
    func testQuantizeMatchesGGUFPyBytes() throws {
        let g = try golden()
        for scalar in [false, true] {
            wren_kernels_force_scalar(scalar ? 1 : 0)
            defer { wren_kernels_force_scalar(0) }
            for t in DType.allCases where t != .f32 {
                let (values, golden, _) = g.input(t)
                let want = hexBytes(golden)
                let got = Quant.quantize(t, values)
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
                let (values, golden, dequantized) = g.input(t)
                let want = hexBytes(dequantized).withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) }
                let got = Quant.dequantize(t, hexBytes(golden), count: values.count).map(\.bitPattern)
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
        XCTAssertEqual(DType(name: "q4_K"), .q4_k)
        XCTAssertEqual(DType.q2_k.byteCount(elements: 512), 168)
        XCTAssertEqual(DType.q3_k.byteCount(elements: 256), 110)
        XCTAssertEqual(DType.q4_k.byteCount(elements: 256), 144)
        XCTAssertEqual(DType.q5_k.byteCount(elements: 256), 176)
        XCTAssertEqual(DType.q6_k.byteCount(elements: 256), 210)
        XCTAssertNil(DType.q4_k.byteCount(elements: 32))
        XCTAssertNil(DType(name: "iq4_xs"))
    }

    /// Dequantize(quantize(x)) stays within each type's bound, per block, on
    /// random data of awkward lengths; re-quantizing dequantized data is exact
    /// for the 32-element types (what makes .wren → HF f32 → .wren round trips
    /// byte-identical for them).
    func testRoundTripBoundsAndIdempotence() {
        var rng = SeededRNG(seed: 7)
        for t in DType.allCases {
            for blocks in [1, 7, 33] {
                let n = t.isQuantized ? blocks * t.blockSize : blocks * 5 + 2
                let x = (0..<n).map { i in rng.normal() * (i % 11 == 0 ? 3 : 0.5) }
                let q = Quant.quantize(t, x)
                let y = Quant.dequantize(t, q, count: n)
                let bs = t.blockSize
                for b in 0..<(n / bs) {
                    let blk = x[(b * bs)..<((b + 1) * bs)]
                    let bound = Quant.roundTripBound(t, lo: blk.min()!, hi: blk.max()!)
                    for i in (b * bs)..<((b + 1) * bs) where abs(x[i] - y[i]) > bound {
                        XCTFail("\(t) n=\(n): element \(i): \(x[i]) -> \(y[i]), error \(abs(x[i] - y[i])) > bound \(bound)")
                        return
                    }
                }
                // The k-quants' scale searches are not idempotent: the values a block
                // dequantizes to may fit another scale better (as with llama-quantize).
                if t.blockSize != 256 {
                    XCTAssertTrue(Quant.quantize(t, y) == q, "\(t) n=\(n): requantizing dequantized values changed bytes")
                }
            }
        }
    }

    func testSpecialValues() {
        // Zeros quantize to a zero scale and dequantize to zeros; NaN does not trap.
        for t in DType.allCases where t.isQuantized {
            let n = t.blockSize
            XCTAssertEqual(Quant.dequantize(t, Quant.quantize(t, [Float](repeating: 0, count: n)), count: n), [Float](repeating: 0, count: n))
            var x = [Float](repeating: 1, count: n)
            x[3] = .nan
            x[n - 1] = .infinity
            let y = Quant.dequantize(t, Quant.quantize(t, x), count: n)
            if t.blockSize == 256 {   // the k-quants take non-finite values as 0 and quantize the rest as usual
                XCTAssertTrue(y.allSatisfy(\.isFinite), "\(t)")
                XCTAssertEqual(y[3], 0, accuracy: 0.05, "\(t)")
                XCTAssertEqual(y[4], 1, accuracy: 0.1, "\(t)")
            }
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
