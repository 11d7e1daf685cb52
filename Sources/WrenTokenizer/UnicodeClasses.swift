// Character classes the pre-tokenizer regexes use (\p{L}, \p{N}, \s), and
// GPT-2's byte-to-unicode table for byte-level BPE.

/// The class of a Unicode scalar as the pre-tokenizer patterns see it.
@usableFromInline enum CharClass: UInt8, Sendable {
    case letter      // \p{L}: Lu Ll Lt Lm Lo
    case number      // \p{N}: Nd Nl No
    case space       // \s: the White_Space property (includes \r \n \t)
    case other
}

@usableFromInline let asciiClasses: [CharClass] = (0..<128).map { i -> CharClass in
    let u = Unicode.Scalar(UInt8(i))
    return classify(u)
}

@inline(__always) func charClass(_ u: Unicode.Scalar) -> CharClass {
    u.value < 128 ? asciiClasses[Int(u.value)] : classify(u)
}

func classify(_ u: Unicode.Scalar) -> CharClass {
    let p = u.properties
    if p.isWhitespace { return .space }
    switch p.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
    case .decimalNumber, .letterNumber, .otherNumber: return .number
    default: return .other
    }
}

/// GPT-2's reversible byte → printable-unicode mapping (bytes_to_unicode in
/// openai/gpt-2 encoder.py): printable Latin-1 bytes map to themselves, the
/// other 68 bytes to U+0100 onwards, in byte order.
public enum ByteUnicode {
    public static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable { table[b] = Unicode.Scalar(UInt32(b))! } else {
                table[b] = Unicode.Scalar(256 + n)!
                n += 1
            }
        }
        return table
    }()

    /// Scalar value → byte, for the 256 scalars in `byteToScalar` (-1 elsewhere), indexed up to 0x143.
    public static let scalarToByte: [Int16] = {
        var t = [Int16](repeating: -1, count: 0x144)
        for (b, s) in byteToScalar.enumerated() { t[Int(s.value)] = Int16(b) }
        return t
    }()

    /// The byte-level string for raw bytes.
    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    /// Raw bytes of a byte-level string, or nil when it holds a scalar outside the table.
    public static func decode(_ s: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(s.unicodeScalars.count)
        for u in s.unicodeScalars {
            guard u.value < 0x144, scalarToByte[Int(u.value)] >= 0 else { return nil }
            out.append(UInt8(scalarToByte[Int(u.value)]))
        }
        return out
    }
}
