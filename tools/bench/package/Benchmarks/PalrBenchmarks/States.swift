// The state each benchmark measures, built in its setup (outside the measured region).
// Each class owns its buffers and frees them in deinit; the measured closures only call
// palr's library APIs on them.
import CKernels
import Catalog
import Foundation
import History
import Llama
import Ranker
import Tokenizer

/// Threads as `palr bench` and the ranker use by default: physical cores, at most 8.
let defaultThreads = max(1, min(Int(palr_physical_cores()), 8))

// MARK: - (1) decode matvec kernel

/// Q4_0 weights × int8 activations, `rows × cols`, through `palr_matvec` (the kernel every
/// decode step's projections run). Several copies of the matrix are cycled so that the
/// weights stream from memory as a model's do, instead of staying in the last-level cache.
final class MatvecState {
    static let rows = 4096, cols = 4096
    let rowBytes = MatvecState.cols / Int(PALR_QK) * Int(PALR_Q4_0_BLOCK_BYTES)
    var matrixBytes: Int { MatvecState.rows * rowBytes }
    /// Copies of the matrix, 64 MiB or more in all (far beyond any cache here).
    let copies: Int
    let weights: UnsafeMutableRawPointer        // (copies, rows, rowBytes) Q4_0 blocks, owned here
    let xq: UnsafeMutablePointer<palr_q8_block> // (cols / 32) the quantized input, owned here
    let y: UnsafeMutablePointer<Float>          // (rows) the output, owned here
    let pool: OpaquePointer?                    // palr's thread pool, destroyed in deinit (nil: 1 thread)
    let threads: Int
    private var next = 0

    init(threads: Int = defaultThreads) {
        let rows = Self.rows, cols = Self.cols
        copies = max(2, (64 << 20) / (rows * rowBytes) + 1)
        weights = .allocate(byteCount: copies * rows * rowBytes, alignment: 64)
        xq = .allocate(capacity: cols / Int(PALR_QK))
        y = .allocate(capacity: rows)
        y.initialize(repeating: 0, count: rows)
        pool = threads > 1 ? palr_pool_create(Int32(threads)) : nil
        self.threads = pool.map { Int(palr_pool_size($0)) } ?? 1
        // 64 distinct quantized rows, tiled: the values do not change the kernel's speed.
        let x = UnsafeMutablePointer<Float>.allocate(capacity: cols)   // scratch, freed below
        defer { x.deallocate() }
        var state: UInt64 = 1
        func uniform() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
        let distinct = 64
        for r in 0..<distinct {
            for i in 0..<cols { x[i] = 0.04 * uniform() }
            palr_quantize_row_q4_0(x, weights + r * rowBytes, cols)
        }
        for r in distinct..<(copies * rows) {
            (weights + r * rowBytes).copyMemory(from: weights + (r % distinct) * rowBytes, byteCount: rowBytes)
        }
        for i in 0..<cols { x[i] = uniform() }
        palr_kernels().pointee.quantize_act(x, xq, cols)
    }

    deinit {
        if let pool { palr_pool_destroy(pool) }
        weights.deallocate(); xq.deallocate(); y.deallocate()
    }

    /// One y = W · x on the next copy of W. Allocates nothing.
    @inline(__always)
    func step() {
        let m = palr_weights(type: 2 /* Q4_0 */, w: weights + next * matrixBytes, row_bytes: rowBytes,
                             rows: Int32(Self.rows), cols: Int32(Self.cols))
        var args = palr_matvec_args(m: m, x: nil, xq: xq, y: y)
        palr_matvec(pool, &args)
        next = (next + 1) % copies
    }
}

// MARK: - (2) prompt GEMM

/// One prompt-path product, `batch` tokens × a model matrix, through
/// `LlamaSession.promptProduct`: the session's dequantization panels and scratch, its pool
/// threads, and OpenBLAS's sgemm, as every projection of `prefill` runs.
final class GEMMState {
    let model: LlamaModel
    let session: LlamaSession
    let w: WeightMatrix
    let batch: Int
    let x: UnsafeMutablePointer<Float>  // (batch, w.cols) input rows, owned here
    let y: UnsafeMutablePointer<Float>  // (batch, w.rows) output rows, owned here

    init(modelPath: String, batch: Int) throws {
        model = try LlamaModel(path: modelPath)
        model.gguf.file.adviseWillNeed()
        session = try LlamaSession(model: model, contextLength: batch + 1, maxBatch: batch, threads: defaultThreads,
                                   activations: .int8)
        guard let layer = model.weights.layers.first else { throw SetupError("\(modelPath) has no layers") }
        w = layer.wGate   // (ffn × dim): 5632 × 2048 on the 1B shape
        self.batch = batch
        x = .allocate(capacity: batch * w.cols)
        y = .allocate(capacity: batch * w.rows)
        for i in 0..<(batch * w.cols) { x[i] = Float(i % 13) * 0.0625 - 0.375 }
        y.initialize(repeating: 0, count: batch * w.rows)
    }

    deinit { x.deallocate(); y.deallocate() }

    var flops: Double { 2 * Double(batch) * Double(w.rows) * Double(w.cols) }

    @inline(__always)
    func step() throws { try session.promptProduct(w, x: x, y: y, batch: batch) }
}

// MARK: - (3) decode step and prefill of a whole model

