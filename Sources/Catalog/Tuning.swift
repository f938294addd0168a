// One retriever configuration (how neighbours are built + how they are used),
// its `key=value` text form for command lines, and the validation grid search.

import Foundation

public struct RetrieverConfiguration: Sendable, Equatable {
    public var neighbours: NeighbourParameters
    public var retrieval: RetrievalSettings

    public init(neighbours: NeighbourParameters, retrieval: RetrievalSettings) {
        self.neighbours = neighbours
        self.retrieval = retrieval
    }

    /// The shipped defaults of each method (chosen on validation items; README, "Catalog and retrieval").
    public static func defaults(for method: NeighbourMethod) -> RetrieverConfiguration {
        var retrieval = RetrievalSettings()
        switch method {
        case .combined: break
        case .seq: retrieval = RetrievalSettings(historyLength: 20, recencyDecay: 0.8, popularityWeight: 0)
        case .cooc: retrieval = RetrievalSettings(historyLength: 20, recencyDecay: 0.7, popularityWeight: 0)
        }
        return RetrieverConfiguration(neighbours: NeighbourParameters(method: method), retrieval: retrieval)
    }

    /// The keys that change how candidates are drawn from a built pack (the rest change
    /// how the neighbours are built).
    public static let retrievalKeys: Set<String> = ["history_length", "recency_decay", "popularity_weight"]

    public static let keys = ["k", "window", "decay", "backward", "alpha", "beta", "shrink", "user_damping", "cooc_weight",
                              "history_length", "recency_decay", "popularity_weight"]

    /// Applies "window=10,decay=0.8,history_length=20" (keys as in `keys`).
    /// A key given twice is an error (which one would win is not obvious), and so is a
    /// text with no key=value at all.
    public mutating func apply(_ text: String) throws(NeighbourError) {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw .badParameter("no key=number given (keys: \(Self.keys.joined(separator: ", ")))")
        }
        var seen = Set<String>()
        for part in parts {
            let kv = part.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: .whitespaces) }
            guard !part.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw .badParameter("an empty piece (a trailing or doubled comma) in '\(text)'")
            }
            // Decimal only: Double() also reads "0x10" (16) and "nan".
            guard kv.count == 2, DataFiles.isNumber(kv[1]), let v = Double(kv[1]), v.isFinite else {
                throw .badParameter("'\(part)' is not key=number (keys: \(Self.keys.joined(separator: ", ")))")
            }
            guard seen.insert(kv[0]).inserted else { throw .badParameter("\(kv[0]) is given twice") }
            func int() throws(NeighbourError) -> Int {
                guard v == v.rounded() else { throw .badParameter("\(kv[0]) must be a whole number, is \(kv[1])") }
                // Out of every integer key's range (each is checked below); not converted, as
                // Int(v) traps beyond Int's.
                guard abs(v) < 1e9 else {
                    let range = ["k": "\(NeighbourParameters.kRange)", "window": "\(NeighbourParameters.windowRange)",
                                 "history_length": "\(RetrievalSettings.historyLengthRange)"][kv[0]] ?? "range"
                    throw .badParameter("\(kv[0]) must be in \(range), is \(String(format: "%g", v))")
                }
                return Int(v)
            }
            switch kv[0] {
            case "k": neighbours.k = try int()
            case "window": neighbours.window = try int()
            case "decay": neighbours.decay = v
            case "backward": neighbours.backward = v
            case "alpha": neighbours.alpha = v
            case "beta": neighbours.beta = v
            case "shrink": neighbours.shrink = v
            case "user_damping": neighbours.userDamping = v
            case "cooc_weight": neighbours.coocWeight = v
            case "history_length":
                retrieval.historyLength = try int()
                guard retrieval.historyLength >= 1 else { throw .badParameter("history_length must be at least 1") }
            case "recency_decay":
                guard v > 0 && v <= 1 else { throw .badParameter("recency_decay must be in (0, 1]") }
                retrieval.recencyDecay = v
            case "popularity_weight":
                guard v >= 0 else { throw .badParameter("popularity_weight must be ≥ 0") }
                retrieval.popularityWeight = v
            default: throw .badParameter("unknown key '\(kv[0])' (keys: \(Self.keys.joined(separator: ", ")))")
            }
        }
        _ = try neighbours.validated()
    }

    /// The parameters that matter for this method, in `apply` syntax.
    public var summary: String {
        let n = neighbours, r = retrieval
        var parts = ["k=\(n.k)"]
        if n.method != .cooc { parts += ["window=\(n.window)", "decay=\(g(n.decay))", "backward=\(g(n.backward))"] }
        parts += ["alpha=\(g(n.alpha))", "beta=\(g(n.beta))", "shrink=\(g(n.shrink))"]
        if n.method != .seq { parts += ["user_damping=\(g(n.userDamping))"] }
        if n.method == .combined { parts += ["cooc_weight=\(g(n.coocWeight))"] }
        parts += ["history_length=\(r.historyLength)", "recency_decay=\(g(r.recencyDecay))", "popularity_weight=\(g(r.popularityWeight))"]
        return parts.joined(separator: ",")
    }

    private func g(_ v: Double) -> String { String(format: "%g", v) }
}

/// A grid: every neighbour build × every retrieval setting.
public struct TuningGrid: Sendable {
    public var builds: [NeighbourParameters]
    public var retrieval: [RetrievalSettings]

    public init(builds: [NeighbourParameters], retrieval: [RetrievalSettings]) {
        self.builds = builds
        self.retrieval = retrieval
    }

