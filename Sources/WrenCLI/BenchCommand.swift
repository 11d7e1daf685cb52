// `wren bench`: prompt-processing (pp) and generation (tg) speed, like
// llama-bench: mean ± stddev over repetitions, plus model-open time and peak RSS.

import ArgumentParser
import Foundation
import WrenEngine
import WrenKernels

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prompt processing (ppN) and generation (tgN) speed in tokens/s.",
        discussion: "ppN evaluates N prompt tokens in one call on an empty cache; tgN generates N tokens one at a time from an empty cache (as llama-bench does). Tokens are seeded pseudo-random ids.")

    @Option(name: .shortAndLong, help: "Model file (.wren).")
    var model: String

    @Option(name: .short, help: "Prompt lengths, comma-separated (0 or empty to skip).")
    var p = "512"

    @Option(name: .short, help: "Generation lengths, comma-separated (0 to skip).")
    var n = "128"

    @Option(name: .short, help: "Thread counts, comma-separated (default: the physical cores).")
    var t: String?

    @Option(name: .short, help: "Repetitions per test.")
    var r = 5

    @Flag(help: "Print a JSON array, one object per test.")
    var json = false

    @OptionGroup var path: KVPathOptions

    @Option(name: .short, help: "Prompt tokens per forward pass (batch size).")
    var b = 512

    @Flag(help: "Print where the time of each test's last repetition went (matmuls, attention, output head, the rest).")
    var profile = false

    func list(_ s: String, _ name: String) throws -> [Int] {
        let v = s.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard v.allSatisfy({ $0 != nil && $0! >= 0 }) else { throw ValidationError("-\(name) takes comma-separated non-negative integers") }
        return v.map { $0! }.filter { $0 > 0 }
    }

    func validate() throws {
        guard r >= 1 else { throw ValidationError("-r must be at least 1") }
        guard b >= 1 && b <= 4096 else { throw ValidationError("-b must be in 1...4096") }
        _ = try list(p, "p"); _ = try list(n, "n")
        if let t { guard try list(t, "t").allSatisfy({ $0 >= 1 && $0 <= 256 }) else { throw ValidationError("-t values must be in 1...256") } }
    }

    func run() throws {
        do {
            let pps = try list(p, "p"), tgs = try list(n, "n")
            let threads = try t.map { try list($0, "t") } ?? [Machine.physicalCores]
            var opens: [Double] = []
            for _ in 0..<max(3, r) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try LlamaModel(path: model)
                opens.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            let m = try LlamaModel(path: model)
            let ctx = max((pps.max() ?? 0), (tgs.max() ?? 0), 1) + 1
            var rng = SeededGenerator(seed: 42)
            func tokens(_ k: Int) -> [Int32] { (0..<k).map { _ in Int32(rng.next() % UInt64(m.config.vocabSize)) } }
            var results: [[String: Any]] = []
            let size = (try? FileManager.default.attributesOfItem(atPath: model)[.size] as? Int) ?? 0
            // Rows packed for 1 to 8 tokens (built here, before the first session, as that session would).
            let packedMB = path.exact ? 0 : Double(m.packedWeights()?.bytes ?? 0) / 1e6
            if !json {
                print(String(format: "model %@: %.1f MB, open %.2f ms (median of %d), kernels %@, packed %.1f MB", model, Double(size) / 1e6,
                             median(opens), opens.count, Machine.kernels, packedMB))
                print("| threads | test | tokens/s |")
                print("|---|---|---|")
            }
            for th in threads {
                let s = try InferenceSession(model: m, contextLength: ctx, threads: th, maxBatch: b, kvType: path.kvCacheType,
                                             activations: path.exact ? .f32 : .q8)
                func record(_ name: String, _ rates: [Double]) {
                    let mean = rates.reduce(0, +) / Double(rates.count)
                    let sd = rates.count > 1 ? (rates.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(rates.count - 1)).squareRoot() : 0
                    results.append(["test": name, "threads": th, "tokens_per_s": mean, "stddev": sd, "repetitions": rates.count])
                    if !json { print(String(format: "| %d | %@ | %.2f ± %.2f |", th, name, mean, sd)) }
                }
                for pp in pps {
                    var rates: [Double] = []
                    s.reset()
                    _ = try s.evaluate(tokens(min(pp, 8)))   // warm-up
                    for rep in 0..<r {
                        s.reset()
                        if profile && rep == r - 1 { s.enableProfiling() }
                        let toks = tokens(pp)
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        _ = try s.evaluate(toks)
                        rates.append(Double(pp) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
                    }
                    record("pp\(pp)", rates)
                    if profile, let pr = s.profile, !json { printProfile(pr, threads: th, what: "pp\(pp)") }
                }
                for tg in tgs {
                    var rates: [Double] = []
                    for rep in 0..<r {
                        s.reset()
                        if profile && rep == r - 1 { s.enableProfiling() }
                        let toks = tokens(tg)
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        for tok in toks { _ = try s.evaluate([tok]) }
                        rates.append(Double(tg) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
                    }
                    record("tg\(tg)", rates)
                    if profile, let pr = s.profile, !json { printProfile(pr, threads: th, what: "tg\(tg)") }
                }
            }
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            let rssMB = Double(usage.ru_maxrss) / 1024
            if json {
                for i in results.indices { results[i]["open_ms"] = median(opens); results[i]["peak_rss_mb"] = rssMB; results[i]["kernels"] = Machine.kernels
                    results[i]["packed_mb"] = packedMB }
                let d = try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys])
                print(String(decoding: d, as: UTF8.self))
            } else {
                print(String(format: "peak RSS %.1f MB (context %d, %@ KV cache)", rssMB, ctx, path.kvCacheType.rawValue))
            }
        } catch { fail(error) }
    }

    func printProfile(_ p: ForwardProfile, threads: Int, what: String) { p.lines(threads: threads, what: what).forEach { print($0) } }

    func median(_ v: [Double]) -> Double {
        let s = v.sorted()
        return s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
    }
}

extension ForwardProfile {
    /// The profile as printed: time per token of each part of the forward pass.
    func lines(threads: Int, what: String) -> [String] {
        let total = Double(totalNs), perToken = total / Double(max(tokens, 1)) / 1e3
        var out = [String(format: "profile of %@, %d threads, %d tokens in %d passes: %.1f µs per token", what, threads, tokens, passes, perToken)]
        for (name, ns) in [("matmuls (layers)", matmulNs), ("attention", attentionNs), ("output head", outputNs), ("the rest", otherNs)] {
            out.append(String(format: "  %-17@ %7.1f µs  %5.1f%%", name as NSString, Double(ns) / Double(max(tokens, 1)) / 1e3, 100 * Double(ns) / max(total, 1)))
        }
        return out
    }
}
