// Text ↔ token ids for the two vocabulary kinds Wren reads: byte-level BPE
// ("gpt2": SmolLM2, LLaMA-3, Qwen2) and SentencePiece-style BPE ("llama":
// LLaMA-1/2, Mistral) with <0xNN> byte fallback. Special and user-defined
// tokens are matched as single ids; BOS/EOS follow the model's flags.

import Synchronization

/// Everything a tokenizer needs, as stored in a model file.
public struct TokenizerSpec: Sendable {
    /// "gpt2" or "llama".
    public var model: String
    public var pre: String
    public var tokens: [String]
    public var scores: [Float]?
    /// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    public var tokenTypes: [Int32]?
    public var merges: [String]?
    public var bosID: Int?
    public var eosID: Int?
    public var unkID: Int?
    public var addBOS: Bool
    public var addEOS: Bool
    public var addSpacePrefix: Bool

    public init(model: String, pre: String, tokens: [String], scores: [Float]? = nil, tokenTypes: [Int32]? = nil,
                merges: [String]? = nil, bosID: Int? = nil, eosID: Int? = nil, unkID: Int? = nil,
                addBOS: Bool = false, addEOS: Bool = false, addSpacePrefix: Bool = false) {
        self.model = model; self.pre = pre; self.tokens = tokens; self.scores = scores; self.tokenTypes = tokenTypes
        self.merges = merges; self.bosID = bosID; self.eosID = eosID; self.unkID = unkID
        self.addBOS = addBOS; self.addEOS = addEOS; self.addSpacePrefix = addSpacePrefix
    }
}

public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case unsupportedModel(String)
    case missingByteToken(String)
    case invalidID(Int32, vocabularySize: Int)

    public var description: String {
        switch self {
        case .unsupportedModel(let m): return "tokenizer model \"\(m)\" is not supported (gpt2 or llama)"
        case .missingByteToken(let what): return "the vocabulary has no token for \(what)"
        case .invalidID(let id, let n): return "token id \(id) is outside the vocabulary (0..<\(n))"
        }
    }
}

public final class Tokenizer: Sendable {
    public enum Kind: Sendable { case byteLevel, sentencePiece }

    public let kind: Kind
    public let vocabularySize: Int
    public let bosID: Int32?
    public let eosID: Int32?
    public let unkID: Int32?
    public let addBOS: Bool
    public let addEOS: Bool
    public let addSpacePrefix: Bool
    public let preTokenizer: PreTokenizer
    /// Piece strings, by id.
    public let pieces: [String]
    /// The bytes each id decodes to (control tokens: their text for byte-level, empty for SentencePiece).
    let pieceBytes: [[UInt8]]
    let types: [Int32]
    let isControl: [Bool]

    // Byte-level.
    let byteToken: [Int32]
    let bpe: ByteLevelBPE
    // SentencePiece.
    /// Keyed by UTF-8 bytes: Swift String equality is canonical equivalence, which would
    /// conflate "é" (U+00E9) with "e\u{301}"; tokenizers compare bytes.
    let spmVocab: [[UInt8]: Int32]
    let spmScores: [Float]
    /// HF tokenizer.json SentencePiece-style BPE: merges by rank ("left right" bytes → rank).
    /// When present, pairs merge by rank as HF's BPE model does; otherwise by piece score.
    let spmMerges: [[UInt8]: Int32]
    let byteFallback: [Int32]
    /// Special/user-defined tokens matchable in text: first scalar → (scalars, id), longest first.
    let specials: [UInt32: [([Unicode.Scalar], Int32, Bool)]]

    private let cache = Mutex<[[UInt8]: [Int32]]>([:])

