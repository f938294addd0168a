// Crashes, concurrent processes and a full disk. The writer is the built
// `palr history stress-writer`, run as a child process.
import Foundation
import Testing

@testable import History

@Suite struct DurabilityTests {
    /// SIGKILL a writer at random moments, 20 times: every interaction it
    /// acknowledged is there after reopening, and the database is sound.
    @Test func everyAcknowledgedInteractionSurvivesSIGKILL() throws {
        let palr = try palrExecutable()
        try withTemporaryDirectory { folder in
            let path = folder + "/history.sqlite"
            do {
                let store = try HistoryStore(path: path)
                try store.setRetentionCap(nil)  // keep everything, to check everything
                try store.createProfile("crash")
            }
            var generator = SystemRandomNumberGenerator()
            var acknowledged: [Int64] = []
            var killedWhileRunning = 0
            for run in 0..<20 {
                let child = try ChildProcess(palr, ["history", "stress-writer", "--db", path, "--profile", "crash",
                                                    "--batch-size", "1", "--item-prefix", "r\(run)-",
                                                    "--duration", "60"])
                // A random moment: during start-up, opening (WAL recovery after
                // the last kill), or in the middle of the commits.
                Thread.sleep(forTimeInterval: Double.random(in: 0.02...0.35, using: &generator))
                child.kill()
                child.wait()
                if child.terminationReason == .uncaughtSignal { killedWhileRunning += 1 }
                let acks = parseAcks(child.output)
                #expect(child.errorOutput.isEmpty, "run \(run): \(child.errorOutput)")
                acknowledged += acks.flatMap { Array($0.ids) }

                let store = try HistoryStore(path: path)
                #expect(try store.integrityCheck() == ["ok"], "run \(run)")
                let present = Set(try store.recent(profile: "crash", limit: Int.max).map(\.id))
                let missing = acknowledged.filter { !present.contains($0) }
                #expect(missing.isEmpty, "run \(run): acknowledged ids missing after SIGKILL: \(missing.prefix(10))")
            }
            #expect(killedWhileRunning == 20)
            #expect(acknowledged.count > 20, "the writer acknowledged only \(acknowledged.count) interactions")
            #expect(Set(acknowledged).count == acknowledged.count, "an id was given twice")
        }
    }

    /// One process writes batches of 10 (one timestamp each) for 10 s while
    /// this one reads recent() in a loop: no lock error reaches either side,
    /// and every read sees whole batches in insertion order.
    @Test func readersNeverSeeHalfWrittenBatchesOrLockErrors() throws {
        let palr = try palrExecutable()
        try withTemporaryDirectory { folder in
            let path = folder + "/history.sqlite"
            let store = try HistoryStore(path: path)
            try store.createProfile("stress")
            let batchSize = 10
            let child = try ChildProcess(palr, ["history", "stress-writer", "--db", path, "--profile", "stress",
                                                "--batch-size", "\(batchSize)", "--item-prefix", "b",
                                                "--duration", "10"])
            var reads = 0
            var largestBatchSeen = -1
            var problems: [String] = []
            while child.isRunning {
                let window = try store.recent(profile: "stress", limit: 10 * batchSize)
                reads += 1
                // Items are b<batch>-<index>; the window holds whole batches only.
                var batches: [(batch: Int, indices: [Int])] = []
                for interaction in window {
                    let parts = interaction.item.dropFirst().split(separator: "-").compactMap { Int($0) }
                    guard parts.count == 2 else {
                        problems.append("unexpected item \(interaction.item)")
                        continue
                    }
                    if batches.last?.batch == parts[0] {
                        batches[batches.count - 1].indices.append(parts[1])
                    } else {
                        batches.append((parts[0], [parts[1]]))
                    }
                }
                for (batch, indices) in batches where indices != Array(0..<batchSize) {
                    problems.append("read \(reads): batch \(batch) seen as \(indices)")
                }
                let numbers = batches.map(\.batch)
                if numbers != Array(numbers.sorted()) || Set(numbers).count != numbers.count {
                    problems.append("read \(reads): batches out of order \(numbers)")
                }
                largestBatchSeen = max(largestBatchSeen, numbers.last ?? -1)
                if reads % 50 == 0 { _ = try store.stats() }  // heavier reads now and then
            }
            child.wait()
            #expect(child.terminationStatus == 0, "writer failed: \(child.errorOutput)")
            #expect(child.errorOutput.isEmpty, "\(child.errorOutput)")
            #expect(problems.isEmpty, "\(problems.prefix(5))")
            let acks = parseAcks(child.output)
            #expect(!acks.isEmpty && reads > 0 && largestBatchSeen >= 0, "writer \(acks.count) batches, \(reads) reads")
            // The last batch acknowledged is the last one stored.
            let last = try store.recent(profile: "stress", limit: batchSize)
            #expect(last.map(\.id) == Array(try #require(acks.last).ids))
            #expect(try store.interactionCount(profile: "stress") == min(acks.count * batchSize, 1000))  // retention cap
            #expect(try store.integrityCheck() == ["ok"])
        }
    }

