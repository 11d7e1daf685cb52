// Multiple-choice scoring by log-likelihood, as lm-evaluation-harness does it.
// Each item is {"context": ..., "choices": [...], "answer": index} (JSONL).
// A choice's score is log p(continuation | context): trailing whitespace of
// the context moves to the front of the continuation; the context is
// tokenized alone, the continuation is the rest of tokenize(context +
// continuation). The context is evaluated once and its KV cache reused for
// every choice (the session is truncated back to it). acc takes the highest
// summed log-probability; acc_norm the highest per byte of continuation.

import Foundation
import WrenEngine
import WrenTokenizer

public struct MCItem: Sendable, Equatable {
    public var context: String
    public var choices: [String]
    public var answer: Int
    public var line: Int
}

public struct MCItemResult: Sendable, Codable {
    public var line: Int
    public var answer: Int
    /// Summed log-probability of each choice's continuation.
    public var logLikelihoods: [Double]
    /// Continuation tokens per choice.
    public var tokens: [Int]
    public var predicted: Int
    public var predictedNorm: Int
}

public struct MCResult: Sendable, Codable {
    public var items: Int
    public var acc: Double
    public var accNorm: Double
    /// Standard errors: √(p(1−p)/(n−1)).
    public var accError: Double
    public var accNormError: Double
    public var seconds: Double
}

public enum MultipleChoice {
    /// Parses JSONL items; every error names the file and line.
    public static func load(_ data: Data, file: String) throws -> [MCItem] {
        guard let text = String(data: data, encoding: .utf8) else { throw EvalError(file, "not UTF-8 text") }
        var items: [MCItem] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty { continue }
            let n = i + 1
            struct Raw: Decodable { var context: String; var choices: [String]; var answer: Int }
            let r: Raw
            do {
                r = try JSONDecoder().decode(Raw.self, from: Data(line.utf8))
            } catch let DecodingError.keyNotFound(key, _) {
                throw EvalError(file, line: n, "missing \"\(key.stringValue)\"")
            } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
                let key = ctx.codingPath.first?.stringValue ?? "item"
                let want = ["context": "a string", "choices": "an array of strings", "answer": "an integer index into \"choices\""][key] ?? "a JSON object"
                throw EvalError(file, line: n, "\"\(key)\" must be \(want)")
            } catch DecodingError.dataCorrupted(let ctx) where !ctx.codingPath.isEmpty {
                throw EvalError(file, line: n, "\"\(ctx.codingPath[0].stringValue)\" is not valid: \(ctx.debugDescription)")
            } catch {
                throw EvalError(file, line: n, "not a JSON object with \"context\", \"choices\" and \"answer\"")
            }
            let (context, strs, answer) = (r.context, r.choices, r.answer)
            guard !strs.isEmpty else { throw EvalError(file, line: n, "\"choices\" is empty") }
            guard answer >= 0, answer < strs.count else {
                throw EvalError(file, line: n, "\"answer\" \(answer) is out of range for \(strs.count) choices")
            }
            items.append(MCItem(context: context, choices: strs, answer: answer, line: n))
        }
        guard !items.isEmpty else { throw EvalError(file, "no items") }
        return items
    }

    /// lm-evaluation-harness's split: trailing whitespace of the context moves to the continuation.
    public static func split(context: String, continuation: String) -> (String, String) {
        var ctx = context[...]
        var moved = ""
        while let last = ctx.last, last.isWhitespace { moved = String(last) + moved; ctx = ctx.dropLast() }
        return (String(ctx), moved + continuation)
    }

    /// Scores every item. `wrap` turns a context into the model's prompt (the chat template), or nil.
    public static func run(_ items: [MCItem], session: InferenceSession, file: String, wrap: ((String) throws -> String)? = nil,
                           perItem: ((MCItemResult) -> Void)? = nil, progress: ((Int, Int) -> Void)? = nil) throws -> MCResult {
        let tok = session.model.tokenizer, V = session.model.config.vocabSize
        var correct = 0, correctNorm = 0
        let t0 = Date()
        for (idx, item) in items.enumerated() {
            let context = try wrap?(item.context) ?? item.context
            var lls: [Double] = [], lens: [Int] = [], bytes: [Int] = []
            var ctxIds: [Int32] = []
            var ctxLast: [Float] = []
            for choice in item.choices {
                let (c, cont) = split(context: context, continuation: choice)
                var cIds = tok.encode(c, addSpecial: true, parseSpecial: wrap != nil)
                let whole = tok.encode(c + cont, addSpecial: true, parseSpecial: wrap != nil)
                var contIds = Array(whole.dropFirst(min(cIds.count, whole.count)))
                if cIds.isEmpty {   // no context at all: the end-of-text token stands in, as the harness does
                    guard let eos = tok.eosID else { throw EvalError(file, line: item.line, "empty context and no end-of-text token") }
                    cIds = [eos]; contIds = whole
                }
                guard !contIds.isEmpty else {
                    throw EvalError(file, line: item.line, "choice \(lls.count) adds no tokens to the context")
                }
                guard cIds.count + contIds.count <= session.contextLength else {
                    throw EvalError(file, line: item.line, "context and choice \(lls.count) are \(cIds.count + contIds.count) tokens; the context holds \(session.contextLength) (-c)")
                }
                if cIds != ctxIds {   // the same context for every choice unless whitespace handling changed it
                    session.reset()
                    ctxLast = try session.evaluate(cIds)
                    ctxIds = cIds
                } else {
                    session.truncate(to: cIds.count)
                }
                // Row −1 (the context's last logits) predicts contIds[0]; row i predicts contIds[i + 1].
                var rows = ctxLast
                if contIds.count > 1 { rows += try session.evaluate(Array(contIds.dropLast()), allLogits: true) }
                let lp = Scoring.logProbabilities(rows, vocab: V, targets: contIds, threads: session.threads)
                lls.append(lp.reduce(0, +)); lens.append(contIds.count); bytes.append(max(1, cont.utf8.count))
            }
            let pred = lls.indices.max { lls[$0] < lls[$1] || (lls[$0] == lls[$1] && $0 > $1) }!
            let norm = lls.indices.map { lls[$0] / Double(bytes[$0]) }
            let predNorm = norm.indices.max { norm[$0] < norm[$1] || (norm[$0] == norm[$1] && $0 > $1) }!
            if pred == item.answer { correct += 1 }
            if predNorm == item.answer { correctNorm += 1 }
            perItem?(MCItemResult(line: item.line, answer: item.answer, logLikelihoods: lls, tokens: lens, predicted: pred, predictedNorm: predNorm))
            progress?(idx + 1, items.count)
        }
        let n = Double(items.count)
        func se(_ p: Double) -> Double { items.count > 1 ? (p * (1 - p) / (n - 1)).squareRoot() : 0 }
        let acc = Double(correct) / n, accNorm = Double(correctNorm) / n
        return MCResult(items: items.count, acc: acc, accNorm: accNorm, accError: se(acc), accNormError: se(accNorm),
                        seconds: Date().timeIntervalSince(t0))
    }
}
