// Random-weight LLaMA GGUF files of standard shapes, for benchmarks that need
// a model of the right size but not a trained one.
//
// Quantized tensors are generated directly as blocks: a random fp16 scale near
// the one a weight of standard deviation 0.02 would get, and random nibbles (Q4_0)
// or bytes (Q8_0). No float intermediate, so a 7B file takes seconds, most of it
// writing. Norm weights are 1 ± 0.05. The same seed gives the same file.

import CKernels
import Dispatch
import GGUF
import Tokenizer

public enum RandomShape: String, Sendable, CaseIterable {
    case tiny
    case b1 = "1b"
    case b7 = "7b"

    public var config: HFConfig {
        switch self {
        case .tiny:
            return HFConfig(hiddenSize: 256, intermediateSize: 768, layerCount: 4, headCount: 8, kvHeadCount: 4, headDim: 32,
                            vocabSize: 1024, contextLength: 512, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: .none, tiedEmbeddings: false)
        case .b1:  // TinyLlama-1.1B
            return HFConfig(hiddenSize: 2048, intermediateSize: 5632, layerCount: 22, headCount: 32, kvHeadCount: 4, headDim: 64,
                            vocabSize: 32000, contextLength: 2048, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: .none, tiedEmbeddings: false)
        case .b7:  // LLaMA-2-7B
            return HFConfig(hiddenSize: 4096, intermediateSize: 11008, layerCount: 32, headCount: 32, kvHeadCount: 32, headDim: 128,
                            vocabSize: 32000, contextLength: 4096, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: .none, tiedEmbeddings: false)
        }
    }
}

public enum RandomModel {
    /// The standard deviation the random weights imitate.
    static let sigma: Float = 0.02

    /// Writes a random model of `shape`; tensor types follow `options` exactly as
    /// `palr-convert hf` would choose them.
    /// `tokenizer`, when given, supplies a real vocabulary of the shape's size (e.g.
    /// LLaMA-2's for 1b/7b), so benchmark prompts tokenize as they would on a real model.
    public static func write(shape: RandomShape, options: ConvertOptions, seed: UInt64, to path: String,
                             tokenizer: SentencePieceTokenizer? = nil,
                             progress: (Int, Int, GGUFTensorPlan) -> Void = { _, _, _ in }) throws(ConvertError) {
        try write(config: shape.config, shapeName: "the \(shape.rawValue) shape", name: "palr-random-\(shape.rawValue)",
                  options: options, seed: seed, to: path, tokenizer: tokenizer, progress: progress)
    }

