// RoPE scaling methods against transformers' own (modeling_rope_utils,
// ROPE_INIT_FUNCTIONS, transformers 5.24): inverse frequencies of every 4th
// pair for a SmolLM2-shaped head (64 dims, θ = 100000), factor 4, original
// context 8192. Tolerance 1e-5 relative: transformers computes the powers in
// float32, Wren in Double rounded to Float (~1e-7 apart); a wrong ramp bound
// or exponent moves some frequency by a factor of at least 1.1.

@testable import WrenEngine
import WrenFormat
import XCTest

final class RopeScalingTests: XCTestCase {
    func settings(_ s: RopeScalingType) -> RopeSettings {
        RopeSettings(freqBase: 100000, dimensions: 64, scaling: s, factor: 4, originalContext: 8192)
    }

    func check(_ got: [Float], every4 want: [Double], _ label: String) {
        XCTAssertEqual(got.count, 32)
        for (k, w) in want.enumerated() {
            XCTAssertEqual(Double(got[4 * k]), w, accuracy: 1e-5 * w, "\(label) pair \(4 * k)")
        }
    }

    func testYaRNMatchesTransformers() {
        let r = settings(.yarn)
        check(r.inverseFrequencies(), every4: [1.0, 0.23713736236095428, 0.05623412877321243, 0.011334933340549469, 0.0017392527079209685,
                                               0.00018747354624792933, 4.4456985051510856e-05, 1.0542413292569108e-05], "yarn")
        XCTAssertEqual(Double(r.magnitude), 1.138629436111989, accuracy: 1e-6, "attention factor 0.1·ln 4 + 1")
        var fixed = r
        fixed.yarnAttentionFactor = 1.5
        XCTAssertEqual(fixed.magnitude, 1.5)
        XCTAssertEqual(settings(.linear).magnitude, 1)
    }

    /// Llama 3.1/3.2's scaling against transformers' `_compute_llama3_parameters` (base
    /// 500000, 64 dims, factor 32, low 1, high 4, original context 8192: every pair, the
    /// kept, blended and divided bands); stored GGUF factors divide the frequencies.
    func testLlama3MatchesTransformers() {
        var r = RopeSettings(freqBase: 500000, dimensions: 64, scaling: .llama3, factor: 32, originalContext: 8192)
        r.lowFreqFactor = 1; r.highFreqFactor = 4
        let want: [Double] = [1.0, 0.663601279258728, 0.44036662578582764, 0.2922278344631195, 0.193922758102417, 0.12868738174438477,
                              0.08539710193872452, 0.05666961893439293, 0.03760603070259094, 0.02495540864765644, 0.016560440883040428,
                              0.010989529080688953, 0.00729266507551074, 0.00483942124992609, 0.0032114461064338684, 0.0012905480107292533,
                              0.000429556705057621, 9.708286233944818e-05, 1.9461638657958247e-05, 1.291476746700937e-05,
                              8.570255886297673e-06, 5.687232260243036e-06, 3.7740544485131977e-06, 2.504467147446121e-06,
                              1.6619674170215148e-06, 1.1028836297555245e-06, 7.318749339901842e-07, 4.856731266045244e-07,
                              3.2229328894572973e-07, 2.1387423032592778e-07, 1.4192720243499934e-07, 9.418306490260875e-08]
        let got = r.inverseFrequencies()
        XCTAssertEqual(got.count, 32)
        for (i, w) in want.enumerated() { XCTAssertEqual(Double(got[i]), w, accuracy: 2e-6 * w, "pair \(i)") }
        // The same scaling as llama.cpp stores it: plain RoPE divided per pair by θ_plain/θ_llama3.
        var stored = RopeSettings(freqBase: 500000, dimensions: 64, scaling: .none, factor: 1, originalContext: 8192)
        let plain = stored.inverseFrequencies()
        stored.frequencyFactors = zip(plain, want).map { Float(Double($0) / $1) }
        for (i, w) in want.enumerated() { XCTAssertEqual(Double(stored.inverseFrequencies()[i]), w, accuracy: 2e-6 * w, "stored pair \(i)") }
    }

    func testDynamicNTKMatchesTransformers() {
        let r = settings(.dynamicNTK)
        check(r.inverseFrequencies(length: 20000), every4: [1.0, 0.18529491126537323, 0.0343342050909996, 0.006361952982842922,
                                                            0.001178837614133954, 0.00021843260037712753, 4.047444963362068e-05,
                                                            7.499709226976847e-06], "dynamic-ntk at 20000")
        // Within the original context dynamic NTK is no scaling at all.
        XCTAssertEqual(r.inverseFrequencies(length: 5000), settings(.none).inverseFrequencies())
    }

    /// The table carries YaRN's magnitude on cos and sin; dynamic NTK reads the length off the positions.
    func testTables() {
        var r = settings(.yarn)
        r.dimensions = 8
        var t = [Float](repeating: 0, count: 16)
        t.withUnsafeMutableBufferPointer { r.tables(positions: [0, 3], into: $0.baseAddress!) }
        XCTAssertEqual(t[0], r.magnitude, "cos 0 · magnitude")
        let f = r.inverseFrequencies()
        XCTAssertEqual(t[8 + 2], cosf(3 * f[1]) * r.magnitude, accuracy: 1e-6)
        XCTAssertEqual(t[8 + 3], sinf(3 * f[1]) * r.magnitude, accuracy: 1e-6)
        var d = settings(.dynamicNTK)
        d.dimensions = 8
        d.originalContext = 4
        t.withUnsafeMutableBufferPointer { d.tables(positions: [9, 10], into: $0.baseAddress!) }
        let g = d.inverseFrequencies(length: 11)
        XCTAssertEqual(t[8 + 2], cosf(10 * g[1]), accuracy: 1e-6)
        XCTAssertNotEqual(g, d.inverseFrequencies(length: 4))
    }
}
