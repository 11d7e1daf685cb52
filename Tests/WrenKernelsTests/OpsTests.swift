// Fused quantized dot products (CWrenKernels, AVX2 and the portable scalar
// fallback) and the threaded matmul against the naive reference: dequantize
// the row exactly, then a plain sequential f32 dot. Tolerance: 1e-5 relative to
// Σ|w·x| — the kernels only reorder f32 sums (and factor d, m out of blocks).

import CWrenKernels
import Foundation
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

    /// A row length of about `32 · blocks` that is whole blocks of `dt` (the
    /// k-quants' super-blocks are 256).
    func rowLength(_ dt: DType, blocks: Int) -> Int {
        let bs = max(32, dt.blockSize)
        return (32 * blocks + bs - 1) / bs * bs
    }

    func checkAll(label: String) {
        var rng = SeededRNG(seed: 77)
        for dt in DType.allCases {
            for blocks in [1, 7, 33] {
                let n = rowLength(dt, blocks: blocks), rows = 37
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

    /// Reference 8-bit activation quantizer, written independently of the C one:
    /// d = max|x|/127 per block of 32, q = x·127/max|x| rounded half to even.
    func quantizeQ8Reference(_ x: [Float]) -> (q: [Int8], d: [Float]) {
        var q = [Int8](), d = [Float]()
        for b in 0..<(x.count / 32) {
            let blk = x[(32 * b)..<(32 * b + 32)]
            let amax = blk.map { abs($0) }.max()!
            d.append(amax / 127)
            let id: Float = amax == 0 ? 0 : 127 / amax
            q += blk.map { Int8(($0 * id).rounded(.toNearestOrEven)) }
        }
        return (q, d)
    }

    /// The q8-activation path: the activation quantized exactly as the reference
    /// quantizer does (bytes equal), and each row dot equal to the f32 dot of the
    /// dequantized row with the dequantized activation (same 1e-5 tolerance: the
    /// integer block sums are exact, only the f32 combination is reordered).
    func checkQ8(label: String) {
        var rng = SeededRNG(seed: 78)
        for dt in DType.allCases where dt.isQuantized {
            for blocks in [1, 7, 33] {
                let n = rowLength(dt, blocks: blocks), rows = 37, blocks = n / 32
                let w = Quant.quantize(dt, (0..<(rows * n)).map { _ in rng.normal() * 0.3 })
                let T = 9   // pairs of tokens in the prompt tiles and an odd one
                var x = (0..<(n * T)).map { _ in rng.normal() }
                x[5] = 0; for j in 0..<32 { x[n + j] = 0 }     // a zero block quantizes to zeros
                var qs = [Int8](repeating: 0, count: n), d = [Float](repeating: 0, count: blocks), s = d
                let (rq, rd) = quantizeQ8Reference(Array(x[0..<n]))
                wren_quantize_q8(x, &qs, &d, &s, Int32(n))
                XCTAssertEqual(qs, rq, "\(label) quantized bytes n=\(n)")
                XCTAssertEqual(d, rd, "\(label) scales n=\(n)")
                for threads in [1, 2, 3] {
                    var y = [Float](repeating: 0, count: rows * T)
                    w.withUnsafeBytes { wp in x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                        Ops.matmul(dt, wp.baseAddress!, rows: rows, n: n, x: xp.baseAddress!, tokens: T, y: yp.baseAddress!,
                                   threads: threads, activations: .q8)
                    } } }
                    for t in 0..<T {
                        let (q, d) = quantizeQ8Reference(Array(x[(t * n)..<((t + 1) * n)]))
                        let xhat = (0..<n).map { Float(q[$0]) * d[$0 / 32] }
                        let (ref, mag) = reference(dt, w, xhat, rows: rows, n: n)
                        for r in 0..<rows where abs(y[t * rows + r] - ref[r]) > 1e-5 * mag[r] + 1e-6 {
                            XCTFail("\(label) q8 \(dt) n=\(n) threads=\(threads) token \(t) row \(r): \(y[t * rows + r]) vs \(ref[r])")
                            return
                        }
                    }
                }
            }
        }
    }

    /// The 8-bit products compute one canonical arithmetic (CWrenKernels/q8.c), so
    /// every path gives the same bits: each SIMD set this CPU runs (AVX2, and AVX-512
    /// VNNI where present) and the portable C, prompt tiles (≥ 48 tokens, rows
    /// repacked), batches read in place and the one-token gemv, any row count (short
    /// row groups) and thread count. Speculative verification and batch invariance rest on this.
    func testQ8PathsAreBitIdentical() {
        var rng = SeededRNG(seed: 79)
        let sets = Array(0...Int(wren_kernels_best()))   // 0: portable, 1: AVX2, 2: AVX-512 VNNI
        for dt in DType.allCases where dt.isQuantized {
            // 2…47 tokens: up to eight per pass over rows read in place (a short pass
            // repeats its last token); 48 and more: repacked tiles (q8.c, TILE_MIN_TOKENS).
            for (rows, blocks, T) in [(1, 1, 5), (7, 3, 4), (9, 2, 7), (5, 4, 2), (6, 2, 3), (11, 3, 8), (37, 18, 17),
                                      (130, 5, 33), (13, 2, 9), (67, 3, 50)] {
                let n = rowLength(dt, blocks: blocks)
                let w = Quant.quantize(dt, (0..<(rows * n)).map { _ in rng.normal() * 0.3 })
                let x = (0..<(n * T)).map { _ in rng.normal() }
                func run(_ x: [Float], tokens: Int, threads: Int, set: Int) -> [Float] {
                    XCTAssertEqual(Int(wren_kernels_force_set(Int32(set))), set)
                    defer { wren_kernels_force_set(-1) }
                    var y = [Float](repeating: .nan, count: rows * tokens)
                    w.withUnsafeBytes { wp in x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                        Ops.matmul(dt, wp.baseAddress!, rows: rows, n: n, x: xp.baseAddress!, tokens: tokens, y: yp.baseAddress!,
                                   threads: threads, activations: .q8)
                    } } }
                    return y
                }
                let reference = run(x, tokens: T, threads: 1, set: 0)
                XCTAssertTrue(reference.allSatisfy(\.isFinite))
                for set in sets {
                    let batch = run(x, tokens: T, threads: 2, set: set)
                    XCTAssertEqual(batch.map(\.bitPattern), reference.map(\.bitPattern), "\(dt) \(rows)×\(n), \(T) tokens: set \(set) vs portable")
                    var alone: [Float] = []
                    for t in 0..<T { alone += run(Array(x[(t * n)..<((t + 1) * n)]), tokens: 1, threads: 3, set: set) }
                    XCTAssertEqual(alone.map(\.bitPattern), reference.map(\.bitPattern), "\(dt) \(rows)×\(n), set \(set): one token at a time vs a batch")
                }
            }
        }
    }

    /// Rows packed eight at a time (`wren_pack_rows8`) give the portable kernels' bits for 1 to 8
    /// tokens, over any row range (groups cut at either end) and inside a fused product whose
    /// other part is not packed; where the packed kernels do not run (no AVX-512 VNNI, or
    /// another set forced) the call says so and the product falls back to the rows.
    func testPackedRowsAreBitIdentical() {
        var rng = SeededRNG(seed: 81)
        for dt in [DType.q4_0, .q4_1, .q8_0] {
            for (rows, blocks) in [(8, 1), (24, 3), (136, 18)] {
                let n = rowLength(dt, blocks: blocks), rowBytes = dt.byteCount(elements: n)!
                let w = Quant.quantize(dt, (0..<(rows * n)).map { _ in rng.normal() * 0.3 })
                var packed = [UInt8](repeating: 0, count: w.count)
                XCTAssertEqual(w.withUnsafeBytes { wp in packed.withUnsafeMutableBytes { wren_pack_rows8(dt.rawValue, wp.baseAddress!, rowBytes, Int32(rows), $0.baseAddress!) } },
                               rows * rowBytes)
                // A second part, not packed (9 rows: the packed part after it starts mid-group).
                let w2 = Quant.quantize(dt, (0..<(9 * n)).map { _ in rng.normal() * 0.3 })
                for T in 1...8 {
                    let x = (0..<(n * T)).map { _ in rng.normal() }
                    func run(set: Int, threads: Int, pack: Bool) -> [Float] {
                        XCTAssertEqual(Int(wren_kernels_force_set(Int32(set))), set)
                        defer { wren_kernels_force_set(-1) }
                        var y = [Float](repeating: .nan, count: rows * T), y2 = [Float](repeating: .nan, count: 9 * T)
                        w.withUnsafeBytes { wp in w2.withUnsafeBytes { w2p in packed.withUnsafeBytes { pp in x.withUnsafeBufferPointer { xp in
                            y.withUnsafeMutableBufferPointer { yp in y2.withUnsafeMutableBufferPointer { y2p in
                                Ops.matmul([Ops.MatmulPart(dt, w2p.baseAddress!, rows: 9, y: y2p.baseAddress!),
                                            Ops.MatmulPart(dt, wp.baseAddress!, rows: rows, y: yp.baseAddress!, packed: pack ? pp.baseAddress! : nil)],
                                           n: n, x: xp.baseAddress!, tokens: T, threads: threads, activations: .q8)
                            } }
                        } } } }
                        return y + y2
                    }
                    let reference = run(set: 0, threads: 1, pack: false)
                    XCTAssertTrue(reference.allSatisfy(\.isFinite))
                    for set in 0...Int(wren_kernels_best()) {
                        for threads in [1, 2, 3] {
                            XCTAssertEqual(run(set: set, threads: threads, pack: true).map(\.bitPattern), reference.map(\.bitPattern),
                                           "\(dt) \(rows)×\(n), \(T) tokens, set \(set), \(threads) threads")
                        }
                    }
                    // A range cut inside groups at both ends, straight through the C entry point.
                    let (r0, r1) = (3, rows - 2)
                    var qs = [Int8](repeating: 0, count: n * T), d = [Float](repeating: 0, count: T * blocks), sm = d
                    for t in 0..<T {
                        x.withUnsafeBufferPointer { xp in qs.withUnsafeMutableBufferPointer { q in d.withUnsafeMutableBufferPointer { dp in sm.withUnsafeMutableBufferPointer { sp in
                            wren_quantize_q8(xp.baseAddress! + t * n, q.baseAddress! + t * n, dp.baseAddress! + t * blocks, sp.baseAddress! + t * blocks, Int32(n))
                        } } } }
                    }
                    var y = [Float](repeating: .nan, count: rows * T)
                    let ran = packed.withUnsafeBytes { pp in
                        wren_gemm_q8_packed8(dt.rawValue, pp.baseAddress!, Int32(r0), Int32(r1), qs, d, sm, Int32(blocks), Int32(T), &y, Int32(rows))
                    }
                    XCTAssertEqual(ran != 0, wren_packed8_runs(dt.rawValue) != 0)
                    XCTAssertEqual(ran != 0, wren_kernels_simd() >= 2 || (wren_kernels_simd() == 1 && dt != .q8_0),
                                   "packed kernels: every type on VNNI, q4 on AVX2")
                    // And on each set the CPU has, forced.
                    for set in 1...max(1, Int(wren_kernels_best())) where set <= Int(wren_kernels_best()) {
                        wren_kernels_force_set(Int32(set))
                        var yf = [Float](repeating: .nan, count: rows * T)
                        let r = packed.withUnsafeBytes { pp in
                            wren_gemm_q8_packed8(dt.rawValue, pp.baseAddress!, Int32(r0), Int32(r1), qs, d, sm, Int32(blocks), Int32(T), &yf, Int32(rows))
                        }
                        wren_kernels_force_set(-1)
                        XCTAssertEqual(r != 0, set == 2 || dt != .q8_0, "set \(set)")
                        if r != 0 {
                            for t in 0..<T {
                                for row in r0..<r1 { XCTAssertEqual(yf[t * rows + row].bitPattern, reference[t * rows + row].bitPattern, "\(dt) set \(set) row \(row) token \(t)") }
                            }
                        }
                    }
                    if ran != 0 {
                        for t in 0..<T {
                            for r in 0..<rows {
                                let got = y[t * rows + r], want = reference[t * rows + r]
                                if (r0..<r1).contains(r) { XCTAssertEqual(got.bitPattern, want.bitPattern, "\(dt) row \(r) token \(t)") }
                                else { XCTAssertTrue(got.isNaN, "row \(r) outside the range was written") }
                            }
                        }
                    }
                }
            }
        }
        // Other types, and rows not a multiple of 8, are not packed.
        let f = [Float](repeating: 0.5, count: 12 * 32)
        for (dt, rows) in [(DType.q4_1, 12), (DType.f16, 8), (DType.q5_0, 8)] {
            let w = Quant.quantize(dt, Array(f[0..<(rows * 32)]))
            var out = [UInt8](repeating: 0, count: w.count)
            XCTAssertEqual(w.withUnsafeBytes { wp in out.withUnsafeMutableBytes { wren_pack_rows8(dt.rawValue, wp.baseAddress!, dt.byteCount(elements: 32)!, Int32(rows), $0.baseAddress!) } }, 0)
        }
    }

    /// The default thread count is the physical cores: at least 1, never more than the
    /// logical processors; the kernel set is named ("scalar" while forced).
    func testMachine() {
        XCTAssertGreaterThanOrEqual(Machine.physicalCores, 1)
        XCTAssertLessThanOrEqual(Machine.physicalCores, ProcessInfo.processInfo.activeProcessorCount)
        wren_kernels_force_scalar(1)
        XCTAssertEqual(Machine.kernels, "scalar")
        wren_kernels_force_scalar(0)
        XCTAssertEqual(Machine.kernels, ["scalar", "avx2", "avx512vnni"][Int(wren_kernels_simd())])
        for set in 0...Int(wren_kernels_best()) {
            XCTAssertEqual(Int(wren_kernels_force_set(Int32(set))), set)
            XCTAssertEqual(Machine.kernels, ["scalar", "avx2", "avx512vnni"][set])
        }
        wren_kernels_force_set(-1)
    }

    /// OpenBLAS products widen the rows a tile at a time (the scratch holds a few
    /// rows here, so 37 rows take 13 tiles and a short last one); every token's
    /// outputs match the f32 dot with the exactly dequantized rows (1e-5 of Σ|w·x|).
    func testBLASProductInTiles() {
        var rng = SeededRNG(seed: 80)
        let rows = 37, T = 5
        for dt in DType.allCases {
            let n = rowLength(dt, blocks: 3)
            let w = Quant.quantize(dt, (0..<(rows * n)).map { _ in rng.normal() * 0.3 })
            let x = (0..<(n * T)).map { _ in rng.normal() }
            var y = [Float](repeating: .nan, count: rows * T)
            var scratch = [Float](repeating: 0, count: 3 * n)
            w.withUnsafeBytes { wp in x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                scratch.withUnsafeMutableBufferPointer { sp in
                    Ops.matmulBLAS(dt, wp.baseAddress!, rows: rows, n: n, x: xp.baseAddress!, tokens: T, y: yp.baseAddress!,
                                   scratch: sp.baseAddress!, scratchFloats: 3 * n, threads: 2)
                }
            } } }
            for t in 0..<T {
                let (ref, mag) = reference(dt, w, Array(x[(t * n)..<((t + 1) * n)]), rows: rows, n: n)
                for r in 0..<rows {
                    XCTAssertEqual(y[t * rows + r], ref[r], accuracy: 1e-5 * mag[r] + 1e-6, "\(dt) token \(t) row \(r)")
                }
            }
        }
    }

    func testQ8ActivationKernels() {
        checkQ8(label: Machine.kernels)
        wren_kernels_force_scalar(1)
        defer { wren_kernels_force_scalar(0) }
        checkQ8(label: "scalar")
    }

    /// Softmax and SwiGLU (vectorised exp, Cephes polynomial) against Double:
    /// relative error 1e-6 (a few ulp of f32) plus the rounding of x − max, SIMD and scalar; lengths that are
    /// not multiples of 8; inputs spanning exp's whole range.
    func testSoftmaxAndSwiGLU() {
        var rng = SeededRNG(seed: 5)
        for scalar in [0, 1] {
            wren_kernels_force_scalar(Int32(scalar))
            defer { wren_kernels_force_scalar(0) }
            for n in [1, 7, 8, 37, 300] {
                var x = (0..<n).map { _ in rng.normal() * 30 }
                if n > 3 { x[1] = -200; x[2] = 85 }
                var want = x.map(Double.init)
                Ops.softmaxNaive(&want)
                let m = x.max()!, input = x
                Ops.softmax(&x, n)
                // x − max is rounded to f32 first: that alone moves e^(x−max) by up to |x−max|·2⁻²⁴ relative.
                for j in 0..<n {
                    let tol = want[j] * (1e-6 + Double(abs(input[j] - m)) * 6e-8) + 1e-30
                    XCTAssertEqual(Double(x[j]), want[j], accuracy: tol, "softmax scalar=\(scalar) n=\(n) j=\(j)")
                }
                var g = (0..<n).map { _ in rng.normal() * 8 }
                if n > 3 { g[0] = -100; g[3] = 100 }
                let up = (0..<n).map { _ in rng.normal() }
                let ref = (0..<n).map { Double(g[$0]) / (1 + Foundation.exp(-Double(g[$0]))) * Double(up[$0]) }
                Ops.swiglu(&g, up, n)
                for j in 0..<n { XCTAssertEqual(Double(g[j]), ref[j], accuracy: 1e-6 * abs(ref[j]) + 1e-30, "swiglu scalar=\(scalar) n=\(n) j=\(j)") }
            }
        }
    }

    func testFusedKernelsMatchReference() {
        checkAll(label: Machine.kernels)
    }

    func testScalarFallbackMatchesReference() {
        wren_kernels_force_scalar(1)
        defer { wren_kernels_force_scalar(0) }
        XCTAssertEqual(wren_kernels_simd(), 0)
        checkAll(label: "scalar")
    }

    /// f32→f16 conversion (rounding to nearest even, NaN payloads as F16C and
    /// Swift's Float16 keep them) and the f16 axpy, SIMD and scalar.
    func testF16ConversionAndAxpy() {
        var rng = SeededRNG(seed: 21)
        var x = (0..<37).map { _ in rng.normal() * 100 }
        x += [0, -0, 65504, 70000, 1e-8, 6.1e-5, 5.96e-8, -2.98e-8, .infinity, 1.0009765625, 1.00048828125,
              .nan, Float(bitPattern: 0x7fa0_0001), Float(bitPattern: 0xffc1_2345)]   // NaNs: quiet, payload truncated, both paths
        for scalar in [0, 1] {
            wren_kernels_force_scalar(Int32(scalar))
            defer { wren_kernels_force_scalar(0) }
            var h = [UInt16](repeating: 0, count: x.count)
            x.withUnsafeBufferPointer { xp in h.withUnsafeMutableBytes { wren_f32_to_f16(xp.baseAddress!, $0.baseAddress!, Int32(x.count)) } }
            for i in x.indices { XCTAssertEqual(h[i], Float16(x[i]).bitPattern, "scalar=\(scalar) x=\(x[i])") }
            var out = [Float](repeating: 1, count: x.count)
            h.withUnsafeBytes { hp in out.withUnsafeMutableBufferPointer { wren_axpy_f16(0.5, hp.baseAddress!, $0.baseAddress!, Int32(x.count)) } }
            for i in x.indices where x[i].isFinite && abs(x[i]) < 60000 { XCTAssertEqual(out[i], 1 + 0.5 * Float(Float16(bitPattern: h[i])), "scalar=\(scalar)") }
        }
    }

    /// Decode attention over an f16 cache (eight positions' scores per pass, a
    /// 64-wide head's values accumulated in registers, the tail one position at a
    /// time) against a double-precision softmax(q·k)·v on the same f16 values, for
    /// head widths with and without the register path and counts around the 8- and
    /// 64-position blocks; AVX2 and portable. Tolerance 1e-5 absolute (values ~N(0,1)):
    /// f32 dots of ≤ 128 terms and a softmax over ≤ 150 weights, measured ≤ 5.1e-7;
    /// a kernel that mixes up positions is off by ~0.5.
    func testDecodeAttentionOverF16Cache() {
        var rng = SeededRNG(seed: 23)
        for hd in [32, 64, 128] {
            for n in [1, 7, 8, 9, 63, 64, 65, 150] {
                let stride = 3 * hd   // rows of three kv heads; this head is the second
                let k = (0..<(n * stride)).map { _ in Float16(rng.normal()) }, v = (0..<(n * stride)).map { _ in Float16(rng.normal()) }
                let q = (0..<hd).map { _ in rng.normal() }
                let scale = 1 / Float(hd).squareRoot()
                var want = [Double](repeating: 0, count: hd), scores = [Double]()
                for p in 0..<n { scores.append((0..<hd).reduce(0.0) { $0 + Double(k[p * stride + hd + $1]) * Double(q[$1]) } * Double(scale)) }
                let top = scores.max()!, weights = scores.map { exp($0 - top) }, total = weights.reduce(0, +)
                for p in 0..<n { for j in 0..<hd { want[j] += weights[p] / total * Double(v[p * stride + hd + j]) } }
                for scalar in [false, true] {
                    wren_kernels_force_scalar(scalar ? 1 : 0)
                    defer { wren_kernels_force_scalar(0) }
                    var out = [Float](repeating: .nan, count: hd)
                    k.withUnsafeBytes { kp in v.withUnsafeBytes { vp in
                        Attention.decodeF16(q: q, k: kp.baseAddress! + 2 * hd, v: vp.baseAddress! + 2 * hd, stride: 2 * stride, n: n, hd: hd,
                                            scale: scale, out: &out)
                    } }
                    let worst = zip(out, want).map { abs(Double($0) - $1) }.max()!
                    XCTAssertLessThan(worst, 1e-5, "hd \(hd), n \(n), scalar \(scalar)")
                }
            }
        }
    }

    func testDotMatchesNaive() {
        var rng = SeededRNG(seed: 3)
        for n in [1, 7, 33, 255] {
            let a = (0..<n).map { _ in rng.normal() }, b = (0..<n).map { _ in rng.normal() }
            let fast = Ops.dot(a, b, n), slow = Ops.dotNaive(a, b, n)
            XCTAssertEqual(fast, slow, accuracy: 1e-5 * Float(n))
        }
    }

    /// The dtype table: a row for every DType with the geometry the file formats
    /// assume, no row for ggml types Wren has no kernels for (an unknown id is
    /// nil, never another type's kernels), 8-bit-activation kernels exactly for the
    /// block types, on both kernel sets.
    func testDTypeTable() {
        let geometry: [DType: (Int32, Int32)] = [.f32: (1, 4), .f16: (1, 2), .bf16: (1, 2), .q4_0: (32, 18), .q4_1: (32, 20), .q5_0: (32, 22),
                                                .q5_1: (32, 24), .q8_0: (32, 34), .q2_k: (256, 84), .q3_k: (256, 110), .q4_k: (256, 144),
                                                .q5_k: (256, 176), .q6_k: (256, 210)]
        for scalar in [false, true] {
            wren_kernels_force_scalar(scalar ? 1 : 0)
            defer { wren_kernels_force_scalar(0) }
            XCTAssertEqual(Set(DType.allCases), Set(geometry.keys), "every case is in this test")
            for t in DType.allCases {
                guard let row = wren_type(t.rawValue)?.pointee else { XCTFail("no row for \(t)"); continue }
                XCTAssertEqual(row.id, t.rawValue)
                XCTAssertEqual(String(cString: row.name), "\(t)")
                XCTAssertEqual(row.block, geometry[t]!.0, "\(t) block")
                XCTAssertEqual(row.block_bytes, geometry[t]!.1, "\(t) bytes")
                XCTAssertEqual(row.gemm_q8 != nil, t.isQuantized, "\(t) 8-bit kernels")
            }
            for id: UInt32 in [4, 5, 9, 15, 16, 20, 23, 29, 31, 39, 1000, .max] {
                XCTAssertNil(wren_type(id), "ggml type \(id) has no row")
            }
        }
    }
}
