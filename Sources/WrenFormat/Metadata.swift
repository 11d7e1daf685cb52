import Foundation

// Typed key-value metadata, shared by .wren and GGUF (the value type ids are
// GGUF's). String arrays read from a .wren file stay in the mapping and are
// decoded on access, so opening a model with a 49k-token vocabulary does not
// build 100k Swift strings.

/// Value type ids (GGUF's `gguf_type`).
public enum MetaType: UInt32, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6
    case bool = 7, string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Byte size of a fixed-size scalar (nil for string/array).
    public var scalarSize: Int? {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64: return 8
        case .string, .array: return nil
        }
    }

    public var name: String {
        switch self {
        case .uint8: return "u8"
        case .int8: return "i8"
        case .uint16: return "u16"
        case .int16: return "i16"
        case .uint32: return "u32"
        case .int32: return "i32"
        case .float32: return "f32"
        case .bool: return "bool"
        case .string: return "string"
        case .array: return "array"
        case .uint64: return "u64"
        case .int64: return "i64"
        case .float64: return "f64"
        }
    }
}

/// One metadata value.
public enum MetaValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    case array(MetaArray)

    public var type: MetaType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .float32: return .float32
        case .bool: return .bool
        case .string: return .string
        case .uint64: return .uint64
        case .int64: return .int64
        case .float64: return .float64
        case .array: return .array
        }
    }

    /// The value as an integer, when it is one of the integer types.
    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    /// The value as a Double, for float and integer types.
    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return int.map(Double.init)
        }
    }

    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var array: MetaArray? { if case .array(let a) = self { return a } else { return nil } }

    /// A short rendering for `wren inspect` (arrays summarised).
    public var summary: String {
        switch self {
        case .string(let s):
            let one = s.replacingOccurrences(of: "\n", with: "\\n")
            return one.count > 80 ? "\"\(one.prefix(77))...\" (\(s.utf8.count) bytes)" : "\"\(one)\""
        case .bool(let b): return b ? "true" : "false"
        case .float32(let v): return "\(v)"
        case .float64(let v): return "\(v)"
        case .array(let a):
            let head = (0..<min(3, a.count)).map { a.element($0).summary }.joined(separator: ", ")
            return "[\(a.elementType.name) × \(a.count)] [\(head)\(a.count > 3 ? ", ..." : "")]"
        default: return int.map(String.init) ?? "?"
        }
    }
}

/// A homogeneous array of scalars or strings.
public struct MetaArray: Sendable, Equatable {
    public let elementType: MetaType
    public let count: Int
    enum Storage: @unchecked Sendable {
        case raw([UInt8])           // little-endian scalars
        case strings([String])
        case mappedStrings(MappedStrings)
    }
    let storage: Storage

    /// An array of little-endian scalar bytes. - Precondition: size matches.
    public init(elementType: MetaType, count: Int, raw: [UInt8]) {
        precondition(elementType.scalarSize.map { $0 * count == raw.count } ?? false)
        self.elementType = elementType
        self.count = count
        self.storage = .raw(raw)
    }

    public init(strings: [String]) {
        elementType = .string
        count = strings.count
        storage = .strings(strings)
    }

    init(mapped: MappedStrings) {
        elementType = .string
        count = mapped.count
        storage = .mappedStrings(mapped)
    }

    public init(int32s: [Int32]) {
        self.init(elementType: .int32, count: int32s.count,
                  raw: int32s.withUnsafeBytes { Array($0) })
    }

    public init(float32s: [Float]) {
        self.init(elementType: .float32, count: float32s.count,
                  raw: float32s.withUnsafeBytes { Array($0) })
    }

