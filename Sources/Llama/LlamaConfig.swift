import FileSafety
import GGUF

/// Hyperparameters of a LLaMA-architecture model, read from the `llama.*` keys.
public struct LlamaConfig: Sendable, Equatable {
    public enum RopeScaling: Sendable, Equatable {
        case none
        /// Positions are divided by `factor` (transformers' "linear").
        case linear(factor: Double)
    }

    public var contextLength: Int      // llama.context_length
    public var dim: Int                // llama.embedding_length
    public var layerCount: Int         // llama.block_count
    public var ffnDim: Int             // llama.feed_forward_length
    public var headCount: Int          // llama.attention.head_count
    public var kvHeadCount: Int        // llama.attention.head_count_kv (default: head_count)
    public var headDim: Int            // llama.attention.key_length (default: dim / head_count)
    public var ropeDim: Int            // llama.rope.dimension_count (default: head_dim)
    public var ropeFreqBase: Double    // llama.rope.freq_base (default 10000)
    public var ropeScaling: RopeScaling
    public var rmsEpsilon: Double      // llama.attention.layer_norm_rms_epsilon (default 1e-5)
    public var vocabSize: Int          // llama.vocab_size, else token_embd's row count

    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }
    /// Query heads that share one key/value head (GQA).
    public var groupSize: Int { headCount / kvHeadCount }

    public init(contextLength: Int, dim: Int, layerCount: Int, ffnDim: Int, headCount: Int,
                kvHeadCount: Int, headDim: Int, ropeDim: Int, ropeFreqBase: Double,
                ropeScaling: RopeScaling, rmsEpsilon: Double, vocabSize: Int) {
        self.contextLength = contextLength
        self.dim = dim
        self.layerCount = layerCount
        self.ffnDim = ffnDim
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.ropeDim = ropeDim
        self.ropeFreqBase = ropeFreqBase
        self.ropeScaling = ropeScaling
        self.rmsEpsilon = rmsEpsilon
        self.vocabSize = vocabSize
    }

    /// Reads the config of a `general.architecture = "llama"` file.
    public init(gguf: GGUFFile) throws(LlamaError) {
        do {
            let arch = try gguf.requireString("general.architecture")
            guard arch == "llama" else { throw LlamaError.unsupportedArchitecture(arch) }
            let p = "llama."
            contextLength = try gguf.requireInt(p + "context_length")
            dim = try gguf.requireInt(p + "embedding_length")
            layerCount = try gguf.requireInt(p + "block_count")
            ffnDim = try gguf.requireInt(p + "feed_forward_length")
            headCount = try gguf.requireInt(p + "attention.head_count")
            kvHeadCount = try gguf.optionalInt(p + "attention.head_count_kv") ?? headCount
            guard headCount > 0, kvHeadCount > 0 else {
                throw LlamaError.invalidConfig("head counts must be positive (heads \(headCount), kv heads \(kvHeadCount))")
            }
            headDim = try gguf.optionalInt(p + "attention.key_length") ?? (dim / headCount)
            if let v = try gguf.optionalInt(p + "attention.value_length"), v != headDim {
                throw LlamaError.invalidConfig("attention.value_length \(v) differs from key_length \(headDim)")
            }
            ropeDim = try gguf.optionalInt(p + "rope.dimension_count") ?? headDim
            ropeFreqBase = try gguf.optionalDouble(p + "rope.freq_base") ?? 10000
            rmsEpsilon = try gguf.optionalDouble(p + "attention.layer_norm_rms_epsilon") ?? 1e-5
            let scalingType = try gguf.optionalString(p + "rope.scaling.type") ?? "none"
            switch scalingType {
            case "none":
                ropeScaling = .none
            case "linear":
                let factor = try gguf.optionalDouble(p + "rope.scaling.factor") ?? 1
                guard factor > 0, factor.isFinite else {
                    throw LlamaError.invalidConfig("rope.scaling.factor \(factor) must be a finite positive number")
                }
                ropeScaling = factor == 1 ? .none : .linear(factor: factor)
            default:
                throw LlamaError.unsupported("rope scaling type '\(scalingType)' (palr supports none and linear)")
            }
            if let vs = try gguf.optionalInt(p + "vocab_size") {
                vocabSize = vs
            } else if let emb = gguf.tensor(named: "token_embd.weight"), emb.dims.count == 2 {
                vocabSize = emb.dims[1]
            } else {
                throw LlamaError.missingTensor("token_embd.weight")
            }
        } catch let e as LlamaError {
            throw e
        } catch let e as GGUFError {
            throw .gguf(e)
        } catch {
            throw .invalidConfig("\(error)")
        }
        try validate()
    }

    public func validate() throws(LlamaError) {
        func check(_ ok: Bool, _ what: String) throws(LlamaError) { if !ok { throw .invalidConfig(what) } }
        try check(dim > 0 && layerCount > 0 && ffnDim > 0 && vocabSize > 0 && contextLength > 0,
                  "dimensions must be positive (dim \(dim), layers \(layerCount), ffn \(ffnDim), vocab \(vocabSize), context \(contextLength))")
        try check(headCount % kvHeadCount == 0, "head_count \(headCount) is not a multiple of head_count_kv \(kvHeadCount)")
        try check(headDim > 0 && headDim % 2 == 0, "head dimension \(headDim) must be positive and even")
        // attention.key_length sets it alone: 2^62 passed, and head_count × it overflowed (a trap).
        try check(headDim <= 1 << 16, "head dimension \(headDim) (attention.key_length) is implausibly large")
        try check(ropeDim > 0 && ropeDim <= headDim && ropeDim % 2 == 0, "rope.dimension_count \(ropeDim) must be even and ≤ head dimension \(headDim)")
        try check(ropeFreqBase > 1 && ropeFreqBase.isFinite, "rope.freq_base \(ropeFreqBase) must be a finite number greater than 1")
        // An infinite factor divided every position to 0: all tokens at one position, silently.
        if case .linear(let factor) = ropeScaling {
            try check(factor > 0 && factor.isFinite, "rope.scaling.factor \(factor) must be a finite positive number")
        }
        try check(rmsEpsilon > 0 && rmsEpsilon < 1, "layer_norm_rms_epsilon \(rmsEpsilon) is out of range")
        try check(dim <= 1 << 16 && ffnDim <= 1 << 18 && vocabSize <= 1 << 22 && layerCount <= 1024 && headCount <= 1024,
                  "dimensions are implausibly large")
    }
}

