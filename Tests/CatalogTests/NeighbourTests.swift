import Foundation
import Testing
@testable import Catalog

@Suite struct NeighbourTests {
    // u0: 0 1 2, u1: 0 2 (items 3 unused).
    static let tiny = ItemSequences(itemCount: 4, sequences: [[0, 1, 2], [0, 2]])

    static func params(_ m: NeighbourMethod, _ set: String) throws -> NeighbourParameters {
        var c = RetrieverConfiguration.defaults(for: m)
        try c.apply(set)
        return c.neighbours
    }

    static func close(_ row: [(item: Int32, score: Float)], _ want: [(Int, Double)]) -> Bool {
        row.count == want.count && zip(row, want).allSatisfy { Int($0.item) == $1.0 && abs(Double($0.score) - $1.1) < 1e-5 }
    }

    @Test func seqCountsFollowersDecayedByDistance() throws {
        // window 2, decay 0.5, forward only, no normalisation:
        // C(0,1) = 1 (u0, d=1); C(0,2) = 0.5 (u0, d=2) + 1 (u1, d=1); C(1,2) = 1.
        let t = try NeighbourBuilder.build(Self.tiny, parameters: Self.params(.seq, "k=3,window=2,decay=0.5,backward=0,alpha=0,beta=0,shrink=0"))
        #expect(Self.close(t.row(0), [(2, 1.5), (1, 1)]))
        #expect(Self.close(t.row(1), [(2, 1)]))
        #expect(t.row(2).isEmpty && t.row(3).isEmpty)
        // Backward links at weight 1: 2 ← 1 (d=1), 2 ← 0 (0.5 + 1); 1 ← 0.
        let b = try NeighbourBuilder.build(Self.tiny, parameters: Self.params(.seq, "k=3,window=2,decay=0.5,backward=1,alpha=0,beta=0,shrink=0"))
        #expect(Self.close(b.row(2), [(0, 1.5), (1, 1)]))
        #expect(Self.close(b.row(1), [(0, 1), (2, 1)]))  // tie: lower index first
        // alpha = 1 divides a row by its item's occurrences (item 0 occurs twice).
        let a = try NeighbourBuilder.build(Self.tiny, parameters: Self.params(.seq, "k=3,window=2,decay=0.5,backward=0,alpha=1,beta=0,shrink=0"))
        #expect(Self.close(a.row(0), [(2, 0.75), (1, 0.5)]))
        // K = 1 keeps only the best.
        let one = try NeighbourBuilder.build(Self.tiny, parameters: Self.params(.seq, "k=1,window=2,decay=0.5,backward=0,alpha=0,beta=0,shrink=0"))
        #expect(Self.close(one.row(0), [(2, 1.5)]))
    }

    @Test func coocIsCosineOverUsers() throws {
        // Users {0,1,2} and {0,2}: C(0,1) = 1, C(0,2) = 2, C(1,2) = 1; users per item 2, 1, 2.
        let t = try NeighbourBuilder.build(Self.tiny, parameters: Self.params(.cooc, "k=3,alpha=0.5,beta=0.5,shrink=0,user_damping=0"))
        let r2 = 2.0.squareRoot()
        #expect(Self.close(t.row(0), [(2, 1), (1, 1 / r2)]))
        #expect(Self.close(t.row(1), [(0, 1 / r2), (2, 1 / r2)]))
        #expect(Self.close(t.row(2), [(0, 1), (1, 1 / r2)]))
        // shrink adds to the source's count: row 1 (one user) becomes C / sqrt((1 + 3) · n_j).
        let s = try NeighbourBuilder.build(Self.tiny, parameters: Self.params(.cooc, "k=3,alpha=0.5,beta=0.5,shrink=3,user_damping=0"))
        #expect(Self.close(s.row(1), [(0, 1 / (2 * r2)), (2, 1 / (2 * r2))]))
    }

