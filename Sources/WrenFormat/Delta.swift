// Delta weights (formats/delta.md): a tuned model stored as its difference from
// the base it came from, bound to that base by the SHA-256 of every base tensor,
// and to the result by the SHA-256 of every target tensor. The file is the .wren
// container under its own magic; the payload of each target tensor is one
// container tensor, encoded as `delta.target.encodings` says.

import Foundation
import WrenKernels

public enum DeltaEncoding: String, Sendable, CaseIterable {
    /// Target bytes equal the base's: no payload.
    case same
    /// XOR of the bit patterns, byte planes shuffled (floats) — exact.
    case xor
    /// Wrapping integer difference of the bit patterns, byte planes shuffled (floats) — exact.
    case sub
    /// The target's blocks where they differ from the base's (quantized) — exact.
    case blocks
    /// The target tensor itself (new tensors, changed dtype or shape) — exact.
    case whole
    /// tuned − base in f32, as q8_0 blocks — lossy.
    case q8
}

/// What `wren delta make --encoding` asks for.
public enum DeltaKind: String, Sendable, CaseIterable {
    case exact, q8
}

/// One tensor as a delta records it.
public struct DeltaRecord: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var sha256: String
}

public struct DeltaTensorReport: Sendable {
    public var name: String
    public var encoding: DeltaEncoding
    /// Bytes of the target tensor, and of its payload as stored (after zstd).
    public var targetBytes: Int
    public var storedBytes: Int
    /// Exact encodings tried for a changed tensor: payload bytes after zstd (blocks: plus its index list).
    public var candidates: [DeltaEncoding: Int] = [:]
}

public struct DeltaMakeReport: Sendable {
    public var tensors: [DeltaTensorReport]
    public var fileSize: Int
    public var targetBytes: Int { tensors.reduce(0) { $0 + $1.targetBytes } }
    /// q8: the largest and the mean absolute difference between the reconstructed and the
    /// tuned values, over the q8-encoded tensors (0 for exact deltas).
    public var maxError: Double
    public var meanError: Double
    public var baseIdentity: String
}

public struct DeltaApplyReport: Sendable {
    public var tensors: Int
    /// Tensors whose reconstruction was checked against the target's SHA-256.
    public var verified: Int
    /// --force-base: base tensors that differ from the ones the delta was made for.
    public var differingBaseTensors: Int
}

public enum Delta {
    public static let version: UInt32 = 1
    static let zstdLevel: Int32 = 3

    // MARK: encodings

    /// Bytes per element whose byte planes the float encodings shuffle (1: no shuffle).
    static func planeWidth(_ t: DType) -> Int { t.isQuantized ? 1 : t.blockBytes }

    /// `target ⊕ base` or `target − base` (per `width`-byte little-endian word, wrapping), shuffled
    /// into byte planes: plane p holds byte p of every word.
    static func difference(_ target: UnsafeRawBufferPointer, _ base: UnsafeRawBufferPointer, width: Int, subtract: Bool) -> [UInt8] {
        precondition(target.count == base.count && target.count % width == 0)
        let n = target.count / width
        var out = [UInt8](repeating: 0, count: target.count)
        out.withUnsafeMutableBytes { o in
            for i in 0..<n {
                var borrow = 0
                for p in 0..<width {
                    let a = Int(target[i * width + p]), b = Int(base[i * width + p])
                    let v: Int
                    if subtract {
                        var d = a - b - borrow
                        borrow = d < 0 ? 1 : 0
                        if d < 0 { d += 256 }
                        v = d
                    } else {
                        v = a ^ b
                    }
                    o[p * n + i] = UInt8(v)
                }
            }
        }
        return out
    }