public enum LlamaError: Error, Equatable, CustomStringConvertible {
    case gguf(GGUFError)
    case unsupportedArchitecture(String)
    case unsupported(String)
    case invalidConfig(String)
    case missingTensor(String)
    case unexpectedTensor(String)
    case wrongShape(tensor: String, expected: [Int], found: [Int])
    case unsupportedType(tensor: String, type: String)
    case contextFull(position: Int, tokens: Int, capacity: Int)
    case tokenOutOfRange(token: Int32, vocab: Int)
    case invalidArgument(String)
    /// The model produced a NaN or +∞ logit (or only −∞): its weights are broken.
    case nonFiniteLogits(index: Int, value: Float)
    /// The address-space limit (RLIMIT_AS, `ulimit -v`) leaves `available` bytes, fewer than
    /// the `needed` bytes of OpenBLAS buffers for `threads` threads (see `BLAS.admitCallers`).
    case addressSpace(limit: Int, available: Int, needed: Int, threads: Int)
    /// `prefill(stopIf:)` was told to stop; the cache holds `position` tokens (the batch
    /// in progress was dropped whole).
    case stopped(position: Int)

    /// One line, whatever the file held (see `oneLine`).
    public var description: String { oneLine(message) }

    private var message: String {
        switch self {
        case .gguf(let e): return e.description
        case .unsupportedArchitecture(let a): return "unsupported architecture '\(a)' (palr runs 'llama')"
        case .unsupported(let w): return "unsupported: \(w)"
        case .invalidConfig(let w): return "invalid model config: \(w)"
        case .missingTensor(let t): return "tensor '\(t)' is missing"
        case .unexpectedTensor(let t): return "unexpected tensor '\(t)' (not part of a LLaMA model)"
        case .wrongShape(let t, let e, let f): return "tensor '\(t)' has shape \(f), expected \(e) (fastest-first)"
        case .unsupportedType(let t, let ty): return "tensor '\(t)' has type \(ty), which palr cannot compute with here"
        case .contextFull(let p, let n, let c): return "context is full: \(n) tokens at position \(p) exceed the \(c)-token context"
        case .tokenOutOfRange(let t, let v): return "token id \(t) is outside the vocabulary (0..<\(v))"
        case .invalidArgument(let w): return w
        case .nonFiniteLogits(let i, let v):
            return "the model's logits are not finite (token \(i): \(v)); its weights are damaged or overflow"
        case .addressSpace(let limit, let available, let needed, let threads):
            let mib = { (b: Int) in b >> 20 }
            return "the address-space limit (ulimit -v: \(mib(limit)) MiB) leaves \(mib(available)) MiB, and OpenBLAS "
                + "needs about \(mib(needed)) MiB of buffers for \(threads) thread\(threads == 1 ? "" : "s"): "
                + "raise the limit or use fewer threads (-t)"
        case .stopped(let p): return "stopped at the caller's request with \(p) tokens in the cache"
        }
    }
}
