// PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors.
//
// A LoRA adapter on a Linear layer with weight W [out, in] holds A [r, in] and
// B [out, r]; merging is W += s·(B·A), with s = lora_alpha / r, or
// lora_alpha / √r with use_rslora. r and lora_alpha may differ per module
// (rank_pattern, alpha_pattern: the first pattern key that matches the end of the
// module name wins, as in PEFT's get_pattern_key). The merge is done in fp32 in
// Hugging Face row order, before the q/k permutation and before quantizing.

/// One low-rank update of one weight matrix.
public struct LoRAPatch: Sendable {
    /// The module name, e.g. "model.layers.0.self_attn.q_proj".
    public let module: String
    public let a: SafeTensor     // [r, in]
    public let b: SafeTensor     // [out, r]
    public let rank: Int
    public let alpha: Double
    /// s: lora_alpha / r, or lora_alpha / √r with rsLoRA (rounded to fp32 as torch does).
    public let scale: Float
    public let adapter: String
}

/// A PEFT LoRA adapter folder, checked against the model it will be merged into.
public struct LoRAAdapter: Sendable {
    public let directory: String
    /// Patches keyed by the Hugging Face name of the weight they update.
    public let patches: [String: LoRAPatch]

    public static let configFile = "adapter_config.json"
    public static let weightsFile = "adapter_model.safetensors"
    static let keyPrefix = "base_model.model."
    /// The largest rank accepted (r, rank_pattern): a rank above a weight's smaller
    /// side is pointless, and LLaMA widths are below HFConfig.Limits.width.
    public static let maxRank = HFConfig.Limits.width

    /// Which modules an adapter_config.json targets (PEFT's check_target_module_exists).
    enum ModuleSet {
        case none
        case regex(String, Regex<AnyRegexOutput>)   // a string: full match
        case names([String])                        // a list: equal, or a suffix after "."

        init(_ v: JSON?, key: String, path: String) throws(ConvertError) {
            guard let v, !v.isNull else { self = .none; return }
            if let s = v.string {
                if s == "all-linear" {
                    self = .names(LlamaNames.linearModules)
                    return
                }
                if let risk = LoRAAdapter.backtrackingRisk(s) { throw .badConfig(path: path, key: key, reason: risk) }
                do { self = .regex(s, try Regex(s)) } catch {
                    throw .badConfig(path: path, key: key, reason: "is not a regular expression palr can read: \(error)")
                }
            } else if let a = v.array {
                var names: [String] = []
                for e in a {
                    guard let s = e.string else { throw .badConfig(path: path, key: key, reason: "holds \(e.brief), not a module name") }
                    names.append(s)
                }
                self = .names(names)
            } else {
                throw .badConfig(path: path, key: key, reason: "is \(v.brief), not a string or a list")
            }
        }

        func contains(_ module: String) -> Bool {
            switch self {
            case .none: return false
            case .regex(_, let r): return (try? r.wholeMatch(in: module)) != nil
            case .names(let n): return n.contains { module == $0 || module.hasSuffix("." + $0) }
            }
        }
    }

    /// The most variable quantifiers (`*`, `+`, `?`, `{n,}`, `{n,m}`, `{,m}`) one alternative
    /// of a module pattern may hold.
    static let maxVariableQuantifiers = 4

