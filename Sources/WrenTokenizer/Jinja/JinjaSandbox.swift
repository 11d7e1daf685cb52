// The sandbox's accounting for one render (JinjaLimits): work paid per
// operation, string and list sizes, value nesting, evaluation depth, loop
// iterations and output size. Every refusal is a JinjaError.limit naming the
// template line; see JinjaValue.swift for the limits and their reasons.

extension JinjaInterpreter {

    func refuse(_ message: String, _ line: Int) -> JinjaError { .limit(line: line, message: message) }

    /// Adds `units` to this render's work; each operation pays for the size of what it reads or builds.
    func charge(_ units: Int, _ line: Int) throws {
        work = work.addingReportingOverflow(max(units, 0)).partialValue
        if work > limits.maxWork || work < 0 {
            throw refuse("more than \(limits.maxWork) units of work (a loop too long or values too large)", line)
        }
    }

    /// The size an operation on `v` pays for: bytes of a string, four per element of a container.
    func size(_ v: JinjaValue) -> Int {
        switch v {
        case .string(let s): return s.utf8.count + 1
        case .list(let l): return 4 * l.count + 1
        case .dict(let d): return 4 * d.count + 1
        case .namespace(let n): return 4 * n.items.count + 1
        default: return 1
        }
    }

    func checkStringBytes(_ n: Int, _ line: Int) throws {
        if n > limits.maxStringBytes { throw refuse("a string of \(n) bytes (limit \(limits.maxStringBytes))", line) }
    }

    /// A string result, checked against the size limit and paid for.
    func string(_ s: String, _ line: Int) throws -> JinjaValue {
        try checkStringBytes(s.utf8.count, line)
        try charge(s.utf8.count, line)
        return .string(s)
    }

    /// A list result, checked against the length and nesting limits and paid for.
    func list(_ l: [JinjaValue], _ line: Int) throws -> JinjaValue {
        if l.count > limits.maxListLength { throw refuse("a list of \(l.count) items (limit \(limits.maxListLength))", line) }
        try charge(4 * l.count, line)
        let v = JinjaValue.list(l)
        try checkNesting(v, line)
        return v
    }

    /// Refuses values nested deeper than `maxValueNesting` (also any namespace that contains itself).
    func checkNesting(_ v: JinjaValue, _ line: Int) throws {
        var visited = 0
        func depth(_ v: JinjaValue, _ level: Int) throws {
            visited += 1
            if level > limits.maxValueNesting { throw refuse("values nested more than \(limits.maxValueNesting) deep", line) }
            switch v {
            case .list(let l): for x in l where x.isContainer { try depth(x, level + 1) }
            case .dict(let d): for x in d where x.1.isContainer { try depth(x.1, level + 1) }
            case .namespace(let n): for x in n.items where x.1.isContainer { try depth(x.1, level + 1) }
            default: break
            }
        }
        try depth(v, 1)
        try charge(visited, line)
    }

    /// Evaluation depth: expressions inside expressions and macro calls.
    func enter(_ line: Int) throws {
        depth += 1
        if depth > limits.maxDepth { throw refuse("evaluation nested more than \(limits.maxDepth) deep (runaway recursion?)", line) }
    }

    func countIteration(_ line: Int) throws {
        iterations += 1
        if iterations > limits.maxIterations { throw refuse("more than \(limits.maxIterations) loop iterations and macro calls", line) }
    }

    func emit(_ s: String) throws {
        try charge(s.utf8.count, line)
        out += s
        if out.utf8.count > limits.maxStringBytes { throw refuse("output over \(limits.maxStringBytes) bytes", line) }
    }

    /// Python str() of any value, bounded by the string limit.
    func text(_ v: JinjaValue, _ line: Int) throws -> String {
        guard v.isContainer else {
            if case .string(let s) = v { return s }
            return v.str
        }
        var w = JinjaValue.Writer(limit: limits.maxStringBytes)
        v.write(into: &w, mode: .repr)
        guard !w.overflowed else { throw refuse("a value whose text is over \(limits.maxStringBytes) bytes", line) }
        try charge(w.out.utf8.count, line)
        return w.out
    }

    /// Python int() of a number, refusing what a 64-bit integer cannot hold.
    func toInt(_ d: Double, _ line: Int) throws -> Int {
        guard let i = Int(exactly: d.rounded(.towardZero)) else {
            throw JinjaError.runtime(line: line, message: "\(JinjaValue.pyFloat(d)) does not fit in a 64-bit integer")
        }
        return i
    }

    func lookup(_ n: String) -> JinjaValue {
        for s in scopes.reversed() { if let v = s[n] { return v } }
        return .undefined
    }

    func assign(_ n: String, _ v: JinjaValue) { scopes[scopes.count - 1][n] = v }
}
