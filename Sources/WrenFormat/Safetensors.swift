// safetensors reading and writing (huggingface/safetensors: u64 little-endian
// header length N, N bytes of JSON {name: {dtype, shape, data_offsets:
// [begin, end]}, "__metadata__": {string: string}}, then the data; offsets
// are relative to the end of the header).

import Foundation
import WrenKernels

public struct SafetensorInfo: Sendable {
    public var name: String
    /// safetensors dtype string: "F32", "F16", "BF16", ...
    public var dtype: String
    public var shape: [Int]
    public var begin: Int
    public var end: Int

    /// The Wren dtype for F32/F16/BF16; nil for others.
    public var wrenDType: DType? {
        switch dtype {
        case "F32": return .f32
        case "F16": return .f16
        case "BF16": return .bf16
        default: return nil
        }
    }

    static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "F64", "I64", "U64": return 8
        case "F32", "I32", "U32": return 4
        case "F16", "BF16", "I16", "U16": return 2
        case "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2": return 1
        default: return nil
        }
    }
}

public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let mapping: MappedFile
    public let tensors: [SafetensorInfo]
    public let metadata: [String: String]
    let dataStart: Int

    public init(path: String) throws {
        self.path = path
        mapping = try MappedFile(path: path)
        var r = ByteReader(mapping.bytes, path: path)
        let n = try r.read(UInt64.self, "header length")
        guard n <= 100_000_000 else { throw FormatError.invalid(path: path, field: "header length", reason: "\(n) bytes is implausible") }
        let header = try r.slice(n, "JSON header")
        dataStart = r.offset
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(header), options: [])
        } catch {
            throw FormatError.invalid(path: path, field: "header", reason: "not valid JSON")
        }
        guard let dict = json as? [String: Any] else { throw FormatError.invalid(path: path, field: "header", reason: "not a JSON object") }
        if let keys = Checked.topLevelKeys(Array(header)), keys.count != dict.count {
            var seen = Set<String>()
            let dup = keys.first { !seen.insert($0).inserted } ?? "?"
            throw FormatError.invalid(path: path, field: "tensor \(dup)", reason: "duplicate name in the header")
        }
        let dataSize = mapping.size - dataStart
        var infos: [SafetensorInfo] = []
        var meta: [String: String] = [:]
        for (name, value) in dict {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw FormatError.wrongFieldType(path: path, field: "__metadata__", expected: "an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw FormatError.wrongFieldType(path: path, field: "__metadata__.\(k)", expected: "a string") }
                    meta[k] = s
                }
                continue
            }
            guard let e = value as? [String: Any] else { throw FormatError.wrongFieldType(path: path, field: name, expected: "an object") }
            guard let dt = e["dtype"] as? String else { throw FormatError.wrongFieldType(path: path, field: "\(name).dtype", expected: "a string") }
            guard let shapeAny = e["shape"] as? [Any], shapeAny.count <= 8, let shape = shapeAny.map(Checked.jsonInt) as? [Int],
                  shape.allSatisfy({ $0 >= 0 }) else {
                throw FormatError.wrongFieldType(path: path, field: "\(name).shape", expected: "an array of at most 8 non-negative integers")
            }
            guard let offs = e["data_offsets"] as? [Any], offs.count == 2, let b = Checked.jsonInt(offs[0]),
                  let en = Checked.jsonInt(offs[1]), b >= 0, en >= b else {
                throw FormatError.wrongFieldType(path: path, field: "\(name).data_offsets", expected: "[begin, end], integers with 0 <= begin <= end")
            }
            guard let es = SafetensorInfo.elementSize(dt) else {
                throw FormatError.unsupportedDType(path: path, dtype: dt, tensor: name)
            }
            let bytes = try Checked.elements(shape, bytesPerElement: es, path: path, field: "\(name).shape")
            guard bytes == en - b else {
                throw FormatError.invalid(path: path, field: "\(name).data_offsets", reason: "\(en - b) bytes for shape \(shape) of \(dt) (needs \(bytes))")
            }
            guard en <= dataSize else {
                throw FormatError.truncated(path: path, what: "tensor \(name) at \(b)..<\(en)", needed: UInt64(dataStart) + UInt64(en), available: UInt64(mapping.size))
            }
            infos.append(SafetensorInfo(name: name, dtype: dt, shape: shape, begin: b, end: en))
        }
        tensors = infos.sorted { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        // The data of distinct tensors must not overlap (safetensors' own rule: one buffer, no overlaps).
        for (x, y) in zip(tensors, tensors.dropFirst()) where y.begin < x.end {
            throw FormatError.invalid(path: path, field: "\(y.name).data_offsets", reason: "bytes \(y.begin)..<\(y.end) overlap tensor \(x.name) (\(x.begin)..<\(x.end))")
        }
        metadata = meta
    }

    public func data(_ t: SafetensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: mapping.bytes[(dataStart + t.begin)..<(dataStart + t.end)])
    }
}

public enum SafetensorsWriter {
    /// A tensor to stream from memory: `count` f32 values at `data`.
    public struct FloatSource {
        public var name: String
        public var shape: [Int]
        public var data: UnsafePointer<Float>
        public init(name: String, shape: [Int], data: UnsafePointer<Float>) { self.name = name; self.shape = shape; self.data = data }
    }

    /// Writes an F32 safetensors file straight from memory (no copy of the tensors),
    /// through a temporary file, fsync and rename.
    public static func write(_ tensors: [FloatSource], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for t in tensors {
            let n = 4 * t.shape.reduce(1, *)
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + n]] as [String: Any]
            offset += n
        }
        var json = Array((try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data())
        while (json.count + 8) % 8 != 0 { json.append(0x20) }
        var head: [UInt8] = []
        WrenMetaCodec.append(UInt64(json.count), to: &head)
        head += json
        let file = try AtomicWrite(path: path, overwrite: true)
        try file.write(head)
        for t in tensors { try file.write(UnsafeRawBufferPointer(start: t.data, count: 4 * t.shape.reduce(1, *))) }
        try file.commit()
    }

    public struct Entry {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var bytes: [UInt8]
        public init(name: String, dtype: String, shape: [Int], bytes: [UInt8]) {
            self.name = name; self.dtype = dtype; self.shape = shape; self.bytes = bytes
        }
    }

    /// Encodes a safetensors file: tensors in the given order, header padded with
    /// spaces to a multiple of 8 bytes.
    public static func encode(_ entries: [Entry], metadata: [String: String] = [:]) -> [UInt8] {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for e in entries {
            header[e.name] = ["dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, offset + e.bytes.count]] as [String: Any]
            offset += e.bytes.count
        }
        var json = Array((try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data())
        while (json.count + 8) % 8 != 0 { json.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + json.count + offset)
        WrenMetaCodec.append(UInt64(json.count), to: &out)
        out.append(contentsOf: json)
        for e in entries { out.append(contentsOf: e.bytes) }
        return out
    }
}
