// The readers reject what README calls malformed (field counts, ratings,
// timestamps, empty ids, blank lines between records), name unreadable and
// unwritable paths with the reason, write reports atomically, bound retrieval
// settings, and count what a neighbours CSV import did with every row.

import Foundation
import Testing
@testable import Catalog

@Suite struct StrictInputTests {
    static func interactions(_ text: String, _ format: InteractionFormat, name: String = "f") throws -> InteractionLog {
        try Array(text.utf8).withUnsafeBytes { try DataFiles.parseInteractions($0, name: name, format: format) }
    }

    static func items(_ text: String, _ format: ItemFormat, name: String = "f") throws -> ItemList {
        try Array(text.utf8).withUnsafeBytes { try DataFiles.parseItems($0, name: name, format: format) }
    }

    static let csv = InteractionFormat.csv(CSVColumns())
    static let header = "userId,movieId,rating,timestamp\n"

    /// Data files are read, not mapped (a file shortened under a mapping kills the
    /// process with SIGBUS): a pipe works as an input too.
    @Test func aPipeIsReadAsADataFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("palr-pipe-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fifo = folder + "/users.fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let writer = Thread {
            if let handle = FileHandle(forWritingAtPath: fifo) {
                handle.write(Data("u1\n\n u2 \nu3".utf8))
                try? handle.close()
            }
        }
        writer.start()
        #expect(try DataFiles.readIdList(path: fifo) == ["u1", "u2", "u3"])
    }

