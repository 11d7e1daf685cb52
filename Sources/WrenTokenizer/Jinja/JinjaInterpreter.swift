// Rendering a parsed template: scopes, for-loops with the `loop` object,
// if/elif/else, set (including namespace attributes), macros, break/continue,
// filters, tests, string/dict methods and the globals Hugging Face gives chat
// templates (raise_exception, namespace, range, strftime_now).

import Foundation

final class JinjaInterpreter {
    var scopes: [[String: JinjaValue]]
    var out = ""
    let limits: JinjaLimits
    /// Sandbox accounting for one render (see JinjaLimits).
    var depth = 0, iterations = 0, work = 0
    /// The template line of the expression evaluated last (for errors raised outside one).
    var line = 0

    enum Flow: Error { case breakLoop, continueLoop }

    init(globals: [String: JinjaValue], limits: JinjaLimits = JinjaLimits()) { scopes = [globals]; self.limits = limits }

    func render(_ nodes: [Node]) throws {
        for n in nodes { try exec(n) }
    }

    func exec(_ node: Node) throws {
        try enter(line)
        defer { depth -= 1 }
        switch node {
        case .text(let t): try emit(t)
        case .output(let e):
            let v = try eval(e)
            try emit(try text(v, line))
        case .ifs(let branches):
            for (cond, body) in branches where try cond.map({ try eval($0).truthy }) ?? true {
                try render(body)
                break
            }
        case let .forLoop(targets, iterExpr, cond, body, elseBody, line):
            var items = try iterable(try eval(iterExpr), line)
            if let cond {
                items = try items.filter { item in
                    try countIteration(line)
                    scopes.append([:]); defer { scopes.removeLast() }
                    try bind(targets, item, line)
                    return try eval(cond).truthy
                }
            }
            if items.isEmpty { try render(elseBody); return }
            let outer = lookup("loop")
            scopes.append([:])
            defer { scopes.removeLast() }
            for (i, item) in items.enumerated() {
                try countIteration(line)
                try bind(targets, item, line)
                var loop: [(String, JinjaValue)] = [
                    ("index", .int(i + 1)), ("index0", .int(i)), ("revindex", .int(items.count - i)), ("revindex0", .int(items.count - i - 1)),
                    ("first", .bool(i == 0)), ("last", .bool(i == items.count - 1)), ("length", .int(items.count)),
                    ("previtem", i > 0 ? items[i - 1] : .undefined), ("nextitem", i + 1 < items.count ? items[i + 1] : .undefined),
                ]
                if !outer.isUndefined { loop.append(("parent", outer)) }
                assign("loop", .dict(loop))
                do { try render(body) } catch Flow.breakLoop { break } catch Flow.continueLoop { continue }
            }
        case let .set(target, e, line):
            let v = try eval(e)
            switch target {
            case .name(let n): assign(n, v)
            case let .attribute(obj, attr):
                guard case .namespace(let ns) = lookup(obj) else {
                    throw JinjaError.runtime(line: line, message: "cannot set attribute \"\(attr)\" on \(lookup(obj).typeName) (only on a namespace)")
                }
                ns[attr] = v
                try checkNesting(.namespace(ns), line)
            case .names(let ns): try bind(ns, v, line)
            }
        case let .setBlock(n, body):
            let saved = out
            out = ""
            try render(body)
            let captured = out
            out = saved
            assign(n, .string(captured))
        case let .macro(n, params, body):
            assign(n, .macro(JinjaMacro(name: n, params: params, body: body)))
        case .breakLoop: throw Flow.breakLoop
        case .continueLoop: throw Flow.continueLoop
        }
    }

    func bind(_ targets: [String], _ v: JinjaValue, _ line: Int) throws {
        if targets.count == 1 { assign(targets[0], v); return }
        let parts = try iterable(v, line)
        guard parts.count == targets.count else {
            throw JinjaError.runtime(line: line, message: "cannot unpack \(parts.count) values into \(targets.count) names")
        }
        for (t, p) in zip(targets, parts) { assign(t, p) }
    }

