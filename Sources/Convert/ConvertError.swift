import GGUF

/// Everything that can stop a conversion, each naming the file, key or tensor at fault.
public enum ConvertError: Error, Equatable, CustomStringConvertible {
    /// A required file is absent (`what` says why it is needed).
    case missingFile(path: String, what: String)
    /// A folder was expected and `path` is a file (`expected` says which folder).
    case notAFolder(path: String, expected: String)
    case cannotRead(path: String, reason: String)
    case badJSON(path: String, reason: String)
    /// A config or adapter key is missing, mistyped or out of range.
    case badConfig(path: String, key: String, reason: String)
    /// A key whose value changes the math in a way palr does not implement.
    case unsupported(path: String, key: String, value: String, reason: String)
    /// A malformed safetensors file (header, dtype, offsets).
    case badSafetensors(path: String, reason: String)
    /// The file ends before the data of `tensor`.
    case truncatedTensor(path: String, tensor: String, end: Int, dataSize: Int)
    case missingShard(index: String, shard: String, tensor: String)
    case missingTensor(name: String, where: String)
    case unexpectedTensor(name: String, path: String)
    /// A `model.layers.N.` tensor of a layer at or past config.json's num_hidden_layers.
    case tensorBeyondLayers(name: String, layer: Int, layerCount: Int, path: String)
    case wrongShape(tensor: String, expected: [Int], found: [Int], path: String)
    /// `path`: the safetensors file the tensor comes from; `merged`: the LoRA adapters
    /// merged into it before the check (empty when none).
    case nonFinite(tensor: String, row: Int, column: Int, value: Float, path: String, merged: [String])
    /// A value beyond what `type` can store. `chosenBy`: the option (and value) that
    /// gave the tensor its type; `remedy`: the option that would fit it (see `TypeChoice`).
    case overflow(tensor: String, type: String, value: Float, chosenBy: String, remedy: String)
    case badAdapter(path: String, reason: String)
    case badTokenizer(path: String, reason: String)
    case badSettings(key: String, reason: String)
    case gguf(GGUFError)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .missingFile(let p, let w): return "\(p) is missing (\(w))"
        case .notAFolder(let p, let e): return "\(p) is a file, not a folder: pass \(e)"
        case .cannotRead(let p, let r): return "cannot read \(p): \(r)"
        case .badJSON(let p, let r): return "\(p) is not valid JSON: \(r)"
        case .badConfig(let p, let k, let r): return "\(p): '\(k)' \(r)"
        case .unsupported(let p, let k, let v, let r): return "\(p): unsupported \(k) = \(v): \(r)"
        case .badSafetensors(let p, let r): return "\(p): not a valid safetensors file: \(r)"
        case .truncatedTensor(let p, let t, let e, let d):
            return "\(p) is truncated: tensor '\(t)' ends at data byte \(e), but the data section holds only \(d) bytes"
        case .missingShard(let i, let s, let t): return "\(i) names shard \(s) (for tensor '\(t)' and maybe more), which does not exist"
        case .missingTensor(let n, let w): return "tensor '\(n)' is missing from \(w)"
        case .unexpectedTensor(let n, let p): return "\(p): unexpected tensor '\(n)' (not part of a LLaMA model)"
        case .wrongShape(let t, let e, let f, let p): return "\(p): tensor '\(t)' has shape \(f), expected \(e)"
        case .tensorBeyondLayers(let n, let l, let c, let p):
            return "\(p): tensor '\(n)' is in layer \(l), but \(HFConfig.fileName) says \(c) layer\(c == 1 ? "" : "s") (num_hidden_layers)"
        case .nonFinite(let t, let r, let c, let v, let p, let m):
            let after = m.isEmpty ? "" : " after merging LoRA adapter\(m.count == 1 ? "" : "s") \(m.joined(separator: ", "))"
            return "\(p): tensor '\(t)' holds \(v) at row \(r), column \(c)\(after)"
        case .overflow(let t, let ty, let v, let by, let remedy):
            return "tensor '\(t)' holds \(v), which does not fit \(ty) (its type comes from \(by); choose \(remedy))"
        case .badAdapter(let p, let r): return "LoRA adapter \(p): \(r)"
        case .badTokenizer(let p, let r): return "\(p): \(r)"
        case .badSettings(let k, let r): return "PALR setting \(k): \(r)"
        case .gguf(let e): return e.description
        case .invalidArgument(let s): return s
        }
    }
}
