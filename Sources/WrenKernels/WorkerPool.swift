// One persistent pool of worker threads for all parallel loops on the decode
// path: a decode step runs hundreds of small matrix products, and waking GCD
// for each costs more than the work. Workers spin briefly on an atomic
// generation counter, then park on a condition variable. The caller takes
// part in every loop. Each index is handed to exactly one thread; callers
// must write disjoint outputs per index (results then do not depend on the
// thread count).

import Foundation
import Synchronization

public final class WorkerPool: @unchecked Sendable {
    /// Threads including the caller.
    public let size: Int

    /// One parallel loop; its counters belong to it, so a late worker from an
    /// earlier loop can never touch a newer one.
    final class Job: @unchecked Sendable {
        let count: Int
        let body: (Int) -> Void
        let next = Atomic<Int>(0)
        let finished = Atomic<Int>(0)
        init(_ count: Int, _ body: @escaping (Int) -> Void) { self.count = count; self.body = body }

        func work() {
            while true {
                let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
                if i >= count { return }
                body(i)
                finished.wrappingAdd(1, ordering: .releasing)
            }
        }
    }

    private let generation = Atomic<Int>(0)
    private let current = Mutex<Job?>(nil)
    private let cond = NSCondition()
    private var parked = 0
    private let spinIterations = 200_000

    nonisolated(unsafe) private static var pools: [Int: WorkerPool] = [:]
    private static let poolsLock = NSLock()

    /// The shared pool with `threads` threads (created on first use, kept for the process).
    public static func shared(_ threads: Int) -> WorkerPool {
        poolsLock.lock()
        defer { poolsLock.unlock() }
        if let p = pools[threads] { return p }
        let p = WorkerPool(threads: threads)
        pools[threads] = p
        return p
    }

    init(threads: Int) {
        size = max(1, threads)
        for _ in 1..<size {
            let t = Thread { [unowned self] in self.workerLoop() }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    /// Runs body(i) for i in 0..<count across the pool and returns when all are done.
    public func run(_ count: Int, _ body: @escaping (Int) -> Void) {
        if size == 1 || count <= 1 {
            for i in 0..<count { body(i) }
            return
        }
        let job = Job(count, body)
        current.withLock { $0 = job }
        generation.wrappingAdd(1, ordering: .releasing)
        cond.lock()
        if parked > 0 { cond.broadcast() }
        cond.unlock()
        job.work()
        while job.finished.load(ordering: .acquiring) < count { }
        current.withLock { if $0 === job { $0 = nil } }
    }

    private func workerLoop() {
        var seen = generation.load(ordering: .acquiring)
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins > spinIterations {
                    cond.lock()
                    parked += 1
                    while generation.load(ordering: .acquiring) == seen { cond.wait() }
                    parked -= 1
                    cond.unlock()
                    break
                }
            }
            seen = generation.load(ordering: .acquiring)
            if let job = current.withLock({ $0 }) { job.work() }
        }
    }
}

extension WorkerPool {
    /// Runs `body(row)` for rows 0..<n in contiguous chunks across the pool (inline for one row).
    public func forEachRow(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
        guard n > 0 else { return }
        let chunks = max(1, min(size * 4, n))
        let per = (n + chunks - 1) / chunks
        run(chunks) { c in
            var i = c * per
            while i < min(n, (c + 1) * per) { body(i); i += 1 }
        }
    }
}
