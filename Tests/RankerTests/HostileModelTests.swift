import Foundation
import Catalog
import GGUF
import History
import Llama
import Testing
import Tokenizer
@testable import Ranker

/// A tiny random-weight ranker model like `tinyRankerModelPath`, with hooks to spoil it:
/// the tokenizer's pieces, the number of token rows, and an F32 output matrix and output
/// norm the test fills.
struct HostileModel {
    var pieces: [String]
    var scores: [Float]
    var types: [Int32]
    var vocabRows: Int
    /// When set: an untied F32 `output.weight`, (vocabRows × dim) row-major, edited by the test.
    var output: [Float]? = nil
    var outputNorm: [Float]
    var extraMetadata: [(String, GGUFValue)] = []
    let dim = 64, layers = 1, heads = 4, kv = 2, ffn = 128

    static func tok512() throws -> SentencePieceTokenizer {
        try SentencePieceTokenizer(modelFile: sharedDir.appendingPathComponent("models/stories260K/tok512.model").path)
    }

    init() throws {
        let v = try Self.tok512().vocabulary
        pieces = v.pieces
        scores = v.scores
        types = v.types.map(\.rawValue)
        vocabRows = pieces.count
        outputNorm = [Float](repeating: 1, count: dim)
    }

    func pseudoRandom(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return (Float(state >> 40) / Float(1 << 24) - 0.5) * 0.4
        }
    }

    func write(to path: String) throws {
        let tok = try Self.tok512()
        var meta: [(String, GGUFValue)] = [
            ("general.architecture", .string("llama")), ("general.name", .string("hostile")),
            ("llama.context_length", .uint32(1024)), ("llama.embedding_length", .uint32(UInt32(dim))),
            ("llama.block_count", .uint32(UInt32(layers))), ("llama.feed_forward_length", .uint32(UInt32(ffn))),
            ("llama.attention.head_count", .uint32(UInt32(heads))), ("llama.attention.head_count_kv", .uint32(UInt32(kv))),
            ("llama.attention.layer_norm_rms_epsilon", .float32(1e-5)),
        ]
        // The tokenizer keys of tok512, with this model's pieces.
        for (key, value) in tok.ggufMetadata {
            switch key {
            case TokenizerKey.tokens: meta.append((key, .array(.string, pieces.map { .string($0) })))
            case TokenizerKey.scores: meta.append((key, .array(.float32, scores.map { .float32($0) })))
            case TokenizerKey.tokenType: meta.append((key, .array(.int32, types.map { .int32($0) })))
            default: meta.append((key, value))
            }
        }
        // A key given again replaces the one above (a file may hold each key once).
        meta = meta.filter { key in !extraMetadata.contains { $0.0 == key.0 } } + extraMetadata
        let hd = dim / heads
        var plans: [GGUFTensorPlan] = [GGUFTensorPlan(name: "token_embd.weight", dims: [dim, vocabRows], type: .q4_0),
                                       GGUFTensorPlan(name: "output_norm.weight", dims: [dim], type: .f32)]
        if output != nil { plans.append(GGUFTensorPlan(name: "output.weight", dims: [dim, vocabRows], type: .f32)) }
        plans += layerPlans(layers: layers, dim: dim, kvDim: kv * hd, ffn: ffn)
        let w = try GGUFWriter(path: path, metadata: meta, tensors: plans)
        for (i, p) in plans.enumerated() {
            let values: [Float]
            switch p.name {
            case "output_norm.weight": values = outputNorm
            case "output.weight": values = output!
            default: values = p.dims.count == 1 ? [Float](repeating: 1, count: p.elementCount)
                                                 : pseudoRandom(p.elementCount, seed: 0x1234_5678 &+ UInt64(i))
            }
            try w.write(tensor: p.name, bytes: p.type.quantize(values)!)
        }
        try w.finish()
    }

    /// Written to a temporary file, loaded as a ranker (the file is removed at once: the
    /// mapping stays valid).
    func ranker() throws -> Ranker {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("palr-hostile-\(UUID().uuidString).gguf").path
        try write(to: path)
        defer { unlink(path) }
        let model = try LlamaModel(path: path)
        let tok = try SentencePieceTokenizer(gguf: model.gguf)
        var defaulted: [String] = []
        let settings = try PALRSettings(gguf: model.gguf, defaulted: &defaulted)
        return try Ranker(model: model, tokenizer: tok, settings: settings, contextLength: 512, threads: 1)
    }
}

@Suite struct HostileModelTests {
    @Test func theUnspoiledModelRanks() throws {
        let r = try HostileModel().ranker()
        #expect(try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: .letters).items.count == 3)
    }

