// A seeded mutation fuzzer for Wren's parsing entry points. Each target starts
// from valid inputs (seeds) and applies byte-level mutations (bit flips,
// interesting bytes and 64-bit values, inserted/deleted/duplicated chunks,
// dictionary tokens, truncation). An execution must end in success or in one of
// Wren's typed errors naming the input; a crash kills the run (the input is on
// disk as the reproducer, named at the start of each target); a hang is caught
// by a watchdog; a truncated file that is accepted is counted as a failure
// where truncation must be refused. Deterministic: (target, seed, run) gives the
// same input on every machine.
//
// Runs: WREN_FUZZ_RUNS per target (default: a few seconds' worth in the test
// command), WREN_FUZZ_SEED (default 1). tools/fuzz.sh runs the long campaign.

import Foundation
import TestSupport
import XCTest

struct FuzzStats: CustomStringConvertible {
    var target: String
    var runs = 0
    var refused = 0
    var accepted = 0
    /// Inputs cut short where a cut must be refused, and how many of those were accepted (bugs).
    var truncated = 0
    var truncatedAccepted = 0
    /// Executions over the hang threshold.
    var slow = 0
    var maxSeconds = 0.0
    var seconds = 0.0

    var description: String {
        "fuzz " + target.padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: "%7d runs (%5.0f/s): %6d refused, %5d accepted, %4d truncated (%d accepted), %d over 2 s (max %.3f s)",
               runs, Double(runs) / max(seconds, 1e-9), refused, accepted, truncated, truncatedAccepted, slow, maxSeconds)
    }
}

