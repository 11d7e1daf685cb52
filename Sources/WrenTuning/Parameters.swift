// Trainable tensors (f32 value and gradient), LoRA modules, and the linear
// layer used in training: a frozen base matrix in any stored dtype (or a
// trainable f32 one in full finetuning) plus an optional LoRA branch.

import CBLAS
import Foundation
import WrenEngine
import WrenFormat
import WrenKernels

/// A trainable f32 tensor and its gradient.
public final class Parameter: @unchecked Sendable {
    /// Wren-style name (`blk.0.attn_q.lora_a`, `token_embd.weight`, ...).
    public let name: String
    public let shape: [Int]
    public let count: Int
    public let value: UnsafeMutablePointer<Float>
    public let grad: UnsafeMutablePointer<Float>
    /// Whether AdamW's weight decay applies (not to norm weights).
    public let decays: Bool

    init(name: String, shape: [Int], decays: Bool = true) {
        self.name = name
        self.shape = shape
        count = shape.reduce(1, *)
        value = zeroedFloats(count)
        grad = zeroedFloats(count)
        self.decays = decays
    }

    deinit { free(value); free(grad) }

    public var values: [Float] { Array(UnsafeBufferPointer(start: value, count: count)) }
    public var gradients: [Float] { Array(UnsafeBufferPointer(start: grad, count: count)) }
    public func set(_ v: [Float]) {
        precondition(v.count == count)
        v.withUnsafeBufferPointer { value.update(from: $0.baseAddress!, count: count) }
    }
    func zeroGrad() { grad.update(repeating: 0, count: count) }
}

/// `count` zero floats from calloc (release with free): large blocks come as
/// fresh zero pages that take no memory until written, so the gradients and
/// moments of layers LISA never samples cost nothing.
func zeroedFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
    guard let p = calloc(max(count, 1), MemoryLayout<Float>.stride) else {
        fatalError("out of memory allocating \(count) floats")
    }
    return p.bindMemory(to: Float.self, capacity: max(count, 1))
}

/// LoRA settings (PEFT's names in comments).
public struct LoRAConfig: Sendable, Equatable {
    /// Rank r (`r`).
    public var rank: Int = 8
    /// α (`lora_alpha`); the update is scaled by α/r (α/√r with rsLoRA).
    public var alpha: Float = 16
    /// Dropout on the LoRA branch's input (`lora_dropout`).
    public var dropout: Float = 0
    /// Target projections (`target_modules`).
    public var targets: [Projection] = [.q, .v]
    /// rsLoRA scaling (`use_rslora`).
    public var rsLoRA = false
    /// Embedding rows trained whole beside the LoRA factors (PEFT's `trainable_token_indices`;
    /// with tied embeddings the output head's rows too), e.g. the tokens `wren vocab extend` added.
    public var trainableTokens: [Int32] = []

    public init(rank: Int = 8, alpha: Float = 16, dropout: Float = 0, targets: [Projection] = [.q, .v], rsLoRA: Bool = false,
                trainableTokens: [Int32] = []) {
        self.rank = rank; self.alpha = alpha; self.dropout = dropout; self.targets = targets; self.rsLoRA = rsLoRA
        self.trainableTokens = trainableTokens
    }

    public var scale: Float { rsLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }
}

/// The LoRA branch of one projection: y += s·B·A·dropout(x).
final class LoRAModule: @unchecked Sendable {
    let a: Parameter   // r × in
    let b: Parameter   // out × r
    let rank: Int, inFeatures: Int, outFeatures: Int
    let scale: Float
    let dropout: Float
    /// Identifies this module's dropout masks.
    let key: UInt64
    /// A·dropout(x) of the last forward (T × r), kept for the backward.
    let u: UnsafeMutablePointer<Float>

    init(name: String, rank: Int, inFeatures: Int, outFeatures: Int, scale: Float, dropout: Float, key: UInt64, maxTokens: Int) {
        a = Parameter(name: name + ".lora_a", shape: [rank, inFeatures])
        b = Parameter(name: name + ".lora_b", shape: [outFeatures, rank])
        self.rank = rank; self.inFeatures = inFeatures; self.outFeatures = outFeatures
        self.scale = scale; self.dropout = dropout; self.key = key
        u = .allocate(capacity: maxTokens * rank)
    }
    deinit { u.deallocate() }

    /// A initialised as PEFT does (Kaiming-uniform with a = √5: U(−1/√in, 1/√in)), B = 0.
    func initialise(_ rng: inout TrainRNG) {
        let bound = 1 / Float(inFeatures).squareRoot()
        for i in 0..<a.count { a.value[i] = (rng.uniform() * 2 - 1) * bound }
        b.value.update(repeating: 0, count: b.count)
    }
}

/// Training's generator: SplitMix64 with a float helper, and counter-based values for
/// dropout masks (the same key and index always give the same value, so masks are
/// regenerated in the backward pass and after a resume instead of being stored).
public typealias TrainRNG = SplitMix64

extension SplitMix64 {
    /// Uniform in [0, 1).
    public mutating func uniform() -> Float { Float(next() >> 40) * 0x1p-24 }
    /// Uniform in [0, 1) for (key, index), stateless.
    static func hashUniform(_ key: UInt64, _ index: UInt64) -> Float {
        Float(mix(key ^ (index &* 0x9E37_79B9_7F4A_7C15)) >> 40) * 0x1p-24
    }
}

/// A projection in training: frozen or trainable base, optional LoRA.
final class TrainLinear: @unchecked Sendable {
    let weight: WeightMatrix
    let full: Parameter?
    let lora: LoRAModule?

