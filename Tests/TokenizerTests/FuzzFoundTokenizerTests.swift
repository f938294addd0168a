import Foundation
import Testing
@testable import Tokenizer

// Findings of the differential tokenizer fuzzer (tools/fuzz/tokenizer/fuzz.py: palr against
// the Python `sentencepiece` library). Expected ids are sentencepiece 0.2.3's `encode(text)`.

@Suite struct FuzzFoundTokenizerTests {
    /// `palr tokenize --jsonl` read a U+FEFF that opens a JSON string's text (written raw,
    /// not as "\ufeff") as if it were not there: Foundation's JSONSerialization drops it, so
    /// "\u{FEFF}H" came out as the ids of "H". The tokenizer itself was right.
    @Test func jsonLinesKeepAByteOrderMarkThatOpensAString() throws {
        let model = Paths.repoRoot.appendingPathComponent("models/palr-ml-small-q4_0.gguf").path
        let llama2 = try Paths.model("llama2")
        // Raw U+FEFF as UTF-8 (EF BB BF) right after the quote; then the same escaped.
        let input = Data("\"\u{FEFF}H\"\n\"\u{FEFF}\"\n\"\\ufeffH\"\n\"a\u{FEFF}b\"\n".utf8)
        let bundled = try runPalr(["tokenize", "--model", model, "--jsonl", "--no-bos"], input: input)
        #expect(bundled.status == 0, "\(bundled.error)")
        #expect(bundled.output == "[7876,244,192,196,7903]\n[7876,244,192,196]\n[7876,244,192,196,7903]\n"
                                + "[412,244,192,196,7922]\n")
        let llama = try runPalr(["tokenize", "--model", llama2, "--jsonl", "--no-bos"], input: input)
        #expect(llama.status == 0, "\(llama.error)")
        #expect(llama.output == "[29871,30143,29950]\n[29871,30143]\n[29871,30143,29950]\n[263,30143,29890]\n")
        #expect(try Tokenizers.named("llama2").encode("\u{FEFF}H", addBOS: false) == [29871, 30143, 29950])
    }
}

/// Runs the `palr` executable built beside the test bundle ($PALR_BIN overrides) with
/// `input` on standard input.
private func runPalr(_ arguments: [String], input: Data) throws -> (status: Int32, output: String, error: String) {
    let executable: String
    if let path = ProcessInfo.processInfo.environment["PALR_BIN"] {
        executable = path
    } else {
        let testBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let candidates = [testBinary.deletingLastPathComponent().appendingPathComponent("palr").path,
                          Paths.repoRoot.appendingPathComponent(".build/debug/palr").path]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestSetupError("the palr executable was not found (tried \(candidates.joined(separator: ", "))); "
                                 + "build it with `swift build` or set PALR_BIN")
        }
        executable = found
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    stdin.fileHandleForWriting.write(input)
    try stdin.fileHandleForWriting.close()
    // Small outputs: reading one pipe to its end cannot block the other.
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    let error = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: error, as: UTF8.self))
}
