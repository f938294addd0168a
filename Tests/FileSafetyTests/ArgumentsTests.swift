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
