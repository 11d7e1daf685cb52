// Training checkpoints (formats/adapter.md): the trainable parameters and the
// AdamW moments as f32 safetensors, with the step, the logs, an XXH64 per tensor
// and a fingerprint of the settings, base model and data in the metadata. A
// resume checks all of it and names what changed.

import Foundation
import WrenEngine
import WrenFormat
import WrenKernels

/// Saving and loading checkpoints, shared by finetune and the preference trainers (reward
/// models, DPO): every trainable tensor and its AdamW moments, the step, the loss log, the
/// trainer's evaluation history (as text), the seconds so far, an XXH64 per tensor, and a
/// fingerprint of everything a resume must find unchanged.
enum TrainingCheckpoint {
    static let fieldNames = ["mode": "mode", "lr": "learning rate", "bs": "batch size", "acc": "gradient accumulation", "block": "block size",
                             "ep": "epochs", "warm": "warm-up", "sched": "schedule", "wd": "weight decay", "clip": "clipping", "seed": "seed",
                             "train": "training sequences", "tokens": "training tokens", "lisa": "LISA", "base": "base model",
                             "data": "training/eval data", "pairs": "training pairs", "beta": "beta", "loss": "loss", "init": "initial adapter"]

    static func fingerprint(_ fields: [(String, String)]) -> String { fields.map { "\($0.0)=\($0.1)" }.joined(separator: "|") }

