// Reading .wren files (formats/wren.md is the byte-level spec). The reader
// maps the file, checks the fixed header, the header checksum over metadata
// and tensor table, and every offset/length against the file size, then hands
// out tensors as views into the mapping. zstd-compressed tensors are checked
// and inflated once, at open.

import CZstd
import WrenKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum WrenFormatConstants {
    /// "WREN\r\n\u{1a}\n": catches text-mode and truncation-by-transfer damage, like PNG's.
    public static let magic: [UInt8] = [0x57, 0x52, 0x45, 0x4E, 0x0D, 0x0A, 0x1A, 0x0A]
    /// "WDLT\r\n\u{1a}\n": a delta (formats/delta.md) in the same container.
    public static let deltaMagic: [UInt8] = [0x57, 0x44, 0x4C, 0x54, 0x0D, 0x0A, 0x1A, 0x0A]
    public static let version: UInt32 = 1
    public static let headerSize = 96
    public static let alignment = 64
    public static let maxDims = 8
}

/// How a tensor's bytes are stored.
public enum Compression: UInt32, Sendable {
    case none = 0
    case zstd = 1
}

/// One entry of a .wren tensor table.
public struct TensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    /// Outermost dimension first: a [rows, cols] matrix has `cols` contiguous elements per row.
    public var shape: [Int]
    /// Offset of the stored bytes from the start of the data section.
    public var offset: Int
    public var storedSize: Int
    /// Size of the (decompressed) tensor data.
    public var size: Int
    public var compression: Compression
    /// XXH64 of the stored bytes.
    public var checksum: UInt64

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A tensor as a view of bytes owned by the file it came from.
public struct Tensor: @unchecked Sendable {
    public let info: TensorInfo
    /// `info.size` bytes in `info.dtype`'s layout.
    public let data: UnsafeRawBufferPointer
    public var name: String { info.name }
    public var dtype: DType { info.dtype }
    public var shape: [Int] { info.shape }

    /// Dequantized copy as floats (for tests, tools and conversion; not the hot path).
    public func floats() -> [Float] {
        var out = [Float](repeating: 0, count: info.elementCount)
        out.withUnsafeMutableBufferPointer { Quant.dequantize(info.dtype, data.baseAddress!, $0.baseAddress!, count: info.elementCount) }
        return out
    }
}

/// An open .wren file.
public final class WrenFile: @unchecked Sendable {
    public let path: String
    public let mapping: MappedFile
    public let version: UInt32
    public let metadata: Metadata
    public let tensors: [TensorInfo]
    public let dataOffset: Int
    private let byName: [String: Int]
    private var inflated: [Int: UnsafeMutableRawBufferPointer] = [:]

    /// Opens and validates `path`. Cost: O(header + metadata + table), plus
    /// inflating compressed tensors; uncompressed tensor bytes are not touched.
    /// - Throws: `FormatError` naming the file and the bad field.
    public convenience init(path: String) throws {
        try self.init(path: path, magic: WrenFormatConstants.magic, kind: ".wren")
    }