    /// Writes a random model of the shape `config` describes (a checkpoint's config.json:
    /// a model of a fine-tune's shape, to measure before converting it, or a shape for a
    /// parity check). `shapeName` names it in errors; `name` is `general.name` unless
    /// `options.name` is set. The same config, seed and types give the same file, and a
    /// config equal to a standard shape gives that shape's tensors.
    public static func write(config: HFConfig, shapeName: String = "the config", name: String = "palr-random",
                             options: ConvertOptions, seed: UInt64, to path: String,
                             tokenizer: SentencePieceTokenizer? = nil,
                             progress: (Int, Int, GGUFTensorPlan) -> Void = { _, _, _ in }) throws(ConvertError) {
        if let tokenizer, tokenizer.vocabSize != config.vocabSize {
            throw .badConfig(path: "--tokenizer", key: "vocab_size", reason: "the tokenizer has \(tokenizer.vocabSize) pieces; \(shapeName) needs \(config.vocabSize)")
        }
        // The placeholder vocabulary has <unk>, <s>, </s> and the 256 byte pieces at least.
        if tokenizer == nil && config.vocabSize < placeholderMinimum {
            throw .badConfig(path: shapeName, key: "vocab_size", reason: "\(config.vocabSize) is below the \(placeholderMinimum) "
                             + "pieces of the placeholder vocabulary (<unk>, <s>, </s>, 256 byte pieces); give --tokenizer")
        }
        let plans = LlamaNames.mappings(config).map { m in
            GGUFTensorPlan(name: m.gguf, dims: m.hfShape.reversed(), type: ConversionPlan.tensorType(m, config: config, options: options).0)
        }
        var meta = try ConversionPlan.modelMetadata(config, name: options.name ?? name, type: options.type)
        meta += tokenizer?.ggufMetadata ?? vocabulary(size: config.vocabSize)
        meta += options.settings.ggufMetadata
        let writer: GGUFWriter
        do { writer = try GGUFWriter(path: path, metadata: meta, tensors: plans) } catch { throw .gguf(error) }

        let largest = plans.map(\.byteCount).max() ?? 0
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: max(largest, 1), alignment: 64)
        defer { out.deallocate() }
        for (i, p) in plans.enumerated() {
            let bytes = UnsafeMutableRawBufferPointer(rebasing: out[0..<p.byteCount])
            fill(bytes, plan: p, seed: seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15, threads: options.threads)
            do { try writer.write(tensor: p.name, bytes: UnsafeRawBufferPointer(bytes)) } catch { throw .gguf(error) }
            progress(i, plans.count, p)
        }
        do { try writer.finish() } catch { throw .gguf(error) }
    }

    /// Random data for one tensor, split by rows between threads.
    static func fill(_ out: UnsafeMutableRawBufferPointer, plan p: GGUFTensorPlan, seed: UInt64, threads: Int) {
        let cols = p.dims[0], rows = p.elementCount / cols
        let rowBytes = p.type.byteCount(elements: cols)!
        let isNorm = p.dims.count == 1
        let parts = max(1, min(threads, rows))
        let base = out.baseAddress!
        parallel(parts) { part in
            let range = (rows * part / parts)..<(rows * (part + 1) / parts)
            let row = UnsafeMutablePointer<Float>.allocate(capacity: cols)
            defer { row.deallocate() }
            for r in range {
                // One generator per row: the file does not depend on the thread count.
                var rng = SplitMix64(seed: seed ^ (UInt64(r) &* 0xD1B5_4A32_D192_ED03))
                let start = base + r * rowBytes
                switch p.type {
                case .q4_0, .q8_0:
                    // Scale: σ over the standard deviation of the integer codes
                    // (uniform nibbles − 8: ≈4.6; uniform int8: ≈73.9), jittered ±25%.
                    let spread: Float = p.type == .q4_0 ? 4.61 : 73.9
                    let blockBytes = p.type.bytesPerBlock
                    for blk in stride(from: start, to: start + rowBytes, by: blockBytes) {
                        let d = sigma / spread * (0.75 + 0.5 * rng.unit())
                        blk.storeBytes(of: palr_fp32_to_fp16(d).littleEndian, as: UInt16.self)
                        // 16 (Q4_0) or 32 (Q8_0) random code bytes after the scale.
                        for q in stride(from: 2, to: blockBytes, by: 8) {
                            (blk + q).storeBytes(of: rng.next(), as: UInt64.self)
                        }
                    }
                case .f32, .f16, .bf16, .i32:
                    let a = sigma * 1.7320508  // uniform(−a, a) has standard deviation σ
                    for c in 0..<cols {
                        row[c] = isNorm ? 1 + 0.1 * (rng.unit() - 0.5) : a * (2 * rng.unit() - 1)
                    }
                    p.type.quantize(row, into: start, count: cols)
                }
            }
        }
    }

    /// A placeholder vocabulary of the right size: <unk>, <s>, </s>, the 256 byte
    /// tokens, then "tokN". Enough for a tokenizer to load; the text is meaningless.
    static let placeholderMinimum = 3 + 256

    static func vocabulary(size: Int) -> [(String, GGUFValue)] {
        var pieces = ["<unk>", "<s>", "</s>"] + (0...255).map { Vocabulary.bytePiece(UInt8($0)) }
        var types: [TokenType] = [.unknown, .control, .control] + Array(repeating: .byte, count: 256)
        var scores = [Float](repeating: 0, count: pieces.count)
        while pieces.count < size {
            scores.append(-Float(pieces.count))
            pieces.append("tok\(pieces.count)")
            types.append(.normal)
        }
        let v = Vocabulary(pieces: pieces, scores: scores, types: types, bos: 1, eos: 2)
        // The vocabulary is valid by construction (one <unk>, all 256 byte pieces, unique texts).
        return (try? SentencePieceTokenizer(vocabulary: v).ggufMetadata) ?? []
    }
}

/// SplitMix64: a tiny, fast, well-mixed generator (Steele, Lea, Flood 2014).
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }
}
