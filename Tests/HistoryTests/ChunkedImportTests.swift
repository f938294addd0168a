// Import reads regular files in chunks, twice (check, then write): lines that
// straddle chunk boundaries, lines longer than a chunk, pipes and folders.
import Foundation
import Testing

@testable import History

/// Splits `bytes` at "\n" the way ImportInput documents it (a final line ending
/// does not start another line); an independent reference for forEachLine.
private func referenceLines(_ bytes: [UInt8]) -> [[UInt8]] {
    var lines: [[UInt8]] = []
    var current: [UInt8] = []
    for byte in bytes {
        if byte == UInt8(ascii: "\n") {
            lines.append(current)
            current = []
        } else {
            current.append(byte)
        }
    }
    if !current.isEmpty { lines.append(current) }
    return lines
}

/// A generic CSV of `rows` data lines (CRLF, BOM, no final line ending) whose
/// `pad` column varies in width so lines fall across the 1 MiB chunks at every
/// offset; row `long` carries a pad of `longPad` bytes, longer than a chunk.
private func paddedCSV(rows: Int, long: Int, longPad: Int) -> String {
    var text = "\u{FEFF}who,what,when,pad\r\n"
    for k in 0..<rows {
        let pad = k == long ? String(repeating: "x", count: longPad) : String(repeating: "é", count: (k * 7919) % 301)
        text += "p\(k % 13),item\(k % 997),\(1_000_000 + k),\"\(pad)\"" + (k == rows - 1 ? "" : "\r\n")
    }
    return text
}

private let paddedMapping = CSVMapping(profileColumn: "who", itemColumn: "what", timeColumn: "when")

