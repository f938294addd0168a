// `palr history bench` (import and read speed on ML-100K) and the hidden
// `palr history stress-writer` that the crash and concurrency tests run as a
// child process.
import ArgumentParser
import Catalog
import Foundation
import History

extension HistoryCommand {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Benchmark the store on MovieLens 100K: import time, size, recent() and record() latency.",
            discussion: """
                Imports u.data into a fresh database in a temporary folder (power-loss-safe settings), then \
                times recent(profile, 50) over random profiles and single-interaction record() commits. \
                Build with -c release for meaningful figures.
                """)

        @Option(help: "MovieLens u.data (default: $PALR_SHARED/data/ml-100k/u.data, else ../shared/data/ml-100k/u.data).")
        var udata: String?
        @Option(parsing: .unconditional, help: "recent() calls to time.") var calls = 20000
        @Option(parsing: .unconditional, help: "recent() limit.") var limit = 50
        @Option(parsing: .unconditional, help: "single-interaction record() commits to time.") var records = 200
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            for (name, v) in [("--calls", calls), ("--limit", limit), ("--records", records)] where v < 1 {
                throw ValidationError("\(name) must be at least 1 (got \(v))")
            }
        }

        struct Result: Encodable {
            var udata: String
            var udataBytes: Int64
            var interactions: Int
            var profiles: Int
            var importSeconds: Double
            var databaseBytes: Int64
            var databaseToUData: Double
            var compactedBytes: Int64
            var recentLimit: Int
            var recentCalls: Int
            var recentMedianMs: Double
            var recentP99Ms: Double
            var recordCalls: Int
            var recordMedianMs: Double
            var recordP99Ms: Double
        }

        func locateUData() throws -> String {
            var candidates: [String] = []
            if let udata { candidates = [udata] } else {
                if let shared = ProcessInfo.processInfo.environment["PALR_SHARED"] {
                    candidates.append(shared + "/data/ml-100k/u.data")
                }
                candidates.append("../shared/data/ml-100k/u.data")
            }
            guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw ValidationError("MovieLens u.data not found (tried \(candidates.joined(separator: ", "))); "
                                      + "pass --udata PATH")
            }
            return found
        }

        func run() throws {
            let source = try locateUData()
            // Removed at the end, and on SIGINT/SIGTERM/SIGHUP/SIGPIPE.
            let scratch = try ScratchStoreFolder(prefix: "palr-history-bench-")
            defer { scratch.remove() }
            let path = scratch.store

            // Import, then close so the WAL is checkpointed into the file.
            var store = try HistoryStore(path: path)
            let start = ContinuousClock.now
            let report = try store.importFile(source, options: ImportOptions(format: .movieLensUData))
            let importSeconds = (ContinuousClock.now - start).seconds
            store.close()
            let databaseBytes = fileBytes(path)
            let udataBytes = fileBytes(source)

            // recent(profile, limit) over random profiles.
            store = try HistoryStore(path: path)
            let names = try store.profiles().map(\.name)
            var generator = SplitMix64(seed: 42)
            var recentTimes: [Double] = []
            recentTimes.reserveCapacity(calls)
            for _ in 0..<calls {
                let name = names[Int(generator.next() % UInt64(names.count))]
                let begin = ContinuousClock.now
                _ = try store.recent(profile: name, limit: limit)
                recentTimes.append((ContinuousClock.now - begin).seconds * 1000)
            }

            // One interaction per transaction, each fsynced.
            var recordTimes: [Double] = []
            for index in 0..<records {
                let interaction = NewInteraction(profile: names[index % names.count], item: "bench-\(index)",
                                                 timestamp: 1_000_000_000 + Int64(index))
                let begin = ContinuousClock.now
                try store.record(interaction)
                recordTimes.append((ContinuousClock.now - begin).seconds * 1000)
            }
            _ = try store.compact()
            store.close()

            let result = Result(
                udata: source, udataBytes: udataBytes, interactions: report.interactions, profiles: report.profiles,
                importSeconds: importSeconds, databaseBytes: databaseBytes,
                databaseToUData: Double(databaseBytes) / Double(udataBytes), compactedBytes: fileBytes(path),
                recentLimit: limit, recentCalls: calls, recentMedianMs: percentile(recentTimes, 0.5),
                recentP99Ms: percentile(recentTimes, 0.99), recordCalls: records,
                recordMedianMs: percentile(recordTimes, 0.5), recordP99Ms: percentile(recordTimes, 0.99))
            if json { return try printJSON(result) }
            print("""
                import        \(result.interactions) interactions, \(result.profiles) profiles from \(source): \
                \(String(format: "%.3f", importSeconds)) s
                database      \(databaseBytes) bytes = \(String(format: "%.2f", result.databaseToUData))× u.data \
                (\(udataBytes) bytes); \(result.compactedBytes) bytes after the record() calls and compact()
                recent        limit \(limit), \(calls) calls: median \(String(format: "%.4f", result.recentMedianMs)) ms, \
                p99 \(String(format: "%.4f", result.recentP99Ms)) ms
                record        1 interaction per commit (synchronous=FULL), \(records) calls: median \
                \(String(format: "%.3f", result.recordMedianMs)) ms, p99 \(String(format: "%.3f", result.recordP99Ms)) ms
                """)
        }

        private func fileBytes(_ path: String) -> Int64 {
            ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
        }

        private func percentile(_ values: [Double], _ fraction: Double) -> Double {
            guard !values.isEmpty else { return 0 }
            let sorted = values.sorted()
            return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * fraction).rounded()))]
        }
    }

    /// Writes batches until killed or done, printing `ack BATCH FIRST_ID LAST_ID`
    /// after each commit. Batch b's items are PREFIX<b>-<i>, all with one
    /// timestamp. For the crash and concurrency tests.
    struct StressWriter: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "stress-writer", shouldDisplay: false)

        @OptionGroup var database: DatabaseOptions
        @Option var profile = "stress"
        @Option var batchSize = 1
        @Option var itemPrefix = "b"
        @Option(help: "Stop after this many seconds.") var duration: Double = 10
        @Option(help: "Stop after this many batches (0: no limit).") var batches = 0

        func run() throws {
            let store = try database.open(create: true)
            try store.createProfile(profile)
            let base = Int64(Date().timeIntervalSince1970)
            let deadline = ContinuousClock.now + .milliseconds(Int(duration * 1000))
            var batch = 0
            while ContinuousClock.now < deadline && (batches == 0 || batch < batches) {
                let interactions = (0..<batchSize).map {
                    NewInteraction(profile: profile, item: "\(itemPrefix)\(batch)-\($0)", kind: .view,
                                   timestamp: base + Int64(batch))
                }
                let ids = try store.record(interactions)
                try writeNow("ack \(batch) \(ids[0]) \(ids[ids.count - 1])\n")
                batch += 1
            }
        }
    }
}
