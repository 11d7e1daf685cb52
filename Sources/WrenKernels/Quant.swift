// Conversions between floats and the stored types, through the dtype table
// (CWrenKernels: convert.c has the portable code, whose layouts and rounding
// follow ggml's quantize_row_*_ref / dequantize_row_*, so the bytes are
// GGUF's). The block layouts are described at the top of convert.c.

import CWrenKernels

public enum Quant {
    /// Quantizes (or converts) `count` floats into `dtype`'s bytes.
    /// - Parameters:
    ///   - src: `count` floats.
    ///   - dst: `dtype.byteCount(elements: count)` bytes.
    /// - Precondition: `count` is a multiple of `dtype.blockSize`.
    public static func quantize(_ dtype: DType, _ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, count: Int) {
        precondition(count % dtype.blockSize == 0, "count \(count) not a multiple of block \(dtype.blockSize)")
        dtype.traits.from_float(src, dst, Int64(count))
    }

    /// Expands `count` elements of `dtype` at `src` into floats at `dst`. `src` may be unaligned.
    public static func dequantize(_ dtype: DType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        precondition(count % dtype.blockSize == 0, "count \(count) not a multiple of block \(dtype.blockSize)")
        dtype.traits.to_float(src, dst, Int64(count))
    }

    /// Array convenience for tests and tools.
    public static func quantize(_ dtype: DType, _ values: [Float]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: dtype.byteCount(elements: values.count)!)
        values.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBytes { d in quantize(dtype, s.baseAddress!, d.baseAddress!, count: values.count) }
        }
        return out
    }

    /// Array convenience for tests and tools.
    public static func dequantize(_ dtype: DType, _ bytes: [UInt8], count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { s in
            out.withUnsafeMutableBufferPointer { d in dequantize(dtype, s.baseAddress!, d.baseAddress!, count: count) }
        }
        return out
    }

    /// Largest error a round trip through `dtype` may introduce for a block whose
    /// values span [lo, hi] (half a quantization step plus f16 rounding of the scale).
    public static func roundTripBound(_ dtype: DType, lo: Float, hi: Float) -> Float {
        let amax = max(abs(lo), abs(hi))
        switch dtype {
        case .f32: return 0
        case .f16: return amax * 0x1p-11 + 6e-8
        case .bf16: return amax * 0x1p-8
        case .q8_0: return amax / 127 * 0.5 + amax * 0x1p-10 + 1e-7
        case .q4_0: return amax / 8 + amax * 0x1p-10 + 1e-7   // the +8 side clamps to 7: up to one step
        case .q4_1: return (hi - lo) / 15 * 0.5 + (hi - lo) * 0x1p-10 + amax * 0x1p-11 + 1e-7
        case .q5_0: return amax / 16 + amax * 0x1p-10 + 1e-7  // the +16 side clamps to 15: up to one step
        case .q5_1: return (hi - lo) / 31 * 0.5 + (hi - lo) * 0x1p-10 + amax * 0x1p-11 + 1e-7
        // The k-quants (lo, hi: the span of a super-block of 256): their scale
        // searches may trade a clipped extreme for a finer step, so the bound
        // is one whole step of the coarsest sub-block, plus the 6-bit scales'
        // and f16 super-scales' rounding.
        case .q2_k: return (hi - lo) / 3 * 1.1 + 1e-7
        case .q3_k: return amax / 4 * 1.1 + 1e-7
        case .q4_k: return (hi - lo) / 15 * 1.1 + 1e-7
        case .q5_k: return (hi - lo) / 31 * 1.1 + 1e-7
        case .q6_k: return amax / 32 * 1.1 + 1e-7
        }
    }
}
