import Foundation
import GGUF
import Testing
@testable import Catalog

/// Packs the command-level fuzzer (`tools/fuzz`) found mishandled, each reduced to a test.
@Suite struct FuzzFoundPackTests {
    /// general.architecture "\u{1}\u{1B}[31m" went into "not a catalog pack: …" raw: a
    /// terminal escape in `palr retrieve`'s error; a newline split it over two lines.
    @Test func aHostileArchitectureStaysOnOneLine() throws {
        let error = try PackTests.openSpoiled { m, _ in
            PackTests.setMeta(&m, "general.architecture", .string("\u{1}\u{1B}[31m\nx"))
        }
        let message = try #require(error).description
        #expect(message.contains("'\\u{1}\\u{1B}[31m\\u{A}x'"), "\(message)")
        #expect(!message.unicodeScalars.contains { $0.properties.generalCategory == .control }, "\(message)")
    }

    /// A row naming the same neighbour twice was accepted, and retrieval added its scores
    /// up: repeating an item through a row boosted it above every real neighbour (`palr
    /// retrieve --items 1` on the bundled pack with row 0 all one id scored it 6.3, the next 0).
    @Test func aNeighbourTwiceInARowIsRefused() throws {
        let error = try PackTests.openSpoiled { _, t in t[1].bytes = PackTests.bytes([Int32(1), 1, 0, -1, -1, -1]) }
        #expect(error == .badNeighbour(item: 0, slot: 1, reason: "id 1 appears twice in the row"), "\(String(describing: error))")
        // The same id in two different rows is fine.
        #expect(try PackTests.openSpoiled { _, t in t[1].bytes = PackTests.bytes([Int32(1), 2, 2, -1, 1, -1]) } == nil)
    }
}
