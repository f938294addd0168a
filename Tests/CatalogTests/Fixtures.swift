// Small shared fixtures: toy catalogs and temporary files.

import Foundation
@testable import Catalog

enum Fixtures {
    /// Five items; neighbours: a → b (0.9), c (0.5); b → c (0.8); c → a (0.7), d (0.2); d, e none.
    /// Popularity: e 10, d 8, c 5, b 3, a 1.
    static func toyCatalog(k: Int = 3) throws -> ItemCatalog {
        let items = ItemList(ids: ["a", "b", "c", "d", "e"], titles: ["Alpha", "Beta", "Gamma", "Delta", "Épsilon (1999)"])
        let table = NeighbourTable(itemCount: 5, k: k)
        table.setRow(0, [(1, 0.9), (2, 0.5)])
        table.setRow(1, [(2, 0.8)])
        table.setRow(2, [(0, 0.7), (3, 0.2)])
        let info = CatalogInfo(id: "toy", name: "Toy catalog", version: 3, method: "seq", parameters: "{}",
                               retrieval: RetrievalSettings(historyLength: 5, recencyDecay: 0.5, popularityWeight: 0))
        return try ItemCatalog(info: info, items: items, popularity: [1, 3, 5, 8, 10], neighbours: table)
    }

    /// A unique path in the temporary directory, removed by the caller.
    static func temporaryPath(_ name: String) -> String {
        NSTemporaryDirectory() + "palr-catalog-tests-\(getpid())-\(UUID().uuidString)-\(name)"
    }

    /// The repository's sibling `shared/` directory (../shared from the repo root).
    static var sharedData: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }   // Tests/CatalogTests/Fixtures.swift → repo root
        return url.deletingLastPathComponent().appendingPathComponent("shared/data").path
    }
}
