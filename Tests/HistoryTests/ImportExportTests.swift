// Import (all four formats, malformed files, ML-100K) and export.
import Foundation
import Testing

@testable import History

/// Imports `text` as a file named `name`; returns the error, which must be an ImportError.
private func importError(_ store: HistoryStore, _ folder: String, _ name: String, _ text: String,
                         _ format: ImportFormat) throws -> ImportError? {
    let file = try writeFile(folder, name, text)
    do {
        _ = try store.importFile(file, options: ImportOptions(format: format))
        return nil
    } catch let error as ImportError {
        #expect(error.file == file)
        return error
    }
}

@Suite struct ImportTests {
    @Test func theFourFormatsGiveTheSameHistory() throws {
        try withTemporaryDirectory { folder in
            let udata = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t377\t1\t881250949\n"
            let dat = "196::242::3::881250949\r\n186::302::3::891717742\r\n196::377::1::881250949"
            let csv = "userId,movieId,rating,timestamp\n196,242,3,881250949\n186,302,3.0,891717742\n196,377,1,881250949\n"
            let generic = "\u{FEFF}when;who;what;stars;extra\n881250949000;196;242;3;x\n891717742000;186;302;3;\"a;b\"\n"
                + "881250949000;\"196\";\"377\";1;\n"
            let mapping = CSVMapping(profileColumn: "who", itemColumn: "what", timeColumn: "when", valueColumn: "stars",
                                     delimiter: UInt8(ascii: ";"), timeUnit: .milliseconds)
            var digests: [HistoryDigest] = []
            for (name, text, format) in [("u.data", udata, ImportFormat.movieLensUData),
                                         ("ratings.dat", dat, .movieLensDat), ("ratings.csv", csv, .movieLensCSV),
                                         ("generic.csv", generic, .csv(mapping))] {
                let store = try makeStore(folder, name: name + ".sqlite")
                let report = try store.importFile(try writeFile(folder, name, text),
                                                  options: ImportOptions(format: format, kind: .rating))
                #expect(report.interactions == 3 && report.profiles == 2 && report.newProfiles == 2
                        && report.newItems == 3, "\(name): \(report)")
                #expect(report.firstID == 1 && report.lastID == 3)
                let recent = try store.recent(profile: "196")
                #expect(recent.map(\.item) == ["242", "377"], "\(name)")  // equal times: file order
                #expect(recent.map(\.value) == [3, 1] && recent.allSatisfy { $0.kind == .rating })
                digests.append(try store.historyDigest(profile: "196"))
                #expect(try foreignKeysOn(store))  // switched off for the import's transaction only
                #expect(try store.forget(profile: "186") == 1)  // and cascades again
            }
            #expect(Set(digests).count == 1)
        }
    }

    @Test func genericCSVKindsEmptyValuesAndPrefix() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let text = "user,item,ts,kind,value\nanna,tt1,10,view,0.5\nanna,tt2,11,purchase,\nanna,tt3,12,skip,\n"
            let mapping = CSVMapping(profileColumn: "user", itemColumn: "item", timeColumn: "ts",
                                     valueColumn: "value", kindColumn: "kind")
            _ = try store.importFile(try writeFile(folder, "events.csv", text),
                                     options: ImportOptions(format: .csv(mapping), profilePrefix: "home:"))
            let recent = try store.recent(profile: "home:anna")
            #expect(recent.map(\.kind) == [.view, .purchase, .skip])
            #expect(recent.map(\.value) == [0.5, nil, nil])
        }
    }

    /// The case: a bad line in the middle of a 10,000-line import.
    @Test func malformedLineInTheMiddleLeavesTheStoreUntouched() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            _ = try store.importFile(try writeFile(folder, "first.data", generatedUData(lines: 500)),
                                     options: ImportOptions(format: .movieLensUData))
            let before = try store.stats()
            let digest = try store.historyDigest(profile: "5", limit: 1000)

            var lines = generatedUData(lines: 10000).split(separator: "\n").map(String.init)
            lines[4999] = "42\t7\t4"  // line 5000 lost its timestamp
            let error = try importError(store, folder, "bad.data", lines.joined(separator: "\n") + "\n", .movieLensUData)
            #expect(error?.line == 5000)
            #expect(error?.reason == "expected 4 fields separated by tabs, found 3")
            #expect(error?.description.hasSuffix("bad.data:5000: expected 4 fields separated by tabs, found 3 (nothing was imported)") == true)

            let after = try store.stats()
            #expect(after.interactions == before.interactions && after.profiles == before.profiles
                    && after.items == before.items)
            #expect(try store.historyDigest(profile: "5", limit: 1000) == digest)
            // The next import gets the next ids: nothing was used up.
            let report = try store.importFile(try writeFile(folder, "ok.data", "1\t1\t1\t1\n"),
                                              options: ImportOptions(format: .movieLensUData))
            #expect(report.firstID == 501)
        }
    }

    @Test func everyKindOfMalformedLineIsNamed() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let good = "1\t2\t3\t4\n"
            let cases: [(String, ImportFormat, Int, String)] = [
                (good + "1\t2\tfour\t4\n", .movieLensUData, 2, "value 'four' is not a finite number"),
                (good + "1\t2\t3\t4.5\n", .movieLensUData, 2, "timestamp '4.5' is not an integer"),
                (good + "1\t2\t3\t1700000000000\n", .movieLensUData, 2, "expected Unix seconds"),
                (good + "1\t2\t3\t4\t5\n", .movieLensUData, 2, "expected 4 fields separated by tabs, found 5"),
                (good + "\n" + good, .movieLensUData, 2, "empty line"),
                (good + "1\t\t3\t4\n", .movieLensUData, 2, "item id is empty"),
                (good + "1\t2\tnan\t4\n", .movieLensUData, 2, "not a finite number"),
                ("1::2::3\n", .movieLensDat, 1, "expected 4 fields separated by '::', found 3"),
                ("user,movie,rating,timestamp\n", .movieLensCSV, 1, "expected the header"),
                ("", .movieLensCSV, 0, "the file is empty"),
                ("userId,movieId,rating,timestamp\n1,\"2,3,4\n", .movieLensCSV, 2, "unterminated quoted field"),
                ("userId,movieId,rating,timestamp\n1,\"2\"x,3,4\n", .movieLensCSV, 2, "after the closing quote"),
                ("a,b,c\n1,2,3\n", .csv(CSVMapping(profileColumn: "a", itemColumn: "b", timeColumn: "t")), 1,
                 "no column named 't' in the header (columns: a, b, c)"),
                ("a,b,t,k\n1,2,3,Watch\n",
                 .csv(CSVMapping(profileColumn: "a", itemColumn: "b", timeColumn: "t", kindColumn: "k")), 2,
                 "kind 'Watch' may contain only"),
            ]
            for (text, format, line, reason) in cases {
                let error = try importError(store, folder, "case.txt", text, format)
                #expect(error?.line == line, "\(text.debugDescription): \(String(describing: error))")
                #expect(error?.reason.contains(reason) == true, "\(text.debugDescription): \(String(describing: error))")
            }
            let invalidUTF8 = folder + "/latin1.data"
            try Data([0x31, 0x09, 0xe9, 0x09, 0x33, 0x09, 0x34, 0x0a]).write(to: URL(fileURLWithPath: invalidUTF8))
            #expect(throws: ImportError(file: invalidUTF8, line: 1, reason: "invalid UTF-8")) {
                try store.importFile(invalidUTF8, options: ImportOptions(format: .movieLensUData))
            }
            #expect(throws: ImportError.self) {
                try store.importFile(folder + "/missing.data", options: ImportOptions(format: .movieLensUData))
            }
            #expect(try store.stats().interactions == 0)
            #expect(try store.stats().profiles == 0)
        }
    }

    @Test(.enabled(if: movieLens100K != nil, "../shared/data/ml-100k/u.data is absent: MovieLens import not tested"))
    func importsMovieLens100KWithoutDroppingAnything() throws {
        let udata = try #require(movieLens100K)
        try withTemporaryDirectory { folder in
            let path = folder + "/history.sqlite"
            let store = try HistoryStore(path: path)
            let report = try store.importFile(udata, options: ImportOptions(format: .movieLensUData))
            #expect(report.interactions == 100_000 && report.profiles == 943 && report.newItems == 1682)
            #expect(report.profilesOverCap.isEmpty)  // the default cap of 1,000 is above the largest, 737

            let stats = try store.stats()
            #expect(stats.interactions == 100_000 && stats.profiles == 943 && stats.items == 1682)
            #expect(stats.largestProfile == "405" && stats.largestProfileInteractions == 737)
            // A write to the largest profile trims nothing either.
            try store.record(NewInteraction(profile: "405", item: "1", timestamp: 900_000_000))
            #expect(try store.interactionCount(profile: "405") == 738)
            #expect(try store.forget(item: "1", profile: "405") >= 1)

            // u.data's first line: 196 242 3 881250949.
            let history = try store.recent(profile: "196", limit: 1000)
            #expect(history.contains { $0.item == "242" && $0.value == 3 && $0.timestamp == 881_250_949 })
            #expect(history.map(\.timestamp) == history.map(\.timestamp).sorted())
            #expect(try store.integrityCheck() == ["ok"])

            // Size: at most 1.5× u.data once the WAL is checkpointed.
            store.close()
            let databaseBytes = fileSize(path)
            let udataBytes = fileSize(udata)
            #expect(Double(databaseBytes) <= 1.5 * Double(udataBytes),
                    "database \(databaseBytes) bytes vs u.data \(udataBytes) bytes")
        }
    }
}

