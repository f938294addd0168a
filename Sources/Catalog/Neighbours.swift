// Offline neighbour building: for every item i, its top-K items j by one of
//
//   seq       C_seq(i,j)  = Σ over i's occurrences at position p of a user's sequence:
//                             decay^(d-1)             for j at p + d, 1 ≤ d ≤ window (what follows i)
//                           + backward · decay^(d-1)  for j at p - d (what came before i)
//   cooc      C_cooc(i,j) = Σ over users who have both i and j: 1 / |user|^userDamping
//   combined  seq + coocWeight · cooc (each normalised as below)
//
// normalised  S(i,j) = C(i,j) / ((n_i + shrink)^alpha · n_j^beta), n = occurrences (seq) or
// users (cooc). alpha = beta = 0.5 is cosine; alpha = 1 makes a row a conditional rate;
// beta > 0 discounts popular targets; shrink > 0 trusts rows of rarely seen items less.
//
// Work per item: a dense accumulator row (n_items floats) plus a touched list, so
// the cost is the number of (i, j) pairs visited, not n_items²: about
// Σ_occurrences 2·window for seq and Σ_users |user|² for cooc. Items are split
// across threads; each thread owns its scratch rows and writes disjoint table rows.

import Foundation

public enum NeighbourMethod: String, Sendable, CaseIterable, Codable {
    case cooc, seq, combined
}

/// How neighbours are built. The defaults of each method were chosen on the
/// validation items of ML-100K and ML-latest-small together (README, "Catalog
/// and retrieval"); `init(method:)` sets them.
public struct NeighbourParameters: Sendable, Equatable, Codable {
    public var method: NeighbourMethod
    /// Neighbour slots kept per item.
    public var k: Int = 100
    /// seq: how many positions after (and before) an occurrence count.
    public var window: Int = 10
    /// seq: weight decay^(distance - 1).
    public var decay: Double = 0.9
    /// seq: weight of items that came before, relative to items that follow.
    public var backward: Double = 0.5
    /// Normalisation exponents (see the file header).
    public var alpha: Double = 0.75
    public var beta: Double = 0.25
    /// Added to the source item's count before normalising (see the file header).
    public var shrink: Double = 5
    /// cooc: a user with m items contributes 1/m^userDamping to each pair.
    public var userDamping: Double = 0.5
    /// combined: weight of the cooc score added to the seq score.
    public var coocWeight: Double = 0.5

    public init(method: NeighbourMethod) {
        self.method = method
        switch method {
        case .combined: break
        case .seq:
            window = 20
            alpha = 1
            shrink = 20
        case .cooc:
            beta = 0.5
            shrink = 20
        }
    }

    /// Parameters as compact JSON (stored in the pack for provenance).
    public var json: String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? e.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// Ranges that keep every sum finite in Float: a window past 100,000 is longer than
    /// any sequence worth modelling and cost (window + 1) floats of decay powers (a window
    /// of 999,999,999 took 4 GB); decay above 1 grows decay^(window-1) to ∞; backward and
    /// cooc_weight multiply sums of up to n_interactions, so 1000 keeps them below 1e30.
    public static let kRange = 1...10_000
    public static let windowRange = 1...100_000
    public static let decayRange = 0.0...1.0
    public static let weightRange = 0.0...1000.0

    public func validated() throws(NeighbourError) -> NeighbourParameters {
        guard Self.kRange.contains(k) else { throw .badParameter("k must be in \(Self.kRange), is \(k)") }
        guard Self.windowRange.contains(window) else { throw .badParameter("window must be in \(Self.windowRange), is \(window)") }
        for (name, v) in [("decay", decay), ("backward", backward), ("alpha", alpha), ("beta", beta), ("shrink", shrink),
                          ("user_damping", userDamping), ("cooc_weight", coocWeight)] {
            guard v.isFinite && v >= 0 else { throw .badParameter("\(name) must be a finite number ≥ 0, is \(v)") }
        }
        guard Self.decayRange.contains(decay) else { throw .badParameter("decay must be in 0...1, is \(Self.g(decay))") }
        for (name, v) in [("backward", backward), ("cooc_weight", coocWeight)] where !Self.weightRange.contains(v) {
            throw .badParameter("\(name) must be in 0...1000, is \(Self.g(v))")
        }
        return self
    }

