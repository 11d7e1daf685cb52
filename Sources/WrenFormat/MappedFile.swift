// A read-only memory mapping of a whole file, and a bounds-checked
// little-endian reader over it. Every length, offset and count read from a
// file passes through `ByteReader`, which checks it against the bytes that
// exist before anything is dereferenced.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Owns a read-only, shared mapping of a file. Pointers handed out by
/// `bytes` live as long as this object.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    private let base: UnsafeMutableRawPointer?

    /// Maps `path` read-only (open(2), fstat(2), mmap(2) with MAP_SHARED).
    /// - Throws: `FormatError.io` with errno when a call fails.
    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw FormatError.io(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FormatError.io(path: path, operation: "fstat", errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FormatError.invalid(path: path, field: "file", reason: "not a regular file (a directory, FIFO or device)")
        }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
        } else {
            let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)
            guard let p, p != MAP_FAILED else { throw FormatError.io(path: path, operation: "mmap", errno: errno) }
            base = p
        }
    }

    deinit {
        if let base { munmap(base, size) }
    }

    /// The whole mapping (empty for an empty file).
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// The first `count` bytes of the file at `path` (fewer if it is shorter).
    public static func prefix(of path: String, count: Int) throws -> [UInt8] {
        let m = try MappedFile(path: path)
        return withExtendedLifetime(m) { Array(m.bytes.prefix(count)) }
    }

    /// The whole file at `path` as Data, or nil when it cannot be read or is not a regular
    /// file (so a FIFO or device given as a JSON or template file never blocks or streams forever).
    public static func contents(of path: String) -> Data? {
        guard let m = try? MappedFile(path: path) else { return nil }
        return withExtendedLifetime(m) { m.size == 0 ? Data() : Data(bytes: m.bytes.baseAddress!, count: m.size) }
    }

    /// Drops the mapped pages from this process's resident set (they stay in the
    /// page cache and fault back in if touched again).
    public func adviseDontNeed() {
        if let base { _ = madvise(base, size, MADV_DONTNEED) }
    }
}

/// Sequential little-endian reads from a byte buffer; every read is checked.
public struct ByteReader {
    public let path: String
    public let buffer: UnsafeRawBufferPointer
    public var offset: Int

    public init(_ buffer: UnsafeRawBufferPointer, path: String, offset: Int = 0) {
        self.buffer = buffer
        self.path = path
        self.offset = offset
    }

    public var remaining: Int { buffer.count - offset }

    /// Throws unless `count` more bytes exist.
    public func need(_ count: UInt64, _ what: @autoclosure () -> String) throws {
        if count > UInt64(max(0, remaining)) {
            throw FormatError.truncated(path: path, what: what(), needed: UInt64(offset) &+ count,
                                        available: UInt64(buffer.count))
        }
    }

    public mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try need(UInt64(MemoryLayout<T>.size), what())
        let v = buffer.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    public mutating func readF32(_ what: @autoclosure () -> String) throws -> Float {
        Float(bitPattern: try read(UInt32.self, what()))
    }

    public mutating func readF64(_ what: @autoclosure () -> String) throws -> Double {
        Double(bitPattern: try read(UInt64.self, what()))
    }

    /// Reads `count` raw bytes as a sub-buffer (no copy).
    public mutating func slice(_ count: UInt64, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        try need(count, what())
        let s = UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + Int(count))])
        offset += Int(count)
        return s
    }

    /// Reads `count` bytes as UTF-8 text; invalid UTF-8 is an error naming `what`.
    public mutating func string(_ count: UInt64, _ what: @autoclosure () -> String) throws -> String {
        let s = try slice(count, what())
        guard let str = String(validating: s, as: UTF8.self) else {
            throw FormatError.invalid(path: path, field: what(), reason: "invalid UTF-8")
        }
        return str
    }

    public mutating func skip(toAlignment a: Int) throws {
        let pad = (a - offset % a) % a
        try need(UInt64(pad), "padding")
        offset += pad
    }
}

/// True when a JSONSerialization value is a JSON boolean (on Linux, `0 is Bool`
/// is also true for numbers, so the type is checked instead).
public func isJSONBool(_ v: Any) -> Bool {
    !(type(of: v) == NSNumber.self) && v is Bool
}
