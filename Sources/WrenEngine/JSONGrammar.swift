// JSON mode: generation constrained to one JSON object (RFC 8259). A byte-level
// recognizer of JSON prefixes, small enough to copy per candidate token: before
// each sample, every token whose bytes cannot continue the text as JSON is
// masked out (`JSONConstraint.mask`), and the job ends as soon as the top-level
// object closes. The server's `response_format: {"type": "json_object"}`.

/// The state of a recognizer that has read a prefix of a JSON object.
public struct JSONPrefix: Sendable, Equatable {
    enum Mode: UInt8 {
        case start, value, arrayValueOrEnd, keyOrEnd, key, colon, afterValue
        case string, escape, hex, literal
        case minus, zero, integer, dot, fraction, exponentMark, exponentSign, exponent
        case done
    }
    var mode = Mode.start
    /// Open containers, innermost in bit 0: 1 an object, 0 an array.
    var stack: UInt64 = 0
    var depth: UInt8 = 0
    var inKey = false
    var left: UInt8 = 0          // hex digits of a \u escape still to come
    var literal: UInt8 = 0       // 0 true, 1 false, 2 null
    var at: UInt8 = 0            // bytes of the literal read

    /// Containers may nest this deep.
    public static let maxDepth = 64
    static let literals: [[UInt8]] = [Array("true".utf8), Array("false".utf8), Array("null".utf8)]

    public init() {}

    /// The top-level object is closed.
    public var isComplete: Bool { mode == .done }

    /// Reads one byte; false (state unchanged in meaning: discard it) when the byte cannot continue a JSON object.
    public mutating func feed(_ c: UInt8) -> Bool {
        @inline(__always) func ws(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 }
        @inline(__always) func digit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        switch mode {
        case .start:
            if ws(c) { return true }
            return c == UInt8(ascii: "{") && open(object: true)
        case .value:
            if ws(c) { return true }
            return begin(c)
        case .arrayValueOrEnd:
            if ws(c) { return true }
            if c == UInt8(ascii: "]") { close(); return true }
            return begin(c)
        case .keyOrEnd:
            if ws(c) { return true }
            if c == UInt8(ascii: "}") { close(); return true }
            if c == UInt8(ascii: "\"") { mode = .string; inKey = true; return true }
            return false
        case .key:
            if ws(c) { return true }
            if c == UInt8(ascii: "\"") { mode = .string; inKey = true; return true }
            return false
        case .colon:
            if ws(c) { return true }
            if c == UInt8(ascii: ":") { mode = .value; return true }
            return false
        case .afterValue:
            if ws(c) { return true }
            let object = stack & 1 == 1
            if c == UInt8(ascii: ",") { mode = object ? .key : .value; return true }
            if c == UInt8(ascii: object ? "}" : "]") { close(); return true }
            return false
        case .string:
            if c == UInt8(ascii: "\"") {
                mode = inKey ? .colon : .afterValue
                inKey = false
                return true
            }
            if c == UInt8(ascii: "\\") { mode = .escape; return true }
            return c >= 0x20
        case .escape:
            if c == UInt8(ascii: "u") { mode = .hex; left = 4; return true }
            if "\"\\/bfnrt".utf8.contains(c) { mode = .string; return true }
            return false
        case .hex:
            guard digit(c) || (c | 0x20 >= UInt8(ascii: "a") && c | 0x20 <= UInt8(ascii: "f")) else { return false }
            left -= 1
            if left == 0 { mode = .string }
            return true
        case .literal:
            let word = Self.literals[Int(literal)]
            guard c == word[Int(at)] else { return false }
            at += 1
            if Int(at) == word.count { mode = .afterValue }
            return true
        case .minus:
            if c == UInt8(ascii: "0") { mode = .zero; return true }
            if digit(c) { mode = .integer; return true }
            return false
        case .zero, .integer:
            if mode == .integer && digit(c) { return true }
            if c == UInt8(ascii: ".") { mode = .dot; return true }
            if c | 0x20 == UInt8(ascii: "e") { mode = .exponentMark; return true }
            return endNumber(c)
        case .dot:
            if digit(c) { mode = .fraction; return true }
            return false
        case .fraction:
            if digit(c) { return true }
            if c | 0x20 == UInt8(ascii: "e") { mode = .exponentMark; return true }
            return endNumber(c)
        case .exponentMark:
            if c == UInt8(ascii: "+") || c == UInt8(ascii: "-") { mode = .exponentSign; return true }
            if digit(c) { mode = .exponent; return true }
            return false
        case .exponentSign:
            if digit(c) { mode = .exponent; return true }
            return false
        case .exponent:
            if digit(c) { return true }
            return endNumber(c)
        case .done:
            return false
        }
    }

    /// Whether all of `bytes` continue the prefix.
    public func accepts<S: Sequence>(_ bytes: S) -> Bool where S.Element == UInt8 {
        var s = self
        for b in bytes where !s.feed(b) { return false }
        return true
    }

    private mutating func begin(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "{"): return open(object: true)
        case UInt8(ascii: "["): return open(object: false)
        case UInt8(ascii: "\""): mode = .string; inKey = false; return true
        case UInt8(ascii: "-"): mode = .minus; return true
        case UInt8(ascii: "0"): mode = .zero; return true
        case UInt8(ascii: "1")...UInt8(ascii: "9"): mode = .integer; return true
        case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
            literal = c == UInt8(ascii: "t") ? 0 : c == UInt8(ascii: "f") ? 1 : 2
            at = 1
            mode = .literal
            return true
        default: return false
        }
    }

    private mutating func open(object: Bool) -> Bool {
        guard Int(depth) < Self.maxDepth else { return false }
        stack = stack << 1 | (object ? 1 : 0)
        depth += 1
        mode = object ? .keyOrEnd : .arrayValueOrEnd
        return true
    }

    private mutating func close() {
        stack >>= 1
        depth -= 1
        mode = depth == 0 ? .done : .afterValue
    }

    /// A number ends at the first byte that cannot continue it; that byte is read after it.
    private mutating func endNumber(_ c: UInt8) -> Bool {
        mode = .afterValue
        return feed(c)
    }
}

/// Constrains a job's tokens to one JSON object.
struct JSONConstraint {
    var state = JSONPrefix()

    /// Sets the logit of every token that cannot continue the text as JSON to -infinity
    /// (control tokens always; end tokens until the object is complete, which ends the job anyway).
    func mask(_ logits: inout [Float], tokenBytes: [[UInt8]], control: [Bool]) {
        for t in 0..<min(logits.count, tokenBytes.count) where logits[t] > -.infinity {
            let b = tokenBytes[t]
            if control[t] || b.isEmpty || !state.accepts(b) { logits[t] = -.infinity }
        }
        for t in tokenBytes.count..<logits.count { logits[t] = -.infinity }
    }

    mutating func advance(_ bytes: [UInt8]) {
        for b in bytes where !state.feed(b) { break }
    }
}