    private static func g(_ v: Double) -> String { String(format: "%g", v) }
}

public enum NeighbourError: Error, Equatable, CustomStringConvertible {
    case badParameter(String)
    public var description: String {
        switch self {
        case .badParameter(let r): return "neighbour parameters: \(r)"
        }
    }
}

public enum NeighbourBuilder {
    /// Builds the top-K table from training sequences. `progress(done, total)` is
    /// called now and then from one worker thread.
    public static func build(_ seqs: ItemSequences, parameters p: NeighbourParameters, threads: Int = 2,
                             progress: (@Sendable (Int, Int) -> Void)? = nil) throws(NeighbourError) -> NeighbourTable {
        let p = try p.validated()
        let n = seqs.itemCount
        let table = NeighbourTable(itemCount: n, k: p.k)
        guard n > 0 else { return table }
        let index = InvertedIndex(seqs, needPositions: p.method != .cooc, needUsers: p.method != .seq)
        let threads = max(1, min(threads, 64))
        let job = BuildJob(seqs: seqs, index: index, p: p, table: table, threads: threads, progress: progress)
        DispatchQueue.concurrentPerform(iterations: threads) { t in job.run(thread: t) }
        return table
    }
}

/// Item → where it occurs, in CSR form, built once per build.
struct InvertedIndex: Sendable {
    let occurrenceOffsets: [Int]     // (n_items + 1) item i's occurrences are occurrences[o[i]..<o[i+1]]
    let occurrences: [Int32]         // (n_interactions) positions in seqs.items
    let userOfPosition: [Int32]      // (n_interactions) user owning each position
    let userOffsets: [Int]           // (n_items + 1) item i's distinct users are users[u[i]..<u[i+1]]
    let users: [Int32]               // distinct (item, user) pairs, grouped by item
    let distinctOffsets: [Int]       // (n_users + 1) user u's distinct items are distinctItems[d[u]..<d[u+1]]
    let distinctItems: [Int32]
    let occurrenceCount: [Int]       // (n_items) n_i for seq
    let userCount: [Int]             // (n_items) n_i for cooc

    init(_ s: ItemSequences, needPositions: Bool, needUsers: Bool) {
        let n = s.itemCount
        var uop = [Int32](repeating: 0, count: s.items.count)
        for u in 0..<s.userCount { for q in s.offsets[u]..<s.offsets[u + 1] { uop[q] = Int32(u) } }
        userOfPosition = uop

        var occCount = [Int](repeating: 0, count: n)
        for i in s.items { occCount[Int(i)] += 1 }
        occurrenceCount = occCount
        if needPositions {
            var off = [Int](repeating: 0, count: n + 1)
            for i in 0..<n { off[i + 1] = off[i] + occCount[i] }
            var fill = off
            var occ = [Int32](repeating: 0, count: s.items.count)
            for (q, i) in s.items.enumerated() {
                occ[fill[Int(i)]] = Int32(q)
                fill[Int(i)] += 1
            }
            occurrenceOffsets = off
            occurrences = occ
        } else {
            occurrenceOffsets = []
            occurrences = []
        }

        // Distinct items per user (a stamp array marks what this user already has).
        var stamp = [Int32](repeating: -1, count: n)
        var dOff = [0]
        var dItems: [Int32] = []
        dItems.reserveCapacity(s.items.count)
        for u in 0..<s.userCount {
            for q in s.offsets[u]..<s.offsets[u + 1] {
                let i = Int(s.items[q])
                if stamp[i] != Int32(u) { stamp[i] = Int32(u); dItems.append(Int32(i)) }
            }
            dOff.append(dItems.count)
        }
        distinctOffsets = dOff
        distinctItems = dItems
        var uc = [Int](repeating: 0, count: n)
        for i in dItems { uc[Int(i)] += 1 }
        userCount = uc
        if needUsers {
            var off = [Int](repeating: 0, count: n + 1)
            for i in 0..<n { off[i + 1] = off[i] + uc[i] }
            var fill = off
            var us = [Int32](repeating: 0, count: dItems.count)
            for u in 0..<s.userCount {
                for q in dOff[u]..<dOff[u + 1] {
                    let i = Int(dItems[q])
                    us[fill[i]] = Int32(u)
                    fill[i] += 1
                }
            }
            userOffsets = off
            users = us
        } else {
            userOffsets = []
            users = []
        }
    }
}

