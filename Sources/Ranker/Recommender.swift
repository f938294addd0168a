import Catalog
import FileSafety
import Foundation
import History
import Llama
import Tokenizer

/// One recommendation for a profile, as the CLI prints it.
public struct Recommendation: Sendable, Codable {
    public struct Timings: Sendable, Codable {
        public var retrievalSeconds = 0.0
        public var prefillSeconds = 0.0
        public var scoringSeconds = 0.0
        public var totalSeconds = 0.0
        public var promptTokens = 0
        public var computedPromptTokens = 0
    }

    public var profile: String
    public var items: [RankedItem]
    public var mode: ScoringMode
    public var fromCache: Bool
    public var candidates: Int
    public var historyLength: Int
    public var historyDigest: String
    public var timings: Timings
    /// Notes for the user: defaults applied, items skipped, fallbacks taken.
    public var notes: [String]
    /// Why a fresh ranking could not be cached (a full disk, another writer holding the
    /// lock past the busy timeout), or nil; also in `notes`. (A ranking whose history
    /// changed while it ran is not cached either, by design: that is only a note.)
    public var cacheFailure: String? = nil
    /// true: the candidates in retrieval order, not ranked by the model (`retrievalOrder`:
    /// what a UI shows at once while the model's ranking is prepared); nil otherwise.
    public var provisional: Bool? = nil
}

public enum RecommenderError: Error, Equatable, CustomStringConvertible {
    case catalogMismatch(String)
    case nothingToRecommend(profile: String)
    case profilesUnsupported(model: String)
    case historyChangedDuringGeneration(profile: String)

    public var description: String {
        switch self {
        case .catalogMismatch(let m): return "catalog and model do not fit together: \(m)"
        case .nothingToRecommend(let p): return "profile '\(p)' has seen every catalog item; there is nothing left to recommend"
        case .historyChangedDuringGeneration(let p):
            return "a forget ran while the summary of profile '\(p)' was being generated (it may have removed "
                + "what the summary was made from); the summary was not stored (run again)"
        case .profilesUnsupported(let m):
            return "\(m) has no palr.profile_template: it was not trained to write profile summaries "
                + "(for a model that was: palr-convert hf … --palr-config FILE.json with \"profile_template\")"
        }
    }
}

/// The whole pipeline: history store → retrieval → LLM ranking → cached result.
public final class Recommender {
    public let ranker: Ranker
    public let catalog: ItemCatalog
    public let store: HistoryStore
    public let retriever: Retriever
    /// Identifies the model in cached results (the CLI uses file name and GGUF fingerprint).
    public let modelID: String
    /// Identifies the catalog in cached results: its id and a digest of its content, so
    /// a catalog rebuilt under the same id invalidates what was cached against the old one.
    public let catalogID: String
    /// Interactions read per request (the store's retention cap bounds them anyway):
    /// retrieval never offers an item seen in any of them.
    public var historyWindow = 100_000

    public init(ranker: Ranker, catalog: ItemCatalog, store: HistoryStore, modelID: String) throws {
        self.ranker = ranker
        self.catalog = catalog
        self.store = store
        // The store refuses ids with control or bidirectional control characters: a model
        // file named "a\tb.gguf", or a pack whose palr.catalog.id holds a newline, left every
        // ranking uncached (and refresh failing each run). Such characters become U+FFFD; the
        // fingerprint and the content digest still tell models and catalogs apart.
        self.modelID = StoredNames.replacingRefused(modelID)
        retriever = Retriever(catalog: catalog)
        // The store keeps ids of at most 256 bytes: the id is cut (on a character) to fit,
        // in one pass (dropping a character at a time and counting again took 83 s for a
        // 64 KiB palr.catalog.id, and a 1 MiB one never finished).
        let id = StoredNames.prefix(StoredNames.replacingRefused(catalog.info.id), maxBytes: 200).text
        catalogID = "\(id)#\(catalog.contentDigest)"
        // A catalog whose titles the model cannot even tokenize is the wrong catalog.
        let sample = catalog.titles.prefix(50)
        let unknown = sample.filter { ranker.tokenizer.encode($0, addBOS: false).contains(ranker.tokenizer.unk) }.count
        if !sample.isEmpty && unknown * 2 > sample.count {
            throw RecommenderError.catalogMismatch("\(unknown) of the first \(sample.count) catalog titles contain tokens the model's tokenizer does not know")
        }
    }

