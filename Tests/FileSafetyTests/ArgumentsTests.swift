import Testing
@testable import FileSafety

/// `--name=` with no value: the argument parser would take the next argument as the value.
@Suite struct ArgumentsTests {
    @Test func anEmptyInlineValueIsFoundBeforeTheEndOfOptions() {
        #expect(Arguments.firstEmptyInlineValue(["add", "--kind=", "m1", "m2"]) == "--kind=")
        #expect(Arguments.firstEmptyInlineValue(["--time=", "5"]) == "--time=")
        // A value, even one ending in '=', and anything after `--` are fine.
        #expect(Arguments.firstEmptyInlineValue(["--kind=view", "--params=a=", "--", "--kind="]) == nil)
        #expect(Arguments.firstEmptyInlineValue(["--", "--x="]) == nil)
        #expect(Arguments.firstEmptyInlineValue(["-k=", "--=", "x="]) == nil)
    }
}

@Suite struct ExcerptTests {
    @Test func anExcerptIsCutByScalars() {
        #expect(excerpt("short") == "short")
        #expect(excerpt(String(repeating: "x", count: 300)) == String(repeating: "x", count: 200) + "…")
        // One character of a million scalars is cut too.
        let combining = "e" + String(repeating: "\u{301}", count: 1_000_000)
        #expect(excerpt(combining, limit: 40).unicodeScalars.count == 41)
    }
}
