// `palr eval --grid` text: key=value/value/… pairs around a method's defaults.
import Foundation
import Testing
@testable import Catalog

@Suite struct TuningGridTests {
    static let base = RetrieverConfiguration.defaults(for: .combined)

    static func failure(_ text: String) -> String? {
        do {
            _ = try TuningGrid.parse(text, base: base)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func aGridIsTheProductOfItsValues() throws {
        let grid = try TuningGrid.parse("window=5/ 10 /20, cooc_weight = 0.1/0.3,recency_decay=0.8/0.9", base: Self.base)
        #expect(grid.builds.count == 6 && grid.retrieval.count == 2 && grid.size == 12)
        #expect(Set(grid.builds.map(\.window)) == [5, 10, 20])
        #expect(Set(grid.retrieval.map(\.recencyDecay)) == [0.8, 0.9])
    }

    @Test func malformedUnknownAndRepeatedKeysAreErrors() {
        #expect(Self.failure("window") != nil)
        #expect(Self.failure("window=5/x") != nil)
        #expect(Self.failure("no_such_key=1") != nil)
        for text in ["window=5,window=10", "window=5/10, window=20", " window = 5,window=6"] {
            let repeated = Self.failure(text)
            #expect(repeated?.contains("'window' is given twice") == true, "\(text): \(repeated ?? "no error")")
        }
    }
}

/// Empty grids and empty pieces, and `apply`'s repeated keys: errors, not skipped.
@Suite struct GridAndParameterEdgeTests {
    @Test func emptyPiecesAreErrors() {
        for text in ["", "  ", "window=5//6", "window=5,,recency_decay=0.8", "window=5/", "window=5,"] {
            #expect(TuningGridTests.failure(text) != nil, "'\(text)' was accepted")
        }
    }

    @Test func applyRefusesRepeatedKeysAndEmptyText() {
        var c = RetrieverConfiguration.defaults(for: .seq)
        #expect(throws: NeighbourError.self) { try c.apply("history_length=5,history_length=6") }
        #expect(throws: NeighbourError.self) { try c.apply("") }
        #expect(throws: NeighbourError.self) { try c.apply("history_length=5,") }
        #expect(throws: Never.self) { try c.apply("history_length=5, recency_decay=0.8") }
        #expect(c.retrieval.historyLength == 5 && c.retrieval.recencyDecay == 0.8)
    }
}

/// A CSV without a time column keeps file order and says so (`hasTimes`), which `palr
/// eval` refuses (file order can leak the held-out item); a stray CR after the header's
/// last name does not hide the column.
@Suite struct TimeColumnTests {
    func read(_ text: String) throws -> InteractionLog {
        let path = NSTemporaryDirectory() + "palr-times-\(getpid())-\(text.hashValue).csv"
        defer { unlink(path) }
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return try DataFiles.readInteractions(path: path)
    }

    @Test func aMissingTimeColumnIsReported() throws {
        let none = try read("userId,movieId,rating,created_at\n1,10,4,5\n1,11,3,2\n")
        #expect(!none.hasTimes)
        let cr = try read("userId,movieId,rating,timestamp\r\r\n1,10,4,5\n1,11,3,2\n")
        #expect(cr.hasTimes && cr.times == [5, 2])
        let plain = try read("userId,movieId,rating,timestamp\n1,10,4,5\n")
        #expect(plain.hasTimes)
    }
}
