// A model of LLaMA's real head size (128) at a 600-token prompt against transformers:
// the paths the tiny fixtures (head_dim 8-24, 12 tokens, one GEMM panel) never take.
// The weights are regenerated here by `RandomModel` from the committed config and
// seed (13 MB, not committed); tools/fixtures/make_shape_fixture.py ran transformers on
// gguf-py's dequantization of the same file.
import Foundation
import Testing
@testable import Convert
import GGUF
import Llama

private struct ShapeReference: Decodable {
    let type: String
    let seed: UInt64
    let fnv1a64: String
    let prompt_tokens: Int
    let tokens: [Int32]
    let positions: [Int]
    let logits: [[Float]]
}

private let shapeFolder = repoRoot.appendingPathComponent("Tests/Fixtures/shape")

/// FNV-1a 64 of a file's bytes, as the fixture script computes it.
private func fnv1a64(file path: String) throws -> String {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    data.withUnsafeBytes { for b in $0 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 } }
    let hex = String(h, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}

/// Writes the fixture's model into `folder` (the same bytes the script read) and loads it.
private func shapeModel(_ reference: ShapeReference, in folder: String) throws -> LlamaModel {
    let config = try HFConfig(file: shapeFolder.appendingPathComponent("config.json").path)
    var options = ConvertOptions()
    options.type = try #require(GGMLType(name: reference.type))
    let path = folder + "/shape.gguf"
    try RandomModel.write(config: config, name: "palr-random", options: options, seed: reference.seed, to: path)
    // Another file than the script's would make every comparison below meaningless.
    try #require(try fnv1a64(file: path) == reference.fnv1a64,
                 "RandomModel no longer writes the fixture's file: run tools/fixtures/make_shape_fixture.py")
    return try LlamaModel(path: path)
}

private func loadReference() throws -> ShapeReference {
    let data = try Data(contentsOf: shapeFolder.appendingPathComponent("reference.json"))
    return try JSONDecoder().decode(ShapeReference.self, from: data)
}

/// Worst |Δ| of `rows` against the reference rows at `positions`, and whether every
/// argmax agrees where the reference's top two differ by more than `margin`.
private func compare(_ rows: [Int: [Float]], _ reference: ShapeReference, margin: Float)
    -> (worst: Float, at: Int, argmaxAgrees: Bool) {
    var worst: Float = 0, at = -1, agrees = true
    for (i, p) in reference.positions.enumerated() {
        guard let row = rows[p] else { continue }
        let expected = reference.logits[i]
        for (x, y) in zip(row, expected) where abs(x - y) > worst { (worst, at) = (abs(x - y), p) }
        let sorted = expected.sorted(by: >)
        if sorted[0] - sorted[1] > margin,
           row.indices.max(by: { row[$0] < row[$1] }) != expected.indices.max(by: { expected[$0] < expected[$1] }) {
            agrees = false
        }
    }
    return (worst, at, agrees)
}

