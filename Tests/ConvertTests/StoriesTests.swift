import Foundation
import GGUF
import Llama
import Testing
@testable import Convert

/// stories260K-hf (a real trained model, ../shared) against transformers' reference_logits.json.
struct StoriesReference: Decodable {
    struct Greedy: Decodable {
        let new_ids: [Int32]
    }
    let input_ids: [Int32]
    let logits: [[Float]]
    let greedy_from_bos: Greedy

    static func load() throws -> StoriesReference {
        let data = try Data(contentsOf: URL(fileURLWithPath: storiesDir + "/reference_logits.json"))
        return try JSONDecoder().decode(StoriesReference.self, from: data)
    }
}

/// The `palr` executable the test build produced, beside the test bundle.
func palrExecutable() -> String? {
    let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    for candidate in [bundleDir.appendingPathComponent("palr").path, repoRoot.appendingPathComponent(".build/debug/palr").path]
    where FileManager.default.isExecutableFile(atPath: candidate) {
        return candidate
    }
    return nil
}

@Suite(.enabled(if: FileManager.default.fileExists(atPath: storiesDir), "needs ../shared/models/stories260K-hf"))
struct StoriesTests {
    @Test func f32MatchesTransformersAndGreedyText() throws {
        let tmp = try TempDir()
        defer { tmp.cleanUp() }
        let path = try convert(storiesDir, to: tmp.file("stories-f32.gguf"), type: .f32)
        let ref = try StoriesReference.load()
        let model = try LlamaModel(path: path)
        let worst = maxAbsDiff(try prefillLogits(model, ref.input_ids), ref.logits)
        print("stories260K F32 vs transformers: max |Δ| = \(worst)")
        #expect(worst <= 1e-4)

        let ids = try greedy(model, n: 200)
        #expect(ids == ref.greedy_from_bos.new_ids)

        // The acceptance check, end to end: `palr generate` prints exactly llama2.c's text.
        guard let palr = palrExecutable() else {
            Issue.record("the palr executable was not built; cannot run `palr generate`")
            return
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: palr)
        p.arguments = ["generate", "--model", path, "-n", "200", "--temp", "0"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let expected = try Data(contentsOf: URL(fileURLWithPath: storiesDir + "/expected_greedy_t0_n200.txt"))
        #expect(p.terminationStatus == 0)
        #expect(out == expected, "palr generate printed:\n\(String(decoding: out, as: UTF8.self))")
    }

    @Test func q4_0FallsBackForRowsOf172AndRuns() throws {
        let tmp = try TempDir()
        defer { tmp.cleanUp() }
        let path = try convert(storiesDir, to: tmp.file("stories-q4_0.gguf"), type: .q4_0)
        let file = try GGUFFile(path: path)
        #expect(file.tensor(named: "blk.0.ffn_down.weight")?.type == .f16)      // rows of 172
        #expect(file.tensor(named: "blk.0.ffn_up.weight")?.type == .q4_0)
        #expect(file.tensor(named: "token_embd.weight")?.type == .q8_0)         // tied: it is the output
        #expect(file.tensor(named: "blk.0.attn_norm.weight")?.type == .f32)
        #expect(file["general.file_type"]?.int == 2)

        let ref = try StoriesReference.load()
        let model = try LlamaModel(gguf: file)
        let worst = maxAbsDiff(try prefillLogits(model, ref.input_ids), ref.logits)
        let ids = try greedy(model, n: 200)
        let expected = ref.greedy_from_bos.new_ids
        let departs = ids.indices.first(where: { ids[$0] != expected[$0] }) ?? ids.count
        print("stories260K Q4_0: logits max |Δ| vs F32 transformers = \(worst); greedy ids agree for the first \(departs) of 200 tokens")
        #expect(worst < 6)          // 4-bit weights of a 260K model: large, but not garbage
        #expect(departs >= 10)
        #expect(ids.allSatisfy { $0 >= 0 && $0 < 512 })
    }
}
