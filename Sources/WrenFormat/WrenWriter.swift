// Writing .wren files atomically: everything goes to a temporary file in the
// destination directory, which is fsynced and renamed over the destination
// only when complete. A failure at any point leaves no partial output and
// does not touch an existing file.

import WrenKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A tensor to be written: its header and a closure that fills its bytes.
public struct PendingTensor {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Called once with a buffer of exactly `dtype.byteCount(elements:)` bytes to fill.
    public var fill: (UnsafeMutableRawBufferPointer) throws -> Void

    public init(name: String, dtype: DType, shape: [Int], fill: @escaping (UnsafeMutableRawBufferPointer) throws -> Void) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.fill = fill
    }

    /// A tensor from bytes already in `dtype`'s layout.
    public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        self.init(name: name, dtype: dtype, shape: shape) { dst in
            precondition(dst.count == bytes.count, "tensor \(name): \(bytes.count) bytes for a \(dst.count)-byte slot")
            bytes.withUnsafeBytes { dst.copyMemory(from: $0) }
        }
    }
}

/// Progress of a write, reported after each tensor.
public struct WriteProgress: Sendable {
    public var tensorsDone: Int
    public var tensorCount: Int
    public var name: String
    /// Bytes of tensor data produced so far (uncompressed).
    public var bytesDone: Int
    public var bytesTotal: Int
}

public struct WrenWriteOptions: Sendable {
    /// Compress each tensor with zstd; a tensor keeps its compressed form only
    /// when that saves at least `minSaving` of its size (otherwise it stays
    /// uncompressed and mappable without a copy).
    public var compress = false
    public var level: Int32 = 3
    public var minSaving = 0.02
    public var overwrite = false
    /// The container's magic (formats/delta.md reuses the layout under its own).
    public var magic = WrenFormatConstants.magic
    public init(compress: Bool = false, level: Int32 = 3, overwrite: Bool = false) {
        self.compress = compress
        self.level = level
        self.overwrite = overwrite
    }
}

public enum WrenWriter {
    /// Writes a .wren file atomically.
    /// - Returns: the tensor table as written.
    /// - Throws: `FormatError.outputExists` unless `options.overwrite`; `.io` with errno on
    ///   write failures; whatever a tensor's `fill` throws. No partial output remains.
    @discardableResult
    public static func write(to path: String, metadata: Metadata, tensors: [PendingTensor],
                             options: WrenWriteOptions = .init(),
                             progress: ((WriteProgress) -> Void)? = nil) throws -> [TensorInfo] {
        try checkOutputPath(path, overwrite: options.overwrite)
        var names = Set<String>()
        for t in tensors {
            guard names.insert(t.name).inserted else {
                throw FormatError.invalid(path: path, field: "tensor \(t.name)", reason: "duplicate name")
            }
            guard !t.shape.isEmpty, t.shape.count <= WrenFormatConstants.maxDims, t.shape.allSatisfy({ $0 > 0 }),
                  t.shape.last! % t.dtype.blockSize == 0,
                  t.dtype.byteCount(elements: t.shape.reduce(1, *)) != nil else {
                throw FormatError.invalid(path: path, field: "tensor \(t.name) shape",
                                          reason: "\(t.shape) cannot be stored as \(t.dtype) (rows must be whole blocks of \(t.dtype.blockSize))")
            }
        }
        let metaBytes = WrenMetaCodec.encode(metadata)
        let align = WrenFormatConstants.alignment
        let tableSize = tensors.reduce(0) { $0 + 60 + $1.name.utf8.count + 8 * ($1.shape.count - 1) }
        let headerEnd = WrenFormatConstants.headerSize + metaBytes.count + tableSize
        let dataOffset = (headerEnd + align - 1) / align * align

        let file = try AtomicWrite(path: path, overwrite: options.overwrite)
        func pwriteAll(_ buf: UnsafeRawBufferPointer, at offset: Int) throws { try file.pwrite(buf, at: offset) }

        var infos: [TensorInfo] = []
        var cursor = 0                   // relative to the data section
        let total = tensors.reduce(0) { $0 + $1.dtype.byteCount(elements: $1.shape.reduce(1, *))! }
        var done = 0
        for (i, t) in tensors.enumerated() {
            let size = t.dtype.byteCount(elements: t.shape.reduce(1, *))!
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 64)
            defer { buf.deallocate() }
            let slot = UnsafeMutableRawBufferPointer(rebasing: buf[0..<size])
            slot.initializeMemory(as: UInt8.self, repeating: 0)
            try t.fill(slot)
            var info = TensorInfo(name: t.name, dtype: t.dtype, shape: t.shape, offset: cursor, storedSize: size,
                                  size: size, compression: .none, checksum: 0)
            var stored = UnsafeRawBufferPointer(slot)
            var packed: [UInt8] = []
            if options.compress, size > 0 {
                packed = Zstd.compress(stored, level: options.level)
                if Double(packed.count) <= Double(size) * (1 - options.minSaving) {
                    info.compression = .zstd
                    info.storedSize = packed.count
                }
            }
            if info.compression == .zstd {
                try packed.withUnsafeBytes { p in
                    info.checksum = XXH64.hash(p)
                    try pwriteAll(p, at: dataOffset + cursor)
                }
            } else {
                info.checksum = XXH64.hash(stored)
                try pwriteAll(stored, at: dataOffset + cursor)
            }
            stored = UnsafeRawBufferPointer(start: nil, count: 0)
            cursor += info.storedSize
            infos.append(info)
            done += size
            if i + 1 < tensors.count { cursor = (cursor + align - 1) / align * align }
            progress?(WriteProgress(tensorsDone: i + 1, tensorCount: tensors.count, name: t.name, bytesDone: done, bytesTotal: total))
        }
        let dataSize = cursor

        var table: [UInt8] = []
        table.reserveCapacity(tableSize)
        for info in infos { WrenMetaCodec.encode(info, to: &table) }
        precondition(table.count == tableSize, "table size \(table.count) != \(tableSize)")
        var body = metaBytes
        body.append(contentsOf: table)
        let bodySum = body.withUnsafeBytes { XXH64.hash($0) }

        var header: [UInt8] = options.magic
        WrenMetaCodec.append(WrenFormatConstants.version, to: &header)
        WrenMetaCodec.append(UInt32(align), to: &header)
        WrenMetaCodec.append(UInt64(metadata.count), to: &header)
        WrenMetaCodec.append(UInt64(tensors.count), to: &header)
        WrenMetaCodec.append(UInt64(WrenFormatConstants.headerSize), to: &header)
        WrenMetaCodec.append(UInt64(metaBytes.count), to: &header)
        WrenMetaCodec.append(UInt64(WrenFormatConstants.headerSize + metaBytes.count), to: &header)
        WrenMetaCodec.append(UInt64(tableSize), to: &header)
        WrenMetaCodec.append(UInt64(dataOffset), to: &header)
        WrenMetaCodec.append(UInt64(dataSize), to: &header)
        WrenMetaCodec.append(bodySum, to: &header)
        let headerSum = header.withUnsafeBytes { XXH64.hash($0) }
        WrenMetaCodec.append(headerSum, to: &header)
        precondition(header.count == WrenFormatConstants.headerSize)
        header.append(contentsOf: body)
        header.append(contentsOf: [UInt8](repeating: 0, count: dataOffset - headerEnd))
        try header.withUnsafeBytes { try pwriteAll($0, at: 0) }
        try file.truncate(to: dataOffset + dataSize)
        try file.commit()
        return infos
    }
}
