// Leave-one-out evaluation, as PALR and LlamaRec do it.
//
//   1. Each user's interactions are ordered by timestamp, ties by their order in
//      the file (never by item id: that would put the lower-id item last and
//      inflate results).
//   2. The last item is the test target, the second-to-last the validation target.
//      Users with fewer than 3 interactions are not evaluated.
//   3. Neighbours and popularity are built only from what precedes the target in
//      every user's sequence:
//        validation: every sequence without its last 2 items;
//        test:       every sequence without its last item (the validation item is
//                    part of the history at test time, as in LlamaRec's test step);
//                    with `strict`, without its last 2 items as well.
//      So no held-out target, of any user, ever contributes to a neighbour list.
//   4. Ranking is against the full catalog minus the user's history (no sampled
//      negatives). Metrics come from the best-first list of the top 50.
//
// Metrics, one held-out item per user, averaged over users:
//   HR@k = 1 if the target's rank r ≤ k;  NDCG@k = 1 / log2(r + 1) if r ≤ k;
//   Recall@k = hits / held-out items, which with one held-out item equals HR@k.
// Ties: items with equal scores form a run in a best-first list; the target is
// counted at the last position of its run (pessimistic), so a ranker gains
// nothing by ordering tied items favourably.

import Foundation

public struct RankingMetrics: Sendable, Equatable, Codable {
    public var hr10 = 0.0
    public var ndcg10 = 0.0
    public var hr20 = 0.0
    public var recall20 = 0.0
    public var recall50 = 0.0

    public init() {}

    /// (name, value) in report order, names as in the JSON.
    public var named: [(String, Double)] {
        [("HR@10", hr10), ("NDCG@10", ndcg10), ("HR@20", hr20), ("Recall@20", recall20), ("Recall@50", recall50)]
    }

    /// Cutoffs the list must reach for every metric.
    public static let depth = 50

    enum CodingKeys: String, CodingKey {
        case hr10 = "HR@10", ndcg10 = "NDCG@10", hr20 = "HR@20", recall20 = "Recall@20", recall50 = "Recall@50"
    }
}

public enum Metrics {
    /// 1-based rank of `target` in a best-first list, at the last position of its
    /// run of equal scores; nil when absent. A run reaching the list's end may go on
    /// past it: read the list one deeper than the largest cutoff (the evaluator does).
    public static func rank(of target: Int32, in list: [RetrievedItem]) -> Int? {
        guard var i = list.firstIndex(where: { $0.index == target }) else { return nil }
        let s = list[i].score
        while i + 1 < list.count && list[i + 1].score == s { i += 1 }
        return i + 1
    }

    public static func hit(rank: Int?, cutoff: Int) -> Double {
        guard let r = rank else { return 0 }
        return r <= cutoff ? 1 : 0
    }

    /// 1 / log2(rank + 1) within the cutoff (the ideal DCG of one relevant item is 1).
    public static func ndcg(rank: Int?, cutoff: Int) -> Double {
        guard let r = rank, r <= cutoff else { return 0 }
        return 1 / log2(Double(r) + 1)
    }
}

/// Sums per-user metrics; `mean` divides by the number of users added.
public struct MetricsAccumulator: Sendable {
    public private(set) var users = 0
    private var sum = RankingMetrics()

    public init() {}

    public mutating func add(rank r: Int?) {
        users += 1
        sum.hr10 += Metrics.hit(rank: r, cutoff: 10)
        sum.ndcg10 += Metrics.ndcg(rank: r, cutoff: 10)
        sum.hr20 += Metrics.hit(rank: r, cutoff: 20)
        sum.recall20 += Metrics.hit(rank: r, cutoff: 20)
        sum.recall50 += Metrics.hit(rank: r, cutoff: 50)
    }

    public mutating func merge(_ o: MetricsAccumulator) {
        users += o.users
        sum.hr10 += o.sum.hr10
        sum.ndcg10 += o.sum.ndcg10
        sum.hr20 += o.sum.hr20
        sum.recall20 += o.sum.recall20
        sum.recall50 += o.sum.recall50
    }

