// Pre-tokenizers: split text into the pieces that BPE merges within, by the
// regexes of the GPT-2, LLaMA-3, Qwen2 and SmolLM2 tokenizers, written as
// hand scanners (no regex engine). Each `match*` returns the end of the
// alternative the regex would choose at `i`, in the regex's order of
// alternatives, including its backtracking behaviour for `\s+(?!\S)`.
//
//  GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//  LLaMA-3:(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//  Qwen2:  as LLaMA-3 with \p{N} (one digit per piece)
//  SmolLM2 (llama.cpp "smollm", HF Digits(individual) + ByteLevel): every \p{N} alone, then GPT-2 on the rest.

public enum PreTokenizer: Sendable, Equatable {
    case gpt2
    case llama3
    case qwen2
    /// Each digit isolated, then GPT-2 (SmolLM, StarCoder and relatives).
    case digitsThenGPT2

    /// The pre-tokenizer for a llama.cpp pre-tokenizer name; unknown names get GPT-2's.
    public init(name: String) {
        switch name {
        case "llama-bpe", "llama3", "llama-v3", "llama3.1", "dbrx", "smaug-bpe", "tekken": self = .llama3
        case "qwen2", "deepseek-r1-qwen": self = .qwen2
        case "smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva-7b": self = .digitsThenGPT2
        default: self = .gpt2
        }
    }

    /// Appends the pieces of `s[range]` to `out` as ranges of scalar indices.
    func split(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ cls: UnsafeBufferPointer<CharClass>, _ range: Range<Int>, into out: inout [Range<Int>]) {
        switch self {
        case .digitsThenGPT2:
            var start = range.lowerBound
            for i in range where cls[i] == .number {
                if start < i { splitGPT2(s, cls, start..<i, &out) }
                out.append(i..<(i + 1))
                start = i + 1
            }
            if start < range.upperBound { splitGPT2(s, cls, start..<range.upperBound, &out) }
        case .gpt2:
            splitGPT2(s, cls, range, &out)
        case .llama3, .qwen2:
            let maxDigits = self == .qwen2 ? 1 : 3
            var i = range.lowerBound
            while i < range.upperBound {
                let e = matchLlama3(s, cls, i, range.upperBound, maxDigits)
                out.append(i..<e)
                i = e
            }
        }
    }

    private func splitGPT2(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ cls: UnsafeBufferPointer<CharClass>, _ range: Range<Int>, _ out: inout [Range<Int>]) {
        var i = range.lowerBound
        while i < range.upperBound {
            let e = matchGPT2(s, cls, i, range.upperBound)
            out.append(i..<e)
            i = e
        }
    }

    @inline(__always) static func isCRLF(_ u: Unicode.Scalar) -> Bool { u == "\r" || u == "\n" }

    /// 's 't 're 've 'm 'll 'd at i (case-insensitive for LLaMA-3); returns the end or nil.
    @inline(__always) func contraction(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ i: Int, _ n: Int, caseless: Bool) -> Int? {
        guard s[i] == "'", i + 1 < n else { return nil }
        func low(_ u: Unicode.Scalar) -> UInt32 {
            caseless && u.value >= 65 && u.value <= 90 ? u.value + 32 : u.value
        }
        let a = low(s[i + 1])
        if a == 115 || a == 116 || a == 109 || a == 100 { return i + 2 }          // s t m d
        if i + 2 < n {
            let b = low(s[i + 2])
            if (a == 114 && b == 101) || (a == 118 && b == 101) || (a == 108 && b == 108) { return i + 3 }  // re ve ll
        }
        return nil
    }

    func matchGPT2(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ cls: UnsafeBufferPointer<CharClass>, _ i: Int, _ n: Int) -> Int {
        if let e = contraction(s, i, n, caseless: false) { return e }
        // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
        let j = s[i] == " " && i + 1 < n ? i + 1 : i
        let c = cls[j]
        if c != .space || j != i {
            if c != .space {
                var e = j + 1
                while e < n && cls[e] == c { e += 1 }
                return e
            }
        }
        // \s+(?!\S) | \s+
        var e = i
        while e < n && cls[e] == .space { e += 1 }
        if e == i { return i + 1 }
        if e < n && e - 1 > i { return e - 1 }
        return e
    }

    func matchLlama3(_ s: UnsafeBufferPointer<Unicode.Scalar>, _ cls: UnsafeBufferPointer<CharClass>, _ i: Int, _ n: Int, _ maxDigits: Int) -> Int {
        if let e = contraction(s, i, n, caseless: true) { return e }
        let c = cls[i]
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if c == .letter {
            var e = i + 1
            while e < n && cls[e] == .letter { e += 1 }
            return e
        }
        if c != .number && !Self.isCRLF(s[i]) && i + 1 < n && cls[i + 1] == .letter {
            var e = i + 2
            while e < n && cls[e] == .letter { e += 1 }
            return e
        }
        // \p{N}{1,maxDigits}
        if c == .number {
            var e = i + 1
            while e < n && e - i < maxDigits && cls[e] == .number { e += 1 }
            return e
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        let j = s[i] == " " && i + 1 < n ? i + 1 : i
        if cls[j] == .other {
            var e = j + 1
            while e < n && cls[e] == .other { e += 1 }
            while e < n && Self.isCRLF(s[e]) { e += 1 }
            return e
        }
        // \s*[\r\n]+ : ends after the last CR/LF of the whitespace run
        var e = i
        var lastNL = -1
        while e < n && cls[e] == .space {
            if Self.isCRLF(s[e]) { lastNL = e }
            e += 1
        }
        if e == i { return i + 1 }
        if lastNL >= 0 { return lastNL + 1 }
        // \s+(?!\S) | \s+
        if e < n && e - 1 > i { return e - 1 }
        return e
    }
}