    /// Candidates retrieved for a top-`k` request: the requested or the model's count,
    /// at least k.
    public func candidateCount(k: Int, candidates: Int?) -> Int {
        max(k, min(candidates ?? ranker.settings.maxCandidates, Retriever.maxCount))
    }

    /// How many of `candidates` a ranking for the top `k` scores, and caches: every one it
    /// scores anyway (letters: its windows of 20; likelihood: all), so a later request for
    /// more of them (k ≤ that) is served from the cache too; generate mode writes only k.
    public func rankedCount(k: Int, mode: ScoringMode, candidates: Int) -> Int {
        switch mode {
        case .letters:
            let window = PALRSettings.letters.count
            return min(candidates, (k + window - 1) / window * window)
        case .likelihood: return candidates
        case .generate: return min(candidates, k)
        }
    }

    func cacheModelID(mode: ScoringMode, candidates: Int) -> String { "\(modelID)/\(mode.rawValue)/c\(candidates)" }

    /// Recommends `k` items for `profile`. A cached ranking for the same model,
    /// catalog, mode and history digest is served without running the model.
    public func recommend(profile: String, k: Int = 10, mode: ScoringMode? = nil, candidates: Int? = nil,
                          useCache: Bool = true) throws -> Recommendation {
        let t0 = Date()
        let input = try lookUp(profile: profile, k: k, mode: mode, candidates: candidates, useCache: useCache)
        if let hit = input.hit { return hit }
        let (mode, nCand, history, digest, summary) = (input.mode, input.candidates, input.history, input.digest, input.summary)
        var notes: [String] = []

        // Retrieval over the whole window; the prompt shows the most recent titles.
        let retrieved = try retrieve(profile: profile, history: history, k: k, count: nCand)
        var timings = Recommendation.Timings()
        timings.retrievalSeconds = retrieved.seconds
        notes += retrieved.notes
        let cands = retrieved.items.map { Candidate(id: catalog.ids[Int($0.index)], title: catalog.titles[Int($0.index)]) }
        let titles = history.compactMap { catalog.index(of: $0.item).map { catalog.titles[Int($0)] } }

        let ranked = try ranker.rank(history: titles, profile: summary, candidates: cands,
                                     k: min(rankedCount(k: k, mode: mode, candidates: nCand), cands.count),
                                     mode: mode, cacheKey: profile)
        let items = Array(ranked.items.prefix(k))
        // Generate mode can stop short when the context fills: said, and not cached (a
        // cached list must hold k items, so it could never be served).
        let complete = items.count >= min(k, cands.count)
        if !complete {
            notes.append("the model's context filled after \(items.count) of \(min(k, cands.count)) titles "
                         + "(generate mode): rank fewer candidates, or lower palr.max_history or palr.title_token_limit")
        }
        timings.prefillSeconds = ranked.timings.prefillSeconds
        timings.scoringSeconds = ranked.timings.scoringSeconds
        timings.promptTokens = ranked.timings.promptTokens
        timings.computedPromptTokens = ranked.timings.computedPromptTokens
        // The ranking stands even if it cannot be cached (another writer holding the lock
        // past the busy timeout, a full disk): it is returned with a note.
        var cacheFailure: String?
        if complete {
            do {
                // Only for the history it was computed from (a forget meanwhile must not
                // leave a ranking derived from the forgotten items behind).
                let stored = try store.putCachedRecommendations(CachedRecommendations(
                    profile: profile, modelID: input.cacheID, catalogID: catalogID, historyDigest: input.inputDigest,
                    createdAt: Int64(Date().timeIntervalSince1970), items: ranked.items.map { ScoredItem(item: $0.id, score: $0.score) }),
                    ifHistory: digest, limit: historyWindow)
                if !stored { notes.append("not cached: the history changed while it was being ranked") }
            } catch {
                cacheFailure = "\(error)"
                notes.append("not cached: \(error)")
            }
        }
        timings.totalSeconds = Date().timeIntervalSince(t0)
        return Recommendation(profile: profile, items: items, mode: mode, fromCache: false, candidates: cands.count,
                              historyLength: history.count, historyDigest: digest.description, timings: timings, notes: notes,
                              cacheFailure: cacheFailure)
    }

