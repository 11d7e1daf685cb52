// Checked arithmetic and checked JSON numbers for everything read from a file:
// shapes, sizes, offsets and counts. Every reader (GGUF, .wren, safetensors,
// PEFT, config.json, tokenizer.json, datasets) goes through these before it
// computes an index, so a hostile value is an error naming the file and field,
// never an overflow trap or a silently truncated number.

import Foundation

public enum Checked {
    /// a·b, or a `FormatError.invalid` naming `path` and `field` on overflow.
    public static func product(_ a: Int, _ b: Int, path: String, field: @autoclosure () -> String) throws -> Int {
        let (p, o) = a.multipliedReportingOverflow(by: b)
        guard !o else { throw FormatError.invalid(path: path, field: field(), reason: "\(a) × \(b) overflows") }
        return p
    }

    /// a+b, or a `FormatError.invalid` on overflow.
    public static func sum(_ a: Int, _ b: Int, path: String, field: @autoclosure () -> String) throws -> Int {
        let (s, o) = a.addingReportingOverflow(b)
        guard !o else { throw FormatError.invalid(path: path, field: field(), reason: "\(a) + \(b) overflows") }
        return s
    }

    /// The element count of `shape` (each dimension ≥ 0), optionally times `bytesPerElement`,
    /// refusing overflow and anything past `limit` (default: what a 64-bit address space can map).
    public static func elements(_ shape: [Int], bytesPerElement: Int = 1, path: String, field: @autoclosure () -> String,
                                limit: Int = 1 << 48) throws -> Int {
        var n = bytesPerElement
        for d in shape {
            guard d >= 0 else { throw FormatError.invalid(path: path, field: field(), reason: "negative dimension \(d) in \(shape)") }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            guard !o, p <= limit else { throw FormatError.invalid(path: path, field: field(), reason: "shape \(shape) is too large") }
            n = p
        }
        return n
    }

    /// An exact integer from a parsed JSON value: a number with no fractional part that
    /// fits in Int (not a bool, not 1.5, not 1e300); nil otherwise.
    public static func jsonInt(_ v: Any?) -> Int? {
        guard let v, let n = v as? NSNumber, !isJSONBool(v) else { return nil }
        if let i = Int(exactly: n.doubleValue), Double(n.int64Value) == n.doubleValue { return i }
        return nil
    }

    /// A finite number from a parsed JSON value (not a bool); nil otherwise.
    public static func jsonNumber(_ v: Any?) -> Double? {
        guard let v, let n = v as? NSNumber, !isJSONBool(v), n.doubleValue.isFinite else { return nil }
        return n.doubleValue
    }

    /// The keys of the top-level JSON object in `bytes`, in order and with repeats, so a
    /// reader can refuse duplicate names (JSONSerialization keeps only one of them).
    /// nil when `bytes` does not start with an object.
    public static func topLevelKeys(_ bytes: [UInt8]) -> [String]? {
        var i = 0, depth = 0, keys: [String] = []
        var expectKey = false
        func skipSpace() { while i < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[i]) { i += 1 } }
        skipSpace()
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else { return nil }
        while i < bytes.count {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "\""):
                let start = i + 1
                i += 1
                while i < bytes.count, bytes[i] != UInt8(ascii: "\"") { i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1 }
                if depth == 1 && expectKey {
                    guard i <= bytes.count, let s = String(bytes: bytes[start..<min(i, bytes.count)], encoding: .utf8) else { return nil }
                    keys.append(s)
                    expectKey = false
                }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                if depth == 1 { expectKey = true }
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            case UInt8(ascii: ","): if depth == 1 { expectKey = true }
            default: break
            }
            i += 1
        }
        return keys
    }
}
