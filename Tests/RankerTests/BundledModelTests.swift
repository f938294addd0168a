import Catalog
import Foundation
import History
import Llama
import Testing
import Tokenizer
@testable import Ranker

/// The bundled model, its tokenizer and settings (with the keys that were defaulted).
private func bundledModel() throws -> (LlamaModel, SentencePieceTokenizer, PALRSettings, defaulted: [String]) {
    let model = try LlamaModel(path: repoRoot.appendingPathComponent("models/palr-ml-small-q4_0.gguf").path)
    var defaulted: [String] = []
    let settings = try PALRSettings(gguf: model.gguf, defaulted: &defaulted)
    return (model, try SentencePieceTokenizer(gguf: model.gguf), settings, defaulted)
}

/// The bundled default (models/): what `palr demo` runs, checked for validity.
@Suite struct BundledModelTests {
    @Test func demoProfilesGetUnseenCatalogItems() throws {
        let dir = repoRoot.appendingPathComponent("models")
        let (model, tok, settings, defaulted) = try bundledModel()
        #expect(settings.mode == .letters)
        // Made by the current converter: every key it always writes is there (else every
        // `recommend` on the bundle would print a note).
        #expect(defaulted.isEmpty, "\(defaulted)")
        // It was trained for letters-mode ranking only: no profile summaries.
        #expect(!settings.writesProfiles)
        let catalog = try CatalogPack.open(path: dir.appendingPathComponent("ml-small-catalog.gguf").path)
        let path = temporaryStorePath("palr-demo-test")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        _ = try store.importFile(dir.appendingPathComponent("demo-history.csv").path, options: ImportOptions(format: .movieLensCSV))
        let rec = try Recommender(ranker: try Ranker(model: model, tokenizer: tok, settings: settings, threads: 1),
                                  catalog: catalog, store: store, modelID: "bundled")
        let profiles = try store.profiles()
        #expect(profiles.count >= 3)
        for p in profiles {
            let seen = Set(try store.recent(profile: p.name, limit: 100_000).map(\.item))
            let r = try rec.recommend(profile: p.name, k: 10)
            #expect(r.items.count == 10)
            #expect(Set(r.items.map(\.id)).count == 10)
            #expect(r.items.allSatisfy { catalog.index(of: $0.id) != nil && !seen.contains($0.id) })
        }
    }

    /// The ranker's fp16 KV cache (its default since session 13) against fp32 on the
    /// bundled model and the demo profiles: the same top 10 in the same order, scores
    /// within rounding of half-precision keys and values.
    @Test func anF16CacheRanksTheDemoProfilesAsF32Does() throws {
        let dir = repoRoot.appendingPathComponent("models")
        let (model, tok, settings, _) = try bundledModel()
        let catalog = try CatalogPack.open(path: dir.appendingPathComponent("ml-small-catalog.gguf").path)
        let path = temporaryStorePath("palr-kv-test")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        _ = try store.importFile(dir.appendingPathComponent("demo-history.csv").path, options: ImportOptions(format: .movieLensCSV))
        func recommender(_ kv: KVCacheType) throws -> Recommender {
            try Recommender(ranker: try Ranker(model: model, tokenizer: tok, settings: settings, threads: 1, kvCache: kv),
                            catalog: catalog, store: store, modelID: "bundled-\(kv)")
        }
        let half = try recommender(.f16), full = try recommender(.f32)
        var worst = 0.0
        for p in try store.profiles() {
            let a = try half.recommend(profile: p.name, k: 10, useCache: false)
            let b = try full.recommend(profile: p.name, k: 10, useCache: false)
            // The same ten items (in the same order on this host; by id, so a near-tie that
            // another CPU's rounding swaps does not fail the test), each scored alike.
            #expect(Set(a.items.map(\.id)) == Set(b.items.map(\.id)), "\(p.name)")
            let full = Dictionary(uniqueKeysWithValues: b.items.map { ($0.id, $0.score) })
            for x in a.items { if let y = full[x.id] { worst = max(worst, abs(x.score - y)) } }
        }
        print("bundled model, demo profiles: f16 vs f32 KV cache, max |score difference| \(worst)")
        #expect(worst <= 1e-3)
    }
}