    /// Opens a file in the .wren container with another magic (`kind` names it in errors).
    public init(path: String, magic expected: [UInt8], kind: String) throws {
        self.path = path
        mapping = try MappedFile(path: path)
        let buf = mapping.bytes
        var r = ByteReader(buf, path: path)
        let magic = Array(buf.prefix(8))
        guard magic == expected || (magic.count < 8 && expected.starts(with: magic)) else {
            throw FormatError.badMagic(path: path, expected: kind, found: magic.map { String(format2: $0) }.joined(separator: " "))
        }
        try r.need(UInt64(WrenFormatConstants.headerSize), "header")
        r.offset = 8
        version = try r.read(UInt32.self, "version")
        guard version == WrenFormatConstants.version else {
            throw FormatError.unsupportedVersion(path: path, format: kind, version: version)
        }
        let alignment = Int(try r.read(UInt32.self, "alignment"))
        let kvCount = try r.read(UInt64.self, "metadata count")
        let tensorCount = try r.read(UInt64.self, "tensor count")
        let metaOffset = try r.read(UInt64.self, "metadata offset")
        let metaSize = try r.read(UInt64.self, "metadata size")
        let tableOffset = try r.read(UInt64.self, "table offset")
        let tableSize = try r.read(UInt64.self, "table size")
        let dataOff = try r.read(UInt64.self, "data offset")
        let dataSize = try r.read(UInt64.self, "data size")
        let bodyChecksum = try r.read(UInt64.self, "metadata+table checksum")
        let headerChecksum = try r.read(UInt64.self, "header checksum")

        let computedHeader = XXH64.hash(UnsafeRawBufferPointer(rebasing: buf[0..<88]))
        guard computedHeader == headerChecksum else {
            throw FormatError.checksumMismatch(path: path, what: "header", expected: headerChecksum, found: computedHeader)
        }
        guard alignment >= 8, alignment <= 1 << 16, alignment & (alignment - 1) == 0 else {
            throw FormatError.invalid(path: path, field: "alignment", reason: "\(alignment) is not a power of two in 8...65536")
        }
        let fileSize = UInt64(buf.count)
        func region(_ off: UInt64, _ size: UInt64, _ what: String) throws {
            let (end, o) = off.addingReportingOverflow(size)
            guard !o, end <= fileSize else {
                throw FormatError.truncated(path: path, what: "\(what) at \(off) + \(size)", needed: o ? UInt64.max : end, available: fileSize)
            }
        }
        try region(metaOffset, metaSize, "metadata")
        try region(tableOffset, tableSize, "tensor table")
        try region(dataOff, dataSize, "data section")
        guard metaOffset == UInt64(WrenFormatConstants.headerSize), tableOffset == metaOffset + metaSize,
              dataOff >= tableOffset + tableSize, dataOff % UInt64(alignment) == 0 else {
            throw FormatError.invalid(path: path, field: "header", reason: "sections out of order or data offset \(dataOff) not aligned to \(alignment)")
        }
        guard dataOff + dataSize == fileSize else {
            throw FormatError.invalid(path: path, field: "data size", reason: "header says the file is \(dataOff + dataSize) bytes, it is \(fileSize)")
        }
        let body = UnsafeRawBufferPointer(rebasing: buf[Int(metaOffset)..<Int(tableOffset + tableSize)])
        let computedBody = XXH64.hash(body)
        guard computedBody == bodyChecksum else {
            throw FormatError.checksumMismatch(path: path, what: "metadata and tensor table", expected: bodyChecksum, found: computedBody)
        }
        dataOffset = Int(dataOff)

        // Metadata.
        var mr = ByteReader(UnsafeRawBufferPointer(rebasing: buf[0..<Int(metaOffset + metaSize)]), path: path, offset: Int(metaOffset))
        guard kvCount <= metaSize / 6 else {
            throw FormatError.invalid(path: path, field: "metadata count", reason: "\(kvCount) entries cannot fit in \(metaSize) bytes")
        }
        var meta = Metadata()
        for i in 0..<Int(kvCount) {
            let keyLen = try mr.read(UInt32.self, "metadata[\(i)] key length")
            let key = try mr.string(UInt64(keyLen), "metadata[\(i)] key")
            guard meta[key] == nil else { throw FormatError.invalid(path: path, field: "metadata key \"\(key)\"", reason: "duplicate") }
            meta[key] = try WrenMetaCodec.readValue(&mr, key: key, owner: mapping)
        }
        guard mr.offset == Int(metaOffset + metaSize) else {
            throw FormatError.invalid(path: path, field: "metadata size", reason: "entries end at \(mr.offset), header says \(metaOffset + metaSize)")
        }
        metadata = meta

        // Tensor table.
        var tr = ByteReader(UnsafeRawBufferPointer(rebasing: buf[0..<Int(tableOffset + tableSize)]), path: path, offset: Int(tableOffset))
        guard tensorCount <= tableSize / 48 else {
            throw FormatError.invalid(path: path, field: "tensor count", reason: "\(tensorCount) tensors cannot fit in a \(tableSize)-byte table")
        }
        var infos: [TensorInfo] = []
        var names: [String: Int] = [:]
        infos.reserveCapacity(Int(tensorCount))
        for i in 0..<Int(tensorCount) {
            let info = try WrenMetaCodec.readTensorInfo(&tr, index: i, dataSize: dataSize, alignment: alignment)
            guard names[info.name] == nil else {
                throw FormatError.invalid(path: path, field: "tensor \(info.name)", reason: "duplicate name")
            }
            names[info.name] = i
            infos.append(info)
        }
        guard tr.offset == Int(tableOffset + tableSize) else {
            throw FormatError.invalid(path: path, field: "table size", reason: "entries end at \(tr.offset), header says \(tableOffset + tableSize)")
        }
        tensors = infos
        byName = names

        // Inflate compressed tensors once.
        for (i, info) in infos.enumerated() where info.compression == .zstd {
            let stored = UnsafeRawBufferPointer(rebasing: buf[(dataOffset + info.offset)..<(dataOffset + info.offset + info.storedSize)])
            let sum = XXH64.hash(stored)
            guard sum == info.checksum else {
                freeInflated()
                throw FormatError.checksumMismatch(path: path, what: "tensor \(info.name)", expected: info.checksum, found: sum)
            }
            do {
                inflated[i] = try Zstd.decompress(stored, size: info.size, path: path, tensor: info.name)
            } catch {
                freeInflated()
                throw error
            }
        }
    }

