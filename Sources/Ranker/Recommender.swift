import Catalog
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
}

public enum RecommenderError: Error, Equatable, CustomStringConvertible {
    case catalogMismatch(String)
    case nothingToRecommend(profile: String)
    case profilesUnsupported(model: String)

    public var description: String {
        switch self {
        case .catalogMismatch(let m): return "catalog and model do not fit together: \(m)"
        case .nothingToRecommend(let p): return "profile '\(p)' has seen every catalog item; there is nothing left to recommend"
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
    public var catalogID: String { catalog.info.id }
    /// Interactions read per request (the store's retention cap bounds them anyway):
    /// retrieval never offers an item seen in any of them.
    public var historyWindow = 100_000

    public init(ranker: Ranker, catalog: ItemCatalog, store: HistoryStore, modelID: String) throws {
        self.ranker = ranker
        self.catalog = catalog
        self.store = store
        self.modelID = modelID
        retriever = Retriever(catalog: catalog)
        // A catalog whose titles the model cannot even tokenize is the wrong catalog.
        let sample = catalog.titles.prefix(50)
        let unknown = sample.filter { ranker.tokenizer.encode($0, addBOS: false).contains(ranker.tokenizer.unk) }.count
        if !sample.isEmpty && unknown * 2 > sample.count {
            throw RecommenderError.catalogMismatch("\(unknown) of the first \(sample.count) catalog titles contain tokens the model's tokenizer does not know")
        }
    }

    /// Candidates retrieved for a top-`k` request: the requested or the model's count,
    /// at least k.
    func candidateCount(k: Int, candidates: Int?) -> Int {
        max(k, min(candidates ?? ranker.settings.maxCandidates, Retriever.maxCount))
    }

    func cacheModelID(mode: ScoringMode, candidates: Int) -> String { "\(modelID)/\(mode.rawValue)/c\(candidates)" }

    /// Recommends `k` items for `profile`. A cached ranking for the same model,
    /// catalog, mode and history digest is served without running the model.
    public func recommend(profile: String, k: Int = 10, mode: ScoringMode? = nil, candidates: Int? = nil,
                          useCache: Bool = true) throws -> Recommendation {
        let t0 = Date()
        let mode = mode ?? ranker.settings.mode
        let nCand = candidateCount(k: k, candidates: candidates)
        let history = try store.recent(profile: profile, limit: historyWindow)
        let digest = HistoryDigest(of: history)
        let summary = try storedSummary(profile)
        let inputDigest = rankingInputDigest(digest, summary: summary)
        let cacheID = cacheModelID(mode: mode, candidates: nCand)
        var notes: [String] = []

        if useCache, let cached = try store.cachedRecommendations(profile: profile, modelID: cacheID, catalogID: catalogID),
           cached.historyDigest == inputDigest, cached.items.count >= k {
            var items: [RankedItem] = []
            for (r, it) in cached.items.prefix(k).enumerated() {
                let title = catalog.index(of: it.item).map { catalog.titles[Int($0)] } ?? it.item
                items.append(RankedItem(id: it.item, title: title, score: it.score, rank: r + 1))
            }
            var t = Recommendation.Timings()
            t.totalSeconds = Date().timeIntervalSince(t0)
            return Recommendation(profile: profile, items: items, mode: mode, fromCache: true, candidates: nCand,
                                  historyLength: history.count, historyDigest: digest.description, timings: t, notes: [])
        }

        // Retrieval over the whole window; the prompt shows the most recent titles.
        let r0 = Date()
        let ids = history.map(\.item)
        let retrieval = retriever.retrieve(history: ids, count: nCand)
        var timings = Recommendation.Timings()
        timings.retrievalSeconds = Date().timeIntervalSince(r0)
        if retrieval.unknownCount > 0 {
            notes.append("\(retrieval.unknownCount) history items are not in the catalog and were skipped")
        }
        if history.isEmpty { notes.append("empty history: candidates are the most popular items") }
        let cands = retrieval.items.map { Candidate(id: catalog.ids[Int($0.index)], title: catalog.titles[Int($0.index)]) }
        guard !cands.isEmpty else { throw RecommenderError.nothingToRecommend(profile: profile) }
        if cands.count < k { notes.append("only \(cands.count) unseen candidates exist") }
        let titles = ids.compactMap { catalog.index(of: $0).map { catalog.titles[Int($0)] } }

        let result = try ranker.rank(history: titles, profile: summary, candidates: cands, k: min(k, cands.count),
                                     mode: mode, cacheKey: profile)
        timings.prefillSeconds = result.timings.prefillSeconds
        timings.scoringSeconds = result.timings.scoringSeconds
        timings.promptTokens = result.timings.promptTokens
        timings.computedPromptTokens = result.timings.computedPromptTokens
        // The ranking stands even if it cannot be cached (another writer holding the lock
        // past the busy timeout, a full disk): it is returned with a note.
        do {
            try store.putCachedRecommendations(CachedRecommendations(
                profile: profile, modelID: cacheID, catalogID: catalogID, historyDigest: inputDigest,
                createdAt: Int64(Date().timeIntervalSince1970), items: result.items.map { ScoredItem(item: $0.id, score: $0.score) }))
        } catch {
            notes.append("not cached: \(error)")
        }
        timings.totalSeconds = Date().timeIntervalSince(t0)
        return Recommendation(profile: profile, items: result.items, mode: mode, fromCache: false, candidates: cands.count,
                              historyLength: history.count, historyDigest: digest.description, timings: timings, notes: notes)
    }

    /// Whether the cached ranking of `profile` is missing or older than its history.
    /// `k` and `candidates` as `recommend` would get them (they name the cache entry).
    public func isStale(profile: String, k: Int = 10, mode: ScoringMode? = nil, candidates: Int? = nil) throws -> Bool {
        let mode = mode ?? ranker.settings.mode
        let nCand = candidateCount(k: k, candidates: candidates)
        guard let cached = try store.cachedRecommendations(profile: profile, modelID: cacheModelID(mode: mode, candidates: nCand),
                                                           catalogID: catalogID) else { return true }
        let digest = HistoryDigest(of: try store.recent(profile: profile, limit: historyWindow))
        return cached.historyDigest != rankingInputDigest(digest, summary: try storedSummary(profile))
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