/// One build, shared by the worker threads. Thread t handles items t, t+T, t+2T, …
/// and writes only their rows of `table`, so no two threads touch the same memory.
private final class BuildJob: @unchecked Sendable {
    let seqs: ItemSequences
    let index: InvertedIndex
    let p: NeighbourParameters
    let table: NeighbourTable
    let threads: Int
    let progress: (@Sendable (Int, Int) -> Void)?
    let invA: [Float]       // (n_items) 1 / (n_i + shrink)^alpha (seq counts)
    let invB: [Float]       // (n_items) 1 / n_j^beta
    let invAU: [Float]      // (n_items) same with user counts (cooc)
    let invBU: [Float]
    let decayPow: [Float]   // (window + 1) decay^(d-1) at index d
    let userWeight: [Float] // (n_users) 1 / |user|^userDamping

    init(seqs: ItemSequences, index: InvertedIndex, p: NeighbourParameters, table: NeighbourTable, threads: Int,
         progress: (@Sendable (Int, Int) -> Void)?) {
        self.seqs = seqs
        self.index = index
        self.p = p
        self.table = table
        self.threads = threads
        self.progress = progress
        func inv(_ c: [Int], _ e: Double, plus: Double = 0) -> [Float] { c.map { Float(1 / pow(Double(max($0, 1)) + plus, e)) } }
        invA = inv(index.occurrenceCount, p.alpha, plus: p.shrink)
        invB = inv(index.occurrenceCount, p.beta)
        invAU = inv(index.userCount, p.alpha, plus: p.shrink)
        invBU = inv(index.userCount, p.beta)
        decayPow = (0...p.window).map { d in d == 0 ? 0 : Float(pow(p.decay, Double(d - 1))) }
        userWeight = (0..<seqs.userCount).map { u in
            let m = index.distinctOffsets[u + 1] - index.distinctOffsets[u]
            return Float(1 / pow(Double(max(m, 1)), p.userDamping))
        }
    }

