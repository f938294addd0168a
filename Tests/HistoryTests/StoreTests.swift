// The store's API: schema, record and recent, digest, forget, retention,
// cached results, stats, locking.
import Foundation
import Testing

@testable import History

private func view(_ profile: String, _ item: String, at time: Int64, kind: InteractionKind = .view,
                  value: Double? = nil) -> NewInteraction {
    NewInteraction(profile: profile, item: item, kind: kind, value: value, timestamp: time)
}

@Suite struct SchemaTests {
    @Test func newDatabaseIsWALWithVersionAndIncrementalVacuum() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let c = store.connection
            try c.run("test") { () throws in
                #expect(try c.scalar("PRAGMA user_version") == Int64(schemaVersion))
                #expect(try c.scalar("PRAGMA application_id") == Int64(applicationID))
                #expect(try c.scalarText("PRAGMA journal_mode") == "wal")
                #expect(try c.scalar("PRAGMA auto_vacuum") == 2)  // incremental
                #expect(try c.scalar("PRAGMA synchronous") == 2)  // FULL
                #expect(try c.scalar("PRAGMA foreign_keys") == 1)
            }
            #expect(try store.retentionCap() == HistoryStore.defaultRetentionCap)
            // Reopening an up-to-date database changes nothing.
            store.close()
            let again = try makeStore(folder)
            #expect(try again.integrityCheck() == ["ok"])
        }
    }

    /// The reserve's size for a store: room for a WAL of every page (page + 24-byte frame
    /// header, plus the WAL header), in whole MiB from 1 to 16, for any size without a trap.
    @Test func theReserveIsSizedForTheStore() {
        let mib = 1 << 20
        let cases: [(Int64, Int)] = [(-5, mib), (0, mib), (900_000, mib), (983_040, 2 * mib), (1_040_384, 2 * mib),
                                     (2_228_224, 3 * mib), (15 << 20, 16 * mib), (1 << 30, 16 * mib), (.max, 16 * mib)]
        for (store, reserve) in cases {
            #expect(HistoryStore.reserveBytes(forStoreOf: store) == reserve, "store of \(store) bytes")
            // A deletion rewriting every 4 KiB page fits: frames and the WAL header.
            if store > 0 && store < 15 << 20 { #expect(Int64(reserve) >= store / 4096 * (4096 + 24) + 32) }
        }
    }

    /// A reserve that is not the store's (another owner's file, or no marker) is never
    /// resized, however large the store grows.
    @Test func aFileAtTheReservesNameIsNeverResized() throws {
        try withTemporaryDirectory { folder in
            let foreign = Data("someone else\n".utf8)
            #expect(FileManager.default.createFile(atPath: folder + "/h.sqlite-reserve", contents: foreign))
            let store = try HistoryStore(path: folder + "/h.sqlite")
            _ = try store.importData(Data((1...20_000).map { "\($0 % 5 + 1)\tm\($0)\t4\t\(881_250_000 + $0)\n" }.joined().utf8),
                                 name: "u.data", options: ImportOptions(format: .movieLensUData))
            store.close()
            #expect(try Data(contentsOf: URL(fileURLWithPath: folder + "/h.sqlite-reserve")) == foreign)
        }
    }

    /// A new store is built under a temporary name and linked into place whole, with its
    /// reserve beside it, leaving nothing else; through a dangling link (SQLite creates the
    /// target) the reserve goes beside the target, not the link (it went beside the link).
    @Test func aNewStoreIsLinkedIntoPlaceWithItsReserve() throws {
        try withTemporaryDirectory { folder in
            let store = try HistoryStore(path: folder + "/new.sqlite")
            #expect(try store.integrityCheck() == ["ok"])
            store.close()
            var names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
            #expect(names == ["new.sqlite", "new.sqlite-reserve"], "\(names)")
            var info = stat()
            #expect(stat(folder + "/new.sqlite", &info) == 0 && info.st_nlink == 1)
            #expect(stat(folder + "/new.sqlite-reserve", &info) == 0 && info.st_size == 1 << 20)

            #expect(symlink("real.sqlite", folder + "/link.sqlite") == 0)
            let linked = try HistoryStore(path: folder + "/link.sqlite")
            #expect(linked.reservePath == folder + "/real.sqlite-reserve")
            linked.close()
            names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
            #expect(names == ["link.sqlite", "new.sqlite", "new.sqlite-reserve", "real.sqlite", "real.sqlite-reserve"], "\(names)")
        }
    }

    /// A creation killed between its link and the removal of its temporary leaves the
    /// store with a second name (`.new.sqlite.tmp-PID-HEX`), and a killed reserve its
    /// temporary: a writable open removes both (pid gone, unlocked), a live one stays.
    @Test func aKilledCreationsTemporariesGoAtTheNextOpen() throws {
        try withTemporaryDirectory { folder in
            let path = folder + "/new.sqlite"
            try HistoryStore(path: path).close()
            let pidMax = try #require(Int32(try String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)))
            let secondName = folder + "/.new.sqlite.tmp-\(pidMax + 1)-ab12"
            let reserveTemporary = folder + "/.new.sqlite-reserve.tmp-\(pidMax + 2)-cd34"
            let live = folder + "/.new.sqlite.tmp-\(getpid())-ef56"
            #expect(link(path, secondName) == 0)
            #expect(FileManager.default.createFile(atPath: reserveTemporary, contents: Data(count: 4096)))
            #expect(FileManager.default.createFile(atPath: live, contents: Data()))
            let reader = try HistoryStore(path: path, options: .init(readOnly: true))
            reader.close()
            #expect(FileManager.default.fileExists(atPath: secondName), "a read-only open removes nothing")
            let store = try HistoryStore(path: path)
            #expect(try store.integrityCheck() == ["ok"])
            store.close()
            let names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
            #expect(names == [".new.sqlite.tmp-\(getpid())-ef56", "new.sqlite", "new.sqlite-reserve"], "\(names)")
            var info = stat()
            #expect(stat(path, &info) == 0 && info.st_nlink == 1)
        }
    }

    @Test func newerDatabaseIsAClearErrorAndIsLeftAlone() throws {
        try withTemporaryDirectory { folder in
            let path = folder + "/history.sqlite"
            let store = try HistoryStore(path: path)
            try store.connection.run("test") { try store.connection.exec("PRAGMA user_version = 7") }
            store.close()
            #expect(throws: HistoryError.newerSchema(path: path, found: 7, supported: schemaVersion)) {
                try HistoryStore(path: path)
            }
            let error = HistoryError.newerSchema(path: path, found: 7, supported: schemaVersion)
            #expect(error.description.contains("newer palr"))
            let raw = try Connection(path: path, create: false, busyTimeout: 1)
            #expect(try raw.scalar("PRAGMA user_version") == 7)
        }
    }

    @Test func foreignFilesAreRejected() throws {
        try withTemporaryDirectory { folder in
            let garbage = try writeFile(folder, "garbage.sqlite", String(repeating: "not a database\n", count: 300))
            do {
                _ = try HistoryStore(path: garbage)
                Issue.record("a text file opened as a history database")
            } catch let error as HistoryError {
                guard case .notAHistoryDatabase(let path, _) = error else {
                    Issue.record("unexpected error \(error)")
                    return
                }
                #expect(path == garbage)
            }

            let other = folder + "/other.sqlite"
            let raw = try Connection(path: other, create: true, busyTimeout: 1)
            try raw.exec("CREATE TABLE songs(title TEXT)")
            raw.close()
            #expect(throws: HistoryError.self) { try HistoryStore(path: other) }

            let missing = folder + "/no/such/folder/history.sqlite"
            do {
                _ = try HistoryStore(path: missing)
                Issue.record("opened a database in a missing folder")
            } catch let error as HistoryError {
                #expect(error.description.contains("does not exist"), "\(error)")
            }
            #expect(throws: HistoryError.self) {
                try HistoryStore(path: folder + "/absent.sqlite", options: .init(createIfMissing: false))
            }
        }
    }

    @Test func defaultLocation() {
        #expect(HistoryStore.defaultPath(environment: ["PALR_DB": "/x/h.db", "HOME": "/home/u"]) == "/x/h.db")
        #expect(HistoryStore.defaultPath(environment: ["XDG_DATA_HOME": "/data", "HOME": "/home/u"])
                == "/data/palr/history.sqlite")
        #expect(HistoryStore.defaultPath(environment: ["XDG_DATA_HOME": "relative", "HOME": "/home/u"])
                == "/home/u/.local/share/palr/history.sqlite")
        #expect(HistoryStore.defaultPath(environment: [:]) == nil)
    }
}

