// `palr eval`: leave-one-out evaluation (protocol in Sources/Catalog/Evaluation.swift).

import ArgumentParser
import Catalog
import FileSafety
import Foundation
import Ranker
import Tokenizer

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Leave-one-out evaluation of retrieval on a MovieLens-format dataset.",
        discussion: """
            Each user's last item is the test target, the second-to-last the validation target; \
            neighbours are built from the training part only; ranking is against the full catalog. \
            --tune picks the retriever's parameters on the validation items and reports the test items.
            """)

    @Option(help: "Item file: u.item, movies.dat, movies.csv or a CSV with id,title.")
    var items: String
    @Option(help: "Item format when the name does not say: ml-100k, ml-1m, csv.")
    var itemsFormat: String?
    @Option(help: "Interaction file: u.data, ratings.dat, ratings.csv or a CSV with a header.")
    var interactions: String
    @Option(help: "Interaction format when the name does not say: ml-100k, ml-1m, csv.")
    var interactionsFormat: String?
    @Option(help: "CSV column mapping, e.g. user=uid,item=sku,time=ts.")
    var columns: String?
    @Option(parsing: .unconditional, help: "Evaluate a random sample of N users (N ≥ 1).")
    var users: Int?
    @Option(parsing: .unconditional, help: "Seed of the user sample (an unsigned 64-bit integer).")
    var seed: UInt64 = 1
    @Option(help: "Neighbour method: cooc, seq, combined.")
    var method: String = NeighbourMethod.combined.rawValue
    @Option(help: "Parameter overrides, e.g. window=10,history_length=20 (see README; history_length 1–1000, recency_decay (0, 1], popularity_weight 0–1000).")
    var params: String?
    @Option(help: "Held-out item to score: test or validation.")
    var heldOut: String = HeldOut.test.rawValue
    @Flag(help: "Test: build neighbours without the validation items as well.")
    var strict = false
    @Flag(help: "Choose parameters on the validation items (grid search), then report the test items.")
    var tune = false
    @Option(help: "Tune over this grid instead of the standard one, e.g. window=5/10/20,recency_decay=0.7/0.9.")
    var grid: String?
    @Option(help: "Write every grid point's validation metrics to this TSV file (with --tune or --grid; replaced atomically).")
    var tuneReport: String?
    @Option(parsing: .unconditional, help: "Worker threads for building neighbours, \(threadLimit.lowerBound)–\(threadLimit.upperBound).")
    var threads = 2
    @Flag(help: "Print JSON.")
    var json = false
    @Option(help: "A ranker model: its ranking of the retrieved candidates is scored as \"pipeline\".")
    var model: String?
    @Option(help: "Scoring mode with --model: letters, likelihood or generate (default: the model's).")
    var mode: String?
    @Option(parsing: .unconditional,
            help: "Candidates the model ranks, 1–\(RankingMetrics.depth) (the rest of the retrieved list follows them).")
    var candidates = 20
    @Option(help: "A file of user ids (one per line) to evaluate, e.g. the users a model was not trained on.")
    var userList: String?
    @Option(name: .short, parsing: .unconditional,
            help: "Model threads, \(threadLimit.lowerBound)–\(threadLimit.upperBound) (default: physical cores, at most 8).")
    var t: Int?


    func validate() throws {
        if let users, users < 1 { throw ValidationError("--users must be at least 1 (got \(users))") }
        try validateThreads(threads, option: "--threads")
        guard (1...RankingMetrics.depth).contains(candidates) else {
            throw ValidationError("--candidates must be in 1...\(RankingMetrics.depth) (got \(candidates))")
        }
        try validateThreads(t)
        if tuneReport != nil && !tune && grid == nil { throw ValidationError("--tune-report needs --tune or --grid") }
        if tuneReport == "" { throw ValidationError("--tune-report must name a file (got an empty path)") }
        // Here, not in run(): a usage error then shows this command's usage, before any file is read.
        _ = try parsedOptions()
        _ = try parseScoringMode(mode)
        if mode != nil && model == nil { throw ValidationError("--mode needs --model") }
    }

    /// --method, --held-out, --params and --grid, checked and parsed (pure; run again by run()).
    func parsedOptions() throws -> (method: NeighbourMethod, heldOut: HeldOut, config: RetrieverConfiguration, grid: TuningGrid?) {
        guard let m = NeighbourMethod(rawValue: method) else {
            throw ValidationError("unknown method '\(method)' (cooc, seq, combined)")
        }
        guard let h = HeldOut(rawValue: heldOut) else { throw ValidationError("--held-out is test or validation") }
        var config = RetrieverConfiguration.defaults(for: m)
        if let params { try checkedParameters("--params") { () throws(NeighbourError) in try config.apply(params) } }
        _ = try checkedParameters("--params") { () throws(NeighbourError) in try config.retrieval.validated() }
        let base = config
        let customGrid = try grid.map { g in
            try checkedParameters("--grid") { () throws(NeighbourError) in try TuningGrid.parse(g, base: base) }
        }
        for s in customGrid?.retrieval ?? [] { _ = try checkedParameters("--grid") { () throws(NeighbourError) in try s.validated() } }
        return (m, h, config, customGrid)
    }

    func run() throws {
        let parsed = try parsedOptions()
        let m = parsed.method, h = parsed.heldOut, customGrid = parsed.grid
        var config = parsed.config
        // Files named by options are checked before the long work, not after it.
        let wanted = try userList.map { try DataFiles.readIdList(path: $0) }
        if let tuneReport {
            let target = try DataFiles.checkWritable(path: tuneReport)
            if let hit = Destination.overwrittenInput(target: target, inputs: [items, interactions] + [userList, model].compactMap { $0 }) {
                throw CLIError(path: tuneReport, "it is the input \(hit) of this run; give another --tune-report")
            }
        }

        let t0 = Date()
        let itemList = try DataFiles.readItems(path: items, formatName: itemsFormat)
        let log = try DataFiles.readInteractions(path: interactions, formatName: interactionsFormat, columns: columns)
        // Leave-one-out holds out each user's last interaction in time: without a time
        // column, file order would stand in for it, and a file sorted by item leaks the
        // target (measured: HR@10 0.35 instead of 0.13). An error, not a guess.
        guard log.hasTimes else {
            throw CLIError(path: interactions, "no time column (looked for \(CSVColumns.knownTime.joined(separator: ", "))); "
                           + "leave-one-out needs each user's interactions in time order: name the column with "
                           + "--columns time=NAME")
        }
        let data = LeaveOneOutData(items: itemList, log: log)
        var only: Set<Int>?
        if let wanted {
            let listed = Set(wanted)
            only = Set(log.userIds.enumerated().filter { listed.contains($0.element) }.map(\.offset))
            note("\(only?.count ?? 0) of \(listed.count) listed users are in the interaction file")
            if only?.isEmpty ?? true {
                throw CLIError(path: userList ?? "", listed.isEmpty ? "lists no user ids"
                               : "none of its \(listed.count) user ids is in \(interactions)")
            }
        }
        let reranker = try model.map { try makeReranker(path: $0) }
        note("read \(itemList.count) items, \(log.count) interactions of \(log.userIds.count) users in \(seconds(since: t0))"
            + (data.skippedInteractions > 0 ? "; \(data.skippedInteractions) interactions with unknown items left out" : ""))

        var tuned: TuningResult?
        if tune || grid != nil {
            let grid = customGrid ?? TuningGrid.standard(around: config)
            note("tuning \(m.rawValue): \(grid.builds.count) neighbour builds × \(grid.retrieval.count) retrieval settings on the validation items"
                 + (only != nil ? " of the listed users" : ""))
            let results = try data.tune(grid, users: users, seed: seed, from: only, threads: threads) { done, total, best in
                note("  \(done)/\(total) builds; best so far NDCG@10 \(f(best.validation.ndcg10)) HR@10 \(f(best.validation.hr10)): \(best.configuration.summary)")
            }
            tuned = results.first
            if let tuneReport {
                var tsv = "NDCG@10\tHR@10\tRecall@50\tparameters\n"
                for r in results {
                    tsv += "\(f(r.validation.ndcg10))\t\(f(r.validation.hr10))\t\(f(r.validation.recall50))\t\(r.configuration.summary)\n"
                }
                try DataFiles.writeAtomically(tsv, to: tuneReport)
            }
            if !json {
                print("validation, best 5 of \(results.count):")
                for r in results.prefix(5) {
                    print("  NDCG@10 \(f(r.validation.ndcg10))  HR@10 \(f(r.validation.hr10))  \(r.configuration.summary)")
                }
            }
            if let best = results.first { config = best.configuration }
        }

        var options = EvaluationOptions()
        options.heldOut = h
        options.neighbours = config.neighbours
        options.retrieval = config.retrieval
        options.users = users
        options.seed = seed
        options.strict = strict
        options.threads = threads
        options.onlyUsers = only
        options.candidates = candidates
        let report = try data.evaluate(options, reranker: reranker)

        if json {
            var out: [String: Any] = [
                "users": report.users,
                "held_out": h.rawValue,
                "method": m.rawValue,
                "parameters": config.summary,
                "retrieval": dict(report.retrieval),
                "popularity": dict(report.popularity),
            ]
            if let p = report.pipeline { out["pipeline"] = dict(p) }
            if let c = report.pipelineVsRetrieval {
                out["pipeline_vs_retrieval"] = [
                    "ndcg10_relative": round4(c.relative), "ci95_low": round4(c.low), "ci95_high": round4(c.high),
                    "resamples": c.resamples, "better": c.better, "worse": c.worse, "tied": c.tied,
                ] as [String: Any]
            }
            if let tuned { out["validation"] = dict(tuned.validation) }
            let d = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: d, as: UTF8.self))
            return
        }
        let training = options.trainingCut == 1 ? "each sequence without its last item" : "each sequence without its last 2 items"
        print("\(report.users) users, \(h.rawValue) item; neighbours from \(training)")
        print("\(m.rawValue): \(config.summary)")
        let names = RankingMetrics().named.map(\.0)
        print("            " + names.map { $0.padding(toLength: 10, withPad: " ", startingAt: 0) }.joined())
        var rows = [("retrieval", report.retrieval), ("popularity", report.popularity)]
        if let p = report.pipeline { rows.append(("pipeline", p)) }
        for (name, metrics) in rows {
            print(name.padding(toLength: 12, withPad: " ", startingAt: 0)
                + metrics.named.map { f($0.1).padding(toLength: 10, withPad: " ", startingAt: 0) }.joined())
        }
        if let c = report.pipelineVsRetrieval {
            print(String(format: "pipeline vs retrieval, NDCG@10: %+.1f%% (95%% paired bootstrap interval %+.1f%% to %+.1f%%, %d resamples); ",
                         100 * c.relative, 100 * c.low, 100 * c.high, c.resamples)
                + "better for \(c.better) user\(c.better == 1 ? "" : "s"), worse for \(c.worse), tied for \(c.tied)")
        }
        print("neighbours built in \(String(format: "%.2f", report.buildSeconds)) s, \(report.users) users ranked in \(String(format: "%.2f", report.evaluateSeconds)) s")
    }

    /// The LLM ranker as the evaluator's re-ranking closure: catalog indices in, the
    /// candidates in the model's order out.
    private func makeReranker(path: String) throws -> Reranker {
        let (m, tok, settings) = try loadRankerModel(path, quiet: false)
        let scoring = try parseScoringMode(mode)
        let ranker = try makeRanker(path, m, tok, settings, threads: t)
        var done = 0
        let start = Date()
        return { catalog, history, candidates in
            // The whole history: the ranker picks the items its prompt shows (palr.history_step
            // aligns its window on the history's length).
            let titles = history.map { catalog.titles[Int($0)] }
            let cands = candidates.map { Candidate(id: String($0.index), title: catalog.titles[Int($0.index)]) }
            let res: RankResult
            do { res = try ranker.rank(history: titles, candidates: cands, k: cands.count, mode: scoring) } catch {
                throw rankingError(error, model: path)
            }
            done += 1
            if done % 100 == 0 { note("  ranked \(done) users (\(String(format: "%.1f", Date().timeIntervalSince(start))) s)") }
            return res.items.map { RetrievedItem(index: Int32($0.id)!, score: Float($0.score)) }
        }
    }

    private func dict(_ m: RankingMetrics) -> [String: Double] {
        Dictionary(uniqueKeysWithValues: m.named.map { ($0.0, round4($0.1)) })
    }

    private func round4(_ v: Double) -> Double { (v * 10000).rounded() / 10000 }
}

/// Runs a parameter parse or check; its error becomes a usage error naming the
/// option, e.g. "--params: popularity_weight must be in 0...1000, is 1e+39".
func checkedParameters<T>(_ option: String, _ body: () throws(NeighbourError) -> T) throws -> T {
    do { return try body() } catch {
        switch error {
        case .badParameter(let reason): throw ValidationError("\(option): \(reason)")
        }
    }
}

func f(_ v: Double) -> String { String(format: "%.4f", v) }

func seconds(since t: Date) -> String { String(format: "%.2f s", Date().timeIntervalSince(t)) }

/// Progress and notes go to stderr, so stdout stays the result.
func note(_ s: String) { printErr(s) }
