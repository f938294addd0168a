import CKernels
import COpenBLAS
import GGUF

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which positions of a prefill batch produce logits.
public enum LogitRows: Sendable {
    case none
    case last
    case all
    /// Indices into the batch (0-based), ascending.
    case indices([Int])
}

/// How decode feeds activations to Q4_0/Q8_0 weights.
public enum DecodeActivations: String, Sendable, CaseIterable {
    /// Weights widened to float in registers; decode equals prefill to rounding.
    case float32
    /// Activations quantized to int8 per 32-block (llama.cpp's Q4_0 × Q8_0 scheme).
    case int8
}

/// log(softmax(logits)[index]), accumulated in Double.
public func logSoftmax<C: Collection>(_ logits: C, at index: Int) -> Float where C.Element == Float, C.Index == Int {
    var m = -Float.infinity
    for v in logits where v > m { m = v }
    var sum = 0.0
    for v in logits { sum += exp(Double(v - m)) }
    return Float(Double(logits[index] - m) - log(sum))
}

/// How the KV cache stores keys and values.
public enum KVCacheType: String, Sendable, CaseIterable {
    /// 4 bytes a value: attention reads exactly what the projections wrote.
    case f32
    /// 2 bytes a value (IEEE half, llama.cpp's default): half the memory and half the
    /// attention's reads, at about three significant digits per key and value.
    case f16

    var elementSize: Int { self == .f32 ? 4 : 2 }
}

/// Keys and values of a prompt prefix, (layer, token, kv_dim) each, in the cache's
/// element type; owns its memory.
public final class KVSnapshot: @unchecked Sendable {
    public let layers: Int
    public let tokenCount: Int
    public let kvDim: Int
    public let type: KVCacheType
    let keys: UnsafeMutableRawPointer
    let values: UnsafeMutableRawPointer

    init(layers: Int, tokens: Int, kvDim: Int, type: KVCacheType) {
        self.layers = layers
        self.tokenCount = tokens
        self.kvDim = kvDim
        self.type = type
        let bytes = max(1, layers * tokens * kvDim) * type.elementSize
        keys = .allocate(byteCount: bytes, alignment: 16)
        values = .allocate(byteCount: bytes, alignment: 16)
    }

    public var byteCount: Int { 2 * layers * tokenCount * kvDim * type.elementSize }

    deinit {
        keys.deallocate()
        values.deallocate()
    }
}

/// An Int buffer allocated once and freed in `deinit`.
final class IntBuffer {
    let pointer: UnsafeMutablePointer<Int>
    init(_ count: Int) {
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }
    deinit { pointer.deallocate() }
}

/// A zeroed buffer of `count` elements, allocated once and freed in `deinit`. Through
/// calloc: a large buffer is fresh zero pages that take memory only where they are
/// written, so a KV cache sized for the whole context costs what its used positions hold
/// (filling it with zeros touched every page: a 7B ranker's 2,048-position cache took
/// 2 GiB for a 641-token prompt). Should calloc fail, Swift's allocator is asked, and
/// fails as it always did.
final class ZeroedBuffer<Element: BitwiseCopyable> {
    let pointer: UnsafeMutablePointer<Element>
    let count: Int
    /// Whether the memory came from calloc (freed with free) or from Swift's allocator.
    private let fromCalloc: Bool

    init(_ count: Int) {
        self.count = max(count, 1)
        let bytes = self.count * MemoryLayout<Element>.stride
        let raw: UnsafeMutableRawPointer
        if let zeroed = calloc(self.count, MemoryLayout<Element>.stride) {
            raw = zeroed
            fromCalloc = true
        } else {
            raw = .allocate(byteCount: bytes, alignment: MemoryLayout<Element>.alignment)
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            fromCalloc = false
        }
        pointer = raw.bindMemory(to: Element.self, capacity: self.count)
    }

    deinit {
        if fromCalloc { free(pointer) } else { UnsafeMutableRawPointer(pointer).deallocate() }
    }
}

/// fp32 activations, caches and scratch.
typealias FloatBuffer = ZeroedBuffer<Float>
/// IEEE half floats (raw UInt16): an fp16 KV cache.
typealias HalfBuffer = ZeroedBuffer<UInt16>

/// One inference stream over a model: the KV cache and every buffer a forward pass
/// touches, all allocated in `init`. Neither `prefill` nor `decode` allocates.
///
/// Tokens are appended at `position`; `rewind(to:)` drops the cache tail so a
/// caller can reuse a shared prefix.
public final class LlamaSession {
    public let model: LlamaModel
    public let config: LlamaConfig
    /// KV cache capacity in tokens.
    public let contextLength: Int
    /// Largest number of tokens one forward call processes; longer prompts are chunked.
    public let maxBatch: Int
    /// Rows of logits computed per output matmul (bounded memory for `.all`).
    public let logitChunk: Int
    /// Tokens in the KV cache.
    public private(set) var position = 0
    /// Threads for decode matvecs (and OpenBLAS's own threads during prefill).
    public let threads: Int
    /// How decode feeds activations to quantized weights.
    public let activations: DecodeActivations

