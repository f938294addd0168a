import Testing
@testable import GGUF

@Suite struct ValueDescriptionTests {
    /// `palr info` prints one metadata value per line: control characters in strings
    /// (LLaMA-style vocabularies hold "\n" pieces) must not break the line.
    @Test func stringsStayOnOneLine() {
        #expect(GGUFValue.string("\n-").description == #""\n-""#)
        #expect(GGUFValue.string("a\tb\r\u{1}\"\\").description == #""a\tb\r\u{1}\"\\""#)
        let array = GGUFValue.array(.string, [.string("<s>"), .string("\n("), .string("x")])
        #expect(!array.description.contains("\n"), "\(array.description)")
        #expect(GGUFValue.string(String(repeating: "é", count: 80)).description.hasSuffix("...\""))
    }
}
