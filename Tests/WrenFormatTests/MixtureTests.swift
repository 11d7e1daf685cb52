// `wren convert --type <k-quant mixture>` against llama-quantize: the same
// per-tensor types and the same bytes, for every mixture, on a small model
// whose layer count, grouped-query attention and row lengths reach every rule
// and every fallback (goldens: tools/make_mixture_fixtures.py).

import Foundation
import TestSupport
import WrenFormat
import WrenKernels
import XCTest

final class MixtureTests: XCTestCase {
    struct Golden: Decodable {
        var f32_sha256: [String: String]
        /// mixture → tensor → [type, SHA-256 of its bytes]
        var mixtures: [String: [String: [String]]]
    }

    func sha256(_ b: UnsafeRawBufferPointer) -> String {
        var h = SHA256()
        h.update(b)
        return h.finalizeHex()
    }

    func testMixturesMatchLlamaQuantize() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/mixture_golden.json")
        let g = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
        let dir = tempDirectory()
        let model = TinyModel(seed: 11, tied: false, vocab: 64, dim: 256, layers: 8, heads: 4, kvHeads: 1, ff: 320)
        // The fixture script regenerated these weights value for value.
        for w in model.weights {
            XCTAssertEqual(w.values.withUnsafeBytes { sha256($0) }, g.f32_sha256[w.name], "\(w.name): the generators disagree")
        }
        let src = dir + "/tiny-f32.gguf"
        model.writeGGUF(to: src, dtype: .f32)
        XCTAssertEqual(Set(g.mixtures.keys), Set(QuantMixture.allCases.map(\.rawValue)))
        // The k-quant searches are slow unoptimized: the debug pass checks one
        // mixture (bounds-checked), the release pass all nine.
        #if DEBUG
        let mixtures: [QuantMixture] = [.q4_k_m]
        #else
        let mixtures = QuantMixture.allCases
        #endif
        for m in mixtures {
            let out = dir + "/tiny-\(m).wren"
            _ = try ModelConverter.convert(try ModelSource.open(src), to: out, options: .init(type: .mixture(m), overwrite: true))
            let f = try WrenFile(path: out)
            let want = g.mixtures[m.rawValue]!
            XCTAssertEqual(Set(f.tensors.map(\.name)), Set(want.keys), "\(m)")
            for i in f.tensors.indices {
                let t = try f.verifiedTensor(at: i)
                guard let w = want[t.name] else { continue }
                XCTAssertEqual(t.dtype.name, w[0], "\(m) \(t.name): type")
                if t.dtype.name == w[0] { XCTAssertEqual(sha256(t.data), w[1], "\(m) \(t.name): bytes differ from llama-quantize's") }
            }
        }
    }

    /// Names, `--pure`, and the fallbacks for rows that are not whole blocks.
    func testSchemeNamesAndFallbacks() {
        XCTAssertEqual(QuantScheme(name: "Q4_K_M"), .mixture(.q4_k_m))
        XCTAssertEqual(QuantScheme(name: "q2_k"), .mixture(.q2_k))
        XCTAssertEqual(QuantScheme(name: "q2_k", pure: true), .uniform(.q2_k))
        XCTAssertEqual(QuantScheme(name: "q4_k_m", pure: true), .uniform(.q4_k))
        XCTAssertEqual(QuantScheme(name: "q4_k"), .uniform(.q4_k))
        XCTAssertEqual(QuantScheme(name: "q8_0"), .uniform(.q8_0))
        XCTAssertNil(QuantScheme(name: "iq4_xs"))
        XCTAssertEqual(QuantScheme.fallback(.q4_k, rowLength: 576), .q5_0)
        XCTAssertEqual(QuantScheme.fallback(.q5_k, rowLength: 576), .q5_1)
        XCTAssertEqual(QuantScheme.fallback(.q6_k, rowLength: 576), .q8_0)
        XCTAssertEqual(QuantScheme.fallback(.q3_k, rowLength: 576), .q4_0)
        XCTAssertEqual(QuantScheme.fallback(.q4_k, rowLength: 40), .f16)
        XCTAssertEqual(QuantScheme.fallback(.q4_1, rowLength: 40), .f16)
        XCTAssertEqual(QuantScheme.fallback(.q4_k, rowLength: 512), .q4_k)
        let ctx = MixtureContext(layers: 30, gqa: 3, tiedEmbeddings: true)
        XCTAssertEqual(QuantScheme.mixture(.q4_k_m).type(for: "token_embd.weight", shape: [49152, 576], context: ctx), .q8_0)
        XCTAssertEqual(QuantScheme.mixture(.q4_k_m).type(for: "blk.0.attn_norm.weight", shape: [576], context: ctx), .f32)
    }
}
