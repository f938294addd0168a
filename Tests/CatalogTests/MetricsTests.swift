// Metrics pinned on a hand-computed toy example.

import Foundation
import Testing
@testable import Catalog

@Suite struct MetricsTests {
    // Best-first list: 7 (0.9), 3 (0.8), 5 (0.8), 1 (0.5), then 46 more with falling scores.
    static let list: [RetrievedItem] = [
        RetrievedItem(index: 7, score: 0.9), RetrievedItem(index: 3, score: 0.8),
        RetrievedItem(index: 5, score: 0.8), RetrievedItem(index: 1, score: 0.5),
    ] + (0..<46).map { RetrievedItem(index: Int32(100 + $0), score: 0.4 - Float($0) * 0.001) }

    @Test func ranksWithPessimisticTies() {
        #expect(Metrics.rank(of: 7, in: Self.list) == 1)
        // 3 and 5 tie at 0.8 in positions 2 and 3: both count as rank 3.
        #expect(Metrics.rank(of: 3, in: Self.list) == 3)
        #expect(Metrics.rank(of: 5, in: Self.list) == 3)
        #expect(Metrics.rank(of: 1, in: Self.list) == 4)
        #expect(Metrics.rank(of: 110, in: Self.list) == 15)
        #expect(Metrics.rank(of: 999, in: Self.list) == nil)
        // A run of three equal scores at the top: all at rank 3.
        let flat = [RetrievedItem(index: 1, score: 1), RetrievedItem(index: 2, score: 1), RetrievedItem(index: 3, score: 1)]
        #expect(Metrics.rank(of: 1, in: flat) == 3)
    }

    @Test func ndcgUsesLog2Discount() {
        #expect(Metrics.ndcg(rank: 1, cutoff: 10) == 1)
        #expect(Metrics.ndcg(rank: 3, cutoff: 10) == 0.5)                   // 1 / log2(4)
        #expect(abs(Metrics.ndcg(rank: 4, cutoff: 10) - 0.430_676_558) < 1e-9) // 1 / log2(5)
        #expect(abs(Metrics.ndcg(rank: 10, cutoff: 10) - 0.289_064_826) < 1e-9) // 1 / log2(11)
        #expect(Metrics.ndcg(rank: 11, cutoff: 10) == 0)
        #expect(Metrics.ndcg(rank: nil, cutoff: 10) == 0)
        #expect(Metrics.hit(rank: 10, cutoff: 10) == 1)
        #expect(Metrics.hit(rank: 11, cutoff: 10) == 0)
    }

    @Test func averagesOverUsers() {
        // Four users whose targets are 7 (rank 1), 5 (rank 3, tie), 999 (absent), 110 (rank 15).
        var acc = MetricsAccumulator()
        for t: Int32 in [7, 5, 999, 110] { acc.add(rank: Metrics.rank(of: t, in: Self.list)) }
        let m = acc.mean
        #expect(acc.users == 4)
        #expect(m.hr10 == 0.5)            // ranks 1 and 3
        #expect(m.ndcg10 == 0.375)        // (1 + 0.5 + 0 + 0) / 4
        #expect(m.hr20 == 0.75)           // + rank 15
        #expect(m.recall20 == 0.75)       // one held-out item: Recall@k = HR@k
        #expect(m.recall50 == 0.75)
    }

    @Test func jsonNamesMatchTheIssue() throws {
        var m = RankingMetrics()
        m.hr10 = 0.25
        let json = String(decoding: try JSONEncoder().encode(m), as: UTF8.self)
        for key in ["HR@10", "NDCG@10", "HR@20", "Recall@20", "Recall@50"] { #expect(json.contains("\"\(key)\"")) }
        #expect(m.named.map(\.0) == ["HR@10", "NDCG@10", "HR@20", "Recall@20", "Recall@50"])
    }
}