    /// A full disk (emulated with max_page_count) is a typed error; the failed
    /// write leaves nothing behind and the store stays usable.
    @Test func diskFullIsATypedErrorAndTheStoreStaysConsistent() throws {
        try withTemporaryDirectory { folder in
            let path = folder + "/history.sqlite"
            do {
                let store = try HistoryStore(path: path)
                try store.createProfile("alice")
                try store.setRetentionCap(nil)
            }
            let limited = try HistoryStore(path: path, options: .init(maxPageCount: 30))
            var recorded = 0
            var failure: HistoryError?
            let longName = String(repeating: "item-with-a-long-external-id-", count: 6)
            for batch in 0..<1000 {
                let interactions = (0..<50).map {
                    NewInteraction(profile: "alice", item: "\(longName)\(batch)-\($0)", timestamp: Int64(batch))
                }
                do {
                    try limited.record(interactions)
                    recorded += interactions.count
                } catch let error as HistoryError {
                    failure = error
                    break
                }
            }
            #expect(failure == .diskFull(path: path, operation: "record"))
            #expect(failure?.description.contains("is full") == true)
            #expect(recorded > 0)
            #expect(try limited.interactionCount(profile: "alice") == recorded)
            #expect(try limited.integrityCheck() == ["ok"])

            // An import that does not fit fails the same way and writes nothing.
            let file = try writeFile(folder, "u.data", generatedUData(lines: 5000))
            #expect(throws: HistoryError.diskFull(path: path, operation: "import \(file)")) {
                try limited.importFile(file, options: ImportOptions(format: .movieLensUData))
            }
            #expect(try limited.stats().profiles == 1)
            #expect(try foreignKeysOn(limited))

            // Deleting still works on a full disk, and with room the store goes on.
            #expect(try limited.forget(item: "\(longName)0-0") == 1)
            limited.close()
            let roomy = try HistoryStore(path: path)
            try roomy.record(NewInteraction(profile: "alice", item: "after", timestamp: 9999))
            #expect(try roomy.interactionCount(profile: "alice") == recorded)
            #expect(try roomy.integrityCheck() == ["ok"])
        }
    }
}

@Suite struct CommandLineTests {
    /// The CLI end to end, with --db before and after the subcommand.
    @Test func addListForgetExportStats() throws {
        try withTemporaryDirectory { folder in
            let db = folder + "/cli.sqlite"
            var result = try runPalr(["history", "--db", db, "add", "--profile", "kid", "--create-profile",
                                      "--time", "100", "tt1", "tt2"])
            #expect(result.status == 0 && result.output == "1\n2\n", "\(result)")
            result = try runPalr(["history", "add", "--db", db, "--profile", "nobody", "tt3"])
            #expect(result.status != 0 && result.error.contains("unknown profile 'nobody'"), "\(result)")

            result = try runPalr(["history", "list", "--db", db, "--profile", "kid", "--json"])
            let list = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
            let items = (list?["interactions"] as? [[String: Any]])?.compactMap { $0["item"] as? String }
            #expect(items == ["tt1", "tt2"], "\(result)")
            let store = try HistoryStore(path: db)
            let digest = try store.historyDigest(profile: "kid").description
            #expect(list?["digest"] as? String == digest)

            result = try runPalr(["history", "--db", db, "export", "--format", "csv"])
            #expect(result.output == "id,profile,item,kind,value,timestamp\n1,kid,tt1,view,,100\n2,kid,tt2,view,,100\n")

            let bad = try writeFile(folder, "bad.data", "1\t2\t3\t4\n1\t2\t3\n")
            result = try runPalr(["history", "--db", db, "import", "--format", "udata", bad])
            #expect(result.status != 0 && result.error.contains("bad.data:2: expected 4 fields"), "\(result)")

            result = try runPalr(["history", "--db", db, "forget", "--profile", "kid", "--item", "tt1"])
            #expect(result.status == 0 && result.output == "removed 1 interactions\n", "\(result)")
            result = try runPalr(["history", "--db", db, "stats", "--json"])
            let stats = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
            #expect(stats?["interactions"] as? Int == 1, "\(result)")
            result = try runPalr(["history", "--db", folder + "/absent.sqlite", "stats"])
            #expect(result.status != 0 && result.error.contains("no such file"), "\(result)")
        }
    }
}
