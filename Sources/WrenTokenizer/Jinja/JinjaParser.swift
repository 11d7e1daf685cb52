// Lexing and parsing chat templates: text and {{ }}, {% %}, {# #} tags with
// Jinja's whitespace control ({%- -%}) and the trim_blocks / lstrip_blocks
// settings Hugging Face renders chat templates with; expressions by Jinja's
// precedence (conditional, or, and, not, comparisons and tests, + -, ~, * /
// // %, **, unary, postfix . [] () and | filters).

import Foundation

indirect enum Expr {
    case literal(JinjaValue)
    case name(String, Int)
    case list([Expr])
    case dict([(Expr, Expr)])
    case attr(Expr, String, Int)
    case index(Expr, Expr, Int)
    case slice(Expr, Expr?, Expr?, Expr?, Int)
    case call(Expr, [Expr], [(String, Expr)], Int)
    case filter(Expr, String, [Expr], [(String, Expr)], Int)
    case test(Expr, String, [Expr], Bool, Int)
    case unary(String, Expr, Int)
    case binary(String, Expr, Expr, Int)
    case cond(Expr, Expr, Expr?)
}

extension Expr {
    /// The template line, for the nodes that carry one.
    var line: Int? {
        switch self {
        case .name(_, let l), .attr(_, _, let l), .index(_, _, let l), .slice(_, _, _, _, let l), .call(_, _, _, let l),
             .filter(_, _, _, _, let l), .test(_, _, _, _, let l), .unary(_, _, let l), .binary(_, _, _, let l): return l
        case .literal, .list, .dict, .cond: return nil
        }
    }
}

enum SetTarget {
    case name(String)
    case attribute(String, String)
    case names([String])
}

indirect enum Node {
    case text(String)
    case output(Expr)
    case ifs([(Expr?, [Node])])
    case forLoop(targets: [String], iter: Expr, cond: Expr?, body: [Node], elseBody: [Node], line: Int)
    case set(SetTarget, Expr, Int)
    case setBlock(String, [Node])
    case macro(String, [(String, Expr?)], [Node])
    case breakLoop(Int)
    case continueLoop(Int)
}

struct Tok: Equatable {
    enum Kind: Equatable { case name, string, int, double, op }
    var kind: Kind
    var text: String
    var line: Int
}

enum JinjaLexer {
    struct Segment {
        enum Kind { case text, output, statement }
        var kind: Kind
        var content: String
        var line: Int
    }

