// The training run's logs: loss.csv (one line per optimizer step), eval.csv
// (validation loss and perplexity, from step 0) and loss.svg (the curve), each
// rewritten atomically; the checkpoint keeps a copy so a resume continues them.

import Foundation
import WrenEngine
import WrenFormat
import WrenKernels

/// One line of the loss log.
public struct LogRow: Sendable, Equatable {
    public var step: Int
    public var epoch: Double
    public var loss: Double
    public var lr: Float
    public var tokens: Int
    public var seconds: Double
    public var gradNorm: Float
    public var evalLoss: Double?

    public init(step: Int, epoch: Double, loss: Double, lr: Float, tokens: Int, seconds: Double, gradNorm: Float, evalLoss: Double?) {
        self.step = step; self.epoch = epoch; self.loss = loss; self.lr = lr; self.tokens = tokens; self.seconds = seconds
        self.gradNorm = gradNorm; self.evalLoss = evalLoss
    }
}

extension Finetuner {
    var logPath: String { options.outputDir + "/loss.csv" }
    static let csvHeader = "step,epoch,loss,lr,tokens,seconds,grad_norm,eval_loss\n"

    static func csvLine(_ r: LogRow) -> String {
        "\(r.step),\(String(format: "%.4f", r.epoch)),\(String(format: "%.6f", r.loss)),\(r.lr),\(r.tokens),\(String(format: "%.2f", r.seconds)),"
            + "\(String(format: "%.4f", r.gradNorm)),\(r.evalLoss.map { String(format: "%.6f", $0) } ?? "")\n"
    }

    func writeLog() throws {
        try writeAtomically(Array((Self.csvHeader + log.map(Self.csvLine).joined()).utf8), to: logPath)
    }

    func appendLog(_ r: LogRow) throws {
        guard let h = FileHandle(forWritingAtPath: logPath) else { throw FormatError.io(path: logPath, operation: "open", errno: errno) }
        defer { try? h.close() }
        try h.seekToEnd()
        try h.write(contentsOf: Data(Self.csvLine(r).utf8))
    }

    func writeEvalLog() throws {
        let text = "step,eval_loss,perplexity\n" + evalHistory.map { "\($0.step),\(String(format: "%.6f", $0.loss)),\(String(format: "%.4f", exp($0.loss)))\n" }.joined()
        try writeAtomically(Array(text.utf8), to: options.outputDir + "/eval.csv")
    }

    func writeCurve() throws {
        let svg = LossCurve.svg(log, eval: evalHistory, title: "\((options.modelPath as NSString).lastPathComponent) — \((options.dataPath as NSString).lastPathComponent)")
        try writeAtomically(Array(svg.utf8), to: options.outputDir + "/loss.svg")
    }

    static func parseCSV(_ line: String) -> LogRow? {
        let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard f.count == 8, let s = Int(f[0]), let e = Double(f[1]), let l = Double(f[2]), let lr = Float(f[3]), let tk = Int(f[4]),
              let sec = Double(f[5]), let g = Float(f[6]) else { return nil }
        return LogRow(step: s, epoch: e, loss: l, lr: lr, tokens: tk, seconds: sec, gradNorm: g, evalLoss: Double(f[7]))
    }
}