    deinit { freeInflated() }

    private func freeInflated() {
        for (_, b) in inflated { b.deallocate() }
        inflated = [:]
    }

    public func info(_ name: String) -> TensorInfo? { byName[name].map { tensors[$0] } }

    /// The tensor named `name`, as a view valid while this file is alive.
    public func tensor(_ name: String) throws -> Tensor {
        guard let i = byName[name] else { throw FormatError.missingTensor(path: path, tensor: name) }
        return tensor(at: i)
    }

    public func tensor(at i: Int) -> Tensor {
        let info = tensors[i]
        if let b = inflated[i] { return Tensor(info: info, data: UnsafeRawBufferPointer(b)) }
        let start = dataOffset + info.offset
        return Tensor(info: info, data: UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<(start + info.size)]))
    }

    /// The tensor at `i` after checking its stored bytes against the checksum (for code that
    /// copies tensors into another file: convert, export, merge).
    public func verifiedTensor(at i: Int) throws -> Tensor {
        let info = tensors[i]
        if inflated[i] == nil {   // compressed tensors were checked when inflated at open
            let start = dataOffset + info.offset
            let sum = XXH64.hash(UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<(start + info.storedSize)]))
            guard sum == info.checksum else {
                throw FormatError.checksumMismatch(path: path, what: "tensor \(info.name)", expected: info.checksum, found: sum)
            }
        }
        return tensor(at: i)
    }

    /// `verifiedTensor(at:)` by name.
    public func verifiedTensor(_ name: String) throws -> Tensor {
        guard let i = byName[name] else { throw FormatError.missingTensor(path: path, tensor: name) }
        return try verifiedTensor(at: i)
    }

    /// Checks every tensor's checksum; throws naming the first bad tensor.
    /// - Parameter progress: called after each tensor with (done, total).
    public func verify(progress: ((Int, Int) -> Void)? = nil) throws {
        for (i, info) in tensors.enumerated() {
            let start = dataOffset + info.offset
            let stored = UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<(start + info.storedSize)])
            let sum = XXH64.hash(stored)
            guard sum == info.checksum else {
                throw FormatError.checksumMismatch(path: path, what: "tensor \(info.name)", expected: info.checksum, found: sum)
            }
            progress?(i + 1, tensors.count)
        }
        // Strict UTF-8 in string arrays (decoded leniently on access).
        for (key, value) in metadata.entries {
            if case .array(let a) = value, case .mappedStrings(let m) = a.storage {
                for j in 0..<m.count {
                    let s = Int(UInt64(littleEndian: m.offsets.loadUnaligned(fromByteOffset: 8 * j, as: UInt64.self)))
                    let e = Int(UInt64(littleEndian: m.offsets.loadUnaligned(fromByteOffset: 8 * (j + 1), as: UInt64.self)))
                    if String(validating: UnsafeRawBufferPointer(start: m.blob + s, count: e - s), as: UTF8.self) == nil {
                        throw FormatError.invalid(path: path, field: "metadata \(key)[\(j)]", reason: "invalid UTF-8")
                    }
                }
            }
        }
    }
}