    init(weight: WeightMatrix, full: Parameter?, lora: LoRAModule?) {
        self.weight = weight; self.full = full; self.lora = lora
    }

    /// Writes dropout(x) into `out` (T × in) for the mask of `key`.
    static func dropout(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int, p: Float, key: UInt64) {
        let keep = 1 / (1 - p)
        for i in 0..<count {
            out[i] = TrainRNG.hashUniform(key, UInt64(i)) < p ? 0 : x[i] * keep
        }
    }

    /// y (T × out) = x·Wᵀ + s·(dropout(x)·Aᵀ)·Bᵀ. `maskKey` varies per step and micro-batch.
    func forward(_ x: UnsafePointer<Float>, T: Int, y: UnsafeMutablePointer<Float>, ctx: TrainContext) {
        Layers.linearForward(weight, x: x, T: T, y: y, scratch: ctx.scratch, threads: ctx.threads)
        guard let m = lora else { return }
        var xin = x
        if m.dropout > 0 && ctx.training {
            TrainLinear.dropout(x, ctx.dropBuffer, count: T * m.inFeatures, p: m.dropout, key: ctx.maskKey ^ m.key)
            xin = UnsafePointer(ctx.dropBuffer)
        }
        Layers.sgemm(CblasNoTrans, CblasTrans, T, m.rank, m.inFeatures,
                    1, xin, m.inFeatures, m.a.value, m.inFeatures, 0, m.u, m.rank, threads: ctx.threads)
        Layers.sgemm(CblasNoTrans, CblasTrans, T, m.outFeatures, m.rank,
                    m.scale, m.u, m.rank, m.b.value, m.rank, 1, y, m.outFeatures, threads: ctx.threads)
    }

    /// Given dy, adds parameter gradients (unless `weights` is false: a frozen
    /// layer) and (when `dx` is given) dx += dy·W + LoRA's share.
    /// `x` is the forward input; the LoRA module's `u` must be from the forward of the same x.
    func backward(_ x: UnsafePointer<Float>, dy: UnsafePointer<Float>, T: Int, dx: UnsafeMutablePointer<Float>?, ctx: TrainContext,
                  weights: Bool = true) {
        if let dx { Layers.linearBackwardInput(weight, dy: dy, T: T, dx: dx, scratch: ctx.scratch, threads: ctx.threads) }
        if let full, weights { Layers.linearBackwardWeight(dy: dy, x: x, T: T, rows: weight.rows, cols: weight.cols, dw: full.grad, threads: ctx.threads) }
        guard let m = lora else { return }
        let du = ctx.loraBuffer
        // dU = s·dy·B (T × r); dB += s·dyᵀ·U; dA += dUᵀ·dropout(x); dx += mask⊙(dU·A)
        Layers.sgemm(CblasNoTrans, CblasNoTrans, T, m.rank, m.outFeatures,
                    m.scale, dy, m.outFeatures, m.b.value, m.rank, 0, du, m.rank, threads: ctx.threads)
        let dropping = m.dropout > 0 && ctx.training
        if weights {
            Layers.sgemm(CblasTrans, CblasNoTrans, m.outFeatures, m.rank, T,
                        m.scale, dy, m.outFeatures, m.u, m.rank, 1, m.b.grad, m.rank, threads: ctx.threads)
            var xin = x
            if dropping {
                TrainLinear.dropout(x, ctx.dropBuffer, count: T * m.inFeatures, p: m.dropout, key: ctx.maskKey ^ m.key)
                xin = UnsafePointer(ctx.dropBuffer)
            }
            Layers.sgemm(CblasTrans, CblasNoTrans, m.rank, m.inFeatures, T,
                        1, du, m.rank, xin, m.inFeatures, 1, m.a.grad, m.inFeatures, threads: ctx.threads)
        }
        guard let dx else { return }
        if dropping {
            // dropBuffer held dropout(x); reuse it for dU·A, then apply the mask.
            let tmp = ctx.dropBuffer
            Layers.sgemm(CblasNoTrans, CblasNoTrans, T, m.inFeatures, m.rank,
                        1, du, m.rank, m.a.value, m.inFeatures, 0, tmp, m.inFeatures, threads: ctx.threads)
            let keep = 1 / (1 - m.dropout), key = ctx.maskKey ^ m.key
            for i in 0..<(T * m.inFeatures) where TrainRNG.hashUniform(key, UInt64(i)) >= m.dropout {
                dx[i] += tmp[i] * keep
            }
        } else {
            Layers.sgemm(CblasNoTrans, CblasNoTrans, T, m.inFeatures, m.rank,
                        1, du, m.rank, m.a.value, m.inFeatures, 1, dx, m.inFeatures, threads: ctx.threads)
        }
    }
}

/// Per-pass settings and scratch handed to the layers.
final class TrainContext: @unchecked Sendable {
    let scratch: Scratch
    let threads: Int
    /// Dropout is active only in training passes.
    var training = true
    /// Mixed into each module's mask key; changes every micro-batch.
    var maskKey: UInt64 = 0
    /// T × max(in) floats for dropout(x).
    let dropBuffer: UnsafeMutablePointer<Float>
    /// T × r floats for dU.
    let loraBuffer: UnsafeMutablePointer<Float>

    init(scratch: Scratch, threads: Int, maxTokens: Int, maxIn: Int, maxRank: Int) {
        self.scratch = scratch
        self.threads = threads
        dropBuffer = .allocate(capacity: max(1, maxTokens * maxIn))
        loraBuffer = .allocate(capacity: max(1, maxTokens * maxRank))
    }
    deinit { dropBuffer.deallocate(); loraBuffer.deallocate() }
}
