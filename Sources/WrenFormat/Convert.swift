// Conversion of any ModelSource into a .wren file: choose each tensor's
// stored dtype, record provenance, write atomically with progress.

import Foundation
import WrenKernels

public struct ConvertOptions: Sendable {
    /// Requantize 2-D weights to one type or a k-quant mixture (1-D tensors such
    /// as norms stay f32). nil keeps every tensor's dtype (byte-for-byte copy),
    /// or restores the dtype an export recorded.
    public var type: QuantScheme?
    public var compress = false
    public var compressionLevel: Int32 = 3
    public var overwrite = false
    public init(type: QuantScheme? = nil, compress: Bool = false, compressionLevel: Int32 = 3, overwrite: Bool = false) {
        self.type = type
        self.compress = compress
        self.compressionLevel = compressionLevel
        self.overwrite = overwrite
    }
}

public struct ConvertReport: Sendable {
    public var tensors: [TensorInfo]
    public var bytesIn: Int
    public var fileSize: Int
    public var sourceSHA256: String
}

public enum ModelConverter {
    public static let converterVersion = "wren 0.1.0"

    /// The dtype a tensor is stored in, given the options.
    public static func targetDType(_ t: SourceTensor, _ options: ConvertOptions, context: MixtureContext) -> DType {
        guard let scheme = options.type else {
            // A tensor whose values change on the way in (Gemma's 1 + w norms) is kept in f32.
            return t.valueOffset != 0 ? .f32 : t.originalDType ?? t.dtype
        }
        return scheme.type(for: t.name, shape: t.shape, context: context)
    }

    /// What the mixture rules need to know about `source`.
    public static func mixtureContext(_ source: ModelSource) -> MixtureContext {
        let c = source.config
        return MixtureContext(layers: c.blockCount, gqa: c.headCount / max(1, c.headCountKV),
                              tiedEmbeddings: !source.tensors.contains { $0.name == "output.weight" })
    }

    /// SHA-256 over the concatenated bytes of `files` (streamed through a mapping).
    public static func sha256(files: [String]) throws -> String {
        var h = SHA256()
        for f in files {
            let m = try MappedFile(path: f)
            let b = m.bytes
            var o = 0
            while o < b.count {
                let n = min(1 << 22, b.count - o)
                h.update(UnsafeRawBufferPointer(rebasing: b[o..<(o + n)]))
                o += n
            }
        }
        return h.finalizeHex()
    }

    /// The metadata a conversion of `source` writes: its own plus provenance (the
    /// input's name, format and SHA-256, and the converter), and that SHA-256.
    public static func outputMetadata(_ source: ModelSource) throws -> (Metadata, String) {
        var meta = source.metadata
        let sha = try sha256(files: source.sourceFiles)
        meta["general.source.file"] = .string((source.path as NSString).lastPathComponent)
        meta["general.source.format"] = .string(source.kind.rawValue)
        meta["general.source.sha256"] = .string(sha)
        meta["general.converter"] = .string(converterVersion)
        return (meta, sha)
    }

    /// Converts `source` into a .wren file at `path`.
    /// - Throws: `FormatError`; nothing is left at `path` on failure.
    public static func convert(_ source: ModelSource, to path: String, options: ConvertOptions = .init(),
                               progress: ((WriteProgress) -> Void)? = nil) throws -> ConvertReport {
        if !options.overwrite, FileManager.default.fileExists(atPath: path) { throw FormatError.outputExists(path: path) }
        let (meta, sha) = try outputMetadata(source)
        var pending: [PendingTensor] = []
        var bytesIn = 0
        let context = mixtureContext(source)
        for t in source.tensors {
            let target = targetDType(t, options, context: context)
            bytesIn += t.data.count
            pending.append(PendingTensor(name: t.name, dtype: target, shape: t.shape) { dst in t.write(as: target, into: dst) })
        }
        let infos = try WrenWriter.write(to: path, metadata: meta, tensors: pending,
                                         options: WrenWriteOptions(compress: options.compress, level: options.compressionLevel,
                                                                   overwrite: options.overwrite),
                                         progress: progress)
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        return ConvertReport(tensors: infos, bytesIn: bytesIn, fileSize: size, sourceSHA256: sha)
    }
}
