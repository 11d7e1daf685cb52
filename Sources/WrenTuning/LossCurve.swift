// The loss curve as a self-contained SVG: training loss per step (and its
// moving average), evaluation loss as points, axes with ticks.

import Foundation

public enum LossCurve {
    /// `labels`: the y axis, the x axis, the line's legend and the points' legend.
    public static func svg(_ rows: [LogRow], eval: [(step: Int, loss: Double)] = [], title: String, width: Double = 720, height: Double = 420,
                           labels: (y: String, x: String, line: String, points: String) = ("loss", "optimizer step", "— train loss (moving avg)",
                                                                                            "● validation loss")) -> String {
        let left = 64.0, right = 20.0, top = 36.0, bottom = 48.0
        let pw = width - left - right, ph = height - top - bottom
        let steps = rows.map { Double($0.step) }
        let values = rows.map(\.loss) + eval.map(\.loss)
        let maxStep = max(1, steps.max() ?? 1)
        var lo = values.min() ?? 0, hi = values.max() ?? 1
        if hi - lo < 1e-6 { lo -= 0.5; hi += 0.5 }
        let pad = (hi - lo) * 0.05
        lo -= pad; hi += pad
        func x(_ s: Double) -> Double { left + s / maxStep * pw }
        func y(_ v: Double) -> Double { top + (hi - v) / (hi - lo) * ph }
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="22" font-size="14">\(esc(title))</text>
        <line x1="\(left)" y1="\(top + ph)" x2="\(left + pw)" y2="\(top + ph)" stroke="black"/>
        <line x1="\(left)" y1="\(top)" x2="\(left)" y2="\(top + ph)" stroke="black"/>

        """
        for i in 0...5 {
            let v = lo + (hi - lo) * Double(i) / 5
            out += "<line x1=\"\(left - 4)\" y1=\"\(f(y(v)))\" x2=\"\(left + pw)\" y2=\"\(f(y(v)))\" stroke=\"#e4e4e4\"/>"
            out += "<text x=\"\(left - 8)\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\">\(String(format: "%.3f", v))</text>\n"
            let s = maxStep * Double(i) / 5
            out += "<text x=\"\(f(x(s)))\" y=\"\(f(top + ph + 18))\" text-anchor=\"middle\">\(Int(s.rounded()))</text>\n"
        }
        out += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(height - 8))\" text-anchor=\"middle\">\(esc(labels.x))</text>\n"
        out += "<text transform=\"translate(16 \(f(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\">\(esc(labels.y))</text>\n"
        if !rows.isEmpty {
            let pts = rows.map { "\(f(x(Double($0.step)))),\(f(y($0.loss)))" }.joined(separator: " ")
            out += "<polyline fill=\"none\" stroke=\"#9ecae1\" stroke-width=\"1\" points=\"\(pts)\"/>\n"
            let k = max(1, rows.count / 20)
            var avg: [String] = []
            for i in 0..<rows.count {
                let w = rows[max(0, i - k + 1)...i]
                avg.append("\(f(x(Double(rows[i].step)))),\(f(y(w.map(\.loss).reduce(0, +) / Double(w.count))))")
            }
            out += "<polyline fill=\"none\" stroke=\"#08519c\" stroke-width=\"2\" points=\"\(avg.joined(separator: " "))\"/>\n"
        }
        for e in eval { out += "<circle cx=\"\(f(x(Double(e.step))))\" cy=\"\(f(y(e.loss)))\" r=\"4\" fill=\"#e6550d\"/>\n" }
        out += "<text x=\"\(f(left + pw - 170))\" y=\"\(f(top + 14))\" fill=\"#08519c\">\(esc(labels.line))</text>\n"
        out += "<text x=\"\(f(left + pw - 170))\" y=\"\(f(top + 30))\" fill=\"#e6550d\">\(esc(labels.points))</text>\n"
        out += "</svg>\n"
        return out
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }
}