    // Activations, (maxBatch × n) row-major, owned by this session.
    private let x: FloatBuffer        // (batch, dim) residual stream
    private let xb: FloatBuffer       // (batch, dim) normed input / attention output
    // The attention half of a layer uses q, k, v and att; the feed-forward half uses hb
    // and hb2. Neither half's buffers are live in the other, so both halves share
    // `work` (owned here; the six pointers are views into it): at batch 512 on the 7B
    // shape that saves 32 MiB, keeping peak RSS within file + KV cache + 100 MiB.
    private let work: FloatBuffer
    private let q: UnsafeMutablePointer<Float>    // (batch, n_heads*head_dim)
    private let k: UnsafeMutablePointer<Float>    // (batch, n_kv_heads*head_dim)
    private let v: UnsafeMutablePointer<Float>    // (batch, n_kv_heads*head_dim)
    private let att: UnsafeMutablePointer<Float>  // (batch, n_heads*head_dim) attention output per head
    private let hb: UnsafeMutablePointer<Float>   // (batch, ffn) gate
    private let hb2: UnsafeMutablePointer<Float>  // (batch, ffn) up
    private let scores: FloatBuffer   // (context) attention scores of one head
    private let logits: FloatBuffer   // (logitChunk, vocab)
    private let gathered: FloatBuffer // (logitChunk, dim) final-normed rows that need logits
    /// How the KV cache stores its values.
    public let kvType: KVCacheType
    // The KV cache, owned here: fp32 in keyCache/valueCache, or fp16 in keys16/values16
    // (the other pair then holds one element).
    private let keyCache: FloatBuffer   // (layer, context, kv_dim) when kvType == .f32
    private let valueCache: FloatBuffer // (layer, context, kv_dim) when kvType == .f32
    private let keys16: HalfBuffer      // (layer, context, kv_dim) when kvType == .f16
    private let values16: HalfBuffer    // (layer, context, kv_dim) when kvType == .f16
    /// With an f16 cache: one layer's keys and values widened to fp32 for the batched
    /// attention's GEMMs, (2, context, kv_dim), and a decode step's new key and value
    /// rows and one head's value row, (2 * kv_dim + head_dim). One element each for f32.
    private let unpacked: FloatBuffer
    private let rowTemp: FloatBuffer
    private let ropeTable: FloatBuffer  // (context, rope_dim/2, 2) cos, sin
    /// Dequantization panels for prompt matmuls, `scratchPerThread` floats per pool
    /// thread (≤ 16 MiB in all).
    private let scratch: FloatBuffer
    private let scratchPerThread: Int
    /// (max(dim, q_dim, ffn) / 32) blocks: the current decode input quantized to int8.
    private let xq: UnsafeMutablePointer<palr_q8_block>
    private let xqBlocks: Int
    /// (threads, batch, context): each pool thread's attention scores of one head during prefill.
    private let batchScores: FloatBuffer
    /// The batched attention the pool threads are running (set before each run).
    private var attentionLayer = 0, attentionCount = 0, attentionTotal = 0
    // Layout of the current batch, (maxBatch) each: token i has RoPE position
    // `tokPos[i]`, writes its K/V to cache slot `tokSlot[i]`, and attends to cache
    // slots [0, tokPrefix[i]) and [tokSegment[i], tokSlot[i]]. Plain causal
    // prefill is tokPrefix = tokSegment = 0; candidate continuations that share a
    // prompt use tokPrefix = prompt length, tokSegment = the candidate's first slot.
    private let tokPos: IntBuffer
    private let tokSlot: IntBuffer
    private let tokPrefix: IntBuffer
    private let tokSegment: IntBuffer
    /// The activation scheme of the decode step in progress.
    private var int8Step = false
    /// Prefill chunks of at most this many tokens take the matrix-vector path (float
    /// activations, so they equal the GEMM path to rounding): dequantizing every weight
    /// panel for one or two tokens costs more than reading the quantized weights once.
    public static let smallPrefill = 2
    /// Decode worker threads, owned by this session.
    let pool: ThreadPool
    /// The pool's threads admitted as OpenBLAS callers: under an address-space limit,
    /// room for their sgemm buffers was checked when the session was created.
    private let blasCallers: BLASCallers

    public static let maxScratchBytes = 16 << 20

    /// Rows per prompt-matmul panel and columns per converted chunk. Measured on the 1B
    /// shape (README, Performance): a 512 × 256 chunk (512 KiB of floats) is multiplied
    /// while still in L2, and 512 rows share one packing of the activations.
    /// `PALR_PANEL_ROWS` and `PALR_K_CHUNK` (0: whole rows) override them, for tuning.
    public static let panelRows: Int = {
        if let v = getenv("PALR_PANEL_ROWS"), let n = Int(String(cString: v)), n > 0 { return n }
        return 512
    }()
    public static let kChunk: Int = {
        if let v = getenv("PALR_K_CHUNK"), let n = Int(String(cString: v)), n >= 0 { return n / 32 * 32 }
        return 256
    }()

