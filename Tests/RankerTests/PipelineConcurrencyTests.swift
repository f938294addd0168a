// The pipeline while other processes change the store: a profile forgotten while its
// ranking is computed (what `palr refresh --all-stale` meets when `palr history forget
// --profile` runs beside it).
import Catalog
import Foundation
@testable import History
import Testing
@testable import Ranker

@Suite struct PipelineConcurrencyTests {
    /// Another connection deletes the profile in a transaction it holds open while the
    /// recommendation reads the history (the old snapshot: the profile is still there),
    /// and commits while the ranking waits to be cached. The ranking is returned and not
    /// cached, as for any history changed meanwhile; it is not a failure to cache
    /// (`cacheFailure`, which makes `palr refresh` exit 1). Before, the write threw
    /// "unknown profile" and refresh reported "P: ranked but not cached: unknown profile".
    @Test func aProfileForgottenWhileItIsRankedIsNotACacheFailure() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-forget-while-ranking")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        try addViews(store, ml.catalog, "eve", items: 0..<8)
        try addViews(store, ml.catalog, "fay", items: 8..<16)
        let rec = try Recommender(ranker: try makeRanker(), catalog: ml.catalog, store: store, modelID: "tiny")

        let forgetter = try HistoryStore(path: path)
        try forgetter.connection.exec("BEGIN IMMEDIATE")
        try forgetter.connection.exec("DELETE FROM profiles WHERE name = 'eve'")

        // One thread at a time uses the recommender: this one waits on the semaphore.
        final class Box: @unchecked Sendable {
            let rec: Recommender
            var result: Result<Recommendation, Error>?
            init(_ rec: Recommender) { self.rec = rec }
        }
        let box = Box(rec)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            box.result = Result { try box.rec.recommend(profile: "eve", k: 5) }
            done.signal()
        }
        // The reads take microseconds; the cache write then waits for the lock.
        Thread.sleep(forTimeInterval: 1.0)
        try forgetter.connection.exec("COMMIT")
        #expect(done.wait(timeout: .now() + 60) == .success)

        let r = try #require(try box.result?.get())
        #expect(r.items.count == 5 && !r.fromCache)
        #expect(r.cacheFailure == nil, "\(r.notes)")
        #expect(r.notes.contains { $0.hasPrefix("not cached: the history changed") }, "\(r.notes)")
        #expect(try store.profiles().map(\.name) == ["fay"])
        let rows = try store.connection.read("test") { try store.connection.scalar("SELECT count(*) FROM cached_recommendations") }
        #expect(rows == 0)
        // The other profile is ranked and cached as usual.
        #expect(try rec.recommend(profile: "fay", k: 5).cacheFailure == nil)
        #expect(try rec.recommend(profile: "fay", k: 5).fromCache)
    }

    /// The store's side: with `ifHistory`, a profile that no longer exists has a changed
    /// history (false, nothing stored); without it, naming an unknown profile is an error.
    @Test func cachingForAForgottenProfile() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-cache-forgotten")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        try addViews(store, ml.catalog, "gus", items: 0..<4)
        let digest = try store.historyDigest(profile: "gus", limit: 100_000)
        try store.forget(profile: "gus")
        let entry = CachedRecommendations(profile: "gus", modelID: "m", catalogID: "c", historyDigest: digest, createdAt: 0,
                                          items: [ScoredItem(item: ml.catalog.ids[9], score: 1)])
        #expect(try !store.putCachedRecommendations(entry, ifHistory: digest))
        #expect(throws: HistoryError.unknownProfile("gus")) { try store.putCachedRecommendations(entry) }
    }
}
