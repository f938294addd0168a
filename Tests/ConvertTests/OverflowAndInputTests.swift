import CKernels
import Foundation
import GGUF
import Testing
@testable import Convert

#if canImport(Glibc)
import Glibc
#endif

/// Range checks of the output types (BF16's Inf boundary, messages naming the option
/// that chose the type), input files that are not regular files, and mistyped flags in
/// adapter and tokenizer settings.
@Suite struct OverflowAndInputTests {
    /// A copy of a fixture folder, edited.
    func variant(of name: String, except: Set<String> = [], edit: (TempDir) throws -> Void = { _ in }) throws -> TempDir {
        let d = try TempDir()
        try d.copy(from: fixture(name), except: except)
        try edit(d)
        return d
    }

    func editJSON(_ path: String, _ change: (inout [String: Any]) -> Void) throws {
        let url = URL(fileURLWithPath: path)
        var c = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]) ?? [:]
        change(&c)
        try JSONSerialization.data(withJSONObject: c).write(to: url)
    }

    /// tiny-f32 with `value` at row 2, column 3 of `tensor`.
    func checkpoint(setting tensor: String, to value: Float) throws -> TempDir {
        try variant(of: "tiny-f32") { d in
            try rewriteSafetensors(d.file("model.safetensors")) { tensors in
                guard let i = tensors.firstIndex(where: { $0.0 == tensor }) else { Issue.record("no \(tensor)"); return }
                tensors[i].2[2 * tensors[i].1[1] + 3] = value
            }
        }
    }

    /// Converts and returns the error (nil when it converted), checking nothing is left
    /// behind on failure.
    func conversionError(_ dir: String, lora: [String] = [], configure: (inout ConvertOptions) -> Void) throws -> ConvertError? {
        let out = try TempDir()
        defer { out.cleanUp() }
        do {
            try convert(dir, to: out.file("out.gguf"), lora: lora, configure: configure)
            return nil
        } catch let e as ConvertError {
            #expect(out.contents.isEmpty, "left behind: \(out.contents)")
            return e
        }
    }

    // MARK: BF16

    /// The boundary from the bit patterns: BF16 keeps the top 16 bits of an fp32, rounded
    /// to nearest even. Its largest finite value is 0x7F7F (fp32 0x7F7F_0000); the fp32
    /// halfway to Inf is 0x7F7F_8000, a tie, which goes to the even pattern 0x7F80 = Inf.
    /// So 0x7F7F_7FFF is the largest fp32 that stays finite and 0x7F7F_8000 the smallest
    /// that does not.
    static let lastFinite = Float(bitPattern: 0x7F7F_7FFF)
    static let firstInf = Float(bitPattern: 0x7F7F_8000)

    @Test func bf16LimitIsTheLastValueThatRoundsToAFiniteBF16() {
        #expect(Converter.limit(.bf16) == Self.lastFinite)
        #expect(palr_fp32_to_bf16(Self.lastFinite) == 0x7F7F)
        #expect(palr_fp32_to_bf16(-Self.lastFinite) == 0xFF7F)
        #expect(palr_fp32_to_bf16(Self.firstInf) == 0x7F80)
        #expect(Self.firstInf == Self.lastFinite.nextUp)
    }

    @Test func bf16KeepsTheLastFiniteValueAndRefusesWhatWouldBeInf() throws {
        let name = "model.layers.0.mlp.up_proj.weight"
        for value in [Self.lastFinite, -Self.lastFinite] {
            let d = try checkpoint(setting: name, to: value)
            defer { d.cleanUp() }
            let out = try TempDir()
            defer { out.cleanUp() }
            try convert(d.path, to: out.file("m.gguf"), type: .bf16)
            let g = try GGUFFile(path: out.file("m.gguf"))
            let t = try #require(g.tensors.first { $0.name == "blk.0.ffn_up.weight" })
            let bits = g.file.bytes.load(fromByteOffset: t.fileOffset + (2 * 64 + 3) * 2, as: UInt16.self)
            #expect(bits == (value > 0 ? 0x7F7F : 0xFF7F))
        }
        for value in [Self.firstInf, -Self.firstInf, Float.greatestFiniteMagnitude] {
            let d = try checkpoint(setting: name, to: value)
            defer { d.cleanUp() }
            let e = try conversionError(d.path) { $0.type = .bf16 }
            guard case .overflow(let t, let type, let v, let by, let remedy) = e else { Issue.record("\(String(describing: e))"); continue }
            #expect(t.contains(name) && type == "BF16" && v == abs(value) && by == "--type bf16" && remedy == "--type f32")
        }
    }

    /// A LoRA merge that pushes a weight past BF16's range (but not fp32's) is refused too,
    /// as a merge result. Base 0x7F7F_0000 (≈ 3.3895e38, a finite BF16) plus a delta of
    /// 1e36 lands between `firstInf` (≈ 3.3962e38) and fp32's largest (≈ 3.4028e38).
    @Test func bf16OverflowAfterAMergeIsRefused() throws {
        let module = "model.layers.1.self_attn.v_proj"
        let a = try variant(of: "lora-basic") { d in
            try rewriteSafetensors(d.file("adapter_model.safetensors")) { t in
                for i in t.indices where t[i].0.hasPrefix("base_model.model.\(module).") {
                    // v_proj is [32, 64] at rank 4: A [4, 64], B [32, 4]. Only A[0][3] and
                    // B[2][0] are set, so the update is scale (8/4) · 1e18 · 5e17 at row 2, column 3.
                    let isA = t[i].0.contains("lora_A")
                    t[i].2 = [Float](repeating: 0, count: t[i].2.count)
                    if isA { t[i].2[3] = 5e17 } else { t[i].2[2 * 4] = 1e18 }
                }
            }
        }
        defer { a.cleanUp() }
        let d = try checkpoint(setting: module + ".weight", to: Float(bitPattern: 0x7F7F_0000))
        defer { d.cleanUp() }
        #expect(try conversionError(d.path) { $0.type = .bf16 } == nil, "the base alone fits BF16")
        let e = try conversionError(d.path, lora: [a.path]) { $0.type = .bf16 }
        guard case .overflow(let t, let type, let v, _, _)? = e else { Issue.record("\(String(describing: e))"); return }
        #expect(t.contains(module) && type == "BF16" && v > Self.lastFinite && v.isFinite)
    }

    // MARK: the option named in overflow errors

    @Test func overflowNamesTheOptionThatChoseTheType() throws {
        let cases: [(String, (inout ConvertOptions) -> Void, String, String)] = [
            ("lm_head.weight", { $0.type = .f32; $0.outputType = .f16 }, "--output-type f16", "--output-type f32"),
            ("lm_head.weight", { $0.type = .f16 }, "--type f16 (which the output projection follows without --output-type)",
             "--output-type f32 or --type f32"),
            ("model.layers.0.self_attn.o_proj.weight", { $0.type = .f16; $0.outputType = .f32 }, "--type f16", "--type f32"),
            ("model.layers.1.mlp.down_proj.weight", { $0.type = .q4_0 },
             "--type q4_0, as F16 because rows of 80 are not a multiple of Q4_0's block of 32", "--type f32"),
        ]
        for (tensor, configure, chosenBy, remedy) in cases {
            let d = try checkpoint(setting: tensor, to: 70_000)
            defer { d.cleanUp() }
            let e = try conversionError(d.path, configure: configure)
            guard case .overflow(let t, _, _, let by, let r)? = e else { Issue.record("\(tensor): \(String(describing: e))"); continue }
            #expect(t.contains(tensor) && by == chosenBy && r == remedy, "\(tensor): \(by) / \(r)")
            let text = e?.description ?? ""
            #expect(text.contains("its type comes from \(chosenBy); choose \(remedy)"), "\(text)")
        }
    }

    /// A tied token_embd takes the output projection's type; the message says so.
    @Test func overflowOfATiedEmbeddingNamesTheOutputType() throws {
        let d = try checkpoint(setting: "model.embed_tokens.weight", to: 1e7)
        defer { d.cleanUp() }
        try editJSON(d.file("config.json")) { $0["tie_word_embeddings"] = true }
        try rewriteSafetensors(d.file("model.safetensors")) { $0.removeAll { $0.0 == "lm_head.weight" } }
        let e = try conversionError(d.path) { $0.type = .f32; $0.outputType = .q8_0 }
        guard case .overflow(let t, let type, _, let by, let remedy)? = e else { Issue.record("\(String(describing: e))"); return }
        #expect(t.contains("token_embd.weight") && type == "Q8_0")
        #expect(by == "--output-type q8_0, as token_embd is tied to the output projection" && remedy == "--output-type f32")
    }

    // MARK: inputs that are not regular files

    /// A FIFO where a checkpoint file belongs is refused at once, named, never read
    /// (a blocking open would wait for a writer forever).
    @Test(arguments: [("tiny-f32", "config.json"), ("tiny-sharded", "model-00002-of-00002.safetensors"), ("tiny-f32", "tokenizer.model"),
                      ("tiny-sharded", "model.safetensors.index.json")])
    func aFIFOInputIsRefusedAtOnce(fixtureName: String, file: String) throws {
        let d = try variant(of: fixtureName, except: [file]) { d in #expect(mkfifo(d.file(file), 0o644) == 0) }
        defer { d.cleanUp() }
        let path = d.file(file)
        // Should an open block after all, open the writing end after a while: the reader
        // then sees end-of-file and the test fails on its time instead of hanging.
        Thread {
            usleep(5_000_000)
            let fd = open(path, O_WRONLY | O_NONBLOCK)
            if fd >= 0 { close(fd) }
        }.start()
        let start = Date()
        let e = try conversionError(d.path) { $0.type = .f32 }
        #expect(Date().timeIntervalSince(start) < 2, "opening the FIFO blocked")
        #expect(e == .cannotRead(path: path, reason: "not a regular file (a FIFO)"), "\(String(describing: e))")
    }

    // MARK: booleans that are not booleans

    @Test(arguments: ["\"true\"", "1", "\"false\""])
    func aNonBooleanUseRsloraIsAnError(value: String) throws {
        let v = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        let a = try variant(of: "lora-basic") { d in try editJSON(d.file("adapter_config.json")) { $0["use_rslora"] = v } }
        defer { a.cleanUp() }
        let cfg = a.file("adapter_config.json")
        let e = try conversionError(fixture("tiny-f32"), lora: [a.path]) { $0.type = .f32 }
        #expect(e == .badConfig(path: cfg, key: "use_rslora", reason: "is \(value), not true or false"), "\(String(describing: e))")
        #expect(e?.description == "\(cfg): 'use_rslora' is \(value), not true or false")
    }

    @Test func rsloraTrueFalseAndNullStillMerge() throws {
        for v: Any in [true, false, NSNull()] {
            let a = try variant(of: "lora-basic") { d in try editJSON(d.file("adapter_config.json")) { $0["use_rslora"] = v } }
            defer { a.cleanUp() }
            let adapter = try LoRAAdapter(directory: a.path, checkpoint: Checkpoint(directory: fixture("tiny-f32")),
                                          config: HFConfig(directory: fixture("tiny-f32")))
            let p = try #require(adapter.patches.values.first)
            // lora-basic: alpha 8, r 4.
            #expect(p.scale == ((v as? Bool) == true ? Float(8 / 2.0) : Float(8 / 4.0)))
        }
    }

    @Test(arguments: [("add_bos_token", "\"true\""), ("add_eos_token", "1"), ("add_bos_token", "[true]")])
    func aNonBooleanTokenizerFlagIsAnError(key: String, value: String) throws {
        let v = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        let d = try variant(of: "tiny-f32") { d in try editJSON(d.file("tokenizer_config.json")) { $0[key] = v } }
        defer { d.cleanUp() }
        let path = d.file("tokenizer_config.json")
        let e = try conversionError(d.path) { $0.type = .f32 }
        #expect(e == .badConfig(path: path, key: key, reason: "is \(value), not true or false"), "\(String(describing: e))")
    }

    @Test func booleanTokenizerFlagsAreWritten() throws {
        let d = try variant(of: "tiny-f32") { d in
            try editJSON(d.file("tokenizer_config.json")) { $0["add_bos_token"] = false; $0["add_eos_token"] = true }
        }
        defer { d.cleanUp() }
        let plan = try ConversionPlan(directory: d.path, options: ConvertOptions())
        let meta = Dictionary(plan.metadata, uniquingKeysWith: { a, _ in a })
        #expect(meta["tokenizer.ggml.add_bos_token"] == .bool(false))
        #expect(meta["tokenizer.ggml.add_eos_token"] == .bool(true))
    }

    // MARK: LoRA on a tied lm_head

    @Test func anAdapterOnATiedLmHeadSaysItIsTied() throws {
        let d = try variant(of: "tiny-f32") { d in
            try editJSON(d.file("config.json")) { $0["tie_word_embeddings"] = true }
            try rewriteSafetensors(d.file("model.safetensors")) { $0.removeAll { $0.0 == "lm_head.weight" } }
        }
        defer { d.cleanUp() }
        let a = try variant(of: "lora-basic") { a in
            try editJSON(a.file("adapter_config.json")) { c in
                c["target_modules"] = ((c["target_modules"] as? [String]) ?? []) + ["lm_head"]
            }
            try rewriteSafetensors(a.file("adapter_model.safetensors")) { t in
                t.append(("base_model.model.lm_head.lora_A.weight", [4, 64], [Float](repeating: 0.01, count: 4 * 64)))
                t.append(("base_model.model.lm_head.lora_B.weight", [512, 4], [Float](repeating: 0.01, count: 512 * 4)))
            }
        }
        defer { a.cleanUp() }
        let e = try conversionError(d.path, lora: [a.path]) { $0.type = .f32 }
        #expect(e == .badAdapter(path: a.path, reason: "it updates lm_head, but the model ties lm_head to embed_tokens"),
                "\(String(describing: e))")
    }

    // MARK: the files a plan reads

    @Test func inputFilesAreWhatThePlanReads() throws {
        let d = try variant(of: "tiny-sharded") { d in
            try "{}".write(toFile: d.file("tokenizer_config.json"), atomically: false, encoding: .utf8)
            try "notes".write(toFile: d.file("README.md"), atomically: false, encoding: .utf8)
        }
        defer { d.cleanUp() }
        var o = ConvertOptions()
        let plan = try ConversionPlan(directory: d.path, options: o)
        let expected = ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                        "model-00002-of-00002.safetensors", "tokenizer.model", "tokenizer_config.json"].map(d.file)
        #expect(Set(plan.inputFiles) == Set(expected), "\(plan.inputFiles)")
        // A single-file checkpoint (lora-basic is an adapter of tiny-f32) with an adapter.
        // tiny-f32 has no tokenizer_config.json, so none is listed; its tokenizer.model is,
        // even when not read.
        o.includeTokenizer = false
        o.loraDirectories = [fixture("lora-basic")]
        let bare = try ConversionPlan(directory: fixture("tiny-f32"), options: o)
        #expect(Set(bare.inputFiles) == Set(["config.json", "model.safetensors", "tokenizer.model"].map { fixture("tiny-f32") + "/" + $0 }
            + ["adapter_config.json", "adapter_model.safetensors"].map { fixture("lora-basic") + "/" + $0 }), "\(bare.inputFiles)")
    }
}
