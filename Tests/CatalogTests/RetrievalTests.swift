import Testing
@testable import Catalog

@Suite struct RetrievalTests {
    @Test func sumsRecencyWeightedNeighboursAndDropsSeen() throws {
        let r = Retriever(catalog: try Fixtures.toyCatalog())
        // History a then c (c newest, weight 1; a weight 0.5):
        //   from c: a 0.7 (seen), d 0.2;  from a: b 0.45, c (seen).
        //   Neighbour-reached: b 0.45, d 0.2; then by popularity: e (10).
        let got = r.retrieve(history: ["a", "c"], count: 10)
        #expect(got.items.map(\.index) == [1, 3, 4])
        #expect(abs(got.items[0].score - 0.45) < 1e-6)
        #expect(abs(got.items[1].score - 0.2) < 1e-6)
        #expect(got.items[2].score == 0)
        #expect(got.unknownCount == 0)
        #expect(got.sourceCount == 2)
    }

    @Test func skipsAndCountsUnknownItems() throws {
        let r = Retriever(catalog: try Fixtures.toyCatalog())
        let got = r.retrieve(history: ["zzz", "a", "nope"], count: 2)
        #expect(got.unknownCount == 2)
        #expect(got.sourceCount == 1)
        #expect(got.items.map(\.index) == [1, 2])  // b 0.9, c 0.5
    }

    @Test func coldStartIsPopularity() throws {
        let r = Retriever(catalog: try Fixtures.toyCatalog())
        #expect(r.retrieve(history: [String](), count: 3).items.map(\.index) == [4, 3, 2])  // e, d, c
        // Only unknown items: the same, with the unknowns counted.
        let got = r.retrieve(history: ["x", "y"], count: 5)
        #expect(got.items.map(\.index) == [4, 3, 2, 1, 0])
        #expect(got.unknownCount == 2)
    }

    @Test func shortHistoryIsFilledByPopularityAndNothingRepeats() throws {
        let r = Retriever(catalog: try Fixtures.toyCatalog())
        // b's only neighbour is c; the rest comes by popularity, never b itself.
        let got = r.retrieve(history: ["b"], count: 4)
        #expect(got.items.map(\.index) == [2, 4, 3, 0])
        #expect(Set(got.items.map(\.index)).count == got.items.count)
        // Everything seen: nothing to return.
        #expect(r.retrieve(history: ["a", "b", "c", "d", "e"], count: 5).items.isEmpty)
    }

    @Test func popularityWeightBlendsIn() throws {
        let catalog = try Fixtures.toyCatalog()
        let r = Retriever(catalog: catalog, settings: RetrievalSettings(historyLength: 5, recencyDecay: 0.5, popularityWeight: 1))
        // From a: b 0.9 + 3/10, c 0.5 + 5/10; d 0.8, e 1.0 by popularity alone.
        let got = r.retrieve(history: ["a"], count: 4)
        #expect(got.items.map(\.index) == [1, 4, 2, 3])
        #expect(abs(got.items[0].score - 1.2) < 1e-6)
    }

    @Test func historyLengthLimitsSources() throws {
        let catalog = try Fixtures.toyCatalog()
        let r = Retriever(catalog: catalog, settings: RetrievalSettings(historyLength: 1, recencyDecay: 0.5, popularityWeight: 0))
        // Only b (the newest) pulls neighbours: c; a's neighbours do not count.
        let got = r.retrieve(history: ["a", "b"], count: 2)
        #expect(got.sourceCount == 1)
        #expect(got.items.map(\.index) == [2, 4])
        #expect(abs(got.items[0].score - 0.8) < 1e-6)
    }

    @Test func countIsCappedAndRepeatedRequestsAgree() throws {
        let r = Retriever(catalog: try Fixtures.toyCatalog())
        #expect(r.retrieve(history: ["a"], count: 0).items.isEmpty)
        #expect(r.retrieve(history: ["a"], count: 1000).items.count == 4)
        // Scratch state from one request must not leak into the next.
        let first = r.retrieve(history: ["a", "c"], count: 10)
        _ = r.retrieve(history: ["b"], count: 10)
        #expect(r.retrieve(history: ["a", "c"], count: 10) == first)
        #expect(r.retrieve(indices: [Int32(0), 2], count: 10) == first)
        let bad = r.retrieve(indices: [Int32(-1), 99, 0], count: 1)
        #expect(bad.unknownCount == 2)
    }
}