    /// The inverse of `difference`: target bytes from the payload and the base.
    static func undifference(_ payload: UnsafeRawBufferPointer, _ base: UnsafeRawBufferPointer, width: Int, subtract: Bool,
                             into out: UnsafeMutableRawBufferPointer) {
        let n = payload.count / width
        for i in 0..<n {
            var carry = 0
            for p in 0..<width {
                let d = Int(payload[p * n + i]), b = Int(base[i * width + p])
                if subtract {
                    let s = d + b + carry
                    carry = s >> 8
                    out[i * width + p] = UInt8(s & 255)
                } else {
                    out[i * width + p] = UInt8(d ^ b)
                }
            }
        }
    }

    /// Indices of the blocks of `dtype` where `target` and `base` differ.
    static func changedBlocks(_ target: UnsafeRawBufferPointer, _ base: UnsafeRawBufferPointer, dtype: DType) -> [UInt32] {
        let bb = dtype.blockBytes, n = target.count / bb
        var out: [UInt32] = []
        for i in 0..<n where memcmp(target.baseAddress! + i * bb, base.baseAddress! + i * bb, bb) != 0 { out.append(UInt32(i)) }
        return out
    }

    static func floats(_ b: UnsafeRawBufferPointer, _ t: DType, count: Int) -> [Float] {
        var x = [Float](repeating: 0, count: count)
        x.withUnsafeMutableBufferPointer { Quant.dequantize(t, b.baseAddress!, $0.baseAddress!, count: count) }
        return x
    }

    static func compressedSize(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { Zstd.compress($0, level: zstdLevel).count }
    }

    // MARK: make

    struct Plan {
        var encoding: DeltaEncoding
        var blocks: [UInt32] = []
        var estimate = 0
        var candidates: [DeltaEncoding: Int] = [:]
    }

