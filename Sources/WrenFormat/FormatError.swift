// The one error type of WrenFormat. Every case names the file and what is wrong
// in it; `description` is the one line the CLI prints.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors reading, validating, converting or writing model files.
public enum FormatError: Error, CustomStringConvertible, Equatable {
    /// A system call failed (errno kept).
    case io(path: String, operation: String, errno: Int32)
    /// The file ends before a structure it announces.
    case truncated(path: String, what: String, needed: UInt64, available: UInt64)
    /// Wrong magic bytes (not this kind of file).
    case badMagic(path: String, expected: String, found: String)
    case unsupportedVersion(path: String, format: String, version: UInt32)
    /// A value in the file is out of range or inconsistent.
    case invalid(path: String, field: String, reason: String)
    case checksumMismatch(path: String, what: String, expected: UInt64, found: UInt64)
    case unsupportedDType(path: String, dtype: String, tensor: String)
    case missingTensor(path: String, tensor: String)
    case missingField(path: String, field: String)
    case wrongFieldType(path: String, field: String, expected: String)
    case outputExists(path: String)
    case compression(path: String, tensor: String, reason: String)

    public var description: String {
        switch self {
        case let .io(path, op, err):
            return "\(path): \(op) failed: \(String(cString: strerror(err))) (errno \(err))"
        case let .truncated(path, what, needed, available):
            return "\(path): truncated: \(what) needs \(needed) bytes but the file has \(available)"
        case let .badMagic(path, expected, found):
            return "\(path): not a \(expected) file (magic \(found))"
        case let .unsupportedVersion(path, format, version):
            return "\(path): unsupported \(format) version \(version)"
        case let .invalid(path, field, reason):
            return "\(path): \(field): \(reason)"
        case let .checksumMismatch(path, what, expected, found):
            return "\(path): checksum mismatch in \(what): stored \(hex(expected)), computed \(hex(found))"
        case let .unsupportedDType(path, dtype, tensor):
            return "\(path): unsupported dtype \(dtype) in tensor \(tensor)"
        case let .missingTensor(path, tensor):
            return "\(path): missing tensor \(tensor)"
        case let .missingField(path, field):
            return "\(path): missing field \"\(field)\""
        case let .wrongFieldType(path, field, expected):
            return "\(path): field \"\(field)\" should be \(expected)"
        case let .outputExists(path):
            return "\(path): output exists"
        case let .compression(path, tensor, reason):
            return "\(path): tensor \(tensor): \(reason)"
        }
    }
}

func hex(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 16 - s.count)) + s
}