    /// The candidates retrieval offers `history` (at least one, else `nothingToRecommend`),
    /// with the notes a recommendation of them carries and the seconds it took.
    private func retrieve(profile: String, history: [Interaction], k: Int, count: Int) throws
        -> (items: [RetrievedItem], notes: [String], seconds: Double) {
        let r0 = Date()
        let retrieval = retriever.retrieve(history: history.map(\.item), count: count)
        let seconds = Date().timeIntervalSince(r0)
        var notes = historyNotes(unknown: retrieval.unknownCount, empty: history.isEmpty)
        guard !retrieval.items.isEmpty else { throw RecommenderError.nothingToRecommend(profile: profile) }
        if retrieval.items.count < k { notes.append("only \(retrieval.items.count) unseen candidates exist") }
        return (retrieval.items, notes, seconds)
    }

    /// The best `k` of `profile`'s candidates in retrieval order, without the model, in
    /// milliseconds: what a UI shows at once while the model's ranking is being prepared
    /// (`provisional` is true; scores are retrieval scores; nothing is cached). `mode` and
    /// `candidates` as the ranking that will follow gets them.
    public func retrievalOrder(profile: String, k: Int = 10, mode: ScoringMode? = nil,
                               candidates: Int? = nil) throws -> Recommendation {
        let t0 = Date()
        let history = try store.recent(profile: profile, limit: historyWindow)
        let retrieved = try retrieve(profile: profile, history: history, k: k, count: candidateCount(k: k, candidates: candidates))
        let items = retrieved.items.prefix(k).enumerated().map { r, it in
            RankedItem(id: catalog.ids[Int(it.index)], title: catalog.titles[Int(it.index)], score: Double(it.score), rank: r + 1)
        }
        var timings = Recommendation.Timings()
        timings.retrievalSeconds = retrieved.seconds
        timings.totalSeconds = Date().timeIntervalSince(t0)
        return Recommendation(profile: profile, items: items, mode: mode ?? ranker.settings.mode, fromCache: false,
                              candidates: retrieved.items.count, historyLength: history.count,
                              historyDigest: HistoryDigest(of: history).description, timings: timings,
                              notes: retrieved.notes + ["provisional: the retrieval order; the model has not ranked it yet"],
                              provisional: true)
    }

    func historyNotes(unknown: Int, empty: Bool) -> [String] {
        var notes: [String] = []
        if unknown > 0 { notes.append("\(unknown) history items are not in the catalog and were skipped") }
        if empty { notes.append("empty history: candidates are the most popular items") }
        return notes
    }

