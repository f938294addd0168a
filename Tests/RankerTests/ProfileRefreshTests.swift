// When `refreshProfile` regenerates a stored summary: after as many interactions
// were added plus removed as palr.profile_refresh_after, even when the count of
// interactions is unchanged (a profile at its retention cap, a forget and as many
// adds), and once for a summary stored before its marker existed.
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
        _ = try store.record(items.map { i in
            NewInteraction(profile: "bob", item: catalog.ids[i], kind: .view, value: nil, timestamp: Int64(1000 + i))
        }, createProfiles: true)
    }

    /// The acceptance scenario: compact to a cap of 20, summarize, add 15. The count
    /// stays 20 (15 new, 15 of the summarized ones trimmed), so counting by the
    /// difference of the counts saw one change and kept the stale summary.
    @Test func atTheRetentionCapTurnoverRegenerates() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-prof-cap")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        try add(store, ml.catalog, items: 0..<30)
        try store.setRetentionCap(20)
        _ = try store.compact()
        let rec = try recommender(store, ml.catalog)
        let first = try rec.refreshProfile("bob")
        #expect(first.generated != nil && first.summary.interactionCount == 20)
        let seen = try store.recent(profile: "bob", limit: 100)
        #expect(first.summary.lastInteractionID == seen.map(\.id).max())
        #expect(try store.profileSummary(profile: "bob") == first.summary)

        try add(store, ml.catalog, items: 30..<33)        // 3 added, 3 trimmed: 6 < 10, reused
        #expect(try store.interactionCount(profile: "bob") == 20)
        #expect(try rec.refreshProfile("bob").generated == nil)
        try add(store, ml.catalog, items: 33..<45)        // 15 added and 15 trimmed since the summary
        #expect(try store.interactionCount(profile: "bob") == 20)
        let again = try rec.refreshProfile("bob")
        #expect(again.generated != nil)
        #expect(again.summary.historyDigest == HistoryDigest(of: try store.recent(profile: "bob", limit: 100)))
        #expect(try rec.refreshProfile("bob").generated == nil)
    }

    /// Forgetting drops the summary, but one being generated meanwhile (refresh read
    /// the history before the forget and stores its summary after it) survives: 12
    /// forgotten and 12 added later leave the count where it was.
    @Test func forgettingAndAddingAsManyRegenerates() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-prof-forget")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        try add(store, ml.catalog, items: 0..<20)
        let rec = try recommender(store, ml.catalog)
        let made = try rec.refreshProfile("bob").summary
        for i in 0..<12 { try store.forget(item: ml.catalog.ids[i], profile: "bob") }
        try store.putProfileSummary(made)                 // the in-flight refresh commits
        try add(store, ml.catalog, items: 20..<32)
        #expect(try store.interactionCount(profile: "bob") == made.interactionCount)
        let after = try rec.refreshProfile("bob")
        #expect(after.generated != nil)
        #expect(after.summary.interactionCount == 20 && after.summary.lastInteractionID != made.lastInteractionID)
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
