// When `refreshProfile` regenerates a stored summary: once the history changed by
// palr.profile_refresh_after interactions (the larger of those added and those
// removed), even when the count of interactions is unchanged (a profile at its
// retention cap, a forget and as many adds), and once for a summary stored before
// its marker existed.
import Catalog
import Foundation
import History
import Testing
@testable import Ranker

@Suite struct ProfileRefreshTests {
    private func recommender(_ store: HistoryStore, _ catalog: ItemCatalog) throws -> Recommender {
        // The default palr.profile_refresh_after, 10; a short budget keeps generation quick.
        try Recommender(ranker: try makeRanker { $0.profileTokenBudget = 4; $0.writesProfiles = true },
                        catalog: catalog, store: store, modelID: "tiny")
    }

    private func add(_ store: HistoryStore, _ catalog: ItemCatalog, items: Range<Int>) throws {
        try addViews(store, catalog, "bob", items: items)
    }

    /// Compact to a cap of 20, summarize, add. The count stays 20 (each add trims one
    /// of the summarized rows), so the difference of the counts saw no change and kept
    /// the stale summary; added plus removed counted each add twice and regenerated
    /// after 5. Each new interaction counts once: 5 keep it, 10 regenerate it.
    @Test func atTheRetentionCapTurnoverRegenerates() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-prof-cap")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        try addViews(store, ml.catalog, "bob", items: 0..<30, thenCap: 20)
        let rec = try recommender(store, ml.catalog)
        let first = try rec.refreshProfile("bob")
        #expect(first.generated != nil && first.summary.interactionCount == 20)
        let seen = try store.recent(profile: "bob", limit: 100)
        #expect(first.summary.lastInteractionID == seen.map(\.id).max())
        #expect(try store.profileSummary(profile: "bob") == first.summary)

        try add(store, ml.catalog, items: 30..<35)        // 5 added, 5 trimmed: changed by 5 < 10, reused
        #expect(try store.interactionCount(profile: "bob") == 20)
        #expect(try rec.refreshProfile("bob").generated == nil)
        #expect(try rec.refreshProfile("bob").summary == first.summary)
        try add(store, ml.catalog, items: 35..<40)        // 10 added and 10 trimmed since the summary: 10
        #expect(try store.interactionCount(profile: "bob") == 20)
        let again = try rec.refreshProfile("bob")
        #expect(again.generated != nil)
        #expect(again.summary.historyDigest == HistoryDigest(of: try store.recent(profile: "bob", limit: 100)))
        #expect(try rec.refreshProfile("bob").generated == nil)
    }

    /// Forgetting drops the summary, but one being generated meanwhile (refresh read
    /// the history before the forget and stores its summary after it) survives: N
    /// forgotten and N added later leave the count where it was and change the
    /// history by N, so 6 keep the summary and 12 regenerate it.
    @Test(arguments: [(6, false), (12, true)])
    func forgettingAndAddingAsManyRegenerates(count: Int, regenerates: Bool) throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-prof-forget")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        try add(store, ml.catalog, items: 0..<20)
        let rec = try recommender(store, ml.catalog)
        let made = try rec.refreshProfile("bob").summary
        for i in 0..<count { try store.forget(item: ml.catalog.ids[i], profile: "bob") }
        try store.putProfileSummary(made)                 // the in-flight refresh commits
        try add(store, ml.catalog, items: 20..<(20 + count))
        #expect(try store.interactionCount(profile: "bob") == made.interactionCount)
        let after = try rec.refreshProfile("bob")
        #expect((after.generated != nil) == regenerates)
        #expect(after.summary.interactionCount == 20)
        #expect((after.summary.lastInteractionID != made.lastInteractionID) == regenerates)
    }

    /// A summary stored before schema version 2 has no marker: kept while the history
    /// is unchanged, regenerated at the first change (its size cannot be measured).
    @Test func aSummaryWithoutMarkerIsRegeneratedOnceTheHistoryChanges() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-prof-old")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        try add(store, ml.catalog, items: 0..<20)
        let history = try store.recent(profile: "bob", limit: 100)
        try store.putProfileSummary(ProfileSummary(profile: "bob", text: "old words", historyDigest: HistoryDigest(of: history),
                                                   interactionCount: 20, createdAt: 0))
        let rec = try recommender(store, ml.catalog)
        #expect(try rec.refreshProfile("bob").generated == nil)
        try add(store, ml.catalog, items: 20..<21)
        let after = try rec.refreshProfile("bob")
        #expect(after.generated != nil && after.summary.lastInteractionID != nil)
        try add(store, ml.catalog, items: 21..<22)        // now measured: 1 < 10, reused
        #expect(try rec.refreshProfile("bob").generated == nil)
    }
}