    public var mean: RankingMetrics {
        guard users > 0 else { return sum }
        let n = Double(users)
        var m = RankingMetrics()
        m.hr10 = sum.hr10 / n
        m.ndcg10 = sum.ndcg10 / n
        m.hr20 = sum.hr20 / n
        m.recall20 = sum.recall20 / n
        m.recall50 = sum.recall50 / n
        return m
    }
}

public enum HeldOut: String, Sendable, CaseIterable, Codable {
    case validation, test
}

/// Re-ranks retrieved candidates (the LLM ranker plugs in here). It gets the
/// catalog, the user's history (catalog indices, oldest → newest) and the
/// candidates best-first, and returns some or all of the candidates best-first.
/// Returning anything that is not a candidate, or a candidate twice, is an error.
public typealias Reranker = (_ catalog: ItemCatalog, _ history: ArraySlice<Int32>, _ candidates: [RetrievedItem]) throws -> [RetrievedItem]

public struct EvaluationOptions: Sendable {
    public var heldOut: HeldOut = .test
    public var neighbours = NeighbourParameters(method: .combined)
    public var retrieval = RetrievalSettings()
    /// Evaluate a random sample of this many users (nil: all).
    public var users: Int?
    /// Evaluate only these users (indices into the interaction log's user ids), e.g.
    /// the users a model was not trained on. nil: every evaluable user.
    public var onlyUsers: Set<Int>?
    public var seed: UInt64 = 1
    /// Test only: build neighbours without the validation items too.
    public var strict = false
    /// How many retrieved candidates the reranker sees.
    public var candidates = 20
    public var threads = 2

    public init() {}

    /// How many items at the end of every sequence the neighbour builder never sees.
    public var trainingCut: Int { heldOut == .validation || strict ? 2 : 1 }
}

public struct EvaluationReport: Sendable, Codable {
    public var users = 0
    public var retrieval = RankingMetrics()
    public var popularity = RankingMetrics()
    /// Retrieval then the reranker (nil without one).
    public var pipeline: RankingMetrics?
    /// The pipeline's NDCG@10 against retrieval's on the same users (nil without a reranker).
    public var pipelineVsRetrieval: PairedComparison?
    public var heldOut: HeldOut = .test
    public var buildSeconds = 0.0
    public var evaluateSeconds = 0.0
}

/// Two rankers' per-user NDCG@10 on the same users: how much better the second is, and
/// how sure. With ~100 held-out users, one or two more hits move NDCG@10 by 10%; the
/// interval says whether a difference is more than that noise.
public struct PairedComparison: Sendable, Codable, Equatable {
    public var users = 0
    /// mean(second) / mean(first) - 1; 0 when the first's mean is 0.
    public var relative = 0.0
    /// 95% percentile interval of `relative` over `resamples` paired bootstrap resamples
    /// (users drawn with replacement, each user's two values kept together).
    public var low = 0.0
    public var high = 0.0
    public var resamples = 0
    /// Users whose NDCG@10 is higher with the second ranker, lower, and equal.
    public var better = 0
    public var worse = 0
    public var tied = 0

    /// `first[i]` and `second[i]` are user i's values; the resampling is seeded, so the
    /// interval is the same on every run.
    public init(first: [Double], second: [Double], resamples: Int = 2000, seed: UInt64 = 1) {
        precondition(first.count == second.count, "paired values must come in pairs")
        let n = first.count
        users = n
        self.resamples = n == 0 ? 0 : resamples
        for (a, b) in zip(first, second) {
            if b > a { better += 1 } else if b < a { worse += 1 } else { tied += 1 }
        }
        func gain(_ a: Double, _ b: Double) -> Double { a > 0 ? b / a - 1 : 0 }
        relative = gain(first.reduce(0, +), second.reduce(0, +))
        guard n > 0 else { return }
        var rng = SplitMix64(seed: seed)
        var gains = [Double]()
        gains.reserveCapacity(resamples)
        for _ in 0..<resamples {
            var a = 0.0, b = 0.0
            for _ in 0..<n {
                let i = Int(rng.next() % UInt64(n))
                a += first[i]
                b += second[i]
            }
            gains.append(gain(a, b))
        }
        gains.sort()
        low = gains[Int((0.025 * Double(resamples - 1)).rounded())]
        high = gains[Int((0.975 * Double(resamples - 1)).rounded())]
    }
}

