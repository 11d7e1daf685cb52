// Datasets (formats, masks, packing, errors), LoRA's step 0, resume,
// PEFT round trips, run-time adapters against merged models, merge reports,
// and a tiny model learning a task.

import Foundation
import TestSupport
import WrenEngine
import WrenFormat
import WrenKernels
import WrenTokenizer
@testable import WrenTuning
import XCTest

final class FinetuneTests: XCTestCase {
    /// The k-quants need rows of whole 256-element super-blocks: a 256-wide model for them.
    func tiny(_ dir: String, dtype: DType = .f32, tied: Bool = true) throws -> String {
        let path = dir + "/tiny.wren"
        let wide = dtype.blockSize == 256
        try TinyModel(seed: 3, tied: tied, vocab: 64, dim: wide ? 256 : 32, layers: 2, heads: 4, kvHeads: 2, ff: wide ? 256 : 64)
            .writeWren(to: path, dtype: dtype)
        return path
    }

    func write(_ obj: Any, _ path: String) throws {
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
    }

    func expectError(_ body: () throws -> Void, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("no error", file: file, line: line)
        } catch {
            let s = "\(error)"
            for p in parts { XCTAssertTrue(s.contains(p), "\"\(s)\" lacks \"\(p)\"", file: file, line: line) }
        }
    }

    func testDatasetErrorsNameFileInstanceAndKey() throws {
        let dir = tempDirectory()
        let model = try tiny(dir)
        func ft(_ data: String, block: Int = 64) throws {
            var o = FinetuneOptions(modelPath: model, dataPath: data, outputDir: dir + "/out")
            o.blockSize = block
            _ = try Finetuner(o)
        }
        let cases: [(Any?, String, [String])] = [
            (nil, "{\"type\": \"text_only\", \"instances\": [", ["bad.json", "not valid JSON"]),
            (["type": "text2text", "instances": [["input": "ab", "output": "cd"], ["input": "ab"]]], "", ["bad.json", "instance 1", "\"output\"", "missing"]),
            (["type": "text2text", "instances": [["input": "ab", "output": 3]]], "", ["instance 0", "\"output\"", "must be a string"]),
            (["type": "poetry", "instances": []], "", ["bad.json", "\"type\"", "text_only"]),
            (["type": "text_only", "instances": "x"], "", ["\"instances\"", "list"]),
            (["type": "conversation", "instances": [["messages": [["role": "assistant", "content": "hi"]]]]], "", ["instance 0", "messages[0].role", "user"]),
            (["type": "conversation", "instances": [["messages": [["role": "user", "content": "hi"]]]]], "", ["instance 0", "no assistant turn"]),
        ]
        for (i, (obj, raw, parts)) in cases.enumerated() {
            let d = dir + "/d\(i)"
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            if let obj { try write(obj, d + "/bad.json") } else { try raw.write(toFile: d + "/bad.json", atomically: true, encoding: .utf8) }
            expectError({ try ft(d) }, contains: parts)
        }
        // Mixed types across files.
        let mixed = dir + "/mixed"
        try FileManager.default.createDirectory(atPath: mixed, withIntermediateDirectories: true)
        try write(["type": "text_only", "instances": [["text": "ab"]]], mixed + "/a.json")
        try write(["type": "text2text", "instances": [["input": "a", "output": "b"]]], mixed + "/b.json")
        expectError({ try ft(mixed) }, contains: ["b.json", "one type"])
        // Too long without truncation, in a JSONL file.
        let long = dir + "/long"
        try FileManager.default.createDirectory(atPath: long, withIntermediateDirectories: true)
        try "{\"input\": \"ab\", \"output\": \"cd\"}\n{\"input\": \"a\", \"output\": \"\(String(repeating: "abc ", count: 40))\"}\n"
            .write(toFile: long + "/x.jsonl", atomically: true, encoding: .utf8)
        expectError({ try ft(long, block: 16) }, contains: ["x.jsonl", "instance 1", "longer than the block size 16"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "nothing written before the data are valid")
        // With --truncate it loads.
        var o = FinetuneOptions(modelPath: model, dataPath: long, outputDir: dir + "/out")
        o.blockSize = 16; o.truncate = true
        XCTAssertEqual(try Finetuner(o).train.map(\.ids.count).max(), 16)
    }

    func testMasksPerDatasetType() throws {
        let dir = tempDirectory()
        let m = try LlamaModel(path: try tiny(dir))
        let tok = m.tokenizer
        let eos = tok.eosID!
        // text2text: input masked, output + EOS trained.
        let t2t = RawDataset(type: .text2text, instances: [.text2text(input: "abc", output: "de")], sources: [.init(file: "f", index: 0)])
        let e = try DatasetTokenizer.tokenize(t2t, model: m, chat: nil)[0]
        let inN = tok.encode("abc", addSpecial: false).count
        XCTAssertEqual(Array(e.trained.prefix(inN)), Array(repeating: false, count: inN))
        XCTAssertEqual(try tok.decode(zip(e.ids, e.trained).filter(\.1).map(\.0).dropLast()), "de")
        XCTAssertEqual(e.ids.last, eos)
        XCTAssertEqual(e.trained.last, true)
        // --train-on-prompt trains everything.
        XCTAssertTrue(try DatasetTokenizer.tokenize(t2t, model: m, chat: nil, options: .init(trainOnPrompt: true))[0].trained.allSatisfy { $0 })
        // conversation: only assistant content and its end marker, every round.
        let chat = try ChatFormatter(model: m, name: "chatml")
        let conv = RawDataset(type: .conversation, instances: [.conversation(system: "be", messages: [
            ChatMessage(role: "user", content: "ab"), ChatMessage(role: "assistant", content: "cd"),
            ChatMessage(role: "user", content: "ef"), ChatMessage(role: "assistant", content: "gh"),
        ])], sources: [.init(file: "f", index: 0)])
        let c = try DatasetTokenizer.tokenize(conv, model: m, chat: chat)[0]
        func roundTrip(_ s: String) throws -> String { try tok.decode(tok.encode(s, addSpecial: false)) }  // the tiny vocabulary has no "\n"
        XCTAssertEqual(try tok.decode(c.ids), try roundTrip(try chat.render([ChatMessage(role: "system", content: "be"), ChatMessage(role: "user", content: "ab"),
                                                             ChatMessage(role: "assistant", content: "cd"), ChatMessage(role: "user", content: "ef"),
                                                             ChatMessage(role: "assistant", content: "gh")], addGenerationPrompt: false)))
        XCTAssertEqual(try tok.decode(zip(c.ids, c.trained).filter(\.1).map(\.0)), try roundTrip("cd<|im_end|>\ngh<|im_end|>\n"))
        // Labels are the next token where it is trained.
        let seq = try XCTUnwrap(try Blocks.perExample([c], blockSize: 256, truncate: false).first)
        for t in 0..<(seq.ids.count - 1) { XCTAssertEqual(seq.labels[t], c.trained[t + 1] ? c.ids[t + 1] : ignoreLabel) }
        XCTAssertEqual(seq.labels.last, ignoreLabel)
    }

    func testPackingCutsBlocks() {
        let ex = (0..<3).map { i in Example(ids: (0..<7).map { Int32(i * 10 + $0) }, trained: Array(repeating: true, count: 7), source: .init(file: "f", index: i)) }
        let b = Blocks.pack(ex, blockSize: 8)
        XCTAssertEqual(b.map(\.ids.count), [8, 8, 5])
        XCTAssertEqual(b[0].ids, [0, 1, 2, 3, 4, 5, 6, 10])
        XCTAssertEqual(b[0].labels, [1, 2, 3, 4, 5, 6, 10, ignoreLabel])
    }

    /// Step 0 with B = 0 is the base model: the adapter attached at run time changes no
    /// logit, and the trainer's loss equals the engine's exact-path loss.
    func testLoRAStepZeroReproducesBase() throws {
        let dir = tempDirectory()
        for dtype in [DType.f32, .q4_1, .q4_k] {   // q4_k: QLoRA on a k-quant base
            try FileManager.default.createDirectory(atPath: dir + "/\(dtype)", withIntermediateDirectories: true)
            let path = try tiny(dir + "/\(dtype)", dtype: dtype)
            let m = try LlamaModel(path: path)
            let tm = try TrainModel(model: m, mode: .lora(LoRAConfig(rank: 4, alpha: 8, targets: Projection.allCases)), maxTokens: 16,
                                    maxLength: 16, threads: 2, seed: 1)
            let toks: [Int32] = [5, 9, 14, 3, 22, 40, 7, 11, 30, 2, 8, 19]
            let labels = Array(toks.dropFirst()) + [ignoreLabel]
            let r = tm.step(tokens: toks, labels: labels, batch: 1, length: toks.count, gradScale: 0, backward: false)
            let s = try InferenceSession(model: m, contextLength: 32, threads: 2, kvType: .f32, activations: .f32)
            let logits = try s.evaluate(toks, allLogits: true)
            var ref = 0.0
            for t in 0..<(toks.count - 1) {
                let row = logits[(t * 64)..<(t * 64 + 64)].map(Double.init)
                let mx = row.max()!
                ref += mx + log(row.map { exp($0 - mx) }.reduce(0, +)) - row[Int(toks[t + 1])]
            }
            XCTAssertEqual(r.lossSum, ref, accuracy: 1e-4 * abs(ref), "\(dtype)")
            // Attach the untrained adapter: every logit is unchanged.
            var deltas: [Int: [Projection: LoRADelta]] = [:]
            for l in 0..<2 {
                for p in Projection.allCases {
                    let mod = try XCTUnwrap(tm.loraModule(l, p))
                    XCTAssertTrue(mod.b.values.allSatisfy { $0 == 0 })
                    XCTAssertFalse(mod.a.values.allSatisfy { $0 == 0 })
                    deltas[l, default: [:]][p] = LoRADelta(rank: 4, inFeatures: mod.inFeatures, outFeatures: mod.outFeatures, a: mod.a.values,
                                                           b: mod.b.values, scale: mod.scale)
                }
            }
            s.reset()
            let fast = try InferenceSession(model: m, contextLength: 32, threads: 2)
            let before = try fast.evaluate(toks, allLogits: true)
            try m.attach(deltas, source: "test")
            fast.reset()
            XCTAssertEqual(try fast.evaluate(toks, allLogits: true), before)
        }
    }

    func makeTaskData(_ dir: String, count: Int = 24) throws -> String {
        let d = dir + "/data"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let words = ["ab", "cd", "ef", "gh", "ij", "kl"]
        let inst = (0..<count).map { i in ["input": "\(words[i % 6]) \(words[(i / 6) % 6]) =", "output": " \(words[(i + 1) % 6])"] }
        try write(["type": "text2text", "instances": inst], d + "/train.json")
        return d
    }

    func testTrainingLowersLossAndResumeIsExact() throws {
        let dir = tempDirectory()
        let model = try tiny(dir, dtype: .q8_0)
        let data = try makeTaskData(dir)
        func options(_ out: String) -> FinetuneOptions {
            var o = FinetuneOptions(modelPath: model, dataPath: data, outputDir: out)
            o.mode = .lora(LoRAConfig(rank: 4, alpha: 8, dropout: 0.1, targets: Projection.allCases))
            o.epochs = 4; o.batchSize = 4; o.gradAccum = 2; o.learningRate = 1e-2; o.blockSize = 32
            o.warmup = 2; o.schedule = .cosine; o.weightDecay = 0.01; o.saveEvery = 2; o.validationSplit = 0.2; o.threads = 2
            return o
        }
        let full = try Finetuner(options(dir + "/a"))
        try full.run()
        XCTAssertEqual(full.step, full.totalSteps)
        XCTAssertLessThan(full.log.last!.loss, full.log.first!.loss * 0.6, "loss should fall")
        XCTAssertNotNil(full.log.last!.evalLoss)
        // Interrupted after 3 steps, then resumed by a new process-like instance.
        var o = options(dir + "/b")
        o.maxSteps = 3
        o.saveEvery = 1
        try Finetuner(o).run()
        var r = options(dir + "/b")
        r.saveEvery = 1
        r.resume = true
        let resumed = try Finetuner(r)
        try resumed.run()
        XCTAssertEqual(resumed.trainModel.parameters.map(\.values), full.trainModel.parameters.map(\.values))
        // The log survives the resume (the checkpoint stores it to 6 decimals).
        XCTAssertEqual(resumed.log.count, full.log.count)
        for (x, y) in zip(resumed.log, full.log) { XCTAssertEqual(x.loss, y.loss, accuracy: 1e-5) }
        for f in ["adapter_config.json", "adapter_model.safetensors", "loss.csv", "loss.svg", "checkpoint.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/b/" + f), f)
        }
        let csv = try String(contentsOfFile: dir + "/b/loss.csv", encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, full.totalSteps + 1)
        XCTAssertTrue(try String(contentsOfFile: dir + "/b/loss.svg", encoding: .utf8).contains("<polyline"))
        // Changed settings are refused on resume.
        var bad = options(dir + "/b")
        bad.resume = true
        bad.learningRate = 5e-3
        expectError({ try Finetuner(bad).run() }, contains: ["different settings"])
    }

    /// Saved PEFT adapter → loaded → applied at run time equals the merged f32 model,
    /// and equals the trainer's own forward.
    func testPEFTRoundTripRunTimeAndMerge() throws {
        let dir = tempDirectory()
        let model = try tiny(dir, tied: false)
        let data = try makeTaskData(dir)
        var o = FinetuneOptions(modelPath: model, dataPath: data, outputDir: dir + "/ad")
        o.mode = .lora(LoRAConfig(rank: 3, alpha: 6, targets: Projection.allCases)); o.epochs = 1; o.learningRate = 5e-2; o.blockSize = 32
        let ft = try Finetuner(o)
        try ft.run()
        let a = try PEFTAdapter.load(dir + "/ad")
        XCTAssertEqual(a.config.rank, 3)
        XCTAssertEqual(a.config.alpha, 6)
        XCTAssertEqual(Set(a.config.targetModules), Set(Projection.allCases.map(\.hfModule)))
        XCTAssertNotNil(a.factors[1]?["q_proj"])
        let st = try SafetensorsFile(path: dir + "/ad/adapter_model.safetensors")
        XCTAssertTrue(st.tensors.contains { $0.name == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" && $0.shape == [3, 32] })
        XCTAssertTrue(st.tensors.contains { $0.name == "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight" && $0.shape == [32, 3] })
        // Loaded deltas are the trainer's (q/k rows permuted back to Wren order).
        let m = try LlamaModel(path: model)
        let deltas = try m.deltas(from: a, source: "ad")
        for l in 0..<2 {
            for p in Projection.allCases {
                let mod = try XCTUnwrap(ft.trainModel.loraModule(l, p))
                XCTAssertEqual(deltas[l]?[p]?.b, mod.b.values, "\(l) \(p)")
                XCTAssertEqual(deltas[l]?[p]?.a, mod.a.values)
                XCTAssertEqual(deltas[l]?[p]?.scale, 2)
            }
        }
        XCTAssertNotEqual(a.factors[0]!["q_proj"]!.b, ft.trainModel.loraModule(0, .q)!.b.values, "q rows are stored in HF order")
        // Run time vs merged (f32) vs the trainer's forward.
        let toks: [Int32] = [4, 8, 15, 16, 23, 42, 7, 9]
        try m.attachAdapter(path: dir + "/ad")
        let s = try InferenceSession(model: m, contextLength: 16, threads: 2, kvType: .f32, activations: .f32)
        let runTime = try s.evaluate(toks, allLogits: true)
        let reports = try Merger.merge(model: m, type: .f32, to: dir + "/merged.wren", overwrite: false)
        XCTAssertEqual(reports.count, 14)
        for r in reports { XCTAssertEqual(r.survived, 1, accuracy: 1e-3) }
        let merged = try InferenceSession(model: try LlamaModel(path: dir + "/merged.wren"), contextLength: 16, threads: 2, kvType: .f32,
                                          activations: .f32)
        let mergedLogits = try merged.evaluate(toks, allLogits: true)
        for i in 0..<runTime.count { XCTAssertEqual(runTime[i], mergedLogits[i], accuracy: 1e-4) }
        let base = try InferenceSession(model: try LlamaModel(path: model), contextLength: 16, threads: 2, kvType: .f32, activations: .f32)
        let baseLogits = try base.evaluate(toks, allLogits: true)
        XCTAssertGreaterThan(zip(baseLogits, runTime).map { abs($0 - $1) }.max()!, 1e-2, "the adapter changes the model")
    }

    /// LoRA with trainable token rows (PEFT's trainable_token_indices) on a tied model: the
    /// adapter carries the ids and rows, and the run-time adapter equals the merged model.
    func testTrainableTokensRoundTripRunTimeAndMerge() throws {
        let dir = tempDirectory()
        let model = try tiny(dir, tied: true)
        let data = try makeTaskData(dir)
        let ids: [Int32] = [4, 8, 15, 40, 63]
        var o = FinetuneOptions(modelPath: model, dataPath: data, outputDir: dir + "/ad")
        o.mode = .lora(LoRAConfig(rank: 2, alpha: 4, targets: [.q, .v], trainableTokens: ids)); o.epochs = 1; o.learningRate = 5e-2; o.blockSize = 32
        let ft = try Finetuner(o)
        try ft.run()
        let a = try PEFTAdapter.load(dir + "/ad")
        XCTAssertEqual(a.tokenIDs, ids.map(Int.init))
        let st = try SafetensorsFile(path: dir + "/ad/adapter_model.safetensors")
        XCTAssertTrue(st.tensors.contains { $0.name == "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta" && $0.shape == [5, 32] })
        let cfg = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/ad/adapter_config.json"))) as? [String: Any])
        XCTAssertEqual(cfg["trainable_token_indices"] as? [Int], ids.map(Int.init))
        let m = try LlamaModel(path: model)
        var baseRows = [Float](repeating: 0, count: ids.count * 32)
        baseRows.withUnsafeMutableBufferPointer { m.embedding.gatherRows(ids, into: $0.baseAddress!) }
        XCTAssertGreaterThan(zip(baseRows, a.tokenRows).map { abs($0 - $1) }.max()!, 1e-3, "the rows were trained")
        let toks: [Int32] = [4, 8, 15, 16, 23, 42, 7, 63]
        try m.attachAdapter(path: dir + "/ad")
        let s = try InferenceSession(model: m, contextLength: 16, threads: 2, kvType: .f32, activations: .f32)
        let runTime = try s.evaluate(toks, allLogits: true)
        _ = try Merger.merge(model: m, type: .f32, to: dir + "/merged.wren", overwrite: false)
        let merged = try InferenceSession(model: try LlamaModel(path: dir + "/merged.wren"), contextLength: 16, threads: 2, kvType: .f32,
                                          activations: .f32)
        let mergedLogits = try merged.evaluate(toks, allLogits: true)
        for i in 0..<runTime.count { XCTAssertEqual(runTime[i], mergedLogits[i], accuracy: 1e-4) }
        // Resuming from the adapter (--init-adapter) restores the rows; another id set is refused.
        var o2 = o
        o2.outputDir = dir + "/ad2"; o2.initAdapter = dir + "/ad"
        let ft2 = try Finetuner(o2)
        XCTAssertEqual(ft2.trainModel.tokenParam?.values, a.tokenRows)
        o2.mode = .lora(LoRAConfig(rank: 2, alpha: 4, targets: [.q, .v], trainableTokens: [4, 8]))
        expectError({ _ = try Finetuner(o2) }, contains: ["trainable_token_indices", "5 trainable tokens"])
    }

    func testMergeReportsLostUpdate() throws {
        let dir = tempDirectory()
        let m = try LlamaModel(path: try tiny(dir, dtype: .q4_0))
        let w = m.layers[0].q
        func delta(_ scale: Float) -> [Int: [Projection: LoRADelta]] {
            var rng = SeededRNG(seed: 1)
            let a = (0..<(2 * w.cols)).map { _ in rng.normal() }, b = (0..<(w.rows * 2)).map { _ in rng.normal() }
            return [0: [.q: LoRADelta(rank: 2, inFeatures: w.cols, outFeatures: w.rows, a: a, b: b, scale: scale)]]
        }
        try m.attach(delta(1e-4), source: "small")
        let small = try Merger.merge(model: m, type: nil, to: dir + "/s.wren", overwrite: false)
        XCTAssertEqual(small.count, 1)
        XCTAssertEqual(small[0].dtype, .q4_0)
        XCTAssertLessThan(small[0].survived, 0.5)
        m.detachAdapters()
        try m.attach(delta(0.05), source: "large")
        let large = try Merger.merge(model: m, type: .q8_0, to: dir + "/l.wren", overwrite: false)
        XCTAssertGreaterThan(large[0].survived, 0.9)
        XCTAssertThrowsError(try Merger.merge(model: m, type: nil, to: dir + "/l.wren", overwrite: false), "never overwrites")
        // A k-quant on rows that are not whole super-blocks (32 wide) falls back as convert does.
        let k = try Merger.merge(model: m, type: .q4_k, to: dir + "/k.wren", overwrite: false)
        XCTAssertEqual(k[0].dtype, .q5_0)
        XCTAssertEqual(try WrenFile(path: dir + "/k.wren").info("blk.0.attn_q.weight")?.dtype, .q5_0)
    }

    func testFullFinetuneWritesModel() throws {
        let dir = tempDirectory()
        let model = try tiny(dir)
        var o = FinetuneOptions(modelPath: model, dataPath: try makeTaskData(dir), outputDir: dir + "/full")
        o.mode = .full; o.epochs = 2; o.learningRate = 1e-3; o.blockSize = 32; o.checkpointing = true
        let ft = try Finetuner(o)
        try ft.run()
        XCTAssertLessThan(ft.log.last!.loss, ft.log.first!.loss)
        let out = try LlamaModel(path: dir + "/full/model.wren")
        let emb = try out.file.tensor(TensorNames.tokenEmbedding).floats()
        let trained = try XCTUnwrap(ft.trainModel.parameters.first { $0.name == TensorNames.tokenEmbedding })
        XCTAssertEqual(emb, trained.values)
    }

    /// LISA: only the sampled layers (and the embedding, head, final norm) change;
    /// the same layers are drawn for every step of an interval; resume is exact
    /// across interval boundaries; bad settings are refused.
    func testLISATrainsOnlySampledLayersAndResumes() throws {
        let dir = tempDirectory()
        let model = dir + "/tiny4.wren"
        try TinyModel(seed: 5, tied: false, vocab: 64, dim: 32, layers: 4, heads: 4, kvHeads: 2, ff: 64).writeWren(to: model, dtype: .f32)
        let data = try makeTaskData(dir)
        func options(_ out: String) -> FinetuneOptions {
            var o = FinetuneOptions(modelPath: model, dataPath: data, outputDir: out)
            o.mode = .full; o.lisaLayers = 1; o.lisaInterval = 2; o.maxSteps = 6; o.epochs = 4
            o.batchSize = 4; o.learningRate = 1e-3; o.blockSize = 32; o.weightDecay = 0.01; o.threads = 2
            return o
        }
        var o2 = options(dir + "/two")
        o2.maxSteps = 2
        let two = try Finetuner(o2)
        let start = Dictionary(uniqueKeysWithValues: two.trainModel.parameters.map { ($0.name, $0.values) })
        try two.run()
        let active = try XCTUnwrap(two.lisaActiveLayers(step: 0))
        XCTAssertEqual(active.count, 1)
        XCTAssertEqual(two.lisaActiveLayers(step: 1), active, "one draw per interval")
        let inLayers = Set(two.trainModel.layerParameters.joined().map(\.name))
        for (l, ps) in two.trainModel.layerParameters.enumerated() {
            XCTAssertEqual(ps.count, 9, "two norms and seven projections")
            for p in ps {
                if active.contains(l) {
                    XCTAssertNotEqual(p.values, start[p.name], "\(p.name) was sampled and should change")
                } else {
                    XCTAssertEqual(p.values, start[p.name], "\(p.name) was not sampled and must not change")
                }
            }
        }
        for p in two.trainModel.parameters where !inLayers.contains(p.name) {
            XCTAssertNotEqual(p.values, start[p.name], "\(p.name) is always trained")
        }
        for (i, p) in two.trainModel.parameters.enumerated() {
            let sampled = !inLayers.contains(p.name) || active.contains { p.name.hasPrefix("blk.\($0).") }
            XCTAssertEqual(two.optimizer.steps[i], sampled ? 2 : 0, p.name)
        }
        // Six steps cross two interval boundaries; stopped after 3 and resumed, the result is identical.
        let whole = try Finetuner(options(dir + "/a"))
        try whole.run()
        XCTAssertLessThan(whole.log.last!.loss, whole.log.first!.loss)
        var cut = options(dir + "/b")
        cut.maxSteps = 3
        try Finetuner(cut).run()
        var r = options(dir + "/b")
        r.resume = true
        let resumed = try Finetuner(r)
        try resumed.run()
        XCTAssertEqual(resumed.trainModel.parameters.map(\.values), whole.trainModel.parameters.map(\.values))
        XCTAssertEqual(resumed.optimizer.steps, whole.optimizer.steps)
        // Refused: more layers than the model has, LISA with LoRA, an interval of 0.
        var many = options(dir + "/c")
        many.lisaLayers = 5
        expectError({ _ = try Finetuner(many) }, contains: ["lisaLayers", "1...4"])
        var lora = options(dir + "/c")
        lora.mode = .lora(LoRAConfig())
        expectError({ _ = try Finetuner(lora) }, contains: ["lisaLayers", "full finetuning"])
        var zero = options(dir + "/c")
        zero.lisaInterval = 0
        expectError({ _ = try Finetuner(zero) }, contains: ["lisaInterval"])
    }

    /// Architectures whose extra steps have no backward pass are refused, naming them.
    func testGemma3IsRefused() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("WrenEngineTests/Fixtures/tiny-gemma3.gguf").path
        let out = tempDirectory() + "/g.wren"
        _ = try ModelConverter.convert(try ModelSource.open(fixture), to: out, options: .init(overwrite: true))
        let m = try LlamaModel(path: out)
        XCTAssertThrowsError(try TrainModel(model: m, mode: .lora(LoRAConfig(rank: 2, alpha: 4, targets: [.q])), maxTokens: 16,
                                            maxLength: 16, threads: 1)) { e in
            XCTAssertTrue("\(e)".contains("finetuning gemma3 is not supported yet"), "\(e)")
            XCTAssertTrue("\(e)".contains("QK-norm"), "\(e)")
        }
    }
}
