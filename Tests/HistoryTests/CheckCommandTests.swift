// `palr history check`: the whole-store check (what every read cannot afford to scan),
// and the one repair that loses nothing (an id counter set back).
import Foundation
import Testing

@testable import History

@Suite struct CheckCommandTests {
    @Test func findsWhatIsWrongAndRepairsOnlyTheCounter() throws {
        try withTemporaryDirectory { folder in
            let path = folder + "/h.sqlite"
            let store = try HistoryStore(path: path)
            let ids = try store.record((1...5).map { NewInteraction(profile: "p", item: "m\($0)", timestamp: Int64($0)) },
                                       createProfiles: true)
            #expect(try store.check() == [])
            let fine = try runPalr(["history", "--db", path, "check"])
            #expect(fine.status == 0 && fine.output.contains("ok: \(path)"), "\(fine)")

            // The counter set back (another tool, a partly restored file): reported, repaired.
            try store.connection.write("test") { try store.setMeta("next_interaction_id", 3) }
            let problems = try store.check()
            #expect(problems.count == 1 && problems[0].contains("counter (3) is not above the largest id in use (\(ids[4]))"),
                    "\(problems)")
            let found = try runPalr(["history", "--db", path, "check"])
            #expect(found.status == 1 && found.output.contains("problem: the interaction id counter")
                    && found.error.contains("1 problem found"), "\(found)")
            let repaired = try runPalr(["history", "--db", path, "check", "--repair", "--json"])
            #expect(repaired.status == 0 && repaired.output.contains("\"ok\" : true")
                    && repaired.output.contains("the interaction id counter set to \(ids[4] + 1)"), "\(repaired)")
            #expect(try store.record(NewInteraction(profile: "p", item: "m6", timestamp: 6)) == ids[4] + 1)
            #expect(try store.repairIdCounter() == nil)

            // A counter deleted (read as 1, as `record` reads it) or damaged (text): reported,
            // the other checks still run, and --repair writes a sound one.
            for damage in ["DELETE FROM meta WHERE key = 'next_interaction_id'",
                           "UPDATE meta SET value = 'x' WHERE key = 'next_interaction_id'"] {
                try store.connection.write("test") { try store.connection.exec(damage) }
                let found = try store.check()
                #expect(found.count == 1 && (found[0].contains("counter (1) is not above") || found[0].contains("next_interaction_id")),
                        "\(damage): \(found)")
                #expect(try store.repairIdCounter() == ids[4] + 2)
                #expect(try store.check() == [])
            }

            // What no repair can mend without losing data: reported, exit 1 even with --repair.
            try store.connection.write("test") {
                try store.connection.exec("INSERT INTO interactions(profile, ts, seq, item, kind, value) VALUES (1, 9, 100, 4242, 1, NULL)")
                try store.connection.exec("INSERT INTO interactions(profile, ts, seq, item, kind, value) VALUES (1, 10, \(ids[0]), 1, 1, NULL)")
                try store.setMeta("next_interaction_id", 101)
            }
            let damaged = try store.check()
            #expect(damaged.contains("1 interaction names a missing item (no row in items)"), "\(damaged)")
            #expect(damaged.contains("1 interaction id is used more than once"), "\(damaged)")
            let still = try runPalr(["history", "--db", path, "check", "--repair"])
            #expect(still.status == 1 && !still.output.contains("repaired:") && still.error.contains("2 problems found"),
                    "\(still)")
        }
    }
}
