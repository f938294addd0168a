import Foundation
import GGUF
import Testing
import Tokenizer
@testable import Convert

@Suite struct ParsingTests {
    /// The converted file's tokenizer keys load back as the same vocabulary as tokenizer.model
    /// (the Tokenizer module's own tests check it against sentencepiece and llama.cpp).
    @Test func tokenizerKeysRoundTrip() throws {
        let tmp = try TempDir()
        defer { tmp.cleanUp() }
        let f = try GGUFFile(path: try convert(fixture("tiny-sharded"), to: tmp.file("t.gguf"), type: .q8_0))
        let back = try SentencePieceTokenizer(gguf: f).vocabulary
        let source = try SentencePieceTokenizer(modelFile: fixture("tiny-sharded") + "/tokenizer.model").vocabulary
        #expect(back.pieces == source.pieces)
        #expect(back.scores == source.scores)
        #expect(back.types == source.types)
        #expect(back.bos == source.bos && back.eos == source.eos && back.pad == source.pad)
        #expect(back.addDummyPrefix == source.addDummyPrefix && back.removeExtraWhitespaces == source.removeExtraWhitespaces)
        #expect(back.addBOS == source.addBOS && back.addEOS == source.addEOS && back.byteFallback == source.byteFallback)
        // (unknownSurface is not compared: no GGUF key carries it, in llama.cpp either.)
        #expect(f["tokenizer.ggml.model"]?.string == "llama" && f["tokenizer.ggml.bos_token_id"]?.int == 1)
    }

    @Test func tokenizerProblems() throws {
        // A vocabulary smaller than the embedding is padded as llama.cpp pads it.
        let small = try TempDir()
        defer { small.cleanUp() }
        try small.copy(from: fixture("tiny-f32"))
        let config = URL(fileURLWithPath: small.file("config.json"))
        var c = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
        c["vocab_size"] = 520
        try JSONSerialization.data(withJSONObject: c).write(to: config)
        try rewriteSafetensors(small.file("model.safetensors")) { t in
            for i in t.indices where t[i].1 == [512, 64] {
                t[i].1 = [520, 64]
                t[i].2 += [Float](repeating: 0.01, count: 8 * 64)
            }
        }
        let f = try GGUFFile(path: try convert(small.path, to: small.file("p.gguf")))
        #expect(f["tokenizer.ggml.tokens"]?.stringArray?.suffix(2) == ["[PAD518]", "[PAD519]"])
        #expect(f["tokenizer.ggml.token_type"]?.intArray?.last == 5)

        // A broken tokenizer.model is an error naming it, and so is a missing one.
        try Data([0x0A, 0x05, 0x0A, 0x01]).write(to: URL(fileURLWithPath: small.file("tokenizer.model")))
        #expect(throws: ConvertError.self) { try ConversionPlan(directory: small.path, options: ConvertOptions()) }
        try FileManager.default.removeItem(atPath: small.file("tokenizer.model"))
        #expect(throws: ConvertError.self) { try ConversionPlan(directory: small.path, options: ConvertOptions()) }
        var o = ConvertOptions()
        o.includeTokenizer = false
        #expect(try ConversionPlan(directory: small.path, options: o).metadata.allSatisfy { !$0.0.hasPrefix("tokenizer.") })
    }

    @Test func bothRopeStylesReadTheSame() throws {
        let old = try HFConfig(directory: fixture("tiny-f32"))
        let new = try HFConfig(directory: fixture("tiny-bf16"))
        #expect(old == new)
        #expect(old.ropeScaling == .linear(factor: 2) && old.ropeTheta == 10000 && old.headDim == 16)
        let c = try HFConfig(json: JSON.parse("""
            {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 1,
             "num_attention_heads": 4, "vocab_size": 10, "rope_scaling": {"type": "linear", "factor": 1.0}}
            """), path: "c.json")
        #expect(c.kvHeadCount == 4 && c.rmsNormEps == 1e-6 && c.contextLength == 2048 && !c.tiedEmbeddings && c.ropeScaling == .none)
    }

