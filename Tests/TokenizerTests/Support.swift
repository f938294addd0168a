import Foundation
import Testing
@testable import Tokenizer

// Shared helpers of the tokenizer tests: where ../shared and the fixtures are, the
// MovieLens title extraction (the same rules as tools/fixtures/make_tokenizer_fixtures.py),
// and a parity report that prints counts and the first mismatches.

enum Paths {
    /// The repository root: three levels above this file.
    static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let fixtures = repoRoot.appendingPathComponent("Tests/Fixtures/tokenizer")

    /// A path inside `shared/` beside the repository root; throws a clear error when missing.
    static func shared(_ relative: String) throws -> String {
        let root = repoRoot.deletingLastPathComponent().appendingPathComponent("shared")
        let path = root.appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw TestSetupError("\(path) is missing: the tokenizer tests read the models and MovieLens data "
                                 + "from shared/ beside the repository root (\(root.path))")
        }
        return path
    }

    static let llama2Model = "models/llama2-tokenizer/tokenizer.model"
    static let tok512Model = "models/stories260K/tok512.model"
    static let llamaVocabGGUF = "models/llama-spm-vocab-gguf/ggml-vocab-llama-spm.gguf"

    static func model(_ name: String) throws -> String {
        switch name {
        case "llama2": return try shared(llama2Model)
        case "tok512": return try shared(tok512Model)
        case "tiny": return fixtures.appendingPathComponent("tiny.model").path
        default: throw TestSetupError("no model named \(name)")
        }
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A fixture JSON file of Tests/Fixtures/tokenizer.
struct Fixture {
    let json: [String: Any]

    init(_ name: String) throws {
        let url = Paths.fixtures.appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw TestSetupError("fixture \(url.path) is missing (tools/fixtures/make_tokenizer_fixtures.py writes it)")
        }
        guard let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TestSetupError("fixture \(name) is not a JSON object")
        }
        json = obj
    }

    func section(_ key: String) throws -> [String: Any] {
        guard let s = json[key] as? [String: Any] else { throw TestSetupError("fixture has no object '\(key)'") }
        return s
    }

    static func ids(_ section: [String: Any], _ key: String = "ids") throws -> [[Int32]] {
        guard let rows = section[key] as? [[Int]] else { throw TestSetupError("fixture has no id rows '\(key)'") }
        return rows.map { $0.map { Int32($0) } }
    }

    static func strings(_ section: [String: Any], _ key: String) throws -> [String] {
        guard let rows = section[key] as? [String] else { throw TestSetupError("fixture has no strings '\(key)'") }
        return rows
    }
}

enum MovieLens {
    /// Titles of u.item: ISO-8859-1, lines split on "\n", empty lines skipped, field 2 of "|".
    static func uItemTitles() throws -> [String] {
        let path = try Paths.shared("data/ml-100k/u.item")
        guard let data = FileManager.default.contents(atPath: path) else { throw TestSetupError("cannot read \(path)") }
        var titles: [String] = []
        var line: [UInt8] = []
        func finish() {
            guard !line.isEmpty else { return }
            let fields = line.split(separator: UInt8(ascii: "|"), omittingEmptySubsequences: false)
            if fields.count > 1 {
                var s = ""
                for b in fields[1] { s.unicodeScalars.append(Unicode.Scalar(b)) }  // ISO-8859-1
                titles.append(s)
            }
            line.removeAll(keepingCapacity: true)
        }
        for b in data {
            if b == UInt8(ascii: "\n") { finish() } else { line.append(b) }
        }
        finish()
        return titles
    }

    /// Titles of movies.csv: RFC 4180 CSV, header skipped, field 2.
    static func moviesCSVTitles() throws -> [String] {
        let path = try Paths.shared("data/ml-latest-small/movies.csv")
        guard let data = FileManager.default.contents(atPath: path),
              let text = String(data: data, encoding: .utf8) else { throw TestSetupError("cannot read \(path) as UTF-8") }
        return parseCSV(text).dropFirst().compactMap { $0.count > 1 ? $0[1] : nil }
    }

    /// CSV records as Python's csv.reader reads them with the default dialect: a quote opens
    /// a quoted field only at the start of a field, "" inside quotes is a quote, and records
    /// end at "\r\n", "\n" or "\r" outside quotes. Blank lines yield no record.
    static func parseCSV(_ text: String) -> [[String]] {
        var records: [[String]] = []
        var record: [String] = []
        var field = String.UnicodeScalarView()
        var inQuotes = false, atFieldStart = true, recordStarted = false
        let scalars = Array(text.unicodeScalars)
        var i = 0
        func endField() {
            record.append(String(field))
            field = String.UnicodeScalarView()
            atFieldStart = true
        }
        func endRecord() {
            if recordStarted {
                endField()
                records.append(record)
            }
            record = []
            recordStarted = false
        }
        while i < scalars.count {
            let c = scalars[i]
            if c != "\r" && c != "\n" || inQuotes { recordStarted = true }
            if inQuotes {
                if c == "\"" {
                    if i + 1 < scalars.count && scalars[i + 1] == "\"" {
                        field.append("\"")
                        i += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    field.append(c)
                }
            } else if c == "\"" && atFieldStart {
                inQuotes = true
                atFieldStart = false
            } else if c == "," {
                endField()
            } else if c == "\r" || c == "\n" {
                endRecord()
                if c == "\r" && i + 1 < scalars.count && scalars[i + 1] == "\n" { i += 1 }
            } else {
                field.append(c)
                atFieldStart = false
            }
            i += 1
        }
        endRecord()
        return records
    }
}

/// 64-bit FNV-1a of the UTF-8 bytes, as lower-case hex (the fixtures' decoded-text hash).
func fnv1a64(_ s: String) -> String {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    let hex = String(h, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}

/// Counts cases and mismatches of one parity check; prints a summary and the first few.
struct ParityReport {
    let name: String
    private(set) var cases = 0
    private(set) var mismatches: [String] = []

    init(_ name: String) { self.name = name }

    mutating func check<T: Equatable>(_ label: @autoclosure () -> String, expected: T, got: T) {
        cases += 1
        if expected != got { mismatches.append("\(label())\n    expected \(expected)\n    got      \(got)") }
    }

    func finish(sourceLocation: SourceLocation = #_sourceLocation) {
        print("\(name): \(cases) cases, \(mismatches.count) mismatches")
        for m in mismatches.prefix(5) { print("  " + m) }
        #expect(cases > 0, "\(name): no cases", sourceLocation: sourceLocation)
        #expect(mismatches.isEmpty, "\(name): \(mismatches.count) of \(cases) mismatch; first: \(mismatches.first ?? "")",
                sourceLocation: sourceLocation)
    }
}

/// Swift-escaped text for messages (control characters visible, long text cut).
func show(_ s: String) -> String {
    let d = s.debugDescription
    return d.count > 120 ? String(d.prefix(117)) + "…" : d
}

/// Loads the tokenizers once per test run.
enum Tokenizers {
    nonisolated(unsafe) private static var cache: [String: SentencePieceTokenizer] = [:]
    private static let lock = NSLock()

    static func named(_ name: String) throws -> SentencePieceTokenizer {
        lock.lock()
        defer { lock.unlock() }
        if let t = cache[name] { return t }
        let t = try SentencePieceTokenizer.load(path: Paths.model(name))
        cache[name] = t
        return t
    }
}
