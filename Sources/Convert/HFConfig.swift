// config.json of a Hugging Face LlamaForCausalLM.
//
// Defaults are transformers' LlamaConfig defaults, so a key left out means what
// it means to transformers. Any key whose value would change the math in a way
// palr's runtime does not implement is an error naming the key, never ignored.
//
// Every size is bounded (`Limits`) before anything is built from it, so no product
// of sizes can overflow an Int and a hostile config fails fast instead of asking
// for terabytes; every float must survive the conversion to the Float32 GGUF
// stores it as.

/// The hyperparameters of a LLaMA checkpoint, as read from config.json.
public struct HFConfig: Sendable, Equatable {
    public enum RopeScaling: Sendable, Equatable {
        case none
        /// Positions divided by `factor` (transformers' "linear").
        case linear(factor: Double)
    }

    public var hiddenSize: Int            // hidden_size
    public var intermediateSize: Int      // intermediate_size
    public var layerCount: Int            // num_hidden_layers
    public var headCount: Int             // num_attention_heads
    public var kvHeadCount: Int           // num_key_value_heads (default: num_attention_heads)
    public var headDim: Int               // head_dim (default: hidden_size / num_attention_heads)
    public var vocabSize: Int             // vocab_size
    public var contextLength: Int         // max_position_embeddings (default 2048)
    public var rmsNormEps: Double         // rms_norm_eps (default 1e-6)
    public var ropeTheta: Double          // rope_theta or rope_parameters.rope_theta (default 10000)
    public var ropeScaling: RopeScaling   // rope_scaling or rope_parameters (default none)
    public var tiedEmbeddings: Bool       // tie_word_embeddings (default false)
    public var padTokenId: Int?           // pad_token_id (used when tokenizer.model has none)

    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }

    public init(hiddenSize: Int, intermediateSize: Int, layerCount: Int, headCount: Int, kvHeadCount: Int,
                headDim: Int, vocabSize: Int, contextLength: Int, rmsNormEps: Double, ropeTheta: Double,
                ropeScaling: RopeScaling, tiedEmbeddings: Bool, padTokenId: Int? = nil) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.tiedEmbeddings = tiedEmbeddings
        self.padTokenId = padTokenId
    }

    public static let fileName = "config.json"

    /// The largest sizes accepted, far above any released LLaMA (405B: 126 layers,
    /// 128 heads, hidden 16384, ffn 53248; vocabularies ≤ 256k). With these bounds
    /// the largest tensor, [heads·head_dim, hidden] = 2^12·2^20·2^20 elements, is
    /// 2^54 bytes in F32: no size computed from a config overflows an Int.
    public enum Limits {
        public static let layers = 4096                       // num_hidden_layers
        public static let heads = 4096                        // num_attention_heads, num_key_value_heads
        public static let width = 1 << 20                     // hidden_size, intermediate_size, head_dim
        public static let vocab = 1 << 24                     // vocab_size
        public static let context = Int(UInt32.max)           // max_position_embeddings (a GGUF UInt32)
    }

    /// Reads `DIR/config.json`.
    public init(directory: String) throws(ConvertError) {
        let path = Files.join(directory, Self.fileName)
        try self.init(json: Files.readJSON(path, what: "the model's hyperparameters"), path: path)
    }

    /// Reads a config.json given as a file, or as a folder holding one.
    public init(file: String) throws(ConvertError) {
        try self.init(json: Files.readJSON(Self.path(of: file), what: "the model's hyperparameters"), path: Self.path(of: file))
    }

    /// The config.json that `file` names: itself, or the one inside it when it is a folder.
    public static func path(of file: String) -> String {
        Files.isDirectory(file) ? Files.join(file, fileName) : file
    }

    public init(json c: JSON, path: String) throws(ConvertError) {
        guard c.object != nil else { throw .badConfig(path: path, key: "(top level)", reason: "is not a JSON object") }
        func unsupported(_ key: String, _ v: JSON, _ why: String) -> ConvertError {
            .unsupported(path: path, key: key, value: v.brief, reason: why)
        }
        /// A present, non-null value (nil when absent or null).
        func value(_ key: String) -> JSON? {
            guard let v = c[key], !v.isNull else { return nil }
            return v
        }
        /// A positive integer ≤ `max`.
        func int(_ key: String, max: Int, default d: Int? = nil) throws(ConvertError) -> Int {
            guard let v = value(key) else {
                if let d { return d }
                throw .badConfig(path: path, key: key, reason: "is missing")
            }
            guard let x = v.double, x >= 1, x == x.rounded() else {
                throw .badConfig(path: path, key: key, reason: "is \(v.brief), not a positive integer")
            }
            guard x <= Double(max), let i = v.int else {
                throw .badConfig(path: path, key: key, reason: "is \(v.brief), more than palr accepts (at most \(max))")
            }
            return i
        }
        /// A positive number, still finite and positive as the Float32 GGUF stores it, and below `below`.
        func double(_ key: String, in obj: JSON? = nil, prefix: String = "", default d: Double,
                    below: Double = .infinity) throws(ConvertError) -> Double {
            guard let v = (obj ?? c)[key], !v.isNull else { return d }
            let name = prefix + key
            guard let x = v.double, x.isFinite, x > 0 else { throw .badConfig(path: path, key: name, reason: "is \(v.brief), not a positive number") }
            let f = Float(x)
            guard f.isFinite, f > 0 else {
                throw .badConfig(path: path, key: name, reason: "is \(v.brief), which is \(f) as the Float32 the GGUF file stores")
            }
            guard x < below else {   // (x is finite, so `below` is too here)
                let limit = below == below.rounded() ? String(Int(below)) : String(below)
                throw .badConfig(path: path, key: name, reason: "is \(v.brief), not below \(limit)")
            }
            return x
        }
        func flag(_ key: String, default d: Bool) throws(ConvertError) -> Bool {
            guard let v = value(key) else { return d }
            guard let b = v.bool else { throw .badConfig(path: path, key: key, reason: "is \(v.brief), not true or false") }
            return b
        }

        // Architecture: a LLaMA, and nothing that only looks like one.
        let modelType = value("model_type")
        let architectures = value("architectures")
        if let m = modelType, m.string != "llama" {
            throw unsupported("model_type", m, "palr converts LLaMA models (model_type \"llama\")")
        }
        if let a = architectures {
            guard let list = a.array, list.count == 1, list[0].string == "LlamaForCausalLM" else {
                throw unsupported("architectures", a, "palr converts LlamaForCausalLM")
            }
        }
        if modelType == nil && architectures == nil {
            throw .badConfig(path: path, key: "model_type", reason: "is missing (and so is architectures): cannot tell that this is a LLaMA model")
        }
        if let q = value("quantization_config") {
            throw unsupported("quantization_config", q, "the checkpoint is already quantized; convert the float weights")
        }
        let act = value("hidden_act") ?? .string("silu")
        guard act.string == "silu" else { throw unsupported("hidden_act", act, "LLaMA's MLP is SwiGLU (silu)") }
        for key in ["attention_bias", "mlp_bias"] where try flag(key, default: false) {
            throw unsupported(key, .bool(true), "palr's LLaMA has no bias terms")
        }

        hiddenSize = try int("hidden_size", max: Limits.width)
        intermediateSize = try int("intermediate_size", max: Limits.width)
        layerCount = try int("num_hidden_layers", max: Limits.layers)
        headCount = try int("num_attention_heads", max: Limits.heads)
        kvHeadCount = try int("num_key_value_heads", max: Limits.heads, default: headCount)
        guard headCount % kvHeadCount == 0 else {
            throw .badConfig(path: path, key: "num_key_value_heads", reason: "is \(kvHeadCount), which does not divide num_attention_heads \(headCount)")
        }
        if value("head_dim") == nil, hiddenSize % headCount != 0 {
            throw .badConfig(path: path, key: "head_dim", reason: "is missing and hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(headCount)")
        }
        headDim = try int("head_dim", max: Limits.width, default: hiddenSize / headCount)
        guard headDim % 2 == 0 else { throw .badConfig(path: path, key: "head_dim", reason: "is \(headDim); RoPE needs an even head dimension") }
        vocabSize = try int("vocab_size", max: Limits.vocab)
        contextLength = try int("max_position_embeddings", max: Limits.context, default: 2048)
        rmsNormEps = try double("rms_norm_eps", default: 1e-6, below: 1)
        tiedEmbeddings = try flag("tie_word_embeddings", default: false)
        if let p = value("pad_token_id") {
            guard let i = p.int, i >= 0 else { throw .badConfig(path: path, key: "pad_token_id", reason: "is \(p.brief), not a token id") }
            padTokenId = i
        } else {
            padTokenId = nil
        }

        // RoPE. transformers ≤ 4: top-level rope_theta and rope_scaling {type|rope_type, factor}.
        // transformers 5: rope_parameters {rope_type, rope_theta, factor}. Both may appear; they must agree.
        var theta = try double("rope_theta", default: 10000)
        var scaling = RopeScaling.none
        func readScaling(_ key: String, _ obj: JSON) throws(ConvertError) -> RopeScaling {
            guard obj.object != nil else { throw .badConfig(path: path, key: key, reason: "is \(obj.brief), not an object") }
            let t = obj["rope_type"] ?? obj["type"] ?? .string("default")
            if let a = obj["rope_type"], let b = obj["type"], a != b {
                throw .badConfig(path: path, key: key, reason: "has rope_type \(a.brief) but type \(b.brief)")
            }
            if let f = obj["partial_rotary_factor"], !f.isNull, f.double != 1 {
                throw unsupported("\(key).partial_rotary_factor", f, "palr rotates the whole head")
            }
            switch t.string {
            case "default":
                return .none
            case "linear":
                let f = try double("factor", in: obj, prefix: "\(key).", default: .nan)
                guard !f.isNaN else { throw .badConfig(path: path, key: "\(key).factor", reason: "is missing for linear scaling") }
                return f == 1 ? .none : .linear(factor: f)
            default:
                throw unsupported("\(key).rope_type", t, "palr implements RoPE scaling types default and linear only")
            }
        }
        if let f = value("partial_rotary_factor"), f.double != 1 {
            throw unsupported("partial_rotary_factor", f, "palr rotates the whole head")
        }
        if let legacy = value("rope_scaling") { scaling = try readScaling("rope_scaling", legacy) }
        if let params = value("rope_parameters") {
            let s = try readScaling("rope_parameters", params)
            if value("rope_scaling") != nil, s != scaling {
                throw .badConfig(path: path, key: "rope_parameters", reason: "disagrees with rope_scaling")
            }
            scaling = s
            if params["rope_theta"] != nil {
                let t = try double("rope_theta", in: params, prefix: "rope_parameters.", default: 10000)
                if value("rope_theta") != nil, t != theta {
                    throw .badConfig(path: path, key: "rope_parameters.rope_theta", reason: "is \(t) but rope_theta is \(theta)")
                }
                theta = t
            }
        }
        // Frequencies are base^(-2i/d): a base of 1 or less makes them all ≥ 1 (no model
        // has one; the runtime refuses it too).
        guard theta > 1 && theta.isFinite else {
            throw .badConfig(path: path, key: "rope_theta", reason: "is \(theta); a RoPE base must be a finite number greater than 1")
        }
        ropeTheta = theta
        ropeScaling = scaling
    }
}