/// Summaries and rankings made from a history that lost rows while they were computed are
/// not stored (a forget must leave nothing derived from the forgotten items), and a
/// retention cap below palr.profile_refresh_after still lets summaries be rebuilt.
@Suite struct ForgetRaceAndSmallCapTests {
    @Test func aSummaryOrRankingOfAHistoryThatLostRowsIsNotStored() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-forget-race")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        try addViews(store, ml.catalog, "cy", items: 0..<40, thenCap: 20)
        try addViews(store, ml.catalog, "other", items: 0..<3)
        let forgets = try store.forgetCount()
        let snapshot = try store.recent(profile: "cy", limit: 10)   // a window smaller than the history
        let summary = ProfileSummary(profile: "cy", text: "old", historyDigest: HistoryDigest(of: snapshot),
                                     interactionCount: snapshot.count, createdAt: 0, lastInteractionID: snapshot.map(\.id).max())
        let ranking = CachedRecommendations(profile: "cy", modelID: "m", catalogID: "c", historyDigest: HistoryDigest(of: snapshot),
                                            createdAt: 0, items: [ScoredItem(item: ml.catalog.ids[50], score: -1)])
        // A row added meanwhile, at the cap (so the oldest is trimmed): the summary is still
        // stored (it counts next time); the ranking is not (it is served only for its history).
        try addViews(store, ml.catalog, "cy", items: 40..<41)
        #expect(try store.putProfileSummary(summary, ifNoForgetSince: forgets))
        #expect(try !store.putCachedRecommendations(ranking, ifHistory: HistoryDigest(of: snapshot), limit: 10))
        // A forget meanwhile — inside the window, with older rows sliding in behind it, or
        // of another profile's item: the summary is not stored.
        _ = try store.forget(item: ml.catalog.ids[35], profile: "cy")
        #expect(try !store.putProfileSummary(summary, ifNoForgetSince: forgets))
        #expect(try store.profileSummary(profile: "cy") == nil)
        #expect(try store.cachedRecommendations(profile: "cy", modelID: "m", catalogID: "c") == nil)
        #expect(try store.forgetCount() == forgets + 1)
    }

    /// A cap of 4 with palr.profile_refresh_after 10: a history replaced whole is due.
    @Test func aHistoryReplacedWholeUnderASmallCapIsDue() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-small-cap")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        try addViews(store, ml.catalog, "dee", items: 0..<8, thenCap: 4)
        let rec = try Recommender(ranker: try makeRanker { $0.profileTokenBudget = 4; $0.writesProfiles = true },
                                  catalog: ml.catalog, store: store, modelID: "tiny")
        #expect(try rec.refreshProfile("dee").generated != nil)
        #expect(try !rec.isSummaryDue(profile: "dee"))
        try addViews(store, ml.catalog, "dee", items: 8..<10)   // half replaced: 2 < 10 and < 4, kept
        #expect(try !rec.isSummaryDue(profile: "dee"))
        try addViews(store, ml.catalog, "dee", items: 10..<12)  // all 4 replaced: due
        #expect(try rec.isSummaryDue(profile: "dee"))
        #expect(try rec.refreshProfile("dee").generated != nil)
    }
}

/// Views of catalog items `items` by `profile`, at times 1000 + index; then, with
/// `thenCap`, the store's retention cap set to it and the store compacted.
func addViews(_ store: HistoryStore, _ catalog: ItemCatalog, _ profile: String, items: Range<Int>, thenCap cap: Int? = nil) throws {
    _ = try store.record(items.map { i in
        NewInteraction(profile: profile, item: catalog.ids[i], kind: .view, value: nil, timestamp: Int64(1000 + i))
    }, createProfiles: true)
    if let cap {
        try store.setRetentionCap(cap)
        _ = try store.compact()
    }
}
