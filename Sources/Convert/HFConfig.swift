// config.json of a Hugging Face LlamaForCausalLM.
//
// Defaults are transformers' LlamaConfig defaults, so a key left out means what
// it means to transformers. Any key whose value would change the math in a way
// palr's runtime does not implement is an error naming the key, never ignored.

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

    /// Reads `DIR/config.json`.
    public init(directory: String) throws(ConvertError) {
        let path = Files.join(directory, Self.fileName)
        try self.init(json: Files.readJSON(path, what: "the model's hyperparameters"), path: path)
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
        func int(_ key: String, default d: Int? = nil) throws(ConvertError) -> Int {
            guard let v = value(key) else {
                if let d { return d }
                throw .badConfig(path: path, key: key, reason: "is missing")
            }
            guard let i = v.int, i > 0 else { throw .badConfig(path: path, key: key, reason: "is \(v.brief), not a positive integer") }
            return i
        }
        func double(_ key: String, in obj: JSON? = nil, default d: Double) throws(ConvertError) -> Double {
            guard let v = (obj ?? c)[key], !v.isNull else { return d }
            guard let x = v.double, x.isFinite, x > 0 else { throw .badConfig(path: path, key: key, reason: "is \(v.brief), not a positive number") }
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

        hiddenSize = try int("hidden_size")
        intermediateSize = try int("intermediate_size")
        layerCount = try int("num_hidden_layers")
        headCount = try int("num_attention_heads")
        kvHeadCount = try int("num_key_value_heads", default: headCount)
        guard headCount % kvHeadCount == 0 else {
            throw .badConfig(path: path, key: "num_key_value_heads", reason: "is \(kvHeadCount), which does not divide num_attention_heads \(headCount)")
        }
        if value("head_dim") == nil, hiddenSize % headCount != 0 {
            throw .badConfig(path: path, key: "head_dim", reason: "is missing and hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(headCount)")
        }
        headDim = try int("head_dim", default: hiddenSize / headCount)
        guard headDim % 2 == 0 else { throw .badConfig(path: path, key: "head_dim", reason: "is \(headDim); RoPE needs an even head dimension") }
        vocabSize = try int("vocab_size")
        contextLength = try int("max_position_embeddings", default: 2048)
        rmsNormEps = try double("rms_norm_eps", default: 1e-6)
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
                let f = try double("factor", in: obj, default: .nan)
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
                let t = try double("rope_theta", in: params, default: 10000)
                if value("rope_theta") != nil, t != theta {
                    throw .badConfig(path: path, key: "rope_parameters.rope_theta", reason: "is \(t) but rope_theta is \(theta)")
                }
                theta = t
            }
        }
        ropeTheta = theta
        ropeScaling = scaling
    }
}