@Suite struct RecordAndRecentTests {
    @Test func recentIsInTimeOrderWithTiesInInsertionOrder() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.createProfile("alice")
            // Same timestamp: item ids deliberately not in insertion order.
            let first = try store.record([view("alice", "z", at: 100), view("alice", "a", at: 100),
                                          view("alice", "m", at: 100)])
            try store.record(view("alice", "b", at: 100))
            try store.record(view("alice", "c", at: 50))  // recorded late, happened early
            #expect(first == [1, 2, 3])

            let all = try store.recent(profile: "alice", limit: 10)
            #expect(all.map(\.item) == ["c", "z", "a", "m", "b"])
            #expect(all.map(\.id) == [5, 1, 2, 3, 4])
            #expect(try store.recent(profile: "alice", limit: 2).map(\.item) == ["m", "b"])
            #expect(try store.recent(profile: "alice", limit: 0).isEmpty)

            // The order survives a reopen (it is the primary key's order).
            store.close()
            #expect(try makeStore(folder).recent(profile: "alice", limit: 10).map(\.item) == ["c", "z", "a", "m", "b"])
        }
    }

    @Test func kindsValuesAndFilters() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.record([view("bob", "1", at: 1), view("bob", "2", at: 2, kind: .rating, value: 4.5),
                              view("bob", "3", at: 3, kind: .skip),
                              view("bob", "4", at: 4, kind: InteractionKind(rawValue: "watch-90"), value: 0.9)],
                             createProfiles: true)
            let ratings = try store.recent(profile: "bob", kinds: [.rating])
            #expect(ratings.map(\.item) == ["2"] && ratings[0].value == 4.5 && ratings[0].kind == .rating)
            #expect(try store.recent(profile: "bob", kinds: [.view, .skip]).map(\.item) == ["1", "3"])
            #expect(try store.recent(profile: "bob", kinds: [InteractionKind(rawValue: "watch-90")]).map(\.value) == [0.9])
            #expect(try store.recent(profile: "bob", kinds: [.purchase]).isEmpty)
            #expect(try store.recent(profile: "bob", kinds: []).isEmpty)
            #expect(try store.recent(profile: "bob", limit: 2).map(\.item) == ["3", "4"])
            #expect(try store.recent(profile: "bob")[0].value == nil)
        }
    }

    @Test func unknownProfilesAreClearErrors() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.createProfile("alice")
            #expect(throws: HistoryError.unknownProfile("alcie")) { try store.record(view("alcie", "1", at: 1)) }
            #expect(throws: HistoryError.unknownProfile("bob")) { try store.recent(profile: "bob") }
            #expect(throws: HistoryError.unknownProfile("bob")) { try store.historyDigest(profile: "bob") }
            #expect(throws: HistoryError.unknownProfile("bob")) { try store.forget(profile: "bob") }
            #expect(throws: HistoryError.unknownProfile("bob")) { try store.forget(item: "1", profile: "bob") }
            #expect(HistoryError.unknownProfile("bob").description == "unknown profile 'bob'")
            // A batch with one unknown profile writes nothing.
            #expect(throws: HistoryError.unknownProfile("carol")) {
                try store.record([view("alice", "1", at: 1), view("carol", "2", at: 2)])
            }
            #expect(try store.interactionCount(profile: "alice") == 0)
            #expect(try store.profiles().map(\.name) == ["alice"])
        }
    }

    @Test func badInteractionsAreRejectedBeforeWriting() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.createProfile("alice")
            let bad: [(NewInteraction, String)] = [
                (view("alice", "", at: 1), "item id is empty"),
                (view("alice", "a\nb", at: 1), "control character"),
                (view("alice", "1", at: 1, value: .nan), "not a finite number"),
                (view("alice", "1", at: 1_700_000_000_000), "expected Unix seconds"),
                (view("alice", "1", at: -1), "out of range"),
                (view("alice", "1", at: 1, kind: InteractionKind(rawValue: "View")), "a-z"),
                (view("", "1", at: 1), "profile name is empty"),
            ]
            for (interaction, message) in bad {
                do {
                    try store.record(interaction)
                    Issue.record("accepted \(interaction)")
                } catch let error as HistoryError {
                    #expect(error.description.contains(message), "\(error)")
                }
            }
            #expect(try store.interactionCount(profile: "alice") == 0)
        }
    }
}

