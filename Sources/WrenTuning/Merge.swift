// `wren merge`: LoRA deltas folded into the base — each touched matrix
// dequantized, scale·B·A added, requantized — with a report of how much of each
// update the requantized weights still carry.

import Foundation
import WrenEngine
import WrenFormat
import WrenKernels

/// How much of one projection's update survived requantization.
public struct MergeReport: Sendable {
    public var tensor: String
    public var dtype: DType
    /// ‖ΔW‖ (Frobenius) of the intended update.
    public var updateNorm: Double
    /// ⟨W'−W, ΔW⟩ / ‖ΔW‖²: 1 when the stored change equals the update, 0 when nothing moved.
    public var survived: Double
}

public enum Merger {
    /// Merges the model's attached adapters into a new file.
    /// - Parameter type: element type of the merged matrices (default: each base matrix's own).
    /// - Returns: one report per merged matrix.
    public static func merge(model: LlamaModel, type: DType?, to path: String, overwrite: Bool) throws -> [MergeReport] {
        let f = model.file
        try f.verify()   // every base tensor is read (merged or copied): check them all first
        var reports: [MergeReport] = []
        var merged: [String: (DType, [UInt8])] = [:]
        for (l, byProj) in model.adapters.enumerated() {
            for p in Projection.allCases {
                guard let deltas = byProj[p], !deltas.isEmpty else { continue }
                let name = p.tensor.name(layer: l)
                let w = p.matrix(model.layers[l])
                let n = w.rows * w.cols
                var base = [Float](repeating: 0, count: n)
                base.withUnsafeMutableBufferPointer { Quant.dequantize(w.dtype, w.data, $0.baseAddress!, count: n) }
                var delta = [Float](repeating: 0, count: n)
                for d in deltas {
                    let dd = d.dense()
                    for i in 0..<n { delta[i] += dd[i] }
                }
                let target = (0..<n).map { base[$0] + delta[$0] }
                if let i = target.firstIndex(where: { !$0.isFinite }) {
                    throw EngineError.invalidParameter("merging into \(name) gives \(target[i]) at element \(i) (the adapter's update overflows); nothing written")
                }
                // A type whose blocks do not fit the rows (k-quants on 576-wide rows) falls back as convert's do.
                let dt = QuantScheme.fallback(type ?? w.dtype, rowLength: w.cols)
                let bytes = Quant.quantize(dt, target)
                let stored = Quant.dequantize(dt, bytes, count: n)
                // The change actually stored, against the base as stored before.
                var dot = 0.0, dd = 0.0
                for i in 0..<n {
                    let moved = Double(stored[i]) - Double(base[i])
                    dot += moved * Double(delta[i]); dd += Double(delta[i]) * Double(delta[i])
                }
                reports.append(MergeReport(tensor: name, dtype: dt, updateNorm: dd.squareRoot(), survived: dd > 0 ? dot / dd : 1))
                merged[name] = (dt, bytes)
            }
        }
        if !model.tokenRows.isEmpty {
            // Trainable token rows replace their embedding rows (the tied head's too: the same tensor).
            let e = model.embedding, dim = e.cols
            let dt = QuantScheme.fallback(type ?? e.dtype, rowLength: dim)
            var rows = [Float](repeating: 0, count: e.rows * dim)
            rows.withUnsafeMutableBufferPointer { Quant.dequantize(e.dtype, e.data, $0.baseAddress!, count: e.rows * dim) }
            for (id, r) in model.tokenRows { for j in 0..<dim { rows[Int(id) * dim + j] = r[j] } }
            merged[TensorNames.tokenEmbedding] = (dt, Quant.quantize(dt, rows))
            reports.append(MergeReport(tensor: TensorNames.tokenEmbedding, dtype: dt, updateNorm: 0, survived: 1))
        }
        var pending: [PendingTensor] = []
        for info in f.tensors {
            if let (dt, bytes) = merged[info.name] {
                pending.append(PendingTensor(name: info.name, dtype: dt, shape: info.shape, bytes: bytes))
            } else {
                let data = try f.verifiedTensor(info.name).data
                pending.append(PendingTensor(name: info.name, dtype: info.dtype, shape: info.shape) { $0.copyMemory(from: data) })
            }
        }
        try WrenWriter.write(to: path, metadata: f.metadata, tensors: pending, options: .init(overwrite: overwrite))
        return reports
    }
}
