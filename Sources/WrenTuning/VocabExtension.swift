// `wren vocab extend`: new tokens learned on a domain text (VocabLearner),
// appended to the vocabulary with the lowest priority, and new embedding (and
// output) rows initialised from the mean of the rows of the tokens each new
// token is made of. Every other tensor is copied byte for byte.

import Foundation
import WrenEngine
import WrenFormat
import WrenKernels
import WrenTokenizer

public enum VocabExtension {
    public struct Report: Sendable {
        public var added: Int
        public var firstNewID: Int
        /// Tokens for the domain text before and after, and its size in bytes.
        public var tokensBefore: Int
        public var tokensAfter: Int
        public var bytes: Int
        public var examples: [String]
    }

    /// The text of every instance of an LMFlow dataset, joined by newlines.
    public static func text(of data: RawDataset) -> String {
        func flat(_ i: RawInstance) -> [String] {
            switch i {
            case .text(let t): return [t]
            case let .text2text(input, output): return [input, output]
            case let .conversation(system, messages): return (system.map { [$0] } ?? []) + messages.map(\.content)
            case let .pair(chosen, rejected): return flat(chosen) + flat(rejected)
            }
        }
        return data.instances.flatMap(flat).joined(separator: "\n")
    }

    /// Extends `modelPath`'s vocabulary by `count` tokens learned on `text` and writes the
    /// model to `outPath` (atomically).
    public static func extend(model modelPath: String, text: String, count: Int, to outPath: String,
                              overwrite: Bool = false, progress: ((WriteProgress) -> Void)? = nil) throws -> Report {
        try checkOutputPath(outPath, overwrite: overwrite)
        let model = try StoredModel.open(modelPath)
        let meta = model.metadata
        var tokMeta = try TokenizerMetadata(metadata: meta, path: modelPath)
        var config = try ModelConfig(metadata: meta, path: modelPath)
        let tok = try Tokenizer(TokenizerSpec(tokMeta))
        let learned = try VocabLearner.learn(tok, text: text, count: count)

        let n0 = tokMeta.tokens.count
        let spec = TokenizerSpec(tokMeta).extended(with: learned)
        tokMeta.tokens = MetaArray(strings: spec.tokens)
        tokMeta.tokenTypes = spec.tokenTypes.map { MetaArray(int32s: $0) }
        tokMeta.scores = spec.scores.map { MetaArray(float32s: $0) }
        tokMeta.merges = spec.merges.map { MetaArray(strings: $0) }
        let rows = max(config.vocabSize, n0 + count)
        config.vocabSize = rows
        var outMeta = meta
        if outMeta["general.vocab.extended_from"] == nil { outMeta["general.vocab.extended_from"] = .uint32(UInt32(n0)) }
        config.write(to: &outMeta)
        tokMeta.write(to: &outMeta)
        let after = try Tokenizer(spec)   // the result must load

        var pending: [PendingTensor] = []
        for (i, e) in model.entries.enumerated() {
            if e.name == TensorNames.tokenEmbedding || e.name == TensorNames.output {
                let dim = e.shape[1]
                let rowBytes = e.dtype.byteCount(elements: dim)!
                pending.append(PendingTensor(name: e.name, dtype: e.dtype, shape: [rows, dim]) { dst in
                    try model.withBytes(i) { src in
                        UnsafeMutableRawBufferPointer(rebasing: dst[0..<src.count]).copyMemory(from: src)
                        var x = [Float](repeating: 0, count: dim)
                        func row(_ r: Int) -> [Float] {
                            x.withUnsafeMutableBufferPointer { Quant.dequantize(e.dtype, src.baseAddress! + r * rowBytes, $0.baseAddress!, count: dim) }
                            return x
                        }
                        for (k, parts) in learned.parts.enumerated() {
                            let r = n0 + k
                            var mean = [Float](repeating: 0, count: dim)
                            for p in parts { for (j, v) in row(Int(p)).enumerated() { mean[j] += v } }
                            for j in 0..<dim { mean[j] /= Float(parts.count) }
                            Quant.quantize(e.dtype, mean).withUnsafeBytes {
                                UnsafeMutableRawBufferPointer(rebasing: dst[(r * rowBytes)..<((r + 1) * rowBytes)]).copyMemory(from: $0)
                            }
                        }
                    }
                })
            } else {
                pending.append(PendingTensor(name: e.name, dtype: e.dtype, shape: e.shape) { dst in
                    try model.withBytes(i) { dst.copyMemory(from: $0) }
                })
            }
        }
        try WrenWriter.write(to: outPath, metadata: outMeta, tensors: pending, options: WrenWriteOptions(overwrite: overwrite), progress: progress)
        let before = tok.encode(text, addSpecial: false, parseSpecial: false).count
        let now = after.encode(text, addSpecial: false, parseSpecial: false).count
        return Report(added: count, firstNewID: n0, tokensBefore: before, tokensAfter: now, bytes: text.utf8.count,
                      examples: (0..<min(12, count)).map { String(decoding: after.bytes(of: Int32(n0 + $0)), as: UTF8.self) })
    }
}

extension VocabExtension {
    /// The ids `wren vocab extend` added to the model at `path` (from `general.vocab.extended_from`).
    public static func addedTokens(_ file: WrenFile) throws -> [Int32] {
        guard let from = file.metadata["general.vocab.extended_from"]?.int else {
            throw FormatError.missingField(path: file.path, field: "general.vocab.extended_from (the model's vocabulary was not extended by `wren vocab extend`)")
        }
        let c = try ModelConfig(metadata: file.metadata, path: file.path)
        guard from >= 0, from < c.vocabSize else {
            throw FormatError.invalid(path: file.path, field: "general.vocab.extended_from", reason: "\(from) is not inside the \(c.vocabSize)-token vocabulary")
        }
        return (from..<c.vocabSize).map { Int32($0) }
    }
}
