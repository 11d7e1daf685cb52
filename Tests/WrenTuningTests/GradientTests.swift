// Gradients checked against central finite differences of an independent
// Double-precision forward pass (written here, naive loops): each op alone,
// then the whole model's loss for LoRA (every target, dropout, quantized
// bases) and full finetuning (with and without gradient checkpointing).
//
// Tolerance: |analytic − numeric| ≤ 2e-3·max|numeric| + 1e-5 per checked entry.
// The analytic side runs in Float (sgemm sums of ≤ a few hundred terms, relative
// rounding ~1e-6); the numeric side is Double with h = 1e-4 (truncation ~h² ≈
// 1e-8). A wrong formula (a missing term, a transposed factor, a sign) gives
// errors of the order of the gradient itself, hundreds of times the bound.

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
import WrenKernels
@testable import WrenTuning
import XCTest

/// Double reference of the llama forward (adjacent-pair RoPE, GQA, SwiGLU, RMSNorm).
struct ReferenceLlama {
    var c: ModelConfig
    var w: [String: [Double]]
    /// LoRA factors by layer/projection (A, B, scale, dropout key or nil).
    var lora: [String: (a: [Double], b: [Double], r: Int, scale: Double, dropout: Double, key: UInt64)] = [:]
    var maskKey: UInt64 = 0

    func linear(_ name: String, _ x: [Double], rows: Int, cols: Int) -> [Double] {
        let W = w[name]!
        let T = x.count / cols
        var y = [Double](repeating: 0, count: T * rows)
        for t in 0..<T { for r in 0..<rows { var s = 0.0; for i in 0..<cols { s += W[r * cols + i] * x[t * cols + i] }; y[t * rows + r] = s } }
        if let m = lora[name] {
            var xd = x
            if m.dropout > 0 {
                let keep = 1 / (1 - m.dropout)
                for i in 0..<xd.count { xd[i] = Double(TrainRNG.hashUniform(maskKey ^ m.key, UInt64(i))) < m.dropout ? 0 : xd[i] * keep }
            }
            for t in 0..<T {
                var u = [Double](repeating: 0, count: m.r)
                for j in 0..<m.r { for i in 0..<cols { u[j] += m.a[j * cols + i] * xd[t * cols + i] } }
                for r in 0..<rows { var s = 0.0; for j in 0..<m.r { s += m.b[r * m.r + j] * u[j] }; y[t * rows + r] += m.scale * s }
            }
        }
        return y
    }

    static func rms(_ x: [Double], _ g: [Double], eps: Double) -> [Double] {
        let n = g.count
        var y = x
        for t in 0..<(x.count / n) {
            var ss = 0.0
            for i in 0..<n { ss += x[t * n + i] * x[t * n + i] }
            let r = 1 / (ss / Double(n) + eps).squareRoot()
            for i in 0..<n { y[t * n + i] = x[t * n + i] * r * g[i] }
        }
        return y
    }

    static func rope(_ x: inout [Double], heads: Int, hd: Int, L: Int, base: Double) {
        let T = x.count / (heads * hd)
        for t in 0..<T {
            let pos = Double(t % L)
            for h in 0..<heads {
                for i in 0..<(hd / 2) {
                    let th = pos * pow(base, -2 * Double(i) / Double(hd))
                    let o = t * heads * hd + h * hd + 2 * i
                    let a = x[o], b = x[o + 1]
                    x[o] = a * cos(th) - b * sin(th)
                    x[o + 1] = a * sin(th) + b * cos(th)
                }
            }
        }
    }

    static func attention(q: [Double], k: [Double], v: [Double], B: Int, L: Int, heads: Int, kvHeads: Int, hd: Int) -> [Double] {
        let qDim = heads * hd, kvDim = kvHeads * hd, group = heads / kvHeads
        var out = [Double](repeating: 0, count: B * L * qDim)
        for b in 0..<B {
            for h in 0..<heads {
                let g = h / group
                for i in 0..<L {
                    var s = [Double](repeating: 0, count: i + 1)
                    for j in 0...i {
                        var d = 0.0
                        for e in 0..<hd { d += q[(b * L + i) * qDim + h * hd + e] * k[(b * L + j) * kvDim + g * hd + e] }
                        s[j] = d / Double(hd).squareRoot()
                    }
                    let m = s.max()!
                    let ex = s.map { Foundation.exp($0 - m) }
                    let z = ex.reduce(0, +)
                    for j in 0...i { for e in 0..<hd { out[(b * L + i) * qDim + h * hd + e] += ex[j] / z * v[(b * L + j) * kvDim + g * hd + e] } }
                }
            }
        }
        return out
    }

