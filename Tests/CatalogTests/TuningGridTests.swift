// `palr eval --grid` text: key=value/value/… pairs around a method's defaults.
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