    /// Splits the template into text and tags, applying whitespace control.
    static func segments(_ src: String, trimBlocks: Bool = true, lstripBlocks: Bool = true) throws -> [Segment] {
        let s = Array(src.unicodeScalars)
        var segs: [Segment] = []
        var i = 0, line = 1
        var text = String.UnicodeScalarView()
        var stripNextLeading = false, trimNextNewline = false
        func flushText() {
            var t = String(text)
            text = String.UnicodeScalarView()
            if stripNextLeading { t = String(t.drop { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }) }
            else if trimNextNewline {
                if t.hasPrefix("\r\n") { t.removeFirst(1) }     // "\r\n" is one Character in Swift
                else if t.hasPrefix("\n") { t.removeFirst() }
            }
            stripNextLeading = false
            trimNextNewline = false
            segs.append(Segment(kind: .text, content: t, line: line))
        }
        while i < s.count {
            if s[i] == "{", i + 1 < s.count, s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#" {
                let open = s[i + 1]
                let tagLine = line
                var j = i + 2
                var leftDash = false, plus = false
                if j < s.count && s[j] == "-" { leftDash = true; j += 1 } else if j < s.count && s[j] == "+" { plus = true; j += 1 }
                let closeChar: Unicode.Scalar = open == "{" ? "}" : (open == "%" ? "%" : "#")
                // Find the closing delimiter (outside string literals for {{ and {%).
                var k = j
                var quote: Unicode.Scalar? = nil
                var found = -1
                while k + 1 < s.count {
                    let c = s[k]
                    if open != "#" {
                        if let q = quote { if c == "\\" { k += 2; continue }; if c == q { quote = nil } }
                        else if c == "'" || c == "\"" { quote = c }
                    }
                    if quote == nil && c == closeChar && s[k + 1] == "}" { found = k; break }
                    k += 1
                }
                guard found >= 0 else { throw JinjaError.syntax(line: tagLine, message: "unclosed tag") }
                var end = found
                var rightDash = false
                if end > j && s[end - 1] == "-" { rightDash = true; end -= 1 }
                let content = String(String.UnicodeScalarView(s[j..<end]))
                for c in s[i..<(found + 2)] where c == "\n" { line += 1 }
                // Whitespace before the tag.
                let isBlock = open != "{"
                if leftDash {
                    while let last = text.last, last == " " || last == "\t" || last == "\n" || last == "\r" { text.removeLast() }
                } else if lstripBlocks && isBlock && !plus {
                    // Spaces/tabs between the start of a source line and a block tag go.
                    let arr = Array(text)
                    var idx = arr.count
                    while idx > 0 && (arr[idx - 1] == " " || arr[idx - 1] == "\t") { idx -= 1 }
                    let lineStart = idx > 0 ? arr[idx - 1] == "\n" : segs.isEmpty
                    if lineStart { text = String.UnicodeScalarView(arr[0..<idx]) }
                }
                flushText()
                switch open {
                case "{": segs.append(Segment(kind: .output, content: content, line: tagLine))
                case "%": segs.append(Segment(kind: .statement, content: content, line: tagLine))
                default: break
                }
                if rightDash { stripNextLeading = true } else if trimBlocks && isBlock { trimNextNewline = true }
                i = found + 2
                // {% raw %} ... {% endraw %}
                if open == "%", content.trimmingCharacters(in: .whitespaces) == "raw" {
                    guard let r = findEndRaw(s, from: i) else { throw JinjaError.syntax(line: tagLine, message: "raw without endraw") }
                    var t = String(String.UnicodeScalarView(s[i..<r.start]))
                    if t.hasPrefix("\n") && trimBlocks { t.removeFirst() }
                    segs.append(Segment(kind: .text, content: t, line: line))
                    for c in s[i..<r.after] where c == "\n" { line += 1 }
                    i = r.after
                }
                continue
            }
            text.append(s[i])
            if s[i] == "\n" { line += 1 }
            i += 1
        }
        flushText()
        return segs.filter { !($0.kind == .text && $0.content.isEmpty) }
    }

    static func findEndRaw(_ s: [Unicode.Scalar], from: Int) -> (start: Int, after: Int)? {
        var i = from
        while i + 1 < s.count {
            if s[i] == "{" && s[i + 1] == "%" {
                var j = i + 2
                if j < s.count && s[j] == "-" { j += 1 }
                var k = j
                while k + 1 < s.count && !(s[k] == "%" && s[k + 1] == "}") { k += 1 }
                let body = String(String.UnicodeScalarView(s[j..<k])).trimmingCharacters(in: CharacterSet(charactersIn: " -"))
                if body == "endraw" { return (i, k + 2) }
            }
            i += 1
        }
        return nil
    }

    /// Tokens of a tag's content.
    static func tokens(_ src: String, line: Int) throws -> [Tok] {
        let s = Array(src.unicodeScalars)
        var out: [Tok] = []
        var i = 0, ln = line
        let ops3 = ["//", "**", "==", "!=", "<=", ">="]
        while i < s.count {
            let c = s[i]
            if c == "\n" { ln += 1; i += 1; continue }
            if c == " " || c == "\t" || c == "\r" { i += 1; continue }
            if c.properties.isAlphabetic || c == "_" {
                var j = i
                while j < s.count && (s[j].properties.isAlphabetic || s[j] == "_" || ("0"..."9").contains(s[j])) { j += 1 }
                out.append(Tok(kind: .name, text: String(String.UnicodeScalarView(s[i..<j])), line: ln))
                i = j
                continue
            }
            if ("0"..."9").contains(c) {
                var j = i
                var isDouble = false
                while j < s.count && (("0"..."9").contains(s[j]) || s[j] == "_" || (s[j] == "." && !isDouble && j + 1 < s.count && ("0"..."9").contains(s[j + 1]))) {
                    if s[j] == "." { isDouble = true }
                    j += 1
                }
                out.append(Tok(kind: isDouble ? .double : .int, text: String(String.UnicodeScalarView(s[i..<j])).replacingOccurrences(of: "_", with: ""), line: ln))
                i = j
                continue
            }
            if c == "'" || c == "\"" {
                var j = i + 1
                var v = String.UnicodeScalarView()
                while j < s.count && s[j] != c {
                    if s[j] == "\\" && j + 1 < s.count {
                        j += 1
                        switch s[j] {
                        case "n": v.append("\n")
                        case "t": v.append("\t")
                        case "r": v.append("\r")
                        case "\\": v.append("\\")
                        case "'": v.append("'")
                        case "\"": v.append("\"")
                        case "0": v.append("\0")
                        case "u" where j + 4 < s.count:
                            let hex = String(String.UnicodeScalarView(s[(j + 1)...(j + 4)]))
                            if let code = UInt32(hex, radix: 16), let u = Unicode.Scalar(code) { v.append(u); j += 4 } else { v.append("\\"); v.append("u") }
                        default: v.append("\\"); v.append(s[j])
                        }
                    } else {
                        if s[j] == "\n" { ln += 1 }
                        v.append(s[j])
                    }
                    j += 1
                }
                guard j < s.count else { throw JinjaError.syntax(line: ln, message: "unterminated string") }
                out.append(Tok(kind: .string, text: String(v), line: ln))
                i = j + 1
                continue
            }
            if i + 1 < s.count {
                let two = String(String.UnicodeScalarView([c, s[i + 1]]))
                if ops3.contains(two) { out.append(Tok(kind: .op, text: two, line: ln)); i += 2; continue }
            }
            guard "()[]{},:.|~+-*/%=<>!".unicodeScalars.contains(c) else {
                throw JinjaError.syntax(line: ln, message: "unexpected character \"\(c)\"")
            }
            out.append(Tok(kind: .op, text: String(c), line: ln))
            i += 1
        }
        return out
    }
}