    public init(_ spec: TokenizerSpec) throws {
        let n = spec.tokens.count
        vocabularySize = n
        pieces = spec.tokens
        let types = spec.tokenTypes ?? [Int32](repeating: 1, count: n)
        self.types = types
        isControl = types.map { $0 == 3 }
        bosID = spec.bosID.map(Int32.init)
        eosID = spec.eosID.map(Int32.init)
        unkID = spec.unkID.map(Int32.init)
        addBOS = spec.addBOS
        addEOS = spec.addEOS
        addSpacePrefix = spec.addSpacePrefix
        preTokenizer = PreTokenizer(name: spec.pre)

        var sp: [UInt32: [([Unicode.Scalar], Int32, Bool)]] = [:]
        for i in 0..<n where types[i] == 3 || types[i] == 4 {
            let scalars = Array(spec.tokens[i].unicodeScalars)
            guard let f = scalars.first else { continue }
            sp[f.value, default: []].append((scalars, Int32(i), types[i] == 3))
        }
        for k in sp.keys { sp[k]!.sort { $0.0.count > $1.0.count } }
        specials = sp

        switch spec.model {
        case "gpt2":
            kind = .byteLevel
            var index: [String: Int32] = [:]
            index.reserveCapacity(n)
            for (i, t) in spec.tokens.enumerated() where index[t] == nil { index[t] = Int32(i) }
            var bt = [Int32](repeating: -1, count: 256)
            // A vocabulary may lack tokens for bytes never seen in training (SmolLM2 has
            // none for 0x04, 0xF1, ...); like HF tokenizers without an unk token, such
            // bytes are dropped.
            for b in 0..<256 { bt[b] = index[String(ByteUnicode.byteToScalar[b])] ?? -1 }
            byteToken = bt
            spmMerges = [:]
            var m: [UInt64: UInt64] = [:]
            m.reserveCapacity(spec.merges?.count ?? 0)
            for (rank, line) in (spec.merges ?? []).enumerated() {
                guard let sp = line.firstIndex(of: " ") else { continue }
                let a = String(line[..<sp]), b = String(line[line.index(after: sp)...])
                guard let ia = index[a], let ib = index[b], let im = index[a + b] else { continue }
                let key = UInt64(UInt32(bitPattern: ia)) << 32 | UInt64(UInt32(bitPattern: ib))
                if m[key] == nil { m[key] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: im)) }
            }
            bpe = ByteLevelBPE(merges: m)
            pieceBytes = spec.tokens.enumerated().map { i, t in
                if types[i] == 3 || types[i] == 4 { return Array(t.utf8) }
                return ByteUnicode.decode(t) ?? Array(t.utf8)
            }
            spmVocab = [:]
            spmScores = []
            byteFallback = []
        case "llama":
            kind = .sentencePiece
            var index: [[UInt8]: Int32] = [:]
            index.reserveCapacity(n)
            var bf = [Int32](repeating: -1, count: 256)
            for (i, t) in spec.tokens.enumerated() {
                if types[i] == 6, t.count == 6, t.hasPrefix("<0x"), let b = UInt8(t.dropFirst(3).prefix(2), radix: 16) {
                    bf[Int(b)] = Int32(i)
                    continue
                }
                // Control and unused pieces are never produced from text (sentencepiece excludes them).
                if types[i] == 3 || types[i] == 5 { continue }
                if index[Array(t.utf8)] == nil { index[Array(t.utf8)] = Int32(i) }
            }
            spmVocab = index
            spmScores = spec.scores ?? (0..<n).map { -Float($0) }
            var ranks: [[UInt8]: Int32] = [:]
            if spec.scores == nil, let merges = spec.merges {
                for (r, m) in merges.enumerated() where ranks[Array(m.utf8)] == nil { ranks[Array(m.utf8)] = Int32(r) }
            }
            spmMerges = ranks
            byteFallback = bf
            pieceBytes = spec.tokens.enumerated().map { i, t in
                if types[i] == 6, let b = bf.firstIndex(of: Int32(i)) { return [UInt8(b)] }
                if types[i] == 3 { return [] }
                return Array(String(String.UnicodeScalarView(t.unicodeScalars.map { $0 == "\u{2581}" ? " " : $0 })).utf8)
            }
            byteToken = []
            bpe = ByteLevelBPE(merges: [:])
        default:
            throw TokenizerError.unsupportedModel(spec.model)
        }
    }

    // MARK: encoding

    /// Token ids for `text`.
    /// - Parameters:
    ///   - addSpecial: add BOS/EOS as the model's flags say.
    ///   - parseSpecial: match control tokens (e.g. `<|im_start|>`) written in the text as single ids;
    ///     user-defined added tokens are always matched.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = true) -> [Int32] {
        var out: [Int32] = []
        if addSpecial && addBOS, let b = bosID { out.append(b) }
        let scalars = Array(text.unicodeScalars)
        var fragStart = 0
        var i = 0
        var prevSpecial = true
        while i < scalars.count {
            if let cands = specials[scalars[i].value] {
                var matched: (Int, Int32)? = nil
                for (s, id, control) in cands where !control || parseSpecial {
                    if i + s.count <= scalars.count && scalars[i..<(i + s.count)].elementsEqual(s) { matched = (s.count, id); break }
                }
                if let (len, id) = matched {
                    if fragStart < i { encodeRaw(scalars, fragStart..<i, afterSpecial: prevSpecial, into: &out) }
                    out.append(id)
                    prevSpecial = true
                    i += len
                    fragStart = i
                    continue
                }
            }
            i += 1
        }
        if fragStart < scalars.count { encodeRaw(scalars, fragStart..<scalars.count, afterSpecial: prevSpecial, into: &out) }
        if addSpecial && addEOS, let e = eosID { out.append(e) }
        return out
    }

    private func encodeRaw(_ scalars: [Unicode.Scalar], _ range: Range<Int>, afterSpecial: Bool, into out: inout [Int32]) {
        switch kind {
        case .byteLevel: encodeByteLevel(scalars, range, into: &out)
        case .sentencePiece: encodeSentencePiece(scalars, range, prefixSpace: addSpacePrefix && afterSpecial, into: &out)
        }
    }

    private func encodeByteLevel(_ scalars: [Unicode.Scalar], _ range: Range<Int>, into out: inout [Int32]) {
        let classes = scalars[range].map(charClass)
        var pieces: [Range<Int>] = []
        scalars.withUnsafeBufferPointer { sAll in
            let s = UnsafeBufferPointer(rebasing: sAll[range])
            classes.withUnsafeBufferPointer { c in preTokenizer.split(s, c, 0..<s.count, into: &pieces) }
        }
        var heap = PairHeap(), next: [Int32] = [], prev: [Int32] = [], ids: [Int32] = []
        var local: [([UInt8], [Int32])] = []
        let base = range.lowerBound
        var cached: [[UInt8]: [Int32]] = [:]
        cache.withLock { cached = $0 }
        var key: [UInt8] = []
        for p in pieces {
            key.removeAll(keepingCapacity: true)
            for u in scalars[(base + p.lowerBound)..<(base + p.upperBound)] { appendUTF8(u, to: &key) }
            if let hit = cached[key] { out.append(contentsOf: hit); continue }
            ids.removeAll(keepingCapacity: true)
            for b in key where byteToken[Int(b)] >= 0 { ids.append(byteToken[Int(b)]) }
            bpe.apply(&ids, heap: &heap, next: &next, prev: &prev)
            out.append(contentsOf: ids)
            local.append((key, ids))
            cached[key] = ids
        }
        if !local.isEmpty {
            cache.withLock { c in
                if c.count > 200_000 { c.removeAll(keepingCapacity: true) }
                for (k, v) in local { c[k] = v }
            }
        }
    }

    private func encodeSentencePiece(_ scalars: [Unicode.Scalar], _ range: Range<Int>, prefixSpace: Bool, into out: inout [Int32]) {
        // Escape spaces as U+2581 and add the dummy prefix; symbols are UTF-8 byte strings.
        let marker: [UInt8] = [0xE2, 0x96, 0x81]
        var syms: [[UInt8]] = []
        syms.reserveCapacity(range.count + 1)
        if prefixSpace { syms.append(marker) }
        for i in range {
            if scalars[i] == " " { syms.append(marker) } else {
                var b: [UInt8] = []
                appendUTF8(scalars[i], to: &b)
                syms.append(b)
            }
        }
        let n = syms.count
        guard n > 0 else { return }
        var next = (0..<n).map { Int32($0 + 1) }, prev = (0..<n).map { Int32($0 - 1) }
        next[n - 1] = -1
        var version = [Int32](repeating: 0, count: n)
        var heap = PairHeap()
        let byRank = !spmMerges.isEmpty
        func consider(_ l: Int32, _ r: Int32) {
            guard l >= 0, r >= 0 else { return }
            if byRank {
                guard let rank = spmMerges[syms[Int(l)] + [0x20] + syms[Int(r)]] else { return }
                heap.push(.init(key: Int64(rank), left: l, right: r, stamp: version[Int(l)], stampRight: version[Int(r)]))
                return
            }
            guard let id = spmVocab[syms[Int(l)] + syms[Int(r)]] else { return }
            // Highest score first: key = -score as an order-preserving integer.
            let score = spmScores[Int(id)]
            heap.push(.init(key: -Int64(orderedBits(score)), left: l, right: r, stamp: version[Int(l)], stampRight: version[Int(r)]))
        }
        for i in 0..<(n - 1) { consider(Int32(i), Int32(i + 1)) }
        while let e = heap.pop() {
            let l = Int(e.left), r = Int(e.right)
            guard version[l] == e.stamp, version[r] == e.stampRight, next[l] == e.right, !syms[r].isEmpty else { continue }
            syms[l] += syms[r]
            syms[r] = []
            version[l] += 1
            version[r] += 1
            let rn = next[r]
            next[l] = rn
            if rn >= 0 { prev[Int(rn)] = Int32(l) }
            consider(prev[l], Int32(l))
            consider(Int32(l), rn)
        }
        var i: Int32 = 0
        while i >= 0 {
            let s = syms[Int(i)]
            if let id = spmVocab[s] {
                out.append(id)
            } else {
                for b in s {
                    let f = byteFallback[Int(b)]
                    if f >= 0 { out.append(f) } else if let u = unkID { out.append(u) }
                }
            }
            i = next[Int(i)]
        }
    }

    /// The token ids of each piece BPE works on within `text`, in order: for byte-level BPE the
    /// pre-tokenizer's pieces, for SentencePiece each word with its leading space (the first with
    /// the dummy prefix if the model adds one). Special tokens are not matched. Concatenated, the
    /// pieces are `encode(text, addSpecial: false, parseSpecial: false)` when the text holds no
    /// user-defined token. Vocabulary extension learns its merges on these.
    public func pieceIDs(_ text: String) -> [[Int32]] {
        let scalars = Array(text.unicodeScalars)
        var out: [[Int32]] = []
        switch kind {
        case .byteLevel:
            let classes = scalars.map(charClass)
            var pieces: [Range<Int>] = []
            scalars.withUnsafeBufferPointer { s in classes.withUnsafeBufferPointer { c in preTokenizer.split(s, c, 0..<s.count, into: &pieces) } }
            var heap = PairHeap(), next: [Int32] = [], prev: [Int32] = []
            var key: [UInt8] = []
            for p in pieces {
                key.removeAll(keepingCapacity: true)
                for u in scalars[p] { appendUTF8(u, to: &key) }
                var ids: [Int32] = []
                for b in key where byteToken[Int(b)] >= 0 { ids.append(byteToken[Int(b)]) }
                bpe.apply(&ids, heap: &heap, next: &next, prev: &prev)
                out.append(ids)
            }
        case .sentencePiece:
            var start = 0
            for i in 0...scalars.count where i == scalars.count || (scalars[i] == " " && i > start) {
                var ids: [Int32] = []
                if start < i { encodeSentencePiece(scalars, start..<i, prefixSpace: start == 0 && addSpacePrefix, into: &ids) }
                if !ids.isEmpty { out.append(ids) }
                start = i
            }
        }
        return out
    }

    /// The type of token `id` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    public func type(of id: Int32) -> Int32 { id >= 0 && Int(id) < vocabularySize ? types[Int(id)] : 0 }

    /// Maps a Float to an Int64 that sorts the same way.
    @inline(__always) func orderedBits(_ f: Float) -> Int64 {
        let b = Int32(bitPattern: f.bitPattern)
        return Int64(b >= 0 ? b : Int32.min - b)
    }

    // MARK: decoding

    /// The bytes token `id` stands for.
    public func bytes(of id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < vocabularySize else { return [] }
        return pieceBytes[Int(id)]
    }

    public func isControl(_ id: Int32) -> Bool { id >= 0 && Int(id) < vocabularySize && isControl[Int(id)] }

    /// Text for `ids` (invalid UTF-8 becomes U+FFFD). SentencePiece: the dummy-prefix space of
    /// the first text token is removed. Control tokens: written for byte-level vocabularies
    /// unless `skipSpecial`; never for SentencePiece ones.
    public func decode(_ ids: [Int32], skipSpecial: Bool = false) throws -> String {
        var d = StreamingDecoder(self, skipSpecial: skipSpecial)
        var s = ""
        for id in ids { s += try d.append(id) }
        return s + d.flush()
    }
}

