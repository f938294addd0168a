import Catalog
import Foundation
import History
import Llama
import Testing
import Tokenizer
@testable import Ranker

/// The bundled default (models/): what `palr demo` runs, checked for validity.
@Suite struct BundledModelTests {
    @Test func demoProfilesGetUnseenCatalogItems() throws {
        let dir = repoRoot.appendingPathComponent("models")
        let model = try LlamaModel(path: dir.appendingPathComponent("palr-ml-small-q4_0.gguf").path)
        let tok = try SentencePieceTokenizer(gguf: model.gguf)
        var defaulted: [String] = []
        let settings = try PALRSettings(gguf: model.gguf, defaulted: &defaulted)
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
}
