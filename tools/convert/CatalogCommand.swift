// `palr-convert catalog`: items + interactions → a catalog pack (GGUF).

import ArgumentParser
import Catalog
import Foundation

struct CatalogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog",
        abstract: "Build a catalog pack: item ids and titles, popularity and every item's top-K neighbours.")

    @Option(help: "Item file: u.item, movies.dat, movies.csv or a CSV with id,title.")
    var items: String
    @Option(help: "Item format when the name does not say: ml-100k, ml-1m, csv.")
    var itemsFormat: String?
    @Option(help: "Interaction file: u.data, ratings.dat, ratings.csv or a CSV with a header (optional with --neighbours-csv).")
    var interactions: String?
    @Option(help: "Interaction format when the name does not say: ml-100k, ml-1m, csv.")
    var interactionsFormat: String?
    @Option(help: "CSV column mapping, e.g. user=uid,item=sku,time=ts.")
    var columns: String?
    @Option(name: [.short, .customLong("output")], help: "The pack to write (.gguf; replaced atomically).")
    var output: String
    @Option(help: "Neighbour method: cooc, seq, combined.")
    var method: String = NeighbourMethod.combined.rawValue
    @Option(parsing: .unconditional, help: "Neighbours kept per item, 1–10000.")
    var k: Int?
    @Option(help: "Parameter overrides, e.g. window=10,history_length=20 (see README).")
    var params: String?
    @Flag(help: "Choose the parameters first: grid search on each user's second-to-last item (as palr eval --tune).")
    var tune = false
    @Option(help: "Import neighbours from a CSV (item,neighbour,score) instead of building them.")
    var neighboursCsv: String?
    @Option(parsing: .unconditional, help: "Leave out each user's last N interactions, N ≥ 0 (2 = the leave-one-out training part).")
    var holdOut = 0
    @Option(help: "Catalog id (default: the output file's name without extension).")
    var id: String?
    @Option(help: "Catalog name (default: the id).")
    var name: String?
    @Option(parsing: .unconditional, help: "Catalog version, 0–4294967295 (stored as uint32).")
    var version = 1
    @Option(parsing: .unconditional, help: "Worker threads, at least 1.")
    var threads = 2

    /// The number `key=` sets in a `--params` text, if it sets one (it is checked in full later).
    static func parameterValue(_ key: String, in params: String) -> Double? {
        for part in params.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if kv.count == 2, kv[0] == key { return Double(kv[1]) }
        }
        return nil
    }

    /// The neighbour builder's range of K (NeighbourParameters.validated).
    static let kRange = NeighbourParameters.kRange

    func validate() throws {
        try check("--k", k, atLeast: Self.kRange.lowerBound, atMost: Self.kRange.upperBound)
        try check("--hold-out", holdOut, atLeast: 0)
        try check("--version", version, atLeast: 0, atMost: Int(UInt32.max))
        try check("--threads", threads, atLeast: 1)
        try checkOutputOption(output)
    }

    func run() throws {
        guard let m = NeighbourMethod(rawValue: method) else {
            throw ValidationError("unknown method '\(method)' (cooc, seq, combined)")
        }
        guard !tune || (interactions != nil && neighboursCsv == nil) else {
            throw ValidationError("--tune needs --interactions and builds the neighbours itself (no --neighbours-csv)")
        }
        guard interactions != nil || neighboursCsv != nil else {
            throw ValidationError("give --interactions (to build neighbours) or --neighbours-csv (to import them)")
        }
        try prepareOutput(output, inputs: [items] + [interactions, neighboursCsv].compactMap { $0 })
        var config = RetrieverConfiguration.defaults(for: m)
        if let k { try config.apply("k=\(k)") }
        if let params {
            // Two values for one setting: the later one won silently.
            if let k, let given = Self.parameterValue("k", in: params), given != Double(k) {
                throw ValidationError("--k \(k) and --params k=\(String(format: "%g", given)) disagree: give K once")
            }
            try config.apply(params)
            // A pack with settings retrieval rejects would be written and then fail to load.
            config.retrieval = try config.retrieval.validated()
        }

        let t0 = Date()
        let itemList = try DataFiles.readItems(path: items, formatName: itemsFormat)
        // Caught here, naming the file: otherwise the run would go on to fail at the very
        // end with the pack writer's "catalog has no items".
        if itemList.count == 0 { throw ToolError(Self.noItemRows(items)) }
        note("items: \(itemList.count) from \(items) (\(seconds(since: t0)))")
        var index: [String: Int32] = [:]
        for (i, id) in itemList.ids.enumerated() { index[id] = Int32(i) }

        var training = ItemSequences(itemCount: itemList.count, sequences: [])
        if let interactions {
            let t = Date()
            let log = try DataFiles.readInteractions(path: interactions, formatName: interactionsFormat, columns: columns)
            if !log.hasTimes {
                // Sequential neighbours and --hold-out follow each user's order: file order here.
                note("warning: \(interactions) has no time column (looked for \(CSVColumns.knownTime.joined(separator: ", "))); "
                     + "each user's interactions are taken in file order (name the column with --columns time=NAME)")
            }
            let made = ItemSequences.make(from: log, itemCount: itemList.count) { index[$0] }
            training = holdOut > 0 ? made.sequences.droppingLast(holdOut) : made.sequences
            note("interactions: \(log.count) of \(log.userIds.count) users from \(interactions) (\(seconds(since: t)))"
                + (made.skippedInteractions > 0 ? "; \(made.skippedInteractions) with items not in the item file skipped" : "")
                + (holdOut > 0 ? "; \(training.interactionCount) kept after holding out each user's last \(holdOut)" : ""))
            // Item ids from another data set (or another id column) match few or no items:
            // none at all leaves a pack without popularity or neighbours, so it is an error;
            // most skipped is almost always that mistake too, but a partial overlap can be
            // intended (a catalog subset), so it is a warning.
            if log.count == 0 {
                throw ToolError("\(interactions) holds no interaction rows (a header at most): nothing to build neighbours from")
            }
            if made.skippedInteractions == log.count {
                throw ToolError("no interaction in \(interactions) names an item of \(items) (all \(log.count) skipped, "
                                + "\(made.unknownItemIds) distinct item ids unknown): ids from a different data set?")
            }
            if made.skippedInteractions * 2 > log.count {
                let share = Double(made.skippedInteractions) / Double(log.count) * 100
                note("warning: \(made.skippedInteractions) of \(log.count) interactions in \(interactions) "
                     + "(\(String(format: "%.1f", share))%) name items not in \(items) and were skipped: ids from a different data set?")
            }
            if tune {
                let data = LeaveOneOutData(items: itemList, sequences: made.sequences)
                let grid = TuningGrid.standard(around: config)
                note("tuning \(m.rawValue): \(grid.builds.count) builds × \(grid.retrieval.count) retrieval settings on the validation items")
                let results = try data.tune(grid, threads: threads) { done, total, best in
                    if done % 10 == 0 || done == total { note("  \(done)/\(total) builds; best NDCG@10 \(best.validation.ndcg10)") }
                }
                if let best = results.first {
                    config = best.configuration
                    note("chosen: \(config.summary) (validation NDCG@10 \(best.validation.ndcg10), HR@10 \(best.validation.hr10))")
                }
            }
        }

        let t1 = Date()
        let table: NeighbourTable
        var methodName = m.rawValue
        var parameters = config.neighbours.json
        if let neighboursCsv {
            let imported = try DataFiles.importNeighbours(path: neighboursCsv, itemCount: itemList.count,
                                                          k: config.neighbours.k) { index[$0] }
            table = imported.table
            methodName = "imported"
            parameters = ""
            note("neighbours from \(neighboursCsv): \(imported.summary) (\(seconds(since: t1)))")
        } else {
            note("neighbours: \(m.rawValue), \(config.summary)")
            let start = Date()
            table = try NeighbourBuilder.build(training, parameters: config.neighbours, threads: threads) { done, total in
                note("  \(done)/\(total) items (\(seconds(since: start)))")
            }
            note("neighbours built in \(seconds(since: t1))")
        }

        let catalogId = id ?? ((output as NSString).lastPathComponent as NSString).deletingPathExtension
        let info = CatalogInfo(id: catalogId, name: name ?? catalogId, version: version, method: methodName,
                               parameters: parameters, retrieval: config.retrieval)
        let catalog = try ItemCatalog(info: info, items: itemList, popularity: training.itemCounts(), neighbours: table)
        try CatalogPack.write(catalog, to: output)
        let size = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        let empty = (0..<catalog.count).filter { catalog.neighbours(of: $0).isEmpty }.count
        note("wrote \(output): \(catalog.count) items, K=\(catalog.k), \(empty) items without neighbours, "
            + "\(size / 1024) KiB, \(seconds(since: t0)) in all")
    }
}

extension CatalogCommand {
    /// The error for an item file that parsed to no items: a header alone, say, or lines
    /// ended by lone CRs (old Mac style), which read as one header line holding everything.
    static func noItemRows(_ path: String) -> String {
        var message = "\(path) holds no item rows"
        if let data = FileManager.default.contents(atPath: path), data.contains(0x0D), !data.contains(0x0A) {
            message += " (its lines end with lone CRs, which are not line ends here: convert them to LF or CRLF)"
        }
        return message
    }
}

func seconds(since t: Date) -> String { String(format: "%.2f s", Date().timeIntervalSince(t)) }

/// Progress and notes go to stderr.
func note(_ s: String) { printErr(s) }
