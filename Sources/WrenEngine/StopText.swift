// Generated text under stop strings, shared by every generation loop (Generator,
// the batch scheduler and so the server): pieces are appended as tokens decode;
// the text is cut at the first stop string, and while its end could still be
// the start of one, that end is held back, so a stream never shows part of a
// stop string. Matching is on UTF-8 bytes (as llama.cpp's), so a release always
// ends on a character boundary: a held-back suffix equals a stop string's first
// bytes, which begin with a lead byte.

/// Generated text, cut at stop strings, released as it becomes certain.
public struct StopText: Sendable {
    public let stops: [[UInt8]]
    private var bytes: [UInt8] = []
    private var released = 0
    /// Set once a stop string appeared (the text ends before it).
    public private(set) var stopped = false

    public init(stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.utf8) }
    }

    /// Everything kept so far (released or held back).
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Appends a decoded piece (whole characters); returns the text now certain.
    /// After a stop string appears, the text ends before it and `stopped` is set.
    public mutating func append(_ piece: String) -> String {
        guard !stopped else { return "" }
        let before = bytes.count
        bytes.append(contentsOf: piece.utf8)
        var safe = bytes.count
        if !stops.isEmpty {
            // Only a match that reaches into the new piece is new.
            var cut: Int? = nil
            for s in stops {
                let from = max(0, before - s.count + 1)
                if let at = Self.find(s, in: bytes, from: from), cut == nil || at < cut! { cut = at }
            }
            if let cut {
                bytes.removeSubrange(cut...)
                stopped = true
                return release(upTo: cut)
            }
            for s in stops {
                for k in stride(from: min(s.count - 1, bytes.count), to: 0, by: -1)
                where bytes[(bytes.count - k)...].elementsEqual(s[..<k]) {
                    safe = min(safe, bytes.count - k)
                    break
                }
            }
        }
        return release(upTo: safe)
    }

    /// Appends the decoder's last bytes (not checked for stop strings) and releases everything.
    public mutating func finish(_ tail: String = "") -> String {
        guard !stopped else { return "" }
        bytes.append(contentsOf: tail.utf8)
        return release(upTo: bytes.count)
    }

    private mutating func release(upTo end: Int) -> String {
        guard end > released else { return "" }
        let s = String(decoding: bytes[released..<end], as: UTF8.self)
        released = end
        return s
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], from: Int) -> Int? {
        guard needle.count <= hay.count else { return nil }
        var i = from
        while i + needle.count <= hay.count {
            if hay[i] == needle[0], hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}