    @Test func interactionLinesWithWrongFieldsAreErrors() {
        #expect(throws: DataFileError.malformed(path: "u.data", line: 2,
                                                reason: "expected 4 tab-separated fields (user, item, rating, timestamp), found 5")) {
            try Self.interactions("1\t2\t3\t4\n1\t2\t3\t4\t5\n", .movieLens100K, name: "u.data")
        }
        #expect(throws: DataFileError.malformed(path: "u.data", line: 1, reason: "rating 'four' is not a number")) {
            try Self.interactions("1\t2\tfour\t4\n", .movieLens100K, name: "u.data")
        }
        #expect(throws: DataFileError.malformed(path: "r.dat", line: 2, reason: "rating '' is not a number")) {
            try Self.interactions("1::2::3::4\n1::3::::5\n", .movieLens1M, name: "r.dat")
        }
        #expect(throws: DataFileError.malformed(path: "u.data", line: 1, reason: "empty item id")) {
            try Self.interactions("1\t\t3\t4\n", .movieLens100K, name: "u.data")
        }
        for bad in ["nan", "inf", "1.2.3", "0x10", "4 ", "."] {
            #expect(throws: DataFileError.malformed(path: "u.data", line: 1, reason: "rating '\(bad)' is not a number")) {
                try Self.interactions("1\t2\t\(bad)\t4\n", .movieLens100K, name: "u.data")
            }
        }
        #expect(throws: DataFileError.malformed(path: "r.csv", line: 3, reason: "expected 4 fields as in the header, found 5")) {
            try Self.interactions(Self.header + "1,1,4.0,5\n1,2,4.0,6,extra\n", Self.csv, name: "r.csv")
        }
        #expect(throws: DataFileError.malformed(path: "r.csv", line: 2, reason: "expected 4 fields as in the header, found 3")) {
            try Self.interactions(Self.header + "1,1,4.0\n", Self.csv, name: "r.csv")
        }
        #expect(throws: DataFileError.malformed(path: "r.csv", line: 3, reason: "rating 'four' is not a number")) {
            try Self.interactions(Self.header + "1,1,4.0,5\n1,2,four,6\n", Self.csv, name: "r.csv")
        }
        #expect(throws: DataFileError.malformed(path: "r.csv", line: 2, reason: "timestamp '1.5' is not an integer")) {
            try Self.interactions(Self.header + "1,1,4.0,1.5\n", Self.csv, name: "r.csv")
        }
        #expect(throws: DataFileError.malformed(path: "r.csv", line: 2, reason: "empty user id")) {
            try Self.interactions(Self.header + ",1,4.0,5\n", Self.csv, name: "r.csv")
        }
    }

    /// An error quoting a field stays on one line: a doubled CR line ending (`\r\r\n`)
    /// left a raw CR in "timestamp '964982703\r' is not an integer", which a terminal
    /// shows as a garbled line; a header with an escape sequence likewise.
    @Test func errorsQuotingTheFileStayOnOneLine() {
        do {
            _ = try Self.interactions(Self.header + "1,1,4.0,964982703\r\r\n", Self.csv, name: "r.csv")
            Issue.record("a timestamp with a CR was accepted")
        } catch {
            #expect("\(error)" == "r.csv:2: timestamp '964982703\\u{D}' is not an integer", "\(error)")
        }
        do {
            _ = try Self.interactions("user\u{1B}[31m,movieId,timestamp\n1,2,3\n", Self.csv, name: "r.csv")
            Issue.record("a header without a user column was accepted")
        } catch {
            #expect(!"\(error)".contains("\u{1B}") && "\(error)".contains("\\u{1B}[31m"), "\(error)")
        }
    }

    @Test func anyIntegerTimestampAndNumericRatingIsAccepted() throws {
        let a = try Self.interactions("1\t2\t3\t-86400\n1\t3\t4.5\t1700000000000\n2\t2\t-1e1\t+7\n", .movieLens100K)
        #expect(a.times == [-86400, 1_700_000_000_000, 7])
        let b = try Self.interactions(Self.header + "1,1,0.5,-5\n1,2,5,1700000000000\n", Self.csv)
        #expect(b.times == [-5, 1_700_000_000_000])
        // A CSV without a rating column has nothing to check.
        let c = try Self.interactions("user,item\nu,i\n", Self.csv)
        #expect(c.count == 1)
    }

    @Test func aByteOrderMarkIsNotPartOfTheFirstField() throws {
        let bom = "\u{FEFF}"
        let log = try Self.interactions(bom + Self.header + "1,1,4,5\n", Self.csv)
        #expect(log.count == 1 && log.userIds == ["1"])
        let tab = try Self.interactions(bom + "7\t2\t3\t4\n", .movieLens100K)
        #expect(tab.userIds == ["7"])
        let path = Fixtures.temporaryPath("ids")
        try Data((bom + "42\n43\n").utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try DataFiles.readIdList(path: path) == ["42", "43"])
    }

    @Test func anEmptyRatingInAGenericCSVIsAnImplicitInteraction() throws {
        let log = try Self.interactions("user,item,rating,timestamp\nu,i,,5\nu,j,4,6\n", Self.csv)
        #expect(log.count == 2)
        #expect(throws: DataFileError.self) { try Self.interactions("user,item,rating,timestamp\nu,i,good,5\n", Self.csv) }
    }

    @Test func blankLinesAreAllowedOnlyAtTheEnd() throws {
        let reason = "blank line (blank lines are allowed only at the end of the file)"
        #expect(throws: DataFileError.malformed(path: "u.data", line: 2, reason: reason)) {
            try Self.interactions("1\t2\t3\t4\n\n1\t3\t3\t5\n", .movieLens100K, name: "u.data")
        }
        #expect(throws: DataFileError.malformed(path: "u.data", line: 2, reason: reason)) {
            try Self.interactions("1\t2\t3\t4\r\n\r\n\r\n1\t3\t3\t5\r\n", .movieLens100K, name: "u.data")
        }
        #expect(throws: DataFileError.malformed(path: "r.csv", line: 3, reason: reason)) {
            try Self.interactions(Self.header + "1,1,4,5\n\n1,2,4,6\n", Self.csv, name: "r.csv")
        }
        #expect(throws: DataFileError.malformed(path: "r.csv", line: 1, reason: reason)) {
            try Self.interactions("\n" + Self.header + "1,1,4,5\n", Self.csv, name: "r.csv")
        }
        #expect(throws: DataFileError.malformed(path: "m.csv", line: 3, reason: reason)) {
            try Self.items("id,title\n1,A\r\n\r\n2,B\r\n", .csv(id: nil, title: nil), name: "m.csv")
        }
        #expect(throws: DataFileError.malformed(path: "u.item", line: 2, reason: reason)) {
            try Self.items("1|A|x\n\n2|B|y\n", .movieLens100K, name: "u.item")
        }
        // A quoted field may still hold an empty line.
        // (Control characters in a title become one space: titles are prompt lines.)
        #expect(try Self.items("id,title\n1,\"A\n\nB\"\n", .csv(id: nil, title: nil)).titles == ["A B"])
        // Trailing blank lines (LF or CRLF), or none at all, are fine.
        #expect(try Self.interactions("1\t2\t3\t4\n1\t3\t3\t5\n\n\n", .movieLens100K).count == 2)
        #expect(try Self.interactions("1\t2\t3\t4\r\n1\t3\t3\t5\r\n\r\n", .movieLens100K).count == 2)
        #expect(try Self.interactions(Self.header + "1,1,4,5\n\n", Self.csv).count == 1)
        #expect(try Self.interactions(Self.header + "1,1,4,5\r\n\r\n", Self.csv).count == 1)
        #expect(try Self.interactions(Self.header + "1,1,4,5", Self.csv).count == 1)
        #expect(try Self.items("1::A::x\n\n", .movieLens1M).count == 1)
    }

    @Test func itemLinesWithWrongFieldsAreErrors() {
        #expect(throws: DataFileError.malformed(path: "movies.dat", line: 2,
                                                reason: "expected 3 '::'-separated fields (id, title, genres), found 4")) {
            try Self.items("1::A::x\n2::B::y::z\n", .movieLens1M, name: "movies.dat")
        }
        #expect(throws: DataFileError.malformed(path: "u.item", line: 2,
                                                reason: "expected 4 '|'-separated fields as on the first line, found 3")) {
            try Self.items("1|A|x|y\n2|B|x\n", .movieLens100K, name: "u.item")
        }
        #expect(throws: DataFileError.malformed(path: "u.item", line: 1,
                                                reason: "expected at least 2 '|'-separated fields (id, title), found 1")) {
            try Self.items("1\n", .movieLens100K, name: "u.item")
        }
        #expect(throws: DataFileError.malformed(path: "m.csv", line: 2, reason: "expected 3 fields as in the header, found 4")) {
            try Self.items("movieId,title,genres\n1,A,x,extra\n", .csv(id: nil, title: nil), name: "m.csv")
        }
        #expect(throws: DataFileError.malformed(path: "m.csv", line: 2, reason: "empty item id")) {
            try Self.items("movieId,title,genres\n,A,x\n", .csv(id: nil, title: nil), name: "m.csv")
        }
    }

    /// The shipped MovieLens files still load whole under the strict rules.
    @Test func realMovieLensFilesLoad() throws {
        let d = Fixtures.sharedData
        guard FileManager.default.fileExists(atPath: d + "/ml-100k/u.data") else {
            print("skipped: \(d) not found")
            return
        }
        #expect(try DataFiles.readItems(path: d + "/ml-100k/u.item").count == 1682)
        #expect(try DataFiles.readInteractions(path: d + "/ml-100k/u.data").count == 100_000)
        let movies = try DataFiles.readItems(path: d + "/ml-latest-small/movies.csv")
        #expect(movies.count == 9742)
        #expect(movies.titles.contains("American President, The (1995)"))
        #expect(try DataFiles.readInteractions(path: d + "/ml-latest-small/ratings.csv").count == 100_836)
    }

    @Test func unreadablePathsNameTheReason() throws {
        let dir = Fixtures.temporaryPath("dir")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: DataFileError.cannotRead(path: dir, reason: "is a directory")) { try DataFiles.readIdList(path: dir) }
        #expect(throws: DataFileError.cannotRead(path: dir, reason: "is a directory")) {
            try DataFiles.readInteractions(path: dir, format: .movieLens100K)
        }
        #expect(throws: DataFileError.cannotRead(path: "/nonexistent/users.txt", reason: "No such file or directory")) {
            try DataFiles.readIdList(path: "/nonexistent/users.txt")
        }
        #expect(throws: DataFileError.cannotRead(path: dir, reason: "is a directory")) { try DataFiles.checkReadable(path: dir) }
        #expect((try? DataFiles.checkReadable(path: #filePath)) != nil)
        #expect(DataFileError.cannotRead(path: dir, reason: "is a directory").description == "cannot read \(dir): is a directory")

        let list = dir + "/users.txt"
        try Data("  u1 \n\nu2\r\n\n".utf8).write(to: URL(fileURLWithPath: list))
        #expect(try DataFiles.readIdList(path: list) == ["u1", "u2"])
    }

    @Test func reportPathsAreCheckedUpFrontAndWrittenAtomically() throws {
        let dir = Fixtures.temporaryPath("out")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        #expect(throws: DataFileError.cannotWrite(path: "/nonexistent/d/r.tsv", reason: "folder /nonexistent/d: No such file or directory")) {
            try DataFiles.checkWritable(path: "/nonexistent/d/r.tsv")
        }
        do {
            try DataFiles.checkWritable(path: dir)
            Issue.record("a folder was accepted as a report path")
        } catch {
            #expect("\(error)".contains("it is a directory, not a regular file"), "\(error)")
        }
        let file = dir + "/r.tsv"
        try DataFiles.checkWritable(path: file)
        try DataFiles.writeAtomically("a\tb\n", to: file)
        #expect(throws: DataFileError.cannotWrite(path: file + "/x", reason: "\(file) is not a directory")) {
            try DataFiles.checkWritable(path: file + "/x")
        }
        #expect(throws: DataFileError.cannotWrite(path: "/nonexistent/d/r.tsv", reason: "folder /nonexistent/d: No such file or directory")) {
            try DataFiles.writeAtomically("x", to: "/nonexistent/d/r.tsv")
        }

        // Replacing keeps one file with the new content and leaves no temporary behind.
        try DataFiles.writeAtomically("new\n", to: file)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "new\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["r.tsv"])
        try DataFiles.writeAtomically("", to: file)
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)).isEmpty)
        // A FIFO (as a device would be) is refused, not replaced; a symbolic link is
        // followed, its target replaced with its mode kept, and the link stays a link.
        let fifo = dir + "/fifo"
        #expect(mkfifo(fifo, 0o644) == 0)
        #expect(throws: DataFileError.self) { try DataFiles.writeAtomically("x", to: fifo) }
        var st = stat()
        #expect(lstat(fifo, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO)
        #expect(chmod(file, 0o600) == 0)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.tsv", withDestinationPath: file)
        try DataFiles.writeAtomically("via link\n", to: dir + "/link.tsv")
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "via link\n")
        #expect(lstat(dir + "/link.tsv", &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK)
        #expect(stat(file, &st) == 0 && st.st_mode & 0o777 == 0o600)
        // A relative path writes into the current folder's file.
        #expect(DataFiles.folderOf("r.tsv") == "." && DataFiles.folderOf("/r.tsv") == "/")
    }

    @Test func retrievalSettingsMustBeFiniteAndInRange() throws {
        #expect(try RetrievalSettings().validated() == RetrievalSettings())
        for m in [NeighbourMethod.cooc, .seq, .combined] {
            let base = RetrieverConfiguration.defaults(for: m)
            _ = try base.retrieval.validated()
            for s in TuningGrid.standard(around: base).retrieval { _ = try s.validated() }
        }
        #expect(throws: NeighbourError.badParameter("popularity_weight must be in 0...1000, is 1e+39")) {
            try RetrievalSettings(popularityWeight: 1e39).validated()
        }
        #expect(throws: NeighbourError.badParameter("popularity_weight must be in 0...1000, is inf")) {
            try RetrievalSettings(popularityWeight: .infinity).validated()
        }
        #expect(throws: NeighbourError.badParameter("recency_decay must be in (0, 1], is nan")) {
            try RetrievalSettings(recencyDecay: .nan).validated()
        }
        #expect(throws: NeighbourError.badParameter("history_length must be in 1...1000, is 100000000")) {
            try RetrievalSettings(historyLength: 100_000_000).validated()
        }
        #expect(throws: NeighbourError.badParameter("history_length must be in 1...1000, is 0")) {
            try RetrievalSettings(historyLength: 0).validated()
        }
        // What `--params popularity_weight=1e39` does: `apply` takes it, the check names it.
        var c = RetrieverConfiguration.defaults(for: .combined)
        try c.apply("popularity_weight=1e39")
        #expect(throws: NeighbourError.self) { try c.retrieval.validated() }
        try c.apply("popularity_weight=1000,history_length=1000,recency_decay=1")
        _ = try c.retrieval.validated()
    }

    static func importPairs(_ text: String, k: Int = 10) throws -> NeighbourImport {
        let path = Fixtures.temporaryPath("pairs.csv")
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let ids = ["a", "b", "c"]
        return try DataFiles.importNeighbours(path: path, itemCount: 3, k: k) { id in ids.firstIndex(of: id).map(Int32.init) }
    }

    @Test func neighbourImportCountsEveryRowOnce() throws {
        // Two data rows, both good: the header is not a row and nothing is skipped.
        let two = try Self.importPairs("item,neighbour,score\na,b,0.9\nb,a,0.8\n")
        #expect(two.rows == 2 && two.imported == 2 && two.skipped == 0 && two.beyondK == 0)
        #expect(two.summary == "2 rows: 2 pairs imported")
        #expect(two.table.row(0).map(\.item) == [1] && two.table.row(1).map(\.item) == [0])

        // One unknown id, one self pair, one repeat, one past K=1: each counted once.
        let mixed = try Self.importPairs("item,neighbour,score\na,b,0.9\na,zz,0.5\nc,c,1\na,b,0.2\na,c,0.1\nb,c,0.3\n", k: 1)
        #expect(mixed.rows == 6 && mixed.imported == 2 && mixed.skipped == 3 && mixed.beyondK == 1)
        #expect(mixed.rows == mixed.imported + mixed.skipped + mixed.beyondK)
        #expect(mixed.summary == "6 rows: 2 pairs imported, 3 skipped (unknown id, self pair or repeat), 1 beyond K=1")

        let one = try Self.importPairs("item,neighbour,score\na,b,0.9\nq,a,0.8\n")
        #expect(one.summary == "2 rows: 1 pair imported, 1 skipped (unknown id, self pair or repeat)")

        // Rows are as strict as the other CSV readers.
        #expect(throws: DataFileError.self) { try Self.importPairs("item,neighbour,score\na,b,0.9,x\n") }
        #expect(throws: DataFileError.self) { try Self.importPairs("item,neighbour,score\na,,0.9\n") }
        #expect(throws: DataFileError.self) { try Self.importPairs("item,neighbour,score\na,b,0.9\n\nb,a,0.8\n") }
    }
}

