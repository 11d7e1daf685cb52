// A fixed list of generations run to the end together: RAFT's sampling and
// `wren run --samples`. A thin loop over `BatchScheduler` (BatchSampling.swift),
// which holds the batching, the prompt reuse and the exactness argument.

import WrenKernels

/// A fixed list of jobs run to the end on a `BatchScheduler` (RAFT's sampling, `wren run -n`).
public final class BatchGenerator: @unchecked Sendable {
    public let model: LlamaModel
    public let session: InferenceSession
    public let endTokens: Set<Int32>
    let scheduler: BatchScheduler

    /// - Parameters:
    ///   - width: jobs decoded together (the session's sequences).
    ///   - contextLength: per sequence: prompt plus generated tokens.
    public convenience init(model: LlamaModel, width: Int, contextLength: Int? = nil, threads: Int? = nil, kvType: KVCacheType = .f16,
                            activations: Activations = .q8) throws {
        self.init(model: model, session: try InferenceSession(model: model, contextLength: contextLength, threads: threads,
                                                              maxBatch: max(512, width), kvType: kvType, activations: activations,
                                                              sequences: width))
    }

    /// Over a session of several sequences (its caches are taken over: nothing in them is reused).
    public init(model: LlamaModel, session: InferenceSession) {
        self.model = model
        self.session = session
        scheduler = BatchScheduler(model: model, session: session, chunk: session.maxBatch, alignedReuse: false)
        endTokens = scheduler.endTokens
    }

    /// Runs every job and returns their results in order. `onDone(i, result)` is
    /// called as job i finishes (results arrive out of order). Every job is checked before any runs.
    public func generate(_ jobs: [BatchJob], onDone: (Int, GenerationResult) -> Void = { _, _ in }) throws -> [GenerationResult] {
        for j in jobs { try scheduler.validate(j) }
        final class Box: @unchecked Sendable { var events: [(Int, BatchEvent)] = [] }
        let box = Box()
        for (i, j) in jobs.enumerated() {
            scheduler.add(j) { e in
                switch e {
                case .done, .failed: box.events.append((i, e))
                case .token, .prompt: break
                }
            }
        }
        var results = [GenerationResult?](repeating: nil, count: jobs.count)
        var remaining = jobs.count
        while remaining > 0 {
            scheduler.step()
            for (i, e) in box.events {
                switch e {
                case .done(let r):
                    results[i] = r
                    onDone(i, r)
                case .failed(let error): throw error
                default: break
                }
                remaining -= 1
            }
            box.events = []
        }
        return results.map { $0! }
    }
}
