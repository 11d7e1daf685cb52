// The pass-key retrieval test of long-context work (Mohtashami & Jaggi 2023,
// used by position interpolation, YaRN and LongLoRA): a random 5-digit key is
// hidden at a given depth of `length` tokens of repeated filler, and asked for
// at the end. Greedy decoding; an answer is right when the first number in
// the response is the key.

import Foundation
import WrenEngine
import WrenKernels
import WrenTokenizer

public struct PasskeyOptions: Sendable {
    /// Tokens of prompt and answer together (the filler is repeated to fill all but the
    /// answer's `answerTokens`), so a test at a model's full context fits in it.
    public var length: Int
    /// Where the key sits, as fractions of the filler (0 = start, 1 = end).
    public var depths: [Double]
    /// Keys tried per depth.
    public var trials: Int
    public var seed: UInt64
    public init(length: Int, depths: [Double] = [0.1, 0.5, 0.9], trials: Int = 3, seed: UInt64 = 1) {
        self.length = length; self.depths = depths; self.trials = trials; self.seed = seed
    }
}

public struct PasskeyItem: Sendable, Codable {
    public var depth: Double
    public var trial: Int
    public var key: String
    public var promptTokens: Int
    public var response: String
    public var correct: Bool
}

public struct PasskeyResult: Sendable, Codable {
    public struct Depth: Sendable, Codable { public var depth: Double, correct: Int, trials: Int }
    public var length: Int
    public var promptTokens: Int
    public var accuracy: Double
    public var byDepth: [Depth]
    public var seconds: Double
}

public enum Passkey {
    static let intro = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there.\n"
    static let filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
    static let question = "\nWhat is the pass key? The pass key is"
    /// Tokens generated for the answer (a 5-digit key takes 1–5 tokens plus punctuation).
    public static let answerTokens = 8

    static func needle(_ key: String) -> String { "The pass key is \(key). Remember it. \(key) is the pass key. " }

    /// The prompt text for `key` at `depth`, with as many filler repetitions as fit in `length` tokens.
    public static func prompt(tokenizer: Tokenizer, length: Int, depth: Double, key: String) -> String {
        func count(_ s: String) -> Int { tokenizer.encode(s, addSpecial: false, parseSpecial: false).count }
        let fixed = count(intro) + count(needle(key)) + count(question) + (tokenizer.addBOS ? 1 : 0)
        let per = max(1, count(filler))
        let n = max(0, (length - fixed) / per)
        let before = Int((depth * Double(n)).rounded())
        return intro + String(repeating: filler, count: before) + needle(key) + String(repeating: filler, count: n - before) + question
    }

    /// The first run of digits in `response` (nil: none).
    public static func firstNumber(_ response: String) -> String? {
        var digits = ""
        for ch in response {
            if ch.isASCII && ch.isNumber { digits.append(ch) } else if !digits.isEmpty { break }
        }
        return digits.isEmpty ? nil : digits
    }

    public static func run(generator: Generator, options o: PasskeyOptions, perItem: ((PasskeyItem) -> Void)? = nil,
                           progress: ((Int, Int, Double) -> Void)? = nil) throws -> PasskeyResult {
        var rng = SplitMix64(seed: o.seed)
        var byDepth: [PasskeyResult.Depth] = []
        var correct = 0, done = 0, maxPrompt = 0
        let total = o.depths.count * o.trials
        let t0 = Date()
        var gen = GenerationOptions(maxTokens: answerTokens, sampling: .greedy)
        gen.parseSpecial = false
        for depth in o.depths {
            var ok = 0
            for trial in 0..<o.trials {
                let key = String(10000 + Int(rng.next() % 90000))
                let text = prompt(tokenizer: generator.model.tokenizer, length: o.length - answerTokens, depth: depth, key: key)
                let ids = generator.tokenize(text, parseSpecial: false)
                maxPrompt = max(maxPrompt, ids.count)
                let r = try generator.generate(tokens: ids, options: gen)
                let right = firstNumber(r.text) == key
                if right { ok += 1; correct += 1 }
                done += 1
                perItem?(PasskeyItem(depth: depth, trial: trial, key: key, promptTokens: ids.count, response: r.text, correct: right))
                progress?(done, total, Double(correct) / Double(done))
            }
            byDepth.append(.init(depth: depth, correct: ok, trials: o.trials))
        }
        return PasskeyResult(length: o.length, promptTokens: maxPrompt, accuracy: Double(correct) / Double(max(total, 1)), byDepth: byDepth,
                             seconds: Date().timeIntervalSince(t0))
    }
}