@Suite struct ItemTextTests {
    static func items(_ text: String) throws -> ItemList {
        try Array(text.utf8).withUnsafeBytes { try DataFiles.parseItems($0, name: "m.csv", format: .csv(id: nil, title: nil)) }
    }

    @Test func titlesAreOneLineAndNotEmptyIdsFitTheHistoryStore() throws {
        #expect(try Self.items("id,title\n1,\"a\tb\u{0}c\"\n").titles == ["a b c"])
        #expect(throws: DataFileError.malformed(path: "m.csv", line: 2, reason: "item '1' has an empty title")) {
            try Self.items("id,title\n1,\"  \"\n")
        }
        #expect(throws: DataFileError.malformed(path: "m.csv", line: 2,
                                                reason: "item id 'x\\u{9}y' contains a control character, which the history store refuses")) {
            try Self.items("id,title\n\"x\ty\",T\n")
        }
        let long = String(repeating: "i", count: 257)
        #expect(throws: DataFileError.malformed(path: "m.csv", line: 2, reason: "item id '\(String(repeating: "i", count: 40))…' "
                                                + "is 257 bytes long; the history store takes at most 256")) {
            try Self.items("id,title\n\(long),T\n")
        }
        // What palr refuses in a pack, palr-convert refuses in the items file: bidirectional
        // controls and whitespace-only ids (it wrote them, and palr then refused the pack).
        #expect(throws: DataFileError.malformed(path: "m.csv", line: 3, reason: "item id 'a\\u{202E}b' contains a "
                                                + "bidirectional control character, which the history store refuses")) {
            try Self.items("id,title\n1,T\na\u{202E}b,T\n")
        }
        #expect(throws: DataFileError.malformed(path: "m.csv", line: 2, reason: "item id ' ' is only whitespace, which the history store refuses")) {
            try Self.items("id,title\n\" \",T\n")
        }
        #expect(try Self.items("id,title\n1,\"a\u{2028}b\"\n").titles == ["a b"])
    }
}
