import CKernels
import GGUF

/// A 2-D weight in the mmapped file: `rows` output features, each a row of `cols`
/// input features stored contiguously (GGUF dims are [cols, rows]).
/// The memory belongs to the `GGUFFile` mapping, which `LlamaModel` keeps alive.
public struct WeightMatrix: @unchecked Sendable {
    public let name: String
    public let type: GGMLType
    public let rows: Int
    public let cols: Int
    public let base: UnsafeRawPointer
    public let rowBytes: Int

    @inline(__always)
    public func row(_ r: Int) -> UnsafeRawPointer { base + r * rowBytes }

    public var byteCount: Int { rows * rowBytes }

    /// The matrix as the C kernels take it.
    var kernelView: palr_weights {
        palr_weights(type: Int32(type.rawValue), w: base, row_bytes: rowBytes, rows: Int32(rows), cols: Int32(cols))
    }
}

/// Per-layer weights. Shapes are (rows × cols) = (out × in).
public struct LayerWeights: Sendable {
    public let attnNorm: [Float]        // (dim)
    public let wq: WeightMatrix         // (n_heads*head_dim × dim)
    public let wk: WeightMatrix         // (n_kv_heads*head_dim × dim)
    public let wv: WeightMatrix         // (n_kv_heads*head_dim × dim)
    public let wo: WeightMatrix         // (dim × n_heads*head_dim)
    public let ffnNorm: [Float]         // (dim)
    public let wGate: WeightMatrix      // (ffn × dim)   w1
    public let wUp: WeightMatrix        // (ffn × dim)   w3
    public let wDown: WeightMatrix      // (dim × ffn)   w2
}

public struct LlamaWeights: Sendable {
    public let tokenEmbedding: WeightMatrix  // (vocab × dim): one row per token
    public let layers: [LayerWeights]
    public let outputNorm: [Float]           // (dim)
    public let output: WeightMatrix          // (vocab × dim); token_embd when tied
    public let tiedOutput: Bool

    /// Binds every tensor strictly: each expected tensor must exist with its exact
    /// shape and a supported type, and the file may hold nothing else.
    init(gguf: GGUFFile, config c: LlamaConfig) throws(LlamaError) {
        var used = Set<String>()

        func tensor(_ name: String, _ dims: [Int]) throws(LlamaError) -> GGUFTensorInfo {
            guard let t = gguf.tensor(named: name) else { throw .missingTensor(name) }
            // A trailing dimension of 1 is the same shape (some writers emit [n, 1]).
            var found = t.dims
            while found.count > dims.count, found.last == 1 { found.removeLast() }
            guard found == dims else { throw .wrongShape(tensor: name, expected: dims, found: t.dims) }
            used.insert(name)
            return t
        }
        func matrix(_ name: String, rows: Int, cols: Int) throws(LlamaError) -> WeightMatrix {
            let t = try tensor(name, [cols, rows])
            guard let type = t.type, type != .i32 else { throw .unsupportedType(tensor: name, type: t.typeInfo.name) }
            let data = gguf.data(of: t)
            guard let base = data.baseAddress else { throw .missingTensor(name) }
            return WeightMatrix(name: name, type: type, rows: rows, cols: cols, base: base, rowBytes: t.bytesPerRow)
        }
        func vector(_ name: String, _ n: Int) throws(LlamaError) -> [Float] {
            let t = try tensor(name, [n])
            guard let type = t.type, type.blockSize == 1, type != .i32 else { throw .unsupportedType(tensor: name, type: t.typeInfo.name) }
            guard let v = type.dequantize(gguf.data(of: t), count: n) else { throw .missingTensor(name) }
            return v
        }

        tokenEmbedding = try matrix("token_embd.weight", rows: c.vocabSize, cols: c.dim)
        var layers: [LayerWeights] = []
        for l in 0..<c.layerCount {
            let p = "blk.\(l)."
            layers.append(LayerWeights(
                attnNorm: try vector(p + "attn_norm.weight", c.dim),
                wq: try matrix(p + "attn_q.weight", rows: c.qDim, cols: c.dim),
                wk: try matrix(p + "attn_k.weight", rows: c.kvDim, cols: c.dim),
                wv: try matrix(p + "attn_v.weight", rows: c.kvDim, cols: c.dim),
                wo: try matrix(p + "attn_output.weight", rows: c.dim, cols: c.qDim),
                ffnNorm: try vector(p + "ffn_norm.weight", c.dim),
                wGate: try matrix(p + "ffn_gate.weight", rows: c.ffnDim, cols: c.dim),
                wUp: try matrix(p + "ffn_up.weight", rows: c.ffnDim, cols: c.dim),
                wDown: try matrix(p + "ffn_down.weight", rows: c.dim, cols: c.ffnDim)))
        }
        self.layers = layers
        outputNorm = try vector("output_norm.weight", c.dim)
        if gguf.tensor(named: "output.weight") != nil {
            output = try matrix("output.weight", rows: c.vocabSize, cols: c.dim)
            tiedOutput = false
        } else {
            output = tokenEmbedding
            tiedOutput = true
        }
        if let extra = gguf.tensors.first(where: { !used.contains($0.name) }) {
            throw .unexpectedTensor(extra.name)
        }
    }

    /// Every weight matrix, for statistics and scratch sizing.
    public var matrices: [WeightMatrix] {
        var all = [tokenEmbedding]
        for l in layers { all += [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown] }
        if !tiedOutput { all.append(output) }
        return all
    }
}

/// A loaded model: the mapping, its config and the bound weights.
public final class LlamaModel: @unchecked Sendable {
    public let gguf: GGUFFile
    public let config: LlamaConfig
    public let weights: LlamaWeights

    public init(gguf: GGUFFile) throws(LlamaError) {
        self.gguf = gguf
        config = try LlamaConfig(gguf: gguf)
        weights = try LlamaWeights(gguf: gguf, config: config)
    }

    public convenience init(path: String) throws(LlamaError) {
        let file: GGUFFile
        do { file = try GGUFFile(path: path) } catch { throw .gguf(error) }
        try self.init(gguf: file)
    }

    /// Bytes of weights one token's forward pass reads (all matrices plus one embedding row).
    public var weightBytesPerToken: Int {
        let w = weights
        var n = w.tokenEmbedding.rowBytes + w.output.byteCount
        for l in w.layers { n += [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown].reduce(0) { $0 + $1.byteCount } }
        return n
    }
}