final class ForwardState {
    let model: LlamaModel
    let session: LlamaSession
    let prompt: [Int32]         // the prefill's tokens (built once; prefill reads it)
    /// Decode steps run at this position: the cache is rewound to it before each one, so
    /// every step attends over the same `decodeAt` tokens.
    let decodeAt = 16
    private var token: Int32 = 1

    init(modelPath: String, promptTokens: Int) throws {
        model = try LlamaModel(path: modelPath)
        model.gguf.file.adviseWillNeed()
        let ctx = max(promptTokens, decodeAt) + 2
        guard ctx <= model.config.contextLength else { throw SetupError("\(modelPath): context too short") }
        // int8 decode activations, as `palr bench` and the ranker run by default.
        session = try LlamaSession(model: model, contextLength: ctx, maxBatch: max(promptTokens, 1),
                                   threads: defaultThreads, activations: .int8)
        prompt = Fixtures.promptTokens(promptTokens, vocabulary: model.config.vocabSize)
        // Fill the cache up to the decode position; warms every weight page too.
        try session.prefill(Array(prompt.prefix(decodeAt)), logits: .last) { _, _ in }
        while session.position < decodeAt { token = try session.decode(token) { Sampler.argmax($0) } }
    }

    /// One decode step at position `decodeAt` (greedy). The session allocates nothing here.
    @inline(__always)
    func decodeStep() throws {
        try session.rewind(to: decodeAt)
        token = try session.decode(token) { Sampler.argmax($0) }
    }

    /// A prefill of the whole prompt from position 0 (logits of the last row only).
    @inline(__always)
    func prefill() throws {
        try session.rewind(to: 0)
        try session.prefill(prompt, logits: .last) { _, _ in }
    }
}

// MARK: - (4, 5, 7) the bundled model, catalog and demo history

/// The demo's setup (`palr demo`): the bundled catalog and model, a temporary history
/// store with the demo profiles imported, a Recommender over them.
final class PipelineState {
    /// The temporary folder of the store (one per process), removed by the teardown.
    static let folder = NSTemporaryDirectory() + "palr-bench-pipeline-\(getpid())"
    let store: HistoryStore
    let catalog: ItemCatalog
    let recommender: Recommender
    let profile: String
    let historyItems: [String]  // the profile's items, oldest first
    let prompt: String          // the letters-mode ranking prompt for that history

    init() throws {
        let folder = Self.folder
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        store = try HistoryStore(path: folder + "/history.sqlite")
        _ = try store.importFile(Fixtures.demoHistory, options: ImportOptions(format: .movieLensCSV))
        let catalog = try CatalogPack.open(path: Fixtures.bundledCatalog)
        self.catalog = catalog
        let model = try LlamaModel(path: Fixtures.bundledModel)
        let tokenizer = try SentencePieceTokenizer(gguf: model.gguf)
        var defaulted: [String] = []
        let settings = try PALRSettings(gguf: model.gguf, defaulted: &defaulted)
        let ranker = try Ranker(model: model, tokenizer: tokenizer, settings: settings, threads: defaultThreads)
        recommender = try Recommender(ranker: ranker, catalog: catalog, store: store,
                                      modelID: "palr-ml-small-q4_0.gguf#\(model.gguf.fingerprint)")
        guard let first = try store.profiles().first else { throw SetupError("\(Fixtures.demoHistory) has no profile") }
        profile = first.name
        let items = try store.recent(profile: first.name, limit: 100_000).map(\.item)
        historyItems = items
        let retrieval = recommender.retriever.retrieve(history: items, count: Retriever.defaultCount)
        let candidates = retrieval.items.map {
            Candidate(id: catalog.ids[Int($0.index)], title: catalog.titles[Int($0.index)])
        }
        let titles = items.compactMap { catalog.index(of: $0).map { catalog.titles[Int($0)] } }
        prompt = ranker.prompt(mode: .letters, history: titles, profile: nil, candidates: candidates)
    }

    static func removeFolder() { try? FileManager.default.removeItem(atPath: folder) }
}

// MARK: - (6) history store

/// A temporary store of synthetic profiles (`profiles` × `perProfile` interactions), for
/// `recent(profile:limit:)` (`palr history bench` times the same call on ML-100K).
final class HistoryState {
    /// The temporary folder of the store (one per process), removed by the teardown.
    static let folder = NSTemporaryDirectory() + "palr-bench-history-\(getpid())"
    let store: HistoryStore
    let names: [String]
    private var next = 0

    init(profiles: Int = 200, perProfile: Int = 250) throws {
        let folder = Self.folder
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        store = try HistoryStore(path: folder + "/history.sqlite")
        names = (0..<profiles).map { "user\($0)" }
        var state: UInt64 = 7
        for (p, name) in names.enumerated() {
            let batch = (0..<perProfile).map { i -> NewInteraction in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return NewInteraction(profile: name, item: "item\((state >> 33) % 20_000)", kind: .view,
                                      timestamp: 1_600_000_000 + Int64(p * perProfile + i))
            }
            _ = try store.record(batch, createProfiles: true)
        }
    }

    /// The next profile's 50 most recent interactions.
    @inline(__always)
    func recent() throws -> Int {
        let name = names[next]
        next = (next + 1) % names.count
        return try store.recent(profile: name, limit: 50).count
    }

    static func removeFolder() { try? FileManager.default.removeItem(atPath: folder) }
}
