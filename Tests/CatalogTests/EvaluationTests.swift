import Foundation
import Testing
@testable import Catalog

@Suite struct EvaluationTests {
    // Item 9 is only ever a test item (last position); item 8 only a validation
    // item (second-to-last). Neither may reach any neighbour list or popularity.
    static let leakData: LeaveOneOutData = {
        let seqs: [[Int32]] = [
            [0, 1, 2, 8, 9],
            [0, 1, 2, 8, 9],
            [1, 2, 0, 3, 4],
            [2, 0, 1, 3, 4],
            [3, 4, 0, 1, 2],
        ]
        let items = ItemList(ids: (0..<10).map { "i\($0)" }, titles: (0..<10).map { "Item \($0)" })
        return LeaveOneOutData(items: items, sequences: ItemSequences(itemCount: 10, sequences: seqs))
    }()

    static func reaches(_ c: ItemCatalog, _ item: Int32) -> Bool {
        (0..<c.count).contains { c.neighbours(of: $0).contains { $0.item == item } } || c.popularity(of: Int(item)) > 0
    }

    @Test(arguments: NeighbourMethod.allCases)
    func heldOutItemsNeverBuildNeighbours(_ method: NeighbourMethod) throws {
        let p = NeighbourParameters(method: method)
        let d = Self.leakData
        // Sanity: built from everything, 2 would lead to 8 and 9.
        let all = try d.trainingCatalog(cut: 0, parameters: p)
        #expect(all.neighbours(of: 2).contains { $0.item == 9 } && all.neighbours(of: 2).contains { $0.item == 8 })
        // Test step: no test item anywhere; the validation item 8 is history then.
        let test = try d.trainingCatalog(cut: 1, parameters: p)
        #expect(!Self.reaches(test, 9))
        #expect(Self.reaches(test, 8))
        // Validation step (and strict test): neither.
        let validation = try d.trainingCatalog(cut: 2, parameters: p)
        #expect(!Self.reaches(validation, 9) && !Self.reaches(validation, 8))
        var o = EvaluationOptions()
        o.strict = true
        #expect(o.trainingCut == 2)
        o.strict = false
        #expect(o.trainingCut == 1)
        o.heldOut = .validation
        #expect(o.trainingCut == 2)
    }

