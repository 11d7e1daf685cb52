// Values of the Jinja subset chat templates use, with Python's semantics for
// truthiness, equality, printing (str/repr) and JSON (json.dumps as HF's
// tojson calls it).

/// An error from parsing or rendering a template; `line` is 1-based in the template.
public enum JinjaError: Error, CustomStringConvertible, Equatable {
    case syntax(line: Int, message: String)
    case unsupported(line: Int, construct: String)
    case runtime(line: Int, message: String)
    /// The template called raise_exception(message).
    case raised(String)

    public var description: String {
        switch self {
        case let .syntax(line, m): return "chat template line \(line): syntax error: \(m)"
        case let .unsupported(line, c): return "chat template line \(line): unsupported construct: \(c)"
        case let .runtime(line, m): return "chat template line \(line): \(m)"
        case let .raised(m): return "chat template raised: \(m)"
        }
    }
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
        switch self {
        case .string(let s): return Self.pyStringRepr(s)
        case .list(let l): return "[" + l.map(\.repr).joined(separator: ", ") + "]"
        case .dict(let d): return "{" + d.map { Self.pyStringRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        default: return str
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
    func json(indent: Int?, level: Int = 0) -> String {
        let nl = indent.map { "\n" + String(repeating: " ", count: $0 * (level + 1)) } ?? ""
        let close = indent.map { "\n" + String(repeating: " ", count: $0 * level) } ?? ""
        let sep = indent == nil ? ", " : ","
        switch self {
        case .undefined, .none: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? Self.pyFloat(d) : (d.isNaN ? "NaN" : (d > 0 ? "Infinity" : "-Infinity"))
        case .string(let s): return Self.jsonString(s)
        case .list(let l):
            if l.isEmpty { return "[]" }
            return "[" + nl + l.map { $0.json(indent: indent, level: level + 1) }.joined(separator: sep + nl) + close + "]"
        case .dict(let d):
            if d.isEmpty { return "{}" }
            return "{" + nl + d.map { Self.jsonString($0.0) + ": " + $0.1.json(indent: indent, level: level + 1) }.joined(separator: sep + nl) + close + "}"
        case .namespace(let n): return JinjaValue.dict(n.items).json(indent: indent, level: level)
        case .macro: return "null"
        }
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

import Foundation