    /// Why matching `pattern` could take Swift's backtracking `Regex` exponential or
    /// high-polynomial time, or nil. A repeated group that holds a quantifier or
    /// alternatives (`(.*)*x`, `(a+)+`, `(a|aa)*`, `(.*){20}`) tries every way of
    /// splitting a name that does not match, 2^30 and more for one module name; so do
    /// many variable quantifiers in a row, bounded or not (`.*.*.*.*.*.*x`, `.{0,40}` seven
    /// times, `.?` 26 times). Alternatives are tried one after the other, so each counts
    /// alone: Unsloth's `(?:.*?A.*?B.*?C.*?)|(?:\bmodel\.layers\.[\d]{1,}\.B\.C)` has
    /// five in all, four in its longer alternative. PEFT's patterns need neither
    /// (`.*\.(q_proj|v_proj)`, `model\.layers\.\d+\.self_attn\.q_proj`).
    static func backtrackingRisk(_ pattern: String) -> String? {
        /// An open group (the whole pattern at the bottom): whether it holds a quantifier
        /// or an alternative, the most variable quantifiers of its finished alternatives,
        /// and those of the alternative being read.
        struct Group { var risky = false, finished = 0, current = 0 }
        let c = Array(pattern.unicodeScalars)
        var i = 0
        var groups = [Group()]
        var riskyGroupBefore = false   // the atom before i is a group that holds one
        while i < c.count {
            let ch = c[i]
            i += 1
            switch ch {
            case "\\":
                i += 1
                riskyGroupBefore = false
            case "[":
                if i < c.count, c[i] == "^" { i += 1 }
                if i < c.count, c[i] == "]" { i += 1 }
                while i < c.count, c[i] != "]" { i += c[i] == "\\" ? 2 : 1 }
                i += 1
                riskyGroupBefore = false
            case "(":
                groups.append(Group())
                if i < c.count, c[i] == "?" {   // (?:  (?=  (?!  (?<=  (?<name>  (?i)
                    i += 1
                    while i < c.count, !":=!>)".unicodeScalars.contains(c[i]) { i += 1 }
                    if i < c.count, c[i] != ")" { i += 1 }
                }
                riskyGroupBefore = false
            case ")":
                guard groups.count > 1 else { riskyGroupBefore = false; continue }
                let group = groups.removeLast()
                riskyGroupBefore = group.risky
                if group.risky { groups[groups.count - 1].risky = true }
                // The group's quantifiers are in the alternative that holds it.
                groups[groups.count - 1].current += max(group.finished, group.current)
            case "|":
                groups[groups.count - 1].risky = true
                groups[groups.count - 1].finished = max(groups[groups.count - 1].finished, groups[groups.count - 1].current)
                groups[groups.count - 1].current = 0
                riskyGroupBefore = false
            case "*", "+", "?", "{":
                var repeats = ch != "?", variable = true
                if ch == "{" {
                    // {n}, {n,}, {n,m}, {,m}; anything else is a literal brace.
                    var j = i, text = ""
                    while j < c.count, c[j] != "}", text.count < 24 { text.unicodeScalars.append(c[j]); j += 1 }
                    let parts = text.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false)
                    let n = parts[0].isEmpty && parts.count == 2 ? 0 : Int(parts[0])
                    guard j < c.count, c[j] == "}", let n else { riskyGroupBefore = false; continue }
                    let m = parts.count == 1 ? n : Int(parts[1])
                    guard parts.count == 1 || parts[1].isEmpty || m != nil else { riskyGroupBefore = false; continue }
                    repeats = m.map { $0 > 1 } ?? true
                    variable = m != n   // {n} repeats without a choice
                    i = j + 1
                }
                if i < c.count, c[i] == "?" || c[i] == "+" { i += 1 }   // lazy, possessive
                if repeats && riskyGroupBefore {
                    return "repeats a group that holds a quantifier or alternatives, which can make matching one "
                        + "module name take hours; write it without the nested repetition"
                }
                if variable { groups[groups.count - 1].current += 1 }
                groups[groups.count - 1].risky = true
                riskyGroupBefore = false
            default:
                riskyGroupBefore = false
            }
        }
        let most = groups.map { max($0.finished, $0.current) }.max() ?? 0
        guard most <= maxVariableQuantifiers else {
            return "holds \(most) variable quantifiers (*, +, ?, {n,m}) in one alternative, more than palr accepts "
                + "(at most \(maxVariableQuantifiers)): matching could take hours"
        }
        return nil
    }

    /// Reads an adapter and checks every patch against `checkpoint` (shapes) and `config` (tied output).
    public init(directory: String, checkpoint: Checkpoint, config: HFConfig) throws(ConvertError) {
        self.directory = directory
        try Files.requireFolder(directory, missing: "the LoRA adapter folder given by --lora",
                                expected: "the PEFT LoRA adapter folder (the one holding \(Self.configFile))")
        let cfgPath = Files.join(directory, Self.configFile)
        let c = try Files.readJSON(cfgPath, what: "the LoRA adapter's settings")
        guard c.object != nil else { throw .badConfig(path: cfgPath, key: "(top level)", reason: "is not a JSON object") }
        func unsupported(_ key: String, _ why: String) -> ConvertError {
            .unsupported(path: cfgPath, key: key, value: c[key]?.brief ?? "?", reason: why)
        }
        func present(_ key: String) -> JSON? {
            guard let v = c[key], !v.isNull else { return nil }
            if let a = v.array, a.isEmpty { return nil }
            if let o = v.object, o.isEmpty { return nil }
            if v.bool == false { return nil }
            return v
        }

        guard c["peft_type"]?.string == "LORA" else { throw unsupported("peft_type", "palr merges LoRA adapters only") }
        if present("use_dora") != nil { throw unsupported("use_dora", "DoRA's magnitude vector is not a low-rank update; merge it with PEFT first") }
        if present("fan_in_fan_out") != nil { throw unsupported("fan_in_fan_out", "LLaMA's Linear layers store [out, in]") }
        if let b = c["bias"], !b.isNull, b.string != "none" { throw unsupported("bias", "LLaMA has no bias terms to train") }
        // Variants that change what the update is or where it applies (initialisation-only
        // options such as loftq_config or eva_config do not matter to a merge).
        for key in ["modules_to_save", "trainable_token_indices", "layer_replication", "target_parameters", "lora_bias",
                    "alora_invocation_tokens", "use_qalora", "use_bdlora", "kasa_config", "monteclora_config",
                    "velora_config", "arrow_config"]
        where present(key) != nil {
            throw unsupported(key, "palr merges plain LoRA updates of Linear weights only")
        }

        /// A finite lora_alpha (or alpha_pattern value).
        func alphaValue(_ v: JSON, key: String) throws(ConvertError) -> Double {
            guard let x = v.double, x.isFinite else { throw .badConfig(path: cfgPath, key: key, reason: "is \(v.brief), not a finite number") }
            return x
        }
        /// A rank (r or a rank_pattern value): an integer in 1...maxRank.
        func rankValue(_ v: JSON, key: String) throws(ConvertError) -> Int {
            guard let x = v.double, x >= 1, x == x.rounded() else {
                throw .badConfig(path: cfgPath, key: key, reason: "is \(v.brief), not a positive integer")
            }
            guard x <= Double(Self.maxRank), let i = v.int else {
                throw .badConfig(path: cfgPath, key: key, reason: "is \(v.brief), more than palr accepts (at most \(Self.maxRank))")
            }
            return i
        }
        var r = 8, alpha = 8.0
        if let v = c["r"], !v.isNull { r = try rankValue(v, key: "r") }
        if let v = c["lora_alpha"], !v.isNull { alpha = try alphaValue(v, key: "lora_alpha") }
        // use_rslora changes the scale (alpha/√r instead of alpha/r), so a value that is
        // not a JSON boolean (e.g. the string "true") is an error, not a silent false.
        var rslora = false
        if let v = c["use_rslora"], !v.isNull {
            guard let b = v.bool else { throw .badConfig(path: cfgPath, key: "use_rslora", reason: "is \(v.brief), not true or false") }
            rslora = b
        }
        // PEFT's default targets for LLaMA when target_modules is null.
        var targets = try ModuleSet(c["target_modules"], key: "target_modules", path: cfgPath)
        if case .none = targets { targets = .names(["q_proj", "v_proj"]) }
        let excluded = try ModuleSet(c["exclude_modules"], key: "exclude_modules", path: cfgPath)
        var layers: Set<Int>?
        if let l = present("layers_to_transform") {
            if let i = l.int { layers = [i] } else if let a = l.array, a.allSatisfy({ $0.int != nil }) {
                layers = Set(a.compactMap(\.int))
            } else {
                throw .badConfig(path: cfgPath, key: "layers_to_transform", reason: "is \(l.brief), not a layer index or a list of them")
            }
        }
        /// rank_pattern / alpha_pattern entries; `parse` checks each value (naming key.pattern).
        func patterns<T>(_ key: String, _ parse: (JSON, String) throws(ConvertError) -> T) throws(ConvertError) -> [(Regex<AnyRegexOutput>, String, T)] {
            guard let v = c[key], !v.isNull else { return [] }
            guard let o = v.object else { throw .badConfig(path: cfgPath, key: key, reason: "is \(v.brief), not an object") }
            var out: [(Regex<AnyRegexOutput>, String, T)] = []
            for (pattern, value) in o {
                let x = try parse(value, "\(key).\(pattern)")
                if let risk = Self.backtrackingRisk(pattern) { throw .badConfig(path: cfgPath, key: "\(key).\(pattern)", reason: risk) }
                do { out.append((try Regex("(.*\\.)?(\(pattern))"), pattern, x)) } catch {
                    throw .badConfig(path: cfgPath, key: "\(key).\(pattern)", reason: "is not a regular expression palr can read")
                }
            }
            return out
        }
        let rankPattern = try patterns("rank_pattern") { (v, k) throws(ConvertError) in try rankValue(v, key: k) }
        let alphaPattern = try patterns("alpha_pattern") { (v, k) throws(ConvertError) in try alphaValue(v, key: k) }
        /// The value of the first pattern matching `module`, with the key that set it.
        func lookup<T>(_ p: [(Regex<AnyRegexOutput>, String, T)], _ key: String, _ module: String, default d: T) -> (T, String) {
            guard let hit = p.first(where: { (try? $0.0.wholeMatch(in: module)) != nil }) else { return (d, key) }
            return (hit.2, "\(key)_pattern.\(hit.1)")
        }

        // The weights: pairs of lora_A / lora_B per module.
        let wPath = Files.join(directory, Self.weightsFile)
        guard Files.exists(wPath) else {
            let why = Files.exists(Files.join(directory, "adapter_model.bin"))
                ? "only adapter_model.bin was found; save the adapter with safe_serialization=True"
                : "the LoRA adapter's weights"
            throw .missingFile(path: wPath, what: why)
        }
        let file = try SafeTensorsFile(path: wPath)
        func bad(_ why: String) -> ConvertError { .badAdapter(path: directory, reason: why) }
        var aTensors: [String: SafeTensor] = [:]
        var bTensors: [String: SafeTensor] = [:]
        var order: [String] = []
        for t in file.tensors {
            guard t.name.hasPrefix(Self.keyPrefix) else { throw bad("tensor '\(t.name)' does not start with '\(Self.keyPrefix)'") }
            let key = t.name.dropFirst(Self.keyPrefix.count)
            if key.contains("lora_magnitude_vector") { throw bad("tensor '\(t.name)' is a DoRA magnitude vector; DoRA is not supported") }
            if key.contains("lora_embedding_") { throw bad("tensor '\(t.name)': LoRA on embeddings is not supported") }
            if key.hasSuffix(".lora_A.weight") {
                let m = String(key.dropLast(".lora_A.weight".count))
                if aTensors[m] == nil && bTensors[m] == nil { order.append(m) }
                aTensors[m] = t
            } else if key.hasSuffix(".lora_B.weight") {
                let m = String(key.dropLast(".lora_B.weight".count))
                if aTensors[m] == nil && bTensors[m] == nil { order.append(m) }
                bTensors[m] = t
            } else {
                throw bad("tensor '\(t.name)' is neither lora_A.weight nor lora_B.weight")
            }
        }
        guard !order.isEmpty else { throw bad("\(wPath) holds no LoRA weights") }

        var patches: [String: LoRAPatch] = [:]
        for m in order {
            guard let a = aTensors[m] else { throw bad("module \(m) has lora_B but no lora_A") }
            guard let b = bTensors[m] else { throw bad("module \(m) has lora_A but no lora_B") }
            for t in [a, b] where !t.dtype.isConvertible {
                throw bad("tensor '\(t.name)' has dtype \(t.dtype.rawValue); palr reads F32, F16 and BF16")
            }
            // Checked before the base tensor: a tied checkpoint usually has no
            // lm_head.weight at all, and "missing" would hide the real reason.
            if config.tiedEmbeddings && m == "lm_head" {
                throw bad("it updates lm_head, but the model ties lm_head to embed_tokens")
            }
            let baseName = m + ".weight"
            guard let base = checkpoint[baseName] else {
                throw .missingTensor(name: baseName, where: "\(checkpoint.directory) (the base model of LoRA adapter \(directory))")
            }
            // Matched after the base tensor is found, so the patterns only ever see the
            // checkpoint's own (checked, short) names, never an adapter's arbitrary ones.
            guard targets.contains(m), !excluded.contains(m) else {
                throw bad("it holds weights for \(m), which \(Self.configFile) does not target (target_modules \(c["target_modules"]?.brief ?? "null"))")
            }
            if let layers, let l = LlamaNames.layerIndex(m), !layers.contains(l) {
                throw bad("it holds weights for \(m), but layers_to_transform excludes layer \(l)")
            }
            let rank = lookup(rankPattern, "rank", m, default: r).0
            let (alphaM, alphaKey) = lookup(alphaPattern, "alpha", m, default: alpha)
            guard base.shape.count == 2 else { throw bad("its base tensor \(baseName) is not a matrix") }
            let (out, inp) = (base.shape[0], base.shape[1])
            guard a.shape == [rank, inp], b.shape == [out, rank] else {
                throw bad("module \(m): lora_A \(a.shape) and lora_B \(b.shape) do not fit the base weight \(base.shape) at rank \(rank) "
                          + "(expected lora_A [\(rank), \(inp)], lora_B [\(out), \(rank)]): is it an adapter for another model?")
            }
            let s = rslora ? alphaM / Double(rank).squareRoot() : alphaM / Double(rank)
            guard Float(s).isFinite else {
                throw .badConfig(path: cfgPath, key: alphaKey == "alpha" ? "lora_alpha" : alphaKey,
                                 reason: "is \(alphaM), which makes the scale of \(m) \(s), beyond Float32")
            }
            patches[baseName] = LoRAPatch(module: m, a: a, b: b, rank: rank, alpha: alphaM, scale: Float(s), adapter: directory)
        }
        self.patches = patches
    }
}