    /// Mean cross-entropy over labelled positions.
    func loss(tokens: [Int32], labels: [Int32], B: Int, L: Int) -> Double {
        let dim = c.embeddingLength, hd = c.headDim, ff = c.feedForwardLength
        let qDim = c.headCount * hd, kvDim = c.headCountKV * hd, eps = Double(c.rmsNormEps)
        let E = w["token_embd.weight"]!
        var x = tokens.flatMap { Array(E[(Int($0) * dim)..<(Int($0) * dim + dim)]) }
        for l in 0..<c.blockCount {
            let p = "blk.\(l)."
            let n = Self.rms(x, w[p + "attn_norm.weight"]!, eps: eps)
            var q = linear(p + "attn_q.weight", n, rows: qDim, cols: dim)
            var k = linear(p + "attn_k.weight", n, rows: kvDim, cols: dim)
            let v = linear(p + "attn_v.weight", n, rows: kvDim, cols: dim)
            Self.rope(&q, heads: c.headCount, hd: hd, L: L, base: Double(c.ropeFreqBase))
            Self.rope(&k, heads: c.headCountKV, hd: hd, L: L, base: Double(c.ropeFreqBase))
            let att = Self.attention(q: q, k: k, v: v, B: B, L: L, heads: c.headCount, kvHeads: c.headCountKV, hd: hd)
            let o = linear(p + "attn_output.weight", att, rows: dim, cols: qDim)
            for i in 0..<x.count { x[i] += o[i] }
            let n2 = Self.rms(x, w[p + "ffn_norm.weight"]!, eps: eps)
            let g = linear(p + "ffn_gate.weight", n2, rows: ff, cols: dim)
            let u = linear(p + "ffn_up.weight", n2, rows: ff, cols: dim)
            let hh = (0..<g.count).map { g[$0] / (1 + Foundation.exp(-g[$0])) * u[$0] }
            let d = linear(p + "ffn_down.weight", hh, rows: dim, cols: ff)
            for i in 0..<x.count { x[i] += d[i] }
        }
        let nf = Self.rms(x, w["output_norm.weight"]!, eps: eps)
        let head = w["output.weight"] != nil ? "output.weight" : "token_embd.weight"
        var total = 0.0, count = 0
        for t in 0..<tokens.count where labels[t] != ignoreLabel {
            let logits = linear(head, Array(nf[(t * dim)..<(t * dim + dim)]), rows: c.vocabSize, cols: dim)
            let m = logits.max()!
            let lse = m + Foundation.log(logits.map { Foundation.exp($0 - m) }.reduce(0, +))
            total += lse - logits[Int(labels[t])]
            count += 1
        }
        return total / Double(count)
    }
}

final class GradientTests: XCTestCase {
    static let tolerance = 2e-3

    func tinyModel(_ name: String, dtype: DType = .f32, tied: Bool = true, seed: UInt64 = 3) throws -> LlamaModel {
        let dir = tempDirectory(name)
        let path = dir + "/tiny.wren"
        try TinyModel(seed: seed, tied: tied, vocab: 64, dim: 32, layers: 2, heads: 4, kvHeads: 2, ff: 64).writeWren(to: path, dtype: dtype)
        return try LlamaModel(path: path)
    }