@Suite struct DigestTests {
    @Test func digestChangesExactlyWhenTheRankingHistoryChanges() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.record([view("alice", "1", at: 10), view("alice", "2", at: 20), view("bob", "1", at: 10)],
                             createProfiles: true)
            let start = try store.historyDigest(profile: "alice", limit: 2)

            try store.record(view("bob", "9", at: 30))  // another profile
            #expect(try store.historyDigest(profile: "alice", limit: 2) == start)
            try store.record(view("alice", "0", at: 5))  // older than the window
            #expect(try store.historyDigest(profile: "alice", limit: 2) == start)
            try store.record(view("alice", "x", at: 15, kind: .skip))  // a kind the ranker does not read
            #expect(try store.historyDigest(profile: "alice", limit: 3, kinds: [.view])
                    == HistoryDigest(of: try store.recent(profile: "alice", limit: 3, kinds: [.view])))
            let viewsOnly = try store.historyDigest(profile: "alice", limit: 2, kinds: [.view])
            #expect(viewsOnly == start)

            try store.record(view("alice", "3", at: 40))  // a new latest item
            let added = try store.historyDigest(profile: "alice", limit: 2, kinds: [.view])
            #expect(added != start)
            try store.forget(item: "3", profile: "alice")  // back to the same history
            #expect(try store.historyDigest(profile: "alice", limit: 2, kinds: [.view]) == start)
        }
    }

    @Test func digestIsContentNotStorage() throws {
        try withTemporaryDirectory { folder in
            let a = try makeStore(folder, name: "a.sqlite")
            let b = try makeStore(folder, name: "b.sqlite")
            try b.record(view("other", "x", at: 1), createProfile: true)  // shifts b's ids
            for store in [a, b] {
                try store.record([view("p", "1", at: 1, kind: .rating, value: 4), view("p", "2", at: 2)],
                                 createProfiles: true)
            }
            #expect(try a.historyDigest(profile: "p") == b.historyDigest(profile: "p"))

            let one = Interaction(id: 1, profile: "p", item: "1", kind: .rating, value: 4, timestamp: 1)
            var changed = one
            changed.value = 5
            #expect(HistoryDigest(of: [one]) != HistoryDigest(of: [changed]))
            changed = one
            changed.value = nil
            #expect(HistoryDigest(of: [one]) != HistoryDigest(of: [changed]))
            changed = one
            changed.timestamp = 2
            #expect(HistoryDigest(of: [one]) != HistoryDigest(of: [changed]))
            changed = one
            changed.kind = .view
            #expect(HistoryDigest(of: [one]) != HistoryDigest(of: [changed]))
            // Framing: ("12", "3") and ("1", "23") are different histories.
            var split = one
            split.item = "12"
            var other = one
            other.item = "1"
            #expect(HistoryDigest(of: [split, one]) != HistoryDigest(of: [other, one]))
            #expect(HistoryDigest(of: [one, split]) != HistoryDigest(of: [split, one]))
            // The text form round-trips.
            let digest = HistoryDigest(of: [one])
            #expect(HistoryDigest(hex: digest.description) == digest && digest.description.count == 16)
        }
    }
}

