// Learning new tokens on a domain text, for vocabulary extension: byte-pair
// merges learned on top of the existing tokenization, to be appended after every
// existing merge (byte-level BPE) or with scores below every existing piece
// (SentencePiece). Because they rank last, the original merges always finish
// first, and a new merge only ever joins what the original tokenizer left apart:
// existing ids never change, and text decodes to itself.

public enum VocabLearner {
    public struct Learned: Sendable {
        /// The new tokens' strings, in the vocabulary's own spelling (byte-level: the
        /// byte-to-Unicode alphabet; SentencePiece: with ▁ for spaces), in learned order.
        public var tokens: [String]
        /// For each new token, the two tokens it merges ("left right", existing or new).
        public var merges: [String]
        /// For each new token, the original tokens it is made of.
        public var parts: [[Int32]]
        /// How many merges the text supported (pairs seen at least `minCount` times).
        public var supported: Int
    }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case badCount(Int)
        case notEnough(asked: Int, supported: Int, minCount: Int)
        public var description: String {
            switch self {
            case .badCount(let n): return "--new-tokens must be at least 1, not \(n)"
            case let .notEnough(asked, supported, minCount):
                return "the text supports only \(supported) new tokens (pairs seen at least \(minCount) times), not \(asked); give more text or ask for fewer"
            }
        }
    }

    struct Pair: Hashable, Comparable {
        var a: Int32, b: Int32
        static func < (x: Pair, y: Pair) -> Bool { (x.a, x.b) < (y.a, y.b) }
    }

    /// A max-heap of (count, pair), ties to the smaller pair, with stale entries skipped by the caller.
    struct Heap {
        var items: [(Int, Pair)] = []
        static func above(_ x: (Int, Pair), _ y: (Int, Pair)) -> Bool { x.0 > y.0 || (x.0 == y.0 && x.1 < y.1) }
        mutating func push(_ e: (Int, Pair)) {
            items.append(e)
            var i = items.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                guard Heap.above(items[i], items[p]) else { break }
                items.swapAt(i, p); i = p
            }
        }
        mutating func pop() -> (Int, Pair)? {
            guard let top = items.first else { return nil }
            let last = items.removeLast()
            if !items.isEmpty {
                items[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < items.count, Heap.above(items[l], items[m]) { m = l }
                    if r < items.count, Heap.above(items[r], items[m]) { m = r }
                    if m == i { break }
                    items.swapAt(i, m); i = m
                }
            }
            return top
        }
    }

    /// Learns `count` new tokens on `text`. Pairs involving control, unknown, unused or byte
    /// tokens are never merged, nor pairs whose merged string is already a token.
    /// - Throws: `Failure.notEnough` when fewer than `count` pairs occur `minCount` times or more.
    public static func learn(_ tok: Tokenizer, text: String, count: Int, minCount: Int = 2) throws -> Learned {
        guard count >= 1 else { throw Failure.badCount(count) }
        var freq: [[Int32]: Int] = [:]
        for p in tok.pieceIDs(text) where p.count > 1 { freq[p, default: 0] += 1 }
        var seqs = Array(freq.keys).sorted { $0.lexicographicallyPrecedes($1) }
        let counts = seqs.map { freq[$0]! }
        var strings = tok.pieces
        var existing = Set(strings)
        var parts: [[Int32]] = (0..<strings.count).map { [Int32($0)] }
        func mergeable(_ id: Int32) -> Bool { Int(id) >= tok.vocabularySize || tok.type(of: id) == 1 || tok.type(of: id) == 4 }

        var pairCount: [Pair: Int] = [:]
        var whereFound: [Pair: [Int]] = [:]
        for (w, s) in seqs.enumerated() where s.count > 1 {
            for i in 0..<(s.count - 1) {
                let p = Pair(a: s[i], b: s[i + 1])
                pairCount[p, default: 0] += counts[w]
                if whereFound[p]?.last != w { whereFound[p, default: []].append(w) }
            }
        }
        var heap = Heap()
        for (p, c) in pairCount where mergeable(p.a) && mergeable(p.b) { heap.push((c, p)) }

        var learned = Learned(tokens: [], merges: [], parts: [], supported: 0)
        var forbidden = Set<Pair>()
        while learned.tokens.count < count {
            guard let (c, p) = heap.pop() else { break }
            guard pairCount[p] == c, c >= minCount, !forbidden.contains(p) else {
                if c < minCount, pairCount[p] == c { break }   // the best left is too rare
                continue
            }
            let s = strings[Int(p.a)] + strings[Int(p.b)]
            guard !existing.contains(s) else { forbidden.insert(p); continue }
            let id = Int32(strings.count)
            strings.append(s)
            existing.insert(s)
            parts.append(parts[Int(p.a)] + parts[Int(p.b)])
            learned.tokens.append(s)
            learned.merges.append(strings[Int(p.a)] + " " + strings[Int(p.b)])
            learned.parts.append(parts[Int(id)])
            var touched = Set<Pair>()
            for w in whereFound[p] ?? [] {
                let old = seqs[w]
                var new: [Int32] = []
                new.reserveCapacity(old.count)
                var i = 0
                while i < old.count {
                    if i + 1 < old.count, old[i] == p.a, old[i + 1] == p.b { new.append(id); i += 2 } else { new.append(old[i]); i += 1 }
                }
                guard new.count != old.count else { continue }   // stale entry
                for j in 0..<(old.count - 1) { let q = Pair(a: old[j], b: old[j + 1]); pairCount[q, default: 0] -= counts[w]; touched.insert(q) }
                for j in 0..<max(0, new.count - 1) {
                    let q = Pair(a: new[j], b: new[j + 1])
                    pairCount[q, default: 0] += counts[w]
                    touched.insert(q)
                    if whereFound[q]?.last != w { whereFound[q, default: []].append(w) }
                }
                seqs[w] = new
            }
            whereFound[p] = nil
            for q in touched where q != p {
                let c = pairCount[q] ?? 0
                if c > 0, mergeable(q.a), mergeable(q.b) { heap.push((c, q)) } else if c <= 0 { pairCount[q] = nil }
            }
            pairCount[p] = nil
        }
        learned.supported = learned.tokens.count
        guard learned.tokens.count == count else {
            throw Failure.notEnough(asked: count, supported: learned.tokens.count, minCount: minCount)
        }
        return learned
    }
}

extension TokenizerSpec {
    /// This vocabulary with `learned` appended: the new tokens after every existing id (type
    /// normal), their merges after every existing merge (byte-level BPE, or SentencePiece
    /// ranked by merges), their scores below every existing score (SentencePiece by score).
    public func extended(with learned: VocabLearner.Learned) -> TokenizerSpec {
        var s = self
        let k = learned.tokens.count
        s.tokens += learned.tokens
        if let t = tokenTypes { s.tokenTypes = t + [Int32](repeating: 1, count: k) }
        if let sc = scores {
            // Below every piece that can merge (control and byte pieces often sit at -1e9, where
            // steps of 1 vanish in f32), a whole step apart so the learned order is kept.
            let mergeable = sc.indices.filter { i in tokenTypes.map { $0[i] == 1 || $0[i] == 4 } ?? true }.map { sc[$0] }
            func below(_ x: Float) -> Float { let d = (x - 1).rounded(.down); return d < x ? d : x.nextDown }
            var low = below(mergeable.min() ?? sc.min() ?? 0)
            var added: [Float] = []
            for _ in 0..<k { added.append(low); low = below(low) }
            s.scores = sc + added
        }
        if model == "gpt2" || (scores == nil && merges != nil) { s.merges = (merges ?? []) + learned.merges }
        return s
    }
}

