import FileSafety
import Testing

@Suite struct MessageTextTests {
    @Test func controlsFormatCharactersAndSeparatorsAreEscapedOthersKept() {
        #expect(oneLine("a\u{1B}[31mb\nc\u{9B}d\u{202E}e\u{2028}f") == "a\\u{1B}[31mb\\u{A}c\\u{9B}d\\u{202E}e\\u{2028}f")
        // Letters, marks, emoji and plain punctuation are shown as they are.
        let shown = "Amélie (2001) — 東京物語 «x» \u{1F3AC}\u{FE0F} e\u{301}"
        #expect(oneLine(shown) == shown)
        #expect(oneLine(oneLine("\u{7}\u{0}")) == "\\u{7}\\u{0}")   // idempotent
        #expect(actsOnTerminal("\u{7F}") && actsOnTerminal("\u{200B}") && !actsOnTerminal("~") && !actsOnTerminal(" "))
    }

    @Test func terminalLinesKeepsLineBreaksAndEscapesTheRest() {
        #expect(terminalLines("Error: x\u{1B}]0;t\u{7}\nUsage: y\r\n") == "Error: x\\u{1B}]0;t\\u{7}\nUsage: y\\u{D}\n")
        #expect(terminalLines("") == "")
    }
}
