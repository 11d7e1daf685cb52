// GGUF (versions 2 and 3) reading, and a small writer used by tests and
// export. Layout (ggml-org/ggml docs/gguf.md, include/gguf.h): magic "GGUF",
// u32 version, u64 tensor count, u64 kv count, kv pairs (string key, u32 type,
// value), tensor infos (string name, u32 n_dims, u64 ne[n_dims] fastest
// first, u32 ggml type, u64 offset into the data section), padding to
// `general.alignment` (default 32), tensor data. Little-endian only.

import WrenKernels

/// Block geometry of ggml types, including ones Wren does not store, so that
/// a GGUF's table can be validated and listed before any tensor is refused.
public enum GGMLTypeSize {
    /// (elements per block, bytes per block) for a ggml type id, or nil when unknown.
    public static func geometry(_ id: UInt32) -> (block: Int, bytes: Int)? {
        if let t = DType(rawValue: id) { return (t.blockSize, t.blockBytes) }
        switch id {
        case 9: return (32, 36)     // q8_1
        case 15: return (256, 292)  // q8_K
        case 20: return (32, 18)    // iq4_nl
        case 23: return (256, 136)  // iq4_xs
        case 24: return (1, 1)      // i8
        case 25: return (1, 2)      // i16
        case 26: return (1, 4)      // i32
        case 27: return (1, 8)      // i64
        case 28: return (1, 8)      // f64
        default: return nil
        }
    }
}

/// One tensor of a GGUF file.
public struct GGUFTensorInfo: Sendable {
    public var name: String
    /// ggml type id (see `DType` for the ones Wren stores).
    public var typeID: UInt32
    /// GGUF order: fastest-varying dimension first ([cols, rows]).
    public var ne: [Int]
    /// Offset within the data section.
    public var offset: Int
    public var size: Int
    public var dtype: DType? { DType(rawValue: typeID) }
    /// Wren order: outermost first.
    public var shape: [Int] { ne.reversed() }
}

/// A mapped, validated GGUF file.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let mapping: MappedFile
    public let version: UInt32
    public let metadata: Metadata
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataOffset: Int

    public init(path: String) throws {
        self.path = path
        mapping = try MappedFile(path: path)
        var r = ByteReader(mapping.bytes, path: path)
        let magic = Array(try r.slice(4, "magic"))
        guard magic == Array("GGUF".utf8) else {
            throw FormatError.badMagic(path: path, expected: "GGUF", found: magic.map { String(format2: $0) }.joined(separator: " "))
        }
        let v = try r.read(UInt32.self, "version")
        if v == 0x0300_0000 || v == 0x0200_0000 {
            throw FormatError.unsupportedVersion(path: path, format: "GGUF (big-endian)", version: v.byteSwapped)
        }
        guard v == 2 || v == 3 else { throw FormatError.unsupportedVersion(path: path, format: "GGUF", version: v) }
        version = v
        let tensorCount = try r.read(UInt64.self, "tensor count")
        let kvCount = try r.read(UInt64.self, "metadata kv count")
        // Each kv needs >= 8 + 4 + 1 bytes, each tensor info >= 8 + 4 + 8 + 4 + 8.
        guard kvCount <= UInt64(r.remaining / 13), tensorCount <= UInt64(r.remaining / 32) else {
            throw FormatError.invalid(path: path, field: "header", reason: "\(kvCount) kv pairs and \(tensorCount) tensors cannot fit in \(mapping.size) bytes")
        }
        var meta = Metadata()
        for i in 0..<Int(kvCount) {
            let key = try Self.readString(&r, "metadata[\(i)] key")
            let rawType = try r.read(UInt32.self, "metadata \(key) type")
            guard let t = MetaType(rawValue: rawType) else {
                throw FormatError.invalid(path: path, field: "metadata \(key)", reason: "unknown value type \(rawType)")
            }
            if meta[key] != nil { throw FormatError.invalid(path: path, field: "metadata \(key)", reason: "duplicate key") }
            meta[key] = try Self.readValue(&r, t, key)
        }
        metadata = meta
        var align = 32
        if let a = meta["general.alignment"] {
            guard let ai = a.int, ai > 0, ai & (ai - 1) == 0, ai <= 1 << 20 else {
                throw FormatError.invalid(path: path, field: "general.alignment", reason: "must be a power of two (found \(a.summary))")
            }
            align = ai
        }
        alignment = align
        var infos: [GGUFTensorInfo] = []
        var seen = Set<String>()
        for i in 0..<Int(tensorCount) {
            let name = try Self.readString(&r, "tensor[\(i)] name")
            guard seen.insert(name).inserted else { throw FormatError.invalid(path: path, field: "tensor \(name)", reason: "duplicate name") }
            let nd = try r.read(UInt32.self, "tensor \(name) n_dims")
            guard nd >= 1, nd <= 4 else { throw FormatError.invalid(path: path, field: "tensor \(name) n_dims", reason: "\(nd) not in 1...4") }
            var ne: [Int] = []
            var elements: UInt64 = 1
            for d in 0..<Int(nd) {
                let x = try r.read(UInt64.self, "tensor \(name) ne[\(d)]")
                let (p, o) = elements.multipliedReportingOverflow(by: x)
                guard x > 0, !o, p < UInt64(Int.max / 8) else {
                    throw FormatError.invalid(path: path, field: "tensor \(name) shape", reason: "ne[\(d)] = \(x) is zero or overflows")
                }
                elements = p
                ne.append(Int(x))
            }
            let typeID = try r.read(UInt32.self, "tensor \(name) type")
            let offset = try r.read(UInt64.self, "tensor \(name) offset")
            guard let geo = GGMLTypeSize.geometry(typeID) else {
                throw FormatError.unsupportedDType(path: path, dtype: ggmlTypeName(typeID), tensor: name)
            }
            guard ne[0] % geo.block == 0 else {
                throw FormatError.invalid(path: path, field: "tensor \(name) shape", reason: "row length \(ne[0]) is not a multiple of the \(ggmlTypeName(typeID)) block size \(geo.block)")
            }
            guard offset % UInt64(align) == 0, offset < UInt64(Int.max / 2) else {
                throw FormatError.invalid(path: path, field: "tensor \(name) offset", reason: "\(offset) is not a multiple of the alignment \(align)")
            }
            let size = Int(elements) / geo.block * geo.bytes
            infos.append(GGUFTensorInfo(name: name, typeID: typeID, ne: ne, offset: Int(offset), size: size))
        }
        try r.skip(toAlignment: align)
        dataOffset = r.offset
        let available = mapping.size - dataOffset
        for t in infos {
            let (end, o) = t.offset.addingReportingOverflow(t.size)
            guard !o, end <= available else {
                throw FormatError.truncated(path: path, what: "tensor \(t.name) data at \(dataOffset + t.offset) + \(t.size)",
                                            needed: UInt64(dataOffset) + UInt64(end), available: UInt64(mapping.size))
            }
        }
        tensors = infos
    }

    /// The bytes of a tensor (checked to lie within the file at open).
    public func data(_ t: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: mapping.bytes[(dataOffset + t.offset)..<(dataOffset + t.offset + t.size)])
    }

    static func readString(_ r: inout ByteReader, _ what: String) throws -> String {
        let n = try r.read(UInt64.self, "\(what) length")
        return try r.string(n, what)
    }

    static func readValue(_ r: inout ByteReader, _ t: MetaType, _ key: String) throws -> MetaValue {
        switch t {
        case .string: return .string(try readString(&r, "metadata \(key)"))
        case .array:
            let et = try r.read(UInt32.self, "metadata \(key) element type")
            guard let elem = MetaType(rawValue: et) else {
                throw FormatError.invalid(path: r.path, field: "metadata \(key)", reason: "unknown array element type \(et)")
            }
            guard elem != .array else {
                throw FormatError.invalid(path: r.path, field: "metadata \(key)", reason: "nested arrays are not supported")
            }
            let count = try r.read(UInt64.self, "metadata \(key) count")
            if elem == .string {
                guard count <= UInt64(r.remaining / 8) else {
                    throw FormatError.truncated(path: r.path, what: "metadata \(key) (\(count) strings)", needed: count &* 8, available: UInt64(r.buffer.count))
                }
                var out: [String] = []
                out.reserveCapacity(Int(count))
                for i in 0..<Int(count) { out.append(try readString(&r, "metadata \(key)[\(i)]")) }
                return .array(MetaArray(strings: out))
            }
            let size = UInt64(elem.scalarSize!)
            let (bytes, o) = count.multipliedReportingOverflow(by: size)
            guard !o else { throw FormatError.invalid(path: r.path, field: "metadata \(key)", reason: "count \(count) overflows") }
            let s = try r.slice(bytes, "metadata \(key) (\(count) × \(elem.name))")
            if elem == .bool, s.contains(where: { $0 > 1 }) {
                throw FormatError.invalid(path: r.path, field: "metadata \(key)", reason: "bool array holds a byte other than 0/1")
            }
            return .array(MetaArray(elementType: elem, count: Int(count), raw: Array(s)))
        default:
            return try WrenMetaCodec.readScalar(&r, t, key)
        }
    }
}