    /// The reference's weights: the base (dequantized) with trainable values taken from `tm`.
    func reference(_ tm: TrainModel) -> ReferenceLlama {
        let m = tm.base
        var w: [String: [Double]] = [:]
        func deq(_ wm: WeightMatrix) -> [Double] {
            var f = [Float](repeating: 0, count: wm.rows * wm.cols)
            f.withUnsafeMutableBufferPointer { Quant.dequantize(wm.dtype, wm.data, $0.baseAddress!, count: wm.rows * wm.cols) }
            return f.map(Double.init)
        }
        w["token_embd.weight"] = deq(m.embedding)
        if !m.config.tiedEmbeddings { w["output.weight"] = deq(m.output) }
        w["output_norm.weight"] = m.outputNorm.map(Double.init)
        for (l, lw) in m.layers.enumerated() {
            w["blk.\(l).attn_norm.weight"] = lw.attnNorm.map(Double.init)
            w["blk.\(l).ffn_norm.weight"] = lw.ffnNorm.map(Double.init)
            for p in Projection.allCases { w[p.tensor.name(layer: l)] = deq(p.matrix(lw)) }
        }
        var ref = ReferenceLlama(c: m.config, w: w)
        for p in tm.parameters where !p.name.contains(".lora_") && p.name != "trainable_tokens" { ref.w[p.name] = p.values.map(Double.init) }
        if let tp = tm.tokenParam {   // trainable token rows replace their embedding rows (and the tied head's)
            let dim = m.config.embeddingLength
            for (k, id) in tm.tokenIDs.enumerated() {
                for e in 0..<dim { ref.w["token_embd.weight"]![Int(id) * dim + e] = Double(tp.values[k * dim + e]) }
            }
        }
        for l in 0..<m.config.blockCount {
            for p in Projection.allCases {
                guard let mod = tm.loraModule(l, p) else { continue }
                ref.lora[p.tensor.name(layer: l)] = (mod.a.values.map(Double.init), mod.b.values.map(Double.init), mod.rank,
                                                                     Double(mod.scale), Double(mod.dropout), mod.key)
            }
        }
        return ref
    }

    /// Sets the value at `i` of parameter `p` in the reference (LoRA factor or weight).
    func perturb(_ ref: inout ReferenceLlama, _ p: Parameter, _ i: Int, _ delta: Double, tokenIDs: [Int32] = []) {
        if p.name == "trainable_tokens" {
            let dim = ref.c.embeddingLength
            ref.w["token_embd.weight"]![Int(tokenIDs[i / dim]) * dim + i % dim] += delta
        } else if p.name.hasSuffix(".lora_a") || p.name.hasSuffix(".lora_b") {
            let key = String(p.name.dropLast(7)) + ".weight"
            if p.name.hasSuffix(".lora_a") { ref.lora[key]!.a[i] += delta } else { ref.lora[key]!.b[i] += delta }
        } else {
            ref.w[p.name]![i] += delta
        }
    }

    func batch(B: Int, L: Int, vocab: Int, seed: UInt64) -> ([Int32], [Int32]) {
        var rng = SeededRNG(seed: seed)
        let toks = (0..<(B * L)).map { _ in Int32(rng.next() % UInt64(vocab)) }
        var labels = toks
        for b in 0..<B {
            for t in 0..<L { labels[b * L + t] = t + 1 < L ? toks[b * L + t + 1] : ignoreLabel }
            labels[b * L] = ignoreLabel   // a masked prompt position
        }
        return (toks, labels)
    }

    /// Checks `samples` entries of every parameter against central differences of the reference.
    func checkModel(_ tm: TrainModel, B: Int = 2, L: Int = 6, samples: Int = 6, maskKey: UInt64 = 0, file: StaticString = #filePath,
                    line: UInt = #line) {
        let (toks, labels) = batch(B: B, L: L, vocab: tm.config.vocabSize, seed: 11)
        let count = labels.filter { $0 != ignoreLabel }.count
        tm.zeroGradients()
        let r = tm.step(tokens: toks, labels: labels, batch: B, length: L, gradScale: 1 / Float(count), backward: true, maskKey: maskKey)
        var ref = reference(tm)
        ref.maskKey = maskKey
        let refLoss = ref.loss(tokens: toks, labels: labels, B: B, L: L)
        XCTAssertEqual(r.lossSum / Double(r.count), refLoss, accuracy: 1e-4 * max(1, abs(refLoss)), "forward loss", file: file, line: line)
        var rng = SeededRNG(seed: 5)
        let h = 1e-4
        var checked = 0
        for p in tm.parameters {
            let g = p.gradients
            let idx = (0..<samples).map { _ in Int(rng.next() % UInt64(p.count)) }
            var numeric: [Double] = []
            for i in idx {
                perturb(&ref, p, i, h, tokenIDs: tm.tokenIDs)
                let up = ref.loss(tokens: toks, labels: labels, B: B, L: L)
                perturb(&ref, p, i, -2 * h, tokenIDs: tm.tokenIDs)
                let down = ref.loss(tokens: toks, labels: labels, B: B, L: L)
                perturb(&ref, p, i, h, tokenIDs: tm.tokenIDs)
                numeric.append((up - down) / (2 * h))
            }
            let scale = max(numeric.map(abs).max()!, p.gradients.map { abs(Double($0)) }.max()!)
            for (j, i) in idx.enumerated() {
                XCTAssertEqual(Double(g[i]), numeric[j], accuracy: Self.tolerance * scale + 1e-5, "\(p.name)[\(i)]", file: file, line: line)
            }
            checked += idx.count
        }
        XCTAssertGreaterThan(checked, 0)
    }