@inline(__always) func appendUTF8(_ u: Unicode.Scalar, to out: inout [UInt8]) {
    let v = u.value
    switch v {
    case 0..<0x80: out.append(UInt8(v))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | (v >> 6))); out.append(UInt8(0x80 | (v & 0x3F)))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | (v >> 12))); out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F)))
    default:
        out.append(UInt8(0xF0 | (v >> 18))); out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F)))
    }
}

/// Incremental detokenizer: `append` returns only text made of complete UTF-8
/// sequences; a character split across tokens is held until it completes.
public struct StreamingDecoder: Sendable {
    let tokenizer: Tokenizer
    let skipSpecial: Bool
    var pending: [UInt8] = []
    var atStart = true

    public init(_ tokenizer: Tokenizer, skipSpecial: Bool = false, atStart: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecial = skipSpecial
        self.atStart = atStart
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    public mutating func append(_ id: Int32) throws -> String {
        guard id >= 0, Int(id) < tokenizer.vocabularySize else {
            throw TokenizerError.invalidID(id, vocabularySize: tokenizer.vocabularySize)
        }
        let control = tokenizer.isControl(id)
        if control && (skipSpecial || tokenizer.kind == .sentencePiece) { return "" }
        var b = tokenizer.bytes(of: id)
        if tokenizer.kind == .sentencePiece && atStart && tokenizer.addSpacePrefix && b.first == 0x20 { b.removeFirst() }
        atStart = false
        pending.append(contentsOf: b)
        let cut = completePrefixLength(pending)
        guard cut > 0 else { return "" }
        let s = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return s
    }

    /// Whatever is left (an unfinished sequence becomes U+FFFD).
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside an unfinished UTF-8 sequence.
    func completePrefixLength(_ b: [UInt8]) -> Int {
        let n = b.count
        var i = n - 1
        var k = 0
        while i >= 0 && k < 4 && (b[i] & 0xC0) == 0x80 { i -= 1; k += 1 }
        guard i >= 0 else { return n }             // only continuation bytes: invalid, emit
        let lead = b[i]
        let need: Int
        switch lead {
        case 0xC0...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF7: need = 4
        default: return n                           // ASCII or invalid lead: nothing pending
        }
        return n - i < need ? i : n
    }
}