    @Test func evaluateRanksTheHeldOutItem() throws {
        // Three users share 0 → 1 → 2; a fourth has history 0, 1 and test item 2.
        let seqs: [[Int32]] = [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 4], [5, 0, 1, 2]]
        let items = ItemList(ids: (0..<6).map { "\($0)" }, titles: (0..<6).map { "\($0)" })
        let d = LeaveOneOutData(items: items, sequences: ItemSequences(itemCount: 6, sequences: seqs))
        var o = EvaluationOptions()
        o.neighbours = NeighbourParameters(method: .seq)
        let r = try d.evaluate(o)
        #expect(r.users == 4)
        // Users 0-2: history ends with 2, test items 3/3/4 follow 2 in other users' training parts.
        // User 3: history 5, 0, 1 → 2 follows 1 everywhere: rank 1.
        #expect(r.retrieval.hr10 == 1)
        #expect(r.pipeline == nil)
        // A sample evaluates fewer users, deterministically.
        o.users = 2
        let s1 = try d.evaluate(o), s2 = try d.evaluate(o)
        #expect(s1.users == 2 && s1.retrieval == s2.retrieval)
    }

    /// Tuning takes the users the evaluation takes: with a pool (`--user-list`), its
    /// validation figures are those users' (it took every user's before).
    @Test func tuningTakesTheListedUsers() throws {
        let seqs: [[Int32]] = [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 4, 3], [5, 0, 1, 2], [5, 0, 3, 1]]
        let items = ItemList(ids: (0..<6).map { "\($0)" }, titles: (0..<6).map { "\($0)" })
        let d = LeaveOneOutData(items: items, sequences: ItemSequences(itemCount: 6, sequences: seqs))
        let base = RetrieverConfiguration(neighbours: NeighbourParameters(method: .seq), retrieval: RetrievalSettings())
        let grid = TuningGrid(builds: [base.neighbours], retrieval: [base.retrieval])
        var o = EvaluationOptions()
        o.neighbours = base.neighbours
        o.heldOut = .validation
        for pool: Set<Int>? in [nil, [2], [3, 4]] {
            o.onlyUsers = pool
            let tuned = try #require(try d.tune(grid, from: pool).first)
            let evaluated = try d.evaluate(o)
            #expect(tuned.validation == evaluated.retrieval, "pool \(String(describing: pool))")
        }
        // The pools' figures differ, so the check above tells them apart.
        let all = try #require(try d.tune(grid).first), some = try #require(try d.tune(grid, from: [2]).first)
        #expect(all.validation != some.validation, "\(all.validation) \(some.validation)")
    }

    @Test func rerankerPlugsIntoTheSameProtocol() throws {
        let d = Self.leakData
        var o = EvaluationOptions()
        o.neighbours = NeighbourParameters(method: .seq)
        o.candidates = 5
        // Reversing the candidates changes the pipeline's metrics, not retrieval's.
        var calls = 0
        let r = try d.evaluate(o) { catalog, history, candidates in
            calls += 1
            #expect(candidates.count <= 5)
            #expect(!candidates.contains { history.contains($0.index) })
            #expect(catalog.count == 10)
            return candidates.reversed().enumerated().map { RetrievedItem(index: $1.index, score: Float(-$0)) }
        }
        #expect(calls == r.users)
        let plain = try d.evaluate(o)
        #expect(r.retrieval == plain.retrieval)
        #expect(r.pipeline != nil)
        // The paired comparison covers every user and agrees with the two means.
        let c = try #require(r.pipelineVsRetrieval)
        #expect(c.users == r.users && c.better + c.worse + c.tied == r.users)
        let pipeline = try #require(r.pipeline)
        if r.retrieval.ndcg10 > 0 { #expect(abs(c.relative - (pipeline.ndcg10 / r.retrieval.ndcg10 - 1)) < 1e-9) }
        #expect(plain.pipelineVsRetrieval == nil)
        // A reranker that invents an item is an error, not a silent success.
        #expect(throws: EvaluationError.self) {
            try d.evaluate(o) { _, _, c in [RetrievedItem(index: 9_999, score: 1)] + c }
        }
        #expect(throws: EvaluationError.self) {
            try d.evaluate(o) { _, _, c in c + c.prefix(1) }
        }
    }

    @Test func pairedComparisonMeasuresTheGainAndItsNoise() {
        // Same values: no gain, no spread, every user tied.
        let a = (0..<50).map { Double($0 % 7) / 7 }
        let same = PairedComparison(first: a, second: a)
        #expect(same.relative == 0 && same.low == 0 && same.high == 0 && same.tied == 50)
        // Second = 1.5 × first for every user: every resample's ratio is exactly 1.5.
        let scaled = PairedComparison(first: a, second: a.map { $0 * 1.5 })
        #expect(abs(scaled.relative - 0.5) < 1e-12 && abs(scaled.low - 0.5) < 1e-12 && abs(scaled.high - 0.5) < 1e-12)
        #expect(scaled.better == 42 && scaled.worse == 0 && scaled.tied == 8)   // users with 0 stay tied
        // Hits at random: the interval holds the estimate and narrows as users grow.
        func hits(_ n: Int, _ p: Double, _ seed: UInt64) -> [Double] {
            var rng = SplitMix64(seed: seed)
            return (0..<n).map { _ in Double(rng.next() % 1000) < p * 1000 ? 1 : 0 }
        }
        let small = PairedComparison(first: hits(120, 0.1, 1), second: hits(120, 0.1, 2))
        let large = PairedComparison(first: hits(12_000, 0.1, 3), second: hits(12_000, 0.1, 4))
        for c in [small, large] { #expect(c.low <= c.relative && c.relative <= c.high) }
        print("paired bootstrap, two rankers at 10% hits: 120 users \(small.low)…\(small.high), 12,000 users \(large.low)…\(large.high)")
        #expect(small.high - small.low > 5 * (large.high - large.low))
        // 120 users cannot tell two equal 10%-hit rankers apart by less than ±10%.
        #expect(small.low < -0.1 && small.high > 0.1)
        // Seeded: the same interval every time.
        #expect(PairedComparison(first: hits(120, 0.1, 1), second: hits(120, 0.1, 2)) == small)
    }

    @Test func pipelineListKeepsRerankedOrderThenTheRest() throws {
        let catalog = try Fixtures.toyCatalog()
        let retrieved = [RetrievedItem(index: 1, score: 0.9), RetrievedItem(index: 2, score: 0.5), RetrievedItem(index: 4, score: 0.1)]
        let list = try LeaveOneOutData.pipelineList(catalog: catalog, history: [], retrieved: retrieved, candidates: 2, user: 0) { _, _, c in
            [c[1]]  // keeps only item 2
        }
        #expect(list.map(\.index) == [2, 1, 4])
        #expect(Metrics.rank(of: 2, in: list) == 1 && Metrics.rank(of: 4, in: list) == 3)
    }

    /// The targets on ML-100K, with the shipped defaults (read from ../shared at run time).
    @Test func movieLens100KReachesTheTargets() throws {
        let dir = Fixtures.sharedData + "/ml-100k"
        guard FileManager.default.fileExists(atPath: dir + "/u.data") else {
            print("skipped: \(dir) not found")
            return
        }
        let data = LeaveOneOutData(items: try DataFiles.readItems(path: dir + "/u.item"),
                                   log: try DataFiles.readInteractions(path: dir + "/u.data"))
        #expect(data.items.count == 1682 && data.evaluableUsers.count == 943)
        let r = try data.evaluate(EvaluationOptions())
        print("ML-100K test, default retriever: HR@10 \(r.retrieval.hr10) NDCG@10 \(r.retrieval.ndcg10); popularity HR@10 \(r.popularity.hr10)")
        #expect(r.retrieval.hr10 >= 0.20)
        #expect(r.retrieval.ndcg10 >= 0.105)
        #expect(r.popularity.hr10 < r.retrieval.hr10)
    }
}
