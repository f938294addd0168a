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
    @Option(parsing: .unconditional, help: "How many candidates (1...\(Retriever.maxCount)).")
    var n = Retriever.defaultCount
    @Option(help: "Retrieval overrides: history_length=… (1–1000), recency_decay=… ((0, 1]), popularity_weight=… (0–1000).")
    var params: String?
    @Option(name: .customLong("repeat"), parsing: .unconditional,
            help: "Repeat the request N times (N ≥ 1) and report the mean retrieval time (benchmark).")
    var repeats: Int = 1
    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard n >= 1 && n <= Retriever.maxCount else { throw ValidationError("--n must be in 1...\(Retriever.maxCount) (got \(n))") }
        // The syntax is checked here (a usage error shows this command's usage); the
        // values are checked again in run() against the pack's settings.
        if let params {
            var probe = RetrieverConfiguration.defaults(for: .seq)
            try checkedParameters("--params") { () throws(NeighbourError) in try probe.apply(params) }
        }
        // A pack's neighbours are built already: a neighbour-building key would be accepted
        // and change nothing.
        for part in (params ?? "").split(separator: ",") {
            let key = part.split(separator: "=", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            if RetrieverConfiguration.keys.contains(key) && !RetrieverConfiguration.retrievalKeys.contains(key) {
                throw ValidationError("--params: \(key) shapes how neighbours are built, and the pack's are built already; "
                                      + "retrieve takes \(RetrieverConfiguration.retrievalKeys.sorted().joined(separator: ", ")) "
                                      + "(rebuild the pack with palr-convert catalog --params to change the rest)")
            }
        }
        guard repeats >= 1 else { throw ValidationError("--repeat must be at least 1 (got \(repeats))") }
    }

    func run() throws {
        let t0 = Date()
        let pack: ItemCatalog
        try DataFiles.checkReadable(path: catalog)
        do { pack = try CatalogPack.open(path: catalog) } catch { throw CLIError(path: catalog, error) }
        let loaded = Date()
        var config = RetrieverConfiguration(neighbours: NeighbourParameters(method: .seq), retrieval: pack.info.retrieval)
        if let params { try checkedParameters("--params") { () throws(NeighbourError) in try config.apply(params) } }
        do { _ = try config.retrieval.validated() } catch {
            guard case .badParameter(let reason) = error else { throw error }
            // Without --params every value came from the pack.
            if params == nil { throw CLIError(path: catalog, "stored retrieval settings: \(reason)") }
            throw ValidationError("--params: \(reason)")
        }
        let retriever = Retriever(catalog: pack, settings: config.retrieval)
        let history = items.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var result = retriever.retrieve(history: history, count: n)  // warm-up
        let t1 = Date()
        for _ in 0..<repeats { result = retriever.retrieve(history: history, count: n) }
        let retrieveMs = Date().timeIntervalSince(t1) * 1000 / Double(repeats)
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
        print("catalog \(terminalSafe(pack.info.id)) v\(pack.info.version) (\(terminalSafe(pack.info.method)), \(pack.count) items, K=\(pack.k)); "
            + "\(result.sourceCount) history items used, \(result.unknownCount) unknown skipped")
        for (r, it) in result.items.enumerated() {
            print(String(format: "%3d  %10.5f  ", r + 1, it.score) + "\(terminalSafe(pack.ids[Int(it.index)]))  \(terminalSafe(pack.titles[Int(it.index)]))")
        }
        print(String(format: "load %.1f ms, retrieval %.3f ms", loadMs, retrieveMs))
    }
}