@Suite struct ShapeParityTests {
    /// Prefill (GEMM through OpenBLAS on dequantized panels, chunks of 64 with the cache
    /// growing across them), the same prompt split at other points (a one-token chunk
    /// takes the matrix-vector path), then decode steps after it (float activations:
    /// rounding only; int8 activations, llama.cpp's scheme: looser), on 1 and 3 threads.
    @Test(arguments: [1, 3], KVCacheType.allCases)
    func logitsMatchTransformersAtHeadSize128AndAPromptOf600(threads: Int, kvCache: KVCacheType) throws {
        let reference = try loadReference()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("palr-shape-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let model = try shapeModel(reference, in: folder)
        #expect(model.config.headDim == 128 && model.config.kvHeadCount == 2)
        let prompt = Array(reference.tokens[0..<reference.prompt_tokens])
        let inPrompt = reference.positions.filter { $0 < prompt.count }

        for activations in DecodeActivations.allCases {
            for splits in [[0], [0, 1, 200], [0, 37, 64, 300, 301]] {
                let session = try LlamaSession(model: model, threads: threads, activations: activations, kvCache: kvCache)
                var rows: [Int: [Float]] = [:]
                for (k, start) in splits.enumerated() {
                    let end = k + 1 < splits.count ? splits[k + 1] : prompt.count
                    let wanted = inPrompt.filter { $0 >= start && $0 < end }.map { $0 - start }
                    try session.prefill(Array(prompt[start..<end]), logits: .indices(wanted)) { i, l in
                        rows[start + i] = Array(l)
                    }
                }
                for p in prompt.count..<reference.tokens.count {
                    rows[p] = try session.decode(reference.tokens[p]) { Array($0) }
                }
                #expect(Set(rows.keys) == Set(reference.positions))
                let prefill = compare(rows.filter { $0.key < prompt.count }, reference, margin: 0.01)
                let decode = compare(rows.filter { $0.key >= prompt.count }, reference, margin: 0.05)
                print("shape parity, \(threads) threads, \(kvCache) KV cache, \(activations) decode, prefill split at \(splits): "
                      + "worst |Δ| prefill \(prefill.worst) (position \(prefill.at)), decode \(decode.worst) (position \(decode.at))")
                // An f16 cache rounds every key and value to about three significant digits.
                let exact: Float = kvCache == .f32 ? 2e-5 : 2e-4
                #expect(prefill.worst <= exact && prefill.argmaxAgrees, "prefill split at \(splits): \(prefill)")
                let decodeTolerance: Float = activations == .float32 ? exact : 0.03
                #expect(decode.worst <= decodeTolerance && decode.argmaxAgrees, "\(activations) decode: \(decode)")
            }
        }
    }
}

extension ShapeParityTests {
    /// Likelihood mode's batched continuations after the 600-token prompt (each attends
    /// to the prompt and causally to itself, from RoPE position 600): the prompt's own
    /// next four tokens against transformers' logits, and continuations of 1, 17 and 70
    /// tokens (longer than a batch of 64) against a plain prefill of prompt + continuation.
    @Test(arguments: KVCacheType.allCases)
    func continuationsAfterALongPromptMatchTransformersAndPlainPrefill(kvCache: KVCacheType) throws {
        let reference = try loadReference()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("palr-shape-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let model = try shapeModel(reference, in: folder)
        let n = reference.prompt_tokens
        let prompt = Array(reference.tokens[0..<n])
        let session = try LlamaSession(model: model, kvCache: kvCache)
        var last: [Float] = []
        try session.prefill(prompt, logits: .last) { _, l in last = Array(l) }
        var generator = SplitMix64(seed: 11)
        let random = [1, 17, 70].map { length in (0..<length).map { _ in Int32(3 + generator.next() % 509) } }
        let own = Array(reference.tokens[n...])
        let scores = try session.scoreContinuations([own] + random, prefixLogits: last)

        // The prompt's next tokens: transformers' rows at positions n-1 ... n+2 give their log-probs.
        let rows = Dictionary(uniqueKeysWithValues: zip(reference.positions, reference.logits))
        var worst: Float = 0
        for (j, token) in own.enumerated() {
            let row = try #require(rows[n - 1 + j])
            worst = max(worst, abs(scores[0][j] - logSoftmax(row, at: Int(token))))
        }
        // The others: one plain prefill each (the path checked against transformers above).
        var worstPlain: Float = 0
        for (i, cont) in random.enumerated() {
            let plain = try LlamaSession(model: model, kvCache: kvCache)
            var all: [[Float]] = []
            try plain.prefill(prompt + cont, logits: .indices(Array(n - 1 ..< n - 1 + cont.count))) { _, l in all.append(Array(l)) }
            for (j, token) in cont.enumerated() {
                worstPlain = max(worstPlain, abs(scores[i + 1][j] - logSoftmax(all[j], at: Int(token))))
            }
        }
        print("shape parity, \(kvCache) KV cache, continuations after \(n) tokens: worst |Δ log p| vs transformers \(worst), "
              + "vs plain prefill \(worstPlain)")
        // (f16: both sides read the same rounded keys and values; transformers does not.)
        // (f16: a key or value the two paths compute a hair apart may round to neighbouring halves.)
        #expect(worst <= (kvCache == .f32 ? 2e-5 : 1e-4) && worstPlain <= (kvCache == .f32 ? 5e-6 : 5e-5))
        #expect(session.position == n)
    }
}

/// `palr-convert random --config`: the shape of a config.json (a file or a checkpoint
/// folder), the same tensors as the standard shape it may equal; one of --shape and
/// --config; a vocabulary too small for the placeholder pieces is refused, naming the file.
@Suite struct RandomConfigCommandTests {
    @Test func aConfigGivesItsShapeAndBadCombinationsAreRefused() throws {
        let d = try TempDir()
        defer { d.cleanUp() }
        let tiny = RandomShape.tiny.config
        let json = """
            {"model_type": "llama", "hidden_size": \(tiny.hiddenSize), "intermediate_size": \(tiny.intermediateSize),
             "num_hidden_layers": \(tiny.layerCount), "num_attention_heads": \(tiny.headCount),
             "num_key_value_heads": \(tiny.kvHeadCount), "vocab_size": \(tiny.vocabSize),
             "max_position_embeddings": \(tiny.contextLength)}
            """
        try FileManager.default.createDirectory(atPath: d.file("ckpt"), withIntermediateDirectories: false)
        try json.write(toFile: d.file("ckpt/config.json"), atomically: false, encoding: .utf8)
        for (config, output) in [(d.file("ckpt/config.json"), "file.gguf"), (d.file("ckpt"), "folder.gguf")] {
            guard let r = try runPalrConvert(["random", "--config", config, "--seed", "5", "-o", d.file(output)]) else { return }
            #expect(r.status == 0, "\(r.err)")
        }
        guard let standard = try runPalrConvert(["random", "--shape", "tiny", "--seed", "5", "-o", d.file("tiny.gguf")])
        else { return }
        #expect(standard.status == 0, "\(standard.err)")
        let fromFile = try GGUFFile(path: d.file("file.gguf"))
        let fromShape = try GGUFFile(path: d.file("tiny.gguf"))
        #expect(fromFile.tensors.map(\.name) == fromShape.tensors.map(\.name))
        for (a, b) in zip(fromFile.tensors, fromShape.tensors) {
            #expect(Array(fromFile.data(of: a)) == Array(fromShape.data(of: b)), "\(a.name)")
        }
        #expect(FileManager.default.contents(atPath: d.file("file.gguf")) == FileManager.default.contents(atPath: d.file("folder.gguf")))

        for (arguments, message) in [
            (["random", "-o", d.file("x.gguf")], "give --shape or --config"),
            (["random", "--shape", "tiny", "--config", d.file("ckpt"), "-o", d.file("x.gguf")], "not both"),
        ] {
            guard let r = try runPalrConvert(arguments) else { return }
            #expect(r.status == 64 && r.err.contains(message), "\(arguments): \(r.status) \(r.err)")
        }
        try #"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 100}"#
            .write(toFile: d.file("small.json"), atomically: false, encoding: .utf8)
        guard let small = try runPalrConvert(["random", "--config", d.file("small.json"), "-o", d.file("x.gguf")]) else { return }
        #expect(small.status == 1 && small.err.contains("\(d.file("small.json")): 'vocab_size' 100 is below the 259 pieces"),
                "\(small.err)")
        #expect(!d.contents.contains { $0.hasPrefix("x.gguf") })
    }
}
