// The server's counters, gauges and histograms, rendered in Prometheus' text
// exposition format (version 0.0.4) for `GET /metrics`. A few dozen series
// written by hand: smaller than a metrics stack, and every line is ours to test.

import Foundation

/// Thread-safe metric store.
public final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [String: [String: Double]] = [:]        // name → labels → value
    private var histograms: [String: Histogram] = [:]
    private let help: [String: (type: String, text: String)]
    /// Read at render time: queue depth and busy slots.
    public var gauges: @Sendable () -> [(name: String, help: String, value: Double)] = { [] }

    struct Histogram {
        let bounds: [Double]
        var counts: [Int]
        var sum = 0.0
        var count = 0
    }

    public static let latencyBuckets: [Double] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
    public static let rateBuckets: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]

    public init() {
        help = [
            "wren_requests_total": ("counter", "HTTP requests answered, by endpoint and status code."),
            "wren_prompt_tokens_total": ("counter", "Prompt tokens of finished generations."),
            "wren_prompt_tokens_evaluated_total": ("counter", "Prompt tokens evaluated (the rest came from the prefix cache)."),
            "wren_generated_tokens_total": ("counter", "Tokens generated."),
            "wren_generations_total": ("counter", "Generations finished, by finish reason."),
            "wren_speculative_drafted_total": ("counter", "Tokens drafted for speculative decoding."),
            "wren_speculative_accepted_total": ("counter", "Drafted tokens the model kept."),
            "wren_time_to_first_token_seconds": ("histogram", "From a request's arrival to its first generated token."),
            "wren_generation_tokens_per_second": ("histogram", "Decode speed of one generation (tokens after the first over their time)."),
            "wren_request_duration_seconds": ("histogram", "From a generation request's arrival to its last byte."),
        ]
        histograms["wren_time_to_first_token_seconds"] = Histogram(bounds: Self.latencyBuckets, counts: Array(repeating: 0, count: Self.latencyBuckets.count))
        histograms["wren_request_duration_seconds"] = Histogram(bounds: Self.latencyBuckets, counts: Array(repeating: 0, count: Self.latencyBuckets.count))
        histograms["wren_generation_tokens_per_second"] = Histogram(bounds: Self.rateBuckets, counts: Array(repeating: 0, count: Self.rateBuckets.count))
    }

    public func add(_ name: String, _ value: Double = 1, labels: [(String, String)] = []) {
        let key = labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",")
        lock.lock()
        counters[name, default: [:]][key, default: 0] += value
        lock.unlock()
    }

    public func observe(_ name: String, _ value: Double) {
        guard value.isFinite else { return }
        lock.lock()
        defer { lock.unlock() }
        guard var h = histograms[name] else { return }
        for (i, b) in h.bounds.enumerated() where value <= b { h.counts[i] += 1 }
        h.sum += value
        h.count += 1
        histograms[name] = h
    }

    /// The exposition text.
    public func render() -> String {
        lock.lock()
        let cs = counters, hs = histograms
        lock.unlock()
        var out = ""
        func number(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v) }
        for name in help.keys.sorted() {
            let (type, text) = help[name]!
            out += "# HELP \(name) \(text)\n# TYPE \(name) \(type)\n"
            if type == "counter" {
                let series = cs[name] ?? [:]
                if series.isEmpty { out += "\(name) 0\n" }
                for (labels, v) in series.sorted(by: { $0.key < $1.key }) {
                    out += labels.isEmpty ? "\(name) \(number(v))\n" : "\(name){\(labels)} \(number(v))\n"
                }
            } else if let h = hs[name] {
                for (i, b) in h.bounds.enumerated() { out += "\(name)_bucket{le=\"\(number(b))\"} \(h.counts[i])\n" }
                out += "\(name)_bucket{le=\"+Inf\"} \(h.count)\n\(name)_sum \(h.sum)\n\(name)_count \(h.count)\n"
            }
        }
        for g in gauges() {
            out += "# HELP \(g.name) \(g.help)\n# TYPE \(g.name) gauge\n\(g.name) \(number(g.value))\n"
        }
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}
