import Foundation
import Testing

/// palr prints every error with terminal controls escaped: a path given on the command
/// line (or quoted from a file) with an escape sequence or a newline in it must not act on
/// the terminal or start a line of its own.
@Suite struct TerminalSafeErrorTests {
    @Test func aRunErrorNamingAHostilePathIsOneEscapedLine() throws {
        let path = "/nonexistent-palr/no\u{1B}[31mred\nsecond\u{1B}]0;title\u{7}"
        let r = try runPalr(["info", "--model", path])
        #expect(r.status == 1)
        #expect(!r.error.contains("\u{1B}") && !r.error.contains("\u{7}"), "raw controls in: \(r.error.debugDescription)")
        let lines = r.error.split(separator: "\n")
        #expect(lines.count == 1, "\(r.error.debugDescription)")
        #expect(r.error.contains("no\\u{1B}[31mred\\u{A}second\\u{1B}]0;title\\u{7}"), "\(r.error.debugDescription)")
    }

    @Test func aUsageErrorKeepsItsLinesAndEscapesTheArgument() throws {
        let r = try runPalr(["tokenize", "--model", "m.gguf", "--no-such-option\u{1B}[2J"])
        #expect(r.status == 64)
        #expect(!r.error.contains("\u{1B}"), "raw escape in: \(r.error.debugDescription)")
        #expect(r.error.contains("--no-such-option\\u{1B}[2J"), "\(r.error.debugDescription)")
        #expect(r.error.split(separator: "\n").contains { $0.hasPrefix("Usage: palr tokenize") }, "\(r.error)")
    }

    @Test func helpStillGoesToStandardOutput() throws {
        let r = try runPalr(["info", "--help"])
        #expect(r.status == 0 && r.error.isEmpty)
        #expect(r.output.contains("USAGE: palr info"))
    }
}