extension String {
    init(format2 byte: UInt8) {
        let s = String(byte, radix: 16)
        self = s.count == 1 ? "0" + s : s
    }
}

/// Binary encoding of metadata values and tensor-table entries (formats/wren.md).
enum WrenMetaCodec {
    static func readValue(_ r: inout ByteReader, key: String, owner: AnyObject) throws -> MetaValue {
        let raw = try r.read(UInt32.self, "metadata \(key) type")
        guard let t = MetaType(rawValue: raw) else {
            throw FormatError.invalid(path: r.path, field: "metadata \(key)", reason: "unknown value type \(raw)")
        }
        switch t {
        case .array:
            let et = try r.read(UInt32.self, "metadata \(key) element type")
            guard let elem = MetaType(rawValue: et), elem != .array else {
                throw FormatError.invalid(path: r.path, field: "metadata \(key)", reason: "bad array element type \(et)")
            }
            let count = try r.read(UInt64.self, "metadata \(key) count")
            if elem == .string {
                let (offBytes, o1) = (count &+ 1).multipliedReportingOverflow(by: 8)
                guard !o1, count < UInt64(Int.max / 16) else {
                    throw FormatError.invalid(path: r.path, field: "metadata \(key)", reason: "count \(count) too large")
                }
                let offsets = try r.slice(offBytes, "metadata \(key) string offsets")
                var prev: UInt64 = 0
                for i in 0...Int(count) {
                    let v = UInt64(littleEndian: offsets.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                    guard v >= prev, i > 0 || v == 0 else {
                        throw FormatError.invalid(path: r.path, field: "metadata \(key)[\(i)]", reason: "string offsets not increasing")
                    }
                    prev = v
                }
                let blob = try r.slice(prev, "metadata \(key) string bytes")
                return .array(MetaArray(mapped: MappedStrings(owner: owner, offsets: offsets.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!,
                                                              blob: blob.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, count: Int(count))))
            }
            let size = UInt64(elem.scalarSize!)
            let (bytes, o) = count.multipliedReportingOverflow(by: size)
            guard !o else { throw FormatError.invalid(path: r.path, field: "metadata \(key)", reason: "count \(count) too large") }
            let s = try r.slice(bytes, "metadata \(key) elements")
            return .array(MetaArray(elementType: elem, count: Int(count), raw: Array(s)))
        case .string:
            let n = try r.read(UInt64.self, "metadata \(key) length")
            return .string(try r.string(n, "metadata \(key)"))
        default:
            return try readScalar(&r, t, key)
        }
    }

    static func readScalar(_ r: inout ByteReader, _ t: MetaType, _ key: String) throws -> MetaValue {
        let w = "metadata \(key)"
        switch t {
        case .uint8: return .uint8(try r.read(UInt8.self, w))
        case .int8: return .int8(try r.read(Int8.self, w))
        case .uint16: return .uint16(try r.read(UInt16.self, w))
        case .int16: return .int16(try r.read(Int16.self, w))
        case .uint32: return .uint32(try r.read(UInt32.self, w))
        case .int32: return .int32(try r.read(Int32.self, w))
        case .float32: return .float32(try r.readF32(w))
        case .bool:
            let b = try r.read(UInt8.self, w)
            guard b <= 1 else { throw FormatError.invalid(path: r.path, field: w, reason: "bool byte \(b)") }
            return .bool(b == 1)
        case .uint64: return .uint64(try r.read(UInt64.self, w))
        case .int64: return .int64(try r.read(Int64.self, w))
        case .float64: return .float64(try r.readF64(w))
        case .string, .array: fatalError("not a scalar")
        }
    }

    static func readTensorInfo(_ r: inout ByteReader, index i: Int, dataSize: UInt64, alignment: Int) throws -> TensorInfo {
        let nameLen = try r.read(UInt32.self, "tensor[\(i)] name length")
        let name = try r.string(UInt64(nameLen), "tensor[\(i)] name")
        let rawType = try r.read(UInt32.self, "tensor \(name) dtype")
        guard let dtype = DType(rawValue: rawType) else {
            throw FormatError.unsupportedDType(path: r.path, dtype: ggmlTypeName(rawType), tensor: name)
        }
        let ndim = try r.read(UInt32.self, "tensor \(name) rank")
        guard ndim >= 1, ndim <= WrenFormatConstants.maxDims else {
            throw FormatError.invalid(path: r.path, field: "tensor \(name) rank", reason: "\(ndim) not in 1...\(WrenFormatConstants.maxDims)")
        }
        var shape: [Int] = []
        var elements: UInt64 = 1
        for d in 0..<Int(ndim) {
            let v = try r.read(UInt64.self, "tensor \(name) dim \(d)")
            let (p, o) = elements.multipliedReportingOverflow(by: v)
            guard v > 0, !o, p < UInt64(Int.max / 8) else {
                throw FormatError.invalid(path: r.path, field: "tensor \(name) shape", reason: "dimension \(d) = \(v) is zero or overflows")
            }
            elements = p
            shape.append(Int(v))
        }
        let offset = try r.read(UInt64.self, "tensor \(name) offset")
        let stored = try r.read(UInt64.self, "tensor \(name) stored size")
        let size = try r.read(UInt64.self, "tensor \(name) size")
        let comp = try r.read(UInt32.self, "tensor \(name) compression")
        _ = try r.read(UInt32.self, "tensor \(name) reserved")
        let checksum = try r.read(UInt64.self, "tensor \(name) checksum")
        guard let compression = Compression(rawValue: comp) else {
            throw FormatError.invalid(path: r.path, field: "tensor \(name) compression", reason: "unknown method \(comp)")
        }
        guard shape.last! % dtype.blockSize == 0, let expected = dtype.byteCount(elements: Int(elements)), UInt64(expected) == size else {
            throw FormatError.invalid(path: r.path, field: "tensor \(name) size",
                                      reason: "shape \(shape) in \(dtype) needs \(dtype.byteCount(elements: Int(elements)).map(String.init) ?? "a whole number of blocks per row"), table says \(size)")
        }
        if compression == .none, stored != size {
            throw FormatError.invalid(path: r.path, field: "tensor \(name) stored size", reason: "\(stored) != size \(size) for an uncompressed tensor")
        }
        let (end, o) = offset.addingReportingOverflow(stored)
        guard !o, end <= dataSize else {
            throw FormatError.truncated(path: r.path, what: "tensor \(name) at data offset \(offset) + \(stored)", needed: o ? UInt64.max : end, available: dataSize)
        }
        guard offset % UInt64(alignment) == 0 else {
            throw FormatError.invalid(path: r.path, field: "tensor \(name) offset", reason: "\(offset) is not a multiple of \(alignment)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, offset: Int(offset), storedSize: Int(stored),
                          size: Int(size), compression: compression, checksum: checksum)
    }

    // MARK: encoding

    static func append<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    static func encode(_ meta: Metadata) -> [UInt8] {
        var out: [UInt8] = []
        for (key, value) in meta.entries {
            append(UInt32(key.utf8.count), to: &out)
            out.append(contentsOf: key.utf8)
            encodeValue(value, to: &out)
        }
        return out
    }

    static func encodeValue(_ value: MetaValue, to out: inout [UInt8]) {
        append(value.type.rawValue, to: &out)
        switch value {
        case .uint8(let v): out.append(v)
        case .int8(let v): out.append(UInt8(bitPattern: v))
        case .uint16(let v): append(v, to: &out)
        case .int16(let v): append(v, to: &out)
        case .uint32(let v): append(v, to: &out)
        case .int32(let v): append(v, to: &out)
        case .float32(let v): append(v.bitPattern, to: &out)
        case .bool(let v): out.append(v ? 1 : 0)
        case .uint64(let v): append(v, to: &out)
        case .int64(let v): append(v, to: &out)
        case .float64(let v): append(v.bitPattern, to: &out)
        case .string(let s):
            append(UInt64(s.utf8.count), to: &out)
            out.append(contentsOf: s.utf8)
        case .array(let a):
            append(a.elementType.rawValue, to: &out)
            append(UInt64(a.count), to: &out)
            if let raw = a.rawBytes {
                out.append(contentsOf: raw)
            } else {
                var blob: [UInt8] = []
                append(UInt64(0), to: &out)
                for i in 0..<a.count {
                    blob.append(contentsOf: a.string(i).utf8)
                    append(UInt64(blob.count), to: &out)
                }
                out.append(contentsOf: blob)
            }
        }
    }

    static func encode(_ t: TensorInfo, to out: inout [UInt8]) {
        append(UInt32(t.name.utf8.count), to: &out)
        out.append(contentsOf: t.name.utf8)
        append(t.dtype.rawValue, to: &out)
        append(UInt32(t.shape.count), to: &out)
        for d in t.shape { append(UInt64(d), to: &out) }
        append(UInt64(t.offset), to: &out)
        append(UInt64(t.storedSize), to: &out)
        append(UInt64(t.size), to: &out)
        append(t.compression.rawValue, to: &out)
        append(UInt32(0), to: &out)
        append(t.checksum, to: &out)
    }
}

/// zstd one-shot (de)compression (libzstd's ZSTD_compress / ZSTD_decompress).
public enum Zstd {
    /// Compresses `src` at `level`; returns the frame (content size and checksum included).
    public static func compress(_ src: UnsafeRawBufferPointer, level: Int32) -> [UInt8] {
        let cctx = ZSTD_createCCtx()
        defer { ZSTD_freeCCtx(cctx) }
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        let bound = ZSTD_compressBound(src.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { d in
            ZSTD_compress2(cctx, d.baseAddress, bound, src.baseAddress, src.count)
        }
        precondition(ZSTD_isError(n) == 0, "zstd compression failed: \(String(cString: ZSTD_getErrorName(n)))")
        out.removeSubrange(n...)
        return out
    }

    /// Inflates a frame that must decompress to exactly `size` bytes into new
    /// 64-byte-aligned memory (caller deallocates).
    static func decompress(_ src: UnsafeRawBufferPointer, size: Int, path: String, tensor: String) throws -> UnsafeMutableRawBufferPointer {
        let content = ZSTD_getFrameContentSize(src.baseAddress, src.count)
        guard content == UInt64(size) else {
            throw FormatError.compression(path: path, tensor: tensor, reason: "zstd frame holds \(content == ZSTD_CONTENTSIZE_ERROR ? "no valid frame" : String(content) + " bytes"), expected \(size)")
        }
        let dst = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 64)
        let n = ZSTD_decompress(dst.baseAddress, size, src.baseAddress, src.count)
        guard ZSTD_isError(n) == 0, n == size else {
            dst.deallocate()
            let why = ZSTD_isError(n) != 0 ? String(cString: ZSTD_getErrorName(n)) : "inflated \(n) bytes, expected \(size)"
            throw FormatError.compression(path: path, tensor: tensor, reason: "zstd: \(why)")
        }
        return UnsafeMutableRawBufferPointer(rebasing: dst[0..<size])
    }
}
