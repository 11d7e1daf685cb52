// Values of the Jinja subset chat templates use, with Python's semantics for
// truthiness, equality, printing (str/repr) and JSON (json.dumps as HF's
// tojson calls it).

import Foundation

/// An error from parsing or rendering a template; `line` is 1-based in the template.
public enum JinjaError: Error, CustomStringConvertible, Equatable {
    case syntax(line: Int, message: String)
    case unsupported(line: Int, construct: String)
    case runtime(line: Int, message: String)
    /// A sandbox limit (`JinjaLimits`) was reached.
    case limit(line: Int, message: String)
    /// The template called raise_exception(message).
    case raised(String)

    public var description: String {
        switch self {
        case let .syntax(line, m): return "chat template line \(line): syntax error: \(m)"
        case let .unsupported(line, c): return "chat template line \(line): unsupported construct: \(c)"
        case let .runtime(line, m): return "chat template line \(line): \(m)"
        case let .limit(line, m): return "chat template line \(line): refused by the sandbox: \(m)"
        case let .raised(m): return "chat template raised: \(m)"
        }
    }
}

/// The sandbox: what one template may cost. Templates live inside model files, so
/// they are hostile input: every limit below turns a crash, hang or memory blow-up
/// into a `JinjaError.limit` naming the template line. The defaults are far above
/// what real chat templates use (their expressions nest < 10 deep, they loop over
/// the messages once or twice and produce a few kilobytes per message).
public struct JinjaLimits: Sendable {
    /// Brackets, unary operators and blocks nested in the source (parser recursion).
    public var maxNesting = 100
    /// Operators and calls in one tag: bounds the depth of an expression tree built by loops (`a + a + a …`).
    public var maxExpressionNodes = 2_000
    /// Evaluation depth (expressions within expressions, macros calling macros).
    public var maxDepth = 1_000
    /// Lists, dicts and namespaces nested inside each other.
    public var maxValueNesting = 100
    /// Loop iterations and macro calls in one render.
    public var maxIterations = 1_000_000
    /// UTF-8 bytes in one string, and in the rendered output.
    public var maxStringBytes = 16 << 20
    /// Elements in one list (`range` included).
    public var maxListLength = 1_000_000
    /// Units of work in one render: each operation costs the size of what it reads or builds
    /// (bytes of a string, four per element of a list or dict: copying one retains it), so
    /// quadratic loops stop long before a hang.
    public var maxWork = 100_000_000
    public init() {}
}

/// A mutable attribute holder (`namespace(...)`), shared by reference as in Jinja.
public final class JinjaNamespace {
    var items: [(String, JinjaValue)]
    init(_ items: [(String, JinjaValue)]) { self.items = items }
    subscript(key: String) -> JinjaValue? {
        get { items.first { $0.0 == key }?.1 }
        set {
            if let i = items.firstIndex(where: { $0.0 == key }) { items[i].1 = newValue ?? .none } else { items.append((key, newValue ?? .none)) }
        }
    }
}

public final class JinjaMacro {
    let name: String
    let params: [(String, Expr?)]
    let body: [Node]
    init(name: String, params: [(String, Expr?)], body: [Node]) { self.name = name; self.params = params; self.body = body }
}

