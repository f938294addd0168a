import Foundation
import GGUF
import Testing
@testable import Convert

/// Each bad input is one clear error, and no output file (nor temporary file) is left.
@Suite struct BadInputTests {
    /// Converts `dir` into a fresh folder and returns the error, checking the folder stays empty.
    func failure(_ dir: String, lora: [String] = [], type: GGMLType = .f32) throws -> ConvertError {
        let out = try TempDir()
        defer { out.cleanUp() }
        var caught: ConvertError?
        do {
            try convert(dir, to: out.file("out.gguf"), type: type, lora: lora)
        } catch let e as ConvertError {
            caught = e
        }
        #expect(out.contents.isEmpty, "left behind: \(out.contents)")
        let e = try #require(caught, "the conversion did not fail")
        print("error: \(e)")
        return e
    }

    /// A copy of a fixture folder with one file edited.
    func variant(of name: String, except: Set<String> = [], edit: (TempDir) throws -> Void = { _ in }) throws -> TempDir {
        let d = try TempDir()
        try d.copy(from: fixture(name), except: except)
        try edit(d)
        return d
    }

    func editConfig(_ d: TempDir, _ change: (inout [String: Any]) -> Void) throws {
        let url = URL(fileURLWithPath: d.file("config.json"))
        var c = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        change(&c)
        try JSONSerialization.data(withJSONObject: c).write(to: url)
    }

    @Test func missingConfig() throws {
        let d = try variant(of: "tiny-f32", except: ["config.json"])
        defer { d.cleanUp() }
        let e = try failure(d.path)
        guard case .missingFile(let p, _) = e else { Issue.record("\(e)"); return }
        #expect(p.hasSuffix("config.json"))
    }

