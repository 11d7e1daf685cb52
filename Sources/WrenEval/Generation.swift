// Generation-based evaluation, as LMFlow's accuracy evaluator does it: for each
// text2text instance, generate a response to the input, extract an answer of
// the given type, and compare it with the output. Also the diversity metrics
// of the RAFT paper's table, over all responses: mean length, distinct-1/2,
// unique-1/2 and MSTTR-100 (words: the lowercased text split on whitespace).

import Foundation
import WrenEngine

/// How an answer is pulled out of a response (LMFlow's `answer_extraction`).
public enum AnswerType: String, Sendable, CaseIterable, Codable {
    /// The last of the letters A–E anywhere in the response (LMFlow's rule, case-sensitive).
    case multipleChoice = "multiple_choice"
    /// The last standalone "yes" or "no" (case-insensitive; quotes, periods, colons and commas are separators).
    case yesNo = "yes_no"
    /// The last number (commas removed, a trailing period dropped); compared numerically.
    case number
    /// The whole response, trimmed; compared exactly.
    case text

    public func extract(_ response: String) -> String {
        switch self {
        case .multipleChoice:
            return response.last(where: { "ABCDE".contains($0) }).map(String.init) ?? ""
        case .yesNo:
            let seps = CharacterSet(charactersIn: "\"'.:,").union(.whitespacesAndNewlines)
            return response.lowercased().components(separatedBy: seps).last(where: { $0 == "yes" || $0 == "no" }) ?? ""
        case .number:
            let s = response.replacingOccurrences(of: ",", with: "")
            guard let re = try? NSRegularExpression(pattern: #"-?\d+\.?\d*"#) else { return "" }
            let ms = re.matches(in: s, range: NSRange(s.startIndex..., in: s))
            guard let m = ms.last, let r = Range(m.range, in: s) else { return "" }
            var a = String(s[r])
            if a.hasSuffix(".") { a.removeLast() }
            return a
        case .text:
            return response.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// Whether an extracted answer is the reference answer.
    public func matches(_ extracted: String, _ truth: String) -> Bool {
        let t = truth.trimmingCharacters(in: .whitespacesAndNewlines)
        switch self {
        case .number:
            guard let a = Double(extracted), let b = Double(self.extract(t)) else { return false }
            return a == b
        case .yesNo:
            return !extracted.isEmpty && extracted == self.extract(t)
        case .multipleChoice:
            return !extracted.isEmpty && extracted == self.extract(t)
        case .text:
            return extracted == t
        }
    }
}

/// The RAFT paper's diversity metrics over a set of responses.
public struct Diversity: Sendable, Codable, Equatable {
    /// Mean words per response.
    public var meanLength: Double
    /// Distinct n-grams ÷ all n-grams, over every response (n-grams do not cross responses).
    public var distinct1: Double, distinct2: Double
    /// The number of distinct n-grams.
    public var unique1: Int, unique2: Int
    /// Mean type/token ratio over consecutive 100-word segments of all responses in order
    /// (the last partial segment dropped); nil under 100 words.
    public var msttr100: Double?

    public init(_ responses: [String]) {
        let words = responses.map { $0.lowercased().split(whereSeparator: { $0.isWhitespace }).map(String.init) }
        let all = words.flatMap { $0 }
        meanLength = responses.isEmpty ? 0 : Double(all.count) / Double(responses.count)
        var bigrams: [String] = []
        for w in words where w.count >= 2 {
            for i in 0..<(w.count - 1) { bigrams.append(w[i] + " " + w[i + 1]) }
        }
        unique1 = Set(all).count; unique2 = Set(bigrams).count
        distinct1 = all.isEmpty ? 0 : Double(unique1) / Double(all.count)
        distinct2 = bigrams.isEmpty ? 0 : Double(unique2) / Double(bigrams.count)
        let segments = all.count / 100
        var ttr = 0.0
        for k in 0..<segments { ttr += Double(Set(all[(k * 100)..<((k + 1) * 100)]).count) / 100 }
        msttr100 = segments == 0 ? nil : ttr / Double(segments)
    }
}

public struct GenItem: Sendable, Codable {
    public var file: String
    public var index: Int
    public var response: String
    public var extracted: String
    public var truth: String
    public var correct: Bool
    public var tokens: Int
}

public struct GenResult: Sendable, Codable {
    public var items: Int
    public var answerType: AnswerType
    public var accuracy: Double
    public var meanTokens: Double
    public var diversity: Diversity
    public var seconds: Double
}

public enum GenerationEval {
    /// One text2text instance: the prompt and the reference answer, with where it came from.
    public struct Instance: Sendable {
        public var input: String, output: String, file: String, index: Int
        public init(input: String, output: String, file: String, index: Int) {
            self.input = input; self.output = output; self.file = file; self.index = index
        }
    }

    /// Generates a response to each instance (the session is reused; each prompt starts from an
    /// empty cache unless it shares a prefix with the previous one) and scores it.
    public static func run(_ instances: [Instance], generator: Generator, options: GenerationOptions, answerType: AnswerType,
                           wrap: ((String) throws -> String)? = nil, perItem: ((GenItem) -> Void)? = nil,
                           progress: ((Int, Int, Double) -> Void)? = nil) throws -> GenResult {
        var correct = 0, tokens = 0
        var responses: [String] = []
        let t0 = Date()
        for (i, inst) in instances.enumerated() {
            let prompt = try wrap?(inst.input) ?? inst.input
            let r = try generator.generate(prompt: prompt, options: options)
            let extracted = answerType.extract(r.text)
            let ok = answerType.matches(extracted, inst.output)
            if ok { correct += 1 }
            tokens += r.tokens.count
            responses.append(r.text)
            perItem?(GenItem(file: inst.file, index: inst.index, response: r.text, extracted: extracted, truth: inst.output, correct: ok,
                             tokens: r.tokens.count))
            progress?(i + 1, instances.count, Double(correct) / Double(i + 1))
        }
        let n = Double(max(instances.count, 1))
        return GenResult(items: instances.count, answerType: answerType, accuracy: Double(correct) / n, meanTokens: Double(tokens) / n,
                         diversity: Diversity(responses), seconds: Date().timeIntervalSince(t0))
    }
}