public indirect enum JinjaValue {
    case undefined
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([JinjaValue])
    /// Keys keep their insertion order (like Python dicts).
    case dict([(String, JinjaValue)])
    case namespace(JinjaNamespace)
    case macro(JinjaMacro)

    /// Converts JSON-like Swift values ([String: Any] keeps the given key order only for [(String, Any)]).
    public static func from(_ v: Any?) -> JinjaValue {
        switch v {
        case nil: return .none
        case let x as JinjaValue: return x
        case let s as String: return .string(s)
        case let b as Bool: return .bool(b)
        case let i as Int: return .int(i)
        case let d as Double: return .double(d)
        case let a as [Any]: return .list(a.map { from($0) })
        case let pairs as [(String, Any)]: return .dict(pairs.map { ($0.0, from($0.1)) })
        case let d as [String: Any]: return .dict(d.keys.sorted().map { ($0, from(d[$0])) })
        default: return .string("\(v!)")
        }
    }

    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l): return !l.isEmpty
        case .dict(let d): return !d.isEmpty
        case .namespace, .macro: return true
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    var isContainer: Bool {
        switch self { case .list, .dict, .namespace: return true; default: return false }
    }

    /// The integer value of an int or bool (Python treats bools as ints).
    var integer: Int? {
        switch self { case .int(let i): return i; case .bool(let b): return b ? 1 : 0; default: return nil }
    }

    /// Python str().
    var str: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return Self.pyFloat(d)
        case .string(let s): return s
        case .list, .dict: return repr
        case .namespace: return "<Namespace>"
        case .macro(let m): return "<Macro '\(m.name)'>"
        }
    }

    /// Python repr().
    var repr: String {
        var w = Writer(limit: .max)
        write(into: &w, mode: .repr)
        return w.out
    }

    /// Text built up to a byte limit: past it, writing stops and `overflowed` is set, so a
    /// huge or self-containing value costs at most `limit` bytes to print.
    struct Writer {
        var out = ""
        let limit: Int
        var overflowed = false
        var level = 0
        init(limit: Int) { self.limit = limit }
        mutating func add(_ s: String) {
            guard !overflowed else { return }
            out += s
            if out.utf8.count > limit { overflowed = true }
        }
    }

    enum TextMode { case repr, json(indent: Int?) }

    /// Writes repr() or json.dumps() of this value. Nesting past 1,000 levels (only a namespace
    /// that contains itself gets there) marks the writer overflowed.
    func write(into w: inout Writer, mode: TextMode) {
        guard !w.overflowed else { return }
        guard w.level < 1_000 else { w.overflowed = true; return }
        w.level += 1
        defer { w.level -= 1 }
        switch mode {
        case .repr:
            switch self {
            case .string(let s): w.add(Self.pyStringRepr(s))
            case .list(let l):
                w.add("[")
                for (i, x) in l.enumerated() { if i > 0 { w.add(", ") }; x.write(into: &w, mode: mode); if w.overflowed { return } }
                w.add("]")
            case .dict(let d):
                w.add("{")
                for (i, kv) in d.enumerated() {
                    if i > 0 { w.add(", ") }
                    w.add(Self.pyStringRepr(kv.0) + ": ")
                    kv.1.write(into: &w, mode: mode)
                    if w.overflowed { return }
                }
                w.add("}")
            default: w.add(str)
            }
        case .json(let indent):
            let nl = indent.map { "\n" + String(repeating: " ", count: $0 * w.level) } ?? ""
            let close = indent.map { "\n" + String(repeating: " ", count: $0 * (w.level - 1)) } ?? ""
            let sep = indent == nil ? ", " : ","
            switch self {
            case .undefined, .none, .macro: w.add("null")
            case .bool(let b): w.add(b ? "true" : "false")
            case .int(let i): w.add(String(i))
            case .double(let d): w.add(d.isFinite ? Self.pyFloat(d) : (d.isNaN ? "NaN" : (d > 0 ? "Infinity" : "-Infinity")))
            case .string(let s): w.add(Self.jsonString(s))
            case .list(let l):
                if l.isEmpty { w.add("[]"); return }
                w.add("[" + nl)
                for (i, x) in l.enumerated() { if i > 0 { w.add(sep + nl) }; x.write(into: &w, mode: mode); if w.overflowed { return } }
                w.add(close + "]")
            case .dict(let d):
                if d.isEmpty { w.add("{}"); return }
                w.add("{" + nl)
                for (i, kv) in d.enumerated() {
                    if i > 0 { w.add(sep + nl) }
                    w.add(Self.jsonString(kv.0) + ": ")
                    kv.1.write(into: &w, mode: mode)
                    if w.overflowed { return }
                }
                w.add(close + "}")
            case .namespace(let n):
                w.level -= 1
                JinjaValue.dict(n.items).write(into: &w, mode: mode)
                w.level += 1
            }
        }
    }

    static func pyFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded(), abs(d) < 1e16 { return String(format: "%.1f", d) }
        return "\(d)"
    }

    static func pyStringRepr(_ s: String) -> String {
        let q: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(q)
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(c) == q { out += "\\" + String(c) } else { out.unicodeScalars.append(c) }
            }
        }
        return out + String(q)
    }

    /// json.dumps(x, ensure_ascii=False, indent=indent) with Python's default separators.
    func json(indent: Int?) -> String {
        var w = Writer(limit: .max)
        write(into: &w, mode: .json(indent: indent.map { max(0, $0) }))
        return w.out
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if c.value < 0x20 {
                    let h = String(c.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else { out.unicodeScalars.append(c) }
            }
        }
        return out + "\""
    }

    /// Python ==.
    static func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(x), .string(y)): return x == y
        case let (.list(x), .list(y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case let (.dict(x), .dict(y)):
            return x.count == y.count && x.allSatisfy { kv in y.contains { $0.0 == kv.0 && equal($0.1, kv.1) } }
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// Numeric value of bool/int/double (Python treats bools as ints).
    var number: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .macro: return "Macro"
        }
    }
}