struct JinjaParser {
    var segs: [JinjaLexer.Segment]
    var pos = 0
    let limits: JinjaLimits
    var blockDepth = 0

    init(_ src: String, limits: JinjaLimits) throws {
        self.limits = limits
        if src.utf8.count > limits.maxStringBytes {
            throw JinjaError.limit(line: 1, message: "a template of \(src.utf8.count) bytes (limit \(limits.maxStringBytes))")
        }
        segs = try JinjaLexer.segments(src)
    }

    static func parse(_ src: String, limits: JinjaLimits = JinjaLimits()) throws -> [Node] {
        var p = try JinjaParser(src, limits: limits)
        let (nodes, end) = try p.parseBlock(until: [])
        if let end { throw JinjaError.syntax(line: end.line, message: "unexpected {% \(end.word) %}") }
        return nodes
    }

    /// Parses nodes until a statement whose first word is in `until`; returns it (with its tokens).
    mutating func parseBlock(until: Set<String>) throws -> ([Node], (word: String, toks: [Tok], line: Int)?) {
        blockDepth += 1
        defer { blockDepth -= 1 }
        if blockDepth > limits.maxNesting {
            throw JinjaError.limit(line: segs[max(pos - 1, 0)].line, message: "blocks nested more than \(limits.maxNesting) deep")
        }
        var nodes: [Node] = []
        while pos < segs.count {
            let seg = segs[pos]
            pos += 1
            switch seg.kind {
            case .text: nodes.append(.text(seg.content))
            case .output:
                var e = ExprParser(toks: try JinjaLexer.tokens(seg.content, line: seg.line), line: seg.line, limits: limits)
                let x = try e.parseExpression()
                try e.expectEnd()
                nodes.append(.output(x))
            case .statement:
                let toks = try JinjaLexer.tokens(seg.content, line: seg.line)
                guard let first = toks.first, first.kind == .name else { throw JinjaError.syntax(line: seg.line, message: "empty statement") }
                if until.contains(first.text) { return (nodes, (first.text, toks, seg.line)) }
                nodes.append(contentsOf: try parseStatement(first.text, toks, seg.line))
            }
        }
        return (nodes, nil)
    }

