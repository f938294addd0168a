// The weights of a Hugging Face checkpoint folder: `model.safetensors`, or the
// shards that `model.safetensors.index.json` lists in its `weight_map`.

/// All tensors of one checkpoint, looked up by their Hugging Face name.
public struct Checkpoint: Sendable {
    public let directory: String
    public let files: [SafeTensorsFile]
    /// The shard index read (nil for a single model.safetensors).
    public let index: String?
    /// Tensor names in file order (shard by shard).
    public let names: [String]
    private let byName: [String: SafeTensor]

    public static let singleFile = "model.safetensors"
    public static let indexFile = "model.safetensors.index.json"

    public init(directory: String) throws(ConvertError) {
        self.directory = directory
        let single = Files.join(directory, Self.singleFile)
        let indexPath = Files.join(directory, Self.indexFile)
        if Files.exists(single) {
            let f = try SafeTensorsFile(path: single)
            files = [f]
            index = nil
            names = f.tensorNames
            var map: [String: SafeTensor] = [:]
            for t in f.tensors { map[t.name] = t }
            byName = map
        } else if Files.exists(indexPath) {
            let index = try Files.readJSON(indexPath, what: "the shard index")
            guard let weightMap = index["weight_map"]?.object else {
                throw .badConfig(path: indexPath, key: "weight_map", reason: "is missing or not an object")
            }
            var shards: [String: SafeTensorsFile] = [:]
            var order: [SafeTensorsFile] = []
            var map: [String: SafeTensor] = [:]
            var names: [String] = []
            for (name, v) in weightMap {
                // A NUL would end the name at the system call, which would then open another
                // file than the one named; "." and ".." are folders, not shards.
                guard let shard = v.string, !shard.isEmpty, !shard.contains("/"), !shard.contains("\0"),
                      shard != ".", shard != ".." else {
                    throw .badConfig(path: indexPath, key: "weight_map.\(name)", reason: "is \(v.brief), not a file name in the folder")
                }
                let file: SafeTensorsFile
                if let f = shards[shard] {
                    file = f
                } else {
                    let p = Files.join(directory, shard)
                    guard Files.exists(p) else { throw .missingShard(index: indexPath, shard: shard, tensor: name) }
                    file = try SafeTensorsFile(path: p)
                    shards[shard] = file
                    order.append(file)
                }
                guard let t = file.tensor(named: name) else { throw .missingTensor(name: name, where: file.path) }
                guard map[name] == nil else {
                    throw .badConfig(path: indexPath, key: "weight_map.\(name)", reason: "appears twice")
                }
                map[name] = t
                names.append(name)
            }
            // A shard may not hold tensors the index does not list: the index would be stale.
            // Nor may a tensor the index assigns to one shard appear in another too: which copy
            // a loader takes would then depend on the order it reads the shards.
            for f in order {
                for name in f.tensorNames {
                    guard let t = map[name] else {
                        throw .badConfig(path: indexPath, key: "weight_map",
                                         reason: "does not list tensor '\(name)', which \(f.path) holds (a stale index?)")
                    }
                    guard t.file === f else {
                        throw .badConfig(path: indexPath, key: "weight_map.\(name)",
                                         reason: "names \(t.path), but \(f.path) holds tensor '\(name)' too (which copy is meant?)")
                    }
                }
            }
            files = order
            self.index = indexPath
            self.names = names
            byName = map
        } else if Files.exists(Files.join(directory, "pytorch_model.bin")) || Files.exists(Files.join(directory, "pytorch_model.bin.index.json")) {
            throw .missingFile(path: single, what: "only PyTorch pickle weights (pytorch_model.bin) were found; "
                               + "re-save the model with save_pretrained(safe_serialization=True)")
        } else {
            throw .missingFile(path: single, what: "the weights: \(Self.singleFile) or \(Self.indexFile) with its shards")
        }
    }

    public subscript(name: String) -> SafeTensor? { byName[name] }

    /// Total bytes of tensor data.
    public var byteCount: Int { byName.values.reduce(0) { $0 + $1.byteCount } }
}
