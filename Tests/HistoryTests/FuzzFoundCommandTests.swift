// Command-level findings of the fuzzer (`tools/fuzz`), end to end through `palr`: the
// library side of its findings is in RankerTests/FuzzFoundTests and CatalogTests/FuzzFoundPackTests.

import Foundation
import Testing

@Suite struct FuzzFoundCommandTests {
    static let models = repositoryRoot.appendingPathComponent("models")

    /// The bundled model with its last tensor, output_norm.weight (128 F32 values, the
    /// file's last 512 bytes), all NaN: it loads, and every logit it computes is NaN.
    static func damagedModel(in folder: String, name: String) throws -> String {
        var bytes = try Data(contentsOf: models.appendingPathComponent("palr-ml-small-q4_0.gguf"))
        let nan = [Float](repeating: .nan, count: 128).withUnsafeBytes { Data($0) }
        bytes.replaceSubrange(bytes.count - nan.count..<bytes.count, with: nan)
        let path = folder + "/" + name
        try bytes.write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A model whose logits are NaN stopped `recommend` and `demo` with "Error: the model's
    /// score for candidate 1 is nan: …", naming no file (every load error names it). The
    /// errors a model causes while ranking name it now.
    @Test func aRankingErrorTheModelCausedNamesTheModel() throws {
        try withTemporaryDirectory { folder in
            let model = try Self.damagedModel(in: folder, name: "damaged.gguf")
            let catalog = Self.models.appendingPathComponent("ml-small-catalog.gguf").path
            let history = Self.models.appendingPathComponent("demo-history.csv").path
            let db = folder + "/h.sqlite"
            let imported = try runPalr(["history", "--db", db, "import", "--format", "movielens-csv", history])
            #expect(imported.status == 0, "\(imported)")
            let r = try runPalr(["recommend", "--model", model, "--catalog", catalog, "--db", db, "--profile", "129", "-t", "1"])
            #expect(r.status == 1 && r.error.contains("Error: \(model): the model's score for candidate"), "\(r)")

            // The demo reads its folder's files under their bundled names.
            let demo = folder + "/demo"
            try FileManager.default.createDirectory(atPath: demo, withIntermediateDirectories: true)
            _ = try Self.damagedModel(in: demo, name: "palr-ml-small-q4_0.gguf")
            try FileManager.default.createSymbolicLink(atPath: demo + "/ml-small-catalog.gguf", withDestinationPath: catalog)
            try FileManager.default.createSymbolicLink(atPath: demo + "/demo-history.csv", withDestinationPath: history)
            let d = try runPalr(["demo", "--models", demo, "-t", "1"])
            #expect(d.status == 1 && d.error.contains("palr-ml-small-q4_0.gguf: the model's score for candidate"), "\(d)")
        }
    }

    /// llama.context_length = 1: `generate` said "the prompt has 2 tokens; the model's
    /// context is 1" without naming the model.
    @Test func generateNamesTheModelWhoseContextIsTooShort() throws {
        try withTemporaryDirectory { folder in
            var bytes = try Data(contentsOf: Self.models.appendingPathComponent("palr-ml-small-q4_0.gguf"))
            let key = Data("llama.context_length".utf8)
            let at = try #require(bytes.range(of: key)).upperBound
            #expect(bytes[at] == 4, "a uint32 value (GGUF type 4)")
            bytes.replaceSubrange(at + 4..<at + 8, with: Data([1, 0, 0, 0]))
            let model = folder + "/short.gguf"
            try bytes.write(to: URL(fileURLWithPath: model))
            let r = try runPalr(["generate", "--model", model, "--prompt", "Toy", "-n", "2"])
            #expect(r.status == 1 && r.error.contains("Error: \(model): the prompt has"), "\(r)")
        }
    }
}
