import Foundation
import Testing
import Tokenizer
@testable import Convert

/// Inputs found by the mutation campaign of tools/fuzz/convert (each test names the
/// mutation); every one used to be accepted, crash or hang. Failures go through
/// BadInputTests' `failure`, which also checks that nothing is left in the output folder.
@Suite struct FuzzFoundTests {
    let bad = BadInputTests()

    /// tiny-sharded with its index's text edited by `edit`.
    func shardedVariant(editIndex edit: (String) -> String) throws -> TempDir {
        try bad.variant(of: "tiny-sharded") { d in
            let path = d.file(Checkpoint.indexFile)
            try edit(String(contentsOfFile: path, encoding: .utf8)).write(toFile: path, atomically: false, encoding: .utf8)
        }
    }

    /// Mutation: a shard's name in weight_map gets a trailing "\u0000". The system call
    /// stopped at the NUL and read the real shard, so the conversion succeeded although
    /// the index named a file that does not exist.
    @Test func aShardNameWithANulIsRefused() throws {
        let d = try shardedVariant {
            $0.replacingOccurrences(of: "\"model-00002-of-00002.safetensors\"", with: "\"model-00002-of-00002.safetensors\\u0000\"")
        }
        defer { d.cleanUp() }
        guard case .badConfig(let path, let key, _) = try bad.failure(d.path) else { Issue.record("wrong error"); return }
        #expect(path.hasSuffix(Checkpoint.indexFile) && key.hasPrefix("weight_map."))
    }

    /// Mutation: a tensor the index assigns to shard 1 is also stored in shard 2. The
    /// copy in shard 2 was silently ignored (the stale-index check only asked whether
    /// the name was listed at all).
    @Test func aTensorInTwoShardsIsRefused() throws {
        let d = try bad.variant(of: "tiny-sharded") { d in
            let first = try SafeTensorsFile(path: d.file("model-00001-of-00002.safetensors"))
            let name = "model.embed_tokens.weight"
            let t = try #require(first.tensor(named: name))
            var v = [Float](repeating: 0, count: t.elementCount)
            v.withUnsafeMutableBufferPointer { t.read(from: 0, count: t.elementCount, into: $0.baseAddress!) }
            try rewriteSafetensors(d.file("model-00002-of-00002.safetensors")) { $0.append((name, t.shape, v)) }
        }
        defer { d.cleanUp() }
        guard case .badConfig(_, let key, let reason) = try bad.failure(d.path) else { Issue.record("wrong error"); return }
        #expect(key == "weight_map.model.embed_tokens.weight" && reason.contains("model-00002-of-00002.safetensors"))
    }

    /// Mutation: a tensor's data_offsets (or shape) written as floats, [902400.0, 946432.0].
    /// They were read as the integers they equal, so palr converted a file the
    /// safetensors reference reader refuses ("invalid type: floating point").
    @Test(arguments: ["\"shape\":[2],\"data_offsets\":[0.0,8.0]", "\"shape\":[2.0],\"data_offsets\":[0,8]",
                      "\"shape\":[2],\"data_offsets\":[0,8e0]"])
    func floatShapesAndOffsetsAreRefused(entry: String) throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let path = d.file("x.safetensors")
        try writeSafetensors(path, [("a", [2], [1, 2])], headerOverride: "{\"a\":{\"dtype\":\"F32\",\(entry)}}")
        #expect {
            try SafeTensorsFile(path: path)
        } throws: { e in
            guard case .badSafetensors(_, let why) = e as? ConvertError else { return false }
            return why.contains("tensor 'a'")
        }
    }

    /// Mutation: tokenizer.model with one more piece of 300,000 bytes. Building the
    /// merge table split that piece at every byte and hashed both halves, O(L²): a
    /// 100 kB piece made the conversion run past the fuzzer's 30 s limit. Now it is
    /// linear in the piece (and the piece is then one too many for vocab_size).
    @Test func aHugePieceLoadsInLinearTime() throws {
        func varint(_ v: Int) -> [UInt8] {
            var v = v, out: [UInt8] = []
            while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            return out + [UInt8(v)]
        }
        let text = [UInt8](repeating: UInt8(ascii: "a"), count: 300_000)
        let piece = [0x0A] + varint(text.count) + text + [0x15, 0, 0, 0, 0]   // text, score 0
        let d = try bad.variant(of: "tiny-f32") { d in
            let path = d.file("tokenizer.model")
            let model = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            try Data(model + [0x0A] + varint(piece.count) + piece).write(to: URL(fileURLWithPath: path))
        }
        defer { d.cleanUp() }
        let started = Date()
        guard case .badTokenizer(_, let why) = try bad.failure(d.path) else { Issue.record("wrong error"); return }
        #expect(why.contains("more than vocab_size"))
        #expect(Date().timeIntervalSince(started) < 5)
    }

    /// Mutation: an interactions CSV whose header has 1,000,000 columns (8 MB). Finding
    /// the user column compared each known name with each column through Foundation,
    /// 10 s of CPU time (up to 28 s on a loaded host) before "no user column"; now the
    /// column count is refused first.
    @Test func aHeaderOfAMillionColumnsIsRefusedFirst() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let (items, ratings) = writeTinyCatalogInputs(d)
        try ((0..<1_000_000).map { "c\($0)" }.joined(separator: ",") + "\n").write(toFile: ratings, atomically: false, encoding: .utf8)
        guard let r = try runPalrConvert(["catalog", "--items", items, "--interactions", ratings, "-o", d.file("c.gguf")]) else { return }
        #expect(r.status == 1 && r.err.contains("the header has 1000000 columns"), "\(r.err)")
        #expect(!d.contents.contains { $0.hasPrefix("c.gguf") })
    }
}