public enum EvaluationError: Error, Equatable, CustomStringConvertible {
    case noUsers(String)
    case rerankerReturnedNonCandidate(user: Int, item: Int32)
    case rerankerRepeated(user: Int, item: Int32)
    case neighbours(NeighbourError)
    case catalog(CatalogPackError)

    public var description: String {
        switch self {
        case .noUsers(let r): return "nothing to evaluate: \(r)"
        case .rerankerReturnedNonCandidate(let u, let i): return "re-ranker returned item \(i), not a candidate, for user \(u)"
        case .rerankerRepeated(let u, let i): return "re-ranker returned item \(i) twice for user \(u)"
        case .neighbours(let e): return e.description
        case .catalog(let e): return e.description
        }
    }
}

/// A dataset prepared for leave-one-out: catalog items and every user's full
/// time-ordered sequence.
public struct LeaveOneOutData: Sendable {
    public let items: ItemList
    public let sequences: ItemSequences
    /// Interactions whose item is not in the item list (left out).
    public let skippedInteractions: Int
    /// Users with at least 3 interactions (history, validation, test).
    public let evaluableUsers: [Int]

    public init(items: ItemList, log: InteractionLog) {
        var index: [String: Int32] = [:]
        for (i, id) in items.ids.enumerated() { index[id] = Int32(i) }
        let made = ItemSequences.make(from: log, itemCount: items.count) { index[$0] }
        self.init(items: items, sequences: made.sequences, skippedInteractions: made.skippedInteractions)
    }

    public init(items: ItemList, sequences: ItemSequences, skippedInteractions: Int = 0) {
        self.items = items
        self.sequences = sequences
        self.skippedInteractions = skippedInteractions
        evaluableUsers = (0..<sequences.userCount).filter { sequences.sequence($0).count >= 3 }
    }

    /// The neighbour catalog built from the training part: every sequence without its last `cut` items.
    public func trainingCatalog(cut: Int, parameters: NeighbourParameters, retrieval: RetrievalSettings = RetrievalSettings(),
                                threads: Int = 2) throws(EvaluationError) -> ItemCatalog {
        let train = sequences.droppingLast(cut)
        let table: NeighbourTable
        do { table = try NeighbourBuilder.build(train, parameters: parameters, threads: threads) } catch { throw .neighbours(error) }
        let info = CatalogInfo(id: "eval", name: "leave-one-out training part", method: parameters.method.rawValue,
                               parameters: parameters.json, retrieval: retrieval)
        do {
            return try ItemCatalog(info: info, items: items, popularity: train.itemCounts(), neighbours: table)
        } catch {
            throw .catalog(error)
        }
    }

    /// The users to evaluate: all evaluable ones, or a seeded random sample.
    public func sampleUsers(_ n: Int?, seed: UInt64, from pool: Set<Int>? = nil) -> [Int] {
        let eligible = pool.map { p in evaluableUsers.filter { p.contains($0) } } ?? evaluableUsers
        guard let n, n < eligible.count else { return eligible }
        var users = eligible
        var rng = SplitMix64(seed: seed)
        for i in 0..<n {  // partial Fisher–Yates
            let j = i + Int(rng.next() % UInt64(users.count - i))
            users.swapAt(i, j)
        }
        return users[..<n].sorted()
    }