    mutating func parseStatement(_ word: String, _ toks: [Tok], _ line: Int) throws -> [Node] {
        var e = ExprParser(toks: toks, line: line, limits: limits)
        e.pos = 1
        switch word {
        case "if":
            var branches: [(Expr?, [Node])] = []
            var cond: Expr? = try e.parseExpression()
            try e.expectEnd()
            while true {
                let (body, end) = try parseBlock(until: ["elif", "else", "endif"])
                guard let end else { throw JinjaError.syntax(line: line, message: "if without endif") }
                branches.append((cond, body))
                if end.word == "endif" { break }
                if end.word == "else" { cond = nil; continue }
                var ee = ExprParser(toks: end.toks, line: end.line, limits: limits)
                ee.pos = 1
                cond = try ee.parseExpression()
                try ee.expectEnd()
            }
            return [.ifs(branches)]
        case "for":
            var targets: [String] = []
            repeat {
                guard let t = e.next(), t.kind == .name else { throw JinjaError.syntax(line: line, message: "for needs a loop variable") }
                targets.append(t.text)
            } while e.accept(",")
            guard e.acceptName("in") else { throw JinjaError.syntax(line: line, message: "for without in") }
            let iter = try e.parseExpression(allowCond: false)
            var cond: Expr? = nil
            if e.acceptName("if") { cond = try e.parseExpression(allowCond: false) }
            if e.acceptName("recursive") { throw JinjaError.unsupported(line: line, construct: "recursive for loops") }
            try e.expectEnd()
            let (body, end) = try parseBlock(until: ["else", "endfor"])
            guard let end else { throw JinjaError.syntax(line: line, message: "for without endfor") }
            var elseBody: [Node] = []
            if end.word == "else" {
                let (b, end2) = try parseBlock(until: ["endfor"])
                guard end2 != nil else { throw JinjaError.syntax(line: line, message: "for without endfor") }
                elseBody = b
            }
            return [.forLoop(targets: targets, iter: iter, cond: cond, body: body, elseBody: elseBody, line: line)]
        case "set":
            guard let t = e.next(), t.kind == .name else { throw JinjaError.syntax(line: line, message: "set needs a name") }
            var target = SetTarget.name(t.text)
            if e.accept(".") {
                guard let a = e.next(), a.kind == .name else { throw JinjaError.syntax(line: line, message: "set needs an attribute name") }
                target = .attribute(t.text, a.text)
            } else if e.peek()?.text == "," {
                var names = [t.text]
                while e.accept(",") {
                    guard let n = e.next(), n.kind == .name else { throw JinjaError.syntax(line: line, message: "bad set target") }
                    names.append(n.text)
                }
                target = .names(names)
            }
            if e.accept("=") {
                let v = try e.parseExpression()
                try e.expectEnd()
                return [.set(target, v, line)]
            }
            guard case .name(let n) = target, e.atEnd else { throw JinjaError.syntax(line: line, message: "set needs = or a block") }
            let (body, end) = try parseBlock(until: ["endset"])
            guard end != nil else { throw JinjaError.syntax(line: line, message: "set without endset") }
            return [.setBlock(n, body)]
        case "macro":
            guard let n = e.next(), n.kind == .name, e.accept("(") else { throw JinjaError.syntax(line: line, message: "macro needs a name and parameters") }
            var params: [(String, Expr?)] = []
            if !e.accept(")") {
                repeat {
                    guard let p = e.next(), p.kind == .name else { throw JinjaError.syntax(line: line, message: "bad macro parameter") }
                    params.append((p.text, e.accept("=") ? try e.parseExpression() : nil))
                } while e.accept(",")
                guard e.accept(")") else { throw JinjaError.syntax(line: line, message: "macro parameters not closed") }
            }
            try e.expectEnd()
            let (body, end) = try parseBlock(until: ["endmacro"])
            guard end != nil else { throw JinjaError.syntax(line: line, message: "macro without endmacro") }
            return [.macro(n.text, params, body)]
        case "break": return [.breakLoop(line)]
        case "continue": return [.continueLoop(line)]
        case "generation":
            // Hugging Face's marker for assistant-token masks: renders its body unchanged.
            let (body, end) = try parseBlock(until: ["endgeneration"])
            guard end != nil else { throw JinjaError.syntax(line: line, message: "generation without endgeneration") }
            return body
        default:
            throw JinjaError.unsupported(line: line, construct: "{% \(word) %}")
        }
    }
}

struct ExprParser {
    var toks: [Tok]
    var line: Int
    var pos = 0
    let limits: JinjaLimits
    /// Sandbox: recursion depth of the parse and operator nodes built in this tag.
    var depth = 0, nodes = 0

    init(toks: [Tok], line: Int, limits: JinjaLimits = JinjaLimits()) { self.toks = toks; self.line = line; self.limits = limits }

    /// Counts one recursion level; refuses nesting past `maxNesting` before the stack can overflow.
    mutating func nest() throws {
        depth += 1
        if depth > limits.maxNesting { throw JinjaError.limit(line: curLine, message: "expression nested more than \(limits.maxNesting) deep") }
    }

    /// Counts one operator/call node: a loop-built chain (`a + a + …`) is a tree as deep as it is long.
    mutating func node(_ x: Expr) throws -> Expr {
        nodes += 1
        if nodes > limits.maxExpressionNodes { throw JinjaError.limit(line: curLine, message: "more than \(limits.maxExpressionNodes) operators in one tag") }
        return x
    }