    public var size: Int { builds.count * retrieval.count }

    /// A grid around a base configuration: `values` maps keys of
    /// `RetrieverConfiguration.keys` to the values to try.
    public static func around(_ base: RetrieverConfiguration, values: [String: [Double]]) throws(NeighbourError) -> TuningGrid {
        func expand(_ keys: [String], _ start: RetrieverConfiguration) throws(NeighbourError) -> [RetrieverConfiguration] {
            var out = [start]
            for key in keys {
                var next: [RetrieverConfiguration] = []
                for c in out {
                    for v in values[key] ?? [] {
                        var d = c
                        try d.apply("\(key)=\(v)")
                        next.append(d)
                    }
                }
                out = next
            }
            return out
        }
        let keys = values.keys.sorted()
        let builds = try expand(keys.filter { !RetrieverConfiguration.retrievalKeys.contains($0) }, base).map(\.neighbours)
        let retrieval = try expand(keys.filter { RetrieverConfiguration.retrievalKeys.contains($0) }, base).map(\.retrieval)
        return TuningGrid(builds: builds, retrieval: retrieval)
    }

    /// Parses "window=5/10/20,cooc_weight=0.1/0.3" into a grid around `base`.
    public static func parse(_ text: String, base: RetrieverConfiguration) throws(NeighbourError) -> TuningGrid {
        var values: [String: [Double]] = [:]
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw .badParameter("the grid is empty (give key=value/value/…; keys: \(RetrieverConfiguration.keys.joined(separator: ", ")))")
        }
        // Empty pieces ("a=1,,b=2", "window=5//6") are errors, not skipped.
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            // Spaces around keys and values are not part of them ("window=5, window=10").
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            let pieces = kv.count == 2 ? kv[1].split(separator: "/", omittingEmptySubsequences: false) : []
            let vs = pieces.compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard kv.count == 2, !vs.isEmpty, vs.count == pieces.count else {
                throw .badParameter("'\(part)' is not key=value/value/… (keys: \(RetrieverConfiguration.keys.joined(separator: ", ")))")
            }
            guard values[kv[0]] == nil else {
                throw .badParameter("'\(kv[0])' is given twice; give its values once, separated by '/'")
            }
            values[kv[0]] = vs
        }
        return try around(base, values: values)
    }

    /// The grid `palr eval --tune` searches around `base` (a method's defaults):
    /// seq 162 builds, cooc 36, combined 54 (seq's shape fixed at `base`), each
    /// with 27 retrieval settings.
    public static func standard(around base: RetrieverConfiguration) -> TuningGrid {
        var values: [String: [Double]] = [
            "history_length": [10, 20, 50],
            "recency_decay": [0.7, 0.8, 0.9],
            "popularity_weight": [0, 0.02, 0.05],
            "shrink": [0, 5, 20],
        ]
        switch base.neighbours.method {
        case .seq:
            values["window"] = [5, 10, 20]
            values["backward"] = [0.5, 1]
            values["alpha"] = [0.5, 0.75, 1]
            values["beta"] = [0, 0.25, 0.5]
        case .cooc:
            values["alpha"] = [0.5, 0.75, 1]
            values["beta"] = [0.25, 0.5]
            values["user_damping"] = [0, 0.5]
        case .combined:
            values["window"] = [5, 10, 20]
            values["cooc_weight"] = [0.05, 0.2, 0.5]
            values["user_damping"] = [0, 0.5]
        }
        // The keys and values above are all valid, so this cannot fail.
        return (try? around(base, values: values)) ?? TuningGrid(builds: [], retrieval: [])
    }
}

public struct TuningResult: Sendable {
    public var configuration: RetrieverConfiguration
    public var validation: RankingMetrics
}

extension LeaveOneOutData {
    /// Scores every grid point on the validation items (neighbours built without
    /// each user's last two items) and returns them best-first by NDCG@10, then HR@10.
    /// The users are those the evaluation itself takes: `users` sampled (with `seed`)
    /// from `pool` (all users when nil).
    public func tune(_ grid: TuningGrid, users: Int? = nil, seed: UInt64 = 1, from pool: Set<Int>? = nil,
                     threads: Int = 2, progress: ((Int, Int, TuningResult) -> Void)? = nil) throws -> [TuningResult] {
        let sample = sampleUsers(users, seed: seed, from: pool)
        guard !sample.isEmpty else { throw EvaluationError.noUsers("no user has 3 or more interactions with catalog items") }
        var results: [TuningResult] = []
        for (b, build) in grid.builds.enumerated() {
            let catalog = try trainingCatalog(cut: 2, parameters: build, threads: threads)
            let reports = try evaluate(catalog: catalog, heldOut: .validation, users: sample, settings: grid.retrieval, threads: threads)
            for (s, rep) in zip(grid.retrieval, reports) {
                results.append(TuningResult(configuration: RetrieverConfiguration(neighbours: build, retrieval: s),
                                            validation: rep.retrieval))
            }
            if let progress, let best = results.max(by: { Self.worse($0, $1) }) { progress(b + 1, grid.builds.count, best) }
        }
        return results.sorted { Self.worse($1, $0) }
    }

    static func worse(_ a: TuningResult, _ b: TuningResult) -> Bool {
        a.validation.ndcg10 != b.validation.ndcg10 ? a.validation.ndcg10 < b.validation.ndcg10 : a.validation.hr10 < b.validation.hr10
    }
}