    @Test func configErrorsNameTheKey() throws {
        func error(_ text: String) -> String {
            do { _ = try HFConfig(json: JSON.parse(text), path: "c.json"); return "no error" } catch { return "\(error)" }
        }
        let base = "\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 1, \"vocab_size\": 10"
        #expect(error("{\(base)}").contains("'num_attention_heads' is missing"))
        #expect(error("{\(base), \"num_attention_heads\": 4, \"num_key_value_heads\": 3}").contains("num_key_value_heads"))
        #expect(error("{\(base), \"num_attention_heads\": 4, \"attention_bias\": 1}").contains("'attention_bias' is 1, not true or false"))
        #expect(error("{\(base), \"num_attention_heads\": 4, \"rope_theta\": 10000, \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000}}")
            .contains("rope_parameters.rope_theta"))
        #expect(error("{\(base), \"num_attention_heads\": 4, \"rope_scaling\": {\"type\": \"linear\"}}").contains("rope_scaling.factor"))
        #expect(error("{\"hidden_size\": 64}").contains("model_type"))
    }

    @Test func settingsFileAndValidation() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        try Data("{\"scoring_mode\": \"generate\", \"max_history\": 5, \"prompt_template\": \"T\"}".utf8)
            .write(to: URL(fileURLWithPath: d.file("p.json")))
        let s = try PalrSettings(jsonFile: d.file("p.json"))
        #expect(s.scoringMode == .generate && s.maxHistory == 5 && s.maxCandidates == 20 && s.promptTemplate == "T")
        #expect(s.profileTemplate == nil && !s.ggufMetadata.contains { $0.0 == "palr.profile_template" })
        try Data("{\"profile_template\": \"Seen:\\n{history}Tastes:\"}".utf8).write(to: URL(fileURLWithPath: d.file("pt.json")))
        let pt = try PalrSettings(jsonFile: d.file("pt.json"))
        try pt.validate()
        #expect(pt.ggufMetadata.contains { $0.0 == "palr.profile_template" && $0.1 == .string("Seen:\n{history}Tastes:") })
        var noHistory = pt
        noHistory.profileTemplate = "Tastes:"
        #expect(throws: ConvertError.self) { try noHistory.validate() }
        try Data("{\"max_histroy\": 5}".utf8).write(to: URL(fileURLWithPath: d.file("typo.json")))
        #expect(throws: ConvertError.self) { try PalrSettings(jsonFile: d.file("typo.json")) }
        #expect(throws: ConvertError.self) { try PalrSettings.mode("ranked") }
        // history_step: written only when not 1, and at most max_history.
        try Data("{\"max_history\": 10, \"history_step\": 5}".utf8).write(to: URL(fileURLWithPath: d.file("step.json")))
        var step = try PalrSettings(jsonFile: d.file("step.json"))
        try step.validate()
        #expect(step.ggufMetadata.contains { $0.0 == "palr.history_step" && $0.1 == .uint32(5) })
        #expect(!PalrSettings().ggufMetadata.contains { $0.0 == "palr.history_step" })
        for bad in [0, 11] {
            step.historyStep = bad
            #expect { try step.validate() } throws: { "\($0)".contains("palr.history_step") && "\($0)".contains("1…10") }
        }
        var t = PalrSettings()
        t.maxCandidates = 20
        try t.validate()   // letters mode: labels A…T, as the runtime has
        t.maxCandidates = 21
        #expect(throws: ConvertError.self) { try t.validate() }
        // A prompt template must hold what the runtime fills for its mode (else the model
        // would convert, then be refused at load).
        var p = PalrSettings()
        p.promptTemplate = "Pick one:\n{candidates}Answer: ("
        #expect(throws: ConvertError.self) { try p.validate() }
        p.promptTemplate = "Seen:\n{history}Answer: ("
        #expect(throws: ConvertError.self) { try p.validate() }
        p.promptTemplate = "Seen:\n{history}Options:\n{candidates}Answer: ("
        try p.validate()
        p.scoringMode = .likelihood
        p.promptTemplate = "Seen:\n{history}Next:"
        try p.validate()
        t.scoringMode = .likelihood
        try t.validate()
        // The retrieval prior: a number from the file, refused when negative or not finite.
        try Data("{\"retrieval_prior\": 2.5}".utf8).write(to: URL(fileURLWithPath: d.file("prior.json")))
        #expect(try PalrSettings(jsonFile: d.file("prior.json")).retrievalPrior == 2.5)
        try Data("{\"retrieval_prior\": \"high\"}".utf8).write(to: URL(fileURLWithPath: d.file("bad.json")))
        #expect(throws: ConvertError.self) { try PalrSettings(jsonFile: d.file("bad.json")) }
        for bad in [-1.0, .infinity, .nan] {
            t.retrievalPrior = bad
            #expect(throws: ConvertError.self) { try t.validate() }
        }
    }

    @Test func jsonReader() throws {
        let j = try JSON.parse(#"{"b": 1, "a": [true, null, -2.5e3, "x\u00e9\ud83d\ude00"], "b": 2}"#)
        #expect(j.object?.map(\.0) == ["b", "a", "b"])
        #expect(j["b"]?.int == 2)
        #expect(j["a"]?.array?[0] == .bool(true) && j["a"]?.array?[0].int == nil)
        #expect(j["a"]?.array?[2].double == -2500)
        #expect(j["a"]?.array?[3].string == "xé😀")
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01x", "\"\u{01}\"", "[1] 2", "tru"] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSON.parse(bad) }
        }
    }

    @Test func permutationMatchesLlamaCpp() {
        // rows = heads × head_dim; llama.cpp: reshape(n, 2, hd/2, cols).swapaxes(1, 2).
        let heads = 2, hd = 6
        let src = (0..<(heads * hd)).map { LlamaNames.permutedSourceRow($0, rows: heads * hd, heads: heads) }
        #expect(src == [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11])
    }
}
