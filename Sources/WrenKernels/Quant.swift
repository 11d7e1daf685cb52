// Block quantization, reference (scalar) versions. Layouts and rounding follow
// ggml's quantize_row_*_ref / dequantize_row_* (ggml-org/ggml src/ggml-quants.c)
// so that the bytes are identical to GGUF's:
//   q8_0: f16 d, int8 q[32];            x = d·q,          d = amax/127
//   q4_0: f16 d, u8 nib[16];            x = d·(q − 8),    d = max/−8 (max: signed value of largest |x|)
//   q4_1: f16 d, f16 m, u8 nib[16];     x = d·q + m,      d = (max−min)/15, m = min
// For the 4-bit types, element j sits in the low nibble of byte j and element
// j+16 in the high nibble.

public enum Quant {
    /// Quantizes (or converts) `count` floats into `dtype`'s bytes.
    /// - Parameters:
    ///   - src: `count` floats.
    ///   - dst: `dtype.byteCount(elements: count)` bytes.
    /// - Precondition: `count` is a multiple of `dtype.blockSize`.
    public static func quantize(_ dtype: DType, _ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, count: Int) {
        precondition(count % dtype.blockSize == 0, "count \(count) not a multiple of block \(dtype.blockSize)")
        switch dtype {
        case .f32: dst.copyMemory(from: src, byteCount: 4 * count)
        case .f16: HalfConvert.f32ToF16(src, dst, count: count)
        case .bf16: HalfConvert.f32ToBF16(src, dst, count: count)
        case .q8_0: for b in 0..<(count / 32) { quantizeBlockQ8_0(src + 32 * b, dst + 34 * b) }
        case .q4_0: for b in 0..<(count / 32) { quantizeBlockQ4_0(src + 32 * b, dst + 18 * b) }
        case .q4_1: for b in 0..<(count / 32) { quantizeBlockQ4_1(src + 32 * b, dst + 20 * b) }
        }
    }

    /// Expands `count` elements of `dtype` at `src` into floats at `dst`. `src` may be unaligned.
    public static func dequantize(_ dtype: DType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        precondition(count % dtype.blockSize == 0, "count \(count) not a multiple of block \(dtype.blockSize)")
        switch dtype {
        case .f32: UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: 4 * count)
        case .f16: HalfConvert.f16ToF32(src, dst, count: count)
        case .bf16: HalfConvert.bf16ToF32(src, dst, count: count)
        case .q8_0: for b in 0..<(count / 32) { dequantizeBlockQ8_0(src + 34 * b, dst + 32 * b) }
        case .q4_0: for b in 0..<(count / 32) { dequantizeBlockQ4_0(src + 18 * b, dst + 32 * b) }
        case .q4_1: for b in 0..<(count / 32) { dequantizeBlockQ4_1(src + 20 * b, dst + 32 * b) }
        }
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
        }
    }

    // MARK: blocks

    @inline(__always) static func truncClamp(_ v: Float, _ hi: Float) -> UInt8 {
        // C's MIN(hi, (int8_t)v) for v >= 0, made total for NaN and negatives.
        guard v > 0 else { return 0 }
        return UInt8(min(v, hi).rounded(.towardZero))
    }

    static func quantizeBlockQ8_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127
        let id: Float = d != 0 ? 1 / d : 0
        y.storeBytes(of: f16Bits(d), as: UInt16.self)
        for j in 0..<32 {
            let v = (x[j] * id).rounded()   // roundf: half away from zero
            let q = v.isNaN ? 0 : Int8(max(-128, min(127, v)))
            y.storeBytes(of: q, toByteOffset: 2 + j, as: Int8.self)
        }
    }

    static func dequantizeBlockQ8_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = floatFromF16(x.loadUnaligned(as: UInt16.self))
        for j in 0..<32 { y[j] = Float(x.load(fromByteOffset: 2 + j, as: Int8.self)) * d }
    }

    static func quantizeBlockQ4_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, maxv: Float = 0
        for j in 0..<32 where amax < abs(x[j]) { amax = abs(x[j]); maxv = x[j] }
        let d = maxv / -8
        let id: Float = d != 0 ? 1 / d : 0
        y.storeBytes(of: f16Bits(d), as: UInt16.self)
        for j in 0..<16 {
            let lo = truncClamp(x[j] * id + 8.5, 15)
            let hi = truncClamp(x[j + 16] * id + 8.5, 15)
            y.storeBytes(of: lo | (hi << 4), toByteOffset: 2 + j, as: UInt8.self)
        }
    }

    static func dequantizeBlockQ4_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = floatFromF16(x.loadUnaligned(as: UInt16.self))
        for j in 0..<16 {
            let b = x.load(fromByteOffset: 2 + j, as: UInt8.self)
            y[j] = Float(Int(b & 15) - 8) * d
            y[j + 16] = Float(Int(b >> 4) - 8) * d
        }
    }

    static func quantizeBlockQ4_1(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var lo = Float.greatestFiniteMagnitude, hi = -Float.greatestFiniteMagnitude
        for j in 0..<32 {
            if x[j] < lo { lo = x[j] }
            if x[j] > hi { hi = x[j] }
        }
        let d = (hi - lo) / 15
        let id: Float = d != 0 ? 1 / d : 0
        y.storeBytes(of: f16Bits(d), as: UInt16.self)
        y.storeBytes(of: f16Bits(lo), toByteOffset: 2, as: UInt16.self)
        for j in 0..<16 {
            let a = truncClamp((x[j] - lo) * id + 0.5, 15)
            let b = truncClamp((x[j + 16] - lo) * id + 0.5, 15)
            y.storeBytes(of: a | (b << 4), toByteOffset: 4 + j, as: UInt8.self)
        }
    }

    static func dequantizeBlockQ4_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = floatFromF16(x.loadUnaligned(as: UInt16.self))
        let m = floatFromF16(x.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        for j in 0..<16 {
            let b = x.load(fromByteOffset: 4 + j, as: UInt8.self)
            y[j] = Float(b & 15) * d + m
            y[j + 16] = Float(b >> 4) * d + m
        }
    }
}
