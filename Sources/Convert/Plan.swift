// Planning a conversion: read config.json, the safetensors headers, the
// tokenizer and the adapters; check every name, shape and dtype; decide each
// output tensor's type; build the GGUF metadata. Nothing here reads tensor data,
// so `--dry-run` is exactly this step.

import GGUF
import Tokenizer

public struct ConvertOptions: Sendable {
    /// The type of the weight matrices (`--type`).
    public var type: GGMLType = .q4_0
    /// The type of the output projection (and of token_embd when it is tied to the
    /// output); nil: Q8_0 when `type` is Q4_0, else `type` (see `outputType(for:)`).
    public var outputType: GGMLType?
    /// PEFT adapters merged in order (`--lora`).
    public var loraDirectories: [String] = []
    public var settings = PalrSettings()
    /// general.name; nil: the checkpoint folder's name.
    public var name: String?
    /// false: write no tokenizer.ggml.* keys (a checkpoint without tokenizer.model).
    public var includeTokenizer = true
    /// Threads per tensor.
    public var threads = 2

    public init() {}

    /// The default output-projection type: llama.cpp keeps the output at higher
    /// precision than the body (Q6_K for its Q4_0); palr has no K-quants, so Q8_0.
    public static func outputType(for body: GGMLType) -> GGMLType { body == .q4_0 ? .q8_0 : body }
}

/// One tensor to convert: its source, the patches merged into it and its output.
public struct TensorJob: Sendable {
    public let mapping: TensorMapping
    public let source: SafeTensor
    public let patches: [LoRAPatch]
    public let plan: GGUFTensorPlan
    /// The type `--type` asked for when the tensor fell back to F16 (rows not a
    /// whole number of 32-element blocks); nil when it did not fall back.
    public let fellBackFrom: GGMLType?
    /// The option that set `plan.type`, for the overflow message.
    public let typeChoice: TypeChoice

    public var rows: Int { mapping.isMatrix ? mapping.hfShape[0] : 1 }
    public var cols: Int { mapping.hfShape.last ?? 1 }
}

/// Which command-line option gave a tensor its output type and which one would give it
/// F32: a value too large for the type is reported with both, so the message never
/// suggests the option the user already gave (e.g. --type f32 when the type came from
/// --output-type).
public struct TypeChoice: Sendable, Equatable {
    /// E.g. "--output-type f16", or "--type q4_0 (the output projection's default for it is Q8_0)".
    public let chosenBy: String
    /// E.g. "--output-type f32".
    public let remedy: String

    public init(chosenBy: String, remedy: String) {
        self.chosenBy = chosenBy
        self.remedy = remedy
    }
}

/// Everything a conversion will do, checked, before any tensor data is read.
public struct ConversionPlan: Sendable {
    public let directory: String
    public let config: HFConfig
    public let options: ConvertOptions
    public let checkpoint: Checkpoint
    public let metadata: [(String, GGUFValue)]
    public let jobs: [TensorJob]
    /// Checkpoint tensors deliberately left out (rotary tables, a tied lm_head).
    public let skipped: [String]
    public let tokenizerPieces: Int?

    public var outputBytes: Int { jobs.reduce(0) { $0 + $1.plan.byteCount } }
    public var sourceBytes: Int { jobs.reduce(0) { $0 + $1.source.byteCount } }
    public var fallbacks: [TensorJob] { jobs.filter { $0.fellBackFrom != nil } }

    /// Every file planning read and converting will read, whatever its name (a shard
    /// may be called shard2.gguf): the output must not be one of them. The checkpoint's
    /// tokenizer files count even under --no-tokenizer: they are part of the checkpoint,
    /// which the next conversion reads whole.
    public var inputFiles: [String] {
        var files = [Files.join(directory, HFConfig.fileName)]
        files += checkpoint.index.map { [$0] } ?? []
        files += checkpoint.files.map(\.path)
        files += ["tokenizer.model", "tokenizer_config.json"].map { Files.join(directory, $0) }.filter(Files.exists)
        for dir in options.loraDirectories {
            files += [LoRAAdapter.configFile, LoRAAdapter.weightsFile].map { Files.join(dir, $0) }
        }
        return files
    }

