// The one rule for names the history store keeps, which History, Catalog and Ranker share.
import FileSafety
import Testing

@Suite struct StoredNamesTests {
    /// The fast control check is exactly Unicode's general category Cc, over every scalar.
    @Test func isControlIsCategoryCc() {
        var differing: [UInt32] = []
        for value in UInt32(0)..<0x110000 {
            guard let scalar = Unicode.Scalar(value) else { continue }
            if StoredNames.isControl(scalar) != (scalar.properties.generalCategory == .control) { differing.append(value) }
        }
        #expect(differing.isEmpty, "differ at \(differing.prefix(10))")
    }

    /// Each problem, through the ASCII fast path and the Unicode path alike.
    @Test func problemsInOrder() {
        let cases: [(String, StoredNames.Problem?)] = [
            ("", .empty), ("m1", nil), ("Amélie (2001)", nil),
            (String(repeating: "é", count: 129), .tooLong(bytes: 258)), (String(repeating: "x", count: 256), nil),
            ("a\tb", .controlCharacter), ("a\u{85}b", .controlCharacter), ("é\u{7F}", .controlCharacter),
            ("a\u{202E}b", .bidirectionalControl), ("a\u{2067}", .bidirectionalControl), ("a\u{200F}b", nil),
            ("   ", .onlyWhitespace), ("\u{A0}\u{3000}", .onlyWhitespace), (" x ", nil),
        ]
        for (name, expected) in cases {
            #expect(StoredNames.problem(name) == expected, "\(name.debugDescription)")
        }
        #expect(StoredNames.replacingRefused("a\tb\u{202E}c") == "a\u{FFFD}b\u{FFFD}c")
        #expect(StoredNames.replacingRefused("plain.gguf") == "plain.gguf")
    }
}
