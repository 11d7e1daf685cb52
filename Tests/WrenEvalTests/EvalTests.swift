// wren eval's scorers on a tiny model, each against a reference written here
// independently: every scored token's log-probability recomputed in Double
// from logits of a fresh session over the whole window (or context +
// continuation), with the windows and masks spelled out by hand.
// Tolerance: 1e-4 relative on perplexity and 1e-4 absolute on a summed
// log-likelihood — the scorer and the reference see the same f32 logits up
// to OpenBLAS's blocking for a different number of rows (~1e-6 relative per
// logit); a wrong window or an off-by-one target moves them by 1e-1 or more.

import Foundation
import TestSupport
@testable import WrenEngine
@testable import WrenEval
import WrenFormat
import WrenTokenizer
import WrenTuning
import XCTest

final class EvalTests: XCTestCase {
    func tinyModel(_ name: String = #function) throws -> LlamaModel {
        let dir = tempDirectory(name)
        let path = dir + "/tiny.wren"
        try TinyModel(seed: 91).writeWren(to: path, dtype: .f32)
        return try LlamaModel(path: path)
    }

    /// log p(ids[j] | ids[..<j]) for j in targets, from one fresh evaluation of `ids` with every row's logits.
    func reference(_ m: LlamaModel, _ ids: [Int32], targets: [Int]) throws -> [Double] {
        let s = try InferenceSession(model: m, contextLength: 128, threads: 1, kvType: .f32, activations: .f32)
        let l = try s.evaluate(ids, allLogits: true)
        let V = m.config.vocabSize
        return targets.map { j in
            let row = l[((j - 1) * V)..<(j * V)].map(Double.init)
            let mx = row.max()!
            return row[Int(ids[j])] - mx - Foundation.log(row.map { Foundation.exp($0 - mx) }.reduce(0, +))
        }
    }

    func stream(_ n: Int, vocab: Int, seed: UInt64 = 5) -> [Int32] {
        var r = SeededRNG(seed: seed)
        return (0..<n).map { _ in Int32(3 + Int(r.next() % UInt64(vocab - 3))) }
    }

    func testLlamaCppChunksScoreTheSecondHalf() throws {
        let m = try tinyModel()
        let s = try InferenceSession(model: m, contextLength: 64, threads: 2, kvType: .f32, activations: .f32)
        let toks = stream(200, vocab: m.config.vocabSize)
        let r = try Perplexity.run(toks, session: s, options: PerplexityOptions(context: 64), source: "t")
        // 3 chunks of 64; in each, targets 33..<64 (31 tokens).
        XCTAssertEqual(r.chunks, 3)
        XCTAssertEqual(r.scored, 3 * 31)
        var nll = 0.0
        for c in 0..<3 {
            nll -= try reference(m, Array(toks[(c * 64)..<((c + 1) * 64)]), targets: Array(33..<64)).reduce(0, +)
        }
        XCTAssertEqual(r.nll, nll, accuracy: 1e-4 * abs(nll))
        XCTAssertEqual(r.perplexity, Foundation.exp(nll / 93), accuracy: 1e-4 * r.perplexity)
        XCTAssertGreaterThan(r.perplexityError, 0)
        XCTAssertEqual(r.bytes, Scoring.textBytes((0..<3).flatMap { c in toks[(c * 64 + 33)..<((c + 1) * 64)] }, tokenizer: m.tokenizer))
    }

    func testSlidingWindowScoresEachTokenAtMostOnce() throws {
        let m = try tinyModel()
        let s = try InferenceSession(model: m, contextLength: 64, threads: 2, kvType: .f32, activations: .f32)
        let toks = stream(150, vocab: m.config.vocabSize, seed: 6)
        for stride in [16, 40, 64] {
            let r = try Perplexity.run(toks, session: s, options: PerplexityOptions(context: 64, stride: stride, bucket: 16), source: "t")
            // Overlapping windows score every token but the first; windows that do not
            // overlap (stride = context) cannot score their own first token.
            let want = stride < 64 ? 149 : 149 - 2
            XCTAssertEqual(r.scored, want, "stride \(stride)")
            XCTAssertEqual(r.byPosition.reduce(0) { $0 + $1.scored }, want)
            // The reference, windows spelled out: begin 0, stride, 2·stride…; targets past the previous end.
            var nll = 0.0, prevEnd = 0, begin = 0
            while true {
                let end = min(begin + 64, 150)
                let first = max(prevEnd, begin + 1)
                nll -= try reference(m, Array(toks[begin..<end]), targets: Array((first - begin)..<(end - begin))).reduce(0, +)
                prevEnd = end
                if end == 150 { break }
                begin += stride
            }
            XCTAssertEqual(r.nll, nll, accuracy: 1e-4 * abs(nll), "stride \(stride)")
        }
    }