    public init(directory: String, options: ConvertOptions) throws(ConvertError) {
        try Files.requireFolder(directory, missing: "the Hugging Face checkpoint folder",
                                expected: "the Hugging Face checkpoint folder (the one holding \(HFConfig.fileName))")
        try options.settings.validate()
        guard [.q4_0, .q8_0, .f16, .bf16, .f32].contains(options.type) else {
            throw .invalidArgument("--type \(options.type) is not supported")
        }
        self.directory = directory
        self.options = options
        let config = try HFConfig(directory: directory)
        self.config = config
        let checkpoint = try Checkpoint(directory: directory)
        self.checkpoint = checkpoint
        try Self.checkLayerCount(config, checkpoint)

        // Every checkpoint tensor is either mapped or deliberately skipped.
        let mappings = LlamaNames.mappings(config)
        let mapped = Set(mappings.map(\.hf))
        var skipped: [String] = []
        for name in checkpoint.names where !mapped.contains(name) {
            guard LlamaNames.isIgnorable(name, config) else {
                throw .unexpectedTensor(name: name, path: checkpoint[name]?.path ?? directory)
            }
            skipped.append(name)
        }
        self.skipped = skipped

        let adapters = try options.loraDirectories.map { (dir) throws(ConvertError) in
            try LoRAAdapter(directory: dir, checkpoint: checkpoint, config: config)
        }

        var jobs: [TensorJob] = []
        for m in mappings {
            guard let t = checkpoint[m.hf] else { throw .missingTensor(name: m.hf, where: directory) }
            guard t.shape == m.hfShape else {
                throw .wrongShape(tensor: m.hf, expected: m.hfShape, found: t.shape, path: t.path)
            }
            guard t.dtype.isConvertible else {
                throw .unsupported(path: t.path, key: "dtype of \(m.hf)", value: t.dtype.rawValue, reason: "palr reads F32, F16 and BF16 weights")
            }
            let patches = adapters.compactMap { $0.patches[m.hf] }
            let (type, fellBack) = Self.tensorType(m, config: config, options: options)
            let plan = GGUFTensorPlan(name: m.gguf, dims: m.hfShape.reversed(), type: type)
            jobs.append(TensorJob(mapping: m, source: t, patches: patches, plan: plan, fellBackFrom: fellBack,
                                  typeChoice: Self.typeChoice(m, config: config, options: options, fellBackFrom: fellBack)))
        }
        self.jobs = jobs

        var meta = try Self.modelMetadata(config, name: options.name ?? Files.baseName(directory), type: options.type)
        if options.includeTokenizer {
            let (metadata, pieces) = try Self.tokenizerMetadata(directory: directory, config: config)
            meta += metadata
            tokenizerPieces = pieces
        } else {
            tokenizerPieces = nil
        }
        meta += options.settings.ggufMetadata
        metadata = meta
    }

    /// num_hidden_layers against the layers the checkpoint holds (the `model.layers.N.`
    /// names of its safetensors headers), before any per-layer work is planned: a
    /// tensor of a layer past the count, or a count past the last layer present, is
    /// an error naming config.json.
    static func checkLayerCount(_ config: HFConfig, _ checkpoint: Checkpoint) throws(ConvertError) {
        var highest: (layer: Int, name: String)?
        for name in checkpoint.names where name.hasPrefix("model.layers.") {
            guard let l = LlamaNames.layerIndex(name) else { continue }
            if l >= config.layerCount {
                throw .tensorBeyondLayers(name: name, layer: l, layerCount: config.layerCount, path: checkpoint[name]?.path ?? checkpoint.directory)
            }
            if l > highest?.layer ?? -1 { highest = (l, name) }
        }
        let present = (highest?.layer ?? -1) + 1
        guard present == config.layerCount else {
            let holds = highest.map { "its last layer is \($0.layer) ('\($0.name)')" } ?? "it holds no model.layers.* tensors"
            throw .badConfig(path: Files.join(checkpoint.directory, HFConfig.fileName), key: "num_hidden_layers",
                             reason: "is \(config.layerCount), but the checkpoint has \(present) layer(s): \(holds)")
        }
    }

