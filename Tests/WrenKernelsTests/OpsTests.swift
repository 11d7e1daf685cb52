// Fused quantized dot products (CWrenKernels, AVX2 and the portable scalar
// fallback) and the threaded matmul against the naive reference: dequantize
// the row exactly, then a plain sequential f32 dot. Tolerance: 1e-5 relative to
// Σ|w·x| — the kernels only reorder f32 sums (and factor d, m out of blocks).

import CWrenKernels
import TestSupport
@testable import WrenKernels
import XCTest

final class OpsTests: XCTestCase {
    func reference(_ dt: DType, _ w: [UInt8], _ x: [Float], rows: Int, n: Int) -> ([Float], [Float]) {
        let deq = Quant.dequantize(dt, w, count: rows * n)
        var y = [Float](repeating: 0, count: rows), mag = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            for j in 0..<n { y[r] += deq[r * n + j] * x[j]; mag[r] += abs(deq[r * n + j] * x[j]) }
        }
        return (y, mag)
    }

    func checkAll(label: String) {
        var rng = SeededRNG(seed: 77)
        for dt in DType.allCases {
            for blocks in [1, 7, 33] {
                let n = 32 * blocks, rows = 37
                let wf = (0..<(rows * n)).map { _ in rng.normal() * 0.3 }
                let x = (0..<(n * 3)).map { _ in rng.normal() }
                let w = Quant.quantize(dt, wf)
                for threads in [1, 2, 3] {
                    var y = [Float](repeating: 0, count: rows * 3)
                    w.withUnsafeBytes { wp in x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                        Ops.matmul(dt, wp.baseAddress!, rows: rows, n: n, x: xp.baseAddress!, tokens: 3, y: yp.baseAddress!, threads: threads)
                    } } }
                    for t in 0..<3 {
                        let (ref, mag) = reference(dt, w, Array(x[(t * n)..<((t + 1) * n)]), rows: rows, n: n)
                        for r in 0..<rows where abs(y[t * rows + r] - ref[r]) > 1e-5 * mag[r] + 1e-6 {
                            XCTFail("\(label) \(dt) n=\(n) threads=\(threads) token \(t) row \(r): \(y[t * rows + r]) vs \(ref[r])")
                            return
                        }
                    }
                }
            }
        }
    }

    func testFusedKernelsMatchReference() {
        checkAll(label: wren_kernels_simd() == 1 ? "avx2" : "scalar")
    }

    func testScalarFallbackMatchesReference() {
        wren_kernels_force_scalar(1)
        defer { wren_kernels_force_scalar(0) }
        XCTAssertEqual(wren_kernels_simd(), 0)
        checkAll(label: "scalar")
    }

    func testDotMatchesNaive() {
        var rng = SeededRNG(seed: 3)
        for n in [1, 7, 33, 255] {
            let a = (0..<n).map { _ in rng.normal() }, b = (0..<n).map { _ in rng.normal() }
            let fast = Ops.dot(a, b, n), slow = Ops.dotNaive(a, b, n)
            XCTAssertEqual(fast, slow, accuracy: 1e-5 * Float(n))
        }
    }
}