    /// Writes the delta that turns `base` into `tuned` (each a .wren, GGUF or Hugging Face
    /// directory) to `path`, atomically.
    public static func make(base basePath: String, tuned tunedPath: String, to path: String, kind: DeltaKind = .exact,
                            overwrite: Bool = false, progress: ((WriteProgress) -> Void)? = nil) throws -> DeltaMakeReport {
        try checkOutputPath(path, overwrite: overwrite)
        let base = try StoredModel.open(basePath)
        let tuned = try StoredModel.open(tunedPath)
        var baseRecords: [DeltaRecord] = []
        for (i, e) in base.entries.enumerated() {
            baseRecords.append(DeltaRecord(name: e.name, dtype: e.dtype, shape: e.shape, sha256: try base.sha256(i)))
        }
        var targetRecords: [DeltaRecord] = []
        var plans: [Plan] = []
        var sumErr = 0.0, maxErr = 0.0, errCount = 0
        let totalBytes = tuned.entries.reduce(0) { $0 + $1.byteCount }
        var planned = 0
        for (i, e) in tuned.entries.enumerated() {
            planned += e.byteCount
            progress?(WriteProgress(tensorsDone: i + 1, tensorCount: tuned.entries.count, name: "planning " + e.name,
                                    bytesDone: planned, bytesTotal: totalBytes))
            let sha = try tuned.sha256(i)
            targetRecords.append(DeltaRecord(name: e.name, dtype: e.dtype, shape: e.shape, sha256: sha))
            guard let bi = base.index(of: e.name), base.entries[bi].shape == e.shape else {
                plans.append(Plan(encoding: .whole)); continue
            }
            let be = base.entries[bi]
            if be.dtype == e.dtype, baseRecords[bi].sha256 == sha { plans.append(Plan(encoding: .same)); continue }
            let n = e.shape.reduce(1, *)
            if kind == .q8, e.shape.count >= 2, e.shape.last! % DType.q8_0.blockSize == 0 {
                // Measure what apply will rebuild: base + dequantized q8_0 delta, stored as the target's dtype.
                try tuned.withBytes(i) { t in
                    try base.withBytes(bi) { b in
                        let tv = floats(t, e.dtype, count: n), bv = floats(b, be.dtype, count: n)
                        let d = Quant.quantize(.q8_0, zip(tv, bv).map { $0 - $1 })
                        let dq = d.withUnsafeBytes { floats($0, .q8_0, count: n) }
                        let rebuilt = Quant.quantize(e.dtype, zip(bv, dq).map { $0 + $1 })
                        let rv = rebuilt.withUnsafeBytes { floats($0, e.dtype, count: n) }
                        for j in 0..<n {
                            let err = Double(abs(rv[j] - tv[j]))
                            sumErr += err
                            maxErr = max(maxErr, err.isNaN ? .infinity : err)
                        }
                        errCount += n
                    }
                }
                plans.append(Plan(encoding: .q8)); continue
            }
            guard be.dtype == e.dtype else { plans.append(Plan(encoding: .whole)); continue }
            // Exact: the smallest of the candidate encodings after zstd.
            let plan: Plan = try tuned.withBytes(i) { t in
                try base.withBytes(bi) { b in
                    var best = Plan(encoding: .whole, estimate: compressedSize(Array(t)))
                    var tried: [DeltaEncoding: Int] = [.whole: best.estimate]
                    let w = planeWidth(e.dtype)
                    let x = compressedSize(difference(t, b, width: w, subtract: false))
                    tried[.xor] = x
                    if x < best.estimate { best = Plan(encoding: .xor, estimate: x) }
                    if !e.dtype.isQuantized {
                        let s = compressedSize(difference(t, b, width: w, subtract: true))
                        tried[.sub] = s
                        if s < best.estimate { best = Plan(encoding: .sub, estimate: s) }
                    } else if t.count / e.dtype.blockBytes <= Int(UInt32.max) {
                        let blocks = changedBlocks(t, b, dtype: e.dtype)
                        var payload: [UInt8] = []
                        payload.reserveCapacity(blocks.count * e.dtype.blockBytes)
                        for k in blocks {
                            let o = Int(k) * e.dtype.blockBytes
                            payload.append(contentsOf: UnsafeRawBufferPointer(rebasing: t[o..<(o + e.dtype.blockBytes)]))
                        }
                        let s = compressedSize(payload) + 4 * blocks.count
                        tried[.blocks] = s
                        if s < best.estimate { best = Plan(encoding: .blocks, blocks: blocks, estimate: s) }
                    }
                    best.candidates = tried
                    return best
                }
            }
            plans.append(plan)
        }

        var meta = Metadata()
        meta["delta.version"] = .uint32(version)
        meta["delta.kind"] = .string(kind.rawValue)
        meta["delta.created_by"] = .string(ModelConverter.converterVersion)
        meta["delta.base.identity"] = .string(base.identity)
        meta["delta.target.identity"] = .string(tuned.identity)
        func put(_ prefix: String, _ records: [DeltaRecord]) {
            meta["\(prefix).tensor_names"] = .array(MetaArray(strings: records.map(\.name)))
            meta["\(prefix).tensor_dtypes"] = .array(MetaArray(strings: records.map(\.dtype.name)))
            meta["\(prefix).tensor_shapes"] = .array(MetaArray(strings: records.map { $0.shape.map(String.init).joined(separator: ",") }))
            meta["\(prefix).tensor_sha256"] = .array(MetaArray(strings: records.map(\.sha256)))
        }
        put("delta.base", baseRecords)
        put("delta.target", targetRecords)
        meta["delta.target.encodings"] = .array(MetaArray(strings: plans.map(\.encoding.rawValue)))
        for (i, p) in plans.enumerated() where p.encoding == .blocks {
            var raw: [UInt8] = []
            raw.reserveCapacity(4 * p.blocks.count)
            for k in p.blocks { WrenMetaCodec.append(k, to: &raw) }
            meta["delta.blocks.\(targetRecords[i].name)"] = .array(MetaArray(elementType: .uint32, count: p.blocks.count, raw: raw))
        }
        if kind == .q8 {
            meta["delta.q8.max_error"] = .float64(maxErr)
            meta["delta.q8.mean_error"] = .float64(errCount > 0 ? sumErr / Double(errCount) : 0)
        }
        for (k, v) in tuned.metadata.entries { meta["target.\(k)"] = v }

        var pending: [PendingTensor] = []
        for (i, p) in plans.enumerated() where p.encoding != .same {
            let e = tuned.entries[i]
            let bi = base.index(of: e.name)
            switch p.encoding {
            case .same: break
            case .whole:
                pending.append(PendingTensor(name: e.name, dtype: e.dtype, shape: e.shape) { dst in
                    try tuned.withBytes(i) { dst.copyMemory(from: $0) }
                })
            case .xor, .sub:
                pending.append(PendingTensor(name: e.name, dtype: e.dtype, shape: e.shape) { dst in
                    try tuned.withBytes(i) { t in
                        try base.withBytes(bi!) { b in
                            difference(t, b, width: planeWidth(e.dtype), subtract: p.encoding == .sub).withUnsafeBytes { dst.copyMemory(from: $0) }
                        }
                    }
                })
            case .blocks:
                pending.append(PendingTensor(name: e.name, dtype: e.dtype, shape: [p.blocks.count * e.dtype.blockSize]) { dst in
                    try tuned.withBytes(i) { t in
                        let bb = e.dtype.blockBytes
                        for (j, k) in p.blocks.enumerated() {
                            UnsafeMutableRawBufferPointer(rebasing: dst[(j * bb)..<((j + 1) * bb)])
                                .copyMemory(from: UnsafeRawBufferPointer(rebasing: t[(Int(k) * bb)..<((Int(k) + 1) * bb)]))
                        }
                    }
                })
            case .q8:
                let be = base.entries[bi!]
                pending.append(PendingTensor(name: e.name, dtype: .q8_0, shape: e.shape) { dst in
                    let n = e.shape.reduce(1, *)
                    try tuned.withBytes(i) { t in
                        try base.withBytes(bi!) { b in
                            let tv = floats(t, e.dtype, count: n), bv = floats(b, be.dtype, count: n)
                            Quant.quantize(.q8_0, zip(tv, bv).map { $0 - $1 }).withUnsafeBytes { dst.copyMemory(from: $0) }
                        }
                    }
                })
            }
        }
        guard !pending.contains(where: { $0.shape.reduce(1, *) == 0 }) else {
            throw FormatError.invalid(path: path, field: "delta", reason: "an empty payload (internal error)")
        }
        var options = WrenWriteOptions(compress: true, level: zstdLevel, overwrite: overwrite)
        options.magic = WrenFormatConstants.deltaMagic
        let infos = try WrenWriter.write(to: path, metadata: meta, tensors: pending, options: options, progress: progress)
        var stored: [String: Int] = [:]
        for info in infos { stored[info.name] = info.storedSize }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        let reports = targetRecords.enumerated().map { i, r in
            DeltaTensorReport(name: r.name, encoding: plans[i].encoding, targetBytes: tuned.entries[i].byteCount,
                              storedBytes: (stored[r.name] ?? 0) + 4 * plans[i].blocks.count, candidates: plans[i].candidates)
        }
        return DeltaMakeReport(tensors: reports, fileSize: size, maxError: maxErr,
                               meanError: errCount > 0 ? sumErr / Double(errCount) : 0, baseIdentity: base.identity)
    }