    /// A tokenizer with more pieces than the model has token rows: label 'A' moved past the
    /// rows (and a candidate line that keeps it out of the prompt) made letters mode index the
    /// logits out of range, a trap. Fewer pieces than rows is refused too (llama.cpp's rule,
    /// and what palr-convert writes).
    @Test func aTokenizerThatDoesNotFitTheWeightsIsRefused() throws {
        var m = try HostileModel()
        let a = try #require(m.pieces.firstIndex(of: "A"))
        m.pieces[a] = "A\u{2060}unused"
        m.pieces.append("A")
        m.scores.append(0)
        m.types.append(1)
        m.extraMetadata = [("palr.candidate_item", .string("({label}l) {title}\n"))]
        let more = #expect(throws: RankerError.self) { _ = try m.ranker() }
        #expect(more?.description.hasPrefix("the model's tokenizer has \(m.pieces.count) pieces (tokenizer.ggml.tokens) "
                                            + "but its weights have \(m.vocabRows) token rows") == true, "\(String(describing: more))")
        var fewer = try HostileModel()
        fewer.vocabRows += 32
        let less = #expect(throws: RankerError.self) { _ = try fewer.ranker() }
        #expect(less?.description.hasPrefix("the model's tokenizer has \(fewer.pieces.count) pieces") == true)
    }

    /// A vocabulary without the piece 'K' is named as missing 'K' (the message said 'A').
    @Test func aMissingLabelIsNamed() throws {
        var m = try HostileModel()
        let k = try #require(m.pieces.firstIndex(of: "K"))
        m.pieces[k] = "K\u{2060}unused"
        let r = try m.ranker()
        #expect(throws: RankerError.labelNotInVocabulary("K")) {
            _ = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: .letters)
        }
        // Likelihood mode needs no labels.
        #expect(try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: .likelihood).items.count == 3)
    }
}

@Suite struct HostileLogitTests {
    /// An output row whose logit overflows: label 'A' gets +∞ or −∞ (as the sign of the last
    /// position's first feature decides), the other labels stay finite. +∞ was an error;
    /// −∞ ranked 'A' last with score −∞, which `--json` could not encode (it printed
    /// nothing, status 0) and the history store refused to cache. Both signs are errors now.
    @Test(arguments: [Float(1), -1])
    func anOverflowingLabelLogitIsAnError(sign: Float) throws {
        var m = try HostileModel()
        let a = try #require(m.pieces.firstIndex(of: "A"))
        var output = m.pseudoRandom(m.vocabRows * m.dim, seed: 99)
        for c in 0..<m.dim { output[a * m.dim + c] = 0 }
        output[a * m.dim] = sign * 1e30
        m.output = output
        m.outputNorm[0] = 1e30
        let r = try m.ranker()
        let error = #expect(throws: RankerError.self) {
            _ = try r.rank(history: someTitles, candidates: someCandidates, k: 3, mode: .letters)
        }
        #expect(error?.description.contains("logits are not finite") == true, "\(String(describing: error))")
    }
}

@Suite struct HostileNameTests {
    /// A model file named with a tab and a newline, and a catalog whose palr.catalog.id holds
    /// a newline and a bidirectional override: the history store refuses such ids, so no
    /// ranking was ever cached ("not cached: model id … contains a control character") and
    /// `refresh` failed on every profile every run. They cache now.
    @Test func controlCharactersInModelAndCatalogNamesStillCache() throws {
        let ml = try #require(ML100K.shared)
        let path = temporaryStorePath("palr-names")
        defer { removeStore(path) }
        let store = try HistoryStore(path: path)
        let c = ml.catalog
        let odd = try catalog(c, withID: "cat\nid\u{202E}x")
        _ = try store.record([NewInteraction(profile: "eve", item: c.ids[0], kind: .view, value: nil, timestamp: 1)],
                             createProfiles: true)
        let rec = try Recommender(ranker: try makeRanker(), catalog: odd, store: store, modelID: "we\tird\nname.gguf#0123")
        let first = try rec.recommend(profile: "eve", k: 3)
        #expect(first.cacheFailure == nil, "\(first.notes)")
        #expect(try rec.recommend(profile: "eve", k: 3).fromCache)
        // Another catalog whose id differs only in the replaced characters is still another catalog.
        let other = try catalog(c, withID: "cat\rid\u{202D}x")
        let rec2 = try Recommender(ranker: try makeRanker(), catalog: other, store: store, modelID: "we\tird\nname.gguf#0123")
        #expect(rec2.catalogID != rec.catalogID)
    }
}
