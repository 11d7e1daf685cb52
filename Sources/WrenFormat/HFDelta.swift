// Deltas as LMFlow and FastChat publish them: a Hugging Face checkpoint whose
// weights are tuned − base (their make_delta / apply_delta). A delta embedding
// or output head may have more rows than the base's (new tokens): the base is
// added to the leading rows, as their apply_delta does for a grown vocabulary.
// These deltas carry no hashes, so the base is checked only by names and shapes.

import Foundation
import WrenKernels

extension Delta {
    /// Values of a source tensor in Wren's row order, as f32 (Gemma's "1 + w" offset left out).
    static func sourceFloats(_ t: SourceTensor) -> [Float] {
        let n = t.shape.reduce(1, *)
        var x = [Float](repeating: 0, count: n)
        x.withUnsafeMutableBytes { t.write(as: .f32, into: $0) }
        if t.valueOffset != 0 { for i in 0..<n { x[i] -= t.valueOffset } }
        return x
    }

    /// Adds `base` into the leading block of `big` (same rank; `base` no larger in any dimension), or
    /// subtracts it. nil when the shapes do not fit.
    static func combineLeading(_ big: inout [Float], bigShape: [Int], _ base: [Float], baseShape: [Int], sign: Float) -> Bool {
        guard big.count > 0, bigShape.count == baseShape.count, zip(bigShape, baseShape).allSatisfy({ $0 >= $1 }) else { return false }
        if bigShape == baseShape {
            for i in 0..<big.count { big[i] += sign * base[i] }
            return true
        }
        guard bigShape.count <= 2 else { return false }
        let rows = bigShape.count == 2 ? baseShape[0] : 1, cols = baseShape.last!, bigCols = bigShape.last!
        for r in 0..<rows { for c in 0..<cols { big[r * bigCols + c] += sign * base[r * cols + c] } }
        return true
    }

    /// The base's tensors by name, after checking that `big` (a delta or a tuned model) has no
    /// tensor the base lacks and none the base's could not fill: same rank, no dimension
    /// smaller, and a shape that differs only for a matrix (a grown vocabulary).
    static func baseTensors(_ base: ModelSource, fitting big: ModelSource, basePath: String, other: String) throws -> [String: SourceTensor] {
        var byName: [String: SourceTensor] = [:]
        for t in base.tensors { byName[t.name] = t }
        for t in big.tensors {
            guard let b = byName[t.name] else {
                throw FormatError.invalid(path: basePath, field: "tensor \(t.name)", reason: "is missing; \(other) has it")
            }
            guard b.shape.count == t.shape.count, zip(t.shape, b.shape).allSatisfy({ $0 >= $1 }), t.shape == b.shape || t.shape.count <= 2 else {
                throw FormatError.invalid(path: basePath, field: "tensor \(t.name)", reason: "has shape \(b.shape), which \(other)'s \(t.shape) cannot hold")
            }
        }
        return byName
    }

    /// Adds a Hugging Face delta directory to `basePath` (.wren, GGUF or HF) and writes a .wren.
    /// Tensors are stored in the delta's float type, or by `type` (a stored type or mixture).
    /// The architecture and tokenizer are the delta's (a vocabulary change travels with it).
    public static func applyHF(delta deltaDir: String, base basePath: String, to path: String, type: QuantScheme? = nil,
                               overwrite: Bool = false, progress: ((WriteProgress) -> Void)? = nil) throws -> Int {
        try checkOutputPath(path, overwrite: overwrite)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: deltaDir, isDirectory: &isDir), isDir.boolValue else {
            throw FormatError.invalid(path: deltaDir, field: "delta", reason: "--format hf takes a Hugging Face directory (config.json, *.safetensors, tokenizer.json)")
        }
        let delta = try ModelSource.open(deltaDir)
        let base = try ModelSource.open(basePath)
        let baseByName = try baseTensors(base, fitting: delta, basePath: basePath, other: "the delta \(deltaDir)")
        let deltaNames = Set(delta.tensors.map(\.name))
        if let extra = base.tensors.first(where: { !deltaNames.contains($0.name) }) {
            throw FormatError.invalid(path: deltaDir, field: "tensor \(extra.name)", reason: "is missing; the base \(basePath) has it")
        }
        let (meta, _) = try ModelConverter.outputMetadata(delta)
        let options = ConvertOptions(type: type)
        let context = ModelConverter.mixtureContext(delta)
        let pending = delta.tensors.map { t -> PendingTensor in
            var kept = t
            kept.valueOffset = 0
            kept.originalDType = t.originalDType ?? t.dtype
            let target = ModelConverter.targetDType(kept, options, context: context)
            return PendingTensor(name: t.name, dtype: target, shape: t.shape) { dst in
                var x = sourceFloats(t)
                let b = baseByName[t.name]!
                _ = combineLeading(&x, bigShape: t.shape, sourceFloats(b), baseShape: b.shape, sign: 1)
                Quant.quantize(target, x).withUnsafeBytes { dst.copyMemory(from: $0) }
            }
        }
        try WrenWriter.write(to: path, metadata: meta, tensors: pending, options: WrenWriteOptions(overwrite: overwrite), progress: progress)
        return pending.count
    }

    /// Writes tuned − base as a Hugging Face directory (llama layout, `floatType` weights, the
    /// tuned model's config and tokenizer), the form LMFlow's and FastChat's apply_delta read.
    public static func makeHF(base basePath: String, tuned tunedPath: String, to dir: String, floatType: DType = .f32,
                              overwrite: Bool = false, progress: ((WriteProgress) -> Void)? = nil) throws {
        precondition(!floatType.isQuantized)
        let base = try ModelSource.open(basePath)
        let tuned = try ModelSource.open(tunedPath)
        let baseByName = try baseTensors(base, fitting: tuned, basePath: basePath, other: "the tuned model \(tunedPath)")
        // The differences go through a temporary .wren beside the output, then through the exporter.
        let parent = (dir as NSString).deletingLastPathComponent
        let tmp = (parent.isEmpty ? "." : parent) + "/.wren-delta-\(getpid()).wren"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let pending = tuned.tensors.map { t -> PendingTensor in
            let type: DType = t.shape.count == 1 ? .f32 : floatType
            return PendingTensor(name: t.name, dtype: type, shape: t.shape) { dst in
                var x = sourceFloats(t)
                let b = baseByName[t.name]!
                _ = combineLeading(&x, bigShape: t.shape, sourceFloats(b), baseShape: b.shape, sign: -1)
                Quant.quantize(type, x).withUnsafeBytes { dst.copyMemory(from: $0) }
            }
        }
        try WrenWriter.write(to: tmp, metadata: tuned.metadata, tensors: pending, options: WrenWriteOptions(overwrite: true), progress: progress)
        try HFExporter.export(try WrenFile(path: tmp), to: dir, floatType: floatType, overwrite: overwrite)
    }
}
