import Catalog
import Foundation
@testable import History
import Testing
@testable import Ranker

/// A ranking that cannot be cached (another process holds the write lock past the busy
/// timeout) is still returned, with a note, and cached by a later request.
@Suite struct CacheWriteTests {
    @Test func aBlockedCacheWriteKeepsTheRanking() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-cache-lock")
        defer { removeStore(path) }
        let setup = try HistoryStore(path: path)
        _ = try setup.record((0..<5).map { i in
            NewInteraction(profile: "dee", item: ml.catalog.ids[i], kind: .view, value: nil, timestamp: Int64(i))
        }, createProfiles: true)
        let store = try HistoryStore(path: path, options: .init(busyTimeout: 0.2))
        let rec = try Recommender(ranker: try makeRanker(), catalog: ml.catalog, store: store, modelID: "tiny")

        try setup.connection.exec("BEGIN IMMEDIATE")
        let blocked = try rec.recommend(profile: "dee", k: 5)
        try setup.connection.exec("ROLLBACK")
        #expect(blocked.items.count == 5 && !blocked.fromCache)
        #expect(blocked.notes.contains { $0.hasPrefix("not cached: ") }, "\(blocked.notes)")

        let again = try rec.recommend(profile: "dee", k: 5)
        #expect(!again.fromCache && again.notes.allSatisfy { !$0.hasPrefix("not cached") })
        #expect(again.items.map(\.id) == blocked.items.map(\.id))
        #expect(try rec.recommend(profile: "dee", k: 5).fromCache)
    }
}
