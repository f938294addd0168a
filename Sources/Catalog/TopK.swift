// A bounded selection of the best entries: a binary min-heap whose root is the
// worst entry kept. "Better" = higher score, then lower tie key. The builder (per
// thread) and the retriever (per object) each own one and reuse it.

struct ScoredEntry {
    var score: Float
    var tie: Int32     // lower wins among equal scores (item index, or popularity rank)
    var item: Int32

    @inline(__always) func isBetter(than o: ScoredEntry) -> Bool {
        score != o.score ? score > o.score : tie < o.tie
    }
}

final class TopK {
    let capacity: Int
    private let heap: UnsafeMutablePointer<ScoredEntry>   // (capacity) owned; freed in deinit
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        heap = .allocate(capacity: self.capacity)
    }

    deinit { heap.deallocate() }

    /// Empties the selection; `limit` (≤ capacity) is how many to keep this time.
    @inline(__always) func reset(limit: Int) {
        count = 0
        self.limit = min(max(limit, 0), capacity)
    }

    private var limit = 0

    @inline(__always) func consider(_ e: ScoredEntry) {
        if count < limit {
            // Sift up: parents must be worse than (or equal to) children.
            var i = count
            count += 1
            while i > 0 {
                let p = (i - 1) / 2
                guard heap[p].isBetter(than: e) else { break }
                heap[i] = heap[p]
                i = p
            }
            heap[i] = e
        } else if limit > 0 && e.isBetter(than: heap[0]) {
            siftDown(e)
        }
    }

    private func siftDown(_ e: ScoredEntry) {
        var i = 0
        while true {
            let l = 2 * i + 1
            if l >= count { break }
            var c = l
            if l + 1 < count && heap[c].isBetter(than: heap[l + 1]) { c = l + 1 }
            guard e.isBetter(than: heap[c]) else { break }
            heap[i] = heap[c]
            i = c
        }
        heap[i] = e
    }

    /// The worst entry kept, when the selection is full (nil otherwise).
    var worstWhenFull: ScoredEntry? { count == limit && count > 0 ? heap[0] : nil }

    /// Drains the selection best-first into `out` (which must hold `count` entries); empties it.
    func drainSorted(into out: UnsafeMutablePointer<ScoredEntry>) -> Int {
        let n = count
        // Popping the worst repeatedly yields worst-first; fill from the back.
        var k = n
        while count > 0 {
            k -= 1
            out[k] = heap[0]
            count -= 1
            if count > 0 { siftDown(heap[count]) }
        }
        return n
    }
}
