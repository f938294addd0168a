// Candidate retrieval from a catalog.
//
//   score(j) = Σ_{a=0}^{L-1} recencyDecay^a · S(h_a, j)  +  popularityWeight · pop(j) / max pop
//
// where h_0 is the newest known history item, h_1 the one before, … (the last L
// known items; items missing from the catalog are skipped and counted), S the
// neighbour table. Every history item (not only the last L) is "seen" and never
// returned. Items no neighbour list reaches score popularityWeight · pop(j), so
// popularity fills the list for cold starts and short histories. Ties: the more
// popular item first.
//
// Only touched items and a popularity prefix can make the top N: an untouched
// item ranks below every untouched, unseen item more popular than it. So a
// request costs O(L·K + N + |history|), never O(n_items).

/// How a retriever turns a history into candidates; a catalog pack stores tuned
/// values. The defaults are the combined method's (see `RetrieverConfiguration.defaults`).
public struct RetrievalSettings: Sendable, Equatable, Codable {
    /// The most recent known items whose neighbours are summed.
    public var historyLength: Int = 10
    /// Weight of the item `a` steps back from the newest: recencyDecay^a.
    public var recencyDecay: Double = 0.7
    /// Weight of normalised popularity added to every score.
    public var popularityWeight: Double = 0

    public init(historyLength: Int = 10, recencyDecay: Double = 0.7, popularityWeight: Double = 0) {
        self.historyLength = historyLength
        self.recencyDecay = recencyDecay
        self.popularityWeight = popularityWeight
    }
}

public struct RetrievedItem: Sendable, Equatable {
    /// Index in the catalog (`catalog.ids[index]`, `catalog.titles[index]`).
    public var index: Int32
    public var score: Float

    public init(index: Int32, score: Float) {
        self.index = index
        self.score = score
    }
}

public struct Retrieval: Sendable, Equatable {
    /// Best first.
    public var items: [RetrievedItem]
    /// History ids the catalog does not know (skipped).
    public var unknownCount: Int
    /// History items that pulled neighbours (at most historyLength).
    public var sourceCount: Int
}

/// Retrieves candidates from one catalog. Owns reusable scratch buffers sized to
/// the catalog, so a request allocates only its result. Not thread-safe: use one
/// retriever per thread (they can share the catalog).
public final class Retriever {
    public static let defaultCount = 20
    public static let maxCount = 100

    public let catalog: ItemCatalog
    public var settings: RetrievalSettings

    // Scratch, owned by this retriever, freed in deinit, never handed to callers.
    private let scores: UnsafeMutablePointer<Float>     // (n_items) neighbour sum; 0 outside touched items
    private let stamp: UnsafeMutablePointer<UInt32>     // (n_items) = epoch when touched (bit 0) / seen (bit 1) this request
    private let touched: UnsafeMutablePointer<Int32>    // (n_items) items touched this request
    private let sources: UnsafeMutablePointer<Int32>    // (maxHistoryLength) known history items, newest first
    private let sorted: UnsafeMutablePointer<ScoredEntry> // (maxCount) drained selection
    private let top: TopK                               // selection of the best maxCount
    private var epoch: UInt32 = 0
    private let sourceCapacity: Int

    public init(catalog: ItemCatalog, settings: RetrievalSettings? = nil, maxHistoryLength: Int = 200) {
        self.catalog = catalog
        self.settings = settings ?? catalog.info.retrieval
        let n = catalog.count
        scores = .allocate(capacity: n)
        scores.initialize(repeating: 0, count: n)
        stamp = .allocate(capacity: n)
        stamp.initialize(repeating: 0, count: n)
        touched = .allocate(capacity: n)
        sourceCapacity = max(maxHistoryLength, self.settings.historyLength, 1)
        sources = .allocate(capacity: sourceCapacity)
        sorted = .allocate(capacity: Self.maxCount)
        top = TopK(capacity: Self.maxCount)
    }

    deinit {
        scores.deallocate(); stamp.deallocate(); touched.deallocate(); sources.deallocate(); sorted.deallocate()
    }

    /// Candidates for a history of external ids, oldest → newest. At most
    /// `max(maxHistoryLength, settings.historyLength at init)` recent items pull neighbours.
    public func retrieve<C: BidirectionalCollection>(history: C, count: Int = Retriever.defaultCount) -> Retrieval
        where C.Element == String {
        beginRequest()
        var unknown = 0
        for id in history {
            if let i = catalog.index(of: id) { markSeen(i) } else { unknown += 1 }
        }
        var nSources = 0
        for id in history.reversed() where nSources < min(settings.historyLength, sourceCapacity) {
            if let i = catalog.index(of: id) { sources[nSources] = i; nSources += 1 }
        }
        return finish(nSources: nSources, unknown: unknown, count: count)
    }

