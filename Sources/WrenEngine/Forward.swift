// The llama forward pass, once, for inference and training. `LlamaBlock.forward`
// is one transformer block written as its math; the embedding lookup and the
// RoPE tables before the blocks are `WeightMatrix.gatherRows` and
// `RopeSettings.tables`. What differs between running a block for inference
// and for training is a `BlockOps`:
//   - the engine's (Session.swift) multiplies on the decode kernels or OpenBLAS,
//     adds run-time LoRA deltas, and attends over the KV cache after appending
//     the chunk's keys and values;
//   - the trainer's (WrenTuning/TrainModel.swift) multiplies through its
//     trainable linears (LoRA, dropout) and attends within each sequence; its
//     `BlockBuffers` point into per-layer storage, which is how the activations
//     its backward needs are kept.
// Timing (the engine's profiler) lives in the ops, never in the block.
//
// Where architecture differences go, each switched by the model config
// (WrenFormat/ModelConfig.swift), never by an architecture name:
//   - QK-norm: a norm of each head's q and k between the projection and RoPE;
//   - post-norms (Gemma): a norm of each sub-layer's output before its
//     residual add;
//   - GeGLU: `activate`, chosen by the config's activation;
//   - sliding windows: `attend` reads the layer's window from the config, and
//     the block picks the windowed layers' RoPE table (their own base);
//   - the embedding scale: applied where the rows are looked up;
//   - biases on q/k/v/o (not yet): the projections (a weight carries its bias).

import WrenFormat
import WrenKernels

/// The norms of a block: llama's two, then QK-norm's (head-dimension vectors)
/// and the post-norms, which only configs that switch them on ask for.
public enum BlockNorm: Sendable {
    case attention, feedForward
    case query, key
    case postAttention, postFeedForward
}

/// The parts of a block that depend on who runs it (see the file comment).
public protocol BlockOps {
    /// Calls `body` with layer `layer`'s weight for `norm` (embeddingLength floats).
    func withNormWeight(_ norm: BlockNorm, layer: Int, _ body: (UnsafePointer<Float>) -> Void)
    /// outputs[i] (tokens × rows of projection i) = input (tokens × cols) · Wᵢᵀ,
    /// adapters included, for projections that share one input.
    mutating func project(_ projections: [Projection], layer: Int, input: UnsafeMutablePointer<Float>,
                          outputs: [UnsafeMutablePointer<Float>], tokens: Int)
    /// out (tokens × qDim) = causal grouped-query attention of the rotated q rows
    /// over keys and values (tokens × kvDim each, rotated k).
    mutating func attend(layer: Int, q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                         out: UnsafeMutablePointer<Float>, tokens: Int)
}

/// The activations of one block over T token rows (dim = embeddingLength,
/// qDim = heads·headDim, kvDim = kvHeads·headDim, ff = feedForwardLength).
public struct BlockBuffers {
    /// [T][dim] the residual stream entering the block.
    public var input: UnsafeMutablePointer<Float>
    /// [T][dim] the stream after the attention residual (may be `input`: updated in place).
    public var middle: UnsafeMutablePointer<Float>
    /// [T][dim] the stream leaving the block (may be `middle`).
    public var output: UnsafeMutablePointer<Float>
    /// [T][dim] a norm's output, the input of the next products.
    public var normed: UnsafeMutablePointer<Float>
    /// [T][qDim] queries; [T][kvDim] keys and values.
    public var q, k, v: UnsafeMutablePointer<Float>
    /// [T][qDim] attention output.
    public var attention: UnsafeMutablePointer<Float>
    /// [T][dim] a projection's output before its residual add.
    public var projected: UnsafeMutablePointer<Float>
    /// [T][ff] the gate and up projections.
    public var gate, up: UnsafeMutablePointer<Float>
    /// [T][ff] silu(gate)·up (may be `gate`: computed in place).
    public var hidden: UnsafeMutablePointer<Float>
    /// [T][rotary] cos/sin of each row's position (`RopeSettings.tables`).
    public var rope: UnsafePointer<Float>
    /// The same for the sliding-window layers when their RoPE base differs (nil: `rope`).
    public var ropeLocal: UnsafePointer<Float>?

    public init(input: UnsafeMutablePointer<Float>, middle: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>,
                normed: UnsafeMutablePointer<Float>, q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
                v: UnsafeMutablePointer<Float>, attention: UnsafeMutablePointer<Float>, projected: UnsafeMutablePointer<Float>,
                gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>, hidden: UnsafeMutablePointer<Float>,
                rope: UnsafePointer<Float>, ropeLocal: UnsafePointer<Float>? = nil) {
        self.input = input; self.middle = middle; self.output = output; self.normed = normed
        self.q = q; self.k = k; self.v = v; self.attention = attention; self.projected = projected
        self.gate = gate; self.up = up; self.hidden = hidden; self.rope = rope; self.ropeLocal = ropeLocal
    }
}

