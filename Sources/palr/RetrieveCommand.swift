// `palr retrieve`: candidates for a history from a catalog pack.

import ArgumentParser
import Catalog
import Foundation

struct RetrieveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retrieve",
        abstract: "Retrieve candidates for a history (external item ids) from a catalog pack.")

    @Option(help: "Catalog pack (.gguf) written by palr-convert catalog.")
    var catalog: String
    @Option(help: "History item ids, oldest first, comma-separated.")
    var items: String = ""
    @Option(help: "How many candidates (1...\(Retriever.maxCount)).")
    var n = Retriever.defaultCount
    @Option(help: "Retrieval overrides: history_length=…,recency_decay=…,popularity_weight=….")
    var params: String?
    @Option(name: .customLong("repeat"), help: "Repeat the request N times and report the mean retrieval time (benchmark).")
    var repeats: Int = 1
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        guard n >= 1 && n <= Retriever.maxCount else { throw ValidationError("--n must be in 1...\(Retriever.maxCount)") }
        let t0 = Date()
        let pack = try CatalogPack.open(path: catalog)
        let loaded = Date()
        var config = RetrieverConfiguration(neighbours: NeighbourParameters(method: .seq), retrieval: pack.info.retrieval)
        if let params { try config.apply(params) }
        let retriever = Retriever(catalog: pack, settings: config.retrieval)
        let history = items.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var result = retriever.retrieve(history: history, count: n)  // warm-up
        let t1 = Date()
        for _ in 0..<max(repeats, 1) { result = retriever.retrieve(history: history, count: n) }
        let retrieveMs = Date().timeIntervalSince(t1) * 1000 / Double(max(repeats, 1))
        let loadMs = loaded.timeIntervalSince(t0) * 1000

        if json {
            let out: [String: Any] = [
                "catalog": ["id": pack.info.id, "version": pack.info.version, "method": pack.info.method],
                "unknown": result.unknownCount,
                "sources": result.sourceCount,
                "items": result.items.enumerated().map { r, it in
                    ["rank": r + 1, "id": pack.ids[Int(it.index)], "title": pack.titles[Int(it.index)], "score": Double(it.score)] as [String: Any]
                },
                "timings_ms": ["load": loadMs, "retrieval": retrieveMs],
            ]
            let d = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: d, as: UTF8.self))
            return
        }
        print("catalog \(pack.info.id) v\(pack.info.version) (\(pack.info.method), \(pack.count) items, K=\(pack.k)); "
            + "\(result.sourceCount) history items used, \(result.unknownCount) unknown skipped")
        for (r, it) in result.items.enumerated() {
            print(String(format: "%3d  %10.5f  ", r + 1, it.score) + "\(pack.ids[Int(it.index)])  \(pack.titles[Int(it.index)])")
        }
        print(String(format: "load %.1f ms, retrieval %.3f ms", loadMs, retrieveMs))
    }
}