    /// Candidates for a history of catalog indices, oldest → newest (the evaluator's path).
    /// Indices outside the catalog are skipped and counted.
    public func retrieve<C: BidirectionalCollection>(indices history: C, count: Int = Retriever.defaultCount) -> Retrieval
        where C.Element == Int32 {
        beginRequest()
        var unknown = 0
        let n = Int32(catalog.count)
        for i in history { if i >= 0 && i < n { markSeen(i) } else { unknown += 1 } }
        var nSources = 0
        for i in history.reversed() where nSources < min(settings.historyLength, sourceCapacity) {
            if i >= 0 && i < n { sources[nSources] = i; nSources += 1 }
        }
        return finish(nSources: nSources, unknown: unknown, count: count)
    }

    // Stamps: epoch << 2 | 1 touched, | 2 seen. A new epoch invalidates every mark
    // in O(1); on wrap-around the array is cleared once.
    private static let touchedBit: UInt32 = 1
    private static let seenBit: UInt32 = 2

    private func beginRequest() {
        epoch &+= 1
        if epoch >= (1 << 30) {
            epoch = 1
            stamp.update(repeating: 0, count: catalog.count)
        }
    }

    @inline(__always) private func marks(_ i: Int) -> UInt32 {
        stamp[i] >> 2 == epoch ? stamp[i] & 3 : 0
    }

    @inline(__always) private func markSeen(_ i: Int32) {
        stamp[Int(i)] = epoch << 2 | marks(Int(i)) | Self.seenBit
    }

    private func finish(nSources: Int, unknown: Int, count: Int) -> Retrieval {
        let n = min(max(count, 0), Self.maxCount)
        let k = catalog.k
        let ids = catalog.neighbourIds, nScores = catalog.neighbourScores

        // 1. Sum the neighbour rows of the recent items, weighted by recency.
        var nTouched = 0
        var w = Float(1)
        let decay = Float(settings.recencyDecay)
        let nItems = Int32(catalog.count)
        for a in 0..<nSources {
            let row = Int(sources[a]) * k
            for s in 0..<k {
                let j = ids[row + s]
                // Ids were checked at open, but they are read from the mapped file: one
                // rewritten in place since (cp over it) shows other bytes. Out of range
                // they would index the scratch arrays unchecked; they end the row instead.
                if j < 0 || j >= nItems { break }
                let m = marks(Int(j))
                if m & Self.seenBit != 0 { continue }
                if m & Self.touchedBit == 0 {
                    stamp[Int(j)] = epoch << 2 | Self.touchedBit
                    touched[nTouched] = j
                    nTouched += 1
                    scores[Int(j)] = 0
                }
                scores[Int(j)] += w * nScores[row + s]
            }
            w *= decay
        }

        // 2. Select the best N among touched items and the popularity prefix.
        // Normalised first (pop / max pop is in [0, 1]), then weighted: weight / max pop
        // overflows to ∞ when the largest popularity is tiny (1e-45), and ∞ · 0 is NaN.
        let weight = Float(settings.popularityWeight), maxPop = catalog.maxPopularity
        let pop = catalog.popularity
        top.reset(limit: n)
        for x in 0..<nTouched {
            let j = Int(touched[x])
            top.consider(ScoredEntry(score: scores[j] + weight * (pop[j] / maxPop), tie: catalog.popularityRank[j], item: Int32(j)))
            scores[j] = 0
        }
        var filled = 0
        for j in catalog.popularityOrder {
            if filled >= n { break }
            if marks(Int(j)) != 0 { continue }   // seen, or already considered
            top.consider(ScoredEntry(score: weight * (pop[Int(j)] / maxPop), tie: catalog.popularityRank[Int(j)], item: j))
            filled += 1
        }

        // 3. The result: the only allocation of the request.
        let m = top.drainSorted(into: sorted)
        var out: [RetrievedItem] = []
        out.reserveCapacity(m)
        for x in 0..<m { out.append(RetrievedItem(index: sorted[x].item, score: sorted[x].score)) }
        return Retrieval(items: out, unknownCount: unknown, sourceCount: nSources)
    }
}