    /// The cached ranking `recommend` would serve: computed from the same input (history
    /// and summary), with `k` items — or every unseen catalog item, when fewer exist —
    /// each still a catalog item (the content digest in `catalogID` makes that hold;
    /// checked anyway: a cached list is served whole or not at all). With the candidate
    /// count and the notes a fresh ranking of that input gives.
    func cachedRanking(profile: String, history: [Interaction], inputDigest: HistoryDigest, cacheID: String,
                       k: Int, candidates nCand: Int) throws -> (items: [RankedItem], candidates: Int, notes: [String])? {
        guard let cached = try store.cachedRecommendations(profile: profile, modelID: cacheID, catalogID: catalogID),
              cached.historyDigest == inputDigest else { return nil }
        var known = Set<Int32>()
        var unknown = 0
        for it in history {
            if let i = catalog.index(of: it.item) { known.insert(i) } else { unknown += 1 }
        }
        let unseen = catalog.count - known.count
        let want = min(k, unseen)
        guard want > 0, cached.items.count >= want else { return nil }
        var items: [RankedItem] = []
        for (r, it) in cached.items.prefix(want).enumerated() {
            guard let i = catalog.index(of: it.item) else { return nil }
            items.append(RankedItem(id: it.item, title: catalog.titles[Int(i)], score: it.score, rank: r + 1))
        }
        var notes = historyNotes(unknown: unknown, empty: history.isEmpty)
        if want < k { notes.append("only \(want) unseen candidates exist") }
        return (items, min(nCand, unseen), notes)
    }

    /// What a ranking of `profile` starts from (one read of the history and summary), and
    /// the cached recommendation that serves it when `useCache` and there is one.
    private func lookUp(profile: String, k: Int, mode: ScoringMode?, candidates: Int?, useCache: Bool) throws
        -> (mode: ScoringMode, candidates: Int, history: [Interaction], digest: HistoryDigest, summary: String?,
            inputDigest: HistoryDigest, cacheID: String, hit: Recommendation?) {
        let t0 = Date()
        let mode = mode ?? ranker.settings.mode
        let nCand = candidateCount(k: k, candidates: candidates)
        let history = try store.recent(profile: profile, limit: historyWindow)
        let digest = HistoryDigest(of: history)
        let summary = try storedSummary(profile)
        let inputDigest = rankingInputDigest(digest, summary: summary)
        let cacheID = cacheModelID(mode: mode, candidates: nCand)
        var hit: Recommendation?
        if useCache, let cached = try cachedRanking(profile: profile, history: history, inputDigest: inputDigest,
                                                    cacheID: cacheID, k: k, candidates: nCand) {
            var t = Recommendation.Timings()
            t.totalSeconds = Date().timeIntervalSince(t0)
            hit = Recommendation(profile: profile, items: cached.items, mode: mode, fromCache: true, candidates: cached.candidates,
                                 historyLength: history.count, historyDigest: digest.description, timings: t, notes: cached.notes)
        }
        return (mode, nCand, history, digest, summary, inputDigest, cacheID, hit)
    }

    /// The recommendation `recommend` would serve from the cache now (one read of the
    /// history), or nil when it would rank afresh.
    public func cachedRecommendation(profile: String, k: Int = 10, mode: ScoringMode? = nil,
                                     candidates: Int? = nil) throws -> Recommendation? {
        try lookUp(profile: profile, k: k, mode: mode, candidates: candidates, useCache: true).hit
    }

    /// Whether `recommend` would rank `profile` afresh: no cached ranking of its current
    /// history it could serve. `k` and `candidates` as `recommend` would get them (they
    /// name the cache entry).
    public func isStale(profile: String, k: Int = 10, mode: ScoringMode? = nil, candidates: Int? = nil) throws -> Bool {
        try cachedRecommendation(profile: profile, k: k, mode: mode, candidates: candidates) == nil
    }

    /// The profile summary ranking prompts include: the stored one, if the model writes them.
    func storedSummary(_ profile: String) throws -> String? {
        guard ranker.settings.writesProfiles else { return nil }
        return try store.profileSummary(profile: profile)?.text
    }

    /// What a cached ranking was computed from: the history, and the profile summary the
    /// prompt showed (none: the history digest itself, so such entries stay valid).
    func rankingInputDigest(_ history: HistoryDigest, summary: String?) -> HistoryDigest {
        guard let summary, !summary.isEmpty else { return history }
        return history.combined(with: summary)
    }
}
