// The server's engine: the served models (the base, and the base with each
// --lora adapter, each a name a request can ask for), each with its own
// continuous-batching scheduler (WrenEngine's BatchScheduler: N slots, each a
// sequence with its own KV cache region), and one worker thread that steps
// every scheduler with work, so one thread drives the CPU's matrix kernels.
// Requests reach the worker through `submit`, which returns their events as
// an AsyncStream and a cancel function (a client that goes away cancels its
// jobs, which frees their slots at the next step).

import Foundation
import WrenEngine
import WrenTokenizer

/// One name a request's "model" can give: a model (with its adapter) and its scheduler.
public final class ServedModel: @unchecked Sendable {
    public let name: String
    public let model: LlamaModel
    public let scheduler: BatchScheduler
    /// The chat template, or why there is none (then /v1/chat/completions refuses this model).
    public let formatter: Result<ChatFormatter, Error>
    public let created = Int(Date().timeIntervalSince1970)

    public init(name: String, model: LlamaModel, scheduler: BatchScheduler, formatter: Result<ChatFormatter, Error>) {
        self.name = name
        self.model = model
        self.scheduler = scheduler
        self.formatter = formatter
    }
}

/// Too many requests waiting (answered 429 with Retry-After).
struct QueueFull: Error {}

public final class Engine: @unchecked Sendable {
    public enum State: Sendable { case loading, ready, failed(String) }

    private let lock = NSLock()
    private var stateStorage = State.loading
    private var served: [ServedModel] = []
    private var stopping = false
    private var outstanding: [Int: @Sendable () -> Void] = [:]     // request id → its cancel
    private var nextRequest = 0
    /// Most jobs waiting for a slot, summed over the models, before new requests get 429.
    public let queueLimit: Int
    /// A pause after each step with work (tests slow the engine to hold jobs in the queue; 0 otherwise).
    public let stepDelay: Double
    private let finished = DispatchSemaphore(value: 0)

    public init(queueLimit: Int, stepDelay: Double = 0) {
        self.queueLimit = queueLimit
        self.stepDelay = stepDelay
    }

    public var state: State {
        lock.lock()
        defer { lock.unlock() }
        return stateStorage
    }

    /// The served models once loaded (empty while loading).
    public var models: [ServedModel] {
        lock.lock()
        defer { lock.unlock() }
        return served
    }

    /// Loads the models on a background thread, then starts the worker. `done` gets nil or the error.
    public func load(_ loader: @escaping @Sendable () throws -> [ServedModel], done: @escaping @Sendable (Error?) -> Void) {
        let t = Thread { [self] in
            do {
                let ms = try loader()
                lock.lock()
                served = ms
                stateStorage = .ready
                lock.unlock()
                done(nil)
                work()
            } catch {
                lock.lock()
                stateStorage = .failed("\(error)")
                lock.unlock()
                done(error)
                finished.signal()
            }
        }
        t.stackSize = 8 << 20
        t.start()
    }

    /// The worker: steps every scheduler with work; sleeps when none has any.
    private func work() {
        let ms = models
        while true {
            lock.lock()
            let stop = stopping
            lock.unlock()
            if stop { break }
            var busy = false
            for m in ms where m.scheduler.step() { busy = true }
            if busy && stepDelay > 0 { usleep(UInt32(stepDelay * 1e6)) }
            if !busy { ms[0].scheduler.waitForWork(timeout: ms.count == 1 ? 0.25 : 0.005) }
        }
        finished.signal()
    }

    /// Waiting jobs and busy slots over all models.
    public var load: (waiting: Int, active: Int) {
        models.reduce((0, 0)) { acc, m in let l = m.scheduler.load; return (acc.0 + l.waiting, acc.1 + l.active) }
    }

    /// Queues `jobs` on `model`'s scheduler. Events come tagged with the job's index; the
    /// stream ends after every job's `.done` or `.failed`. Calling `cancel` (or dropping the
    /// stream) cancels the jobs still running.
    /// - Throws: `QueueFull` when the waiting jobs would pass the queue limit.
    func submit(_ jobs: [BatchJob], to model: ServedModel) throws -> (events: AsyncStream<(Int, BatchEvent)>, cancel: @Sendable () -> Void) {
        guard load.waiting + jobs.count <= queueLimit else { throw QueueFull() }
        let (stream, continuation) = AsyncStream<(Int, BatchEvent)>.makeStream(bufferingPolicy: .unbounded)
        final class Tickets: @unchecked Sendable {
            let lock = NSLock()
            var all: [Int] = []
            var open: Int
            init(_ n: Int) { open = n }
        }
        let tickets = Tickets(jobs.count)
        lock.lock()
        nextRequest += 1
        let id = nextRequest
        lock.unlock()
        let scheduler = model.scheduler
        let cancel: @Sendable () -> Void = {
            tickets.lock.lock()
            let ts = tickets.all
            tickets.lock.unlock()
            for t in ts { scheduler.cancel(t) }
        }
        for (i, job) in jobs.enumerated() {
            let t = scheduler.add(job) { [weak self] e in
                continuation.yield((i, e))
                switch e {
                case .done, .failed:
                    tickets.lock.lock()
                    tickets.open -= 1
                    let last = tickets.open == 0
                    tickets.lock.unlock()
                    if last {
                        continuation.finish()
                        self?.forget(id)
                    }
                default: break
                }
            }
            tickets.lock.lock()
            tickets.all.append(t)
            tickets.lock.unlock()
        }
        lock.lock()
        outstanding[id] = cancel
        lock.unlock()
        continuation.onTermination = { _ in cancel() }
        return (stream, cancel)
    }

    private func forget(_ id: Int) {
        lock.lock()
        outstanding[id] = nil
        lock.unlock()
    }

    /// Cancels every job of every request (shutdown after the grace period).
    public func cancelAll() {
        lock.lock()
        let all = Array(outstanding.values)
        lock.unlock()
        for c in all { c() }
    }

    /// Requests with jobs still running or waiting.
    public var outstandingRequests: Int {
        lock.lock()
        defer { lock.unlock() }
        return outstanding.count
    }

    /// Stops the worker after its current step and waits for it.
    public func stop() {
        lock.lock()
        let wasReady: Bool
        if case .ready = stateStorage { wasReady = true } else { wasReady = false }
        stopping = true
        lock.unlock()
        if wasReady { finished.wait() }
    }
}