    @Test func truncatedSafetensorsNamesTheTensor() throws {
        let d = try variant(of: "tiny-f32") { d in
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: d.file("model.safetensors")))
            let size = try h.seekToEnd()
            try h.truncate(atOffset: size - 1000)
            try h.close()
        }
        defer { d.cleanUp() }
        let e = try failure(d.path)
        guard case .truncatedTensor(let p, let t, _, _) = e else { Issue.record("\(e)"); return }
        #expect(p.hasSuffix("model.safetensors") && !t.isEmpty)
    }

    @Test func truncatedHeader() throws {
        let d = try variant(of: "tiny-f32") { d in
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: d.file("model.safetensors")))
            try h.truncate(atOffset: 100)
            try h.close()
        }
        defer { d.cleanUp() }
        guard case .badSafetensors(_, let why) = try failure(d.path) else { Issue.record("wrong error"); return }
        #expect(why.contains("truncated"))
    }

    @Test func missingShard() throws {
        let d = try variant(of: "tiny-sharded", except: ["model-00002-of-00002.safetensors"])
        defer { d.cleanUp() }
        let e = try failure(d.path)
        #expect(e == .missingShard(index: d.file("model.safetensors.index.json"), shard: "model-00002-of-00002.safetensors",
                                   tensor: "model.layers.1.input_layernorm.weight"))
    }

    @Test func adapterForAnotherShape() throws {
        let e = try failure(fixture("tiny-f32"), lora: [fixture("bad-shape")])
        guard case .badAdapter(_, let why) = e else { Issue.record("\(e)"); return }
        #expect(why.contains("another model") && why.contains("q_proj"))
    }

    @Test func doraAdapter() throws {
        let e = try failure(fixture("tiny-f32"), lora: [fixture("bad-dora")])
        guard case .unsupported(_, let key, _, _) = e else { Issue.record("\(e)"); return }
        #expect(key == "use_dora")
    }

    @Test func adapterWhoseBaseTensorIsMissing() throws {
        // lora-basic targets all seven projections; a checkpoint without q_proj in layer 0
        // fails on the checkpoint itself first, so give the adapter a module the model lacks.
        let a = try variant(of: "lora-basic") { d in
            try rewriteSafetensors(d.file("adapter_model.safetensors")) { tensors in
                tensors = tensors.map { ($0.0.replacingOccurrences(of: "layers.1.", with: "layers.7."), $0.1, $0.2) }
            }
        }
        defer { a.cleanUp() }
        let e = try failure(fixture("tiny-f32"), lora: [a.path])
        guard case .missingTensor(let name, _) = e else { Issue.record("\(e)"); return }
        #expect(name.hasPrefix("model.layers.7."))
    }

    @Test(arguments: [
        ("rope_scaling", "yarn"), ("rope_scaling", "llama3"), ("rope_scaling", "dynamic"), ("rope_parameters", "yarn"),
    ])
    func unsupportedRopeType(key: String, type: String) throws {
        let d = try variant(of: "tiny-f32") { d in
            try editConfig(d) { c in
                c.removeValue(forKey: "rope_scaling")
                c[key] = ["rope_type": type, "factor": 4.0, "rope_theta": 10000.0, "original_max_position_embeddings": 64]
            }
        }
        defer { d.cleanUp() }
        guard case .unsupported(_, let k, let v, _) = try failure(d.path) else { Issue.record("wrong error"); return }
        #expect(k == "\(key).rope_type" && v == "\"\(type)\"")
    }

    /// (key, JSON value)
    @Test(arguments: [
        ("attention_bias", "true"), ("mlp_bias", "true"), ("model_type", "\"mistral\""),
        ("architectures", "[\"MistralForCausalLM\"]"), ("hidden_act", "\"gelu\""),
        ("quantization_config", "{\"quant_method\": \"gptq\"}"), ("partial_rotary_factor", "0.5"),
    ])
    func unsupportedConfigKey(key: String, value: String) throws {
        let v = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
        let d = try variant(of: "tiny-f32") { d in try editConfig(d) { $0[key] = v } }
        defer { d.cleanUp() }
        guard case .unsupported(_, let k, _, _) = try failure(d.path) else { Issue.record("wrong error"); return }
        #expect(k == key)
    }

    @Test func configShapeDisagreesWithWeights() throws {
        let d = try variant(of: "tiny-f32") { d in try editConfig(d) { $0["intermediate_size"] = 96 } }
        defer { d.cleanUp() }
        guard case .wrongShape(let t, let expected, let found, _) = try failure(d.path) else { Issue.record("wrong error"); return }
        #expect(t == "model.layers.0.mlp.gate_proj.weight" && expected == [96, 64] && found == [80, 64])
    }

    @Test func nonFiniteWeightIsNamed() throws {
        let d = try variant(of: "tiny-f32") { d in
            try rewriteSafetensors(d.file("model.safetensors")) { tensors in
                let i = tensors.firstIndex { $0.0 == "model.layers.1.mlp.up_proj.weight" }!
                tensors[i].2[3 * 64 + 5] = .nan
            }
        }
        defer { d.cleanUp() }
        let e = try failure(d.path, type: .q4_0)
        guard case .nonFinite(let t, let row, let col, _, let path, _) = e else { Issue.record("\(e)"); return }
        #expect(t.contains("model.layers.1.mlp.up_proj.weight") && row == 3 && col == 5)
        #expect(path == d.file("model.safetensors"))
    }

    @Test func unexpectedTensorIsAnError() throws {
        let d = try variant(of: "tiny-f32") { d in
            try rewriteSafetensors(d.file("model.safetensors")) { tensors in
                tensors.append(("model.layers.0.self_attn.q_proj.bias", [64], [Float](repeating: 0, count: 64)))
                tensors.append(("model.layers.0.self_attn.rotary_emb.inv_freq", [8], [Float](repeating: 1, count: 8)))  // skipped
            }
        }
        defer { d.cleanUp() }
        guard case .unexpectedTensor(let name, _) = try failure(d.path) else { Issue.record("wrong error"); return }
        #expect(name == "model.layers.0.self_attn.q_proj.bias")
    }

    @Test func malformedSafetensorsHeaders() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let path = d.file("x.safetensors")
        let cases: [(String, String)] = [
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "needs 8 bytes"),
            ("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype"),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "shape entry"),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "data_offsets"),
            ("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", "overlap"),
            ("[1, 2]", "not a JSON object"),
            ("{\"a\": ", "not valid JSON"),
        ]
        for (header, message) in cases {
            try writeSafetensors(path, [("a", [2], [1, 2]), ("b", [2], [3, 4])], headerOverride: header)
            #expect {
                try SafeTensorsFile(path: path)
            } throws: { e in
                guard case .badSafetensors(_, let why) = e as? ConvertError else { return false }
                return why.contains(message)
            }
        }
    }
}
