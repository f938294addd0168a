import Foundation
import GGUF
import Testing
@testable import Catalog

/// Packs that are valid GGUF with the right keys and shapes, but whose values the rest of
/// palr cannot live with: ids the history store refuses, titles that break a prompt's
/// lines, retrieval settings out of range.
@Suite struct HostilePackTests {
    static func withIDs(_ ids: [String]) -> (inout [(String, GGUFValue)], inout [PackTests.RawTensor]) -> Void {
        { m, _ in PackTests.setMeta(&m, "palr.catalog.item_ids", .array(.string, ids.map { .string($0) })) }
    }

    static func withTitles(_ titles: [String]) -> (inout [(String, GGUFValue)], inout [PackTests.RawTensor]) -> Void {
        { m, _ in PackTests.setMeta(&m, "palr.catalog.item_titles", .array(.string, titles.map { .string($0) })) }
    }

    static func opened(_ spoil: (inout [(String, GGUFValue)], inout [PackTests.RawTensor]) -> Void) throws -> ItemCatalog {
        var (meta, tensors) = PackTests.parts()
        spoil(&meta, &tensors)
        let path = Fixtures.temporaryPath("hostile.gguf")
        defer { unlink(path) }
        try PackTests.write(meta, tensors, to: path)
        return try CatalogPack.open(path: path)
    }

    /// An id the history store refuses could be recommended for ever: `history add` cannot
    /// mark it seen, and no ranking holding it can be cached (`refresh` failed every run).
    @Test func idsTheHistoryStoreRefusesAreNamed() throws {
        let long = String(repeating: "z", count: 257)
        let cases: [(String, String)] = [
            (long, "is 257 bytes long; the history store takes at most 256"),
            ("c\nd", "contains a control character, which the history store refuses"),
            ("a\u{202E}b", "contains a bidirectional control character, which the history store refuses"),
            ("  ", "is only whitespace, which the history store refuses"),
        ]
        for (id, problem) in cases {
            let error = try PackTests.openSpoiled(Self.withIDs(["x", "y", id]))
            guard case .badValue(let key, let reason)? = error else {
                Issue.record("id \(id.debugDescription): expected an error, got \(String(describing: error))")
                continue
            }
            #expect(key == "palr.catalog.item_ids")
            #expect(reason.hasPrefix("item 2 ("), "\(reason)")
            #expect(reason.hasSuffix(problem), "\(reason)")
            #expect(!reason.contains("\n") && !reason.contains("\u{202E}"), "the message stays on one line: \(reason)")
        }
        // 256 bytes is still fine.
        #expect(try Self.opened(Self.withIDs(["x", "y", String(repeating: "z", count: 256)])).count == 3)
    }

    /// Each title is one prompt line: a newline in a title added a fake candidate line to
    /// the letters prompt ("(B) …"), and a blank title won every likelihood ranking.
    @Test func titlesBecomeOneLineAndBlankTitlesAreNamed() throws {
        let c = try Self.opened(Self.withTitles(["Heat (1995)\n(B) Casino (1995)\r\nNext: (A", "Tab\there\u{2028}x", "Plain"]))
        #expect(c.titles == ["Heat (1995) (B) Casino (1995) Next: (A", "Tab here x", "Plain"])
        for blank in ["", "   ", "\n", "\t\r\n"] {
            let error = try PackTests.openSpoiled(Self.withTitles(["X", blank, "Z"]))
            #expect(error == .badValue(key: "palr.catalog.item_titles", reason: "item 1 ('y') has an empty title"),
                    "title \(blank.debugDescription)")
        }
    }
}
