import Foundation
import Testing
@testable import Catalog

@Suite struct DataFileTests {
    static func interactions(_ text: String, _ format: InteractionFormat, name: String = "f") throws -> InteractionLog {
        try Array(text.utf8).withUnsafeBytes { try DataFiles.parseInteractions($0, name: name, format: format) }
    }

    static func items(_ bytes: [UInt8], _ format: ItemFormat, name: String = "f") throws -> ItemList {
        try bytes.withUnsafeBytes { try DataFiles.parseItems($0, name: name, format: format) }
    }

    @Test func movieLensInteractionFormats() throws {
        let a = try Self.interactions("196\t242\t3\t881250949\n186\t302\t3\t891717742\r\n22\t242\t1\t878887116", .movieLens100K)
        #expect(a.count == 3)
        #expect(a.userIds == ["196", "186", "22"])
        #expect(a.itemIds == ["242", "302"])
        #expect(a.items == [0, 1, 0])
        #expect(a.times == [881250949, 891717742, 878887116])
        let b = try Self.interactions("1::1193::5::978300760\n1::661::3::978302109\n", .movieLens1M)
        #expect(b.itemIds == ["1193", "661"] && b.times == [978300760, 978302109])
        let c = try Self.interactions("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n", .csv(CSVColumns()))
        #expect(c.itemIds == ["1", "3"] && c.times == [964982703, 964981247])
        // A generic CSV with a mapping, no time column: file order is time.
        let d = try Self.interactions("sku,who\nA,u1\nB,u1\n", .csv(try CSVColumns(mapping: "user=who,item=sku")))
        #expect(d.userIds == ["u1"] && d.itemIds == ["A", "B"] && d.times == [0, 1])
    }

    @Test func malformedLinesNameFileLineAndReason() {
        #expect(throws: DataFileError.malformed(path: "u.data", line: 2,
                                                reason: "expected 4 tab-separated fields (user, item, rating, timestamp), found 3")) {
            try Self.interactions("1\t2\t3\t4\n1\t2\t3\n", .movieLens100K, name: "u.data")
        }
        #expect(throws: DataFileError.malformed(path: "r.dat", line: 1, reason: "timestamp 'x9' is not an integer")) {
            try Self.interactions("1::2::3::x9\n", .movieLens1M, name: "r.dat")
        }
        #expect(throws: DataFileError.malformed(path: "r.csv", line: 3, reason: "timestamp 'soon' is not an integer")) {
            try Self.interactions("userId,movieId,rating,timestamp\n1,1,4,5\n1,2,4,soon\n", .csv(CSVColumns()), name: "r.csv")
        }
        #expect(throws: DataFileError.self) { try Self.interactions("a,b,c\n1,2,3\n", .csv(CSVColumns()), name: "x.csv") }
        #expect(throws: DataFileError.malformed(path: "q.csv", line: 2, reason: "a quoted field is never closed")) {
            try Self.interactions("userId,movieId,timestamp\n1,\"2,3\n", .csv(CSVColumns()), name: "q.csv")
        }
        #expect(throws: DataFileError.cannotRead(path: "/nonexistent/u.data", reason: "No such file or directory")) {
            try DataFiles.readInteractions(path: "/nonexistent/u.data")
        }
    }

    @Test func itemFormats() throws {
        // u.item is ISO-8859-1: 0xE9 is é.
        var uitem = Array("1|Toy Story (1995)|01-Jan-1995||http://x|0|1\n2|Caf".utf8)
        uitem += [0xE9] + Array(" (1990)|01-Jan-1990||http://y|0|0\n".utf8)
        let a = try Self.items(uitem, .movieLens100K)
        #expect(a.ids == ["1", "2"] && a.titles == ["Toy Story (1995)", "Café (1990)"])
        let b = try Self.items(Array("1::Toy Story (1995)::Animation\n".utf8) + [0x32, 0x3A, 0x3A, 0xC0] + Array(" nous::Drama\n".utf8), .movieLens1M)
        #expect(b.titles == ["Toy Story (1995)", "À nous"])
        // movies.csv: quoted titles with commas and doubled quotes, UTF-8.
        let csv = "movieId,title,genres\n11,\"American President, The (1995)\",Comedy\n12,\"Dracula: \"\"Dead\"\" (1995)\",Horror\n13,Amélie (2001),Romance\n"
        let c = try Self.items(Array(csv.utf8), .csv(id: nil, title: nil))
        #expect(c.ids == ["11", "12", "13"])
        #expect(c.titles == ["American President, The (1995)", "Dracula: \"Dead\" (1995)", "Amélie (2001)"])
        let g = try Self.items(Array("id,title\nx,\"two\nlines\"\ny,Y\n".utf8), .csv(id: nil, title: nil))
        #expect(g.titles == ["two lines", "Y"])   // a title is one prompt line
    }

    @Test func badItemFiles() {
        #expect(throws: DataFileError.malformed(path: "f", line: 3, reason: "item id '1' already appears on line 1")) {
            try Self.items(Array("1|A|\n2|B|\n1|C|\n".utf8), .movieLens100K)
        }
        #expect(throws: DataFileError.missingColumn(path: "f", role: "title", tried: CSVColumns.knownTitle, header: ["id", "label"])) {
            try Self.items(Array("id,label\n1,A\n".utf8), .csv(id: nil, title: nil))
        }
        #expect(throws: DataFileError.malformed(path: "f", line: 2, reason: "field 2 is not valid UTF-8")) {
            try Self.items(Array("id,title\n1,".utf8) + [0xFF, 0x0A], .csv(id: nil, title: nil))
        }
    }

    @Test func formatDetection() {
        #expect(InteractionFormat.detect(path: "/x/u.data") == .movieLens100K)
        #expect(InteractionFormat.detect(path: "/x/ratings.dat") == .movieLens1M)
        #expect(InteractionFormat.detect(path: "ratings.csv") == .csv(CSVColumns()))
        #expect(InteractionFormat.detect(path: "ratings") == nil)
        #expect(ItemFormat.detect(path: "u.item") == .movieLens100K)
        #expect(ItemFormat.detect(path: "movies.dat") == .movieLens1M)
        #expect(ItemFormat.detect(path: "movies.csv") == .csv(id: nil, title: nil))
    }

    @Test func sequencesOrderByTimeThenFileOrderNeverById() throws {
        // User 1 has items 9 and 3 at the same second, in that file order, and 5 earlier.
        let log = try Self.interactions("1\t9\t5\t100\n2\t3\t5\t50\n1\t3\t5\t100\n1\t5\t5\t10\n", .movieLens100K)
        let ids = ["3", "5", "9"]
        let made = ItemSequences.make(from: log, itemCount: 3) { id in ids.firstIndex(of: id).map(Int32.init) }
        #expect(Array(made.sequences.sequence(0)) == [1, 2, 0])   // 5, then 9, 3 in file order
        #expect(Array(made.sequences.sequence(1)) == [0])
        // Unknown items are left out and counted.
        let partial = ItemSequences.make(from: log, itemCount: 3) { $0 == "9" ? nil : ids.firstIndex(of: $0).map(Int32.init) }
        #expect(partial.skippedInteractions == 1 && partial.unknownItemIds == 1)
        #expect(Array(partial.sequences.sequence(0)) == [1, 0])
    }
}