@Suite struct ForgetTests {
    @Test func forgettingAProfileRemovesEverythingDerived() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.record([view("alice", "1", at: 1), view("alice", "2", at: 2), view("bob", "1", at: 1)],
                             createProfiles: true)
            let digest = try store.historyDigest(profile: "alice")
            try store.putCachedRecommendations(CachedRecommendations(
                profile: "alice", modelID: "m", catalogID: "c", historyDigest: digest, createdAt: 5,
                items: [ScoredItem(item: "7", score: 0.5)]))
            try store.putProfileSummary(ProfileSummary(profile: "alice", text: "likes dramas", historyDigest: digest,
                                                       interactionCount: 2, createdAt: 5))
            #expect(try store.forget(profile: "alice") == 2)
            #expect(throws: HistoryError.unknownProfile("alice")) { try store.recent(profile: "alice") }
            let stats = try store.stats()
            #expect(stats.profiles == 1 && stats.interactions == 1 && stats.items == 1)
            #expect(stats.cachedRecommendations == 0 && stats.profileSummaries == 0)
            #expect(try store.integrityCheck() == ["ok"])
        }
    }

    @Test func forgettingAnItem() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.record([view("alice", "1", at: 1), view("alice", "2", at: 2), view("alice", "1", at: 3),
                              view("bob", "1", at: 1), view("bob", "2", at: 2)], createProfiles: true)
            let digest = try store.historyDigest(profile: "bob")
            try store.putProfileSummary(ProfileSummary(profile: "bob", text: "t", historyDigest: digest,
                                                       interactionCount: 2, createdAt: 1))
            try store.putProfileSummary(ProfileSummary(profile: "alice", text: "t", historyDigest: digest,
                                                       interactionCount: 3, createdAt: 1))
            #expect(try store.forget(item: "1", profile: "alice") == 2)
            #expect(try store.recent(profile: "alice").map(\.item) == ["2"])
            #expect(try store.recent(profile: "bob").map(\.item) == ["1", "2"])
            #expect(try store.profileSummary(profile: "alice") == nil)
            #expect(try store.profileSummary(profile: "bob") != nil)
            #expect(try store.forget(item: "unknown", profile: "alice") == 0)

            #expect(try store.forget(item: "2") == 2)  // from every profile
            #expect(try store.recent(profile: "alice").isEmpty)
            #expect(try store.recent(profile: "bob").map(\.item) == ["1"])
            #expect(try store.profileSummary(profile: "bob") == nil)
            #expect(try store.stats().items == 1)
        }
    }
}

