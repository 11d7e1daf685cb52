// AdamW (decoupled weight decay, PyTorch's formulation), learning-rate
// schedules with linear warm-up (Hugging Face's shapes), and clipping by the
// global gradient norm.

import Foundation

public enum Schedule: String, Sendable, CaseIterable {
    case cosine, linear, constant

    /// Multiplier of the peak rate for optimizer step `step` (0-based) of `total`.
    public func factor(step: Int, total: Int, warmup: Int) -> Float {
        if step < warmup { return Float(step + 1) / Float(warmup + 1) }
        let span = max(1, total - warmup)
        let progress = min(1, Float(step - warmup) / Float(span))
        switch self {
        case .constant: return 1
        case .linear: return max(0, 1 - progress)
        case .cosine: return 0.5 * (1 + cosf(Float.pi * progress))
        }
    }
}

public final class AdamW: @unchecked Sendable {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var weightDecay: Float
    /// First and second moments, one pair per parameter, in `parameters` order.
    let m: [UnsafeMutablePointer<Float>]
    let v: [UnsafeMutablePointer<Float>]
    let counts: [Int]
    /// Optimizer steps taken so far.
    public internal(set) var t = 0
    /// Updates each parameter has had (bias correction is per parameter, as in
    /// PyTorch: with LISA a layer is only updated while it is sampled).
    public internal(set) var steps: [Int]
    let index: [ObjectIdentifier: Int]

    public init(parameters: [Parameter], weightDecay: Float) {
        self.weightDecay = weightDecay
        counts = parameters.map(\.count)
        steps = Array(repeating: 0, count: parameters.count)
        index = Dictionary(uniqueKeysWithValues: parameters.enumerated().map { (ObjectIdentifier($0.element), $0.offset) })
        m = counts.map(zeroedFloats)
        v = counts.map(zeroedFloats)
    }

    deinit { for p in m + v { free(p) } }

    /// One update, at learning rate `lr`, of `parameters` (all of those the
    /// optimizer was made for, or a subset of them); the others keep their
    /// values and moments.
    public func step(_ parameters: [Parameter], lr: Float) {
        t += 1
        let b1 = beta1, b2 = beta2, e = eps
        for p in parameters {
            guard let i = index[ObjectIdentifier(p)] else { preconditionFailure("\(p.name) is not handled by this optimizer") }
            steps[i] += 1
            let bc1 = 1 - powf(beta1, Float(steps[i])), bc2 = 1 - powf(beta2, Float(steps[i]))
            let decay = p.decays ? 1 - lr * weightDecay : 1
            let w = p.value, g = p.grad, mm = m[i], vv = v[i]
            for j in 0..<p.count {
                let gj = g[j]
                mm[j] = b1 * mm[j] + (1 - b1) * gj
                vv[j] = b2 * vv[j] + (1 - b2) * gj * gj
                let update = (mm[j] / bc1) / ((vv[j] / bc2).squareRoot() + e)
                w[j] = w[j] * decay - lr * update
            }
        }
    }

    /// The first (or second) moment of parameter `i`, for streaming a checkpoint.
    func momentPointer(_ i: Int, second: Bool) -> UnsafePointer<Float> { UnsafePointer(second ? v[i] : m[i]) }

    /// Restores state saved by a checkpoint.
    func restore(m ms: [[Float]], v vs: [[Float]], t: Int, steps st: [Int]) {
        for i in 0..<counts.count {
            ms[i].withUnsafeBufferPointer { m[i].update(from: $0.baseAddress!, count: counts[i]) }
            vs[i].withUnsafeBufferPointer { v[i].update(from: $0.baseAddress!, count: counts[i]) }
        }
        self.t = t
        steps = st
    }
}

/// The global L2 norm of all gradients; when it exceeds `maxNorm` (> 0) every
/// gradient is scaled down to that norm. Returns the norm before clipping.
@discardableResult
public func clipGradients(_ parameters: [Parameter], maxNorm: Float) -> Float {
    var ss: Double = 0
    for p in parameters { for j in 0..<p.count { ss += Double(p.grad[j]) * Double(p.grad[j]) } }
    let norm = Float(ss.squareRoot())
    if maxNorm > 0, norm > maxNorm {
        let s = maxNorm / (norm + 1e-6)
        for p in parameters { for j in 0..<p.count { p.grad[j] *= s } }
    }
    return norm
}
