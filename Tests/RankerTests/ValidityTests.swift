import Catalog
import Foundation
import GGUF
import History
import Llama
import Testing
import Tokenizer
@testable import Ranker

/// Across 1,000 random ML-100K profiles, in every mode, the ranker returns exactly
/// k distinct items, all of them candidates.
@Suite struct ValidityTests {
    @Test(arguments: ScoringMode.allCases)
    func everyModeReturnsOnlyCandidates(mode: ScoringMode) throws {
        let ml = try #require(ML100K.shared, "ML-100K not found under ../shared/data/ml-100k")
        // Short prompts keep 1,000 debug-build rankings per mode fast; the mechanics are the same.
        let r = try makeRanker { $0.maxHistory = 5; $0.titleTokenLimit = 8 }
        let retriever = Retriever(catalog: ml.catalog)
        var rng = SystemRandomNumberGenerator()
        let users = (0..<1000).map { _ in ml.data.evaluableUsers.randomElement(using: &rng)! }
        let k = 10
        var bad = 0, short = 0
        let t0 = Date()
        for u in users {
            let seq = Array(ml.data.sequences.sequence(u))
            let cut = Int.random(in: 0..<seq.count, using: &rng)   // some profiles have empty histories
            let history = Array(seq.prefix(cut))
            let got = retriever.retrieve(indices: history, count: 20)
            let cands = got.items.map { Candidate(id: ml.catalog.ids[Int($0.index)], title: ml.catalog.titles[Int($0.index)]) }
            let res = try r.rank(history: history.map { ml.catalog.titles[Int($0)] }, candidates: cands, k: k, mode: mode)
            let ids = res.items.map(\.id)
            let candIDs = Set(cands.map(\.id))
            let seen = Set(history.map { ml.catalog.ids[Int($0)] })
            if Set(ids).count != ids.count || !ids.allSatisfy({ candIDs.contains($0) && !seen.contains($0) }) { bad += 1 }
            if ids.count != min(k, cands.count) { short += 1 }
        }
        print("\(mode): 1000 ML-100K profiles in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s: \(bad) invalid lists, \(short) of the wrong length")
        #expect(bad == 0)
        #expect(short == 0)
    }
}

/// The pipeline with a history store: cached results, stale detection, failures.
@Suite struct RecommenderTests {
    func makeStore() throws -> (HistoryStore, String) {
        let path = temporaryStorePath("palr-rec")
        return (try HistoryStore(path: path), path)
    }

    @Test func cachedResultsAreServedUntilTheHistoryChanges() throws {
        let ml = try #require(ML100K.shared)
        let (store, path) = try makeStore()
        defer { removeStore(path) }
        let rec = try Recommender(ranker: try makeRanker(), catalog: ml.catalog, store: store, modelID: "tiny")
        let seq = ml.data.sequences.sequence(0).prefix(8)
        _ = try store.record(seq.enumerated().map { i, item in
            NewInteraction(profile: "alice", item: ml.catalog.ids[Int(item)], kind: .view, value: nil, timestamp: Int64(1000 + i))
        }, createProfiles: true)
        let first = try rec.recommend(profile: "alice", k: 5)
        #expect(!first.fromCache && first.items.count == 5)
        #expect(try !rec.isStale(profile: "alice", k: 5))
        // Letters mode scored the whole window of 20 for k = 5, and cached all of it: a
        // request for 10 (the same 20 candidates) is served from it, with the same first 5.
        #expect(try !rec.isStale(profile: "alice", k: 10))
        let ten = try rec.recommend(profile: "alice", k: 10)
        #expect(ten.fromCache && ten.items.count == 10 && Array(ten.items.prefix(5).map(\.id)) == first.items.map(\.id))
        // Generate mode writes only k titles: a cached 5 cannot answer a request for 10.
        _ = try rec.recommend(profile: "alice", k: 5, mode: .generate)
        #expect(try !rec.isStale(profile: "alice", k: 5, mode: .generate))
        #expect(try rec.isStale(profile: "alice", k: 10, mode: .generate))
        let second = try rec.recommend(profile: "alice", k: 5)
        #expect(second.fromCache && second.items.map(\.id) == first.items.map(\.id))
        _ = try store.record(NewInteraction(profile: "alice", item: first.items[0].id, kind: .view, value: nil, timestamp: 2000))
        #expect(try rec.isStale(profile: "alice", k: 5))
        let third = try rec.recommend(profile: "alice", k: 5)
        #expect(!third.fromCache && !third.items.contains { $0.id == first.items[0].id })
        // A k above the model's candidate count (20) retrieves k candidates; the entry it
        // caches is the one isStale looks up for that k (else refresh redoes it every run).
        _ = try rec.recommend(profile: "alice", k: 30)
        #expect(try !rec.isStale(profile: "alice", k: 30))
    }

    @Test func unknownProfileAndEverythingSeenAreClearErrors() throws {
        let ml = try #require(ML100K.shared)
        let (store, path) = try makeStore()
        defer { removeStore(path) }
        let rec = try Recommender(ranker: try makeRanker(), catalog: ml.catalog, store: store, modelID: "tiny")
        #expect(throws: HistoryError.unknownProfile("nobody")) { try rec.recommend(profile: "nobody") }
        // A profile that has seen every catalog item has nothing left.
        try store.setRetentionCap(nil)
        _ = try store.record(ml.catalog.ids.enumerated().map { i, id in
            NewInteraction(profile: "all", item: id, kind: .view, value: nil, timestamp: Int64(i))
        }, createProfiles: true)
        #expect(throws: RecommenderError.self) { try rec.recommend(profile: "all") }
    }
}

/// A model whose logits are NaN (its final norm weights are) never yields a ranking.
@Suite struct NonFiniteScoreTests {
    @Test(arguments: [ScoringMode.letters, .likelihood, .generate])
    func nanLogitsAreAnErrorInEveryMode(mode: ScoringMode) throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("palr-nan-\(getpid())-\(mode.rawValue).gguf").path
        defer { unlink(out) }
        try writeModelWithNaNOutputNorm(to: out)
        let model = try LlamaModel(path: out)
        let tok = try SentencePieceTokenizer(gguf: model.gguf)
        let ranker = try Ranker(model: model, tokenizer: tok, settings: PALRSettings(), contextLength: 1024, threads: 1)
        #expect(throws: RankerError.self) {
            _ = try ranker.rank(history: someTitles, candidates: someCandidates, k: 3, mode: mode)
        }
    }
}

/// The tiny ranker with its output norm set to NaN: every logit is NaN (damaged weights).
func writeModelWithNaNOutputNorm(to out: String) throws {
    let f = try GGUFFile(path: tinyRankerModelPath)
    let tensors = f.tensors.compactMap { t in t.type.map { GGUFTensorPlan(name: t.name, dims: t.dims, type: $0) } }
    let w = try GGUFWriter(path: out, metadata: f.metadata.map { ($0.key, $0.value) }, tensors: tensors)
    for t in f.tensors {
        var bytes = Array(f.data(of: t))
        if t.name == "output_norm.weight" {
            bytes = Array(repeating: Float.nan, count: bytes.count / 4).withUnsafeBytes { Array($0) }
        }
        try w.write(tensor: t.name, bytes: bytes)
    }
    try w.finish()
}