    /// The `tokenizer.ggml.*` keys from DIR/tokenizer.model (read by the Tokenizer module,
    /// which also checks that palr can run it), padded as llama.cpp pads a vocabulary
    /// smaller than the embedding (`[PADi]`, unused, score -1000); add_bos/add_eos from
    /// tokenizer_config.json when it says; the padding id from config.json when the
    /// tokenizer has none.
    static func tokenizerMetadata(directory: String, config: HFConfig) throws(ConvertError) -> ([(String, GGUFValue)], Int) {
        let path = Files.join(directory, "tokenizer.model")
        guard Files.exists(path) else {
            throw .missingFile(path: path, what: "the SentencePiece tokenizer; pass --no-tokenizer to convert the weights alone")
        }
        // Mapped here first, so a FIFO or folder is refused as such ("not a regular file
        // (a FIFO)") rather than blocking or reading as an empty file.
        let file = try Files.map(path)
        // An empty protobuf decodes to the proto's defaults (a unigram model without
        // pieces), so say what is really wrong first.
        if file.size == 0 {
            throw .badTokenizer(path: path, reason: "the file is empty (0 bytes); a SentencePiece model holds at least its pieces")
        }
        var v: Vocabulary
        do { v = try SentencePieceTokenizer(modelData: Array(file.bytes)).vocabulary } catch {
            throw .badTokenizer(path: path, reason: error.description)
        }
        guard v.pieces.count <= config.vocabSize else {
            throw .badTokenizer(path: path, reason: "it has \(v.pieces.count) pieces, more than vocab_size \(config.vocabSize)")
        }
        while v.pieces.count < config.vocabSize {
            v.pieces.append("[PAD\(v.pieces.count)]")
            v.scores.append(-1000)
            v.types.append(.unused)
        }
        if v.pad == nil, let p = config.padTokenId, p < config.vocabSize { v.pad = Int32(p) }
        let tcPath = Files.join(directory, "tokenizer_config.json")
        if Files.exists(tcPath) {
            let tc = try Files.readJSON(tcPath, what: "tokenizer settings")
            // A string "true" or a 1 is not taken as a boolean (nor silently as absent):
            // the flag decides whether prompts start with BOS, so a wrong guess is an error.
            func flag(_ key: String) throws(ConvertError) -> Bool? {
                guard let j = tc[key], !j.isNull else { return nil }
                guard let b = j.bool else { throw .badConfig(path: tcPath, key: key, reason: "is \(j.brief), not true or false") }
                return b
            }
            v.addBOS = try flag("add_bos_token") ?? v.addBOS
            v.addEOS = try flag("add_eos_token") ?? v.addEOS
        }
        do { return (try SentencePieceTokenizer(vocabulary: v).ggufMetadata, v.pieces.count) } catch {
            throw .badTokenizer(path: path, reason: error.description)
        }
    }

    /// The output type of one tensor, and the type it fell back from when its rows
    /// are not a whole number of blocks. Norms stay F32. The output projection (and
    /// token_embd when it is tied to the output) takes `options.outputType`.
    public static func tensorType(_ m: TensorMapping, config: HFConfig, options: ConvertOptions) -> (GGMLType, fellBackFrom: GGMLType?) {
        guard m.isMatrix else { return (.f32, nil) }
        let type = isOutputProjection(m, config) ? (options.outputType ?? ConvertOptions.outputType(for: options.type)) : options.type
        if m.hfShape[1] % type.blockSize != 0 { return (.f16, type) }
        return (type, nil)
    }

