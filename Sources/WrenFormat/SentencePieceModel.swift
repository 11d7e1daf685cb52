// Reading SentencePiece `tokenizer.model` files (a protobuf ModelProto, see
// google/sentencepiece src/sentencepiece_model.proto): the pieces with their
// scores and types, and the flags that change tokenization. Only the fields
// Wren needs are decoded; everything else is skipped by wire type.

public struct SentencePieceModel: Sendable {
    public var pieces: [String] = []
    public var scores: [Float] = []
    /// sentencepiece's piece types, which are also GGUF's token types:
    /// 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    public var types: [Int32] = []
    /// TrainerSpec.model_type: 1 unigram, 2 BPE, 3 word, 4 char.
    public var modelType = 1
    public var byteFallback = false
    public var addDummyPrefix = true
    public var removeExtraWhitespaces = true
    public var unkID = 0, bosID = 1, eosID = 2, padID = -1

    /// Parses `bytes`; `path` names the file in errors.
    public init(bytes: [UInt8], path: String) throws {
        var r = ProtoReader(bytes: bytes, path: path, end: bytes.count)
        while let (field, wire) = try r.key() {
            switch (field, wire) {
            case (1, 2):
                let end = try r.lengthEnd()
                var piece = "", score: Float = 0, type: Int32 = 1
                var pr = ProtoReader(bytes: bytes, path: path, start: r.pos, end: end)
                while let (f, w) = try pr.key() {
                    switch (f, w) {
                    case (1, 2): piece = try pr.string()
                    case (2, 5): score = Float(bitPattern: try pr.fixed32())
                    case (3, 0): type = Int32(truncatingIfNeeded: try pr.varint())
                    default: try pr.skip(w)
                    }
                }
                r.pos = end
                pieces.append(piece); scores.append(score); types.append(type)
            case (2, 2):
                let end = try r.lengthEnd()
                var tr = ProtoReader(bytes: bytes, path: path, start: r.pos, end: end)
                while let (f, w) = try tr.key() {
                    switch (f, w) {
                    case (3, 0): modelType = Int(try tr.varint())
                    case (35, 0): byteFallback = try tr.varint() != 0
                    case (40, 0): unkID = Int(Int32(truncatingIfNeeded: try tr.varint()))
                    case (41, 0): bosID = Int(Int32(truncatingIfNeeded: try tr.varint()))
                    case (42, 0): eosID = Int(Int32(truncatingIfNeeded: try tr.varint()))
                    case (43, 0): padID = Int(Int32(truncatingIfNeeded: try tr.varint()))
                    default: try tr.skip(w)
                    }
                }
                r.pos = end
            case (3, 2):
                let end = try r.lengthEnd()
                var nr = ProtoReader(bytes: bytes, path: path, start: r.pos, end: end)
                while let (f, w) = try nr.key() {
                    switch (f, w) {
                    case (3, 0): addDummyPrefix = try nr.varint() != 0
                    case (4, 0): removeExtraWhitespaces = try nr.varint() != 0
                    default: try nr.skip(w)
                    }
                }
                r.pos = end
            default:
                try r.skip(wire)
            }
        }
        guard !pieces.isEmpty else { throw FormatError.invalid(path: path, field: "pieces", reason: "no pieces (not a SentencePiece model?)") }
    }

    /// The model as Wren tokenizer metadata ("llama": SentencePiece-style BPE).
    public func tokenizerMetadata() throws -> TokenizerMetadata {
        func id(_ i: Int) -> Int? { i >= 0 && i < pieces.count ? i : nil }
        return TokenizerMetadata(model: "llama", pre: "default", tokens: pieces, scores: scores, tokenTypes: types,
                                 bosID: id(bosID), eosID: id(eosID), unkID: id(unkID), padID: id(padID),
                                 addBOS: true, addSpacePrefix: addDummyPrefix)
    }
}

/// Minimal protobuf wire-format reader with bounds checks.
struct ProtoReader {
    let bytes: [UInt8]
    let path: String
    var pos: Int
    let end: Int

    init(bytes: [UInt8], path: String, start: Int = 0, end: Int) {
        self.bytes = bytes; self.path = path; self.pos = start; self.end = end
    }

    func bad(_ why: String) -> FormatError { .invalid(path: path, field: "protobuf at byte \(pos)", reason: why) }

    mutating func varint() throws -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard pos < end else { throw bad("truncated varint") }
            let b = bytes[pos]; pos += 1
            v |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return v }
            shift += 7
            guard shift < 64 else { throw bad("varint too long") }
        }
    }

    mutating func key() throws -> (Int, Int)? {
        guard pos < end else { return nil }
        let k = try varint()
        return (Int(k >> 3), Int(k & 7))
    }

    mutating func fixed32() throws -> UInt32 {
        guard end - pos >= 4 else { throw bad("truncated fixed32") }
        let v = UInt32(bytes[pos]) | UInt32(bytes[pos + 1]) << 8 | UInt32(bytes[pos + 2]) << 16 | UInt32(bytes[pos + 3]) << 24
        pos += 4
        return v
    }

    mutating func lengthEnd() throws -> Int {
        let n = try varint()
        guard n <= UInt64(end - pos) else { throw bad("length \(n) runs past the end") }
        return pos + Int(n)
    }

    mutating func string() throws -> String {
        let e = try lengthEnd()
        guard let s = String(validating: bytes[pos..<e], as: UTF8.self) else { throw bad("invalid UTF-8") }
        pos = e
        return s
    }

    mutating func skip(_ wire: Int) throws {
        switch wire {
        case 0: _ = try varint()
        case 1: guard end - pos >= 8 else { throw bad("truncated fixed64") }; pos += 8
        case 2: pos = try lengthEnd()
        case 5: _ = try fixed32()
        default: throw bad("unsupported wire type \(wire)")
        }
    }
}
