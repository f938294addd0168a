import Foundation
import GGUF
import Testing
@testable import Catalog

/// Packs the command-level fuzzer (`tools/fuzz`) found mishandled, each reduced to a test.
@Suite struct FuzzFoundPackTests {
    /// general.architecture "\u{1}\u{1B}[31m" went into "not a catalog pack: …" raw: a
    /// terminal escape in `palr retrieve`'s error; a newline split it over two lines.
    @Test func aHostileArchitectureStaysOnOneLine() throws {
        let error = try PackTests.openSpoiled { m, _ in
            PackTests.setMeta(&m, "general.architecture", .string("\u{1}\u{1B}[31m\nx"))
        }
        let message = try #require(error).description
        #expect(message.contains("'\\u{1}\\u{1B}[31m\\u{A}x'"), "\(message)")
        #expect(!message.unicodeScalars.contains { $0.properties.generalCategory == .control }, "\(message)")
    }
}