    public init(model: LlamaModel, contextLength: Int? = nil, maxBatch: Int = 64, logitChunk: Int = 16,
                threads: Int? = nil, activations: DecodeActivations = .float32,
                kvCache: KVCacheType = .f32) throws(LlamaError) {
        let c = model.config
        let nThreads = max(1, threads ?? ThreadPool.defaultThreadCount)
        self.threads = nThreads
        self.activations = activations
        // Creating the pool makes OpenBLAS single-threaded, once per process (ThreadPool).
        pool = ThreadPool(threads: nThreads)
        self.model = model
        self.config = c
        let ctx = contextLength ?? c.contextLength
        guard ctx > 0, ctx <= 1 << 20 else { throw .invalidArgument("context length \(ctx) is out of range") }
        guard maxBatch > 0, logitChunk > 0 else { throw .invalidArgument("batch sizes must be positive") }
        self.contextLength = ctx
        self.maxBatch = maxBatch
        self.logitChunk = logitChunk
        x = FloatBuffer(maxBatch * c.dim)
        xb = FloatBuffer(maxBatch * max(c.dim, c.qDim))
        work = FloatBuffer(maxBatch * max(2 * c.qDim + 2 * c.kvDim, 2 * c.ffnDim))
        q = work.pointer
        k = q + maxBatch * c.qDim
        v = k + maxBatch * c.kvDim
        att = v + maxBatch * c.kvDim
        hb = work.pointer
        hb2 = hb + maxBatch * c.ffnDim
        scores = FloatBuffer(ctx)
        batchScores = FloatBuffer(pool.count * maxBatch * ctx)
        tokPos = IntBuffer(maxBatch)
        tokSlot = IntBuffer(maxBatch)
        tokPrefix = IntBuffer(maxBatch)
        tokSegment = IntBuffer(maxBatch)
        xqBlocks = max(c.dim, c.qDim, c.ffnDim) / 32 + 1
        xq = .allocate(capacity: xqBlocks)
        xq.initialize(repeating: palr_q8_block(), count: xqBlocks)
        logits = FloatBuffer(logitChunk * c.vocabSize)
        gathered = FloatBuffer(logitChunk * c.dim)
        kvType = kvCache
        let cacheCount = c.layerCount * ctx * c.kvDim
        keyCache = FloatBuffer(kvCache == .f32 ? cacheCount : 1)
        valueCache = FloatBuffer(kvCache == .f32 ? cacheCount : 1)
        keys16 = HalfBuffer(kvCache == .f16 ? cacheCount : 1)
        values16 = HalfBuffer(kvCache == .f16 ? cacheCount : 1)
        unpacked = FloatBuffer(kvCache == .f16 ? 2 * ctx * c.kvDim : 1)
        rowTemp = FloatBuffer(kvCache == .f16 ? 2 * c.kvDim + c.headDim : 1)
        let largestRow = model.weights.matrices.filter { $0.type != .f32 }.map(\.cols).max() ?? 1
        let largestMatrix = model.weights.matrices.filter { $0.type != .f32 }.map { $0.rows * $0.cols }.max() ?? 1
        // One panel's converted chunk plus a small batch's transposed result per thread.
        let chunk = Self.kChunk > 0 ? min(Self.kChunk, largestRow) : largestRow
        scratchPerThread = max(largestRow, min(largestMatrix + Self.panelRows * smallBatch,
                                               Self.panelRows * (chunk + smallBatch),
                                               Self.maxScratchBytes / 4 / pool.count))
        scratch = FloatBuffer(scratchPerThread * pool.count)

        // RoPE angles for every position: θ = (pos / scale) · base^(-2i/rope_dim).
        ropeTable = FloatBuffer(ctx * c.ropeDim)
        let scale: Double
        if case .linear(let f) = c.ropeScaling { scale = f } else { scale = 1 }
        let half = c.ropeDim / 2
        for pos in 0..<ctx {
            for i in 0..<half {
                let freq = 1.0 / pow(c.ropeFreqBase, Double(2 * i) / Double(c.ropeDim))
                let theta = Double(pos) / scale * freq
                ropeTable.pointer[(pos * half + i) * 2] = Float(cos(theta))
                ropeTable.pointer[(pos * half + i) * 2 + 1] = Float(sin(theta))
            }
        }

        // Last, with every buffer of the session mapped: each pool thread calls sgemm,
        // and OpenBLAS maps a 128 MiB buffer per call in flight, which under `ulimit -v`
        // it would retry forever (a hang). Refuse now, with the numbers, instead.
        blasCallers = try BLASCallers(threads: pool.count)
    }

    deinit { xq.deallocate() }

    /// Bytes held by the KV cache.
    public var kvCacheBytes: Int { kvBytes(positions: contextLength) }
    /// Bytes of keys and values for `positions` positions of every layer.
    private func kvBytes(positions: Int) -> Int { 2 * config.layerCount * positions * config.kvDim * kvType.elementSize }
    /// Bytes of the dequantization scratch panel.
    public var scratchBytes: Int { scratch.count * 4 }
    /// Bytes of all session buffers.
    public var bufferBytes: Int {
        [x, xb, work, scores, batchScores, logits, gathered, keyCache, valueCache, ropeTable, scratch, unpacked, rowTemp]
            .reduce(0) { $0 + $1.count * 4 } + (keys16.count + values16.count) * 2
            + xqBlocks * MemoryLayout<palr_q8_block>.stride
    }

