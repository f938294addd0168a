// A structurally valid store whose palr tables hold values palr never writes (another
// tool such as the sqlite3 CLI edited it, an old backup was restored): each found by
// tools/fuzz/history/fuzz.py. The standard: one error naming the file and what is wrong,
// exit 1; never a trap, and never the damage read through SQLite's conversions (a text
// read as 0) or a row silently left out.
import Foundation
import Testing

@testable import History

/// A store in `folder` with profile "p" (interactions of items "a", "b", "c" at 100,
/// 101, 102, ids 1 to 3), changed by `sql` run as another tool would.
private func hostileStore(_ folder: String, _ sql: String) throws -> (path: String, store: HistoryStore) {
    let path = folder + "/history.sqlite"
    let store = try HistoryStore(path: path)
    _ = try store.record(["a", "b", "c"].enumerated().map {
        NewInteraction(profile: "p", item: $0.element, kind: .rating, value: 4, timestamp: Int64(100 + $0.offset))
    }, createProfiles: true)
    // As another tool would: without palr's foreign-key enforcement.
    try store.connection.run("test") {
        try store.connection.exec("PRAGMA foreign_keys = OFF; \(sql); PRAGMA foreign_keys = ON")
    }
    return (path, store)
}

/// The error `body` throws, which must be `HistoryError.corrupt` naming `path`; its reason.
private func corruptReason(_ path: String, _ body: () throws -> Void) -> String? {
    do {
        try body()
        Issue.record("no error")
    } catch let HistoryError.corrupt(damaged, reason) {
        #expect(damaged == path)
        return reason
    } catch {
        Issue.record("expected HistoryError.corrupt, got \(error)")
    }
    return nil
}

/// Runs palr on a store and expects exit 1 with one `Error:` line naming it (a trap
/// before: signal 4 and a backtrace).
private func expectOneErrorLine(_ arguments: [String], naming path: String, _ words: String) throws {
    let (status, _, error) = try runPalr(arguments)
    let lines = error.split(separator: "\n")
    #expect(status == 1, "\(arguments): exit \(status), \(error)")
    #expect(lines.count == 1 && lines[0].hasPrefix("Error: ") && lines[0].contains(path) && lines[0].contains(words),
            "\(arguments): \(error)")
}

@Suite struct HostileStoreValueTests {
    /// PRAGMA user_version is signed: -1 was taken for an old version and indexed the
    /// migrations with it (index out of range, every command).
    @Test func aNegativeSchemaVersionIsRefused() throws {
        try withTemporaryDirectory { folder in
            let (path, store) = try hostileStore(folder, "SELECT 1")
            try store.connection.run("test") { try store.connection.exec("PRAGMA user_version = -1") }
            store.close()
            do {
                _ = try HistoryStore(path: path)
                Issue.record("a store with schema version -1 opened")
            } catch let HistoryError.notAHistoryDatabase(refused, reason) {
                #expect(refused == path && reason.contains("-1"), "\(reason)")
            }
            try expectOneErrorLine(["history", "--db", path, "stats"], naming: path, "schema version is -1")
        }
    }

    /// An id counter at the largest integer overflowed on `add` (a trap); a forget
    /// counter there overflowed on every forget.
    @Test func countersAtTheLargestIntegerAreReportedNotTrapped() throws {
        try withTemporaryDirectory { folder in
            let (path, store) = try hostileStore(folder, """
                UPDATE meta SET value = 9223372036854775807 WHERE key = 'next_interaction_id';
                INSERT OR REPLACE INTO meta(key, value) VALUES ('forget_count', 9223372036854775807)
                """)
            store.close()
            try expectOneErrorLine(["history", "--db", path, "add", "--profile", "p", "x"], naming: path,
                                   "'next_interaction_id'")
            try expectOneErrorLine(["history", "--db", path, "forget", "--profile", "p"], naming: path,
                                   "'forget_count'")
            try expectOneErrorLine(["history", "--db", path, "forget", "--profile", "p", "--item", "a"], naming: path,
                                   "'forget_count'")
            let reopened = try HistoryStore(path: path)
            #expect(try reopened.recent(profile: "p").map(\.item) == ["a", "b", "c"])  // rolled back
        }
    }

    /// `meta` values of the wrong type or range were read as SQLite converts them: a text
    /// or negative id counter handed out ids 0 or -1 (ids in use or never valid), a
    /// retention cap of 'abc' meant unlimited.
    @Test func metaValuesPalrNeverWritesAreReported() throws {
        for (key, value) in [("next_interaction_id", "'abc'"), ("next_interaction_id", "0"),
                             ("next_interaction_id", "2.5"), ("next_interaction_id", "x'00ff'"),
                             ("retention_cap", "'abc'"), ("retention_cap", "-1"), ("forget_count", "'12'")] {
            try withTemporaryDirectory { folder in
                let (path, store) = try hostileStore(
                    folder, "INSERT OR REPLACE INTO meta(key, value) VALUES ('\(key)', \(value))")
                let reason = corruptReason(path) {
                    switch key {
                    case "retention_cap": _ = try store.retentionCap()
                    case "forget_count": _ = try store.forgetCount()
                    default: _ = try store.record([NewInteraction(profile: "p", item: "d", timestamp: 200)])
                    }
                }
                #expect(reason?.contains("meta value '\(key)'") == true, "\(key) = \(value): \(reason ?? "")")
                #expect(try store.recent(profile: "p").count == 3)
            }
        }
    }

