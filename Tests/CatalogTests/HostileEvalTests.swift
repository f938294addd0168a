// The hostile pass on `palr eval`'s library side: ties at the end of the scored list,
// users with nothing left to rank, parameters that overflow or exhaust memory, and
// column mappings that give one column two roles.

import Foundation
import Testing
@testable import Catalog

@Suite struct HostileEvalTests {
    /// 100 items; users 1…5 have items 0, 1, then item u + 1 as the test target. In the
    /// training part only items 0 and 1 occur, so every target is tied at score 0 with
    /// the 97 other unseen items: pessimistically ranked about 98th.
    static let tiedTail: LeaveOneOutData = {
        let items = ItemList(ids: (0..<100).map { "i\($0)" }, titles: (0..<100).map { "Item \($0)" })
        let seqs: [[Int32]] = (1...5).map { [0, 1, Int32($0 + 1)] }
        return LeaveOneOutData(items: items, sequences: ItemSequences(itemCount: 100, sequences: seqs))
    }()

    static func consistent(_ m: RankingMetrics) -> Bool {
        m.named.allSatisfy { (0...1).contains($0.1) } && m.hr10 <= m.hr20 && m.recall20 <= m.recall50
            && m.ndcg10 <= m.hr10 && m.hr20 == m.recall20
    }

    /// A target tied with items beyond the 50th position used to count at position 50
    /// (the end of the list read), so Recall@50 was 1 for targets tied with 97 items.
    @Test func aTieRunningPastTheFiftiethPositionIsAMiss() throws {
        for method in NeighbourMethod.allCases {
            var o = EvaluationOptions()
            o.neighbours = NeighbourParameters(method: method)
            let report = try Self.tiedTail.evaluate(o)
            #expect(report.users == 5)
            #expect(report.retrieval.recall50 == 0, "\(method): \(report.retrieval)")
            #expect(report.popularity.recall50 == 0, "\(method): \(report.popularity)")
            #expect(Self.consistent(report.retrieval) && Self.consistent(report.popularity))
        }
        // The same through the pipeline: the part the re-ranker did not see keeps
        // retrieval's ties. The one candidate is item 2 (the first of the tied items):
        // user 1's target, put first by the re-ranker, is the only hit.
        var o = EvaluationOptions()
        o.candidates = 1
        let report = try Self.tiedTail.evaluate(o) { _, _, candidates in candidates }
        #expect(report.pipeline?.hr10 == 0.2 && report.pipeline?.recall50 == 0.2, "\(String(describing: report.pipeline))")
        #expect(report.pipeline.map(Self.consistent) == true)
    }

    /// A tie that ends inside the list still counts at its last position: two unseen
    /// items at score 0, the target first of them, is rank 2.
    @Test func aTieEndingInsideTheListCountsAtItsEnd() throws {
        let items = ItemList(ids: ["A", "B", "C", "D"], titles: ["a", "b", "c", "d"])
        let data = LeaveOneOutData(items: items, sequences: ItemSequences(itemCount: 4, sequences: [[0, 1, 2], [0, 1, 3]]))
        let report = try data.evaluate(EvaluationOptions())
        #expect(report.retrieval.hr10 == 1)
        #expect(abs(report.retrieval.ndcg10 - 1 / log2(3.0)) < 1e-12)
        #expect(Self.consistent(report.retrieval))
    }

    /// A user who repeats an item after seeing the whole catalog has no candidate left:
    /// the re-ranker (the LLM ranker refuses an empty list) must not be asked, and the
    /// run must not fail for everyone.
    @Test func aUserWithNoCandidatesIsNotReranked() throws {
        let items = ItemList(ids: ["A", "B", "C"], titles: ["a", "b", "c"])
        let seqs: [[Int32]] = [[0, 1, 2, 0], [0, 1, 2], [2, 0, 1]]
        let data = LeaveOneOutData(items: items, sequences: ItemSequences(itemCount: 3, sequences: seqs))
        struct Empty: Error {}
        var o = EvaluationOptions()
        o.candidates = 5
        let report = try data.evaluate(o) { _, _, candidates in
            guard !candidates.isEmpty else { throw Empty() }
            return candidates.reversed()
        }
        #expect(report.users == 3)
        #expect(report.pipelineVsRetrieval?.users == 3)
        #expect(report.pipeline.map(Self.consistent) == true)
    }

