import Foundation
import Testing

/// palr-convert prints every error with terminal controls escaped (a checkpoint folder
/// or output path with an escape sequence or a newline in it).
@Suite struct ConvertTerminalSafeErrorTests {
    @Test func aRunErrorNamingAHostilePathIsOneEscapedLine() throws {
        let dir = NSTemporaryDirectory() + "palr-escape-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard let r = try runPalrConvert(["hf", "ckpt\u{1B}]0;t\u{7}\nx", "-o", "out.gguf"], in: dir) else { return }
        #expect(r.status == 1)
        #expect(!r.err.contains("\u{1B}") && !r.err.contains("\u{7}"), "raw controls in: \(r.err.debugDescription)")
        #expect(r.err.split(separator: "\n").count == 1, "\(r.err.debugDescription)")
        #expect(r.err.contains("ckpt\\u{1B}]0;t\\u{7}\\u{A}x"), "\(r.err.debugDescription)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out.gguf"))
    }
}
