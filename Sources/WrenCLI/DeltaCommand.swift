// `wren delta make|apply|inspect`: delta weights bound to their base (formats/delta.md).

import ArgumentParser
import Foundation
import WrenFormat
import WrenKernels

extension DeltaKind: ExpressibleByArgument {}

/// `--format`: Wren's own delta, or a Hugging Face checkpoint of tuned − base (LMFlow/FastChat).
enum DeltaFormat: String, ExpressibleByArgument, CaseIterable {
    case wren, hf
}

struct DeltaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delta",
        abstract: "Make, apply and inspect delta weights (tuned − base), checked against their base.",
        subcommands: [DeltaMake.self, DeltaApply.self, DeltaInspect.self])
}

/// Prints progress in phases ("planning …" then writing), each with its own rate and ETA.
final class PhasedProgress {
    var line = ProgressLine()
    var planning = true
    func update(_ p: WriteProgress) {
        let isPlan = p.name.hasPrefix("planning ")
        if planning, !isPlan { line = ProgressLine(); planning = false }
        line.update(p)
    }
}

struct DeltaMake: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make",
        abstract: "Write the delta that turns BASE into TUNED.",
        discussion: """
        BASE and TUNED may each be a .wren file, a GGUF file or a Hugging Face directory; tensors \
        are compared as a .wren stores them. The delta records the SHA-256 of every base and target \
        tensor, and the target's metadata (architecture, tokenizer, chat template). --encoding exact \
        rebuilds the target bit for bit; q8 stores tuned − base as 8-bit blocks (smaller, lossy; the \
        error is reported). --format hf writes instead a Hugging Face directory of tuned − base \
        (--type f32, f16 or bf16), the delta LMFlow's and FastChat's apply_delta scripts read.
        """)

    @Option(help: "The base model.")
    var base: String

    @Option(help: "The tuned model.")
    var tuned: String

    @Option(name: .shortAndLong, help: "Output delta (.wdelta), or directory with --format hf.")
    var output: String

    @Option(help: "exact or q8.")
    var encoding: DeltaKind = .exact

    @Option(help: "wren (a .wdelta) or hf (a Hugging Face directory of tuned − base).")
    var format: DeltaFormat = .wren

    @Option(help: "--format hf: the float type of the weights (f32, f16 or bf16).")
    var type: DType = .f32

    @Flag(help: "Overwrite an existing output.")
    var force = false

    func validate() throws {
        guard !type.isQuantized else { throw ValidationError("--type must be f32, f16 or bf16") }
    }

    func run() throws {
        Std.removeTemporaryFilesOnSignals()
        do {
            let t0 = Date()
            if format == .hf {
                try Delta.makeHF(base: base, tuned: tuned, to: output, floatType: type, overwrite: force, progress: ProgressLine().update)
                stderrLine(String(format: "wrote %@ (tuned − base, %@) in %.1fs", output, type.name, Date().timeIntervalSince(t0)))
                return
            }
            let r = try Delta.make(base: base, tuned: tuned, to: output, kind: encoding, overwrite: force, progress: PhasedProgress().update)
            var counts: [DeltaEncoding: (Int, Int)] = [:]
            for t in r.tensors { counts[t.encoding, default: (0, 0)].0 += 1; counts[t.encoding, default: (0, 0)].1 += t.storedBytes }
            let parts = DeltaEncoding.allCases.compactMap { e in counts[e].map { "\($0.0) \(e.rawValue) (\(String(format: "%.1f", Double($0.1) / 1e6)) MB)" } }
            stderrLine(String(format: "wrote %@: %.1f MB for a %.1f MB target (%.2fx smaller) in %.1fs; base %@",
                              output, Double(r.fileSize) / 1e6, Double(r.targetBytes) / 1e6, Double(r.targetBytes) / Double(max(1, r.fileSize)),
                              Date().timeIntervalSince(t0), r.baseIdentity))
            stderrLine("tensors: " + parts.joined(separator: ", "))
            var tried: [DeltaEncoding: Int] = [:]
            let measured = r.tensors.filter { !$0.candidates.isEmpty }
            for t in measured { for (e, n) in t.candidates { tried[e, default: 0] += n } }
            if !measured.isEmpty {
                stderrLine("the \(measured.count) changed tensors after zstd, by encoding tried: "
                           + DeltaEncoding.allCases.compactMap { e in tried[e].map { "\(e.rawValue) \(String(format: "%.1f", Double($0) / 1e6)) MB" } }
                               .joined(separator: ", "))
            }
            if encoding == .q8 { stderrLine(String(format: "q8 error against the tuned values: max %.3g, mean %.3g", r.maxError, r.meanError)) }
        } catch { fail(error) }
    }
}