    /// Listed users who cannot be evaluated: the error says the list is the reason.
    @Test func listedUsersWithTooFewInteractionsAreNamedAsSuch() throws {
        let items = ItemList(ids: ["A", "B", "C"], titles: ["a", "b", "c"])
        let data = LeaveOneOutData(items: items, sequences: ItemSequences(itemCount: 3, sequences: [[0, 1, 2], [0, 1]]))
        var o = EvaluationOptions()
        o.onlyUsers = [1]
        do {
            _ = try data.evaluate(o)
            Issue.record("evaluated a user with 2 interactions")
        } catch let error as EvaluationError {
            #expect(error.description.contains("none of the 1 listed users"), "\(error)")
        }
    }

    /// Values whose neighbour sums overflow Float (decay above 1 raised to the window,
    /// huge backward or cooc weights) were accepted and failed after the build with a
    /// "catalog pack: tensor 'neighbour_scores' … is inf" that named no parameter; a
    /// window of 999,999,999 allocated a 4 GB table of decay powers (6 minutes, 3.9 GB
    /// RSS on a 7-line file).
    @Test func parametersOutsideTheirRangesAreNamed() throws {
        let cases = ["decay=1.5": "decay", "backward=1e300": "backward", "cooc_weight=1e300": "cooc_weight",
                     "window=999999999": "window", "window=100001": "window", "backward=1001": "backward"]
        for (text, key) in cases {
            var c = RetrieverConfiguration.defaults(for: .combined)
            do {
                try c.apply(text)
                Issue.record("\(text) was accepted")
            } catch {
                #expect(error.description.contains(key), "\(text): \(error)")
            }
        }
        var c = RetrieverConfiguration.defaults(for: .combined)
        #expect(throws: Never.self) { try c.apply("decay=1,backward=1000,cooc_weight=1000,window=100000") }
        // The largest values build finite scores.
        let seqs = ItemSequences(itemCount: 4, sequences: [[0, 1, 2, 3, 0, 1, 2, 3], [3, 2, 1, 0]])
        let table = try NeighbourBuilder.build(seqs, parameters: c.neighbours)
        #expect((0..<(4 * table.k)).allSatisfy { table.scores[$0].isFinite && abs(table.scores[$0]) <= 1e30 })
        // A whole number too large for an integer key names its range, not "a whole number".
        var d = RetrieverConfiguration.defaults(for: .seq)
        #expect(throws: NeighbourError.badParameter("window must be in 1...100000, is 1e+10")) { try d.apply("window=1e10") }
        // Decimal numbers only: Double() read "0x10" as 16.
        for text in ["k=0x10", "history_length=0x1p4", "decay=nan"] {
            var e = RetrieverConfiguration.defaults(for: .combined)
            #expect(throws: NeighbourError.self, "\(text)") { try e.apply(text) }
        }
    }

    /// One column in two roles, a role given twice, an empty piece: errors naming
    /// --columns or the column, not a silently different reading of the file.
    @Test func columnMappingsThatAreAmbiguousAreRefused() throws {
        for text in ["user=a,user=b", "user=a,,item=b", "user=a,", "", " , ", "time=t,timestamp=ts"] {
            #expect(throws: DataFileError.self, "\(text)") { _ = try CSVColumns(mapping: text) }
        }
        let csv = "user,item,time\n1,A,1\n1,B,2\n1,C,3\n"
        func parse(_ mapping: String) throws(DataFileError) -> InteractionLog {
            let columns = try CSVColumns(mapping: mapping)
            let bytes = Array(csv.utf8)
            let result: Result<InteractionLog, DataFileError> = bytes.withUnsafeBytes { b in
                do throws(DataFileError) { return .success(try DataFiles.parseInteractions(b, name: "r.csv", format: .csv(columns))) }
                catch { return .failure(error) }
            }
            return try result.get()
        }
        for (mapping, roles) in ["time=user": "user and the time", "item=user": "user and the item",
                                 "user=item": "user and the item", "user=time,time=time": "user and the time"] {
            do {
                _ = try parse(mapping)
                Issue.record("\(mapping) was accepted")
            } catch {
                #expect(error.description.contains("r.csv") && error.description.contains(roles), "\(mapping): \(error)")
            }
        }
        #expect(try parse(" user = user , item = item , time = time ").count == 3)
    }
}