    var atEnd: Bool { pos >= toks.count }
    func peek(_ k: Int = 0) -> Tok? { pos + k < toks.count ? toks[pos + k] : nil }
    var curLine: Int { peek()?.line ?? toks.last?.line ?? line }
    mutating func next() -> Tok? { defer { pos += 1 }; return peek() }
    mutating func accept(_ op: String) -> Bool {
        if let t = peek(), t.kind == .op, t.text == op { pos += 1; return true }
        return false
    }
    mutating func acceptName(_ n: String) -> Bool {
        if let t = peek(), t.kind == .name, t.text == n { pos += 1; return true }
        return false
    }
    func expectEnd() throws {
        if let t = peek() { throw JinjaError.syntax(line: t.line, message: "unexpected \"\(t.text)\"") }
    }
    mutating func expect(_ op: String) throws {
        guard accept(op) else { throw JinjaError.syntax(line: curLine, message: "expected \"\(op)\"" + (peek().map { ", found \"\($0.text)\"" } ?? " at the end")) }
    }

    mutating func parseExpression(allowCond: Bool = true) throws -> Expr {
        try nest()
        defer { depth -= 1 }
        let x = try parseOr()
        if allowCond, acceptName("if") {
            let c = try parseOr()
            let other = acceptName("else") ? try parseExpression() : nil
            return try node(.cond(c, x, other))
        }
        return x
    }

    mutating func parseOr() throws -> Expr {
        var x = try parseAnd()
        while let t = peek(), t.kind == .name, t.text == "or" { pos += 1; x = try node(.binary("or", x, try parseAnd(), t.line)) }
        return x
    }

    mutating func parseAnd() throws -> Expr {
        var x = try parseNot()
        while let t = peek(), t.kind == .name, t.text == "and" { pos += 1; x = try node(.binary("and", x, try parseNot(), t.line)) }
        return x
    }

    mutating func parseNot() throws -> Expr {
        if let t = peek(), t.kind == .name, t.text == "not" {
            pos += 1
            try nest()
            defer { depth -= 1 }
            return try node(.unary("not", try parseNot(), t.line))
        }
        return try parseCompare()
    }

    mutating func parseCompare() throws -> Expr {
        var x = try parseMath1()
        while let t = peek() {
            if t.kind == .op, ["==", "!=", "<", ">", "<=", ">="].contains(t.text) {
                pos += 1
                x = try node(.binary(t.text, x, try parseMath1(), t.line))
            } else if t.kind == .name, t.text == "in" {
                pos += 1
                x = try node(.binary("in", x, try parseMath1(), t.line))
            } else if t.kind == .name, t.text == "not", peek(1)?.text == "in" {
                pos += 2
                x = try node(.binary("not in", x, try parseMath1(), t.line))
            } else { break }
        }
        return x
    }

    mutating func parseMath1() throws -> Expr {
        var x = try parseConcat()
        while let t = peek(), t.kind == .op, t.text == "+" || t.text == "-" { pos += 1; x = try node(.binary(t.text, x, try parseConcat(), t.line)) }
        return x
    }

    mutating func parseConcat() throws -> Expr {
        var x = try parseMath2()
        while let t = peek(), t.kind == .op, t.text == "~" { pos += 1; x = try node(.binary("~", x, try parseMath2(), t.line)) }
        return x
    }

    mutating func parseMath2() throws -> Expr {
        var x = try parsePow()
        while let t = peek(), t.kind == .op, ["*", "/", "//", "%"].contains(t.text) { pos += 1; x = try node(.binary(t.text, x, try parsePow(), t.line)) }
        return x
    }

    mutating func parsePow() throws -> Expr {
        var x = try parseUnary()
        while let t = peek(), t.kind == .op, t.text == "**" { pos += 1; x = try node(.binary("**", x, try parseUnary(), t.line)) }
        return x
    }

    mutating func parseUnary() throws -> Expr {
        if let t = peek(), t.kind == .op, t.text == "-" || t.text == "+" {
            pos += 1
            try nest()
            defer { depth -= 1 }
            return try parseFilters(try node(.unary(t.text, try parseUnary(), t.line)))
        }
        return try parseFilters(try parsePostfix(try parsePrimary()))
    }