/// Module patterns of adapter_config.json that Swift's backtracking Regex would take
/// hours (or forever) to match against one module name.
@Suite struct FuzzFoundPatternTests {
    let bad = BadInputTests()

    /// lora-basic with `key` of its adapter_config.json set to the JSON `value`.
    func adapter(_ key: String, _ value: Any) throws -> TempDir {
        try bad.variant(of: "lora-basic") { d in
            let url = URL(fileURLWithPath: d.file(LoRAAdapter.configFile))
            var c = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
            c[key] = value
            try JSONSerialization.data(withJSONObject: c).write(to: url)
        }
    }

    /// Mutation: target_modules as a regex with nested or many quantifiers. Before,
    /// `(.*)*x` hung the conversion (killed by the fuzzer's 30 s timeout) while matching
    /// the first module name; now each is refused before any matching.
    @Test(arguments: ["(.*)*x", "(?:(?:.*)*)*Q", "(a|aa)*$", "(?:.*){30}Q", "((.*)b)+", ".*.*.*.*.*.*.*.*x"])
    func aPatternThatBacktracksForeverIsRefused(pattern: String) throws {
        let a = try adapter("target_modules", pattern)
        defer { a.cleanUp() }
        let started = Date()
        guard case .badConfig(_, let key, let reason) = try bad.failure(fixture("tiny-f32"), lora: [a.path]) else {
            Issue.record("wrong error"); return
        }
        #expect(key == "target_modules" && reason.contains("hours"))
        #expect(Date().timeIntervalSince(started) < 5)
    }

    /// rank_pattern and exclude_modules are regexes too (rank_pattern's key is the pattern).
    @Test func patternKeysAndExclusionsAreCheckedAlike() throws {
        for (key, value) in [("rank_pattern", ["(.*)*q_proj": 4] as Any), ("exclude_modules", "(a+)+b" as Any)] {
            let a = try adapter(key, value)
            defer { a.cleanUp() }
            guard case .badConfig(_, let k, _) = try bad.failure(fixture("tiny-f32"), lora: [a.path]) else {
                Issue.record("wrong error for \(key)"); continue
            }
            #expect(k.hasPrefix(key))
        }
    }

    /// The patterns PEFT users write still pass.
    @Test func usualPatternsAreAccepted() {
        for p in [".*", ".*\\.(q_proj|v_proj)", "model\\.layers\\.\\d+\\.self_attn\\.(q|k|v|o)_proj",
                  "^(?!.*embed).*(q|k|v)_proj$", ".*layers\\.(0|1|2)\\..*(up|down)_proj", "(?:q|v)_proj", "[a-z_]+{2,}x?",
                  "model.layers.{1,3}.*", "x{2}(ab)?", ".*q_proj|.*k_proj|.*v_proj|.*o_proj|.*gate_proj|.*up_proj"] {
            #expect(LoRAAdapter.backtrackingRisk(p) == nil, "\(p)")
        }
    }

    /// target_modules as Unsloth's get_peft_regex writes them into adapter_config.json
    /// (two releases' forms): four or five unbounded quantifiers in all, but at most four
    /// in either alternative, which are tried one after the other. They were refused as
    /// "more than palr accepts".
    @Test(arguments: [
        "(?:.*?(?:vision|image|visual|patch|language|text).*?(?:self_attn|attention|attn|mlp|feed_forward|ffn|dense).*?"
            + "(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj).*?)|(?:\\bmodel\\.layers\\.[\\d]{1,}\\."
            + "(?:self_attn|attention|attn|mlp|feed_forward|ffn|dense)\\.(?:(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)))",
        "(?:.*?(?:language|text).*?(?:self_attn|attention|attn|mixer|mlp|feed_forward|ffn|dense|mixer).*?\\.(?:q_proj|v_proj|o_proj))"
            + "|(?:\\bmodel\\.layers\\.[\\d]{1,}(?!.*\\.experts\\.\\d)\\..*?(?:self_attn|attention|attn|mixer|mlp|feed_forward|ffn|dense|mixer)"
            + ".*?\\.(?:(?:q_proj|v_proj|o_proj)))",
    ])
    func unslothPatternsAreAccepted(pattern: String) throws {
        #expect(LoRAAdapter.backtrackingRisk(pattern) == nil)
        // And they match what they should, at once.
        let r = try Regex(pattern)
        #expect((try? r.wholeMatch(in: "model.layers.12.self_attn.q_proj")) != nil)
        #expect((try? r.wholeMatch(in: "model.layers.12.self_attn.rotary")) == nil)
    }

    /// Bounded and optional quantifiers backtrack too: seven `.{0,40}` took over 30 s on
    /// one 32-character module name that does not match, 26 `.?` over a minute; neither
    /// has an unbounded quantifier, so both passed.
    @Test(arguments: [String(repeating: ".{0,40}", count: 7) + "Q", String(repeating: ".?", count: 26) + "Q",
                      "(?:a|" + String(repeating: ".{1,9}", count: 5) + ")x"])
    func manyBoundedQuantifiersAreRefused(pattern: String) {
        #expect(LoRAAdapter.backtrackingRisk(pattern)?.contains("hours") == true, "\(pattern)")
    }
}
