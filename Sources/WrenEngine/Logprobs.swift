// Log-probabilities as the server and the batch scheduler report them.

import Foundation

/// A token's log-probability under the model (log-softmax of its logits, before any
/// sampling transform) and the most likely tokens at its position.
public struct TokenLogprob: Sendable, Equatable {
    public var token: Int32
    public var logprob: Float
    public var top: [Alternative]
    public struct Alternative: Sendable, Equatable {
        public var token: Int32
        public var logprob: Float
    }

    /// Token `token`'s log-probability under `logits`, and the `top` most likely (most likely first, lowest id on ties).
    public static func of(_ token: Int32, logits: [Float], top: Int) -> TokenLogprob {
        var mx = -Float.infinity
        for v in logits where v > mx { mx = v }
        var sum = 0.0
        for v in logits { sum += Foundation.exp(Double(v - mx)) }
        let lse = mx + Float(Foundation.log(sum))
        var best: [Alternative] = []
        if top > 0 {
            best.reserveCapacity(top + 1)
            for (i, v) in logits.enumerated() where best.count < top || v > best[best.count - 1].logprob {
                var j = best.count
                while j > 0, best[j - 1].logprob < v { j -= 1 }
                best.insert(Alternative(token: Int32(i), logprob: v), at: j)
                if best.count > top { best.removeLast() }
            }
            for j in best.indices { best[j].logprob -= lse }
        }
        return TokenLogprob(token: token, logprob: logits[Int(token)] - lse, top: best)
    }
}