    /// The fields whose values differ between a checkpoint's fingerprint and `fields`, one per line.
    static func changes(_ stored: String, _ fields: [(String, String)]) -> [String] {
        var old: [String: String] = [:]
        for part in stored.split(separator: "|") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            old[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        return fields.compactMap { k, v in
            old[k] == v ? nil : "\(fieldNames[k] ?? k): checkpoint \(old[k] ?? "(not recorded)"), now \(v)"
        }
    }

    /// A hash of a model file's tensor table (names, types, shapes, data checksums).
    static func baseHash(_ file: WrenFile) -> String {
        var table: [UInt8] = []
        for t in file.tensors {
            table += Array(t.name.utf8) + [0, UInt8(t.dtype.rawValue & 0xff)]
            for d in t.shape { withUnsafeBytes(of: Int64(d).littleEndian) { table += $0 } }
            withUnsafeBytes(of: t.checksum.littleEndian) { table += $0 }
        }
        return String(table.withUnsafeBytes { XXH64.hash($0) }, radix: 16)
    }

    static func save(to path: String, parameters ps: [Parameter], optimizer: AdamW, step: Int, seconds: Double, log: [LogRow], evals: String,
                     fingerprint fields: [(String, String)], seed: UInt64) throws {
        // Streamed from the parameters and moments in place: no copy of them is made.
        var sources: [SafetensorsWriter.FloatSource] = []
        for (i, p) in ps.enumerated() {
            sources.append(.init(name: p.name, shape: p.shape, data: UnsafePointer(p.value)))
            sources.append(.init(name: p.name + ".adam_m", shape: p.shape, data: optimizer.momentPointer(i, second: false)))
            sources.append(.init(name: p.name + ".adam_v", shape: p.shape, data: optimizer.momentPointer(i, second: true)))
        }
        // XXH64 of every tensor's bytes, checked on resume: a flipped bit is refused, not trained on.
        let sums = sources.map { s in "\(s.name):" + String(XXH64.hash(UnsafeRawBufferPointer(start: s.data, count: 4 * s.shape.reduce(1, *))), radix: 16) }
        let meta = ["eval": evals, "step": "\(step)", "adam_t": "\(optimizer.t)", "fingerprint": fingerprint(fields), "seconds": "\(seconds)",
                    "log": log.map(Finetuner.csvLine).joined(), "seed": "\(seed)", "adam_steps": optimizer.steps.map(String.init).joined(separator: ","),
                    "checksums": sums.joined(separator: ",")]
        try SafetensorsWriter.write(sources, metadata: meta, to: path)
    }

    /// Checks every tensor of a checkpoint against the XXH64 recorded when it was written.
    static func verifyChecksums(_ st: SafetensorsFile) throws {
        guard let text = st.metadata["checksums"] else {
            throw FormatError.missingField(path: st.path, field: "__metadata__.checksums")
        }
        var want: [String: UInt64] = [:]
        for item in text.split(separator: ",") {
            guard let c = item.lastIndex(of: ":"), let v = UInt64(item[item.index(after: c)...], radix: 16) else {
                throw FormatError.invalid(path: st.path, field: "__metadata__.checksums", reason: "bad entry \(item.prefix(60))")
            }
            want[String(item[..<c])] = v
        }
        guard want.count == st.tensors.count else {
            throw FormatError.invalid(path: st.path, field: "__metadata__.checksums", reason: "\(want.count) checksums for \(st.tensors.count) tensors")
        }
        for t in st.tensors {
            guard let w = want[t.name] else { throw FormatError.invalid(path: st.path, field: "tensor \(t.name)", reason: "no checksum recorded") }
            let got = XXH64.hash(st.data(t))
            guard got == w else { throw FormatError.checksumMismatch(path: st.path, what: "tensor \(t.name)", expected: w, found: got) }
        }
    }

    /// Restores the parameters and moments from `path` after checking the fingerprint and checksums.
    /// - Returns: the step, the seconds so far, the loss log and the evaluation history text.
    static func load(from path: String, parameters: [Parameter], optimizer: AdamW,
                     fingerprint fields: [(String, String)]) throws -> (step: Int, seconds: Double, log: [LogRow], evals: String) {
        guard FileManager.default.fileExists(atPath: path) else {
            throw EngineError.invalidSetting(setting: "resume", reason: "is set but \(path) holds no checkpoint to resume from")
        }
        let st = try SafetensorsFile(path: path)
        guard let fp = st.metadata["fingerprint"], let s = st.metadata["step"].flatMap(Int.init),
              let t = st.metadata["adam_t"].flatMap(Int.init) else {
            throw FormatError.invalid(path: path, field: "__metadata__", reason: "not a Wren training checkpoint")
        }
        guard fp == fingerprint(fields) else {
            throw EngineError.invalidParameter("\(path): cannot resume: the checkpoint was made with different settings, data or base model:\n  "
                + changes(fp, fields).joined(separator: "\n  "))
        }
        try verifyChecksums(st)
        let byName = Dictionary(st.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        func read(_ name: String, _ count: Int) throws -> [Float] {
            guard let info = byName[name] else { throw FormatError.missingTensor(path: path, tensor: name) }
            let f = try PEFTAdapter.floats(st, info)
            guard f.count == count else { throw FormatError.invalid(path: path, field: "tensor \(name)", reason: "\(f.count) values, expected \(count)") }
            return f
        }
        var ms: [[Float]] = [], vs: [[Float]] = []
        for p in parameters {
            p.set(try read(p.name, p.count))
            ms.append(try read(p.name + ".adam_m", p.count))
            vs.append(try read(p.name + ".adam_v", p.count))
        }
        // Updates per parameter (differ from adam_t only with LISA; absent in older checkpoints).
        var steps = Array(repeating: t, count: ms.count)
        if let text = st.metadata["adam_steps"] {
            let parsed = text.split(separator: ",").compactMap { Int($0) }
            guard parsed.count == ms.count else {
                throw FormatError.invalid(path: path, field: "__metadata__.adam_steps", reason: "\(parsed.count) counts for \(ms.count) parameters")
            }
            steps = parsed
        }
        optimizer.restore(m: ms, v: vs, t: t, steps: steps)
        let log = (st.metadata["log"] ?? "").split(separator: "\n").compactMap { Finetuner.parseCSV(String($0)) }
        return (s, st.metadata["seconds"].flatMap(Double.init) ?? 0, log, st.metadata["eval"] ?? "")
    }
}

extension Finetuner {
    var checkpointPath: String { options.outputDir + "/checkpoint.safetensors" }

    /// What must match for a resume to continue the same run: the settings, the base model
    /// (a hash of its tensor table: names, types, shapes and data checksums) and the data.
    var fingerprintFields: [(String, String)] {
        let o = options
        var f: [(String, String)] = [("mode", "\(o.mode)"), ("lr", "\(o.learningRate)"), ("bs", "\(o.batchSize)"), ("acc", "\(o.gradAccum)"),
                                     ("block", "\(o.blockSize)"), ("ep", "\(o.epochs)"), ("warm", "\(o.warmup)"), ("sched", "\(o.schedule)"),
                                     ("wd", "\(o.weightDecay)"), ("clip", "\(o.clip)"), ("seed", "\(o.seed)"), ("train", "\(train.count)"),
                                     ("tokens", "\(trainTokens)")]
        if o.lisaLayers > 0 { f.append(("lisa", "\(o.lisaLayers)/\(o.lisaInterval)")) }
        f.append(("base", TrainingCheckpoint.baseHash(model.file)))
        f.append(("data", String(dataHash, radix: 16)))
        return f
    }

    func saveCheckpoint(seconds: Double) throws {
        let evalText = evalHistory.map { "\($0.step):\($0.loss)" }.joined(separator: ";")
        try TrainingCheckpoint.save(to: checkpointPath, parameters: trainModel.parameters, optimizer: optimizer, step: step, seconds: seconds,
                                    log: log, evals: evalText, fingerprint: fingerprintFields, seed: options.seed)
    }

    func loadCheckpoint() throws {
        let r = try TrainingCheckpoint.load(from: checkpointPath, parameters: trainModel.parameters, optimizer: optimizer,
                                            fingerprint: fingerprintFields)
        step = r.step
        priorSeconds = r.seconds
        log = r.log
        evalHistory = r.evals.split(separator: ";").compactMap { e in
            let f = e.split(separator: ":")
            guard f.count == 2, let s = Int(f[0]), let l = Double(f[1]) else { return nil }
            return (s, l)
        }
    }
}