@Suite struct ExportTests {
    @Test func csvAndJSONLines() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            try store.record([NewInteraction(profile: "b", item: "x,\"y\"", kind: .rating, value: 4.5, timestamp: 2),
                              NewInteraction(profile: "a", item: "1", timestamp: 1)], createProfiles: true)
            var csv = ""
            #expect(try store.export(format: .csv) { csv += $0 } == 2)
            #expect(csv == "id,profile,item,kind,value,timestamp\n2,a,1,view,,1\n1,b,\"x,\"\"y\"\"\",rating,4.5,2\n")
            var jsonl = ""
            try store.export(format: .jsonl, profile: "b") { jsonl += $0 }
            #expect(jsonl == "{\"id\":1,\"profile\":\"b\",\"item\":\"x,\\\"y\\\"\",\"kind\":\"rating\",\"value\":4.5,\"timestamp\":2}\n")
            // Every line is JSON.
            for line in jsonl.split(separator: "\n") {
                #expect(try JSONSerialization.jsonObject(with: Data(line.utf8)) is [String: Any])
            }
            #expect(throws: HistoryError.unknownProfile("c")) { try store.export(format: .csv, profile: "c") { _ in } }
        }
    }

    @Test func exportedCSVReimportsToTheSameHistories() throws {
        try withTemporaryDirectory { folder in
            let source = try makeStore(folder, name: "source.sqlite")
            _ = try source.importFile(try writeFile(folder, "u.data", generatedUData(lines: 3000)),
                                      options: ImportOptions(format: .movieLensUData))
            try source.record(NewInteraction(profile: "3", item: "odd \"one\", really", kind: .skip, timestamp: 5))
            var csv = ""
            try source.export(format: .csv) { csv += $0 }

            let copy = try makeStore(folder, name: "copy.sqlite")
            let mapping = CSVMapping(profileColumn: "profile", itemColumn: "item", timeColumn: "timestamp",
                                     valueColumn: "value", kindColumn: "kind")
            let report = try copy.importFile(try writeFile(folder, "export.csv", csv),
                                             options: ImportOptions(format: .csv(mapping)))
            #expect(report.interactions == 3001)
            for profile in try source.profiles().map(\.name) {
                #expect(try source.historyDigest(profile: profile, limit: 1000)
                        == copy.historyDigest(profile: profile, limit: 1000), "profile \(profile)")
            }
        }
    }
}
