import Foundation
import GGUF
import Testing
@testable import Convert

/// Hostile values in config.json, adapter_config.json and tokenizer.model, written
/// into a temp copy of stories260K-hf (or of a LoRA fixture): each is one error
/// naming the file and key, found while planning (what --dry-run runs), before
/// anything is allocated from the hostile value.
@Suite(.enabled(if: FileManager.default.fileExists(atPath: storiesDir), "needs ../shared/models/stories260K-hf"))
struct HostileConfigTests {
    /// A temp copy of `dir` with `edit` applied.
    func copy(of dir: String = storiesDir, edit: (TempDir) throws -> Void) throws -> TempDir {
        let d = try TempDir()
        try d.copy(from: dir)
        for f in d.contents {   // ../shared is read-only, and so are its copies
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: d.file(f))
        }
        try edit(d)
        return d
    }

    /// Sets top-level keys of a JSON file to raw JSON literals (e.g. "1e300", which
    /// JSONSerialization would not write as such).
    func setJSON(_ path: String, _ raw: [String: String]) throws {
        let url = URL(fileURLWithPath: path)
        var c = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        for k in raw.keys { c[k] = "@@\(k)@@" }
        var text = String(decoding: try JSONSerialization.data(withJSONObject: c), as: UTF8.self)
        for (k, v) in raw { text = text.replacingOccurrences(of: "\"@@\(k)@@\"", with: v) }
        try Data(text.utf8).write(to: url)
    }

    /// The error of planning `dir` (the --dry-run step).
    func planError(_ dir: String, lora: [String] = []) throws -> ConvertError {
        var o = ConvertOptions()
        o.loraDirectories = lora
        do {
            _ = try ConversionPlan(directory: dir, options: o)
        } catch {
            print("error: \(error)")
            return error
        }
        Issue.record("planning \(dir) did not fail")
        throw ConvertError.invalidArgument("no error")
    }

    /// A stories copy with config.json keys set to raw JSON; the planning error must be
    /// badConfig naming config.json, `key` and containing `message`.
    func expectConfigError(_ raw: [String: String], key: String, _ message: String) throws {
        let d = try copy { try setJSON($0.file("config.json"), raw) }
        defer { d.cleanUp() }
        let e = try planError(d.path)
        guard case .badConfig(let p, let k, let why) = e else { Issue.record("\(raw): \(e)"); return }
        #expect(p == d.file("config.json") && k == key && why.contains(message), "\(raw): \(e)")
    }

    // 1. Layer counts: bounded before anything is built, then checked against the checkpoint.
    @Test(arguments: ["1000000000000", "4294967296", "4097", "1e30"])
    func hugeLayerCountFailsFast(value: String) throws {
        try expectConfigError(["num_hidden_layers": value], key: "num_hidden_layers", "more than palr accepts (at most 4096)")
    }

    @Test func layerCountBeyondTheCheckpointNamesConfigJSON() throws {
        // 100000 layers was 338 MB of plan before "missing tensor"; now: the checkpoint has 5.
        try expectConfigError(["num_hidden_layers": "4096"], key: "num_hidden_layers", "the checkpoint has 5 layer(s)")
        try expectConfigError(["num_hidden_layers": "6"], key: "num_hidden_layers", "its last layer is 4")
    }

    @Test(arguments: [("num_attention_heads", "4097"), ("num_key_value_heads", "100000"), ("hidden_size", "1048577"),
                      ("intermediate_size", "1e12"), ("vocab_size", "16777217"), ("head_dim", "2097152")])
    func sizesAreBounded(key: String, value: String) throws {
        try expectConfigError([key: value], key: key, "more than palr accepts")
    }

    // 2. Values written to GGUF as UInt32.
    @Test func contextLengthMustFitUInt32() throws {
        try expectConfigError(["max_position_embeddings": "4294967296"], key: "max_position_embeddings", "at most 4294967295")
        try expectConfigError(["max_position_embeddings": "1e300"], key: "max_position_embeddings", "more than palr accepts")
    }

    @Test func modelMetadataRangeChecksEveryUInt32() throws {
        let c = HFConfig(hiddenSize: 64, intermediateSize: 172, layerCount: 5, headCount: 8, kvHeadCount: 4, headDim: 8,
                         vocabSize: 512, contextLength: Int(UInt32.max) + 1, rmsNormEps: 1e-5, ropeTheta: 1e4,
                         ropeScaling: .none, tiedEmbeddings: true)
        #expect(throws: ConvertError.badConfig(path: "config.json", key: "max_position_embeddings",
                                               reason: "is 4294967296, which does not fit the GGUF's UInt32")) {
            try ConversionPlan.modelMetadata(c, name: "x", type: .f32)
        }
    }

    // 3. Products of sizes cannot overflow.
    @Test(arguments: ["head_dim", "num_attention_heads"])
    func hugeHeadValuesAreErrorsNotTraps(key: String) throws {
        try expectConfigError([key: "4611686018427387904"], key: key, "more than palr accepts")
    }

    // 5. Floats must survive Float32 and be in range.
    @Test(arguments: [("rms_norm_eps", "1e300", "Float32"), ("rms_norm_eps", "1e-50", "Float32"),
                      ("rms_norm_eps", "1", "not below 1"), ("rms_norm_eps", "0", "not a positive number"),
                      ("rope_theta", "1e300", "Float32"), ("rope_theta", "-5", "not a positive number"),
                      ("rope_theta", "1", "greater than 1"), ("rope_theta", "0.001", "greater than 1")])
    func floatsMustBeFiniteFloat32(key: String, value: String, message: String) throws {
        try expectConfigError([key: value], key: key, message)
    }

    @Test func ropeParametersAndScalingFactorAreNamed() throws {
        try expectConfigError(["rope_parameters": #"{"rope_type": "default", "rope_theta": 1e300}"#],
                              key: "rope_parameters.rope_theta", "Float32")
        try expectConfigError(["rope_scaling": #"{"type": "linear", "factor": 1e39}"#], key: "rope_scaling.factor", "Float32")
    }

    // 4. LoRA ranks and alphas (lora-basic fits the tiny-f32 fixture).
    @Test(arguments: [
        (["r": "1e30"], "r", "more than palr accepts"),
        (["r": "0"], "r", "not a positive integer"),
        (["rank_pattern": #"{"q_proj": 1e30}"#], "rank_pattern.q_proj", "more than palr accepts"),
        (["rank_pattern": #"{"q_proj": 0}"#], "rank_pattern.q_proj", "not a positive integer"),
        (["rank_pattern": #"{"q_proj": 2.5}"#], "rank_pattern.q_proj", "not a positive integer"),
        (["lora_alpha": "1e400"], "lora_alpha", "not a finite number"),
        (["lora_alpha": "1e300"], "lora_alpha", "beyond Float32"),
        (["alpha_pattern": #"{"v_proj": 1e300}"#], "alpha_pattern.v_proj", "beyond Float32"),
    ])
    func hostileAdapterNumbers(raw: [String: String], key: String, message: String) throws {
        let a = try copy(of: fixture("lora-basic")) { try setJSON($0.file("adapter_config.json"), raw) }
        defer { a.cleanUp() }
        let e = try planError(fixture("tiny-f32"), lora: [a.path])
        guard case .badConfig(let p, let k, let why) = e else { Issue.record("\(raw): \(e)"); return }
        #expect(p == a.file("adapter_config.json") && k == key && why.contains(message), "\(raw): \(e)")
    }

    // 6. An empty tokenizer.model says so.
    @Test func emptyTokenizerModelIsNamedAsEmpty() throws {
        let d = try copy { try Data().write(to: URL(fileURLWithPath: $0.file("tokenizer.model"))) }
        defer { d.cleanUp() }
        let e = try planError(d.path)
        guard case .badTokenizer(let p, let why) = e else { Issue.record("\(e)"); return }
        #expect(p == d.file("tokenizer.model") && why.contains("empty") && !"\(e)".contains("unigram"))
    }

    // 7. Messages that name where the fault is.
    @Test func nonFiniteWeightNamesItsFile() throws {
        let d = try copy { d in
            try rewriteSafetensors(d.file("model.safetensors")) { tensors in
                let i = tensors.firstIndex { $0.0 == "model.norm.weight" }!
                tensors[i].2[7] = .infinity
            }
        }
        defer { d.cleanUp() }
        var caught: ConvertError?
        do { try convert(d.path, to: d.file("out.gguf")) } catch let e as ConvertError { caught = e }
        let e = try #require(caught)
        guard case .nonFinite(let t, _, let col, let v, let p, let merged) = e else { Issue.record("\(e)"); return }
        #expect(t.contains("model.norm.weight") && col == 7 && v == .infinity && merged.isEmpty)
        #expect(p == d.file("model.safetensors") && "\(e)".hasPrefix(d.file("model.safetensors") + ": "))
        #expect(!FileManager.default.fileExists(atPath: d.file("out.gguf")))
    }

    @Test func tensorOfALayerPastTheCountSaysSo() throws {
        let d = try copy { d in
            try rewriteSafetensors(d.file("model.safetensors")) { tensors in
                tensors.append(("model.layers.9.input_layernorm.weight", [64], [Float](repeating: 1, count: 64)))
            }
        }
        defer { d.cleanUp() }
        let e = try planError(d.path)
        #expect(e == .tensorBeyondLayers(name: "model.layers.9.input_layernorm.weight", layer: 9, layerCount: 5,
                                         path: d.file("model.safetensors")))
        #expect("\(e)".contains("layer 9, but config.json says 5 layers"))
    }

    /// The command line, under --dry-run: one line naming config.json and the key, exit 1, promptly.
    @Test func dryRunReportsAHugeLayerCount() throws {
        let d = try copy { try setJSON($0.file("config.json"), ["num_hidden_layers": "1000000000000"]) }
        defer { d.cleanUp() }
        guard let r = try runPalrConvert(["hf", d.path, "--dry-run"]) else { return }
        #expect(r.status != 0)
        #expect(r.err.contains(d.file("config.json")) && r.err.contains("num_hidden_layers") && r.err.contains("at most 4096"), "\(r.err)")
    }
}
