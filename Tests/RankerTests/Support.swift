import Catalog
import Foundation
import GGUF
import Llama
import Ranker
import Tokenizer

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let sharedDir = repoRoot.deletingLastPathComponent().appendingPathComponent("shared")

/// A history-store path inside a fresh temporary directory. Remove it with
/// `removeStore(_:)`, which deletes the directory, so SQLite's -wal and -shm files go too.
func temporaryStorePath(_ prefix: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent("history.sqlite").path
}

func removeStore(_ path: String) {
    try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
}

/// A small random-weight LLaMA with the real tok512 SentencePiece vocabulary: the
/// ranking mechanics (prompts, modes, masks, trie, caches) do not need trained weights.
/// Written once per process to a temp file, which is removed when the process exits.
let tinyRankerModelFile = FileManager.default.temporaryDirectory.appendingPathComponent("palr-ranker-test-\(getpid()).gguf").path
let tinyRankerModelPath: String = {
    let path = tinyRankerModelFile
    atexit { unlink(tinyRankerModelFile) }
    do {
        let tok = try SentencePieceTokenizer(modelFile: sharedDir.appendingPathComponent("models/stories260K/tok512.model").path)
        let dim = 64, layers = 2, heads = 4, kv = 2, ffn = 128, vocab = tok.vocabSize
        var meta: [(String, GGUFValue)] = [
            ("general.architecture", .string("llama")), ("general.name", .string("palr-ranker-test")),
            ("llama.context_length", .uint32(2048)), ("llama.embedding_length", .uint32(UInt32(dim))),
            ("llama.block_count", .uint32(UInt32(layers))), ("llama.feed_forward_length", .uint32(UInt32(ffn))),
            ("llama.attention.head_count", .uint32(UInt32(heads))), ("llama.attention.head_count_kv", .uint32(UInt32(kv))),
            ("llama.attention.layer_norm_rms_epsilon", .float32(1e-5)), ("llama.vocab_size", .uint32(UInt32(vocab))),
        ]
        meta += tok.ggufMetadata
        let hd = dim / heads
        var plans: [GGUFTensorPlan] = [GGUFTensorPlan(name: "token_embd.weight", dims: [dim, vocab], type: .q4_0),
                                       GGUFTensorPlan(name: "output_norm.weight", dims: [dim], type: .f32)]
        plans += layerPlans(layers: layers, dim: dim, kvDim: kv * hd, ffn: ffn)
        let w = try GGUFWriter(path: path, metadata: meta, tensors: plans)
        var state: UInt64 = 0x1234_5678
        for p in plans {
            let n = p.elementCount
            let values: [Float] = (0..<n).map { _ in
                if p.dims.count == 1 { return 1 }
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return (Float(state >> 40) / Float(1 << 24) - 0.5) * 0.4
            }
            try w.write(tensor: p.name, bytes: p.type.quantize(values)!)
        }
        try w.finish()
    } catch {
        fatalError("test fixture: cannot write the tiny ranker model: \(error)")
    }
    return path
}()

/// ML-100K's items and a neighbour catalog built from all of u.data, read once.
struct ML100K {
    let items: ItemList
    let data: LeaveOneOutData
    let catalog: ItemCatalog

    static let shared: ML100K? = {
        let dir = sharedDir.appendingPathComponent("data/ml-100k")
        guard let items = try? DataFiles.readItems(path: dir.appendingPathComponent("u.item").path),
              let log = try? DataFiles.readInteractions(path: dir.appendingPathComponent("u.data").path) else { return nil }
        let data = LeaveOneOutData(items: items, log: log)
        guard let catalog = try? data.trainingCatalog(cut: 1, parameters: NeighbourParameters(method: .combined)) else { return nil }
        return ML100K(items: items, data: data, catalog: catalog)
    }()
}

/// `c` under another `palr.catalog.id`: the same items, popularity and neighbours.
func catalog(_ c: ItemCatalog, withID id: String) throws -> ItemCatalog {
    let table = NeighbourTable(itemCount: c.count, k: c.k)
    for i in 0..<c.count { table.setRow(i, c.neighbours(of: i)) }
    var info = c.info
    info.id = id
    return try ItemCatalog(info: info, items: ItemList(ids: c.ids, titles: c.titles),
                           popularity: c.popularityValues, neighbours: table)
}

/// The tensor plans of `layers` LLaMA blocks: norms in F32, every matrix in Q4_0.
func layerPlans(layers: Int, dim: Int, kvDim: Int, ffn: Int) -> [GGUFTensorPlan] {
    (0..<layers).flatMap { l -> [GGUFTensorPlan] in
        let p = "blk.\(l)."
        return [GGUFTensorPlan(name: p + "attn_norm.weight", dims: [dim], type: .f32),
                GGUFTensorPlan(name: p + "attn_q.weight", dims: [dim, dim], type: .q4_0),
                GGUFTensorPlan(name: p + "attn_k.weight", dims: [dim, kvDim], type: .q4_0),
                GGUFTensorPlan(name: p + "attn_v.weight", dims: [dim, kvDim], type: .q4_0),
                GGUFTensorPlan(name: p + "attn_output.weight", dims: [dim, dim], type: .q4_0),
                GGUFTensorPlan(name: p + "ffn_norm.weight", dims: [dim], type: .f32),
                GGUFTensorPlan(name: p + "ffn_gate.weight", dims: [dim, ffn], type: .q4_0),
                GGUFTensorPlan(name: p + "ffn_up.weight", dims: [dim, ffn], type: .q4_0),
                GGUFTensorPlan(name: p + "ffn_down.weight", dims: [ffn, dim], type: .q4_0)]
    }
}