    // MARK: apply

    /// Adds the delta at `deltaPath` to `basePath` and writes the target .wren to `path`,
    /// atomically. The base must be the one the delta was made for, tensor for tensor
    /// (SHA-256), unless `forceBase`; every exactly encoded tensor is checked against the
    /// target's SHA-256 before the output is committed.
    public static func apply(delta deltaPath: String, base basePath: String, to path: String, forceBase: Bool = false,
                             overwrite: Bool = false, progress: ((WriteProgress) -> Void)? = nil) throws -> DeltaApplyReport {
        try checkOutputPath(path, overwrite: overwrite)
        let delta = try DeltaFile(path: deltaPath)
        try delta.file.verify()
        let base = try StoredModel.open(basePath)
        // The base must be the delta's, tensor for tensor.
        var differing: Set<String> = []
        var firstProblem: String?
        for r in delta.base {
            var problem: String?
            if let bi = base.index(of: r.name) {
                let e = base.entries[bi]
                if e.dtype != r.dtype {
                    problem = "is \(e.dtype.name), the delta's base has \(r.dtype.name)"
                } else if e.shape != r.shape {
                    problem = "has shape \(e.shape), the delta's base \(r.shape)"
                } else if try base.sha256(bi) != r.sha256 {
                    problem = "differs (SHA-256)"
                }
            } else {
                problem = "is missing"
            }
            if let problem {
                differing.insert(r.name)
                if firstProblem == nil { firstProblem = "tensor \(r.name) \(problem)" }
            }
        }
        let recorded = Set(delta.base.map(\.name))
        for e in base.entries where !recorded.contains(e.name) {
            differing.insert(e.name)
            if firstProblem == nil { firstProblem = "tensor \(e.name) is not in the delta's base" }
        }
        if let firstProblem, !forceBase {
            throw FormatError.invalid(path: basePath, field: "base",
                                      reason: "\(deltaPath) was made for \(delta.baseIdentity); \(firstProblem)"
                                          + (differing.count > 1 ? " (\(differing.count) tensors differ)" : "")
                                          + "; --force-base applies it anyway")
        }
        var verified = 0
        var pending: [PendingTensor] = []
        for (i, r) in delta.target.enumerated() {
            try delta.checkBase(i, base)
            let check = delta.encodings[i] != .q8 && !differing.contains(r.name)
            if check { verified += 1 }
            pending.append(PendingTensor(name: r.name, dtype: r.dtype, shape: r.shape) { dst in
                try delta.reconstruct(i, base: base, into: dst)
                if check, StoredModel.sha256(UnsafeRawBufferPointer(dst)) != r.sha256 {
                    throw FormatError.invalid(path: deltaPath, field: "tensor \(r.name)",
                                              reason: "the rebuilt tensor does not match the target's SHA-256; the delta is damaged")
                }
            })
        }
        var options = WrenWriteOptions(overwrite: overwrite)
        options.magic = WrenFormatConstants.magic
        try WrenWriter.write(to: path, metadata: delta.targetMetadata, tensors: pending, options: options, progress: progress)
        return DeltaApplyReport(tensors: delta.target.count, verified: verified, differingBaseTensors: differing.count)
    }
}

