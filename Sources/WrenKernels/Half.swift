// f16 and bf16 <-> f32 conversion, element-wise over buffers.
import CWrenKernels

// f16 uses Swift's Float16 (IEEE binary16, round-to-nearest-even).
// bf16 rounds to nearest even and keeps NaNs quiet, as ggml's
// ggml_compute_fp32_to_bf16 does, so our bytes match GGUF's.

/// Rounds a Float to bf16 bits (round-to-nearest-even; NaN stays NaN).
@inlinable public func bf16Bits(_ x: Float) -> UInt16 {
    let u = x.bitPattern
    if (u & 0x7fff_ffff) > 0x7f80_0000 {          // NaN: force quiet
        return UInt16(truncatingIfNeeded: (u >> 16) | 64)
    }
    return UInt16(truncatingIfNeeded: (u &+ (0x7fff &+ ((u >> 16) & 1))) >> 16)
}

/// Expands bf16 bits to Float (exact).
@inlinable public func floatFromBF16(_ b: UInt16) -> Float {
    Float(bitPattern: UInt32(b) << 16)
}

/// Expands f16 bits to Float (exact).
@inlinable public func floatFromF16(_ h: UInt16) -> Float {
    Float(Float16(bitPattern: h))
}

/// Rounds a Float to f16 bits (round-to-nearest-even).
@inlinable public func f16Bits(_ x: Float) -> UInt16 {
    Float16(x).bitPattern
}

public enum HalfConvert {
    /// dst[i] = f32(src[i]) for `count` little-endian f16 values. src may be unaligned.
    /// (CWrenKernels: F16C when the CPU has it, exact bit manipulation otherwise.)
    public static func f16ToF32(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        wren_f16_to_f32(src, dst, Int32(count))
    }

    /// dst (f16 bytes) = round(src[i]) for `count` values.
    public static func f32ToF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, count: Int) {
        for i in 0..<count {
            dst.storeBytes(of: f16Bits(src[i]), toByteOffset: 2 * i, as: UInt16.self)
        }
    }

    public static func bf16ToF32(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count {
            dst[i] = floatFromBF16(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        }
    }

    public static func f32ToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, count: Int) {
        for i in 0..<count {
            dst.storeBytes(of: bf16Bits(src[i]), toByteOffset: 2 * i, as: UInt16.self)
        }
    }
}
