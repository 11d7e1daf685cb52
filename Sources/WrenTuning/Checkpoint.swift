// Training checkpoints (formats/adapter.md): the trainable parameters and the
// AdamW moments as f32 safetensors, with the step, the logs, an XXH64 per tensor
// and a fingerprint of the settings, base model and data in the metadata. A
// resume checks all of it and names what changed.

import Foundation
import WrenEngine
import WrenFormat
import WrenKernels

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
        var table: [UInt8] = []
        for t in model.file.tensors {
            table += Array(t.name.utf8) + [0, UInt8(t.dtype.rawValue & 0xff)]
            for d in t.shape { withUnsafeBytes(of: Int64(d).littleEndian) { table += $0 } }
            withUnsafeBytes(of: t.checksum.littleEndian) { table += $0 }
        }
        f.append(("base", String(table.withUnsafeBytes { XXH64.hash($0) }, radix: 16)))
        f.append(("data", String(dataHash, radix: 16)))
        return f
    }

    var fingerprint: String { fingerprintFields.map { "\($0.0)=\($0.1)" }.joined(separator: "|") }

    /// The fields whose values differ between a checkpoint's fingerprint and this run's, one per line.
    func fingerprintChanges(_ stored: String) -> [String] {
        var old: [String: String] = [:]
        for part in stored.split(separator: "|") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            old[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        let names = ["mode": "mode", "lr": "learning rate", "bs": "batch size", "acc": "gradient accumulation", "block": "block size",
                     "ep": "epochs", "warm": "warm-up", "sched": "schedule", "wd": "weight decay", "clip": "clipping", "seed": "seed",
                     "train": "training sequences", "tokens": "training tokens", "lisa": "LISA", "base": "base model", "data": "training/eval data"]
        return fingerprintFields.compactMap { k, v in
            old[k] == v ? nil : "\(names[k] ?? k): checkpoint \(old[k] ?? "(not recorded)"), now \(v)"
        }
    }

    func saveCheckpoint(seconds: Double) throws {
        // Streamed from the parameters and moments in place: no copy of them is made.
        let ps = trainModel.parameters
        var sources: [SafetensorsWriter.FloatSource] = []
        for (i, p) in ps.enumerated() {
            sources.append(.init(name: p.name, shape: p.shape, data: UnsafePointer(p.value)))
            sources.append(.init(name: p.name + ".adam_m", shape: p.shape, data: optimizer.momentPointer(i, second: false)))
            sources.append(.init(name: p.name + ".adam_v", shape: p.shape, data: optimizer.momentPointer(i, second: true)))
        }
        let logText = log.map(Self.csvLine).joined()
        let evalText = evalHistory.map { "\($0.step):\($0.loss)" }.joined(separator: ";")
        // XXH64 of every tensor's bytes, checked on resume: a flipped bit is refused, not trained on.
        let sums = sources.map { s in "\(s.name):" + String(XXH64.hash(UnsafeRawBufferPointer(start: s.data, count: 4 * s.shape.reduce(1, *))), radix: 16) }
        let meta = ["eval": evalText, "step": "\(step)", "adam_t": "\(optimizer.t)", "fingerprint": fingerprint, "seconds": "\(seconds)",
                    "log": logText, "seed": "\(options.seed)", "adam_steps": optimizer.steps.map(String.init).joined(separator: ","),
                    "checksums": sums.joined(separator: ",")]
        try SafetensorsWriter.write(sources, metadata: meta, to: checkpointPath)
    }

    /// Checks every tensor of a checkpoint against the XXH64 recorded when it was written.
    func verifyChecksums(_ st: SafetensorsFile) throws {
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

    func loadCheckpoint() throws {
        let path = checkpointPath
        guard FileManager.default.fileExists(atPath: path) else {
            throw EngineError.invalidSetting(setting: "resume", reason: "is set but \(path) holds no checkpoint to resume from")
        }
        let st = try SafetensorsFile(path: path)
        guard let fp = st.metadata["fingerprint"], let s = st.metadata["step"].flatMap(Int.init),
              let t = st.metadata["adam_t"].flatMap(Int.init) else {
            throw FormatError.invalid(path: path, field: "__metadata__", reason: "not a Wren training checkpoint")
        }
        guard fp == fingerprint else {
            throw EngineError.invalidParameter("\(path): cannot resume: the checkpoint was made with different settings, data or base model:\n  "
                + fingerprintChanges(fp).joined(separator: "\n  "))
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
        for p in trainModel.parameters {
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
        step = s
        priorSeconds = st.metadata["seconds"].flatMap(Double.init) ?? 0
        log = (st.metadata["log"] ?? "").split(separator: "\n").compactMap { Self.parseCSV(String($0)) }
        evalHistory = (st.metadata["eval"] ?? "").split(separator: ";").compactMap { e in
            let f = e.split(separator: ":")
            guard f.count == 2, let s = Int(f[0]), let l = Double(f[1]) else { return nil }
            return (s, l)
        }
    }
}