    /// Element `i` as a value.
    public func element(_ i: Int) -> MetaValue {
        switch storage {
        case .strings(let s): return .string(s[i])
        case .mappedStrings(let m): return .string(m[i])
        case .raw(let r):
            return r.withUnsafeBytes { b -> MetaValue in
                let size = elementType.scalarSize!
                let o = i * size
                switch elementType {
                case .uint8: return .uint8(b[o])
                case .int8: return .int8(Int8(bitPattern: b[o]))
                case .bool: return .bool(b[o] != 0)
                case .uint16: return .uint16(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt16.self)))
                case .int16: return .int16(Int16(littleEndian: b.loadUnaligned(fromByteOffset: o, as: Int16.self)))
                case .uint32: return .uint32(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
                case .int32: return .int32(Int32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: Int32.self)))
                case .float32: return .float32(Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self))))
                case .uint64: return .uint64(UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt64.self)))
                case .int64: return .int64(Int64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: Int64.self)))
                case .float64: return .float64(Double(bitPattern: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt64.self))))
                case .string, .array: fatalError("unreachable")
                }
            }
        }
    }

    /// String element `i` (empty when the array is not of strings).
    public func string(_ i: Int) -> String {
        switch storage {
        case .strings(let s): return s[i]
        case .mappedStrings(let m): return m[i]
        case .raw: return ""
        }
    }

    /// All elements as strings (decodes every element).
    public var strings: [String] { (0..<count).map(string) }

    /// The raw little-endian bytes of a scalar array (nil for strings).
    public var rawBytes: [UInt8]? { if case .raw(let r) = storage { return r } else { return nil } }

    /// Elements converted to Int32 / Float (nil for strings; values outside Int32 wrap).
    public var int32s: [Int32]? {
        guard elementType != .string else { return nil }
        return (0..<count).map { Int32(truncatingIfNeeded: element($0).int ?? 0) }
    }

    public var floats: [Float]? {
        guard elementType != .string else { return nil }
        if elementType == .float32, case .raw(let r) = storage {
            return r.withUnsafeBytes { b in (0..<count).map { Float(bitPattern: b.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) } }
        }
        return (0..<count).map { Float(element($0).double ?? 0) }
    }

    public static func == (a: MetaArray, b: MetaArray) -> Bool {
        guard a.elementType == b.elementType, a.count == b.count else { return false }
        if let ra = a.rawBytes, let rb = b.rawBytes { return ra == rb }
        for i in 0..<a.count where a.string(i) != b.string(i) { return false }
        return true
    }
}

/// Strings kept in a .wren mapping: `count + 1` u64 end offsets then a UTF-8 blob.
/// Offsets were checked to be non-decreasing and within the blob at load.
struct MappedStrings: @unchecked Sendable {
    let owner: AnyObject
    let offsets: UnsafeRawPointer     // (count + 1) little-endian u64
    let blob: UnsafeRawPointer
    let count: Int

    subscript(i: Int) -> String {
        let a = Int(UInt64(littleEndian: offsets.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
        let b = Int(UInt64(littleEndian: offsets.loadUnaligned(fromByteOffset: 8 * (i + 1), as: UInt64.self)))
        return String(decoding: UnsafeRawBufferPointer(start: blob + a, count: b - a), as: UTF8.self)
    }
}

/// Ordered metadata: keys keep their insertion order.
public struct Metadata: Sendable, Equatable {
    public private(set) var entries: [(key: String, value: MetaValue)] = []
    private var index: [String: Int] = [:]

    public init() {}

    public subscript(key: String) -> MetaValue? {
        get { index[key].map { entries[$0].value } }
        set {
            if let i = index[key] {
                if let v = newValue { entries[i].value = v } else {
                    entries.remove(at: i)
                    index = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.key, $0) })
                }
            } else if let v = newValue {
                index[key] = entries.count
                entries.append((key, v))
            }
        }
    }

    public var keys: [String] { entries.map(\.key) }
    public var count: Int { entries.count }

    public static func == (a: Metadata, b: Metadata) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    // Typed getters that throw errors naming the file and key.
    public func int(_ key: String, in path: String) throws -> Int {
        guard let v = self[key] else { throw FormatError.missingField(path: path, field: key) }
        guard let i = v.int else { throw FormatError.wrongFieldType(path: path, field: key, expected: "an integer") }
        return i
    }

    public func double(_ key: String, in path: String) throws -> Double {
        guard let v = self[key] else { throw FormatError.missingField(path: path, field: key) }
        guard let d = v.double else { throw FormatError.wrongFieldType(path: path, field: key, expected: "a number") }
        return d
    }

    public func string(_ key: String, in path: String) throws -> String {
        guard let v = self[key] else { throw FormatError.missingField(path: path, field: key) }
        guard let s = v.string else { throw FormatError.wrongFieldType(path: path, field: key, expected: "a string") }
        return s
    }

    public func optionalInt(_ key: String, in path: String) throws -> Int? {
        guard self[key] != nil else { return nil }
        return try int(key, in: path)
    }

    public func optionalDouble(_ key: String, in path: String) throws -> Double? {
        guard self[key] != nil else { return nil }
        return try double(key, in: path)
    }
}
