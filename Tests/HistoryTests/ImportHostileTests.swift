// Hostile inputs to import, add and list: a column with two roles, huge fields in
// messages, control characters in kinds, delimiters and names, non-decimal numbers,
// millisecond ranges, stray quotes, and list options without --profile.
import Foundation
import Testing

@testable import History

/// The import error `text` (as `name` in `folder`) gives, or nil when it imports.
private func importFailure(_ store: HistoryStore, _ folder: String, _ text: String, _ format: ImportFormat,
                           name: String = "case.txt") throws -> ImportError? {
    do {
        _ = try store.importFile(try writeFile(folder, name, text), options: ImportOptions(format: format))
        return nil
    } catch let error as ImportError {
        return error
    }
}

/// A store with one profile "1" (three rating rows), and its path.
private func smallStore(_ folder: String) throws -> (HistoryStore, String) {
    let store = try makeStore(folder)
    _ = try store.importFile(try writeFile(folder, "u.data", "1\t10\t4\t100\n1\t11\t5\t101\n1\t12\t3\t102\n"),
                             options: ImportOptions(format: .movieLensUData))
    return (store, store.path)
}

@Suite struct ImportHostileTests {
    @Test func oneColumnCannotHaveTwoRoles() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let mapping = CSVMapping(profileColumn: "p", itemColumn: "p", timeColumn: "t")
            let error = try importFailure(store, folder, "p,t\n1,5\n", .csv(mapping))
            #expect(error?.line == 0 && error?.reason.contains(
                "column 'p' is given as both the profile column and the item column") == true, "\(String(describing: error))")
            #expect(try store.stats().interactions == 0)

            let file = try writeFile(folder, "ok.csv", "p,t\n1,5\n")
            let db = folder + "/cli.sqlite"
            let cases: [([String], String)] = [
                (["--profile-column", "p", "--item-column", "p", "--time-column", "t"], "the profile column and the item column"),
                (["--profile-column", "p", "--item-column", "i", "--time-column", "t", "--kind-column", "p"],
                 "the profile column and the kind column"),
                (["--profile-column", "p", "--item-column", "i", "--time-column", "t", "--value-column", "t"],
                 "the time column and the value column"),
            ]
            for (columns, roles) in cases {
                let result = try runPalr(["history", "--db", db, "import", "--format", "csv"] + columns + [file])
                #expect(result.status == 64 && result.error.contains("is given as both " + roles),
                        "\(columns): \(result)")
            }
            #expect(!FileManager.default.fileExists(atPath: db))
        }
    }

    @Test func longFieldsAreQuotedAsShortExcerpts() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let long = String(repeating: "x", count: 1 << 20)
            let csv = ImportFormat.csv(CSVMapping(profileColumn: "p", itemColumn: "i", timeColumn: "t", kindColumn: "k"))
            let cases: [(String, ImportFormat, String)] = [
                ("1\t2\t3\t\(long)\n", .movieLensUData, "timestamp 'xxxx"),
                ("1\t2\t\(long)\t4\n", .movieLensUData, "value 'xxxx"),
                ("p,i,t,k\n1,2,3,\(long)\n", csv, "kind 'xxxx"),
                ("p,i,t,k\n1,2,3,a\u{1B}[31m\n", csv, "kind 'a\\u{1B}[31m'"),
                ("\(long)\n", .movieLensCSV, "found 'xxxx"),
                ("p,i,\(long)\n", csv, "(columns: p, i, xxxx"),
            ]
            for (text, format, start) in cases {
                let error = try #require(try importFailure(store, folder, text, format), "\(start)")
                #expect(error.reason.contains(start), "\(error)")
                #expect(error.description.utf8.count < 400, "\(error.description.prefix(500))")
                if text.utf8.count > 1000 { #expect(error.reason.contains("…") && error.reason.contains(" bytes)"), "\(error)") }
            }
            #expect(Validation.quoted(long) == "'" + String(repeating: "x", count: 40) + "…' (1048576 bytes)")
            // One character with a million combining marks is cut too (by scalar, not by character).
            let combining = "a" + String(repeating: "\u{301}", count: 1 << 20)
            #expect(Validation.quoted(combining).utf8.count < 200)
            #expect(Validation.quoted("short") == "'short'")
        }
    }

    @Test func kindErrorsAreEscaped() throws {
        #expect(InteractionKind(rawValue: "a\nb").problem == "kind 'a\\nb' may contain only a-z, 0-9, '_' and '-'")
        try withTemporaryDirectory { folder in
            let result = try runPalr(["history", "--db", folder + "/h.sqlite", "add", "--profile", "2",
                                      "--create-profile", "--kind", "a\nb", "m1"])
            // A usage error (64), before anything is opened, on one line.
            #expect(result.status == 64 && result.error.contains("Error: kind 'a\\nb' may contain only"), "\(result)")
            #expect(!result.error.contains("a\nb") && !FileManager.default.fileExists(atPath: folder + "/h.sqlite"))
            let file = try writeFile(folder, "u.data", "1\t2\t3\t881250949\n")
            let imported = try runPalr(["history", "--db", folder + "/h.sqlite", "import", "--format", "udata",
                                        "--kind", "Bad Kind", file])
            #expect(imported.status == 64 && imported.error.contains("Error: kind 'Bad Kind' may contain only"), "\(imported)")
            // Unknown profiles are quoted escaped too: one line whatever the name holds.
            #expect(HistoryError.unknownProfile("a\nb").description == "unknown profile 'a\\nb'")
        }
    }

    @Test func delimitersThatCannotWorkAreUsageErrors() throws {
        for byte: UInt8 in [0x22, 0x0d, 0x0a, 0x01, 0x00, 0x7f, 0xe9] {
            #expect(CSVMapping(profileColumn: "p", itemColumn: "i", timeColumn: "t", delimiter: byte).problem != nil,
                    "\(byte)")
        }
        for byte in [UInt8(ascii: "\t"), UInt8(ascii: ";"), UInt8(ascii: "|"), UInt8(ascii: " ")] {
            #expect(CSVMapping(profileColumn: "p", itemColumn: "i", timeColumn: "t", delimiter: byte).problem == nil)
        }
        try withTemporaryDirectory { folder in
            let file = try writeFile(folder, "ok.csv", "p,i,t\n1,2,5\n")
            let db = folder + "/h.sqlite"
            let cases: [(String, String)] = [
                ("\"", "the delimiter '\\\"' is the quote character"), ("\r", "the delimiter '\\r' is a control character"),
                ("\n", "the delimiter '\\n'"), ("\u{01}", "the delimiter '\\u{01}'"),
                ("\u{7F}", "the delimiter '\\u{7F}'"),
            ]
            for (delimiter, message) in cases {
                let result = try runPalr(["history", "--db", db, "import", "--format", "csv", "--profile-column", "p",
                                          "--item-column", "i", "--time-column", "t", "--delimiter", delimiter, file])
                #expect(result.status == 64 && result.error.contains(message), "\(delimiter.debugDescription): \(result)")
                #expect(result.error.hasPrefix("Error: the delimiter"), "\(result)")  // on one line
            }
            #expect(!FileManager.default.fileExists(atPath: db))
        }
    }

    @Test func namesWithC1OrBidiControlsOrOnlyWhitespaceAreRefused() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let cases: [(String, String)] = [
                ("a\u{85}b", "profile name 'a\\u{85}b' contains a control character"),
                ("\u{9B}31m", "contains a control character"),
                ("abc\u{202E}fdp", "profile name 'abc\\u{202E}fdp' contains a bidirectional control character"),
                ("x\u{2066}y", "bidirectional control"), ("x\u{2069}", "bidirectional control"),
                ("   ", "profile name '   ' is only whitespace"), ("\u{A0}\u{3000}", "is only whitespace"),
            ]
            for (name, message) in cases {
                do {
                    try store.record(NewInteraction(profile: name, item: "1", timestamp: 1), createProfile: true)
                    Issue.record("profile \(name.debugDescription) was accepted")
                } catch {
                    #expect("\(error)".contains(message), "\(error)")
                }
                let error = try importFailure(store, folder, "\(name)\t1\t3\t4\n", .movieLensUData)
                #expect(error?.reason.contains(message.replacingOccurrences(of: "profile name ", with: "")) == true,
                        "\(String(describing: error))")
                #expect(throws: HistoryError.self) {
                    try store.record(NewInteraction(profile: "p", item: name, timestamp: 1), createProfile: true)
                }
            }
            // Joiners and other format characters stay allowed (emoji sequences need U+200D).
            let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}"
            try store.record(NewInteraction(profile: family, item: " spaced item ", timestamp: 1), createProfile: true)
            #expect(try store.recent(profile: family).map(\.item) == [" spaced item "])
            // A store written before these rules keeps working: such a profile is listed, read and forgotten.
            try store.connection.write("test") {
                try store.connection.exec("INSERT INTO profiles(name, created_at) VALUES ('a' || char(133) || 'b', 0)")
            }
            #expect(try store.profiles().contains { $0.name == "a\u{85}b" })
            #expect(try store.recent(profile: "a\u{85}b").isEmpty)
            #expect(try store.forget(profile: "a\u{85}b") == 0)
            #expect(throws: HistoryError.unknownProfile("a\u{85}b")) { try store.forget(profile: "a\u{85}b") }
        }
    }

    @Test func onlyDecimalNumbersAreValues() throws {
        for text in ["0x1p3", "0X10", "nan", "NaN", "inf", "-infinity", "1e", "e5", ".", "+", "", " 4", "4 ", "1_0",
                     "1e400", "4,5", "--4", "1.2.3", "١"] {
            #expect(HistoryStore.parseValue(text) == nil, "\(text.debugDescription)")
        }
        let accepted: [(String, Double)] = [("4", 4), ("4.", 4), (".5", 0.5), ("-1.5E+2", -150), ("+3e-1", 0.3),
                                            ("1e-400", 0), ("007", 7)]
        for (text, value) in accepted { #expect(HistoryStore.parseValue(text) == value, "\(text)") }
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let error = try importFailure(store, folder, "1\t2\t0x1p3\t4\n", .movieLensUData)
            #expect(error?.reason == "value '0x1p3' is not a finite number in decimal notation", "\(String(describing: error))")
            let csv = ImportFormat.csv(CSVMapping(profileColumn: "p", itemColumn: "i", timeColumn: "t", valueColumn: "v"))
            #expect(try importFailure(store, folder, "p,i,v,t\n1,2,inf,4\n", csv) != nil)
            #expect(try store.stats().interactions == 0)

            let result = try runPalr(["history", "--db", folder + "/h.sqlite", "add", "--profile", "1",
                                      "--create-profile", "--value", "0x1p3", "m1"])
            #expect(result.status == 64 && result.error.contains("--value must be a finite number in decimal notation"),
                    "\(result)")
            let ok = try runPalr(["history", "--db", folder + "/h.sqlite", "add", "--profile", "1",
                                  "--create-profile", "--value", "-2.5e0", "--time", "7", "m1"])
            #expect(ok.status == 0, "\(ok)")
            #expect(try HistoryStore(path: folder + "/h.sqlite").recent(profile: "1").map(\.value) == [-2.5])
        }
    }

    @Test func millisecondRangeErrorsQuoteTheFieldAsWritten() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let csv = ImportFormat.csv(CSVMapping(profileColumn: "p", itemColumn: "i", timeColumn: "t",
                                                  timeUnit: .milliseconds))
            for field in ["9223372036854775807", "-1", "253402300800000"] {
                let error = try importFailure(store, folder, "p,i,t\n1,2,\(field)\n", csv)
                #expect(error?.line == 2 && error?.reason == "timestamp '\(field)' is out of range "
                        + "(expected Unix milliseconds, 0...253402300799999)", "\(String(describing: error))")
            }
            #expect(try importFailure(store, folder, "p,i,t\n1,2,253402300799999\n1,3,1700000000999\n", csv) == nil)
            #expect(try store.recent(profile: "1").map(\.timestamp) == [1_700_000_000, 253_402_300_799])
        }
    }

    @Test func aQuoteInsideAnUnquotedFieldIsAnError() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let csv = ImportFormat.csv(CSVMapping(profileColumn: "p", itemColumn: "i", timeColumn: "t", valueColumn: "v"))
            let cases: [(String, ImportFormat, Int, String)] = [
                ("p,i,v,t\n1,10\"x,4.5,5\n", csv, 2, "a quote inside unquoted field 2"),
                ("p,i,v,t\n1,2,4.5,5\n1,x\",4.5,5\n", csv, 3, "a quote inside unquoted field 2"),
                ("userId,movieId,rating,timestamp\n1\",2,3,4\n", .movieLensCSV, 2, "field 1"),
                ("p,i\"d,v,t\n", csv, 1, "field 2"),
            ]
            for (text, format, line, message) in cases {
                let error = try importFailure(store, folder, text, format)
                #expect(error?.line == line && error?.reason.contains(message) == true, "\(String(describing: error))")
            }
            // Quoted fields with doubled quotes still import.
            #expect(try importFailure(store, folder, "p,i,v,t\n1,\"10\"\"x\",4.5,5\n", csv) == nil)
            #expect(try store.recent(profile: "1").map(\.item) == ["10\"x"])
        }
    }

    @Test func listOptionsNeedAProfileAndValidKinds() throws {
        try withTemporaryDirectory { folder in
            let (_, db) = try smallStore(folder)
            let usage: [([String], String)] = [
                (["--limit", "5"], "--limit and --kind need --profile"),
                (["--kind", "view"], "--limit and --kind need --profile"),
                (["--profile", "1", "--kind", "Nosuch"], "kind 'Nosuch' may contain only"),
                (["--profile", "1", "--kind", "a\nb"], "kind 'a\\nb' may contain only"),
            ]
            for (arguments, message) in usage {
                let result = try runPalr(["history", "--db", db, "list"] + arguments)
                #expect(result.status == 64 && result.error.contains(message)
                        && result.error.contains("Usage: palr history list"), "\(arguments): \(result)")
            }
            let unknown = try runPalr(["history", "--db", db, "list", "--profile", "1", "--kind", "nosuch"])
            #expect(unknown.status == 0 && unknown.output.contains("of 0 interactions"), "\(unknown)")
            let limited = try runPalr(["history", "--db", db, "list", "--profile", "1", "--limit", "2", "--kind", "rating"])
            #expect(limited.status == 0 && limited.output.contains("of 2 interactions"), "\(limited)")
            let all = try runPalr(["history", "--db", db, "list", "--profile", "1"])
            #expect(all.status == 0 && all.output.contains("of 3 interactions"), "\(all)")
        }
    }
}