/// Writes GGUF v3 files (tests build tiny GGUFs with it; `wren export --gguf` may later).
public enum GGUFWriter {
    public struct Tensor {
        public var name: String
        public var typeID: UInt32
        public var ne: [Int]
        public var bytes: [UInt8]
        public init(name: String, typeID: UInt32, ne: [Int], bytes: [UInt8]) {
            self.name = name; self.typeID = typeID; self.ne = ne; self.bytes = bytes
        }
    }

    public static func encode(metadata: Metadata, tensors: [Tensor], alignment: Int = 32, version: UInt32 = 3) -> [UInt8] {
        var out = Array("GGUF".utf8)
        func u32(_ v: UInt32) { WrenMetaCodec.append(v, to: &out) }
        func u64(_ v: UInt64) { WrenMetaCodec.append(v, to: &out) }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
        u32(version)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (key, value) in metadata.entries {
            str(key)
            u32(value.type.rawValue)
            switch value {
            case .string(let s): str(s)
            case .array(let a):
                u32(a.elementType.rawValue)
                u64(UInt64(a.count))
                if let raw = a.rawBytes { out.append(contentsOf: raw) } else { for i in 0..<a.count { str(a.string(i)) } }
            default:
                var tmp: [UInt8] = []
                WrenMetaCodec.encodeValue(value, to: &tmp)
                out.append(contentsOf: tmp[4...])     // drop the type tag
            }
        }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            str(t.name)
            u32(UInt32(t.ne.count))
            for d in t.ne { u64(UInt64(d)) }
            u32(t.typeID)
            u64(UInt64(offset))
            offsets.append(offset)
            offset = (offset + t.bytes.count + alignment - 1) / alignment * alignment
        }
        out.append(contentsOf: [UInt8](repeating: 0, count: (alignment - out.count % alignment) % alignment))
        let start = out.count
        for (t, o) in zip(tensors, offsets) {
            out.append(contentsOf: [UInt8](repeating: 0, count: start + o - out.count))
            out.append(contentsOf: t.bytes)
        }
        return out
    }
}