    /// Forgets cached tokens from `newPosition` on.
    public func rewind(to newPosition: Int) throws(LlamaError) {
        guard newPosition >= 0, newPosition <= position else {
            throw .invalidArgument("cannot rewind to \(newPosition): the cache holds \(position) tokens")
        }
        position = newPosition
    }

    /// Runs `tokens` at positions `position ..< position + count`, appending to the
    /// KV cache, and calls `body(batchIndex, logits)` for each requested row in
    /// order. The logits buffer is valid only inside `body`.
    public func prefill(_ tokens: [Int32], logits rows: LogitRows = .last,
                        _ body: (Int, UnsafeBufferPointer<Float>) throws -> Void = { _, _ in }) throws {
        try prefill(tokens, logits: rows, stopIf: nil, body)
    }

    /// `prefill`, stoppable. `stopIf`, when given, is asked before each layer of a batch
    /// (and before each token of a batch small enough to run token by token): `true` throws
    /// `LlamaError.stopped` with `position` at the end of the last whole batch or token. The
    /// stopped batch's keys and values, written for some layers only, lie past `position`,
    /// where the next prefill overwrites them.
    public func prefill(_ tokens: [Int32], logits rows: LogitRows, stopIf: (() -> Bool)?,
                        _ body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws {
        try checkTokens(tokens)
        if case .indices(let i) = rows {
            guard i.allSatisfy({ $0 >= 0 && $0 < tokens.count }), zip(i, i.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw LlamaError.invalidArgument("logit row indices must be ascending and inside the batch")
            }
        }
        // Chunks of ≤ maxBatch tokens; `w` walks the requested indices (no arrays are built).
        var start = 0
        var w = 0
        while start < tokens.count {
            let n = min(maxBatch, tokens.count - start)
            let end = start + n
            let first: Int, count: Int
            switch rows {
            case .none: (first, count) = (0, 0)
            case .last: (first, count) = tokens.count - 1 < end ? (tokens.count - 1 - start, 1) : (0, 0)
            case .all: (first, count) = (0, n)
            case .indices(let idx):
                let w0 = w
                while w < idx.count, idx[w] < end { w += 1 }
                (first, count) = (w0, w - w0)
            }
            if n <= Self.smallPrefill {
                for i in 0..<n {
                    if let stopIf, stopIf() { throw LlamaError.stopped(position: position) }
                    let wanted = (0..<count).contains { j in
                        if case .indices(let idx) = rows { return idx[first + j] - start == i }
                        return first + j == i
                    }
                    decodeStep(tokens[start + i], int8: false, logits: wanted)
                    if wanted { try body(start + i, UnsafeBufferPointer(start: logits.pointer, count: config.vocabSize)) }
                }
                start = end
                continue
            }
            for i in 0..<n {
                tokPos.pointer[i] = position + i
                tokSlot.pointer[i] = position + i
                tokPrefix.pointer[i] = 0
                tokSegment.pointer[i] = 0
            }
            try tokens.withUnsafeBufferPointer { buf throws in
                let chunk = UnsafeBufferPointer(rebasing: buf[start..<end])
                try forward(chunk, logitCount: count, logitRow: { j in
                    if case .indices(let idx) = rows { return idx[first + j] - start }
                    return first + j
                }, stopIf: stopIf) { i, l in try body(start + i, l) }
            }
            position += n
            start = end
        }
    }

    /// The bytes a snapshot of `positions` positions takes (keys and values).
    public func snapshotByteCount(positions: Int) -> Int { kvBytes(positions: positions) }

    /// The raw start of layer `l`'s keys and values in the cache.
    private func cacheLayer(_ l: Int) -> (keys: UnsafeMutableRawPointer, values: UnsafeMutableRawPointer) {
        let offset = l * contextLength * config.kvDim
        if kvType == .f16 { return (UnsafeMutableRawPointer(keys16.pointer + offset), UnsafeMutableRawPointer(values16.pointer + offset)) }
        return (UnsafeMutableRawPointer(keyCache.pointer + offset), UnsafeMutableRawPointer(valueCache.pointer + offset))
    }

    /// A copy of the cached keys and values of positions 0..<n (`positions`, at most
    /// `position`; default all of them), so a later request that starts with the same
    /// tokens can skip recomputing them.
    public func snapshot(positions: Int? = nil) -> KVSnapshot {
        let c = config
        let n = max(0, min(positions ?? position, position))
        let snap = KVSnapshot(layers: c.layerCount, tokens: n, kvDim: c.kvDim, type: kvType)
        let rowBytes = c.kvDim * kvType.elementSize
        for l in 0..<c.layerCount {
            let cache = cacheLayer(l), dst = l * n * rowBytes
            (snap.keys + dst).copyMemory(from: cache.keys, byteCount: n * rowBytes)
            (snap.values + dst).copyMemory(from: cache.values, byteCount: n * rowBytes)
        }
        return snap
    }

    /// Restores the first `tokens` positions of a snapshot (default: all of them).
    public func restore(_ snap: KVSnapshot, tokens: Int? = nil) throws(LlamaError) {
        let c = config
        let n = tokens ?? snap.tokenCount
        guard snap.layers == c.layerCount, snap.kvDim == c.kvDim, snap.type == kvType else {
            throw .invalidArgument("the snapshot belongs to another model shape or KV cache type")
        }
        guard n >= 0, n <= snap.tokenCount, n <= contextLength else {
            throw .invalidArgument("cannot restore \(n) tokens from a \(snap.tokenCount)-token snapshot into a \(contextLength)-token context")
        }
        let rowBytes = c.kvDim * kvType.elementSize
        for l in 0..<c.layerCount {
            let cache = cacheLayer(l), src = l * snap.tokenCount * rowBytes
            cache.keys.copyMemory(from: snap.keys + src, byteCount: n * rowBytes)
            cache.values.copyMemory(from: snap.values + src, byteCount: n * rowBytes)
        }
        position = n
    }

    /// Scores continuations of the cached prefix in one batched pass. Every
    /// continuation is placed after the prefix's `position` tokens, attends to the
    /// prefix and causally to itself, never to another continuation, and starts at
    /// RoPE position `position`, exactly as if it were the only one. Returns each
    /// continuation's per-token log-probabilities; the first token's comes from
    /// `prefixLogits`, the logits of the prefix's last position. The cache keeps only
    /// the prefix afterwards (`position` is unchanged). `stopIf`, when given, is asked
    /// before each layer, as `prefill` asks it; a stop throws `LlamaError.stopped`.
    public func scoreContinuations(_ continuations: [[Int32]], prefixLogits: [Float],
                                   stopIf: (() -> Bool)? = nil) throws -> [[Float]] {
        let c = config
        let p0 = position
        guard prefixLogits.count == c.vocabSize else {
            throw LlamaError.invalidArgument("prefix logits have \(prefixLogits.count) entries, the vocabulary \(c.vocabSize)")
        }
        let total = continuations.reduce(0) { $0 + $1.count }
        guard p0 + total <= contextLength else {
            throw LlamaError.contextFull(position: p0, tokens: total, capacity: contextLength)
        }
        var result: [[Float]] = []
        var owner: [(cand: Int, index: Int)] = []   // flat token -> (continuation, index)
        var firstSlot: [Int] = []
        owner.reserveCapacity(total)
        for (ci, cont) in continuations.enumerated() {
            guard !cont.isEmpty else { throw LlamaError.invalidArgument("continuation \(ci) is empty") }
            try checkTokens(cont)
            firstSlot.append(p0 + owner.count)
            for j in 0..<cont.count { owner.append((ci, j)) }
            var lp = [Float](repeating: 0, count: cont.count)
            lp[0] = logSoftmax(prefixLogits, at: Int(cont[0]))
            result.append(lp)
        }
        let flat = continuations.flatMap { $0 }
        var start = 0
        while start < total {
            let n = min(maxBatch, total - start)
            var rows: [Int] = []       // batch rows whose logits score the next token
            for i in 0..<n {
                let (ci, j) = owner[start + i]
                tokPos.pointer[i] = p0 + j
                tokSlot.pointer[i] = firstSlot[ci] + j
                tokPrefix.pointer[i] = p0
                tokSegment.pointer[i] = firstSlot[ci]
                if j + 1 < continuations[ci].count { rows.append(i) }
            }
            try flat.withUnsafeBufferPointer { buf throws in
                try forward(UnsafeBufferPointer(rebasing: buf[start..<(start + n)]), logitCount: rows.count,
                            logitRow: { rows[$0] }, stopIf: stopIf) { i, logits in
                    let (ci, j) = owner[start + i]
                    result[ci][j + 1] = logSoftmax(logits, at: Int(continuations[ci][j + 1]))
                }
            }
            start += n
        }
        return result
    }

    /// Runs one token at `position` through the fused quantized path and calls
    /// `body` with its logits (valid only inside `body`).
    public func decode<R>(_ token: Int32, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        guard position < contextLength else { throw LlamaError.contextFull(position: position, tokens: 1, capacity: contextLength) }
        try checkToken(token)
        decodeStep(token, int8: activations == .int8, logits: true)
        return try body(UnsafeBufferPointer(start: logits.pointer, count: config.vocabSize))
    }

    /// One token through the matrix-vector path at `position` (checked by the caller).
    /// `int8` picks the activation scheme for this step; `logits: false` skips the output layer.
    private func decodeStep(_ token: Int32, int8: Bool, logits wantLogits: Bool) {
        let useInt8 = self.int8Step
        self.int8Step = int8
        defer { self.int8Step = useInt8 }
        let c = config
        let pos = position
        let w = model.weights
        let eps = Float(c.rmsEpsilon)
        let x = self.x.pointer, xb = self.xb.pointer
        w.tokenEmbedding.type.dequantize(w.tokenEmbedding.row(Int(token)), into: x, count: c.dim)

        for l in 0..<c.layerCount {
            let L = w.layers[l]
            // h = x + attention(norm(x))
            L.attnNorm.withUnsafeBufferPointer { rmsnorm(xb, x, $0.baseAddress!, c.dim, eps: eps) }
            // The new key and value: straight into an fp32 cache, or into rowTemp first for fp16.
            let slot = (l * contextLength + pos) * c.kvDim
            let half = kvType == .f16
            let kRow = half ? rowTemp.pointer : keyCache.pointer + slot
            let vRow = half ? rowTemp.pointer + c.kvDim : valueCache.pointer + slot
            let xbq = quantizeInput(xb, c.dim)
            matvec(L.wq, xb, xbq, q, L.wk, kRow, L.wv, vRow)
            let table = ropeTable.pointer + pos * c.ropeDim
            rope(q, heads: c.headCount, headDim: c.headDim, ropeDim: c.ropeDim, table: table)
            rope(kRow, heads: c.kvHeadCount, headDim: c.headDim, ropeDim: c.ropeDim, table: table)
            if half {
                palr_fp32_to_fp16_row(kRow, keys16.pointer + slot, c.kvDim)
                palr_fp32_to_fp16_row(vRow, values16.pointer + slot, c.kvDim)
            }
            attention(layer: l, query: q, out: att, upTo: pos + 1)
            matvec(L.wo, att, quantizeInput(att, c.qDim), xb)
            for i in 0..<c.dim { x[i] += xb[i] }

            // x = h + ffn(norm(h))
            L.ffnNorm.withUnsafeBufferPointer { rmsnorm(xb, x, $0.baseAddress!, c.dim, eps: eps) }
            let xbq2 = quantizeInput(xb, c.dim)
            matvec(L.wGate, xb, xbq2, hb, L.wUp, hb2)
            swiglu(hb, hb2, c.ffnDim)
            matvec(L.wDown, hb, quantizeInput(hb, c.ffnDim), xb)
            for i in 0..<c.dim { x[i] += xb[i] }
        }
        position = pos + 1
        guard wantLogits else { return }
        w.outputNorm.withUnsafeBufferPointer { rmsnorm(xb, x, $0.baseAddress!, c.dim, eps: eps) }
        matvec(w.output, xb, quantizeInput(xb, c.dim), logits.pointer)
    }

    /// The int8 copy of a decode input, when that mode is on (nil means float activations).
    private func quantizeInput(_ x: UnsafePointer<Float>, _ n: Int) -> UnsafePointer<palr_q8_block>? {
        guard int8Step else { return nil }
        palr_kernels().pointee.quantize_act(x, xq, n)
        return UnsafePointer(xq)
    }

    /// y = W x over the session's thread pool, fused on the quantized blocks.
    private func matvec(_ w: WeightMatrix, _ x: UnsafePointer<Float>, _ xq: UnsafePointer<palr_q8_block>?,
                        _ y: UnsafeMutablePointer<Float>) {
        var args = palr_matvec_args(m: w.kernelView, x: x, xq: xq, y: y)
        palr_matvec(pool.raw, &args)
    }

    /// Two or three products of the same input in one pool run (q/k/v, gate/up).
    private func matvec(_ w0: WeightMatrix, _ x: UnsafePointer<Float>, _ xq: UnsafePointer<palr_q8_block>?,
                        _ y0: UnsafeMutablePointer<Float>, _ w1: WeightMatrix, _ y1: UnsafeMutablePointer<Float>,
                        _ w2: WeightMatrix? = nil, _ y2: UnsafeMutablePointer<Float>? = nil) {
        func args(_ w: WeightMatrix, _ y: UnsafeMutablePointer<Float>) -> palr_matvec_args {
            palr_matvec_args(m: w.kernelView, x: x, xq: xq, y: y)
        }
        var a0 = args(w0, y0), a1 = args(w1, y1)
        if let w2, let y2 {
            var a2 = args(w2, y2)
            palr_matvec_multi(pool.raw, &a0, &a1, &a2)
        } else {
            palr_matvec_multi(pool.raw, &a0, &a1, nil)
        }
    }

    private func matmul(_ w: WeightMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int) {
        var args = matmulArgs(w, x, y, batch: batch)
        palr_matmul(pool.raw, &args)
    }

    /// y (batch × w.rows) = x (batch × w.cols) · wᵀ through this session's prompt path: the
    /// panels, dequantization scratch, pool threads and OpenBLAS calls of each projection in
    /// `prefill`. For benchmarks of that path alone (tools/bench/package). `x` (batch ×
    /// w.cols floats) and `y` (batch × w.rows floats) are the caller's; `w` is one of this
    /// session's model matrices or no wider than its widest. Allocates nothing.
    public func promptProduct(_ w: WeightMatrix, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                              batch: Int) throws(LlamaError) {
        guard batch > 0, batch <= maxBatch else {
            throw .invalidArgument("batch \(batch) is outside 1...\(maxBatch)")
        }
        // A chunk of the widest row must fit one thread's slice of the scratch.
        let chunk = Self.kChunk > 0 ? min(Self.kChunk, w.cols) : w.cols
        guard w.type == .f32 || chunk <= scratchPerThread else {
            throw .invalidArgument("\(w.name): rows of \(w.cols) are wider than this session's scratch")
        }
        matmul(w, x, y, batch: batch)
    }

    /// The session's arguments for one prompt-path product (see `Llama.matmul`).
    private func matmulArgs(_ w: WeightMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                            batch: Int) -> palr_matmul_args {
        Llama.matmulArgs(w, x, y, batch: batch, scratch: scratch.pointer, scratchPerThread: scratchPerThread,
                         panelRows: Self.panelRows, kChunk: Self.kChunk, threads: pool.count)
    }

    /// Non-generic on purpose: an unspecialised generic iterator allocates in debug builds.
    private func checkTokens(_ tokens: [Int32]) throws(LlamaError) {
        guard position + tokens.count <= contextLength else {
            throw .contextFull(position: position, tokens: tokens.count, capacity: contextLength)
        }
        for i in 0..<tokens.count { try checkToken(tokens[i]) }
    }

    private func checkToken(_ t: Int32) throws(LlamaError) {
        guard t >= 0, Int(t) < config.vocabSize else { throw .tokenOutOfRange(token: t, vocab: config.vocabSize) }
    }


    /// out(n_heads*head_dim) = softmax(q·Kᵀ/√d) V over cache positions 0..<count of `layer`.
    private func attention(layer l: Int, query: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, upTo count: Int) {
        let c = config
        let s = scores.pointer
        let scale = 1 / Float(c.headDim).squareRoot()
        let half = kvType == .f16
        let kBase = keyCache.pointer + l * contextLength * c.kvDim
        let vBase = valueCache.pointer + l * contextLength * c.kvDim
        let kBase16 = keys16.pointer + (half ? l * contextLength * c.kvDim : 0)
        let vBase16 = values16.pointer + (half ? l * contextLength * c.kvDim : 0)
        let kernels = palr_kernels().pointee
        let dot = kernels.dot_f32!, dot16 = kernels.dot_f16_f32!, widen = kernels.dequant_f16!
        let vRow16 = rowTemp.pointer + 2 * c.kvDim   // (head_dim): one value row widened
        for h in 0..<c.headCount {
            let qh = query + h * c.headDim
            let kvOff = (h / c.groupSize) * c.headDim
            for t in 0..<count {
                let d = half ? dot16(kBase16 + t * c.kvDim + kvOff, qh, c.headDim) : dot(qh, kBase + t * c.kvDim + kvOff, c.headDim)
                s[t] = d * scale
            }
            softmax(s, count)
            let oh = out + h * c.headDim
            oh.update(repeating: 0, count: c.headDim)
            for t in 0..<count {
                let a = s[t]
                var vt = vBase + t * c.kvDim + kvOff
                if half {
                    widen(vBase16 + t * c.kvDim + kvOff, vRow16, c.headDim)
                    vt = vRow16
                }
                for i in 0..<c.headDim { oh[i] += a * vt[i] }
            }
        }
    }

    /// Attention of the `count` batch tokens (their K/V already in the cache) with two
    /// GEMMs per head over cache slots 0..<total: S = Q Kᵀ, masked to each token's
    /// visible slots (see `tokSlot`), then O = softmax(S) V. Heads are split over the
    /// pool; each thread's scores live in its slice of `batchScores` (batch × context),
    /// so memory is bounded by maxBatch.
    private func batchAttention(layer l: Int, count n: Int, total: Int) {
        attentionLayer = l
        attentionCount = n
        attentionTotal = total
        if kvType == .f16 {
            // The layer's cached keys and values of slots 0..<total widened once for the GEMMs.
            let widen = palr_kernels().pointee.dequant_f16!
            let offset = l * contextLength * config.kvDim
            widen(keys16.pointer + offset, unpacked.pointer, total * config.kvDim)
            widen(values16.pointer + offset, unpacked.pointer + contextLength * config.kvDim, total * config.kvDim)
        }
        palr_pool_run(pool.raw, Self.attentionTask, Unmanaged.passUnretained(self).toOpaque())
    }

    private static let attentionTask: palr_task_fn = { arg, ith, nth in
        guard let arg else { return }
        Unmanaged<LlamaSession>.fromOpaque(arg).takeUnretainedValue().attentionHeads(thread: Int(ith), of: Int(nth))
    }

    /// Heads h ≡ thread (mod threads) of the batched attention set up by `batchAttention`.
    private func attentionHeads(thread: Int, of threads: Int) {
        let c = config
        let l = attentionLayer, n = attentionCount, total = attentionTotal
        let s = batchScores.pointer + thread * maxBatch * contextLength
        let scale = 1 / Float(c.headDim).squareRoot()
        let half = kvType == .f16
        let kBase = half ? unpacked.pointer : keyCache.pointer + l * contextLength * c.kvDim
        let vBase = half ? unpacked.pointer + contextLength * c.kvDim : valueCache.pointer + l * contextLength * c.kvDim
        let hd = Int32(c.headDim), kv = Int32(c.kvDim), qd = Int32(c.qDim), ld = Int32(total)
        for h in stride(from: thread, to: c.headCount, by: threads) {
            let kvOff = (h / c.groupSize) * c.headDim
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(total), hd,
                        scale, q + h * c.headDim, qd, kBase + kvOff, kv, 0, s, ld)
            for i in 0..<n {
                let row = s + i * total
                let a = tokPrefix.pointer[i], b = tokSegment.pointer[i], slot = tokSlot.pointer[i]
                if b > a { (row + a).update(repeating: -.infinity, count: b - a) }
                if slot + 1 < total { (row + slot + 1).update(repeating: -.infinity, count: total - slot - 1) }
                softmax(row, slot + 1)
                if slot + 1 < total { (row + slot + 1).update(repeating: 0, count: total - slot - 1) }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), hd, Int32(total),
                        1, s, ld, vBase + kvOff, kv, 0, att + h * c.headDim, qd)
        }
    }

    /// One batch (≤ maxBatch tokens) through every layer with GEMMs.
    /// `logitRow(j)` for j in 0..<logitCount names the batch rows that need logits, ascending.
    private func forward(_ tokens: UnsafeBufferPointer<Int32>, logitCount: Int, logitRow: (Int) -> Int,
                         stopIf: (() -> Bool)? = nil,
                         _ body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws {
        let c = config
        let n = tokens.count
        let w = model.weights
        var total = 0
        for i in 0..<n { total = max(total, tokSlot.pointer[i] + 1) }
        let eps = Float(c.rmsEpsilon)
        let x = self.x.pointer, xb = self.xb.pointer
        for (i, t) in tokens.enumerated() {
            w.tokenEmbedding.type.dequantize(w.tokenEmbedding.row(Int(t)), into: x + i * c.dim, count: c.dim)
        }

        for l in 0..<c.layerCount {
            if let stopIf, stopIf() { throw LlamaError.stopped(position: position) }
            let L = w.layers[l]
            L.attnNorm.withUnsafeBufferPointer { nw in
                for i in 0..<n { rmsnorm(xb + i * c.dim, x + i * c.dim, nw.baseAddress!, c.dim, eps: eps) }
            }
            // q, k and v in one pool run: the threads meet once, not once per matrix.
            var aq = matmulArgs(L.wq, xb, q, batch: n), ak = matmulArgs(L.wk, xb, k, batch: n)
            var av = matmulArgs(L.wv, xb, v, batch: n)
            palr_matmul_multi(pool.raw, &aq, &ak, &av)
            for i in 0..<n {
                let table = ropeTable.pointer + tokPos.pointer[i] * c.ropeDim
                rope(q + i * c.qDim, heads: c.headCount, headDim: c.headDim, ropeDim: c.ropeDim, table: table)
                rope(k + i * c.kvDim, heads: c.kvHeadCount, headDim: c.headDim, ropeDim: c.ropeDim, table: table)
            }
            // Write this batch's keys and values to their cache slots, then attend.
            for i in 0..<n {
                let slot = (l * contextLength + tokSlot.pointer[i]) * c.kvDim
                if kvType == .f16 {
                    palr_fp32_to_fp16_row(k + i * c.kvDim, keys16.pointer + slot, c.kvDim)
                    palr_fp32_to_fp16_row(v + i * c.kvDim, values16.pointer + slot, c.kvDim)
                } else {
                    (keyCache.pointer + slot).update(from: k + i * c.kvDim, count: c.kvDim)
                    (valueCache.pointer + slot).update(from: v + i * c.kvDim, count: c.kvDim)
                }
            }
            batchAttention(layer: l, count: n, total: total)
            matmul(L.wo, att, xb, batch: n)
            for i in 0..<(n * c.dim) { x[i] += xb[i] }

            L.ffnNorm.withUnsafeBufferPointer { nw in
                for i in 0..<n { rmsnorm(xb + i * c.dim, x + i * c.dim, nw.baseAddress!, c.dim, eps: eps) }
            }
            // hb = silu(xb·gateᵀ) * (xb·upᵀ) in one pool run, combined panel by panel.
            var gate = matmulArgs(L.wGate, xb, hb, batch: n), up = matmulArgs(L.wUp, xb, hb2, batch: n)
            palr_matmul_swiglu(pool.raw, &gate, &up)
            matmul(L.wDown, hb, xb, batch: n)
            for i in 0..<(n * c.dim) { x[i] += xb[i] }
        }

        // Logits only for the rows asked for, `logitChunk` rows per output matmul.
        var start = 0
        while start < logitCount {
            let m = min(logitChunk, logitCount - start)
            for j in 0..<m {
                let row = logitRow(start + j)
                w.outputNorm.withUnsafeBufferPointer { nw in
                    rmsnorm(gathered.pointer + j * c.dim, x + row * c.dim, nw.baseAddress!, c.dim, eps: eps)
                }
            }
            matmul(w.output, gathered.pointer, logits.pointer, batch: m)
            for j in 0..<m {
                try body(logitRow(start + j), UnsafeBufferPointer(start: logits.pointer + j * c.vocabSize, count: c.vocabSize))
            }
            start += m
        }
    }
}