struct DeltaApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Add a delta to its base and write the target .wren.",
        discussion: """
        The base is checked tensor by tensor (SHA-256) against the one the delta was made for, and \
        refused on the first difference unless --force-base. Every exactly encoded tensor is checked \
        against the target's SHA-256 before the output is renamed into place. --format hf reads a \
        Hugging Face directory of tuned − base (LMFlow/FastChat delta weights) and adds the base, \
        into the leading rows where the delta's vocabulary is larger; these carry no hashes.
        """)

    @Option(help: "The base model (.wren, GGUF or Hugging Face directory).")
    var base: String

    @Argument(help: "The delta (.wdelta), or a Hugging Face directory with --format hf.")
    var delta: String

    @Option(name: .shortAndLong, help: "Output .wren path.")
    var output: String

    @Flag(help: "Apply to a base other than the delta's, saying how many tensors differ.")
    var forceBase = false

    @Option(help: "wren (a .wdelta) or hf (a Hugging Face directory of tuned − base).")
    var format: DeltaFormat = .wren

    @Option(help: ArgumentHelp("--format hf: store the 2-D weights as this type or mixture (default: the delta's float type).", valueName: "type"))
    var type: QuantScheme?

    @Flag(help: "Overwrite an existing output file.")
    var force = false

    func validate() throws {
        if format == .hf, forceBase { throw ValidationError("--force-base: Hugging Face deltas carry no hashes to check") }
        if format == .wren, type != nil { throw ValidationError("--type is for --format hf; a .wdelta rebuilds the target's own types") }
    }

    func run() throws {
        Std.removeTemporaryFilesOnSignals()
        do {
            let t0 = Date()
            if format == .hf {
                let n = try Delta.applyHF(delta: delta, base: base, to: output, type: type, overwrite: force, progress: ProgressLine().update)
                stderrLine(String(format: "wrote %@: %d tensors in %.1fs", output, n, Date().timeIntervalSince(t0)))
                return
            }
            let r = try Delta.apply(delta: delta, base: base, to: output, forceBase: forceBase, overwrite: force, progress: ProgressLine().update)
            if r.differingBaseTensors > 0 {
                stderrLine("warning: \(r.differingBaseTensors) base tensors differ from the delta's base; the result is not the delta's target")
            }
            stderrLine(String(format: "wrote %@: %d tensors, %d checked against the target's SHA-256, in %.1fs",
                              output, r.tensors, r.verified, Date().timeIntervalSince(t0)))
        } catch { fail(error) }
    }
}

struct DeltaInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a delta's base, target, encodings and sizes.")

    @Argument(help: "The delta (.wdelta).")
    var delta: String

    @Flag(help: "Check every payload's checksum.")
    var verify = false

    @Flag(help: "List every tensor.")
    var tensors = false

    func run() throws {
        do {
            let d = try DeltaFile(path: delta)
            if verify { try d.file.verify() }
            let size = d.file.mapping.bytes.count
            let targetBytes = d.target.reduce(0) { $0 + $1.dtype.byteCount(elements: $1.shape.reduce(1, *))! }
            print("delta:    \(delta) (\(d.kind.rawValue), \(size) bytes\(verify ? ", checksums verified" : ""))")
            print("base:     \(d.baseIdentity), \(d.base.count) tensors")
            print("target:   \(d.targetIdentity), \(d.target.count) tensors")
            let tok = try TokenizerMetadata(metadata: d.targetMetadata, path: delta)
            print("tokenizer: \(tok.tokens.count) tokens\(tok.chatTemplate != nil ? ", chat template" : "")")
            print(String(format: "size:     %.1f MB for a %.1f MB target: %.2fx smaller", Double(size) / 1e6, Double(targetBytes) / 1e6,
                         Double(targetBytes) / Double(max(1, size))))
            if d.kind == .q8, let m = d.file.metadata["delta.q8.max_error"]?.double, let a = d.file.metadata["delta.q8.mean_error"]?.double {
                print(String(format: "q8 error: max %.3g, mean %.3g", m, a))
            }
            var stored: [String: Int] = [:]
            for t in d.file.tensors { stored[t.name] = t.storedSize }
            var byEnc: [DeltaEncoding: (Int, Int, Int)] = [:]
            for (i, r) in d.target.enumerated() {
                let e = d.encodings[i]
                byEnc[e, default: (0, 0, 0)].0 += 1
                byEnc[e, default: (0, 0, 0)].1 += r.dtype.byteCount(elements: r.shape.reduce(1, *))!
                byEnc[e, default: (0, 0, 0)].2 += stored[r.name] ?? 0
            }
            print("encodings:")
            for e in DeltaEncoding.allCases { if let v = byEnc[e] {
                print(String(format: "  %-7@ %4d tensors  %10.1f MB of target in %10.1f MB", e.rawValue, v.0, Double(v.1) / 1e6, Double(v.2) / 1e6))
            } }
            if tensors {
                for (i, r) in d.target.enumerated() {
                    print("  \(r.name)  \(r.dtype.name) \(r.shape)  \(d.encodings[i].rawValue)  \(stored[r.name] ?? 0) bytes  sha256 \(r.sha256.prefix(16))…")
                }
            }
        } catch { fail(error) }
    }
}