public enum LlamaBlock {
    /// Layer `layer` over T rows:
    ///   h  = x + P_a(o(attention(rope(N_q(q(n))), rope(N_k(k(n))), v(n)))),  n = RMSNorm(x)
    ///   x' = h + P_f(down(act(gate(m)) · up(m))),                            m = RMSNorm(h)
    /// where N_q, N_k (QK-norm) and P_a, P_f (post-norms) are per-head / per-row
    /// RMSNorms present only when the config has them, act is silu or tanh-GELU,
    /// and windowed layers use their own RoPE table.
    public static func forward<O: BlockOps>(_ ops: inout O, layer l: Int, tokens T: Int, config c: ModelConfig, rotary: Int,
                                              _ b: BlockBuffers, threads: Int) {
        let dim = c.embeddingLength
        ops.withNormWeight(.attention, layer: l) { w in
            Ops.rmsNorm(b.input, w, b.normed, rows: T, n: dim, eps: c.rmsNormEps, threads: threads)
        }
        ops.project([.q, .k, .v], layer: l, input: b.normed, outputs: [b.q, b.k, b.v], tokens: T)
        if c.qkNorm {
            ops.withNormWeight(.query, layer: l) { w in
                Ops.rmsNorm(b.q, w, b.q, rows: T * c.headCount, n: c.headDim, eps: c.rmsNormEps, threads: threads)
            }
            ops.withNormWeight(.key, layer: l) { w in
                Ops.rmsNorm(b.k, w, b.k, rows: T * c.headCountKV, n: c.headDim, eps: c.rmsNormEps, threads: threads)
            }
        }
        let table = c.isWindowed(layer: l) ? b.ropeLocal ?? b.rope : b.rope
        Ops.rope(b.q, rows: T, heads: c.headCount, headDim: c.headDim, rotary: rotary, tables: table)
        Ops.rope(b.k, rows: T, heads: c.headCountKV, headDim: c.headDim, rotary: rotary, tables: table)
        ops.attend(layer: l, q: b.q, k: b.k, v: b.v, out: b.attention, tokens: T)
        ops.project([.o], layer: l, input: b.attention, outputs: [b.projected], tokens: T)
        if c.postNorms {
            ops.withNormWeight(.postAttention, layer: l) { w in
                Ops.rmsNorm(b.projected, w, b.projected, rows: T, n: dim, eps: c.rmsNormEps, threads: threads)
            }
        }
        add(b.input, b.projected, into: b.middle, count: T * dim)

        ops.withNormWeight(.feedForward, layer: l) { w in
            Ops.rmsNorm(b.middle, w, b.normed, rows: T, n: dim, eps: c.rmsNormEps, threads: threads)
        }
        ops.project([.gate, .up], layer: l, input: b.normed, outputs: [b.gate, b.up], tokens: T)
        activate(c.activation, gate: b.gate, up: b.up, into: b.hidden, count: T * c.feedForwardLength)
        ops.project([.down], layer: l, input: b.hidden, outputs: [b.projected], tokens: T)
        if c.postNorms {
            ops.withNormWeight(.postFeedForward, layer: l) { w in
                Ops.rmsNorm(b.projected, w, b.projected, rows: T, n: dim, eps: c.rmsNormEps, threads: threads)
            }
        }
        add(b.middle, b.projected, into: b.output, count: T * dim)
    }

    /// out = a + b (the residual add; `out` may be `a`).
    static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { out[i] = a[i] + b[i] }
    }

    /// out = act(gate)·up (SwiGLU or GeGLU; `out` may be `gate`).
    static func activate(_ act: Activation, gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>,
                         into out: UnsafeMutablePointer<Float>, count: Int) {
        if out != gate { out.update(from: gate, count: count) }
        switch act {
        case .silu: Ops.swiglu(out, up, count)
        case .geluTanh: Ops.geglu(out, up, count)
        }
    }
}

extension WeightMatrix {
    /// out[t] = row ids[t] widened to f32 (the embedding lookup): ids.count × cols floats.
    /// The ids were checked against `rows` by the caller.
    public func gatherRows(_ ids: [Int32], into out: UnsafeMutablePointer<Float>) {
        let rowBytes = dtype.byteCount(elements: cols)!
        for (t, id) in ids.enumerated() { Quant.dequantize(dtype, data + Int(id) * rowBytes, out + t * cols, count: cols) }
    }
}

extension RopeSettings {
    /// The cos/sin table of each position, one row of `dimensions` floats per position
    /// (scaled by `magnitude` under YaRN). Dynamic NTK takes the sequence length to be
    /// one past the largest position.
    public func tables(positions: some Collection<Int>, into out: UnsafeMutablePointer<Float>) {
        let f = inverseFrequencies(length: (positions.max() ?? 0) + 1)
        let m = magnitude
        f.withUnsafeBufferPointer { fp in
            for (t, p) in positions.enumerated() {
                Ops.ropeTable(position: position(p), rotary: dimensions, invFreq: fp.baseAddress!, into: out + t * dimensions)
                if m != 1 { for j in 0..<dimensions { out[t * dimensions + j] *= m } }
            }
        }
    }
}