@Suite struct ChunkedImportTests {
    @Test func chunkedLinesEqualTheReferenceSplit() throws {
        try withTemporaryDirectory { folder in
            let text = paddedCSV(rows: 20_000, long: 9_000, longPad: ImportInput.chunk + ImportInput.chunk / 2)
            let bytes = Array(text.utf8)
            #expect(bytes.count > 3 * ImportInput.chunk)
            let path = try writeFile(folder, "padded.csv", text)
            for source in [try ImportInput(path: path), ImportInput(data: Data(bytes), name: path)] {
                var lines: [[UInt8]] = []
                try source.forEachLine(pass: .check) { b, range in lines.append(Array(b[range])) }
                let expected = referenceLines(Array(bytes.dropFirst(3)))  // the byte order mark is skipped
                #expect(lines.count == expected.count)
                let firstDifference = zip(lines, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                #expect(firstDifference == nil, "first different line: \(firstDifference ?? -1)")
            }
            // A final line ending does not add a line; two do (an empty last line).
            for (tail, extra) in [("\n", 0), ("\n\n", 1)] {
                let file = try writeFile(folder, "tail.csv", "a\nb" + tail)
                var count = 0
                try ImportInput(path: file).forEachLine(pass: .check) { _, _ in count += 1 }
                #expect(count == 2 + extra, "tail \(tail.debugDescription)")
            }
        }
    }

    @Test func fileAndMemoryImportsGiveTheSameStore() throws {
        try withTemporaryDirectory { folder in
            let text = paddedCSV(rows: 40_000, long: 33_333, longPad: ImportInput.chunk + 17)
            let path = try writeFile(folder, "padded.csv", text)
            var exports: [String] = []
            for (index, fromFile) in [true, false].enumerated() {
                let store = try makeStore(folder, name: "s\(index).sqlite")
                let options = ImportOptions(format: .csv(paddedMapping))
                let report = fromFile ? try store.importFile(path, options: options)
                                      : try store.importData(Data(text.utf8), name: path, options: options)
                // 40,000 rows: more than two insert batches.
                #expect(report.interactions == 40_000 && report.profiles == 13 && report.newItems == 997)
                #expect(report.firstID == 1 && report.lastID == 40_000)
                #expect(40_000 > 2 * HistoryStore.importBatch)
                var out = ""
                _ = try store.export(format: .csv) { out += $0 }
                exports.append(out)
            }
            #expect(exports[0] == exports[1] && exports[0].count > 40_000 * 10)
        }
    }

    @Test func aMalformedLineAfterManyBatchesWritesNothing() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            _ = try store.importFile(try writeFile(folder, "before.data", generatedUData(lines: 10)),
                                     options: ImportOptions(format: .movieLensUData))
            let before = try store.stats()
            let lines = 3 * HistoryStore.importBatch + 5
            let file = try writeFile(folder, "bad.data", generatedUData(lines: lines) + "1\t2\tthree\t4\n")
            do {
                _ = try store.importFile(file, options: ImportOptions(format: .movieLensUData))
                Issue.record("a malformed last line was imported")
            } catch let error as ImportError {
                #expect(error.line == lines + 1 && error.reason.contains("three"), "\(error)")
            }
            let after = try store.stats()
            #expect(after.interactions == before.interactions && after.profiles == before.profiles)
        }
    }

    @Test func aPipeIsReadOnceAndAFolderIsNamed() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let fifo = folder + "/ratings.fifo"
            #expect(mkfifo(fifo, 0o600) == 0)
            let text = generatedUData(lines: 3_000)
            let writer = Thread {
                if let handle = FileHandle(forWritingAtPath: fifo) {
                    handle.write(Data(text.utf8))
                    try? handle.close()
                }
            }
            writer.start()
            let report = try store.importFile(fifo, options: ImportOptions(format: .movieLensUData))
            #expect(report.interactions == 3_000 && report.profiles == 37)
            do {
                _ = try store.importFile(folder, options: ImportOptions(format: .movieLensUData))
                Issue.record("a folder was imported")
            } catch let error as ImportError {
                #expect(error.file == folder && error.reason.contains("folder"), "\(error)")
            }
        }
    }

    /// The write pass reads the file the check pass read, exactly the bytes it read:
    /// a file appended to, truncated or rewritten in between is an error; a file
    /// replaced under its name is still the one read.
    @Test func theWritePassReadsWhatTheCheckPassRead() throws {
        try withTemporaryDirectory { folder in
            let text = generatedUData(lines: 3 * 40_000)
            func lines(_ input: ImportInput, _ pass: ImportInput.Pass) throws -> Int {
                var n = 0
                try input.forEachLine(pass: pass) { _, _ in n += 1 }
                return n
            }
            func expectChanged(_ what: String, _ change: (String) throws -> Void) throws {
                let path = try writeFile(folder, "\(what).data", text)
                let input = try ImportInput(path: path)
                #expect(try lines(input, .check) == 120_000)
                try change(path)
                do {
                    _ = try lines(input, .write)
                    Issue.record("\(what): the change was not noticed")
                } catch let error as ImportError {
                    #expect(error.reason.contains("the file changed while it was being imported"), "\(what): \(error)")
                }
            }
            try expectChanged("appended") { path in
                let handle = try #require(FileHandle(forWritingAtPath: path))
                handle.seekToEndOfFile()
                handle.write(Data("7777\t1\t5\t95".utf8))
                try handle.close()
            }
            try expectChanged("truncated") { path in #expect(truncate(path, 50_000) == 0) }
            try expectChanged("rewritten") { path in
                // Same size, other bytes, a later modification time.
                usleep(20_000)
                let handle = try #require(FileHandle(forWritingAtPath: path))
                handle.write(Data("9".utf8))
                try handle.close()
            }
            // Replaced by another file under the same name (or renamed, as log rotation
            // does): the open file is what is read, all of the checked bytes.
            let path = try writeFile(folder, "replaced.data", text)
            let input = try ImportInput(path: path)
            #expect(try lines(input, .check) == 120_000)
            _ = try writeFile(folder, "other.data", "1\t2\t3\t4\n")
            #expect(rename(folder + "/other.data", path) == 0)
            #expect(try lines(input, .write) == 120_000)
        }
    }

    @Test func aFileOfOnlyAByteOrderMarkIsEmpty() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let bom = "\u{FEFF}"
            let report = try store.importFile(try writeFile(folder, "bom.data", bom), options: ImportOptions(format: .movieLensUData))
            #expect(report.interactions == 0)
            do {
                _ = try store.importFile(try writeFile(folder, "bom.csv", bom), options: ImportOptions(format: .movieLensCSV))
                Issue.record("a CSV without a header was imported")
            } catch let error as ImportError {
                #expect(error.reason.contains("the file is empty"), "\(error)")
            }
            #expect(try store.importData(Data(bom.utf8), name: "m", options: ImportOptions(format: .movieLensUData))
                        .interactions == 0)
        }
    }

    @Test func aLineLongerThanTheLimitIsAnError() throws {
        try withTemporaryDirectory { folder in
            let store = try makeStore(folder)
            let long = String(repeating: "x", count: ImportInput.maxLineBytes + 10)
            let path = try writeFile(folder, "long.csv", "who,what,when,pad\np,i,1,x\np,i,1,\(long)\n")
            do {
                _ = try store.importFile(path, options: ImportOptions(format: .csv(paddedMapping)))
                Issue.record("a line over the limit was imported")
            } catch let error as ImportError {
                #expect(error.line == 3 && error.reason == "the line is longer than 16 MiB", "\(error)")
            }
            #expect(try store.stats().interactions == 0)
        }
    }
}