/// A delta file, opened and checked field by field.
public final class DeltaFile: @unchecked Sendable {
    public let path: String
    public let file: WrenFile
    public let kind: DeltaKind
    public let baseIdentity: String
    public let targetIdentity: String
    public let base: [DeltaRecord]
    public let target: [DeltaRecord]
    public let encodings: [DeltaEncoding]
    public let blocks: [String: [UInt32]]
    public let targetMetadata: Metadata
    private let baseByName: [String: Int]

    public init(path: String) throws {
        self.path = path
        file = try WrenFile(path: path, magic: WrenFormatConstants.deltaMagic, kind: "Wren delta (.wdelta)")
        let m = file.metadata
        func bad(_ field: String, _ reason: String) -> FormatError { .invalid(path: path, field: field, reason: reason) }
        let v = try m.int("delta.version", in: path)
        guard v == Int(Delta.version) else { throw FormatError.unsupportedVersion(path: path, format: "delta", version: UInt32(clamping: v)) }
        let kindName = try m.string("delta.kind", in: path)
        guard let k = DeltaKind(rawValue: kindName) else { throw bad("delta.kind", "\"\(kindName)\" is not exact or q8") }
        kind = k
        baseIdentity = try m.string("delta.base.identity", in: path)
        targetIdentity = try m.string("delta.target.identity", in: path)
        func strings(_ key: String) throws -> [String] {
            guard let a = m[key]?.array, a.elementType == .string else {
                throw m[key] == nil ? FormatError.missingField(path: path, field: key) : FormatError.wrongFieldType(path: path, field: key, expected: "string array")
            }
            return a.strings
        }
        func records(_ prefix: String) throws -> [DeltaRecord] {
            let names = try strings("\(prefix).tensor_names"), dtypes = try strings("\(prefix).tensor_dtypes")
            let shapes = try strings("\(prefix).tensor_shapes"), shas = try strings("\(prefix).tensor_sha256")
            guard dtypes.count == names.count, shapes.count == names.count, shas.count == names.count else {
                throw bad("\(prefix).tensor_*", "\(names.count) names, \(dtypes.count) dtypes, \(shapes.count) shapes, \(shas.count) hashes")
            }
            var seen = Set<String>()
            return try names.indices.map { i in
                guard seen.insert(names[i]).inserted else { throw bad("\(prefix).tensor_names[\(i)]", "duplicate \(names[i])") }
                guard let d = DType(name: dtypes[i]) else { throw bad("\(prefix).tensor_dtypes[\(i)]", "unknown dtype \"\(dtypes[i])\"") }
                let parts = shapes[i].split(separator: ",", omittingEmptySubsequences: false)
                let dims = parts.compactMap { Int($0) }
                var count: Int? = 1
                for x in dims { count = count.flatMap { c in c.multipliedReportingOverflow(by: x).overflow ? nil : c * x } }
                guard dims.count == parts.count, !dims.isEmpty, dims.count <= WrenFormatConstants.maxDims, dims.allSatisfy({ $0 > 0 }),
                      dims.last! % d.blockSize == 0, let count, d.byteCount(elements: count) != nil else {
                    throw bad("\(prefix).tensor_shapes[\(i)]", "\"\(shapes[i])\" is not a shape of whole \(d.name) blocks")
                }
                let sha = shas[i]
                guard sha.utf8.count == 64, sha.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                    throw bad("\(prefix).tensor_sha256[\(i)]", "not 64 lower-case hex digits")
                }
                return DeltaRecord(name: names[i], dtype: d, shape: dims, sha256: sha)
            }
        }
        base = try records("delta.base")
        baseByName = Dictionary(base.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        target = try records("delta.target")
        let encNames = try strings("delta.target.encodings")
        guard encNames.count == target.count else { throw bad("delta.target.encodings", "\(encNames.count) encodings for \(target.count) tensors") }
        let baseByName = Dictionary(base.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var enc: [DeltaEncoding] = []
        var blockLists: [String: [UInt32]] = [:]
        var payloads = Set<String>()
        for (i, r) in target.enumerated() {
            guard let e = DeltaEncoding(rawValue: encNames[i]) else { throw bad("delta.target.encodings[\(i)]", "unknown encoding \"\(encNames[i])\"") }
            if e == .q8, kind != .q8 { throw bad("delta.target.encodings[\(i)]", "q8 in an exact delta") }
            let b = baseByName[r.name]
            switch e {
            case .whole: break
            case .q8:
                guard b?.shape == r.shape else { throw bad("delta.target.encodings[\(i)]", "q8 for \(r.name), which the base does not have in this shape") }
            case .same, .xor, .sub, .blocks:
                guard let b, b.shape == r.shape, b.dtype == r.dtype else {
                    throw bad("delta.target.encodings[\(i)]", "\(e.rawValue) for \(r.name), which the base does not have with this dtype and shape")
                }
                if e == .same, b.sha256 != r.sha256 { throw bad("delta.target.encodings[\(i)]", "same for \(r.name), whose hashes differ") }
                if e == .sub, r.dtype.isQuantized { throw bad("delta.target.encodings[\(i)]", "sub for the quantized \(r.name)") }
            }
            enc.append(e)
            guard e != .same else {
                if file.info(r.name) != nil { throw bad("tensor \(r.name)", "a payload for a tensor encoded as same") }
                continue
            }
            guard let info = file.info(r.name) else { throw FormatError.missingTensor(path: path, tensor: r.name) }
            payloads.insert(r.name)
            var expect = (r.dtype, r.shape)
            if e == .q8 { expect = (.q8_0, r.shape) }
            if e == .blocks {
                let key = "delta.blocks.\(r.name)"
                guard let a = m[key]?.array, a.elementType == .uint32, let raw = a.rawBytes else {
                    throw m[key] == nil ? FormatError.missingField(path: path, field: key) : FormatError.wrongFieldType(path: path, field: key, expected: "u32 array")
                }
                let list = (0..<a.count).map { j in raw.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 4 * j, as: UInt32.self)) } }
                let total = r.shape.reduce(1, *) / r.dtype.blockSize
                for j in list.indices where Int(list[j]) >= total || (j > 0 && list[j] <= list[j - 1]) {
                    throw bad(key, "index \(list[j]) at \(j) is out of order or past the tensor's \(total) blocks")
                }
                guard !list.isEmpty else { throw bad(key, "no blocks") }
                blockLists[r.name] = list
                expect = (r.dtype, [list.count * r.dtype.blockSize])
            }
            guard info.dtype == expect.0, info.shape == expect.1 else {
                throw bad("tensor \(r.name)", "payload is \(info.dtype.name) \(info.shape), the \(e.rawValue) encoding needs \(expect.0.name) \(expect.1)")
            }
        }
        for t in file.tensors where !payloads.contains(t.name) { throw bad("tensor \(t.name)", "a payload for no target tensor") }
        encodings = enc
        blocks = blockLists
        var tm = Metadata()
        for (k, v) in m.entries where k.hasPrefix("target.") { tm[String(k.dropFirst(7))] = v }
        _ = try ModelConfig(metadata: tm, path: path)
        _ = try TokenizerMetadata(metadata: tm, path: path)
        targetMetadata = tm
    }

    /// Whether `base` has what target tensor `i`'s encoding needs: a tensor of its name with the
    /// recorded dtype (any dtype for q8) and shape. A forced base may lack it.
    public func checkBase(_ i: Int, _ model: StoredModel) throws {
        let r = target[i], enc = encodings[i]
        guard enc != .whole else { return }
        let recorded = baseByName[r.name].map { base[$0] }
        guard let bi = model.index(of: r.name), model.entries[bi].shape == r.shape, enc == .q8 || model.entries[bi].dtype == recorded?.dtype else {
            throw FormatError.invalid(path: model.path, field: "tensor \(r.name)",
                                      reason: "is missing or has another dtype or shape than the delta's base; the delta cannot be applied to it")
        }
    }

    /// Rebuilds target tensor `i` into `dst` (its byte size) from its payload and the base's tensor.
    public func reconstruct(_ i: Int, base: StoredModel, into dst: UnsafeMutableRawBufferPointer) throws {
        try checkBase(i, base)
        let r = target[i]
        let bi = base.index(of: r.name)
        precondition(dst.count == r.dtype.byteCount(elements: r.shape.reduce(1, *))!)
        let payload = { try self.file.verifiedTensor(r.name).data }
        switch encodings[i] {
        case .whole:
            dst.copyMemory(from: try payload())
        case .same:
            try base.withBytes(bi!) { dst.copyMemory(from: $0) }
        case .xor, .sub:
            let p = try payload()
            try base.withBytes(bi!) { Delta.undifference(p, $0, width: Delta.planeWidth(r.dtype), subtract: encodings[i] == .sub, into: dst) }
        case .blocks:
            let p = try payload()
            try base.withBytes(bi!) { dst.copyMemory(from: $0) }
            let bb = r.dtype.blockBytes
            for (j, k) in blocks[r.name]!.enumerated() {
                UnsafeMutableRawBufferPointer(rebasing: dst[(Int(k) * bb)..<((Int(k) + 1) * bb)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: p[(j * bb)..<((j + 1) * bb)]))
            }
        case .q8:
            let n = r.shape.reduce(1, *)
            let d = Delta.floats(try payload(), .q8_0, count: n)
            let b = try base.withBytes(bi!) { Delta.floats($0, base.entries[bi!].dtype, count: n) }
            Quant.quantize(r.dtype, zip(b, d).map { $0 + $1 }).withUnsafeBytes { dst.copyMemory(from: $0) }
        }
    }
}