    /// The output projection (or the token embedding tied to it): --output-type's tensor.
    static func isOutputProjection(_ m: TensorMapping, _ config: HFConfig) -> Bool {
        m.gguf == "output.weight" || (config.tiedEmbeddings && m.gguf == "token_embd.weight")
    }

    /// The options behind `tensorType(m, …)`, named as the user gave them; `fellBackFrom`
    /// as `tensorType` returned it.
    public static func typeChoice(_ m: TensorMapping, config: HFConfig, options: ConvertOptions,
                                  fellBackFrom: GGMLType?) -> TypeChoice {
        guard m.isMatrix else { return TypeChoice(chosenBy: "norms, which are always F32", remedy: "--type f32") }
        let isOutput = isOutputProjection(m, config)
        var choice: TypeChoice
        if isOutput, let t = options.outputType {
            choice = TypeChoice(chosenBy: "--output-type \(Self.flag(t))", remedy: "--output-type f32")
        } else if isOutput {
            let asked = ConvertOptions.outputType(for: options.type)
            let why = asked == options.type ? "which the output projection follows without --output-type"
                : "for which the output projection's default is \(Self.flag(asked))"
            choice = TypeChoice(chosenBy: "--type \(Self.flag(options.type)) (\(why))", remedy: "--output-type f32 or --type f32")
        } else {
            choice = TypeChoice(chosenBy: "--type \(Self.flag(options.type))", remedy: "--type f32")
        }
        if isOutput && m.gguf == "token_embd.weight" {
            choice = TypeChoice(chosenBy: choice.chosenBy + ", as token_embd is tied to the output projection", remedy: choice.remedy)
        }
        if let from = fellBackFrom {
            choice = TypeChoice(chosenBy: choice.chosenBy + ", as F16 because rows of \(m.hfShape[1]) are not a multiple of "
                                + "\(from)'s block of \(from.blockSize)", remedy: choice.remedy)
        }
        return choice
    }

    /// A type as the --type flag spells it ("q4_0").
    static func flag(_ t: GGMLType) -> String { t.description.lowercased() }

    /// general.* and llama.* keys, in the order and with the value types of llama.cpp's converter.
    /// HFConfig(json:) already bounds every value; a config built in code is checked
    /// here too, each value against the GGUF type it is stored as (errors name the
    /// config.json key).
    public static func modelMetadata(_ config: HFConfig, name: String, type: GGMLType) throws(ConvertError) -> [(String, GGUFValue)] {
        func u32(_ v: Int, _ key: String) throws(ConvertError) -> GGUFValue {
            guard let u = UInt32(exactly: v) else {
                throw .badConfig(path: HFConfig.fileName, key: key, reason: "is \(v), which does not fit the GGUF's UInt32")
            }
            return .uint32(u)
        }
        func f32(_ v: Double, _ key: String) throws(ConvertError) -> GGUFValue {
            let f = Float(v)
            guard f.isFinite, f > 0 else {
                throw .badConfig(path: HFConfig.fileName, key: key, reason: "is \(v), which is \(f) as the GGUF's Float32")
            }
            return .float32(f)
        }
        var meta: [(String, GGUFValue)] = [
            ("general.architecture", .string("llama")),
            ("general.name", .string(name)),
            ("llama.block_count", try u32(config.layerCount, "num_hidden_layers")),
            ("llama.context_length", try u32(config.contextLength, "max_position_embeddings")),
            ("llama.embedding_length", try u32(config.hiddenSize, "hidden_size")),
            ("llama.feed_forward_length", try u32(config.intermediateSize, "intermediate_size")),
            ("llama.attention.head_count", try u32(config.headCount, "num_attention_heads")),
            ("llama.attention.head_count_kv", try u32(config.kvHeadCount, "num_key_value_heads")),
            ("llama.rope.freq_base", try f32(config.ropeTheta, "rope_theta")),
            ("llama.attention.layer_norm_rms_epsilon", try f32(config.rmsNormEps, "rms_norm_eps")),
        ]
        let (qDim, overflow) = config.headDim.multipliedReportingOverflow(by: config.headCount)
        if overflow || qDim != config.hiddenSize {
            meta += [("llama.attention.key_length", try u32(config.headDim, "head_dim")),
                     ("llama.attention.value_length", try u32(config.headDim, "head_dim"))]
        }
        meta += [
            ("general.file_type", .uint32(fileType(type))),
            ("llama.vocab_size", try u32(config.vocabSize, "vocab_size")),
            ("llama.rope.dimension_count", try u32(config.headDim, "head_dim")),
        ]
        if case .linear(let factor) = config.ropeScaling {
            meta += [("llama.rope.scaling.type", .string("linear")), ("llama.rope.scaling.factor", try f32(factor, "rope_scaling.factor"))]
        }
        meta.append(("general.quantization_version", .uint32(2)))
        return meta
    }

