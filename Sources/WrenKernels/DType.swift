// Element types of stored tensors. The raw values are ggml's type ids, so a
// GGUF tensor's type maps to Wren's without a table, and quantized blocks are
// byte-compatible with GGUF's (see formats/wren.md, "Data types"). What each
// type is made of, and its kernels, is one row of the C dtype table.

import CWrenKernels

/// A tensor element type: plain floats or a block-quantized format.
public enum DType: UInt32, CaseIterable, Sendable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q2_k = 10
    case q3_k = 11
    case q4_k = 12
    case q5_k = 13
    case q6_k = 14
    case bf16 = 30

    /// This type's row of the dtype table (CWrenKernels' `wren_type`): block
    /// geometry, conversions and matrix kernels, for this CPU. Every case has
    /// a row (DTypeTableTests checks), so the unwrap cannot fail.
    public var traits: wren_type_traits { wren_type(rawValue)!.pointee }

    /// Elements per block (1 for plain float types).
    public var blockSize: Int { Int(traits.block) }

    /// Bytes per block.
    public var blockBytes: Int { Int(traits.block_bytes) }

    public var isQuantized: Bool { blockSize > 1 }

    /// Lower-case name as used on the command line and in `wren inspect` ("q4_1").
    public var name: String { String(cString: traits.name) }

    public var description: String { name }

    /// Parses a name such as "q8_0" or "F16" (case-insensitive).
    public init?(name: String) {
        guard let t = DType.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = t
    }

    /// Bytes needed for `count` elements, or nil when `count` is not a whole
    /// number of blocks or the size overflows.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : bytes
    }
}

/// Names of ggml type ids Wren does not store, for error messages
/// ("unsupported dtype iq4_xs in tensor blk.0.ffn_down.weight").
public func ggmlTypeName(_ id: UInt32) -> String {
    if let t = DType(rawValue: id) { return t.name }
    let names: [UInt32: String] = [
        9: "q8_1", 15: "q8_K", 16: "iq2_xxs", 17: "iq2_xs", 18: "iq3_xxs", 19: "iq1_s",
        20: "iq4_nl", 21: "iq3_s", 22: "iq2_s", 23: "iq4_xs", 24: "i8", 25: "i16", 26: "i32",
        27: "i64", 28: "f64", 29: "iq1_m", 34: "tq1_0", 35: "tq2_0", 39: "mxfp4",
    ]
    return names[id] ?? "ggml type \(id)"
}
