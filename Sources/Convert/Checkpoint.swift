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
                guard let shard = v.string, !shard.isEmpty, !shard.contains("/") else {
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
            for f in order {
                if let extra = f.tensorNames.first(where: { map[$0] == nil }) {
                    throw .badConfig(path: indexPath, key: "weight_map",
                                     reason: "does not list tensor '\(extra)', which \(f.path) holds (a stale index?)")
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