    func iterable(_ v: JinjaValue, _ line: Int) throws -> [JinjaValue] {
        switch v {
        case .list(let l): return l
        case .dict(let d): return d.map { .string($0.0) }
        case .string(let s):
            try charge(s.utf8.count, line)
            if s.utf8.count > limits.maxListLength { throw refuse("iterating over a string of \(s.utf8.count) bytes", line) }
            return s.map { .string(String($0)) }
        case .undefined, .none: return []
        case .namespace(let n): return n.items.map { .string($0.0) }
        default: throw JinjaError.runtime(line: line, message: "\(v.typeName) is not iterable")
        }
    }

    // MARK: expressions

    func eval(_ e: Expr) throws -> JinjaValue {
        if let l = e.line { line = l }
        try enter(line)
        defer { depth -= 1 }
        switch e {
        case .literal(let v): return v
        case .name(let n, _): return lookup(n)
        case .list(let items): return try list(try items.map(eval), line)
        case .dict(let items):
            let d = JinjaValue.dict(try items.map { (try text(try eval($0.0), line), try eval($0.1)) })
            try checkNesting(d, line)
            return d
        case let .attr(base, name, line): return try attribute(try eval(base), name, line)
        case let .index(base, idx, line): return try subscriptValue(try eval(base), try eval(idx), line)
        case let .slice(base, a, b, c, line): return try slice(try eval(base), a.map(eval), b.map(eval), c.map(eval), line)
        case let .call(fn, args, kwargs, line): return try call(fn, try args.map(eval), try kwargs.map { ($0.0, try eval($0.1)) }, line)
        case let .filter(base, name, args, kwargs, line):
            return try filter(name, try eval(base), try args.map(eval), try kwargs.map { ($0.0, try eval($0.1)) }, line)
        case let .test(base, name, args, negated, line):
            let r = try test(name, try eval(base), try args.map(eval), line)
            return .bool(negated ? !r : r)
        case let .unary(op, x, line):
            let v = try eval(x)
            switch op {
            case "not": return .bool(!v.truthy)
            case "-":
                if case .int(let i) = v {
                    guard i != .min else { throw JinjaError.runtime(line: line, message: "integer overflow in -\(i)") }
                    return .int(-i)
                }
                if case .bool(let b) = v { return .int(b ? -1 : 0) }
                if let d = v.number { return .double(-d) }
                throw JinjaError.runtime(line: line, message: "bad operand type for unary -: \(v.typeName)")
            default: return v
            }
        case let .binary(op, l, r, line):
            if op == "and" { let a = try eval(l); return a.truthy ? try eval(r) : a }
            if op == "or" { let a = try eval(l); return a.truthy ? a : try eval(r) }
            return try binary(op, try eval(l), try eval(r), line)
        case let .cond(c, a, b):
            return try eval(c).truthy ? try eval(a) : try b.map(eval) ?? .undefined
        }
    }