    /// A window longer than the session's batch goes in pieces, each scored as it comes
    /// (bounded logits memory); a batch of 7 puts piece edges off every boundary the
    /// windows have, so an off-by-one in the pieces' targets would show here.
    func testWindowsLongerThanTheBatchScoreTheSame() throws {
        let m = try tinyModel()
        let big = try InferenceSession(model: m, contextLength: 64, threads: 2, kvType: .f32, activations: .f32)
        let small = try InferenceSession(model: m, contextLength: 64, threads: 2, maxBatch: 7, kvType: .f32, activations: .f32)
        let toks = stream(150, vocab: m.config.vocabSize, seed: 8)
        for o in [PerplexityOptions(context: 64), PerplexityOptions(context: 64, stride: 24, bucket: 8)] {
            let a = try Perplexity.run(toks, session: big, options: o, source: "t")
            let b = try Perplexity.run(toks, session: small, options: o, source: "t")
            XCTAssertEqual(a.scored, b.scored)
            XCTAssertEqual(a.nll, b.nll, accuracy: 1e-4 * abs(a.nll))
            XCTAssertEqual(a.byPosition.map(\.scored), b.byPosition.map(\.scored))
            for (x, y) in zip(a.byPosition, b.byPosition) { XCTAssertEqual(x.perplexity, y.perplexity, accuracy: 1e-4 * x.perplexity) }
        }
    }

    /// Past the trained context a session is refused unless the caller asks for it
    /// (`--rope-scaling none` on the command line), and then it runs.
    func testContextPastTheTrainedLengthNeedsConsent() throws {
        let m = try tinyModel()
        let trained = m.config.contextLength
        XCTAssertThrowsError(try InferenceSession(model: m, contextLength: 2 * trained, threads: 1)) {
            XCTAssertTrue("\($0)".contains("outside 1...\(trained)"), "\($0)")
        }
        let s = try InferenceSession(model: m, contextLength: 2 * trained, threads: 1, beyondTrainedContext: true)
        let out = try s.evaluate(stream(trained + 10, vocab: m.config.vocabSize))
        XCTAssertTrue(out.allSatisfy(\.isFinite))
    }

    func testPerplexityRefusesShortTextAndBadStride() throws {
        let m = try tinyModel()
        let s = try InferenceSession(model: m, contextLength: 64, threads: 1)
        XCTAssertThrowsError(try Perplexity.run(stream(100, vocab: 64), session: s, options: PerplexityOptions(context: 64), source: "f.txt")) {
            XCTAssertTrue("\($0)".hasPrefix("f.txt: the text is 100 tokens"), "\($0)")
        }
        XCTAssertThrowsError(try Perplexity.run(stream(100, vocab: 64), session: s, options: PerplexityOptions(context: 64, stride: 65), source: "f"))
        XCTAssertThrowsError(try Perplexity.run([5], session: s, options: PerplexityOptions(context: 64, stride: 8), source: "f"))
    }

    func testMultipleChoiceReusesTheContextAndMatchesFullEvaluation() throws {
        let m = try tinyModel()
        let s = try InferenceSession(model: m, contextLength: 128, threads: 2, kvType: .f32, activations: .f32)
        let items = [MCItem(context: "abc de ", choices: ["fg", "hij k", "a"], answer: 1, line: 1),
                     MCItem(context: "xy", choices: [" zz", " q"], answer: 0, line: 2)]
        var per: [MCItemResult] = []
        let r = try MultipleChoice.run(items, session: s, file: "t", perItem: { per.append($0) })
        XCTAssertEqual(r.items, 2)
        let tok = m.tokenizer
        for (item, got) in zip(items, per) {
            for (k, choice) in item.choices.enumerated() {
                let (c, cont) = MultipleChoice.split(context: item.context, continuation: choice)
                let cIds = tok.encode(c), whole = tok.encode(c + cont)
                let ids = cIds + whole.dropFirst(cIds.count)
                let want = try reference(m, ids, targets: Array(cIds.count..<ids.count)).reduce(0, +)
                XCTAssertEqual(got.logLikelihoods[k], want, accuracy: 1e-4, "line \(item.line) choice \(k)")
            }
        }
        XCTAssertEqual(MultipleChoice.split(context: "Q: a \n", continuation: "b").0, "Q: a")
        XCTAssertEqual(MultipleChoice.split(context: "Q: a \n", continuation: "b").1, " \nb")
        let accs = per.map { $0.predicted == $0.answer ? 1.0 : 0.0 }
        XCTAssertEqual(r.acc, accs.reduce(0, +) / 2)
    }

