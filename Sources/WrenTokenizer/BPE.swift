// The two merge algorithms, over a linked list of symbols and a binary heap
// of candidate pairs (no rescans of the word):
//  - byte-level BPE (GPT-2 family): merge the adjacent pair with the lowest
//    merge rank, leftmost first, until no pair has a rank;
//  - SentencePiece BPE (LLaMA-1/2, Mistral): merge the adjacent pair whose
//    concatenation is a vocabulary piece with the highest score, leftmost
//    first (sentencepiece bpe_model.cc; llama.cpp llm_tokenizer_spm).

/// A binary min-heap on (key, position) with a payload; small and allocation-free after warm-up.
struct PairHeap {
    struct Entry {
        var key: Int64        // rank (byte-level) or -score bits (SentencePiece): smaller pops first
        var left: Int32
        var right: Int32
        var stamp: Int32      // left symbol's value when pushed (for staleness)
        var stampRight: Int32
    }
    var items: [Entry] = []

    @inline(__always) static func less(_ a: Entry, _ b: Entry) -> Bool {
        a.key != b.key ? a.key < b.key : a.left < b.left
    }

    mutating func push(_ e: Entry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if Self.less(items[i], items[p]) { items.swapAt(i, p); i = p } else { break }
        }
    }

    mutating func pop() -> Entry? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && Self.less(items[l], items[m]) { m = l }
                if r < n && Self.less(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

/// Byte-level BPE merges over token ids.
struct ByteLevelBPE {
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    let merges: [UInt64: UInt64]

    /// Merges `ids` in place (the initial one-byte-symbol ids of one piece).
    func apply(_ ids: inout [Int32], heap: inout PairHeap, next: inout [Int32], prev: inout [Int32]) {
        let n = ids.count
        if n < 2 { return }
        if n == 2 {
            if let m = merges[UInt64(UInt32(bitPattern: ids[0])) << 32 | UInt64(UInt32(bitPattern: ids[1]))] {
                ids = [Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)]
            }
            return
        }
        next.removeAll(keepingCapacity: true)
        prev.removeAll(keepingCapacity: true)
        for i in 0..<n { next.append(Int32(i + 1)); prev.append(Int32(i - 1)) }
        next[n - 1] = -1
        heap.items.removeAll(keepingCapacity: true)
        @inline(__always) func consider(_ l: Int32, _ r: Int32) {
            guard l >= 0, r >= 0 else { return }
            let key = UInt64(UInt32(bitPattern: ids[Int(l)])) << 32 | UInt64(UInt32(bitPattern: ids[Int(r)]))
            if let m = merges[key] {
                heap.push(.init(key: Int64(m >> 32), left: l, right: r, stamp: ids[Int(l)], stampRight: ids[Int(r)]))
            }
        }
        for i in 0..<(n - 1) { consider(Int32(i), Int32(i + 1)) }
        while let e = heap.pop() {
            let l = Int(e.left), r = Int(e.right)
            // Stale when either side was merged since the pair was pushed.
            guard ids[l] == e.stamp, ids[r] == e.stampRight, next[l] == e.right else { continue }
            let key = UInt64(UInt32(bitPattern: ids[l])) << 32 | UInt64(UInt32(bitPattern: ids[r]))
            guard let m = merges[key] else { continue }
            ids[l] = Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)
            ids[r] = -1
            let rn = next[r]
            next[l] = rn
            if rn >= 0 { prev[Int(rn)] = Int32(l) }
            consider(prev[l], Int32(l))
            consider(Int32(l), rn)
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        var i: Int32 = 0
        while i >= 0 { out.append(ids[Int(i)]); i = next[Int(i)] }
        ids = out
    }
}
