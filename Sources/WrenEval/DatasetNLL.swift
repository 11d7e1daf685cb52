// Negative log-likelihood of an LMFlow dataset, as LMFlow's evaluator reports
// it: per instance the sum of −log p over the tokens finetuning would train on
// (text_only: all; text2text: the output; conversation: the assistant turns,
// with the same masks as `wren finetune`), averaged over instances; also per
// token, and the perplexity exp(NLL per token).

import Foundation
import WrenEngine
import WrenTokenizer
import WrenTuning

public struct DatasetNLLResult: Sendable, Codable {
    public var instances: Int
    /// Mean over instances of the summed NLL of their scored tokens (nats).
    public var nll: Double
    public var tokens: Int
    public var nllPerToken: Double
    public var perplexity: Double
    /// Instances longer than the context, scored on their first `context` tokens.
    public var truncated: Int
    public var seconds: Double
}

/// One instance's score.
public struct InstanceNLL: Sendable, Codable {
    public var file: String
    public var index: Int
    public var tokens: Int
    public var nll: Double
}

public enum DatasetNLL {
    /// Scores every example (from `DatasetTokenizer.tokenize`) with `session`, one
    /// sequence at a time from an empty cache. `perItem` sees each instance's score.
    public static func run(_ examples: [Example], session: InferenceSession, perItem: ((InstanceNLL) -> Void)? = nil,
                           progress: ((Int, Int) -> Void)? = nil) throws -> DatasetNLLResult {
        let V = session.model.config.vocabSize, ctx = session.contextLength
        var sum: Double = 0, tokens = 0, truncated = 0
        let t0 = Date()
        for (i, e) in examples.enumerated() {
            var ids = e.ids, trained = e.trained
            if ids.count > ctx { ids = Array(ids[..<ctx]); trained = Array(trained[..<ctx]); truncated += 1 }
            // Targets: positions j ≥ 1 that are trained, predicted by row j − 1.
            let js = (1..<max(ids.count, 1)).filter { trained[$0] }
            var nll: Double = 0
            if let first = js.first {
                session.reset()
                let logits = try session.evaluate(Array(ids[..<(ids.count - 1)]), logitsFrom: first - 1)
                let rows = js.map { $0 - first }   // row of target j within the returned logits
                var picked = [Float](repeating: 0, count: rows.count * V)
                for (k, r) in rows.enumerated() {
                    picked.withUnsafeMutableBufferPointer { p in
                        logits.withUnsafeBufferPointer { l in (p.baseAddress! + k * V).update(from: l.baseAddress! + r * V, count: V) }
                    }
                }
                nll = -Scoring.logProbabilities(picked, vocab: V, targets: js.map { ids[$0] }, threads: session.threads).reduce(0, +)
            }
            sum += nll; tokens += js.count
            perItem?(InstanceNLL(file: e.source.file, index: e.source.index, tokens: js.count, nll: nll))
            progress?(i + 1, examples.count)
        }
        let n = max(examples.count, 1)
        let perToken = sum / Double(max(tokens, 1))
        return DatasetNLLResult(instances: examples.count, nll: sum / Double(n), tokens: tokens, nllPerToken: perToken,
                                perplexity: Foundation.exp(perToken), truncated: truncated, seconds: Date().timeIntervalSince(t0))
    }
}