    /// Runs the protocol once: builds the training catalog, then ranks every user's target.
    public func evaluate(_ o: EvaluationOptions, reranker: Reranker? = nil) throws -> EvaluationReport {
        let users = sampleUsers(o.users, seed: o.seed, from: o.onlyUsers)
        guard !users.isEmpty else {
            // With a list, other users may well be evaluable: the list is the reason.
            if let only = o.onlyUsers {
                throw EvaluationError.noUsers("none of the \(only.count) listed users has 3 or more interactions with catalog items")
            }
            throw EvaluationError.noUsers("no user has 3 or more interactions with catalog items")
        }
        let t0 = Date()
        let catalog = try trainingCatalog(cut: o.trainingCut, parameters: o.neighbours, retrieval: o.retrieval, threads: o.threads)
        let t1 = Date()
        var report = try evaluate(catalog: catalog, heldOut: o.heldOut, users: users, settings: [o.retrieval],
                                  candidates: o.candidates, threads: o.threads, reranker: reranker)[0]
        report.buildSeconds = t1.timeIntervalSince(t0)
        report.evaluateSeconds = Date().timeIntervalSince(t1)
        return report
    }

    /// Ranks every user's held-out item with each retrieval setting on one training
    /// catalog (which must come from `trainingCut` for `heldOut`). One report per setting.
    /// Without a reranker, users are split across `threads` threads (one retriever each).
    public func evaluate(catalog: ItemCatalog, heldOut: HeldOut, users: [Int], settings: [RetrievalSettings],
                         candidates: Int = 20, threads: Int = 2, reranker: Reranker? = nil) throws -> [EvaluationReport] {
        var tally: Tally
        if let reranker {
            tally = try score(users[...], catalog: catalog, heldOut: heldOut, settings: settings) { history, retrieved, user in
                try Self.pipelineList(catalog: catalog, history: history, retrieved: retrieved, candidates: candidates,
                                      user: user, reranker: reranker)
            }
        } else {
            let parts = max(1, min(threads, users.count / 64, 16))
            let results = ParallelResults<Tally>(count: parts)
            let chunk = (users.count + parts - 1) / parts
            DispatchQueue.concurrentPerform(iterations: parts) { t in
                let mine = users[min(t * chunk, users.count)..<min((t + 1) * chunk, users.count)]
                // Without a pipeline closure nothing in score() throws.
                results[t] = try? self.score(mine, catalog: catalog, heldOut: heldOut, settings: settings, pipeline: nil)
            }
            tally = Tally(settings: settings.count)
            for t in 0..<parts { if let r = results[t] { tally.merge(r) } }
        }
        return tally.retrieval.map { a in
            var rep = EvaluationReport()
            rep.users = users.count
            rep.heldOut = heldOut
            rep.retrieval = a.mean
            rep.popularity = tally.popularity.mean
            rep.pipeline = reranker == nil ? nil : tally.pipeline.mean
            if reranker != nil {
                rep.pipelineVsRetrieval = PairedComparison(first: tally.pairs.map(\.retrieval), second: tally.pairs.map(\.pipeline))
            }
            return rep
        }
    }

    /// Metric sums of one slice of users.
    struct Tally: Sendable {
        var retrieval: [MetricsAccumulator]   // one per retrieval setting
        var popularity = MetricsAccumulator()
        var pipeline = MetricsAccumulator()
        /// Per user, in order: NDCG@10 of the first retrieval setting and of the pipeline
        /// (only with a pipeline).
        var pairs: [(retrieval: Double, pipeline: Double)] = []

        init(settings: Int) { retrieval = Array(repeating: MetricsAccumulator(), count: settings) }

        mutating func merge(_ o: Tally) {
            for i in retrieval.indices { retrieval[i].merge(o.retrieval[i]) }
            popularity.merge(o.popularity)
            pipeline.merge(o.pipeline)
            pairs += o.pairs
        }
    }