    /// An independent dense reference: every pair scored with plain loops.
    static func reference(_ s: ItemSequences, _ p: NeighbourParameters) -> [[Float]] {
        let n = s.itemCount
        var seq = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        var cooc = seq
        var occ = [Double](repeating: 0, count: n), users = occ
        for u in 0..<s.userCount {
            let q = Array(s.sequence(u))
            for x in q { occ[Int(x)] += 1 }
            let distinct = Set(q)
            for x in distinct { users[Int(x)] += 1 }
            let w = 1 / pow(Double(distinct.count), p.userDamping)
            for a in distinct { for b in distinct where a != b { cooc[Int(a)][Int(b)] += w } }
            for i in 0..<q.count {
                for j in 0..<q.count where q[i] != q[j] && abs(i - j) <= p.window {
                    let d = abs(i - j)
                    let w = pow(p.decay, Double(d - 1)) * (j > i ? 1 : p.backward)
                    seq[Int(q[i])][Int(q[j])] += w
                }
            }
        }
        var out = [[Float]](repeating: [Float](repeating: 0, count: n), count: n)
        for i in 0..<n {
            for j in 0..<n {
                let sv = seq[i][j] / pow(max(occ[i], 1) + p.shrink, p.alpha) / pow(max(occ[j], 1), p.beta)
                let cv = cooc[i][j] / pow(max(users[i], 1) + p.shrink, p.alpha) / pow(max(users[j], 1), p.beta)
                switch p.method {
                case .seq: out[i][j] = Float(sv)
                case .cooc: out[i][j] = Float(cv)
                case .combined: out[i][j] = Float(sv + p.coocWeight * cv)
                }
            }
        }
        return out
    }

    @Test(arguments: NeighbourMethod.allCases)
    func matchesDenseReference(_ method: NeighbourMethod) throws {
        var rng = SplitMix64(seed: 7)
        let n = 40
        let seqs = ItemSequences(itemCount: n, sequences: (0..<30).map { _ in
            (0..<(3 + Int(rng.next() % 25))).map { _ in Int32(rng.next() % UInt64(n)) }  // repeats allowed
        })
        let p = try Self.params(method, "k=8,window=4,decay=0.7,backward=0.6,alpha=0.8,beta=0.3,shrink=3,user_damping=0.5,cooc_weight=0.7")
        let ref = Self.reference(seqs, p)
        for threads in [1, 2] {
            let t = try NeighbourBuilder.build(seqs, parameters: p, threads: threads)
            var worst: Float = 0
            for i in 0..<n {
                let want = ref[i].enumerated().filter { $0.element > 0 }
                    .sorted { $0.element != $1.element ? $0.element > $1.element : $0.offset < $1.offset }.prefix(8)
                let got = t.row(i)
                #expect(got.count == want.count)
                for (g, w) in zip(got, want) {
                    worst = max(worst, abs(g.score - w.element))
                    // Same score at each slot; same item unless two reference scores (nearly) tie.
                    if abs(ref[i][Int(g.item)] - w.element) > 1e-5 { #expect(g.item == Int32(w.offset)) }
                }
            }
            #expect(worst < 1e-4, "worst difference \(worst) with \(threads) threads")
        }
    }

    @Test func importedPairsKeepTheBestK() {
        let ids = ["a", "b", "c", "d"]
        let pairs: [(item: String, neighbour: String, score: Float)] = [
            ("a", "b", 0.2), ("a", "c", 0.9), ("a", "d", 0.5), ("a", "a", 1), ("a", "zz", 1), ("a", "c", 0.1), ("c", "a", 3),
        ]
        let (t, skipped) = NeighbourBuilder.table(fromPairs: pairs, itemCount: 4, k: 2) { id in ids.firstIndex(of: id).map(Int32.init) }
        #expect(t.row(0).map(\.item) == [2, 3])
        #expect(t.row(2).map(\.item) == [0])
        #expect(skipped == 3)  // self pair, unknown id, repeated pair
    }

    @Test func rejectsBadParameters() {
        var c = RetrieverConfiguration.defaults(for: .seq)
        #expect(throws: NeighbourError.self) { try c.apply("window=0") }
        #expect(throws: NeighbourError.self) { try c.apply("decay=-1") }
        #expect(throws: NeighbourError.self) { try c.apply("nonsense=1") }
        #expect(throws: NeighbourError.self) { try c.apply("window") }
        #expect(throws: NeighbourError.self) { try c.apply("history_length=0") }
    }
}