    func testMultipleChoiceBadInputNamesTheLine() {
        func err(_ text: String) -> String {
            do { _ = try MultipleChoice.load(Data(text.utf8), file: "mc.jsonl"); return "no error" } catch { return "\(error)" }
        }
        let ok = #"{"context": "a", "choices": ["b", "c"], "answer": 1}"#
        XCTAssertEqual(err(ok + "\n" + #"{"context": "a", "choices": ["b"], "answer": 3}"#),
                       "mc.jsonl:2: \"answer\" 3 is out of range for 1 choices")
        XCTAssertEqual(err(ok + "\n\n" + #"{"context": "a", "choices": ["b"], "answer": true}"#),
                       "mc.jsonl:3: \"answer\" must be an integer index into \"choices\"")
        XCTAssertEqual(err(#"{"context": "a", "answer": 0}"#), "mc.jsonl:1: missing \"choices\"")
        XCTAssertEqual(err(#"{"context": 5, "choices": ["b"], "answer": 0}"#), "mc.jsonl:1: \"context\" must be a string")
        XCTAssertEqual(err(#"{"context": "a", "choices": [], "answer": 0}"#), "mc.jsonl:1: \"choices\" is empty")
        XCTAssertEqual(err("[1, 2"), "mc.jsonl:1: not a JSON object with \"context\", \"choices\" and \"answer\"")
        XCTAssertEqual(err("\n\n"), "mc.jsonl: no items")
        XCTAssertNoThrow(try MultipleChoice.load(Data(ok.utf8), file: "x"))
    }

    /// text2text: only the output's tokens (and EOS) are scored, with finetuning's masks.
    func testDatasetNLLScoresTheTrainedTokensOnly() throws {
        let m = try tinyModel()
        let dir = tempDirectory()
        let json = #"{"type": "text2text", "instances": [{"input": "abc de", "output": "fgh"}, {"input": "xy", "output": "zz q"}]}"#
        try json.write(toFile: dir + "/d.json", atomically: true, encoding: .utf8)
        let ds = try RawDataset.load(dir)
        let ex = try DatasetTokenizer.tokenize(ds, model: m, chat: nil)
        let s = try InferenceSession(model: m, contextLength: 128, threads: 1, kvType: .f32, activations: .f32)
        var items: [InstanceNLL] = []
        let r = try DatasetNLL.run(ex, session: s, perItem: { items.append($0) })
        var total = 0.0, count = 0
        for (e, got) in zip(ex, items) {
            let targets = (1..<e.ids.count).filter { e.trained[$0] }
            XCTAssertEqual(got.tokens, targets.count)
            let nll = -(try reference(m, e.ids, targets: targets).reduce(0, +))
            XCTAssertEqual(got.nll, nll, accuracy: 1e-4)
            total += nll; count += targets.count
        }
        XCTAssertEqual(items[0].tokens, m.tokenizer.encode("fgh", addSpecial: false).count + 1, "output tokens and EOS")
        XCTAssertEqual(r.nll, total / 2, accuracy: 1e-4)
        XCTAssertEqual(r.tokens, count)
        XCTAssertEqual(r.perplexity, Foundation.exp(total / Double(count)), accuracy: 1e-4 * r.perplexity)
    }
}

final class GenerationEvalTests: XCTestCase {
    /// LMFlow's extraction rules, case by case.
    func testAnswerExtraction() {
        XCTAssertEqual(AnswerType.multipleChoice.extract("I think (B), no wait: C."), "C")
        XCTAssertEqual(AnswerType.multipleChoice.extract("none of them"), "")
        XCTAssertEqual(AnswerType.yesNo.extract("Yes. Well, actually: NO, \"yes\""), "yes")
        XCTAssertEqual(AnswerType.yesNo.extract("yesterday nothing"), "")
        XCTAssertEqual(AnswerType.number.extract("It costs 1,234.5 then 17."), "17")
        XCTAssertEqual(AnswerType.number.extract("-3 apples"), "-3")
        XCTAssertEqual(AnswerType.number.extract("no digits"), "")
        XCTAssertEqual(AnswerType.text.extract("  Paris \n"), "Paris")
        XCTAssertTrue(AnswerType.number.matches("17.0", "17"))
        XCTAssertFalse(AnswerType.number.matches("", "17"))
        XCTAssertTrue(AnswerType.yesNo.matches("no", "No"))
        XCTAssertTrue(AnswerType.multipleChoice.matches("C", "C"))
        XCTAssertFalse(AnswerType.multipleChoice.matches("", ""), "an empty extraction never counts")
        XCTAssertTrue(AnswerType.text.matches("Paris", " Paris\n"))
        XCTAssertNil(AnswerType(rawValue: "essay"))
    }

    /// Diversity metrics against hand counts.
    func testDiversity() {
        let d = Diversity(["the cat the dog", "The cat"])
        // words: the cat the dog | the cat → 6 words, distinct {the, cat, dog} = 3
        XCTAssertEqual(d.meanLength, 3)
        XCTAssertEqual(d.unique1, 3)
        XCTAssertEqual(d.distinct1, 0.5)
        // bigrams: "the cat", "cat the", "the dog" | "the cat" → 4, distinct 3
        XCTAssertEqual(d.unique2, 3)
        XCTAssertEqual(d.distinct2, 0.75)
        XCTAssertNil(d.msttr100)
        // 250 words: segments [0,100) and [100,200) of a 50-word cycle → TTR 0.5 each.
        let cycle = (0..<250).map { "w\($0 % 50)" }.joined(separator: " ")
        XCTAssertEqual(Diversity([cycle]).msttr100, 0.5)
        XCTAssertEqual(Diversity([]).meanLength, 0)
    }

    /// The generator's answers are scored and reported per item; greedy runs are repeatable.
    func testGenerationEvalRunsAndIsDeterministic() throws {
        let dir = tempDirectory()
        try TinyModel(seed: 92).writeWren(to: dir + "/m.wren", dtype: .f32)
        let m = try LlamaModel(path: dir + "/m.wren")
        let g = try Generator(model: m, contextLength: 128, threads: 1)
        let inst = [GenerationEval.Instance(input: "abc", output: "x", file: "f", index: 0),
                    GenerationEval.Instance(input: "de fg", output: "y", file: "f", index: 1)]
        var items: [GenItem] = []
        let opts = GenerationOptions(maxTokens: 8, sampling: .greedy)
        let r1 = try GenerationEval.run(inst, generator: g, options: opts, answerType: .text, perItem: { items.append($0) })
        let r2 = try GenerationEval.run(inst, generator: g, options: opts, answerType: .text)
        XCTAssertEqual(items.count, 2)
        XCTAssertEqual(r1.diversity, r2.diversity)
        XCTAssertEqual(r1.accuracy, Double(items.filter(\.correct).count) / 2)
        XCTAssertEqual(r1.diversity, Diversity(items.map(\.response)))
        XCTAssertTrue(items.allSatisfy { $0.tokens <= 8 })
    }
}

final class PasskeyTests: XCTestCase {
    /// The prompt fills the length to within one filler repetition, holds the key once at the
    /// requested depth, and ends with the question.
    func testPromptLayout() throws {
        let dir = tempDirectory()
        try TinyModel(seed: 93).writeWren(to: dir + "/m.wren", dtype: .f32)
        let tok = try LlamaModel(path: dir + "/m.wren").tokenizer
        let per = tok.encode(Passkey.filler, addSpecial: false).count
        for depth in [0.0, 0.5, 1.0] {
            let p = Passkey.prompt(tokenizer: tok, length: 600, depth: depth, key: "48213")
            let n = tok.encode(p).count
            XCTAssertLessThanOrEqual(n, 600 + 4, "depth \(depth)")
            XCTAssertGreaterThan(n, 600 - per - 8, "depth \(depth)")
            XCTAssertTrue(p.hasSuffix(Passkey.question))
            XCTAssertEqual(p.components(separatedBy: "The pass key is 48213.").count, 2, "the needle once")
            let before = p.components(separatedBy: Passkey.needle("48213"))[0].components(separatedBy: Passkey.filler).count - 1
            let after = p.components(separatedBy: Passkey.needle("48213"))[1].components(separatedBy: Passkey.filler).count - 1
            XCTAssertEqual(Double(before) / Double(before + after), depth, accuracy: 0.5 / Double(before + after) + 1e-9)
        }
        XCTAssertEqual(Passkey.firstNumber(" 48213. Remember"), "48213")
        XCTAssertEqual(Passkey.firstNumber(" is 4821 3"), "4821")
        XCTAssertNil(Passkey.firstNumber(" unknown"))
    }
}