@Suite struct RetentionTests {
    @Test func recordingKeepsTheNewestUpToTheCap() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.setRetentionCap(5)
            try store.createProfile("alice")
            try store.createProfile("bob")
            try store.record(view("bob", "b", at: 0))
            for k in 0..<8 { try store.record(view("alice", "\(k)", at: Int64(100 - k))) }  // newest first
            // Equal timestamps: the later insertion is the newer one.
            #expect(try store.recent(profile: "alice", limit: 100).map(\.item) == ["4", "3", "2", "1", "0"])
            try store.record([view("alice", "tie-1", at: 100), view("alice", "tie-2", at: 100)])
            #expect(try store.recent(profile: "alice", limit: 100).map(\.item) == ["2", "1", "0", "tie-1", "tie-2"])
            #expect(try store.interactionCount(profile: "bob") == 1)
            #expect(throws: HistoryError.invalidArgument("retention cap must be at least 1 (got 0)")) {
                try store.setRetentionCap(0)
            }
        }
    }

    @Test func importDoesNotTrimAndCompactionDoes() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.setRetentionCap(3)
            let file = try writeFile(folder, "u.data", (0..<10).map { "1\t\($0)\t3\t\(1000 + $0)\n" }.joined()
                                     + "2\t0\t4\t1000\n")
            let report = try store.importFile(file, options: ImportOptions(format: .movieLensUData))
            #expect(report.interactions == 11 && report.profilesOverCap == ["1"] && report.retentionCap == 3)
            #expect(try store.interactionCount(profile: "1") == 10)
            #expect(try store.stats().profilesOverCap == 1)

            let compaction = try store.compact()
            #expect(compaction.trimmedInteractions == 7)
            #expect(compaction.removedItems == 6)  // items 1...6 are gone; 0 is still rated by profile 2
            #expect(try store.recent(profile: "1").map(\.item) == ["7", "8", "9"])
            #expect(try store.stats().items == 4)

            try store.setRetentionCap(nil)
            #expect(try store.retentionCap() == nil)
            #expect(try store.compact().trimmedInteractions == 0)
            #expect(try store.integrityCheck() == ["ok"])
        }
    }

    @Test func compactionGivesSpaceBack() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let file = try writeFile(folder, "u.data", generatedUData(lines: 20000))
            _ = try store.importFile(file, options: ImportOptions(format: .movieLensUData))
            try store.checkpoint()
            let full = try store.stats().databaseBytes
            try store.setRetentionCap(10)
            let report = try store.compact()
            #expect(report.trimmedInteractions == 20000 - 37 * 10)
            #expect(report.freedPages > 0)
            #expect(report.databaseBytesAfter < full / 2, "\(report)")
            #expect(try store.stats().walBytes == 0)
        }
    }
}