    private func score(_ users: ArraySlice<Int>, catalog: ItemCatalog, heldOut: HeldOut, settings: [RetrievalSettings],
                       pipeline: ((ArraySlice<Int32>, [RetrievedItem], Int) throws -> [RetrievedItem])?) throws -> Tally {
        // One deeper than any cutoff: a target tied with the 50th item and beyond would
        // otherwise count at position 50, the end of the list read (a target tied at score
        // 0 with every unseen item was a Recall@50 hit). Read to 51, such a tie ends at 51 or
        // later: a miss at every cutoff, as the pessimistic rule says.
        let depth = RankingMetrics.depth + 1
        // One retriever whose settings change, not one per setting: each owns scratch of
        // ~13 bytes per catalog item, and a --grid of 20,000 retrieval settings took 1.8 GB.
        let longest = settings.map(\.historyLength).max() ?? 1
        let retriever = Retriever(catalog: catalog, settings: settings.first ?? RetrievalSettings(),
                                  maxHistoryLength: max(200, longest))
        let popular = Retriever(catalog: catalog, settings: RetrievalSettings(historyLength: 0, recencyDecay: 1, popularityWeight: 1))
        var tally = Tally(settings: settings.count)
        let back = heldOut == .test ? 1 : 2
        for u in users {
            let seq = sequences.sequence(u)
            let targetPos = seq.endIndex - back
            let history = seq[seq.startIndex..<targetPos]
            let target = seq[targetPos]
            for (s, setting) in settings.enumerated() {
                retriever.settings = setting
                let got = retriever.retrieve(indices: history, count: depth)
                tally.retrieval[s].add(rank: Metrics.rank(of: target, in: got.items))
                if s == 0, let pipeline {
                    let rank = Metrics.rank(of: target, in: try pipeline(history, got.items, u))
                    tally.pipeline.add(rank: rank)
                    tally.pairs.append((Metrics.ndcg(rank: Metrics.rank(of: target, in: got.items), cutoff: 10),
                                        Metrics.ndcg(rank: rank, cutoff: 10)))
                }
            }
            tally.popularity.add(rank: Metrics.rank(of: target, in: popular.retrieve(indices: history, count: depth).items))
        }
        return tally
    }

    /// The reranked candidates, then candidates it left out, then the rest of the retrieved list.
    static func pipelineList(catalog: ItemCatalog, history: ArraySlice<Int32>, retrieved: [RetrievedItem], candidates: Int,
                             user: Int, reranker: Reranker) throws -> [RetrievedItem] {
        let cand = Array(retrieved.prefix(candidates))
        // Nothing to rank (the user has seen every item; the target is a repeat): the LLM
        // ranker refuses an empty list, which ended the whole run.
        guard !cand.isEmpty else { return retrieved }
        let ranked = try reranker(catalog, history, cand)
        var used = Set<Int32>()
        let candidateSet = Set(cand.map(\.index))
        for r in ranked {
            guard candidateSet.contains(r.index) else { throw EvaluationError.rerankerReturnedNonCandidate(user: user, item: r.index) }
            guard used.insert(r.index).inserted else { throw EvaluationError.rerankerRepeated(user: user, item: r.index) }
        }
        // Positions, not scores, order the merged list: each entry gets a decreasing
        // score, equal only within the reranker's own ties and retrieval's ties in the
        // part the reranker did not see (both kept by rank()).
        var list: [RetrievedItem] = []
        var prev: Float? = nil
        var position = Float(retrieved.count + ranked.count + 1)
        for r in ranked {
            if let p = prev, p != r.score { position -= 1 }
            prev = r.score
            list.append(RetrievedItem(index: r.index, score: position))
        }
        // The rest keep retrieval's ties (a target tied with items past the end of the
        // list stays tied with them, as it does in retrieval's own ranking).
        var previous: Float? = nil
        for r in retrieved where !used.contains(r.index) {
            if previous != r.score { position -= 1 }
            previous = r.score
            list.append(RetrievedItem(index: r.index, score: position))
        }
        return list
    }
}

/// One slot per worker thread; each thread writes only its own slot.
final class ParallelResults<T>: @unchecked Sendable {
    private let slots: UnsafeMutablePointer<T?>   // (count) owned; freed in deinit
    private let count: Int

    init(count: Int) {
        self.count = count
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil, count: count)
    }

    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }

    subscript(i: Int) -> T? {
        get { slots[i] }
        set { slots[i] = newValue }
    }
}

/// A small deterministic generator (Steele, Lea and Flood's SplitMix64) for user samples
/// and synthetic data.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
