// Every buffer an inference session writes, allocated once (after llama2.c's
// RunState). B = the session's maxBatch (rows of a prompt chunk), dim =
// embeddingLength, qDim = heads·headDim, kvDim = kvHeads·headDim, ff =
// feedForwardLength, ctx = the context length. Every buffer, the cache too, is
// written before it is read (attention reads a sequence's rows below its
// position only) and left unzeroed, so pages that a short chunk or a short
// sequence never uses never become resident.

import WrenFormat
import WrenKernels

final class RunState {
    /// [layers][sequences][ctx][kvDim] keys in the cache type (a position's row is
    /// `kvType.bytes(kvDim)` bytes): each sequence of a multi-sequence session has
    /// its own `ctx` rows in every layer.
    let keyCache: UnsafeMutableRawPointer
    /// [layers][sequences][ctx][kvDim] values, likewise.
    let valueCache: UnsafeMutableRawPointer
    /// [B][dim] the residual stream.
    let x: UnsafeMutablePointer<Float>
    /// [B][dim] a norm's output (the final norm's too).
    let normed: UnsafeMutablePointer<Float>
    /// [B][qDim] queries.
    let q: UnsafeMutablePointer<Float>
    /// [B][kvDim] keys and values of the chunk, before they are stored in the cache.
    let k, v: UnsafeMutablePointer<Float>
    /// [B][qDim] attention output.
    let attention: UnsafeMutablePointer<Float>
    /// [B][dim] a projection's output before its residual add.
    let projected: UnsafeMutablePointer<Float>
    /// [B][ff] gate (then silu(gate)·up, in place) and up.
    let gate, up: UnsafeMutablePointer<Float>
    /// [vocab] the last row's logits.
    let logits: UnsafeMutablePointer<Float>
    /// [rows·cols of the largest layer weight] one weight dequantized for OpenBLAS (prompt chunks).
    let weightScratch: UnsafeMutablePointer<Float>
    /// Its capacity: a tile of rows for `Ops.matmulBLAS` (at least one row of the widest matrix).
    let weightScratchFloats: Int
    /// [B][rotary] cos/sin of each row's position; then, for a model whose windowed
    /// layers have their own RoPE, their table ([B][rotary] more).
    let rope: UnsafeMutablePointer<Float>
    let ropeLocal: UnsafeMutablePointer<Float>?
    /// [B][ctx] one head's attention probabilities (prompt chunks).
    let scores: UnsafeMutablePointer<Float>
    /// [2][ctx][headDim] one kv head's keys, then values, widened to f32 (prompt chunks over an f16/q8_0 cache).
    let kvWide: UnsafeMutablePointer<Float>

    /// The block buffers of a chunk: the stream `x` updated in place, SwiGLU in `gate`.
    var block: BlockBuffers {
        BlockBuffers(input: x, middle: x, output: x, normed: normed, q: q, k: k, v: v, attention: attention, projected: projected,
                     gate: gate, up: up, hidden: gate, rope: rope, ropeLocal: ropeLocal.map { UnsafePointer($0) })
    }

    /// Sizes were checked by the session (the cache against the machine's memory).
    init(model: LlamaModel, maxBatch B: Int, context ctx: Int, sequences: Int, layers: Int, kvType: KVCacheType) {
        let c = model.config
        let dim = c.embeddingLength, qDim = c.headCount * c.headDim, kvDim = c.headCountKV * c.headDim
        let cacheBytes = max(1, layers * sequences * ctx * kvType.bytes(kvDim))
        keyCache = UnsafeMutableRawPointer.allocate(byteCount: cacheBytes, alignment: 64)
        valueCache = UnsafeMutableRawPointer.allocate(byteCount: cacheBytes, alignment: 64)
        func alloc(_ n: Int) -> UnsafeMutablePointer<Float> { .allocate(capacity: max(n, 1)) }
        x = alloc(B * dim); normed = alloc(B * max(dim, qDim)); q = alloc(B * qDim)
        k = alloc(B * kvDim); v = alloc(B * kvDim); attention = alloc(B * qDim); projected = alloc(B * dim)
        gate = alloc(B * c.feedForwardLength); up = alloc(B * c.feedForwardLength); logits = alloc(c.vocabSize)
        let biggest = model.layers.first.map { l in Projection.allCases.map { $0.matrix(l).rows * $0.matrix(l).cols }.max()! } ?? 1
        let widest = model.layers.first.map { l in Projection.allCases.map { $0.matrix(l).cols }.max()! } ?? 1
        weightScratchFloats = min(biggest, max(Ops.blasTileFloats, widest))
        weightScratch = alloc(weightScratchFloats)
        let ropeRow = max(model.rope.dimensions, 2)
        rope = alloc(B * ropeRow * (model.ropeLocal == nil ? 1 : 2))
        ropeLocal = model.ropeLocal == nil ? nil : rope + B * ropeRow
        scores = alloc(B * ctx)
        kvWide = alloc(2 * ctx * c.headDim)
    }

    deinit {
        keyCache.deallocate()
        valueCache.deallocate()
        for p in [x, normed, q, k, v, attention, projected, gate, up, logits, weightScratch, rope, scores, kvWide] { p.deallocate() }
    }
}