    func randomizeLoRA(_ tm: TrainModel, seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        for p in tm.parameters where p.name.hasSuffix(".lora_b") { p.set((0..<p.count).map { _ in rng.normal() * 0.3 }) }
    }

    func testLoRAAllTargetsGradients() throws {
        let m = try tinyModel(#function)
        let tm = try TrainModel(model: m, mode: .lora(LoRAConfig(rank: 4, alpha: 8, targets: Projection.allCases)), maxTokens: 12,
                                maxLength: 6, threads: 2, seed: 1)
        XCTAssertEqual(tm.parameters.count, 2 * 7 * 2)
        randomizeLoRA(tm, seed: 2)
        checkModel(tm)
        // Attention in several query blocks (as for real sequence lengths): blocks of 4 and 2 rows.
        for block in [4, 2] {
            Attention.queryBlock = block
            checkModel(tm, samples: 3)
        }
        Attention.queryBlock = 64
    }

    /// LoRA with trainable token rows (PEFT's trainable_token_indices): ids that occur as inputs,
    /// one only as a label, one nowhere; tied (the rows are the head's too) and untied (input only).
    func testTrainableTokenGradients() throws {
        let (toks, labels) = batch(B: 2, L: 6, vocab: 64, seed: 11)
        let inputs = Array(Set(toks)).sorted().prefix(3)
        let labelOnly = labels.first { $0 != ignoreLabel && !toks.contains($0) }
        let ids = Array(inputs) + (labelOnly.map { [$0] } ?? []) + [Int32((0..<64).first { !toks.contains(Int32($0)) && !labels.contains(Int32($0)) }!)]
        for (tied, dtype) in [(true, DType.f32), (false, .q8_0)] {
            let m = try tinyModel(#function + "\(tied)", dtype: dtype, tied: tied)
            let tm = try TrainModel(model: m, mode: .lora(LoRAConfig(rank: 2, alpha: 4, targets: [.q, .v], trainableTokens: ids)), maxTokens: 12,
                                    maxLength: 6, threads: 1, seed: 3)
            randomizeLoRA(tm, seed: 4)
            // Move the rows off the base so the tied head's correction term is exercised.
            var rng = SeededRNG(seed: 6)
            tm.tokenParam!.set(tm.tokenParam!.values.map { $0 + rng.normal() * 0.2 })
            checkModel(tm, samples: 24)
        }
    }

    func testLoRADropoutQuantizedUntiedGradients() throws {
        for dtype in [DType.q8_0, .q4_1, .f16] {
            let m = try tinyModel(#function + "\(dtype)", dtype: dtype, tied: false)
            let tm = try TrainModel(model: m, mode: .lora(LoRAConfig(rank: 2, alpha: 4, dropout: 0.3, targets: [.q, .v, .down])),
                                    maxTokens: 12, maxLength: 6, threads: 1, seed: 4)
            randomizeLoRA(tm, seed: 9)
            checkModel(tm, maskKey: 12345)
        }
    }

    func testFullFinetuneGradients() throws {
        for (tied, ckpt) in [(true, false), (false, true)] {
            let m = try tinyModel(#function + "\(tied)", tied: tied)
            let tm = try TrainModel(model: m, mode: .full, maxTokens: 12, maxLength: 6, threads: 2, checkpointing: ckpt)
            checkModel(tm, samples: 4)
        }
    }

    func testCheckpointingGivesIdenticalGradients() throws {
        let m = try tinyModel(#function, dtype: .q4_0)
        let cfg = LoRAConfig(rank: 4, alpha: 8, dropout: 0.1, targets: Projection.allCases)
        var grads: [[Float]] = []
        for ckpt in [false, true] {
            let tm = try TrainModel(model: m, mode: .lora(cfg), maxTokens: 16, maxLength: 8, threads: 2, checkpointing: ckpt, seed: 7)
            randomizeLoRA(tm, seed: 3)
            let (toks, labels) = batch(B: 2, L: 8, vocab: 64, seed: 1)
            tm.zeroGradients()
            _ = tm.step(tokens: toks, labels: labels, batch: 2, length: 8, gradScale: 0.1, backward: true, maskKey: 99)
            grads.append(tm.parameters.flatMap { $0.gradients })
        }
        XCTAssertEqual(grads[0], grads[1])
    }
}
