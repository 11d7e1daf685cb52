// `wren convert` and `wren export`.

import ArgumentParser
import Foundation
import WrenFormat
import WrenKernels

extension RopeScalingType: ExpressibleByArgument {}

extension QuantScheme: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public static var allValueStrings: [String] { QuantScheme.names }
}

extension DType: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public static var allValueStrings: [String] { DType.allCases.map(\.name) }
    public var defaultValueDescription: String { name }   // not the ggml id
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a GGUF file, a Hugging Face directory or a .wren file into a .wren file.",
        discussion: """
        Without --type every tensor keeps its dtype (GGUF blocks are copied byte for byte). \
        With --type, 2-D weights are requantized and 1-D tensors (norms) stay f32. A stored type \
        (f32, f16, bf16, q8_0, q5_0, q5_1, q4_0, q4_1, q3_k, q4_k, q5_k) is used for every 2-D \
        weight; a k-quant mixture (q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, \
        q6_k) chooses a type per tensor as llama-quantize does (docs/quantization.md). Rows that \
        are not whole blocks of the chosen type fall back: q2_k and q3_k to q4_0, q4_k to q5_0, \
        q5_k to q5_1, q6_k to q8_0, anything else to f16.
        """)

    @Argument(help: "Input: a .gguf file, a Hugging Face directory (config.json, *.safetensors, tokenizer.json) or a .wren file.")
    var input: String

    @Option(name: .shortAndLong, help: "Output .wren path.")
    var output: String

    @Option(name: .long, help: ArgumentHelp("A stored type or a k-quant mixture for the 2-D weights (see above).", valueName: "type"))
    var type: QuantScheme?

    @Flag(help: "With a mixture name: its base type for every 2-D weight, no per-tensor choices (llama-quantize --pure).")
    var pure = false

    @Flag(help: "Compress each tensor with zstd (kept only where it saves at least 2%).")
    var compress = false

    @Option(help: "zstd level for --compress (1-19).")
    var compressionLevel: Int32 = 3

    @Flag(help: "Overwrite an existing output file.")
    var force = false

    func validate() throws {
        guard (1...19).contains(compressionLevel) else { throw ValidationError("--compression-level must be in 1...19") }
    }

    func run() throws {
        Std.removeTemporaryFilesOnSignals()
        do {
            let t0 = Date()
            if !force, FileManager.default.fileExists(atPath: output) { throw FormatError.outputExists(path: output) }
            let source = try ModelSource.open(input)
            let progress = ProgressLine()
            let report = try ModelConverter.convert(source, to: output,
                                                    options: ConvertOptions(type: type.map { pure ? QuantScheme(name: $0.description, pure: true)! : $0 },
                                                                            compress: compress,
                                                                            compressionLevel: compressionLevel, overwrite: force),
                                                    progress: progress.update)
            let secs = Date().timeIntervalSince(t0)
            let compressed = report.tensors.filter { $0.compression == .zstd }.count
            stderrLine(String(format: "wrote %@: %d tensors, %.1f MB (from %.1f MB of tensor data) in %.2fs%@", output,
                              report.tensors.count, Double(report.fileSize) / 1e6, Double(report.bytesIn) / 1e6, secs,
                              compress ? ", \(compressed) tensors zstd-compressed" : ""))
        } catch { fail(error) }
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a .wren file as a Hugging Face directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json).",
        discussion: """
        Quantized tensors are written dequantized (--type, default f32); their original dtype is \
        recorded in the safetensors metadata, so `wren convert` on the directory restores the same bytes.
        """)

    @Argument(help: "The .wren file.")
    var input: String

    @Option(name: .shortAndLong, help: "Output directory.")
    var output: String

    @Option(name: .long, help: "Float type for quantized tensors: f32, f16 or bf16.")
    var type: DType = .f32

    @Flag(help: "Overwrite files in an existing output directory.")
    var force = false

    func validate() throws {
        guard !type.isQuantized else { throw ValidationError("--type must be f32, f16 or bf16 for export") }
    }

    func run() throws {
        Std.removeTemporaryFilesOnSignals()
        do {
            let w = try WrenFile(path: input)
            try HFExporter.export(w, to: output, floatType: type, overwrite: force)
            stderrLine("wrote \(output)/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json}")
        } catch { fail(error) }
    }
}