    /// general.file_type (llama.cpp's LLAMA_FTYPE): what most of the weights are.
    static func fileType(_ t: GGMLType) -> UInt32 {
        switch t {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q8_0: return 7
        case .bf16: return 32
        case .i32: return 0   // not a weight type; never the bulk of a model
        }
    }

    /// The plan as `--dry-run` prints it: one line per tensor, then totals.
    public func describe() -> [String] {
        var lines: [String] = []
        let c = config
        var shape = "dim \(c.hiddenSize), \(c.layerCount) layers, \(c.headCount) heads (\(c.kvHeadCount) kv, head dim \(c.headDim)), "
        shape += "ffn \(c.intermediateSize), vocab \(c.vocabSize), context \(c.contextLength), rope theta \(c.ropeTheta)"
        if case .linear(let f) = c.ropeScaling { shape += " linear ×\(f)" }
        shape += c.tiedEmbeddings ? ", output tied to token_embd" : ""
        lines.append("model: \(directory): " + shape)
        lines.append("weights: \(checkpoint.files.count) safetensors file(s), \(checkpoint.names.count) tensors, \(formatBytes(checkpoint.byteCount))")
        for s in skipped { lines.append("skip: \(s) (not needed)") }
        let width = jobs.map(\.plan.name.count).max() ?? 0
        for (i, j) in jobs.enumerated() {
            var l = "[\(i + 1)/\(jobs.count)] " + j.plan.name + String(repeating: " ", count: width - j.plan.name.count)
            l += "  \(j.plan.dims) \(j.source.dtype.rawValue) → \(j.plan.type)  \(formatBytes(j.plan.byteCount))"
            if let p = j.mapping.permuteHeads { l += "  q/k permutation (\(p) heads)" }
            for p in j.patches { l += "  + LoRA r=\(p.rank) s=\(p.scale) (\(Files.baseName(p.adapter)))" }
            if let f = j.fellBackFrom { l += "  (F16: rows of \(j.cols) are not a multiple of \(f)'s \(f.blockSize))" }
            lines.append(l)
        }
        let merged = jobs.reduce(0) { $0 + $1.patches.count }
        if merged > 0 { lines.append("LoRA: \(merged) updates from \(options.loraDirectories.count) adapter(s)") }
        if let n = tokenizerPieces { lines.append("tokenizer: \(n) pieces") } else { lines.append("tokenizer: none (--no-tokenizer)") }
        for (k, v) in metadata where k.hasPrefix("palr.") { lines.append("\(k) = \(v)") }
        lines.append("output: \(jobs.count) tensors, \(formatBytes(outputBytes)) of tensor data (from \(formatBytes(sourceBytes)))")
        return lines
    }
}

/// "1.23 GB" style sizes (powers of 1000, as disk sizes are quoted).
public func formatBytes(_ n: Int) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"]
    var v = Double(n), u = 0
    while v >= 1000, u < units.count - 1 { v /= 1000; u += 1 }
    if u == 0 { return "\(n) B" }
    let rounded = (v * 100).rounded() / 100
    return "\(rounded) \(units[u])"
}
