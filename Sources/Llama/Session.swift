import CKernels
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

/// A float buffer allocated once and freed in `deinit`.
final class FloatBuffer {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(_ count: Int) {
        self.count = max(count, 1)
        pointer = .allocate(capacity: self.count)
        pointer.initialize(repeating: 0, count: self.count)
    }

    deinit { pointer.deallocate() }
}

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

    // Activations, (maxBatch × n) row-major, owned by this session.
    private let x: FloatBuffer        // (batch, dim) residual stream
    private let xb: FloatBuffer       // (batch, dim) normed input / attention output
    private let q: FloatBuffer        // (batch, n_heads*head_dim)
    private let k: FloatBuffer        // (batch, n_kv_heads*head_dim)
    private let v: FloatBuffer        // (batch, n_kv_heads*head_dim)
    private let att: FloatBuffer      // (batch, n_heads*head_dim) attention output per head
    private let hb: FloatBuffer       // (batch, ffn) gate
    private let hb2: FloatBuffer      // (batch, ffn) up
    private let scores: FloatBuffer   // (context) attention scores of one head
    private let logits: FloatBuffer   // (logitChunk, vocab)
    private let gathered: FloatBuffer // (logitChunk, dim) final-normed rows that need logits
    private let keyCache: FloatBuffer   // (layer, context, kv_dim)
    private let valueCache: FloatBuffer // (layer, context, kv_dim)
    private let ropeTable: FloatBuffer  // (context, rope_dim/2, 2) cos, sin
    /// Dequantization panel for prompt matmuls (≤ 16 MiB).
    private let scratch: FloatBuffer

    public static let maxScratchBytes = 16 << 20

    public init(model: LlamaModel, contextLength: Int? = nil, maxBatch: Int = 64, logitChunk: Int = 16) throws(LlamaError) {
        let c = model.config
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
        q = FloatBuffer(maxBatch * c.qDim)
        k = FloatBuffer(maxBatch * c.kvDim)
        v = FloatBuffer(maxBatch * c.kvDim)
        att = FloatBuffer(maxBatch * c.qDim)
        hb = FloatBuffer(maxBatch * c.ffnDim)
        hb2 = FloatBuffer(maxBatch * c.ffnDim)
        scores = FloatBuffer(ctx)
        logits = FloatBuffer(logitChunk * c.vocabSize)
        gathered = FloatBuffer(logitChunk * c.dim)
        keyCache = FloatBuffer(c.layerCount * ctx * c.kvDim)
        valueCache = FloatBuffer(c.layerCount * ctx * c.kvDim)
        let largestRow = model.weights.matrices.filter { $0.type != .f32 }.map(\.cols).max() ?? 1
        let largestMatrix = model.weights.matrices.filter { $0.type != .f32 }.map { $0.rows * $0.cols }.max() ?? 1
        scratch = FloatBuffer(max(largestRow, min(largestMatrix, Self.maxScratchBytes / 4)))

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
    }

    /// Bytes held by the KV cache.
    public var kvCacheBytes: Int { (keyCache.count + valueCache.count) * 4 }
    /// Bytes of the dequantization scratch panel.
    public var scratchBytes: Int { scratch.count * 4 }
    /// Bytes of all session buffers.
    public var bufferBytes: Int {
        [x, xb, q, k, v, att, hb, hb2, scores, logits, gathered, keyCache, valueCache, ropeTable, scratch]
            .reduce(0) { $0 + $1.count * 4 }
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
        try checkTokens(tokens)
        var wanted: [Int]
        switch rows {
        case .none: wanted = []
        case .last: wanted = tokens.isEmpty ? [] : [tokens.count - 1]
        case .all: wanted = Array(0..<tokens.count)
        case .indices(let i):
            guard i.allSatisfy({ $0 >= 0 && $0 < tokens.count }), zip(i, i.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw LlamaError.invalidArgument("logit row indices must be ascending and inside the batch")
            }
            wanted = i
        }
        var start = 0
        var w = 0
        while start < tokens.count {
            let n = min(maxBatch, tokens.count - start)
            var local: [Int] = []
            while w < wanted.count, wanted[w] < start + n {
                local.append(wanted[w] - start)
                w += 1
            }
            try tokens.withUnsafeBufferPointer { buf throws in
                try forward(UnsafeBufferPointer(rebasing: buf[start..<(start + n)]), logitRows: local) { i, l in
                    try body(start + i, l)
                }
            }
            start += n
        }
    }

    /// Runs one token at `position` through the fused quantized path and calls
    /// `body` with its logits (valid only inside `body`).
    public func decode<R>(_ token: Int32, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        try checkTokens(CollectionOfOne(token))
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
            let kRow = keyCache.pointer + (l * contextLength + pos) * c.kvDim
            let vRow = valueCache.pointer + (l * contextLength + pos) * c.kvDim
            matvec(L.wq, xb, q.pointer, rows: 0..<c.qDim)
            matvec(L.wk, xb, kRow, rows: 0..<c.kvDim)
            matvec(L.wv, xb, vRow, rows: 0..<c.kvDim)
            let table = ropeTable.pointer + pos * c.ropeDim
            rope(q.pointer, heads: c.headCount, headDim: c.headDim, ropeDim: c.ropeDim, table: table)
            rope(kRow, heads: c.kvHeadCount, headDim: c.headDim, ropeDim: c.ropeDim, table: table)
            attention(layer: l, query: q.pointer, out: att.pointer, upTo: pos + 1)
            matvec(L.wo, att.pointer, xb, rows: 0..<c.dim)
            for i in 0..<c.dim { x[i] += xb[i] }

            // x = h + ffn(norm(h))
            L.ffnNorm.withUnsafeBufferPointer { rmsnorm(xb, x, $0.baseAddress!, c.dim, eps: eps) }
            matvec(L.wGate, xb, hb.pointer, rows: 0..<c.ffnDim)
            matvec(L.wUp, xb, hb2.pointer, rows: 0..<c.ffnDim)
            swiglu(hb.pointer, hb2.pointer, c.ffnDim)
            matvec(L.wDown, hb.pointer, xb, rows: 0..<c.dim)
            for i in 0..<c.dim { x[i] += xb[i] }
        }
        position = pos + 1
        w.outputNorm.withUnsafeBufferPointer { rmsnorm(xb, x, $0.baseAddress!, c.dim, eps: eps) }
        matvec(w.output, xb, logits.pointer, rows: 0..<c.vocabSize)
        return try body(UnsafeBufferPointer(start: logits.pointer, count: c.vocabSize))
    }

    private func checkTokens<C: Collection>(_ tokens: C) throws(LlamaError) where C.Element == Int32 {
        guard position + tokens.count <= contextLength else {
            throw .contextFull(position: position, tokens: tokens.count, capacity: contextLength)
        }
        for t in tokens where t < 0 || Int(t) >= config.vocabSize {
            throw .tokenOutOfRange(token: t, vocab: config.vocabSize)
        }
    }

    /// out(n_heads*head_dim) = softmax(q·Kᵀ/√d) V over cache positions 0..<count of `layer`.
    private func attention(layer l: Int, query: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, upTo count: Int) {
        let c = config
        let s = scores.pointer
        let scale = 1 / Float(c.headDim).squareRoot()
        let kBase = keyCache.pointer + l * contextLength * c.kvDim
        let vBase = valueCache.pointer + l * contextLength * c.kvDim
        for h in 0..<c.headCount {
            let qh = query + h * c.headDim
            let kvOff = (h / c.groupSize) * c.headDim
            for t in 0..<count {
                s[t] = palr_dot_f32(qh, kBase + t * c.kvDim + kvOff, c.headDim) * scale
            }
            softmax(s, count)
            let oh = out + h * c.headDim
            oh.update(repeating: 0, count: c.headDim)
            for t in 0..<count {
                let a = s[t]
                let vt = vBase + t * c.kvDim + kvOff
                for i in 0..<c.headDim { oh[i] += a * vt[i] }
            }
        }
    }

    /// One batch (≤ maxBatch tokens) through every layer with GEMMs.
    private func forward(_ tokens: UnsafeBufferPointer<Int32>, logitRows: [Int],
                         _ body: (Int, UnsafeBufferPointer<Float>) throws -> Void) throws {
        let c = config
        let n = tokens.count
        let pos0 = position
        let w = model.weights
        let eps = Float(c.rmsEpsilon)
        let x = self.x.pointer, xb = self.xb.pointer
        let sc = scratch.pointer, scn = scratch.count
        for (i, t) in tokens.enumerated() {
            w.tokenEmbedding.type.dequantize(w.tokenEmbedding.row(Int(t)), into: x + i * c.dim, count: c.dim)
        }

        for l in 0..<c.layerCount {
            let L = w.layers[l]
            L.attnNorm.withUnsafeBufferPointer { nw in
                for i in 0..<n { rmsnorm(xb + i * c.dim, x + i * c.dim, nw.baseAddress!, c.dim, eps: eps) }
            }
            matmul(L.wq, xb, q.pointer, batch: n, scratch: sc, scratchCount: scn)
            matmul(L.wk, xb, k.pointer, batch: n, scratch: sc, scratchCount: scn)
            matmul(L.wv, xb, v.pointer, batch: n, scratch: sc, scratchCount: scn)
            for i in 0..<n {
                let table = ropeTable.pointer + (pos0 + i) * c.ropeDim
                rope(q.pointer + i * c.qDim, heads: c.headCount, headDim: c.headDim, ropeDim: c.ropeDim, table: table)
                rope(k.pointer + i * c.kvDim, heads: c.kvHeadCount, headDim: c.headDim, ropeDim: c.ropeDim, table: table)
            }
            // Append this batch's keys and values to the cache, then attend causally.
            let slot = (l * contextLength + pos0) * c.kvDim
            (keyCache.pointer + slot).update(from: k.pointer, count: n * c.kvDim)
            (valueCache.pointer + slot).update(from: v.pointer, count: n * c.kvDim)
            for i in 0..<n {
                attention(layer: l, query: q.pointer + i * c.qDim, out: att.pointer + i * c.qDim, upTo: pos0 + i + 1)
            }
            matmul(L.wo, att.pointer, xb, batch: n, scratch: sc, scratchCount: scn)
            for i in 0..<(n * c.dim) { x[i] += xb[i] }

            L.ffnNorm.withUnsafeBufferPointer { nw in
                for i in 0..<n { rmsnorm(xb + i * c.dim, x + i * c.dim, nw.baseAddress!, c.dim, eps: eps) }
            }
            matmul(L.wGate, xb, hb.pointer, batch: n, scratch: sc, scratchCount: scn)
            matmul(L.wUp, xb, hb2.pointer, batch: n, scratch: sc, scratchCount: scn)
            swiglu(hb.pointer, hb2.pointer, n * c.ffnDim)
            matmul(L.wDown, hb.pointer, xb, batch: n, scratch: sc, scratchCount: scn)
            for i in 0..<(n * c.dim) { x[i] += xb[i] }
        }
        position = pos0 + n

        // Logits only for the rows asked for, `logitChunk` rows per output matmul.
        var start = 0
        while start < logitRows.count {
            let m = min(logitChunk, logitRows.count - start)
            for j in 0..<m {
                let row = logitRows[start + j]
                w.outputNorm.withUnsafeBufferPointer { nw in
                    rmsnorm(gathered.pointer + j * c.dim, x + row * c.dim, nw.baseAddress!, c.dim, eps: eps)
                }
            }
            matmul(w.output, gathered.pointer, logits.pointer, batch: m, scratch: sc, scratchCount: scn)
            for j in 0..<m {
                try body(logitRows[start + j], UnsafeBufferPointer(start: logits.pointer + j * c.vocabSize, count: c.vocabSize))
            }
            start += m
        }
    }
}
