// A model's tensors exactly as a .wren file stores them, whatever the input:
// a .wren file's own bytes, or the bytes `wren convert` (without --type) would
// write from a GGUF file or a Hugging Face directory. Deltas are made and
// checked on these bytes, so "the same model" means the same .wren.

import Foundation
import WrenKernels

public final class StoredModel: @unchecked Sendable {
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public var byteCount: Int { dtype.byteCount(elements: shape.reduce(1, *))! }
    }

    public let path: String
    /// The metadata the .wren holds, or the metadata a conversion would write.
    public let metadata: Metadata
    public let entries: [Entry]
    private let wren: WrenFile?
    private let source: ModelSource?
    private let byName: [String: Int]

    private init(path: String, metadata: Metadata, entries: [Entry], wren: WrenFile?, source: ModelSource?) {
        self.path = path
        self.metadata = metadata
        self.entries = entries
        self.wren = wren
        self.source = source
        byName = Dictionary(entries.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Opens a .wren file, a GGUF file or a Hugging Face directory. A delta is refused by name.
    public static func open(_ path: String) throws -> StoredModel {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            let head = try MappedFile.prefix(of: path, count: 8)
            if head == WrenFormatConstants.deltaMagic {
                throw FormatError.invalid(path: path, field: "file", reason: "is a delta, not a model; `wren delta apply --base BASE \(path)` adds it to its base")
            }
            if head == WrenFormatConstants.magic {
                let w = try WrenFile(path: path)
                _ = try ModelConfig(metadata: w.metadata, path: path)
                return StoredModel(path: path, metadata: w.metadata,
                                   entries: w.tensors.map { Entry(name: $0.name, dtype: $0.dtype, shape: $0.shape) }, wren: w, source: nil)
            }
        }
        let s = try ModelSource.open(path)
        let (meta, _) = try ModelConverter.outputMetadata(s)
        let context = ModelConverter.mixtureContext(s)
        let entries = s.tensors.map { Entry(name: $0.name, dtype: ModelConverter.targetDType($0, ConvertOptions(), context: context), shape: $0.shape) }
        return StoredModel(path: path, metadata: meta, entries: entries, wren: nil, source: s)
    }

    public func index(of name: String) -> Int? { byName[name] }

    /// Calls `body` with tensor `i`'s stored bytes (a .wren tensor is checked against its checksum first).
    public func withBytes<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        if let wren { return try body(try wren.verifiedTensor(at: i).data) }
        let e = entries[i]
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, e.byteCount), alignment: 64)
        defer { buf.deallocate() }
        let slot = UnsafeMutableRawBufferPointer(rebasing: buf[0..<e.byteCount])
        source!.tensors[i].write(as: e.dtype, into: slot)
        return try body(UnsafeRawBufferPointer(slot))
    }

    /// SHA-256 of tensor `i`'s stored bytes, lower-case hex.
    public func sha256(_ i: Int) throws -> String { try withBytes(i) { StoredModel.sha256($0) } }

    public static func sha256(_ b: UnsafeRawBufferPointer) -> String {
        var h = SHA256()
        h.update(b)
        return h.finalizeHex()
    }

    /// "NAME (TYPE, FILE)": the model's name, the dtype most of its 2-D weights have, and the file.
    public var identity: String {
        let name = metadata["general.name"]?.string ?? "unnamed model"
        var counts: [DType: Int] = [:]
        for e in entries where e.shape.count == 2 { counts[e.dtype, default: 0] += 1 }
        let main = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key.rawValue > $1.key.rawValue) }?.key.name ?? "no 2-D weights"
        return "\(name) (\(main), \((path as NSString).lastPathComponent))"
    }
}
