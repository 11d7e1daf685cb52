// `wren inspect FILE [--verify] [--json]` for .wren and .gguf files.

import ArgumentParser
import Foundation
import WrenFormat
import WrenKernels

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a .wren or .gguf file's architecture, tokenizer and tensor table.",
        discussion: "--verify checks every tensor checksum of a .wren file and exits 1 naming the first bad tensor.")

    @Argument(help: "A .wren or .gguf file.")
    var file: String

    @Flag(help: "Check every checksum (a .wren file) or every table entry (GGUF carries no checksums).")
    var verify = false

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "List every metadata key (text mode).")
    var allMetadata = false

    func run() throws {
        do {
            let head = try MappedFile.prefix(of: file, count: 8)
            if head.starts(with: Array("GGUF".utf8)) { try inspectGGUF() } else { try inspectWren() }
        } catch { fail(error) }
    }

    func out(_ s: String) { print(s) }

    func config(_ c: ModelConfig) -> [String: Any] {
        ["vocab_size": c.vocabSize, "context_length": c.contextLength, "embedding_length": c.embeddingLength,
         "feed_forward_length": c.feedForwardLength, "block_count": c.blockCount, "head_count": c.headCount,
         "head_count_kv": c.headCountKV, "head_dim": c.headDim, "rms_norm_eps": Double(c.rmsNormEps),
         "rope": ["freq_base": Double(c.ropeFreqBase), "dimension_count": c.ropeDimensionCount,
                  "scaling": c.ropeScalingType.rawValue, "factor": Double(c.ropeScalingFactor),
                  "original_context_length": c.ropeOriginalContextLength] as [String: Any],
         "tied_embeddings": c.tiedEmbeddings]
    }

    func tokenizer(_ t: TokenizerMetadata) -> [String: Any] {
        var d: [String: Any] = ["model": t.model, "pre": t.pre, "tokens": t.tokens.count, "merges": t.merges?.count ?? 0,
                                "add_bos": t.addBOS, "add_eos": t.addEOS, "add_space_prefix": t.addSpacePrefix,
                                "chat_template_bytes": t.chatTemplate?.utf8.count ?? 0]
        for (k, v) in [("bos", t.bosID), ("eos", t.eosID), ("unk", t.unkID), ("pad", t.padID)] {
            if let v { d[k] = ["id": v, "text": t.tokens.string(v)] as [String: Any] }
        }
        return d
    }

    func printJSON(_ obj: Any) {
        let d = try! JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: d, as: UTF8.self))
    }

    func shapeString(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ", ") + "]" }

    func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

    func inspectWren() throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let w = try WrenFile(path: file)
        let openMs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        let c = try ModelConfig(metadata: w.metadata, path: file)
        let tok = try TokenizerMetadata(metadata: w.metadata, path: file)
        var verified: String? = nil
        if verify {
            try w.verify()
            verified = "ok"
        }
        let dataBytes = w.tensors.reduce(0) { $0 + $1.size }
        let storedBytes = w.tensors.reduce(0) { $0 + $1.storedSize }
        let general = w.metadata.entries.filter { $0.key.hasPrefix("general.") }
        if json {
            var gen: [String: Any] = [:]
            for (k, v) in general { gen[k] = v.string ?? v.summary }
            var obj: [String: Any] = [
                "file": file, "format": "wren", "version": Int(w.version), "file_size": w.mapping.size,
                "open_ms": openMs, "architecture": c.architecture, "general": gen, "hyperparameters": config(c),
                "tokenizer": tokenizer(tok), "tensor_bytes": dataBytes, "stored_bytes": storedBytes,
                "tensors": w.tensors.map { t -> [String: Any] in
                    ["name": t.name, "dtype": t.dtype.name, "shape": t.shape, "bytes": t.size, "stored_bytes": t.storedSize,
                     "compression": t.compression == .zstd ? "zstd" : "none", "checksum": String(t.checksum, radix: 16)]
                },
            ]
            if let verified { obj["verify"] = verified }
            printJSON(obj)
            return
        }
        out("file:          \(file) (.wren v\(w.version), \(w.mapping.size) bytes, opened in \(String(format: "%.2f", openMs)) ms)")
        out("architecture:  \(c.architecture)\(w.metadata["general.name"]?.string.map { "  (\($0))" } ?? "")")
        out("model:         vocab \(c.vocabSize), context \(c.contextLength), dim \(c.embeddingLength), ffn \(c.feedForwardLength), layers \(c.blockCount), heads \(c.headCount) (kv \(c.headCountKV)), head dim \(c.headDim), rms eps \(c.rmsNormEps), \(c.tiedEmbeddings ? "tied" : "separate") output")
        out("rope:          base \(c.ropeFreqBase), \(c.ropeDimensionCount) dims, scaling \(c.ropeScalingType.rawValue) (factor \(c.ropeScalingFactor), original context \(c.ropeOriginalContextLength))")
        var tline = "tokenizer:     \(tok.model) (pre \(tok.pre)), \(tok.tokens.count) tokens, \(tok.merges?.count ?? 0) merges"
        for (k, v) in [("bos", tok.bosID), ("eos", tok.eosID), ("unk", tok.unkID), ("pad", tok.padID)] {
            if let v { tline += ", \(k) \(v) \(tok.tokens.string(v).debugDescription)" }
        }
        tline += ", add_bos \(tok.addBOS), chat template \(tok.chatTemplate.map { "\($0.utf8.count) bytes" } ?? "none")"
        out(tline)
        for (k, v) in general where k.hasPrefix("general.source") || k == "general.converter" {
            out(pad(k.replacingOccurrences(of: "general.", with: "") + ":", 15) + (v.string ?? v.summary))
        }
        if allMetadata {
            out("metadata:")
            for (k, v) in w.metadata.entries { out("  \(pad(k, 44)) \(v.summary)") }
        }
        var byType: [String: (Int, Int)] = [:]
        for t in w.tensors { byType[t.dtype.name, default: (0, 0)].0 += 1; byType[t.dtype.name, default: (0, 0)].1 += t.size }
        out("tensors:       \(w.tensors.count) (" + byType.sorted { $0.key < $1.key }.map { "\($0.value.0) \($0.key)" }.joined(separator: ", ") + ")")
        out("  " + pad("name", 28) + pad("dtype", 7) + pad("shape", 16) + pad("bytes", 12) + "stored")
        for t in w.tensors {
            let stored = t.compression == .zstd ? "\(t.storedSize) zstd (\(String(format: "%.1f", 100 * Double(t.storedSize) / Double(max(1, t.size))))%)" : "\(t.storedSize)"
            out("  " + pad(t.name, 28) + pad(t.dtype.name, 7) + pad(shapeString(t.shape), 16) + pad("\(t.size)", 12) + stored)
        }
        out("total:         \(dataBytes) bytes of tensor data, \(storedBytes) stored, file \(w.mapping.size) bytes")
        if let verified { out("verify:        \(verified) (\(w.tensors.count) tensor checksums)") }
    }

    func inspectGGUF() throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let g = try GGUFFile(path: file)
        let openMs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        let source = try? ModelSource.fromGGUF(g)
        let total = g.tensors.reduce(0) { $0 + $1.size }
        if json {
            var meta: [String: Any] = [:]
            for (k, v) in g.metadata.entries { meta[k] = v.string ?? v.summary }
            var obj: [String: Any] = [
                "file": file, "format": "gguf", "version": Int(g.version), "file_size": g.mapping.size, "open_ms": openMs,
                "alignment": g.alignment, "metadata": meta, "tensor_bytes": total,
                "tensors": g.tensors.map { ["name": $0.name, "dtype": ggmlTypeName($0.typeID), "shape": $0.shape, "bytes": $0.size] as [String: Any] },
            ]
            if let s = source {
                obj["architecture"] = s.config.architecture
                obj["hyperparameters"] = config(s.config)
                if let t = try? TokenizerMetadata(metadata: s.metadata, path: file) { obj["tokenizer"] = tokenizer(t) }
            }
            if verify { obj["verify"] = "ok (GGUF carries no checksums; structure and bounds checked)" }
            printJSON(obj)
            return
        }
        out("file:          \(file) (GGUF v\(g.version), \(g.mapping.size) bytes, alignment \(g.alignment), opened in \(String(format: "%.2f", openMs)) ms)")
        if let s = source {
            let c = s.config
            out("architecture:  \(c.architecture)")
            out("model:         vocab \(c.vocabSize), context \(c.contextLength), dim \(c.embeddingLength), ffn \(c.feedForwardLength), layers \(c.blockCount), heads \(c.headCount) (kv \(c.headCountKV)), head dim \(c.headDim), rms eps \(c.rmsNormEps)")
            out("rope:          base \(c.ropeFreqBase), \(c.ropeDimensionCount) dims, scaling \(c.ropeScalingType.rawValue)")
        }
        out("metadata:      \(g.metadata.count) keys")
        for (k, v) in g.metadata.entries { out("  \(pad(k, 44)) \(v.summary)") }
        out("tensors:       \(g.tensors.count) (shapes outermost first)")
        for t in g.tensors { out("  " + pad(t.name, 28) + pad(ggmlTypeName(t.typeID), 8) + pad(shapeString(t.shape), 16) + "\(t.size)") }
        out("total:         \(total) bytes of tensor data")
        if verify { out("verify:        ok (GGUF carries no checksums; structure and bounds checked)") }
    }
}