/// Arms a watchdog: an execution that runs past `abortAfter` seconds is reported and the
/// process aborted (a hang must fail the run, not stall CI until its time limit).
final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var started: Date?
    private var label = ""
    let abortAfter: Double

    init(abortAfter: Double) {
        self.abortAfter = abortAfter
        let t = Thread { [weak self] in
            while let s = self {
                s.lock.lock()
                let st = s.started, l = s.label
                s.lock.unlock()
                if let st, Date().timeIntervalSince(st) > s.abortAfter {
                    FileHandle.standardError.write(Data("fuzz: HANG over \(s.abortAfter) s in \(l)\n".utf8))
                    abort()
                }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        t.start()
    }

    func begin(_ l: String) { lock.lock(); started = Date(); label = l; lock.unlock() }
    func end() { lock.lock(); started = nil; lock.unlock() }
}

struct Mutator {
    var rng: SeededRNG
    /// Tokens worth inserting for this format (keywords, delimiters, boundary numbers).
    var dictionary: [[UInt8]]

    static let interesting64: [UInt64] = [0, 1, 2, 7, 8, 255, 256, 0x7fff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff,
                                          0x1_0000_0000, 1 << 62, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, .max, .max - 7]

    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(rng.next() % UInt64(n)) }

    /// One mutated copy of `seed`; `truncated` when it is a strict prefix of the seed.
    /// `headBias`: the number of leading bytes that hold the format's structure (headers,
    /// tables); half the positions fall there.
    mutating func mutate(_ seed: [UInt8], headBias: Int) -> (bytes: [UInt8], truncated: Bool) {
        var b = seed
        if below(8) == 0, b.count > 1 { return (Array(b[..<below(b.count)]), true) }
        let edits = 1 + below(4)
        for _ in 0..<edits {
            func pos() -> Int { b.isEmpty ? 0 : (below(2) == 0 && headBias > 0 ? below(min(headBias, b.count)) : below(b.count)) }
            switch below(8) {
            case 0: if !b.isEmpty { let p = pos(); b[p] ^= UInt8(1 << below(8)) }
            case 1: if !b.isEmpty { b[pos()] = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x20, 0x22, 0x5c][below(8)] }
            case 2:
                if b.count >= 8 {
                    let p = min(pos(), b.count - 8)
                    var v = Self.interesting64[below(Self.interesting64.count)]
                    if below(4) == 0 { v = UInt64(b.count) &+ UInt64(bitPattern: Int64(below(5) - 2)) }
                    for i in 0..<8 { b[p + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
                }
            case 3: if !b.isEmpty { let p = pos(); b.removeSubrange(p..<min(b.count, p + 1 + below(16))) }
            case 4:
                if !b.isEmpty {
                    let p = pos(), n = 1 + below(min(64, b.count - p))
                    b.insert(contentsOf: b[p..<(p + n)], at: below(b.count + 1))
                }
            case 5, 6: if !dictionary.isEmpty { b.insert(contentsOf: dictionary[below(dictionary.count)], at: b.isEmpty ? 0 : pos()) }
            default: if !b.isEmpty { b[pos()] = UInt8(truncatingIfNeeded: rng.next()) }
            }
        }
        return (b, false)
    }
}

enum Fuzz {
    static var runs: Int {
        if let s = ProcessInfo.processInfo.environment["WREN_FUZZ_RUNS"], let n = Int(s), n > 0 { return n }
        #if DEBUG
        return 1_500
        #else
        return 3_000
        #endif
    }

    static var seed: UInt64 { ProcessInfo.processInfo.environment["WREN_FUZZ_SEED"].flatMap { UInt64($0) } ?? 1 }

    static let watchdog = Watchdog(abortAfter: 20)

    /// Fuzzes one target.
    /// - Parameters:
    ///   - seeds: valid inputs (each must be accepted unmutated: checked first).
    ///   - mustRefuseTruncation: a strict prefix of a seed must be refused.
    ///   - exec: runs the entry point on the input; returns normally when it is accepted.
    ///   - isExpected: whether a thrown error is one of Wren's typed, descriptive errors.
    static func run(_ name: String, seeds: [[UInt8]], dictionary: [String] = [], headBias: Int = 0, mustRefuseTruncation: Bool,
                    exec: ([UInt8]) throws -> Void, isExpected: (Error) -> Bool,
                    file: StaticString = #filePath, line: UInt = #line) -> FuzzStats {
        var stats = FuzzStats(target: name)
        for (i, s) in seeds.enumerated() {
            XCTAssertNoThrow(try exec(s), "\(name): seed \(i) must be accepted", file: file, line: line)
        }
        var m = Mutator(rng: SeededRNG(seed: seed &* 0x9E37_79B9 &+ UInt64(name.utf8.reduce(0) { $0 &* 31 &+ Int($1) })),
                        dictionary: dictionary.map { Array($0.utf8) })
        let start = Date()
        var failures = 0
        for r in 0..<runs {
            let (b, truncated) = m.mutate(seeds[r % seeds.count], headBias: headBias)
            let t0 = Date()
            watchdog.begin("\(name) run \(r) (seed \(seed))")
            var accepted = false
            do {
                try exec(b)
                accepted = true
            } catch {
                if !isExpected(error) {
                    failures += 1
                    if failures <= 3 { XCTFail("\(name) run \(r): unexpected error \(type(of: error)): \(error)", file: file, line: line) }
                }
            }
            watchdog.end()
            let dt = Date().timeIntervalSince(t0)
            stats.runs += 1
            stats.maxSeconds = max(stats.maxSeconds, dt)
            if dt > 2 {
                stats.slow += 1
                let keep = FuzzTests.dir + "/slow-\(name)-\(r).bin"
                FileManager.default.createFile(atPath: keep, contents: Data(b))
                print("fuzz: \(name) run \(r) took \(dt) s; input kept as \(keep)")
            }
            if accepted { stats.accepted += 1 } else { stats.refused += 1 }
            if truncated && mustRefuseTruncation {
                stats.truncated += 1
                if accepted {
                    stats.truncatedAccepted += 1
                    XCTFail("\(name) run \(r): a file cut to \(b.count) bytes was accepted", file: file, line: line)
                }
            }
        }
        stats.seconds = Date().timeIntervalSince(start)
        print(stats)
        XCTAssertEqual(stats.slow, 0, "\(name): executions over 2 s", file: file, line: line)
        XCTAssertGreaterThan(stats.refused, 0, "\(name): no mutation was refused (is the target checking anything?)", file: file, line: line)
        return stats
    }
}
