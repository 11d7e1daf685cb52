// A copy of a base .wren with some tensors replaced by f32 values (what a full
// finetune writes): replaced 2-D tensors are stored as the chosen dtype (or its
// fallback where rows are not whole blocks), 1-D ones as f32; every other tensor
// is copied after its checksum is checked.

import WrenKernels

public enum ModelWriter {
    /// Writes `base` to `path` with the tensors named in `replacing` taken from those f32
    /// values (each pointing at the tensor's element count of floats).
    public static func write(base: WrenFile, replacing: [String: UnsafePointer<Float>], type: DType, to path: String, overwrite: Bool) throws {
        var pending: [PendingTensor] = []
        for info in base.tensors {
            let t = try base.verifiedTensor(info.name)
            if let values = replacing[info.name] {
                let dt = info.shape.count == 1 ? DType.f32 : QuantScheme.fallback(type, rowLength: info.shape.last!)
                let n = info.elementCount
                pending.append(PendingTensor(name: info.name, dtype: dt, shape: info.shape) { buf in
                    Quant.quantize(dt, values, buf.baseAddress!, count: n)
                })
            } else {
                let data = t.data
                pending.append(PendingTensor(name: info.name, dtype: info.dtype, shape: info.shape) { buf in
                    buf.copyMemory(from: data)
                })
            }
        }
        try WrenWriter.write(to: path, metadata: base.metadata, tensors: pending, options: .init(overwrite: overwrite))
    }
}
