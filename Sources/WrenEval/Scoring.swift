// Log-probabilities of target tokens under rows of logits: the one numeric
// step every evaluation shares. log p(t) = l[t] − max − log Σ exp(l − max),
// the sum in Double (as llama-perplexity does), rows split across the pool.

import Foundation
import WrenEngine
import WrenKernels
import WrenTokenizer

public enum Scoring {
    /// log p(targets[i]) under logits row i (rows × vocab floats, row-major).
    public static func logProbabilities(_ logits: [Float], vocab: Int, targets: [Int32], threads: Int) -> [Double] {
        precondition(logits.count == targets.count * vocab, "one row of logits per target")
        var out = [Double](repeating: 0, count: targets.count)
        logits.withUnsafeBufferPointer { lp in
            targets.withUnsafeBufferPointer { tp in
                out.withUnsafeMutableBufferPointer { op in
                    let L = SendableRawPointer(UnsafeRawPointer(lp.baseAddress!)), Tg = SendableRawPointer(UnsafeRawPointer(tp.baseAddress!))
                    let O = SendablePointer(op.baseAddress!)
                    WorkerPool.shared(threads).forEachRow(targets.count) { i in
                        let row = L.p.assumingMemoryBound(to: Float.self) + i * vocab
                        let t = Int(Tg.p.assumingMemoryBound(to: Int32.self)[i])
                        var m = -Float.infinity
                        for j in 0..<vocab where row[j] > m { m = row[j] }
                        var s: Double = 0
                        for j in 0..<vocab { s += Double(expf(row[j] - m)) }
                        O.p[i] = Double(row[t] - m) - Foundation.log(s)
                    }
                }
            }
        }
        return out
    }

    /// UTF-8 bytes of text the tokens stand for (control tokens count none): the
    /// denominator of bits per byte.
    public static func textBytes(_ ids: some Sequence<Int32>, tokenizer: Tokenizer) -> Int {
        ids.reduce(0) { $0 + (tokenizer.isControl($1) ? 0 : tokenizer.bytes(of: $1).count) }
    }
}
