import Foundation
import GGUF
import Llama
import Testing
@testable import Convert

/// Hugging Face checkpoints (F32, BF16, sharded F16; both rope key styles; PEFT
/// adapters) converted to F32 GGUF and run by palr, against transformers / PEFT.
@Suite struct RoundTripTests {
    static let cases = FixtureReference.shared.cases.keys.sorted()

    @Test(arguments: cases)
    func f32OutputMatchesTransformers(name: String) throws {
        let c = try #require(FixtureReference.shared.cases[name])
        let tmp = try TempDir()
        defer { tmp.cleanUp() }
        let path = try convert(fixture(c.checkpoint), to: tmp.file("out.gguf"), type: .f32,
                               lora: c.adapters.map(fixture))
        let worst = maxAbsDiff(try prefillLogits(try LlamaModel(path: path), c.tokens), c.logits)
        print("\(name) F32 vs transformers\(c.adapters.isEmpty ? "" : " (PEFT merge_and_unload)"): max |Δ| = \(worst)")
        #expect(worst <= 1e-4)
    }

    @Test func quantizedOutputChoosesTypesAndRuns() throws {
        let tmp = try TempDir()
        defer { tmp.cleanUp() }
        let c = try #require(FixtureReference.shared.cases["tiny-f32+lora-basic"])
        for type in [GGMLType.q4_0, .q8_0, .f16] {
            let path = try convert(fixture("tiny-f32"), to: tmp.file("\(type).gguf"), type: type, lora: [fixture("lora-basic")])
            let f = try GGUFFile(path: path)
            let out: GGMLType = type == .q4_0 ? .q8_0 : type
            #expect(f.tensor(named: "output.weight")?.type == out)
            #expect(f.tensor(named: "token_embd.weight")?.type == type)
            #expect(f.tensor(named: "blk.1.attn_k.weight")?.type == type)
            #expect(f.tensor(named: "blk.1.ffn_down.weight")?.type == .f16)   // rows of 80
            #expect(f.tensor(named: "output_norm.weight")?.type == .f32)
            let worst = maxAbsDiff(try prefillLogits(try LlamaModel(gguf: f), c.tokens), c.logits)
            print("tiny-f32+lora-basic \(type) vs F32 transformers: max |Δ| = \(worst)")
            // A smoke check (logits have a standard deviation of 1.7 here): the exact
            // quantized references are LlamaTests' and the gguf-py byte comparison.
            #expect(worst < (type == .q4_0 ? 8 : type == .q8_0 ? 1 : 0.05))
        }
    }

    @Test func tiedShardedModelHasNoOutputTensorAndKeyLength() throws {
        let tmp = try TempDir()
        defer { tmp.cleanUp() }
        let f = try GGUFFile(path: try convert(fixture("tiny-sharded"), to: tmp.file("s.gguf"), type: .q4_0))
        #expect(f.tensor(named: "output.weight") == nil)
        #expect(f.tensor(named: "token_embd.weight")?.type == .q8_0)
        #expect(f["llama.attention.key_length"]?.int == 24)
        #expect(f["llama.rope.freq_base"]?.double == 500000)
        #expect(f["llama.rope.scaling.type"] == nil)
    }

    @Test func metadataKeys() throws {
        let tmp = try TempDir()
        defer { tmp.cleanUp() }
        let f = try GGUFFile(path: try convert(fixture("tiny-bf16"), to: tmp.file("m.gguf"), type: .q4_0) { o in
            o.settings.scoringMode = .likelihood
            o.settings.maxCandidates = 50
            o.settings.promptTemplate = "History: {history}\nCandidates: {candidates}\n"
            o.name = "tiny"
        })
        #expect(f["general.architecture"]?.string == "llama")
        #expect(f["general.name"]?.string == "tiny")
        #expect(f["llama.rope.scaling.type"]?.string == "linear")
        #expect(f["llama.rope.scaling.factor"]?.double == 2)
        #expect(f["llama.context_length"]?.int == 64)
        #expect(f["llama.attention.key_length"] == nil)
        #expect(f["tokenizer.ggml.tokens"]?.stringArray?.count == 512)
        #expect(f["tokenizer.ggml.add_space_prefix"]?.bool == true)
        #expect(f["palr.scoring_mode"]?.string == "likelihood")
        #expect(f["palr.max_candidates"]?.int == 50)
        #expect(f["palr.max_history"]?.int == 20)
        #expect(f["palr.title_token_limit"]?.int == 32)
        #expect(f["palr.retrieval_prior"]?.double == 0)
        #expect(f["palr.prompt_template"]?.string?.hasPrefix("History:") == true)
    }

    @Test func dryRunPlansEverythingAndWritesNothing() throws {
        var o = ConvertOptions()
        o.loraDirectories = [fixture("lora-patterns")]
        let plan = try ConversionPlan(directory: fixture("tiny-f32"), options: o)
        let lines = plan.describe()
        #expect(lines.contains { $0.contains("blk.1.ffn_down.weight") && $0.contains("F16") && $0.contains("LoRA r=8") })
        #expect(lines.contains { $0.contains("blk.0.attn_q.weight") && $0.contains("LoRA r=2 s=8.0") })
        #expect(lines.contains { $0.contains("blk.0.attn_v.weight") && $0.contains("LoRA r=4 s=1.0") })
        #expect(plan.fallbacks.map(\.plan.name) == ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"])
        // The patterns resolved as PEFT resolves them.
        let byName = Dictionary(uniqueKeysWithValues: plan.jobs.map { ($0.plan.name, $0.patches) })
        #expect(byName["blk.0.ffn_down.weight"]?.first?.rank == 4)
        #expect(byName["blk.1.ffn_down.weight"]?.first?.rank == 8)
        #expect(byName["blk.0.attn_k.weight"]?.isEmpty == true)
    }

    @Test func randomModelsLoadAndRun() throws {
        let tmp = try TempDir()
        defer { tmp.cleanUp() }
        for type in [GGMLType.q4_0, .q8_0, .f16] {
            var o = ConvertOptions()
            o.type = type
            let path = tmp.file("random-\(type).gguf")
            try RandomModel.write(shape: .tiny, options: o, seed: 7, to: path)
            let m = try LlamaModel(path: path)
            #expect(m.config.dim == 256 && m.config.vocabSize == 1024)
            let logits = try prefillLogits(m, [1, 5, 300, 7])
            #expect(logits.allSatisfy { $0.allSatisfy(\.isFinite) })
            #expect(m.gguf["tokenizer.ggml.tokens"]?.stringArray?.count == 1024)
        }
        // Same seed, same bytes.
        var o = ConvertOptions()
        o.threads = 1
        try RandomModel.write(shape: .tiny, options: o, seed: 7, to: tmp.file("again.gguf"))
        #expect(FileManager.default.contents(atPath: tmp.file("again.gguf")) == FileManager.default.contents(atPath: tmp.file("random-Q4_0.gguf")))
    }
}