    func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue, _ line: Int) throws -> JinjaValue {
        func bad() -> JinjaError { .runtime(line: line, message: "unsupported operand types for \(op): \(a.typeName) and \(b.typeName)") }
        try charge(size(a) + size(b), line)
        switch op {
        case "==": return .bool(JinjaValue.equal(a, b))
        case "!=": return .bool(!JinjaValue.equal(a, b))
        case "<", ">", "<=", ">=":
            let c: Int
            if let x = a.number, let y = b.number { c = x < y ? -1 : (x > y ? 1 : 0) }
            else if case .string(let x) = a, case .string(let y) = b { c = x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : (x == y ? 0 : 1) }
            else { throw bad() }
            switch op { case "<": return .bool(c < 0); case ">": return .bool(c > 0); case "<=": return .bool(c <= 0); default: return .bool(c >= 0) }
        case "in", "not in":
            let r: Bool
            switch b {
            case .string(let s):
                guard case .string(let x) = a else { throw bad() }
                r = x.isEmpty || s.contains(x)
            case .list(let l): r = l.contains { JinjaValue.equal($0, a) }
            case .dict(let d): r = d.contains { $0.0 == a.str && { if case .string = a { return true }; return false }() }
            case .namespace(let n): r = n.items.contains { $0.0 == a.str }
            case .undefined, .none: r = false
            default: throw bad()
            }
            return .bool(op == "in" ? r : !r)
        case "~":
            let x = try text(a, line), y = try text(b, line)
            try checkStringBytes(x.utf8.count + y.utf8.count, line)
            return try string(x + y, line)
        case "+":
            switch (a, b) {
            case let (.string(x), .string(y)):
                try checkStringBytes(x.utf8.count + y.utf8.count, line)
                return try string(x + y, line)
            case let (.list(x), .list(y)):
                if x.count + y.count > limits.maxListLength { throw refuse("a list of \(x.count + y.count) items (limit \(limits.maxListLength))", line) }
                return try list(x + y, line)
            default: return try arithmetic(op, a, b, line) ?? { throw bad() }()
            }
        case "*":
            if case .string(let s) = a, let n = b.integer { return try repeated(s, n, line) }
            if case .string(let s) = b, let n = a.integer { return try repeated(s, n, line) }
            return try arithmetic(op, a, b, line) ?? { throw bad() }()
        case "%":
            if case .string(let s) = a { return try string(try pyFormat(s, b, line), line) }
            return try arithmetic(op, a, b, line) ?? { throw bad() }()
        case "-", "/", "//", "**":
            return try arithmetic(op, a, b, line) ?? { throw bad() }()
        default: throw JinjaError.unsupported(line: line, construct: "operator \(op)")
        }
    }

    /// `s * n`, refused before it is built when the result would pass the string limit.
    func repeated(_ s: String, _ n: Int, _ line: Int) throws -> JinjaValue {
        guard n > 0, !s.isEmpty else { return .string("") }
        let (bytes, overflow) = s.utf8.count.multipliedReportingOverflow(by: n)
        if overflow || bytes > limits.maxStringBytes { throw refuse("a string of \(s.utf8.count) bytes repeated \(n) times (limit \(limits.maxStringBytes) bytes)", line) }
        return try string(String(repeating: s, count: n), line)
    }

    /// Python arithmetic on bool/int/float: integers stay exact and overflow is an error
    /// (Python's integers are unbounded; a 64-bit sandbox refuses instead of wrapping).
    /// nil when an operand is not a number.
    func arithmetic(_ op: String, _ a: JinjaValue, _ b: JinjaValue, _ line: Int) throws -> JinjaValue? {
        if let x = a.integer, let y = b.integer {
            func overflow() -> JinjaError { .runtime(line: line, message: "integer overflow in \(x) \(op) \(y)") }
            func checked(_ r: (partialValue: Int, overflow: Bool)) throws -> JinjaValue {
                if r.overflow { throw overflow() }
                return .int(r.partialValue)
            }
            switch op {
            case "+": return try checked(x.addingReportingOverflow(y))
            case "-": return try checked(x.subtractingReportingOverflow(y))
            case "*": return try checked(x.multipliedReportingOverflow(by: y))
            case "/":
                guard y != 0 else { throw JinjaError.runtime(line: line, message: "division by zero") }
                return .double(Double(x) / Double(y))
            case "//", "%":
                guard y != 0 else { throw JinjaError.runtime(line: line, message: op == "//" ? "division by zero" : "modulo by zero") }
                if y == -1 { return op == "%" ? .int(0) : try checked(0.subtractingReportingOverflow(x)) }
                var q = x / y, r = x % y
                if r != 0 && ((r < 0) != (y < 0)) { q -= 1; r += y }   // Python floors
                return .int(op == "//" ? q : r)
            case "**":
                if y < 0 { return .double(pow(Double(x), Double(y))) }
                var result = 1, base = x, e = y
                while e > 0 {
                    if e & 1 == 1 { let r = result.multipliedReportingOverflow(by: base); if r.overflow { throw overflow() }; result = r.partialValue }
                    e >>= 1
                    if e > 0 { let r = base.multipliedReportingOverflow(by: base); if r.overflow { throw overflow() }; base = r.partialValue }
                }
                return .int(result)
            default: return nil
            }
        }
        guard let x = a.number, let y = b.number else { return nil }
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "/":
            guard y != 0 else { throw JinjaError.runtime(line: line, message: "division by zero") }
            return .double(x / y)
        case "//":
            guard y != 0 else { throw JinjaError.runtime(line: line, message: "division by zero") }
            return .double((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw JinjaError.runtime(line: line, message: "modulo by zero") }
            return .double(x - y * (x / y).rounded(.down))
        case "**": return .double(pow(x, y))
        default: return nil
        }
    }

    func pyFormat(_ fmt: String, _ arg: JinjaValue, _ line: Int) throws -> String {
        var args: [JinjaValue] = { if case .list(let l) = arg { return l }; return [arg] }()
        var out = ""
        var it = fmt.makeIterator()
        while let c = it.next() {
            if c == "%", let d = it.next() {
                if d == "%" { out.append("%") } else if !args.isEmpty {
                    let a = args.removeFirst()
                    out += d == "r" && !a.isContainer ? a.repr : try text(a, line)
                    try checkStringBytes(out.utf8.count, line)
                }
            } else { out.append(c) }
        }
        return out
    }

    func attribute(_ v: JinjaValue, _ name: String, _ line: Int) throws -> JinjaValue {
        switch v {
        case .dict(let d): if let x = d.first(where: { $0.0 == name }) { return x.1 }
        case .namespace(let n): if let x = n[name] { return x }
        case .list(let l): if let i = Int(name), i >= 0, i < l.count { return l[i] }
        default: break
        }
        return .undefined
    }

    func subscriptValue(_ v: JinjaValue, _ k: JinjaValue, _ line: Int) throws -> JinjaValue {
        switch (v, k) {
        case let (.list(l), .int(i)):
            let j = i < 0 ? l.count + i : i
            return j >= 0 && j < l.count ? l[j] : .undefined
        case let (.string(s), .int(i)):
            try charge(s.utf8.count, line)
            let chars = Array(s)
            let j = i < 0 ? chars.count + i : i
            return j >= 0 && j < chars.count ? .string(String(chars[j])) : .undefined
        case (.dict, .string(let key)), (.namespace, .string(let key)): return try attribute(v, key, line)
        case let (.dict(d), _): return d.first { $0.0 == k.str && !k.isContainer }?.1 ?? .undefined
        case (.undefined, _): return .undefined
        default: return .undefined
        }
    }

    func slice(_ v: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?, _ line: Int) throws -> JinjaValue {
        func ints(_ n: Int) throws -> [Int] {
            let step: Int = { if case .int(let s)? = c { return s }; return 1 }()
            guard step != 0 else { throw JinjaError.runtime(line: line, message: "slice step cannot be zero") }
            func norm(_ x: JinjaValue?, _ def: Int) -> Int {
                guard case .int(let i)? = x else { return def }
                let j = i < 0 ? n + i : i
                return step > 0 ? min(max(j, 0), n) : min(max(j, -1), n - 1)
            }
            let start = norm(a, step > 0 ? 0 : n - 1), end = norm(b, step > 0 ? n : -1)
            return Array(stride(from: start, to: end, by: step))
        }
        try charge(size(v), line)
        switch v {
        case .list(let l): return .list(try ints(l.count).map { l[$0] })
        case .string(let s):
            let ch = Array(s)
            return .string(String(try ints(ch.count).map { ch[$0] }))
        default: throw JinjaError.runtime(line: line, message: "\(v.typeName) cannot be sliced")
        }
    }

    // MARK: calls, methods, filters, tests

    func call(_ fnExpr: Expr, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ line: Int) throws -> JinjaValue {
        if case let .attr(baseExpr, method, _) = fnExpr {
            let base = try eval(baseExpr)
            if case .macro = try attribute(base, method, line) {} else { return try callMethod(base, method, args, kwargs, line) }
        }
        if case .name(let n, _) = fnExpr, lookup(n).isUndefined {
            switch n {
            case "raise_exception": throw JinjaError.raised(args.first?.str ?? "")
            case "namespace":
                var items: [(String, JinjaValue)] = []
                if case .dict(let d)? = args.first { items = d }
                items += kwargs
                let ns = JinjaValue.namespace(JinjaNamespace(items))
                try checkNesting(ns, line)
                return ns
            case "range":
                let n = args.compactMap { v -> Int? in if case .int(let i) = v { return i }; return nil }
                guard n.count == args.count, (1...3).contains(n.count) else { throw JinjaError.runtime(line: line, message: "range takes one to three integers") }
                let (a, b, s) = n.count == 1 ? (0, n[0], 1) : (n[0], n[1], n.count > 2 ? n[2] : 1)
                guard s != 0 else { throw JinjaError.runtime(line: line, message: "range step cannot be zero") }
                // Length without overflow: the distance in UInt64, then divided by the step's magnitude.
                let (lo, hi) = s > 0 ? (a, b) : (b, a)
                let length: UInt64 = lo < hi ? (UInt64(bitPattern: Int64(hi) &- Int64(lo)) - 1) / UInt64(s.magnitude) + 1 : 0
                if length > UInt64(limits.maxListLength) { throw refuse("range of \(length) items (limit \(limits.maxListLength))", line) }
                return try list(stride(from: a, to: b, by: s).map { .int($0) }, line)
            case "strftime_now":
                let f = DateFormatter()
                f.locale = Locale(identifier: "en_US_POSIX")
                let fmt = args.first?.str ?? ""
                f.dateFormat = fmt.replacingOccurrences(of: "%d", with: "dd").replacingOccurrences(of: "%B", with: "MMMM")
                    .replacingOccurrences(of: "%b", with: "MMM").replacingOccurrences(of: "%Y", with: "yyyy").replacingOccurrences(of: "%m", with: "MM")
                return .string(f.string(from: Date()))
            case "dict":
                let d = JinjaValue.dict(kwargs)
                try checkNesting(d, line)
                return d
            default: throw JinjaError.runtime(line: line, message: "\"\(n)\" is undefined (not callable)")
            }
        }
        let fn = try eval(fnExpr)
        guard case .macro(let m) = fn else { throw JinjaError.runtime(line: line, message: "\(fn.typeName) is not callable") }
        try countIteration(line)
        scopes.append([:])
        defer { scopes.removeLast() }
        for (i, p) in m.params.enumerated() {
            if i < args.count { assign(p.0, args[i]) } else if let kw = kwargs.first(where: { $0.0 == p.0 }) { assign(p.0, kw.1) }
            else { assign(p.0, try p.1.map(eval) ?? .undefined) }
        }
        let saved = out
        out = ""
        try render(m.body)
        let r = out
        out = saved
        return .string(r)
    }

    func callMethod(_ base: JinjaValue, _ m: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ line: Int) throws -> JinjaValue {
        try charge(size(base) + args.reduce(0) { $0 + size($1) }, line)
        switch base {
        case .string(let s):
            func chars(_ i: Int) -> Set<Character>? { args.count > i ? Set(args[i].str) : nil }
            func strip(_ x: String, lead: Bool, trail: Bool) -> String {
                let set = chars(0)
                func drop(_ c: Character) -> Bool { set.map { $0.contains(c) } ?? c.isWhitespace }
                var r = Substring(x)
                if lead { r = r.drop(while: drop) }
                if trail { while let l = r.last, drop(l) { r = r.dropLast() } }
                return String(r)
            }
            switch m {
            case "strip": return .string(strip(s, lead: true, trail: true))
            case "lstrip": return .string(strip(s, lead: true, trail: false))
            case "rstrip": return .string(strip(s, lead: false, trail: true))
            case "upper": return try string(s.uppercased(), line)
            case "lower": return try string(s.lowercased(), line)
            case "title": return try string(pyTitle(s), line)
            case "capitalize": return try string(s.prefix(1).uppercased() + s.dropFirst().lowercased(), line)
            case "startswith", "endswith":
                let opts: [String] = { if case .list(let l)? = args.first { return l.map(\.str) }; return args.first.map { [$0.str] } ?? [] }()
                return .bool(opts.contains { m == "startswith" ? s.hasPrefix($0) : s.hasSuffix($0) })
            case "split":
                let maxSplit: Int = { if args.count > 1, case .int(let n) = args[1] { return n }; return -1 }()
                if let sep = args.first, case .string(let sp) = sep {
                    var parts = s.components(separatedBy: sp)
                    if maxSplit >= 0 && parts.count > maxSplit + 1 { parts = Array(parts[..<maxSplit]) + [parts[maxSplit...].joined(separator: sp)] }
                    return try list(parts.map { .string($0) }, line)
                }
                return try list(s.split(whereSeparator: { $0.isWhitespace }).map { .string(String($0)) }, line)
            case "replace":
                guard args.count >= 2 else { break }
                return try replace(s, try text(args[0], line), try text(args[1], line), line)
            case "find": return .int(s.range(of: args.first?.str ?? "").map { s.distance(from: s.startIndex, to: $0.lowerBound) } ?? -1)
            case "count": return .int(s.components(separatedBy: args.first?.str ?? "").count - 1)
            case "join": if case .list(let l)? = args.first { return try join(try l.map { try text($0, line) }, s, line) }
            case "format":
                var r = s, i = 0
                while let range = r.range(of: "{}"), i < args.count {
                    r.replaceSubrange(range, with: try text(args[i], line)); i += 1
                    try checkStringBytes(r.utf8.count, line)
                }
                return try string(r, line)
            default: break
            }
        case .dict(let d):
            switch m {
            case "items": return try list(d.map { .list([.string($0.0), $0.1]) }, line)
            case "keys": return .list(d.map { .string($0.0) })
            case "values": return .list(d.map { $0.1 })
            case "get": return d.first { $0.0 == args.first?.str }?.1 ?? (args.count > 1 ? args[1] : .none)
            default: break
            }
        case .namespace(let n):
            if m == "get" { return n[args.first?.str ?? ""] ?? (args.count > 1 ? args[1] : .none) }
        default: break
        }
        throw JinjaError.unsupported(line: line, construct: "method \(base.typeName).\(m)()")
    }

    /// `s.replace(old, new)`, refused up front when the result could pass the string limit.
    func replace(_ s: String, _ old: String, _ new: String, _ line: Int) throws -> JinjaValue {
        guard !old.isEmpty else { return .string(s) }
        if new.utf8.count > old.utf8.count {
            let n = s.components(separatedBy: old).count - 1
            let (grow, o) = n.multipliedReportingOverflow(by: new.utf8.count - old.utf8.count)
            if o { throw refuse("replace would build a string past \(limits.maxStringBytes) bytes", line) }
            try checkStringBytes(s.utf8.count + grow, line)
        }
        return try string(s.replacingOccurrences(of: old, with: new), line)
    }

    /// Strings joined by `sep`, refused up front past the string limit.
    func join(_ parts: [String], _ sep: String, _ line: Int) throws -> JinjaValue {
        var total = sep.utf8.count * max(parts.count - 1, 0)
        for p in parts { total += p.utf8.count; try checkStringBytes(total, line) }
        try checkStringBytes(total, line)
        return try string(parts.joined(separator: sep), line)
    }

    func pyTitle(_ s: String) -> String {
        var out = "", prevLetter = false
        for c in s {
            out += prevLetter ? c.lowercased() : c.uppercased()
            prevLetter = c.isLetter
        }
        return out
    }

    func kw(_ kwargs: [(String, JinjaValue)], _ name: String) -> JinjaValue? { kwargs.first { $0.0 == name }?.1 }

    func filter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ line: Int) throws -> JinjaValue {
        try charge(size(v) + args.reduce(0) { $0 + size($1) }, line)
        switch name {
        case "trim": return try callMethod(.string(try text(v, line)), "strip", args, [], line)
        case "upper": return try string(try text(v, line).uppercased(), line)
        case "lower": return try string(try text(v, line).lowercased(), line)
        case "capitalize":
            let s = try text(v, line)
            return try string(s.prefix(1).uppercased() + s.dropFirst().lowercased(), line)
        case "title": return try string(pyTitle(try text(v, line)), line)
        case "string": return try string(try text(v, line), line)
        case "safe", "e", "escape", "forceescape":
            if name == "safe" { return v }
            let s = try text(v, line)
            try checkStringBytes(s.utf8.count * 6, line)   // "&#34;" is the longest replacement, 6 bytes for 1
            return try string(s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&#34;").replacingOccurrences(of: "'", with: "&#39;"), line)
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.count)
            case .list(let l): return .int(l.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw JinjaError.runtime(line: line, message: "object of type \(v.typeName) has no len()")
            }
        case "tojson":
            // Python treats a negative indent as 0 (newlines only); the writer stops at the string limit.
            let indent: Int? = { if case .int(let i)? = kw(kwargs, "indent") ?? args.first { return max(0, min(i, limits.maxStringBytes)) }; return nil }()
            var w = JinjaValue.Writer(limit: limits.maxStringBytes)
            v.write(into: &w, mode: .json(indent: indent))
            guard !w.overflowed else { throw refuse("tojson output over \(limits.maxStringBytes) bytes", line) }
            return try string(w.out, line)
        case "default", "d":
            let boolean = (kw(kwargs, "boolean") ?? (args.count > 1 ? args[1] : .bool(false))).truthy
            if v.isUndefined || (boolean && !v.truthy) { return args.first ?? kw(kwargs, "default_value") ?? .string("") }
            return v
        case "join":
            let sep = try text(args.first ?? kw(kwargs, "d") ?? .string(""), line)
            let attr = kw(kwargs, "attribute")?.str
            let items = try iterable(v, line).map { item in try attr.map { a in try attribute(item, a, line) } ?? item }
            return try join(try items.map { try text($0, line) }, sep, line)
        case "first":
            let l = try iterable(v, line)
            return l.first ?? .undefined
        case "last":
            let l = try iterable(v, line)
            return l.last ?? .undefined
        case "reverse":
            if case .string(let s) = v { return .string(String(s.reversed())) }
            return .list(try iterable(v, line).reversed())
        case "list": return .list(try iterable(v, line))
        case "items":
            if case .dict(let d) = v { return .list(d.map { .list([.string($0.0), $0.1]) }) }
            return .list([])
        case "replace":
            guard args.count >= 2 else { throw JinjaError.runtime(line: line, message: "replace needs two arguments") }
            return try replace(try text(v, line), try text(args[0], line), try text(args[1], line), line)
        case "int":
            // Jinja's int filter: int(x), else int(float(x)), else the default (0) — nan and inf
            // included; a finite value past 64 bits is an error rather than a trap.
            let fallback: JinjaValue = args.first ?? kw(kwargs, "default") ?? .int(0)
            if case .int = v { return v }
            if case .bool(let b) = v { return .int(b ? 1 : 0) }
            let d: Double
            if case .double(let x) = v { d = x } else {
                let s = try text(v, line).trimmingCharacters(in: .whitespaces)
                if let i = Int(s) { return .int(i) }
                guard let x = Double(s) else { return fallback }
                d = x
            }
            guard d.isFinite else { return fallback }
            return .int(try toInt(d, line))
        case "float":
            if let d = v.number { return .double(d) }
            return .double(Double(try text(v, line).trimmingCharacters(in: .whitespaces)) ?? 0)
        case "abs":
            if case .int(let i) = v {
                guard i != .min else { throw JinjaError.runtime(line: line, message: "integer overflow in abs(\(i))") }
                return .int(abs(i))
            }
            return .double(abs(v.number ?? 0))
        case "unique":
            var seen: [JinjaValue] = []
            for x in try iterable(v, line) {
                try charge(seen.count, line)
                if !seen.contains(where: { JinjaValue.equal($0, x) }) { seen.append(x) }
            }
            return .list(seen)
        case "selectattr", "rejectattr", "select", "reject":
            let items = try iterable(v, line)
            let isAttr = name.hasSuffix("attr")
            let attr = isAttr ? args.first?.str : nil
            let testArgs = isAttr ? Array(args.dropFirst()) : args
            let select = name.hasPrefix("select")
            return .list(try items.filter { item in
                let target = try attr.map { try attribute(item, $0, line) } ?? item
                let r: Bool
                if let t = testArgs.first { r = try test(t.str, target, Array(testArgs.dropFirst()), line) } else { r = target.truthy }
                return r == select
            })
        case "map":
            let items = try iterable(v, line)
            if let a = kw(kwargs, "attribute") { return try list(try items.map { try attribute($0, a.str, line) }, line) }
            if let f = args.first { return try list(try items.map { try filter(f.str, $0, Array(args.dropFirst()), [], line) }, line) }
            throw JinjaError.unsupported(line: line, construct: "map without attribute or filter")
        case "indent":
            let widthArg = args.first ?? kw(kwargs, "width")
            let pad: String
            switch widthArg {
            case .int(let i)?: pad = try repeated(" ", i, line).str   // negative: no padding, as " " * -1 in Python
            case .string(let p)?: pad = p
            default: pad = "    "
            }
            let first = (args.count > 1 ? args[1] : kw(kwargs, "first") ?? .bool(false)).truthy
            let lines = try text(v, line).components(separatedBy: "\n")
            let (padBytes, o) = pad.utf8.count.multipliedReportingOverflow(by: lines.count)
            if o { throw refuse("indent of \(lines.count) lines by \(pad.utf8.count) bytes", line) }
            try checkStringBytes(padBytes, line)
            return try join(lines.enumerated().map { i, l in (i == 0 && !first) || l.isEmpty ? l : pad + l }, "\n", line)
        default:
            throw JinjaError.unsupported(line: line, construct: "filter \"\(name)\"")
        }
    }

    func test(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ line: Int) throws -> Bool {
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true }; return false
        case "string": if case .string = v { return true }; return false
        case "number": switch v { case .int, .double: return true; default: return false }
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "mapping": switch v { case .dict, .namespace: return true; default: return false }
        case "sequence": switch v { case .list, .string, .dict: return true; default: return false }
        case "iterable": switch v { case .list, .string, .dict, .namespace: return true; default: return false }
        case "callable": if case .macro = v { return true }; return false
        case "even": if case .int(let i) = v { return i % 2 == 0 }; return false
        case "odd": if case .int(let i) = v { return i % 2 != 0 }; return false
        case "divisibleby": if case .int(let i) = v, case .int(let d)? = args.first, d != 0 { return d == -1 || i % d == 0 }; return false
        case "equalto", "eq", "==", "sameas": return JinjaValue.equal(v, args.first ?? .undefined)
        case "ne", "!=": return !JinjaValue.equal(v, args.first ?? .undefined)
        case "in": return try binary("in", v, args.first ?? .undefined, line).truthy
        case "lower": let s = try text(v, line); return s == s.lowercased()
        case "upper": let s = try text(v, line); return s == s.uppercased()
        default: throw JinjaError.unsupported(line: line, construct: "test \"\(name)\"")
        }
    }
}