    mutating func parseArgs() throws -> ([Expr], [(String, Expr)]) {
        var args: [Expr] = [], kwargs: [(String, Expr)] = []
        if accept(")") { return (args, kwargs) }
        repeat {
            if let t = peek(), t.kind == .name, peek(1)?.text == "=", peek(1)?.kind == .op {
                pos += 2
                kwargs.append((t.text, try parseExpression()))
            } else {
                args.append(try parseExpression())
            }
        } while accept(",")
        try expect(")")
        return (args, kwargs)
    }

    mutating func parsePostfix(_ base: Expr) throws -> Expr {
        var x = base
        while let t = peek(), t.kind == .op {
            if t.text == "." {
                pos += 1
                guard let n = next(), n.kind == .name || n.kind == .int else { throw JinjaError.syntax(line: t.line, message: "expected an attribute name after \".\"") }
                x = try node(.attr(x, n.text, t.line))
            } else if t.text == "[" {
                pos += 1
                var a: Expr? = nil, b: Expr? = nil, c: Expr? = nil
                var isSlice = false
                if peek()?.text != ":" { a = try parseExpression() }
                if accept(":") {
                    isSlice = true
                    if peek()?.text != ":" && peek()?.text != "]" { b = try parseExpression() }
                    if accept(":") { if peek()?.text != "]" { c = try parseExpression() } }
                }
                try expect("]")
                guard isSlice || a != nil else { throw JinjaError.syntax(line: t.line, message: "empty subscript") }
                x = try node(isSlice ? .slice(x, a, b, c, t.line) : .index(x, a!, t.line))
            } else if t.text == "(" {
                pos += 1
                let (args, kwargs) = try parseArgs()
                x = try node(.call(x, args, kwargs, t.line))
            } else { break }
        }
        return x
    }

    mutating func parseFilters(_ base: Expr) throws -> Expr {
        var x = base
        while let t = peek() {
            if t.kind == .op, t.text == "|" {
                pos += 1
                guard let n = next(), n.kind == .name else { throw JinjaError.syntax(line: t.line, message: "expected a filter name") }
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                if accept("(") { (args, kwargs) = try parseArgs() }
                x = try node(.filter(x, n.text, args, kwargs, t.line))
            } else if t.kind == .name, t.text == "is" {
                pos += 1
                let negated = acceptName("not")
                guard let n = next(), n.kind == .name else { throw JinjaError.syntax(line: t.line, message: "expected a test name") }
                var args: [Expr] = []
                if accept("(") { args = try parseArgs().0 } else if let a = peek(), a.kind == .string || a.kind == .int || a.kind == .double || (a.kind == .name && !["and", "or", "else", "if", "in", "not", "is"].contains(a.text)) {
                    args = [try parsePrimary()]
                }
                x = try node(.test(x, n.text, args, negated, t.line))
            } else { break }
        }
        return x
    }

    mutating func parsePrimary() throws -> Expr {
        guard let t = next() else { throw JinjaError.syntax(line: curLine, message: "expression expected") }
        switch t.kind {
        case .string:
            var s = t.text
            while let n = peek(), n.kind == .string { s += n.text; pos += 1 }   // adjacent literals concatenate
            return .literal(.string(s))
        case .int:
            guard let i = Int(t.text) else { throw JinjaError.syntax(line: t.line, message: "integer literal \(t.text.prefix(30)) does not fit in 64 bits") }
            return .literal(.int(i))
        case .double:
            guard let d = Double(t.text), d.isFinite else { throw JinjaError.syntax(line: t.line, message: "bad number literal \(t.text.prefix(30))") }
            return .literal(.double(d))
        case .name:
            switch t.text {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(t.text, t.line)
            }
        case .op:
            switch t.text {
            case "(":
                let x = try parseExpression()
                if accept(",") {
                    var items = [x]
                    if peek()?.text != ")" { repeat { items.append(try parseExpression()) } while accept(",") && peek()?.text != ")" }
                    try expect(")")
                    return .list(items)
                }
                try expect(")")
                return x
            case "[":
                var items: [Expr] = []
                if !accept("]") {
                    repeat { if peek()?.text == "]" { break }; items.append(try node(try parseExpression())) } while accept(",")
                    try expect("]")
                }
                return .list(items)
            case "{":
                var items: [(Expr, Expr)] = []
                if !accept("}") {
                    repeat {
                        if peek()?.text == "}" { break }
                        let k = try node(try parseExpression())
                        try expect(":")
                        items.append((k, try parseExpression()))
                    } while accept(",")
                    try expect("}")
                }
                return .dict(items)
            default: throw JinjaError.syntax(line: t.line, message: "unexpected \"\(t.text)\"")
            }
        }
    }
}