    func run(thread t: Int) {
        let n = seqs.itemCount
        let k = p.k
        let useSeq = p.method != .cooc
        let useCooc = p.method != .seq
        let coocWeight: Float = p.method == .combined ? Float(p.coocWeight) : 1
        let backward = Float(p.backward)
        let window = p.window

        // Scratch owned by this thread for the whole build.
        let seqAcc = UnsafeMutablePointer<Float>.allocate(capacity: n)     // (n_items) C_seq(i, ·)
        let coocAcc = UnsafeMutablePointer<Float>.allocate(capacity: n)    // (n_items) C_cooc(i, ·)
        let stamp = UnsafeMutablePointer<Int32>.allocate(capacity: n)      // (n_items) last item whose row touched j
        let touched = UnsafeMutablePointer<Int32>.allocate(capacity: n)    // (≤ n_items) js touched in this row
        let sorted = UnsafeMutablePointer<ScoredEntry>.allocate(capacity: k)
        seqAcc.initialize(repeating: 0, count: n)
        coocAcc.initialize(repeating: 0, count: n)
        stamp.initialize(repeating: -1, count: n)
        defer {
            seqAcc.deallocate(); coocAcc.deallocate(); stamp.deallocate(); touched.deallocate(); sorted.deallocate()
        }
        let top = TopK(capacity: k)

        seqs.items.withUnsafeBufferPointer { items in
        seqs.offsets.withUnsafeBufferPointer { offsets in
            var done = 0
            var i = t
            while i < n {
                var nTouched = 0
                let mark = Int32(i)
                @inline(__always) func touch(_ j: Int32) {
                    if stamp[Int(j)] != mark { stamp[Int(j)] = mark; touched[nTouched] = j; nTouched += 1 }
                }
                if useSeq {
                    for o in index.occurrenceOffsets[i]..<index.occurrenceOffsets[i + 1] {
                        let q = Int(index.occurrences[o])
                        let u = Int(index.userOfPosition[q])
                        let start = offsets[u], end = offsets[u + 1]
                        for d in 1...window {
                            let w = decayPow[d]
                            let f = q + d
                            let b = q - d
                            if f >= end && b < start { break }
                            if f < end {
                                let j = items[f]
                                if Int(j) != i { touch(j); seqAcc[Int(j)] += w }
                            }
                            if b >= start && backward > 0 {
                                let j = items[b]
                                if Int(j) != i { touch(j); seqAcc[Int(j)] += backward * w }
                            }
                        }
                    }
                }
                if useCooc {
                    for o in index.userOffsets[i]..<index.userOffsets[i + 1] {
                        let u = Int(index.users[o])
                        let w = userWeight[u]
                        for q in index.distinctOffsets[u]..<index.distinctOffsets[u + 1] {
                            let j = index.distinctItems[q]
                            if Int(j) != i { touch(j); coocAcc[Int(j)] += w }
                        }
                    }
                }
                // Normalise, keep the best K (ties: lower index), reset the scratch.
                top.reset(limit: k)
                let aSeq = invA[i], aCooc = invAU[i] * coocWeight
                for x in 0..<nTouched {
                    let j = Int(touched[x])
                    var s: Float = 0
                    if useSeq { s += seqAcc[j] * aSeq * invB[j]; seqAcc[j] = 0 }
                    if useCooc { s += coocAcc[j] * aCooc * invBU[j]; coocAcc[j] = 0 }
                    if s > 0 { top.consider(ScoredEntry(score: s, tie: Int32(j), item: Int32(j))) }
                }
                let m = top.drainSorted(into: sorted)
                let row = i * k
                for s in 0..<k {
                    table.ids[row + s] = s < m ? sorted[s].item : -1
                    table.scores[row + s] = s < m ? sorted[s].score : 0
                }
                done += 1
                if t == 0, let progress, done % 512 == 0 { progress(min(done * threads, n), n) }
                i += threads
            }
            if t == 0, let progress { progress(n, n) }
        }
        }
    }
}

extension NeighbourBuilder {
    /// A table from neighbour pairs computed elsewhere (`--neighbours-csv`): per
    /// item, the K best-scoring pairs, best first (ties: lower catalog index).
    /// Pairs naming an unknown item, an item paired with itself, or a pair already
    /// seen are skipped and counted.
    public static func table(fromPairs pairs: [(item: String, neighbour: String, score: Float)], itemCount: Int, k: Int,
                             itemIndex: (String) -> Int32?) -> (table: NeighbourTable, skipped: Int) {
        var rows = [[(item: Int32, score: Float)]](repeating: [], count: itemCount)
        var skipped = 0
        for p in pairs {
            guard let i = itemIndex(p.item), let j = itemIndex(p.neighbour), i != j else { skipped += 1; continue }
            rows[Int(i)].append((j, p.score))
        }
        let table = NeighbourTable(itemCount: itemCount, k: k)
        for i in 0..<itemCount where !rows[i].isEmpty {
            var r = rows[i]
            r.sort { $0.score != $1.score ? $0.score > $1.score : $0.item < $1.item }
            var seen = Set<Int32>()
            var kept: [(item: Int32, score: Float)] = []
            for e in r {
                if !seen.insert(e.item).inserted { skipped += 1; continue }
                if kept.count < k { kept.append(e) }
            }
            table.setRow(i, kept)
        }
        return (table, skipped)
    }
}
