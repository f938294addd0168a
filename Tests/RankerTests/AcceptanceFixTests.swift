import Catalog
import Foundation
import GGUF
import History
import Llama
import Testing
import Tokenizer
@testable import Ranker

/// Defects an acceptance pass found in the pipeline, each pinned by a test that failed before its fix.
@Suite struct AcceptanceFixTests {
    /// A copy of `c` under the same info, with neighbour row `changedRow` emptied when given.
    func copy(of c: ItemCatalog, emptying changedRow: Int? = nil) throws -> ItemCatalog {
        let table = NeighbourTable(itemCount: c.count, k: c.k)
        for i in 0..<c.count where i != changedRow { table.setRow(i, c.neighbours(of: i)) }
        return try ItemCatalog(info: c.info, items: ItemList(ids: c.ids, titles: c.titles),
                               popularity: c.popularityValues, neighbours: table)
    }

    @Test func aCatalogRebuiltUnderTheSameIdDoesNotServeTheOldCache() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-rebuilt")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        let seq = ml.data.sequences.sequence(0).prefix(8)
        _ = try store.record(seq.enumerated().map { i, item in
            NewInteraction(profile: "alice", item: ml.catalog.ids[Int(item)], kind: .view, value: nil, timestamp: Int64(1000 + i))
        }, createProfiles: true)
        let same = try copy(of: ml.catalog)
        let rebuilt = try copy(of: ml.catalog, emptying: Int(seq.last!))
        #expect(same.contentDigest == ml.catalog.contentDigest)
        #expect(rebuilt.contentDigest != ml.catalog.contentDigest)
        let ranker = try makeRanker()
        let first = try Recommender(ranker: ranker, catalog: ml.catalog, store: store, modelID: "tiny").recommend(profile: "alice", k: 5)
        #expect(!first.fromCache)
        let again = try Recommender(ranker: ranker, catalog: same, store: store, modelID: "tiny").recommend(profile: "alice", k: 5)
        #expect(again.fromCache, "an identical catalog serves the cache")
        let rec = try Recommender(ranker: ranker, catalog: rebuilt, store: store, modelID: "tiny")
        #expect(try rec.isStale(profile: "alice", k: 5))
        #expect(try !rec.recommend(profile: "alice", k: 5).fromCache, "a rebuilt catalog ranks afresh")
    }

    /// A profile with fewer unseen items than k: its cached ranking is served (and it is
    /// not stale), with the same candidate count and note a fresh ranking gives.
    @Test func aShortRankingIsServedFromTheCacheWithTheSameFigures() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-short")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        // A 12-item catalog: seen 9 of them (and one id it does not know).
        let ids = Array(ml.catalog.ids.prefix(12)), titles = Array(ml.catalog.titles.prefix(12))
        let small = try ItemCatalog(info: CatalogInfo(id: "small", name: "small", method: "imported"),
                                    items: ItemList(ids: ids, titles: titles), popularity: [Float](repeating: 1, count: 12),
                                    neighbours: NeighbourTable(itemCount: 12, k: 2))
        _ = try store.record((ids.prefix(9) + ["not-in-catalog"]).enumerated().map { i, id in
            NewInteraction(profile: "bob", item: id, kind: .view, value: nil, timestamp: Int64(100 + i))
        }, createProfiles: true)
        let rec = try Recommender(ranker: try makeRanker(), catalog: small, store: store, modelID: "tiny")
        let fresh = try rec.recommend(profile: "bob", k: 5)
        #expect(!fresh.fromCache && fresh.items.count == 3 && fresh.candidates == 3)
        #expect(try !rec.isStale(profile: "bob", k: 5))
        let cached = try rec.recommend(profile: "bob", k: 5)
        #expect(cached.fromCache)
        #expect(cached.items.map(\.id) == fresh.items.map(\.id))
        #expect(cached.candidates == fresh.candidates)
        #expect(cached.notes == fresh.notes, "fresh: \(fresh.notes), cached: \(cached.notes)")
    }

    @Test func templatesWithoutTheirPlaceholdersAreRefusedAtLoad() throws {
        var s = PALRSettings()
        try s.checkTemplates()
        s.candidateItem = "- {title}\n"
        #expect(throws: GGUFError.self) { try s.checkTemplates() }
        s = PALRSettings()
        s.lettersTemplate = "Watched:\n{history}Next: ("
        #expect(throws: GGUFError.self) { try s.checkTemplates() }
        s = PALRSettings()
        s.historyItem = "- \n"
        #expect(throws: GGUFError.self) { try s.checkTemplates() }
    }

    /// Greedy decoding over the trie with every logit equal: the lowest token id wins, so
    /// the same list comes out in every process (the trie's dictionary order varies).
    @Test func generateBreaksTiesByTokenId() throws {
        let trie = TokenTrie([[30, 5, 2], [7, 1], [12], [9]])
        let allowed = trie.allowed(from: TokenTrie.root)
        var logits = [Float](repeating: 0, count: 64)
        #expect(Ranker.greedyChoice(allowed, logits)?.token == 7)
        logits[12] = 0.5
        #expect(Ranker.greedyChoice(allowed, logits)?.token == 12)
        #expect(Ranker.greedyChoice([], logits) == nil)
    }

    /// A budget as large as the file's integer allows is an error naming it, not an overflow trap.
    @Test func aHugeProfileTokenBudgetIsAnError() throws {
        let r = try makeRanker { $0.profileTokenBudget = .max }
        #expect(throws: RankerError.self) { try r.generateProfile(history: someTitles) }
    }

    /// Letters mode runs only the windows that can reach the top k: 45 candidates with
    /// k = 5 cost one prefill, and give what the first 20 alone give.
    @Test func lettersRunsOnlyTheWindowsThatCanReachTheTopK() throws {
        let r = try makeRanker()
        let many = (0..<45).map { Candidate(id: "m\($0)", title: "Movie number \($0) (19\(50 + $0))") }
        let all = try r.rank(history: someTitles, candidates: many, k: 5, mode: .letters)
        r.prefixCache.removeAll()
        // (The same prompt again: the session's cache serves it, only the last token is run,
        // through the matrix-vector path: the same items, scores equal to rounding.)
        let first = try r.rank(history: someTitles, candidates: Array(many.prefix(20)), k: 5, mode: .letters)
        #expect(all.items.map(\.id) == first.items.map(\.id))
        #expect(zip(all.items, first.items).allSatisfy { abs($0.score - $1.score) < 1e-5 })
        #expect(all.timings.promptTokens == first.timings.promptTokens, "\(all.timings.promptTokens) vs \(first.timings.promptTokens)")
        let more = try r.rank(history: someTitles, candidates: many, k: 21, mode: .letters)
        #expect(more.timings.promptTokens > first.timings.promptTokens)
    }

    /// A catalog id near the store's 256-byte limit still caches (the id part is cut).
    @Test func aLongCatalogIdStillCaches() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-longid")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        let c = ml.catalog
        let long = try catalog(c, withID: String(repeating: "é", count: 125))   // 250 bytes
        _ = try store.record([NewInteraction(profile: "dee", item: c.ids[0], kind: .view, value: nil, timestamp: 1)],
                             createProfiles: true)
        let rec = try Recommender(ranker: try makeRanker(), catalog: long, store: store, modelID: "tiny")
        #expect(rec.catalogID.utf8.count <= 256)
        let first = try rec.recommend(profile: "dee", k: 3)
        #expect(first.notes.isEmpty, "\(first.notes)")
        #expect(try rec.recommend(profile: "dee", k: 3).fromCache)
    }

    /// A model with damaged weights writes no profile summary: an error, as in every
    /// ranking mode (it used to store "⁇ ⁇ …", which healthy models then read).
    @Test func nanLogitsWriteNoProfileSummary() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("palr-nan-profile-\(getpid()).gguf").path
        defer { unlink(out) }
        try writeModelWithNaNOutputNorm(to: out)
        let model = try LlamaModel(path: out)
        let tok = try SentencePieceTokenizer(gguf: model.gguf)
        var settings = PALRSettings()
        settings.writesProfiles = true
        let ranker = try Ranker(model: model, tokenizer: tok, settings: settings, contextLength: 1024, threads: 1)
        #expect(throws: RankerError.self) { _ = try ranker.generateProfile(history: someTitles) }
    }
}