@Suite struct CachedResultTests {
    @Test func cachedRecommendationsAndSummariesRoundTrip() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.record(view("alice", "1", at: 1), createProfile: true)
            let digest = try store.historyDigest(profile: "alice")
            let entry = CachedRecommendations(
                profile: "alice", modelID: "palr-1b-q4", catalogID: "ml-100k@3", historyDigest: digest,
                createdAt: 1_700_000_000, items: [ScoredItem(item: "50", score: -0.25), ScoredItem(item: "1,2\"", score: 3)])
            try store.putCachedRecommendations(entry)
            #expect(try store.cachedRecommendations(profile: "alice", modelID: "palr-1b-q4", catalogID: "ml-100k@3")
                    == entry)
            #expect(try store.cachedRecommendations(profile: "alice", modelID: "other", catalogID: "ml-100k@3") == nil)

            var newer = entry
            newer.items = [ScoredItem(item: "9", score: 1)]
            newer.createdAt += 60
            try store.putCachedRecommendations(newer)  // replaces
            #expect(try store.cachedRecommendations(profile: "alice", modelID: "palr-1b-q4", catalogID: "ml-100k@3")
                    == newer)
            #expect(try store.stats().cachedRecommendations == 1)

            var bad = entry
            bad.items = [ScoredItem(item: "1", score: .infinity)]
            #expect(throws: HistoryError.self) { try store.putCachedRecommendations(bad) }
            bad = entry
            bad.profile = "nobody"
            #expect(throws: HistoryError.unknownProfile("nobody")) { try store.putCachedRecommendations(bad) }

            let summary = ProfileSummary(profile: "alice", text: "keywords: noir, 1940s", historyDigest: digest,
                                         interactionCount: 1, createdAt: 1_700_000_000)
            #expect(try store.profileSummary(profile: "alice") == nil)
            try store.putProfileSummary(summary)
            #expect(try store.profileSummary(profile: "alice") == summary)
        }
    }
}

@Suite struct LockingTests {
    /// A writer waits for another connection's transaction instead of failing,
    /// and fails with a typed error only after its whole busy timeout.
    @Test func writersWaitForLocksThenFailClearly() throws {
        try withTemporaryDirectory { folder in
            let holder = try makeStore(folder)
            try holder.createProfile("alice")
            let patient = try makeStore(folder)
            let impatient = try makeStore(folder, options: .init(busyTimeout: 0.2))

            try holder.connection.exec("BEGIN IMMEDIATE")
            let release = DispatchSemaphore(value: 0)
            let released = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                release.wait()
                try? holder.connection.exec("COMMIT")
                released.signal()
            }
            do {
                try impatient.record(view("alice", "1", at: 1))
                Issue.record("wrote while another connection held the write lock")
            } catch let error as HistoryError {
                guard case .busy = error else {
                    Issue.record("unexpected error \(error)")
                    return
                }
                #expect(error.description.contains("locked by another process"))
            }
            // Reads go on while the write lock is held (WAL).
            #expect(try patient.recent(profile: "alice").isEmpty)
            release.signal()
            try patient.record(view("alice", "2", at: 2))  // waits for the holder if needed
            released.wait()
            #expect(try patient.recent(profile: "alice").map(\.item) == ["2"])
        }
    }
}