    /// Rows of `interactions` with a text timestamp, an infinite value or an item or kind
    /// id that is missing were read as timestamp 0, failed in JSON encoding without the
    /// file's name, or were left out of `recent`, `list` and `export` without a word.
    @Test func hostileInteractionRowsAreReportedNotAlteredOrDropped() throws {
        let cases = [
            ("UPDATE interactions SET ts = 'abc' WHERE seq = 2", "interaction 2 of profile 'p' has the timestamp the text 'abc'"),
            ("UPDATE interactions SET ts = 1.5 WHERE seq = 2", "has the timestamp the real number 1.5"),
            ("UPDATE interactions SET value = 9e999 WHERE seq = 2", "has the value the real number inf"),
            ("UPDATE interactions SET value = 'x' WHERE seq = 2", "has the value the text 'x'"),
            ("UPDATE interactions SET item = 4242 WHERE seq = 2", "refers to item id 4242, which is not in the items table"),
            ("UPDATE interactions SET kind = 77 WHERE seq = 2", "refers to kind id 77, which is not in the kinds table"),
            ("UPDATE items SET external_id = CAST(x'61ff' AS TEXT) WHERE id = 2", "has the item id the text"),
            ("UPDATE items SET external_id = x'6200' WHERE id = 2", "has the item id a blob of 2 bytes"),
            // Was written raw into `list` and a CSV export, splitting the row in two.
            ("UPDATE kinds SET name = CAST(x'1b5b33316d0a41' AS TEXT) WHERE id = 4",
             "has a damaged kind: kind '\\u{1B}[31m\\nA' may contain only a-z"),
        ]
        for (sql, expected) in cases {
            try withTemporaryDirectory { folder in
                let (path, store) = try hostileStore(folder, sql)
                for read in [{ _ = try store.recent(profile: "p") },
                             { _ = try store.export(format: .csv) { _ in } },
                             { _ = try store.export(format: .jsonl, profile: "p") { _ in } }] {
                    let reason = corruptReason(path, read)
                    #expect(reason?.contains(expected) == true, "\(sql): \(reason ?? "")")
                }
            }
        }
    }

    /// An export of all profiles left out rows whose profile is missing; a backup must
    /// not lose rows silently.
    @Test func anExportReportsRowsOfAMissingProfile() throws {
        try withTemporaryDirectory { folder in
            let (path, store) = try hostileStore(folder, "UPDATE interactions SET profile = 4242 WHERE seq = 3")
            let reason = corruptReason(path) { _ = try store.export(format: .csv) { _ in } }
            #expect(reason == "interaction 3 refers to profile id 4242, which is not in the profiles table")
        }
    }

    /// A cached ranking naming one item ten times was served as the top 10.
    @Test func aCachedRankingListingAnItemTwiceIsNotServed() throws {
        try withTemporaryDirectory { folder in
            let (path, store) = try hostileStore(folder, "SELECT 1")
            try store.putCachedRecommendations(CachedRecommendations(
                profile: "p", modelID: "m", catalogID: "c", historyDigest: try store.historyDigest(profile: "p"),
                createdAt: 1, items: [ScoredItem(item: "x", score: 1), ScoredItem(item: "y", score: 0.5)]))
            try store.connection.write("test") {
                try store.connection.exec("""
                    UPDATE cached_recommendations SET items = '[{"item":"x","score":1},{"item":"x","score":1}]'
                    """)
            }
            let reason = corruptReason(path) { _ = try store.cachedRecommendations(profile: "p", modelID: "m", catalogID: "c") }
            #expect(reason?.hasSuffix("lists item 'x' twice") == true, "\(reason ?? "")")
        }
    }

    /// A summary's count, time or marker of the wrong type was read as 0.
    @Test func aSummaryWithValuesPalrNeverWritesIsReported() throws {
        for (column, value) in [("interaction_count", "'many'"), ("interaction_count", "-3"), ("created_at", "x'00'"),
                                ("last_interaction_id", "'abc'"), ("last_interaction_id", "0"),
                                ("text", "CAST(x'ff' AS TEXT)")] {
            try withTemporaryDirectory { folder in
                let (path, store) = try hostileStore(folder, "SELECT 1")
                try store.putProfileSummary(ProfileSummary(
                    profile: "p", text: "t", historyDigest: try store.historyDigest(profile: "p"), interactionCount: 3,
                    createdAt: 1, lastInteractionID: 3))
                try store.connection.write("test") {
                    try store.connection.exec("UPDATE profile_summaries SET \(column) = \(value)")
                }
                let reason = corruptReason(path) { _ = try store.profileSummary(profile: "p") }
                #expect(reason?.hasPrefix("summary of profile 'p' has the") == true, "\(column): \(reason ?? "")")
            }
        }
    }
}
